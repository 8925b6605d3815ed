//! Every command of SPEC §7 as a request and its execution against the pipeline.
//!
//! The CLI runs requests here directly when no daemon runs; the daemon runs the same
//! requests for callers of the control socket. Each answer carries its JSON form, its
//! text form and its exit code, so both paths print the same thing.

use crate::core::accounts::{Account, Origin, Status};
use crate::core::columns::{fold_value, is_well_formed_email};
use crate::core::report::{Report, ReportStatus};
use crate::core::rules::{self, CompiledRule, Condition, Rule, RuleId};
use crate::pipeline::{Blocked, Pipeline};
use crate::store::{AuditNote, FileStatus, Store};
use crate::util::now_rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Exit codes of SPEC §7.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A negative answer (e.g. `auth check`, a rejected file).
    pub const NO: u8 = 1;
    /// Usage or config error.
    pub const USAGE: u8 = 2;
    /// Refused by a rule of the spec.
    pub const REFUSED: u8 = 3;
    /// Daemon unreachable.
    pub const UNREACHABLE: u8 = 4;
}

/// One command, as the CLI parsed it (and as it travels over the control socket).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Process `inbox/<name>` (files waiting before it go first).
    Process {
        /// The name in inbox/.
        name: String,
    },
    /// Re-evaluate the last applied roster.
    Sync {
        /// Apply even over the safety limits.
        force: bool,
    },
    /// `rules list`
    RulesList,
    /// `rules show ID`
    RulesShow {
        /// Rule id.
        id: u64,
    },
    /// `rules add`
    RulesAdd {
        /// Unique name.
        name: String,
        /// A configured role.
        role: String,
        /// Conditions in the `--when` syntax.
        when: Vec<String>,
        /// Refuse on conflicts.
        strict: bool,
    },
    /// `rules edit ID`
    RulesEdit {
        /// Rule id.
        id: u64,
        /// New name.
        name: Option<String>,
        /// New role.
        role: Option<String>,
        /// Replaces all conditions when non-empty.
        when: Vec<String>,
        /// Refuse on conflicts.
        strict: bool,
    },
    /// `rules delete ID`
    RulesDelete {
        /// Rule id.
        id: u64,
    },
    /// `rules enable ID` / `rules disable ID`
    RulesEnable {
        /// Rule id.
        id: u64,
        /// Enable (true) or disable.
        enabled: bool,
    },
    /// `rules check`
    RulesCheck,
    /// `admins list`
    AdminsList {
        /// Only this status.
        status: Option<String>,
        /// Only this origin.
        origin: Option<String>,
        /// Only accounts of this rule.
        rule: Option<u64>,
    },
    /// `admins show ID`
    AdminsShow {
        /// Employee id.
        id: String,
    },
    /// `admins add`
    AdminsAdd {
        /// Employee id.
        employee_id: String,
        /// Email.
        email: String,
        /// Role.
        role: String,
    },
    /// `admins set ID`
    AdminsSet {
        /// Employee id.
        id: String,
        /// New role.
        role: Option<String>,
        /// New status.
        status: Option<String>,
    },
    /// `admins remove ID`
    AdminsRemove {
        /// Employee id.
        id: String,
    },
    /// `files list`
    FilesList,
    /// `files show ID`
    FilesShow {
        /// File id.
        id: u64,
    },
    /// `files approve ID` / `files reject ID`
    FilesDecide {
        /// File id.
        id: u64,
        /// Approve (true) or reject.
        approve: bool,
    },
    /// `status`
    Status,
    /// `auth check EMAIL`
    AuthCheck {
        /// The SSO login.
        email: String,
    },
    /// `backup FILE`
    Backup {
        /// Where to write the backup (absolute; written by whoever owns the store).
        path: String,
    },
    /// `audit`
    Audit {
        /// Entries at or after this time (RFC 3339).
        since: Option<String>,
    },
}

impl Request {
    /// Whether the request changes state (and so needs an org admin).
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Request::Process { .. }
                | Request::Sync { .. }
                | Request::RulesAdd { .. }
                | Request::RulesEdit { .. }
                | Request::RulesDelete { .. }
                | Request::RulesEnable { .. }
                | Request::AdminsAdd { .. }
                | Request::AdminsSet { .. }
                | Request::AdminsRemove { .. }
                | Request::FilesDecide { .. }
                | Request::Backup { .. }
        )
    }

    /// Whether the request provisions (and so needs `[sso] enabled`).
    pub fn provisions(&self) -> bool {
        matches!(
            self,
            Request::Process { .. }
                | Request::Sync { .. }
                | Request::FilesDecide { approve: true, .. }
        )
    }
}

/// Which rendering of an answer the asker prints. Both are cheap for most answers; a
/// report of a million changes is not, so it is rendered only as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// `json` and `text`.
    #[default]
    Both,
    /// `json` only (`--json`); `text` may be empty.
    Json,
    /// `text` only; `json` may be null.
    Text,
}

impl Output {
    /// Whether the `json` form is to be built.
    fn wants_json(self) -> bool {
        self != Output::Text
    }

