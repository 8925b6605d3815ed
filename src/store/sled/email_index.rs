//! The index of accounts by email: which employee IDs hold an email, folded as
//! `core::columns::fold` folds it (trimmed, Unicode lower case). `auth check` runs at every SSO
//! sign-in and reads one index bucket and the accounts it names, instead of every account.
//!
//! Laid out as the accounts are ([`super::buckets`]): [`buckets::BUCKETS`] buckets keyed by
//! the FNV-1a hash of the folded email, each one postcard record of its (folded email,
//! employee ID) pairs, sorted. A first import of a million accounts then writes at most 4096
//! index values in its one transaction, not a million keys (see the buckets' note on why
//! that matters to sled). Every write of accounts stages the index buckets it changes and
//! writes them in the same transaction.
//!
//! The start-up check compares the index with the accounts and refuses the store when they
//! differ ([`Digest`]); see `SledStore::verify` for why it refuses rather than rebuilds.

use super::Staged;
use super::buckets::{self, BucketKey};
use crate::core::accounts::AccountHead;
use crate::core::parallel::{Cores, WORTH_A_THREAD};
use crate::store::{StoreError, StoreResult};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// An email folded as the core folds it (borrowed when it already is).
pub use crate::core::columns::fold;

/// The index bucket of a folded email (the accounts' hash, over the email's bytes).
pub fn bucket_of(folded: &str) -> BucketKey {
    buckets::bucket_of(folded)
}

fn corrupt(key: &[u8], what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("email index bucket {key:02x?}: {what}"))
}

/// Encodes a bucket's entries (sorted, unique); a `Cow<str>` encodes as the `str` it holds.
fn encode<E, I>(entries: &[(E, I)]) -> Vec<u8>
where
    E: AsRef<str> + serde::Serialize,
    I: AsRef<str> + serde::Serialize,
{
    debug_assert!(
        entries
            .windows(2)
            .all(|w| (w[0].0.as_ref(), w[0].1.as_ref()) < (w[1].0.as_ref(), w[1].1.as_ref()))
    );
    let room: usize = entries
        .iter()
        .map(|(e, i)| e.as_ref().len() + i.as_ref().len() + 2)
        .sum();
    postcard::to_extend(entries, Vec::with_capacity(room + 5))
        .expect("index entries always serialize")
}

/// Decodes a bucket with its strings borrowed, refusing trailing bytes, entries out of
/// order, in the wrong bucket, or with an email that is not folded.
pub fn borrow<'a>(key: &[u8], bytes: &'a [u8]) -> StoreResult<Vec<(&'a str, &'a str)>> {
    let (entries, rest): (Vec<(&str, &str)>, _) =
        postcard::take_from_bytes(bytes).map_err(|e| corrupt(key, e))?;
    if !rest.is_empty() {
        return Err(corrupt(
            key,
            format!("{} bytes after the last entry", rest.len()),
        ));
    }
    for (i, (email, id)) in entries.iter().enumerate() {
        if bucket_of(email).as_slice() != key || fold(email) != *email {
            return Err(corrupt(
                key,
                format!("entry {email:?} does not belong here"),
            ));
        }
        if i > 0 && entries[i - 1] >= (*email, *id) {
            return Err(corrupt(key, format!("entry {email:?} {id:?} out of order")));
        }
    }
    Ok(entries)
}

/// The employee IDs a bucket lists for a folded email, in order.
pub fn ids_in(key: &[u8], bytes: &[u8], folded: &str) -> StoreResult<Vec<String>> {
    let entries = borrow(key, bytes)?;
    let first = entries.partition_point(|(email, _)| *email < folded);
    Ok(entries[first..]
        .iter()
        .take_while(|(email, _)| *email == folded)
        .map(|(_, id)| id.to_string())
        .collect())
}

