//! Poll mode end to end (SPEC §5 `poll`): `autoprov run` fetching from Debian's OpenSSH
//! sshd (`/usr/sbin/sshd -D -e -f CONFIG`, `Subsystem sftp internal-sftp`) on a free
//! loopback port with its own host key and authorized key.
//!
//! Every test has its own sshd (killed on drop), its own temp data dir and control socket,
//! and its own daemon (SIGKILLed on drop, its log printed when a test panics). The remote
//! folders are absolute paths under the sshd's temp dir: `<sshd>/data/outgoing` (inbox),
//! `outgoing/processed`, `outgoing/rejected`. The daemon polls every second with a 5 s
//! step timeout. Waits are bounded and fail with the daemon's and sshd's logs.

mod common;

use common::daemon::Daemon;
use common::sshd::{Sshd, UserKey};
use common::webhook::{Answer, Receiver};
use common::{
    Settings, TestEnv, entries, files, is_filed_name, is_rfc3339_utc, sha256_hex, stays, testdata,
    wait_until,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---- sshd ------------------------------------------------------------------------------

/// The sshd's folders: `data/outgoing` is the remote inbox, `data/staging` is where
/// [`Sshd::put`] writes before renaming in.
const SSHD_FOLDERS: &[&str] = &[
    "data/outgoing/processed",
    "data/outgoing/rejected",
    "data/staging",
];

impl Sshd {
    /// Prepares everything; the `user_pubs` files go into authorized_keys.
    fn prepare(user_pubs: &[&Path]) -> Sshd {
        Sshd::prepare_with(user_pubs, "sshd", SSHD_FOLDERS)
    }

    fn started(user_pubs: &[&Path]) -> Sshd {
        Sshd::started_with(user_pubs, "sshd", SSHD_FOLDERS)
    }

    /// `<sshd>/data/outgoing[/sub]` on the server's disk (also the remote path).
    fn remote(&self, sub: &str) -> PathBuf {
        let p = self.dir.path().join("data/outgoing");
        if sub.is_empty() { p } else { p.join(sub) }
    }

    /// Writes `bytes` outside the remote inbox and renames it in (a complete file).
    fn put(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.path().join("data/staging").join(name);
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.remote("").join(name)).unwrap();
    }

    /// Sorted names of the regular files (not folders) in `outgoing[/sub]`.
    fn files(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.remote(sub))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// `[source]` + `[source.remote]` for this server.
    fn source_toml(&self, private_key: &Path, known_host_key: &str, rescan: &str) -> String {
        let inbox = self.remote("").display().to_string();
        format!(
            "[source]\nmode = \"poll\"\nrescan_interval = {rescan:?}\n\n[source.remote]\n\
             host = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\nprivate_key = {key:?}\n\
             known_host_key = {khk:?}\ninbox = {inbox:?}\nprocessed = {processed:?}\n\
             rejected = {rejected:?}\npoll_interval = \"1s\"\ntimeout = \"5s\"\n",
            port = self.port,
            key = private_key.to_str().unwrap(),
            khk = known_host_key,
            processed = format!("{inbox}/processed"),
            rejected = format!("{inbox}/rejected"),
        )
    }
}

// ---- waiting ---------------------------------------------------------------------------
// On a timeout the daemon's guard prints its log and the sshd's guard the tail of its own.

impl Sshd {
    /// Waits until autoprov has opened `n` more SSH sessions. With no remote move pending
    /// each one is a poll that lists the remote inbox again, and all but the last are over.
    fn wait_polls(&self, n: usize) {
        let want = connections(self) + n;
        wait_until(
            format!("{n} more poll sessions"),
            Duration::from_secs(30),
            || (connections(self) >= want).then_some(()),
        );
    }
}

// ---- environments and checks -------------------------------------------------------------

/// A poll-mode environment against `sshd` (log level info; one rule: department IT gets
/// "IT Admin"). `key` logs in; `known_host_key` is pinned.
fn poll_env(sshd: &Sshd, key: &UserKey, known_host_key: &str, settings: Settings) -> TestEnv {
    poll_env_rescan(sshd, key, known_host_key, settings, "1s")
}

/// [`poll_env`] with `source.rescan_interval = rescan` (the local inbox rescan).
fn poll_env_rescan(
    sshd: &Sshd,
    key: &UserKey,
    known_host_key: &str,
    mut settings: Settings,
    rescan: &str,
) -> TestEnv {
    settings.log_level = "info".into();
    settings
        .extra_toml
        .push_str(&sshd.source_toml(&key.private(), known_host_key, rescan));
    let env = TestEnv::with(settings);
    let rule = env.json_ok(
        0,
        &[
            "rules",
            "add",
            "--name",
            "IT staff",
            "--role",
            "IT Admin",
            "--when",
            "department = IT",
        ],
    );
    assert_eq!(rule["id"], 1, "{rule:#}");
    env
}

/// Limits high enough that a first import is applied, not held.
fn no_limits() -> Settings {
    Settings {
        max_grants: Some((1_000_000, 100)),
        ..Settings::default()
    }
}

/// A roster with employees `<prefix>001..=<prefix><n>`, all in IT.
fn roster(prefix: &str, ids: std::ops::RangeInclusive<usize>) -> String {
    let mut s = String::from("Employee ID,Work Email,Department\n");
    for i in ids {
        s.push_str(&row(prefix, i));
    }
    s
}

fn row(prefix: &str, i: usize) -> String {
    format!(
        "{prefix}{i:03},{}{i}@acme.example,IT\n",
        prefix.to_lowercase()
    )
}

/// Waits until `name` is held, then, three polls later, checks that it is still the only
/// file in the remote inbox; returns its ledger entry.
fn held_and_left_remote(env: &TestEnv, sshd: &Sshd, name: &str) -> Value {
    let entry = wait_until(format!("{name} held"), Duration::from_secs(20), || {
        entries(env, name)
            .into_iter()
            .find(|e| e["status"] == "held")
    });
    sshd.wait_polls(3);
    assert_eq!(
        sshd.files(""),
        [name],
        "stays in the remote inbox while held"
    );
    entry
}

