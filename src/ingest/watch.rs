//! Filesystem watchers (notify): inbox/ in every mode, and `source.watch_dir` in watch mode.
//!
//! Events only say "look again": the inbox is rescanned on every rename into it, on queue
//! overflow, at start-up and every `source.rescan_interval`, so a lost event delays a file
//! but never loses it.

use crate::engine::EngineHandle;
use crate::layout::is_ignored;
use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A directory watched for changes: the watcher (kept alive), and the events it sends.
pub struct Watched {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<Event>>,
}

/// Starts watching `dir` (not its subfolders).
pub fn watch(dir: &Path) -> Result<Watched> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .context("starting the filesystem watcher")?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(Watched {
        _watcher: watcher,
        events: rx,
    })
}

/// Whether an inbox event means a file may have become complete.
fn completes(event: &notify::Result<Event>) -> bool {
    match event {
        Err(_) => true,
        Ok(e) if e.need_rescan() => true,
        Ok(e) => matches!(e.kind, EventKind::Modify(ModifyKind::Name(_))),
    }
}

/// Asks the engine to scan inbox/ whenever something is renamed into it, and periodically.
/// Without a watcher (inotify's limits used up), the periodic scan alone picks files up: a
/// file in inbox/ is complete, so nothing is taken early, only later.
pub async fn watch_inbox(
    inbox: PathBuf,
    rescan: Duration,
    engine: EngineHandle,
    shutdown: CancellationToken,
) {
    let events = match watch(&inbox) {
        Ok(watched) => Some(watched),
        Err(e) => {
            tracing::error!(
                "the inbox watcher could not start ({e:#}): files are picked up by the scan every {} instead",
                humantime::format_duration(rescan)
            );
            None
        }
    };
    scans(events, rescan, || engine.scan(), shutdown).await
}

/// Calls `scan` on every event that may complete a file, and every `rescan`.
async fn scans(
    mut watched: Option<Watched>,
    rescan: Duration,
    scan: impl Fn(),
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(rescan);
    tick.reset();
    loop {
        let event = async {
            match &mut watched {
                Some(w) => w.events.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = event => match event {
                Some(event) => if completes(&event) { scan() },
                None => watched = None,
            },
            _ = tick.tick() => scan(),
        }
    }
}

/// What the watch-dir watcher knows about one file.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Closed after writing, renamed in, or found by a scan: waiting for `settle`.
    closed: bool,
    /// Found by a scan (at start-up, or after lost events), never seen closing: it may
    /// still be open for writing, so it waits for `source.startup_settle` at least: one an
    /// upload still held open at a restart had been taken 2 s after its last write, the
    /// rest of it landing in the filed copy (rejected as cut short, or applied cut at a row).
    found: bool,
    /// Opened since its last close after writing, as far as the events tell.
    opened: bool,
    /// Written through an open of it since its last close after writing: a file being
    /// written (a stalled upload) waits for its close, however long it is quiet. One made
    /// under its name by a link, or changed through its path (a truncate), is written by
    /// no open (a reader's open writes nothing), and settles as a file found by a scan.
    writing: bool,
    /// Last event or observed change.
    changed: Instant,
    /// Size and modification time when last looked at.
    seen: Option<(u64, SystemTime)>,
    /// Its move into inbox/ failed (a full disk): tried again from then, and the files
    /// that completed after it wait for it meanwhile.
    retry_at: Option<Instant>,
}

impl Candidate {
    /// A file first heard of `changed`: closed (or renamed in) or not, found by a scan or
    /// not, neither opened nor written since.
    fn new(closed: bool, found: bool, changed: Instant) -> Candidate {
        Candidate {
            closed,
            found,
            opened: false,
            writing: false,
            changed,
            seen: None,
            retry_at: None,
        }
    }
}

/// Watch mode: moves complete files from `dir` into inbox/. A file is complete when it was
/// closed after writing (or renamed in) and then stayed unchanged for `settle.0`
/// (`source.settle`); one found by a scan, or changed with no write through an open of it
/// (a link, a truncate), for `settle.1` (`source.startup_settle`) if longer; one being
/// written, once closed. Files go in the order they completed.
/// `watched` is `dir`'s watcher, started by the caller before the daemon is ready: without
/// it a file could not be told closed, so a watcher that cannot start stops the start.
pub async fn watch_dir(
    watched: Watched,
    dir: PathBuf,
    paths: crate::layout::Paths,
    settle: (Duration, Duration),
    rescan: Duration,
    engine: EngineHandle,
    shutdown: CancellationToken,
) {
    let Watched {
        _watcher,
        mut events,
    } = watched;
    let inbox = paths.folder("inbox");
    let mut files: HashMap<PathBuf, Candidate> = HashMap::new();
    let mut kept = Kept::load(paths.watch_kept.clone());
    let mut not_taken = HashSet::new();
    tell_not_taken(&mut not_taken, scan_dir(&dir, &mut files, false));
    let mut check = tokio::time::interval(
        settle
            .0
            .min(Duration::from_millis(250))
            .max(Duration::from_millis(50)),
    );
    let mut rescan_tick = tokio::time::interval(rescan);
    rescan_tick.reset();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Some(Ok(event)) => {
                    if event.need_rescan() {
                        tell_not_taken(&mut not_taken, scan_dir(&dir, &mut files, true));
                    }
                    for path in event.paths.iter().filter(|p| p.parent() == Some(dir.as_path())) {
                        observe(&mut files, path, &event.kind);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("watch_dir watcher: {e}; rescanning");
                    tell_not_taken(&mut not_taken, scan_dir(&dir, &mut files, true));
                }
                None => return,
            },
            _ = rescan_tick.tick() => tell_not_taken(&mut not_taken, scan_dir(&dir, &mut files, false)),
            _ = check.tick() => {
                // Moving may copy a whole roster across filesystems: not on an async worker's
                // time (the runtime has other workers for the SFTP and control tasks).
                let settled = tokio::task::block_in_place(|| {
                    move_settled(&mut files, &mut kept, &inbox, settle, &|p| fs::remove_file(p))
                });
                // Told as a failed file is: `status`, `/healthz` and the notification hook
                // (a full disk had left the roster in watch_dir with only a log line).
                for (name, why) in &settled.failed {
                    engine.intake_failed(
                        name,
                        format!("taking {name} into inbox/: {why}; retried"),
                        "Nothing was changed; it stays in source.watch_dir and is retried",
                    );
                }
                if settled.moved {
                    engine.scan();
                }
            }
        }
    }
}

