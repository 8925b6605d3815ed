//! Running a command from the CLI: through the daemon's control socket when it runs,
//! otherwise against the store directly.

use crate::api::error::{Context, DamagedStore, Error, Result, StoreInUse};
use crate::api::{Caller, Output, Request, Response, exit, refusal};
use crate::config::{Config, Mode};
use crate::control::Envelope;
use crate::control::client::{self, Reach};
use crate::core::parallel::join;
use crate::engine::commands::{self, Streamed};
use crate::engine::filing::Content;
use crate::engine::pipeline::Pipeline;
use crate::engine::roster_file::{FileBytes, HeldFile, UnnamedCopy};
use crate::layout::Paths;
use crate::store::{SledStore, StoreError};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The name of the calling Unix user (for authorization and the audit log).
pub fn caller() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}

/// Opens the store and the pipeline, finishing any filing interrupted by a crash (the
/// daemon's start: a daemon keeps the rights it was started with).
pub fn open(cfg: Config) -> Result<Pipeline<SledStore>> {
    crate::data_owner::refuse_root_daemon(&cfg.data_dir)?;
    let data_dir = cfg.data_dir.clone();
    let pipeline = open_with(cfg, false)?;
    // Once the store is this daemon's (its lock taken): a second daemon started on the
    // same data_dir by mistake had changed the modes of the running one's waiting files,
    // and so their order, before it failed on the lock.
    crate::folder_modes::tighten(&data_dir, &Paths::new(&data_dir));
    Ok(pipeline)
}

/// [`open`], or with `reads_all` for `process` and `sync`, which read every account's head
/// to plan: the heads are then checked as they are read, not also at open
/// ([`SledStore::open_checking_as_read`]); [`refused_if_damaged`] gives a damaged one the
/// start-up check's refusal.
fn open_with(cfg: Config, reads_all: bool) -> Result<Pipeline<SledStore>> {
    let paths = Paths::new(&cfg.data_dir);
    // A config error (exit 2, which the unit does not restart), not a failure (exit 5,
    // restarted every 5 s): "creating data_dir: File exists" had been one.
    let shown = cfg.data_dir.display().to_string();
    let not_a_folder = |what: &str| {
        Err(crate::api::error::Error::usage(format!(
            "data_dir = {shown:?} is not a folder ({what}): name the folder of the store and \
             drop/"
        )))
    };
    match fs::metadata(&cfg.data_dir) {
        Ok(m) if !m.is_dir() => return not_a_folder("a file is there"),
        // A failure (exit 5, which the unit retries): more likely a file system not
        // mounted yet than a wrong config; a link above it too ("File exists" had said).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dangling = (cfg.data_dir.ancestors())
                .find(|a| fs::symlink_metadata(a).is_ok() && fs::metadata(a).is_err());
            if let Some(link) = dangling {
                return Err(crate::api::error::Error::failed(format!(
                    "data_dir = {shown:?}: {:?} is a link to a folder that does not exist (a \
                     file system not mounted yet?)",
                    link.display().to_string()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return not_a_folder("a file is on its path");
        }
        _ => {}
    }
    fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;
    if let Some(earlier) = earlier_work(&paths) {
        return Err(DamagedStore {
            store: paths.store.clone(),
            detail: format!(
                "it is missing, while this data_dir holds earlier work ({earlier}); a new empty \
                 store would deny every admin, and the automatic backups of it would rotate \
                 the earlier ones out. To start over with an empty store on purpose, move the \
                 data_dir aside"
            ),
            advice: crate::backup::advice(&paths),
        }
        .into());
    }
    let opened = match reads_all {
        true => SledStore::open_checking_as_read(&paths.store),
        false => SledStore::open(&paths.store),
    };
    let store = opened.map_err(|e| damaged(&paths, e))?;
    let pipeline = Pipeline::new(cfg, store)?;
    // Recovery moves files before it writes: a store whose heads are checked as they are
    // read is checked whole first when recovery has work.
    if reads_all && pipeline.recovery_pending()? {
        pipeline
            .store
            .heads_checked()
            .map_err(|e| damaged(&pipeline.paths, e))?;
    }
    pipeline.recover()?;
    Ok(pipeline)
}

/// What in `paths` shows earlier work when its store is missing: backups, filed rosters, a
/// store kept aside by a restore. A store gone by mistake (a restore stopped between its
/// two renames, a folder moved by hand) had been made again empty without a word. (A
/// data_dir whose mount failed shows nothing of this: it looks new.) `None` when the store is there or nothing was done before.
fn earlier_work(paths: &Paths) -> Option<String> {
    if paths.store.exists() {
        return None;
    }
    let count = |dir: &std::path::Path| {
        fs::read_dir(dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
    };
    let mut found = Vec::new();
    let backups = count(&paths.backups);
    if backups > 0 {
        found.push(format!("{backups} file(s) in {}", paths.backups.display()));
    }
    for folder in ["processed", "rejected", "held"] {
        let n = count(&paths.drop.join(folder));
        if n > 0 {
            found.push(format!(
                "{n} file(s) in {}",
                paths.drop.join(folder).display()
            ));
        }
    }
    let store_name = paths
        .store
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    let kept = paths.store.parent().map_or(0, |data| {
        fs::read_dir(data).map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix(&*store_name).is_some_and(|rest| {
                        rest.starts_with(".replaced") || rest.starts_with(".restoring")
                    })
                })
                .count()
        })
    });
    if kept > 0 {
        found.push(format!("{kept} store(s) kept aside beside it"));
    }
    (!found.is_empty()).then(|| found.join(", "))
}

