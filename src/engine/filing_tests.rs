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

/// A committed file whose place in processed/ is taken by other bytes (put there by hand
/// after a crash) is not filed, and its mark stays: the filing fails saying so, and the
/// committed bytes stay in inbox/ as the committed file, not a new one. The mark had been
/// cleared with the file left in inbox/, which processed it again, applying it twice.
#[test]
fn a_committed_file_whose_place_is_taken_is_not_marked_filed() {
    let (_dir, p) = pipeline();
    let inbox = p.paths.folder("inbox");
    let processed = p.paths.folder("processed");
    fs::create_dir_all(&processed).unwrap();
    let committed = staff(&[("E1", "IT")]);
    fs::write(inbox.join("r.csv"), &committed).unwrap();
    let entry = committed_entry("20260101T000000Z_r.csv", &committed);
    crate::store::samples::commit_entry(&p.store, &entry);
    let place = processed.join("20260101T000000Z_r.csv");
    fs::write(&place, b"someone else's").unwrap();
    let err = p.finish_filing(&entry, None).unwrap_err().to_string();
    assert!(
        err.contains("is taken by a file that is not the one committed"),
        "{err}"
    );
    assert_eq!(fs::read(inbox.join("r.csv")).unwrap(), committed);
    assert!(
        p.store.file(1).unwrap().unwrap().pending_move.is_some(),
        "still marked"
    );
    // Moved away: the next try files it.
    fs::remove_file(&place).unwrap();
    p.finish_filing(&entry, None).unwrap();
    assert_eq!(fs::read(&place).unwrap(), committed);
    assert!(!inbox.join("r.csv").exists());
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

/// A remote file of the folder `outgoing`, of one byte, as poll mode records it.
fn origin(name: &str, mtime: u32) -> crate::store::RemoteOrigin {
    crate::store::RemoteOrigin {
        dir: "outgoing".into(),
        name: name.into(),
        size: 1,
        mtime,
        sha256: String::new(),
    }
}

/// Poll mode: a remote file older than a roster applied (or held) from the remote inbox is
/// not to be fetched (it would be applied over the newer one). A dry run or a rejected file is no
/// such roster, and an applied file dated in the future counts as of its arrival: it had
/// kept every later roster out until that date, `touch` or not.
#[test]
fn a_remote_file_older_than_a_roster_applied_from_its_folder_is_not_to_be_fetched() {
    use super::filing::Sighting;
    let (_dir, p) = pipeline();
    let fetch = |name: &str, mtime: u32, bytes: &[u8]| {
        let tmp = p.paths.folder("inbox").join(format!(".fetch-{name}.part"));
        fs::write(&tmp, bytes).unwrap();
        p.file_in(&tmp, name, &origin(name, mtime)).unwrap();
        p.process(name).unwrap()
    };
    let seen = |mtime| p.remote_known(&origin("z.csv", mtime)).unwrap();
    assert_eq!(seen(5), Sighting::New, "nothing applied yet");
    fetch("d.dryrun.csv", 300, &staff(&[("E1", "IT")]));
    fetch("bad.csv", 400, b"not a roster\n");
    assert_eq!(
        seen(5),
        Sighting::New,
        "a dry run and a rejected file are no roster"
    );
    fetch("a.csv", 100, &staff(&[("E1", "IT")]));
    assert_eq!(seen(50), Sighting::Older { newest: 100 });
    assert_eq!(seen(100), Sighting::New);
    // Dated far in the future: counted as of its arrival (now), so a file written after
    // it arrived is fetched.
    fetch("f.csv", u32::MAX - 1, &staff(&[("E1", "IT"), ("E2", "IT")]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(matches!(seen(now - 3600), Sighting::Older { newest } if newest <= now + 1));
    assert_eq!(seen(now + 2), Sighting::New);
    let files = p.store.files().unwrap();
    assert_eq!(files.len(), 4);
    assert!(files.iter().any(|f| f.status == FileStatus::DryRun));
    assert!(files.iter().any(|f| f.status == FileStatus::Rejected));
}

/// A roster fetched from a folder and waiting in inbox/ (behind a held file) counts as the
/// newest from there too: Monday's, delivered late, had been fetched after Tuesday's and
/// applied over it once the held file was decided, giving back the rights Tuesday's took.
/// A waiting dry run does not count, nor a registration whose download never arrived.
#[test]
fn a_remote_file_older_than_a_roster_waiting_from_its_folder_is_not_to_be_fetched() {
    use super::filing::Sighting;
    let (_dir, p) = pipeline();
    let arrive = |name: &str, mtime: u32| {
        let tmp = p.paths.folder("inbox").join(format!(".fetch-{name}.part"));
        fs::write(&tmp, staff(&[("E1", "IT")])).unwrap();
        p.file_in(&tmp, name, &origin(name, mtime)).unwrap();
    };
    let seen = |mtime| p.remote_known(&origin("monday.csv", mtime)).unwrap();
    arrive("d.dryrun.csv", 300);
    p.store
        .register_remote("gone.csv", &origin("gone.csv", 400))
        .unwrap();
    assert_eq!(seen(50), Sighting::New, "a dry run, a download not arrived");
    arrive("tuesday.csv", 100);
    assert!(p.paths.folder("inbox").join("tuesday.csv").exists());
    assert_eq!(seen(50), Sighting::Older { newest: 100 });
    assert_eq!(seen(100), Sighting::New);
    // The folder written another way, or another folder (there is one remote inbox):
    // older still. By spelling alone, absolute where it had been relative, an older roster
    // had been applied over the newer one.
    for dir in ["outgoing/", "./outgoing", "/home/hr/outgoing", "elsewhere"] {
        let spelt = crate::store::RemoteOrigin {
            dir: dir.into(),
            ..origin("monday.csv", 50)
        };
        assert_eq!(
            p.remote_known(&spelt).unwrap(),
            Sighting::Older { newest: 100 },
            "{dir}"
        );
    }
    // And a file fetched already is known from any spelling of its folder, or another
    // (its name, size and time): it had been fetched and applied again.
    for dir in ["outgoing/", "/home/hr/outgoing", "elsewhere"] {
        let spelt = crate::store::RemoteOrigin {
            dir: dir.into(),
            ..origin("tuesday.csv", 100)
        };
        assert_eq!(p.remote_known(&spelt).unwrap(), Sighting::Known, "{dir}");
    }
}

/// A file fetched, decided and moved away on the server is known while its move is to be
/// done, and told apart once it is: there again, it is said (it had been skipped at every
/// poll with nothing said), not fetched again.
#[test]
fn a_remote_file_there_again_after_its_move_is_told_apart() {
    use super::filing::Sighting;
    let (_dir, p) = pipeline();
    let tmp = p.paths.folder("inbox").join(".fetch-r.csv.part");
    fs::write(&tmp, staff(&[("E1", "IT")])).unwrap();
    p.file_in(&tmp, "r.csv", &origin("r.csv", 100)).unwrap();
    let seen = || p.remote_known(&origin("r.csv", 100)).unwrap();
    assert_eq!(seen(), Sighting::Known, "waiting in inbox/");
    p.process("r.csv").unwrap();
    let file = p.store.files().unwrap().pop().unwrap();
    assert!(file.remote_pending);
    assert_eq!(seen(), Sighting::Known, "its move to be done");
    p.remote_done(file.id).unwrap();
    assert_eq!(
        seen(),
        Sighting::Again {
            id: file.id,
            stored_as: file.stored_as
        }
    );
}
