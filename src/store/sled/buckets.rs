//! How accounts are laid out in sled: grouped into a fixed number of buckets by a stable
//! hash of the employee ID, each bucket one compact binary record (postcard) of its
//! accounts sorted by ID.
//!
//! Why: a first import of a million employees writes ~950k accounts in the one transaction
//! SPEC §5 asks for. sled keeps an epoch pin and a page copy per insert until such a
//! transaction commits (~5 KB each, 7 GB in all, and two thirds of the run time). With
//! buckets the same transaction writes at most [`BUCKETS`] values, and a re-sync that changes
//! a handful of accounts rewrites only their buckets. See BENCHMARKS.md.

use crate::core::accounts::{Account, AccountGroup, AccountHead};
use crate::core::packed::{Packed, take_head_at, valid_prefix};
use crate::core::parallel::Cores;
use crate::store::{AccountRef, StoreError, StoreResult};
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

/// The group whose bucket `key` is ([`key_of`] the other way).
pub fn number_of(key: BucketKey) -> usize {
    usize::from(u16::from_be_bytes(key))
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
    let (len, accounts): (usize, _) =
        postcard::take_from_bytes(bytes).map_err(|e| corrupt(key, e))?;
    // Never more accounts than bytes: the count is read from disk.
    let room = len.min(bytes.len());
    let mut bucket = HeadBucket {
        heads: Vec::with_capacity(room),
        bytes: Vec::with_capacity(room),
    };
    // The accounts' strings checked as UTF-8 in one pass over the bucket, not one by one.
    let text = valid_prefix(accounts);
    let mut at = 0;
    for _ in 0..len {
        let (head, end) = take_head_at(accounts, text, at).map_err(|e| corrupt(key, e))?;
        bucket.bytes.push(&accounts[at..end]);
        bucket.heads.push(head);
        at = end;
    }
    check_layout(
        key,
        &accounts[at..],
        bucket.heads.iter().map(|h| h.employee_id),
    )?;
    Ok(bucket)
}

/// [`heads`] of a bucket as the tree gives it: none is a bucket without accounts.
pub fn heads_or_empty<'a>(key: &[u8], bytes: Option<&'a [u8]>) -> StoreResult<HeadBucket<'a>> {
    bytes.map_or_else(|| Ok(HeadBucket::default()), |bytes| heads(key, bytes))
}

/// A bucket read by [`heads`].
#[derive(Default)]
pub struct HeadBucket<'a> {
    heads: Vec<AccountHead<'a>>,
    bytes: Vec<&'a [u8]>,
}

impl<'a> HeadBucket<'a> {
    /// The heads, with the lifetime of the bucket's bytes.
    pub fn into_heads(self) -> Vec<AccountHead<'a>> {
        self.heads
    }
}

#[cfg(test)]
impl<'a> HeadBucket<'a> {
    /// A bucket of these accounts (sorted by ID), without the layout checks (tests).
    pub fn of(packed: &'a [Packed]) -> HeadBucket<'a> {
        HeadBucket {
            heads: packed.iter().map(Packed::head).collect(),
            bytes: packed.iter().map(Packed::bytes).collect(),
        }
    }
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

/// Groups packed accounts to write by bucket, in key order, each read for its head once
/// (in their order within a bucket). The heads of a large write are read on two cores: a
/// first import's 950k, one core alone, took ~0.2 s of its commit.
pub fn group_packed<'a>(
    accounts: &'a [Packed],
    cores: Cores,
) -> BTreeMap<BucketKey, Vec<Entry<'a>>> {
    let entries = |part: &'a [Packed]| -> Vec<(BucketKey, Entry<'a>)> {
        part.iter()
            .map(|a| {
                let head = a.head();
                let entry = Entry {
                    head,
                    bytes: a.bytes(),
                    rewritten: true,
                };
                (bucket_of(head.employee_id), entry)
            })
            .collect()
    };
    let (lower, upper) = accounts.split_at(accounts.len() / 2);
    let (lower, upper) = cores.join_if(
        accounts.len() >= SPLIT_MIN,
        || entries(lower),
        || entries(upper),
    );
    let mut groups: BTreeMap<BucketKey, Vec<Entry<'a>>> = BTreeMap::new();
    for (key, entry) in lower.into_iter().chain(upper) {
        groups.entry(key).or_default().push(entry);
    }
    groups
}

/// Fewer accounts than this are grouped on one core.
const SPLIT_MIN: usize = 4096;

