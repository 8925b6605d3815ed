//! One file: read -> validate -> plan -> safety -> apply -> report -> move (SPEC §4–6).
//!
//! Crash safety: the outcome of a file is committed to the store together with its ledger
//! entry, which records the move still to do (`pending_move`). The reports are staged
//! before the commit is made current (while its accounts are written aside); the move and
//! the reports' final renames happen after it, and [`Pipeline::recover`] finishes them
//! after a crash. So each file is applied once and its report is never visible before the
//! store is flushed.

use super::arrivals::Arrivals;
use super::observe::{FileObserver, FileOutcome};
use super::resync::{Keep, Kept, Planning, Record};
use super::roster_file::{FileBytes, HeldFile};
use crate::api::error::Blocked;
use crate::api::error::{Context, Error, Result};
use crate::config::Config;
use crate::core::accounts::{AccountGroup, HeldGroup};
use crate::core::model::{Finding, Roster};
use crate::core::packed::Packed;
use crate::core::parallel::{ROWS_WORTH_A_THREAD, drop_aside};
use crate::core::reconcile::{self, Limits, SyncInput};
use crate::core::report::{Report, ReportStatus};
use crate::core::roster;
use crate::core::rules::{self, CompiledRule, Rule, RuleId};
use crate::core::updates::Updates;
use crate::layout::{Paths, is_ignored};
use crate::store::{
    AccountsToken, AuditNote, Commit, FileEntry, FileStatus, Store, TokenChange, summary,
};
use crate::util::{compact_timestamp, crash_point, now_rfc3339, rfc3339};
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// What evaluating a roster against the current state gives.
pub(super) struct Evaluation {
    pub(super) report: Report,
    /// The accounts to write if it is applied, packed; the accounts it creates are made
    /// from the report's `created` changes as they are written.
    updates: Vec<Packed>,
    /// When, and by what file or command, those accounts are created.
    stamp: (String, String),
    /// What the roster leaves for the next to be re-synced from its changes, when it is
    /// applied with no warning ([`super::resync`]).
    pub(super) next: Option<Kept>,
    /// The accounts token it was evaluated with (read before the rules).
    pub(super) from_token: Option<AccountsToken>,
    /// The accounts token its commit leaves, when the store's is still `from_token` (the
    /// one `next` is kept with).
    pub(super) token: Option<TokenChange>,
}

impl Evaluation {
    /// An evaluation that writes no account.
    pub(super) fn report_only(report: Report) -> Evaluation {
        Evaluation {
            report,
            updates: Vec::new(),
            stamp: Default::default(),
            next: None,
            from_token: None,
            token: None,
        }
    }

    /// What committing it writes to the accounts: nothing unless it is `applied`.
    pub(super) fn writes(&mut self, applied: bool) -> Updates<'_> {
        self.writes_and_report(applied).0
    }

    /// [`Self::writes`], with the report they were planned with (read while they are written).
    pub(super) fn writes_and_report(&mut self, applied: bool) -> (Updates<'_>, &Report) {
        if !applied {
            return (Updates::none(), &self.report);
        }
        let (now, source) = &self.stamp;
        let updates = Updates::of_sync(
            std::mem::take(&mut self.updates),
            &self.report.changes,
            now,
            source,
        );
        (updates, &self.report)
    }
}

/// Free space, besides what each change needs, below which a file's reports are staged
/// before its commit writes rather than while ([`Pipeline::room_for_both`]).
const ROOM_TO_SPARE: u64 = 256 << 20;

/// The user the audit names for a file no person processed (a source delivered it).
pub const AUTOPROV: &str = "autoprov";

/// What an account's history names as the cause of a change made by `what` (a file's
/// stored name, unique as in the ledger and its folder, or `sync`): with who asked for it
/// (`by`, unless the daemon did it on its own), and how (`how`, e.g. `approved`).
pub fn history_source(what: &str, by: &str, how: &str) -> String {
    match (by, how) {
        (AUTOPROV, "") => what.to_string(),
        (_, "") => format!("{what} by {by}"),
        _ => format!("{what} {how} by {by}"),
    }
}

/// The pipeline over one store and one drop.
pub struct Pipeline<S: Store> {
    /// Settings.
    pub cfg: Config,
    /// State.
    pub store: S,
    /// Layout.
    pub paths: Paths,
    /// Set when the daemon stops: loops over waiting files end after the current one.
    stopping: std::sync::atomic::AtomicBool,
    /// Told of every file decided or failed (the daemon's notifications); unset in the CLI.
    observer: std::sync::OnceLock<FileObserver>,
    /// Set when a file is filed for real (applied, rejected or held, or a held file decided;
    /// not a dry run): the engine clears its last error after a request that filed one.
    filed_for_real: std::sync::atomic::AtomicBool,
    /// Free space, besides what each change needs, below which a file's reports are staged
    /// before its commit writes rather than while ([`Pipeline::room_for_both`]).
    pub(super) room_to_spare: u64,
    /// Files the engine held or rejected whose filing [`Pipeline::recover`] finished: their
    /// observer is told once it is set (the daemon sets it after the store is opened).
    pub(super) recovered: std::sync::Mutex<Vec<u64>>,
    /// Files in inbox/ by name, and who asked for them, where the file could not be marked
    /// as theirs ([`super::asker`]: a file system without user attributes): audited as
    /// theirs whichever request or scan processes them, while the daemon runs.
    unmarked: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// The file in inbox/ being processed now, and since when: `status` says which of the
    /// files waiting it is (it had read as one waiting its turn while it was applied).
    in_hand: std::sync::Mutex<Option<Processing>>,
    /// When each file of inbox/ was first seen complete, while the daemon runs.
    pub(super) arrivals: Arrivals,
}

/// A file of inbox/ being processed, and since when.
pub type Processing = (String, std::time::SystemTime);

/// Names the file [`Pipeline::in_hand`] while it lives; the name is let go when it drops.
pub(super) struct InHand<'a>(&'a std::sync::Mutex<Option<Processing>>);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl<S: Store> Pipeline<S> {
    /// The file `name` in inbox/, which could not be marked, is `caller`'s.
    pub(super) fn asked_unmarked(&self, name: &str, caller: &str) {
        let mut unmarked = self.unmarked.lock().unwrap_or_else(|e| e.into_inner());
        unmarked.insert(name.to_string(), caller.to_string());
    }

    /// Forgets who asked for `name` (processed, or taken out of inbox/).
    pub(super) fn forget_unmarked(&self, name: &str) {
        let mut unmarked = self.unmarked.lock().unwrap_or_else(|e| e.into_inner());
        unmarked.remove(name);
    }

