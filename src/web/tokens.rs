//! The API's read-only bearer tokens: `web.api_tokens_file` holds one `NAME SHA256-HEX`
//! line per token (the token itself is never stored); `autoprov token add NAME` makes one.

use super::csrf::{hex, random_bytes, unhex};
use crate::api::error::{Blocked, Context, Error, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Who the token was made for (shown in logs, never the token).
    pub name: String,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
}

/// A line that is not `NAME SHA256-HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// The entries of a tokens file, and the lines that are not entries. Blank lines and lines
/// starting with `#` are skipped.
pub fn parse(text: &str) -> (Vec<TokenEntry>, Vec<BadLine>) {
    let (mut entries, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let digest = match fields.as_slice() {
            [_, hex] => unhex(hex).and_then(|b| <[u8; 32]>::try_from(b).ok()),
            _ => None,
        };
        match digest {
            Some(digest) => entries.push(TokenEntry {
                name: fields[0].to_string(),
                digest,
            }),
            None => bad.push(BadLine {
                line: i + 1,
                message: "not `NAME SHA256-HEX` (a name, one space, 64 hex digits)".into(),
            }),
        }
    }
    (entries, bad)
}

/// SHA-256 of a token as presented.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality of two digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The name of the entry `token` belongs to. Every entry is compared (no early exit), each
/// in constant time, so the answer's timing tells nothing about the stored digests.
pub fn find<'a>(entries: &'a [TokenEntry], token: &str) -> Option<&'a str> {
    let presented = digest(token);
    let mut found = None;
    for e in entries {
        if same(&e.digest, &presented) && found.is_none() {
            found = Some(e.name.as_str());
        }
    }
    found
}

/// The tokens file's text, or `None` when there is none yet (`autoprov token add` makes
/// it). A regular file of at most 16 MiB: a FIFO had blocked the daemon's start (and every
/// token request), and `/dev/zero` would have been read until memory ran out.
pub fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_file() => {
            return Err(std::io::Error::other("not a regular file"));
        }
        Ok(_) => {}
    }
    match crate::util::read_small_text(path, 16 << 20) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        read => read.map(Some),
    }
}

