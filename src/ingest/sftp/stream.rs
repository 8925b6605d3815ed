//! The byte streams of a connection: the socket wrapper that can be cut and records
//! traffic for the idle watchdog, the pump between the SSH channel and the SFTP session's
//! pipe, and the guard on SFTP packet framing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};
use tracing::Span;

use super::drop_fs::MAX_PACKET_LEN;
use super::pipe::RequestsTx;

/// When a connection's socket last moved bytes either way, for the idle watchdog.
pub(super) struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(super) fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Moves bytes between an SFTP session's channel and the pipe russh-sftp serves on
/// ([`super::pipe`]).
///
/// russh hands each incoming channel message to the channel from inside its session loop
/// and waits while the channel's queue (100 messages) is full; the SFTP answers travel
/// through that same loop. Served directly on the channel, a session whose client packs
/// many small requests into each SSH packet deadlocks: the loop waits for the SFTP task to
/// take a message, the SFTP task waits for the loop to take an answer. This pump keeps
/// taking requests while answers queue in the pipe (up to
/// [`super::pipe::SFTP_PIPE_BUFFER`] each way), which breaks the cycle for any client that
/// reads its answers. One that does not is closed by the idle watchdog of the connection
/// (`server::serve_connection`).
///
/// The requests are the channel's messages themselves, handed over without the pump
/// copying them (russh-sftp copies each into its own buffer as it reads it). When the
/// client ends its side (the handler then closes the channel, `channel_eof`), or `kill` is
/// cancelled, the SFTP session gets EOF; when the SFTP session ends, the channel is shut
/// and closed at once.
pub(super) async fn sftp_pump(
    channel: Channel<Msg>,
    (requests, mut from_sftp): (RequestsTx, DuplexStream),
    kill: CancellationToken,
) {
    use tokio::io::AsyncWriteExt;
    let (mut incoming, outgoing) = channel.split();
    let mut channel_tx = KillableStream::new(outgoing.make_writer(), kill.clone());
    let _close = CloseOnDrop(Some(outgoing));
    let requests = async move {
        let taken = async {
            loop {
                match incoming.wait().await {
                    Some(ChannelMsg::Data { data }) => {
                        if !requests.send(data).await {
                            break;
                        }
                    }
                    Some(ChannelMsg::Eof) | None => break,
                    Some(_) => {}
                }
            }
        };
        tokio::select! {
            _ = kill.cancelled() => {}
            _ = taken => {}
        }
        // The SFTP session reads EOF.
        drop(requests);
    };
    let answers = async {
        let _ = tokio::io::copy(&mut from_sftp, &mut channel_tx).await;
        let _ = channel_tx.shutdown().await;
    };
    tokio::pin!(requests, answers);
    tokio::select! {
        _ = &mut answers => {}
        _ = &mut requests => answers.await,
    }
}

/// Closes the channel when dropped (the pump ended, or its task was dropped), as russh's
/// own channel stream does.
struct CloseOnDrop(Option<ChannelWriteHalf<Msg>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(channel) = self.0.take() {
            tokio::spawn(async move {
                let _ = channel.close().await;
            });
        }
    }
}

/// A socket that reads EOF and fails writes once `kill` is cancelled, so that a session
/// whose peer stopped reading still ends at shutdown.
pub(super) struct KillableStream<S> {
    inner: S,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    dead: bool,
    /// Touched whenever bytes move.
    activity: Option<Arc<Activity>>,
}

impl<S> KillableStream<S> {
    pub(super) fn new(inner: S, kill: CancellationToken) -> Self {
        KillableStream {
            inner,
            killed: Box::pin(kill.cancelled_owned()),
            dead: false,
            activity: None,
        }
    }

