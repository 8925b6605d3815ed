//! The built-in SFTP server driven by real clients: OpenSSH `sftp`/`ssh` 9.2 and `curl`
//! (libssh2). Each test starts its own server in-process on 127.0.0.1:0 with a temporary
//! drop root; clients run as child processes with a timeout.
//!
//! Needs on PATH: sftp, ssh, ssh-keygen, curl (with sftp support); ssh-audit and Paramiko
//! (in `/var/tmp/autoprov-venv`, `.ci/run` installs them) for the ssh-audit tests and the
//! strict-profile RSA user key test. Outside CI a test whose prerequisite is missing is
//! ignored, naming it; under `CI=true` it fails (tests/common/prereq.rs).

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use autoprov::config::SshProfile;
use autoprov::ingest::sftp::host_keys::{ED25519_FILE, RSA_FILE};
use autoprov::ingest::sftp::{SftpServer, SftpSettings};
use common::prereq::require_tool;
use common::sftp::{Server, USER, enable_rsa_host_key, host_key_template, settings_for, unique};
use common::sshd::{key_fingerprint, keygen};
use common::{Need, lazy, require, stays, wait_until};
use serde_json::Value;
use tempfile::TempDir;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Client key pairs, generated once per test binary.
struct Keys {
    _dir: TempDir,
    good: PathBuf,
    wrong: Vec<PathBuf>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        require(Need::OpensshClient);
        let dir = tempfile::tempdir().unwrap();
        let gen_key = |name: &str| {
            let path = dir.path().join(name);
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&path)
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
            path
        };
        let good = gen_key("good");
        let wrong = (1..=4).map(|i| gen_key(&format!("wrong{i}"))).collect();
        Keys {
            _dir: dir,
            good,
            wrong,
        }
    })
}

fn pubkey_line(key: &Path) -> String {
    fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn default_settings(dir: &Path) -> SftpSettings {
    settings_for(dir, pubkey_line(&keys().good))
}

impl Server {
    fn start() -> Server {
        Server::start_with(|_| {})
    }

    fn start_with(adjust: impl FnOnce(&mut SftpSettings)) -> Server {
        Server::start_from(default_settings, adjust)
    }

    fn common_ssh_options(&self, cmd: &mut Command) {
        cmd.args(["-F", "/dev/null"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "ConnectTimeout=10"]);
    }

    /// `sftp` with key auth only, not yet given a batch or destination.
    fn sftp_command(&self, identities: &[&Path]) -> Command {
        let mut cmd = Command::new("sftp");
        cmd.args(["-P", &self.port().to_string()]);
        self.common_ssh_options(&mut cmd);
        cmd.args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]);
        for id in identities {
            cmd.arg("-o").arg(format!("IdentityFile={}", id.display()));
        }
        cmd
    }

    /// Runs an `sftp -b` batch (commands separated by newlines) with the given key.
    fn sftp_batch_with(&self, identities: &[&Path], batch: &str) -> Outcome {
        let batch_file = self.local(&format!("batch-{}", unique()));
        fs::write(&batch_file, format!("{batch}\n")).unwrap();
        let mut cmd = self.sftp_command(identities);
        cmd.arg("-b")
            .arg(&batch_file)
            .arg(format!("{USER}@127.0.0.1"));
        run(cmd, CLIENT_TIMEOUT)
    }

    fn sftp_batch(&self, batch: &str) -> Outcome {
        self.sftp_batch_with(&[&keys().good], batch)
    }

    fn ssh_command(&self, key: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-p", &self.port().to_string()]);
        self.common_ssh_options(&mut cmd);
        cmd.args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(key);
        cmd
    }

    fn curl(&self, args: &[&str], url_path: &str) -> Outcome {
        let key = &keys().good;
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "--key"])
            .arg(key)
            .arg("--pubkey")
            .arg(key.with_extension("pub"))
            .args(args)
            .arg(format!("sftp://{USER}@127.0.0.1:{}{url_path}", self.port()));
        run(cmd, CLIENT_TIMEOUT)
    }
}

#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.success()
    }
}

/// Runs a client with stdin closed, killing it after `timeout`.
fn run(mut cmd: Command, timeout: Duration) -> Outcome {
    cmd.stdin(Stdio::null());
    run_with_stdin(cmd, timeout)
}

/// Runs a client with whatever stdin `cmd` has, killing it after `timeout`.
fn run_with_stdin(mut cmd: Command, timeout: Duration) -> Outcome {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    finish(child, timeout)
}

