//! Small helpers for the adapters: time stamps, hashing, durable file writes.

use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `N` bytes from the kernel's random source.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    use std::io::Read;
    let mut bytes = [0u8; N];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes))?;
    Ok(bytes)
}

/// A time as RFC 3339 UTC with seconds, e.g. `2026-11-26T07:46:13Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `text`, an RFC 3339 time (`Z` or an offset such as `+02:00`, `T` or a space before the
/// time, any letter case, fractions of a second) or a date alone (its midnight UTC), as
/// [`rfc3339`] writes the same instant, a fraction cut to its second: what times written so
/// compare against as text. Cut, not rounded up: a time written so stands for its whole
/// second, and an entry of that second may come after the fraction given (a reader who
/// resumes from it sees the entry again rather than never). `None` when it is neither, or
/// when the instant is past 9999-12-31T23:59:59Z, which RFC 3339 cannot write.
pub fn utc_second(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_uppercase();
    // A time is ASCII: slicing other text by byte counts could cut a character (a panic).
    if !t.is_ascii() {
        return None;
    }
    let (base, east) = if let Some(base) = t.strip_suffix('Z') {
        (base.to_string(), 0i64)
    } else if t.len() == 10 {
        (format!("{t}T00:00:00"), 0)
    } else {
        let (base, zone) = t.split_at(t.len().checked_sub(6)?);
        let sign = match zone.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        (base.to_string(), sign * (hours * 3600 + minutes * 60))
    };
    if base.len() < 19 || !matches!(base.as_bytes()[10], b'T' | b' ') {
        return None;
    }
    let local = match humantime::parse_rfc3339_weak(&base) {
        Ok(local) => local,
        // humantime reads no year before 1970, when no entry was written: such a time
        // (checked with a leap year in its place) lists them all.
        Err(_)
            if base[..4].parse::<u16>().is_ok_and(|year| year < 1970)
                && humantime::parse_rfc3339_weak(&format!("1972{}", &base[4..])).is_ok() =>
        {
            std::time::UNIX_EPOCH
        }
        Err(_) => return None,
    };
    let at = match east >= 0 {
        true => local.checked_sub(std::time::Duration::from_secs(east as u64))?,
        false => local.checked_add(std::time::Duration::from_secs((-east) as u64))?,
    };
    // Before 1970 no entry was written: such a time lists them all (it had been "not a
    // time").
    let seconds = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    // 9999-12-31T23:59:59Z: an offset west of UTC moves a time of that day past it, whose
    // formatting had panicked (a read request any caller may send).
    const LAST: u64 = 253_402_300_799;
    (seconds <= LAST)
        .then(|| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds)))
}

/// Whether `text` is a time as [`compact_timestamp`] writes it (`20261126T074613Z`): the
/// prefix of filed names and of automatic backups' names.
pub fn is_compact_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// `2026-11-26T07:46:13Z` -> `20261126T074613Z`, the prefix of filed names.
pub fn compact_timestamp(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

/// The text of a small file autoprov reads whole (its config, a credential, the API
/// tokens): at most `max` bytes, else an error saying so. A device named there
/// (`/dev/zero`) had been read until the system ran out of memory; a FIFO (`--config
/// <(…)`) still reads.
pub fn read_small_text(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "more than the {max} bytes such a file may have"
        )));
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(&Sha256::digest(bytes))
}

fn lower_hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file read in chunks (for files too large to hold), lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(lower_hex(&hasher.finalize()))
}

/// Writes `bytes` to `path` through a temp file in the same folder, fsync, rename, fsync folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for content written piece by piece (through a buffer) by `fill`.
///
/// A long file is made durable as it is written: every [`SYNC_AHEAD`] bytes a second thread
/// syncs what was written so far while `fill` goes on, so the fsync before the rename waits
/// for the last part only. A first import's two reports (340 MB) took ~0.12 s to fsync after
/// they were written, both cores idle, before its commit could start.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_whole(path, fill, |tmp, path| fs::rename(tmp, path))
}

/// [`write_atomic_with`] for a file that must be new: fails with `AlreadyExists`, leaving
/// what is at `path` alone (a regular file, a device, a symlink), when it exists or
/// appears before the rename.
pub fn write_new_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    write_whole(path, fill, |tmp, path| {
        rename_noreplace(tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(tmp);
        })
    })
}