    /// Whether the `text` form is to be built.
    fn wants_text(self) -> bool {
        self != Output::Json
    }
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Exit code.
    pub exit: u8,
    /// The `--json` output.
    pub json: Value,
    /// The human output (stdout when exit is 0 or 1, else stderr).
    pub text: String,
}

impl Response {
    fn ok(json: Value, text: String) -> Response {
        Response {
            exit: exit::OK,
            json,
            text,
        }
    }

    /// A failure with an exit code and a message.
    pub fn fail(exit: u8, message: impl Into<String>) -> Response {
        let message = message.into();
        Response {
            exit,
            json: json!({ "error": message }),
            text: message,
        }
    }
}

/// The refusal of a change to a caller who is not an org admin.
pub fn refusal(caller: &str) -> Response {
    Response::fail(
        exit::REFUSED,
        format!(
            "refused: Unix user \"{caller}\" may not make changes; an administrator must add it to control.org_admins in the config"
        ),
    )
}

/// The refusal a request meets before it runs: changes need an org admin, provisioning needs SSO.
pub fn precheck<S: Store>(p: &Pipeline<S>, req: &Request, caller: &str) -> Option<Response> {
    if req.is_change() && !p.cfg.is_org_admin(caller) {
        return Some(refusal(caller));
    }
    if req.provisions() && !p.cfg.sso.enabled {
        return Some(Response::fail(
            exit::USAGE,
            "refused: [sso] enabled = true is not set. autoprov provisions admins who sign in through SSO only; enable SSO in the config first",
        ));
    }
    None
}

/// Runs one request for the Unix user `caller`.
pub fn execute<S: Store>(p: &Pipeline<S>, req: Request, caller: &str, output: Output) -> Response {
    if let Some(refusal) = precheck(p, &req, caller) {
        return refusal;
    }
    match run(p, req, caller, output) {
        Ok(r) => r,
        Err(e) => match e.downcast_ref::<Blocked>() {
            Some(b) => Response::fail(exit::REFUSED, b.to_string()),
            None => Response::fail(exit::USAGE, format!("error: {e:#}")),
        },
    }
}

