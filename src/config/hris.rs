//! `[source.hris]` (SPEC §10): which HR system the roster is fetched from, when, and with
//! which credentials. Credentials are only ever named by `*_file` keys; [`read_secret`]
//! reads them when the daemon starts.

use anyhow::{Result, bail};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The HR system (`source.hris.provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// BambooHR's custom report API.
    Bamboohr,
    /// A Workday custom report served as a web service (RaaS).
    Workday,
    /// Any HTTPS URL that answers with a CSV export.
    CsvUrl,
}

impl Provider {
    /// The name used in the config, file names and `status`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Bamboohr => "bamboohr",
            Provider::Workday => "workday",
            Provider::CsvUrl => "csv_url",
        }
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "bamboohr" => Ok(Provider::Bamboohr),
            "workday" => Ok(Provider::Workday),
            "csv_url" => Ok(Provider::CsvUrl),
            other => Err(serde::de::Error::custom(format!(
                "source.hris.provider = \"{other}\": use \"bamboohr\", \"workday\" or \"csv_url\""
            ))),
        }
    }
}

/// `[source.hris]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hris {
    /// bamboohr | workday | csv_url ([`Hris::provider`]). Required: checked once the
    /// environment's overrides are read (missing from the file, it had left the rest of the
    /// file's keys unchecked, a value of another type converted).
    #[serde(rename = "provider", default)]
    pub provider_set: Option<Provider>,
    /// First fetch at this time of day (`HH:MM`, UTC); empty = at start-up.
    #[serde(default)]
    pub at: String,
    /// Then every this long.
    #[serde(default = "default_every", deserialize_with = "super::duration")]
    pub every: Duration,
    /// Longest time one request may take, from connecting to the last byte of the answer.
    #[serde(default = "default_timeout", deserialize_with = "super::duration")]
    pub timeout: Duration,
    /// Retries after a 429, 5xx or network error.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Extra trusted CA certificates (PEM), besides the system's.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// BambooHR: more fields to request.
    #[serde(default)]
    pub fields: Vec<String>,
    /// `[source.hris.bamboohr]`
    #[serde(default)]
    pub bamboohr: Option<BambooHr>,
    /// `[source.hris.workday]`
    #[serde(default)]
    pub workday: Option<Workday>,
    /// `[source.hris.csv_url]`
    #[serde(default)]
    pub csv_url: Option<CsvUrl>,
}

fn default_every() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_retries() -> u32 {
    5
}

/// `[source.hris.bamboohr]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BambooHr {
    /// The API's origin.
    #[serde(default = "default_bamboohr_url")]
    pub base_url: String,
    /// The company's BambooHR subdomain (`acme` for acme.bamboohr.com); required (checked
    /// once the environment's overrides are read, like every key a section needs: a key
    /// missing from the file had left the rest of the file's keys unchecked).
    #[serde(default)]
    pub subdomain: String,
    /// File holding the API key; required.
    #[serde(default)]
    pub api_key_file: PathBuf,
    /// The field that becomes `employee_id`.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// The field that becomes `manager_id` (the supervisor's `id_field`).
    #[serde(default = "default_manager_field")]
    pub manager_field: String,
}

fn default_bamboohr_url() -> String {
    "https://api.bamboohr.com".into()
}
fn default_id_field() -> String {
    "id".into()
}
fn default_manager_field() -> String {
    "supervisorEId".into()
}

/// How autoprov signs in to Workday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkdayAuth {
    /// HTTP Basic with the integration system user's name and password.
    #[default]
    Basic,
    /// OAuth 2 refresh-token grant, then a bearer token.
    Oauth,
}

impl<'de> Deserialize<'de> for WorkdayAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "basic" => Ok(WorkdayAuth::Basic),
            "oauth" => Ok(WorkdayAuth::Oauth),
            other => Err(serde::de::Error::custom(format!(
                "source.hris.workday.auth = \"{other}\": use \"basic\" or \"oauth\""
            ))),
        }
    }
}

