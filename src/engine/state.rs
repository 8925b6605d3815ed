//! What the engine knows besides the store: when it started, the SFTP address, its last
//! error, and the source it serves (for `status` and hand-offs).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

/// A fetch asked for now (`autoprov fetch`): the name the fetched file got in inbox/, or
/// why the fetch failed (nothing was written).
pub type FetchNow = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// What the engine knows of the source that brings files in (ingest implements it).
pub trait SourceLink: Send + Sync {
    /// Called on the engine thread when decided files wait for the source's own finishing
    /// work (poll: moving the remote file); must not block.
    fn handoffs_waiting(&self) {}
    /// The source's part of `status`: its key in the JSON, its value, and text lines.
    fn status(&self) -> Option<(&'static str, serde_json::Value, String)> {
        None
    }
    /// `autoprov fetch` by `caller`: fetches now and files the result into inbox/, audited
    /// as the caller's. None when the source does not fetch on demand (every mode but hris).
    fn fetch_now(&self, _caller: &str) -> Option<FetchNow> {
        None
    }
    /// The last fetch's error while fetching fails (poll, HRIS), for `/healthz`.
    fn fetch_error(&self) -> Option<String> {
        None
    }
    /// Fetches that failed since the daemon started, for `/metrics` (a source that fetches
    /// counts them here; 0 for one that receives).
    fn fetch_failures(&self) -> u64 {
        0
    }
}

/// What `status` adds when the daemon answers.
#[derive(Default)]
pub struct EngineState {
    /// When the daemon started.
    pub started_at: Option<SystemTime>,
    /// The SFTP server's address (host mode).
    pub listen: Option<SocketAddr>,
    /// The web section's address (`web.listen`, as bound).
    pub web: Option<SocketAddr>,
    /// The last error of the engine, cleared by the next file processed.
    pub last_error: Option<String>,
    /// The source, for its part of `status` and its hand-offs.
    pub source: Option<Arc<dyn SourceLink>>,
    /// How the automatic backups went since the start.
    pub backup: BackupState,
}

/// How the automatic backups went since the daemon started: a failure had been a log line
/// only (a full disk, `backups/` unwritable), and the daemon ran on for weeks with no new
/// backup while `status` said nothing.
#[derive(Default, Clone)]
pub struct BackupState {
    /// When one last went through (written, or found unchanged since the newest).
    pub ok_at: Option<SystemTime>,
    /// The last failure, when it is newer than the last success: when, and why.
    pub failed: Option<(SystemTime, String)>,
}
