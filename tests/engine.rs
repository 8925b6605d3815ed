//! End-to-end tests of the provisioning engine through the real binary, without a daemon:
//! `process`, `files`, `rules`, `admins`, `sync`, `auth check`, `audit` (SPEC §1–4, 6, 7).

mod common;

use common::{
    Settings, TestEnv, compact, current_user, is_filed_name, is_rfc3339_utc, sha256_hex, strs,
    testdata,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;

// ---- helpers ---------------------------------------------------------------------------

/// `counts` in SPEC §4 order: created, reassigned, reactivated, role_changed, deactivated,
/// skipped_manual, unchanged.
fn assert_counts(report: &Value, want: [u64; 7]) {
    let keys = [
        "created",
        "reassigned",
        "reactivated",
        "role_changed",
        "deactivated",
        "skipped_manual",
        "unchanged",
    ];
    let got: Vec<Value> = keys.iter().map(|k| report["counts"][*k].clone()).collect();
    let want: Vec<Value> = want.iter().map(|n| json!(n)).collect();
    assert_eq!(got, want, "counts {keys:?} of report:\n{report:#}");
}

/// The change of one employee in a report.
fn change<'a>(report: &'a Value, employee_id: &str) -> &'a Value {
    let found: Vec<&Value> = report["changes"]
        .as_array()
        .expect("changes is an array")
        .iter()
        .filter(|c| c["employee_id"] == employee_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{employee_id} should appear once in changes:\n{report:#}"
    );
    found[0]
}

/// A full change entry as SPEC §6 lists its fields.
#[allow(clippy::too_many_arguments)]
fn assert_change(
    c: &Value,
    employee_id: &str,
    email: &str,
    action: &str,
    rule_id: Option<u64>,
    rule: Option<&str>,
    role: &str,
    previous_role: Option<&str>,
    previous_status: Option<&str>,
) {
    let want = json!({
        "employee_id": employee_id, "email": email, "action": action, "rule_id": rule_id,
        "rule": rule, "role": role, "previous_role": previous_role,
        "previous_status": previous_status,
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&c[k], v, "field {k} of change {c:#}");
    }
}

/// Checks the SPEC §6 fields every report has, for a file with `bytes` named `file`.
fn assert_report_header(r: &Value, file: &str, bytes: &[u8], status: &str, rows: u64) {
    assert_eq!(r["file"], file, "{r:#}");
    assert_eq!(r["sha256"], sha256_hex(bytes), "{r:#}");
    assert_eq!(r["status"], status, "{r:#}");
    assert_eq!(r["rows"], rows, "{r:#}");
    for key in ["received_at", "processed_at"] {
        let t = r[key].as_str().unwrap_or_else(|| panic!("{key}: {r:#}"));
        assert!(is_rfc3339_utc(t), "{key} = {t:?} is not RFC 3339 UTC");
    }
    assert!(
        r["received_at"].as_str() <= r["processed_at"].as_str(),
        "received after processed: {r:#}"
    );
    for key in ["changes", "errors", "warnings"] {
        assert!(r[key].is_array(), "{key} is not an array: {r:#}");
    }
    assert!(r["counts"].is_object(), "{r:#}");
}

/// The one name in `folder` filed for `original`, asserting its two reports sit beside it.
fn filed(env: &TestEnv, folder: &str, original: &str) -> String {
    let names = env.files_in(folder);
    let files: Vec<&String> = names
        .iter()
        .filter(|n| is_filed_name(n, original))
        .collect();
    assert_eq!(
        files.len(),
        1,
        "exactly one filed {original} in {folder}/: {names:?}"
    );
    let name = files[0].clone();
    for ext in ["report.json", "report.txt"] {
        assert!(
            names.contains(&format!("{name}.{ext}")),
            "{folder}/{name}.{ext} missing: {names:?}"
        );
    }
    name
}

/// The filed name's timestamp lies between the report's received_at and processed_at.
fn assert_name_time(name: &str, report: &Value) {
    let ts = &name[..16];
    let lo = compact(report["received_at"].as_str().unwrap());
    let hi = compact(report["processed_at"].as_str().unwrap());
    assert!(
        lo.as_str() <= ts && ts <= hi.as_str(),
        "{name}: time stamp not between {lo} and {hi}"
    );
}

/// How many accounts per value of `key`, for accounts with `status`.
fn tally(accounts: &BTreeMap<String, Value>, status: &str, key: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in accounts.values().filter(|a| a["status"] == status) {
        *out.entry(a[key].to_string().trim_matches('"').to_string())
            .or_default() += 1;
    }
    out
}