/// `[source.hris.workday]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workday {
    /// The custom report's web service URL (without `?format=json`); required.
    #[serde(default)]
    pub report_url: String,
    /// basic | oauth
    #[serde(default)]
    pub auth: WorkdayAuth,
    /// Basic: the integration system user.
    #[serde(default)]
    pub username: String,
    /// Basic: file holding its password.
    #[serde(default)]
    pub password_file: PathBuf,
    /// OAuth: the tenant's token endpoint.
    #[serde(default)]
    pub token_url: String,
    /// OAuth: the API client's id.
    #[serde(default)]
    pub client_id: String,
    /// OAuth: file holding the API client's secret.
    #[serde(default)]
    pub client_secret_file: PathBuf,
    /// OAuth: file holding the refresh token.
    #[serde(default)]
    pub refresh_token_file: PathBuf,
}

/// `[source.hris.csv_url]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvUrl {
    /// Where the CSV export is published; required.
    #[serde(default)]
    pub url: String,
    /// File holding a bearer token (or leave empty).
    #[serde(default)]
    pub bearer_token_file: PathBuf,
    /// HTTP Basic user name (with `password_file`).
    #[serde(default)]
    pub username: String,
    /// File holding the HTTP Basic password.
    #[serde(default)]
    pub password_file: PathBuf,
}

/// A credential read from a file: never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// A credential obtained at run time (an OAuth access token).
    pub fn from_fetched(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads the secret that config key `key` names (`path`): one line, the line breaks (LF or
/// CRLF) that end it not part of it. The error names the key and the path, never the
/// content, and is a config error (exit 2), not a failure of the work.
pub fn read_secret(key: &str, path: &Path) -> Result<Secret> {
    let mut text = crate::util::read_small_text(path, 64 << 10).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            anyhow::anyhow!("{key} = {}: the file is not UTF-8 text", path.display())
        }
        _ => anyhow::anyhow!("{key} = {}: cannot read it ({e})", path.display()),
    })?;
    // Every line break at its end: an editor's blank line after the key had been sent as
    // part of it, every fetch then failing with an error that named neither the key nor the
    // file ("failed to parse header value", or credentials refused).
    if text.is_empty() {
        bail!("{key} = {}: the file is empty", path.display());
    }
    text.truncate(text.trim_end_matches(['\n', '\r']).len());
    if text.trim().is_empty() {
        bail!(
            "{key} = {}: the file holds only blank space or line breaks",
            path.display()
        );
    }
    if text.contains(|c: char| c.is_control() && c != '\t') {
        bail!(
            "{key} = {}: the file holds a line break or another control character before its \
             end; a secret is one line",
            path.display()
        );
    }
    if let Some(warning) = shared_warning(key, path) {
        tracing::warn!("{warning}");
    }
    Ok(Secret(text))
}

/// A warning when the file `path` that config key `key` names (a secret, read by the
/// daemon at its start) can be read or written by its group or others: such a file is
/// used, as before, but the README asks for the daemon's user alone (0600) or
/// `LoadCredential=`; the group is how people reach the control socket, so a member who
/// may only read had the HR system's key without a word.
/// A file owned by another user than the daemon's (or root) is warned of too, whatever its
/// mode: that user can change it (a 0600 file of the HR job's account had gone unwarned).
pub fn shared_warning(key: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    let me = nix::unistd::geteuid().as_raw();
    let fix = "give it mode 0600, owned by the daemon's user, or pass it with systemd's \
               LoadCredential= (README)";
    let shown = path.display();
    if mode & 0o077 != 0 {
        return Some(format!(
            "{key} = {shown}: the file has mode {mode:04o}, so its group or others can read or \
             change the secret: {fix}"
        ));
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "{key} = {shown}: the file is owned by uid {}, not by the daemon's user (uid {me}) \
             or root, so that user can change the secret: {fix}",
            meta.uid()
        ));
    }
    // Its folders too, up to `/`, as written and as a link leads (OpenSSH's StrictModes):
    // whoever may write in one can put another file, or another folder, in its place.
    let written = std::path::absolute(path).ok()?;
    let real = std::fs::canonicalize(path).ok()?;
    let folders = (written.ancestors().skip(1)).chain(real.ancestors().skip(1));
    let (folder, held) = folders
        .filter_map(|f| Some((f, std::fs::metadata(f).ok()?)))
        .find(|(_, held)| {
            let folder_mode = held.permissions().mode();
            let others_write = folder_mode & 0o022 != 0 && folder_mode & 0o1000 == 0;
            others_write || held.uid() != me && held.uid() != 0
        })?;
    Some(format!(
        "{key} = {shown}: its folder {} (mode {:04o}, uid {}) may be written by others than \
         the daemon's user and root, who can put another secret in its place: keep it in \
         folders of the daemon's user or root that only they may write, or pass it with \
         systemd's LoadCredential= (README)",
        folder.display(),
        held.permissions().mode() & 0o7777,
        held.uid()
    ))
}

