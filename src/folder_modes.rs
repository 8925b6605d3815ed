//! The modes of the data dir and what it holds, tightened at the daemon's start: they are
//! made 0750 and 0640 (host keys 0700 and 0600) when created, but ones made looser since
//! (`chmod -R 777` by hand, an archive restored) had been kept without a word. A writable
//! `host_keys/` lets anyone replace the SFTP server's key, a writable `store/db` lets the
//! group rewrite who is an admin, and a writable `processed/` or `backups/` lets them plant
//! files there.

use crate::layout::Paths;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How deep below the data dir folders are looked into (`drop/processed/` is two down,
/// `store/blobs/` two, their files three).
const DEPTH: usize = 3;
/// The paths named in the warning; the rest are counted.
const NAMED: usize = 5;

/// Takes group write and every right of others off the data dir, its folders and their
/// files (every right of the group too under `host_keys/`), without following a symlink,
/// with one warning naming what changed; what cannot be changed (another user's) is warned
/// about as it is.
pub fn tighten(data_dir: &Path, paths: &Paths) {
    // The data dir itself may be a link (`/var/lib/autoprov` → `/srv/autoprov`): followed,
    // that one only (walked from the link, nothing under it had been looked at).
    let root = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let host_keys = match paths.host_keys.strip_prefix(data_dir) {
        Ok(rel) => root.join(rel),
        Err(_) => paths.host_keys.clone(),
    };
    let inbox = match paths.folder("inbox").strip_prefix(data_dir) {
        Ok(rel) => root.join(rel),
        Err(_) => paths.folder("inbox"),
    };
    let (mut changed, mut unchanged) = (Vec::new(), Vec::new());
    let skip = Skip {
        host_keys: &host_keys,
        inbox: &inbox,
    };
    walk(
        rustix::fs::CWD,
        &root,
        &root,
        0,
        &skip,
        (&mut changed, &mut unchanged),
    );
    tighten_waiting(&inbox, (&mut changed, &mut unchanged));
    if !changed.is_empty() {
        tracing::warn!(
            "files or folders of the data dir were open to others than autoprov (group write, \
             or others' rights): tightened: {}",
            named(&changed)
        );
    }
    if !unchanged.is_empty() {
        tracing::warn!(
            "files or folders of the data dir may be open to others than autoprov and could \
             not be tightened or looked into (another user's?): {}; tighten them",
            named(&unchanged)
        );
    }
}

/// The first [`NAMED`] of `paths`, and how many more.
fn named(paths: &[(PathBuf, String)]) -> String {
    let shown = paths.iter().map(|(p, why)| format!("{}{why}", p.display()));
    crate::util::first_named(shown, NAMED)
}

/// What a walk tightened, and what it could not, each with its modes (and why not).
type Found<'a> = (
    &'a mut Vec<(PathBuf, String)>,
    &'a mut Vec<(PathBuf, String)>,
);

/// Tightens the files waiting in `inbox/` in the order they are processed in, which their
/// ctimes give and a change of mode sets: from the first one to tighten on, each is given
/// its mode (tightened, or as it was) in turn, with a ctime later than the one before it.
/// Tightened in the walk's order, a restart had put an older roster after a newer one;
/// left loose, a group member could rewrite a roster before it was applied. When one of
/// them is another user's (so its ctime cannot be set), none is changed, with a warning.
fn tighten_waiting(inbox: &Path, found: Found<'_>) {
    use std::os::unix::fs::MetadataExt;
    let (files, unordered) = waiting(inbox, &HashSet::new());
    // Names the engine leaves alone (a `.part` left by a stop) are in no order.
    for (_, path, meta) in &unordered {
        give_in_turn(path, meta, None, (&mut *found.0, &mut *found.1));
    }
    let loose = |meta: &std::fs::Metadata| meta.permissions().mode() & 0o027 != 0;
    let Some(first) = files.iter().position(|(_, _, meta)| loose(meta)) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    let ours = |meta: &std::fs::Metadata| me == 0 || meta.uid() == me;
    if let Some((_, theirs, _)) = files[first..].iter().find(|(_, _, meta)| !ours(meta)) {
        let left: Vec<_> = (files[first..].iter())
            .filter(|(_, _, meta)| loose(meta))
            .map(|(_, path, meta)| (path.clone(), format!(" ({:04o})", mode_of(meta))))
            .collect();
        tracing::warn!(
            "files waiting in inbox/ are open to others than autoprov: {}; they were left as \
             they are, because {} is another user's and changing the modes around it would \
             reorder the files (their ctimes are the order they are processed in); they are \
             processed as they are, in their order (a chown or chmod by hand would reorder \
             them too): if someone may have changed one, check what its report in processed/ \
             says was applied, and deliver a correct roster",
            named(&left),
            theirs.display()
        );
        return;
    }
    let mut known: HashSet<OsString> = files.iter().map(|f| f.0.1.clone()).collect();
    let (mut last, mut batch) = (None, files.into_iter().skip(first).collect::<Vec<_>>());
    // A file moved in by hand during the pass came after every file it reached: it is
    // given its mode again after them (it had gone ahead of the older ones). A few rounds
    // at most: nothing else delivers while the daemon starts.
    for _ in 0..8 {
        for (_, path, meta) in &batch {
            give_in_turn(path, meta, Some(&mut last), (&mut *found.0, &mut *found.1));
        }
        batch = waiting(inbox, &known).0;
        if batch.is_empty() {
            break;
        }
        known.extend(batch.iter().map(|f| f.0.1.clone()));
    }
}

