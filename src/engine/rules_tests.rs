//! Unit tests of how rules and their roles meet the config and the roster: a role taken out
//! of `provisioning.roles`, a rule's conflicts told when it is enabled, `is_manager` needing
//! its column. On the in-memory store, with the helpers of [`super::tests`].

use super::tests::{add_rule, note, pipeline, pipeline_with, staff, submit};
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
        accept: None,
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

/// Rule 1 (IT Admin for IT), rule 2 (HR Admin for IT, disabled: it would conflict), and
/// an applied roster with one IT employee.
fn with_a_disabled_conflicting_rule() -> (
    tempfile::TempDir,
    crate::engine::pipeline::Pipeline<crate::store::MemoryStore>,
    crate::core::rules::RuleId,
) {
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let other = add_rule(&p, "Also IT", "department = IT");
    let mut rule = p.store.rule(other).unwrap().unwrap();
    rule.role = "HR Admin".into();
    rule.enabled = false;
    p.store.put_rule(&rule, note("rules edit")).unwrap();
    let r = submit(&p, "first.csv", &staff(&[("E1", "IT")])).unwrap();
    assert_eq!(r.status, ReportStatus::Applied);
    (_dir, p, other)
}

/// Enabling a rule tells its conflicts, as adding or editing one does; a disabled rule's
/// conflicts say it wins nothing while disabled.
#[test]
fn enabling_a_rule_tells_its_conflicts() {
    use crate::api::{Output, Request, exit};
    let (_dir, p, other) = with_a_disabled_conflicting_rule();
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
        strict: false,
        accept: None,
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
        strict: false,
        accept: None,
    });
    let warning = enabled.json["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("manager_id"), "{}", enabled.json);
}

/// `rules enable --strict` refuses a rule that would conflict and leaves it disabled, as
/// `rules add --strict` saves nothing; the web section's "Enable anyway" enables it only
/// for the conflicts it showed.
#[test]
fn a_strict_enable_refuses_conflicts_and_an_accepted_one_only_those_shown() {
    use crate::api::seen::conflicts_version;
    use crate::api::{Output, Request, exit};
    let (_dir, p, other) = with_a_disabled_conflicting_rule();
    let run = |strict, accept| {
        let request = Request::RulesEnable {
            id: other.0,
            enabled: true,
            strict,
            accept,
        };
        super::commands::execute(&p, request, "root", Output::Json)
    };
    let enabled = || p.store.rule(other).unwrap().unwrap().enabled;
    let refused = run(true, None);
    assert_eq!(refused.exit, exit::REFUSED, "{}", refused.text);
    assert_eq!(
        refused.json["conflicts"][0]["rule_id"], 1,
        "{}",
        refused.json
    );
    assert!(!enabled(), "a refused enable leaves the rule disabled");
    let version = conflicts_version(&refused.json["conflicts"]);
    let other_conflicts = run(false, Some(format!("{version}x")));
    assert_eq!(
        other_conflicts.exit,
        exit::REFUSED,
        "{}",
        other_conflicts.text
    );
    assert!(!enabled());
    let accepted = run(false, Some(version));
    assert_eq!(accepted.exit, exit::OK, "{}", accepted.text);
    assert!(enabled());
    // Enabled already, it changes nothing: not refused.
    assert_eq!(run(true, None).exit, exit::OK);
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
        accept: None,
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
    let with = b"employee_id,email,department,Manager ID,employment_status\n\
        E1,e1@x.io,IT,,active\nE2,e2@x.io,IT,E1,active\n";
    let r = submit(&p, "third.csv", with).unwrap();
    assert_eq!(r.status, ReportStatus::Applied, "{:?}", r.errors);
    let accounts = p.store.accounts().unwrap();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0].employee_id, "E1");
}

