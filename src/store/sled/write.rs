//! Writing accounts copy-on-write ([`versions`]): the buckets a write changes are built and
//! put aside batch by batch, then the email index's, and one small transaction makes them
//! current together with the ledger, audit and counters; then the versions they replaced
//! are removed.

use super::new_token;
use super::store::{SledStore, TxTrees};
use super::versions::{self, Directory, Versioned, Written};
use super::{
    ACCOUNT_BUCKETS, EMAIL_INDEX, SCHEMA, Staged, TxResult, buckets, email_index, unwrap_tx,
};
use crate::core::accounts::{AccountGroup, group_of};
use crate::core::parallel::{Cores, WORTH_A_THREAD, join};
use crate::core::updates::{ByGroup, Updates};
use crate::store::backup_format::meta;
use crate::store::{Ready, StoreError, StoreResult, TokenChange};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;
use std::ops::Range;

/// How many buckets of accounts are built and written aside at a time, at least: at a
/// million accounts, 64 buckets are ~15k accounts and ~3 MB, held before they are laid out
/// in pages and compressed. A large write is put aside by two threads, a batch in flight in
/// each ([`halves`]): 128 buckets a batch then took a first import's peak from ~350 to
/// ~370 MB (and 256 on one thread had taken the worst first import's from 324–333 to
/// 344–348 MB). A multiple of the pages' region ([`super::pages::REGION`]): a batch lays its
/// regions out whole.
const BATCH: usize = 64;

/// A batch grows past [`BATCH`] buckets while its estimated bytes stay within this: what
/// 64 buckets come to at a million accounts, in the directory's estimate of the records
/// of the pages it rewrites ([`Directory::page_estimate`]: 64 pages of one bucket) or in
/// new accounts.
const BATCH_BYTES: usize = 1 << 20;

/// About what a new account adds to a batch, in the units of [`BATCH_BYTES`] (~1 MB for the
/// ~15k accounts of 64 buckets at a million).
const ACCOUNT_BYTES: usize = 64;

/// One weight per bucket for [`batches`]: `own(g)`, what the write brings to bucket `g` (0
/// when it leaves it alone), and for a bucket it touches the records of its page as
/// `directory` estimates them, counted once a page (a page is rewritten whole).
fn weights(directory: &Directory, own: impl Fn(usize) -> usize) -> Vec<usize> {
    let mut counted = None;
    (0..buckets::BUCKETS as usize)
        .map(|g| match own(g) {
            0 => 0,
            bytes => match directory.page_estimate(g) {
                Some((start, page)) if counted != Some(start) => {
                    counted = Some(start);
                    page + bytes
                }
                _ => bytes,
            },
        })
        .collect()
}

