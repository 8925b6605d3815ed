//! The rows of a key (an employee ID, a folded email), found by grouping the rows by the
//! key's hash once every row is read.
//!
//! A table that takes each row's key as the row is read (`FirstRows`) waits on a cache miss
//! or two a row in a table of up to a million entries. Grouped afterwards, the keys are
//! hashed in row order, counted and placed by the top bits of their hash (a group holds
//! ~8–16 keys), and each group read on its own, in cache: a million IDs and a million emails
//! so took ~0.12 s less CPU than the tables in a million-row `sync` (BENCHMARKS.md, session
//! 19). It tells only whether a key repeats, not where first: the rows whose findings must
//! name the first line of a repeated key are read with the tables (see `super::halves`).

use std::borrow::Cow;
use std::hash::BuildHasher;

use crate::core::model::{Employee, FastHash};

/// What rows are told apart by, read from a row.
pub(super) type Key = for<'e> fn(&'e Employee) -> Cow<'e, str>;

/// A row's employee ID.
pub(super) fn id_key(e: &Employee) -> Cow<'_, str> {
    Cow::Borrowed(e.id())
}

/// A row's email, folded (compared case-insensitively, SPEC §1).
pub(super) fn email_key(e: &Employee) -> Cow<'_, str> {
    crate::core::columns::fold(e.email())
}

/// Groups hold this many keys on average, or fewer.
const GROUP_KEYS: usize = 8;

/// At most 2^16 groups: their starts stay within 256 KB.
const MAX_GROUP_BITS: u32 = 16;

/// A group of more keys than this is sorted (by hash, then row), and searched and checked
/// for repeats in that order; a smaller one (nearly every group) is read whole, its keys in
/// row order. Sorting every group took a fifth of the index's time; a group this large is
/// rare (a handful of 65,536 at a million keys) unless its keys' hashes were made to
/// collide; sorted, such a group is searched by halves rather than read whole (keys that
/// share a group and the 32 bits kept, ~47 bits of their hash, are still compared one by
/// one, as in the table of first rows keyed by the same 32 bits).
const SORTED_MIN: usize = 32;

/// Marks a row without a key among the hashes (a key's hash has its lowest bit set).
pub(super) const NO_KEY: u64 = 0;

/// The rows that have a key, grouped by the key's hash.
pub(super) struct KeyIndex {
    /// The key these rows are indexed by.
    key_of: Key,
    /// How far a hash is shifted right to give its group (64 for a single group).
    shift: u32,
    /// Where each group's entries start in `entries`, and where the last ends.
    starts: Vec<u32>,
    /// 32 bits of each key's hash and its row, group by group (see [`SORTED_MIN`]).
    entries: Vec<(u32, u32)>,
}

impl KeyIndex {
    /// The keys of the `rows` for which `has_key` holds.
    pub(super) fn new(rows: &[Employee], key_of: Key, has_key: impl Fn(&Employee) -> bool) -> Self {
        let mut hashes = vec![NO_KEY; rows.len()];
        hash_keys(rows, key_of, has_key, &mut hashes);
        Self::of_hashes(hashes, key_of)
    }

    /// The keys whose hashes [`hash_keys`] wrote, a row's at its position, from `key_of`.
    pub(super) fn of_hashes(hashes: Vec<u64>, key_of: Key) -> Self {
        let keys = hashes.iter().filter(|&&h| h != NO_KEY).count();
        let bits = (keys / GROUP_KEYS)
            .next_power_of_two()
            .trailing_zeros()
            .min(MAX_GROUP_BITS);
        let shift = 64 - bits;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for &h in hashes.iter().filter(|&&h| h != NO_KEY) {
            starts[group(h, shift) + 1] += 1;
        }
        for g in 1..starts.len() {
            starts[g] += starts[g - 1];
        }
        let mut next = starts.clone();
        let mut entries = vec![(0u32, 0u32); keys];
        for (row, &h) in hashes.iter().enumerate().filter(|(_, h)| **h != NO_KEY) {
            let slot = &mut next[group(h, shift)];
            entries[*slot as usize] = (h as u32, row as u32);
            *slot += 1;
        }
        drop(hashes);
        for g in starts.windows(2) {
            let group = &mut entries[g[0] as usize..g[1] as usize];
            if group.len() > SORTED_MIN {
                group.sort_unstable();
            }
        }
        Self {
            key_of,
            shift,
            starts,
            entries,
        }
    }