fn observe(files: &mut HashMap<PathBuf, Candidate>, path: &Path, kind: &EventKind) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if is_ignored(&name) {
        return;
    }
    let now = Instant::now();
    match kind {
        EventKind::Remove(_)
        | EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::From)) => {
            files.remove(path);
        }
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_)) => {
            let c = files
                .entry(path.to_path_buf())
                .or_insert(Candidate::new(true, false, now));
            c.closed = true;
            c.found = false;
            (c.opened, c.writing) = (false, false);
            c.changed = now;
        }
        // inotify tells neither the mode of an open nor, through notify, a close without
        // writing: an open counts as a writer's once a write follows it.
        EventKind::Access(AccessKind::Open(_)) => {
            if let Some(c) = files.get_mut(path) {
                c.opened = true;
                // Opened while empty: its writer's open (a shell's `> file` before a slow
                // export writes), not a reader's; taken empty once quiet, the roster had
                // been rejected and written on into the rejected copy.
                c.writing |= !c.closed && fs::metadata(path).is_ok_and(|m| m.len() == 0);
            }
        }
        // chmod, touch, chown or a link after the close: a change (its quiet period starts
        // again), not a file opened for writing, whose close would never come.
        EventKind::Modify(ModifyKind::Metadata(_)) => {
            let c = files
                .entry(path.to_path_buf())
                .or_insert(Candidate::new(true, false, now));
            // A file held back keeps its place: a chmod of it had let newer files past.
            if c.retry_at.is_none() {
                c.changed = now;
            }
        }
        EventKind::Create(_) | EventKind::Modify(_) => {
            let c = files
                .entry(path.to_path_buf())
                .or_insert(Candidate::new(false, false, now));
            c.closed = false;
            c.found = false;
            c.writing |= c.opened && !matches!(kind, EventKind::Create(_));
            c.changed = now;
        }
        _ => {}
    }
}

/// Warns once of each entry of watch_dir that is neither a regular file nor a name left
/// alone (a symlink, a folder), for as long as it stays: it is never taken (a link is not
/// followed), and an HR job delivering through one had been told nothing, nor the log.
fn tell_not_taken(noted: &mut HashSet<PathBuf>, found: Vec<PathBuf>) {
    if let Some(news) = not_taken_news(noted, found) {
        tracing::warn!("{news}");
    }
}

/// The warning for the entries of `found` not in `noted` (one line, the first few named:
/// 300 folders had given 300 lines at once), and `noted` made `found`.
fn not_taken_news(noted: &mut HashSet<PathBuf>, found: Vec<PathBuf>) -> Option<String> {
    const NAMED: usize = 5;
    let mut new: Vec<String> = (found.iter())
        .filter(|p| !noted.contains(*p))
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    *noted = found.into_iter().collect();
    if new.is_empty() {
        return None;
    }
    new.sort();
    Some(format!(
        "watch_dir holds what is not a regular file (a symlink, a folder, a FIFO), which is \
         not taken (links are not followed): {}; deliver each roster as a regular file",
        crate::util::first_named(new.into_iter(), NAMED)
    ))
}

/// Adds regular files the watcher has not seen (present at start-up, or after lost events).
/// After lost events (`lost`), the files already known count as found by a scan too: the
/// close of one held open may be among them, and it would have waited for it until a
/// restart. Returns the entries that are neither regular files nor names left alone (a
/// symlink, a folder), which are never taken.
fn scan_dir(dir: &Path, files: &mut HashMap<PathBuf, Candidate>, lost: bool) -> Vec<PathBuf> {
    if lost {
        for c in files.values_mut() {
            (c.found, c.opened, c.writing) = (true, false, false);
        }
    }
    let Ok(entries) = fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "cannot list source.watch_dir");
        return Vec::new();
    };
    let mut not_taken = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        match (is_file, is_ignored(&name)) {
            (_, true) => {}
            (true, false) => {
                files
                    .entry(entry.path())
                    .or_insert(Candidate::new(true, true, Instant::now()));
            }
            (false, false) => not_taken.push(entry.path()),
        }
    }
    not_taken
}

/// Files of watch_dir copied into inbox/ whose removal failed, by device, inode, size and
/// time of last write: not copied again while they stay (each copy would have been
/// applied as a new file), across restarts too when kept in `file` (a restart had copied
/// Monday's roster again after Tuesday's, and applied it: accounts Tuesday took away came
/// back).
#[derive(Default)]
struct Kept {
    stamps: std::collections::HashSet<Stamp>,
    file: Option<PathBuf>,
}

/// Device, inode, size, and the time of last write in nanoseconds since the epoch.
type Stamp = (u64, u64, u64, u128);

impl Kept {
    /// The stamps kept in `file` (none when it is missing or does not read).
    fn load(file: PathBuf) -> Kept {
        let stamps = fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut n = line.split(' ');
                let mut next = || n.next()?.parse::<u128>().ok();
                Some((
                    u64::try_from(next()?).ok()?,
                    u64::try_from(next()?).ok()?,
                    u64::try_from(next()?).ok()?,
                    next()?,
                ))
            })
            .collect();
        Kept {
            stamps,
            file: Some(file),
        }
    }

    fn stamp(meta: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let nanos = written
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        (meta.dev(), meta.ino(), meta.len(), nanos)
    }

    fn contains(&self, meta: &fs::Metadata) -> bool {
        self.stamps.contains(&Kept::stamp(meta))
    }

    /// Keeps `meta`'s stamp, in its file too.
    fn insert(&mut self, meta: &fs::Metadata) {
        self.stamps.insert(Kept::stamp(meta));
        let Some(file) = &self.file else {
            return;
        };
        let text: String = self
            .stamps
            .iter()
            .map(|(dev, ino, len, at)| format!("{dev} {ino} {len} {at}\n"))
            .collect();
        if let Err(e) = crate::util::write_atomic(file, text.as_bytes()) {
            tracing::warn!(file = %file.display(), "keeping the copied files that stay in watch_dir: {e}; a restart copies them again");
        }
    }
}

/// What [`move_settled`] did: whether it moved any file, and the files it could not move
/// (their names, and why).
#[derive(Default)]
struct Settled {
    moved: bool,
    failed: Vec<(String, String)>,
}

