//! The SFTP server: binding (settings, drop root, host keys, russh config), the accept
//! loop with its throttling, and each connection's task with its deadlines.
//!
//! Every connection runs in its own tokio task (and its SFTP session in another), so a
//! panic or error in one connection ends only that connection.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::api::error::{Context, Error};
use russh::{Disconnect, SshId};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use super::auth::{AUTH_REJECTION_TIME, ConnAuth, Logins, MAX_AUTH_ATTEMPTS, SftpUser};
use super::drop_fs::DropRoot;
use super::host_keys;
use super::profile::preferred;
use super::session::{SftpContext, SshHandler};
use super::stream::{Activity, KillableStream};
use super::throttle::{
    CONNECTION_BURST, CONNECTION_RATE_PER_SEC, ConnSlot, ConnSlots, RateLimiter, Refusal,
    RefusalLog,
};
use crate::config::SshProfile;

/// Default pre-authentication deadline.
pub const DEFAULT_AUTH_DEADLINE: Duration = Duration::from_secs(30);
/// Default idle timeout of a connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default cap on concurrent connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 8;
/// Time a session gets to say goodbye after a disconnect before its socket is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Everything the server needs; the daemon builds it from its config.
#[derive(Debug, Clone)]
pub struct SftpSettings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Algorithm profile.
    pub profile: SshProfile,
    /// Also hold and offer an RSA host key (rsa-sha2-512/256, ≥ 3072 bits) for clients that
    /// cannot verify ed25519; `compatible` only (`source.rsa_host_key`, SPEC §8).
    pub rsa_host_key: bool,
    /// Accounts allowed to log in; at least one.
    pub users: Vec<SftpUser>,
    /// Uploads larger than this are cut off and discarded.
    pub max_upload_bytes: u64,
    /// Directory of the host keys (created on first start, keys mode 0600).
    pub host_key_dir: PathBuf,
    /// The drop directory with inbox/ processed/ rejected/ held/ (missing ones are created).
    pub drop_root: PathBuf,
    /// Time a client has from connecting to authenticating.
    pub auth_deadline: Duration,
    /// A connection without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent connections allowed from one IP address.
    pub max_connections_per_ip: usize,
}

/// A bound, ready-to-run SFTP server.
pub struct SftpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    /// The login policy, for each connection's handler.
    logins: Arc<Logins>,
    /// The drop root and upload limit, for each SFTP session.
    sftp: Arc<SftpContext>,
}

impl SftpServer {
    /// Validates the settings, prepares the drop directory, loads or creates the host keys
    /// (logging their fingerprints) and binds the listening socket.
    /// Config mistakes are usage errors (exit 2); a port or folder that cannot be used is a
    /// failure (exit 5).
    pub async fn bind(settings: SftpSettings) -> crate::api::Result<SftpServer> {
        let logins = Logins::new(&settings.users).map_err(|e| Error::usage(format!("{e:#}")))?;
        if settings.max_upload_bytes == 0 {
            return Err(Error::usage("max_upload_bytes must be greater than 0"));
        }
        if settings.max_connections_per_ip == 0 {
            return Err(Error::usage("max_connections_per_ip must be at least 1"));
        }
        if settings.auth_deadline.is_zero() || settings.idle_timeout.is_zero() {
            return Err(Error::usage(
                "auth_deadline and idle_timeout must be greater than 0",
            ));
        }
        if settings.rsa_host_key && settings.profile == SshProfile::Strict {
            return Err(Error::usage(
                "the strict profile offers the ed25519 host key only: no RSA host key",
            ));
        }

        let drop_root = {
            let path = settings.drop_root.clone();
            tokio::task::spawn_blocking(move || DropRoot::prepare(&path))
                .await
                .map_err(|e| Error::failed(e.to_string()))?
                .map_err(|e| Error::failed(format!("preparing the drop folders: {e:#}")))?
        };
        let keys = {
            let dir = settings.host_key_dir.clone();
            let rsa = settings.rsa_host_key;
            tokio::task::spawn_blocking(move || host_keys::load_or_create(&dir, rsa))
                .await
                .map_err(|e| Error::failed(e.to_string()))?
                .map_err(|e| Error::failed(format!("host keys: {e:#}")))?
        };

        let config = russh::server::Config {
            server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-autoprov")),
            methods: logins.methods().clone(),
            auth_rejection_time: AUTH_REJECTION_TIME,
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys,
            // russh counts the client's initial `none` probe as a rejection; our own
            // counter (which does not) enforces MAX_AUTH_ATTEMPTS, russh's is a backstop.
            max_auth_attempts: MAX_AUTH_ATTEMPTS + 1,
            inactivity_timeout: Some(settings.idle_timeout),
            keepalive_interval: None,
            nodelay: true,
            preferred: preferred(settings.profile),
            ..Default::default()
        };

        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("while binding the SFTP server to {} (source.listen): is another program using that port?", settings.listen))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(listen = %local_addr, profile = ?settings.profile,
            rsa_host_key = settings.rsa_host_key, users = logins.user_count(),
            password_auth = logins.password_enabled(),
            drop_root = %drop_root.path().display(), "SFTP server bound");

