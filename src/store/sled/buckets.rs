//! How accounts are laid out in sled: grouped into a fixed number of buckets by a stable
//! hash of the employee ID, each bucket one compact binary record (postcard) of its
//! accounts sorted by ID.
//!
//! Why: a first import of a million employees writes ~950k accounts in the one transaction
//! SPEC §5 asks for. sled keeps an epoch pin and a page copy per insert until such a
//! transaction commits (~5 KB each, 7 GB in all, and two thirds of the run time). With
//! buckets the same transaction writes at most [`BUCKETS`] values, and a re-sync that changes
//! a handful of accounts rewrites only their buckets. See BENCHMARKS.md.

use crate::core::accounts::Account;
use crate::store::{AccountRef, StoreError, StoreResult};
use serde::Serialize;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// How many buckets accounts are spread over. Part of the on-disk schema: changing it
/// needs a new schema version. 4096 keeps a bucket near 40 KB at a million accounts, well
/// below sled's 128 KB blob threshold.
pub const BUCKETS: u32 = 4096;

/// A bucket's key in the tree.
pub type BucketKey = [u8; 2];

/// The bucket an employee ID belongs to: FNV-1a (32 bit) of its UTF-8 bytes, so the layout
/// is the same on every machine and every build.
pub fn bucket_of(employee_id: &str) -> BucketKey {
    let mut h: u32 = 0x811c_9dc5;
    for b in employee_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ((h % BUCKETS) as u16).to_be_bytes()
}

/// Groups accounts by bucket, in key order.
pub fn group<'a>(
    accounts: impl IntoIterator<Item = &'a Account>,
) -> BTreeMap<BucketKey, Vec<&'a Account>> {
    let mut groups: BTreeMap<BucketKey, Vec<&Account>> = BTreeMap::new();
    for a in accounts {
        groups.entry(bucket_of(&a.employee_id)).or_default().push(a);
    }
    groups
}

/// Encodes a bucket's accounts (sorted by ID, IDs unique).
pub fn encode<A: Borrow<Account> + Serialize>(accounts: &[A]) -> Vec<u8> {
    debug_assert!(
        accounts
            .windows(2)
            .all(|w| w[0].borrow().employee_id < w[1].borrow().employee_id)
    );
    // Room for a typical account (~200 bytes with one history entry), so that encoding a
    // bucket rarely copies its buffer as it grows.
    let room = Vec::with_capacity(256 * accounts.len());
    postcard::to_extend(accounts, room).expect("accounts always serialize")
}

fn corrupt(key: &[u8], what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("account bucket {}: {what}", key_name(key)))
}

fn key_name(key: &[u8]) -> String {
    match <[u8; 2]>::try_from(key) {
        Ok(k) => u16::from_be_bytes(k).to_string(),
        Err(_) => format!("{key:02x?}"),
    }
}

/// Decodes a bucket, refusing trailing bytes, IDs out of order or in the wrong bucket.
pub fn decode(key: &[u8], bytes: &[u8]) -> StoreResult<Vec<Account>> {
    let (accounts, rest): (Vec<Account>, _) =
        postcard::take_from_bytes(bytes).map_err(|e| corrupt(key, e))?;
    check_layout(key, rest, accounts.iter().map(|a| a.employee_id.as_str()))?;
    Ok(accounts)
}

/// Decodes a bucket with its strings borrowed from `bytes`, with the checks of [`decode`]
/// (the start-up check reads every bucket so). Accepts exactly what [`decode`] accepts (the
/// test `borrow_accepts_what_decode_accepts` holds it to that).
pub fn borrow<'a>(key: &[u8], bytes: &'a [u8]) -> StoreResult<Vec<AccountRef<'a>>> {
    let (accounts, rest): (Vec<AccountRef<'_>>, _) =
        postcard::take_from_bytes(bytes).map_err(|e| corrupt(key, e))?;
    check_layout(key, rest, accounts.iter().map(|a| a.employee_id))?;
    Ok(accounts)
}

fn check_layout<'a>(
    key: &[u8],
    rest: &[u8],
    ids: impl Iterator<Item = &'a str>,
) -> StoreResult<()> {
    if !rest.is_empty() {
        return Err(corrupt(
            key,
            format!("{} bytes after the last account", rest.len()),
        ));
    }
    let mut previous: Option<&str> = None;
    for id in ids {
        if bucket_of(id).as_slice() != key {
            return Err(corrupt(key, format!("account {id:?} does not belong here")));
        }
        if previous.is_some_and(|p| p >= id) {
            return Err(corrupt(key, format!("account {id:?} out of order")));
        }
        previous = Some(id);
    }
    Ok(())
}

