//! The sled implementation of [`Store`]: one tree per kind of record, JSON values, except
//! accounts, which are kept in buckets of compact binary records (see [`super::buckets`]).

use super::buckets;
use super::{
    AuditEntry, AuditNote, Commit, FileEntry, RemoteOrigin, Store, StoreError, StoreResult,
};
use crate::core::accounts::Account;
use crate::core::parallel::join;
use crate::core::rules::{Rule, RuleId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::collections::BTreeMap;
use std::path::Path;

/// The schema this build writes and reads.
const SCHEMA: &[u8] = b"autoprov-2";
/// The schema before accounts were bucketed (one JSON record per account in `accounts`);
/// such a store is migrated when it is opened.
const SCHEMA_V1: &[u8] = b"autoprov-1";
/// The tree of account buckets (schema 2).
const ACCOUNT_BUCKETS: &str = "account_buckets";
/// The tree of schema 1's accounts, and the name accounts have in backups.
const ACCOUNTS_V1: &str = "accounts";
/// The record layout of backups. Accounts are written one JSON record per account, as
/// schema 1 stored them, so backups of either schema restore into this one.
const BACKUP_SCHEMA: &str = "autoprov-1";

const NEXT_RULE_ID: &[u8] = b"next_rule_id";
const NEXT_FILE_ID: &[u8] = b"next_file_id";
const NEXT_AUDIT_SEQ: &[u8] = b"next_audit_seq";
const LAST_APPLIED: &[u8] = b"last_applied";
const SCHEMA_KEY: &[u8] = b"schema";

/// The sled store.
pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    rules: sled::Tree,
    accounts: sled::Tree,
    files: sled::Tree,
    sha_index: sled::Tree,
    audit: sled::Tree,
    remote: sled::Tree,
    path: std::path::PathBuf,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records always serialize")
}

fn decode<'a, T: serde::Deserialize<'a>>(
    tree: &str,
    key: &[u8],
    bytes: &'a [u8],
) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        StoreError::Corrupt(format!(
            "record {:?} in {tree}: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn u64_of(bytes: Option<sled::IVec>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn tx_next(meta: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    let next = u64_of(meta.get(key)?) + 1;
    meta.insert(key, &next.to_be_bytes())?;
    Ok(next)
}

fn tx_audit(meta: &TransactionalTree, audit: &TransactionalTree, note: &AuditNote) -> TxResult<()> {
    let seq = tx_next(meta, NEXT_AUDIT_SEQ)?;
    let entry = AuditEntry {
        seq,
        note: note.clone(),
    };
    audit.insert(&seq.to_be_bytes(), encode(&entry))?;
    Ok(())
}

/// A bucket rewritten ahead of its transaction: what it held when it was read, and what
/// it holds after (`None`: removed, it is empty).
struct StagedBucket {
    key: buckets::BucketKey,
    before: Option<sled::IVec>,
    after: Option<sled::IVec>,
}

/// Writes staged buckets, after checking that each still holds what it was staged from.
/// Nothing else writes accounts while the engine commits (it does one thing at a time),
/// so the check only guards against a mistake.
fn tx_write_buckets(tree: &TransactionalTree, staged: &[StagedBucket]) -> TxResult<()> {
    for bucket in staged {
        if tree.get(bucket.key)? != bucket.before {
            return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                "accounts changed while a commit was prepared; nothing was written".into(),
            )));
        }
        match &bucket.after {
            Some(bytes) => tree.insert(&bucket.key, bytes.clone())?,
            None => tree.remove(&bucket.key)?,
        };
    }
    Ok(())
}

fn unwrap_tx<T>(r: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
    }
}

