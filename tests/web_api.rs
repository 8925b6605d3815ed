//! The web section's server half (SPEC §11) through the real daemon over HTTP: who is asking
//! (the SSO proxy's header from trusted proxies only, API tokens), who may look and change,
//! the API's JSON against the CLI's `--json`, the forms' CSRF and Origin checks, the audit
//! log, the security headers, `/healthz` and `/metrics`.
//!
//! Each test starts its own daemon with `web.listen = 127.0.0.1:0` and reads the bound
//! address from `status --json` (`daemon.web`). Every response is checked for the security
//! headers as it arrives.

mod common;

use autoprov::api::seen::account_version;
use common::daemon::Daemon;
use common::{Settings, TestEnv, testdata, urlencode as encode};
use serde_json::Value;
use std::collections::BTreeMap;

/// The org admin of every environment (in `web.org_admins`, no account).
const LEAD: &str = "lead@acme.example";

/// An answer, its security headers already checked.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Request headers of a test case.
type Headers<'a> = Vec<(&'a str, &'a str)>;
/// A form of a test case.
type Form = Vec<(&'static str, String)>;

/// An HTTP client of the daemon's web section.
struct Web {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Web {
    /// The section of the daemon running on `env`.
    fn of(env: &TestEnv) -> Web {
        let st = env.json_ok(0, &["status"]);
        let addr = st["daemon"]["web"]
            .as_str()
            .unwrap_or_else(|| panic!("daemon.web: {st:#}"))
            .to_string();
        assert!(!addr.ends_with(":0"), "the bound port is shown: {addr}");
        Web {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: format!("http://{addr}"),
        }
    }

    fn send(&self, request: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Answer {
        let mut request = request;
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let answer = self.rt.block_on(async {
            let r = request.send().await.expect("HTTP request");
            let (status, headers) = (r.status().as_u16(), r.headers().clone());
            Answer {
                status,
                headers,
                body: r.text().await.expect("body"),
            }
        });
        for (name, want) in [
            ("content-security-policy", "default-src 'self'"),
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(
                answer.header(name),
                want,
                "{name} on a {} answer: {:?}",
                answer.status,
                answer.headers
            );
        }
        answer
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.base)), headers)
    }

    /// GET as a person the proxy names.
    fn get_as(&self, email: &str, path: &str) -> Answer {
        self.get(path, &[("X-Forwarded-Email", email)])
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        self.send(request, headers)
    }
}

