//! Integration tests of the daemon (`autoprov run`) as a child process: host mode over real
//! SFTP clients, watch mode, the control socket (peer user, org_admins, exit 4), SIGTERM
//! during an upload and during processing, and `status` (SPEC §5, §7, §8).
//!
//! Every test has its own temp data dir and socket, listens on 127.0.0.1:0, waits for the
//! daemon with bounded polling, and stops it with SIGTERM asserting exit status 0. A
//! [`Daemon`] guard kills the child if a test panics and prints its log.

mod common;

use common::daemon::Daemon;
use common::sshd::key_fingerprint;
use common::{
    Settings, TestEnv, entries, files, is_filed_name, lazy, sha256_hex, stays, testdata, wait_until,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

// ---- polling ---------------------------------------------------------------------------

/// Waits for a child with a deadline; SIGKILLs it and returns None on timeout.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL) when the guard drops, e.g. a client when a test panics.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---- configs ---------------------------------------------------------------------------

/// The test key copied to `<root>/hris_ed25519` (mode 0600) with its `.pub` beside it.
fn sftp_key(env: &TestEnv) -> PathBuf {
    let key = env.root().join("hris_ed25519");
    if !key.exists() {
        fs::copy(testdata("keys/hris_ed25519"), &key).expect("copy key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod key");
        fs::copy(
            testdata("keys/hris_ed25519.pub"),
            env.root().join("hris_ed25519.pub"),
        )
        .expect("copy pub key");
    }
    key
}

/// `[source]` for host mode on 127.0.0.1:0 with the user `hris` and the test key.
fn host_source(extra: &str) -> String {
    let public = fs::read_to_string(testdata("keys/hris_ed25519.pub")).expect("pub key");
    format!(
        "[source]\nmode = \"host\"\nlisten = \"127.0.0.1:0\"\nrescan_interval = \"1s\"\n{extra}\n\
         [[source.users]]\nname = \"hris\"\nauthorized_keys = [{:?}]\n",
        public.trim()
    )
}

/// A host-mode environment (log level info, so the tests can read the daemon's log).
fn host_env(mut settings: Settings, source_extra: &str) -> TestEnv {
    settings.log_level = "info".into();
    settings.extra_toml.push_str(&host_source(source_extra));
    TestEnv::with(settings)
}

/// A watch-mode environment: `<root>/watch` (created), settle 1 s, rescans every second.
fn watch_env(settings: Settings) -> (TestEnv, PathBuf) {
    watch_env_settle(settings, "1s")
}

/// [`watch_env`] with `source.settle = settle` (and `startup_settle`: the files a test puts
/// in watch_dir before the daemon starts are closed; the default's 60 s has its own test).
fn watch_env_settle(settings: Settings, settle: &str) -> (TestEnv, PathBuf) {
    let mut env = TestEnv::with(settings);
    let watch = env.root().join("watch");
    fs::create_dir_all(&watch).expect("watch dir");
    env.reconfigure(|s| {
        s.log_level = "info".into();
        s.extra_toml.push_str(&format!(
            "[source]\nmode = \"watch\"\nwatch_dir = {:?}\nsettle = {settle:?}\nstartup_settle = {settle:?}\nrescan_interval = \"1s\"\n",
            watch.to_str().unwrap()
        ));
    });
    (env, watch)
}

/// Limits high enough that a first import (or a 200k-row roster) is applied, not held.
fn no_limits() -> Settings {
    Settings {
        max_grants: Some((10_000_000, 100)),
        ..Settings::default()
    }
}

// ---- clients ---------------------------------------------------------------------------

/// The SFTP port the daemon bound (`status --json` → `daemon.listen`).
fn sftp_port(env: &TestEnv) -> u16 {
    let st = env.json_ok(0, &["status"]);
    let listen = st["daemon"]["listen"]
        .as_str()
        .unwrap_or_else(|| panic!("daemon.listen: {st:#}"));
    let port: u16 = listen.rsplit(':').next().unwrap().parse().expect("port");
    assert_ne!(port, 0, "daemon.listen shows the bound port: {st:#}");
    port
}

/// An OpenSSH `sftp -b` command with the test key; `extra` goes before the destination.
fn sftp_command(env: &TestEnv, port: u16, batch: &str, extra: &[&str]) -> Command {
    common::require(common::Need::OpensshClient);
    let key = sftp_key(env);
    let n = (1..)
        .find(|n| !env.root().join(format!("batch-{n}")).exists())
        .unwrap();
    let batch_file = env.root().join(format!("batch-{n}"));
    fs::write(&batch_file, batch).expect("batch file");
    let mut cmd = Command::new("sftp");
    cmd.arg("-b")
        .arg(&batch_file)
        .arg("-i")
        .arg(&key)
        .arg("-P")
        .arg(port.to_string())
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ])
        .args(extra)
        .arg("hris@127.0.0.1")
        .stdin(Stdio::null());
    cmd
}

