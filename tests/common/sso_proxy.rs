//! A stand-in for the organization's SSO proxy (oauth2-proxy, Authelia, ...): a reverse
//! proxy on 127.0.0.1:0 that forwards every request to a target and adds the signed-in
//! person's email in `X-Forwarded-Email`, so a browser pointed at it is "signed in".
//!
//! ```ignore
//! let proxy = SsoProxy::start("http://127.0.0.1:8080", "ann@acme.example");
//! let dom = common::browser::dump_dom(&proxy.url("/")).unwrap();
//! ```
//!
//! Like oauth2-proxy it passes the `Host` header through (its `--pass-host-header`
//! default), replaces any `X-Forwarded-Email` the client sent, adds `X-Forwarded-For`,
//! and hands redirects back to the client instead of following them.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The header oauth2-proxy sets (SPEC §11's default `web.user_header`).
pub const EMAIL_HEADER: &str = "X-Forwarded-Email";

/// Request bodies larger than this are refused (the forms are small).
const MAX_BODY: usize = 16 << 20;

/// Headers of one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// An axum router served on 127.0.0.1:0 by a runtime of its own thread, so synchronous
/// tests can use it; stopped when dropped.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Serves `router` (with the peer address available as `ConnectInfo<SocketAddr>`).
    pub fn start(router: Router) -> Served {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime for the test server");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binding 127.0.0.1:0");
                ready
                    .send(listener.local_addr().expect("local address"))
                    .expect("the starter waits");
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serving");
            });
        });
        let addr = addr.recv().expect("the test server started");
        Served {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Target {
    base: String,
    header: HeaderName,
    email: HeaderValue,
    client: reqwest::Client,
}

/// The proxy: a [`Served`] router forwarding to its target.
pub struct SsoProxy {
    served: Served,
}

impl SsoProxy {
    /// Forwards to `target` (e.g. `http://127.0.0.1:8080`) as `email` in [`EMAIL_HEADER`].
    pub fn start(target: &str, email: &str) -> SsoProxy {
        SsoProxy::start_with_header(target, EMAIL_HEADER, email)
    }

    /// Forwards to `target` as `email` in `header`.
    pub fn start_with_header(target: &str, header: &str, email: &str) -> SsoProxy {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("an HTTP client");
        let target = Arc::new(Target {
            base: target.trim_end_matches('/').to_string(),
            header: HeaderName::try_from(header).expect("a header name"),
            email: HeaderValue::try_from(email).expect("an email fit for a header"),
            client,
        });
        let router = Router::new().fallback(forward).with_state(target);
        SsoProxy {
            served: Served::start(router),
        }
    }

    /// Where the browser goes: `http://PROXY{path}`.
    pub fn url(&self, path: &str) -> String {
        self.served.url(path)
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }
}

async fn forward(
    State(target): State<Arc<Target>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    match try_forward(&target, peer, request).await {
        Ok(response) => response,
        Err(e) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(format!("sso proxy: {e:#}")))
            .expect("a response"),
    }
}

async fn try_forward(
    target: &Target,
    peer: SocketAddr,
    request: Request,
) -> anyhow::Result<Response> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers.clone();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(&target.header);
    headers.insert(target.header.clone(), target.email.clone());
    headers.insert(
        "x-forwarded-for",
        HeaderValue::try_from(peer.ip().to_string())?,
    );
    let body = to_bytes(body, MAX_BODY).await?;
    let answer = target
        .client
        .request(parts.method, format!("{}{path}", target.base))
        .headers(headers)
        .body(body)
        .send()
        .await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Body::from(answer.bytes().await?))?)
}
