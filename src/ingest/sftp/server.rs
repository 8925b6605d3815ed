//! The built-in SFTP server (`source.mode = "host"`): russh for SSH, russh-sftp for SFTP,
//! [`drop_fs`](super::drop_fs) for the confined filesystem.
//!
//! Security policy (SPEC §8) lives here: explicit algorithm lists per [`SshProfile`],
//! public-key and optional argon2 password authentication, at most
//! [`MAX_AUTH_ATTEMPTS`] attempts per connection, a pre-authentication deadline, a per-IP
//! connection cap, a per-source connection rate limit, a growing per-IP delay after failed
//! attempts, an idle timeout, and one session channel per connection that may only start
//! the `sftp` subsystem; the connection is closed shortly after its SFTP session ends.
//!
//! Connection throttling, in the order the accept loop applies it (a refused connection is
//! closed before the server's banner, so it costs no key exchange):
//! 1. a token bucket per source ([`CONNECTION_BURST`] connections at once, then
//!    [`CONNECTION_RATE_PER_SEC`] per second; ssh-audit's DHEat test wants fewer than 20 per
//!    second). A source is an IPv4 address or an IPv6 /64;
//! 2. at most `max_connections_per_ip` concurrent connections per IP address and
//!    [`MAX_CONNECTIONS_TOTAL`] in all.
//!
//! Both are per address: a flood from one address also locks out honest users behind that
//! same address (e.g. a shared NAT) while it lasts; users at other addresses still get in
//! (short of the total cap). Refusals are logged once and then summarised at most every
//! [`REFUSAL_LOG_INTERVAL`], so a flood cannot flood the log.
//!
//! After login, the SFTP stream runs through [`PacketGuard`] (a packet announced over 256
//! KiB ends the session instead of being misparsed) and [`sftp_pump`] (which keeps a client
//! that pipelines thousands of small requests from deadlocking russh's session loop); a
//! connection that moves no bytes for the idle timeout is closed by a watchdog even when
//! russh's own timer is stuck. Handle and upload limits live in [`drop_fs`](super::drop_fs).
//!
//! Every connection runs in its own tokio task (and its SFTP session in another), so a
//! panic or error in one connection ends only that connection.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use russh::keys::ssh_key::authorized_keys::AuthorizedKeys;
use russh::keys::{Algorithm, HashAlg, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{
    Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Preferred, Pty,
    SshId, cipher, compression, kex, mac,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use super::drop_fs::{DropFs, DropRoot, MAX_PACKET_LEN};
use super::host_keys;

/// Authentication attempts allowed per connection (the `none` probe does not count).
pub const MAX_AUTH_ATTEMPTS: usize = 3;
/// Default pre-authentication deadline.
pub const DEFAULT_AUTH_DEADLINE: Duration = Duration::from_secs(30);
/// Default idle timeout of a connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default cap on concurrent connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 8;
/// Cap on concurrent connections from all addresses together.
pub const MAX_CONNECTIONS_TOTAL: usize = 256;
/// Minimum time every rejected authentication takes (hides the cost of password checks).
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(500);
/// First back-off step after a failed attempt; doubles per recent failure from the IP.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest back-off delay.
const BACKOFF_CAP: Duration = Duration::from_secs(16);
/// An address's failures are forgotten after this long without a new one.
const BACKOFF_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered for back-off; bounded so a flood cannot grow memory.
const BACKOFF_TABLE_MAX: usize = 8192;
/// Time a session gets to say goodbye after a disconnect before its socket is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Concurrent argon2 verifications (each uses tens of MiB of memory).
const PASSWORD_CHECKS_IN_PARALLEL: usize = 2;
/// New connections one source may open per second on average (the token bucket's refill);
/// ssh-audit flags a server that accepts 20 or more per second (DHEat, CVE-2002-20001).
pub const CONNECTION_RATE_PER_SEC: u32 = 10;
/// New connections one source may open at once before the rate applies (the bucket's size).
pub const CONNECTION_BURST: u32 = 10;
/// Sources remembered by the rate limiter; bounded so a flood cannot grow memory.
const RATE_TABLE_MAX: usize = 8192;
/// Bytes buffered each way between an SFTP session and its SSH channel (see [`sftp_pump`]).
const SFTP_PIPE_BUFFER: usize = 1024 * 1024;
/// Refused connections are logged once, then counted and summarised at most this often.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Which algorithm lists the server offers (`source.ssh_profile`, SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshProfile {
    /// Post-quantum and curve25519 kex, ed25519 host key (RSA-SHA2 too with
    /// [`SftpSettings::rsa_host_key`]), AEAD and CTR ciphers, SHA-2 MACs: older HR clients
    /// (libssh2 1.10, OpenSSH 9.2, Paramiko) connect.
    Compatible,
    /// mlkem768x25519 kex, ed25519 host key, AEAD ciphers only (OpenSSH 9.9+ clients).
    Strict,
}

/// An account allowed to log in.
#[derive(Debug, Clone)]
pub struct SftpUser {
    /// Login name (compared exactly).
    pub name: String,
    /// OpenSSH one-line public keys (`ssh-ed25519 AAAA... comment`), without options.
    pub authorized_keys: Vec<String>,
    /// Optional argon2 PHC string; password login is offered only if some user has one.
    pub password_hash: Option<String>,
}

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
}