/// The buckets of an index over these (folded email, employee ID) pairs, in key order.
pub fn build<'a>(
    entries: impl IntoIterator<Item = (Cow<'a, str>, &'a str)>,
) -> Vec<(BucketKey, Vec<u8>)> {
    let mut groups: BTreeMap<BucketKey, Vec<(Cow<str>, &str)>> = BTreeMap::new();
    for (email, id) in entries {
        groups
            .entry(bucket_of(&email))
            .or_default()
            .push((email, id));
    }
    groups
        .into_iter()
        .map(|(key, mut group)| {
            group.sort();
            group.dedup();
            (key, encode(&group))
        })
        .collect()
}

/// (folded email, employee ID) pairs, borrowed.
#[cfg(test)]
type Pairs<'p> = Vec<(&'p str, &'p str)>;

/// One index bucket's part of a write of accounts.
#[derive(Default)]
struct Group {
    /// How many new entries it has (they are kept in its span's [`Added`]).
    added: usize,
    /// The length of their folded emails and IDs together.
    text: usize,
    /// Entries of accounts removed or whose email changed (their old email).
    remove: Vec<(String, String)>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.added == 0 && self.remove.is_empty()
    }
}

/// How many consecutive index buckets keep their new entries in one [`Added`]. A first
/// import adds a million entries in the order of the accounts' buckets, each to a bucket of
/// its email's: 4,096 buckets' own buffers had nearly every entry written to a page of its
/// own, far from the last (a miss of the address cache each); 256 spans' buffers are few
/// enough pages to stay in it.
const SPAN: usize = 16;

/// The new entries of [`SPAN`] consecutive index buckets, in the order they came.
#[derive(Default)]
struct Added {
    /// Each entry's bucket number and where its folded email and employee ID end in `text`
    /// (each starts where the one before it ends).
    ends: Vec<(u16, u32, u32)>,
    /// The folded emails and IDs of the new entries, one after another. They are copied
    /// while their account is in cache (it was just encoded), so that sorting and encoding
    /// them later reads this small buffer, not a million accounts spread over the heap.
    text: String,
}

impl Added {
    fn push(&mut self, bucket: usize, folded: &str, id: &str) {
        self.text.push_str(folded);
        let email_end = self.text.len();
        self.text.push_str(id);
        let end = |at: usize| u32::try_from(at).expect("an index span's changes under 4 GiB");
        let bucket = u16::try_from(bucket).expect("index bucket numbers fit 16 bits");
        self.ends
            .push((bucket, end(email_end), end(self.text.len())));
    }

    /// The new entries, (bucket number, folded email, employee ID).
    fn entries(&self) -> impl Iterator<Item = (usize, &str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(bucket, email_end, id_end)| {
            let (email_end, id_end) = (email_end as usize, id_end as usize);
            let entry = (
                usize::from(bucket),
                &self.text[start..email_end],
                &self.text[email_end..id_end],
            );
            start = id_end;
            entry
        })
    }
}

/// What a write of accounts changes in the index, by index bucket.
pub struct Changes {
    /// Indexed by bucket number.
    groups: Vec<Group>,
    /// The new entries, by [`SPAN`] of buckets.
    spans: Vec<Added>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes::with_room(0)
    }
}

/// From how many new entries the changes of a write (or of each half of one) are made
/// with room for them up front.
const ROOM_FROM: usize = 16 * buckets::BUCKETS as usize;

/// Room a new entry's folded email and ID are given up front (a million rows' are ~36
/// bytes together).
const ENTRY_TEXT: usize = 40;

impl Changes {
    /// The changes of a write (or of one half of it) that adds about `entries` entries:
    /// from [`ROOM_FROM`] on, each span is made with room for its buckets' share and a
    /// quarter more, so that its vectors are not moved as they grow (at a first import a
    /// million entries grew their buffers by doubling, a copy of all they held each time).
    pub fn with_room(entries: usize) -> Changes {
        let share = match entries >= ROOM_FROM {
            true => entries / buckets::BUCKETS as usize * 5 / 4 + 4,
            false => 0,
        };
        let span = || Added {
            ends: Vec::with_capacity(share * SPAN),
            text: String::with_capacity(share * SPAN * ENTRY_TEXT),
        };
        let buckets = buckets::BUCKETS as usize;
        Changes {
            groups: (0..buckets).map(|_| Group::default()).collect(),
            spans: (0..buckets.div_ceil(SPAN)).map(|_| span()).collect(),
        }
    }

