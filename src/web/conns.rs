//! The web section's connections: accepted while fewer than [`MAX_CONNECTIONS`] are open,
//! each closed when a request's head does not arrive within [`HEADER_READ`], idle ones too,
//! and when an answer stays unread as long ([`WriteStall`]).
//!
//! Each connection holds a file descriptor from before any sign-in. Without a cap, clients
//! that open connections and leave them could take every descriptor of the daemon (the
//! usual soft limit is 1,024), and with them the SFTP server's, the store's and the inbox's;
//! past the cap a connection waits in the kernel's backlog, holding none of ours. Without
//! the timeout, 128 connections left idle (or sending their headers a byte at a time) would
//! keep the section from answering anyone else for as long as they stayed. axum's `serve`
//! gives hyper no timer, so its header-read timeout never ran; this is that loop with one.
//! hyper reads no request while it cannot write the answer before it, and has no write
//! timeout: a client that sends many requests at once and reads none of the answers would
//! hold its connection for ever, 128 of them the whole section.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connections of the web section open at once, at most. With the SFTP server's sockets
/// and handles and the control socket's connections, under 1,024 descriptors.
pub const MAX_CONNECTIONS: usize = 128;

/// How long a connection may take to send a request's head, stay idle between two, or
/// leave an answer it was sent unread.
pub const HEADER_READ: Duration = Duration::from_secs(30);

/// Connections one address may hold open at once, unless it is exempt (a trusted proxy,
/// which carries every signed-in person's). Past it a connection is closed as soon as it
/// is accepted: one client holding ~400 connections that sent a byte each had kept the
/// SSO's `auth/check` and `/healthz` from being answered for as long as it liked.
pub const PER_SOURCE: usize = 16;

/// What [`serve`] allows.
#[derive(Clone)]
pub struct Limits {
    /// Connections open at once, at most.
    pub cap: usize,
    /// Connections one address may hold, unless `exempt`.
    pub per_source: usize,
    /// Addresses without the per-source limit.
    pub exempt: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
    /// See [`HEADER_READ`].
    pub header_read: Duration,
}

/// Serves `app` on `listener` until `shutdown`, at most `limits.cap` connections at once and
/// `limits.per_source` from one address, each closed when a request head takes longer than
/// `header_read`, or a write waits as long for the peer to read; then asks the open ones to
/// finish and waits for them (the caller bounds that wait).
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let Limits {
        cap,
        per_source,
        exempt,
        header_read,
    } = limits;
    let slots = Arc::new(Semaphore::new(cap));
    let sources = Sources::default();
    // Each connection holds a receiver; all dropped once every connection has ended.
    let (closed, open) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = async {
                let slot = slots.clone().acquire_owned().await;
                // Accept errors (no descriptor left, a connection reset) are waited out.
                (slot, Listener::accept(&mut listener).await)
            } => accepted,
            () = shutdown.cancelled() => break,
        };
        let (Ok(slot), (stream, peer)) = accepted else {
            break;
        };
        let held = match exempt(peer.ip()) {
            true => None,
            // By /64 for IPv6, as the SFTP server counts: one host has a /64 to pick from.
            false => match sources.hold(crate::util::source_key(peer.ip()), per_source) {
                Some(held) => Some(held),
                None => {
                    super::refusals::TOO_MANY_CONNECTIONS.warn(
                        Some(peer.ip()),
                        &format!("connection closed: the address (for IPv6, its /64) holds {per_source} open already"),
                    );
                    continue;
                }
            },
        };
        // The peer's address for the handlers (`ConnectInfo`), as axum's `serve` gives it.
        let service = app
            .clone()
            .map_request(move |request: axum::http::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let (shutdown, open) = (shutdown.clone(), open.clone());
        tokio::spawn(async move {
            let (_slot, _held) = (slot, held);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_read);
            let connection = http
                .serve_connection(
                    TokioIo::new(WriteStall::new(stream, header_read)),
                    TowerToHyperService::new(service),
                )
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
            drop(open);
        });
    }
    drop(open);
    closed.closed().await;
}

/// The connections open by address.
#[derive(Default, Clone)]
struct Sources(Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>);

/// One connection of an address, counted until dropped.
struct Held {
    sources: Sources,
    ip: IpAddr,
}

