//! The engine thread: runs jobs one at a time, survives a panic in one, and answers requests.

use super::handle::{EngineHandle, Job, SourceJob};
use crate::commands::{self, Output, Request, Response, exit};
use crate::control::Upload;
use crate::pipeline::Pipeline;
use crate::store::SledStore;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the engine knows of the source that brings files in (ingest implements it).
pub trait SourceLink: Send + Sync {
    /// Called on the engine thread when decided files wait for the source's own finishing
    /// work (poll: moving the remote file); must not block.
    fn handoffs_waiting(&self) {}
    /// The source's part of `status`: its key in the JSON, its value, and text lines.
    fn status(&self) -> Option<(&'static str, serde_json::Value, String)> {
        None
    }
}

/// What `status` adds when the daemon answers.
#[derive(Default)]
pub struct EngineState {
    /// When the daemon started.
    pub started_at: Option<SystemTime>,
    /// The SFTP server's address (host mode).
    pub listen: Option<SocketAddr>,
    /// The last error of the engine, cleared by the next file processed.
    pub last_error: Option<String>,
    /// The source, for its part of `status` and its hand-offs.
    pub source: Option<Arc<dyn SourceLink>>,
}

/// Starts the engine thread over `pipeline`; it ends once every handle is dropped.
pub fn start(
    pipeline: Arc<Pipeline<SledStore>>,
    state: Arc<Mutex<EngineState>>,
    shutdown: CancellationToken,
) -> anyhow::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
    let (handle, jobs) = EngineHandle::new(pipeline.clone(), state.clone());
    let thread = std::thread::Builder::new()
        .name("autoprov-engine".into())
        .spawn(move || run(pipeline, jobs, state, shutdown))?;
    Ok((handle, thread))
}

fn run(
    pipeline: Arc<Pipeline<SledStore>>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    state: Arc<Mutex<EngineState>>,
    shutdown: CancellationToken,
) {
    while let Some(job) = jobs.blocking_recv() {
        // A panic (a bug meeting a hostile file) fails that job, not the engine: the file
        // stays in inbox/ and status shows the error.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(&pipeline, job, &state, &shutdown)
        }));
        if outcome.is_err() {
            let message =
                "the engine hit an internal error (a panic; see the log); the job was abandoned"
                    .to_string();
            tracing::error!("{message}");
            state.lock().expect("state lock").last_error = Some(message);
        }
    }
    if let Err(e) = crate::store::Store::flush(&pipeline.store) {
        tracing::error!("flushing the store at shutdown: {e}");
    }
}

fn run_job(
    pipeline: &Pipeline<SledStore>,
    job: Job,
    state: &Mutex<EngineState>,
    shutdown: &CancellationToken,
) {
    match job {
        Job::Scan => process_waiting(pipeline, state, shutdown),
        Job::Source(job) => {
            source_job(pipeline, job);
            return;
        }
        Job::Request {
            request,
            caller,
            upload,
            output,
            reply,
        } => {
            let decides = matches!(request, Request::FilesDecide { .. });
            let _ = reply.send(answer(pipeline, request, &caller, upload, output, state));
            if decides {
                process_waiting(pipeline, state, shutdown);
            }
        }
    }
    tell_source_of_handoffs(pipeline, state);
}

fn source_job(p: &Pipeline<SledStore>, job: SourceJob) {
    match job {
        SourceJob::Known(origin, reply) => {
            let _ = reply.send(p.remote_known(&origin));
        }
        SourceJob::File(file, reply) => {
            let _ = reply.send(p.file_in(&file.tmp, &file.name, &file.origin));
        }
        SourceJob::Handoffs(reply) => {
            let _ = reply.send(p.remote_work());
        }
        SourceJob::HandedOff(id, reply) => {
            let _ = reply.send(p.remote_done(id));
        }
    }
}

/// Wakes the source when a decided file waits for its finishing work.
fn tell_source_of_handoffs(p: &Pipeline<SledStore>, state: &Mutex<EngineState>) {
    let source = state.lock().expect("state lock").source.clone();
    if let Some(source) = source
        && p.remote_work().is_ok_and(|w| !w.is_empty())
    {
        source.handoffs_waiting();
    }
}

/// The daemon writes backups with its own rights: only as new files in `data_dir/backups/`
/// (never over the store, the host keys or into the SFTP drop).
fn backup_target_refusal(p: &Pipeline<SledStore>, path: &str) -> Option<Response> {
    let path = std::path::Path::new(path);
    let inside = path.parent() == Some(p.paths.backups.as_path())
        || std::path::absolute(&p.paths.backups).ok().as_deref() == path.parent();
    if !inside || path.exists() {
        return Some(Response::fail(
            exit::REFUSED,
            format!(
                "refused: while the daemon runs it writes backups only as new files in {} (e.g. `autoprov backup {}/manual.backup`); stop it to write elsewhere",
                p.paths.backups.display(),
                p.paths.backups.display()
            ),
        ));
    }
    None
}

