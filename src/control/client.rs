//! The CLI side of the control socket.

use super::{CHUNK, Envelope, Head, Upload};
use crate::api::Response;
use std::io::{BufRead, BufReader, Read, Write};
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
    /// A change was sent whole and the daemon gave no answer (it was killed, crashed, or
    /// took longer than the wait): whether it was made is not known.
    Unknown(String),
    /// The daemon streamed the answer's body, written out as it came; the exit code.
    Written(u8),
}

/// Sends one request (and the upload: `envelope.upload.size` bytes of the file, copied as
/// they are read) and waits for the answer. When the envelope
/// asks for a streamed answer (`envelope.stream`), a body that follows the answer line is
/// copied to `out` as it arrives ([`Reach::Written`]); an answer of one line (every change,
/// a refusal, a daemon that streams nothing) gives [`Reach::Answered`].
/// `daemon_users`: the users a daemon may run as (root, the data dir's owner); whatever
/// else listens on the socket is not talked to.
pub fn call(
    socket: &Path,
    daemon_users: &[u32],
    envelope: &Envelope,
    upload: Option<&std::fs::File>,
    wait: Option<Duration>,
    out: &mut dyn Write,
) -> Reach {
    let (stream, send_error) = match send(socket, daemon_users, envelope, upload, wait) {
        Ok(sent) => sent,
        Err(reach) => return reach,
    };
    let mut reader = BufReader::with_capacity(CHUNK + 4, &stream);
    let changed = envelope.request.is_change() || envelope.upload.is_some();
    let head: Head = match answer_line(&mut reader, socket, send_error, changed) {
        Ok(answer) => match serde_json::from_str(&answer) {
            Ok(head) => head,
            Err(e) => {
                return Reach::Unreachable(format!("unreadable answer from the daemon: {e}"));
            }
        },
        Err(reach) => return reach,
    };
    if !head.body {
        return Reach::Answered(head.response);
    }
    match copy_body(&mut reader, out) {
        Ok(()) => Reach::Written(head.response.exit),
        // A change's outcome came with the head; its report, cut (the daemon stopping
        // while a slow reader took it), does not undo it: "unreachable" (4) had said that
        // nothing was done.
        Err(Body::Daemon(e)) if changed => {
            let message = format!(
                "\nthe daemon at {} stopped sending the report part way ({e}): the outcome \
                 stands (exit {}); `autoprov files list` and `autoprov files show ID` have \
                 the whole report",
                socket.display(),
                head.response.exit
            );
            Reach::Answered(Response {
                exit: head.response.exit,
                json: serde_json::json!({ "error": message.trim() }),
                text: message,
            })
        }
        Err(Body::Daemon(e)) => Reach::Unreachable(format!(
            "the daemon at {} did not send the whole answer: {e}",
            socket.display()
        )),
        // The reader stopped (`| head`): what was asked is done.
        Err(Body::Out(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Reach::Written(head.response.exit)
        }
        Err(Body::Out(e)) => Reach::Answered(Response::unwritten(&e, head.response.exit)),
    }
}

/// Where copying a body failed.
enum Body {
    Daemon(std::io::Error),
    Out(std::io::Error),
}

/// Copies a chunked body (see [`super`]) to `out`.
fn copy_body(reader: &mut impl Read, out: &mut dyn Write) -> Result<(), Body> {
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len).map_err(Body::Daemon)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return out.flush().map_err(Body::Out);
        }
        if len > CHUNK {
            return Err(Body::Daemon(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a chunk of {len} bytes, more than {CHUNK}"),
            )));
        }
        reader.read_exact(&mut chunk[..len]).map_err(Body::Daemon)?;
        out.write_all(&chunk[..len]).map_err(Body::Out)?;
    }
}