impl SledStore {
    /// Opens (creating if needed) the store at `path` and checks every record decodes.
    pub fn open(path: &Path) -> StoreResult<SledStore> {
        super::watermark::remove_unfinished_snapshots(path).map_err(sled::Error::Io)?;
        // sled may panic on some damaged files instead of returning an error.
        let opened = std::panic::catch_unwind(|| sled::Config::new().path(path).open());
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(e))) => return Err(StoreError::Sled(sled::Error::Io(e))),
            Ok(Err(e)) => return Err(StoreError::Corrupt(e.to_string())),
            Err(_) => {
                return Err(StoreError::Corrupt(format!(
                    "sled could not read {} (it panicked while opening it)",
                    path.display()
                )));
            }
        };
        let store = SledStore {
            meta: db.open_tree("meta")?,
            rules: db.open_tree("rules")?,
            accounts: db.open_tree(ACCOUNT_BUCKETS)?,
            files: db.open_tree("files")?,
            sha_index: db.open_tree("sha_index")?,
            audit: db.open_tree("audit")?,
            remote: db.open_tree("remote")?,
            db,
            path: path.to_path_buf(),
        };
        let migrate = match store.meta.get(SCHEMA_KEY)? {
            None if store.is_empty() => {
                store.meta.insert(SCHEMA_KEY, SCHEMA)?;
                store.db.flush()?;
                false
            }
            Some(v) if v.as_ref() == SCHEMA => false,
            Some(v) if v.as_ref() == SCHEMA_V1 => true,
            Some(v) => {
                return Err(StoreError::Corrupt(format!(
                    "schema {:?} is not {:?}",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(SCHEMA)
                )));
            }
            None => return Err(StoreError::Corrupt("schema marker missing".into())),
        };
        // Before anything is written (a flush moves the watermark): a store that lost
        // committed changes is refused, not migrated.
        if let Some(lost) = super::watermark::check(path, store.counters()?) {
            return Err(StoreError::Corrupt(lost));
        }
        if migrate {
            store.migrate_v1()?;
        }
        store.verify()?;
        // Schema 1's accounts go only once their buckets have passed the check.
        store.drop_v1_accounts()?;
        Ok(store)
    }

    /// Reads the buckets in `groups` and builds what they hold after their updates, without
    /// the IDs in `remove` (which must belong to those buckets). Half of the buckets are
    /// built on a second core: a first import encodes a million accounts here.
    fn stage_buckets(
        &self,
        groups: &BTreeMap<buckets::BucketKey, Vec<&Account>>,
        remove: &[&str],
    ) -> StoreResult<Vec<StagedBucket>> {
        let groups: Vec<(&buckets::BucketKey, &Vec<&Account>)> = groups.iter().collect();
        let (first, second) = groups.split_at(groups.len() / 2);
        let stage = |part: &[(&buckets::BucketKey, &Vec<&Account>)]| {
            part.iter()
                .map(|(key, updates)| {
                    let before = self.accounts.get(key)?;
                    let existing = match &before {
                        Some(bytes) => buckets::decode(*key, bytes)?,
                        None => Vec::new(),
                    };
                    let merged = buckets::merge(&existing, updates, remove);
                    Ok(StagedBucket {
                        key: **key,
                        before,
                        after: (!merged.is_empty())
                            .then(|| sled::IVec::from(buckets::encode(&merged))),
                    })
                })
                .collect::<StoreResult<Vec<StagedBucket>>>()
        };
        let (staged, rest) = join(|| stage(first), || stage(second));
        let mut staged = staged?;
        staged.extend(rest?);
        Ok(staged)
    }

    /// Whether a process (this one included) holds the store's lock; found without opening
    /// the store, so nothing in it is recovered, migrated or written.
    pub fn is_locked(path: &Path) -> bool {
        let Ok(file) = std::fs::File::open(path.join("db")) else {
            return false;
        };
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err()
    }

    /// How far the counters have gone (see `watermark`).
    fn counters(&self) -> StoreResult<super::watermark::Counters> {
        Ok(super::watermark::Counters {
            audit_seq: u64_of(self.meta.get(NEXT_AUDIT_SEQ)?),
            file_id: u64_of(self.meta.get(NEXT_FILE_ID)?),
            rule_id: u64_of(self.meta.get(NEXT_RULE_ID)?),
        })
    }

    fn is_empty(&self) -> bool {
        [
            &self.meta,
            &self.rules,
            &self.accounts,
            &self.files,
            &self.audit,
        ]
        .iter()
        .all(|t| t.is_empty())
    }

    /// Schema 1 → 2: moves the accounts into buckets, in one transaction with the new
    /// schema marker. The old tree stays until the buckets pass the start-up check.
    fn migrate_v1(&self) -> StoreResult<()> {
        if !self.accounts.is_empty() {
            return Err(StoreError::Corrupt(
                "schema 1 store already holds account buckets".into(),
            ));
        }
        let old = self.db.open_tree(ACCOUNTS_V1)?;
        let mut accounts = Vec::new();
        for item in old.iter() {
            let (key, value) = item?;
            let account: Account = decode(ACCOUNTS_V1, &key, &value)?;
            if account.employee_id.as_bytes() != key.as_ref() {
                return Err(StoreError::Corrupt(format!(
                    "record {:?} in {ACCOUNTS_V1} holds account {:?}",
                    String::from_utf8_lossy(&key),
                    account.employee_id
                )));
            }
            accounts.push(account);
        }
        // sled iterates keys in byte order, so the accounts are sorted and unique.
        let groups = buckets::group(&accounts);
        let r = (&self.accounts, &self.meta).transaction(|(tree, meta)| {
            for (key, group) in &groups {
                tree.insert(key, buckets::encode(group))?;
            }
            meta.insert(SCHEMA_KEY, SCHEMA)?;
            Ok(())
        });
        unwrap_tx(r)?;
        self.flush()?;
        tracing::info!(
            accounts = accounts.len(),
            "store migrated to schema 2 (account buckets)"
        );
        Ok(())
    }

    /// Drops schema 1's account tree if a migration stopped before it could.
    fn drop_v1_accounts(&self) -> StoreResult<()> {
        if self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == ACCOUNTS_V1.as_bytes())
        {
            self.db.drop_tree(ACCOUNTS_V1)?;
            self.flush()?;
        }
        Ok(())
    }

    /// Decodes every record; the start-up integrity check.
    pub fn verify(&self) -> StoreResult<()> {
        self.rules()?;
        // Half of the buckets on a second core: a million accounts are checked at every start.
        let check = |range: sled::Iter| -> StoreResult<()> {
            for item in range {
                let (k, v) = item?;
                buckets::check(&k, &v)?;
            }
            Ok(())
        };
        let half = ((buckets::BUCKETS / 2) as u16).to_be_bytes();
        let (lower, upper) = join(
            || check(self.accounts.range(..half)),
            || check(self.accounts.range(half..)),
        );
        lower.and(upper)?;
        self.files()?;
        self.audit(None)?;
        Ok(())
    }

    fn list<T: DeserializeOwned>(tree: &sled::Tree, name: &str) -> StoreResult<Vec<T>> {
        tree.iter()
            .map(|item| {
                let (k, v) = item?;
                decode(name, &k, &v)
            })
            .collect()
    }

    fn get<T: DeserializeOwned>(
        tree: &sled::Tree,
        name: &str,
        key: &[u8],
    ) -> StoreResult<Option<T>> {
        tree.get(key)?.map(|v| decode(name, key, &v)).transpose()
    }

    fn bump(&self, key: &[u8]) -> StoreResult<u64> {
        let next = self.meta.update_and_fetch(key, |old| {
            Some(
                (u64_of(old.map(sled::IVec::from)) + 1)
                    .to_be_bytes()
                    .to_vec(),
            )
        })?;
        self.flush()?;
        Ok(u64_of(next))
    }
}

