//! Unit tests of held files, decisions and filings finished after their commit (SPEC §4,
//! §5): what a decision applies or refuses, and that a file whose filing failed or was cut
//! by a crash is filed and announced once, never processed again. On the in-memory store,
//! with the helpers of [`super::tests`].

use super::filing::Content;
use super::tests::{
    FEW_GRANTS, add_rule, disable_rule, filed, folder, held_report, held_three, pipeline,
    pipeline_with, staff, submit,
};
use crate::api::error::{Blocked, Error};
use crate::core::report::ReportStatus;
use crate::store::{FileStatus, Store};
use std::fs;

/// A held file that repeats an earlier one still says so once approved (SPEC §4).
#[test]
fn an_approved_held_file_still_says_which_file_it_repeats() {
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let bytes = staff(&[("E1", "IT"), ("E2", "IT"), ("E3", "IT")]);
    let first = submit(&p, "a.csv", &bytes).unwrap();
    assert_eq!(first.status, ReportStatus::Held);
    let rejected = p.reject(1, "alice").unwrap();
    assert_eq!(rejected.status, ReportStatus::Rejected);
    let again = submit(&p, "b.csv", &bytes).unwrap();
    assert_eq!(again.status, ReportStatus::Held);
    assert_eq!(again.repeats, first.stored_as);
    let approved = p.approve(2, "alice").unwrap();
    assert_eq!(approved.status, ReportStatus::Applied);
    assert_eq!(approved.repeats, first.stored_as);
}

/// A file held by the engine whose filing a crash interrupted (committed, still in inbox/,
/// its reports staged) is filed by the next start's recovery, and its observer, set after,
/// still hears that it was held, with why.
#[test]
fn a_held_file_filed_by_recovery_is_heard_of_once_the_observer_is_set() {
    use super::observe::FileOutcome;
    use std::sync::{Arc, Mutex};
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let held = submit(
        &p,
        "h.csv",
        &staff(&[("E1", "IT"), ("E2", "IT"), ("E3", "IT")]),
    )
    .unwrap();
    assert_eq!(held.status, ReportStatus::Held);
    // Back to what the crash after the commit leaves.
    let entry = p.store.file(1).unwrap().unwrap();
    let stored = entry.stored_as.clone();
    let held_dir = p.paths.folder("held");
    let staged = p.paths.staging.join("1");
    fs::create_dir_all(&staged).unwrap();
    fs::rename(
        held_dir.join(&stored),
        p.paths.folder("inbox").join("h.csv"),
    )
    .unwrap();
    for ext in ["json", "txt"] {
        let report = held_dir.join(format!("{stored}.report.{ext}"));
        fs::rename(report, staged.join(format!("report.{ext}"))).unwrap();
    }
    let marked = crate::store::FileEntry {
        pending_move: Some(("inbox/h.csv".into(), format!("held/{stored}"))),
        ..entry
    };
    crate::store::samples::commit_entry(&p.store, &marked);
    p.recover().unwrap();
    assert!(held_dir.join(&stored).exists(), "filed by recovery");
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = heard.clone();
    p.set_observer(Arc::new(move |outcome: &FileOutcome<'_>| {
        if let FileOutcome::Filed { id, report, .. } = *outcome {
            sink.lock().unwrap().push(format!(
                "filed {id} {} {} because {:?}",
                report.file,
                report.status.as_str(),
                report.held_because
            ));
        }
    }));
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(
        heard[0].starts_with("filed 1 h.csv held because [\"") && heard[0].contains("max_grants"),
        "{heard:?}"
    );
}

/// A held file that today's rules reject (a rule enabled since reads a column it lacks)
/// cannot be approved: refused, nothing applied, still held; rejecting it works.
#[test]
fn a_held_file_that_the_rules_now_reject_cannot_be_approved() {
    let (_dir, p, id, stored_as) = held_three();
    add_rule(&p, "Cost", "cost_center = 1");
    let err = p.approve(id, "alice").unwrap_err();
    match &err {
        Error::Refused(Blocked::CannotApply { id: i, why, .. }) => {
            assert_eq!(*i, id);
            assert!(why.contains("cost_center"), "{why}");
        }
        other => panic!("expected Blocked::CannotApply, got {other:?}"),
    }
    assert!(p.store.accounts().unwrap().is_empty());
    assert_eq!(p.store.file(id).unwrap().unwrap().status, FileStatus::Held);
    let shown = held_report(&p, &stored_as);
    assert_eq!(shown.status, ReportStatus::Held);
    assert!(shown.errors.is_empty(), "the held report is left as it was");
    let rejected = p.reject(id, "alice").unwrap();
    assert_eq!(rejected.status, ReportStatus::Rejected);
}

