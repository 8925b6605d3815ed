//! Admin accounts and their history (SPEC §3).

use crate::core::model::FastHash;
use crate::core::rules::RuleId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Accounts by employee ID, borrowed from where they are kept: a million accounts are
/// looked up without a second copy of each ID.
pub type AccountIndex<'a> = HashMap<&'a str, &'a Account, FastHash>;

/// Indexes accounts by employee ID (of two with one ID, the later wins).
pub fn index<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> AccountIndex<'a> {
    let accounts = accounts.into_iter();
    let mut index =
        AccountIndex::with_capacity_and_hasher(accounts.size_hint().0, FastHash::default());
    for a in accounts {
        index.insert(&a.employee_id, a);
    }
    index
}

/// Whether an account may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Signs in with its role.
    Active,
    /// Kept with its history, cannot sign in.
    Inactive,
}

impl Status {
    /// The name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
        }
    }

    /// Parses `active` / `inactive` (case-insensitive).
    pub fn parse(text: &str) -> Option<Status> {
        match text.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Status::Active),
            "inactive" => Some(Status::Inactive),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who controls an account: the rules, or people with `admins add|set|remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Created and changed only by provisioning.
    Auto,
    /// Created and changed only by hand; provisioning never touches it.
    Manual,
}

impl Origin {
    /// The name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Auto => "auto",
            Origin::Manual => "manual",
        }
    }

    /// Parses `auto` / `manual` (case-insensitive).
    pub fn parse(text: &str) -> Option<Origin> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Origin::Auto),
            "manual" => Some(Origin::Manual),
            _ => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of an account's status or role, with what caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The file or command that made the change.
    pub source: String,
    /// Status after the change.
    pub status: Status,
    /// Role after the change.
    pub role: String,
    /// Why, e.g. `created by rule 3 "Finance managers"`.
    pub reason: String,
}

/// An admin account, keyed by employee ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The employee this account belongs to.
    pub employee_id: String,
    /// The SSO login identity.
    pub email: String,
    /// The role granted.
    pub role: String,
    /// Whether it may sign in.
    pub status: Status,
    /// Rules or people.
    pub origin: Origin,
    /// For auto accounts, the rule that controls it.
    pub rule_id: Option<RuleId>,
    /// When the account was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Status and role changes, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl Account {
    /// Whether the account is active.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Appends a history entry and moves `updated_at`.
    pub fn record(&mut self, at: &str, source: &str, reason: String) {
        self.updated_at = at.to_string();
        self.history.push(HistoryEntry {
            at: at.to_string(),
            source: source.to_string(),
            status: self.status,
            role: self.role.clone(),
            reason,
        });
    }
}