/// A bucket's accounts after `updates` (which replace accounts with the same ID; of two
/// updates of one ID the later wins) and without the IDs in `remove`, in order.
pub fn merge<'a>(
    existing: &'a [Account],
    updates: &[&'a Account],
    remove: &[&str],
) -> Vec<&'a Account> {
    let mut ups: Vec<&Account> = updates.iter().rev().copied().collect();
    ups.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
    ups.dedup_by(|later, first| later.employee_id == first.employee_id);
    let mut out = Vec::with_capacity(existing.len() + ups.len());
    let (mut old, mut new) = (existing.iter().peekable(), ups.into_iter().peekable());
    loop {
        let next = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => match o.employee_id.cmp(&n.employee_id) {
                std::cmp::Ordering::Less => old.next(),
                std::cmp::Ordering::Equal => {
                    old.next();
                    new.next()
                }
                std::cmp::Ordering::Greater => new.next(),
            },
            (Some(_), None) => old.next(),
            (None, Some(_)) => new.next(),
            (None, None) => break,
        };
        out.extend(next.filter(|a| !remove.contains(&a.employee_id.as_str())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::accounts::Status;
    use proptest::prelude::*;

    /// With a history entry, so that every field is encoded.
    fn account(id: &str) -> Account {
        let mut a = crate::store::samples::account(id);
        a.record(
            "2026-01-01T00:00:00Z",
            "r.csv",
            "created by rule 1 \"x\"".into(),
        );
        a
    }

    fn bucket(ids: &[&str]) -> (BucketKey, Vec<Account>) {
        let mut accounts: Vec<Account> = ids.iter().map(|id| account(id)).collect();
        accounts.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
        (bucket_of(ids[0]), accounts)
    }

    /// How many accounts `borrow` reads from a bucket.
    fn borrow_len(key: &[u8], bytes: &[u8]) -> StoreResult<usize> {
        borrow(key, bytes).map(|accounts| accounts.len())
    }

    /// IDs that share a bucket with `first`.
    fn same_bucket(first: &str, n: usize) -> Vec<String> {
        let key = bucket_of(first);
        let mut ids = vec![first.to_string()];
        let mut i = 0;
        while ids.len() < n {
            let id = format!("E{i}");
            if bucket_of(&id) == key && id != first {
                ids.push(id);
            }
            i += 1;
        }
        ids
    }

    #[test]
    fn the_bucket_of_an_id_never_changes() {
        // Pinned (FNV-1a computed independently): another hash would strand every account of
        // an existing store.
        for (id, want) in [
            ("", 3525),
            ("E00001", 3043),
            ("E00302", 3019),
            ("jos\u{e9}", 2471),
        ] {
            assert_eq!(u16::from_be_bytes(bucket_of(id)), want, "{id}");
        }
    }

    #[test]
    fn round_trip_and_merge_keep_order() {
        let ids = same_bucket("E1", 5);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (key, accounts) = bucket(&refs[..3]);
        let bytes = encode(&accounts);
        assert_eq!(decode(&key, &bytes).unwrap(), accounts);
        assert_eq!(borrow_len(&key, &bytes).unwrap(), 3);
        let mut changed = account(refs[1]);
        changed.status = Status::Inactive;
        let stale = account(refs[1]);
        let added = account(refs[4]);
        let merged = merge(&accounts, &[&stale, &added, &changed], &[refs[0]]);
        let got: Vec<&str> = merged.iter().map(|a| a.employee_id.as_str()).collect();
        let mut want = vec![refs[1], refs[2], refs[4]];
        want.sort();
        assert_eq!(got, want);
        let status = |id: &str| merged.iter().find(|a| a.employee_id == id).unwrap().status;
        assert_eq!(status(refs[1]), Status::Inactive, "the later update wins");
        let owned: Vec<Account> = merged.iter().map(|a| (*a).clone()).collect();
        assert_eq!(decode(&key, &encode(&merged)).unwrap(), owned);
    }

    #[test]
    fn misplaced_unordered_or_trailing_records_are_refused() {
        let ids = same_bucket("E1", 2);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (key, accounts) = bucket(&refs);
        let other_key = ((u16::from_be_bytes(key) + 1) % BUCKETS as u16).to_be_bytes();
        let bytes = encode(&accounts);
        for (k, b, want) in [
            (other_key, bytes.clone(), "does not belong"),
            (key, [bytes.clone(), vec![0]].concat(), "after the last"),
            (
                key,
                postcard::to_allocvec(&vec![accounts[1].clone(), accounts[0].clone()]).unwrap(),
                "out of order",
            ),
        ] {
            for err in [decode(&k, &b).unwrap_err(), borrow_len(&k, &b).unwrap_err()] {
                assert!(err.to_string().contains(want), "{err}");
            }
        }
    }

    proptest! {
        /// Any bytes: `borrow` accepts exactly what `decode` accepts.
        #[test]
        fn borrow_accepts_what_decode_accepts(
            cut in 0usize..400,
            flip in 0usize..400,
            bit in 0u8..8,
            extra in proptest::collection::vec(any::<u8>(), 0..3),
        ) {
            let ids = same_bucket("E1", 2);
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let (key, accounts) = bucket(&refs);
            let mut bytes = encode(&accounts);
            if flip < bytes.len() {
                bytes[flip] ^= 1 << bit;
            }
            bytes.truncate(cut.max(1).min(bytes.len()));
            bytes.extend(extra);
            prop_assert_eq!(decode(&key, &bytes).is_ok(), borrow_len(&key, &bytes).is_ok());
        }
    }
}
