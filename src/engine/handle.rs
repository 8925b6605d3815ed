//! The handle every source and surface holds: it queues jobs for the engine thread and
//! answers read-only requests at once, beside it.

use super::worker::{EngineState, answer};
use crate::commands::{Output, Request, Response, exit};
use crate::control::Upload;
use crate::pipeline::Pipeline;
use crate::store::{RemoteOrigin, SledStore};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// A complete download a source hands to the engine: renamed into inbox/ as `name` once
/// its origin is registered, so the file never sits in inbox/ without it.
#[derive(Debug)]
pub struct SourceFile {
    /// The hidden file beside inbox/ holding the bytes (fsynced).
    pub tmp: PathBuf,
    /// The name it gets in inbox/.
    pub name: String,
    /// Where it came from; remembered so it is never fetched twice.
    pub origin: RemoteOrigin,
}

/// What a source asks of the engine (poll mode's bookkeeping lives in the ledger).
pub(super) enum SourceJob {
    /// Whether this origin was fetched already (registered or in the ledger).
    Known(RemoteOrigin, oneshot::Sender<anyhow::Result<bool>>),
    /// Register the file's origin and rename it into inbox/.
    File(SourceFile, oneshot::Sender<anyhow::Result<()>>),
    /// Decided files whose source still has to finish them (poll: the remote move).
    Handoffs(oneshot::Sender<anyhow::Result<Vec<crate::store::FileEntry>>>),
    /// The source finished file `id`.
    HandedOff(u64, oneshot::Sender<anyhow::Result<()>>),
}

/// Work for the engine thread.
pub(super) enum Job {
    /// Look at inbox/ and process what waits there.
    Scan,
    /// A source's bookkeeping.
    Source(SourceJob),
    /// A control request (with the file of a `process`).
    Request {
        /// The command.
        request: Request,
        /// The Unix user who asked.
        caller: String,
        /// The file that came with `process`.
        upload: Option<(Upload, Vec<u8>)>,
        /// What the asker prints.
        output: Output,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
}

/// Read-only requests served at once, beside the engine.
const READS_AT_ONCE: usize = 2;

/// A cheap handle to send work to the engine. Read-only requests do not queue behind a
/// file being processed: they read the store directly (sled serves concurrent readers).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Job>,
    pipeline: Arc<Pipeline<SledStore>>,
    state: Arc<Mutex<EngineState>>,
    reads: Arc<tokio::sync::Semaphore>,
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
        };
        (handle, rx)
    }

    /// Asks the engine to scan inbox/.
    pub fn scan(&self) {
        let _ = self.tx.send(Job::Scan);
    }

    /// Whether a remote file with this origin (its SHA-256 aside) was fetched already.
    pub async fn known(&self, origin: RemoteOrigin) -> anyhow::Result<bool> {
        self.source_job(|reply| SourceJob::Known(origin, reply))
            .await
    }

    /// Files a complete download into inbox/ with its origin, then scans.
    pub async fn file_in(&self, file: SourceFile) -> anyhow::Result<()> {
        self.source_job(|reply| SourceJob::File(file, reply))
            .await?;
        self.scan();
        Ok(())
    }

    /// Decided files whose source still has work to do for them, oldest first.
    pub async fn handoffs(&self) -> anyhow::Result<Vec<crate::store::FileEntry>> {
        self.source_job(SourceJob::Handoffs).await
    }

    /// Records that the source finished file `id`.
    pub async fn handed_off(&self, id: u64) -> anyhow::Result<()> {
        self.source_job(|reply| SourceJob::HandedOff(id, reply))
            .await
    }

    async fn source_job<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> SourceJob,
    ) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || anyhow::anyhow!("the daemon is stopping");
        self.tx
            .send(Job::Source(job(reply)))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Sends a request and waits for its answer.
    pub async fn ask(
        &self,
        request: Request,
        caller: String,
        upload: Option<(Upload, Vec<u8>)>,
        output: Output,
    ) -> Response {
        if !request.is_change() && upload.is_none() {
            // A few reads at a time: some (rules check) parse the last roster.
            let Ok(_slot) = self.reads.clone().acquire_owned().await else {
                return Response::fail(exit::UNREACHABLE, "the daemon is shutting down");
            };
            let (pipeline, state) = (self.pipeline.clone(), self.state.clone());
            let read = move || answer(&pipeline, request, &caller, None, output, &state);
            return tokio::task::spawn_blocking(read).await.unwrap_or_else(|e| {
                Response::fail(
                    exit::FAILED,
                    format!("failed: the request hit an internal error ({e}); nothing was changed"),
                )
            });
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Request {
            request,
            caller,
            upload,
            output,
            reply,
        };
        if self.tx.send(job).is_err() {
            return Response::fail(exit::UNREACHABLE, "the daemon is shutting down");
        }
        answer.await.unwrap_or_else(|_| {
            Response::fail(exit::UNREACHABLE, "the daemon stopped before answering")
        })
    }
}
