//! The web section's listener, with a cap on the connections open at once.
//!
//! Each connection holds a file descriptor for as long as the client keeps it open, and
//! before any sign-in. Without a cap, clients that open connections and leave them idle
//! could take every descriptor of the daemon (the usual soft limit is 1,024), and with them
//! the SFTP server's, the store's and the inbox's. Past the cap a connection waits in the
//! kernel's backlog, holding no descriptor of ours, until one closes. The SFTP server
//! (sockets and handles), the control socket and this cap together stay under 1,024.

use axum::serve::Listener;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections of the web section open at once, at most.
pub const MAX_CONNECTIONS: usize = 128;

/// A TCP listener that accepts a connection only while fewer than its cap are open.
pub struct Capped {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Capped {
    /// `listener`, with at most `cap` connections open at once.
    pub fn new(listener: TcpListener, cap: usize) -> Capped {
        Capped {
            listener,
            slots: Arc::new(Semaphore::new(cap)),
        }
    }
}

impl Listener for Capped {
    type Io = Slotted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Slotted, SocketAddr) {
        // The semaphore is never closed.
        let slot = self.slots.clone().acquire_owned().await;
        let slot = slot.expect("the connections' semaphore is never closed");
        // Accept errors (no descriptor left, a connection reset) are waited out by axum's.
        let (io, addr) = Listener::accept(&mut self.listener).await;
        (Slotted { io, _slot: slot }, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection holding its place under the cap until it is dropped.
pub struct Slotted {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Slotted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// With two connections open, a third is accepted only once one of them closes.
    #[tokio::test]
    async fn a_connection_past_the_cap_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut capped = Capped::new(listener, 2);
        let first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        let _third = TcpStream::connect(addr).await.unwrap();
        let (a, _) = capped.accept().await;
        let (_b, _) = capped.accept().await;
        let waiting = tokio::time::timeout(Duration::from_millis(200), capped.accept()).await;
        assert!(waiting.is_err(), "a third accepted while two are open");
        drop((a, first));
        let third = tokio::time::timeout(Duration::from_secs(5), capped.accept()).await;
        assert!(third.is_ok(), "the third accepted once one closed");
    }
}
