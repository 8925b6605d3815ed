//! The confined virtual filesystem an SFTP user sees: `/` is the drop directory.
//!
//! The client sees exactly four directories, `/inbox`, `/processed`, `/rejected` and
//! `/held`. It may list them, read files below the last three, and create new files in
//! `/inbox`; an upload of its own session under a temporary name (`x.csv.part`) it may
//! rename to a final name in `/inbox`, or remove ([`parked`]). Everything else — delete,
//! rename, mkdir, setstat, links, overwriting, reading the inbox, leaving the root,
//! following a symlink found on disk — is refused with `SSH_FX_PERMISSION_DENIED`.
//!
//! Uploads are written to a hidden temporary file (`inbox/.upload-<random>`), fsync'ed and
//! renamed to their final name (without replacing anything) when the client closes the
//! handle successfully; an upload that is cut off (too large, write error) or whose session
//! ends before the close is deleted. So a name appears in `inbox/` only complete, and only
//! by a rename — which is what the inbox watcher takes as "complete".

mod handler;
mod handles;
mod parked;
mod paths;
mod status;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use russh_sftp::protocol::{FileAttributes, OpenFlags, Status, StatusCode};
use russh_sftp::server::StatusReply;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Span;

use handles::{OpenHandle, Upload, temp_name};
use parked::{Parked, Waiting};
pub use paths::{Area, DropRoot, Target, UploadFailed, UploadName, check_upload_name, resolve};
use paths::{attrs_of, target_metadata, walk};
use status::{blocking, denied, failure, io_status, ok_status};

/// Prefix of the temporary names uploads are written under inside `inbox/`.
pub const TEMP_PREFIX: &str = ".upload-";
/// Largest SFTP packet a client may send; the `limits@openssh.com` answer and the framing
/// guard in the SFTP server use the same value (OpenSSH's own limit).
pub const MAX_PACKET_LEN: u32 = 256 * 1024;
/// Largest read or write payload per request (a packet minus room for its header).
pub const MAX_IO_LEN: u32 = MAX_PACKET_LEN - 1024;
/// Open file and directory handles allowed per SFTP session (clients use a few: OpenSSH's
/// sftp one or two, curl one). With `max_connections_per_ip` at its default, 8, one source
/// holds at most 128, a quarter of [`MAX_OPEN_HANDLES_TOTAL`]: at 64 a session, one source's
/// eight sessions took them all, and every other HR system was refused.
pub const MAX_OPEN_HANDLES: usize = 16;
/// Open handles allowed in all sessions together. Each holds a file descriptor; with the
/// connections' sockets (at most 256) this stays under the usual soft limit of 1024
/// descriptors, so that sessions hoarding handles cannot starve the daemon of descriptors
/// (accept, the store, the inbox watcher).
pub const MAX_OPEN_HANDLES_TOTAL: usize = 512;
/// Refused requests logged one by one per session; later ones are only counted.
const REFUSALS_LOGGED: u64 = 32;

/// One SFTP session's view of the drop root; implements the russh-sftp server handler.
///
/// Dropping it (the session ended) deletes every unfinished upload.
pub struct DropFs {
    root: Arc<DropRoot>,
    max_upload_bytes: u64,
    handles: HashMap<String, OpenHandle>,
    /// The upload gathering writes, if any: one at a time per session
    /// ([`handles::Upload::write`]).
    gathering: Option<String>,
    /// Uploads closed under a temporary name, waiting for their rename; those delivered.
    parked: Parked,
    next_handle: u64,
    initialized: bool,
    span: Span,
    /// Requests refused so far in this session (see [`DropFs::log_refusal`]).
    refusals: AtomicU64,
    /// Keeps the server's task tracker waiting until this session's cleanup has run.
    _tracker: Option<TaskTrackerToken>,
}

impl Drop for DropFs {
    fn drop(&mut self) {
        self.root
            .open_handles
            .fetch_sub(self.handles.len(), Ordering::AcqRel);
        let refused = *self.refusals.get_mut();
        if refused > REFUSALS_LOGGED {
            tracing::warn!(parent: &self.span, refused, logged = REFUSALS_LOGGED,
                "SFTP session ended after many refused requests");
        }
    }
}

impl DropFs {
    /// A session confined to `root`; logs go to `span` (the connection's span).
    pub fn new(
        root: Arc<DropRoot>,
        max_upload_bytes: u64,
        span: Span,
        tracker: Option<TaskTrackerToken>,
    ) -> DropFs {
        DropFs {
            root,
            max_upload_bytes,
            handles: HashMap::new(),
            gathering: None,
            parked: Parked::default(),
            next_handle: 0,
            initialized: false,
            span,
            refusals: AtomicU64::new(0),
            _tracker: tracker,
        }
    }

