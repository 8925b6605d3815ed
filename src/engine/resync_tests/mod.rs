//! A roster re-synced from its changes gives, report and accounts, exactly what reading it
//! in full gives: random rosters (managers in and out of the file, their own managers,
//! leavers, manual accounts) edited at random, each edit processed by two pipelines, one of
//! which may re-sync from its record of the last roster while the other never can.

use super::filing::Content;
use super::pipeline::Pipeline;
use super::resync::RESYNCED;
use crate::core::accounts::{Account, Origin};
use crate::core::reconcile::{Action, Change};
use crate::core::report::{Report, ReportStatus};
use crate::core::roster::RosterOptions;
use crate::core::rules::{Condition, Rule};
use crate::layout::DRY_RUN_SUFFIX;
use crate::store::{AuditNote, MemoryStore, SledStore, Store};
use proptest::prelude::*;
use std::fs;
use tempfile::TempDir;

mod random;

/// As written in the file: the last one quoted, over two lines.
const DEPARTMENTS: [&str; 4] = ["IT", "Sales", "Ops", "\"Ops,\r\nNorth\""];
const STATUSES: [&str; 3] = ["active", "active", "terminated"];
/// The manual account's email.
const TAKEN: &str = "taken@x.example";
/// The line ends a file may have; a file may have other ones than the file before it.
const LINE_ENDS: [&str; 3] = ["\n", "\r\n", "\r"];

#[derive(Clone, Debug)]
struct Row {
    id: String,
    email: String,
    /// A row's index, or one of the special managers below.
    manager: Manager,
    department: &'static str,
    status: &'static str,
}

#[derive(Clone, Copy, Debug)]
enum Manager {
    None,
    /// A row's ID, whichever row is at that index when the file is written.
    Row(usize),
    /// `E<n>`, an ID in the file or not: an unchanged row keeps naming it when its row goes.
    Named(usize),
    Own,
    /// `X999`, which is not in the file until an edit adds it.
    NotInFile,
}

#[derive(Clone, Debug)]
enum Edit {
    Department(usize, usize),
    Status(usize, usize),
    Manager(usize, Manager),
    Remove(usize),
    Add(usize, Manager),
    Move(usize, usize),
    SameEmail(usize, usize),
    /// The manual account's email on a row.
    TakenEmail(usize),
    /// Another ID on a row: a removed one back, or a repeated one.
    Rename(usize, usize),
    /// A row for `X999`, the manager rows name who is not in the file.
    AddMissingManager,
}

fn manager() -> impl Strategy<Value = Manager> {
    prop_oneof![
        2 => (0usize..64).prop_map(Manager::Row),
        2 => (0usize..48).prop_map(Manager::Named),
        2 => Just(Manager::None),
        1 => Just(Manager::Own),
        1 => Just(Manager::NotInFile),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (0usize..64, 0usize..4).prop_map(|(r, d)| Edit::Department(r, d)),
        2 => (0usize..64, 0usize..3).prop_map(|(r, s)| Edit::Status(r, s)),
        2 => (0usize..64, manager()).prop_map(|(r, m)| Edit::Manager(r, m)),
        2 => (0usize..64).prop_map(Edit::Remove),
        2 => (0usize..1000, manager()).prop_map(|(n, m)| Edit::Add(n, m)),
        1 => (0usize..64, 0usize..64).prop_map(|(a, b)| Edit::Move(a, b)),
        1 => (0usize..64, 0usize..64).prop_map(|(a, b)| Edit::SameEmail(a, b)),
        1 => (0usize..64).prop_map(Edit::TakenEmail),
        1 => (0usize..64, 0usize..64).prop_map(|(a, b)| Edit::Rename(a, b)),
        1 => Just(Edit::AddMissingManager),
    ]
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((manager(), 0usize..4, 0usize..3), 6..40).prop_map(|cells| {
        cells
            .into_iter()
            .enumerate()
            .map(|(i, (manager, d, s))| Row {
                id: format!("E{i:03}"),
                email: format!("e{i}@x.example"),
                manager,
                department: DEPARTMENTS[d],
                status: STATUSES[s],
            })
            .collect()
    })
}

