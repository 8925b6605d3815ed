//! Unit tests of how rules and their roles meet the config and the roster: a role taken out
//! of `provisioning.roles`, a rule's conflicts told when it is enabled, `is_manager` needing
//! its column. On the in-memory store, with the helpers of [`super::tests`].

use super::tests::{add_rule, note, pipeline, staff, submit};
use crate::core::report::ReportStatus;
use crate::store::Store;

/// A role taken out of `provisioning.roles` after a rule granting it was saved: the rule is
/// left out as if disabled (it grants its role to nobody, its accounts are deactivated
/// when no other rule matches), the file says so, and the other rules go on applying.
#[test]
fn a_rule_whose_role_was_taken_out_of_the_config_is_left_out() {
    let (_dir, mut p) = pipeline();
    let id = add_rule(&p, "IT", "department = IT");
    let mut rule = p.store.rules().unwrap().remove(0);
    rule.role = "Super Admin".into();
    p.store.put_rule(&rule, note("rules edit")).unwrap();
    add_rule(&p, "Sales", "department = Sales");
    let r = submit(&p, "first.csv", &staff(&[("E1", "IT"), ("E3", "Sales")])).unwrap();
    assert_eq!(r.status, ReportStatus::Applied);
    p.cfg
        .provisioning
        .roles
        .retain(|role| role != "Super Admin");
    // Denied at once, before any file: the config no longer grants the role.
    let check = |email: &str| {
        let request = crate::api::Request::AuthCheck {
            email: email.into(),
        };
        super::commands::execute(&p, request, "root", crate::api::Output::Json)
    };
    let denied = check("e1@x.io");
    assert_eq!(denied.exit, crate::api::exit::NO, "{}", denied.text);
    assert_eq!(denied.json["allowed"], false);
    assert_eq!(check("e3@x.io").json["allowed"], true);
    // Nor may its holder change anything in the web section (its role was Super Admin,
    // which web.org_admin_roles still names).
    let change = crate::api::Request::RulesAdd {
        name: "by e1".into(),
        role: "IT Admin".into(),
        when: vec!["department = Ops".into()],
        strict: false,
    };
    let person = crate::api::Caller::Person("e1@x.io".into());
    let refused = super::commands::execute_as(&p, change, &person, crate::api::Output::Json);
    assert_eq!(refused.exit, crate::api::exit::REFUSED, "{}", refused.text);
    let rows = [("E1", "IT"), ("E2", "IT"), ("E3", "Sales"), ("E4", "Sales")];
    let r = submit(&p, "second.csv", &staff(&rows)).unwrap();
    assert_eq!(r.status, ReportStatus::Applied, "{:?}", r.errors);
    assert_eq!((r.counts.created, r.counts.deactivated), (1, 1), "{r:?}");
    let warning = &r.warnings[0];
    assert_eq!((warning.line, warning.column.as_deref()), (None, None));
    assert!(
        warning.message.contains(&format!(
            "rule {id} \"IT\" grants role \"Super Admin\", which is not in provisioning.roles"
        )),
        "{}",
        warning.message
    );
    let active: Vec<String> = p
        .store
        .accounts()
        .unwrap()
        .into_iter()
        .filter(|a| a.is_active())
        .map(|a| format!("{} {}", a.employee_id, a.role))
        .collect();
    assert_eq!(
        active,
        ["E3 IT Admin", "E4 IT Admin"],
        "nobody holds Super Admin"
    );
}

/// Enabling a rule tells its conflicts, as adding or editing one does; a disabled rule's
/// conflicts say it wins nothing while disabled.
#[test]
fn enabling_a_rule_tells_its_conflicts() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let other = add_rule(&p, "Also IT", "department = IT");
    let mut rule = p.store.rule(other).unwrap().unwrap();
    rule.role = "HR Admin".into();
    rule.enabled = false;
    p.store.put_rule(&rule, note("rules edit")).unwrap();
    let r = submit(&p, "first.csv", &staff(&[("E1", "IT")])).unwrap();
    assert_eq!(r.status, ReportStatus::Applied);
    let run = |request| super::commands::execute(&p, request, "root", Output::Json);
    let shown = run(Request::RulesShow { id: other.0 });
    let message = shown.json["conflicts"][0]["winner"].clone();
    assert_eq!(message, 1, "{}", shown.json);
    let text =
        super::commands::execute(&p, Request::RulesShow { id: other.0 }, "root", Output::Text).text;
    assert!(
        text.contains("is disabled; enabled, rule 1 would win"),
        "{text}"
    );
    let enabled = run(Request::RulesEnable {
        id: other.0,
        enabled: true,
    });
    assert_eq!(enabled.exit, exit::OK, "{}", enabled.text);
    assert_eq!(
        enabled.json["conflicts"][0]["rule_id"], 1,
        "{}",
        enabled.json
    );
    // And the fields it reads that the last roster lacks, as adding it would.
    let managers = add_rule(&p, "Managers", "is_manager = true");
    let mut rule = p.store.rule(managers).unwrap().unwrap();
    rule.enabled = false;
    p.store.put_rule(&rule, note("rules disable")).unwrap();
    let enabled = run(Request::RulesEnable {
        id: managers.0,
        enabled: true,
    });
    let warning = enabled.json["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("manager_id"), "{}", enabled.json);
}

/// `is_manager` is derived from `manager_id`: a rule on it warns when the last applied
/// roster has no manager column, and a file without one is rejected naming it (not read
/// as "nobody is a manager", which took managers' accounts away).
#[test]
fn a_rule_on_is_manager_needs_a_manager_id_column() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    let r = submit(&p, "first.csv", &staff(&[("E1", "IT"), ("E2", "IT")])).unwrap();
    assert_eq!(r.status, ReportStatus::Applied);
    let add = Request::RulesAdd {
        name: "IT managers".into(),
        role: "IT Admin".into(),
        when: vec!["department = IT".into(), "is_manager = true".into()],
        strict: false,
    };
    let added = super::commands::execute(&p, add, "root", Output::Json);
    assert_eq!(added.exit, exit::OK, "{}", added.text);
    assert_eq!(
        added.json["warnings"],
        serde_json::json!([
            "the last applied roster has no column for \"is_manager (derived from manager_id)\"; \
             while this rule is enabled, files without it are rejected"
        ]),
        "{}",
        added.json
    );
    let r = submit(
        &p,
        "second.csv",
        &staff(&[("E1", "IT"), ("E2", "IT"), ("E3", "IT")]),
    )
    .unwrap();
    assert_eq!(r.status, ReportStatus::Rejected);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(r.errors[0].line, Some(1));
    assert_eq!(r.errors[0].column.as_deref(), Some("manager_id"));
    // With the column, the manager gets the role.
    let with = b"employee_id,email,department,Manager ID\nE1,e1@x.io,IT,\nE2,e2@x.io,IT,E1\n";
    let r = submit(&p, "third.csv", with).unwrap();
    assert_eq!(r.status, ReportStatus::Applied, "{:?}", r.errors);
    let accounts = p.store.accounts().unwrap();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0].employee_id, "E1");
}