/// Moves files that are closed and unchanged for `settle`, oldest write first (SPEC §5:
/// files are processed in order of completion, and the engine orders inbox/ by the time
/// each was moved in).
/// `remove` removes a copied file from watch_dir (`fs::remove_file`). A file found by a
/// scan waits for `scanned` at least (`source.startup_settle`).
fn move_settled(
    files: &mut HashMap<PathBuf, Candidate>,
    kept: &mut Kept,
    inbox: &Path,
    (settle, scanned): (Duration, Duration),
    remove: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Settled {
    let mut settled = Settled::default();
    let now = Instant::now();
    let mut done = Vec::new();
    let mut due = Vec::new();
    // The earliest change of a file still in its quiet period (not one being written,
    // which waits for its close): a file that completed after it waits for it, so files
    // reach inbox/ in the order they completed (a link, which waits `startup_settle`, had
    // been overtaken by a newer roster closed after it, which waits `settle`).
    // (Files first looked at in one tick share the time: their last writes order them.)
    let mut earliest_waiting: Option<(Instant, SystemTime)> = None;
    for (path, c) in files.iter_mut() {
        let Ok(meta) = fs::symlink_metadata(path) else {
            done.push(path.clone());
            continue;
        };
        if !meta.file_type().is_file() {
            done.push(path.clone());
            continue;
        }
        let stamp = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        if c.seen != Some(stamp) {
            // Still changing (or first look): restart the quiet period.
            c.seen = Some(stamp);
            c.changed = now;
            continue;
        }
        // Being written (a stalled upload): it waits for its close (taken once quiet, it had
        // been applied cut short, its writer writing on into the filed copy). Found by a
        // scan, or changed with no write through an open of it (a link made under its name,
        // as OpenSSH's sftp-server makes a rename, which had waited until a restart, then
        // been applied after the newer ones; a truncate through its path; a reader's open
        // changes nothing): it may be open still, so it waits as long as a file found at
        // start-up.
        let quiet = match c.found || !c.closed {
            true => settle.max(scanned),
            false => settle,
        };
        if !c.closed && c.writing {
            continue;
        }
        if now.duration_since(c.changed) < quiet || c.retry_at.is_some_and(|at| now < at) {
            let completed = (c.changed, stamp.1);
            earliest_waiting = Some(earliest_waiting.map_or(completed, |e| e.min(completed)));
            continue;
        }
        due.push((c.changed, stamp.1, path.clone(), meta));
    }
    due.retain(|(changed, written, path, meta)| {
        let waits = earliest_waiting.is_some_and(|earliest| (*changed, *written) > earliest);
        if !waits {
            done.push(path.clone());
        }
        !waits && !kept.contains(meta)
    });
    due.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    // After a move that failed, the files after it are not moved: they wait in `files`
    // with it, all tried again together, in this order (one refused for room had been
    // overtaken by a newer roster, then applied over it: an admin Tuesday's roster removed
    // came back). A file that fails for itself (one autoprov may not read) holds nothing
    // back: it would have stopped every later roster for good.
    let mut failed_at = None;
    for (i, (_, _, path, meta)) in due.iter().enumerate() {
        match move_into((path, meta), inbox, remove) {
            Ok((name, removed)) => {
                tracing::info!(file = %name, "complete file moved from watch_dir into inbox/");
                settled.moved = true;
                if !removed {
                    kept.insert(meta);
                }
            }
            Err(e) if told(&mut settled, path, &e) => {
                failed_at = Some(i);
                break;
            }
            Err(_) => {}
        }
    }
    if let Some(i) = failed_at {
        let waiting: Vec<&PathBuf> = due[i..].iter().map(|(_, _, path, _)| path).collect();
        hold_back(files, &mut done, &waiting, now);
    }
    for path in done {
        files.remove(&path);
    }
    settled
}

/// Logs a move of `path` that failed and adds it to `settled.failed`; whether it holds the
/// later files back ([`holds_back`]). A file that [`Changed`] after it settled is no
/// failure: it and the files after it wait while it settles again. Quoted as Rust
/// writes strings (control and format characters escaped): the name and the error's text,
/// which names it, come from outside.
fn told(settled: &mut Settled, path: &Path, e: &anyhow::Error) -> bool {
    if e.is::<Changed>() {
        tracing::info!(file = ?path, "{e}");
        return true;
    }
    let why = format!("{e:#}");
    tracing::error!(file = ?path, "moving into inbox/: {why:?}; will retry");
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    settled
        .failed
        .push((crate::util::clean_file_name(&name), why));
    holds_back(e)
}

/// Keeps `waiting` (the file whose move failed, then those after it) in `files` rather than
/// `done`, every one tried again in [`RETRY_FAILED`], together: marked alike, none is due
/// before the others, so their order stays the one they were sorted in.
fn hold_back(
    files: &mut HashMap<PathBuf, Candidate>,
    done: &mut Vec<PathBuf>,
    waiting: &[&PathBuf],
    now: Instant,
) {
    done.retain(|path| !waiting.contains(&path));
    for path in waiting {
        if let Some(c) = files.get_mut(*path) {
            c.retry_at = Some(now + RETRY_FAILED);
        }
    }
}

/// Whether a move that failed holds the files after it back: every failure but the file's
/// own ([`Unreadable`]: one autoprov may not read), which would hold them for good. A full
/// disk, an inbox/ that cannot be written, too many open files pass once fixed, and the
/// files after it must not go first.
fn holds_back(e: &anyhow::Error) -> bool {
    !e.chain().any(|cause| cause.is::<Unreadable>())
}

/// A file of watch_dir that autoprov may not read (its mode, its owner's choice).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreadable(std::io::Error);

/// How long a file whose move into inbox/ failed waits before it is tried again.
const RETRY_FAILED: Duration = Duration::from_secs(5);

/// Renames (or, across filesystems, copies, fsyncs and renames) a file into inbox/ under a
/// free name; its name there, and whether the file left watch_dir (a copy whose original
/// cannot be removed stays).
fn move_into(
    (path, due): (&Path, &fs::Metadata),
    inbox: &Path,
    remove: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<(String, bool)> {
    // A control character (an escape sequence, a line break) in the name would reach the
    // filed name, the log and the CLI's listings, as the SFTP server's refusal and
    // `process` keep it from doing.
    // Cut to fit with room for `-N`: a name of 255 bytes could not take one, and one of
    // bytes that are not UTF-8 grows when cleaned.
    let name =
        crate::layout::received_name(&path.file_name().context("no file name")?.to_string_lossy());
    // Readable first: one autoprov cannot read, renamed in, would stop every file after
    // it. O_NOFOLLOW: a symlink swapped in after the check is refused, not followed;
    // O_NONBLOCK: a FIFO swapped in opens at once (and is not the file that settled, below)
    // where it had waited for a writer, stopping every later file.
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => anyhow::Error::from(Unreadable(e)),
            _ => anyhow::Error::from(e),
        })
        .with_context(|| {
            format!(
                "opening {} (autoprov must be able to read it)",
                path.display()
            )
        })?;
    // The file that settled, as it settled: rewritten in place since (a re-upload truncates
    // it), it is taken once it settles again.
    unchanged(path, &src, due)?;
    // A file with another name too (a hard link its writer kept, as OpenSSH's `ln` makes)
    // is copied, not renamed: the filed roster is then autoprov's own, which the writer
    // cannot change once it is applied (a re-sync trusts the last roster while its size
    // and time stay; a roster rewritten through the link had kept an admin the next file
    // took away), and whose mode is restricted without touching the writer's other name.
    // So is one another user owns (the writer of watch_dir, as a rule): autoprov could not
    // restrict its mode (EPERM), and a 0666 roster, filed as it was, could be rewritten by
    // anyone after it was applied.
    let shared = src.metadata().map_or(true, |m| {
        use std::os::unix::fs::MetadataExt;
        m.nlink() > 1 || m.uid() != nix::unistd::Uid::effective().as_raw()
    });
    // Brought by a source, it is nobody's request: a mark on it (the daemon user's own file,
    // a copy of a filed one) would have audited it as that person's. (A copy carries none.)
    if !shared {
        crate::engine::asker::forget(&src);
    }
    let renamed = match shared {
        true => None,
        false => match crate::util::rename_into_free_name(path, inbox, &name) {
            Ok(candidate) => Some(candidate),
            Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => None,
            Err(e) => return Err(e).with_context(|| format!("moving {}", path.display())),
        },
    };
    let (candidate, removed) = match renamed {
        Some(candidate) => (candidate, true),
        None => copy_in((path, due), &mut src, inbox, &name, remove)?,
    };
    // A renamed file keeps the mode its writer gave it (often world-readable).
    if let Err(e) = crate::util::restrict_mode(&inbox.join(&candidate)) {
        tracing::warn!(file = %candidate, "cannot restrict the mode of inbox/{candidate}: {e}");
    }
    crate::util::fsync_dir(inbox)?;
    Ok((candidate, removed))
}

