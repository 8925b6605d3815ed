//! The same checks run against every [`Store`]: the sled store and the memory store, so
//! that the memory store the pipeline's unit tests use cannot drift from the real one.

use super::samples::{account, packed, rule};
use super::{
    AuditNote, Commit, FileEntry, FileStatus, MemoryStore, RemoteOrigin, SledStore, Store,
    StoreError, TokenChange,
};
use crate::core::accounts::{Account, Status};
use crate::core::rules::RuleId;
use crate::core::updates::Updates;

fn note(action: &str, at: &str) -> AuditNote {
    AuditNote {
        at: at.into(),
        user: "alice".into(),
        action: action.into(),
        detail: String::new(),
    }
}

fn file(id: u64, sha256: &str) -> FileEntry {
    FileEntry {
        id,
        name: format!("r{id}.csv"),
        stored_as: format!("20260101T000000Z_r{id}.csv"),
        size: 10,
        sha256: sha256.into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        processed_at: "2026-01-01T00:00:00Z".into(),
        status: FileStatus::Applied,
        summary: String::new(),
        pending_move: None,
        remote: None,
        remote_pending: false,
        was_held: false,
    }
}

fn origin(name: &str) -> RemoteOrigin {
    RemoteOrigin {
        dir: "/outbox".into(),
        name: name.into(),
        size: 10,
        mtime: 1,
        sha256: "abc".into(),
    }
}

fn with_email(id: &str, email: &str) -> Account {
    let mut a = account(id);
    a.email = email.into();
    a.record("2026-01-02T00:00:00Z", "r1.csv", "created".into());
    a
}

fn ids(accounts: &[Account]) -> Vec<&str> {
    accounts.iter().map(|a| a.employee_id.as_str()).collect()
}

