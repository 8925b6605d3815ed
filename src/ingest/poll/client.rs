//! Poll mode: autoprov as an SFTP *client* of the HR vendor's server (SPEC §5 "poll").
//!
//! Every `source.remote.poll_interval` the daemon connects ([`RemoteClient::connect`]),
//! lists the remote inbox ([`RemoteClient::list`]), keeps only files whose size and mtime
//! have not changed for a while, over two listings at least ([`Stability`]), and downloads those
//! ([`RemoteClient::download`]) to a hidden local name which it then renames into the
//! local `inbox/`. Only after the local pipeline has committed a file's outcome does the
//! daemon move the remote file into the remote `processed`/`rejected` folder
//! ([`RemoteClient::rename`]) and put the reports beside it ([`RemoteClient::upload`]).
//! Nothing in this module deletes a remote roster file.
//!
//! Security:
//! - The server's host key is pinned (`known_host_key`, an OpenSSH public key line). There
//!   is no trust on first use: any other key, or a host certificate, ends the handshake
//!   with [`PollError::HostKeyMismatch`], logged at error level with both fingerprints.
//!   The pinned key's algorithm is offered first, so a server that has several host keys
//!   presents the pinned one.
//! - Key authentication only (ed25519, ECDSA, or RSA signed with rsa-sha2-512/256; a
//!   server that only accepts SHA-1 `ssh-rsa` signatures is refused).
//! - Every network step has its own timeout (`timeout`, default 30 s); downloads and
//!   uploads time out per chunk, not per file, so a large file on a slow link is fine as
//!   long as it keeps moving.
//! - Remote names are joined with [`remote_path`], which refuses `/`, NUL, `.` and `..`;
//!   [`RemoteClient::list`] leaves out hidden, partial, non-UTF-8 and control-character
//!   names and anything that is not a regular file (symlinks included).
//!
//! This module depends on nothing else in autoprov but the ignored-name rule of
//! [`layout`](crate::layout): the poll loop ([`super`]) passes settings in and keeps the
//! state (stability, back-off, status, ledger) itself.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::host_key::{PinnedHostKey, fingerprint, host_key_algorithms, lock, parse_pinned_key};

/// Where and how to poll (`[source.remote]` plus the largest file to download).
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// OpenSSH private key file (unencrypted): ed25519, ECDSA or RSA.
    pub private_key: PathBuf,
    /// The server's host key as an OpenSSH public key line (`ssh-ed25519 AAAA... [comment]`).
    pub known_host_key: String,
    /// Remote folder to take files from.
    pub inbox: String,
    /// Remote folder for applied files and their reports.
    pub processed: String,
    /// Remote folder for rejected files and their reports.
    pub rejected: String,
    pub poll_interval: Duration,
    /// Time limit of each network step (connect, auth, each request, each chunk). Default 30 s.
    pub timeout: Duration,
    /// The larger of `roster.max_bytes` and `source.max_upload_bytes`: larger remote files
    /// are never downloaded (a file over `roster.max_bytes` is, to be rejected with a report).
    pub max_bytes: u64,
}

