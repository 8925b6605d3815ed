//! `[notify]` end to end (SPEC §10 "Unattended operation"): the real daemon posting to a
//! local receiver (an axum server on 127.0.0.1 in the test, which records every POST).
//!
//! * held and rejected files are posted once each, applied files and a person's decision
//!   are not (host mode);
//! * a file whose filing fails (processed/ replaced by a plain file) is posted once while
//!   every rescan retries it (watch mode);
//! * `stale` fires once per quiet spell, is re-armed by an applied file, and after a
//!   restart counts from the ledger's last applied file;
//! * a delivery answered 500, or refused because nothing listens yet, is retried until it
//!   is delivered; the webhook's path (its token) never reaches the log;
//! * a receiver that never answers delays no file, and does not hold up a stop;
//! * a clear-text webhook to another host is a config error naming the key.

mod common;

use common::daemon::Daemon;
use common::webhook::{Answer, HOOK_PATH, Receiver};
use common::{Settings, TestEnv, files, lazy, stays, testdata, wait_until};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

// ---- environments --------------------------------------------------------------------------

/// `[notify]` posting to `url`.
fn notify_toml(url: &str, stale_after: &str) -> String {
    format!("[notify]\nwebhook_url = {url:?}\nstale_after = {stale_after:?}\n")
}

/// Host mode on 127.0.0.1:0 (files are renamed into inbox/ directly), logging at info.
fn host_env(mut settings: Settings, notify: &str) -> TestEnv {
    let public = fs::read_to_string(testdata("keys/hris_ed25519.pub")).expect("pub key");
    settings.log_level = "info".into();
    settings.extra_toml.push_str(&format!(
        "[source]\nmode = \"host\"\nlisten = \"127.0.0.1:0\"\nrescan_interval = \"1s\"\n\
         [[source.users]]\nname = \"hris\"\nauthorized_keys = [{:?}]\n{notify}",
        public.trim()
    ));
    TestEnv::with(settings)
}

/// [`host_env`] posting to `url`, where any grant is held (`max_grants` 1 and 0 %), with
/// one rule: IT gets IT Admin.
fn held_env(url: &str) -> TestEnv {
    let settings = Settings {
        max_grants: Some((1, 0)),
        ..Settings::default()
    };
    let env = host_env(settings, &notify_toml(url, "36h"));
    let rule = [
        "--name",
        "it",
        "--role",
        "IT Admin",
        "--when",
        "department = IT",
    ];
    env.expect(0, &[&["rules", "add"][..], &rule[..]].concat());
    env
}

/// A loopback address nothing listens on, yet.
fn unused_addr() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Watch mode on `<root>/watch` (settle 1 s, rescans every second), logging at info.
fn watch_env(notify_for: impl FnOnce() -> String) -> (TestEnv, PathBuf) {
    let mut env = TestEnv::new();
    let watch = env.root().join("watch");
    fs::create_dir_all(&watch).unwrap();
    let notify = notify_for();
    env.reconfigure(|s| {
        s.log_level = "info".into();
        s.extra_toml.push_str(&format!(
            "[source]\nmode = \"watch\"\nwatch_dir = {:?}\nsettle = \"1s\"\nstartup_settle = \"1s\"\nrescan_interval = \"1s\"\n{notify}",
            watch.to_str().unwrap()
        ));
    });
    (env, watch)
}

