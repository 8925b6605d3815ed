//! A roster file's bytes in memory of their own.
//!
//! Why: a million-row roster is ~116 MB, read whole so that it can be parsed on two cores,
//! and let go before planning. Read into the allocator's memory, those pages were kept for
//! its purge delay after the free, beside everything planning allocates: ~50 MB of a
//! re-sync's peak (BENCHMARKS.md). An anonymous mapping goes back to the system when it is
//! dropped.

use std::io::Read;
use std::ops::Deref;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::util::{sha256_chunks, sha256_hex};

/// The bytes of a file as they were when it was read, and their SHA-256.
pub struct FileBytes {
    /// At least one byte long (a mapping cannot be empty); the file's bytes are `..len`.
    map: memmap2::MmapMut,
    len: usize,
    sha256: String,
}

/// Files at least this long are hashed on a second thread as they are read, a chunk at a
/// time: at a million rows (116 MB) reading took ~0.1 s and hashing ~0.1 s more, one after
/// the other.
const CHUNK: usize = 4 << 20;

impl FileBytes {
    /// Reads the file at `path` whole; a symlink is refused, not followed (`O_NOFOLLOW`),
    /// and a file that grows while it is read is an error.
    pub fn read(path: &Path) -> std::io::Result<FileBytes> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        let mut map = memmap2::MmapMut::map_anon(len.max(1))?;
        let sha256 = read_hashing(&mut file, &mut map[..len])?;
        if file.read(&mut [0u8; 1])? != 0 {
            return Err(std::io::Error::other(format!(
                "{} grew while it was read",
                path.display()
            )));
        }
        Ok(FileBytes { map, len, sha256 })
    }

    /// The SHA-256 of the bytes, lower-case hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Fills `into` from `file` and returns the SHA-256 of what was read: each chunk is hashed
/// on a second thread once it is read, while the next one is.
fn read_hashing(file: &mut std::fs::File, into: &mut [u8]) -> std::io::Result<String> {
    if into.len() < 2 * CHUNK {
        file.read_exact(into)?;
        return Ok(sha256_hex(into));
    }
    std::thread::scope(|s| {
        let (read, to_hash) = std::sync::mpsc::sync_channel::<&[u8]>(4);
        let hasher = s.spawn(move || sha256_chunks(to_hash));
        let mut outcome = Ok(());
        for chunk in into.chunks_mut(CHUNK) {
            if let Err(e) = file.read_exact(chunk) {
                outcome = Err(e);
                break;
            }
            let chunk: &[u8] = chunk;
            if read.send(chunk).is_err() {
                break;
            }
        }
        drop(read);
        let sha256 = hasher
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        outcome.map(|()| sha256)
    })
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
}
