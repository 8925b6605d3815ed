//! Unit tests of changes from a page that showed its thing otherwise than it is now
//! ([`crate::api::seen`]): refused, nothing done; done while it is still so. On the
//! in-memory store, with the helpers of [`super::tests`].

use super::commands::execute_streamed;
use super::pipeline::Pipeline;
use super::tests::{FEW_GRANTS, add_rule, pipeline, pipeline_with, staff, submit};
use crate::api::seen::{Seen, account_version, conflicts_version, held_version, rule_version};
use crate::api::{Caller, Output, Request, Response, exit};
use crate::core::accounts::Status;
use crate::core::report::ReportStatus;
use crate::store::{MemoryStore, Store};

fn ask(p: &Pipeline<MemoryStore>, request: Request, seen: Option<Seen>) -> Response {
    let caller = Caller::Unix("root".into());
    execute_streamed(p, request, &caller, seen.as_ref(), Output::Json).into_response(Output::Json)
}

fn add_manual(p: &Pipeline<MemoryStore>) {
    let add = Request::AdminsAdd {
        employee_id: "M1".into(),
        email: "m1@x.io".into(),
        role: "IT Admin".into(),
    };
    assert_eq!(ask(p, add, None).exit, exit::OK);
}

/// A manual admin's row drawn while active, posted (to lower the role) after someone
/// suspended them: it had made them active again.
#[test]
fn a_suspended_admin_is_not_reactivated_by_a_form_drawn_before() {
    let (_dir, p) = pipeline();
    add_manual(&p);
    let drawn = account_version("m1@x.io", "IT Admin", "active");
    let suspend = Request::AdminsSet {
        id: "M1".into(),
        role: None,
        status: Some("inactive".into()),
    };
    assert_eq!(ask(&p, suspend, None).exit, exit::OK);
    let lower = Request::AdminsSet {
        id: "M1".into(),
        role: Some("Read-only Admin".into()),
        status: Some("active".into()),
    };
    let seen = Seen::Account("M1".into(), drawn.clone());
    let refused = ask(&p, lower.clone(), Some(seen));
    assert_eq!(refused.exit, exit::REFUSED, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("was changed since the page was drawn"),
        "{}",
        refused.text
    );
    let m1 = p.store.account("M1").unwrap().unwrap();
    assert_eq!(
        (m1.status, m1.role.as_str()),
        (Status::Inactive, "IT Admin")
    );
    // Nor removed from that page; from the page as it is now, done.
    let remove = Request::AdminsRemove { id: "M1".into() };
    let seen = Seen::Account("M1".into(), drawn);
    assert_eq!(ask(&p, remove, Some(seen)).exit, exit::REFUSED);
    let now = account_version("m1@x.io", "IT Admin", "inactive");
    let done = ask(&p, lower, Some(Seen::Account("M1".into(), now)));
    assert_eq!(done.exit, exit::OK, "{}", done.text);
    assert_eq!(
        p.store.account("M1").unwrap().unwrap().role,
        "Read-only Admin"
    );
}

/// A rule's edit form drawn before another admin narrowed the rule had undone the
/// narrowing; enabling, disabling and deleting from such a page are refused too.
#[test]
fn a_rule_changed_since_its_page_was_drawn_is_not_saved_over() {
    let (_dir, p) = pipeline();
    let id = add_rule(&p, "Eng", "department = Eng").0;
    let drawn = rule_version("Eng", "IT Admin", &["department = Eng".into()], true);
    let narrow = Request::RulesEdit {
        id,
        name: None,
        role: None,
        when: vec!["department = Eng".into(), "is_manager = true".into()],
        strict: false,
        accept: None,
    };
    assert_eq!(ask(&p, narrow, None).exit, exit::OK);
    let stale = Request::RulesEdit {
        id,
        name: Some("Engineering".into()),
        role: Some("IT Admin".into()),
        when: vec!["department = Eng".into()],
        strict: false,
        accept: None,
    };
    let refused = ask(&p, stale, Some(Seen::Rule(id, drawn.clone())));
    assert_eq!(refused.exit, exit::REFUSED, "{}", refused.text);
    assert_eq!(p.store.rules().unwrap()[0].conditions.len(), 2);
    for request in [
        Request::RulesEnable {
            id,
            enabled: false,
            strict: false,
            accept: None,
        },
        Request::RulesDelete { id },
    ] {
        let refused = ask(&p, request, Some(Seen::Rule(id, drawn.clone())));
        assert_eq!(refused.exit, exit::REFUSED, "{}", refused.text);
    }
    let rule = &p.store.rules().unwrap()[0];
    assert!(rule.enabled);
    let conditions: Vec<String> = rule.conditions.iter().map(|c| c.to_string()).collect();
    let now = rule_version(&rule.name, &rule.role, &conditions, rule.enabled);
    let disable = Request::RulesEnable {
        id,
        enabled: false,
        strict: false,
        accept: None,
    };
    assert_eq!(ask(&p, disable, Some(Seen::Rule(id, now))).exit, exit::OK);
    assert!(!p.store.rules().unwrap()[0].enabled);
}

