//! Poll mode (SPEC §5): fetch complete files from the HR vendor's SFTP server into inbox/,
//! and once their outcome is committed locally, move them to the remote `processed` or
//! `rejected` folder with their reports.
//!
//! Order of events for one file, each step safe to repeat after a crash:
//! 1. listed twice with the same size and mtime, and not known to the ledger;
//! 2. downloaded to a hidden name in inbox/, fsynced;
//! 3. registered in the store (remote origin) and renamed into inbox/;
//! 4. processed by the engine: the ledger entry carries the origin, `remote_pending`;
//! 5. reports uploaded beside the remote target, the remote file renamed, `remote_pending` cleared.
//!
//! The remote file is never touched before step 4 committed.

use crate::config::{Config, Remote};
use crate::engine::filing::{FETCHING, Sighting};
use crate::engine::{EngineHandle, SourceFile, SourceLink};
pub mod client;
mod host_key;
pub mod stability;

use crate::layout::{FOLDERS, Paths};
use crate::store::{FileEntry, FileStatus, RemoteOrigin};
use client::{Backoff, PollError, RemoteClient, RemoteFile, RemoteSettings, remote_path};
use serde_json::json;
use stability::Stability;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What `status` shows about polling.
#[derive(Debug, Default, Clone)]
pub struct PollState {
    /// When the last poll succeeded.
    pub last_success: Option<SystemTime>,
    /// The last error, cleared by a successful poll.
    pub last_error: Option<String>,
    /// Fetching stopped until restart (host key mismatch or refused login).
    pub stopped: bool,
    /// Failed polls since the start (`/metrics`' fetch failures).
    pub failures: u64,
}

/// Poll mode as the engine sees it: its part of `status`, and a wake-up when decided files
/// wait for their remote move.
#[derive(Default)]
pub struct PollLink {
    /// What `status` shows.
    pub state: Arc<Mutex<PollState>>,
    /// Wakes the poller to finish remote moves.
    pub kick: Arc<Notify>,
}

impl SourceLink for PollLink {
    fn handoffs_waiting(&self) {
        self.kick.notify_one();
    }
    fn fetch_failures(&self) -> u64 {
        self.state.lock().expect("poll state lock").failures
    }
    fn fetch_error(&self) -> Option<String> {
        self.state
            .lock()
            .expect("poll state lock")
            .last_error
            .clone()
    }

    fn status(&self) -> Option<(&'static str, serde_json::Value, String)> {
        let poll = self.state.lock().expect("poll state").clone();
        let value = json!({
            "last_success": poll.last_success.map(crate::util::rfc3339),
            "last_error": poll.last_error,
            "stopped": poll.stopped,
        });
        let mut text = format!(
            "polling:   last success {}{}\n",
            poll.last_success
                .map(crate::util::rfc3339)
                .unwrap_or_else(|| "never".into()),
            if poll.stopped {
                " — STOPPED (see the last error)"
            } else {
                ""
            }
        );
        if let Some(e) = &poll.last_error {
            text.push_str(&format!("POLL ERROR: {e}\n"));
        }
        Some(("poll", value, text))
    }
}

/// Where a fetched file goes on the remote server once decided (SPEC §5 poll mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemoteFolder {
    /// `source.remote.processed`: applied, dry run, or held and then decided.
    Processed,
    /// `source.remote.rejected`: rejected for errors.
    Rejected,
}

impl RemoteFolder {
    fn of(entry: &FileEntry) -> RemoteFolder {
        if entry.status == FileStatus::Rejected && !entry.was_held {
            RemoteFolder::Rejected
        } else {
            RemoteFolder::Processed
        }
    }
}

/// The engine's answer when it stopped.
fn engine_error(e: crate::api::Error) -> PollError {
    PollError::Other(e.into())
}

/// Longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Failed polls in a row (~30 s of retries) before `fetch_failed` is posted, once until a
/// poll succeeds again: a blip is retried quietly, as an HRIS fetch retries before it fails.
const FAILED_IN_A_ROW: u32 = 5;