/// Puts a complete file into `dir` (written under a hidden name, then renamed).
fn drop_into(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.part"));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A valid roster of `rows` people in IT.
fn roster(rows: usize) -> Vec<u8> {
    let mut s = String::from("Employee ID,Work Email,Department\n");
    for i in 1..=rows {
        s.push_str(&format!("E{i:04},e{i}@acme.example,IT\n"));
    }
    s.into_bytes()
}

/// Waits (≤ 30 s) for `name`'s ledger entry with `status`; returns it.
fn wait_status(env: &TestEnv, name: &str, status: &str) -> Value {
    let what = lazy(|| format!("{name} {status} in the ledger: {:#?}", files(env)));
    wait_until(what, Duration::from_secs(30), || {
        files(env)
            .into_iter()
            .find(|f| f["name"] == name && f["status"] == status)
    })
}

/// Every key of a posted event: exactly the four of SPEC §10, `text` on one line.
fn assert_shape(v: &Value) {
    let keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys.len(), 4, "{v:#}");
    for key in ["event", "file", "summary", "text"] {
        assert!(v.get(key).is_some(), "{key} missing: {v:#}");
    }
    let text = v["text"].as_str().expect("text is a string");
    assert!(!text.is_empty() && !text.contains('\n'), "{v:#}");
    assert!(v["summary"].is_string(), "{v:#}");
}

// ---- the tests ----------------------------------------------------------------------------

#[test]
fn held_and_rejected_files_are_posted_once_each_applied_files_and_decisions_are_not() {
    let receiver = Receiver::start(Answer::Ok);
    let env = held_env(&receiver.url());
    let d = Daemon::start(&env);
    let inbox = env.drop_dir("inbox");
    drop_into(&inbox, "a.csv", &roster(1));
    wait_status(&env, "a.csv", "applied");
    let broken = fs::read(testdata("broken/duplicate_employee_id.csv")).unwrap();
    drop_into(&inbox, "b.csv", &broken);
    wait_status(&env, "b.csv", "rejected");
    drop_into(&inbox, "c.csv", &roster(3));
    let held = wait_status(&env, "c.csv", "held");
    let got = receiver.wait_delivered(2);
    for v in &got {
        assert_shape(v);
    }
    assert_eq!(got[0]["event"], "file_rejected", "{got:#?}");
    assert_eq!(got[0]["file"], "b.csv");
    // The summary and the first error are the report's.
    let rejected = wait_status(&env, "b.csv", "rejected");
    let report = env.report_file("rejected", rejected["stored_as"].as_str().unwrap());
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(
        got[0]["summary"],
        format!("rejected: {} errors", errors.len())
    );
    let first = &errors[0];
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "autoprov rejected b.csv (file {}), filed as rejected/{}, and changed nothing: {} errors, the first: line {}, column \"{}\": {}",
            rejected["id"],
            rejected["stored_as"].as_str().unwrap(),
            errors.len(),
            first["line"],
            first["column"].as_str().unwrap(),
            first["message"].as_str().unwrap(),
        )),
        "{text}\n{report:#}"
    );
    assert_eq!(got[1]["event"], "file_held", "{got:#?}");
    assert_eq!(got[1]["file"], "c.csv");
    let id = held["id"].as_u64().unwrap();
    let text = got[1]["text"].as_str().unwrap();
    assert!(
        text.contains("2 grants exceed safety.max_grants")
            && text.contains(&format!("`autoprov files approve {id}`"))
            && text.contains(&format!(
                "filed as held/{}",
                held["stored_as"].as_str().unwrap()
            )),
        "{text}"
    );
    assert!(
        receiver
            .seen
            .content_types
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "application/json"),
        "content types: {:?}",
        receiver.seen.content_types.lock().unwrap()
    );
    // A person's decision is no news; nor is the applied file it makes.
    env.expect(0, &["files", "approve", &id.to_string()]);
    wait_status(&env, "c.csv", "applied");
    stays("no more notifications", Duration::from_millis(1500), || {
        receiver.attempts().len() == 2
    });
    d.stop();
}