fn stored_as(entry: &Value) -> String {
    entry["stored_as"]
        .as_str()
        .unwrap_or_else(|| panic!("stored_as: {entry:#}"))
        .to_string()
}

/// `status --json` → `daemon.poll`.
fn poll_status(env: &TestEnv) -> Value {
    let st = env.json_ok(0, &["status"]);
    let poll = st["daemon"]["poll"].clone();
    assert!(poll.is_object(), "daemon.poll in poll mode: {st:#}");
    poll
}

/// `(employee_id, role, status, origin)` of every account, sorted.
fn accounts(env: &TestEnv) -> Vec<(String, String, String, String)> {
    env.accounts(&[])
        .into_values()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (s("employee_id"), s("role"), s("status"), s("origin"))
        })
        .collect()
}

fn active_it_admins(
    prefix: &str,
    ids: std::ops::RangeInclusive<usize>,
) -> Vec<(String, String, String, String)> {
    ids.map(|i| {
        (
            format!("{prefix}{i:03}"),
            "IT Admin".to_string(),
            "active".to_string(),
            "auto".to_string(),
        )
    })
    .collect()
}

/// Waits until the remote `folder` holds `stored` and both its reports.
fn wait_remote_filed(sshd: &Sshd, folder: &str, stored: &str, timeout: Duration) {
    let want = [
        stored.to_string(),
        format!("{stored}.report.json"),
        format!("{stored}.report.txt"),
    ];
    wait_until(
        format!("remote {folder}/ to hold {stored} and its reports"),
        timeout,
        || {
            let have = sshd.files(folder);
            want.iter().all(|w| have.contains(w)).then_some(())
        },
    );
}

/// Asserts the remote `folder` holds exactly `stored` (with `bytes`) and its two reports,
/// byte-equal to the local reports in the local `local_folder`; returns the report.
fn assert_remote_filed(
    env: &TestEnv,
    sshd: &Sshd,
    folder: &str,
    local_folder: &str,
    stored: &str,
    bytes: &[u8],
) -> Value {
    assert_eq!(
        sshd.files(folder),
        [
            stored.to_string(),
            format!("{stored}.report.json"),
            format!("{stored}.report.txt")
        ],
        "remote {folder}/ holds the file under its local name, both reports, no temp files"
    );
    assert_eq!(
        fs::read(sshd.remote(folder).join(stored)).unwrap(),
        bytes,
        "the remote file was moved, unchanged"
    );
    for ext in ["report.json", "report.txt"] {
        let name = format!("{stored}.{ext}");
        assert_eq!(
            fs::read(sshd.remote(folder).join(&name)).unwrap(),
            fs::read(env.drop_dir(local_folder).join(&name))
                .unwrap_or_else(|e| panic!("local {local_folder}/{name}: {e}")),
            "remote {folder}/{name} equals the local report"
        );
    }
    serde_json::from_slice(
        &fs::read(sshd.remote(folder).join(format!("{stored}.report.json"))).unwrap(),
    )
    .expect("remote report.json is JSON")
}

// ---- 1. happy path -------------------------------------------------------------------------

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn happy_path_fetches_applies_once_and_files_the_remote_copy_with_reports() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let env = poll_env(&sshd, &key, &sshd.host_pub(), no_limits());
    let bytes = roster("E", 1..=3);
    sshd.put("roster.csv", bytes.as_bytes());
    let d = Daemon::start(&env);

    let entry = wait_until(
        "a ledger entry for roster.csv",
        Duration::from_secs(20),
        || entries(&env, "roster.csv").into_iter().next(),
    );
    let stored = stored_as(&entry);
    assert!(is_filed_name(&stored, "roster.csv"), "{stored}");
    wait_remote_filed(&sshd, "processed", &stored, Duration::from_secs(20));

    // Three more polls: nothing is fetched again.
    sshd.wait_polls(3);
    let found = entries(&env, "roster.csv");
    assert_eq!(found.len(), 1, "applied once: {found:#?}");
    assert_eq!(files(&env).len(), 1);
    assert_eq!(found[0]["status"], "applied", "{:#}", found[0]);
    assert_eq!(found[0]["sha256"], sha256_hex(bytes.as_bytes()));
    assert_eq!(accounts(&env), active_it_admins("E", 1..=3));

    // Local filing, and the remote copy with reports equal to the local ones.
    assert_eq!(
        env.files_in("processed"),
        [
            stored.clone(),
            format!("{stored}.report.json"),
            format!("{stored}.report.txt")
        ]
    );
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    // Filed 0640 as every roster (the fetched copy had been 0600).
    let filed = env.drop_dir("processed").join(&stored);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&filed).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640, "{}", filed.display());
    let report = assert_remote_filed(
        &env,
        &sshd,
        "processed",
        "processed",
        &stored,
        bytes.as_bytes(),
    );
    assert_eq!(report["status"], "applied", "{report:#}");
    assert_eq!(report["rows"], 3, "{report:#}");
    assert_eq!(report["file"], "roster.csv", "{report:#}");
    assert_eq!(report["counts"]["created"], 3, "{report:#}");
    assert!(
        sshd.files("").is_empty(),
        "remote inbox: {:?}",
        sshd.files("")
    );
    assert!(sshd.files("rejected").is_empty());

    let poll = poll_status(&env);
    let last = poll["last_success"].as_str().unwrap_or_default();
    assert!(is_rfc3339_utc(last), "daemon.poll.last_success: {poll:#}");
    assert_eq!(poll["last_error"], Value::Null, "{poll:#}");
    assert_eq!(poll["stopped"], false, "{poll:#}");

    // Put back with its time kept (`rsync -t`, `put -p`): not fetched again, and said; it
    // had been skipped at every poll with nothing said.
    let back = sshd.remote("").join("roster.csv");
    let copied = std::process::Command::new("cp")
        .arg("-p")
        .arg(sshd.remote("processed").join(&stored))
        .arg(&back)
        .status()
        .unwrap();
    assert!(copied.success());
    let poll = wait_until("status naming the file", Duration::from_secs(20), || {
        let p = poll_status(&env);
        p["last_error"].is_string().then_some(p)
    });
    let err = poll["last_error"].as_str().unwrap();
    let id = found[0]["id"].as_u64().unwrap();
    assert!(
        err.contains(&format!(
            "remote file \"roster.csv\" has the name, size and time of file {id} ({stored}), \
             already fetched, processed and moved away on the server: not fetched again; if it \
             is a new roster, deliver it under a new name or give it a new time (`touch`)"
        )),
        "{poll:#}"
    );
    assert_eq!(entries(&env, "roster.csv").len(), 1, "not fetched again");
    assert!(back.exists());
    d.stop();
}

