//! The control socket (SPEC §7): a Unix socket, one JSON line per request and per answer.
//!
//! A request line may announce an upload (`process FILE` while the daemon runs): exactly
//! `upload.size` raw bytes follow the line, and the daemon files them into inbox/.
//!
//! A request line may ask for a streamed answer (`"stream": true`; the CLI always asks,
//! issue 14): the answer line ([`Head`]) then says whether a body follows (`"body": true`),
//! which it does for the long answers, `admins list` and the report of `process` and `sync`.
//! The body is what the CLI prints on stdout, in chunks, each a 4-byte big-endian length and
//! that many bytes, ended by a chunk of length 0; a connection that closes before it was cut
//! short. The answer line of a body carries its exit code (a report's 0, 1 or 3). Every other
//! answer, and every answer to a client that does not ask for a stream, is the one line as
//! before.

pub mod client;
pub mod server;

use crate::api::{Output, Request, Response};
use serde::{Deserialize, Serialize};

/// Largest request line accepted (the upload itself is not part of the line): room for a
/// rule of many thousand values (at 64 KiB, `rules add` of a 7,000-value `in (…)` list
/// worked without the daemon and not with it); a connection holds at most this while its
/// request arrives.
pub const MAX_LINE: usize = 1 << 20;

pub use crate::api::Upload;

/// What the client sends; a field this build does not know refuses it, as in a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The command.
    pub request: Request,
    /// For `process`: the file that follows.
    pub upload: Option<Upload>,
    /// What the client prints (an older client sends nothing and gets both).
    #[serde(default)]
    pub output: Output,
    /// The client takes a streamed answer (see the module's documentation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// The answer line of a request sent with `stream`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Head {
    /// The answer; when a body follows, exit 0 with no `json` or `text` of its own.
    #[serde(flatten)]
    pub response: Response,
    /// A chunked body follows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body: bool,
}

/// The largest chunk of a streamed body.
pub const CHUNK: usize = crate::engine::handle::STREAM_CHUNK;

/// What the daemon answers.
pub type Answer = Response;
