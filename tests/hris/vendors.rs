//! Fake HR vendors for the HRIS tests, answering as the vendors document their APIs:
//!
//! * BambooHR "Request Custom Report": `POST /api/gateway.php/{subdomain}/v1/reports/custom
//!   ?format=JSON&onlyCurrent=true`, HTTP Basic with the API key as user name and `x` as
//!   password, a JSON body `{"title", "fields"}` sent as `Content-Type: application/json`
//!   exactly (anything else is read as XML: 400), answer `{"title", "fields", "employees"}`.
//! * Workday RaaS: `GET /ccx/service/customreport2/{tenant}/{owner}/{report}?format=json`,
//!   Basic (ISU) or Bearer; answer `{"Report_Entry": [...]}` leaving empty fields out; the
//!   token endpoint `POST /ccx/oauth2/{tenant}/token` takes a form with
//!   `grant_type=refresh_token`, `refresh_token`, `client_id`, `client_secret` and answers
//!   `{"access_token", "token_type": "Bearer", "expires_in"}` or 400 `invalid_grant`.
//! * csv_url: `GET /exports/roster.csv` with Bearer or Basic.
//!
//! Wrong credentials get 401 like the real ones. Replies can be scripted (status codes with
//! `Retry-After`, bodies that are not JSON, answers that stall or never end).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The BambooHR route.
pub const BAMBOO: &str = "bamboohr";
/// The Workday report route.
pub const REPORT: &str = "workday_report";
/// The Workday token route.
pub const TOKEN: &str = "workday_token";
/// Any other path (where a redirect may lead): answered 404.
pub const ELSEWHERE: &str = "elsewhere";
/// The CSV export route.
pub const CSV: &str = "csv";

/// Path of the Workday report.
pub const REPORT_PATH: &str = "/ccx/service/customreport2/acme/ISU_autoprov/Autoprov_Roster";
/// Path of the Workday token endpoint.
pub const TOKEN_PATH: &str = "/ccx/oauth2/acme/token";
/// Path of the CSV export.
pub const CSV_PATH: &str = "/exports/roster.csv";