/// The roster's bytes, its lines ending in `end`.
fn render(rows: &[Row], end: &str) -> Vec<u8> {
    let mut out = format!("employee_id,email,manager_id,department,status{end}");
    for r in rows {
        let manager = match r.manager {
            Manager::None => String::new(),
            Manager::Row(j) => rows[j % rows.len()].id.clone(),
            Manager::Named(k) => format!("E{k:03}"),
            Manager::Own => r.id.clone(),
            Manager::NotInFile => "X999".into(),
        };
        out.push_str(&format!(
            "{},{},{manager},{},{}{end}",
            r.id, r.email, r.department, r.status
        ));
    }
    out.into_bytes()
}

fn apply(rows: &mut Vec<Row>, edit: &Edit) {
    let n = rows.len();
    match *edit {
        Edit::Department(r, d) => rows[r % n].department = DEPARTMENTS[d],
        Edit::Status(r, s) => rows[r % n].status = STATUSES[s],
        Edit::Manager(r, m) => rows[r % n].manager = m,
        Edit::Remove(r) if n > 2 => {
            rows.remove(r % n);
        }
        Edit::Remove(_) => {}
        Edit::Add(k, manager) => rows.push(Row {
            id: format!("N{k:03}"),
            email: format!("n{k}@x.example"),
            manager,
            department: "IT",
            status: "active",
        }),
        Edit::Move(a, b) => {
            let row = rows.remove(a % n);
            rows.insert(b % n, row);
        }
        Edit::SameEmail(a, b) => rows[a % n].email = rows[b % n].email.clone(),
        Edit::TakenEmail(r) => rows[r % n].email = TAKEN.into(),
        Edit::Rename(r, k) => rows[r % n].id = format!("E{k:03}"),
        Edit::AddMissingManager => rows.push(Row {
            id: "X999".into(),
            email: "x999@x.example".into(),
            manager: Manager::None,
            department: "Sales",
            status: "active",
        }),
    }
}

fn note() -> AuditNote {
    AuditNote {
        at: "2026-01-01T00:00:00Z".into(),
        user: "tester".into(),
        action: "setup".into(),
        detail: String::new(),
    }
}

/// A pipeline with three rules and a manual account of `manual`; with `strict` safety
/// limits, which hold a file that grants or deactivates more than 2 accounts and 10 %.
fn pipeline(manual: &str, strict: bool) -> (TempDir, Pipeline<MemoryStore>) {
    pipeline_on(manual, strict, |_| MemoryStore::new())
}

/// [`pipeline`] on a sled store in the data folder, as the daemon keeps it.
fn sled_pipeline(manual: &str, strict: bool) -> (TempDir, Pipeline<SledStore>) {
    pipeline_on(manual, strict, |store| SledStore::open(store).unwrap())
}

fn pipeline_on<S: Store>(
    manual: &str,
    strict: bool,
    store: impl FnOnce(&std::path::Path) -> S,
) -> (TempDir, Pipeline<S>) {
    let (dir, p) = super::tests::pipeline_on(
        match strict {
            true => {
                "[safety]\nmax_grants = { count = 2, percent = 10 }\n\
                 max_deactivations = { count = 2, percent = 10 }\n"
            }
            false => {
                "[safety]\nmax_grants = { count = 100000, percent = 100 }\n\
                 max_deactivations = { count = 100000, percent = 100 }\n"
            }
        },
        store,
    );
    for (name, when, role) in [
        ("managers", "is_manager = true", "HR Admin"),
        ("it", "department = IT", "IT Admin"),
        ("field", "department in (Sales, Ops)", "Billing Admin"),
    ] {
        let rule = Rule {
            id: p.store.next_rule_id().unwrap(),
            name: name.into(),
            role: role.into(),
            conditions: vec![Condition::parse(when).unwrap()],
            enabled: true,
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: "tester".into(),
        };
        p.store.put_rule(&rule, note()).unwrap();
    }
    let account = Account {
        email: TAKEN.into(),
        role: "Super Admin".into(),
        origin: Origin::Manual,
        rule_id: None,
        ..crate::store::samples::account(manual)
    };
    p.store.put_account(&account, false, note()).unwrap();
    (dir, p)
}

