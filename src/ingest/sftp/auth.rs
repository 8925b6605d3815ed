//! Who may log in, and how hard guessing is: configured users with parsed keys, public-key
//! and optional argon2 password authentication (at most [`PASSWORD_CHECKS_IN_PARALLEL`]
//! password checks at once), at most [`MAX_AUTH_ATTEMPTS`] attempts per connection, and a
//! growing per-IP delay after failed attempts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use russh::MethodKind;
use russh::MethodSet;
use russh::keys::ssh_key::authorized_keys::AuthorizedKeys;
use russh::keys::{Algorithm, HashAlg, PublicKey};
use russh::server::{Auth, PublicKeyOffer, VerifiedPublicKey};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Span;

/// Authentication attempts allowed per connection (the `none` probe does not count).
pub const MAX_AUTH_ATTEMPTS: usize = 3;
/// Minimum time every rejected authentication takes (hides the cost of password checks).
pub(super) const AUTH_REJECTION_TIME: Duration = Duration::from_millis(500);
/// First back-off step after a failed attempt; doubles per recent failure from the IP.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest back-off delay.
const BACKOFF_CAP: Duration = Duration::from_secs(16);
/// An address's failures are forgotten after this long without a new one.
const BACKOFF_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered for back-off; bounded so a flood cannot grow memory.
const BACKOFF_TABLE_MAX: usize = 8192;
/// Concurrent argon2 verifications (each uses tens of MiB of memory).
const PASSWORD_CHECKS_IN_PARALLEL: usize = 2;

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

/// A configured user with parsed keys.
#[derive(Debug)]
struct UserEntry {
    name: String,
    keys: Vec<PublicKey>,
    password_hash: Option<String>,
}

/// The login policy all connections share: the users, the methods offered, the per-IP
/// failure record behind the back-off, and the limit on parallel password checks.
pub(super) struct Logins {
    users: Vec<UserEntry>,
    methods: MethodSet,
    password_enabled: bool,
    /// Recent failures by source (see [`Logins::record_failure`]).
    backoff: Mutex<HashMap<IpAddr, FailureRecord>>,
    password_checks: Semaphore,
}

impl Logins {
    /// Validates the configured users (names, keys, password hashes).
    pub(super) fn new(users: &[SftpUser]) -> anyhow::Result<Logins> {
        let users = validate_users(users)?;
        let password_enabled = users.iter().any(|u| u.password_hash.is_some());
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        if password_enabled {
            methods.push(MethodKind::Password);
        }
        Ok(Logins {
            users,
            methods,
            password_enabled,
            backoff: Mutex::new(HashMap::new()),
            password_checks: Semaphore::new(PASSWORD_CHECKS_IN_PARALLEL),
        })
    }

    /// The methods offered to clients.
    pub(super) fn methods(&self) -> &MethodSet {
        &self.methods
    }

    /// Whether some user may log in with a password.
    pub(super) fn password_enabled(&self) -> bool {
        self.password_enabled
    }

    /// How many users are configured.
    pub(super) fn user_count(&self) -> usize {
        self.users.len()
    }

    fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Whether `user` may log in with `key` signed by `algorithm`.
    fn key_allowed(&self, user: &str, key: &PublicKey, algorithm: &Algorithm) -> bool {
        // SHA-1 `ssh-rsa` signatures are refused (SPEC §8 spirit; OpenSSH ≥ 8.8 agrees).
        if *algorithm == (Algorithm::Rsa { hash: None }) {
            return false;
        }
        self.user(user)
            .is_some_and(|u| u.keys.iter().any(|k| k.key_data() == key.key_data()))
    }

    /// The password hash `user` may log in with, if password login is on.
    fn password_hash(&self, user: &str) -> Option<String> {
        if self.password_enabled {
            self.user(user).and_then(|u| u.password_hash.clone())
        } else {
            None
        }
    }

    /// A configured password hash, for the time a wrong password costs
    /// ([`ConnAuth::password`]); `None` when no user has one.
    fn any_password_hash(&self) -> Option<String> {
        self.users.iter().find_map(|u| u.password_hash.clone())
    }

