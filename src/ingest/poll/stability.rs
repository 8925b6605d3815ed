//! Stability across listings of a remote folder: a file is taken once its size and time
//! stayed the same for the quiet period.

use super::client::RemoteFile;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Stability across listings: files whose (size, mtime) have not changed for at least
/// `quiet`, seen in two listings at least that far apart. Keep one per remote folder for
/// the daemon's lifetime (across reconnects); a file is returned from then on, as long as
/// it stays unchanged, so the daemon must also remember what it already fetched.
///
/// Two listings alone are not enough: after a failed poll the next one comes a second
/// later, and a vendor writing a roster in place with a pause of a few seconds would have
/// it fetched cut short (the missing employees deactivated, the whole file then moved away).
#[derive(Debug, Default)]
pub struct Stability {
    quiet: Duration,
    previous: HashMap<String, Seen>,
}

/// A file's attributes at a listing, and since when it has shown them.
#[derive(Debug, Clone, Copy)]
struct Seen {
    size: u64,
    mtime: u32,
    since: Instant,
}

/// What a listing holds: the files to take, and how soon a file not yet quiet long
/// enough will be.
#[derive(Debug, Default)]
pub struct Settled {
    /// Unchanged for `quiet`, in listing order.
    pub stable: Vec<RemoteFile>,
    /// The shortest wait until another file of the listing has been unchanged for `quiet`.
    pub next: Option<Duration>,
}

impl Stability {
    /// `quiet`: how long a file must stay unchanged before it is taken.
    pub fn new(quiet: Duration) -> Self {
        Self {
            quiet,
            previous: HashMap::new(),
        }
    }

    /// [`Stability::settled_at`] now.
    pub fn settled(&mut self, listing: &[RemoteFile]) -> Settled {
        self.settled_at(listing, Instant::now())
    }

    /// Returns the files of `listing` that earlier calls saw with the same size and mtime
    /// since at least `quiet` before `now` (in listing order), then remembers `listing`;
    /// files that disappeared are forgotten.
    pub fn settled_at(&mut self, listing: &[RemoteFile], now: Instant) -> Settled {
        let mut settled = Settled::default();
        let mut seen = HashMap::with_capacity(listing.len());
        for f in listing {
            let prior =
                (self.previous.get(&f.name)).filter(|p| (p.size, p.mtime) == (f.size, f.mtime));
            let since = prior.map_or(now, |p| p.since);
            let left = self
                .quiet
                .saturating_sub(now.saturating_duration_since(since));
            if prior.is_some() && left.is_zero() {
                settled.stable.push(f.clone());
            } else {
                settled.next = Some(settled.next.map_or(left, |w| w.min(left)));
            }
            seen.insert(
                f.name.clone(),
                Seen {
                    size: f.size,
                    mtime: f.mtime,
                    since,
                },
            );
        }
        self.previous = seen;
        settled
    }

    /// The files of `listing` that are stable now ([`Stability::settled`]).
    pub fn stable(&mut self, listing: &[RemoteFile]) -> Vec<RemoteFile> {
        self.settled(listing).stable
    }
}
