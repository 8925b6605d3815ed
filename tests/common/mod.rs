//! Helpers shared by the integration tests: a temporary autoprov installation (config,
//! data dir, control socket) and runners for the real `autoprov` binary.
//!
//! ```ignore
//! mod common;
//! use common::{TestEnv, Settings};
//! let env = TestEnv::new();                       // sso on, default limits
//! let (code, out, err) = env.run(&["rules", "list"]);
//! let (code, json) = env.json(&["admins", "list"]); // adds --json, parses stdout
//! let env2 = TestEnv::with(Settings { max_grants: Some((1000, 100)), ..Settings::default() });
//! ```
#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod https;
pub mod prereq;
pub mod sftp;
pub mod sshd;
pub mod sso_proxy;
pub mod webhook;

pub use prereq::{Need, require};
use serde_json::Value;
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_autoprov");

/// What goes into the generated config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[sso] enabled`.
    pub sso_enabled: bool,
    /// `control.org_admins`; `None` = `["root", <current user>]`.
    pub org_admins: Option<Vec<String>>,
    /// `safety.max_grants = { count, percent }`; `None` leaves the section out (defaults).
    pub max_grants: Option<(u64, u32)>,
    /// `safety.max_deactivations = { count, percent }`; `None` leaves it out.
    pub max_deactivations: Option<(u64, u32)>,
    /// `log.level`.
    pub log_level: String,
    /// Appended verbatim at the end of the file. It may add tables such as `[roster]`,
    /// `[source]`, `[provisioning]`, `[[source.users]]`; it must not repeat `[sso]`,
    /// `[control]`, `[log]`, nor `[safety]` when a limit above is set.
    pub extra_toml: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sso_enabled: true,
            org_admins: None,
            max_grants: None,
            max_deactivations: None,
            log_level: "warn".into(),
            extra_toml: String::new(),
        }
    }
}

// ---- waiting -----------------------------------------------------------------------------

/// How often [`wait_until`] and [`stays`] look.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every 50 ms until it gives `Some`, at most `timeout`, and returns that. On
/// timeout panics with "timed out after … waiting for {what}" (the guards of daemons and
/// servers print their logs); `what` may be [`lazy`] to show the state at that point.
pub fn wait_until<T>(
    what: impl Display,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// "Nothing more happens": checks `holds` every 50 ms for `period`, first at once and last
/// at its end; panics with `what` the first time it does not hold. Use it after waiting for
/// a state, with a period that spans the rescans or polls that could still change it.
pub fn stays(what: impl Display, period: Duration, mut holds: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        assert!(holds(), "no longer so after {elapsed:?}: {what}");
        if elapsed >= period {
            return;
        }
        std::thread::sleep(POLL.min(period - elapsed));
    }
}

/// A message computed only when shown, e.g. with the state at a timeout.
pub fn lazy<F: Fn() -> String>(message: F) -> Lazy<F> {
    Lazy(message)
}

/// See [`lazy`].
pub struct Lazy<F>(F);

impl<F: Fn() -> String> Display for Lazy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// The Unix user running the tests.
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => format!("uid:{uid}"),
    }
}

/// `testdata/<rel>` of this crate.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// A temp dir with a config file and a data dir; removed on drop.
pub struct TestEnv {
    /// The temp dir holding everything.
    pub dir: tempfile::TempDir,
    /// `<dir>/autoprov.toml`.
    pub config: PathBuf,
    /// `<dir>/data`.
    pub data_dir: PathBuf,
    /// `<dir>/autoprov.sock`.
    pub socket: PathBuf,
    /// What the config was written from.
    pub settings: Settings,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl TestEnv {
    /// Default settings: SSO enabled, root and the current user as org admins.
    pub fn new() -> TestEnv {
        TestEnv::with(Settings::default())
    }

    /// A new environment with these settings.
    pub fn with(settings: Settings) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("ap")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let env = TestEnv {
            config: root.join("autoprov.toml"),
            data_dir: root.join("data"),
            socket: root.join("autoprov.sock"),
            dir,
            settings,
        };
        env.write_config();
        env
    }

