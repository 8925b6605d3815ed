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

/// An `Authorization: Bearer` token not listed in `web.api_tokens_file`.
pub static UNKNOWN_TOKEN: Refusals = Refusals::new();

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

    /// Whether a refusal at `now` is to be logged, with how many went unlogged before it
    /// (`Some(0)` for the first); `None` when it is only counted.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.quiet_until.is_some_and(|t| now < t) {
            state.unlogged += 1;
            return None;
        }
        state.quiet_until = Some(now + INTERVAL);
        Some(std::mem::take(&mut state.unlogged))
    }

    /// Logs a refusal from `peer` (`what` says which) when [`Refusals::admit`] lets it.
    pub fn warn(&self, peer: Option<IpAddr>, what: &str) {
        let Some(unlogged) = self.admit(Instant::now()) else {
            return;
        };
        let peer = peer.map_or("an unknown address".to_string(), |p| p.to_string());
        match unlogged {
            0 => {
                tracing::warn!(%peer, "{what}; more are counted and logged at most every {} s", INTERVAL.as_secs())
            }
            n => {
                tracing::warn!(%peer, unlogged = n, "{what} ({n} more refused since the last line)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_is_logged_then_counted_until_the_interval_has_passed() {
        let refusals = Refusals::new();
        let t0 = Instant::now();
        assert_eq!(refusals.admit(t0), Some(0));
        for i in 1..=1000u64 {
            assert_eq!(refusals.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            refusals.admit(t0 + INTERVAL - Duration::from_millis(1)),
            None
        );
        assert_eq!(refusals.admit(t0 + INTERVAL), Some(1001), "the count, once");
        assert_eq!(refusals.admit(t0 + INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(refusals.admit(t0 + 3 * INTERVAL), Some(1));
        assert_eq!(refusals.admit(t0 + 5 * INTERVAL), Some(0));
    }
}
