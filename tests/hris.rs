//! HRIS sources (SPEC §10, issue 12): the daemon fetches the roster from local HTTPS servers
//! that answer as BambooHR, Workday and a CSV export do (tests/hris/vendors.rs), with a CA
//! made in the test as `source.hris.ca_file`. Each provider's fetch is compared with the
//! same roster processed as a file; every failure writes nothing and changes nothing.

mod common;
#[path = "hris/vendors.rs"]
mod vendors;

use common::daemon::Daemon;
use common::https::{HttpsServer, TestCa, base64};
use common::{Settings, TestEnv, lazy, stays, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vendors::{
    BAMBOO, BAMBOO_FIELDS, CSV, CSV_PATH, ELSEWHERE, Employee, Fake, REPORT, REPORT_PATH, Reply,
    TOKEN, TOKEN_PATH, bamboo_answer, roster, roster_csv, workday_answer,
};

const WAIT: Duration = Duration::from_secs(30);
const API_KEY: &str = "bamboo-key-5f1e9c";

/// A fake vendor over HTTPS and an installation fetching from it.
struct Setup {
    env: TestEnv,
    fake: Arc<Fake>,
    server: HttpsServer,
    ca_file: PathBuf,
    _ca: TestCa,
}

impl Setup {
    /// Serves `fake`; the config gets `settings` plus what `source` writes (given the
    /// setup, it may write secret files into the env's root).
    fn new(fake: Arc<Fake>, settings: Settings, source: impl FnOnce(&Setup) -> String) -> Setup {
        let ca = TestCa::new();
        let server = HttpsServer::start(&ca, fake.router());
        let env = TestEnv::with(settings);
        let ca_file = ca.write_pem(env.root());
        let mut setup = Setup {
            env,
            fake,
            server,
            ca_file,
            _ca: ca,
        };
        let toml = source(&setup);
        setup.env.reconfigure(|s| s.extra_toml.push_str(&toml));
        setup
    }

    /// `[source]` and `[source.hris]` for `provider` (first fetch at start-up, 5 s timeout,
    /// one retry), then `more` (keys of `[source.hris]`, then the provider's section).
    fn hris(&self, provider: &str, more: &str) -> String {
        format!(
            "[source]\nmode = \"hris\"\n\n[source.hris]\nprovider = \"{provider}\"\nat = \"\"\n\
             every = \"24h\"\ntimeout = \"5s\"\nretries = 1\nca_file = {:?}\n{more}\n",
            self.ca_file.display().to_string()
        )
    }

    /// Writes a secret file (with a trailing newline, mode 0600 as the README asks) and
    /// returns its path as TOML.
    fn secret(&self, name: &str, value: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.env.root().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        format!("{:?}", path.display().to_string())
    }

    /// BambooHR at the fake, with the API key in a file.
    fn bamboo(&self, more: &str) -> String {
        let key = self.secret("bamboohr.key", API_KEY);
        self.hris(
            "bamboohr",
            &format!(
                "{more}\n[source.hris.bamboohr]\nbase_url = \"{}\"\nsubdomain = \"acme\"\napi_key_file = {key}\n",
                self.server.url("")
            ),
        )
    }
}

fn bamboo_fake() -> Arc<Fake> {
    let auth = format!("Basic {}", base64(format!("{API_KEY}:x").as_bytes()));
    Fake::new(&auth, Reply::json(&bamboo_answer(&roster())))
}

fn info() -> Settings {
    Settings {
        log_level: "info".into(),
        ..Settings::default()
    }
}

/// The rules of every comparison: a title, a derived manager flag, a department.
const RULES: [(&str, &str, &[&str]); 3] = [
    ("Executives", "Super Admin", &["job_title = CEO"]),
    (
        "Engineering managers",
        "IT Admin",
        &["department = Engineering", "is_manager = true"],
    ),
    ("Finance", "Billing Admin", &["department = Finance"]),
];

fn add_rules(env: &TestEnv) {
    for (name, role, when) in RULES {
        let mut args = vec!["rules", "add", "--name", name, "--role", role];
        for w in when {
            args.extend(["--when", w]);
        }
        env.json_ok(0, &args);
    }
}

/// The ledger entries of fetched files, oldest first.
fn fetched(env: &TestEnv) -> Vec<Value> {
    common::files(env)
        .into_iter()
        .filter(|f| f["name"].as_str().unwrap_or_default().starts_with("hris-"))
        .collect()
}

/// Waits until `n` fetched files are in the ledger; returns them.
fn wait_fetched(env: &TestEnv, n: usize) -> Vec<Value> {
    wait_until(
        lazy(|| format!("{n} fetched files in the ledger: {:#?}", fetched(env))),
        WAIT,
        || {
            let files = fetched(env);
            (files.len() >= n && files.iter().all(|f| filed(env, f))).then_some(files)
        },
    )
}

/// Whether a ledger entry's file is in its folder: the ledger shows it from the commit on,
/// the move follows the commit.
fn filed(env: &TestEnv, file: &Value) -> bool {
    let folder = match file["status"].as_str() {
        Some("rejected") => "rejected",
        Some("held") => "held",
        _ => "processed",
    };
    file["stored_as"]
        .as_str()
        .is_some_and(|name| env.drop_dir(folder).join(name).exists())
}

/// Every name in inbox/, hidden ones included.
fn inbox(env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.drop_dir("inbox"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Accounts as (email, role, status, rule name) by employee id.
fn accounts(env: &TestEnv) -> BTreeMap<String, [String; 4]> {
    env.accounts(&[])
        .into_iter()
        .map(|(id, a)| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (id, [s("email"), s("role"), s("status"), s("rule")])
        })
        .collect()
}

/// Processes `file` with the same rules in a fresh installation and compares its accounts
/// and report counts with the first fetched file of `env`.
fn assert_same_as_file(env: &TestEnv, file: &[u8]) {
    let other = TestEnv::new();
    add_rules(&other);
    let (code, report) = other.process(&other.input("roster.csv", file), &[]);
    assert_eq!(code, 0, "{report:#}");
    let first = &fetched(env)[0];
    let fetched_report = env.report_file("processed", first["stored_as"].as_str().unwrap());
    assert_eq!(fetched_report["status"], "applied", "{fetched_report:#}");
    assert_eq!(fetched_report["counts"], report["counts"]);
    assert_eq!(fetched_report["rows"], report["rows"]);
    assert_eq!(accounts(env), accounts(&other));
}

/// The accounts the rules give the test roster: the manager flag comes from the
/// supervisor field (2 manages 3 and 4), the former accountant (7) gets nothing.
fn assert_expected_accounts(env: &TestEnv) {
    let got = accounts(env);
    let roles: Vec<(&str, &str)> = got
        .iter()
        .map(|(id, a)| (id.as_str(), a[1].as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            ("1", "Super Admin"),
            ("2", "IT Admin"),
            ("5", "Billing Admin"),
            ("6", "Billing Admin")
        ],
        "{got:#?}"
    );
}

/// Fails if any of `secrets` shows in the daemon's log, `status`, `files list`, `audit`,
/// or any file under the drop (reports and fetched files).
fn assert_no_secrets(env: &TestEnv, daemon: &Daemon, secrets: &[&str]) {
    let mut places = vec![("daemon log".to_string(), daemon.log())];
    for args in [&["status"][..], &["files", "list"], &["audit"]] {
        let (_, out, err) = env.run(&[&["--json"][..], args].concat());
        places.push((format!("{args:?} --json"), format!("{out}{err}")));
        let (_, out, err) = env.run(args);
        places.push((format!("{args:?}"), format!("{out}{err}")));
    }
    for folder in ["inbox", "processed", "rejected", "held"] {
        for name in env.files_in(folder) {
            let bytes = std::fs::read(env.drop_dir(folder).join(&name)).unwrap();
            places.push((
                format!("{folder}/{name}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    for secret in secrets {
        for (place, text) in &places {
            assert!(
                !text.contains(secret),
                "the secret {secret:?} shows in {place}"
            );
        }
    }
}

#[test]
fn bamboohr_fetch_gives_what_the_same_roster_as_a_file_gives() {
    let s = Setup::new(bamboo_fake(), info(), |s| s.bamboo(""));
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env);
    let files = wait_fetched(&s.env, 1);
    assert_expected_accounts(&s.env);
    assert_same_as_file(&s.env, &roster_csv(&roster()));
    // The request as BambooHR documents it.
    let seen = &s.fake.seen(BAMBOO)[0];
    assert_eq!(seen.query, "format=JSON&onlyCurrent=true");
    assert_eq!(seen.content_type, "application/json");
    let body: Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["fields"], serde_json::json!(BAMBOO_FIELDS));
    // The file: hris-bamboohr-<stamp>.csv, canonical columns first under canonical names.
    let name = files[0]["name"].as_str().unwrap();
    assert!(
        name.len() == "hris-bamboohr-20261101T020000Z.csv".len()
            && name.starts_with("hris-bamboohr-")
            && name.ends_with("Z.csv"),
        "{name}"
    );
    let stored = std::fs::read_to_string(
        s.env
            .drop_dir("processed")
            .join(files[0]["stored_as"].as_str().unwrap()),
    )
    .unwrap();
    assert!(
        stored.starts_with(
            "employee_id,email,manager_id,employment_status,department,division,location,jobTitle\n1,ceo@acme.io,,Active,"
        ),
        "{stored}"
    );
    // status shows the provider, the last success and the next fetch.
    let status = s.env.json_ok(0, &["status"]);
    let hris = &status["daemon"]["hris"];
    assert_eq!(hris["provider"], "bamboohr", "{status:#}");
    assert!(
        hris["last_success"]
            .as_str()
            .is_some_and(common::is_rfc3339_utc),
        "{hris}"
    );
    assert!(
        hris["next_fetch"]
            .as_str()
            .is_some_and(common::is_rfc3339_utc),
        "{hris}"
    );
    assert_eq!(hris["last_error"], Value::Null);
    // `autoprov fetch`: fetched and processed now, its report printed, exit 0.
    let report = s.env.json_ok(0, &["fetch"]);
    assert_eq!(report["status"], "applied", "{report:#}");
    assert!(
        report["file"]
            .as_str()
            .unwrap()
            .starts_with("hris-bamboohr-")
    );
    assert_eq!(fetched(&s.env).len(), 2);
    assert_eq!(s.fake.count(BAMBOO), 2);
    assert!(inbox(&s.env).is_empty(), "{:?}", inbox(&s.env));
    // The file `fetch` asked for is audited as the user who ran it (the scan its arrival
    // started had taken it as autoprov's), the scheduled one as autoprov's.
    let audit = s.env.json_ok(0, &["audit"]);
    let users_of = |file: &Value| -> Vec<String> {
        let id = format!("file {} ", file["id"]);
        let entries = audit.as_array().unwrap().iter();
        entries
            .filter(|e| e["action"].as_str().unwrap_or_default().starts_with("file"))
            .filter(|e| e["detail"].as_str().unwrap_or_default().starts_with(&id))
            .map(|e| e["user"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let files = fetched(&s.env);
    assert_eq!(users_of(&files[0]), ["autoprov"], "{audit:#}");
    assert_eq!(users_of(&files[1]), [common::current_user()], "{audit:#}");
    assert_no_secrets(
        &s.env,
        &daemon,
        &[API_KEY, &base64(format!("{API_KEY}:x").as_bytes())],
    );
    // The key file is the daemon's user's alone (0600): no warning.
    assert!(!daemon.log().contains("has mode"), "{}", daemon.log());
    daemon.stop();
}

#[test]
fn workday_basic_fetch_gives_what_the_same_roster_as_a_file_gives() {
    let auth = format!("Basic {}", base64(b"ISU_autoprov@acme:wd-pass-77"));
    let fake = Fake::new(&auth, workday_answer(&roster()));
    let s = Setup::new(fake, info(), |s| {
        let pw = s.secret("workday.password", "wd-pass-77");
        s.hris(
            "workday",
            &format!(
                "[source.hris.workday]\nreport_url = \"{}\"\nauth = \"basic\"\n\
                 username = \"ISU_autoprov@acme\"\npassword_file = {pw}\n",
                s.server.url(REPORT_PATH)
            ),
        )
    });
    add_rules(&s.env);
    // A secret file its group may read is used, and warned of at the start.
    let password = s.env.root().join("workday.password");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o640);
        std::fs::set_permissions(&password, mode).unwrap();
    }
    let daemon = Daemon::start(&s.env);
    let files = wait_fetched(&s.env, 1);
    assert_expected_accounts(&s.env);
    assert_same_as_file(&s.env, &roster_csv(&roster()));
    let warning = format!(
        "source.hris.workday.password_file = {}: the file has mode 0640",
        password.display()
    );
    assert!(daemon.log().contains(&warning), "{}", daemon.log());
    let stored = std::fs::read_to_string(
        s.env
            .drop_dir("processed")
            .join(files[0]["stored_as"].as_str().unwrap()),
    )
    .unwrap();
    // The union of the entries' fields in order of first appearance: the CEO's entry has
    // no Manager_ID, so it comes after the fields of the first entry.
    assert!(
        stored.starts_with(
            "employee_id,email,employment_status,Department,Division,Location,Job_Title,manager_id\n1,ceo@acme.io,Active,"
        ),
        "{stored}"
    );
    assert_eq!(s.fake.seen(REPORT)[0].query, "format=json");
    assert_no_secrets(&s.env, &daemon, &["wd-pass-77"]);
    daemon.stop();
}

#[test]
fn workday_oauth_refreshes_a_token_and_sends_it_as_bearer() {
    let (refresh, secret, access) = ("RT-refresh-91c2", "CS-client-44ab", "AT-access-7d03");
    let fake = Fake::oauth(
        ("autoprov-client", secret),
        refresh,
        access,
        workday_answer(&roster()),
    );
    let settings = Settings {
        log_level: "debug".into(),
        ..Settings::default()
    };
    let s = Setup::new(fake, settings, |s| {
        let cs = s.secret("client.secret", secret);
        let rt = s.secret("refresh.token", refresh);
        s.hris(
            "workday",
            &format!(
                "[source.hris.workday]\nreport_url = \"{}\"\nauth = \"oauth\"\ntoken_url = \"{}\"\n\
                 client_id = \"autoprov-client\"\nclient_secret_file = {cs}\nrefresh_token_file = {rt}\n",
                s.server.url(REPORT_PATH),
                s.server.url(TOKEN_PATH)
            ),
        )
    });
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env);
    wait_fetched(&s.env, 1);
    assert_expected_accounts(&s.env);
    let token = &s.fake.seen(TOKEN)[0];
    assert_eq!(token.content_type, "application/x-www-form-urlencoded");
    let form = vendors::form_decode(&token.body);
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(field("grant_type"), Some("refresh_token"));
    assert_eq!(field("refresh_token"), Some(refresh));
    assert_eq!(field("client_id"), Some("autoprov-client"));
    assert_eq!(field("client_secret"), Some(secret));
    assert_eq!(s.fake.seen(REPORT)[0].auth, format!("Bearer {access}"));
    // Every fetch refreshes the token first.
    s.env.json_ok(0, &["fetch"]);
    assert_eq!((s.fake.count(TOKEN), s.fake.count(REPORT)), (2, 2));
    // A token refused by the report (it expired while the attempts waited): a fresh one is
    // asked for, once, and the report again; refused twice, the credentials are.
    s.fake.push([Reply::Status(401, vec![])]);
    s.env.json_ok(0, &["fetch"]);
    assert_eq!((s.fake.count(TOKEN), s.fake.count(REPORT)), (4, 4));
    s.fake
        .push([Reply::Status(401, vec![]), Reply::Status(401, vec![])]);
    let out = s.env.expect(5, &["fetch"]);
    assert!(out.contains("credentials refused"), "{out}");
    assert_eq!((s.fake.count(TOKEN), s.fake.count(REPORT)), (6, 6));
    // The token endpoint redirecting to another host: refused, not followed (a 307 would
    // resend the grant, with the client secret and refresh token, there) nor retried.
    let to = s.server.url(TOKEN_PATH).replace("127.0.0.1", "localhost");
    s.fake
        .push_token([Reply::Status(307, vec![("location", to)])]);
    let out = s.env.expect(5, &["fetch"]);
    assert!(out.contains("redirected to another host"), "{out}");
    assert_eq!((s.fake.count(TOKEN), s.fake.count(REPORT)), (7, 6));
    // An endpoint that rotates refresh tokens: the new one is sent from then on (the old
    // one, sent again, had been refused), and the log says it is not kept across restarts.
    let rotated = "RT-rotated-5e1f";
    s.fake.rotate_refresh_token(rotated);
    s.env.json_ok(0, &["fetch"]);
    s.env.json_ok(0, &["fetch"]);
    assert_eq!((s.fake.count(TOKEN), s.fake.count(REPORT)), (9, 8));
    let sent = vendors::form_decode(&s.fake.seen(TOKEN)[8].body);
    assert!(
        sent.iter()
            .any(|(k, v)| k == "refresh_token" && v == rotated),
        "{sent:?}"
    );
    assert!(
        daemon.log().contains("answered with a new refresh token"),
        "{}",
        daemon.log()
    );
    // A refused grant (400 invalid_grant) is "credentials refused", not retried, and the
    // report is not asked for.
    s.fake.revoke_refresh_token();
    let out = s.env.expect(5, &["fetch"]);
    assert!(out.contains("credentials refused"), "{out}");
    assert_eq!((s.fake.count(TOKEN), s.fake.count(REPORT)), (10, 8));
    assert!(inbox(&s.env).is_empty(), "{:?}", inbox(&s.env));
    assert_no_secrets(&s.env, &daemon, &[refresh, secret, access, rotated]);
    daemon.stop();
}

/// BambooHR leaves out of its answer a field the API key's user may not see: without
/// `status` every leaver would have counted as active. The fetch fails instead, naming the
/// field, and nothing is filed or changed.
#[test]
fn a_bamboohr_answer_without_the_status_field_fails_the_fetch() {
    let mut answer = bamboo_answer(&roster());
    for employee in answer["employees"].as_array_mut().unwrap() {
        employee.as_object_mut().unwrap().remove("status");
    }
    answer["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["id"] != "status");
    let auth = format!("Basic {}", base64(format!("{API_KEY}:x").as_bytes()));
    let s = Setup::new(Fake::new(&auth, Reply::json(&answer)), info(), |s| {
        s.bamboo("")
    });
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env);
    let out = s.env.expect(5, &["fetch"]);
    assert!(
        out.contains("\"status\"") && out.contains("employment_status"),
        "{out}"
    );
    assert!(fetched(&s.env).is_empty(), "{:#?}", fetched(&s.env));
    assert!(inbox(&s.env).is_empty(), "{:?}", inbox(&s.env));
    assert!(s.env.accounts(&[]).is_empty());
    daemon.stop();
}

/// A roster in Windows-1252 with semicolons and CRLF, as Excel writes it.
fn excel_roster(employees: &[Employee]) -> Vec<u8> {
    let text = String::from_utf8(roster_csv(employees))
        .unwrap()
        .replace(',', ";")
        .replace('\n', "\r\n");
    text.chars()
        .map(|c| match c {
            'ü' => 0xFC,
            c => u8::try_from(c).expect("ASCII or ü"),
        })
        .collect()
}

#[test]
fn csv_url_stores_the_bytes_as_received() {
    let bytes = excel_roster(&roster());
    let fake = Fake::new(
        "Bearer export-token-3e8a",
        Reply::Body("text/csv", bytes.clone()),
    );
    let s = Setup::new(fake, info(), |s| {
        let token = s.secret("export.token", "export-token-3e8a");
        s.hris(
            "csv_url",
            &format!(
                "[source.hris.csv_url]\nurl = \"{}?sig=presigned-5f1e\"\nbearer_token_file = {token}\n",
                s.server.url(CSV_PATH)
            ),
        )
    });
    add_rules(&s.env);
    // A first answer that fails: its message names the URL, without its query (a
    // pre-signed link's signature is a credential).
    s.fake.push([Reply::Status(500, Vec::new())]);
    let daemon = Daemon::start(&s.env);
    let files = wait_fetched(&s.env, 1);
    assert!(
        files[0]["name"]
            .as_str()
            .unwrap()
            .starts_with("hris-csv_url-")
    );
    let stored = std::fs::read(
        s.env
            .drop_dir("processed")
            .join(files[0]["stored_as"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(stored, bytes);
    assert_expected_accounts(&s.env);
    assert_same_as_file(&s.env, &bytes);
    assert!(
        daemon.log().contains("answered HTTP 500"),
        "the failure logged"
    );
    assert_no_secrets(&s.env, &daemon, &["export-token-3e8a", "presigned-5f1e"]);
    daemon.stop();
}

/// An HTTP/1.1 answer without a Content-Length or chunked encoding ends where the connection
/// closes, which a cut does too: refused, nothing changed. The same bytes with a
/// Content-Length are applied (the first fetch, at start-up).
#[test]
fn csv_url_refuses_an_answer_whose_end_cannot_be_told_from_a_cut() {
    let bytes = excel_roster(&roster());
    let ca = TestCa::new();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nConnection: close\r\n";
    let whole = [
        format!("{head}Content-Length: {}\r\n\r\n", bytes.len()).as_bytes(),
        &bytes[..],
    ]
    .concat();
    // Cut after the first rows: every employee after them would be deactivated.
    let cut = bytes.len() / 3;
    let unframed = [format!("{head}\r\n").as_bytes(), &bytes[..cut]].concat();
    // Chunked only when it is the last coding: with another after it, the body also ends
    // where the connection closes.
    let not_last = [
        format!("{head}Transfer-Encoding: chunked, gzip\r\n\r\n").as_bytes(),
        &bytes[..cut],
    ]
    .concat();
    let server = HttpsServer::raw(&ca, vec![whole, unframed, not_last]);
    let mut env = TestEnv::with(info());
    let ca_file = ca.write_pem(env.root());
    let toml = format!(
        "[source]\nmode = \"hris\"\n\n[source.hris]\nprovider = \"csv_url\"\nat = \"\"\n\
         every = \"24h\"\ntimeout = \"5s\"\nretries = 1\nca_file = {:?}\n\
         [source.hris.csv_url]\nurl = \"{}\"\n",
        ca_file.display().to_string(),
        server.url(CSV_PATH)
    );
    env.reconfigure(|s| s.extra_toml.push_str(&toml));
    add_rules(&env);
    let daemon = Daemon::start(&env);
    wait_fetched(&env, 1);
    assert_expected_accounts(&env);
    let (files, before) = (common::files(&env), accounts(&env));
    for _ in ["no framing", "chunked, gzip"] {
        let (code, out, err) = env.run(&["fetch"]);
        assert_eq!(code, 5, "stdout {out}\nstderr {err}");
        assert!(
            err.contains("cannot be told from a cut connection"),
            "{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
    }
    assert!(inbox(&env).is_empty(), "inbox {:?}", inbox(&env));
    assert_eq!(common::files(&env), files, "the ledger changed");
    assert_eq!(accounts(&env), before, "accounts changed");
    daemon.stop();
}

/// Runs `fetch` after queueing `replies`: exit 5 with `message`, `requests` requests to the
/// vendor, nothing in inbox/ (hidden files included), the ledger and accounts unchanged. Returns what `fetch` printed on stderr.
fn assert_failed_fetch(s: &Setup, replies: Vec<Reply>, message: &str, requests: usize) -> String {
    let (files, accounts_before, hits) = (
        common::files(&s.env),
        accounts(&s.env),
        s.fake.count(BAMBOO),
    );
    s.fake.push(replies);
    let (code, out, err) = s.env.run(&["fetch"]);
    s.fake.clear_script();
    assert_eq!(code, 5, "{message}: stdout {out}\nstderr {err}");
    assert!(err.contains(message), "wanted {message:?} in: {err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        s.fake.count(BAMBOO) - hits,
        requests,
        "requests for {message}"
    );
    assert!(
        inbox(&s.env).is_empty(),
        "{message}: inbox {:?}",
        inbox(&s.env)
    );
    assert_eq!(
        common::files(&s.env),
        files,
        "{message}: the ledger changed"
    );
    assert_eq!(
        accounts(&s.env),
        accounts_before,
        "{message}: accounts changed"
    );
    let status = s.env.json_ok(0, &["status"]);
    let last = status["daemon"]["hris"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        last.contains(message),
        "status last_error {last:?} for {message}"
    );
    err
}

#[test]
fn every_failed_fetch_writes_nothing_and_changes_nothing() {
    let settings = Settings {
        log_level: "info".into(),
        extra_toml: "[roster]\nmax_bytes = 4096\n\n".into(),
        ..Settings::default()
    };
    let s = Setup::new(bamboo_fake(), settings, |s| {
        s.bamboo("").replace("timeout = \"5s\"", "timeout = \"2s\"")
    });
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env).tail_on_panic(60);
    wait_fetched(&s.env, 1);
    let status = |code: u16| Reply::Status(code, Vec::new());
    let json = |text: &str| Reply::Body("application/json", text.as_bytes().to_vec());
    assert_failed_fetch(&s, vec![status(401)], "credentials refused", 1);
    assert_failed_fetch(&s, vec![status(403)], "credentials refused", 1);
    assert_failed_fetch(&s, vec![status(404)], "answered HTTP 404", 1);
    // What BambooHR says why (a field it does not know) is shown; not when it repeats
    // the key.
    let said = |why: &str| Reply::Status(400, vec![("x-bamboohr-error-message", why.into())]);
    let why = "Unknown field 'departmnt'";
    let told = "answered HTTP 400; it says \"Unknown field 'departmnt'\"";
    assert_failed_fetch(&s, vec![said(why)], told, 1);
    let why = format!("Invalid key {}", API_KEY.to_uppercase());
    let told = "answered HTTP 400; what it says repeats part of the credential, so it is not shown";
    let err = assert_failed_fetch(&s, vec![said(&why)], told, 1);
    assert!(!err.to_lowercase().contains(API_KEY), "{err}");
    assert_failed_fetch(&s, vec![status(503), status(503)], "answered HTTP 503", 2);
    // A redirect to another host is followed (an export behind a download link), without
    // the request's credentials; there, nothing answers.
    let to = |path: &str| s.server.url(path).replace("127.0.0.1", "localhost");
    let elsewhere = |code: u16| Reply::Status(code, vec![("location", to("/elsewhere"))]);
    assert_failed_fetch(&s, vec![elsewhere(307)], "answered HTTP 404", 1);
    assert_failed_fetch(&s, vec![elsewhere(302)], "answered HTTP 404", 1);
    // There, a 401 refuses no credentials of ours (none were sent): the host is named, and
    // the credential files are not blamed.
    let private = Reply::Status(307, vec![("location", to("/private"))]);
    let host = to("");
    let told = format!(
        "redirected to {}/… (sent no credentials",
        host.trim_end_matches('/')
    );
    let err = assert_failed_fetch(&s, vec![private], &told, 1);
    assert!(
        err.contains("answered HTTP 401") && !err.contains("credentials refused"),
        "{err}"
    );
    // Back on the first host after another: followed (reqwest sends no credentials there
    // at that hop), its 401 not told apart from a refusal of them.
    let back = s.server.url("/elsewhere/private");
    let bounce = |on: &str| {
        Reply::Status(
            307,
            vec![("location", format!("{}?to={on}", to("/bounce")))],
        )
    };
    assert_failed_fetch(&s, vec![bounce(&back)], "answered HTTP 401", 1);
    // On within the other host: refused, where the client had sent it the first request's
    // credentials (it starts each hop from that request's headers).
    let within = bounce(&to("/elsewhere/private"));
    let err = assert_failed_fetch(&s, vec![within], "again within another host", 1);
    assert!(!err.contains("credentials refused"), "{err}");
    let there = s.fake.seen(ELSEWHERE);
    assert_eq!(there.len(), 6, "the redirects followed");
    for seen in &there {
        assert_eq!(seen.auth, "", "no credentials sent on to another host");
        assert_eq!(seen.referer, "", "no Referer (it would carry the URL)");
    }
    // Within the configured host the credentials go on: a 401 there is theirs.
    let home = Reply::Status(307, vec![("location", s.server.url("/elsewhere/private"))]);
    assert_failed_fetch(&s, vec![home], "credentials refused", 1);
    // A redirect to plain HTTP is refused, not retried, and the URL it named (a
    // pre-signed link's signature in its query) shows nowhere: not in `fetch`'s message,
    // `status` (which `/healthz` shows) or the log.
    let plain = Reply::Status(
        302,
        vec![(
            "location",
            "http://127.0.0.1:9/x?X-Amz-Signature=sig-4b7d".to_string(),
        )],
    );
    let err = assert_failed_fetch(&s, vec![plain], "URL scheme is not allowed", 1);
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
    assert!(!err.contains("sig-4b7d"), "{err}");
    assert_no_secrets(&s.env, &daemon, &["sig-4b7d"]);
    assert_failed_fetch(&s, vec![status(500), status(502)], "answered HTTP 502", 2);
    assert_failed_fetch(
        &s,
        vec![Reply::Body("text/html", b"<html>Sign in</html>".to_vec())],
        "BambooHR's answer is not JSON",
        1,
    );
    assert_failed_fetch(
        &s,
        vec![json(r#"{"employees": {"id": "1"}}"#)],
        "is not of the documented shape",
        1,
    );
    // No employees at all is a failed fetch, not an empty roster filed as rejected.
    assert_failed_fetch(
        &s,
        vec![json(r#"{"fields": [], "employees": []}"#)],
        "BambooHR's answer lists no employees",
        1,
    );
    let mut nested = bamboo_answer(&roster());
    nested["employees"][1]["department"] = serde_json::json!({"name": "Engineering"});
    assert_failed_fetch(
        &s,
        vec![Reply::json(&nested)],
        "record 2 (employees[1]), field \"department\": the value is an object",
        1,
    );
    assert_failed_fetch(
        &s,
        vec![Reply::Body("application/json", vec![b' '; 5000])],
        "larger than roster.max_bytes = 4096",
        1,
    );
    // No Content-Length: abandoned while it streams in.
    assert_failed_fetch(
        &s,
        vec![Reply::Chunked(vec![b' '; 1000], 10)],
        "larger than roster.max_bytes = 4096",
        1,
    );
    assert_failed_fetch(
        &s,
        vec![
            Reply::Stall,
            Reply::StallAfter(b"{\"employees\": [".to_vec()),
        ],
        "no complete answer within source.hris.timeout = 2s",
        2,
    );
    // The failures were logged; the next fetch works.
    assert!(daemon.log().contains("credentials refused"));
    s.env.json_ok(0, &["fetch"]);
    daemon.stop();
}

#[test]
fn retries_honour_retry_after_and_back_off() {
    let s = Setup::new(bamboo_fake(), info(), |s| s.bamboo(""));
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env).tail_on_panic(60);
    wait_fetched(&s.env, 1);
    let retry_line = |daemon: &Daemon| {
        daemon
            .log()
            .lines()
            .rfind(|l| l.contains("retry 1 of 1 in"))
            .unwrap_or_default()
            .to_string()
    };
    type Case = (fn() -> Reply, &'static str);
    let cases: [Case; 3] = [
        // Retry-After in seconds: 2 s, not the first back-off of 1 s.
        (
            || Reply::Status(429, vec![("retry-after", "2".into())]),
            "in 2s",
        ),
        // Retry-After as an HTTP date about 4 s ahead (whole seconds: 3 to 4 s).
        (
            || {
                let at = std::time::SystemTime::now() + Duration::from_secs(4);
                Reply::Status(503, vec![("retry-after", httpdate::fmt_http_date(at))])
            },
            "HTTP 503",
        ),
        // Other 5xx: the back-off, 1 s first.
        (|| Reply::Status(500, Vec::new()), "in 1s"),
    ];
    for (reply, want) in cases {
        let hits = s.fake.count(BAMBOO);
        s.fake.push([reply()]);
        let report = s.env.json_ok(0, &["fetch"]);
        assert_eq!(report["status"], "applied", "{report:#}");
        assert_eq!(s.fake.count(BAMBOO) - hits, 2, "{want}");
        let line = retry_line(&daemon);
        assert!(line.contains(want), "{want}: {line}");
    }
    // The HTTP date's wait is neither the back-off nor zero.
    let date_line = daemon
        .log()
        .lines()
        .rfind(|l| l.contains("HTTP 503") && l.contains("retry 1 of 1 in"))
        .unwrap_or_default()
        .to_string();
    assert!(
        date_line.contains("in 3s") || date_line.contains("in 2s"),
        "{date_line}"
    );
    daemon.stop();
}

#[test]
fn the_schedule_fetches_every_interval_and_at_the_time_of_day() {
    let s = Setup::new(bamboo_fake(), info(), |s| {
        s.bamboo("").replace("every = \"24h\"", "every = \"2s\"")
    });
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env);
    let files = wait_fetched(&s.env, 2);
    assert!(s.fake.count(BAMBOO) >= 2);
    assert_eq!(files[0]["status"], "applied");
    assert_eq!(files[1]["status"], "applied");
    daemon.stop();

    // `at`: the first fetch waits for that time of day (UTC), here 12 hours away.
    let s = Setup::new(bamboo_fake(), info(), |s| s.bamboo(""));
    let at = fetch_in_12_hours(&s.env);
    let daemon = Daemon::start(&s.env);
    let status = s.env.json_ok(0, &["status"]);
    let next = status["daemon"]["hris"]["next_fetch"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        next.ends_with(&format!("T{at}:00Z")),
        "{next} for at = {at}"
    );
    stays(
        "no fetch before the time of day",
        Duration::from_secs(2),
        || s.fake.count(BAMBOO) == 0,
    );
    daemon.stop();
}

#[test]
fn fetch_answers_like_process_and_refuses_outside_hris_mode() {
    let settings = Settings {
        log_level: "info".into(),
        max_deactivations: Some((1, 1)),
        ..Settings::default()
    };
    let s = Setup::new(bamboo_fake(), settings, |s| s.bamboo(""));
    // No daemon: exit 4, it only runs through the daemon.
    let out = s.env.expect(4, &["fetch"]);
    assert!(out.contains("runs through the daemon"), "{out}");
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env);
    wait_fetched(&s.env, 1);
    // A roster with two rows for one employee: rejected, exit 1.
    let mut broken = roster();
    broken[1].id = "1";
    s.fake.set_roster(Reply::json(&bamboo_answer(&broken)));
    let report = s.env.json_ok(1, &["fetch"]);
    assert_eq!(report["status"], "rejected", "{report:#}");
    // Three of four admins leaving is over max_deactivations: held, exit 3.
    let mut leaving = roster();
    for e in leaving
        .iter_mut()
        .filter(|e| ["2", "5", "6"].contains(&e.id))
    {
        e.status = "Inactive";
    }
    s.fake.set_roster(Reply::json(&bamboo_answer(&leaving)));
    let report = s.env.json_ok(3, &["fetch"]);
    assert_eq!(report["status"], "held", "{report:#}");
    // The next fetch waits behind the held file: exit 3, the file stays in inbox/.
    let out = s.env.expect(3, &["fetch"]);
    assert!(out.contains("held and blocks"), "{out}");
    let waiting = inbox(&s.env);
    assert!(
        waiting.len() == 1 && waiting[0].starts_with("hris-bamboohr-"),
        "{waiting:?}"
    );
    // Said so: it waits, and is processed once the held file is decided.
    let told = format!("fetched as {} and waits in inbox/", waiting[0]);
    assert!(out.contains(&told), "{out}");
    // A failed fetch: exit 5.
    s.fake.push([Reply::Status(401, Vec::new())]);
    let out = s.env.expect(5, &["fetch"]);
    assert!(out.contains("credentials refused"), "{out}");
    daemon.stop();

    // A daemon in another mode: exit 2 (the CLI's own config says hris).
    let mut other = TestEnv::with(info());
    let watch = other.root().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    other.reconfigure(|st| {
        st.extra_toml = format!(
            "[source]\nmode = \"watch\"\nwatch_dir = {:?}\n",
            watch.display().to_string()
        )
    });
    let out = other.expect(2, &["fetch"]);
    assert!(out.contains("not in hris mode"), "{out}");
    let daemon = Daemon::start(&other);
    let config = std::fs::read_to_string(&s.env.config).unwrap();
    let hris_section = &config[config.find("[source.hris]").unwrap()..];
    let cli_config = other.root().join("cli.toml");
    std::fs::write(
        &cli_config,
        std::fs::read_to_string(&other.config).unwrap() + "\n" + hris_section,
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["--config", cli_config.to_str().unwrap(), "fetch"])
        .env("AUTOPROV__SOURCE__MODE", "hris")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not in hris mode"), "{err}");
    daemon.stop();
}

/// `fetch` is a change: a caller who is not an org admin is refused before anything is
/// fetched.
#[test]
#[cfg_attr(missing_root, ignore = "needs root (to run the CLI as user nobody)")]
fn fetch_needs_an_org_admin() {
    use std::os::unix::fs::PermissionsExt;
    common::require(common::Need::Root);
    let settings = Settings {
        org_admins: Some(vec!["root".into()]),
        ..info()
    };
    let s = Setup::new(bamboo_fake(), settings, |s| s.bamboo(""));
    let daemon = Daemon::start(&s.env);
    wait_fetched(&s.env, 1);
    // `nobody` must reach the config and the socket.
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(s.env.root(), 0o755);
    mode(&s.env.config, 0o644);
    mode(&s.env.socket, 0o666);
    let (code, out, err) = s.env.run_as("nobody", "nogroup", &["fetch"]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        format!("{out}{err}").contains("control.org_admins"),
        "{out}{err}"
    );
    assert_eq!(s.fake.count(BAMBOO), 1, "nothing was fetched for nobody");
    s.env.json_ok(0, &["fetch"]);
    daemon.stop();
}

#[test]
fn a_fetch_killed_midway_leaves_nothing_and_the_next_one_works() {
    let bytes = roster_csv(&roster());
    let half = bytes[..bytes.len() / 2].to_vec();
    let auth = format!("Basic {}", base64(b"exporter:export-pass-12"));
    let fake = Fake::new(&auth, Reply::Body("text/csv", bytes.clone()));
    let s = Setup::new(fake, info(), |s| {
        let pw = s.secret("export.password", "export-pass-12");
        s.hris(
            "csv_url",
            &format!(
                "[source.hris.csv_url]\nurl = \"{}\"\nusername = \"exporter\"\npassword_file = {pw}\n",
                s.server.url(CSV_PATH)
            ),
        )
        .replace("timeout = \"5s\"", "timeout = \"5m\"")
    });
    add_rules(&s.env);
    let hidden = |len: usize| {
        inbox(&s.env).into_iter().find(|n| {
            n.starts_with(".hris-csv_url-")
                && std::fs::metadata(s.env.drop_dir("inbox").join(n))
                    .is_ok_and(|m| m.len() == len as u64)
        })
    };
    // A crash after the whole answer was written and fsynced, before the rename.
    let mut daemon = Daemon::spawn(&s.env, &[("AUTOPROV_CRASH_AT", "hris_before_rename")]);
    daemon.wait_exit(WAIT, "at the crash point");
    let complete = hidden(bytes.len()).expect("the fetched file under its hidden name");
    assert_eq!(inbox(&s.env), [complete], "only the hidden file");
    // A crash while the answer streams in: the server sends half, then stalls.
    s.fake.push([Reply::StallAfter(half.clone())]);
    let mut daemon = Daemon::start(&s.env);
    let partial = wait_until(
        lazy(|| format!("half an answer in inbox/: {:?}", inbox(&s.env))),
        WAIT,
        || hidden(half.len()),
    );
    nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    daemon.wait_exit(WAIT, "after SIGKILL");
    assert_eq!(
        inbox(&s.env),
        std::slice::from_ref(&partial),
        "the crash left the partial file, the one before was removed at start-up"
    );
    assert!(common::files(&s.env).is_empty(), "nothing was processed");
    // Restarted: the partial file is removed, never processed; the next fetch works.
    let daemon = Daemon::start(&s.env);
    let files = wait_fetched(&s.env, 1);
    assert_eq!(files.len(), 1, "{files:#?}");
    assert_eq!(files[0]["status"], "applied");
    let stored = std::fs::read(
        s.env
            .drop_dir("processed")
            .join(files[0]["stored_as"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(stored, bytes);
    assert!(inbox(&s.env).is_empty(), "{:?}", inbox(&s.env));
    assert!(s.env.files_in("rejected").is_empty());
    assert!(
        daemon.log().contains("removed the partial file"),
        "{}",
        daemon.log()
    );
    assert_eq!(s.fake.count(CSV), 3);
    assert_expected_accounts(&s.env);
    daemon.stop();
}

#[test]
fn config_errors_name_the_key_and_never_a_secret() {
    let s = Setup::new(bamboo_fake(), info(), |s| s.bamboo(""));
    // A secret file that cannot be read stops the start: exit 2, naming key and path.
    let missing = s.env.root().join("missing.key");
    let text = std::fs::read_to_string(&s.env.config).unwrap();
    let key_line = text
        .lines()
        .find(|l| l.starts_with("api_key_file"))
        .unwrap()
        .to_string();
    std::fs::write(
        &s.env.config,
        text.replace(
            &key_line,
            &format!("api_key_file = {:?}", missing.display().to_string()),
        ),
    )
    .unwrap();
    let (code, _, err) = s.env.run(&["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("source.hris.bamboohr.api_key_file")
            && err.contains(&missing.display().to_string()),
        "{err}"
    );
    // http:// is refused for every command, naming the key.
    let http = text.replace(&s.server.url(""), &format!("http://{}", s.server.addr));
    std::fs::write(&s.env.config, http).unwrap();
    let out = s.env.expect(2, &["status"]);
    assert!(
        out.contains("source.hris.bamboohr.base_url") && out.contains("https://"),
        "{out}"
    );
    // A secret given inline is an unknown key: the value is never echoed.
    let inline = text.replace(&key_line, &format!("api_key = \"{API_KEY}\""));
    std::fs::write(&s.env.config, inline).unwrap();
    let out = s.env.expect(2, &["status"]);
    assert!(out.contains("api_key"), "{out}");
    assert!(!out.contains(API_KEY), "{out}");
}

#[test]
fn base64_matches_rfc_4648() {
    for (input, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), want);
    }
}

/// Sets `at` to the time of day 12 hours from now (UTC), so that no fetch happens at
/// start-up; returns it.
fn fetch_in_12_hours(env: &TestEnv) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let later = (now + 12 * 3600) % 86_400;
    let at = format!("{:02}:{:02}", later / 3600, later % 3600 / 60);
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("at = \"\"", &format!("at = \"{at}\""));
    std::fs::write(&env.config, text).unwrap();
    at
}

/// Exactly once across a crash while a fetched file is processed (SPEC §10: "from there it
/// is an upload like any other"): the daemon dies right after the commit, before the file
/// and its reports are filed; the restart finishes the filing and applies nothing twice.
#[test]
fn a_crash_while_a_fetched_file_is_processed_applies_it_exactly_once() {
    let s = Setup::new(bamboo_fake(), info(), |s| s.bamboo(""));
    add_rules(&s.env);
    let mut daemon = Daemon::spawn(&s.env, &[("AUTOPROV_CRASH_AT", "after_commit")]);
    daemon.wait_exit(WAIT, "at the crash point after the commit");
    let fetched_name = inbox(&s.env);
    assert_eq!(fetched_name.len(), 1, "the fetched file waits in inbox/");
    assert!(
        fetched_name[0].starts_with("hris-bamboohr-"),
        "{fetched_name:?}"
    );
    fetch_in_12_hours(&s.env);
    let daemon = Daemon::start(&s.env);
    let files = wait_fetched(&s.env, 1);
    assert_eq!(files.len(), 1, "{files:#?}");
    assert_eq!(files[0]["status"], "applied");
    assert_eq!(files[0]["name"], fetched_name[0].as_str());
    assert!(inbox(&s.env).is_empty(), "{:?}", inbox(&s.env));
    let stored = files[0]["stored_as"].as_str().unwrap();
    let processed = s.env.files_in("processed");
    assert!(processed.iter().any(|n| n == stored), "{processed:?}");
    assert!(
        processed
            .iter()
            .any(|n| n == &format!("{stored}.report.json")),
        "{processed:?}"
    );
    assert_eq!(
        s.fake.count(BAMBOO),
        1,
        "fetched once, not again after the restart"
    );
    assert_expected_accounts(&s.env);
    daemon.stop();
}

/// A GET of the web section (a loopback peer: `/metrics` needs no token).
fn http_get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("GET");
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// SPEC §10 `[notify]` in hris mode: a failed fetch posts `fetch_failed` (no file, a
/// one-line text naming the cause, never the API key); a successful one posts nothing.
/// SPEC §11: `/healthz` answers 503 while the last fetch failed, `/metrics` counts it.
#[test]
fn a_failed_fetch_posts_fetch_failed_to_the_webhook() {
    use common::webhook::{Answer, Receiver};
    let receiver = Receiver::start(Answer::Ok);
    let url = receiver.url();
    let s = Setup::new(bamboo_fake(), info(), |s| {
        format!(
            "{}\n[notify]\nwebhook_url = {url:?}\n\n[web]\nlisten = \"127.0.0.1:0\"\n",
            s.bamboo("")
        )
    });
    add_rules(&s.env);
    let daemon = Daemon::start(&s.env).tail_on_panic(60);
    wait_fetched(&s.env, 1);
    s.fake.push(vec![Reply::Status(401, Vec::new())]);
    let (code, _, err) = s.env.run(&["fetch"]);
    assert_eq!(code, 5, "{err}");
    let events = receiver.wait_delivered(1);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["event"], "fetch_failed", "{event:#}");
    assert_eq!(event["file"], Value::Null, "{event:#}");
    let text = event["text"].as_str().unwrap_or_default();
    assert!(text.contains("credentials refused"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(!event.to_string().contains(API_KEY), "{event:#}");
    let status = s.env.json_ok(0, &["status"]);
    let web = format!(
        "http://{}",
        status["daemon"]["web"]
            .as_str()
            .unwrap_or_else(|| panic!("daemon.web in {status:#}"))
    );
    let (code, body) = http_get(&format!("{web}/healthz"));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("credentials refused"), "{body}");
    let (_, metrics) = http_get(&format!("{web}/metrics"));
    assert!(
        metrics
            .lines()
            .any(|l| l == "autoprov_fetch_failures_total 1"),
        "{metrics}"
    );
    // A restart (an upgrade, a reboot) still says so until a fetch succeeds: the outcome
    // is kept in data_dir (the restart had answered 200 up to a day before the next fetch).
    drop(daemon);
    fetch_in_12_hours(&s.env);
    let daemon = Daemon::start(&s.env).tail_on_panic(60);
    let status = s.env.json_ok(0, &["status"]);
    assert_eq!(status["daemon"]["hris"]["failing"], true, "{status:#}");
    assert!(
        status["daemon"]["hris"]["last_success"].is_string(),
        "{status:#}"
    );
    let web = format!("http://{}", status["daemon"]["web"].as_str().unwrap());
    let (code, body) = http_get(&format!("{web}/healthz"));
    assert_eq!(code, 503, "after a restart: {body}");
    // A good fetch afterwards posts nothing more, and the section is healthy again.
    let (code, _, err) = s.env.run(&["fetch"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(http_get(&format!("{web}/healthz")).0, 200);
    stays("no second notification", Duration::from_secs(2), || {
        receiver.attempts().len() == 1
    });
    drop(daemon);
}
