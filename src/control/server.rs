//! The daemon side of the control socket: peer credentials, authorization, upload intake.

use super::{Envelope, Head, MAX_LINE, Upload};
use crate::api::error::{Context, Error};
use crate::api::{Output, Request, Response, exit};
use crate::config::Config;
use crate::engine::EngineHandle;
use crate::engine::commands::Streamed;
use crate::engine::handle::{Piece, Place};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Binds the socket (replacing a stale one) with mode 0660.
pub fn bind(path: &Path) -> crate::api::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Only a socket is ever removed: a connection to a regular file is refused as to a
        // stale socket, and a `control_socket` set by mistake to another file had deleted it.
        if !meta.file_type().is_socket() {
            return Err(Error::usage(format!(
                "{} exists and is not a socket; control_socket must name a path of its own",
                path.display()
            )));
        }
        // Stale only when nothing listens (refused): a socket that cannot be reached for
        // another reason (permissions, a daemon too busy to take the connection) may be a
        // live daemon's, and removing it would leave that daemon unreachable.
        match std::os::unix::net::UnixStream::connect(path) {
            // Exit 4, as a second daemon on the same store meets: not a usage error.
            Ok(_) => {
                return Err(Error::Unreachable(format!(
                    "error: another autoprov daemon answers on {}; this one does not start",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing stale socket {}", path.display()))?;
            }
            Err(e) => {
                return Err(Error::usage(format!(
                    "{} exists and cannot be reached ({e}); is another daemon running? \
                     remove it if not",
                    path.display()
                )));
            }
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request line (the upload that may follow has its own).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Time an upload may take per MiB, on top of the request deadline.
const UPLOAD_TIME_PER_MIB: Duration = Duration::from_secs(2);
/// Connections one user (uid) may hold at once: a user who opens connections and never
/// reads their answers takes at most this many of the [`MAX_CONNECTIONS`], never all of
/// them (the sign-in hook's `auth check` among them).
const PER_USER: usize = 16;

/// How many connections each uid holds.
#[derive(Default)]
struct PerUser(std::sync::Mutex<std::collections::HashMap<u32, usize>>);

/// One of a uid's connections, given back when dropped.
struct UserSlot {
    of: Arc<PerUser>,
    uid: u32,
}

impl PerUser {
    /// A slot for a connection of `uid`, or `None` when it holds [`PER_USER`] already.
    fn take(self: &Arc<Self>, uid: u32) -> Option<UserSlot> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(uid).or_default();
        if *n >= PER_USER {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            of: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut held = self.of.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

/// Answers the connections waiting on `listener` that the daemon did not start (`why`):
/// nothing was done (exit 4). Those still coming in the next 50 ms too.
pub async fn refuse_waiting(listener: &UnixListener, why: &str) {
    let refusal = format!("the daemon did not start ({why}); nothing was done");
    refuse_until(listener, &refusal, std::future::ready(())).await;
}

/// Answers every connection to `listener` with `refusal` (exit 4: nothing was done) until
/// `done`, then those still coming in the next 50 ms. Left in the listener's backlog, they
/// had been reset when it closed, which the CLI reads as "not known" (exit 5).
async fn refuse_until(listener: &UnixListener, refusal: &str, done: impl Future<Output = ()>) {
    let mut line =
        serde_json::to_vec(&Response::fail(exit::UNREACHABLE, refusal)).expect("answers serialize");
    line.push(b'\n');
    let answer = |mut stream: UnixStream| {
        let line = line.clone();
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
        }
    };
    tokio::pin!(done);
    loop {
        tokio::select! {
            () = &mut done => break,
            accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                answer(stream).await;
            },
        }
    }
    while let Ok(Ok((stream, _))) =
        tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
    {
        answer(stream).await;
    }
}

/// Serves control connections until `shutdown`.
pub async fn serve(
    listener: UnixListener,
    cfg: Arc<Config>,
    engine: EngineHandle,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_user = Arc::new(PerUser::default());
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (cfg, engine, shutdown) = (cfg.clone(), engine.clone(), shutdown.clone());
                    let per_user = per_user.clone();
                    tracker.spawn(async move {
                        let _slot = slot;
                        let Some(user_slot) = user_slot(&stream, &per_user) else {
                            busy(stream).await;
                            return;
                        };
                        let _user_slot = user_slot;
                        if let Err(e) = handle(stream, &cfg, &engine, &shutdown).await {
                            tracing::warn!("control connection: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: do not spin.
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    tracker.close();
    let refusal = "the daemon is stopping; nothing was done: run the command again once it is up";
    refuse_until(&listener, refusal, tracker.wait()).await;
}

/// The slot of the connecting uid; `None` when it holds [`PER_USER`] connections already,
/// or its credentials cannot be read (then the connection is not served).
fn user_slot(stream: &UnixStream, per_user: &Arc<PerUser>) -> Option<UserSlot> {
    per_user.take(stream.peer_cred().ok()?.uid())
}

/// Tells a connection past its user's [`PER_USER`] why it is not served, and closes it.
async fn busy(stream: UnixStream) {
    let response = Response::fail(
        exit::UNREACHABLE,
        format!(
            "the daemon serves at most {PER_USER} control connections of one user at once; \
             try again once yours have ended"
        ),
    );
    let Ok(mut line) = serde_json::to_vec(&response) else {
        return;
    };
    line.push(b'\n');
    let (_, mut write) = stream.into_split();
    let _ = write_within(&mut write, &line, Duration::from_secs(1)).await;
}

fn user_of(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid:{uid}"),
    }
}

/// Serves one connection. A stop ends it at once while its request is read and when it asks
/// to read; a change whose upload is still arriving is answered "stopping, nothing was
/// done"; one handed to the engine before the stop is answered first: the engine finishes
/// the one it runs and answers those still queued "stopping, nothing was done"
/// (`engine::worker`). A change dropped unanswered had been told "unreachable" (exit 4) and
/// carried out all the same. An answer is written for at most [`STOP_GRACE`] after the
/// stop: a stop waits for no slow reader past that.
async fn handle(
    stream: UnixStream,
    cfg: &Config,
    engine: &EngineHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let caller = user_of(stream.peer_cred()?.uid());
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut limited = (&mut reader).take(MAX_LINE as u64);
    let read_line = tokio::time::timeout(REQUEST_DEADLINE, limited.read_until(b'\n', &mut line));
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        read = read_line => {
            read.map_err(|_| anyhow::anyhow!("no request within {REQUEST_DEADLINE:?}"))??;
        }
    }
    let envelope = match line.len() >= MAX_LINE && !line.ends_with(b"\n") {
        true => Err(format!(
            "the request is longer than {} KiB; nothing was done",
            MAX_LINE >> 10
        )),
        false => serde_json::from_slice::<Envelope>(&line).map_err(|e| format!("bad request: {e}")),
    };
    let changes = envelope
        .as_ref()
        .is_ok_and(|env| env.request.is_change() || env.upload.is_some());
    let served = answer_connection(envelope, caller, cfg, engine, shutdown, reader, write);
    match changes {
        true => served.await,
        false => tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            served = served => served,
        },
    }
}

/// Answers the request of a connection (`envelope`, or why its line is none).
async fn answer_connection(
    envelope: Result<Envelope, String>,
    caller: String,
    cfg: &Config,
    engine: &EngineHandle,
    shutdown: &CancellationToken,
    mut reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) -> anyhow::Result<()> {
    // A large answer's place is held until the answer is written, or its write given up
    // (`engine::handle::Place`).
    let (answer, output, _place) = match envelope {
        Err(e) => (
            Streamed::Whole(Response::fail(exit::USAGE, e)),
            Output::default(),
            None,
        ),
        Ok(env) if env.stream && env.upload.is_none() && !env.request.is_change() => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            // A read waits a bounded time for its place (`EngineHandle::stream`): a hang-up
            // cannot be told from an asker that closed its writing side after its request
            // (`socat` does), so the wait is not cut short when the asker's side ends.
            engine
                .stream(env.request, caller.clone(), env.output, tx)
                .await;
            return write_pieces(rx, &mut write)
                .instrument(tracing::info_span!("control", user = %caller))
                .await;
        }
        Ok(env) => {
            let output = env.output;
            let (answered, place) = answer(env, &caller, cfg, engine, shutdown, &mut reader)
                .instrument(tracing::info_span!("control", user = %caller))
                .await;
            (answered, output, place)
        }
    };
    let written = write_answer(answer, output, &caller, engine, &mut write);
    tokio::select! {
        written = written => written,
        _ = after_stop_grace(shutdown) => {
            tracing::warn!(user = %caller, "an answer was cut: its asker did not take it within {} s of the stop", STOP_GRACE.as_secs());
            Ok(())
        }
    }
}

/// How long an answer may still be written once the daemon stops (systemd's stop timeout is
/// 90 s; an answer's own limits are longer: 60 s and 2 s per MiB).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Ends [`STOP_GRACE`] after the stop.
async fn after_stop_grace(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(STOP_GRACE).await;
}

/// Writes `answer` to the asker.
async fn write_answer(
    answer: Streamed,
    output: Output,
    caller: &str,
    engine: &EngineHandle,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> anyhow::Result<()> {
    match answer {
        Streamed::Whole(response) => {
            let mut out = serde_json::to_vec(&response)?;
            drop(response);
            out.push(b'\n');
            write_within(write, &out, answer_time(0, out.len())).await?;
            write.shutdown().await?;
            Ok(())
        }
        Streamed::Body(body) => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            engine.send_body(body, output, tx);
            write_pieces(rx, write)
                .instrument(tracing::info_span!("control", user = %caller))
                .await
        }
    }
}

/// Time the asker of an answer has to take each piece of it, and the whole answer but for
/// [`UPLOAD_TIME_PER_MIB`] a MiB.
#[cfg(not(test))]
const WRITE_DEADLINE: Duration = Duration::from_secs(60);
#[cfg(test)]
const WRITE_DEADLINE: Duration = Duration::from_secs(1);

/// Time left to write `more` bytes of an answer of which `written` were written: an answer
/// may take [`WRITE_DEADLINE`] and [`UPLOAD_TIME_PER_MIB`] a MiB in all, so that an asker
/// who takes a piece just before each deadline cannot hold its connection (and, for
/// `admins list`, the one listing slot) for ever.
fn answer_time(written: usize, more: usize) -> Duration {
    let mib = (written + more) >> 20;
    WRITE_DEADLINE + UPLOAD_TIME_PER_MIB * (1 + u32::try_from(mib).unwrap_or(u32::MAX / 4))
}

/// Writes `bytes` within `time`; an error once it has passed (the asker does not read).
async fn write_within(
    write: &mut (impl AsyncWriteExt + Unpin),
    bytes: &[u8],
    time: Duration,
) -> anyhow::Result<()> {
    tokio::time::timeout(time, write.write_all(bytes))
        .await
        .map_err(|_| anyhow::anyhow!("the asker took no answer within {time:?}"))?
        .map_err(Into::into)
}

/// Writes a streamed answer (see [`super`]) as its [`Piece`]s arrive: the answer line, then
/// the body in chunks, then the end mark.
async fn write_pieces(
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
    write: &mut (impl AsyncWriteExt + Unpin),
) -> anyhow::Result<()> {
    let (started, mut written) = (tokio::time::Instant::now(), 0);
    while let Some(piece) = rx.recv().await {
        let last = matches!(piece, Piece::End | Piece::Head(_, false));
        let bytes = match piece {
            Piece::Head(response, body) => {
                let mut line = serde_json::to_vec(&Head { response, body })?;
                line.push(b'\n');
                line
            }
            Piece::Chunk(framed) => framed,
            Piece::End => 0u32.to_be_bytes().to_vec(),
        };
        let left = answer_time(written, bytes.len()).saturating_sub(started.elapsed());
        write_within(write, &bytes, left.min(WRITE_DEADLINE)).await?;
        written += bytes.len();
        if last {
            write.shutdown().await?;
            return Ok(());
        }
    }
    // The engine stopped before the end (it failed): the asker sees the answer cut short.
    anyhow::bail!("the streamed answer stopped before its end")
}

/// `autoprov fetch`: the source fetches and files the roster into inbox/, then the engine
/// processes inbox/ up to that file and answers with its report.
async fn fetch(
    engine: &EngineHandle,
    caller: &str,
    output: Output,
    shutdown: &CancellationToken,
) -> Response {
    let Some(fetching) = engine.source().and_then(|source| source.fetch_now(caller)) else {
        return Response::fail(
            exit::USAGE,
            "error: not in hris mode: `autoprov fetch` needs source.mode = \"hris\" in the daemon's config",
        );
    };
    match fetching.await {
        Ok(name) => {
            let response = engine
                .ask(
                    Request::Process { name: name.clone() },
                    caller.to_string(),
                    None,
                    output,
                )
                .await
                .response;
            // Stopping before this answer: the roster is in inbox/ all the same, processed
            // exactly once (by the scan its filing asked for, or at the next start).
            match response.exit == exit::UNREACHABLE && shutdown.is_cancelled() {
                true => Response::fail(
                    exit::UNREACHABLE,
                    format!(
                        "the roster was fetched and filed into inbox/ as {name}; the daemon is \
                         stopping and could not say how it was processed: `autoprov files list` \
                         says so once it is up (do not fetch again)"
                    ),
                ),
                // Waiting behind a held file (a refusal, not a report): the roster stays in
                // inbox/ and is processed once that file is decided. The refusal alone,
                // worded for `process` (whose copy is taken back out), had read as nothing
                // done, and the roster was applied after the decision unannounced.
                false
                    if response.exit == exit::REFUSED && response.json.get("status").is_none() =>
                {
                    let waits = format!(
                        "the roster was fetched as {name} and waits in inbox/: it is processed \
                         once that file is decided (do not fetch again)"
                    );
                    let mut json = response.json;
                    json["waiting"] = serde_json::json!(name);
                    Response {
                        exit: response.exit,
                        text: format!("{}\n{waits}\n", response.text.trim_end()),
                        json,
                    }
                }
                false => response,
            }
        }
        // Cut by the stop: a fetch that had just filed its roster may have been cut after
        // its rename, so this is not sure of "nothing".
        Err(message) if shutdown.is_cancelled() => Response::fail(
            exit::UNREACHABLE,
            format!(
                "{message}; a roster it had already filed is processed once the daemon is \
                 up (`autoprov files list` then shows any hris-* file)"
            ),
        ),
        Err(message) => Response::fail(
            exit::FAILED,
            format!("failed: {message}; nothing was written to inbox/ and nothing was changed"),
        ),
    }
}

async fn answer<R: tokio::io::AsyncRead + Unpin>(
    env: Envelope,
    caller: &str,
    cfg: &Config,
    engine: &EngineHandle,
    shutdown: &CancellationToken,
    reader: &mut R,
) -> (Streamed, Option<Place>) {
    let (request, output) = match (env.request, &env.upload) {
        // The CLI names an upload in the upload, not in the request: named for the log.
        (Request::Process { name }, Some(upload)) if name.is_empty() => (
            Request::Process {
                name: upload.name.clone(),
            },
            env.output,
        ),
        (request, _) => (request, env.output),
    };
    // Refuse before reading an upload: nobody streams a roster in without the right.
    if request.is_change() && !cfg.is_org_admin(caller) {
        let refused = crate::api::refusal(caller);
        request.log_change(caller, refused.exit);
        return (Streamed::Whole(refused), None);
    }
    // An upload still arriving when the stop comes is not waited for (at its own limits,
    // 10 s and 2 s per MiB, a stalled one had held the stop past systemd's timeout).
    let received = tokio::select! {
        received = received(env.upload, &request, cfg, reader) => received,
        _ = shutdown.cancelled() => Err(Response::fail(
            exit::UNREACHABLE,
            "the daemon is stopping; nothing was done: run the command again once it is up",
        )),
    };
    let upload = match received {
        Ok(upload) => upload,
        Err(refusal) => {
            // Too large, too slow, changed while sent, or cut by the stop: asked all the same.
            request.log_change(caller, refusal.exit);
            return (Streamed::Whole(refusal), None);
        }
    };
    if let Request::Fetch {} = request {
        let fetched = fetch(engine, caller, output, shutdown).await;
        request.log_change(caller, fetched.exit);
        return (Streamed::Whole(fetched), None);
    }
    let caller = caller.to_string();
    match env.stream {
        true => (
            engine.ask_streamed(request, caller, upload, output).await,
            None,
        ),
        false => {
            let reply = engine.ask(request, caller, upload, output).await;
            (Streamed::Whole(reply.response), reply.place)
        }
    }
}

/// The file that follows the request line of a `process`, read whole; or the refusal.
async fn received<R: tokio::io::AsyncRead + Unpin>(
    upload: Option<Upload>,
    request: &Request,
    cfg: &Config,
    reader: &mut R,
) -> Result<Option<(Upload, Vec<u8>)>, Response> {
    Ok(match upload {
        Some(upload) if matches!(request, Request::Process { .. }) => {
            let deadline =
                REQUEST_DEADLINE + UPLOAD_TIME_PER_MIB * (1 + (upload.size >> 20) as u32);
            if upload.size > cfg.roster.max_bytes {
                // Filed and rejected with its report, as the same file is over SFTP or
                // without the daemon (it had been refused with one line: no report, no
                // ledger entry); written to disk, not kept in memory. Beyond what an SFTP
                // upload may be, refused as SFTP refuses it.
                let most = cfg.source.max_upload_bytes;
                if upload.size > most {
                    return Err(Response::fail(
                        exit::NO,
                        format!(
                            "the file is {} bytes, more than roster.max_bytes = {} and than \
                             source.max_upload_bytes = {most} (what any upload may be); nothing \
                             was filed",
                            upload.size, cfg.roster.max_bytes
                        ),
                    ));
                }
                let spooled = spool(cfg, reader, upload.size, deadline).await?;
                if let Err(refusal) = confirmation(&upload, reader).await {
                    let _ = std::fs::remove_file(&spooled);
                    return Err(refusal);
                }
                let upload = Upload {
                    spooled: Some(spooled),
                    ..upload
                };
                return Ok(Some((upload, Vec::new())));
            }
            // Grows with what arrives rather than reserving the announced size up front.
            let mut bytes = Vec::new();
            match tokio::time::timeout(deadline, reader.take(upload.size).read_to_end(&mut bytes))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(Response::fail(
                        exit::USAGE,
                        format!("reading the upload: {e}"),
                    ));
                }
                Err(_) => {
                    return Err(Response::fail(
                        exit::USAGE,
                        "the upload was too slow; nothing was filed",
                    ));
                }
            }
            if bytes.len() as u64 != upload.size {
                return Err(Response::fail(
                    exit::USAGE,
                    "the upload ended early; nothing was filed",
                ));
            }
            confirmation(&upload, reader).await?;
            Some((upload, bytes))
        }
        Some(_) => return Err(Response::fail(exit::USAGE, "only process carries a file")),
        None => None,
    })
}

/// The line that follows a confirmed upload's bytes ([`Upload::confirmed`]): a file that
/// changed while it was sent (still being written) is refused, as without the daemon ("grew
/// while it was read"); it had been applied cut short.
async fn confirmation<R: tokio::io::AsyncRead + Unpin>(
    upload: &Upload,
    reader: &mut R,
) -> Result<(), Response> {
    if !upload.confirmed {
        return Ok(());
    }
    let mut line = Vec::new();
    let read = tokio::time::timeout(REQUEST_DEADLINE, async {
        let mut byte = [0u8; 1];
        while line.len() < 16 {
            match reader.read(&mut byte).await {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ => break,
            }
        }
    })
    .await;
    match (read, line.as_slice()) {
        (Ok(()), b"unchanged") => Ok(()),
        (Ok(()), b"changed") => Err(Response::fail(
            exit::USAGE,
            format!(
                "{} changed while it was sent (still being written?); nothing was filed: send \
                 it again once it is complete",
                upload.name
            ),
        )),
        _ => Err(Response::fail(
            exit::USAGE,
            "the upload ended without saying whether the file was complete; nothing was filed",
        )),
    }
}

/// Writes the `size` bytes of an upload to a new hidden file in inbox/ (removed at the next
/// start if left), synced: its path, or the refusal (nothing left behind).
async fn spool<R: tokio::io::AsyncRead + Unpin>(
    cfg: &Config,
    reader: &mut R,
    size: u64,
    deadline: Duration,
) -> Result<std::path::PathBuf, Response> {
    static SPOOLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SPOOLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let inbox = crate::layout::Paths::new(&cfg.data_dir).folder("inbox");
    let path = inbox.join(format!(".receive-spool-{}-{n}.part", std::process::id()));
    let failed = |what: String| {
        let _ = std::fs::remove_file(&path);
        Response::fail(exit::USAGE, format!("{what}; nothing was filed"))
    };
    let write = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let copied = tokio::io::copy(&mut reader.take(size), &mut file).await?;
        file.sync_all().await?;
        Ok::<u64, std::io::Error>(copied)
    };
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(copied)) if copied == size => Ok(path),
        Ok(Ok(_)) => Err(failed("the upload ended early".into())),
        Ok(Err(e)) => Err(failed(format!(
            "writing the upload to {}: {e}",
            path.display()
        ))),
        Err(_) => Err(failed("the upload was too slow".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that came to the socket of a daemon that then failed to start hears that
    /// nothing was done (exit 4); closed unanswered, a change had been "not known".
    #[tokio::test]
    async fn commands_waiting_for_a_daemon_that_did_not_start_hear_nothing_was_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let client = std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let _ = stream.write_all(b"{\"request\":{\"command\":\"rules_list\"}}\n");
            let mut line = String::new();
            std::io::BufReader::new(stream)
                .read_line(&mut line)
                .unwrap();
            line
        });
        // The client connected and sent its request.
        tokio::time::sleep(Duration::from_millis(100)).await;
        refuse_waiting(&listener, "the store is in use by another process").await;
        let line = client.join().unwrap();
        let head: Head = serde_json::from_str(&line).unwrap();
        assert_eq!(head.response.exit, exit::UNREACHABLE, "{line}");
        assert!(head.response.text.contains("did not start"), "{line}");
        assert!(head.response.text.contains("nothing was done"), "{line}");
    }

    #[test]
    fn a_user_holds_at_most_its_share_of_connections() {
        let per_user = Arc::new(PerUser::default());
        let held: Vec<UserSlot> = (0..PER_USER)
            .map(|_| per_user.take(1000).unwrap())
            .collect();
        assert!(per_user.take(1000).is_none(), "past the share");
        assert!(per_user.take(0).is_some(), "another user is served");
        drop(held.into_iter().next());
        assert!(
            per_user.take(1000).is_some(),
            "a slot given back is taken again"
        );
    }

    /// A socket nobody listens on is replaced; a live one, and anything that is not a
    /// socket, are left as they are and refused.
    #[tokio::test]
    async fn bind_replaces_only_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/autoprov.sock");
        let first = bind(&path).unwrap();
        let err = bind(&path).unwrap_err();
        assert!(err.to_string().contains("another autoprov daemon"), "{err}");
        drop(first);
        // The file stays behind once its listener is gone: stale, so replaced.
        assert!(std::fs::symlink_metadata(&path).is_ok());
        let again = bind(&path).expect("a stale socket is replaced");
        drop(again);
        for kept in ["a regular file", "a symlink"] {
            let other = dir.path().join(kept.replace(' ', "-"));
            std::fs::write(&other, "keep me").unwrap();
            let at = dir.path().join(format!("{}.sock", kept.replace(' ', "-")));
            match kept {
                "a symlink" => std::os::unix::fs::symlink(&other, &at).unwrap(),
                _ => std::fs::rename(&other, &at).unwrap(),
            }
            let err = bind(&at).unwrap_err();
            assert!(err.to_string().contains("not a socket"), "{kept}: {err}");
            assert!(std::fs::symlink_metadata(&at).is_ok(), "{kept} left alone");
        }
        let target = dir.path().join("a-symlink");
        assert_eq!(std::fs::read_to_string(target).unwrap(), "keep me");
    }

    #[test]
    fn an_answer_may_take_a_minute_and_two_seconds_a_mib() {
        assert_eq!(answer_time(0, 10), WRITE_DEADLINE + UPLOAD_TIME_PER_MIB);
        assert_eq!(
            answer_time(3 << 20, 1 << 20),
            WRITE_DEADLINE + UPLOAD_TIME_PER_MIB * 5
        );
    }

    /// An engine over a new store in a temp dir (root an org admin), and its stop.
    fn engine_in_a_temp_dir() -> (tempfile::TempDir, Config, EngineHandle, CancellationToken) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.toml");
        let toml = format!(
            "data_dir = {:?}\n[sso]\nenabled = true\n[control]\norg_admins = [\"root\"]\n",
            dir.path().join("data")
        );
        std::fs::write(&config, toml).unwrap();
        let cfg = Config::load(Some(&config)).unwrap();
        let store = crate::layout::Paths::new(&cfg.data_dir).store;
        std::fs::create_dir_all(&store).unwrap();
        let store = crate::store::SledStore::open(&store).unwrap();
        let p = crate::engine::pipeline::Pipeline::new(cfg.clone(), store).unwrap();
        let shutdown = CancellationToken::new();
        let (engine, _thread) =
            crate::engine::start(Arc::new(p), Arc::default(), shutdown.clone()).unwrap();
        (dir, cfg, engine, shutdown)
    }

    /// A command that comes while the server stops hears that nothing was done (exit 4);
    /// left in the listener's backlog, it had been reset when the listener closed, which the
    /// CLI reads as "not known" (exit 5).
    #[tokio::test]
    async fn a_command_that_comes_during_the_stop_hears_nothing_was_done() {
        let (dir, cfg, engine, shutdown) = engine_in_a_temp_dir();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let served = tokio::spawn(serve(listener, Arc::new(cfg), engine, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Connected as the stop begins: in the backlog when the server stops accepting.
        let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        shutdown.cancel();
        let client = std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut stream = stream;
            let _ = stream.write_all(b"{\"request\":{\"command\":\"rules_list\"}}\n");
            let mut line = String::new();
            let _ = std::io::BufReader::new(stream).read_line(&mut line);
            line
        });
        let line = tokio::task::spawn_blocking(move || client.join().unwrap())
            .await
            .unwrap();
        let head: Head = serde_json::from_str(&line).expect(&line);
        assert_eq!(head.response.exit, exit::UNREACHABLE, "{line}");
        assert!(head.response.text.contains("nothing was done"), "{line}");
        tokio::time::timeout(Duration::from_secs(30), served)
            .await
            .expect("the server ends")
            .unwrap();
    }

    /// A `process` whose upload is still arriving when the daemon stops is answered at once
    /// "stopping, nothing was done" (exit 4): at its own limit (10 s and 2 s a MiB of the
    /// size it announced) a stalled upload had held the stop for minutes.
    #[tokio::test]
    async fn an_upload_still_arriving_at_the_stop_is_answered_stopping() {
        let (_dir, cfg, engine, shutdown) = engine_in_a_temp_dir();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let envelope = Envelope {
            request: Request::Process {
                name: "big.csv".into(),
            },
            upload: Some(crate::control::client::upload_of(
                "big.csv",
                false,
                512 << 20,
            )),
            output: Output::Json,
            stream: false,
        };
        let mut line = serde_json::to_vec(&envelope).unwrap();
        line.extend_from_slice(b"\nemployee_id,email\n");
        theirs.write_all(&line).await.unwrap();
        let stop = shutdown.clone();
        let served =
            tokio::spawn(async move { handle(ours, &cfg, &engine, &stop).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stopped = std::time::Instant::now();
        shutdown.cancel();
        let mut answer = String::new();
        let read = tokio::io::AsyncReadExt::read_to_string(&mut theirs, &mut answer);
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("answered at the stop")
            .unwrap();
        assert!(
            stopped.elapsed() < Duration::from_secs(2),
            "{:?}",
            stopped.elapsed()
        );
        assert!(answer.contains("stopping; nothing was done"), "{answer}");
        assert!(answer.contains("\"exit\":4"), "{answer}");
        served.await.unwrap().unwrap();
    }

    /// A large answer asked for whole waits for the one being read to be taken, then is
    /// answered "busy" (never built beside it); once its turn comes it is answered, and
    /// its place is given back when it is written.
    #[tokio::test(start_paused = true)]
    async fn a_large_answer_waits_its_turn_then_is_busy() {
        use crate::engine::handle::READ_WAIT;
        let (_dir, cfg, engine, shutdown) = engine_in_a_temp_dir();
        let held = engine.listing_place().await;
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let request = br#"{"request":{"command":"admins_list"},"stream":false}"#;
        let asked = tokio::time::Instant::now();
        theirs.write_all(request).await.unwrap();
        theirs.write_all(b"\n").await.unwrap();
        let first = (cfg.clone(), engine.clone(), shutdown.clone());
        let served = tokio::spawn(async move { handle(ours, &first.0, &first.1, &first.2).await });
        let mut answer = String::new();
        let read = tokio::io::AsyncReadExt::read_to_string(&mut theirs, &mut answer);
        tokio::time::timeout(READ_WAIT * 2, read)
            .await
            .expect("answered")
            .unwrap();
        assert!(answer.contains("busy"), "{answer}");
        assert!(asked.elapsed() >= READ_WAIT, "answered after its wait");
        served.await.unwrap().unwrap();
        drop(held);
        // Its turn come, it is answered (and gives the place back for the next).
        for _ in 0..2 {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            theirs.write_all(request).await.unwrap();
            theirs.write_all(b"\n").await.unwrap();
            let (cfg, engine) = (cfg.clone(), engine.clone());
            let stop = shutdown.clone();
            let served = tokio::spawn(async move { handle(ours, &cfg, &engine, &stop).await });
            let mut answer = String::new();
            let read = tokio::io::AsyncReadExt::read_to_string(&mut theirs, &mut answer);
            tokio::time::timeout(READ_WAIT, read)
                .await
                .unwrap()
                .unwrap();
            assert!(answer.contains("\"exit\":0"), "{answer}");
            served.await.unwrap().unwrap();
        }
        shutdown.cancel();
    }

    /// An asker that never reads: the write of an answer larger than the socket's buffers
    /// ends at its deadline, over a real socket.
    #[tokio::test]
    async fn an_answer_nobody_reads_ends_at_its_deadline() {
        let (mut ours, _theirs) = UnixStream::pair().unwrap();
        let big = vec![b'x'; 16 << 20];
        let started = std::time::Instant::now();
        let err = write_within(&mut ours, &big, WRITE_DEADLINE)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("took no answer"), "{err}");
        assert!(started.elapsed() < WRITE_DEADLINE * 10);
    }

    /// An asker that takes each piece within the per-piece deadline but the answer at
    /// ~0.3 MiB/s: it ends once the whole answer's time has passed, not never.
    #[tokio::test]
    async fn a_streamed_answer_taken_slowly_ends_at_its_whole_deadline() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(
            async move { while tx.send(Piece::Chunk(vec![b'y'; 64 << 10])).await.is_ok() {} },
        );
        // 64 KiB every 200 ms: the socket, full, is writable again (a quarter full) within
        // ~0.6 s, each piece within its second.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if matches!(theirs.read(&mut buf).await, Ok(0) | Err(_)) {
                    return;
                }
            }
        });
        let started = std::time::Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(20), write_pieces(rx, &mut ours))
            .await
            .expect("the answer ends at its whole deadline");
        let took = started.elapsed();
        let err = ended.unwrap_err();
        assert!(err.to_string().contains("took no answer"), "{err}");
        assert!(
            took > WRITE_DEADLINE * 2,
            "not a piece's deadline: {took:?}"
        );
        drop(ours);
        reader.abort();
    }
}
