//! The confined virtual filesystem an SFTP user sees: `/` is the drop directory.
//!
//! The client sees exactly four directories, `/inbox`, `/processed`, `/rejected` and
//! `/held`. It may list them, read files below the last three, and create new files in
//! `/inbox`. Everything else — delete, rename, mkdir, setstat, links, overwriting, reading
//! the inbox, leaving the root, following a symlink found on disk — is refused with
//! `SSH_FX_PERMISSION_DENIED`.
//!
//! Uploads are written to a hidden temporary file (`inbox/.upload-<random>`), fsync'ed and
//! renamed to their final name (without replacing anything) when the client closes the
//! handle successfully; an upload that is cut off (too large, write error) or whose session
//! ends before the close is deleted. So a name appears in `inbox/` only complete, and only
//! by a rename — which is what the inbox watcher takes as "complete".

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File as SftpFile, FileAttributes, Handle, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};
use russh_sftp::server::{Handler, StatusReply};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Span;

/// Prefix of the temporary names uploads are written under inside `inbox/`.
pub const TEMP_PREFIX: &str = ".upload-";
/// Largest SFTP packet a client may send; the `limits@openssh.com` answer and the framing
/// guard in the SFTP server use the same value (OpenSSH's own limit).
pub const MAX_PACKET_LEN: u32 = 256 * 1024;
/// Largest read or write payload per request (a packet minus room for its header).
pub const MAX_IO_LEN: u32 = MAX_PACKET_LEN - 1024;
/// Open file and directory handles allowed per SFTP session.
pub const MAX_OPEN_HANDLES: usize = 64;
/// Open handles allowed in all sessions together. Each holds a file descriptor; with the
/// connections' sockets (at most 256) this stays under the usual soft limit of 1024
/// descriptors, so that sessions hoarding handles cannot starve the daemon of descriptors
/// (accept, the store, the inbox watcher). Eight sessions at their cap reach it.
pub const MAX_OPEN_HANDLES_TOTAL: usize = 512;
/// Refused requests logged one by one per session; later ones are only counted.
const REFUSALS_LOGGED: u64 = 32;
/// Directory entries returned per READDIR answer.
const READDIR_BATCH: usize = 128;

/// One of the four directories of the drop root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// New uploads land here; write-only for clients.
    Inbox,
    /// Files the daemon applied, with their reports; read-only for clients.
    Processed,
    /// Files the daemon refused, with their reports; read-only for clients.
    Rejected,
    /// Files waiting for an operator's decision; read-only for clients.
    Held,
}

impl Area {
    /// All areas, in the order they are listed at `/`.
    pub const ALL: [Area; 4] = [Area::Inbox, Area::Processed, Area::Rejected, Area::Held];

    /// The directory name of the area below the drop root.
    pub fn dir_name(self) -> &'static str {
        match self {
            Area::Inbox => "inbox",
            Area::Processed => "processed",
            Area::Rejected => "rejected",
            Area::Held => "held",
        }
    }

    fn from_name(name: &str) -> Option<Area> {
        Area::ALL.into_iter().find(|a| a.dir_name() == name)
    }
}

/// The drop directory on disk, prepared and canonicalised once at start-up.
#[derive(Debug)]
pub struct DropRoot {
    root: PathBuf,
    /// Handles open in all sessions on this root (see [`MAX_OPEN_HANDLES_TOTAL`]).
    open_handles: AtomicUsize,
}

impl DropRoot {
    /// Creates the root and any missing area directory, refuses symlinked areas, and deletes
    /// temporary upload files left by a previous run (their sessions are gone).
    pub fn prepare(root: &Path) -> anyhow::Result<DropRoot> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(root)
            .with_context(|| format!("while creating the drop directory {}", root.display()))?;
        let root = fs::canonicalize(root)
            .with_context(|| format!("while resolving the drop directory {}", root.display()))?;
        for area in Area::ALL {
            let dir = root.join(area.dir_name());
            match fs::symlink_metadata(&dir) {
                Ok(md) if md.file_type().is_symlink() => bail!(
                    "{} is a symbolic link; the drop directories must be real directories",
                    dir.display()
                ),
                Ok(md) if !md.is_dir() => bail!("{} exists and is not a directory", dir.display()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
                    .mode(0o750)
                    .create(&dir)
                    .with_context(|| format!("while creating {}", dir.display()))?,
                Err(e) => {
                    return Err(e).with_context(|| format!("while inspecting {}", dir.display()));
                }
            }
        }
        let this = DropRoot {
            root,
            open_handles: AtomicUsize::new(0),
        };
        this.sweep_stale_uploads()?;
        Ok(this)
    }