/// One answer of a fake vendor.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with extra headers and a short text body.
    Status(u16, Vec<(&'static str, String)>),
    /// A complete body (with Content-Length) of this content type.
    Body(&'static str, Vec<u8>),
    /// These bytes, chunked (no Content-Length), then nothing more: the answer never ends.
    StallAfter(Vec<u8>),
    /// `count` chunks of these bytes (no Content-Length).
    Chunked(Vec<u8>, usize),
    /// No answer at all.
    Stall,
}

impl Reply {
    /// A JSON body.
    pub fn json(value: &Value) -> Reply {
        Reply::Body("application/json", value.to_string().into_bytes())
    }
}

/// A request the fake saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which route.
    pub route: &'static str,
    /// The Authorization header ("" when absent).
    pub auth: String,
    /// The Content-Type header ("" when absent).
    pub content_type: String,
    /// The Referer header ("" when absent).
    pub referer: String,
    /// The raw query string.
    pub query: String,
    /// The body as text.
    pub body: String,
}

/// The shared state of a fake vendor.
#[derive(Debug)]
pub struct Fake {
    /// Replies to give before the roster, in order.
    script: Mutex<VecDeque<Reply>>,
    /// Replies the token endpoint gives before it trades tokens, in order.
    token_script: Mutex<VecDeque<Reply>>,
    /// What the report routes answer when nothing is scripted.
    roster: Mutex<Reply>,
    /// Every request, in order.
    seen: Mutex<Vec<Seen>>,
    /// The Authorization header the report routes accept.
    auth: Mutex<String>,
    /// The refresh token the token endpoint accepts, and the access token it gives.
    tokens: Mutex<(String, String)>,
    /// The OAuth client's id and secret.
    client: (String, String),
    /// A refresh token the token endpoint gives with its next access token, accepting
    /// only that one from then on (an endpoint that rotates them, RFC 6749 §6).
    rotate: Mutex<Option<String>>,
}

impl Fake {
    /// A fake accepting `auth` as Authorization and answering `roster`.
    pub fn new(auth: &str, roster: Reply) -> Arc<Fake> {
        Arc::new(Fake {
            script: Mutex::new(VecDeque::new()),
            token_script: Mutex::new(VecDeque::new()),
            roster: Mutex::new(roster),
            seen: Mutex::new(Vec::new()),
            auth: Mutex::new(auth.to_string()),
            tokens: Mutex::new((String::new(), String::new())),
            client: (String::new(), String::new()),
            rotate: Mutex::new(None),
        })
    }

    /// A Workday fake with OAuth: the token endpoint trades `refresh` for `access`, and the
    /// report accepts `Bearer <access>`.
    pub fn oauth(client: (&str, &str), refresh: &str, access: &str, roster: Reply) -> Arc<Fake> {
        Arc::new(Fake {
            script: Mutex::new(VecDeque::new()),
            token_script: Mutex::new(VecDeque::new()),
            roster: Mutex::new(roster),
            seen: Mutex::new(Vec::new()),
            auth: Mutex::new(format!("Bearer {access}")),
            tokens: Mutex::new((refresh.to_string(), access.to_string())),
            client: (client.0.to_string(), client.1.to_string()),
            rotate: Mutex::new(None),
        })
    }

    /// The router serving every vendor's routes over this state.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/api/gateway.php/{subdomain}/v1/reports/custom",
                post(bamboo),
            )
            .route(REPORT_PATH, get(workday_report))
            .route(TOKEN_PATH, post(workday_token))
            .route(CSV_PATH, get(csv_export))
            .fallback(elsewhere)
            .with_state(self.clone())
    }

    /// Queues replies to give before the roster.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// Queues replies for the token endpoint to give before it trades tokens.
    pub fn push_token(&self, replies: impl IntoIterator<Item = Reply>) {
        self.token_script.lock().unwrap().extend(replies);
    }

    /// Forgets queued replies.
    pub fn clear_script(&self) {
        self.script.lock().unwrap().clear();
    }

    /// Changes what the report routes answer by default.
    pub fn set_roster(&self, roster: Reply) {
        *self.roster.lock().unwrap() = roster;
    }

    /// Makes the token endpoint's next trade give `new` as the refresh token, and accept
    /// only it from then on.
    pub fn rotate_refresh_token(&self, new: &str) {
        *self.rotate.lock().unwrap() = Some(new.to_string());
    }

    /// Makes the token endpoint refuse every refresh token (400 invalid_grant).
    pub fn revoke_refresh_token(&self) {
        self.tokens.lock().unwrap().0 = "revoked".into();
    }

    /// The requests seen on `route`.
    pub fn seen(&self, route: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.route == route).cloned().collect()
    }

    /// How many requests `route` got.
    pub fn count(&self, route: &str) -> usize {
        self.seen(route).len()
    }

    fn record(&self, route: &'static str, headers: &HeaderMap, query: Option<String>, body: &[u8]) {
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        self.seen.lock().unwrap().push(Seen {
            route,
            auth: text(header::AUTHORIZATION),
            content_type: text(header::CONTENT_TYPE),
            referer: text(header::REFERER),
            query: query.unwrap_or_default(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let expected = self.auth.lock().unwrap().clone();
        headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == expected.as_bytes())
    }

    /// The next scripted reply, or the roster.
    async fn answer(&self) -> Response {
        let next = self.script.lock().unwrap().pop_front();
        let reply = next.unwrap_or_else(|| self.roster.lock().unwrap().clone());
        respond(reply).await
    }
}

async fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Status(code, headers) => {
            let status = StatusCode::from_u16(code).expect("status code");
            let mut response = (status, "error\n").into_response();
            for (name, value) in headers {
                response.headers_mut().insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).expect("header value"),
                );
            }
            response
        }
        Reply::Body(content_type, bytes) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Reply::StallAfter(bytes) => {
            let stream = futures_util::stream::unfold(Some(bytes), |first| async move {
                match first {
                    Some(bytes) => Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), None)),
                    None => std::future::pending().await,
                }
            });
            Response::new(Body::from_stream(stream))
        }
        Reply::Chunked(chunk, count) => {
            let stream = futures_util::stream::unfold(count, move |left| {
                let chunk = chunk.clone();
                async move {
                    (left > 0).then(|| (Ok::<_, std::io::Error>(Bytes::from(chunk)), left - 1))
                }
            });
            Response::new(Body::from_stream(stream))
        }
        Reply::Stall => std::future::pending().await,
    }
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// The fields BambooHR is always asked for (SPEC §10).
pub const BAMBOO_FIELDS: [&str; 8] = [
    "id",
    "supervisorEId",
    "workEmail",
    "status",
    "department",
    "division",
    "location",
    "jobTitle",
];