/// A file waiting in inbox/: its place in the order, its path and what `lstat` said.
type Waiting = (
    (crate::engine::arrivals::Arrival, OsString),
    PathBuf,
    std::fs::Metadata,
);

/// The regular files in `inbox` not among `known`, in the order they are processed in, and
/// (apart) those whose names the engine leaves alone.
fn waiting(inbox: &Path, known: &HashSet<OsString>) -> (Vec<Waiting>, Vec<Waiting>) {
    use crate::engine::arrivals::inbox_order;
    let Ok(entries) = std::fs::read_dir(inbox) else {
        return Default::default();
    };
    let (mut files, ignored): (Vec<_>, Vec<_>) = (entries.flatten())
        .filter(|e| !known.contains(&e.file_name()))
        .filter_map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            meta.is_file()
                .then(|| ((inbox_order(&meta), e.file_name()), e.path(), meta))
        })
        .partition(|f| !crate::layout::is_ignored(&f.0.1.to_string_lossy()));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    (files, ignored)
}

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// Gives the file at `path` its mode without the group's write and others' rights. With
/// `last` (the order kept), it is given it even when tight, with a ctime later than `last`,
/// which then moves on to it; without, only a loose one is changed.
fn give_in_turn(
    path: &Path,
    meta: &std::fs::Metadata,
    mut last: Option<&mut Option<std::time::SystemTime>>,
    found: Found<'_>,
) {
    use crate::engine::arrivals::completion_time;
    let (mode, strict) = (mode_of(meta), mode_of(meta) & !0o027);
    if last.is_none() && mode == strict {
        return;
    }
    loop {
        if let Err(e) = chmod_same(path, meta, strict) {
            found
                .1
                .push((path.to_path_buf(), format!(" ({mode:04o}: {e})")));
            return;
        }
        let Ok(now) = std::fs::symlink_metadata(path) else {
            return;
        };
        let later = match last.as_deref_mut() {
            None => true,
            Some(last) => {
                let later = last.is_none_or(|last| completion_time(&now) > last);
                if later {
                    *last = Some(completion_time(&now));
                }
                later
            }
        };
        if later {
            // The mode it has: the kernel takes setgid off a file of another group
            // (of one that was not loose too, given its mode again: not told).
            if mode & 0o027 != 0 {
                let got = mode_of(&now);
                (found.0).push((path.to_path_buf(), format!(" ({mode:04o} → {got:04o})")));
            }
            return;
        }
        // The clock's tick has not moved on since the file before: wait for the next.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Where the walk tightens otherwise: `host_keys/` (the group loses every right), and
/// `inbox/`, whose files [`tighten_waiting`] tightens in their order.
struct Skip<'a> {
    host_keys: &'a Path,
    inbox: &'a Path,
}

/// Tightens `name` in the folder `dir` (shown as `path`) and, below [`DEPTH`], what it
/// holds, not following a symlink: each is opened (as a path) without following one and
/// changed through that descriptor only if it is what `lstat` saw, and a folder is read
/// through its own. Checked by path and changed by path, a link that a group member
/// swapped in between (in a folder of theirs) had been followed: a secret outside the data
/// dir had been given the group's read.
fn walk(
    dir: BorrowedFd<'_>,
    name: &Path,
    path: &Path,
    depth: usize,
    skip: &Skip<'_>,
    found: Found<'_>,
) {
    let Ok(seen) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return;
    };
    let kind = FileType::from_raw_mode(seen.st_mode);
    let is_dir = kind == FileType::Directory;
    // Files and folders only; the files waiting in inbox/ are tightened in their order.
    let waiting = kind == FileType::RegularFile && path.parent() == Some(skip.inbox);
    if !is_dir && (kind != FileType::RegularFile || waiting) {
        return;
    }
    // A host key's `.pub` is made 0640 (a public key): taken to 0600, every second start
    // had warned that it was tightened.
    let public = !is_dir && path.extension().is_some_and(|e| e == "pub");
    let taken = match path.starts_with(skip.host_keys) && !public {
        true => 0o077,
        false => 0o027,
    };
    let mode = seen.st_mode & 0o7777;
    if mode & taken != 0 {
        let strict = mode & !taken;
        match chmod_at(dir, name, &seen, strict) {
            // The mode it has: the kernel takes setgid off a file of another group.
            Ok(got) => found
                .0
                .push((path.to_path_buf(), format!(" ({mode:04o} → {got:04o})"))),
            Err(e) => found
                .1
                .push((path.to_path_buf(), format!(" ({mode:04o}: {e})"))),
        }
    }
    if !is_dir || depth >= DEPTH {
        return;
    }
    let listed = open_same(dir, name, &seen, OFlags::RDONLY | OFlags::DIRECTORY)
        .and_then(|fd| Ok((rustix::fs::Dir::read_from(&fd)?, fd)));
    let (mut entries, folder) = match listed {
        Ok(listed) => listed,
        // What it holds is not looked at: said when the group or others may reach it (it
        // had been skipped without a word); a closed one (`lost+found`, 0700) is no one's.
        Err(e) if (mode & !taken) & 0o077 != 0 => {
            let why = format!(" (a folder whose files could not be looked at: {e})");
            return found.1.push((path.to_path_buf(), why));
        }
        Err(_) => return,
    };
    while let Some(Ok(entry)) = entries.read() {
        let file_name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
        if file_name == "." || file_name == ".." {
            continue;
        }
        let name = Path::new(file_name);
        let found = (&mut *found.0, &mut *found.1);
        walk(
            folder.as_fd(),
            name,
            &path.join(name),
            depth + 1,
            skip,
            found,
        );
    }
}

