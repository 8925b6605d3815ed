//! Posting events: one POST per event, retried with back-off (1 s doubling to 5 min) for up
//! to an hour, a few at a time, each failure logged with the webhook's scheme and host only
//! (its path may be a token).

use super::Shared;
use super::event::Event;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Deliveries in flight at once: a receiver that hangs holds up at most this many; the
/// rest wait in the queue.
const IN_FLIGHT: usize = 4;
/// The first wait before a retry; doubled after each failure up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// After this long from its first attempt a delivery is given up (SPEC §10: an hour).
const GIVE_UP_AFTER: Duration = Duration::from_secs(3600);
/// Connecting, and one whole attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client for the webhook at `url`: no redirects (a redirect could lead the
/// token's request elsewhere), bounded attempts. A loopback URL is posted to directly,
/// never through the environment's proxy (`http_proxy`, `ALL_PROXY`): a clear-text one is
/// allowed only because it never crosses a network, and the proxy had been sent each event
/// with the URL's token in clear text.
pub fn client(url: &reqwest::Url) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("autoprov/", env!("CARGO_PKG_VERSION")));
    let builder = match crate::config::notify::is_loopback(url) {
        true => builder.no_proxy(),
        false => builder,
    };
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("building the webhook's HTTP client: {}", chain(&e)))
}

/// Where to post, and with what.
#[derive(Clone)]
pub struct Webhook {
    /// The client.
    pub client: reqwest::Client,
    /// The whole URL (never logged).
    pub url: reqwest::Url,
    /// Its scheme, host and port, for the logs.
    pub target: String,
}

/// Takes events from the queue and delivers each on its own task, at most [`IN_FLIGHT`]
/// at once, until shutdown.
pub async fn run(
    shared: Arc<Shared>,
    hook: Webhook,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (event, delivering) = loop {
            if let Some(next) = shared.pop_delivering() {
                break next;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return shared.log_undelivered(),
                _ = shared.wake.notified() => {}
            }
        };
        let (hook, shutdown, shared) = (hook.clone(), shutdown.clone(), shared.clone());
        tracker.spawn(async move {
            deliver(&hook, &event, &shutdown, &shared).await;
            drop((permit, delivering));
        });
    }
    shared.log_undelivered();
}

/// Why an attempt failed (every failure is retried within the hour: a receiver being
/// redeployed or reconfigured answers 404 or 403 for a while), and how long the receiver
/// asked to be left alone (`Retry-After` on 429 and 503, as Slack and Teams send it).
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    why: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn of(why: String) -> Failure {
        Failure {
            why,
            retry_after: None,
        }
    }
}

