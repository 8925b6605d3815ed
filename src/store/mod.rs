//! Persistent state: rules, accounts, the ledger of files, the audit log.

mod backup_format;
pub mod memory;
mod sled;

pub use self::sled::{Lock, SledStore, watermark};
pub use backup_format::{Checked, records_digest};
pub use memory::MemoryStore;

use crate::core::accounts::{Account, AccountGroup, Origin, Status};
use crate::core::report::{Report, ReportStatus};
use crate::core::rules::{Rule, RuleId};
use crate::core::updates::Updates;
use serde::{Deserialize, Serialize};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed. Not a `source`: the message already shows sled's, once.
    #[error("store: {0}")]
    Sled(::sled::Error),
    /// A record could not be decoded: the store is damaged or from another version.
    #[error("store is damaged: {0}")]
    Corrupt(String),
    /// The store was written by a newer autoprov (its schema is past this one's): not
    /// damaged, and restoring a backup would throw away what it holds.
    #[error("{0}")]
    Newer(String),
    /// A transaction was refused by a check inside it.
    #[error("{0}")]
    Conflict(String),
    /// A transaction went through but the flush after it failed: the change is in the store
    /// as this process sees it, and may not be on disk.
    #[error("the change was made but could not be written to disk: {0}")]
    Unflushed(String),
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Sled(e)
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What a commit waits for before it makes its write current ([`Store::commit_when`]).
pub type Ready<'a> = &'a mut dyn FnMut() -> StoreResult<()>;

/// Where a ledger entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Applied.
    Applied,
    /// Rejected (errors, or a held file rejected).
    Rejected,
    /// Waiting for approval.
    Held,
    /// Evaluated only.
    DryRun,
}

impl From<ReportStatus> for FileStatus {
    fn from(s: ReportStatus) -> Self {
        match s {
            ReportStatus::Applied => FileStatus::Applied,
            ReportStatus::Rejected => FileStatus::Rejected,
            ReportStatus::Held => FileStatus::Held,
            ReportStatus::DryRun => FileStatus::DryRun,
        }
    }
}

impl FileStatus {
    /// The name used in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Applied => "applied",
            FileStatus::Rejected => "rejected",
            FileStatus::Held => "held",
            FileStatus::DryRun => "dry_run",
        }
    }

    /// The drop folder a file of this status is filed in.
    pub fn folder(self) -> &'static str {
        match self {
            FileStatus::Applied | FileStatus::DryRun => "processed",
            FileStatus::Rejected => "rejected",
            FileStatus::Held => "held",
        }
    }
}

/// One processed file in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Assigned in order of processing.
    pub id: u64,
    /// The name it had in inbox/.
    pub name: String,
    /// Its name in processed/, rejected/ or held/.
    pub stored_as: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// When it was complete in inbox/.
    pub received_at: String,
    /// When it was processed (or decided).
    pub processed_at: String,
    /// Outcome.
    pub status: FileStatus,
    /// Counts and findings for listings (`files show` prints the report file).
    pub summary: String,
    /// Filing (move + reports) still to be done after the commit: (from, to) relative to drop/.
    pub pending_move: Option<(String, String)>,
    /// Poll mode: where the file came from on the remote server.
    #[serde(default)]
    pub remote: Option<RemoteOrigin>,
    /// Poll mode: the remote file still has to be moved and its reports uploaded.
    #[serde(default)]
    pub remote_pending: bool,
    /// The file was held before it was decided (its remote copy goes to `processed`).
    #[serde(default)]
    pub was_held: bool,
}

/// Poll mode: the remote file a local inbox file was downloaded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteOrigin {
    /// Remote folder (`source.remote.inbox`).
    pub dir: String,
    /// Remote file name.
    pub name: String,
    /// Size in the listing it was fetched from.
    pub size: u64,
    /// Modification time (seconds) in that listing.
    pub mtime: u32,
    /// SHA-256 of the downloaded bytes.
    pub sha256: String,
}

/// One entry of the audit log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub note: AuditNote,
    /// Set by a restore that undid what the entry records: "rolled back by the restore of
    /// FILE at TIME". A field of its own, never part of `detail`: a rule's condition ending
    /// in the words of the mark had made a live grant read as rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
}

/// What an audit entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditNote {
    /// When (RFC 3339).
    pub at: String,
    /// The Unix user (or `autoprov` for the daemon itself).
    pub user: String,
    /// What was done, e.g. `rules add`.
    pub action: String,
    /// Details a person reads.
    pub detail: String,
}