// ---- 2. rejected -----------------------------------------------------------------------------

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn broken_roster_is_rejected_and_lands_in_remote_rejected_with_reports() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let env = poll_env(&sshd, &key, &sshd.host_pub(), no_limits());
    let bytes = fs::read(testdata("broken/malformed_email.csv")).unwrap();
    sshd.put("malformed_email.csv", &bytes);
    let d = Daemon::start(&env);

    let entry = wait_until(
        "a ledger entry for malformed_email.csv",
        Duration::from_secs(20),
        || entries(&env, "malformed_email.csv").into_iter().next(),
    );
    assert_eq!(entry["status"], "rejected", "{entry:#}");
    let stored = stored_as(&entry);
    wait_remote_filed(&sshd, "rejected", &stored, Duration::from_secs(20));

    let report = assert_remote_filed(&env, &sshd, "rejected", "rejected", &stored, &bytes);
    assert_eq!(report["status"], "rejected", "{report:#}");
    assert_eq!(report["sha256"], sha256_hex(&bytes), "{report:#}");
    // Every malformed address of testdata/broken/malformed_email.expected is reported
    // (plus the missing `department` column the rule needs).
    let errors = report["errors"].as_array().expect("errors");
    let expected = fs::read_to_string(testdata("broken/malformed_email.expected")).unwrap();
    let mut want = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (n, column) = line.split_once('\t').expect("LINE<TAB>COLUMN");
        let n: u64 = n.parse().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["line"] == n && e["column"] == column),
            "error at line {n} column {column}: {report:#}"
        );
        want += 1;
    }
    assert_eq!(want, 6);
    assert!(
        sshd.files("").is_empty(),
        "remote inbox: {:?}",
        sshd.files("")
    );
    assert!(
        sshd.files("processed").is_empty(),
        "{:?}",
        sshd.files("processed")
    );
    assert!(env.accounts(&[]).is_empty(), "nothing applied");
    assert_eq!(files(&env).len(), 1);
    d.stop();
}

/// A remote file over `roster.max_bytes` is fetched and rejected with a report, as an upload
/// is (SPEC §1), and lands in the remote `rejected/` with it; it was left on the server,
/// said only in the log at every poll.
#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn a_remote_roster_over_max_bytes_is_rejected_with_a_report() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let mut settings = no_limits();
    settings.extra_toml.push_str("[roster]\nmax_bytes = 100\n");
    let env = poll_env(&sshd, &key, &sshd.host_pub(), settings);
    let bytes = roster("E", 1..=9);
    assert!(bytes.len() > 100);
    sshd.put("big.csv", bytes.as_bytes());
    let d = Daemon::start(&env);

    let entry = wait_until(
        "a ledger entry for big.csv",
        Duration::from_secs(20),
        || entries(&env, "big.csv").into_iter().next(),
    );
    assert_eq!(entry["status"], "rejected", "{entry:#}");
    let stored = stored_as(&entry);
    wait_remote_filed(&sshd, "rejected", &stored, Duration::from_secs(20));
    let report = assert_remote_filed(
        &env,
        &sshd,
        "rejected",
        "rejected",
        &stored,
        bytes.as_bytes(),
    );
    assert_eq!(report["sha256"], sha256_hex(bytes.as_bytes()), "{report:#}");
    let error = report["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("more than roster.max_bytes = 100"),
        "{report:#}"
    );
    assert!(sshd.files("").is_empty(), "{:?}", sshd.files(""));
    assert!(env.accounts(&[]).is_empty(), "nothing applied");
    d.stop();
}

/// A remote name that cannot be fetched (a control character in it) is named in `status`
/// at every poll and counts as a failed poll; the roster beside it is fetched and applied.
/// It had sat on the server with a log line only while the poll said healthy.
#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn a_remote_name_that_cannot_be_fetched_is_named_in_status() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let env = poll_env(&sshd, &key, &sshd.host_pub(), no_limits());
    sshd.put("ctl\tname.csv", roster("C", 1..=2).as_bytes());
    sshd.put("roster.csv", roster("E", 1..=3).as_bytes());
    // A folder so named is no file: not named (it had failed every poll).
    fs::create_dir(sshd.remote("sub\tdir")).unwrap();
    let d = Daemon::start(&env);
    let entry = wait_until(
        "a ledger entry for roster.csv",
        Duration::from_secs(20),
        || entries(&env, "roster.csv").into_iter().next(),
    );
    assert_eq!(entry["status"], "applied", "{entry:#}");
    let poll = wait_until("status naming the file", Duration::from_secs(20), || {
        let p = poll_status(&env);
        p["last_error"].is_string().then_some(p)
    });
    let err = poll["last_error"].as_str().unwrap();
    assert!(
        err.contains("\"ctl\\tname.csv\": the name contains control characters")
            && !err.contains("more such names"),
        "{poll:#}"
    );
    wait_until(
        "roster.csv moved, the other left on the server",
        Duration::from_secs(20),
        || (sshd.files("") == ["ctl\tname.csv"]).then_some(()),
    );
    assert_eq!(env.accounts(&[]).len(), 3);
    d.stop();
}