/// Sends `bytes` on a new connection to `base` (`http://host:port`), leaves it open, and
/// reads the answer's head (the first read; a daemon that waits for more of the request
/// fails the read's 10 s guard).
fn raw_exchange(base: &str, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream
        .read(&mut answer)
        .expect("an answer before the body is sent");
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// An environment whose daemon serves the section on 127.0.0.1:0, with [`LEAD`] in
/// `web.org_admins`; `web_extra` adds `[web]` keys.
fn web_env(web_extra: &str) -> TestEnv {
    web_env_keys(&format!("org_admins = [{LEAD:?}]\n{web_extra}"))
}

/// An environment whose daemon serves the section on 127.0.0.1:0 with these `[web]` keys.
fn web_env_keys(web_keys: &str) -> TestEnv {
    let public = std::fs::read_to_string(testdata("keys/hris_ed25519.pub")).unwrap();
    TestEnv::with(Settings {
        max_grants: Some((10_000_000, 100)),
        log_level: "info".into(),
        extra_toml: format!(
            "[source]\nmode = \"host\"\nlisten = \"127.0.0.1:0\"\n\n[[source.users]]\nname = \"hris\"\nauthorized_keys = [{:?}]\n\n\
             [web]\nlisten = \"127.0.0.1:0\"\n{web_keys}\n",
            public.trim()
        ),
        ..Settings::default()
    })
}

/// The CSRF token the pages give `email` (made from the daemon's secret in data_dir).
fn csrf(env: &TestEnv, email: &str) -> String {
    let path = autoprov::layout::Paths::new(&env.data_dir).web_secret;
    autoprov::web::csrf::CsrfKey::load_or_create(&path)
        .unwrap()
        .token(email)
}

/// Adds a manual account through the CLI.
fn manual(env: &TestEnv, id: &str, email: &str, role: &str) {
    env.json_ok(
        0,
        &[
            "admins",
            "add",
            "--employee-id",
            id,
            "--email",
            email,
            "--role",
            role,
        ],
    );
}

/// `status --json` without the values that change by the second.
fn steady(mut status: Value) -> Value {
    status["daemon"]["quiet_for_seconds"] = Value::Null;
    status
}

#[test]
fn the_api_answers_what_the_cli_answers() {
    let env = web_env("");
    let d = Daemon::start(&env);
    let web = Web::of(&env);
    env.load_sample_rules();
    let (code, report) = env.process(&env.input_from("sequence/day1.csv", "day1.csv"), &[]);
    assert_eq!(code, 0, "{report:#}");
    let some_id = env.accounts(&[]).keys().next().cloned().expect("accounts");
    let pairs: Vec<(String, Vec<&str>)> = vec![
        ("/api/v1/admins".into(), vec!["admins", "list"]),
        (
            "/api/v1/admins?status=active&origin=auto&rule=2".into(),
            vec![
                "admins", "list", "--status", "active", "--origin", "auto", "--rule", "2",
            ],
        ),
        (
            "/api/v1/admins?status=&origin=&rule=".into(),
            vec!["admins", "list"],
        ),
        (
            format!("/api/v1/admins/{some_id}"),
            vec!["admins", "show", &some_id],
        ),
        ("/api/v1/rules".into(), vec!["rules", "list"]),
        ("/api/v1/files".into(), vec!["files", "list"]),
        ("/api/v1/files/1/report".into(), vec!["files", "show", "1"]),
    ];
    for (path, args) in &pairs {
        let answer = web.get_as(LEAD, path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(
            answer
                .header("content-type")
                .starts_with("application/json")
        );
        assert_eq!(
            answer.json(),
            env.json_ok(0, args),
            "{path} against {args:?}"
        );
    }
    let status = web.get_as(LEAD, "/api/v1/status");
    assert_eq!(status.status, 200);
    assert_eq!(steady(status.json()), steady(env.json_ok(0, &["status"])));
    // auth/check: the CLI's answer in the shape of SPEC §11.
    let account = &env.accounts(&["--status", "active"])[&some_id];
    let email = account["email"].as_str().unwrap();
    let allowed = web.get_as(LEAD, &format!("/api/v1/auth/check?email={}", encode(email)));
    assert_eq!(allowed.status, 200);
    let cli = env.json_ok(0, &["auth", "check", email]);
    assert_eq!(
        allowed.json(),
        serde_json::json!({"allowed": true, "employee_id": cli["employee_id"], "role": cli["role"], "origin": cli["origin"]})
    );
    let upper = web.get_as(
        LEAD,
        &format!("/api/v1/auth/check?email={}", encode(&email.to_uppercase())),
    );
    assert_eq!(upper.json()["allowed"], true, "emails in any letter case");
    // A space beyond ASCII around it, or the Kelvin sign for a k: not this address.
    for asked in [
        format!("\u{3000}{email}"),
        format!("{email}\u{a0}"),
        email.replace('k', "\u{212a}"),
    ] {
        if asked == email {
            continue;
        }
        let denied = web.get_as(
            LEAD,
            &format!("/api/v1/auth/check?email={}", encode(&asked)),
        );
        assert_eq!(denied.json()["allowed"], false, "{asked:?}");
    }
    let denied = web.get_as(LEAD, "/api/v1/auth/check?email=nobody%40acme.example");
    assert_eq!(
        (denied.status, denied.json()),
        (200, serde_json::json!({"allowed": false}))
    );
    // Always 200: no address, a blank one, and one with spaces around it are denied. A `+`
    // sent unencoded is a space once decoded: `+kim@…` (a mailbox of its own) had been
    // trimmed to kim@… and given kim's role.
    for query in [
        String::new(),
        "?email=".into(),
        "?email=%20%20".into(),
        format!("?email=+{}", encode(email)),
        format!("?email={}+", encode(email)),
        format!("?email=%20{}", encode(email)),
    ] {
        let denied = web.get_as(LEAD, &format!("/api/v1/auth/check{query}"));
        assert_eq!(
            (denied.status, denied.json()),
            (200, serde_json::json!({"allowed": false})),
            "{query}"
        );
    }
    // Negative answers and bad requests, as JSON errors.
    let missing = web.get_as(LEAD, "/api/v1/admins/NOPE");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), env.json_ok(1, &["admins", "show", "NOPE"]));
    assert_eq!(web.get_as(LEAD, "/api/v1/files/99/report").status, 404);
    // The downloads are the filed reports (the text one had begun with a line naming the
    // report's path on the server).
    let files = env.json_ok(0, &["files", "list"]);
    let filed_json = std::path::PathBuf::from(files[0]["report"].as_str().unwrap());
    let filed_txt = filed_json.with_extension("txt");
    let txt = web.get_as(LEAD, "/files/1/report.txt");
    assert_eq!(txt.status, 200, "{}", txt.body);
    assert_eq!(txt.body, std::fs::read_to_string(&filed_txt).unwrap());
    let json = web.get_as(LEAD, "/files/1/report.json");
    let filed: Value = serde_json::from_slice(&std::fs::read(&filed_json).unwrap()).unwrap();
    assert_eq!(json.json(), filed);
    assert_eq!(web.get_as(LEAD, "/api/v1/admins?rule=x").status, 400);
    assert_eq!(web.get_as(LEAD, "/api/v1/admins?status=gone").status, 400);
    assert_eq!(web.get_as(LEAD, "/no/such/page").status, 404);
    d.stop();
}

