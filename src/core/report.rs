//! The result report of one file or sync (SPEC §6): its JSON shape and its text rendering.

use crate::core::accounts::Status;
use crate::core::model::{FastHash, Finding, escape_controls};
use crate::core::reconcile::{Action, Change, Counts};
use crate::core::rules::RuleId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::{self, Write};

/// The outcome of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Changes were written and flushed.
    Applied,
    /// The file had errors (or a held file was rejected); nothing changed.
    Rejected,
    /// Over a safety limit; waits for `files approve|reject`.
    Held,
    /// Evaluated only.
    DryRun,
}

impl ReportStatus {
    /// The name used in reports and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Applied => "applied",
            ReportStatus::Rejected => "rejected",
            ReportStatus::Held => "held",
            ReportStatus::DryRun => "dry_run",
        }
    }
}

/// What a change's line holds but for its ID and email, in a report's text and in its JSON:
/// the same for every change of one action, rule, role and previous state (a first import's
/// 950k changes are of ~60 kinds), so each kind's part of a line is written once and copied
/// ([`ByKind`]). The shared names ([`Change::rule`], [`Change::role`]) are told apart by
/// address and length: a report's writers borrow its changes for the whole write, so an
/// address names one string while it lasts (two copies of one name are two kinds, which
/// write the same).
#[derive(PartialEq, Eq)]
struct ChangeKind {
    action: Action,
    rule_id: Option<RuleId>,
    rule: Option<(usize, usize)>,
    role: (usize, usize),
    previous_role: Option<(usize, usize)>,
    previous_status: Option<Status>,
}

impl ChangeKind {
    fn of(change: &Change) -> ChangeKind {
        let at = |s: &str| (s.as_ptr() as usize, s.len());
        ChangeKind {
            action: change.action,
            rule_id: change.rule_id,
            rule: change.rule.as_deref().map(at),
            role: at(&change.role),
            previous_role: change.previous_role.as_deref().map(at),
            previous_status: change.previous_status,
        }
    }
}

/// One word hashed, not the ten of every field: the role's and the rule's addresses and the
/// action tell kinds apart (equal kinds hash alike, as any subset of their fields does), and
/// a first import looks up 950k changes three times (its two reports, its new accounts).
impl std::hash::Hash for ChangeKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let rule = self.rule.map_or(0, |(at, _)| at);
        state.write_usize(self.role.0 ^ rule.rotate_left(32) ^ self.action as usize);
    }
}

/// How many kinds of change [`ByKind`] keeps a part for; past this many, the rest are
/// written for each change (a sync with that many kinds has few changes of each, and a
/// report read back from its file has names of its own for each change).
pub const MAX_KINDS: usize = 4096;

/// The part of a report's line that each [`ChangeKind`] shares, made once for the kind, for
/// one write of the changes.
pub struct ByKind<T>(HashMap<ChangeKind, T, FastHash>);

impl<T> Default for ByKind<T> {
    fn default() -> Self {
        ByKind(HashMap::default())
    }
}

impl<T> ByKind<T> {
    /// The part of `change`'s kind, made by `make` for its first change; `None` past
    /// [`MAX_KINDS`] kinds (the change is then written whole).
    pub fn of(&mut self, change: &Change, make: impl FnOnce() -> T) -> Option<&T> {
        let kinds = self.0.len();
        match self.0.entry(ChangeKind::of(change)) {
            Entry::Occupied(part) => Some(part.into_mut()),
            Entry::Vacant(part) if kinds < MAX_KINDS => Some(part.insert(make())),
            Entry::Vacant(_) => None,
        }
    }
}

/// `created 1, reassigned 0, …, unchanged 5`: the counts in one line.
pub fn counts_line(c: &Counts) -> String {
    format!(
        "created {}, reassigned {}, reactivated {}, role_changed {}, deactivated {}, skipped_manual {}, unchanged {}",
        c.created,
        c.reassigned,
        c.reactivated,
        c.role_changed,
        c.deactivated,
        c.skipped_manual,
        c.unchanged
    )
}

