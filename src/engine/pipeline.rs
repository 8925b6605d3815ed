//! One file: read -> validate -> plan -> safety -> apply -> report -> move (SPEC §4–6).
//!
//! Crash safety: the outcome of a file is committed to the store together with its ledger
//! entry, which records the move still to do (`pending_move`). The reports are staged
//! before the commit; the move and the reports' final renames happen after it, and
//! [`Pipeline::recover`] finishes them after a crash. So each file is applied once and
//! its report is never visible before the store is flushed.

use crate::api::error::AfterCommit;
use crate::api::error::Blocked;
use crate::config::Config;
use crate::core::accounts::Account;
use crate::core::model::Roster;
use crate::core::parallel::join;
use crate::core::reconcile::{self, Limits, SyncInput};
use crate::core::report::{Decision, Report, ReportStatus, plan_difference};
use crate::core::roster::{self, Rejection};
use crate::core::rules::{self, CompiledRule, Rule, RuleId};
use crate::layout::{DRY_RUN_SUFFIX, FOLDERS, Paths, is_ignored};
use crate::store::{AuditNote, Commit, FileEntry, FileStatus, RemoteOrigin, Store, summary};
use crate::util::{
    compact_timestamp, crash_point, free_name, fsync_dir, now_rfc3339, rfc3339, sha256_hex,
    write_atomic, write_atomic_with,
};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// What evaluating a roster against the current state gives.
struct Evaluation {
    report: Report,
    updates: Vec<Account>,
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
}