    /// The canonical path of the drop root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn area_dir(&self, area: Area) -> PathBuf {
        self.root.join(area.dir_name())
    }

    fn sweep_stale_uploads(&self) -> anyhow::Result<()> {
        let inbox = self.area_dir(Area::Inbox);
        let entries =
            fs::read_dir(&inbox).with_context(|| format!("while listing {}", inbox.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("while listing {}", inbox.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => tracing::warn!(path = %path.display(),
                        "deleted an unfinished upload left by a previous run"),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e,
                        "could not delete an unfinished upload left by a previous run"),
                }
            }
        }
        Ok(())
    }
}

/// A client path, resolved lexically beneath the virtual root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/` itself.
    Root,
    /// One of the four area directories.
    Area(Area),
    /// Something below an area; `rel` has at least one component.
    Entry {
        /// The area the path is in.
        area: Area,
        /// Path components below the area directory (no `.`, `..` or empty parts).
        rel: Vec<String>,
    },
}

impl Target {
    /// The canonical virtual path, as answered to REALPATH.
    pub fn virtual_path(&self) -> String {
        match self {
            Target::Root => "/".to_string(),
            Target::Area(a) => format!("/{}", a.dir_name()),
            Target::Entry { area, rel } => format!("/{}/{}", area.dir_name(), rel.join("/")),
        }
    }
}

/// Resolves a client path beneath the virtual root.
///
/// Relative paths start at `/` (the session's working directory). `.` and empty parts are
/// dropped, `..` goes up one level but never above `/`; a top-level name other than the
/// four areas, a hidden name (starting with `.`) and a NUL byte are refused.
pub fn resolve(path: &str) -> Result<Target, StatusReply> {
    if path.contains('\0') {
        return Err(denied("path contains a NUL byte"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(denied("path leaves the root directory"));
                }
            }
            p if p.starts_with('.') => return Err(denied("hidden names are not served")),
            p => parts.push(p),
        }
    }
    let Some((first, rest)) = parts.split_first() else {
        return Ok(Target::Root);
    };
    let Some(area) = Area::from_name(first) else {
        return Err(denied("only /inbox, /processed, /rejected and /held exist"));
    };
    if rest.is_empty() {
        Ok(Target::Area(area))
    } else {
        Ok(Target::Entry {
            area,
            rel: rest.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// Checks a name a client wants to create in `inbox/`.
///
/// Refused: hidden names and the partial-file suffixes (the inbox watcher ignores them, so
/// they would never be processed; the server already makes every upload atomic), control
/// characters, and names longer than the filesystem allows.
pub fn check_upload_name(name: &str) -> Result<(), StatusReply> {
    if crate::layout::is_ignored(name) {
        return Err(denied(
            "temporary or hidden names are not accepted; upload under the final name \
             (the server already makes uploads atomic)",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(denied("file names may not contain control characters"));
    }
    if name.len() > 255 {
        return Err(denied("file name too long"));
    }
    Ok(())
}

fn denied(message: &str) -> StatusReply {
    StatusCode::PermissionDenied.with_message(message)
}

fn failure(message: &str) -> StatusReply {
    StatusCode::Failure.with_message(message)
}

fn no_such_file() -> StatusReply {
    StatusCode::NoSuchFile.with_message("no such file")
}

/// Maps an I/O error to a status without revealing server-side paths.
fn io_status(e: &io::Error) -> StatusReply {
    match e.kind() {
        io::ErrorKind::NotFound => no_such_file(),
        io::ErrorKind::PermissionDenied => denied("permission denied"),
        _ => failure(&format!("I/O error: {}", e.kind())),
    }
}

/// Runs blocking filesystem work off the async runtime; a panic in it becomes a Failure.
async fn blocking<T, F>(f: F) -> Result<T, StatusReply>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StatusReply> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(_) => Err(failure("internal error")),
    }
}

/// Walks `rel` below the area directory without following symlinks; returns the path and
/// metadata of the last component. A symlink anywhere on the way is refused.
fn walk(root: &Path, area: Area, rel: &[String]) -> Result<(PathBuf, Metadata), StatusReply> {
    let mut path = root.join(area.dir_name());
    let mut md = fs::symlink_metadata(&path).map_err(|e| io_status(&e))?;
    if md.file_type().is_symlink() {
        return Err(denied("symbolic links are not followed"));
    }
    for part in rel {
        if !md.is_dir() {
            return Err(no_such_file());
        }
        path.push(part);
        md = fs::symlink_metadata(&path).map_err(|e| io_status(&e))?;
        if md.file_type().is_symlink() {
            return Err(denied("symbolic links are not followed"));
        }
    }
    if !md.is_dir() && !md.is_file() {
        return Err(denied("only regular files and directories are served"));
    }
    Ok((path, md))
}

fn target_metadata(root: &Path, target: &Target) -> Result<Metadata, StatusReply> {
    match target {
        Target::Root => fs::symlink_metadata(root).map_err(|e| io_status(&e)),
        Target::Area(area) => walk(root, *area, &[]).map(|(_, md)| md),
        Target::Entry { area, rel } => walk(root, *area, rel).map(|(_, md)| md),
    }
}

fn attrs_of(md: &Metadata) -> FileAttributes {
    FileAttributes::from(md)
}

/// The next batch (at most [`READDIR_BATCH`]) of entries a client may see — regular files
/// and directories with UTF-8, non-hidden names — from an open directory stream; empty at
/// the end. Entries come in the order the filesystem gives them (clients sort).
fn next_entries(dir: &mut fs::ReadDir) -> Vec<SftpFile> {
    let mut files = Vec::new();
    while files.len() < READDIR_BATCH {
        let Some(entry) = dir.next() else { break };
        let Ok(entry) = entry else { continue };
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not UTF-8: SFTPv3 names are UTF-8 strings
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(md) = fs::symlink_metadata(entry.path()) else {
            continue; // vanished meanwhile
        };
        if md.is_file() || md.is_dir() {
            files.push(SftpFile::new(name, attrs_of(&md)));
        }
    }
    files
}

fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{TEMP_PREFIX}{:016x}", h.finish())
}

/// An upload in progress: a temporary file deleted on drop unless committed.
struct Upload {
    /// Final name inside `inbox/`.
    name: String,
    temp: PathBuf,
    dest: PathBuf,
    file: Arc<File>,
    /// Highest byte offset written so far.
    extent: u64,
    /// Set when the upload was cut off; the temporary file is already gone.
    failed: Option<&'static str>,
    committed: bool,
    started: Instant,
    span: Span,
}

impl Upload {
    /// Deletes the temporary file and remembers why, so later writes and the close fail.
    fn discard(&mut self, reason: &'static str) {
        if self.failed.is_none() {
            self.failed = Some(reason);
            let _ = fs::remove_file(&self.temp);
            tracing::warn!(parent: &self.span, file = %self.name, bytes = self.extent, reason,
                "upload discarded");
        }
    }

    /// Flushes the file to disk and renames it into place without replacing anything.
    fn commit(&mut self) -> Result<u64, StatusReply> {
        self.file.sync_all().map_err(|e| io_status(&e))?;
        let size = self.file.metadata().map_err(|e| io_status(&e))?.len();
        match crate::util::rename_noreplace(&self.temp, &self.dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(failure(
                    "a file of that name arrived in /inbox meanwhile; upload discarded",
                ));
            }
            Err(e) => return Err(io_status(&e)),
        }
        self.committed = true;
        if let Some(dir) = self.dest.parent() {
            // Make the rename itself durable; the data already is.
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!(parent: &self.span, error = %e, "could not fsync the inbox directory");
            }
        }
        Ok(size)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed && self.failed.is_none() {
            let _ = fs::remove_file(&self.temp);
            tracing::warn!(parent: &self.span, file = %self.name, bytes = self.extent,
                "upload discarded: the session ended before the file was closed");
        }
    }
}

