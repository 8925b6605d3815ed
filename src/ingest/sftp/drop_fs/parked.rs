//! Uploads a session closed under a temporary name (`x.csv.part`), waiting for the rename
//! that gives them their final name in `inbox/`, and the uploads it delivered.
//!
//! A close alone cannot say that an upload is complete: curl closes the file of a transfer
//! it gave up on (a timeout, a speed limit), and OpenSSH's `sftp` closes the file when its
//! `put` is interrupted. Such a file, renamed into `inbox/` at its close, had been applied as
//! a whole roster, and every admin in its missing tail deactivated. Uploaded under a
//! temporary name and renamed once the client knows it sent everything (WinSCP's default,
//! `curl -Q "-rename …"`, `sftp`'s `rename`), it reaches `inbox/` only whole; but OpenSSH's
//! `sftp` takes a SIGINT as the end of its `put` and runs the `rename` after it (README:
//! stop it with SIGTERM). Until then it
//! stays under its hidden name, seen by its own session alone, and is deleted when the
//! session ends without renaming it.
//!
//! Delivered uploads are remembered (their last [`DELIVERED_KEPT`]) so that `stat` of the
//! name just written still answers once the engine has taken the file out of `inbox/`:
//! paramiko's `put` checks the size so, a round trip after its close.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use russh_sftp::protocol::FileAttributes;
use russh_sftp::server::StatusReply;
use tracing::Span;

use super::status::{failure, io_status};

/// Uploads one session may leave waiting for their rename (as many as its open handles).
pub(super) const MAX_WAITING: usize = super::MAX_OPEN_HANDLES;

/// Delivered uploads whose attributes `stat` still answers.
const DELIVERED_KEPT: usize = 64;

/// One session's uploads waiting for their rename, and those it delivered.
#[derive(Default)]
pub(super) struct Parked {
    waiting: HashMap<String, Waiting>,
    /// Each with whether it was kept under another name (its own taken meanwhile).
    delivered: VecDeque<(String, FileAttributes, bool)>,
}

impl Parked {
    /// Keeps `waiting` under its temporary `name`.
    pub(super) fn park(&mut self, name: String, waiting: Waiting) {
        self.waiting.insert(name, waiting);
    }

    /// Whether an upload waits under `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.waiting.contains_key(name)
    }

    /// How many uploads wait.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The upload waiting under `name`, taken out (to be renamed, or put back).
    pub(super) fn take(&mut self, name: &str) -> Option<Waiting> {
        self.waiting.remove(name)
    }

    /// Remembers that `name` was delivered into `inbox/` with `attrs`, under another name
    /// when `elsewhere`.
    pub(super) fn delivered(&mut self, name: String, attrs: FileAttributes, elsewhere: bool) {
        self.delivered.retain(|(n, ..)| *n != name);
        if self.delivered.len() >= DELIVERED_KEPT {
            self.delivered.pop_front();
        }
        self.delivered.push_back((name, attrs, elsewhere));
    }

    /// The attributes of the upload this session delivered last under `name` when it was
    /// kept under another name: a `stat` of `name` is answered with them, not with the file
    /// that took the name (paramiko's size check after its `put` had failed on it).
    pub(super) fn kept_elsewhere(&self, name: &str) -> Option<FileAttributes> {
        let last = self.delivered.iter().rev().find(|(n, ..)| n == name)?;
        last.2.then(|| last.1.clone())
    }

    /// The attributes of the upload waiting under `name`, or else of the one this session
    /// delivered under it last.
    pub(super) fn attrs(&self, name: &str) -> Option<FileAttributes> {
        match self.waiting.get(name) {
            Some(w) => Some(w.attrs.clone()),
            None => self
                .delivered
                .iter()
                .rev()
                .find(|(n, ..)| n == name)
                .map(|(_, a, _)| a.clone()),
        }
    }
}

/// An upload closed under a temporary name: its complete, synced file under a hidden name
/// in `inbox/`, deleted on drop unless it was given its final name.
pub(super) struct Waiting {
    /// The name its client gave it, for the log.
    name: String,
    temp: PathBuf,
    attrs: FileAttributes,
    span: Span,
    named: bool,
}

impl Waiting {
    /// The upload its client named `name`, in `temp` (synced), of attributes `attrs`.
    pub(super) fn new(name: &str, temp: PathBuf, attrs: FileAttributes, span: Span) -> Waiting {
        Waiting {
            name: name.to_string(),
            temp,
            attrs,
            span,
            named: false,
        }
    }

