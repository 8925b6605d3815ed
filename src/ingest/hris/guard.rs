//! The canonical columns an HR system's answers have had, remembered in `data_dir`: a fetch
//! whose answer lost one fails. A roster without `employment_status` counts every leaver as
//! active, one without `manager_id` nobody as a manager, and either is still a valid file:
//! Workday leaves a field out of every entry when the integration user may no longer see
//! it, and an export can be edited to drop a column. A column taken out on purpose: delete
//! the file named in the error.

use super::http::FetchError;
use crate::core::columns::{EMPLOYMENT_STATUS, MANAGER_ID};
use std::path::PathBuf;

/// The canonical columns a roster may lack, whose loss changes who gets a role.
pub const GUARDED: [&str; 2] = [MANAGER_ID, EMPLOYMENT_STATUS];

/// What a provider's answers are, for the message.
#[derive(Clone, Copy)]
pub enum Answers {
    /// Workday's report entries (fields).
    Workday,
    /// A CSV export (columns).
    CsvExport,
}

/// The guarded columns one provider's answers have had.
pub struct ColumnGuard {
    remembered: PathBuf,
    answers: Answers,
}

impl ColumnGuard {
    /// Remembered in `remembered`.
    pub fn new(remembered: PathBuf, answers: Answers) -> ColumnGuard {
        ColumnGuard {
            remembered,
            answers,
        }
    }

    /// Fails when a column of [`GUARDED`] that an earlier answer had is not among `has`
    /// (the guarded columns this answer has); remembers those it has.
    pub fn check(&self, has: &[&str]) -> Result<(), FetchError> {
        let local = |e: std::io::Error| FetchError::Local {
            path: self.remembered.display().to_string(),
            detail: e.to_string(),
        };
        // Only a file not made yet is nothing remembered: one that cannot be read would
        // have let a lost column through.
        let had: Vec<String> = match std::fs::read_to_string(&self.remembered) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(local(e)),
        };
        if let Some(lost) = had.iter().find(|c| !has.contains(&c.as_str())) {
            let (what, why, taken) = match self.answers {
                Answers::Workday => (
                    format!(
                        "the Workday report's entries have no {lost} field, though earlier answers had one"
                    ),
                    "the integration system user may have lost access to it",
                    "the field was taken out of the report",
                ),
                Answers::CsvExport => (
                    format!("the CSV export has no {lost} column, though earlier exports had one"),
                    "the export may have been changed",
                    "the column was taken out of the export",
                ),
            };
            return Err(FetchError::Invalid(format!(
                "{what}: {why} (a file without it would count every leaver as active, or \
                 nobody as a manager). If {taken} on purpose, delete {}",
                self.remembered.display()
            )));
        }
        if has.iter().any(|c| !had.iter().any(|h| h == c)) {
            let mut text = has.join("\n");
            text.push('\n');
            crate::util::write_atomic(&self.remembered, text.as_bytes()).map_err(local)?;
        }
        Ok(())
    }
}
