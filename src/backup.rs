//! Backups of the store: `autoprov backup FILE`, `autoprov restore FILE`, and the automatic
//! backup the daemon writes at start-up (the one a damaged store's message names).

use crate::api::error::{Context, Error, Result};
use crate::layout::Paths;
use crate::store::{SledStore, Store, StoreError};
use crate::util::{compact_timestamp, now_rfc3339, write_atomic};
use std::fs;
use std::path::{Path, PathBuf};

/// Automatic backups kept in `data_dir/backups`.
pub const KEEP: usize = 3;

/// Writes a backup of `store` to `path` atomically; returns the record count and the path.
pub fn write(store: &dyn Store, path: &Path) -> Result<(u64, PathBuf)> {
    let mut bytes = Vec::new();
    let n = store
        .export(&mut bytes, &now_rfc3339())
        .context("exporting the store")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok((n, path.to_path_buf()))
}

/// The automatic backups, newest first.
pub fn automatic(paths: &Paths) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(&paths.backups)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "backup"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.reverse();
    found
}

/// Writes an automatic backup and keeps the newest [`KEEP`].
pub fn rotate(store: &dyn Store, paths: &Paths) -> Result<PathBuf> {
    let name = format!("autoprov-{}.backup", compact_timestamp(&now_rfc3339()));
    let (_, path) = write(store, &paths.backups.join(name))?;
    for old in automatic(paths).into_iter().skip(KEEP) {
        let _ = fs::remove_file(old);
    }
    Ok(path)
}

/// What to tell an operator whose store does not open.
pub fn advice(paths: &Paths) -> String {
    match automatic(paths).first() {
        Some(newest) => format!(
            "stop autoprov, then restore the newest backup: `autoprov restore {}`",
            newest.display()
        ),
        None => format!(
            "no automatic backup exists in {}; restore one you made with `autoprov backup FILE`",
            paths.backups.display()
        ),
    }
}

/// Replaces the store with a backup. The old store is kept beside it, renamed.
pub fn restore(paths: &Paths, file: &Path) -> Result<(u64, Option<PathBuf>)> {
    // The file named on the command line is missing or no backup: a usage error (exit 2),
    // unlike a failure to write the new store (exit 5).
    let input = fs::File::open(file)
        .map_err(|e| Error::usage(format!("opening backup {}: {e}", file.display())))?;
    let staging = paths.store.with_extension("restoring");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let n = match SledStore::import(&staging, std::io::BufReader::new(input)) {
        Ok(n) => n,
        Err(StoreError::Corrupt(e)) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::usage(format!(
                "reading backup {}: {e}",
                file.display()
            )));
        }
        Err(e) => {
            return Err(Error::from(e).context(format!("restoring {}", file.display())));
        }
    };
    match SledStore::open(&staging).and_then(|s| s.verify_index()) {
        Ok(()) => {}
        Err(e @ StoreError::Corrupt(_)) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::usage(format!(
                "the restored store does not pass the integrity check: {e}"
            )));
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::from(e).context("opening the restored store"));
        }
    }
    let replaced = if paths.store.exists() {
        let aside = paths
            .store
            .with_extension(format!("replaced-{}", compact_timestamp(&now_rfc3339())));
        fs::rename(&paths.store, &aside)?;
        Some(aside)
    } else {
        None
    };
    fs::rename(&staging, &paths.store)?;
    crate::store::watermark::forget(&paths.store)?;
    Ok((n, replaced))
}
