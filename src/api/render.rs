//! Rules, accounts and reports as the CLI prints them: one text line or block, and JSON.

use super::{Output, Response, exit};
use crate::core::accounts::Account;
use crate::core::report::{Report, ReportStatus};
use crate::core::rules::Rule;
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

pub fn rule_line(r: &Rule) -> String {
    let conds: Vec<String> = r.conditions.iter().map(|c| c.to_string()).collect();
    format!(
        "{:>3}  {:<8}  \"{}\" -> {}  when {}",
        r.id,
        if r.enabled { "enabled" } else { "disabled" },
        r.name,
        r.role,
        conds.join(" and ")
    )
}

pub fn rule_text(r: &Rule) -> String {
    let mut t = format!(
        "rule {}: \"{}\"\n  role:       {}\n  enabled:    {}\n  created:    {} by {}\n  conditions:\n",
        r.id, r.name, r.role, r.enabled, r.created_at, r.created_by
    );
    for c in &r.conditions {
        let _ = writeln!(t, "    {c}");
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
    let rule = a
        .rule_id
        .map(|id| match rules.iter().find(|r| r.id == id) {
            Some(r) => format!("rule {id} \"{}\"", r.name),
            None => format!("rule {id} (deleted)"),
        })
        .unwrap_or_else(|| "-".into());
    format!(
        "{:<12} {:<32} {:<16} {:<8} {:<6} {}",
        a.employee_id, a.email, a.role, a.status, a.origin, rule
    )
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
            h.at, h.status, h.role, h.reason, h.source
        );
    }
    t
}