    /// Checks `password` against `hash` off the async workers, a few at a time.
    async fn verify_password(&self, hash: String, password: &str) -> anyhow::Result<bool> {
        let _permit = self.password_checks.acquire().await?;
        let password = password.to_string();
        Ok(tokio::task::spawn_blocking(move || {
            use argon2::PasswordVerifier;
            argon2::PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false))
    }

    /// Records a failed attempt from `ip` as `user` and returns how long to delay the
    /// answer: one count a source, whatever the name tried (a count of its own for each
    /// name had told, by its delay, which names are users').
    fn record_failure(&self, ip: IpAddr, user: &str) -> Duration {
        let now = Instant::now();
        let source = crate::util::source_key(ip);
        let mut table = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= BACKOFF_TABLE_MAX && !table.contains_key(&source) {
            table.retain(|_, r| now.duration_since(r.last) < BACKOFF_WINDOW);
            if table.len() >= BACKOFF_TABLE_MAX {
                table.clear();
            }
        }
        let record = table.entry(source).or_insert(FailureRecord {
            count: 0,
            last: now,
            by_user: HashMap::new(),
        });
        if now.duration_since(record.last) >= BACKOFF_WINDOW {
            record.count = 0;
            record.by_user.clear();
        }
        record.count = record.count.saturating_add(1);
        record.last = now;
        // The configured users' own shares (a handful): what their login takes back.
        if self.user(user).is_some() {
            *record.by_user.entry(user.to_string()).or_default() += 1;
        }
        backoff_delay(record.count)
    }

    /// Takes back the failures of `user` from `ip`'s source (it logged in): a login clears
    /// its own user's, not another's (one valid key had reset the delay of guesses at
    /// another user's password).
    fn clear_failures(&self, ip: IpAddr, user: &str) {
        let source = crate::util::source_key(ip);
        let mut table = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(record) = table.get_mut(&source) {
            let own = record.by_user.remove(user).unwrap_or(0);
            record.count = record.count.saturating_sub(own);
            if record.count == 0 {
                table.remove(&source);
            }
        }
    }
}

struct FailureRecord {
    count: u32,
    last: Instant,
    /// Of `count`, the failures of each configured user tried.
    by_user: HashMap<String, u32>,
}

/// Delay before answering the `n`-th recent failure from one address: 250 ms doubling,
/// capped at 16 s.
fn backoff_delay(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP)
}

/// Checks the configured users as the server does at its start (names, keys, password
/// hashes), without starting it.
pub fn check_users(users: &[SftpUser]) -> anyhow::Result<()> {
    validate_users(users).map(drop)
}

/// The most memory a password hash may ask for a check, in KiB (64 MiB).
const MAX_HASH_KIB: u32 = 64 << 10;
/// The most work a password hash may ask for a check: its memory in KiB times its passes
/// (64 MiB four times).
const MAX_HASH_WORK: u64 = 4 * (MAX_HASH_KIB as u64);