/// The error for a store that could not be opened or checked: damaged (naming the backup
/// to restore), in use by another process, or another failure.
pub fn damaged(paths: &Paths, e: StoreError) -> Error {
    match e {
        StoreError::Corrupt(detail) => DamagedStore {
            store: paths.store.clone(),
            detail,
            advice: crate::backup::advice(paths),
        }
        .into(),
        _ if SledStore::is_locked(&paths.store) => StoreInUse {
            store: paths.store.clone(),
        }
        .into(),
        e => Error::from(e).context(format!("opening the store {}", paths.store.display())),
    }
}

/// How long a read-only request may take before the daemon counts as unreachable (reads
/// are answered even while a file is processed).
const READ_WAIT: Duration = Duration::from_secs(60);
/// How long a change may take: it waits for the files queued before it (large rosters).
const CHANGE_WAIT: Duration = Duration::from_secs(30 * 60);

/// How long `fetch` may take: every attempt at its longest with the longest Retry-After
/// wait between them, four times over (Workday's OAuth asks for a token, then the report,
/// and both again when the report refuses the token), then the processing of the file.
fn fetch_wait(cfg: &Config) -> Duration {
    let fetching = cfg.source.hris.as_ref().map_or(Duration::ZERO, |h| {
        (h.timeout + Duration::from_secs(600))
            .saturating_mul(h.retries.saturating_add(1))
            .saturating_mul(4)
    });
    CHANGE_WAIT + fetching
}

/// The users a daemon for `cfg` may run as: root; the owner of the data dir and of its
/// store (the daemon makes the store; it may run as a user that can write a data dir it
/// does not own); and the socket's owner when nobody else could have put a socket there
/// (its folder is root's or that user's, writable by no one else: the service's
/// `RuntimeDirectory`). A listener of another user in a folder others may write is none
/// of these.
fn daemon_users(cfg: &Config) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let mut users = vec![0];
    for path in [cfg.data_dir.clone(), cfg.data_dir.join("store")] {
        if let Ok(m) = fs::metadata(path) {
            users.push(m.uid());
        }
    }
    let socket = &cfg.control.socket;
    let folder = socket.parent().map(fs::metadata);
    if let (Ok(sock), Some(Ok(folder))) = (fs::symlink_metadata(socket), folder) {
        let only_theirs = folder.uid() == 0 || folder.uid() == sock.uid();
        if only_theirs && folder.mode() & 0o022 == 0 {
            users.push(sock.uid());
        }
    }
    users
}

