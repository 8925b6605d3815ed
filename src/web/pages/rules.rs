//! `/rules`: every rule, and the forms to add, edit, enable, disable and delete them; a
//! rule that conflicts (SPEC §2) comes back with its conflicts, saved only when confirmed.

use super::parts::{badge, csrf, options, post_button, seen_field, time};
use super::{Nav, PageCtx, layout};
use crate::api::seen::{conflicts_version, rule_version};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

/// A rule form sent back to its author: with the engine's refusal (`error`) or the
/// conflicts it found, and the fields as they were typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleForm {
    /// The rule edited, or `None` for a new rule.
    pub id: Option<u64>,
    /// The name typed.
    pub name: String,
    /// The role chosen.
    pub role: String,
    /// The conditions typed, one per line.
    pub when: String,
    /// The `conflicts` array of the engine's answer (`rules add|edit --strict`); `Null` or
    /// empty when there are none. When there are, the form offers "Save anyway", which
    /// posts the same fields with their [`confirmation`].
    pub conflicts: Value,
    /// Why the rule was refused (unknown role, duplicate name, a condition that does not
    /// parse...).
    pub error: Option<String>,
    /// The edited rule's version as the form was drawn ([`crate::api::seen`]), posted again.
    pub seen: String,
    /// Not a form of fields but rule `id`'s Enable button, sent back with the conflicts
    /// it would have: "Enable anyway" posts the button again with their confirmation.
    pub enable: bool,
}

impl RuleForm {
    /// What "Save anyway" posts as `confirm`: [`confirmation`] of the fields shown with the
    /// conflicts, and the conflicts' version, so that only those fields are saved despite
    /// those conflicts (new ones, from a rule or a roster since, are shown first).
    pub fn confirmation(&self) -> String {
        if self.enable {
            return conflicts_version(&self.conflicts);
        }
        let fields = confirmation(self.id, &self.name, &self.role, &self.when);
        format!("{fields}.{}", conflicts_version(&self.conflicts))
    }

    fn conflicts(&self) -> Vec<ConflictView> {
        self.conflicts
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| ConflictView::deserialize(c).ok())
            .collect()
    }

    fn action(&self) -> String {
        match self.id {
            Some(id) if self.enable => format!("/rules/{id}/enable"),
            Some(id) => format!("/rules/{id}"),
            None => "/rules".into(),
        }
    }
}

/// One conflict as the engine reports it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConflictView {
    rule_id: u64,
    rule: String,
    role: String,
    /// `None` when the employees were not counted (no roster applied, or a column it lacks).
    employees: Option<u64>,
    employee_ids: Vec<String>,
    winner: Option<u64>,
    message: Option<String>,
}

/// One rule of `rules list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuleView {
    id: u64,
    name: String,
    role: String,
    conditions: Vec<String>,
    enabled: bool,
    created_at: String,
    created_by: String,
}

impl RuleView {
    /// The rule's version as this page shows it ([`crate::api::seen`]).
    fn version(&self) -> String {
        rule_version(&self.name, &self.role, &self.conditions, self.enabled)
    }
}

/// `/rules`: the rules of `rules list`, with the forms when `ctx.can_change`; `form` is a
/// rule sent back with a refusal or conflicts, shown first. `roles` are the configured ones.
pub fn rules(ctx: &PageCtx, rules: &Value, roles: &[String], form: Option<&RuleForm>) -> Markup {
    rules_page(ctx, rules, roles, form, None)
}

/// `/rules?saved=ID`, after rule `saved` (`rules show --json`) was saved or enabled with
/// warnings: they come first, as the CLI prints them (a column the last roster lacks, which
/// rejects every later file while the rule is enabled; conditions that can never all hold).
/// The page had said nothing.
pub fn rules_saved(ctx: &PageCtx, rules: &Value, roles: &[String], saved: &Value) -> Markup {
    rules_page(ctx, rules, roles, None, Some(saved))
}