/// The client settings from the config.
pub fn settings(remote: &Remote, cfg: &Config) -> RemoteSettings {
    RemoteSettings {
        host: remote.host.clone(),
        port: remote.port,
        user: remote.user.clone(),
        private_key: remote.private_key.clone(),
        known_host_key: remote.known_host_key.clone(),
        inbox: remote.inbox.clone(),
        processed: remote.processed.clone(),
        rejected: remote.rejected.clone(),
        poll_interval: remote.poll_interval,
        timeout: remote.timeout,
        // A file over roster.max_bytes is fetched to be rejected with a report, as an
        // upload is, up to what an upload may be.
        max_bytes: cfg.roster.max_bytes.max(cfg.source.max_upload_bytes),
    }
}

/// How long a remote file must keep its size and mtime, over two listings at least, before
/// it is fetched: a poll interval, at most a minute (a file seen mid-interval is listed
/// again once it may be quiet, not a whole interval later).
fn quiet_period(poll_interval: Duration) -> Duration {
    poll_interval.min(Duration::from_secs(60))
}

/// Where a poll source reports trouble (the daemon wires notifications to them).
pub struct Hooks {
    /// Polls have failed [`FAILED_IN_A_ROW`] times in a row (`fetch_failed`).
    pub failing: crate::ingest::OnFetchFailed,
    /// Fetching stopped for good: the host key or the login refused.
    pub stopped: crate::ingest::OnFetchFailed,
}

/// Polls until `shutdown`. `kick` wakes it early when a fetched file was decided locally:
/// that wake-up only finishes remote moves. Listings happen on the timer alone.
pub async fn run(
    settings: RemoteSettings,
    paths: Paths,
    engine: EngineHandle,
    state: Arc<Mutex<PollState>>,
    kick: Arc<Notify>,
    hooks: Hooks,
    shutdown: CancellationToken,
) {
    let mut trouble = Trouble {
        state: state.clone(),
        failing: hooks.failing,
        in_a_row: 0,
    };
    let mut stability = Stability::new(quiet_period(settings.poll_interval));
    let mut backoff = Backoff::new(MAX_BACKOFF);
    let mut moves_only = false;
    let mut next_listing = tokio::time::Instant::now();
    loop {
        let result = if moves_only {
            moves_once(&settings, &paths, &engine).await
        } else {
            poll_once(&settings, &paths, &engine, &mut stability).await
        };
        let place = format!("polling {}:{}", settings.host, settings.port);
        let delay = match result {
            Ok(polled) => {
                // A pass that only finished moves listed nothing: neither a poll that
                // succeeded nor the end of a failing one's back-off.
                if !moves_only {
                    backoff.reset();
                    state.lock().expect("poll state").last_success = Some(SystemTime::now());
                }
                match polled.trouble {
                    // A pass that only moved files says nothing of the listings.
                    None if moves_only => {}
                    None => trouble.cleared(),
                    Some(e) if moves_only => trouble.noted(&format!("{place}: {e}")),
                    Some(e) => trouble.failed(&format!("{place}: {e}"), false),
                }
                // A file that is still settling is looked at again once it may be quiet, not
                // a whole interval later.
                match polled.next {
                    Some(wait) => settings.poll_interval.min(wait.max(Duration::from_secs(1))),
                    None => settings.poll_interval,
                }
            }
            Err(e) => {
                let message = format!("{place}: {e}");
                match moves_only && !e.is_fatal() {
                    true => trouble.noted(&message),
                    false => trouble.failed(&message, e.is_fatal()),
                }
                if e.is_fatal() {
                    tracing::error!(
                        "{message}. Fetching has STOPPED: the server's host key is not the pinned source.remote.known_host_key, or it refused our key. Verify the vendor's host key out of band (or the key they authorized), update the config and restart."
                    );
                    (hooks.stopped)(&message);
                    shutdown.cancelled().await;
                    return;
                }
                // A pass that only finished moves is not a poll: it leaves the back-off of
                // the scheduled polls as it was (each scan's pass had pushed it to its
                // longest, and fetch_failed with it), and the next poll is when it was.
                if moves_only {
                    tracing::warn!("{message}; the moves are tried again at the next poll");
                    Duration::ZERO
                } else {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "{message}; retrying in {}",
                        humantime::format_duration(delay)
                    );
                    delay
                }
            }
        };
        if !moves_only {
            next_listing = tokio::time::Instant::now() + delay;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = kick.notified() => moves_only = true,
            _ = tokio::time::sleep_until(next_listing) => moves_only = false,
        }
    }
}