impl Sources {
    /// Counts a connection of `ip`, unless it holds `max` already.
    fn hold(&self, ip: IpAddr, max: usize) -> Option<Held> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Held {
            sources: self.clone(),
            ip,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.sources.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A stream whose writes fail once one has waited `limit` for the peer to read.
struct WriteStall<S> {
    inner: S,
    limit: Duration,
    /// Since when a write has waited, while one does.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    fn new(inner: S, limit: Duration) -> WriteStall<S> {
        WriteStall {
            inner,
            limit,
            waiting: None,
        }
    }

    /// `polled` as it is, but a wait past the limit an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer read no answer within the time allowed",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// At most `cap` at once, `header_read`; the per-source limit for none (the tests'
    /// clients are all on 127.0.0.1), or `per_source` for all.
    fn limits(cap: usize, header_read: Duration, per_source: Option<usize>) -> Limits {
        Limits {
            cap,
            per_source: per_source.unwrap_or(usize::MAX),
            exempt: Arc::new(move |_| per_source.is_none()),
            header_read,
        }
    }

    async fn server(cap: usize, header_read: Duration) -> (SocketAddr, CancellationToken) {
        serve_with(limits(cap, header_read, None)).await
    }

    async fn serve_with(limits: Limits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("from {}", peer.ip())
            }),
        );
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, app, stop.clone(), limits));
        (addr, stop)
    }

    async fn get(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// With two connections open, a third is answered only once one of them closes; each
    /// handler sees its peer's address.
    #[tokio::test]
    async fn a_connection_past_the_cap_waits_until_one_closes() {
        let (addr, stop) = server(2, Duration::from_secs(30)).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut first).await.ends_with("from 127.0.0.1"));
        assert!(get(&mut second).await.ends_with("from 127.0.0.1"));
        let mut third = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), get(&mut third)).await;
        assert!(waiting.is_err(), "a third answered while two are open");
        drop(first);
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0; 4096];
            let n = third.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await;
        assert!(
            answered.is_ok_and(|a| a.contains("200 OK")),
            "answered once one closed"
        );
        stop.cancel();
    }

    /// One address holds at most `per_source` connections: the next is closed at once,
    /// not left waiting for a place (where it kept everyone else waiting behind it), and
    /// one closed frees its place. An exempt address (a trusted proxy) has no such limit.
    #[tokio::test]
    async fn an_address_past_its_connections_is_closed_at_once() {
        let (addr, stop) = serve_with(limits(8, Duration::from_secs(30), Some(2))).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut first).await.contains("200 OK"));
        assert!(get(&mut second).await.contains("200 OK"));
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "closed at once: {closed:?}"
        );
        drop(first);
        let again = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let mut next = TcpStream::connect(addr).await.unwrap();
                let _ = next.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
                let mut buf = vec![0; 4096];
                if let Ok(n) = next.read(&mut buf).await
                    && n > 0
                {
                    return String::from_utf8_lossy(&buf[..n]).into_owned();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(again.is_ok_and(|a| a.contains("200 OK")), "its place freed");
        stop.cancel();
        // Exempt: more than two from the one address.
        let (addr, stop) = server(8, Duration::from_secs(30)).await;
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            assert!(get(&mut c).await.contains("200 OK"));
            open.push(c);
        }
        stop.cancel();
    }

    /// A connection that sends nothing, or stays idle after a request, is closed once the
    /// header-read time has passed, and its place is taken by the next.
    #[tokio::test]
    async fn idle_and_silent_connections_are_closed_after_the_header_read_time() {
        let (addr, stop) = server(1, Duration::from_millis(200)).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "silent one closed: {closed:?}"
        );
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut idle).await.contains("200 OK"), "its place taken");
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut rest = Vec::new();
            idle.read_to_end(&mut rest).await.map(|_| rest)
        })
        .await;
        assert!(closed.is_ok(), "idle one closed after its request");
        stop.cancel();
    }

    /// A client that sends many requests at once and reads none of the answers: once the
    /// socket's buffers are full, the connection is closed after the same time, and its
    /// place taken by the next.
    #[tokio::test]
    async fn a_connection_whose_answers_go_unread_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let big = "x".repeat(256 << 10);
        let app = Router::new()
            .route("/big", axum::routing::get(move || async move { big }))
            .route("/", axum::routing::get(|| async { "small" }));
        let stop = CancellationToken::new();
        let limits = limits(1, Duration::from_millis(300), None);
        tokio::spawn(serve(listener, app, stop.clone(), limits));
        let mut greedy = TcpStream::connect(addr).await.unwrap();
        // 400 answers of 256 KiB: far more than the sockets' buffers hold.
        let requests = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
        greedy.write_all(requests.as_bytes()).await.unwrap();
        let mut next = TcpStream::connect(addr).await.unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(15), get(&mut next)).await;
        assert!(
            answered.is_ok_and(|a| a.contains("200 OK")),
            "the unread connection was closed and its place taken"
        );
        drop(greedy);
        stop.cancel();
    }
}