fn rules_page(
    ctx: &PageCtx,
    rules: &Value,
    roles: &[String],
    form: Option<&RuleForm>,
    saved: Option<&Value>,
) -> Markup {
    let warnings: Vec<&str> = saved
        .and_then(|s| s["warnings"].as_array())
        .map(|w| w.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let list: Vec<RuleView> = rules
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| RuleView::deserialize(r).ok())
        .collect();
    let body = html! {
        @if let (Some(saved), false) = (saved, warnings.is_empty()) {
            div.notice.warn role="alert" #saved {
                p {
                    "Rule " (saved["id"]) " “" strong { (saved["name"].as_str().unwrap_or_default()) } "” is saved ("
                    @if saved["enabled"] == true { "enabled" } @else { "disabled" }
                    "), with warnings:"
                }
                ul { @for w in &warnings { li { (w) } } }
            }
        }
        @if let Some(form) = form { (returned_form(ctx, roles, form)) }
        p.hint {
            "A rule grants its role to every employee its conditions all hold for. Where two rules match one employee, the one with the lowest ID gives a new account; an account stays with the rule that gave it while that rule matches. Changes take effect at the next sync."
        }
        @if list.is_empty() { p.summary { "No rules yet." } } @else { (table(ctx, &list)) }
        @if ctx.can_change { @for r in &list { (edit_panel(ctx, roles, r)) } }
        @if ctx.can_change && form.is_none_or(|f| f.id.is_some()) {
            section.panel #add-rule {
                h2 { "Add a rule" }
                form.stacked method="post" action="/rules" {
                    (csrf(ctx))
                    (fields(roles, "", "", ""))
                    div.actions { button type="submit" { "Add rule" } }
                }
            }
        }
        (syntax_help())
    };
    layout(ctx, "Rules", Some(Nav::Rules), body)
}

fn table(ctx: &PageCtx, list: &[RuleView]) -> Markup {
    html! {
        div.table-wrap {
            table.stack.rules {
                thead { tr {
                    th { "ID" } th { "Name" } th { "Role" } th { "Conditions" } th { "Status" } th { "Created" }
                    @if ctx.can_change { th { "Change" } }
                } }
                tbody {
                    @for r in list {
                        tr #{ "rule-" (r.id) } {
                            td data-label="ID" { (r.id) }
                            td data-label="Name" { strong { (r.name) } }
                            td data-label="Role" { (r.role) }
                            td data-label="Conditions" {
                                ul.conditions { @for c in &r.conditions { li { code { (c) } } } }
                            }
                            td data-label="Status" { (badge(if r.enabled { "enabled" } else { "disabled" })) }
                            td data-label="Created" { div { (time(&r.created_at)) br; span.muted { "by " (r.created_by) } } }
                            @if ctx.can_change { td data-label="Change" { (rule_actions(ctx, r)) } }
                        }
                    }
                }
            }
        }
    }
}

/// Edit (a link to the rule's edit panel), enable or disable, delete.
fn rule_actions(ctx: &PageCtx, r: &RuleView) -> Markup {
    let base = format!("/rules/{}", r.id);
    let seen = r.version();
    html! {
        div.row-forms {
            a.button.secondary href={ "#edit-" (r.id) } { "Edit" }
            @if r.enabled {
                (post_button(ctx, &format!("{base}/disable"), "Disable", "secondary", &seen))
            } @else {
                (post_button(ctx, &format!("{base}/enable"), "Enable", "secondary", &seen))
            }
            (post_button(ctx, &format!("{base}/delete"), "Delete", "danger", &seen))
        }
    }
}

/// A rule's edit form, shown (by CSS, without script) when the URL's fragment names it.
fn edit_panel(ctx: &PageCtx, roles: &[String], r: &RuleView) -> Markup {
    html! {
        section.panel.edit-panel #{ "edit-" (r.id) } {
            h2 { "Edit rule " (r.id) ": " (r.name) }
            form.stacked method="post" action={ "/rules/" (r.id) } {
                (csrf(ctx))
                (seen_field(&r.version()))
                (fields(roles, &r.name, &r.role, &r.conditions.join("\n")))
                div.actions {
                    button type="submit" { "Save" }
                    a.button.secondary href={ "#rule-" (r.id) } { "Cancel" }
                }
            }
        }
    }
}

/// The name, role and conditions inputs of a rule form.
fn fields(roles: &[String], name: &str, role: &str, when: &str) -> Markup {
    html! {
        label { span { "Name" } input type="text" name="name" value=(name) required; }
        label { span { "Role" } select name="role" required { (options(roles, role)) } }
        label {
            span { "Conditions, one per line (all must hold)" }
            textarea name="when" rows="3" required placeholder="department = Finance\nis_manager = true" { (when) }
        }
    }
}

