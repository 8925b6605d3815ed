//! Backups of the store: `autoprov backup FILE`, `autoprov restore FILE`, and the automatic
//! backup the daemon writes once it is ready (the one a damaged store's message names).

use crate::api::error::{Context, Error, Result};
use crate::layout::Paths;
use crate::store::{SledStore, Store, StoreError};
use crate::util::{compact_timestamp, create_fresh, fsync_dir, now_rfc3339, write_new_with};
use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Automatic backups kept in `data_dir/backups`.
pub const KEEP: usize = 3;

/// Writes a backup of `store` to `path` atomically, streamed (never whole in memory);
/// returns the record count and the path.
pub fn write(store: &dyn Store, path: &Path) -> Result<(u64, PathBuf)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut count = 0;
    // Never over anything: a typo run as root had replaced a system file (or a device).
    let written = write_new_with(path, |w| {
        count = store.export(w, &now_rfc3339())?;
        Ok(())
    });
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Refused(crate::api::error::Blocked::Exists {
                path: path.to_path_buf(),
            }));
        }
        written => written.with_context(|| format!("writing the backup {}", path.display()))?,
    }
    Ok((count, path.to_path_buf()))
}

/// The automatic backups, newest first: the files named as [`rotate`] names them. Others in
/// the folder (a `manual.backup` an org admin wrote there, as the daemon suggests) are
/// neither named as the newest nor counted among the [`KEEP`] nor removed: a name sorting
/// after every timestamp would otherwise pass for the newest backup however old it is.
///
/// A name dated after now (a clock that ran ahead, since corrected) is left alone too: it
/// sorted first, so it was named as the newest backup to restore, and the one just written
/// was compared with it, then counted behind it.
pub fn automatic(paths: &Paths) -> Vec<PathBuf> {
    automatic_at(paths, &now_rfc3339())
}

/// [`automatic`] as of the time `now` (RFC 3339).
fn automatic_at(paths: &Paths, now: &str) -> Vec<PathBuf> {
    let latest = format!("autoprov-{}.backup", compact_timestamp(now));
    let mut found: Vec<PathBuf> = fs::read_dir(&paths.backups)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| is_automatic_name(n) && n <= latest.as_str())
                })
                // Only a file (not followed through a link) is a backup: a folder or a FIFO
                // under such a name had been named as the newest to restore and counted
                // among the three kept, and a FIFO's check waited for a writer for ever.
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.reverse();
    found
}

/// Whether `name` is an automatic backup's: `autoprov-YYYYMMDDTHHMMSSZ.backup`.
fn is_automatic_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix("autoprov-")
        .and_then(|n| n.strip_suffix(".backup"))
    else {
        return false;
    };
    crate::util::is_compact_timestamp(stamp)
}

/// What [`rotate`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotated {
    /// A new automatic backup was written.
    Written(PathBuf),
    /// The store holds exactly what this (newest) backup holds: nothing was written, so
    /// restarts without a change (a crash loop included) never push older backups out.
    Unchanged(PathBuf),
}

/// Writes an automatic backup unless the store is unchanged since the newest one, and keeps
/// the newest [`KEEP`]. Streamed to a hidden file and renamed once complete and fsynced.
pub fn rotate(store: &dyn Store, paths: &Paths, stop: &dyn Fn() -> bool) -> Result<Rotated> {
    rotate_until(store, paths, &now_rfc3339(), stop)
}

/// [`rotate`] at the time `now` (RFC 3339), which names the backup.
#[cfg(test)]
fn rotate_at(store: &dyn Store, paths: &Paths, now: &str) -> Result<Rotated> {
    rotate_until(store, paths, now, &|| false)
}

/// [`rotate`] at the time `now`, abandoned (an error, nothing left) once `stop` says so: a
/// daemon stopping during the backup of a large store had waited for it whole, ~14 s of a
/// 190 MB store, past what the unit's stop budget allows for.
fn rotate_until(
    store: &dyn Store,
    paths: &Paths,
    now: &str,
    stop: &dyn Fn() -> bool,
) -> Result<Rotated> {
    let name = format!("autoprov-{}.backup", compact_timestamp(now));
    let path = paths.backups.join(&name);
    fs::create_dir_all(&paths.backups)
        .with_context(|| format!("creating {}", paths.backups.display()))?;
    remove_unfinished(&paths.backups);
    room_for_a_backup(paths, now)?;
    let tmp = paths.backups.join(format!(".{name}.tmp"));
    let written = export_hashed(store, &tmp, now, stop);
    let digest = match written {
        Ok(digest) => digest,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.context(format!("writing the backup {}", tmp.display())));
        }
    };
    // The newest and what it reads back as, once: the rotation below asks again.
    let newest = (automatic_at(paths, now).into_iter().next()).map(|p| {
        let read = intact_digest(&p);
        (p, read)
    });
    if let Some((newest, Some(read))) = &newest
        && *read == digest
    {
        let _ = fs::remove_file(&tmp);
        return Ok(Rotated::Unchanged(newest.clone()));
    }
    fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
    fsync_dir(&paths.backups).with_context(|| format!("syncing {}", paths.backups.display()))?;
    // The one just written is kept whatever the others' names say (backups named for a
    // clock that ran ahead sort after it: it had been removed at once, at every start).
    let others: Vec<PathBuf> = automatic_at(paths, now)
        .into_iter()
        .filter(|p| *p != path)
        .collect();
    let intact = |p: &Path| match &newest {
        Some((newest, read)) if newest == p => read.is_some(),
        _ => intact_digest(p).is_some(),
    };
    for old in beyond_intact(&others, KEEP - 1, intact) {
        let _ = fs::remove_file(old);
    }
    Ok(Rotated::Written(path))
}

/// The backups in `newest_first` older than the `keep`-th intact one: only intact backups
/// count among those kept, so a damaged one (which restore refuses) never leaves fewer than
/// [`KEEP`] that restore; damaged ones newer than that stay for whoever looks into them.
/// None while fewer than `keep` are intact.
fn beyond_intact(
    newest_first: &[PathBuf],
    keep: usize,
    intact: impl Fn(&Path) -> bool,
) -> &[PathBuf] {
    let mut found = 0;
    for (i, p) in newest_first.iter().enumerate() {
        if found == keep {
            return &newest_first[i..];
        }
        found += usize::from(intact(p));
    }
    &[]
}

/// Refuses to start an automatic backup that cannot fit: the newest one's size, a tenth
/// more and 64 MiB free. One that would not fit had filled the disk before it failed, every
/// hour while it was retried, failing the uploads and fetches of that moment.
fn room_for_a_backup(paths: &Paths, now: &str) -> Result<()> {
    let Some(newest) = automatic_at(paths, now).into_iter().next() else {
        return Ok(());
    };
    let Ok(size) = fs::metadata(&newest).map(|m| m.len()) else {
        return Ok(());
    };
    let needed = size + size / 10 + (64 << 20);
    let free = nix::sys::statvfs::statvfs(&paths.backups)
        .map(|fs| fs.blocks_available().saturating_mul(fs.fragment_size()));
    match free {
        Ok(free) if free < needed => Err(Error::failed(format!(
            "not enough free space in {} for a backup: about {} MB needed (the newest is {} MB), \
             {} MB free; nothing was written",
            paths.backups.display(),
            needed >> 20,
            size >> 20,
            free >> 20
        ))),
        _ => Ok(()),
    }
}

