//! How far the start-up check of the accounts' heads has gone.
//!
//! Why: a `process` or `sync` without the daemon reads every bucket's heads to plan, which
//! decodes them exactly as the start-up check does; checked at open too, a million accounts'
//! heads were read twice (~0.17 s of CPU, a `sync`'s 1.08 s → 0.93 s without it). A store
//! opened for such a command ([`super::SledStore::open_checking_as_read`]) counts each bucket
//! checked as the plan reads it, and anything else that reads or writes the accounts, or
//! writes anything at all, first has the check completed ([`HeadsCheck::outcome`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which buckets' heads were read (so decoded) since a deferred open, and, once every one
/// is known to decode or one does not, the verdict.
pub(super) struct HeadsCheck {
    /// One bit per bucket; empty when the check was made at open.
    read: Box<[AtomicU64]>,
    verdict: OnceLock<Result<(), String>>,
}

impl HeadsCheck {
    /// Checked already, at open.
    pub(super) fn done() -> HeadsCheck {
        HeadsCheck {
            read: Box::new([]),
            verdict: OnceLock::from(Ok(())),
        }
    }

    /// Not checked yet: `buckets` to be read or checked.
    pub(super) fn deferred(buckets: usize) -> HeadsCheck {
        HeadsCheck {
            read: (0..buckets.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            verdict: OnceLock::new(),
        }
    }

    /// Bucket `b`'s heads were read and decoded.
    pub(super) fn note_read(&self, b: usize) {
        if let Some(word) = self.read.get(b / 64) {
            word.fetch_or(1 << (b % 64), Ordering::Relaxed);
        }
    }

    /// A bucket read was found damaged: that is the verdict (unless one was given).
    pub(super) fn note_damage(&self, e: &super::StoreError) {
        if let super::StoreError::Corrupt(detail) = e {
            let _ = self.verdict.set(Err(detail.clone()));
        }
    }

    /// Whether all of the first `buckets` were read.
    fn all_read(&self, buckets: usize) -> bool {
        (0..buckets).all(|b| {
            self.read
                .get(b / 64)
                .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (b % 64)) != 0)
        })
    }

    /// The verdict on every bucket's heads (`Err(detail)` for damage): known, or every one
    /// of the `buckets` was read, or `check` reads them all now and gives it. An error of
    /// `check` says nothing about the store (I/O): it is returned, not kept as the verdict,
    /// and the check runs again next time.
    pub(super) fn outcome<E>(
        &self,
        buckets: usize,
        check: impl FnOnce() -> Result<Result<(), String>, E>,
    ) -> Result<Result<(), String>, E> {
        if let Some(verdict) = self.verdict.get() {
            return Ok(verdict.clone());
        }
        let verdict = match self.all_read(buckets) {
            true => Ok(()),
            false => check()?,
        };
        Ok(self.verdict.get_or_init(|| verdict).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_check_is_done_when_every_bucket_was_read_or_checked_whole() {
        let reads = std::cell::Cell::new(0);
        let check = |verdict: Result<(), String>| {
            reads.set(reads.get() + 1);
            Ok::<_, ()>(verdict)
        };
        assert_eq!(
            HeadsCheck::done().outcome(130, || check(Err("x".into()))),
            Ok(Ok(()))
        );
        assert_eq!(reads.get(), 0, "checked at open: nothing read again");

        // All 130 buckets read by the plan: nothing to read again.
        let h = HeadsCheck::deferred(130);
        (0..130).for_each(|b| h.note_read(b));
        assert_eq!(h.outcome(130, || check(Err("x".into()))), Ok(Ok(())));
        assert_eq!(reads.get(), 0);

        // One bucket not read: the whole check runs, once, and its verdict stays.
        let h = HeadsCheck::deferred(130);
        (0..130).filter(|&b| b != 129).for_each(|b| h.note_read(b));
        assert_eq!(
            h.outcome(130, || check(Err("damaged".into()))),
            Ok(Err("damaged".into()))
        );
        assert_eq!(h.outcome(130, || check(Ok(()))), Ok(Err("damaged".into())));
        assert_eq!(reads.get(), 1);

        // An I/O error is no verdict: asked again next time.
        let h = HeadsCheck::deferred(130);
        assert_eq!(
            h.outcome(130, || Err::<Result<(), String>, _>("eio")),
            Err("eio")
        );
        assert_eq!(h.outcome(130, || check(Ok(()))), Ok(Ok(())));
    }
}