    /// The temp dir.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The config text for the current settings.
    pub fn config_toml(&self) -> String {
        let s = &self.settings;
        let admins = s.org_admins.clone().unwrap_or_else(|| {
            let mut v = vec!["root".to_string()];
            let me = current_user();
            if me != "root" {
                v.push(me);
            }
            v
        });
        let mut t = String::new();
        t.push_str(&format!("data_dir = {}\n\n", toml_str(&self.data_dir)));
        t.push_str(&format!(
            "[sso]\nenabled = {}\nprovider = \"test\"\n\n",
            s.sso_enabled
        ));
        t.push_str(&format!(
            "[control]\nsocket = {}\norg_admins = [{}]\n\n",
            toml_str(&self.socket),
            admins
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        t.push_str(&format!(
            "[log]\nformat = \"text\"\nlevel = {:?}\n\n",
            s.log_level
        ));
        if s.max_grants.is_some() || s.max_deactivations.is_some() {
            t.push_str("[safety]\n");
            if let Some((c, p)) = s.max_grants {
                t.push_str(&format!("max_grants = {{ count = {c}, percent = {p} }}\n"));
            }
            if let Some((c, p)) = s.max_deactivations {
                t.push_str(&format!(
                    "max_deactivations = {{ count = {c}, percent = {p} }}\n"
                ));
            }
            t.push('\n');
        }
        t.push_str(&s.extra_toml);
        t.push('\n');
        t
    }

    /// (Re)writes the config file from `self.settings`.
    pub fn write_config(&self) {
        fs::write(&self.config, self.config_toml()).expect("write config");
    }

    /// Changes the settings and rewrites the config (the data dir is kept).
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.settings);
        self.write_config();
    }

    /// A command for the binary with `--config`, inherited `AUTOPROV__*` and `RUST_LOG`
    /// variables removed.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&self.config);
        for (k, _) in std::env::vars_os() {
            let key = k.to_string_lossy();
            if key.starts_with("AUTOPROV") || key == "RUST_LOG" {
                cmd.env_remove(&k);
            }
        }
        cmd.current_dir(self.root());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `autoprov --config C ARGS...`: (exit code, stdout, stderr). A signal death is -1.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, String, String) {
        self.run_env(args, &[])
    }

    /// Like [`TestEnv::run`], with extra environment variables for the child.
    pub fn run_env<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        envs: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run autoprov");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `autoprov --config C ARGS...` with its stdout closed before it writes anything
    /// (a reader that stopped, as `| head` does): (exit code, stderr).
    pub fn run_reader_gone<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, String) {
        let mut child = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn autoprov");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for autoprov");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs with `--json` and parses stdout: (exit code, value). Panics when stdout is not JSON.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, Value) {
        self.json_env(args, &[])
    }

    /// Like [`TestEnv::json`], with extra environment variables.
    pub fn json_env<S: AsRef<OsStr>>(&self, args: &[S], envs: &[(&str, &str)]) -> (i32, Value) {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--json")];
        all.extend(args.iter().map(|a| a.as_ref()));
        let (code, out, err) = self.run_env(&all, envs);
        let v = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("autoprov --json {all:?}: stdout is not JSON ({e})\nexit {code}\nstdout:\n{out}\nstderr:\n{err}")
        });
        (code, v)
    }

    /// Runs with `--json`, asserts exit code `want`, returns the value.
    pub fn json_ok<S: AsRef<OsStr>>(&self, want: i32, args: &[S]) -> Value {
        let (code, v) = self.json(args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            code, want,
            "autoprov --json {shown:?}: exit {code}, output:\n{v:#}"
        );
        v
    }

    /// Runs and asserts the exit code; returns stdout + stderr for message checks.
    pub fn expect<S: AsRef<OsStr>>(&self, want: i32, args: &[S]) -> String {
        let (code, out, err) = self.run(args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            code, want,
            "autoprov {shown:?}: exit {code}\nstdout:\n{out}\nstderr:\n{err}"
        );
        format!("{out}{err}")
    }

    /// A drop folder: `inbox`, `processed`, `rejected` or `held`.
    pub fn drop_dir(&self, folder: &str) -> PathBuf {
        self.data_dir.join("drop").join(folder)
    }

    /// Sorted names in a drop folder (empty when it does not exist).
    pub fn files_in(&self, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.drop_dir(folder)) {
            Ok(rd) => rd
                .map(|e| {
                    e.expect("dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Reads `<folder>/<stored_as>.report.json`.
    pub fn report_file(&self, folder: &str, stored_as: &str) -> Value {
        let p = self
            .drop_dir(folder)
            .join(format!("{stored_as}.report.json"));
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Reads `<folder>/<stored_as>.report.txt`.
    pub fn report_text(&self, folder: &str, stored_as: &str) -> String {
        let p = self
            .drop_dir(folder)
            .join(format!("{stored_as}.report.txt"));
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Writes `bytes` as `<dir>/input/<name>` (outside the data dir) and returns the path.
    pub fn input(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let dir = self.root().join("input");
        fs::create_dir_all(&dir).expect("input dir");
        let p = dir.join(name);
        fs::write(&p, bytes).expect("write input");
        p
    }

    /// Copies `testdata/<rel>` to `<dir>/input/<name>` and returns the path.
    pub fn input_from(&self, rel: &str, name: &str) -> PathBuf {
        let bytes = fs::read(testdata(rel)).unwrap_or_else(|e| panic!("testdata/{rel}: {e}"));
        self.input(name, &bytes)
    }

    /// `process FILE [extra...] --json`: (exit code, report).
    pub fn process(&self, file: &Path, extra: &[&str]) -> (i32, Value) {
        let mut args: Vec<&OsStr> = vec![OsStr::new("process"), file.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        self.json(&args)
    }

    /// Adds the rules of `testdata/rules.txt`, one `rules add` per line, as
    /// `testdata/load_rules.sh` does; asserts each exits 0 and gets ids 1, 2, …
    pub fn load_sample_rules(&self) -> Vec<SampleRule> {
        let rules = sample_rules();
        for (i, r) in rules.iter().enumerate() {
            let mut args: Vec<String> = vec![
                "rules".into(),
                "add".into(),
                "--name".into(),
                r.name.clone(),
                "--role".into(),
                r.role.clone(),
            ];
            for c in &r.conditions {
                args.push("--when".into());
                args.push(c.clone());
            }
            let v = self.json_ok(0, &args);
            assert_eq!(v["id"], (i + 1) as u64, "rule {:?}: {v:#}", r.name);
        }
        rules
    }

    /// `admins list --json [filters]` as (employee_id -> account).
    pub fn accounts(&self, filters: &[&str]) -> std::collections::BTreeMap<String, Value> {
        let mut args = vec!["admins", "list"];
        args.extend_from_slice(filters);
        let v = self.json_ok(0, &args);
        v.as_array()
            .expect("admins list is an array")
            .iter()
            .map(|a| {
                (
                    a["employee_id"].as_str().expect("employee_id").to_string(),
                    a.clone(),
                )
            })
            .collect()
    }
}

/// A line of `testdata/rules.txt`.
#[derive(Debug, Clone)]
pub struct SampleRule {
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// `--when` arguments.
    pub conditions: Vec<String>,
}

/// Parses `testdata/rules.txt` like `load_rules.sh`: `NAME | ROLE | COND ; COND`, splitting
/// outside double quotes, skipping blank and `#` lines.
pub fn sample_rules() -> Vec<SampleRule> {
    let text = fs::read_to_string(testdata("rules.txt")).expect("testdata/rules.txt");
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts = split_quoted(line, '|');
        assert_eq!(parts.len(), 3, "rules.txt line {line:?}");
        out.push(SampleRule {
            name: parts[0].clone(),
            role: parts[1].clone(),
            conditions: split_quoted(&parts[2], ';'),
        });
    }
    out
}

fn split_quoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    for ch in s.chars() {
        if ch == '"' {
            in_quotes = !in_quotes;
            cur.push(ch);
        } else if ch == sep && !in_quotes {
            parts.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(ch);
        }
    }
    parts.push(cur.trim().to_string());
    parts
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.to_str().expect("utf-8 temp path"))
}

/// Whether `s` is an RFC 3339 UTC time with seconds, e.g. `2026-11-26T07:46:13Z`
/// (fractional seconds allowed).
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !s.ends_with('Z') {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1) && b.len() > 21))
}