/// SPEC §2: a rule naming a role that is not in `provisioning.roles` is refused. One
/// whose role was taken out since it was saved is not enabled or edited into use (each
/// had been saved, exit 0, said to win its conflicts, then left out at every sync), and
/// it wins no conflict of the others while it stays.
#[test]
fn a_rule_whose_role_is_no_longer_granted_is_not_enabled_edited_or_a_winner() {
    use crate::api::{Output, Request, exit};
    let (_dir, mut p) = pipeline();
    let finance = add_rule(&p, "Finance", "department = Finance");
    let mut rule = p.store.rule(finance).unwrap().unwrap();
    rule.role = "Billing Admin".into();
    p.store.put_rule(&rule, note("rules edit")).unwrap();
    let everyone = add_rule(&p, "Everyone", "department != Legal");
    let r = submit(
        &p,
        "first.csv",
        &staff(&[("E1", "Finance"), ("E2", "Sales")]),
    )
    .unwrap();
    assert_eq!(r.status, ReportStatus::Applied);
    p.cfg
        .provisioning
        .roles
        .retain(|role| role != "Billing Admin");
    let run = |request| super::commands::execute(&p, request, "root", Output::Json);
    let disabled = run(Request::RulesEnable {
        id: finance.0,
        enabled: false,
        strict: false,
        accept: None,
    });
    assert_eq!(disabled.exit, exit::OK, "disabling is always allowed");
    let enabled = run(Request::RulesEnable {
        id: finance.0,
        enabled: true,
        strict: false,
        accept: None,
    });
    assert_eq!(enabled.exit, exit::REFUSED, "{}", enabled.text);
    assert!(
        enabled.text.contains("not in provisioning.roles"),
        "{}",
        enabled.text
    );
    assert!(
        !p.store.rule(finance).unwrap().unwrap().enabled,
        "left disabled"
    );
    // Edited while disabled: allowed; given an allowed role, it may be enabled again.
    let edit = |role: Option<&str>| Request::RulesEdit {
        id: finance.0,
        name: Some("Finance staff".into()),
        role: role.map(str::to_string),
        when: Vec::new(),
        strict: false,
        accept: None,
    };
    assert_eq!(run(edit(None)).exit, exit::OK);
    let mut rule = p.store.rule(finance).unwrap().unwrap();
    rule.enabled = true;
    p.store.put_rule(&rule, note("rules enable")).unwrap();
    let refused = run(edit(None));
    assert_eq!(refused.exit, exit::REFUSED, "{}", refused.text);
    assert!(refused.text.contains("--role"), "{}", refused.text);
    // Neither the other rule's nor `rules check`'s conflicts name it the winner.
    let shown = run(Request::RulesShow { id: everyone.0 });
    assert_eq!(
        shown.json["conflicts"],
        serde_json::json!([]),
        "{}",
        shown.json
    );
    let checked = run(Request::RulesCheck {});
    let problems = checked.json["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 1, "{}", checked.json);
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("no longer in provisioning.roles")
    );
    let fixed = run(edit(Some("IT Admin")));
    assert_eq!(fixed.exit, exit::OK, "{}", fixed.text);
}

/// A rule on `is_manager` over a last roster without a manager column: its conflicts are
/// not counted (nobody would have counted as a manager), as for any column it lacks.
#[test]
fn is_manager_without_a_manager_column_is_not_counted() {
    use crate::api::{Output, Request};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let r = submit(&p, "first.csv", &staff(&[("E1", "IT"), ("E2", "IT")])).unwrap();
    assert_eq!(r.status, ReportStatus::Applied);
    let add = Request::RulesAdd {
        name: "Not managers".into(),
        role: "HR Admin".into(),
        when: vec!["is_manager = false".into()],
        strict: false,
        accept: None,
    };
    let added = super::commands::execute(&p, add, "root", Output::Text);
    assert!(
        added.text.contains(
            "matching employees not counted: rule 2 reads \"is_manager (derived from manager_id)\""
        ),
        "{}",
        added.text
    );
}

/// A new rule's conflicts name it by the id it was given, and only it: another rule's
/// name containing "rule new" is left as it is.
#[test]
fn a_new_rules_conflicts_name_it_by_its_id_and_leave_other_names_alone() {
    use crate::api::{Output, Request};
    let (_dir, p) = pipeline();
    add_rule(&p, "Onboarding rule new hires", "department = IT");
    let r = submit(&p, "first.csv", &staff(&[("E1", "IT")])).unwrap();
    assert_eq!(r.status, ReportStatus::Applied);
    let add = Request::RulesAdd {
        name: "Eng HR".into(),
        role: "HR Admin".into(),
        when: vec!["department = IT".into()],
        strict: false,
        accept: None,
    };
    let added = super::commands::execute(&p, add, "root", Output::Text);
    assert!(
        added.text.contains(
            "conflict: rule 2 \"Eng HR\" (HR Admin) and rule 1 \"Onboarding rule new hires\""
        ),
        "{}",
        added.text
    );
    assert!(added.text.contains("rule 1 wins"), "{}", added.text);
}

