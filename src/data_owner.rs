//! Whose rights root's commands act with on a data dir that belongs to another user (the
//! daemon's service account): that user's, so that nothing they write there is left
//! root-owned; root's again for a file named on the command line outside it.

use crate::api::error::{Context, Result};
use std::fs;
use std::path::Path;

/// Root working on a data_dir that belongs to another user (the daemon's account) acts as
/// that user from here on (effective uid and gid; the real uid stays root's, so the audit
/// still names root): everything it creates there (sled's files, the watermark, a filed
/// roster and its reports) stays the daemon's. Root's `status` or `process` with the daemon
/// stopped had left root-owned files that the daemon then could not open, and it did not
/// start again. Files named on the command line are opened before this.
pub fn act_as(data_dir: &Path) -> Result<()> {
    use nix::unistd::{Gid, Uid, setegid, seteuid};
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Ok(md) = fs::metadata(data_dir) else {
        return Ok(());
    };
    if md.uid() == 0 {
        return Ok(());
    }
    setegid(Gid::from_raw(md.gid()))
        .and_then(|()| seteuid(Uid::from_raw(md.uid())))
        .map_err(std::io::Error::from)
        .with_context(|| {
            format!(
                "acting as the owner (uid {}) of data_dir {}",
                md.uid(),
                data_dir.display()
            )
        })?;
    tracing::debug!(
        uid = md.uid(),
        gid = md.gid(),
        "acting as the data_dir's owner"
    );
    Ok(())
}

/// Runs `f`, which writes `path`, as root again when root acts as the data_dir's owner
/// ([`act_as`]) and `path` is outside `data_dir`: a file named on the command line
/// (`backup /root/x.backup`), which the owner may not write. As it is otherwise: inside the
/// data dir the owner writes it, and a process that never switched (the daemon) stays as
/// it is. Only a command switches: the change of rights is the whole process's, its every
/// thread's.
pub fn as_real_user_for<T>(data_dir: &Path, path: &Path, f: impl FnOnce() -> T) -> T {
    use nix::unistd::{Gid, Uid, getegid, geteuid, getuid, setegid, seteuid};
    let (euid, egid) = (geteuid(), getegid());
    if !getuid().is_root() || euid.is_root() || inside(data_dir, path) {
        return f();
    }
    let regained = seteuid(Uid::from_raw(0)).and_then(|()| setegid(Gid::from_raw(0)));
    let out = f();
    if regained.is_ok() {
        // Back as the owner; failing that, stop rather than go on as root in its folder.
        setegid(egid)
            .and_then(|()| seteuid(euid))
            .expect("acting as the data_dir's owner again");
    }
    out
}

/// Whether `path` (made absolute, its existing folder's links followed) is inside
/// `data_dir`.
fn inside(data_dir: &Path, path: &Path) -> bool {
    let real = |p: &Path| fs::canonicalize(p).ok();
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = folder.map_or_else(|| real(Path::new(".")), real);
    match (real(data_dir), folder) {
        (Some(data), Some(folder)) => folder.starts_with(data),
        // Not there yet (backup makes its folder): judged by name.
        _ => std::path::absolute(path).is_ok_and(|p| p.starts_with(data_dir)),
    }
}