fn validate_users(users: &[SftpUser]) -> anyhow::Result<Vec<UserEntry>> {
    if users.is_empty() {
        bail!("no SFTP users configured: nobody could log in");
    }
    let mut out: Vec<UserEntry> = Vec::new();
    for user in users {
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
            // Both profiles list ed25519 and rsa-sha2 in server-sig-algs (the strict one's
            // warning about every RSA key had said it would not work, and it does).
            if !matches!(key.algorithm(), Algorithm::Ed25519 | Algorithm::Rsa { .. }) {
                tracing::warn!(user = %user.name, algorithm = %key.algorithm(),
                    "this key type is not in the server-sig-algs autoprov advertises (ed25519, rsa-sha2): OpenSSH clients offer it anyway, other clients may not");
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
            // The parameters and the hash as a check reads them: one it cannot read (an
            // unknown parameter, t=0, no hash part) had been accepted here, and no password
            // ever matched it.
            // Its version and salt as argon2 checks them too (only 0x10 and 0x13; a salt of
            // at least 8 bytes): `v=20` or a 7-byte salt had been accepted, never matching.
            let version = argon2::Version::try_from(parsed.version.unwrap_or(0x13)).is_ok();
            let mut salt = [0u8; 64];
            let salt = (parsed.salt).and_then(|s| s.decode_b64(&mut salt).ok().map(<[u8]>::len));
            let params = argon2::Params::try_from(&parsed).ok().filter(|_| {
                parsed.hash.is_some() && version && salt.is_some_and(|n| n >= argon2::MIN_SALT_LEN)
            });
            let Some(params) = params else {
                bail!(
                    "SFTP user {:?}: password_hash's version, parameters, salt or hash cannot \
                     be read as argon2's (v=19 or 16; m=, t=, p=; a salt of 8 bytes or more; \
                     the hash): no password would match it; make it again with an argon2 tool",
                    user.name
                );
            };
            // Each check takes the memory the hash asks for, before anyone is logged in (a
            // password tried for no user is checked against the first hash): four attempts
            // at 256 MiB had taken the daemon from 29 MB to 557 MB, kept after them.
            if params.m_cost() > MAX_HASH_KIB {
                bail!(
                    "SFTP user {:?}: password_hash asks for more than {} MiB a check (m={}); \
                     anyone may make the daemon check passwords before logging in: hash with \
                     at most m={MAX_HASH_KIB} (argon2id's second RFC 9106 setting)",
                    user.name,
                    MAX_HASH_KIB >> 10,
                    params.m_cost()
                );
            }
            // Its time cost too: memory times passes is the work of a check (t=100 at
            // 64 MiB had been accepted, each attempt's check taking seconds of a core).
            let (kib, passes) = (params.m_cost(), params.t_cost());
            if u64::from(kib) * u64::from(passes) > MAX_HASH_WORK {
                bail!(
                    "SFTP user {:?}: password_hash asks for too much work a check (m={kib}, \
                     t={passes}: m × t over {MAX_HASH_WORK}); anyone may make the daemon check \
                     passwords before logging in: hash with m × t at most {MAX_HASH_WORK} \
                     (argon2id's second RFC 9106 setting is m=65536, t=3)",
                    user.name
                );
            }
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

/// A successful authentication waiting for russh's `auth_succeeded` callback.
struct PendingLogin {
    user: String,
    method: &'static str,
    fingerprint: Option<String>,
}

/// One connection's authentication: its attempts, their back-off, and the login it
/// announces once russh confirms it.
pub(super) struct ConnAuth {
    logins: Arc<Logins>,
    peer: SocketAddr,
    span: Span,
    /// Set once the client has authenticated.
    authed: Arc<AtomicBool>,
    pending_login: Option<PendingLogin>,
    failures: usize,
}

impl ConnAuth {
    /// No attempt yet from `peer`; `authed` is set on success.
    pub(super) fn new(
        logins: Arc<Logins>,
        peer: SocketAddr,
        span: Span,
        authed: Arc<AtomicBool>,
    ) -> ConnAuth {
        ConnAuth {
            logins,
            peer,
            span,
            authed,
            pending_login: None,
            failures: 0,
        }
    }

    /// The answer to the `none` probe clients send to learn the methods; not an attempt.
    pub(super) fn none(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.logins.methods.clone()),
            partial_success: false,
        }
    }

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
        let delay = self
            .logins
            .record_failure(self.peer.ip().to_canonical(), user);
        tracing::info!(parent: &self.span, method, user = %crate::logging::ClientText(&clipped(user)),
            key = key.as_deref().unwrap_or("-"), attempt = self.failures,
            delay_ms = delay.as_millis() as u64, "authentication failed");
        tokio::time::sleep(delay).await;
        Ok(Auth::Reject {
            proceed_with_methods: Some(self.logins.methods.clone()),
            partial_success: false,
        })
    }

    /// A public key offered before signing: accepted if it may log in as `user`.
    pub(super) async fn publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> anyhow::Result<Auth> {
        self.check_attempts()?;
        if self
            .logins
            .key_allowed(user, offer.public_key, offer.algorithm)
        {
            Ok(Auth::Accept)
        } else {
            let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
            self.reject("publickey", user, Some(fingerprint)).await
        }
    }

    /// A signed public-key login.
    pub(super) async fn publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> anyhow::Result<Auth> {
        self.check_attempts()?;
        if self.logins.key_allowed(user, key.public_key, key.algorithm) {
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

    /// A password login, checked against the user's argon2 hash.
    pub(super) async fn password(&mut self, user: &str, password: &str) -> anyhow::Result<Auth> {
        self.check_attempts()?;
        let Some(hash) = self.logins.password_hash(user) else {
            // As long as a wrong password of a user who has one (the check is what takes
            // the time): the answers' timing had told which users log in with a password.
            if let Some(any) = self.logins.any_password_hash() {
                let _ = self.logins.verify_password(any, password).await;
            }
            return self.reject("password", user, None).await;
        };
        if self.logins.verify_password(hash, password).await? {
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

    /// A method never accepted (`keyboard-interactive`, `certificate`): a failed attempt.
    pub(super) async fn refuse(
        &mut self,
        method: &'static str,
        user: &str,
    ) -> anyhow::Result<Auth> {
        self.check_attempts()?;
        self.reject(method, user, None).await
    }

    /// russh confirmed the login: forget its user's failures from this address and log who
    /// logged in.
    pub(super) fn succeeded(&self) {
        self.authed.store(true, Ordering::Release);
        if let Some(login) = &self.pending_login {
            self.logins
                .clear_failures(self.peer.ip().to_canonical(), &login.user);
            self.span.record("user", login.user.as_str());
            tracing::info!(parent: &self.span, user = %login.user, method = login.method,
                key = login.fingerprint.as_deref().unwrap_or("-"), "authenticated");
        }
    }
}

/// Client-supplied text cut to 64 characters (`...` after), for a log field that escapes it
/// ([`crate::logging::ClientText`]).
fn clipped(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

/// Client-supplied text made safe and short for a log line: [`clipped`], escaped.
pub(super) fn printable(s: &str) -> String {
    clipped(s).chars().flat_map(char::escape_default).collect()
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

    /// A login clears its own user's failures from the address, not another user's: one
    /// valid key had reset the delay of guesses at another user's password.
    #[test]
    fn a_login_clears_only_its_own_users_failures() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0Yo3ioyB7aul3JMKojvAlVpln86K++XvDLVTaQ8c/t me@host";
        let users = [SftpUser {
            name: "hris".into(),
            authorized_keys: vec![ed.into()],
            password_hash: None,
        }];
        let logins = Logins::new(&users).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            logins.record_failure(ip, "other");
        }
        logins.record_failure(ip, "hris");
        logins.clear_failures(ip, "hris");
        assert_eq!(logins.record_failure(ip, "other"), backoff_delay(6));
        // One count a source, whatever the name: the delay tells nothing of which names
        // are users', and cycling names neither escapes it nor fills the table.
        assert_eq!(logins.record_failure(ip, "hris"), backoff_delay(7));
        for n in 0..100 {
            logins.record_failure(ip, &format!("guess{n}"));
        }
        assert_eq!(logins.record_failure(ip, "guess-last"), backoff_delay(108));
        assert_eq!(logins.backoff.lock().unwrap().len(), 1);
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

    /// A password hash that asks for more than 64 MiB a check is refused at start: anyone
    /// may have passwords checked before logging in, and four attempts at 256 MiB had taken
    /// the daemon from 29 MB to 557 MB.
    #[test]
    fn a_password_hash_asking_for_too_much_memory_is_refused() {
        let hash = |m: u32| {
            format!(
                "$argon2id$v=19$m={m},t=1,p=1$c29tZXNhbHRzYWx0${}",
                "A".repeat(43)
            )
        };
        let user = |m: u32| SftpUser {
            name: "hris".into(),
            authorized_keys: vec![],
            password_hash: Some(hash(m)),
        };
        let err = format!("{:#}", check_users(&[user(262144)]).unwrap_err());
        assert!(err.contains("more than 64 MiB a check (m=262144)"), "{err}");
        check_users(&[user(65536)]).unwrap();
        check_users(&[user(19456)]).unwrap();
        // Its time cost too: memory times passes.
        let passes = |m: u32, t: u32| SftpUser {
            password_hash: Some(hash(m).replace("t=1", &format!("t={t}"))),
            ..user(m)
        };
        let err = format!("{:#}", check_users(&[passes(65536, 100)]).unwrap_err());
        assert!(
            err.contains("too much work a check (m=65536, t=100"),
            "{err}"
        );
        check_users(&[passes(65536, 4)]).unwrap();
        check_users(&[passes(19456, 2)]).unwrap();
        check_users(&[passes(7168, 5)]).unwrap();
        // Parameters or a hash a check cannot read: no password would ever match.
        let good = hash(65536);
        let no_hash = &good[..good.rfind('$').unwrap()];
        for bad in [
            good.replace("p=1", "p=1,foo=1"),
            good.replace("t=1", "t=0"),
            good.replace("p=1", "p=0"),
            good.replace("v=19", "v=20"),
            good.replace("c29tZXNhbHRzYWx0", "MTIzNDU2Nw"),
            no_hash.to_string(),
        ] {
            let bad = SftpUser {
                password_hash: Some(bad),
                ..user(65536)
            };
            let err = format!("{:#}", check_users(&[bad]).unwrap_err());
            assert!(err.contains("cannot be read as argon2's"), "{err}");
        }
    }
}
