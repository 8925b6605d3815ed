//! Pages (schema 6, issue 14): the record of a bucket is stored in a page, and a page holds
//! the records of 2^level consecutive buckets (level 0: one bucket, its record as it is),
//! so that a small store is not 4,096 sled values per tree. A page holds more than one
//! bucket only while their records come to at most [`PAGE_BYTES`]; at a million accounts a
//! bucket of accounts is ~45 KB and every page holds one (the layout of schema 5).
//!
//! Why: sled's cost is per value written (its insert, its page cache, its log): a first
//! import of 10k accounts wrote ~7,400 bucket versions, two thirds of the run
//! (BENCHMARKS.md, session 17).
//!
//! A bucket's directory entry names its page: the page's level in the top four bits, its
//! version in the rest; every bucket of a page has the page's entry, and the page is stored
//! under the key of its first bucket with that version. A page of level `k` starts at a
//! multiple of 2^k and lies within one region of [`REGION`] buckets. Its record (before
//! compression) is the length of each of its buckets' records (u32, little-endian) followed
//! by those records; an empty bucket has length 0. Schema 5's entries (a version, level 0)
//! read as they are.

use super::buckets::{self, BucketKey};
use crate::store::{StoreError, StoreResult};
use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

/// The highest level of a page: 64 buckets.
pub const MAX_LEVEL: u32 = 6;
/// The buckets a page never crosses the boundary of, and a write lays out anew together.
pub const REGION: usize = 1 << MAX_LEVEL;
/// A page holds more than one bucket only while its record (their records and their
/// lengths) is at most this many bytes (before compression).
pub const PAGE_BYTES: usize = 32 << 10;
/// Where the level sits in a directory entry.
const LEVEL_SHIFT: u32 = 60;
/// The directory entry of a bucket that holds no accounts (no key is written for it).
pub const EMPTY: u64 = u64::MAX;

/// The key of version `version` of the page (or bucket) that starts at `bucket`.
pub fn key(bucket: BucketKey, version: u64) -> Vec<u8> {
    let mut key = bucket.to_vec();
    if version != 0 {
        key.extend_from_slice(&version.to_be_bytes());
    }
    key
}

/// Where a bucket's record is stored: a page of `2^level` buckets from `start`, `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Page {
    pub start: usize,
    pub level: u32,
    pub version: u64,
}

impl Page {
    /// The page of level `level` and version `version` that bucket `g` is in.
    pub fn new(g: usize, level: u32, version: u64) -> Page {
        debug_assert!(level <= MAX_LEVEL && version >> LEVEL_SHIFT == 0);
        Page {
            start: g & !((1 << level) - 1),
            level,
            version,
        }
    }

    /// The page bucket `g`'s directory entry names; `None` when the bucket holds no
    /// accounts. An entry of a level past [`MAX_LEVEL`] is damage.
    pub fn of(name: &str, g: usize, entry: u64) -> StoreResult<Option<Page>> {
        if entry == EMPTY {
            return Ok(None);
        }
        let level = (entry >> LEVEL_SHIFT) as u32;
        if level > MAX_LEVEL {
            return Err(StoreError::Corrupt(format!(
                "the directory of the {} names a page of 2^{level} buckets for bucket {g}",
                words(name)
            )));
        }
        Ok(Some(Page::new(g, level, entry & ((1 << LEVEL_SHIFT) - 1))))
    }

    /// The directory entry of each of its buckets.
    pub fn entry(&self) -> u64 {
        (u64::from(self.level) << LEVEL_SHIFT) | self.version
    }

    /// Its buckets.
    pub fn span(&self) -> Range<usize> {
        self.start..self.start + (1 << self.level)
    }

    /// Its key in the tree.
    pub fn key(&self) -> Vec<u8> {
        key(buckets::key_of(self.start), self.version)
    }
}

/// About how many bytes the record of a bucket with directory entry `entry` takes, as far as
/// the entry tells (to decide whether work on it is worth a second thread): none when it is
/// empty, its share of a page of several, and half a page for a page of its own (it did
/// not fit with its neighbour).
pub fn estimated_size(entry: u64) -> usize {
    match entry {
        EMPTY => 0,
        _ => match (entry >> LEVEL_SHIFT) as u32 {
            0 => PAGE_BYTES / 2,
            level => PAGE_BYTES >> level.min(MAX_LEVEL),
        },
    }
}

