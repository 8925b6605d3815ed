//! A durable record, outside sled, of how far the store's counters have gone.
//!
//! sled 0.34 treats damage in the newest part of its log as a torn write and silently drops
//! the rest of the log, so a damaged store could open with committed changes missing. After
//! every flushed change the store's counters (audit sequence, file id, rule id) are written
//! here; at open, a store whose counters are behind this record has lost committed data
//! and is refused.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The counters a store has reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Last audit entry written.
    pub audit_seq: u64,
    /// Last file id allocated.
    pub file_id: u64,
    /// Last rule id allocated.
    pub rule_id: u64,
}

/// The watermark file of the store at `store_dir`: inside it (sled ignores other files),
/// so it moves with the store when a restore puts it aside.
pub fn path(store_dir: &Path) -> PathBuf {
    store_dir.join("autoprov.watermark")
}

/// Records `counters` durably.
pub fn record(store_dir: &Path, counters: Counters) -> std::io::Result<()> {
    let json = serde_json::to_vec(&counters).expect("counters serialize");
    crate::util::write_atomic(&path(store_dir), &json)
}

/// Compares the store's counters with the record: the description of what was lost, if any.
/// No record is nothing lost (a new store, a restored one); a record that does not parse
/// is damage (it was written whole, by a rename: damaged, it could hide a store rolled
/// back); one that cannot be read (its permissions) is an error of its own, not damage to
/// restore a backup for.
pub fn check(store_dir: &Path, store: Counters) -> std::io::Result<Option<String>> {
    let file = path(store_dir);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("reading {}: {e}", file.display()),
            ));
        }
    };
    let recorded: Counters = match serde_json::from_slice(&bytes) {
        Ok(recorded) => recorded,
        Err(e) => return Ok(Some(unreadable(&file, &e.to_string()))),
    };
    let behind = [
        ("audit entries", store.audit_seq, recorded.audit_seq),
        ("file ids", store.file_id, recorded.file_id),
        ("rule ids", store.rule_id, recorded.rule_id),
    ]
    .into_iter()
    .filter(|(_, have, had)| have < had)
    .map(|(what, have, had)| format!("{what} reached {had} but the store has {have}"))
    .collect::<Vec<_>>();
    Ok((!behind.is_empty()).then(|| {
        format!(
            "the store has lost committed changes ({})",
            behind.join(", ")
        )
    }))
}

/// Why the record at `file` cannot be compared.
fn unreadable(file: &Path, why: &str) -> String {
    format!(
        "its record of how far it had come, {}, does not read ({why}), so a store that lost \
         committed changes could not be told from a whole one",
        file.display()
    )
}

/// The counters recorded in `store_dir`, when a record is there and reads.
pub fn read(store_dir: &Path) -> Option<Counters> {
    serde_json::from_slice(&std::fs::read(path(store_dir)).ok()?).ok()
}

/// Removes snapshots a crash left half-written: sled would read them as the newest and
/// call an intact store damaged.
pub fn remove_unfinished_snapshots(store_dir: &Path) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(store_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %entry.path().display(), "removing a snapshot left half-written by a crash");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_behind_its_record_is_reported_and_an_equal_or_newer_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let c = Counters {
            audit_seq: 5,
            file_id: 2,
            rule_id: 3,
        };
        let check = |c: Counters| check(&store, c).unwrap();
        assert_eq!(check(c), None, "no record yet");
        record(&store, c).unwrap();
        assert_eq!(check(c), None);
        assert_eq!(check(Counters { audit_seq: 9, ..c }), None);
        let lost = check(Counters { audit_seq: 4, ..c }).unwrap();
        assert!(
            lost.contains("audit entries reached 5 but the store has 4"),
            "{lost}"
        );
        std::fs::remove_file(path(&store)).unwrap();
        assert_eq!(check(Counters::default()), None);
        // A record that cannot be read is an error, not damage to restore a backup for.
        std::fs::create_dir(path(&store)).unwrap();
        assert!(super::check(&store, c).is_err());
    }

    #[test]
    fn unfinished_snapshots_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snap.00000001.generating"), b"").unwrap();
        std::fs::write(dir.path().join("snap.00000002"), b"x").unwrap();
        remove_unfinished_snapshots(dir.path()).unwrap();
        assert!(!dir.path().join("snap.00000001.generating").exists());
        assert!(dir.path().join("snap.00000002").exists());
    }
}
