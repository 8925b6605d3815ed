//! [`MemoryStore`]: the whole [`Store`] in memory, for unit tests of the pipeline and the
//! commands that need no disk. Same semantics as the sled store: rule, file and audit
//! numbers are never reused, a commit writes all of itself or nothing, `last_applied` and
//! the first file of given bytes are remembered, remote registrations until a commit takes
//! them, backups in the same format. The tests of `super::conformance` run the same checks
//! against both stores, so the two cannot drift apart.

use super::backup_format::{BACKUP_SCHEMA, Writer, meta, trees};
use super::{
    AccountRef, AccountsToken, AuditEntry, AuditNote, Commit, FileEntry, Ready, RemoteOrigin,
    Store, StoreResult,
};
use crate::core::accounts::{Account, AccountGroup, HeldGroup, group_of};
use crate::core::columns::fold_value;
use crate::core::rules::{Rule, RuleId};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

/// Everything the store holds; each map in the order the sled store's tree iterates.
#[derive(Default)]
struct State {
    next_rule_id: u64,
    next_file_id: u64,
    next_audit_seq: u64,
    last_applied: Option<u64>,
    rules: BTreeMap<u64, Rule>,
    accounts: BTreeMap<String, Account>,
    files: BTreeMap<u64, FileEntry>,
    sha_index: BTreeMap<String, u64>,
    audit: Vec<AuditEntry>,
    remote: BTreeMap<String, RemoteOrigin>,
    /// Not in backups, as the sled store's.
    accounts_token: Option<AccountsToken>,
}

impl State {
    /// A token no write of this process gave before (a count: tokens only need to differ).
    fn new_token(&mut self) {
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut token = AccountsToken::default();
        token[..8].copy_from_slice(&n.to_be_bytes());
        self.accounts_token = Some(token);
    }

    fn append_audit(&mut self, note: AuditNote) {
        self.next_audit_seq += 1;
        self.audit.push(AuditEntry {
            seq: self.next_audit_seq,
            note,
            rolled_back: None,
        });
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The state, even after a test thread panicked while holding it.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `meta` records a backup of the sled store holds, in its key order.
    fn meta_records(state: &State) -> BTreeMap<&'static [u8], Vec<u8>> {
        let mut records = BTreeMap::new();
        records.insert(meta::SCHEMA, BACKUP_SCHEMA.as_bytes().to_vec());
        if let Some(id) = state.last_applied {
            records.insert(meta::LAST_APPLIED, id.to_be_bytes().to_vec());
        }
        // A counter exists once it was first taken.
        for (key, value) in [
            (meta::NEXT_RULE_ID, state.next_rule_id),
            (meta::NEXT_FILE_ID, state.next_file_id),
            (meta::NEXT_AUDIT_SEQ, state.next_audit_seq),
        ] {
            if value > 0 {
                records.insert(key, value.to_be_bytes().to_vec());
            }
        }
        records
    }

    fn write_backup(state: &State, w: &mut Writer<'_>) -> std::io::Result<()> {
        for (key, value) in Self::meta_records(state) {
            w.bytes(trees::META, key, &value)?;
        }
        for (id, rule) in &state.rules {
            w.json(trees::RULES, &id.to_be_bytes(), json(rule)?)?;
        }
        for account in state.accounts.values() {
            w.account(account)?;
        }
        for (id, file) in &state.files {
            w.json(trees::FILES, &id.to_be_bytes(), json(file)?)?;
        }
        for (sha, id) in &state.sha_index {
            w.bytes(trees::SHA_INDEX, sha.as_bytes(), &id.to_be_bytes())?;
        }
        for entry in &state.audit {
            w.json(trees::AUDIT, &entry.seq.to_be_bytes(), json(entry)?)?;
        }
        for (name, origin) in &state.remote {
            w.json(trees::REMOTE, name.as_bytes(), json(origin)?)?;
        }
        Ok(())
    }
}

/// A record as the JSON value the sled store would hold.
fn json<T: serde::Serialize>(record: &T) -> std::io::Result<serde_json::Value> {
    Ok(serde_json::to_value(record)?)
}

impl Store for MemoryStore {
    fn rules(&self) -> StoreResult<Vec<Rule>> {
        Ok(self.state().rules.values().cloned().collect())
    }

    fn rule(&self, id: RuleId) -> StoreResult<Option<Rule>> {
        Ok(self.state().rules.get(&id.0).cloned())
    }

    fn next_rule_id(&self) -> StoreResult<RuleId> {
        let mut state = self.state();
        state.next_rule_id += 1;
        Ok(RuleId(state.next_rule_id))
    }

    fn put_rule(&self, rule: &Rule, audit: AuditNote) -> StoreResult<()> {
        let mut state = self.state();
        state.rules.insert(rule.id.0, rule.clone());
        state.new_token();
        state.append_audit(audit);
        Ok(())
    }

    fn delete_rule(&self, id: RuleId, audit: AuditNote) -> StoreResult<()> {
        let mut state = self.state();
        state.rules.remove(&id.0);
        state.new_token();
        state.append_audit(audit);
        Ok(())
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        Ok(self.state().accounts.values().cloned().collect())
    }

