//! What some integration tests need from the machine, and whether it is there. Standard
//! library only: `build.rs` compiles this file too.
//!
//! * `build.rs` sets `cfg(missing_<name>)` for every [`Need`] the machine lacks, unless
//!   `CI=true`. A test that needs it carries
//!   `#[cfg_attr(missing_<name>, ignore = "needs …")]`, so outside CI it shows as ignored
//!   with the reason, never as passed.
//! * The test (or the helper it uses) calls [`require`]: in CI, or when the prerequisite went
//!   missing after the build, the test fails naming what is missing.

use std::path::{Path, PathBuf};

/// The virtualenv `.ci/run` installs ssh-audit and paramiko into.
pub const VENV: &str = "/var/tmp/autoprov-venv";

/// A prerequisite of some integration tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Running as root (effective uid 0).
    Root,
    /// Mounting file systems (tmpfs, read-only bind mounts): CAP_SYS_ADMIN and `mount`.
    Mount,
    /// Debian's OpenSSH server at `/usr/sbin/sshd`.
    Sshd,
    /// OpenSSH's `sftp`, `ssh` and `ssh-keygen` on PATH.
    OpensshClient,
    /// `curl` on PATH.
    Curl,
    /// `python3` on PATH (testdata/gen_roster.py).
    Python3,
    /// The venv's python3 with paramiko (tests/hostile/sftp_attack.py).
    Paramiko,
    /// `ssh-audit` in the venv or on PATH.
    SshAudit,
    /// `systemd-analyze` and `systemd-sysusers` on PATH.
    Systemd,
    /// Headless `chromium` on PATH (the page tests).
    Chromium,
    /// `strace` on PATH (the order of a commit's syncs and its filing).
    Strace,
}

/// How a [`Need`] is looked for.
enum Probe {
    EffectiveRoot,
    CapSysAdmin,
    Absolute(&'static str),
    OnPath(&'static [&'static str]),
    VenvOrPath(&'static str),
    VenvModule(&'static str),
}

impl Need {
    /// Every prerequisite.
    pub const ALL: [Need; 11] = [
        Need::Root,
        Need::Mount,
        Need::Sshd,
        Need::OpensshClient,
        Need::Curl,
        Need::Python3,
        Need::Paramiko,
        Need::SshAudit,
        Need::Systemd,
        Need::Chromium,
        Need::Strace,
    ];

    /// The cfg `build.rs` sets when it is missing is `missing_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Need::Root => "root",
            Need::Mount => "mount",
            Need::Sshd => "sshd",
            Need::OpensshClient => "openssh_client",
            Need::Curl => "curl",
            Need::Python3 => "python3",
            Need::Paramiko => "paramiko",
            Need::SshAudit => "ssh_audit",
            Need::Systemd => "systemd",
            Need::Chromium => "chromium",
            Need::Strace => "strace",
        }
    }

    /// What it is and how to get it.
    pub fn describe(self) -> &'static str {
        match self {
            Need::Root => "running as root",
            Need::Mount => "permission to mount file systems (root with CAP_SYS_ADMIN)",
            Need::Sshd => "OpenSSH sshd at /usr/sbin/sshd (apt-get install openssh-server)",
            Need::OpensshClient => {
                "OpenSSH sftp, ssh and ssh-keygen on PATH (apt-get install openssh-client)"
            }
            Need::Curl => "curl on PATH (apt-get install curl)",
            Need::Python3 => "python3 on PATH",
            Need::Paramiko => "paramiko in /var/tmp/autoprov-venv (.ci/run installs it)",
            Need::SshAudit => {
                "ssh-audit in /var/tmp/autoprov-venv/bin or on PATH (.ci/run installs it)"
            }
            Need::Systemd => {
                "systemd-analyze and systemd-sysusers on PATH (apt-get install systemd)"
            }
            Need::Chromium => "chromium on PATH (apt-get install chromium)",
            Need::Strace => "strace on PATH (apt-get install strace)",
        }
    }

    fn how(self) -> Probe {
        match self {
            Need::Root => Probe::EffectiveRoot,
            Need::Mount => Probe::CapSysAdmin,
            Need::Sshd => Probe::Absolute("/usr/sbin/sshd"),
            Need::OpensshClient => Probe::OnPath(&["sftp", "ssh", "ssh-keygen"]),
            Need::Curl => Probe::OnPath(&["curl"]),
            Need::Python3 => Probe::OnPath(&["python3"]),
            Need::Paramiko => Probe::VenvModule("paramiko"),
            Need::SshAudit => Probe::VenvOrPath("ssh-audit"),
            Need::Systemd => Probe::OnPath(&["systemd-analyze", "systemd-sysusers"]),
            Need::Chromium => Probe::OnPath(&["chromium"]),
            Need::Strace => Probe::OnPath(&["strace"]),
        }
    }

    /// `Ok` with the files found (for a venv module: the venv's python3 first), or `Err` with
    /// the existing directories it would appear in (`build.rs` watches them to notice an
    /// installation). Root and CAP_SYS_ADMIN have no files: `Ok(vec![])` / `Err(vec![])`.
    pub fn probe(self) -> Result<Vec<PathBuf>, Vec<PathBuf>> {
        match self.how() {
            Probe::EffectiveRoot => status_field("Uid:", 1)
                .is_some_and(|uid| uid == "0")
                .then(Vec::new)
                .ok_or_else(Vec::new),
            Probe::CapSysAdmin => {
                let cap = status_field("CapEff:", 0)
                    .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
                    .is_some_and(|caps| caps & (1 << 21) != 0);
                let mount = find(&["mount"]);
                match (cap, mount) {
                    (true, Ok(found)) => Ok(found),
                    (_, Ok(_)) => Err(Vec::new()),
                    (_, Err(dirs)) => Err(dirs),
                }
            }
            Probe::Absolute(path) => in_dirs(&[PathBuf::from(path)]),
            Probe::OnPath(tools) => find(tools),
            Probe::VenvOrPath(tool) => {
                let mut candidates = vec![Path::new(VENV).join("bin").join(tool)];
                candidates.extend(path_dirs().into_iter().map(|d| d.join(tool)));
                in_dirs(&candidates)
            }
            Probe::VenvModule(module) => venv_module(module),
        }
    }
}