fn run<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &str,
    output: Output,
) -> anyhow::Result<Response> {
    Ok(match req {
        Request::Process { name } => process(p, &name, output)?,
        Request::Sync { force } => report_response(&p.sync(caller, force)?, output),
        Request::RulesList => {
            let rules = p.store.rules()?;
            let mut text = String::new();
            for r in &rules {
                let _ = writeln!(text, "{}", rule_line(r));
            }
            if rules.is_empty() {
                text.push_str("no rules yet: add one with `autoprov rules add`\n");
            }
            Response::ok(json!(rules.iter().map(rule_json).collect::<Vec<_>>()), text)
        }
        Request::RulesShow { id } => match p.store.rule(RuleId(id))? {
            Some(r) => Response::ok(rule_json(&r), rule_text(&r)),
            None => no_rule(id),
        },
        Request::RulesAdd {
            name,
            role,
            when,
            strict,
        } => rules_save(p, caller, None, Some(name), Some(role), when, strict)?,
        Request::RulesEdit {
            id,
            name,
            role,
            when,
            strict,
        } => rules_save(p, caller, Some(id), name, role, when, strict)?,
        Request::RulesDelete { id } => {
            let Some(rule) = p.store.rule(RuleId(id))? else {
                return Ok(no_rule(id));
            };
            p.store.delete_rule(
                rule.id,
                note(
                    caller,
                    "rules delete",
                    format!("deleted {}", rule_line(&rule)),
                ),
            )?;
            Response::ok(
                rule_json(&rule),
                format!(
                    "deleted rule {id}; its accounts move to the next matching rule or are deactivated at the next sync\n"
                ),
            )
        }
        Request::RulesEnable { id, enabled } => {
            let Some(mut rule) = p.store.rule(RuleId(id))? else {
                return Ok(no_rule(id));
            };
            rule.enabled = enabled;
            let verb = if enabled { "enable" } else { "disable" };
            p.store.put_rule(
                &rule,
                note(caller, &format!("rules {verb}"), rule_line(&rule)),
            )?;
            Response::ok(
                rule_json(&rule),
                format!("rule {id} {verb}d; takes effect at the next sync\n"),
            )
        }
        Request::RulesCheck => rules_check(p)?,
        Request::AdminsList {
            status,
            origin,
            rule,
        } => admins_list(p, status, origin, rule, output)?,
        Request::AdminsShow { id } => match p.store.account(&id)? {
            Some(a) => {
                let rules = p.store.rules()?;
                Response::ok(account_json(&a, &rules), account_text(&a, &rules))
            }
            None => Response::fail(exit::NO, format!("no account for employee {id}")),
        },
        Request::AdminsAdd {
            employee_id,
            email,
            role,
        } => admins_add(p, caller, employee_id, email, role)?,
        Request::AdminsSet { id, role, status } => admins_set(p, caller, &id, role, status)?,
        Request::AdminsRemove { id } => {
            let account = match manual_account(p, &id)? {
                Ok(a) => a,
                Err(r) => return Ok(r),
            };
            p.store.put_account(
                &account,
                true,
                note(
                    caller,
                    "admins remove",
                    format!(
                        "removed manual account {id} ({}, {})",
                        account.email, account.role
                    ),
                ),
            )?;
            Response::ok(
                json!({"removed": id}),
                format!("removed manual account {id}\n"),
            )
        }
        Request::FilesList => {
            let files = p.store.files()?;
            let list: Vec<Value> = files
                .iter()
                .map(|f| {
                    json!({
                        "id": f.id, "name": f.name, "stored_as": f.stored_as,
                        "status": f.status.as_str(), "received_at": f.received_at,
                        "processed_at": f.processed_at, "sha256": f.sha256, "size": f.size,
                        "report": p.report_path(f), "summary": f.summary,
                    })
                })
                .collect();
            let mut text = String::new();
            for f in &files {
                let _ = writeln!(
                    text,
                    "{:>4}  {:<8}  {}  {}  ({})",
                    f.id,
                    f.status.as_str(),
                    f.received_at,
                    f.stored_as,
                    f.summary
                );
            }
            if files.is_empty() {
                text.push_str("no files processed yet\n");
            }
            Response::ok(json!(list), text)
        }
        Request::FilesShow { id } => {
            let Some(f) = p.store.file(id)? else {
                return Ok(Response::fail(
                    exit::NO,
                    format!("no file {id}: see `autoprov files list`"),
                ));
            };
            let path = p.report_path(&f);
            let report: Report = serde_json::from_slice(&std::fs::read(&path)?)?;
            let mut text = format!("file {id}, report {}\n", path.display());
            text.push_str(&report.to_text());
            Response::ok(serde_json::to_value(&report)?, text)
        }
        Request::FilesDecide { id, approve } => {
            if approve {
                report_response(&p.approve(id, caller)?, output)
            } else {
                // The rejection was asked for and done: a success, not a negative answer.
                Response {
                    exit: exit::OK,
                    ..report_response(&p.reject(id, caller)?, output)
                }
            }
        }
        Request::Status => status(p)?,
        Request::Backup { path } => {
            let (n, path) = crate::backup::write(&p.store, std::path::Path::new(&path))?;
            p.store.append_audit(note(
                caller,
                "backup",
                format!("wrote {n} records to {}", path.display()),
            ))?;
            Response::ok(
                json!({"backup": path, "records": n}),
                format!("wrote {n} records to {}\n", path.display()),
            )
        }
        Request::AuthCheck { email } => auth_check(p, &email)?,
        Request::Audit { since } => {
            let entries = p.store.audit(since.as_deref())?;
            let mut text = String::new();
            for e in &entries {
                let _ = writeln!(
                    text,
                    "{}  {:<10} {:<16} {}",
                    e.note.at, e.note.user, e.note.action, e.note.detail
                );
            }
            Response::ok(serde_json::to_value(&entries)?, text)
        }
    })
}

/// The exit code of a report: 0 applied or dry run, 1 rejected, 3 held.
pub fn report_exit(report: &Report) -> u8 {
    match report.status {
        ReportStatus::Applied | ReportStatus::DryRun => exit::OK,
        ReportStatus::Rejected => exit::NO,
        ReportStatus::Held => exit::REFUSED,
    }
}

