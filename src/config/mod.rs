//! Configuration: the TOML file, then `AUTOPROV__SECTION__KEY` overrides, validated into typed settings.

mod aliases;
mod env;
pub mod hris;
pub mod notify;
mod paths;
mod remote;
pub mod web;

pub use remote::Remote;

use crate::core::columns::{Columns, DEFAULT_ALIASES};
use crate::core::reconcile::{Limit, Limits};
use crate::core::roster::{Encoding, RosterOptions};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The config file tried when `--config` is not given, in order.
pub const DEFAULT_PATHS: &[&str] = &["/etc/autoprov/autoprov.toml", "./autoprov.toml"];

/// The whole configuration (SPEC §7 "Config keys").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file it was read from (not a key), for errors found after it was loaded.
    #[serde(skip)]
    pub file: PathBuf,
    /// sled store, host keys and drop/.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// SSO prerequisite.
    #[serde(default)]
    pub sso: Sso,
    /// Roles that rules and manual admins may grant.
    #[serde(default)]
    pub provisioning: Provisioning,
    /// Roster parsing.
    #[serde(default)]
    pub roster: RosterConfig,
    /// Safety limits.
    #[serde(default)]
    pub safety: Safety,
    /// Where files come from.
    #[serde(default)]
    pub source: Source,
    /// The control socket.
    #[serde(default)]
    pub control: Control,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// Webhook notifications (SPEC §10).
    #[serde(default)]
    pub notify: notify::Notify,
    /// The web section and the HTTP API (SPEC §11).
    #[serde(default)]
    pub web: web::Web,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/autoprov")
}

/// `[sso]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sso {
    /// Admins sign in through SSO; provisioning refuses to run without it.
    #[serde(default)]
    pub enabled: bool,
    /// Informational, shown in `status`.
    #[serde(default)]
    pub provider: String,
}

/// `[provisioning]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provisioning {
    /// The roles that may be granted.
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
}

impl Default for Provisioning {
    fn default() -> Self {
        Self {
            roles: default_roles(),
        }
    }
}

fn default_roles() -> Vec<String> {
    [
        "Super Admin",
        "IT Admin",
        "HR Admin",
        "Billing Admin",
        "Read-only Admin",
    ]
    .map(String::from)
    .to_vec()
}

/// `[roster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterConfig {
    /// auto | utf-8 (utf8) | windows-1252 (cp1252), any letter case.
    #[serde(default, deserialize_with = "encoding")]
    pub encoding: Encoding,
    /// Statuses meaning the employee has left.
    #[serde(default = "default_inactive")]
    pub inactive_statuses: Vec<String>,
    /// Largest accepted file.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Most accepted data rows.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// Canonical column -> extra header aliases.
    #[serde(default)]
    pub columns: BTreeMap<String, Vec<String>>,
}

impl Default for RosterConfig {
    fn default() -> Self {
        Self {
            encoding: Encoding::default(),
            inactive_statuses: default_inactive(),
            max_bytes: default_max_bytes(),
            max_rows: default_max_rows(),
            columns: BTreeMap::new(),
        }
    }
}

fn default_inactive() -> Vec<String> {
    ["terminated", "inactive", "separated", "deceased"]
        .map(String::from)
        .to_vec()
}
fn default_max_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_max_rows() -> u64 {
    5_000_000
}

/// `[safety]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// Deactivation limit (default: more than 10 and more than 20%).
    #[serde(default)]
    pub max_deactivations: LimitConfig,
    /// Grant limit (default: more than 50 and more than 20%).
    #[serde(default)]
    pub max_grants: LimitConfig,
}

/// A safety limit as configured; a missing half keeps its default.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Absolute number of accounts.
    pub count: Option<usize>,
    /// Percent of the active auto accounts before the sync.
    pub percent: Option<u32>,
}

impl LimitConfig {
    fn or(self, default: Limit) -> Limit {
        Limit {
            count: self.count.unwrap_or(default.count),
            percent: self.percent.unwrap_or(default.percent),
        }
    }
}

/// How files arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Our own SFTP server.
    #[default]
    Host,
    /// We fetch from a remote SFTP server.
    Poll,
    /// Another program writes into a local directory.
    Watch,
    /// We fetch the roster from an HR system's API (`[source.hris]`, SPEC §10).
    Hris,
}

/// Which algorithm lists the SFTP server offers (`source.ssh_profile`, SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SshProfile {
    /// Post-quantum and curve25519 kex, ed25519 host key (RSA-SHA2 too with
    /// `source.rsa_host_key`), AEAD and CTR ciphers, SHA-2 MACs: older HR clients
    /// (libssh2 1.10, OpenSSH 9.2, Paramiko) connect.
    #[default]
    Compatible,
    /// mlkem768x25519 kex, ed25519 host key, AEAD ciphers only (OpenSSH 9.9+ clients).
    Strict,
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "host" => Ok(Mode::Host),
            "poll" => Ok(Mode::Poll),
            "watch" => Ok(Mode::Watch),
            "hris" => Ok(Mode::Hris),
            other => Err(serde::de::Error::custom(format!(
                "source.mode = \"{other}\": use \"host\", \"poll\", \"watch\" or \"hris\""
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for SshProfile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "compatible" => Ok(SshProfile::Compatible),
            "strict" => Ok(SshProfile::Strict),
            other => Err(serde::de::Error::custom(format!(
                "source.ssh_profile = \"{other}\": use \"compatible\" or \"strict\""
            ))),
        }
    }
}

