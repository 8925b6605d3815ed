//! Readers that scan every bucket read them as one directory named them at their start: the
//! versions a write replaces are removed only once no such reader is left.
//!
//! Why: a scan read the directory once, and a bucket whose version a commit had removed
//! since it read again from the newer directory. `admins list` and `status` beside a commit
//! showed states that never were (10,645 active accounts between rosters of 830 and 57,165).
//! A reader is pinned before it reads the directory, and a write checks for readers after
//! it made its versions current: a reader either is counted, or reads the new directory.
//! This is the bookkeeping; [`super::readers`] holds the guards the store hands out.

use super::versions::{self, Directory, Written};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The versions one write replaced: its directories before it, and what it put in place.
pub(super) struct Superseded {
    pub before: (Directory, Directory),
    pub written: Written,
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

    /// Clears the unfinished marker when it stays set only for versions that waited, and
    /// none waits or is being removed, and no write is under way (whose marker it would be):
    /// so that a stop after this is not taken for a crash at the next start.
    fn settle(&mut self, versions: &sled::Tree) {
        let settled = self.waiting.is_empty() && self.removing == 0 && !self.left;
        if self.marked && !self.writing && settled {
            match versions::finished(versions) {
                Ok(()) => self.marked = false,
                Err(e) => {
                    tracing::warn!(error = %e, "the store's marker of finished writes was not cleared; the next start checks for leftovers")
                }
            }
        }
    }
}

impl Pins {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reader begins: the epoch it is counted in (read the directory after this).
    pub fn pin(&self) -> u64 {
        let mut state = self.state();
        let epoch = state.epoch;
        *state.readers.entry(epoch).or_default() += 1;
        epoch
    }

    /// A reader of `epoch` ends: the versions no reader needs now, counted as being
    /// removed (tell [`Self::removed`]) when there are any.
    pub fn unpin(&self, epoch: u64) -> Vec<Superseded> {
        let mut state = self.state();
        if let Some(count) = state.readers.get_mut(&epoch) {
            *count -= 1;
            if *count == 0 {
                state.readers.remove(&epoch);
            }
        }
        state.take_free()
    }

    /// After a write made `superseded` current: the versions to remove now (these and any
    /// no reader needs any longer), counted as being removed (tell [`Self::removed`]);
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

    /// A removal counted as under way ended (`done`: it removed all it was given; else
    /// what it left is the next start's to remove, the marker staying set for it).
    pub fn removed(&self, done: bool, versions: &sled::Tree) {
        let mut state = self.state();
        state.removing -= 1;
        state.left |= !done;
        state.settle(versions);
    }

    /// A write begins: while it is under way, only it clears the marker.
    pub fn begin_write(&self) {
        self.state().writing = true;
    }

    /// A write ended: the marker is cleared if it stays set only for versions that no
    /// longer wait (a write that changes nothing, the ledger's alone, had left it); after a
    /// panic it stays set for the next start.
    pub fn end_write(&self, panicked: bool, versions: &sled::Tree) {
        let mut state = self.state();
        state.writing = false;
        state.left |= panicked;
        state.settle(versions);
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
