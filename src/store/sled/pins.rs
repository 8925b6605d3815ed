//! Readers that scan every bucket read them as one directory named them at their start: the
//! versions a write replaces are removed only once no such reader is left.
//!
//! Why: a scan read the directory once, and a bucket whose version a commit had removed
//! since it read again from the newer directory. `admins list` and `status` beside a commit
//! showed states that never were (10,645 active accounts between rosters of 830 and 57,165).
//! A reader is pinned before it reads the directory, and a write checks for readers after
//! it made its versions current: a reader either is counted, or reads the new directory.

use super::store::SledStore;
use super::versions::Directory;
use std::sync::Mutex;

/// The versions one write replaced: its directories before it, and what it put in place.
pub(super) struct Superseded {
    pub before: (Directory, Directory),
    pub written: super::write::Written,
}

/// The pinned readers of one open store, and the versions waiting for them.
#[derive(Default)]
pub(super) struct Pins(Mutex<State>);

#[derive(Default)]
struct State {
    /// Readers now scanning.
    readers: usize,
    /// Versions replaced while they scanned.
    waiting: Vec<Superseded>,
    /// The store's unfinished marker was left set by a wait in this process (not by a
    /// failure or a crash, whose leftovers the next start removes).
    marked: bool,
}

impl Pins {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a write made `superseded` current: the versions to remove now (these and any
    /// left waiting) when no reader is pinned; `None` when they wait (the marker then stays
    /// set, as this write's `marked` says whether it set it).
    pub fn remove_or_wait(&self, superseded: Superseded, marked: bool) -> Option<Vec<Superseded>> {
        let mut state = self.state();
        if state.readers > 0 {
            state.waiting.push(superseded);
            state.marked |= marked;
            return None;
        }
        let mut all = std::mem::take(&mut state.waiting);
        all.push(superseded);
        Some(all)
    }

    /// Whether the marker was set by a wait of this process, not a failure.
    pub fn marked(&self) -> bool {
        self.state().marked
    }

    /// Whether versions wait for readers (the marker must stay set).
    pub fn waiting(&self) -> bool {
        !self.state().waiting.is_empty()
    }

    /// The marker was cleared, or must now stay set until the next start (a removal failed).
    pub fn unmark(&self) {
        self.state().marked = false;
    }
}

/// A reader pinned: while it lives, no version it may read is removed.
pub(super) struct Pinned<'a> {
    store: &'a SledStore,
}

impl SledStore {
    /// Pins a reader; read the directory after this.
    pub(super) fn pinned(&self) -> Pinned<'_> {
        self.pins.state().readers += 1;
        Pinned { store: self }
    }

    /// Removes the versions `superseded` replaced (logged when they cannot be: the next
    /// start removes them, the marker staying set for it).
    pub(super) fn remove_superseded(&self, superseded: &[Superseded]) -> bool {
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
            self.pins.unmark();
        }
        removed.is_ok()
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let left = {
            let mut state = self.store.pins.state();
            state.readers -= 1;
            match state.readers {
                0 => std::mem::take(&mut state.waiting),
                _ => Vec::new(),
            }
        };
        // The marker stays set: the next write clears it ([`Pins::marked`]).
        self.store.remove_superseded(&left);
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
        assert!(!s.pins.waiting());
        assert_eq!(
            s.buckets().collect_garbage().unwrap(),
            0,
            "nothing left behind"
        );
        // The marker left set while they waited is cleared by the next write.
        commit_accounts(&s, vec![account("E00000")]);
        assert!(!super::super::versions::unfinished(&s.versions).unwrap());
    }
}