/// `name` in the folder `dir` opened with `flags`, not following a symlink, if it is still
/// the file `seen` (by `lstat`); an error otherwise (a link or another file put there since).
fn open_same(
    dir: BorrowedFd<'_>,
    name: &Path,
    seen: &Stat,
    flags: OFlags,
) -> std::io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    same_file(
        &rustix::fs::fstat(&fd)?,
        (seen.st_dev, seen.st_ino, seen.st_mode),
    )?;
    Ok(fd)
}

/// Ok when `now` is the file `seen` (device, inode and mode, whose type is compared);
/// otherwise the error of one replaced since it was looked at.
fn same_file(now: &Stat, (dev, ino, mode): (u64, u64, u32)) -> std::io::Result<()> {
    let kind = |mode: u32| mode & 0o170000;
    match (now.st_dev, now.st_ino, kind(now.st_mode)) == (dev, ino, kind(mode)) {
        true => Ok(()),
        false => Err(std::io::Error::other(
            "replaced while it was looked at; not changed",
        )),
    }
}

/// Gives the file at `path` the mode `mode` if it is still the file `meta` describes (by
/// `lstat`), not following a symlink: the mode it has then.
fn chmod_same(path: &Path, meta: &std::fs::Metadata, mode: u32) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let seen = rustix::fs::statat(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW)?;
    same_file(&seen, (meta.dev(), meta.ino(), meta.mode()))?;
    chmod_at(rustix::fs::CWD, path, &seen, mode)
}

