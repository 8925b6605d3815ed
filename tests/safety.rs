//! Safety limits end to end through the real binary, without a daemon (SPEC §1 zero rows,
//! §4 safety, held files, `files approve` / `files reject`, the audit log):
//!
//! * a truncated roster (10% of the rows of the roster applied before) is held, not applied,
//!   and says how many deactivations it would make; `files reject` discards it, audited;
//! * a file with a valid header and no rows is rejected, whatever the limits;
//! * a roster that would grant 1,000 new admins is held; `files approve` applies it, audited.

mod common;

use common::{Settings, TestEnv, current_user, is_filed_name, sha256_hex, testdata};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;

/// employee_id -> (role, status, rule_id) of every account.
fn accounts(env: &TestEnv) -> BTreeMap<String, (String, String, Value)> {
    env.accounts(&[])
        .into_iter()
        .map(|(id, a)| {
            (
                id,
                (
                    a["role"].as_str().unwrap().to_string(),
                    a["status"].as_str().unwrap().to_string(),
                    a["rule_id"].clone(),
                ),
            )
        })
        .collect()
}

fn active(acc: &BTreeMap<String, (String, String, Value)>) -> usize {
    acc.values().filter(|(_, s, _)| s == "active").count()
}

fn files(env: &TestEnv) -> Vec<Value> {
    env.json_ok(0, &["files", "list"])
        .as_array()
        .unwrap()
        .clone()
}

fn entry(env: &TestEnv, id: u64) -> Value {
    files(env)
        .into_iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no ledger entry {id}"))
}

/// The audit entries with this action.
fn audit(env: &TestEnv, action: &str) -> Vec<Value> {
    env.json_ok(0, &["audit"])
        .as_array()
        .expect("audit is an array")
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// Rows of `testdata/sequence/day1.csv`: (header, data lines).
fn day1_lines() -> (String, Vec<String>) {
    let text = fs::read_to_string(testdata("sequence/day1.csv")).unwrap();
    let mut lines = text.lines().map(str::to_string);
    let header = lines.next().unwrap();
    let rows: Vec<String> = lines.collect();
    assert_eq!(rows.len(), 300);
    (header, rows)
}

/// Asserts `name` sits in `folder`/ with its report pair, and returns its report.
fn filed(env: &TestEnv, folder: &str, stored_as: &str, original: &str) -> Value {
    assert!(is_filed_name(stored_as, original), "{stored_as}");
    let want: BTreeSet<String> = ["", ".report.json", ".report.txt"]
        .iter()
        .map(|e| format!("{stored_as}{e}"))
        .collect();
    let have: BTreeSet<String> = env.files_in(folder).into_iter().collect();
    assert!(
        have.is_superset(&want),
        "{folder}/ {have:?} lacks some of {want:?}"
    );
    env.report_file(folder, stored_as)
}

/// Rules loaded, day1 held by max_grants (82 > 50 with no account yet), then approved.
fn day1_approved() -> TestEnv {
    let env = TestEnv::new();
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let (code, report) = env.process(&day1, &[]);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["status"], "held");
    assert_eq!(
        report["held_because"],
        serde_json::json!([
            "82 grants exceed safety.max_grants (more than 50 and more than 20% of 0 active auto accounts)"
        ])
    );
    assert!(accounts(&env).is_empty(), "a held file applies nothing");
    let id = files(&env)[0]["id"].as_u64().unwrap();
    let report = env.json_ok(0, &["files", "approve", &id.to_string()]);
    assert_eq!(report["status"], "applied", "{report:#}");
    assert_eq!(report["counts"]["created"], 82);
    assert_eq!(active(&accounts(&env)), 82);
    env
}