/// A processed folder that is the inbox on the server (a symlink to it, written otherwise
/// in the config) fetches nothing and says why: the daemon had fetched its own moved roster
/// and reports again at every poll, applying the roster over and over.
#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn a_processed_folder_that_is_the_inbox_on_the_server_fetches_nothing() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let alias = sshd.dir.path().join("data/alias");
    std::os::unix::fs::symlink(sshd.remote(""), &alias).unwrap();
    let mut settings = no_limits();
    settings.log_level = "info".into();
    let inbox = sshd.remote("").display().to_string();
    settings.extra_toml.push_str(
        &sshd
            .source_toml(&key.private(), &sshd.host_pub(), "1s")
            .replace(
                &format!("processed = \"{inbox}/processed\""),
                &format!("processed = {:?}", alias.display().to_string()),
            ),
    );
    assert!(settings.extra_toml.contains("data/alias"));
    let env = TestEnv::with(settings);
    sshd.put("roster.csv", roster("E", 1..=3).as_bytes());
    let d = Daemon::start(&env);
    let poll = wait_until("a failed poll", Duration::from_secs(20), || {
        let p = poll_status(&env);
        p["last_error"].is_string().then_some(p)
    });
    let err = poll["last_error"].as_str().unwrap();
    assert!(
        err.contains("source.remote.processed")
            && err.contains("is the remote inbox on the server"),
        "{poll:#}"
    );
    sshd.wait_polls(2);
    assert_eq!(sshd.files(""), ["roster.csv"], "left on the server");
    assert!(files(&env).is_empty(), "nothing fetched");
    d.stop();
}

/// A remote file the server will not open for us (another integration's export, mode 0600,
/// in a shared folder) is left on the server and named in `status`; the roster after it is
/// still fetched and applied. The one file had stopped every later roster until removed.
/// Logs in as `nobody` (root reads any file), confined by the sshd's `ForceCommand`.
#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn a_remote_file_that_cannot_be_opened_does_not_stop_later_ones() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test logs in as nobody: run it as root"
        );
        eprintln!("skipped: needs root to log in as nobody");
        return;
    }
    let key = UserKey::new("ed25519", None);
    let mut sshd = Sshd::prepare(&[&key.public()]);
    let config = sshd.dir.path().join("sshd_config");
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("Match User nobody\n  ForceCommand internal-sftp\n");
    fs::write(&config, text).unwrap();
    // nobody reads its authorized_keys (sshd reads them as the user) and writes the folders.
    let mode = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(sshd.dir.path(), 0o755);
    mode(&sshd.dir.path().join("authorized_keys"), 0o644);
    for sub in [
        "data",
        "data/outgoing",
        "data/outgoing/processed",
        "data/outgoing/rejected",
    ] {
        mode(&sshd.dir.path().join(sub), 0o777);
    }
    sshd.start();
    let mut settings = no_limits();
    settings.extra_toml.push_str(
        &sshd
            .source_toml(&key.private(), &sshd.host_pub(), "1s")
            .replace("user = \"root\"", "user = \"nobody\""),
    );
    settings.log_level = "info".into();
    let env = TestEnv::with(settings);
    env.json_ok(
        0,
        &[
            "rules",
            "add",
            "--name",
            "IT staff",
            "--role",
            "IT Admin",
            "--when",
            "department = IT",
        ],
    );
    // The locked file is the older one: listed, and tried, first.
    sshd.put("01-locked.csv", roster("L", 1..=2).as_bytes());
    let locked = sshd.remote("01-locked.csv");
    mode(&locked, 0o600);
    let earlier = std::time::SystemTime::now() - Duration::from_secs(600);
    fs::File::options()
        .write(true)
        .open(&locked)
        .unwrap()
        .set_modified(earlier)
        .unwrap();
    let bytes = roster("E", 1..=3);
    sshd.put("02-roster.csv", bytes.as_bytes());
    let d = Daemon::start(&env);
    let entry = wait_until(
        "a ledger entry for 02-roster.csv",
        Duration::from_secs(30),
        || entries(&env, "02-roster.csv").into_iter().next(),
    );
    assert_eq!(entry["status"], "applied", "{entry:#}");
    assert_eq!(env.accounts(&[]).len(), 3);
    assert!(entries(&env, "01-locked.csv").is_empty());
    assert!(locked.exists(), "left on the server");
    let status = wait_until(
        "status naming the locked file",
        Duration::from_secs(30),
        || {
            let status = poll_status(&env);
            status
                .to_string()
                .contains("01-locked.csv")
                .then_some(status)
        },
    );
    assert!(
        status.to_string().contains("cannot be opened"),
        "{status:#}"
    );
    // Readable now, it is older than the roster applied since: not fetched (it would have
    // been applied over the newer one), and said so.
    mode(&locked, 0o644);
    sshd.wait_polls(2);
    assert!(entries(&env, "01-locked.csv").is_empty(), "not fetched");
    let status = wait_until(
        "status naming the older file",
        Duration::from_secs(30),
        || {
            let status = poll_status(&env).to_string();
            status
                .contains("older than a roster already fetched")
                .then_some(status)
        },
    );
    assert!(status.contains("01-locked.csv"), "{status}");
    assert_eq!(env.accounts(&[]).len(), 3);
    d.stop();
}

// ---- 3./4. refused connections stop fetching ----------------------------------------------------

/// How many SSH sessions autoprov opened (sshd logs the client version of each; the
/// readiness probe of [`Sshd::start`] sends none).
fn connections(sshd: &Sshd) -> usize {
    sshd.log().matches("remote software version russh").count()
}

/// Waits until `status` says polling stopped; returns `daemon.poll`.
fn wait_stopped(env: &TestEnv) -> Value {
    wait_until(
        "daemon.poll.stopped = true",
        Duration::from_secs(20),
        || {
            let p = poll_status(env);
            (p["stopped"] == true).then_some(p)
        },
    )
}