/// A regular file in a remote listing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RemoteFile {
    pub name: String,
    pub size: u64,
    /// Seconds since the epoch, as the server reports it.
    pub mtime: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The server presented another host key than the pinned one. Stop fetching until an
    /// operator has checked the new key out of band and updated `known_host_key`.
    #[error(
        "the SFTP server's host key does not match source.remote.known_host_key: expected \
         {expected}, the server presented {got}; refusing to connect (possible \
         man-in-the-middle, or the vendor changed its key: verify the new fingerprint out of \
         band before updating the config)"
    )]
    HostKeyMismatch { expected: String, got: String },
    /// The server refused our key.
    #[error("the SFTP server refused key authentication for this user and private key")]
    AuthFailed,
    /// A step did not finish within `timeout`.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// A remote file is larger than anything autoprov downloads; it was not downloaded.
    #[error(
        "remote file {name:?} is {size} bytes, over the {max} bytes autoprov downloads (roster.max_bytes or source.max_upload_bytes, the larger); not downloaded: remove or split it on the server"
    )]
    TooLarge { name: String, size: u64, max: u64 },
    /// The server refused to open a remote file (its permissions, or it is gone): the
    /// session is fine, the file was not downloaded.
    #[error(
        "remote file {name:?} cannot be opened ({why}); left on the server, later files are \
         still fetched: remove it on the server (once a later file was fetched, it is no \
         longer fetched even if it can be opened: it is older)"
    )]
    Unreadable { name: String, why: String },
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl PollError {
    /// True when polling must stop until an operator acts (host key mismatch, refused
    /// login); retrying with back-off cannot fix these.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            PollError::HostKeyMismatch { .. } | PollError::AuthFailed
        )
    }
}

/// Size of one local read/write chunk.
const CHUNK: usize = 256 * 1024;

/// Makes temporary upload names unique within this process.
static UPLOAD_SEQ: AtomicU64 = AtomicU64::new(0);

/// An authenticated SFTP session with the remote server.
pub struct RemoteClient {
    handle: client::Handle<PinnedHostKey>,
    sftp: SftpSession,
    host: String,
    port: u16,
    timeout: Duration,
}

/// Runs `fut` with the step timeout, mapping its error with `what` for context.
async fn timed<T, E, F>(limit: Duration, step: &'static str, fut: F) -> Result<T, PollError>
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(PollError::Timeout(step)),
        Ok(Err(e)) => Err(PollError::Other(anyhow!("{step}: {e}"))),
        Ok(Ok(v)) => Ok(v),
    }
}

/// Logs a failed step with host and error (never key material) and passes the error on.
fn logged<T>(
    host: &str,
    port: u16,
    step: &str,
    path: Option<&str>,
    r: Result<T, PollError>,
) -> Result<T, PollError> {
    if let Err(e) = &r {
        match e {
            PollError::HostKeyMismatch { expected, got } => tracing::error!(
                host, port, step, expected = %expected, got = %got,
                "SFTP poll: HOST KEY MISMATCH, not fetching anything: {e}"
            ),
            PollError::AuthFailed => {
                tracing::error!(host, port, step, "SFTP poll failed: {e}");
            }
            _ => tracing::warn!(host, port, step, path = ?path, "SFTP poll failed: {e}"),
        }
    }
    r
}

/// The pinned host key and the private key of `s`, read: what the daemon checks at its
/// start (a typo there is a config error, exit 2, not a poll that fails for ever after
/// READY) and each connection reads again (the key file may have been replaced).
pub fn keys(
    s: &RemoteSettings,
) -> anyhow::Result<(russh::keys::PublicKey, Arc<russh::keys::PrivateKey>)> {
    let expected = parse_pinned_key(&s.known_host_key)?;
    let key = russh::keys::load_secret_key(&s.private_key, None).map_err(|e| {
        anyhow!(
            "cannot load source.remote.private_key {} (an unencrypted OpenSSH private key is \
             needed): {e}",
            s.private_key.display()
        )
    })?;
    Ok((expected, Arc::new(key)))
}

impl RemoteClient {
    /// Connects, checks the pinned host key, logs in with the private key and opens the
    /// SFTP subsystem. Each of TCP connect + key exchange, authentication, and the SFTP
    /// start has its own `timeout`.
    pub async fn connect(s: &RemoteSettings) -> Result<RemoteClient, PollError> {
        let r = Self::connect_inner(s).await;
        let r = logged(&s.host, s.port, "connect", None, r);
        if r.is_ok() {
            tracing::debug!(host = %s.host, port = s.port, user = %s.user, "SFTP poll: connected");
        }
        r
    }

