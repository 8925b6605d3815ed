//! Copy-on-write buckets (schema 4, issue 14, SPEC §5): a write of accounts puts the new
//! version of each bucket it changes aside, under a new key, in batches, and one small
//! transaction then makes them current together with the ledger entry, by writing the
//! trees' directories. Before it, readers see the old versions; a crash leaves them current
//! and the versions written aside are removed when the store is next opened.
//!
//! Why: sled pins one epoch for the whole of a transaction, so every log buffer the
//! transaction writes stays in memory until it ends (212 MB at a first import of a million
//! rows, BENCHMARKS.md). Writes outside a transaction let each buffer go once it is written.
//!
//! Layout: bucket `g`'s version `v` is the key `g` (2 bytes, big-endian) followed by `v`
//! (8 bytes, big-endian); version 0 is the key `g` alone, which is how a restored backup
//! lays buckets out (and schema 3 did, read so when it is migrated). A directory per bucketed
//! tree, in the tree [`TREE`], holds each bucket's current version ([`EMPTY`]: no
//! accounts); an absent directory says version 0 everywhere.
//!
//! Readers read the directory, then the bucket. The version they read may be superseded and
//! removed in between (after the transaction): a bucket found missing is read again once
//! the directory says something else, and is damage only when it still says the same.
//!
//! Pages (schema 6): a directory entry names the page a bucket's record is in, a page holding
//! the records of one or more consecutive buckets ([`pages`]); what is above says "bucket"
//! for a page of one.
//!
//! Form (schema 5): each bucket's record is stored compressed ([`Stored`], LZ4 blocks), so
//! sled's page cache, which keeps every bucket read or written for as long as the store is
//! open (BENCHMARKS.md), holds ~5× fewer bytes. Schemas up to 4 stored records as they are
//! ([`Versioned::uncompressed`], read only by the migrations).

use super::buckets::{self, BucketKey};
pub use super::pages::EMPTY;
#[cfg(test)]
pub use super::pages::key;
use super::pages::{self, Laid, Layout, Page, PageId, PageRecords, Slot, words};
use crate::core::parallel::{Cores, WORTH_A_THREAD};
use crate::store::{StoreError, StoreResult};
use sled::IVec;

/// The tree of directories, and of the last version number given out.
pub const TREE: &str = "bucket_versions";
/// The key of the last version number given out.
const LAST: &[u8] = b"last";
/// The key present while a write may leave versions the directory does not name: written
/// before the first aside write, removed once they are current and the replaced ones gone.
const UNFINISHED: &[u8] = b"unfinished";
/// How many buckets a tree has.
const COUNT: usize = buckets::BUCKETS as usize;
/// The largest record a stored bucket may expand to: a damaged length is refused before
/// anything that size is allocated (a bucket is ~45 KB at a million accounts).
const MAX_RECORD: usize = 256 << 20;

/// A bucket's record as it is stored: compressed (LZ4 block format, the record's length
/// first), so only [`Stored::pack`] makes one.
#[derive(Clone)]
pub struct Stored(IVec);

impl Stored {
    /// `record`, compressed.
    pub fn pack(record: &[u8]) -> Stored {
        Stored(IVec::from(lz4_flex::compress_prepend_size(record)))
    }

    /// How many bytes it takes in the tree.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The bytes as the tree holds them.
    pub fn bytes(&self) -> &IVec {
        &self.0
    }
}

/// The record stored as `bytes` in bucket `g` of the tree `name`.
fn unpack(name: &str, g: usize, bytes: &[u8]) -> StoreResult<Vec<u8>> {
    let damaged = |what: String| {
        StoreError::Corrupt(format!(
            "bucket {g} of the {} is damaged: {what}",
            words(name)
        ))
    };
    let length = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize)
        .ok_or_else(|| damaged("shorter than its length".into()))?;
    if length > MAX_RECORD {
        return Err(damaged(format!("its length {length} is past {MAX_RECORD}")));
    }
    lz4_flex::decompress_size_prepended(bytes).map_err(|e| damaged(e.to_string()))
}