#[test]
fn a_truncated_roster_is_held_not_applied_and_reject_is_audited() {
    let env = day1_approved();
    let before = accounts(&env);
    let (header, rows) = day1_lines();
    // 10% of the rows: E00001..E00030.
    let kept: Vec<String> = rows[..30].to_vec();
    let kept_ids: BTreeSet<String> = kept
        .iter()
        .map(|r| r.split(',').next().unwrap().to_string())
        .collect();
    let mut text = header + "\n";
    for r in &kept {
        text.push_str(r);
        text.push('\n');
    }
    let input = env.input("truncated.csv", text.as_bytes());
    let (code, report) = env.process(&input, &[]);
    assert_eq!(code, 3, "a truncated roster is held:\n{report:#}");
    assert_eq!(report["status"], "held");
    assert_eq!(report["rows"], 30);

    // The deactivations it would make: at least every account whose row is gone.
    let d = report["counts"]["deactivated"].as_u64().unwrap();
    let gone: BTreeSet<&String> = before.keys().filter(|id| !kept_ids.contains(*id)).collect();
    let deactivated: BTreeSet<String> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "deactivated")
        .map(|c| c["employee_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deactivated.len() as u64, d);
    for id in &gone {
        assert!(
            deactivated.contains(*id),
            "{id} has no row any more: {report:#}"
        );
    }
    assert!(deactivated.iter().all(|id| before.contains_key(id)));
    assert!(
        d >= 74,
        "{d} deactivations for 82 accounts of which {} are gone",
        gone.len()
    );
    assert_eq!(
        report["held_because"],
        serde_json::json!([format!(
            "{d} deactivations exceed safety.max_deactivations (more than 10 and more than 20% of 82 active auto accounts)"
        )]),
        "{report:#}"
    );
    // Nothing applied; the file waits in held/ with its report.
    assert_eq!(accounts(&env), before, "a held file changes no account");
    let list = files(&env);
    assert_eq!(list.len(), 2);
    let held = &list[1];
    assert_eq!(held["status"], "held");
    let id = held["id"].as_u64().unwrap();
    let stored_as = held["stored_as"].as_str().unwrap().to_string();
    let r = filed(&env, "held", &stored_as, "truncated.csv");
    assert_eq!(r["status"], "held");
    assert_eq!(r["held_because"], report["held_because"]);
    assert_eq!(r["sha256"], sha256_hex(text.as_bytes()));
    assert!(
        env.report_text("held", &stored_as)
            .contains("deactivations exceed")
    );
    let st = env.json_ok(0, &["status"]);
    assert_eq!(st["held"][0]["id"], id, "{st:#}");

    // A held file blocks later files: `process` refuses at once and files nothing.
    let day3 = env.input_from("sequence/day3.csv", "day3.csv");
    let out = env.expect(3, &["process", day3.to_str().unwrap()]);
    assert!(out.contains(&format!("files approve {id}")), "{out}");
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    assert_eq!(files(&env).len(), 2);

    // Reject: nothing changes, the file moves to rejected/, the decision is in the report
    // and in the audit log with the user.
    let report = env.json_ok(0, &["files", "reject", &id.to_string()]);
    assert_eq!(report["status"], "rejected", "{report:#}");
    assert_eq!(report["decision"]["decision"], "rejected");
    assert_eq!(report["decision"]["by"], current_user());
    assert_eq!(accounts(&env), before, "a rejected file changes no account");
    assert_eq!(entry(&env, id)["status"], "rejected");
    assert!(
        env.files_in("held").is_empty(),
        "{:?}",
        env.files_in("held")
    );
    let r = filed(&env, "rejected", &stored_as, "truncated.csv");
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["decision"]["by"], current_user());
    assert!(env.report_text("rejected", &stored_as).contains("REJECTED"));
    let rejects = audit(&env, "files reject");
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(rejects[0]["user"], current_user());
    let detail = rejects[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("file {id}")) && detail.contains(&stored_as),
        "{detail}"
    );
    let approves = audit(&env, "files approve");
    assert_eq!(approves.len(), 1, "day1's approval: {approves:#?}");
    assert_eq!(approves[0]["user"], current_user());
    assert!(approves[0]["detail"].as_str().unwrap().contains("file 1"));

    // Deciding again is refused; later files flow again.
    let out = env.expect(3, &["files", "approve", &id.to_string()]);
    assert!(out.contains("not held"), "{out}");
    let (code, report) = env.process(&day3, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["counts"]["deactivated"], 2);
}