/// Copies `src` (opened from `path`) into `inbox` as `name` through a hidden name, then
/// removes `path`; the name it got, and whether `path` left watch_dir.
fn copy_in(
    (path, due): (&Path, &fs::Metadata),
    src: &mut fs::File,
    inbox: &Path,
    name: &str,
    remove: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<(String, bool)> {
    let mut removed = true;
    // Another filesystem, or another name: copy through a hidden name, when there is
    // room for it and some to spare (the store's own writes must not meet a disk a
    // copy filled; a copy that cannot fit had filled it at every try).
    let size = src.metadata().map(|m| m.len()).unwrap_or(0);
    if let Ok(fs) = nix::sys::statvfs::statvfs(inbox) {
        let free = fs.blocks_available() * fs.fragment_size();
        if size.saturating_add(COPY_SPARE) > free {
            let why = format!(
                "copying {}: {size} bytes do not fit in inbox/ with {} MiB to spare ({free} bytes free)",
                path.display(),
                COPY_SPARE >> 20
            );
            return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, why).into());
        }
    }
    let tmp = inbox.join(format!(
        "{}{}.part",
        crate::layout::WATCH_COPY,
        std::process::id()
    ));
    let mut dst = crate::util::create_fresh(&tmp)?;
    // Rewritten while it was copied (a re-upload truncating it in place): the copy is
    // dropped and the file taken once it settles again. Taken torn, the new roster it
    // became had then been removed unseen.
    let copied = std::io::copy(src, &mut dst)
        .map_err(anyhow::Error::from)
        .and_then(|_| Ok(dst.sync_all()?))
        .and_then(|()| unchanged(path, src, due))
        .and_then(|()| Ok(crate::util::rename_into_free_name(&tmp, inbox, name)?));
    // A failed copy leaves no part behind (nor its space).
    let candidate = match copied {
        Ok(candidate) => candidate,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.context(format!("copying {}", path.display())));
        }
    };
    // Removed by its path only while that path still names the file copied: a
    // writer may have renamed a newer roster over it meanwhile, which stays to be
    // taken (it had been deleted unread). The window left is the two calls'.
    if !still_named(path, src) {
        tracing::warn!(
            file = ?path,
            "copied into inbox/{candidate}; another file took its name in source.watch_dir meanwhile and stays there to be taken"
        );
        removed = false;
    } else if let Err(e) = remove(path) {
        tracing::error!(
            file = ?path,
            "copied into inbox/{candidate}, but it cannot be removed from source.watch_dir: {e}; it is not taken again while it stays unchanged (across restarts too)"
        );
        removed = false;
    }
    Ok((candidate, removed))
}

/// A file that changed after it settled: taken once it settles again.
#[derive(Debug, thiserror::Error)]
#[error("{0} changed after it settled; it is taken once it settles again")]
struct Changed(String);