    fn group(&mut self, folded: &str) -> &mut Group {
        &mut self.groups[buckets::number_of(bucket_of(folded))]
    }

    /// Adds the entry of `id` under its folded email.
    fn add(&mut self, folded: &str, id: &str) {
        let n = buckets::number_of(bucket_of(folded));
        let group = &mut self.groups[n];
        group.added += 1;
        group.text += folded.len() + id.len();
        self.spans[n / SPAN].push(n, folded, id);
    }

    /// Adds the changes of one bucket of accounts: `existing` before the write, `merged`
    /// after it (both sorted by ID, as [`buckets::merge`] gives them).
    pub fn add_bucket(&mut self, existing: &[AccountHead<'_>], merged: &[buckets::Entry<'_>]) {
        let (mut old, mut new) = (existing.iter().peekable(), merged.iter().peekable());
        loop {
            match (old.peek(), new.peek()) {
                (Some(o), Some(n)) if o.employee_id == n.head.employee_id => {
                    // Kept as it was, or rewritten.
                    if n.rewritten {
                        let (was, is) = (fold(o.email), fold(n.head.email));
                        if was != is {
                            self.group(&was)
                                .remove
                                .push((was.into_owned(), o.employee_id.to_string()));
                            self.add(&is, n.head.employee_id);
                        }
                    }
                    old.next();
                    new.next();
                }
                (Some(o), n) if n.is_none_or(|n| o.employee_id < n.head.employee_id) => {
                    let was = fold(o.email);
                    self.group(&was)
                        .remove
                        .push((was.into_owned(), o.employee_id.to_string()));
                    old.next();
                }
                (_, Some(n)) => {
                    let is = fold(n.head.email);
                    self.add(&is, n.head.employee_id);
                    new.next();
                }
                (_, None) => break,
            }
        }
    }

    /// About how many bytes staging the index buckets in `range` for the changes of `parts`
    /// works on: the records of the buckets they touch, as `size` estimates each, and the
    /// changes' own text.
    pub fn bytes(
        parts: &[Changes],
        range: std::ops::Range<usize>,
        size: &dyn Fn(usize) -> usize,
    ) -> usize {
        range
            .map(|n| {
                let changes = parts.iter().map(|c| &c.groups[n]);
                match changes.clone().all(Group::is_empty) {
                    true => 0,
                    false => size(n) + changes.map(|g| g.text).sum::<usize>(),
                }
            })
            .sum()
    }