/// The first line of a backup file.
#[derive(Debug, Serialize, serde::Deserialize)]
struct BackupHeader {
    format: String,
    version: u32,
    schema: String,
    created_at: String,
}

/// One record of a backup file; the last line is `{"end": N}` with the record count.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(untagged)]
enum BackupLine {
    Record {
        tree: String,
        key: String,
        value: serde_json::Value,
    },
    End {
        end: u64,
    },
}

/// The trees a backup may hold (accounts as schema 1 laid them out).
const BACKUP_TREES: [&str; 7] = [
    "meta",
    "rules",
    ACCOUNTS_V1,
    "files",
    "sha_index",
    "audit",
    "remote",
];

/// Identifies autoprov backup files.
pub const BACKUP_FORMAT: &str = "autoprov-backup";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SledStore {
    fn trees(&self) -> [(&'static str, &sled::Tree); 7] {
        [
            ("meta", &self.meta),
            ("rules", &self.rules),
            (ACCOUNTS_V1, &self.accounts),
            ("files", &self.files),
            ("sha_index", &self.sha_index),
            ("audit", &self.audit),
            ("remote", &self.remote),
        ]
    }

    /// Writes the whole store as a portable, versioned backup (JSON lines); returns the record count.
    pub fn export_all(
        &self,
        out: &mut dyn std::io::Write,
        created_at: &str,
    ) -> std::io::Result<u64> {
        let header = BackupHeader {
            format: BACKUP_FORMAT.into(),
            version: 1,
            schema: BACKUP_SCHEMA.into(),
            created_at: created_at.into(),
        };
        serde_json::to_writer(&mut *out, &header)?;
        out.write_all(b"\n")?;
        let mut n = 0;
        let mut write = |line: &BackupLine| -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, line)?;
            out.write_all(b"\n")?;
            n += 1;
            Ok(())
        };
        for (name, tree) in self.trees() {
            for item in tree.iter() {
                let (k, v) = item.map_err(std::io::Error::other)?;
                if name == ACCOUNTS_V1 {
                    for account in buckets::decode(&k, &v).map_err(std::io::Error::other)? {
                        write(&BackupLine::Record {
                            tree: name.into(),
                            key: hex(account.employee_id.as_bytes()),
                            value: serde_json::to_value(&account)?,
                        })?;
                    }
                    continue;
                }
                // The backup's record layout is schema 1's, and says so: a schema 1 build
                // restores it as it stands.
                let v = match (name, k.as_ref()) {
                    ("meta", SCHEMA_KEY) => sled::IVec::from(BACKUP_SCHEMA.as_bytes()),
                    _ => v,
                };
                // Values are JSON except counters in meta, which are stored as hex too.
                let value = match serde_json::from_slice::<serde_json::Value>(&v) {
                    Ok(json) if name != "meta" && name != "sha_index" => json,
                    _ => serde_json::Value::String(format!("hex:{}", hex(&v))),
                };
                write(&BackupLine::Record {
                    tree: name.into(),
                    key: hex(&k),
                    value,
                })?;
            }
        }
        serde_json::to_writer(&mut *out, &BackupLine::End { end: n })?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(n)
    }

    /// Creates a new store at `path` (which must not exist) from a backup, checking it whole first.
    pub fn import(path: &Path, input: impl std::io::BufRead) -> StoreResult<u64> {
        let bad = |m: String| StoreError::Corrupt(format!("backup: {m}"));
        let mut lines = input.lines();
        let header: BackupHeader = match lines.next() {
            Some(Ok(l)) => serde_json::from_str(&l).map_err(|e| bad(format!("header: {e}")))?,
            _ => return Err(bad("empty file".into())),
        };
        if header.format != BACKUP_FORMAT || header.version != 1 {
            return Err(bad(format!(
                "not an autoprov backup version 1 ({} {})",
                header.format, header.version
            )));
        }
        if header.schema != BACKUP_SCHEMA {
            return Err(bad(format!(
                "record layout {} is not {BACKUP_SCHEMA}",
                header.schema
            )));
        }
        let mut records = Vec::new();
        let mut accounts = Vec::new();
        let mut end = None;
        let mut read = 0u64;
        for line in lines {
            let line = line.map_err(|e| bad(e.to_string()))?;
            match serde_json::from_str::<BackupLine>(&line).map_err(|e| bad(e.to_string()))? {
                BackupLine::End { end: n } => {
                    end = Some(n);
                    break;
                }
                BackupLine::Record { tree, key, value } => {
                    read += 1;
                    if !BACKUP_TREES.contains(&tree.as_str()) {
                        return Err(bad(format!("unknown tree {tree:?}")));
                    }
                    let key = unhex(&key).ok_or_else(|| bad(format!("bad key in {tree}")))?;
                    let value = match &value {
                        serde_json::Value::String(s) if s.starts_with("hex:") => {
                            unhex(&s[4..]).ok_or_else(|| bad(format!("bad value in {tree}")))?
                        }
                        v => serde_json::to_vec(v).expect("json values serialize"),
                    };
                    if tree == ACCOUNTS_V1 {
                        let account: Account = serde_json::from_slice(&value).map_err(|e| {
                            bad(format!("account {}: {e}", String::from_utf8_lossy(&key)))
                        })?;
                        if account.employee_id.as_bytes() != key {
                            return Err(bad(format!(
                                "account {:?} filed under key {:?}",
                                account.employee_id,
                                String::from_utf8_lossy(&key)
                            )));
                        }
                        accounts.push(account);
                    } else if !(tree == "meta" && key == SCHEMA_KEY) {
                        records.push((tree, key, value));
                    }
                }
            }
        }
        match end {
            Some(n) if n == read => {}
            Some(n) => {
                return Err(bad(format!("{read} records where the end line says {n}")));
            }
            None => return Err(bad("truncated: no end line".into())),
        }
        accounts.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
        if let Some(w) = accounts
            .windows(2)
            .find(|w| w[0].employee_id == w[1].employee_id)
        {
            return Err(bad(format!("account {:?} twice", w[0].employee_id)));
        }
        if path.exists() {
            return Err(bad(format!("{} already exists", path.display())));
        }
        let write = || -> StoreResult<()> {
            let db = sled::Config::new().path(path).open()?;
            for (tree, key, value) in &records {
                db.open_tree(tree.as_str())?
                    .insert(key.as_slice(), value.as_slice())?;
            }
            let bucket_tree = db.open_tree(ACCOUNT_BUCKETS)?;
            for (key, group) in buckets::group(&accounts) {
                bucket_tree.insert(key, buckets::encode(&group))?;
            }
            db.open_tree("meta")?.insert(SCHEMA_KEY, SCHEMA)?;
            db.flush()?;
            Ok(())
        };
        if let Err(e) = write() {
            // Nothing half-built is left behind.
            let _ = std::fs::remove_dir_all(path);
            return Err(e);
        }
        Ok(read)
    }
}

