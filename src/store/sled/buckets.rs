//! How accounts are laid out in sled: grouped into a fixed number of buckets by a stable
//! hash of the employee ID, each bucket one compact binary record (postcard) of its
//! accounts sorted by ID.
//!
//! Why: a first import of a million employees writes ~950k accounts in the one transaction
//! SPEC §5 asks for. sled keeps an epoch pin and a page copy per insert until such a
//! transaction commits (~5 KB each, 7 GB in all, and two thirds of the run time). With
//! buckets the same transaction writes at most [`BUCKETS`] values, and a re-sync that changes
//! a handful of accounts rewrites only their buckets. See BENCHMARKS.md.

use crate::core::accounts::{Account, AccountGroup, AccountHead, Origin, Status};
use crate::core::rules::RuleId;
use crate::store::{AccountRef, HistoryRef, StoreError, StoreResult};
use serde::Serialize;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// How many buckets accounts are spread over: one per group of
/// [`crate::core::accounts::GROUPS`]. Part of the on-disk schema: changing it needs a new
/// schema version. 4096 keeps a bucket near 40 KB at a million accounts, well below sled's
/// 128 KB blob threshold.
pub const BUCKETS: u32 = crate::core::accounts::GROUPS as u32;

/// A bucket's key in the tree.
pub type BucketKey = [u8; 2];

/// The key of group `g`'s bucket.
pub fn key_of(g: usize) -> BucketKey {
    (g as u16).to_be_bytes()
}

/// The bucket an employee ID belongs to: its group's ([`crate::core::accounts::group_of`]).
pub fn bucket_of(employee_id: &str) -> BucketKey {
    key_of(crate::core::accounts::group_of(employee_id))
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

/// Reads a bucket in place for a sync: each account's [`AccountHead`], and its bytes to read
/// it whole if it changes, with the checks of [`decode`]. Every byte of every account is
/// decoded (the history too, without a copy), so that it accepts exactly what [`decode`]
/// accepts (the test `heads_accept_what_decode_accepts` holds it to that) and an account
/// it read always reads whole.
pub fn heads<'a>(key: &[u8], bytes: &'a [u8]) -> StoreResult<HeadBucket<'a>> {
    let (len, mut rest): (usize, _) =
        postcard::take_from_bytes(bytes).map_err(|e| corrupt(key, e))?;
    // Never more accounts than bytes: the count is read from disk.
    let room = len.min(bytes.len());
    let mut bucket = HeadBucket {
        heads: Vec::with_capacity(room),
        bytes: Vec::with_capacity(room),
    };
    for _ in 0..len {
        let (head, after): (Head<'_>, _) =
            postcard::take_from_bytes(rest).map_err(|e| corrupt(key, e))?;
        bucket.bytes.push(&rest[..rest.len() - after.len()]);
        bucket.heads.push(head.0);
        rest = after;
    }
    check_layout(key, rest, bucket.heads.iter().map(|h| h.employee_id))?;
    Ok(bucket)
}

/// A bucket read by [`heads`].
pub struct HeadBucket<'a> {
    heads: Vec<AccountHead<'a>>,
    bytes: Vec<&'a [u8]>,
}

impl AccountGroup for HeadBucket<'_> {
    fn heads(&self) -> &[AccountHead<'_>] {
        &self.heads
    }

    fn whole(&self, i: usize) -> Account {
        postcard::from_bytes(self.bytes[i])
            .expect("`heads` decoded every byte of this account as `decode` does")
    }
}

/// An account's encoding read for its head: the fields of [`Account`] in its order, the
/// rest decoded and let go.
struct Head<'a>(AccountHead<'a>);

impl<'de> serde::Deserialize<'de> for Head<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            employee_id: &'a str,
            email: &'a str,
            role: &'a str,
            status: Status,
            origin: Origin,
            rule_id: Option<RuleId>,
            _created_at: &'a str,
            _updated_at: &'a str,
            _history: Skipped,
        }
        let f = Fields::deserialize(d)?;
        Ok(Head(AccountHead {
            employee_id: f.employee_id,
            email: f.email,
            role: f.role,
            status: f.status,
            origin: f.origin,
            rule_id: f.rule_id,
        }))
    }
}

/// A history read entry by entry (as [`HistoryRef`]s) and not kept.
struct Skipped;

impl<'de> serde::Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Skipped;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a history")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Skipped, A::Error> {
                while seq.next_element::<HistoryRef<'de>>()?.is_some() {}
                Ok(Skipped)
            }
        }
        d.deserialize_seq(Entries)
    }
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
        let read = heads(&key, &bytes).unwrap();
        let want: Vec<AccountHead<'_>> = accounts.iter().map(Account::head).collect();
        assert_eq!(read.heads(), &want[..]);
        assert_eq!((0..3).map(|i| read.whole(i)).collect::<Vec<_>>(), accounts);
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
            for err in [
                decode(&k, &b).unwrap_err(),
                borrow_len(&k, &b).unwrap_err(),
                heads(&k, &b).err().unwrap(),
            ] {
                assert!(err.to_string().contains(want), "{err}");
            }
        }
    }

    proptest! {
        /// Any bytes: `borrow` and `heads` accept exactly what `decode` accepts, and `heads`
        /// reads the same accounts (so reading one whole never fails).
        #[test]
        fn borrow_and_heads_accept_what_decode_accepts(
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
            let decoded = decode(&key, &bytes);
            prop_assert_eq!(decoded.is_ok(), borrow_len(&key, &bytes).is_ok());
            let read = heads(&key, &bytes);
            prop_assert_eq!(decoded.is_ok(), read.is_ok());
            if let (Ok(decoded), Ok(read)) = (decoded, read) {
                let want: Vec<AccountHead<'_>> = decoded.iter().map(Account::head).collect();
                prop_assert_eq!(read.heads(), &want[..]);
                for (i, account) in decoded.iter().enumerate() {
                    prop_assert_eq!(&read.whole(i), account);
                }
            }
        }
    }
}
