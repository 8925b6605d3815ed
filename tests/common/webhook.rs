//! A local webhook receiver (an axum server on 127.0.0.1 with its own runtime) that records
//! every POST, for the notification tests (SPEC §10 `[notify]`).

use super::{lazy, wait_until};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The webhook's path: a token, as in Slack's URLs; it must never be logged.
pub const HOOK_PATH: &str = "/services/T0/B0/s3cr3t-token";

/// How the receiver answers.
#[derive(Clone, Copy)]
pub enum Answer {
    /// 200 to everything.
    Ok,
    /// 500 to the first `n` POSTs, then 200.
    FailFirst(usize),
    /// Never answers.
    Hang,
}

/// What the receiver saw.
#[derive(Default)]
pub struct Seen {
    /// Every POST's body, answered or not, in arrival order.
    pub attempts: Mutex<Vec<Value>>,
    /// The bodies answered 200.
    pub delivered: Mutex<Vec<Value>>,
    /// Content types of the POSTs.
    pub content_types: Mutex<Vec<String>>,
    /// POSTs waiting for an answer that never comes.
    pub hanging: AtomicUsize,
}

/// A local webhook receiver on its own runtime; stops on drop.
pub struct Receiver {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start(answer: Answer) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), answer)
    }

    pub fn start_on(addr: SocketAddr, answer: Answer) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let app = axum::Router::new()
            .route(HOOK_PATH, axum::routing::post(receive))
            .with_state((seen.clone(), answer));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}{HOOK_PATH}", self.addr)
    }

    pub fn delivered(&self) -> Vec<Value> {
        self.seen.delivered.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> Vec<Value> {
        self.seen.attempts.lock().unwrap().clone()
    }

    /// The delivered events of one kind.
    pub fn delivered_of(&self, event: &str) -> Vec<Value> {
        self.delivered()
            .into_iter()
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Waits (≤ 30 s) until `n` events were delivered; returns them.
    pub fn wait_delivered(&self, n: usize) -> Vec<Value> {
        let what = lazy(|| format!("{n} notifications delivered: {:#?}", self.delivered()));
        wait_until(what, Duration::from_secs(30), || {
            let got = self.delivered();
            (got.len() >= n).then_some(got)
        })
    }
}

async fn receive(
    State((seen, answer)): State<(Arc<Seen>, Answer)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let kind = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    seen.content_types.lock().unwrap().push(kind);
    let n = {
        let mut attempts = seen.attempts.lock().unwrap();
        attempts.push(value.clone());
        attempts.len()
    };
    match answer {
        Answer::Hang => {
            seen.hanging.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            unreachable!()
        }
        Answer::FailFirst(fails) if n <= fails => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::Ok | Answer::FailFirst(_) => {
            seen.delivered.lock().unwrap().push(value);
            StatusCode::OK
        }
    }
}