/// "Nothing more happens" once polling stopped: over a few poll intervals (1 s) there is no
/// new connection and `status` keeps saying stopped.
fn stopped_for_good(env: &TestEnv, sshd: &Sshd) {
    stays(
        "one connection, polling stopped",
        Duration::from_millis(2500),
        || connections(sshd) == 1 && poll_status(env)["stopped"] == true,
    );
}

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn wrong_pinned_host_key_fetches_nothing_and_stops_polling() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let impostor = UserKey::new("ed25519", None);
    let wrong = fs::read_to_string(impostor.public()).unwrap();
    let hook = Receiver::start(Answer::Ok);
    let mut settings = no_limits();
    settings
        .extra_toml
        .push_str(&format!("[notify]\nwebhook_url = {:?}\n", hook.url()));
    let env = poll_env(&sshd, &key, wrong.trim(), settings);
    sshd.put("roster.csv", roster("E", 1..=3).as_bytes());
    let d = Daemon::start(&env);

    let poll = wait_stopped(&env);
    let err = poll["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("host key"),
        "last_error names the host key: {poll:#}"
    );
    assert_eq!(poll["last_success"], Value::Null, "{poll:#}");
    stopped_for_good(&env, &sshd);
    assert_eq!(
        sshd.files(""),
        ["roster.csv"],
        "the remote file is untouched"
    );
    assert!(sshd.files("processed").is_empty() && sshd.files("rejected").is_empty());
    assert!(files(&env).is_empty(), "no ledger entry");
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    assert!(env.accounts(&[]).is_empty());
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "never authenticated to a server with another host key:\n{}",
        sshd.log()
    );
    assert_eq!(
        connections(&sshd),
        1,
        "no retries after a mismatch:\n{}",
        sshd.log()
    );
    let log = d.log();
    assert!(
        log.contains("HOST KEY MISMATCH") || log.contains("host key"),
        "{log}"
    );
    assert!(log.contains("STOPPED"), "{log}");
    let st = env.expect(0, &["status"]);
    assert!(
        st.contains("STOPPED"),
        "status text says polling stopped: {st}"
    );
    // No SFTP server listens in poll mode: no address beside the mode.
    assert!(
        st.lines().any(|l| l.trim_end() == "mode:      poll"),
        "{st}"
    );
    // The stop is posted, once: a security team learns of it before `stale` would say so.
    let posted = hook.wait_delivered(1);
    assert_eq!(posted.len(), 1, "{posted:#?}");
    assert_eq!(posted[0]["event"], "fetch_failed", "{posted:#?}");
    assert_eq!(posted[0]["file"], Value::Null);
    let text = posted[0]["text"].as_str().unwrap();
    assert!(
        text.contains("STOPPED") && text.contains("host key"),
        "{text}"
    );
    d.stop();
}

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn wrong_user_key_fetches_nothing_and_stops_polling() {
    let authorized = UserKey::new("ed25519", None);
    let stranger = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&authorized.public()]);
    let env = poll_env(&sshd, &stranger, &sshd.host_pub(), no_limits());
    sshd.put("roster.csv", roster("E", 1..=3).as_bytes());
    let d = Daemon::start(&env);

    let poll = wait_stopped(&env);
    let err = poll["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("refused key authentication"), "{poll:#}");
    assert_eq!(poll["last_success"], Value::Null, "{poll:#}");
    stopped_for_good(&env, &sshd);
    assert_eq!(
        sshd.files(""),
        ["roster.csv"],
        "the remote file is untouched"
    );
    assert!(files(&env).is_empty(), "no ledger entry");
    assert!(env.files_in("inbox").is_empty());
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    // Fatal: one connection, no retry loop hammering the server.
    assert_eq!(connections(&sshd), 1, "{}", sshd.log());
    d.stop();
}

// ---- 5. server down, then up ---------------------------------------------------------------------

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn server_down_at_start_then_up_file_is_fetched_after_backoff() {
    let key = UserKey::new("ed25519", None);
    let mut sshd = Sshd::prepare(&[&key.public()]);
    let env = poll_env(&sshd, &key, &sshd.host_pub(), no_limits());
    let bytes = roster("E", 1..=3);
    sshd.put("roster.csv", bytes.as_bytes());
    let d = Daemon::start(&env);

    let poll = wait_until(
        "a poll error while the server is down",
        Duration::from_secs(10),
        || {
            let p = poll_status(&env);
            p["last_error"].is_string().then_some(p)
        },
    );
    assert_eq!(
        poll["stopped"], false,
        "a refused TCP connection is retried: {poll:#}"
    );
    assert!(
        poll["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{poll:#}"
    );
    assert_eq!(poll["last_success"], Value::Null);
    // Down for a second attempt too, made after a backoff.
    wait_until("a second failed attempt", Duration::from_secs(20), || {
        (d.log().matches("retrying in").count() >= 2).then_some(())
    });
    assert!(files(&env).is_empty());
    sshd.start();

    let entry = wait_until(
        "the file fetched after the server came up",
        Duration::from_secs(20),
        || entries(&env, "roster.csv").into_iter().next(),
    );
    assert_eq!(entry["status"], "applied", "{entry:#}");
    let stored = stored_as(&entry);
    wait_remote_filed(&sshd, "processed", &stored, Duration::from_secs(20));
    assert_remote_filed(
        &env,
        &sshd,
        "processed",
        "processed",
        &stored,
        bytes.as_bytes(),
    );
    assert!(sshd.files("").is_empty());
    assert_eq!(entries(&env, "roster.csv").len(), 1);
    let poll = poll_status(&env);
    assert_eq!(
        poll["last_error"],
        Value::Null,
        "cleared by a success: {poll:#}"
    );
    assert!(poll["last_success"].is_string(), "{poll:#}");
    assert_eq!(poll["stopped"], false);
    assert!(d.log().contains("retrying in"), "{}", d.log());
    d.stop();
}

/// A remote move that keeps failing (the remote `processed/` folder is missing) neither
/// stops new rosters from being fetched nor, once it works, moves away a file that replaced
/// the one fetched under its name; the failure is posted once as `fetch_failed`.
#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn a_failing_remote_move_neither_stops_fetching_nor_moves_a_replaced_file() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    fs::remove_dir(sshd.remote("processed")).unwrap();
    let hook = Receiver::start(Answer::Ok);
    let mut settings = no_limits();
    settings
        .extra_toml
        .push_str(&format!("[notify]\nwebhook_url = {:?}\n", hook.url()));
    let env = poll_env(&sshd, &key, &sshd.host_pub(), settings);
    let first = roster("E", 1..=3);
    sshd.put("roster.csv", first.as_bytes());
    let d = Daemon::start(&env);

    let applied = |n: usize| {
        wait_until(
            format!("{n} applied files"),
            Duration::from_secs(30),
            || {
                let done = entries(&env, "roster.csv");
                (done.iter().filter(|e| e["status"] == "applied").count() == n).then_some(done)
            },
        )
    };
    let one = applied(1);
    wait_until("the failed move in status", Duration::from_secs(20), || {
        let p = poll_status(&env);
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("moving a decided file"))
            .then_some(())
    });
    // The vendor replaces the roster under the same name while the move keeps failing.
    let second = roster("E", 1..=5);
    sshd.put("roster.csv", second.as_bytes());
    let both = applied(2);
    assert_eq!(accounts(&env), active_it_admins("E", 1..=5));
    let posted = hook.wait_delivered(1);
    assert_eq!(posted[0]["event"], "fetch_failed", "{posted:#?}");
    let text = posted[0]["text"].as_str().unwrap();
    assert!(text.contains("5 polls in a row have failed"), "{text}");

    fs::create_dir(sshd.remote("processed")).unwrap();
    let later = both
        .iter()
        .find(|e| e["id"] != one[0]["id"])
        .map(stored_as)
        .unwrap();
    wait_remote_filed(&sshd, "processed", &later, Duration::from_secs(20));
    wait_until("the remote inbox empty", Duration::from_secs(20), || {
        sshd.files("").is_empty().then_some(())
    });
    assert_eq!(
        fs::read(sshd.remote("processed").join(&later)).unwrap(),
        second.as_bytes(),
        "the file that replaced the first is filed under its own name"
    );
    let earlier = stored_as(&one[0]);
    let filed = sshd.files("processed");
    assert!(
        !filed.contains(&earlier) && filed.contains(&format!("{earlier}.report.json")),
        "the first file's reports are filed, the file it no longer is is not: {filed:?}"
    );
    wait_until("the error cleared", Duration::from_secs(10), || {
        poll_status(&env)["last_error"].is_null().then_some(())
    });
    assert_eq!(hook.delivered_of("fetch_failed").len(), 1, "posted once");
    d.stop();
}