/// An employee ID from the roster with a quoted line break in it is said escaped in the
/// rules commands' text, as in the reports: it had printed a line of its own that read as
/// another conflict.
#[test]
fn a_roster_cannot_add_lines_to_the_rules_commands_text() {
    use crate::api::{Output, Request};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let mut csv = staff(&[("E2", "IT")]);
    csv.extend_from_slice(b"\"E1\nconflict: FAKE\",e1@x.io,IT,active\n");
    let r = submit(&p, "first.csv", &csv).unwrap();
    assert_eq!(r.status, ReportStatus::Applied, "{:?}", r.errors);
    // (A rule's name cannot hold a line break: refused since, see below.)
    let add = Request::RulesAdd {
        name: "Eng".into(),
        role: "HR Admin".into(),
        when: vec!["department = IT".into()],
        strict: false,
        accept: None,
    };
    let added = super::commands::execute(&p, add, "root", Output::Text);
    let checked = super::commands::execute(&p, Request::RulesCheck {}, "root", Output::Text);
    let shown = super::commands::execute(&p, Request::RulesShow { id: 2 }, "root", Output::Text);
    for text in [&added.text, &checked.text, &shown.text] {
        assert!(text.contains(r"E1\nconflict: FAKE"), "{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("conflict: FAKE")),
            "{text}"
        );
    }
}

/// A conflict found while the last applied roster's file cannot be read says so; it had
/// said "no roster applied yet", which `sync` beside it contradicted.
#[test]
fn a_conflict_without_the_applied_rosters_file_says_why_nothing_was_counted() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let r = submit(&p, "first.csv", &staff(&[("E1", "IT")])).unwrap();
    let filed = p.paths.folder("processed").join(r.stored_as.unwrap());
    std::fs::remove_file(&filed).unwrap();
    let add = Request::RulesAdd {
        name: "All".into(),
        role: "Super Admin".into(),
        when: vec!["department != nobody".into()],
        strict: false,
        accept: None,
    };
    let added = super::commands::execute(&p, add, "root", Output::Json);
    assert_eq!(added.exit, exit::OK, "{}", added.text);
    assert_eq!(added.json["conflicts"].as_array().unwrap().len(), 1);
    let message = &added.text;
    assert!(
        message.contains(&format!(
            "the last applied roster {} cannot be read",
            filed.display()
        )),
        "{message}"
    );
    assert!(!message.contains("no roster applied yet"), "{message}");
}

/// The last applied roster edited on disk since is not counted from, as `sync` refuses it:
/// `rules check` had counted its employees from the edited copy.
#[test]
fn an_applied_roster_edited_since_is_not_counted_from() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    add_rule(&p, "All", "department != nobody");
    let r = submit(&p, "first.csv", &staff(&[("E1", "Ops")])).unwrap();
    let filed = p.paths.folder("processed").join(r.stored_as.unwrap());
    std::fs::write(&filed, staff(&[("E1", "IT")])).unwrap();
    let checked = super::commands::execute(&p, Request::RulesCheck {}, "root", Output::Text);
    assert_eq!(checked.exit, exit::NO, "{}", checked.text);
    assert!(
        checked.text.contains("was changed on disk") && checked.text.contains("were not checked"),
        "{}",
        checked.text
    );
    assert!(!checked.text.contains("1 employees"), "{}", checked.text);
}

/// A rule whose conditions can never all hold (`department = A` and `department = B`) is
/// saved, as a rule that matches nobody today is, but with a warning naming the field, and
/// `rules check` lists it while it is enabled.
#[test]
fn a_rule_that_can_never_match_is_warned_of() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    let add = |name: &str, when: &[&str]| Request::RulesAdd {
        name: name.into(),
        role: "IT Admin".into(),
        when: when.iter().map(|w| w.to_string()).collect(),
        strict: false,
        accept: None,
    };
    let run = |request| super::commands::execute(&p, request, "root", Output::Json);
    let fine = run(add("IT", &["department = IT", "location != Paris"]));
    assert_eq!(
        fine.json["warnings"],
        serde_json::json!([]),
        "{}",
        fine.text
    );
    let never = run(add("Never", &["department = IT", "department = Finance"]));
    assert_eq!(never.exit, exit::OK, "saved: {}", never.text);
    let warning = never.json["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("\"department\" can never all hold"),
        "{}",
        never.json
    );
    assert!(
        never.text.contains("warning: its conditions on"),
        "{}",
        never.text
    );
    let managers = run(add("Both", &["is_manager = true", "is_manager = false"]));
    assert!(
        managers
            .text
            .contains("\"is_manager (derived from manager_id)\" can never"),
        "{}",
        managers.text
    );
    let checked = run(Request::RulesCheck {});
    assert_eq!(checked.exit, exit::NO, "{}", checked.text);
    assert!(
        checked
            .text
            .contains("rule 2 \"Never\": its conditions on \"department\""),
        "{}",
        checked.text
    );
    assert!(!checked.text.contains("rule 1 "), "{}", checked.text);
}