/// Failed polls, and remote moves that failed in a poll that fetched: shown in `status`,
/// counted, notified once when they keep happening.
struct Trouble {
    state: Arc<Mutex<PollState>>,
    failing: crate::ingest::OnFetchFailed,
    in_a_row: u32,
}

impl Trouble {
    fn failed(&mut self, message: &str, fatal: bool) {
        {
            let mut s = self.state.lock().expect("poll state");
            s.last_error = Some(message.to_string());
            s.stopped = fatal;
            s.failures += 1;
        }
        self.in_a_row += 1;
        if self.in_a_row == FAILED_IN_A_ROW && !fatal {
            (self.failing)(&format!(
                "{message} ({} polls in a row have failed; retried every {} at most, no further notice until a poll succeeds)",
                self.in_a_row,
                humantime::format_duration(MAX_BACKOFF)
            ));
        }
    }

    /// A pass that only finished remote moves (woken by the engine after each scan, not
    /// by the timer) failed: shown in `status`, not counted as a failed poll. Counted, a
    /// failing move had posted `fetch_failed` after about one interval instead of five.
    fn noted(&mut self, message: &str) {
        self.state.lock().expect("poll state").last_error = Some(message.to_string());
    }

    fn cleared(&mut self) {
        self.in_a_row = 0;
        self.state.lock().expect("poll state").last_error = None;
    }
}

/// What one poll did.
struct Polled {
    /// How soon a file of the listing that is not yet quiet long enough will be.
    next: Option<Duration>,
    /// What went wrong while the poll went on: the first remote move that failed (retried
    /// at the next poll), or a remote file too large to download.
    trouble: Option<String>,
}

async fn poll_once(
    s: &RemoteSettings,
    paths: &Paths,
    engine: &EngineHandle,
    stability: &mut Stability,
) -> Result<Polled, PollError> {
    let client = RemoteClient::connect(s).await?;
    let result = poll_with(&client, s, paths, engine, stability).await;
    client.close().await;
    result
}

/// Connects only to finish the remote moves of decided files.
async fn moves_once(
    s: &RemoteSettings,
    paths: &Paths,
    engine: &EngineHandle,
) -> Result<Polled, PollError> {
    let client = RemoteClient::connect(s).await?;
    let result = match inbox_apart(&client, s).await {
        Ok(()) => finish_remote_moves(&client, s, paths, engine).await,
        Err(e) => Err(e),
    };
    client.close().await;
    Ok(Polled {
        next: None,
        trouble: result.err().map(|e| {
            format!("moving a decided file (its roster was processed: see its report): {e}")
        }),
    })
}

/// Refuses to fetch or move while the server says the processed or rejected folder is the inbox
/// (written otherwise in the config: `in/processed/..`, a symlink on the server): autoprov
/// had fetched its own moved rosters and reports again at every poll, applying the same
/// roster over and over and its reports as rosters.
async fn inbox_apart(client: &RemoteClient, s: &RemoteSettings) -> Result<(), PollError> {
    let Some(inbox) = client.real_path(&s.inbox).await else {
        return Ok(());
    };
    for (key, dir) in [("processed", &s.processed), ("rejected", &s.rejected)] {
        if client.real_path(dir).await.as_ref() == Some(&inbox) {
            return Err(PollError::Other(anyhow::anyhow!(
                "source.remote.{key} = {dir:?} is the remote inbox on the server ({inbox:?}): \
                 nothing is fetched or moved until the config names another folder"
            )));
        }
    }
    Ok(())
}