    async fn connect_inner(s: &RemoteSettings) -> Result<RemoteClient, PollError> {
        // Read the keys before touching the network: a config error is not a network fault.
        let (expected, key) = keys(s)?;

        let timeout = s.timeout;
        let mut handle = Self::handshake(s, &expected, timeout).await?;
        Self::authenticate(&mut handle, &s.user, key, timeout).await?;
        let sftp = timed(timeout, "sftp start", open_sftp(&handle, timeout)).await?;

        Ok(RemoteClient {
            handle,
            sftp,
            host: s.host.clone(),
            port: s.port,
            timeout,
        })
    }

    /// TCP connect and key exchange, accepting only the pinned host key `expected`.
    async fn handshake(
        s: &RemoteSettings,
        expected: &PublicKey,
        timeout: Duration,
    ) -> Result<client::Handle<PinnedHostKey>, PollError> {
        let config = client::Config {
            nodelay: true,
            preferred: russh::Preferred {
                key: host_key_algorithms(expected).into(),
                ..russh::Preferred::default()
            },
            // A connection that stops answering is noticed even between requests.
            keepalive_interval: Some(timeout),
            keepalive_max: 3,
            ..client::Config::default()
        };
        let (handler, mismatch) = PinnedHostKey::new(expected.clone());

        let connected = tokio::time::timeout(
            timeout,
            client::connect(Arc::new(config), (s.host.as_str(), s.port), handler),
        )
        .await;
        if let Some(got) = lock(&mismatch).take() {
            return Err(PollError::HostKeyMismatch {
                expected: fingerprint(expected),
                got,
            });
        }
        match connected {
            Err(_) => Err(PollError::Timeout("connect")),
            Ok(Err(e)) => Err(PollError::Other(anyhow!(
                "cannot connect to {}:{}: {e}",
                s.host,
                s.port
            ))),
            Ok(Ok(h)) => Ok(h),
        }
    }

    /// Logs in as `user` with `key` (RSA: rsa-sha2 signatures only).
    async fn authenticate(
        handle: &mut client::Handle<PinnedHostKey>,
        user: &str,
        key: Arc<russh::keys::PrivateKey>,
        timeout: Duration,
    ) -> Result<(), PollError> {
        let hash = if key.algorithm().is_rsa() {
            match timed(timeout, "auth", handle.best_supported_rsa_hash()).await? {
                Some(Some(h)) => Some(h),
                Some(None) => {
                    return Err(PollError::Other(anyhow!(
                        "the server accepts RSA keys only with SHA-1 (ssh-rsa) signatures; \
                         use an ed25519 key or enable rsa-sha2 on the server"
                    )));
                }
                // No server-sig-algs: try rsa-sha2-512, never SHA-1.
                None => Some(HashAlg::Sha512),
            }
        } else {
            None
        };
        let auth = timed(
            timeout,
            "auth",
            handle.authenticate_publickey(user.to_string(), PrivateKeyWithHashAlg::new(key, hash)),
        )
        .await?;
        if !auth.success() {
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            return Err(PollError::AuthFailed);
        }
        Ok(())
    }

    fn log<T>(
        &self,
        step: &str,
        path: Option<&str>,
        r: Result<T, PollError>,
    ) -> Result<T, PollError> {
        logged(&self.host, self.port, step, path, r)
    }

    /// Regular files in `dir`, sorted by (mtime, name). Leaves out names starting with `.`,
    /// ending in `.part`/`.filepart`/`.tmp`/`.partial` (any case), containing `/`, NUL or
    /// control characters, `.`/`..`, names that are not valid UTF-8, and every entry that
    /// is not a regular file (directories, symlinks, devices) or lacks size or mtime.
    pub async fn list(&self, dir: &str) -> Result<Vec<RemoteFile>, PollError> {
        Ok(self.list_all(dir).await?.0)
    }

