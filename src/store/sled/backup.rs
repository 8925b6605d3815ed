//! The sled store's side of backups ([`crate::store::backup_format`]): its trees written
//! out with the accounts one by one, and a new store made from a backup.

use super::versions::{Stored, Versioned};
use super::{ACCOUNT_BUCKETS, EMAIL_INDEX, SCHEMA, buckets, email_index};
use crate::store::backup_format::{self, Writer, meta, trees};
use crate::store::{AuditEntry, StoreError, StoreResult};
use std::path::Path;

/// Writes `stored` (name, tree) as a backup, with the current version of each account
/// bucket under [`trees::ACCOUNTS`] after the rules; returns the record count.
pub fn export(
    stored: &[(&str, &sled::Tree)],
    accounts: &Versioned<'_>,
    out: &mut dyn std::io::Write,
    created_at: &str,
) -> std::io::Result<u64> {
    let mut writer = Writer::start(out, created_at)?;
    for (name, tree) in stored {
        for item in tree.iter() {
            let (k, v) = item.map_err(std::io::Error::other)?;
            if *name == trees::META && k.as_ref() == meta::ACCOUNTS_TOKEN {
                continue;
            }
            writer.stored(name, &k, &v)?;
        }
        // In the order of backups: accounts after rules (see `trees::ALL`).
        if *name == trees::RULES {
            let all = 0..buckets::BUCKETS as usize;
            accounts
                .for_each(all, |k, v| {
                    for account in buckets::decode(&k, v)? {
                        writer
                            .account(&account)
                            .map_err(|e| StoreError::Sled(e.into()))?;
                    }
                    Ok(())
                })
                .map_err(std::io::Error::other)?;
        }
    }
    writer.finish()
}

/// Creates a new store at `path` (which must not exist) from a backup, checking it whole
/// first; the email index is built from the backup's accounts. Returns the record count.
/// Imports a backup into a new store at `path`: how many records it held, when it was
/// written, and whether its records were checked against its SHA-256.
pub fn import(
    path: &Path,
    input: impl std::io::BufRead,
) -> StoreResult<(u64, String, backup_format::Checked)> {
    let backup = backup_format::read(input)?;
    if path.exists() {
        return Err(StoreError::Corrupt(format!(
            "backup: {} already exists",
            path.display()
        )));
    }
    let write = || -> StoreResult<()> {
        let db = sled::Config::new().path(path).open()?;
        for (tree, key, value) in &backup.records {
            db.open_tree(tree.as_str())?
                .insert(key.as_slice(), value.as_slice())?;
        }
        let bucket_tree = db.open_tree(ACCOUNT_BUCKETS)?;
        for (key, group) in buckets::group(&backup.accounts) {
            bucket_tree.insert(key, Stored::pack(&buckets::encode(&group)).bytes())?;
        }
        let index_tree = db.open_tree(EMAIL_INDEX)?;
        let entries = backup
            .accounts
            .iter()
            .map(|a| (email_index::fold(&a.email), a.employee_id.as_str()));
        for (key, bytes) in email_index::build(entries) {
            index_tree.insert(key, Stored::pack(&bytes).bytes())?;
        }
        db.open_tree(trees::META)?.insert(meta::SCHEMA, SCHEMA)?;
        db.flush()?;
        Ok(())
    };
    if let Err(e) = write() {
        // Nothing half-built is left behind.
        let _ = std::fs::remove_dir_all(path);
        return Err(e);
    }
    Ok((backup.count, backup.created_at, backup.checked))
}

/// The audit entries of the store at `path`, read from its tree as they are, without the
/// checks of an open: a damaged store, which an open refuses, is what a restore replaces,
/// and what it recorded after the backup is kept in the restored store's audit.
pub fn audit_at(path: &Path) -> StoreResult<Vec<AuditEntry>> {
    let db = sled::Config::new().path(path).open()?;
    let tree = db.open_tree(trees::AUDIT)?;
    tree.iter()
        .map(|item| {
            let (k, v) = item?;
            super::decode(trees::AUDIT, &k, &v)
        })
        .collect()
}