/// Removes the hidden parts of automatic backups that a stop or a crash interrupted (each
/// holds every admin's email; they had been left for ever, one more at each failed start).
/// One daemon writes there at a time: it holds the store.
fn remove_unfinished(dir: &Path) {
    let unfinished = |name: &str| {
        name.strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .is_some_and(is_automatic_name)
    };
    crate::util::remove_leftovers(dir, unfinished, "an unfinished backup");
}

/// Exports `store` to `tmp` (fsynced); returns the SHA-256 of its records, read back as
/// [`intact_digest`] reads the newest backup's (one way for both sides of the "unchanged"
/// comparison), which also checks that what was written reads back whole.
fn export_hashed(
    store: &dyn Store,
    tmp: &Path,
    now: &str,
    stop: &dyn Fn() -> bool,
) -> Result<[u8; 32]> {
    let file = create_fresh(tmp)?;
    let mut out = Stoppable {
        inner: BufWriter::with_capacity(1 << 16, file),
        stop,
    };
    store.export(&mut out, now)?;
    out.inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    intact_digest(tmp)
        .ok_or_else(|| Error::failed("the backup just written does not read back whole"))
}

/// The SHA-256 of a backup file's records, when it is intact
/// ([`crate::store::records_digest`]).
fn intact_digest(path: &Path) -> Option<[u8; 32]> {
    use std::os::unix::fs::OpenOptionsExt;
    // Not blocking on a FIFO, not through a link, swapped in since it was listed.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))?;
    crate::store::records_digest(BufReader::with_capacity(1 << 16, file))
}

/// Passes bytes on to `inner`; fails once `stop` says so.
struct Stoppable<'s, W> {
    inner: W,
    stop: &'s dyn Fn() -> bool,
}

impl<W: Write> Write for Stoppable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.stop)() {
            return Err(std::io::Error::other(
                "abandoned: the daemon is stopping (the next start backs the store up)",
            ));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What to tell an operator whose store does not open: the newest automatic backup that
/// reads back intact (a damaged newest one, which restore refuses, had been named at the
/// moment the store itself was damaged), and how many newer ones do not.
pub fn advice(paths: &Paths) -> String {
    let all = automatic(paths);
    let intact = all.iter().position(|p| intact_digest(p).is_some());
    let damaged = |n: usize| match n {
        0 => String::new(),
        1 => " (the one newer than it does not read back intact)".to_string(),
        n => format!(" (the {n} newer than it do not read back intact)"),
    };
    match intact {
        Some(i) => format!(
            "stop autoprov, then restore the newest backup that reads back intact{}: \
             `autoprov restore {}`",
            damaged(i),
            all[i].display()
        ),
        None if !all.is_empty() => format!(
            "no automatic backup in {} reads back intact ({} there are damaged); restore \
             one you made with `autoprov backup FILE`",
            paths.backups.display(),
            all.len()
        ),
        None => format!(
            "no automatic backup exists in {}; restore one you made with `autoprov backup FILE`",
            paths.backups.display()
        ),
    }
}

/// How far the store being replaced gave out rule, file and audit numbers: its record of
/// them (a restored store keeps its own, raised so, which a later restore reads).
fn replaced_counters(paths: &Paths) -> crate::store::watermark::Counters {
    // Rule and file ids given out by the store replaced are not given out again (SPEC §2:
    // never reused; reports in processed/ name them): its record of how far they went.
    // The restored store keeps its own record (raised so), which a later restore reads.
    match crate::store::watermark::read(&paths.store) {
        Some(counters) => counters,
        None if !paths.store.exists() => Default::default(),
        None => {
            tracing::warn!(
                store = %paths.store.display(),
                "the store replaced has no readable record of the rule and file ids it gave \
                 out: ids given out since the backup may be given out again"
            );
            Default::default()
        }
    }
}

/// A free name for the store replaced: `store.replaced-<time>`, then `-2`, `-3`…
fn aside_name(paths: &Paths) -> PathBuf {
    // Free: two restores within a second (the wrong backup, then the right one) had met
    // the first one's name, and the store replaced stayed as store.restoring.
    let first = paths
        .store
        .with_extension(format!("replaced-{}", compact_timestamp(&now_rfc3339())));
    let (Some(dir), Some(name)) = (first.parent(), first.file_name()) else {
        return first;
    };
    let name = name.to_string_lossy();
    dir.join(crate::util::numbered(&name, &name, "", |n| {
        dir.join(n).exists()
    }))
}

/// What a restore did, for its answer.
pub struct Restored {
    /// How many records the backup held.
    pub records: u64,
    /// When the backup was written.
    pub created_at: String,
    /// Where the store it replaced was kept, if there was one.
    pub replaced: Option<PathBuf>,
    /// The numbers of the audit entries the replaced store made after the backup: kept in
    /// the restored store's audit, marked as rolled back.
    pub rolled_back: Vec<u64>,
    /// Why the replaced store's audit could not be read, when it could not.
    pub audit_unread: Option<String>,
    /// What the restored store does not know of the drop folders.
    pub unknown: crate::restore_notes::Unknown,
    /// What the backup's SHA-256 checked.
    pub checked: crate::store::Checked,
}

impl Restored {
    /// What a person must act on after this restore, a sentence each.
    pub fn notes(&self) -> Vec<String> {
        let unchecked = crate::restore_notes::unchecked(self.checked);
        unchecked.into_iter().chain(self.unknown.notes()).collect()
    }
}

/// Replaces the store with a backup, as `user` asked (the restored store's audit says so).
/// The old store is kept beside it, renamed. `before`: the audit of the store replaced, read
/// before it was locked (see [`SledStore::audit_at`]); what it recorded after the backup is
/// kept in the restored store's audit, marked rolled back (a restore had erased who had
/// been given and who had been denied admin rights since the backup).
pub fn restore(
    paths: &Paths,
    (file, input): (&Path, fs::File),
    user: &str,
    before: Option<crate::store::StoreResult<Vec<crate::store::AuditEntry>>>,
) -> Result<Restored> {
    let staging = paths.store.with_extension("restoring");
    let (n, created_at, checked) = import_into(&staging, paths, file, input)?;
    let mut restored = Restored {
        records: n,
        created_at,
        replaced: None,
        rolled_back: Vec::new(),
        audit_unread: None,
        unknown: Default::default(),
        checked,
    };
    match check_restored(&staging, paths, (file, user), before, &mut restored) {
        Ok(()) => {}
        Err(e @ StoreError::Corrupt(_)) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::usage(format!(
                "the restored store does not pass the integrity check: {e}"
            )));
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::from(e).context("opening the restored store"));
        }
    }
    let ready = owner_of(paths).and_then(|owner| give_to_owner(&staging, &owner));
    if let Err(e) = ready {
        let _ = fs::remove_dir_all(&staging);
        return Err(Error::from(e).context("giving the restored store its owner"));
    }
    let aside = aside_name(paths);
    // One step where the file system allows it: two renames leave, between them, no store
    // at all, which the next start would have opened as a new, empty one.
    if paths.store.exists() && exchange(&staging, &paths.store).is_ok() {
        // Restored from here on: should the old store not get its name, it stays where it is.
        let old = match fs::rename(&staging, &aside) {
            Ok(()) => aside,
            Err(e) => {
                tracing::warn!("the previous store stays at {}: {e}", staging.display());
                staging
            }
        };
        fsync_dir(paths.store.parent().unwrap_or(Path::new(".")))?;
        restored.replaced = Some(old);
        return Ok(restored);
    }
    let replaced = if paths.store.exists() {
        fs::rename(&paths.store, &aside)?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = fs::rename(&staging, &paths.store) {
        // Put back as it was, so that "nothing was changed" holds; else say where it is.
        let back = replaced
            .as_ref()
            .map_or(Ok(()), |aside| fs::rename(aside, &paths.store));
        let _ = fs::remove_dir_all(&staging);
        return Err(match (back, &replaced) {
            (Err(_), Some(aside)) => Error::failed_leaving(format!(
                "restoring {}: {e}; the previous store is at {} and no store is at {}: move it back before starting autoprov",
                file.display(),
                aside.display(),
                paths.store.display()
            )),
            _ => Error::from(e).context(format!("restoring {}", file.display())),
        });
    }
    fsync_dir(paths.store.parent().unwrap_or(Path::new(".")))?;
    restored.replaced = replaced;
    Ok(restored)
}

