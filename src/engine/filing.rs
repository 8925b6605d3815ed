//! Filing: reports staged before a commit and moved beside their file after it, names in
//! the result folders, files received into inbox/, recovery at start-up, and the ledger's
//! bookkeeping of files fetched by poll mode.

use super::pipeline::{Evaluation, Pipeline};
use super::roster_file::{FileBytes, HeldFile, UnnamedCopy};
use crate::api::error::{Context, Error, Result};
use crate::api::report_out::{write_json, write_text};
use crate::core::parallel::join;
use crate::core::report::Report;
use crate::core::updates::Updates;
use crate::layout::{DRY_RUN_SUFFIX, FOLDERS, is_ignored};
use crate::store::{Commit, FileEntry, FileStatus, RemoteOrigin, Store, StoreError};
use crate::util::{crash_point, free_name, fsync_dir, sha256_file, write_atomic_with};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What [`Pipeline::receive`] files into inbox/: what a reader gives, or the file bytes were
/// read (and hashed) from, which are then processed without reading the copy back; with
/// them, a copy of that file made while they were read, if one was.
pub enum Content<'a> {
    Stream(&'a mut dyn Read),
    Read(FileBytes, Option<UnnamedCopy>),
}

/// What each change adds to the free space a file's reports need to be staged while its
/// commit writes ([`Pipeline::room_for_both`]; a first import's reports take ~360 bytes a
/// change, its store ~90).
const ROOM_PER_CHANGE: u64 = 1 << 10;

/// The longest original name a filed name keeps whole: `<16-byte time>_<name>-NNNN` and its
/// `.report.json` stay within the 255 bytes a file name may have. A longer name (an SFTP
/// upload may have 255 bytes) had made the report's rename fail after the commit, and the
/// file then blocked every file after it.
const MAX_FILED_NAME: usize = 255 - 16 - 1 - 5 - ".report.json".len();

/// How the hidden copy [`Pipeline::receive`] writes into inbox/ starts.
const RECEIVING: &str = ".receive-";

/// How the hidden name a poll downloads a file to starts (`.fetch-<name>.part`).
pub const FETCHING: &str = ".fetch-";

impl<S: Store> Pipeline<S> {
    /// Whether [`Self::recover`] has anything to finish in the store: a file committed but
    /// not moved, or a download registered.
    pub fn recovery_pending(&self) -> Result<bool> {
        let moving = self.store.files()?.iter().any(|f| f.pending_move.is_some());
        Ok(moving || !self.store.remote_registrations()?.is_empty())
    }