fn submit<S: Store>(p: &Pipeline<S>, name: &str, bytes: &[u8]) -> Report {
    let name = p
        .receive(name, Content::Stream(&mut &bytes[..]), false, None)
        .unwrap()
        .0;
    p.process(&name).unwrap()
}

/// A report without what differs between two runs of one file (when, and the names filed:
/// of an earlier file of the same bytes, whether there is one).
fn comparable(report: &Report) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    let object = value.as_object_mut().unwrap();
    for key in ["stored_as", "received_at", "processed_at"] {
        object.remove(key);
    }
    if let Some(decision) = object.get_mut("decision").and_then(|d| d.as_object_mut()) {
        decision.remove("at");
    }
    object.insert("repeats".into(), report.repeats.is_some().into());
    value
}

/// The accounts without their times (nor a file's own, first in its stored name).
fn accounts<S: Store>(p: &Pipeline<S>) -> Vec<String> {
    let entry = |h: &crate::core::accounts::HistoryEntry| {
        let (_, source) = h.source.split_once("Z_").unwrap_or(("", &h.source));
        format!("{source} {:?} {} {}", h.status, h.role, h.reason)
    };
    let mut all: Vec<String> = (p.store.accounts().unwrap().iter())
        .map(|a| {
            let history: Vec<String> = a.history.iter().map(entry).collect();
            format!(
                "{} {} {} {:?} {:?} {:?} {history:?}",
                a.employee_id, a.email, a.role, a.status, a.origin, a.rule_id
            )
        })
        .collect();
    all.sort();
    all
}

/// Gives a file to `a`, which may re-sync it from its record, and to `b`, which never can,
/// and compares what they report and hold; a held file is approved in both (then `true`),
/// and with `then_sync` both run a `sync` after it.
fn both<S: Store>(
    a: &Pipeline<S>,
    b: &Pipeline<S>,
    name: &str,
    bytes: &[u8],
    then_sync: bool,
) -> Result<bool, TestCaseError> {
    let no_record = || {
        let _ = fs::remove_file(super::resync::path(&b.paths.store));
    };
    no_record();
    let (fast, full) = (submit(a, name, bytes), submit(b, name, bytes));
    prop_assert_eq!(comparable(&fast), comparable(&full), "file {}", name);
    if fast.status == ReportStatus::Held {
        let id = |p: &Pipeline<S>| p.held().unwrap().expect("a held file").id;
        no_record();
        let (fast, full) = (a.approve(id(a), "tester"), b.approve(id(b), "tester"));
        prop_assert_eq!(
            fast.map(|r| comparable(&r)).map_err(|e| e.to_string()),
            full.map(|r| comparable(&r)).map_err(|e| e.to_string()),
            "approving {}",
            name
        );
    }
    if then_sync {
        let sync = |p: &Pipeline<S>| {
            (p.sync("tester", false).map(|r| comparable(&r))).map_err(|e| e.to_string())
        };
        prop_assert_eq!(sync(a), sync(b), "sync after {}", name);
    }
    prop_assert_eq!(accounts(a), accounts(b), "after {}", name);
    Ok(fast.status == ReportStatus::Held)
}