/// Answers one request on the engine thread (changes) or beside it (reads).
pub(super) fn answer(
    p: &Pipeline<SledStore>,
    request: Request,
    caller: &str,
    upload: Option<(Upload, Vec<u8>)>,
    output: Output,
    state: &Mutex<EngineState>,
) -> Response {
    let request = match (request, upload) {
        (Request::Process { .. }, Some((upload, bytes))) => {
            return commands::process_upload(
                p,
                &upload.name,
                bytes,
                upload.dry_run,
                caller,
                output,
            );
        }
        (request, _) => request,
    };
    if let Request::Backup { path } = &request
        && let Some(refusal) = backup_target_refusal(p, path)
    {
        return refusal;
    }
    let is_status = matches!(request, Request::Status);
    let mut response = commands::execute(p, request, caller, output);
    if is_status && response.exit == exit::OK {
        add_daemon_status(p, &mut response, state);
    }
    response
}

/// How long no file arrived, and whether that is longer than `source.stale_after`.
fn quiet_time(p: &Pipeline<SledStore>, started_at: Option<SystemTime>) -> (Duration, bool) {
    // The newest arrival: a processed file, or one still waiting in inbox/.
    let inbox = p.paths.folder("inbox");
    let waiting_arrival = p
        .waiting()
        .unwrap_or_default()
        .iter()
        .filter_map(|name| std::fs::metadata(inbox.join(name)).ok())
        .filter_map(|m| m.modified().ok())
        .max();
    let last_arrival = p
        .last_received()
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .into_iter()
        .chain(waiting_arrival)
        .max()
        .or(started_at);
    let quiet = last_arrival
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    (quiet, quiet > p.cfg.source.stale_after)
}

fn add_daemon_status(p: &Pipeline<SledStore>, response: &mut Response, state: &Mutex<EngineState>) {
    let state = state.lock().expect("state lock");
    let (quiet, stale) = quiet_time(p, state.started_at);
    let source = state.source.as_ref().and_then(|s| s.status());
    let started = state.started_at.map(crate::util::rfc3339);
    response.json["daemon"] = json!({
        "running": true,
        "started_at": started,
        "listen": state.listen.map(|a| a.to_string()),
        "last_error": state.last_error,
        "stale": stale,
        "quiet_for_seconds": quiet.as_secs(),
    });
    response.json["daemon"]["poll"] = serde_json::Value::Null;
    let mut text = format!("daemon:    running since {}", started.unwrap_or_default());
    if let Some(addr) = state.listen {
        text.push_str(&format!(", SFTP on {addr}"));
    }
    text.push('\n');
    if let Some(e) = &state.last_error {
        text.push_str(&format!("LAST ERROR: {e}\n"));
    }
    if let Some((key, value, lines)) = source {
        response.json["daemon"][key] = value;
        text.push_str(&lines);
    }
    if stale {
        text.push_str(&format!(
            "WARNING:   no file arrived for {} (source.stale_after = {}): is the HR export still running?\n",
            humantime::format_duration(Duration::from_secs(quiet.as_secs())),
            humantime::format_duration(p.cfg.source.stale_after)
        ));
    }
    response.text.push_str(&text);
}

/// Processes waiting files in order until none is left, one is held, or shutdown.
fn process_waiting(
    p: &Pipeline<SledStore>,
    state: &Mutex<EngineState>,
    shutdown: &CancellationToken,
) {
    let waiting = match p.waiting() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("listing inbox/: {e:#}");
            return;
        }
    };
    for name in waiting {
        if shutdown.is_cancelled() {
            return;
        }
        if let Ok(Some(held)) = p.held() {
            tracing::info!(held = %held.stored_as, "files wait in inbox/ until the held file is approved or rejected");
            return;
        }
        match p.process(&name) {
            Ok(_) => state.lock().expect("state lock").last_error = None,
            Err(e) => {
                // The file stays in inbox/ and is retried at the next scan (e.g. after disk space is freed).
                let message = format!("processing inbox/{name}: {e:#}");
                tracing::error!(
                    "{message}; the file stays in inbox/ and is retried at the next scan"
                );
                state.lock().expect("state lock").last_error = Some(message);
                return;
            }
        }
    }
}