    /// Finishes the filing of files committed before a crash.
    pub fn recover(&self) -> Result<()> {
        let pending: Vec<FileEntry> = (self.store.files()?.into_iter())
            .filter(|entry| entry.pending_move.is_some())
            .collect();
        if !pending.is_empty() {
            self.durable_before_filing()?;
        }
        for entry in pending {
            tracing::info!(file = %entry.stored_as, "finishing the filing of a file committed before a restart");
            match self.finish_filing(&entry, None) {
                Ok(()) => self.announce_filed(&entry),
                // Its outcome is committed; only its move is not done. The daemon starts all
                // the same and each scan tries again (its observer hears why): stopping here
                // had the daemon exit 5 at every start, saying "nothing was changed", with
                // the SFTP server, the web section and sign-ins down.
                Err(e) => tracing::error!(
                    file = %entry.stored_as,
                    "finishing the filing of a committed file failed: {e:#}; files wait in \
                     inbox/ until it is filed, tried again at every scan"
                ),
            }
        }
        // Poll mode: a download registered but not renamed into inbox/ before a crash is
        // completed (it was fsynced before registering), or forgotten when its bytes are gone,
        // so the remote file is fetched again.
        let inbox = self.paths.folder("inbox");
        for (name, origin) in self.store.remote_registrations()? {
            if inbox.join(&name).exists() {
                continue;
            }
            let part = inbox.join(format!("{FETCHING}{name}.part"));
            let completed = part.exists()
                && crate::util::sha256_file(&part).is_ok_and(|sha| sha == origin.sha256)
                && crate::util::rename_noreplace(&part, &inbox.join(&name)).is_ok();
            if !completed {
                tracing::info!(remote = %origin.name, "forgetting a download that never reached inbox/; it will be fetched again");
                let _ = fs::remove_file(&part);
                self.store.unregister_remote(&name)?;
            }
        }
        // A `process` killed while it copied its file into inbox/ left its hidden copy, a
        // poll its download before registering it (this store is open here, so neither is
        // being written now).
        for item in fs::read_dir(&inbox)? {
            let path = item?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let ours = [RECEIVING, FETCHING, crate::layout::WATCH_COPY];
            if ours.iter().any(|p| name.starts_with(p)) && name.ends_with(".part") {
                tracing::info!(path = %path.display(), "removing the partial copy of a file whose `process` or download was stopped");
                fs::remove_file(&path)?;
            }
        }
        // The record of a roster staged for its commit, left by a crash before its rename
        // (never used: only a record renamed after its commit is).
        let staged = super::resync::staged_path(&self.paths.store);
        if staged.exists() {
            tracing::info!(path = %staged.display(), "removing a roster's record staged before a restart");
            fs::remove_file(&staged)?;
        }
        // Reports staged for a file whose commit never happened (a crash or an I/O error
        // between staging and commit): the file is still in inbox/ and will be staged again.
        for item in fs::read_dir(&self.paths.staging)? {
            let path = item?.path();
            let pending = match path
                .file_name()
                .and_then(|n| n.to_str()?.parse::<u64>().ok())
            {
                Some(id) => self
                    .store
                    .file(id)?
                    .is_some_and(|f| f.pending_move.is_some()),
                None => false,
            };
            if !pending {
                tracing::info!(path = %path.display(), "removing reports staged for a file that was never committed");
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// `<ts>_<name>`, with `-2`, `-3`… before the last dot when it, or a report of that
    /// name, is taken in any result folder (an upload named `x.csv.report.json` filed in
    /// the same second as `x.csv` had that file's report renamed over it).
    pub(super) fn unique_name(&self, ts: &str, name: &str) -> Result<String> {
        let name = crate::util::fitting(name, MAX_FILED_NAME);
        Ok(free_name(&format!("{ts}_{name}"), |candidate| {
            FOLDERS[1..].iter().any(|f| {
                let folder = self.paths.folder(f);
                [String::new(), ".report.json".into(), ".report.txt".into()]
                    .iter()
                    .any(|report| {
                        crate::util::is_taken(&folder.join(format!("{candidate}{report}")))
                    })
            })
        }))
    }

    pub(super) fn staged(&self, id: u64) -> PathBuf {
        self.paths.staging.join(id.to_string())
    }

    /// Writes the reports where the move will pick them up, durably, before the commit.
    pub(super) fn stage(&self, entry: &FileEntry, report: &Report) -> Result<()> {
        let dir = self.staged(entry.id);
        let writing = || format!("writing the reports of {} in {}", entry.name, dir.display());
        fs::create_dir_all(&dir)
            .and_then(|()| fsync_dir(&self.paths.staging))
            .with_context(writing)?;
        // The two forms of a large report are written on two cores.
        let (text, json) = join(
            || write_atomic_with(&dir.join("report.txt"), |w| write_text(report, w)),
            || write_atomic_with(&dir.join("report.json"), |w| write_json(report, w, false)),
        );
        json.with_context(writing)?;
        text.with_context(writing)?;
        Ok(())
    }

    /// Stages `entry`'s reports while the store puts `commit`'s accounts aside, and lets
    /// the commit be made current only once they are staged, durably: a committed file
    /// always has its reports to move, and a report is never staged for nothing. The
    /// commit is `commit` given `eval`'s writes (none unless `applied`). On failure nothing
    /// is committed and the staged reports are removed, unless the ledger has the entry
    /// (its transaction went through, its flush failed): then they stay for the filing, and
    /// the error says the change was recorded.
    pub(super) fn stage_and_commit<'a>(
        &self,
        entry: &FileEntry,
        eval: &'a mut Evaluation,
        applied: bool,
        commit: impl FnOnce(Updates<'a>) -> Commit<'a>,
    ) -> Result<()> {
        let (updates, report) = eval.writes_and_report(applied);
        let alongside = self.room_for_both(report.changes.len());
        tracing::debug!(
            file = %entry.name,
            "the reports are staged {}",
            match alongside {
                true => "while the store writes",
                false => "before the store writes (free space is short)",
            }
        );
        let (mut not_staged, mut panicked, mut waited) = (None, None, false);
        let committed = std::thread::scope(|scope| {
            let stage = || self.stage(entry, report);
            // Without a thread to stage on, the reports are staged before the commit.
            let mut staging = Some(std::thread::Builder::new().spawn_scoped(scope, stage));
            let mut ready = || {
                waited = true;
                let outcome = match staging.take() {
                    None => return Ok(()),
                    Some(Ok(thread)) => thread.join(),
                    Some(Err(_)) => Ok(stage()),
                };
                match outcome {
                    Ok(Ok(())) => {
                        crash_point("after_stage");
                        return Ok(());
                    }
                    Ok(Err(e)) => not_staged = Some(e),
                    // Raised again once the store has cleaned up after the refused commit.
                    Err(panic) => panicked = Some(panic),
                }
                Err(StoreError::Conflict("the reports were not staged".into()))
            };
            if !alongside {
                ready()?;
            }
            self.store.commit_when(commit(updates), &mut ready)
        });
        let failed = match (not_staged, committed) {
            (Some(e), _) => Some(e),
            (None, Err(e)) => Some(Error::from(e)),
            (None, Ok(())) => None,
        };
        if let Some(panic) = panicked {
            let _ = fs::remove_dir_all(self.staged(entry.id));
            std::panic::resume_unwind(panic);
        }
        match failed {
            None if waited => Ok(()),
            None => Err(super::pipeline::after_commit(
                Error::failed("the store committed without waiting for the reports (a bug)"),
                entry,
            )),
            Some(e) => match self.store.file(entry.id) {
                Ok(recorded) if recorded.as_ref() != Some(entry) => {
                    let _ = fs::remove_dir_all(self.staged(entry.id));
                    Err(e)
                }
                // Recorded in memory, but the store could not write to disk: whether the
                // commit is there is known once it is opened again from disk, which files it
                // or removes its staged reports; not said to be committed.
                Ok(_) if self.store.write_failed().is_some() => Err(e),
                // Recorded, or unknown: the staged reports stay (the next start removes
                // those of an entry the ledger does not have).
                Ok(_) => Err(super::pipeline::after_commit(e, entry)),
                Err(_) => Err(e),
            },
        }
    }

    /// Whether the reports of `changes` changes may be staged while the store writes:
    /// only with room to spare for both. A store that meets a full disk keeps failing until
    /// it is opened again (sled's log keeps its first I/O error), so when space is short the
    /// reports are staged first: they are the larger write, and a full disk then fails them
    /// before the store has written anything.
    pub(super) fn room_for_both(&self, changes: usize) -> bool {
        let needed = (changes as u64)
            .saturating_mul(ROOM_PER_CHANGE)
            .saturating_add(self.room_to_spare);
        let room = |dir: &Path| {
            nix::sys::statvfs::statvfs(dir)
                .is_ok_and(|fs| fs.blocks_available().saturating_mul(fs.fragment_size()) >= needed)
        };
        // The store's folder is missing only for a store kept in memory (the tests').
        let store = &self.paths.store;
        room(&self.paths.staging)
            && match store.try_exists() {
                Ok(true) => room(store),
                Ok(false) => true,
                Err(_) => false,
            }
    }

    /// [`Self::finish_filing`] right after `entry` was committed: a failure says the change
    /// was recorded (exit 5 without "nothing was changed").
    /// `read` is the file this process read, if it did.
    pub(super) fn finish_filing_committed(
        &self,
        entry: &FileEntry,
        read: Option<&HeldFile>,
    ) -> Result<()> {
        self.finish_filing(entry, read)
            .map_err(|e| super::pipeline::after_commit(e, entry))
    }

    /// Makes the store durable before a file committed earlier (not by this process's flush
    /// just now) is filed: nothing says "applied" before the commit is on disk. A commit
    /// whose flush failed is still answered from sled's memory, and one a killed process
    /// left in the page cache is read back after a restart.
    pub(super) fn durable_before_filing(&self) -> Result<()> {
        self.store
            .durable()
            .context("making the committed file durable before filing it")
    }

    /// After the commit: move the file and its staged reports into place, then clear the mark.
    /// `read` is the file committed, when this process read it and holds it still.
    pub(super) fn finish_filing(&self, entry: &FileEntry, read: Option<&HeldFile>) -> Result<()> {
        let Some((from, to)) = &entry.pending_move else {
            return Ok(());
        };
        let from = self.paths.drop.join(from);
        let to = self.paths.drop.join(to);
        let to_dir = to.parent().expect("a folder").to_path_buf();
        let staged = self.staged(entry.id);
        for ext in ["json", "txt"] {
            let src = staged.join(format!("report.{ext}"));
            let dst = to_dir.join(format!("{}.report.{ext}", entry.stored_as));
            if src.exists() {
                fs::rename(&src, &dst)
                    .with_context(|| format!("moving report to {}", dst.display()))?;
            }
            if from.parent() != to.parent() {
                let old = from
                    .parent()
                    .expect("a folder")
                    .join(format!("{}.report.{ext}", entry.stored_as));
                if old.exists() && old != dst {
                    fs::remove_file(&old)?;
                }
            }
        }
        crash_point("after_reports_moved");
        // After a crash between the move and clearing the mark, inbox/<name> may be a new
        // upload with the same name: move only the bytes that were committed, and only while
        // they are not filed yet (a re-upload of the same bytes is a new file to process, not
        // to be moved over the filed copy). The file read and still held is known by its
        // inode and stamp; any other is hashed (as it is read, not read whole: a million-row
        // roster is 116 MB).
        let committed_at =
            |path: &Path| read.is_some_and(|held| held.is_at(path)) || is_committed(path, entry);
        // Its place taken by other bytes (put there by hand): not filed, and not left in
        // inbox/ as done either, where it had been processed again as a new file.
        if from != to && to.exists() && !is_committed(&to, entry) && committed_at(&from) {
            return Err(Error::failed(format!(
                "{} is taken by a file that is not the one committed as file {}; the \
                 committed file stays at {}: move the other file away, and the next scan \
                 files it",
                to.display(),
                entry.id,
                from.display()
            )));
        }
        let same_file = from.exists() && from != to && !to.exists() && committed_at(&from);
        if same_file {
            fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
            // Filed, it is nobody's request any more: a copy put back into inbox/ (or into
            // watch_dir) had been audited as the person who had asked for the original.
            super::asker::forget_path(&to);
        } else if let Some(held) =
            read.filter(|held| from != to && !to.exists() && !held.is_at(&from))
        {
            // Replaced (or removed) while it was processed: the bytes committed are filed
            // from the handle still held, and a replacement stays in inbox/ as a new file.
            if let Err(e) = held.copy_to(&to) {
                tracing::warn!(file = %entry.stored_as, "the file committed was replaced or \
                    changed in {} while it was processed, and could not be filed: {e}; its \
                    reports are filed", from.parent().map_or(String::new(), |p| p.display().to_string()));
            }
        }
        fsync_dir(&to_dir)?;
        if let Some(parent) = from.parent() {
            fsync_dir(parent)?;
        }
        crash_point("after_file_moved");
        let _ = fs::remove_dir(&staged);
        // Not flushed on its own (a sync of sled's log, ~1 ms of every file): a crash that
        // loses it leaves a move that the next start finds done.
        self.store.filed(entry)?;
        // Its name in inbox/ is free for the next file, which nobody asked for: a filing
        // finished by a later scan had left the asker remembered for it.
        if from.starts_with(self.paths.folder("inbox")) {
            self.forget_unmarked(&entry.name);
        }
        Ok(())
    }

    /// Files `content` into inbox/ as a complete file (temp name, fsync, rename) under a free
    /// name derived from `original` (a dry run gets the `.dryrun.csv` suffix), marked as
    /// asked for by `by` when a person asked; returns the name, and the bytes when they were
    /// read already.
    pub fn receive(
        &self,
        original: &str,
        content: Content<'_>,
        dry_run: bool,
        by: Option<&str>,
    ) -> Result<(String, Option<FileBytes>)> {
        // Control and format characters, which the SFTP server refuses in a name, become
        // `_` (as a poll's remote names do).
        let base = Path::new(original).file_name().map_or_else(
            || "roster.csv".to_string(),
            |n| crate::util::clean_file_name(&n.to_string_lossy()),
        );
        // A name the inbox would ignore (hidden or partial) gets `.csv` so it is processed.
        let mut name = if is_ignored(&base) {
            format!("{base}.csv")
        } else {
            base
        };
        // Short enough for a folder entry with a number added (`-2`), a dry run's suffix
        // kept whole: cut after it was added, `.dryrun` would have gone, and the file been
        // applied (a name from the control socket may be of any length).
        let (stem, suffix) = match crate::layout::is_dry_run(&name) {
            true => name.split_at(name.len() - DRY_RUN_SUFFIX.len()),
            false if dry_run => (name.strip_suffix(".csv").unwrap_or(&name), DRY_RUN_SUFFIX),
            false => (name.as_str(), ""),
        };
        name = format!(
            "{}{suffix}",
            crate::util::fitting(stem, crate::layout::MAX_RECEIVED_NAME - suffix.len())
        );
        let inbox = self.paths.folder("inbox");
        let tmp = inbox.join(format!("{RECEIVING}{}.part", std::process::id()));
        let written = match content {
            Content::Read(bytes, Some(copy)) => match copy.name(&bytes, &tmp) {
                Ok(copy) => Ok((copy, Some(bytes))),
                Err(e) => {
                    tracing::debug!("the copy made while the file was read is not used: {e}");
                    copy_into(&tmp, Content::Read(bytes, None))
                }
            },
            content => copy_into(&tmp, content),
        }
        .with_context(|| format!("writing {}", tmp.display()));
        let (copy, read) = match written {
            Ok(written) => written,
            Err(e) => {
                // A full disk must not keep the partial copy (nor its space).
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let unmarked = by.filter(|by| !super::asker::mark(&copy, by));
        // Named in inbox/, the file is taken whatever happens: a `process` run here finishes
        // it when interrupted (a no-op in the daemon, which never watches for interrupts).
        crate::interrupts::finish_first();
        let candidate = crate::util::rename_into_free_name(&tmp, &inbox, &name)?;
        if let Some(by) = unmarked {
            self.asked_unmarked(&candidate, by);
        }
        fsync_dir(&inbox)?;
        // The bytes read are known as the copy's from now on, as it is after the rename.
        let read = read.and_then(|bytes| Some(bytes.written_to(HeldFile::of(copy).ok()?)));
        Ok((candidate, read))
    }

    /// Removes `inbox/<name>` filed by [`Self::receive`] for a request that failed before
    /// its file was committed, so that the failure changes nothing (best effort). Kept when
    /// the ledger records it (a commit whose flush failed) or cannot be read: then `false`.
    pub fn discard_received(&self, name: &str) -> bool {
        let from = format!("inbox/{name}");
        let recorded = self.store.files().map_or(true, |files| {
            files
                .iter()
                .any(|f| f.pending_move.as_ref().is_some_and(|(m, _)| *m == from))
        });
        if recorded {
            return false;
        }
        self.forget_unmarked(name);
        let inbox = self.paths.folder("inbox");
        match fs::remove_file(inbox.join(name)).and_then(|()| fsync_dir(&inbox)) {
            Ok(()) => tracing::info!(
                file = name,
                "the request failed: its file was taken out of inbox/"
            ),
            Err(e) => tracing::warn!(
                file = name,
                "the request failed and its file could not be taken out of inbox/: {e}"
            ),
        }
        true
    }

    /// Files whose source still has to finish them (poll mode: the remote copy has to move).
    pub fn remote_work(&self) -> Result<Vec<FileEntry>> {
        Ok(self
            .store
            .files()?
            .into_iter()
            .filter(|f| f.remote_pending && f.remote.is_some() && f.pending_move.is_none())
            .collect())
    }

    /// Registers a complete download's origin and renames it from `tmp` into inbox/ as
    /// `name`; when the rename fails the download is forgotten, so it is fetched again.
    pub fn file_in(&self, tmp: &Path, name: &str, origin: &RemoteOrigin) -> Result<()> {
        self.store.register_remote(name, origin)?;
        let target = self.paths.folder("inbox").join(name);
        let moved = crate::util::rename_noreplace(tmp, &target)
            .and_then(|()| fsync_dir(target.parent().expect("inbox")));
        if let Err(e) = moved {
            let _ = fs::remove_file(tmp);
            self.store.unregister_remote(name)?;
            return Err(e)
                .with_context(|| format!("moving the download into {}", target.display()));
        }
        Ok(())
    }

    /// Renames the fetched file `tmp` into inbox/ under a free name derived from `name`,
    /// marked as `asker`'s, if one asked, before any scan can see it (see
    /// [`SourceJob::Fetched`]).
    ///
    /// [`SourceJob::Fetched`]: super::jobs::SourceJob::Fetched
    pub fn file_fetched(&self, tmp: &Path, name: &str, asker: Option<&str>) -> Result<String> {
        let inbox = self.paths.folder("inbox");
        let unmarked = asker.filter(|asker| !super::asker::mark_path(tmp, asker));
        let filed = crate::util::rename_into_free_name(tmp, &inbox, name)
            .with_context(|| format!("filing the fetched roster into {}", inbox.display()))?;
        if let Some(asker) = unmarked {
            self.asked_unmarked(&filed, asker);
        }
        // Filed whatever the folder's sync says: it is in inbox/ and processed (a failure
        // here had been answered "nothing was written to inbox/").
        if let Err(e) = fsync_dir(&inbox) {
            tracing::warn!("fsync of {}: {e}", inbox.display());
        }
        Ok(filed)
    }

    /// Poll mode: the remote move of file `id` is done.
    pub fn remote_done(&self, id: u64) -> Result<()> {
        let Some(entry) = self.store.file(id)? else {
            return Ok(());
        };
        self.store.commit(Commit {
            updates: Updates::none(),
            file: Some(&FileEntry {
                remote_pending: false,
                ..entry
            }),
            last_applied: None,
            audit: None,
            clear_remote: None,
            accounts_token: None,
        })?;
        Ok(())
    }

    /// Poll mode: whether a remote file was already fetched (in the ledger or registered),
    /// by its name, size and mtime, or is older than a roster fetched before, from whichever
    /// folder (there is one remote inbox): `source.remote.inbox` written another way
    /// (`outgoing/`, `./outgoing`, or absolute where it had been relative) had had a roster
    /// left on the server fetched and applied again, an older one over a newer one.
    pub fn remote_known(&self, origin: &RemoteOrigin) -> Result<Sighting> {
        let same = |o: &RemoteOrigin| {
            o.name == origin.name && o.size == origin.size && o.mtime == origin.mtime
        };
        let registered = self.store.remote_registrations()?;
        let files = self.store.files()?;
        if registered.iter().any(|(_, o)| same(o)) {
            return Ok(Sighting::Known);
        }
        if let Some(f) = files.iter().find(|f| f.remote.as_ref().is_some_and(same)) {
            // Still there once decided and moved away on the server: delivered again (the
            // same bytes with their time kept, `put -p`, or a new roster of the same size
            // and time). It had been skipped at every poll with nothing said.
            let moved = !f.remote_pending && f.status != FileStatus::Held;
            return Ok(match moved {
                true => Sighting::Again {
                    id: f.id,
                    stored_as: f.stored_as.clone(),
                },
                false => Sighting::Known,
            });
        }
        // The newest roster that went in from the remote inbox, applied or held (a dry run or a
        // rejected file is no roster to protect), by its time there, taken at most as the
        // time it arrived here: a file dated in the future (a clock ahead, `put -p`) had
        // kept every later roster out until that date.
        let as_of = |o: &RemoteOrigin, arrived: Option<std::time::SystemTime>| {
            let arrived = arrived
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(u32::MAX, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
            o.mtime.min(arrived)
        };
        let decided = files
            .iter()
            .filter(|f| matches!(f.status, FileStatus::Applied | FileStatus::Held))
            .filter_map(|f| {
                let o = f.remote.as_ref()?;
                Some(as_of(o, humantime::parse_rfc3339(&f.received_at).ok()))
            });
        // And a roster fetched that waits in inbox/ (behind a held file): fetched
        // after it, an older one had been applied over it once the held file was decided,
        // and given back the admin rights it took away. As of when it was named in inbox/;
        // a registration whose file is not there is a download that never arrived.
        let inbox = self.paths.folder("inbox");
        let waiting = (registered.iter())
            .filter(|(name, _)| !crate::layout::is_dry_run(name))
            .filter_map(|(name, o)| {
                let meta = fs::symlink_metadata(inbox.join(name)).ok()?;
                Some(as_of(o, Some(self.arrivals.of(&meta).0)))
            });
        let newest = decided.chain(waiting).max();
        Ok(match newest {
            Some(newest) if origin.mtime < newest => Sighting::Older { newest },
            _ => Sighting::New,
        })
    }
}

/// What a file seen in a remote folder is to the ledger ([`Pipeline::remote_known`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sighting {
    /// Fetched already (this name, size and time), and not yet moved away on the server
    /// (waiting, held, or its move to be retried).
    Known,
    /// Fetched already as file `id` (`stored_as`), decided and moved away on the server,
    /// and there again: not fetched again (a server whose rename copies would have it
    /// applied at every poll), and said.
    Again {
        /// The ledger's file.
        id: u64,
        /// Its stored name.
        stored_as: String,
    },
    /// Not fetched, and older than a roster applied, held or waiting from that folder (`newest`, its
    /// time there, at most when it arrived): fetched now, an older roster would be applied
    /// over a newer one.
    Older { newest: u32 },
    /// Not fetched, and not older than any fetched.
    New,
}

/// Copies `content` into a new file `tmp` and syncs it; with the bytes when the copy holds
/// them (else the copy is read back).
fn copy_into(tmp: &Path, content: Content<'_>) -> std::io::Result<(fs::File, Option<FileBytes>)> {
    let mut f = fs::File::create(tmp)?;
    let read = match content {
        // From a file, `io::copy` copies in the kernel (`copy_file_range`): a large
        // roster's bytes are then not read into this process and written back out.
        Content::Stream(from) => {
            std::io::copy(from, &mut f)?;
            None
        }
        Content::Read(bytes, _) => bytes.copy_to(&mut f)?.then_some(bytes),
    };
    f.sync_all()?;
    Ok((f, read))
}

/// Whether the file at `path` holds the bytes committed as `entry` (hashed as it is read).
fn is_committed(path: &Path, entry: &FileEntry) -> bool {
    sha256_file(path).is_ok_and(|sha| sha == entry.sha256)
}
