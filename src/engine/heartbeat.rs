//! Whether the engine thread is alive, for systemd's watchdog: the time it took up the job
//! at hand, or none while it waits for one. The watchdog had been petted while the async
//! runtime ran, so an engine stuck on one job (a lock never released, a disk that never
//! answers) left files waiting for good with the unit healthy; now the petting stops once
//! a job has run for [`STUCK`], and systemd restarts the daemon (`Restart=on-failure`),
//! whose start recovers the store and files what was committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one job may run before the engine counts as stuck: far beyond any job's
/// measured time (a million-row first import takes seconds, a backup of the largest store
/// measured ~14 s), short enough that files do not wait for hours.
pub const STUCK: Duration = Duration::from_secs(10 * 60);

/// The engine's beat (see the module).
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// Seconds since the epoch when the job at hand was taken up; 0 while none is.
    busy_since: AtomicU64,
}

impl Heartbeat {
    /// The engine takes up a job.
    pub fn busy(&self) {
        self.busy_since
            .store(seconds(SystemTime::now()).max(1), Ordering::Relaxed);
    }

    /// The engine is done with it.
    pub fn idle(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
    }

    /// How long the job at hand has run, when that is [`STUCK`] or more, as of `now`.
    pub fn stuck_at(&self, now: SystemTime) -> Option<Duration> {
        let since = self.busy_since.load(Ordering::Relaxed);
        let running = Duration::from_secs(seconds(now).saturating_sub(since));
        (since != 0 && running >= STUCK).then_some(running)
    }
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_running_past_the_bound_is_stuck_and_waiting_never_is() {
        let beat = Heartbeat::default();
        let later = |d: Duration| SystemTime::now() + d;
        assert_eq!(beat.stuck_at(later(STUCK * 100)), None, "waiting for a job");
        beat.busy();
        assert_eq!(beat.stuck_at(later(Duration::from_secs(5))), None);
        let stuck = beat.stuck_at(later(STUCK + Duration::from_secs(5)));
        assert!(stuck.is_some_and(|d| d >= STUCK), "{stuck:?}");
        beat.idle();
        assert_eq!(beat.stuck_at(later(STUCK * 2)), None, "done");
    }
}
