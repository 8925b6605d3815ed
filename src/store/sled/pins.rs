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
use std::collections::BTreeMap;
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
    /// One more at each write that made versions current while readers scanned.
    epoch: u64,
    /// Readers now scanning, by the epoch they started in.
    readers: BTreeMap<u64, usize>,
    /// Versions replaced, by the epoch their write began: needed only by readers that
    /// started in an earlier one (a later reader read the directory after the write).
    waiting: Vec<(u64, Superseded)>,
    /// Removals of waiting versions under way (outside the lock).
    removing: usize,
    /// A write is under way on the engine's thread: its marker is its own.
    writing: bool,
    /// The store's unfinished marker stays set for versions that waited, in this process
    /// (not for a failure or a crash, whose leftovers the next start removes).
    marked: bool,
    /// A write or a removal failed (or panicked) and left versions for the next start to
    /// remove: the marker stays set until then, whatever this process does after.
    left: bool,
}

impl State {
    /// The waiting versions no reader may still read; counted as being removed.
    fn take_free(&mut self) -> Vec<Superseded> {
        let oldest = self.readers.keys().next().copied().unwrap_or(u64::MAX);
        let (free, kept) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition::<Vec<_>, _>(|(epoch, _)| *epoch <= oldest);
        self.waiting = kept;
        if !free.is_empty() {
            self.removing += 1;
        }
        free.into_iter().map(|(_, s)| s).collect()
    }
}

impl Pins {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a write made `superseded` current: the versions to remove now (these and any
    /// no reader needs any longer), counted as being removed (tell [`SledStore::removed`]);
    /// `None` when readers scanning may read them (they wait, and the marker stays set:
    /// `marked` says whether this write set it).
    pub fn remove_or_wait(&self, superseded: Superseded, marked: bool) -> Option<Vec<Superseded>> {
        let mut state = self.state();
        state.epoch += 1;
        if !state.readers.is_empty() {
            let epoch = state.epoch;
            state.waiting.push((epoch, superseded));
            state.marked |= marked;
            return None;
        }
        let mut all = state.take_free();
        if all.is_empty() {
            state.removing += 1;
        }
        all.push(superseded);
        Some(all)
    }

    /// Whether a set marker is this process's, for versions that waited, and nothing was
    /// left for the next start.
    pub fn ours(&self) -> bool {
        let state = self.state();
        state.marked && !state.left
    }

    /// Whether the marker must stay set: versions wait for readers or are being removed,
    /// or something was left for the next start.
    pub fn keep_marker(&self) -> bool {
        let state = self.state();
        !state.waiting.is_empty() || state.removing > 0 || state.left
    }

    /// The marker was cleared.
    pub fn cleared(&self) {
        self.state().marked = false;
    }

    /// A write left versions for the next start to remove: the marker stays set for it.
    pub fn left_for_next_start(&self) {
        self.state().left = true;
    }
}

/// A reader pinned: while it lives, no version it may read is removed.
pub(super) struct Pinned<'a> {
    store: &'a SledStore,
    epoch: u64,
}

impl SledStore {
    /// Pins a reader; read the directory after this.
    pub(super) fn pinned(&self) -> Pinned<'_> {
        let mut state = self.pins.state();
        let epoch = state.epoch;
        *state.readers.entry(epoch).or_default() += 1;
        Pinned { store: self, epoch }
    }

    /// Removes the versions `superseded` replaced (logged when they cannot be: the next
    /// start removes them, the marker staying set for it), and says they were removed.
    pub(super) fn remove_superseded(&self, superseded: &[Superseded]) -> bool {
        // Counted as done however it ends, a panic too.
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

    /// Clears the unfinished marker when it stays set only for versions that waited, and
    /// none waits or is being removed, and no write is under way (whose marker it would be):
    /// so that a stop after this is not taken for a crash at the next start.
    fn settle(&self, state: &mut State) {
        let settled = state.waiting.is_empty() && state.removing == 0 && !state.left;
        if state.marked && !state.writing && settled {
            match super::versions::finished(&self.versions) {
                Ok(()) => state.marked = false,
                Err(e) => {
                    tracing::warn!(error = %e, "the store's marker of finished writes was not cleared; the next start checks for leftovers")
                }
            }
        }
    }

    /// A write begins: while it is under way, only it clears the marker; until
    /// dropped ([`Writing`]).
    pub(super) fn writing(&self) -> Writing<'_> {
        self.pins.state().writing = true;
        Writing { store: self }
    }
}

/// A removal of versions under way ([`State::removing`]), until dropped.
struct Removing<'a> {
    store: &'a SledStore,
    /// It removed all it was given.
    done: bool,
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        let mut state = self.store.pins.state();
        state.removing -= 1;
        if !self.done {
            // What it left is the next start's to remove: the marker stays set for it.
            state.left = true;
        }
        self.store.settle(&mut state);
    }
}

/// A write under way, until dropped: then the marker is cleared if it stays set only for
/// versions that no longer wait (a write that changes nothing, the ledger's alone, had
/// left it); after a panic it stays set for the next start.
pub(super) struct Writing<'a> {
    store: &'a SledStore,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut state = self.store.pins.state();
        state.writing = false;
        if std::thread::panicking() {
            state.left = true;
        }
        self.store.settle(&mut state);
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let free = {
            let mut state = self.store.pins.state();
            if let Some(count) = state.readers.get_mut(&self.epoch) {
                *count -= 1;
                if *count == 0 {
                    state.readers.remove(&self.epoch);
                }
            }
            state.take_free()
        };
        if !free.is_empty() {
            self.store.remove_superseded(&free);
        }
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
                let _writing = s.writing();
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
