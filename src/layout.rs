//! The layout under `data_dir` (the store, the drop folders, staging, host keys, backups)
//! and the drop's naming rules, each defined once for every mode (host, watch, poll).

use crate::api::error::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Suffixes of names that are still being written (SPEC §5), compared in any letter case.
const PARTIAL_SUFFIXES: [&str; 4] = [".part", ".filepart", ".tmp", ".partial"];

/// Names every mode passes over (SPEC §5): hidden names (starting with `.`) and names ending
/// in `.part`, `.filepart`, `.tmp` or `.partial` in any letter case. The SFTP server refuses
/// uploads under them, the inbox and watch scans and poll mode's listings skip them.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.')
        || PARTIAL_SUFFIXES
            .iter()
            .any(|suffix| ends_with_any_case(name, suffix))
}

/// Whether `name` is a dry run's (`*.dryrun.csv`, in any letter case, as the ignored
/// suffixes are): `Roster.DRYRUN.CSV` had been applied for real.
pub fn is_dry_run(name: &str) -> bool {
    ends_with_any_case(name, DRY_RUN_SUFFIX)
}

fn ends_with_any_case(name: &str, suffix: &str) -> bool {
    let (n, s) = (name.as_bytes(), suffix.as_bytes());
    n.len() >= s.len() && n[n.len() - s.len()..].eq_ignore_ascii_case(s)
}

/// The longest name a file is received under in inbox/ (a folder entry holds 255 bytes;
/// room is left for `-N` when the name is taken).
pub const MAX_RECEIVED_NAME: usize = 240;

/// The name a file that arrives as `name` (its lossy spelling when it is not UTF-8) is
/// renamed to in inbox/: cleaned of separators and control characters, cut to
/// [`MAX_RECEIVED_NAME`] (a dry run's suffix kept). A name of bytes that are not UTF-8
/// grows when cleaned (each becomes U+FFFD, three bytes): uncut, a 104-byte Latin-1 name
/// had failed to rename at every scan, and the roster was never taken.
pub fn received_name(name: &str) -> String {
    crate::util::fitting(&crate::util::clean_file_name(name), MAX_RECEIVED_NAME).into_owned()
}

/// The drop folders.
pub const FOLDERS: [&str; 4] = ["inbox", "processed", "rejected", "held"];

/// Suffix that marks a file as a dry run.
pub const DRY_RUN_SUFFIX: &str = ".dryrun.csv";

/// How the hidden name of a watch-mode copy from another filesystem into inbox/ starts
/// (removed at start-up when a crash left it).
pub const WATCH_COPY: &str = ".watch-";

/// The files and folders under `data_dir`.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The sled store.
    pub store: PathBuf,
    /// SFTP root: inbox/, processed/, rejected/, held/.
    pub drop: PathBuf,
    /// Reports staged before their file's commit.
    pub staging: PathBuf,
    /// SSH host keys.
    pub host_keys: PathBuf,
    /// Automatic backups of the store.
    pub backups: PathBuf,
    /// The web section's secret for CSRF tokens (mode 0600, made on first start).
    pub web_secret: PathBuf,
    /// The optional canonical columns a Workday report has answered with (one a line).
    pub workday_columns: PathBuf,
    /// The optional canonical columns a csv_url export has had (one a line).
    pub csv_url_columns: PathBuf,
    /// The quiet spell the last `stale` notification was about.
    pub stale_reported: PathBuf,
    /// The id of the last held file whose `file_held` notification was delivered.
    pub held_announced: PathBuf,
    /// Watch mode: the files copied from `watch_dir` that could not be removed there.
    pub watch_kept: PathBuf,
    /// HRIS mode: the last fetch's outcome, kept across restarts.
    pub hris_state: PathBuf,
}

impl Paths {
    /// The layout under `data_dir`.
    pub fn new(data_dir: &Path) -> Paths {
        Paths {
            store: data_dir.join("store"),
            drop: data_dir.join("drop"),
            staging: data_dir.join("staging"),
            host_keys: data_dir.join("host_keys"),
            backups: data_dir.join("backups"),
            web_secret: data_dir.join("web_secret"),
            workday_columns: data_dir.join("workday-columns"),
            csv_url_columns: data_dir.join("csv-url-columns"),
            stale_reported: data_dir.join("stale-reported"),
            held_announced: data_dir.join("held-announced"),
            watch_kept: data_dir.join("watch-kept"),
            hris_state: data_dir.join("hris-state"),
        }
    }

    /// A drop folder.
    pub fn folder(&self, name: &str) -> PathBuf {
        self.drop.join(name)
    }

    /// Creates missing folders.
    pub fn ensure(&self) -> Result<()> {
        for dir in FOLDERS
            .iter()
            .map(|f| self.folder(f))
            .chain([self.staging.clone()])
        {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_partial_names_are_ignored_in_any_letter_case() {
        for name in [
            ".roster.csv",
            ".",
            "roster.csv.part",
            "roster.csv.Part",
            "ROSTER.CSV.PART",
            "x.FilePart",
            "x.TMP",
            "x.Partial",
            "été.tmp",
        ] {
            assert!(is_ignored(name), "{name} should be ignored");
        }
        for name in [
            "roster.csv",
            "part",
            "x.part.csv",
            "x.tmp2",
            "x.parts",
            "été.csv",
            "tmp",
        ] {
            assert!(!is_ignored(name), "{name} should not be ignored");
        }
    }
}
