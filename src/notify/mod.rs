//! Outbound notifications (SPEC §10 "Unattended operation"): the engine's held, rejected
//! and failed files, failed HRIS fetches and the `stale` event, each POSTed as one JSON
//! object to `notify.webhook_url`.
//!
//! Nothing here ever makes the caller wait: [`Notifier::send`] puts the event in a bounded
//! queue (the oldest is dropped, and logged, when it is full) and returns; a task on the
//! daemon's runtime delivers it (`deliver.rs`). The engine hears nothing back.

mod deliver;
pub mod event;
pub mod stale;

pub use event::{Event, EventKind};

use crate::config::notify::Notify;
use crate::engine::{FileObserver, FileOutcome};
use crate::store::Store;
use stale::Staleness;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events waiting for delivery at most; more drop the oldest.
const QUEUE: usize = 256;

/// What the notifier's handles, its delivery task and its staleness timer share.
pub(crate) struct Shared {
    queue: Mutex<VecDeque<Event>>,
    /// Wakes the delivery task when an event is queued (a wake-up before it waits is kept).
    wake: tokio::sync::Notify,
    /// Files whose failure was reported: reported once until a file is filed again, not at
    /// every rescan that retries them.
    failing: Mutex<HashSet<String>>,
    staleness: Mutex<Staleness>,
    /// Where the id of the last held file whose `file_held` was delivered is kept: a held
    /// file not announced before a stop (nothing listened, the stop came first) is
    /// announced at the next start (it had never been, and blocked every later file).
    held_announced: PathBuf,
    /// Held while a delivered notification's marker is checked and written.
    keeping: Mutex<()>,
    /// Deliveries under way (each until it is delivered or given up).
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn push(&self, event: Event) {
        let dropped = {
            let mut queue = self.queue.lock().expect("notify queue lock");
            queue.push_back(event);
            (queue.len() > QUEUE).then(|| queue.pop_front()).flatten()
        };
        if let Some(old) = dropped {
            tracing::warn!(
                event = old.event.as_str(),
                file = old.file.as_deref().unwrap_or(""),
                "notification queue full ({QUEUE} waiting): the oldest notification is dropped"
            );
        }
        self.wake.notify_one();
    }

    #[cfg(test)]
    fn pop(&self) -> Option<Event> {
        self.queue.lock().expect("notify queue lock").pop_front()
    }

    /// The next event, counted as under way from the moment it leaves the queue (under the
    /// queue's lock, as [`Shared::settled`] reads both): a stop's wait had seen neither in
    /// between. The count goes down when the [`Delivering`] is dropped.
    fn pop_delivering(self: &Arc<Self>) -> Option<(Event, Delivering)> {
        let mut queue = self.queue.lock().expect("notify queue lock");
        let event = queue.pop_front()?;
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some((event, Delivering(self.clone())))
    }

    /// At shutdown: logs each queued event that was not delivered.
    fn log_undelivered(&self) {
        let left: Vec<Event> = self
            .queue
            .lock()
            .expect("notify queue lock")
            .drain(..)
            .collect();
        for event in left {
            tracing::error!(
                event = event.event.as_str(),
                file = event.file.as_deref().unwrap_or(""),
                "notification not delivered: the daemon is stopping"
            );
        }
    }

