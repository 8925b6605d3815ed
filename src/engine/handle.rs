//! The handle every source and surface holds: it queues jobs for the engine thread and
//! answers read-only requests at once, beside it.

use super::answer::{answer, answer_streamed};
use super::commands::{Body, Streamed};
use super::jobs::{Job, SourceFile, SourceJob};
use super::pipeline::Pipeline;
use super::state::EngineState;
use crate::api::seen::Seen;
use crate::api::{Caller, Output, Request, Response, Upload, exit};
use crate::store::{RemoteOrigin, SledStore};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Read-only requests served at once, beside the engine.
const READS_AT_ONCE: usize = 2;

/// The places a read holds while it runs ([`EngineHandle::read_permits`]).
struct ReadPermits {
    heavy: Option<Place>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The one place of a kind of large answer (a listing; a file's report or `rules check`),
/// taken before the answer is built and held until it is written out: dropped once the
/// asker has it. Sixteen unread answers had held 7 GB while each one's place was given
/// back as soon as it was built.
pub struct Place {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl From<tokio::sync::OwnedSemaphorePermit> for Place {
    fn from(permit: tokio::sync::OwnedSemaphorePermit) -> Place {
        Place { _permit: permit }
    }
}

/// An answer, and the [`Place`] its kind of answer holds until it is written out.
pub struct Reply {
    /// The answer.
    pub response: Response,
    /// Held until `response` is written out, when it may be large.
    pub place: Option<Place>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply {
            response,
            place: None,
        }
    }
}

/// How long a read waits for its place before it is answered "busy" (exit 4), within the
/// minute the CLI waits.
pub(crate) const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(25);

/// The largest piece of a streamed answer's body.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// A piece of a streamed answer, in order: the head, the body's chunks, the end.
#[derive(Debug)]
pub enum Piece {
    /// The answer, and whether a body follows.
    Head(Response, bool),
    /// At most [`STREAM_CHUNK`] bytes of the body, framed as the socket sends them: their
    /// length (4 bytes, big-endian), then the bytes.
    Chunk(Vec<u8>),
    /// The whole body was sent.
    End,
}

/// Cuts what is written into [`Piece::Chunk`]s, each framed in the buffer it was written
/// into (no second copy of a 280 MB listing); fails once the receiver went away.
struct Chunks<'a> {
    tx: &'a mpsc::Sender<Piece>,
    pending: Vec<u8>,
}

/// The room a chunk's length takes at the start of its buffer.
const FRAME: usize = 4;

impl Chunks<'_> {
    fn new(tx: &mpsc::Sender<Piece>) -> Chunks<'_> {
        Chunks {
            tx,
            pending: Self::empty(),
        }
    }

    fn empty() -> Vec<u8> {
        let mut pending = Vec::with_capacity(FRAME + STREAM_CHUNK);
        pending.extend_from_slice(&[0; FRAME]);
        pending
    }

    fn send(&mut self) -> std::io::Result<()> {
        let mut full = std::mem::replace(&mut self.pending, Self::empty());
        let len = u32::try_from(full.len() - FRAME).expect("a chunk is at most STREAM_CHUNK");
        full[..FRAME].copy_from_slice(&len.to_be_bytes());
        self.tx
            .blocking_send(Piece::Chunk(full))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the asker went away"))
    }
}

impl std::io::Write for Chunks<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(FRAME + STREAM_CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == FRAME + STREAM_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.pending.len() == FRAME {
            true => Ok(()),
            false => self.send(),
        }
    }
}