/// How the changes a held report showed differ from a new plan's, in words, or `None` when
/// they are the same (SPEC §4: approve applies exactly what was shown).
pub fn plan_difference(shown: &[Change], now: &[Change]) -> Option<String> {
    if shown.len() == now.len() && shown.iter().zip(now).all(|(a, b)| same_change(a, b)) {
        return None;
    }
    let mut parts = Vec::new();
    for action in Action::ALL {
        let (a, b) = (
            shown.iter().filter(|c| c.action == action).count(),
            now.iter().filter(|c| c.action == action).count(),
        );
        if a != b {
            parts.push(format!("{} {a} -> {b}", action.as_str()));
        }
    }
    let by_id = |changes: &[Change]| -> std::collections::BTreeMap<Box<str>, Change> {
        changes
            .iter()
            .map(|c| (c.employee_id.clone(), c.clone()))
            .collect()
    };
    let (old, new) = (by_id(shown), by_id(now));
    let differing: Vec<&str> = old
        .keys()
        .chain(new.keys())
        .filter(|id| match (old.get(*id), new.get(*id)) {
            (Some(a), Some(b)) => !same_change(a, b),
            _ => true,
        })
        .map(|id| &**id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Escaped as in the text report: a roster's cell must not write lines (or escape
    // sequences) into the approver's terminal.
    let mut ids = differing
        .iter()
        .take(10)
        .map(|id| escape_controls(id))
        .collect::<Vec<_>>()
        .join(", ");
    if differing.len() > 10 {
        let _ = write!(ids, " and {} more", differing.len() - 10);
    }
    let counts = if parts.is_empty() {
        "same counts".to_owned()
    } else {
        parts.join(", ")
    };
    Some(format!(
        "{} employees' changes differ ({counts}): {ids}",
        differing.len()
    ))
}

/// How the warnings a held report showed differ from a new plan's, in words, or `None` when
/// they are the same. Part of what approval applies: a sign-in email that moves (or is
/// kept from moving by a manual account) is no action in `changes`, but whoever holds the
/// address holds the admin rights (a manual account removed meanwhile had let an approval
/// move an admin's sign-in the held report said would not move).
pub fn warnings_difference(shown: &[Finding], now: &[Finding]) -> Option<String> {
    let (old, new) = (sorted_findings(shown), sorted_findings(now));
    if old == new {
        return None;
    }
    let mut what = format!(
        "the warnings differ ({} shown, {} now)",
        old.len(),
        new.len()
    );
    for (label, from, other) in [("now", &new, &old), ("no longer", &old, &new)] {
        if let Some((line, column, message)) = from.iter().find(|k| !other.contains(k)) {
            let finding = Finding {
                line: *line,
                column: column.map(str::to_owned),
                message: (*message).to_owned(),
            };
            let _ = write!(what, "; {label}: {}", escape_controls(&finding.to_string()));
        }
    }
    Some(what)
}

/// `findings` as (line, column, message), sorted.
fn sorted_findings(findings: &[Finding]) -> Vec<(Option<u64>, Option<&str>, &str)> {
    let mut keys: Vec<_> = findings
        .iter()
        .map(|f| (f.line, f.column.as_deref(), f.message.as_str()))
        .collect();
    keys.sort_unstable();
    keys
}

/// Whether a change shown earlier is the one planned now. Reports written before every
/// change carried `previous_role`/`previous_status` left them null where unchanged: a null
/// shown there is not a difference (the approver saw the same action, rule and role).
fn same_change(shown: &Change, now: &Change) -> bool {
    let previous_role = shown.previous_role.is_none() || shown.previous_role == now.previous_role;
    let previous_status =
        shown.previous_status.is_none() || shown.previous_status == now.previous_status;
    (
        &shown.employee_id,
        &shown.email,
        shown.action,
        shown.rule_id,
        &shown.rule,
        &shown.role,
    ) == (
        &now.employee_id,
        &now.email,
        now.action,
        now.rule_id,
        &now.rule,
        &now.role,
    ) && previous_role
        && previous_status
}

/// A decision on a held file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `approved` or `rejected`.
    pub decision: String,
    /// The Unix user who decided.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The `file` of a sync's report (a re-evaluation of the last applied roster).
pub const SYNC: &str = "sync";

/// The report written beside a processed file and printed by `process` and `sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The file's name as received (or `sync` for a re-evaluation).
    pub file: String,
    /// The name it was filed under in processed/, rejected/ or held/.
    pub stored_as: Option<String>,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// When the file was complete in inbox/ (RFC 3339).
    pub received_at: String,
    /// When it was processed (RFC 3339).
    pub processed_at: String,
    /// The outcome.
    pub status: ReportStatus,
    /// Data rows in the file.
    pub rows: usize,
    /// Employees per action.
    pub counts: Counts,
    /// One entry per changed employee (what would change, for held and dry-run files).
    pub changes: Vec<Change>,
    /// File-level errors (the file was rejected).
    pub errors: Vec<Finding>,
    /// Errors beyond the first 1,000 that were not listed.
    pub more_errors: usize,
    /// Warnings (the file was still applied).
    pub warnings: Vec<Finding>,
    /// Why a file was held: the safety limits it exceeds.
    pub held_because: Vec<String>,
    /// The earlier file whose bytes this file repeats.
    pub repeats: Option<String>,
    /// The approval or rejection of a held file.
    pub decision: Option<Decision>,
}

