//! The pipe between an SFTP session's channel and russh-sftp: the client's requests are
//! handed over as the channel received them, without a copy, and the answers go through a
//! byte pipe. See [`super::stream::sftp_pump`] for why the two sides are decoupled.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::{Semaphore, mpsc};

/// Bytes held each way between an SFTP session and its channel.
pub(super) const SFTP_PIPE_BUFFER: usize = 1024 * 1024;

/// A pipe for the requests and one for the answers: the pump's ends, then russh-sftp's.
pub(super) fn sftp_pipe() -> ((RequestsTx, DuplexStream), SftpSide) {
    let room = Arc::new(Semaphore::new(SFTP_PIPE_BUFFER));
    let (tx, rx) = mpsc::unbounded_channel();
    let (answers, pump_answers) = tokio::io::duplex(SFTP_PIPE_BUFFER);
    let requests = Requests {
        rx,
        room: room.clone(),
        current: Bytes::new(),
        at: 0,
    };
    (
        (RequestsTx { tx, room }, pump_answers),
        SftpSide { requests, answers },
    )
}

/// What a chunk counts for in the pipe beside its bytes: its place in the queue and its
/// allocation, so that a client sending tiny chunks cannot make the pipe hold far more
/// memory than its room.
const CHUNK_COST: usize = 64;

/// The room a chunk of `len` bytes takes in the pipe (a chunk longer than the whole pipe
/// takes all of it).
fn room_of(len: usize) -> u32 {
    (len + CHUNK_COST).min(SFTP_PIPE_BUFFER) as u32
}

/// The pump's end of the requests pipe.
pub(super) struct RequestsTx {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Free bytes in the pipe: taken by [`RequestsTx::send`], given back as russh-sftp
    /// reads a chunk to its end; closed when russh-sftp lets go of its end.
    room: Arc<Semaphore>,
}

impl RequestsTx {
    /// Hands `data` over once the pipe has room for it (an empty chunk is dropped); false
    /// when the SFTP session has ended.
    pub(super) async fn send(&self, data: Bytes) -> bool {
        if data.is_empty() {
            return !self.tx.is_closed();
        }
        match self.room.acquire_many(room_of(data.len())).await {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
        self.tx.send(data).is_ok()
    }
}

/// russh-sftp's end of the requests pipe: the chunks in the order sent, then EOF once the
/// pump lets go of its end.
struct Requests {
    rx: mpsc::UnboundedReceiver<Bytes>,
    room: Arc<Semaphore>,
    /// The chunk being read and how far.
    current: Bytes,
    at: usize,
}

impl AsyncRead for Requests {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.at == self.current.len() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(self.current.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.current[at..at + n]);
        self.at += n;
        if self.at == self.current.len() {
            let len = self.current.len();
            self.current = Bytes::new();
            self.at = 0;
            self.room.add_permits(room_of(len) as usize);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        // A pump waiting for room gives up: nobody reads any more.
        self.room.close();
    }
}

/// The stream russh-sftp serves on: it reads the requests and writes the answers.
pub(super) struct SftpSide {
    requests: Requests,
    answers: DuplexStream,
}

impl AsyncRead for SftpSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.requests).poll_read(cx, buf)
    }
}

impl AsyncWrite for SftpSide {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.answers).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.answers).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.answers).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn requests_arrive_in_order_across_reads_then_eof() {
        let ((tx, mut pump_answers), mut side) = sftp_pipe();
        assert!(tx.send(Bytes::from_static(b"hello ")).await);
        assert!(tx.send(Bytes::new()).await);
        assert!(tx.send(Bytes::from_static(b"world")).await);
        drop(tx);
        let mut small = [0u8; 4];
        assert_eq!(side.read(&mut small).await.unwrap(), 4);
        assert_eq!(&small, b"hell");
        let mut rest = Vec::new();
        side.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"o world");
        // The answers go the other way.
        side.write_all(b"answer").await.unwrap();
        side.shutdown().await.unwrap();
        let mut answers = Vec::new();
        pump_answers.read_to_end(&mut answers).await.unwrap();
        assert_eq!(answers, b"answer");
    }

    /// Tiny chunks count for more than their bytes, and empty ones are not queued: a
    /// client cannot fill the daemon's memory with them while its SFTP session does not read.
    #[tokio::test]
    async fn tiny_chunks_fill_the_pipe_sooner_and_empty_ones_are_dropped() {
        let ((tx, _answers), side) = sftp_pipe();
        for _ in 0..100_000 {
            assert!(tx.send(Bytes::new()).await);
        }
        assert!(side.requests.rx.is_empty(), "empty chunks are not queued");
        assert_eq!(tx.room.available_permits(), SFTP_PIPE_BUFFER);
        let mut sent = 0;
        loop {
            let one = tx.send(Bytes::from_static(b"x"));
            match tokio::time::timeout(std::time::Duration::from_millis(20), one).await {
                Ok(true) => sent += 1,
                Ok(false) => panic!("the session has not ended"),
                Err(_) => break,
            }
            assert!(
                sent <= 20_000,
                "{sent} one-byte chunks and the pipe takes more"
            );
        }
        // At least 64 bytes a chunk: 1 MiB of room holds at most 16,384 of them.
        assert!((16_000..=16_384).contains(&sent), "{sent}");
        drop(side);
        assert!(!tx.send(Bytes::new()).await, "the session has ended");
    }

    #[tokio::test]
    async fn the_pump_waits_while_the_pipe_is_full_and_stops_once_the_session_ends() {
        let ((tx, _answers), mut side) = sftp_pipe();
        let chunk = Bytes::from(vec![7u8; SFTP_PIPE_BUFFER / 2 - CHUNK_COST]);
        assert!(tx.send(chunk.clone()).await);
        assert!(tx.send(chunk.clone()).await);
        // Full: the third chunk waits until the first is read to its end.
        {
            let third = tx.send(chunk.clone());
            tokio::pin!(third);
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(50), &mut third)
                    .await
                    .is_err(),
                "a full pipe takes no more"
            );
            let mut first = vec![0u8; chunk.len()];
            side.read_exact(&mut first).await.unwrap();
            assert!(third.await);
        }
        // A chunk longer than the pipe still goes through once the pipe is empty.
        let mut rest = vec![0u8; 2 * chunk.len()];
        side.read_exact(&mut rest).await.unwrap();
        assert!(tx.send(Bytes::from(vec![1u8; 2 * SFTP_PIPE_BUFFER])).await);
        // The session ends: a pump waiting for room gives up.
        let waiting = tokio::spawn(async move { tx.send(Bytes::from_static(b"x")).await });
        drop(side);
        assert!(!waiting.await.unwrap());
    }
}