/// A rule's name holds no line break or other control character, added or edited: the web's
/// one-line field could not keep one (a save from the page renamed the rule).
#[test]
fn a_rule_name_with_a_line_break_is_refused() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    let add = |name: &str| Request::RulesAdd {
        name: name.into(),
        role: "IT Admin".into(),
        when: vec!["department = IT".into()],
        strict: false,
        accept: None,
    };
    for name in [
        "Line\nbreak",
        "Tab\there",
        "Bell\u{7}",
        "Line\u{2028}separator",
    ] {
        let refused = super::commands::execute(&p, add(name), "root", Output::Json);
        assert_eq!(refused.exit, exit::USAGE, "{name:?}: {}", refused.text);
        assert!(
            refused.text.contains("control character"),
            "{}",
            refused.text
        );
    }
    assert!(p.store.rules().unwrap().is_empty());
    let added = super::commands::execute(&p, add("IT staff"), "root", Output::Json);
    assert_eq!(added.exit, exit::OK, "{}", added.text);
    let edit = Request::RulesEdit {
        id: 1,
        name: Some("IT\r\nstaff".into()),
        role: None,
        when: Vec::new(),
        strict: false,
        accept: None,
    };
    let refused = super::commands::execute(&p, edit, "root", Output::Json);
    assert_eq!(refused.exit, exit::USAGE, "{}", refused.text);
    assert_eq!(p.store.rules().unwrap()[0].name, "IT staff");
}

/// A rule saved from its web page with nothing changed keeps what it had: a condition
/// value holding a CR (a browser posts every line break as CR LF and draws a lone CR as a
/// line break, so it came back holding LF: `!=` rules widened), and a name saved before
/// control characters were refused (a one-line field drops its line breaks: it had been
/// renamed, or, with a tab, refused). From the CLI, the same fields are what was asked.
#[test]
fn a_rule_saved_unchanged_from_its_page_keeps_its_line_breaks_and_name() {
    use crate::api::seen::{Seen, rule_version};
    use crate::api::{Caller, Output, Request, exit};
    use crate::core::rules::{Condition, RuleId};
    let (_dir, p) = pipeline();
    let add = Request::RulesAdd {
        name: "Night".into(),
        role: "IT Admin".into(),
        when: vec!["title != \"A\r\nB\"".into(), "location = \"x\ry\"".into()],
        strict: false,
        accept: None,
    };
    let added = super::commands::execute(&p, add, "root", Output::Json);
    assert_eq!(added.exit, exit::OK, "{}", added.text);
    let mut legacy = p.store.rule(RuleId(1)).unwrap().unwrap();
    legacy.name = "Line\nbreak".into();
    p.store.put_rule(&legacy, note("legacy")).unwrap();
    let stored = legacy.conditions.clone();
    let texts: Vec<String> = stored.iter().map(|c| c.to_string()).collect();
    // As the page posts it back: one-line name without its line break, every CR as LF.
    let as_posted: Vec<String> = texts
        .iter()
        .map(|c| c.replace("\r\n", "\n").replace('\r', "\n"))
        .collect();
    assert_ne!(as_posted[0], texts[0]);
    let edit = || Request::RulesEdit {
        id: 1,
        name: Some("Linebreak".into()),
        role: Some("IT Admin".into()),
        when: as_posted.clone(),
        strict: false,
        accept: None,
    };
    let drawn = rule_version(&legacy.name, &legacy.role, &texts, true);
    let page = Caller::Unix("root".into());
    let saved = super::commands::execute_streamed(
        &p,
        edit(),
        &page,
        Some(&Seen::Rule(1, drawn)),
        Output::Json,
    )
    .into_response(Output::Json);
    assert_eq!(saved.exit, exit::OK, "{}", saved.text);
    let rule = p.store.rule(RuleId(1)).unwrap().unwrap();
    assert_eq!(rule.name, "Line\nbreak");
    assert_eq!(rule.conditions, stored);
    // From the CLI the same fields are what was asked: renamed, CRs taken out.
    let saved = super::commands::execute(&p, edit(), "root", Output::Json);
    assert_eq!(saved.exit, exit::OK, "{}", saved.text);
    let rule = p.store.rule(RuleId(1)).unwrap().unwrap();
    assert_eq!(rule.name, "Linebreak");
    let asked: Vec<Condition> = as_posted
        .iter()
        .map(|c| Condition::parse(c).unwrap())
        .collect();
    assert_eq!(rule.conditions, asked);
}