impl Report {
    /// An empty report for `file`, to be filled in.
    pub fn new(file: &str, sha256: &str, received_at: &str, processed_at: &str) -> Report {
        Report {
            file: file.to_string(),
            stored_as: None,
            sha256: sha256.to_string(),
            received_at: received_at.to_string(),
            processed_at: processed_at.to_string(),
            status: ReportStatus::Rejected,
            rows: 0,
            counts: Counts::default(),
            changes: Vec::new(),
            errors: Vec::new(),
            more_errors: 0,
            warnings: Vec::new(),
            held_because: Vec::new(),
            repeats: None,
            decision: None,
        }
    }

    /// The report for a person: summary, changes grouped by action, then errors and warnings.
    pub fn to_text(&self) -> String {
        // About 100 bytes a change line.
        let mut out = String::with_capacity(1024 + 100 * self.changes.len());
        self.write_text(&mut out)
            .expect("writing to a String does not fail");
        out
    }

    /// [`Self::to_text`], written to `out` piece by piece (a report may list a million changes).
    pub fn write_text(&self, out: &mut impl Write) -> fmt::Result {
        let status = match self.status {
            ReportStatus::Applied => "APPLIED: the changes below were made",
            ReportStatus::Rejected if self.decision.is_some() => {
                "REJECTED: a held file was rejected; nothing was changed"
            }
            ReportStatus::Rejected => "REJECTED: the file has errors; nothing was changed",
            // A sync holds no file: nothing to approve.
            ReportStatus::Held if self.file == SYNC => {
                "HELD: over a safety limit; nothing was changed: `autoprov sync --force` applies these changes"
            }
            // Held over a limit, or for what a limit cannot see (a status column lost, text
            // in two encodings): "held because" says which.
            ReportStatus::Held => {
                "HELD for approval (see held because); nothing was changed until `autoprov files approve` or `reject`"
            }
            // Nothing is held by a dry run: what a real upload would do is said.
            ReportStatus::DryRun if !self.held_because.is_empty() => {
                "DRY RUN: nothing was changed; uploaded for real, this file would be held for approval (see would be held because)"
            }
            ReportStatus::DryRun => "DRY RUN: nothing was changed; the changes below would be made",
        };
        writeln!(out, "autoprov report for {}", escape_controls(&self.file))?;
        writeln!(out, "{status}")?;
        if let Some(stored) = &self.stored_as {
            writeln!(out, "stored as:    {}", escape_controls(stored))?;
        }
        writeln!(out, "sha256:       {}", self.sha256)?;
        writeln!(out, "received at:  {}", self.received_at)?;
        writeln!(out, "processed at: {}", self.processed_at)?;
        writeln!(out, "rows:         {}", self.rows)?;
        if let Some(earlier) = &self.repeats {
            writeln!(
                out,
                "repeats:      the same bytes as {}",
                escape_controls(earlier)
            )?;
        }
        if let Some(d) = &self.decision {
            let by = escape_controls(&d.by);
            writeln!(out, "decision:     {} by {by} at {}", d.decision, d.at)?;
        }
        let held = match self.status {
            ReportStatus::DryRun => "would be held because",
            _ => "held because",
        };
        for reason in &self.held_because {
            writeln!(out, "{held}: {}", escape_controls(reason))?;
        }
        writeln!(out, "counts:       {}", counts_line(&self.counts))?;
        write_changes(out, &self.changes)?;
        if !self.errors.is_empty() {
            writeln!(out, "\nerrors ({}):", self.errors.len() + self.more_errors)?;
            for e in &self.errors {
                writeln!(out, "  {e}")?;
            }
            if self.more_errors > 0 {
                writeln!(out, "  ... and {} more errors", self.more_errors)?;
            }
        }
        if !self.warnings.is_empty() {
            // Each line that stands for more not listed counts as those it stands for.
            let total: usize = self.warnings.iter().map(Finding::counts).sum();
            writeln!(out, "\nwarnings ({total}):")?;
            for w in &self.warnings {
                writeln!(out, "  {w}")?;
            }
        }
        Ok(())
    }
}