#[test]
fn who_may_look_who_may_change_and_who_is_nobody() {
    let env = web_env("");
    let d = Daemon::start(&env);
    let web = Web::of(&env);
    manual(&env, "M1", "it@acme.example", "IT Admin");
    manual(&env, "M2", "boss@acme.example", "Super Admin");
    manual(&env, "M3", "gone@acme.example", "Super Admin");
    env.json_ok(0, &["admins", "set", "M3", "--status", "inactive"]);
    // Nobody: no header (401, for pages and the API alike).
    let none = web.get("/api/v1/rules", &[]);
    assert_eq!(none.status, 401, "{}", none.body);
    // Before any query or id is read: they had been answered 400 or 404.
    // A path whose id is not UTF-8 once decoded had been answered 400 before sign-in.
    let undecodable = ["/admins/%FF%FE", "/files/%FF", "/files/%FF/report.json"];
    for path in ["/?status=a&status=b", "/rules?saved=x", "/files/abc"]
        .into_iter()
        .chain(undecodable)
    {
        let page = web.get(path, &[]);
        assert_eq!(page.status, 401, "{path}: {}", page.body);
    }
    // Signed in, such an id names nothing; a viewer's post is refused as any of theirs.
    for path in undecodable {
        let page = web.get_as("boss@acme.example", path);
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    let form = [("csrf", csrf(&env, "it@acme.example"))];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let viewer = [("X-Forwarded-Email", "it@acme.example")];
    assert_eq!(web.post("/admins/%FF/remove", &viewer, &form).status, 403);
    assert!(
        none.json()["error"]
            .as_str()
            .unwrap()
            .contains("X-Forwarded-Email")
    );
    // No account and not an org admin, or only an inactive account: 403.
    for email in ["stranger@acme.example", "gone@acme.example"] {
        let a = web.get_as(email, "/api/v1/admins");
        assert_eq!(a.status, 403, "{email}: {}", a.body);
    }
    // An active account looks; an org admin without an account too.
    for email in [
        "it@acme.example",
        "IT@ACME.example",
        LEAD,
        "boss@acme.example",
    ] {
        assert_eq!(web.get_as(email, "/api/v1/rules").status, 200, "{email}");
    }
    // Changes: the IT Admin may look but not change; the Super Admin and the lead may.
    let rule = |name: &str| {
        vec![
            ("name", name.to_string()),
            ("role", "IT Admin".to_string()),
            ("when", "department = IT\nlocation = Berlin".to_string()),
        ]
    };
    let post = |email: &str, name: &str| {
        let mut form = rule(name);
        form.push(("csrf", csrf(&env, email)));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        web.post("/rules", &[("X-Forwarded-Email", email)], &form)
    };
    let before = env.json_ok(0, &["rules", "list"]);
    let refused = post("it@acme.example", "by it");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("web.org_admin_roles"),
        "{}",
        refused.body
    );
    assert_eq!(
        env.json_ok(0, &["rules", "list"]),
        before,
        "nothing changed"
    );
    // Refused before its body is read: a form that never ends holds no connection.
    let head = format!(
        "POST /rules HTTP/1.1\r\nHost: {}\r\nX-Forwarded-Email: it@acme.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf=",
        web.base.trim_start_matches("http://")
    );
    let answer = raw_exchange(&web.base, head.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // Each refused form is a line of the journal naming the person.
    let log = d.log();
    let refusals = (log.lines())
        .filter(|l| l.contains("change asked: web form \"/rules\""))
        .filter(|l| l.contains("user=\"it@acme.example\" exit=3"))
        .count();
    assert_eq!(refusals, 2, "{log}");
    let done = post("boss@acme.example", "by boss");
    assert_eq!(
        (done.status, done.header("location")),
        (303, "/rules"),
        "{}",
        done.body
    );
    let done = post(LEAD, "by lead");
    assert_eq!(done.status, 303, "{}", done.body);
    let rules = env.json_ok(0, &["rules", "list"]);
    let names: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["by boss", "by lead"]);
    assert_eq!(
        rules[0]["conditions"],
        serde_json::json!(["department = IT", "location = Berlin"])
    );
    assert_eq!(rules[0]["created_by"], "boss@acme.example");
    // Audited with the person's email.
    let audit = env.json_ok(0, &["audit"]);
    let by: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["user"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .filter(|(_, action)| *action == "rules add")
        .collect();
    assert_eq!(
        by,
        vec![("boss@acme.example", "rules add"), (LEAD, "rules add")]
    );
    d.stop();
}

#[test]
fn the_header_counts_only_from_trusted_proxies() {
    let env = web_env("trusted_proxies = [\"10.0.0.0/8\"]");
    let d = Daemon::start(&env);
    let web = Web::of(&env);
    let a = web.get_as(LEAD, "/api/v1/rules");
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body.contains("web.trusted_proxies"), "{}", a.body);
    let before = env.json_ok(0, &["rules", "list"]);
    let form = [
        ("name", "x"),
        ("role", "IT Admin"),
        ("when", "department = IT"),
        ("csrf", &csrf(&env, LEAD)),
    ];
    let a = web.post("/rules", &[("X-Forwarded-Email", LEAD)], &form);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(env.json_ok(0, &["rules", "list"]), before);
    // A stream of forged headers is a line of the log, not one a request.
    for _ in 0..40 {
        assert_eq!(web.get_as(LEAD, "/api/v1/rules").status, 401);
    }
    let log = d.log();
    let forged = "header from outside web.trusted_proxies refused";
    // One line, or a few when the test ran slower than the 10 s between two lines.
    let lines = log.lines().filter(|l| l.contains(forged)).count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} lines for 41 refusals:\n{log}"
    );
    d.stop();
}

