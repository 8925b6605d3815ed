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
//! Form (schema 5): each bucket's record is stored compressed ([`Stored`], LZ4 blocks), so
//! sled's page cache, which keeps every bucket read or written for as long as the store is
//! open (BENCHMARKS.md), holds ~5× fewer bytes. Schemas up to 4 stored records as they are
//! ([`Versioned::uncompressed`], read only by the migrations).

use super::buckets::{self, BucketKey};
use crate::store::{StoreError, StoreResult};
use sled::IVec;

/// The tree of directories, and of the last version number given out.
pub const TREE: &str = "bucket_versions";
/// The key of the last version number given out.
const LAST: &[u8] = b"last";
/// The key present while a write may leave versions the directory does not name: written
/// before the first aside write, removed once they are current and the replaced ones gone.
const UNFINISHED: &[u8] = b"unfinished";
/// The version of a bucket that holds no accounts (no key is written for it).
pub const EMPTY: u64 = u64::MAX;
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

/// The key of version `version` of the bucket `bucket`.
pub fn key(bucket: BucketKey, version: u64) -> Vec<u8> {
    let mut key = bucket.to_vec();
    if version != 0 {
        key.extend_from_slice(&version.to_be_bytes());
    }
    key
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
    /// The current version of bucket `g`.
    pub fn version(&self, g: usize) -> u64 {
        match &self.0 {
            None => 0,
            Some(bytes) => u64::from_be_bytes(
                bytes[g * 8..g * 8 + 8]
                    .try_into()
                    .expect("a directory's length is checked when it is read"),
            ),
        }
    }

    /// This directory with the versions in `set` (bucket, version) in place of its own.
    pub fn with(&self, set: &[(usize, u64)]) -> Vec<u8> {
        let mut bytes = match &self.0 {
            Some(b) => b.to_vec(),
            None => vec![0; COUNT * 8],
        };
        for &(g, version) in set {
            bytes[g * 8..g * 8 + 8].copy_from_slice(&version.to_be_bytes());
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
}

impl<'a> Versioned<'a> {
    pub fn new(tree: &'a sled::Tree, versions: &'a sled::Tree, name: &'static str) -> Self {
        Versioned {
            tree,
            versions,
            name,
            compressed: true,
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

    /// The current record of bucket `g`; `None` when it holds no accounts.
    pub fn get(&self, g: usize) -> StoreResult<Option<Vec<u8>>> {
        self.get_from(g, self.directory()?.version(g))
    }

    /// [`Self::get`] as `directory`, read a moment ago, names it: a write reads its buckets
    /// through the directory it read once at its start, not through one read per bucket (at
    /// a first import of 10k accounts those reads were ~a tenth of the run).
    pub fn get_at(&self, directory: &Directory, g: usize) -> StoreResult<Option<Vec<u8>>> {
        self.get_from(g, directory.version(g))
    }

    /// [`Self::get`] from `version`, what the directory said a moment ago.
    fn get_from(&self, g: usize, mut version: u64) -> StoreResult<Option<Vec<u8>>> {
        loop {
            if version == EMPTY {
                return Ok(None);
            }
            if let Some(bytes) = self.tree.get(key(buckets::key_of(g), version))? {
                return match self.compressed {
                    true => unpack(self.name, g, &bytes).map(Some),
                    false => Ok(Some(bytes.to_vec())),
                };
            }
            // Superseded and removed since the directory was read, or damage.
            let now = self.directory()?.version(g);
            if now == version {
                return match version {
                    0 => Ok(None),
                    _ => Err(StoreError::Corrupt(format!(
                        "the {} lost bucket {g}: its current version {version} is missing",
                        words(self.name)
                    ))),
                };
            }
            version = now;
        }
    }

    /// Calls `f` with each bucket in `range` that holds accounts, in order. The directory
    /// is read once: a version removed since is read again from the directory then.
    pub fn for_each(
        &self,
        range: std::ops::Range<usize>,
        mut f: impl FnMut(BucketKey, &[u8]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let directory = self.directory()?;
        for g in range {
            if let Some(bytes) = self.get_from(g, directory.version(g))? {
                f(buckets::key_of(g), &bytes)?;
            }
        }
        Ok(())
    }

    /// Writes bucket `g`'s version `version` aside (`None`: it holds no accounts, nothing
    /// is written); the directory entry that makes it current.
    pub fn write_aside(
        &self,
        g: usize,
        version: u64,
        bytes: Option<Stored>,
    ) -> StoreResult<(usize, u64)> {
        debug_assert!(self.compressed, "only the current form is written");
        match bytes {
            Some(Stored(bytes)) => {
                self.tree.insert(key(buckets::key_of(g), version), bytes)?;
                Ok((g, version))
            }
            None => Ok((g, EMPTY)),
        }
    }

    /// Removes the versions `written` (bucket, version) replaced in `before`, once the
    /// directory no longer names them.
    pub fn remove_superseded(
        &self,
        before: &Directory,
        written: &[(usize, u64)],
    ) -> StoreResult<()> {
        for &(g, _) in written {
            let old = before.version(g);
            if old != EMPTY {
                self.tree.remove(key(buckets::key_of(g), old))?;
            }
        }
        Ok(())
    }

    /// Removes the versions `written` (bucket, version) of a write that was not made
    /// current (those the directory names are kept).
    pub fn remove_written(&self, written: &[(usize, u64)]) -> StoreResult<()> {
        let directory = self.directory()?;
        for &(g, version) in written {
            if version != EMPTY && directory.version(g) != version {
                self.tree.remove(key(buckets::key_of(g), version))?;
            }
        }
        Ok(())
    }

    /// Checks that no key lies outside the buckets' range (the start-up check: the keys within
    /// it are checked by [`Self::collect_garbage`] when a write was left unfinished).
    pub fn check_bounds(&self) -> StoreResult<()> {
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

    /// Removes every version the directory does not name: those written aside by a write
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
            if directory.version(g) != version {
                garbage.push(k);
            }
        }
        for k in &garbage {
            self.tree.remove(k)?;
        }
        Ok(garbage.len())
    }
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

/// A tree's name in words ("account buckets", "email index").
fn words(name: &str) -> String {
    name.replace('_', " ")
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
        let written = vec![v.write_aside(3, 5, Some(Stored::pack(b"new"))).unwrap()];
        assert_eq!(
            v.get(3).unwrap().as_deref(),
            Some(&b"old"[..]),
            "aside, not current"
        );
        // A reader reads the directory here, before the write is made current...
        let stale = v.directory().unwrap().version(3);
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
        let record: Vec<u8> = b"Finance managers, Billing Admin; ".repeat(400);
        let stored = Stored::pack(&record);
        assert!(stored.len() * 10 < record.len(), "{} bytes", stored.len());
        let written = v.write_aside(1, 7, Some(stored.clone())).unwrap();
        versions
            .insert("email_index", v.directory().unwrap().with(&[written]))
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
}