    /// Whether a file was filed for real since the last call (applied, rejected or held, or a
    /// held file decided; a dry run is not).
    pub(super) fn take_filed_for_real(&self) -> bool {
        (self.filed_for_real).swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// The file in inbox/ being processed now, and since when.
    pub fn in_hand(&self) -> Option<Processing> {
        self.in_hand
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Names `name` as the file being processed until the guard drops.
    pub(super) fn take_in_hand(&self, name: &str) -> InHand<'_> {
        let now = std::time::SystemTime::now();
        *self.in_hand.lock().unwrap_or_else(|e| e.into_inner()) = Some((name.to_string(), now));
        InHand(&self.in_hand)
    }

    /// Asks loops over waiting files to stop after the file in progress.
    pub fn request_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A pipeline; call [`Pipeline::recover`] before processing.
    pub fn new(cfg: Config, store: S) -> Result<Pipeline<S>> {
        let paths = Paths::new(&cfg.data_dir);
        paths.ensure()?;
        Ok(Pipeline {
            cfg,
            store,
            paths,
            stopping: Default::default(),
            observer: Default::default(),
            filed_for_real: Default::default(),
            room_to_spare: ROOM_TO_SPARE,
            recovered: Default::default(),
            unmarked: Default::default(),
            in_hand: Default::default(),
            arrivals: Default::default(),
        })
    }

    /// Sets the observer told of each file decided or failed; only the first call counts.
    /// It is told at once of the files held or rejected whose filing the start finished: a
    /// crash between their commit and their filing had lost their notification (a held file
    /// then blocked every later one unannounced).
    pub fn set_observer(&self, observer: FileObserver) {
        if self.observer.set(observer).is_err() {
            tracing::warn!("the pipeline already has an observer; the new one is ignored");
            return;
        }
        let recovered = std::mem::take(&mut *self.recovered.lock().expect("recovered lock"));
        for id in &recovered {
            match self.store.file(*id) {
                Ok(Some(entry)) => self.announce_filed(&entry),
                Ok(None) => {}
                Err(e) => tracing::error!(id, "reading a recovered file's ledger entry: {e:#}"),
            }
        }
        // The file held now, told again (the observer tells only one whose notification was
        // never delivered): one whose alert nothing received before a stop had blocked every
        // later roster unannounced.
        match self.held() {
            Ok(Some(held)) if !recovered.contains(&held.id) => self.announce_filed(&held),
            Ok(_) => {}
            Err(e) => tracing::error!("reading the held file's ledger entry: {e:#}"),
        }
    }

    /// Tells the observer, if any, of an outcome.
    pub(super) fn tell(&self, outcome: FileOutcome<'_>) {
        if let FileOutcome::Filed { report, .. } = &outcome
            && report.status != crate::core::report::ReportStatus::DryRun
        {
            (self.filed_for_real).store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(observer) = self.observer.get() {
            observer(&outcome);
        }
    }

    /// The held file that blocks processing, if any.
    pub fn held(&self) -> Result<Option<FileEntry>> {
        Ok(self
            .store
            .files()?
            .into_iter()
            .find(|f| f.status == FileStatus::Held))
    }

    /// The refusal of a file while `held` blocks it: how to decide it (only a rejection
    /// when its roster is gone from held/).
    pub fn blocked_by(&self, held: FileEntry) -> Blocked {
        let roster = self.paths.folder("held").join(&held.stored_as);
        Blocked::Held {
            id: held.id,
            gone: !crate::util::is_taken(&roster),
            name: held.stored_as,
        }
    }

    /// Complete files waiting in inbox/, oldest completion first (as first seen).
    pub fn waiting(&self) -> Result<Vec<String>> {
        let inbox = self.paths.folder("inbox");
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for item in fs::read_dir(&inbox).with_context(|| format!("listing {}", inbox.display()))? {
            let item = item?;
            // A name that is not UTF-8, or holds control or format characters, waits for
            // [`Self::rename_unclean`].
            let Some(name) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if is_ignored(&name) || crate::util::clean_file_name(&name) != name {
                continue;
            }
            // A file gone between the listing and its stat (an upload's temporary name
            // discarded, a file just processed) is not waiting: not a failed listing.
            let meta = match item.metadata() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                meta => meta?,
            };
            if meta.file_type().is_file() {
                seen.insert(super::arrivals::inode(&meta));
                found.push((self.arrivals.of(&meta), name));
            }
        }
        self.arrivals.keep_only(&seen);
        found.sort();
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }

    /// Renames the complete files of inbox/ whose names are not UTF-8 (`mv` by hand from a
    /// Latin-1 share), or hold control or format characters, to cleaned names: each is then
    /// taken as if it had just arrived (a rename is its completion). Looked for under its
    /// lossy spelling, a name not UTF-8 had not been found, and it stopped every file behind
    /// it; an escape sequence or a line break in a name had reached the filed name, the log
    /// and the CLI's listings. Ignored names (hidden, `.part`: still being written) and
    /// anything but a regular file are left as they are. Run by the engine's scan alone,
    /// never by a read.
    pub fn rename_unclean(&self) -> Result<()> {
        let inbox = self.paths.folder("inbox");
        for item in fs::read_dir(&inbox).with_context(|| format!("listing {}", inbox.display()))? {
            let item = item?;
            let raw = item.file_name();
            let lossy = raw.to_string_lossy();
            let regular = item.file_type().is_ok_and(|t| t.is_file());
            let cleaned = crate::util::clean_file_name(&lossy);
            if raw.to_str() == Some(cleaned.as_str()) || is_ignored(&lossy) || !regular {
                continue;
            }
            let cleaned = crate::layout::received_name(&lossy);
            let why = crate::util::unclean_why(&raw);
            // Quoted as Rust writes strings: control and format characters escaped.
            match crate::util::rename_into_free_name(&item.path(), &inbox, &cleaned) {
                Ok(renamed) => tracing::warn!(
                    file = %renamed,
                    "the name of inbox/{lossy:?} {why}: renamed to inbox/{renamed}, taken as \
                     just arrived"
                ),
                Err(e) => tracing::error!(
                    "the name of inbox/{lossy:?} {why}, and it cannot be renamed: {e}"
                ),
            }
        }
        Ok(())
    }

    /// Processes `inbox/<name>`; refuses while a held file waits. The observer hears of
    /// the file once it is filed, and of each failure (not of a refusal).
    pub fn process(&self, name: &str) -> Result<Report> {
        self.process_received(name, None, AUTOPROV, false)
    }

    /// [`Self::process`], with the file's bytes when [`Self::receive`] read them already
    /// (they are read again if inbox/<name> is no longer the copy it wrote), for `by`: the
    /// user the audit names (who ran `process` or `fetch`; [`AUTOPROV`] for a file a source
    /// delivered). `uploaded`: the file came with the request, whose failure takes it out of
    /// inbox/ again (the failure's notification says so, not "retried").
    pub fn process_received(
        &self,
        name: &str,
        bytes: Option<FileBytes>,
        by: &str,
        uploaded: bool,
    ) -> Result<Report> {
        // A file someone asked for is theirs whichever request, scan or start processes it.
        let asked = match by {
            AUTOPROV => super::asker::of(&self.paths.folder("inbox").join(name)).or_else(|| {
                let unmarked = self.unmarked.lock().unwrap_or_else(|e| e.into_inner());
                unmarked.get(name).cloned()
            }),
            _ => None,
        };
        let by = asked.as_deref().unwrap_or(by);
        let in_hand = self.take_in_hand(name);
        let processed = self.process_file(name, bytes, by);
        drop(in_hand);
        if processed.is_ok() {
            self.forget_unmarked(name);
        }
        match processed {
            Ok((id, report)) => {
                self.tell(FileOutcome::Filed {
                    id,
                    report: &report,
                    decided_by: None,
                });
                Ok(report)
            }
            Err(error) => {
                if !matches!(error, Error::Refused(_)) {
                    let next = match (self.store.write_failed(), uploaded) {
                        // Its change may be in the store's memory and not on disk: known
                        // once the store is read from disk again.
                        (Some(_), _) => Some(
                            "The store could not write to disk and autoprov stops to restart: \
                             whether this file's change is there is known once it runs again; \
                             check before sending it again",
                        ),
                        (None, true) => Some(
                            "Nothing was changed; the file sent with the command was taken out \
                             of inbox/ again: send it again",
                        ),
                        (None, false) => None,
                    };
                    self.tell(FileOutcome::Failed {
                        name,
                        error: &error,
                        next,
                    });
                }
                Err(error)
            }
        }
    }

    /// [`Self::process`] without the observer: the file's ledger id and report.
    fn process_file(
        &self,
        name: &str,
        received: Option<FileBytes>,
        by: &str,
    ) -> Result<(u64, Report)> {
        if let Some(done) = self.finish_committed_earlier(name)? {
            return Ok(done);
        }
        if let Some(held) = self.held()? {
            return Err(self.blocked_by(held).into());
        }
        let path = self.paths.folder("inbox").join(name);
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if !meta.file_type().is_file() {
            return Err(Error::usage(format!(
                "{} is not a regular file; it was left alone",
                path.display()
            )));
        }
        let received_at = rfc3339(self.arrivals.of(&meta).0);
        let max = self.cfg.roster.max_bytes;
        let bytes = match received {
            Some(bytes) if meta.len() <= max && bytes.is_at(&path) => Some(bytes),
            _ => read_limited(&path, max)?,
        };
        // Held to know the file again at filing time; without it (no descriptor left), it is
        // hashed again.
        let read = bytes.as_ref().and_then(|b| b.held().ok());
        // The hash is known once the rows are read (`FileBytes::sha256`).
        // `file`, not `name`: JSON logs name the span itself `name`, and a second `name` key
        // lost the file's to a parser keeping the last one.
        let span =
            tracing::info_span!("file", file = name, sha256 = tracing::field::Empty).entered();
        let now = now_rfc3339();
        let dry_run = crate::layout::is_dry_run(name);
        let stored_as = self.unique_name(&compact_timestamp(&now), name)?;
        let mut eval = match bytes {
            Some(bytes) => self.evaluate(
                bytes,
                name,
                &history_source(&stored_as, by, ""),
                &received_at,
                &now,
                Some(self.cfg.limits()),
                dry_run,
                Record::UsedAndKept,
            )?,
            None => Evaluation::report_only(Report {
                errors: vec![crate::core::Finding::file(format!(
                    "the file is {} bytes, more than roster.max_bytes = {}",
                    meta.len(),
                    self.cfg.roster.max_bytes
                ))],
                ..Report::new(name, &crate::util::sha256_file(&path)?, &received_at, &now)
            }),
        };
        let sha = eval.report.sha256.clone();
        span.record("sha256", &sha[..12]);
        if let Some(earlier) = self.store.file_by_sha(&sha)? {
            eval.report.repeats = Some(earlier.stored_as);
        }
        let status = FileStatus::from(eval.report.status);
        eval.report.stored_as = Some(stored_as.clone());
        let remote = self.store.remote_registration(name)?;
        let entry = FileEntry {
            id: self.store.next_file_id()?,
            name: name.to_string(),
            stored_as: stored_as.clone(),
            size: meta.len(),
            sha256: sha,
            received_at,
            processed_at: now.clone(),
            status,
            summary: summary(&eval.report),
            pending_move: Some((
                format!("inbox/{name}"),
                format!("{}/{stored_as}", status.folder()),
            )),
            // A held file's remote copy waits for the decision.
            remote_pending: remote.is_some() && status != FileStatus::Held,
            remote,
            was_held: false,
        };
        let file = read.as_ref().map(HeldFile::last_write);
        let staged = self.stage_next(&mut eval, entry.id, file);
        let committed = self.commit_file(&entry, &mut eval, now, by);
        self.keep_next(staged, committed.is_ok());
        committed?;
        log_processed(&entry, &eval.report, by);
        self.finish_filing_committed(&entry, read.as_ref())?;
        Ok((entry.id, eval.report))
    }

    /// Finishes the filing of `entry` when its commit went through and its filing did not
    /// (an I/O error, a flush that failed): on the engine's thread only.
    pub(super) fn finish_unfiled(&self, entry: &FileEntry) -> Result<()> {
        if entry.pending_move.is_none() {
            return Ok(());
        }
        self.durable_before_filing()?;
        self.finish_filing(entry, None)?;
        self.announce_filed(entry);
        Ok(())
    }

    /// [`Self::finish_unfiled`] for every file whose filing is unfinished: on the engine's
    /// thread only (each scan of the daemon). How many were filed.
    pub(super) fn finish_all_unfiled(&self) -> Result<usize> {
        let mut filed = 0;
        for entry in self.store.files()? {
            if let Some((from, _)) = &entry.pending_move {
                filed += 1;
                tracing::info!(file = %entry.stored_as, "finishing the filing of a file committed earlier");
                let finished = self
                    .finish_unfiled(&entry)
                    .with_context(|| format!("filing {from}"))
                    .map_err(|e| after_commit(e, &entry));
                if let Err(error) = &finished {
                    // Files wait behind it: the observer hears (the daemon's `file_failed`,
                    // once until a file is filed); a scan that kept failing had said nothing.
                    self.tell(FileOutcome::Failed {
                        name: &entry.name,
                        error,
                        next: None,
                    });
                }
                finished?;
                // Filed for real, whatever its outcome: the engine's last error (its filing
                // had failed) is cleared after the request that finished it.
                (self.filed_for_real).store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(filed)
    }

    /// Tells the observer of a file whose filing was finished after its commit, when the
    /// engine held or rejected it (a decision is nobody's news): its notification was lost
    /// with the filing. Before the observer is set (recovery at start), once it is.
    pub(super) fn announce_filed(&self, entry: &FileEntry) {
        let news = matches!(entry.status, FileStatus::Held | FileStatus::Rejected);
        if !news || entry.was_held {
            return;
        }
        if self.observer.get().is_none() {
            self.recovered
                .lock()
                .expect("recovered lock")
                .push(entry.id);
            return;
        }
        let report = super::filed_reports::report_head(entry, &self.report_path(entry));
        self.tell(FileOutcome::Filed {
            id: entry.id,
            report: &report,
            decided_by: None,
        });
    }

    /// A file committed earlier whose filing failed (e.g. an I/O error moving it) is
    /// finished, never processed again: its id and report, when `inbox/<name>` is such a file.
    pub(super) fn finish_committed_earlier(&self, name: &str) -> Result<Option<(u64, Report)>> {
        let inbox_path = format!("inbox/{name}");
        let Some(entry) = self.store.files()?.into_iter().find(|f| {
            f.pending_move
                .as_ref()
                .is_some_and(|(from, _)| *from == inbox_path)
        }) else {
            return Ok(None);
        };
        self.finish_unfiled(&entry).with_context(|| {
            format!(
                "{name} was already committed as file {} but could not be filed yet",
                entry.id
            )
        })?;
        // A new upload under the committed file's name is not moved by the filing (its bytes
        // differ): it is processed, not answered with the earlier file's report.
        if self.paths.drop.join(&inbox_path).exists() {
            return Ok(None);
        }
        let path = self.report_path(&entry);
        let report = serde_json::from_slice(&fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Some((entry.id, report)))
    }

    /// Stages a new file's reports and commits its outcome with its ledger entry and audit
    /// entry in one transaction ([`Self::stage_and_commit`], which says what a failure
    /// leaves).
    pub(super) fn commit_file(
        &self,
        entry: &FileEntry,
        eval: &mut Evaluation,
        now: String,
        by: &str,
    ) -> Result<()> {
        let (name, stored_as, status) = (&entry.name, &entry.stored_as, entry.status);
        crash_point("before_stage");
        crate::util::pause_point("before_stage");
        let applied = status == FileStatus::Applied;
        let token = eval.token;
        self.stage_and_commit(entry, eval, applied, |updates| Commit {
            updates,
            file: Some(entry),
            last_applied: applied.then_some(entry.id),
            audit: Some(AuditNote {
                at: now,
                user: by.to_string(),
                action: format!("file {}", status.as_str()),
                detail: format!("file {} {name} as {stored_as}: {}", entry.id, entry.summary),
            }),
            clear_remote: entry.remote.is_some().then_some(name.as_str()),
            accounts_token: token,
        })?;
        crash_point("after_commit");
        Ok(())
    }

    /// Re-evaluates the last applied roster with the current rules and applies the result.
    /// Over a safety limit it applies nothing unless `force`, and returns a `held` report.
    pub fn sync(&self, user: &str, force: bool) -> Result<Report> {
        let entry = (self.store.last_applied()?)
            .ok_or(Error::Refused(crate::api::error::Blocked::NothingApplied))?;
        let path = self.paths.folder("processed").join(&entry.stored_as);
        let bytes = FileBytes::read(&path).with_context(|| {
            format!(
                "reading the last applied roster {}; if it was removed, process a new roster",
                path.display()
            )
        })?;
        let now = now_rfc3339();
        let limits = (!force).then(|| self.cfg.limits());
        // Past the safety limits, as an approval is: the audit and the histories say so.
        let command = if force { "sync --force" } else { "sync" };
        let mut eval = self.evaluate(
            bytes,
            crate::core::report::SYNC,
            &history_source(command, user, ""),
            &entry.received_at,
            &now,
            limits,
            false,
            Record::Ignored,
        )?;
        if eval.report.sha256 != entry.sha256 {
            // Not the caller's mistake (exit 2): the work cannot be done (exit 5).
            return Err(Error::failed(format!(
                "the last applied roster {} was changed on disk (its SHA-256 differs from the ledger); process a new roster instead",
                path.display()
            )));
        }
        eval.report.stored_as = Some(entry.stored_as.clone());
        if eval.report.status == ReportStatus::Applied {
            let detail = format!(
                "re-evaluated {}: {}",
                entry.stored_as,
                summary(&eval.report)
            );
            self.store.commit(Commit {
                updates: eval.writes(true),
                file: None,
                last_applied: None,
                audit: Some(AuditNote {
                    at: now,
                    user: user.to_string(),
                    action: command.into(),
                    detail,
                }),
                clear_remote: None,
                accounts_token: None,
            })?;
        } else if eval.report.status == ReportStatus::Held {
            // Nothing changes, but who asked for the rights it would have granted or taken
            // away, and why it was held, is on record (a held file is, by its ledger entry).
            self.store.append_audit(AuditNote {
                at: now,
                user: user.to_string(),
                action: "sync held".into(),
                detail: format!(
                    "re-evaluated {}, nothing applied: {}; held because {}",
                    entry.stored_as,
                    summary(&eval.report),
                    eval.report.held_because.join("; ")
                ),
            })?;
        }
        Ok(eval.report)
    }

    /// Reads, checks and plans a roster's bytes: its report (with the bytes' SHA-256, which a
    /// caller holding an expected one compares before it writes anything) and what it writes.
    /// Unless `record` says otherwise, a roster that differs little from the last applied one
    /// is planned from its changes ([`super::resync`]), which gives the same; otherwise it is
    /// read in full. With [`Record::UsedAndKept`], an applied evaluation says what the roster
    /// leaves for the next one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn evaluate(
        &self,
        bytes: FileBytes,
        name: &str,
        source: &str,
        received_at: &str,
        now: &str,
        limits: Option<Limits>,
        dry_run: bool,
        record: Record,
    ) -> Result<Evaluation> {
        // Before the rules: a rule changed from here on changes the token the commit finds.
        let from_token = self.store.accounts_token()?;
        let all_rules = self.store.rules()?;
        // A rule whose role was taken out of the config grants nothing (see `left_out`).
        let (enabled, ungrantable): (Vec<Rule>, Vec<Rule>) = all_rules
            .iter()
            .filter(|r| r.enabled)
            .cloned()
            .partition(|r| self.cfg.role(&r.role).is_some());
        let left_out = self.left_out(&ungrantable);
        let opts = self
            .cfg
            .roster_options(rules::needed_fields(&enabled, &self.cfg.columns()));
        let planning = Planning {
            all_rules,
            enabled: &enabled,
            now,
            source,
            limits,
            dry_run,
            received: record != Record::Ignored,
        };
        let fingerprint = super::resync::fingerprint(&opts);
        // The last roster's record was derived with every enabled rule: with one left out,
        // the roster is read in full, and its own record is not kept.
        let keep_next = record == Record::UsedAndKept && !dry_run && left_out.is_empty();
        if record != Record::Ignored
            && !dry_run
            && left_out.is_empty()
            && let Some(changes) = self.changes_of(&bytes, &opts, from_token)?
        {
            let report = Report::new(name, bytes.sha256(), received_at, now);
            let visible = changes.visible();
            let base = changes.base;
            let keep = match keep_next {
                true => Keep::Changed {
                    fingerprint,
                    rows: Box::new(changes.next),
                },
                false => Keep::Nothing,
            };
            let changed = Some((&visible, base, changes.rows));
            let planning = planning.clone();
            if let Some(eval) = self.plan_roster(changes.roster, report, planning, keep, changed)? {
                #[cfg(test)]
                super::resync::RESYNCED.with(|n| n.set(n.get() + 1));
                return Ok(Evaluation { from_token, ..eval });
            }
            tracing::info!(
                "the changed rows' plan has warnings, or their status cells are all blank: the \
                 file is read in full"
            );
        }
        let checked = roster::check(&bytes, &opts);
        let mut report = Report::new(name, bytes.sha256(), received_at, now);
        let keep = match &checked {
            Ok(checked) if keep_next => Keep::read(checked, &bytes, fingerprint),
            _ => Keep::Nothing,
        };
        // The roster holds what it needs: a large file's bytes go before its manager graph
        // is built, and before planning.
        drop(bytes);
        let mut eval = match checked.map(roster::Checked::finish) {
            Ok(roster) => Evaluation {
                from_token,
                ..self
                    .plan_roster(roster, report, planning, keep, None)?
                    .expect("a full plan is always kept")
            },
            Err(rejection) => {
                report.status = ReportStatus::Rejected;
                report.rows = rejection.rows;
                report.errors = rejection.errors;
                report.more_errors = rejection.more_errors;
                report.warnings = rejection.warnings;
                Evaluation::report_only(report)
            }
        };
        eval.report.warnings.splice(0..0, left_out);
        Ok(eval)
    }

    /// A warning for each enabled rule whose role was taken out of `provisioning.roles`
    /// since the rule was saved (SPEC §2: a rule naming another role is refused). Such a
    /// rule is left out, as a disabled one is: it grants its role to nobody, and its
    /// accounts move to the next matching rule or are deactivated, within the safety
    /// limits; the other rules go on applying, leavers' deactivations included.
    fn left_out(&self, ungrantable: &[Rule]) -> Vec<Finding> {
        ungrantable
            .iter()
            .map(|rule| {
                Finding::file(format!(
                    "rule {} {} grants role \"{}\", which is not in provisioning.roles ({}): \
                     it was left out, as if disabled; edit or disable it, or add the role back",
                    rule.id,
                    crate::core::model::quoted(&rule.name),
                    rule.role,
                    self.cfg.provisioning.roles.join(", ")
                ))
            })
            .collect()
    }

    /// Plans `roster` against the accounts: all of them, or (`changed`) those of the visible
    /// IDs, the others counted `unchanged` (the active auto accounts before, then, are the
    /// given base). `None` for changes whose plan has warnings: those name lines of the
    /// changed rows read on their own, so the file is read in full.
    fn plan_roster(
        &self,
        mut roster: Roster,
        mut report: Report,
        planning: Planning<'_>,
        keep: Keep,
        changed: Option<(&FxHashSet<String>, u64, usize)>,
    ) -> Result<Option<Evaluation>> {
        let Planning {
            all_rules,
            enabled,
            now,
            source,
            limits,
            dry_run,
            received,
        } = planning;
        // Changed rows whose status cells are all blank: whether the whole file's are is
        // known only by reading it in full (a blank column after statuses is held).
        if changed.is_some() && roster.status_blank {
            return Ok(None);
        }
        let columns = self.cfg.columns();
        let compiled: Vec<CompiledRule> = enabled
            .iter()
            .map(|r| CompiledRule::compile(r, &roster, &columns))
            .collect::<Result<_, _>>()
            .map_err(|field| {
                Error::failed(format!(
                    "rule field {field} was not kept by the parser (a bug)"
                ))
            })?;
        let matching = rules::MatchTable::build(&roster, &compiled);
        drop(compiled);
        roster.forget_values();
        // All rules, so that a change names a disabled rule too; only enabled ones ever match.
        let rules_by_id: BTreeMap<RuleId, Rule> =
            all_rules.into_iter().map(|r| (r.id, r)).collect();
        let left_out: Vec<RuleId> = (rules_by_id.values())
            .filter(|r| r.enabled && self.cfg.role(&r.role).is_none())
            .map(|r| r.id)
            .collect();
        let input = SyncInput {
            matching: &matching,
            rules: &rules_by_id,
            now,
            source,
            left_out: &left_out,
        };
        // The accounts are read one group at a time, in place (see `reconcile::groups`), in
        // one pass over the store.
        let groups = self.store.group_reader()?;
        let seen = changed.map(|(visible, ..)| (visible, super::resync::groups_of(visible)));
        let read = |g: usize, f: &mut dyn FnMut(&dyn AccountGroup)| match &seen {
            None => groups.read_group(g, f),
            Some((_, groups_seen)) if !groups_seen[g] => {
                f(&HeldGroup::new([]));
                Ok(())
            }
            Some((visible, _)) => groups.read_group(g, &mut |group| {
                f(&super::resync::Visible::of(group, visible))
            }),
        };
        let mut plan = reconcile::plan(&roster, &input, &read)?;
        let plan_warned = !plan.warnings.is_empty();
        if changed.is_some() && plan_warned {
            return Ok(None);
        }
        if let Some((_, base, _)) = changed {
            // The accounts not seen are active auto ones that stay so, or others left alone.
            let base = usize::try_from(base).unwrap_or(usize::MAX);
            plan.counts.unchanged += base.saturating_sub(plan.base);
            plan.base = base;
        }
        report.rows = changed.map_or(roster.rows, |(.., rows)| rows);
        report.warnings = std::mem::take(&mut roster.warnings);
        report.warnings.extend(std::mem::take(&mut plan.warnings));
        report.counts = plan.counts.clone();
        report.held_because = limits
            .map(|l| plan.safety_violations(&l))
            .unwrap_or_default();
        // A re-sync from changes has the last roster's header, status column and all.
        if limits.is_some()
            && changed.is_none()
            && let Some(why) = self.status_column_lost(&roster)?
        {
            report.held_because.push(why);
        }
        // Read as Windows-1252 while it holds UTF-8 text: values may read as other text.
        if limits.is_some()
            && received
            && let Some(why) = &roster.mixed_encoding
        {
            report.held_because.push(format!(
                "{why}. Approve it only if the file really is Windows-1252"
            ));
        }
        report.status = if dry_run {
            ReportStatus::DryRun
        } else if !report.held_because.is_empty() {
            ReportStatus::Held
        } else {
            ReportStatus::Applied
        };
        report.changes = plan.changes;
        let next = match report.status == ReportStatus::Applied && !plan_warned {
            true => keep.kept(&mut roster, std::mem::take(&mut plan.manual_ids), &report),
            false => None,
        };
        let large = roster.employees.len() >= ROWS_WORTH_A_THREAD;
        drop_aside(large, roster);
        Ok(Some(Evaluation {
            report,
            updates: plan.updates,
            stamp: (now.to_string(), source.to_string()),
            next,
            from_token: None,
            token: None,
        }))
    }

    /// When the newest file in the ledger was received.
    pub fn last_received(&self) -> Result<Option<String>> {
        Ok(self.store.files()?.into_iter().map(|f| f.received_at).max())
    }

    /// Where `process` filed the text of `report`, the report of a file it processed
    /// (beside the file); `None` for a report of no file.
    pub fn filed_text(&self, report: &Report) -> Option<PathBuf> {
        let stored_as = report.stored_as.as_ref()?;
        let folder = self.paths.folder(FileStatus::from(report.status).folder());
        Some(folder.join(format!("{stored_as}.report.txt")))
    }

    /// The path of a ledger entry's file and report.
    pub fn report_path(&self, entry: &FileEntry) -> PathBuf {
        self.paths
            .folder(entry.status.folder())
            .join(format!("{}.report.json", entry.stored_as))
    }

    /// The bytes of file `id`'s report and where they were read, read beside the engine: a
    /// file committed and not filed yet has its report in staging/ (it had been "No such
    /// file", exit 5, for a report the ledger already called applied), and one filed while
    /// it is looked for is found where it went. `None` when there is no such file.
    pub fn report_bytes(&self, id: u64) -> Result<Option<(Vec<u8>, PathBuf)>> {
        for _ in 0..3 {
            let Some(entry) = self.store.file(id)? else {
                return Ok(None);
            };
            let filed = self.report_path(&entry);
            let staged = self.staged(entry.id).join("report.json");
            let places = match entry.pending_move {
                Some(_) => vec![&filed, &staged],
                None => vec![&filed],
            };
            for path in places {
                match fs::read(path) {
                    Ok(bytes) => return Ok(Some((bytes, filed))),
                    // Being filed: looked for in the other place, then in the ledger again.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && entry.pending_move.is_some() => {}
                    // Filed, and removed by hand (pruned) or unreadable: named.
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("reading the report {}", path.display()));
                    }
                }
            }
        }
        Err(Error::failed(format!(
            "the report of file {id} moved while it was read; ask again"
        )))
    }
}