/// Connects and sends the request line (and the upload); the error of a failed send is
/// kept: the daemon may answer (a refusal) without reading an upload.
fn send(
    socket: &Path,
    daemon_users: &[u32],
    envelope: &Envelope,
    upload: Option<&std::fs::File>,
    wait: Option<Duration>,
) -> Result<(UnixStream, Option<std::io::Error>), Reach> {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(Reach::NoDaemon);
        }
        Err(e) => {
            return Err(Reach::Unreachable(format!(
                "cannot connect to {}: {e}",
                socket.display()
            )));
        }
    };
    // Who listens, before anything is sent: in a folder others may write (a socket in
    // /tmp), another user had answered as the daemon (`auth check` said Super Admin) and
    // taken the requests, a roster with them.
    let peer = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
    match peer {
        Ok(cred) if daemon_users.contains(&cred.uid()) => {}
        Ok(cred) => {
            return Err(Reach::Unreachable(format!(
                "{} is served by uid {}, which is not root, the owner of the data dir or its \
                 store, nor that of a socket in a folder only it may write: not talked to \
                 (another user's listener?); nothing was sent",
                socket.display(),
                cred.uid()
            )));
        }
        Err(e) => {
            return Err(Reach::Unreachable(format!(
                "cannot tell who serves {}: {e}; nothing was sent",
                socket.display()
            )));
        }
    }
    let _ = stream.set_read_timeout(wait);
    let mut line = serde_json::to_vec(envelope).expect("requests serialize");
    line.push(b'\n');
    let size = envelope.upload.as_ref().map_or(0, |u| u.size);
    let sent = stream
        .write_all(&line)
        .and_then(|_| upload.map_or(Ok(()), |file| send_file(file, size, &mut stream)))
        .and_then(|_| stream.flush());
    Ok((stream, sent.err()))
}

/// Copies `size` bytes of `file` to the daemon as they are read (a million-row roster is
/// 116 MB, never held), then the line that says whether the file was the same after as
/// before ([`Upload::confirmed`]). A file that ends early stops the upload there: the
/// daemon sees fewer bytes than announced and files nothing.
///
/// [`Upload::confirmed`]: crate::api::Upload::confirmed
fn send_file(file: &std::fs::File, size: u64, stream: &mut UnixStream) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let before = file.metadata()?.modified().ok();
    let copied = std::io::copy(&mut file.take(size), stream)?;
    if copied < size {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ended after {copied} of its {size} bytes"),
        ));
    }
    let after = file.metadata()?;
    let grew = file.read_at(&mut [0u8; 1], size).map_or(true, |n| n != 0);
    let same = after.len() == size && after.modified().ok() == before && !grew;
    stream.write_all(if same { b"unchanged\n" } else { b"changed\n" })
}

/// Reads the answer line. `changed`: the request changes state, so a daemon that closed
/// the connection without answering (it crashed, or was killed) may have made the change.
fn answer_line(
    reader: &mut impl BufRead,
    socket: &Path,
    send_error: Option<std::io::Error>,
    changed: bool,
) -> Result<String, Reach> {
    let mut answer = String::new();
    match reader.read_line(&mut answer) {
        Ok(0) if send_error.is_some() => Err(Reach::Unreachable(format!(
            "sending to {}: {}",
            socket.display(),
            send_error.expect("checked")
        ))),
        Ok(0) if changed => Err(Reach::Unknown(format!(
            "the daemon at {} closed the connection without answering (it stopped or crashed): \
             whether the request was carried out is not known; see `autoprov files list` and \
             `autoprov audit` before sending it again (a file it took is processed once, at its \
             next start at the latest)",
            socket.display()
        ))),
        Ok(0) => Err(Reach::Unreachable(format!(
            "the daemon at {} closed the connection without answering",
            socket.display()
        ))),
        Ok(_) => Ok(answer),
        Err(e) if changed => Err(Reach::Unknown(format!(
            "no answer from the daemon at {}: {e}: whether the request was carried out is not \
             known; see `autoprov files list` and `autoprov audit` before sending it again",
            socket.display()
        ))),
        Err(e) => Err(Reach::Unreachable(format!(
            "no answer from the daemon at {}: {e}",
            socket.display()
        ))),
    }
}