/// What keeps the tokens file at `path` from being read, told once at the daemon's start
/// (`true` when it exists but cannot be read): every API token is refused until it is
/// mended. One that does not exist is told too (a mistyped path had been silent, each API
/// call logged as an unknown token), with its folder when that is missing too (the advice
/// to run `token add` had failed there), and the group advice only when access is denied.
pub fn at_start(path: &Path) -> Option<(bool, String)> {
    let (name, refused) = (path.display(), "so every API token is refused (401)");
    let folder = path.parent().filter(|d| !d.as_os_str().is_empty());
    match read(path) {
        Ok(Some(_)) => None,
        Ok(None) => Some((
            false,
            match folder.filter(|d| !d.is_dir()) {
                Some(d) => format!(
                    "web.api_tokens_file {name}: its folder {} does not exist, {refused}: make \
                 it, then `autoprov token add NAME` makes the file (is the path right?)",
                    d.display()
                ),
                None => format!(
                    "web.api_tokens_file {name} does not exist, {refused} until it does: \
                 `autoprov token add NAME` makes it (is the path right?)"
                ),
            },
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // A folder on the way the daemon's user may not pass (its group advice had
            // been given for a file that had both already).
            // The outermost: every folder under it fails the check too.
            let mut folders: Vec<&Path> = path.ancestors().skip(1).collect();
            folders.reverse();
            let closed = (folders.into_iter())
                .filter(|d| !d.as_os_str().is_empty())
                .find(|d| nix::unistd::access(*d, nix::unistd::AccessFlags::X_OK).is_err());
            Some((
                true,
                match closed {
                    Some(d) => format!(
                        "web.api_tokens_file {name} cannot be reached by the daemon's user, \
                     {refused}: its folder {} may not be passed (give the daemon's group \
                     g+x on it)",
                        d.display()
                    ),
                    None => format!(
                        "web.api_tokens_file {name} cannot be read by the daemon's user, \
                     {refused}: {e}; give it the daemon's group (chgrp autoprov, chmod 0640)"
                    ),
                },
            ))
        }
        Err(e) => Some((
            true,
            format!(
                "web.api_tokens_file {name} cannot be read, {refused}: {e} (is the path right?)"
            ),
        )),
    }
}

/// Reads the tokens file and finds `token` in it; malformed lines are logged and skipped.
pub fn check(path: &Path, token: &str) -> Result<Option<String>> {
    let Some(text) =
        read(path).with_context(|| format!("reading web.api_tokens_file {}", path.display()))?
    else {
        return Ok(None);
    };
    let (entries, bad) = parse(&text);
    for b in &bad {
        let what = format!(
            "web.api_tokens_file {} line {}: {}; the line is skipped",
            path.display(),
            b.line,
            b.message
        );
        super::refusals::TOKENS_FILE.warn(None, &what);
    }
    Ok(find(&entries, token).map(str::to_string))
}

/// Makes a token for `name`, appends its line to `path` and returns the token, which is
/// shown once and stored nowhere. A new file is created 0640 and given its folder's group:
/// created by root as 0600 root:root in `/etc/autoprov` (root:autoprov 0750), the daemon
/// could not read it and refused every token. It holds only digests of random tokens.
pub fn add(path: &Path, name: &str) -> Result<String> {
    if name.is_empty()
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
        || name.starts_with('#')
    {
        return Err(Error::usage(format!(
            "token name \"{name}\": use a name without spaces, e.g. sso-gateway"
        )));
    }
    let existing = read(path)
        .with_context(|| format!("reading web.api_tokens_file {}", path.display()))?
        .unwrap_or_default();
    let (entries, _) = parse(&existing);
    if entries.iter().any(|e| e.name == name) {
        return Err(Blocked::TokenNameInUse {
            name: name.to_string(),
        }
        .into());
    }
    let random = random_bytes::<32>().map_err(|e| Error::failed(format!("{e:#}")))?;
    let token = format!("ap_{}", hex(&random));
    let mut line = format!("{name} {}\n", hex(&digest(&token)));
    if !existing.is_empty() && !existing.ends_with('\n') {
        line.insert(0, '\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("opening web.api_tokens_file {}", path.display()))?;
    if existing.is_empty() {
        give_folders_group(&f, path)?;
        // 0640 whatever the umask (sudo keeps the admin's, 077 would make it 0600).
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .with_context(|| {
                format!("setting the mode of web.api_tokens_file {}", path.display())
            })?;
    }
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing web.api_tokens_file {}", path.display()))?;
    Ok(token)
}

/// Gives the file `f` at `path` the group of the folder it is in (a no-op when it has it).
fn give_folders_group(f: &std::fs::File, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let gid = std::fs::metadata(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .gid();
    let has = f
        .metadata()
        .with_context(|| format!("reading web.api_tokens_file {}", path.display()))?
        .gid();
    if has != gid {
        nix::unistd::fchown(f, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
            Error::failed(format!(
                "web.api_tokens_file {} cannot be given the group of its folder (gid {gid}), so \
                 the daemon may not read it: {e}; run token add as root",
                path.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the start tells of the file: nothing when it reads; the folder when that is
    /// missing (`token add` fails there); the group advice only when access is denied (not
    /// shown here: tests run as root).
    #[test]
    fn a_tokens_file_that_cannot_be_used_is_told_at_the_start_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let told = |p: &Path| {
            at_start(p).map(|(error, m)| (error, m.replace(&*dir.path().to_string_lossy(), "D")))
        };
        let file = dir.path().join("tokens");
        let (error, m) = told(&file).unwrap();
        assert!(
            !error && m.contains("D/tokens does not exist") && m.contains("token add"),
            "{m}"
        );
        let (error, m) = told(&dir.path().join("nope/tokens")).unwrap();
        assert!(
            !error && m.contains("its folder D/nope does not exist, so every"),
            "{m}"
        );
        std::fs::write(&file, "").unwrap();
        assert_eq!(told(&file), None);
        let (error, m) = told(&file.join("x")).unwrap();
        assert!(
            error && m.contains("cannot be read, so") && !m.contains("chgrp"),
            "{m}"
        );
    }
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lines_are_name_and_digest_and_others_are_named() {
        let d = hex(&digest("secret"));
        let text = format!(
            "# gateway\n\nsso-gw {d}\n  grafana   {}  \nbroken\nshort abcd\nx {d} extra\n",
            d.to_uppercase()
        );
        let (entries, bad) = parse(&text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "sso-gw");
        assert_eq!(entries[1].name, "grafana");
        assert_eq!(entries[0].digest, digest("secret"));
        assert_eq!(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
    }

    #[test]
    fn a_token_is_found_by_its_digest_only() {
        let entries = vec![
            TokenEntry {
                name: "a".into(),
                digest: digest("one"),
            },
            TokenEntry {
                name: "b".into(),
                digest: digest("two"),
            },
        ];
        assert_eq!(find(&entries, "two"), Some("b"));
        assert_eq!(find(&entries, "one"), Some("a"));
        assert_eq!(find(&entries, "three"), None);
        assert_eq!(find(&entries, ""), None);
        assert_eq!(find(&[], "one"), None);
    }

    /// The tokens file is a regular file read within a limit: a FIFO named there had
    /// blocked the daemon's start and every token request, and `/dev/zero` would have been
    /// read until memory ran out.
    #[test]
    fn a_tokens_file_that_is_no_regular_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("tokens");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for path in [fifo.as_path(), Path::new("/dev/zero")] {
            let err = read(path).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
            assert!(check(path, "t").is_err());
            assert!(add(path, "gw").is_err());
        }
        assert_eq!(read(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn add_appends_a_line_readable_by_the_folders_group_and_refuses_a_name_twice() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        // The folder's group is the daemon's (/etc/autoprov is root:autoprov): the new
        // file gets it, readable by the group only. Changing a group to one the user is
        // not in needs root: a test run as another user checks the user's own group.
        let group = match nix::unistd::geteuid().is_root() {
            true => 65534,
            false => nix::unistd::getegid().as_raw(),
        };
        nix::unistd::chown(dir.path(), None, Some(nix::unistd::Gid::from_raw(group))).unwrap();
        let t1 = add(&path, "sso-gw").unwrap();
        assert!(t1.starts_with("ap_") && t1.len() == 67, "{t1}");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(meta.gid(), group);
        let t2 = add(&path, "grafana").unwrap();
        assert_ne!(t1, t2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t1[3..]), "the token itself is never stored");
        assert_eq!(check(&path, &t1).unwrap().as_deref(), Some("sso-gw"));
        assert_eq!(check(&path, &t2).unwrap().as_deref(), Some("grafana"));
        assert_eq!(check(&path, "ap_guess").unwrap(), None);
        let err = add(&path, "sso-gw").unwrap_err();
        assert!(
            matches!(err, Error::Refused(Blocked::TokenNameInUse { .. })),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "nothing appended"
        );
        assert!(add(&path, "two words").is_err());
        assert!(add(&path, "").is_err());
    }
}
