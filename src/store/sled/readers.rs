//! The guards the store hands out for [`super::pins`]: a reader pinned for as long as it
//! scans, a removal of replaced versions, a write under way.

use super::pins::Superseded;
use super::store::SledStore;

/// A reader pinned: while it lives, no version it may read is removed.
pub(super) struct Pinned<'a> {
    store: &'a SledStore,
    epoch: u64,
}

impl SledStore {
    /// Pins a reader; read the directory after this.
    pub(super) fn pinned(&self) -> Pinned<'_> {
        let epoch = self.pins.pin();
        Pinned { store: self, epoch }
    }

    /// Removes the versions `superseded` replaced, which the pins counted as being removed
    /// (logged when they cannot be: the next start removes them, the marker staying set
    /// for it), and says they were removed.
    pub(super) fn remove_superseded(&self, superseded: &[Superseded]) -> bool {
        // Told however it ends, a panic too.
        let mut removing = Removing {
            store: self,
            done: false,
        };
        let removed = superseded.iter().try_for_each(|s| {
            self.buckets()
                .remove_superseded(&s.before.0, &s.written.accounts)
                .and_then(|()| {
                    self.index()
                        .remove_superseded(&s.before.1, &s.written.index)
                })
        });
        if let Err(e) = &removed {
            tracing::warn!(error = %e, "bucket versions a write replaced were left; they are removed at the next start");
        }
        removing.done = removed.is_ok();
        removed.is_ok()
    }

    /// A write begins, until the guard is dropped (see [`super::pins::Pins::end_write`]);
    /// `changes`: it puts versions aside (a panic then may leave some).
    pub(super) fn writing(&self, changes: bool) -> Writing<'_> {
        self.pins.begin_write();
        Writing {
            store: self,
            changes,
        }
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let free = self.store.pins.unpin(self.epoch);
        if !free.is_empty() {
            self.store.remove_superseded(&free);
        }
    }
}

/// A removal of replaced versions under way, until dropped.
struct Removing<'a> {
    store: &'a SledStore,
    /// It removed all it was given.
    done: bool,
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        self.store.pins.removed(self.done, &self.store.versions);
    }
}

/// A write under way, until dropped.
pub(super) struct Writing<'a> {
    store: &'a SledStore,
    changes: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let panicked = self.changes && std::thread::panicking();
        self.store.pins.end_write(panicked, &self.store.versions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::accounts::Status;
    use crate::store::Store;
    use crate::store::samples::{account, commit_accounts};

    /// Every account deactivated by a commit made while a scan is under way: the scan reads
    /// every bucket as it was at its start, not the buckets it reaches after the commit
    /// from the commit's versions; those replaced are removed once it ends.
    #[test]
    fn a_scan_beside_a_commit_reads_one_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..3000).map(|i| format!("E{i:05}")).collect();
        commit_accounts(&s, ids.iter().map(|id| account(id)).collect());
        let inactive = || {
            let mut all: Vec<_> = ids.iter().map(|id| account(id)).collect();
            all.iter_mut().for_each(|a| a.status = Status::Inactive);
            all
        };
        let (mut seen, mut committed) = (Vec::new(), false);
        s.scan_accounts(&mut |a| {
            if !committed {
                commit_accounts(&s, inactive());
                committed = true;
            }
            seen.push(a.status);
        })
        .unwrap();
        assert_eq!(seen.len(), ids.len());
        assert!(
            seen.iter().all(|&st| st == Status::Active),
            "a blend of two states"
        );
        // Read again: the commit's state, and only the current versions are left.
        let mut now = Vec::new();
        s.scan_accounts(&mut |a| now.push(a.status)).unwrap();
        assert!(now.iter().all(|&st| st == Status::Inactive));
        assert!(!s.pins.keep_marker());
        assert_eq!(
            s.buckets().collect_garbage().unwrap(),
            0,
            "nothing left behind"
        );
        // The marker left set while they waited was cleared once they were removed: a stop
        // now is not taken for a crash at the next start.
        assert!(!super::super::versions::unfinished(&s.versions).unwrap());
    }

    /// Versions removed while a write is under way: the marker is cleared when that write
    /// ends (one that changes nothing had left it set, and the next start took a clean stop
    /// for a crash); a write that panics leaves it set for the next start.
    #[test]
    fn the_marker_is_cleared_when_the_write_under_way_ends_unless_it_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let unfinished = || super::super::versions::unfinished(&s.versions).unwrap();
        commit_accounts(&s, vec![account("E1")]);
        for panics in [false, true] {
            let reader = s.pinned();
            commit_accounts(&s, vec![account("E2")]);
            assert!(unfinished());
            let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _writing = s.writing(true);
                drop(reader);
                assert!(unfinished(), "not while the write is under way");
                if panics {
                    panic!("a write that panics");
                }
            }));
            assert_eq!(ended.is_err(), panics);
            assert_eq!(unfinished(), panics);
        }
    }

    /// Something left for the next start (a write or a removal that failed): the marker
    /// stays set whatever is removed or written after it in this process.
    #[test]
    fn a_marker_left_for_the_next_start_is_never_cleared_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let unfinished = || super::super::versions::unfinished(&s.versions).unwrap();
        commit_accounts(&s, vec![account("E1")]);
        let reader = s.pinned();
        commit_accounts(&s, vec![account("E2")]);
        s.pins.left_for_next_start();
        drop(reader);
        commit_accounts(&s, vec![account("E3")]);
        assert!(unfinished());
    }

    /// Readers that keep overlapping do not keep every replaced version: those of a write
    /// are removed once the readers that started before it have ended.
    #[test]
    fn versions_wait_only_for_readers_older_than_their_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let unfinished = || super::super::versions::unfinished(&s.versions).unwrap();
        commit_accounts(&s, vec![account("E1")]);
        let first = s.pinned();
        commit_accounts(&s, vec![account("E2")]);
        let second = s.pinned();
        assert!(s.pins.keep_marker() && unfinished());
        drop(first);
        assert!(
            !s.pins.keep_marker(),
            "the second reader started after the write"
        );
        assert!(!unfinished());
        commit_accounts(&s, vec![account("E3")]);
        assert!(
            s.pins.keep_marker(),
            "the second reader may read what this write replaced"
        );
        drop(second);
        assert!(!s.pins.keep_marker() && !unfinished());
        assert_eq!(s.buckets().collect_garbage().unwrap(), 0);
        assert_eq!(s.index().collect_garbage().unwrap(), 0);
    }
}
