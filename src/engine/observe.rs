//! What the engine tells an observer about the files it decides (notifications use it), so
//! the engine itself stays free of HTTP and of what is done with the news.

use crate::core::report::Report;
use std::sync::Arc;

/// One decision of the engine about a file, or its failure to process one.
pub enum FileOutcome<'a> {
    /// The file was filed with `report.status` (applied, held, rejected, dry run):
    /// by the engine (`decided_by` = `None`), or by a person deciding a held file.
    Filed {
        /// Its ledger id.
        id: u64,
        /// Its report (`file` = the name it had in inbox/, `stored_as` where it was filed).
        report: &'a Report,
        /// The Unix user who approved or rejected the held file.
        decided_by: Option<&'a str>,
    },
    /// Processing `inbox/<name>` failed (an I/O or store error); the file stays in inbox/
    /// (or, when it was committed, its filing is finished later) and is retried.
    Failed {
        /// Its name in inbox/.
        name: &'a str,
        /// What failed.
        error: &'a crate::api::Error,
        /// What becomes of a file that never reached inbox/ (a watch-mode file stays in
        /// `watch_dir`; a failed upload is gone until sent again); `None`: the file stays
        /// in inbox/, as the error says.
        next: Option<&'a str>,
    },
}

/// Called on the engine thread for each outcome: it must return at once (no I/O, no wait).
pub type FileObserver = Arc<dyn Fn(&FileOutcome<'_>) + Send + Sync>;
