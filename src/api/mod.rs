//! What surfaces and the engine say to each other: requests, answers (JSON and text, with
//! the exit code of SPEC §7), the rendering of rules, accounts and reports, and the one
//! place errors become exit codes. No I/O and no store here: the engine executes requests
//! (`crate::engine::commands`), the CLI, the control socket and later the web section only
//! send them and print the answers.

pub mod error;
pub mod render;
pub mod report_out;
pub mod seen;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use error::{Error, Result};

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
    /// Failed: the work could not be done (I/O error, disk full, damaged store); the
    /// message says what failed and whether anything was changed.
    pub const FAILED: u8 = 5;
}

/// One command, as the CLI parsed it (and as it travels over the control socket). A
/// field this build does not know refuses the request ("bad request"): a newer client's
/// option (`rules enable --strict`) had been dropped by an older daemon and the command
/// done without it, exit 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
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
    RulesList {},
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
        /// See [`Request::RulesEdit`]'s.
        #[serde(default)]
        accept: Option<String>,
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
        /// Not strict: saved despite conflicts only when they are these, as
        /// [`crate::api::seen::conflicts_version`] gives them (the web section's "Save
        /// anyway" after they were shown); other conflicts refuse as `strict` does.
        #[serde(default)]
        accept: Option<String>,
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
        /// Enabling: refuse on conflicts (exit 3), the rule left disabled.
        #[serde(default)]
        strict: bool,
        /// Enabling, not strict: enabled despite conflicts only when they are these, as
        /// for [`Request::RulesEdit`]'s `accept` (the web section's "Enable anyway").
        #[serde(default)]
        accept: Option<String>,
    },
    /// `rules check`
    RulesCheck {},
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
    FilesList {},
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
    Status {},
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
    /// `fetch`: fetch the roster from the HR system now and process it (hris mode, through
    /// the daemon only).
    Fetch {},
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
                | Request::Fetch {}
        )
    }

    /// Logs this request's change line ([`Self::change_line`]) with who asked and the
    /// answer's exit code; a request that changes nothing gets none.
    pub fn log_change(&self, user: &str, exit: u8) {
        if let Some(line) = self.change_line() {
            log_change(&line, user, exit);
        }
    }

    /// For a change, the command and what it names, for the log line it gets (an ID, a
    /// rule's number; no email, no condition): `files approve 7`, `admins set E12`.
    pub fn change_line(&self) -> Option<String> {
        let named = |command: &str, what: &dyn std::fmt::Display| {
            let what = crate::core::model::escape_controls(&what.to_string()).into_owned();
            Some(format!("{command} {what}"))
        };
        match self {
            Request::Process { name } => named("process", name),
            Request::Sync { force: false } => Some("sync".into()),
            Request::Sync { force: true } => Some("sync --force".into()),
            Request::RulesAdd { .. } => Some("rules add".into()),
            Request::RulesEdit { id, .. } => named("rules edit", id),
            Request::RulesDelete { id } => named("rules delete", id),
            Request::RulesEnable {
                id, enabled: true, ..
            } => named("rules enable", id),
            Request::RulesEnable {
                id, enabled: false, ..
            } => named("rules disable", id),
            Request::AdminsAdd { employee_id, .. } => named("admins add", employee_id),
            Request::AdminsSet { id, .. } => named("admins set", id),
            Request::AdminsRemove { id } => named("admins remove", id),
            Request::FilesDecide { id, approve: true } => named("files approve", id),
            Request::FilesDecide { id, approve: false } => named("files reject", id),
            Request::Backup { .. } => Some("backup".into()),
            Request::Fetch {} => Some("fetch".into()),
            _ => None,
        }
    }

    /// Whether the request provisions (and so needs `[sso] enabled`).
    pub fn provisions(&self) -> bool {
        matches!(
            self,
            Request::Process { .. }
                | Request::Sync { .. }
                | Request::FilesDecide { approve: true, .. }
                | Request::Fetch {}
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
    pub fn wants_json(self) -> bool {
        self != Output::Text
    }

    /// Whether the `text` form is to be built.
    pub fn wants_text(self) -> bool {
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
    /// A successful answer.
    pub fn ok(json: Value, text: String) -> Response {
        Response {
            exit: exit::OK,
            json,
            text,
        }
    }

    /// The answer of a command (its own exit code `code`: 0, 1 or 3) that could not be
    /// written to stdout (`e`: a full disk, an I/O error; not a closed pipe, which loses the
    /// text alone): exit 5, saying what the answer was, so that a script looks before it
    /// sends a file again that may have been processed.
    pub fn unwritten(e: &std::io::Error, code: u8) -> Response {
        Response::fail(
            exit::FAILED,
            format!(
                "failed: writing the answer: {e}; the command's answer was exit {code}, lost \
                 with its text: a file given to process may have been processed and filed \
                 (see autoprov files list before sending it again)"
            ),
        )
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

/// Who sends a request: whose right to change the engine checks, and whose name the audit
/// log and the accounts' history show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A Unix user (CLI, control socket): changes need `control.org_admins` (or root).
    Unix(String),
    /// A person signed in through the organization's SSO proxy (web section), by email:
    /// changes need `web.org_admins` or an active account whose role is in
    /// `web.org_admin_roles` (SPEC §11).
    Person(String),
}

impl Caller {
    /// The name written to the audit log: the Unix user or the email.
    pub fn name(&self) -> &str {
        match self {
            Caller::Unix(name) | Caller::Person(name) => name,
        }
    }
}

/// The refusal of a change to a person (web section) who may not make changes.
/// The log line of a change asked for (`files approve 7`), done or refused: who asked, and
/// the answer's exit code. A security team reads the journal, not only `autoprov audit`,
/// and an attempt without the right is what it most wants to see there.
pub fn log_change(line: &str, user: &str, exit: u8) {
    tracing::info!(user, exit, "change asked: {line}");
}

pub fn person_refusal(email: &str) -> Response {
    forbidden(format!(
        "refused: {email} may not make changes; an administrator must add the email to web.org_admins, or give its active account a role listed in web.org_admin_roles"
    ))
}

/// The refusal of a change to a caller who is not an org admin.
pub fn refusal(caller: &str) -> Response {
    forbidden(format!(
        "refused: Unix user \"{caller}\" may not make changes; an administrator must add it to control.org_admins in the config"
    ))
}

/// A refusal for the caller's rights, marked so (`"forbidden": true`): the web answers it
/// 403 by this mark, not by its words (a refusal quoting a rule named "… may not make
/// changes" had been answered 403).
fn forbidden(text: String) -> Response {
    let mut refusal = Response::fail(exit::REFUSED, text);
    if let Some(json) = refusal.json.as_object_mut() {
        json.insert("forbidden".into(), true.into());
    }
    refusal
}

/// A file the client sends along with a `process` request (over the control socket).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The file's name (the daemon files it under this name in inbox/).
    pub name: String,
    /// Evaluate only.
    pub dry_run: bool,
    /// Bytes that follow the request line.
    pub size: u64,
    /// Where the daemon wrote an upload over `roster.max_bytes` instead of keeping it in
    /// memory (a hidden file in inbox/), to be filed and rejected with its report as such a
    /// file is from SFTP; not sent by clients.
    #[serde(skip)]
    pub spooled: Option<std::path::PathBuf>,
    /// A line follows the bytes: `unchanged` when the file was the same after it was sent
    /// as when it was opened (its size and time of last write, nothing past its end).
    /// Without it, a file still being written was applied cut short. (A client of an older
    /// version sends none, and its upload is taken as it came.)
    #[serde(default)]
    pub confirmed: bool,
}

#[cfg(test)]
mod tests {
    use super::Request;

    /// A field this build does not know refuses the request: an option of a newer client
    /// is never dropped and the command done without it.
    #[test]
    fn a_request_with_a_field_this_build_does_not_know_is_refused() {
        let known = r#"{"command":"rules_enable","id":2,"enabled":true,"strict":true}"#;
        assert!(serde_json::from_str::<Request>(known).is_ok());
        let older = r#"{"command":"rules_enable","id":2,"enabled":true}"#;
        assert!(
            serde_json::from_str::<Request>(older).is_ok(),
            "an older client's"
        );
        let newer = r#"{"command":"rules_enable","id":2,"enabled":true,"strict":true,"only_if":1}"#;
        let refused = serde_json::from_str::<Request>(newer).unwrap_err();
        assert!(refused.to_string().contains("unknown field"), "{refused}");
        // Every request the CLI sends reads back.
        let edit = Request::RulesEdit {
            id: 1,
            name: None,
            role: Some("IT Admin".into()),
            when: Vec::new(),
            strict: true,
            accept: None,
        };
        let text = serde_json::to_string(&edit).unwrap();
        assert!(serde_json::from_str::<Request>(&text).is_ok(), "{text}");
        // So do requests without fields of their own, whose shape is unchanged.
        let status = serde_json::to_string(&Request::Status {}).unwrap();
        assert_eq!(status, r#"{"command":"status"}"#);
        assert!(serde_json::from_str::<Request>(r#"{"command":"files_list"}"#).is_ok());
        let newer = r#"{"command":"files_list","status":"held"}"#;
        assert!(serde_json::from_str::<Request>(newer).is_err(), "{newer}");
        // And the envelope around a request.
        type Envelope = crate::control::Envelope;
        let plain = r#"{"request":{"command":"status"},"upload":null}"#;
        assert!(serde_json::from_str::<Envelope>(plain).is_ok());
        let newer = r#"{"request":{"command":"status"},"upload":null,"newthing":1}"#;
        assert!(serde_json::from_str::<Envelope>(newer).is_err());
    }
}