/// The upload header for a local file.
pub fn upload_of(name: &str, dry_run: bool, size: u64) -> Upload {
    Upload {
        name: name.to_string(),
        dry_run,
        size,
        spooled: None,
        confirmed: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(chunks: &[&[u8]], end: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(c);
        }
        if end {
            out.extend_from_slice(&[0; 4]);
        }
        out
    }

    #[test]
    fn an_upload_sends_the_announced_size_and_a_file_that_ends_early_stops_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, b"Employee ID\nE1\n").unwrap();
        for (size, whole) in [(8u64, true), (15, true), (40, false)] {
            let file = std::fs::File::open(&path).unwrap();
            let (mut ours, mut daemon) = UnixStream::pair().unwrap();
            let sent = send_file(&file, size, &mut ours);
            assert_eq!(sent.is_ok(), whole, "{size}: {sent:?}");
            if let Err(e) = sent {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
                assert!(e.to_string().contains("after 15 of its 40 bytes"), "{e}");
            }
            drop(ours);
            let mut got = Vec::new();
            daemon.read_to_end(&mut got).unwrap();
            // Never more than announced; a short file: what it has, then the end. A whole
            // send says whether the file is what it was (the first 8 bytes of 15: it is
            // longer than announced, so not).
            let mut want = b"Employee ID\nE1\n"[..size.min(15) as usize].to_vec();
            match size {
                8 => want.extend_from_slice(b"changed\n"),
                15 => want.extend_from_slice(b"unchanged\n"),
                _ => {}
            }
            assert_eq!(got, want);
        }
    }

    /// A change whose connection closed without an answer (the daemon killed mid-request)
    /// says that its outcome is not known (exit 5 in the CLI, not 4 = "nothing was done": a
    /// script had sent the roster again).
    #[test]
    fn a_change_without_an_answer_says_its_outcome_is_unknown() {
        let socket = Path::new("/run/autoprov/autoprov.sock");
        let closed = |changed| match answer_line(&mut &b""[..], socket, None, changed) {
            Err(Reach::Unreachable(message)) => (false, message),
            Err(Reach::Unknown(message)) => (true, message),
            _ => panic!("neither unreachable nor unknown"),
        };
        let (unknown, change) = closed(true);
        assert!(unknown, "{change}");
        assert!(
            change.contains("whether the request was carried out is not known"),
            "{change}"
        );
        let (unknown, read) = closed(false);
        assert!(!unknown, "{read}");
        assert!(
            read.contains("closed the connection without answering"),
            "{read}"
        );
        assert!(!read.contains("not known"), "{read}");
    }

    #[test]
    fn a_body_is_copied_until_its_end_mark_and_a_cut_one_is_an_error() {
        let mut out = Vec::new();
        let body = framed(&[b"[\n", b"{}", b"\n]\n"], true);
        assert!(copy_body(&mut &body[..], &mut out).is_ok());
        assert_eq!(out, b"[\n{}\n]\n");

        for cut in [
            framed(&[b"abc"], false),
            framed(&[b"abc"], true)[..5].to_vec(),
        ] {
            let mut out = Vec::new();
            assert!(matches!(
                copy_body(&mut &cut[..], &mut out),
                Err(Body::Daemon(_))
            ));
        }
        let mut huge = ((CHUNK + 1) as u32).to_be_bytes().to_vec();
        huge.resize(4 + CHUNK + 1, b'x');
        assert!(matches!(
            copy_body(&mut &huge[..], &mut Vec::new()),
            Err(Body::Daemon(_))
        ));
    }

    /// A change's report cut part way (the daemon stopping while its asker read slowly)
    /// leaves the outcome the head gave, and says where the whole report is; a read's cut
    /// answer is still "unreachable". A cut report had been exit 4, "nothing was done".
    #[test]
    fn a_changes_cut_report_keeps_its_outcome_a_reads_does_not() {
        use crate::api::{Output, Request};
        for (request, want) in [
            (Request::Sync { force: false }, Some(3u8)),
            (
                Request::AdminsList {
                    status: None,
                    origin: None,
                    rule: None,
                },
                None,
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("s.sock");
            let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
            let daemon = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                let head = Head {
                    response: Response {
                        exit: 3,
                        json: serde_json::Value::Null,
                        text: String::new(),
                    },
                    body: true,
                };
                let mut out = serde_json::to_vec(&head).unwrap();
                out.push(b'\n');
                out.extend_from_slice(&framed(&[b"held: 60 grants"], false));
                conn.write_all(&out).unwrap();
            });
            let envelope = Envelope {
                request,
                upload: None,
                output: Output::Text,
                stream: true,
            };
            let mut out = Vec::new();
            let me = nix::unistd::geteuid().as_raw();
            let reach = call(
                &socket,
                &[me],
                &envelope,
                None,
                Some(Duration::from_secs(5)),
                &mut out,
            );
            daemon.join().unwrap();
            assert_eq!(out, b"held: 60 grants");
            match (reach, want) {
                (Reach::Answered(r), Some(code)) => {
                    assert_eq!(r.exit, code);
                    assert!(r.text.contains("the outcome stands (exit 3)"), "{}", r.text);
                }
                (Reach::Unreachable(m), None) => {
                    assert!(m.contains("did not send the whole answer"), "{m}")
                }
                (_, want) => panic!("want {want:?}"),
            }
        }
    }
}
