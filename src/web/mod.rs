//! The Auto-Provisioning section in a browser and the HTTP API (SPEC §11), served by the
//! daemon on its tokio runtime when `web.listen` is set. Like the CLI and the control socket
//! it only sends `api::Request`s to the engine and shows the answers; who is asking comes
//! from the organization's SSO proxy (`identity`), changes carry a CSRF token (`csrf`).
//!
//! Routes: [`router`]; the HTML pages are rendered by `pages` and merged in there.

pub mod api;
pub mod changes;
pub mod conns;
pub mod csrf;
pub mod health;
pub mod held;
pub mod html;
pub mod identity;
pub mod pages;
pub mod path_id;
pub mod refusals;
pub mod tokens;

use crate::config::Config;
use crate::engine::{EngineHandle, EngineState};
use anyhow::{Context, Result};
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What every handler shares.
pub struct WebState {
    /// The daemon's config (`web`, roles).
    pub cfg: Arc<Config>,
    /// Where requests go.
    pub engine: EngineHandle,
    /// The engine's state (last error, source) for `/healthz` and `/metrics`.
    pub daemon: Arc<Mutex<EngineState>>,
    /// The key of the forms' CSRF tokens.
    pub csrf: csrf::CsrfKey,
}

impl WebState {
    /// The shared state; reads (or makes, mode 0600) the CSRF secret in `data_dir`.
    pub fn new(
        cfg: Arc<Config>,
        engine: EngineHandle,
        daemon: Arc<Mutex<EngineState>>,
    ) -> Result<WebState> {
        let paths = crate::layout::Paths::new(&cfg.data_dir);
        let csrf = csrf::CsrfKey::load_or_create(&paths.web_secret)?;
        Ok(WebState {
            cfg,
            engine,
            daemon,
            csrf,
        })
    }
}

/// A refusal before any request reaches the engine (401, 403, 400, 503), as JSON
/// `{"error": message}`, or as a page to a browser's form ([`Denied::for_browser`]).
#[derive(Debug, Clone)]
pub struct Denied {
    /// The HTTP status.
    pub status: StatusCode,
    /// What to tell the asker.
    pub message: String,
    /// Answered as a page: a form posted by a browser (`Accept: text/html`).
    pub page: bool,
}

impl Denied {
    /// A refusal with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Denied {
        Denied {
            status,
            message: message.into(),
            page: false,
        }
    }

    /// The refusal as a page when `html` (a browser posted the form): a person whose form
    /// was refused before the engine was asked (a right lost since the page was drawn, a
    /// CSRF token gone stale) had been shown raw JSON.
    pub fn for_browser(self, html: bool) -> Denied {
        Denied { page: html, ..self }
    }

    /// 401: nobody known is asking.
    pub fn unauthorized(message: impl Into<String>) -> Denied {
        Denied::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the asker may not do this.
    pub fn forbidden(message: impl Into<String>) -> Denied {
        Denied::new(StatusCode::FORBIDDEN, message)
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        if self.page {
            let page = pages::error_page(None, self.status.as_u16(), &self.message);
            return (self.status, axum::response::Html(page.into_string())).into_response();
        }
        let mut response = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"autoprov\""),
            );
        }
        response
    }
}

/// Every route of the section: the API, the forms' POST endpoints, `/healthz`, `/metrics`,
/// each response with the security headers of SPEC §11.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(html::routes())
        .merge(changes::routes())
        .merge(health::routes())
        .fallback(|| async { Denied::new(StatusCode::NOT_FOUND, "no such page") })
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers))
}

/// The headers every response carries: no framing, no sniffing, no foreign scripts or
/// styles, no referrer, and no caching of what are personal data.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, "default-src 'self'"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Binds `web.listen`; the error names the key and the address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "binding the web section on {addr} (web.listen): is another program using that port?"
        )
    })
}

/// How long open connections may finish after the stop before they are dropped.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves the section on `listener` until `shutdown`, then lets requests in flight finish
/// (at most [`DRAIN`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<WebState>,
    shutdown: CancellationToken,
) {
    if let Some(user) = &state.cfg.web.dev_user {
        tracing::warn!(
            dev_user = %user,
            "web.dev_user is set: every request to the web section counts as {user}, without SSO. For a laptop only; put an SSO proxy in front for anything else"
        );
    }
    let web = state.cfg.web.clone();
    let limits = conns::Limits {
        cap: conns::MAX_CONNECTIONS,
        per_source: conns::PER_SOURCE,
        exempt: Arc::new(move |ip| web.trusts(ip)),
        header_read: conns::HEADER_READ,
    };
    let server = conns::serve(listener, router(state), shutdown.clone(), limits);
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        () = server => {},
        _ = drained => tracing::warn!("web section: connections still open {DRAIN:?} after the stop were dropped"),
    }
}
