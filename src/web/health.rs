//! `/healthz` (no sign-in: 200 while the engine runs and the last file or fetch did not
//! fail, else 503 with the reason) and `/metrics` (Prometheus text format, for an API token
//! or a loopback peer).

use super::identity::{Claim, bearer, claim, peer};
use super::{Denied, WebState};
use crate::api::{Caller, Output, Request};
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

/// The routes.
pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// Who reads through these endpoints (reads are not checked; the name is for logs).
fn reader() -> Caller {
    Caller::Unix("autoprov-web".into())
}

impl WebState {
    /// A read as the section itself; its JSON, or what failed.
    async fn own_read(&self, request: Request) -> Result<Value, String> {
        let answer = self
            .engine
            .ask_as(request, reader(), None, Output::Json)
            .await
            .response;
        match answer.exit {
            crate::api::exit::OK => Ok(answer.json),
            _ => Err(answer.text),
        }
    }

    /// The engine's last error and the source's last fetch error.
    fn errors(&self) -> (Option<String>, Option<String>) {
        let (last_error, source) = {
            let daemon = self.daemon.lock().expect("state lock");
            (daemon.last_error.clone(), daemon.source.clone())
        };
        (last_error, source.and_then(|s| s.fetch_error()))
    }

    /// Fetches that failed since start (0 while no source fetches: the hook is
    /// `SourceLink::fetch_failures`).
    fn fetch_failures(&self) -> u64 {
        let source = self.daemon.lock().expect("state lock").source.clone();
        source.map_or(0, |s| s.fetch_failures())
    }
}

/// Why the daemon is unhealthy, or None.
async fn unhealthy(state: &WebState) -> Option<(&'static str, String)> {
    if !state.engine.running() {
        return Some(("the engine has stopped", String::new()));
    }
    let (last_error, fetch_error) = state.errors();
    if let Some(e) = last_error {
        return Some(("the engine's last file failed", e));
    }
    if let Some(e) = fetch_error {
        return Some(("the last fetch failed", e));
    }
    let files = match state.own_read(Request::FilesList {}).await {
        Ok(files) => files,
        Err(e) => return Some(("the ledger cannot be read", e)),
    };
    // A dry run or a held file after a rejection does not clear it: nothing was applied.
    // A rejected dry run is not one either: nothing was asked to be applied.
    let dry_run = |f: &serde_json::Value| f["name"].as_str().is_some_and(crate::layout::is_dry_run);
    let last = (files.as_array()?.iter().rev())
        .find(|f| (f["status"] == "applied" || f["status"] == "rejected") && !dry_run(f))?;
    (last["status"] == "rejected").then(|| {
        let detail = format!(
            "file {} ({}): {}",
            last["id"],
            last["stored_as"].as_str().unwrap_or_default(),
            last["summary"].as_str().unwrap_or_default()
        );
        ("the last file was rejected", detail)
    })
}

/// 200 `ok`, or 503 with the reason. The details (file names, an error's text with its
/// paths) go only to a peer on this machine that addresses it as such: anyone else, a
/// caller through the SSO proxy's open route or a page whose name was rebound to
/// 127.0.0.1, gets the reason alone (it had read them all).
async fn healthz(State(state): State<Arc<WebState>>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    let local = is_local(&state, &parts);
    match unhealthy(&state).await {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some((reason, detail)) => {
            let text = match local && !detail.is_empty() {
                true => format!("unhealthy: {reason}: {detail}\n"),
                false => format!("unhealthy: {reason}\n"),
            };
            (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
        }
    }
}

/// Whether the request comes from this machine, not through the SSO proxy, and is
/// addressed to it by a local name (a page whose name was rebound to 127.0.0.1 is not).
fn is_local(state: &WebState, parts: &Parts) -> bool {
    // Through a proxy on this machine, by its forwarding headers too: oauth2-proxy drops
    // the email header on its open routes and passes the client's Host on, so `Host:
    // localhost` from anywhere had read the details (and /metrics, had its route been opened).
    let proxied = [
        state.cfg.web.user_header.as_str(),
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
    ]
    .iter()
    .any(|h| parts.headers.contains_key(*h));
    let loopback = peer(parts).is_some_and(|ip| ip.to_canonical().is_loopback());
    loopback && !proxied && super::identity::addressed_locally(&parts.headers)
}

/// `/metrics` is for a listed API token or a peer on this machine. A request that carries
/// the SSO proxy's email header came through the proxy, which usually runs on this machine
/// too: from there every signed-in employee would be a loopback peer, so it needs a token.
/// A listed token counts with that header too: a scrape through oauth2-proxy's session
/// comes with both (it had been refused, "not an API token", whatever the token).
fn may_scrape(state: &WebState, parts: &Parts) -> Result<(), Denied> {
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        let token = match claim(&state.cfg.web, &parts.headers, peer(parts))? {
            Claim::Token(token) => token,
            Claim::Email(_) => bearer(auth)
                .ok_or_else(|| Denied::unauthorized("not an API token"))?
                .to_string(),
        };
        return state.token(&token, peer(parts)).map(|_| ());
    }
    match is_local(state, parts) {
        true => Ok(()),
        false => Err(Denied::unauthorized(
            "/metrics answers an API token (Authorization: Bearer), or a loopback peer that \
             is not the SSO proxy and addresses it as localhost or a loopback address",
        )),
    }
}

