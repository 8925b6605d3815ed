//! The CLI side of the control socket.

use super::{Envelope, Upload};
use crate::api::Response;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How a call went.
pub enum Reach {
    /// The daemon answered.
    Answered(Response),
    /// No daemon listens (no socket, or a stale one): the caller may open the store itself.
    NoDaemon,
    /// Connected, but the daemon did not answer properly.
    Unreachable(String),
}

/// Sends one request (and the upload's bytes) and waits for the answer.
pub fn call(
    socket: &Path,
    envelope: &Envelope,
    upload: Option<&[u8]>,
    wait: Option<Duration>,
) -> Reach {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Reach::NoDaemon;
        }
        Err(e) => {
            return Reach::Unreachable(format!("cannot connect to {}: {e}", socket.display()));
        }
    };
    let _ = stream.set_read_timeout(wait);
    let mut line = serde_json::to_vec(envelope).expect("requests serialize");
    line.push(b'\n');
    let sent = stream
        .write_all(&line)
        .and_then(|_| upload.map_or(Ok(()), |bytes| stream.write_all(bytes)))
        .and_then(|_| stream.flush());
    // The daemon may answer (a refusal) without reading an upload: read its answer anyway.
    let send_error = sent.err();
    let mut answer = String::new();
    match BufReader::new(&stream).read_line(&mut answer) {
        Ok(0) if send_error.is_some() => Reach::Unreachable(format!(
            "sending to {}: {}",
            socket.display(),
            send_error.expect("checked")
        )),
        Ok(0) => Reach::Unreachable(format!(
            "the daemon at {} closed the connection without answering",
            socket.display()
        )),
        Ok(_) => match serde_json::from_str(&answer) {
            Ok(r) => Reach::Answered(r),
            Err(e) => Reach::Unreachable(format!("unreadable answer from the daemon: {e}")),
        },
        Err(e) => Reach::Unreachable(format!(
            "no answer from the daemon at {}: {e}",
            socket.display()
        )),
    }
}

/// The upload header for a local file.
pub fn upload_of(name: &str, dry_run: bool, size: u64) -> Upload {
    Upload {
        name: name.to_string(),
        dry_run,
        size,
    }
}