/// A cheap handle to send work to the engine. Read-only requests do not queue behind a
/// file being processed: they read the store directly (sled serves concurrent readers).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Job>,
    pipeline: Arc<Pipeline<SledStore>>,
    state: Arc<Mutex<EngineState>>,
    reads: Arc<tokio::sync::Semaphore>,
    listings: Arc<tokio::sync::Semaphore>,
    wholes: Arc<tokio::sync::Semaphore>,
    /// The web section's own places for the same kinds of read: a socket user who never
    /// reads a listing had kept the main page and `/api/v1/admins` answering "busy".
    web_listings: Arc<tokio::sync::Semaphore>,
    web_wholes: Arc<tokio::sync::Semaphore>,
    /// The engine thread's beat, for systemd's watchdog.
    heartbeat: Arc<super::heartbeat::Heartbeat>,
}

impl EngineHandle {
    /// A handle and the engine's end of the queue.
    pub(super) fn new(
        pipeline: Arc<Pipeline<SledStore>>,
        state: Arc<Mutex<EngineState>>,
    ) -> (EngineHandle, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let reads = Arc::new(tokio::sync::Semaphore::new(READS_AT_ONCE));
        let handle = EngineHandle {
            tx,
            pipeline,
            state,
            reads,
            listings: Arc::new(tokio::sync::Semaphore::new(1)),
            wholes: Arc::new(tokio::sync::Semaphore::new(1)),
            web_listings: Arc::new(tokio::sync::Semaphore::new(1)),
            web_wholes: Arc::new(tokio::sync::Semaphore::new(1)),
            heartbeat: Arc::default(),
        };
        (handle, rx)
    }

    /// The engine thread's beat (see [`super::heartbeat`]).
    pub fn heartbeat(&self) -> Arc<super::heartbeat::Heartbeat> {
        self.heartbeat.clone()
    }

    /// Asks the engine to scan inbox/.
    pub fn scan(&self) {
        let _ = self.tx.send(Job::Scan);
    }

    /// A delivered file that could not be taken into inbox/ (watch mode: a full disk, an
    /// inbox/ autoprov cannot write; host mode: an upload that could not be written), as
    /// `status`, `/healthz` and the notification hook tell of a file that failed, until a
    /// file is processed again. `message` says what failed and what becomes of the file.
    pub fn intake_failed(&self, name: &str, message: String, next: &str) {
        self.state.lock().expect("state lock").last_error = Some(message.clone());
        let error = crate::api::error::Error::failed(message);
        self.pipeline.tell(super::observe::FileOutcome::Failed {
            name,
            error: &error,
            next: Some(next),
        });
    }