/// Runs an sftp batch and asserts it succeeds.
fn sftp_ok(env: &TestEnv, port: u16, batch: &str) {
    let out = sftp_command(env, port, batch, &[])
        .output()
        .expect("run sftp");
    assert!(
        out.status.success(),
        "sftp {batch:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `curl -T FILE sftp://hris@127.0.0.1:PORT/inbox/NAME` with the test key (libssh2 needs
/// the public key file too).
fn curl_upload(env: &TestEnv, port: u16, file: &Path, name: &str) {
    common::require(common::Need::Curl);
    let key = sftp_key(env);
    let out = Command::new("curl")
        .args(["-sS", "-k", "--key"])
        .arg(&key)
        .arg("--pubkey")
        .arg(key.with_extension("pub"))
        .arg("-T")
        .arg(file)
        .arg(format!("sftp://hris@127.0.0.1:{port}/inbox/{name}"))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl upload of {name}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- ledger checks ---------------------------------------------------------------------

/// Waits (≤ `timeout`) until `name` is filed: its ledger entry, the filed copy and both
/// reports in processed/, and nothing of it left in inbox/. Returns the entry.
fn wait_filed(env: &TestEnv, name: &str, timeout: Duration) -> Value {
    let what = lazy(|| {
        format!(
            "{name} filed in processed/; ledger: {:#?}, processed/: {:?}, inbox/: {:?}",
            entries(env, name),
            env.files_in("processed"),
            env.files_in("inbox")
        )
    });
    wait_until(what, timeout, || {
        let entry = entries(env, name).into_iter().next()?;
        let stored = entry["stored_as"].as_str()?.to_string();
        let processed = env.files_in("processed");
        let filed = ["", ".report.json", ".report.txt"]
            .iter()
            .all(|ext| processed.contains(&format!("{stored}{ext}")));
        let left = env.files_in("inbox").iter().any(|n| n.contains(name));
        (filed && !left).then_some(entry)
    })
}

/// Two rescans (rescan_interval = 1 s) and a bit: what "nothing more happens" looks over.
const QUIET: Duration = Duration::from_millis(2200);

/// "Nothing more happens": for [`QUIET`], each of `names` keeps exactly one ledger entry
/// (the rescans and settle periods meanwhile must not take a filed file again).
fn stays_once(env: &TestEnv, names: &[&str]) {
    let what = lazy(|| format!("one ledger entry each for {names:?}: {:#?}", files(env)));
    stays(what, QUIET, || {
        let all = files(env);
        names
            .iter()
            .all(|n| all.iter().filter(|f| f["name"] == *n).count() == 1)
    });
}

/// Asserts `name` was applied exactly once from exactly `bytes`: one ledger entry, one
/// filed copy with both reports in processed/, a report whose sha256 and rows match, and
/// nothing left in inbox/. Returns the report.
fn assert_applied_once(env: &TestEnv, name: &str, bytes: &[u8], rows: u64) -> Value {
    let found = entries(env, name);
    assert_eq!(found.len(), 1, "ledger entries for {name}: {found:#?}");
    let entry = &found[0];
    assert_eq!(entry["status"], "applied", "{entry:#}");
    assert_eq!(entry["sha256"], sha256_hex(bytes), "{entry:#}");
    let stored = entry["stored_as"].as_str().expect("stored_as");
    assert!(is_filed_name(stored, name), "{stored}");
    let processed = env.files_in("processed");
    let copies: Vec<&String> = processed
        .iter()
        .filter(|n| is_filed_name(n, name))
        .collect();
    assert_eq!(copies, vec![stored], "processed/: {processed:?}");
    for ext in ["report.json", "report.txt"] {
        let r = format!("{stored}.{ext}");
        assert!(processed.contains(&r), "{r} missing: {processed:?}");
    }
    assert_eq!(
        fs::read(env.drop_dir("processed").join(stored)).expect("filed copy"),
        bytes,
        "the filed copy of {name} is the file's final content"
    );
    let report = env.report_file("processed", stored);
    assert_eq!(report["status"], "applied", "{report:#}");
    assert_eq!(report["sha256"], sha256_hex(bytes), "{report:#}");
    assert_eq!(report["rows"], rows, "{report:#}");
    assert_eq!(report["file"], name, "{report:#}");
    let inbox: Vec<String> = env
        .files_in("inbox")
        .into_iter()
        .filter(|n| n.contains(name))
        .collect();
    assert!(inbox.is_empty(), "left in inbox/: {inbox:?}");
    report
}

/// A small valid roster: `rows` rows with IDs `<prefix>00001`…
fn roster(prefix: &str, rows: usize) -> String {
    let mut s = String::from("Employee ID,Work Email,Department\n");
    for i in 1..=rows {
        s.push_str(&roster_row(prefix, i));
    }
    s
}

fn roster_row(prefix: &str, i: usize) -> String {
    format!(
        "{prefix}{i:05},{}{i}@acme.example,IT\n",
        prefix.to_lowercase()
    )
}

/// `(employee_id, role, status)` of every account.
fn account_set(env: &TestEnv) -> BTreeSet<(String, String, String)> {
    env.accounts(&[])
        .into_values()
        .map(|a| {
            (
                a["employee_id"].as_str().unwrap().to_string(),
                a["role"].as_str().unwrap().to_string(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Writes `bytes` to `<root>/<name>` and renames it into `dir` (same filesystem).
fn rename_into(env: &TestEnv, dir: &Path, name: &str, bytes: &[u8]) {
    let outside = env.root().join("outside");
    fs::create_dir_all(&outside).expect("outside dir");
    let tmp = outside.join(name);
    let mut f = fs::File::create(&tmp).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    fs::rename(&tmp, dir.join(name)).expect("rename in");
}

// ---- 1. host mode ----------------------------------------------------------------------

/// Host mode end to end: day1 uploaded with OpenSSH sftp, day2 with curl (libssh2), both
/// processed in order, the reports downloaded over SFTP, the accounts applied.
#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_curl),
    ignore = "needs OpenSSH sftp and curl (.ci/run installs them)"
)]
fn host_mode_sftp_and_curl_uploads_are_processed_and_reports_downloadable() {
    let env = host_env(no_limits(), "");
    env.load_sample_rules();
    let daemon = Daemon::start(&env);
    let st = env.json_ok(0, &["status"]);
    assert_eq!(st["mode"], "host", "{st:#}");
    assert_eq!(
        st["daemon"]["stale"], false,
        "default stale_after is 26 h: {st:#}"
    );
    let port = sftp_port(&env);

    let day1 = fs::read(testdata("sequence/day1.csv")).unwrap();
    let day2 = fs::read(testdata("sequence/day2.csv")).unwrap();
    sftp_ok(
        &env,
        port,
        &format!(
            "put {} inbox/day1.csv\n",
            testdata("sequence/day1.csv").display()
        ),
    );
    wait_filed(&env, "day1.csv", Duration::from_secs(20));
    let r1 = assert_applied_once(&env, "day1.csv", &day1, 300);
    assert_eq!(r1["counts"]["created"], 82, "{:#}", r1["counts"]);

    curl_upload(&env, port, &testdata("sequence/day2.csv"), "day2.csv");
    wait_filed(&env, "day2.csv", Duration::from_secs(20));
    let r2 = assert_applied_once(&env, "day2.csv", &day2, 302);
    for (action, n) in [("created", 1), ("reassigned", 1), ("unchanged", 81)] {
        assert_eq!(r2["counts"][action], n, "{action}: {:#}", r2["counts"]);
    }

    // The reports are downloadable over SFTP from processed/ and equal the files on disk.
    let dl = env.root().join("dl");
    fs::create_dir_all(&dl).unwrap();
    let stored: Vec<String> = ["day1.csv", "day2.csv"]
        .iter()
        .map(|n| {
            entries(&env, n)[0]["stored_as"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let batch: String = stored
        .iter()
        .map(|s| {
            format!(
                "get processed/{s}.report.json {}\n",
                dl.join(format!("{s}.report.json")).display()
            )
        })
        .collect();
    sftp_ok(&env, port, &batch);
    for (s, bytes) in stored.iter().zip([&day1, &day2]) {
        let got = fs::read(dl.join(format!("{s}.report.json"))).expect("downloaded report");
        assert_eq!(
            got,
            fs::read(env.drop_dir("processed").join(format!("{s}.report.json"))).unwrap()
        );
        let report: Value = serde_json::from_slice(&got).expect("report JSON");
        assert_eq!(report["status"], "applied");
        assert_eq!(report["sha256"], sha256_hex(bytes));
    }

    // Accounts as testdata/sequence/README.md says after day2.
    let accounts = env.accounts(&[]);
    let active = accounts
        .values()
        .filter(|a| a["status"] == "active")
        .count();
    assert_eq!(active, 83);
    assert_eq!(accounts["E00228"]["role"], "Billing Admin");
    assert_eq!(accounts["E00228"]["rule_id"], 3);
    assert_eq!(accounts["E00302"]["role"], "IT Admin");
    assert_eq!(accounts["E00302"]["origin"], "auto");

    let st = env.json_ok(0, &["status"]);
    assert_eq!(st["last_file"]["name"], stored[1].as_str(), "{st:#}");
    assert_eq!(st["last_file"]["status"], "applied", "{st:#}");
    daemon.stop();
}

// ---- 2. watch mode ---------------------------------------------------------------------

/// A file written elsewhere on the same filesystem and renamed into watch_dir is processed once.
#[test]
fn watch_mode_rename_in_is_processed_once() {
    let (env, watch) = watch_env(Settings::default());
    let daemon = Daemon::start(&env);
    let st = env.json_ok(0, &["status"]);
    assert_eq!(st["mode"], "watch", "{st:#}");
    assert!(
        st["daemon"]["listen"].is_null(),
        "no SFTP server in watch mode: {st:#}"
    );
    let bytes = roster("RN", 7);
    rename_into(&env, &watch, "renamed.csv", bytes.as_bytes());
    wait_filed(&env, "renamed.csv", Duration::from_secs(15));
    assert!(
        !watch.join("renamed.csv").exists(),
        "moved out of watch_dir"
    );
    stays_once(&env, &["renamed.csv"]);
    assert_applied_once(&env, "renamed.csv", bytes.as_bytes(), 7);
    assert_eq!(files(&env).len(), 1);
    daemon.stop();
}

/// A file written in place and closed is processed only after `settle` (3 s here), then once.
#[test]
fn watch_mode_write_then_close_waits_for_settle() {
    let (env, watch) = watch_env_settle(Settings::default(), "3s");
    let daemon = Daemon::start(&env);
    let bytes = roster("WC", 5);
    let path = watch.join("written.csv");
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(bytes.as_bytes()).unwrap();
    drop(f);
    // Left alone during the settle time: watched for its first half (the rest is slack for
    // a slow machine), across a rescan of watch_dir.
    stays(
        "written.csv still in watch_dir and not in the ledger within settle (3 s)",
        Duration::from_millis(1500),
        || path.exists() && entries(&env, "written.csv").is_empty(),
    );
    wait_filed(&env, "written.csv", Duration::from_secs(15));
    assert!(!path.exists(), "moved out of watch_dir");
    stays_once(&env, &["written.csv"]);
    assert_applied_once(&env, "written.csv", bytes.as_bytes(), 5);
    assert_eq!(files(&env).len(), 1);
    daemon.stop();
}

/// A file that keeps growing (kept open, appended every 300 ms for ~2.5 s) is not taken
/// before it stops growing, and is processed once, complete.
#[test]
fn watch_mode_growing_file_is_processed_once_complete() {
    let (env, watch) = watch_env(Settings::default());
    let daemon = Daemon::start(&env);
    let path = watch.join("growing.csv");
    let mut f = fs::File::create(&path).unwrap();
    let mut content = roster("GR", 1);
    f.write_all(content.as_bytes()).unwrap();
    let mut rows = 1;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        let mut chunk = String::new();
        for _ in 0..5 {
            rows += 1;
            chunk.push_str(&roster_row("GR", rows));
        }
        f.write_all(chunk.as_bytes()).unwrap();
        content.push_str(&chunk);
        assert!(
            path.exists(),
            "taken out of watch_dir while still growing ({rows} rows written)"
        );
    }
    assert!(
        entries(&env, "growing.csv").is_empty(),
        "processed while still growing"
    );
    f.sync_all().unwrap();
    drop(f);
    wait_filed(&env, "growing.csv", Duration::from_secs(15));
    stays_once(&env, &["growing.csv"]);
    assert_eq!(rows, 41);
    assert_applied_once(&env, "growing.csv", content.as_bytes(), rows as u64);
    assert_eq!(files(&env).len(), 1);
    daemon.stop();
}

/// Files in watch_dir (and in inbox/) before the daemon starts are processed once each.
#[test]
fn watch_mode_files_present_at_startup_are_processed_once_each() {
    let (env, watch) = watch_env(Settings::default());
    let present: Vec<(String, String)> = vec![
        ("early1.csv".into(), roster("EA", 3)),
        ("early2.csv".into(), roster("EB", 4)),
    ];
    for (name, bytes) in &present {
        fs::write(watch.join(name), bytes).unwrap();
    }
    let inbox_file = ("waiting.csv".to_string(), roster("EC", 2));
    fs::create_dir_all(env.drop_dir("inbox")).unwrap();
    fs::write(env.drop_dir("inbox").join(&inbox_file.0), &inbox_file.1).unwrap();

    let daemon = Daemon::start(&env);
    let all: Vec<&(String, String)> = present.iter().chain([&inbox_file]).collect();
    for (name, _) in &all {
        wait_filed(&env, name, Duration::from_secs(15));
    }
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    stays_once(&env, &names);
    for (name, bytes) in &all {
        let rows = bytes.lines().count() as u64 - 1;
        assert_applied_once(&env, name, bytes.as_bytes(), rows);
        assert!(!watch.join(name).exists());
    }
    assert_eq!(files(&env).len(), 3, "{:#?}", files(&env));
    daemon.stop();
}

// ---- 3. control socket: org_admins -----------------------------------------------------

/// A user not in org_admins is refused a rule change (exit 3, a clear message) but may
/// read; once listed in org_admins, the change lands and the audit names the user.
#[test]
#[cfg_attr(missing_root, ignore = "needs root (to run the CLI as user nobody)")]
fn control_socket_refuses_changes_from_non_org_admins_and_audits_allowed_ones() {
    common::require(common::Need::Root);
    let (mut env, _watch) = watch_env(Settings {
        org_admins: Some(vec!["root".into()]),
        ..Settings::default()
    });
    // `nobody` must reach the config and the socket.
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.config, fs::Permissions::from_mode(0o644)).unwrap();
    let add = |name: &str| -> Vec<String> {
        [
            "rules",
            "add",
            "--name",
            name,
            "--role",
            "IT Admin",
            "--when",
            "department = IT",
        ]
        .map(String::from)
        .to_vec()
    };

    let daemon = Daemon::start(&env);
    let mode = fs::metadata(&env.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "control socket mode");
    fs::set_permissions(&env.socket, fs::Permissions::from_mode(0o666)).unwrap();

    let (code, out, err) = env.run_as("nobody", "nogroup", &add("By nobody"));
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    let msg = format!("{out}{err}");
    assert!(
        msg.contains("refused") && msg.contains("\"nobody\"") && msg.contains("control.org_admins"),
        "the refusal names the user and what to do: {msg}"
    );
    env.json_ok(0, &add("By root"));
    let (code, out, err) = env.run_as("nobody", "nogroup", &["--json", "rules", "list"]);
    assert_eq!(code, 0, "rules list as nobody: {out}{err}");
    let rules: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(common::strs(&rules, "name"), vec!["By root"]);
    let audit = env.json_ok(0, &["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["user"] != "nobody"),
        "{audit:#}"
    );
    // The journal has the attempt, with who and its exit code, and root's change.
    let log = daemon.log();
    assert!(
        log.contains("change asked: rules add") && log.contains("user=\"nobody\" exit=3"),
        "{log}"
    );
    assert!(log.contains("user=\"root\" exit=0"), "{log}");
    daemon.stop();

    env.reconfigure(|s| s.org_admins = Some(vec!["root".into(), "nobody".into()]));
    fs::set_permissions(&env.config, fs::Permissions::from_mode(0o644)).unwrap();
    let daemon = Daemon::start(&env);
    fs::set_permissions(&env.socket, fs::Permissions::from_mode(0o666)).unwrap();
    let mut args = vec!["--json".to_string()];
    args.extend(add("By nobody"));
    let (code, out, err) = env.run_as("nobody", "nogroup", &args);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let rule: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rule["created_by"], "nobody", "{rule:#}");
    let audit = env.json_ok(0, &["audit"]);
    let by_nobody: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == "nobody")
        .collect();
    assert_eq!(by_nobody.len(), 1, "{audit:#}");
    assert_eq!(by_nobody[0]["action"], "rules add", "{audit:#}");
    assert!(
        by_nobody[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("By nobody"),
        "{audit:#}"
    );
    daemon.stop();
}

// ---- 4. exit 4 and the stale socket ----------------------------------------------------

/// A socket file that exists while nothing answers, and the store in use → exit 4; a peer
/// that accepts and closes without answering → exit 4 for a read, 5 ("not known") for a
/// change.
#[test]
fn cli_exits_4_when_the_socket_exists_but_nobody_answers() {
    let (env, _watch) = watch_env(Settings::default());
    let daemon = Daemon::start(&env);
    // Move the daemon's socket aside (it keeps serving there) and leave a dead socket file.
    let aside = env.root().join("aside.sock");
    fs::rename(&env.socket, &aside).unwrap();
    drop(UnixListener::bind(&env.socket).unwrap());
    assert!(env.socket.exists());

    let (code, out, err) = env.run(&["status"]);
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("socket exists but nobody answers") && err.contains("store"),
        "{err}"
    );
    let (code, v) = env.json(&["rules", "list"]);
    assert_eq!(code, 4, "{v:#}");
    assert!(
        v["error"].as_str().unwrap().contains("nobody answers"),
        "{v:#}"
    );

    // Something accepts but closes without an answer.
    fs::remove_file(&env.socket).unwrap();
    let listener = UnixListener::bind(&env.socket).unwrap();
    let peer = std::thread::spawn(move || {
        for _ in 0..2 {
            // Read the whole request, then hang up without a word.
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut line);
        }
    });
    let (code, out, err) = env.run(&["rules", "list"]);
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("without answering"), "{err}");
    let (code, out, err) = env.run(&[
        "rules",
        "add",
        "--name",
        "x",
        "--role",
        "IT Admin",
        "--when",
        "department = IT",
    ]);
    // A change sent whole and never answered: whether it was made is not known (exit 5,
    // not 4, which says nothing was done).
    assert_eq!(code, 5, "a change: stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("is not known"), "{err}");
    peer.join().unwrap();

    fs::remove_file(&env.socket).unwrap();
    fs::rename(&aside, &env.socket).unwrap();
    assert_eq!(env.json_ok(0, &["rules", "list"]), serde_json::json!([]));
    daemon.stop();
    assert!(
        !env.socket.exists(),
        "the daemon removes its socket at exit"
    );
}

/// A rule of thousands of values is added through the daemon as without it (its request
/// line had been cut at 64 KiB: "bad request: EOF while parsing"); a request line past the
/// limit is refused saying so.
#[test]
fn a_long_request_reaches_the_daemon_and_a_too_long_one_is_refused_saying_why() {
    let env = host_env(Settings::default(), "");
    let d = Daemon::start(&env);
    let values: Vec<String> = (0..7000).map(|i| format!("Dept{i:05}")).collect();
    let when = format!("department in ({})", values.join(", "));
    assert!(when.len() > 64 * 1024);
    let added = env.json_ok(
        0,
        &[
            "rules",
            "add",
            "--name",
            "Long list",
            "--role",
            "IT Admin",
            "--when",
            &when,
        ],
    );
    assert_eq!(added["id"], 1, "{added:#}");
    let mut socket = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    let huge = format!(
        "{{\"request\":{{\"command\":\"auth_check\",\"email\":\"{}\"}}}}\n",
        "x".repeat(2 << 20)
    );
    let _ = socket.write_all(huge.as_bytes());
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(
        answer.contains("the request is longer than 1024 KiB"),
        "{answer:.300}"
    );
    d.stop();
}

/// Another user listening on the socket's path (a folder others may write, the daemon down)
/// is not talked to: it had answered `auth check` as the daemon ("Super Admin") and taken
/// the requests. Exit 4, nothing sent.
#[test]
fn the_cli_does_not_talk_to_another_users_socket() {
    common::require(common::Need::Root);
    common::require(common::Need::Python3);
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new();
    let open = env.root().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let socket = open.join("autoprov.sock");
    env.socket = socket.clone();
    env.write_config();
    env.json_ok(0, &["rules", "list"]);
    // Answers any request as a daemon saying "Super Admin" would.
    let answer = r#"{"exit":0,"json":{"allowed":true,"role":"Super Admin"},"text":"Super Admin"}"#;
    let script = [
        "import socket, sys".to_string(),
        "s = socket.socket(socket.AF_UNIX)".to_string(),
        format!("s.bind({:?})", socket.display().to_string()),
        "s.listen(8)".to_string(),
        "print('up', flush=True)".to_string(),
        "while True:".to_string(),
        "    c, _ = s.accept()".to_string(),
        "    c.recv(65536)".to_string(),
        format!("    c.sendall({:?}.encode() + b'\\n')", answer),
        "    c.close()".to_string(),
    ]
    .join("\n");
    let mut fake = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            // The system's, which nobody may run (a python3 first on root's PATH may not be).
            "/usr/bin/python3",
            "-c",
        ])
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(fake.stdout.as_mut().unwrap()),
        &mut up,
    )
    .unwrap();
    assert_eq!(up.trim(), "up");
    let (code, out, err) = env.run(&["auth", "check", "attacker@evil.example"]);
    let _ = fake.kill();
    let _ = fake.wait();
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("not talked to"), "{err}");
    assert!(!out.contains("Super Admin"), "{out}");
}

/// One user's connections that never send a request take at most its share of the control
/// socket: its next command is told why it is not served (exit 4), another user's is
/// answered, and once its connections close it is served again.
#[test]
#[cfg_attr(missing_root, ignore = "needs root (to run the CLI as user nobody)")]
fn one_user_holds_at_most_its_share_of_the_control_socket() {
    common::require(common::Need::Root);
    let (env, _watch) = watch_env(Settings::default());
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.config, fs::Permissions::from_mode(0o644)).unwrap();
    let daemon = Daemon::start(&env);
    fs::set_permissions(&env.socket, fs::Permissions::from_mode(0o666)).unwrap();
    // Silent connections (each would be closed at the request deadline, 10 s).
    let silent: Vec<std::os::unix::net::UnixStream> = (0..16)
        .map(|_| std::os::unix::net::UnixStream::connect(&env.socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = env.run(&["status"]);
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("at most 16 control connections of one user"),
        "{err}"
    );
    let (code, out, err) = env.run_as("nobody", "nogroup", &["rules", "list"]);
    assert_eq!(code, 0, "another user is served: {out}{err}");
    drop(silent);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.json_ok(0, &["rules", "list"]), serde_json::json!([]));
    daemon.stop();
}