#[test]
fn a_header_only_file_is_rejected_and_changes_nothing() {
    // Limits raised so high that only the zero-rows check can stop it.
    let env = TestEnv::with(Settings {
        max_grants: Some((1_000_000, 100)),
        max_deactivations: Some((1_000_000, 100)),
        ..Settings::default()
    });
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    assert_eq!(env.process(&day1, &[]).0, 0);
    let before = accounts(&env);
    assert_eq!(active(&before), 82);
    let (header, _) = day1_lines();
    for (name, bytes) in [
        ("header-only.csv", format!("{header}\n")),
        ("header-only-crlf.csv", format!("{header}\r\n\r\n")),
        ("header-no-newline.csv", header.clone()),
    ] {
        let input = env.input(name, bytes.as_bytes());
        let (code, report) = env.process(&input, &[]);
        assert_eq!(code, 1, "{name}: {report:#}");
        assert_eq!(report["status"], "rejected");
        assert_eq!(report["rows"], 0);
        let errors = report["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{name}: {report:#}");
        assert_eq!(
            errors[0]["line"],
            Value::Null,
            "a whole-file error names no line"
        );
        assert_eq!(errors[0]["column"], Value::Null);
        assert_eq!(
            errors[0]["message"],
            "the file has a header but no data rows; a roster must list every employee"
        );
        assert_eq!(report["counts"]["deactivated"], 0);
        assert!(report["changes"].as_array().unwrap().is_empty());
        assert_eq!(accounts(&env), before, "{name} changed accounts");
        let stored_as = report["stored_as"].as_str().unwrap();
        let r = filed(&env, "rejected", stored_as, name);
        assert_eq!(r["status"], "rejected");
    }
    let list = files(&env);
    assert_eq!(
        list.iter()
            .map(|f| f["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["applied", "rejected", "rejected", "rejected"]
    );
}

#[test]
fn a_roster_granting_1000_new_admins_is_held_and_approve_applies_it_audited() {
    let env = day1_approved();
    let before = accounts(&env);
    let (header, rows) = day1_lines();
    let mut text = header + "\n";
    for r in &rows {
        text.push_str(r);
        text.push('\n');
    }
    // 1,000 IT individual contributors reporting to the IT manager E00057: rule 2 "IT staff".
    for n in 0..1000 {
        text.push_str(&format!(
            "E{:05},New,Admin{n},new.admin{n}@acme.example,IT,IT Support Specialist,Berlin,E00057,Active,CC-5100\n",
            10_001 + n
        ));
    }
    let input = env.input("hires.csv", text.as_bytes());
    let (code, report) = env.process(&input, &[]);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["status"], "held");
    assert_eq!(report["rows"], 1300);
    assert_eq!(report["counts"]["created"], 1000);
    assert_eq!(report["counts"]["deactivated"], 0);
    assert_eq!(report["counts"]["unchanged"], 82);
    assert_eq!(
        report["held_because"],
        serde_json::json!([
            "1000 grants exceed safety.max_grants (more than 50 and more than 20% of 82 active auto accounts)"
        ])
    );
    let created: Vec<&Value> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "created")
        .collect();
    assert_eq!(created.len(), 1000);
    assert!(
        created
            .iter()
            .all(|c| c["role"] == "IT Admin" && c["rule_id"] == 2)
    );
    assert_eq!(accounts(&env), before, "nothing applied while held");
    let list = files(&env);
    let id = list[1]["id"].as_u64().unwrap();
    let stored_as = list[1]["stored_as"].as_str().unwrap().to_string();
    assert_eq!(list[1]["status"], "held");
    filed(&env, "held", &stored_as, "hires.csv");

    // Approve: re-planned against the current state without the limits, applied.
    let report = env.json_ok(0, &["files", "approve", &id.to_string()]);
    assert_eq!(report["status"], "applied", "{report:#}");
    assert_eq!(report["counts"]["created"], 1000);
    assert_eq!(report["decision"]["decision"], "approved");
    assert_eq!(report["decision"]["by"], current_user());
    let after = accounts(&env);
    assert_eq!(after.len(), 1082);
    assert_eq!(active(&after), 1082);
    for n in [0u64, 499, 999] {
        let id = format!("E{:05}", 10_001 + n);
        assert_eq!(
            after[&id],
            ("IT Admin".to_string(), "active".to_string(), Value::from(2))
        );
    }
    for (id, a) in &before {
        assert_eq!(&after[id], a, "{id} unchanged by the approval");
    }
    assert_eq!(entry(&env, id)["status"], "applied");
    assert!(env.files_in("held").is_empty());
    let r = filed(&env, "processed", &stored_as, "hires.csv");
    assert_eq!(r["status"], "applied");
    assert_eq!(r["decision"]["decision"], "approved");
    let approves = audit(&env, "files approve");
    assert_eq!(approves.len(), 2, "day1 and hires.csv: {approves:#?}");
    let last = &approves[1];
    assert_eq!(last["user"], current_user());
    let detail = last["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("file {id}")) && detail.contains("created 1000"),
        "{detail}"
    );
    let (code, out, _) = env.run(&["auth", "check", "new.admin500@acme.example"]);
    assert_eq!((code, out.trim()), (0, "IT Admin"));
}

