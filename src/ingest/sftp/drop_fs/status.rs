//! The SFTP status answers of the drop filesystem, and running blocking work off the
//! async workers.

use std::io;

use russh_sftp::protocol::{Status, StatusCode};
use russh_sftp::server::StatusReply;

pub(super) fn denied(message: &str) -> StatusReply {
    StatusCode::PermissionDenied.with_message(message)
}

pub(super) fn failure(message: &str) -> StatusReply {
    StatusCode::Failure.with_message(message)
}

pub(super) fn no_such_file() -> StatusReply {
    StatusCode::NoSuchFile.with_message("no such file")
}

/// Maps an I/O error to a status without revealing server-side paths.
pub(super) fn io_status(e: &io::Error) -> StatusReply {
    match e.kind() {
        io::ErrorKind::NotFound => no_such_file(),
        io::ErrorKind::PermissionDenied => denied("permission denied"),
        _ => failure(&format!("I/O error: {}", e.kind())),
    }
}

/// Runs blocking filesystem work off the async runtime; a panic in it becomes a Failure.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, StatusReply>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StatusReply> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(_) => Err(failure("internal error")),
    }
}

pub(super) fn ok_status(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

/// Whether `e` is the disk's trouble (full, over quota, failing), which the operator must
/// hear of, not the client's.
pub(super) fn disk_trouble(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(nix::libc::EIO)
}