enum OpenHandle {
    Dir {
        listing: Listing,
        attrs: FileAttributes,
    },
    Read {
        file: Arc<File>,
    },
    Upload(Upload),
}

/// What an open directory handle still has to list.
///
/// Area directories are streamed from the filesystem a batch per READDIR rather than read
/// whole at OPENDIR: a client holding its 64 handles on a directory of many thousand
/// files then costs 64 directory streams (a few dozen KiB each), not 64 copies of the
/// listing.
enum Listing {
    /// The root's four areas.
    Fixed(std::vec::IntoIter<SftpFile>),
    /// An open directory stream; `None` once it has ended (or while a batch is read).
    Stream(Option<fs::ReadDir>),
}

/// One SFTP session's view of the drop root; implements the russh-sftp server handler.
///
/// Dropping it (the session ended) deletes every unfinished upload.
pub struct DropFs {
    root: Arc<DropRoot>,
    max_upload_bytes: u64,
    handles: HashMap<String, OpenHandle>,
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
            tracing::info!(parent: &self.span, op, path = %truncate(path), reason, "request refused");
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
        if pflags.contains(OpenFlags::READ) {
            return Err(self.refuse("open", &path, "files in /inbox cannot be read"));
        }
        if pflags.contains(OpenFlags::APPEND) || !pflags.contains(OpenFlags::CREATE) {
            return Err(self.refuse("open", &path, "only new files can be written"));
        }
        check_upload_name(&name).inspect_err(|e| {
            self.log_refusal("open", &path, e.error_message.as_deref().unwrap_or(""));
        })?;