/// What one committed sync writes, atomically.
pub struct Commit<'a> {
    /// Accounts to write (taken, so that the store can make and let them go batch by batch).
    pub updates: Updates<'a>,
    /// The ledger entry (new or updated), if a file is involved.
    pub file: Option<&'a FileEntry>,
    /// Make this file the last applied roster.
    pub last_applied: Option<u64>,
    /// Audit entry (seq is assigned).
    pub audit: Option<AuditNote>,
    /// Poll mode: the inbox name whose remote registration the ledger entry now carries.
    pub clear_remote: Option<&'a str>,
    /// The accounts token ([`Store::accounts_token`]) the commit leaves when the store's is
    /// still the one named (written even when no account is); otherwise, and when `None`, a
    /// new random one when accounts are written.
    pub accounts_token: Option<TokenChange>,
}

/// A commit's accounts token: `to`, if the store's is still `from` when it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenChange {
    /// The token the commit's evaluation started from.
    pub from: Option<AccountsToken>,
    /// The token to leave.
    pub to: AccountsToken,
}

/// Names the state of the accounts and rules: every write of accounts or rules leaves a new
/// random one (never in backups), so a record made when the store had a token describes
/// the store for as long as it still has it.
pub type AccountsToken = [u8; 16];

/// Reads groups of accounts for one pass over them ([`Store::group_reader`]).
pub trait GroupReader: Sync {
    /// As [`Store::read_group`]; may be called from two threads at once.
    fn read_group(&self, g: usize, f: &mut dyn FnMut(&dyn AccountGroup)) -> StoreResult<()>;
}

/// [`Store::group_reader`]'s default: each group read on its own.
struct EachGroup<'a, S: ?Sized>(&'a S);

impl<S: Store + ?Sized> GroupReader for EachGroup<'_, S> {
    fn read_group(&self, g: usize, f: &mut dyn FnMut(&dyn AccountGroup)) -> StoreResult<()> {
        self.0.read_group(g, f)
    }
}