    /// [`Self::list`], and why each odd name was left out (`name: why (what to do)`): files that are never
    /// fetched while their names stay so, which the poll names in `status`.
    pub async fn list_all(&self, dir: &str) -> Result<(Vec<RemoteFile>, Vec<String>), PollError> {
        let r = async {
            // The folder named: "list: No such file" had not said which folder was wrong.
            let entries = timed(self.timeout, "list", self.sftp.read_dir(dir))
                .await
                .map_err(|e| match e {
                    PollError::Other(e) => PollError::Other(e.context(format!("the folder {dir:?}"))),
                    e => e,
                })?;
            let (mut files, mut odd) = (Vec::new(), Vec::new());
            for entry in entries {
                let name = entry.file_name();
                match classify_name(&name) {
                    NameKind::Candidate => {}
                    NameKind::Ignored => {
                        tracing::trace!(host = %self.host, dir, name = ?name, "SFTP poll: ignoring hidden or partial name");
                        continue;
                    }
                    NameKind::Odd(why) => {
                        tracing::warn!(host = %self.host, dir, name = ?name, "SFTP poll: skipping remote entry: {why}");
                        // Not a folder's: a folder so named had failed every poll. (A listing
                        // without permissions says no type: named too.)
                        if !entry.metadata().file_type().is_dir() {
                            odd.push(format!("{name:?}: {why} (not fetched while it has that name: rename it on the server)"));
                        }
                        continue;
                    }
                }
                let meta = entry.metadata();
                if meta.permissions.is_none() || !meta.file_type().is_file() {
                    if !meta.file_type().is_dir() {
                        tracing::warn!(host = %self.host, dir, name = ?name, "SFTP poll: skipping remote entry: not a regular file (a symlink is never followed)");
                        // Named in `status` as an odd name is: a vendor delivering by link
                        // had had its roster never applied, the poll said healthy.
                        if meta.file_type().is_symlink() {
                            odd.push(format!("{name:?}: a symlink, never followed (not fetched: deliver the file itself, not a link to it)"));
                        } else if meta.permissions.is_none() {
                            // A server that lists no type: its roster had never been applied
                            // with a log line only.
                            odd.push(format!("{name:?}: the server's listing does not say what it is (no permissions), so it is not fetched: check the SFTP server"));
                        }
                    }
                    continue;
                }
                let (Some(size), Some(mtime)) = (meta.size, meta.mtime) else {
                    tracing::warn!(host = %self.host, dir, name = ?name, "SFTP poll: skipping remote file: the server did not report its size and mtime");
                    odd.push(format!("{name:?}: the server's listing gives no size or modification time, by which a complete and new file is told, so it is not fetched: check the SFTP server"));
                    continue;
                };
                files.push(RemoteFile { name, size, mtime });
            }
            files.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
            Ok((files, odd))
        }
        .await;
        self.log("list", Some(dir), r)
    }

    /// Downloads `dir/file.name` to `local_tmp` (created or truncated, mode 0640), fsyncs
    /// it and returns its SHA-256 (lower-case hex). Refuses with [`PollError::TooLarge`]
    /// before opening anything when `file.size > max_bytes`, and aborts when more than
    /// `max_bytes` arrive. Fails when the remote file no longer matches the listing (size
    /// or mtime at open, or a different byte count): it is still being written. On any
    /// failure `local_tmp` is removed. The caller renames `local_tmp` into `inbox/` and
    /// fsyncs the inbox directory.
    pub async fn download(
        &self,
        dir: &str,
        file: &RemoteFile,
        local_tmp: &Path,
        max_bytes: u64,
    ) -> Result<String, PollError> {
        let r = async {
            if file.size > max_bytes {
                return Err(PollError::TooLarge {
                    name: file.name.clone(),
                    size: file.size,
                    max: max_bytes,
                });
            }
            let path = remote_path(dir, &file.name)?;
            let open = tokio::time::timeout(self.timeout, self.sftp.open(path.as_str())).await;
            let mut remote = match open {
                Err(_) => return Err(PollError::Timeout("open")),
                Ok(Err(russh_sftp::client::error::Error::Status(status))) => {
                    return Err(PollError::Unreadable {
                        name: file.name.clone(),
                        why: format!("{}: {}", status.status_code, status.error_message),
                    });
                }
                Ok(Err(e)) => return Err(PollError::Other(anyhow!("open: {e}"))),
                Ok(Ok(remote)) => remote,
            };
            let result = self.copy_down(&mut remote, file, local_tmp, max_bytes).await;
            // Close explicitly (dropping only sends the close without awaiting it).
            let closed = timed(self.timeout, "close", remote.close()).await;
            match result {
                Ok(hash) => {
                    if let Err(e) = closed {
                        tracing::debug!(host = %self.host, "SFTP poll: closing a downloaded file failed: {e}");
                    }
                    Ok(hash)
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(local_tmp).await;
                    Err(e)
                }
            }
        }
        .await;
        self.log("download", Some(&file.name), r)
    }