/// Poll mode's keys are read at start: a private key that cannot be loaded, or a pinned host
/// key that is not one, stops the start with exit 2 naming the key, instead of a daemon
/// that is READY and fails every poll for ever.
#[test]
fn poll_mode_keys_that_cannot_be_read_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-key");
    let pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHwRsbmwfU9wJO6sdbaXp6IgiYsClEHmakv4jlS8NbBA";
    for (key, host_key, named) in [
        (
            missing.display().to_string(),
            pinned,
            "source.remote.private_key",
        ),
        (
            "/etc/hostname".to_string(),
            pinned,
            "source.remote.private_key",
        ),
        (
            missing.display().to_string(),
            "ssh-ed25519 not-base64",
            "source.remote.known_host_key",
        ),
    ] {
        let env = TestEnv::with(Settings {
            extra_toml: format!(
                "[source]\nmode = \"poll\"\n\n[source.remote]\nhost = \"127.0.0.1\"\nport = 1\n\
                 user = \"u\"\nprivate_key = {key:?}\nknown_host_key = {host_key:?}\n\
                 inbox = \"in\"\nprocessed = \"done\"\nrejected = \"bad\"\n"
            ),
            ..Settings::default()
        });
        let mut d = Daemon::spawn(&env, &[]);
        let status = d.wait_exit(Duration::from_secs(20), "with keys that cannot be read");
        assert_eq!(status.code(), Some(2), "{}", d.log());
        assert!(d.log().contains(named), "{named}: {}", d.log());
    }
}

