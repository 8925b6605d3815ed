//! A real OpenSSH sshd (Debian's `/usr/sbin/sshd -D -e -f CONFIG`, `Subsystem sftp
//! internal-sftp`) on a free loopback port, with its own ed25519 host key and
//! authorized_keys in a temp dir; killed on drop (the tail of its log printed when a test
//! panics). Plus user key pairs for it.
//!
//! ```ignore
//! let key = UserKey::new("ed25519", None);
//! let sshd = Sshd::started_with(&[&key.public()], ".tmp", &["data/inbox"]);
//! ```

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Need, require};

pub const SSHD: &str = "/usr/sbin/sshd";

/// `ssh-keygen` without a passphrase (`bits`: `-b`, e.g. for RSA).
pub fn keygen(kind: &str, bits: Option<u32>, path: &Path) {
    require(Need::OpensshClient);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "test", "-f"])
        .arg(path)
        .stdin(Stdio::null());
    if let Some(b) = bits {
        cmd.args(["-b", &b.to_string()]);
    }
    let st = cmd.status().expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

/// `ssh-keygen -lf PUB_FILE`: the key's size in bits and its `SHA256:...` fingerprint, as an
/// operator reads them.
pub fn key_fingerprint(pub_file: &Path) -> (u32, String) {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_file)
        .output()
        .expect("ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssh-keygen -lf {}: {text}",
        pub_file.display()
    );
    let mut fields = text.split_whitespace();
    let bits = fields.next().and_then(|b| b.parse().ok());
    let fingerprint = fields.next().filter(|f| f.starts_with("SHA256:"));
    match (bits, fingerprint) {
        (Some(bits), Some(fp)) => (bits, fp.to_string()),
        _ => panic!(
            "ssh-keygen -lf {}: unexpected output {text:?}",
            pub_file.display()
        ),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OpenSSH sshd prepared in a temp dir (host key, authorized_keys, config, folders);
/// started with [`Sshd::start`], killed on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
}

impl Sshd {
    /// Prepares everything in a temp dir named `prefix…`: the `user_pubs` files go into
    /// authorized_keys, the `folders` (relative to the temp dir) are created.
    pub fn prepare_with(user_pubs: &[&Path], prefix: &str, folders: &[&str]) -> Sshd {
        require(Need::Sshd);
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let d = dir.path();
        keygen("ed25519", None, &d.join("host_key"));
        let mut auth = String::new();
        for p in user_pubs {
            auth.push_str(&fs::read_to_string(p).unwrap());
        }
        fs::write(d.join("authorized_keys"), auth).unwrap();
        for sub in folders {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile none\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AuthorizedKeysFile {ak}\nSubsystem sftp internal-sftp\nLogLevel DEBUG1\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
        );
        fs::write(d.join("sshd_config"), config).unwrap();
        Sshd {
            dir,
            port,
            child: None,
        }
    }

    /// [`Sshd::prepare_with`], then [`Sshd::start`].
    pub fn started_with(user_pubs: &[&Path], prefix: &str, folders: &[&str]) -> Sshd {
        let mut s = Sshd::prepare_with(user_pubs, prefix, folders);
        s.start();
        s
    }

    /// Starts sshd (its stderr appended to `sshd.log`) and waits (≤ 5 s) until it listens.
    pub fn start(&mut self) {
        fs::create_dir_all("/run/sshd").unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd (apt-get install openssh-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn host_pub(&self) -> String {
        fs::read_to_string(self.dir.path().join("host_key.pub"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("---- sshd log (tail) ----\n{tail}");
        }
    }
}

/// A user key pair in its own temp dir.
pub struct UserKey {
    pub dir: tempfile::TempDir,
}

impl UserKey {
    pub fn new(kind: &str, bits: Option<u32>) -> UserKey {
        let dir = tempfile::tempdir().unwrap();
        keygen(kind, bits, &dir.path().join("id"));
        UserKey { dir }
    }
    pub fn private(&self) -> PathBuf {
        self.dir.path().join("id")
    }
    pub fn public(&self) -> PathBuf {
        self.dir.path().join("id.pub")
    }
}
