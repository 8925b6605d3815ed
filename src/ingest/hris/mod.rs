//! HRIS mode (SPEC §10): the roster is fetched from an HR system's API on a schedule (and
//! on `autoprov fetch`) and becomes a file in inbox/; from there it is an upload like any
//! other, processed by the engine exactly once.
//!
//! One fetch, each step safe against a crash:
//! 1. the answer is written (as CSV, or as received for `csv_url`) under a hidden name in
//!    inbox/ (`.hris-…`, which every scan ignores) and fsynced;
//! 2. it is renamed to `hris-<provider>-<YYYYMMDDTHHMMSSZ>.csv` and the folder fsynced: from
//!    here on it is an ordinary complete upload;
//! 3. the engine is asked to scan.
//!
//! A failed fetch removes its hidden file, so it writes nothing and changes nothing; a
//! hidden file left by a crash is removed when the source starts.

mod bamboohr;
mod csv_out;
mod csv_url;
mod guard;
pub mod http;
mod kept;
mod workday;

use crate::config::Config;
use crate::config::hris::{Hris, Provider};
use crate::engine::{EngineHandle, FetchNow, SourceLink};
use crate::layout::Paths;
use anyhow::Result;
use http::{FetchError, Http, Sink};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use super::OnFetchFailed;

/// An [`OnFetchFailed`] that does nothing.
pub fn no_notification() -> OnFetchFailed {
    Arc::new(|_: &str| {})
}

/// Prefix of the hidden names fetches are written under in inbox/.
const HIDDEN_PREFIX: &str = ".hris-";

/// What `status` shows.
#[derive(Debug, Default, Clone)]
pub struct HrisState {
    /// When the last fetch succeeded.
    pub last_success: Option<SystemTime>,
    /// The file it became in inbox/.
    pub last_file: Option<String>,
    /// The last failure and when it happened, kept after a success (`status` shows the
    /// last error; a night of refused credentials followed by one good fetch had left no
    /// trace). Whether fetching fails now is [`HrisState::failing`].
    pub last_error: Option<(SystemTime, String)>,
    /// When the next scheduled fetch happens.
    pub next_fetch: Option<SystemTime>,
    /// Fetches that failed since the daemon started (`/metrics`).
    pub failures: u64,
    /// Whether the latest fetch failed: said by the order of the outcomes, not by their
    /// times (an error stamped while the clock ran ahead had stayed newer than every later
    /// success).
    pub latest_failed: bool,
}

impl HrisState {
    /// Whether the latest fetch failed.
    pub fn failing(&self) -> bool {
        self.latest_failed
    }
}

/// An `autoprov fetch`: who asked (the file is audited as theirs), and where the outcome goes.
type Reply = (String, oneshot::Sender<Result<String, String>>);

/// HRIS mode as the engine and the control socket see it: its part of `status` and
/// `autoprov fetch`.
pub struct HrisLink {
    provider: Provider,
    state: Arc<Mutex<HrisState>>,
    requests: mpsc::Sender<Reply>,
}

impl SourceLink for HrisLink {
    fn status(&self) -> Option<(&'static str, serde_json::Value, String)> {
        let s = self.state.lock().expect("hris state").clone();
        let time = |t: Option<SystemTime>| t.map(crate::util::rfc3339);
        let value = json!({
            "provider": self.provider.name(),
            "last_success": time(s.last_success),
            "last_file": s.last_file,
            "last_error": s.last_error.as_ref().map(|(_, e)| e),
            "last_error_at": time(s.last_error.as_ref().map(|(t, _)| *t)),
            "failing": s.failing(),
            "next_fetch": time(s.next_fetch),
        });
        let mut text = format!(
            "hris:      {}, last success {}, next fetch {}\n",
            self.provider.name(),
            time(s.last_success).unwrap_or_else(|| "never".into()),
            time(s.next_fetch).unwrap_or_else(|| "now".into()),
        );
        match &s.last_error {
            Some((at, e)) if s.failing() => text.push_str(&format!(
                "HRIS ERROR at {}: {e}\n",
                crate::util::rfc3339(*at)
            )),
            Some((at, e)) => text.push_str(&format!(
                "hris:      last error at {} (fetched since): {e}\n",
                crate::util::rfc3339(*at)
            )),
            None => {}
        }
        Some(("hris", value, text))
    }

    fn fetch_error(&self) -> Option<String> {
        let state = self.state.lock().expect("hris state");
        let failing = state.last_error.as_ref().filter(|_| state.failing());
        failing.map(|(_, e)| e.clone())
    }

    fn fetch_failures(&self) -> u64 {
        self.state.lock().expect("hris state").failures
    }