    async fn copy_down(
        &self,
        remote: &mut russh_sftp::client::fs::File,
        file: &RemoteFile,
        local_tmp: &Path,
        max_bytes: u64,
    ) -> Result<String, PollError> {
        let attrs = timed(self.timeout, "stat", remote.metadata()).await?;
        if !attrs.file_type().is_file() {
            return Err(anyhow!("remote {:?} is no longer a regular file", file.name).into());
        }
        if let Some(size) = attrs.size
            && size > max_bytes
        {
            return Err(PollError::TooLarge {
                name: file.name.clone(),
                size,
                max: max_bytes,
            });
        }
        if attrs.size != Some(file.size) || attrs.mtime != Some(file.mtime) {
            return Err(anyhow!(
                "remote {:?} changed since it was listed (still being written?); will retry",
                file.name
            )
            .into());
        }

        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            // As every roster autoprov files (group autoprov reads processed/).
            .mode(0o640)
            .open(local_tmp)
            .await
            .with_context(|| format!("cannot create {}", local_tmp.display()))?;
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = timed(self.timeout, "read", remote.read(&mut buf)).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
            // Also past `max_bytes` (no more than `file.size`): a file still being written,
            // retried, not refused as too large.
            if total > file.size {
                return Err(anyhow!(
                    "remote {:?} grew while it was downloaded (listed {} bytes); will retry",
                    file.name,
                    file.size
                )
                .into());
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .await
                .with_context(|| format!("cannot write {}", local_tmp.display()))?;
        }
        if total != file.size {
            return Err(anyhow!(
                "remote {:?} shrank while it was downloaded ({} of {} bytes); will retry",
                file.name,
                total,
                file.size
            )
            .into());
        }
        // Rewritten in place while it was read, at the same size (a vendor writing over the
        // file): a mix of two rosters had been taken as one delivery.
        let after = timed(self.timeout, "stat", remote.metadata()).await?;
        if after.size != Some(file.size) || after.mtime != Some(file.mtime) {
            return Err(anyhow!(
                "remote {:?} was written to while it was downloaded; will retry",
                file.name
            )
            .into());
        }
        out.flush().await.context("flush")?;
        out.sync_all()
            .await
            .with_context(|| format!("cannot fsync {}", local_tmp.display()))?;
        Ok(hex(&hasher.finalize()))
    }