fn finish(mut child: Child, timeout: Duration) -> Outcome {
    // Drain the pipes in threads so a chatty client cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap()
    });
    Outcome {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    // xorshift: incompressible enough, no extra dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (len as u64);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------- uploads and downloads

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn sftp_upload_lands_in_inbox_under_its_name_and_nothing_hidden_remains() {
    let s = Server::start();
    let data = random_bytes(3 * 1024 * 1024 + 17);
    fs::write(s.local("roster.csv"), &data).unwrap();
    fs::write(s.local("second.csv"), b"id,name\n1,Ann\n").unwrap();
    let out = s.sftp_batch(&format!(
        "put {} inbox/roster.csv\ncd inbox\nput {}",
        s.local("roster.csv").display(),
        s.local("second.csv").display()
    ));
    assert!(out.ok(), "{out:?}");
    assert_eq!(s.inbox(), ["roster.csv", "second.csv"]);
    assert_eq!(fs::read(s.area("inbox/roster.csv")).unwrap(), data);
    // 0640, as every roster autoprov files (group autoprov reads processed/).
    let mode = fs::metadata(s.area("inbox/roster.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        fs::read(s.area("inbox/second.csv")).unwrap(),
        b"id,name\n1,Ann\n"
    );
}

#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_curl),
    ignore = "needs OpenSSH sftp, ssh-keygen and curl (.ci/run installs them)"
)]
fn curl_upload_lands_in_inbox_under_its_name_and_nothing_hidden_remains() {
    let s = Server::start();
    let data = random_bytes(2 * 1024 * 1024 + 5);
    fs::write(s.local("hr.csv"), &data).unwrap();
    let out = s.curl(
        &["-T", s.local("hr.csv").to_str().unwrap()],
        "/inbox/hr.csv",
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(s.inbox(), ["hr.csv"]);
    assert_eq!(fs::read(s.area("inbox/hr.csv")).unwrap(), data);
}

/// The way to say an upload is complete, which a close cannot (curl and OpenSSH's sftp
/// close a file they gave up on): upload under a temporary name, then rename it to the
/// final one. With OpenSSH's `sftp` and with curl (`-Q "-rename …"`, after the transfer),
/// the roster reaches inbox/ whole under its final name; a temporary upload whose session
/// ends without its rename (curl cut off by its time limit, or told no rename) leaves
/// nothing.
#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_curl),
    ignore = "needs OpenSSH sftp, ssh-keygen and curl (.ci/run installs them)"
)]
fn an_upload_under_a_temporary_name_is_delivered_by_its_rename_alone() {
    let s = Server::start();
    let data = random_bytes(3 * 1024 * 1024 + 7);
    fs::write(s.local("hr.csv"), &data).unwrap();
    let local = s.local("hr.csv");
    let out = s.sftp_batch(&format!(
        "put {} inbox/one.csv.part\nls -l inbox/one.csv.part\nrename inbox/one.csv.part inbox/one.csv",
        local.display()
    ));
    assert!(out.ok(), "{out:?}");
    assert_eq!(s.inbox(), ["one.csv"]);
    assert_eq!(fs::read(s.area("inbox/one.csv")).unwrap(), data);

    let out = s.curl(
        &[
            "-T",
            local.to_str().unwrap(),
            "-Q",
            "-rename /inbox/two.csv.filepart /inbox/two.csv",
        ],
        "/inbox/two.csv.filepart",
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(s.inbox(), ["one.csv", "two.csv"]);
    assert_eq!(fs::read(s.area("inbox/two.csv")).unwrap(), data);

    // Cut off by its rate and time limits: curl closes the file it gave up on. Under a
    // temporary name, nothing reaches inbox/ (under a final name the close would deliver
    // the part sent).
    let out = s.curl(
        &[
            "-T",
            local.to_str().unwrap(),
            "--limit-rate",
            "200k",
            "--max-time",
            "2",
            "-Q",
            "-rename /inbox/three.csv.part /inbox/three.csv",
        ],
        "/inbox/three.csv.part",
    );
    assert!(!out.ok(), "{out:?}");
    // And one that sent everything but was never renamed.
    let out = s.curl(&["-T", local.to_str().unwrap()], "/inbox/four.csv.part");
    assert!(out.ok(), "{out:?}");
    // Their hidden files are deleted as their sessions end (inbox() lists hidden names).
    wait_until(
        "the unnamed uploads deleted",
        Duration::from_secs(10),
        || (s.inbox() == ["one.csv", "two.csv"]).then_some(()),
    );
}

#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_curl),
    ignore = "needs OpenSSH sftp, ssh-keygen and curl (.ci/run installs them)"
)]
fn download_from_processed_with_sftp_and_curl() {
    let s = Server::start();
    let data = random_bytes(700_000);
    fs::write(s.area("processed/roster.csv"), &data).unwrap();
    fs::write(s.area("rejected/bad.csv.report.json"), b"{}").unwrap();
    let out = s.sftp_batch(&format!(
        "get processed/roster.csv {}\nget /rejected/bad.csv.report.json {}",
        s.local("got.csv").display(),
        s.local("report.json").display()
    ));
    assert!(out.ok(), "{out:?}");
    assert_eq!(fs::read(s.local("got.csv")).unwrap(), data);
    assert_eq!(fs::read(s.local("report.json")).unwrap(), b"{}");

    let out = s.curl(
        &["-o", s.local("curl.csv").to_str().unwrap()],
        "/processed/roster.csv",
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(fs::read(s.local("curl.csv")).unwrap(), data);
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn listing_the_root_shows_exactly_the_four_directories() {
    let s = Server::start();
    fs::write(s.area("held/waiting.csv"), b"x").unwrap();
    fs::write(s.area("processed/.hidden"), b"x").unwrap();
    // Another user's upload waiting: /inbox lists as empty (SPEC §5), and opens.
    fs::write(s.area("inbox/waiting-upload.csv"), b"x").unwrap();
    let out = s.sftp_batch("ls -1 /\nls -1 /held\nls -1 /processed\nls -1 /inbox");
    assert!(out.ok(), "{out:?}");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("sftp>"))
        .map(str::trim)
        .collect();
    assert_eq!(
        lines,
        [
            "/held",
            "/inbox",
            "/processed",
            "/rejected",
            "/held/waiting.csv"
        ],
        "{out:?}"
    );
}

// ---------------------------------------------------------------- confinement

/// Runs one sftp command that must fail, and returns its stderr.
fn refused(s: &Server, command: &str) -> String {
    let out = s.sftp_batch(command);
    assert!(!out.ok(), "{command:?} should have failed: {out:?}");
    out.stderr
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn paths_outside_the_root_and_symlinks_are_refused() {
    let s = Server::start();
    std::os::unix::fs::symlink("/etc/passwd", s.area("processed/link.csv")).unwrap();
    std::os::unix::fs::symlink("/etc", s.area("held/etc")).unwrap();
    for (i, remote) in [
        "../../etc/passwd",
        "/../etc/passwd",
        "/etc/passwd",
        "processed/link.csv",
        "held/etc/passwd",
        "processed/../../etc/passwd",
    ]
    .iter()
    .enumerate()
    {
        let local = s.local(&format!("leak{i}"));
        refused(&s, &format!("get {remote} {}", local.display()));
        assert!(!local.exists(), "{remote}: a local file was created");
    }
    refused(&s, "cd ..");
    refused(&s, "ls /etc");
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn delete_rename_mkdir_chmod_and_links_are_refused() {
    let s = Server::start();
    fs::write(s.area("processed/done.csv"), b"done").unwrap();
    let err = refused(&s, "rm processed/done.csv");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&s, "rename processed/done.csv processed/moved.csv");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&s, "rename processed/done.csv inbox/again.csv");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&s, "mkdir inbox/sub");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&s, "rmdir held");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&s, "chmod 777 processed/done.csv");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&s, "ln -s /etc/passwd inbox/link.csv");
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(fs::read(s.area("processed/done.csv")).unwrap(), b"done");
    assert!(!s.area("processed/moved.csv").exists());
    assert!(!s.area("inbox/sub").exists());
    assert!(s.area("held").is_dir());
    assert!(s.inbox().is_empty(), "{:?}", s.inbox());
}