/// The bucket and the version a stored key names; `None` for a key of neither length.
fn parse_key(key: &[u8]) -> Option<(usize, u64)> {
    let bucket = usize::from(u16::from_be_bytes(key.get(..2)?.try_into().ok()?));
    if bucket >= COUNT {
        return None;
    }
    match key.len() {
        2 => Some((bucket, 0)),
        10 => {
            let version = u64::from_be_bytes(key[2..].try_into().ok()?);
            (version != 0 && version != EMPTY).then_some((bucket, version))
        }
        _ => None,
    }
}

/// Which version of each bucket of one tree is current.
#[derive(Clone, PartialEq, Eq)]
pub struct Directory(Option<IVec>);

impl Directory {
    /// A directory of these entries, one per bucket.
    #[cfg(test)]
    pub fn of_entries(entries: &[u64]) -> Directory {
        assert_eq!(entries.len(), COUNT);
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_be_bytes()).collect();
        Directory(Some(IVec::from(bytes)))
    }

    /// Bucket `g`'s entry: the page it is in ([`pages`]), or [`EMPTY`].
    pub fn entry(&self, g: usize) -> u64 {
        match &self.0 {
            None => 0,
            Some(bytes) => u64::from_be_bytes(
                bytes[g * 8..g * 8 + 8]
                    .try_into()
                    .expect("a directory's length is checked when it is read"),
            ),
        }
    }

    /// Whether this directory is `bytes` (as [`Self::with`] makes one).
    pub fn is(&self, bytes: &[u8]) -> bool {
        self.0.as_deref() == Some(bytes)
    }

    /// The first bucket of bucket `g`'s page and about how many bytes the page's records
    /// take ([`pages::page_estimate`]).
    pub fn page_estimate(&self, g: usize) -> Option<(usize, usize)> {
        pages::page_estimate(g, self.entry(g))
    }

    /// About how many bytes bucket `g`'s record takes ([`pages::estimated_size`]).
    pub fn estimated_size(&self, g: usize) -> usize {
        pages::estimated_size(self.entry(g))
    }

    /// This directory with the entries in `set` (bucket, entry) in place of its own.
    pub fn with(&self, set: &[(usize, u64)]) -> Vec<u8> {
        let mut bytes = match &self.0 {
            Some(b) => b.to_vec(),
            None => vec![0; COUNT * 8],
        };
        for &(g, entry) in set {
            bytes[g * 8..g * 8 + 8].copy_from_slice(&entry.to_be_bytes());
        }
        bytes
    }
}

/// A bucketed tree seen through its directory.
pub struct Versioned<'a> {
    /// The buckets.
    pub tree: &'a sled::Tree,
    /// The directories' tree.
    versions: &'a sled::Tree,
    /// The bucketed tree's name: its directory's key.
    name: &'static str,
    /// Whether its buckets are [`Stored`] compressed (schema 5 on).
    compressed: bool,
    /// The open store it belongs to, when its pages of several buckets may be cached by
    /// reading threads ([`pages::cached`]).
    store: Option<u64>,
}

/// The directory entries a write puts in place (bucket, entry), of the accounts and of the
/// index.
#[derive(Default)]
pub struct Written {
    pub accounts: Vec<(usize, u64)>,
    pub index: Vec<(usize, u64)>,
}

/// What a write lays out: the buckets it rewrites (bucket, record; `None`: no accounts).
pub type Records = Vec<(usize, Option<Vec<u8>>)>;

impl<'a> Versioned<'a> {
    pub fn new(tree: &'a sled::Tree, versions: &'a sled::Tree, name: &'static str) -> Self {
        Versioned {
            tree,
            versions,
            name,
            compressed: true,
            store: None,
        }
    }

    /// This tree of the open store `store`: its pages of several buckets are cached by the
    /// threads that read them.
    pub fn cached_as(self, store: u64) -> Self {
        Versioned {
            store: Some(store),
            ..self
        }
    }

