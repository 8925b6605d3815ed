//! The long-running service: wires the SFTP server, the watchers, the pipeline engine and
//! the control socket together, and stops cleanly on SIGTERM or SIGINT.
//!
//! One engine thread owns the store: files and control requests are handled one at a time
//! in the order they arrive, so nothing is ever applied concurrently.

use crate::commands::{self, Output, Request, Response, exit};
use crate::config::{Config, Mode};
use crate::control::{self, Upload};
use crate::ingest::poll::PollState;
use crate::ingest::{sftp_server, watcher};
use crate::pipeline::Pipeline;
use crate::store::SledStore;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A closure run on the engine thread with the pipeline (poll mode's bookkeeping).
pub type Call = Box<dyn FnOnce(&Pipeline<SledStore>) + Send>;

/// Work for the engine thread.
pub enum Job {
    /// Run this with the pipeline.
    Call(Call),
    /// Look at inbox/ and process what waits there.
    Scan,
    /// A control request (with the file of a `process`).
    Request {
        /// The command.
        request: Request,
        /// The Unix user who asked.
        caller: String,
        /// The file that came with `process`.
        upload: Option<(Upload, Vec<u8>)>,
        /// What the asker prints.
        output: Output,
        /// Where the answer goes.
        reply: Option<oneshot::Sender<Response>>,
    },
}

/// Read-only requests served at once, beside the engine.
const READS_AT_ONCE: usize = 2;

/// A cheap handle to send work to the engine. Read-only requests do not queue behind a
/// file being processed: they read the store directly (sled serves concurrent readers).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Job>,
    pipeline: Arc<Pipeline<SledStore>>,
    state: Arc<Mutex<DaemonState>>,
    reads: Arc<tokio::sync::Semaphore>,
}

impl EngineHandle {
    /// A handle and the engine's end of the queue.
    fn new(
        pipeline: Arc<Pipeline<SledStore>>,
        state: Arc<Mutex<DaemonState>>,
    ) -> (EngineHandle, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            EngineHandle {
                tx,
                pipeline,
                state,
                reads: Arc::new(tokio::sync::Semaphore::new(READS_AT_ONCE)),
            },
            rx,
        )
    }

    /// Asks the engine to scan inbox/.
    pub fn scan(&self) {
        let _ = self.tx.send(Job::Scan);
    }

    /// Runs `f` on the engine thread and returns its result (None when the engine stopped).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Pipeline<SledStore>) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Call(Box::new(move |p| {
            let _ = tx.send(f(p));
        }));
        self.tx.send(job).ok()?;
        rx.await.ok()
    }

    /// Sends a request and waits for its answer.
    pub async fn ask(
        &self,
        request: Request,
        caller: String,
        upload: Option<(Upload, Vec<u8>)>,
        output: Output,
    ) -> Response {
        if !request.is_change() && upload.is_none() {
            // A few reads at a time: some (rules check) parse the last roster.
            let Ok(_slot) = self.reads.clone().acquire_owned().await else {
                return Response::fail(exit::UNREACHABLE, "the daemon is shutting down");
            };
            let (pipeline, state) = (self.pipeline.clone(), self.state.clone());
            let read = move || answer(&pipeline, request, &caller, None, output, &state);
            return tokio::task::spawn_blocking(read).await.unwrap_or_else(|e| {
                Response::fail(
                    exit::FAILED,
                    format!("failed: the request hit an internal error ({e}); nothing was changed"),
                )
            });
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Request {
            request,
            caller,
            upload,
            output,
            reply: Some(reply),
        };
        if self.tx.send(job).is_err() {
            return Response::fail(exit::UNREACHABLE, "the daemon is shutting down");
        }
        answer.await.unwrap_or_else(|_| {
            Response::fail(exit::UNREACHABLE, "the daemon stopped before answering")
        })
    }
}

