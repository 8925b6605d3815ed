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

/// The bytes of a file as they were when it was read.
pub struct FileBytes {
    /// At least one byte long (a mapping cannot be empty); the file's bytes are `..len`.
    map: memmap2::MmapMut,
    len: usize,
}

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
        file.read_exact(&mut map[..len])?;
        if file.read(&mut [0u8; 1])? != 0 {
            return Err(std::io::Error::other(format!(
                "{} grew while it was read",
                path.display()
            )));
        }
        Ok(FileBytes { map, len })
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
        for content in [&b""[..], b"a", &b"Employee ID,Work Email\n".repeat(5000)] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(&*FileBytes::read(&path).unwrap(), content);
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