        let inbox = self.root.area_dir(Area::Inbox);
        let root = self.root.path().to_path_buf();
        let name2 = name.clone();
        let (file, temp, dest) = blocking(move || {
            walk(&root, Area::Inbox, &[])?;
            let dest = inbox.join(&name2);
            match fs::symlink_metadata(&dest) {
                Ok(_) => return Err(denied("a file of that name exists; overwriting is refused")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_status(&e)),
            }
            for _ in 0..8 {
                let temp = inbox.join(temp_name());
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&temp)
                {
                    Ok(f) => return Ok((f, temp, dest)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io_status(&e)),
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

        tracing::info!(parent: &self.span, file = %name, "upload started");
        let upload = Upload {
            name,
            temp,
            dest,
            file: Arc::new(file),
            extent: 0,
            failed: None,
            committed: false,
            started: Instant::now(),
            span: self.span.clone(),
        };
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
        tracing::info!(parent: &self.span, path = %path, "download started");
        self.insert(OpenHandle::Read {
            file: Arc::new(file),
        })
    }

    async fn stat_path(&self, path: String) -> Result<FileAttributes, StatusReply> {
        let target = resolve(&path).inspect_err(|e| {
            self.log_refusal("stat", &path, e.error_message.as_deref().unwrap_or(""));
        })?;
        let root = self.root.path().to_path_buf();
        let md = blocking(move || target_metadata(&root, &target)).await?;
        Ok(attrs_of(&md))
    }
}

/// Shortens a client-supplied string for logging.
fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn ok_status(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

fn limits_reply() -> Vec<u8> {
    let mut data = Vec::with_capacity(32);
    for v in [
        u64::from(MAX_PACKET_LEN),
        u64::from(MAX_IO_LEN),
        u64::from(MAX_IO_LEN),
        MAX_OPEN_HANDLES as u64,
    ] {
        data.extend_from_slice(&v.to_be_bytes());
    }
    data
}

impl Handler for DropFs {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        if self.initialized {
            return Err(failure("duplicate init"));
        }
        self.initialized = true;
        tracing::debug!(parent: &self.span, client_version = version, "sftp session initialised");
        let mut reply = Version::new();
        reply
            .extensions
            .insert(russh_sftp::extensions::LIMITS.to_string(), "1".to_string());
        Ok(reply)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let target = resolve(&filename).inspect_err(|e| {
            self.log_refusal("open", &filename, e.error_message.as_deref().unwrap_or(""));
        })?;
        self.room_for_a_handle()?;
        let writes = pflags.intersects(
            OpenFlags::WRITE
                | OpenFlags::APPEND
                | OpenFlags::CREATE
                | OpenFlags::TRUNCATE
                | OpenFlags::EXCLUDE,
        );
        let handle = if writes {
            self.open_upload(target, pflags).await?
        } else {
            self.open_read(target).await?
        };
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        let Some(open) = self.handles.remove(&handle) else {
            return Err(failure("invalid handle"));
        };
        self.root.open_handles.fetch_sub(1, Ordering::AcqRel);
        let OpenHandle::Upload(mut upload) = open else {
            return Ok(ok_status(id));
        };
        if let Some(reason) = upload.failed {
            return Err(failure(&format!("upload discarded: {reason}")));
        }
        let span = self.span.clone();
        blocking(move || {
            let name = upload.name.clone();
            let secs = upload.started.elapsed().as_secs_f64();
            match upload.commit() {
                Ok(size) => {
                    tracing::info!(parent: &span, file = %name, bytes = size,
                        seconds = format!("{secs:.3}"), "upload complete");
                    Ok(ok_status(id))
                }
                Err(e) => {
                    upload.failed = Some("close failed");
                    let _ = fs::remove_file(&upload.temp);
                    tracing::warn!(parent: &span, file = %name,
                        reason = e.error_message.as_deref().unwrap_or(""), "upload discarded at close");
                    Err(e)
                }
            }
        })
        .await
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = match self.handles.get(&handle) {
            Some(OpenHandle::Read { file }) => file.clone(),
            Some(_) => return Err(denied("handle not open for reading")),
            None => return Err(failure("invalid handle")),
        };
        let len = len.min(MAX_IO_LEN) as usize;
        let data = blocking(move || {
            let mut buf = vec![0u8; len];
            let mut n = 0;
            while n < len {
                match file.read_at(&mut buf[n..], offset + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_status(&e)),
                }
            }
            buf.truncate(n);
            Ok(buf)
        })
        .await?;
        if data.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let max = self.max_upload_bytes;
        let upload = match self.handles.get_mut(&handle) {
            Some(OpenHandle::Upload(u)) => u,
            Some(_) => return Err(denied("handle not open for writing")),
            None => return Err(failure("invalid handle")),
        };
        if let Some(reason) = upload.failed {
            return Err(failure(&format!("upload discarded: {reason}")));
        }
        let end = match offset.checked_add(data.len() as u64) {
            Some(end) if end <= max => end,
            _ => {
                upload.discard("larger than the maximum upload size");
                return Err(failure(&format!(
                    "upload larger than the maximum of {max} bytes; discarded"
                )));
            }
        };
        let file = upload.file.clone();
        let result = blocking(move || {
            file.write_all_at(&data, offset)
                .map_err(|e| failure(&format!("write failed: {}", e.kind())))
        })
        .await;
        match result {
            Ok(()) => {
                upload.extent = upload.extent.max(end);
                Ok(ok_status(id))
            }
            Err(e) => {
                upload.discard("write error");
                Err(e)
            }
        }
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = self.stat_path(path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = self.stat_path(path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let file = match self.handles.get(&handle) {
            Some(OpenHandle::Read { file }) => file.clone(),
            Some(OpenHandle::Upload(u)) => u.file.clone(),
            Some(OpenHandle::Dir { attrs, .. }) => {
                return Ok(Attrs {
                    id,
                    attrs: attrs.clone(),
                });
            }
            None => return Err(failure("invalid handle")),
        };
        let md = blocking(move || file.metadata().map_err(|e| io_status(&e))).await?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&md),
        })
    }

