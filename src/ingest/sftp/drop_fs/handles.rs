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

use super::DropRoot;

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

/// How many received bytes an upload gathers before it writes them, in one task of the
/// blocking pool ([`Upload::write`]).
pub(super) const WRITE_BATCH: usize = 1024 * 1024;

/// How old the first gathered write may be when another comes before the batch is written:
/// a slow upload still reaches its file as it arrives.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How many bytes an upload hands to its file between two syncs started while it goes on
/// ([`Upload::start_sync`]).
const SYNC_EVERY: u64 = 8 * 1024 * 1024;

/// What a run of contiguous writes counts for beside its bytes: many small scattered writes
/// fill a batch too (each is a `pwrite`, and 16 bytes of bookkeeping).
const RUN_COST: usize = 64;

/// The most a batch's buffer holds: a batch is written once it reaches [`WRITE_BATCH`], so
/// it is at most one write longer.
const BATCH_ROOM: usize = WRITE_BATCH + super::MAX_IO_LEN as usize;

/// Writes gathered to be written at once: their bytes one after the other, and where each
/// run of contiguous writes starts in the file and in `bytes`.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    runs: Vec<(u64, usize)>,
    /// When the first write came.
    since: Option<Instant>,
}

impl Batch {
    fn add(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        // Grown by doubling up to the room a batch needs, never past it.
        let needed = self.bytes.len() + data.len();
        if needed > self.bytes.capacity() {
            let room = (self.bytes.capacity() * 2).clamp(needed, BATCH_ROOM.max(needed));
            self.bytes.reserve_exact(room - self.bytes.len());
        }
        let follows = self.runs.last().is_some_and(|&(at, start)| {
            at.checked_add((self.bytes.len() - start) as u64) == Some(offset)
        });
        if !follows {
            self.runs.push((offset, self.bytes.len()));
        }
        self.bytes.extend_from_slice(data);
    }

    /// Writes each run at its offset.
    fn write_to(&self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let ends = self.runs.iter().skip(1).map(|&(_, start)| start);
        let ends = ends.chain([self.bytes.len()]);
        self.runs
            .iter()
            .zip(ends)
            .try_for_each(|(&(at, start), end)| file.write_all_at(&self.bytes[start..end], at))
    }

    /// Whether it is time to write it.
    fn due(&self) -> bool {
        self.bytes.len() + self.runs.len() * RUN_COST >= WRITE_BATCH
            || self.since.is_some_and(|t| t.elapsed() >= WRITE_WAIT)
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.runs.clear();
        self.since = None;
    }
}

/// An upload in progress: a temporary file deleted on drop unless committed.
pub(super) struct Upload {
    /// Final name inside `inbox/`.
    pub(super) name: String,
    pub(super) temp: PathBuf,
    pub(super) dest: PathBuf,
    pub(super) file: Arc<File>,
    /// Highest byte offset received so far.
    pub(super) extent: u64,
    /// Writes received and not yet handed to the file.
    pending: Batch,
    /// The batch being written on the blocking pool; it comes back empty to be filled again
    /// (two buffers in turn, so the pages of a large upload are not asked for anew).
    writing: Option<tokio::task::JoinHandle<(Batch, io::Result<()>)>>,
    /// The sync started while the upload goes on, if any ([`Upload::start_sync`]).
    syncing: Option<tokio::task::JoinHandle<io::Result<()>>>,
    /// Bytes handed to the file since the last sync was started.
    unsynced: u64,
    /// Set when the upload was cut off; the temporary file is already gone.
    pub(super) failed: Option<&'static str>,
    pub(super) committed: bool,
    /// Under a temporary name (`x.csv.part`): it waits at its close for the session's
    /// rename instead of being delivered (`parked`); decided once, at its open.
    pub(super) temporary: bool,
    pub(super) started: Instant,
    pub(super) span: Span,
    /// Told when the upload cannot be written ([`DropRoot::upload_failed`]).
    pub(super) root: Option<Arc<DropRoot>>,
}

