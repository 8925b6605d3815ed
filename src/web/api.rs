//! The read-only HTTP API (SPEC §11): the same requests as the CLI, answered with the JSON
//! of its `--json` output, and an HTTP status from the exit code ([`http_status`]).

use super::WebState;
use super::identity::Reader;
use crate::api::{Output, Request, Response, exit};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The HTTP status for an exit code of SPEC §7, the one place they are mapped: 0 → 200,
/// 1 (a negative answer: no such account, rule or file) → 404, 2 (usage) → 400, 3 (refused
/// by a rule of the spec: conflicts, a held file, an auto account) → 409, 4 (the daemon is
/// stopping) → 503, 5 (the work failed) → 500. A person's missing right is 403 before any
/// request is sent, and `auth/check` answers a denial with 200.
pub fn http_status(exit: u8) -> StatusCode {
    match exit {
        exit::OK => StatusCode::OK,
        exit::NO => StatusCode::NOT_FOUND,
        exit::USAGE => StatusCode::BAD_REQUEST,
        exit::REFUSED => StatusCode::CONFLICT,
        exit::UNREACHABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status of an engine answer: a missing right is 403 (the engine checks it
/// again, on its thread, against the account as it is then), anything else has the status
/// of its exit code.
pub fn status_of(answer: &Response) -> StatusCode {
    let rights = answer.exit == exit::REFUSED && answer.json["forbidden"] == true;
    match rights {
        true => StatusCode::FORBIDDEN,
        false => http_status(answer.exit),
    }
}

/// An engine answer as an HTTP response: its JSON, with its [`status_of`].
pub fn json_response(answer: Response) -> axum::response::Response {
    (status_of(&answer), Json(answer.json)).into_response()
}

/// The API's routes.
pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/api/v1/admins", get(admins))
        .route("/api/v1/admins/{employee_id}", get(admin))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/files", get(files))
        .route("/api/v1/files/{id}/report", get(report))
        .route("/api/v1/status", get(status))
        .route("/api/v1/auth/check", get(auth_check))
        .layer(axum::middleware::map_response(errors_as_json))
}

/// An error answered before a handler ran (a query parameter given twice, a path that is
/// not UTF-8, a method the route does not take) in the API's JSON shape, `{"error": …}`,
/// as every other answer of the API: axum's own rejections are plain text, 405 empty.
async fn errors_as_json(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_lowercase(),
        false => text,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

impl WebState {
    /// Sends a read for `reader` and answers with its JSON.
    async fn read(&self, reader: &Reader, request: Request) -> axum::response::Response {
        let reply = self
            .engine
            .ask_as(request, reader.0.caller(), None, Output::Json)
            .await;
        super::held::held(json_response(reply.response), reply.place)
    }
}

/// `?status=&origin=&rule=` (empty values count as absent).
#[derive(Debug, Default, Deserialize)]
pub struct AdminsQuery {
    /// active | inactive
    #[serde(default)]
    pub status: String,
    /// auto | manual
    #[serde(default)]
    pub origin: String,
    /// A rule id.
    #[serde(default)]
    pub rule: String,
}

/// Something of the request that could not be read: 400 with the CLI's error shape.
fn bad_request(message: String) -> axum::response::Response {
    json_response(Response::fail(exit::USAGE, message))
}

fn some(text: String) -> Option<String> {
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

async fn admins(
    State(state): State<Arc<WebState>>,
    reader: Reader,
    Query(q): Query<AdminsQuery>,
) -> axum::response::Response {
    let rule = match some(q.rule).map(|r| r.parse::<u64>()) {
        Some(Err(_)) => return bad_request("rule= takes a rule id (a number)".into()),
        Some(Ok(r)) => Some(r),
        None => None,
    };
    let request = Request::AdminsList {
        status: some(q.status),
        origin: some(q.origin),
        rule,
    };
    state.read(&reader, request).await
}

async fn admin(
    State(state): State<Arc<WebState>>,
    reader: Reader,
    Path(employee_id): Path<String>,
) -> axum::response::Response {
    state
        .read(&reader, Request::AdminsShow { id: employee_id })
        .await
}

async fn rules(State(state): State<Arc<WebState>>, reader: Reader) -> axum::response::Response {
    state.read(&reader, Request::RulesList {}).await
}

async fn files(State(state): State<Arc<WebState>>, reader: Reader) -> axum::response::Response {
    state.read(&reader, Request::FilesList {}).await
}

async fn report(
    State(state): State<Arc<WebState>>,
    reader: Reader,
    Path(id): Path<String>,
) -> axum::response::Response {
    match id.parse::<u64>() {
        Ok(id) => state.read(&reader, Request::FilesShow { id }).await,
        Err(_) => bad_request(format!("\"{id}\" is not a file id")),
    }
}

async fn status(State(state): State<Arc<WebState>>, reader: Reader) -> axum::response::Response {
    state.read(&reader, Request::Status {}).await
}

/// `?email=E`
#[derive(Debug, Deserialize)]
pub struct AuthQuery {
    /// The SSO login.
    #[serde(default)]
    pub email: String,
}

/// `auth/check`'s answer from the engine's `auth check` (exit 0 allowed, 1 denied).
pub fn auth_check_json(answer: &Response) -> Option<serde_json::Value> {
    match answer.exit {
        exit::OK => Some(json!({
            "allowed": true,
            "employee_id": answer.json["employee_id"],
            "role": answer.json["role"],
            "origin": answer.json["origin"],
        })),
        exit::NO => Some(json!({ "allowed": false })),
        _ => None,
    }
}

async fn auth_check(
    State(state): State<Arc<WebState>>,
    reader: Reader,
    query: Result<Query<AuthQuery>, axum::extract::rejection::QueryRejection>,
) -> axum::response::Response {
    // An address given twice (`?email=a&email=b`) is no one address: denied, 200 as the
    // README's "always 200" has it (it had been 400).
    let Ok(Query(q)) = query else {
        return (StatusCode::OK, Json(serde_json::json!({"allowed": false}))).into_response();
    };
    // Sent to the engine as asked: a space beyond ASCII around it (U+3000) is no part of an
    // address, and the engine denies it (`columns::is_plain_identity`); a trim here had
    // taken it away first.
    // Denied, as the README's "always 200" has it: a blank or missing address (it had been
    // 400), and one with spaces around it, which the engine would trim (SPEC §1): in a URL
    // they come from an unencoded `+`, and `?email=+kim@…` (a mailbox of its own) had been
    // trimmed to kim@… and answered with kim's role.
    let email = q.email;
    let bare = email.trim_matches(|c: char| c.is_ascii_whitespace());
    if bare.is_empty() || bare.len() != email.len() {
        return (StatusCode::OK, Json(serde_json::json!({"allowed": false}))).into_response();
    }
    let answer = state
        .engine
        .ask_as(
            Request::AuthCheck { email },
            reader.0.caller(),
            None,
            Output::Json,
        )
        .await
        .response;
    match auth_check_json(&answer) {
        Some(body) => (StatusCode::OK, Json(body)).into_response(),
        None => json_response(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change refused for the person's rights is 403, to a browser's form as to a JSON
    /// client (a form had had 409); another refusal is 409.
    #[test]
    fn a_refusal_for_rights_is_forbidden() {
        let rights = crate::api::person_refusal("kim@x.io");
        assert_eq!(status_of(&rights), StatusCode::FORBIDDEN);
        let other = Response::fail(exit::REFUSED, "refused: rule 2 is already named \"x\"");
        assert_eq!(status_of(&other), StatusCode::CONFLICT);
        // By the mark, not the words: a rule's name may say anything.
        let named = Response::fail(
            exit::REFUSED,
            "refused: rule 2 is already named \"x may not make changes\"",
        );
        assert_eq!(status_of(&named), StatusCode::CONFLICT);
    }

    #[test]
    fn exit_codes_map_to_statuses() {
        assert_eq!(http_status(exit::OK), StatusCode::OK);
        assert_eq!(http_status(exit::NO), StatusCode::NOT_FOUND);
        assert_eq!(http_status(exit::USAGE), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(exit::REFUSED), StatusCode::CONFLICT);
        assert_eq!(
            http_status(exit::UNREACHABLE),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(exit::FAILED), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(http_status(42), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn auth_check_answers_allowed_or_not_and_nothing_more() {
        let ok = Response::ok(
            json!({"email": "a@b.io", "employee_id": "E1", "role": "IT Admin", "origin": "auto"}),
            String::new(),
        );
        assert_eq!(
            auth_check_json(&ok),
            Some(
                json!({"allowed": true, "employee_id": "E1", "role": "IT Admin", "origin": "auto"})
            )
        );
        let denied = Response {
            exit: exit::NO,
            json: json!({"email": "a@b.io", "active": false, "ambiguous": 2}),
            text: String::new(),
        };
        assert_eq!(auth_check_json(&denied), Some(json!({"allowed": false})));
        assert_eq!(auth_check_json(&Response::fail(exit::FAILED, "disk")), None);
    }
}
