//! Migrations of an older store, each one transaction together with the new schema marker,
//! run when the store is opened (after the watermark check: a store that lost committed
//! changes is refused, not migrated).

use super::versions::Versioned;
use super::{
    ACCOUNT_BUCKETS, ACCOUNTS_V1, EMAIL_INDEX, SCHEMA_V2, SCHEMA_V4, buckets, decode, email_index,
    unwrap_tx,
};
use crate::core::accounts::Account;
use crate::store::backup_format::meta;
use crate::store::{StoreError, StoreResult};
use sled::Transactional;

/// Schema 1 → 2: moves the accounts into buckets, in one transaction with schema 2's marker
/// (the email index follows, [`v2_to_v3`]). The old tree stays until the buckets have passed
/// the start-up check ([`drop_v1_accounts`]). Returns how many accounts moved.
pub fn v1_to_v2(db: &sled::Db, meta_tree: &sled::Tree) -> StoreResult<usize> {
    let bucket_tree = db.open_tree(ACCOUNT_BUCKETS)?;
    if !bucket_tree.is_empty() {
        return Err(StoreError::Corrupt(
            "schema 1 store already holds account buckets".into(),
        ));
    }
    let old = db.open_tree(ACCOUNTS_V1)?;
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
    let r = (&bucket_tree, meta_tree).transaction(|(tree, meta_tx)| {
        for (key, group) in &groups {
            tree.insert(key, buckets::encode(group))?;
        }
        meta_tx.insert(meta::SCHEMA, SCHEMA_V2)?;
        Ok(())
    });
    unwrap_tx(r)?;
    Ok(accounts.len())
}

/// Schema 2 → 3 (→ 4, whose layout schema 3's is): builds the email index from the account
/// buckets, in one transaction with schema 4's marker, so that it is built once (the
/// buckets are compressed next, [`SledStore::compress_buckets`]). Returns how many
/// accounts it indexes.
///
/// [`SledStore::compress_buckets`]: super::SledStore::compress_buckets
pub fn v2_to_v3(
    accounts: &Versioned<'_>,
    index_tree: &sled::Tree,
    meta_tree: &sled::Tree,
    versions_tree: &sled::Tree,
) -> StoreResult<usize> {
    if !index_tree.is_empty() {
        return Err(StoreError::Corrupt(
            "schema 2 store already holds an email index".into(),
        ));
    }
    // The buckets' records stay in memory so that the entries can borrow them.
    let mut stored = Vec::new();
    accounts.for_each(0..buckets::BUCKETS as usize, |key, bytes| {
        stored.push((key, bytes.to_vec()));
        Ok(())
    })?;
    let mut entries = Vec::new();
    for (key, bytes) in &stored {
        for account in buckets::heads(key, bytes)?.into_heads() {
            entries.push((email_index::fold(account.email), account.employee_id));
        }
    }
    let indexed = entries.len();
    let built = email_index::build(entries);
    // Built anew as version 0 of each bucket: a directory left from before goes with it.
    let r = (index_tree, meta_tree, versions_tree).transaction(|(index, meta_tx, versions)| {
        for (key, bytes) in &built {
            index.insert(key, bytes.as_slice())?;
        }
        versions.remove(EMAIL_INDEX)?;
        meta_tx.insert(meta::SCHEMA, SCHEMA_V4)?;
        Ok(())
    });
    unwrap_tx(r)?;
    Ok(indexed)
}

/// Drops schema 1's account tree if a migration left it (it stays until the buckets have
/// passed the start-up check); whether there was one.
pub fn drop_v1_accounts(db: &sled::Db) -> StoreResult<bool> {
    let present = db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == ACCOUNTS_V1.as_bytes());
    if present {
        db.drop_tree(ACCOUNTS_V1)?;
    }
    Ok(present)
}
