//! The long-running service: wires the source, the inbox watcher, the engine and the
//! control socket together, notifies systemd, and stops cleanly on SIGTERM or SIGINT.

use crate::api::error::{Context, Error, Result};
use crate::config::{Config, Mode};
use crate::control;
use crate::engine::{self, EngineState};
use crate::ingest::poll::PollLink;
use crate::ingest::{sftp, watch};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<()> {
    if !cfg.sso.enabled {
        return Err(Error::usage(
            "refused: [sso] enabled = true is not set. autoprov provisions admins who sign in through SSO only; enable SSO in the config first",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("autoprov")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(cfg))
}

/// Removes the control socket when the daemon stops, however it stops: the one it bound
/// (its inode), not another daemon's bound there since.
struct SocketFile(std::path::PathBuf, Option<(u64, u64)>);

impl SocketFile {
    /// The socket just bound at `path`.
    fn bound(path: std::path::PathBuf) -> SocketFile {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        SocketFile(path, inode)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::symlink_metadata(&self.0)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if self.1.is_none() || now == self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

async fn serve(cfg: Config) -> Result<()> {
    let signals = StopSignals::listen().context("listening for SIGTERM, SIGINT and SIGHUP")?;
    // The socket first: a CLI command started meanwhile waits for the daemon instead of
    // opening (and locking) the store itself.
    let listener = control::server::bind(&cfg.control.socket)?;
    let socket_file = SocketFile::bound(cfg.control.socket.clone());
    let pipeline = open_store(&cfg, &listener).await?;
    let paths = pipeline.paths.clone();
    let cfg = Arc::new(cfg);
    let state = Arc::new(Mutex::new(EngineState {
        started_at: Some(SystemTime::now()),
        ..EngineState::default()
    }));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Notifications (SPEC §10), in every mode: the engine tells the notifier of each file
    // it decides; the HRIS source's fetch failures go to `notifier.fetch_failed_hook()`.
    // A start that fails from here on tells the commands waiting on the socket that
    // nothing was done (exit 4), as one that cannot open the store does (a webhook URL file
    // it could not read had dropped them: "not known", exit 5).
    let notifications = or_refuse(&listener, Notifications::start(&cfg, &pipeline)).await?;
    let notifier = &notifications.notifier;
    pipeline.set_observer(notifier.file_observer());
    let pipeline_for_stop = pipeline.clone();
    let started = engine::start(pipeline, state.clone(), shutdown.clone())
        .map_err(|e| Error::failed(format!("{e:#}")));
    let (engine, engine_thread) = or_refuse(&listener, started).await?;
    // First in the engine's queue: no file, request or source job of this run changes the
    // store before the backup of the checked store is on disk. Reads are answered meanwhile.
    engine.backup();
    let sources = Sources {
        engine: &engine,
        state: &state,
        tracker: &tracker,
        shutdown: &shutdown,
        on_fetch_failed: notifier.fetch_failed_hook(),
        on_fetch_stopped: notifier.fetch_stopped_hook(),
    };
    or_refuse(&listener, start_source(&cfg, &paths, sources).await).await?;
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
        tracker.spawn(watch::watch_inbox(inbox, rescan, engine, token));
    }
    if let Some(addr) = cfg.web.listen
        && let Err(e) = start_web(addr, &cfg, &engine, &state, &tracker, &shutdown).await
    {
        // The control socket's server refuses what comes meanwhile as it stops.
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        return Err(e);
    }
    engine.scan();
    // Taken only at a start, the newest backup of a daemon that ran for months was as old,
    // and a damaged store could only be restored to it, undoing every change since.
    tracker.spawn(watchdog(engine.heartbeat(), shutdown.clone()));
    tracker.spawn(engine.back_up_every((BACKUP_EVERY, BACKUP_RETRY), shutdown.clone()));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(mode = ?cfg.source.mode, data_dir = %cfg.data_dir.display(), socket = %cfg.control.socket.display(), "autoprov ready");

    // A signal, or the engine's own stop once the store could not write a change to disk.
    tokio::select! {
        () = signals.wait() => {}
        () = shutdown.cancelled() => {}
    }
    let stopping = Stopping {
        shutdown,
        tracker,
        engine_thread,
        socket_file,
        pipeline: pipeline_for_stop,
        notifications,
    };
    stopping.stop().await
}

/// What a stop takes down, in its order.
struct Stopping {
    shutdown: CancellationToken,
    tracker: TaskTracker,
    engine_thread: std::thread::JoinHandle<()>,
    socket_file: SocketFile,
    pipeline: Arc<crate::engine::pipeline::Pipeline<crate::store::SledStore>>,
    notifications: Notifications,
}

impl Stopping {
    /// Stops the connections and sources, lets the engine finish its file, then closes the
    /// socket and the store and lets the notifier deliver: exit 0, or a failure when the
    /// store could not write a change to disk (so that systemd starts it again).
    async fn stop(self) -> Result<()> {
        tracing::info!("stopping: no new connections or files; finishing the current file");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.shutdown.cancel();
        self.pipeline.request_stop();
        self.tracker.close();
        self.tracker.wait().await;
        let engine_thread = self.engine_thread;
        tokio::task::spawn_blocking(move || engine_thread.join())
            .await
            .ok()
            .and_then(|joined| joined.ok())
            .ok_or_else(|| Error::failed("the engine thread panicked"))?;
        // The socket removed and the store closed first: a command run meanwhile opens the
        // store (the sign-in hook's `auth check` had found it in use, the socket silent, for
        // the grace's 5 s), and a daemon started meanwhile keeps its own socket (this one's
        // removal at the end had taken it away).
        drop(self.socket_file);
        let unwritten = crate::store::Store::write_failed(&self.pipeline.store);
        drop(self.pipeline);
        self.notifications.finish().await;
        match unwritten {
            // Not 0: systemd starts it again (`Restart=on-failure`), reading the store from disk.
            // Not "nothing was changed": the change that failed may be applied or not,
            // filed or not (systemd keeps this line as the unit's last word).
            Some(why) => Err(Error::failed_leaving(
                crate::engine::commands::stops_unwritten(&why),
            )),
            None => {
                tracing::info!("stopped cleanly");
                Ok(())
            }
        }
    }
}

/// `started`, the commands waiting on `listener` told that nothing was done when it failed.
async fn or_refuse<T>(listener: &tokio::net::UnixListener, started: Result<T>) -> Result<T> {
    if let Err(e) = &started {
        control::server::refuse_waiting(listener, &format!("{e:#}")).await;
    }
    started
}

/// Opens and checks the store; when it cannot be, the commands that came to `listener`
/// meanwhile hear that nothing was done.
async fn open_store(
    cfg: &Config,
    listener: &tokio::net::UnixListener,
) -> Result<Arc<crate::engine::pipeline::Pipeline<crate::store::SledStore>>> {
    // Opening checks the whole store: blocking work, off the workers. The automatic backup
    // comes after READY, as the engine's first job (see `serve`).
    let opened = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let pipeline = crate::local::open(cfg)?;
            // Sign-ins read the email index: checked now, so none waits for the check and a
            // damaged index refuses the start like any damaged record.
            pipeline
                .store
                .verify_index()
                .map_err(|e| crate::local::damaged(&pipeline.paths, e))?;
            Ok(Arc::new(pipeline))
        })
        .await
        .map_err(|e| Error::failed(format!("opening the store: {e}")))
        .and_then(|opened| opened)
    };
    match opened {
        Ok(pipeline) => Ok(pipeline),
        Err(e) => {
            // The commands that came to the socket meanwhile hear that nothing was done:
            // closed unanswered, a change had been "not known" (exit 5).
            control::server::refuse_waiting(listener, &format!("{e:#}")).await;
            Err(e)
        }
    }
}

