//! Deciding a held file (SPEC §4): approve applies exactly what its report showed, or
//! shows the new plan and applies nothing; reject discards it.

use super::filed_reports::read_report;
use super::pipeline::{Evaluation, Pipeline};
use super::resync::Record;
use super::roster_file::FileBytes;
use crate::api::error::Blocked;
use crate::api::error::{Context, Error, Result};
use crate::api::report_out::{write_json, write_text};
use crate::core::report::{Decision, Report, ReportStatus, plan_difference, warnings_difference};
use crate::core::updates::Updates;
use crate::store::{AuditNote, Commit, FileEntry, FileStatus, Store, summary};
use crate::util::{now_rfc3339, write_atomic_with};

/// How a held report's re-plan starts its reason.
const REPLANNED: &str = "re-planned at an approval";
/// How a held report's reasons from before a re-plan start.
const WHEN_HELD: &str = "when the file was held: ";

/// A held report's reasons said as of when the file was held: an earlier re-plan's line
/// left out (a later one replaces it), the others marked once.
fn as_when_held(reasons: Vec<String>) -> Vec<String> {
    reasons
        .into_iter()
        .filter(|reason| !reason.starts_with(REPLANNED))
        .map(|reason| match reason.starts_with(WHEN_HELD) {
            true => reason,
            false => format!("{WHEN_HELD}{reason}"),
        })
        .collect()
}

impl<S: Store> Pipeline<S> {
    /// Applies a held file, re-planned against the current state, without the limits.
    pub fn approve(&self, id: u64, user: &str) -> Result<Report> {
        self.decide(id, user, true)
    }

    /// Discards a held file.
    pub fn reject(&self, id: u64, user: &str) -> Result<Report> {
        self.decide(id, user, false)
    }