/// A held file whose filing failed after its commit (held/ unwritable) is filed when it is
/// decided: rejecting it files it into rejected/ and does not process the roster left in
/// inbox/ again as a new file.
#[test]
fn a_held_file_whose_filing_failed_is_filed_when_decided_not_processed_again() {
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let held = p.paths.folder("held");
    fs::rename(&held, p.paths.drop.join("held.away")).unwrap();
    fs::write(&held, b"").unwrap();
    let rows = [("E1", "IT"), ("E2", "IT"), ("E3", "IT")];
    let err = submit(&p, "big.csv", &staff(&rows)).unwrap_err();
    assert!(err.committed().is_some(), "{err}");
    fs::remove_file(&held).unwrap();
    fs::rename(p.paths.drop.join("held.away"), &held).unwrap();
    let entry = p.held().unwrap().expect("held, filing unfinished");
    assert!(entry.pending_move.is_some());
    assert_eq!(p.waiting().unwrap(), ["big.csv"], "left in inbox/");
    let rejected = p.reject(entry.id, "alice").unwrap();
    assert_eq!(rejected.status, ReportStatus::Rejected);
    assert!(p.waiting().unwrap().is_empty(), "nothing left to process");
    assert_eq!(folder(&p, "rejected"), filed(&entry.stored_as));
    assert_eq!(p.store.files().unwrap().len(), 1, "no second ledger entry");
    assert!(p.store.accounts().unwrap().is_empty());
}

/// `process` refused because an earlier waiting file was held takes its own file out of
/// inbox/: refused is not applied later, unseen, once the held file is decided.
#[test]
fn a_process_refused_behind_an_earlier_held_file_leaves_nothing_to_apply_later() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let big = staff(&[("E1", "IT"), ("E2", "IT"), ("E3", "IT")]);
    p.receive("a.csv", Content::Stream(&mut &big[..]), false, None)
        .unwrap();
    let mine = staff(&[("E9", "IT")]);
    let name = p
        .receive("b.csv", Content::Stream(&mut &mine[..]), false, None)
        .unwrap()
        .0;
    let r = super::commands::execute(&p, Request::Process { name }, "root", Output::Json);
    assert_eq!(r.exit, exit::REFUSED, "{}", r.text);
    assert!(r.text.contains("taken out of inbox/"), "{}", r.text);
    assert!(p.waiting().unwrap().is_empty(), "{:?}", p.waiting());
    let held = p.held().unwrap().expect("a.csv held");
    p.reject(held.id, "alice").unwrap();
    assert!(p.waiting().unwrap().is_empty());
    assert!(
        p.store.accounts().unwrap().is_empty(),
        "b.csv was never applied"
    );
}

/// A dry run received while one of its name waits in inbox/ stays a dry run: numbered
/// `r-2.dryrun.csv`, not `r.dryrun-2.csv` (which was applied for real).
#[test]
fn a_dry_run_under_a_waiting_dry_runs_name_is_still_a_dry_run() {
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let roster = staff(&[("E1", "IT")]);
    for expected in ["r.dryrun.csv", "r-2.dryrun.csv"] {
        let name = p
            .receive("r.csv", Content::Stream(&mut &roster[..]), true, None)
            .unwrap()
            .0;
        assert_eq!(name, expected);
    }
    let report = p.process("r-2.dryrun.csv").unwrap();
    assert_eq!(report.status, ReportStatus::DryRun);
    assert!(p.store.accounts().unwrap().is_empty());
}