/// What `status` adds when the daemon answers.
#[derive(Debug, Default)]
struct DaemonState {
    started_at: Option<SystemTime>,
    listen: Option<SocketAddr>,
    last_error: Option<String>,
    poll: Arc<Mutex<PollState>>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<()> {
    if !cfg.sso.enabled {
        bail!(
            "refused: [sso] enabled = true is not set. autoprov provisions admins who sign in through SSO only; enable SSO in the config first"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("autoprov")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(cfg))
}

/// Removes the control socket when the daemon stops, however it stops.
struct SocketFile(std::path::PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn serve(cfg: Config) -> Result<()> {
    // The socket first: a CLI command started meanwhile waits for the daemon instead of
    // opening (and locking) the store itself.
    let listener = control::server::bind(&cfg.control.socket)?;
    let _socket = SocketFile(cfg.control.socket.clone());
    let pipeline = Arc::new(crate::local::open(cfg.clone())?);
    let paths = pipeline.paths.clone();
    match crate::backup::rotate(&pipeline.store, &paths) {
        Ok(path) => tracing::info!(backup = %path.display(), "store checked and backed up"),
        Err(e) => tracing::warn!("automatic backup at start-up failed: {e:#}"),
    }
    let cfg = Arc::new(cfg);
    let state = Arc::new(Mutex::new(DaemonState {
        started_at: Some(SystemTime::now()),
        ..DaemonState::default()
    }));
    let shutdown = CancellationToken::new();
    let (engine, jobs) = EngineHandle::new(pipeline.clone(), state.clone());
    let pipeline_for_stop = pipeline.clone();
    let poll_state = state.lock().expect("state lock").poll.clone();
    // Wakes the poller when a file may have been decided (its remote copy can move).
    let kick = Arc::new(Notify::new());
    let engine_thread = {
        let (state, shutdown, kick) = (state.clone(), shutdown.clone(), kick.clone());
        std::thread::Builder::new()
            .name("autoprov-engine".into())
            .spawn(move || run_engine(pipeline, jobs, state, kick, shutdown))?
    };

    let tracker = TaskTracker::new();
    match cfg.source.mode {
        Mode::Host => {
            let server =
                sftp_server::SftpServer::bind(crate::ingest::sftp_settings(&cfg, &paths)?).await?;
            let addr = server.local_addr();
            state.lock().expect("state lock").listen = Some(addr);
            tracing::info!(%addr, "SFTP server listening");
            let token = shutdown.clone();
            tracker.spawn(async move {
                if let Err(e) = server.run(token).await {
                    tracing::error!("SFTP server stopped: {e:#}");
                }
            });
        }
        Mode::Watch => {
            let (dir, settle, rescan) = (
                cfg.source.watch_dir.clone(),
                cfg.source.settle,
                cfg.source.rescan_interval,
            );
            let (inbox, engine, token) = (paths.folder("inbox"), engine.clone(), shutdown.clone());
            tracker.spawn(async move {
                if let Err(e) = watcher::watch_dir(dir, inbox, settle, rescan, engine, token).await
                {
                    tracing::error!("watch_dir watcher stopped: {e:#}");
                }
            });
        }
        Mode::Poll => {
            let remote = cfg
                .source
                .remote
                .as_ref()
                .expect("validated: poll mode has [source.remote]");
            let settings = crate::ingest::poll::settings(remote, &cfg);
            tracing::info!(host = %remote.host, port = remote.port, inbox = %remote.inbox, "polling the remote SFTP server");
            tracker.spawn(crate::ingest::poll::run(
                settings,
                paths.clone(),
                engine.clone(),
                poll_state.clone(),
                kick.clone(),
                shutdown.clone(),
            ));
        }
    }
    // Answer the control socket once the source is up, so `status` shows the real address.
    tracker.spawn(control::server::serve(
        listener,
        cfg.clone(),
        engine.clone(),
        shutdown.clone(),
    ));
    {
        let (inbox, engine, token, rescan) = (
            paths.folder("inbox"),
            engine.clone(),
            shutdown.clone(),
            cfg.source.rescan_interval,
        );
        tracker.spawn(async move {
            if let Err(e) = watcher::watch_inbox(inbox, rescan, engine, token).await {
                tracing::error!("inbox watcher stopped: {e:#}");
            }
        });
    }
    engine.scan();
    drop(engine);
    tracker.spawn(watchdog(shutdown.clone()));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(mode = ?cfg.source.mode, data_dir = %cfg.data_dir.display(), socket = %cfg.control.socket.display(), "autoprov ready");

    wait_for_signal().await?;
    tracing::info!("stopping: no new connections or files; finishing the current file");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    pipeline_for_stop.request_stop();
    tracker.close();
    tracker.wait().await;
    tokio::task::spawn_blocking(move || engine_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

/// Pets systemd's watchdog at half its interval while the runtime is alive.
async fn watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => { let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]); }
        }
    }
}