/// A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding) is
/// same-origin with itself: a browser on the proxy's host lets its script send the SSO
/// header, read a form's token and post it, `Origin` matching `Host`. The header is
/// believed only on a request addressed to an address, `localhost` or a name of
/// `web.allowed_hosts`: such a page had added a Super Admin as the org admin it named.
#[test]
fn a_rebound_page_cannot_act_as_anyone() {
    let env = web_env("allowed_hosts = [\"autoprov.acme.example\"]");
    let d = Daemon::start(&env);
    let web = Web::of(&env);
    let port = web.base.rsplit(':').next().unwrap().to_string();
    let evil = format!("evil.example:{port}");
    let origin = format!("http://{evil}");
    let rebound = [
        ("Host", evil.as_str()),
        ("X-Forwarded-Email", LEAD),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let a = web.get("/rules", &rebound);
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body.contains("not in web.allowed_hosts"), "{}", a.body);
    assert_eq!(web.get("/api/v1/admins", &rebound).status, 401);
    let form = [
        ("employee_id", "ATTACKER"),
        ("email", "attacker@evil.example"),
        ("role", "Super Admin"),
        ("csrf", &csrf(&env, LEAD)),
    ];
    let posted = [
        rebound[0],
        rebound[1],
        rebound[2],
        ("Origin", origin.as_str()),
    ];
    let a = web.post("/admins", &posted, &form);
    assert_eq!(a.status, 401, "{}", a.body);
    let (code, out, _) = env.run(&["auth", "check", "attacker@evil.example"]);
    assert_eq!(code, 1, "{out}");
    // The name the proxy passes on, an address, or localhost: believed.
    for host in [
        "autoprov.acme.example".to_string(),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
    ] {
        let a = web.get(
            "/api/v1/rules",
            &[("Host", host.as_str()), ("X-Forwarded-Email", LEAD)],
        );
        assert_eq!(a.status, 200, "{host}: {}", a.body);
    }
    assert!(
        d.log()
            .contains("not an address, localhost or one of web.allowed_hosts"),
        "{}",
        d.log()
    );
    d.stop();
}

