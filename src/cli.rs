//! The command line (SPEC §7): clap definitions and their translation into requests.

use crate::api::Request;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// autoprov: admin accounts from the HR roster.
#[derive(Debug, Parser)]
#[command(name = "autoprov", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default /etc/autoprov/autoprov.toml, then ./autoprov.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format: text or json (overrides log.format).
    #[arg(long, global = true, value_name = "FORMAT", value_enum)]
    pub log_format: Option<crate::config::LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (systemd Type=notify; stops cleanly on SIGTERM).
    Run,
    /// One sync from a local file (copied into inbox/; the original is left alone).
    Process {
        /// The roster file.
        file: PathBuf,
        /// Evaluate and report, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-evaluate the last applied roster now.
    Sync {
        /// Apply even when over the safety limits.
        #[arg(long)]
        force: bool,
    },
    /// Provisioning rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Admin accounts.
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Processed, rejected and held files.
    #[command(subcommand)]
    Files(FilesCommand),
    /// The daemon's and the store's state.
    Status,
    /// SSO hook: prints the role and exits 0 only for an active account.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Write a portable backup of the whole store to FILE.
    Backup {
        /// Where to write it (with a daemon running, the daemon writes it, and only as a new file in
        /// data_dir/backups).
        file: PathBuf,
    },
    /// Replace the store with a backup (only while the daemon is stopped).
    Restore {
        /// A file written by `autoprov backup`.
        file: PathBuf,
    },
    /// Read-only tokens for the HTTP API (web.api_tokens_file).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    Audit {
        /// Only entries at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
    /// Fetch the roster from the HR system now, process it and print its report (hris
    /// mode, through the daemon; exit 0/1/3 like process, 5 when the fetch failed).
    Fetch,
}

/// `rules ...`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List all rules.
    List,
    /// Show one rule.
    Show {
        /// Rule id.
        id: u64,
    },
    /// Add a rule.
    Add(RuleArgs),
    /// Edit a rule: --when replaces all conditions; --name, --role change only those.
    Edit {
        /// Rule id.
        id: u64,
        /// What to change.
        #[command(flatten)]
        args: RuleEditArgs,
    },
    /// Delete a rule (its id is never reused).
    Delete {
        /// Rule id.
        id: u64,
    },
    /// Enable a rule.
    Enable {
        /// Rule id.
        id: u64,
        /// Refuse (exit 3, the rule left disabled) instead of warning on conflicts.
        #[arg(long)]
        strict: bool,
    },
    /// Disable a rule.
    Disable {
        /// Rule id.
        id: u64,
    },
    /// Check all rules for conflicts and problems.
    Check,
}

/// Arguments of `rules add`.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// A role from provisioning.roles.
    #[arg(long)]
    pub role: String,
    /// A condition, e.g. "department = Finance"; repeat for more (all must hold).
    #[arg(long = "when", required = true)]
    pub when: Vec<String>,
    /// Refuse (exit 3) instead of warning when the rule conflicts with another.
    #[arg(long)]
    pub strict: bool,
}

/// Arguments of `rules edit`.
#[derive(Debug, Args)]
pub struct RuleEditArgs {
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New role.
    #[arg(long)]
    pub role: Option<String>,
    /// New conditions (replace all).
    #[arg(long = "when")]
    pub when: Vec<String>,
    /// Refuse (exit 3) instead of warning on conflicts.
    #[arg(long)]
    pub strict: bool,
}

/// `admins ...`
#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// List accounts.
    List {
        /// active or inactive.
        #[arg(long)]
        status: Option<String>,
        /// auto or manual.
        #[arg(long)]
        origin: Option<String>,
        /// Only accounts controlled by this rule.
        #[arg(long)]
        rule: Option<u64>,
    },
    /// Show one account with its history.
    Show {
        /// Employee id.
        id: String,
    },
    /// Add a manual account.
    Add {
        /// Employee id.
        #[arg(long)]
        employee_id: String,
        /// SSO login email.
        #[arg(long)]
        email: String,
        /// A role from provisioning.roles.
        #[arg(long)]
        role: String,
    },
    /// Change a manual account.
    Set {
        /// Employee id.
        id: String,
        /// New role.
        #[arg(long)]
        role: Option<String>,
        /// active or inactive.
        #[arg(long)]
        status: Option<String>,
    },
    /// Remove a manual account.
    Remove {
        /// Employee id.
        id: String,
    },
}

