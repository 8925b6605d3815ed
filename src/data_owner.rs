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
    let Some(md) = owned_by_another(data_dir) else {
        return Ok(());
    };
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

/// Whether `path` is inside `data_dir` by any measure: by its name made absolute (`..` taken
/// away by name) against `data_dir` as configured and as resolved, or by its nearest existing
/// folder with its links followed against the resolved `data_dir`. A backup is written as
/// root only outside by every measure: a name inside that leads elsewhere (a link the data
/// dir's owner put there) is then written as the owner, who may not write there.
fn inside(data_dir: &Path, path: &Path) -> bool {
    let named = |p: &Path| {
        std::path::absolute(p)
            .ok()
            .map(|p| crate::util::lexical(&p))
    };
    let resolved_data = fs::canonicalize(data_dir).ok();
    let path_named = named(path);
    let by_name = [named(data_dir), resolved_data.clone()]
        .into_iter()
        .flatten()
        .any(|d| path_named.as_ref().is_some_and(|p| p.starts_with(&d)));
    // The nearest folder of `path` that exists, resolved.
    let existing = path_named
        .as_deref()
        .and_then(|p| p.ancestors().skip(1).find_map(|a| fs::canonicalize(a).ok()));
    let by_folder = matches!((&existing, &resolved_data), (Some(f), Some(d)) if f.starts_with(d));
    by_name || by_folder
}

/// Refuses a daemon started as root on a data dir that belongs to another user: its files
/// would be root's, and that user (the service account) could not open the store again. A
/// daemon keeps the rights it starts with, since a change of rights is every thread's.
pub fn refuse_root_daemon(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(md) = owned_by_another(data_dir) else {
        return Ok(());
    };
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(md.uid()))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", md.uid()), |u| u.name);
    Err(crate::api::error::Error::usage(format!(
        "data_dir {} belongs to {owner}: run the daemon as {owner} (the unit's User=, or \
         `sudo -u {owner} autoprov run`); run as root, it would leave files {owner} cannot \
         open",
        data_dir.display()
    )))
}

/// `data_dir`'s metadata when this process runs as root and another user owns it.
fn owned_by_another(data_dir: &Path) -> Option<fs::Metadata> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    fs::metadata(data_dir).ok().filter(|md| md.uid() != 0)
}

#[cfg(test)]
mod tests {
    use super::inside;

    /// A backup path is inside the data dir by name or by where its folders lead: through a
    /// data dir named by a link, with `..`, in a folder not made yet, or through a link the
    /// owner put inside. Only a path outside by every measure is outside.
    #[test]
    fn a_path_is_inside_the_data_dir_by_any_measure() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("data");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let link = dir.path().join("dlink");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        std::os::unix::fs::symlink(&outside, real.join("evil")).unwrap();
        for (data_dir, path) in [
            (&real, real.join("backups/m.backup")),
            (&link, real.join("newsub/m.backup")),
            (&real, link.join("newsub/m.backup")),
            (&real, outside.join("nonexist/../../data/m.backup")),
            (&real, real.join("evil/m.backup")),
        ] {
            assert!(
                inside(data_dir, &path),
                "{} in {}",
                path.display(),
                data_dir.display()
            );
        }
        for path in [outside.join("m.backup"), dir.path().join("new/m.backup")] {
            assert!(!inside(&real, &path), "{}", path.display());
            assert!(!inside(&link, &path), "{}", path.display());
        }
    }
}