/// The ranges of buckets a write builds and puts aside one after the other, given about
/// how many bytes each bucket brings (`weights`, one per bucket): [`BATCH`] buckets, and
/// more, [`BATCH`] at a time, while the range's bytes stay within [`BATCH_BYTES`]. A write
/// to a small store is then one batch, whose halves are built on two cores, instead of 32
/// batches each too small for a second thread.
fn batches(weights: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < weights.len() {
        let mut end = (start + BATCH).min(weights.len());
        let mut bytes: usize = weights[start..end].iter().sum();
        while end < weights.len() {
            let next = (end + BATCH).min(weights.len());
            bytes += weights[end..next].iter().sum::<usize>();
            if bytes > BATCH_BYTES {
                break;
            }
            end = next;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// Where to split the batches `ranges` (their buckets weighing `weights`) into a lower and
/// an upper part of about equal weight, for a thread each ([`both`]): the number of batches
/// in the lower part, or `None` when there is one batch or too little work for two threads.
/// A million new accounts are 64 batches: split, both cores build, compress and write their
/// half, where one thread alone left the second core idle while it grouped a batch, laid
/// its pages out and wrote them into sled (~45 % of its time).
fn halves(ranges: &[Range<usize>], weights: &[usize]) -> Option<usize> {
    let each: Vec<usize> = ranges
        .iter()
        .map(|r| weights[r.clone()].iter().sum())
        .collect();
    let total: usize = each.iter().sum();
    if ranges.len() < 2 || total < 2 * WORTH_A_THREAD {
        return None;
    }
    let mut lower = 0;
    let (at, _) = (1..ranges.len())
        .map(|at| {
            lower += each[at - 1];
            (at, lower.abs_diff(total - lower))
        })
        .min_by_key(|&(_, gap)| gap)?;
    Some(at)
}

/// Runs `lower` here and `upper` on a second thread, each putting aside into a list of its
/// own; what both put aside is added to `written` whatever the outcome, so that a failed
/// write removes all of it.
fn both(
    written: &mut Vec<(usize, u64)>,
    lower: impl FnOnce(&mut Vec<(usize, u64)>) -> StoreResult<()>,
    upper: impl FnOnce(&mut Vec<(usize, u64)>) -> StoreResult<()> + Send,
) -> StoreResult<()> {
    let mut upper_written = Vec::new();
    let (here, there) = join(|| lower(written), || upper(&mut upper_written));
    written.append(&mut upper_written);
    here.and(there)
}

impl SledStore {
    /// The account buckets, through their directory.
    pub(super) fn buckets(&self) -> Versioned<'_> {
        Versioned::new(&self.accounts, &self.versions, ACCOUNT_BUCKETS).cached_as(self.id)
    }

    /// The email index's buckets, through their directory.
    pub(super) fn index(&self) -> Versioned<'_> {
        Versioned::new(&self.emails, &self.versions, EMAIL_INDEX).cached_as(self.id)
    }

    /// Writes `updates` (of two updates of one ID the later wins) and removes the accounts
    /// `remove`, with the index, and whatever `more` writes: aside, then made current in
    /// one transaction over every other tree; then flushes. On an error nothing is current
    /// and what was put aside is removed (or, failing that, at the next start).
    pub(super) fn write_accounts(
        &self,
        updates: Updates<'_>,
        remove: &[&str],
        token: Option<TokenChange>,
        ready: Ready<'_>,
        more: impl Fn(&TxTrees) -> TxResult<()>,
    ) -> StoreResult<()> {
        self.heads_checked()?;
        // A write of the ledger alone (a rejected or held file, a filing finished) puts
        // nothing aside, and leaves the accounts token as it is unless given one.
        let nothing = updates.is_empty() && remove.is_empty();
        // Made before the transaction, which may run more than once.
        let fresh = match nothing {
            true => None,
            false => Some(new_token()?),
        };
        self.write_versions(
            nothing,
            |version, before, written| self.write_aside(updates, remove, version, before, written),
            ready,
            |t| {
                let now = t.meta.get(meta::ACCOUNTS_TOKEN)?;
                let named = token
                    .filter(|c| now.as_deref() == c.from.as_ref().map(|f| &f[..]))
                    .map(|c| c.to);
                if let Some(token) = named.or(fresh) {
                    t.meta.insert(meta::ACCOUNTS_TOKEN, &token[..])?;
                }
                more(t)
            },
        )
    }

    /// Schema 3 or 4 → 6: every bucket rewritten compressed ([`versions::Stored`]) and in
    /// pages, [`BATCH`] buckets at a time, made current in one transaction with schema 6's
    /// marker, as any write is (a crash before it leaves the old schema, migrated again at
    /// the next start). How many buckets hold records.
    pub(super) fn compress_buckets(&self) -> StoreResult<usize> {
        let mut count = 0;
        self.write_versions(
            false,
            |version, before, written| {
                for (tree, name, before, into) in [
                    (
                        &self.accounts,
                        ACCOUNT_BUCKETS,
                        &before.0,
                        &mut written.accounts,
                    ),
                    (&self.emails, EMAIL_INDEX, &before.1, &mut written.index),
                ] {
                    let compressed = Versioned::new(tree, &self.versions, name);
                    let raw = Versioned::uncompressed(tree, &self.versions, name);
                    for start in (0..buckets::BUCKETS as usize).step_by(BATCH) {
                        let mut records = Vec::new();
                        raw.for_each(start..start + BATCH, |key, record| {
                            records.push((buckets::number_of(key), Some(record.to_vec())));
                            Ok(())
                        })?;
                        count += records.len();
                        compressed.write_pages(before, records, version, into, Cores::Two)?;
                    }
                }
                Ok(())
            },
            &mut || Ok(()),
            |t| {
                t.meta.insert(meta::SCHEMA, SCHEMA)?;
                Ok(())
            },
        )?;
        Ok(count)
    }

    /// A write copy-on-write: `aside` puts the new versions aside (given the directories as
    /// the write found them), after the marker that says a write may leave some (unless
    /// `nothing` is to be put aside), one transaction makes them current with what `more`
    /// writes, then a flush and the replaced versions are removed. On an error nothing is
    /// current and what was put aside is removed (or, failing that, at the next start).
    fn write_versions(
        &self,
        nothing: bool,
        aside: impl FnOnce(u64, &(Directory, Directory), &mut Written) -> StoreResult<()>,
        ready: Ready<'_>,
        more: impl Fn(&TxTrees) -> TxResult<()>,
    ) -> StoreResult<()> {
        let _writing = self.writing(!nothing);
        let version = versions::reserve(&self.versions)?;
        let before = (self.buckets().directory()?, self.index().directory()?);
        let mut written = Written::default();
        // What an earlier write could not clean up waits for the next start: the marker
        // stays for it. One left set while versions waited for readers is this process's
        // to clear once none wait ([`super::pins`]).
        let left_earlier = versions::unfinished(&self.versions)? && !self.pins.ours();
        // Asked when it is called: a removal beside this write may have failed meanwhile.
        let finish = || match nothing || left_earlier || self.pins.keep_marker() {
            true => Ok(()),
            false => versions::finished(&self.versions).inspect(|()| self.pins.cleared()),
        };
        let outcome = (if nothing {
            Ok(())
        } else {
            versions::unfinish(&self.versions).and_then(|()| aside(version, &before, &mut written))
        })
        .and_then(|()| ready())
        .and_then(|()| {
            crate::util::crash_point("after_aside");
            self.make_current(&before, &written, more)
        });
        if let Err(e) = outcome {
            // Best effort: what is left is removed at the next start, the marker staying
            // set for it (not one a later write may take for a wait of its own).
            let clean = self.clean_up_failed(&before, &written, finish);
            if !nothing && !matches!(clean, Ok(true)) {
                self.pins.left_for_next_start();
            }
            return Err(e);
        }
        if nothing {
            return Ok(());
        }
        let superseded = super::pins::Superseded { before, written };
        // Readers scanning now read the versions replaced: they wait for them.
        let Some(all) = self.pins.remove_or_wait(superseded, !left_earlier) else {
            return Ok(());
        };
        if self.remove_superseded(&all)
            && let Err(e) = finish()
        {
            tracing::warn!(error = %e, "the store's marker of finished writes was not cleared; the next start checks for leftovers");
        }
        Ok(())
    }

    /// After a write that failed: the versions it put aside that are not current are
    /// removed, then `finish` clears the marker, unless the write was made current (its
    /// flush failed): the versions it replaced are then left, and the marker with them, for
    /// the next start to remove. Whether it left nothing behind.
    pub(super) fn clean_up_failed(
        &self,
        before: &(Directory, Directory),
        written: &Written,
        finish: impl FnOnce() -> StoreResult<()>,
    ) -> StoreResult<bool> {
        // A directory that cannot be read counts as made current: its pages are kept, and
        // left for the next start.
        let made_current = self.buckets().directory().map_or(true, |d| {
            !written.accounts.is_empty() && d.is(&before.0.with(&written.accounts))
        });
        self.buckets().remove_written(&written.accounts)?;
        self.index().remove_written(&written.index)?;
        match made_current {
            true => Ok(false),
            false => finish().map(|()| true),
        }
    }

    /// Builds the buckets the write changes and puts them aside as `version`, [`BATCH`]
    /// buckets at a time, each batch's updates let go once it is written; then the index's.
    /// The buckets are read as `before` (the accounts' and the index's directories, read
    /// at the write's start) names them. A write worth it is split in two halves of its
    /// batches, each put aside by a thread of its own ([`halves`]).
    pub(super) fn write_aside(
        &self,
        updates: Updates<'_>,
        remove: &[&str],
        version: u64,
        before: &(Directory, Directory),
        written: &mut Written,
    ) -> StoreResult<()> {
        let mut updates = updates.by_group();
        let removed: Vec<usize> = remove.iter().map(|id| group_of(id)).collect();
        let accounts = self.buckets();
        let mut own: Vec<usize> = updates.per_group();
        // Each half of the write adds about half of the new accounts' index entries (a
        // write not split in halves may add more to the first, which then grows as needed).
        let half = updates.created() / 2;
        let mut changes = [
            email_index::Changes::with_room(half),
            email_index::Changes::with_room(half),
        ];
        for &g in &removed {
            own[g] = own[g].max(1);
        }
        let by_bucket = weights(&before.0, |g| own[g] * ACCOUNT_BYTES);
        let aside = |updates: &mut ByGroup<'_>,
                     ranges: &[Range<usize>],
                     changes: &mut [email_index::Changes],
                     cores: Cores,
                     written: &mut Vec<(usize, u64)>| {
            for &Range { start, end } in ranges {
                let batch = updates.take_below(end, cores);
                let mut groups = buckets::group_packed(&batch, cores);
                for &g in removed.iter().filter(|g| (start..end).contains(*g)) {
                    groups.entry(buckets::key_of(g)).or_default();
                }
                if groups.is_empty() {
                    continue;
                }
                let staged = self.stage_buckets(&groups, remove, &before.0, changes, cores)?;
                accounts.write_pages(&before.0, staged, version, written, cores)?;
            }
            Ok(())
        };
        let ranges = batches(&by_bucket);
        match halves(&ranges, &by_bucket) {
            Some(at) => {
                let mut upper = updates.split_off(ranges[at].start);
                let [lower_changes, upper_changes] = &mut changes;
                let (lower, upper_ranges) = ranges.split_at(at);
                both(
                    &mut written.accounts,
                    |w| {
                        aside(
                            &mut updates,
                            lower,
                            std::slice::from_mut(lower_changes),
                            Cores::One,
                            w,
                        )
                    },
                    |w| {
                        aside(
                            &mut upper,
                            upper_ranges,
                            std::slice::from_mut(upper_changes),
                            Cores::One,
                            w,
                        )
                    },
                )?;
            }
            None => aside(
                &mut updates,
                &ranges,
                &mut changes,
                Cores::Two,
                &mut written.accounts,
            )?,
        }
        self.index_aside(&changes, version, &before.1, &mut written.index)
    }

    /// Builds the email index's buckets that `changes` touch and puts them aside as
    /// `version`, in batches (their records, held until their pages are laid out and
    /// compressed, are ~40 MB at a million accounts), split between two threads as the
    /// accounts' are. `before`: the index's directory at the write's start.
    fn index_aside(
        &self,
        changes: &[email_index::Changes],
        version: u64,
        before: &Directory,
        written: &mut Vec<(usize, u64)>,
    ) -> StoreResult<()> {
        let index = self.index();
        let read = |g| index.get_at(before, g);
        let size = |g| before.estimated_size(g);
        // A bucket's own weight: its changes' text (and 1, so that a touched bucket counts).
        let by_bucket = weights(before, |n| {
            email_index::Changes::bytes(changes, n..n + 1, &|_| 1)
        });
        let aside = |ranges: &[Range<usize>], cores: Cores, written: &mut Vec<(usize, u64)>| {
            for range in ranges {
                let staged =
                    email_index::Changes::stage(changes, range.clone(), &read, &size, cores)?;
                index.write_pages(before, staged, version, written, cores)?;
            }
            Ok(())
        };
        let ranges = batches(&by_bucket);
        match halves(&ranges, &by_bucket) {
            Some(at) => {
                let (lower, upper) = ranges.split_at(at);
                both(
                    written,
                    |w| aside(lower, Cores::One, w),
                    |w| aside(upper, Cores::One, w),
                )
            }
            None => aside(&ranges, Cores::Two, written),
        }
    }

    /// Reads the buckets in `groups` and builds what they hold after their updates, without
    /// the IDs in `remove` (which must belong to those buckets), adding what changes in the
    /// email index to `changes` (one part, or two, the second for the half of the buckets
    /// built on a second core when `cores` and the work allow it).
    fn stage_buckets(
        &self,
        groups: &BTreeMap<buckets::BucketKey, Vec<buckets::Entry<'_>>>,
        remove: &[&str],
        directory: &Directory,
        changes: &mut [email_index::Changes],
        cores: Cores,
    ) -> StoreResult<Vec<Staged>> {
        type Part<'p, 'a> = &'p [(&'p buckets::BucketKey, &'p Vec<buckets::Entry<'a>>)];
        let groups: Vec<_> = groups.iter().collect();
        let accounts = self.buckets();
        let stage = |part: Part<'_, '_>, changes: &mut email_index::Changes| {
            let mut staged = Vec::with_capacity(part.len());
            for (key, updates) in part {
                let g = buckets::number_of(**key);
                let before = accounts.get_at(directory, g)?;
                let existing = buckets::heads_or_empty(*key, before.as_deref())?;
                let merged = buckets::merge(&existing, updates, remove);
                let after = (!merged.is_empty()).then(|| buckets::encode_entries(&merged));
                // After the encoding: the accounts' emails are in cache.
                changes.add_bucket(existing.heads(), &merged);
                staged.push((g, after));
            }
            Ok::<_, StoreError>(staged)
        };
        let bytes: usize = groups
            .iter()
            .map(|(key, updates)| {
                let rewritten: usize = updates.iter().map(|e| e.bytes.len()).sum();
                directory.estimated_size(buckets::number_of(**key)) + rewritten
            })
            .sum();
        match changes {
            [lower, upper] if cores == Cores::Two && bytes >= WORTH_A_THREAD => {
                let (first, second) = groups.split_at(groups.len() / 2);
                let (staged, rest) = join(|| stage(first, lower), || stage(second, upper));
                let mut staged = staged?;
                staged.extend(rest?);
                Ok(staged)
            }
            [one, ..] => stage(&groups, one),
            [] => unreachable!("a part for the index's changes"),
        }
    }

    /// The small transaction: the directories name what was put aside, checked unchanged
    /// since it was read, with what `more` writes; then a flush.
    pub(super) fn make_current(
        &self,
        before: &(Directory, Directory),
        written: &Written,
        more: impl Fn(&TxTrees) -> TxResult<()>,
    ) -> StoreResult<()> {
        let changed = !(written.accounts.is_empty() && written.index.is_empty());
        let after = (
            before.0.with(&written.accounts),
            before.1.with(&written.index),
        );
        let r = (
            &self.versions,
            &self.files,
            &self.sha_index,
            &self.meta,
            &self.audit,
            &self.remote,
        )
            .transaction(|(versions, files, sha_index, meta, audit, remote)| {
                if changed {
                    if versions::tx_directory(versions, ACCOUNT_BUCKETS)? != before.0
                        || versions::tx_directory(versions, EMAIL_INDEX)? != before.1
                    {
                        return Err(ConflictableTransactionError::Abort(
                            versions::changed_meanwhile(),
                        ));
                    }
                    versions.insert(ACCOUNT_BUCKETS, after.0.as_slice())?;
                    versions.insert(EMAIL_INDEX, after.1.as_slice())?;
                }
                more(&TxTrees {
                    files,
                    sha_index,
                    meta,
                    audit,
                    remote,
                })
            });
        unwrap_tx(r)?;
        self.flushed_after_write()
    }
}

