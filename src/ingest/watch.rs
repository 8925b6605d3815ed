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
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn start(
    dir: &Path,
) -> Result<(
    notify::RecommendedWatcher,
    mpsc::UnboundedReceiver<notify::Result<Event>>,
)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .context("starting the filesystem watcher")?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok((watcher, rx))
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
pub async fn watch_inbox(
    inbox: PathBuf,
    rescan: Duration,
    engine: EngineHandle,
    shutdown: CancellationToken,
) -> Result<()> {
    let (_watcher, mut events) = start(&inbox)?;
    let mut tick = tokio::time::interval(rescan);
    tick.reset();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            event = events.recv() => match event {
                Some(event) => if completes(&event) { engine.scan() },
                None => return Ok(()),
            },
            _ = tick.tick() => engine.scan(),
        }
    }
}

/// What the watch-dir watcher knows about one file.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Closed after writing, renamed in, or found by a scan: waiting for `settle`.
    closed: bool,
    /// Last event or observed change.
    changed: Instant,
    /// Size and modification time when last looked at.
    seen: Option<(u64, SystemTime)>,
}

/// Watch mode: moves complete files from `dir` into inbox/. A file is complete when it was
/// closed after writing (or renamed in, or found at a scan) and then stayed unchanged for `settle`.
pub async fn watch_dir(
    dir: PathBuf,
    inbox: PathBuf,
    settle: Duration,
    rescan: Duration,
    engine: EngineHandle,
    shutdown: CancellationToken,
) -> Result<()> {
    let (_watcher, mut events) = start(&dir)?;
    let mut files: HashMap<PathBuf, Candidate> = HashMap::new();
    scan_dir(&dir, &mut files);
    let mut check = tokio::time::interval(
        settle
            .min(Duration::from_millis(250))
            .max(Duration::from_millis(50)),
    );
    let mut rescan_tick = tokio::time::interval(rescan);
    rescan_tick.reset();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            event = events.recv() => match event {
                Some(Ok(event)) => {
                    if event.need_rescan() {
                        scan_dir(&dir, &mut files);
                    }
                    for path in event.paths.iter().filter(|p| p.parent() == Some(dir.as_path())) {
                        observe(&mut files, path, &event.kind);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("watch_dir watcher: {e}; rescanning");
                    scan_dir(&dir, &mut files);
                }
                None => return Ok(()),
            },
            _ = rescan_tick.tick() => scan_dir(&dir, &mut files),
            _ = check.tick() => {
                // Moving may copy a whole roster across filesystems: not on an async worker's
                // time (the runtime has other workers for the SFTP and control tasks).
                let moved = tokio::task::block_in_place(|| move_settled(&mut files, &inbox, settle));
                if moved {
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
            let c = files.entry(path.to_path_buf()).or_insert(Candidate {
                closed: true,
                changed: now,
                seen: None,
            });
            c.closed = true;
            c.changed = now;
        }
        EventKind::Create(_) | EventKind::Modify(_) => {
            let c = files.entry(path.to_path_buf()).or_insert(Candidate {
                closed: false,
                changed: now,
                seen: None,
            });
            c.closed = false;
            c.changed = now;
        }
        _ => {}
    }
}

/// Adds regular files the watcher has not seen (present at start-up, or after lost events).
fn scan_dir(dir: &Path, files: &mut HashMap<PathBuf, Candidate>) {
    let Ok(entries) = fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "cannot list source.watch_dir");
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !is_ignored(&name) {
            files.entry(entry.path()).or_insert(Candidate {
                closed: true,
                changed: Instant::now(),
                seen: None,
            });
        }
    }
}

/// Moves files that are closed and unchanged for `settle`; true when any was moved.
fn move_settled(files: &mut HashMap<PathBuf, Candidate>, inbox: &Path, settle: Duration) -> bool {
    let mut moved = false;
    let now = Instant::now();
    let mut done = Vec::new();
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
        if !c.closed || now.duration_since(c.changed) < settle {
            continue;
        }
        match move_into(path, inbox) {
            Ok(name) => {
                tracing::info!(file = %name, "complete file moved from watch_dir into inbox/");
                moved = true;
            }
            Err(e) => {
                tracing::error!(file = %path.display(), "moving into inbox/: {e:#}; will retry")
            }
        }
        done.push(path.clone());
    }
    for path in done {
        files.remove(&path);
    }
    moved
}

/// Renames (or, across filesystems, copies, fsyncs and renames) a file into inbox/ under a free name.
fn move_into(path: &Path, inbox: &Path) -> Result<String> {
    let name = path
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned();
    let candidate = match crate::util::rename_into_free_name(path, inbox, &name) {
        Ok(candidate) => candidate,
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            // Another filesystem: copy through a hidden name. O_NOFOLLOW: a symlink swapped
            // in after the check is refused, not followed.
            use std::os::unix::fs::OpenOptionsExt;
            let mut src = fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            let tmp = inbox.join(format!(".watch-{}.part", std::process::id()));
            let mut dst = fs::File::create(&tmp)?;
            std::io::copy(&mut src, &mut dst)
                .with_context(|| format!("copying {}", path.display()))?;
            dst.sync_all()?;
            let candidate = crate::util::rename_into_free_name(&tmp, inbox, &name)?;
            fs::remove_file(path)?;
            candidate
        }
        Err(e) => return Err(e).with_context(|| format!("moving {}", path.display())),
    };
    // A renamed file keeps the mode its writer gave it (often world-readable).
    if let Err(e) = crate::util::restrict_mode(&inbox.join(&candidate)) {
        tracing::warn!(file = %candidate, "cannot restrict the mode of inbox/{candidate}: {e}");
    }
    crate::util::fsync_dir(inbox)?;
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_mode_ignores_partial_names_in_any_letter_case() {
        // Issue 10 point 3: `roster.csv.Part` was taken in by watch mode alone.
        let dir = tempfile::tempdir().unwrap();
        for name in ["roster.csv", "roster.csv.Part", "x.TMP", ".hidden.csv"] {
            fs::write(dir.path().join(name), b"employee_id,email\n").unwrap();
        }
        let mut files = HashMap::new();
        scan_dir(dir.path(), &mut files);
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