    /// Whether no event waits and none is being delivered.
    fn settled(&self) -> bool {
        let queue = self.queue.lock().expect("notify queue lock");
        queue.is_empty() && self.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    /// Keeps that `event` was delivered, if it asks to be ([`Event::once_delivered`]): not
    /// a `stale` notice of an earlier quiet spell (delivered late, it had overwritten the
    /// later spell's marker, which was then sent again). A `file_held` delivered late, of a
    /// file decided since, costs the one held now a second post at the next start. One at
    /// a time: two deliveries had shared a temp file.
    fn keep_delivered(&self, event: &Event) {
        let Some((path, marker)) = &event.once_delivered else {
            return;
        };
        let _one = self.keeping.lock().expect("notify keeping lock");
        let kept = event.event != EventKind::Stale || self.is_current_spell(marker);
        if kept && let Err(e) = crate::util::write_atomic(path, marker.as_bytes()) {
            tracing::warn!(file = %path.display(), "keeping that the notification was delivered: {e}; a restart sends it again");
        }
    }

    /// Whether the `file_held` of the file `marker` names ([`held_marker`]) was the last
    /// one delivered. By its id and stored name both: by id alone, a store lost and
    /// restored from a backup gave out ids again, and the files then held were never told.
    fn held_delivered(&self, marker: &str) -> bool {
        let kept = std::fs::read_to_string(&self.held_announced).ok();
        // As written: a stored name may end in a space (`f.csv `), which a trim had taken
        // off, and that file was told again at every start.
        kept.is_some_and(|kept| kept.trim_end_matches('\n') == marker)
    }

    /// `event`, marked (if it is a `file_held`) to keep `marker` as announced once it is
    /// delivered.
    fn marked_if_held(&self, mut event: Event, marker: String) -> Event {
        if event.event == EventKind::FileHeld {
            event.once_delivered = Some((self.held_announced.clone(), marker));
        }
        event
    }

    /// Whether `marker` is still the quiet spell's (a `stale` notice of an earlier spell,
    /// delivered late, must not overwrite the later spell's marker).
    fn is_current_spell(&self, marker: &str) -> bool {
        self.staleness.lock().expect("notify lock").marker() == marker
    }
}

/// A delivery under way; counted in [`Shared::in_flight`] until dropped (a task that
/// panics or is aborted too).
pub(crate) struct Delivering(Arc<Shared>);

impl Drop for Delivering {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A handle to the notifications; cheap to clone, and a no-op when `webhook_url` is empty.
#[derive(Clone, Default)]
pub struct Notifier {
    shared: Option<Arc<Shared>>,
}

/// What `data_dir/held-announced` keeps of the held file `id` whose report is `report`:
/// its id and stored name.
fn held_marker(id: u64, report: &crate::core::report::Report) -> String {
    format!(
        "{id} {}",
        report.stored_as.as_deref().unwrap_or(&report.file)
    )
}

impl Notifier {
    /// Notifications off: every call does nothing.
    pub fn off() -> Notifier {
        Notifier::default()
    }