    pub(super) fn decide(&self, id: u64, user: &str, approve: bool) -> Result<Report> {
        let find = || -> Result<FileEntry> {
            self.store
                .file(id)?
                .ok_or_else(|| Error::usage(format!("no file {id}: see `autoprov files list`")))
        };
        let mut entry = find()?;
        // Held, but its filing failed after its commit: filed first, so the decision finds it
        // in held/ (a rejection had re-processed the roster left in inbox/).
        if entry.status == FileStatus::Held && entry.pending_move.is_some() {
            self.finish_unfiled(&entry)?;
            entry = find()?;
        }
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
        // Its roster gone from held/: the store was restored from a backup taken while it
        // was held, and the file was decided since (or removed by hand). Nothing to approve;
        // a rejection closes its entry and files nothing (the reports filed by the decision
        // after the backup stay as they are: they had been overwritten by an empty one).
        if !held_path.exists() {
            return self.close_missing(entry, approve, user, &now);
        }
        let mut eval = if approve {
            match self.replan_held(&entry, &held_path, &now, user)? {
                Ok(eval) => eval,
                Err((report, what)) => {
                    return Err(self.replace_held_plan(entry, report, user, &now, what)?);
                }
            }
        } else {
            let old = read_report(&held_path).unwrap_or_else(|| {
                Report::new(&entry.name, &entry.sha256, &entry.received_at, &now)
            });
            Evaluation::report_only(Report {
                status: ReportStatus::Rejected,
                processed_at: now.clone(),
                ..old
            })
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
        let applied = status == FileStatus::Applied;
        self.stage_and_commit(&updated, &mut eval, applied, |updates| Commit {
            updates,
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
            accounts_token: None,
        })?;
        self.tell(super::observe::FileOutcome::Filed {
            id,
            report: &eval.report,
            decided_by: Some(user),
        });
        self.finish_filing_committed(&updated, None)?;
        Ok(eval.report)
    }

    /// Writes `report` as the rejected report of `stored_as` (its roster gone), unless a
    /// report of that name is in rejected/ already (filed by a decision a restore undid)
    /// and not to be written `over`; whether it wrote one.
    fn file_rejected_report(&self, stored_as: &str, report: &Report, over: bool) -> Result<bool> {
        let [txt, json] = self.rejected_reports(stored_as);
        if json.exists() && !over {
            return Ok(false);
        }
        write_atomic_with(&txt, |w| write_text(report, w))?;
        write_atomic_with(&json, |w| write_json(report, w, false))?;
        Ok(true)
    }

    /// Where `stored_as`'s rejected reports are filed: text, then JSON.
    fn rejected_reports(&self, stored_as: &str) -> [std::path::PathBuf; 2] {
        let rejected = self.paths.folder("rejected");
        ["txt", "json"].map(|kind| rejected.join(format!("{stored_as}.report.{kind}")))
    }

    /// Takes `stored_as`'s reports out of held/ once its rejection is recorded; the first
    /// error of one that cannot be (said in the answer: the ledger and rejected/ say what
    /// happened, and SFTP users would otherwise see it HELD). Both are tried.
    fn remove_held_reports(&self, stored_as: &str) -> std::io::Result<()> {
        let held = self.paths.folder("held");
        let mut failed = Ok(());
        for kind in ["json", "txt"] {
            let path = held.join(format!("{stored_as}.report.{kind}"));
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(
                        "{}: {e}: left in held/ after its file was rejected",
                        path.display()
                    );
                    if failed.is_ok() {
                        failed = Err(e);
                    }
                }
                _ => {}
            }
        }
        if let Err(e) = crate::util::fsync_dir(&held) {
            tracing::warn!("syncing {}: {e}", held.display());
        }
        failed
    }

    /// A held file whose roster is not in held/: approving it is refused, saying why and what
    /// clears it; rejecting it closes its ledger entry (audited) and files its report in
    /// rejected/ (the held report, if it is still in held/). The report answered says so.
    fn close_missing(
        &self,
        entry: FileEntry,
        approve: bool,
        user: &str,
        now: &str,
    ) -> Result<Report> {
        let id = entry.id;
        let held = self.paths.folder("held").join(&entry.stored_as);
        if approve {
            // Refused (3), not failed (5): no retry will ever approve it.
            return Err(Blocked::RosterGone {
                id,
                path: held.display().to_string(),
            }
            .into());
        }
        // The held report, when it is still there (the roster alone removed by hand): filed
        // as rejected, with the decision. Left in held/, it had said HELD for ever, and
        // `files show` had failed looking for the rejected one.
        let shown = read_report(&held);
        let kept = shown.is_some();
        let mut report = Report {
            status: ReportStatus::Rejected,
            stored_as: Some(entry.stored_as.clone()),
            processed_at: now.to_string(),
            decision: Some(Decision {
                decision: "rejected".into(),
                by: user.to_string(),
                at: now.to_string(),
            }),
            ..shown
                .unwrap_or_else(|| Report::new(&entry.name, &entry.sha256, &entry.received_at, now))
        };
        let filed = match kept {
            true => "its held report is filed in rejected/",
            false => {
                "its report is filed in rejected/ unless one is there (reports filed \
                      for it before stay as they are)"
            }
        };
        report
            .warnings
            .push(crate::core::model::Finding::file(format!(
                "the roster was not in held/ when file {id} was rejected (removed by hand, or a \
                 store restored from a backup taken while it was held): its ledger entry is \
                 closed and nothing was changed; {filed}"
            )));
        let updated = FileEntry {
            status: FileStatus::Rejected,
            processed_at: now.to_string(),
            summary: summary(&report),
            pending_move: None,
            remote_pending: entry.remote.is_some(),
            was_held: true,
            ..entry
        };
        let detail = format!(
            "file {id} {}: rejected; its roster was not in held/; {filed}",
            updated.stored_as
        );
        // Filed first (`files show` reads rejected/ for a rejected file: it had failed with
        // exit 5 where nothing was filed), and taken back unless the ledger has the
        // rejection, so no report says "rejected" of a file still held. Not over a report
        // that is there, unless the held report is still in held/: that one is then from an
        // attempt whose commit never came (a crash), naming another person and time.
        let wrote = self.file_rejected_report(&updated.stored_as, &report, kept)?;
        if let Err(e) = self.record_entry(&updated, user, now, "files reject", detail) {
            // By the ledger, as `stage_and_commit` decides (a flush that failed after the
            // change was made keeps it); unknown only when it cannot be read after a failed
            // write.
            let recorded = match self.store.file(updated.id) {
                Ok(entry) => entry.as_ref() == Some(&updated),
                Err(_) => self.store.write_failed().is_some(),
            };
            if wrote && !recorded {
                for path in self.rejected_reports(&updated.stored_as) {
                    let _ = std::fs::remove_file(path);
                }
            }
            return Err(e);
        }
        if let Err(e) = self.remove_held_reports(&updated.stored_as) {
            report
                .warnings
                .push(crate::core::model::Finding::file(format!(
                    "its held reports could not be taken out of held/ ({e}): remove them by hand"
                )));
        }
        Ok(report)
    }

    /// Records `updated` in the ledger, nothing else changed, with its audit note.
    fn record_entry(
        &self,
        updated: &FileEntry,
        user: &str,
        now: &str,
        action: &str,
        detail: String,
    ) -> Result<()> {
        self.store.commit(Commit {
            updates: Updates::none(),
            file: Some(updated),
            last_applied: None,
            audit: Some(AuditNote {
                at: now.to_string(),
                user: user.to_string(),
                action: action.into(),
                detail,
            }),
            clear_remote: None,
            accounts_token: None,
        })?;
        Ok(())
    }

    /// Re-plans a held file against the current state without the limits: the evaluation
    /// when its changes are the ones its held report shows, else the new report and what
    /// differs (SPEC §4: approve applies exactly what was shown).
    #[allow(clippy::type_complexity)]
    fn replan_held(
        &self,
        entry: &FileEntry,
        held_path: &std::path::Path,
        now: &str,
        user: &str,
    ) -> Result<Result<Evaluation, (Report, String)>> {
        let bytes = FileBytes::read(held_path)
            .with_context(|| format!("reading {}", held_path.display()))?;
        let dry_run = crate::layout::is_dry_run(&entry.name);
        let eval = self.evaluate(
            bytes,
            &entry.name,
            &super::pipeline::history_source(&entry.stored_as, user, "approved"),
            &entry.received_at,
            now,
            None,
            dry_run,
            Record::Used,
        )?;
        if eval.report.sha256 != entry.sha256 {
            // Not the caller's mistake (exit 2): the work cannot be done (exit 5).
            return Err(Error::failed(format!(
                "{} changed on disk since it was held (its SHA-256 differs from the ledger); reject it and upload the roster again",
                held_path.display()
            )));
        }
        // Rejected now (a rule enabled since reads a column the file lacks): nothing to
        // approve. Shown as a held plan with errors, a second approval had filed it as
        // rejected under the decision "approved".
        if eval.report.status == ReportStatus::Rejected {
            let why = eval
                .report
                .errors
                .first()
                .map_or("errors".into(), |e| e.to_string());
            return Err(Blocked::CannotApply {
                id: entry.id,
                name: entry.stored_as.clone(),
                why,
            }
            .into());
        }
        // Approve applies exactly what was shown: an unreadable held report shows nothing.
        // Which earlier file it repeats stays in the final report (SPEC §4).
        let Some(held) = read_report(held_path) else {
            // Said as what it is (it had read as "the plan changed", counts from nothing).
            let what = "its held report could not be read, so what approval applies was not \
                        shown; it is shown now"
                .to_string();
            return Ok(Err((eval.report, what)));
        };
        let (shown, repeats) = (held.changes, held.repeats);
        let differs = plan_difference(&shown, &eval.report.changes)
            .or_else(|| warnings_difference(&held.warnings, &eval.report.warnings));
        Ok(match differs {
            Some(what) => Err((eval.report, what)),
            None => {
                // Why it was held stays on record beside the decision (which limit was
                // passed over, a lost status column): the approved report had said nothing.
                let mut eval = eval;
                eval.report.repeats = repeats;
                eval.report.held_because = as_when_held(held.held_because);
                Ok(eval)
            }
        })
    }

    /// Shows a held file's new plan instead of the one its report showed, audited, and
    /// returns the refusal that says what changed.
    pub(super) fn replace_held_plan(
        &self,
        entry: FileEntry,
        mut report: Report,
        user: &str,
        now: &str,
        what: String,
    ) -> Result<Error> {
        // What the held report showed besides its changes stays: why it was held, which
        // earlier file it repeats.
        let old = read_report(&self.paths.folder("held").join(&entry.stored_as));
        report.status = ReportStatus::Held;
        report.stored_as = Some(entry.stored_as.clone());
        report.held_because = vec![format!(
            "{REPLANNED} by {user} on {now}: the plan changed since the file was \
             held ({what}); approve again to apply these changes"
        )];
        if let Some(old) = old {
            // Why it was held, said as of then (the counts above are the new plan's); an
            // earlier re-plan's line is replaced by this one, not kept beside it.
            report.held_because.extend(as_when_held(old.held_because));
            report.repeats = old.repeats;
        }
        let updated = FileEntry {
            summary: summary(&report),
            ..entry
        };
        // The refusal is recorded before the new plan is shown: a crash in between leaves the
        // old report, so the next approval finds the difference again and applies nothing.
        let detail = format!(
            "file {} {}: refused, the plan changed since it was held ({what}); the new plan: {}",
            updated.id, updated.stored_as, updated.summary
        );
        // An action of its own: filtered by action, a refusal had counted as an approval.
        self.record_entry(&updated, user, now, "files approve refused", detail)?;
        // The text first: approval compares against the JSON, written last.
        let held = self.paths.folder("held");
        let [txt, json] =
            ["txt", "json"].map(|k| held.join(format!("{}.report.{k}", updated.stored_as)));
        let rewritten = write_atomic_with(&txt, |w| write_text(&report, w))
            .and_then(|()| write_atomic_with(&json, |w| write_json(&report, w, false)));
        // Said as a refusal recorded (a full disk had made it "nothing was changed", while the
        // audit and the ledger had the refusal and the text report the new plan).
        if let Err(e) = rewritten {
            return Err(Error::failed_leaving(format!(
                "the approval of file {} was refused, as the plan changed since it was held \
                 ({what}), and the refusal is recorded; but the held report could not be \
                 rewritten with the new plan ({}: {e}), so it may still show the old one: \
                 approve again once it can be written, and the new plan is shown again",
                updated.id,
                held.display()
            )));
        }
        Ok(Blocked::PlanChanged {
            id: updated.id,
            name: updated.stored_as,
            what,
        }
        .into())
    }
}
