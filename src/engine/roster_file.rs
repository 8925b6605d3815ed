//! A roster file's bytes in memory of their own.
//!
//! Why: a million-row roster is ~116 MB, read whole so that it can be parsed on two cores,
//! and let go before planning. Read into the allocator's memory, those pages were kept for
//! its purge delay after the free, beside everything planning allocates: ~50 MB of a
//! re-sync's peak (BENCHMARKS.md). An anonymous mapping goes back to the system when it is
//! dropped.

use std::fs::File;
use std::io::{Read, Seek};
use std::ops::Deref;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use crate::core::parallel::join;
use crate::util::{SyncAhead, sha256_hex};

/// The bytes of a file as they were when it was read, and their SHA-256.
pub struct FileBytes {
    /// At least one byte long (a mapping cannot be empty); the file's bytes are `..len`.
    /// Shared with the thread that hashes them.
    map: Arc<memmap2::Mmap>,
    len: usize,
    sha256: Sha256,
    /// The file they were read from, or were written to since.
    held: HeldFile,
}

/// What tells a file apart without reading it: its inode, size and times.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    written: LastWrite,
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            written: LastWrite::of(meta),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A file's size and time of last write: what a move or a copy that keeps times leaves as
/// it was, and what writing the file again changes (as `make` and `rsync` tell files apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LastWrite {
    pub size: u64,
    pub mtime: (i64, i64),
}

impl LastWrite {
    /// That of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> LastWrite {
        LastWrite {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// The file a [`FileBytes`] was read from, held open so that its inode cannot be reused:
/// whether a path still names that file, unchanged, is then known without hashing it again
/// (at a million rows that was 0.1 s on one core at the end of every `process`).
///
/// autoprov never writes a file in place once it is in inbox/ (uploads, downloads and
/// `process` copies are renamed into it), so a changed inode, size or time is what replacing
/// or rewriting it shows; a rewrite in place by the service account itself within one tick
/// of the kernel's clock, same size, would not show, which is why recovery hashes instead.
pub struct HeldFile {
    file: File,
    stamp: Stamp,
}

impl HeldFile {
    /// `file` as it is now.
    pub fn of(file: File) -> std::io::Result<HeldFile> {
        let stamp = Stamp::of(&file.metadata()?);
        Ok(HeldFile { file, stamp })
    }

    /// The same file, stamped as this one was (the handles share their file position).
    pub fn try_clone(&self) -> std::io::Result<HeldFile> {
        Ok(HeldFile {
            file: self.file.try_clone()?,
            stamp: self.stamp,
        })
    }

    /// The file's size and time of last write when it was read.
    pub fn last_write(&self) -> LastWrite {
        self.stamp.written
    }

    /// Whether `path` (not followed if a symlink) is the file read, as it was read.
    pub fn is_at(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|meta| Stamp::of(&meta) == self.stamp)
    }

    /// Files a synced copy of the bytes read at `path` (which must not exist): for a file
    /// replaced or removed from its folder while it was processed (`mv new.csv
    /// inbox/roster.csv` over it), whose committed bytes would otherwise be filed nowhere.
    /// An error, and nothing named, when it was written since it was read. (Its change
    /// time is not compared: the replacement's unlink moves it.)
    pub fn copy_to(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let copy = UnnamedCopy::of(self, dir)?;
        let now = LastWrite::of(&self.file.metadata()?);
        if copy.len != self.stamp.written.size || now != self.stamp.written {
            return Err(std::io::Error::other(
                "the file was written since it was read",
            ));
        }
        copy.link(path)
    }

    /// Whether the file is as it was read (wherever it is now).
    fn unchanged(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|meta| Stamp::of(&meta) == self.stamp)
    }
}

/// A copy of a held file made in a folder without a name (`O_TMPFILE`), synced, and named
/// once it is known to hold the bytes read ([`UnnamedCopy::name`]).
///
/// Why: `process` copies its roster into inbox/ while the store opens and is checked, not
/// after (at a million rows the copy and its fsync were ~0.1 s with a core idle). The copy is
/// made before this process holds the store, so it has no name another process's start-up
/// could take for a stopped copy and remove, and one that is never named leaves nothing.
pub struct UnnamedCopy {
    file: File,
    len: u64,
}