async fn bamboo(
    State(fake): State<Arc<Fake>>,
    Path(subdomain): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.record(BAMBOO, &headers, query.clone(), &body);
    if subdomain != "acme" {
        return refuse(StatusCode::NOT_FOUND, "no such company");
    }
    let query = query.unwrap_or_default().to_ascii_lowercase();
    if !query.contains("format=json") || !query.contains("onlycurrent=true") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "format=JSON&onlyCurrent=true expected",
        );
    }
    if !fake.authorized(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Only exactly application/json is read as JSON; anything else is parsed as XML.
    if headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()) != Some(b"application/json") {
        return refuse(StatusCode::BAD_REQUEST, "Malformed XML");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "malformed JSON");
    };
    let fields: Vec<&str> = request["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if request["title"].as_str().is_none() || BAMBOO_FIELDS.iter().any(|f| !fields.contains(f)) {
        return refuse(StatusCode::BAD_REQUEST, "title and fields expected");
    }
    fake.answer().await
}

async fn workday_report(
    State(fake): State<Arc<Fake>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    fake.record(REPORT, &headers, query.clone(), b"");
    if query.as_deref() != Some("format=json") {
        return refuse(StatusCode::BAD_REQUEST, "format=json expected");
    }
    if !fake.authorized(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    fake.answer().await
}

async fn csv_export(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    fake.record(CSV, &headers, None, b"");
    if !fake.authorized(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    fake.answer().await
}

/// Another host a redirect leads to (or the first, after one): `…/private` asks for
/// credentials (401), as a download link's host may; `/bounce?to=URL` redirects on to URL;
/// anything else is not found.
async fn elsewhere(
    State(fake): State<Arc<Fake>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    fake.record(ELSEWHERE, &headers, None, &[]);
    let back = uri.query().and_then(|q| q.strip_prefix("to="));
    match (uri.path(), back) {
        (path, _) if path.ends_with("/private") => refuse(StatusCode::UNAUTHORIZED, "unauthorized"),
        ("/bounce", Some(to)) => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", to.to_string())],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn workday_token(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    fake.record(TOKEN, &headers, None, &body);
    let scripted = fake.token_script.lock().unwrap().pop_front();
    if let Some(reply) = scripted {
        return respond(reply).await;
    }
    let form = form_decode(&String::from_utf8_lossy(&body));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    if content_type != Some(b"application/x-www-form-urlencoded")
        || field("grant_type") != Some("refresh_token")
    {
        let error = json!({"error": "unsupported_grant_type"});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    if field("client_id") != Some(&fake.client.0) || field("client_secret") != Some(&fake.client.1)
    {
        let error = json!({"error": "invalid_client"});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let (refresh, access) = fake.tokens.lock().unwrap().clone();
    if field("refresh_token") != Some(refresh.as_str()) {
        let error = json!({"error": "invalid_grant"});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let mut answer = json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600});
    if let Some(new) = fake.rotate.lock().unwrap().take() {
        fake.tokens.lock().unwrap().0 = new.clone();
        answer["refresh_token"] = json!(new);
    }
    axum::Json(answer).into_response()
}

/// `application/x-www-form-urlencoded` pairs.
pub fn form_decode(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// One employee of the test rosters.
#[derive(Debug, Clone)]
pub struct Employee {
    /// Employee id.
    pub id: &'static str,
    /// The supervisor's id ("" = none).
    pub manager: &'static str,
    /// Work email.
    pub email: &'static str,
    /// Active | Inactive.
    pub status: &'static str,
    /// Department.
    pub department: &'static str,
    /// Division.
    pub division: &'static str,
    /// Location.
    pub location: &'static str,
    /// Job title.
    pub title: &'static str,
}

const fn emp(
    id: &'static str,
    manager: &'static str,
    email: &'static str,
    status: &'static str,
    department: &'static str,
    title: &'static str,
) -> Employee {
    Employee {
        id,
        manager,
        email,
        status,
        department,
        division: "HQ",
        location: "Zürich",
        title,
    }
}

/// The roster every provider serves: the CEO, an engineering manager with two reports,
/// the CFO with an accountant and a former accountant.
pub fn roster() -> Vec<Employee> {
    vec![
        emp("1", "", "ceo@acme.io", "Active", "Executive", "CEO"),
        emp("2", "1", "cto@acme.io", "Active", "Engineering", "CTO"),
        emp(
            "3",
            "2",
            "dev1@acme.io",
            "Active",
            "Engineering",
            "Developer",
        ),
        emp(
            "4",
            "2",
            "dev2@acme.io",
            "Active",
            "Engineering",
            "Developer",
        ),
        emp("5", "1", "cfo@acme.io", "Active", "Finance", "CFO"),
        emp("6", "5", "acct@acme.io", "Active", "Finance", "Accountant"),
        emp(
            "7",
            "5",
            "gone@acme.io",
            "Inactive",
            "Finance",
            "Accountant",
        ),
    ]
}

/// BambooHR's answer for `employees`.
pub fn bamboo_answer(employees: &[Employee]) -> Value {
    let fields: Vec<Value> = BAMBOO_FIELDS
        .iter()
        .map(|f| json!({"id": f, "type": "text", "name": f}))
        .collect();
    let rows: Vec<Value> = employees
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "supervisorEId": if e.manager.is_empty() { Value::Null } else { e.manager.into() },
                "workEmail": e.email, "status": e.status, "department": e.department,
                "division": e.division, "location": e.location, "jobTitle": e.title,
            })
        })
        .collect();
    json!({"title": "autoprov", "fields": fields, "employees": rows})
}

/// A Workday report's answer for `employees`, fields in the report's order (not sorted):
/// empty fields are left out of an entry.
pub fn workday_answer(employees: &[Employee]) -> Reply {
    let entries: Vec<String> = employees
        .iter()
        .map(|e| {
            let fields: Vec<String> = [
                ("Employee_ID", e.id),
                ("Manager_ID", e.manager),
                ("Work_Email", e.email),
                ("Worker_Status", e.status),
                ("Department", e.department),
                ("Division", e.division),
                ("Location", e.location),
                ("Job_Title", e.title),
            ]
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(field, value)| format!("{}: {}", json!(field), json!(value)))
            .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    let text = format!("{{\"Report_Entry\": [{}]}}", entries.join(",\n"));
    Reply::Body("application/json", text.into_bytes())
}

/// The same roster as a file an HR system would export: human headers, UTF-8, LF.
pub fn roster_csv(employees: &[Employee]) -> Vec<u8> {
    let mut out = String::from(
        "Employee ID,Work Email,Supervisor ID,Status,Department,Division,Location,Job Title\n",
    );
    for e in employees {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            e.id, e.email, e.manager, e.status, e.department, e.division, e.location, e.title
        ));
    }
    out.into_bytes()
}