/// Watch mode cannot tell a closed file without its watcher: a `watch_dir` it cannot watch
/// stops the start, naming it, instead of a daemon that is ready and never moves a file.
#[test]
fn a_watch_dir_that_cannot_be_watched_stops_the_start() {
    let (env, watch) = watch_env(Settings::default());
    fs::remove_dir(&watch).unwrap();
    let mut d = Daemon::spawn(&env, &[]);
    let status = d.wait_exit(
        Duration::from_secs(20),
        "with a watch_dir that is not there",
    );
    assert_eq!(status.code(), Some(5), "{}", d.log());
    assert!(d.log().contains("source.watch_dir"), "{}", d.log());
}

/// A stale socket file with no daemon: the CLI opens the store itself (exit 0), and a
/// daemon starting later replaces the stale socket.
#[test]
fn stale_socket_without_daemon_falls_back_to_the_store() {
    let (env, _watch) = watch_env(Settings::default());
    drop(UnixListener::bind(&env.socket).unwrap());
    assert!(env.socket.exists());
    let v = env.json_ok(
        0,
        &[
            "rules",
            "add",
            "--name",
            "Offline",
            "--role",
            "IT Admin",
            "--when",
            "department = IT",
        ],
    );
    assert_eq!(v["id"], 1);
    let v = env.json_ok(0, &["rules", "list"]);
    assert_eq!(common::strs(&v, "name"), vec!["Offline"]);
    let st = env.json_ok(0, &["status"]);
    assert!(st["daemon"].is_null(), "no daemon: {st:#}");

    let daemon = Daemon::start(&env);
    let v = env.json_ok(0, &["rules", "list"]);
    assert_eq!(common::strs(&v, "name"), vec!["Offline"]);
    daemon.stop();
}

/// SIGHUP (an operator's "reload") is logged and ignored: the daemon goes on answering and
/// still stops cleanly on SIGTERM. Left to its default, it had ended the daemon at once,
/// which systemd counts as a clean exit and does not restart.
#[test]
fn sighup_is_ignored_with_a_log_line() {
    let (env, _watch) = watch_env(Settings::default());
    let daemon = Daemon::start(&env);
    nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    wait_until("SIGHUP logged", Duration::from_secs(10), || {
        daemon
            .log()
            .contains("SIGHUP received and ignored")
            .then_some(())
    });
    let st = env.json_ok(0, &["status"]);
    assert!(!st["daemon"].is_null(), "the daemon answers: {st:#}");
    daemon.stop();
}

/// `python3 testdata/gen_roster.py --rows N --seed 7 --out OUT`.
fn gen_roster(out: &Path, rows: usize) -> Command {
    common::require(common::Need::Python3);
    let mut cmd = Command::new("python3");
    cmd.arg(testdata("gen_roster.py"))
        .args(["--rows", &rows.to_string(), "--seed", "7", "--out"])
        .arg(out)
        .stdin(Stdio::null());
    cmd
}

/// `<root>/big.csv` with `rows` rows.
fn big_roster(env: &TestEnv, rows: usize) -> PathBuf {
    let big = env.root().join("big.csv");
    let out = gen_roster(&big, rows)
        .output()
        .expect("python3 gen_roster.py");
    assert!(out.status.success(), "gen_roster.py: {out:?}");
    big
}

/// Adds the named rules of testdata/rules.txt, in that order, with ids 1, 2, …
fn add_sample_rules(env: &TestEnv, names: &[&str]) {
    let all = common::sample_rules();
    for (i, name) in names.iter().enumerate() {
        let r = all
            .iter()
            .find(|r| r.name == *name)
            .unwrap_or_else(|| panic!("no rule {name:?} in testdata/rules.txt"));
        let mut args = vec!["rules", "add", "--name", &r.name, "--role", &r.role];
        for c in &r.conditions {
            args.extend(["--when", c.as_str()]);
        }
        let v = env.json_ok(0, &args);
        assert_eq!(v["id"], (i + 1) as u64, "{v:#}");
    }
}

// ---- 5. SIGTERM during processing ------------------------------------------------------

/// SIGTERM while a 200k-row roster is being processed: exit 0; after a restart the file has
/// exactly one ledger entry and one report, and the accounts equal an uninterrupted run's.
#[test]
#[cfg_attr(
    any(missing_python3, missing_openssh_client),
    ignore = "needs python3 and OpenSSH sftp (.ci/run installs them)"
)]
fn sigterm_during_processing_exits_cleanly_and_applies_the_file_once() {
    let env = host_env(no_limits(), "");
    let clean = TestEnv::with(no_limits());
    let big = env.root().join("big.csv");
    let mut generator = ChildGuard(
        gen_roster(&big, 200_000)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 gen_roster.py"),
    );
    // A few sample rules that overlap (precedence matters) but keep the account count
    // modest: listing ~50k accounts would dominate the run time.
    add_sample_rules(
        &env,
        &["IT managers", "Finance managers", "Revenue leadership"],
    );
    add_sample_rules(
        &clean,
        &["IT managers", "Finance managers", "Revenue leadership"],
    );
    let mut daemon = Daemon::start(&env);
    let port = sftp_port(&env);
    let generated = wait_child(&mut generator.0, Duration::from_secs(60)).expect("generated");
    assert!(generated.success(), "gen_roster.py: {generated}");
    let bytes = fs::read(&big).unwrap();

    // The uninterrupted run, in another installation, concurrently.
    let clean_run = ChildGuard(
        clean
            .command()
            .args(["--json", "process"])
            .arg(&big)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(clean.root().join("process.log")).unwrap(),
            ))
            .spawn()
            .expect("spawn process"),
    );

    sftp_ok(
        &env,
        port,
        &format!("put {} inbox/big.csv\n", big.display()),
    );
    // The rename into inbox/ wakes the engine at once; parsing alone takes over a second.
    std::thread::sleep(Duration::from_millis(300));
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(90), "after SIGTERM");
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "exit {status}:\n{log}");
    let term = log.find("SIGTERM received").expect("SIGTERM logged");
    let done = log
        .lines()
        .scan(0, |pos, l| {
            let at = *pos;
            *pos += l.len() + 1;
            Some((at, l))
        })
        .find(|(_, l)| l.contains("file processed") && l.contains("big.csv"))
        .map(|(at, _)| at);
    match done {
        // Finished the current file before exiting.
        Some(done) => {
            assert!(term < done, "SIGTERM came after processing:\n{log}");
            eprintln!("SIGTERM arrived while big.csv was being processed");
        }
        // Or stopped before taking it: it must still wait in inbox/.
        None => {
            assert_eq!(env.files_in("inbox"), vec!["big.csv"], "{log}");
            eprintln!("SIGTERM arrived before big.csv was taken up; it waited in inbox/");
        }
    }
    assert!(log.contains("stopped cleanly"), "{log}");

    let daemon = Daemon::start(&env);
    wait_filed(&env, "big.csv", Duration::from_secs(60));
    let report = assert_applied_once(&env, "big.csv", &bytes, 200_000);
    assert_eq!(files(&env).len(), 1);
    let interrupted = account_set(&env);
    daemon.stop();

    let mut clean_run = clean_run;
    let st = wait_child(&mut clean_run.0, Duration::from_secs(120)).expect("clean run ended");
    assert_eq!(
        st.code(),
        Some(0),
        "uninterrupted process run: {}",
        fs::read_to_string(clean.root().join("process.log")).unwrap_or_default()
    );
    let clean_accounts = account_set(&clean);
    assert!(!clean_accounts.is_empty());
    assert_eq!(
        interrupted.len(),
        clean_accounts.len(),
        "account count vs. uninterrupted run"
    );
    assert!(
        interrupted == clean_accounts,
        "accounts differ from an uninterrupted run"
    );
    assert_eq!(
        report["counts"]["created"].as_u64().unwrap() as usize,
        clean_accounts.len()
    );
}

/// Changes asked through the control socket when SIGTERM comes are answered as what
/// happened to them: the one the engine runs is finished and answered, one still queued is
/// answered "stopping, nothing was done" (exit 4) and not made. Both clients had been cut
/// off unanswered (exit 4, "unreachable") while the daemon went on to make both changes.
#[test]
#[cfg_attr(missing_python3, ignore = "needs python3 (.ci/run installs it)")]
fn changes_asked_before_a_stop_are_answered_as_what_happened_to_them() {
    let (env, _watch) = watch_env(no_limits());
    add_sample_rules(&env, &["IT managers"]);
    let big = big_roster(&env, 200_000);
    let daemon = Daemon::start(&env);
    let spawn = |args: &[&str], name: &str| {
        ChildGuard(
            env.command()
                .args(args)
                .stdout(Stdio::from(
                    fs::File::create(env.root().join(format!("{name}.out"))).unwrap(),
                ))
                .stderr(Stdio::from(
                    fs::File::create(env.root().join(format!("{name}.err"))).unwrap(),
                ))
                .spawn()
                .expect("spawn the CLI"),
        )
    };
    let mut process = spawn(&["process", big.to_str().unwrap()], "process");
    // The engine reads the roster for over a second; the rule waits behind it.
    std::thread::sleep(Duration::from_millis(400));
    let mut rule = spawn(
        &[
            "rules",
            "add",
            "--name",
            "Late",
            "--role",
            "IT Admin",
            "--when",
            "department = IT",
        ],
        "rule",
    );
    std::thread::sleep(Duration::from_millis(300));
    daemon.stop_within(Duration::from_secs(90));
    let ended = |child: &mut ChildGuard, name: &str| {
        let st = wait_child(&mut child.0, Duration::from_secs(30)).expect("the CLI ended");
        let err = fs::read_to_string(env.root().join(format!("{name}.err"))).unwrap();
        (st.code(), err)
    };
    let (process_code, process_err) = ended(&mut process, "process");
    let (rule_code, rule_err) = ended(&mut rule, "rule");
    for err in [&process_err, &rule_err] {
        assert!(
            !err.contains("without answering"),
            "cut off unanswered: {err}"
        );
    }
    let applied = files(&env)
        .iter()
        .any(|f| f["name"].as_str().is_some_and(|n| n.ends_with("big.csv")));
    match process_code {
        Some(0) => assert!(applied, "answered applied, not filed: {process_err}"),
        Some(4) => {
            assert!(!applied, "answered stopping, yet applied: {process_err}");
            assert!(process_err.contains("stopping"), "{process_err}");
        }
        other => panic!("process: exit {other:?}: {process_err}"),
    }
    let rules = env.json_ok(0, &["rules", "list"]);
    let added = common::strs(&rules, "name").contains(&"Late".to_string());
    match rule_code {
        Some(0) => assert!(added, "answered added, not saved: {rule_err}"),
        Some(4) => {
            assert!(!added, "answered stopping, yet saved: {rule_err}");
            assert!(rule_err.contains("nothing was done"), "{rule_err}");
        }
        other => panic!("rules add: exit {other:?}: {rule_err}"),
    }
    eprintln!("process: exit {process_code:?}; rules add: exit {rule_code:?}");
}