    /// Reads the index buckets in `range` that the changes of `parts` touch and builds what
    /// they hold after them; half of them on a second core when that is worth it (a first
    /// import adds a million entries), as `size` estimates each bucket's record.
    pub fn stage(
        parts: &[Changes],
        range: std::ops::Range<usize>,
        read: &(dyn Fn(usize) -> StoreResult<Option<Vec<u8>>> + Sync),
        size: &dyn Fn(usize) -> usize,
        cores: Cores,
    ) -> StoreResult<Vec<Staged>> {
        let bytes = Changes::bytes(parts, range.clone(), size);
        let stage = |range: std::ops::Range<usize>| {
            let mut staged = Vec::new();
            // The new entries of each bucket of a span, gathered from the span's list.
            let mut added: Vec<Vec<(&str, &str)>> = (0..SPAN).map(|_| Vec::new()).collect();
            for span in range.start / SPAN..range.end.div_ceil(SPAN) {
                let numbers = range.start.max(span * SPAN)..range.end.min((span + 1) * SPAN);
                let groups = |n: usize| parts.iter().map(move |c| &c.groups[n]);
                if numbers.clone().all(|n| groups(n).all(Group::is_empty)) {
                    continue;
                }
                for (n, email, id) in parts.iter().flat_map(|c| c.spans[span].entries()) {
                    if numbers.contains(&n) {
                        added[n % SPAN].push((email, id));
                    }
                }
                for n in numbers {
                    if groups(n).all(Group::is_empty) {
                        continue;
                    }
                    let new = &mut added[n % SPAN];
                    let key = (n as u16).to_be_bytes();
                    let before = read(n)?;
                    let mut entries: Vec<(&str, &str)> = match &before {
                        Some(bytes) => borrow(&key, bytes)?,
                        None => Vec::with_capacity(new.len()),
                    };
                    let removed = |e: &str, i: &str| {
                        groups(n).any(|g| g.remove.iter().any(|(re, ri)| re == e && ri == i))
                    };
                    if groups(n).any(|g| !g.remove.is_empty()) {
                        entries.retain(|(e, i)| !removed(e, i));
                    }
                    // Not `append`: `new` borrows from `parts`, `entries` may borrow `before`.
                    entries.extend(new.iter().copied());
                    new.clear();
                    entries.sort_unstable();
                    entries.dedup();
                    let after = (!entries.is_empty()).then(|| encode(&entries));
                    staged.push((n, after));
                }
            }
            Ok::<_, StoreError>(staged)
        };
        let half = range.start + range.len() / 2;
        let (staged, rest) = cores.join_if(
            bytes >= WORTH_A_THREAD,
            || stage(range.start..half),
            || stage(half..range.end),
        );
        let mut staged = staged?;
        staged.extend(rest?);
        Ok(staged)
    }

    /// The entries to add and to remove, in bucket order (for tests).
    #[cfg(test)]
    fn flat(&self) -> (Pairs<'_>, Pairs<'_>) {
        let add = (0..self.groups.len()).flat_map(|n| {
            self.spans[n / SPAN]
                .entries()
                .filter(move |(bucket, ..)| *bucket == n)
                .map(|(_, email, id)| (email, id))
        });
        let remove = self
            .groups
            .iter()
            .flat_map(|g| &g.remove)
            .map(|(e, i)| (&e[..], &i[..]));
        (add.collect(), remove.collect())
    }
}

/// An order-free summary of a set of (folded email, employee ID) pairs: their count and the
/// wrapping sum of a hash of each. The start-up check sums the pairs the accounts imply and
/// the pairs the index holds; any entry lost, added or altered on either side changes one
/// sum (but for a 2^-64 chance), without a second copy of a million pairs in memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    entries: u64,
    sum: u64,
}

impl Digest {
    /// Counts one pair.
    pub fn add(&mut self, folded: &str, id: &str) {
        self.entries += 1;
        self.sum = self.sum.wrapping_add(pair_hash(folded, id));
    }

    /// Both sets together.
    pub fn merge(self, other: Digest) -> Digest {
        Digest {
            entries: self.entries + other.entries,
            sum: self.sum.wrapping_add(other.sum),
        }
    }

    /// The digest of every pair in an index bucket (checking it decodes).
    pub fn of_bucket(key: &[u8], bytes: &[u8]) -> StoreResult<Digest> {
        let mut digest = Digest::default();
        for (email, id) in borrow(key, bytes)? {
            digest.add(email, id);
        }
        Ok(digest)
    }

    /// Refuses an index whose pairs are not the accounts' pairs.
    pub fn compare(accounts: Digest, index: Digest) -> StoreResult<()> {
        if accounts == index {
            return Ok(());
        }
        Err(StoreError::Corrupt(format!(
            "the email index does not match the accounts ({} accounts, {} index entries{})",
            accounts.entries,
            index.entries,
            if accounts.entries == index.entries {
                ", some of them differ"
            } else {
                ""
            }
        )))
    }
}

