//! The sled implementation of [`super::Store`]: one tree per kind of record, JSON values,
//! except accounts, kept in buckets of compact binary records ([`buckets`]), and the index
//! of accounts by email ([`email_index`]), bucketed the same way.
//!
//! Schemas: 1 kept one JSON record per account; 2 bucketed them; 3 added the email index;
//! 4 writes buckets copy-on-write ([`versions`]), reading schema 3's as their version 0;
//! 5 (this build) stores each bucket compressed. An older store is migrated when it is
//! opened ([`migrate`]).

mod backup;
mod buckets;
mod email_index;
mod groups;
mod heads_check;
mod migrate;
mod pages;
mod pins;
mod readers;
mod store;
mod versions;
pub mod watermark;
mod write;

pub use store::{Lock, SledStore};

use super::backup_format::{meta, trees};
use super::{AuditEntry, AuditNote, StoreError, StoreResult};
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

/// The schema this build writes and reads.
const SCHEMA: &[u8] = b"autoprov-6";
/// Every bucket its own page ([`pages`]): read as schema 6, only the marker is rewritten.
const SCHEMA_V5: &[u8] = b"autoprov-5";
/// Buckets stored uncompressed: each is rewritten compressed when it is opened.
const SCHEMA_V4: &[u8] = b"autoprov-4";
/// Buckets written in place and uncompressed: read as version 0 of each (see [`versions`]) and
/// rewritten compressed, as schema 4's, when it is opened.
const SCHEMA_V3: &[u8] = b"autoprov-3";
/// Accounts in buckets, without the email index: the index is built when it is opened.
const SCHEMA_V2: &[u8] = b"autoprov-2";
/// One JSON record per account in `accounts`: migrated to buckets when it is opened.
const SCHEMA_V1: &[u8] = b"autoprov-1";
/// The tree of account buckets (schema 2 on).
const ACCOUNT_BUCKETS: &str = "account_buckets";
/// The tree of the email index's buckets (schema 3 on).
const EMAIL_INDEX: &str = "email_index";
/// The tree of schema 1's accounts (and the name accounts have in backups).
const ACCOUNTS_V1: &str = trees::ACCOUNTS;

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

/// A new random accounts token.
fn new_token() -> StoreResult<crate::store::AccountsToken> {
    crate::util::random_bytes().map_err(|e| StoreError::Sled(::sled::Error::Io(e)))
}

fn tx_audit(meta: &TransactionalTree, audit: &TransactionalTree, note: &AuditNote) -> TxResult<()> {
    let seq = tx_next(meta, meta::NEXT_AUDIT_SEQ)?;
    let entry = AuditEntry {
        seq,
        note: note.clone(),
        rolled_back: None,
    };
    audit.insert(&seq.to_be_bytes(), encode(&entry))?;
    Ok(())
}

/// A bucket (of accounts or of the email index) as a write leaves it: its number and its
/// bytes (`None`: it holds nothing).
type Staged = (usize, Option<Vec<u8>>);

fn unwrap_tx<T>(r: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
    }
}
