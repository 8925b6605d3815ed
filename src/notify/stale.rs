//! The `stale` event: once when no file was applied for `notify.stale_after`, counted from
//! the last applied file (or the daemon's start when the ledger has none), and not again
//! until the next applied file.

use super::event::Since;
use std::time::{Duration, SystemTime};

/// The staleness clock: where it started, and whether this quiet spell was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    since: Since,
    fired: bool,
}

impl Staleness {
    /// The clock at start-up: from the ledger's last applied file, else from `started`;
    /// already reported when `reported` (what [`Staleness::marker`] gave when the event
    /// last fired, kept across restarts) names that same last applied file (or none).
    pub fn new(
        last_applied: Option<SystemTime>,
        started: SystemTime,
        reported: Option<&str>,
    ) -> Staleness {
        Staleness {
            since: last_applied.map_or(Since::StartUp(started), Since::LastApplied),
            fired: reported.is_some_and(|r| r == marker_of(last_applied)),
        }
    }

    /// What names the quiet spell the event is about, to keep once it fired: the last
    /// applied file's time, or that there is none.
    pub fn marker(&self) -> String {
        match self.since {
            Since::LastApplied(at) => marker_of(Some(at)),
            Since::StartUp(_) => marker_of(None),
        }
    }

    /// A file was applied at `at`: the clock restarts and the event is armed again.
    pub fn applied(&mut self, at: SystemTime) {
        *self = Staleness {
            since: Since::LastApplied(at),
            fired: false,
        };
    }

    /// Whether the event fires at `now` (then it is marked fired): where the clock started
    /// and how long it has been quiet.
    pub fn check(&mut self, now: SystemTime, stale_after: Duration) -> Option<(Since, Duration)> {
        let quiet = quiet_for(self.since, now);
        if !due(quiet, stale_after, self.fired) {
            return None;
        }
        self.fired = true;
        Some((self.since, quiet))
    }
}

/// The marker of a quiet spell since `last_applied` (or since no file was ever applied).
fn marker_of(last_applied: Option<SystemTime>) -> String {
    match last_applied {
        Some(at) => format!(
            "after the file applied at {}",
            humantime::format_rfc3339_nanos(at)
        ),
        None => "no file applied yet".into(),
    }
}

/// How long since the clock started (zero if the system clock went back before it).
fn quiet_for(since: Since, now: SystemTime) -> Duration {
    let (Since::LastApplied(at) | Since::StartUp(at)) = since;
    now.duration_since(at).unwrap_or_default()
}

/// The decision: quiet for at least `stale_after`, and not reported yet.
pub fn due(quiet: Duration, stale_after: Duration, already_fired: bool) -> bool {
    !already_fired && quiet >= stale_after
}

/// How often the timer looks: a quarter of `stale_after`, at most a minute, at least 50 ms.
pub fn check_interval(stale_after: Duration) -> Duration {
    (stale_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    fn at(hours: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + H * 1000 + H * hours as u32
    }

    #[test]
    fn the_decision_table() {
        for (quiet, fired, want) in [
            (H * 35, false, false),
            (H * 36, false, true),
            (H * 40, false, true),
            (H * 40, true, false),
            (Duration::ZERO, false, false),
        ] {
            assert_eq!(due(quiet, H * 36, fired), want, "{quiet:?} fired={fired}");
        }
    }

    #[test]
    fn fires_once_and_again_only_after_an_applied_file() {
        let mut s = Staleness::new(Some(at(0)), at(5), None);
        assert_eq!(s.check(at(35), H * 36), None);
        assert_eq!(
            s.check(at(36), H * 36),
            Some((Since::LastApplied(at(0)), H * 36))
        );
        assert_eq!(s.check(at(37), H * 36), None, "not repeated");
        assert_eq!(s.check(at(100), H * 36), None, "not repeated, however long");
        s.applied(at(101));
        assert_eq!(s.check(at(136), H * 36), None);
        assert_eq!(
            s.check(at(137), H * 36),
            Some((Since::LastApplied(at(101)), H * 36)),
            "re-armed by the applied file"
        );
    }

    /// SPEC §10: once until the next applied file, a restart in between too.
    #[test]
    fn a_restart_does_not_repeat_a_reported_spell() {
        let mut s = Staleness::new(Some(at(0)), at(5), None);
        assert!(s.check(at(36), H * 36).is_some());
        let kept = s.marker();
        // Restarted, the same last applied file: reported already.
        let mut s = Staleness::new(Some(at(0)), at(40), Some(&kept));
        assert_eq!(s.check(at(100), H * 36), None);
        // A file applied since (found in the ledger at the restart): a new spell.
        let mut s = Staleness::new(Some(at(50)), at(60), Some(&kept));
        assert!(s.check(at(86), H * 36).is_some());
        // No file ever applied, reported, restarted: not again.
        let mut s = Staleness::new(None, at(0), None);
        assert!(s.check(at(36), H * 36).is_some());
        let kept = s.marker();
        let mut s = Staleness::new(None, at(40), Some(&kept));
        assert_eq!(s.check(at(200), H * 36), None);
    }

    #[test]
    fn without_an_applied_file_the_clock_starts_at_start_up() {
        let mut s = Staleness::new(None, at(10), None);
        assert_eq!(s.check(at(45), H * 36), None);
        assert_eq!(
            s.check(at(46), H * 36),
            Some((Since::StartUp(at(10)), H * 36))
        );
        // A clock set back before the start is quiet for zero, not for ever.
        let mut s = Staleness::new(Some(at(10)), at(10), None);
        assert_eq!(s.check(at(0), Duration::from_secs(1)), None);
    }

    #[test]
    fn the_timer_looks_often_enough_but_not_busily() {
        assert_eq!(check_interval(H * 36), Duration::from_secs(60));
        assert_eq!(
            check_interval(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            check_interval(Duration::from_millis(10)),
            Duration::from_millis(50)
        );
    }
}