/// Whether the tests run in CI (`CI=true`): then a missing prerequisite fails its tests.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Panics, naming the test's need, unless the machine has it. Outside CI a test that
/// needs something missing is ignored (its `cfg_attr`), so this fails in CI, or when the
/// prerequisite went missing after the build.
#[track_caller]
pub fn require(need: Need) {
    if need.probe().is_err() {
        let why = if in_ci() {
            "CI=true: a missing prerequisite fails the tests that need it"
        } else {
            "it was there when the tests were built; rebuild to have these tests ignored"
        };
        panic!(
            "this test needs {}, which is missing ({why})",
            need.describe()
        );
    }
}

/// [`require`], then the path of the tool found (for [`Need::Paramiko`]: the venv's python3).
#[track_caller]
pub fn require_tool(need: Need) -> PathBuf {
    require(need);
    let found = need.probe().unwrap_or_default();
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{need:?} is not a tool"))
}

/// Field `index` (whitespace-separated) of the line starting with `key` in
/// /proc/self/status.
fn status_field(key: &str, index: usize) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().nth(index).map(str::to_string)
}

/// The absolute directories of PATH.
fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| d.is_absolute())
                .collect()
        })
        .unwrap_or_default()
}

/// Every tool on PATH: `Ok` with their paths, or `Err` with the existing PATH directories.
fn find(tools: &[&str]) -> Result<Vec<PathBuf>, Vec<PathBuf>> {
    let dirs = path_dirs();
    let mut found = Vec::new();
    for tool in tools {
        let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join(tool)).collect();
        found.push(in_dirs(&candidates)?.remove(0));
    }
    Ok(found)
}

/// The first executable among `candidates`, or the existing directories they are in.
fn in_dirs(candidates: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &PathBuf| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    match candidates.iter().find(|p| executable(p)) {
        Some(p) => Ok(vec![p.clone()]),
        None => {
            let mut dirs: Vec<PathBuf> = candidates
                .iter()
                .filter_map(|p| p.parent())
                .filter(|d| d.is_dir())
                .map(Path::to_path_buf)
                .collect();
            dirs.sort();
            dirs.dedup();
            Err(dirs)
        }
    }
}

/// The venv's python3 and `<site-packages>/<module>/__init__.py`, or the existing
/// site-packages directories.
fn venv_module(module: &str) -> Result<Vec<PathBuf>, Vec<PathBuf>> {
    let python = in_dirs(&[Path::new(VENV).join("bin/python3")])?.remove(0);
    let site_packages: Vec<PathBuf> = std::fs::read_dir(Path::new(VENV).join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .filter(|d| d.is_dir())
        .collect();
    match site_packages
        .iter()
        .map(|d| d.join(module).join("__init__.py"))
        .find(|init| init.is_file())
    {
        Some(init) => Ok(vec![python, init]),
        None => Err(site_packages),
    }
}