/// `2026-11-26T07:46:13Z` -> `20261126T074613Z`.
pub fn compact(rfc3339: &str) -> String {
    rfc3339[..19]
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect::<String>()
        + "Z"
}

/// Whether `name` is `YYYYMMDDTHHMMSSZ_<original>`.
pub fn is_filed_name(name: &str, original: &str) -> bool {
    let b = name.as_bytes();
    name.len() == 17 + original.len()
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'_'
        && &name[17..] == original
}

/// `files list --json`: the ledger.
pub fn files(env: &TestEnv) -> Vec<Value> {
    env.json_ok(0, &["files", "list"])
        .as_array()
        .expect("files list is an array")
        .clone()
}

/// The ledger entries whose original name is `name`.
pub fn entries(env: &TestEnv, name: &str) -> Vec<Value> {
    files(env)
        .into_iter()
        .filter(|f| f["name"] == name)
        .collect()
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The string values of `v[key]` over an array.
pub fn strs(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| {
            x[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} in {x}"))
                .to_string()
        })
        .collect()
}

impl TestEnv {
    /// Runs `autoprov --config C ARGS...` as another Unix user (and group), through
    /// `setpriv --reuid U --regid G --clear-groups`: (exit code, stdout, stderr). The test
    /// must be root, and the user must be able to read the config and reach the socket.
    pub fn run_as<S: AsRef<OsStr>>(
        &self,
        user: &str,
        group: &str,
        args: &[S],
    ) -> (i32, String, String) {
        require(Need::Root);
        let inner = self.command();
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={user}"))
            .arg(format!("--regid={group}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args())
            .args(args);
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.current_dir(self.root()).stdin(Stdio::null());
        let out = cmd.output().expect("run setpriv autoprov");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// application/x-www-form-urlencoded (and query and path segment) encoding.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
