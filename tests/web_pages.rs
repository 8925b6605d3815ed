//! The section's pages (SPEC §11) in a real browser: the real daemon serves them, a small
//! proxy in front sets `X-Forwarded-Email` as an SSO proxy would, and headless Chromium
//! loads them. The rendered DOM shows every account's ID, email, rule, role and status;
//! a roster cell such as `<script>` and a rule name with quotes stay text; forms post with
//! the token the page issued, a conflicting rule is shown again and saved only when
//! confirmed, and a person who may look but not change gets no forms. The admin list's
//! screenshot is kept (`AUTOPROV_SCREENSHOT_DIR`, default the target dir) for the README.

mod common;

use common::daemon::Daemon;
use common::sso_proxy::SsoProxy;
use common::{Settings, TestEnv, testdata};
use serde_json::Value;
use std::path::PathBuf;

/// In `web.org_admins`: may look and change.
const LEAD: &str = "it-lead@acme.example";
/// A roster value that must never become an element.
const SCRIPT: &str = "<script>alert(1)</script>";
/// A rule name with both quotes.
const QUOTED: &str = r#"O'Brien "ops" leads"#;

/// The daemon with the section on 127.0.0.1:0, day 1 of the sample sequence applied with
/// the sample rules, plus a rule with quotes in its name and an employee whose department
/// and ID carry markup.
fn env_with_roster() -> TestEnv {
    let public = std::fs::read_to_string(testdata("keys/hris_ed25519.pub")).unwrap();
    let env = TestEnv::with(Settings {
        max_grants: Some((10_000_000, 100)),
        log_level: "info".into(),
        extra_toml: format!(
            "[source]\nmode = \"host\"\nlisten = \"127.0.0.1:0\"\n\n[[source.users]]\nname = \"hris\"\nauthorized_keys = [{:?}]\n\n\
             [web]\nlisten = \"127.0.0.1:0\"\norg_admins = [{LEAD:?}]\n",
            public.trim()
        ),
        ..Settings::default()
    });
    env.load_sample_rules();
    env.json_ok(
        0,
        &[
            "rules",
            "add",
            "--name",
            QUOTED,
            "--role",
            "Read-only Admin",
            "--when",
            "department = <b>Ops</b>",
        ],
    );
    let mut roster = std::fs::read_to_string(testdata("sequence/day1.csv")).unwrap();
    roster.push_str(&format!(
        "\"{SCRIPT}\",Mal,Ory,mal.ory@acme.example,<b>Ops</b>,\"<img src=x onerror=alert(2)>\",Berlin,,Active,CC-1\n"
    ));
    let file = env.root().join("day1-markup.csv");
    std::fs::write(&file, roster).unwrap();
    let (code, report) = env.process(&file, &[]);
    assert_eq!(code, 0, "{report:#}");
    env
}

/// The section's address, from `status --json`.
fn web_addr(env: &TestEnv) -> String {
    let st = env.json_ok(0, &["status"]);
    let addr = st["daemon"]["web"]
        .as_str()
        .expect("daemon.web")
        .to_string();
    format!("http://{addr}")
}