/// Posts `event` until it is accepted, refused, an hour has passed, or the daemon stops.
async fn deliver(hook: &Webhook, event: &Event, shutdown: &CancellationToken, shared: &Shared) {
    let kind = event.event.as_str();
    let file = event.file.as_deref().unwrap_or("");
    let body = match serde_json::to_vec(event) {
        Ok(body) => body,
        Err(e) => return tracing::error!(event = kind, "encoding a notification: {e}"),
    };
    let started = Instant::now();
    for attempt in 1u32.. {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Err(Failure::of("the daemon is stopping".into())),
            outcome = post(hook, &body) => outcome,
        };
        let Failure { why, retry_after } = match outcome {
            Ok(()) => {
                shared.keep_delivered(event);
                return tracing::info!(event = kind, file, webhook = %hook.target, attempt, "notification delivered");
            }
            Err(failure) => failure,
        };
        let Some(wait) =
            next_wait(attempt, started.elapsed(), retry_after).filter(|_| !shutdown.is_cancelled())
        else {
            return tracing::error!(event = kind, file, webhook = %hook.target, attempt, "notification not delivered, given up: {why}");
        };
        tracing::warn!(event = kind, file, webhook = %hook.target, attempt, retry_in = %humantime::format_duration(wait), "notification delivery failed: {why}");
        tokio::select! {
            _ = shutdown.cancelled() => {
                return tracing::error!(event = kind, file, webhook = %hook.target, "notification not delivered: the daemon is stopping");
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One POST of the JSON body.
async fn post(hook: &Webhook, body: &[u8]) -> Result<(), Failure> {
    let answer = hook
        .client
        .post(hook.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| Failure::of(chain(&e.without_url())))?;
    classify(answer.status(), answer.headers())
}

/// What an answer means for a delivery.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Result<(), Failure> {
    let why = format!("HTTP {status}");
    match status.as_u16() {
        200..=299 => Ok(()),
        429 | 503 => Err(Failure {
            why,
            retry_after: crate::ingest::hris::http::retry_after(headers),
        }),
        300..=399 => Err(Failure::of(format!("{why} (redirects are not followed)"))),
        _ => Err(Failure::of(why)),
    }
}

/// The wait before the next attempt after `failed` attempts, `elapsed` since the first:
/// the back-off, or the receiver's `Retry-After` when longer (at most 10 minutes); `None`
/// when the next attempt would start more than an hour after the first.
fn next_wait(failed: u32, elapsed: Duration, retry_after: Option<Duration>) -> Option<Duration> {
    let wait = FIRST_WAIT
        .saturating_mul(1u32 << (failed - 1).min(16))
        .min(MAX_WAIT)
        .max(retry_after.unwrap_or_default());
    (elapsed + wait <= GIVE_UP_AFTER).then_some(wait)
}

/// An error and its causes on one line (reqwest's top-level message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_to_five_minutes_and_stops_after_an_hour() {
        let s = Duration::from_secs;
        let waits: Vec<u64> = (1..=11)
            .map(|n| next_wait(n, Duration::ZERO, None).unwrap().as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(next_wait(100, Duration::ZERO, None), Some(s(300)));
        assert_eq!(next_wait(10, s(3300), None), Some(s(300)));
        assert_eq!(next_wait(10, s(3301), None), None);
        // Attempts over the hour: 1+2+…+256 = 511 s, then every 5 min.
        let (mut elapsed, mut attempts) = (Duration::ZERO, 1);
        while let Some(wait) = next_wait(attempts, elapsed, None) {
            elapsed += wait;
            attempts += 1;
        }
        assert!(elapsed <= s(3600) && elapsed > s(3300), "{elapsed:?}");
        assert_eq!(attempts, 20);
    }

    #[test]
    fn every_failed_answer_is_retried_and_retry_after_is_honoured() {
        use reqwest::StatusCode as S;
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let none = HeaderMap::new();
        assert_eq!(classify(S::OK, &none), Ok(()));
        assert_eq!(classify(S::NO_CONTENT, &none), Ok(()));
        for failed in [500, 502, 503, 504, 408, 429, 400, 403, 404, 410, 301, 302] {
            let failure = classify(S::from_u16(failed).unwrap(), &none).unwrap_err();
            assert!(failure.why.contains(&failed.to_string()), "{failure:?}");
            assert_eq!(failure.retry_after, None);
        }
        let mut asked = HeaderMap::new();
        asked.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        let s = Duration::from_secs;
        for throttled in [429, 503] {
            let failure = classify(S::from_u16(throttled).unwrap(), &asked).unwrap_err();
            assert_eq!(failure.retry_after, Some(s(120)));
        }
        assert_eq!(
            classify(S::BAD_GATEWAY, &asked).unwrap_err().retry_after,
            None
        );
        // The longer of the back-off and the receiver's wait, within the hour.
        assert_eq!(next_wait(1, Duration::ZERO, Some(s(120))), Some(s(120)));
        assert_eq!(next_wait(10, Duration::ZERO, Some(s(120))), Some(s(300)));
        assert_eq!(next_wait(1, s(3500), Some(s(120))), None);
    }

    #[test]
    fn error_chains_are_shown_once_each() {
        let inner = std::io::Error::other("connection refused");
        let outer = anyhow::Error::new(inner).context("connecting");
        assert_eq!(chain(&*outer), "connecting: connection refused");
    }
}