/// A file held while the daemon stops (the engine finishes the file in progress) is
/// announced before the daemon exits: the notifier had stopped first, the event was queued
/// where nobody read it, and nothing announced the held file later.
#[test]
fn a_file_held_during_a_stop_is_posted_before_the_daemon_exits() {
    let receiver = Receiver::start(Answer::Ok);
    let env = held_env(&receiver.url());
    let d = Daemon::start_env(&env, &[("AUTOPROV_PAUSE_AT", "before_stage")]);
    drop_into(&env.drop_dir("inbox"), "c.csv", &roster(3));
    wait_until(
        "the engine in the middle of c.csv",
        Duration::from_secs(30),
        || {
            d.log()
                .contains("AUTOPROV_PAUSE_AT=before_stage: pausing")
                .then_some(())
        },
    );
    d.stop();
    let got = receiver.delivered();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["event"], "file_held", "{got:#?}");
    assert_eq!(got[0]["file"], "c.csv");
    assert_eq!(files(&env)[0]["status"], "held");
}

#[test]
fn a_failing_file_is_posted_once_while_each_rescan_retries_it() {
    let receiver = Receiver::start(Answer::Ok);
    let (env, watch) = watch_env(|| notify_toml(&receiver.url(), "36h"));
    let d = Daemon::start(&env);
    // The filing after the commit fails: processed/ is a plain file, not a folder.
    let processed = env.drop_dir("processed");
    fs::remove_dir(&processed).unwrap();
    fs::write(&processed, b"not a folder").unwrap();
    drop_into(&watch, "f.csv", &roster(1));
    // Each failed attempt (processing it, then finishing its filing at each rescan) says
    // it is retried at the next scan.
    let attempts = || {
        d.log()
            .lines()
            .filter(|l| l.contains("inbox/f.csv") && l.contains("retried at the next scan"))
            .count()
    };
    let what = lazy(|| format!("3 failed attempts for f.csv:\n{}", d.log()));
    wait_until(what, Duration::from_secs(30), || {
        (attempts() >= 3).then_some(())
    });
    let got = receiver.wait_delivered(1);
    assert_shape(&got[0]);
    assert_eq!(got[0]["event"], "file_failed", "{got:#?}");
    assert_eq!(got[0]["file"], "f.csv");
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("autoprov could not process f.csv: ")
            && text.contains("Not a directory")
            && text.contains("Its changes were recorded"),
        "{text}"
    );
    assert_eq!(got[0]["summary"], "failed: Not a directory (os error 20)");
    // More rescans fail meanwhile: still one notification.
    let failures = attempts();
    wait_until("two more failed rescans", Duration::from_secs(30), || {
        (attempts() >= failures + 2).then_some(())
    });
    assert_eq!(receiver.attempts().len(), 1, "{:#?}", receiver.attempts());
    // Fixed: the file is filed as applied, which is no news.
    fs::remove_file(&processed).unwrap();
    fs::create_dir(&processed).unwrap();
    let what = lazy(|| format!("f.csv filed in processed/: {:?}", env.files_in("processed")));
    wait_until(what, Duration::from_secs(30), || {
        env.files_in("processed")
            .iter()
            .any(|n| n.ends_with("_f.csv.report.json"))
            .then_some(())
    });
    stays("no more notifications", Duration::from_millis(1500), || {
        receiver.attempts().len() == 1
    });
    d.stop();
}