/// A rule's values and a roster's cells are compared as they show: in NFC, without the
/// characters that show as nothing. `department != Sales` with a zero-width space had let
/// Sales through, and `not in (Comptabilité, Sales)` a decomposed `Comptabilité` and a
/// `Sales` with a zero-width space: each got the role the rule withholds from them.
#[test]
fn rule_values_and_cells_compare_as_they_show() {
    let (_dir, p) = pipeline();
    add_rule(&p, "Everyone but Sales", "department != Sales\u{200b}");
    let r = submit(&p, "a.csv", &staff(&[("S1", "Sales"), ("F1", "Finance")])).unwrap();
    let created: Vec<&str> = r.changes.iter().map(|c| &*c.employee_id).collect();
    assert_eq!(created, ["F1"], "{:?}", r.changes);

    let (_dir, p) = pipeline();
    add_rule(&p, "Not them", "department not in (Comptabilité, Sales)");
    let rows = [
        ("C1", "Comptabilite\u{301}"),
        ("C2", "Comptabilite\u{34f}\u{301}"),
        ("C3", "Comptabilite\u{fe00}\u{301}"),
        ("S1", "Sales\u{200b}"),
        ("S2", "\u{feff}SALES"),
        ("O1", "Ops"),
    ];
    let r = submit(&p, "a.csv", &staff(&rows)).unwrap();
    let created: Vec<&str> = r.changes.iter().map(|c| &*c.employee_id).collect();
    assert_eq!(created, ["O1"], "{:?}", r.changes);
}

/// `admins set` takes the account's own role in any letter case as its own, even once the
/// role was taken out of the config: suspending such an admin (the web's row form posts
/// the role with the status) had been refused, the account left active.
#[test]
fn an_admin_whose_role_is_gone_can_be_suspended_naming_it_in_any_case() {
    use crate::api::{Output, Request, exit};
    let (_dir, mut p) =
        pipeline_with("[provisioning]\nroles = [\"Super Admin\", \"Über Admin\"]\n");
    let add = Request::AdminsAdd {
        employee_id: "M1".into(),
        email: "m1@x.io".into(),
        role: "Über Admin".into(),
    };
    let added = super::commands::execute(&p, add, "root", Output::Text);
    assert_eq!(added.exit, exit::OK, "{}", added.text);
    let set = |status: Option<&str>| Request::AdminsSet {
        id: "M1".into(),
        role: Some("über admin".into()),
        status: status.map(str::to_string),
    };
    // Its own role in another letter case (beyond ASCII) is no change.
    let same = super::commands::execute(&p, set(None), "root", Output::Text);
    assert!(same.text.starts_with("no change"), "{}", same.text);
    p.cfg.provisioning.roles.retain(|role| role != "Über Admin");
    let r = super::commands::execute(&p, set(Some("inactive")), "root", Output::Text);
    assert_eq!(r.exit, exit::OK, "{}", r.text);
    let account = p.store.account("M1").unwrap().unwrap();
    assert!(
        !account.is_active() && account.role == "Über Admin",
        "{account:?}"
    );
}

/// Enabling a rule enabled already is no change, even when its role was taken out of the
/// config since: it had been refused as if it were being enabled now.
#[test]
fn enabling_an_enabled_rule_whose_role_is_gone_is_no_change() {
    use crate::api::{Output, Request, exit};
    let (_dir, mut p) = pipeline();
    let id = add_rule(&p, "IT", "department = IT");
    p.cfg.provisioning.roles.retain(|role| role != "IT Admin");
    let enable = Request::RulesEnable {
        id: id.0,
        enabled: true,
        strict: false,
        accept: None,
    };
    let r = super::commands::execute(&p, enable, "root", Output::Both);
    assert_eq!(r.exit, exit::OK, "{}", r.text);
    assert!(r.text.starts_with("no change"), "{}", r.text);
    // Said, as the sync leaves it out.
    assert!(r.text.contains("is left out at every sync"), "{}", r.text);
    assert!(
        r.json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not in provisioning.roles")
    );
}
