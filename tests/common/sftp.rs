//! The built-in SFTP server started in-process for a test: its own tokio runtime, a temp dir
//! with a drop root and copies of host keys generated once per test binary, 127.0.0.1:0.
//!
//! ```ignore
//! let s = Server::start_from(|dir| settings_for(dir, pubkey), |settings| { /* adjust */ });
//! s.stop(); // `run` must return Ok within 20 s
//! ```

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use autoprov::config::SshProfile;
use autoprov::ingest::sftp::host_keys;
use autoprov::ingest::sftp::{SftpServer, SftpSettings, SftpUser};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The one SFTP user of [`settings_for`].
pub const USER: &str = "hris";

/// Host keys (ed25519 and RSA) generated once (RSA 3072 takes a moment) and copied into
/// each server.
pub fn host_key_template() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        host_keys::load_or_create(dir.path(), true).unwrap();
        dir
    })
    .path()
}

/// Copies `<name>` and `<name>.pub` from [`host_key_template`] into `dir`.
fn copy_host_key(name: &str, dir: &Path) {
    for file in [name.to_string(), format!("{name}.pub")] {
        fs::copy(host_key_template().join(&file), dir.join(&file)).unwrap();
    }
}

/// Settings for a server in `dir` (the ed25519 host key copied from [`host_key_template`],
/// drop root `<dir>/drop`, the default `compatible` profile without RSA host key) with the
/// user [`USER`] and one authorized key line.
pub fn settings_for(dir: &Path, authorized_key: String) -> SftpSettings {
    let host_key_dir = dir.join("hostkeys");
    fs::create_dir(&host_key_dir).unwrap();
    copy_host_key(host_keys::ED25519_FILE, &host_key_dir);
    SftpSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: SshProfile::Compatible,
        rsa_host_key: false,
        users: vec![SftpUser {
            name: USER.to_string(),
            authorized_keys: vec![authorized_key],
            password_hash: None,
        }],
        max_upload_bytes: 512 * 1024 * 1024,
        host_key_dir,
        drop_root: dir.join("drop"),
        auth_deadline: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(600),
        max_connections_per_ip: 8,
    }
}

/// Turns on `rsa_host_key`, with the template's RSA key copied in unless the host key
/// directory is another (fresh) one.
pub fn enable_rsa_host_key(settings: &mut SftpSettings) {
    settings.rsa_host_key = true;
    if settings.host_key_dir.join(host_keys::ED25519_FILE).exists() {
        copy_host_key(host_keys::RSA_FILE, &settings.host_key_dir);
    }
}

/// A number unique within the test binary (for file names).
pub fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running server; cancelled (and given 20 s to end) on drop.
pub struct Server {
    pub rt: tokio::runtime::Runtime,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// A server in a new temp dir with `settings(dir)`, changed by `adjust`.
    pub fn start_from(
        settings: impl FnOnce(&Path) -> SftpSettings,
        adjust: impl FnOnce(&mut SftpSettings),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        adjust(&mut settings);
        Server::start_in(dir, settings)
    }

    /// A server with these settings, owning `dir`.
    pub fn start_in(dir: TempDir, settings: SftpSettings) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(SftpServer::bind(settings)).expect("bind");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = rt.spawn(server.run(shutdown.clone()));
        Server {
            rt,
            addr,
            dir,
            shutdown,
            task: Some(task),
        }
    }

    /// The server task has not ended (no panic, no error return).
    pub fn is_up(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Cancels the server and returns how long `run` took to return `Ok` (≤ 20 s).
    pub fn stop(&mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        let result = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), task).await })
            .expect("run() returned within 20 s")
            .expect("run() did not panic");
        result.expect("run() returned Ok");
        started.elapsed()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn drop_root(&self) -> PathBuf {
        self.dir.path().join("drop")
    }

    pub fn area(&self, name: &str) -> PathBuf {
        self.drop_root().join(name)
    }

    /// All names in inbox/, hidden ones included, sorted.
    pub fn inbox(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.area("inbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// `<dir>/name`, beside the drop root (client-side files).
    pub fn local(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(20), task).await });
        }
    }
}