/// The notifier and its tasks, which stop after the engine: the file it finishes at a
/// stop is announced too.
struct Notifications {
    notifier: crate::notify::Notifier,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Reads poll mode's pinned host key and private key as each connection will: a typo is a
/// config error (exit 2) at the start. A private key its group or others may read is warned
/// of (OpenSSH's client refuses such a key; it is used here, as before).
fn check_poll_keys(settings: &crate::ingest::poll::client::RemoteSettings) -> Result<()> {
    crate::ingest::poll::client::keys(settings).map_err(|e| Error::usage(format!("{e:#}")))?;
    let key = "source.remote.private_key";
    if let Some(warning) = crate::config::hris::shared_warning(key, &settings.private_key) {
        tracing::warn!("{warning}");
    }
    Ok(())
}

impl Notifications {
    fn start(
        cfg: &Config,
        pipeline: &crate::engine::pipeline::Pipeline<crate::store::SledStore>,
    ) -> Result<Notifications> {
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        // Its URL's file is the daemon's to read (as the HRIS secrets): one it cannot read
        // stops the start, exit 2, naming the key and the file.
        let notify = cfg
            .notify
            .resolved()
            .map_err(|e| Error::usage(format!("{e:#}")))?;
        let notifier = crate::notify::Notifier::start(
            &notify,
            crate::notify::last_applied(&pipeline.store)?,
            (
                pipeline.paths.stale_reported.clone(),
                pipeline.paths.held_announced.clone(),
            ),
            &tasks,
            &stop,
        )
        .map_err(|e| Error::failed(format!("starting notifications: {e:#}")))?;

        Ok(Notifications {
            notifier,
            stop,
            tasks,
        })
    }