impl UnnamedCopy {
    /// Copies `from` (from its start, in the kernel) into a new unnamed file in `dir`,
    /// synced. A large file is copied [`COPIED_AHEAD`] bytes at a time, each synced on a
    /// thread of its own while the next is copied: copied whole and then synced, a million
    /// rows' 116 MB took 96–106 ms, the sync ~60 ms of it after the copy, and a `process`
    /// waited for it before its rows could be read (70–75 ms so).
    pub fn of(from: &HeldFile, dir: &Path) -> std::io::Result<UnnamedCopy> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_TMPFILE)
            .open(dir)?;
        let mut source = from.file.try_clone()?;
        source.seek(std::io::SeekFrom::Start(0))?;
        let len = std::thread::scope(|scope| {
            let syncer = SyncAhead::start(scope, &file);
            let mut len = 0;
            let copied = loop {
                match std::io::copy(&mut (&mut source).take(COPIED_AHEAD), &mut file) {
                    Ok(0) => break Ok(len),
                    Ok(n) => len += n,
                    Err(e) => break Err(e),
                }
                syncer.ask();
            };
            let synced = syncer.finish();
            copied.and_then(|len| synced.map(|()| len))
        })?;
        file.sync_all()?;
        Ok(UnnamedCopy { file, len })
    }

    /// Names the copy `path` (which must not exist) when it holds `bytes`: the held file it
    /// was copied from is unchanged since before both were read, and as long. Otherwise, or
    /// when the name cannot be given, an error and nothing named.
    pub fn name(self, bytes: &FileBytes, path: &Path) -> std::io::Result<File> {
        if self.len != bytes.len as u64 || !bytes.held.unchanged() {
            return Err(std::io::Error::other(
                "the file changed while it was copied",
            ));
        }
        self.link(path)?;
        Ok(self.file)
    }

    /// Gives the copy the name `path`, which must not exist.
    fn link(&self, path: &Path) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let unnamed = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            unnamed.as_str(),
            nix::fcntl::AT_FDCWD,
            path,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )?;
        Ok(())
    }
}

/// How many bytes of a file [`UnnamedCopy::of`] copies before it asks for them to be synced
/// (in tests, less, so that the tests' files are copied in several pieces).
#[cfg(not(test))]
const COPIED_AHEAD: u64 = 16 << 20;
#[cfg(test)]
const COPIED_AHEAD: u64 = 1 << 20;

/// Files at least twice this long are read by two threads taking chunks this long in turn
/// ([`read_whole`]), and hashed on a thread of their own while they are parsed ([`Sha256`]).
const CHUNK: usize = 4 << 20;

/// The SHA-256 of a file's bytes, lower-case hex: for a large file, made on a thread of its
/// own once the bytes are read, and waited for when first asked. Why: at a million rows
/// (116 MB) the hash takes ~0.1 s on one core; hashed as the bytes were read, it held the
/// read back and the parse waited for both (~0.15 s with a core idle). A file's hash is
/// asked for once its rows are read (BENCHMARKS.md).
struct Sha256 {
    hex: OnceLock<String>,
    hashing: Mutex<Option<JoinHandle<String>>>,
}

impl Sha256 {
    /// The hash of `map[..len]`, made at once when it is short, else on a thread.
    fn of(map: &Arc<memmap2::Mmap>, len: usize) -> Sha256 {
        let (hex, hashing) = (OnceLock::new(), Mutex::new(None));
        if len < 2 * CHUNK {
            let _ = hex.set(sha256_hex(&map[..len]));
        } else {
            let shared = Arc::clone(map);
            let thread = std::thread::Builder::new().name("autoprov-sha256".into());
            match thread.spawn(move || sha256_hex(&shared[..len])) {
                Ok(handle) => *hashing.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
                Err(_) => {
                    let _ = hex.set(sha256_hex(&map[..len]));
                }
            }
        }
        Sha256 { hex, hashing }
    }

