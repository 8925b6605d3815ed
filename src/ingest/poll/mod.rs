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
use crate::engine::{EngineHandle, SourceFile, SourceLink};
pub mod client;
mod host_key;

use crate::layout::{FOLDERS, Paths};
use crate::store::{FileEntry, FileStatus, RemoteOrigin};
use client::{
    Backoff, PollError, RemoteClient, RemoteFile, RemoteSettings, Stability, remote_path,
};
use serde_json::json;
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
        max_bytes: cfg.roster.max_bytes,
    }
}

/// Polls until `shutdown`. `kick` wakes it early when a fetched file was decided locally:
/// that wake-up only finishes remote moves. Listings happen on the timer alone, so the two
/// sightings that make a file "stable" are always a poll interval apart.
pub async fn run(
    settings: RemoteSettings,
    paths: Paths,
    engine: EngineHandle,
    state: Arc<Mutex<PollState>>,
    kick: Arc<Notify>,
    on_stopped: crate::ingest::OnFetchFailed,
    shutdown: CancellationToken,
) {
    let mut stability = Stability::new();
    let mut backoff = Backoff::new(MAX_BACKOFF);
    let mut moves_only = false;
    let mut next_listing = tokio::time::Instant::now();
    loop {
        let result = if moves_only {
            moves_once(&settings, &paths, &engine)
                .await
                .map(|()| Polled {
                    pending_stability: false,
                })
        } else {
            poll_once(&settings, &paths, &engine, &mut stability).await
        };
        let delay = match result {
            Ok(fetched) => {
                backoff.reset();
                {
                    let mut s = state.lock().expect("poll state");
                    s.last_success = Some(SystemTime::now());
                    s.last_error = None;
                }
                // A file that is still settling is looked at again soon, not a whole interval later.
                if fetched.pending_stability {
                    settings.poll_interval.min(Duration::from_secs(5))
                } else {
                    settings.poll_interval
                }
            }
            Err(e) => {
                let fatal = e.is_fatal();
                let message = format!("polling {}:{}: {e}", settings.host, settings.port);
                {
                    let mut s = state.lock().expect("poll state");
                    s.last_error = Some(message.clone());
                    s.stopped = fatal;
                }
                if fatal {
                    tracing::error!(
                        "{message}. Fetching has STOPPED: the server's host key is not the pinned source.remote.known_host_key, or it refused our key. Verify the vendor's host key out of band (or the key they authorized), update the config and restart."
                    );
                    on_stopped(&message);
                    shutdown.cancelled().await;
                    return;
                }
                let delay = backoff.next_delay();
                tracing::warn!(
                    "{message}; retrying in {}",
                    humantime::format_duration(delay)
                );
                delay
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

/// What one poll did.
struct Polled {
    /// Some file was seen once and waits for a second listing.
    pending_stability: bool,
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
) -> Result<(), PollError> {
    let client = RemoteClient::connect(s).await?;
    let result = finish_remote_moves(&client, s, paths, engine).await;
    client.close().await;
    result
}

async fn poll_with(
    client: &RemoteClient,
    s: &RemoteSettings,
    paths: &Paths,
    engine: &EngineHandle,
    stability: &mut Stability,
) -> Result<Polled, PollError> {
    finish_remote_moves(client, s, paths, engine).await?;
    let listing = client.list(&s.inbox).await?;
    let stable = stability.stable(&listing);
    let pending_stability = stable.len() < listing.len();
    for file in stable {
        let sighting = RemoteOrigin {
            dir: s.inbox.clone(),
            name: file.name.clone(),
            size: file.size,
            mtime: file.mtime,
            sha256: String::new(),
        };
        let known = engine.known(sighting).await.map_err(engine_error)?;
        if known {
            continue;
        }
        fetch(client, s, paths, engine, &file).await?;
    }
    Ok(Polled { pending_stability })
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
    let local_name = crate::util::free_name(&local_name(&file.name), |n| inbox.join(n).exists());
    let tmp = inbox.join(format!(".fetch-{local_name}.part"));
    let sha256 = match client.download(&s.inbox, file, &tmp, s.max_bytes).await {
        Ok(sha) => sha,
        Err(PollError::TooLarge { name, size, max }) => {
            tracing::error!(file = %name, size, max, "remote file is larger than roster.max_bytes: not downloaded; remove or split it on the server");
            return Ok(());
        }
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
    tracing::info!(remote = %file.name, local = %local_name, size = file.size, "fetched a roster from the remote inbox");
    Ok(())
}

/// A safe local name for a remote one (no path separators, not hidden).
fn local_name(remote: &str) -> String {
    let cleaned: String = remote
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "roster.csv".to_string()
    } else {
        cleaned
    }
}

/// Moves decided files on the remote server and uploads their reports.
async fn finish_remote_moves(
    client: &RemoteClient,
    s: &RemoteSettings,
    paths: &Paths,
    engine: &EngineHandle,
) -> Result<(), PollError> {
    let work = engine.handoffs().await.map_err(engine_error)?;
    for entry in work {
        move_one(client, s, paths, &entry, RemoteFolder::of(&entry)).await?;
        crate::util::crash_point("after_remote_move");
        engine.handed_off(entry.id).await.map_err(engine_error)?;
        tracing::info!(file = %entry.stored_as, "remote file moved and reports uploaded");
    }
    Ok(())
}

async fn move_one(
    client: &RemoteClient,
    s: &RemoteSettings,
    paths: &Paths,
    entry: &FileEntry,
    folder: RemoteFolder,
) -> Result<(), PollError> {
    let origin = entry.remote.as_ref().expect("remote work has an origin");
    let dir = match folder {
        RemoteFolder::Processed => &s.processed,
        RemoteFolder::Rejected => &s.rejected,
    };
    let local_dir = local_folder(paths, entry);
    for ext in ["report.json", "report.txt"] {
        let name = format!("{}.{ext}", entry.stored_as);
        let target = remote_path(dir, &name)?;
        if !client.exists(&target).await? {
            client.upload(&local_dir.join(&name), &target).await?;
        }
    }
    crate::util::crash_point("before_remote_move");
    let from = remote_path(&origin.dir, &origin.name)?;
    let to = remote_path(dir, &entry.stored_as)?;
    if client.exists(&from).await? && !client.exists(&to).await? {
        client.rename(&from, &to).await?;
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

    #[test]
    fn local_names_never_escape_or_hide() {
        assert_eq!(local_name("../x.csv"), "_x.csv");
        assert_eq!(local_name(".hidden.csv"), "hidden.csv");
        assert_eq!(local_name("a/b.csv"), "a_b.csv");
        assert_eq!(local_name("Löhne März.csv"), "Löhne März.csv");
        assert_eq!(local_name("..."), "roster.csv");
    }
}
