//! Unit tests of filing a committed file (SPEC §5, §6): a file replaced in inbox/ while it
//! was processed, and its report read between the commit and the filing. On the in-memory
//! store, with the helpers of [`super::tests`].

use super::tests::{pipeline, staff};
use crate::store::{FileStatus, Store};
use std::fs;

/// `mv new.csv inbox/roster.csv` over a file being processed: the committed bytes had been
/// filed nowhere (only their reports), so `sync` and a held file's approval failed for good.
#[test]
fn a_file_replaced_in_inbox_while_processed_is_filed_from_the_bytes_committed() {
    use super::roster_file::HeldFile;
    let (_dir, p) = pipeline();
    let inbox = p.paths.folder("inbox");
    let committed = staff(&[("E1", "IT")]);
    fs::write(inbox.join("r.csv"), &committed).unwrap();
    let held = HeldFile::of(fs::File::open(inbox.join("r.csv")).unwrap()).unwrap();
    let newer = staff(&[("E2", "IT")]);
    fs::write(inbox.join(".new"), &newer).unwrap();
    fs::rename(inbox.join(".new"), inbox.join("r.csv")).unwrap();
    let entry = committed_entry("20260101T000000Z_r.csv", &committed);
    p.finish_filing(&entry, Some(&held)).unwrap();
    let processed = p.paths.folder("processed");
    assert_eq!(
        fs::read(processed.join("20260101T000000Z_r.csv")).unwrap(),
        committed
    );
    assert_eq!(
        fs::read(inbox.join("r.csv")).unwrap(),
        newer,
        "the newer file waits"
    );
    // Written since it was read: not filed as if it were what was committed.
    let entry = crate::store::FileEntry {
        stored_as: "20260101T000001Z_r.csv".into(),
        pending_move: Some((
            "inbox/r.csv".into(),
            "processed/20260101T000001Z_r.csv".into(),
        )),
        ..entry
    };
    let held = HeldFile::of(fs::File::open(inbox.join("r.csv")).unwrap()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(inbox.join("r.csv"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"E3,e3@x.io,IT,active\n").unwrap();
    fs::remove_file(inbox.join("r.csv")).unwrap();
    p.finish_filing(&entry, Some(&held)).unwrap();
    assert!(!processed.join("20260101T000001Z_r.csv").exists());
}

/// `files show` (and the API's report) between a file's commit and its filing: the report
/// is read where it was staged, then where it was filed; it had been "No such file", exit 5.
#[test]
fn a_report_is_read_between_the_commit_and_the_filing() {
    let (_dir, p) = pipeline();
    let entry = committed_entry("20260101T000000Z_r.csv", b"x");
    crate::store::samples::commit_entry(&p.store, &entry);
    let staged = p.staged(entry.id);
    fs::create_dir_all(&staged).unwrap();
    fs::write(staged.join("report.json"), b"{\"staged\":1}").unwrap();
    let filed = p.report_path(&entry);
    assert_eq!(
        p.report_bytes(1).unwrap(),
        Some((b"{\"staged\":1}".to_vec(), filed.clone()))
    );
    fs::rename(staged.join("report.json"), &filed).unwrap();
    assert_eq!(
        p.report_bytes(1).unwrap(),
        Some((b"{\"staged\":1}".to_vec(), filed.clone()))
    );
    p.store.filed(&entry).unwrap();
    assert_eq!(
        p.report_bytes(1).unwrap(),
        Some((b"{\"staged\":1}".to_vec(), filed.clone()))
    );
    assert_eq!(p.report_bytes(2).unwrap(), None);
    // Filed, then pruned by hand: the error names it.
    fs::remove_file(&filed).unwrap();
    let err = p.report_bytes(1).unwrap_err().to_string();
    assert!(err.contains(&filed.display().to_string()), "{err}");
}

/// The ledger entry of `bytes`, applied as `stored_as` from inbox/r.csv and not filed yet.
fn committed_entry(stored_as: &str, bytes: &[u8]) -> crate::store::FileEntry {
    crate::store::FileEntry {
        id: 1,
        name: "r.csv".into(),
        stored_as: stored_as.into(),
        size: bytes.len() as u64,
        sha256: crate::util::sha256_hex(bytes),
        received_at: "2026-01-01T00:00:00Z".into(),
        processed_at: "2026-01-01T00:00:00Z".into(),
        status: FileStatus::Applied,
        summary: String::new(),
        pending_move: Some(("inbox/r.csv".into(), format!("processed/{stored_as}"))),
        remote: None,
        remote_pending: false,
        was_held: false,
    }
}