/// Builds a new store at `staging` from the backup `file`: how many records it held, and
/// when it was written.
fn import_into(
    staging: &Path,
    paths: &Paths,
    file: &Path,
    input: fs::File,
) -> Result<(u64, String, crate::store::Checked)> {
    // Left by a restore that stopped (a crash): it may be a store swapped out but not yet
    // renamed aside, so it is kept under a name of its own, never removed.
    if staging.exists() {
        let kept = paths.store.with_extension(format!(
            "restoring-left-{}",
            compact_timestamp(&now_rfc3339())
        ));
        fs::rename(staging, &kept)
            .with_context(|| format!("moving {} aside", staging.display()))?;
    }
    match SledStore::import(staging, std::io::BufReader::new(input)) {
        Ok(imported) => Ok(imported),
        Err(StoreError::Corrupt(e)) => {
            let _ = fs::remove_dir_all(staging);
            // A line that does not read (a flipped bit, a blank line) is found before the
            // SHA-256 could say so; its message alone ("missing field", "ends within its
            // record") had read as a format another build writes.
            let why = match e.contains("changed or damaged") {
                true => "",
                false => "; the file was changed or damaged, or is not an autoprov backup",
            };
            Err(Error::usage(format!(
                "reading backup {}: {e}{why}",
                file.display()
            )))
        }
        Err(e) => Err(Error::from(e).context(format!("restoring {}", file.display()))),
    }
}

/// Checks the store restored at `staging`, raises its counters to the replaced store's,
/// keeps what the replaced store audited after the backup (`before`) and records the
/// restore of `file` by `user` in its audit.
fn check_restored(
    staging: &Path,
    paths: &Paths,
    (file, user): (&Path, &str),
    before: Option<crate::store::StoreResult<Vec<crate::store::AuditEntry>>>,
    restored: &mut Restored,
) -> crate::store::StoreResult<()> {
    let now = now_rfc3339();
    let shown = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let s = SledStore::open(staging)?;
    s.verify_index()?;
    no_shared_active_email(&s)?;
    // Raised once (a sync) to the higher of what the replaced store gave out and what the
    // restored one holds.
    let (given, held) = (replaced_counters(paths), held_ids(&s)?);
    s.raise_counters(crate::store::watermark::Counters {
        audit_seq: given.audit_seq.max(held.audit_seq),
        file_id: given.file_id.max(held.file_id),
        rule_id: given.rule_id.max(held.rule_id),
    })?;
    let undone = format!("rolled back by the restore of {} at {now}", shown.display());
    (restored.rolled_back, restored.audit_unread) = keep_rolled_back(&s, before, &undone)?;
    restored.unknown = crate::restore_notes::unknown(&s, paths, &restored.created_at)?;
    s.append_audit(crate::store::AuditNote {
        at: now,
        user: user.to_string(),
        action: "restore".into(),
        detail: restore_detail(restored, &shown),
    })
}

/// Refuses a store in which two active accounts hold one email (SPEC §3: never two), as
/// sign-in folds it: restored, `auth check` had denied both until the next roster.
fn no_shared_active_email(s: &SledStore) -> crate::store::StoreResult<()> {
    let mut holders: std::collections::HashMap<String, String> = Default::default();
    let mut shared = None;
    s.scan_accounts(&mut |a| {
        if shared.is_some() || a.status != crate::core::accounts::Status::Active {
            return;
        }
        let email = crate::core::columns::fold(a.email).into_owned();
        if let Some(other) = holders.insert(email.clone(), a.employee_id.to_string()) {
            shared = Some(format!(
                "active accounts {other} and {} both hold the email {email} (SPEC §3: never two)",
                a.employee_id
            ));
        }
    })?;
    shared.map_or(Ok(()), |why| Err(StoreError::Corrupt(why)))
}

/// The highest rule id, file id and audit number the restored store `s` holds: its counters
/// are raised to them, whatever the backup said (a backup edited by hand without them had
/// given rule 1 out again over rule 1, and the audit's first numbers to new entries over
/// old ones; SPEC §2: never reused).
fn held_ids(s: &SledStore) -> crate::store::StoreResult<crate::store::watermark::Counters> {
    Ok(crate::store::watermark::Counters {
        audit_seq: s.audit(None)?.iter().map(|e| e.seq).max().unwrap_or(0),
        file_id: s.files()?.iter().map(|f| f.id).max().unwrap_or(0),
        rule_id: s.rules()?.iter().map(|r| r.id.0).max().unwrap_or(0),
    })
}