impl SftpServer {
    /// Validates the settings, prepares the drop directory, loads or creates the host keys
    /// (logging their fingerprints) and binds the listening socket.
    pub async fn bind(settings: SftpSettings) -> anyhow::Result<SftpServer> {
        let users = validate_users(&settings)?;
        if settings.max_upload_bytes == 0 {
            bail!("max_upload_bytes must be greater than 0");
        }
        if settings.max_connections_per_ip == 0 {
            bail!("max_connections_per_ip must be at least 1");
        }
        if settings.auth_deadline.is_zero() || settings.idle_timeout.is_zero() {
            bail!("auth_deadline and idle_timeout must be greater than 0");
        }
        if settings.rsa_host_key && settings.profile == SshProfile::Strict {
            bail!("the strict profile offers the ed25519 host key only: no RSA host key");
        }

        let drop_root = {
            let path = settings.drop_root.clone();
            tokio::task::spawn_blocking(move || DropRoot::prepare(&path)).await??
        };
        let keys = {
            let dir = settings.host_key_dir.clone();
            let rsa = settings.rsa_host_key;
            tokio::task::spawn_blocking(move || host_keys::load_or_create(&dir, rsa)).await??
        };

        let password_enabled = users.iter().any(|u| u.password_hash.is_some());
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        if password_enabled {
            methods.push(MethodKind::Password);
        }

        let config = russh::server::Config {
            server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-autoprov")),
            methods: methods.clone(),
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
            .with_context(|| format!("while binding the SFTP server to {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(listen = %local_addr, profile = ?settings.profile,
            rsa_host_key = settings.rsa_host_key, users = users.len(), password_auth = password_enabled,
            drop_root = %drop_root.path().display(), "SFTP server bound");

        Ok(SftpServer {
            listener,
            local_addr,
            config: Arc::new(config),
            shared: Arc::new(Shared {
                users,
                methods,
                password_enabled,
                drop_root: Arc::new(drop_root),
                max_upload_bytes: settings.max_upload_bytes,
                auth_deadline: settings.auth_deadline,
                idle_timeout: settings.idle_timeout,
                max_connections_per_ip: settings.max_connections_per_ip,
                slots: Mutex::new(SlotTable::default()),
                backoff: Mutex::new(HashMap::new()),
                password_checks: Semaphore::new(PASSWORD_CHECKS_IN_PARALLEL),
                tracker: TaskTracker::new(),
            }),
        })
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
            ..
        } = self;
        let factory_shared = shared.clone();
        let make_handler = move |conn: &ConnContext| SshHandler {
            shared: factory_shared.clone(),
            peer: conn.peer,
            span: conn.span.clone(),
            authed: conn.authed.clone(),
            kill: conn.kill.clone(),
            sftp_ended: conn.sftp_ended.clone(),
            pending_login: None,
            failures: 0,
            session_channel: None,
            session_opened: false,
            sftp_started: false,
        };
        accept_loop(listener, config, shared, shutdown, make_handler).await
    }
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

/// When a connection's socket last moved bytes either way, for the idle watchdog.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
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
        let slot = match SlotTable::acquire(&shared, peer.ip()) {
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
            authed: Arc::new(AtomicBool::new(false)),
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

/// The source a connection counts against in the rate limiter: its IPv4 address (an
/// IPv4-mapped IPv6 address counts as IPv4), or the /64 of its IPv6 address, since one
/// IPv6 host usually has a whole /64 to pick addresses from.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Per-source token buckets: each new connection takes a token; a source starts with
/// `burst` tokens and gets `rate` more per second, up to `burst`. A connection finding no
/// token is refused (and takes none), so a source that keeps hammering still gets in at
/// `rate` per second and no faster.
struct RateLimiter {
    /// Bucket size, in nano-tokens (exact integer arithmetic).
    burst: u64,
    /// Nano-tokens added per nanosecond, i.e. tokens per second.
    rate: u64,
    buckets: HashMap<IpAddr, Bucket>,
}

struct Bucket {
    nano_tokens: u64,
    last: Instant,
}

/// One token in the limiter's fixed-point unit.
const TOKEN: u64 = 1_000_000_000;

impl RateLimiter {
    fn new(burst: u32, rate_per_sec: u32) -> RateLimiter {
        RateLimiter {
            burst: u64::from(burst.max(1)) * TOKEN,
            rate: u64::from(rate_per_sec.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether a new connection from `ip` may proceed at `now`; takes a token if so.
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = rate_key(ip);
        if self.buckets.len() >= RATE_TABLE_MAX && !self.buckets.contains_key(&key) {
            // Buckets that have refilled completely carry no information: forget them.
            // If a flood from that many sources leaves none, start afresh (fail open,
            // like the back-off table) rather than refuse every new source.
            let refill = Duration::from_nanos(self.burst / self.rate);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < refill);
            if self.buckets.len() >= RATE_TABLE_MAX {
                self.buckets.clear();
            }
        }
        let (burst, rate) = (self.burst, self.rate);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            nano_tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_nanos();
        let added = u64::try_from(elapsed.saturating_mul(u128::from(rate))).unwrap_or(u64::MAX);
        bucket.nano_tokens = bucket.nano_tokens.saturating_add(added).min(burst);
        bucket.last = now;
        if bucket.nano_tokens >= TOKEN {
            bucket.nano_tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// Why a connection was closed before the banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The source's token bucket was empty.
    Rate,
    /// The address already has `max_connections_per_ip` connections.
    PerIpCap,
    /// The server already has [`MAX_CONNECTIONS_TOTAL`] connections.
    TotalCap,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Rate => "connection rate limit",
            Refusal::PerIpCap => "too many connections from this address",
            Refusal::TotalCap => "too many connections",
        }
    }
}

/// Logs refused connections without letting a flood flood the log: the first refusal
/// after a quiet spell is logged at once, later ones are counted and summarised in one
/// line per [`REFUSAL_LOG_INTERVAL`] while they go on.
#[derive(Default)]
struct RefusalLog {
    /// While set and in the future, refusals are only counted.
    quiet_until: Option<Instant>,
    rate: u64,
    per_ip: u64,
    total: u64,
    last_peer: Option<SocketAddr>,
}

impl RefusalLog {
    fn record(&mut self, refusal: Refusal, peer: SocketAddr, now: Instant) {
        if self.quiet_until.is_some_and(|t| now < t) {
            match refusal {
                Refusal::Rate => self.rate += 1,
                Refusal::PerIpCap => self.per_ip += 1,
                Refusal::TotalCap => self.total += 1,
            }
            self.last_peer = Some(peer);
            return;
        }
        self.summarise(now);
        tracing::warn!(peer = %peer, reason = refusal.as_str(),
            "SFTP connection refused; further refusals are counted and logged every {} s",
            REFUSAL_LOG_INTERVAL.as_secs());
        self.quiet_until = Some(now + REFUSAL_LOG_INTERVAL);
    }

    /// When the pending summary is due, if refusals were counted.
    fn summary_due(&self) -> Option<Instant> {
        if self.rate + self.per_ip + self.total > 0 {
            self.quiet_until
        } else {
            None
        }
    }

    /// Logs the counted refusals, if any, and starts a new interval.
    fn summarise(&mut self, now: Instant) {
        let count = self.rate + self.per_ip + self.total;
        if count == 0 {
            self.quiet_until = None;
            return;
        }
        tracing::warn!(refused = count, rate_limited = self.rate,
            over_per_ip_cap = self.per_ip, over_total_cap = self.total,
            last_peer = %self.last_peer.map(|p| p.to_string()).unwrap_or_default(),
            "SFTP connections refused since the last report");
        self.rate = 0;
        self.per_ip = 0;
        self.total = 0;
        self.last_peer = None;
        self.quiet_until = Some(now + REFUSAL_LOG_INTERVAL);
    }
}

/// Host key and user signature algorithms of both profiles (see [`preferred`]).
static KEY_ALGORITHMS: [Algorithm; 3] = [
    Algorithm::Ed25519,
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// The algorithm lists of a profile (SPEC §8). Compression is always off.
///
/// russh uses `key` twice: as the host key algorithms, of which it offers only those it
/// holds a key for (so rsa-sha2 only with an RSA host key, see [`host_keys::load_or_create`]),
/// and as the `server-sig-algs` the client may sign with, where rsa-sha2 must stay in every
/// profile so that users' RSA keys work. SHA-1 `ssh-rsa` is in neither.
pub fn preferred(profile: SshProfile) -> Preferred {
    // The ext-info and strict-kex markers are pseudo-algorithms russh must see in the kex
    // list to send server-sig-algs and to enable strict key exchange (Terrapin).
    const MARKERS: [kex::Name; 2] = [
        kex::EXTENSION_SUPPORT_AS_SERVER,
        kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
    ];
    match profile {
        SshProfile::Compatible => Preferred {
            kex: Cow::Owned(
                [
                    kex::MLKEM768X25519_SHA256,
                    kex::CURVE25519,
                    kex::CURVE25519_PRE_RFC_8731,
                ]
                .into_iter()
                .chain(MARKERS)
                .collect(),
            ),
            key: Cow::Borrowed(&KEY_ALGORITHMS),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Owned(vec![
                cipher::CHACHA20_POLY1305,
                cipher::AES_256_GCM,
                cipher::AES_128_GCM,
                cipher::AES_256_CTR,
                cipher::AES_192_CTR,
                cipher::AES_128_CTR,
            ]),
            mac: Cow::Owned(vec![
                mac::HMAC_SHA512_ETM,
                mac::HMAC_SHA256_ETM,
                mac::HMAC_SHA512,
                mac::HMAC_SHA256,
            ]),
            compression: Cow::Owned(vec![compression::NONE]),
        },
        SshProfile::Strict => Preferred {
            kex: Cow::Owned(
                [kex::MLKEM768X25519_SHA256]
                    .into_iter()
                    .chain(MARKERS)
                    .collect(),
            ),
            key: Cow::Borrowed(&KEY_ALGORITHMS),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Owned(vec![
                cipher::CHACHA20_POLY1305,
                cipher::AES_256_GCM,
                cipher::AES_128_GCM,
            ]),
            mac: Cow::Owned(vec![mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
            compression: Cow::Owned(vec![compression::NONE]),
        },
    }
}

/// A configured user with parsed keys.
#[derive(Debug)]
struct UserEntry {
    name: String,
    keys: Vec<PublicKey>,
    password_hash: Option<String>,
}

fn validate_users(settings: &SftpSettings) -> anyhow::Result<Vec<UserEntry>> {
    if settings.users.is_empty() {
        bail!("no SFTP users configured: nobody could log in");
    }
    let mut out: Vec<UserEntry> = Vec::new();
    for user in &settings.users {
        if user.name.is_empty() || user.name.chars().any(|c| c.is_control() || c == ' ') {
            bail!(
                "SFTP user name {:?} is empty or contains spaces/control characters",
                user.name
            );
        }
        if out.iter().any(|u| u.name == user.name) {
            bail!("SFTP user {:?} is configured twice", user.name);
        }
        let mut keys = Vec::new();
        for (i, line) in user.authorized_keys.iter().enumerate() {
            let key = parse_authorized_key(line).with_context(|| {
                format!("SFTP user {:?}: authorized_keys entry {}", user.name, i + 1)
            })?;
            if settings.profile == SshProfile::Strict && key.algorithm() != Algorithm::Ed25519 {
                tracing::warn!(user = %user.name, algorithm = %key.algorithm(),
                    "strict profile advertises ed25519 signatures only; clients may not offer this key");
            }
            keys.push(key);
        }
        if let Some(hash) = &user.password_hash {
            let parsed = argon2::PasswordHash::new(hash).map_err(|e| {
                anyhow!(
                    "SFTP user {:?}: password_hash is not a PHC string: {e}",
                    user.name
                )
            })?;
            argon2::Algorithm::try_from(parsed.algorithm).map_err(|_| {
                anyhow!(
                    "SFTP user {:?}: password_hash is not an argon2 hash",
                    user.name
                )
            })?;
        }
        if keys.is_empty() && user.password_hash.is_none() {
            bail!(
                "SFTP user {:?} has neither authorized_keys nor password_hash",
                user.name
            );
        }
        out.push(UserEntry {
            name: user.name.clone(),
            keys,
            password_hash: user.password_hash.clone(),
        });
    }
    Ok(out)
}

/// Parses one authorized_keys line; options (`from=`, `command=`...) are refused rather
/// than silently ignored, as are DSA and short RSA keys.
fn parse_authorized_key(line: &str) -> anyhow::Result<PublicKey> {
    let mut entries = AuthorizedKeys::new(line.trim());
    let entry = entries
        .next()
        .ok_or_else(|| anyhow!("empty key"))?
        .map_err(|e| anyhow!("not an OpenSSH public key line: {e}"))?;
    if entries.next().is_some() {
        bail!("one key per entry");
    }
    if !entry.config_opts().is_empty() {
        bail!(
            "key options ({}) are not supported",
            entry.config_opts().as_str()
        );
    }
    let key = entry.public_key().clone();
    match key.algorithm() {
        Algorithm::Dsa => bail!("DSA keys are not accepted"),
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().map(|k| k.key_size()).unwrap_or(0);
            if bits < 2048 {
                bail!("RSA key of {bits} bits; at least 2048 are required");
            }
        }
        _ => {}
    }
    Ok(key)
}

/// State shared by all connections.
struct Shared {
    users: Vec<UserEntry>,
    methods: MethodSet,
    password_enabled: bool,
    drop_root: Arc<DropRoot>,
    max_upload_bytes: u64,
    auth_deadline: Duration,
    idle_timeout: Duration,
    max_connections_per_ip: usize,
    slots: Mutex<SlotTable>,
    backoff: Mutex<HashMap<IpAddr, FailureRecord>>,
    password_checks: Semaphore,
    tracker: TaskTracker,
}

impl Shared {
    fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Records a failed attempt from `ip` and returns how long to delay the answer.
    fn record_failure(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut table = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= BACKOFF_TABLE_MAX && !table.contains_key(&ip) {
            table.retain(|_, r| now.duration_since(r.last) < BACKOFF_WINDOW);
            if table.len() >= BACKOFF_TABLE_MAX {
                table.clear();
            }
        }
        let record = table.entry(ip).or_insert(FailureRecord {
            count: 0,
            last: now,
        });
        if now.duration_since(record.last) >= BACKOFF_WINDOW {
            record.count = 0;
        }
        record.count = record.count.saturating_add(1);
        record.last = now;
        backoff_delay(record.count)
    }

    fn clear_failures(&self, ip: IpAddr) {
        let mut table = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        table.remove(&ip);
    }
}

struct FailureRecord {
    count: u32,
    last: Instant,
}

/// Delay before answering the `n`-th recent failure from one address: 250 ms doubling,
/// capped at 16 s.
fn backoff_delay(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP)
}

/// Live connection counts, per address and in total.
#[derive(Default)]
struct SlotTable {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

impl SlotTable {
    fn acquire(shared: &Arc<Shared>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let ip = ip.to_canonical();
        let mut table = shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        let n = table.per_ip.get(&ip).copied().unwrap_or(0);
        if n >= shared.max_connections_per_ip {
            return Err(Refusal::PerIpCap);
        }
        if table.total >= MAX_CONNECTIONS_TOTAL {
            return Err(Refusal::TotalCap);
        }
        table.per_ip.insert(ip, n + 1);
        table.total += 1;
        Ok(ConnSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

/// A connection's place in the [`SlotTable`], given back on drop.
struct ConnSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut table = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        table.total = table.total.saturating_sub(1);
        if let Some(n) = table.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.per_ip.remove(&self.ip);
            }
        }
    }
}

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
    let ConnContext {
        authed,
        kill,
        sftp_ended,
        activity,
        ..
    } = conn;
    // Whatever way this function returns, the socket and the SFTP stream are cut, so the
    // russh session task (which the slot no longer accounts for) cannot outlive it.
    let _kill_on_return = kill.clone().drop_guard();
    let stream = KillableStream::new(stream, kill.clone()).watched(activity.clone());
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

    let reason = loop {
        tokio::select! {
            ended = &mut session => {
                match ended {
                    Ok(()) => tracing::debug!("connection closed"),
                    Err(e) => tracing::info!(reason = %format!("{e:#}"), "connection ended"),
                }
                return;
            }
            _ = &mut deadline_timer, if deadline_armed => {
                deadline_armed = false;
                if !authed.load(Ordering::Acquire) {
                    break "authentication deadline passed";
                }
            }
            _ = sftp_ended.cancelled(), if !lingering => {
                lingering = true;
                linger_timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            _ = &mut linger_timer, if lingering => break "SFTP session ended",
            _ = &mut watchdog => {
                match activity.last().checked_add(watchdog_after) {
                    Some(quiet_until) if Instant::now() >= quiet_until => {
                        break "idle timeout (no traffic)";
                    }
                    Some(quiet_until) => watchdog.as_mut().reset(quiet_until),
                    None => watchdog.as_mut().reset(Instant::now() + Duration::from_secs(86400)),
                }
            }
            _ = shutdown.cancelled() => break "server shutting down",
        }
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

/// A successful authentication waiting for russh's `auth_succeeded` callback.
struct PendingLogin {
    user: String,
    method: &'static str,
    fingerprint: Option<String>,
}

/// The russh handler of one connection.
struct SshHandler {
    shared: Arc<Shared>,
    peer: SocketAddr,
    span: Span,
    authed: Arc<AtomicBool>,
    kill: CancellationToken,
    sftp_ended: CancellationToken,
    pending_login: Option<PendingLogin>,
    failures: usize,
    session_channel: Option<Channel<Msg>>,
    session_opened: bool,
    sftp_started: bool,
}

impl SshHandler {
    fn check_attempts(&self) -> anyhow::Result<()> {
        if self.failures >= MAX_AUTH_ATTEMPTS {
            tracing::warn!(parent: &self.span, attempts = self.failures,
                "too many authentication attempts; disconnecting");
            return Err(anyhow!("too many authentication attempts"));
        }
        Ok(())
    }

    /// Counts a failed attempt, delays the answer (per-IP back-off) and rejects.
    /// `key` is the offered key's fingerprint, for the log (never the key itself).
    async fn reject(
        &mut self,
        method: &'static str,
        user: &str,
        key: Option<String>,
    ) -> anyhow::Result<Auth> {
        self.failures += 1;
        let delay = self.shared.record_failure(self.peer.ip().to_canonical());
        tracing::info!(parent: &self.span, method, user = %printable(user),
            key = key.as_deref().unwrap_or("-"), attempt = self.failures,
            delay_ms = delay.as_millis() as u64, "authentication failed");
        tokio::time::sleep(delay).await;
        Ok(Auth::Reject {
            proceed_with_methods: Some(self.shared.methods.clone()),
            partial_success: false,
        })
    }

    /// Whether `user` may log in with `key` signed by `algorithm`.
    fn key_allowed(&self, user: &str, key: &PublicKey, algorithm: &Algorithm) -> bool {
        // SHA-1 `ssh-rsa` signatures are refused (SPEC §8 spirit; OpenSSH ≥ 8.8 agrees).
        if *algorithm == (Algorithm::Rsa { hash: None }) {
            return false;
        }
        self.shared
            .user(user)
            .is_some_and(|u| u.keys.iter().any(|k| k.key_data() == key.key_data()))
    }

    async fn refuse_channel(&self, kind: &str, reply: ChannelOpenHandle) {
        tracing::info!(parent: &self.span, kind, "channel refused");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }

    fn refuse_request(
        &self,
        kind: &str,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), anyhow::Error> {
        tracing::info!(parent: &self.span, request = kind, "channel request refused");
        session.channel_failure(channel)?;
        Ok(())
    }
}

/// Client-supplied text made safe and short for a log line.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_default).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

impl russh::server::Handler for SshHandler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        // The probe clients send to learn the methods; not an attempt.
        Ok(Auth::Reject {
            proceed_with_methods: Some(self.shared.methods.clone()),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.check_attempts()?;
        if self.key_allowed(user, offer.public_key, offer.algorithm) {
            Ok(Auth::Accept)
        } else {
            let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
            self.reject("publickey", user, Some(fingerprint)).await
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.check_attempts()?;
        if self.key_allowed(user, key.public_key, key.algorithm) {
            self.pending_login = Some(PendingLogin {
                user: user.to_string(),
                method: "publickey",
                fingerprint: Some(key.public_key.fingerprint(HashAlg::Sha256).to_string()),
            });
            Ok(Auth::Accept)
        } else {
            let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
            self.reject("publickey", user, Some(fingerprint)).await
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.check_attempts()?;
        let hash = if self.shared.password_enabled {
            self.shared.user(user).and_then(|u| u.password_hash.clone())
        } else {
            None
        };
        let Some(hash) = hash else {
            return self.reject("password", user, None).await;
        };
        let verified = {
            let _permit = self.shared.password_checks.acquire().await?;
            let password = password.to_string();
            tokio::task::spawn_blocking(move || {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(&hash).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await
            .unwrap_or(false)
        };
        if verified {
            self.pending_login = Some(PendingLogin {
                user: user.to_string(),
                method: "password",
                fingerprint: None,
            });
            Ok(Auth::Accept)
        } else {
            self.reject("password", user, None).await
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        self.check_attempts()?;
        self.reject("keyboard-interactive", user, None).await
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        _certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        self.check_attempts()?;
        self.reject("certificate", user, None).await
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.authed.store(true, Ordering::Release);
        self.shared.clear_failures(self.peer.ip().to_canonical());
        if let Some(login) = &self.pending_login {
            self.span.record("user", login.user.as_str());
            tracing::info!(parent: &self.span, user = %login.user, method = login.method,
                key = login.fingerprint.as_deref().unwrap_or("-"), "authenticated");
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.session_opened {
            self.refuse_channel("second session", reply).await;
            return Ok(());
        }
        self.session_opened = true;
        self.session_channel = Some(channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("x11", reply).await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("direct-tcpip", reply).await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("forwarded-tcpip", reply).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("direct-streamlocal", reply).await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client sends nothing more on the only channel it may use: close it.
        session.close(channel)?;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("pty-req", channel, session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("x11-req", channel, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("env", channel, session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("shell", channel, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("exec", channel, session)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("window-change", channel, session)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, request = "agent-forwarding", "channel request refused");
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, request = "tcpip-forward", "global request refused");
        Ok(false)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        _address: &str,
        _port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, request = "streamlocal-forward", "global request refused");
        Ok(false)
    }

    async fn cancel_streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ours = self.session_channel.as_ref().map(Channel::id) == Some(channel_id);
        if name != "sftp" || self.sftp_started || !ours {
            let what = format!("subsystem {}", printable(name));
            return self.refuse_request(&what, channel_id, session);
        }
        let Some(channel) = self.session_channel.take() else {
            return self.refuse_request("subsystem", channel_id, session);
        };
        self.sftp_started = true;
        session.channel_success(channel_id)?;
        let fs = DropFs::new(
            self.shared.drop_root.clone(),
            self.shared.max_upload_bytes,
            self.span.clone(),
            Some(self.shared.tracker.token()),
        );
        let channel = KillableStream::new(channel.into_stream(), self.kill.clone());
        let (sftp_side, pump_side) = tokio::io::duplex(SFTP_PIPE_BUFFER);
        self.shared
            .tracker
            .spawn(sftp_pump(channel, pump_side).instrument(self.span.clone()));
        let stream = PacketGuard::new(sftp_side, self.span.clone())
            .ending(self.sftp_ended.clone().drop_guard());
        let config = russh_sftp::server::Config {
            max_client_packet_len: MAX_PACKET_LEN,
        };
        russh_sftp::server::run_with_config(stream, fs, config).await;
        tracing::debug!(parent: &self.span, "sftp subsystem started");
        Ok(())
    }
}

/// Moves bytes between an SFTP session's channel and the pipe russh-sftp serves on.
///
/// russh hands each incoming channel message to the channel from inside its session loop
/// and waits while the channel's queue (100 messages) is full; the SFTP answers travel
/// through that same loop. Served directly on the channel, a session whose client packs
/// many small requests into each SSH packet deadlocks: the loop waits for the SFTP task to
/// take a message, the SFTP task waits for the loop to take an answer. This pump keeps
/// taking requests while answers queue in the pipe (up to [`SFTP_PIPE_BUFFER`] each way),
/// which breaks the cycle for any client that reads its answers. One that does not is
/// closed by the idle watchdog of [`serve_connection`].
///
/// When the client ends its side, the SFTP session gets EOF and its last answers are still
/// delivered; when the SFTP session ends, the channel is shut and closed at once.
async fn sftp_pump<C>(channel: C, sftp: tokio::io::DuplexStream)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let (channel_rx, mut channel_tx) = tokio::io::split(channel);
    let (mut sftp_rx, mut sftp_tx) = tokio::io::split(sftp);
    let requests = async {
        let mut channel_rx = tokio::io::BufReader::with_capacity(64 * 1024, channel_rx);
        let _ = tokio::io::copy_buf(&mut channel_rx, &mut sftp_tx).await;
        let _ = sftp_tx.shutdown().await;
    };
    let answers = async {
        let _ = tokio::io::copy(&mut sftp_rx, &mut channel_tx).await;
        let _ = channel_tx.shutdown().await;
    };
    tokio::pin!(requests, answers);
    tokio::select! {
        _ = &mut answers => {}
        _ = &mut requests => answers.await,
    }
}

/// A socket that reads EOF and fails writes once `kill` is cancelled, so that a session
/// whose peer stopped reading still ends at shutdown.
struct KillableStream<S> {
    inner: S,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    dead: bool,
    /// Touched whenever bytes move.
    activity: Option<Arc<Activity>>,
}

impl<S> KillableStream<S> {
    fn new(inner: S, kill: CancellationToken) -> Self {
        KillableStream {
            inner,
            killed: Box::pin(kill.cancelled_owned()),
            dead: false,
            activity: None,
        }
    }

    /// Records in `activity` when bytes move.
    fn watched(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn moved(&self, n: usize) {
        if n > 0
            && let Some(a) = &self.activity
        {
            a.touch();
        }
    }

    fn is_dead(&mut self, cx: &mut TaskContext<'_>) -> bool {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for KillableStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.moved(buf.filled().len() - before);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for KillableStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.moved(n);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Watches SFTP packet framing on the way in and ends the session (EOF) at the first
/// packet longer than [`MAX_PACKET_LEN`] or at any read or write error.
///
/// russh-sftp answers an oversized packet with BadMessage without reading its body and
/// then parses the body as the next packets; it also keeps looping on I/O errors. Ending
/// the stream makes it stop instead.
struct PacketGuard<S> {
    inner: S,
    header: [u8; 4],
    header_len: usize,
    body_left: u64,
    broken: bool,
    span: Span,
    /// Dropped with the stream, i.e. when russh-sftp's session loop has ended.
    _on_end: Option<DropGuard>,
}

impl<S> PacketGuard<S> {
    fn new(inner: S, span: Span) -> Self {
        PacketGuard {
            inner,
            header: [0; 4],
            header_len: 0,
            body_left: 0,
            broken: false,
            span,
            _on_end: None,
        }
    }

    /// Cancels `guard`'s token when the stream is dropped (the SFTP session has ended).
    fn ending(mut self, guard: DropGuard) -> Self {
        self._on_end = Some(guard);
        self
    }

    /// Follows packet boundaries through `bytes`; false if a packet is too long.
    fn track(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(bytes.len() as u64);
                self.body_left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len == 4 {
                self.header_len = 0;
                let len = u32::from_be_bytes(self.header);
                if len > MAX_PACKET_LEN {
                    tracing::warn!(parent: &self.span, length = len,
                        "SFTP packet over the limit; ending the session");
                    return false;
                }
                self.body_left = u64::from(len);
            }
        }
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PacketGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.broken {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                tracing::debug!(parent: &self.span, error = %e, "SFTP stream read failed");
                self.broken = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[before..].to_vec();
                if !self.track(&new) {
                    self.broken = true;
                    buf.set_filled(before);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PacketGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(_)) = r {
            self.broken = true;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Err(_)) = r {
            self.broken = true;
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_delay(1), Duration::from_millis(250));
        assert_eq!(backoff_delay(2), Duration::from_millis(500));
        assert_eq!(backoff_delay(3), Duration::from_secs(1));
        assert_eq!(backoff_delay(7), Duration::from_secs(16));
        assert_eq!(backoff_delay(1000), BACKOFF_CAP);
    }

    #[test]
    fn profiles_offer_no_weak_algorithms() {
        for profile in [SshProfile::Compatible, SshProfile::Strict] {
            let p = preferred(profile);
            let kex: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
            assert!(
                kex.iter()
                    .all(|k| !k.contains("nistp") && !k.contains("sha1")),
                "{kex:?}"
            );
            assert!(
                p.key
                    .iter()
                    .all(|a| !matches!(a, Algorithm::Ecdsa { .. } | Algorithm::Dsa))
            );
            assert!(!p.key.contains(&Algorithm::Rsa { hash: None }));
            assert_eq!(p.compression.len(), 1);
            assert!(kex.contains(&"kex-strict-s-v00@openssh.com"));
        }
        let strict = preferred(SshProfile::Strict);
        let kex: Vec<&str> = strict.kex.iter().map(|k| k.as_ref()).collect();
        assert_eq!(kex[0], "mlkem768x25519-sha256");
        assert!(!kex.iter().any(|k| k.starts_with("curve25519")));
        // Host keys offered follow the keys held; rsa-sha2 stays for users' RSA keys.
        assert_eq!(strict.key.as_ref(), &KEY_ALGORITHMS);
        assert!(strict.mac.iter().all(|m| m.as_ref().contains("-etm@")));
        assert!(strict.cipher.iter().all(|c| {
            let c: &str = c.as_ref();
            c.contains("gcm") || c.contains("chacha20")
        }));
    }

    #[test]
    fn authorized_key_lines() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0Yo3ioyB7aul3JMKojvAlVpln86K++XvDLVTaQ8c/t me@host";
        assert!(parse_authorized_key(ed).is_ok());
        assert!(parse_authorized_key(&format!("  {ed}  ")).is_ok());
        let with_opts = format!("from=\"10.0.0.1\" {ed}");
        assert!(parse_authorized_key(&with_opts).is_err());
        assert!(parse_authorized_key("ssh-ed25519 notbase64").is_err());
        assert!(parse_authorized_key("").is_err());
    }

    #[test]
    fn packet_guard_follows_framing_across_reads() {
        let mut g = PacketGuard::new((), Span::none());
        // A 5-byte packet split over reads, then a header announcing an oversized packet.
        assert!(g.track(&[0, 0]));
        assert!(g.track(&[0, 5, 1, 2]));
        assert!(g.track(&[3, 4, 5, 0, 0, 0, 1, 9]));
        assert!(g.body_left == 0 && g.header_len == 0);
        assert!(!g.track(&(MAX_PACKET_LEN + 1).to_be_bytes()));
    }

    fn test_shared(root: &std::path::Path, max_per_ip: usize) -> Arc<Shared> {
        Arc::new(Shared {
            users: Vec::new(),
            methods: MethodSet::empty(),
            password_enabled: false,
            drop_root: Arc::new(DropRoot::prepare(root).unwrap()),
            max_upload_bytes: 1,
            auth_deadline: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: max_per_ip,
            slots: Mutex::new(SlotTable::default()),
            backoff: Mutex::new(HashMap::new()),
            password_checks: Semaphore::new(1),
            tracker: TaskTracker::new(),
        })
    }

    #[test]
    fn per_ip_slots_are_capped_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_shared(dir.path(), 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = SlotTable::acquire(&shared, a).ok().unwrap();
        let _s2 = SlotTable::acquire(&shared, mapped).ok().unwrap();
        assert_eq!(
            SlotTable::acquire(&shared, a).err(),
            Some(Refusal::PerIpCap)
        );
        assert!(SlotTable::acquire(&shared, b).is_ok());
        drop(s1);
        assert!(SlotTable::acquire(&shared, a).is_ok());
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_the_refill_rate() {
        let mut limiter = RateLimiter::new(10, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..50).filter(|_| limiter.allow(a, t0)).count();
        assert_eq!(allowed, 10, "burst");
        // Another address has its own bucket.
        assert!(limiter.allow(b, t0));
        // 10 per second afterwards: 100 attempts spread over one second get 10 through.
        let allowed = (1..=100)
            .filter(|i| limiter.allow(a, t0 + Duration::from_millis(10 * i)))
            .count();
        assert_eq!(allowed, 10, "refill");
        // After a quiet second the full burst is back, and never more.
        let t2 = t0 + Duration::from_secs(5);
        let allowed = (0..50).filter(|_| limiter.allow(a, t2)).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn rate_limiter_keys_ipv6_by_64_and_mapped_ipv4_as_ipv4() {
        let mut limiter = RateLimiter::new(2, 1);
        let t = Instant::now();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.allow(first, t));
        assert!(limiter.allow(same_64, t));
        assert!(!limiter.allow(first, t));
        assert!(limiter.allow(other_64, t));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(limiter.allow(v4, t));
        assert!(limiter.allow(mapped, t));
        assert!(!limiter.allow(v4, t));
    }

    #[test]
    fn rate_limiter_table_is_bounded() {
        let mut limiter = RateLimiter::new(10, 10);
        let t = Instant::now();
        for i in 0..(RATE_TABLE_MAX as u32 * 2) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(limiter.allow(ip, t));
            assert!(limiter.buckets.len() <= RATE_TABLE_MAX);
        }
        // Refilled buckets are forgotten first.
        let later = t + Duration::from_secs(2);
        assert!(limiter.allow("192.0.2.1".parse().unwrap(), later));
        assert_eq!(limiter.buckets.len(), 1);
    }

    #[test]
    fn refusal_log_counts_during_the_interval() {
        let mut log = RefusalLog::default();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let t = Instant::now();
        log.record(Refusal::Rate, peer, t); // logged at once
        assert_eq!(log.summary_due(), None);
        for i in 0..500 {
            let r = if i % 2 == 0 {
                Refusal::Rate
            } else {
                Refusal::PerIpCap
            };
            log.record(r, peer, t + Duration::from_millis(i));
        }
        assert_eq!((log.rate, log.per_ip), (250, 250));
        assert_eq!(log.summary_due(), Some(t + REFUSAL_LOG_INTERVAL));
        log.summarise(t + REFUSAL_LOG_INTERVAL);
        assert_eq!(log.summary_due(), None);
        assert_eq!(log.rate + log.per_ip + log.total, 0);
        // A quiet interval later, the next refusal is logged at once again.
        log.summarise(t + REFUSAL_LOG_INTERVAL * 2);
        assert_eq!(log.quiet_until, None);
    }

    /// A handler that panics as soon as a client asks for the authentication methods.
    struct PanickingHandler;

    impl russh::server::Handler for PanickingHandler {
        type Error = anyhow::Error;

        async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
            panic!("deliberate panic in a connection handler");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_connection_does_not_stop_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_shared(dir.path(), 8);
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
                .unwrap();
            assert!(!out.status.success());
        }
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

    #[tokio::test]
    async fn an_oversized_sftp_packet_ends_the_session() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(DropRoot::prepare(dir.path()).unwrap());
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let fs = DropFs::new(root, 1000, Span::none(), None);
        let config = russh_sftp::server::Config {
            max_client_packet_len: MAX_PACKET_LEN,
        };
        russh_sftp::server::run_with_config(PacketGuard::new(server, Span::none()), fs, config)
            .await;

        // SSH_FXP_INIT version 3 is answered with SSH_FXP_VERSION.
        client
            .write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3])
            .await
            .unwrap();
        let len = client.read_u32().await.unwrap();
        let mut body = vec![0; len as usize];
        client.read_exact(&mut body).await.unwrap();
        assert_eq!(body[0], 2);

        // A packet announced one byte over the limit: the server hangs up instead of
        // answering BadMessage and then parsing the body as further packets.
        client
            .write_all(&(MAX_PACKET_LEN + 1).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[3u8; 64]).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
            .await
            .expect("session still open");
        assert!(read.is_ok());
        assert!(rest.is_empty(), "got {} bytes of reply", rest.len());
    }
}