/// `files ...`
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// List processed files.
    List,
    /// Show a file's report.
    Show {
        /// File id.
        id: u64,
    },
    /// Apply a held file (re-planned now, without the safety limits).
    Approve {
        /// File id.
        id: u64,
    },
    /// Discard a held file.
    Reject {
        /// File id.
        id: u64,
    },
}

/// `auth ...`
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Exit 0 and print the role for an active account, else exit 1.
    Check {
        /// The SSO login email.
        email: String,
    },
}

/// `token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a read-only API token: prints it once, appends `NAME SHA256` to web.api_tokens_file.
    Add {
        /// Who the token is for, e.g. sso-gateway (unique, no spaces).
        name: String,
    },
}

impl Command {
    /// The request for every command that is one (all but `run` and `process`, which need a file copied first).
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            Command::Run
            | Command::Process { .. }
            | Command::Restore { .. }
            | Command::Token(_) => return None,
            Command::Backup { file } => Request::Backup {
                path: std::path::absolute(file)
                    .unwrap_or_else(|_| file.clone())
                    .to_string_lossy()
                    .into_owned(),
            },
            Command::Sync { force } => Request::Sync { force: *force },
            Command::Rules(r) => match r {
                RulesCommand::List => Request::RulesList {},
                RulesCommand::Show { id } => Request::RulesShow { id: *id },
                RulesCommand::Add(a) => Request::RulesAdd {
                    name: a.name.clone(),
                    role: a.role.clone(),
                    when: a.when.clone(),
                    strict: a.strict,
                    accept: None,
                },
                RulesCommand::Edit { id, args } => Request::RulesEdit {
                    id: *id,
                    name: args.name.clone(),
                    role: args.role.clone(),
                    when: args.when.clone(),
                    strict: args.strict,
                    accept: None,
                },
                RulesCommand::Delete { id } => Request::RulesDelete { id: *id },
                RulesCommand::Enable { id, strict } => Request::RulesEnable {
                    id: *id,
                    enabled: true,
                    strict: *strict,
                    accept: None,
                },
                RulesCommand::Disable { id } => Request::RulesEnable {
                    id: *id,
                    enabled: false,
                    strict: false,
                    accept: None,
                },
                RulesCommand::Check => Request::RulesCheck {},
            },
            Command::Admins(a) => match a {
                AdminsCommand::List {
                    status,
                    origin,
                    rule,
                } => Request::AdminsList {
                    status: status.clone(),
                    origin: origin.clone(),
                    rule: *rule,
                },
                AdminsCommand::Show { id } => Request::AdminsShow { id: id.clone() },
                AdminsCommand::Add {
                    employee_id,
                    email,
                    role,
                } => Request::AdminsAdd {
                    employee_id: employee_id.clone(),
                    email: email.clone(),
                    role: role.clone(),
                },
                AdminsCommand::Set { id, role, status } => Request::AdminsSet {
                    id: id.clone(),
                    role: role.clone(),
                    status: status.clone(),
                },
                AdminsCommand::Remove { id } => Request::AdminsRemove { id: id.clone() },
            },
            Command::Files(f) => match f {
                FilesCommand::List => Request::FilesList {},
                FilesCommand::Show { id } => Request::FilesShow { id: *id },
                FilesCommand::Approve { id } => Request::FilesDecide {
                    id: *id,
                    approve: true,
                },
                FilesCommand::Reject { id } => Request::FilesDecide {
                    id: *id,
                    approve: false,
                },
            },
            Command::Status => Request::Status {},
            Command::Auth(AuthCommand::Check { email }) => Request::AuthCheck {
                email: email.clone(),
            },
            Command::Audit { since } => Request::Audit {
                since: since.clone(),
            },
            Command::Fetch => Request::Fetch {},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spec_example_parses() {
        let cli = Cli::try_parse_from([
            "autoprov",
            "rules",
            "add",
            "--name",
            "Eng managers",
            "--role",
            "IT Admin",
            "--when",
            "department = Engineering",
            "--when",
            "is_manager = true",
        ])
        .unwrap();
        match cli.command.request() {
            Some(Request::RulesAdd { when, .. }) => assert_eq!(when.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