/// What became of a request run with [`execute`].
pub enum Outcome {
    /// The answer to print.
    Answer(Response),
    /// The answer was written to the writer as it was made; the exit code.
    Written(u8),
}

/// The file `process` was given, opened, with its size; the usage error (exit 2) when it
/// cannot be read. A folder opens, and was refused only when its copy into inbox/ failed
/// (exit 5, "writing inbox/…"). A pipe (`process /dev/stdin < file`, `cat f | …`) has no
/// size: it is read first into an unnamed temporary file (up to `max_bytes` and a byte, so
/// that a larger one is still refused as such), which is then sent like a file (sent as
/// it came, its announced size 0 had given the daemon an empty file).
fn open_upload(path: &Path, max_bytes: u64) -> Result<(u64, fs::File), Response> {
    // Whether it was read from a pipe, as the last of each.
    let opened = fs::metadata(path).and_then(|meta| match meta {
        meta if meta.is_dir() => Ok(None),
        meta if meta.is_file() => Ok(Some((meta.len(), fs::File::open(path)?, false))),
        _ => buffered(fs::File::open(path)?, max_bytes).map(|(n, f)| Some((n, f, true))),
    });
    match opened {
        // Only its first `max_bytes` and a byte were kept: sent, they would be taken for
        // the whole file by a daemon whose own limit is larger, and applied cut short.
        Ok(Some((size, _, true))) if size > max_bytes => Err(Response::fail(
            exit::NO,
            format!(
                "refused: {} gives more than roster.max_bytes = {max_bytes} bytes; nothing \
                 was sent and nothing was changed",
                path.display()
            ),
        )),
        Ok(Some((size, file, _))) => Ok((size, file)),
        Ok(None) => Err(Response::fail(
            exit::USAGE,
            format!("error: {} is a folder, not a file", path.display()),
        )),
        Err(e) => Err(Response::fail(
            exit::USAGE,
            format!("error: reading {}: {e}", path.display()),
        )),
    }
}

/// `source` copied into an unnamed file in the temporary folder, up to `max_bytes` and a
/// byte; that file, at its start, and its size.
fn buffered(mut source: fs::File, max_bytes: u64) -> std::io::Result<(u64, fs::File)> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::OpenOptionsExt;
    let mut copy = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_TMPFILE)
        .mode(0o600)
        .open(std::env::temp_dir())?;
    let size = std::io::copy(&mut (&mut source).take(max_bytes + 1), &mut copy)?;
    copy.rewind()?;
    Ok((size, copy))
}