async fn metrics(State(state): State<Arc<WebState>>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(denied) = may_scrape(&state, &parts) {
        return denied.into_response();
    }
    let read = async {
        let status = state.own_read(Request::Status {}).await?;
        let files = state.own_read(Request::FilesList {}).await?;
        Ok::<_, String>((status, files))
    };
    match read.await {
        Ok((status, files)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(&status, &files, state.fetch_failures()),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("/metrics: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be read just now\n",
            )
                .into_response()
        }
    }
}

/// The file outcomes counted (SPEC §6's statuses).
const OUTCOMES: [&str; 4] = ["applied", "rejected", "held", "dry_run"];

/// The metrics in the Prometheus text format, from `status --json`, `files list --json` and
/// the source's count of failed fetches.
pub fn render(status: &Value, files: &Value, fetch_failures: u64) -> String {
    let files = files.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let by_outcome: Vec<(String, u64)> = OUTCOMES
        .iter()
        .map(|o| {
            let n = files.iter().filter(|f| f["status"] == *o).count() as u64;
            (format!("{{outcome=\"{o}\"}}"), n)
        })
        .collect();
    family(
        "autoprov_files",
        "gauge",
        "Files in the ledger, by outcome.",
        &by_outcome,
    );
    let last_applied = files
        .iter()
        .filter(|f| f["status"] == "applied")
        .filter_map(|f| f["processed_at"].as_str())
        .filter_map(|t| humantime::parse_rfc3339(t).ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .max()
        .unwrap_or(0);
    family(
        "autoprov_last_applied_timestamp_seconds",
        "gauge",
        "When the last file was applied (unix seconds; 0 before the first).",
        &[(String::new(), last_applied)],
    );
    let accounts: Vec<(String, u64)> = [
        ("auto", "active"),
        ("auto", "inactive"),
        ("manual", "active"),
        ("manual", "inactive"),
    ]
    .iter()
    .map(|(origin, st)| {
        let n = status["accounts"][format!("{origin}_{st}")]
            .as_u64()
            .unwrap_or(0);
        (format!("{{origin=\"{origin}\",status=\"{st}\"}}"), n)
    })
    .collect();
    family(
        "autoprov_accounts",
        "gauge",
        "Admin accounts, by origin and status.",
        &accounts,
    );
    let held = status["held"].as_array().map_or(0, Vec::len) as u64;
    family(
        "autoprov_held_files",
        "gauge",
        "Files held for approval.",
        &[(String::new(), held)],
    );
    family(
        "autoprov_fetch_failures_total",
        "counter",
        "Fetches from the HR source that failed since the daemon started.",
        &[(String::new(), fetch_failures)],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_count_files_accounts_and_held() {
        let status = json!({
            "accounts": {"auto_active": 7, "auto_inactive": 2, "manual_active": 1, "manual_inactive": 0},
            "held": [{"id": 3, "name": "x"}],
        });
        let files = json!([
            {"status": "applied", "processed_at": "2026-11-02T10:00:00Z"},
            {"status": "applied", "processed_at": "2026-11-03T10:00:00Z"},
            {"status": "rejected", "processed_at": "2026-11-04T10:00:00Z"},
            {"status": "held", "processed_at": "2026-11-05T10:00:00Z"},
        ]);
        let text = render(&status, &files, 4);
        for line in [
            "autoprov_files{outcome=\"applied\"} 2",
            "autoprov_files{outcome=\"rejected\"} 1",
            "autoprov_files{outcome=\"held\"} 1",
            "autoprov_files{outcome=\"dry_run\"} 0",
            "autoprov_last_applied_timestamp_seconds 1793700000",
            "autoprov_accounts{origin=\"auto\",status=\"active\"} 7",
            "autoprov_accounts{origin=\"manual\",status=\"inactive\"} 0",
            "autoprov_held_files 1",
            "autoprov_fetch_failures_total 4",
            "# TYPE autoprov_fetch_failures_total counter",
            "# HELP autoprov_held_files Files held for approval.",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        // Every family has one HELP and one TYPE line, before its samples.
        assert_eq!(text.matches("# TYPE ").count(), 5);
        assert_eq!(text.matches("# HELP ").count(), 5);
        assert!(
            render(&json!({}), &json!([]), 0).contains("autoprov_last_applied_timestamp_seconds 0")
        );
    }
}
