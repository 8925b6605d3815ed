//! [`SledStore`]: the trees, opening (migrations, watermark and start-up check) and the
//! [`Store`] operations, each one transaction then a flush.

use super::heads_check::HeadsCheck;
use super::{
    ACCOUNT_BUCKETS, EMAIL_INDEX, SCHEMA, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5,
    backup, buckets, decode, email_index, encode, migrate, new_token, tx_audit, u64_of, unwrap_tx,
    versions, watermark,
};
use crate::core::accounts::{Account, AccountGroup};
use crate::core::packed::Packed;
use crate::core::parallel::join;
use crate::core::rules::{Rule, RuleId};
use crate::core::updates::Updates;
use crate::store::backup_format::{meta, trees};
use crate::store::{
    AccountRef, AccountsToken, AuditEntry, AuditNote, Commit, FileEntry, GroupReader, Ready,
    RemoteOrigin, Store, StoreError, StoreResult,
};
use email_index::Digest;
use serde::de::DeserializeOwned;
use sled::Transactional;
use std::path::Path;

/// The sled store.
pub struct SledStore {
    db: sled::Db,
    pub(super) meta: sled::Tree,
    rules: sled::Tree,
    pub(super) accounts: sled::Tree,
    pub(super) emails: sled::Tree,
    /// The directories of the account and index buckets ([`versions`]).
    pub(super) versions: sled::Tree,
    pub(super) files: sled::Tree,
    pub(super) sha_index: sled::Tree,
    pub(super) audit: sled::Tree,
    pub(super) remote: sled::Tree,
    path: std::path::PathBuf,
    /// The outcome of checking the email index against the accounts, once per open: the
    /// index answers nothing before it passed (see [`SledStore::verify_index`]).
    index_checked: std::sync::OnceLock<Result<(), String>>,
    /// The start-up check of the accounts' heads: made at open, or as the plan reads them
    /// ([`SledStore::open_checking_as_read`]).
    pub(super) heads: HeadsCheck,
    /// This open store among those of the process (the cache of pages tells them apart).
    pub(super) id: u64,
    /// The counters this process last wrote to the watermark: a flush that leaves them as
    /// they are (a file's mark cleared after its filing) does not write it again, two
    /// fsyncs of every file.
    recorded: std::sync::Mutex<Option<watermark::Counters>>,
    /// Readers scanning every bucket, and the versions waiting for them ([`super::pins`]).
    pub(super) pins: super::pins::Pins,
    /// Why a flush failed, once one did ([`Store::write_failed`]).
    write_failure: std::sync::OnceLock<String>,
    /// sled's log, opened with the store: its fsync reports a write error met since then by
    /// any writer. sled's own flush thread only logs the errors it meets, and a file opened
    /// at each sync is not told of an error another descriptor was told of (Linux reports
    /// it to each one open at the time): a commit after a failed background flush had been
    /// called durable and filed as applied.
    log: std::fs::File,
}

/// What the schema marker says must happen when the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    None,
    /// Schema 5: its layout is schema 6's with every page one bucket; only the marker.
    Paged,
    /// Schema 3 or 4: buckets stored uncompressed.
    Compress,
    FromV2,
    FromV1,
}