/// The store used by the pipeline and the commands (shared by the daemon's threads).
pub trait Store: Send + Sync {
    /// All rules, by id.
    fn rules(&self) -> StoreResult<Vec<Rule>>;
    /// One rule.
    fn rule(&self, id: RuleId) -> StoreResult<Option<Rule>>;
    /// Allocates the next rule id (never reused, even after delete).
    fn next_rule_id(&self) -> StoreResult<RuleId>;
    /// Saves a rule and audits it, atomically.
    fn put_rule(&self, rule: &Rule, audit: AuditNote) -> StoreResult<()>;
    /// Deletes a rule and audits it, atomically.
    fn delete_rule(&self, id: RuleId, audit: AuditNote) -> StoreResult<()>;
    /// All accounts, in no particular order (a sync reads them one group at a time instead:
    /// [`Store::read_group`]).
    fn accounts(&self) -> StoreResult<Vec<Account>>;
    /// Calls `f` for every account, read in place (no owned copy), in no particular order.
    fn scan_accounts(&self, f: &mut dyn FnMut(&AccountRef<'_>)) -> StoreResult<()>;
    /// Like [`Store::scan_accounts`], every account given once to `lower` or to `upper`,
    /// which may run at once on two threads (a listing of a million accounts). By default
    /// all go to `lower`.
    fn scan_accounts_split(
        &self,
        lower: &mut (dyn FnMut(&AccountRef<'_>) + Send),
        upper: &mut (dyn FnMut(&AccountRef<'_>) + Send),
    ) -> StoreResult<()> {
        let _ = upper;
        self.scan_accounts(lower)
    }
    /// Gives `f` the accounts of group `g` ([`crate::core::accounts::group_of`]), sorted by
    /// employee ID and read in place: a sync goes through a million accounts so, one group
    /// at a time, copying only those it changes. May be called from two threads at once.
    fn read_group(&self, g: usize, f: &mut dyn FnMut(&dyn AccountGroup)) -> StoreResult<()>;
    /// A reader for one pass over the groups (a sync's plan reads every group, maybe twice):
    /// it gives each as [`Store::read_group`] does, for a pass no write interleaves with
    /// (the engine runs writes and plans one at a time). The sled store reads its directory
    /// of buckets once, not once per group (~1 ms of every run): a bucket written after the
    /// reader was made may read as it was, or as it now is once its old page is removed. By
    /// default, [`Store::read_group`] itself.
    fn group_reader(&self) -> StoreResult<Box<dyn GroupReader + '_>> {
        Ok(Box::new(EachGroup(self)))
    }
    /// One account.
    fn account(&self, employee_id: &str) -> StoreResult<Option<Account>>;
    /// Every account (active or not, with history) whose email, folded as
    /// [`crate::core::columns::fold_value`] folds it, is `email` folded; sorted by employee ID.
    /// This answers every SSO sign-in, so it reads an index, not every account.
    fn accounts_by_email(&self, email: &str) -> StoreResult<Vec<Account>>;
    /// Saves one account by hand (or removes it when `remove`) and audits, atomically.
    fn put_account(&self, account: &Account, remove: bool, audit: AuditNote) -> StoreResult<()>;
    /// Applies one sync in one transaction, then flushes to disk.
    fn commit(&self, commit: Commit<'_>) -> StoreResult<()> {
        self.commit_when(commit, &mut || Ok(()))
    }
    /// [`Self::commit`], made current only once `ready` has succeeded: the store may put
    /// the write's bulk aside while what `ready` waits for is done elsewhere. `ready` is
    /// called once, before anything is current; if it fails, nothing is committed and its
    /// error is returned.
    fn commit_when(&self, commit: Commit<'_>, ready: Ready<'_>) -> StoreResult<()>;
    /// Records that `entry`'s filing finished: its ledger entry without its pending move.
    /// Not flushed on its own (the next write's flush, or closing the store, makes it
    /// durable): lost to a crash, the next start finds the move done and records it again.
    fn filed(&self, entry: &FileEntry) -> StoreResult<()>;
    /// Allocates the next file id (a crash before the commit that records the file may give
    /// it out again).
    fn next_file_id(&self) -> StoreResult<u64>;
    /// All ledger entries, oldest first.
    fn files(&self) -> StoreResult<Vec<FileEntry>>;
    /// One ledger entry.
    fn file(&self, id: u64) -> StoreResult<Option<FileEntry>>;
    /// The first file with these bytes.
    fn file_by_sha(&self, sha256: &str) -> StoreResult<Option<FileEntry>>;
    /// The last applied roster's ledger entry.
    fn last_applied(&self) -> StoreResult<Option<FileEntry>>;
    /// The token of the accounts and rules as they are ([`AccountsToken`]); `None` before
    /// the first write of either.
    fn accounts_token(&self) -> StoreResult<Option<AccountsToken>>;
    /// Audit entries at or after `since` (RFC 3339 string comparison), oldest first.
    fn audit(&self, since: Option<&str>) -> StoreResult<Vec<AuditEntry>>;
    /// Appends one audit entry.
    fn append_audit(&self, note: AuditNote) -> StoreResult<()>;
    /// Flushes everything to disk.
    fn flush(&self) -> StoreResult<()>;
    /// Why a flush failed, once one did. The store then holds in memory what the disk may
    /// not (sled also keeps its error and fails every later write): nothing should be
    /// answered from it until it is opened again, from disk.
    fn write_failed(&self) -> Option<String> {
        None
    }
    /// Makes what the store holds now durable, whatever this process flushed: before a file
    /// committed earlier is filed as applied. sled reads back after a restart what a killed
    /// process left in the page cache, which a power loss would still take away; and after
    /// a flush that failed, sled keeps answering from memory what the disk may not hold
    /// (its flush then fails again, and nothing is filed).
    fn durable(&self) -> StoreResult<()>;
    /// Poll mode: remembers where an inbox file came from (before it is renamed into inbox/).
    fn register_remote(&self, inbox_name: &str, origin: &RemoteOrigin) -> StoreResult<()>;
    /// Poll mode: the registration of an inbox file.
    fn remote_registration(&self, inbox_name: &str) -> StoreResult<Option<RemoteOrigin>>;
    /// Poll mode: every registration not yet carried by a ledger entry, with its inbox name.
    fn remote_registrations(&self) -> StoreResult<Vec<(String, RemoteOrigin)>>;
    /// Poll mode: forgets a registration whose download never reached inbox/.
    fn unregister_remote(&self, inbox_name: &str) -> StoreResult<()>;
    /// Writes a portable backup of everything; returns the record count.
    fn export(&self, out: &mut dyn std::io::Write, created_at: &str) -> std::io::Result<u64>;
}

/// An [`Account`] read in place, its strings borrowed (in the sled store, from the bucket
/// it is stored in): the same fields, types and order, so postcard accepts the same bytes.
/// For scans over every account (counts, listings) that need no owned copy of a million
/// accounts.
#[derive(Debug, serde::Deserialize)]
pub struct AccountRef<'a> {
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
    /// See [`Account`].
    #[serde(borrow)]
    pub history: Vec<HistoryRef<'a>>,
}

impl<'a> AccountRef<'a> {
    /// The account, read in place.
    pub fn of(a: &'a Account) -> AccountRef<'a> {
        AccountRef {
            employee_id: &a.employee_id,
            email: &a.email,
            role: &a.role,
            status: a.status,
            origin: a.origin,
            rule_id: a.rule_id,
            created_at: &a.created_at,
            updated_at: &a.updated_at,
            history: a
                .history
                .iter()
                .map(|h| HistoryRef {
                    at: &h.at,
                    source: &h.source,
                    status: h.status,
                    role: &h.role,
                    reason: &h.reason,
                })
                .collect(),
        }
    }

    /// An owned copy without the history (for listings and look-ups).
    pub fn without_history(&self) -> Account {
        Account {
            employee_id: self.employee_id.into(),
            email: self.email.into(),
            role: self.role.into(),
            status: self.status,
            origin: self.origin,
            rule_id: self.rule_id,
            created_at: self.created_at.into(),
            updated_at: self.updated_at.into(),
            history: Vec::new(),
        }
    }

    /// An owned copy with the history.
    pub fn to_account(&self) -> Account {
        let mut account = self.without_history();
        account.history = self
            .history
            .iter()
            .map(|h| crate::core::accounts::HistoryEntry {
                at: h.at.into(),
                source: h.source.into(),
                status: h.status,
                role: h.role.into(),
                reason: h.reason.into(),
            })
            .collect();
        account
    }
}

/// A [`crate::core::accounts::HistoryEntry`] read in place (see [`AccountRef`]).
#[derive(Debug, serde::Deserialize)]
pub struct HistoryRef<'a> {
    /// See [`crate::core::accounts::HistoryEntry`].
    pub at: &'a str,
    /// See [`crate::core::accounts::HistoryEntry`].
    pub source: &'a str,
    /// See [`crate::core::accounts::HistoryEntry`].
    pub status: Status,
    /// See [`crate::core::accounts::HistoryEntry`].
    pub role: &'a str,
    /// See [`crate::core::accounts::HistoryEntry`].
    pub reason: &'a str,
}

/// The summary line of a report for the ledger.
pub fn summary(report: &Report) -> String {
    if !report.errors.is_empty() {
        return format!("{} errors", report.errors.len() + report.more_errors);
    }
    crate::core::report::counts_line(&report.counts)
}

/// Records for the store's tests.
#[cfg(test)]
pub(crate) mod samples {
    use crate::core::accounts::{Account, Origin, Status};
    use crate::core::rules::{Condition, Rule, RuleId};

    /// Rule `id`: `department = IT` grants IT Admin.
    pub fn rule(id: u64) -> Rule {
        Rule {
            id: RuleId(id),
            name: format!("rule {id}"),
            role: "IT Admin".into(),
            conditions: vec![Condition::parse("department = IT").unwrap()],
            enabled: true,
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: "alice".into(),
        }
    }

    /// Accounts packed for a commit.
    pub fn packed(
        accounts: impl IntoIterator<Item = Account>,
    ) -> crate::core::updates::Updates<'static> {
        crate::core::updates::Updates::packed(
            accounts
                .into_iter()
                .map(|a| crate::core::packed::Packed::of(&a))
                .collect(),
        )
    }

    /// Commits the ledger entry `entry` and nothing else (a mark left as a failure or a
    /// crash leaves it).
    pub fn commit_entry(s: &dyn crate::store::Store, entry: &crate::store::FileEntry) {
        s.commit(crate::store::Commit {
            updates: crate::core::updates::Updates::none(),
            file: Some(entry),
            last_applied: None,
            audit: None,
            clear_remote: None,
            accounts_token: None,
        })
        .unwrap();
    }

    /// Commits `accounts` and nothing else (no file, no audit).
    pub fn commit_accounts(s: &dyn crate::store::Store, accounts: Vec<Account>) {
        s.commit(crate::store::Commit {
            updates: packed(accounts),
            file: None,
            last_applied: None,
            audit: None,
            clear_remote: None,
            accounts_token: None,
        })
        .unwrap();
    }

    /// An active auto account of rule 1, without history.
    pub fn account(id: &str) -> Account {
        Account {
            employee_id: id.into(),
            email: format!("{id}@x.io"),
            role: "IT Admin".into(),
            status: Status::Active,
            origin: Origin::Auto,
            rule_id: Some(RuleId(1)),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            history: vec![],
        }
    }
}

#[cfg(test)]
mod conformance;