/// The changes' lines, under a heading for each action that has any, in that order. A line
/// is `  ID  EMAIL  role "ROLE"`, then `  rule N "NAME"`, `  (was role "ROLE")` and
/// `  (was STATUS)` where they apply; pushed piece by piece rather than formatted, the part
/// after the email written once for each kind of change ([`ByKind`]; a report may list a
/// million).
fn write_changes(out: &mut impl Write, changes: &[Change]) -> fmt::Result {
    let mut counts = [0usize; Action::ALL.len()];
    for change in changes {
        let at = Action::ALL.iter().position(|&a| a == change.action);
        counts[at.expect("every action is in ALL")] += 1;
    }
    let mut tails: ByKind<String> = ByKind::default();
    let mut lines = String::with_capacity(1 << 16);
    for (action, count) in Action::ALL.into_iter().zip(counts) {
        if count == 0 {
            continue;
        }
        writeln!(out, "\n{} ({count}):", action.as_str())?;
        for change in changes.iter().filter(|c| c.action == action) {
            for piece in [
                "  ",
                &escape_controls(&change.employee_id),
                "  ",
                &escape_controls(&change.email),
            ] {
                lines.push_str(piece);
            }
            let tail = || {
                let mut tail = String::new();
                change_tail(&mut tail, change);
                tail
            };
            match tails.of(change, tail) {
                Some(tail) => lines.push_str(tail),
                None => change_tail(&mut lines, change),
            }
            if lines.len() >= 60_000 {
                out.write_str(&lines)?;
                lines.clear();
            }
        }
        out.write_str(&lines)?;
        lines.clear();
    }
    Ok(())
}