    fn fetch_now(&self, caller: &str) -> Option<FetchNow> {
        let (requests, caller) = (self.requests.clone(), caller.to_string());
        Some(Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let stopped = || "the daemon is stopping; nothing was fetched".to_string();
            requests
                .send((caller, reply))
                .await
                .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        }))
    }
}

/// A provider ready to fetch, credentials loaded.
enum Fetcher {
    BambooHr(bamboohr::BambooHr),
    Workday(workday::Workday),
    CsvUrl(csv_url::CsvUrl),
}

impl Fetcher {
    /// Reads the credential files: errors are config errors naming the key and the path.
    fn new(cfg: &Config, hris: &Hris, paths: &Paths) -> Result<Fetcher> {
        let missing = |name: &str| anyhow::anyhow!("[source.hris.{name}] is missing");
        Ok(match hris.provider() {
            Provider::Bamboohr => {
                let b = hris.bamboohr.as_ref().ok_or_else(|| missing("bamboohr"))?;
                Fetcher::BambooHr(bamboohr::BambooHr::new(hris, b, &cfg.columns())?)
            }
            Provider::Workday => {
                let w = hris.workday.as_ref().ok_or_else(|| missing("workday"))?;
                Fetcher::Workday(workday::Workday::new(
                    w,
                    cfg.columns(),
                    paths.workday_columns.clone(),
                )?)
            }
            Provider::CsvUrl => {
                let c = hris.csv_url.as_ref().ok_or_else(|| missing("csv_url"))?;
                Fetcher::CsvUrl(csv_url::CsvUrl::new(
                    c,
                    cfg.roster_options(Vec::new()),
                    paths.csv_url_columns.clone(),
                )?)
            }
        })
    }
}

/// The source: fetches on schedule and on request, one at a time.
pub struct HrisSource {
    provider: Provider,
    fetcher: Arc<Fetcher>,
    http: Http,
    inbox: PathBuf,
    engine: EngineHandle,
    state: Arc<Mutex<HrisState>>,
    at: Option<(u32, u32)>,
    every: Duration,
    on_fetch_failed: OnFetchFailed,
    /// Where the last fetch's outcome is kept across restarts.
    kept: PathBuf,
}

/// Sets the source up from the config (reading its credentials: a config error when one
/// cannot be read) and returns its link and the task to run until `shutdown`.
pub fn start(
    cfg: &Config,
    paths: &Paths,
    engine: EngineHandle,
    on_fetch_failed: OnFetchFailed,
    shutdown: CancellationToken,
) -> Result<(Arc<HrisLink>, impl Future<Output = ()> + Send + 'static)> {
    let hris =
        cfg.source.hris.as_ref().ok_or_else(|| {
            anyhow::anyhow!("source.mode = \"hris\" needs a [source.hris] section")
        })?;
    let fetcher = Fetcher::new(cfg, hris, paths)?;
    let http = Http::new(hris, cfg.roster.max_bytes)?;
    let kept = paths.hris_state.clone();
    let state = Arc::new(Mutex::new(kept::load(&kept, hris.provider().name())));
    let (tx, rx) = mpsc::channel(16);
    let link = Arc::new(HrisLink {
        provider: hris.provider(),
        state: state.clone(),
        requests: tx,
    });
    let source = Arc::new(HrisSource {
        provider: hris.provider(),
        fetcher: Arc::new(fetcher),
        http,
        inbox: paths.folder("inbox"),
        engine,
        state,
        at: hris.at_utc(),
        every: hris.every,
        on_fetch_failed,
        kept,
    });
    Ok((link, source.run(rx, shutdown)))
}

/// When the first fetch happens: now, or the next `at` (hour, minute UTC) from `now`.
pub fn first_fetch(at: Option<(u32, u32)>, now: SystemTime) -> SystemTime {
    let Some((hour, minute)) = at else {
        return now;
    };
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let today = now_secs - now_secs % 86_400 + u64::from(hour * 3600 + minute * 60);
    let next = if today < now_secs {
        today + 86_400
    } else {
        today
    };
    UNIX_EPOCH + Duration::from_secs(next)
}

/// The fetch after one scheduled at `last`: `every` later, or `every` from now when that
/// is already past (the daemon was suspended, or the fetch took longer than `every`).
fn after(last: SystemTime, every: Duration, now: SystemTime) -> SystemTime {
    let next = last + every;
    if next <= now { now + every } else { next }
}