/// A held file whose filing failed without a crash is announced as held once the engine's
/// next scan files it (only `file_failed` had been told, and the held file then blocked
/// every later one unannounced).
#[test]
fn a_held_file_filed_after_its_filing_failed_is_announced() {
    use super::observe::FileOutcome;
    use std::sync::{Arc, Mutex};
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = heard.clone();
    p.set_observer(Arc::new(move |outcome: &FileOutcome<'_>| {
        let line = match *outcome {
            FileOutcome::Filed { id, report, .. } => format!(
                "filed {id} {}, created {}",
                report.status.as_str(),
                report.counts.created
            ),
            FileOutcome::Failed { name, .. } => format!("failed {name}"),
        };
        sink.lock().unwrap().push(line);
    }));
    let held = p.paths.folder("held");
    fs::rename(&held, p.paths.drop.join("held.away")).unwrap();
    fs::write(&held, b"").unwrap();
    let rows = [("E1", "IT"), ("E2", "IT"), ("E3", "IT")];
    assert!(submit(&p, "big.csv", &staff(&rows)).is_err());
    fs::remove_file(&held).unwrap();
    fs::rename(p.paths.drop.join("held.away"), &held).unwrap();
    let entry = p.held().unwrap().expect("held, filing unfinished");
    p.finish_unfiled(&entry).unwrap();
    assert_eq!(
        *heard.lock().unwrap(),
        // With its report's counts: the summary had read "created 0".
        ["failed big.csv", "filed 1 held, created 3"],
        "told of the failure, then of the hold"
    );
}

/// An approval whose filing failed after its commit is filed by the engine's next scan
/// (`finish_all_unfiled`), not only at the next start.
#[test]
fn an_approved_file_whose_filing_failed_is_filed_by_the_next_scan() {
    let (_dir, p, id, stored_as) = held_three();
    let processed = p.paths.folder("processed");
    fs::rename(&processed, p.paths.drop.join("processed.away")).unwrap();
    fs::write(&processed, b"").unwrap();
    let err = p.approve(id, "alice").unwrap_err();
    assert!(err.committed().is_some(), "{err}");
    fs::remove_file(&processed).unwrap();
    fs::rename(p.paths.drop.join("processed.away"), &processed).unwrap();
    assert_eq!(p.finish_all_unfiled().unwrap(), 1);
    assert_eq!(folder(&p, "processed"), filed(&stored_as));
    assert!(folder(&p, "held").is_empty());
    assert_eq!(p.finish_all_unfiled().unwrap(), 0, "nothing left");
}

/// The hidden parts a stopped `process`, poll download or watch-mode copy leaves in
/// inbox/ are removed when the pipeline recovers; other hidden files are not ours.
#[test]
fn recovery_removes_the_parts_of_interrupted_copies() {
    let (_dir, p) = pipeline();
    let inbox = p.paths.folder("inbox");
    let ours = [".receive-12.part", ".fetch-r.csv.part", ".watch-34.part"];
    for name in ours.iter().chain(&[".someone-else.part", ".watch-notes"]) {
        fs::write(inbox.join(name), b"part").unwrap();
    }
    p.recover().unwrap();
    let mut left: Vec<String> = fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [".someone-else.part", ".watch-notes"]);
}