    /// Records in `activity` when bytes move.
    pub(super) fn watched(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn moved(&self, n: usize) {
        if n > 0
            && let Some(a) = &self.activity
        {
            a.touch();
        }
    }

    fn is_dead(&mut self, cx: &mut TaskContext<'_>) -> bool {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for KillableStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.moved(buf.filled().len() - before);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for KillableStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.moved(n);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Watches SFTP packet framing on the way in and ends the session (EOF) at the first
/// packet longer than [`MAX_PACKET_LEN`] or at any read or write error.
///
/// russh-sftp answers an oversized packet with BadMessage without reading its body and
/// then parses the body as the next packets; it also keeps looping on I/O errors. Ending
/// the stream makes it stop instead.
pub(super) struct PacketGuard<S> {
    inner: S,
    header: [u8; 4],
    header_len: usize,
    body_left: u64,
    broken: bool,
    span: Span,
    /// Dropped with the stream, i.e. when russh-sftp's session loop has ended.
    _on_end: Option<DropGuard>,
}

impl<S> PacketGuard<S> {
    pub(super) fn new(inner: S, span: Span) -> Self {
        PacketGuard {
            inner,
            header: [0; 4],
            header_len: 0,
            body_left: 0,
            broken: false,
            span,
            _on_end: None,
        }
    }

    /// Cancels `guard`'s token when the stream is dropped (the SFTP session has ended).
    pub(super) fn ending(mut self, guard: DropGuard) -> Self {
        self._on_end = Some(guard);
        self
    }

    /// Follows packet boundaries through `bytes`; false if a packet is too long.
    fn track(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(bytes.len() as u64);
                self.body_left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len == 4 {
                self.header_len = 0;
                let len = u32::from_be_bytes(self.header);
                if len > MAX_PACKET_LEN {
                    tracing::warn!(parent: &self.span, length = len,
                        "SFTP packet over the limit; ending the session");
                    return false;
                }
                self.body_left = u64::from(len);
            }
        }
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PacketGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.broken {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                tracing::debug!(parent: &self.span, error = %e, "SFTP stream read failed");
                self.broken = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => {
                if !self.track(&buf.filled()[before..]) {
                    self.broken = true;
                    buf.set_filled(before);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PacketGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(_)) = r {
            self.broken = true;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Err(_)) = r {
            self.broken = true;
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::sftp::drop_fs::{DropFs, DropRoot};

    #[test]
    fn packet_guard_follows_framing_across_reads() {
        let mut g = PacketGuard::new((), Span::none());
        // A 5-byte packet split over reads, then a header announcing an oversized packet.
        assert!(g.track(&[0, 0]));
        assert!(g.track(&[0, 5, 1, 2]));
        assert!(g.track(&[3, 4, 5, 0, 0, 0, 1, 9]));
        assert!(g.body_left == 0 && g.header_len == 0);
        assert!(!g.track(&(MAX_PACKET_LEN + 1).to_be_bytes()));
    }

    #[tokio::test]
    async fn an_oversized_sftp_packet_ends_the_session() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(DropRoot::prepare(dir.path()).unwrap());
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let fs = DropFs::new(root, 1000, Span::none(), None);
        let config = russh_sftp::server::Config {
            max_client_packet_len: MAX_PACKET_LEN,
        };
        russh_sftp::server::run_with_config(PacketGuard::new(server, Span::none()), fs, config)
            .await;

        // SSH_FXP_INIT version 3 is answered with SSH_FXP_VERSION.
        client
            .write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3])
            .await
            .unwrap();
        let len = client.read_u32().await.unwrap();
        let mut body = vec![0; len as usize];
        client.read_exact(&mut body).await.unwrap();
        assert_eq!(body[0], 2);

        // A packet announced one byte over the limit: the server hangs up instead of
        // answering BadMessage and then parsing the body as further packets.
        client
            .write_all(&(MAX_PACKET_LEN + 1).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[3u8; 64]).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
            .await
            .expect("session still open");
        assert!(read.is_ok());
        assert!(rest.is_empty(), "got {} bytes of reply", rest.len());
    }
}