impl Store for SledStore {
    fn rules(&self) -> StoreResult<Vec<Rule>> {
        Self::list(&self.rules, "rules")
    }

    fn rule(&self, id: RuleId) -> StoreResult<Option<Rule>> {
        Self::get(&self.rules, "rules", &id.0.to_be_bytes())
    }

    fn next_rule_id(&self) -> StoreResult<RuleId> {
        self.bump(NEXT_RULE_ID).map(RuleId)
    }

    fn put_rule(&self, rule: &Rule, note: AuditNote) -> StoreResult<()> {
        let r = (&self.rules, &self.meta, &self.audit).transaction(|(rules, meta, audit)| {
            rules.insert(&rule.id.0.to_be_bytes(), encode(rule))?;
            tx_audit(meta, audit, &note)
        });
        unwrap_tx(r)?;
        self.flush()
    }

    fn delete_rule(&self, id: RuleId, note: AuditNote) -> StoreResult<()> {
        let r = (&self.rules, &self.meta, &self.audit).transaction(|(rules, meta, audit)| {
            rules.remove(&id.0.to_be_bytes())?;
            tx_audit(meta, audit, &note)
        });
        unwrap_tx(r)?;
        self.flush()
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        // Not `with_capacity(self.accounts.len())`: sled counts a tree by scanning all of it.
        let mut out = Vec::new();
        for item in self.accounts.iter() {
            let (k, v) = item?;
            out.extend(buckets::decode(&k, &v)?);
        }
        Ok(out)
    }

