//! The work the engine thread takes, one job at a time.

use super::commands::Streamed;
use crate::api::{Caller, Output, Request, Upload};
use crate::store::{FileEntry, RemoteOrigin};
use std::path::PathBuf;
use tokio::sync::oneshot;

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
pub enum SourceJob {
    /// Whether this origin was fetched already (registered or in the ledger).
    Known(
        RemoteOrigin,
        oneshot::Sender<crate::api::Result<super::filing::Sighting>>,
    ),
    /// Register the file's origin and rename it into inbox/.
    File(SourceFile, oneshot::Sender<crate::api::Result<()>>),
    /// Rename a fetched file (hidden, fsynced) into inbox/ under a free name derived from
    /// `name`, as the file `asker` asked for (`autoprov fetch`) if one did: on the engine
    /// thread, so that no scan sees it before it is known as theirs. Answers the name it got.
    Fetched {
        tmp: PathBuf,
        name: String,
        asker: Option<String>,
        reply: oneshot::Sender<crate::api::Result<String>>,
    },
    /// Decided files whose source still has to finish them (poll: the remote move).
    Handoffs(oneshot::Sender<crate::api::Result<Vec<FileEntry>>>),
    /// The source finished file `id`.
    HandedOff(u64, oneshot::Sender<crate::api::Result<()>>),
}

/// Work for the engine thread.
pub enum Job {
    /// Look at inbox/ and process what waits there.
    Scan,
    /// The daemon's automatic backup, queued first at start-up: no write of this run
    /// reaches the store before it is on disk, while reads are answered beside it.
    Backup,
    /// A source's bookkeeping.
    Source(SourceJob),
    /// A control request (with the file of a `process`).
    Request {
        /// The command.
        request: Request,
        /// Who asked (a Unix user, or a person of the web section).
        caller: Caller,
        /// The file that came with `process`.
        upload: Option<(Upload, Vec<u8>)>,
        /// What the page the change came from showed of its thing (web section).
        seen: Option<crate::api::seen::Seen>,
        /// What the asker prints.
        output: Output,
        /// The asker takes a long answer's body written out (see [`Streamed`]); otherwise
        /// the answer comes whole.
        stream: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<Streamed>,
    },
}