fn run_engine(
    pipeline: Arc<Pipeline<SledStore>>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    state: Arc<Mutex<DaemonState>>,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) {
    while let Some(job) = jobs.blocking_recv() {
        // A panic (a bug meeting a hostile file) fails that job, not the engine: the file
        // stays in inbox/ and status shows the error.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(&pipeline, job, &state, &kick, &shutdown)
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
    state: &Mutex<DaemonState>,
    kick: &Notify,
    shutdown: &CancellationToken,
) {
    match job {
        Job::Scan => {
            process_waiting(pipeline, state, shutdown);
            kick_if_remote_work(pipeline, kick);
        }
        Job::Call(f) => f(pipeline),
        Job::Request {
            request,
            caller,
            upload,
            output,
            reply,
        } => {
            let decides = matches!(request, Request::FilesDecide { .. });
            let response = answer(pipeline, request, &caller, upload, output, state);
            if let Some(reply) = reply {
                let _ = reply.send(response);
            }
            if decides {
                process_waiting(pipeline, state, shutdown);
            }
            kick_if_remote_work(pipeline, kick);
        }
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

/// Wakes the poller when a fetched file's remote copy is ready to move.
fn kick_if_remote_work(p: &Pipeline<SledStore>, kick: &Notify) {
    if p.cfg.source.mode == Mode::Poll && p.remote_work().is_ok_and(|w| !w.is_empty()) {
        kick.notify_one();
    }
}

fn answer(
    p: &Pipeline<SledStore>,
    request: Request,
    caller: &str,
    upload: Option<(Upload, Vec<u8>)>,
    output: Output,
    state: &Mutex<DaemonState>,
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

fn add_daemon_status(p: &Pipeline<SledStore>, response: &mut Response, state: &Mutex<DaemonState>) {
    let state = state.lock().expect("state lock");
    let now = SystemTime::now();
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
        .or(state.started_at);
    let quiet = last_arrival
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default();
    let stale = quiet > p.cfg.source.stale_after;
    let poll = state.poll.lock().expect("poll state").clone();
    let polling = (p.cfg.source.mode == Mode::Poll).then(|| {
        json!({
            "last_success": poll.last_success.map(crate::util::rfc3339),
            "last_error": poll.last_error,
            "stopped": poll.stopped,
        })
    });
    response.json["daemon"] = json!({
        "running": true,
        "poll": polling,
        "started_at": state.started_at.map(crate::util::rfc3339),
        "listen": state.listen.map(|a| a.to_string()),
        "last_error": state.last_error,
        "stale": stale,
        "quiet_for_seconds": quiet.as_secs(),
    });
    let mut text = format!(
        "daemon:    running since {}",
        state
            .started_at
            .map(crate::util::rfc3339)
            .unwrap_or_default()
    );
    if let Some(addr) = state.listen {
        text.push_str(&format!(", SFTP on {addr}"));
    }
    text.push('\n');
    if let Some(e) = &state.last_error {
        text.push_str(&format!("LAST ERROR: {e}\n"));
    }
    if p.cfg.source.mode == Mode::Poll {
        text.push_str(&format!(
            "polling:   last success {}{}\n",
            poll.last_success
                .map(crate::util::rfc3339)
                .unwrap_or_else(|| "never".into()),
            if poll.stopped {
                " — STOPPED (see the last error)"
            } else {
                ""
            }
        ));
        if let Some(e) = &poll.last_error {
            text.push_str(&format!("POLL ERROR: {e}\n"));
        }
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
    state: &Mutex<DaemonState>,
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