#[test]
fn forms_need_the_persons_token_and_this_site() {
    let env = web_env("");
    let d = Daemon::start(&env);
    let web = Web::of(&env);
    env.load_sample_rules();
    let before = env.json_ok(0, &["rules", "list"]);
    let token = csrf(&env, LEAD);
    let others = csrf(&env, "boss@acme.example");
    let me = ("X-Forwarded-Email", LEAD);
    let rule = |csrf: &str| -> Vec<(&'static str, String)> {
        vec![
            ("name", "new".into()),
            ("role", "IT Admin".into()),
            ("when", "department = Legal".into()),
            ("csrf", csrf.into()),
        ]
    };
    let without_token: Vec<(&str, String)> = rule("")[..3].to_vec();
    let refusals: Vec<(&str, Headers, Form)> = vec![
        ("no token", vec![me], without_token),
        ("empty token", vec![me], rule("")),
        ("another person's token", vec![me], rule(&others)),
        (
            "a foreign Origin",
            vec![me, ("Origin", "https://evil.example")],
            rule(&token),
        ),
        ("Origin null", vec![me, ("Origin", "null")], rule(&token)),
        (
            "Sec-Fetch-Site cross-site",
            vec![me, ("Sec-Fetch-Site", "cross-site")],
            rule(&token),
        ),
        (
            "Sec-Fetch-Site same-site",
            vec![me, ("Sec-Fetch-Site", "same-site")],
            rule(&token),
        ),
        (
            "a bearer token",
            vec![("Authorization", "Bearer x")],
            rule(&token),
        ),
    ];
    for (what, headers, form) in &refusals {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = web.post("/rules", headers, &form);
        assert_eq!(a.status, 403, "{what}: {}", a.body);
        assert!(
            a.header("content-type").starts_with("application/json"),
            "{what}"
        );
        // A browser's form is told on a page, not in JSON.
        let mut browser = headers.clone();
        browser.push(("Accept", "text/html"));
        let a = web.post("/rules", &browser, &form);
        assert_eq!(a.status, 403, "{what}: {}", a.body);
        assert!(
            a.header("content-type").starts_with("text/html"),
            "{what}: {}",
            a.body
        );
        let csrf_only: Vec<(&str, &str)> =
            form.iter().filter(|(k, _)| *k == "csrf").copied().collect();
        for path in [
            "/rules/1/disable",
            "/rules/1/delete",
            "/admins",
            "/files/1/reject",
        ] {
            assert_eq!(
                web.post(path, headers, &csrf_only).status,
                403,
                "{what} {path}"
            );
        }
        assert_eq!(
            env.json_ok(0, &["rules", "list"]),
            before,
            "{what}: nothing changed"
        );
    }
    // The same form from this site, with the lead's token, goes through.
    let origin = web.base.clone();
    let same_site = [
        me,
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let a = web.post("/rules/1/disable", &same_site, &[("csrf", &token)]);
    assert_eq!(
        (a.status, a.header("location")),
        (303, "/rules"),
        "{}",
        a.body
    );
    assert_eq!(env.json_ok(0, &["rules", "show", "1"])["enabled"], false);
    // A conflicting rule is refused with its conflicts until confirmed.
    let conflicting = [
        ("name", "IT managers too"),
        ("role", "IT Admin"),
        ("when", "department = IT\r\nis_manager = true"),
        ("csrf", token.as_str()),
    ];
    let a = web.post("/rules", &[me], &conflicting);
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(
        !a.json()["conflicts"].as_array().unwrap().is_empty(),
        "{}",
        a.body
    );
    assert_eq!(
        env.json_ok(0, &["rules", "list"]).as_array().unwrap().len(),
        before.as_array().unwrap().len()
    );
    let confirm = a.json()["confirm"]
        .as_str()
        .expect("the confirmation")
        .to_string();
    // Confirmed, but changed since the conflicts were shown: refused again, not saved.
    let mut changed = conflicting.to_vec();
    changed[1] = ("role", "Super Admin");
    changed.push(("confirm", &confirm));
    let again = web.post("/rules", &[me], &changed);
    assert_eq!(again.status, 409, "{}", again.body);
    assert_ne!(again.json()["confirm"].as_str(), Some(confirm.as_str()));
    let mut confirmed = conflicting.to_vec();
    confirmed.push(("confirm", &confirm));
    assert_eq!(web.post("/rules", &[me], &confirmed).status, 303);
    let added = env.json_ok(0, &["rules", "list"]);
    let last = added.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["name"].as_str(), last["created_by"].as_str()),
        (Some("IT managers too"), Some(LEAD))
    );
    // Edit, enable, delete; refusals of the engine keep their status.
    let id = last["id"].to_string();
    let rename = [
        ("name", "Renamed"),
        ("role", ""),
        ("when", ""),
        ("csrf", &token),
    ];
    // Its conflicts again (a bare confirm=1 confirms nothing), then confirmed.
    let mut bare = rename.to_vec();
    bare.push(("confirm", "1"));
    let a = web.post(&format!("/rules/{id}"), &[me], &bare);
    assert_eq!(a.status, 409, "{}", a.body);
    let confirm = a.json()["confirm"].as_str().unwrap().to_string();
    let mut confirmed = rename.to_vec();
    confirmed.push(("confirm", &confirm));
    let a = web.post(&format!("/rules/{id}"), &[me], &confirmed);
    assert_eq!(a.status, 303, "{}", a.body);
    let shown = env.json_ok(0, &["rules", "show", &id]);
    assert_eq!(
        (shown["name"].as_str(), shown["role"].as_str()),
        (Some("Renamed"), Some("IT Admin"))
    );
    // Enabled again, its conflicts come back first (SPEC §11: in effect only when
    // confirmed), and it stays disabled until they are.
    let post =
        |verb: &str, form: &[(&str, &str)]| web.post(&format!("/rules/{id}/{verb}"), &[me], form);
    assert_eq!(post("disable", &[("csrf", &token)]).status, 303);
    let a = post("enable", &[("csrf", &token)]);
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(
        !a.json()["conflicts"].as_array().unwrap().is_empty(),
        "{}",
        a.body
    );
    assert_eq!(env.json_ok(0, &["rules", "show", &id])["enabled"], false);
    let confirm = a.json()["confirm"].as_str().unwrap().to_string();
    let a = post("enable", &[("csrf", &token), ("confirm", &confirm)]);
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(env.json_ok(0, &["rules", "show", &id])["enabled"], true);
    assert_eq!(
        web.post(&format!("/rules/{id}/delete"), &[me], &[("csrf", &token)])
            .status,
        303
    );
    assert_eq!(env.json(&["rules", "show", &id]).0, 1, "deleted");
    assert_eq!(
        web.post("/rules/999/enable", &[me], &[("csrf", &token)])
            .status,
        404
    );
    let bad_role = [
        ("name", "n"),
        ("role", "Janitor"),
        ("when", "department = IT"),
        ("csrf", token.as_str()),
    ];
    assert_eq!(web.post("/rules", &[me], &bad_role).status, 409);
    // Saved with a warning: the redirect names the rule, whose page shows it.
    let never = [
        ("name", "Never"),
        ("role", "IT Admin"),
        ("when", "department = IT\r\ndepartment = HR"),
        ("csrf", token.as_str()),
    ];
    let a = web.post("/rules", &[me], &never);
    let id = env
        .json_ok(0, &["rules", "list"])
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .clone();
    assert_eq!(
        (a.status, a.header("location")),
        (303, format!("/rules?saved={id}#saved").as_str()),
        "{}",
        a.body
    );
    assert_eq!(
        web.post(&format!("/rules/{id}/delete"), &[me], &[("csrf", &token)])
            .status,
        303
    );
    // Manual admins and held files through their forms.
    let a = web.post(
        "/admins",
        &[me],
        &[
            ("employee_id", "M9"),
            ("email", "m9@acme.example"),
            ("role", "HR Admin"),
            ("csrf", &token),
        ],
    );
    assert_eq!(
        (a.status, a.header("location")),
        (303, "/admins/M9"),
        "{}",
        a.body
    );
    // A form drawn when the account was otherwise (here: inactive) changes nothing: 409.
    let version = |status| account_version("m9@acme.example", "HR Admin", status);
    let stale = version("inactive");
    let a = web.post(
        "/admins/M9",
        &[me],
        &[("role", "IT Admin"), ("seen", &stale), ("csrf", &token)],
    );
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(
        a.body.contains("was changed since the page was drawn"),
        "{}",
        a.body
    );
    assert_eq!(
        env.json_ok(0, &["admins", "show", "M9"])["role"],
        "HR Admin"
    );
    let seen = version("active");
    let a = web.post(
        "/admins/M9",
        &[me],
        &[
            ("role", "IT Admin"),
            ("status", ""),
            ("seen", &seen),
            ("csrf", &token),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(
        env.json_ok(0, &["admins", "show", "M9"])["role"],
        "IT Admin"
    );
    assert_eq!(
        web.post("/admins/M9/remove", &[me], &[("csrf", &token)])
            .status,
        303
    );
    assert_eq!(env.json(&["admins", "show", "M9"]).0, 1, "removed");
    // No such file: the CLI's `files approve 1` says so with exit 1, the form with 404.
    env.expect(1, &["files", "approve", "1"]);
    assert_eq!(
        web.post("/files/1/approve", &[me], &[("csrf", &token)])
            .status,
        404
    );
    let audit = env.json_ok(0, &["audit"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == LEAD)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "rules disable",
            "rules add",
            "rules edit",
            "rules disable",
            "rules enable",
            "rules delete",
            "rules add",
            "rules delete",
            "admins add",
            "admins set",
            "admins remove"
        ]
    );
    d.stop();
}

