//! `/files`: the files received and their status, held files to approve or reject;
//! `/files/{id}`: one file's report.

use super::parts::{badge, post_button, time};
use super::{Nav, PageCtx, layout};
use crate::api::seen::held_version;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One file of `files list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileRow {
    id: u64,
    name: String,
    stored_as: String,
    status: String,
    received_at: String,
    summary: String,
    /// A held file's plan as the engine read it for this list ([`crate::api::seen`]).
    seen: String,
}

/// Approve and reject buttons of a held file (`seen`: the version of the plan the page
/// shows, its report or the list's summary, see [`crate::api::seen`]): approving applies
/// exactly that plan, not one re-planned since.
fn decide_forms(ctx: &PageCtx, id: u64, seen: &str) -> Markup {
    html! {
        div.row-forms {
            (post_button(ctx, &format!("/files/{id}/approve"), "Approve", "primary", seen))
            (post_button(ctx, &format!("/files/{id}/reject"), "Reject", "danger", seen))
        }
    }
}

/// `/files`: the files of `files list`, newest first; held ones with approve and reject
/// when `ctx.can_change`.
pub fn files(ctx: &PageCtx, files: &Value) -> Markup {
    let mut list: Vec<FileRow> = files
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| FileRow::deserialize(f).ok())
        .collect();
    list.reverse();
    let held: Vec<&FileRow> = list.iter().filter(|f| f.status == "held").collect();
    let body = html! {
        @for f in &held {
            div.notice.warn {
                p {
                    "File " a href={ "/files/" (f.id) } { (f.id) } " (" (f.name) ") is held: "
                    a href={ "/files/" (f.id) } { "read why in its report" } " before you approve it. "
                    "Later files wait until it is approved or rejected."
                }
            }
        }
        @if list.is_empty() { p.summary { "No files received yet." } } @else {
            div.table-wrap {
                table.stack {
                    thead { tr { th { "ID" } th { "File" } th { "Status" } th { "Received" } th { "Summary" } @if ctx.can_change && !held.is_empty() { th { "Decide" } } } }
                    tbody {
                        @for f in &list {
                            tr {
                                td data-label="ID" { a href={ "/files/" (f.id) } { (f.id) } }
                                td data-label="File" { div { (f.name) @if !f.stored_as.is_empty() && f.stored_as != f.name { br; span.muted.small { (f.stored_as) } } } }
                                td data-label="Status" { (badge(&f.status)) }
                                td data-label="Received" { (time(&f.received_at)) }
                                td data-label="Summary" { span.small { (f.summary) } }
                                @if ctx.can_change && !held.is_empty() {
                                    td data-label="Decide" {
                                        @if f.status == "held" && !f.seen.is_empty() { (decide_forms(ctx, f.id, &f.seen)) }
                                        @else if f.status == "held" { a.button href={ "/files/" (f.id) } { "Review" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, "Files", Some(Nav::Files), body)
}

/// A report's finding (error or warning).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Finding {
    line: Option<u64>,
    column: Option<String>,
    message: String,
}

/// A report's decision on a held file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Decision {
    decision: String,
    by: String,
    at: String,
}

/// The report of `files show` (SPEC §6), the parts the page shows above the text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReportView {
    file: String,
    stored_as: Option<String>,
    sha256: String,
    received_at: String,
    processed_at: String,
    status: String,
    rows: u64,
    counts: BTreeMap<String, u64>,
    errors: Vec<Finding>,
    more_errors: u64,
    warnings: Vec<Finding>,
    held_because: Vec<String>,
    repeats: Option<String>,
    decision: Option<Decision>,
}

impl ReportView {
    /// Every warning, those a line stands for past the ones listed too (as `report.txt`
    /// counts them: the page had said 1001 of 1,100).
    fn warnings_total(&self) -> usize {
        (self.warnings.iter())
            .map(|f| crate::core::model::stands_for(f.line, f.column.as_deref(), &f.message))
            .sum()
    }
}

/// The order of SPEC §4's actions in the counts table.
const ACTIONS: [&str; 7] = [
    "created",
    "reassigned",
    "reactivated",
    "role_changed",
    "deactivated",
    "skipped_manual",
    "unchanged",
];

/// `/files/{id}`: file `id`'s report of `files show`, its counts, its text report, links
/// to download both reports, and approve/reject while it is held and `ctx.can_change`.
pub fn file(ctx: &PageCtx, id: u64, report: &Value, report_text: &str) -> Markup {
    let r = ReportView::deserialize(report).unwrap_or_default();
    let title = format!("File {id}: {}", r.file);
    let body = html! {
        @if r.status == "held" {
            div.notice.warn {
                p { "Held: nothing was applied. Later files wait until this one is decided." }
                @if !r.held_because.is_empty() { ul { @for why in &r.held_because { li { (why) } } } }
                @if ctx.can_change { (decide_forms(ctx, id, &held_version(&r.held_because, &r.counts))) }
            }
        }
        dl.fields {
            dt { "Status" } dd { (badge(&r.status)) }
            @if let Some(stored) = &r.stored_as { dt { "Stored as" } dd { code { (stored) } } }
            dt { "Received" } dd { (time(&r.received_at)) }
            dt { "Processed" } dd { (time(&r.processed_at)) }
            dt { "Rows" } dd { (r.rows) }
            dt { "SHA-256" } dd { code.hash { (r.sha256) } }
            @if let Some(d) = &r.decision { dt { "Decision" } dd { (d.decision) " by " (d.by) " at " (time(&d.at)) } }
            @if let Some(rep) = &r.repeats { dt { "Repeats" } dd { (rep) } }
            dt { "Errors" } dd { (r.errors.len() as u64 + r.more_errors) }
            dt { "Warnings" } dd { (r.warnings_total()) }
        }
        @if !r.counts.is_empty() { (counts(&r.counts)) }
        @if !r.errors.is_empty() { (findings("Errors", &r.errors, r.more_errors)) }
        p.downloads {
            "Download the report: "
            a href={ "/files/" (id) "/report.json" } download { "JSON" } " · "
            a href={ "/files/" (id) "/report.txt" } download { "text" }
        }
        h2 { "Report" }
        pre.report { (report_text) }
    };
    layout(ctx, &title, Some(Nav::Files), body)
}

fn counts(counts: &BTreeMap<String, u64>) -> Markup {
    let known = ACTIONS
        .iter()
        .filter_map(|a| counts.get(*a).map(|n| (*a, *n)));
    let others = counts
        .iter()
        .filter(|(a, _)| !ACTIONS.contains(&a.as_str()))
        .map(|(a, n)| (a.as_str(), *n));
    html! {
        h2 { "Counts" }
        ul.counts {
            @for (action, n) in known.chain(others) {
                li.zero[n == 0] { span.n { (n) } " " (action.replace('_', " ")) }
            }
        }
    }
}

fn findings(heading: &str, list: &[Finding], more: u64) -> Markup {
    html! {
        h2 { (heading) }
        div.table-wrap {
            table.stack {
                thead { tr { th { "Line" } th { "Column" } th { "Message" } } }
                tbody {
                    @for f in list {
                        tr {
                            td data-label="Line" { @if let Some(l) = f.line { (l) } }
                            td data-label="Column" { @if let Some(c) = &f.column { (c) } }
                            td data-label="Message" { (f.message) }
                        }
                    }
                }
            }
        }
        @if more > 0 { p.muted { "… and " (more) " more." } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page counts every warning, as `report.txt` does: a line standing for more not
    /// listed counts as those (it had said 1001 of 1,100).
    #[test]
    fn the_warnings_count_includes_those_not_listed() {
        let report = serde_json::json!({
            "warnings": [
                {"line": 2, "column": "manager_id", "message": "manager \"X\" is not in this file"},
                {"line": null, "column": null, "message": "99 more employees name a manager who is not in this file (not listed)"},
            ]
        });
        let r = ReportView::deserialize(&report).unwrap();
        assert_eq!(r.warnings_total(), 100);
    }
}