/// Keeps in `restored`'s audit the entries of `before` (the replaced store's) made after
/// the backup, each marked `undone`: their numbers, or why `before` could not be read.
fn keep_rolled_back(
    restored: &SledStore,
    before: Option<crate::store::StoreResult<Vec<crate::store::AuditEntry>>>,
    undone: &str,
) -> crate::store::StoreResult<(Vec<u64>, Option<String>)> {
    let before = match before {
        None => return Ok((Vec::new(), None)),
        Some(Err(e)) => return Ok((Vec::new(), Some(e.to_string()))),
        Some(Ok(before)) => before,
    };
    let backed_up = restored.audit(None)?;
    let last = backed_up.last().map_or(0, |e| e.seq);
    // The replaced store grew out of the backup when it holds the backup's last entry (its
    // number, time, user and action: an earlier restore may have marked its detail);
    // otherwise (a store started afresh, another installation's backup) its numbers say
    // nothing of what came after, and every entry the backup lacks is kept, under numbers
    // after the backup's (they had been dropped when numbered below its last).
    // An entry as it was written: a restore may have marked it, and renumbered it.
    let written = |e: &crate::store::AuditEntry| {
        (
            e.note.at.clone(),
            e.note.user.clone(),
            e.note.action.clone(),
            unmarked(e).to_string(),
        )
    };
    let grew_from = backed_up
        .last()
        .is_none_or(|l| (before.iter()).any(|e| e.seq == l.seq && written(e) == written(l)));
    let mut after: Vec<crate::store::AuditEntry> = match grew_from {
        true => before.into_iter().filter(|e| e.seq > last).collect(),
        false => {
            let known: std::collections::HashSet<_> = backed_up.iter().map(written).collect();
            (before.into_iter())
                .filter(|e| !known.contains(&written(e)))
                .zip(last + 1..)
                .map(|(e, seq)| crate::store::AuditEntry { seq, ..e })
                .collect()
        }
    };
    // Only what changed rights or rules is marked, once: a dry run, a rejected file, a
    // refused approval or a backup changed nothing, and an entry an earlier restore marked
    // was undone by that one (each had been counted as a change this restore undid). A mark
    // an older build wrote into the detail is not trusted: a rule's condition can end so.
    let changes =
        |e: &crate::store::AuditEntry| e.rolled_back.is_none() && changed_rights(&e.note.action);
    let mut marked = Vec::new();
    for e in after.iter_mut().filter(|e| changes(e)) {
        e.rolled_back = Some(undone.to_string());
        marked.push(e.seq);
    }
    restored.keep_audit_entries(&after)?;
    // Their numbers are given out no more (without the replaced store's watermark, the
    // restore's own entry had been written over the first of them).
    if let Some(newest) = after.last() {
        restored.raise_counters(crate::store::watermark::Counters {
            audit_seq: newest.seq,
            ..Default::default()
        })?;
    }
    Ok((marked, None))
}

/// Whether an entry of `action` records a change of admin rights or of the rules: the
/// rules' and admins' commands, a file applied or approved, a re-evaluation that changed
/// accounts (`sync`, `sync --force`; not `sync held`, which changed nothing).
fn changed_rights(action: &str) -> bool {
    action.starts_with("rules ")
        || action.starts_with("admins ")
        || matches!(
            action,
            "sync" | "sync --force" | "file applied" | "files approve"
        )
}

/// `e`'s detail without the mark older builds wrote into it (` [rolled back by the restore
/// of FILE at TIME]` at its end).
fn unmarked(e: &crate::store::AuditEntry) -> &str {
    let d = e.note.detail.as_str();
    match d.rfind(" [rolled back by the restore of ") {
        Some(i) if d.ends_with(']') => &d[..i],
        _ => d,
    }
}

/// The replaced store's audit, for [`restore`] to keep what it recorded after the backup:
/// `None` when there is no store. Read before the store is locked, as it is, and left as
/// the store's owner would leave it (what sled writes at an open is given back to that
/// owner: a restore that then failed had left a root-owned snapshot the daemon could not
/// open); a store so damaged that sled panics reading it is an error, not a crash.
pub fn audit_before(
    paths: &Paths,
) -> Option<crate::store::StoreResult<Vec<crate::store::AuditEntry>>> {
    if !paths.store.join("db").exists() {
        return None;
    }
    let owner = owner_of(paths);
    let read =
        std::panic::catch_unwind(|| SledStore::audit_at(&paths.store)).unwrap_or_else(|_| {
            Err(StoreError::Corrupt(
                "sled failed reading it (a panic)".into(),
            ))
        });
    if let Err(e) = owner.and_then(|owner| give_to_owner(&paths.store, &owner)) {
        tracing::warn!(
            store = %paths.store.display(),
            "giving the store back to its owner after reading its audit: {e}"
        );
    }
    Some(read)
}

/// The restore's audit entry: what was restored, and what the store replaced had that the
/// backup has not.
/// Ascending numbers as runs: `4–6, 9` (an entry kept unmarked between marked ones is not
/// in a run: `4–6` had read as three changes where two were). Past 20 runs, `…`.
fn runs(numbers: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &n in numbers {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => runs.push((n, n)),
        }
    }
    let mut shown: Vec<String> = (runs.iter().take(20))
        .map(|&(a, b)| match a == b {
            true => a.to_string(),
            false => format!("{a}–{b}"),
        })
        .collect();
    if runs.len() > 20 {
        shown.push("…".into());
    }
    shown.join(", ")
}

fn restore_detail(r: &Restored, shown: &Path) -> String {
    let mut detail = format!(
        "restored {} records from {} (a backup of {})",
        r.records,
        shown.display(),
        r.created_at
    );
    match (&r.audit_unread, r.rolled_back.is_empty()) {
        (Some(why), _) => {
            detail += &format!(
                "; the replaced store's audit could not be read ({why}): what it recorded after \
             the backup is only in the store kept aside"
            )
        }
        (None, false) => {
            detail += &format!(
                "; the {} changes the replaced store audited after it ({}) are kept in the \
                 audit, marked rolled back",
                r.rolled_back.len(),
                runs(&r.rolled_back)
            )
        }
        _ => {}
    }
    for note in r.notes() {
        detail += "; ";
        detail += &note;
    }
    detail
}

/// Swaps the folders `a` and `b` in one step (Linux `renameat2` with `RENAME_EXCHANGE`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
}

/// The owner (uid, gid) a restored store gets: that of the store it replaces, else of the
/// data dir.
fn owner_of(paths: &Paths) -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // Root acting as the data dir's owner (`data_owner::act_as`): what it writes is the
    // owner's already, and it is the owner the daemon runs as. A store of root's that an
    // older build left there had made the restore fail (the owner may not give it to root).
    let (uid, euid) = (nix::unistd::getuid(), nix::unistd::geteuid());
    if uid.is_root() && !euid.is_root() {
        return Ok((euid.as_raw(), nix::unistd::getegid().as_raw()));
    }
    let meta = match fs::metadata(&paths.store) {
        Ok(meta) => meta,
        Err(_) => fs::metadata(paths.store.parent().unwrap_or(Path::new(".")))?,
    };
    Ok((meta.uid(), meta.gid()))
}