/// "Save anyway" saves despite the conflicts that were shown, not others found since.
#[test]
fn save_anyway_accepts_the_conflicts_shown_and_no_others() {
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    submit(&p, "r.csv", &staff(&[("E1", "IT"), ("E2", "Sales")])).unwrap();
    let rule = |accept: Option<String>| Request::RulesAdd {
        name: "Everyone".into(),
        role: "Super Admin".into(),
        when: vec!["department != nobody".into()],
        strict: accept.is_none(),
        accept,
    };
    let shown = ask(&p, rule(None), None);
    assert_eq!(shown.exit, exit::REFUSED, "{}", shown.text);
    let accepted = conflicts_version(&shown.json["conflicts"]);
    // Another admin adds a rule that conflicts too: what was shown no longer holds.
    let mut sales = p.store.rules().unwrap().remove(0);
    sales.id = p.store.next_rule_id().unwrap();
    sales.name = "Sales".into();
    sales.role = "Billing Admin".into();
    sales.conditions = vec![crate::core::rules::Condition::parse("department = Sales").unwrap()];
    p.store
        .put_rule(&sales, super::tests::note("rules add"))
        .unwrap();
    let refused = ask(&p, rule(Some(accepted)), None);
    assert_eq!(refused.exit, exit::REFUSED, "{}", refused.text);
    assert_eq!(refused.json["conflicts"].as_array().unwrap().len(), 2);
    assert_eq!(p.store.rules().unwrap().len(), 2);
    let accepted = conflicts_version(&refused.json["conflicts"]);
    let saved = ask(&p, rule(Some(accepted)), None);
    assert_eq!(saved.exit, exit::OK, "{}", saved.text);
    assert_eq!(p.store.rules().unwrap().len(), 3);
}

/// An approval from a held file's page applies the plan it showed, not one re-planned since
/// (a rule added, then a CLI approval refused, which replaced the held report).
#[test]
fn an_approval_applies_the_plan_its_page_showed_or_nothing() {
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let held = submit(
        &p,
        "r.csv",
        &staff(&[("E1", "IT"), ("E2", "IT"), ("E3", "IT"), ("E4", "Sales")]),
    )
    .unwrap();
    assert_eq!(held.status, ReportStatus::Held);
    let counts = |r: &crate::core::report::Report| {
        serde_json::from_value(serde_json::to_value(&r.counts).unwrap()).unwrap()
    };
    let drawn = held_version(&held.held_because, &counts(&held));
    // The list gives its approve and reject the version its file's page gives.
    let listed = ask(&p, Request::FilesList {}, None);
    assert_eq!(listed.json[0]["seen"], drawn.as_str(), "{}", listed.json);
    add_rule(&p, "Sales", "department = Sales");
    let cli = ask(
        &p,
        Request::FilesDecide {
            id: 1,
            approve: true,
        },
        None,
    );
    assert_eq!(cli.exit, exit::REFUSED, "{}", cli.text);
    let approve = Request::FilesDecide {
        id: 1,
        approve: true,
    };
    let refused = ask(&p, approve.clone(), Some(Seen::Held(1, drawn)));
    assert_eq!(refused.exit, exit::REFUSED, "{}", refused.text);
    assert!(refused.text.contains("held file 1"), "{}", refused.text);
    assert!(p.store.accounts().unwrap().is_empty());
    // The page drawn again shows the new plan: approved from it, that plan is applied.
    let now: crate::core::report::Report =
        serde_json::from_slice(&p.report_bytes(1).unwrap().unwrap().0).unwrap();
    let seen = Seen::Held(1, held_version(&now.held_because, &counts(&now)));
    // Its report gone from held/: decided from no page (the list gives no version).
    let report = p
        .paths
        .folder("held")
        .join(format!("{}.report.json", now.stored_as.clone().unwrap()));
    let aside = report.with_extension("aside");
    std::fs::rename(&report, &aside).unwrap();
    assert!(
        ask(&p, Request::FilesList {}, None).json[0]
            .get("seen")
            .is_none()
    );
    assert_eq!(
        ask(&p, approve.clone(), Some(seen.clone())).exit,
        exit::REFUSED
    );
    std::fs::rename(&aside, &report).unwrap();
    let approved = ask(&p, approve, Some(seen));
    assert_eq!(approved.exit, exit::OK, "{}", approved.text);
    assert_eq!(p.store.accounts().unwrap().len(), 4);
}

/// A manual admin whose role was taken out of `provisioning.roles` is suspended with the
/// role posted as it is (the web's row form posts both): it had been refused ("not in
/// provisioning.roles"), so the account stayed active. Another unconfigured role is still
/// refused.
#[test]
fn an_admin_whose_role_was_unconfigured_can_be_suspended_with_it_posted() {
    let (_dir, mut p) = pipeline();
    add_manual(&p);
    p.cfg.provisioning.roles.retain(|r| r != "IT Admin");
    let set = |role: &str| Request::AdminsSet {
        id: "M1".into(),
        role: Some(role.into()),
        status: Some("inactive".into()),
    };
    assert_eq!(ask(&p, set("Old Role"), None).exit, exit::REFUSED);
    assert_eq!(ask(&p, set("IT Admin"), None).exit, exit::OK);
    let account = p.store.account("M1").unwrap().unwrap();
    assert_eq!(account.status, Status::Inactive);
    assert_eq!(account.role, "IT Admin");
}