    /// The first of `rows` (those this index was made from) whose key is `key`.
    pub(super) fn row_of(&self, rows: &[Employee], key: &str) -> Option<usize> {
        let h = hash(key);
        let short = h as u32;
        let entries = self.group_of(h);
        let same_hash = |&&(s, _): &&(u32, u32)| s == short;
        let is_key = |&row: &usize| rows.get(row).is_some_and(|e| (self.key_of)(e) == key);
        if entries.len() > SORTED_MIN {
            let from = entries.partition_point(|&(s, _)| s < short);
            let candidates = entries[from..].iter().take_while(same_hash);
            candidates.map(|&(_, row)| row as usize).find(is_key)
        } else {
            let candidates = entries.iter().filter(same_hash);
            candidates.map(|&(_, row)| row as usize).find(is_key)
        }
    }

    /// Whether two of `rows` (those this index was made from) have the same key.
    pub(super) fn repeats(&self, rows: &[Employee]) -> bool {
        let key = |row: u32| (self.key_of)(&rows[row as usize]);
        self.starts.windows(2).any(|g| {
            let entries = &self.entries[g[0] as usize..g[1] as usize];
            if entries.len() > SORTED_MIN {
                entries
                    .chunk_by(|a, b| a.0 == b.0)
                    .any(|same_hash| same_hash.len() > 1 && self.share_a_key(rows, same_hash))
            } else {
                entries.iter().enumerate().any(|(i, &(s, row))| {
                    entries[..i]
                        .iter()
                        .any(|&(t, earlier)| t == s && key(earlier) == key(row))
                })
            }
        })
    }

    /// Whether two of the rows of `entries` (whose hashes share 32 bits) have the same key.
    fn share_a_key(&self, rows: &[Employee], entries: &[(u32, u32)]) -> bool {
        let mut keys: Vec<Cow<'_, str>> = entries
            .iter()
            .map(|&(_, row)| (self.key_of)(&rows[row as usize]))
            .collect();
        keys.sort_unstable();
        keys.windows(2).any(|pair| pair[0] == pair[1])
    }

    fn group_of(&self, h: u64) -> &[(u32, u32)] {
        let g = group(h, self.shift);
        &self.entries[self.starts[g] as usize..self.starts[g + 1] as usize]
    }
}

/// Writes into `hashes` the hash of each row's key ([`NO_KEY`] for a row without one): the
/// part of an index's making that reads the rows, which two cores can share by rows.
pub(super) fn hash_keys(
    rows: &[Employee],
    key_of: Key,
    has_key: impl Fn(&Employee) -> bool,
    hashes: &mut [u64],
) {
    for (e, h) in rows.iter().zip(hashes) {
        *h = match has_key(e) {
            true => hash(&key_of(e)),
            false => NO_KEY,
        };
    }
}

/// The hash of a key, its lowest bit set (see [`NO_KEY`]).
fn hash(key: &str) -> u64 {
    FastHash::default().hash_one(key) | 1
}