/// Gives `dir` and everything in it to `owner` when it is not ours already: `restore` run
/// by root acts as the data dir's owner, but the store it replaces may have been another's
/// (and a store left root's is one the daemon, running as its own user, cannot open).
/// Links are changed, never followed.
fn give_to_owner(dir: &Path, owner: &(u32, u32)) -> std::io::Result<()> {
    use nix::unistd::{Gid, Uid, fchownat};
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = *owner;
    let meta = fs::symlink_metadata(dir)?;
    if (meta.uid(), meta.gid()) != (uid, gid) {
        fchownat(
            nix::fcntl::AT_FDCWD,
            dir,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| {
            std::io::Error::other(format!(
                "{} cannot be given to uid {uid}, gid {gid}, who own the store it replaces \
                 (run restore as root, or as that user): {e}",
                dir.display()
            ))
        })?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(dir)? {
            give_to_owner(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held sync changed nothing: a restore does not count it among the changes it
    /// rolled back (it had sent the admin to check every account it would have changed).
    #[test]
    fn a_held_sync_is_no_change_a_restore_rolls_back() {
        for action in [
            "sync",
            "sync --force",
            "file applied",
            "files approve",
            "rules add",
        ] {
            assert!(changed_rights(action), "{action}");
        }
        for action in [
            "sync held",
            "file held",
            "file rejected",
            "backup",
            "restore",
        ] {
            assert!(!changed_rights(action), "{action}");
        }
    }
    use crate::store::{AuditNote, MemoryStore};

    fn note(detail: &str) -> AuditNote {
        AuditNote {
            at: "2026-12-04T00:00:00Z".into(),
            user: "test".into(),
            action: "rules edit".into(),
            detail: detail.into(),
        }
    }

    /// `backup FILE` writes only a new file: an existing file, or a symlink to one, is left
    /// as it was (a typo run as root had replaced a system file, a device even).
    #[test]
    fn a_backup_is_never_written_over_anything() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new();
        let existing = dir.path().join("notes.txt");
        fs::write(&existing, b"keep me").unwrap();
        let link = dir.path().join("link.backup");
        std::os::unix::fs::symlink(&existing, &link).unwrap();
        for path in [&existing, &link] {
            let err = write(&store, path).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Refused(crate::api::error::Blocked::Exists { .. })
                ),
                "{err}"
            );
        }
        assert_eq!(fs::read(&existing).unwrap(), b"keep me");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let new = dir.path().join("new.backup");
        write(&store, &new).unwrap();
        assert!(fs::metadata(&new).unwrap().len() > 0);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 3, "no temporary file left: {left:?}");
    }

    /// A restored store's counters are at least its highest rule id, file id and audit
    /// number, whatever the backup says of them: a backup without its counters (edited by
    /// hand, in the older form without a checksum) had given rule 1 out again, over rule 1,
    /// and new audit entries the numbers of old ones, over them.
    #[test]
    fn a_restore_gives_out_no_id_the_backup_holds_whatever_its_counters_say() {
        use crate::core::rules::RuleId;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let backup = dir.path().join("b.backup");
        {
            let store = SledStore::open(&paths.store).unwrap();
            for _ in 0..2 {
                let id = store.next_rule_id().unwrap();
                let rule = crate::store::samples::rule(id.0);
                store.put_rule(&rule, note("rules add")).unwrap();
            }
            write(&store, &backup).unwrap();
        }
        fs::remove_dir_all(&paths.store).unwrap();
        let text = fs::read_to_string(&backup).unwrap();
        // The counters (`next_…` in the meta tree) and the checksum taken out.
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(r#""key":"6e6578745f"#) && !l.starts_with(r#"{"end""#))
            .collect();
        assert!(
            kept.len() + 3 <= text.lines().count(),
            "the counters and the end taken out"
        );
        // As a version 1 backup had it (a version 2 end line always has its checksum).
        let kept = kept
            .join("\n")
            .replacen("\"version\":2", "\"version\":1", 1);
        let edited = format!("{kept}\n{{\"end\":{}}}\n", kept.lines().count() - 1);
        fs::write(&backup, edited).unwrap();
        let input = fs::File::open(&backup).unwrap();
        let r = restore(&paths, (&backup, input), "root", None).unwrap();
        assert_eq!(r.checked, crate::store::Checked::No);
        assert!(
            r.notes()[0].contains("restored unchecked"),
            "{:?}",
            r.notes()
        );
        let store = SledStore::open(&paths.store).unwrap();
        assert_eq!(store.next_rule_id().unwrap(), RuleId(3));
        let audit = store.audit(None).unwrap();
        let seqs: Vec<u64> = audit.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3], "the restore's entry after the two kept");
        assert_eq!(audit[2].note.action, "restore");
    }

    /// A restore keeps what the replaced store audited after the backup, marked rolled back
    /// under its own numbers before the restore's entry, and names the files held after the
    /// backup, which the restored ledger does not know (each had been left in held/ with
    /// nobody able to decide it, and no word said).
    #[test]
    fn a_restore_keeps_the_audit_after_the_backup_and_names_unknown_held_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let backup = dir.path().join("b.backup");
        {
            let store = SledStore::open(&paths.store).unwrap();
            store.append_audit(note("before")).unwrap();
            write(&store, &backup).unwrap();
            store.append_audit(note("granted after")).unwrap();
            store.append_audit(note("revoked after")).unwrap();
            store
                .append_audit(AuditNote {
                    action: "backup".into(),
                    ..note("wrote a backup")
                })
                .unwrap();
        }
        // Its record of the numbers it gave out is gone (one of the damages a restore is
        // for): the kept entries' numbers are still not given out again.
        fs::remove_file(paths.store.join("autoprov.watermark")).unwrap();
        let held = paths.folder("held");
        fs::create_dir_all(&held).unwrap();
        for name in [
            "29991207T000000Z_x.csv",
            "29991207T000000Z_x.csv.report.json",
        ] {
            fs::write(held.join(name), b"x").unwrap();
        }
        let before = Some(SledStore::audit_at(&paths.store));
        let r = restore(
            &paths,
            (&backup, fs::File::open(&backup).unwrap()),
            "root",
            before,
        )
        .unwrap();
        assert_eq!(r.rolled_back, [2, 3], "the backup written is no change");
        assert_eq!(r.unknown.held, ["29991207T000000Z_x.csv"]);
        assert!(r.replaced.is_some());
        let store = SledStore::open(&paths.store).unwrap();
        let audit: Vec<(u64, String)> = (store.audit(None).unwrap().into_iter())
            .map(|e| (e.seq, e.note.detail))
            .collect();
        assert_eq!(audit.len(), 5, "{audit:?}");
        assert_eq!(audit[0], (1, "before".to_string()));
        let marks: Vec<Option<String>> = (store.audit(None).unwrap().into_iter())
            .map(|e| e.rolled_back)
            .collect();
        assert_eq!(audit[1], (2, "granted after".to_string()));
        assert_eq!(audit[2], (3, "revoked after".to_string()));
        for mark in &marks[1..3] {
            let mark = mark.as_deref().unwrap_or_default();
            assert!(mark.starts_with("rolled back by the restore of "), "{mark}");
        }
        assert_eq!(marks[0], None, "before the backup");
        assert_eq!(marks[3], None, "the backup written");
        assert_eq!(audit[3], (4, "wrote a backup".to_string()));
        assert_eq!(audit[4].0, 5, "{audit:?}");
        let detail = &audit[4].1;
        assert!(detail.contains("(2–3) are kept"), "{detail}");
        assert!(detail.contains("29991207T000000Z_x.csv"), "{detail}");
    }

    /// A store that did not grow out of the backup (started afresh, its numbers from 1):
    /// every entry of it the backup lacks is kept, marked, numbered after the backup's (they
    /// had been dropped, numbered below the backup's last).
    #[test]
    fn a_restore_over_a_store_started_afresh_keeps_its_audit() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let backup = dir.path().join("b.backup");
        {
            let store = SledStore::open(&paths.store).unwrap();
            for n in ["one", "two", "three"] {
                store.append_audit(note(n)).unwrap();
            }
            write(&store, &backup).unwrap();
        }
        fs::remove_dir_all(&paths.store).unwrap();
        {
            let store = SledStore::open(&paths.store).unwrap();
            store.append_audit(note("granted afresh")).unwrap();
            store.append_audit(note("revoked afresh")).unwrap();
            // Its third entry has the backup's last's number, time, user and action (two
            // stores set up in the same second): only its detail tells them apart.
            store.append_audit(note("third afresh")).unwrap();
        }
        let before = Some(SledStore::audit_at(&paths.store));
        let r = restore(
            &paths,
            (&backup, fs::File::open(&backup).unwrap()),
            "root",
            before,
        )
        .unwrap();
        assert_eq!(r.rolled_back, [4, 5, 6]);
        let store = SledStore::open(&paths.store).unwrap();
        let audit: Vec<(u64, String)> = (store.audit(None).unwrap().into_iter())
            .map(|e| (e.seq, e.note.detail))
            .collect();
        assert_eq!(audit.len(), 7, "{audit:?}");
        assert_eq!(audit[2], (3, "three".to_string()));
        let marked: Vec<(u64, String)> = (store.audit(None).unwrap().into_iter())
            .filter(|e| e.rolled_back.is_some())
            .map(|e| (e.seq, e.note.detail))
            .collect();
        let afresh = ["granted afresh", "revoked afresh", "third afresh"];
        assert_eq!(
            marked,
            [4, 5, 6].map(|n| (n, afresh[n as usize - 4].to_string()))
        );
        assert_eq!(audit[6].0, 7, "{audit:?}");
    }

    /// Only entries that changed rights or rules are marked, in a field of their own, and
    /// once: a dry run, a rejected file and a refused approval had been counted as changes
    /// the restore undid, and so had entries an earlier restore marked. A rule whose
    /// condition ends in the mark's words is marked like any other, its detail left alone.
    #[test]
    fn a_restore_marks_only_changes_of_rights_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let backup = dir.path().join("b.backup");
        let forged = "10  enabled  \"x\" -> Super Admin  when department != x [rolled back \
                      by the restore of /b.backup at 2026-12-07T14:51:32Z]";
        {
            let store = SledStore::open(&paths.store).unwrap();
            store.append_audit(note("before")).unwrap();
            write(&store, &backup).unwrap();
            for (action, detail) in [
                ("file dry_run", "file 2 x.dryrun.csv"),
                ("file rejected", "file 3 y.csv"),
                ("files approve refused", "file 4 z.csv"),
                ("rules add", forged),
                ("file applied", "file 5 w.csv"),
            ] {
                let entry = AuditNote {
                    action: action.into(),
                    detail: detail.into(),
                    ..note("")
                };
                store.append_audit(entry).unwrap();
            }
        }
        let restored = |paths: &Paths| {
            let before = Some(SledStore::audit_at(&paths.store));
            restore(
                paths,
                (&backup, fs::File::open(&backup).unwrap()),
                "root",
                before,
            )
            .unwrap()
        };
        assert_eq!(restored(&paths).rolled_back, [5, 6]);
        let audit = SledStore::open(&paths.store).unwrap().audit(None).unwrap();
        assert_eq!(audit[4].note.detail, forged, "its detail as written");
        let marked: Vec<u64> = (audit.iter())
            .filter(|e| e.rolled_back.is_some())
            .map(|e| e.seq)
            .collect();
        assert_eq!(marked, [5, 6]);
        assert!(restored(&paths).rolled_back.is_empty(), "marked once");
        assert_eq!(runs(&[5, 6]), "5–6");
        assert_eq!(runs(&[2, 4, 5, 6, 9]), "2, 4–6, 9");
        assert!(runs(&(0..100).step_by(2).collect::<Vec<_>>()).ends_with("38, …"));
    }

    /// Restoring a newer backup after an older one (undoing a restore): the store grew out
    /// of the newer backup, though the first restore marked its last entry; nothing is kept
    /// twice or marked again (it had been taken for a store started afresh).
    #[test]
    fn a_restore_undoing_a_restore_keeps_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let (b1, b2) = (dir.path().join("b1.backup"), dir.path().join("b2.backup"));
        {
            let store = SledStore::open(&paths.store).unwrap();
            store.append_audit(note("one")).unwrap();
            write(&store, &b1).unwrap();
            store.append_audit(note("two")).unwrap();
            store.append_audit(note("three")).unwrap();
            write(&store, &b2).unwrap();
        }
        let before = Some(SledStore::audit_at(&paths.store));
        assert_eq!(
            restore(&paths, (&b1, fs::File::open(&b1).unwrap()), "root", before)
                .unwrap()
                .rolled_back,
            [2, 3]
        );
        let before = Some(SledStore::audit_at(&paths.store));
        let r = restore(&paths, (&b2, fs::File::open(&b2).unwrap()), "root", before).unwrap();
        assert!(r.rolled_back.is_empty(), "{:?}", r.rolled_back);
        let store = SledStore::open(&paths.store).unwrap();
        let audit: Vec<(u64, String)> = (store.audit(None).unwrap().into_iter())
            .map(|e| (e.seq, e.note.detail))
            .collect();
        assert_eq!(audit.len(), 5, "{audit:?}");
        assert_eq!(audit[1], (2, "two".to_string()));
        assert_eq!(audit[2], (3, "three".to_string()));
        assert_eq!(audit[3].0, 4, "the first restore's entry: {audit:?}");
        assert_eq!(audit[4].0, 5, "{audit:?}");
    }

    /// The wrong backup restored over a store started afresh, then the right one: the
    /// right one's entries, renumbered and marked by the first restore, are known for what
    /// they were written as, and not kept a second time, marked rolled back beside their
    /// live copies.
    #[test]
    fn restoring_the_right_backup_after_the_wrong_one_keeps_each_entry_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let (old, new) = (dir.path().join("old.backup"), dir.path().join("new.backup"));
        for (backup, notes) in [(&old, ["old a", "old b"]), (&new, ["new x", "new y"])] {
            let _ = fs::remove_dir_all(&paths.store);
            let store = SledStore::open(&paths.store).unwrap();
            for n in notes {
                store.append_audit(note(n)).unwrap();
            }
            write(&store, backup).unwrap();
        }
        let before = Some(SledStore::audit_at(&paths.store));
        assert_eq!(
            restore(
                &paths,
                (&old, fs::File::open(&old).unwrap()),
                "root",
                before
            )
            .unwrap()
            .rolled_back,
            [3, 4]
        );
        let before = Some(SledStore::audit_at(&paths.store));
        let r = restore(
            &paths,
            (&new, fs::File::open(&new).unwrap()),
            "root",
            before,
        )
        .unwrap();
        assert_eq!(r.rolled_back, [3, 4], "old a and old b");
        let store = SledStore::open(&paths.store).unwrap();
        let details: Vec<String> = (store.audit(None).unwrap().into_iter())
            .map(|e| e.note.detail)
            .collect();
        let x: Vec<&String> = details.iter().filter(|d| d.starts_with("new x")).collect();
        assert_eq!(x, ["new x"], "{details:?}");
        assert_eq!(details.len(), 6, "{details:?}");
    }

    /// A backup the daemon's stop comes to is abandoned, nothing of it left (a stop had
    /// waited for the whole backup of a large store, past the unit's stop budget).
    #[test]
    fn a_backup_is_abandoned_when_the_daemon_stops() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = SledStore::open(&paths.store).unwrap();
        store.append_audit(note("one")).unwrap();
        let stopping = std::sync::atomic::AtomicBool::new(false);
        let stop = || stopping.load(std::sync::atomic::Ordering::Relaxed);
        let now = "2026-12-07T16:00:00Z";
        assert!(matches!(
            rotate_until(&store, &paths, now, &stop),
            Ok(Rotated::Written(_))
        ));
        stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        store.append_audit(note("two")).unwrap();
        let err = rotate_until(&store, &paths, "2026-12-07T17:00:00Z", &stop).unwrap_err();
        assert!(
            format!("{err:#}").contains("abandoned: the daemon is stopping"),
            "{err:#}"
        );
        assert_eq!(files(&paths).len(), 1, "{:?}", files(&paths));
    }

    fn files(paths: &Paths) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&paths.backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// An automatic backup that cannot fit (less free space than the newest one's size, a
    /// tenth and 64 MiB) is refused before anything is written: it had filled the disk.
    #[test]
    fn a_backup_that_cannot_fit_writes_nothing() {
        if !crate::util::test_as_root("it mounts a tmpfs") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        fs::create_dir_all(&paths.backups).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=80m", "tmpfs"])
            .arg(&paths.backups)
            .status()
            .unwrap();
        assert!(mounted.success());
        let newest = paths.backups.join("autoprov-20261201T000000Z.backup");
        fs::write(&newest, vec![b'x'; 20 << 20]).unwrap();
        let store = MemoryStore::new();
        let rotated = rotate(&store, &paths, &|| false).map(|_| ());
        let left: Vec<_> = fs::read_dir(&paths.backups)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        let _ = std::process::Command::new("umount")
            .arg(&paths.backups)
            .status();
        // Unmounted first: an assertion failing before had left the tmpfs mounted.
        let err = rotated.unwrap_err().to_string();
        assert!(err.contains("not enough free space"), "{err}");
        assert_eq!(left.len(), 1, "nothing written: {left:?}");
    }

    #[test]
    fn an_unchanged_store_is_not_backed_up_again_and_three_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = MemoryStore::new();
        store.append_audit(note("first")).unwrap();
        let at = |s: u32| format!("2026-12-04T10:00:{s:02}Z");
        let first = rotate_at(&store, &paths, &at(1)).unwrap();
        let first_path = paths.backups.join("autoprov-20261204T100001Z.backup");
        assert_eq!(first, Rotated::Written(first_path.clone()));
        // Same content, a later time: nothing written, and no hidden file left behind.
        assert_eq!(
            rotate_at(&store, &paths, &at(2)).unwrap(),
            Rotated::Unchanged(first_path.clone())
        );
        assert_eq!(files(&paths), ["autoprov-20261204T100001Z.backup"]);
        // A change is backed up; the oldest beyond three goes.
        for s in 3..7 {
            store.append_audit(note(&format!("change {s}"))).unwrap();
            assert!(matches!(
                rotate_at(&store, &paths, &at(s)).unwrap(),
                Rotated::Written(_)
            ));
        }
        assert_eq!(
            files(&paths),
            [
                "autoprov-20261204T100004Z.backup",
                "autoprov-20261204T100005Z.backup",
                "autoprov-20261204T100006Z.backup"
            ]
        );
        // The newest restores: a complete backup with its header, the change included.
        let newest =
            fs::read_to_string(paths.backups.join("autoprov-20261204T100006Z.backup")).unwrap();
        assert!(newest.starts_with('{') && newest.contains("2026-12-04T10:00:06Z"));
        assert!(newest.contains("change 6") && newest.trim_end().ends_with('}'));
    }

    /// Backups named for a clock that ran ahead (corrected since) do not push out the one
    /// just written; the hidden parts of interrupted backups are removed.
    #[test]
    fn the_backup_just_written_is_kept_and_unfinished_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = MemoryStore::new();
        fs::create_dir_all(&paths.backups).unwrap();
        let ahead = [
            "autoprov-20990101T000000Z.backup",
            "autoprov-20990102T000000Z.backup",
            "autoprov-20990103T000000Z.backup",
        ];
        for name in ahead {
            fs::write(paths.backups.join(name), "old").unwrap();
        }
        let unfinished = ".autoprov-20261204T095959Z.backup.tmp";
        fs::write(paths.backups.join(unfinished), "part").unwrap();
        store.append_audit(note("change")).unwrap();
        let written = rotate_at(&store, &paths, "2026-12-04T10:00:00Z").unwrap();
        let path = paths.backups.join("autoprov-20261204T100000Z.backup");
        assert_eq!(written, Rotated::Written(path.clone()));
        assert!(path.exists(), "{:?}", files(&paths));
        // Dated ahead: left alone, never named as the newest to restore.
        assert_eq!(
            files(&paths),
            [
                "autoprov-20261204T100000Z.backup",
                "autoprov-20990101T000000Z.backup",
                "autoprov-20990102T000000Z.backup",
                "autoprov-20990103T000000Z.backup",
            ]
        );
        assert!(
            advice(&paths).contains("autoprov-20261204T100000Z.backup"),
            "{}",
            advice(&paths)
        );
    }

    /// A damaged backup (restore refuses it) does not count among the three kept: three
    /// that restore are left, and the damaged one newer than the oldest of them stays.
    #[test]
    fn only_intact_backups_count_among_the_three_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = MemoryStore::new();
        let at = |s: u32| format!("2026-12-04T10:00:{s:02}Z");
        for s in 1..4 {
            store.append_audit(note(&format!("change {s}"))).unwrap();
            rotate_at(&store, &paths, &at(s)).unwrap();
        }
        let damaged = paths.backups.join("autoprov-20261204T100003Z.backup");
        let mut bytes = fs::read(&damaged).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        fs::write(&damaged, bytes).unwrap();
        store.append_audit(note("change 4")).unwrap();
        rotate_at(&store, &paths, &at(4)).unwrap();
        assert_eq!(
            files(&paths),
            [
                "autoprov-20261204T100001Z.backup",
                "autoprov-20261204T100002Z.backup",
                "autoprov-20261204T100003Z.backup",
                "autoprov-20261204T100004Z.backup",
            ],
            "the damaged one is not one of the three"
        );
        store.append_audit(note("change 5")).unwrap();
        rotate_at(&store, &paths, &at(5)).unwrap();
        assert_eq!(
            files(&paths),
            [
                "autoprov-20261204T100002Z.backup",
                "autoprov-20261204T100003Z.backup",
                "autoprov-20261204T100004Z.backup",
                "autoprov-20261204T100005Z.backup",
            ]
        );
        // The newest damaged too: a damaged store's advice names the newest that restores.
        let newest = paths.backups.join("autoprov-20261204T100005Z.backup");
        fs::write(&newest, "damaged").unwrap();
        let told = advice(&paths);
        assert!(
            told.contains("(the one newer than it does not read back intact)")
                && told.ends_with("autoprov-20261204T100004Z.backup`"),
            "{told}"
        );
    }

    /// A folder or a FIFO under an automatic backup's name is no backup: not named as the
    /// newest to restore, not counted among the three, not compared (a FIFO's check had
    /// waited for a writer for ever).
    #[test]
    fn only_files_under_automatic_names_are_backups() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = MemoryStore::new();
        store.append_audit(note("first")).unwrap();
        let at = |s: u32| format!("2026-12-04T10:00:{s:02}Z");
        rotate_at(&store, &paths, &at(1)).unwrap();
        let folder = paths.backups.join("autoprov-20261204T100002Z.backup");
        fs::create_dir(&folder).unwrap();
        let fifo = paths.backups.join("autoprov-20261204T100003Z.backup");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let first = paths.backups.join("autoprov-20261204T100001Z.backup");
        assert_eq!(automatic_at(&paths, &at(4)), std::slice::from_ref(&first));
        assert_eq!(
            rotate_at(&store, &paths, &at(4)).unwrap(),
            Rotated::Unchanged(first)
        );
        assert_eq!(intact_digest(&fifo), None);
    }

    #[test]
    fn only_automatic_names_are_rotated_named_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let store = MemoryStore::new();
        fs::create_dir_all(&paths.backups).unwrap();
        // What an org admin may write there, and names that only look like ours.
        let others = [
            "manual.backup",
            "zz.backup",
            "autoprov-latest.backup",
            "autoprov-20991231T235959Z.backup.tmp",
        ];
        for name in others {
            fs::write(paths.backups.join(name), "old").unwrap();
        }
        assert!(advice(&paths).starts_with("no automatic backup exists"));
        for s in 1..6 {
            store.append_audit(note(&format!("change {s}"))).unwrap();
            let at = format!("2026-12-04T10:00:{s:02}Z");
            rotate_at(&store, &paths, &at).unwrap();
        }
        let mut want: Vec<&str> = others.to_vec();
        want.extend([
            "autoprov-20261204T100003Z.backup",
            "autoprov-20261204T100004Z.backup",
            "autoprov-20261204T100005Z.backup",
        ]);
        want.sort();
        assert_eq!(
            files(&paths),
            want,
            "three automatic kept, the others left alone"
        );
        assert!(
            advice(&paths).contains("autoprov-20261204T100005Z.backup"),
            "{}",
            advice(&paths)
        );
    }

    /// The records alone, of an intact backup: the header and the end line (whose SHA-256
    /// covers the header's time) differ from one backup of the same store to the next; a
    /// backup whose header or end line was damaged has none (a new one is written).
    #[test]
    fn an_intact_backups_digest_is_its_records_and_a_damaged_one_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new();
        store.append_audit(note("first")).unwrap();
        let paths = Paths::new(dir.path());
        let at = |s: u32| format!("2026-12-04T10:00:{s:02}Z");
        let (a, b) = (paths.backups.join("a"), paths.backups.join("b"));
        fs::create_dir_all(&paths.backups).unwrap();
        export_hashed(&store, &a, &at(1), &|| false).unwrap();
        let digest = export_hashed(&store, &b, &at(2), &|| false).unwrap();
        assert_eq!(intact_digest(&a), Some(digest));
        assert_eq!(intact_digest(&b), Some(digest));
        let text = fs::read_to_string(&a).unwrap();
        let damaged = |edit: &dyn Fn(&str) -> String| {
            fs::write(&b, edit(&text)).unwrap();
            intact_digest(&b)
        };
        assert_eq!(
            damaged(&|t| t.replacen("10:00:01", "10:00:09", 1)),
            None,
            "header"
        );
        let end = text.lines().last().unwrap().to_string();
        let flipped = end.replacen("\"sha256\":\"", "\"sha256\":\"0", 1);
        assert_eq!(damaged(&|t| t.replace(&end, &flipped)), None, "end line");
        assert_eq!(damaged(&|t| t[..t.len() - 3].to_string()), None, "cut");
        assert_eq!(
            damaged(&|t| t.replacen("first", "firsT", 1)),
            None,
            "a record"
        );
        // As version 1 wrote it (the SHA-256 of the records alone): intact, and with a
        // header restore refuses (its format, version or layout changed), not.
        let records: String = (text.lines().skip(1))
            .filter(|l| !l.starts_with("{\"end\""))
            .map(|l| format!("{l}\n"))
            .collect();
        let count = records.lines().count();
        let sha = <sha2::Sha256 as sha2::Digest>::digest(records.as_bytes());
        let sha: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        let header = text
            .lines()
            .next()
            .unwrap()
            .replacen("\"version\":2", "\"version\":1", 1);
        let v1 =
            |header: &str| format!("{header}\n{records}{{\"end\":{count},\"sha256\":\"{sha}\"}}\n");
        assert_eq!(damaged(&|_| v1(&header)), Some(digest), "version 1");
        for (from, to) in [
            ("autoprov-backup", "autoprov-backuq"),
            ("\"version\":1", "\"version\":0"),
        ] {
            assert_eq!(
                damaged(&|_| v1(&header.replacen(from, to, 1))),
                None,
                "{to}"
            );
        }
    }

    /// A store in which two active accounts hold one email (any letter case) is refused:
    /// restored, sign-in had denied both until the next roster. One inactive is not.
    #[test]
    fn two_active_accounts_with_one_email_are_refused() {
        use crate::core::accounts::Status;
        use crate::store::samples::{account, commit_accounts};
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let (a, mut b, mut c) = (account("E1"), account("E2"), account("E3"));
        b.email = "E1@X.io".into();
        c.email = "e1@x.io".into();
        c.status = Status::Inactive;
        commit_accounts(&s, vec![a, c]);
        assert!(no_shared_active_email(&s).is_ok());
        commit_accounts(&s, vec![b]);
        let err = no_shared_active_email(&s).unwrap_err().to_string();
        assert!(
            err.contains("E1 and E2 both hold the email e1@x.io"),
            "{err}"
        );
    }
}