#[test]
fn a_rule_or_account_changed_since_the_last_roster_has_the_next_read_in_full() {
    let (_dir, p) = pipeline("E001", false);
    let mut rows = staff();
    let file = |rows: &[Row], k: usize| submit(&p, &format!("r{k}.csv"), &render(rows, "\n"));
    file(&rows, 0);
    let before = resynced();
    rows[3].department = "IT";
    file(&rows, 1);
    assert_eq!(resynced(), before + 1, "nothing else changed: re-synced");
    // A sync reads the last roster in full, though its record is current (an operator runs
    // it to have that roster evaluated again, whatever was derived from it before), and
    // leaves the record as it was.
    let synced = p.sync("tester", false).unwrap();
    assert_eq!(resynced(), before + 1, "a sync reads in full");
    assert_eq!(synced.rows, 12);
    let only_manual = |c: &Change| c.action == Action::SkippedManual;
    assert!(
        synced.changes.iter().all(only_manual),
        "{:?}",
        synced.changes
    );
    assert!(super::resync::path(&p.paths.store).exists());
    let mut rule = p.store.rules().unwrap()[1].clone();
    rule.enabled = false;
    p.store.put_rule(&rule, note()).unwrap();
    rows[4].department = "IT";
    let report = file(&rows, 2);
    assert_eq!(resynced(), before + 1, "a rule changed: read in full");
    assert!(report.counts.deactivated > 0, "{:?}", report.counts);
    rows[5].department = "Sales";
    file(&rows, 3);
    assert_eq!(
        resynced(),
        before + 2,
        "re-synced again from the file read in full"
    );
    let mut manual = p.store.account("E001").unwrap().unwrap();
    manual.role = "HR Admin".into();
    p.store.put_account(&manual, false, note()).unwrap();
    rows[6].department = "Ops";
    file(&rows, 4);
    assert_eq!(
        resynced(),
        before + 2,
        "an account changed by hand: read in full"
    );
}

/// The last roster's file in processed/ written again in place, to the same length, before
/// the next file: the next file is read in full, not compared with what is there now (a row
/// changed in both would otherwise be taken for unchanged, and its account left as it was).
#[test]
fn a_last_roster_changed_in_processed_has_the_next_read_in_full() {
    let (_dir, p) = pipeline("E001", false);
    let mut rows = staff();
    rows[5].department = "Sales";
    let first = submit(&p, "r0.csv", &render(&rows, "\n"));
    let e005 = || p.store.account("E005").unwrap().unwrap();
    assert_eq!(
        (e005().role.as_str(), e005().is_active()),
        ("Billing Admin", true)
    );
    let processed = p.paths.folder("processed").join(first.stored_as.unwrap());
    let text = fs::read_to_string(&processed).unwrap();
    let edited = text.replace(
        "E005,e5@x.example,E000,Sales",
        "E005,e5@x.example,E000,Legal",
    );
    assert_ne!(edited, text, "the row edited");
    assert_eq!(edited.len(), text.len());
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&processed, edited).unwrap();
    let before = resynced();
    rows[5].department = "Legal";
    let report = submit(&p, "r1.csv", &render(&rows, "\n"));
    assert_eq!(resynced(), before, "read in full");
    let change = report.changes.iter().find(|c| &*c.employee_id == "E005");
    assert_eq!(
        change.map(|c| c.action),
        Some(Action::Deactivated),
        "{report:?}"
    );
    assert!(!e005().is_active());
    // The file read in full leaves a record of its own: the next is re-synced again.
    rows[6].department = "IT";
    submit(&p, "r2.csv", &render(&rows, "\n"));
    assert_eq!(resynced(), before + 1, "re-synced from the new record");
}

#[test]
fn a_record_made_with_other_roster_settings_is_not_used() {
    let (_dir, p) = pipeline("E001", false);
    let mut rows: Vec<Row> = (0..8)
        .map(|i| Row {
            id: format!("E{i:03}"),
            email: format!("e{i}@x.example"),
            manager: Manager::None,
            department: DEPARTMENTS[i % 3],
            status: "active",
        })
        .collect();
    submit(&p, "r0.csv", &render(&rows, "\n"));
    rows[2].status = "terminated";
    let bytes = render(&rows, "\n");
    let enabled: Vec<Rule> = p.store.rules().unwrap();
    let needed = crate::core::rules::needed_fields(&enabled, &p.cfg.columns());
    let mut opts = p.cfg.roster_options(needed);
    let token = p.store.accounts_token().unwrap();
    let changes = |opts: &RosterOptions| p.changes_of(&bytes, opts, token).unwrap();
    assert!(
        changes(&opts).is_some(),
        "the settings the record was made with"
    );
    opts.inactive_statuses.push("active".into());
    assert!(
        changes(&opts).is_none(),
        "other statuses mean an employee left"
    );
    assert!(
        changes(&p.cfg.roster_options(Vec::new())).is_none(),
        "other fields kept"
    );
}