    /// Renames `from` to `to` on the server. Fails when `to` already exists: it is checked
    /// first, and plain SFTPv3 rename (never `posix-rename@openssh.com`) also refuses to
    /// replace a target on OpenSSH (it links, then unlinks). Only call it after the local
    /// commit of the file's outcome.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), PollError> {
        let r = self.rename_inner(from, to).await;
        self.log("rename", Some(from), r)
    }

    async fn rename_inner(&self, from: &str, to: &str) -> Result<(), PollError> {
        if self.stat_inner(to).await?.is_some() {
            return Err(
                anyhow!("cannot move {from:?} to {to:?}: the target already exists").into(),
            );
        }
        timed(self.timeout, "rename", self.sftp.rename(from, to)).await
    }

    /// Uploads `local` to `remote_path`: writes a hidden temporary name in the same remote
    /// folder (`.autoprov-upload-….part`, skipped by pollers), fsyncs it when the server
    /// offers `fsync@openssh.com`, closes it explicitly and renames it into place. Fails,
    /// leaving nothing behind, when `remote_path` already exists.
    pub async fn upload(&self, local: &Path, remote_path: &str) -> Result<(), PollError> {
        let r = self.upload_inner(local, remote_path).await;
        self.log("upload", Some(remote_path), r)
    }

    async fn upload_inner(&self, local: &Path, target: &str) -> Result<(), PollError> {
        let (dir, name) = match target.rsplit_once('/') {
            Some((d, n)) => (if d.is_empty() { "/" } else { d }, n),
            None => ("", target),
        };
        remote_path(dir, name)?; // validates the final name
        if self.stat_inner(target).await?.is_some() {
            return Err(anyhow!("cannot upload to {target:?}: it already exists").into());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp_name = format!(
            ".autoprov-upload-{}-{nanos}-{}.part",
            std::process::id(),
            UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = remote_path(dir, &tmp_name)?;

        let mut src = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("cannot open {}", local.display()))?;
        let mut remote = timed(
            self.timeout,
            "upload open",
            self.sftp.open_with_flags(
                tmp.as_str(),
                OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE | OpenFlags::TRUNCATE,
            ),
        )
        .await?;

        let written = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = src
                    .read(&mut buf)
                    .await
                    .with_context(|| format!("cannot read {}", local.display()))?;
                if n == 0 {
                    break;
                }
                timed(self.timeout, "upload write", remote.write_all(&buf[..n])).await?;
            }
            // Drains the pending write acknowledgements, then sends `fsync@openssh.com`
            // when the server offers it.
            timed(self.timeout, "upload flush", remote.flush()).await?;
            Ok::<(), PollError>(())
        }
        .await;
        let closed = timed(self.timeout, "upload close", remote.close()).await;
        let result = match (written, closed) {
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => self.rename_inner(&tmp, target).await,
        };
        if result.is_err() {
            let _ = tokio::time::timeout(self.timeout, self.sftp.remove_file(tmp.as_str())).await;
        }
        result
    }

    /// Whether anything (file, folder, even a dangling symlink) exists at `path`.
    /// The absolute form of `path` on the server (SFTP `realpath`: `..` and symlinks
    /// resolved), `None` when the server cannot give it (a folder not there yet).
    pub async fn real_path(&self, path: &str) -> Option<String> {
        timed(self.timeout, "realpath", self.sftp.canonicalize(path))
            .await
            .ok()
    }

    pub async fn exists(&self, path: &str) -> Result<bool, PollError> {
        Ok(self.stat(path).await?.is_some())
    }

    /// The size and mtime of `path` (without following a symlink), `None` when it does not
    /// exist; either is `u64::MAX` / `u32::MAX` when the server leaves it out.
    pub async fn stat(&self, path: &str) -> Result<Option<(u64, u32)>, PollError> {
        let r = self.stat_inner(path).await;
        self.log("stat", Some(path), r)
    }

    async fn stat_inner(&self, path: &str) -> Result<Option<(u64, u32)>, PollError> {
        match tokio::time::timeout(self.timeout, self.sftp.symlink_metadata(path)).await {
            Err(_) => Err(PollError::Timeout("stat")),
            Ok(Ok(m)) => Ok(Some((
                m.size.unwrap_or(u64::MAX),
                m.mtime.unwrap_or(u32::MAX),
            ))),
            Ok(Err(SftpError::Status(st))) if st.status_code == StatusCode::NoSuchFile => Ok(None),
            Ok(Err(e)) => Err(anyhow!("stat {path:?}: {e}").into()),
        }
    }

    /// Ends the SFTP session and the SSH connection (best effort, bounded by `timeout`).
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.timeout, async {
            let _ = self.sftp.close().await;
            let _ = self
                .handle
                .disconnect(Disconnect::ByApplication, "", "en")
                .await;
        })
        .await;
    }
}