    fn scan_accounts(&self, f: &mut dyn FnMut(&AccountRef<'_>)) -> StoreResult<()> {
        // A copy, so that `f` may call the store as it may with the sled store.
        let accounts = self.accounts()?;
        accounts.iter().for_each(|a| f(&AccountRef::of(a)));
        Ok(())
    }

    fn read_group(&self, g: usize, f: &mut dyn FnMut(&dyn AccountGroup)) -> StoreResult<()> {
        // A copy, so that `f` may call the store as it may with the sled store.
        let accounts: Vec<Account> = self
            .state()
            .accounts
            .values()
            .filter(|a| group_of(&a.employee_id) == g)
            .cloned()
            .collect();
        f(&HeldGroup::new(&accounts));
        Ok(())
    }

    /// Every other account to `upper`, one after another (so both halves are exercised).
    fn scan_accounts_split(
        &self,
        lower: &mut (dyn FnMut(&AccountRef<'_>) + Send),
        upper: &mut (dyn FnMut(&AccountRef<'_>) + Send),
    ) -> StoreResult<()> {
        let accounts = self.accounts()?;
        for (i, a) in accounts.iter().enumerate() {
            match i % 2 {
                0 => lower(&AccountRef::of(a)),
                _ => upper(&AccountRef::of(a)),
            }
        }
        Ok(())
    }

    fn account(&self, employee_id: &str) -> StoreResult<Option<Account>> {
        Ok(self.state().accounts.get(employee_id).cloned())
    }

    /// Reads every account: no index to keep, and tests hold few.
    fn accounts_by_email(&self, email: &str) -> StoreResult<Vec<Account>> {
        let wanted = fold_value(email);
        Ok(self
            .state()
            .accounts
            .values()
            .filter(|a| fold_value(&a.email) == wanted)
            .cloned()
            .collect())
    }

    fn put_account(&self, account: &Account, remove: bool, audit: AuditNote) -> StoreResult<()> {
        let mut state = self.state();
        match remove {
            true => state.accounts.remove(&account.employee_id),
            false => state
                .accounts
                .insert(account.employee_id.clone(), account.clone()),
        };
        state.new_token();
        state.append_audit(audit);
        Ok(())
    }

    /// Nothing below can fail, so under the lock the commit is all or nothing.
    fn filed(&self, entry: &FileEntry) -> StoreResult<()> {
        let cleared = FileEntry {
            pending_move: None,
            ..entry.clone()
        };
        self.state().files.insert(entry.id, cleared);
        Ok(())
    }

    fn commit_when(&self, commit: Commit<'_>, ready: Ready<'_>) -> StoreResult<()> {
        ready()?;
        let mut state = self.state();
        let mut written = false;
        for account in commit.updates.accounts() {
            state.accounts.insert(account.employee_id.clone(), account);
            written = true;
        }
        match commit.accounts_token {
            Some(change) if change.from == state.accounts_token => {
                state.accounts_token = Some(change.to)
            }
            _ if written => state.new_token(),
            _ => {}
        }
        if let Some(name) = commit.clear_remote {
            state.remote.remove(name);
        }
        if let Some(file) = commit.file {
            state.files.insert(file.id, file.clone());
            state
                .sha_index
                .entry(file.sha256.clone())
                .or_insert(file.id);
        }
        if let Some(id) = commit.last_applied {
            state.last_applied = Some(id);
        }
        if let Some(note) = commit.audit {
            state.append_audit(note);
        }
        Ok(())
    }

    fn next_file_id(&self) -> StoreResult<u64> {
        let mut state = self.state();
        state.next_file_id += 1;
        Ok(state.next_file_id)
    }

    fn files(&self) -> StoreResult<Vec<FileEntry>> {
        Ok(self.state().files.values().cloned().collect())
    }

    fn file(&self, id: u64) -> StoreResult<Option<FileEntry>> {
        Ok(self.state().files.get(&id).cloned())
    }

    fn file_by_sha(&self, sha256: &str) -> StoreResult<Option<FileEntry>> {
        let state = self.state();
        Ok(state
            .sha_index
            .get(sha256)
            .and_then(|id| state.files.get(id))
            .cloned())
    }

    fn accounts_token(&self) -> StoreResult<Option<AccountsToken>> {
        Ok(self.state().accounts_token)
    }

    fn last_applied(&self) -> StoreResult<Option<FileEntry>> {
        let state = self.state();
        Ok(state
            .last_applied
            .and_then(|id| state.files.get(&id))
            .cloned())
    }

    fn audit(&self, since: Option<&str>) -> StoreResult<Vec<AuditEntry>> {
        Ok(self
            .state()
            .audit
            .iter()
            .filter(|e| since.is_none_or(|t| e.note.at.as_str() >= t))
            .cloned()
            .collect())
    }

    fn append_audit(&self, note: AuditNote) -> StoreResult<()> {
        self.state().append_audit(note);
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    fn durable(&self) -> StoreResult<()> {
        Ok(())
    }

    fn register_remote(&self, inbox_name: &str, origin: &RemoteOrigin) -> StoreResult<()> {
        self.state()
            .remote
            .insert(inbox_name.to_string(), origin.clone());
        Ok(())
    }

    fn remote_registration(&self, inbox_name: &str) -> StoreResult<Option<RemoteOrigin>> {
        Ok(self.state().remote.get(inbox_name).cloned())
    }

    fn remote_registrations(&self) -> StoreResult<Vec<(String, RemoteOrigin)>> {
        Ok(self
            .state()
            .remote
            .iter()
            .map(|(name, origin)| (name.clone(), origin.clone()))
            .collect())
    }

    fn unregister_remote(&self, inbox_name: &str) -> StoreResult<()> {
        self.state().remote.remove(inbox_name);
        Ok(())
    }

    fn export(&self, out: &mut dyn std::io::Write, created_at: &str) -> std::io::Result<u64> {
        let state = self.state();
        let mut writer = Writer::start(out, created_at)?;
        Self::write_backup(&state, &mut writer)?;
        writer.finish()
    }
}
