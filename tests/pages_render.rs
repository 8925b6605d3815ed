//! The pages of the Auto-Provisioning section in a real browser (headless Chromium): every
//! account's values show as text, a `<script>` from the roster never becomes an element,
//! and the admin list is kept as screenshots at a laptop's and a phone's width. Also pins
//! the SSO proxy stand-in the server's tests drive the browser through.

mod common;

use autoprov::web::pages::{self, AdminsQuery, PageCtx, RuleForm, Tab};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{any, get};
use common::browser::{dump_dom, screenshot};
use common::sso_proxy::{Served, SsoProxy};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(2)>";
const QUOTED: &str = r#"O'Brien "ops" rule"#;
const EMAIL: &str = "it-lead@acme.example";

fn roles() -> Vec<String> {
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

/// A roster's worth of accounts: realistic ones, and two whose values attack the page.
fn accounts() -> Value {
    let people = [
        (
            "E00001",
            "tara.goncalves",
            "Billing Admin",
            4,
            "Revenue leadership",
            "active",
        ),
        (
            "E00005",
            "victor.levi",
            "Read-only Admin",
            7,
            "Managers read-only",
            "active",
        ),
        (
            "E00006",
            "james.thomas",
            "Read-only Admin",
            8,
            "Legal and HR auditors",
            "active",
        ),
        (
            "E00008",
            "soren.taylor",
            "IT Admin",
            2,
            "IT staff",
            "active",
        ),
        (
            "E00015",
            "james.larsen",
            "IT Admin",
            6,
            "Engineering managers",
            "active",
        ),
        (
            "E00017",
            "chloe.patel",
            "HR Admin",
            5,
            "HR partners",
            "inactive",
        ),
        (
            "E00019",
            "ingrid.lopez",
            "Read-only Admin",
            7,
            "Managers read-only",
            "active",
        ),
        (
            "E00025",
            "bjorn.roberts",
            "IT Admin",
            2,
            "IT staff",
            "active",
        ),
        (
            "E00035",
            "agnieszka.garcia",
            "Billing Admin",
            4,
            "Revenue leadership",
            "active",
        ),
        (
            "E00048",
            "sara.papadopoulos",
            "IT Admin",
            6,
            "Engineering managers",
            "inactive",
        ),
        (
            "E00057",
            "aylin.taylor",
            "Super Admin",
            1,
            "IT managers",
            "active",
        ),
        (
            "E00061",
            "mei.watanabe",
            "Billing Admin",
            3,
            "Finance managers",
            "active",
        ),
    ];
    let mut list: Vec<Value> = people
        .iter()
        .map(|(id, who, role, rule_id, rule, status)| {
            account(
                id,
                &format!("{who}@acme.example"),
                role,
                status,
                "auto",
                Some((*rule_id, rule)),
            )
        })
        .collect();
    list.push(account(
        SCRIPT,
        IMG,
        SCRIPT,
        "active",
        "auto",
        Some((9, QUOTED)),
    ));
    list.push(account(
        "C-0042",
        "contractor.ops@acme.example",
        "IT Admin",
        "active",
        "manual",
        None,
    ));
    list.push(account(SCRIPT, SCRIPT, SCRIPT, "inactive", "manual", None));
    Value::Array(list)
}

fn account(
    id: &str,
    email: &str,
    role: &str,
    status: &str,
    origin: &str,
    rule: Option<(u64, &str)>,
) -> Value {
    json!({
        "employee_id": id, "email": email, "role": role, "status": status, "origin": origin,
        "rule_id": rule.map(|r| r.0), "rule": rule.map(|r| r.1),
        "created_at": "2026-12-03T23:52:17Z", "updated_at": "2026-12-03T23:52:17Z",
    })
}

fn ctx(can_change: bool) -> PageCtx<'static> {
    PageCtx {
        email: EMAIL,
        csrf: "csrf-token",
        can_change,
        dev_mode: false,
    }
}

