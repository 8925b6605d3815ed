//! Admin accounts and their history (SPEC §3).

use crate::core::rules::RuleId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How many groups accounts are kept in: every account belongs to one group by a stable hash
/// of its employee ID ([`group_of`]), so that a sync reads and plans the accounts one group
/// at a time instead of holding a million of them. The sled store keeps one bucket per
/// group: this number is part of its on-disk schema.
pub const GROUPS: usize = 4096;

/// The group an employee ID belongs to: FNV-1a (32 bit) of its UTF-8 bytes, so that it is
/// the same on every machine and every build.
pub fn group_of(employee_id: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in employee_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % GROUPS as u32) as usize
}

/// The fields of a stored account a sync decides on, read in place (no copy). They lead an
/// [`Account`]'s encoding in the same order, so an encoded account's first fields decode
/// as its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct AccountHead<'a> {
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
}

impl AccountHead<'_> {
    /// Whether the account is active.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }
}

/// The accounts of one group as stored, sorted by employee ID (each ID once): their
/// [`AccountHead`]s, and each account read whole only when a sync changes it.
pub trait AccountGroup {
    /// The heads, sorted by employee ID.
    fn heads(&self) -> &[AccountHead<'_>];
    /// The account of `heads()[i]`, whole.
    fn whole(&self, i: usize) -> Account;
}

/// A group of accounts held in memory (tests, and stores that keep accounts so).
pub struct HeldGroup<'a> {
    accounts: Vec<&'a Account>,
    heads: Vec<AccountHead<'a>>,
}

impl<'a> HeldGroup<'a> {
    /// The group of `accounts` (of two with one ID, the later is kept).
    pub fn new(accounts: impl IntoIterator<Item = &'a Account>) -> HeldGroup<'a> {
        let mut accounts: Vec<&Account> = accounts.into_iter().collect();
        accounts.reverse();
        // Stable: of equal IDs the later account (now first) stays first and is kept.
        accounts.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
        accounts.dedup_by(|later, first| later.employee_id == first.employee_id);
        let heads = accounts.iter().map(|a| a.head()).collect();
        HeldGroup { accounts, heads }
    }

    /// `accounts` in [`GROUPS`] groups by [`group_of`] (of two with one ID, the later is kept).
    pub fn split(accounts: &'a [Account]) -> Vec<HeldGroup<'a>> {
        let mut groups: Vec<Vec<&Account>> = vec![Vec::new(); GROUPS];
        for a in accounts {
            groups[group_of(&a.employee_id)].push(a);
        }
        groups.into_iter().map(HeldGroup::new).collect()
    }
}

impl AccountGroup for HeldGroup<'_> {
    fn heads(&self) -> &[AccountHead<'_>] {
        &self.heads
    }

    fn whole(&self, i: usize) -> Account {
        self.accounts[i].clone()
    }
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

    /// The fields a sync decides on.
    pub fn head(&self) -> AccountHead<'_> {
        AccountHead {
            employee_id: &self.employee_id,
            email: &self.email,
            role: &self.role,
            status: self.status,
            origin: self.origin,
            rule_id: self.rule_id,
        }
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