    /// Its size, as its close found it.
    pub(super) fn size(&self) -> u64 {
        self.attrs.size.unwrap_or_default()
    }

    /// Gives it its final name `dest` without replacing anything, durably. When that fails
    /// it goes on waiting (the client may try another name); `failed` hears of an I/O error.
    pub(super) fn name_into(
        &mut self,
        dest: &Path,
        failed: impl FnOnce(&io::Error),
    ) -> Result<FileAttributes, StatusReply> {
        match crate::util::rename_noreplace(&self.temp, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(failure(
                    "a file of that name is in /inbox already; choose another name",
                ));
            }
            Err(e) => {
                failed(&e);
                return Err(io_status(&e));
            }
        }
        self.named = true;
        if let Some(dir) = dest.parent()
            && let Err(e) = File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(parent: &self.span, error = %e, "could not fsync the inbox directory");
        }
        Ok(self.attrs.clone())
    }
}

impl Waiting {
    /// Deletes it, as its client asked.
    pub(super) fn remove(mut self) {
        self.named = true;
        let _ = fs::remove_file(&self.temp);
        tracing::info!(parent: &self.span, file = %crate::logging::ClientText(&self.name),
            bytes = self.size(), "upload under a temporary name removed by its client");
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.named {
            let _ = fs::remove_file(&self.temp);
            // Named, as every other upload's line is: the one an admin needs when an HR
            // job's rename failed had not said which file.
            tracing::warn!(parent: &self.span, file = %crate::logging::ClientText(&self.name),
                bytes = self.size(),
                "upload discarded: it was closed under a temporary name and not renamed to its final name before its session ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DropFs, DropRoot, TEMP_PREFIX};
    use super::MAX_WAITING;
    use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
    use russh_sftp::server::Handler;
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;
    use tracing::Span;

    const NEW: OpenFlags = OpenFlags::WRITE
        .union(OpenFlags::CREATE)
        .union(OpenFlags::TRUNCATE);

    fn session(dir: &Path) -> DropFs {
        let root = Arc::new(DropRoot::prepare(dir).unwrap());
        DropFs::new(root, 1 << 20, Span::none(), None)
    }

    fn inbox(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("inbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Opens `path` for a new file, writes `data`, closes it.
    async fn put(fs_: &mut DropFs, path: &str, data: &[u8]) -> Result<(), StatusCode> {
        let h = fs_
            .open(1, path.into(), NEW, FileAttributes::default())
            .await
            .map_err(|e| e.status_code)?
            .handle;
        fs_.write(2, h.clone(), 0, data.to_vec()).await.unwrap();
        fs_.close(3, h).await.map(drop).map_err(|e| e.status_code)
    }

    /// Uploaded under a temporary name, a file waits hidden after its close (the inbox
    /// takes nothing), is stat-able by its name, and reaches inbox/ whole when renamed to
    /// its final name; its size is still answered once the engine took it from inbox/.
    #[tokio::test]
    async fn an_upload_under_a_temporary_name_is_delivered_by_its_rename() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path());
        put(&mut fs_, "inbox/r.csv.part", b"id,email\n")
            .await
            .unwrap();
        let waiting = inbox(dir.path());
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(waiting[0].starts_with(TEMP_PREFIX), "{waiting:?}");
        let attrs = fs_.stat(4, "inbox/r.csv.part".into()).await.unwrap().attrs;
        assert_eq!(attrs.size, Some(9));

        fs_.rename(5, "inbox/r.csv.part".into(), "/inbox/r.csv".into())
            .await
            .unwrap();
        assert_eq!(inbox(dir.path()), ["r.csv"]);
        assert_eq!(
            fs::read(dir.path().join("inbox/r.csv")).unwrap(),
            b"id,email\n"
        );
        // The engine takes it at once; the client's check of the size still answers.
        fs::remove_file(dir.path().join("inbox/r.csv")).unwrap();
        assert_eq!(
            fs_.stat(6, "inbox/r.csv".into()).await.unwrap().attrs.size,
            Some(9)
        );
        // Renamed once: the temporary name is gone.
        let gone = fs_.stat(7, "inbox/r.csv.part".into()).await.unwrap_err();
        assert_eq!(gone.status_code, StatusCode::NoSuchFile);
    }

    /// An upload whose session ends before its rename (the client gave up) never reaches
    /// inbox/: its file is deleted.
    #[tokio::test]
    async fn an_upload_never_renamed_is_deleted_when_its_session_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path());
        put(&mut fs_, "inbox/cut.csv.filepart", b"half a ro")
            .await
            .unwrap();
        assert_eq!(inbox(dir.path()).len(), 1);
        drop(fs_);
        assert!(inbox(dir.path()).is_empty(), "{:?}", inbox(dir.path()));
    }

    /// Renames other than this session's waiting upload to a free final name in inbox/ are
    /// refused; a name taken keeps the upload waiting for another; the client may remove
    /// its own waiting upload and nothing else.
    #[tokio::test]
    async fn only_a_waiting_upload_is_renamed_and_only_to_a_free_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path());
        fs::write(dir.path().join("inbox/taken.csv"), b"other").unwrap();
        fs::write(dir.path().join("processed/done.csv"), b"done").unwrap();
        put(&mut fs_, "inbox/a.csv.tmp", b"a").await.unwrap();
        let code = |r: Result<russh_sftp::protocol::Status, russh_sftp::server::StatusReply>| {
            r.unwrap_err().status_code
        };
        let deny = StatusCode::PermissionDenied;
        for (from, to) in [
            ("inbox/b.csv.tmp", "inbox/b.csv"),
            ("inbox/taken.csv", "inbox/t2.csv"),
            ("processed/done.csv", "inbox/again.csv"),
            ("inbox/a.csv.tmp", "processed/a.csv"),
            ("inbox/a.csv.tmp", "inbox/a.csv.part"),
            ("inbox/a.csv.tmp", "inbox/.a.csv"),
            ("inbox/a.csv.tmp", "inbox/sub/a.csv"),
        ] {
            assert_eq!(
                code(fs_.rename(1, from.into(), to.into()).await),
                deny,
                "{from} -> {to}"
            );
        }
        assert_eq!(
            code(
                fs_.rename(1, "inbox/a.csv.tmp".into(), "inbox/taken.csv".into())
                    .await
            ),
            StatusCode::Failure
        );
        assert_eq!(
            fs::read(dir.path().join("inbox/taken.csv")).unwrap(),
            b"other"
        );
        fs_.rename(1, "inbox/a.csv.tmp".into(), "inbox/a.csv".into())
            .await
            .unwrap();
        assert_eq!(fs::read(dir.path().join("inbox/a.csv")).unwrap(), b"a");