/// `[source]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// host | poll | watch | hris
    #[serde(default)]
    pub mode: Mode,
    /// SFTP server address (host mode).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// compatible | strict
    #[serde(default)]
    pub ssh_profile: SshProfile,
    /// Also offer an RSA host key (`compatible` only; SPEC §8). Default false.
    #[serde(default)]
    pub rsa_host_key: bool,
    /// Watch mode: the directory another program writes.
    #[serde(default)]
    pub watch_dir: PathBuf,
    /// Watch mode: quiet time after close before a file counts as complete.
    #[serde(default = "default_settle", deserialize_with = "duration")]
    pub settle: Duration,
    /// Watch mode: quiet time before a file found by a scan (there at start-up, or after
    /// lost events) counts as complete, when longer than `settle`: its close was not seen,
    /// so it may still be open for writing.
    #[serde(default = "default_startup_settle", deserialize_with = "duration")]
    pub startup_settle: Duration,
    /// Periodic rescan of inbox/ (and watch_dir).
    #[serde(default = "default_rescan", deserialize_with = "duration")]
    pub rescan_interval: Duration,
    /// Uploads larger than this are cut off and discarded.
    #[serde(default = "default_max_bytes")]
    pub max_upload_bytes: u64,
    /// `status` warns when no file arrived for this long. Not the webhook's `stale` event,
    /// which counts from the last *applied* file: see [`notify::Notify::stale_after`].
    #[serde(default = "default_stale_after", deserialize_with = "duration")]
    pub stale_after: Duration,
    /// SFTP: time allowed to authenticate.
    #[serde(default = "default_auth_deadline", deserialize_with = "duration")]
    pub auth_deadline: Duration,
    /// SFTP: idle connections are closed after this.
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// SFTP: concurrent connections per client IP.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// SFTP users (host mode).
    #[serde(default)]
    pub users: Vec<SftpUserConfig>,
    /// The remote server (poll mode).
    #[serde(default)]
    pub remote: Option<Remote>,
    /// The HR system (hris mode).
    #[serde(default)]
    pub hris: Option<hris::Hris>,
}

impl Default for Source {
    fn default() -> Self {
        toml_default()
    }
}

fn toml_default<T: serde::de::DeserializeOwned>() -> T {
    serde_json::from_value(serde_json::json!({})).expect("every field has a default")
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:2222".parse().expect("valid address")
}
fn default_settle() -> Duration {
    Duration::from_secs(2)
}
fn default_startup_settle() -> Duration {
    Duration::from_secs(60)
}
fn default_rescan() -> Duration {
    Duration::from_secs(60)
}
fn default_stale_after() -> Duration {
    Duration::from_secs(26 * 3600)
}
fn default_auth_deadline() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_connections_per_ip() -> usize {
    8
}

/// `[[source.users]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpUserConfig {
    /// Login name.
    pub name: String,
    /// OpenSSH public key lines.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// Optional argon2 PHC hash; password login is off without it.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// `[control]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The Unix socket path.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Unix users allowed to change rules, manual admins and held files (root always is).
    #[serde(default)]
    pub org_admins: Vec<String>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            org_admins: Vec::new(),
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/autoprov/autoprov.sock")
}

/// How log lines are written (`log.format`, and the `--log-format` override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(serde::de::Error::custom(format!(
                "log.format = \"{other}\": use \"text\" or \"json\""
            ))),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// text | json
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `autoprov=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// `roster.encoding`, in any letter case.
fn encoding<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Encoding, D::Error> {
    Ok(
        match String::deserialize(d)?.to_ascii_lowercase().as_str() {
            "auto" => Encoding::Auto,
            "utf-8" | "utf8" => Encoding::Utf8,
            "windows-1252" | "cp1252" => Encoding::Windows1252,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "roster.encoding = \"{other}\": use \"auto\", \"utf-8\" or \"windows-1252\""
                )));
            }
        },
    )
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "\"{text}\" is not a duration ({e}); write e.g. \"2s\", \"60s\", \"5m\""
        ))
    })
}

/// `log.level` must be a filter tracing reads as one, with a level for everything (`info`,
/// `warn,autoprov=debug`): a word that is not a level (`warning`) is read as the name of a
/// module to log, and nothing of autoprov's was logged at all.
fn check_log_level(level: &str) -> Result<()> {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let global = level
        .split(',')
        .map(str::trim)
        .any(|part| !part.is_empty() && part.parse::<LevelFilter>().is_ok());
    if !global || EnvFilter::try_new(level).is_err() {
        bail!(
            "log.level = \"{level}\": not a log level; use one of error, warn, info, debug, \
             trace, off (optionally followed by per-module filters, e.g. \"info,autoprov=debug\")"
        );
    }
    Ok(())
}

/// A TOML parse error without the lines of the file it quotes (`3 | key = "…`, and the
/// caret under it): the line may hold a secret (a webhook URL's token), and every command
/// prints a config error. Its line and column stay.
fn without_quoted_lines(message: &str) -> String {
    let quoted = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    let kept: Vec<&str> = message.lines().filter(|l| !quoted(l)).collect();
    kept.join("\n")
}

/// The file read on its own as the config's types, strictly: an unknown key or a value of
/// another type is an error with its line and column (config's own reading names only the
/// key, and converts what it can: `enabled = "yes"` was true, `count = 100.9` was 101,
/// `data_dir = 5` the folder "5"). A missing key is left to the environment, which may
/// give it, and to the checks after both are read.
fn strictly(text: &str) -> Result<()> {
    match toml::from_str::<Config>(text) {
        Err(e) if !e.message().starts_with("missing field") => {
            bail!("{}", without_quoted_lines(&e.to_string()).trim_end())
        }
        _ => Ok(()),
    }
}