fn counts_of(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Whatever the store shows: accounts and rules.
fn snapshot(env: &TestEnv) -> (Value, Value) {
    (
        env.json_ok(0, &["admins", "list"]),
        env.json_ok(0, &["rules", "list"]),
    )
}

/// A store with the sample rules and day1 applied directly (limits raised).
fn day1_applied(settings: Settings) -> TestEnv {
    let env = TestEnv::with(Settings {
        max_grants: Some((1000, 100)),
        ..settings
    });
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let (code, r) = env.process(&day1, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "applied");
    assert_counts(&r, [82, 0, 0, 0, 0, 0, 0]);
    env
}

/// `auth check EMAIL`: (exit code, stdout).
fn auth(env: &TestEnv, email: &str) -> (i32, String) {
    let (code, out, _) = env.run(&["auth", "check", email]);
    (code, out)
}

// ---- 1. joiner / mover / leaver ---------------------------------------------------------

#[test]
fn joiner_mover_leaver_sequence_with_a_held_first_import() {
    let env = TestEnv::new();
    let rules = env.load_sample_rules();
    assert_eq!(rules.len(), 8);
    let listed = env.json_ok(0, &["rules", "list"]);
    assert_eq!(
        strs(&listed, "name"),
        rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    );

    // day1: 82 grants > 50 with N = 0 -> held.
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let day1_bytes = fs::read(&day1).unwrap();
    let (code, held) = env.process(&day1, &[]);
    assert_eq!(code, 3, "a held file exits 3: {held:#}");
    assert_report_header(&held, "day1.csv", &day1_bytes, "held", 300);
    assert_counts(&held, [82, 0, 0, 0, 0, 0, 0]);
    assert_eq!(held["changes"].as_array().unwrap().len(), 82);
    assert!(
        held["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "created")
    );
    assert_eq!(held["errors"], json!([]));
    assert_eq!(held["warnings"], json!([]));
    assert_change(
        change(&held, "E00228"),
        "E00228",
        "jose.fischer@acme.example",
        "created",
        Some(6),
        Some("Engineering managers"),
        "IT Admin",
        None,
        None,
    );
    let held_name = filed(&env, "held", "day1.csv");
    assert_name_time(&held_name, &held);
    assert_eq!(env.files_in("held").len(), 3, "{:?}", env.files_in("held"));
    assert_eq!(env.report_file("held", &held_name), held);
    let txt = env.report_text("held", &held_name);
    assert!(
        txt.contains("day1.csv") && txt.to_lowercase().contains("held"),
        "{txt}"
    );
    assert!(
        txt.contains("E00228") && txt.contains("jose.fischer@acme.example"),
        "{txt}"
    );
    assert_eq!(
        fs::read(env.drop_dir("held").join(&held_name)).unwrap(),
        day1_bytes
    );
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    assert_eq!(
        fs::read(&day1).unwrap(),
        day1_bytes,
        "the original is left alone"
    );
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(files.as_array().unwrap().len(), 1, "{files:#}");
    assert_eq!(files[0]["id"], 1);
    assert_eq!(files[0]["name"], "day1.csv");
    assert_eq!(files[0]["status"], "held");
    assert_eq!(files[0]["received_at"], held["received_at"]);
    assert_eq!(
        files[0]["report"],
        env.drop_dir("held")
            .join(format!("{held_name}.report.json"))
            .to_str()
            .unwrap()
    );
    // Held: nothing changed yet.
    assert!(env.accounts(&[]).is_empty());
    assert_eq!(auth(&env, "jose.fischer@acme.example").0, 1);

    // Approve: applied, 82 created.
    let approved = env.json_ok(0, &["files", "approve", "1"]);
    assert_report_header(&approved, "day1.csv", &day1_bytes, "applied", 300);
    assert_counts(&approved, [82, 0, 0, 0, 0, 0, 0]);
    assert_eq!(approved["decision"]["decision"], "approved");
    assert_eq!(approved["decision"]["by"], current_user());
    assert!(
        env.files_in("held").is_empty(),
        "{:?}",
        env.files_in("held")
    );
    assert_eq!(filed(&env, "processed", "day1.csv"), held_name);
    assert_eq!(env.report_file("processed", &held_name), approved);
    assert!(
        env.report_text("processed", &held_name)
            .to_lowercase()
            .contains("applied")
    );
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(files[0]["status"], "applied");
    assert_eq!(
        files[0]["report"],
        env.drop_dir("processed")
            .join(format!("{held_name}.report.json"))
            .to_str()
            .unwrap()
    );

    let accounts = env.accounts(&[]);
    assert_eq!(accounts.len(), 82);
    assert!(
        accounts
            .values()
            .all(|a| a["status"] == "active" && a["origin"] == "auto")
    );
    assert_eq!(
        tally(&accounts, "active", "role"),
        counts_of(&[
            ("Billing Admin", 6),
            ("HR Admin", 15),
            ("IT Admin", 30),
            ("Read-only Admin", 27),
            ("Super Admin", 4),
        ])
    );
    assert_eq!(
        tally(&accounts, "active", "rule_id"),
        counts_of(&[
            ("1", 4),
            ("2", 18),
            ("3", 4),
            ("4", 2),
            ("5", 15),
            ("6", 12),
            ("7", 17),
            ("8", 10),
        ])
    );
    let jose = &accounts["E00228"];
    for (k, v) in [
        ("employee_id", json!("E00228")),
        ("email", json!("jose.fischer@acme.example")),
        ("role", json!("IT Admin")),
        ("status", json!("active")),
        ("origin", json!("auto")),
        ("rule_id", json!(6)),
        ("rule", json!("Engineering managers")),
    ] {
        assert_eq!(jose[k], v, "admins list E00228 field {k}: {jose:#}");
    }
    assert_eq!(
        auth(&env, "jose.fischer@acme.example"),
        (0, "IT Admin\n".into())
    );

    // day2: E00302 joins IT, E00228 moves Engineering -> Finance.
    let day2 = env.input_from("sequence/day2.csv", "day2.csv");
    let day2_bytes = fs::read(&day2).unwrap();
    let (code, r2) = env.process(&day2, &[]);
    assert_eq!(code, 0, "{r2:#}");
    assert_report_header(&r2, "day2.csv", &day2_bytes, "applied", 302);
    assert_counts(&r2, [1, 1, 0, 0, 0, 0, 81]);
    assert_eq!(r2["changes"].as_array().unwrap().len(), 2, "{r2:#}");
    assert_change(
        change(&r2, "E00228"),
        "E00228",
        "jose.fischer@acme.example",
        "reassigned",
        Some(3),
        Some("Finance managers"),
        "Billing Admin",
        Some("IT Admin"),
        Some("active"),
    );
    assert_change(
        change(&r2, "E00302"),
        "E00302",
        "mateus.araujo@acme.example",
        "created",
        Some(2),
        Some("IT staff"),
        "IT Admin",
        None,
        None,
    );
    let day2_name = filed(&env, "processed", "day2.csv");
    assert_name_time(&day2_name, &r2);
    assert_eq!(env.report_file("processed", &day2_name), r2);

    let jose = env.json_ok(0, &["admins", "show", "E00228"]);
    for (k, v) in [
        ("employee_id", json!("E00228")),
        ("email", json!("jose.fischer@acme.example")),
        ("role", json!("Billing Admin")),
        ("status", json!("active")),
        ("origin", json!("auto")),
        ("rule_id", json!(3)),
        ("rule", json!("Finance managers")),
    ] {
        assert_eq!(jose[k], v, "admins show E00228 field {k}: {jose:#}");
    }
    for k in ["created_at", "updated_at"] {
        assert!(
            is_rfc3339_utc(jose[k].as_str().unwrap_or("")),
            "{k}: {jose:#}"
        );
    }
    let history = jose["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{jose:#}");
    assert_eq!(history[0]["status"], "active");
    assert_eq!(history[0]["role"], "IT Admin");
    assert!(
        history[0]["source"].as_str().unwrap().contains("day1.csv"),
        "{jose:#}"
    );
    assert_eq!(history[1]["status"], "active");
    assert_eq!(history[1]["role"], "Billing Admin");
    assert!(
        history[1]["source"].as_str().unwrap().contains("day2.csv"),
        "{jose:#}"
    );
    for h in history {
        assert!(is_rfc3339_utc(h["at"].as_str().unwrap_or("")), "{h}");
        assert!(!h["reason"].as_str().unwrap_or("").is_empty(), "{h}");
    }
    let mateus = env.json_ok(0, &["admins", "show", "E00302"]);
    assert_eq!(mateus["rule_id"], 2);
    assert_eq!(mateus["role"], "IT Admin");
    assert_eq!(mateus["email"], "mateus.araujo@acme.example");
    // E00301 (Finance Manager by title, not a manager) matches no rule.
    assert_eq!(env.run(&["admins", "show", "E00301"]).0, 1);
    assert_eq!(
        auth(&env, "jose.fischer@acme.example"),
        (0, "Billing Admin\n".into())
    );
    assert_eq!(
        auth(&env, "Jose.FISCHER@Acme.Example").0,
        0,
        "emails compare case-insensitively"
    );
    // Trimmed, as SPEC §1 compares (HTTP denies them instead: an unencoded `+`).
    assert_eq!(auth(&env, "  Jose.FISCHER@Acme.Example ").0, 0);

    // day3: E00131 terminated, E00187 removed.
    let day3 = env.input_from("sequence/day3.csv", "day3.csv");
    let day3_bytes = fs::read(&day3).unwrap();
    let (code, r3) = env.process(&day3, &[]);
    assert_eq!(code, 0, "{r3:#}");
    assert_report_header(&r3, "day3.csv", &day3_bytes, "applied", 301);
    assert_counts(&r3, [0, 0, 0, 0, 2, 0, 81]);
    assert_eq!(r3["changes"].as_array().unwrap().len(), 2, "{r3:#}");
    assert_change(
        change(&r3, "E00131"),
        "E00131",
        "jurgen.weber@acme.example",
        "deactivated",
        Some(3),
        Some("Finance managers"),
        "Billing Admin",
        Some("Billing Admin"),
        Some("active"),
    );
    assert_change(
        change(&r3, "E00187"),
        "E00187",
        "olga.ivanova@acme.example",
        "deactivated",
        Some(5),
        Some("HR partners"),
        "HR Admin",
        Some("HR Admin"),
        Some("active"),
    );

    let accounts = env.accounts(&[]);
    assert_eq!(accounts.len(), 83);
    assert_eq!(
        tally(&accounts, "active", "role"),
        counts_of(&[
            ("Billing Admin", 6),
            ("HR Admin", 14),
            ("IT Admin", 30),
            ("Read-only Admin", 27),
            ("Super Admin", 4),
        ])
    );
    let inactive: Vec<String> = env
        .accounts(&["--status", "inactive"])
        .into_keys()
        .collect();
    assert_eq!(inactive, ["E00131", "E00187"]);
    assert_eq!(env.accounts(&["--status", "active"]).len(), 81);
    assert_eq!(env.accounts(&["--origin", "auto"]).len(), 83);
    assert!(env.accounts(&["--origin", "manual"]).is_empty());
    let rule3: Vec<String> = env.accounts(&["--rule", "3"]).into_keys().collect();
    assert_eq!(rule3, ["E00111", "E00119", "E00131", "E00150", "E00228"]);
    let jurgen = &accounts["E00131"];
    assert_eq!(jurgen["status"], "inactive");
    assert_eq!(jurgen["rule_id"], 3, "an inactive account keeps its rule");
    assert_eq!(jurgen["rule"], "Finance managers");
    assert_eq!(jurgen["role"], "Billing Admin");
    let jurgen = env.json_ok(0, &["admins", "show", "E00131"]);
    let history = jurgen["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{jurgen:#}");
    assert_eq!(history[1]["status"], "inactive");
    assert!(history[1]["source"].as_str().unwrap().contains("day3.csv"));

    assert_eq!(auth(&env, "jurgen.weber@acme.example").0, 1);
    assert_eq!(auth(&env, "olga.ivanova@acme.example").0, 1);
    assert_eq!(auth(&env, "nobody@acme.example").0, 1);
    assert_eq!(
        auth(&env, "jose.fischer@acme.example"),
        (0, "Billing Admin\n".into())
    );
    let (code, v) = env.json(&["auth", "check", "jose.fischer@acme.example"]);
    assert_eq!(code, 0);
    assert_eq!(v["role"], "Billing Admin", "{v:#}");
    // `allowed` either way, as the HTTP API's auth/check answers.
    assert_eq!(v["allowed"], true, "{v:#}");
    let (code, v) = env.json(&["auth", "check", "nobody@acme.example"]);
    assert_eq!((code, &v["allowed"]), (1, &json!(false)), "{v:#}");

    // Filing: three applied files, each with two reports, in processed/.
    let processed = env.files_in("processed");
    assert_eq!(processed.len(), 9, "{processed:?}");
    for (orig, status_report) in [
        ("day1.csv", &approved),
        ("day2.csv", &r2),
        ("day3.csv", &r3),
    ] {
        let name = filed(&env, "processed", orig);
        assert_eq!(&env.report_file("processed", &name), status_report);
    }
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(strs(&files, "name"), ["day1.csv", "day2.csv", "day3.csv"]);
    assert_eq!(strs(&files, "status"), ["applied", "applied", "applied"]);
    let ids: Vec<u64> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let shown = env.json_ok(0, &["files", "show", "2"]);
    assert_eq!(shown, r2);
}

// ---- 2. rejected files --------------------------------------------------------------------

/// Where a finding is: (line, column), `None` for none.
type Place = (Option<u64>, Option<String>);

/// `NAME.expected`: the (line, column) of each error in order, and the `@needs` fields.
fn expectations(text: &str) -> (Vec<Place>, Vec<String>) {
    let mut errors = Vec::new();
    let mut needs = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(fields) = line.strip_prefix("@needs ") {
            needs = fields.split(',').map(|f| f.trim().to_owned()).collect();
            continue;
        }
        let (l, c) = line.split_once('\t').expect("LINE<TAB>COLUMN");
        errors.push((
            (l != "-").then(|| l.parse().expect("a line number")),
            (c != "-").then(|| c.to_owned()),
        ));
    }
    (errors, needs)
}

fn error_places(report: &Value) -> Vec<Place> {
    report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["line"].as_u64(), e["column"].as_str().map(str::to_owned)))
        .collect()
}