    /// Asks the engine for the automatic backup every `every` (the first one `every` from
    /// now), and every `retry` while the last one failed, until `shutdown`; the handle goes
    /// with it.
    pub async fn back_up_every(
        self,
        (every, retry): (std::time::Duration, std::time::Duration),
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(retry.min(every));
        tick.tick().await;
        let mut due = tokio::time::Instant::now() + every;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let failed = self.state.lock().expect("state lock").backup.failed.is_some();
                    if failed || tokio::time::Instant::now() >= due {
                        self.backup();
                        due = tokio::time::Instant::now() + every;
                    }
                }
            }
        }
    }

    /// Asks the engine for the automatic backup (see [`Job::Backup`]).
    pub fn backup(&self) {
        let _ = self.tx.send(Job::Backup);
    }

    /// Renames the fetched file `tmp` into inbox/, as the file `asker` asked for if one
    /// did; the name it got ([`SourceJob::Fetched`]).
    pub async fn file_fetched(
        &self,
        tmp: std::path::PathBuf,
        name: String,
        asker: Option<String>,
    ) -> crate::api::Result<String> {
        self.source_job(|reply| SourceJob::Fetched {
            tmp,
            name,
            asker,
            reply,
        })
        .await
    }

    /// The source the daemon runs (for `autoprov fetch`), once it is set up.
    pub fn source(&self) -> Option<Arc<dyn super::SourceLink>> {
        self.state.lock().expect("state lock").source.clone()
    }

    /// Whether a remote file with this origin (its SHA-256 aside) was fetched already, or is
    /// older than one that was.
    pub async fn known(&self, origin: RemoteOrigin) -> crate::api::Result<super::filing::Sighting> {
        self.source_job(|reply| SourceJob::Known(origin, reply))
            .await
    }

    /// Files a complete download into inbox/ with its origin, then scans.
    pub async fn file_in(&self, file: SourceFile) -> crate::api::Result<()> {
        self.source_job(|reply| SourceJob::File(file, reply))
            .await?;
        self.scan();
        Ok(())
    }

    /// Decided files whose source still has work to do for them, oldest first.
    pub async fn handoffs(&self) -> crate::api::Result<Vec<crate::store::FileEntry>> {
        self.source_job(SourceJob::Handoffs).await
    }

    /// Records that the source finished file `id`.
    pub async fn handed_off(&self, id: u64) -> crate::api::Result<()> {
        self.source_job(|reply| SourceJob::HandedOff(id, reply))
            .await
    }

    async fn source_job<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<crate::api::Result<T>>) -> SourceJob,
    ) -> crate::api::Result<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || crate::api::Error::Unreachable("the daemon is stopping".into());
        self.tx
            .send(Job::Source(job(reply)))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether the engine thread still takes jobs.
    pub fn running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Sends a request of the Unix user `caller` and waits for its answer.
    pub async fn ask(
        &self,
        request: Request,
        caller: String,
        upload: Option<(Upload, Vec<u8>)>,
        output: Output,
    ) -> Reply {
        self.ask_as(request, Caller::Unix(caller), upload, output)
            .await
    }

    /// What a read waits for before it runs; `None` once the daemon is stopping. A heavy
    /// read takes the one place of its kind first: two whole listings had held
    /// both read slots for seconds and their bodies in memory. Then a read slot (a few
    /// reads at a time: some parse the last roster), except a sign-in's `auth check`, one
    /// index lookup, which never waits behind them.
    async fn read_permits(&self, request: &Request, web: bool) -> Result<ReadPermits, Response> {
        let stopping = || Response::fail(exit::UNREACHABLE, "the daemon is shutting down");
        match tokio::time::timeout(READ_WAIT, self.take_read_permits(request, web)).await {
            Ok(Some(permits)) => Ok(permits),
            Ok(None) => Err(stopping()),
            // Waiting for ever had kept the asker's connection, one of the few its user may
            // have, long after the asker gave up (a reader that never reads a listing holds
            // its place for a minute at a time).
            Err(_) => Err(Response::fail(
                exit::UNREACHABLE,
                format!(
                    "busy: other reads of this kind held their place for {} s; try again",
                    READ_WAIT.as_secs()
                ),
            )),
        }
    }

    /// [`Self::read_permits`] without its deadline; `None` once the daemon is stopping.
    async fn take_read_permits(&self, request: &Request, web: bool) -> Option<ReadPermits> {
        // A listing (one at a time, its place held while it is written out), or another
        // answer built whole (a file's report, `rules check`; one at a time, in a place of
        // their own, so a listing read slowly never holds them back). The web section's in
        // places of its own.
        let (listings, wholes) = match web {
            true => (&self.web_listings, &self.web_wholes),
            false => (&self.listings, &self.wholes),
        };
        let place = match request {
            Request::AdminsList { .. } => Some(listings),
            Request::FilesShow { .. } | Request::RulesCheck {} => Some(wholes),
            _ => None,
        };
        let heavy = match place {
            Some(place) => Some(Place::from(place.clone().acquire_owned().await.ok()?)),
            None => None,
        };
        let slot = match request {
            Request::AuthCheck { .. } => None,
            _ => Some(self.reads.clone().acquire_owned().await.ok()?),
        };
        Some(ReadPermits { heavy, slot })
    }

    /// Answers a read-only request of the Unix user `caller` in [`Piece`]s sent to `tx`:
    /// `admins list` as a head and its body written out in chunks as it is made (issue 14),
    /// any other as a head alone. Returns once the work is started; the pieces follow (the
    /// channel's bound holds the body back while the asker reads slowly).
    pub async fn stream(
        &self,
        request: Request,
        caller: String,
        output: Output,
        tx: mpsc::Sender<Piece>,
    ) {
        // A listing is read under a read slot, then written out under its own: an asker who
        // reads slowly (`admins list | less`) holds back other listings, never a sign-in's
        // `auth check`.
        // An asker gone while it waited (its connection closed) gives its place up.
        let permits = tokio::select! {
            permits = self.read_permits(&request, false) => permits,
            _ = tx.closed() => return,
        };
        let ReadPermits { heavy, slot } = match permits {
            Ok(permits) => permits,
            Err(refusal) => {
                let _ = tx.send(Piece::Head(refusal, false)).await;
                return;
            }
        };
        let (pipeline, state) = (self.pipeline.clone(), self.state.clone());
        tokio::task::spawn_blocking(move || {
            let _heavy = heavy;
            let caller = Caller::Unix(caller);
            // A panic is answered with exit 5, as the engine's requests are: unanswered, the
            // asker had been told the daemon closed the connection (exit 4).
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                answer_streamed(&pipeline, request, &caller, None, None, output, &state)
            }))
            .unwrap_or_else(|_| Streamed::Whole(super::answer::panicked()));
            drop(slot);
            write_out(answered, output, &tx);
        });
    }

    /// The listings' place, taken as a listing being written out takes it.
    #[cfg(test)]
    pub async fn listing_place(&self) -> Place {
        Place::from(self.listings.clone().acquire_owned().await.unwrap())
    }

    /// Writes a long answer's body out in [`Piece`]s sent to `tx`, on a blocking thread:
    /// the head, the chunks, the end. Returns at once.
    pub fn send_body(&self, body: Body, output: Output, tx: mpsc::Sender<Piece>) {
        tokio::task::spawn_blocking(move || write_out(Streamed::Body(body), output, &tx));
    }

    /// Sends a request of `caller` (a Unix user or a person of the web section) and waits
    /// for its answer. A large answer comes with its kind's [`Place`]: keep the [`Reply`]
    /// until the answer is written out.
    pub async fn ask_as(
        &self,
        request: Request,
        caller: Caller,
        upload: Option<(Upload, Vec<u8>)>,
        output: Output,
    ) -> Reply {
        if !request.is_change() && upload.is_none() {
            let web = matches!(caller, Caller::Person(_));
            let ReadPermits { heavy, slot } = match self.read_permits(&request, web).await {
                Ok(permits) => permits,
                Err(refusal) => return refusal.into(),
            };
            let (pipeline, state) = (self.pipeline.clone(), self.state.clone());
            let read = move || answer(&pipeline, request, &caller, None, output, &state);
            let response = tokio::task::spawn_blocking(read).await.unwrap_or_else(|e| {
                Response::fail(
                    exit::FAILED,
                    format!("failed: the request hit an internal error ({e}); nothing was changed"),
                )
            });
            drop(slot);
            return Reply {
                response,
                place: heavy,
            };
        }
        self.queue(request, caller, upload, None, output, false)
            .await
            .into_response(output)
            .into()
    }

    /// Sends a change of a person of the web section from a page that showed its thing as
    /// `seen`: done only while the thing is still so (see [`crate::api::seen`]).
    pub async fn ask_seen(&self, request: Request, caller: Caller, seen: Seen) -> Reply {
        self.queue(request, caller, None, Some(seen), Output::Json, false)
            .await
            .into_response(Output::Json)
            .into()
    }

    /// Sends a change (or a `process` with its file) of the Unix user `caller` and waits for
    /// its answer: a report comes back as its body to write out (see [`Self::send_body`]).
    pub async fn ask_streamed(
        &self,
        request: Request,
        caller: String,
        upload: Option<(Upload, Vec<u8>)>,
        output: Output,
    ) -> Streamed {
        self.queue(request, Caller::Unix(caller), upload, None, output, true)
            .await
    }

    /// Queues a request for the engine thread and waits for its answer.
    async fn queue(
        &self,
        request: Request,
        caller: Caller,
        upload: Option<(Upload, Vec<u8>)>,
        seen: Option<Seen>,
        output: Output,
        stream: bool,
    ) -> Streamed {
        let (reply, answer) = oneshot::channel();
        let job = Job::Request {
            request,
            caller,
            upload,
            seen,
            output,
            stream,
            reply,
        };
        if let Err(tokio::sync::mpsc::error::SendError(job)) = self.tx.send(job) {
            if let Job::Request {
                request, caller, ..
            } = job
            {
                request.log_change(caller.name(), exit::UNREACHABLE);
            }
            return Streamed::Whole(Response::fail(
                exit::UNREACHABLE,
                "the daemon is shutting down",
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Streamed::Whole(Response::fail(
                exit::UNREACHABLE,
                "the daemon stopped before answering",
            ))
        })
    }
}