#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_curl),
    ignore = "needs OpenSSH sftp, ssh-keygen and curl (.ci/run installs them)"
)]
fn writes_are_only_new_files_in_inbox_and_inbox_is_not_readable() {
    let s = Server::start();
    fs::write(s.area("inbox/existing.csv"), b"original").unwrap();
    fs::write(s.local("new.csv"), b"replacement").unwrap();
    let new = s.local("new.csv");

    let err = refused(&s, &format!("put {} inbox/existing.csv", new.display()));
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(fs::read(s.area("inbox/existing.csv")).unwrap(), b"original");

    let err = refused(&s, &format!("put {} processed/new.csv", new.display()));
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!s.area("processed/new.csv").exists());

    refused(&s, &format!("put {} new.csv", new.display())); // at the root
    refused(&s, &format!("put {} inbox/sub/new.csv", new.display()));
    refused(&s, &format!("put {} inbox/.hidden.csv", new.display()));
    // A name ending in / (it had been written as the file before the slash).
    refused(&s, &format!("put {} inbox/trail.csv/", new.display()));
    refused(&s, &format!("put {} inbox/trail.csv/.", new.display()));
    refused(&s, &format!("put {} inbox/trail.csv/x/..", new.display()));

    let local = s.local("stolen.csv");
    let err = refused(&s, &format!("get inbox/existing.csv {}", local.display()));
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!local.exists() || fs::read(&local).unwrap().is_empty());

    let out = s.curl(&["-T", new.to_str().unwrap()], "/inbox/existing.csv");
    assert!(!out.ok(), "curl overwrite should fail: {out:?}");
    assert_eq!(fs::read(s.area("inbox/existing.csv")).unwrap(), b"original");

    assert_eq!(s.inbox(), ["existing.csv"]);
}

// ---------------------------------------------------------------- channel policy

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn exec_shell_and_pty_are_refused() {
    let s = Server::start();
    let key = &keys().good;
    let marker = s.local("exec-ran");
    let mut cmd = s.ssh_command(key);
    cmd.arg(format!("{USER}@127.0.0.1"))
        .arg(format!("touch {}", marker.display()));
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(!out.ok(), "{out:?}");
    assert!(out.stderr.contains("exec request failed"), "{out:?}");
    assert!(!marker.exists());

    let mut cmd = s.ssh_command(key);
    cmd.arg("-T").arg(format!("{USER}@127.0.0.1"));
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(!out.ok(), "{out:?}");
    assert!(out.stderr.contains("shell request failed"), "{out:?}");

    let mut cmd = s.ssh_command(key);
    cmd.arg("-tt").arg(format!("{USER}@127.0.0.1"));
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(!out.ok(), "{out:?}");
    assert!(
        out.stderr.contains("PTY allocation request failed"),
        "{out:?}"
    );

    // Another subsystem than sftp.
    let mut cmd = s.ssh_command(key);
    cmd.arg("-s")
        .arg(format!("{USER}@127.0.0.1"))
        .arg("netconf");
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(!out.ok(), "{out:?}");
    assert!(out.stderr.contains("subsystem request failed"), "{out:?}");
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn port_forwarding_is_refused() {
    let s = Server::start();
    let key = &keys().good;

    // Remote forwarding: the global request is refused.
    let mut cmd = s.ssh_command(key);
    cmd.args([
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        "0:127.0.0.1:9",
    ])
    .arg(format!("{USER}@127.0.0.1"));
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(!out.ok(), "{out:?}");
    assert!(
        out.stderr.contains("remote port forwarding failed"),
        "{out:?}"
    );

    // Local forwarding: the direct-tcpip channel is refused; the target never sees a
    // connection and the forwarded socket gets no byte.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let local_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = s.ssh_command(key);
    cmd.args(["-N", "-L"])
        .arg(format!(
            "127.0.0.1:{local_port}:127.0.0.1:{}",
            target.local_addr().unwrap().port()
        ))
        .arg(format!("{USER}@127.0.0.1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut ssh = cmd.spawn().unwrap();
    let mut conn = wait_until("ssh -L to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", local_port)).ok()
    });
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = conn.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "data came through the forward");
    stays(
        "the forward target not reached",
        Duration::from_millis(500),
        || target.accept().is_err(),
    );
    let _ = ssh.kill();
    let _ = ssh.wait();
}