#[test]
fn rows_removed_together_past_the_look_ahead_give_what_reading_in_full_gives() {
    // The records after the gap are found again by their IDs (`core::resync`'s test says
    // how many are read); here the report and accounts are compared with a full reading.
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let mut rows: Vec<Row> = (0..40)
        .map(|i| Row {
            id: format!("E{i:03}"),
            email: format!("e{i}@x.example"),
            manager: Manager::Named(i / 8),
            department: DEPARTMENTS[i % 3],
            status: "active",
        })
        .collect();
    both(&a, &b, "r0.csv", &render(&rows, "\n"), false).unwrap();
    // Twelve rows in a row gone (three times the tests' look-ahead), one edited further on.
    rows.drain(10..22);
    rows[20].department = "Sales";
    let before = RESYNCED.with(|n| n.get());
    both(&a, &b, "r1.csv", &render(&rows, "\n"), false).unwrap();
    assert_eq!(RESYNCED.with(|n| n.get()), before + 1, "re-synced");
}

/// Twelve active employees reporting to `E000`, in departments the rules grant roles for.
fn staff() -> Vec<Row> {
    (0..12)
        .map(|i| Row {
            id: format!("E{i:03}"),
            email: format!("e{i}@x.example"),
            manager: if i == 0 {
                Manager::None
            } else {
                Manager::Row(0)
            },
            department: DEPARTMENTS[i % 3],
            status: "active",
        })
        .collect()
}

/// How many files this thread re-synced from their changes.
fn resynced() -> usize {
    RESYNCED.with(|n| n.get())
}

/// Whether `p` would re-sync `bytes` from its record of the last roster.
fn would_resync<S: Store>(p: &Pipeline<S>, bytes: &[u8]) -> bool {
    let rules: Vec<Rule> = p.store.rules().unwrap();
    let enabled: Vec<Rule> = rules.into_iter().filter(|r| r.enabled).collect();
    let opts = (p.cfg).roster_options(crate::core::rules::needed_fields(
        &enabled,
        &p.cfg.columns(),
    ));
    let token = p.store.accounts_token().unwrap();
    p.changes_of(bytes, &opts, token).unwrap().is_some()
}

/// `bytes` with the only occurrence of `from` replaced by `to`.
fn replaced(bytes: &[u8], from: &str, to: &[u8]) -> Vec<u8> {
    let at = (bytes.windows(from.len()).position(|w| w == from.as_bytes()))
        .unwrap_or_else(|| panic!("{from:?} is in the file"));
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// A roster that starts with a byte-order mark is re-synced when one row changes, and
/// gives what reading it in full gives.
#[test]
fn a_roster_with_a_byte_order_mark_is_re_synced_as_read_in_full() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let mut rows = staff();
    let bom = |rows: &[Row]| [b"\xEF\xBB\xBF".as_slice(), &render(rows, "\r\n")].concat();
    both(&a, &b, "r0.csv", &bom(&rows), false).unwrap();
    let before = resynced();
    rows[4].department = "Sales";
    both(&a, &b, "r1.csv", &bom(&rows), false).unwrap();
    assert_eq!(resynced(), before + 1, "one row changed: re-synced");
    // The same rows without the mark: another header, read in full.
    rows[5].department = "IT";
    both(&a, &b, "r2.csv", &render(&rows, "\r\n"), false).unwrap();
    assert_eq!(resynced(), before + 1, "the mark gone: read in full");
}

/// Empty lines added to the next roster (after the header, mid-file, at the end, with each
/// line end a file may have) are warned about as reading it in full warns about them.
#[test]
fn blank_lines_added_mid_file_and_at_the_end_give_what_reading_in_full_gives() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let mut rows = staff();
    let before = resynced();
    for (k, end) in LINE_ENDS.iter().enumerate() {
        let line = |ahead: &str| format!("{end}{ahead}").into_bytes();
        for i in 0..4 {
            // A file with no empty line first: a file applied with a warning leaves no record.
            rows[i + 2].department = DEPARTMENTS[(i + k + 1) % 3];
            let plain = render(&rows, end);
            both(&a, &b, &format!("p{k}{i}.csv"), &plain, false).unwrap();
            assert!(would_resync(&a, &plain), "the record of p{k}{i} is current");
            rows[i + 6].status = STATUSES[(i + k) % 3];
            let file = render(&rows, end);
            let blanked = match i {
                0 => replaced(&file, "E000,", &line("E000,")),
                1 => replaced(&file, "E006,", &line(&format!("{end}E006,"))),
                2 => [file, line(end)].concat(),
                _ => [replaced(&file, "E009,", &line("E009,")), line("")].concat(),
            };
            both(&a, &b, &format!("b{k}{i}.csv"), &blanked, false).unwrap();
        }
    }
    assert_eq!(resynced(), before, "each has a warning: read in full");
}