fn report_response(report: &Report, output: Output) -> Response {
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

/// `process` of a file handed over by the caller (CLI or control socket): the refusals come
/// before anything is filed, then the bytes go into inbox/ and through the pipeline.
pub fn process_upload<S: Store>(
    p: &Pipeline<S>,
    original_name: &str,
    bytes: Vec<u8>,
    dry_run: bool,
    caller: &str,
    output: Output,
) -> Response {
    let probe = Request::Process {
        name: String::new(),
    };
    if let Some(refusal) = precheck(p, &probe, caller) {
        return refusal;
    }
    if let Ok(Some(held)) = p.held() {
        return Response::fail(
            exit::REFUSED,
            format!(
                "refused: file {} ({}) is held; decide it with `autoprov files approve {}` or `reject {}` first",
                held.id, held.stored_as, held.id, held.id
            ),
        );
    }
    let filed = p.receive(original_name, &bytes, dry_run);
    // The pipeline reads the file back from inbox/: not two copies of a large roster at once.
    drop(bytes);
    match filed {
        Ok(name) => execute(p, Request::Process { name }, caller, output),
        Err(e) => Response::fail(exit::USAGE, format!("error: filing the file: {e:#}")),
    }
}

/// Processes the files waiting in inbox/ in order until `name` is done.
fn process<S: Store>(p: &Pipeline<S>, name: &str, output: Output) -> anyhow::Result<Response> {
    if let Some(held) = p.held()? {
        return Err(Blocked::Held {
            id: held.id,
            name: held.stored_as,
        }
        .into());
    }
    for waiting in p.waiting()? {
        if p.stopping() {
            return Ok(Response::fail(
                exit::UNREACHABLE,
                format!(
                    "the daemon is stopping; {name} stays in inbox/ and is processed after it restarts"
                ),
            ));
        }
        let report = p.process(&waiting)?;
        if waiting == name {
            return Ok(report_response(&report, output));
        }
        if report.status == ReportStatus::Held {
            return Ok(Response::fail(
                exit::REFUSED,
                format!(
                    "an earlier file in inbox/, {waiting}, was held and blocks {name}: decide it with `autoprov files approve|reject`"
                ),
            ));
        }
    }
    Ok(Response::fail(
        exit::USAGE,
        format!("{name} is not waiting in inbox/"),
    ))
}

fn note(user: &str, action: &str, detail: String) -> AuditNote {
    AuditNote {
        at: now_rfc3339(),
        user: user.to_string(),
        action: action.to_string(),
        detail,
    }
}

/// The role as configured (matched case-insensitively), or the refusal of an unknown one.
fn configured_role<S: Store>(p: &Pipeline<S>, role: &str) -> Result<String, Response> {
    p.cfg.role(role).map(str::to_string).ok_or_else(|| {
        Response::fail(
            exit::REFUSED,
            format!(
                "refused: role \"{role}\" is not in provisioning.roles ({})",
                p.cfg.provisioning.roles.join(", ")
            ),
        )
    })
}

fn no_rule(id: u64) -> Response {
    Response::fail(exit::NO, format!("no rule {id}: see `autoprov rules list`"))
}

fn rule_line(r: &Rule) -> String {
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

fn rule_text(r: &Rule) -> String {
    let mut t = format!(
        "rule {}: \"{}\"\n  role:       {}\n  enabled:    {}\n  created:    {} by {}\n  conditions:\n",
        r.id, r.name, r.role, r.enabled, r.created_at, r.created_by
    );
    for c in &r.conditions {
        let _ = writeln!(t, "    {c}");
    }
    t
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "id": r.id, "name": r.name, "role": r.role,
        "conditions": r.conditions.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "enabled": r.enabled, "created_at": r.created_at, "created_by": r.created_by,
    })
}

/// `rules add` and `rules edit`: validation, conflict detection, save.
#[allow(clippy::too_many_arguments)]
fn rules_save<S: Store>(
    p: &Pipeline<S>,
    caller: &str,
    id: Option<u64>,
    name: Option<String>,
    role: Option<String>,
    when: Vec<String>,
    strict: bool,
) -> anyhow::Result<Response> {
    let all = p.store.rules()?;
    let mut rule = match id {
        Some(id) => match all.iter().find(|r| r.id == RuleId(id)) {
            Some(r) => r.clone(),
            None => return Ok(no_rule(id)),
        },
        None => Rule {
            id: RuleId(u64::MAX),
            name: String::new(),
            role: String::new(),
            conditions: Vec::new(),
            enabled: true,
            created_at: now_rfc3339(),
            created_by: caller.to_string(),
        },
    };
    if let Some(name) = name {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Ok(Response::fail(
                exit::USAGE,
                "a rule needs a non-empty --name",
            ));
        }
        if let Some(other) = all
            .iter()
            .find(|r| r.id != rule.id && fold_value(&r.name) == fold_value(&name))
        {
            return Ok(Response::fail(
                exit::REFUSED,
                format!(
                    "refused: rule {} is already named \"{}\"; rule names are unique",
                    other.id, other.name
                ),
            ));
        }
        rule.name = name;
    }
    if let Some(role) = role {
        match configured_role(p, &role) {
            Ok(r) => rule.role = r,
            Err(refusal) => return Ok(refusal),
        }
    }
    if !when.is_empty() {
        let mut conditions = Vec::new();
        for text in &when {
            match Condition::parse(text) {
                Ok(c) => conditions.push(c),
                Err(e) => return Ok(Response::fail(exit::USAGE, format!("--when {e}"))),
            }
        }
        rule.conditions = conditions;
    }
    if rule.conditions.is_empty() {
        return Ok(Response::fail(
            exit::USAGE,
            "a rule needs at least one --when condition, e.g. --when \"department = Finance\"",
        ));
    }
    let conflicts = conflicts(p, &rule, &all)?;
    let mut text = String::new();
    for c in &conflicts {
        let _ = writeln!(text, "{}", c["message"].as_str().unwrap_or_default());
    }
    let warnings = missing_fields(p, &rule)?;
    for w in &warnings {
        let _ = writeln!(text, "warning: {w}");
    }
    if strict && !conflicts.is_empty() {
        text.push_str(
            "refused (--strict): the rule conflicts with the rules above; nothing was saved\n",
        );
        return Ok(Response {
            exit: exit::REFUSED,
            json: json!({"error": "conflicts", "conflicts": conflicts}),
            text,
        });
    }
    let action = if id.is_some() {
        "rules edit"
    } else {
        "rules add"
    };
    if id.is_none() {
        rule.id = p.store.next_rule_id()?;
    }
    p.store
        .put_rule(&rule, note(caller, action, rule_line(&rule)))?;
    let verb = if id.is_some() { "saved" } else { "added" };
    let mut out = format!(
        "{verb} rule {}: \"{}\" -> {}; takes effect at the next sync\n",
        rule.id, rule.name, rule.role
    );
    out.push_str(&text.replace("rule new", &format!("rule {}", rule.id)));
    let mut j = rule_json(&rule);
    j["conflicts"] = json!(
        conflicts
            .into_iter()
            .map(|mut c| {
                if c["winner"] == json!(u64::MAX) {
                    c["winner"] = json!(rule.id);
                }
                c.as_object_mut().map(|o| o.remove("message"));
                c
            })
            .collect::<Vec<_>>()
    );
    j["warnings"] = json!(warnings);
    Ok(Response::ok(j, out))
}

