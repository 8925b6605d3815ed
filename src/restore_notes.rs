//! What a restore says besides its count: what the restored store does not know of the
//! drop folders (rosters filed after the backup), and whether the backup could be checked.
//! Said in the restore's answer and in its audit entry alike.

use crate::layout::Paths;
use crate::store::{FileStatus, SledStore, Store, StoreResult};
use crate::util::compact_timestamp;
use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

/// How many names of a kind a note lists (the newest); the rest are counted.
const LISTED: usize = 5;

/// What the restored store does not know.
#[derive(Debug, Default)]
pub struct Unknown {
    /// Rosters in held/ that the restored ledger does not hold as held (held after the
    /// backup): decided by nobody unless someone processes them again.
    pub held: Vec<String>,
    /// Rosters in processed/ (not dry runs) that the restored ledger does not know, oldest
    /// first: applied after the backup, their changes (leavers deactivated among them) are
    /// undone by the restore.
    pub applied: Vec<String>,
    /// Files the restored ledger holds as held whose roster is no longer in held/ (decided
    /// after the backup), and the folder it is in now if any: approval cannot apply them,
    /// and they block every later file.
    pub held_gone: Vec<(u64, String, Option<&'static str>)>,
    /// processed/ and held/, as paths a command takes from any folder.
    pub folders: (PathBuf, PathBuf),
}

/// The time a stored name starts with (`20261207T173841Z_r.csv`: when it was filed), as
/// [`compact_timestamp`] writes it; `None` for a name not stored so (put there by hand).
fn filed_at(name: &str) -> Option<&str> {
    name.get(..16)
        .filter(|stamp| crate::util::is_compact_timestamp(stamp))
}

/// [`Unknown`] of the store `restored`, from a backup written at `backup_at` (RFC 3339),
/// over the drop folders of `paths`. A roster filed before the backup that its ledger does
/// not know was rolled back by an earlier restore: not named (it had been named as the
/// newest to process again, an old roster that would take rights away from people the
/// later ones had given them to).
pub fn unknown(restored: &SledStore, paths: &Paths, backup_at: &str) -> StoreResult<Unknown> {
    let files = restored.files()?;
    let since = crate::util::utc_second(backup_at).map(|t| compact_timestamp(&t));
    // A name without a stamp was not filed by autoprov (put there by hand): never named as
    // applied, nor as the newest (sorted by name, it had come after every stamped one). A
    // backup time not read names every stamped one, as before.
    let after = |n: &str| match (&since, filed_at(n)) {
        (_, None) => false,
        (Some(since), Some(at)) => at >= since.as_str(),
        (None, Some(_)) => true,
    };
    // A roster in processed/ is known when the ledger has it decided (applied, or a dry
    // run: one stored as `x.dryrun-2.csv` no longer ends like one, and had been named to
    // process again, for real); one it holds as held was approved after the backup, and
    // what it changed is undone too.
    let known: HashSet<&str> = (files.iter())
        .filter(|f| f.status != FileStatus::Held)
        .map(|f| f.stored_as.as_str())
        .collect();
    let held_known: HashSet<&str> = (files.iter())
        .filter(|f| f.status == FileStatus::Held)
        .map(|f| f.stored_as.as_str())
        .collect();
    let held_folder = paths.folder("held");
    let absolute = |folder: &str| {
        let path = paths.folder(folder);
        std::path::absolute(&path).unwrap_or(path)
    };
    Ok(Unknown {
        held: rosters_in(paths, "held", |n| !held_known.contains(n) && after(n)),
        // One the ledger holds as held was approved after the backup, whenever it arrived.
        applied: rosters_in(paths, "processed", |n| {
            !known.contains(n)
                && !crate::layout::is_dry_run(n)
                && (held_known.contains(n) || after(n))
        }),
        folders: (absolute("processed"), absolute("held")),
        held_gone: (files.iter())
            .filter(|f| f.status == FileStatus::Held)
            .filter(|f| !held_folder.join(&f.stored_as).exists())
            .map(|f| {
                let now_in = ["processed", "rejected"]
                    .into_iter()
                    .find(|folder| paths.folder(folder).join(&f.stored_as).exists());
                (f.id, f.stored_as.clone(), now_in)
            })
            .collect(),
    })
}

/// The rosters (not reports, not hidden files) in `folder` for which `wanted` holds, in the
/// order they were filed: by the time their stored names start with, then, within one
/// second, by when they were renamed there (their ctime). By name alone, `x-2.csv` filed
/// after `y.csv` in the same second had come first, and `y.csv` was named the newest.
fn rosters_in(paths: &Paths, folder: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(listed) = fs::read_dir(paths.folder(folder)) else {
        return Vec::new();
    };
    let mut rosters: Vec<(String, (i64, i64), String)> = (listed.flatten())
        .map(|e| {
            let ctime = e.metadata().map_or((0, 0), |m| (m.ctime(), m.ctime_nsec()));
            (e.file_name().to_string_lossy().into_owned(), ctime)
        })
        .filter(|(n, _)| {
            !n.starts_with('.') && !n.ends_with(".report.json") && !n.ends_with(".report.txt")
        })
        .filter(|(n, _)| wanted(n))
        .map(|(n, ctime)| (filed_at(&n).unwrap_or_default().to_string(), ctime, n))
        .collect();
    rosters.sort();
    rosters.into_iter().map(|(.., n)| n).collect()
}

/// The newest [`LISTED`] of `names` (oldest first), the others counted.
fn newest(names: &[String]) -> String {
    let shown = names[names.len().saturating_sub(LISTED)..].join(", ");
    match names.len() > LISTED {
        true => format!("{} earlier and {shown}", names.len() - LISTED),
        false => shown,
    }
}

impl Unknown {
    /// One sentence for each thing a person must act on, with what to do.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        // First: while such a file is held in the ledger, no roster can be processed.
        for (id, stored_as, now_in) in &self.held_gone {
            let decided = match now_in {
                Some("processed") => {
                    "approved after the backup: its roster is in processed/ (named below) and \
                     what it changed is undone"
                }
                Some(_) => "rejected after the backup",
                None => "decided after the backup, or removed",
            };
            notes.push(format!(
                "the restored ledger holds file {id} ({stored_as}) as held, but it was \
                 {decided}; it cannot be approved and blocks every later file: close it with \
                 `autoprov files reject {id}` first"
            ));
        }
        if let Some(last) = self.applied.last() {
            notes.push(format!(
                "processed/ holds {} roster(s) applied after the backup, which the restored \
                 ledger does not hold as applied: {}; the accounts are as the backup left them, so what \
                 they changed is undone (leavers they deactivated are active again): \
                 process the newest again (`autoprov process {}`)",
                self.applied.len(),
                newest(&self.applied),
                self.folders.0.join(last).display()
            ));
        }
        if !self.held.is_empty() {
            notes.push(format!(
                "held/ holds files held after the backup, unknown to the restored ledger: {}; \
                 process each again (`autoprov process {}`) or remove it",
                self.held.join(", "),
                self.folders.1.join("NAME").display()
            ));
        }
        notes
    }
}