    /// Whether another handle may be opened (checked before any work is done for it).
    fn room_for_a_handle(&self) -> Result<(), StatusReply> {
        if self.handles.len() >= MAX_OPEN_HANDLES {
            return Err(failure("too many open handles"));
        }
        if self.root.open_handles.load(Ordering::Relaxed) >= MAX_OPEN_HANDLES_TOTAL {
            return Err(failure(
                "too many open handles on this server; try again later",
            ));
        }
        Ok(())
    }

    fn insert(&mut self, handle: OpenHandle) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_OPEN_HANDLES {
            return Err(failure("too many open handles"));
        }
        self.root
            .open_handles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_OPEN_HANDLES_TOTAL).then_some(n + 1)
            })
            .map_err(|_| failure("too many open handles on this server; try again later"))?;
        self.next_handle += 1;
        let key = self.next_handle.to_string();
        self.handles.insert(key.clone(), handle);
        Ok(key)
    }

    fn refuse(&self, op: &'static str, path: &str, reason: &str) -> StatusReply {
        self.log_refusal(op, path, reason);
        denied(reason)
    }

    /// Logs a refused request; after [`REFUSALS_LOGGED`] in one session, only counts them
    /// (the count is logged when the session ends), so a client cannot flood the log.
    fn log_refusal(&self, op: &str, path: &str, reason: &str) {
        let n = self.refusals.fetch_add(1, Ordering::Relaxed);
        if n < REFUSALS_LOGGED {
            tracing::info!(parent: &self.span, op, path = %crate::logging::ClientText(&truncate(path)), reason, "request refused");
        } else if n == REFUSALS_LOGGED {
            tracing::warn!(parent: &self.span,
                "many refused requests: further ones in this session are only counted");
        }
    }

    async fn open_upload(
        &mut self,
        target: Target,
        pflags: OpenFlags,
    ) -> Result<String, StatusReply> {
        let path = target.virtual_path();
        let name = match &target {
            Target::Entry {
                area: Area::Inbox,
                rel,
            } if rel.len() == 1 => rel[0].clone(),
            Target::Entry {
                area: Area::Inbox, ..
            } => {
                return Err(self.refuse("open", &path, "no subdirectories in /inbox"));
            }
            _ => return Err(self.refuse("open", &path, "files can only be written in /inbox")),
        };
        if let Some(why) = refused_open(pflags) {
            return Err(self.refuse("open", &path, why));
        }
        let kind = check_upload_name(&name).inspect_err(|e| {
            self.log_refusal("open", &path, e.error_message.as_deref().unwrap_or(""));
        })?;
        let temporary = kind == UploadName::Temporary;
        if temporary && self.parked.has(&name) {
            return Err(self.refuse(
                "open",
                &path,
                "a file of that name exists; overwriting is refused",
            ));
        }
        // Those open under a temporary name count too: each waits once closed.
        let open_temporary = self
            .handles
            .values()
            .filter(|h| matches!(h, OpenHandle::Upload(u) if u.temporary))
            .count();
        if temporary && self.parked.waiting() + open_temporary >= parked::MAX_WAITING {
            return Err(failure(
                "too many uploads in this session wait for their rename to a final name",
            ));
        }

        let inbox = self.root.area_dir(Area::Inbox);
        let root = self.root.path().to_path_buf();
        let name2 = name.clone();
        let (told, span) = (self.root.clone(), self.span.clone());
        let (file, temp, dest) = blocking(move || {
            walk(&root, Area::Inbox, &[])?;
            let dest = inbox.join(&name2);
            // A temporary name never reaches inbox/: it waits in this session alone.
            match fs::symlink_metadata(&dest) {
                Ok(_) if !temporary => {
                    return Err(denied("a file of that name exists; overwriting is refused"));
                }
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_status(&e)),
                _ => {}
            }
            for _ in 0..8 {
                let temp = inbox.join(temp_name());
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    // As every roster and report autoprov files (group autoprov reads
                    // processed/): an upload's had been 0600, a `process`'s 0640.
                    .mode(0o640)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&temp)
                {
                    Ok(f) => return Ok((f, temp, dest)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    // No room for the file itself (no inode left): told as a write's.
                    Err(e) => {
                        told.disk_failed(&span, &name2, &e);
                        return Err(io_status(&e));
                    }
                }
            }
            Err(failure("could not create a temporary file"))
        })
        .await
        .inspect_err(|e| {
            if e.status_code == StatusCode::PermissionDenied {
                self.log_refusal("open", &path, e.error_message.as_deref().unwrap_or(""));
            }
        })?;

        tracing::info!(parent: &self.span, file = %crate::logging::ClientText(&name), "upload started");
        let mut upload = Upload::new(name, temp, dest, file, self.span.clone());
        upload.temporary = temporary;
        upload.root = Some(self.root.clone());
        self.insert(OpenHandle::Upload(upload))
    }

    async fn open_read(&mut self, target: Target) -> Result<String, StatusReply> {
        let path = target.virtual_path();
        let (area, rel) = match target {
            Target::Entry { area, rel } => (area, rel),
            _ => return Err(failure("is a directory")),
        };
        if area == Area::Inbox {
            return Err(self.refuse("open", &path, "files in /inbox cannot be read"));
        }
        let root = self.root.path().to_path_buf();
        let file = blocking(move || {
            let (p, md) = walk(&root, area, &rel)?;
            if !md.is_file() {
                return Err(failure("not a regular file"));
            }
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(&p)
                .map_err(|e| io_status(&e))?;
            // The file opened must be the one inspected (no swap in between).
            let opened = file.metadata().map_err(|e| io_status(&e))?;
            if !opened.is_file() || opened.ino() != md.ino() || opened.dev() != md.dev() {
                return Err(denied("file changed while being opened"));
            }
            Ok(file)
        })
        .await
        .inspect_err(|e| {
            if e.status_code == StatusCode::PermissionDenied {
                self.log_refusal("open", &path, e.error_message.as_deref().unwrap_or(""));
            }
        })?;
        tracing::info!(parent: &self.span, path = %crate::logging::ClientText(&path), "download started");
        self.insert(OpenHandle::Read {
            file: Arc::new(file),
        })
    }

    /// Keeps `upload`, closed under a temporary name, for this session to rename.
    async fn park(&mut self, id: u32, mut upload: Upload) -> Result<Status, StatusReply> {
        if self.parked.has(&upload.name) {
            upload.discard("another upload of that name waits for its rename");
            return Err(failure(
                "another upload of that name waits for its rename; upload discarded",
            ));
        }
        let span = self.span.clone();
        let (name, (temp, md)) = blocking(move || {
            let parked = upload
                .park()
                .inspect_err(|_| upload.discard("close failed"));
            Ok((upload.name.clone(), parked?))
        })
        .await?;
        tracing::info!(parent: &self.span, file = %crate::logging::ClientText(&name), bytes = md.len(),
            "upload closed under a temporary name; it is delivered when renamed to its final name");
        self.parked
            .park(name.clone(), Waiting::new(&name, temp, attrs_of(&md), span));
        Ok(ok_status(id))
    }

    /// Renames this session's upload waiting under the temporary name `from` to the final
    /// name `to` in `inbox/`, which delivers it; any other rename is refused.
    async fn name_upload(&mut self, from: &str, to: &str) -> Result<(), StatusReply> {
        let named = resolve(from)
            .ok()
            .and_then(|t| inbox_name(&t).map(str::to_string));
        let waiting = named.clone().filter(|name| self.parked.has(name));
        let Some(old) = waiting else {
            // Its own upload still open: closed first, then renamed (the reason below had
            // described what the client was doing).
            let still_open = named.is_some_and(|name| {
                self.handles
                    .values()
                    .any(|h| matches!(h, OpenHandle::Upload(u) if u.temporary && u.name == name))
            });
            if still_open {
                return Err(self.refuse(
                    "rename",
                    from,
                    "the upload is still open: close it, then rename it to its final name",
                ));
            }
            return Err(self.refuse(
                "rename",
                from,
                "renaming is allowed only for an upload of this session, from its temporary \
                 name (.part, .filepart, .tmp, .partial) to its final name in /inbox",
            ));
        };
        let target = resolve(to).inspect_err(|e| {
            self.log_refusal("rename", to, e.error_message.as_deref().unwrap_or(""));
        })?;
        let Some(new) = inbox_name(&target).map(str::to_string) else {
            return Err(self.refuse("rename", to, "an upload is renamed to a name in /inbox"));
        };
        match check_upload_name(&new) {
            Ok(UploadName::Final) => {}
            Ok(UploadName::Temporary) => {
                return Err(self.refuse(
                    "rename",
                    to,
                    "the new name must be the final one, not another temporary name",
                ));
            }
            Err(e) => {
                self.log_refusal("rename", to, e.error_message.as_deref().unwrap_or(""));
                return Err(e);
            }
        }
        let waiting = self.parked.take(&old).expect("checked above");
        let size = waiting.size();
        let root = self.root.path().to_path_buf();
        let dest = self.root.area_dir(Area::Inbox).join(&new);
        let (told, span, name) = (self.root.clone(), self.span.clone(), new.clone());
        let (waiting, named) = blocking(move || {
            let mut waiting = waiting;
            let named = walk(&root, Area::Inbox, &[]).and_then(|_| {
                // The disk's trouble at the rename is told as a write's.
                waiting.name_into(&dest, |e| told.disk_failed(&span, &name, e))
            });
            Ok((waiting, named))
        })
        .await?;
        match named {
            Ok(attrs) => {
                tracing::info!(parent: &self.span, file = %crate::logging::ClientText(&new), from = %crate::logging::ClientText(&old), bytes = size,
                    "upload complete (renamed from its temporary name)");
                self.parked.delivered(new, attrs, false);
                Ok(())
            }
            Err(e) => {
                self.parked.park(old, waiting);
                Err(e)
            }
        }
    }

    /// Whether `target` is a name in `inbox/` this session uploaded: waiting for its rename,
    /// or delivered.
    fn owns(&self, target: &Target) -> bool {
        inbox_name(target).is_some_and(|name| self.parked.attrs(name).is_some())
    }

    async fn stat_path(&self, path: String) -> Result<FileAttributes, StatusReply> {
        let target = resolve(&path).inspect_err(|e| {
            self.log_refusal("stat", &path, e.error_message.as_deref().unwrap_or(""));
        })?;
        // This session's upload kept under another name: its own attributes, not those of
        // the file that took its name.
        if let Some(attrs) = inbox_name(&target).and_then(|name| self.parked.kept_elsewhere(name)) {
            return Ok(attrs);
        }
        let own = inbox_name(&target).and_then(|name| self.parked.attrs(name));
        let root = self.root.path().to_path_buf();
        match (blocking(move || target_metadata(&root, &target)).await, own) {
            (Ok(md), _) => Ok(attrs_of(&md)),
            // This session's upload waiting for its rename, or delivered and already taken
            // from inbox/ by the engine.
            (Err(e), Some(attrs)) if e.status_code == StatusCode::NoSuchFile => Ok(attrs),
            (Err(e), _) => Err(e),
        }
    }
}