/// A change's line after its ID and email, to its line break: its role, rule and previous
/// state.
fn change_tail(out: &mut String, change: &Change) {
    out.push_str("  role \"");
    out.push_str(&change.role);
    out.push('"');
    // A manual account a rule matches: what it is, and the rule that would have granted a
    // role (written as `rule N`, it had read as if that rule granted the manual account's
    // role, and its suspension did not show).
    if change.action == Action::SkippedManual {
        out.push_str("  (manual account, ");
        out.push_str(change.status().as_str());
        out.push(')');
        if let (Some(id), Some(name)) = (change.rule_id, &change.rule) {
            out.push_str("  matches rule ");
            out.push_str(itoa::Buffer::new().format(id.0));
            out.push_str(" \"");
            out.push_str(&escape_controls(name));
            out.push('"');
        }
        out.push('\n');
        return;
    }
    if let (Some(id), Some(name)) = (change.rule_id, &change.rule) {
        out.push_str("  rule ");
        out.push_str(itoa::Buffer::new().format(id.0));
        out.push_str(" \"");
        out.push_str(&escape_controls(name));
        out.push('"');
    }
    if let Some(prev) = change.previous_role.as_ref().filter(|r| **r != change.role) {
        out.push_str("  (was role \"");
        out.push_str(prev);
        out.push_str("\")");
    }
    if let Some(prev) = change.previous_status.filter(|s| *s != change.status()) {
        out.push_str("  (was ");
        out.push_str(prev.as_str());
        out.push(')');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::accounts::Status;
    use crate::core::rules::RuleId;

    fn sample() -> Report {
        let mut r = Report::new(
            "roster.csv",
            "ab12",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:01Z",
        );
        r.status = ReportStatus::Applied;
        r.rows = 3;
        r.counts.created = 1;
        r.counts.deactivated = 1;
        r.changes = vec![
            Change {
                employee_id: "E2".into(),
                email: "b@x.io".into(),
                action: Action::Deactivated,
                rule_id: Some(RuleId(1)),
                rule: Some("Fin".into()),
                role: "Billing Admin".into(),
                previous_role: Some("Billing Admin".into()),
                previous_status: Some(Status::Active),
            },
            Change {
                employee_id: "E1".into(),
                email: "a@x.io".into(),
                action: Action::Created,
                rule_id: Some(RuleId(1)),
                rule: Some("Fin".into()),
                role: "Billing Admin".into(),
                previous_role: None,
                previous_status: None,
            },
        ];
        r.warnings = vec![Finding::at(
            3,
            "Manager ID",
            "manager \"E9\" is not in the file",
        )];
        r
    }

    /// A cell's line break (an ID or a quoted bad email) stays on its line of the text
    /// report, escaped: it cannot start a line that reads like a finding or a change.
    #[test]
    fn cells_with_line_breaks_stay_on_their_line_of_the_text() {
        let mut r = sample();
        r.changes[1].employee_id = "E1\nAPPLIED: forged".into();
        r.errors = vec![Finding::at(
            4,
            "Email\r\nwarnings (0):",
            "email \"bad\nline 9: ok\" is not well formed",
        )];
        let text = r.to_text();
        assert!(text.contains("  E1\\nAPPLIED: forged  a@x.io"), "{text}");
        assert!(
            text.contains(
                "  line 4, column \"Email\\r\\nwarnings (0):\": email \"bad\\nline 9: ok\" is not well formed\n"
            ),
            "{text}"
        );
        for forged in ["APPLIED: forged", "line 9: ok", "warnings (0):"] {
            assert!(
                !text.lines().any(|l| l.starts_with(forged)),
                "{forged}: {text}"
            );
        }
        // The earlier file a repeat names is a stored name, which may hold a line break.
        r.repeats = Some("20261206T184241Z_x\nAPPLIED: the changes below were made.csv".into());
        let text = r.to_text();
        assert!(
            text.contains("the same bytes as 20261206T184241Z_x\\nAPPLIED"),
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("APPLIED: the changes below were made.csv"))
        );
        assert_eq!(escape_controls("Müller\u{85}"), "Müller\\u{85}");
        // A line or paragraph separator (a line break to a viewer that follows Unicode) and
        // a right-to-left override (it turns the rest of the line around) are escaped too.
        r.changes[0].employee_id = "X4\u{2028}FAKE  E99  evil@acme.example\u{202e}".into();
        let text = r.to_text();
        assert!(
            !text.contains(['\u{2028}', '\u{202e}']),
            "written as they are: {text}"
        );
        assert!(
            text.contains("X4\\u{2028}FAKE  E99  evil@acme.example\\u{202e}"),
            "{text}"
        );
        assert!(matches!(
            escape_controls("Müller"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    /// The text's count of warnings is of all of them: a line standing for more not listed
    /// counts as those (it had said 1001 of 1,005 warnings).
    #[test]
    fn the_warnings_count_includes_those_not_listed() {
        let mut r = sample();
        r.warnings = (1..=3)
            .map(|l| Finding::line(l, format!("warning {l}")))
            .collect();
        r.warnings.push(Finding::not_listed(1002, "warnings", ""));
        r.warnings.push(Finding::not_listed(
            5,
            "employees are listed as their own manager",
            "",
        ));
        r.warnings
            .push(Finding::file("3 more of them, said otherwise"));
        let text = r.to_text();
        assert!(text.contains("\nwarnings (1011):\n"), "{text}");
        assert!(
            text.contains("  1002 more warnings (not listed)\n"),
            "{text}"
        );
    }

    #[test]
    fn plan_difference_names_what_changed_and_tolerates_older_reports() {
        let now = sample().changes;
        assert_eq!(plan_difference(&now, &now), None);
        // A report of an older build: previous fields null where unchanged.
        let mut older = now.clone();
        older[0].previous_role = None;
        assert_eq!(plan_difference(&older, &now), None);
        let mut other = now.clone();
        other[1].role = "Super Admin".into();
        let what = plan_difference(&now, &other).expect("a difference");
        assert!(
            what.starts_with("1 employees' changes differ (same counts): E1"),
            "{what}"
        );
        // A roster's cell writes no line (nor escape sequence) into the approver's terminal.
        let mut odd = now.clone();
        odd[1].employee_id = "E0\u{1b}[2K\r\nAPPLIED: fake".into();
        let what = plan_difference(&now, &odd).expect("a difference");
        assert!(
            what.contains("E0\\u{1b}[2K\\r\\nAPPLIED") && !what.contains('\n'),
            "{what}"
        );
        let what = plan_difference(&now[..1], &now).expect("a difference");
        assert!(
            what.contains("created 0 -> 1") && what.contains("E1"),
            "{what}"
        );
    }

    #[test]
    fn json_has_the_fields_of_spec_section_6() {
        let v = serde_json::to_value(sample()).unwrap();
        for key in [
            "file",
            "sha256",
            "received_at",
            "processed_at",
            "status",
            "rows",
            "counts",
            "changes",
            "errors",
            "warnings",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "applied");
        let change = &v["changes"][0];
        for key in [
            "employee_id",
            "email",
            "action",
            "rule_id",
            "rule",
            "role",
            "previous_role",
            "previous_status",
        ] {
            assert!(change.get(key).is_some(), "change lacks {key}");
        }
        assert_eq!(change["previous_status"], "active");
        assert_eq!(v["warnings"][0]["line"], 3);
        assert_eq!(v["warnings"][0]["column"], "Manager ID");
        for key in [
            "created",
            "reassigned",
            "reactivated",
            "role_changed",
            "deactivated",
            "skipped_manual",
            "unchanged",
        ] {
            assert!(v["counts"].get(key).is_some(), "counts lacks {key}");
        }
    }

    #[test]
    fn text_has_summary_first_then_changes_grouped_in_action_order_then_findings() {
        let text = sample().to_text();
        let pos = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
        };
        assert!(pos("APPLIED") < pos("created (1):"));
        assert!(pos("created (1):") < pos("deactivated (1):"));
        assert!(pos("deactivated (1):") < pos("warnings (1):"));
        assert!(text.contains("line 3, column \"Manager ID\""));
        assert!(text.contains("(was active)"));
    }

    /// A held file's header says it is held for approval, the reason below: it had said
    /// "over a safety limit" of a file held for its encoding or a lost status column. A
    /// held sync is held only over a limit, and says so.
    #[test]
    fn a_held_files_header_does_not_say_why_before_held_because() {
        let mut r = sample();
        r.status = ReportStatus::Held;
        let text = r.to_text();
        assert!(
            text.contains("\nHELD for approval (see held because);"),
            "{text}"
        );
        assert!(!text.contains("safety limit"), "{text}");
        r.file = SYNC.into();
        assert!(r.to_text().contains("\nHELD: over a safety limit;"));
    }

    /// A dry run over a limit holds nothing: it says what a real upload would do, and why,
    /// where it had read "held because" under "the changes below would be made".
    #[test]
    fn a_dry_run_over_a_limit_says_it_would_be_held() {
        let mut r = sample();
        r.status = ReportStatus::DryRun;
        r.held_because = vec!["16 grants exceed safety.max_grants".into()];
        let text = r.to_text();
        assert!(
            text.contains(
                "\nDRY RUN: nothing was changed; uploaded for real, this file would be held"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nwould be held because: 16 grants exceed"),
            "{text}"
        );
        assert!(!text.contains("\nheld because"), "{text}");
    }

    #[test]
    fn a_change_line_holds_each_piece_that_applies_in_order() {
        let mut r = sample();
        r.changes = vec![
            Change {
                employee_id: "E3".into(),
                email: "c@x.io".into(),
                action: Action::RoleChanged,
                rule_id: Some(RuleId(17)),
                rule: Some("Ops \"a\"".into()),
                role: "IT Admin".into(),
                previous_role: Some("HR Admin".into()),
                previous_status: Some(Status::Inactive),
            },
            Change {
                employee_id: "E4".into(),
                email: "d@x.io".into(),
                action: Action::SkippedManual,
                rule_id: None,
                rule: Some("unnamed".into()),
                role: "Super Admin".into(),
                previous_role: Some("Super Admin".into()),
                previous_status: Some(Status::Inactive),
            },
        ];
        let text = r.to_text();
        assert!(
            text.contains(
                "\nrole_changed (1):\n  E3  c@x.io  role \"IT Admin\"  rule 17 \"Ops \"a\"\"  \
                 (was role \"HR Admin\")  (was inactive)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\nskipped_manual (1):\n  E4  d@x.io  role \"Super Admin\"  (manual account, inactive)\n"
            ),
            "{text}"
        );
        // With the rule that matches it, said as such (not as the rule that granted it).
        let mut matched = r.clone();
        matched.changes.last_mut().unwrap().rule_id = Some(RuleId(2));
        matched.changes.last_mut().unwrap().rule = Some("IT staff".into());
        let text = matched.to_text();
        assert!(
            text.contains(
                "  E4  d@x.io  role \"Super Admin\"  (manual account, inactive)  matches rule 2 \"IT staff\"\n"
            ),
            "{text}"
        );
    }

    /// Changes that share their names (as a plan's do) each get the rest of their line from
    /// their own action, rule and previous state, and their own ID and email.
    #[test]
    fn changes_sharing_names_each_have_their_own_line() {
        use std::sync::Arc;
        let (rule, role, was): (Arc<str>, Arc<str>, Arc<str>) =
            ("Ops".into(), "IT Admin".into(), "HR Admin".into());
        let change = |id: &str, action, rule_id, previous_status| Change {
            employee_id: id.into(),
            email: format!("{id}@x.io").into(),
            action,
            rule_id,
            rule: Some(rule.clone()),
            role: role.clone(),
            previous_role: Some(was.clone()),
            previous_status,
        };
        let mut r = sample();
        r.changes = vec![
            change(
                "E1",
                Action::Reassigned,
                Some(RuleId(2)),
                Some(Status::Inactive),
            ),
            change(
                "E2",
                Action::Reassigned,
                Some(RuleId(2)),
                Some(Status::Active),
            ),
            change(
                "E3",
                Action::Reassigned,
                Some(RuleId(3)),
                Some(Status::Active),
            ),
            change(
                "E4",
                Action::Deactivated,
                Some(RuleId(2)),
                Some(Status::Active),
            ),
            change("E5", Action::Reassigned, None, Some(Status::Active)),
            change(
                "E6",
                Action::Reassigned,
                Some(RuleId(2)),
                Some(Status::Inactive),
            ),
        ];
        let text = r.to_text();
        let tail = "  (was role \"HR Admin\")";
        let expected = format!(
            "\nreassigned (5):\n\
             \x20 E1  E1@x.io  role \"IT Admin\"  rule 2 \"Ops\"{tail}  (was inactive)\n\
             \x20 E2  E2@x.io  role \"IT Admin\"  rule 2 \"Ops\"{tail}\n\
             \x20 E3  E3@x.io  role \"IT Admin\"  rule 3 \"Ops\"{tail}\n\
             \x20 E5  E5@x.io  role \"IT Admin\"{tail}\n\
             \x20 E6  E6@x.io  role \"IT Admin\"  rule 2 \"Ops\"{tail}  (was inactive)\n\
             \ndeactivated (1):\n\
             \x20 E4  E4@x.io  role \"IT Admin\"  rule 2 \"Ops\"{tail}  (was active)\n"
        );
        assert!(text.contains(&expected), "{text}\nwanted:\n{expected}");
    }
}