/// Conflicts of `rule` with every other enabled rule of a different role.
fn conflicts<S: Store>(p: &Pipeline<S>, rule: &Rule, all: &[Rule]) -> anyhow::Result<Vec<Value>> {
    let columns = p.cfg.columns();
    let others: Vec<&Rule> = all
        .iter()
        .filter(|o| o.id != rule.id && o.enabled && o.role != rule.role)
        .filter(|o| rules::can_overlap(rule, o, &columns))
        .collect();
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let roster = last_roster(
        p,
        &[
            vec![rule.clone()],
            others.iter().map(|r| (*r).clone()).collect(),
        ]
        .concat(),
    )?;
    let this = roster
        .as_ref()
        .and_then(|r| CompiledRule::compile(rule, r, &columns).ok());
    let mut out = Vec::new();
    for other in others {
        let (count, ids) = match (&roster, &this) {
            (Some(r), Some(this)) => match CompiledRule::compile(other, r, &columns) {
                Ok(o) => rules::both_match(r, this, &o),
                Err(_) => (0, Vec::new()),
            },
            _ => (0, Vec::new()),
        };
        let winner = rule.id.min(other.id);
        let label = |id: RuleId| {
            if id == RuleId(u64::MAX) {
                "rule new".to_string()
            } else {
                format!("rule {id}")
            }
        };
        let who = if roster.is_some() {
            format!(
                "{count} employees of the last applied roster match both{}",
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", ids.join(", "))
                }
            )
        } else {
            "no roster applied yet to count matching employees".to_string()
        };
        let message = format!(
            "conflict: {} \"{}\" ({}) and rule {} \"{}\" ({}) can both match one employee; {who}; {} wins by precedence (lowest id)",
            label(rule.id),
            rule.name,
            rule.role,
            other.id,
            other.name,
            other.role,
            label(winner)
        );
        out.push(json!({
            "rule_id": other.id, "rule": other.name, "role": other.role,
            "employees": count, "employee_ids": ids, "winner": winner, "message": message,
        }));
    }
    Ok(out)
}

/// The last applied roster parsed for `rules`, if there is one and it still parses.
fn last_roster<S: Store>(
    p: &Pipeline<S>,
    rules: &[Rule],
) -> anyhow::Result<Option<crate::core::model::Roster>> {
    let Some(entry) = p.store.last_applied()? else {
        return Ok(None);
    };
    let path = p.paths.folder("processed").join(&entry.stored_as);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let enabled: Vec<Rule> = rules
        .iter()
        .map(|r| Rule {
            enabled: true,
            ..r.clone()
        })
        .collect();
    Ok(p.parse(&bytes, &enabled).ok())
}

/// Fields the rule reads that the last applied roster lacks.
fn missing_fields<S: Store>(p: &Pipeline<S>, rule: &Rule) -> anyhow::Result<Vec<String>> {
    let Some(entry) = p.store.last_applied()? else {
        return Ok(Vec::new());
    };
    let path = p.paths.folder("processed").join(&entry.stored_as);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(Vec::new());
    };
    let Ok(roster) = p.parse(&bytes, &[]) else {
        return Ok(Vec::new());
    };
    let columns = p.cfg.columns();
    Ok(rule
        .conditions
        .iter()
        .filter_map(|c| {
            let key = c.field_key(&columns)?;
            (!roster.has_field(&key)).then(|| {
                format!(
                    "the last applied roster has no column for \"{}\"; while this rule is enabled, files without it are rejected",
                    match c {
                        Condition::Field { field, .. } => field.as_str(),
                        Condition::IsManager(_) => "is_manager",
                    }
                )
            })
        })
        .collect())
}