/// Runs one request: via the daemon if it listens, else directly. `upload` is the local
/// file of a `process` request. A long answer (`admins list`, a report of `process` or
/// `sync`: issue 14) is written to `out` as it is made, what printing the whole answer
/// would print on stdout; every other answer, refusals and errors come back to print.
pub fn execute<W: Write>(
    cfg: Config,
    request: Request,
    upload: Option<(&Path, bool)>,
    output: Output,
    out: &mut W,
) -> Outcome {
    // The file is opened once: its size is announced and its bytes sent (or read here) from
    // the same handle.
    let max_bytes = cfg.roster.max_bytes;
    let file = match upload
        .map(|(path, _)| open_upload(path, max_bytes))
        .transpose()
    {
        Ok(file) => file,
        Err(refusal) => return Outcome::Answer(refusal),
    };
    if matches!(request, Request::Fetch {}) && cfg.source.mode != Mode::Hris {
        return Outcome::Answer(Response::fail(
            exit::USAGE,
            "error: not in hris mode: `autoprov fetch` needs source.mode = \"hris\"",
        ));
    }
    let envelope = Envelope {
        request: request.clone(),
        upload: upload
            .zip(file.as_ref())
            .map(|((path, dry_run), (size, _))| client::upload_of(&original(path), dry_run, *size)),
        output,
        stream: true,
    };
    // Changes may take as long as a large roster does; reads answer quickly or the daemon is stuck.
    let wait = Some(match &request {
        Request::Fetch {} => fetch_wait(&cfg),
        r if r.is_change() => CHANGE_WAIT,
        _ => READ_WAIT,
    });
    let sent = file.as_ref().map(|(_, f)| f);
    match client::call(
        &cfg.control.socket,
        &daemon_users(&cfg),
        &envelope,
        sent,
        wait,
        out,
    ) {
        Reach::Answered(response) => return Outcome::Answer(response),
        Reach::Written(exit) => return Outcome::Written(exit),
        Reach::Unreachable(message) => {
            return Outcome::Answer(Response::fail(exit::UNREACHABLE, message));
        }
        // Not 4, which says that nothing was done: a script had sent the roster again.
        Reach::Unknown(message) => {
            return Outcome::Answer(Response::fail(exit::FAILED, message));
        }
        Reach::NoDaemon if matches!(request, Request::Fetch {}) => {
            return Outcome::Answer(Response::fail(
                exit::UNREACHABLE,
                format!(
                    "no daemon answers on {}: `autoprov fetch` runs through the daemon (start it, e.g. systemctl start autoprov)",
                    cfg.control.socket.display()
                ),
            ));
        }
        Reach::NoDaemon => {}
    }
    if let Err(e) = crate::data_owner::act_as(&cfg.data_dir) {
        return Outcome::Answer(Response::fail(exit::FAILED, format!("failed: {e:#}")));
    }
    let user = caller();
    let answered = match (upload, file) {
        (Some((path, dry_run)), Some((size, file))) => {
            match process_here(cfg, path, (size, file), dry_run, &user) {
                Ok(answered) => answered,
                Err(refusal) => return Outcome::Answer(refusal),
            }
        }
        _ => match open_here(cfg, matches!(request, Request::Sync { .. })) {
            Ok(p) => {
                let status = matches!(request, Request::Status {});
                let caller = Caller::Unix(user);
                let answered = commands::execute_streamed(&p, request, &caller, None, output);
                match (status, refused_if_damaged(&p, answered)) {
                    // Said, not left out: a daemon killed had left a status that read as
                    // a healthy one (exit 0, no daemon line).
                    (true, Streamed::Whole(mut r)) if r.exit == exit::OK => {
                        r.text.push_str(
                            "daemon:    NOT RUNNING (nothing answers on control.socket)\n",
                        );
                        Streamed::Whole(r)
                    }
                    (_, answered) => answered,
                }
            }
            Err(refusal) => return Outcome::Answer(refusal),
        },
    };
    written_out(answered, output, out)
}

/// An answer made here: printed whole, or its body written to `out` as it is made.
fn written_out<W: Write>(answered: Streamed, output: Output, out: &mut W) -> Outcome {
    match answered {
        Streamed::Whole(response) => Outcome::Answer(response),
        Streamed::Body(body) => {
            let (written, code) = (body.write(out, output == Output::Json), body.exit());
            body.let_go_at_exit();
            match written {
                Ok(()) => Outcome::Written(code),
                // The reader stopped (`| head`): what was asked is done.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Written(code),
                Err(e) => Outcome::Answer(Response::unwritten(&e, code)),
            }
        }
    }
}