    async fn setstat(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("setstat", &path, "changing attributes is not allowed"))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        match self.handles.get(&handle) {
            // Clients that preserve times/modes (sftp -p, WinSCP) would otherwise fail the
            // whole transfer; the request is accepted and ignored for our own new upload.
            Some(OpenHandle::Upload(_)) => Ok(ok_status(id)),
            Some(_) => Err(self.refuse("fsetstat", &handle, "changing attributes is not allowed")),
            None => Err(failure("invalid handle")),
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let target = resolve(&path).inspect_err(|e| {
            self.log_refusal("opendir", &path, e.error_message.as_deref().unwrap_or(""));
        })?;
        if let Target::Entry {
            area: Area::Inbox, ..
        } = target
        {
            return Err(self.refuse("opendir", &path, "no subdirectories in /inbox"));
        }
        // Before listing: a client asking again and again must not cost a listing each time.
        self.room_for_a_handle()?;
        let root = self.root.path().to_path_buf();
        let (listing, attrs) = blocking(move || match target {
            Target::Root => {
                let md = fs::symlink_metadata(&root).map_err(|e| io_status(&e))?;
                let mut entries = Vec::new();
                for area in Area::ALL {
                    if let Ok((_, md)) = walk(&root, area, &[]) {
                        entries.push(SftpFile::new(area.dir_name(), attrs_of(&md)));
                    }
                }
                Ok((Listing::Fixed(entries.into_iter()), attrs_of(&md)))
            }
            Target::Area(area) => {
                let (p, md) = walk(&root, area, &[])?;
                let stream = fs::read_dir(&p).map_err(|e| io_status(&e))?;
                Ok((Listing::Stream(Some(stream)), attrs_of(&md)))
            }
            Target::Entry { area, rel } => {
                let (p, md) = walk(&root, area, &rel)?;
                if !md.is_dir() {
                    return Err(failure("not a directory"));
                }
                let stream = fs::read_dir(&p).map_err(|e| io_status(&e))?;
                Ok((Listing::Stream(Some(stream)), attrs_of(&md)))
            }
        })
        .await?;
        let handle = self.insert(OpenHandle::Dir { listing, attrs })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let stream = match self.handles.get_mut(&handle) {
            Some(OpenHandle::Dir {
                listing: Listing::Fixed(entries),
                ..
            }) => {
                let files: Vec<SftpFile> = entries.by_ref().take(READDIR_BATCH).collect();
                if files.is_empty() {
                    return Err(StatusCode::Eof.into());
                }
                return Ok(Name { id, files });
            }
            Some(OpenHandle::Dir {
                listing: Listing::Stream(stream),
                ..
            }) => stream.take(),
            Some(_) => return Err(failure("not a directory handle")),
            None => return Err(failure("invalid handle")),
        };
        let Some(mut stream) = stream else {
            return Err(StatusCode::Eof.into());
        };
        let (stream, files) = blocking(move || {
            let files = next_entries(&mut stream);
            Ok((stream, files))
        })
        .await?;
        if files.is_empty() {
            // The end: the directory stream is closed now rather than at CLOSE.
            return Err(StatusCode::Eof.into());
        }
        if let Some(OpenHandle::Dir {
            listing: Listing::Stream(slot),
            ..
        }) = self.handles.get_mut(&handle)
        {
            *slot = Some(stream);
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, _id: u32, filename: String) -> Result<Status, Self::Error> {
        Err(self.refuse("remove", &filename, "deleting files is not allowed"))
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("mkdir", &path, "creating directories is not allowed"))
    }