/// A tree's name in words ("account buckets", "email index").
pub fn words(name: &str) -> String {
    name.replace('_', " ")
}

/// The record of a page of several buckets: each record's length, then the records.
pub fn encode(records: &[Option<Vec<u8>>]) -> Vec<u8> {
    let body: usize = records.iter().flatten().map(Vec::len).sum();
    let mut out = Vec::with_capacity(records.len() * 4 + body);
    for r in records {
        let len = r.as_ref().map_or(0, Vec::len);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    for r in records.iter().flatten() {
        out.extend_from_slice(r);
    }
    out
}

/// A page of several buckets as read: its record, and where each bucket's record ends.
pub struct PageRecords {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl PageRecords {
    /// `bytes`, the record of `page` of the tree `name`, checked: as many lengths as the
    /// page has buckets, and records that fill the rest exactly.
    pub fn parse(name: &str, page: &Page, bytes: Vec<u8>) -> StoreResult<PageRecords> {
        let count = 1usize << page.level;
        let damaged = |what: &str| {
            StoreError::Corrupt(format!(
                "the page of buckets {}–{} of the {} is damaged: {what}",
                page.start,
                page.start + count - 1,
                words(name)
            ))
        };
        let header = count * 4;
        if bytes.len() < header {
            return Err(damaged("shorter than its lengths"));
        }
        let mut ends = Vec::with_capacity(count);
        let mut end = header;
        for chunk in bytes[..header].chunks_exact(4) {
            let len = u32::from_le_bytes(chunk.try_into().expect("four bytes")) as usize;
            end = end
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| damaged("its lengths run past its end"))?;
            ends.push(end);
        }
        if end != bytes.len() {
            return Err(damaged("bytes past its last record"));
        }
        Ok(PageRecords { bytes, ends })
    }

    /// The record of its `i`-th bucket; `None` when it holds no accounts.
    pub fn bucket(&self, i: usize) -> Option<Vec<u8>> {
        let start = match i {
            0 => self.ends.len() * 4,
            _ => self.ends[i - 1],
        };
        let record = &self.bytes[start..self.ends[i]];
        (!record.is_empty()).then(|| record.to_vec())
    }
}

/// The id of the next store opened in this process ([`new_store_id`]).
static NEXT_STORE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An id no other store opened in this process has: what the cache of pages tells stores
/// apart by (two stores may give out the same versions).
pub fn new_store_id() -> u64 {
    NEXT_STORE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Which page of which tree of which open store: a page's content never changes (a version
/// is given out once per store), so what is cached under it is never stale.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PageId {
    pub store: u64,
    pub name: &'static str,
    pub page: Page,
}

thread_local! {
    /// The page of several buckets this thread read last: readers go through the buckets
    /// in order (a sync's plan reads 4,096 of them one by one), and a page is decompressed
    /// once for all of its buckets, not once for each.
    static LAST: RefCell<Option<(PageId, Rc<PageRecords>)>> = const { RefCell::new(None) };
}

/// The page `id` as this thread last read it, or as `read` reads it (`None`: not stored).
pub fn cached(
    id: PageId,
    read: impl FnOnce() -> StoreResult<Option<PageRecords>>,
) -> StoreResult<Option<Rc<PageRecords>>> {
    let hit = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(held, _)| *held == id)
            .map(|(_, records)| records.clone())
    });
    if hit.is_some() {
        return Ok(hit);
    }
    let Some(records) = read()? else {
        return Ok(None);
    };
    let records = Rc::new(records);
    LAST.set(Some((id, records.clone())));
    Ok(Some(records))
}

/// Forgets the page this thread read last (for tests that damage a page in place, which a
/// store never does: it writes each version once).
#[cfg(test)]
pub fn forget_cached() {
    LAST.set(None);
}

/// The first bucket of the page bucket `g` is in, with directory entry `entry`, and about
/// how many bytes that page's records take (rewriting a bucket rewrites its whole page): at
/// most [`PAGE_BYTES`] for a page of several, half of it for a page of its own. `None` when
/// the bucket is empty.
pub fn page_estimate(g: usize, entry: u64) -> Option<(usize, usize)> {
    match entry {
        EMPTY => None,
        _ => match ((entry >> LEVEL_SHIFT) as u32).min(MAX_LEVEL) {
            0 => Some((g, PAGE_BYTES / 2)),
            level => Some((g >> level << level, PAGE_BYTES)),
        },
    }
}