#[test]
fn rejected_files_leave_the_store_identical() {
    // Raised limits: a broken file wrongly accepted would be applied and show in the snapshot.
    let env = day1_applied(Settings {
        max_deactivations: Some((1000, 100)),
        ..Settings::default()
    });

    // With the sample rules enabled (they need columns the file lacks: more errors, same places first).
    let before = snapshot(&env);
    let path = env.input_from("broken/several_errors.csv", "several_errors_with_rules.csv");
    let (code, r) = env.process(&path, &[]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["status"], "rejected");
    let (want, _) =
        expectations(&fs::read_to_string(testdata("broken/several_errors.expected")).unwrap());
    let got = error_places(&r);
    for place in &want {
        assert!(got.contains(place), "missing error {place:?} in {got:?}");
    }
    assert_eq!(snapshot(&env), before);
    filed(&env, "rejected", "several_errors_with_rules.csv");

    // Only a rule for `@needs` files is enabled from here on.
    for id in 1..=8 {
        env.expect(0, &["rules", "disable", &id.to_string()]);
    }
    let mut broken: Vec<_> = fs::read_dir(testdata("broken"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    broken.sort();
    assert!(broken.len() >= 20, "{broken:?}");
    let mut needs_rule: Option<u64> = None;
    let mut rejected_count = 1; // several_errors above
    for csv in &broken {
        let name = csv.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = fs::read(csv).unwrap();
        let (want, needs) =
            expectations(&fs::read_to_string(csv.with_extension("expected")).unwrap());
        assert!(!want.is_empty(), "{name}: no expected error");
        if !needs.is_empty() {
            let mut args = vec![
                "rules".to_string(),
                "add".into(),
                "--name".into(),
                format!("needs {name}"),
                "--role".into(),
                "Read-only Admin".into(),
            ];
            for f in &needs {
                args.push("--when".into());
                args.push(if f == "is_manager" {
                    "is_manager = true".into()
                } else {
                    format!("{f} = x")
                });
            }
            let v = env.json_ok(0, &args);
            needs_rule = Some(v["id"].as_u64().unwrap());
        }
        let before = snapshot(&env);
        let (code, r) = env.process(csv, &[]);
        assert_eq!(code, 1, "{name}: {r:#}");
        assert_report_header(
            &r,
            &name,
            &bytes,
            "rejected",
            r["rows"].as_u64().unwrap_or(0),
        );
        assert_eq!(error_places(&r), want, "{name}: errors {:#}", r["errors"]);
        assert_eq!(r["changes"], json!([]), "{name}");
        assert_counts(&r, [0, 0, 0, 0, 0, 0, 0]);
        for e in r["errors"].as_array().unwrap() {
            assert!(
                !e["message"].as_str().unwrap_or("").is_empty(),
                "{name}: {e}"
            );
        }
        assert_eq!(snapshot(&env), before, "{name} changed the store");
        let stored = filed(&env, "rejected", &name);
        assert_name_time(&stored, &r);
        assert_eq!(
            fs::read(env.drop_dir("rejected").join(&stored)).unwrap(),
            bytes
        );
        assert_eq!(env.report_file("rejected", &stored), r, "{name}");
        let txt = env.report_text("rejected", &stored);
        assert!(txt.to_lowercase().contains("rejected"), "{name}: {txt}");
        for e in r["errors"].as_array().unwrap() {
            assert!(
                txt.contains(e["message"].as_str().unwrap()),
                "{name}: {txt}"
            );
            if let Some(l) = e["line"].as_u64() {
                assert!(txt.contains(&format!("line {l}")), "{name}: {txt}");
            }
        }
        assert!(env.files_in("inbox").is_empty(), "{name}");
        rejected_count += 1;
        if let Some(id) = needs_rule.take() {
            env.expect(0, &["rules", "disable", &id.to_string()]);
        }
    }
    let files = env.json_ok(0, &["files", "list"]);
    let statuses = strs(&files, "status");
    assert_eq!(statuses[0], "applied");
    assert_eq!(statuses.len(), 1 + rejected_count);
    assert!(
        statuses[1..].iter().all(|s| s == "rejected"),
        "{statuses:?}"
    );
    assert_eq!(env.files_in("rejected").len(), 3 * rejected_count);
    // Rejections do not change the last applied roster: a sync now changes nothing.
    for id in 1..=8 {
        env.expect(0, &["rules", "enable", &id.to_string()]);
    }
    let s = env.json_ok(0, &["sync"]);
    assert_eq!(s["status"], "applied");
    assert_counts(&s, [0, 0, 0, 0, 0, 0, 82]);
}

// ---- 3. held files: blocking, approval, rejection --------------------------------------

#[test]
fn held_file_blocks_later_files_and_is_rejected_or_approved_with_audit() {
    let env = TestEnv::new();
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let day2 = env.input_from("sequence/day2.csv", "day2.csv");
    let day1_bytes = fs::read(&day1).unwrap();

    let (code, held) = env.process(&day1, &[]);
    assert_eq!(code, 3, "{held:#}");
    assert_eq!(held["status"], "held");
    let held_name = filed(&env, "held", "day1.csv");

    // A later file is refused at once (exit 3), naming the held file; nothing is queued.
    let (code, out, err) = env.run(&["process", day2.to_str().unwrap()]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    let msg = format!("{out}{err}");
    assert!(msg.contains("held"), "{msg}");
    assert!(msg.contains('1') && msg.contains(&held_name), "{msg}");
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    assert_eq!(
        env.json_ok(0, &["files", "list"]).as_array().unwrap().len(),
        1
    );
    // A dry run is a later file too.
    assert_eq!(
        env.run(&["process", "--dry-run", day2.to_str().unwrap()]).0,
        3
    );
    // sync has no applied roster to work from; it must not apply the held file. Refused
    // (exit 3), not a usage error (2), which a script reads as a broken command line.
    let (code, out, err) = env.run(&["sync"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("no roster has been applied yet"), "{out}{err}");
    assert!(env.accounts(&[]).is_empty());
    assert_eq!(env.files_in("held").len(), 3);

    // Reject: moves to rejected/ with the report saying rejected, by whom.
    let (code, rej) = env.json(&["files", "reject", "1"]);
    assert!(code == 0 || code == 1, "exit {code}: {rej:#}");
    assert_eq!(rej["status"], "rejected", "{rej:#}");
    assert_eq!(rej["decision"]["decision"], "rejected");
    assert_eq!(rej["decision"]["by"], current_user());
    assert!(
        is_rfc3339_utc(rej["decision"]["at"].as_str().unwrap_or("")),
        "{rej:#}"
    );
    assert!(
        env.files_in("held").is_empty(),
        "{:?}",
        env.files_in("held")
    );
    assert_eq!(filed(&env, "rejected", "day1.csv"), held_name);
    assert_eq!(
        fs::read(env.drop_dir("rejected").join(&held_name)).unwrap(),
        day1_bytes
    );
    let on_disk = env.report_file("rejected", &held_name);
    assert_eq!(on_disk["status"], "rejected");
    assert_eq!(on_disk["decision"], rej["decision"]);
    let txt = env.report_text("rejected", &held_name);
    assert!(
        txt.to_lowercase().contains("rejected") && txt.contains(&current_user()),
        "{txt}"
    );
    assert!(
        env.accounts(&[]).is_empty(),
        "a rejected held file changes nothing"
    );
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(files[0]["status"], "rejected");
    // Decided files cannot be decided again.
    assert_eq!(env.run(&["files", "approve", "1"]).0, 3);
    assert_eq!(env.run(&["files", "reject", "1"]).0, 3);
    // An id the ledger does not have is a negative answer, as for `files show`.
    for decide in ["approve", "reject"] {
        let (code, out, _) = env.run(&["files", decide, "99"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("no file 99"), "{out}");
    }

    // The same bytes again: held again (file 2), repeats file 1; approve it.
    let (code, held2) = env.process(&day1, &[]);
    assert_eq!(code, 3, "{held2:#}");
    assert_eq!(held2["repeats"], json!(held_name), "{held2:#}");
    let approved = env.json_ok(0, &["files", "approve", "2"]);
    assert_eq!(approved["status"], "applied");
    assert_eq!(approved["decision"]["decision"], "approved");
    assert_eq!(approved["decision"]["by"], current_user());
    assert_eq!(env.accounts(&["--status", "active"]).len(), 82);
    // No longer blocked.
    let (code, r2) = env.process(&day2, &[]);
    assert_eq!(code, 0, "{r2:#}");
    assert_counts(&r2, [1, 1, 0, 0, 0, 0, 81]);

    // Both decisions are in the audit log with the user.
    let audit = env.json_ok(0, &["audit"]);
    let entries = audit.as_array().expect("audit is an array");
    let find = |action: &str| -> Vec<&Value> {
        entries.iter().filter(|e| e["action"] == action).collect()
    };
    let rejects = find("files reject");
    assert_eq!(rejects.len(), 1, "{audit:#}");
    assert_eq!(rejects[0]["user"], current_user());
    assert!(
        rejects[0]["detail"].as_str().unwrap().contains(&held_name),
        "{audit:#}"
    );
    let approves = find("files approve");
    assert_eq!(approves.len(), 1, "{audit:#}");
    assert_eq!(approves[0]["user"], current_user());
    assert!(is_rfc3339_utc(approves[0]["at"].as_str().unwrap_or("")));
    assert_eq!(find("rules add").len(), 8, "{audit:#}");
    // --since filters by time.
    let later = env.json_ok(0, &["audit", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(later, json!([]));
}

// ---- 4. rule conflicts ------------------------------------------------------------------

#[test]
fn rules_add_reports_conflicts_and_refuses_bad_rules() {
    let env = day1_applied(Settings::default());
    let before = env.json_ok(0, &["rules", "list"]);
    let eng_managers = [
        "E00015", "E00048", "E00070", "E00126", "E00130", "E00145", "E00165", "E00172", "E00186",
        "E00190",
    ];
    let add = [
        "rules",
        "add",
        "--name",
        "Engineering everyone",
        "--role",
        "Super Admin",
        "--when",
        "department = Engineering",
    ];

    // --strict: refused, exit 3, nothing saved.
    let mut strict = add.to_vec();
    strict.push("--strict");
    let out = env.expect(3, &strict);
    assert!(out.contains("Engineering managers"), "{out}");
    assert_eq!(env.json_ok(0, &["rules", "list"]), before);
    let (code, v) = env.json(&strict);
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(env.json_ok(0, &["rules", "list"]), before);

    // Text: each conflict, the winner, the count and up to 10 ids.
    let out = env.expect(0, &add);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("conflict")).collect();
    assert_eq!(lines.len(), 3, "conflicts with rules 4, 6, 7:\n{out}");
    let six = lines
        .iter()
        .find(|l| l.contains("Engineering managers"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(six.contains("rule 9"), "{six}");
    assert!(six.contains("12 employees"), "{six}");
    assert!(six.contains(&eng_managers.join(", ")), "{six}");
    assert!(
        !six.contains("E00228") && !six.contains("E00283"),
        "at most 10 ids: {six}"
    );
    assert!(six.contains("rule 6 wins"), "{six}");
    let four = lines
        .iter()
        .find(|l| l.contains("Revenue leadership"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        four.contains("0 employees") && four.contains("rule 4 wins"),
        "{four}"
    );
    let seven = lines
        .iter()
        .find(|l| l.contains("Managers read-only"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        seven.contains("12 employees") && seven.contains("rule 7 wins"),
        "{seven}"
    );
    let saved = env.json_ok(0, &["rules", "show", "9"]);
    assert_eq!(saved["name"], "Engineering everyone");
    assert_eq!(saved["conditions"], json!(["department = Engineering"]));
    env.expect(0, &["rules", "delete", "9"]);

    // --json: the rule plus its conflicts.
    let mut add_json = add.to_vec();
    add_json[3] = "Engineering all";
    let v = env.json_ok(0, &add_json);
    assert_eq!(v["id"], 10, "ids are never reused: {v:#}");
    assert_eq!(v["name"], "Engineering all");
    assert_eq!(v["role"], "Super Admin");
    assert_eq!(v["conditions"], json!(["department = Engineering"]));
    assert_eq!(v["enabled"], true);
    assert_eq!(v["created_by"], current_user());
    assert!(
        is_rfc3339_utc(v["created_at"].as_str().unwrap_or("")),
        "{v:#}"
    );
    let conflicts = v["conflicts"].as_array().expect("conflicts");
    let by_rule: BTreeMap<u64, &Value> = conflicts
        .iter()
        .map(|c| (c["rule_id"].as_u64().unwrap(), c))
        .collect();
    assert_eq!(
        by_rule.keys().copied().collect::<Vec<_>>(),
        [4, 6, 7],
        "{v:#}"
    );
    assert_eq!(by_rule[&6]["employees"], 12);
    assert_eq!(by_rule[&6]["employee_ids"], json!(eng_managers));
    assert_eq!(by_rule[&6]["winner"], 6);
    assert_eq!(by_rule[&4]["employees"], 0);
    assert_eq!(by_rule[&7]["winner"], 7);

    // rules edit checks too; the edited rule wins where its id is lower.
    let out = env.expect(0, &["rules", "edit", "3", "--role", "Super Admin"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("conflict")).collect();
    let seven = lines
        .iter()
        .find(|l| l.contains("Managers read-only"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        seven.contains("4 employees")
            && seven.contains("E00111, E00119, E00131, E00150")
            && seven.contains("rule 3 wins"),
        "{seven}"
    );
    let four = lines
        .iter()
        .find(|l| l.contains("Revenue leadership"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(four.contains(" 1 employee"), "{four}");
    assert!(
        four.contains("E00111") && four.contains("rule 3 wins"),
        "{four}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("Engineering all")),
        "same role, no conflict: {out}"
    );
    let three = env.json_ok(0, &["rules", "show", "3"]);
    assert_eq!(three["role"], "Super Admin");
    assert_eq!(three["name"], "Finance managers");
    assert_eq!(
        three["conditions"],
        json!(["department = Finance", "is_manager = true"])
    );
    // --when replaces all conditions; the quoting of the --when syntax round-trips.
    env.expect(
        0,
        &[
            "rules",
            "edit",
            "3",
            "--when",
            "department in (\"R&D, Europe\", Finance)",
        ],
    );
    let three = env.json_ok(0, &["rules", "show", "3"]);
    assert_eq!(
        three["conditions"],
        json!(["department in (\"R&D, Europe\", Finance)"])
    );
    assert_eq!(three["role"], "Super Admin");

    // Unknown role and duplicate name: exit 3, nothing saved.
    let before = env.json_ok(0, &["rules", "list"]);
    let out = env.expect(
        3,
        &[
            "rules",
            "add",
            "--name",
            "Janitors",
            "--role",
            "Janitor",
            "--when",
            "department = Facilities",
        ],
    );
    assert!(out.contains("Janitor"), "{out}");
    let out = env.expect(
        3,
        &[
            "rules",
            "add",
            "--name",
            "IT staff",
            "--role",
            "IT Admin",
            "--when",
            "department = Legal",
        ],
    );
    assert!(out.contains("IT staff"), "{out}");
    env.expect(3, &["rules", "edit", "1", "--role", "Janitor"]);
    env.expect(3, &["rules", "edit", "1", "--name", "IT staff"]);
    assert_eq!(env.json_ok(0, &["rules", "list"]), before);
    // A malformed condition is a usage error.
    assert_eq!(
        env.run(&[
            "rules",
            "add",
            "--name",
            "bad",
            "--role",
            "IT Admin",
            "--when",
            "department"
        ])
        .0,
        2
    );
    assert_eq!(env.json_ok(0, &["rules", "list"]), before);
}

#[test]
fn rules_add_without_an_applied_roster_still_reports_conflicts() {
    let env = TestEnv::new();
    env.load_sample_rules();
    let v = env.json_ok(
        0,
        &[
            "rules",
            "add",
            "--name",
            "Sales",
            "--role",
            "HR Admin",
            "--when",
            "department = Sales",
        ],
    );
    let ids: Vec<u64> = v["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rule_id"].as_u64().unwrap())
        .collect();
    // Rule 4 only constrains job_title; rule 7 excludes Sales; the rest name other departments.
    assert_eq!(ids, [4], "{v:#}");
    assert_eq!(v["conflicts"][0]["winner"], 4);
    // No roster to count them with: null, not 0 (which had read as "no employee matches both").
    assert!(v["conflicts"][0]["employees"].is_null(), "{v:#}");
}

#[test]
fn rules_check_counts_each_pair_on_the_last_roster_even_when_one_rule_cannot_be_evaluated() {
    // No rules: nothing to report.
    let empty = TestEnv::new();
    let out = empty.expect(0, &["rules", "check"]);
    assert!(
        out.contains("rules check: no conflicts or problems found"),
        "{out}"
    );
    // Rules but no roster yet: conflicts without counts.
    let unapplied = TestEnv::new();
    unapplied.load_sample_rules();
    let v = unapplied.json_ok(1, &["rules", "check"]);
    let problems = v["problems"].as_array().expect("problems");
    assert!(!problems.is_empty(), "{v:#}");
    assert!(
        problems.iter().all(|c| c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no roster applied yet to count matching employees")),
        "{v:#}"
    );

    let env = day1_applied(Settings::default());
    let eng_managers = [
        "E00015", "E00048", "E00070", "E00126", "E00130", "E00145", "E00165", "E00172", "E00186",
        "E00190",
    ];
    let six_seven = format!(
        "conflict: rule 6 \"Engineering managers\" (IT Admin) and rule 7 \"Managers read-only\" \
         (Read-only Admin) can both match one employee; 12 employees of the last applied roster \
         match both ({}); rule 6 wins by precedence (lowest id) where neither gave the \
         employee's account; an account either rule gave stays with it while that rule matches",
        eng_managers.join(", ")
    );
    let out = env.expect(1, &["rules", "check"]);
    assert!(out.lines().any(|l| l == six_seven), "{out}");
    assert!(!out.contains("no column"), "{out}");

    // A rule reading a column the applied roster lacks: a warning for it, its own pairs
    // say why they are not counted, and every other pair is still counted.
    let add = [
        "rules",
        "add",
        "--name",
        "Engineering contractors",
        "--role",
        "Super Admin",
        "--when",
        "department = Engineering",
        "--when",
        "worker_type = Contractor",
    ];
    let v = env.json_ok(0, &add);
    assert_eq!(v["id"], 9, "{v:#}");
    let not_counted = "matching employees not counted: rule 9 reads \"worker_type\", which the \
                       last applied roster has no column for";
    let conflicts = v["conflicts"].as_array().expect("conflicts");
    assert!(!conflicts.is_empty(), "{v:#}");
    assert!(
        conflicts
            .iter()
            .all(|c| c["employees"].is_null() && c["employee_ids"] == json!([])),
        "{v:#}"
    );
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("has no column for \"worker_type\""),
        "{v:#}"
    );

    let out = env.expect(1, &["rules", "check"]);
    assert!(out.lines().any(|l| l == six_seven), "{out}");
    assert!(
        out.lines().any(|l| l
            == "rule 9 \"Engineering contractors\": the last applied roster has no column for \
                \"worker_type\"; while this rule is enabled, files without it are rejected"),
        "{out}"
    );
    let nine: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("conflict:") && l.contains("rule 9 \""))
        .collect();
    assert!(!nine.is_empty(), "{out}");
    assert!(nine.iter().all(|l| l.contains(not_counted)), "{out}");

    let v = env.json_ok(1, &["rules", "check"]);
    let problems = v["problems"].as_array().expect("problems");
    let pair = problems
        .iter()
        .find(|c| c["message"].as_str() == Some(six_seven.as_str()))
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(pair["rule_id"], 7);
    assert_eq!(pair["employees"], 12);
    assert_eq!(pair["employee_ids"], json!(eng_managers));
    assert_eq!(pair["winner"], 6);
    let text_lines = out.lines().filter(|l| !l.is_empty()).count();
    assert_eq!(
        problems.len(),
        text_lines,
        "one JSON problem per text line: {v:#}"
    );

    // The last applied roster pruned: not "no problems found" (exit 0), but that it could
    // not be checked.
    let files = env.json_ok(0, &["files", "list"]);
    let last = files.as_array().unwrap().last().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    for name in env.files_in("processed") {
        if name.ends_with(&last) {
            fs::remove_file(env.drop_dir("processed").join(name)).unwrap();
        }
    }
    env.expect(0, &["rules", "disable", "9"]);
    let out = env.expect(1, &["rules", "check"]);
    assert!(out.contains("were not checked"), "{out}");
}

// ---- 5. manual accounts -----------------------------------------------------------------

#[test]
fn manual_accounts_are_never_touched_and_auto_accounts_cannot_be_changed_by_hand() {
    let env = TestEnv::with(Settings {
        max_grants: Some((1000, 100)),
        ..Settings::default()
    });
    env.load_sample_rules();
    // E00057 matches rule 1 (IT managers); X-1 is in no roster.
    let v = env.json_ok(
        0,
        &[
            "admins",
            "add",
            "--employee-id",
            "E00057",
            "--email",
            "aylin.taylor@acme.example",
            "--role",
            "HR Admin",
        ],
    );
    assert_eq!(v["origin"], "manual");
    assert_eq!(v["role"], "HR Admin");
    assert_eq!(v["status"], "active");
    assert_eq!(v["rule_id"], Value::Null);
    env.expect(
        0,
        &[
            "admins",
            "add",
            "--employee-id",
            "X-1",
            "--email",
            "contractor@partner.example",
            "--role",
            "Read-only Admin",
        ],
    );
    // Unknown role: refused.
    env.expect(
        3,
        &[
            "admins",
            "add",
            "--employee-id",
            "X-2",
            "--email",
            "x2@partner.example",
            "--role",
            "Janitor",
        ],
    );
    assert_eq!(env.run(&["admins", "show", "X-2"]).0, 1);

    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let (code, r) = env.process(&day1, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_counts(&r, [81, 0, 0, 0, 0, 1, 0]);
    assert_change(
        change(&r, "E00057"),
        "E00057",
        "aylin.taylor@acme.example",
        "skipped_manual",
        Some(1),
        Some("IT managers"),
        "HR Admin",
        Some("HR Admin"),
        Some("active"),
    );
    assert!(
        r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["employee_id"] != "X-1")
    );
    let manual_before = env.accounts(&["--origin", "manual"]);
    assert_eq!(manual_before.keys().collect::<Vec<_>>(), ["E00057", "X-1"]);
    assert_eq!(manual_before["E00057"]["role"], "HR Admin");
    // The listing leaves history out; `admins show` has it.
    assert!(manual_before["E00057"].get("history").is_none());
    let shown = env.json_ok(0, &["admins", "show", "E00057"]);
    assert_eq!(shown["history"].as_array().unwrap().len(), 1, "{shown:#}");
    assert_eq!(
        auth(&env, "aylin.taylor@acme.example"),
        (0, "HR Admin\n".into())
    );
    assert_eq!(
        auth(&env, "contractor@partner.example"),
        (0, "Read-only Admin\n".into())
    );

    // sync: still skipped, unchanged byte for byte.
    let s = env.json_ok(0, &["sync"]);
    assert_counts(&s, [0, 0, 0, 0, 0, 1, 81]);
    assert_eq!(change(&s, "E00057")["action"], "skipped_manual");
    assert_eq!(env.accounts(&["--origin", "manual"]), manual_before);

    // Refusals.
    let auto_id = "E00228";
    let before = env.json_ok(0, &["admins", "show", auto_id]);
    for args in [
        vec!["admins", "set", auto_id, "--role", "Super Admin"],
        vec!["admins", "set", auto_id, "--status", "inactive"],
        vec!["admins", "remove", auto_id],
    ] {
        let out = env.expect(3, &args);
        assert!(out.contains("rule"), "{out}");
        assert!(
            out.contains("change or delete the rule"),
            "the message says to change or delete the rule: {out}"
        );
        let (code, v) = env.json(&args);
        assert_eq!(code, 3, "{v:#}");
    }
    assert_eq!(env.json_ok(0, &["admins", "show", auto_id]), before);
    for (id, email) in [
        ("E00228", "other@acme.example"),
        ("E00057", "aylin.taylor@acme.example"),
        (" E00057 ", "x@acme.example"),
    ] {
        env.expect(
            3,
            &[
                "admins",
                "add",
                "--employee-id",
                id,
                "--email",
                email,
                "--role",
                "IT Admin",
            ],
        );
    }
    assert_eq!(env.json_ok(0, &["admins", "show", auto_id]), before);
    assert_eq!(env.accounts(&["--origin", "manual"]), manual_before);
    assert_eq!(
        env.run(&["admins", "set", "NOPE", "--role", "IT Admin"]).0,
        1
    );

    // set: role and status change; provisioning leaves them alone.
    let v = env.json_ok(0, &["admins", "set", "E00057", "--role", "Super Admin"]);
    assert_eq!(v["role"], "Super Admin");
    assert_eq!(v["origin"], "manual");
    let mut v = env.json_ok(0, &["admins", "set", "E00057", "--status", "inactive"]);
    assert_eq!(v["status"], "inactive");
    // What `admins show` gives, and whether this changed anything.
    assert_eq!(
        v.as_object_mut().unwrap().remove("changed"),
        Some(Value::Bool(true))
    );
    assert_eq!(v["history"].as_array().unwrap().len(), 3, "{v:#}");
    assert_eq!(auth(&env, "aylin.taylor@acme.example").0, 1);
    let s = env.json_ok(0, &["sync"]);
    assert_counts(&s, [0, 0, 0, 0, 0, 1, 81]);
    let after = env.json_ok(0, &["admins", "show", "E00057"]);
    assert_eq!(after, v, "sync left the manual account as it was");
    // A roster without E00057 does not deactivate or remove a manual account either.
    let day2 = env.input_from("sequence/day2.csv", "day2.csv");
    let (code, _) = env.process(&day2, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        env.accounts(&["--origin", "manual"])["X-1"],
        manual_before["X-1"]
    );

    // remove: gone; then the rule takes the employee over at the next sync.
    let v = env.json_ok(0, &["admins", "remove", "E00057"]);
    assert_eq!(v["removed"], "E00057");
    assert_eq!(env.run(&["admins", "show", "E00057"]).0, 1);
    let s = env.json_ok(0, &["sync"]);
    assert_change(
        change(&s, "E00057"),
        "E00057",
        "aylin.taylor@acme.example",
        "created",
        Some(1),
        Some("IT managers"),
        "Super Admin",
        None,
        None,
    );
    assert_eq!(s["counts"]["skipped_manual"], 0);
    let aylin = env.json_ok(0, &["admins", "show", "E00057"]);
    assert_eq!(aylin["origin"], "auto");
    // And the audit log names the user of each manual change.
    let audit = env.json_ok(0, &["audit"]);
    for action in ["admins add", "admins set", "admins remove"] {
        let e: Vec<&Value> = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .collect();
        assert!(!e.is_empty(), "{action} not audited: {audit:#}");
        assert!(e.iter().all(|e| e["user"] == current_user()), "{audit:#}");
    }
}

// ---- 6. SSO prerequisite ---------------------------------------------------------------

#[test]
fn without_sso_provisioning_refuses_with_exit_2_but_auth_check_works() {
    /// Runs `args`, expecting exit 2 and a message that names the SSO setting.
    fn refused(env: &TestEnv, args: &[&str]) {
        let (code, out, err) = env.run(args);
        assert_eq!(code, 2, "{args:?}\nstdout:\n{out}\nstderr:\n{err}");
        let msg = format!("{out}{err}").to_lowercase();
        assert!(
            msg.contains("sso") && msg.contains("enabled"),
            "{args:?} should say why: {msg}"
        );
    }

    let mut env = TestEnv::new();
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    assert_eq!(env.process(&day1, &[]).0, 3);
    env.json_ok(0, &["files", "approve", "1"]);
    let accounts_before = env.json_ok(0, &["admins", "list"]);
    let files_before = env.json_ok(0, &["files", "list"]);

    // SSO off, nothing held: process and sync refuse; nothing is queued or changed.
    env.reconfigure(|s| s.sso_enabled = false);
    let day2 = env.input_from("sequence/day2.csv", "day2.csv");
    refused(&env, &["process", day2.to_str().unwrap()]);
    refused(&env, &["sync"]);
    refused(&env, &["sync", "--force"]);
    assert!(
        env.files_in("inbox").is_empty(),
        "{:?}",
        env.files_in("inbox")
    );
    assert_eq!(env.json_ok(0, &["admins", "list"]), accounts_before);
    assert_eq!(env.json_ok(0, &["files", "list"]), files_before);
    // Sign-in checks keep working, as do read commands.
    assert_eq!(
        auth(&env, "jose.fischer@acme.example"),
        (0, "IT Admin\n".into())
    );
    assert_eq!(auth(&env, "nobody@acme.example").0, 1);
    let st = env.expect(0, &["status"]);
    assert!(st.to_lowercase().contains("sso"), "{st}");
    env.json_ok(0, &["rules", "list"]);

    // SSO on: disabling rule 2 makes day2 deactivate 18 accounts, so it is held.
    env.reconfigure(|s| s.sso_enabled = true);
    env.expect(0, &["rules", "disable", "2"]);
    let (code, r) = env.process(&day2, &[]);
    assert_eq!(code, 3, "{r:#}");
    assert_eq!(r["counts"]["deactivated"], 18);
    let files_before = env.json_ok(0, &["files", "list"]);

    // SSO off: approving it refuses, and it stays held.
    env.reconfigure(|s| s.sso_enabled = false);
    refused(&env, &["files", "approve", "2"]);
    assert_eq!(env.json_ok(0, &["admins", "list"]), accounts_before);
    assert_eq!(env.json_ok(0, &["files", "list"]), files_before);
    assert_eq!(env.files_in("held").len(), 3);

    // Back on: the held file can be approved.
    env.reconfigure(|s| s.sso_enabled = true);
    let v = env.json_ok(0, &["files", "approve", "2"]);
    assert_eq!(v["status"], "applied");
    assert_eq!(v["counts"]["deactivated"], 18);
}

// ---- 7. dry runs and repeated files -------------------------------------------------------

#[test]
fn dry_runs_change_nothing() {
    let env = day1_applied(Settings::default());
    let before = snapshot(&env);
    let day2 = env.input_from("sequence/day2.csv", "day2.csv");
    let day2_bytes = fs::read(&day2).unwrap();

    // --dry-run
    let (code, r) = env.process(&day2, &["--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "dry_run");
    assert_eq!(r["sha256"], sha256_hex(&day2_bytes));
    assert_eq!(r["rows"], 302);
    assert_counts(&r, [1, 1, 0, 0, 0, 0, 81]);
    assert_eq!(change(&r, "E00228")["action"], "reassigned");
    assert_eq!(snapshot(&env), before);
    let file = r["file"].as_str().unwrap().to_string();
    assert!(file.ends_with(".dryrun.csv"), "{file}");
    let stored = filed(&env, "processed", &file);
    assert_eq!(env.report_file("processed", &stored)["status"], "dry_run");
    assert!(
        env.report_text("processed", &stored)
            .to_lowercase()
            .contains("dry run")
    );
    assert_eq!(
        fs::read(&day2).unwrap(),
        day2_bytes,
        "the original is left alone"
    );

    // A file named *.dryrun.csv
    let x = env.input_from("sequence/day3.csv", "x.dryrun.csv");
    let (code, r) = env.process(&x, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "dry_run");
    assert_eq!(r["file"], "x.dryrun.csv");
    // Relative to the last *applied* roster (day1): E00302 created, E00228 reassigned,
    // E00131 and E00187 deactivated.
    assert_counts(&r, [1, 1, 0, 0, 2, 0, 79]);
    assert_eq!(snapshot(&env), before);
    filed(&env, "processed", "x.dryrun.csv");

    // A dry run over the safety limit is still a dry run (exit 0), and changes nothing.
    env.expect(0, &["rules", "disable", "2"]);
    env.expect(0, &["rules", "disable", "6"]);
    let before = snapshot(&env);
    let (code, r) = env.process(&day2, &["--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "dry_run");
    assert_eq!(snapshot(&env), before);

    // The last applied roster is still day1: a forced sync re-evaluates day1, not a dry run.
    let s = env.json_ok(0, &["sync", "--force"]);
    assert_eq!(s["status"], "applied");
    assert_eq!(s["rows"], 300);
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(
        strs(&files, "status"),
        ["applied", "dry_run", "dry_run", "dry_run"]
    );
}

#[test]
fn repeated_bytes_name_the_earlier_file_and_names_never_collide() {
    let env = day1_applied(Settings::default());
    let first = filed(&env, "processed", "day1.csv");
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let (code, r) = env.process(&day1, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "applied");
    assert_eq!(r["repeats"], json!(first), "{r:#}");
    assert_counts(&r, [0, 0, 0, 0, 0, 0, 82]);
    let txt_names: Vec<String> = env
        .files_in("processed")
        .into_iter()
        .filter(|n| n.ends_with(".report.txt"))
        .collect();
    assert_eq!(txt_names.len(), 2, "{txt_names:?}");
    // Same bytes under another name also repeats.
    let renamed = env.input_from("sequence/day1.csv", "copy.csv");
    let (code, r) = env.process(&renamed, &[]);
    assert_eq!(code, 0);
    assert!(
        r["repeats"].as_str().is_some_and(|s| s.contains("_day1")),
        "{r:#}"
    );
    // Different bytes: no repeat.
    let day2 = env.input_from("sequence/day2.csv", "day2.csv");
    let (_, r) = env.process(&day2, &[]);
    assert_eq!(r["repeats"], Value::Null, "{r:#}");

    // Name collisions in the result folders get -2 before the last dot (or at the end).
    let now = std::time::SystemTime::now();
    for secs in -2i64..30 {
        let t = if secs < 0 {
            now - std::time::Duration::from_secs((-secs) as u64)
        } else {
            now + std::time::Duration::from_secs(secs as u64)
        };
        let ts = compact(&humantime::format_rfc3339_seconds(t).to_string());
        fs::write(
            env.drop_dir("processed").join(format!("{ts}_coll.csv")),
            b"x",
        )
        .unwrap();
        fs::write(env.drop_dir("rejected").join(format!("{ts}_noext")), b"x").unwrap();
    }
    let coll = env.input_from("sequence/day2.csv", "coll.csv");
    let (code, r) = env.process(&coll, &[]);
    assert_eq!(code, 0, "{r:#}");
    let names: Vec<String> = env
        .files_in("processed")
        .into_iter()
        .filter(|n| n.ends_with("_coll-2.csv"))
        .collect();
    assert_eq!(names.len(), 1, "{:?}", env.files_in("processed"));
    let stored = &names[0];
    assert_eq!(env.report_file("processed", stored)["file"], "coll.csv");
    assert_eq!(env.report_file("processed", stored)["status"], "applied");
    let noext = env.input(
        "noext",
        b"employee_id,email\n1,a@example.com\n1,b@example.com\n",
    );
    let (code, r) = env.process(&noext, &[]);
    assert_eq!(code, 1, "{r:#}");
    let names: Vec<String> = env
        .files_in("rejected")
        .into_iter()
        .filter(|n| n.ends_with("_noext-2"))
        .collect();
    assert_eq!(names.len(), 1, "{:?}", env.files_in("rejected"));
    assert!(
        env.files_in("rejected")
            .contains(&format!("{}.report.json", names[0]))
    );
}

// ---- 8. sync after rule changes ---------------------------------------------------------

#[test]
fn sync_applies_rule_changes_and_rule_ids_are_never_reused() {
    let env = day1_applied(Settings::default());

    // Disable 4 (Revenue leadership) and 6 (Engineering managers): their accounts move to
    // the next matching rule (7, Managers read-only) or are deactivated (E00035, Sales).
    env.expect(0, &["rules", "disable", "4"]);
    env.expect(0, &["rules", "disable", "6"]);
    assert_eq!(env.json_ok(0, &["rules", "show", "6"])["enabled"], false);
    let s = env.json_ok(0, &["sync"]);
    assert_eq!(s["status"], "applied", "{s:#}");
    assert_eq!(s["rows"], 300);
    assert_counts(&s, [0, 13, 0, 0, 1, 0, 68]);
    assert_change(
        change(&s, "E00228"),
        "E00228",
        "jose.fischer@acme.example",
        "reassigned",
        Some(7),
        Some("Managers read-only"),
        "Read-only Admin",
        Some("IT Admin"),
        Some("active"),
    );
    assert_change(
        change(&s, "E00001"),
        "E00001",
        "tara.goncalves@acme.example",
        "reassigned",
        Some(7),
        Some("Managers read-only"),
        "Read-only Admin",
        Some("Billing Admin"),
        Some("active"),
    );
    let e35 = change(&s, "E00035");
    assert_eq!(e35["action"], "deactivated");
    assert_eq!(e35["rule_id"], 4);
    assert_eq!(e35["role"], "Billing Admin");
    assert_eq!(e35["previous_status"], "active");
    assert!(env.accounts(&["--rule", "6"]).is_empty());
    assert_eq!(env.accounts(&["--rule", "7"]).len(), 17 + 13);
    let e35 = env.json_ok(0, &["admins", "show", "E00035"]);
    assert_eq!(e35["status"], "inactive");
    assert_eq!(e35["rule_id"], 4);
    assert_eq!(e35["rule"], "Revenue leadership");
    assert_eq!(auth(&env, "agnieszka.garcia@acme.example").0, 1);
    assert_eq!(
        auth(&env, "jose.fischer@acme.example"),
        (0, "Read-only Admin\n".into())
    );

    // Nothing left to do: a text sync prints the report.
    let out = env.expect(0, &["sync"]);
    assert!(out.to_lowercase().contains("applied"), "{out}");
    assert!(out.contains("unchanged 81"), "{out}");

    // Delete the highest rule (8): its 10 accounts are deactivated; id 8 is not reused.
    env.expect(0, &["rules", "delete", "8"]);
    assert_eq!(env.run(&["rules", "show", "8"]).0, 1);
    let s = env.json_ok(0, &["sync"]);
    assert_counts(&s, [0, 0, 0, 0, 10, 0, 71]);
    let by8 = env.accounts(&["--rule", "8"]);
    assert_eq!(by8.len(), 10);
    assert!(by8.values().all(|a| a["status"] == "inactive"));
    // The same rule added and deleted twice gets a new id each time.
    for want in [9, 10] {
        let v = env.json_ok(
            0,
            &[
                "rules",
                "add",
                "--name",
                "Legal",
                "--role",
                "Read-only Admin",
                "--when",
                "department = Legal",
            ],
        );
        assert_eq!(v["id"], want, "{v:#}");
        env.expect(0, &["rules", "delete", &want.to_string()]);
    }
    let ids: Vec<u64> = env
        .json_ok(0, &["rules", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);

    // Enable 4 again: E00035 is reactivated; E00001 stays with rule 7, which still matches.
    env.expect(0, &["rules", "enable", "4"]);
    let s = env.json_ok(0, &["sync"]);
    assert_counts(&s, [0, 0, 1, 0, 0, 0, 71]);
    assert_change(
        change(&s, "E00035"),
        "E00035",
        "agnieszka.garcia@acme.example",
        "reactivated",
        Some(4),
        Some("Revenue leadership"),
        "Billing Admin",
        Some("Billing Admin"),
        Some("inactive"),
    );
    assert_eq!(env.json_ok(0, &["admins", "show", "E00001"])["rule_id"], 7);
    assert_eq!(
        auth(&env, "agnieszka.garcia@acme.example"),
        (0, "Billing Admin\n".into())
    );

    // Edit a rule's role: role_changed.
    env.expect(0, &["rules", "edit", "1", "--role", "IT Admin"]);
    let s = env.json_ok(0, &["sync"]);
    assert_counts(&s, [0, 0, 0, 4, 0, 0, 68]);
    assert_change(
        change(&s, "E00057"),
        "E00057",
        "aylin.taylor@acme.example",
        "role_changed",
        Some(1),
        Some("IT managers"),
        "IT Admin",
        Some("Super Admin"),
        Some("active"),
    );

    // Over the deactivation limit: sync holds (exit 3) and applies nothing unless --force.
    env.expect(0, &["rules", "disable", "2"]);
    let before = snapshot(&env);
    let (code, s) = env.json(&["sync"]);
    assert_eq!(code, 3, "{s:#}");
    assert_eq!(s["status"], "held");
    assert_eq!(s["counts"]["deactivated"], 18);
    assert_eq!(snapshot(&env), before);
    let s = env.json_ok(0, &["sync", "--force"]);
    assert_eq!(s["status"], "applied");
    assert_counts(&s, [0, 0, 0, 0, 18, 0, 54]);
    assert_eq!(env.accounts(&["--status", "active"]).len(), 54);
    // Every sync is audited with the user.
    let audit = env.json_ok(0, &["audit"]);
    let syncs = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "sync")
        .count();
    assert!(syncs >= 5, "{audit:#}");
}

#[test]

fn deactivation_by_a_disabled_rule_names_the_rule_in_the_report() {
    let env = day1_applied(Settings::default());
    env.expect(0, &["rules", "disable", "4"]);
    let s = env.json_ok(0, &["sync"]);
    let e35 = change(&s, "E00035");
    assert_eq!(e35["action"], "deactivated");
    assert_eq!(e35["rule_id"], 4);
    assert_eq!(e35["rule"], "Revenue leadership", "{e35:#}");
}

// ---- 9. encodings and config ------------------------------------------------------------

#[test]
fn windows_1252_roster_is_decoded() {
    let env = TestEnv::new();
    for (name, role, when) in [
        ("Zürich office", "HR Admin", vec!["location = Zürich"]),
        ("Šuštar", "IT Admin", vec!["last_name = Šuštar"]),
        (
            "Nordic names",
            "Read-only Admin",
            vec!["first_name in (Hélène, Øystein)"],
        ),
        // Leading zeros are significant: "104" is not "000104".
        ("Not padded", "HR Admin", vec!["employee_id = 104"]),
        ("Leading zeros", "Super Admin", vec!["employee_id = 000104"]),
        (
            "Platform",
            "Billing Admin",
            vec!["job_title = Software Engineer; Platform"],
        ),
        (
            "Eng managers",
            "IT Admin",
            vec!["department = Engineering", "is_manager = true"],
        ),
    ] {
        let mut args = vec!["rules", "add", "--name", name, "--role", role];
        for w in &when {
            args.push("--when");
            args.push(w);
        }
        env.expect(0, &args);
    }
    assert_eq!(
        env.json_ok(0, &["rules", "show", "1"])["conditions"],
        json!(["location = Zürich"])
    );
    let file = env.input_from("windows1252.csv", "windows1252.csv");
    let bytes = fs::read(&file).unwrap();
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the sample is not UTF-8"
    );
    let (code, r) = env.process(&file, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_report_header(&r, "windows1252.csv", &bytes, "applied", 10);
    assert_eq!(r["errors"], json!([]));
    assert_eq!(r["warnings"], json!([]));
    assert_counts(&r, [7, 0, 0, 0, 0, 0, 0]);
    let accounts = env.accounts(&[]);
    let got: Vec<(String, String, String, u64)> = accounts
        .values()
        .map(|a| {
            (
                a["employee_id"].as_str().unwrap().to_string(),
                a["email"].as_str().unwrap().to_string(),
                a["role"].as_str().unwrap().to_string(),
                a["rule_id"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, String, u64)> = [
        ("000101", "helene.dubois@acme.example", "Read-only Admin", 3),
        ("000102", "jurgen.muller@acme.example", "HR Admin", 1),
        ("000104", "zoe.bronte@acme.example", "Super Admin", 5),
        ("000106", "ziga.sustar@acme.example", "IT Admin", 2),
        ("000107", "francois.lefevre@acme.example", "IT Admin", 7),
        (
            "000108",
            "bjork.gudmundsdottir@acme.example",
            "Billing Admin",
            6,
        ),
        ("000109", "oystein.bo@acme.example", "Read-only Admin", 3),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        auth(&env, "ziga.sustar@acme.example"),
        (0, "IT Admin\n".into())
    );
}

#[test]
fn config_env_overrides_and_unknown_keys() {
    // The file sets the limits; the environment overrides one key.
    let env = TestEnv::with(Settings {
        max_grants: Some((50, 20)),
        max_deactivations: Some((10, 20)),
        ..Settings::default()
    });
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let (code, r) = env.process(&day1, &[]);
    assert_eq!(code, 3, "without the override day1 is held: {r:#}");
    assert_eq!(env.json(&["files", "reject", "1"]).1["status"], "rejected");
    let mut args: Vec<&std::ffi::OsStr> = vec!["--json".as_ref(), "process".as_ref()];
    args.push(day1.as_os_str());
    let (code, out, err) = env.run_env(&args, &[("AUTOPROV__SAFETY__MAX_GRANTS__COUNT", "1000")]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "applied");
    assert_counts(&r, [82, 0, 0, 0, 0, 0, 0]);
    // The override is per process: the file's limit is back for the next command.
    env.expect(0, &["rules", "disable", "2"]);
    assert_eq!(env.json(&["sync"]).0, 3);
    assert_eq!(
        env.run_env(
            &["sync"],
            &[("AUTOPROV__SAFETY__MAX_DEACTIVATIONS__COUNT", "100")]
        )
        .0,
        0
    );
    // Overrides reach other sections too: SSO off from the environment.
    let (code, _, err) = env.run_env(&["sync"], &[("AUTOPROV__SSO__ENABLED", "false")]);
    assert_eq!(code, 2, "{err}");
    // A text key keeps what was written, digits and all (it had been read as a number:
    // "007" became "7").
    let (code, out, err) = env.run_env(&["status"], &[("AUTOPROV__SSO__PROVIDER", "007")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sso:") && out.contains("(007)"), "{out}");

    // Unknown keys: exit 2 naming the key, in the file or in the environment.
    let mut bad = TestEnv::new();
    bad.reconfigure(|s| s.extra_toml = "[roster]\nbogus_key = 1\n".into());
    let (code, out, err) = bad.run(&["status"]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(format!("{out}{err}").contains("bogus_key"), "{out}{err}");
    let text = fs::read_to_string(&bad.config).unwrap();
    fs::write(
        &bad.config,
        format!(
            "surprise_top_level = true\n{}",
            text.replace("bogus_key = 1", "")
        ),
    )
    .unwrap();
    let (code, out, err) = bad.run(&["rules", "list"]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        format!("{out}{err}").contains("surprise_top_level"),
        "{out}{err}"
    );
    // A section's required key given by the environment does not leave the keys after it
    // unchecked: the file's `max_rows = "5"` is a string, refused with its line, not read
    // as 5.
    let mut late = TestEnv::new();
    late.reconfigure(|s| {
        s.extra_toml = "[source]\nmode = \"poll\"\n[source.remote]\nuser = \"u\"\n\
                        private_key = \"k\"\nknown_host_key = \"x\"\ninbox = \"i\"\n\
                        processed = \"p\"\nrejected = \"r\"\n[roster]\nmax_rows = \"5\"\n"
            .into()
    });
    let (code, out, err) = late.run_env(
        &["status"],
        &[("AUTOPROV__SOURCE__REMOTE__HOST", "sftp.example.com")],
    );
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("expected u64") && err.contains("line "),
        "{err}"
    );
    let ok = TestEnv::new();
    let (code, out, err) = ok.run_env(&["status"], &[("AUTOPROV__SSO__SURPRISE_KEY", "1")]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(format!("{out}{err}").contains("surprise_key"), "{out}{err}");
    // Without a daemon, the status says so (it had read as a running one's, minus a line).
    let (code, out, err) = ok.run(&["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("daemon:    NOT RUNNING"), "{out}");
}

/// A config file in a folder the user may not enter is an error saying so, not one that
/// "does not exist" (without --config, the next default path, a stray ./autoprov.toml, had
/// been taken, with another store).
#[test]
fn a_config_the_user_cannot_look_at_is_not_said_to_be_missing() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let folder = env.config.parent().unwrap().to_path_buf();
    let open = fs::metadata(&folder).unwrap().permissions();
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o700)).unwrap();
    let (code, out, err) = env.run_as("nobody", "nogroup", &["status"]);
    fs::set_permissions(&folder, open).unwrap();
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("cannot tell whether it exists"), "{err}");
    assert!(!err.contains("does not exist"), "{err}");
}

#[test]

fn env_override_of_one_limit_key_keeps_the_other_default() {
    let env = TestEnv::new();
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let mut args: Vec<&std::ffi::OsStr> = vec!["--json".as_ref(), "process".as_ref()];
    args.push(day1.as_os_str());
    let (code, out, err) = env.run_env(&args, &[("AUTOPROV__SAFETY__MAX_GRANTS__COUNT", "1000")]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "applied");
}

#[test]

fn files_reject_of_a_held_file_exits_0() {
    let env = TestEnv::new();
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    assert_eq!(env.process(&day1, &[]).0, 3);
    let (code, v) = env.json(&["files", "reject", "1"]);
    assert_eq!(v["status"], "rejected");
    assert_eq!(code, 0, "{v:#}");
}

// ---- more of SPEC §1, §3, §4 ----------------------------------------------------------

#[test]
fn approval_replans_a_held_file_against_the_current_rules() {
    let env = TestEnv::new();
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let (code, held) = env.process(&day1, &[]);
    assert_eq!(code, 3);
    assert_counts(&held, [82, 0, 0, 0, 0, 0, 0]);
    let name = filed(&env, "held", "day1.csv");
    // Rule 7's 17 winners match no other rule once it is disabled.
    env.expect(0, &["rules", "disable", "7"]);
    // SPEC §4: the plan differs from the one shown, so nothing is applied and the held
    // report shows the new plan; the second approval applies it.
    let out = env.expect(3, &["files", "approve", "1"]);
    assert!(
        out.contains("17 employees' changes differ (created 82 -> 65)"),
        "{out}"
    );
    assert!(env.accounts(&[]).is_empty());
    assert_eq!(env.report_file("held", &name)["counts"]["created"], 65);
    let approved = env.json_ok(0, &["files", "approve", "1"]);
    assert_eq!(approved["status"], "applied");
    assert_counts(&approved, [65, 0, 0, 0, 0, 0, 0]);
    assert!(
        approved["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["rule_id"] != 7),
        "{approved:#}"
    );
    assert_eq!(env.report_file("processed", &name)["counts"]["created"], 65);
    assert_eq!(env.accounts(&[]).len(), 65);
    assert!(env.accounts(&["--rule", "7"]).is_empty());
}

#[test]
fn warnings_do_not_stop_a_file_and_emails_follow_the_roster() {
    let env = TestEnv::new();
    env.expect(
        0,
        &[
            "rules",
            "add",
            "--name",
            "it",
            "--role",
            "IT Admin",
            "--when",
            "department = IT",
        ],
    );
    let text = "Employee ID,Work Email,Manager ID,Department,IsManager\n\
                A1,a1@x.example,ZZZ,IT,yes\n\
                A2,a2@x.example,A2,IT,no\n\
                A3,a3@x.example,A4,IT,no\n\
                A4,a4@x.example,A3,IT,no\n\n\n";
    let file = env.input("warn.csv", text.as_bytes());
    let (code, r) = env.process(&file, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "applied");
    assert_eq!(r["errors"], json!([]));
    assert_counts(&r, [4, 0, 0, 0, 0, 0, 0]);
    let places: Vec<Place> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["line"].as_u64(), w["column"].as_str().map(str::to_owned)))
        .collect();
    let m = Some("Manager ID".to_string());
    for want in [
        (Some(1), Some("IsManager".to_string())), // ignored column
        (Some(2), m.clone()),                     // unknown manager
        (Some(3), m.clone()),                     // own manager
    ] {
        assert!(places.contains(&want), "{want:?} not in {places:?}");
    }
    assert!(
        places.contains(&(Some(4), m.clone())) || places.contains(&(Some(5), m.clone())),
        "reporting cycle: {places:?}"
    );
    assert!(
        places.iter().any(|(l, _)| *l == Some(6)),
        "blank trailing lines: {places:?}"
    );
    assert_eq!(places.len(), 5, "{:#}", r["warnings"]);
    let txt = env.report_text("processed", &filed(&env, "processed", "warn.csv"));
    assert!(txt.contains("line 2") && txt.contains("ZZZ"), "{txt}");

    // Only A1's email changes: an email update alone is no action, and sign-in follows it.
    let file = env.input(
        "warn2.csv",
        text.replace("a1@x.example", "A1.New@x.example").as_bytes(),
    );
    let (code, r) = env.process(&file, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_counts(&r, [0, 0, 0, 0, 0, 0, 4]);
    assert_eq!(r["changes"], json!([]));
    let a1 = env.json_ok(0, &["admins", "show", "A1"]);
    assert_eq!(a1["email"], "A1.New@x.example");
    assert_eq!(a1["status"], "active");
    assert_eq!(auth(&env, "a1@x.example").0, 1);
    assert_eq!(auth(&env, "a1.new@x.example"), (0, "IT Admin\n".into()));
}

/// Issue 10 point 8: an email is one person's identity (SPEC §1, §3). Two active employees
/// sharing one email reject the file at the second line, in the email column; a roster row
/// carrying a manual admin's email creates no account beside it (a warning names both), so
/// the manual admin can still sign in; `admins add` refuses an email an active account holds.
#[test]
fn an_email_is_one_persons_identity() {
    let env = TestEnv::new();
    env.expect(
        0,
        &[
            "rules",
            "add",
            "--name",
            "it",
            "--role",
            "IT Admin",
            "--when",
            "department = IT",
        ],
    );
    let shared = "Employee ID,Work Email,Department,Status\n\
                  A1,ann@x.example,IT,active\n\
                  A2,bob@x.example,IT,terminated\n\
                  A3,ANN@X.example,IT,active\n";
    let (code, r) = env.process(&env.input("shared.csv", shared.as_bytes()), &[]);
    assert_eq!((code, r["status"].as_str()), (1, Some("rejected")), "{r:#}");
    assert_eq!(r["errors"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(r["errors"][0]["line"], 4);
    assert_eq!(r["errors"][0]["column"], "Work Email");
    assert!(env.accounts(&[]).is_empty());

    let boss = [
        "admins",
        "add",
        "--employee-id",
        "M1",
        "--email",
        "Boss@x.example",
        "--role",
        "Super Admin",
    ];
    env.json_ok(0, &boss);
    let text = "Employee ID,Work Email,Department\nA1,ann@x.example,IT\nA2,boss@x.example,IT\n";
    let (code, r) = env.process(&env.input("roster.csv", text.as_bytes()), &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_counts(&r, [1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r["changes"][0]["employee_id"], "A1");
    let warning = &r["warnings"][0];
    assert_eq!(
        (warning["line"].as_u64(), warning["column"].as_str()),
        (Some(3), Some("Work Email"))
    );
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("\"A2\"") && message.contains("\"M1\""),
        "{message}"
    );
    let (code, out, _) = env.run(&["auth", "check", "BOSS@x.example"]);
    assert_eq!(
        (code, out.trim()),
        (0, "Super Admin"),
        "the manual admin still signs in"
    );

    let out = env.expect(
        3,
        &[
            "admins",
            "add",
            "--employee-id",
            "M2",
            "--email",
            "ANN@x.example",
            "--role",
            "HR Admin",
        ],
    );
    assert!(out.contains("A1"), "names the holder: {out}");
    assert!(env.accounts(&[]).iter().all(|(id, _)| id != "M2"));
}

/// A closed stderr (a `| head` on the log, journald restarted under the daemon) loses log
/// lines, never the run: before, the first line that could not be written panicked the
/// thread that logged it (tracing-subscriber reports write errors with `eprintln!`), and a
/// sled writer thread that died so left every later flush waiting forever.
#[test]
fn a_closed_stderr_loses_log_lines_not_the_run() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let env = TestEnv::with(Settings {
        max_grants: Some((1000, 100)),
        ..Settings::default()
    });
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let mut child = env
        .command()
        .args(["--json", "process"])
        .arg(&day1)
        // sled logs at debug level from its own threads, to the end of the run.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn autoprov");
    drop(child.stderr.take());
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).expect("stdout"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("autoprov still running 60 s after its stderr was closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status}");
    let report: Value = serde_json::from_str(&reader.join().unwrap()).expect("the report");
    assert_eq!(report["status"], "applied");
    assert_counts(&report, [82, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        env.files_in("processed").len(),
        3,
        "the roster and its two reports"
    );
}

/// A reader that stops early (`autoprov admins list | head`) ends the listing quietly with
/// the command's exit code, not as a failure.
#[test]
fn a_reader_that_stops_early_is_not_a_failure() {
    let env = day1_applied(Settings::default());
    // Closed before the store is even open: every write of the listing fails.
    let (code, stderr) = env.run_reader_gone(&["admins", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// An answer stdout cannot take (a full disk) is a failure told on stderr, exit 5, saying
/// what the answer was; it had been lost with exit 0 (`--json` failures silently). A
/// failure's own answer keeps its code, told on stderr.
#[test]
fn an_answer_stdout_cannot_take_is_a_failure_told_on_stderr() {
    let env = TestEnv::with(Settings {
        max_grants: Some((1000, 100)),
        ..Settings::default()
    });
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let run = |args: &[&str]| {
        let out = env.command().args(args).stdout(full()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--json", "process", day1.to_str().unwrap()]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("No space left") && err.contains("answer was exit 0"),
        "{err}"
    );
    assert!(
        err.contains("see autoprov files list before sending it again"),
        "{err}"
    );
    // A failure's own (nothing was done) keeps its code and is said on stderr.
    let (code, err) = run(&["--json", "process", "/nonexistent.csv"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("nonexistent.csv") && !err.contains("answer was exit"),
        "{err}"
    );
    assert_eq!(
        env.json_ok(0, &["files", "list"]).as_array().unwrap().len(),
        1,
        "filed"
    );
    for args in [
        &["--json", "files", "show", "1"][..],
        &["status"],
        &["--json", "admins", "list"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(5), "{args:?}: {err}");
        assert!(
            err.contains("failed: writing the answer: No space left"),
            "{args:?}: {err}"
        );
    }
}

/// `process` of a pipe (`autoprov process /dev/stdin < …`, a process substitution) copies
/// what it gives; a regular file is read before the store opens (issue 14), and both are
/// filed byte for byte as processed.
#[test]
fn process_reads_a_pipe_and_a_regular_file_alike() {
    use std::io::Write;
    use std::process::Stdio;
    let env = TestEnv::with(Settings {
        max_grants: Some((1000, 100)),
        ..Settings::default()
    });
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    let bytes = std::fs::read(&day1).unwrap();
    let mut child = env
        .command()
        .args(["--json", "process", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn autoprov");
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report");
    assert_eq!(report["status"], "applied");
    assert_counts(&report, [82, 0, 0, 0, 0, 0, 0]);
    assert_eq!(report["sha256"], sha256_hex(&bytes));

    // The same bytes from a regular file: applied already, nothing to change.
    let (code, out, err) = env.run(&["--json", "process", day1.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_counts(&report, [0, 0, 0, 0, 0, 0, 82]);
    assert_eq!(report["sha256"], sha256_hex(&bytes));
    let processed = env.files_in("processed");
    let rosters: Vec<_> = processed
        .iter()
        .filter(|n| !n.contains(".report."))
        .collect();
    assert_eq!(rosters.len(), 2, "{processed:?}");
    for name in rosters {
        assert_eq!(
            std::fs::read(env.drop_dir("processed").join(name)).unwrap(),
            bytes
        );
    }
}

/// A column alias given in the environment, as every key may be (SPEC §7): the roster's
/// "Badge Number" is read as the employee ID; without the override the file is rejected.
#[test]
fn a_column_alias_from_the_environment_is_a_list_like_the_files() {
    let env = TestEnv::with(Settings::default());
    let roster = env.root().join("badges.csv");
    fs::write(
        &roster,
        "Badge Number,Work Email,Department,Employment Status\nB1,b1@acme.example,IT,Active\n",
    )
    .unwrap();
    let (code, report) = env.process(&roster, &["--dry-run"]);
    assert_eq!(
        code, 1,
        "no employee ID column without the alias: {report:#}"
    );
    let (code, out, err) = env.run_env(
        &["--json", "process", roster.to_str().unwrap(), "--dry-run"],
        &[(
            "AUTOPROV__ROSTER__COLUMNS__EMPLOYEE_ID",
            "Badge Number,Badge",
        )],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "dry_run", "{report:#}");
    assert_eq!(report["rows"], 1, "{report:#}");
}

/// `process` is audited as the person who ran it; `audit --since` takes a time in any RFC
/// 3339 form (an offset, lower case) as the instant it names, and refuses one that is not
/// a time (exit 2); `rules show` prints the rule's conflicts as `rules add` does (SPEC §7).
#[test]
fn process_is_audited_as_its_user_and_audit_since_reads_any_rfc_3339_time() {
    let env = TestEnv::with(Settings::default());
    let add = |name: &str, role: &str| {
        env.json_ok(
            0,
            &[
                "rules",
                "add",
                "--name",
                name,
                "--role",
                role,
                "--when",
                "department = IT",
            ],
        )
    };
    add("IT staff", "IT Admin");
    let second = add("IT too", "HR Admin");
    assert!(
        !second["conflicts"].as_array().unwrap().is_empty(),
        "{second:#}"
    );
    let shown = env.json_ok(0, &["rules", "show", &second["id"].to_string()]);
    assert_eq!(shown["conflicts"], second["conflicts"], "{shown:#}");
    let (code, report) = env.process(&env.input_from("sequence/day1.csv", "day1.csv"), &[]);
    assert!(code == 0 || code == 3, "{report:#}");
    let audit = env.json_ok(0, &["audit"]);
    let filed = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("file ")
        })
        .expect("the file's audit entry");
    assert_eq!(filed["user"], current_user(), "{audit:#}");
    // The newest entry's instant, written with an offset two hours east and in lower case.
    let newest = audit.as_array().unwrap().last().unwrap()["at"]
        .as_str()
        .unwrap()
        .to_string();
    let at = humantime::parse_rfc3339(&newest).unwrap() + std::time::Duration::from_secs(7200);
    let east = humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace('Z', "+02:00")
        .to_lowercase();
    let since = env.json_ok(0, &["audit", "--since", &east]);
    assert!(
        since
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["at"] == newest.as_str()),
        "{east}: {since:#}"
    );
    let (code, _, err) = env.run(&["audit", "--since", "yesterday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a time"), "{err}");
}

/// With `--log-format json` the per-file span names the file under `file`: under `name` it
/// was a second `name` key beside the span's own, and a JSON parser kept only `"file"`.
#[test]
fn json_logs_name_the_file_in_its_span() {
    let env = TestEnv::with(Settings {
        log_level: "info".into(),
        ..Settings::default()
    });
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.dryrun.csv");
    let (code, out, err) = env.run(&["--log-format", "json", "process", day1.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let spans: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("span").cloned())
        .filter(|s| s["name"] == "file")
        .collect();
    assert!(!spans.is_empty(), "{err}");
    assert!(
        spans.iter().all(|s| s["file"] == "day1.dryrun.csv"),
        "{spans:?}"
    );
}

/// Ctrl-C (SIGINT) while `process` runs without a daemon: the roster it began is taken and
/// filed, audited as the person's, and then the command dies of the signal (so that a
/// script running it stops too). Killed half-way, it had left its copy in inbox/ with the
/// store unchanged, and the next command or daemon start applied the roster unasked,
/// audited as `autoprov`. A SIGINT the caller ignores (a background job's) stays ignored.
#[test]
fn an_interrupted_process_finishes_its_roster_then_dies_of_the_signal() {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let env = TestEnv::new();
    env.load_sample_rules();
    // Runs `process` paused before its commit, sends SIGINT there: (status, stdout, stderr).
    let interrupted = |name: &str, ignored: bool| {
        let file = env.input_from("sequence/day1.csv", name);
        let mut cmd = env.command();
        if ignored {
            // As a shell starts a background job: SIGINT ignored, kept so across exec.
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg("trap '' INT; exec \"$@\"")
                .arg("sh")
                .arg(program)
                .args(args)
                .current_dir(env.root());
        }
        let mut child = cmd
            .args(["--json", "process"])
            .arg(&file)
            .env("AUTOPROV_PAUSE_AT", "before_stage")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run autoprov");
        // Once it says it pauses before staging, it is in the middle of the file.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        while !said.contains("AUTOPROV_PAUSE_AT=before_stage: pausing") {
            assert!(
                err.read_line(&mut said).unwrap() > 0,
                "ended before pausing: {said}"
            );
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        err.read_to_string(&mut said).unwrap();
        (child.wait().unwrap(), out, said)
    };
    let (status, out, said) = interrupted("day1.csv", false);
    assert_eq!(status.signal(), Some(2), "{status:?}: {said}");
    assert!(
        said.contains("processed and filed with its report, held"),
        "{said}"
    );
    assert!(out.is_empty(), "{out}");
    // Filed for good before it died: the next command has no filing left to finish (it
    // had, and a daemon started then had posted the held file as its own).
    let (code, _, next) = env.run_env(&["files", "list"], &[("AUTOPROV__LOG__LEVEL", "info")]);
    assert_eq!(code, 0, "{next}");
    assert!(!next.contains("finishing the filing"), "{next}");
    let inbox: Vec<_> = fs::read_dir(env.drop_dir("inbox")).unwrap().collect();
    assert!(inbox.is_empty(), "{inbox:?}");
    // A first import of day 1 is held by the safety limits: taken all the same.
    let files = env.json_ok(0, &["files", "list"]);
    assert_eq!(files[0]["status"], "held", "{files:#}");
    let audit = env.json_ok(0, &["audit"]);
    let held = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "file held")
        .expect("the file's audit entry");
    assert_eq!(held["user"], current_user(), "{held:#}");
    // Ignored by its caller, the signal changes nothing: the file is held again (exit 3),
    // its report printed.
    let id = files[0]["id"].to_string();
    env.json_ok(0, &["files", "reject", &id]);
    let (status, out, said) = interrupted("again.csv", true);
    assert_eq!(status.code(), Some(3), "{status:?}: {said}");
    assert!(!said.contains("finished first"), "{said}");
    assert!(!out.is_empty(), "{said}");
    // A file waiting in inbox/ ahead of it is held: this one is then not taken, and the
    // signal's message gives the refusal (it had said "taken and filed").
    let files = env.json_ok(0, &["files", "list"]);
    let held = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["status"] == "held");
    env.json_ok(0, &["files", "reject", &held.unwrap()["id"].to_string()]);
    fs::copy(
        testdata("sequence/day1.csv"),
        env.drop_dir("inbox").join("aaa.csv"),
    )
    .unwrap();
    let (status, _, said) = interrupted("zzz.csv", false);
    assert_eq!(status.signal(), Some(2), "{status:?}: {said}");
    assert!(
        said.contains("SIGINT: refused: an earlier file") && said.contains("was not processed"),
        "{said}"
    );
    let inbox: Vec<_> = fs::read_dir(env.drop_dir("inbox")).unwrap().collect();
    assert!(inbox.is_empty(), "{inbox:?}");
}
