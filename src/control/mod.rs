//! The control socket (SPEC §7): a Unix socket, one JSON line per request and per answer.
//!
//! A request line may announce an upload (`process FILE` while the daemon runs): exactly
//! `upload.size` raw bytes follow the line, and the daemon files them into inbox/.

pub mod client;
pub mod server;

use crate::api::{Output, Request, Response};
use serde::{Deserialize, Serialize};

/// Largest request line accepted (the upload itself is not part of the line).
pub const MAX_LINE: usize = 64 * 1024;

pub use crate::api::Upload;

/// What the client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The command.
    pub request: Request,
    /// For `process`: the file that follows.
    pub upload: Option<Upload>,
    /// What the client prints (an older client sends nothing and gets both).
    #[serde(default)]
    pub output: Output,
}

/// What the daemon answers.
pub type Answer = Response;