/// Checks `value` of config key `key` is an `https://` URL with a host. The messages show
/// the URL as [`shown`] does: a config error is printed by every command, and the URL may
/// hold a credential (a pre-signed link's signature, a user and password).
pub fn check_https(key: &str, value: &str) -> Result<()> {
    let url = match reqwest::Url::parse(value.trim()) {
        Ok(url) => url,
        Err(e) => bail!("{key}: not a URL ({e})"),
    };
    let value = shown(value.trim());
    if url.scheme() != "https" {
        bail!(
            "{key} = \"{value}\": only https:// URLs are allowed (the roster and the credentials must not travel in clear text)"
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("{key} = \"{value}\": the URL has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("{key} = \"{value}\": credentials belong in the *_file keys, not in the URL");
    }
    Ok(())
}

/// `url` as messages show it: its scheme, host and port only, `/…` for the rest. A URL may
/// hold a credential anywhere after its host: a user and password, a pre-signed link's
/// signature in its query, a published link's secret in its path.
pub fn shown(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "the configured URL".to_string();
    };
    let origin = parsed.origin().ascii_serialization();
    let rest = parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some();
    match (origin.as_str(), rest) {
        ("null", _) => "the configured URL".to_string(),
        (_, true) => format!("{origin}/…"),
        (_, false) => origin,
    }
}

fn require(key: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        bail!("{key} is empty");
    }
    Ok(())
}

fn require_file(key: &str, value: &Path) -> Result<()> {
    if value.as_os_str().is_empty() {
        bail!("{key} is empty: name the file that holds the secret");
    }
    Ok(())
}

impl Hris {
    /// The HR system, once [`Hris::validate`] found it set.
    pub fn provider(&self) -> Provider {
        self.provider_set
            .expect("source.hris.provider is checked by validate")
    }

    /// The time of day of the first fetch (hour, minute, UTC); None = at start-up.
    pub fn at_utc(&self) -> Option<(u32, u32)> {
        parse_at(&self.at).ok().flatten()
    }