impl<S: Store> Pipeline<S> {
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
        })
    }

    /// Finishes the filing of files committed before a crash.
    pub fn recover(&self) -> Result<()> {
        for entry in self.store.files()? {
            if entry.pending_move.is_some() {
                tracing::info!(file = %entry.stored_as, "finishing the filing of a file committed before a restart");
                self.finish_filing(&entry)?;
            }
        }
        // Poll mode: a download registered but not renamed into inbox/ before a crash is
        // completed (it was fsynced before registering), or forgotten when its bytes are gone,
        // so the remote file is fetched again.
        let inbox = self.paths.folder("inbox");
        for (name, origin) in self.store.remote_registrations()? {
            if inbox.join(&name).exists() {
                continue;
            }
            let part = inbox.join(format!(".fetch-{name}.part"));
            let completed = part.exists()
                && crate::util::sha256_file(&part).is_ok_and(|sha| sha == origin.sha256)
                && crate::util::rename_noreplace(&part, &inbox.join(&name)).is_ok();
            if !completed {
                tracing::info!(remote = %origin.name, "forgetting a download that never reached inbox/; it will be fetched again");
                let _ = fs::remove_file(&part);
                self.store.unregister_remote(&name)?;
            }
        }
        // Reports staged for a file whose commit never happened (a crash or an I/O error
        // between staging and commit): the file is still in inbox/ and will be staged again.
        for item in fs::read_dir(&self.paths.staging)? {
            let path = item?.path();
            let pending = match path
                .file_name()
                .and_then(|n| n.to_str()?.parse::<u64>().ok())
            {
                Some(id) => self
                    .store
                    .file(id)?
                    .is_some_and(|f| f.pending_move.is_some()),
                None => false,
            };
            if !pending {
                tracing::info!(path = %path.display(), "removing reports staged for a file that was never committed");
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// The held file that blocks processing, if any.
    pub fn held(&self) -> Result<Option<FileEntry>> {
        Ok(self
            .store
            .files()?
            .into_iter()
            .find(|f| f.status == FileStatus::Held))
    }

    /// Complete files waiting in inbox/, oldest completion first.
    pub fn waiting(&self) -> Result<Vec<String>> {
        let inbox = self.paths.folder("inbox");
        let mut found = Vec::new();
        for item in fs::read_dir(&inbox).with_context(|| format!("listing {}", inbox.display()))? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            let meta = item.metadata()?;
            if is_ignored(&name) || !meta.file_type().is_file() {
                continue;
            }
            found.push((completion_time(&meta), name));
        }
        found.sort();
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }

    /// Processes `inbox/<name>`; refuses while a held file waits.
    pub fn process(&self, name: &str) -> Result<Report> {
        // A file committed earlier whose filing failed (e.g. an I/O error moving it) is
        // finished, never processed again.
        let inbox_path = format!("inbox/{name}");
        if let Some(entry) = self.store.files()?.into_iter().find(|f| {
            f.pending_move
                .as_ref()
                .is_some_and(|(from, _)| *from == inbox_path)
        }) {
            self.finish_filing(&entry).with_context(|| {
                format!(
                    "{name} was already applied as file {} but could not be filed yet",
                    entry.id
                )
            })?;
            let path = self.report_path(&entry);
            return serde_json::from_slice(&fs::read(&path)?)
                .with_context(|| format!("reading {}", path.display()));
        }
        if let Some(held) = self.held()? {
            return Err(Blocked::Held {
                id: held.id,
                name: held.stored_as,
            }
            .into());
        }
        let path = self.paths.folder("inbox").join(name);
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if !meta.file_type().is_file() {
            bail!(
                "{} is not a regular file; it was left alone",
                path.display()
            );
        }
        let received_at = rfc3339(completion_time(&meta));
        let bytes = read_limited(&path, self.cfg.roster.max_bytes)?;
        let sha = match &bytes {
            Some(bytes) => sha256_hex(bytes),
            None => crate::util::sha256_file(&path)?,
        };
        let _span = tracing::info_span!("file", name, sha256 = %&sha[..12]).entered();
        let now = now_rfc3339();
        let dry_run = name.ends_with(DRY_RUN_SUFFIX);
        let mut eval = match bytes {
            Some(bytes) => self.evaluate(
                bytes,
                name,
                &sha,
                &received_at,
                &now,
                Some(self.cfg.limits()),
                dry_run,
            )?,
            None => Evaluation {
                report: Report {
                    errors: vec![crate::core::Finding::file(format!(
                        "the file is {} bytes, more than roster.max_bytes = {}",
                        meta.len(),
                        self.cfg.roster.max_bytes
                    ))],
                    ..Report::new(name, &sha, &received_at, &now)
                },
                updates: Vec::new(),
            },
        };
        if let Some(earlier) = self.store.file_by_sha(&sha)? {
            eval.report.repeats = Some(earlier.stored_as);
        }
        let status = FileStatus::from(eval.report.status);
        let stored_as = self.unique_name(&compact_timestamp(&now), name)?;
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
        crash_point("before_stage");
        let applied = status == FileStatus::Applied;
        let staged_and_committed = self.stage(&entry, &eval.report).and_then(|()| {
            crash_point("after_stage");
            Ok(self.store.commit(Commit {
                updates: if applied {
                    std::mem::take(&mut eval.updates)
                } else {
                    Vec::new()
                },
                file: Some(&entry),
                last_applied: applied.then_some(entry.id),
                audit: Some(AuditNote {
                    at: now,
                    user: "autoprov".into(),
                    action: format!("file {}", status.as_str()),
                    detail: format!("file {} {name} as {stored_as}: {}", entry.id, entry.summary),
                }),
                clear_remote: entry.remote.is_some().then_some(name),
            })?)
        });
        if let Err(e) = staged_and_committed {
            // Nothing was committed: drop the staged reports; the file stays in inbox/.
            let _ = fs::remove_dir_all(self.staged(entry.id));
            return Err(e);
        }
        crash_point("after_commit");
        tracing::info!(status = status.as_str(), stored_as, summary = %entry.summary, "file processed");
        self.finish_filing_committed(&entry)?;
        Ok(eval.report)
    }

    /// Applies a held file, re-planned against the current state, without the limits.
    pub fn approve(&self, id: u64, user: &str) -> Result<Report> {
        self.decide(id, user, true)
    }

    /// Discards a held file.
    pub fn reject(&self, id: u64, user: &str) -> Result<Report> {
        self.decide(id, user, false)
    }

    fn decide(&self, id: u64, user: &str, approve: bool) -> Result<Report> {
        let entry = self
            .store
            .file(id)?
            .ok_or_else(|| anyhow!("no file {id}: see `autoprov files list`"))?;
        if entry.status != FileStatus::Held {
            return Err(Blocked::NotHeld {
                id,
                name: entry.stored_as,
                status: entry.status.as_str(),
            }
            .into());
        }
        let held_path = self.paths.folder("held").join(&entry.stored_as);
        let now = now_rfc3339();
        let decision = Decision {
            decision: if approve { "approved" } else { "rejected" }.into(),
            by: user.to_string(),
            at: now.clone(),
        };
        let mut eval = if approve {
            let bytes =
                fs::read(&held_path).with_context(|| format!("reading {}", held_path.display()))?;
            if sha256_hex(&bytes) != entry.sha256 {
                bail!(
                    "{} changed on disk since it was held (its SHA-256 differs from the ledger); reject it and upload the roster again",
                    held_path.display()
                );
            }
            let dry_run = entry.name.ends_with(DRY_RUN_SUFFIX);
            let eval = self.evaluate(
                bytes,
                &entry.name,
                &entry.sha256,
                &entry.received_at,
                &now,
                None,
                dry_run,
            )?;
            // Approve applies exactly what was shown: an unreadable held report shows nothing.
            let shown = read_report(&held_path)
                .map(|r| r.changes)
                .unwrap_or_default();
            if let Some(what) = plan_difference(&shown, &eval.report.changes) {
                return Err(self.replace_held_plan(entry, eval.report, user, &now, what)?);
            }
            eval
        } else {
            let old = read_report(&held_path).unwrap_or_else(|| {
                Report::new(&entry.name, &entry.sha256, &entry.received_at, &now)
            });
            Evaluation {
                report: Report {
                    status: ReportStatus::Rejected,
                    processed_at: now.clone(),
                    ..old
                },
                updates: Vec::new(),
            }
        };
        eval.report.stored_as = Some(entry.stored_as.clone());
        eval.report.decision = Some(decision);
        let status = FileStatus::from(eval.report.status);
        let updated = FileEntry {
            status,
            processed_at: now.clone(),
            summary: summary(&eval.report),
            pending_move: Some((
                format!("held/{}", entry.stored_as),
                format!("{}/{}", status.folder(), entry.stored_as),
            )),
            remote_pending: entry.remote.is_some(),
            was_held: true,
            ..entry
        };
        self.stage(&updated, &eval.report)?;
        let applied = status == FileStatus::Applied;
        self.store.commit(Commit {
            updates: if applied {
                std::mem::take(&mut eval.updates)
            } else {
                Vec::new()
            },
            file: Some(&updated),
            last_applied: applied.then_some(updated.id),
            audit: Some(AuditNote {
                at: now,
                user: user.to_string(),
                action: if approve {
                    "files approve"
                } else {
                    "files reject"
                }
                .into(),
                detail: format!("file {id} {}: {}", updated.stored_as, updated.summary),
            }),
            clear_remote: None,
        })?;
        self.finish_filing_committed(&updated)?;
        Ok(eval.report)
    }

    /// Shows a held file's new plan instead of the one its report showed, audited, and
    /// returns the refusal that says what changed.
    fn replace_held_plan(
        &self,
        entry: FileEntry,
        mut report: Report,
        user: &str,
        now: &str,
        what: String,
    ) -> Result<anyhow::Error> {
        report.status = ReportStatus::Held;
        report.stored_as = Some(entry.stored_as.clone());
        report.held_because = vec![format!(
            "re-planned at an approval by {user} on {now}: the plan changed since the file was \
             held ({what}); approve again to apply these changes"
        )];
        let held = self.paths.folder("held");
        let json = serde_json::to_vec_pretty(&report)?;
        write_atomic(
            &held.join(format!("{}.report.json", entry.stored_as)),
            &json,
        )?;
        write_atomic(
            &held.join(format!("{}.report.txt", entry.stored_as)),
            report.to_text().as_bytes(),
        )?;
        let updated = FileEntry {
            summary: summary(&report),
            ..entry
        };
        self.store.commit(Commit {
            updates: Vec::new(),
            file: Some(&updated),
            last_applied: None,
            audit: Some(AuditNote {
                at: now.to_string(),
                user: user.to_string(),
                action: "files approve".into(),
                detail: format!(
                    "file {} {}: refused, the plan changed since it was held ({what}); the held report now shows {}",
                    updated.id, updated.stored_as, updated.summary
                ),
            }),
            clear_remote: None,
        })?;
        Ok(Blocked::PlanChanged {
            id: updated.id,
            name: updated.stored_as,
            what,
        }
        .into())
    }

    /// Re-evaluates the last applied roster with the current rules and applies the result.
    /// Over a safety limit it applies nothing unless `force`, and returns a `held` report.
    pub fn sync(&self, user: &str, force: bool) -> Result<Report> {
        let entry = self.store.last_applied()?.ok_or_else(|| {
            anyhow!("no roster has been applied yet: upload one or run `autoprov process FILE`")
        })?;
        let path = self.paths.folder("processed").join(&entry.stored_as);
        let bytes = fs::read(&path).with_context(|| {
            format!(
                "reading the last applied roster {}; if it was removed, process a new roster",
                path.display()
            )
        })?;
        if sha256_hex(&bytes) != entry.sha256 {
            bail!(
                "the last applied roster {} was changed on disk (its SHA-256 differs from the ledger); process a new roster instead",
                path.display()
            );
        }
        let now = now_rfc3339();
        let limits = (!force).then(|| self.cfg.limits());
        let mut eval = self.evaluate(
            bytes,
            "sync",
            &entry.sha256,
            &entry.received_at,
            &now,
            limits,
            false,
        )?;
        eval.report.stored_as = Some(entry.stored_as.clone());
        if eval.report.status == ReportStatus::Applied {
            self.store.commit(Commit {
                updates: std::mem::take(&mut eval.updates),
                file: None,
                last_applied: None,
                audit: Some(AuditNote {
                    at: now,
                    user: user.to_string(),
                    action: "sync".into(),
                    detail: format!(
                        "re-evaluated {}: {}",
                        entry.stored_as,
                        summary(&eval.report)
                    ),
                }),
                clear_remote: None,
            })?;
        }
        Ok(eval.report)
    }

    /// Parses a roster with the fields the enabled rules need.
    pub fn parse(&self, bytes: &[u8], rules: &[Rule]) -> Result<Roster, Rejection> {
        let columns = self.cfg.columns();
        let needed = rules::needed_fields(rules, &columns);
        roster::parse(bytes, &self.cfg.roster_options(needed))
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        bytes: Vec<u8>,
        name: &str,
        sha: &str,
        received_at: &str,
        now: &str,
        limits: Option<Limits>,
        dry_run: bool,
    ) -> Result<Evaluation> {
        let mut report = Report::new(name, sha, received_at, now);
        let all_rules = self.store.rules()?;
        let enabled: Vec<Rule> = all_rules.iter().filter(|r| r.enabled).cloned().collect();
        // The stored accounts are decoded on a second core while the roster is parsed.
        let (parsed, stored) = join(|| self.parse(&bytes, &enabled), || self.store.accounts());
        // The roster holds what it needs: a large file's bytes go before planning.
        drop(bytes);
        let stored = stored?;
        let roster = match parsed {
            Ok(roster) => roster,
            Err(rejection) => {
                report.status = ReportStatus::Rejected;
                report.rows = rejection.rows;
                report.errors = rejection.errors;
                report.more_errors = rejection.more_errors;
                report.warnings = rejection.warnings;
                return Ok(Evaluation {
                    report,
                    updates: Vec::new(),
                });
            }
        };
        let columns = self.cfg.columns();
        let compiled: Vec<CompiledRule> = enabled
            .iter()
            .map(|r| CompiledRule::compile(r, &roster, &columns))
            .collect::<Result<_, _>>()
            .map_err(|field| anyhow!("rule field {field} was not kept by the parser"))?;
        let matching = rules::MatchTable::build(&roster, &compiled);
        // All rules, so that a change names a disabled rule too; only enabled ones ever match.
        let rules_by_id: BTreeMap<RuleId, Rule> =
            all_rules.into_iter().map(|r| (r.id, r)).collect();
        let accounts = crate::core::accounts::index(&stored);
        let mut plan = reconcile::plan(
            &roster,
            &SyncInput {
                matching: &matching,
                rules: &rules_by_id,
                accounts: &accounts,
                now,
                source: name,
            },
        );
        report.rows = roster.rows;
        report.warnings = roster.warnings;
        report.warnings.extend(std::mem::take(&mut plan.warnings));
        report.counts = plan.counts.clone();
        report.held_because = limits
            .map(|l| plan.safety_violations(&l))
            .unwrap_or_default();
        report.status = if dry_run {
            ReportStatus::DryRun
        } else if !report.held_because.is_empty() {
            ReportStatus::Held
        } else {
            ReportStatus::Applied
        };
        report.changes = plan.changes;
        Ok(Evaluation {
            report,
            updates: plan.updates,
        })
    }

    /// `<ts>_<name>`, with `-2`, `-3`… before the last dot when taken in any result folder.
    fn unique_name(&self, ts: &str, name: &str) -> Result<String> {
        Ok(free_name(&format!("{ts}_{name}"), |candidate| {
            FOLDERS[1..]
                .iter()
                .any(|f| self.paths.folder(f).join(candidate).exists())
        }))
    }

    fn staged(&self, id: u64) -> PathBuf {
        self.paths.staging.join(id.to_string())
    }

    /// Writes the reports where the move will pick them up, durably, before the commit.
    fn stage(&self, entry: &FileEntry, report: &Report) -> Result<()> {
        let dir = self.staged(entry.id);
        let writing = || format!("writing the reports of {} in {}", entry.name, dir.display());
        fs::create_dir_all(&dir).with_context(writing)?;
        // The two forms of a large report are written on two cores.
        let (text, json) = join(
            || write_atomic(&dir.join("report.txt"), report.to_text().as_bytes()),
            || {
                write_atomic_with(&dir.join("report.json"), |w| {
                    serde_json::to_writer_pretty(&mut *w, report)?;
                    Ok(())
                })
            },
        );
        json.with_context(writing)?;
        text.with_context(writing)?;
        Ok(())
    }

    /// [`Self::finish_filing`] right after `entry` was committed: a failure says the change
    /// was recorded (exit 5 without "nothing was changed").
    fn finish_filing_committed(&self, entry: &FileEntry) -> Result<()> {
        self.finish_filing(entry).map_err(|e| {
            e.context(AfterCommit {
                id: entry.id,
                name: entry.name.clone(),
            })
        })
    }

    /// After the commit: move the file and its staged reports into place, then clear the mark.
    fn finish_filing(&self, entry: &FileEntry) -> Result<()> {
        let Some((from, to)) = &entry.pending_move else {
            return Ok(());
        };
        let from = self.paths.drop.join(from);
        let to = self.paths.drop.join(to);
        let to_dir = to.parent().expect("a folder").to_path_buf();
        let staged = self.staged(entry.id);
        for ext in ["json", "txt"] {
            let src = staged.join(format!("report.{ext}"));
            let dst = to_dir.join(format!("{}.report.{ext}", entry.stored_as));
            if src.exists() {
                fs::rename(&src, &dst)
                    .with_context(|| format!("moving report to {}", dst.display()))?;
            }
            if from.parent() != to.parent() {
                let old = from
                    .parent()
                    .expect("a folder")
                    .join(format!("{}.report.{ext}", entry.stored_as));
                if old.exists() && old != dst {
                    fs::remove_file(&old)?;
                }
            }
        }
        crash_point("after_reports_moved");
        // After a crash between the move and clearing the mark, inbox/<name> may be a new
        // upload with the same name: move only the bytes that were committed.
        let same_file = from.exists()
            && from != to
            && fs::read(&from).is_ok_and(|bytes| sha256_hex(&bytes) == entry.sha256);
        if same_file {
            fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
        fsync_dir(&to_dir)?;
        if let Some(parent) = from.parent() {
            fsync_dir(parent)?;
        }
        crash_point("after_file_moved");
        let _ = fs::remove_dir(&staged);
        self.store.commit(Commit {
            updates: Vec::new(),
            file: Some(&FileEntry {
                pending_move: None,
                ..entry.clone()
            }),
            last_applied: None,
            audit: None,
            clear_remote: None,
        })?;
        Ok(())
    }

    /// Files `bytes` into inbox/ as a complete file (temp name, fsync, rename) under a free
    /// name derived from `original` (a dry run gets the `.dryrun.csv` suffix); returns the name.
    pub fn receive(&self, original: &str, bytes: &[u8], dry_run: bool) -> Result<String> {
        let base = Path::new(original)
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "roster.csv".to_string());
        // A name the inbox would ignore (hidden or partial) gets `.csv` so it is processed.
        let mut name = if is_ignored(&base) {
            format!("{base}.csv")
        } else {
            base
        };
        if dry_run && !name.ends_with(DRY_RUN_SUFFIX) {
            name = match name.strip_suffix(".csv") {
                Some(stem) => format!("{stem}{DRY_RUN_SUFFIX}"),
                None => format!("{name}{DRY_RUN_SUFFIX}"),
            };
        }
        let inbox = self.paths.folder("inbox");
        let tmp = inbox.join(format!(".receive-{}.part", std::process::id()));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, bytes)?;
                f.sync_all()
            })
            .with_context(|| format!("writing {}", tmp.display()));
        if let Err(e) = written {
            // A full disk must not keep the partial copy (nor its space).
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let candidate = crate::util::rename_into_free_name(&tmp, &inbox, &name)?;
        fsync_dir(&inbox)?;
        Ok(candidate)
    }

    /// Removes `inbox/<name>` filed by [`Self::receive`] for a request that failed before
    /// its file was committed, so that the failure changes nothing (best effort). Kept when
    /// the ledger records it (a commit whose flush failed) or cannot be read.
    pub fn discard_received(&self, name: &str) {
        let from = format!("inbox/{name}");
        let recorded = self.store.files().map_or(true, |files| {
            files
                .iter()
                .any(|f| f.pending_move.as_ref().is_some_and(|(m, _)| *m == from))
        });
        if recorded {
            return;
        }
        let inbox = self.paths.folder("inbox");
        match fs::remove_file(inbox.join(name)).and_then(|()| fsync_dir(&inbox)) {
            Ok(()) => tracing::info!(
                file = name,
                "the request failed: its file was taken out of inbox/"
            ),
            Err(e) => tracing::warn!(
                file = name,
                "the request failed and its file could not be taken out of inbox/: {e}"
            ),
        }
    }

    /// When the newest file in the ledger was received.
    pub fn last_received(&self) -> Option<String> {
        self.store
            .files()
            .ok()?
            .into_iter()
            .map(|f| f.received_at)
            .max()
    }

    /// Files whose source still has to finish them (poll mode: the remote copy has to move).
    pub fn remote_work(&self) -> Result<Vec<FileEntry>> {
        Ok(self
            .store
            .files()?
            .into_iter()
            .filter(|f| f.remote_pending && f.remote.is_some() && f.pending_move.is_none())
            .collect())
    }

    /// Registers a complete download's origin and renames it from `tmp` into inbox/ as
    /// `name`; when the rename fails the download is forgotten, so it is fetched again.
    pub fn file_in(&self, tmp: &Path, name: &str, origin: &RemoteOrigin) -> Result<()> {
        self.store.register_remote(name, origin)?;
        let target = self.paths.folder("inbox").join(name);
        let moved = crate::util::rename_noreplace(tmp, &target)
            .and_then(|()| fsync_dir(target.parent().expect("inbox")));
        if let Err(e) = moved {
            let _ = fs::remove_file(tmp);
            self.store.unregister_remote(name)?;
            return Err(e)
                .with_context(|| format!("moving the download into {}", target.display()));
        }
        Ok(())
    }

    /// Poll mode: the remote move of file `id` is done.
    pub fn remote_done(&self, id: u64) -> Result<()> {
        let Some(entry) = self.store.file(id)? else {
            return Ok(());
        };
        self.store.commit(Commit {
            updates: Vec::new(),
            file: Some(&FileEntry {
                remote_pending: false,
                ..entry
            }),
            last_applied: None,
            audit: None,
            clear_remote: None,
        })?;
        Ok(())
    }

    /// Poll mode: whether a remote file was already fetched (in the ledger or registered),
    /// by its folder, name, size and mtime.
    pub fn remote_known(&self, origin: &RemoteOrigin) -> Result<bool> {
        let same = |o: &RemoteOrigin| {
            o.dir == origin.dir
                && o.name == origin.name
                && o.size == origin.size
                && o.mtime == origin.mtime
        };
        if self
            .store
            .remote_registrations()?
            .iter()
            .any(|(_, o)| same(o))
        {
            return Ok(true);
        }
        Ok(self
            .store
            .files()?
            .iter()
            .any(|f| f.remote.as_ref().is_some_and(same)))
    }

    /// The path of a ledger entry's file and report.
    pub fn report_path(&self, entry: &FileEntry) -> PathBuf {
        self.paths
            .folder(entry.status.folder())
            .join(format!("{}.report.json", entry.stored_as))
    }
}