/// `process FILE` without a daemon: `file` (opened from `path`, `size` bytes long) filed
/// into inbox/ and processed, or the answer saying why it could not be.
fn process_here(
    cfg: Config,
    path: &Path,
    (size, file): (u64, fs::File),
    dry_run: bool,
    user: &str,
) -> std::result::Result<Streamed, Response> {
    // A file the roster may hold is read and hashed, and copied into inbox/ without a name,
    // while the store opens and is checked (at a million rows each took ~0.2 s, one after
    // the other), and then processed without being read back; a larger one, or a pipe, is
    // copied after.
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    let (opened, read) = if regular && size <= cfg.roster.max_bytes {
        let paths = Paths::new(&cfg.data_dir);
        // The folders are made here as opening makes them, so that a first `process` into
        // a new data_dir has an inbox/ for the copy (it was made after the open, ~0.1 s at
        // a million rows); a failure here is opening's to report.
        let _ = paths.ensure();
        let inbox = paths.folder("inbox");
        let (opened, read) = join(
            || open_here(cfg, true),
            || read_and_copy(file, path, &inbox),
        );
        (opened, read.map(Ok))
    } else {
        (open_here(cfg, true), Ok(Err(file)))
    };
    let p = opened?;
    let mut copied = None;
    let content = match read {
        Ok(Ok((bytes, copy))) => Content::Read(bytes, copy),
        Ok(Err(file)) => Content::Stream(copied.insert(file)),
        Err(e) => {
            return Err(Response::fail(
                exit::USAGE,
                format!("error: reading {}: {e}", path.display()),
            ));
        }
    };
    let answered = commands::process_upload(&p, &original(path), content, dry_run, user);
    // Processed and filed, or not: an interrupt that came meanwhile stops the command now,
    // before its report is written out (a reader that hangs cannot hold it), saying how it
    // ended, once the store holds on disk what the exit would have flushed (the filed mark:
    // without it the next start had filed the file again, and posted it).
    let outcome = match &answered {
        Streamed::Body(commands::Body::Report(report, _)) => format!(
            "the roster was processed and filed with its report, {} (`autoprov files list`)",
            report.status.as_str()
        ),
        // A refusal or a failure, whose text says whether anything was committed.
        Streamed::Whole(response) => response.text.trim_end().to_string(),
        Streamed::Body(_) => "the roster was processed".to_string(),
    };
    crate::interrupts::finished(&outcome, || {
        let _ = crate::store::Store::flush(&p.store);
    });
    Ok(refused_if_damaged(&p, answered))
}

/// The answer of a command run on a store opened with `reads_all` ([`open_with`]), once every
/// bucket it did not read has been checked too (nothing to do when its plan read them all):
/// the start-up check's refusal, naming the backup, when one is damaged (the command failed
/// on it or wrote nothing, as every write checks first).
fn refused_if_damaged(p: &Pipeline<SledStore>, answered: Streamed) -> Streamed {
    match p.store.heads_checked() {
        Ok(()) => answered,
        Err(e @ StoreError::Corrupt(_)) => Streamed::Whole(damaged(&p.paths, e).response()),
        Err(e) => Streamed::Whole(Error::from(e).context("checking the store").response()),
    }
}

/// Reads `file` (opened from `path`) whole and, at the same time, copies it into `inbox`
/// without a name; the copy is left out if it cannot be made there (the file is copied
/// again when it is filed).
fn read_and_copy(
    file: fs::File,
    path: &Path,
    inbox: &Path,
) -> std::io::Result<(FileBytes, Option<UnnamedCopy>)> {
    let held = HeldFile::of(file)?;
    let source = held.try_clone()?;
    let (read, copy) = join(
        || FileBytes::read_held(held, path),
        || UnnamedCopy::of(&source, inbox),
    );
    Ok((read?, copy.ok()))
}