#[test]
fn stale_fires_once_per_quiet_spell_and_counts_from_the_last_applied_file() {
    let receiver = Receiver::start(Answer::Ok);
    let (env, watch) = watch_env(|| notify_toml(&receiver.url(), "2s"));
    let d = Daemon::start(&env);
    // Nothing applied yet: counted from the start.
    let got = receiver.wait_delivered(1);
    assert_shape(&got[0]);
    assert_eq!(got[0]["event"], "stale");
    assert_eq!(got[0]["file"], Value::Null);
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("autoprov has applied no roster for ")
            && text.contains("since the daemon started at")
            && text.contains("notify.stale_after = 2s"),
        "{text}"
    );
    // Once: not again while nothing is applied (a spell twice as long as stale_after).
    stays("one stale notification", Duration::from_secs(4), || {
        receiver.attempts().len() == 1
    });
    // An applied file re-arms it.
    drop_into(&watch, "a.csv", &roster(1));
    let applied = wait_status(&env, "a.csv", "applied");
    let got = receiver.wait_delivered(2);
    assert_eq!(got[1]["event"], "stale", "{got:#?}");
    assert!(
        got[1]["text"]
            .as_str()
            .unwrap()
            .contains("since the last applied file, at"),
        "{got:#?}"
    );
    d.stop();
    // After a restart, that quiet spell was reported already: not again (SPEC §10, once
    // until the next applied file; it had been sent at every restart).
    let d = Daemon::start(&env);
    let attempts = receiver.attempts();
    assert_eq!(receiver.delivered_of("stale").len(), 2, "{attempts:#?}");
    stays(
        "no stale notification after the restart",
        Duration::from_secs(4),
        || receiver.attempts().len() == attempts.len(),
    );
    d.stop();
    // A file applied while it was stopped is found in the ledger: the clock starts there.
    let _ = applied;
    let input = env.input("b.csv", &roster(2));
    env.json_ok(0, &[OsStr::new("process"), input.as_os_str()]);
    let applied = env.json_ok(0, &["files", "show", "2"]);
    let d = Daemon::start(&env);
    let got = receiver.wait_delivered(3);
    let processed_at = applied["processed_at"].as_str().unwrap();
    let seconds = &processed_at[..19];
    assert!(
        got[2]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("since the last applied file, at {seconds}")),
        "{got:#?} (applied at {processed_at})"
    );
    assert_eq!(receiver.delivered_of("stale").len(), 3);
    d.stop();
}

#[test]
fn a_delivery_answered_500_is_retried_and_the_token_is_never_logged() {
    let receiver = Receiver::start(Answer::FailFirst(2));
    let (env, watch) = watch_env(|| notify_toml(&receiver.url(), "36h"));
    let d = Daemon::start(&env);
    let broken = fs::read(testdata("broken/duplicate_employee_id.csv")).unwrap();
    drop_into(&watch, "b.csv", &broken);
    let got = receiver.wait_delivered(1);
    assert_eq!(got[0]["event"], "file_rejected", "{got:#?}");
    let attempts = receiver.attempts();
    assert_eq!(
        attempts.len(),
        3,
        "two answered 500, the third 200: {attempts:#?}"
    );
    assert!(
        attempts.iter().all(|a| *a == got[0]),
        "the same body each time: {attempts:#?}"
    );
    let what = lazy(|| format!("the delivery in the log:\n{}", d.log()));
    let log = wait_until(what, Duration::from_secs(10), || {
        let log = d.log();
        log.contains("notification delivered").then_some(log)
    });
    assert_eq!(
        log.matches("notification delivery failed: HTTP 500")
            .count(),
        2,
        "each failure is logged:\n{log}"
    );
    assert!(
        log.contains(&format!("http://{}", receiver.addr)),
        "the target is named:\n{log}"
    );
    d.stop();
    let log = d_log(&env);
    assert!(
        !log.contains("s3cr3t-token"),
        "the webhook's token was logged:\n{log}"
    );
}

/// The webhook URL read from `notify.webhook_url_file` by the daemon alone (the config is
/// read by every command, so by everyone in the socket's group): events are posted to it,
/// `status` works without reading it, and one the daemon cannot read stops the start
/// (exit 2) naming the key and the file, never the URL.
#[test]
fn the_webhook_url_may_come_from_a_file_the_daemon_reads() {
    let receiver = Receiver::start(Answer::Ok);
    let mut file = PathBuf::new();
    let (env, watch) = watch_env(|| {
        file = std::env::temp_dir().join(format!("autoprov-webhook-{}", std::process::id()));
        fs::write(&file, format!("{}\n", receiver.url())).unwrap();
        format!(
            "[notify]\nwebhook_url_file = {:?}\n",
            file.to_str().unwrap()
        )
    });
    let d = Daemon::start(&env);
    let broken = fs::read(testdata("broken/duplicate_employee_id.csv")).unwrap();
    drop_into(&watch, "b.csv", &broken);
    let got = receiver.wait_delivered(1);
    assert_eq!(got[0]["event"], "file_rejected", "{got:#?}");
    d.stop();
    fs::remove_file(&file).unwrap();
    assert_eq!(env.run(&["status"]).0, 0, "the CLI does not read the file");
    let (code, _, err) = env.run(&["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("notify.webhook_url_file") && err.contains("cannot read"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-token"), "{err}");
}