/// Issue 10 point 7: `files approve` applies exactly what the held report showed. A rule
/// added (or edited) between hold and approval makes the approval apply nothing, replace the
/// held report with the new plan and exit 3 saying what changed; approving again applies
/// the plan now shown.
#[test]
fn approve_applies_what_was_shown_and_refuses_a_changed_plan() {
    for change in ["add", "edit"] {
        let env = TestEnv::new();
        env.load_sample_rules();
        let day1 = env.input_from("sequence/day1.csv", "day1.csv");
        let (code, held) = env.process(&day1, &[]);
        assert_eq!(
            (code, held["status"].as_str()),
            (3, Some("held")),
            "{held:#}"
        );
        assert_eq!(held["counts"]["created"], 82);
        let stored = held["stored_as"].as_str().unwrap().to_string();
        let id = files(&env)[0]["id"].as_u64().unwrap().to_string();
        match change {
            // A broad rule: everyone not yet matched becomes Super Admin.
            "add" => env.json_ok(
                0,
                &[
                    "rules",
                    "add",
                    "--name",
                    "Everyone",
                    "--role",
                    "Super Admin",
                    "--when",
                    "department != nobody",
                ],
            ),
            // IT staff become Super Admins instead of IT Admins.
            _ => env.json_ok(0, &["rules", "edit", "2", "--role", "Super Admin"]),
        };
        let (code, out, err) = env.run(&["files", "approve", &id]);
        assert_eq!(code, 3, "{change}: {out}{err}");
        let said = format!("{out}{err}");
        assert!(
            said.contains("nothing was applied") && said.contains("changed"),
            "{said}"
        );
        assert!(
            accounts(&env).is_empty(),
            "{change}: a refused approval applies nothing"
        );
        assert_eq!(entry(&env, 1)["status"], "held");
        // The held report now shows the new plan, which differs from the one first shown.
        let shown = env.report_file("held", &stored);
        assert_eq!(shown["status"], "held");
        assert_ne!(shown["changes"], held["changes"], "{change}");
        let refusals = audit(&env, "files approve refused");
        assert_eq!(refusals.len(), 1, "{refusals:#?}");
        assert!(audit(&env, "files approve").is_empty());
        assert!(refusals[0]["detail"].as_str().unwrap().contains("refused"));
        // Approving again applies exactly the plan now shown.
        let applied = env.json_ok(0, &["files", "approve", &id]);
        assert_eq!(applied["status"], "applied", "{applied:#}");
        assert_eq!(applied["changes"], shown["changes"]);
        assert_eq!(applied["counts"], shown["counts"]);
        let created = shown["counts"]["created"].as_u64().unwrap() as usize;
        assert_eq!(active(&accounts(&env)), created);
        let roles: Vec<String> = accounts(&env)
            .into_values()
            .map(|(role, _, _)| role)
            .collect();
        let supers = roles.iter().filter(|r| *r == "Super Admin").count();
        assert!(
            supers > 0,
            "{change}: the new plan's Super Admins were applied"
        );
    }
}

/// `path` without its `Employment Status` column, as an edited export might come (and
/// without the rows of leavers with no email, which would then be errors).
fn without_status(env: &TestEnv, path: &std::path::Path, name: &str) -> std::path::PathBuf {
    status_edited(env, path, name, true)
}

/// [`without_status`], the column kept (`drop` false) with every cell blank.
fn status_edited(
    env: &TestEnv,
    path: &std::path::Path,
    name: &str,
    drop: bool,
) -> std::path::PathBuf {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap();
    let out = env.root().join(name);
    let mut writer = csv::Writer::from_path(&out).unwrap();
    let mut status = None;
    for record in reader.records() {
        let record = record.unwrap();
        let (at, email) = *status.get_or_insert_with(|| {
            let at = |name: &str| record.iter().position(|h| h == name).expect(name);
            (at("Employment Status"), at("Work Email"))
        });
        if record[email].is_empty() {
            continue;
        }
        let header = status.is_some_and(|_| record.iter().any(|h| h == "Employment Status"));
        let kept: Vec<&str> = (record.iter().enumerate())
            .filter(|(i, _)| *i != at || !drop)
            .map(|(i, v)| if i == at && !header { "" } else { v })
            .collect();
        writer.write_record(kept).unwrap();
    }
    writer.flush().unwrap();
    out
}

