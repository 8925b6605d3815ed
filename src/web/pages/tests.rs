//! The pages against hostile values, the CSP, CSRF and the list's selection logic.

use super::*;
use serde_json::{Value, json};

const SCRIPT: &str = "<script>alert(1)</script>";
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
const QUOTED: &str = r#"O'Brien "ops""#;
const QUOTED_ESCAPED: &str = "O'Brien &quot;ops&quot;";
const TOKEN: &str = "tok-123";

fn ctx(can_change: bool) -> PageCtx<'static> {
    PageCtx {
        email: "lead@acme.example",
        csrf: TOKEN,
        can_change,
        dev_mode: false,
    }
}

fn roles() -> Vec<String> {
    ["Super Admin", "IT Admin", "HR Admin"]
        .map(String::from)
        .to_vec()
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

/// Two auto accounts (one carrying a script in every field), two manual ones.
fn accounts() -> Value {
    json!([
        account(
            "E1",
            "ann@acme.example",
            "IT Admin",
            "active",
            "auto",
            Some((1, "IT staff"))
        ),
        account(
            SCRIPT,
            SCRIPT,
            SCRIPT,
            "inactive",
            "auto",
            Some((2, QUOTED))
        ),
        account(
            "M1",
            "mo@acme.example",
            "HR Admin",
            "active",
            "manual",
            None
        ),
        account(SCRIPT, SCRIPT, SCRIPT, "active", "manual", None),
    ])
}

fn rules_json() -> Value {
    json!([
        {"id": 1, "name": "IT staff", "role": "IT Admin", "conditions": ["department = IT"], "enabled": true,
         "created_at": "2026-12-03T23:52:17Z", "created_by": "root"},
        {"id": 2, "name": QUOTED, "role": SCRIPT, "conditions": [format!("department = \"{SCRIPT}\"")], "enabled": false,
         "created_at": "2026-12-03T23:52:17Z", "created_by": SCRIPT},
    ])
}

fn admin_json() -> Value {
    let mut a = account(SCRIPT, SCRIPT, SCRIPT, "active", "auto", Some((2, QUOTED)));
    a["history"] = json!([{"at": "2026-12-03T23:52:17Z", "source": SCRIPT, "status": "active", "role": SCRIPT, "reason": format!("created by rule 2 \"{QUOTED}\"")}]);
    a
}

fn files_json() -> Value {
    json!([
        {"id": 1, "name": SCRIPT, "stored_as": format!("20261203T235217Z_{SCRIPT}"), "status": "applied",
         "received_at": "2026-12-03T23:52:17Z", "summary": SCRIPT},
        {"id": 2, "name": "roster.csv", "stored_as": "20261204T000000Z_roster.csv", "status": "held",
         "received_at": "2026-12-04T00:00:00Z", "summary": "created 82", "seen": "plan-2"},
    ])
}

fn report_json(status: &str) -> Value {
    json!({
        "file": SCRIPT, "stored_as": SCRIPT, "sha256": "ab12", "received_at": "2026-12-04T00:00:00Z",
        "processed_at": "2026-12-04T00:00:01Z", "status": status, "rows": 3,
        "counts": {"created": 2, "deactivated": 0, "reassigned": 0, "reactivated": 0, "role_changed": 0, "skipped_manual": 0, "unchanged": 1},
        "changes": [], "errors": [{"line": 4, "column": SCRIPT, "message": SCRIPT}], "more_errors": 0,
        "warnings": [], "held_because": [SCRIPT], "repeats": null, "decision": null,
    })
}

fn status_json() -> Value {
    json!({
        "mode": "host", "listen": "127.0.0.1:2222", "sso": {"enabled": true, "provider": SCRIPT},
        "rules": {"total": 2, "enabled": 1},
        "accounts": {"auto_active": 1, "auto_inactive": 1, "manual_active": 2, "manual_inactive": 0},
        "last_file": {"id": 1, "name": SCRIPT, "status": "applied", "processed_at": "2026-12-03T23:52:17Z", "summary": SCRIPT},
        "waiting": [SCRIPT], "held": [{"id": 2, "name": SCRIPT}],
        "daemon": {"running": true, "started_at": "2026-12-03T23:00:00Z", "listen": "127.0.0.1:2222", "last_error": SCRIPT, "stale": false, "quiet_for_seconds": 125},
    })
}

fn conflict_form() -> RuleForm {
    RuleForm {
        id: Some(2),
        name: QUOTED.into(),
        role: "IT Admin".into(),
        when: format!("department = \"{SCRIPT}\""),
        conflicts: json!([{"rule_id": 1, "rule": SCRIPT, "role": "IT Admin", "employees": 3,
            "employee_ids": ["E1", SCRIPT], "winner": 1, "message": format!("conflict: rule 2 \"{QUOTED}\" and rule 1 \"{SCRIPT}\"")}]),
        error: None,
        seen: SCRIPT.into(),
        enable: false,
    }
}

/// Every page, rendered with hostile values everywhere, by a person who may change things.
fn every_page(can_change: bool) -> Vec<(&'static str, String)> {
    let c = ctx(can_change);
    let manual = AdminsQuery {
        tab: Tab::Manual,
        ..AdminsQuery::default()
    };
    vec![
        (
            "admins",
            admins(&c, &accounts(), &roles(), &AdminsQuery::default()).into_string(),
        ),
        (
            "admins manual",
            admins(&c, &accounts(), &roles(), &manual).into_string(),
        ),
        ("admin", admin(&c, &admin_json()).into_string()),
        (
            "rules",
            rules(&c, &rules_json(), &roles(), None).into_string(),
        ),
        (
            "rules conflict",
            rules(&c, &rules_json(), &roles(), Some(&conflict_form())).into_string(),
        ),
        ("files", files(&c, &files_json()).into_string()),
        (
            "file",
            file(&c, 2, &report_json("held"), SCRIPT).into_string(),
        ),
        ("status", status(&c, &status_json()).into_string()),
        ("error", error_page(Some(&c), 404, SCRIPT).into_string()),
        (
            "error anonymous",
            error_page(None, 401, SCRIPT).into_string(),
        ),
    ]
}

/// Whether a tag in `html` has an `on…=` attribute (scripts the CSP would block anyway).
fn has_event_handler(html: &str) -> bool {
    html.split('<')
        .filter_map(|t| t.split('>').next())
        .any(|tag| {
            tag.split_whitespace()
                .skip(1)
                .any(|attr| attr.starts_with("on") && attr.contains('='))
        })
}

#[test]
fn every_page_escapes_roster_and_rule_values_and_stays_within_the_csp() {
    for can_change in [true, false] {
        for (name, html) in every_page(can_change) {
            let lower = html.to_lowercase();
            assert!(
                !lower.contains("<script"),
                "{name}: a <script> tag in\n{html}"
            );
            assert!(
                html.contains(SCRIPT_ESCAPED),
                "{name}: the escaped value is missing in\n{html}"
            );
            assert!(
                !lower.contains(" style="),
                "{name}: an inline style in\n{html}"
            );
            assert!(
                !has_event_handler(&lower),
                "{name}: an event handler attribute in\n{html}"
            );
            assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
            assert!(
                html.contains(r#"<link rel="stylesheet" href="/static/style.css">"#),
                "{name}"
            );
        }
    }
}

#[test]
fn the_event_handler_check_can_fail() {
    assert!(has_event_handler(
        r#"<p><img src="x" onerror="alert(1)"></p>"#
    ));
    assert!(!has_event_handler(r#"<p class="x">only one</p>"#));
}

#[test]
fn a_rule_name_with_quotes_is_escaped_in_text_and_attributes() {
    for (name, html) in every_page(true) {
        if ["admins", "admin", "rules", "rules conflict"].contains(&name) {
            assert!(
                html.contains(QUOTED_ESCAPED),
                "{name}: {QUOTED_ESCAPED} missing in\n{html}"
            );
            assert!(
                !html.contains(r#""ops""#),
                "{name}: a raw quote of the rule name in\n{html}"
            );
        }
    }
    // The edit form puts the name in an attribute: the quote must not end it.
    let html = rules(&ctx(true), &rules_json(), &roles(), None).into_string();
    assert!(
        html.contains(&format!(r#"name="name" value="{QUOTED_ESCAPED}""#)),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"<option value="{SCRIPT_ESCAPED}" selected>"#)),
        "{html}"
    );
}

#[test]
fn ids_in_links_and_form_actions_are_url_encoded() {
    let html = admins(
        &ctx(true),
        &accounts(),
        &roles(),
        &AdminsQuery {
            tab: Tab::Manual,
            ..Default::default()
        },
    )
    .into_string();
    let encoded = "/admins/%3Cscript%3Ealert%281%29%3C%2Fscript%3E";
    assert!(
        html.contains(&format!(r#"<a href="{encoded}">{SCRIPT_ESCAPED}</a>"#)),
        "{html}"
    );
    assert!(html.contains(&format!(r#"action="{encoded}""#)), "{html}");
    assert!(
        html.contains(&format!(r#"action="{encoded}/remove""#)),
        "{html}"
    );
}

/// (POST forms, CSRF fields carrying the token) in `html`.
fn post_forms(html: &str) -> (usize, usize) {
    (
        html.matches(r#"method="post""#).count(),
        html.matches(&format!(
            r#"<input type="hidden" name="csrf" value="{TOKEN}">"#
        ))
        .count(),
    )
}

#[test]
fn every_post_form_carries_the_csrf_token() {
    for (name, html) in every_page(true) {
        let (forms, tokens) = post_forms(&html);
        assert_eq!(
            forms, tokens,
            "{name}: {forms} POST forms, {tokens} CSRF fields"
        );
    }
    // The forms are there for someone who may change things...
    let pages: std::collections::HashMap<_, _> = every_page(true).into_iter().collect();
    for (name, at_least) in [
        ("admins manual", 5),
        ("rules", 7),
        ("rules conflict", 7),
        ("files", 2),
        ("file", 2),
    ] {
        let (forms, _) = post_forms(&pages[name]);
        assert!(
            forms >= at_least,
            "{name}: {forms} POST forms, expected at least {at_least}"
        );
    }
    // ... and not for someone who may only look.
    for (name, html) in every_page(false) {
        assert_eq!(
            post_forms(&html),
            (0, 0),
            "{name} offers a change to a reader"
        );
    }
}

#[test]
fn the_manual_tab_offers_add_change_and_remove() {
    let html = admins(
        &ctx(true),
        &accounts(),
        &roles(),
        &AdminsQuery {
            tab: Tab::Manual,
            ..Default::default()
        },
    )
    .into_string();
    assert!(html.contains(r#"action="/admins""#));
    for field in [
        r#"name="employee_id""#,
        r#"name="email""#,
        r#"name="role""#,
        r#"name="status""#,
    ] {
        assert!(html.contains(field), "{field} missing");
    }
    assert!(
        html.contains(r#"action="/admins/M1""#) && html.contains(r#"action="/admins/M1/remove""#)
    );
    // Only manual accounts are on the tab.
    assert!(html.contains("mo@acme.example") && !html.contains("ann@acme.example"));
    // The auto tab never offers to change an account by hand.
    let auto = admins(&ctx(true), &accounts(), &roles(), &AdminsQuery::default()).into_string();
    assert_eq!(post_forms(&auto), (0, 0));
    assert!(auto.contains("ann@acme.example") && !auto.contains("mo@acme.example"));
}

#[test]
fn the_list_shows_id_email_rule_role_and_status() {
    let html = admins(&ctx(false), &accounts(), &roles(), &AdminsQuery::default()).into_string();
    for text in [
        "E1",
        "ann@acme.example",
        "IT staff",
        "IT Admin",
        "active",
        "inactive",
        r#"href="/admins/E1""#,
        r#"href="/rules#rule-1""#,
    ] {
        assert!(html.contains(text), "{text} missing in\n{html}");
    }
    assert!(html.contains(r#"aria-current="page">Auto-provisioned"#));
}

fn many(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let (role, rule) = if i % 2 == 0 {
                    ("IT Admin", (1, "IT staff"))
                } else {
                    ("HR Admin", (3, "HR"))
                };
                let status = if i % 5 == 0 { "inactive" } else { "active" };
                account(
                    &format!("E{i:05}"),
                    &format!("Person.{i}@Acme.example"),
                    role,
                    status,
                    "auto",
                    Some(rule),
                )
            })
            .chain([account(
                "M00001",
                "m@acme.example",
                "IT Admin",
                "active",
                "manual",
                None,
            )])
            .collect(),
    )
}

fn query(pairs: &[(&str, &str)]) -> AdminsQuery {
    AdminsQuery::from_pairs(pairs.iter().copied())
}

#[test]
fn select_filters_by_tab_status_role_rule_and_search() {
    let all = many(250);
    assert_eq!(select(&all, &query(&[])).total, 250);
    assert_eq!(select(&all, &query(&[("tab", "manual")])).total, 1);
    assert_eq!(select(&all, &query(&[("status", "inactive")])).total, 50);
    assert_eq!(select(&all, &query(&[("status", "Active")])).total, 200);
    assert_eq!(select(&all, &query(&[("role", "HR Admin")])).total, 125);
    assert_eq!(select(&all, &query(&[("rule", "1")])).total, 125);
    assert_eq!(
        select(&all, &query(&[("rule", "1"), ("status", "inactive")])).total,
        25
    );
    assert_eq!(select(&all, &query(&[("rule", "7")])).total, 0);
    // Search: part of an ID or an email, case-insensitively.
    let s = select(&all, &query(&[("q", "e0012")]));
    assert_eq!(s.total, 10);
    assert!(s.rows.iter().all(|r| r.employee_id.starts_with("E0012")));
    assert_eq!(select(&all, &query(&[("q", "PERSON.249@")])).total, 1);
    assert_eq!(select(&all, &query(&[("q", "nobody")])).total, 0);
    // Empty values are "any".
    assert_eq!(
        select(
            &all,
            &query(&[("status", ""), ("rule", " "), ("role", ""), ("q", "")])
        )
        .total,
        250
    );
}

#[test]
fn select_pages_by_per_page_and_clamps() {
    let all = many(250);
    let s = select(&all, &query(&[]));
    assert_eq!((s.page, s.pages, s.rows.len()), (1, 3, PER_PAGE));
    assert_eq!(s.rows[0].employee_id, "E00000");
    let s = select(&all, &query(&[("page", "3")]));
    assert_eq!((s.page, s.rows.len()), (3, 50));
    assert_eq!(s.rows[0].employee_id, "E00200");
    assert_eq!(select(&all, &query(&[("page", "99")])).page, 3);
    assert_eq!(select(&all, &query(&[("page", "x")])).page, 1);
    let none = select(&json!([]), &query(&[]));
    assert_eq!(
        (none.total, none.page, none.pages, none.rows.len()),
        (0, 1, 1, 0)
    );
    // Not an array: nothing to show, no panic.
    assert_eq!(select(&json!({"error": "x"}), &query(&[])).total, 0);
}

#[test]
fn query_reads_pairs_and_serde_alike() {
    let q = query(&[
        ("tab", "manual"),
        ("status", "active"),
        ("q", " Ann "),
        ("page", "0"),
        ("csrf", "x"),
    ]);
    assert_eq!(
        q,
        AdminsQuery {
            status: Some("active".into()),
            q: Some("Ann".into()),
            tab: Tab::Manual,
            page: 1,
            ..Default::default()
        }
    );
    let from_serde: AdminsQuery = serde_json::from_value(
        json!({"tab": "manual", "status": "active", "q": " Ann ", "page": "0", "other": "1"}),
    )
    .unwrap();
    assert_eq!(from_serde, q);
    assert_eq!(query(&[("tab", "bogus")]).tab, Tab::Auto);
    assert_eq!(query(&[("page", "2")]).page, 2);
}

#[test]
fn pager_links_keep_the_filters_encoded() {
    let all = many(250);
    let q = query(&[("status", "active"), ("q", "a&b c"), ("page", "2")]);
    let html = admins(&ctx(false), &all, &roles(), &q).into_string();
    // 200 active accounts, none matching "a&b c": one page, no pager.
    assert!(!html.contains("rel=\"next\""));
    let q = query(&[
        ("status", "active"),
        ("role", "IT Admin"),
        ("q", "@acme"),
        ("page", "1"),
    ]);
    let mut bigger = many(500);
    bigger.as_array_mut().unwrap().push(account(
        "E&1",
        "x@acme.example",
        "IT Admin",
        "active",
        "auto",
        None,
    ));
    let html = admins(&ctx(false), &bigger, &roles(), &q).into_string();
    assert!(html.contains(r#"href="/?tab=auto&amp;status=active&amp;role=IT%20Admin&amp;q=%40acme&amp;page=2" rel="next""#), "{html}");
    assert!(html.contains("Page 1 of 3"));
}

#[test]
fn filter_menus_offer_configured_roles_and_rules_present() {
    let html = admins(&ctx(false), &accounts(), &roles(), &query(&[("rule", "2")])).into_string();
    assert!(
        html.contains(r#"<option value="Super Admin">"#),
        "configured role without accounts"
    );
    assert!(
        html.contains(&format!(r#"<option value="{SCRIPT_ESCAPED}">"#)),
        "role present but not configured"
    );
    assert!(
        html.contains(&format!(
            r#"<option value="2" selected>{QUOTED_ESCAPED}</option>"#
        )),
        "{html}"
    );
}

#[test]
fn a_conflicting_rule_comes_back_with_its_conflicts_and_save_anyway() {
    let html = rules(&ctx(true), &rules_json(), &roles(), Some(&conflict_form())).into_string();
    assert!(html.contains(r#"action="/rules/2""#));
    let confirm = conflict_form().confirmation();
    assert_eq!(confirm.len(), 64 + 1 + 64);
    // The rule's version as the edit form was drawn goes back with the confirmation.
    assert!(html.contains(&format!(
        r#"<input type="hidden" name="seen" value="{SCRIPT_ESCAPED}">"#
    )));
    assert!(html.contains(&format!(
        r#"<input type="hidden" name="confirm" value="{confirm}">"#
    )));
    assert!(html.contains("Save anyway"));
    assert!(
        html.contains(&format!("conflict: rule 2 &quot;{QUOTED_ESCAPED}&quot;")),
        "{html}"
    );
    // The fields come back as typed.
    assert!(
        html.contains(&format!(
            "department = &quot;{SCRIPT_ESCAPED}&quot;</textarea>"
        )),
        "{html}"
    );
    // A refusal without conflicts: the error, and no confirmation.
    let refused = RuleForm {
        id: None,
        name: "x".into(),
        role: "Nope".into(),
        when: "a = b".into(),
        conflicts: Value::Null,
        error: Some(format!("unknown role {SCRIPT}")),
        seen: String::new(),
        enable: false,
    };
    let html = rules(&ctx(true), &rules_json(), &roles(), Some(&refused)).into_string();
    assert!(html.contains(&format!("unknown role {SCRIPT_ESCAPED}")));
    assert!(!html.contains(r#"name="confirm""#) && !html.contains("Save anyway"));
    assert!(html.contains(r#"<option value="Nope" selected>"#));
    // Conflicts without messages are described from their fields.
    let mut bare = conflict_form();
    bare.conflicts[0].as_object_mut().unwrap().remove("message");
    let html = rules(&ctx(true), &rules_json(), &roles(), Some(&bare)).into_string();
    assert!(
        html.contains("3 employees of the last applied roster match both (E1, &lt;script"),
        "{html}"
    );
    assert!(html.contains("; rule 1 wins."), "{html}");
}

/// An Enable button refused for its conflicts comes back as the question whether to enable
/// the rule anyway: the conflicts, and a form posting the button again with their
/// confirmation and the rule's version, without the fields of a rule form.
#[test]
fn an_enable_with_conflicts_asks_to_enable_anyway() {
    let form = RuleForm {
        name: String::new(),
        role: String::new(),
        when: String::new(),
        enable: true,
        ..conflict_form()
    };
    let html = rules(&ctx(true), &rules_json(), &roles(), Some(&form)).into_string();
    assert!(html.contains("Enable rule 2?"), "{html}");
    assert!(html.contains("Nothing was enabled yet."), "{html}");
    assert!(html.contains(r#"action="/rules/2/enable""#), "{html}");
    assert!(html.contains(">Enable anyway</button>"), "{html}");
    let confirm = crate::api::seen::conflicts_version(&form.conflicts);
    assert_eq!(form.confirmation(), confirm);
    assert!(
        html.contains(&format!(r#"name="confirm" value="{confirm}""#)),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"name="seen" value="{SCRIPT_ESCAPED}""#)),
        "{html}"
    );
    let returned = html.split("id=\"rule-form\"").nth(1).unwrap_or_default();
    let returned = returned.split("</section>").next().unwrap_or_default();
    assert!(!returned.contains("name=\"when\""), "{returned}");
}

#[test]
fn rules_offer_enable_for_disabled_and_disable_for_enabled() {
    let html = rules(&ctx(true), &rules_json(), &roles(), None).into_string();
    // Each rule's forms say the rule as the page shows it: edit, switch and delete.
    let r = &rules_json()[0];
    let conditions: Vec<String> = serde_json::from_value(r["conditions"].clone()).unwrap();
    let version = crate::api::seen::rule_version(
        r["name"].as_str().unwrap(),
        r["role"].as_str().unwrap(),
        &conditions,
        r["enabled"].as_bool().unwrap(),
    );
    let field = format!(r#"<input type="hidden" name="seen" value="{version}">"#);
    assert_eq!(html.matches(&field).count(), 3, "{html}");
    assert!(
        html.contains(r#"action="/rules/1/disable""#)
            && !html.contains(r#"action="/rules/1/enable""#)
    );
    assert!(
        html.contains(r#"action="/rules/2/enable""#)
            && !html.contains(r#"action="/rules/2/disable""#)
    );
    assert!(html.contains(r#"action="/rules/2/delete""#) && html.contains(r#"action="/rules""#));
    assert!(html.contains("department = IT\n") || html.contains(">department = IT</textarea>"));
}

/// A held file is decided on the list or on its own page: approving applies exactly the
/// plan the page was drawn with (its version goes with the buttons), not one re-planned
/// since.
#[test]
fn held_files_can_be_decided_others_not() {
    let html = files(&ctx(true), &files_json()).into_string();
    assert!(
        html.contains(r#"action="/files/2/approve""#)
            && html.contains(r#"action="/files/2/reject""#)
    );
    // Why it is held is the report's to say (over the limits, or a status column lost):
    // the list had given every held file the limits as its reason.
    assert!(!html.contains("safety limits"), "{html}");
    assert!(
        html.contains(r#"<a href="/files/2">read why in its report</a>"#),
        "{html}"
    );
    assert!(!html.contains(r#"action="/files/1/approve""#));
    let listed = r#"<input type="hidden" name="seen" value="plan-2">"#;
    assert_eq!(html.matches(listed).count(), 2, "{html}");
    // No plan the engine could read (its report not filed yet, or removed): no buttons,
    // which would have posted no version at all, but the file's page.
    let mut unread = files_json();
    unread[1].as_object_mut().unwrap().remove("seen");
    let html = files(&ctx(true), &unread).into_string();
    assert_eq!(post_forms(&html), (0, 0));
    assert!(
        html.contains(r#"<a class="button" href="/files/2">Review</a>"#),
        "{html}"
    );
    let held = report_json("held");
    let html = file(&ctx(true), 2, &held, "report").into_string();
    assert!(
        html.contains(r#"action="/files/2/approve""#)
            && html.contains(r#"action="/files/2/reject""#)
    );
    let counts = serde_json::from_value(held["counts"].clone()).unwrap();
    let version = crate::api::seen::held_version(&[SCRIPT.to_string()], &counts);
    let field = format!(r#"<input type="hidden" name="seen" value="{version}">"#);
    assert_eq!(html.matches(&field).count(), 2, "{html}");
    let html = file(&ctx(true), 1, &report_json("applied"), "report").into_string();
    assert_eq!(post_forms(&html), (0, 0));
    assert!(
        html.contains(r#"href="/files/1/report.json""#)
            && html.contains(r#"href="/files/1/report.txt""#)
    );
    assert!(html.contains(r#"<pre class="report">report</pre>"#));
}

#[test]
fn layout_marks_the_section_and_the_development_mode() {
    let c = ctx(false);
    let html = status(&c, &status_json()).into_string();
    assert!(
        html.contains(r#"<a href="/status" aria-current="page">Status</a>"#),
        "{html}"
    );
    assert!(html.contains(r#"<a href="/rules">Rules</a>"#));
    assert!(html.contains("lead@acme.example") && html.contains("read only"));
    assert!(!html.contains("Development mode"));
    let dev = PageCtx {
        dev_mode: true,
        ..c
    };
    assert!(
        status(&dev, &status_json())
            .into_string()
            .contains("Development mode")
    );
    let anonymous = error_page(None, 401, "who are you").into_string();
    assert!(anonymous.contains("401 Not signed in") && !anonymous.contains("<nav"));
}

#[test]
fn status_shows_mode_last_file_waiting_held_and_last_error() {
    let html = status(&ctx(false), &status_json()).into_string();
    for text in [
        "host",
        "127.0.0.1:2222",
        r#"href="/files/1""#,
        r#"href="/files/2""#,
        "Last error: </strong>",
        "1 file",
        "2 min",
    ] {
        assert!(html.contains(text), "{text} missing in\n{html}");
    }
    // An answer with nothing in it still renders.
    let html = status(&ctx(false), &json!({})).into_string();
    assert!(html.contains("none yet") && html.contains("not running"));
}
