//! Unit tests of what a change writes to the audit log: an edit with what the rule was, and
//! nothing for a change that changes nothing. On the in-memory store, with the helpers of
//! [`super::tests`].

use super::tests::{add_rule, pipeline};
use crate::store::Store;

/// An edit's audit entry says what the rule was too: a widened rule from a narrowed one.
#[test]
fn an_edit_is_audited_with_what_the_rule_was() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    let id = add_rule(&p, "IT all", "department = IT");
    let edit = Request::RulesEdit {
        id: id.0,
        name: Some("Anyone".into()),
        role: None,
        when: vec!["department != Nope".into()],
        strict: false,
        accept: None,
    };
    assert_eq!(
        super::commands::execute(&p, edit, "root", Output::Text).exit,
        exit::OK
    );
    let last = p.store.audit(None).unwrap().pop().unwrap().note;
    assert_eq!(last.action, "rules edit");
    let (now, was) = last.detail.split_once("; was ").expect("what it was");
    assert!(
        now.contains("\"Anyone\"") && now.contains("department != Nope"),
        "{now}"
    );
    assert!(
        was.contains("\"IT all\"") && was.contains("department = IT"),
        "{was}"
    );
}

/// An `admins set` entry says what the account was too: a role granted from a status changed.
#[test]
fn an_admins_set_is_audited_with_what_the_account_was() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    let run = |request| super::commands::execute(&p, request, "root", Output::Text);
    let add = Request::AdminsAdd {
        employee_id: "M1".into(),
        email: "m1@x.io".into(),
        role: "IT Admin".into(),
    };
    assert_eq!(run(add).exit, exit::OK);
    let set = Request::AdminsSet {
        id: "M1".into(),
        role: Some("Super Admin".into()),
        status: Some("inactive".into()),
    };
    let r = run(set);
    assert_eq!(r.exit, exit::OK, "{}", r.text);
    let last = p.store.audit(None).unwrap().pop().unwrap().note;
    assert_eq!(last.action, "admins set");
    assert_eq!(
        last.detail,
        "manual account M1: role Super Admin, inactive; was IT Admin, active"
    );
}

/// A change that changes nothing (a rule disabled again, a manual account given the role
/// and status it has) is answered "no change" and not audited or recorded in the account's
/// history: each had read as a change someone made.
#[test]
fn a_change_that_changes_nothing_is_not_audited() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    let id = add_rule(&p, "IT", "department = IT");
    let run = |request| super::commands::execute(&p, request, "root", Output::Text);
    let audited = || p.store.audit(None).unwrap().len();
    let disable = || Request::RulesEnable {
        id: id.0,
        enabled: false,
        strict: false,
        accept: None,
    };
    // JSON says it as `changed`, as the text says "no change".
    assert_eq!(run(disable()).json["changed"], true);
    let before = audited();
    let again = run(disable());
    assert_eq!(again.exit, exit::OK, "{}", again.text);
    assert!(again.text.starts_with("no change"), "{}", again.text);
    assert_eq!(again.json["changed"], false);
    assert_eq!(audited(), before);
    // An edit to what the rule is already (its role, its name, its conditions).
    let token = p.store.accounts_token().unwrap();
    for (name, role, when) in [
        (None, Some("IT Admin"), vec![]),
        (Some("IT"), None, vec![]),
        (None, None, vec!["department = IT".to_string()]),
    ] {
        let edit = Request::RulesEdit {
            id: id.0,
            name: name.map(str::to_string),
            role: role.map(str::to_string),
            when,
            strict: false,
            accept: None,
        };
        let again = run(edit);
        assert_eq!(again.exit, exit::OK, "{}", again.text);
        assert!(again.text.starts_with("no change"), "{}", again.text);
        assert_eq!(again.json["changed"], false);
        assert_eq!(audited(), before);
        assert_eq!(
            p.store.accounts_token().unwrap(),
            token,
            "the accounts kept"
        );
    }
    let add = Request::AdminsAdd {
        employee_id: "M1".into(),
        email: "m1@x.io".into(),
        role: "IT Admin".into(),
    };
    assert_eq!(run(add).exit, exit::OK);
    let set = || Request::AdminsSet {
        id: "M1".into(),
        role: None,
        status: Some("inactive".into()),
    };
    assert_eq!(run(set()).json["changed"], true);
    let (before, history) = (
        audited(),
        p.store.account("M1").unwrap().unwrap().history.len(),
    );
    let again = run(set());
    assert_eq!(again.exit, exit::OK, "{}", again.text);
    assert!(again.text.starts_with("no change"), "{}", again.text);
    assert_eq!(again.json["changed"], false);
    assert_eq!(audited(), before);
    assert_eq!(
        p.store.account("M1").unwrap().unwrap().history.len(),
        history
    );
}