/// The group of a hash: its top bits.
fn group(h: u64, shift: u32) -> usize {
    h.checked_shr(shift).unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn emp(row: usize, id: &str, email: &str, inactive: bool) -> Employee {
        Employee::new(row as u64 + 2, id, email, "", inactive)
    }

    #[test]
    fn every_row_is_found_by_its_key_and_an_unknown_key_by_none() {
        let rows: Vec<Employee> = (0..5000)
            .map(|i| emp(i, &format!("E{i:07}"), "", false))
            .collect();
        let index = KeyIndex::new(&rows, id_key, |_| true);
        for (row, e) in rows.iter().enumerate() {
            assert_eq!(index.row_of(&rows, e.id()), Some(row));
        }
        assert_eq!(index.row_of(&rows, "E9999999"), None);
        assert_eq!(index.row_of(&rows, ""), None);
        assert!(!index.repeats(&rows));
    }

    #[test]
    fn a_repeated_id_is_found_and_its_first_row_given() {
        let mut rows: Vec<Employee> = (0..300)
            .map(|i| emp(i, &format!("E{i}"), "", false))
            .collect();
        rows.push(emp(300, "E17", "", false));
        let index = KeyIndex::new(&rows, id_key, |_| true);
        assert!(index.repeats(&rows));
        assert_eq!(index.row_of(&rows, "E17"), Some(17));
    }

    #[test]
    fn emails_compare_folded_and_only_rows_with_a_key_count() {
        let rows = vec![
            emp(0, "1", "Ann@X.example", false),
            emp(1, "2", "ann@x.example", true),
            emp(2, "3", "bob@x.example", false),
        ];
        let active = KeyIndex::new(&rows, email_key, |e| !e.inactive);
        assert!(!active.repeats(&rows));
        assert_eq!(active.row_of(&rows, "ann@x.example"), Some(0));
        assert_eq!(active.row_of(&rows, "bob@x.example"), Some(2));
        assert!(KeyIndex::new(&rows, email_key, |_| true).repeats(&rows));
    }

    #[test]
    fn no_rows_and_one_row() {
        let none = KeyIndex::new(&[], id_key, |_| true);
        assert!(!none.repeats(&[]));
        assert_eq!(none.row_of(&[], "E1"), None);
        let one = [emp(0, "E1", "", false)];
        let index = KeyIndex::new(&one, id_key, |_| true);
        assert_eq!(index.row_of(&one, "E1"), Some(0));
        assert!(!index.repeats(&one));
    }

    /// Keys whose hashes were made equal (given to [`KeyIndex::of_hashes`] as they are): a
    /// repeat is told from a collision by the keys themselves, in a small group (read
    /// whole) and in a large one (sorted).
    #[test]
    fn keys_with_equal_hashes_repeat_only_when_the_keys_do() {
        for n in [2, 3, SORTED_MIN, SORTED_MIN + 1, 200] {
            let mut rows: Vec<Employee> = (0..n)
                .map(|i| emp(i, &format!("E{i}"), "", false))
                .collect();
            let same = |rows: &[Employee]| vec![hash("E0"); rows.len()];
            let index = KeyIndex::of_hashes(same(&rows), id_key);
            assert!(!index.repeats(&rows), "{n} distinct keys, one hash");
            assert_eq!(index.row_of(&rows, "E0"), Some(0));
            rows.push(emp(n, &format!("E{}", n / 2), "", false));
            let index = KeyIndex::of_hashes(same(&rows), id_key);
            assert!(index.repeats(&rows), "{n} keys and a repeat, one hash");
        }
    }

    proptest! {
        /// Against a plain map: the same repeats, the same first row of each key.
        #[test]
        fn repeats_and_rows_are_a_maps(ids in proptest::collection::vec("[a-c]{0,3}", 0..200)) {
            let rows: Vec<Employee> =
                ids.iter().enumerate().map(|(i, id)| emp(i, id, "", false)).collect();
            let index = KeyIndex::new(&rows, id_key, |_| true);
            let mut first = std::collections::HashMap::new();
            for (row, id) in ids.iter().enumerate() {
                first.entry(id.as_str()).or_insert(row);
            }
            prop_assert_eq!(index.repeats(&rows), first.len() < ids.len());
            for (id, row) in &first {
                prop_assert_eq!(index.row_of(&rows, id), Some(*row));
            }
            prop_assert_eq!(index.row_of(&rows, "zz"), None);
        }
    }
}