    fn scan_accounts(&self, f: &mut dyn FnMut(&super::AccountRef<'_>)) -> StoreResult<()> {
        for item in self.accounts.iter() {
            let (k, v) = item?;
            buckets::borrow(&k, &v)?.iter().for_each(&mut *f);
        }
        Ok(())
    }

    fn account(&self, employee_id: &str) -> StoreResult<Option<Account>> {
        let key = buckets::bucket_of(employee_id);
        let Some(bytes) = self.accounts.get(key)? else {
            return Ok(None);
        };
        let mut bucket = buckets::decode(&key, &bytes)?;
        Ok(bucket
            .binary_search_by(|a| a.employee_id.as_str().cmp(employee_id))
            .ok()
            .map(|i| bucket.swap_remove(i)))
    }

    fn put_account(&self, account: &Account, remove: bool, note: AuditNote) -> StoreResult<()> {
        let (updates, removed) = match remove {
            true => (vec![], vec![account.employee_id.as_str()]),
            false => (vec![account], vec![]),
        };
        let groups = BTreeMap::from([(buckets::bucket_of(&account.employee_id), updates)]);
        let staged = self.stage_buckets(&groups, &removed)?;
        let r = (&self.accounts, &self.meta, &self.audit).transaction(|(accounts, meta, audit)| {
            tx_write_buckets(accounts, &staged)?;
            tx_audit(meta, audit, &note)
        });
        unwrap_tx(r)?;
        self.flush()
    }

    fn commit(&self, commit: Commit<'_>) -> StoreResult<()> {
        // The buckets are merged and encoded first, and the accounts let go: at a first
        // import of a million rows they are ~550 MB the transaction does not need.
        let staged = self.stage_buckets(&buckets::group(&commit.updates), &[])?;
        drop(commit.updates);
        let r = (
            &self.accounts,
            &self.files,
            &self.sha_index,
            &self.meta,
            &self.audit,
            &self.remote,
        )
            .transaction(|(accounts, files, sha_index, meta, audit, remote)| {
                if let Some(name) = commit.clear_remote {
                    remote.remove(name.as_bytes())?;
                }
                tx_write_buckets(accounts, &staged)?;
                if let Some(file) = commit.file {
                    files.insert(&file.id.to_be_bytes(), encode(file))?;
                    if sha_index.get(file.sha256.as_bytes())?.is_none() {
                        sha_index.insert(file.sha256.as_bytes(), &file.id.to_be_bytes())?;
                    }
                }
                if let Some(id) = commit.last_applied {
                    meta.insert(LAST_APPLIED, &id.to_be_bytes())?;
                }
                if let Some(note) = &commit.audit {
                    tx_audit(meta, audit, note)?;
                }
                Ok(())
            });
        unwrap_tx(r)?;
        self.flush()
    }

    fn next_file_id(&self) -> StoreResult<u64> {
        self.bump(NEXT_FILE_ID)
    }

    fn files(&self) -> StoreResult<Vec<FileEntry>> {
        Self::list(&self.files, "files")
    }

    fn file(&self, id: u64) -> StoreResult<Option<FileEntry>> {
        Self::get(&self.files, "files", &id.to_be_bytes())
    }

    fn file_by_sha(&self, sha256: &str) -> StoreResult<Option<FileEntry>> {
        match self.sha_index.get(sha256.as_bytes())? {
            Some(id) => self.file(u64_of(Some(id))),
            None => Ok(None),
        }
    }

    fn last_applied(&self) -> StoreResult<Option<FileEntry>> {
        match self.meta.get(LAST_APPLIED)? {
            Some(id) => self.file(u64_of(Some(id))),
            None => Ok(None),
        }
    }

    fn audit(&self, since: Option<&str>) -> StoreResult<Vec<AuditEntry>> {
        let all: Vec<AuditEntry> = Self::list(&self.audit, "audit")?;
        Ok(match since {
            Some(t) => all
                .into_iter()
                .filter(|e| e.note.at.as_str() >= t)
                .collect(),
            None => all,
        })
    }

    fn append_audit(&self, note: AuditNote) -> StoreResult<()> {
        let r = (&self.meta, &self.audit).transaction(|(meta, audit)| tx_audit(meta, audit, &note));
        unwrap_tx(r)?;
        self.flush()
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush()?;
        super::watermark::record(&self.path, self.counters()?).map_err(sled::Error::Io)?;
        Ok(())
    }

    fn export(&self, out: &mut dyn std::io::Write, created_at: &str) -> std::io::Result<u64> {
        self.export_all(out, created_at)
    }

    fn register_remote(&self, inbox_name: &str, origin: &RemoteOrigin) -> StoreResult<()> {
        self.remote.insert(inbox_name.as_bytes(), encode(origin))?;
        self.flush()
    }

    fn remote_registration(&self, inbox_name: &str) -> StoreResult<Option<RemoteOrigin>> {
        Self::get(&self.remote, "remote", inbox_name.as_bytes())
    }

    fn remote_registrations(&self) -> StoreResult<Vec<(String, RemoteOrigin)>> {
        self.remote
            .iter()
            .map(|item| {
                let (k, v) = item?;
                let origin = decode("remote", &k, &v)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), origin))
            })
            .collect()
    }

    fn unregister_remote(&self, inbox_name: &str) -> StoreResult<()> {
        self.remote.remove(inbox_name.as_bytes())?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::accounts::Status;
    use crate::store::FileStatus;

    /// sled's background flusher may hold the lock file a moment after the last handle drops.
    fn reopen(path: &Path) -> SledStore {
        for _ in 0..50 {
            match SledStore::open(path) {
                Ok(s) => return s,
                Err(_) if SledStore::is_locked(path) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => panic!("reopen: {e:?}"),
            }
        }
        panic!("store still locked after 2.5 s")
    }

    fn note(action: &str) -> AuditNote {
        AuditNote {
            at: "2026-01-01T00:00:00Z".into(),
            user: "alice".into(),
            action: action.into(),
            detail: String::new(),
        }
    }

    use crate::store::samples::account;

    /// A store in schema 1's layout: one JSON record per account in `accounts`, under
    /// the given keys.
    fn schema_1_store(path: &Path, accounts: &[(&str, Account)]) {
        let db = sled::Config::new().path(path).open().unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(SCHEMA_KEY, SCHEMA_V1)
            .unwrap();
        let old = db.open_tree(ACCOUNTS_V1).unwrap();
        for (key, a) in accounts {
            old.insert(key.as_bytes(), encode(a)).unwrap();
        }
        db.flush().unwrap();
    }

    fn still_schema_1(path: &Path) {
        let db = sled::Config::new().path(path).open().unwrap();
        let schema = db.open_tree("meta").unwrap().get(SCHEMA_KEY).unwrap();
        assert_eq!(schema.unwrap().as_ref(), SCHEMA_V1, "not migrated");
        assert_eq!(
            db.open_tree(ACCOUNTS_V1).unwrap().len(),
            1,
            "the old accounts are kept"
        );
    }

    #[test]
    fn a_schema_1_store_that_lost_changes_or_is_inconsistent_is_refused_not_migrated() {
        // Behind its watermark (sled dropped a damaged log tail): refused as it stands.
        let dir = tempfile::tempdir().unwrap();
        schema_1_store(dir.path(), &[("E1", account("E1"))]);
        let ahead = crate::store::watermark::Counters {
            audit_seq: 5,
            file_id: 0,
            rule_id: 0,
        };
        crate::store::watermark::record(dir.path(), ahead).unwrap();
        match SledStore::open(dir.path()) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("audit"), "{msg}"),
            other => panic!("opened: {:?}", other.err()),
        }
        still_schema_1(dir.path());
        // An account filed under another employee's key.
        let dir = tempfile::tempdir().unwrap();
        schema_1_store(dir.path(), &[("E9", account("E1"))]);
        match SledStore::open(dir.path()) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("holds account"), "{msg}"),
            other => panic!("opened: {:?}", other.err()),
        }
        still_schema_1(dir.path());
    }

    #[test]
    fn the_lock_is_seen_without_opening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!SledStore::is_locked(dir.path()), "no store yet");
        let s = SledStore::open(dir.path()).unwrap();
        assert!(SledStore::is_locked(dir.path()));
        drop(s);
        drop(reopen(dir.path()));
    }

    #[test]
    fn a_schema_1_store_is_migrated_to_buckets_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let mut e2 = account("E2");
        e2.status = Status::Inactive;
        schema_1_store(dir.path(), &[("E1", account("E1")), ("E2", e2.clone())]);
        let s = reopen(dir.path());
        assert_eq!(s.account("E2").unwrap(), Some(e2));
        assert_eq!(s.accounts().unwrap().len(), 2);
        assert_eq!(s.meta.get(SCHEMA_KEY).unwrap().unwrap().as_ref(), SCHEMA);
        assert!(
            !s.db
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == ACCOUNTS_V1.as_bytes()),
            "the old tree is gone"
        );
        drop(s);
        assert_eq!(
            reopen(dir.path()).accounts().unwrap().len(),
            2,
            "and stays migrated"
        );
    }

    #[test]
    fn manual_changes_rewrite_only_their_account() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let many: Vec<Account> = (0..5000).map(|i| account(&format!("E{i}"))).collect();
        s.commit(Commit {
            updates: many,
            file: None,
            last_applied: None,
            audit: None,
            clear_remote: None,
        })
        .unwrap();
        let mut changed = account("E42");
        changed.role = "Billing Admin".into();
        s.put_account(&changed, false, note("admins set")).unwrap();
        s.put_account(&account("E7"), true, note("admins remove"))
            .unwrap();
        let all = s.accounts().unwrap();
        let all = crate::core::accounts::index(&all);
        assert_eq!(all.len(), 4999);
        assert_eq!(all["E42"].role, "Billing Admin");
        assert!(!all.contains_key("E7"));
        assert_eq!(s.account("E42").unwrap().unwrap().role, "Billing Admin");
        assert_eq!(s.account("E7").unwrap(), None);
        assert_eq!(s.account("E4999").unwrap(), Some(account("E4999")));
        assert!(s.accounts.len() <= buckets::BUCKETS as usize);
    }

    #[test]
    fn a_bucket_changed_after_it_was_staged_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut staged_role = account("E1");
        staged_role.role = "HR Admin".into();
        let staged = s
            .stage_buckets(&buckets::group([&staged_role]), &[])
            .unwrap();
        let mut by_hand = account("E1");
        by_hand.role = "Billing Admin".into();
        s.put_account(&by_hand, false, note("admins add")).unwrap();
        let r = s.accounts.transaction(|t| tx_write_buckets(t, &staged));
        match unwrap_tx(r) {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("nothing was written"), "{msg}"),
            other => panic!("stale bucket written: {other:?}"),
        }
        assert_eq!(s.account("E1").unwrap().unwrap().role, "Billing Admin");
    }

    #[test]
    fn ids_are_never_reused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a;
        {
            let s = SledStore::open(dir.path()).unwrap();
            a = s.next_rule_id().unwrap();
            assert_eq!(a, RuleId(1));
            assert_eq!(s.next_rule_id().unwrap(), RuleId(2));
        }
        let s = reopen(dir.path());
        assert_eq!(s.next_rule_id().unwrap(), RuleId(3));
    }

    #[test]
    fn commit_writes_accounts_ledger_last_applied_and_audit_together() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let file = FileEntry {
            id: 1,
            name: "r.csv".into(),
            stored_as: "20260101T000000Z_r.csv".into(),
            size: 10,
            sha256: "abc".into(),
            received_at: "t".into(),
            processed_at: "t".into(),
            status: FileStatus::Applied,
            summary: String::new(),
            pending_move: None,
            remote: None,
            remote_pending: false,
            was_held: false,
        };
        s.commit(Commit {
            updates: vec![account("E1"), account("E2")],
            file: Some(&file),
            last_applied: Some(1),
            audit: Some(note("apply")),
            clear_remote: None,
        })
        .unwrap();
        drop(s);
        let s = reopen(dir.path());
        assert_eq!(s.accounts().unwrap().len(), 2);
        assert_eq!(s.last_applied().unwrap().unwrap().name, "r.csv");
        assert_eq!(s.file_by_sha("abc").unwrap().unwrap().id, 1);
        assert_eq!(s.audit(None).unwrap()[0].note.action, "apply");
    }

    #[test]
    fn backup_round_trips_every_record_and_refuses_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("a")).unwrap();
        s.next_rule_id().unwrap();
        s.commit(Commit {
            updates: vec![account("E1"), account("E2")],
            file: None,
            last_applied: None,
            audit: Some(note("apply")),
            clear_remote: None,
        })
        .unwrap();
        let mut out = Vec::new();
        let n = s.export_all(&mut out, "now").unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(&format!("\"hex:{}\"", hex(BACKUP_SCHEMA.as_bytes()))),
            "the schema record names the backup's layout, schema 1"
        );
        assert!(
            !text.contains(ACCOUNT_BUCKETS),
            "accounts are exported one by one"
        );
        assert!(n >= 5, "{n}");
        let restored = dir.path().join("b");
        assert_eq!(SledStore::import(&restored, out.as_slice()).unwrap(), n);
        let r = reopen(&restored);
        let sorted = |s: &SledStore| {
            let mut all = s.accounts().unwrap();
            all.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
            all
        };
        assert_eq!(sorted(&r), sorted(&s));
        assert_eq!(r.next_rule_id().unwrap(), RuleId(2), "counters survive");
        let truncated = &out[..out.len() - 12];
        let err = SledStore::import(&dir.path().join("c"), truncated).unwrap_err();
        assert!(err.to_string().contains("backup"), "{err}");
        assert!(
            !dir.path().join("c").exists(),
            "nothing is created from a bad backup"
        );
    }

    #[test]
    fn a_damaged_record_is_refused_at_open() {
        // The check runs over two halves of the bucket range: damage in either is found,
        // and so is a key outside the range of bucket keys.
        let halves = ["first", "E1"].map(|id| u16::from_be_bytes(buckets::bucket_of(id)));
        assert!(halves[0] >= 2048 && halves[1] < 2048, "{halves:?}");
        for key in [
            buckets::bucket_of("first").to_vec(),
            buckets::bucket_of("E1").to_vec(),
            b"zzz".to_vec(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            {
                let s = SledStore::open(dir.path()).unwrap();
                s.commit(Commit {
                    updates: vec![account("E2")],
                    file: None,
                    last_applied: None,
                    audit: None,
                    clear_remote: None,
                })
                .unwrap();
                s.accounts
                    .insert(key.clone(), b"{not postcard".to_vec())
                    .unwrap();
                s.flush().unwrap();
            }
            match SledStore::open(dir.path()) {
                Err(StoreError::Corrupt(msg)) => assert!(msg.contains("account bucket"), "{msg}"),
                Err(e) => panic!("wrong error {e}"),
                Ok(_) => panic!("damaged store opened ({key:?})"),
            }
        }
    }
}