/// Whether `open` (opened from `path`) is still the file `due` says settled: the same file,
/// size, time of last write and of last change.
fn unchanged(path: &Path, open: &fs::File, due: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let stamp = |m: &fs::Metadata| {
        (
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    };
    match open.metadata() {
        Ok(now) if stamp(&now) == stamp(due) => Ok(()),
        _ => Err(Changed(path.display().to_string()).into()),
    }
}

/// Room a copy into inbox/ leaves free at least.
const COPY_SPARE: u64 = 16 << 20;

/// Whether `path` still names the file `open` is (device and inode), not another renamed
/// over it since it was opened.
fn still_named(path: &Path, open: &fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |m: fs::Metadata| (m.dev(), m.ino());
    match (open.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(now)) => id(open) == id(now),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a watcher (inotify's limits used up), inbox/ is still scanned every
    /// `rescan`: files wait longer, never for ever.
    #[tokio::test]
    async fn without_a_watcher_the_inbox_is_scanned_every_rescan_interval() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let count = std::sync::Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counted = count.clone();
        let task = tokio::spawn(scans(
            None,
            Duration::from_millis(20),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
            shutdown.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while count.load(Ordering::SeqCst) < 3 {
            assert!(
                Instant::now() < deadline,
                "no periodic scans without a watcher"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
    }

    /// Files written at different times and settled in one tick are moved oldest write
    /// first, and the engine's order of inbox/ ([`crate::engine::arrivals::inbox_order`],
    /// then the name) is that order: not the map's, nor the names'.
    #[test]
    fn files_settled_together_reach_the_inbox_oldest_write_first() {
        let (src, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let order = ["c.csv", "a.csv", "e.csv", "b.csv", "d.csv"];
        for (i, name) in order.iter().enumerate() {
            let f = fs::File::create(src.path().join(name)).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64))
                .unwrap();
        }
        let mut files = HashMap::new();
        scan_dir(src.path(), &mut files, false);
        let mut kept = Kept::default();
        let remove = |p: &Path| fs::remove_file(p);
        let now = (Duration::ZERO, Duration::ZERO);
        let mut step = || move_settled(&mut files, &mut kept, inbox.path(), now, &remove).moved;
        assert!(!step());
        assert!(step());
        let mut listed: Vec<((SystemTime, SystemTime), String)> = fs::read_dir(inbox.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let order = crate::engine::arrivals::inbox_order(&e.metadata().unwrap());
                (order, e.file_name().to_string_lossy().into_owned())
            })
            .collect();
        listed.sort();
        let names: Vec<&str> = listed.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, order);
    }

    /// A file found by a scan (there at start-up) may still be open for writing: it waits
    /// for the scanned quiet period, not `settle`; one whose close was seen does not (one
    /// written before it: a newer one waits for it, see below).
    #[test]
    fn a_file_found_by_a_scan_waits_longer_than_one_seen_closing() {
        let (src, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (found, closed) = (src.path().join("found.csv"), src.path().join("closed.csv"));
        fs::write(&closed, "y").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&found, "x").unwrap();
        let mut files = HashMap::new();
        scan_dir(src.path(), &mut files, false);
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        observe(&mut files, &closed, &close);
        let (mut kept, remove) = (Kept::default(), |p: &Path| fs::remove_file(p));
        let quiet = (Duration::ZERO, Duration::from_secs(3));
        let mut step = || move_settled(&mut files, &mut kept, inbox.path(), quiet, &remove).moved;
        assert!(!step(), "first look");
        assert!(step(), "the closed file is taken once settled");
        assert!(found.exists() && !closed.exists());
        std::thread::sleep(Duration::from_millis(3100));
        assert!(step(), "the found file once quiet for longer");
        assert!(!found.exists());
    }

    /// A complete file that cannot be moved in is named with why, for the engine to tell
    /// of it as a failed file; it stays in watch_dir.
    #[test]
    fn a_file_that_cannot_be_moved_in_is_named_with_why() {
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("r.csv");
        fs::write(&path, "x").unwrap();
        let mut files = HashMap::new();
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        observe(&mut files, &path, &close);
        let gone = src.path().join("no-inbox");
        let (mut kept, remove) = (Kept::default(), |p: &Path| fs::remove_file(p));
        let mut step = || {
            move_settled(
                &mut files,
                &mut kept,
                &gone,
                (Duration::ZERO, Duration::ZERO),
                &remove,
            )
        };
        assert!(step().failed.is_empty(), "first look");
        let settled = step();
        assert!(!settled.moved);
        assert_eq!(settled.failed.len(), 1);
        assert_eq!(settled.failed[0].0, "r.csv");
        assert!(
            settled.failed[0].1.contains("moving"),
            "{:?}",
            settled.failed
        );
        assert!(path.exists(), "left in watch_dir");
    }

    /// A file that cannot be moved in holds back the files that completed after it: a roster
    /// refused for room had been overtaken by a newer one, then applied over it.
    #[test]
    fn a_file_that_cannot_be_moved_in_holds_back_later_ones() {
        let (src, inbox, other) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir_in(std::env::temp_dir()).unwrap(),
        );
        // Monday's: linked elsewhere (so copied), and larger than the room there is.
        let monday = src.path().join("monday.csv");
        let free = nix::sys::statvfs::statvfs(inbox.path()).unwrap();
        let more = free.blocks_available() * free.fragment_size() + (1 << 30);
        fs::File::create(&monday).unwrap().set_len(more).unwrap(); // sparse
        let _ = fs::hard_link(&monday, other.path().join("kept"));
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let mut files = HashMap::new();
        observe(&mut files, &monday, &close);
        std::thread::sleep(Duration::from_millis(20));
        let tuesday = src.path().join("tuesday.csv");
        fs::write(&tuesday, "y").unwrap();
        observe(&mut files, &tuesday, &close);
        let (mut kept, remove) = (Kept::default(), |p: &Path| fs::remove_file(p));
        let quiet = (Duration::ZERO, Duration::ZERO);
        let mut step = || move_settled(&mut files, &mut kept, inbox.path(), quiet, &remove);
        assert!(step().failed.is_empty(), "first look");
        let settled = step();
        assert_eq!(settled.failed.len(), 1, "{:?}", settled.failed);
        assert_eq!(settled.failed[0].0, "monday.csv");
        assert!(tuesday.exists(), "not moved past the one that failed");
        assert!(
            !step().moved,
            "it waits while Monday's waits to be tried again"
        );
        assert!(tuesday.exists() && fs::read_dir(inbox.path()).unwrap().count() == 0);
        // Both are tried again together, whatever else orders them (first seen, written).
        let at: Vec<_> = files.values().map(|c| c.retry_at).collect();
        assert!(at.len() == 2 && at[0].is_some() && at[0] == at[1], "{at:?}");
    }

    /// A move that failed holds the later files back, unless the file failed for itself
    /// (one autoprov may not read), which would have stopped every later roster for good.
    #[test]
    fn only_a_file_that_fails_for_itself_holds_nothing_back() {
        use std::io::{Error, ErrorKind};
        let room = anyhow::Error::from(Error::from(ErrorKind::StorageFull)).context("copying x");
        assert!(holds_back(&room));
        let inbox = anyhow::Error::from(Error::from(ErrorKind::PermissionDenied));
        assert!(
            holds_back(&inbox.context("copying x")),
            "inbox/ not writable"
        );
        assert!(holds_back(
            &Error::from_raw_os_error(nix::libc::EMFILE).into()
        ));
        let unreadable = anyhow::Error::from(Unreadable(Error::from(ErrorKind::PermissionDenied)));
        assert!(!holds_back(&unreadable.context("opening x")));
    }

    /// A file made under its name by a link (OpenSSH's sftp-server renames so: the new name
    /// is created, never written or closed) is taken once quiet as long as a file found by
    /// a scan; it had waited for a restart. Linked to another name still (its writer kept
    /// one), it is copied, not renamed: the filed roster is not the writer's file.
    #[test]
    fn a_file_linked_in_is_taken_once_quiet_and_copied_while_linked_elsewhere() {
        use std::os::unix::fs::MetadataExt;
        let (src, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let part = src.path().join("r.csv.part");
        fs::write(&part, "x").unwrap();
        let keep = src.path().join(".keep");
        fs::hard_link(&part, &keep).unwrap();
        let linked = src.path().join("r.csv");
        fs::hard_link(&part, &linked).unwrap();
        fs::remove_file(&part).unwrap();
        let mut files = HashMap::new();
        let created = EventKind::Create(notify::event::CreateKind::File);
        observe(&mut files, &linked, &created);
        let (mut kept, remove) = (Kept::default(), |p: &Path| fs::remove_file(p));
        let quiet = (Duration::ZERO, Duration::from_millis(1500));
        let mut step = || move_settled(&mut files, &mut kept, inbox.path(), quiet, &remove).moved;
        assert!(!step(), "first look");
        assert!(!step(), "not before the quiet period");
        std::thread::sleep(Duration::from_millis(1600));
        assert!(step(), "taken once quiet");
        assert!(!linked.exists());
        let filed = inbox.path().join("r.csv");
        assert_eq!(fs::read(&filed).unwrap(), b"x");
        let (filed, kept_name) = (fs::metadata(&filed).unwrap(), fs::metadata(&keep).unwrap());
        assert_ne!(
            filed.ino(),
            kept_name.ino(),
            "a copy, not the writer's file"
        );
        assert_eq!(kept_name.nlink(), 1);
    }

    /// Files reach inbox/ in the order they completed: a file closed after a link was
    /// made waits for the link's longer quiet period (the newer roster had been applied
    /// first, then the older one over it). A file opened while empty is its writer's (a
    /// shell's `> file` before a slow export writes) and waits for its close (it had been
    /// taken empty and rejected).
    #[test]
    fn files_complete_in_order_and_an_empty_file_opened_waits_for_its_close() {
        let (src, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let path = |name: &str| src.path().join(name);
        fs::write(path("mon.csv"), "employee_id,email\n").unwrap();
        fs::write(path("export.csv"), "").unwrap();
        let mut files = HashMap::new();
        let created = EventKind::Create(notify::event::CreateKind::File);
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        observe(&mut files, &path("mon.csv"), &created);
        observe(&mut files, &path("export.csv"), &created);
        observe(&mut files, &path("export.csv"), &opened);
        std::thread::sleep(Duration::from_millis(50));
        fs::write(path("tue.csv"), "employee_id,email\nE1,e1@x.io\n").unwrap();
        observe(&mut files, &path("tue.csv"), &closed);
        let (mut kept, remove) = (Kept::default(), |p: &Path| fs::remove_file(p));
        let quiet = (Duration::ZERO, Duration::from_millis(300));
        let step = |files: &mut HashMap<PathBuf, Candidate>, kept: &mut Kept| {
            move_settled(files, kept, inbox.path(), quiet, &remove).moved
        };
        assert!(!step(&mut files, &mut kept), "first look");
        assert!(!step(&mut files, &mut kept), "tue.csv waits for mon.csv");
        assert!(path("tue.csv").exists());
        std::thread::sleep(Duration::from_millis(350));
        assert!(step(&mut files, &mut kept));
        assert!(!path("mon.csv").exists() && !path("tue.csv").exists());
        assert!(path("export.csv").exists(), "its writer has not closed it");
        fs::write(path("export.csv"), "employee_id,email\n").unwrap();
        observe(&mut files, &path("export.csv"), &closed);
        assert!(!step(&mut files, &mut kept), "looked at after its close");
        assert!(step(&mut files, &mut kept));
        assert!(!path("export.csv").exists());
    }

    /// A file whose attributes change after it was closed (chmod, touch) settles again
    /// instead of waiting for a close that never comes.
    #[test]
    fn an_attribute_change_after_the_close_restarts_the_quiet_period_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut files = HashMap::new();
        observe(
            &mut files,
            &path,
            &EventKind::Access(AccessKind::Close(AccessMode::Write)),
        );
        let before = files[&path].changed;
        std::thread::sleep(Duration::from_millis(5));
        observe(
            &mut files,
            &path,
            &EventKind::Modify(ModifyKind::Metadata(
                notify::event::MetadataKind::Permissions,
            )),
        );
        assert!(files[&path].closed, "still closed");
        assert!(
            files[&path].changed > before,
            "its quiet period started again"
        );
    }

    /// A file being written through an open of it (a stalled upload) waits for its close,
    /// however long it is quiet: taken after `startup_settle`, it had been applied cut short
    /// while its writer wrote on into the filed copy. One changed with no write through an
    /// open (a link made under its name, empty or not, read or not; a truncate through its
    /// path) settles as a file found by a scan: each had waited until a restart (a reader's
    /// open, whose close notify does not report, too). After lost events, a file being
    /// written counts as found too (its close may be among them).
    #[test]
    fn a_file_being_written_waits_for_its_close() {
        let (src, inbox) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let path = |name: &str| src.path().join(name);
        for name in ["slow.csv", "empty.csv", "cut.csv", "lost.csv", "read.csv"] {
            let text = if name == "empty.csv" {
                ""
            } else {
                "employee_id,email\n"
            };
            fs::write(path(name), text).unwrap();
        }
        let mut files = HashMap::new();
        let created = EventKind::Create(notify::event::CreateKind::File);
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let wrote = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
        for (name, events) in [
            ("slow.csv", vec![&created, &opened, &wrote]),
            ("empty.csv", vec![&created]),
            ("cut.csv", vec![&wrote]),
            ("lost.csv", vec![&created, &opened, &wrote]),
            ("read.csv", vec![&created, &opened]),
        ] {
            for event in events {
                observe(&mut files, &path(name), event);
            }
        }
        let (mut kept, remove) = (Kept::default(), |p: &Path| fs::remove_file(p));
        let quiet = (Duration::ZERO, Duration::from_millis(300));
        let step = |files: &mut HashMap<PathBuf, Candidate>, kept: &mut Kept| {
            move_settled(files, kept, inbox.path(), quiet, &remove).moved
        };
        assert!(!step(&mut files, &mut kept), "first look");
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            step(&mut files, &mut kept),
            "the link and the truncated file"
        );
        let left = |name: &str| path(name).exists();
        assert!(
            left("slow.csv") && left("lost.csv"),
            "held open, quiet or not"
        );
        assert!(!left("empty.csv") && !left("cut.csv") && !left("read.csv"));
        // The close of lost.csv lost with others: the rescan counts it as found.
        scan_dir(src.path(), &mut files, true);
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        observe(&mut files, &path("slow.csv"), &close);
        assert!(
            step(&mut files, &mut kept),
            "closed; quiet since before the rescan"
        );
        assert!(!left("slow.csv") && !left("lost.csv"));
    }

    /// Across filesystems (/dev/shm is a mount of its own) a file is copied; when it cannot
    /// be removed from watch_dir afterwards (an immutable file, a directory autoprov may not
    /// write: here the removal fails as those do), it is not copied again at the next
    /// rescan, nor after a restart.
    #[test]
    fn a_copied_file_that_cannot_be_removed_is_not_taken_again() {
        let src = tempfile::tempdir_in("/var/tmp").unwrap();
        let inbox = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = src.path().join("r.csv");
        fs::write(&path, b"employee_id,email\n").unwrap();
        let refuse = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let state = tempfile::tempdir().unwrap();
        let kept_file = state.path().join("watch-kept");
        // Three rescans, then a restart (the kept files read back from their file).
        for restart in [false, false, false, true] {
            let mut kept = Kept::load(kept_file.clone());
            for _ in 0..if restart { 1 } else { 3 } {
                let mut files = HashMap::new();
                scan_dir(src.path(), &mut files, false);
                // A first look, then the move.
                for _ in 0..2 {
                    let quiet = (Duration::ZERO, Duration::ZERO);
                    move_settled(&mut files, &mut kept, inbox.path(), quiet, &refuse);
                }
            }
        }
        let copies = fs::read_dir(inbox.path()).unwrap().count();
        assert_eq!(
            copies, 1,
            "copied once, not at every rescan nor after a restart"
        );
        assert!(
            path.exists(),
            "copied, not renamed: the copy path was taken"
        );
    }

    /// An escape sequence in a watched file's name had reached the filed name, the log and
    /// `files list` as raw bytes.
    #[test]
    fn a_name_with_control_characters_is_moved_in_cleaned() {
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let path = src.path().join("w\u{1b}[2Jx\n.csv");
        fs::write(&path, b"employee_id,email\n").unwrap();
        let (name, removed) = move_into(
            (&path, &fs::symlink_metadata(&path).unwrap()),
            inbox.path(),
            &|p| fs::remove_file(p),
        )
        .unwrap();
        assert_eq!((name.as_str(), removed), ("w_[2Jx_.csv", true));
        assert!(inbox.path().join("w_[2Jx_.csv").exists());
    }

    /// A file rewritten in place after it settled (a re-upload truncating it) is not taken,
    /// torn, nor removed: it is taken once it settles again. Copied in (it has another
    /// name), it had been taken cut short and the new roster removed unseen.
    #[test]
    fn a_file_changed_after_it_settled_is_left_to_settle_again() {
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        for linked in [false, true] {
            let path = src.path().join("r.csv");
            fs::write(&path, b"employee_id,email\n1,a@x.io\n").unwrap();
            if linked {
                fs::hard_link(&path, src.path().join("writer-copy")).unwrap();
            }
            let due = fs::symlink_metadata(&path).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            fs::write(&path, b"employee_id,email\n2,b@x.io\n3,c@x.io\n").unwrap();
            let err = move_into((&path, &due), inbox.path(), &|p| fs::remove_file(p)).unwrap_err();
            assert!(err.is::<Changed>(), "{err:#}");
            assert_eq!(
                fs::read_dir(inbox.path()).unwrap().count(),
                0,
                "nothing taken"
            );
            assert!(path.exists(), "left in watch_dir");
            let due = fs::symlink_metadata(&path).unwrap();
            move_into((&path, &due), inbox.path(), &|p| fs::remove_file(p)).unwrap();
            assert_eq!(fs::read_dir(inbox.path()).unwrap().count(), 1);
            for e in fs::read_dir(inbox.path()).unwrap() {
                fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
    }

    /// A FIFO swapped in for a file that settled is not waited on (no writer comes): it is
    /// not the file that settled, and nothing is taken.
    #[test]
    fn a_fifo_swapped_in_after_the_file_settled_is_not_waited_on() {
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let path = src.path().join("r.csv");
        fs::write(&path, b"employee_id,email\n1,a@x.io\n").unwrap();
        let due = fs::symlink_metadata(&path).unwrap();
        fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = move_into((&path, &due), inbox.path(), &|p| fs::remove_file(p)).unwrap_err();
        assert!(err.is::<Changed>(), "{err:#}");
        assert_eq!(fs::read_dir(inbox.path()).unwrap().count(), 0);
    }

    /// The copy's own check: a file rewritten in place after it was opened (a re-upload
    /// truncating it) is not taken from its copy, which leaves no part in inbox/, and stays
    /// in watch_dir to settle again. Taken, the copy had been torn and the new roster removed.
    #[test]
    fn a_file_rewritten_while_it_is_copied_is_not_taken() {
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let path = src.path().join("r.csv");
        fs::write(&path, b"employee_id,email\n1,a@x.io\n").unwrap();
        let mut open = fs::File::open(&path).unwrap();
        let due = open.metadata().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, b"employee_id,email\n2,b@x.io\n3,c@x.io\n").unwrap();
        let err = copy_in((&path, &due), &mut open, inbox.path(), "r.csv", &|p| {
            fs::remove_file(p)
        })
        .unwrap_err();
        assert!(err.root_cause().is::<Changed>(), "{err:#}");
        assert_eq!(
            fs::read_dir(inbox.path()).unwrap().count(),
            0,
            "no part left"
        );
        assert!(path.exists(), "left in watch_dir");
        // Unchanged since it was opened, the same copy is taken and the file removed.
        let mut open = fs::File::open(&path).unwrap();
        let due = open.metadata().unwrap();
        let (name, removed) = copy_in((&path, &due), &mut open, inbox.path(), "r.csv", &|p| {
            fs::remove_file(p)
        })
        .unwrap();
        assert!(removed && !path.exists());
        assert_eq!(
            fs::read(inbox.path().join(name)).unwrap(),
            b"employee_id,email\n2,b@x.io\n3,c@x.io\n"
        );
    }

    /// A file watch mode brings in is nobody's request, whatever mark it carries (the
    /// daemon user's own file, a copy of a filed one): it had been audited as that person's.
    #[test]
    fn a_file_brought_in_carries_no_asker() {
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let path = src.path().join("r.csv");
        fs::write(&path, b"employee_id,email\n").unwrap();
        assert!(crate::engine::asker::mark_path(&path, "alice"));
        let (name, _) = move_into(
            (&path, &fs::symlink_metadata(&path).unwrap()),
            inbox.path(),
            &|p| fs::remove_file(p),
        )
        .unwrap();
        assert_eq!(crate::engine::asker::of(&inbox.path().join(name)), None);
    }

    /// A file another user owns (the writer of watch_dir) is copied in, not renamed: the
    /// filed roster is autoprov's own, 0640, where a renamed one kept its writer's 0666
    /// (autoprov may not change the mode of another user's file).
    #[test]
    fn a_file_another_user_owns_is_copied_in_as_autoprovs_own() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !crate::util::test_as_root("it gives a file away") {
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let path = src.path().join("theirs.csv");
        fs::write(&path, b"employee_id,email\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        std::os::unix::fs::chown(&path, Some(5000), Some(5000)).unwrap();
        let (name, removed) = move_into(
            (&path, &fs::symlink_metadata(&path).unwrap()),
            inbox.path(),
            &|p| fs::remove_file(p),
        )
        .unwrap();
        assert!(removed && !path.exists());
        let meta = fs::metadata(inbox.path().join(&name)).unwrap();
        assert_eq!(meta.uid(), 0, "autoprov's own");
        assert_eq!(meta.mode() & 0o777, 0o640);
    }

    /// A copied file is removed only while its name is still its own: a newer roster
    /// renamed over it during the copy had been deleted unread.
    #[test]
    fn a_file_renamed_over_the_one_copied_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        fs::write(&path, b"old").unwrap();
        let open = fs::File::open(&path).unwrap();
        assert!(still_named(&path, &open));
        let newer = dir.path().join(".newer");
        fs::write(&newer, b"new").unwrap();
        fs::rename(&newer, &path).unwrap();
        assert!(!still_named(&path, &open));
        fs::remove_file(&path).unwrap();
        assert!(!still_named(&path, &open), "gone: nothing to remove");
    }

    /// A name of bytes that are not UTF-8 grows when cleaned, and one of 255 bytes leaves no
    /// room for `-2`: each is cut to fit. Its rename had failed at every scan.
    #[test]
    fn a_long_name_is_moved_in_cut_to_fit() {
        use std::os::unix::ffi::OsStrExt;
        let src = tempfile::tempdir().unwrap();
        let inbox = tempfile::tempdir().unwrap();
        let mut latin1 = vec![0xe4; 100];
        latin1.extend(b".csv");
        let path = src.path().join(std::ffi::OsStr::from_bytes(&latin1));
        fs::write(&path, b"employee_id,email\n").unwrap();
        let (name, _) = move_into(
            (&path, &fs::symlink_metadata(&path).unwrap()),
            inbox.path(),
            &|p| fs::remove_file(p),
        )
        .unwrap();
        assert!(name.len() <= crate::layout::MAX_RECEIVED_NAME && name.ends_with("~.csv"));
        let long = format!("{}.csv", "x".repeat(251));
        for _ in 0..2 {
            let path = src.path().join(&long);
            fs::write(&path, b"employee_id,email\n").unwrap();
            let due = fs::symlink_metadata(&path).unwrap();
            move_into((&path, &due), inbox.path(), &|p| fs::remove_file(p)).unwrap();
        }
        assert_eq!(fs::read_dir(inbox.path()).unwrap().count(), 3);
    }

    /// A symlink or a folder in watch_dir is never taken; a scan names it (the watcher
    /// warns once while it stays), where it had been dropped without a word.
    #[test]
    fn a_symlink_or_a_folder_in_watch_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(".target.csv");
        fs::write(&target, b"employee_id,email\n").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link.csv")).unwrap();
        fs::create_dir(dir.path().join("folder")).unwrap();
        fs::create_dir(dir.path().join("upload.part")).unwrap();
        fs::write(dir.path().join("roster.csv"), b"employee_id,email\n").unwrap();
        let mut files = HashMap::new();
        let mut not_taken = scan_dir(dir.path(), &mut files, false);
        not_taken.sort();
        assert_eq!(
            not_taken,
            [dir.path().join("folder"), dir.path().join("link.csv")]
        );
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            [&dir.path().join("roster.csv")]
        );
        let mut noted = HashSet::new();
        let news = not_taken_news(&mut noted, not_taken.clone()).unwrap();
        assert!(
            news.starts_with("watch_dir holds what is not a regular file")
                && news.contains("folder\"")
                && news.contains("link.csv\""),
            "{news}"
        );
        assert_eq!(noted.len(), 2);
        assert_eq!(not_taken_news(&mut noted, not_taken), None, "told once");
        assert_eq!(
            not_taken_news(&mut noted, vec![dir.path().join("folder")]),
            None
        );
        assert_eq!(noted.len(), 1, "one gone is forgotten");
        // Many at once: one line, five named.
        let many: Vec<PathBuf> = (0..300)
            .map(|i| dir.path().join(format!("d{i:03}")))
            .collect();
        let news = not_taken_news(&mut noted, many).unwrap();
        assert!(
            news.contains("d004\" and 295 more;") && !news.contains("d005"),
            "{news}"
        );
    }

    #[test]
    fn watch_mode_ignores_partial_names_in_any_letter_case() {
        // Issue 10 point 3: `roster.csv.Part` was taken in by watch mode alone.
        let dir = tempfile::tempdir().unwrap();
        for name in ["roster.csv", "roster.csv.Part", "x.TMP", ".hidden.csv"] {
            fs::write(dir.path().join(name), b"employee_id,email\n").unwrap();
        }
        let mut files = HashMap::new();
        scan_dir(dir.path(), &mut files, false);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            [&dir.path().join("roster.csv")]
        );
        let mut files = HashMap::new();
        let write_close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        observe(
            &mut files,
            &dir.path().join("roster.csv.Part"),
            &write_close,
        );
        observe(&mut files, &dir.path().join("y.FilePart"), &write_close);
        assert!(files.is_empty());
        observe(&mut files, &dir.path().join("roster.csv"), &write_close);
        assert_eq!(files.len(), 1);
    }
}