/// The name of a file directly in `inbox/` that `target` is, if it is one.
fn inbox_name(target: &Target) -> Option<&str> {
    match target {
        Target::Entry {
            area: Area::Inbox,
            rel,
        } if rel.len() == 1 => Some(&rel[0]),
        _ => None,
    }
}

/// A client-supplied string shortened, and its control characters escaped, for a log line:
/// a refused path had reached the log raw, and a line feed in it had written a line of
/// the client's own (a forged "upload complete").
fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    let mut end = MAX.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = String::with_capacity(end);
    for c in s[..end].chars() {
        match crate::util::breaks_a_line(c) {
            true => cut.extend(c.escape_default()),
            false => cut.push(c),
        }
    }
    match end < s.len() {
        true => format!("{cut}..."),
        false => cut,
    }
}

/// Why an open of a name in /inbox with `pflags` is refused, if it is: each says its own
/// cause (an append to a new name had read "only new files can be written", which it was).
fn refused_open(pflags: OpenFlags) -> Option<&'static str> {
    if pflags.contains(OpenFlags::READ) {
        Some("files in /inbox cannot be read")
    } else if pflags.contains(OpenFlags::APPEND) {
        Some("appending is not supported: upload the whole file to a new name")
    } else if !pflags.contains(OpenFlags::CREATE) {
        Some("only new files can be written")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn client_text_is_logged_on_one_line_and_short() {
        assert_eq!(truncate("inbox/r.csv"), "inbox/r.csv");
        assert_eq!(
            truncate("inbox/r.csv\n2026-12-07T10:00:00Z  INFO upload complete\r\u{1b}[31m"),
            "inbox/r.csv\\n2026-12-07T10:00:00Z  INFO upload complete\\r\\u{1b}[31m"
        );
        // Unicode's line separator and a direction override are escaped as well.
        assert_eq!(truncate("a\u{2028}b\u{202e}c"), "a\\u{2028}b\\u{202e}c");
        let long = "é".repeat(150);
        let cut = truncate(&long);
        assert!(cut.ends_with("...") && cut.len() <= 203, "{cut}");
    }
}