impl Config {
    /// Loads the file (the given one, else the first default path that exists), then the
    /// `AUTOPROV__SECTION__KEY` environment overrides, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        // A file that cannot be looked at (a folder this user may not enter) is an error
        // saying so, not one that "does not exist": without --config, the next default path
        // (a stray ./autoprov.toml) had been taken, with another store.
        let exists = |p: &Path| {
            p.try_exists().with_context(|| {
                format!(
                    "config file {}: cannot tell whether it exists (run as a user that may read it)",
                    p.display()
                )
            })
        };
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let mut found = None;
                for p in DEFAULT_PATHS.iter().map(PathBuf::from) {
                    if exists(&p)? {
                        found = Some(p);
                        break;
                    }
                }
                found.with_context(|| {
                    format!(
                        "no config file: none of {} exists; pass --config PATH",
                        DEFAULT_PATHS.join(", ")
                    )
                })?
            }
        };
        if !exists(&path)? {
            bail!("config file {} does not exist", path.display());
        }
        let lists: Vec<String> = [
            "provisioning.roles",
            "roster.inactive_statuses",
            "control.org_admins",
            "source.hris.fields",
            "web.trusted_proxies",
            "web.org_admins",
            "web.org_admin_roles",
            "web.allowed_hosts",
            // Each column's aliases are a list too (`AUTOPROV__ROSTER__COLUMNS__EMPLOYEE_ID=
            // Badge Number` had been refused as "expected a sequence"), and so is a key
            // naming no column, refused as such.
            "roster.columns.",
        ]
        .map(str::to_string)
        .to_vec();
        let overrides = env::overrides(std::env::vars_os(), &lists)
            .with_context(|| format!("reading config {}", path.display()))?;
        // Read as text: a number or a boolean key converts it when it is deserialized, and
        // a text key keeps what was written.
        let environment = config::Environment::with_prefix("AUTOPROV")
            .prefix_separator("__")
            .separator("__")
            .source(Some(overrides.plain));
        let text = crate::util::read_small_text(&path, 1 << 20)
            .with_context(|| format!("reading config {}", path.display()))?;
        strictly(&text).with_context(|| format!("invalid config {}", path.display()))?;
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(environment);
        for (key, items) in overrides.lists {
            builder = builder
                .set_override(key.as_str(), items)
                .with_context(|| format!("the environment's {key}"))?;
        }
        let built = builder
            .build()
            .map_err(|e| anyhow::anyhow!(without_quoted_lines(&e.to_string())))
            .with_context(|| format!("reading config {}", path.display()))?;
        // A value from the environment is named as such: the file does not hold it.
        let from =
            match std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("AUTOPROV__")) {
                true => format!("{} or the AUTOPROV__* environment", path.display()),
                false => path.display().to_string(),
            };
        let mut cfg: Config = built
            .try_deserialize()
            .with_context(|| format!("invalid config {from}"))?;
        // The file itself, its links followed: a config reached through a linked folder
        // or file, or as `../x.toml`, names the same folders.
        // A file whose folders cannot be resolved (a descriptor, a folder it may not list)
        // is taken by its name.
        let resolved = std::fs::canonicalize(&path)
            .or_else(|_| std::path::absolute(&path))
            .with_context(|| format!("resolving the config file {}", path.display()))?;
        cfg.anchor_paths(&resolved);
        cfg.validate()
            .with_context(|| format!("invalid config {from}"))?;
        cfg.web.settle_org_admin_roles(&cfg.provisioning.roles);
        cfg.file = path;
        Ok(cfg)
    }

    /// Checks what serde cannot: settings that exclude each other, canonical column names,
    /// what a mode needs.
    pub fn validate(&self) -> Result<()> {
        // Empty, every relative path would be the current folder's: a command run elsewhere
        // made and used a new, empty store there.
        if self.data_dir.as_os_str().is_empty() {
            bail!(
                "data_dir is empty: name the folder of the store and drop/ (default /var/lib/autoprov)"
            );
        }
        if self.control.socket.as_os_str().is_empty() {
            bail!(
                "control.socket is empty: name the daemon's socket (default /run/autoprov/autoprov.sock)"
            );
        }
        self.notify.check()?;
        if self.source.rsa_host_key && self.source.ssh_profile == SshProfile::Strict {
            bail!(
                "source.rsa_host_key = true cannot be used with source.ssh_profile = \"strict\", \
                 which offers the ed25519 host key only: remove rsa_host_key, or use \
                 ssh_profile = \"compatible\""
            );
        }
        for canonical in self.roster.columns.keys() {
            if !Columns::is_canonical(canonical) {
                let names: Vec<&str> = DEFAULT_ALIASES.iter().map(|(c, _)| *c).collect();
                bail!(
                    "roster.columns.{canonical}: not a canonical column (use one of {})",
                    names.join(", ")
                );
            }
        }
        self.check_aliases()?;
        if self.provisioning.roles.is_empty() {
            bail!("provisioning.roles is empty: list the roles rules may grant");
        }
        // Empty, nobody would ever have left: every leaver active, kept or made an admin.
        if self.roster.inactive_statuses.is_empty() {
            bail!(
                "roster.inactive_statuses is empty: list the statuses that mean an employee has left"
            );
        }
        // A blank role, or one with spaces around it, is one no rule or manual admin could be
        // given (a role asked for is trimmed): its accounts' sign-ins would all be denied.
        let lists = [
            ("provisioning.roles", &self.provisioning.roles[..]),
            (
                "web.org_admin_roles",
                self.web.org_admin_roles.as_deref().unwrap_or_default(),
            ),
            ("roster.inactive_statuses", &self.roster.inactive_statuses),
        ];
        for (key, items) in lists {
            if let Some(item) = items.iter().find(|i| i.is_empty() || i.trim() != *i) {
                bail!("{key}: {item:?} is blank or has spaces around it");
            }
        }
        if self.source.mode == Mode::Poll && self.source.remote.is_none() {
            bail!("source.mode = \"poll\" needs a [source.remote] section");
        }
        if self.source.mode == Mode::Watch && self.source.watch_dir.as_os_str().is_empty() {
            bail!("source.mode = \"watch\" needs source.watch_dir");
        }
        // The daemon's own folders (processed/ above all) would be taken as new rosters: its
        // files and reports processed again and again under ever longer names.
        if self.source.mode == Mode::Watch
            && paths::resolved(&self.source.watch_dir).starts_with(paths::resolved(&self.data_dir))
        {
            bail!(
                "source.watch_dir = {:?} is inside data_dir ({:?}), whose folders autoprov writes: \
                 watch a folder of its own",
                self.source.watch_dir,
                self.data_dir
            );
        }
        check_log_level(&self.log.level)?;
        self.check_limits()?;
        if self.source.mode == Mode::Hris && self.source.hris.is_none() {
            bail!("source.mode = \"hris\" needs a [source.hris] section");
        }
        if let Some(hris) = &self.source.hris {
            hris.validate()?;
            // What autoprov writes from a provider's JSON is UTF-8 (SPEC §10): read as
            // Windows-1252, "Zürich" became "ZÃ¼rich" and rules stopped matching it.
            let writes_utf8 = matches!(
                hris.provider(),
                hris::Provider::Bamboohr | hris::Provider::Workday
            );
            if self.source.mode == Mode::Hris
                && writes_utf8
                && self.roster.encoding == Encoding::Windows1252
            {
                bail!(
                    "roster.encoding = \"windows-1252\" cannot be used with source.hris.provider = \
                     \"{}\", whose roster autoprov writes as UTF-8: use \"auto\" or \"utf-8\"",
                    hris.provider().name()
                );
            }
        }
        self.web.validate(&self.provisioning.roles)?;
        Ok(())
    }

    /// Every interval, time limit and size is positive (and `[source.remote]` has what it
    /// needs).
    fn check_limits(&self) -> Result<()> {
        let source = &self.source;
        let mut durations = vec![
            ("source.rescan_interval", source.rescan_interval),
            ("source.stale_after", source.stale_after),
            ("source.auth_deadline", source.auth_deadline),
            ("source.idle_timeout", source.idle_timeout),
            ("notify.stale_after", self.notify.stale_after),
        ];
        if let Some(remote) = &source.remote {
            remote.check_folders()?;
            durations.push(("source.remote.poll_interval", remote.poll_interval));
            durations.push(("source.remote.timeout", remote.timeout));
        }
        if let Some(hris) = &source.hris {
            durations.push(("source.hris.every", hris.every));
            durations.push(("source.hris.timeout", hris.timeout));
        }
        // Every interval and time limit is positive: a zero interval panicked the inbox's
        // rescan task after READY (uploads then waited for a restart), and polled the remote
        // server in a tight loop.
        if let Some((key, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            bail!("{key} must be longer than 0s");
        }
        // A roster limit of 0 rejects every file: a daemon that does not do its work.
        let sizes = [
            ("source.max_upload_bytes", source.max_upload_bytes),
            ("roster.max_bytes", self.roster.max_bytes),
            ("roster.max_rows", self.roster.max_rows),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, n)| *n == 0) {
            bail!("{key} must be greater than 0");
        }
        if source.max_connections_per_ip == 0 {
            bail!("source.max_connections_per_ip must be at least 1");
        }
        Ok(())
    }

    /// The column alias table.
    pub fn columns(&self) -> Columns {
        Columns::new(&self.roster.columns)
    }

    /// Roster options for a parse that keeps `needed_fields`.
    pub fn roster_options(&self, needed_fields: Vec<String>) -> RosterOptions {
        RosterOptions {
            encoding: self.roster.encoding,
            inactive_statuses: self.roster.inactive_statuses.clone(),
            columns: self.columns(),
            max_bytes: self.roster.max_bytes,
            max_rows: self.roster.max_rows,
            needed_fields,
        }
    }

    /// Safety limits.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            max_deactivations: self.safety.max_deactivations.or(d.max_deactivations),
            max_grants: self.safety.max_grants.or(d.max_grants),
        }
    }

    /// The role as configured, matched case-insensitively; None when not allowed.
    pub fn role(&self, role: &str) -> Option<&str> {
        let wanted = role.trim().to_lowercase();
        self.provisioning
            .roles
            .iter()
            .find(|r| r.to_lowercase() == wanted)
            .map(String::as_str)
    }

    /// Whether a Unix user may change rules, manual admins and held files.
    pub fn is_org_admin(&self, user: &str) -> bool {
        user == "root" || self.control.org_admins.iter().any(|u| u == user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative paths are the config file's folder's, whatever the working directory: a
    /// command run elsewhere with the quick-start config had made and used a new store
    /// there. Empty paths stay empty.
    #[test]
    fn relative_paths_are_relative_to_the_config_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        let file = dir.path().join("config/autoprov.toml");
        std::fs::write(
            &file,
            "data_dir = \"../var/autoprov\"\n[sso]\nenabled = false\n\
             [control]\nsocket = \"./run/autoprov.sock\"\n\
             [source]\nmode = \"watch\"\nwatch_dir = \"/abs/watch\"\n\
             [notify]\nwebhook_url_file = \"hook\"\n",
        )
        .unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let cfg = Config::load(Some(&file)).unwrap();
        assert_eq!(cfg.notify.webhook_url_file, Some(real.join("config/hook")));
        assert_eq!(cfg.data_dir, real.join("var/autoprov"));
        assert_eq!(cfg.control.socket, real.join("config/run/autoprov.sock"));
        assert_eq!(cfg.source.watch_dir, Path::new("/abs/watch"));
        assert_eq!(cfg.web.api_tokens_file, None);
        // Reached through a linked folder, a linked file, or with `..`: the same folders.
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("config"), elsewhere.path().join("c")).unwrap();
        std::os::unix::fs::symlink(&file, elsewhere.path().join("ap.toml")).unwrap();
        std::fs::create_dir(dir.path().join("config/sub")).unwrap();
        for named in [
            elsewhere.path().join("c/autoprov.toml"),
            elsewhere.path().join("ap.toml"),
            dir.path().join("config/sub/../autoprov.toml"),
        ] {
            let cfg = Config::load(Some(&named)).unwrap();
            assert_eq!(
                cfg.data_dir,
                real.join("var/autoprov"),
                "{}",
                named.display()
            );
        }
    }
    use std::io::Write;

    fn load(text: &str) -> Result<Config> {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Config::load(Some(f.path()))
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = load("").unwrap();
        // The file it came from, for errors found later (`status`, `run`).
        assert!(
            c.file.to_string_lossy().ends_with(".toml"),
            "{}",
            c.file.display()
        );
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/autoprov"));
        assert!(!c.sso.enabled);
        assert_eq!(c.provisioning.roles.len(), 5);
        assert_eq!(c.roster.max_bytes, 536_870_912);
        assert_eq!(c.roster.max_rows, 5_000_000);
        assert_eq!(
            c.limits().max_deactivations,
            Limit {
                count: 10,
                percent: 20
            }
        );
        assert_eq!(
            c.limits().max_grants,
            Limit {
                count: 50,
                percent: 20
            }
        );
        assert_eq!(c.source.mode, Mode::Host);
        assert_eq!(c.source.listen.to_string(), "127.0.0.1:2222");
        assert_eq!(c.source.settle, Duration::from_secs(2));
        assert_eq!(c.source.startup_settle, Duration::from_secs(60));
        assert_eq!(c.source.rescan_interval, Duration::from_secs(60));
        assert_eq!(c.source.ssh_profile, SshProfile::Compatible);
        assert!(!c.source.rsa_host_key);
        assert_eq!(
            c.control.socket,
            PathBuf::from("/run/autoprov/autoprov.sock")
        );
    }

    /// A key the config does not have, or a value of another type, is an error with its
    /// line and column; nothing is converted (`enabled = "yes"` had turned provisioning on,
    /// `count = 100.9` had been 101).
    #[test]
    fn unknown_keys_and_wrong_types_are_errors_with_line_and_column() {
        for (text, wanted) in [
            (
                "[sso]\nenabledd = true\n",
                ["line 2, column 1", "unknown field `enabledd`"],
            ),
            (
                "[sso]\nenabled = \"yes\"\n",
                ["line 2, column 11", "expected a boolean"],
            ),
            (
                "[safety]\nmax_grants = { count = 100.9, percent = 5 }\n",
                ["line 2, column 24", "floating point"],
            ),
            (
                "data_dir = 5\n",
                ["line 1, column 12", "expected path string"],
            ),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            for w in wanted {
                assert!(e.contains(w), "{text:?}: {e}");
            }
        }
        // Valid values of every type still load.
        let c = load("[sso]\nenabled = true\n[safety]\nmax_grants = { count = 7, percent = 5 }\n")
            .unwrap();
        assert!(c.sso.enabled);
        assert_eq!(c.limits().max_grants.count, 7);
    }

    /// An empty `data_dir` or `control.socket` is refused naming the key: every relative
    /// path would have been the current folder's (a new, empty store made there).
    #[test]
    fn an_empty_data_dir_or_socket_is_refused() {
        for (text, key) in [
            ("data_dir = \"\"\n", "data_dir is empty"),
            ("[control]\nsocket = \"\"\n", "control.socket is empty"),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(e.contains(key), "{e}");
        }
    }

    /// A role or an inactive status that is blank or has spaces around it is refused: a
    /// role `"IT Admin "` could never be given (the one asked for is trimmed), its accounts'
    /// sign-ins all denied; a status `""` made every blank Status a leaver.
    #[test]
    fn blank_or_padded_roles_and_statuses_are_refused() {
        for (text, key) in [
            (
                "[provisioning]\nroles = [\"Super Admin\", \"IT Admin \"]\n",
                "provisioning.roles: \"IT Admin \"",
            ),
            (
                "[provisioning]\nroles = [\"\"]\n",
                "provisioning.roles: \"\"",
            ),
            (
                "[roster]\ninactive_statuses = [\"terminated\", \"\"]\n",
                "roster.inactive_statuses: \"\"",
            ),
            (
                "[web]\norg_admin_roles = [\" Super Admin\"]\n",
                "web.org_admin_roles: \" Super Admin\"",
            ),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(load("[roster]\ninactive_statuses = [\"terminated\"]\n").is_ok());
        let e = format!(
            "{:#}",
            load("[roster]\ninactive_statuses = []\n").unwrap_err()
        );
        assert!(e.contains("roster.inactive_statuses is empty"), "{e}");
    }

    #[test]
    fn a_log_level_that_is_not_one_is_refused() {
        for bad in ["warning", "verbose", "autoprov=debug", ""] {
            let err = format!(
                "{:#}",
                load(&format!("[log]\nlevel = \"{bad}\"\n")).unwrap_err()
            );
            assert!(err.contains("log.level"), "{bad}: {err}");
        }
        for good in ["info", "WARN", "debug,autoprov=trace", "off"] {
            load(&format!("[log]\nlevel = \"{good}\"\n")).unwrap();
        }
    }

    #[test]
    fn zero_intervals_are_refused_naming_the_key() {
        for (section, key) in [
            ("source", "rescan_interval"),
            ("source", "stale_after"),
            ("source", "auth_deadline"),
            ("source", "idle_timeout"),
            ("notify", "stale_after"),
        ] {
            let err = format!(
                "{:#}",
                load(&format!("[{section}]\n{key} = \"0s\"\n")).unwrap_err()
            );
            assert!(
                err.contains(&format!("{section}.{key} must be longer")),
                "{err}"
            );
        }
        let remote = "[source.remote]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"/k\"\n\
                      known_host_key = \"k\"\ninbox = \"i\"\nprocessed = \"p\"\nrejected = \"r\"\n";
        for key in ["poll_interval", "timeout"] {
            let err = format!(
                "{:#}",
                load(&format!("{remote}{key} = \"0s\"\n")).unwrap_err()
            );
            assert!(
                err.contains(&format!("source.remote.{key} must be longer")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_remote_processed_and_rejected_folders_are_not_the_inbox() {
        let remote = |processed: &str, rejected: &str| {
            format!(
                "[source.remote]\nhost = \"h\"\nuser = \"u\"\nprivate_key = \"/k\"\n\
                 known_host_key = \"k\"\ninbox = \"outgoing/\"\nprocessed = {processed:?}\n\
                 rejected = {rejected:?}\n"
            )
        };
        let err = format!("{:#}", load(&remote("./outgoing", "out/rej")).unwrap_err());
        assert!(
            err.contains("source.remote.processed = \"./outgoing\" is the remote inbox"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            load(&remote("outgoing/processed", "outgoing")).unwrap_err()
        );
        assert!(err.contains("source.remote.rejected"), "{err}");
        load(&remote("outgoing/processed", "outgoing/rejected")).unwrap();
        // `..` resolved: `outgoing/processed/..` is the inbox, `../outgoing` is not.
        let err = format!(
            "{:#}",
            load(&remote("outgoing/processed/..", "out/rej")).unwrap_err()
        );
        assert!(err.contains("source.remote.processed"), "{err}");
        load(&remote("../outgoing", "x/../../outgoing")).unwrap();
    }

    /// A config whose TOML does not parse is named with its line and column, without the
    /// line itself (it may hold a webhook URL's token).
    #[test]
    fn a_toml_error_does_not_quote_the_line() {
        let err = format!(
            "{:#}",
            load("[notify]\nwebhook_url = \"https://hooks.example/services/S3cretToken\n")
                .unwrap_err()
        );
        assert!(!err.contains("S3cretToken"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = format!("{:#}", load("[safety]\nmax_deletions = 3\n").unwrap_err());
        assert!(err.contains("max_deletions"), "{err}");
    }

    #[test]
    fn bad_duration_and_enum_values_are_explained() {
        let err = format!("{:#}", load("[source]\nsettle = \"soon\"\n").unwrap_err());
        assert!(err.contains("not a duration"), "{err}");
        let err = format!(
            "{:#}",
            load("[roster]\nencoding = \"latin9\"\n").unwrap_err()
        );
        assert!(
            err.contains("windows-1252") && err.contains("roster.encoding"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            load("[roster.columns]\nbadge = [\"B\"]\n").unwrap_err()
        );
        assert!(err.contains("not a canonical column"), "{err}");
    }

    #[test]
    fn a_watch_dir_inside_data_dir_is_refused() {
        for watch in ["/srv/ap/drop/processed", "/srv/ap", "/srv/x/../ap/in"] {
            let text = format!(
                "data_dir = \"/srv/ap\"\n[source]\nmode = \"watch\"\nwatch_dir = \"{watch}\"\n"
            );
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains("inside data_dir"), "{watch}: {err}");
        }
        let text = "data_dir = \"/srv/ap\"\n[source]\nmode = \"watch\"\nwatch_dir = \"/srv/apx\"\n";
        load(text).unwrap();
        // A link to a folder of data_dir is that folder.
        let dir = tempfile::tempdir().unwrap();
        let processed = dir.path().join("data/drop/processed");
        std::fs::create_dir_all(&processed).unwrap();
        let link = dir.path().join("in");
        std::os::unix::fs::symlink(&processed, &link).unwrap();
        let text = format!(
            "data_dir = {:?}\n[source]\nmode = \"watch\"\nwatch_dir = {:?}\n",
            dir.path().join("data"),
            link
        );
        assert!(format!("{:#}", load(&text).unwrap_err()).contains("inside data_dir"));
    }

    #[test]
    fn a_mode_that_is_not_one_lists_the_modes() {
        let err = format!("{:#}", load("[source]\nmode = \"pull\"\n").unwrap_err());
        assert!(
            err.contains("source.mode = \"pull\": use \"host\", \"poll\", \"watch\" or \"hris\""),
            "{err}"
        );
        let c = load("[source]\nmode = \"watch\"\nwatch_dir = \"/tmp\"\n").unwrap();
        assert_eq!(c.source.mode, Mode::Watch);
    }

    #[test]
    fn sftp_limits_of_zero_are_config_errors_naming_the_key() {
        for key in ["max_upload_bytes", "max_connections_per_ip"] {
            let err = format!("{:#}", load(&format!("[source]\n{key} = 0\n")).unwrap_err());
            assert!(err.contains(&format!("source.{key}")), "{err}");
        }
        // A roster limit of 0 had been accepted, and every file was rejected.
        for key in ["max_bytes", "max_rows"] {
            let err = format!("{:#}", load(&format!("[roster]\n{key} = 0\n")).unwrap_err());
            assert!(
                err.contains(&format!("roster.{key} must be greater than 0")),
                "{err}"
            );
        }
    }

    #[test]
    fn roles_without_super_admin_need_no_org_admin_roles() {
        let c = load("[provisioning]\nroles = [\"IT Admin\", \"Billing Admin\"]\n").unwrap();
        assert!(c.web.org_admin_roles().is_empty());
        assert!(!c.web.may_change("x@acme.example", Some("IT Admin")));
        let c = load("").unwrap();
        assert_eq!(c.web.org_admin_roles(), ["Super Admin"]);
        assert!(c.web.may_change("x@acme.example", Some("super admin")));
        // Written, a role that is not one is still an error.
        let err = format!(
            "{:#}",
            load("[provisioning]\nroles = [\"IT Admin\"]\n[web]\norg_admin_roles = [\"Super Admin\"]\n")
                .unwrap_err()
        );
        assert!(err.contains("web.org_admin_roles"), "{err}");
    }

    #[test]
    fn an_alias_names_one_column_only() {
        let columns = |text: &str| load(&format!("[roster.columns]\n{text}\n"));
        for (text, names) in [
            ("manager_id = [\"Status\"]", "employment_status"),
            ("employee_id = [\"E-Mail\"]", "email"),
            ("email = [\"manager_id\"]", "manager_id"),
        ] {
            let err = format!("{:#}", columns(text).unwrap_err());
            assert!(
                err.contains("already names another column"),
                "{text}: {err}"
            );
            assert!(err.contains(names), "{text}: {err}");
        }
        let err = format!(
            "{:#}",
            columns("employment_status = [\"Is Manager\"]").unwrap_err()
        );
        assert!(err.contains("names is_manager"), "{err}");
        let err = format!(
            "{:#}",
            columns("email = [\"Login\"]\nmanager_id = [\"login\"]").unwrap_err()
        );
        assert!(
            err.contains("listed under both email and manager_id"),
            "{err}"
        );
        // Its own column's names, and new ones, are fine.
        let c = columns("email = [\"Work Email\", \"Login\"]\nmanager_id = [\"Boss\"]").unwrap();
        assert_eq!(c.columns().key("boss"), "managerid");
    }

    #[test]
    fn encodings_are_typed_in_any_letter_case() {
        for (text, want) in [
            ("auto", Encoding::Auto),
            ("AUTO", Encoding::Auto),
            ("utf-8", Encoding::Utf8),
            ("UTF8", Encoding::Utf8),
            ("Windows-1252", Encoding::Windows1252),
            ("cp1252", Encoding::Windows1252),
        ] {
            let c = load(&format!("[roster]\nencoding = \"{text}\"\n")).unwrap();
            assert_eq!(c.roster.encoding, want, "{text}");
            assert_eq!(c.roster_options(Vec::new()).encoding, want, "{text}");
        }
        assert_eq!(load("").unwrap().roster.encoding, Encoding::Auto);
        let err = format!(
            "{:#}",
            load("[roster]\nencoding = \"Latin9\"\n").unwrap_err()
        );
        assert!(
            err.contains(
                "roster.encoding = \"latin9\": use \"auto\", \"utf-8\" or \"windows-1252\""
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_profiles_and_log_formats_are_errors_naming_the_key() {
        let c = load("[source]\nssh_profile = \"strict\"\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(c.source.ssh_profile, SshProfile::Strict);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(load("").unwrap().log.format, LogFormat::Text);
        let err = format!(
            "{:#}",
            load("[source]\nssh_profile = \"modern\"\n").unwrap_err()
        );
        assert!(
            err.contains("source.ssh_profile = \"modern\": use \"compatible\" or \"strict\""),
            "{err}"
        );
        // Exact spelling, as before: no silent fallback to the default.
        let err = format!(
            "{:#}",
            load("[source]\nssh_profile = \"Strict\"\n").unwrap_err()
        );
        assert!(err.contains("source.ssh_profile"), "{err}");
        let err = format!("{:#}", load("[log]\nformat = \"xml\"\n").unwrap_err());
        assert!(
            err.contains("log.format = \"xml\": use \"text\" or \"json\""),
            "{err}"
        );
    }

    #[test]
    fn the_log_format_flag_takes_the_same_values() {
        use clap::Parser;
        let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args);
        let cli = parse(&["autoprov", "--log-format", "json", "status"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        let cli = parse(&["autoprov", "status", "--log-format", "text"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Text));
        assert_eq!(parse(&["autoprov", "status"]).unwrap().log_format, None);
        let err = parse(&["autoprov", "--log-format", "xml", "status"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn rsa_host_key_is_for_the_compatible_profile_only() {
        let c = load("[source]\nrsa_host_key = true\n").unwrap();
        assert!(c.source.rsa_host_key);
        let err = format!(
            "{:#}",
            load("[source]\nssh_profile = \"strict\"\nrsa_host_key = true\n").unwrap_err()
        );
        assert!(
            err.contains("rsa_host_key") && err.contains("strict"),
            "{err}"
        );
        assert!(load("[source]\nssh_profile = \"strict\"\nrsa_host_key = false\n").is_ok());
    }

    #[test]
    fn the_web_section_of_the_spec_parses_and_is_off_by_default() {
        assert_eq!(load("").unwrap().web.listen, None);
        assert_eq!(load("[web]\nlisten = \"\"\n").unwrap().web.listen, None);
        let c = load(
            r#"
[web]
listen = "127.0.0.1:8080"
user_header = "X-Forwarded-Email"
trusted_proxies = ["127.0.0.1/32", "::1/128", "10.1.0.0/16"]
org_admins = ["it-lead@acme.example"]
org_admin_roles = ["Super Admin"]
api_tokens_file = "/etc/autoprov/api-tokens"
"#,
        )
        .unwrap();
        assert_eq!(c.web.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(c.web.trusts("10.1.200.3".parse().unwrap()));
        assert!(c.web.is_org_admin("IT-Lead@acme.example"));
        assert_eq!(
            c.web.api_tokens_file,
            Some(PathBuf::from("/etc/autoprov/api-tokens"))
        );
        let err = format!(
            "{:#}",
            load("[web]\nlisten = \"0.0.0.0:8080\"\ndev_user = \"me@example.com\"\n").unwrap_err()
        );
        assert!(err.contains("web.dev_user"), "{err}");
        let err = format!("{:#}", load("[web]\nlisten = \"localhost\"\n").unwrap_err());
        assert!(err.contains("web.listen"), "{err}");
        let err = format!("{:#}", load("[web]\nlistens = \"\"\n").unwrap_err());
        assert!(err.contains("listens"), "{err}");
    }

    #[test]
    fn half_a_limit_keeps_the_other_half_default() {
        let c = load("[safety]\nmax_grants = { count = 100 }\n").unwrap();
        assert_eq!(
            c.limits().max_grants,
            Limit {
                count: 100,
                percent: 20
            }
        );
        assert_eq!(
            c.limits().max_deactivations,
            Limit {
                count: 10,
                percent: 20
            }
        );
    }

    #[test]
    fn spec_example_keys_parse() {
        let c = load(
            r#"
data_dir = "/tmp/x"
[sso]
enabled = true
provider = "okta"
[roster]
encoding = "windows-1252"
[roster.columns]
employee_id = ["Badge Number"]
[safety]
max_deactivations = { count = 5, percent = 10 }
[source]
mode = "host"
settle = "3s"
[[source.users]]
name = "hris"
authorized_keys = ["ssh-ed25519 AAAA hris@workday"]
[control]
org_admins = ["alice", "root"]
[log]
format = "json"
"#,
        )
        .unwrap();
        assert!(c.sso.enabled);
        assert_eq!(c.roster.encoding, Encoding::Windows1252);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.columns().key("badge number"), "employeeid");
        assert_eq!(
            c.limits().max_deactivations,
            Limit {
                count: 5,
                percent: 10
            }
        );
        assert_eq!(c.source.users[0].name, "hris");
        assert!(c.is_org_admin("alice"));
        assert!(c.is_org_admin("root"));
        assert!(!c.is_org_admin("mallory"));
        assert_eq!(c.role("billing admin"), Some("Billing Admin"));
        assert_eq!(c.role("Janitor"), None);
    }

    #[test]
    fn notify_keys_parse_and_a_clear_text_webhook_is_an_error_naming_the_key() {
        let c = load("").unwrap();
        assert!(c.notify.webhook_url.is_none());
        assert_eq!(c.notify.stale_after, Duration::from_secs(36 * 3600));
        let c = load("[notify]\nwebhook_url = \"http://127.0.0.1:9/h\"\nstale_after = \"2h\"\n")
            .unwrap();
        assert_eq!(c.notify.target().as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.notify.stale_after, Duration::from_secs(7200));
        let err = format!(
            "{:#}",
            load("[notify]\nwebhook_url = \"http://hooks.example.com/T/tok\"\n").unwrap_err()
        );
        assert!(
            err.contains("notify.webhook_url") && err.contains("loopback"),
            "{err}"
        );
        assert!(!err.contains("tok"), "{err}");
        let err = format!(
            "{:#}",
            load("[notify]\nstale_after = \"0s\"\n").unwrap_err()
        );
        assert!(err.contains("notify.stale_after"), "{err}");
        // An empty webhook_url_file is unset, as "" is for every key.
        let c = load("[notify]\nwebhook_url = \"http://127.0.0.1:9/h\"\nwebhook_url_file = \"\"\n")
            .unwrap();
        assert_eq!(c.notify.webhook_url_file, None);
    }
}