/// When a file became complete: its change time (a rename into inbox/ sets it).
fn completion_time(meta: &fs::Metadata) -> std::time::SystemTime {
    use std::os::unix::fs::MetadataExt;
    let secs = meta.ctime().max(0) as u64;
    let nanos = meta.ctime_nsec().clamp(0, 999_999_999) as u32;
    std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
}

/// Reads a file unless it is larger than `max` (then `None`, without reading it).
fn read_limited(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let len = fs::metadata(path)?.len();
    if len > max {
        return Ok(None);
    }
    // O_NOFOLLOW: a symlink swapped in after the check is refused, not followed.
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = Vec::with_capacity(len as usize);
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(bytes))
}

/// The report beside a filed file, if readable.
fn read_report(file: &Path) -> Option<Report> {
    let mut p = file.as_os_str().to_owned();
    p.push(".report.json");
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn pipeline(dir: &Path) -> Pipeline<SledStore> {
        let config = dir.join("c.toml");
        fs::write(&config, format!("data_dir = {:?}\n", dir.join("data"))).unwrap();
        let cfg = Config::load(Some(&config)).unwrap();
        let store = SledStore::open(&Paths::new(&cfg.data_dir).store).unwrap();
        Pipeline::new(cfg, store).unwrap()
    }

    fn origin(name: &str, bytes: &[u8]) -> RemoteOrigin {
        RemoteOrigin {
            dir: "outgoing".into(),
            name: name.into(),
            size: bytes.len() as u64,
            mtime: 1,
            sha256: sha256_hex(bytes),
        }
    }

    #[test]
    fn recovery_completes_a_registered_download_or_forgets_it_so_it_is_fetched_again() {
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
        assert!(!p.remote_known(&sighting("b.csv", 1)).unwrap());
        assert!(p.remote_known(&sighting("a.csv", 4)).unwrap());
    }
}