/// Puts a fetch's outcome in the log and `status`, and keeps it at `kept` (if given) for
/// the next start; a failure also goes to the hook.
fn record_outcome(
    provider: &str,
    (state, kept): (&Mutex<HrisState>, Option<&Path>),
    on_fetch_failed: &OnFetchFailed,
    result: &Result<String, String>,
) {
    let now = SystemTime::now();
    let mut state = state.lock().expect("hris state");
    match result {
        Ok(name) => {
            tracing::info!(provider, file = %name, "fetched the roster into inbox/");
            state.last_success = Some(now);
            state.last_file = Some(name.clone());
            state.latest_failed = false;
        }
        Err(message) => {
            tracing::error!(provider, "{message}; nothing was written to inbox/");
            state.last_error = Some((now, message.clone()));
            state.failures += 1;
            state.latest_failed = true;
        }
    }
    let kept_state = kept.map(|path| (path, state.clone()));
    drop(state);
    if let Some((path, state)) = kept_state {
        kept::save(path, provider, &state);
    }
    if let Err(message) = result {
        on_fetch_failed(message);
    }
}

/// Removes the hidden file of a fetch that failed or was interrupted, unless it was filed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl HrisSource {
    async fn run(
        self: Arc<Self>,
        mut requests: mpsc::Receiver<Reply>,
        shutdown: CancellationToken,
    ) {
        self.remove_leftovers();
        let mut next = first_fetch(self.at, SystemTime::now());
        loop {
            self.state.lock().expect("hris state").next_fetch = Some(next);
            let wait = next
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => None,
                Some(reply) = requests.recv() => Some(reply),
            };
            if reply.is_none() {
                next = after(next, self.every, SystemTime::now());
                self.state.lock().expect("hris state").next_fetch = Some(next);
            }
            // A stop abandons a fetch in flight: its hidden file goes with it. A fetch runs
            // as a task of its own, so that a panic in it (a bug meeting an answer) fails
            // that fetch, not every later one.
            let asker = reply.as_ref().map(|(caller, _)| caller.clone());
            let fetch = tokio::spawn({
                let this = self.clone();
                async move { this.fetch_logged(asker.as_deref()).await }
            });
            let abort = fetch.abort_handle();
            let result = tokio::select! {
                _ = shutdown.cancelled() => {
                    abort.abort();
                    return;
                }
                joined = fetch => joined.unwrap_or_else(|_| {
                    let failed = Err("the fetch hit an internal error (a panic; see the log); \
                        nothing was written to inbox/".to_string());
                    record_outcome(self.provider.name(), (&self.state, Some(&self.kept)), &self.on_fetch_failed, &failed);
                    failed
                }),
            };
            if let Some((_, reply)) = reply {
                let _ = reply.send(result);
            }
        }
    }

    /// Hidden files of fetches a crash interrupted: never processed, removed.
    fn remove_leftovers(&self) {
        crate::util::remove_leftovers(
            &self.inbox,
            |name| name.starts_with(HIDDEN_PREFIX),
            "the partial file of a fetch interrupted by a restart",
        );
    }

    /// One fetch, with its outcome in the log, `status` and the failure hook.
    /// `asker`: who ran `autoprov fetch` (None for a scheduled fetch).
    async fn fetch_logged(&self, asker: Option<&str>) -> Result<String, String> {
        let provider = self.provider.name();
        tracing::info!(provider, "fetching the roster from the HR system");
        let result = self.fetch_into_inbox(asker).await;
        record_outcome(
            provider,
            (&self.state, Some(&self.kept)),
            &self.on_fetch_failed,
            &result,
        );
        result
    }

    /// Fetches and files the roster into inbox/: the name it got, or why nothing was filed.
    /// A file `asker` asked for is audited as theirs, whichever of their request and the
    /// inbox's scan processes it (the scan its arrival starts had taken it as autoprov's).
    async fn fetch_into_inbox(&self, asker: Option<&str>) -> Result<String, String> {
        let provider = self.provider.name();
        let stamp = crate::util::compact_timestamp(&crate::util::now_rfc3339());
        let name = format!("hris-{provider}-{stamp}.csv");
        let tmp = self
            .inbox
            .join(format!("{HIDDEN_PREFIX}{provider}-{stamp}.csv.part"));
        let mut partial = Partial(Some(tmp.clone()));
        self.fetch_to(&tmp)
            .await
            .map_err(|e| format!("fetching the roster from {provider}: {e}"))?;
        if let Fetcher::CsvUrl(_) = self.fetcher.as_ref() {
            let (fetcher, written) = (self.fetcher.clone(), tmp.clone());
            tokio::task::spawn_blocking(move || match fetcher.as_ref() {
                Fetcher::CsvUrl(c) => c.check_columns(&written),
                _ => Ok(()),
            })
            .await
            .map_err(|e| format!("checking the fetched roster: {e}"))?
            .map_err(|e| format!("fetching the roster from {provider}: {e}"))?;
        }
        crate::util::crash_point("hris_before_rename");
        // Renamed by the engine, which knows an asked-for file as the asker's before any
        // scan sees it.
        let filed = (self.engine)
            .file_fetched(tmp.clone(), name, asker.map(str::to_string))
            .await
            .map_err(|e| format!("{e:#}"))?;
        partial.0 = None;
        self.engine.scan();
        Ok(filed)
    }

    /// Writes the roster to `path` (a new hidden file) and fsyncs it.
    async fn fetch_to(&self, path: &Path) -> Result<(), FetchError> {
        let shown = path.display().to_string();
        let local = |e: std::io::Error| FetchError::Local {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(local)?;
        let mut file = match self.fetcher.as_ref() {
            Fetcher::CsvUrl(c) => {
                let mut sink = Sink::File(file, shown.clone());
                c.download(&self.http, &mut sink).await?;
                sink.into_file().expect("a file sink")
            }
            Fetcher::BambooHr(_) | Fetcher::Workday(_) => {
                let mut file = file;
                let csv = self.json_to_csv().await?;
                file.write_all(&csv).await.map_err(local)?;
                file
            }
        };
        file.flush().await.map_err(local)?;
        file.sync_all().await.map_err(local)?;
        Ok(())
    }

    /// Asks a JSON provider and converts its answer (off the async workers: a large roster
    /// takes a while to parse).
    async fn json_to_csv(&self) -> Result<Vec<u8>, FetchError> {
        let answer = match self.fetcher.as_ref() {
            Fetcher::BambooHr(b) => b.answer(&self.http).await?,
            Fetcher::Workday(w) => w.answer(&self.http).await?,
            Fetcher::CsvUrl(_) => unreachable!("csv_url is stored as received"),
        };
        let fetcher = self.fetcher.clone();
        tokio::task::spawn_blocking(move || match fetcher.as_ref() {
            Fetcher::BambooHr(b) => b.to_csv(&answer),
            Fetcher::Workday(w) => w.to_csv(&answer),
            Fetcher::CsvUrl(_) => unreachable!("csv_url is stored as received"),
        })
        .await
        .map_err(|e| FetchError::Invalid(format!("converting the answer to CSV: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn the_first_fetch_is_now_or_the_next_time_of_day_in_utc() {
        let now = at("2026-11-03T10:15:30Z");
        assert_eq!(first_fetch(None, now), now);
        assert_eq!(first_fetch(Some((2, 0)), now), at("2026-11-04T02:00:00Z"));
        assert_eq!(first_fetch(Some((23, 59)), now), at("2026-11-03T23:59:00Z"));
        assert_eq!(first_fetch(Some((10, 15)), now), at("2026-11-04T10:15:00Z"));
        let exact = at("2026-11-03T10:15:00Z");
        assert_eq!(first_fetch(Some((10, 15)), exact), exact);
    }

    #[test]
    fn a_failed_fetch_reaches_the_hook_and_status_and_a_success_clears_it() {
        let heard = Arc::new(Mutex::new(Vec::<String>::new()));
        let hook: OnFetchFailed = {
            let heard = heard.clone();
            Arc::new(move |m: &str| heard.lock().unwrap().push(m.to_string()))
        };
        let state = Mutex::new(HrisState::default());
        let failed = Err("fetching the roster from workday: credentials refused".to_string());
        record_outcome("workday", (&state, None), &hook, &failed);
        assert_eq!(
            *heard.lock().unwrap(),
            ["fetching the roster from workday: credentials refused"]
        );
        let s = state.lock().unwrap().clone();
        assert!(
            s.last_error
                .is_some_and(|(_, e)| e.contains("credentials refused"))
        );
        assert_eq!(s.last_success, None);
        assert_eq!(s.failures, 1, "counted for /metrics");
        record_outcome(
            "workday",
            (&state, None),
            &hook,
            &Ok("hris-workday-x.csv".into()),
        );
        assert_eq!(heard.lock().unwrap().len(), 1, "a success is not a failure");
        let s = state.lock().unwrap().clone();
        assert!(!s.failing() && s.last_success.is_some());
        assert!(
            s.last_error
                .is_some_and(|(_, e)| e.contains("credentials refused")),
            "the last error is kept after a success"
        );
        assert_eq!(s.last_file.as_deref(), Some("hris-workday-x.csv"));
        assert_eq!(s.failures, 1, "a success keeps the count");
        no_notification()("ignored");
    }

    #[test]
    fn later_fetches_keep_the_rhythm_unless_it_was_missed() {
        let day = Duration::from_secs(86_400);
        let last = at("2026-11-03T02:00:00Z");
        assert_eq!(
            after(last, day, at("2026-11-03T02:00:05Z")),
            at("2026-11-04T02:00:00Z")
        );
        assert_eq!(
            after(last, day, at("2026-11-05T08:00:00Z")),
            at("2026-11-06T08:00:00Z")
        );
    }
}