    /// The hash, waited for.
    fn get(&self) -> &str {
        self.hex.get_or_init(|| {
            let handle = self
                .hashing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("a hash is made at once or on its thread");
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// Fills `into` from `file` from its start: a large file by two threads, which take its
/// [`CHUNK`]s in turn. One thread read a million rows' 116 MB in ~70 ms, page faults and the
/// kernel's copy. A half each took ~17 ms in some runs and ~150 ms in others, whichever
/// half's pages the host had to back first (the guest returns free memory to it), while
/// the other thread waited: taken by chunk, the quick thread reads the slow one's share
/// (BENCHMARKS.md, session 24).
fn read_whole(file: &File, into: &mut [u8]) -> std::io::Result<()> {
    if into.len() < 2 * CHUNK {
        return file.read_exact_at(into, 0);
    }
    let chunks = Mutex::new(into.chunks_mut(CHUNK).enumerate());
    let read = || loop {
        let next = chunks.lock().unwrap_or_else(|e| e.into_inner()).next();
        let Some((i, chunk)) = next else {
            return Ok(());
        };
        file.read_exact_at(chunk, (i * CHUNK) as u64)?;
    };
    let (here, there) = join(read, read);
    here.and(there)
}

impl FileBytes {
    /// Reads the file at `path` whole; a symlink is refused, not followed (`O_NOFOLLOW`),
    /// and a file that grows while it is read is an error.
    pub fn read(path: &Path) -> std::io::Result<FileBytes> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)?;
        FileBytes::read_file(file, path)
    }

    /// Reads `file` (opened from `path`) whole; a file that grows while it is read is an
    /// error.
    pub fn read_file(file: File, path: &Path) -> std::io::Result<FileBytes> {
        FileBytes::read_held(HeldFile::of(file)?, path)
    }

    /// Reads the file `held` holds (opened from `path`) whole, at its offsets (its file
    /// position is left to an [`UnnamedCopy`] made at the same time); a file that grows
    /// while it is read is an error.
    pub fn read_held(held: HeldFile, path: &Path) -> std::io::Result<FileBytes> {
        let len = usize::try_from(held.stamp.written.size).map_err(std::io::Error::other)?;
        let mut map = memmap2::MmapMut::map_anon(len.max(1))?;
        // In huge pages where the kernel has them (the process has them off elsewhere, see
        // `main`): a million rows' 116 MB took ~84k page faults in 4 KiB pages, ~50k so, and a
        // `sync` 0.75 → 0.70 s (BENCHMARKS.md). Advice only: the bytes read are the same.
        let _ = map.advise(memmap2::Advice::HugePage);
        read_whole(&held.file, &mut map[..len])?;
        if held.file.read_at(&mut [0u8; 1], len as u64)? != 0 {
            return Err(std::io::Error::other(format!(
                "{} grew while it was read",
                path.display()
            )));
        }
        let map = Arc::new(map.make_read_only()?);
        let sha256 = Sha256::of(&map, len);
        Ok(FileBytes {
            map,
            len,
            sha256,
            held,
        })
    }

    /// The file read, held open for [`HeldFile::is_at`] after these bytes are dropped.
    pub fn held(&self) -> std::io::Result<HeldFile> {
        self.held.try_clone()
    }

    /// Whether `path` is the file these bytes were read from or written to, unchanged.
    pub fn is_at(&self, path: &Path) -> bool {
        self.held.is_at(path)
    }

    /// Copies the file these bytes were read from into `to` (in the kernel: writing them out
    /// of this process's memory took ~0.35 s at a million rows here, the kernel's copy
    /// ~0.04 s); whether what was copied is these bytes, the file unchanged since it was read.
    pub fn copy_to(&self, to: &mut File) -> std::io::Result<bool> {
        let mut from = &self.held.file;
        from.seek(std::io::SeekFrom::Start(0))?;
        let copied = std::io::copy(&mut from, to)?;
        Ok(copied == self.len as u64 && self.held.unchanged())
    }

    /// These bytes, known from now on as those of `copy` (a file they were written to).
    pub fn written_to(self, copy: HeldFile) -> FileBytes {
        FileBytes { held: copy, ..self }
    }

    /// The SHA-256 of the bytes, lower-case hex; a large file's is waited for (see
    /// [`Sha256`]), so ask once the bytes are parsed.
    pub fn sha256(&self) -> &str {
        self.sha256.get()
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_whole_file_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        // Empty, short, and long enough to be hashed as it is read (not a whole chunk last).
        let long: Vec<u8> = (0..2 * CHUNK + 12_345).map(|i| (i % 251) as u8).collect();
        for content in [
            &b""[..],
            b"a",
            &b"Employee ID,Work Email\n".repeat(5000),
            &long,
        ] {
            std::fs::write(&path, content).unwrap();
            let read = FileBytes::read(&path).unwrap();
            assert_eq!(&*read, content);
            assert_eq!(read.sha256(), sha256_hex(content));
        }
    }

    #[test]
    fn a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real.csv"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real.csv"), dir.path().join("l.csv")).unwrap();
        assert!(FileBytes::read(&dir.path().join("l.csv")).is_err());
    }

    #[test]
    fn bytes_are_copied_from_their_file_only_while_it_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, b"Employee ID\nE1\n").unwrap();
        let bytes = FileBytes::read(&path).unwrap();
        let copy = dir.path().join("copy");
        let mut to = std::fs::File::create(&copy).unwrap();
        assert!(bytes.copy_to(&mut to).unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), &*bytes);

        // Rewritten in place after it was read: what is copied is not these bytes.
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(&path, b"Employee ID\nE2\n").unwrap();
        let mut to = std::fs::File::create(&copy).unwrap();
        assert!(!bytes.copy_to(&mut to).unwrap());
    }

    #[test]
    fn an_unnamed_copy_is_named_only_while_its_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (path, folder) = (dir.path().join("r.csv"), dir.path().join("inbox"));
        std::fs::create_dir(&folder).unwrap();
        let long: Vec<u8> = (0..2 * CHUNK + 7).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &long).unwrap();
        let open = || File::open(&path).and_then(HeldFile::of).unwrap();
        let listed = || std::fs::read_dir(&folder).unwrap().count();

        // Read and copied at once, as `process` does: the copy gets its name, whole (copied
        // in several pieces, each synced while the next is copied).
        assert!(long.len() as u64 > 4 * COPIED_AHEAD);
        let held = open();
        let copy = UnnamedCopy::of(&held.try_clone().unwrap(), &folder).unwrap();
        assert_eq!(listed(), 0, "an unnamed copy is in no listing");
        let bytes = FileBytes::read_held(held, &path).unwrap();
        let named = folder.join("copy.csv");
        copy.name(&bytes, &named).unwrap();
        assert_eq!(std::fs::read(&named).unwrap(), long);

        // Rewritten after it was stamped: the copy is refused and nothing is named.
        let held = open();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let rewritten: Vec<u8> = long.iter().map(|b| b ^ 1).collect();
        std::fs::write(&path, &rewritten).unwrap();
        let copy = UnnamedCopy::of(&held.try_clone().unwrap(), &folder).unwrap();
        let bytes = FileBytes::read_held(held, &path).unwrap();
        assert!(copy.name(&bytes, &folder.join("late.csv")).is_err());
        assert_eq!(listed(), 1, "only the first copy has a name");

        // A copy dropped unnamed leaves nothing behind.
        let held = open();
        drop(UnnamedCopy::of(&held, &folder).unwrap());
        assert_eq!(listed(), 1);
    }

    #[test]
    fn a_held_file_is_at_its_path_until_replaced_or_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, b"Employee ID\nE1\n").unwrap();
        let held = FileBytes::read(&path).unwrap().held().unwrap();
        assert!(held.is_at(&path));
        assert!(!held.is_at(&dir.path().join("other.csv")));

        // Replaced by another file of the same name and bytes (a new upload).
        let next = dir.path().join(".next");
        std::fs::write(&next, b"Employee ID\nE1\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(!held.is_at(&path));

        // Rewritten in place, same size, a tick of the kernel's clock later.
        let held = FileBytes::read(&path).unwrap().held().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"Employee ID\nE2\n"))
            .unwrap();
        assert!(!held.is_at(&path));

        // A symlink to the file is not the file.
        let held = FileBytes::read(&path).unwrap().held().unwrap();
        let link = dir.path().join("l.csv");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(!held.is_at(&link));
        assert!(held.is_at(&path));
    }
}