/// How Chromium serializes text: `&`, `<`, `>` and no-break spaces escaped.
fn as_dom_text(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `html` beside the stylesheet in `dir` (the absolute `/static/` link made
/// relative, as file:// has no server) and returns its file:// URL.
fn page_file(dir: &Path, name: &str, html: String) -> String {
    std::fs::write(dir.join("style.css"), pages::STYLE_CSS).unwrap();
    let html = html.replace(r#"href="/static/style.css""#, r#"href="style.css""#);
    let path = dir.join(format!("{name}.html"));
    std::fs::write(&path, html).unwrap();
    format!("file://{}", path.display())
}

/// Every page with hostile values, rendered for someone who may change things.
fn every_page() -> Vec<(&'static str, String)> {
    let c = ctx(true);
    let admin = {
        let mut a = accounts()[12].clone();
        a["history"] = json!([{"at": "2026-12-03T23:52:17Z", "source": SCRIPT, "status": "active", "role": SCRIPT, "reason": QUOTED}]);
        a
    };
    let rules = json!([{"id": 9, "name": QUOTED, "role": SCRIPT, "conditions": [format!("department = \"{SCRIPT}\"")],
        "enabled": true, "created_at": "2026-12-03T23:52:17Z", "created_by": SCRIPT}]);
    let form = RuleForm {
        id: Some(9),
        name: QUOTED.into(),
        role: SCRIPT.into(),
        when: SCRIPT.into(),
        conflicts: json!([{"rule_id": 1, "rule": SCRIPT, "role": "IT Admin", "employees": 1, "employee_ids": [SCRIPT], "winner": 1}]),
        error: Some(SCRIPT.into()),
        seen: SCRIPT.into(),
        enable: false,
    };
    let files = json!([{"id": 1, "name": SCRIPT, "stored_as": SCRIPT, "status": "held", "received_at": "2026-12-03T23:52:17Z", "summary": SCRIPT}]);
    let report = json!({"file": SCRIPT, "status": "held", "held_because": [SCRIPT], "counts": {"created": 1}, "errors": [{"line": 2, "column": SCRIPT, "message": SCRIPT}]});
    let status = json!({"mode": "host", "last_file": {"id": 1, "name": SCRIPT, "status": "held"}, "waiting": [SCRIPT], "held": [{"id": 1, "name": SCRIPT}], "daemon": {"running": true, "last_error": SCRIPT, "listen": SCRIPT, "hris": {"provider": SCRIPT, "failing": true, "last_error": SCRIPT}, "poll": {"last_error": SCRIPT, "stopped": true}}});
    vec![
        ("admin", pages::admin(&c, &admin).into_string()),
        (
            "rules",
            pages::rules(&c, &rules, &roles(), Some(&form)).into_string(),
        ),
        ("files", pages::files(&c, &files).into_string()),
        ("file", pages::file(&c, 1, &report, SCRIPT).into_string()),
        ("status", pages::status(&c, &status).into_string()),
        (
            "error",
            pages::error_page(Some(&c), 403, SCRIPT).into_string(),
        ),
    ]
}

/// No element came from a value: no script, no image (the pages have neither).
fn assert_nothing_injected(name: &str, dom: &str) {
    assert!(
        dom.contains("</main>"),
        "{name}: Chromium built no page:\n{dom}"
    );
    assert_eq!(
        dom.matches("<script").count(),
        0,
        "{name}: a script element in\n{dom}"
    );
    assert_eq!(
        dom.matches("<img").count(),
        0,
        "{name}: an image element in\n{dom}"
    );
    assert!(
        dom.contains(&as_dom_text(SCRIPT)),
        "{name}: the value is not shown as text in\n{dom}"
    );
}

#[test]
#[cfg_attr(
    missing_chromium,
    ignore = "needs chromium on PATH (apt-get install chromium)"
)]
fn the_admin_list_shows_every_account_and_no_injected_element() {
    let dir = tempfile::tempdir().unwrap();
    let all = accounts();
    for tab in [Tab::Auto, Tab::Manual] {
        let q = AdminsQuery {
            tab,
            ..AdminsQuery::default()
        };
        let url = page_file(
            dir.path(),
            tab.as_str(),
            pages::admins(&ctx(true), &all, &roles(), &q).into_string(),
        );
        let dom = dump_dom(&url).unwrap();
        assert_nothing_injected(tab.as_str(), &dom);
        let on_tab = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| (a["origin"] == "manual") == (tab == Tab::Manual));
        let mut n = 0;
        for a in on_tab {
            n += 1;
            let rule = a["rule"].as_str().unwrap_or("manual");
            for field in [
                a["employee_id"].as_str().unwrap(),
                a["email"].as_str().unwrap(),
                a["role"].as_str().unwrap(),
                rule,
                a["status"].as_str().unwrap(),
            ] {
                assert!(
                    dom.contains(&as_dom_text(field)),
                    "{tab:?}: {field:?} is not on the page:\n{dom}"
                );
            }
        }
        assert!(n >= 2, "{tab:?}: the fixture has accounts on this tab");
        // One table row per account of the tab.
        assert_eq!(
            dom.matches("<tr>").count(),
            n + 1,
            "{tab:?}: rows in\n{dom}"
        );
    }
}

#[test]
#[cfg_attr(
    missing_chromium,
    ignore = "needs chromium on PATH (apt-get install chromium)"
)]
fn every_other_page_shows_hostile_values_as_text() {
    let dir = tempfile::tempdir().unwrap();
    for (name, html) in every_page() {
        let dom = dump_dom(&page_file(dir.path(), name, html)).unwrap();
        assert_nothing_injected(name, &dom);
    }
}