    /// Waits up to [`NOTIFY_GRACE`] for what is queued or under way, then stops.
    async fn finish(self) {
        self.notifier.settle(NOTIFY_GRACE).await;
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// How long a stop waits for the notifications still queued or under way (those of the
/// file the engine finished last among them) before it abandons them (logged).
const NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What a source is started with besides the config.
struct Sources<'a> {
    engine: &'a engine::EngineHandle,
    state: &'a Mutex<EngineState>,
    tracker: &'a TaskTracker,
    shutdown: &'a CancellationToken,
    /// Where the HRIS and poll sources report failed fetches (notifications).
    on_fetch_failed: crate::ingest::OnFetchFailed,
    /// Where the poll source reports that it stopped fetching for good (notifications).
    on_fetch_stopped: crate::ingest::OnFetchFailed,
}

/// Starts the configured source (host, watch, poll or hris) on the tracker.
async fn start_source(
    cfg: &Config,
    paths: &crate::layout::Paths,
    sources: Sources<'_>,
) -> Result<()> {
    let Sources {
        engine,
        state,
        tracker,
        shutdown,
        on_fetch_failed,
        on_fetch_stopped,
    } = sources;
    match cfg.source.mode {
        Mode::Host => {
            let server = sftp::SftpServer::bind(crate::ingest::sftp_settings(cfg, paths)?).await?;
            let told = engine.clone();
            server.on_upload_failure(Box::new(move |name, why| {
                told.intake_failed(
                    name,
                    format!(
                        "the upload of inbox/{name} could not be written: {why}; it was \
                         discarded and the uploader told it failed"
                    ),
                    "Nothing was changed; the upload was discarded: the HR system must send it \
                     again once the cause is fixed",
                )
            }));
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
                (cfg.source.settle, cfg.source.startup_settle),
                cfg.source.rescan_interval,
            );
            // Before READY: a watch mode that cannot see files close stops the start.
            let watched = watch::watch(&dir).map_err(|e| {
                Error::failed(format!("source.watch_dir = {}: {e:#}", dir.display()))
            })?;
            let (engine, token) = (engine.clone(), shutdown.clone());
            tracker.spawn(watch::watch_dir(
                watched,
                dir,
                paths.clone(),
                settle,
                rescan,
                engine,
                token,
            ));
        }
        Mode::Poll => {
            let remote = cfg
                .source
                .remote
                .as_ref()
                .expect("validated: poll mode has [source.remote]");
            let settings = crate::ingest::poll::settings(remote, cfg);
            check_poll_keys(&settings)?;
            tracing::info!(host = %remote.host, port = remote.port, inbox = %remote.inbox, "polling the remote SFTP server");
            let link = Arc::new(PollLink::default());
            state.lock().expect("state lock").source = Some(link.clone());
            tracker.spawn(crate::ingest::poll::run(
                settings,
                paths.clone(),
                engine.clone(),
                link.state.clone(),
                link.kick.clone(),
                crate::ingest::poll::Hooks {
                    failing: on_fetch_failed,
                    stopped: on_fetch_stopped,
                },
                shutdown.clone(),
            ));
        }
        Mode::Hris => {
            // Its settings (secrets, CA file) are config: a mistake there is a usage error.
            let (link, task) = crate::ingest::hris::start(
                cfg,
                paths,
                engine.clone(),
                on_fetch_failed,
                shutdown.clone(),
            )
            .map_err(|e| Error::usage(format!("{e:#}")))?;
            state.lock().expect("state lock").source = Some(link);
            tracker.spawn(task);
        }
    }
    Ok(())
}

/// Binds `web.listen` and serves the web section and the HTTP API (SPEC §11) on the tracker.
async fn start_web(
    addr: std::net::SocketAddr,
    cfg: &Arc<Config>,
    engine: &engine::EngineHandle,
    state: &Arc<Mutex<EngineState>>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<()> {
    let listener = crate::web::bind(addr)
        .await
        .map_err(|e| Error::failed(format!("{e:#}")))?;
    let bound = listener.local_addr()?;
    let web = crate::web::WebState::new(cfg.clone(), engine.clone(), state.clone())
        .map_err(|e| Error::failed(format!("{e:#}")))?;
    state.lock().expect("state lock").web = Some(bound);
    tracing::info!(addr = %bound, "web section listening on http://{bound}/");
    // Read at each request; one this user cannot read refuses every token (401), so say so
    // now rather than at the SSO gateway's first sign-in.
    match (cfg.web.api_tokens_file.as_ref()).and_then(|p| crate::web::tokens::at_start(p)) {
        Some((true, problem)) => tracing::error!("{problem}"),
        Some((false, problem)) => tracing::warn!("{problem}"),
        None => {}
    }
    tracker.spawn(crate::web::serve(listener, Arc::new(web), shutdown.clone()));
    Ok(())
}

/// SIGTERM and SIGINT, caught from the first moment of `serve`: one that arrives between
/// READY and the wait (systemd stopping a unit it just started) still stops cleanly. SIGHUP,
/// which operators send meaning "reload", is caught too and only logged: left to its default
/// it ended the daemon at once, mid-file, and systemd counts that a clean exit, so
/// `Restart=on-failure` did not start it again.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return tracing::info!("SIGTERM received"),
                _ = self.int.recv() => return tracing::info!("SIGINT received"),
                _ = self.hup.recv() => tracing::warn!(
                    "SIGHUP received and ignored: autoprov does not reload its config; \
                     restart it (systemctl restart autoprov) to apply a change"
                ),
            }
        }
    }
}

/// How often a running daemon takes the automatic backup again (written only when the store
/// changed since the newest one).
const BACKUP_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
/// How soon a failed automatic backup is tried again.
const BACKUP_RETRY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Pets systemd's watchdog at half its interval while the runtime is alive and the engine
/// thread is not stuck on one job (see [`crate::engine::heartbeat`]); while it is, says so
/// once and does not pet (systemd restarts the daemon after `WatchdogSec`), and pets again
/// if the job ends first.
async fn watchdog(beat: Arc<crate::engine::heartbeat::Heartbeat>, shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    let mut told = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => match beat.stuck_at(std::time::Instant::now()) {
                Some(running) => {
                    if !std::mem::replace(&mut told, true) {
                        tracing::error!(
                            "the engine has run one job for {}s without ending it: systemd's \
                             watchdog is not petted while it runs, so the daemon is restarted \
                             (its start recovers the store and files what was committed)",
                            running.as_secs()
                        );
                    }
                }
                None => {
                    told = false;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            },
        }
    }
}