/// A page a write laid out: its first bucket, its level, and its buckets' records.
pub struct Laid {
    pub start: usize,
    pub level: u32,
    pub records: Vec<Option<Vec<u8>>>,
}

/// What a write knows of a bucket of a region it lays out anew.
pub enum Slot {
    /// Not rewritten: its page stays unless it is merged into a larger one.
    Kept,
    /// Rewritten, with this record (`None`: no accounts).
    New(Option<Vec<u8>>),
}

/// How a write lays out one region's buckets: from the whole region down, a part where
/// something is rewritten becomes one page when its records fit in [`PAGE_BYTES`] (or it
/// is one bucket), else its halves are laid out the same way. A part where nothing is
/// rewritten keeps its pages.
pub struct Layout<'s> {
    /// The region's first bucket.
    pub start: usize,
    pub slots: Vec<Slot>,
    /// The stored size (before compression) of a kept page.
    pub size_of: &'s dyn Fn(&Page) -> StoreResult<usize>,
    /// The page a kept bucket is in (`None`: it holds no accounts).
    pub page_of: &'s dyn Fn(usize) -> StoreResult<Option<Page>>,
    /// A kept bucket's record.
    pub record_of: &'s dyn Fn(usize) -> StoreResult<Option<Vec<u8>>>,
}