// ---------------------------------------------------------------- authentication

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn a_wrong_key_is_refused() {
    let k = keys();
    let s = Server::start();
    let out = s.sftp_batch_with(&[&k.wrong[0]], "ls /");
    assert!(!out.ok(), "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
    // Right key, wrong user.
    let mut cmd = s.sftp_command(&[&k.good]);
    let batch = s.local("b");
    fs::write(&batch, "ls /\n").unwrap();
    cmd.arg("-b").arg(&batch).arg("someoneelse@127.0.0.1");
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(!out.ok(), "{out:?}");
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn at_most_three_authentication_attempts() {
    let k = keys();
    let s = Server::start();
    // The right key as third attempt still works ...
    let out = s.sftp_batch_with(&[&k.wrong[0], &k.wrong[1], &k.good], "ls /");
    assert!(out.ok(), "{out:?}");
    // ... as fourth it is never considered: the server disconnects.
    let started = Instant::now();
    let out = s.sftp_batch_with(&[&k.wrong[0], &k.wrong[1], &k.wrong[2], &k.good], "ls /");
    assert!(!out.ok(), "{out:?}");
    assert!(
        out.stderr.contains("Too many authentication") || out.stderr.contains("Connection closed"),
        "{out:?}"
    );
    // The failures were answered with a growing delay (250 ms, 500 ms, 1 s).
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

fn askpass_script(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join(format!("askpass-{}", unique()));
    fs::write(&path, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn sftp_with_password(s: &Server, password: &str) -> Outcome {
    let batch = s.local(&format!("batch-{}", unique()));
    fs::write(&batch, "ls /\n").unwrap();
    let mut cmd = Command::new("sftp");
    cmd.args(["-P", &s.port().to_string()]);
    s.common_ssh_options(&mut cmd);
    cmd.args([
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "NumberOfPasswordPrompts=1",
    ])
    // Commands on stdin, not -b: sftp -b forces BatchMode, which disables passwords.
    .stdin(fs::File::open(&batch).unwrap())
    .arg(format!("{USER}@127.0.0.1"))
    .env("SSH_ASKPASS", askpass_script(s.dir.path(), password))
    .env("SSH_ASKPASS_REQUIRE", "force")
    .env("DISPLAY", ":0");
    run_with_stdin(cmd, CLIENT_TIMEOUT)
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn password_login_only_when_a_hash_is_configured() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let hash = argon2::Argon2::default()
        .hash_password(
            b"correct horse",
            &SaltString::from_b64("YWJjZGVmZ2hpamtsbW5vcA").unwrap(),
        )
        .unwrap()
        .to_string();
    let s = Server::start_with(|st| st.users[0].password_hash = Some(hash));
    let out = sftp_with_password(&s, "correct horse");
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("inbox"), "{out:?}");
    let out = sftp_with_password(&s, "wrong horse");
    assert!(!out.ok(), "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");

    let s = Server::start();
    let out = sftp_with_password(&s, "correct horse");
    assert!(!out.ok(), "{out:?}");
    // The server offers public keys only.
    assert!(
        out.stderr.contains("Permission denied (publickey)"),
        "{out:?}"
    );
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn strict_profile_needs_post_quantum_kex_which_openssh_9_2_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = default_settings(dir.path());
    settings.profile = SshProfile::Strict;
    settings.host_key_dir = dir.path().join("strict-keys");
    let s = Server::start_in(dir, settings);
    let out = s.sftp_batch("ls /");
    assert!(!out.ok(), "{out:?}");
    assert!(
        out.stderr.contains("no matching key exchange method"),
        "{out:?}"
    );
    let keys_dir = s.dir.path().join("strict-keys");
    assert!(keys_dir.join("ssh_host_ed25519_key").exists());
    assert!(!keys_dir.join("ssh_host_rsa_key").exists());
}

/// `sftp -v -b` running `ls /` with `key` and extra `-o` options (host keys not checked).
fn sftp_ls_verbose(s: &Server, key: &Path, options: &[&str]) -> Outcome {
    let batch = s.local(&format!("batch-{}", unique()));
    fs::write(&batch, "ls /\n").unwrap();
    let mut cmd = s.sftp_command(&[key]);
    for option in options {
        cmd.args(["-o", option]);
    }
    cmd.arg("-v")
        .arg("-b")
        .arg(&batch)
        .arg(format!("{USER}@127.0.0.1"));
    run(cmd, CLIENT_TIMEOUT)
}

/// The `ALGORITHM SHA256:...` of the "Server host key:" line that `-v` prints.
fn server_host_key(out: &Outcome) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.split_once("Server host key: "))
        .map(|(_, key)| key.trim().to_string())
        .unwrap_or_else(|| panic!("no \"Server host key\" line: {out:?}"))
}

/// `HostKeyAlgorithms` that only an RSA host key satisfies (never SHA-1 `ssh-rsa`).
const RSA_HOST_KEY_ONLY: &str = "HostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256";

/// SPEC §8: without `rsa_host_key` (the default) no RSA host key is created, and one left in
/// the folder by an earlier run is not offered.
#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn the_rsa_host_key_is_neither_created_nor_offered_by_default() {
    let fresh = Server::start_with(|s| s.host_key_dir = s.host_key_dir.with_file_name("fresh"));
    let keys_dir = fresh.dir.path().join("fresh");
    assert!(keys_dir.join(ED25519_FILE).exists());
    assert!(!keys_dir.join(RSA_FILE).exists());
    let out = sftp_ls_verbose(&fresh, &keys().good, &[]);
    assert!(out.ok(), "{out:?}");
    let (_, ed25519) = key_fingerprint(&keys_dir.join(format!("{ED25519_FILE}.pub")));
    assert_eq!(server_host_key(&out), format!("ssh-ed25519 {ed25519}"));

    let leftover = Server::start_with(|s| {
        fs::copy(
            host_key_template().join(RSA_FILE),
            s.host_key_dir.join(RSA_FILE),
        )
        .unwrap();
    });
    for s in [&fresh, &leftover] {
        let out = sftp_ls_verbose(s, &keys().good, &[RSA_HOST_KEY_ONLY]);
        assert!(!out.ok(), "{out:?}");
        assert!(out.stderr.contains("no matching host key type"), "{out:?}");
    }
}

/// SPEC §8: with `rsa_host_key` both host keys are created (0600, RSA ≥ 3072 bits), offered
/// (RSA as rsa-sha2-512/256) and the same after a restart.
#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn host_keys_persist_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let host_key_dir = dir.path().join("fresh-keys");
    let mut settings = default_settings(dir.path());
    settings.host_key_dir = host_key_dir.clone();
    enable_rsa_host_key(&mut settings);
    let mut s = Server::start_in(dir, settings.clone());
    for name in [ED25519_FILE, RSA_FILE] {
        let mode = fs::metadata(host_key_dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let (bits, rsa) = key_fingerprint(&host_key_dir.join(format!("{RSA_FILE}.pub")));
    assert!(bits >= 3072, "{bits}");
    let out = sftp_ls_verbose(&s, &keys().good, &[RSA_HOST_KEY_ONLY]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(server_host_key(&out), format!("ssh-rsa {rsa}"));

    // Each host key pinned under its own alias on first contact, then checked strictly.
    let connect = |s: &Server, checking: &str, alias: &str, algorithms: &str| {
        let batch = s.local(&format!("batch-{}", unique()));
        fs::write(&batch, "ls /\n").unwrap();
        let mut cmd = Command::new("sftp");
        cmd.args(["-P", &s.port().to_string(), "-F", "/dev/null"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-o")
            .arg(format!("StrictHostKeyChecking={checking}"))
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("HostKeyAlias={alias}"))
            .arg("-o")
            .arg(format!("HostKeyAlgorithms={algorithms}"))
            .arg("-o")
            .arg(format!("IdentityFile={}", keys().good.display()))
            .arg("-b")
            .arg(&batch)
            .arg(format!("{USER}@127.0.0.1"));
        run(cmd, CLIENT_TIMEOUT)
    };
    let pins = [
        ("autoprov-ed25519", "ssh-ed25519"),
        ("autoprov-rsa", "rsa-sha2-512,rsa-sha2-256"),
    ];
    for (alias, algorithms) in pins {
        let out = connect(&s, "accept-new", alias, algorithms);
        assert!(out.ok(), "{alias}: {out:?}");
    }
    s.stop();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    let s = Server::start_in(dir, settings);
    for (alias, algorithms) in pins {
        let out = connect(&s, "yes", alias, algorithms);
        assert!(
            out.ok(),
            "{alias}: host key changed across restart: {out:?}"
        );
    }
}

/// The strict profile with `rsa_host_key` does not start (the config refuses it earlier).
#[test]
fn strict_with_an_rsa_host_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = default_settings(dir.path());
    settings.profile = SshProfile::Strict;
    settings.host_key_dir = dir.path().join("strict-keys");
    settings.rsa_host_key = true;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = match rt.block_on(SftpServer::bind(settings)) {
        Ok(_) => panic!("strict with an RSA host key was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("ed25519 host key only"), "{err}");
    assert!(!dir.path().join("strict-keys").join(RSA_FILE).exists());
}

// ---------------------------------------------------------------- users' RSA keys

/// A 3072-bit RSA user key generated with ssh-keygen in `dir`, and settings authorizing it.
fn rsa_user(dir: &Path) -> (PathBuf, SftpSettings) {
    let key = dir.join("id_rsa");
    keygen("rsa", Some(3072), &key);
    (key.clone(), settings_for(dir, pubkey_line(&key)))
}

/// SPEC §8: users' RSA keys (rsa-sha2) work without the RSA host key: an upload with the
/// real OpenSSH `sftp` against the default `compatible` profile, ed25519 host key.
#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn an_rsa_user_key_uploads_with_openssh_sftp_in_the_default_profile() {
    let dir = tempfile::tempdir().unwrap();
    let (key, settings) = rsa_user(dir.path());
    assert_eq!(settings.profile, SshProfile::Compatible);
    assert!(!settings.rsa_host_key);
    let s = Server::start_in(dir, settings);
    let content = b"employee_id,email\n1,ann@example.com\n";
    fs::write(s.local("rsa.csv"), content).unwrap();
    let batch = format!("put {} inbox/rsa.csv", s.local("rsa.csv").display());
    let out = s.sftp_batch_with(&[&key], &batch);
    assert!(out.ok(), "{out:?}");
    assert_eq!(fs::read(s.area("inbox/rsa.csv")).unwrap(), content);
    let out = sftp_ls_verbose(&s, &key, &[]);
    assert!(out.ok(), "{out:?}");
    assert!(server_host_key(&out).starts_with("ssh-ed25519 "), "{out:?}");
}

/// Paramiko: connects, checks the host key (argv: port user key host_pub local remote),
/// logs in with the RSA key and uploads; prints the host key algorithm.
const PARAMIKO_RSA_UPLOAD: &str = r#"
import sys, paramiko
port, user, key, host_pub, local, remote = sys.argv[1:7]
t = paramiko.Transport(("127.0.0.1", int(port)))
t.connect()
got = t.get_remote_server_key()
if [got.get_name(), got.get_base64()] != host_pub.split()[:2]:
    sys.exit("unexpected host key " + got.get_name())
t.auth_publickey(user, paramiko.RSAKey.from_private_key_file(key))
sftp = paramiko.SFTPClient.from_transport(t)
sftp.put(local, remote, confirm=False)
sftp.close()
t.close()
print("host key", got.get_name())
"#;

/// SPEC §8: users' RSA keys work in `strict` too, so server-sig-algs must name rsa-sha2.
/// OpenSSH 9.2 lacks strict's key exchange; Paramiko (which signs only with an algorithm
/// in server-sig-algs) uploads instead.
#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_paramiko),
    ignore = "needs ssh-keygen and paramiko (.ci/run installs them)"
)]
fn strict_profile_accepts_an_rsa_user_key() {
    let python = require_tool(Need::Paramiko);
    let dir = tempfile::tempdir().unwrap();
    let (key, mut settings) = rsa_user(dir.path());
    settings.profile = SshProfile::Strict;
    let host_pub = fs::read_to_string(settings.host_key_dir.join(format!("{ED25519_FILE}.pub")));
    let s = Server::start_in(dir, settings);
    let content = b"employee_id,email\n2,bob@example.com\n";
    fs::write(s.local("strict.csv"), content).unwrap();
    let mut cmd = Command::new(python);
    cmd.args(["-c", PARAMIKO_RSA_UPLOAD, &s.port().to_string(), USER])
        .arg(&key)
        .arg(host_pub.unwrap())
        .arg(s.local("strict.csv"))
        .arg("inbox/strict.csv");
    let out = run(cmd, CLIENT_TIMEOUT);
    assert!(out.ok(), "{out:?}");
    assert!(out.stdout.contains("host key ssh-ed25519"), "{out:?}");
    assert_eq!(fs::read(s.area("inbox/strict.csv")).unwrap(), content);
}

// ---------------------------------------------------------------- limits

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn an_upload_killed_half_way_leaves_nothing_behind() {
    let s = Server::start();
    fs::write(s.local("slow.bin"), random_bytes(4 * 1024 * 1024)).unwrap();
    let batch = s.local("b");
    fs::write(
        &batch,
        format!("put {} inbox/slow.bin\n", s.local("slow.bin").display()),
    )
    .unwrap();
    let mut cmd = s.sftp_command(&[&keys().good]);
    // -l is in Kbit/s: about 100 KB/s, so the upload takes ~40 s.
    cmd.args(["-l", "800", "-b"])
        .arg(&batch)
        .arg(format!("{USER}@127.0.0.1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_until(
        lazy(|| format!("a partial upload in inbox/: {:?}", s.inbox())),
        Duration::from_secs(15),
        || {
            fs::read_dir(s.area("inbox"))
                .unwrap()
                .any(|e| {
                    let e = e.unwrap();
                    e.file_name().to_string_lossy().starts_with(".upload-")
                        && e.metadata().unwrap().len() > 0
                })
                .then_some(())
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(
        lazy(|| format!("nothing left in inbox/: {:?}", s.inbox())),
        Duration::from_secs(10),
        || s.inbox().is_empty().then_some(()),
    );
}

#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_curl),
    ignore = "needs OpenSSH sftp, ssh-keygen and curl (.ci/run installs them)"
)]
fn an_oversize_upload_is_cut_off_and_leaves_nothing() {
    let s = Server::start_with(|st| st.max_upload_bytes = 100_000);
    fs::write(s.local("big.csv"), random_bytes(1_000_000)).unwrap();
    fs::write(s.local("fits.csv"), random_bytes(100_000)).unwrap();

    let out = s.sftp_batch(&format!(
        "put {} inbox/big.csv",
        s.local("big.csv").display()
    ));
    assert!(!out.ok(), "{out:?}");
    assert!(s.inbox().is_empty(), "{:?}", s.inbox());

    let out = s.curl(
        &["-T", s.local("big.csv").to_str().unwrap()],
        "/inbox/big.csv",
    );
    assert!(!out.ok(), "{out:?}");
    assert!(s.inbox().is_empty(), "{:?}", s.inbox());

    // Exactly the limit is fine.
    let out = s.sftp_batch(&format!(
        "put {} inbox/fits.csv",
        s.local("fits.csv").display()
    ));
    assert!(out.ok(), "{out:?}");
    assert_eq!(s.inbox(), ["fits.csv"]);
}

/// Reads the server's identification line from a raw TCP connection.
fn read_banner(stream: &TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn a_silent_connection_is_closed_at_the_authentication_deadline() {
    let s = Server::start_with(|st| st.auth_deadline = Duration::from_secs(1));
    let started = Instant::now();
    let mut conn = TcpStream::connect(s.addr).unwrap();
    assert!(read_banner(&conn).unwrap().starts_with("SSH-2.0-autoprov"));
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest); // EOF (or reset) when the server closes
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );

    // Also after the key exchange: a client whose key is accepted but which then takes
    // 4 s to get its passphrase is cut off at the 2 s deadline (without the deadline it
    // would log in and get "exec request failed").
    let key_dir = tempfile::tempdir().unwrap();
    let locked = key_dir.path().join("locked");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(st.success());
    drop(s);
    let locked_pub = pubkey_line(&locked);
    let s = Server::start_with(|st| {
        st.auth_deadline = Duration::from_secs(2);
        st.users[0].authorized_keys.push(locked_pub);
    });
    let sleeper = s.local("askpass-sleep");
    fs::write(&sleeper, "#!/bin/sh\nsleep 4\necho secret\n").unwrap();
    fs::set_permissions(&sleeper, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("ssh");
    cmd.args(["-p", &s.port().to_string()]);
    s.common_ssh_options(&mut cmd);
    cmd.args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(&locked)
        .arg(format!("{USER}@127.0.0.1"))
        .arg("true")
        .env("SSH_ASKPASS", &sleeper)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    let started = Instant::now();
    let out = run(cmd, Duration::from_secs(40));
    assert!(!out.ok(), "{out:?}");
    assert!(
        !out.stderr.contains("exec request failed"),
        "logged in after the deadline: {out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?} {out:?}",
        started.elapsed()
    );
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn connections_per_address_are_capped() {
    let s = Server::start_with(|st| st.max_connections_per_ip = 2);
    let a = TcpStream::connect(s.addr).unwrap();
    let b = TcpStream::connect(s.addr).unwrap();
    assert!(read_banner(&a).unwrap().starts_with("SSH-2.0-"));
    assert!(read_banner(&b).unwrap().starts_with("SSH-2.0-"));
    let c = TcpStream::connect(s.addr).unwrap();
    assert_eq!(
        read_banner(&c).unwrap_or_default(),
        "",
        "third connection was served"
    );
    drop(a);
    wait_until("the slot to be released", Duration::from_secs(5), || {
        TcpStream::connect(s.addr)
            .ok()
            .and_then(|d| read_banner(&d).ok())
            .is_some_and(|l| l.starts_with("SSH-2.0-"))
            .then_some(())
    });
    drop(b);
}

/// Starts an interactive `sftp` reading commands from a pipe we hold.
fn interactive_sftp(s: &Server) -> Child {
    let mut cmd = s.sftp_command(&[&keys().good]);
    cmd.arg(format!("{USER}@127.0.0.1"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

/// Sends `ls /` and end-of-input to an interactive sftp and returns its exit status.
fn finish_interactive(mut child: Child) -> Option<ExitStatus> {
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"ls /\n");
    }
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    status
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn an_idle_session_is_closed() {
    let s = Server::start_with(|st| st.idle_timeout = Duration::from_secs(2));
    let busy = interactive_sftp(&s);
    let idle = interactive_sftp(&s);
    std::thread::sleep(Duration::from_millis(800));
    // A command within the idle timeout works ...
    let status = finish_interactive(busy);
    assert!(status.is_some_and(|st| st.success()), "{status:?}");
    // ... one after it finds the session closed by the server.
    std::thread::sleep(Duration::from_secs(4));
    let status = finish_interactive(idle);
    assert!(status.is_some_and(|st| !st.success()), "{status:?}");
}

#[test]
#[cfg_attr(
    missing_openssh_client,
    ignore = "needs OpenSSH sftp, ssh and ssh-keygen (.ci/run installs them)"
)]
fn shutdown_closes_sessions_and_discards_unfinished_uploads() {
    let mut s = Server::start();
    fs::write(s.local("slow.bin"), random_bytes(4 * 1024 * 1024)).unwrap();
    let batch = s.local("b");
    fs::write(
        &batch,
        format!("put {} inbox/slow.bin\n", s.local("slow.bin").display()),
    )
    .unwrap();
    let mut cmd = s.sftp_command(&[&keys().good]);
    cmd.args(["-l", "800", "-b"])
        .arg(&batch)
        .arg(format!("{USER}@127.0.0.1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut uploading = cmd.spawn().unwrap();
    wait_until("the upload to start", Duration::from_secs(15), || {
        (!s.inbox().is_empty()).then_some(())
    });
    let idle = interactive_sftp(&s);
    std::thread::sleep(Duration::from_millis(800));

    let took = s.stop();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(s.inbox().is_empty(), "{:?}", s.inbox());
    let up = wait_timeout(&mut uploading, Duration::from_secs(10));
    let _ = uploading.kill();
    assert!(
        up.is_some_and(|st| !st.success()),
        "uploading client: {up:?}"
    );
    let id = finish_interactive(idle);
    assert!(id.is_some_and(|st| !st.success()), "idle client: {id:?}");
    assert!(TcpStream::connect(s.addr).is_err(), "still accepting");
}

#[test]
#[ignore = "throughput report, run with --ignored --nocapture"]
fn upload_100mb_throughput() {
    let s = Server::start();
    let mut f = fs::File::create(s.local("100mb.bin")).unwrap();
    let chunk = random_bytes(1024 * 1024);
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    for client in ["sftp", "curl"] {
        let started = Instant::now();
        let out = if client == "sftp" {
            s.sftp_batch(&format!(
                "put {} inbox/sftp.bin",
                s.local("100mb.bin").display()
            ))
        } else {
            s.curl(
                &["-T", s.local("100mb.bin").to_str().unwrap()],
                "/inbox/curl.bin",
            )
        };
        let secs = started.elapsed().as_secs_f64();
        assert!(out.ok(), "{out:?}");
        println!(
            "{client}: 100 MiB in {secs:.2} s = {:.0} MiB/s",
            100.0 / secs
        );
        let name = format!("inbox/{client}.bin");
        assert_eq!(
            fs::metadata(s.area(&name)).unwrap().len(),
            100 * 1024 * 1024
        );
    }
}

// ---- ssh-audit (SPEC §8): no failure in any configuration, and no warning in `strict` ----

/// What ssh-audit's JSON output (`-j`) says about a server.
#[derive(Debug)]
struct Audit {
    /// `section algorithm: note` for every `fail` note, and every CVE.
    failures: Vec<String>,
    /// `section algorithm: note` for every `warn` note.
    warnings: Vec<String>,
    /// The host key algorithms offered, each with its key size when ssh-audit gives one.
    host_keys: Vec<(String, Option<u64>)>,
}

/// Runs ssh-audit (from the venv `.ci/run` installs it into, or PATH) against a
/// `compatible` server changed by `adjust`.
fn audit(adjust: impl FnOnce(&mut SftpSettings)) -> Audit {
    let tool = require_tool(Need::SshAudit);
    let server = Server::start_with(adjust);
    let out = Command::new(tool)
        .args(["-j", "-n", "--skip-rate-test", "-p"])
        .arg(server.port().to_string())
        .arg("127.0.0.1")
        .output()
        .expect("run ssh-audit");
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("ssh-audit -j printed no JSON ({e}):\n{text}"));
    let audit = Audit::from_json(&json);
    // ssh-audit's own verdict (0 good, 2 warnings, 3 failures) must agree with the notes read.
    let expected = match (audit.failures.is_empty(), audit.warnings.is_empty()) {
        (false, _) => 3,
        (true, false) => 2,
        (true, true) => 0,
    };
    assert_eq!(out.status.code(), Some(expected), "{audit:#?}\n{text}");
    audit
}

impl Audit {
    fn from_json(json: &Value) -> Audit {
        let mut audit = Audit {
            failures: Vec::new(),
            warnings: Vec::new(),
            host_keys: Vec::new(),
        };
        for section in ["kex", "key", "enc", "mac"] {
            let algorithms = json[section]
                .as_array()
                .unwrap_or_else(|| panic!("ssh-audit JSON without {section}: {json:#}"));
            for alg in algorithms {
                let name = alg["algorithm"].as_str().expect("algorithm name");
                for (level, list) in [("fail", &mut audit.failures), ("warn", &mut audit.warnings)]
                {
                    let notes = alg["notes"][level].as_array().into_iter().flatten();
                    list.extend(notes.map(|n| format!("{section} {name}: {n}")));
                }
                if section == "key" {
                    audit
                        .host_keys
                        .push((name.to_string(), alg["keysize"].as_u64()));
                }
            }
        }
        let cves = json["cves"]
            .as_array()
            .expect("ssh-audit JSON without cves");
        audit
            .failures
            .extend(cves.iter().map(|c| format!("cve: {c}")));
        assert!(!audit.host_keys.is_empty(), "no host key audited: {json:#}");
        audit
    }

    /// Asserts the warnings are only those SPEC accepts for older clients in `compatible`:
    /// curve25519 (not post-quantum) and encrypt-and-MAC hmac-sha2.
    fn assert_only_compatible_warnings(&self) {
        for w in &self.warnings {
            let accepted = (w.starts_with("kex curve25519-sha256") && w.contains("post-quantum"))
                || (w.starts_with("mac hmac-sha2-") && w.contains("encrypt-and-MAC"));
            assert!(accepted, "unexpected warning: {w}\n{self:#?}");
        }
    }
}

fn ed25519_only() -> Vec<(String, Option<u64>)> {
    vec![("ssh-ed25519".to_string(), None)]
}

#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_ssh_audit),
    ignore = "needs ssh-keygen and ssh-audit (.ci/run installs them)"
)]
fn ssh_audit_strict_profile_has_no_failure_and_no_warning() {
    let audit = audit(|s| s.profile = SshProfile::Strict);
    assert_eq!(audit.failures.len(), 0, "{audit:#?}");
    assert_eq!(audit.warnings.len(), 0, "{audit:#?}");
    assert_eq!(audit.host_keys, ed25519_only());
}

#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_ssh_audit),
    ignore = "needs ssh-keygen and ssh-audit (.ci/run installs them)"
)]
fn ssh_audit_compatible_profile_has_no_failure_and_no_rsa_host_key() {
    let audit = audit(|_| {});
    assert_eq!(audit.failures.len(), 0, "{audit:#?}");
    audit.assert_only_compatible_warnings();
    assert_eq!(audit.host_keys, ed25519_only());
}

#[test]
#[cfg_attr(
    any(missing_openssh_client, missing_ssh_audit),
    ignore = "needs ssh-keygen and ssh-audit (.ci/run installs them)"
)]
fn ssh_audit_compatible_with_rsa_host_key_has_no_failure() {
    let audit = audit(enable_rsa_host_key);
    assert_eq!(audit.failures.len(), 0, "{audit:#?}");
    audit.assert_only_compatible_warnings();
    let names: Vec<&str> = audit.host_keys.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]);
    for (name, bits) in &audit.host_keys[1..] {
        assert!(bits.is_some_and(|b| b >= 3072), "{name}: {bits:?}");
    }
}