/// A change the store could not write to disk stops the daemon with a failure (systemd
/// starts it again, reading the store from disk) instead of answering from its memory: an
/// admin removed in memory only had been denied until a restart allowed them again.
#[test]
fn a_store_that_cannot_write_stops_the_daemon_with_a_failure() {
    let (env, _watch) = watch_env(Settings::default());
    let mut daemon = Daemon::start(&env);
    let add = |id: &str| {
        let email = format!("{id}@acme.example");
        let args = [
            "admins",
            "add",
            "--employee-id",
            id,
            "--email",
            &email,
            "--role",
            "IT Admin",
        ];
        env.run(&args)
    };
    assert_eq!(add("M1").0, 0);
    // The watermark cannot be written: the flush after the next change fails.
    let blocker = env.data_dir.join("store").join(".autoprov.watermark.tmp");
    fs::create_dir(&blocker).unwrap();
    let (code, out, err) = add("M2");
    assert_eq!(code, 5, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("may be missing"),
        "{out}{err}"
    );
    let status = daemon.wait_exit(Duration::from_secs(20), "after a failed write");
    assert!(!status.success(), "{status:?}\n{}", daemon.log());
    assert!(
        daemon.log().contains("could not write a change to disk"),
        "{}",
        daemon.log()
    );
    // Neither its log line nor its last word (what systemd keeps) says "nothing was
    // changed" or "nothing was done" of a change that may be applied, nor "failed" twice.
    let log = daemon.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the daemon stops so that it reads the store from disk again"))
        .collect();
    assert_eq!(said.len(), 2, "the log line and the last word: {log}");
    for line in said {
        assert!(
            !line.contains("nothing was") && !line.contains("failed: failed"),
            "{line}"
        );
    }
    fs::remove_dir(&blocker).unwrap();
    // Read from disk again: M1's change is there.
    let (code, out, err) = env.run(&["admins", "show", "M1"]);
    assert_eq!(code, 0, "{out}{err}");
}

// ---- 6. SIGTERM during an upload -------------------------------------------------------