impl Upload {
    /// An upload into `temp`, renamed to `dest` (`inbox/name`) when committed.
    pub(super) fn new(
        name: String,
        temp: PathBuf,
        dest: PathBuf,
        file: File,
        span: Span,
    ) -> Upload {
        Upload {
            name,
            temp,
            dest,
            file: Arc::new(file),
            extent: 0,
            pending: Batch::default(),
            writing: None,
            syncing: None,
            unsynced: 0,
            failed: None,
            committed: false,
            temporary: false,
            started: Instant::now(),
            span,
            root: None,
        }
    }

    /// Takes one write. Writes are gathered and given to the file a batch at a time
    /// ([`Batch::due`]: [`WRITE_BATCH`] bytes, or the first write [`WRITE_WAIT`] old), one
    /// batch on the blocking pool while the next is received (a task per 32 KiB write cost
    /// a thread hand-over each). A failed batch discards the upload: the request that finds
    /// the failure, and the close, fail; the file is never accepted.
    pub(super) async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StatusReply> {
        self.pending.add(offset, data);
        if self.pending.due() {
            self.start_batch().await?;
            self.start_sync().await?;
        }
        Ok(())
    }

    /// Every write received is in the file (before it is stat'ed or committed).
    pub(super) async fn flush(&mut self) -> Result<(), StatusReply> {
        self.start_batch().await?;
        self.finish_batch().await.map(|_| ())
    }

    /// Flushes and lets the buffers go, when another upload of the session takes over; a
    /// failure discards this upload, which its own later requests and close report.
    pub(super) async fn settle(&mut self) {
        let _ = self.flush().await;
        self.pending = Batch::default();
    }