/// The name a `process` FILE is received under: its file name.
fn original(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Opens the store when no daemon answers, or the answer saying why it cannot; `reads_all`:
/// for a command that reads every account first ([`open_with`]).
fn open_here(cfg: Config, reads_all: bool) -> std::result::Result<Pipeline<SledStore>, Response> {
    let socket_exists = cfg.control.socket.exists();
    let (socket, store) = (cfg.control.socket.clone(), Paths::new(&cfg.data_dir).store);
    match open_with(cfg, reads_all) {
        Ok(p) => Ok(p),
        Err(Error::InUse(busy)) if socket_exists => Err(Response::fail(
            exit::UNREACHABLE,
            format!(
                "the daemon's socket exists but nobody answers, and the store is in use: {busy}"
            ),
        )),
        // No daemon, and this user may not open the store (an org admin reaching the daemon
        // through the socket's group, while it is stopped for a restore or an upgrade): the
        // daemon is what is missing (exit 4), not a failure of the work (exit 5).
        Err(e) if e.is_failure() && denied(&store) => Err(Response::fail(
            exit::UNREACHABLE,
            format!(
                "no daemon answers on {}, and this user may not open the store {} itself \
                 ({e}): start the daemon, or run the command as root or the data dir's \
                 owner; nothing was done",
                socket.display(),
                store.display()
            ),
        )),
        Err(e) => Err(e.response()),
    }
}

/// Whether this process is denied the store's files (their permissions).
fn denied(store: &Path) -> bool {
    let db = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(store.join("db"));
    matches!(db, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
}

/// The answer to a restore that went through.
fn restored_answer(r: &crate::backup::Restored, file: &Path) -> Response {
    let shown = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let mut text = format!(
        "restored {} records from {} (a backup of {})",
        r.records,
        shown.display(),
        r.created_at
    );
    if let Some(p) = &r.replaced {
        text += &format!("; the previous store was kept as {}", p.display());
    }
    text.push('\n');
    if !r.rolled_back.is_empty() {
        text += &format!(
            "rolled back: {} changes audited after the backup (kept in `autoprov audit`, \
             marked rolled back); check the admins they concern\n",
            r.rolled_back.len()
        );
    }
    if let Some(why) = &r.audit_unread {
        text += &format!("the replaced store's audit could not be read: {why}\n");
    }
    for note in r.notes() {
        text += &note;
        text.push('\n');
    }
    Response {
        exit: exit::OK,
        json: serde_json::json!({
            "restored": r.records,
            "created_at": r.created_at,
            "replaced_store": r.replaced,
            "rolled_back": r.rolled_back,
            "audit_unread": r.audit_unread,
            "unknown_held": r.unknown.held,
            "unknown_applied": r.unknown.applied,
            "held_without_roster": r.unknown.held_gone.iter().map(|(id, ..)| id).collect::<Vec<_>>(),
            // The records were checked against its SHA-256 (a version 1 backup's time was
            // not: its notes say so).
            "checked": r.checked != crate::store::Checked::No,
        }),
        text,
    }
}

/// `restore FILE`: only with no daemon running, only for an org admin.
pub fn restore(cfg: Config, file: &Path) -> Response {
    let user = caller();
    if !cfg.is_org_admin(&user) {
        return refusal(&user);
    }
    if std::os::unix::net::UnixStream::connect(&cfg.control.socket).is_ok() {
        return Response::fail(
            exit::REFUSED,
            "refused: the daemon is running; stop it (systemctl stop autoprov) before restoring",
        );
    }
    // Opened with the caller's rights (a backup in /root/), then everything else done as
    // the data dir's owner, as every other command: as root, sled's open of the store had
    // followed a link the owner put in store/ (`conf` → /etc/nologin) and written there.
    // A regular file only: a device or a FIFO (`restore /dev/zero`) is no backup. Opened
    // without blocking: a FIFO had waited for a writer for ever before it was looked at.
    let opened = {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = fs::OpenOptions::new();
        options.read(true).custom_flags(nix::libc::O_NONBLOCK);
        options.open(file)
    };
    let opened = opened.and_then(|input| match input.metadata()?.is_file() {
        true => Ok(input),
        false => Err(std::io::Error::other("not a regular file")),
    });
    let input = match opened {
        Ok(input) => input,
        Err(e) => {
            return crate::api::error::Error::usage(format!(
                "opening backup {}: {e}",
                file.display()
            ))
            .response();
        }
    };
    if let Err(e) = crate::data_owner::act_as(&cfg.data_dir) {
        return Response::fail(exit::FAILED, format!("failed: {e:#}"));
    }
    let paths = Paths::new(&cfg.data_dir);
    // Read before the lock (sled's open takes one of its own): in use, it is refused below.
    let before = crate::backup::audit_before(&paths);
    // sled's lock tells whether any process (a daemon on another socket, too) uses the
    // store; held until the restored store is in place, so that a daemon started meanwhile
    // cannot open the store being replaced (and serve, and lose, changes from it).
    let _held = match SledStore::lock(&paths.store) {
        crate::store::Lock::Taken => {
            return Response::fail(
                exit::REFUSED,
                format!(
                    "refused: the store {} is in use by another process; stop the daemon before restoring",
                    paths.store.display()
                ),
            );
        }
        lock => lock,
    };
    match crate::backup::restore(&paths, (file, input), &user, before) {
        Ok(r) => restored_answer(&r, file),
        Err(e) => e.response(),
    }
}

/// `token add NAME`: a new read-only API token, printed once; its digest is appended to
/// `web.api_tokens_file` (exit 2 when none is configured, 3 for a name in use).
pub fn token_add(cfg: &Config, name: &str) -> Response {
    let Some(path) = &cfg.web.api_tokens_file else {
        return Response::fail(
            exit::USAGE,
            "error: web.api_tokens_file is not set: name the file that holds the API tokens' digests in [web] first",
        );
    };
    match crate::web::tokens::add(path, name) {
        // The token alone on stdout, for `TOKEN=$(autoprov token add NAME)`; what it is, on
        // stderr (a second line on stdout had gone into the Authorization header).
        Ok(token) => {
            // Not `eprintln!`, which panics on a closed stderr: the token, recorded already,
            // would never be shown.
            let _ = writeln!(
                std::io::stderr(),
                "(the API token \"{name}\", shown this once: autoprov keeps only its SHA-256 in {}; send it as `Authorization: Bearer TOKEN`)",
                path.display()
            );
            Response {
                exit: exit::OK,
                json: serde_json::json!({"name": name, "token": token, "file": path}),
                text: format!("{token}\n"),
            }
        }
        Err(e) => e.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::filing::Content;
    use crate::store::{Commit, Store, samples};

    /// A config with its data under `dir`/data, and SSO on.
    fn config_in(dir: &Path) -> Config {
        let config = dir.join("c.toml");
        let data = dir.join("data");
        fs::write(
            &config,
            format!("data_dir = {data:?}\n[sso]\nenabled = true\n"),
        )
        .unwrap();
        Config::load(Some(&config)).unwrap()
    }

    /// Who a daemon may run as: root, the data dir's and its store's owner, and the socket's
    /// owner when its folder is theirs (or root's) and nobody else may write it. A daemon
    /// user that writes a data dir it does not own had been refused by every command, the
    /// sign-in hook's included.
    /// `restore` takes a regular file only: `restore /dev/zero` had read it until the
    /// system killed the process.
    #[test]
    fn a_restore_of_a_device_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let r = restore(cfg, Path::new("/dev/zero"));
        if r.exit == exit::REFUSED && r.text.contains("may not make changes") {
            assert!(
                std::env::var_os("CI").is_none(),
                "run as root: restore needs an org admin"
            );
            return;
        }
        assert_eq!(r.exit, exit::USAGE, "{}", r.text);
        assert!(r.text.contains("not a regular file"), "{}", r.text);
        // Nor a FIFO, refused at once: it had waited for a writer for ever.
        let fifo = dir.path().join("fifo.backup");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let r = restore(config_in(dir.path()), &fifo);
        assert_eq!(r.exit, exit::USAGE, "{}", r.text);
        assert!(r.text.contains("not a regular file"), "{}", r.text);
    }

    #[test]
    fn a_daemon_is_known_by_its_store_or_by_a_socket_nobody_else_could_place() {
        use std::os::unix::fs::{PermissionsExt, chown};
        if !crate::util::test_as_root("it changes owners") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config_in(dir.path());
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        cfg.control.socket = run.join("autoprov.sock");
        fs::write(&cfg.control.socket, b"").unwrap();
        chown(&cfg.control.socket, Some(1), Some(1)).unwrap();
        let mode = |m: u32| fs::set_permissions(&run, fs::Permissions::from_mode(m)).unwrap();
        // The folder root's, writable by root alone: the socket's owner is the daemon.
        mode(0o755);
        assert!(daemon_users(&cfg).contains(&1));
        // Anyone may write the folder (/tmp): another user's socket may be there.
        mode(0o1777);
        assert!(!daemon_users(&cfg).contains(&1));
        // The store made by the daemon, in a data dir it may write but does not own.
        fs::create_dir_all(dir.path().join("data/store")).unwrap();
        chown(dir.path().join("data/store"), Some(2), Some(2)).unwrap();
        let users = daemon_users(&cfg);
        assert!(users.contains(&2) && users.contains(&0), "{users:?}");
    }

    #[test]
    fn a_bucket_found_damaged_after_the_open_is_the_start_up_checks_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = config_in(dir.path());
        {
            // A roster applied (so that `sync` has one), an account, then its bucket damaged.
            let p = open(cfg.clone()).unwrap();
            let roster = b"Employee ID,Email\nE1,e1@x.io\n";
            let name = p.receive("r.csv", Content::Stream(&mut &roster[..]), false, None);
            p.process(&name.unwrap().0).unwrap();
            let account = samples::packed([samples::account("E1")]);
            p.store
                .commit(Commit {
                    updates: account,
                    file: None,
                    last_applied: None,
                    audit: None,
                    clear_remote: None,
                    accounts_token: None,
                })
                .unwrap();
            p.store.damage_bucket_of("E1");
        }
        let audit = |p: &Pipeline<SledStore>| p.store.audit(None).unwrap().len();
        // The plan meets the damaged bucket; or, with the roster now over a limit, `sync`
        // rejects it without reading any bucket: the answer waits for the check either way.
        let mut rejecting = cfg.clone();
        rejecting.roster.max_rows = 0;
        for (cfg, rejected) in [(cfg.clone(), false), (rejecting, true)] {
            let p = open_with(cfg, true).unwrap();
            let before = audit(&p);
            let sync = Request::Sync { force: false };
            let root = Caller::Unix("root".into());
            let answered = commands::execute_streamed(&p, sync, &root, None, Output::Text);
            // A failure on the damaged bucket, or a report of the rejection made without it.
            assert_eq!(matches!(answered, Streamed::Body(_)), rejected);
            let Streamed::Whole(r) = refused_if_damaged(&p, answered) else {
                panic!("a report for a damaged store");
            };
            assert_eq!(r.exit, exit::FAILED, "{}", r.text);
            let store = data.join("store");
            let refusal = format!("refusing to run on a damaged store {}", store.display());
            assert!(r.text.contains(&refusal), "{}", r.text);
            let advice = crate::backup::advice(&p.paths);
            assert!(r.text.contains(&advice), "{}", r.text);
            assert!(r.text.ends_with("nothing was changed"), "{}", r.text);
            assert_eq!(audit(&p), before, "no sync recorded");
        }
        // The full check at open finds the same damage.
        assert!(open(cfg).is_err());
    }

    #[test]
    fn recovery_waits_for_the_check_of_a_store_checked_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let inbox = {
            // A file committed but not moved yet (a crash after the commit), and damage.
            let p = open(cfg.clone()).unwrap();
            let entry = crate::store::FileEntry {
                id: 1,
                name: "r.csv".into(),
                stored_as: "20260101T000000Z_r.csv".into(),
                size: 1,
                sha256: "x".into(),
                received_at: "t".into(),
                processed_at: "t".into(),
                status: crate::store::FileStatus::Applied,
                summary: String::new(),
                pending_move: Some((
                    "inbox/r.csv".into(),
                    "processed/20260101T000000Z_r.csv".into(),
                )),
                remote: None,
                remote_pending: false,
                was_held: false,
            };
            p.store
                .commit(Commit {
                    updates: samples::packed([samples::account("E1")]),
                    file: Some(&entry),
                    last_applied: Some(1),
                    audit: None,
                    clear_remote: None,
                    accounts_token: None,
                })
                .unwrap();
            fs::write(p.paths.folder("inbox").join("r.csv"), "x").unwrap();
            p.store.damage_bucket_of("E1");
            p.paths.folder("inbox")
        };
        let Err(e) = open_with(cfg, true) else {
            panic!("a damaged store opened for recovery");
        };
        let text = e.response().text;
        assert!(
            text.contains("refusing to run on a damaged store"),
            "{text}"
        );
        assert!(inbox.join("r.csv").exists(), "the file was not moved");
    }
}
