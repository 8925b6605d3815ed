//! What is read back of a filed file's report: whole (a decision compares it), or its head
//! alone (a notification: a held file's report may be hundreds of MB).

use crate::core::report::{Report, ReportStatus};
use crate::store::{FileEntry, FileStatus};
use std::fs;
use std::path::Path;

/// The report beside a filed file, if readable.
pub(super) fn read_report(file: &Path) -> Option<Report> {
    let mut p = file.as_os_str().to_owned();
    p.push(".report.json");
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

/// What a notification says of a filed file (`entry`, its report at `path`): its report
/// without its changes (a held file's may be hundreds of MB), or its ledger entry alone
/// when the report is unreadable.
pub(super) fn report_head(entry: &FileEntry, path: &Path) -> Report {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        errors: Vec<crate::core::Finding>,
        #[serde(default)]
        more_errors: usize,
        #[serde(default)]
        held_because: Vec<String>,
        // The summary's counts: without them a held file posted after a restart read
        // "deactivated 0" beside a text naming 81 deactivations.
        #[serde(default)]
        counts: crate::core::reconcile::Counts,
    }
    let mut report = Report::new(
        &entry.name,
        &entry.sha256,
        &entry.received_at,
        &entry.processed_at,
    );
    report.status = match entry.status {
        FileStatus::Held => ReportStatus::Held,
        FileStatus::Applied => ReportStatus::Applied,
        FileStatus::DryRun => ReportStatus::DryRun,
        FileStatus::Rejected => ReportStatus::Rejected,
    };
    report.stored_as = Some(entry.stored_as.clone());
    let head = fs::File::open(path)
        .ok()
        .and_then(|f| serde_json::from_reader::<_, Head>(std::io::BufReader::new(f)).ok());
    if let Some(head) = head {
        report.errors = head.errors;
        report.more_errors = head.more_errors;
        report.held_because = head.held_because;
        report.counts = head.counts;
    }
    report
}