#[cfg(test)]
mod tests {
    use crate::core::accounts::Account;
    use crate::store::samples::{account, commit_accounts as commit};
    use crate::store::{SledStore, Store};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn batches_cover_every_bucket_once_in_whole_regions_and_grow_only_while_small() {
        use super::{BATCH, BATCH_BYTES, batches};
        let all = crate::store::sled::buckets::BUCKETS as usize;
        let check = |ranges: &[std::ops::Range<usize>]| {
            assert_eq!(ranges.first().map(|r| r.start), Some(0));
            assert_eq!(ranges.last().map(|r| r.end), Some(all));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{ranges:?}");
            }
            for r in ranges {
                assert!(r.len() >= BATCH && r.len() % BATCH == 0, "{r:?}");
            }
        };
        // A small write: one batch.
        let small = batches(&vec![1; all]);
        check(&small);
        assert_eq!(small, vec![0..all]);
        // BATCH buckets come to the limit: every batch is BATCH buckets, as at a million.
        let per_bucket = BATCH_BYTES / BATCH;
        let full = batches(&vec![per_bucket; all]);
        check(&full);
        assert_eq!(full.len(), all / BATCH);
        // One bucket larger than the limit in every region: still batches of the least size.
        let huge: Vec<usize> = (0..all)
            .map(|g| if g % BATCH == 0 { BATCH_BYTES * 10 } else { 0 })
            .collect();
        check(&batches(&huge));
        assert_eq!(batches(&huge).len(), all / BATCH);
        // Half the limit per BATCH buckets: 2 × BATCH buckets a batch.
        let half = batches(&vec![per_bucket / 2; all]);
        check(&half);
        assert_eq!(half.len(), all / (2 * BATCH));
        // Over the limit in the first region only: a batch there, then one for the rest.
        let mut front = vec![0; all];
        front[0] = BATCH_BYTES + 1;
        assert_eq!(batches(&front), vec![0..BATCH, BATCH..all]);
        // Untouched buckets (weight 0) never end a batch.
        let mut sparse = vec![0; all];
        sparse[5] = BATCH_BYTES;
        sparse[all - 1] = BATCH_BYTES;
        assert_eq!(batches(&sparse), vec![0..all - BATCH, all - BATCH..all]);
    }

    #[test]
    fn weights_count_a_touched_buckets_page_once() {
        use super::super::pages::{EMPTY, PAGE_BYTES, Page};
        use super::super::versions::Directory;
        use super::weights;
        let all = crate::store::sled::buckets::BUCKETS as usize;
        let mut entries = vec![EMPTY; all];
        entries[5] = Page::new(5, 0, 7).entry();
        for entry in &mut entries[64..72] {
            *entry = Page::new(64, 3, 8).entry();
        }
        let directory = Directory::of_entries(&entries);
        let own = |g: usize| match g {
            5 | 6 | 65 | 66 | 100 => 10,
            _ => 0,
        };
        let w = weights(&directory, own);
        assert_eq!(w[5], PAGE_BYTES / 2 + 10, "a page of its own");
        assert_eq!(w[6], 10, "empty: its updates only");
        assert_eq!(
            w[65],
            PAGE_BYTES + 10,
            "the first touched bucket of a page of 8"
        );
        assert_eq!(w[66], 10, "the same page, counted once");
        assert_eq!(w[64], 0, "untouched, though its page is rewritten");
        assert_eq!(w[100], 10);
        assert_eq!(w.iter().filter(|&&x| x > 0).count(), 5);
    }

    /// A write made current whose flush then failed: what it put aside stays (it is
    /// current), and so does the marker, so that the next start removes the versions it
    /// replaced; a write that was not made current removes what it put aside.
    #[test]
    fn a_write_made_current_but_not_flushed_leaves_what_it_replaced_to_the_next_start() {
        use super::super::versions;
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            commit(&s, vec![account("E1"), account("E2")]);
            for made_current in [false, true] {
                let before = (
                    s.buckets().directory().unwrap(),
                    s.index().directory().unwrap(),
                );
                let version = versions::reserve(&s.versions).unwrap();
                let mut written = super::Written::default();
                versions::unfinish(&s.versions).unwrap();
                let role = format!("Role {made_current}");
                let e1 = Account {
                    role: role.clone(),
                    ..account("E1")
                };
                s.write_aside(
                    crate::core::updates::Updates::packed(vec![crate::core::packed::Packed::of(
                        &e1,
                    )]),
                    &[],
                    version,
                    &before,
                    &mut written,
                )
                .unwrap();
                if made_current {
                    s.versions
                        .insert(super::ACCOUNT_BUCKETS, before.0.with(&written.accounts))
                        .unwrap();
                    s.versions
                        .insert(super::EMAIL_INDEX, before.1.with(&written.index))
                        .unwrap();
                }
                s.clean_up_failed(&before, &written, || versions::finished(&s.versions))
                    .unwrap();
                assert_eq!(versions::unfinished(&s.versions).unwrap(), made_current);
                let expected = if made_current {
                    role
                } else {
                    "IT Admin".into()
                };
                assert_eq!(s.account("E1").unwrap().unwrap().role, expected);
            }
            assert!(
                s.buckets().collect_garbage().unwrap() > 0,
                "E1's old page left"
            );
            versions::unfinish(&s.versions).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.account("E1").unwrap().unwrap().role, "Role true");
        assert_eq!(s.buckets().collect_garbage().unwrap(), 0);
        assert!(!versions::unfinished(&s.versions).unwrap());
    }

    #[test]
    fn halves_split_at_the_batch_that_balances_the_weight_or_not_at_all() {
        use super::halves;
        use crate::core::parallel::WORTH_A_THREAD;
        let ranges: Vec<std::ops::Range<usize>> = (0..8).map(|i| i * 10..i * 10 + 10).collect();
        let even = vec![WORTH_A_THREAD / 10; 80];
        assert_eq!(halves(&ranges, &even), Some(4));
        assert_eq!(halves(&ranges[..1], &even), None, "one batch");
        assert_eq!(
            halves(&ranges, &vec![1; 80]),
            None,
            "too little for two threads"
        );
        // Most of the weight in the first batch: it alone is the lower part.
        let mut front = vec![1; 80];
        front[3] = 4 * WORTH_A_THREAD;
        assert_eq!(halves(&ranges, &front), Some(1));
        // And in the last: every batch but it.
        let mut back = vec![1; 80];
        back[75] = 4 * WORTH_A_THREAD;
        assert_eq!(halves(&ranges, &back), Some(7));
    }

    /// What either half put aside is listed whatever the outcome, and an error of either
    /// half is the write's.
    #[test]
    fn both_halves_list_what_they_put_aside_also_when_one_fails() {
        use super::both;
        use crate::store::StoreError;
        let fail = |w: &mut Vec<(usize, u64)>, g| {
            w.push((g, 1));
            Err(StoreError::Corrupt(format!("half {g}")))
        };
        let succeed = |w: &mut Vec<(usize, u64)>, g| {
            w.push((g, 1));
            Ok(())
        };
        let mut written = vec![(0, 1)];
        assert!(both(&mut written, |w| succeed(w, 1), |w| succeed(w, 2)).is_ok());
        assert_eq!(written, [(0, 1), (1, 1), (2, 1)]);
        for lower_fails in [true, false] {
            let mut written = Vec::new();
            let outcome = match lower_fails {
                true => both(&mut written, |w| fail(w, 1), |w| succeed(w, 2)),
                false => both(&mut written, |w| succeed(w, 1), |w| fail(w, 2)),
            };
            let expected = if lower_fails { "half 1" } else { "half 2" };
            assert!(matches!(outcome, Err(StoreError::Corrupt(m)) if m == expected));
            assert_eq!(written, [(1, 1), (2, 1)]);
        }
    }

    /// A write large enough to be put aside by two threads, one half of its batches each:
    /// every account and every index entry lands, also when a second write changes emails
    /// and removes accounts in both halves, and the store opens and checks afterwards.
    #[test]
    fn a_write_split_between_two_threads_puts_every_account_and_entry_aside() {
        use super::{ACCOUNT_BYTES, batches, halves, weights};
        use crate::core::accounts::{GROUPS, group_of};
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..40_000).map(|i| format!("E{i}")).collect();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let mut own = vec![0; GROUPS];
            for id in &ids {
                own[group_of(id)] += 1;
            }
            let by_bucket = weights(&s.buckets().directory().unwrap(), |g| {
                own[g] * ACCOUNT_BYTES
            });
            assert!(halves(&batches(&by_bucket), &by_bucket).is_some(), "split");
            commit(&s, ids.iter().map(|id| account(id)).collect());
            let moved: Vec<Account> = ids
                .iter()
                .step_by(7)
                .map(|id| Account {
                    email: format!("{id}@moved.io"),
                    ..account(id)
                })
                .collect();
            commit(&s, moved);
            for id in ["E3", "E39998"] {
                let note = crate::store::AuditNote {
                    at: "2026-01-01T00:00:00Z".into(),
                    user: "root".into(),
                    action: "admins remove".into(),
                    detail: id.into(),
                };
                s.put_account(&account(id), true, note).unwrap();
            }
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        s.verify().unwrap();
        s.verify_index().unwrap();
        let mut seen = 0;
        s.scan_accounts(&mut |_| seen += 1).unwrap();
        assert_eq!(seen, ids.len() - 2);
        for (i, id) in ids.iter().enumerate().step_by(101) {
            let email = match i % 7 {
                0 => format!("{id}@moved.io"),
                _ => format!("{id}@x.io"),
            };
            assert_eq!(s.account(id).unwrap().unwrap().email, email);
            let by_email = s.accounts_by_email(&email).unwrap();
            assert_eq!(by_email.len(), 1, "{email}");
            if i % 7 == 0 {
                assert!(
                    s.accounts_by_email(&format!("{id}@x.io"))
                        .unwrap()
                        .is_empty()
                );
            }
        }
        for id in ["E3", "E39998"] {
            assert!(s.account(id).unwrap().is_none());
            assert!(
                s.accounts_by_email(&format!("{id}@x.io"))
                    .unwrap()
                    .is_empty()
            );
        }
    }

    /// Readers beside a writer (the daemon answers reads while the engine commits) see
    /// every account in one of its committed states, never missing, though the versions
    /// they were reading are replaced and removed under them.
    #[test]
    fn readers_beside_commits_always_find_each_account_in_a_committed_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..2000).map(|i| format!("E{i}")).collect();
        let with_role = |role: &str| -> Vec<Account> {
            ids.iter()
                .map(|id| Account {
                    role: role.into(),
                    ..account(id)
                })
                .collect()
        };
        commit(&s, with_role("Role 0"));
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    for id in ids.iter().step_by(97) {
                        let a = s
                            .account(id)
                            .unwrap()
                            .expect("an account never goes missing");
                        assert!(a.role.starts_with("Role "), "{a:?}");
                        let by_email = s.accounts_by_email(&a.email).unwrap();
                        assert_eq!(by_email.len(), 1, "{id}: {by_email:?}");
                        reads += 1;
                    }
                    let mut seen = 0;
                    s.scan_accounts(&mut |_| seen += 1).unwrap();
                    assert_eq!(seen, ids.len());
                }
                reads
            });
            for round in 1..=20 {
                commit(&s, with_role(&format!("Role {round}")));
            }
            done.store(true, Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(s.account("E7").unwrap().unwrap().role, "Role 20");
        // Every replaced version is gone: each key left is a page the directory names.
        assert_eq!(s.buckets().collect_garbage().unwrap(), 0);
        assert!(
            s.accounts.len() < 4096 / 2,
            "2,000 small accounts share pages"
        );
    }

    /// A sign-in's lookup by email beside commits that move every email back and forth:
    /// an index entry read before a commit next to the account read after it is read again,
    /// not reported as damage (an SSO sign-in had been answered "store is damaged").
    #[test]
    fn lookups_by_email_beside_commits_that_move_emails_are_never_damage() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..2000).map(|i| format!("E{i}")).collect();
        let at = |domain: &str| -> Vec<Account> {
            ids.iter()
                .map(|id| Account {
                    email: format!("{id}@{domain}"),
                    ..account(id)
                })
                .collect()
        };
        commit(&s, at("a.io"));
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut found = 0;
                while !done.load(Ordering::Relaxed) {
                    for id in ids.iter().step_by(13) {
                        for domain in ["a.io", "b.io"] {
                            let email = format!("{id}@{domain}");
                            let by_email = s.accounts_by_email(&email).unwrap();
                            assert!(by_email.len() <= 1, "{email}: {by_email:?}");
                            found += by_email.len();
                        }
                    }
                }
                found
            });
            for round in 1..=40 {
                commit(&s, at(if round % 2 == 0 { "a.io" } else { "b.io" }));
            }
            done.store(true, Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
    }
}