        put(&mut fs_, "inbox/c.csv.part", b"c").await.unwrap();
        assert_eq!(code(fs_.remove(1, "inbox/a.csv".into()).await), deny);
        assert_eq!(code(fs_.remove(1, "processed/done.csv".into()).await), deny);
        fs_.remove(1, "inbox/c.csv.part".into()).await.unwrap();
        assert_eq!(inbox(dir.path()), ["a.csv", "taken.csv"]);
        // At most MAX_WAITING wait or are open under a temporary name, whichever way they
        // are reached (a session had left 31 waiting: 15 closed, then 16 open at once).
        let half = MAX_WAITING / 2;
        for i in 0..half {
            put(&mut fs_, &format!("inbox/w{i}.csv.part"), b"w")
                .await
                .unwrap();
        }
        let mut open = Vec::new();
        for i in half..MAX_WAITING {
            let path = format!("inbox/w{i}.csv.part");
            open.push(
                fs_.open(1, path, NEW, FileAttributes::default())
                    .await
                    .unwrap()
                    .handle,
            );
        }
        let over = fs_
            .open(
                1,
                "inbox/over.csv.part".into(),
                NEW,
                FileAttributes::default(),
            )
            .await;
        assert_eq!(over.unwrap_err().status_code, StatusCode::Failure);
        for h in open {
            fs_.close(1, h).await.unwrap();
        }
        assert_eq!(
            put(&mut fs_, "inbox/over.csv.part", b"o").await,
            Err(StatusCode::Failure)
        );
        for i in 0..MAX_WAITING {
            fs_.remove(1, format!("inbox/w{i}.csv.part")).await.unwrap();
        }
        // A final name is not a waiting upload.
        put(&mut fs_, "inbox/final.csv", b"f").await.unwrap();
        // The same temporary name twice in a session: the second waits for the first's
        // rename.
        put(&mut fs_, "inbox/d.csv.part", b"d").await.unwrap();
        assert_eq!(put(&mut fs_, "inbox/d.csv.part", b"e").await, Err(deny));
    }
}
