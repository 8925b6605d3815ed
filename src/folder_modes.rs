//! The modes of the data dir's folders, tightened at the daemon's start: they are made
//! 0750 (host keys 0700) when created, but one made looser since (`chmod 777` by hand, a
//! restore from an archive) had been kept without a word. A writable `host_keys/` lets
//! anyone replace the SFTP server's key, and a writable `processed/` or `backups/` lets
//! them plant files there.

use crate::layout::{FOLDERS, Paths};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Takes group write and every right of others off the data dir's folders (and every
/// right of the group and others off `host_keys/`), with a warning naming each folder
/// changed; a folder that cannot be changed (another user's) is warned about as it is.
/// Symlinks and missing folders are left alone.
pub fn tighten(data_dir: &Path, paths: &Paths) {
    let mut folders = vec![
        (data_dir.to_path_buf(), 0o027),
        (paths.store.clone(), 0o027),
        (paths.drop.clone(), 0o027),
        (paths.staging.clone(), 0o027),
        (paths.backups.clone(), 0o027),
        (paths.host_keys.clone(), 0o077),
    ];
    folders.extend(FOLDERS.map(|f| (paths.folder(f), 0o027)));
    for (folder, taken) in folders {
        let Ok(meta) = std::fs::symlink_metadata(&folder) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if !meta.is_dir() || mode & taken == 0 {
            continue;
        }
        let strict = mode & !taken;
        match std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(strict)) {
            Ok(()) => tracing::warn!(
                "{} was mode {mode:04o}, open to others than autoprov: set to {strict:04o}",
                folder.display()
            ),
            Err(e) => tracing::warn!(
                "{} is mode {mode:04o}, open to others than autoprov, and cannot be set to \
                 {strict:04o} ({e}): tighten it",
                folder.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn loose_folders_are_tightened_and_tight_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        for f in [&paths.host_keys, &paths.backups, &paths.folder("processed")] {
            fs::create_dir_all(f).unwrap();
            fs::set_permissions(f, fs::Permissions::from_mode(0o777)).unwrap();
        }
        fs::create_dir_all(&paths.store).unwrap();
        fs::set_permissions(&paths.store, fs::Permissions::from_mode(0o700)).unwrap();
        tighten(dir.path(), &paths);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&paths.host_keys), 0o700);
        assert_eq!(mode(&paths.backups), 0o750);
        assert_eq!(mode(&paths.folder("processed")), 0o750);
        assert_eq!(mode(&paths.store), 0o700, "a stricter mode is kept");
    }
}
