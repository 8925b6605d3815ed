//! The drop root on disk and the virtual paths a client may name: the four areas,
//! lexical resolution beneath `/`, upload names, and walks that never follow a symlink.

use std::fs::{self, DirBuilder, Metadata};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

use anyhow::{Context, bail};
use russh_sftp::protocol::FileAttributes;
use russh_sftp::server::StatusReply;

use super::TEMP_PREFIX;
use super::status::{denied, io_status, no_such_file};

/// One of the four directories of the drop root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// New uploads land here; write-only for clients.
    Inbox,
    /// Files the daemon applied, with their reports; read-only for clients.
    Processed,
    /// Files the daemon refused, with their reports; read-only for clients.
    Rejected,
    /// Files waiting for an operator's decision; read-only for clients.
    Held,
}

impl Area {
    /// All areas, in the order they are listed at `/`.
    pub const ALL: [Area; 4] = [Area::Inbox, Area::Processed, Area::Rejected, Area::Held];

    /// The directory name of the area below the drop root.
    pub fn dir_name(self) -> &'static str {
        match self {
            Area::Inbox => "inbox",
            Area::Processed => "processed",
            Area::Rejected => "rejected",
            Area::Held => "held",
        }
    }

    fn from_name(name: &str) -> Option<Area> {
        Area::ALL.into_iter().find(|a| a.dir_name() == name)
    }
}

/// What is told of an upload that could not be written to disk (its name, why): the
/// daemon shows it in `status` and `/healthz` and tells the notification hook, as watch mode
/// does of a file it cannot take in.
pub type UploadFailed = Box<dyn Fn(&str, &str) + Send + Sync>;

/// The drop directory on disk, prepared and canonicalised once at start-up.
pub struct DropRoot {
    root: PathBuf,
    /// Handles open in all sessions on this root (see [`MAX_OPEN_HANDLES_TOTAL`]).
    pub(super) open_handles: AtomicUsize,
    /// Told of an upload that could not be written ([`DropRoot::on_upload_failure`]).
    on_failure: std::sync::OnceLock<UploadFailed>,
}

impl std::fmt::Debug for DropRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropRoot")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl DropRoot {
    /// Whom to tell of an upload that could not be written (once; later calls are ignored).
    pub fn on_upload_failure(&self, hook: UploadFailed) {
        let _ = self.on_failure.set(hook);
    }

    /// Logs upload `name` (of the session `span`) that could not be written, `why`, and
    /// tells the hook of it.
    pub(super) fn upload_failed(&self, span: &tracing::Span, name: &str, why: &str) {
        tracing::error!(parent: span, file = %crate::logging::ClientText(name), error = %why,
            "an upload could not be written to disk");
        if let Some(hook) = self.on_failure.get() {
            hook(name, why);
        }
    }

    /// [`DropRoot::upload_failed`], when `e` is the disk's trouble
    /// ([`super::status::disk_trouble`]), not the client's.
    pub(super) fn disk_failed(&self, span: &tracing::Span, name: &str, e: &std::io::Error) {
        if super::status::disk_trouble(e) {
            self.upload_failed(span, name, &e.to_string());
        }
    }

    /// Creates the root and any missing area directory, refuses symlinked areas, and deletes
    /// temporary upload files left by a previous run (their sessions are gone).
    pub fn prepare(root: &Path) -> anyhow::Result<DropRoot> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(root)
            .with_context(|| format!("while creating the drop directory {}", root.display()))?;
        let root = fs::canonicalize(root)
            .with_context(|| format!("while resolving the drop directory {}", root.display()))?;
        for area in Area::ALL {
            let dir = root.join(area.dir_name());
            match fs::symlink_metadata(&dir) {
                Ok(md) if md.file_type().is_symlink() => bail!(
                    "{} is a symbolic link; the drop directories must be real directories",
                    dir.display()
                ),
                Ok(md) if !md.is_dir() => bail!("{} exists and is not a directory", dir.display()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
                    .mode(0o750)
                    .create(&dir)
                    .with_context(|| format!("while creating {}", dir.display()))?,
                Err(e) => {
                    return Err(e).with_context(|| format!("while inspecting {}", dir.display()));
                }
            }
        }
        let this = DropRoot {
            root,
            open_handles: AtomicUsize::new(0),
            on_failure: std::sync::OnceLock::new(),
        };
        this.sweep_stale_uploads()?;
        Ok(this)
    }

    /// The canonical path of the drop root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    pub(super) fn area_dir(&self, area: Area) -> PathBuf {
        self.root.join(area.dir_name())
    }

    fn sweep_stale_uploads(&self) -> anyhow::Result<()> {
        let inbox = self.area_dir(Area::Inbox);
        let entries =
            fs::read_dir(&inbox).with_context(|| format!("while listing {}", inbox.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("while listing {}", inbox.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => tracing::warn!(path = %path.display(),
                        "deleted an unfinished upload left by a previous run"),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e,
                        "could not delete an unfinished upload left by a previous run"),
                }
            }
        }
        Ok(())
    }
}