async fn poll_with(
    client: &RemoteClient,
    s: &RemoteSettings,
    paths: &Paths,
    engine: &EngineHandle,
    stability: &mut Stability,
) -> Result<Polled, PollError> {
    // Nothing is moved either while the server says a folder is the inbox (a roster and its
    // reports moved there would be fetched again).
    inbox_apart(client, s).await?;
    // A move that keeps failing (a missing remote folder, a deleted local report) must not
    // stop new rosters from being fetched: it is retried at the next poll, and reported.
    let moved = finish_remote_moves(client, s, paths, engine).await;
    let mut trouble = moved
        .err()
        .map(|e| format!("moving a decided file (its roster was processed: see its report): {e}"));
    let (listing, odd) = client.list_all(&s.inbox).await?;
    let settled = stability.settled(&listing);
    // A file whose name cannot be fetched (not UTF-8, control characters) is named at every
    // poll and counts as a failed one, as a file too large is: it had sat on the server with
    // a log line only, the poll said healthy, and its roster was never applied. Said when
    // nothing else is (what keeps a roster out, said below, comes first).
    let odd = odd.first().map(|first| {
        format!(
            "remote file {first}{}",
            match odd.len() {
                1 => String::new(),
                n => format!(", and {} more such names", n - 1),
            }
        )
    });
    for file in settled.stable {
        let sighting = RemoteOrigin {
            dir: s.inbox.clone(),
            name: file.name.clone(),
            size: file.size,
            mtime: file.mtime,
            sha256: String::new(),
        };
        match engine.known(sighting).await.map_err(engine_error)? {
            Sighting::Known => continue,
            Sighting::Again { id, stored_as } => {
                let e = format!(
                    "remote file {:?} has the name, size and time of file {id} ({stored_as}), \
                     already fetched, processed and moved away on the server: not fetched \
                     again; if it is a new roster, deliver it under a new name or give it a \
                     new time (`touch`), else remove it from the server",
                    file.name,
                );
                tracing::warn!("{e}");
                trouble.get_or_insert(e);
                continue;
            }
            // Fetched now, an older roster would be applied over a newer one: a file skipped
            // while it could not be opened, or one uploaded late with its old time kept.
            Sighting::Older { newest } => {
                let e = format!(
                    "remote file {:?} (modified {}) is older than a roster already fetched \
                     (from this remote inbox under any spelling, or another before it: `files \
                     list` shows it) and applied, held or waiting (modified {}, or arrived \
                     then): not fetched, so that it is not applied over the newer one; remove \
                     it from the server, or give it a new time (`touch`) to have it fetched",
                    file.name,
                    crate::util::rfc3339(unix_time(file.mtime)),
                    crate::util::rfc3339(unix_time(newest)),
                );
                tracing::warn!("{e}");
                trouble.get_or_insert(e);
                continue;
            }
            Sighting::New => {}
        }
        match fetch(client, s, paths, engine, &file).await {
            // Left on the server, said at every poll; later files are still fetched (one
            // stray file in a shared folder had stopped every roster after it).
            Err(e @ (PollError::TooLarge { .. } | PollError::Unreadable { .. })) => {
                tracing::error!("{e}");
                trouble.get_or_insert(e.to_string());
            }
            other => other?,
        }
    }
    Ok(Polled {
        next: settled.next,
        trouble: trouble.or(odd),
    })
}

/// A remote file's time (seconds since the epoch).
fn unix_time(seconds: u32) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds.into())
}

/// What `status` checks of `[source.remote]` (the config check): the pinned host key
/// parses. The private key is read by the daemon, which may be the only user that can.
pub fn check_remote(remote: &Remote) -> anyhow::Result<()> {
    host_key::parse_pinned_key(&remote.known_host_key).map(|_| ())
}