fn rules_check<S: Store>(p: &Pipeline<S>) -> anyhow::Result<Response> {
    let all = p.store.rules()?;
    let mut found = Vec::new();
    let mut text = String::new();
    for rule in all.iter().filter(|r| r.enabled) {
        if p.cfg.role(&rule.role).is_none() {
            let m = format!(
                "rule {} \"{}\": role \"{}\" is no longer in provisioning.roles",
                rule.id, rule.name, rule.role
            );
            let _ = writeln!(text, "{m}");
            found.push(json!({"rule_id": rule.id, "message": m}));
        }
        for w in missing_fields(p, rule)? {
            let m = format!("rule {} \"{}\": {w}", rule.id, rule.name);
            let _ = writeln!(text, "{m}");
            found.push(json!({"rule_id": rule.id, "message": m}));
        }
        let later: Vec<Rule> = all.iter().filter(|o| o.id > rule.id).cloned().collect();
        for c in conflicts(p, rule, &later)? {
            let _ = writeln!(text, "{}", c["message"].as_str().unwrap_or_default());
            found.push(c);
        }
    }
    if found.is_empty() {
        text.push_str("rules check: no conflicts or problems found\n");
    }
    Ok(Response {
        exit: if found.is_empty() { exit::OK } else { exit::NO },
        json: json!({ "problems": found }),
        text,
    })
}

fn account_json(a: &Account, rules: &[Rule]) -> Value {
    let mut v = serde_json::to_value(a).expect("accounts serialize");
    v["rule"] = json!(
        a.rule_id
            .and_then(|id| rules.iter().find(|r| r.id == id))
            .map(|r| r.name.clone())
    );
    v
}

