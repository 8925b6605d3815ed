//! Rules, accounts and reports as the CLI prints them: one text line or block, and JSON.

use super::{Output, Response, exit};
use crate::core::accounts::{Account, Origin, Status};
use crate::core::model::escape_controls;
use crate::core::report::{Report, ReportStatus};
use crate::core::rules::{Rule, RuleId};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// The exit code of a report: 0 applied or dry run, 1 rejected, 3 held.
pub fn report_exit(report: &Report) -> u8 {
    match report.status {
        ReportStatus::Applied | ReportStatus::DryRun => exit::OK,
        ReportStatus::Rejected => exit::NO,
        ReportStatus::Held => exit::REFUSED,
    }
}

pub fn report_response(report: &Report, output: Output) -> Response {
    Response {
        exit: report_exit(report),
        json: match output.wants_json() {
            true => serde_json::to_value(report).expect("reports serialize"),
            false => Value::Null,
        },
        text: match output.wants_text() {
            true => report.to_text(),
            false => String::new(),
        },
    }
}

pub use crate::core::model::quoted as quoted_name;

pub fn rule_line(r: &Rule) -> String {
    let conds: Vec<String> = r
        .conditions
        .iter()
        .map(|c| escape_controls(&c.to_string()).into_owned())
        .collect();
    format!(
        "{:>3}  {:<8}  {} -> {}  when {}",
        r.id,
        if r.enabled { "enabled" } else { "disabled" },
        quoted_name(&r.name),
        r.role,
        conds.join(" and ")
    )
}

pub fn rule_text(r: &Rule) -> String {
    let mut t = format!(
        "rule {}: {}\n  role:       {}\n  enabled:    {}\n  created:    {} by {}\n  conditions:\n",
        r.id,
        quoted_name(&r.name),
        r.role,
        r.enabled,
        r.created_at,
        escape_controls(&r.created_by)
    );
    for c in &r.conditions {
        let _ = writeln!(t, "    {}", escape_controls(&c.to_string()));
    }
    t
}

pub fn rule_json(r: &Rule) -> Value {
    json!({
        "id": r.id, "name": r.name, "role": r.role,
        "conditions": r.conditions.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "enabled": r.enabled, "created_at": r.created_at, "created_by": r.created_by,
    })
}

pub fn account_json(a: &Account, rules: &[Rule]) -> Value {
    let mut v = serde_json::to_value(a).expect("accounts serialize");
    v["rule"] = json!(
        a.rule_id
            .and_then(|id| rules.iter().find(|r| r.id == id))
            .map(|r| r.name.clone())
    );
    v
}

pub fn account_line(a: &Account, rules: &[Rule]) -> String {
    let mut line = String::new();
    push_account_line(&mut line, &AccountRow::of(a), rules);
    line
}

/// The fields of an account that `admins list` shows (no history), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountRow<'a> {
    /// See [`Account`].
    pub employee_id: &'a str,
    /// See [`Account`].
    pub email: &'a str,
    /// See [`Account`].
    pub role: &'a str,
    /// See [`Account`].
    pub status: Status,
    /// See [`Account`].
    pub origin: Origin,
    /// See [`Account`].
    pub rule_id: Option<RuleId>,
    /// See [`Account`].
    pub created_at: &'a str,
    /// See [`Account`].
    pub updated_at: &'a str,
}

impl<'a> AccountRow<'a> {
    /// The row of an account.
    pub fn of(a: &'a Account) -> AccountRow<'a> {
        AccountRow {
            employee_id: &a.employee_id,
            email: &a.email,
            role: &a.role,
            status: a.status,
            origin: a.origin,
            rule_id: a.rule_id,
            created_at: &a.created_at,
            updated_at: &a.updated_at,
        }
    }
}

/// [`account_line`] of a row, appended to `out` (without a newline).
pub fn push_account_line(out: &mut String, a: &AccountRow<'_>, rules: &[Rule]) {
    let _ = write!(
        out,
        "{:<12} {:<32} {:<16} {:<8} {:<6} ",
        escape_controls(a.employee_id),
        escape_controls(a.email),
        a.role,
        a.status,
        a.origin
    );
    match a.rule_id {
        None => out.push('-'),
        Some(id) => match rules.iter().find(|r| r.id == id) {
            Some(r) => {
                let _ = write!(out, "rule {id} \"{}\"", r.name);
            }
            None => {
                let _ = write!(out, "rule {id} (deleted)");
            }
        },
    }
}

pub fn account_text(a: &Account, rules: &[Rule]) -> String {
    let mut t = format!(
        "{}\n  created {}, updated {}\n  history:\n",
        account_line(a, rules),
        a.created_at,
        a.updated_at
    );
    for h in &a.history {
        let _ = writeln!(
            t,
            "    {}  {:<8} {:<16} {}  ({})",
            h.at,
            h.status,
            h.role,
            escape_controls(&h.reason),
            escape_controls(&h.source)
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ID with a line break (a quoted cell) stays on its line of `admins list`.
    #[test]
    fn an_account_line_keeps_a_cells_line_break_escaped() {
        let row = AccountRow {
            employee_id: "E1\nE2",
            email: "a@x.io",
            role: "IT Admin",
            status: Status::Active,
            origin: Origin::Manual,
            rule_id: None,
            created_at: "2026-01-01T00:00:00Z",
            updated_at: "2026-01-01T00:00:00Z",
        };
        let mut line = String::new();
        push_account_line(&mut line, &row, &[]);
        assert!(!line.contains('\n'), "{line:?}");
        assert!(line.starts_with("E1\\nE2 "), "{line:?}");
    }
}