/// Gives `name` in the folder `dir`, if it is still the file `seen`, the mode `mode`, not
/// following a symlink: through a descriptor opened to read, or, for one its owner may not
/// read, one opened as a path ([`chmod_fd`]). The mode it has then.
fn chmod_at(dir: BorrowedFd<'_>, name: &Path, seen: &Stat, mode: u32) -> std::io::Result<u32> {
    match open_same(dir, name, seen, OFlags::RDONLY) {
        Ok(fd) => {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            Ok(rustix::fs::fstat(&fd)?.st_mode & 0o7777)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            chmod_fd(&open_same(dir, name, seen, OFlags::PATH)?, mode)
        }
        Err(e) => Err(e),
    }
}

/// Gives the file that `fd` (opened as a path) holds the mode `mode`, through
/// `/proc/self/fd` as glibc's `fchmodat(…, AT_SYMLINK_NOFOLLOW)` does (`fchmod` refuses a
/// path descriptor, and opening to read needs a right that changing the mode does not):
/// the mode it has then.
fn chmod_fd(fd: &OwnedFd, mode: u32) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let held = format!("/proc/self/fd/{}", fd.as_raw_fd());
    if let Err(e) = std::fs::set_permissions(&held, std::fs::Permissions::from_mode(mode)) {
        return Err(match Path::new("/proc/self/fd").exists() {
            true => e,
            false => std::io::Error::other(
                "its owner may not read it, and without /proc mounted its mode cannot be \
                 changed without following a link",
            ),
        });
    }
    Ok(rustix::fs::fstat(fd)?.st_mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The files waiting in inbox/ are tightened in the order they are processed in, each
    /// with a later ctime than the one before: tightened in the walk's order (or left loose,
    /// for the group to rewrite), a restart had put an older roster after a newer one.
    #[test]
    fn waiting_files_are_tightened_in_their_order() {
        use crate::engine::arrivals::inbox_order;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let inbox = paths.folder("inbox");
        fs::create_dir_all(&inbox).unwrap();
        // Arrived in this order, the walk's (name) order another; some tight, some loose.
        let names = ["m.csv", "z.csv", "a.csv", "q.csv", "b.csv"];
        for (i, name) in names.iter().enumerate() {
            fs::write(inbox.join(name), b"x").unwrap();
            let mode = if i % 2 == 0 { 0o666 } else { 0o640 };
            fs::set_permissions(inbox.join(name), fs::Permissions::from_mode(mode)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        let order = || {
            let mut found: Vec<_> = names
                .iter()
                .map(|n| (inbox_order(&fs::metadata(inbox.join(n)).unwrap()), *n))
                .collect();
            found.sort();
            found.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
        };
        assert_eq!(order(), names);
        tighten(dir.path(), &paths);
        assert_eq!(order(), names, "the same order after");
        for name in names {
            let mode = fs::metadata(inbox.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{name}");
        }
    }

    /// A loose file the engine leaves alone (a `.part` left by a stop) is tightened in no
    /// order: the waiting rosters keep their ctimes (it had been ordered among them, and
    /// every roster after it given its mode again).
    #[test]
    fn a_part_left_in_inbox_is_tightened_without_touching_the_rosters() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let inbox = paths.folder("inbox");
        fs::create_dir_all(&inbox).unwrap();
        let part = inbox.join(".a.csv.part");
        fs::write(&part, b"x").unwrap();
        fs::set_permissions(&part, fs::Permissions::from_mode(0o666)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(15));
        let roster = inbox.join("b.csv");
        fs::write(&roster, b"x").unwrap();
        fs::set_permissions(&roster, fs::Permissions::from_mode(0o640)).unwrap();
        let ctime = |p: &Path| {
            let m = fs::metadata(p).unwrap();
            (m.ctime(), m.ctime_nsec())
        };
        let before = ctime(&roster);
        std::thread::sleep(std::time::Duration::from_millis(15));
        tighten(dir.path(), &paths);
        assert_eq!(
            fs::metadata(&part).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(ctime(&roster), before, "the roster is not touched");
    }

    /// A file replaced by a symlink after it was looked at is not changed, nor what the
    /// link points to: checked by path and changed by path, a group member's swap (in a
    /// folder of theirs) had given a secret outside the data dir the group's read.
    #[test]
    fn a_link_swapped_in_after_the_look_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o600)).unwrap();
        let swap = |name: &str| {
            let path = dir.path().join(name);
            fs::write(&path, b"x").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
            let meta = fs::symlink_metadata(&path).unwrap();
            let seen = rustix::fs::statat(rustix::fs::CWD, &path, AtFlags::SYMLINK_NOFOLLOW);
            fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(outside.path(), &path).unwrap();
            (path, meta, seen.unwrap())
        };
        // The waiting files' way, and the walk's.
        let (path, meta, _) = swap("waiting.csv");
        let e = chmod_same(&path, &meta, 0o640).unwrap_err();
        assert!(
            e.to_string().contains("replaced while it was looked at"),
            "{e}"
        );
        let (path, _, seen) = swap("walked.csv");
        let e = open_same(rustix::fs::CWD, &path, &seen, OFlags::PATH).unwrap_err();
        assert!(
            e.to_string().contains("replaced while it was looked at"),
            "{e}"
        );
        let mode = fs::metadata(outside.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the link's target is left alone");
        // A file still the one looked at is changed through its descriptor.
        let kept = dir.path().join("kept.csv");
        fs::write(&kept, b"x").unwrap();
        fs::set_permissions(&kept, fs::Permissions::from_mode(0o666)).unwrap();
        let meta = fs::symlink_metadata(&kept).unwrap();
        assert_eq!(chmod_same(&kept, &meta, 0o640).unwrap(), 0o640);
    }

    #[test]
    fn loose_folders_and_files_are_tightened_and_tight_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let key = paths.host_keys.join("ssh_host_ed25519_key");
        let public = paths.host_keys.join("ssh_host_ed25519_key.pub");
        let db = paths.store.join("db");
        let roster = paths.folder("processed").join("x.csv");
        let waiting = paths.folder("inbox").join("w.csv");
        for f in [
            &paths.host_keys,
            &paths.backups,
            &paths.folder("processed"),
            &paths.folder("inbox"),
            &paths.store,
        ] {
            fs::create_dir_all(f).unwrap();
            fs::set_permissions(f, fs::Permissions::from_mode(0o777)).unwrap();
        }
        for f in [&key, &db, &roster, &waiting] {
            fs::write(f, b"x").unwrap();
            fs::set_permissions(f, fs::Permissions::from_mode(0o666)).unwrap();
        }
        fs::write(&public, b"ssh-ed25519 x").unwrap();
        fs::set_permissions(&public, fs::Permissions::from_mode(0o644)).unwrap();
        let not_a_key = paths.host_keys.join("folder.pub");
        fs::create_dir(&not_a_key).unwrap();
        fs::set_permissions(&not_a_key, fs::Permissions::from_mode(0o755)).unwrap();
        let kept = paths.backups.join("kept");
        fs::write(&kept, b"x").unwrap();
        fs::set_permissions(&kept, fs::Permissions::from_mode(0o600)).unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o666)).unwrap();
        std::os::unix::fs::symlink(outside.path(), paths.store.join("link")).unwrap();
        // The data dir named through a link of its own: followed, that one only.
        let linked = tempfile::tempdir().unwrap();
        let data_dir = linked.path().join("data");
        std::os::unix::fs::symlink(dir.path(), &data_dir).unwrap();
        tighten(&data_dir, &Paths::new(&data_dir));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&paths.host_keys), 0o700);
        assert_eq!(mode(&key), 0o600);
        assert_eq!(
            mode(&public),
            0o640,
            "a public key keeps the group's read, as made"
        );
        assert_eq!(mode(&not_a_key), 0o700, "a folder named .pub does not");
        assert_eq!(mode(&paths.backups), 0o750);
        assert_eq!(mode(&paths.store), 0o750);
        assert_eq!(mode(&db), 0o640, "the store's own files");
        assert_eq!(mode(&roster), 0o640);
        assert_eq!(mode(&kept), 0o600, "a stricter mode is kept");
        assert_eq!(mode(outside.path()), 0o666, "a link is not followed");
        assert_eq!(mode(&paths.folder("inbox")), 0o750);
        assert_eq!(mode(&waiting), 0o640, "a file waiting in inbox/ too");
    }
}