/// Sends an answer as [`Piece`]s to `tx` (blocking): a whole one as its head alone, a body
/// as a head, its chunks and the end.
fn write_out(answered: Streamed, output: Output, tx: &mpsc::Sender<Piece>) {
    let body = match answered {
        Streamed::Whole(response) => {
            let _ = tx.blocking_send(Piece::Head(response, false));
            return;
        }
        Streamed::Body(body) => body,
    };
    let head = Response {
        exit: body.exit(),
        ..Response::ok(serde_json::Value::Null, String::new())
    };
    if tx.blocking_send(Piece::Head(head, true)).is_err() {
        return;
    }
    let mut chunks = Chunks::new(tx);
    // A failure here is the asker gone: nothing more to send.
    if body.write(&mut chunks, output == Output::Json).is_ok() {
        let _ = tx.blocking_send(Piece::End);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    /// While it runs, the daemon asks for the automatic backup again every interval, and
    /// every retry interval while the last one failed.
    #[tokio::test(start_paused = true)]
    async fn the_automatic_backup_is_asked_for_every_interval() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let state: Arc<Mutex<EngineState>> = Arc::default();
        let (handle, mut jobs) = EngineHandle::new(Arc::new(p), state.clone());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (every, retry) = (Duration::from_secs(24 * 60 * 60), Duration::from_secs(3600));
        let task = tokio::spawn(handle.back_up_every((every, retry), shutdown.clone()));
        tokio::time::sleep(every / 2).await;
        assert!(jobs.try_recv().is_err(), "none before the first interval");
        for _ in 0..2 {
            tokio::time::sleep(every / 2 + retry).await;
            assert!(matches!(jobs.try_recv(), Ok(Job::Backup)));
            assert!(jobs.try_recv().is_err(), "one an interval");
            tokio::time::sleep(every / 2 - retry).await;
        }
        let failed = (
            std::time::SystemTime::now(),
            "No space left on device".to_string(),
        );
        state.lock().unwrap().backup.failed = Some(failed);
        tokio::time::sleep(retry + retry / 2).await;
        assert!(
            matches!(jobs.try_recv(), Ok(Job::Backup)),
            "tried again within the hour"
        );
        shutdown.cancel();
        task.await.unwrap();
        while let Ok(Job::Backup) = jobs.try_recv() {}
        assert!(jobs.recv().await.is_none(), "the handle went with the task");
    }

    /// A delivered file that cannot be taken into inbox/ is told of as a failed file:
    /// `status`'s last error (which `/healthz` reads) and the observer (the notification
    /// hook's `file_failed`); it had been only a log line.
    #[test]
    fn a_file_that_cannot_be_taken_in_is_told_of_as_a_failed_file() {
        use super::super::observe::FileOutcome;
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let heard = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = heard.clone();
        p.set_observer(Arc::new(move |outcome: &FileOutcome<'_>| {
            if let FileOutcome::Failed { name, error, .. } = outcome {
                sink.lock().unwrap().push(format!("{name}: {error}"));
            }
        }));
        let state: Arc<Mutex<EngineState>> = Arc::default();
        let (handle, _jobs) = EngineHandle::new(Arc::new(p), state.clone());
        handle.intake_failed(
            "r.csv",
            "taking r.csv into inbox/: No space left on device; retried".into(),
            "Nothing was changed; it stays in watch_dir and is retried",
        );
        let shown = state.lock().unwrap().last_error.clone().unwrap();
        assert!(
            shown.contains("taking r.csv into inbox/: No space left"),
            "{shown}"
        );
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert!(heard[0].starts_with("r.csv: "), "{heard:?}");
    }

    /// Both read slots and the places of heavy reads held (a listing, a report being
    /// read): a sign-in's `auth check` is answered at once, another read waits.
    #[tokio::test]
    async fn a_sign_in_never_waits_behind_reads() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let (handle, _jobs) = EngineHandle::new(Arc::new(p), Arc::default());
        let _held = (
            handle
                .reads
                .clone()
                .acquire_many_owned(READS_AT_ONCE as u32)
                .await,
            handle.listings.clone().acquire_owned().await,
            handle.wholes.clone().acquire_owned().await,
        );
        let ask = |request| {
            let caller = Caller::Unix("tester".into());
            tokio::time::timeout(
                Duration::from_secs(5),
                handle.ask_as(request, caller, None, Output::Json),
            )
        };
        let check = Request::AuthCheck {
            email: "nobody@x.io".into(),
        };
        let answer = ask(check)
            .await
            .expect("answered while every read slot is held")
            .response;
        assert_eq!(answer.json["active"], false, "{}", answer.json);
        let status = tokio::time::timeout(Duration::from_millis(300), async {
            ask(Request::Status {}).await
        });
        assert!(status.await.is_err(), "another read waits for a slot");
    }

    /// The web section's listing and whole answers have places of their own: with the
    /// socket's held (a user's `admins list` left unread), the main page's listing and a
    /// file's report are answered; they had been "busy" (503).
    #[tokio::test]
    async fn the_web_reads_in_places_of_its_own() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let (handle, _jobs) = EngineHandle::new(Arc::new(p), Arc::default());
        let _held = (
            handle.listings.clone().acquire_owned().await,
            handle.wholes.clone().acquire_owned().await,
        );
        let list = Request::AdminsList {
            status: None,
            origin: None,
            rule: None,
        };
        let person = Caller::Person("lead@x.io".into());
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            handle.ask_as(list, person, None, Output::Json),
        )
        .await
        .expect("answered with the socket's place held")
        .response;
        assert_eq!(answer.exit, exit::OK, "{}", answer.text);
    }

    /// A read whose place stays taken is answered "busy" once [`READ_WAIT`] has passed
    /// (waiting for ever had kept the askers' connections, 16 a user, long after they gave
    /// up), and a streamed one stops waiting when its answer's receiver is gone (the
    /// daemon stopping drops it).
    #[tokio::test(start_paused = true)]
    async fn a_read_waits_for_its_place_for_a_while_not_for_ever() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let (handle, _jobs) = EngineHandle::new(Arc::new(p), Arc::default());
        let _held = handle.listings.clone().acquire_owned().await;
        let list = || Request::AdminsList {
            status: None,
            origin: None,
            rule: None,
        };
        let caller = Caller::Unix("tester".into());
        let asked = handle.ask_as(list(), caller, None, Output::Json);
        let answer = tokio::time::timeout(READ_WAIT * 2, asked)
            .await
            .expect("answered within its deadline")
            .response;
        assert_eq!(answer.exit, exit::UNREACHABLE, "{}", answer.text);
        assert!(answer.text.contains("busy"), "{}", answer.text);
        let (tx, rx) = mpsc::channel(4);
        drop(rx);
        let started = tokio::time::Instant::now();
        let streamed = handle.stream(list(), "tester".into(), Output::Json, tx);
        tokio::time::timeout(READ_WAIT * 2, streamed)
            .await
            .expect("returned");
        assert!(
            started.elapsed() < READ_WAIT,
            "returned when its asker went away"
        );
    }

    /// A streamed read whose work panics is answered with exit 5, as the engine's requests
    /// are. It had dropped its asker's channel unanswered, which the client reports as a
    /// daemon that closed the connection (exit 4): `audit --since` a time past year 9999.
    #[tokio::test]
    async fn a_streamed_read_that_panics_is_answered_with_a_failure() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        // `status` locks the engine's state: a poisoned lock makes its answer panic.
        let state: Arc<Mutex<EngineState>> = Arc::default();
        let poison = state.clone();
        let _ = std::thread::spawn(move || {
            let _held = poison.lock().unwrap();
            panic!("poisoning the state's lock");
        })
        .join();
        let (handle, _jobs) = EngineHandle::new(Arc::new(p), state);
        let (tx, mut rx) = mpsc::channel(4);
        handle
            .stream(Request::Status {}, "tester".into(), Output::Json, tx)
            .await;
        match rx.recv().await {
            Some(Piece::Head(response, false)) => {
                assert_eq!(response.exit, exit::FAILED, "{}", response.text);
                assert!(
                    response.text.contains("internal error"),
                    "{}",
                    response.text
                );
            }
            other => panic!("answered {other:?}"),
        }
    }

    /// A listing's or a report's answer comes with its kind's place, which the next such
    /// answer waits for until the first is let go (written out); other reads hold none.
    #[tokio::test(start_paused = true)]
    async fn a_large_answer_keeps_its_place_until_it_is_let_go() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let (handle, _jobs) = EngineHandle::new(Arc::new(p), Arc::default());
        let ask = |request| handle.ask_as(request, Caller::Unix("t".into()), None, Output::Json);
        let list = || Request::AdminsList {
            status: None,
            origin: None,
            rule: None,
        };
        let first = ask(list()).await;
        assert_eq!(first.response.exit, exit::OK, "{}", first.response.text);
        assert!(first.place.is_some(), "a listing holds its place");
        let second = ask(list()).await.response;
        assert!(second.text.contains("busy"), "{}", second.text);
        let status = ask(Request::Status {}).await;
        assert!(status.place.is_none(), "status holds no place");
        assert_eq!(status.response.exit, exit::OK, "{}", status.response.text);
        let checked = ask(Request::RulesCheck {}).await;
        assert!(
            checked.place.is_some(),
            "`rules check` holds the wholes' place"
        );
        drop(first);
        let third = ask(list()).await;
        assert_eq!(third.response.exit, exit::OK, "{}", third.response.text);
    }

    #[test]
    fn chunks_are_framed_in_place_and_carry_the_body_whole() {
        let body: Vec<u8> = (0..STREAM_CHUNK * 2 + 1234)
            .map(|i| (i % 251) as u8)
            .collect();
        let (tx, mut rx) = mpsc::channel(16);
        let mut chunks = Chunks::new(&tx);
        // Written in uneven pieces, as a formatter writes.
        for piece in body.chunks(1000) {
            chunks.write_all(piece).unwrap();
        }
        chunks.flush().unwrap();
        chunks.flush().unwrap();
        drop(chunks);
        drop(tx);
        let mut payload = Vec::new();
        let mut frames = 0;
        while let Ok(Piece::Chunk(framed)) = rx.try_recv() {
            let len = u32::from_be_bytes(framed[..FRAME].try_into().unwrap()) as usize;
            assert_eq!(len, framed.len() - FRAME);
            assert!(len > 0 && len <= STREAM_CHUNK, "{len}");
            payload.extend_from_slice(&framed[FRAME..]);
            frames += 1;
        }
        assert_eq!(
            frames, 3,
            "two full chunks and the rest; an empty flush sends nothing"
        );
        assert_eq!(payload, body);
    }
}