        let tracker = TaskTracker::new();
        Ok(SftpServer {
            listener,
            local_addr,
            config: Arc::new(config),
            shared: Arc::new(Shared {
                auth_deadline: settings.auth_deadline,
                idle_timeout: settings.idle_timeout,
                slots: Arc::new(ConnSlots::new(settings.max_connections_per_ip)),
                tracker: tracker.clone(),
            }),
            logins: Arc::new(logins),
            sftp: Arc::new(SftpContext {
                drop_root: Arc::new(drop_root),
                max_upload_bytes: settings.max_upload_bytes,
                tracker,
            }),
        })
    }

    /// Whom to tell of an upload that could not be written to disk (a full disk): the
    /// daemon shows it in `status` and `/healthz`, as watch mode does of a file it cannot
    /// take in. The uploader is told it failed; the log names the cause.
    pub fn on_upload_failure(&self, hook: super::drop_fs::UploadFailed) {
        self.sftp.drop_root.on_upload_failure(hook);
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, disconnects every
    /// session (unfinished uploads are discarded), waits for them and returns `Ok`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let SftpServer {
            listener,
            config,
            shared,
            logins,
            sftp,
            ..
        } = self;
        let make_handler = move |conn: &ConnContext| {
            let auth = ConnAuth::new(
                logins.clone(),
                conn.peer,
                conn.span.clone(),
                conn.authed.clone(),
            );
            SshHandler::new(
                auth,
                sftp.clone(),
                conn.span.clone(),
                conn.kill.clone(),
                conn.sftp_ended.clone(),
            )
        };
        accept_loop(listener, config, shared, shutdown, make_handler).await
    }
}

/// What the accept loop needs of the server: the connection deadlines, the per-IP and
/// total caps, and the tracker its tasks run in.
struct Shared {
    auth_deadline: Duration,
    idle_timeout: Duration,
    slots: Arc<ConnSlots>,
    tracker: TaskTracker,
}

/// What the accept loop hands to one connection's handler and task.
struct ConnContext {
    peer: SocketAddr,
    span: Span,
    /// Set once the client has authenticated.
    authed: Arc<AtomicBool>,
    /// Cancelled to cut the connection's socket and its SFTP stream (EOF on read, error on
    /// write), so that a session stuck on a peer that does not read still ends.
    kill: CancellationToken,
    /// Cancelled when the connection's SFTP session has ended.
    sftp_ended: CancellationToken,
    /// When bytes last moved on the socket.
    activity: Arc<Activity>,
}