/// Writes a file whole under a temporary name, synced, then `rename`s it to `path` and
/// syncs its folder.
fn write_whole(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    rename: impl FnOnce(&Path, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = create_fresh(&tmp)?;
    // A write that fails (a full disk) leaves no part of the file behind (a backup's part
    // is an export of every account).
    let written = std::thread::scope(|scope| {
        let mut w = std::io::BufWriter::with_capacity(
            1 << 16,
            SyncingAhead {
                file,
                unsynced: 0,
                scope,
                syncer: None,
            },
        );
        fill(&mut w)?;
        let SyncingAhead { file, syncer, .. } = w.into_inner().map_err(|e| e.into_error())?;
        syncer.map_or(Ok(()), SyncAhead::finish)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, path)?;
    fsync_dir(dir)
}

/// Creates `tmp` as a new file, after removing whatever has that name (a temporary file an
/// earlier write left): never opened through a symlink or a hard link someone put there, so
/// that writing it cannot truncate or fill another file (`File::create` follows symlinks).
pub fn create_fresh(tmp: &Path) -> std::io::Result<fs::File> {
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
}

/// How many bytes [`write_atomic_with`] writes between two early syncs (in tests, few, so
/// that a short file goes through them).
#[cfg(not(test))]
const SYNC_AHEAD: u64 = 32 << 20;
/// `path` with its `.` and `..` parts taken away by name (`/repo/config/../var` is
/// `/repo/var`), as messages show it; a `..` is not resolved through a link.
pub fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
const SYNC_AHEAD: u64 = 1 << 12;

/// A file written through, asking for a sync of what it holds every [`SYNC_AHEAD`] bytes;
/// the thread that syncs is started at the first (a short file starts none).
struct SyncingAhead<'scope, 'env> {
    file: fs::File,
    unsynced: u64,
    scope: &'scope std::thread::Scope<'scope, 'env>,
    syncer: Option<SyncAhead<'scope>>,
}

impl std::io::Write for SyncingAhead<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_AHEAD {
            self.unsynced = 0;
            let (scope, file) = (self.scope, &self.file);
            let syncer = self
                .syncer
                .get_or_insert_with(|| SyncAhead::start(scope, file));
            syncer.ask();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Syncs a file's data on a thread of its own each time it is asked, while the file goes on
/// being written: the sync after the writing then has only the last part left. Asked while
/// a sync runs, the next covers all written by then. Where no thread can be started (nor
/// the file's handle cloned for it), asking does nothing (the file is synced whole after, as
/// without it).
pub struct SyncAhead<'scope> {
    ask: Option<std::sync::mpsc::Sender<()>>,
    syncer: Option<std::thread::ScopedJoinHandle<'scope, std::io::Result<()>>>,
}

impl<'scope> SyncAhead<'scope> {
    /// A syncer of `file` in `scope`: one that does nothing when the file's handle cannot
    /// be cloned for it (no descriptor left), as when no thread can be started.
    pub fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        file: &fs::File,
    ) -> SyncAhead<'scope> {
        let Ok(early) = file.try_clone() else {
            return SyncAhead {
                ask: None,
                syncer: None,
            };
        };
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let sync = move || {
            asked.iter().try_for_each(|()| {
                while asked.try_recv().is_ok() {}
                early.sync_data()
            })
        };
        let syncer = std::thread::Builder::new()
            .name("autoprov-sync-ahead".into())
            .spawn_scoped(scope, sync)
            .ok();
        SyncAhead {
            ask: syncer.as_ref().map(|_| ask),
            syncer,
        }
    }

    /// Asks for a sync of what the file holds now (the syncer stops only after an error,
    /// which [`Self::finish`] reports).
    pub fn ask(&self) {
        if let Some(ask) = &self.ask {
            let _ = ask.send(());
        }
    }

    /// Waits for the syncs asked for; the first error of one.
    pub fn finish(self) -> std::io::Result<()> {
        drop(self.ask);
        self.syncer.map_or(Ok(()), |syncer| {
            syncer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// Makes a folder's entries (renames, creations) durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// `name`, or the first of `name-2.ext`, `name-3.ext`… (suffix before the last dot, or at
/// the end when there is none) that `taken` says is free.
pub fn free_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    numbered(name, stem, ext, taken)
}

/// [`free_name`] for a name in inbox/: a dry run's `.dryrun.csv` stays whole at the end
/// (`x-2.dryrun.csv`). Numbered before the last dot, `x.dryrun-2.csv` was no dry run and
/// was applied for real.
pub fn free_inbox_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let suffix = crate::layout::DRY_RUN_SUFFIX.len();
    match crate::layout::is_dry_run(name) && name.len() > suffix {
        true => {
            let (stem, ext) = name.split_at(name.len() - suffix);
            numbered(name, stem, ext, taken)
        }
        false => free_name(name, taken),
    }
}

/// `name`, or the first free `<stem>-N<ext>`.
pub fn numbered(name: &str, stem: &str, ext: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut candidate = name.to_string();
    let mut n = 1;
    while taken(&candidate) {
        n += 1;
        candidate = format!("{stem}-{n}{ext}");
    }
    candidate
}

/// `name` cut to at most `max` bytes, its extension kept (a `~` where it was cut); a dry
/// run's `.dryrun.csv` is kept whole: cut to `.csv`, the file would have been applied.
pub fn fitting(name: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if name.len() <= max {
        return name.into();
    }
    let dry_run = crate::layout::DRY_RUN_SUFFIX.len();
    let ext = match crate::layout::is_dry_run(name) {
        true => &name[name.len() - dry_run..],
        false => name
            .rfind('.')
            .map(|at| &name[at..])
            .filter(|ext| ext.len() <= 16)
            .unwrap_or(""),
    };
    let mut keep = max - ext.len() - 1;
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}~{ext}", &name[..keep]).into()
}

/// Renames `from` to `to` unless `to` exists (atomically where the filesystem supports it).
pub fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            // Filesystem without RENAME_NOREPLACE: check, then rename (a small race).
            match fs::symlink_metadata(to) {
                Ok(_) => Err(std::io::ErrorKind::AlreadyExists.into()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::rename(from, to),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Renames `tmp` into the inbox folder `dir` under `name` or the first free `name-2`,
/// `name-3`… ([`free_inbox_name`]), never replacing a file another writer put there
/// meanwhile; returns the name used.
pub fn rename_into_free_name(tmp: &Path, dir: &Path, name: &str) -> std::io::Result<String> {
    // Each retry is a name another writer took meanwhile: a few at most.
    for _ in 0..100 {
        let mut candidate = free_inbox_name(name, |n| is_taken(&dir.join(n)));
        // A numbered name within a file name's 255 bytes: a 254-byte name's `-2` had failed
        // its rename (an SFTP upload so named, kept because another took its name, was lost).
        if candidate.len() > 255 {
            candidate = free_inbox_name(&fitting(name, 255 - 8), |n| is_taken(&dir.join(n)));
        }
        match rename_noreplace(tmp, &dir.join(&candidate)) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no free name for {name} in {}: each one tried was taken as it was tried",
        dir.display()
    )))
}

/// Whether a name is taken in its folder: by anything, a symlink too, whether or not it
/// points anywhere (`Path::exists` follows a link, and a dangling one read as free had
/// sent the rename after it round for ever). A name that cannot be looked at (too long, a
/// folder that is not one or may not be searched) is not taken: what is done with it then
/// fails with that error, instead of every next name being tried in vain, for ever.
pub fn is_taken(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Takes group write and every permission of others off a file that was moved in with the
/// mode its writer gave it (watch mode renames files into inbox/): HR data is never
/// world-readable. Symlinks are left alone (never followed).
pub fn restrict_mode(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let mode = f.metadata()?.permissions().mode() & 0o7777;
    let strict = mode & !0o027;
    if strict != mode {
        f.set_permissions(fs::Permissions::from_mode(strict))?;
    }
    Ok(())
}

/// The source a connection counts against (the SFTP server's rate and its connections,
/// the web section's connections): its IPv4 address (an IPv4-mapped IPv6 address counts as
/// IPv4), or the /64 of its IPv6 address, since one IPv6 host usually has a whole /64 to
/// pick addresses from.
pub fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Crash testing: when `AUTOPROV_CRASH_AT` names this point, the process aborts here, as a
/// power cut would stop it. Used by tests/crash.rs; unset in production, where this is one
/// environment lookup per call.
pub fn crash_point(point: &str) {
    if std::env::var_os("AUTOPROV_CRASH_AT").is_some_and(|v| v == point) {
        eprintln!("autoprov: AUTOPROV_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

/// Testing a stop in the middle of a file: when `AUTOPROV_PAUSE_AT` names this point, the
/// thread sleeps a second here, having said so on stderr. Used by tests/notify.rs; unset in
/// production, where this is one environment lookup per call.
pub fn pause_point(point: &str) {
    if std::env::var_os("AUTOPROV_PAUSE_AT").is_some_and(|v| v == point) {
        eprintln!("autoprov: AUTOPROV_PAUSE_AT={point}: pausing");
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The first `max` bytes of the file at `path` (a roster's head, for its header), cut at
/// the last line end when the file is longer: never inside a character.
pub fn read_head(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_end(&mut head)?;
    if head.len() as u64 == max
        && let Some(end) = memchr::memrchr(b'\n', &head)
    {
        head.truncate(end + 1);
    }
    Ok(head)
}

/// Whether `c` has no place in one line of text shown to a person: a control character,
/// Unicode's line or paragraph separator (a line break to a viewer that follows Unicode),
/// or a format character ([`is_format`]: shows nothing, or turns the text around it).
pub fn breaks_a_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format(c)
}

/// Unicode's format characters (category Cf) that occur in text: the soft hyphen, the
/// zero-width ones, the direction marks, embeddings, overrides and isolates, the BOM.
pub fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// A file name from outside (an upload's, a remote server's) made safe to file under: path
/// separators, control and format characters become `_` (a line break would start a line
/// of its own in logs and listings; a U+202E turns the name around), leading dots go (not
/// hidden), and nothing left is `roster.csv`.
pub fn clean_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c == '/' || c == '\\' || breaks_a_line(c) {
            true => '_',
            false => c,
        })
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "roster.csv".to_string(),
        kept => kept.to_string(),
    }
}

/// Why the name `raw` of a file in inbox/ is cleaned, for the log.
pub fn unclean_why(raw: &std::ffi::OsStr) -> &'static str {
    let Some(name) = raw.to_str() else {
        return "is not UTF-8";
    };
    let backslash = name.contains('\\');
    let only_backslash = name.replace('\\', "_") == clean_file_name(name);
    match (backslash, only_backslash) {
        (true, true) => "holds a backslash (a path separator)",
        (true, false) => "holds a backslash (a path separator) and control or format characters",
        (false, _) => "holds control or format characters",
    }
}

/// Removes the files of `dir` whose names `is_leftover` (the hidden parts of work that a
/// stop or a crash interrupted), logging each as `what`; a folder that cannot be read is
/// left, and a file that cannot be removed is logged.
pub fn remove_leftovers(dir: &Path, is_leftover: impl Fn(&str) -> bool, what: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_leftover(&name) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => tracing::info!(file = %entry.path().display(), "removed {what}"),
            Err(e) => tracing::warn!(file = %entry.path().display(), "removing {what}: {e}"),
        }
    }
}

/// The first `limit` of `items` joined by ", ", and how many more (" and 3 more"): a
/// warning that names what it is about without a line for each.
pub fn first_named(items: impl ExactSizeIterator<Item = String>, limit: usize) -> String {
    let more = items.len().saturating_sub(limit);
    let shown: Vec<String> = items.take(limit).collect();
    match more {
        0 => shown.join(", "),
        n => format!("{} and {n} more", shown.join(", ")),
    }
}

/// For a test that needs root (`why` it does): whether it runs as root. Not as root, it is
/// skipped, but under `CI` it fails: a missing prerequisite never passes silently.
#[cfg(test)]
pub(crate) fn test_as_root(why: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    assert!(
        root || std::env::var_os("CI").is_none(),
        "run as root: {why}"
    );
    root
}

#[cfg(test)]
mod tests {
    /// The log says why a name is cleaned: a backslash alone is not called a control
    /// character, and one beside a control character is named with it.
    #[test]
    fn a_cleaned_names_reason_names_what_it_holds() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            super::unclean_why(OsStr::new("a\\b.csv")),
            "holds a backslash (a path separator)"
        );
        assert_eq!(
            super::unclean_why(OsStr::new("a\\b\tc.csv")),
            "holds a backslash (a path separator) and control or format characters"
        );
        assert_eq!(
            super::unclean_why(OsStr::new("a\tb.csv")),
            "holds control or format characters"
        );
        assert_eq!(
            super::unclean_why(OsStr::from_bytes(b"a\xffb.csv")),
            "is not UTF-8"
        );
    }

    #[test]
    fn restrict_mode_takes_group_write_and_others_off() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        fs::write(&p, b"x").unwrap();
        for (from, to) in [
            (0o666, 0o640),
            (0o644, 0o640),
            (0o600, 0o600),
            (0o755, 0o750),
        ] {
            fs::set_permissions(&p, fs::Permissions::from_mode(from)).unwrap();
            restrict_mode(&p).unwrap();
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, to, "{from:o}");
        }
    }

    use super::*;

    /// A long dry run's name keeps `.dryrun.csv` whole when it is cut to fit (a fetched or
    /// filed copy cut to `.csv` had been applied), whatever its letter case.
    #[test]
    fn a_dry_runs_suffix_survives_the_cut() {
        let long = format!("{}.dryrun.csv", "f".repeat(300));
        let cut = fitting(&long, 238);
        assert_eq!(cut.len(), 238);
        assert!(cut.ends_with("~.dryrun.csv"), "{cut}");
        assert!(crate::layout::is_dry_run(&cut));
        let upper = format!("{}.DryRun.CSV", "g".repeat(300));
        assert!(fitting(&upper, 100).ends_with("~.DryRun.CSV"));
        let plain = format!("{}.csv", "h".repeat(300));
        assert!(fitting(&plain, 100).ends_with("h~.csv"));
        assert_eq!(fitting("short.dryrun.csv", 100), "short.dryrun.csv");
    }

    /// A write whose content fails (a full disk) leaves neither the file nor its temporary
    /// part behind.
    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.backup");
        let fill = |w: &mut dyn std::io::Write| {
            w.write_all(b"part of every account")?;
            Err(std::io::Error::from_raw_os_error(28))
        };
        let left = || fs::read_dir(dir.path()).unwrap().count();
        let err = write_new_with(&path, fill).unwrap_err();
        assert_eq!((err.raw_os_error(), left()), (Some(28), 0));
        let err = write_atomic_with(&path, fill).unwrap_err();
        assert_eq!((err.raw_os_error(), left()), (Some(28), 0));
    }

    #[test]
    fn a_dangling_symlink_takes_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", dir.path().join("r.csv")).unwrap();
        let tmp = dir.path().join(".tmp");
        fs::write(&tmp, b"x").unwrap();
        let name = rename_into_free_name(&tmp, dir.path(), "r.csv").unwrap();
        assert_eq!(name, "r-2.csv");
        assert_eq!(fs::read(dir.path().join("r-2.csv")).unwrap(), b"x");
        // A name that cannot be looked at (its folder is a file) is an error at once: counted
        // as taken, every next name had been tried, for ever.
        let not_a_folder = dir.path().join("r-2.csv");
        assert!(rename_into_free_name(&tmp, &not_a_folder, "r.csv").is_err());
        // One too long for a file name is cut to fit, room left for a number.
        fs::write(&tmp, b"y").unwrap();
        let long = format!("{}.csv", "r".repeat(300));
        let cut = rename_into_free_name(&tmp, dir.path(), &long).unwrap();
        assert!(cut.len() <= 247 && cut.ends_with("~.csv"), "{cut}");
    }

    /// A file read whole is read only to its limit: `/dev/zero` as the config had run the
    /// system out of memory.
    #[test]
    fn a_small_file_is_read_to_its_limit_only() {
        let err = read_small_text(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(
            err.to_string().contains("more than the 1024 bytes"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        fs::write(&path, "x = 1\n").unwrap();
        assert_eq!(read_small_text(&path, 6).unwrap(), "x = 1\n");
        assert!(read_small_text(&path, 5).is_err());
        fs::write(&path, b"\xff").unwrap();
        let err = read_small_text(&path, 5).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn free_name_puts_the_counter_before_the_last_dot_or_at_the_end() {
        let taken = [
            "a.csv",
            "a-2.csv",
            "noext",
            "x.dryrun.csv",
            "X.DryRun.CSV",
            ".dryrun.csv",
        ];
        let is_taken = |n: &str| taken.contains(&n);
        assert_eq!(free_name("b.csv", is_taken), "b.csv");
        assert_eq!(free_name("a.csv", is_taken), "a-3.csv");
        assert_eq!(free_name("noext", is_taken), "noext-2");
        // Filed names follow SPEC 6 (before the last dot); an inbox name keeps a dry run's
        // suffix whole, in any letter case, so the copy is still a dry run.
        assert_eq!(free_name("x.dryrun.csv", is_taken), "x.dryrun-2.csv");
        assert_eq!(free_inbox_name("x.dryrun.csv", is_taken), "x-2.dryrun.csv");
        assert_eq!(free_inbox_name("X.DryRun.CSV", is_taken), "X-2.DryRun.CSV");
        assert_eq!(free_inbox_name("a.csv", is_taken), "a-3.csv");
        assert_eq!(free_inbox_name(".dryrun.csv", is_taken), ".dryrun-2.csv");
    }

    #[test]
    fn a_time_given_in_any_rfc_3339_form_is_the_utc_second_it_names() {
        for (given, utc) in [
            ("2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z"),
            ("2026-11-01t00:00:00z", "2026-11-01T00:00:00Z"),
            ("2026-11-01 00:00:00Z", "2026-11-01T00:00:00Z"),
            ("2026-11-01T00:00:00+02:00", "2026-10-31T22:00:00Z"),
            ("2026-11-01T00:00:00-05:00", "2026-11-01T05:00:00Z"),
            // Cut: an entry of 10:00:00 may have been made at 10:00:00.7.
            ("2026-11-01T10:00:00.5Z", "2026-11-01T10:00:00Z"),
            ("9999-12-31T23:59:59.5Z", "9999-12-31T23:59:59Z"),
            ("9999-12-31T23:59:59+01:00", "9999-12-31T22:59:59Z"),
            ("1970-01-01T00:00:00+01:00", "1970-01-01T00:00:00Z"),
            ("1969-12-31", "1970-01-01T00:00:00Z"),
            ("1968-02-29T10:00:00+02:00", "1970-01-01T00:00:00Z"),
            ("2026-11-01", "2026-11-01T00:00:00Z"),
        ] {
            assert_eq!(utc_second(given).as_deref(), Some(utc), "{given}");
        }
        for bad in [
            "yesterday",
            "",
            "2026-11-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "1969-13-01T00:00:00Z",
            "2026-11-01T00:00:00+25:00",
            // Cut six bytes from the end, inside the é: had panicked (a reader's request).
            "xxxxxxxxxxxxxxxxxxxxéabcde",
            "2026-11-01T00:00:00+0é",
            // Past the last second RFC 3339 writes: had panicked.
            "9999-12-31T23:59:59-00:01",
            "9999-12-31T20:00:00-05:00",
        ] {
            assert_eq!(utc_second(bad), None, "{bad}");
        }
    }

    #[test]
    fn compact_timestamp_drops_dashes_and_colons() {
        assert_eq!(
            compact_timestamp("2026-11-26T07:46:13Z"),
            "20261126T074613Z"
        );
    }

    #[test]
    fn renaming_into_a_taken_name_picks_the_next_free_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("r.csv"), b"first").unwrap();
        let tmp = dir.path().join(".tmp");
        fs::write(&tmp, b"second").unwrap();
        assert_eq!(
            rename_into_free_name(&tmp, dir.path(), "r.csv").unwrap(),
            "r-2.csv"
        );
        assert_eq!(fs::read(dir.path().join("r.csv")).unwrap(), b"first");
        assert_eq!(fs::read(dir.path().join("r-2.csv")).unwrap(), b"second");
        fs::write(&tmp, b"third").unwrap();
        assert!(rename_noreplace(&tmp, &dir.path().join("r.csv")).is_err());
    }

    #[test]
    fn a_file_written_with_early_syncs_holds_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let bytes: Vec<u8> = (0..10 * SYNC_AHEAD + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        write_atomic_with(&path, |w| {
            for piece in bytes.chunks(1000) {
                w.write_all(piece)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert!(!dir.path().join(".r.json.tmp").exists());
        // A failure of `fill` leaves the old file as it was.
        let failed = write_atomic_with(&path, |w| {
            w.write_all(&bytes)?;
            Err(std::io::Error::other("stopped"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), bytes);
        // A short file, written before any early sync would start.
        write_atomic_with(&path, |w| w.write_all(b"short")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"short");
    }

    #[test]
    fn a_planted_temporary_name_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.backup");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // A symlink, then a hard link, where the temporary file goes.
        let tmp = dir.path().join(".x.backup.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_atomic(&path, b"backup 1").unwrap();
        fs::hard_link(&victim, &tmp).unwrap();
        write_atomic(&path, b"backup 2").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"backup 2");
        assert!(!tmp.exists());
        // A temporary file an earlier write left is replaced as before.
        fs::write(&tmp, b"left over, longer than what follows").unwrap();
        write_atomic(&path, b"3").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"3");
    }

    #[test]
    fn sha256_of_a_file_equals_that_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &bytes).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_hex(&bytes));
    }

    #[test]
    fn sha256_of_empty_input_is_the_known_digest() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