    /// The tree as schemas up to 4 left it: records stored as they are (for migrations).
    pub fn uncompressed(
        tree: &'a sled::Tree,
        versions: &'a sled::Tree,
        name: &'static str,
    ) -> Self {
        Versioned {
            compressed: false,
            ..Self::new(tree, versions, name)
        }
    }

    /// The directory as it is now.
    pub fn directory(&self) -> StoreResult<Directory> {
        directory_of(self.name, self.versions.get(self.name)?)
    }

    /// Whether the tree has no directory (every bucket version 0, as schema 3 and restored
    /// backups lay them out).
    pub fn is_legacy(&self) -> StoreResult<bool> {
        Ok(self.directory()?.0.is_none())
    }

    /// Writes a directory that names every bucket empty (for a tree that holds nothing).
    pub fn name_all_empty(&self) -> StoreResult<()> {
        self.versions
            .insert(self.name, EMPTY.to_be_bytes().repeat(COUNT))?;
        Ok(())
    }

    /// The current record of bucket `g`; `None` when it holds no accounts.
    pub fn get(&self, g: usize) -> StoreResult<Option<Vec<u8>>> {
        self.get_from(g, self.directory()?.entry(g))
    }

    /// [`Self::get`] as `directory`, read a moment ago, names it: a write reads its buckets
    /// through the directory it read once at its start, not through one read per bucket (at
    /// a first import of 10k accounts those reads were ~a tenth of the run).
    pub fn get_at(&self, directory: &Directory, g: usize) -> StoreResult<Option<Vec<u8>>> {
        self.get_from(g, directory.entry(g))
    }

    /// [`Self::get`] from `entry`, what the directory said a moment ago.
    fn get_from(&self, g: usize, mut entry: u64) -> StoreResult<Option<Vec<u8>>> {
        loop {
            let Some(page) = self.page_of(g, entry)? else {
                return Ok(None);
            };
            if let Some(record) = self.read_bucket(&page, g)? {
                return Ok(record);
            }
            // Superseded and removed since the directory was read, or damage.
            let now = self.directory()?.entry(g);
            if now == entry {
                return match page.version {
                    0 => Ok(None),
                    version => Err(StoreError::Corrupt(format!(
                        "the {} lost bucket {g}: its current version {version} is missing",
                        words(self.name)
                    ))),
                };
            }
            entry = now;
        }
    }

    /// The page `entry` names for bucket `g`; only pages of one bucket before schema 5.
    fn page_of(&self, g: usize, entry: u64) -> StoreResult<Option<Page>> {
        let page = Page::of(self.name, g, entry)?;
        if !self.compressed && page.is_some_and(|p| p.level > 0) {
            return Err(StoreError::Corrupt(format!(
                "the {} name a page of several buckets in a schema that had none",
                words(self.name)
            )));
        }
        Ok(page)
    }

    /// Bucket `g`'s record in `page` (`None` inside: no accounts); `None` when the page is
    /// not stored.
    fn read_bucket(&self, page: &Page, g: usize) -> StoreResult<Option<Option<Vec<u8>>>> {
        if page.level == 0 {
            return match self.tree.get(page.key())? {
                None => Ok(None),
                Some(bytes) if self.compressed => {
                    unpack(self.name, g, &bytes).map(|r| Some(Some(r)))
                }
                Some(bytes) => Ok(Some(Some(bytes.to_vec()))),
            };
        }
        let read = || -> StoreResult<Option<PageRecords>> {
            match self.tree.get(page.key())? {
                None => Ok(None),
                Some(bytes) => {
                    let record = unpack(self.name, page.start, &bytes)?;
                    PageRecords::parse(self.name, page, record).map(Some)
                }
            }
        };
        let records = match self.store {
            Some(store) => pages::cached(
                PageId {
                    store,
                    name: self.name,
                    page: *page,
                },
                read,
            )?,
            None => read()?.map(std::rc::Rc::new),
        };
        Ok(records.map(|r| r.bucket(g - page.start)))
    }