/// Downloads one file to a hidden name, registers its origin, renames it into inbox/.
async fn fetch(
    client: &RemoteClient,
    s: &RemoteSettings,
    paths: &Paths,
    engine: &EngineHandle,
    file: &RemoteFile,
) -> Result<(), PollError> {
    let inbox = paths.folder("inbox");
    let local_name = crate::util::free_inbox_name(&local_name(&file.name), |n| {
        crate::util::is_taken(&inbox.join(n))
    });
    let tmp = inbox.join(format!("{FETCHING}{local_name}.part"));
    let sha256 = match client.download(&s.inbox, file, &tmp, s.max_bytes).await {
        Ok(sha) => sha,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let origin = RemoteOrigin {
        dir: s.inbox.clone(),
        name: file.name.clone(),
        size: file.size,
        mtime: file.mtime,
        sha256,
    };
    let name = local_name.clone();
    engine
        .file_in(SourceFile { tmp, name, origin })
        .await
        .map_err(engine_error)?;
    tracing::info!(remote = ?file.name, local = %local_name, size = file.size, "fetched a roster from the remote inbox");
    Ok(())
}

/// The longest local name a fetch keeps whole: its hidden download name
/// (`.fetch-<name>-NNNN.part`) stays within the 255 bytes a file name may have. A longer
/// remote name had made every download of it fail, and it blocked every file after it.
const MAX_LOCAL_NAME: usize = 255 - FETCHING.len() - "-NNNN".len() - ".part".len();

/// A safe local name for a remote one (no path separators, not hidden, not too long).
fn local_name(remote: &str) -> String {
    crate::util::fitting(&crate::util::clean_file_name(remote), MAX_LOCAL_NAME).into_owned()
}

/// Moves decided files on the remote server and uploads their reports; one that fails
/// does not keep the others waiting (the first failure is returned).
async fn finish_remote_moves(
    client: &RemoteClient,
    s: &RemoteSettings,
    paths: &Paths,
    engine: &EngineHandle,
) -> Result<(), PollError> {
    let work = engine.handoffs().await.map_err(engine_error)?;
    let mut first_failure = None;
    for entry in work {
        let moved = match move_one(client, s, paths, &entry, RemoteFolder::of(&entry)).await {
            Ok(moved) => moved,
            Err(e) => {
                tracing::warn!(file = %entry.stored_as, "moving the remote file failed, retried at the next poll: {e}");
                first_failure.get_or_insert(e);
                continue;
            }
        };
        crate::util::crash_point("after_remote_move");
        engine.handed_off(entry.id).await.map_err(engine_error)?;
        // The file is said moved only when it was (gone or replaced, its reports alone went).
        match moved {
            true => {
                tracing::info!(file = %entry.stored_as, "remote file moved and reports uploaded")
            }
            false => {
                tracing::info!(file = %entry.stored_as, "reports uploaded; the remote file was not there to move (moved before a restart, gone, or replaced on the server)")
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

async fn move_one(
    client: &RemoteClient,
    s: &RemoteSettings,
    paths: &Paths,
    entry: &FileEntry,
    folder: RemoteFolder,
) -> Result<bool, PollError> {
    let origin = entry.remote.as_ref().expect("remote work has an origin");
    let dir = match folder {
        RemoteFolder::Processed => &s.processed,
        RemoteFolder::Rejected => &s.rejected,
    };
    let from = remote_path(&origin.dir, &origin.name)?;
    let to = remote_path(dir, &entry.stored_as)?;
    let fetched = match client.stat(&from).await? {
        // Another file under the name since it was fetched: a new delivery, left to be
        // listed and fetched; moving it would file it unread under this one's reports.
        Some(now) if now != (origin.size, origin.mtime) => {
            tracing::warn!(file = ?origin.name, stored_as = %entry.stored_as, "the remote file was replaced after it was fetched: the new one stays in the remote inbox to be fetched; the reports of the one processed are in the remote folder");
            false
        }
        // Still there as fetched, and its name in the folder taken by another file (a
        // rename that went through leaves no file at `from`): said before any report is
        // uploaded (they had been put beside the other file), and tried again at every
        // poll, not counted as moved while the file stays in the remote inbox.
        Some(_) if client.exists(&to).await? => {
            return Err(PollError::Other(anyhow::anyhow!(
                "cannot move {from:?} to {to:?}: another file has that name on the server; it \
                 stays in the remote inbox until the other file is moved away"
            )));
        }
        Some(_) => true,
        None => false,
    };
    upload_reports(client, paths, entry, dir).await?;
    crate::util::crash_point("before_remote_move");
    match fetched {
        true => move_if_unchanged(client, origin, &from, &to).await,
        false => Ok(false),
    }
}

/// Moves `from` to `to` while it is still the file fetched (`origin`'s size and time): the
/// reports' uploads take several round trips after the first look, and a new delivery
/// renamed in under the name meanwhile (as vendors are told to deliver) had been moved into
/// the processed folder unread, beside the old roster's reports, and never applied. Looked
/// at again just before the move, which leaves the one round trip of the rename. (Not
/// looked at after it: a server whose rename is a copy, such as one on object storage,
/// gives the moved file a new time, and moving it back would have it fetched again.)
async fn move_if_unchanged(
    client: &RemoteClient,
    origin: &RemoteOrigin,
    from: &str,
    to: &str,
) -> Result<bool, PollError> {
    if client.stat(from).await? != Some((origin.size, origin.mtime)) {
        tracing::warn!(file = ?origin.name, "the remote file was replaced after it was fetched: the new one stays in the remote inbox to be fetched; the reports of the one processed are in the remote folder");
        return Ok(false);
    }
    client.rename(from, to).await.map(|()| true)
}

/// Uploads the decided file's reports into the remote folder `dir`. One already there is
/// this file's when it has the local one's size (an upload is renamed into place whole:
/// one cut short is never there); another file's refuses the move. One that is no longer
/// here (pruned, or never filed: a held roster gone from held/ when it was rejected) is
/// said and left out: it had stopped every later move for good.
async fn upload_reports(
    client: &RemoteClient,
    paths: &Paths,
    entry: &FileEntry,
    dir: &str,
) -> Result<(), PollError> {
    let local_dir = local_folder(paths, entry);
    for ext in ["report.json", "report.txt"] {
        let name = format!("{}.{ext}", entry.stored_as);
        let target = remote_path(dir, &name)?;
        let local = local_dir.join(&name);
        let size = match std::fs::symlink_metadata(&local) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %entry.stored_as, report = %local.display(), "the report is not here (pruned, or never filed): not uploaded");
                continue;
            }
            Err(e) => {
                return Err(anyhow::anyhow!("cannot read {}: {e}", local.display()).into());
            }
        };
        match client.stat(&target).await? {
            None => client.upload(&local, &target).await?,
            Some((remote, _)) if remote == size => {}
            Some(_) => {
                return Err(PollError::Other(anyhow::anyhow!(
                    "cannot upload {target:?}: another file has that name on the server; the \
                     roster stays in the remote inbox until the other file is moved away"
                )));
            }
        }
    }
    Ok(())
}

/// The local folder a decided file and its reports are in.
fn local_folder(paths: &Paths, entry: &FileEntry) -> PathBuf {
    let folder = entry.status.folder();
    debug_assert!(FOLDERS.contains(&folder));
    paths.folder(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing pass that only finished remote moves is shown, not counted: five failed
    /// polls post `fetch_failed`, however many such passes come between them.
    #[test]
    fn passes_that_only_move_files_do_not_count_as_failed_polls() {
        let posted = Arc::new(Mutex::new(Vec::<String>::new()));
        let heard = posted.clone();
        let state = Arc::new(Mutex::new(PollState::default()));
        let mut trouble = Trouble {
            state: state.clone(),
            failing: Arc::new(move |m: &str| heard.lock().unwrap().push(m.to_string())),
            in_a_row: 0,
        };
        for _ in 0..FAILED_IN_A_ROW - 1 {
            trouble.failed("polling: moving a decided file: no", false);
            for _ in 0..4 {
                trouble.noted("polling: moving a decided file: still no");
            }
        }
        assert!(
            posted.lock().unwrap().is_empty(),
            "{:?}",
            posted.lock().unwrap()
        );
        let shown = state.lock().unwrap().clone();
        assert_eq!(
            shown.last_error.as_deref(),
            Some("polling: moving a decided file: still no")
        );
        assert_eq!(shown.failures, u64::from(FAILED_IN_A_ROW - 1));
        trouble.failed("polling: moving a decided file: no", false);
        assert_eq!(posted.lock().unwrap().len(), 1);
    }

    #[test]
    fn local_names_never_escape_or_hide() {
        assert_eq!(local_name("../x.csv"), "_x.csv");
        assert_eq!(local_name(".hidden.csv"), "hidden.csv");
        assert_eq!(local_name("a/b.csv"), "a_b.csv");
        assert_eq!(local_name("Löhne März.csv"), "Löhne März.csv");
        assert_eq!(local_name("..."), "roster.csv");
        let long = format!("{}.csv", "é".repeat(125));
        let local = local_name(&long);
        assert!(
            local.len() <= MAX_LOCAL_NAME && local.ends_with("~.csv"),
            "{local}"
        );
        let hidden = format!("{FETCHING}{local}-9999.part");
        assert!(hidden.len() <= 255, "{}", hidden.len());
        // A long dry run stays one: cut to `…~.csv`, it had been applied for real.
        let dry = local_name(&format!("{}.dryrun.csv", "f".repeat(235)));
        assert!(crate::layout::is_dry_run(&dry), "{dry}");
        assert!(dry.len() <= MAX_LOCAL_NAME, "{}", dry.len());
    }
}