fn account_line(a: &Account, rules: &[Rule]) -> String {
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

fn account_text(a: &Account, rules: &[Rule]) -> String {
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

fn admins_list<S: Store>(
    p: &Pipeline<S>,
    status: Option<String>,
    origin: Option<String>,
    rule: Option<u64>,
    output: Output,
) -> anyhow::Result<Response> {
    let status = match status.as_deref().map(Status::parse) {
        Some(None) => {
            return Ok(Response::fail(
                exit::USAGE,
                "--status takes active or inactive",
            ));
        }
        Some(s) => s,
        None => None,
    };
    let origin = match origin.as_deref().map(Origin::parse) {
        Some(None) => return Ok(Response::fail(exit::USAGE, "--origin takes auto or manual")),
        Some(o) => o,
        None => None,
    };
    let rules = p.store.rules()?;
    // Read in place and copied without history: a listing of a million accounts.
    let mut accounts: Vec<Account> = Vec::new();
    p.store.scan_accounts(&mut |a| {
        if status.is_none_or(|s| a.status == s)
            && origin.is_none_or(|o| a.origin == o)
            && rule.is_none_or(|r| a.rule_id == Some(RuleId(r)))
        {
            accounts.push(a.without_history())
        }
    })?;
    accounts.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
    let mut text = String::new();
    if output.wants_text() {
        for a in &accounts {
            let _ = writeln!(text, "{}", account_line(a, &rules));
        }
        let _ = writeln!(text, "{} accounts", accounts.len());
    }
    let json = match output.wants_json() {
        false => Value::Null,
        true => Value::Array(
            accounts
                .iter()
                .map(|a| {
                    let mut v = account_json(a, &rules);
                    // `admins show ID` has the history.
                    if let Value::Object(fields) = &mut v {
                        fields.remove("history");
                    }
                    v
                })
                .collect(),
        ),
    };
    Ok(Response::ok(json, text))
}

fn admins_add<S: Store>(
    p: &Pipeline<S>,
    caller: &str,
    employee_id: String,
    email: String,
    role: String,
) -> anyhow::Result<Response> {
    let employee_id = employee_id.trim().to_string();
    let email = email.trim().to_string();
    if employee_id.is_empty() {
        return Ok(Response::fail(exit::USAGE, "--employee-id is empty"));
    }
    if !is_well_formed_email(&email) {
        return Ok(Response::fail(
            exit::USAGE,
            format!("--email \"{email}\" is not a well-formed address"),
        ));
    }
    let role = match configured_role(p, &role) {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal),
    };
    if let Some(existing) = p.store.account(&employee_id)? {
        return Ok(Response::fail(
            exit::REFUSED,
            format!(
                "refused: employee {employee_id} already has an {} account ({}, {}); use `admins show {employee_id}`",
                existing.origin, existing.role, existing.status
            ),
        ));
    }
    if let Some(holder) = active_with_email(p, &email)?.first() {
        return Ok(Response::fail(
            exit::REFUSED,
            format!(
                "refused: the email {email} is held by the active {} account of employee {}; an email is one person's SSO identity",
                holder.origin, holder.employee_id
            ),
        ));
    }
    let now = now_rfc3339();
    let mut account = Account {
        employee_id: employee_id.clone(),
        email,
        role: role.to_string(),
        status: Status::Active,
        origin: Origin::Manual,
        rule_id: None,
        created_at: now.clone(),
        updated_at: now.clone(),
        history: Vec::new(),
    };
    account.record(
        &now,
        "admins add",
        format!("manual account added by {caller}"),
    );
    p.store.put_account(
        &account,
        false,
        note(
            caller,
            "admins add",
            format!(
                "manual account {employee_id} ({}, {})",
                account.email, account.role
            ),
        ),
    )?;
    let rules = p.store.rules()?;
    Ok(Response::ok(
        account_json(&account, &rules),
        format!("added manual account {employee_id}\n"),
    ))
}

/// The manual account `id`, or the refusal to print.
fn manual_account<S: Store>(
    p: &Pipeline<S>,
    id: &str,
) -> anyhow::Result<Result<Account, Response>> {
    match p.store.account(id)? {
        None => Ok(Err(Response::fail(
            exit::NO,
            format!("no account for employee {id}"),
        ))),
        Some(a) if a.origin == Origin::Auto => Ok(Err(Response::fail(
            exit::REFUSED,
            format!(
                "refused: account {id} is provisioned automatically by rule {}; change or delete the rule instead (`autoprov rules edit|disable|delete {}`)",
                a.rule_id.map_or("-".into(), |r| r.to_string()),
                a.rule_id.map_or("ID".into(), |r| r.to_string()),
            ),
        ))),
        Some(a) => Ok(Ok(a)),
    }
}

fn admins_set<S: Store>(
    p: &Pipeline<S>,
    caller: &str,
    id: &str,
    role: Option<String>,
    status: Option<String>,
) -> anyhow::Result<Response> {
    let mut account = match manual_account(p, id)? {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    if role.is_none() && status.is_none() {
        return Ok(Response::fail(
            exit::USAGE,
            "admins set needs --role or --status",
        ));
    }
    if let Some(role) = role {
        match configured_role(p, &role) {
            Ok(r) => account.role = r,
            Err(refusal) => return Ok(refusal),
        }
    }
    if let Some(status) = status {
        match Status::parse(&status) {
            Some(Status::Active) if !account.is_active() => {
                let taken = active_with_email(p, &account.email)?;
                if let Some(holder) = taken.iter().find(|a| a.employee_id != account.employee_id) {
                    return Ok(Response::fail(
                        exit::REFUSED,
                        format!(
                            "refused: the email {} is held by the active {} account of employee {}; an email is one person's SSO identity",
                            account.email, holder.origin, holder.employee_id
                        ),
                    ));
                }
                account.status = Status::Active;
            }
            Some(s) => account.status = s,
            None => {
                return Ok(Response::fail(
                    exit::USAGE,
                    "--status takes active or inactive",
                ));
            }
        }
    }
    let now = now_rfc3339();
    account.record(&now, "admins set", format!("changed by {caller}"));
    p.store.put_account(
        &account,
        false,
        note(
            caller,
            "admins set",
            format!(
                "manual account {id}: role {}, {}",
                account.role, account.status
            ),
        ),
    )?;
    let rules = p.store.rules()?;
    Ok(Response::ok(
        account_json(&account, &rules),
        account_text(&account, &rules),
    ))
}

/// The active accounts whose email is `email` (case-insensitive), without history.
fn active_with_email<S: Store>(p: &Pipeline<S>, email: &str) -> anyhow::Result<Vec<Account>> {
    // Through the store's email index: this answers every SSO sign-in.
    let mut active = p.store.accounts_by_email(email)?;
    active.retain(Account::is_active);
    active.iter_mut().for_each(|a| a.history.clear());
    Ok(active)
}

fn auth_check<S: Store>(p: &Pipeline<S>, email: &str) -> anyhow::Result<Response> {
    let active = active_with_email(p, email)?;
    Ok(match active.as_slice() {
        [a] => Response::ok(
            json!({"email": a.email, "employee_id": a.employee_id, "role": a.role, "origin": a.origin}),
            format!("{}\n", a.role),
        ),
        [] => Response {
            exit: exit::NO,
            json: json!({"email": email, "active": false}),
            text: format!("no active admin account for {email}\n"),
        },
        many => Response {
            exit: exit::NO,
            json: json!({"email": email, "active": false, "ambiguous": many.len()}),
            text: format!(
                "denied: {} active accounts share the email {email}; fix the roster or the manual accounts\n",
                many.len()
            ),
        },
    })
}

fn status<S: Store>(p: &Pipeline<S>) -> anyhow::Result<Response> {
    let mut counts: std::collections::HashMap<(Origin, Status), usize> = Default::default();
    p.store
        .scan_accounts(&mut |a| *counts.entry((a.origin, a.status)).or_default() += 1)?;
    let count = |o: Origin, s: Status| counts.get(&(o, s)).copied().unwrap_or(0);
    let rules = p.store.rules()?;
    let files = p.store.files()?;
    let last = files.last();
    let held: Vec<&crate::store::FileEntry> = files
        .iter()
        .filter(|f| f.status == FileStatus::Held)
        .collect();
    let waiting = p.waiting()?;
    let j = json!({
        "data_dir": p.cfg.data_dir,
        "mode": format!("{:?}", p.cfg.source.mode).to_lowercase(),
        "listen": p.cfg.source.listen.to_string(),
        "sso": {"enabled": p.cfg.sso.enabled, "provider": p.cfg.sso.provider},
        "rules": {"total": rules.len(), "enabled": rules.iter().filter(|r| r.enabled).count()},
        "accounts": {
            "auto_active": count(Origin::Auto, Status::Active),
            "auto_inactive": count(Origin::Auto, Status::Inactive),
            "manual_active": count(Origin::Manual, Status::Active),
            "manual_inactive": count(Origin::Manual, Status::Inactive),
        },
        "last_file": last.map(|f| json!({"id": f.id, "name": f.stored_as, "status": f.status.as_str(), "processed_at": f.processed_at, "summary": f.summary})),
        "waiting": waiting,
        "held": held.iter().map(|f| json!({"id": f.id, "name": f.stored_as})).collect::<Vec<_>>(),
        "daemon": Value::Null,
    });
    let mut t = String::new();
    let _ = writeln!(t, "data dir:  {}", p.cfg.data_dir.display());
    let _ = writeln!(
        t,
        "mode:      {}  ({})",
        j["mode"].as_str().unwrap_or_default(),
        j["listen"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        t,
        "sso:       {}",
        if p.cfg.sso.enabled {
            format!("enabled ({})", p.cfg.sso.provider)
        } else {
            "DISABLED: provisioning refuses to run".into()
        }
    );
    let _ = writeln!(
        t,
        "rules:     {} ({} enabled)",
        rules.len(),
        j["rules"]["enabled"]
    );
    let _ = writeln!(
        t,
        "accounts:  auto {} active / {} inactive, manual {} active / {} inactive",
        j["accounts"]["auto_active"],
        j["accounts"]["auto_inactive"],
        j["accounts"]["manual_active"],
        j["accounts"]["manual_inactive"]
    );
    match last {
        Some(f) => {
            let _ = writeln!(
                t,
                "last file: {} {} at {} ({})",
                f.stored_as,
                f.status.as_str(),
                f.processed_at,
                f.summary
            );
        }
        None => t.push_str("last file: none yet\n"),
    }
    let _ = writeln!(t, "waiting:   {}", waiting.len());
    for f in &held {
        let _ = writeln!(
            t,
            "HELD:      file {} {}: decide with `autoprov files approve {}` or `reject {}`",
            f.id, f.stored_as, f.id, f.id
        );
    }
    Ok(Response::ok(j, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_need_an_org_admin_and_reads_do_not() {
        assert!(Request::RulesDelete { id: 1 }.is_change());
        assert!(Request::Sync { force: false }.is_change());
        assert!(
            Request::FilesDecide {
                id: 1,
                approve: false
            }
            .is_change()
        );
        assert!(!Request::RulesList.is_change());
        assert!(
            !Request::AuthCheck {
                email: "a@b.c".into()
            }
            .is_change()
        );
        assert!(!Request::Status.is_change());
    }

    /// A pipeline with SSO on and a fresh store under `dir`.
    fn pipeline_in(dir: &std::path::Path) -> Pipeline<crate::store::SledStore> {
        let config = dir.join("c.toml");
        std::fs::write(
            &config,
            format!("data_dir = {:?}\n[sso]\nenabled = true\n", dir.join("data")),
        )
        .unwrap();
        let cfg = crate::config::Config::load(Some(&config)).unwrap();
        let store =
            crate::store::SledStore::open(&crate::pipeline::Paths::new(&cfg.data_dir).store)
                .unwrap();
        Pipeline::new(cfg, store).unwrap()
    }

    #[test]
    fn process_stops_between_files_when_the_daemon_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let name = p
            .receive("r.csv", b"Employee ID,Email\nE1,a@b.io\n", false)
            .unwrap();
        p.request_stop();
        let r = execute(
            &p,
            Request::Process { name: name.clone() },
            "root",
            Output::Both,
        );
        assert_eq!(r.exit, exit::UNREACHABLE, "{}", r.text);
        assert!(r.text.contains("stays in inbox/"), "{}", r.text);
        assert_eq!(p.waiting().unwrap(), vec![name]);
        assert!(p.store.files().unwrap().is_empty());
    }

    #[test]
    fn a_report_is_rendered_only_as_the_asker_prints_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let roster = b"Employee ID,Email\nE1,a@b.io\n";
        let mut seen = Vec::new();
        for output in [Output::Text, Output::Json, Output::Both] {
            let r = process_upload(&p, "r.dryrun.csv", roster.to_vec(), false, "root", output);
            assert_eq!(r.exit, exit::OK, "{}", r.text);
            let has_text = r.text.contains("DRY RUN");
            let has_json = r.json["status"] == "dry_run";
            seen.push((output, has_text, has_json));
        }
        assert_eq!(
            seen,
            vec![
                (Output::Text, true, false),
                (Output::Json, false, true),
                (Output::Both, true, true)
            ]
        );
        // An older client sends no `output`: it gets both.
        let env: crate::control::Envelope =
            serde_json::from_str(r#"{"request":{"command":"status"},"upload":null}"#).unwrap();
        assert_eq!(env.output, Output::Both);
    }

    #[test]
    fn requests_round_trip_as_json() {
        let r = Request::RulesAdd {
            name: "n".into(),
            role: "IT Admin".into(),
            when: vec!["department = IT".into()],
            strict: true,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"command\":\"rules_add\""), "{text}");
        let back: Request = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Request::RulesAdd { strict: true, .. }));
    }
}