/// The confirmation of a rule's fields as posted (`id`: the rule edited): the SHA-256 of
/// the rule edited, its name, role and conditions (each trimmed, one per line). A confirmed
/// form whose fields were changed after its conflicts were shown no longer matches, and is
/// checked for conflicts again instead of saved (SPEC §11: saved only when confirmed).
pub fn confirmation(id: Option<u64>, name: &str, role: &str, when: &str) -> String {
    let conditions = condition_lines(when);
    let text = format!(
        "{}\n{}\n{}\n{}",
        id.map_or(String::new(), |id| id.to_string()),
        name.trim(),
        role.trim(),
        conditions.join("\n")
    );
    crate::util::sha256_hex(text.as_bytes())
}

/// The conditions of a form's text: one per line, each trimmed, blank lines left out. A
/// line break inside double quotes belongs to the value (the form shows a value holding
/// one quoted over two lines), and a browser posts every line break as CR LF, so CR LF is
/// read as LF throughout: a value with a line break had been split into two conditions
/// when its rule was saved from the page, widening it.
pub fn condition_lines(when: &str) -> Vec<String> {
    let when = when.replace("\r\n", "\n");
    let mut lines = Vec::new();
    let (mut line, mut quoted) = (String::new(), false);
    for c in when.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' if !quoted => {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            _ => {}
        }
        line.push(c);
    }
    lines.push(line);
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A form sent back: the refusal or the conflicts, and the fields to correct or confirm.
fn returned_form(ctx: &PageCtx, roles: &[String], form: &RuleForm) -> Markup {
    let conflicts = form.conflicts();
    let heading = match form.id {
        Some(id) if form.enable => format!("Enable rule {id}?"),
        Some(id) => format!("Save rule {id}?"),
        None => "Add this rule?".into(),
    };
    let (done, anyway) = match form.enable {
        true => ("Nothing was enabled yet.", "Enable anyway"),
        false => ("Nothing was saved yet.", "Save anyway"),
    };
    html! {
        section.panel.attention #rule-form {
            h2 { (heading) }
            @if let Some(error) = &form.error {
                div.notice.error role="alert" { p { (error) } }
            }
            @if !conflicts.is_empty() {
                div.notice.warn role="alert" {
                    p { "This rule can match the same employees as rules that grant another role:" }
                    ul { @for c in &conflicts { li { (conflict(form.id, c)) } } }
                    p { "Where both match, the rule with the lowest ID gives a new account; an account stays with the rule that gave it while that rule matches. " (done) }
                }
            }
            @if ctx.can_change {
                form.stacked method="post" action=(form.action()) {
                    (csrf(ctx))
                    @if !form.seen.is_empty() { (seen_field(&form.seen)) }
                    @if !form.enable { (fields(roles, &form.name, &form.role, &form.when)) }
                    @if !conflicts.is_empty() { input type="hidden" name="confirm" value=(form.confirmation()); }
                    div.actions {
                        button type="submit" { @if conflicts.is_empty() { "Save" } @else { (anyway) } }
                        a.button.secondary href="/rules" { "Cancel" }
                    }
                }
            }
        }
    }
}

fn conflict(id: Option<u64>, c: &ConflictView) -> Markup {
    if let Some(message) = &c.message {
        return html! { (message) };
    }
    let this = id.map_or("this rule".to_string(), |id| format!("rule {id}"));
    let winner = match c.winner {
        Some(w) if w == c.rule_id => format!("rule {w}"),
        _ => this,
    };
    html! {
        "rule " (c.rule_id) " “" strong { (c.rule) } "” (" (c.role) "): "
        @match c.employees {
            Some(n) => {
                (n) " employees of the last applied roster match both"
                @if !c.employee_ids.is_empty() { " (" (c.employee_ids.join(", ")) ")" }
            }
            None => "both can match one employee (not counted: no applied roster has the columns to count them)",
        }
        "; " (winner) " wins."
    }
}

fn syntax_help() -> Markup {
    html! {
        details.help {
            summary { "How to write conditions" }
            p { "One condition per line, " code { "FIELD OP VALUE" } ", compared case-insensitively:" }
            ul {
                li { code { "department = Finance" } ", " code { "location != Singapore" } }
                li { code { "department in (Legal, HR)" } ", " code { "location not in (Singapore, \"São Paulo\")" } }
                li { code { "is_manager = true" } " (derived from the roster's manager IDs)" }
                li { "A value with a comma or parenthesis goes in double quotes: " code { "job_title in (\"VP, Finance\", CFO)" } }
            }
        }
    }
}