/// One account of a bucket being rewritten: its head, its packed bytes, and whether the
/// write replaces it (`false`: kept as it was).
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    /// The account's head.
    pub head: AccountHead<'a>,
    /// The account, packed.
    pub bytes: &'a [u8],
    /// Whether the write replaces it.
    pub rewritten: bool,
}

/// A bucket's accounts after `updates` (which replace accounts with the same ID; of two
/// updates of one ID the later wins) and without the IDs in `remove`, in order. The accounts
/// kept are not decoded: their bytes are copied as they are.
pub fn merge<'a>(
    existing: &HeadBucket<'a>,
    updates: &[Entry<'a>],
    remove: &[&str],
) -> Vec<Entry<'a>> {
    let mut ups: Vec<Entry<'a>> = updates.iter().rev().copied().collect();
    // Stable: of two updates of one ID the later (now first) is kept.
    ups.sort_by(|a, b| a.head.employee_id.cmp(b.head.employee_id));
    ups.dedup_by(|later, first| later.head.employee_id == first.head.employee_id);
    let kept = existing
        .heads
        .iter()
        .zip(&existing.bytes)
        .map(|(h, b)| Entry {
            head: *h,
            bytes: b,
            rewritten: false,
        });
    let mut out = Vec::with_capacity(existing.heads.len() + ups.len());
    let (mut old, mut new) = (kept.peekable(), ups.into_iter().peekable());
    loop {
        let next = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => match o.head.employee_id.cmp(n.head.employee_id) {
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
        out.extend(next.filter(|e| !remove.contains(&e.head.employee_id)));
    }
    out
}

/// Encodes merged accounts as a bucket: exactly the bytes [`encode`] gives for them (a
/// postcard list is its length, then its items one after another).
pub fn encode_entries(entries: &[Entry<'_>]) -> Vec<u8> {
    let size: usize = entries.iter().map(|e| e.bytes.len()).sum();
    let mut out = postcard::to_extend(&entries.len(), Vec::with_capacity(size + 10))
        .expect("a length always serializes");
    for e in entries {
        out.extend_from_slice(e.bytes);
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
    fn a_large_write_is_grouped_in_its_order_as_on_one_core() {
        // Enough accounts to be grouped on two cores, with updates of one ID in both halves
        // (the later must stay later in its bucket).
        let n = 2 * SPLIT_MIN;
        let mut accounts: Vec<Account> =
            (0..n).map(|i| account(&format!("E{}", i % 3000))).collect();
        for (i, a) in accounts.iter_mut().enumerate() {
            a.role = format!("role {i}");
        }
        let packed: Vec<Packed> = accounts.iter().map(Packed::of).collect();
        let grouped = group_packed(&packed, Cores::Two);
        let mut one_core: BTreeMap<BucketKey, Vec<&str>> = BTreeMap::new();
        for a in &accounts {
            one_core
                .entry(bucket_of(&a.employee_id))
                .or_default()
                .push(&a.role);
        }
        let got: BTreeMap<BucketKey, Vec<&str>> = grouped
            .iter()
            .map(|(k, entries)| (*k, entries.iter().map(|e| e.head.role).collect()))
            .collect();
        assert_eq!(got, one_core);
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
        let packed = [&stale, &added, &changed].map(Packed::of);
        let updates: Vec<Entry<'_>> = group_packed(&packed, Cores::Two)
            .into_values()
            .flatten()
            .collect();
        let merged = merge(&read, &updates, &[refs[0]]);
        let got: Vec<&str> = merged.iter().map(|e| e.head.employee_id).collect();
        let mut want = vec![refs[1], refs[2], refs[4]];
        want.sort();
        assert_eq!(got, want);
        let entry = |id: &str| merged.iter().find(|e| e.head.employee_id == id).unwrap();
        assert_eq!(
            entry(refs[1]).head.status,
            Status::Inactive,
            "the later update wins"
        );
        assert!(entry(refs[1]).rewritten && entry(refs[4]).rewritten);
        assert!(!entry(refs[2]).rewritten, "kept as it was");
        // The bytes written are those of encoding the accounts after the write.
        let kept = accounts.iter().find(|a| a.employee_id == refs[2]).unwrap();
        let mut after = vec![changed.clone(), kept.clone(), added.clone()];
        after.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
        let bytes = encode_entries(&merged);
        assert_eq!(bytes, encode(&after));
        assert_eq!(decode(&key, &bytes).unwrap(), after);
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
