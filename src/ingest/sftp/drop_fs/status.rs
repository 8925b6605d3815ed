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

/// Whether `e` is the disk's trouble (full, over quota, failing, or read-only: ext4 remounts
/// itself so after an error, and uploads had then failed with neither a log line nor a word
/// in `status`), which the operator must hear of, not the client's.
pub(super) fn disk_trouble(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
    ) || e.raw_os_error() == Some(nix::libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full, failing or read-only disk is the operator's trouble; a name the client got
    /// wrong is not.
    #[test]
    fn the_disks_trouble_is_told_from_the_clients() {
        for errno in [
            nix::libc::ENOSPC,
            nix::libc::EDQUOT,
            nix::libc::EIO,
            nix::libc::EROFS,
        ] {
            assert!(
                disk_trouble(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [nix::libc::ENOENT, nix::libc::EEXIST, nix::libc::EACCES] {
            assert!(
                !disk_trouble(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }
}