/// The remote file's name in the remote processed/ folder taken by another file: the move
/// is not counted as done (it had been logged "moved" while the file stayed in the remote
/// inbox for good); status says why, and it is moved once the name is free.
#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn a_remote_name_taken_by_another_file_is_not_counted_as_moved() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let env = poll_env(&sshd, &key, &sshd.host_pub(), no_limits());
    // Whatever second the file is processed in, its stored name is taken.
    let squatters = squat(&sshd, "coll.csv", b"not ours");
    sshd.put("coll.csv", roster("E", 1..=3).as_bytes());
    let d = Daemon::start(&env);
    wait_until("the taken name in status", Duration::from_secs(30), || {
        poll_status(&env)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("another file has that name"))
            .then_some(())
    });
    assert!(
        sshd.files("").contains(&"coll.csv".to_string()),
        "still in the remote inbox"
    );
    let entry = entries(&env, "coll.csv").remove(0);
    let stored = stored_as(&entry);
    assert_eq!(
        fs::read(sshd.remote("processed").join(&stored)).unwrap(),
        b"not ours"
    );
    // Its reports are not put beside the other file.
    assert!(
        !sshd
            .remote("processed")
            .join(format!("{stored}.report.json"))
            .exists(),
        "{:?}",
        sshd.files("processed")
    );
    squatters.iter().for_each(|p| drop(fs::remove_file(p)));
    wait_remote_filed(&sshd, "processed", &stored, Duration::from_secs(30));
    wait_until("the error cleared", Duration::from_secs(10), || {
        poll_status(&env)["last_error"].is_null().then_some(())
    });
    assert!(sshd.files("").is_empty());
    d.stop();
}