impl Layout<'_> {
    /// The pages of the region's rewritten parts, appended to `out`.
    pub fn lay(&mut self, out: &mut Vec<Laid>) -> StoreResult<()> {
        self.lay_part(0, MAX_LEVEL, out)
    }

    fn lay_part(&mut self, from: usize, level: u32, out: &mut Vec<Laid>) -> StoreResult<()> {
        let part = from..from + (1 << level);
        if self.slots[part.clone()]
            .iter()
            .all(|s| matches!(s, Slot::Kept))
        {
            return Ok(());
        }
        if level == 0 || self.fits(part.clone())? {
            let mut records = Vec::with_capacity(part.len());
            for i in part {
                records.push(match std::mem::replace(&mut self.slots[i], Slot::Kept) {
                    Slot::New(record) => record,
                    Slot::Kept => (self.record_of)(self.start + i)?,
                });
            }
            out.push(Laid {
                start: self.start + from,
                level,
                records,
            });
            return Ok(());
        }
        let half = 1 << (level - 1);
        self.lay_part(from, level - 1, out)?;
        self.lay_part(from + half, level - 1, out)
    }

    /// Whether the records of `part` fit in one page: the rewritten ones counted first,
    /// the kept pages read only when those fit.
    fn fits(&self, part: Range<usize>) -> StoreResult<bool> {
        let mut size = part.len() * 4;
        for s in &self.slots[part.clone()] {
            if let Slot::New(Some(r)) = s {
                size += r.len();
            }
        }
        let mut seen = None;
        for i in part {
            if size > PAGE_BYTES {
                return Ok(false);
            }
            if !matches!(self.slots[i], Slot::Kept) {
                continue;
            }
            if let Some(page) = (self.page_of)(self.start + i)?
                && seen != Some(page)
            {
                // A kept page lies within any part that holds one of its buckets and one
                // rewritten: a page that held a rewritten bucket is rewritten whole.
                size += (self.size_of)(&page)?;
                seen = Some(page);
            }
        }
        Ok(size <= PAGE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_estimate_names_the_page_and_its_size() {
        assert_eq!(page_estimate(70, EMPTY), None);
        assert_eq!(page_estimate(70, 9), Some((70, PAGE_BYTES / 2)));
        assert_eq!(
            page_estimate(70, Page::new(70, 3, 42).entry()),
            Some((64, PAGE_BYTES))
        );
        assert_eq!(
            page_estimate(127, Page::new(127, 6, 1).entry()),
            Some((64, PAGE_BYTES))
        );
    }

    #[test]
    fn entries_name_level_and_version_and_schema_5_entries_read_as_level_0() {
        let page = Page::new(70, 3, 42);
        assert_eq!(page.start, 64);
        assert_eq!(page.span(), 64..72);
        assert_eq!(Page::of("b", 71, page.entry()).unwrap(), Some(page));
        assert_eq!(
            Page::of("b", 5, 9).unwrap(),
            Some(Page {
                start: 5,
                level: 0,
                version: 9
            })
        );
        assert_eq!(Page::of("b", 5, EMPTY).unwrap(), None);
        let too_high = (u64::from(MAX_LEVEL) + 1) << LEVEL_SHIFT | 9;
        assert!(matches!(
            Page::of("b", 5, too_high),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_page_record_reads_back_and_damage_is_refused() {
        let page = Page::new(0, 2, 1);
        let records = vec![Some(b"ab".to_vec()), None, Some(b"cde".to_vec()), None];
        let bytes = encode(&records);
        let read = PageRecords::parse("b", &page, bytes.clone()).unwrap();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(&read.bucket(i), r);
        }
        let refused = |bytes: Vec<u8>| match PageRecords::parse("b", &page, bytes) {
            Err(StoreError::Corrupt(e)) => e,
            _ => panic!("accepted"),
        };
        assert!(refused(bytes[..10].to_vec()).ends_with("shorter than its lengths"));
        assert!(refused(bytes[..bytes.len() - 1].to_vec()).ends_with("past its end"));
        let mut longer = bytes;
        longer.push(0);
        assert!(refused(longer).ends_with("bytes past its last record"));
    }

    fn lay(slots: Vec<Slot>, kept: &[(Page, usize)]) -> Vec<(usize, u32, usize)> {
        let page_of = |g: usize| Ok(kept.iter().map(|(p, _)| *p).find(|p| p.span().contains(&g)));
        let size_of = |p: &Page| Ok(kept.iter().find(|(k, _)| k == p).unwrap().1);
        let record_of = |_| Ok(Some(vec![1]));
        let mut layout = Layout {
            start: 0,
            slots,
            size_of: &size_of,
            page_of: &page_of,
            record_of: &record_of,
        };
        let mut out = Vec::new();
        layout.lay(&mut out).unwrap();
        out.into_iter()
            .map(|l| (l.start, l.level, l.records.len()))
            .collect()
    }

    fn new(len: usize) -> Slot {
        Slot::New((len > 0).then(|| vec![0; len]))
    }

    #[test]
    fn small_records_share_a_page_and_large_ones_get_one_each() {
        // A first import of a small store: the whole region in one page.
        assert_eq!(lay((0..64).map(|_| new(100)).collect(), &[]), [(0, 6, 64)]);
        // Large buckets: one page each, as schema 5.
        let large = lay((0..64).map(|_| new(PAGE_BYTES)).collect(), &[]);
        assert_eq!(large.len(), 64);
        assert!(large.iter().all(|&(_, level, n)| level == 0 && n == 1));
        // Buckets of 4 KB: eight to a page would pass 32 KB with their lengths; four fit.
        let mid = lay((0..64).map(|_| new(4 << 10)).collect(), &[]);
        assert_eq!(mid.len(), 16);
        assert!(mid.iter().all(|&(_, level, _)| level == 2));
    }

    #[test]
    fn only_rewritten_parts_are_laid_out_and_kept_pages_are_merged_when_they_fit() {
        // Buckets 0–31 in a kept page of 20 KB, 32–63 in one of 20 KB; bucket 40 rewritten
        // larger: its page is rewritten (the rest of it read as kept records), not the other.
        let a = Page::new(0, 5, 1);
        let mut slots: Vec<Slot> = (0..64).map(|_| Slot::Kept).collect();
        for s in &mut slots[32..64] {
            *s = new(600);
        }
        slots[40] = new(10 << 10);
        let out = lay(slots, &[(a, 20 << 10)]);
        assert_eq!(out, [(32, 5, 32)]);
        // Rewritten small: with the kept page they fit in 32 KB, so both become one page.
        let mut slots: Vec<Slot> = (0..64).map(|_| Slot::Kept).collect();
        for s in &mut slots[32..64] {
            *s = new(100);
        }
        assert_eq!(lay(slots, &[(a, 20 << 10)]), [(0, 6, 64)]);
        // Nothing rewritten: nothing laid out.
        assert_eq!(lay((0..64).map(|_| Slot::Kept).collect(), &[(a, 1)]), []);
    }
}