/// The number of a schema marker `autoprov-N`; 0 for anything else.
fn schema_number(marker: &[u8]) -> u64 {
    std::str::from_utf8(marker)
        .ok()
        .and_then(|m| m.strip_prefix("autoprov-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What [`SledStore::lock`] found.
pub enum Lock {
    /// No store there.
    NoStore,
    /// Held by this process until dropped.
    Held(nix::fcntl::Flock<std::fs::File>),
    /// Held by a process (this one included, through an open store).
    Taken,
}

impl SledStore {
    /// Opens (creating if needed) the store at `path`, migrates an older one, and checks
    /// every record decodes and the email index matches the accounts.
    pub fn open(path: &Path) -> StoreResult<SledStore> {
        Self::open_with(path, false)
    }

    /// [`SledStore::open`] for a command that reads every account's head first (`process`,
    /// `sync`): each bucket is checked as it is read ([`Store::read_group`] decodes it as the
    /// start-up check does), not also at open. Before anything else reads or writes the
    /// accounts, or anything is written, the buckets not read yet are checked; a damaged
    /// one is then refused as at open ([`SledStore::heads_checked`]). A store migrated or
    /// cleaned up at this open is checked whole at once.
    pub fn open_checking_as_read(path: &Path) -> StoreResult<SledStore> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, as_read: bool) -> StoreResult<SledStore> {
        watermark::remove_unfinished_snapshots(path).map_err(sled::Error::Io)?;
        let mut store = Self::with_trees(Self::open_db(path)?, path)?;
        let upgrade = store.upgrade()?;
        // Before anything is written (a flush moves the watermark): a store that lost
        // committed changes is refused, not migrated.
        if let Some(lost) = watermark::check(path, store.counters()?).map_err(sled::Error::Io)? {
            return Err(StoreError::Corrupt(lost));
        }
        if upgrade == Upgrade::FromV1 {
            let moved = migrate::v1_to_v2(&store.db, &store.meta)?;
            store.flush()?;
            tracing::info!(
                accounts = moved,
                "store migrated to schema 2 (account buckets)"
            );
        }
        if matches!(upgrade, Upgrade::FromV2 | Upgrade::FromV1) {
            let indexed = migrate::v2_to_v3(
                &versions::Versioned::uncompressed(
                    &store.accounts,
                    &store.versions,
                    ACCOUNT_BUCKETS,
                ),
                &store.emails,
                &store.meta,
                &store.versions,
            )?;
            store.flush()?;
            tracing::info!(
                accounts = indexed,
                "store migrated to schema 4 (email index)"
            );
        }
        if upgrade == Upgrade::Paged {
            store.name_empty_buckets()?;
            store.meta.insert(meta::SCHEMA, SCHEMA)?;
            store.flush()?;
            tracing::info!("store migrated to schema 6 (buckets in pages)");
        } else if upgrade != Upgrade::None {
            let buckets = store.compress_buckets()?;
            tracing::info!(
                buckets,
                "store migrated to schema 6 (buckets compressed, in pages)"
            );
        }
        let mut as_read = as_read && upgrade == Upgrade::None;
        if versions::unfinished(&store.versions)? {
            as_read = false;
            let removed = store.buckets().collect_garbage()? + store.index().collect_garbage()?;
            versions::finished(&store.versions)?;
            store.flush()?;
            tracing::info!(
                versions = removed,
                "bucket versions of a write that was not made current, or replaced, were removed"
            );
        }
        if as_read {
            store.verify_records()?;
            store.heads = HeadsCheck::deferred(HALVES.1);
        } else {
            store.verify()?;
        }
        // Schema 1's accounts go only once their buckets have passed the check: not at an
        // open that checks them as they are read (a later full open drops them).
        if !as_read && migrate::drop_v1_accounts(&store.db)? {
            store.flush()?;
        }
        Ok(store)
    }

    fn open_db(path: &Path) -> StoreResult<sled::Db> {
        // sled's background threads release the file lock of a store dropped in this
        // process a moment after the drop (a restore reopens the store it just built): a
        // lock held that briefly is waited for, one held by another process still refuses.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match Self::try_open_db(path) {
                Err(StoreError::Sled(sled::Error::Io(e)))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn try_open_db(path: &Path) -> StoreResult<sled::Db> {
        // sled may panic on some damaged files instead of returning an error.
        let opened = std::panic::catch_unwind(|| sled::Config::new().path(path).open());
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(sled::Error::Io(e))) => Err(StoreError::Sled(sled::Error::Io(e))),
            Ok(Err(e)) => Err(StoreError::Corrupt(e.to_string())),
            Err(_) => Err(StoreError::Corrupt(format!(
                "sled could not read {} (it panicked while opening it)",
                path.display()
            ))),
        }
    }

    fn with_trees(db: sled::Db, path: &Path) -> StoreResult<SledStore> {
        let log = std::fs::File::open(path.join("db")).map_err(sled::Error::Io)?;
        Ok(SledStore {
            log,
            meta: db.open_tree(trees::META)?,
            rules: db.open_tree(trees::RULES)?,
            accounts: db.open_tree(ACCOUNT_BUCKETS)?,
            emails: db.open_tree(EMAIL_INDEX)?,
            versions: db.open_tree(versions::TREE)?,
            files: db.open_tree(trees::FILES)?,
            sha_index: db.open_tree(trees::SHA_INDEX)?,
            audit: db.open_tree(trees::AUDIT)?,
            remote: db.open_tree(trees::REMOTE)?,
            db,
            path: path.to_path_buf(),
            index_checked: std::sync::OnceLock::new(),
            heads: HeadsCheck::done(),
            id: super::pages::new_store_id(),
            recorded: std::sync::Mutex::new(None),
            write_failure: std::sync::OnceLock::new(),
            pins: Default::default(),
        })
    }

    /// Reads the schema marker (writing it into a new, empty store).
    fn upgrade(&self) -> StoreResult<Upgrade> {
        match self.meta.get(meta::SCHEMA)? {
            None if self.is_empty() => {
                self.meta.insert(meta::SCHEMA, SCHEMA)?;
                self.name_empty_buckets()?;
                self.db.flush()?;
                Ok(Upgrade::None)
            }
            Some(v) if v.as_ref() == SCHEMA => Ok(Upgrade::None),
            Some(v) if v.as_ref() == SCHEMA_V5 => Ok(Upgrade::Paged),
            Some(v) if v.as_ref() == SCHEMA_V4 || v.as_ref() == SCHEMA_V3 => Ok(Upgrade::Compress),
            Some(v) if v.as_ref() == SCHEMA_V2 => Ok(Upgrade::FromV2),
            Some(v) if v.as_ref() == SCHEMA_V1 => Ok(Upgrade::FromV1),
            Some(v) if schema_number(&v) > schema_number(SCHEMA) => {
                Err(StoreError::Newer(format!(
                    "the store is of schema {:?}, written by a newer autoprov than this one \
                     (which reads up to {:?}): run that version or a later one; the store is \
                     left as it is",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(SCHEMA)
                )))
            }
            Some(v) => Err(StoreError::Corrupt(format!(
                "schema {:?} is not {:?}",
                String::from_utf8_lossy(&v),
                String::from_utf8_lossy(SCHEMA)
            ))),
            None => Err(StoreError::Corrupt("schema marker missing".into())),
        }
    }

    /// Writes the directories of bucket trees that have none and hold nothing, every bucket
    /// named empty: without a directory, every bucket is read as version 0 of a bucket that
    /// might have been removed under the reader, two reads each (at a first import of 10k
    /// accounts, 32k reads).
    fn name_empty_buckets(&self) -> StoreResult<()> {
        for v in [self.buckets(), self.index()] {
            if v.tree.is_empty() && v.is_legacy()? {
                v.name_all_empty()?;
            }
        }
        Ok(())
    }

    /// Whether a process (this one included) holds the store's lock; found without opening
    /// the store, so nothing in it is recovered, migrated or written.
    pub fn is_locked(path: &Path) -> bool {
        matches!(Self::lock(path), Lock::Taken)
    }

    /// Takes the store's lock (the one sled takes at its open) without opening it: held,
    /// no process can open the store until it is let go (a restore holds it until the
    /// restored store is in place, so that a daemon starting meanwhile cannot serve from
    /// the store being replaced).
    pub fn lock(path: &Path) -> Lock {
        let Ok(file) = std::fs::File::open(path.join("db")) else {
            return Lock::NoStore;
        };
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(held) => Lock::Held(held),
            Err(_) => Lock::Taken,
        }
    }

    /// Raises the counters to `at_least` where they are lower (a restored store, to those
    /// of the store it replaces: SPEC §2's rule ids are never reused, nor file ids), synced.
    pub fn raise_counters(&self, at_least: watermark::Counters) -> StoreResult<()> {
        for (key, floor) in [
            (meta::NEXT_AUDIT_SEQ, at_least.audit_seq),
            (meta::NEXT_FILE_ID, at_least.file_id),
            (meta::NEXT_RULE_ID, at_least.rule_id),
        ] {
            self.meta.update_and_fetch(key, |old| {
                let now = u64_of(old.map(sled::IVec::from));
                Some(now.max(floor).to_be_bytes().to_vec())
            })?;
        }
        self.flush()
    }

    /// How far the counters have gone (see `watermark`).
    fn counters(&self) -> StoreResult<watermark::Counters> {
        Ok(watermark::Counters {
            audit_seq: u64_of(self.meta.get(meta::NEXT_AUDIT_SEQ)?),
            file_id: u64_of(self.meta.get(meta::NEXT_FILE_ID)?),
            rule_id: u64_of(self.meta.get(meta::NEXT_RULE_ID)?),
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

    /// The start-up check of every record: rules, account buckets, ledger and audit entries
    /// must decode. The email index is checked on its own ([`SledStore::verify_index`]).
    pub fn verify(&self) -> StoreResult<()> {
        self.check_heads()?;
        self.verify_records()
    }

    /// The start-up check but for the accounts' heads.
    fn verify_records(&self) -> StoreResult<()> {
        self.rules()?;
        self.buckets().check_bounds()?;
        self.index().check_bounds()?;
        self.files()?;
        self.audit(None)?;
        Ok(())
    }

    /// Every bucket's heads decode, read in place: the checks of `decode`, no copy.
    fn check_heads(&self) -> StoreResult<()> {
        let check = |range| {
            self.buckets()
                .for_each(range, |k, v| buckets::heads(&k, v).map(drop))
        };
        let (half, all) = HALVES;
        let (lower, upper) = join(|| check(0..half), || check(half..all));
        lower.and(upper)
    }

    /// Completes a check of the heads left to be made as they are read
    /// ([`SledStore::open_checking_as_read`]), or gives its verdict (a bucket the plan found
    /// damaged included): called first by everything but [`Store::read_group`] that reads
    /// or writes the accounts, by every write, and before a command opened so answers.
    pub fn heads_checked(&self) -> StoreResult<()> {
        let verdict = self.heads.outcome(HALVES.1, || match self.check_heads() {
            Ok(()) => Ok(Ok(())),
            Err(StoreError::Corrupt(detail)) => Ok(Err(detail)),
            Err(other) => Err(other),
        })?;
        verdict.map_err(StoreError::Corrupt)
    }

    /// Checks the email index against the accounts (their count and a sum of pair hashes,
    /// and each index bucket's layout), once per open, before the index answers anything.
    /// Not at every open: a command that never asks the index (process, sync, status) does
    /// not pay for reading it. The daemon checks it at start-up, so a damaged index is refused
    /// there (naming the backup) and sign-ins never wait for the check. A mismatch means
    /// sled's files are damaged and neither side can be trusted: refused, not rebuilt (a
    /// restore rebuilds it).
    pub fn verify_index(&self) -> StoreResult<()> {
        self.heads_checked()?;
        if let Some(outcome) = self.index_checked.get() {
            return outcome.clone().map_err(StoreError::Corrupt);
        }
        // Only a verdict is kept: an I/O error while reading says nothing about the index.
        let outcome = match self.check_index() {
            Ok(()) => Ok(()),
            Err(StoreError::Corrupt(detail)) => Err(detail),
            Err(other) => return Err(other),
        };
        self.index_checked
            .get_or_init(|| outcome)
            .clone()
            .map_err(StoreError::Corrupt)
    }

    fn check_index(&self) -> StoreResult<()> {
        let check = |range: std::ops::Range<usize>| -> StoreResult<(Digest, Digest)> {
            let mut implied = Digest::default();
            self.buckets().for_each(range.clone(), |k, v| {
                for a in buckets::heads(&k, v)?.into_heads() {
                    implied.add(&email_index::fold(a.email), a.employee_id);
                }
                Ok(())
            })?;
            let mut held = Digest::default();
            self.index().for_each(range, |k, v| {
                held = held.merge(Digest::of_bucket(&k, v)?);
                Ok(())
            })?;
            Ok((implied, held))
        };
        let (half, all) = HALVES;
        let (lower, upper) = join(|| check(0..half), || check(half..all));
        let ((implied, held), (implied_2, held_2)) = (lower?, upper?);
        Digest::compare(implied.merge(implied_2), held.merge(held_2))
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

    /// Counter `key` incremented: its new value, not flushed (see the callers).
    fn bump(&self, key: &[u8]) -> StoreResult<u64> {
        self.heads_checked()?;
        let next = self.meta.update_and_fetch(key, |old| {
            Some(
                (u64_of(old.map(sled::IVec::from)) + 1)
                    .to_be_bytes()
                    .to_vec(),
            )
        })?;
        Ok(u64_of(next))
    }

    /// Writes the whole store as a portable, versioned backup (JSON lines); returns the record count.
    pub fn export_all(
        &self,
        out: &mut dyn std::io::Write,
        created_at: &str,
    ) -> std::io::Result<u64> {
        self.heads_checked().map_err(std::io::Error::other)?;
        let stored = [
            (trees::META, &self.meta),
            (trees::RULES, &self.rules),
            (trees::FILES, &self.files),
            (trees::SHA_INDEX, &self.sha_index),
            (trees::AUDIT, &self.audit),
            (trees::REMOTE, &self.remote),
        ];
        backup::export(&stored, &self.buckets(), out, created_at)
    }

    /// Test damage: the current version of `employee_id`'s bucket overwritten with bytes
    /// that do not decode (sled's own checks pass).
    #[cfg(test)]
    pub(crate) fn damage_bucket_of(&self, employee_id: &str) {
        let key = buckets::bucket_of(employee_id);
        let directory = self.buckets().directory().unwrap();
        let at = self
            .buckets()
            .page_key(&directory, buckets::number_of(key))
            .expect("the bucket holds the account");
        self.accounts.insert(at, b"{not lz4".to_vec()).unwrap();
        super::pages::forget_cached();
        self.db.flush().unwrap();
    }

    /// Creates a new store at `path` (which must not exist) from a backup, checking it whole
    /// first: how many records it held, when it was written, and whether it had a checksum.
    pub fn import(
        path: &Path,
        input: impl std::io::BufRead,
    ) -> StoreResult<(u64, String, crate::store::Checked)> {
        backup::import(path, input)
    }

    /// Puts `entries` into the audit under their own numbers, each where the audit has
    /// none (a restore: what the store it replaced recorded after the backup), flushed.
    pub fn keep_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        for entry in entries {
            let key = entry.seq.to_be_bytes();
            if self.audit.get(key)?.is_none() {
                self.audit.insert(key, encode(entry))?;
            }
        }
        crate::store::Store::flush(self)
    }

    /// The audit entries of the store at `path` as its tree holds them, unchecked
    /// ([`backup::audit_at`]).
    pub fn audit_at(path: &Path) -> StoreResult<Vec<crate::store::AuditEntry>> {
        backup::audit_at(path)
    }
}

/// The trees a write of accounts may change besides the accounts and their index.
pub(super) struct TxTrees<'t> {
    pub files: &'t sled::transaction::TransactionalTree,
    pub sha_index: &'t sled::transaction::TransactionalTree,
    pub meta: &'t sled::transaction::TransactionalTree,
    pub audit: &'t sled::transaction::TransactionalTree,
    pub remote: &'t sled::transaction::TransactionalTree,
}

/// The buckets in two halves, for two cores: (the first of the upper half, how many).
const HALVES: (usize, usize) = (buckets::BUCKETS as usize / 2, buckets::BUCKETS as usize);

impl SledStore {
    /// The flush after a write's transaction went through: its failure is
    /// [`StoreError::Unflushed`] (the change was made), not a failure that changed nothing.
    /// [`Store::accounts_by_email`] of an email already folded, in one reading.
    fn accounts_by_folded(&self, folded: &str) -> StoreResult<Vec<Account>> {
        let key = email_index::bucket_of(folded);
        let Some(bytes) = self.index().get(buckets::number_of(key))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for id in email_index::ids_in(&key, &bytes, folded)? {
            // The index was checked against the accounts before its first answer; an entry it holds for
            // an account that is gone or has another email is damage, not an answer.
            match self.account(&id)? {
                Some(a) if email_index::fold(&a.email) == folded => out.push(a),
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "the email index lists employee {id} for {folded}, whose account does not have it"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Syncs sled's log and blobs as they are (sled syncs only what it wrote itself since it
    /// opened); the folder that names them is the caller's to sync.
    fn sync_files(&self) -> StoreResult<()> {
        let sync = |path: &std::path::Path| std::fs::File::open(path)?.sync_all();
        let folder = self.path.join("blobs");
        let blobs: Vec<_> = match std::fs::read_dir(&folder) {
            Ok(d) => d
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(sled::Error::Io(e).into()),
        };
        blobs
            .iter()
            // A blob sled removed since the folder was listed has nothing to sync.
            .try_for_each(|f| match sync(f) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                synced => synced,
            })
            // The folder that names the blobs, when there are any (sled never syncs it).
            .and_then(|()| match blobs.is_empty() {
                true => Ok(()),
                false => sync(&folder),
            })
            .and_then(|()| self.log.sync_all())
            .map_err(sled::Error::Io)?;
        Ok(())
    }

    /// [`Store::flush`] once the heads are checked.
    fn flush_as_is(&self) -> StoreResult<()> {
        // sled's own flush writes its log with `sync_file_range` on Linux, which leaves the
        // file's size and the drive's cache unsynced: a power cut after it could lose a
        // commit that a report already called applied, with the watermark ahead of it.
        self.db.flush()?;
        self.sync_files()?;
        let counters = self.counters()?;
        let mut recorded = self.recorded.lock().expect("watermark lock");
        match *recorded != Some(counters) {
            // Its rename syncs the store's folder (one sync fewer a commit).
            true => watermark::record(&self.path, counters).map_err(sled::Error::Io)?,
            false => crate::util::fsync_dir(&self.path).map_err(sled::Error::Io)?,
        }
        *recorded = Some(counters);
        Ok(())
    }

    /// The failure of an earlier write to disk, once one failed: nothing written since can
    /// be called durable in this process. Linux reports a failed fsync once: the next one
    /// succeeds without writing what was lost, so a daemon that retried it had filed a file
    /// whose commit never reached the disk, with a report saying APPLIED.
    fn failed_before(&self) -> StoreResult<()> {
        match self.write_failure.get() {
            None => Ok(()),
            Some(why) => Err(StoreError::Unflushed(format!(
                "an earlier write failed in this run ({why}); nothing more is made durable or \
                 filed until autoprov is started again, once the disk is fixed"
            ))),
        }
    }

    /// Remembers the first failed flush: sled keeps its error and fails every later write,
    /// while its memory holds changes the disk may not.
    fn failed_to_write(&self, e: &StoreError) {
        if self.write_failure.set(e.to_string()).is_ok() {
            tracing::error!("the store could not write to disk: {e}");
        }
    }

    pub(super) fn flushed_after_write(&self) -> StoreResult<()> {
        use crate::store::Store;
        self.flush()
            .map_err(|e| StoreError::Unflushed(e.to_string()))
    }
}

impl Store for SledStore {
    fn rules(&self) -> StoreResult<Vec<Rule>> {
        Self::list(&self.rules, trees::RULES)
    }

    fn rule(&self, id: RuleId) -> StoreResult<Option<Rule>> {
        Self::get(&self.rules, trees::RULES, &id.0.to_be_bytes())
    }

    fn next_rule_id(&self) -> StoreResult<RuleId> {
        // Flushed: a rule id is never given out twice, even when its rule is not written.
        let id = self.bump(meta::NEXT_RULE_ID)?;
        self.flush()?;
        Ok(RuleId(id))
    }

    fn put_rule(&self, rule: &Rule, note: AuditNote) -> StoreResult<()> {
        self.heads_checked()?;
        let token = new_token()?;
        let r = (&self.rules, &self.meta, &self.audit).transaction(|(rules, meta, audit)| {
            rules.insert(&rule.id.0.to_be_bytes(), encode(rule))?;
            meta.insert(meta::ACCOUNTS_TOKEN, &token[..])?;
            tx_audit(meta, audit, &note)
        });
        unwrap_tx(r)?;
        self.flushed_after_write()
    }

    fn delete_rule(&self, id: RuleId, note: AuditNote) -> StoreResult<()> {
        self.heads_checked()?;
        let token = new_token()?;
        let r = (&self.rules, &self.meta, &self.audit).transaction(|(rules, meta, audit)| {
            rules.remove(&id.0.to_be_bytes())?;
            meta.insert(meta::ACCOUNTS_TOKEN, &token[..])?;
            tx_audit(meta, audit, &note)
        });
        unwrap_tx(r)?;
        self.flushed_after_write()
    }

    fn accounts(&self) -> StoreResult<Vec<Account>> {
        self.heads_checked()?;
        // Not `with_capacity(self.accounts.len())`: sled counts a tree by scanning all of it.
        let mut out = Vec::new();
        let _pinned = self.pinned();
        let directory = self.buckets().directory()?;
        self.buckets()
            .for_each_at(&directory, 0..HALVES.1, |k, v| {
                out.extend(buckets::decode(&k, v)?);
                Ok(())
            })?;
        Ok(out)
    }

    fn scan_accounts(&self, f: &mut dyn FnMut(&AccountRef<'_>)) -> StoreResult<()> {
        self.heads_checked()?;
        let _pinned = self.pinned();
        let directory = self.buckets().directory()?;
        self.buckets().for_each_at(&directory, 0..HALVES.1, |k, v| {
            buckets::borrow(&k, v)?.iter().for_each(&mut *f);
            Ok(())
        })
    }

    /// The lower and the upper half of the buckets, read at once on two threads.
    fn scan_accounts_split(
        &self,
        lower: &mut (dyn FnMut(&AccountRef<'_>) + Send),
        upper: &mut (dyn FnMut(&AccountRef<'_>) + Send),
    ) -> StoreResult<()> {
        self.heads_checked()?;
        // Both halves as one directory named them.
        let _pinned = self.pinned();
        let directory = self.buckets().directory()?;
        let scan = |range, f: &mut (dyn FnMut(&AccountRef<'_>) + Send)| {
            self.buckets().for_each_at(&directory, range, |k, v| {
                buckets::borrow(&k, v)?.iter().for_each(&mut *f);
                Ok(())
            })
        };
        let (half, all) = HALVES;
        let (l, u) = join(|| scan(0..half, lower), || scan(half..all, upper));
        l.and(u)
    }

    fn read_group(&self, g: usize, f: &mut dyn FnMut(&dyn AccountGroup)) -> StoreResult<()> {
        self.groups()?.read_group(g, f)
    }

    fn group_reader(&self) -> StoreResult<Box<dyn GroupReader + '_>> {
        Ok(Box::new(self.groups()?))
    }

    fn account(&self, employee_id: &str) -> StoreResult<Option<Account>> {
        self.heads_checked()?;
        let key = buckets::bucket_of(employee_id);
        let Some(bytes) = self.buckets().get(buckets::number_of(key))? else {
            return Ok(None);
        };
        // Read in place, only the one account copied.
        let bucket = buckets::borrow(&key, &bytes)?;
        Ok(bucket
            .binary_search_by(|a| a.employee_id.cmp(employee_id))
            .ok()
            .map(|i| bucket[i].to_account()))
    }

    fn accounts_by_email(&self, email: &str) -> StoreResult<Vec<Account>> {
        self.verify_index()?;
        let folded = email_index::fold(email);
        // The index and the accounts are read one after the other: a commit made current
        // between the two pairs an old entry with a new account. Read again then (a commit
        // is made current in one small transaction, so the next reading sees it whole);
        // damage is what every reading finds.
        let mut left = 3;
        loop {
            match self.accounts_by_folded(&folded) {
                Err(StoreError::Corrupt(_)) if left > 0 => left -= 1,
                outcome => return outcome,
            }
        }
    }

    fn put_account(&self, account: &Account, remove: bool, note: AuditNote) -> StoreResult<()> {
        let (updates, removed) = match remove {
            // The account's bucket, rewritten without it.
            true => (Updates::packed(vec![]), vec![account.employee_id.as_str()]),
            false => (Updates::packed(vec![Packed::of(account)]), vec![]),
        };
        self.write_accounts(updates, &removed, None, &mut || Ok(()), |t| {
            tx_audit(t.meta, t.audit, &note)
        })
    }

    fn commit_when(&self, commit: Commit<'_>, ready: Ready<'_>) -> StoreResult<()> {
        // The accounts are let go batch by batch as their buckets are written aside.
        self.write_accounts(commit.updates, &[], commit.accounts_token, ready, |t| {
            if let Some(name) = commit.clear_remote {
                t.remote.remove(name.as_bytes())?;
            }
            if let Some(file) = commit.file {
                t.files.insert(&file.id.to_be_bytes(), encode(file))?;
                if t.sha_index.get(file.sha256.as_bytes())?.is_none() {
                    t.sha_index
                        .insert(file.sha256.as_bytes(), &file.id.to_be_bytes())?;
                }
            }
            if let Some(id) = commit.last_applied {
                t.meta.insert(meta::LAST_APPLIED, &id.to_be_bytes())?;
            }
            if let Some(note) = &commit.audit {
                tx_audit(t.meta, t.audit, note)?;
            }
            Ok(())
        })
    }

    fn filed(&self, entry: &FileEntry) -> StoreResult<()> {
        self.heads_checked()?;
        let cleared = FileEntry {
            pending_move: None,
            ..entry.clone()
        };
        self.files
            .insert(entry.id.to_be_bytes(), encode(&cleared))?;
        Ok(())
    }

    fn next_file_id(&self) -> StoreResult<u64> {
        // Not flushed on its own (a flush is an fsync and the watermark's, ~0.7 ms of every
        // file): the commit that records the file flushes it with everything before it.
        // sled's own flush thread may write it sooner, so a crash before that commit can
        // leave the id unused (a gap in the ledger's ids); the reports staged under it are
        // removed at the next start.
        self.bump(meta::NEXT_FILE_ID)
    }

    fn files(&self) -> StoreResult<Vec<FileEntry>> {
        Self::list(&self.files, trees::FILES)
    }

    fn file(&self, id: u64) -> StoreResult<Option<FileEntry>> {
        Self::get(&self.files, trees::FILES, &id.to_be_bytes())
    }

    fn file_by_sha(&self, sha256: &str) -> StoreResult<Option<FileEntry>> {
        match self.sha_index.get(sha256.as_bytes())? {
            Some(id) => self.file(u64_of(Some(id))),
            None => Ok(None),
        }
    }

    fn last_applied(&self) -> StoreResult<Option<FileEntry>> {
        match self.meta.get(meta::LAST_APPLIED)? {
            Some(id) => self.file(u64_of(Some(id))),
            None => Ok(None),
        }
    }

    fn accounts_token(&self) -> StoreResult<Option<AccountsToken>> {
        Ok(self
            .meta
            .get(meta::ACCOUNTS_TOKEN)?
            .and_then(|t| AccountsToken::try_from(t.as_ref()).ok()))
    }

    fn audit(&self, since: Option<&str>) -> StoreResult<Vec<AuditEntry>> {
        let all: Vec<AuditEntry> = Self::list(&self.audit, trees::AUDIT)?;
        Ok(match since {
            Some(t) => all
                .into_iter()
                .filter(|e| e.note.at.as_str() >= t)
                .collect(),
            None => all,
        })
    }

    fn append_audit(&self, note: AuditNote) -> StoreResult<()> {
        self.heads_checked()?;
        let r = (&self.meta, &self.audit).transaction(|(meta, audit)| tx_audit(meta, audit, &note));
        unwrap_tx(r)?;
        self.flushed_after_write()
    }

    fn flush(&self) -> StoreResult<()> {
        self.heads_checked()?;
        self.failed_before()?;
        self.flush_as_is().inspect_err(|e| self.failed_to_write(e))
    }

    fn durable(&self) -> StoreResult<()> {
        self.failed_before()?;
        let synced = self.db.flush().map_err(StoreError::from).and_then(|_| {
            self.sync_files()?;
            crate::util::fsync_dir(&self.path).map_err(sled::Error::Io)?;
            Ok(())
        });
        // As for a flush: what could not be made durable may be in memory only.
        synced.inspect_err(|e| self.failed_to_write(e))
    }

    fn write_failed(&self) -> Option<String> {
        // A log write sled failed (a full disk) fails the write that asked for it, and sled
        // keeps that error and fails every later write, even once space is back: a flush
        // then returns it. It costs nothing when all is written (sled compares two log
        // positions). Unmarked, the daemon had failed every change until restarted.
        if self.write_failure.get().is_none()
            && let Err(e) = self.db.flush()
        {
            self.failed_to_write(&e.into());
        }
        self.write_failure.get().cloned()
    }

    fn export(&self, out: &mut dyn std::io::Write, created_at: &str) -> std::io::Result<u64> {
        self.export_all(out, created_at)
    }

    fn register_remote(&self, inbox_name: &str, origin: &RemoteOrigin) -> StoreResult<()> {
        self.heads_checked()?;
        self.remote.insert(inbox_name.as_bytes(), encode(origin))?;
        self.flushed_after_write()
    }

    fn remote_registration(&self, inbox_name: &str) -> StoreResult<Option<RemoteOrigin>> {
        Self::get(&self.remote, trees::REMOTE, inbox_name.as_bytes())
    }

    fn remote_registrations(&self) -> StoreResult<Vec<(String, RemoteOrigin)>> {
        self.remote
            .iter()
            .map(|item| {
                let (k, v) = item?;
                let origin = decode(trees::REMOTE, &k, &v)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), origin))
            })
            .collect()
    }

    fn unregister_remote(&self, inbox_name: &str) -> StoreResult<()> {
        self.heads_checked()?;
        self.remote.remove(inbox_name.as_bytes())?;
        self.flushed_after_write()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ACCOUNTS_V1;
    use super::*;
    use crate::core::accounts::Status;
    use crate::store::FileStatus;
    use crate::store::backup_format::BACKUP_SCHEMA;
    use std::borrow::Cow;

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

    /// Once a write to disk failed, no later flush or `durable` succeeds in this process:
    /// Linux reports a failed fsync once, and a retry that then succeeded had let the daemon
    /// file a roster whose commit never reached the disk, its report saying APPLIED.
    #[test]
    fn nothing_is_durable_after_a_write_failed() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.flush().unwrap();
        s.durable().unwrap();
        s.failed_to_write(&StoreError::Unflushed("No space left on device".into()));
        for e in [s.durable().unwrap_err(), s.flush().unwrap_err()] {
            let e = e.to_string();
            assert!(e.contains("an earlier write failed in this run"), "{e}");
            assert!(e.contains("No space left on device"), "{e}");
        }
        assert!(s.write_failed().is_some());
    }

    /// A store that cannot make what it holds durable (before a file committed earlier is
    /// filed) answers nothing more from memory, as after a failed flush: `durable()` had
    /// failed without marking it, and the next request was answered from what the disk may
    /// not hold.
    #[test]
    fn a_failed_durable_marks_the_store_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.append_audit(note("one")).unwrap();
        assert!(store.durable().is_ok());
        assert!(store.write_failed().is_none());
        // The blobs' folder cannot be listed: its sync fails.
        let blobs = dir.path().join("blobs");
        let _ = std::fs::remove_dir_all(&blobs);
        std::fs::write(&blobs, b"not a folder").unwrap();
        assert!(store.durable().is_err());
        assert!(store.write_failed().is_some());
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

    /// A rule written whose flush then fails (the watermark cannot be written): the error
    /// says the change was made, not that nothing was, so that nobody adds the rule again.
    #[test]
    fn a_write_whose_flush_fails_says_the_change_was_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let blocker = dir.path().join(".autoprov.watermark.tmp");
        std::fs::create_dir(&blocker).unwrap();
        let rule = crate::core::rules::Rule {
            id: crate::core::rules::RuleId(1),
            name: "IT".into(),
            role: "IT Admin".into(),
            conditions: vec![crate::core::rules::Condition::parse("department = IT").unwrap()],
            enabled: true,
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: "alice".into(),
        };
        let err = store.put_rule(&rule, note("rules add")).unwrap_err();
        assert!(matches!(err, StoreError::Unflushed(_)), "{err:?}");
        assert!(
            store.rule(rule.id).unwrap().is_some(),
            "the change was made"
        );
        let shown = crate::api::error::Error::from(err).to_string();
        assert!(!shown.contains("nothing was changed"), "{shown}");
        assert!(shown.contains("before making it again"), "{shown}");
        std::fs::remove_dir(&blocker).unwrap();
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A store in schema 1's layout: one JSON record per account in `accounts`, under
    /// the given keys.
    fn schema_1_store(path: &Path, accounts: &[(&str, Account)]) {
        let db = sled::Config::new().path(path).open().unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(meta::SCHEMA, SCHEMA_V1)
            .unwrap();
        let old = db.open_tree(ACCOUNTS_V1).unwrap();
        for (key, a) in accounts {
            old.insert(key.as_bytes(), encode(a)).unwrap();
        }
        db.flush().unwrap();
    }

    fn still_schema_1(path: &Path) {
        // As the store opens it: the lock of the store whose open was just refused is let
        // go by sled's threads a moment after (it failed under load in CI without the wait).
        let db = SledStore::open_db(path).unwrap();
        let schema = db.open_tree("meta").unwrap().get(meta::SCHEMA).unwrap();
        assert_eq!(schema.unwrap().as_ref(), SCHEMA_V1, "not migrated");
        assert_eq!(
            db.open_tree(ACCOUNTS_V1).unwrap().len(),
            1,
            "the old accounts are kept"
        );
    }

    /// A flush writes the watermark only when the counters moved since this store last
    /// wrote it (a file's mark cleared after its filing leaves them as they are).
    #[test]
    fn the_watermark_is_written_again_only_when_the_counters_move() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mark = crate::store::watermark::path(dir.path());
        let note = |at: &str| AuditNote {
            at: at.into(),
            user: "t".into(),
            action: "test".into(),
            detail: String::new(),
        };
        s.append_audit(note("2026-01-01T00:00:00Z")).unwrap();
        assert!(mark.exists());
        std::fs::remove_file(&mark).unwrap();
        s.flush().unwrap();
        assert!(!mark.exists(), "the same counters: not written again");
        s.append_audit(note("2026-01-01T00:00:01Z")).unwrap();
        let recorded: crate::store::watermark::Counters =
            serde_json::from_slice(&std::fs::read(&mark).unwrap()).unwrap();
        assert_eq!(recorded.audit_seq, 2);
    }

    /// A watermark that cannot be read is not "no record": emptied, it had let a store
    /// rolled back to an older copy open as whole.
    #[test]
    fn a_watermark_that_cannot_be_read_refuses_the_store() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.append_audit(AuditNote {
            at: "2026-01-01T00:00:00Z".into(),
            user: "t".into(),
            action: "test".into(),
            detail: String::new(),
        })
        .unwrap();
        drop(s);
        let mark = crate::store::watermark::path(dir.path());
        std::fs::write(&mark, b"").unwrap();
        match SledStore::open(dir.path()) {
            Err(StoreError::Corrupt(msg)) => {
                assert!(msg.contains("autoprov.watermark"), "{msg}")
            }
            other => panic!("opened: {:?}", other.err()),
        }
        // No record at all: a new or restored store, opened.
        std::fs::remove_file(&mark).unwrap();
        SledStore::open(dir.path()).unwrap();
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

    /// A store from a newer autoprov is named as such (exit 2), not as damaged with the
    /// advice to restore a backup (which would throw away what it holds), and is left alone.
    #[test]
    fn a_store_of_a_newer_schema_is_refused_as_newer_not_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.meta.insert(meta::SCHEMA, &b"autoprov-99"[..]).unwrap();
        s.db.flush().unwrap();
        drop(s);
        match SledStore::open(dir.path()) {
            Err(StoreError::Newer(msg)) => assert!(msg.contains("autoprov-99"), "{msg}"),
            other => panic!("{:?}", other.err()),
        }
        let err = crate::api::error::Error::from(StoreError::Newer("x".into()));
        assert_eq!(err.exit_code(), crate::api::exit::USAGE);
    }

    #[test]
    fn the_lock_is_seen_without_opening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!SledStore::is_locked(dir.path()), "no store yet");
        let s = SledStore::open(dir.path()).unwrap();
        assert!(SledStore::is_locked(dir.path()));
        drop(s);
        drop(reopen(dir.path()));
        // Taken without opening (a restore): nobody opens the store until it is let go.
        let held = SledStore::lock(dir.path());
        assert!(matches!(held, Lock::Held(_)));
        assert!(SledStore::is_locked(dir.path()));
        assert!(SledStore::open(dir.path()).is_err(), "opened a held store");
        drop(held);
        drop(reopen(dir.path()));
    }

    #[test]
    fn a_schema_1_store_is_migrated_to_buckets_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let mut e2 = account("E2");
        e2.status = Status::Inactive;
        schema_1_store(dir.path(), &[("E1", account("E1")), ("E2", e2.clone())]);
        let s = reopen(dir.path());
        assert_eq!(s.account("E2").unwrap(), Some(e2.clone()));
        assert_eq!(s.accounts().unwrap().len(), 2);
        assert_eq!(s.accounts_by_email("e2@X.io").unwrap(), [e2], "indexed");
        assert_eq!(s.meta.get(meta::SCHEMA).unwrap().unwrap().as_ref(), SCHEMA);
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
            updates: crate::store::samples::packed(many),
            file: None,
            last_applied: None,
            audit: None,
            clear_remote: None,
            accounts_token: None,
        })
        .unwrap();
        let mut changed = account("E42");
        changed.role = "Billing Admin".into();
        s.put_account(&changed, false, note("admins set")).unwrap();
        s.put_account(&account("E7"), true, note("admins remove"))
            .unwrap();
        let all: std::collections::HashMap<String, Account> = s
            .accounts()
            .unwrap()
            .into_iter()
            .map(|a| (a.employee_id.clone(), a))
            .collect();
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
        let before = (
            s.buckets().directory().unwrap(),
            s.index().directory().unwrap(),
        );
        let version = versions::reserve(&s.versions).unwrap();
        let mut written = super::super::versions::Written::default();
        s.write_aside(
            Updates::packed(vec![Packed::of(&staged_role)]),
            &[],
            version,
            &before,
            &mut written,
        )
        .unwrap();
        let mut by_hand = account("E1");
        by_hand.role = "Billing Admin".into();
        s.put_account(&by_hand, false, note("admins add")).unwrap();
        assert_eq!(s.account("E1").unwrap().unwrap().role, "Billing Admin");
        match s.make_current(&before, &written, |_| Ok(())) {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("nothing was written"), "{msg}"),
            other => panic!("stale bucket made current: {other:?}"),
        }
        assert_eq!(s.account("E1").unwrap().unwrap().role, "Billing Admin");
    }

    #[test]
    fn a_write_put_aside_but_not_made_current_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            commit_accounts(&s, vec![account("E1"), account("E2")]);
            let mut moved = account("E1");
            moved.role = "HR Admin".into();
            // What a crash between the aside writes and the transaction leaves (a write sets
            // the marker before its first aside write).
            let version = versions::reserve(&s.versions).unwrap();
            let mut written = super::super::versions::Written::default();
            versions::unfinish(&s.versions).unwrap();
            let before = (
                s.buckets().directory().unwrap(),
                s.index().directory().unwrap(),
            );
            s.write_aside(
                Updates::packed(vec![Packed::of(&moved), Packed::of(&account("E3"))]),
                &[],
                version,
                &before,
                &mut written,
            )
            .unwrap();
            assert_eq!(
                s.account("E1").unwrap().unwrap().role,
                "IT Admin",
                "aside, not current"
            );
            assert_eq!(s.account("E3").unwrap(), None);
            // A later write, here a ledger entry alone, leaves the leftovers for the start.
            s.write_accounts(Updates::none(), &[], None, &mut || Ok(()), |t| {
                tx_audit(t.meta, t.audit, &note("x"))
            })
            .unwrap();
            commit_accounts(&s, vec![account("E1")]);
            assert!(versions::unfinished(&s.versions).unwrap());
            s.flush().unwrap();
        }
        let s = reopen(dir.path());
        assert_eq!(ids(&s.accounts().unwrap()), ["E1", "E2"]);
        assert_eq!(s.account("E1").unwrap().unwrap().role, "IT Admin");
        assert!(s.accounts_by_email("e3@x.io").unwrap().is_empty());
        // Only the current versions are left: one key per bucket of the accounts and index.
        let keys = |t: &sled::Tree| t.iter().keys().count();
        assert_eq!(keys(&s.accounts), 2);
        assert_eq!(keys(&s.emails), 2);
        assert!(!versions::unfinished(&s.versions).unwrap());
        // A later write does not bring the leftover back.
        commit_accounts(&s, vec![account("E4")]);
        assert_eq!(ids(&s.accounts().unwrap()), ["E1", "E2", "E4"]);
        assert!(
            !versions::unfinished(&s.versions).unwrap(),
            "a write that ends cleans up"
        );
    }

    #[test]
    fn a_commit_refused_when_ready_leaves_nothing_aside() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        commit_accounts(&s, vec![account("E1"), account("E2")]);
        let keys = |t: &sled::Tree| t.iter().keys().count();
        let before = (keys(&s.accounts), keys(&s.emails));
        let refused = s.commit_when(
            Commit {
                updates: crate::store::samples::packed([account("E3")]),
                file: None,
                last_applied: None,
                audit: Some(note("apply")),
                clear_remote: None,
                accounts_token: None,
            },
            &mut || Err(StoreError::Conflict("not ready".into())),
        );
        assert!(refused.is_err());
        assert_eq!(
            (keys(&s.accounts), keys(&s.emails)),
            before,
            "what was put aside is gone"
        );
        assert!(
            !versions::unfinished(&s.versions).unwrap(),
            "and its marker"
        );
        assert_eq!(s.account("E3").unwrap(), None);
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
            updates: crate::store::samples::packed([account("E1"), account("E2")]),
            file: Some(&file),
            last_applied: Some(1),
            audit: Some(note("apply")),
            clear_remote: None,
            accounts_token: None,
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
            updates: crate::store::samples::packed([account("E1"), account("E2")]),
            file: None,
            last_applied: None,
            audit: Some(note("apply")),
            clear_remote: None,
            accounts_token: None,
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
        assert_eq!(SledStore::import(&restored, out.as_slice()).unwrap().0, n);
        let r = reopen(&restored);
        let sorted = |s: &SledStore| {
            let mut all = s.accounts().unwrap();
            all.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
            all
        };
        assert_eq!(sorted(&r), sorted(&s));
        assert_eq!(
            r.accounts_by_email("e1@x.io").unwrap(),
            [account("E1")],
            "the index is built from the backup's accounts"
        );
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
    fn a_store_checked_as_read_writes_nothing_before_every_bucket_passed() {
        let dir = tempfile::tempdir().unwrap();
        let commit = |s: &SledStore, id: &str| {
            s.commit(Commit {
                updates: crate::store::samples::packed([account(id)]),
                file: None,
                last_applied: None,
                audit: Some(note("x")),
                clear_remote: None,
                accounts_token: None,
            })
        };
        let corrupt = |r: StoreResult<()>| matches!(r, Err(StoreError::Corrupt(_)));
        {
            let s = SledStore::open(dir.path()).unwrap();
            commit(&s, "E1").unwrap();
            commit(&s, "E2").unwrap();
            s.damage_bucket_of("E1");
        }
        assert!(
            corrupt(SledStore::open(dir.path()).map(drop)),
            "checked at open"
        );
        let keys = |s: &SledStore| (s.accounts.len(), s.meta.len(), s.audit.len());

        // Opened to be checked as read: the damaged bucket is found when the plan reads it,
        // and then nothing is written, nor read another way.
        let s = SledStore::open_checking_as_read(dir.path()).unwrap();
        let before = keys(&s);
        let g = buckets::number_of(buckets::bucket_of("E1"));
        assert!(corrupt(s.read_group(g, &mut |_| {})));
        assert!(corrupt(s.heads_checked()));
        assert!(corrupt(commit(&s, "E3")));
        assert!(corrupt(s.next_file_id().map(drop)));
        assert!(corrupt(s.append_audit(note("y"))));
        assert!(corrupt(s.accounts().map(drop)));
        assert_eq!(keys(&s), before, "nothing written");
        drop(s);

        // Nothing read first: the first write checks every bucket, and refuses.
        let s = SledStore::open_checking_as_read(dir.path()).unwrap();
        assert!(corrupt(commit(&s, "E3")));
        assert!(corrupt(s.flush()));
        assert_eq!(keys(&s), before, "nothing written");
        drop(s);

        // Schema 1's accounts, left by a migration whose check failed, are not dropped by
        // an open that has not checked every bucket.
        {
            // Waiting, as the store's own open does, for the lock of the store just dropped.
            let db = SledStore::open_db(dir.path()).unwrap();
            db.open_tree(ACCOUNTS_V1)
                .unwrap()
                .insert("E1", "x")
                .unwrap();
            db.flush().unwrap();
        }
        let v1 = |s: &SledStore| {
            s.db.tree_names()
                .iter()
                .any(|n| n == ACCOUNTS_V1.as_bytes())
        };
        let s = SledStore::open_checking_as_read(dir.path()).unwrap();
        assert!(v1(&s), "schema 1's accounts kept");
        assert!(corrupt(s.heads_checked()));
        drop(s);

        // An undamaged store: every group read, then written; or written without reading.
        let dir = tempfile::tempdir().unwrap();
        drop(SledStore::open(dir.path()).unwrap());
        let s = SledStore::open_checking_as_read(dir.path()).unwrap();
        commit(&s, "E1").unwrap();
        drop(s);
        let s = SledStore::open_checking_as_read(dir.path()).unwrap();
        for g in 0..HALVES.1 {
            s.read_group(g, &mut |_| {}).unwrap();
        }
        commit(&s, "E2").unwrap();
        s.heads_checked().unwrap();
        drop(s);
        assert_eq!(reopen(dir.path()).accounts().unwrap().len(), 2);
    }

    #[test]
    fn a_damaged_record_is_refused_at_open() {
        // The check runs over two halves of the bucket range: damage in either is found,
        // and so is a key outside the range of bucket keys.
        let halves = ["first", "E1"].map(|id| u16::from_be_bytes(buckets::bucket_of(id)));
        assert!(halves[0] >= 2048 && halves[1] < 2048, "{halves:?}");
        for damaged in [Some("first"), Some("E1"), None] {
            let dir = tempfile::tempdir().unwrap();
            let mut key = b"zzz".to_vec();
            {
                let s = SledStore::open(dir.path()).unwrap();
                s.commit(Commit {
                    updates: crate::store::samples::packed(["E2", "first", "E1"].map(account)),
                    file: None,
                    last_applied: None,
                    audit: None,
                    clear_remote: None,
                    accounts_token: None,
                })
                .unwrap();
                if let Some(id) = damaged {
                    key = current(&s.buckets(), buckets::bucket_of(id));
                }
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

    /// The key of the current version of the bucket `key` of `tree`.
    fn current(tree: &versions::Versioned<'_>, key: buckets::BucketKey) -> Vec<u8> {
        let directory = tree.directory().unwrap();
        tree.page_key(&directory, buckets::number_of(key))
            .expect("a bucket that holds records")
    }

    /// Rewrites every bucket of `s` as schema 3 (`versioned`: false) or 4 laid them out:
    /// uncompressed, under the bucket's key alone and no directories, or under a version the
    /// directories name. Returns each tree's stored bytes, to compare.
    fn as_older_schema(s: &SledStore, versioned: bool) -> [u64; 2] {
        let at = versioned.then(|| versions::reserve(&s.versions).unwrap());
        let sizes = one_value_per_bucket(s, at, false);
        s.meta
            .insert(meta::SCHEMA, if versioned { SCHEMA_V4 } else { SCHEMA_V3 })
            .unwrap();
        s.flush().unwrap();
        sizes
    }

    /// Rewrites every bucket of each bucketed tree of `s` as one value of its own, as
    /// schemas up to 5 laid them out: under version `at` named by a directory, or (`None`)
    /// under the bucket's key alone with no directory; compressed or not. Returns each
    /// tree's record bytes.
    fn one_value_per_bucket(s: &SledStore, at: Option<u64>, compressed: bool) -> [u64; 2] {
        let mut sizes = [0; 2];
        for (i, (v, name)) in [(s.buckets(), ACCOUNT_BUCKETS), (s.index(), EMAIL_INDEX)]
            .into_iter()
            .enumerate()
        {
            let mut records = Vec::new();
            v.for_each(0..HALVES.1, |k, record| {
                records.push((k, record.to_vec()));
                Ok(())
            })
            .unwrap();
            v.tree.clear().unwrap();
            let version = at.unwrap_or(0);
            let mut directory = vec![versions::EMPTY.to_be_bytes(); HALVES.1];
            for (k, record) in records {
                sizes[i] += record.len() as u64;
                directory[buckets::number_of(k)] = version.to_be_bytes();
                let stored = match compressed {
                    true => versions::Stored::pack(&record).bytes().to_vec(),
                    false => record,
                };
                v.tree.insert(versions::key(k, version), stored).unwrap();
            }
            match at {
                Some(_) => s.versions.insert(name, directory.concat()).unwrap(),
                None => s.versions.remove(name).unwrap(),
            };
        }
        sizes
    }

    /// Schema 5 kept every bucket in a value of its own, named by its version alone: such a
    /// store opens as schema 6 with nothing rewritten but the marker, answers the same, and
    /// its next write lays its buckets out in pages; an empty one gets directories.
    #[test]
    fn a_schema_5_store_opens_as_schema_6_and_its_next_write_makes_pages() {
        let dir = tempfile::tempdir().unwrap();
        let many: Vec<Account> = (0..3000).map(|i| account(&format!("E{i}"))).collect();
        {
            let s = SledStore::open(dir.path()).unwrap();
            commit_accounts(&s, many.clone());
            // Rewritten as schema 5 laid them out: one compressed value per bucket.
            let version = versions::reserve(&s.versions).unwrap();
            one_value_per_bucket(&s, Some(version), true);
            s.meta.insert(meta::SCHEMA, SCHEMA_V5).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(dir.path());
        assert_eq!(s.meta.get(meta::SCHEMA).unwrap().unwrap().as_ref(), SCHEMA);
        let one_per_bucket = s.accounts.len();
        assert_eq!(s.accounts().unwrap().len(), 3000);
        assert_eq!(ids(&s.accounts_by_email("e2999@x.io").unwrap()), ["E2999"]);
        commit_accounts(&s, vec![account("E3000")]);
        assert!(
            s.accounts.len() < one_per_bucket,
            "a region rewritten in pages"
        );
        assert_eq!(s.account("E3000").unwrap(), Some(account("E3000")));
        assert_eq!(s.accounts().unwrap().len(), 3001);
        assert_eq!(s.buckets().collect_garbage().unwrap(), 0);
        drop(s);
        assert_eq!(reopen(dir.path()).accounts().unwrap().len(), 3001);
        // An empty schema-5 store: directories that name every bucket empty.
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.versions.clear().unwrap();
            s.meta.insert(meta::SCHEMA, SCHEMA_V5).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(dir.path());
        assert!(!s.buckets().is_legacy().unwrap() && !s.index().is_legacy().unwrap());
        // So does a new store.
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        assert!(!s.buckets().is_legacy().unwrap() && !s.index().is_legacy().unwrap());
    }

    /// Schemas 3 and 4 stored buckets uncompressed: opened, every bucket is rewritten
    /// compressed, the accounts and the index answer as before, and nothing old is left, nor
    /// what a migration that crashed before making its versions current put aside.
    #[test]
    fn an_uncompressed_store_is_compressed_when_opened_and_answers_the_same() {
        for versioned in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let many: Vec<Account> = (0..3000).map(|i| account(&format!("E{i}"))).collect();
            let raw = {
                let s = SledStore::open(dir.path()).unwrap();
                commit_accounts(&s, many.clone());
                let raw = as_older_schema(&s, versioned);
                if versioned {
                    // A migration that crashed after putting compressed buckets aside: its
                    // versions are not current, and the marker says so.
                    versions::unfinish(&s.versions).unwrap();
                    let left = versions::key(buckets::key_of(5), 1 << 40);
                    s.accounts
                        .insert(left, versions::Stored::pack(b"x").bytes())
                        .unwrap();
                    s.flush().unwrap();
                }
                raw
            };
            let s = reopen(dir.path());
            assert_eq!(s.meta.get(meta::SCHEMA).unwrap().unwrap().as_ref(), SCHEMA);
            let mut read = s.accounts().unwrap();
            read.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
            let mut many = many;
            many.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
            assert!(read == many, "the accounts read differ from those written");
            s.check_index().unwrap();
            assert_eq!(ids(&s.accounts_by_email("e2999@x.io").unwrap()), ["E2999"]);
            // Each page is stored compressed, and the buckets hold the records they held.
            for (v, name) in [(s.buckets(), ACCOUNT_BUCKETS), (s.index(), EMAIL_INDEX)] {
                for item in v.tree.iter() {
                    let (_, bytes) = item.unwrap();
                    lz4_flex::decompress_size_prepended(&bytes).expect("compressed");
                }
                let mut records = 0;
                v.for_each(0..HALVES.1, |_, record| {
                    records += record.len() as u64;
                    Ok(())
                })
                .unwrap();
                assert_eq!(records, raw[usize::from(name == EMAIL_INDEX)]);
            }
            assert_eq!(
                s.buckets().collect_garbage().unwrap(),
                0,
                "old versions left"
            );
            assert_eq!(s.index().collect_garbage().unwrap(), 0, "old versions left");
            assert!(!versions::unfinished(&s.versions).unwrap());
        }
    }

    fn commit_accounts(s: &SledStore, updates: Vec<Account>) {
        s.commit(Commit {
            updates: crate::store::samples::packed(updates),
            file: None,
            last_applied: None,
            audit: None,
            clear_remote: None,
            accounts_token: None,
        })
        .unwrap();
    }

    /// The refusal of a damaged store (waiting out sled's flusher holding the lock).
    fn refused(path: &Path) -> String {
        for _ in 0..50 {
            match SledStore::open(path).and_then(|s| s.verify_index().map(|()| s)) {
                Err(StoreError::Corrupt(msg)) => return msg,
                Err(_) if SledStore::is_locked(path) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => panic!("wrong error {e}"),
                Ok(_) => panic!("damaged store opened"),
            }
        }
        panic!("store still locked after 2.5 s")
    }

    fn ids(accounts: &[Account]) -> Vec<&str> {
        accounts.iter().map(|a| a.employee_id.as_str()).collect()
    }

    #[test]
    fn a_store_written_before_the_email_index_gets_it_once_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let mut ann = account("E1");
            ann.email = " Ann@X.io".into();
            commit_accounts(&s, vec![ann, account("E2")]);
            // What the previous build wrote: the same buckets, schema 2, no index tree.
            as_older_schema(&s, false);
            s.db.drop_tree(EMAIL_INDEX).unwrap();
            s.meta.insert(meta::SCHEMA, SCHEMA_V2).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(dir.path());
        assert_eq!(s.meta.get(meta::SCHEMA).unwrap().unwrap().as_ref(), SCHEMA);
        assert_eq!(ids(&s.accounts_by_email("ann@x.io").unwrap()), ["E1"]);
        assert_eq!(ids(&s.accounts_by_email("E2@x.io").unwrap()), ["E2"]);
        // Built once: from now on a missing index is damage, not something to rebuild.
        s.emails.clear().unwrap();
        s.flush().unwrap();
        drop(s);
        let msg = refused(dir.path());
        assert!(msg.contains("the email index lost bucket"), "{msg}");
    }

    #[test]
    fn an_email_index_that_does_not_match_the_accounts_is_refused_before_it_answers() {
        let e2 = email_index::bucket_of("e2@x.io");
        type Damage = (&'static str, fn(&SledStore));
        let damage: [Damage; 4] = [
            ("lost", |s| {
                s.emails
                    .remove(current(&s.index(), email_index::bucket_of("e2@x.io")))
                    .unwrap();
            }),
            ("altered", |s| {
                let built = email_index::build([(Cow::Borrowed("e2@x.io"), "E3")]);
                s.index()
                    .overwrite(buckets::number_of(built[0].0), &built[0].1);
            }),
            ("added", |s| {
                let built = email_index::build([
                    (Cow::Borrowed("e2@x.io"), "E2"),
                    (Cow::Borrowed("e2@x.io"), "E7"),
                ]);
                s.index()
                    .overwrite(buckets::number_of(built[0].0), &built[0].1);
            }),
            ("undecodable", |s| {
                let key = current(&s.index(), email_index::bucket_of("e2@x.io"));
                s.emails.insert(key, b"{not postcard".to_vec()).unwrap();
            }),
        ];
        for (what, damage) in damage {
            let dir = tempfile::tempdir().unwrap();
            {
                let s = SledStore::open(dir.path()).unwrap();
                commit_accounts(&s, vec![account("E1"), account("E2"), account("E3")]);
                assert!(s.emails.get(current(&s.index(), e2)).unwrap().is_some());
                damage(&s);
                s.flush().unwrap();
            }
            let msg = refused(dir.path());
            assert!(msg.contains("email index"), "{what}: {msg}");
        }
    }

    #[test]
    fn an_index_entry_the_accounts_do_not_bear_out_is_an_error_not_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        commit_accounts(&s, vec![account("E1"), account("E2")]);
        assert_eq!(ids(&s.accounts_by_email("e1@x.io").unwrap()), ["E1"]);
        // Damage after the start-up check: E2 listed under E1's email.
        let built = email_index::build([
            (Cow::Borrowed("e1@x.io"), "E1"),
            (Cow::Borrowed("e1@x.io"), "E2"),
        ]);
        s.index()
            .overwrite(buckets::number_of(built[0].0), &built[0].1);
        match s.accounts_by_email("E1@x.io") {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("E2"), "{msg}"),
            other => panic!("answered {other:?}"),
        }
    }

    #[test]
    fn every_account_write_keeps_the_index_matching_the_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let many: Vec<Account> = (0..3000).map(|i| account(&format!("E{i}"))).collect();
        commit_accounts(&s, many);
        let mut moved = account("E5");
        moved.email = "Five@X.io".into();
        commit_accounts(&s, vec![moved.clone(), account("E3000")]);
        moved.email = "five.again@x.io".into();
        s.put_account(&moved, false, note("admins set")).unwrap();
        s.put_account(&account("E7"), true, note("admins remove"))
            .unwrap();
        s.verify().unwrap();
        s.check_index().unwrap();
        assert!(s.accounts_by_email("five@x.io").unwrap().is_empty());
        assert_eq!(
            ids(&s.accounts_by_email("five.again@x.io").unwrap()),
            ["E5"]
        );
        assert!(s.accounts_by_email("e7@x.io").unwrap().is_empty());
        assert_eq!(ids(&s.accounts_by_email("e3000@x.io").unwrap()), ["E3000"]);
    }
}