/// SIGTERM while a throttled upload is in flight: exit 0, no visible or hidden file left in
/// inbox/, no ledger entry; after a restart the repeated upload is processed once.
#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp (.ci/run installs it)"
)]
fn sigterm_during_upload_discards_it_and_a_repeat_is_processed_once() {
    let env = host_env(Settings::default(), "");
    let file = env.root().join("slow.csv");
    let content = roster("SL", 30_000); // ~1.1 MB: ~11 s at 800 kbit/s
    fs::write(&file, &content).unwrap();

    let mut daemon = Daemon::start(&env);
    let port = sftp_port(&env);
    let mut upload = ChildGuard(
        sftp_command(
            &env,
            port,
            &format!("put {} inbox/slow.csv\n", file.display()),
            &["-l", "800"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sftp"),
    );
    let inbox = env.drop_dir("inbox");
    wait_until(
        "part of the upload in inbox/",
        Duration::from_secs(20),
        || {
            fs::read_dir(&inbox)
                .ok()?
                .flatten()
                .find(|e| {
                    e.file_name().to_string_lossy().starts_with('.')
                        && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
                })
                .map(|_| ())
        },
    );
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(20), "after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit {status}:\n{}", daemon.log());
    let client = wait_child(&mut upload.0, Duration::from_secs(20)).expect("sftp ended");
    assert!(
        !client.success(),
        "the interrupted upload must fail for the client"
    );
    assert_eq!(
        env.files_in("inbox"),
        Vec::<String>::new(),
        "nothing half-uploaded left in inbox/:\n{}",
        daemon.log()
    );
    assert!(files(&env).is_empty(), "no ledger entry");

    let daemon = Daemon::start(&env);
    let port = sftp_port(&env);
    sftp_ok(
        &env,
        port,
        &format!("put {} inbox/slow.csv\n", file.display()),
    );
    wait_filed(&env, "slow.csv", Duration::from_secs(30));
    stays_once(&env, &["slow.csv"]);
    assert_applied_once(&env, "slow.csv", content.as_bytes(), 30_000);
    assert_eq!(files(&env).len(), 1);
    daemon.stop();
}

// ---- 7. status -------------------------------------------------------------------------

/// `status` shows mode, the bound listen address, the last file and its outcome, files
/// waiting, held files, and warns when no file arrived for `source.stale_after`.
#[test]
fn status_shows_mode_listen_last_file_waiting_held_and_staleness() {
    let env = host_env(Settings::default(), "stale_after = \"1s\"");
    env.load_sample_rules();
    let daemon = Daemon::start(&env);
    let port = sftp_port(&env);

    // day1 grants 82 accounts: held with the default limits; day2 then waits behind it.
    rename_into(
        &env,
        &env.drop_dir("inbox"),
        "day1.csv",
        &fs::read(testdata("sequence/day1.csv")).unwrap(),
    );
    // Held in the ledger and filed: moved from inbox/ to held/.
    let held = wait_until("day1 held, in held/", Duration::from_secs(20), || {
        let entry = entries(&env, "day1.csv")
            .into_iter()
            .find(|e| e["status"] == "held")?;
        let stored = entry["stored_as"].as_str()?.to_string();
        let filed = env.files_in("held").contains(&stored);
        let left = env.files_in("inbox").contains(&"day1.csv".to_string());
        (filed && !left).then_some(entry)
    });
    rename_into(
        &env,
        &env.drop_dir("inbox"),
        "day2.csv",
        &fs::read(testdata("sequence/day2.csv")).unwrap(),
    );
    let stored = held["stored_as"].as_str().unwrap();

    let st = env.json_ok(0, &["status"]);
    assert_eq!(st["mode"], "host", "{st:#}");
    assert_eq!(st["daemon"]["running"], true, "{st:#}");
    assert_eq!(
        st["daemon"]["listen"],
        format!("127.0.0.1:{port}"),
        "the bound address: {st:#}"
    );
    // The SFTP server really is there.
    let mut banner = [0u8; 7];
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0");
    drop(tcp);
    assert_eq!(st["last_file"]["name"], stored, "{st:#}");
    assert_eq!(st["last_file"]["status"], "held", "{st:#}");
    assert_eq!(st["waiting"], serde_json::json!(["day2.csv"]), "{st:#}");
    assert_eq!(
        st["held"],
        serde_json::json!([{"id": held["id"], "name": stored}]),
        "{st:#}"
    );

    // No file for longer than stale_after (1 s): stale, and the text warns.
    let st = wait_until(
        lazy(|| format!("status to say stale: {:#}", env.json_ok(0, &["status"]))),
        Duration::from_secs(10),
        || {
            let st = env.json_ok(0, &["status"]);
            (st["daemon"]["stale"] == true).then_some(st)
        },
    );
    assert!(
        st["daemon"]["quiet_for_seconds"].as_u64().unwrap() >= 1,
        "{st:#}"
    );
    let text = env.expect(0, &["status"]);
    let warning = text
        .lines()
        .find(|l| l.starts_with("WARNING"))
        .unwrap_or_else(|| panic!("no WARNING line:\n{text}"));
    assert!(
        warning.contains("no file arrived") && warning.contains("stale_after"),
        "{warning}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("mode:      host"), "{text}");
    assert!(
        text.contains(&format!("last file: {stored} held")),
        "{text}"
    );
    assert!(text.contains("waiting:   1"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("HELD:") && l.contains(stored)),
        "{text}"
    );
    daemon.stop();
}

// ---- 8. host keys (SPEC §8) -------------------------------------------------------------

/// The `(algorithm, fingerprint)` of each "SSH host key" line of a daemon log.
fn logged_host_keys(log: &str) -> Vec<(String, String)> {
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_string()
    };
    log.lines()
        .filter(|l| l.contains("SSH host key"))
        .map(|l| (field(l, "algorithm="), field(l, "fingerprint=")))
        .collect()
}

/// `(algorithm, fingerprint)` of a host key as `ssh-keygen -l` shows it.
fn host_key_on_disk(env: &TestEnv, algorithm: &str, file: &str) -> (String, String) {
    let path = env.data_dir.join("host_keys").join(file);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let (_, fingerprint) = key_fingerprint(&path.with_file_name(format!("{file}.pub")));
    (algorithm.to_string(), fingerprint)
}

/// The host key fingerprints logged at start are those of the key files; the RSA key is
/// created, loaded and logged only with `source.rsa_host_key = true`, and a file left from
/// such a run is kept but not loaded once the key is off again.
#[test]
fn host_key_fingerprints_are_logged_with_rsa_only_when_enabled() {
    let mut env = host_env(Settings::default(), "");
    let rsa_file = env.data_dir.join("host_keys/ssh_host_rsa_key");
    let daemon = Daemon::start(&env);
    let log = daemon.log();
    daemon.stop();
    let ed25519 = host_key_on_disk(&env, "ssh-ed25519", "ssh_host_ed25519_key");
    assert_eq!(
        logged_host_keys(&log),
        std::slice::from_ref(&ed25519),
        "{log}"
    );
    assert!(!rsa_file.exists());

    env.reconfigure(|s| s.extra_toml = host_source("rsa_host_key = true"));
    let daemon = Daemon::start(&env);
    let log = daemon.log();
    daemon.stop();
    let rsa = host_key_on_disk(&env, "ssh-rsa", "ssh_host_rsa_key");
    assert_eq!(logged_host_keys(&log), [ed25519.clone(), rsa], "{log}");

    env.reconfigure(|s| s.extra_toml = host_source(""));
    let before = fs::read(&rsa_file).unwrap();
    let daemon = Daemon::start(&env);
    let log = daemon.log();
    daemon.stop();
    assert_eq!(logged_host_keys(&log), [ed25519], "{log}");
    assert!(log.contains("RSA host key file not used"), "{log}");
    assert_eq!(fs::read(&rsa_file).unwrap(), before);
}

/// `strict` never offers RSA: asking for the RSA host key with it is a config error (exit 2).
#[test]
fn rsa_host_key_with_the_strict_profile_is_a_config_error() {
    let env = host_env(
        Settings::default(),
        "ssh_profile = \"strict\"\nrsa_host_key = true",
    );
    let out = env.expect(2, &["run"]);
    assert!(
        out.contains("source.rsa_host_key") && out.contains("\"strict\""),
        "{out}"
    );
    assert!(!env.data_dir.join("host_keys").exists());
}

// ---- found while writing these tests ---------------------------------------------------

/// A rejected file is logged at `warn`, with its first error: a daemon at
/// `log.level = "warn"` (common in production) had logged nothing of it.
#[test]
fn a_rejected_file_is_logged_at_warn() {
    let (mut env, _watch) = watch_env(Settings::default());
    env.reconfigure(|s| s.log_level = "warn".into());
    let inbox = env.drop_dir("inbox");
    fs::create_dir_all(&inbox).unwrap();
    let broken = fs::read(testdata("broken/malformed_email.csv")).unwrap();
    rename_into(&env, &inbox, "broken.csv", &broken);
    // Not Daemon::start: it waits for "autoprov ready", an `info` line.
    let daemon = Daemon::spawn(&env, &[]);
    let line = wait_until("broken.csv logged", Duration::from_secs(30), || {
        let log = daemon.log();
        let line = log
            .lines()
            .find(|l| l.contains("file processed") && l.contains("_broken.csv"));
        line.map(str::to_string)
    });
    assert!(
        line.contains("WARN") && line.contains("rejected") && line.contains("email"),
        "{line}"
    );
    daemon.stop();
}

/// Whether the daemon's log says `name` was processed (the line names its stored name).
fn processed_in_log(log: &str, name: &str) -> bool {
    log.lines()
        .any(|l| l.contains("file processed") && l.contains(&format!("_{name}")))
}

/// `status` does not wait for the engine: while a 200k-row roster is being processed it
/// answers (were it queued behind the file, the CLI would give up after READ_WAIT, 60 s,
/// src/local.rs, and call the busy daemon unreachable, exit 4).
#[test]
#[cfg_attr(missing_python3, ignore = "needs python3 (testdata/gen_roster.py)")]
fn status_answers_while_a_large_file_is_processed() {
    let (env, _watch) = watch_env(no_limits());
    let big = big_roster(&env, 200_000);
    env.load_sample_rules();
    // A small broken file waits before big.csv: once the log says it was processed, the
    // engine is busy with big.csv.
    let inbox = env.drop_dir("inbox");
    fs::create_dir_all(&inbox).unwrap();
    let broken = fs::read(testdata("broken/malformed_email.csv")).unwrap();
    rename_into(&env, &inbox, "first.csv", &broken);
    rename_into(&env, &inbox, "big.csv", &fs::read(&big).unwrap());
    let daemon = Daemon::start(&env);
    wait_until("first.csv processed", Duration::from_secs(30), || {
        processed_in_log(&daemon.log(), "first.csv").then_some(())
    });
    let st = env.json_ok(0, &["status"]);
    assert!(
        !processed_in_log(&daemon.log(), "big.csv"),
        "status answered only once big.csv was processed:\n{}",
        daemon.log()
    );
    assert_eq!(st["daemon"]["running"], true, "{st:#}");
    wait_filed(&env, "big.csv", Duration::from_secs(60));
    assert!(
        processed_in_log(&daemon.log(), "big.csv"),
        "the log names big.csv once processed:\n{}",
        daemon.log()
    );
    daemon.stop();
}

// ---- control socket hardening (review findings) ----------------------------------------

/// An idle control connection neither holds up SIGTERM nor stays open past the request
/// deadline; the daemon keeps answering others meanwhile.
#[test]
fn idle_control_connections_do_not_block_a_stop() {
    let (env, _watch) = watch_env(Settings::default());
    let daemon = Daemon::start(&env);
    let idle: Vec<std::os::unix::net::UnixStream> = (0..5)
        .map(|_| std::os::unix::net::UnixStream::connect(&env.socket).expect("connect"))
        .collect();
    env.json_ok(0, &["status"]);
    // Panics unless the daemon exits cleanly within 15 s.
    daemon.stop_within(Duration::from_secs(15));
    drop(idle);
}

/// A refused upload answers "refused" (exit 3) even though the daemon never read the file,
/// and the daemon writes backups only as new files in data_dir/backups.
#[test]
#[cfg_attr(missing_root, ignore = "needs root (to run the CLI as user nobody)")]
fn refused_uploads_say_refused_and_backups_stay_in_the_backups_folder() {
    common::require(common::Need::Root);
    let (mut env, _watch) = watch_env(Settings::default());
    env.reconfigure(|s| {
        s.org_admins = Some(vec!["root".into()]);
        s.extra_toml
            .push_str("max_upload_bytes = 1000000\n[roster]\nmax_bytes = 1000000\n");
    });
    let daemon = Daemon::start(&env);
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.config, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&env.socket, fs::Permissions::from_mode(0o666)).unwrap();
    // Larger than the socket buffers, so the client is still writing when refused.
    let big = env.root().join("big.csv");
    let mut body = String::from("Employee ID,Email\n");
    for i in 0..200_000 {
        body.push_str(&format!("E{i:07},e{i}@acme.example\n"));
    }
    fs::write(&big, body).unwrap();
    fs::set_permissions(&big, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = env.run_as("nobody", "nogroup", &["process", big.to_str().unwrap()]);
    assert_eq!(
        code, 3,
        "a non-admin's upload is refused, not unreachable: {out}{err}"
    );
    assert!(format!("{out}{err}").contains("refused"), "{out}{err}");
    assert!(files(&env).is_empty(), "nothing was filed");
    // An org admin's upload beyond what any upload may be is refused before the engine.
    let (code, out, err) = env.run(&["process", big.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("max_upload_bytes"),
        "{out}{err}"
    );
    assert!(files(&env).is_empty(), "nothing was filed");

    let outside = env.root().join("elsewhere.backup");
    let (code, out, err) = env.run(&["backup", outside.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(!outside.exists(), "the daemon wrote outside backups/");
    // Both refusals of root's requests, made before the engine, are in the journal too.
    let log = daemon.log();
    for asked in [
        "change asked: process big.csv user=\"nobody\" exit=3",
        "change asked: process big.csv user=\"root\" exit=1",
        "change asked: backup user=\"root\" exit=3",
    ] {
        assert!(log.contains(asked), "{asked}: {log}");
    }
    let backups = env.data_dir.join("backups");
    let inside = backups.join("manual.backup");
    let (code, out, err) = env.run(&["backup", inside.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(inside.exists());
    let (code, out, err) = env.run(&["backup", inside.to_str().unwrap()]);
    assert_eq!(
        code, 3,
        "an existing backup is never overwritten: {out}{err}"
    );
    // Said as taken, not as outside backups/.
    assert!(
        format!("{out}{err}").contains("exists; a backup is written only as a new file"),
        "{out}{err}"
    );
    let audit = env.json_ok(0, &["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "backup"),
        "{audit:#}"
    );
    daemon.stop();
}

// ---- `admins list` streamed (issue 14) -------------------------------------------------

/// `admins list` through the daemon comes in chunks over the control socket, and prints byte
/// for byte what the CLI prints without the daemon, for several filters, as text and as
/// JSON, with the same exit codes and messages; a client that does not ask for a stream
/// still gets the whole answer in one line.
#[test]
#[cfg_attr(missing_python3, ignore = "needs python3 (testdata/gen_roster.py)")]
fn admins_list_through_the_daemon_prints_what_the_store_gives() {
    let (env, _watch) = watch_env(no_limits());
    let big = big_roster(&env, 10_000);
    env.load_sample_rules();
    let (code, report) = env.process(&big, &[]);
    assert_eq!(code, 0, "{report:#}");
    let manual = [
        "admins",
        "add",
        "--employee-id",
        "M \"1\" é",
        "--email",
        "m1@x.example",
        "--role",
        "IT Admin",
    ];
    env.json_ok(0, &manual);
    let filters: [&[&str]; 7] = [
        &[],
        &["--status", "active"],
        &["--status", "inactive"],
        &["--origin", "manual"],
        &["--origin", "auto", "--rule", "2"],
        &["--rule", "999"],
        &["--status", "gone"],
    ];
    let list = |filter: &[&str], json: bool| {
        let mut args: Vec<&str> = if json { vec!["--json"] } else { vec![] };
        args.extend(["admins", "list"]);
        args.extend(filter);
        env.run(&args)
    };
    let mut without = Vec::new();
    for filter in filters {
        for json in [false, true] {
            without.push(list(filter, json));
        }
    }
    let (code, whole_json, _) = &without[1];
    assert_eq!(*code, 0);
    assert!(
        whole_json.len() > 2 * 65536,
        "several chunks: {} bytes",
        whole_json.len()
    );
    assert!(without[0].1.ends_with(" accounts\n"), "{}", without[0].1);
    assert_eq!(without[12].0, 2, "a bad --status is a usage error");
    assert!(
        without[12].2.contains("--status takes active or inactive"),
        "{:?}",
        without[12]
    );

    let daemon = Daemon::start(&env);
    let mut i = 0;
    for filter in filters {
        for json in [false, true] {
            let through = list(filter, json);
            assert!(
                through == without[i],
                "admins list {filter:?} (json {json}) through the daemon differs: exit {} vs {}, stderr {:?} vs {:?}, stdout {} vs {} bytes",
                through.0,
                without[i].0,
                through.2,
                without[i].2,
                through.1.len(),
                without[i].1.len()
            );
            i += 1;
        }
    }
    // An older client: no "stream", one answer line with both forms.
    let mut socket = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    socket
        .write_all(b"{\"request\":{\"command\":\"admins_list\",\"status\":null,\"origin\":null,\"rule\":null},\"upload\":null}\n")
        .unwrap();
    let mut line = String::new();
    socket.read_to_string(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["exit"], 0, "{line:.300}");
    assert_eq!(
        answer["json"],
        serde_json::from_str::<Value>(whole_json).unwrap()
    );
    assert_eq!(answer["text"], without[0].1.as_str());
    daemon.stop();
}

/// The report of `process` and `sync` through the daemon comes in chunks too (issue 14: a
/// million changes), with the report's exit code: `--json` prints the report with its keys
/// sorted, as a whole answer printed it, and equal to the report.json filed beside the file;
/// the text is the report.txt filed beside it; a rejected file exits 1 with its report.
/// Without the daemon the CLI writes the same forms out itself.
#[test]
#[cfg_attr(missing_python3, ignore = "needs python3 (testdata/gen_roster.py)")]
fn reports_through_the_daemon_are_written_out_as_the_cli_prints_them() {
    let (env, _watch) = watch_env(Settings {
        max_deactivations: Some((10_000_000, 100)),
        ..no_limits()
    });
    let big = big_roster(&env, 10_000);
    env.load_sample_rules();
    let sorted = |stdout: &str| -> Value {
        let v: Value =
            serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout:.300}"));
        assert_eq!(
            stdout,
            serde_json::to_string_pretty(&v).unwrap() + "\n",
            "pretty JSON with sorted keys"
        );
        v
    };
    let rejected = env.root().join("broken.csv");
    fs::write(&rejected, "Employee ID,Work Email\nE1,not-an-email\n").unwrap();
    let changed = env.root().join("changed.csv");
    fs::write(
        &changed,
        fs::read_to_string(&big)
            .unwrap()
            .replace(",Active,", ",Terminated,"),
    )
    .unwrap();
    for through_daemon in [true, false] {
        let daemon = through_daemon.then(|| Daemon::start(&env));
        let (code, stdout, stderr) =
            env.run(&[OsStr::new("--json"), OsStr::new("process"), big.as_os_str()]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.len() > 2 * 65536,
            "several chunks: {} bytes",
            stdout.len()
        );
        let v = sorted(&stdout);
        let stored_as = v["stored_as"].as_str().expect("stored_as");
        assert_eq!(v, env.report_file("processed", stored_as));

        let (code, stdout, stderr) = env.run(&[OsStr::new("process"), changed.as_os_str()]);
        assert_eq!(code, 0, "{stderr}");
        let stored_as = stdout
            .lines()
            .find_map(|l| l.strip_prefix("stored as:    "))
            .expect("a stored-as line")
            .to_string();
        assert!(stdout.contains("\ndeactivated ("), "{stdout:.500}");
        assert_eq!(stdout, env.report_text("processed", &stored_as));

        let (code, stdout, stderr) = env.run(&["--json", "sync", "--force"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(sorted(&stdout)["file"], "sync");

        let (code, stdout, stderr) = env.run(&[
            OsStr::new("--json"),
            OsStr::new("process"),
            rejected.as_os_str(),
        ]);
        assert_eq!(code, 1, "a rejected file exits 1: {stderr}");
        assert_eq!(sorted(&stdout)["status"], "rejected");
        let (code, stdout, _) = env.run(&[OsStr::new("process"), rejected.as_os_str()]);
        assert_eq!(code, 1);
        assert!(stdout.contains("REJECTED: the file has errors"), "{stdout}");
        if let Some(daemon) = daemon {
            daemon.stop();
        }
    }
}

/// An asker who stops reading a long report (`autoprov process big.csv | less` left open)
/// holds back only its own answer: the engine goes on, so a file dropped meanwhile is
/// processed and `status` answers; the report, once read, is whole.
#[test]
#[cfg_attr(missing_python3, ignore = "needs python3 (testdata/gen_roster.py)")]
fn a_stalled_report_never_holds_back_the_next_file() {
    let (env, watch) = watch_env(no_limits());
    let big = big_roster(&env, 20_000);
    env.load_sample_rules();
    let daemon = Daemon::start(&env);
    let bytes = fs::read(&big).unwrap();
    let mut stalled = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
    let line = format!(
        "{{\"request\":{{\"command\":\"process\",\"name\":\"\"}},\"upload\":{{\"name\":\"big.csv\",\"dry_run\":false,\"size\":{}}},\"output\":\"json\",\"stream\":true}}\n",
        bytes.len()
    );
    stalled.write_all(line.as_bytes()).unwrap();
    stalled.write_all(&bytes).unwrap();
    // The report (megabytes of JSON) is not read: the socket's buffers fill and the daemon's
    // writer waits. Meanwhile the next file arrives.
    let entry = wait_filed(&env, "big.csv", Duration::from_secs(60));
    assert_eq!(entry["status"], "applied", "{entry:#}");
    // The same employees again: applied, nothing to change.
    rename_into(&env, &watch, "next.csv", &bytes);
    let entry = wait_filed(&env, "next.csv", Duration::from_secs(30));
    assert_eq!(entry["status"], "applied", "{entry:#}");
    let v = env.json_ok(0, &["status"]);
    assert_eq!(v["daemon"]["running"], true, "{v:#}");

    let mut reader = std::io::BufReader::new(stalled);
    let mut head = String::new();
    std::io::BufRead::read_line(&mut reader, &mut head).unwrap();
    let head: Value = serde_json::from_str(&head).unwrap();
    assert_eq!(
        (head["exit"].as_u64(), head["body"].as_bool()),
        (Some(0), Some(true)),
        "{head:#}"
    );
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len).unwrap();
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            break;
        }
        let start = body.len();
        body.resize(start + len, 0);
        reader.read_exact(&mut body[start..]).unwrap();
    }
    assert!(
        body.len() > 1 << 20,
        "a report of megabytes: {} bytes",
        body.len()
    );
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["status"], "applied");
    assert_eq!(
        report,
        env.report_file("processed", report["stored_as"].as_str().unwrap())
    );
    daemon.stop();
}

/// Askers of `admins list` who stop reading (`admins list | less` left open) hold back other
/// listings only: `auth check`, asked at every SSO sign-in, is answered at once meanwhile.
#[test]
#[cfg_attr(missing_python3, ignore = "needs python3 (testdata/gen_roster.py)")]
fn stalled_listings_never_hold_back_a_sign_in() {
    let (env, _watch) = watch_env(no_limits());
    let big = big_roster(&env, 10_000);
    env.load_sample_rules();
    let (code, report) = env.process(&big, &[]);
    assert_eq!(code, 0, "{report:#}");
    let v = env.json_ok(0, &["admins", "list", "--status", "active"]);
    let email = v[0]["email"]
        .as_str()
        .expect("an active account")
        .to_string();
    let daemon = Daemon::start(&env);
    // Three streamed JSON listings (megabytes each), none of them read.
    let stalled: Vec<std::os::unix::net::UnixStream> = (0..3)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
            s.write_all(b"{\"request\":{\"command\":\"admins_list\",\"status\":null,\"origin\":null,\"rule\":null},\"upload\":null,\"output\":\"json\",\"stream\":true}\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let (code, out, err) = env.run(&["auth", "check", &email]);
    assert_eq!(code, 0, "auth check {email}: {out}{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "auth check waited {:?} behind stalled listings",
        started.elapsed()
    );
    drop(stalled);
    daemon.stop();
}

/// A SIGTERM that arrives while the daemon is still starting (systemd stopping a unit it
/// has just started) stops it cleanly: the signal is caught from the first moment, not only
/// once it is ready, so it is never killed by the signal's default action.
#[test]
fn sigterm_during_start_up_stops_cleanly() {
    // A start that was over before the signal went out proves nothing: started again.
    for _ in 0..10 {
        let (env, _watch) = watch_env(no_limits());
        env.load_sample_rules();
        let mut daemon = Daemon::spawn(&env, &[]);
        // The socket is bound before the store is opened and checked: start-up is under way.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !env.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "no control socket:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let during_start_up = !daemon.log().contains("autoprov ready");
        daemon.sigterm();
        let status = daemon.wait_exit(Duration::from_secs(30), "after SIGTERM during start-up");
        assert!(
            status.success(),
            "exit status {status} after SIGTERM during start-up:\n{}",
            daemon.log()
        );
        assert!(daemon.log().contains("stopped cleanly"), "{}", daemon.log());
        if during_start_up {
            return;
        }
    }
    panic!("in 10 starts, the daemon was always ready before the SIGTERM was sent");
}

/// The daemon backs the store up at each start, after READY, unless the store holds what
/// the newest automatic backup holds: restarts without a change never push older backups out.
#[test]
fn a_start_backs_up_only_a_changed_store() {
    let (env, _watch) = watch_env(no_limits());
    env.load_sample_rules();
    let backups = |env: &TestEnv| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(env.data_dir.join("backups"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let start_and_stop = |env: &TestEnv| {
        let daemon = Daemon::start(env);
        // The backup is the engine's first job: the daemon's log says when it is done.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(daemon.log().contains("store backed up")
            || daemon.log().contains("backup unchanged"))
        {
            assert!(Instant::now() < deadline, "no backup:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.stop();
    };
    start_and_stop(&env);
    let first = backups(&env);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].ends_with(".backup"), "{first:?}");
    // Nothing changed: no new backup, and no hidden file left behind.
    std::thread::sleep(Duration::from_millis(1100));
    start_and_stop(&env);
    assert_eq!(
        backups(&env),
        first,
        "an unchanged store was backed up again"
    );
    // A change made with the daemon stopped: the next start backs it up.
    std::thread::sleep(Duration::from_millis(1100));
    env.expect(
        0,
        &[
            "rules",
            "add",
            "--name",
            "Later",
            "--role",
            "IT Admin",
            "--when",
            "department = \"Nowhere\"",
        ],
    );
    start_and_stop(&env);
    let now = backups(&env);
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], first[0]);
}

/// A reader that stops early (`autoprov admins list | head`) through the daemon: the CLI
/// ends quietly with the answer's exit code, and the daemon keeps answering.
#[test]
fn a_reader_that_stops_early_through_the_daemon_is_not_a_failure() {
    let (env, _watch) = watch_env(no_limits());
    let big = big_roster(&env, 10_000);
    env.load_sample_rules();
    let _daemon = Daemon::start(&env);
    let (code, _, stderr) = env.run(&[OsStr::new("process"), big.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    // Closed before the answer comes: the listing (several chunks) cannot be written.
    let (code, stderr) = env.run_reader_gone(&["admins", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let (code, stdout, stderr) = env.run(&["status"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("accounts:"), "{stdout}");
}

/// `process` of a folder or of a file that is not there is a usage error (exit 2) naming
/// it, with or without the daemon; nothing reaches inbox/ (a folder had been opened and
/// refused only when its copy into inbox/ failed: exit 5, "writing inbox/…"). A pipe is
/// read (`process_reads_a_pipe_and_a_regular_file_alike`).
#[test]
fn process_of_a_folder_or_a_missing_file_is_a_usage_error() {
    let env = host_env(Settings::default(), "");
    let folder = env.root().join("a-folder");
    fs::create_dir(&folder).unwrap();
    let missing = env.root().join("missing.csv");
    let check = |env: &TestEnv| {
        let err = env.expect(2, &[OsStr::new("process"), folder.as_os_str()]);
        assert!(err.contains("a-folder is a folder, not a file"), "{err}");
        let err = env.expect(2, &[OsStr::new("process"), missing.as_os_str()]);
        assert!(err.contains("missing.csv"), "{err}");
    };
    check(&env);
    let d = Daemon::start(&env);
    check(&env);
    d.stop();
    assert!(env.files_in("inbox").is_empty());
}

/// A pipe given to `process` while the daemon runs reaches it whole (its announced size
/// had been 0: the daemon filed an empty file as rejected).
/// An upload whose client says the file changed while it was sent (still being written:
/// it had been applied cut short, its missing rows deactivated) is refused, nothing filed;
/// one said unchanged is processed; one of an older client, which says nothing, is taken as
/// it came.
#[test]
fn process_through_the_daemon_refuses_a_file_that_changed_while_it_was_sent() {
    let env = host_env(Settings::default(), "");
    let d = Daemon::start(&env);
    let roster = b"Employee ID,Email\nE1,e1@acme.example\n";
    let send = |name: &str, confirmed: Option<&str>| -> Value {
        let mut socket = std::os::unix::net::UnixStream::connect(&env.socket).unwrap();
        let envelope = serde_json::json!({
            "request": {"command": "process", "name": ""},
            "upload": {"name": name, "dry_run": false, "size": roster.len(), "confirmed": confirmed.is_some()},
            "output": "json",
        });
        let mut line = envelope.to_string().into_bytes();
        line.push(b'\n');
        line.extend_from_slice(roster);
        if let Some(said) = confirmed {
            line.extend_from_slice(said.as_bytes());
        }
        socket.write_all(&line).unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        serde_json::from_str(answer.lines().next().unwrap()).unwrap()
    };
    let changed = send("grow.csv", Some("changed\n"));
    assert_eq!(changed["exit"], 2, "{changed:#}");
    assert!(
        changed["text"]
            .as_str()
            .unwrap()
            .contains("changed while it was sent"),
        "{changed:#}"
    );
    assert!(common::files(&env).is_empty(), "nothing filed");
    assert!(env.files_in("inbox").is_empty());
    let unchanged = send("whole.csv", Some("unchanged\n"));
    assert_eq!(unchanged["exit"], 0, "{unchanged:#}");
    let older = send("older.csv", None);
    assert_eq!(older["exit"], 0, "{older:#}");
    assert_eq!(common::files(&env).len(), 2);
    d.stop();
}

/// A file over `roster.max_bytes` given to `process` through the daemon is filed and
/// rejected with its report, as over SFTP or without the daemon; it had been refused with
/// one line (no report, no ledger entry, nothing in rejected/).
#[test]
fn process_through_the_daemon_files_a_file_over_max_bytes_as_rejected() {
    let settings = Settings {
        extra_toml: "[roster]\nmax_bytes = 100\n".into(),
        ..Settings::default()
    };
    let env = host_env(settings, "");
    let d = Daemon::start(&env);
    let big = env.root().join("big.csv");
    let mut text = String::from("Employee ID,Email\n");
    for i in 0..20 {
        text.push_str(&format!("E{i},e{i}@acme.example\n"));
    }
    fs::write(&big, &text).unwrap();
    let (code, report) = env.process(&big, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["status"], "rejected", "{report:#}");
    assert_eq!(report["sha256"], common::sha256_hex(text.as_bytes()));
    let error = report["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("more than roster.max_bytes = 100"),
        "{report:#}"
    );
    let stored = report["stored_as"].as_str().unwrap();
    assert_eq!(
        fs::read(env.drop_dir("rejected").join(stored)).unwrap(),
        text.as_bytes(),
        "filed whole in rejected/"
    );
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(files[0]["status"], "rejected", "{files:#}");
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    d.stop();
}

#[test]
fn a_pipe_reaches_the_daemon_whole() {
    use std::io::Write;
    let env = host_env(no_limits(), "");
    env.load_sample_rules();
    let d = Daemon::start(&env);
    let bytes = fs::read(testdata("sequence/day1.csv")).unwrap();
    // `cat FILE | autoprov ARGS process /dev/stdin`, with `vars` set.
    let piped = |args: &[&str], vars: &[(&str, String)]| {
        let mut command = env.command();
        command.args(args).args(["process", "/dev/stdin"]);
        command.envs(vars.iter().map(|(k, v)| (k, v)));
        let mut child = (command.stdin(std::process::Stdio::piped()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = piped(&["--json"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["status"], "applied");
    assert_eq!(
        report["sha256"],
        common::sha256_hex(&bytes),
        "the bytes, whole"
    );
    assert_eq!(report["rows"], 300, "{report:#}");
    // A pipe longer than the CLI's own roster.max_bytes is refused as a whole: its first
    // bytes had been sent as the file, and a daemon with a larger limit applied them.
    let half = (bytes.len() / 2).to_string();
    let out = piped(&[], &[("AUTOPROV__ROSTER__MAX_BYTES", half)]);
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("nothing was sent"), "{said}");
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(files.as_array().map(Vec::len), Some(1), "{files:#}");
    d.stop();
}

/// A second daemon on a socket another daemon answers on does not start, exit 4 as on a
/// store in use (it had been 2, a usage error, which tells scripts their command line is
/// wrong); the first goes on answering.
#[test]
fn a_second_daemon_on_the_same_socket_exits_4() {
    let (env, _watch) = watch_env(Settings::default());
    let d = Daemon::start(&env);
    let out = env.expect(4, &["run"]);
    assert!(out.contains("another autoprov daemon answers on"), "{out}");
    env.json_ok(0, &["status"]);
    d.stop();
}

/// A data_dir that is a file is a config error (exit 2, which the unit does not restart),
/// and the file is left as it was: it had been a failure (exit 5, restarted every 5 s),
/// after the file's mode was changed.
#[test]
fn a_data_dir_that_is_a_file_is_a_config_error() {
    let env = TestEnv::new();
    let file = env.root().join("afile");
    fs::write(&file, b"important\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let envs = [("AUTOPROV__DATA_DIR", file.to_str().unwrap())];
    let (code, _, err) = env.run_env(&["run"], &envs);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a folder"), "{err}");
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "{err}");
    // A link to nothing, and a path through a file.
    let dangling = env.root().join("dangling");
    std::os::unix::fs::symlink(env.root().join("nowhere/x"), &dangling).unwrap();
    // (a link to nothing: a file system not mounted yet, retried)
    let missing = [
        (
            dangling.join("sub"),
            5,
            "a link to a folder that does not exist",
        ),
        (dangling, 5, "a link to a folder that does not exist"),
        (file.join("sub"), 2, "a file is on its path"),
    ];
    for (dir, want, why) in missing {
        let envs = [("AUTOPROV__DATA_DIR", dir.to_str().unwrap())];
        let (code, _, err) = env.run_env(&["run"], &envs);
        assert_eq!(code, want, "{err}");
        assert!(err.contains(why), "{err}");
        assert_eq!(
            err.matches("nothing was changed").count(),
            (want == 5) as usize,
            "{err}"
        );
    }
}

/// A second daemon on another socket but the same data_dir fails on the store's lock
/// before it changes any mode there: it had tightened the running daemon's files first,
/// and with them the order of the files waiting in inbox/ (their ctimes).
#[test]
fn a_second_daemon_on_the_same_data_dir_changes_no_mode() {
    let (env, _watch) = watch_env(Settings::default());
    let d = Daemon::start(&env);
    let loose = env.drop_dir("processed").join("loose.csv");
    fs::write(&loose, b"x").unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o666)).unwrap();
    let other = env.root().join("other.sock");
    let envs = [("AUTOPROV__CONTROL__SOCKET", other.to_str().unwrap())];
    let (code, _, err) = env.run_env(&["run"], &envs);
    assert_ne!(code, 0, "{err}");
    let mode = fs::metadata(&loose).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "left to the daemon that owns the store: {err}");
    env.json_ok(0, &["status"]);
    d.stop();
}