/// Files named `<time>_<suffix>` for each second of the next two minutes in the remote
/// processed/ folder: whatever second a file is processed in, that name is taken.
fn squat(sshd: &Sshd, suffix: &str, bytes: &[u8]) -> Vec<PathBuf> {
    let now = std::time::SystemTime::now();
    (0..120)
        .map(|s| {
            let at = autoprov::util::rfc3339(now + Duration::from_secs(s));
            let name = format!("{}_{suffix}", autoprov::util::compact_timestamp(&at));
            let path = sshd.remote("processed").join(name);
            fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

/// A report's name taken in the remote folder by another file refuses the move, as the
/// roster's name does: the roster had been filed beside the other file's reports, said
/// nowhere.
#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn a_report_name_taken_by_another_file_is_not_counted_as_moved() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let env = poll_env(&sshd, &key, &sshd.host_pub(), no_limits());
    let squatters = squat(&sshd, "rep.csv.report.txt", b"FOREIGN REPORT");
    sshd.put("rep.csv", roster("E", 1..=3).as_bytes());
    let d = Daemon::start(&env);
    wait_until(
        "the taken report name in status",
        Duration::from_secs(30),
        || {
            poll_status(&env)["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("another file has that name"))
                .then_some(())
        },
    );
    assert!(
        sshd.files("").contains(&"rep.csv".to_string()),
        "still in the remote inbox"
    );
    let stored = stored_as(&entries(&env, "rep.csv").remove(0));
    assert!(!sshd.remote("processed").join(&stored).exists());
    squatters.iter().for_each(|p| drop(fs::remove_file(p)));
    wait_remote_filed(&sshd, "processed", &stored, Duration::from_secs(30));
    assert_eq!(
        fs::read(
            sshd.remote("processed")
                .join(format!("{stored}.report.txt"))
        )
        .unwrap(),
        fs::read(
            env.drop_dir("processed")
                .join(format!("{stored}.report.txt"))
        )
        .unwrap()
    );
    d.stop();
}

// ---- 6. a file still being written ---------------------------------------------------------------

/// Appends a row to a remote roster every 300 ms for ~3 s, then stops; asserts nothing was
/// fetched while it grew, and that the complete file is fetched, applied once, with every row.
///
/// `monitor`: while the file grows, ask the daemon `files list` and `status` after each row
/// (as an operator's monitoring would), and check the ledger. Otherwise nothing talks to
/// the daemon while it grows (only the local drop folders are looked at) and the local
/// inbox rescan is slow (60 s), so the poller wakes only on its own 1 s interval.
fn growing_file(monitor: bool) {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let rescan = if monitor { "1s" } else { "60s" };
    let env = poll_env_rescan(&sshd, &key, &sshd.host_pub(), no_limits(), rescan);
    let d = Daemon::start(&env);
    // The first poll, of the empty remote inbox, is over (the start-up too): a second began.
    wait_until("the second poll session", Duration::from_secs(20), || {
        (connections(&sshd) >= 2).then_some(())
    });

    let path = sshd.remote("").join("growing.csv");
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(b"Employee ID,Work Email,Department\n").unwrap();
    let mut rows = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        rows += 1;
        f.write_all(row("G", rows).as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        if monitor {
            let seen = files(&env);
            assert!(
                seen.is_empty(),
                "fetched while still growing (after {rows} rows, {:?}): {seen:#?}\n{}",
                t.elapsed(),
                d.log()
            );
            poll_status(&env);
        }
        for folder in ["inbox", "processed", "rejected", "held"] {
            let names: Vec<String> = env
                .files_in(folder)
                .into_iter()
                .filter(|n| !n.starts_with('.'))
                .collect();
            assert!(
                names.is_empty(),
                "fetched while still growing (after {rows} rows, {:?}): local {folder}/ has {names:?}\n{}",
                t.elapsed(),
                d.log()
            );
        }
    }
    drop(f);
    assert!(rows >= 5, "{rows}");
    let final_bytes = fs::read(&path).unwrap();

    let entry = wait_until(
        "growing.csv fetched once complete",
        Duration::from_secs(20),
        || entries(&env, "growing.csv").into_iter().next(),
    );
    let stored = stored_as(&entry);
    wait_remote_filed(&sshd, "processed", &stored, Duration::from_secs(20));
    assert_eq!(entry["status"], "applied", "{entry:#}");
    assert_eq!(
        entry["sha256"],
        sha256_hex(&final_bytes),
        "the final content"
    );
    let report = env.report_file("processed", &stored);
    assert_eq!(report["rows"], rows as u64, "{report:#}");
    assert_eq!(report["counts"]["created"], rows as u64, "{report:#}");
    assert_remote_filed(&env, &sshd, "processed", "processed", &stored, &final_bytes);
    assert!(sshd.files("").is_empty(), "{:?}", sshd.files(""));
    assert_eq!(files(&env).len(), 1, "fetched once");
    assert_eq!(accounts(&env), active_it_admins("G", 1..=rows));
    d.stop();
}

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn growing_remote_file_is_fetched_only_once_stable() {
    growing_file(false);
}

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn growing_remote_file_is_not_fetched_while_the_daemon_is_queried() {
    growing_file(true);
}

// ---- 7. crash between the local commit and the remote move -------------------------------------

/// Starts with `AUTOPROV_CRASH_AT=point`, puts a roster remotely, waits for the abort.
/// Returns (env, sshd, roster bytes, stored_as) with the daemon dead.
fn crash_at(point: &str) -> (TestEnv, Sshd, UserKey, String, String) {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    let env = poll_env(&sshd, &key, &sshd.host_pub(), no_limits());
    let mut d = Daemon::start_env(&env, &[("AUTOPROV_CRASH_AT", point)]);
    let bytes = roster("E", 1..=3);
    sshd.put("roster.csv", bytes.as_bytes());
    let status = d.wait_exit(Duration::from_secs(20), "the crash point");
    assert_eq!(
        status.signal(),
        Some(libc_sigabrt()),
        "aborted at the crash point ({status}):\n{}",
        d.log()
    );
    assert!(
        d.log().contains(&format!("AUTOPROV_CRASH_AT={point}")),
        "{}",
        d.log()
    );
    drop(d);
    // The local outcome was committed before the crash (the CLI reads the store directly).
    let found = entries(&env, "roster.csv");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["status"], "applied");
    assert_eq!(accounts(&env), active_it_admins("E", 1..=3));
    let stored = stored_as(&found[0]);
    (env, sshd, key, bytes, stored)
}

fn libc_sigabrt() -> i32 {
    Signal::SIGABRT as i32
}

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn crash_before_remote_move_then_restart_applies_once_and_moves_once() {
    let (env, sshd, _key, bytes, stored) = crash_at("before_remote_move");
    // Reports were uploaded, the roster not yet moved.
    assert_eq!(sshd.files(""), ["roster.csv"], "still in the remote inbox");
    assert_eq!(
        sshd.files("processed"),
        [
            format!("{stored}.report.json"),
            format!("{stored}.report.txt")
        ],
        "the reports are uploaded before the move"
    );

    let d = Daemon::start(&env);
    wait_remote_filed(&sshd, "processed", &stored, Duration::from_secs(20));
    sshd.wait_polls(3);
    assert_remote_filed(
        &env,
        &sshd,
        "processed",
        "processed",
        &stored,
        bytes.as_bytes(),
    );
    assert!(
        sshd.files("").is_empty(),
        "remote inbox: {:?}",
        sshd.files("")
    );
    let all = files(&env);
    assert_eq!(all.len(), 1, "applied once: {all:#?}");
    assert_eq!(all[0]["status"], "applied");
    assert_eq!(accounts(&env), active_it_admins("E", 1..=3));
    let poll = poll_status(&env);
    assert_eq!(poll["last_error"], Value::Null, "{poll:#}");
    assert!(poll["last_success"].is_string(), "{poll:#}");
    d.stop();
}

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn crash_after_remote_move_then_restart_completes_without_duplicates() {
    let (env, sshd, _key, bytes, stored) = crash_at("after_remote_move");
    // Moved, but not marked done in the ledger.
    assert!(
        sshd.files("").is_empty(),
        "remote inbox: {:?}",
        sshd.files("")
    );
    assert_remote_filed(
        &env,
        &sshd,
        "processed",
        "processed",
        &stored,
        bytes.as_bytes(),
    );

    // Moved before the crash: the restart uploads what is missing, and says the file was
    // not there to move (it had said "moved").
    let d = Daemon::start(&env);
    wait_until(
        "the restarted daemon to finish the remote move",
        Duration::from_secs(20),
        || {
            d.log()
                .contains("reports uploaded; the remote file was not there to move")
                .then_some(())
        },
    );
    sshd.wait_polls(3);
    assert_remote_filed(
        &env,
        &sshd,
        "processed",
        "processed",
        &stored,
        bytes.as_bytes(),
    );
    assert!(sshd.files("").is_empty());
    let all = files(&env);
    assert_eq!(all.len(), 1, "applied once: {all:#?}");
    assert_eq!(accounts(&env), active_it_admins("E", 1..=3));
    let poll = poll_status(&env);
    assert_eq!(poll["last_error"], Value::Null, "{poll:#}");
    assert_eq!(poll["stopped"], false, "{poll:#}");
    let log = d.log();
    assert_eq!(
        log.matches("reports uploaded").count(),
        1,
        "finished once, not on every poll:\n{log}"
    );
    assert!(!log.contains("SFTP poll failed"), "{log}");
    d.stop();
}

// ---- 8. held files -------------------------------------------------------------------------------

#[test]
#[cfg_attr(
    any(missing_sshd, missing_openssh_client),
    ignore = "needs OpenSSH sshd and ssh-keygen (.ci/run installs them)"
)]
fn held_file_stays_remote_until_decided_then_goes_to_remote_processed() {
    let key = UserKey::new("ed25519", None);
    let sshd = Sshd::started(&[&key.public()]);
    // More than 1 grant (and more than 0 % of the active accounts) is held.
    let env = poll_env(
        &sshd,
        &key,
        &sshd.host_pub(),
        Settings {
            max_grants: Some((1, 0)),
            ..Settings::default()
        },
    );
    let d = Daemon::start(&env);

    // A: held, then approved.
    let a = roster("E", 1..=3);
    sshd.put("a.csv", a.as_bytes());
    let entry = held_and_left_remote(&env, &sshd, "a.csv");
    assert!(
        sshd.files("processed").is_empty(),
        "{:?}",
        sshd.files("processed")
    );
    assert!(
        sshd.files("rejected").is_empty(),
        "{:?}",
        sshd.files("rejected")
    );
    assert_eq!(files(&env).len(), 1, "not fetched twice while held");
    assert!(env.accounts(&[]).is_empty());

    let id = entry["id"].to_string();
    env.expect(0, &["files", "approve", &id]);
    let approved = entries(&env, "a.csv");
    assert_eq!(approved.len(), 1, "{approved:#?}");
    assert_eq!(approved[0]["status"], "applied", "{:#}", approved[0]);
    let stored_a = stored_as(&approved[0]);
    wait_remote_filed(&sshd, "processed", &stored_a, Duration::from_secs(20));
    let report = assert_remote_filed(
        &env,
        &sshd,
        "processed",
        "processed",
        &stored_a,
        a.as_bytes(),
    );
    assert_eq!(report["status"], "applied", "{report:#}");
    assert!(sshd.files("").is_empty());
    assert_eq!(accounts(&env), active_it_admins("E", 1..=3));

    // B: held, then rejected: still the remote processed folder ("processed once decided").
    let b = roster("E", 1..=6);
    sshd.put("b.csv", b.as_bytes());
    let entry = held_and_left_remote(&env, &sshd, "b.csv");
    let id = entry["id"].to_string();
    env.expect(0, &["files", "reject", &id]);
    let rejected = entries(&env, "b.csv");
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0]["status"], "rejected", "{:#}", rejected[0]);
    let stored_b = stored_as(&rejected[0]);
    let want = [
        stored_b.clone(),
        format!("{stored_b}.report.json"),
        format!("{stored_b}.report.txt"),
    ];
    wait_until(
        "b.csv in remote processed/",
        Duration::from_secs(20),
        || {
            let have = sshd.files("processed");
            want.iter().all(|w| have.contains(w)).then_some(())
        },
    );
    assert!(sshd.files("").is_empty(), "{:?}", sshd.files(""));
    assert!(
        sshd.files("rejected").is_empty(),
        "a held file goes to remote processed even when rejected: {:?}",
        sshd.files("rejected")
    );
    assert_eq!(
        fs::read(sshd.remote("processed").join(&stored_b)).unwrap(),
        b.as_bytes()
    );
    for ext in ["report.json", "report.txt"] {
        let name = format!("{stored_b}.{ext}");
        assert_eq!(
            fs::read(sshd.remote("processed").join(&name)).unwrap(),
            fs::read(env.drop_dir("rejected").join(&name)).unwrap(),
            "{name} equals the local report of the decision"
        );
    }
    let report: Value = serde_json::from_slice(
        &fs::read(
            sshd.remote("processed")
                .join(format!("{stored_b}.report.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(report["status"], "rejected", "{report:#}");
    assert_eq!(
        sshd.files("processed").len(),
        6,
        "{:?}",
        sshd.files("processed")
    );
    assert_eq!(
        accounts(&env),
        active_it_admins("E", 1..=3),
        "B changed nothing"
    );
    assert_eq!(files(&env).len(), 2);

    // C: held, its roster taken out of held/ by hand, then rejected: its held report is
    // filed as rejected and uploaded beside the remote file, which is still moved. (With
    // nothing filed, the missing report had failed every poll for good, `/healthz` 503.)
    let c = roster("E", 1..=5);
    sshd.put("c.csv", c.as_bytes());
    let entry = held_and_left_remote(&env, &sshd, "c.csv");
    let stored_c = stored_as(&entry);
    fs::remove_file(env.drop_dir("held").join(&stored_c)).unwrap();
    env.expect(0, &["files", "reject", &entry["id"].to_string()]);
    wait_remote_filed(&sshd, "processed", &stored_c, Duration::from_secs(20));
    assert!(sshd.files("").is_empty(), "{:?}", sshd.files(""));
    sshd.wait_polls(2);
    assert_eq!(poll_status(&env)["last_error"], Value::Null);
    d.stop();
}