/// A roster without the status column that the last applied one had is held, whatever the
/// limits: every leaver would count as active (their accounts kept or made active again).
/// Approved, it is applied; after it, a file without the column is taken as it is.
#[test]
fn a_roster_that_lost_its_status_column_is_held_until_approved() {
    let mut env = day1_approved();
    env.reconfigure(|s| s.max_grants = Some((1000, 100)));
    let day3 = env.input_from("sequence/day3.csv", "day3.csv");
    let lost = without_status(&env, &day3, "lost.csv");
    let (code, report) = env.process(&lost, &[]);
    assert_eq!(code, 3, "{report:#}");
    let why = report["held_because"].as_array().unwrap();
    assert_eq!(why.len(), 1, "{report:#}");
    let why = why[0].as_str().unwrap();
    assert!(
        why.contains("no employment status column") && why.contains("day1.csv"),
        "{why}"
    );
    let id = files(&env).last().unwrap()["id"].as_u64().unwrap();
    let approved = env.json_ok(0, &["files", "approve", &id.to_string()]);
    assert_eq!(approved["status"], "applied", "{approved:#}");
    let again = without_status(&env, &day3, "again.csv");
    let (code, report) = env.process(&again, &[]);
    assert_eq!(code, 0, "{report:#}");
    // With the column back, nothing is held either.
    let (code, report) = env.process(&day3, &[]);
    assert_eq!(code, 0, "{report:#}");
}

/// The last applied roster pruned from processed/: a roster without the status column is
/// held all the same, saying why (it had been applied, nothing telling it apart).
#[test]
fn a_roster_without_its_status_column_is_held_when_the_last_one_cannot_be_read() {
    let mut env = day1_approved();
    env.reconfigure(|s| s.max_grants = Some((1000, 100)));
    let day1 = files(&env)[0]["stored_as"].as_str().unwrap().to_string();
    fs::remove_file(env.drop_dir("processed").join(&day1)).unwrap();
    let day3 = env.input_from("sequence/day3.csv", "day3.csv");
    let lost = without_status(&env, &day3, "lost.csv");
    let (code, report) = env.process(&lost, &[]);
    assert_eq!(code, 3, "{report:#}");
    let why = report["held_because"][0].as_str().unwrap();
    assert!(why.contains("cannot be read to tell"), "{why}");
}

/// A status column blank in every row, after a roster whose statuses were filled in, is
/// held as a lost one is (every leaver active). Approved, the next such file is taken: that
/// is how the HR system sends it now.
#[test]
fn a_roster_whose_status_column_went_blank_is_held_until_approved() {
    let mut env = day1_approved();
    env.reconfigure(|s| s.max_grants = Some((1000, 100)));
    let day3 = env.input_from("sequence/day3.csv", "day3.csv");
    let blank = status_edited(&env, &day3, "blank.csv", false);
    let (code, report) = env.process(&blank, &[]);
    assert_eq!(code, 3, "{report:#}");
    let why = report["held_because"][0].as_str().unwrap();
    assert!(why.contains("blank in every row"), "{why}");
    let id = files(&env).last().unwrap()["id"].as_u64().unwrap();
    let approved = env.json_ok(0, &["files", "approve", &id.to_string()]);
    assert_eq!(approved["status"], "applied", "{approved:#}");
    let again = status_edited(&env, &day3, "again.csv", false);
    let (code, report) = env.process(&again, &[]);
    assert_eq!(code, 0, "{report:#}");
}

/// A roster re-synced from its changes (the last one left its record) whose status column
/// went blank is held as one read in full is: it had been applied, a dry run of the same
/// bytes held.
#[test]
fn a_blank_status_column_is_held_when_re_synced_from_changes_too() {
    let mut env = day1_approved();
    env.reconfigure(|s| s.max_grants = Some((1000, 100)));
    let day1 = env.input_from("sequence/day1.csv", "day1-again.csv");
    let (code, report) = env.process(&day1, &[]);
    assert_eq!(code, 0, "{report:#}");
    let blank = status_edited(&env, &day1, "blank.csv", false);
    let (code, report) = env.process(&blank, &[]);
    assert_eq!(code, 3, "{report:#}");
    let why = report["held_because"][0].as_str().unwrap();
    assert!(why.contains("blank in every row"), "{why}");
}