    /// Calls `f` with each bucket in `range` that holds accounts, in order. The directory
    /// is read once: a version removed since is read again from the directory then.
    pub fn for_each(
        &self,
        range: std::ops::Range<usize>,
        f: impl FnMut(BucketKey, &[u8]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.for_each_at(&self.directory()?, range, f)
    }

    /// [`Self::for_each`] as `directory`, read a moment ago, names the buckets: a reader
    /// pinned before it read it reads them all so ([`super::pins`]).
    pub fn for_each_at(
        &self,
        directory: &Directory,
        range: std::ops::Range<usize>,
        mut f: impl FnMut(BucketKey, &[u8]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        for g in range {
            if let Some(bytes) = self.get_from(g, directory.entry(g))? {
                f(buckets::key_of(g), &bytes)?;
            }
        }
        Ok(())
    }

    /// Writes the buckets of `records` (in bucket order) aside as `version`: each region
    /// ([`pages::REGION`]) they are in is laid out anew where something is rewritten
    /// ([`Layout`]), its pages compressed on two cores when that is worth it. `before` is the
    /// directory the write started from. The directory entries that make them current
    /// (bucket, entry) are added to `written` as each page is put aside, so that a write
    /// that fails part way removes what it did put aside.
    pub fn write_pages(
        &self,
        before: &Directory,
        records: Records,
        version: u64,
        written: &mut Vec<(usize, u64)>,
        cores: Cores,
    ) -> StoreResult<()> {
        debug_assert!(self.compressed, "only the current form is written");
        let mut laid = Vec::new();
        let mut records = records.into_iter().peekable();
        while let Some(&(first, _)) = records.peek() {
            let start = first - first % pages::REGION;
            let mut slots: Vec<Slot> = (0..pages::REGION).map(|_| Slot::Kept).collect();
            while let Some((g, record)) = records.next_if(|(g, _)| *g < start + pages::REGION) {
                slots[g - start] = Slot::New(record);
            }
            self.carry_over(before, start, &mut slots)?;
            let page_of = |g: usize| self.page_of(g, before.entry(g));
            let size_of = |page: &Page| self.stored_size(before, page);
            let record_of = |g: usize| self.get_at(before, g);
            Layout {
                start,
                slots,
                size_of: &size_of,
                page_of: &page_of,
                record_of: &record_of,
            }
            .lay(&mut laid)?;
        }
        let pack = |part: &[Laid]| {
            part.iter()
                .map(
                    |Laid {
                         start,
                         level,
                         records,
                     }| {
                        let stored = match (level, records.as_slice()) {
                            _ if records.iter().all(Option::is_none) => None,
                            (0, [Some(record)]) => Some(Stored::pack(record)),
                            _ => Some(Stored::pack(&pages::encode(records))),
                        };
                        (Page::new(*start, *level, version), stored)
                    },
                )
                .collect::<Vec<_>>()
        };
        let (lower, upper) = laid.split_at(laid.len() / 2);
        let bytes: usize = laid
            .iter()
            .flat_map(|l| l.records.iter().flatten())
            .map(Vec::len)
            .sum();
        let (mut packed, upper) =
            cores.join_if(bytes >= WORTH_A_THREAD, || pack(lower), || pack(upper));
        packed.extend(upper);
        for (page, stored) in packed {
            let entry = match stored {
                Some(Stored(bytes)) => {
                    self.tree.insert(page.key(), bytes)?;
                    page.entry()
                }
                None => EMPTY,
            };
            written.extend(page.span().map(|g| (g, entry)));
        }
        Ok(())
    }

    /// Marks every bucket of a page of several buckets that holds one rewritten as rewritten
    /// too, with its record as `before` names it: the page is rewritten whole.
    fn carry_over(&self, before: &Directory, start: usize, slots: &mut [Slot]) -> StoreResult<()> {
        for i in 0..slots.len() {
            if matches!(slots[i], Slot::Kept) {
                continue;
            }
            let Some(page) = self.page_of(start + i, before.entry(start + i))? else {
                continue;
            };
            for g in page.span() {
                if matches!(slots[g - start], Slot::Kept) {
                    slots[g - start] = Slot::New(self.get_at(before, g)?);
                }
            }
        }
        Ok(())
    }

    /// How many bytes `page`'s record takes before compression (the length stored first).
    fn stored_size(&self, before: &Directory, page: &Page) -> StoreResult<usize> {
        match self.tree.get(page.key())? {
            Some(bytes) if bytes.len() >= 4 => {
                Ok(u32::from_le_bytes(bytes[..4].try_into().expect("four bytes")) as usize)
            }
            Some(_) => Err(StoreError::Corrupt(format!(
                "bucket {} of the {} is damaged: shorter than its length",
                page.start,
                words(self.name)
            ))),
            // Schema 3's buckets without accounts have no key and no directory entry.
            None if page.version == 0 => Ok(0),
            None => Err(self.missing(before, page.start)),
        }
    }

    /// A page a write read through `before` is gone: another write made something else
    /// current since, or the store is damaged.
    fn missing(&self, before: &Directory, g: usize) -> StoreError {
        match self.directory() {
            Ok(now) if now != *before => changed_meanwhile(),
            Ok(_) => StoreError::Corrupt(format!(
                "the {} lost bucket {g}: its current page is missing",
                words(self.name)
            )),
            Err(e) => e,
        }
    }

    /// The keys of the pages that `entries` (bucket, entry) name, each once.
    fn keys_of(&self, entries: impl Iterator<Item = (usize, u64)>) -> StoreResult<Vec<Vec<u8>>> {
        let mut found = std::collections::BTreeSet::new();
        for (g, entry) in entries {
            if let Some(page) = self.page_of(g, entry)? {
                found.insert(page);
            }
        }
        Ok(found.iter().map(Page::key).collect())
    }

    /// Removes the pages the buckets `written` (bucket, entry) were in before, in `before`,
    /// once the directory no longer names them.
    pub fn remove_superseded(
        &self,
        before: &Directory,
        written: &[(usize, u64)],
    ) -> StoreResult<()> {
        for k in self.keys_of(written.iter().map(|&(g, _)| (g, before.entry(g))))? {
            self.tree.remove(k)?;
        }
        Ok(())
    }

    /// Removes the pages `written` (bucket, entry) of a write that was not made current
    /// (those the directory names are kept).
    pub fn remove_written(&self, written: &[(usize, u64)]) -> StoreResult<()> {
        let directory = self.directory()?;
        let left = written
            .iter()
            .filter(|&&(g, entry)| directory.entry(g) != entry)
            .copied();
        for k in self.keys_of(left)? {
            self.tree.remove(k)?;
        }
        Ok(())
    }

    /// Checks that no key lies outside the buckets' range, and that the directory names each
    /// page of several buckets for all of its buckets (the start-up check: the keys within
    /// the range are checked by [`Self::collect_garbage`] when a write was left unfinished).
    pub fn check_bounds(&self) -> StoreResult<()> {
        let directory = self.directory()?;
        for g in 0..COUNT {
            if let Some(page) = self.page_of(g, directory.entry(g))?
                && page.span().any(|b| directory.entry(b) != page.entry())
            {
                return Err(StoreError::Corrupt(format!(
                    "the directory of the {} names the page of buckets {}–{} for some of \
                     them only",
                    words(self.name),
                    page.start,
                    page.span().end - 1
                )));
            }
        }
        let past = buckets::key_of(COUNT);
        let stray = match self.tree.first()? {
            Some((k, _)) if k.len() < 2 => Some(k),
            _ => self.tree.range(past..).next().transpose()?.map(|(k, _)| k),
        };
        match stray {
            Some(k) => Err(self.stray(&k)),
            None => Ok(()),
        }
    }

    fn stray(&self, k: &[u8]) -> StoreError {
        StoreError::Corrupt(format!(
            "the {} hold a key that names no bucket version: {k:?}",
            words(self.name)
        ))
    }

    /// Removes every page the directory does not name: those written aside by a write
    /// that never became current, and those superseded and not yet removed (at start-up,
    /// when [`unfinished`]: a full scan of the tree costs ~40 MB at a million accounts).
    /// A key of another form is damage. How many were removed.
    pub fn collect_garbage(&self) -> StoreResult<usize> {
        let directory = self.directory()?;
        let mut garbage = Vec::new();
        for item in self.tree.iter().keys() {
            let k = item?;
            let Some((g, version)) = parse_key(&k) else {
                return Err(self.stray(&k));
            };
            let named = self
                .page_of(g, directory.entry(g))?
                .is_some_and(|p| p.start == g && p.version == version);
            if !named {
                garbage.push(k);
            }
        }
        for k in &garbage {
            self.tree.remove(k)?;
        }
        Ok(garbage.len())
    }

    /// Test damage: bucket `g`'s record in its current page replaced by `record`, in place
    /// (the page's key and version unchanged).
    #[cfg(test)]
    pub fn overwrite(&self, g: usize, record: &[u8]) {
        let directory = self.directory().unwrap();
        let page = self
            .page_of(g, directory.entry(g))
            .unwrap()
            .expect("stored");
        let records: Vec<_> = page
            .span()
            .map(|b| match b == g {
                true => Some(record.to_vec()),
                false => self.get_at(&directory, b).unwrap(),
            })
            .collect();
        let bytes = match page.level {
            0 => record.to_vec(),
            _ => pages::encode(&records),
        };
        self.tree
            .insert(page.key(), Stored::pack(&bytes).bytes())
            .unwrap();
        pages::forget_cached();
    }

    /// The key of the page bucket `g` is in, as `directory` names it (for tests that damage
    /// it).
    #[cfg(test)]
    pub fn page_key(&self, directory: &Directory, g: usize) -> Option<Vec<u8>> {
        self.page_of(g, directory.entry(g))
            .unwrap()
            .map(|p| p.key())
    }
}

/// The error of a write whose directories changed after it read them.
pub fn changed_meanwhile() -> StoreError {
    StoreError::Conflict("accounts changed while a commit was prepared; nothing was written".into())
}

/// A directory as read from the tree, checked for its length.
fn directory_of(name: &str, bytes: Option<IVec>) -> StoreResult<Directory> {
    match bytes {
        Some(b) if b.len() != COUNT * 8 => Err(StoreError::Corrupt(format!(
            "the directory of the {} is {} bytes, not {}",
            words(name),
            b.len(),
            COUNT * 8
        ))),
        other => Ok(Directory(other)),
    }
}

/// The directory named `name` as a transaction reads it.
pub fn tx_directory(
    versions: &sled::transaction::TransactionalTree,
    name: &'static str,
) -> super::TxResult<Directory> {
    directory_of(name, versions.get(name)?)
        .map_err(sled::transaction::ConflictableTransactionError::Abort)
}

/// Records that a write is about to put versions aside (before its first one).
pub fn unfinish(versions: &sled::Tree) -> StoreResult<()> {
    versions.insert(UNFINISHED, &[])?;
    Ok(())
}

/// Records that no version is left that the directories do not name. sled recovers a
/// prefix of what was written, so once this is recovered, so are the removals before it.
pub fn finished(versions: &sled::Tree) -> StoreResult<()> {
    versions.remove(UNFINISHED)?;
    Ok(())
}

/// Whether a write may have left versions the directories do not name.
pub fn unfinished(versions: &sled::Tree) -> StoreResult<bool> {
    Ok(versions.contains_key(UNFINISHED)?)
}

/// A version number no other write has: one more than the last one given out.
pub fn reserve(versions: &sled::Tree) -> StoreResult<u64> {
    let next = versions.update_and_fetch(LAST, |last| {
        Some(
            (super::u64_of(last.map(sled::IVec::from)) + 1)
                .to_be_bytes()
                .to_vec(),
        )
    })?;
    Ok(super::u64_of(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_bucket_and_version_and_nothing_else_parses() {
        assert_eq!(key([0, 7], 0), vec![0, 7]);
        assert_eq!(parse_key(&key([0, 7], 0)), Some((7, 0)));
        assert_eq!(parse_key(&key([0x0f, 0xff], 42)), Some((4095, 42)));
        assert_eq!(parse_key(&[0, 7, 1]), None);
        assert_eq!(parse_key(&[0x10, 0]), None, "bucket 4096 does not exist");
        assert_eq!(parse_key(&key([0, 1], 0)[..1]), None);
    }

    #[test]
    fn a_superseded_version_removed_under_a_reader_is_read_again_from_the_new_directory() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (tree, versions) = (db.open_tree("b").unwrap(), db.open_tree(TREE).unwrap());
        let v = Versioned::new(&tree, &versions, "b");
        // Version 0 of bucket 3, then version 5 made current and version 0 removed.
        tree.insert(key([0, 3], 0), Stored::pack(b"old").bytes())
            .unwrap();
        let before = v.directory().unwrap();
        assert_eq!(v.get(3).unwrap().as_deref(), Some(&b"old"[..]));
        let mut written = Vec::new();
        v.write_pages(
            &before,
            vec![(3, Some(b"new".to_vec()))],
            5,
            &mut written,
            Cores::Two,
        )
        .unwrap();
        assert_eq!(
            v.get(3).unwrap().as_deref(),
            Some(&b"old"[..]),
            "aside, not current"
        );
        // A reader reads the directory here, before the write is made current...
        let stale = v.directory().unwrap().entry(3);
        versions.insert("b", before.with(&written)).unwrap();
        v.remove_superseded(&before, &written).unwrap();
        // ... and looks for the version it read once that version is gone.
        assert_eq!(v.get_from(3, stale).unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(v.get(3).unwrap().as_deref(), Some(&b"new"[..]));
        assert!(tree.get(key([0, 3], 0)).unwrap().is_none());
        // A directory naming a version that is not there is damage.
        versions.insert("b", before.with(&[(3, 9)])).unwrap();
        assert!(matches!(v.get(3), Err(StoreError::Corrupt(_))));
        // Emptied: no key, no accounts.
        versions.insert("b", before.with(&[(3, EMPTY)])).unwrap();
        assert_eq!(v.get(3).unwrap(), None);
    }

    #[test]
    fn buckets_are_stored_compressed_and_damage_is_refused_before_it_is_allocated() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (tree, versions) = (db.open_tree("b").unwrap(), db.open_tree(TREE).unwrap());
        let v = Versioned::new(&tree, &versions, "email_index");
        // Past a page's size: a page of its own.
        let record: Vec<u8> = b"Finance managers, Billing Admin; ".repeat(1200);
        let stored = Stored::pack(&record);
        assert!(stored.len() * 10 < record.len(), "{} bytes", stored.len());
        let before = v.directory().unwrap();
        let mut written = Vec::new();
        v.write_pages(
            &before,
            vec![(1, Some(record.clone()))],
            7,
            &mut written,
            Cores::Two,
        )
        .unwrap();
        versions
            .insert("email_index", before.with(&written))
            .unwrap();
        assert_eq!(v.get(1).unwrap(), Some(record.clone()));
        // The same bytes read as schema 4 read them: as they are stored.
        let raw = Versioned::uncompressed(&tree, &versions, "email_index");
        assert_eq!(raw.get(1).unwrap().as_deref(), Some(&stored.bytes()[..]));
        let refused = |bytes: Vec<u8>| {
            tree.insert(key([0, 1], 7), bytes).unwrap();
            match v.get(1) {
                Err(StoreError::Corrupt(e)) => e,
                other => panic!("{other:?}"),
            }
        };
        let mut cut = stored.bytes().to_vec();
        cut.truncate(cut.len() - 5);
        let e = refused(cut);
        assert!(
            e.starts_with("bucket 1 of the email index is damaged: "),
            "{e}"
        );
        assert!(refused(vec![1, 2]).ends_with("shorter than its length"));
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&stored.bytes()[4..]);
        assert!(refused(huge).contains("its length 4294967295 is past"));
    }

    #[test]
    fn garbage_is_every_version_the_directory_does_not_name() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (tree, versions) = (db.open_tree("b").unwrap(), db.open_tree(TREE).unwrap());
        let v = Versioned::new(&tree, &versions, "b");
        for (g, version) in [(1, 0), (1, 4), (2, 0), (2, 6), (3, 6)] {
            tree.insert(key(buckets::key_of(g), version), b"x".to_vec())
                .unwrap();
        }
        let dir = v.directory().unwrap().with(&[(1, 4), (3, EMPTY)]);
        versions.insert("b", dir).unwrap();
        assert_eq!(v.collect_garbage().unwrap(), 3);
        let left: Vec<_> = tree.iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(left, vec![key([0, 1], 4), key([0, 2], 0)]);
        tree.insert([0, 1, 2], b"x".to_vec()).unwrap();
        assert!(matches!(v.collect_garbage(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_directory_that_names_a_page_for_some_of_its_buckets_only_is_damage() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (tree, versions) = (db.open_tree("b").unwrap(), db.open_tree(TREE).unwrap());
        let v = Versioned::new(&tree, &versions, "b");
        v.name_all_empty().unwrap();
        let whole: Vec<_> = (4..8).map(|g| (g, Page::new(g, 2, 3).entry())).collect();
        versions
            .insert("b", v.directory().unwrap().with(&whole))
            .unwrap();
        v.check_bounds().unwrap();
        versions
            .insert("b", v.directory().unwrap().with(&[(6, EMPTY)]))
            .unwrap();
        match v.check_bounds() {
            Err(StoreError::Corrupt(e)) => assert!(e.contains("buckets 4–7"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    /// A write of `records` made current as a commit makes it, the pages it replaced
    /// removed.
    fn commit(v: &Versioned<'_>, versions: &sled::Tree, records: Records, version: u64) {
        let before = v.directory().unwrap();
        let mut written = Vec::new();
        v.write_pages(&before, records, version, &mut written, Cores::Two)
            .unwrap();
        versions.insert(v.name, before.with(&written)).unwrap();
        v.remove_superseded(&before, &written).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the writes (records of 0 to 20 KB over three regions, buckets emptied
        /// and filled again), every bucket reads back its last record, with and without the
        /// cache of pages, no page is left that the directory does not name, and a page of
        /// several buckets fits in [`pages::PAGE_BYTES`].
        #[test]
        fn pages_read_back_every_write_and_leave_nothing_behind(
            writes in proptest::collection::vec(
                proptest::collection::btree_map(0usize..192, (0usize..20_000, proptest::prelude::any::<u8>()), 1..40),
                1..8,
            ),
            legacy in proptest::prelude::any::<bool>(),
        ) {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let (tree, versions) = (db.open_tree("b").unwrap(), db.open_tree(TREE).unwrap());
            let cached = Versioned::new(&tree, &versions, "b").cached_as(pages::new_store_id());
            let plain = Versioned::new(&tree, &versions, "b");
            if !legacy {
                cached.name_all_empty().unwrap();
            }
            let mut model: Vec<Option<Vec<u8>>> = vec![None; 192];
            for (i, write) in writes.into_iter().enumerate() {
                let records: Records = write
                    .into_iter()
                    .map(|(g, (len, byte))| (g, (len > 0).then(|| vec![byte; len])))
                    .collect();
                for (g, r) in &records {
                    model[*g] = r.clone();
                }
                commit(&cached, &versions, records, i as u64 + 1);
                for v in [&cached, &plain] {
                    for (g, expected) in model.iter().enumerate() {
                        proptest::prop_assert_eq!(&v.get(g).unwrap(), expected, "bucket {}", g);
                    }
                }
                proptest::prop_assert_eq!(plain.collect_garbage().unwrap(), 0);
                let directory = plain.directory().unwrap();
                for item in tree.iter() {
                    let (k, bytes) = item.unwrap();
                    let (g, _) = parse_key(&k).unwrap();
                    let page = plain.page_of(g, directory.entry(g)).unwrap().unwrap();
                    let size = unpack("b", g, &bytes).unwrap().len();
                    proptest::prop_assert!(page.level == 0 || size <= pages::PAGE_BYTES, "{page:?}: {size}");
                }
            }
        }
    }
}