/// The note for a backup that could not be checked whole, if it could not.
pub fn unchecked(checked: crate::store::Checked) -> Option<String> {
    use crate::store::Checked;
    match checked {
        Checked::No => Some(
            "the backup has no SHA-256 on its end line (written by an older build): its \
             records were restored unchecked, so a change made to the file would not have \
             been noticed"
                .to_string(),
        ),
        Checked::Records => Some(
            "the backup is a version 1 backup (an older build's): its records were checked \
             against its SHA-256, its time (created_at, from which what the restore undid is \
             told) was not: a change to it would not have been noticed"
                .to_string(),
        ),
        Checked::Whole => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 backup checked by its records' SHA-256 says its time was not checked; one
    /// without a SHA-256 says it was restored unchecked; a version 2 backup says nothing.
    #[test]
    fn what_a_backups_sha256_did_not_check_is_said() {
        use crate::store::Checked;
        assert!(
            unchecked(Checked::No)
                .unwrap()
                .contains("restored unchecked")
        );
        let records = unchecked(Checked::Records).unwrap();
        assert!(records.contains("its time (created_at"), "{records}");
        assert_eq!(unchecked(Checked::Whole), None);
    }
    use crate::store::{FileEntry, samples};

    fn entry(id: u64, stored_as: &str, status: FileStatus) -> FileEntry {
        FileEntry {
            id,
            name: "r.csv".into(),
            stored_as: stored_as.into(),
            size: 1,
            sha256: format!("{id:064}"),
            received_at: "2026-12-01T00:00:00Z".into(),
            processed_at: "2026-12-01T00:00:00Z".into(),
            status,
            summary: String::new(),
            pending_move: None,
            remote: None,
            remote_pending: false,
            was_held: false,
        }
    }

    /// After a restore, the rosters applied since the backup are named (the newest to
    /// process again: the leavers they deactivated are active again), and so is a file the
    /// restored ledger holds as held whose roster was decided since (it blocks every later
    /// file); a restore had said neither.
    #[test]
    fn the_rosters_filed_after_the_backup_are_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = SledStore::open(&paths.store).unwrap();
        samples::commit_entry(
            &store,
            &entry(1, "20261201T000000Z_a.csv", FileStatus::Applied),
        );
        samples::commit_entry(
            &store,
            &entry(2, "20261202T000000Z_b.csv", FileStatus::Held),
        );
        let dry = "20261202T000000Z_d.dryrun-2.csv";
        samples::commit_entry(&store, &entry(3, dry, FileStatus::DryRun));
        let processed = paths.folder("processed");
        fs::create_dir_all(&processed).unwrap();
        fs::create_dir_all(paths.folder("held")).unwrap();
        for name in [
            "20261201T000000Z_a.csv",
            "20261202T000000Z_b.csv",
            "20261203T000000Z_c.csv",
            "20261203T000000Z_c.csv.report.json",
            "20261204T000000Z_d.dryrun.csv",
            "20261205T000000Z_e.csv",
            dry,
        ] {
            fs::write(processed.join(name), b"x").unwrap();
        }
        let unknown = unknown(&store, &paths, "2026-12-01T12:00:00Z").unwrap();
        assert_eq!(
            unknown.applied,
            [
                "20261202T000000Z_b.csv",
                "20261203T000000Z_c.csv",
                "20261205T000000Z_e.csv"
            ],
            "file 2, held in the ledger, was approved after the backup; reports and dry runs \
             are not rosters applied"
        );
        assert_eq!(
            unknown.held_gone,
            [(2, "20261202T000000Z_b.csv".to_string(), Some("processed"))]
        );
        let notes = unknown.notes();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("approved after the backup")
                && notes[0].contains("`autoprov files reject 2` first"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].contains("3 roster(s) applied after the backup")
                && notes[1].ends_with(&format!(
                    "`autoprov process {}`)",
                    std::path::absolute(&processed)
                        .unwrap()
                        .join("20261205T000000Z_e.csv")
                        .display()
                )),
            "{}",
            notes[1]
        );
    }

    /// A roster filed before the backup that its ledger does not know was rolled back by an
    /// earlier restore: it is not named to process again (the restore had named it as the
    /// newest, an old roster that would take away rights later ones gave); one filed after
    /// the backup, or held in the ledger and approved since, is.
    #[test]
    fn a_roster_an_earlier_restore_rolled_back_is_not_named() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = SledStore::open(&paths.store).unwrap();
        let applied = "20261207T174140Z_r11.csv";
        samples::commit_entry(&store, &entry(14, applied, FileStatus::Applied));
        let approved = "20261207T170000Z_h.csv";
        samples::commit_entry(&store, &entry(15, approved, FileStatus::Held));
        for folder in ["processed", "held"] {
            fs::create_dir_all(paths.folder(folder)).unwrap();
        }
        let orphan = "20261207T173841Z_r4.csv";
        let later = "20261207T174500Z_r12.csv";
        for name in [applied, approved, orphan, later, "by-hand.csv"] {
            fs::write(paths.folder("processed").join(name), b"x").unwrap();
        }
        for name in ["20261207T173000Z_old.csv", "20261207T174600Z_new.csv"] {
            fs::write(paths.folder("held").join(name), b"x").unwrap();
        }
        let found = unknown(&store, &paths, "2026-12-07T17:42:00Z").unwrap();
        assert_eq!(found.applied, [approved, later]);
        assert_eq!(found.held, ["20261207T174600Z_new.csv"]);
        // A backup time that cannot be read names every roster the ledger does not know.
        let unread = unknown(&store, &paths, "yesterday").unwrap();
        assert_eq!(unread.applied, [approved, orphan, later]);
        assert_eq!(filed_at("20261207T173841Z"), Some("20261207T173841Z"));
        assert_eq!(filed_at("2026120XT173841Z_a.csv"), None);
        assert_eq!(filed_at("é"), None);
    }

    /// Rosters filed in one second are in the order they were filed, not by name: `b-2.csv`,
    /// filed last, had come before `c.csv`, which was named the newest to process again.
    #[test]
    fn rosters_of_one_second_are_in_the_order_they_were_filed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let processed = paths.folder("processed");
        fs::create_dir_all(&processed).unwrap();
        for name in [
            "20261207T183254Z_b.csv",
            "20261207T183254Z_c.csv",
            "20261207T183254Z_b-2.csv",
            "20261207T183253Z_z.csv",
        ] {
            fs::write(processed.join(name), b"x").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            rosters_in(&paths, "processed", |_| true),
            [
                "20261207T183253Z_z.csv",
                "20261207T183254Z_b.csv",
                "20261207T183254Z_c.csv",
                "20261207T183254Z_b-2.csv"
            ]
        );
    }

    #[test]
    fn many_names_are_counted_past_the_newest() {
        let names: Vec<String> = (1..=7).map(|i| format!("n{i}")).collect();
        assert_eq!(newest(&names), "2 earlier and n3, n4, n5, n6, n7");
        assert_eq!(newest(&names[..2]), "n1, n2");
    }
}