/// Accepts connections until `shutdown`, each in its own task, then closes them all.
async fn accept_loop<H, F>(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    make_handler: F,
) -> anyhow::Result<()>
where
    H: russh::server::Handler + Send + 'static,
    H::Error: std::fmt::Display,
    F: Fn(&ConnContext) -> H,
{
    let mut limiter = RateLimiter::new(CONNECTION_BURST, CONNECTION_RATE_PER_SEC);
    let mut refusals = RefusalLog::default();
    loop {
        let summary_due = refusals.summary_due();
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(summary_due.unwrap_or_else(Instant::now)),
                if summary_due.is_some() => {
                refusals.summarise(Instant::now());
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE or a connection reset before accept: transient.
                    tracing::warn!(error = %e, "SFTP accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let now = Instant::now();
        if !limiter.allow(peer.ip(), now) {
            refusals.record(Refusal::Rate, peer, now);
            drop(stream);
            continue;
        }
        let authed = Arc::new(AtomicBool::new(false));
        let slot = match shared.slots.acquire(peer.ip(), &authed) {
            Ok(slot) => slot,
            Err(refusal) => {
                refusals.record(refusal, peer, now);
                drop(stream);
                continue;
            }
        };
        let span = tracing::info_span!("sftp_conn", peer = %peer, user = tracing::field::Empty);
        let conn = ConnContext {
            peer,
            span: span.clone(),
            authed,
            kill: CancellationToken::new(),
            sftp_ended: CancellationToken::new(),
            activity: Arc::new(Activity::new()),
        };
        let handler = make_handler(&conn);
        let task = serve_connection(
            config.clone(),
            stream,
            handler,
            conn,
            (shared.auth_deadline, shared.idle_timeout),
            slot,
            shutdown.clone(),
        );
        shared.tracker.spawn(task.instrument(span));
    }

    drop(listener);
    refusals.summarise(Instant::now());
    shared.tracker.close();
    tracing::info!(
        sessions = shared.tracker.len(),
        "SFTP server stopping: closing sessions"
    );
    if tokio::time::timeout(CLOSE_GRACE * 3, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some SFTP sessions did not end in time");
    }
    tracing::info!("SFTP server stopped");
    Ok(())
}

/// One connection, from the SSH handshake to the close: the authentication deadline, the
/// linger after the SFTP session, the idle watchdog and shutdown end it.
async fn serve_connection<H>(
    config: Arc<russh::server::Config>,
    stream: TcpStream,
    handler: H,
    conn: ConnContext,
    (auth_deadline, idle_timeout): (Duration, Duration),
    _slot: ConnSlot,
    shutdown: CancellationToken,
) where
    H: russh::server::Handler + Send + 'static,
    H::Error: std::fmt::Display,
{
    // russh applies Config::nodelay only in its own accept loop.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    // Whatever way this function returns, the socket and the SFTP stream are cut, so the
    // russh session task (which the slot no longer accounts for) cannot outlive it.
    let kill = conn.kill.clone();
    let _kill_on_return = kill.clone().drop_guard();
    let stream = KillableStream::new(stream, kill.clone()).watched(conn.activity.clone());
    let deadline = Instant::now() + auth_deadline;
    tracing::debug!("connection accepted");

    let session = tokio::select! {
        started = tokio::time::timeout_at(deadline, russh::server::run_stream(config, stream, handler)) => {
            match started {
                Ok(Ok(session)) => session,
                Ok(Err(e)) => {
                    tracing::debug!(error = %format!("{e:#}"), "SSH handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!("closing connection: authentication deadline passed");
                    return;
                }
            }
        }
        _ = shutdown.cancelled() => return,
    };
    let handle = session.handle();
    tokio::pin!(session);
    let Some(reason) = supervise(session.as_mut(), &conn, deadline, idle_timeout, &shutdown).await
    else {
        return;
    };
    tracing::info!(reason, "closing connection");
    let disconnect = handle.disconnect(Disconnect::ByApplication, reason.to_string(), "en".into());
    let _ = tokio::time::timeout(CLOSE_GRACE, disconnect).await;
    if tokio::time::timeout(CLOSE_GRACE, &mut session)
        .await
        .is_err()
    {
        // The peer does not read; cut the socket so the session task ends.
        kill.cancel();
        let _ = tokio::time::timeout(CLOSE_GRACE, &mut session).await;
    }
}

/// Waits for the running session to end by itself (`None`), or for a reason to close it:
/// no login by `deadline`, [`CLOSE_GRACE`] after the SFTP session ended, no traffic for
/// the idle timeout, or shutdown.
async fn supervise<F, E>(
    mut session: Pin<&mut F>,
    conn: &ConnContext,
    deadline: Instant,
    idle_timeout: Duration,
    shutdown: &CancellationToken,
) -> Option<&'static str>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let deadline_timer = tokio::time::sleep_until(deadline);
    tokio::pin!(deadline_timer);
    let mut deadline_armed = true;
    // Once the SFTP session has ended, the client has CLOSE_GRACE to hang up itself.
    let linger_timer = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger_timer);
    let mut lingering = false;
    // russh's own inactivity timer cannot fire while its session loop is stuck handing
    // data to a channel nobody reads (a client that floods requests and never reads the
    // answers): this watchdog, on the socket's traffic, closes such a connection too.
    let watchdog_after = idle_timeout.saturating_add(CLOSE_GRACE);
    let watchdog = tokio::time::sleep(watchdog_after);
    tokio::pin!(watchdog);

    loop {
        tokio::select! {
            ended = session.as_mut() => {
                match ended {
                    Ok(()) => tracing::debug!("connection closed"),
                    Err(e) => tracing::info!(reason = %format!("{e:#}"), "connection ended"),
                }
                return None;
            }
            _ = &mut deadline_timer, if deadline_armed => {
                deadline_armed = false;
                if !conn.authed.load(Ordering::Acquire) {
                    return Some("authentication deadline passed");
                }
            }
            _ = conn.sftp_ended.cancelled(), if !lingering => {
                lingering = true;
                linger_timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            _ = &mut linger_timer, if lingering => return Some("SFTP session ended"),
            _ = &mut watchdog => {
                match conn.activity.last().checked_add(watchdog_after) {
                    Some(quiet_until) if Instant::now() >= quiet_until => {
                        return Some("idle timeout (no traffic)");
                    }
                    Some(quiet_until) => watchdog.as_mut().reset(quiet_until),
                    None => watchdog.as_mut().reset(Instant::now() + Duration::from_secs(86400)),
                }
            }
            _ = shutdown.cancelled() => return Some("server shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::server::Auth;

    fn test_shared(max_per_ip: usize) -> Arc<Shared> {
        Arc::new(Shared {
            auth_deadline: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            slots: Arc::new(ConnSlots::new(max_per_ip)),
            tracker: TaskTracker::new(),
        })
    }

    /// How many times [`PanickingHandler`] panicked.
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A handler that panics as soon as a client asks for the authentication methods.
    struct PanickingHandler;

    impl russh::server::Handler for PanickingHandler {
        type Error = anyhow::Error;

        async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            panic!("deliberate panic in a connection handler");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_connection_does_not_stop_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_shared(8);
        let keys = host_keys::load_or_create(&dir.path().join("keys"), false).unwrap();
        let config = Arc::new(russh::server::Config {
            server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-autoprov")),
            keys,
            preferred: preferred(SshProfile::Compatible),
            ..Default::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(accept_loop(
            listener,
            config,
            shared,
            shutdown.clone(),
            |_: &ConnContext| PanickingHandler,
        ));
        for _ in 0..2 {
            let out = tokio::process::Command::new("ssh")
                .args(["-p", &port, "-F", "/dev/null", "-o", "BatchMode=yes"])
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ])
                .args(["u@127.0.0.1", "true"])
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("running ssh (the openssh-client package)");
            assert!(!out.status.success());
        }
        // Both connections reached the handler and panicked in it (an `ssh` refused for
        // any other reason fails too).
        assert_eq!(PANICS.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Still accepting and speaking SSH.
        let mut conn = TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let mut banner = [0u8; 16];
        tokio::io::AsyncReadExt::read_exact(&mut conn, &mut banner)
            .await
            .unwrap();
        assert_eq!(&banner, b"SSH-2.0-autoprov");
        assert!(!server.is_finished());
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
