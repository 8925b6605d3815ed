//! When each file of inbox/ became complete, as the running daemon first saw it: the order
//! files are processed in (SPEC §5: in order of completion) and their `received_at`. A
//! file's ctime is when it was renamed into inbox/, but a `chmod` of a file waiting behind a
//! held one (or a backup agent's extended attribute) changes it, and had put an older
//! roster after a newer one, giving back rights the newer took away.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// [`inbox_order`] of a file as first seen.
pub type Arrival = (SystemTime, SystemTime);

/// A file by device and inode.
type Inode = (u64, u64);

/// The files of inbox/ seen while the daemon runs, by inode.
#[derive(Default)]
pub struct Arrivals(Mutex<HashMap<Inode, Seen>>);

/// A file of inbox/ as first seen: its [`Arrival`], and what tells it from a file given its
/// inode since (removed, and another made, between two listings): its size and its birth
/// time, or, where the file system keeps no birth time, its size and last write. Taken for
/// the removed file's, the new one had come first, with the removed one's `received_at`.
/// Not the last write where a birth time is kept: a `touch` had moved a file to the end.
#[derive(Clone, Copy, PartialEq)]
struct Seen {
    arrival: Arrival,
    size: u64,
    born_or_written: Option<SystemTime>,
}

/// The inode of the file `meta` is of.
pub fn inode(meta: &fs::Metadata) -> Inode {
    (meta.dev(), meta.ino())
}

impl Arrivals {
    /// [`inbox_order`] of the file of inbox/ `meta` is of, as it was when first seen.
    pub fn of(&self, meta: &fs::Metadata) -> Arrival {
        let now = Seen {
            arrival: inbox_order(meta),
            size: meta.len(),
            born_or_written: meta.created().or_else(|_| meta.modified()).ok(),
        };
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let seen = seen.entry(inode(meta)).or_insert(now);
        if (seen.size, seen.born_or_written) != (now.size, now.born_or_written) {
            *seen = now;
        }
        seen.arrival
    }

    /// Forgets the files not among `listed` (gone from inbox/: their inode may be given to
    /// a new file).
    pub fn keep_only(&self, listed: &HashSet<Inode>) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|inode, _| listed.contains(inode));
    }

    /// How many files are remembered.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Where a file of inbox/ comes in the order files are processed (then by name): when it
/// became complete, and, among files renamed in within one tick of the coarse change time,
/// its last write (watch mode moves several at once, oldest write first).
pub fn inbox_order(meta: &fs::Metadata) -> Arrival {
    let written = meta.modified().unwrap_or(UNIX_EPOCH);
    (completion_time(meta), written)
}

/// When a file became complete: its change time (a rename into inbox/ sets it).
pub fn completion_time(meta: &fs::Metadata) -> SystemTime {
    let secs = meta.ctime().max(0) as u64;
    let nanos = meta.ctime_nsec().clamp(0, 999_999_999) as u32;
    UNIX_EPOCH + Duration::new(secs, nanos)
}