    async fn rmdir(&mut self, _id: u32, path: String) -> Result<Status, Self::Error> {
        Err(self.refuse("rmdir", &path, "removing directories is not allowed"))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = resolve(&path).inspect_err(|e| {
            self.log_refusal("realpath", &path, e.error_message.as_deref().unwrap_or(""));
        })?;
        Ok(Name {
            id,
            files: vec![SftpFile::dummy(target.virtual_path())],
        })
    }

    async fn rename(
        &mut self,
        _id: u32,
        oldpath: String,
        _newpath: String,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("rename", &oldpath, "renaming files is not allowed"))
    }

    async fn readlink(&mut self, _id: u32, path: String) -> Result<Name, Self::Error> {
        Err(self.refuse("readlink", &path, "symbolic links are not served"))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        linkpath: String,
        _targetpath: String,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("symlink", &linkpath, "creating links is not allowed"))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        _data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        if request == russh_sftp::extensions::LIMITS {
            return Ok(Packet::ExtendedReply(ExtendedReply {
                id,
                data: limits_reply(),
            }));
        }
        tracing::debug!(parent: &self.span, request = %truncate(&request), "unsupported extension");
        Err(StatusCode::OpUnsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(area: Area, rel: &[&str]) -> Target {
        Target::Entry {
            area,
            rel: rel.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn resolve_table() {
        let ok: &[(&str, Target)] = &[
            ("", Target::Root),
            (".", Target::Root),
            ("/", Target::Root),
            ("//./", Target::Root),
            ("inbox", Target::Area(Area::Inbox)),
            ("/processed/", Target::Area(Area::Processed)),
            ("/inbox/a.csv", entry(Area::Inbox, &["a.csv"])),
            ("held/x/y.csv", entry(Area::Held, &["x", "y.csv"])),
            ("/processed/../inbox/a.csv", entry(Area::Inbox, &["a.csv"])),
            ("/rejected/sub/..", Target::Area(Area::Rejected)),
            ("inbox/a b.csv", entry(Area::Inbox, &["a b.csv"])),
        ];
        for (input, want) in ok {
            assert_eq!(&resolve(input).unwrap(), want, "{input:?}");
        }
        let denied: &[&str] = &[
            "..",
            "/..",
            "../etc/passwd",
            "/inbox/../../etc",
            "/etc/passwd",
            "/home",
            "inboxx",
            "/inbox/.upload-1234",
            "/processed/.hidden",
            "/.ssh",
            "/inbox/a\0b",
        ];
        for input in denied {
            let err = resolve(input).unwrap_err();
            assert_eq!(err.status_code, StatusCode::PermissionDenied, "{input:?}");
        }
    }

    #[test]
    fn virtual_paths_round_trip() {
        for p in ["/", "/inbox", "/held/x/y.csv"] {
            assert_eq!(resolve(p).unwrap().virtual_path(), p);
        }
    }

    #[test]
    fn upload_names() {
        for good in [
            "roster.csv",
            "Roster 2026-11.CSV",
            "a.dryrun.csv",
            "x.partial.csv",
        ] {
            assert!(check_upload_name(good).is_ok(), "{good}");
        }
        for bad in [
            ".hidden.csv",
            "roster.csv.part",
            "roster.csv.PART",
            "roster.csv.Part",
            "roster.FilePart",
            "roster.filepart",
            "roster.tmp",
            "roster.partial",
            "bad\nname.csv",
        ] {
            assert_eq!(
                check_upload_name(bad).unwrap_err().status_code,
                StatusCode::PermissionDenied,
                "{bad:?}"
            );
        }
        assert!(check_upload_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn limits_reply_is_four_big_endian_u64() {
        let data = limits_reply();
        assert_eq!(data.len(), 32);
        assert_eq!(u64::from_be_bytes(data[0..8].try_into().unwrap()), 262144);
        assert_eq!(u64::from_be_bytes(data[8..16].try_into().unwrap()), 261120);
    }

    #[test]
    fn prepare_creates_areas_and_sweeps_stale_temps() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("inbox")).unwrap();
        fs::write(dir.path().join("inbox/.upload-dead"), b"x").unwrap();
        fs::write(dir.path().join("inbox/keep.csv"), b"x").unwrap();
        let root = DropRoot::prepare(dir.path()).unwrap();
        for area in Area::ALL {
            assert!(root.path().join(area.dir_name()).is_dir());
        }
        assert!(!dir.path().join("inbox/.upload-dead").exists());
        assert!(dir.path().join("inbox/keep.csv").exists());
    }

    #[test]
    fn prepare_refuses_a_symlinked_area() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("processed")).unwrap();
        let err = DropRoot::prepare(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
    }

    fn session(dir: &Path, max: u64) -> DropFs {
        let root = Arc::new(DropRoot::prepare(dir).unwrap());
        DropFs::new(root, max, Span::none(), None)
    }

    const NEW: OpenFlags = OpenFlags::WRITE
        .union(OpenFlags::CREATE)
        .union(OpenFlags::TRUNCATE);

    fn inbox_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("inbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn out_of_order_writes_then_close_renames_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let h = fs_
            .open(1, "/inbox/r.csv".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        assert_eq!(inbox_names(dir.path()).len(), 1);
        assert!(inbox_names(dir.path())[0].starts_with(TEMP_PREFIX));
        fs_.write(2, h.clone(), 5, b"world".to_vec()).await.unwrap();
        fs_.write(3, h.clone(), 0, b"hello".to_vec()).await.unwrap();
        fs_.close(4, h).await.unwrap();
        assert_eq!(inbox_names(dir.path()), vec!["r.csv".to_string()]);
        assert_eq!(
            fs::read(dir.path().join("inbox/r.csv")).unwrap(),
            b"helloworld"
        );
    }

    #[tokio::test]
    async fn oversize_write_discards_and_close_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 8);
        let h = fs_
            .open(1, "inbox/big.csv".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        fs_.write(2, h.clone(), 0, b"1234".to_vec()).await.unwrap();
        let e = fs_
            .write(3, h.clone(), 4, b"56789".to_vec())
            .await
            .unwrap_err();
        assert_eq!(e.status_code, StatusCode::Failure);
        assert!(inbox_names(dir.path()).is_empty());
        let e = fs_.write(4, h.clone(), 4, b"5".to_vec()).await.unwrap_err();
        assert_eq!(e.status_code, StatusCode::Failure);
        assert_eq!(
            fs_.close(5, h).await.unwrap_err().status_code,
            StatusCode::Failure
        );
        assert!(inbox_names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn dropping_the_session_deletes_unfinished_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let h = fs_
            .open(1, "inbox/a.csv".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        fs_.write(2, h, 0, b"partial".to_vec()).await.unwrap();
        drop(fs_);
        assert!(inbox_names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn close_fails_when_the_name_was_taken_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let h = fs_
            .open(1, "inbox/a.csv".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        fs_.write(2, h.clone(), 0, b"mine".to_vec()).await.unwrap();
        fs::write(dir.path().join("inbox/a.csv"), b"theirs").unwrap();
        assert_eq!(
            fs_.close(3, h).await.unwrap_err().status_code,
            StatusCode::Failure
        );
        assert_eq!(inbox_names(dir.path()), vec!["a.csv".to_string()]);
        assert_eq!(fs::read(dir.path().join("inbox/a.csv")).unwrap(), b"theirs");
    }

    #[tokio::test]
    async fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        fs::write(dir.path().join("inbox/existing.csv"), b"x").unwrap();
        fs::write(dir.path().join("processed/done.csv"), b"x").unwrap();
        let deny = StatusCode::PermissionDenied;
        let attrs = FileAttributes::default;
        let code = |r: Result<Handle, StatusReply>| r.unwrap_err().status_code;
        assert_eq!(
            code(fs_.open(1, "inbox/existing.csv".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(fs_.open(1, "processed/new.csv".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(
                fs_.open(1, "inbox/existing.csv".into(), OpenFlags::READ, attrs())
                    .await
            ),
            deny
        );
        assert_eq!(
            code(fs_.open(1, "inbox/sub/x.csv".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(fs_.open(1, "inbox/x.csv.part".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(
                fs_.open(1, "/etc/passwd".into(), OpenFlags::READ, attrs())
                    .await
            ),
            deny
        );
        let append = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::APPEND;
        assert_eq!(
            code(fs_.open(1, "inbox/n.csv".into(), append, attrs()).await),
            deny
        );
        assert_eq!(
            fs_.remove(1, "processed/done.csv".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.rename(1, "processed/done.csv".into(), "processed/x".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.mkdir(1, "inbox/d".into(), attrs())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.setstat(1, "processed/done.csv".into(), attrs())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.symlink(1, "inbox/l".into(), "/etc".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.readlink(1, "inbox/l".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert!(
            fs_.open(1, "processed/done.csv".into(), OpenFlags::READ, attrs())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn symlinks_on_disk_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("processed/link.csv")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("held/dirlink")).unwrap();
        let r = fs_
            .open(
                1,
                "processed/link.csv".into(),
                OpenFlags::READ,
                FileAttributes::default(),
            )
            .await;
        assert_eq!(r.unwrap_err().status_code, StatusCode::PermissionDenied);
        let r = fs_
            .open(
                1,
                "held/dirlink/passwd".into(),
                OpenFlags::READ,
                FileAttributes::default(),
            )
            .await;
        assert_eq!(r.unwrap_err().status_code, StatusCode::PermissionDenied);
        let r = fs_.stat(1, "processed/link.csv".into()).await;
        assert_eq!(r.unwrap_err().status_code, StatusCode::PermissionDenied);
        let h = fs_.opendir(1, "processed".into()).await.unwrap().handle;
        assert_eq!(
            fs_.readdir(2, h.clone()).await.unwrap_err().status_code,
            StatusCode::Eof
        );
    }

    #[tokio::test]
    async fn a_large_directory_is_streamed_in_batches_then_eof() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let n = READDIR_BATCH * 2 + 5;
        for i in 0..n {
            fs::write(dir.path().join(format!("processed/f{i:04}.csv")), b"x").unwrap();
        }
        fs::write(dir.path().join("processed/.hidden"), b"x").unwrap();
        let h = fs_.opendir(1, "processed".into()).await.unwrap().handle;
        // Files created after OPENDIR may or may not show; none of these is lost.
        let mut names = Vec::new();
        let mut batches = 0;
        loop {
            match fs_.readdir(2, h.clone()).await {
                Ok(name) => {
                    assert!(name.files.len() <= READDIR_BATCH);
                    batches += 1;
                    names.extend(name.files.into_iter().map(|f| f.filename));
                }
                Err(e) => {
                    assert_eq!(e.status_code, StatusCode::Eof);
                    break;
                }
            }
        }
        names.sort();
        let want: Vec<String> = (0..n).map(|i| format!("f{i:04}.csv")).collect();
        assert_eq!(names, want);
        assert_eq!(batches, 3);
        // Still EOF, and the handle closes normally.
        assert_eq!(
            fs_.readdir(3, h.clone()).await.unwrap_err().status_code,
            StatusCode::Eof
        );
        fs_.close(4, h).await.unwrap();
    }

    #[tokio::test]
    async fn handles_are_capped_per_session_and_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(DropRoot::prepare(dir.path()).unwrap());
        let mut sessions: Vec<DropFs> = (0..MAX_OPEN_HANDLES_TOTAL / MAX_OPEN_HANDLES + 1)
            .map(|_| DropFs::new(root.clone(), 1, Span::none(), None))
            .collect();
        let (last, full) = sessions.split_last_mut().unwrap();
        for fs_ in full.iter_mut() {
            for _ in 0..MAX_OPEN_HANDLES {
                fs_.opendir(1, "/".into()).await.unwrap();
            }
            let e = fs_.opendir(1, "/".into()).await.unwrap_err();
            assert_eq!(e.error_message.as_deref(), Some("too many open handles"));
        }
        assert_eq!(
            root.open_handles.load(Ordering::Relaxed),
            MAX_OPEN_HANDLES_TOTAL
        );
        // The server-wide budget is spent: another session gets no handle ...
        let e = last.opendir(1, "/".into()).await.unwrap_err();
        assert!(e.error_message.unwrap().contains("on this server"));
        // ... until a handle is closed or a session ends.
        let h = full[0].opendir(1, "/".into()).await;
        assert!(h.is_err());
        sessions.remove(0);
        assert_eq!(
            root.open_handles.load(Ordering::Relaxed),
            MAX_OPEN_HANDLES_TOTAL - MAX_OPEN_HANDLES
        );
        let last = sessions.last_mut().unwrap();
        let h = last.opendir(1, "/".into()).await.unwrap().handle;
        last.close(2, h).await.unwrap();
        assert_eq!(
            root.open_handles.load(Ordering::Relaxed),
            MAX_OPEN_HANDLES_TOTAL - MAX_OPEN_HANDLES
        );
        drop(sessions);
        assert_eq!(root.open_handles.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn root_listing_shows_the_four_areas_then_eof() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let h = fs_.opendir(1, "/".into()).await.unwrap().handle;
        let names: Vec<String> = fs_
            .readdir(2, h.clone())
            .await
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.filename)
            .collect();
        assert_eq!(names, ["inbox", "processed", "rejected", "held"]);
        assert_eq!(
            fs_.readdir(3, h).await.unwrap_err().status_code,
            StatusCode::Eof
        );
    }
}