/// Rule ids are never reused; each rule change is audited, in sequence.
fn rules_and_audit(s: &dyn Store) {
    assert!(s.rules().unwrap().is_empty());
    assert_eq!(s.next_rule_id().unwrap(), RuleId(1));
    assert_eq!(s.next_rule_id().unwrap(), RuleId(2));
    s.put_rule(&rule(1), note("rules add", "2026-01-01T00:00:00Z"))
        .unwrap();
    s.put_rule(&rule(2), note("rules add", "2026-01-02T00:00:00Z"))
        .unwrap();
    s.delete_rule(RuleId(1), note("rules delete", "2026-01-03T00:00:00Z"))
        .unwrap();
    assert_eq!(s.rules().unwrap(), [rule(2)]);
    assert_eq!(s.rule(RuleId(1)).unwrap(), None);
    assert_eq!(s.next_rule_id().unwrap(), RuleId(3), "never reused");
    let audit = s.audit(None).unwrap();
    let seqs: Vec<u64> = audit.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(audit[2].note.action, "rules delete");
    let since = s.audit(Some("2026-01-02T00:00:00Z")).unwrap();
    assert_eq!(since.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
}

/// A commit writes its accounts, ledger entry, last applied file, audit entry and remote
/// bookkeeping together; the first file of given bytes is remembered.
fn commits(s: &dyn Store) {
    s.register_remote("r1.csv", &origin("a.csv")).unwrap();
    s.register_remote("r2.csv", &origin("b.csv")).unwrap();
    let mut later = account("E2");
    later.role = "HR Admin".into();
    let id = s.next_file_id().unwrap();
    assert_eq!(id, 1);
    s.commit(Commit {
        updates: packed([account("E1"), account("E2"), later.clone()]),
        file: Some(&file(id, "abc")),
        last_applied: Some(id),
        audit: Some(note("apply", "2026-01-04T00:00:00Z")),
        clear_remote: Some("r1.csv"),
        accounts_token: None,
    })
    .unwrap();
    let mut all = s.accounts().unwrap();
    all.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
    assert_eq!(all, [account("E1"), later], "the later update wins");
    assert_eq!(s.account("E2").unwrap().unwrap().role, "HR Admin");
    assert_eq!(s.account("E9").unwrap(), None);
    assert_eq!(s.remote_registration("r1.csv").unwrap(), None);
    assert_eq!(
        s.remote_registrations().unwrap(),
        [("r2.csv".to_string(), origin("b.csv"))]
    );
    let again = s.next_file_id().unwrap();
    assert_eq!(again, 2);
    s.commit(Commit {
        updates: Updates::none(),
        file: Some(&file(again, "abc")),
        last_applied: None,
        audit: None,
        clear_remote: None,
        accounts_token: None,
    })
    .unwrap();
    assert_eq!(s.file_by_sha("abc").unwrap().unwrap().id, 1, "the first");
    assert_eq!(s.last_applied().unwrap().unwrap().id, 1);
    assert_eq!(s.files().unwrap(), [file(1, "abc"), file(2, "abc")]);
    assert_eq!(s.file(2).unwrap(), Some(file(2, "abc")));
    // A filing finished: the entry as it was, without its pending move.
    let moving = FileEntry {
        pending_move: Some(("inbox/r2.csv".into(), "processed/r2.csv".into())),
        ..file(2, "abc")
    };
    s.commit(Commit {
        updates: Updates::none(),
        file: Some(&moving),
        last_applied: None,
        audit: None,
        clear_remote: None,
        accounts_token: None,
    })
    .unwrap();
    assert_eq!(s.file(2).unwrap(), Some(moving.clone()));
    s.filed(&moving).unwrap();
    assert_eq!(s.file(2).unwrap(), Some(file(2, "abc")));
    s.unregister_remote("r2.csv").unwrap();
    assert!(s.remote_registrations().unwrap().is_empty());
    let mut scanned = Vec::new();
    s.scan_accounts(&mut |a| scanned.push(a.to_account()))
        .unwrap();
    scanned.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
    assert_eq!(scanned, all);
    // Split in two: every account once, in one half or the other.
    let (mut lower, mut upper) = (Vec::new(), Vec::new());
    s.scan_accounts_split(&mut |a| lower.push(a.to_account()), &mut |a| {
        upper.push(a.to_account())
    })
    .unwrap();
    lower.append(&mut upper);
    lower.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
    assert_eq!(lower, all);
    s.flush().unwrap();
}

/// Accounts by email: folded (trim, Unicode lower case), every holder active or not, with
/// history, following every kind of account write.
fn by_email(s: &dyn Store) {
    let mut gone = with_email("E12", "ann@x.io");
    gone.status = Status::Inactive;
    s.commit(Commit {
        updates: packed([
            with_email("E11", " Ann@X.io "),
            gone.clone(),
            with_email("E13", "J\u{d6}RG@x.io"),
        ]),
        file: None,
        last_applied: None,
        audit: None,
        clear_remote: None,
        accounts_token: None,
    })
    .unwrap();
    let found = s.accounts_by_email("ANN@x.io").unwrap();
    assert_eq!(ids(&found), ["E11", "E12"]);
    assert_eq!(found[1], gone, "with history");
    assert_eq!(
        ids(&s.accounts_by_email("j\u{f6}rg@X.IO ").unwrap()),
        ["E13"]
    );
    assert!(s.accounts_by_email("nobody@x.io").unwrap().is_empty());
    // An email change by commit, then by hand, then a removal.
    s.commit(Commit {
        updates: packed([with_email("E11", "ann.new@x.io")]),
        file: None,
        last_applied: None,
        audit: None,
        clear_remote: None,
        accounts_token: None,
    })
    .unwrap();
    assert_eq!(ids(&s.accounts_by_email("ann@x.io").unwrap()), ["E12"]);
    assert_eq!(ids(&s.accounts_by_email("Ann.New@x.io").unwrap()), ["E11"]);
    let moved = with_email("E12", "ann.new@x.io");
    s.put_account(&moved, false, note("admins set", "2026-01-05T00:00:00Z"))
        .unwrap();
    assert!(s.accounts_by_email("ann@x.io").unwrap().is_empty());
    assert_eq!(
        ids(&s.accounts_by_email("ann.new@x.io").unwrap()),
        ["E11", "E12"]
    );
    s.put_account(&moved, true, note("admins remove", "2026-01-06T00:00:00Z"))
        .unwrap();
    assert_eq!(ids(&s.accounts_by_email("ann.new@x.io").unwrap()), ["E11"]);
    assert_eq!(s.account("E12").unwrap(), None);
}

/// A commit waits for what it is told to: called once, before anything is current; when it
/// fails, nothing of the commit is (accounts, ledger, audit), and a later commit still works.
fn commits_when_ready(s: &dyn Store) {
    let accounts = s.accounts().unwrap();
    let (files, audit) = (s.files().unwrap(), s.audit(None).unwrap());
    let id = s.next_file_id().unwrap();
    let entry = file(id, "def");
    let commit = |updates| Commit {
        updates,
        file: Some(&entry),
        last_applied: Some(id),
        audit: Some(note("apply", "2026-01-08T00:00:00Z")),
        clear_remote: None,
        accounts_token: None,
    };
    // With accounts, and a ledger entry alone (a rejected or held file's).
    for updates in [packed([account("E21")]), Updates::none()] {
        let mut calls = 0;
        let refused = s.commit_when(commit(updates), &mut || {
            calls += 1;
            let not_yet = "nothing current before it is ready";
            assert_eq!(s.account("E21").unwrap(), None, "{not_yet}");
            assert_eq!(s.files().unwrap(), files, "{not_yet}");
            assert_eq!(s.audit(None).unwrap(), audit, "{not_yet}");
            Err(StoreError::Conflict("not ready".into()))
        });
        assert_eq!(refused.unwrap_err().to_string(), "not ready");
        assert_eq!(calls, 1);
        assert_eq!(s.accounts().unwrap(), accounts, "no account written");
        assert_eq!(s.files().unwrap(), files, "no ledger entry");
        assert_eq!(s.audit(None).unwrap(), audit, "no audit entry");
    }
    let mut calls = 0;
    s.commit_when(commit(packed([account("E21")])), &mut || {
        calls += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(s.account("E21").unwrap(), Some(account("E21")));
    assert_eq!(s.last_applied().unwrap().unwrap().id, id);
}

/// The accounts token changes with every write of accounts or rules, is what a commit
/// names when it names one, and stays out of backups.
fn accounts_tokens(s: &dyn Store) {
    let commit = |updates, token| Commit {
        updates,
        file: None,
        last_applied: None,
        audit: None,
        clear_remote: None,
        accounts_token: token,
    };
    let before = s.accounts_token().unwrap();
    s.commit(commit(Updates::none(), None)).unwrap();
    assert_eq!(s.accounts_token().unwrap(), before, "nothing written");
    s.commit(commit(packed([account("T1")]), None)).unwrap();
    let written = s.accounts_token().unwrap();
    assert!(written.is_some() && written != before);
    let change = |from, to| Some(TokenChange { from, to });
    s.commit(commit(Updates::none(), change(written, [7; 16])))
        .unwrap();
    assert_eq!(
        s.accounts_token().unwrap(),
        Some([7; 16]),
        "the token named"
    );
    // Named from a token the store no longer has (a rule changed meanwhile): not left.
    s.commit(commit(packed([account("T3")]), change(written, [8; 16])))
        .unwrap();
    let stale = s.accounts_token().unwrap();
    assert!(stale.is_some() && stale != Some([8; 16]) && stale != Some([7; 16]));
    s.commit(commit(Updates::none(), change(written, [9; 16])))
        .unwrap();
    assert_eq!(
        s.accounts_token().unwrap(),
        stale,
        "nothing written, nothing named"
    );
    s.put_rule(&rule(90), note("rules add", "2026-01-08T00:00:00Z"))
        .unwrap();
    let ruled = s.accounts_token().unwrap();
    assert!(ruled.is_some() && ruled != stale);
    s.delete_rule(RuleId(90), note("rules delete", "2026-01-08T00:00:00Z"))
        .unwrap();
    let deleted = s.accounts_token().unwrap();
    assert!(deleted.is_some() && deleted != ruled);
    s.put_account(
        &account("T2"),
        false,
        note("admins add", "2026-01-08T00:00:00Z"),
    )
    .unwrap();
    assert_ne!(s.accounts_token().unwrap(), deleted);
    let (_, lines) = backup_lines(s);
    assert!(lines.iter().all(|l| !l.contains("accounts_token")));
}

/// Every check, in order, on one store.
fn all_checks(s: &dyn Store) {
    rules_and_audit(s);
    commits(s);
    by_email(s);
    commits_when_ready(s);
    accounts_tokens(s);
}

/// The store's backup, its lines sorted (the sled store writes accounts in bucket order).
fn backup_lines(s: &dyn Store) -> (u64, Vec<String>) {
    let mut out = Vec::new();
    let n = s.export(&mut out, "2026-01-07T00:00:00Z").unwrap();
    let text = String::from_utf8(out).unwrap();
    // Each store's own order of the same records: their SHA-256 (in the end line) differs.
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| match l.split_once(",\"sha256\":") {
            Some((end, _)) if l.starts_with("{\"end\":") => format!("{end}}}"),
            _ => l.to_string(),
        })
        .collect();
    lines.sort();
    (n, lines)
}

#[test]
fn the_sled_store_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    all_checks(&SledStore::open(dir.path()).unwrap());
}

#[test]
fn the_memory_store_passes_every_check() {
    all_checks(&MemoryStore::new());
}

#[test]
fn the_same_operations_leave_both_stores_with_the_same_backup() {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    let memory = MemoryStore::new();
    all_checks(&sled);
    all_checks(&memory);
    let (n, lines) = backup_lines(&sled);
    assert!(n > 10, "{n} records");
    assert_eq!(backup_lines(&memory), (n, lines));
}