/// A client path, resolved lexically beneath the virtual root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/` itself.
    Root,
    /// One of the four area directories.
    Area(Area),
    /// Something below an area; `rel` has at least one component.
    Entry {
        /// The area the path is in.
        area: Area,
        /// Path components below the area directory (no `.`, `..` or empty parts).
        rel: Vec<String>,
    },
}

impl Target {
    /// The canonical virtual path, as answered to REALPATH.
    pub fn virtual_path(&self) -> String {
        match self {
            Target::Root => "/".to_string(),
            Target::Area(a) => format!("/{}", a.dir_name()),
            Target::Entry { area, rel } => format!("/{}/{}", area.dir_name(), rel.join("/")),
        }
    }
}

/// Resolves a client path beneath the virtual root.
///
/// Relative paths start at `/` (the session's working directory). `.` and empty parts are
/// dropped, `..` goes up one level but never above `/`; a top-level name other than the
/// four areas, a hidden name (starting with `.`) and a NUL byte are refused.
pub fn resolve(path: &str) -> Result<Target, StatusReply> {
    if path.contains('\0') {
        return Err(denied("path contains a NUL byte"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(denied("path leaves the root directory"));
                }
            }
            p if p.starts_with('.') => return Err(denied("hidden names are not served")),
            p => parts.push(p),
        }
    }
    let Some((first, rest)) = parts.split_first() else {
        return Ok(Target::Root);
    };
    let Some(area) = Area::from_name(first) else {
        return Err(denied("only /inbox, /processed, /rejected and /held exist"));
    };
    if rest.is_empty() {
        Ok(Target::Area(area))
    } else {
        Ok(Target::Entry {
            area,
            rel: rest.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// What a name a client may create in `inbox/` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadName {
    /// A roster's name: the upload is delivered into `inbox/` at its close.
    Final,
    /// A name the inbox ignores (ending in `.part`, `.filepart`, `.tmp`, `.partial`): the
    /// upload waits at its close for the session to rename it to a final name
    /// (`parked`).
    Temporary,
}

/// Checks a name a client wants to create in `inbox/`, and says what it is for.
///
/// Refused: hidden names (the server's own temporary files have them), control and format
/// characters, a backslash, and names longer than the filesystem allows.
pub fn check_upload_name(name: &str) -> Result<UploadName, StatusReply> {
    if name.starts_with('.') {
        return Err(denied(
            "hidden names are not accepted; upload under the final name, or under a \
             temporary name ending in .part and rename it to the final one",
        ));
    }
    // A line separator too: logged, it had begun a line of the client's own.
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(denied("file names may not contain control characters"));
    }
    // Format characters show nothing, or turn the text around them: `rost\u{202e}vsc.csv`
    // reads as "rostcsv.csv" in every report, listing and page that names the file.
    if name.chars().any(crate::util::is_format) {
        return Err(denied(
            "file names may not contain invisible or direction-changing characters",
        ));
    }
    // A Windows path separator: the name would be filed with `_` for it (util's
    // clean_file_name), not as the client was told it was delivered.
    if name.contains('\\') {
        return Err(denied(
            "file names may not contain a backslash (a path separator on Windows)",
        ));
    }
    if name.len() > 255 {
        return Err(denied("file name too long"));
    }
    Ok(match crate::layout::is_ignored(name) {
        true => UploadName::Temporary,
        false => UploadName::Final,
    })
}

/// Walks `rel` below the area directory without following symlinks; returns the path and
/// metadata of the last component. A symlink anywhere on the way is refused.
pub(super) fn walk(
    root: &Path,
    area: Area,
    rel: &[String],
) -> Result<(PathBuf, Metadata), StatusReply> {
    let mut path = root.join(area.dir_name());
    let mut md = fs::symlink_metadata(&path).map_err(|e| io_status(&e))?;
    if md.file_type().is_symlink() {
        return Err(denied("symbolic links are not followed"));
    }
    for part in rel {
        if !md.is_dir() {
            return Err(no_such_file());
        }
        path.push(part);
        md = fs::symlink_metadata(&path).map_err(|e| io_status(&e))?;
        if md.file_type().is_symlink() {
            return Err(denied("symbolic links are not followed"));
        }
    }
    if !md.is_dir() && !md.is_file() {
        return Err(denied("only regular files and directories are served"));
    }
    Ok((path, md))
}

pub(super) fn target_metadata(root: &Path, target: &Target) -> Result<Metadata, StatusReply> {
    match target {
        Target::Root => fs::symlink_metadata(root).map_err(|e| io_status(&e)),
        Target::Area(area) => walk(root, *area, &[]).map(|(_, md)| md),
        Target::Entry { area, rel } => walk(root, *area, rel).map(|(_, md)| md),
    }
}

pub(super) fn attrs_of(md: &Metadata) -> FileAttributes {
    FileAttributes::from(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::StatusCode;

    fn entry(area: Area, rel: &[&str]) -> Target {
        Target::Entry {
            area,
            rel: rel.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn resolve_table() {
        let ok: &[(&str, Target)] = &[
            ("", Target::Root),
            (".", Target::Root),
            ("/", Target::Root),
            ("//./", Target::Root),
            ("inbox", Target::Area(Area::Inbox)),
            ("/processed/", Target::Area(Area::Processed)),
            ("/inbox/a.csv", entry(Area::Inbox, &["a.csv"])),
            ("held/x/y.csv", entry(Area::Held, &["x", "y.csv"])),
            ("/processed/../inbox/a.csv", entry(Area::Inbox, &["a.csv"])),
            ("/rejected/sub/..", Target::Area(Area::Rejected)),
            ("inbox/a b.csv", entry(Area::Inbox, &["a b.csv"])),
        ];
        for (input, want) in ok {
            assert_eq!(&resolve(input).unwrap(), want, "{input:?}");
        }
        let denied: &[&str] = &[
            "..",
            "/..",
            "../etc/passwd",
            "/inbox/../../etc",
            "/etc/passwd",
            "/home",
            "inboxx",
            "/inbox/.upload-1234",
            "/processed/.hidden",
            "/.ssh",
            "/inbox/a\0b",
        ];
        for input in denied {
            let err = resolve(input).unwrap_err();
            assert_eq!(err.status_code, StatusCode::PermissionDenied, "{input:?}");
        }
    }

    #[test]
    fn virtual_paths_round_trip() {
        for p in ["/", "/inbox", "/held/x/y.csv"] {
            assert_eq!(resolve(p).unwrap().virtual_path(), p);
        }
    }

    #[test]
    fn upload_names() {
        for good in [
            "roster.csv",
            "Roster 2026-11.CSV",
            "a.dryrun.csv",
            "x.partial.csv",
        ] {
            assert_eq!(check_upload_name(good), Ok(UploadName::Final), "{good}");
        }
        for temporary in [
            "roster.csv.part",
            "roster.csv.PART",
            "roster.csv.Part",
            "roster.FilePart",
            "roster.filepart",
            "roster.tmp",
            "roster.partial",
        ] {
            assert_eq!(
                check_upload_name(temporary),
                Ok(UploadName::Temporary),
                "{temporary}"
            );
        }
        for bad in [
            ".hidden.csv",
            ".roster.csv.part",
            "bad\nname.csv",
            "bad\nname.csv.part",
            "rost\u{202e}vsc.csv",
            "a\u{200b}b.csv",
            "\u{feff}roster.csv",
            // Logged, a line separator had begun a line of the client's own.
            "zz\u{2028} INFO upload complete file=forged.csv",
            // Filed with `_` for it, not under the name the client was told.
            "back\\slash.csv",
            "a\\tb.csv.part",
        ] {
            assert_eq!(
                check_upload_name(bad).unwrap_err().status_code,
                StatusCode::PermissionDenied,
                "{bad:?}"
            );
        }
        assert!(check_upload_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn prepare_creates_areas_and_sweeps_stale_temps() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("inbox")).unwrap();
        fs::write(dir.path().join("inbox/.upload-dead"), b"x").unwrap();
        fs::write(dir.path().join("inbox/keep.csv"), b"x").unwrap();
        let root = DropRoot::prepare(dir.path()).unwrap();
        for area in Area::ALL {
            assert!(root.path().join(area.dir_name()).is_dir());
        }
        assert!(!dir.path().join("inbox/.upload-dead").exists());
        assert!(dir.path().join("inbox/keep.csv").exists());
    }

    #[test]
    fn prepare_refuses_a_symlinked_area() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("processed")).unwrap();
        let err = DropRoot::prepare(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
    }
}