#[test]
fn held_files_are_decided_through_the_forms() {
    let mut env = web_env("");
    env.reconfigure(|s| s.max_grants = Some((1, 1)));
    let d = Daemon::start(&env);
    let web = Web::of(&env);
    env.load_sample_rules();
    let (code, _) = env.process(&env.input_from("sequence/day1.csv", "day1.csv"), &[]);
    assert_eq!(code, 3, "held");
    // The proxy spells the address its own way: audited as one person all the same.
    let spelled = LEAD.to_uppercase();
    let token = csrf(&env, &spelled);
    let me = ("X-Forwarded-Email", spelled.as_str());
    let a = web.post("/files/1/approve", &[me], &[("csrf", &token)]);
    assert_eq!(
        (a.status, a.header("location")),
        (303, "/files/1"),
        "{}",
        a.body
    );
    assert_eq!(env.json_ok(0, &["files", "show", "1"])["status"], "applied");
    // Deciding it again is refused by the pipeline: 409.
    assert_eq!(
        web.post("/files/1/reject", &[me], &[("csrf", &token)])
            .status,
        409
    );
    let audit = env.json_ok(0, &["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["user"] == LEAD && e["action"].as_str().unwrap().contains("approve")),
        "{audit:#}"
    );
    d.stop();
}

#[test]
fn api_tokens_read_and_never_change() {
    let env = web_env("");
    // No tokens file configured: exit 2.
    let out = env.expect(2, &["token", "add", "gw"]);
    assert!(out.contains("web.api_tokens_file"), "{out}");
    let file = env.root().join("api-tokens");
    let mut env = env;
    env.reconfigure(|s| {
        s.extra_toml
            .push_str(&format!("api_tokens_file = {:?}\n", file.to_str().unwrap()))
    });
    let d = Daemon::start(&env);
    // A tokens file not made yet is told at the start (a mistyped path had been silent).
    assert!(
        d.log().contains(&format!(
            "web.api_tokens_file {} does not exist",
            file.display()
        )),
        "{}",
        d.log()
    );
    let web = Web::of(&env);
    // Added while the daemon runs, used at once; by an admin whose umask is 077 (sudo keeps
    // it), the file still readable by the daemon's group.
    let cli = env.command();
    let mut under_077 = std::process::Command::new("sh");
    under_077
        .arg("-c")
        .arg("umask 077 && exec \"$@\"")
        .arg("sh")
        .arg(cli.get_program())
        .args(cli.get_args())
        .args(["token", "add", "sso-gateway"])
        .current_dir(env.root());
    let done = under_077.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&done.stdout).into_owned(),
        String::from_utf8_lossy(&done.stderr),
    );
    assert_eq!(done.status.code(), Some(0), "{out}{err}");
    // Only the token on stdout (`TOKEN=$(autoprov token add NAME)`), what it is on stderr.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.contains("shown this once"), "{err}");
    let token = out.trim().to_string();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&token));
    env.expect(3, &["token", "add", "sso-gateway"]);
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let a = web.get("/api/v1/rules", &auth);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), env.json_ok(0, &["rules", "list"]));
    assert_eq!(
        web.get("/api/v1/auth/check?email=x%40acme.example", &auth)
            .json()["allowed"],
        false
    );
    // An address given twice is no one address: denied, 200 (it had been 400).
    let twice = web.get(
        "/api/v1/auth/check?email=a%40acme.example&email=b%40acme.example",
        &auth,
    );
    assert_eq!(
        (twice.status, twice.json()["allowed"].clone()),
        (200, Value::Bool(false))
    );
    assert_eq!(web.get("/metrics", &auth).status, 200);
    // Through oauth2-proxy's session (the person's header with the token): the token
    // counts; another bearer (the proxy's ID token) does not, nor does the header alone.
    let both = [auth[0], ("X-Forwarded-Email", "m1@acme.example")];
    assert_eq!(web.get("/metrics", &both).status, 200);
    let id_token = [
        ("Authorization", "Bearer eyJhbGciOi.not-listed"),
        ("X-Forwarded-Email", "m1@acme.example"),
    ];
    assert_eq!(web.get("/metrics", &id_token).status, 401);
    assert_eq!(web.get_as("m1@acme.example", "/metrics").status, 401);
    // What axum refuses before a handler runs is answered in the API's JSON shape too.
    let twice = web.get("/api/v1/admins?status=active&status=inactive", &auth);
    assert_eq!(twice.status, 400, "{}", twice.body);
    assert!(
        twice.json()["error"].as_str().unwrap().contains("status"),
        "{}",
        twice.body
    );
    let not_utf8 = web.get("/api/v1/admins/%ff", &auth);
    assert_eq!(not_utf8.status, 400, "{}", not_utf8.body);
    assert!(not_utf8.json()["error"].is_string(), "{}", not_utf8.body);
    let posted = web.post("/api/v1/admins", &auth, &[]);
    assert_eq!(posted.status, 405, "{}", posted.body);
    assert_eq!(
        posted.json()["error"],
        "method not allowed",
        "{}",
        posted.body
    );
    // Guessed tokens are refused, and a stream of them is a line of the log.
    for i in 0..40 {
        let guess = format!("Bearer guess-{i}");
        let a = web.get("/api/v1/rules", &[("Authorization", guess.as_str())]);
        assert_eq!(a.status, 401, "{}", a.body);
    }
    let log = d.log();
    let unknown = "unknown API token refused";
    // One line, or a few when the test ran slower than the 10 s between two lines.
    let lines = log.lines().filter(|l| l.contains(unknown)).count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} lines for 40 refusals:\n{log}"
    );
    for bad in ["Bearer ap_wrong", "Bearer ", "Basic dXNlcjpwdw=="] {
        assert_eq!(
            web.get("/api/v1/rules", &[("Authorization", bad)]).status,
            401,
            "{bad}"
        );
    }
    let before = env.json_ok(0, &["rules", "list"]);
    let form = [
        ("name", "t"),
        ("role", "IT Admin"),
        ("when", "department = IT"),
        ("csrf", ""),
    ];
    let a = web.post("/rules", &auth, &form);
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("may only read"), "{}", a.body);
    assert_eq!(env.json_ok(0, &["rules", "list"]), before);
    // Anyone may send a bearer header: a form posted with one is refused without a line
    // blamed on a token holder (one a request, unthrottled, had been).
    let log = d.log();
    assert!(!log.contains("change asked: web form"), "{log}");
    d.stop();
}