/// A held file whose roster is gone from held/ (the store restored from a backup taken
/// while it was held, the file decided since): approving it says why it cannot be and what
/// clears it, changing nothing; rejecting it closes the entry with a report that says the
/// roster was missing, and the next file is processed. The approval had failed on "No such
/// file" and the rejection had filed an empty report without a word.
#[test]
fn a_held_file_whose_roster_is_gone_is_cleared_by_a_rejection_that_says_so() {
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let held = submit(
        &p,
        "h.csv",
        &staff(&[("E1", "IT"), ("E2", "IT"), ("E3", "IT")]),
    );
    assert_eq!(held.unwrap().status, ReportStatus::Held);
    let stored = p.store.file(1).unwrap().unwrap().stored_as;
    let held_dir = p.paths.folder("held");
    for name in [
        stored.clone(),
        format!("{stored}.report.json"),
        format!("{stored}.report.txt"),
    ] {
        fs::remove_file(held_dir.join(name)).unwrap();
    }
    let refused = p.approve(1, "alice").unwrap_err().to_string();
    assert!(refused.contains("cannot be approved"), "{refused}");
    assert!(refused.contains("files reject 1"), "{refused}");
    assert_eq!(p.store.file(1).unwrap().unwrap().status, FileStatus::Held);
    assert!(p.store.accounts().unwrap().is_empty());
    // A later file, refused while it blocks, is told only what clears it (approve had been
    // offered too).
    let later = submit(&p, "l.csv", &staff(&[("E1", "IT")]))
        .unwrap_err()
        .to_string();
    assert!(
        later.contains("cannot be approved") && later.contains("files reject 1"),
        "{later}"
    );
    assert!(!later.contains("files approve"), "{later}");
    let inbox = p.paths.folder("inbox");
    fs::remove_file(inbox.join("l.csv")).unwrap();
    // The decision made after the backup filed its report: it stays as it is.
    let earlier = p
        .paths
        .folder("rejected")
        .join(format!("{stored}.report.json"));
    fs::write(&earlier, b"the real report").unwrap();
    let rejected = p.reject(1, "alice").unwrap();
    assert_eq!(rejected.status, ReportStatus::Rejected);
    assert!(
        rejected.warnings[0].message.contains("was not in held/"),
        "{:?}",
        rejected.warnings
    );
    assert_eq!(fs::read(&earlier).unwrap(), b"the real report");
    assert_eq!(
        p.store.file(1).unwrap().unwrap().status,
        FileStatus::Rejected
    );
    let next = submit(&p, "n.csv", &staff(&[("E1", "IT")])).unwrap();
    assert_eq!(next.status, ReportStatus::Applied);
}

/// A held file whose roster alone was removed by hand: its rejection files the held
/// report as rejected, with the decision, and takes it out of held/, where it had said HELD
/// for ever (and `files show` had failed looking for the rejected one).
#[test]
fn a_held_file_whose_roster_alone_was_removed_is_rejected_with_its_report() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let rows = [("E1", "IT"), ("E2", "IT"), ("E3", "IT")];
    let held = submit(&p, "h.csv", &staff(&rows)).unwrap();
    assert_eq!(held.status, ReportStatus::Held);
    let stored = p.store.file(1).unwrap().unwrap().stored_as;
    fs::remove_file(p.paths.folder("held").join(&stored)).unwrap();
    // What an earlier attempt whose commit never came (a crash) left: replaced.
    let stale = p
        .paths
        .folder("rejected")
        .join(format!("{stored}.report.json"));
    fs::write(&stale, b"{\"decision\": \"by someone else, earlier\"}").unwrap();
    let rejected = p.reject(1, "alice").unwrap();
    assert_eq!(rejected.counts.created, 3, "the held report's counts");
    assert_eq!(folder(&p, "held"), Vec::<String>::new());
    let filed = super::filed_reports::read_report(&p.paths.folder("rejected").join(&stored))
        .expect("filed");
    assert_eq!(filed.status, ReportStatus::Rejected);
    assert_eq!(filed.decision.unwrap().by, "alice");
    assert_eq!(filed.changes.len(), 3);
    let show = Request::FilesShow { id: 1 };
    let shown = super::commands::execute(&p, show, "root", Output::Json);
    assert_eq!(shown.exit, exit::OK, "{}", shown.text);
    assert_eq!(shown.json["status"], "rejected", "{:#}", shown.json);
}

/// A held file whose roster and held report are both gone (removed by hand, or decided
/// after the backup a store was restored from): its rejection files a report saying so in
/// rejected/, so `files show` answers (it had failed with exit 5), and the audit says what
/// was filed.
#[test]
fn a_held_file_rejected_without_its_roster_or_report_can_still_be_shown() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let rows = [("E1", "IT"), ("E2", "IT"), ("E3", "IT")];
    assert_eq!(
        submit(&p, "h.csv", &staff(&rows)).unwrap().status,
        ReportStatus::Held
    );
    let stored = p.store.file(1).unwrap().unwrap().stored_as;
    for name in [
        stored.clone(),
        format!("{stored}.report.json"),
        format!("{stored}.report.txt"),
    ] {
        fs::remove_file(p.paths.folder("held").join(name)).unwrap();
    }
    p.reject(1, "alice").unwrap();
    let show = Request::FilesShow { id: 1 };
    let shown = super::commands::execute(&p, show, "root", Output::Json);
    assert_eq!(shown.exit, exit::OK, "{}", shown.text);
    assert_eq!(shown.json["decision"]["by"], "alice", "{:#}", shown.json);
    let audit = p.store.audit(None).unwrap();
    let detail = &audit.last().unwrap().note.detail;
    assert!(
        detail.contains("its report is filed in rejected/"),
        "{detail}"
    );
}