/// A loopback webhook is posted to directly, whatever proxy the environment names (one set
/// for the HR system's API): the proxy had been sent every event, with the URL's token, in
/// clear text, and the delivery had failed.
#[test]
fn a_loopback_webhook_is_not_sent_through_the_environments_proxy() {
    let receiver = Receiver::start(Answer::Ok);
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let via = format!("http://{}", proxy.local_addr().unwrap());
    let (env, watch) = watch_env(|| notify_toml(&receiver.url(), "36h"));
    let proxies = [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    let envs: Vec<(&str, &str)> = proxies.iter().map(|k| (*k, via.as_str())).collect();
    let d = Daemon::start_env(&env, &envs);
    let broken = fs::read(testdata("broken/duplicate_employee_id.csv")).unwrap();
    drop_into(&watch, "b.csv", &broken);
    let got = receiver.wait_delivered(1);
    assert_eq!(got[0]["event"], "file_rejected", "{got:#?}");
    d.stop();
    let asked = proxy.accept();
    assert!(
        asked
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the proxy was connected to: {asked:?}"
    );
}

/// Every daemon log of `env` so far.
fn d_log(env: &TestEnv) -> String {
    let mut all = String::new();
    for entry in fs::read_dir(env.root()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("daemon-") && name.ends_with(".log") {
            all.push_str(&fs::read_to_string(&path).unwrap());
        }
    }
    all
}

/// A held file whose `file_held` was never delivered (nothing listened before the stop) is
/// announced at the next start, once: a restart had dropped the only alert of a file that
/// blocks every later roster.
#[test]
fn a_held_file_never_announced_is_announced_at_the_next_start_once() {
    let addr = unused_addr();
    let env = held_env(&format!("http://{addr}{HOOK_PATH}"));
    let d = Daemon::start(&env);
    drop_into(&env.drop_dir("inbox"), "c.csv", &roster(3));
    wait_status(&env, "c.csv", "held");
    let what = lazy(|| format!("a failed delivery in the log:\n{}", d.log()));
    wait_until(what, Duration::from_secs(30), || {
        d.log()
            .contains("notification delivery failed")
            .then_some(())
    });
    d.stop();
    let receiver = Receiver::start_on(addr, Answer::Ok);
    let d = Daemon::start(&env);
    let got = receiver.wait_delivered(1);
    assert_eq!(
        (got[0]["event"].as_str(), got[0]["file"].as_str()),
        (Some("file_held"), Some("c.csv")),
        "{got:#?}"
    );
    d.stop();
    // Delivered: not again at the next start.
    let d = Daemon::start(&env);
    stays("no second file_held", Duration::from_secs(2), || {
        receiver.delivered().len() == 1
    });
    d.stop();
}

/// A held file committed just before a crash is announced once at the next start: the
/// start's recovery tells it, and the start's telling of the file held then does not
/// again (it had been posted twice).
#[test]
fn a_file_held_just_before_a_crash_is_announced_once() {
    let receiver = Receiver::start(Answer::Ok);
    let env = held_env(&receiver.url());
    let mut d = Daemon::spawn(&env, &[("AUTOPROV_CRASH_AT", "after_commit")]);
    drop_into(&env.drop_dir("inbox"), "c.csv", &roster(3));
    let st = d.wait_exit(Duration::from_secs(30), "the crash after the commit");
    assert!(!st.success(), "{}", d.log());
    assert!(receiver.delivered().is_empty(), "nothing before the crash");
    let d = Daemon::start(&env);
    let got = receiver.wait_delivered(1);
    assert_eq!(got[0]["event"], "file_held", "{got:#?}");
    stays("no second file_held", Duration::from_secs(2), || {
        receiver.delivered().len() == 1
    });
    d.stop();
}

#[test]
fn a_delivery_is_retried_until_the_receiver_listens() {
    let addr = unused_addr();
    let url = format!("http://{addr}{HOOK_PATH}");
    let (env, watch) = watch_env(|| notify_toml(&url, "36h"));
    let d = Daemon::start(&env);
    let broken = fs::read(testdata("broken/duplicate_employee_id.csv")).unwrap();
    drop_into(&watch, "b.csv", &broken);
    let what = lazy(|| format!("a failed delivery in the log:\n{}", d.log()));
    wait_until(what, Duration::from_secs(30), || {
        let log = d.log();
        // Each failure is logged with its cause.
        (log.contains("notification delivery failed") && log.contains("Connection refused"))
            .then_some(())
    });
    let receiver = Receiver::start_on(addr, Answer::Ok);
    let got = receiver.wait_delivered(1);
    assert_eq!(got[0]["event"], "file_rejected", "{got:#?}");
    assert_eq!(got[0]["file"], "b.csv");
    assert!(!d.log().contains("s3cr3t-token"), "{}", d.log());
    d.stop();
}

#[test]
fn a_receiver_that_never_answers_delays_no_file_nor_the_stop() {
    let receiver = Receiver::start(Answer::Hang);
    let (env, watch) = watch_env(|| notify_toml(&receiver.url(), "36h"));
    let d = Daemon::start(&env);
    // More events than deliveries in flight: some hang, the rest wait in the queue.
    let broken = fs::read(testdata("broken/duplicate_employee_id.csv")).unwrap();
    for i in 0..6 {
        drop_into(&watch, &format!("broken-{i}.csv"), &broken);
    }
    wait_until("a delivery hanging", Duration::from_secs(30), || {
        (receiver.seen.hanging.load(Ordering::SeqCst) >= 1).then_some(())
    });
    drop_into(&watch, "good.csv", &roster(2));
    let what = lazy(|| {
        format!(
            "good.csv's report in processed/: {:?}",
            env.files_in("processed")
        )
    });
    wait_until(what, Duration::from_secs(30), || {
        env.files_in("processed")
            .iter()
            .any(|n| n.ends_with("_good.csv.report.json"))
            .then_some(())
    });
    assert!(
        receiver.delivered().is_empty(),
        "the receiver answered nothing"
    );
    assert!(receiver.seen.hanging.load(Ordering::SeqCst) >= 1);
    for i in 0..6 {
        wait_status(&env, &format!("broken-{i}.csv"), "rejected");
    }
    // The deliveries still hanging do not hold up a stop, nor the store while the stop
    // waits for them: a command (the sign-in hook's `auth check`) had found it in use.
    let mut d = d;
    d.sigterm();
    wait_until(
        "a command served while the stop waits for its notifications",
        Duration::from_secs(5),
        || (env.run(&["rules", "list"]).0 == 0).then_some(()),
    );
    assert!(!d.log().contains("stopped cleanly"), "{}", d.log());
    // A daemon started meanwhile keeps its socket when this one ends (it had been removed
    // by the first one's exit: sign-ins and every command failed until a restart).
    let next = Daemon::start(&env);
    let status = d.wait_exit(Duration::from_secs(20), "after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(
        common::daemon::socket_answers(&env.socket),
        "the new daemon's socket is gone"
    );
    next.stop_within(Duration::from_secs(30));
}

#[test]
fn a_clear_text_webhook_to_another_host_is_a_config_error_naming_the_key() {
    let env = TestEnv::with(Settings {
        extra_toml: notify_toml("http://hooks.example.com/services/s3cr3t-token", "36h"),
        ..Settings::default()
    });
    let (code, out, err) = env.run(&["status"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("notify.webhook_url") && err.contains("loopback"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-token"), "{err}");
}