    /// Checks what serde cannot: the schedule, the provider's section, https:// URLs and
    /// that every credential is named by a file.
    pub fn validate(&self) -> Result<()> {
        parse_at(&self.at)?;
        let section = |name: &str| {
            anyhow::anyhow!(
                "source.hris.provider = \"{name}\" needs a [source.hris.{name}] section"
            )
        };
        let Some(provider) = self.provider_set else {
            bail!("source.hris.provider is missing: \"bamboohr\", \"workday\" or \"csv_url\"");
        };
        match provider {
            Provider::Bamboohr => {
                let b = self.bamboohr.as_ref().ok_or_else(|| section("bamboohr"))?;
                check_https("source.hris.bamboohr.base_url", &b.base_url)?;
                require("source.hris.bamboohr.subdomain", &b.subdomain)?;
                if b.subdomain.contains(['/', '?', '#', '%']) {
                    bail!(
                        "source.hris.bamboohr.subdomain = \"{}\": only the subdomain (acme for acme.bamboohr.com)",
                        b.subdomain
                    );
                }
                require_file("source.hris.bamboohr.api_key_file", &b.api_key_file)?;
                require("source.hris.bamboohr.id_field", &b.id_field)?;
                require("source.hris.bamboohr.manager_field", &b.manager_field)?;
                // supervisorEId holds the supervisor's BambooHR id: beside another id field
                // every manager_id would name nobody, or the wrong employee.
                if b.id_field.trim() != "id" && b.manager_field.trim() == "supervisorEId" {
                    bail!(
                        "source.hris.bamboohr.id_field = \"{}\" needs a manager_field holding the \
                         supervisor's {} (supervisorEId holds the supervisor's BambooHR id, so \
                         is_manager would be wrong): set source.hris.bamboohr.manager_field",
                        b.id_field.trim(),
                        b.id_field.trim()
                    );
                }
            }
            Provider::Workday => {
                let w = self.workday.as_ref().ok_or_else(|| section("workday"))?;
                validate_workday(w)?;
            }
            Provider::CsvUrl => {
                let c = self.csv_url.as_ref().ok_or_else(|| section("csv_url"))?;
                validate_csv_url(c)?;
            }
        }
        Ok(())
    }
}

fn validate_workday(w: &Workday) -> Result<()> {
    require("source.hris.workday.report_url", &w.report_url)?;
    check_https("source.hris.workday.report_url", &w.report_url)?;
    match w.auth {
        WorkdayAuth::Basic => {
            require("source.hris.workday.username", &w.username)?;
            require_file("source.hris.workday.password_file", &w.password_file)?;
        }
        WorkdayAuth::Oauth => {
            check_https("source.hris.workday.token_url", &w.token_url)?;
            require("source.hris.workday.client_id", &w.client_id)?;
            require_file(
                "source.hris.workday.client_secret_file",
                &w.client_secret_file,
            )?;
            require_file(
                "source.hris.workday.refresh_token_file",
                &w.refresh_token_file,
            )?;
        }
    }
    Ok(())
}

fn validate_csv_url(c: &CsvUrl) -> Result<()> {
    require("source.hris.csv_url.url", &c.url)?;
    check_https("source.hris.csv_url.url", &c.url)?;
    let bearer = !c.bearer_token_file.as_os_str().is_empty();
    let user = !c.username.trim().is_empty();
    let password = !c.password_file.as_os_str().is_empty();
    if bearer && (user || password) {
        bail!("source.hris.csv_url: use bearer_token_file or username/password_file, not both");
    }
    if user != password {
        bail!("source.hris.csv_url: username and password_file go together");
    }
    Ok(())
}