/// A decided file whose filing keeps failing (its folder not writable) is told to the
/// observer by each scan that tries it (the daemon posts `file_failed`, once), and does not
/// stop recovery at a start: the start goes on, the move is tried again at every scan. The
/// scan had said nothing, and every start had exited 5, "nothing was changed".
#[test]
fn a_filing_that_keeps_failing_is_told_and_does_not_stop_a_start() {
    use super::observe::FileOutcome;
    use std::sync::{Arc, Mutex};
    let (_dir, p, id, stored_as) = held_three();
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = heard.clone();
    p.set_observer(Arc::new(move |outcome: &FileOutcome<'_>| {
        if let FileOutcome::Failed { name, .. } = *outcome {
            sink.lock().unwrap().push(name.to_string());
        }
    }));
    let processed = p.paths.folder("processed");
    fs::rename(&processed, p.paths.drop.join("processed.away")).unwrap();
    fs::write(&processed, b"").unwrap();
    assert!(p.approve(id, "alice").unwrap_err().committed().is_some());
    heard.lock().unwrap().clear();
    assert!(p.finish_all_unfiled().is_err());
    assert_eq!(heard.lock().unwrap().len(), 1, "told of the scan's failure");
    // `process` files it first too, and while that fails the files behind it wait (they
    // had been applied past it).
    fs::write(
        p.paths.folder("inbox").join("next.csv"),
        staff(&[("E9", "IT")]),
    )
    .unwrap();
    let files = p.store.files().unwrap().len();
    let asked = crate::api::Request::Process {
        name: "next.csv".into(),
    };
    let answer = super::commands::execute(&p, asked, "root", crate::api::Output::Json);
    assert_eq!(answer.exit, crate::api::exit::FAILED, "{}", answer.text);
    assert_eq!(p.store.files().unwrap().len(), files, "nothing processed");
    assert!(p.paths.folder("inbox").join("next.csv").exists());
    // A start meanwhile: recovery goes on past it.
    p.recover().unwrap();
    assert!(p.store.file(id).unwrap().unwrap().pending_move.is_some());
    fs::remove_file(&processed).unwrap();
    fs::rename(p.paths.drop.join("processed.away"), &processed).unwrap();
    assert_eq!(p.finish_all_unfiled().unwrap(), 1);
    assert_eq!(folder(&p, "processed"), filed(&stored_as));
}

/// A held file whose held report cannot be read (the roster still there) is not approved
/// blind, and the refusal says why: it had said the plan changed, with counts from nothing.
/// The report is written again; the next approval applies what it shows.
#[test]
fn a_held_file_whose_report_cannot_be_read_is_shown_again_saying_why() {
    let (_dir, p, id, stored_as) = held_three();
    let report = p
        .paths
        .folder("held")
        .join(format!("{stored_as}.report.json"));
    fs::write(&report, b"not json").unwrap();
    let refused = p.approve(id, "alice").unwrap_err().to_string();
    assert!(
        refused.contains("its held report could not be read"),
        "{refused}"
    );
    assert!(p.store.accounts().unwrap().is_empty(), "nothing applied");
    let applied = p.approve(id, "alice").unwrap();
    assert_eq!(applied.status, ReportStatus::Applied);
}