    /// Starts delivery and the staleness timer on `tracker` (both end with `shutdown`,
    /// which the daemon cancels after its engine stopped and [`Notifier::settle`]);
    /// [`Notifier::off`] when no webhook is configured. `last_applied`: when the ledger's
    /// last applied file was processed (the `stale` clock starts there, else now).
    pub fn start(
        cfg: &Notify,
        last_applied: Option<SystemTime>,
        (reported, held_announced): (PathBuf, PathBuf),
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Notifier> {
        let (Some(url), Some(target)) = (cfg.webhook_url.clone(), cfg.target()) else {
            return Ok(Notifier::off());
        };
        let hook = deliver::Webhook {
            client: deliver::client(&url)?,
            url,
            target,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            failing: Mutex::new(HashSet::new()),
            staleness: Mutex::new(Staleness::new(
                last_applied,
                SystemTime::now(),
                std::fs::read_to_string(&reported).ok().as_deref(),
            )),
            held_announced,
            keeping: Mutex::new(()),
            in_flight: Default::default(),
        });
        tracing::info!(webhook = %hook.target, stale_after = %humantime::format_duration(cfg.stale_after), "notifications on");
        tracker.spawn(deliver::run(
            shared.clone(),
            hook,
            tracker.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(watch_staleness(
            shared.clone(),
            cfg.stale_after,
            reported,
            shutdown.clone(),
        ));
        Ok(Notifier {
            shared: Some(shared),
        })
    }

    /// Waits until every queued event was delivered (or given up), at most `grace`: at a
    /// stop, for the events of the file the engine finished last (a file held as the
    /// daemon stopped had never been announced, and nothing announces it later).
    pub async fn settle(&self, grace: Duration) {
        let Some(shared) = &self.shared else {
            return;
        };
        let until = tokio::time::Instant::now() + grace;
        while !shared.settled() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether events go anywhere.
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues `event` for delivery; returns at once.
    pub fn send(&self, event: Event) {
        if let Some(shared) = &self.shared {
            shared.push(event);
        }
    }

    /// A fetch from the HRIS failed, or polls of the remote server keep failing (`message`
    /// must not hold a secret).
    pub fn fetch_failed(&self, message: &str) {
        self.send(Event::fetch_failed(message));
    }

    /// [`Notifier::fetch_failed`] as the hook an HRIS or poll source calls.
    pub fn fetch_failed_hook(&self) -> Arc<dyn Fn(&str) + Send + Sync> {
        let notifier = self.clone();
        Arc::new(move |message: &str| notifier.fetch_failed(message))
    }

    /// The hook a poll source calls when it stops fetching for good ([`Event::fetch_stopped`]).
    pub fn fetch_stopped_hook(&self) -> Arc<dyn Fn(&str) + Send + Sync> {
        let notifier = self.clone();
        Arc::new(move |message: &str| notifier.send(Event::fetch_stopped(message)))
    }

    /// The engine's observer: held and rejected files, failures (once per failing file),
    /// and applied files, which restart the `stale` clock.
    pub fn file_observer(&self) -> FileObserver {
        let notifier = self.clone();
        Arc::new(move |outcome: &FileOutcome<'_>| notifier.observe(outcome))
    }

    fn observe(&self, outcome: &FileOutcome<'_>) {
        let Some(shared) = &self.shared else {
            return;
        };
        match *outcome {
            FileOutcome::Filed {
                id,
                report,
                decided_by,
            } => {
                // The engine moved on: a file failing later is news again.
                shared.failing.lock().expect("notify lock").clear();
                if report.status == crate::core::report::ReportStatus::Applied {
                    // The time the ledger keeps, which a restart starts the clock from.
                    let at = humantime::parse_rfc3339(&report.processed_at)
                        .unwrap_or_else(|_| SystemTime::now());
                    shared.staleness.lock().expect("notify lock").applied(at);
                }
                if let Some(event) = Event::of_filed(id, report, decided_by) {
                    // A held file is told once: at its filing, or at a start if never
                    // delivered before (the engine tells the one held then again).
                    let marker = held_marker(id, report);
                    if event.event != EventKind::FileHeld || !shared.held_delivered(&marker) {
                        shared.push(shared.marked_if_held(event, marker));
                    }
                }
            }
            FileOutcome::Failed { name, error, next } => {
                let first = shared
                    .failing
                    .lock()
                    .expect("notify lock")
                    .insert(name.to_string());
                if first {
                    shared.push(Event::file_failed(name, error, next));
                }
            }
        }
    }
}

/// When the ledger's last applied file was processed, for [`Notifier::start`].
pub fn last_applied(store: &impl Store) -> crate::api::Result<Option<SystemTime>> {
    Ok(store
        .last_applied()?
        .and_then(|entry| humantime::parse_rfc3339(&entry.processed_at).ok()))
}

/// Fires `stale` once per quiet spell (see [`stale`]), looking every
/// [`stale::check_interval`].
/// The spell it fired for is kept in `reported`, so that a restart does not fire it again.
async fn watch_staleness(
    shared: Arc<Shared>,
    stale_after: Duration,
    reported: PathBuf,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(stale::check_interval(stale_after));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (due, marker) = {
            let mut staleness = shared.staleness.lock().expect("notify lock");
            (
                staleness.check(SystemTime::now(), stale_after),
                staleness.marker(),
            )
        };
        if let Some((since, quiet)) = due {
            tracing::warn!(quiet = %humantime::format_duration(Duration::from_secs(quiet.as_secs())), "no file applied for notify.stale_after; sending the stale notification");
            // Kept once delivered: a notice never delivered is sent again after a restart.
            let mut event = Event::stale(since, quiet, stale_after);
            event.once_delivered = Some((reported.clone(), marker));
            shared.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::{Report, ReportStatus};

    fn on() -> (Notifier, Arc<Shared>) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            failing: Mutex::new(HashSet::new()),
            staleness: Mutex::new(Staleness::new(None, SystemTime::now(), None)),
            held_announced: PathBuf::new(),
            keeping: Mutex::new(()),
            in_flight: Default::default(),
        });
        (
            Notifier {
                shared: Some(shared.clone()),
            },
            shared,
        )
    }

    fn queued(shared: &Shared) -> Vec<(EventKind, Option<String>)> {
        std::iter::from_fn(|| shared.pop())
            .map(|e| (e.event, e.file))
            .collect()
    }

    fn filed(n: &Notifier, name: &str, status: ReportStatus) {
        let mut report = Report::new(name, "ab", "t", "t");
        report.status = status;
        n.observe(&FileOutcome::Filed {
            id: 1,
            report: &report,
            decided_by: None,
        });
    }

    /// A held file whose alert was delivered is not told again (at a start, the engine
    /// tells the one held then); another file with the same id (a store restored from a
    /// backup gives ids out again) is told.
    #[test]
    fn a_held_file_is_told_unless_its_alert_was_the_last_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let (notifier, shared) = on();
        drop(notifier);
        let mut shared = Arc::into_inner(shared).unwrap();
        shared.held_announced = dir.path().join("held-announced");
        let held = |stored_as: &str| {
            let mut report = Report::new("r.csv", "ab", "t", "t");
            report.status = ReportStatus::Held;
            report.stored_as = Some(stored_as.into());
            report
        };
        let first = held("20261207T010203Z_r.csv ");
        let marker = held_marker(3, &first);
        shared.keep_delivered(&shared.marked_if_held(Event::file_held(3, &first), marker));
        assert_eq!(fs_read(&shared.held_announced), "3 20261207T010203Z_r.csv ");
        let n = Notifier {
            shared: Some(Arc::new(shared)),
        };
        let told = |id, report: &Report| {
            n.observe(&FileOutcome::Filed {
                id,
                report,
                decided_by: None,
            });
            queued(n.shared.as_ref().unwrap()).len()
        };
        assert_eq!(told(3, &first), 0, "delivered before: not again");
        assert_eq!(
            told(3, &held("20261208T010203Z_s.csv")),
            1,
            "another file, same id"
        );
        assert_eq!(told(4, &held("20261208T020203Z_t.csv")), 1);
    }

    fn fs_read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_failing_file_is_reported_once_until_the_engine_files_a_file() {
        let (n, shared) = on();
        let error = crate::api::Error::failed("disk full");
        let fail = |name| {
            n.observe(&FileOutcome::Failed {
                name,
                error: &error,
                next: None,
            })
        };
        fail("a.csv");
        fail("a.csv");
        fail("a.csv");
        fail("b.csv");
        let f = |s: &str| Some(s.to_string());
        assert_eq!(
            queued(&shared),
            [
                (EventKind::FileFailed, f("a.csv")),
                (EventKind::FileFailed, f("b.csv"))
            ]
        );
        filed(&n, "a.csv", ReportStatus::Applied);
        fail("a.csv");
        assert_eq!(queued(&shared), [(EventKind::FileFailed, f("a.csv"))]);
    }

    #[test]
    fn held_and_rejected_files_are_queued_applied_ones_restart_the_stale_clock() {
        let (n, shared) = on();
        *shared.staleness.lock().unwrap() =
            Staleness::new(Some(SystemTime::UNIX_EPOCH), SystemTime::UNIX_EPOCH, None);
        filed(&n, "h.csv", ReportStatus::Held);
        filed(&n, "r.csv", ReportStatus::Rejected);
        filed(&n, "d.csv", ReportStatus::DryRun);
        let f = |s: &str| Some(s.to_string());
        assert_eq!(
            queued(&shared),
            [
                (EventKind::FileHeld, f("h.csv")),
                (EventKind::FileRejected, f("r.csv"))
            ]
        );
        let day = Duration::from_secs(86_400);
        let mut before = *shared.staleness.lock().unwrap();
        assert!(before.check(SystemTime::now(), day).is_some());
        filed(&n, "a.csv", ReportStatus::Applied);
        assert!(
            shared
                .staleness
                .lock()
                .unwrap()
                .check(SystemTime::now(), day)
                .is_none()
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_send_never_waits() {
        let (n, shared) = on();
        for i in 0..QUEUE + 3 {
            n.fetch_failed(&format!("attempt {i}"));
        }
        let left: Vec<Event> = std::iter::from_fn(|| shared.pop()).collect();
        assert_eq!(left.len(), QUEUE);
        assert!(
            left[0].summary.ends_with("attempt 3"),
            "{}",
            left[0].summary
        );
        // Off: nothing is queued anywhere, nothing fails.
        Notifier::off().fetch_failed("x");
        (Notifier::off().fetch_failed_hook())("x");
        assert!(!Notifier::off().is_on());
    }
}