/// A header renamed with the same meaning, or its columns reordered, has the next file read
/// in full; the one after it is re-synced from the record that file leaves.
#[test]
fn a_header_changed_since_the_last_roster_has_the_file_read_in_full() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let mut rows = staff();
    both(&a, &b, "r0.csv", &render(&rows, "\n"), false).unwrap();
    let before = resynced();
    rows[4].department = "Sales";
    let renamed = replaced(
        &render(&rows, "\n"),
        "employee_id,email,manager_id,department,status",
        b"Employee ID,Work Email,Reports To ID,Department,Employment Status",
    );
    both(&a, &b, "r1.csv", &renamed, false).unwrap();
    assert_eq!(resynced(), before, "renamed: read in full");
    // Status first, employee ID last (no field here is quoted or holds a comma).
    let reordered = |rows: &[Row]| {
        let text = String::from_utf8(render(rows, "\n")).unwrap();
        let lines = text.lines().map(|line| {
            let fields: Vec<&str> = line.split(',').rev().collect();
            fields.join(",") + "\n"
        });
        lines.collect::<String>().into_bytes()
    };
    rows[5].department = "IT";
    both(&a, &b, "r2.csv", &reordered(&rows), false).unwrap();
    assert_eq!(resynced(), before, "reordered: read in full");
    rows[6].status = "terminated";
    both(&a, &b, "r3.csv", &reordered(&rows), false).unwrap();
    assert_eq!(resynced(), before + 1, "the same header again: re-synced");
}

/// A changed row's email that differs from an unchanged row's only by letter case, ASCII or
/// not, is refused as reading in full refuses it; that of an employee who left is not.
#[test]
fn an_email_repeated_in_another_case_gives_what_reading_in_full_gives() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let mut rows = staff();
    rows[3].email = "é3@x.example".into();
    rows[10].email = "Ö10@x.example".into();
    rows[5].status = "terminated";
    both(&a, &b, "r0.csv", &render(&rows, "\n"), false).unwrap();
    let before = resynced();
    let applied = || a.store.last_applied().unwrap().map(|f| f.id);
    let first = applied();
    for (k, email) in [
        (1, "E4@X.example"),
        (2, "É3@x.example"),
        (3, "ö10@x.example"),
    ] {
        let mut edited = rows.clone();
        edited[8].email = email.into();
        both(&a, &b, &format!("r{k}.csv"), &render(&edited, "\n"), false).unwrap();
        assert_eq!(applied(), first, "{email} refused");
    }
    assert_eq!(resynced(), before, "refused by the full reading");
    rows[8].email = "E5@X.example".into();
    // No rule matches it any more: the account is deactivated, so its sign-in address
    // moving is not warned about (a warned plan is read in full).
    rows[8].department = "Legal";
    both(&a, &b, "r4.csv", &render(&rows, "\n"), false).unwrap();
    assert_eq!(resynced(), before + 1, "the other employee left: re-synced");
}

/// A changed row's employee ID padded with spaces, the ID of an unchanged row once trimmed,
/// is refused as reading in full refuses it.
#[test]
fn a_padded_employee_id_on_a_changed_row_gives_what_reading_in_full_gives() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let rows = staff();
    both(&a, &b, "r0.csv", &render(&rows, "\n"), false).unwrap();
    let (before, applied) = (resynced(), || a.store.last_applied().unwrap().map(|f| f.id));
    let first = applied();
    for (k, id) in [(1, " E003 "), (2, "\u{a0}E003\u{3000}")] {
        let mut edited = rows.clone();
        edited[7].id = id.into();
        both(&a, &b, &format!("r{k}.csv"), &render(&edited, "\n"), false).unwrap();
        assert_eq!(applied(), first, "{id:?} refused");
    }
    assert_eq!(resynced(), before, "refused by the full reading");
    let mut edited = rows.clone();
    edited[7].id = " E012 ".into();
    both(&a, &b, "r3.csv", &render(&edited, "\n"), false).unwrap();
    assert_eq!(resynced(), before + 1, "a padded new ID: re-synced");
}

