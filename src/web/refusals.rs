//! Refused sign-ins in the log, without letting whoever sends them flood it: anyone who can
//! reach the web section can send a request a millisecond with a forged SSO header or a
//! guessed API token, each of which was a line of the daemon's log (the journal then drops
//! the daemon's other lines under its rate limit). The first refusal of a kind is logged;
//! the ones after it are counted, and the count is logged with the next refusal at least
//! [`INTERVAL`] later, as the SFTP server does with the connections it refuses.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often at most a kind of refusal is logged.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One kind of refusal: when it may be logged again, and how many went unlogged since.
pub struct Refusals {
    state: Mutex<State>,
}

struct State {
    quiet_until: Option<Instant>,
    unlogged: u64,
}

/// An SSO header from an address outside `web.trusted_proxies`.
pub static FORGED_HEADER: Refusals = Refusals::new();

/// An SSO header on a request addressed to a name outside `web.allowed_hosts` (DNS
/// rebinding, or a proxy's public name not listed yet).
pub static FOREIGN_HOST: Refusals = Refusals::new();

/// An `Authorization: Bearer` token not listed in `web.api_tokens_file`.
pub static UNKNOWN_TOKEN: Refusals = Refusals::new();

/// A token that could not be checked: `web.api_tokens_file` unreadable, or a line of it
/// malformed (read at every request that sends a token: a line a request had been one
/// line of the log too).
pub static TOKENS_FILE: Refusals = Refusals::new();

/// A connection closed at once: its address had as many open as one may hold.
pub static TOO_MANY_CONNECTIONS: Refusals = Refusals::new();

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new()
    }
}

impl Refusals {
    /// None refused yet.
    pub const fn new() -> Refusals {
        Refusals {
            state: Mutex::new(State {
                quiet_until: None,
                unlogged: 0,
            }),
        }
    }

    /// What to do with a refusal at `now`.
    fn admit(&self, now: Instant) -> Admit {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = state.quiet_until.filter(|t| now < *t) {
            state.unlogged += 1;
            return Admit::Count {
                first: state.unlogged == 1,
                until,
            };
        }
        state.quiet_until = Some(now + INTERVAL);
        Admit::Log {
            unlogged: std::mem::take(&mut state.unlogged),
        }
    }

    /// The refusals counted since the last line, now logged: how many.
    fn take_unlogged(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.unlogged)
    }

    /// Logs a refusal from `peer` (`what` says which), or counts it: the count is logged
    /// when its interval ends, or with the next refusal logged.
    pub fn warn(&'static self, peer: Option<IpAddr>, what: &str) {
        match self.admit(Instant::now()) {
            Admit::Log { unlogged } => {
                let peer = peer.map_or("-".to_string(), |p| p.to_string());
                match unlogged {
                    0 => {
                        tracing::warn!(%peer, "{what}; more are counted and logged at most every {} s", INTERVAL.as_secs())
                    }
                    n => {
                        tracing::warn!(%peer, unlogged = n, "{what} ({n} more since the last line)")
                    }
                }
            }
            // The first one counted: its count is logged when the interval ends, even if
            // no refusal comes after it.
            Admit::Count { first: true, until } => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let what = what.to_string();
                runtime.spawn(async move {
                    tokio::time::sleep_until(until.into()).await;
                    let n = self.take_unlogged();
                    if n > 0 {
                        tracing::warn!(
                            refused = n,
                            "{what}: {n} more in the last {} s",
                            INTERVAL.as_secs()
                        );
                    }
                });
            }
            Admit::Count { first: false, .. } => {}
        }
    }
}

/// What [`Refusals::admit`] says of a refusal.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Log it, with how many went unlogged before it.
    Log { unlogged: u64 },
    /// Count it; `first` in its interval, which ends `until`.
    Count { first: bool, until: Instant },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_is_logged_then_counted_until_the_interval_has_passed() {
        let refusals = Refusals::new();
        let t0 = Instant::now();
        let until = t0 + INTERVAL;
        assert_eq!(refusals.admit(t0), Admit::Log { unlogged: 0 });
        let first = refusals.admit(t0 + Duration::from_millis(1));
        assert_eq!(first, Admit::Count { first: true, until });
        for i in 2..=1000u64 {
            let counted = refusals.admit(t0 + Duration::from_millis(i));
            assert_eq!(
                counted,
                Admit::Count {
                    first: false,
                    until
                }
            );
        }
        assert!(matches!(
            refusals.admit(t0 + INTERVAL - Duration::from_millis(1)),
            Admit::Count { first: false, .. }
        ));
        assert_eq!(refusals.admit(t0 + INTERVAL), Admit::Log { unlogged: 1001 });
        // Counted, then logged when the interval ends (the timer takes them): not again.
        let later = t0 + INTERVAL + Duration::from_secs(1);
        assert!(matches!(
            refusals.admit(later),
            Admit::Count { first: true, .. }
        ));
        assert_eq!(refusals.take_unlogged(), 1);
        assert_eq!(
            refusals.admit(t0 + 3 * INTERVAL),
            Admit::Log { unlogged: 0 }
        );
    }
}
