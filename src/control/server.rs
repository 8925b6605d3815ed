//! The daemon side of the control socket: peer credentials, authorization, upload intake.

use super::{Envelope, Head, MAX_LINE, Upload};
use crate::api::error::{Context, Error};
use crate::api::{Output, Request, Response, exit};
use crate::config::Config;
use crate::engine::EngineHandle;
use crate::engine::commands::Streamed;
use crate::engine::handle::Piece;
use std::os::unix::fs::PermissionsExt;
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
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::usage(format!(
                "another autoprov daemon answers on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
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

/// Serves control connections until `shutdown`.
pub async fn serve(
    listener: UnixListener,
    cfg: Arc<Config>,
    engine: EngineHandle,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
                    tracker.spawn(async move {
                        let _slot = slot;
                        tokio::select! {
                            // A connection never holds up a stop.
                            _ = shutdown.cancelled() => {}
                            result = handle(stream, &cfg, &engine) => if let Err(e) = result {
                                tracing::warn!("control connection: {e:#}");
                            },
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
    tracker.wait().await;
}

fn user_of(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid:{uid}"),
    }
}

async fn handle(stream: UnixStream, cfg: &Config, engine: &EngineHandle) -> anyhow::Result<()> {
    let caller = user_of(stream.peer_cred()?.uid());
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    tokio::time::timeout(
        REQUEST_DEADLINE,
        (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no request within {REQUEST_DEADLINE:?}"))??;
    let (answer, output) = match serde_json::from_slice::<Envelope>(&line) {
        Err(e) => (
            Streamed::Whole(Response::fail(exit::USAGE, format!("bad request: {e}"))),
            Output::default(),
        ),
        Ok(env) if env.stream && env.upload.is_none() && !env.request.is_change() => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            engine
                .stream(env.request, caller.clone(), env.output, tx)
                .await;
            return write_pieces(rx, &mut write)
                .instrument(tracing::info_span!("control", user = %caller))
                .await;
        }
        Ok(env) => {
            let output = env.output;
            let answered = answer(env, &caller, cfg, engine, &mut reader)
                .instrument(tracing::info_span!("control", user = %caller))
                .await;
            (answered, output)
        }
    };
    match answer {
        Streamed::Whole(response) => {
            let mut out = serde_json::to_vec(&response)?;
            out.push(b'\n');
            write.write_all(&out).await?;
            write.shutdown().await?;
            Ok(())
        }
        Streamed::Body(body) => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            engine.send_body(body, output, tx);
            write_pieces(rx, &mut write)
                .instrument(tracing::info_span!("control", user = %caller))
                .await
        }
    }
}

/// Time the asker of a streamed answer has to take each piece of it.
const WRITE_DEADLINE: Duration = Duration::from_secs(60);

/// Writes a streamed answer (see [`super`]) as its [`Piece`]s arrive: the answer line, then
/// the body in chunks, then the end mark.
async fn write_pieces(
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
    write: &mut (impl AsyncWriteExt + Unpin),
) -> anyhow::Result<()> {
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
        tokio::time::timeout(WRITE_DEADLINE, write.write_all(&bytes))
            .await
            .map_err(|_| anyhow::anyhow!("the asker took no answer within {WRITE_DEADLINE:?}"))??;
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
async fn fetch(engine: &EngineHandle, caller: &str, output: Output) -> Response {
    let Some(fetching) = engine.source().and_then(|source| source.fetch_now()) else {
        return Response::fail(
            exit::USAGE,
            "error: not in hris mode: `autoprov fetch` needs source.mode = \"hris\" in the daemon's config",
        );
    };
    match fetching.await {
        Ok(name) => {
            engine
                .ask(Request::Process { name }, caller.to_string(), None, output)
                .await
        }
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
    reader: &mut R,
) -> Streamed {
    let (request, output) = (env.request, env.output);
    // Refuse before reading an upload: nobody streams a roster in without the right.
    if request.is_change() && !cfg.is_org_admin(caller) {
        return Streamed::Whole(crate::api::refusal(caller));
    }
    let upload = match received(env.upload, &request, cfg, reader).await {
        Ok(upload) => upload,
        Err(refusal) => return Streamed::Whole(refusal),
    };
    if let Request::Fetch = request {
        return Streamed::Whole(fetch(engine, caller, output).await);
    }
    let caller = caller.to_string();
    match env.stream {
        true => engine.ask_streamed(request, caller, upload, output).await,
        false => Streamed::Whole(engine.ask(request, caller, upload, output).await),
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
            if upload.size > cfg.roster.max_bytes {
                return Err(Response::fail(
                    exit::NO,
                    format!(
                        "the file is {} bytes, more than roster.max_bytes = {}",
                        upload.size, cfg.roster.max_bytes
                    ),
                ));
            }
            // Grows with what arrives rather than reserving the announced size up front.
            let mut bytes = Vec::new();
            let deadline =
                REQUEST_DEADLINE + UPLOAD_TIME_PER_MIB * (1 + (upload.size >> 20) as u32);
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
            Some((upload, bytes))
        }
        Some(_) => return Err(Response::fail(exit::USAGE, "only process carries a file")),
        None => None,
    })
}