/// Reads a file unless it is larger than `max` (then `None`, without reading it).
pub(super) fn read_limited(path: &Path, max: u64) -> Result<Option<FileBytes>> {
    let len = fs::metadata(path)?.len();
    if len > max {
        return Ok(None);
    }
    let bytes = FileBytes::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(bytes))
}

/// `e`, a failure after `entry`'s commit ([`Error::after_commit`]): its outcome is in the
/// store, and changed admins only when it was applied.
pub(super) fn after_commit(e: Error, entry: &FileEntry) -> Error {
    e.after_commit(entry.id, &entry.name, entry.status == FileStatus::Applied)
}

/// The log line of a file processed. A rejected or held file needs someone: told at
/// `warn`, which production logs keep, with its first error or why it was held (at `info`
/// alone, `log.level = "warn"` had shown nothing of either).
fn log_processed(entry: &FileEntry, report: &Report, by: &str) {
    let (status, stored_as) = (entry.status.as_str(), &entry.stored_as);
    match entry.status {
        FileStatus::Rejected | FileStatus::Held => {
            let why = report.errors.first().map(|e| e.message.as_str());
            let why = why.or(report.held_because.first().map(String::as_str));
            tracing::warn!(status, stored_as, by, summary = %entry.summary, first = why.unwrap_or(""), "file processed");
        }
        _ => tracing::info!(status, stored_as, by, summary = %entry.summary, "file processed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::filing::Content;
    use crate::store::{RemoteOrigin, SledStore};

    fn pipeline(dir: &Path) -> Pipeline<SledStore> {
        let config = dir.join("c.toml");
        fs::write(&config, format!("data_dir = {:?}\n", dir.join("data"))).unwrap();
        let cfg = Config::load(Some(&config)).unwrap();
        let store = SledStore::open(&Paths::new(&cfg.data_dir).store).unwrap();
        Pipeline::new(cfg, store).unwrap()
    }

    /// Files `roster` into inbox/ as `r.csv`; the name it has there.
    fn received(p: &Pipeline<SledStore>, roster: &[u8]) -> String {
        p.receive("r.csv", Content::Stream(&mut &roster[..]), false, None)
            .unwrap()
            .0
    }

    /// A file's place among those waiting, and its `received_at`, stay as first seen: a
    /// `chmod` of a file waiting (behind a held one) changes its ctime, and had put an older
    /// roster after a newer one. A file that takes a gone file's place is seen anew.
    #[test]
    fn the_order_of_waiting_files_stays_as_first_seen() {
        use crate::engine::arrivals::completion_time;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let inbox = p.paths.folder("inbox");
        let older = received(&p, b"employee_id,email\n1,a@x.io\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let newer = received(&p, b"employee_id,email\n2,b@x.io\n");
        assert_eq!(p.waiting().unwrap(), [older.clone(), newer.clone()]);
        let first_seen = completion_time(&fs::metadata(inbox.join(&older)).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mode = fs::Permissions::from_mode(0o640);
        fs::set_permissions(inbox.join(&older), mode).unwrap();
        let changed = completion_time(&fs::metadata(inbox.join(&older)).unwrap());
        assert!(changed > first_seen, "the chmod changed its ctime");
        assert_eq!(p.waiting().unwrap(), [older.clone(), newer.clone()]);
        // A touch keeps its place; its inode with another size (a removed file's inode
        // given to a new one, or a file written over) is seen anew, as of now.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let file = fs::File::options()
            .write(true)
            .open(inbox.join(&older))
            .unwrap();
        file.set_modified(std::time::SystemTime::now()).unwrap();
        assert_eq!(p.waiting().unwrap(), [older.clone(), newer.clone()]);
        fs::write(
            inbox.join(&newer),
            b"employee_id,email\n3,c@x.io\n4,d@x.io\n",
        )
        .unwrap();
        let meta = fs::metadata(inbox.join(&newer)).unwrap();
        assert_eq!(p.arrivals.of(&meta).0, completion_time(&meta));
        let report = p.process(&older).unwrap();
        assert_eq!(report.received_at, rfc3339(first_seen));
        // Gone from inbox/: forgotten.
        assert_eq!(p.waiting().unwrap(), [newer]);
        assert_eq!(p.arrivals.remembered(), 1);
    }

    /// A file whose name is not UTF-8 does not stop the files behind it: it is renamed to
    /// a cleaned name, and both are processed.
    #[test]
    fn a_name_that_is_not_utf8_is_renamed_and_blocks_nothing() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let inbox = p.paths.folder("inbox");
        let roster = b"employee_id,email\nE1,e1@x.io\n";
        let latin1 = std::ffi::OsStr::from_bytes(b"L\xf6hne.csv");
        fs::write(inbox.join(latin1), roster).unwrap();
        fs::write(inbox.join("later.csv"), roster).unwrap();
        // Hidden or partial (still being written): left alone.
        let hidden = std::ffi::OsStr::from_bytes(b".L\xf6hne.csv.Ab12");
        fs::write(inbox.join(hidden), roster).unwrap();
        assert_eq!(
            p.waiting().unwrap(),
            ["later.csv"],
            "the other file is not held back"
        );
        assert!(inbox.join(latin1).exists(), "a read renames nothing");
        p.rename_unclean().unwrap();
        assert!(!inbox.join(latin1).exists(), "renamed");
        assert!(inbox.join(hidden).exists(), "a hidden name is not taken");
        let mut waiting = p.waiting().unwrap();
        waiting.sort();
        assert_eq!(waiting, ["L\u{FFFD}hne.csv", "later.csv"]);
        // A name with an escape sequence or a line break (`mv` by hand) waits for its
        // rename too, and is taken under a cleaned name: it had reached the filed name, the
        // log and `files list`.
        for name in ["w\u{1b}[2Jx.csv", "a\nb.csv"] {
            fs::write(inbox.join(name), roster).unwrap();
        }
        assert_eq!(p.waiting().unwrap().len(), 2);
        p.rename_unclean().unwrap();
        let mut waiting = p.waiting().unwrap();
        waiting.sort();
        assert_eq!(
            waiting,
            ["L\u{FFFD}hne.csv", "a_b.csv", "later.csv", "w_[2Jx.csv"]
        );
        for name in &waiting {
            p.process(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        assert!(p.waiting().unwrap().is_empty());
        // A name of 104 bytes that are not UTF-8 grows to 304 when cleaned: cut to fit, it
        // is taken; uncut, its rename failed at every scan and it was never processed.
        let mut long = b"Mitarbeiter_".to_vec();
        long.extend([0xfc; 100]);
        long.extend(b".dryrun.csv");
        fs::write(inbox.join(std::ffi::OsStr::from_bytes(&long)), roster).unwrap();
        p.rename_unclean().unwrap();
        let waiting = p.waiting().unwrap();
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(waiting[0].len() <= crate::layout::MAX_RECEIVED_NAME);
        assert!(waiting[0].ends_with("~.dryrun.csv"), "{}", waiting[0]);
    }

    #[test]
    fn reports_that_cannot_be_staged_commit_nothing_whether_staged_first_or_alongside() {
        for (room_to_spare, alongside) in [(0, true), (u64::MAX, false)] {
            let dir = tempfile::tempdir().unwrap();
            let mut p = pipeline(dir.path());
            p.room_to_spare = room_to_spare;
            assert_eq!(p.room_for_both(2), alongside);
            let rule = crate::core::rules::Rule {
                id: p.store.next_rule_id().unwrap(),
                name: "IT".into(),
                role: "IT Admin".into(),
                conditions: vec![crate::core::rules::Condition::parse("department = IT").unwrap()],
                enabled: true,
                created_at: "2026-01-01T00:00:00Z".into(),
                created_by: "tester".into(),
            };
            let note = AuditNote {
                at: "2026-01-01T00:00:00Z".into(),
                user: "tester".into(),
                action: "rules add".into(),
                detail: String::new(),
            };
            p.store.put_rule(&rule, note).unwrap();
            let audited = p.store.audit(None).unwrap();
            // The first file's JSON report cannot be put in place: a folder has its name.
            fs::create_dir_all(p.staged(1).join("report.json").join("x")).unwrap();
            let name = received(
                &p,
                b"employee_id,email,department\nE1,e1@x.io,IT\nE2,e2@x.io,IT\n",
            );
            let shown = format!("{:#}", p.process(&name).unwrap_err());
            assert!(shown.contains("writing the reports of r.csv"), "{shown}");
            assert!(shown.contains("nothing was changed"), "{shown}");
            assert!(p.store.accounts().unwrap().is_empty(), "no account written");
            assert!(p.store.files().unwrap().is_empty(), "no ledger entry");
            assert_eq!(p.store.audit(None).unwrap(), audited, "no audit entry");
            assert_eq!(fs::read_dir(&p.paths.staging).unwrap().count(), 0);
            assert!(p.paths.folder("inbox").join(&name).exists());
            // The retry applies it and leaves nothing staged.
            let report = p.process(&name).unwrap();
            assert_eq!(report.status, ReportStatus::Applied);
            assert_eq!(p.store.accounts().unwrap().len(), 2);
            assert_eq!(fs::read_dir(&p.paths.staging).unwrap().count(), 0);
        }
    }

    /// The transaction goes through, the flush after it fails: the change may or may not be
    /// on disk, so it is not said to be committed (nor "nothing was changed"); its reports
    /// stay staged, and the next start, which reads the store from disk, files it.
    #[test]
    fn a_commit_whose_flush_fails_keeps_its_reports_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        // The store's watermark cannot be written.
        let blocker = p.paths.store.join(".autoprov.watermark.tmp");
        fs::create_dir(&blocker).unwrap();
        let name = received(&p, b"employee_id,email,department\nE1,e1@x.io,IT\n");
        let shown = format!("{:#}", p.process(&name).unwrap_err());
        assert!(shown.contains("may be missing"), "{shown}");
        assert!(!shown.contains("was committed"), "{shown}");
        assert!(!shown.contains("nothing was changed"), "{shown}");
        let files = p.store.files().unwrap();
        assert_eq!(files.len(), 1, "the ledger has the file");
        let staged = p.staged(files[0].id);
        assert!(staged.join("report.json").exists() && staged.join("report.txt").exists());
        // The next start (its commit is on disk here: only the watermark failed) files it.
        fs::remove_dir(&blocker).unwrap();
        drop(p);
        let p = pipeline(dir.path());
        p.recover().unwrap();
        let stored_as = &files[0].stored_as;
        let processed = p.paths.folder("processed");
        for filed in [
            stored_as.clone(),
            format!("{stored_as}.report.json"),
            format!("{stored_as}.report.txt"),
        ] {
            assert!(processed.join(&filed).exists(), "{filed}");
        }
    }

    /// A file under the longest name a file may have (an SFTP upload may): filed under a name
    /// cut to fit with its report's, instead of failing after its commit.
    #[test]
    fn a_file_with_the_longest_name_is_filed() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let long = format!("{}é.csv", "r".repeat(249));
        assert_eq!(long.len(), 255);
        fs::write(
            p.paths.folder("inbox").join(&long),
            b"employee_id,email,department\nE1,e1@x.io,IT\n",
        )
        .unwrap();
        let report = p.process(&long).unwrap();
        assert_eq!(report.status, ReportStatus::Applied);
        let stored_as = report.stored_as.unwrap();
        assert!(stored_as.ends_with("~.csv"), "{stored_as}");
        let processed = p.paths.folder("processed");
        assert!(processed.join(&stored_as).exists());
        assert!(processed.join(format!("{stored_as}.report.json")).exists());
        assert!(!p.paths.folder("inbox").join(&long).exists());
    }

    /// A file committed whose commit cannot be made durable (sled's log not there to sync,
    /// as when a flush failed): it is not filed as applied, nor by a retry in the process
    /// whose write failed (Linux reports a failed fsync once: a retry that then succeeded had
    /// filed a commit that never reached the disk, its report saying APPLIED); it is by the
    /// next start, which reads the store from disk.
    #[test]
    fn a_committed_file_is_filed_only_once_the_store_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let blocker = p.paths.store.join(".autoprov.watermark.tmp");
        fs::create_dir(&blocker).unwrap();
        let name = received(&p, b"employee_id,email,department\nE1,e1@x.io,IT\n");
        assert!(p.process(&name).is_err(), "the flush failed");
        fs::remove_dir(&blocker).unwrap();
        // The retry (a rescan) finds it committed, but the store cannot be synced.
        let log = p.paths.store.join("db");
        let aside = p.paths.store.join("db.aside");
        fs::rename(&log, &aside).unwrap();
        let shown = format!("{:#}", p.process(&name).unwrap_err());
        assert!(shown.contains("durable"), "{shown}");
        let entry = &p.store.files().unwrap()[0];
        let processed = p.paths.folder("processed");
        assert!(
            p.paths.folder("inbox").join(&name).exists(),
            "left in inbox/"
        );
        assert_eq!(
            fs::read_dir(&processed).unwrap().count(),
            0,
            "nothing filed"
        );
        assert!(p.staged(entry.id).join("report.json").exists());
        fs::rename(&aside, &log).unwrap();
        let shown = format!("{:#}", p.process(&name).unwrap_err());
        assert!(
            shown.contains("an earlier write failed in this run"),
            "{shown}"
        );
        assert_eq!(fs::read_dir(&processed).unwrap().count(), 0);
        drop(p);
        let p = pipeline(dir.path());
        // As a scan or a request finishes it (a restart's recovery would too): filed for
        // real, so the request that finished it clears the engine's error.
        assert_eq!(p.finish_all_unfiled().unwrap(), 1);
        assert!(processed.join(&entry.stored_as).exists());
        assert!(p.take_filed_for_real());
        let (files, entry) = (p.store.files().unwrap(), entry.clone());
        assert_eq!(
            files,
            [FileEntry {
                pending_move: None,
                ..entry
            }]
        );
    }

    /// Marks the first file, filed from `inbox/<name>`, as a failure between its move and
    /// the mark's clearing leaves it; returns its entry.
    fn leave_marked(p: &Pipeline<SledStore>, name: &str) -> FileEntry {
        let first = p.store.files().unwrap()[0].clone();
        let marked = FileEntry {
            pending_move: Some((
                format!("inbox/{name}"),
                format!("processed/{}", first.stored_as),
            )),
            ..first.clone()
        };
        crate::store::samples::commit_entry(&p.store, &marked);
        first
    }

    /// A file committed and moved whose mark could not be cleared, then a new upload under
    /// its name: the new upload is processed, not answered with the earlier file's report.
    #[test]
    fn a_new_upload_under_a_committed_files_name_is_processed_not_answered_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let name = received(&p, b"employee_id,email,department\nE1,e1@x.io,IT\n");
        p.process(&name).unwrap();
        leave_marked(&p, &name);
        let again = received(
            &p,
            b"employee_id,email,department\nE1,e1@x.io,IT\nE2,e2@x.io,IT\n",
        );
        assert_eq!(again, name, "the same name");
        let report = p.process(&again).unwrap();
        assert_eq!(report.rows, 2, "the new upload's report");
        let files = p.store.files().unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.iter().all(|f| f.pending_move.is_none()), "{files:?}");
    }

    /// The same bytes uploaded again under a committed file's name, before its mark was
    /// cleared: a new file to process, not moved over the filed copy (it had been consumed
    /// with no ledger entry of its own).
    #[test]
    fn the_same_bytes_uploaded_again_under_a_committed_files_name_are_processed() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let bytes = b"employee_id,email,department\nE1,e1@x.io,IT\n";
        let name = received(&p, bytes);
        p.process(&name).unwrap();
        let first = leave_marked(&p, &name);
        assert_eq!(received(&p, bytes), name, "the same name");
        let report = p.process(&name).unwrap();
        assert_eq!(report.repeats.as_deref(), Some(first.stored_as.as_str()));
        let files = p.store.files().unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.iter().all(|f| f.pending_move.is_none()), "{files:?}");
        let processed = p.paths.folder("processed");
        for f in &files {
            assert_eq!(fs::read(processed.join(&f.stored_as)).unwrap(), bytes);
        }
    }

    /// A file's stored name is free of its reports' names too: an upload named
    /// `x.csv.report.json` filed in the same second as `x.csv` keeps its bytes.
    #[test]
    fn a_stored_name_whose_report_would_replace_a_filed_file_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let ts = "20260101T000000Z";
        let processed = p.paths.folder("processed");
        fs::write(
            processed.join(format!("{ts}_x.csv.report.json")),
            b"a roster",
        )
        .unwrap();
        assert_eq!(p.unique_name(ts, "x.csv").unwrap(), format!("{ts}_x-2.csv"));
        assert_eq!(p.unique_name(ts, "y.csv").unwrap(), format!("{ts}_y.csv"));
    }

    fn origin(name: &str, bytes: &[u8]) -> RemoteOrigin {
        RemoteOrigin {
            dir: "outgoing".into(),
            name: name.into(),
            size: bytes.len() as u64,
            mtime: 1,
            sha256: crate::util::sha256_hex(bytes),
        }
    }

    #[test]
    pub(super) fn recovery_completes_a_registered_download_or_forgets_it_so_it_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let inbox = p.paths.folder("inbox");
        // Downloaded and registered, crash before the rename: completed.
        fs::write(inbox.join(".fetch-a.csv.part"), b"a,b\n").unwrap();
        p.store
            .register_remote("a.csv", &origin("a.csv", b"a,b\n"))
            .unwrap();
        // Registered, bytes gone: forgotten.
        p.store
            .register_remote("b.csv", &origin("b.csv", b"x"))
            .unwrap();
        // Registered, bytes differ from what was registered: forgotten, part removed.
        fs::write(inbox.join(".fetch-c.csv.part"), b"other").unwrap();
        p.store
            .register_remote("c.csv", &origin("c.csv", b"c"))
            .unwrap();
        p.recover().unwrap();
        assert_eq!(fs::read(inbox.join("a.csv")).unwrap(), b"a,b\n");
        let left: Vec<String> = p
            .store
            .remote_registrations()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(left, vec!["a.csv".to_string()]);
        assert!(!inbox.join(".fetch-c.csv.part").exists());
        let sighting = |name: &str, size| RemoteOrigin {
            size,
            mtime: 1,
            ..origin(name, b"")
        };
        use crate::engine::filing::Sighting;
        assert_eq!(
            p.remote_known(&sighting("b.csv", 1)).unwrap(),
            Sighting::New
        );
        assert_eq!(
            p.remote_known(&sighting("a.csv", 4)).unwrap(),
            Sighting::Known
        );
    }

    #[test]
    fn recovery_removes_the_partial_copies_of_a_stopped_process_or_download_and_a_staged_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let inbox = p.paths.folder("inbox");
        // What `receive` leaves when its process is killed while it copies.
        fs::write(inbox.join(".receive-4242.part"), b"employee_id,em").unwrap();
        // What a poll's download leaves when the daemon dies before registering it.
        fs::write(inbox.join(".fetch-roster.csv.part"), b"employee_id,em").unwrap();
        // Others' hidden files are not this one's business.
        fs::write(inbox.join(".upload.csv.part"), b"x").unwrap();
        let name = p
            .receive("r.csv", Content::Stream(&mut &b"a,b\n"[..]), false, None)
            .unwrap()
            .0;
        // What a crash between a file's commit and its record's rename leaves.
        let staged = crate::engine::resync::staged_path(&p.paths.store);
        fs::write(&staged, b"autoprov last roster").unwrap();
        p.recover().unwrap();
        assert!(!staged.exists());
        assert!(!inbox.join(".receive-4242.part").exists());
        assert!(!inbox.join(".fetch-roster.csv.part").exists());
        assert!(inbox.join(".upload.csv.part").exists());
        assert_eq!(fs::read(inbox.join(name)).unwrap(), b"a,b\n");
    }
}