/// A changed row with a byte that is not UTF-8 has the whole file decoded as Windows-1252,
/// an unchanged row's UTF-8 "é" too, as reading in full decodes it.
#[test]
fn a_changed_row_that_is_not_utf_8_gives_what_reading_in_full_gives() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let mut rows = staff();
    rows[3].email = "é3@x.example".into();
    both(&a, &b, "r0.csv", &render(&rows, "\n"), false).unwrap();
    let before = resynced();
    // "é7@x.example" as Windows-1252 writes it.
    let latin = replaced(&render(&rows, "\n"), "e7@x.example", b"\xE97@x.example");
    both(&a, &b, "r1.csv", &latin, false).unwrap();
    assert_eq!(resynced(), before, "not UTF-8: read in full");
    let e003 = a.store.account("E003").unwrap().unwrap();
    assert_eq!(
        e003.email, "Ã©3@x.example",
        "the unchanged row decoded as the rest"
    );
    rows[4].department = "Sales";
    both(&a, &b, "r2.csv", &render(&rows, "\n"), false).unwrap();
    assert_eq!(
        resynced(),
        before,
        "a transcoded roster leaves no record: read in full"
    );
}

/// The last roster's file in processed/ cut short (its time of last write kept) has the next
/// file read in full; the one after it is re-synced from the record that file leaves.
#[test]
fn a_last_roster_truncated_in_processed_has_the_next_read_in_full() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let mut rows = staff();
    let bytes = render(&rows, "\n");
    both(&a, &b, "r0.csv", &bytes, false).unwrap();
    assert!(would_resync(&a, &bytes), "the record is current");
    let last = a.store.last_applied().unwrap().unwrap();
    let processed = a.paths.folder("processed").join(&last.stored_as);
    let file = fs::File::options().write(true).open(&processed).unwrap();
    let written = file.metadata().unwrap().modified().unwrap();
    // Its last record gone.
    let cut = bytes[..bytes.len() - 1].iter().rposition(|&b| b == b'\n');
    file.set_len(cut.unwrap() as u64 + 1).unwrap();
    file.set_modified(written).unwrap();
    drop(file);
    assert!(!would_resync(&a, &bytes), "the record is of a longer file");
    let before = resynced();
    rows[4].department = "Sales";
    both(&a, &b, "r1.csv", &render(&rows, "\n"), false).unwrap();
    assert_eq!(
        resynced(),
        before,
        "the last roster cut short: read in full"
    );
    rows[5].department = "IT";
    both(&a, &b, "r2.csv", &render(&rows, "\n"), false).unwrap();
    assert_eq!(resynced(), before + 1, "re-synced from the new record");
}

/// A quote left open in a changed row, closed rows further down by one text follows (an
/// inch mark): rejected, re-synced or read in full; no account in between deactivated.
#[test]
fn a_quote_closed_rows_later_is_rejected_when_re_synced_too() {
    let ((_a_dir, a), (_b_dir, b)) = (pipeline("E001", false), pipeline("E001", false));
    let first = render(&staff(), "\n");
    both(&a, &b, "r0.csv", &first, false).unwrap();
    let active = accounts(&a);
    let opened = replaced(
        &first,
        "E003,e3@x.example,E000,IT",
        b"E003,e3@x.example,E000,\"IT",
    );
    let broken = replaced(
        &opened,
        "e6@x.example,E000,IT",
        b"e6@x.example,E000,27\" IT",
    );
    both(&a, &b, "r1.csv", &broken, false).unwrap();
    let filed = a.store.files().unwrap().pop().expect("filed").status;
    assert_eq!(filed, crate::store::FileStatus::Rejected);
    assert_eq!(accounts(&a), active, "nothing changed");
}