/// A 64-bit hash of a pair, eight bytes at a time, each part's length mixed in (so
/// ("a", "bc") and ("ab", "c") hash apart), then finalized as SplitMix64 does. Not SipHash:
/// the start-up check hashes every pair twice, and it looks for damage, not an adversary.
fn pair_hash(folded: &str, id: &str) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0;
    for part in [folded.as_bytes(), id.as_bytes()] {
        h = (h ^ part.len() as u64).wrapping_mul(K);
        for chunk in part.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = (h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::samples::account;
    use proptest::prelude::*;

    #[test]
    fn a_large_write_makes_its_spans_with_room_and_a_small_one_does_not() {
        let room = |c: &Changes| c.spans.iter().map(|a| a.ends.capacity()).min().unwrap();
        assert_eq!(room(&Changes::with_room(ROOM_FROM - 1)), 0);
        let large = Changes::with_room(1_000_000);
        assert!(room(&large) >= 1_000_000 / buckets::BUCKETS as usize * SPAN);
        assert!(
            large
                .spans
                .iter()
                .all(|a| a.text.capacity() >= room(&large) * ENTRY_TEXT)
        );
    }

    /// Each staged bucket's entries, decoded.
    fn decoded(staged: &[Staged]) -> Vec<(usize, Vec<(String, String)>)> {
        staged
            .iter()
            .map(|(n, bytes)| {
                let key = (*n as u16).to_be_bytes();
                let entries = borrow(&key, bytes.as_deref().unwrap()).unwrap();
                let owned = entries.iter().map(|(e, i)| (e.to_string(), i.to_string()));
                (*n, owned.collect())
            })
            .collect()
    }

    #[test]
    fn staging_ranges_of_any_alignment_gives_each_bucket_its_own_entries_once() {
        let mut parts = [Changes::default(), Changes::default()];
        let mut expected: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
        for i in 0..5000 {
            let (email, id) = (format!("e{i}@x.io"), format!("E{i}"));
            parts[i % 2].add(&email, &id);
            let n = buckets::number_of(bucket_of(&email));
            expected.entry(n).or_default().push((email, id));
        }
        for entries in expected.values_mut() {
            entries.sort();
        }
        let expected: Vec<_> = expected.into_iter().collect();
        let (read, size) = (|_| Ok(None), |_| 0);
        let all = buckets::BUCKETS as usize;
        let stage = |range, cores| Changes::stage(&parts, range, &read, &size, cores).unwrap();
        assert_eq!(decoded(&stage(0..all, Cores::One)), expected);
        // Ranges that cut spans of 16, and halves split at an unaligned bucket.
        let mut pieces = Vec::new();
        for range in [
            0..7,
            7..23,
            23..24,
            24..24,
            24..1001,
            1001..all - 3,
            all - 3..all,
        ] {
            pieces.extend(stage(range, Cores::Two));
        }
        assert_eq!(decoded(&pieces), expected);
    }

    #[test]
    fn fold_trims_and_lower_cases_as_spec_section_1_says() {
        for email in [
            "a@x.io",
            "  A@X.io ",
            "J\u{d6}RG@x.io",
            "\u{130}@x.io",
            "\u{3a3}\u{391}@x.io",
            "\tmixed@X.IO\n",
            "",
        ] {
            assert_eq!(fold(email), email.trim().to_lowercase(), "{email:?}");
        }
        assert!(matches!(fold(" a@x.io"), Cow::Borrowed("a@x.io")));
    }

    proptest! {
        #[test]
        fn fold_is_unicode_lower_casing_after_trimming(email in "\\PC{0,12}") {
            prop_assert_eq!(fold(&email), email.trim().to_lowercase());
        }
    }

    /// One bucket's pairs, as `build` writes them.
    fn one_bucket(pairs: &[(&str, &str)]) -> (BucketKey, Vec<u8>) {
        let built = build(pairs.iter().map(|(e, i)| (Cow::Borrowed(*e), *i)));
        assert_eq!(built.len(), 1, "{pairs:?} share a bucket");
        built.into_iter().next().unwrap()
    }

    #[test]
    fn a_bucket_lists_every_id_of_an_email_in_order() {
        let (key, bytes) = one_bucket(&[("a@x.io", "E2"), ("a@x.io", "E1")]);
        assert_eq!(ids_in(&key, &bytes, "a@x.io").unwrap(), ["E1", "E2"]);
        assert!(ids_in(&key, &bytes, "b@x.io").unwrap().is_empty());
    }

    #[test]
    fn misplaced_unordered_unfolded_or_trailing_entries_are_refused() {
        let (key, bytes) = one_bucket(&[("a@x.io", "E1")]);
        let other = ((u16::from_be_bytes(key) + 1) % buckets::BUCKETS as u16).to_be_bytes();
        let unordered = postcard::to_allocvec(&vec![("a@x.io", "E2"), ("a@x.io", "E1")]).unwrap();
        let unfolded = postcard::to_allocvec(&vec![("A@x.io", "E1")]).unwrap();
        for (k, b, want) in [
            (other, bytes.clone(), "does not belong"),
            (key, [bytes.clone(), vec![0]].concat(), "after the last"),
            (key, unordered, "out of order"),
            (bucket_of("A@x.io"), unfolded, "does not belong"),
        ] {
            let err = borrow(&k, &b).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn changes_follow_the_final_state_of_each_account() {
        use crate::core::accounts::AccountGroup;
        use crate::core::packed::Packed;
        let mut moved = account("E1");
        moved.email = "New@X.io".into();
        let mut recased = account("E2");
        recased.email = "E2@X.IO".into();
        let existing = [account("E1"), account("E2"), account("E3")];
        let stale = account("E4");
        let mut added = account("E4");
        added.email = "four@x.io".into();
        let existing: Vec<Packed> = existing.iter().map(Packed::of).collect();
        let existing = buckets::HeadBucket::of(&existing);
        let packed = [&moved, &recased, &stale, &added].map(Packed::of);
        let updates: Vec<buckets::Entry<'_>> = packed
            .iter()
            .map(|p| buckets::Entry {
                head: p.head(),
                bytes: p.bytes(),
                rewritten: true,
            })
            .collect();
        let merged = buckets::merge(&existing, &updates, &["E3", "E9"]);
        let mut c = Changes::default();
        c.add_bucket(existing.heads(), &merged);
        let (mut add, mut remove) = c.flat();
        add.sort();
        remove.sort();
        assert_eq!(add, [("four@x.io", "E4"), ("new@x.io", "E1")]);
        assert_eq!(remove, [("e1@x.io", "E1"), ("e3@x.io", "E3")]);
    }

    #[test]
    fn the_digest_tells_apart_lost_added_and_altered_pairs() {
        let digest = |pairs: &[(&str, &str)]| {
            let mut d = Digest::default();
            pairs.iter().for_each(|(e, i)| d.add(e, i));
            d
        };
        let base = digest(&[("a@x.io", "E1"), ("b@x.io", "E2")]);
        assert_eq!(base, digest(&[("b@x.io", "E2"), ("a@x.io", "E1")]));
        for other in [
            digest(&[("a@x.io", "E1")]),
            digest(&[("a@x.io", "E1"), ("b@x.io", "E2"), ("c@x.io", "E3")]),
            digest(&[("a@x.io", "E1"), ("b@x.io", "E3")]),
            digest(&[("a@x.io", "E1"), ("b@x.io", "E2"), ("b@x.io", "E2")]),
            digest(&[("a@x.ioE", "1"), ("b@x.io", "E2")]),
            digest(&[("a@x.io\0", "E1"), ("b@x.io", "E2")]),
        ] {
            assert!(Digest::compare(base, other).is_err(), "{other:?}");
        }
        assert!(Digest::compare(base, base).is_ok());
    }
}