/// A server of the admin list that believes the proxy's header, as the real one does
/// (from a trusted address): without it, 401.
fn list_server() -> Served {
    async fn list(headers: HeaderMap) -> axum::response::Response {
        let Some(email) = headers
            .get("x-forwarded-email")
            .and_then(|v| v.to_str().ok())
        else {
            let page = pages::error_page(None, 401, "No SSO proxy signed you in.");
            return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
        };
        let c = PageCtx {
            email,
            csrf: "csrf-token",
            can_change: true,
            dev_mode: false,
        };
        Html(pages::admins(&c, &accounts(), &roles(), &AdminsQuery::default()).into_string())
            .into_response()
    }
    async fn css() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            pages::STYLE_CSS,
        )
    }
    Served::start(
        Router::new()
            .route("/", get(list))
            .route(pages::STYLE_PATH, get(css)),
    )
}

#[test]
#[cfg_attr(
    missing_chromium,
    ignore = "needs chromium on PATH (apt-get install chromium)"
)]
fn a_browser_behind_the_sso_proxy_is_signed_in_and_the_list_is_photographed() {
    let server = list_server();
    let proxy = SsoProxy::start(&server.url(""), "ann.admin@acme.example");
    let signed_in = dump_dom(&proxy.url("/")).unwrap();
    assert!(
        signed_in.contains("<strong>ann.admin@acme.example</strong>"),
        "{signed_in}"
    );
    assert_nothing_injected("via proxy", &signed_in);
    let direct = dump_dom(&server.url("/")).unwrap();
    assert!(
        direct.contains("401 Not signed in") && !direct.contains("ann.admin"),
        "{direct}"
    );

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    for (name, width, height) in [("laptop", 1280, 900), ("phone", 390, 844)] {
        let path = dir.join(format!("admins-{name}.png"));
        screenshot(&proxy.url("/"), &path, width, height).unwrap();
        println!(
            "screenshot of the admin list ({name}, {width}x{height}): {}",
            path.display()
        );
    }
}

/// What the echo server saw of one request.
fn echo_server() -> Served {
    async fn echo(request: axum::extract::Request) -> axum::Json<Value> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        axum::Json(json!({
            "method": parts.method.as_str(), "uri": parts.uri.to_string(),
            "body": String::from_utf8_lossy(&body), "headers": headers,
        }))
    }
    async fn redirect() -> impl IntoResponse {
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/rules")])
    }
    Served::start(
        Router::new()
            .route("/redirect", any(redirect))
            .fallback(echo),
    )
}

/// `/status` shows HRIS mode's state, a failing fetch as an alert, and an SFTP address only
/// where the daemon bound one: it had shown neither the provider nor the failure, and the
/// configured `source.listen` where nothing listens.
#[test]
fn the_status_page_shows_the_hris_state_and_no_sftp_address_outside_host_mode() {
    let c = ctx(true);
    let status = json!({
        "mode": "hris", "listen": null,
        "daemon": {"running": true, "listen": null, "hris": {
            "provider": "bamboohr", "failing": true, "last_success": null,
            "last_error": "credentials refused (HTTP 403)", "next_fetch": "2026-12-07T06:00:00Z",
        }},
    });
    let page = pages::status(&c, &status).into_string();
    assert!(page.contains("bamboohr"), "{page}");
    assert!(page.contains("credentials refused (HTTP 403)"), "{page}");
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(!page.contains("2222"), "{page}");
    let mut host = json!({"mode": "host", "daemon": {"running": true, "listen": "127.0.0.1:2222"}});
    assert!(
        pages::status(&c, &host)
            .into_string()
            .contains("127.0.0.1:2222")
    );
    host["daemon"]["listen"] = Value::Null;
    assert!(!pages::status(&c, &host).into_string().contains("2222"));
}

#[test]
fn the_sso_proxy_forwards_the_request_and_sets_the_email() {
    let server = echo_server();
    let proxy = SsoProxy::start(&server.url("/"), "ann@acme.example");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let (status, seen) = rt.block_on(async {
        let r = client
            .post(proxy.url("/rules/3?x=1&y=a%20b"))
            .header("X-Forwarded-Email", "mallory@evil.example")
            .header("Origin", "http://elsewhere.example")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("csrf=t&name=a%22b")
            .send()
            .await
            .unwrap();
        (
            r.status(),
            serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap(),
        )
    });
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/rules/3?x=1&y=a%20b");
    assert_eq!(seen["body"], "csrf=t&name=a%22b");
    let headers: Vec<(String, String)> = serde_json::from_value(seen["headers"].clone()).unwrap();
    let values = |name: &str| {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values("x-forwarded-email"),
        ["ann@acme.example"],
        "the client's own header is replaced"
    );
    assert_eq!(values("origin"), ["http://elsewhere.example"]);
    assert_eq!(
        values("content-type"),
        ["application/x-www-form-urlencoded"]
    );
    assert_eq!(
        values("host"),
        [proxy.addr().to_string()],
        "the Host the browser used is passed on"
    );
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
    // Redirects go back to the browser, as a proxy's would.
    let (status, location) = rt.block_on(async {
        let r = client.post(proxy.url("/redirect")).send().await.unwrap();
        (
            r.status(),
            r.headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
        )
    });
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/rules"))
    );
}