/// `HH:MM` (UTC) or empty.
fn parse_at(at: &str) -> Result<Option<(u32, u32)>> {
    let at = at.trim();
    if at.is_empty() {
        return Ok(None);
    }
    let parsed = at.split_once(':').and_then(|(h, m)| {
        let ok = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        (ok(h) && ok(m)).then(|| (h.parse::<u32>().ok(), m.parse::<u32>().ok()))
    });
    match parsed {
        Some((Some(h), Some(m))) if h < 24 && m < 60 => Ok(Some((h, m))),
        _ => bail!(
            "source.hris.at = \"{at}\": write the time of day as HH:MM in UTC (e.g. \"02:00\"), or leave it empty to fetch at start-up"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL in a message keeps where it points and loses what may be a credential.
    #[test]
    fn urls_are_shown_without_user_password_query_or_fragment() {
        assert_eq!(
            shown("https://files.example/exports/roster.csv?X-Amz-Signature=abc&sig=def#x"),
            "https://files.example/…"
        );
        assert_eq!(
            shown("https://me:pw@hr.example:8443/api/report"),
            "https://hr.example:8443/…"
        );
        assert_eq!(
            shown("https://docs.example/spreadsheets/d/e/2PACX-secret/pub?output=csv"),
            "https://docs.example/…"
        );
        assert_eq!(shown("https://hr.example"), "https://hr.example");
        assert_eq!(shown("not a url ?token=abc"), "the configured URL");
    }

    /// A config error names the key and where the URL points, never what may be a secret.
    #[test]
    fn a_refused_url_is_named_without_its_credentials() {
        for url in [
            "https://svc:S3cret@hr.example/export.csv",
            "http://files.example/roster.csv?X-Amz-Signature=S3cret",
            "ftp://files.example/S3cret/roster.csv",
        ] {
            let err = check_https("source.hris.csv_url.url", url)
                .unwrap_err()
                .to_string();
            assert!(!err.contains("S3cret"), "{err}");
            assert!(
                err.contains("source.hris.csv_url.url")
                    && (err.contains("files.example") || err.contains("hr.example")),
                "{err}"
            );
        }
    }
    use crate::config::{Config, Mode};
    use std::io::Write;

    fn load(text: &str) -> Result<Config> {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Config::load(Some(f.path()))
    }

    const BAMBOO: &str = "[source]\nmode = \"hris\"\n[source.hris]\nprovider = \"bamboohr\"\n\
        [source.hris.bamboohr]\nsubdomain = \"acme\"\napi_key_file = \"/k\"\n";

    #[test]
    fn spec_keys_and_defaults() {
        let c = load(BAMBOO).unwrap();
        assert_eq!(c.source.mode, Mode::Hris);
        let h = c.source.hris.unwrap();
        assert_eq!(h.provider(), Provider::Bamboohr);
        assert_eq!(h.at_utc(), None);
        assert_eq!(h.every, Duration::from_secs(86_400));
        assert_eq!(h.timeout, Duration::from_secs(300));
        assert_eq!(h.retries, 5);
        let b = h.bamboohr.unwrap();
        assert_eq!(b.base_url, "https://api.bamboohr.com");
        assert_eq!(b.id_field, "id");
        assert_eq!(b.manager_field, "supervisorEId");
    }

    #[test]
    fn a_zero_schedule_or_time_limit_is_refused() {
        for key in ["every", "timeout"] {
            let text = BAMBOO.replace(
                "provider = \"bamboohr\"\n",
                &format!("provider = \"bamboohr\"\n{key} = \"0s\"\n"),
            );
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(
                err.contains(&format!("source.hris.{key} must be longer")),
                "{err}"
            );
        }
    }

    /// Settings that would make a BambooHR or Workday roster read wrongly are refused.
    #[test]
    fn settings_that_misread_a_provider_roster_are_refused() {
        let err = format!(
            "{:#}",
            load(&format!("{BAMBOO}id_field = \"employeeNumber\"\n")).unwrap_err()
        );
        assert!(err.contains("source.hris.bamboohr.manager_field"), "{err}");
        load(&format!(
            "{BAMBOO}id_field = \"employeeNumber\"\nmanager_field = \"customSupervisorNumber\"\n"
        ))
        .unwrap();
        let err = format!(
            "{:#}",
            load(&format!("[roster]\nencoding = \"windows-1252\"\n{BAMBOO}")).unwrap_err()
        );
        assert!(
            err.contains("roster.encoding") && err.contains("bamboohr"),
            "{err}"
        );
    }

    #[test]
    fn the_example_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for (file, provider) in [
            ("autoprov.hris-bamboohr.toml", Provider::Bamboohr),
            ("autoprov.hris-workday.toml", Provider::Workday),
            ("autoprov.hris-csv_url.toml", Provider::CsvUrl),
        ] {
            let c = Config::load(Some(&dir.join(file))).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert_eq!(c.source.mode, Mode::Hris, "{file}");
            assert_eq!(c.source.hris.unwrap().provider(), provider, "{file}");
        }
    }

    #[test]
    fn plain_http_is_a_config_error_naming_the_key() {
        let text = BAMBOO.replace(
            "subdomain",
            "base_url = \"http://api.bamboohr.com\"\nsubdomain",
        );
        let err = format!("{:#}", load(&text).unwrap_err());
        assert!(
            err.contains("source.hris.bamboohr.base_url") && err.contains("https://"),
            "{err}"
        );
        let workday = "[source]\nmode = \"hris\"\n[source.hris]\nprovider = \"workday\"\n\
            [source.hris.workday]\nreport_url = \"https://wd/r\"\nauth = \"oauth\"\n\
            token_url = \"http://wd/token\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n\
            refresh_token_file = \"/r\"\n";
        let err = format!("{:#}", load(workday).unwrap_err());
        assert!(err.contains("source.hris.workday.token_url"), "{err}");
        assert!(load(&workday.replace("http://wd/token", "https://wd/token")).is_ok());
        let csv = "[source]\nmode = \"hris\"\n[source.hris]\nprovider = \"csv_url\"\n\
            [source.hris.csv_url]\nurl = \"http://x/r.csv\"\n";
        let err = format!("{:#}", load(csv).unwrap_err());
        assert!(err.contains("source.hris.csv_url.url"), "{err}");
    }

    #[test]
    fn what_the_mode_and_the_provider_need() {
        let err = format!("{:#}", load("[source]\nmode = \"hris\"\n").unwrap_err());
        assert!(err.contains("[source.hris]"), "{err}");
        let err = format!(
            "{:#}",
            load("[source]\nmode = \"hris\"\n[source.hris]\nprovider = \"workday\"\n").unwrap_err()
        );
        assert!(err.contains("[source.hris.workday]"), "{err}");
        let err = format!(
            "{:#}",
            load("[source.hris]\nprovider = \"sap\"\n").unwrap_err()
        );
        assert!(err.contains("source.hris.provider = \"sap\""), "{err}");
        let err = format!(
            "{:#}",
            load(&BAMBOO.replace("[source.hris]\n", "[source.hris]\nat = \"25:00\"\n"))
                .unwrap_err()
        );
        assert!(err.contains("source.hris.at"), "{err}");
        let c =
            load(&BAMBOO.replace("[source.hris]\n", "[source.hris]\nat = \"02:30\"\n")).unwrap();
        assert_eq!(c.source.hris.unwrap().at_utc(), Some((2, 30)));
    }

    #[test]
    fn secrets_are_named_by_files_only() {
        let err = format!(
            "{:#}",
            load(&BAMBOO.replace("api_key_file = \"/k\"", "api_key = \"s3cret\"")).unwrap_err()
        );
        assert!(err.contains("api_key"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let csv = "[source]\nmode = \"hris\"\n[source.hris]\nprovider = \"csv_url\"\n\
            [source.hris.csv_url]\nurl = \"https://x/r.csv\"\nusername = \"u\"\n";
        let err = format!("{:#}", load(csv).unwrap_err());
        assert!(err.contains("password_file"), "{err}");
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_errors_never_show_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        for (content, want) in [
            ("abc\n", "abc"),
            ("abc\r\n", "abc"),
            ("abc", "abc"),
            ("a\tb \n", "a\tb "),
            ("abc\n\n", "abc"),
            ("abc\r\n\r\n\n", "abc"),
        ] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_secret("k", &path).unwrap().expose(), want);
        }
        // A line break in it, or blank space alone: refused at start, naming the key and the
        // file only.
        for content in ["top\n \n", "top\rsecret", "top\nsecret\n", " \n", "\n\n"] {
            std::fs::write(&path, content).unwrap();
            let err = format!("{:#}", read_secret("k", &path).unwrap_err());
            assert!(
                err.starts_with(&format!("k = {}: ", path.display())),
                "{err}"
            );
            assert!(!err.contains("top"), "the content is never shown: {err}");
        }
        std::fs::write(&path, "topsecret\n").unwrap();
        assert_eq!(
            format!("{:?}", read_secret("k", &path).unwrap()),
            "Secret(***)"
        );
        let missing = dir.path().join("nope");
        let err = format!(
            "{:#}",
            read_secret("source.hris.bamboohr.api_key_file", &missing).unwrap_err()
        );
        assert!(
            err.contains("source.hris.bamboohr.api_key_file")
                && err.contains(&missing.display().to_string()),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        let err = format!("{:#}", read_secret("k", &path).unwrap_err());
        assert!(err.contains("the file is empty"), "{err}");
        std::fs::write(&path, "\n\r\n").unwrap();
        let err = format!("{:#}", read_secret("k", &path).unwrap_err());
        assert!(err.contains("only blank space or line breaks"), "{err}");
    }

    /// A secret file its group or others may read or change is warned of, naming the key,
    /// the file and its mode; one of the daemon's user alone is not.
    #[test]
    fn a_secret_file_others_may_read_is_warned_of() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        let chmod = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        for mode in [0o600, 0o400, 0o700] {
            chmod(mode).unwrap();
            assert_eq!(shared_warning("k", &path), None, "{mode:o}");
        }
        for mode in [0o640, 0o644, 0o604, 0o620, 0o602] {
            chmod(mode).unwrap();
            let warning = shared_warning("notify.webhook_url_file", &path).unwrap();
            assert!(
                warning.starts_with(&format!("notify.webhook_url_file = {}: ", path.display()))
                    && warning.contains(&format!("mode {mode:04o}"))
                    && warning.contains("0600"),
                "{warning}"
            );
            assert!(!warning.contains("s3cret"), "{warning}");
        }
        assert_eq!(shared_warning("k", &dir.path().join("gone")), None);
    }

    /// A 0600 secret file owned by another user than the daemon's or root is warned of:
    /// that user can change it.
    #[test]
    fn a_secret_file_another_user_owns_is_warned_of() {
        use std::os::unix::fs::PermissionsExt;
        if !crate::util::test_as_root("it gives a file away") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(shared_warning("k", &path), None, "root's own file");
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let warning = shared_warning("source.remote.private_key", &path).unwrap();
        assert!(
            warning.starts_with(&format!("source.remote.private_key = {}: ", path.display()))
                && warning.contains("owned by uid 65534")
                && warning.contains("0600"),
            "{warning}"
        );
        assert!(!warning.contains("s3cret"), "{warning}");
        // Root's own 0600 file in a folder another user owns, or that others may write
        // (without the sticky bit): they can swap the file.
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
        let warning = shared_warning("k", &path).unwrap();
        assert!(
            warning.contains("its folder") && warning.contains("uid 65534"),
            "{warning}"
        );
        std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
        let folder =
            |mode| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode));
        folder(0o777).unwrap();
        assert!(shared_warning("k", &path).unwrap().contains("mode 0777"));
        folder(0o1777).unwrap();
        assert_eq!(shared_warning("k", &path), None, "sticky, as /tmp");
        folder(0o755).unwrap();
        assert_eq!(shared_warning("k", &path), None);
        // A folder higher up that others may write; a link whose target's folder is.
        let below = dir.path().join("sub");
        std::fs::create_dir(&below).unwrap();
        let deep = below.join("key");
        std::fs::write(&deep, "s3cret\n").unwrap();
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(shared_warning("k", &deep), None);
        folder(0o777).unwrap();
        let warning = shared_warning("k", &deep).unwrap();
        assert!(
            warning.contains(&format!("its folder {} ", dir.path().display())),
            "{warning}"
        );
        folder(0o755).unwrap();
        let safe = tempfile::tempdir().unwrap();
        let link = safe.path().join("key");
        std::os::unix::fs::symlink(&deep, &link).unwrap();
        assert_eq!(shared_warning("k", &link), None);
        std::fs::set_permissions(&below, std::fs::Permissions::from_mode(0o777)).unwrap();
        let warning = shared_warning("k", &link).unwrap();
        assert!(
            warning.contains(&format!("its folder {} ", below.display())),
            "{warning}"
        );
    }
}