    /// Waits for the batch being written, then starts writing the pending writes.
    async fn start_batch(&mut self) -> Result<(), StatusReply> {
        let spare = self.finish_batch().await?;
        if self.pending.runs.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.pending, spare);
        self.unsynced += batch.bytes.len() as u64;
        let file = self.file.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let mut batch = batch;
            let written = batch.write_to(&file);
            batch.clear();
            (batch, written)
        }));
        Ok(())
    }

    /// Waits for the batch being written, if any, and gives its emptied buffer back;
    /// discards the upload if it failed.
    async fn finish_batch(&mut self) -> Result<Batch, StatusReply> {
        let Some(writing) = self.writing.take() else {
            return Ok(Batch::default());
        };
        match writing.await {
            Ok((batch, Ok(()))) => Ok(batch),
            Ok((_, Err(e))) => Err(self.failed(Some(e))),
            Err(_) => Err(self.failed(None)),
        }
    }

    /// Discards the upload after a write or a sync on the blocking pool failed (`None`: its
    /// task did), and gives the answer that says so.
    fn failed(&mut self, error: Option<io::Error>) -> StatusReply {
        let message = match &error {
            Some(e) => format!("write failed: {}", e.kind()),
            None => "internal error".to_string(),
        };
        // Its cause in the log, for the operator: a full disk had been logged as "write
        // error" alone, the client told "Failure".
        if self.failed.is_none() {
            let cause =
                error.map_or_else(|| "its write task failed".to_string(), |e| e.to_string());
            match &self.root {
                Some(root) => root.upload_failed(&self.span, &self.name, &cause),
                None => {
                    tracing::error!(parent: &self.span, file = %crate::logging::ClientText(&self.name), error = %cause,
                    "an upload could not be written to disk")
                }
            }
        }
        self.discard("write error");
        failure(&message)
    }

    /// Starts syncing what the file holds, on the blocking pool, once [`SYNC_EVERY`] bytes
    /// were handed to it since the last sync started and that one has ended; the upload
    /// does not wait for it. The close's sync then has only the last bytes to wait for
    /// (a 100 MB upload's was ~42 ms here, ~14 % of the upload), not the whole file. Called
    /// after each batch is handed over while writes come in, never from the close.
    async fn start_sync(&mut self) -> Result<(), StatusReply> {
        if self.syncing.as_ref().is_some_and(|s| !s.is_finished()) {
            return Ok(());
        }
        // A sync that ended is looked at now: its failure ends the upload at once.
        self.synced().await?;
        if self.unsynced < SYNC_EVERY {
            return Ok(());
        }
        let file = self.file.clone();
        self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        self.unsynced = 0;
        Ok(())
    }

    /// Waits for the sync started while the upload went on, if any; discards the upload
    /// if it failed (the close's own sync would not hear of that failure again).
    pub(super) async fn synced(&mut self) -> Result<(), StatusReply> {
        let Some(syncing) = self.syncing.take() else {
            return Ok(());
        };
        match syncing.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failed(Some(e))),
            Err(_) => Err(self.failed(None)),
        }
    }

    /// The answer to an I/O error at the close (its sync, its rename), told as a write's is
    /// when it is the disk's ([`super::status::disk_trouble`]): a full disk found at the close had been
    /// logged as "close failed" alone.
    fn io_failed(&self, e: &io::Error) -> StatusReply {
        if let Some(root) = &self.root {
            root.disk_failed(&self.span, &self.name, e);
        }
        io_status(e)
    }

    /// Deletes the temporary file and remembers why, so later writes and the close fail.
    pub(super) fn discard(&mut self, reason: &'static str) {
        if self.failed.is_none() {
            self.failed = Some(reason);
            let _ = fs::remove_file(&self.temp);
            tracing::warn!(parent: &self.span, file = %crate::logging::ClientText(&self.name), bytes = self.extent, reason,
                "upload discarded");
        }
    }

    /// Flushes the file to disk and keeps it under its hidden name, for the session to
    /// rename (`parked`): its hidden path and what it is now.
    pub(super) fn park(&mut self) -> Result<(PathBuf, fs::Metadata), StatusReply> {
        self.file.sync_all().map_err(|e| self.io_failed(&e))?;
        let md = self.file.metadata().map_err(|e| io_status(&e))?;
        self.committed = true;
        Ok((self.temp.clone(), md))
    }

    /// Flushes the file to disk and renames it into place without replacing anything; what
    /// it is then, and whether it was kept under another name (its own was taken).
    pub(super) fn commit(&mut self) -> Result<(fs::Metadata, bool), StatusReply> {
        self.file.sync_all().map_err(|e| self.io_failed(&e))?;
        let md = self.file.metadata().map_err(|e| io_status(&e))?;
        let mut elsewhere = false;
        match crate::util::rename_noreplace(&self.temp, &self.dest) {
            Ok(()) => {}
            // Another upload of the name closed first (or `process` filed one): this one is
            // kept under the next free name (`-2`), as `process` files a name taken. It had
            // been discarded with a failure at close, which curl does not report: the HR job
            // was told its roster arrived, and it was gone.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let (dir, name) = match (self.dest.parent(), self.dest.file_name()) {
                    (Some(dir), Some(name)) => (dir, name.to_string_lossy().into_owned()),
                    _ => return Err(self.io_failed(&e)),
                };
                match crate::util::rename_into_free_name(&self.temp, dir, &name) {
                    Ok(kept) => {
                        tracing::info!(parent: &self.span, file = %crate::logging::ClientText(&self.name), kept_as = %crate::logging::ClientText(&kept),
                        "a file of that name arrived in /inbox meanwhile: the upload is kept under the next free name")
                    }
                    Err(e) => return Err(self.io_failed(&e)),
                }
                elsewhere = true;
            }
            Err(e) => return Err(self.io_failed(&e)),
        }
        self.committed = true;
        if let Some(dir) = self.dest.parent() {
            // Make the rename itself durable; the data already is.
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!(parent: &self.span, error = %e, "could not fsync the inbox directory");
            }
        }
        Ok((md, elsewhere))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed && self.failed.is_none() {
            let _ = fs::remove_file(&self.temp);
            tracing::warn!(parent: &self.span, file = %crate::logging::ClientText(&self.name), bytes = self.extent,
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
    /// A listing made in advance: the root's four areas, or /inbox's (none shown).
    Fixed(std::vec::IntoIter<SftpFile>),
    /// An open directory stream; `None` once it has ended (or while a batch is read).
    Stream(Option<fs::ReadDir>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upload named `name` into `dir`, as the handler opens one.
    fn upload_in(dir: &std::path::Path, name: &str) -> Upload {
        let temp = dir.join(temp_name());
        let file = File::create_new(&temp).unwrap();
        Upload::new(name.into(), temp, dir.join(name), file, Span::none())
    }

    /// A large upload syncs its file while it goes on, a sync at a time, and lands whole.
    #[tokio::test]
    async fn a_large_upload_is_synced_while_it_goes_on_and_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("big.bin");
        let mut upload = upload_in(dir.path(), "big.bin");
        let len = 2 * SYNC_EVERY as usize + WRITE_BATCH / 2;
        let chunk = 32 * 1024;
        let mut expected = Vec::with_capacity(len);
        let mut syncs = 0;
        for at in (0..len).step_by(chunk) {
            let data: Vec<u8> = (at..(at + chunk).min(len))
                .map(|i| (i % 251) as u8)
                .collect();
            expected.extend_from_slice(&data);
            let before = upload.syncing.as_ref().map(tokio::task::JoinHandle::id);
            upload.write(at as u64, &data).await.unwrap();
            let after = upload.syncing.as_ref().map(tokio::task::JoinHandle::id);
            if after.is_some() && after != before {
                syncs += 1;
                // Started once SYNC_EVERY bytes were handed to the file since the last one.
                assert_eq!(upload.unsynced, 0);
            }
        }
        assert!(syncs >= 1, "no sync was started during a {len}-byte upload");
        assert!(syncs <= 2, "{syncs} syncs for {len} bytes");
        // The close's flush starts none: its own sync covers the rest.
        let last = upload.syncing.as_ref().map(tokio::task::JoinHandle::id);
        upload.flush().await.unwrap();
        assert_eq!(
            upload.syncing.as_ref().map(tokio::task::JoinHandle::id),
            last
        );
        upload.synced().await.unwrap();
        assert!(upload.syncing.is_none());
        assert_eq!(upload.commit().unwrap().0.len(), len as u64);
        assert_eq!(fs::read(&dest).unwrap(), expected);
    }

    /// An upload closed while another file took its name in inbox/ (another upload of the
    /// name closed first) is kept under the next free name: it had been discarded with a
    /// failure at the close, which curl does not report (the roster lost, the job told ok).
    #[tokio::test]
    async fn an_upload_whose_name_was_taken_meanwhile_is_kept_under_the_next_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = upload_in(dir.path(), "r.csv");
        let mut second = upload_in(dir.path(), "r.csv");
        first.write(0, b"first\n").await.unwrap();
        second.write(0, b"second\n").await.unwrap();
        for upload in [&mut second, &mut first] {
            upload.flush().await.unwrap();
            upload.synced().await.unwrap();
            upload.commit().unwrap();
        }
        assert_eq!(fs::read(dir.path().join("r.csv")).unwrap(), b"second\n");
        assert_eq!(fs::read(dir.path().join("r-2.csv")).unwrap(), b"first\n");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "nothing else left"
        );
    }

    /// An upload shorter than [`SYNC_EVERY`] starts no sync of its own: the close syncs it.
    #[tokio::test]
    async fn a_small_upload_is_synced_at_its_close_only() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("small.bin");
        let mut upload = upload_in(dir.path(), "small.bin");
        let data = vec![7u8; 3 * WRITE_BATCH];
        for (n, part) in data.chunks(32 * 1024).enumerate() {
            upload.write((n * 32 * 1024) as u64, part).await.unwrap();
            assert!(upload.syncing.is_none());
        }
        upload.flush().await.unwrap();
        upload.synced().await.unwrap();
        assert_eq!(upload.commit().unwrap().0.len(), data.len() as u64);
        assert_eq!(fs::read(&dest).unwrap(), data);
    }
}
