//! Who asked for a file in inbox/ (`autoprov process` or `fetch`), kept on the file itself
//! as an extended attribute: whichever request, scan or restart processes it, it is audited
//! as theirs. Kept in memory, it had been lost when the daemon stopped before the file was
//! processed (a stop between files, a crash), and the file applied as `autoprov`'s.
//!
//! The mark goes with the file, not with its name: a file moved over it in inbox/ is not
//! theirs. Only files this process writes get one; anyone who could set it on a file in
//! inbox/ could as well write the store.

use std::fs::File;
use std::path::Path;

/// The attribute's name.
const ATTRIBUTE: &str = "user.autoprov.asked_by";
/// The longest name kept (a Unix user's name or a person's email).
const MAX: usize = 320;

/// Marks `file` (not yet named in inbox/) as asked for by `user`; whether it could. The
/// rename into inbox/ and the folder's sync that follow make the mark durable with the
/// name (ext4 journals both in order). A file system without user attributes keeps no
/// mark: the pipeline then remembers the name in memory, lost if autoprov stops before
/// the file is processed (logged).
pub fn mark(file: &File, user: &str) -> bool {
    let flags = rustix::fs::XattrFlags::empty();
    match rustix::fs::fsetxattr(file, ATTRIBUTE, user.as_bytes(), flags) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "the file {user} asked for is not marked as theirs ({e}): if autoprov stops before it is processed, it is audited as autoprov's"
            );
            false
        }
    }
}

/// [`mark`] for a file known by its path.
pub fn mark_path(path: &Path, user: &str) -> bool {
    match File::open(path) {
        Ok(file) => mark(&file, user),
        Err(e) => {
            tracing::warn!("{}: {e}: not marked as {user}'s", path.display());
            false
        }
    }
}

/// Takes any mark off `file`: one filed out of inbox/ (a copy of it put back into inbox/,
/// or into watch_dir, is nobody's), or one a source brings in (watch mode renames the
/// daemon user's own files in, attributes and all). Never fails: no mark is no mark.
pub fn forget(file: &File) {
    let _ = rustix::fs::fremovexattr(file, ATTRIBUTE);
}

/// [`forget`] for a file known by its path (a symlink is not followed).
pub fn forget_path(path: &Path) {
    let _ = rustix::fs::lremovexattr(path, ATTRIBUTE);
}

/// Who asked for the file at `path` (not followed if a symlink), if anyone did: a name of
/// at most [`MAX`] bytes of text that breaks no line; anything else is no name.
pub fn of(path: &Path) -> Option<String> {
    let mut buf = vec![0u8; MAX];
    let len = rustix::fs::lgetxattr(path, ATTRIBUTE, &mut buf[..]).ok()?;
    buf.truncate(len);
    let name = String::from_utf8(buf).ok()?;
    let plain = !name.is_empty() && !name.chars().any(crate::util::breaks_a_line);
    plain.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_read_back_from_the_file_and_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let file = File::create(&a).unwrap();
        mark(&file, "alice");
        assert_eq!(of(&a).as_deref(), Some("alice"));
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(of(&b).as_deref(), Some("alice"));
        // Another file moved over it is nobody's.
        std::fs::write(&a, b"x").unwrap();
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(of(&b), None);
    }

    #[test]
    fn a_mark_taken_off_is_nobody_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let file = File::create(&path).unwrap();
        assert!(mark(&file, "alice"));
        forget_path(&path);
        assert_eq!(of(&path), None);
        assert!(mark_path(&path, "bob"));
        forget(&file);
        assert_eq!(of(&path), None);
        forget(&file);
    }

    #[test]
    fn a_mark_that_is_no_plain_name_is_nobody_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let file = File::create(&path).unwrap();
        for bad in ["alice\nautoprov", "", &"x".repeat(MAX + 1)] {
            mark(&file, bad);
            assert_eq!(of(&path), None, "{bad:?}");
        }
        mark(&file, &"x".repeat(MAX));
        assert_eq!(of(&path).map(|n| n.len()), Some(MAX));
    }
}