/// Where the screenshots go.
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("AUTOPROV_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The number of elements named `tag` in a DOM Chromium serialized (an escaped value is
/// serialized as `&lt;tag`, never as `<tag`).
fn elements(dom: &str, tag: &str) -> usize {
    dom.matches(&format!("<{tag}")).count()
}

#[test]
#[cfg_attr(missing_chromium, ignore = "needs chromium (apt-get install chromium)")]
fn the_admin_list_shows_every_account_in_a_real_browser_and_no_value_becomes_markup() {
    common::require(common::Need::Chromium);
    let env = env_with_roster();
    let _daemon = Daemon::start(&env);
    let proxy = SsoProxy::start(&web_addr(&env), LEAD);
    let accounts = env.accounts(&["--origin", "auto"]);
    assert!(
        accounts.contains_key(SCRIPT),
        "the markup row got an account"
    );
    let dom = common::browser::dump_dom(&proxy.url("/")).expect("chromium loads /");
    assert_eq!(elements(&dom, "script"), 0, "{dom}");
    assert_eq!(elements(&dom, "img"), 0, "{dom}");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    for (id, a) in &accounts {
        let escaped = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        for field in ["email", "role", "status", "rule"] {
            // Only a manual account has no rule; a field missing or renamed is a failure,
            // not an empty string every page contains.
            if field == "rule" && a["origin"] == "manual" && a[field].is_null() {
                continue;
            }
            let value = a[field]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: no {field} in {a}"));
            assert!(
                dom.contains(&escaped(value)),
                "{id}: {field} {value:?} not on the page"
            );
        }
        assert!(dom.contains(&escaped(id)), "{id} not on the page");
    }
    assert!(
        dom.contains("O'Brien \"ops\" leads"),
        "the quoted rule name, as text"
    );
    let dir = screenshot_dir();
    for (name, w, h) in [
        ("admins-laptop.png", 1280, 900),
        ("admins-phone.png", 390, 844),
    ] {
        let path = dir.join(name);
        common::browser::screenshot(&proxy.url("/"), &path, w, h).expect("screenshot");
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is {size} bytes", path.display());
        eprintln!("screenshot: {}", path.display());
    }
}

#[test]
#[cfg_attr(missing_chromium, ignore = "needs chromium (apt-get install chromium)")]
fn every_page_renders_in_the_browser_with_its_data() {
    common::require(common::Need::Chromium);
    let env = env_with_roster();
    let _daemon = Daemon::start(&env);
    let proxy = SsoProxy::start(&web_addr(&env), LEAD);
    let (id, account) = env
        .accounts(&["--status", "active"])
        .into_iter()
        .next()
        .unwrap();
    let email = account["email"].as_str().unwrap().to_string();
    let encoded = common::urlencode(&id);
    let pages: Vec<(String, Vec<String>)> = vec![
        (format!("/admins/{encoded}"), vec![email]),
        ("/rules".into(), vec!["O'Brien \"ops\" leads".into()]),
        ("/files".into(), vec!["day1-markup.csv".into()]),
        ("/files/1".into(), vec!["applied".into()]),
        ("/status".into(), vec!["host".into()]),
        ("/?tab=manual".into(), vec![]),
    ];
    for (path, wanted) in pages {
        let dom = common::browser::dump_dom(&proxy.url(&path)).expect("chromium");
        assert_eq!(elements(&dom, "script"), 0, "{path}: {dom}");
        assert_eq!(elements(&dom, "img"), 0, "{path}: {dom}");
        for want in wanted {
            assert!(dom.contains(&want), "{path}: {want:?} missing in {dom}");
        }
    }
}

/// A client of the section through the proxy (which signs it in), not following redirects.
struct Browserless {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    proxy: SsoProxy,
}

impl Browserless {
    fn new(env: &TestEnv, email: &str) -> Browserless {
        Browserless {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            proxy: SsoProxy::start(&web_addr(env), email),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = self.proxy.url(path);
        self.rt.block_on(async {
            let r = self.client.get(url).send().await.expect("GET");
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    /// Posts a form as a browser does (same origin, `Accept: text/html`).
    fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let url = self.proxy.url(path);
        let origin = self.proxy.url("");
        let origin = origin.trim_end_matches('/').to_string();
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", common::urlencode(k), common::urlencode(v)))
            .collect();
        let body = body.join("&");
        self.rt.block_on(async {
            let r = self
                .client
                .post(url)
                .header("accept", "text/html")
                .header("origin", origin)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("POST");
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\"").expect("a csrf field");
    let value = &page[at..];
    let start = value.find("value=\"").expect("its value") + 7;
    let end = value[start..].find('"').unwrap();
    value[start..start + end].to_string()
}

fn rule_names(env: &TestEnv) -> Vec<String> {
    let rules: Value = env.json_ok(0, &["rules", "list"]);
    rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

/// A rule saved from the page with warnings (here: conditions that can never all hold) is
/// followed by the rules page with them first, as the CLI prints them; one refused for
/// another reason (a role not configured) comes back with the refusal and what was typed.
/// The page had said nothing of the first, and lost what was typed of the second.
#[test]
fn a_rule_saved_with_warnings_shows_them_and_a_refused_one_keeps_what_was_typed() {
    let env = env_with_roster();
    let _daemon = Daemon::start(&env);
    let lead = Browserless::new(&env, LEAD);
    let (_, page) = lead.get("/rules");
    let token = csrf_of(&page);
    let never = [
        ("csrf", token.as_str()),
        ("name", "Never (web)"),
        ("role", "IT Admin"),
        ("when", "department = IT\ndepartment = Finance"),
    ];
    let (code, page) = lead.post("/rules", &never);
    assert_eq!(code, 303, "{page}");
    let id = env
        .json_ok(0, &["rules", "list"])
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .clone();
    let (code, page) = lead.get(&format!("/rules?saved={id}"));
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("is saved (enabled), with warnings"), "{page}");
    assert!(page.contains("can never all hold"), "{page}");
    let (_, plain) = lead.get("/rules");
    assert!(!plain.contains("with warnings"), "only after the save");
    let janitor = [
        ("csrf", token.as_str()),
        ("name", "Typed with care"),
        ("role", "Janitor"),
        ("when", "department = Facilities"),
    ];
    let (code, page) = lead.post("/rules", &janitor);
    assert_eq!(code, 409, "{page}");
    assert!(page.contains("not in provisioning.roles"), "{page}");
    assert!(page.contains(r#"value="Typed with care""#), "{page}");
    assert!(
        page.contains("department = Facilities</textarea>"),
        "{page}"
    );
    // A form drawn before the rule was changed elsewhere is not sent back to be saved (its
    // version would be refused at every Save): the page says to reload.
    let (_, page) = lead.get("/rules");
    let panel = page
        .split(r#"action="/rules/1""#)
        .nth(1)
        .expect("rule 1's edit form");
    let seen = panel.split(r#"name="seen" value=""#).nth(1).unwrap();
    let seen = seen.split('"').next().unwrap().to_string();
    env.json_ok(0, &["rules", "edit", "1", "--name", "Renamed elsewhere"]);
    let edit = [
        ("csrf", token.as_str()),
        ("seen", seen.as_str()),
        ("name", "Mine"),
        ("role", ""),
        ("when", ""),
    ];
    let (code, page) = lead.post("/rules/1", &edit);
    assert_eq!(code, 409, "{page}");
    assert!(
        page.contains("was changed since the page was drawn"),
        "{page}"
    );
    assert!(!page.contains("Save rule 1?"), "{page}");
}

#[test]
fn a_conflicting_rule_is_shown_with_its_conflicts_and_saved_only_when_confirmed() {
    let env = env_with_roster();
    let _daemon = Daemon::start(&env);
    let lead = Browserless::new(&env, LEAD);
    let (code, page) = lead.get("/rules");
    assert_eq!(code, 200, "{page}");
    let token = csrf_of(&page);
    let before = rule_names(&env);
    // The sample rules give Engineering managers IT Admin: Super Admin for them conflicts.
    let form = [
        ("csrf", token.as_str()),
        ("name", "Eng leads (web)"),
        ("role", "Super Admin"),
        ("when", "department = Engineering\nis_manager = true"),
    ];
    let (code, page) = lead.post("/rules", &form);
    assert_eq!(code, 409, "{page}");
    assert!(page.contains("Save anyway"), "{page}");
    assert!(page.contains("conflict"), "{page}");
    assert_eq!(rule_names(&env), before, "nothing saved before confirming");
    let confirm = page
        .split(r#"name="confirm" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the confirmation in the form")
        .to_string();
    // The fields changed after the conflicts were shown: shown again, not saved.
    let mut changed = form.to_vec();
    changed[3] = ("when", "department = Engineering");
    changed.push(("confirm", &confirm));
    let (code, page) = lead.post("/rules", &changed);
    assert_eq!(code, 409, "{page}");
    assert_eq!(
        rule_names(&env),
        before,
        "a changed rule is not saved by its confirmation"
    );
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", &confirm));
    let (code, page) = lead.post("/rules", &confirmed);
    assert_eq!(code, 303, "{page}");
    assert!(rule_names(&env).contains(&"Eng leads (web)".to_string()));
    let audit = env.json_ok(0, &["audit"]);
    assert!(
        audit.to_string().contains(LEAD),
        "the change is audited with the email: {audit:#}"
    );
    // Without the page's token, or with another person's, nothing is saved.
    let stranger = [
        ("csrf", "0000"),
        ("name", "x"),
        ("role", "IT Admin"),
        ("when", "department = IT"),
    ];
    let (code, _) = lead.post("/rules", &stranger);
    assert_eq!(code, 403);
    assert!(!rule_names(&env).contains(&"x".to_string()));
}

#[test]
fn a_person_who_may_look_but_not_change_gets_no_forms_and_no_change() {
    let env = env_with_roster();
    let _daemon = Daemon::start(&env);
    // An active auto account whose role is not in web.org_admin_roles (Super Admin).
    let (_, reader) = env
        .accounts(&["--status", "active"])
        .into_iter()
        .find(|(_, a)| a["role"] != "Super Admin")
        .expect("a non-super admin");
    let email = reader["email"].as_str().unwrap();
    let person = Browserless::new(&env, email);
    for path in ["/", "/rules", "/files", "/?tab=manual"] {
        let (code, page) = person.get(path);
        assert_eq!(code, 200, "{path}: {page}");
        assert!(
            !page.to_lowercase().contains("method=\"post\""),
            "{path} offers a form: {page}"
        );
    }
    let token = {
        let path = autoprov::layout::Paths::new(&env.data_dir).web_secret;
        autoprov::web::csrf::CsrfKey::load_or_create(&path)
            .unwrap()
            .token(email)
    };
    let before = rule_names(&env);
    let (code, _) = person.post("/rules/1/delete", &[("csrf", &token)]);
    assert_eq!(code, 403);
    assert_eq!(rule_names(&env), before);
    // Nobody the proxy names who has no account and is no org admin may look at all.
    let (code, page) = Browserless::new(&env, "nobody@acme.example").get("/");
    assert_eq!(code, 403, "{page}");
}
