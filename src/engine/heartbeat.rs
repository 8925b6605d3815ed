//! Whether the engine thread is alive, for systemd's watchdog: the time it took up the job
//! at hand, or none while it waits for one. The watchdog had been petted while the async
//! runtime ran, so an engine stuck on one job (a lock never released, a disk that never
//! answers) left files waiting for good with the unit healthy; now the petting stops once
//! a job has run for [`STUCK`], and systemd restarts the daemon (`Restart=on-failure`),
//! whose start recovers the store and files what was committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one job may run before the engine counts as stuck: far beyond any job's
/// measured time (a million-row first import takes seconds, a backup of the largest store
/// measured ~14 s), short enough that files do not wait for hours.
pub const STUCK: Duration = Duration::from_secs(10 * 60);

/// The engine's beat (see the module), on the monotonic clock: a wall clock set forward
/// (NTP, a VM resumed) would have read a short job as stuck.
#[derive(Debug)]
pub struct Heartbeat {
    /// What the times below count from.
    base: Instant,
    /// Milliseconds from `base` (plus one) when the job at hand was taken up; 0 while none.
    busy_since: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            base: Instant::now(),
            busy_since: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// The engine takes up a job.
    pub fn busy(&self) {
        let since = self.base.elapsed().as_millis();
        (self.busy_since).store(
            u64::try_from(since).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Relaxed,
        );
    }

    /// The engine is done with it.
    pub fn idle(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
    }

    /// How long the job at hand has run, when that is [`STUCK`] or more, as of `now`.
    pub fn stuck_at(&self, now: Instant) -> Option<Duration> {
        let since = self.busy_since.load(Ordering::Relaxed);
        let taken = self.base + Duration::from_millis(since.saturating_sub(1));
        let running = now.saturating_duration_since(taken);
        (since != 0 && running >= STUCK).then_some(running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_running_past_the_bound_is_stuck_and_waiting_never_is() {
        let beat = Heartbeat::default();
        let later = |d: Duration| Instant::now() + d;
        assert_eq!(beat.stuck_at(later(STUCK * 100)), None, "waiting for a job");
        beat.busy();
        assert_eq!(beat.stuck_at(later(Duration::from_secs(5))), None);
        let stuck = beat.stuck_at(later(STUCK + Duration::from_secs(5)));
        assert!(stuck.is_some_and(|d| d >= STUCK), "{stuck:?}");
        beat.idle();
        assert_eq!(beat.stuck_at(later(STUCK * 2)), None, "done");
    }
}