/// `/metrics` samples as `name{labels}` -> value; panics on a line that is not one.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("metrics line {line:?}"));
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name in {line:?}"
        );
        let labels = &key[name_end..];
        assert!(
            labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
            "{line:?}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE line"
        );
        out.insert(key.to_string(), value);
    }
    out
}

#[test]
fn healthz_and_metrics() {
    let env = web_env("");
    let d = Daemon::start(&env);
    let web = Web::of(&env);
    let ok = web.get("/healthz", &[]);
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok\n"));
    env.load_sample_rules();
    let (code, _) = env.process(&env.input_from("sequence/day1.csv", "day1.csv"), &[]);
    assert_eq!(code, 0);
    manual(&env, "M1", "m1@acme.example", "HR Admin");
    assert_eq!(web.get("/healthz", &[]).status, 200);
    let (code, _) = env.process(
        &env.input_from("broken/malformed_email.csv", "bad.csv"),
        &[],
    );
    assert_eq!(code, 1, "rejected");
    let sick = web.get("/healthz", &[]);
    assert_eq!(sick.status, 503, "{}", sick.body);
    assert!(
        sick.body.contains("rejected") && sick.body.contains("bad.csv"),
        "{}",
        sick.body
    );
    // A dry run after it applies nothing: still unhealthy (it had been "ok").
    let (code, _) = env.process(
        &env.input_from("sequence/day2.csv", "day2.csv"),
        &["--dry-run"],
    );
    assert_eq!(code, 0);
    let still = web.get("/healthz", &[]);
    assert_eq!(still.status, 503, "{}", still.body);
    assert!(still.body.contains("bad.csv"), "{}", still.body);
    // Addressed by another name (a page of another site whose name was pointed at
    // 127.0.0.1, or a caller through the SSO proxy's open route): the reason without the
    // details, and no metrics without a token.
    let rebound = [("Host", "evil.example:8080")];
    let outside = web.get("/healthz", &rebound);
    assert_eq!(
        (outside.status, outside.body.as_str()),
        (503, "unhealthy: the last file was rejected\n")
    );
    assert_eq!(web.get("/metrics", &rebound).status, 401);
    // Through a proxy on this machine that passes the client's Host on (oauth2-proxy's open
    // route drops the email header but adds X-Forwarded-For): the reason alone, no metrics.
    let forwarded = [("Host", "localhost"), ("X-Forwarded-For", "203.0.113.7")];
    let outside = web.get("/healthz", &forwarded);
    assert_eq!(outside.body, "unhealthy: the last file was rejected\n");
    assert_eq!(web.get("/metrics", &forwarded).status, 401);
    // Metrics from a loopback peer, without sign-in; counts as the CLI sees them.
    let m = web.get("/metrics", &[]);
    assert_eq!(m.status, 200, "{}", m.body);
    // Through the SSO proxy (on this machine too, so also a loopback peer), any signed-in
    // employee would be one: a token is needed then.
    let proxied = web.get_as("m1@acme.example", "/metrics");
    assert_eq!(proxied.status, 401, "{}", proxied.body);
    assert!(
        m.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    let s = samples(&m.body);
    assert_eq!(s["autoprov_files{outcome=\"applied\"}"], 1.0);
    assert_eq!(s["autoprov_files{outcome=\"rejected\"}"], 1.0);
    assert_eq!(s["autoprov_held_files"], 0.0);
    assert_eq!(s["autoprov_fetch_failures_total"], 0.0);
    let st = env.json_ok(0, &["status"]);
    for (origin, status) in [
        ("auto", "active"),
        ("auto", "inactive"),
        ("manual", "active"),
        ("manual", "inactive"),
    ] {
        let key = format!("autoprov_accounts{{origin=\"{origin}\",status=\"{status}\"}}");
        assert_eq!(
            s[&key],
            st["accounts"][format!("{origin}_{status}")]
                .as_f64()
                .unwrap(),
            "{key}"
        );
    }
    assert_eq!(
        s["autoprov_accounts{origin=\"manual\",status=\"active\"}"],
        1.0
    );
    let files = env.json_ok(0, &["files", "list"]);
    let applied_at = humantime::parse_rfc3339(files[0]["processed_at"].as_str().unwrap()).unwrap();
    let secs = applied_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert_eq!(s["autoprov_last_applied_timestamp_seconds"], secs);
    // A good file makes it healthy again.
    let (code, _) = env.process(&env.input_from("sequence/day2.csv", "day2.csv"), &[]);
    assert_eq!(code, 0);
    assert_eq!(web.get("/healthz", &[]).status, 200);
    // A broken file tried as a dry run asked for nothing to be applied: still healthy (it
    // had been 503 until the next applied file).
    let (code, _) = env.process(
        &env.input_from("broken/malformed_email.csv", "try.csv"),
        &["--dry-run"],
    );
    assert_eq!(code, 1, "rejected");
    let tried = web.get("/healthz", &[]);
    assert_eq!(tried.status, 200, "{}", tried.body);
    d.stop();
}

#[test]
fn the_dev_user_stands_in_for_the_proxy_on_loopback_only() {
    let env = web_env_keys("dev_user = \"me@example.com\"\norg_admins = [\"me@example.com\"]");
    let d = Daemon::start(&env);
    assert!(d.log().contains("web.dev_user is set"), "{}", d.log());
    let web = Web::of(&env);
    assert_eq!(web.get("/api/v1/rules", &[]).status, 200);
    let form = [
        ("name", "dev"),
        ("role", "IT Admin"),
        ("when", "department = IT"),
        ("csrf", &csrf(&env, "me@example.com")),
    ];
    assert_eq!(web.post("/rules", &[], &form).status, 303);
    assert_eq!(
        env.json_ok(0, &["rules", "show", "1"])["created_by"],
        "me@example.com"
    );
    // A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding) addresses
    // the section by that name: it is not the dev user, and its form is refused too.
    let rebound = [
        ("Host", "evil.example:8080"),
        ("Origin", "http://evil.example:8080"),
    ];
    assert_eq!(web.get("/rules", &rebound[..1]).status, 401);
    assert_eq!(
        web.post("/rules/1/delete", &rebound, &form[3..]).status,
        401
    );
    assert_eq!(
        env.json_ok(0, &["rules", "list"]).as_array().unwrap().len(),
        1
    );
    d.stop();
    // On another address the config is refused.
    let (code, _, err) = env.run_env(&["status"], &[("AUTOPROV__WEB__LISTEN", "0.0.0.0:8080")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("web.dev_user") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn a_web_port_in_use_stops_the_start_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let env = web_env("");
    let mut d = Daemon::spawn(
        &env,
        &[("AUTOPROV__WEB__LISTEN", &format!("127.0.0.1:{port}"))],
    );
    let status = d.wait_exit(
        std::time::Duration::from_secs(20),
        "with the web port taken",
    );
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains("web.listen") && log.contains(&format!("127.0.0.1:{port}")),
        "{log}"
    );
}