/// An account's history names the file that changed it as it is stored (unique, as in the
/// ledger and processed/), and who asked: the approver of a held file, the user of a
/// `sync` (and that it was forced past the limits, in the audit too); a file the daemon
/// took on its own names no one (SPEC §3, §7).
#[test]
fn an_accounts_history_names_the_stored_file_and_who_decided() {
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    let rule = add_rule(&p, "IT", "department = IT");
    let held = submit(
        &p,
        "a.csv",
        &staff(&[("E1", "IT"), ("E2", "IT"), ("E3", "IT")]),
    )
    .unwrap();
    assert_eq!(held.status, ReportStatus::Held);
    let approved = p.approve(1, "alice").unwrap();
    let stored = approved.stored_as.clone().unwrap();
    assert!(stored.ends_with("_a.csv") && stored != "a.csv", "{stored}");
    // Why it was held stays beside the decision (it had been dropped on approval).
    assert!(
        matches!(&approved.held_because[..], [why] if why.starts_with("when the file was held: ") && why.contains("max_grants")),
        "{:?}",
        approved.held_because
    );
    let sources = |id: &str| -> Vec<String> {
        let account = p.store.account(id).unwrap().unwrap();
        account.history.iter().map(|h| h.source.clone()).collect()
    };
    assert_eq!(sources("E1"), [format!("{stored} approved by alice")]);
    let left = submit(&p, "b.csv", &staff(&[("E1", "IT"), ("E2", "IT")])).unwrap();
    assert_eq!(left.status, ReportStatus::Applied);
    let b = left.stored_as.unwrap();
    assert_eq!(sources("E3")[1], b, "a delivered file names no one");
    disable_rule(&p, rule);
    let synced = p.sync("bob", true).unwrap();
    assert_eq!(synced.counts.deactivated, 2, "{synced:?}");
    assert_eq!(sources("E1")[1], "sync --force by bob");
    let audit = p.store.audit(None).unwrap();
    assert_eq!(audit.last().unwrap().note.action, "sync --force");
}

/// Approval applies exactly what the held report showed, its warnings too: a sign-in email
/// that a manual account kept from moving when the file was held, whose manual account was
/// removed since, would now move (whoever holds the address holds the admin rights). The
/// approval is refused and the new plan shown; it had applied the move unseen.
#[test]
fn an_approval_whose_sign_in_moves_differ_from_the_held_reports_applies_nothing() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline_with(FEW_GRANTS);
    add_rule(&p, "IT", "department = IT");
    let base = submit(&p, "a.csv", &staff(&[("E1", "IT"), ("E2", "Sales")])).unwrap();
    assert_eq!(base.status, ReportStatus::Applied);
    let add = Request::AdminsAdd {
        employee_id: "M9".into(),
        email: "x@x.io".into(),
        role: "IT Admin".into(),
    };
    let added = super::commands::execute(&p, add, "root", Output::Json);
    assert_eq!(added.exit, exit::OK, "{}", added.text);
    let rows = [
        "E1,x@x.io,IT,active",
        "E2,e2@x.io,IT,active",
        "E3,e3@x.io,IT,active",
        "E4,e4@x.io,IT,active",
    ];
    let held = submit(&p, "b.csv", &super::tests::roster(&rows)).unwrap();
    assert_eq!(held.status, ReportStatus::Held, "{:?}", held.held_because);
    assert!(
        held.warnings
            .iter()
            .any(|w| w.message.contains("held by the active manual account")),
        "{:?}",
        held.warnings
    );
    let remove = Request::AdminsRemove { id: "M9".into() };
    let removed = super::commands::execute(&p, remove, "root", Output::Json);
    assert_eq!(removed.exit, exit::OK, "{}", removed.text);
    let id = p.store.files().unwrap().last().unwrap().id;
    let refused = p.approve(id, "alice").unwrap_err().to_string();
    assert!(refused.contains("the warnings differ"), "{refused}");
    assert!(refused.contains("now signs in as \"x@x.io\""), "{refused}");
    assert_eq!(p.store.account("E1").unwrap().unwrap().email, "e1@x.io");
    // The new plan shown, approving it applies the move.
    let applied = p.approve(id, "alice").unwrap();
    assert_eq!(applied.status, ReportStatus::Applied);
    assert_eq!(p.store.account("E1").unwrap().unwrap().email, "x@x.io");
}