/// Opens a session channel and starts the `sftp` subsystem on it.
async fn open_sftp(
    handle: &client::Handle<PinnedHostKey>,
    timeout: Duration,
) -> anyhow::Result<SftpSession> {
    let mut channel = handle.channel_open_session().await?;
    channel.request_subsystem(true, "sftp").await?;
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => break,
            Some(ChannelMsg::Failure) => {
                return Err(anyhow!("the server refused the sftp subsystem"));
            }
            Some(ChannelMsg::Close | ChannelMsg::Eof) | None => {
                return Err(anyhow!("the server closed the channel"));
            }
            Some(_) => {}
        }
    }
    let cfg = russh_sftp::client::Config {
        request_timeout_secs: timeout.as_secs().max(1),
        ..russh_sftp::client::Config::default()
    };
    Ok(SftpSession::new_with_config(channel.into_stream(), cfg).await?)
}

enum NameKind {
    Candidate,
    /// Hidden or partial: normal, not worth a warning.
    Ignored,
    /// Odd: skipped with a warning.
    Odd(&'static str),
}

fn classify_name(name: &str) -> NameKind {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return NameKind::Odd("unsafe name");
    }
    if crate::layout::is_ignored(name) {
        return NameKind::Ignored;
    }
    if name.contains(char::REPLACEMENT_CHARACTER) {
        return NameKind::Odd("the name is not valid UTF-8");
    }
    if name.chars().any(char::is_control) {
        return NameKind::Odd("the name contains control characters");
    }
    NameKind::Candidate
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Capped exponential back-off for reconnects: 1 s, 2 s, 4 s … up to `max`; reset on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            next: Duration::from_secs(1),
        }
    }

    /// The delay before the next attempt; doubles each call up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = self
            .next
            .saturating_mul(2)
            .min(self.max.max(Duration::from_secs(1)));
        delay
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_secs(1);
    }
}

/// Joins a remote directory and a file name safely (rejects names with '/', NUL, "." or
/// ".."; empty names; a directory containing NUL). An empty `dir` means the login folder.
pub fn remote_path(dir: &str, name: &str) -> Result<String, PollError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(anyhow!("unsafe remote file name {name:?}").into());
    }
    if dir.contains('\0') {
        return Err(anyhow!("unsafe remote folder {dir:?}").into());
    }
    let trimmed = dir.trim_end_matches('/');
    Ok(if dir.is_empty() {
        name.to_string()
    } else {
        // `trimmed` is empty only for the root folder ("/", "//").
        format!("{trimmed}/{name}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_mode_ignores_partial_names_in_any_letter_case() {
        for name in [
            "roster.csv.Part",
            "ROSTER.TMP",
            "x.FilePart",
            "x.partial",
            ".x.csv",
        ] {
            assert!(matches!(classify_name(name), NameKind::Ignored), "{name}");
        }
        assert!(matches!(classify_name("roster.csv"), NameKind::Candidate));
    }

    #[test]
    fn remote_path_joins_and_refuses() {
        assert_eq!(remote_path("out", "a b.csv").unwrap(), "out/a b.csv");
        assert_eq!(remote_path("out/", "ä.csv").unwrap(), "out/ä.csv");
        assert_eq!(remote_path("", "x.csv").unwrap(), "x.csv");
        assert_eq!(remote_path("/", "x.csv").unwrap(), "/x.csv");
        for bad in ["..", ".", "", "a/b", "../x", "a\0b"] {
            assert!(remote_path("out", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let got: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
