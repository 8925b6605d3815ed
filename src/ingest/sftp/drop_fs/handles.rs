//! What a session's handles hold: uploads in progress (a temporary file renamed into place
//! on a successful close, deleted otherwise), files open for reading, and directory
//! listings streamed a batch at a time.

use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use russh_sftp::protocol::{File as SftpFile, FileAttributes};
use russh_sftp::server::StatusReply;
use tracing::Span;

use super::TEMP_PREFIX;
use super::paths::attrs_of;
use super::status::{failure, io_status};

/// Directory entries returned per READDIR answer.
pub(super) const READDIR_BATCH: usize = 128;

/// The next batch (at most [`READDIR_BATCH`]) of entries a client may see — regular files
/// and directories with UTF-8, non-hidden names — from an open directory stream; empty at
/// the end. Entries come in the order the filesystem gives them (clients sort).
pub(super) fn next_entries(dir: &mut fs::ReadDir) -> Vec<SftpFile> {
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

pub(super) fn temp_name() -> String {
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
pub(super) struct Upload {
    /// Final name inside `inbox/`.
    pub(super) name: String,
    pub(super) temp: PathBuf,
    pub(super) dest: PathBuf,
    pub(super) file: Arc<File>,
    /// Highest byte offset written so far.
    pub(super) extent: u64,
    /// Set when the upload was cut off; the temporary file is already gone.
    pub(super) failed: Option<&'static str>,
    pub(super) committed: bool,
    pub(super) started: Instant,
    pub(super) span: Span,
}

impl Upload {
    /// Deletes the temporary file and remembers why, so later writes and the close fail.
    pub(super) fn discard(&mut self, reason: &'static str) {
        if self.failed.is_none() {
            self.failed = Some(reason);
            let _ = fs::remove_file(&self.temp);
            tracing::warn!(parent: &self.span, file = %self.name, bytes = self.extent, reason,
                "upload discarded");
        }
    }

    /// Flushes the file to disk and renames it into place without replacing anything.
    pub(super) fn commit(&mut self) -> Result<u64, StatusReply> {
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

/// What a session handle refers to.
pub(super) enum OpenHandle {
    /// A directory being listed.
    Dir {
        listing: Listing,
        attrs: FileAttributes,
    },
    /// A file open for reading (outside `inbox/`).
    Read { file: Arc<File> },
    /// A new file being written in `inbox/`.
    Upload(Upload),
}

/// What an open directory handle still has to list.
///
/// Area directories are streamed from the filesystem a batch per READDIR rather than read
/// whole at OPENDIR: a client holding its 64 handles on a directory of many thousand
/// files then costs 64 directory streams (a few dozen KiB each), not 64 copies of the
/// listing.
pub(super) enum Listing {
    /// The root's four areas.
    Fixed(std::vec::IntoIter<SftpFile>),
    /// An open directory stream; `None` once it has ended (or while a batch is read).
    Stream(Option<fs::ReadDir>),
}