/// An approval refused because the plan changed, whose held report cannot then be rewritten
/// (a full disk): the failure says the refusal is recorded and the report may be the old
/// one, not "nothing was changed" (the audit and the ledger have the refusal); approved
/// again once it can be written, the new plan is shown again.
#[test]
fn a_refusal_whose_held_report_cannot_be_rewritten_says_it_is_recorded() {
    let (_dir, p, id, stored_as) = held_three();
    add_rule(&p, "Sales", "department = Sales");
    let text = p
        .paths
        .folder("held")
        .join(format!("{stored_as}.report.txt"));
    fs::remove_file(&text).unwrap();
    fs::create_dir(&text).unwrap();
    let err = p.approve(id, "alice").unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains("nothing was changed"), "{shown}");
    assert!(shown.contains("the refusal is recorded"), "{shown}");
    assert!(shown.contains("approve again"), "{shown}");
    let audit = p.store.audit(None).unwrap();
    assert_eq!(audit.last().unwrap().note.action, "files approve refused");
    fs::remove_dir(&text).unwrap();
    let err = p.approve(id, "alice").unwrap_err();
    assert!(
        matches!(err, Error::Refused(Blocked::PlanChanged { .. })),
        "{err}"
    );
    assert!(text.exists(), "the new plan shown");
}

/// A file that is not UTF-8, and so is read as Windows-1252 (SPEC §1), but also holds
/// UTF-8 text, is held, whatever the limits: its UTF-8 "São Paulo" read as "SÃ£o Paulo" no
/// longer matched a rule's `not in`, and a stray byte in another cell had granted a role.
#[test]
fn a_file_that_mixes_encodings_is_held() {
    let (_dir, p) = pipeline();
    add_rule(&p, "HR", "department = HR");
    let mut rule = p.store.rules().unwrap().remove(0);
    rule.conditions.push(
        crate::core::rules::Condition::parse("location not in (Singapore, \"São Paulo\")").unwrap(),
    );
    p.store
        .put_rule(&rule, super::tests::note("rules edit"))
        .unwrap();
    let utf8 = "employee_id,email,department,location,status\n\
                E1,e1@x.io,HR,São Paulo,active\nE2,e2@x.io,HR,Singapore,active\n";
    let r = submit(&p, "utf8.csv", utf8.as_bytes()).unwrap();
    assert_eq!((r.status, r.counts.created), (ReportStatus::Applied, 0));
    // The same rows, and a Windows-1252 "é" in another row's cell.
    let mut mixed = utf8.as_bytes().to_vec();
    mixed.extend_from_slice(b"E3,e3@x.io,Caf\xE9,Lyon,active\n");
    let r = submit(&p, "mixed.csv", &mixed).unwrap();
    assert_eq!(r.status, ReportStatus::Held, "{:?}", r.held_because);
    assert!(
        r.held_because[0].contains("line 2 holds UTF-8 text")
            && r.held_because[0].contains("(line 4: byte 0xE9)")
            && r.held_because[0].ends_with("Approve it only if the file really is Windows-1252"),
        "{:?}",
        r.held_because
    );
    assert_eq!(r.warnings[0].line, Some(2), "{:?}", r.warnings);
    assert!(p.store.account("E1").unwrap().is_none(), "nothing granted");
    // Approved, it is the last applied roster: a sync evaluates it again without holding
    // it anew (a sync cannot be approved: only `--force`, past every limit, had applied one).
    let approved = p.approve(p.held().unwrap().unwrap().id, "alice").unwrap();
    assert_eq!(approved.status, ReportStatus::Applied);
    let synced = p.sync("alice", false).unwrap();
    assert_eq!(
        synced.status,
        ReportStatus::Applied,
        "{:?}",
        synced.held_because
    );
    assert!(
        synced.warnings[0].message.contains("may mix encodings"),
        "{:?}",
        synced.warnings
    );
    // A file that is Windows-1252 throughout is applied as before.
    let (_dir, p) = pipeline();
    add_rule(&p, "HR", "department = HR");
    let latin =
        b"employee_id,email,department,location,status\nE1,e1@x.io,HR,S\xE3o Paulo,active\n";
    let r = submit(&p, "latin.csv", latin).unwrap();
    assert_eq!(r.status, ReportStatus::Applied, "{:?}", r.held_because);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}
