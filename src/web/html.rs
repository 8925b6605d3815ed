//! The section's pages (SPEC §11): GET routes that send the engine the request the CLI
//! sends and render its answer with [`super::pages`]; refusals and failures are pages too.
//! The forms' POSTs are in [`super::changes`]; a browser gets their refusals from here.

use super::held::held;
use super::identity::{Person, Viewer};
use super::pages::{self, AdminsQuery, PageCtx, RuleForm};
use super::path_id::PathId;
use super::{Denied, WebState};
use crate::api::{Output, Request, Response, exit};
use crate::engine::handle::Reply;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use maud::Markup;
use std::sync::Arc;

type Answer = axum::response::Response;

/// The pages' routes (their POSTs are [`super::changes::routes`], on the same paths).
pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/", get(admins))
        .route("/admins/{id}", get(admin))
        .route("/rules", get(rules))
        .route("/files", get(files))
        .route("/files/{id}", get(file))
        .route("/files/{id}/report.json", get(report_json))
        .route("/files/{id}/report.txt", get(report_txt))
        .route("/status", get(status))
        .route(pages::STYLE_PATH, get(style))
}

/// What the layout needs to know of the person and the server.
fn ctx<'a>(state: &WebState, person: &'a Person, csrf: &'a str) -> PageCtx<'a> {
    PageCtx {
        email: &person.email,
        csrf,
        can_change: person.may_change,
        dev_mode: state.cfg.web.dev_user.is_some(),
    }
}

fn page(status: StatusCode, markup: Markup) -> Answer {
    (status, Html(markup.into_string())).into_response()
}

/// A refusal before the engine was asked (401, 403), as a page.
fn denied(d: Denied) -> Answer {
    page(
        d.status,
        pages::error_page(None, d.status.as_u16(), &d.message),
    )
}

/// A page's query, read once who asks may see the page: one that cannot be read is 400,
/// and the caller who is not signed in is told so first (401): such a caller had been
/// answered 400 for a query that could not be read (`?status=a&status=b`).
fn read_query<T>(
    viewer: &Result<Viewer, Denied>,
    query: Result<Query<T>, QueryRejection>,
) -> Result<T, Box<Answer>> {
    if let Err(d) = viewer {
        return Err(Box::new(denied(d.clone())));
    }
    query.map(|Query(q)| q).map_err(|e| {
        Box::new(page(
            StatusCode::BAD_REQUEST,
            pages::error_page(None, 400, &e.body_text()),
        ))
    })
}

/// The engine's refusal or failure, as a page with the status of its exit code.
fn failed(ctx: &PageCtx, answer: &Response) -> Answer {
    let status = super::api::status_of(answer);
    page(
        status,
        pages::error_page(Some(ctx), status.as_u16(), &answer.text),
    )
}

impl WebState {
    /// Asks the engine as `person` (reads do not wait for a file being processed). A large
    /// answer's place comes with it: give it to the page made of it ([`held`]).
    async fn ask_for(&self, person: &Person, request: Request, output: Output) -> Reply {
        self.engine
            .ask_as(request, person.caller(), None, output)
            .await
    }

    /// Asks, then renders the answer with `render`, or the refusal as a page.
    async fn show(
        &self,
        viewer: Result<Viewer, Denied>,
        request: Request,
        render: impl FnOnce(&PageCtx, &Response) -> Markup,
    ) -> Answer {
        let v = match viewer {
            Ok(v) => v,
            Err(d) => return denied(d),
        };
        let Reply {
            response: answer,
            place,
        } = self.ask_for(&v.person, request, Output::Both).await;
        let c = ctx(self, &v.person, &v.csrf);
        if answer.exit != exit::OK {
            return failed(&c, &answer);
        }
        let markup = render(&c, &answer);
        drop(answer);
        held(page(StatusCode::OK, markup), place)
    }
}

async fn admins(
    State(state): State<Arc<WebState>>,
    viewer: Result<Viewer, Denied>,
    query: Result<Query<AdminsQuery>, QueryRejection>,
) -> Answer {
    let q = match read_query(&viewer, query) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    let request = Request::AdminsList {
        status: None,
        origin: None,
        rule: None,
    };
    let roles = state.cfg.provisioning.roles.clone();
    state
        .show(viewer, request, |c, a| {
            pages::admins(c, &a.json, &roles, &q)
        })
        .await
}

async fn admin(
    State(state): State<Arc<WebState>>,
    viewer: Result<Viewer, Denied>,
    PathId(id): PathId,
) -> Answer {
    let request = Request::AdminsShow { id };
    state
        .show(viewer, request, |c, a| pages::admin(c, &a.json))
        .await
}

/// The query of `/rules`: `saved`, the rule a form just saved or enabled with warnings.
#[derive(Debug, Default, serde::Deserialize)]
pub struct RulesQuery {
    #[serde(default)]
    saved: Option<u64>,
}

async fn rules(
    State(state): State<Arc<WebState>>,
    viewer: Result<Viewer, Denied>,
    query: Result<Query<RulesQuery>, QueryRejection>,
) -> Answer {
    let q = match read_query(&viewer, query) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    let roles = state.cfg.provisioning.roles.clone();
    // Its warnings as they are now (a rule fixed since has none to show).
    // For a person who may change rules (who saved one): `rules show` reads the last
    // roster, which a reader reloading the link had been able to make the engine do.
    let saved = match (&viewer, q.saved) {
        (Ok(v), Some(id)) if v.person.may_change => {
            let shown = state
                .ask_for(&v.person, Request::RulesShow { id }, Output::Json)
                .await
                .response;
            (shown.exit == exit::OK).then_some(shown.json)
        }
        _ => None,
    };
    state
        .show(viewer, Request::RulesList {}, |c, a| match &saved {
            Some(saved) => pages::rules_saved(c, &a.json, &roles, saved),
            None => pages::rules(c, &a.json, &roles, None),
        })
        .await
}

async fn files(State(state): State<Arc<WebState>>, viewer: Result<Viewer, Denied>) -> Answer {
    state
        .show(viewer, Request::FilesList {}, |c, a| {
            pages::files(c, &a.json)
        })
        .await
}

/// The 404 page of a file id that is not a number.
fn no_file(text: &str) -> Answer {
    let message = format!("no file {text}: file ids are numbers");
    page(
        StatusCode::NOT_FOUND,
        pages::error_page(None, 404, &message),
    )
}

async fn file(
    State(state): State<Arc<WebState>>,
    viewer: Result<Viewer, Denied>,
    PathId(id): PathId,
) -> Answer {
    // Who asks first: a caller not signed in had been answered 404 for `/files/abc`.
    let id = match (&viewer, id.parse()) {
        (Err(d), _) => return denied(d.clone()),
        (Ok(_), Ok(id)) => id,
        (Ok(_), Err(_)) => return no_file(&id),
    };
    state
        .show(viewer, Request::FilesShow { id }, |c, a| {
            pages::file(c, id, &a.json, &a.text)
        })
        .await
}

/// A file's report to download, as JSON or as text.
async fn report(state: &WebState, viewer: Result<Viewer, Denied>, id: &str, json: bool) -> Answer {
    let v = match viewer {
        Ok(v) => v,
        Err(d) => return denied(d),
    };
    let Ok(id) = id.parse() else {
        return no_file(id);
    };
    let output = if json { Output::Json } else { Output::Text };
    let Reply {
        response: answer,
        place,
    } = state
        .ask_for(&v.person, Request::FilesShow { id }, output)
        .await;
    if answer.exit != exit::OK {
        return failed(&ctx(state, &v.person, &v.csrf), &answer);
    }
    let (body, kind, ext) = if json {
        let body = serde_json::to_string_pretty(&answer.json).unwrap_or_default() + "\n";
        (body, "application/json", "json")
    } else {
        // The filed report.txt's text, not `files show`'s, whose first line names the
        // report's path on the server.
        let text = serde_json::from_value::<crate::core::report::Report>(answer.json)
            .map(|report| report.to_text())
            .unwrap_or(answer.text);
        (text, "text/plain; charset=utf-8", "txt")
    };
    let disposition = format!("attachment; filename=\"file-{id}-report.{ext}\"");
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    held(response, place)
}

async fn report_json(
    State(state): State<Arc<WebState>>,
    viewer: Result<Viewer, Denied>,
    PathId(id): PathId,
) -> Answer {
    report(&state, viewer, &id, true).await
}

async fn report_txt(
    State(state): State<Arc<WebState>>,
    viewer: Result<Viewer, Denied>,
    PathId(id): PathId,
) -> Answer {
    report(&state, viewer, &id, false).await
}

async fn status(State(state): State<Arc<WebState>>, viewer: Result<Viewer, Denied>) -> Answer {
    state
        .show(viewer, Request::Status {}, |c, a| pages::status(c, &a.json))
        .await
}

/// The stylesheet: the same for everyone, so no sign-in (it holds no data).
async fn style() -> Answer {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::STYLE_CSS,
    )
        .into_response()
}

/// A form's refusal for a browser: a rule that conflicts is shown again with its conflicts
/// and "Save anyway" (409), one refused for another reason with the refusal (the status of
/// the exit code); anything else is an error page with that status.
pub async fn form_refused(
    state: &WebState,
    person: &Person,
    answer: Response,
    rule: Option<RuleForm>,
) -> Answer {
    let csrf = state.csrf.token(&person.email);
    let c = ctx(state, person, &csrf);
    let conflicts = answer
        .json
        .get("conflicts")
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()));
    let (form, status) = match (rule, conflicts) {
        (Some(form), Some(conflicts)) => {
            let form = RuleForm {
                conflicts: conflicts.clone(),
                ..form
            };
            (form, StatusCode::CONFLICT)
        }
        // Refused for another reason (an unknown role, a name taken, a condition that does
        // not parse): the form again with the refusal, as typed. An error page had lost
        // what was typed.
        (Some(form), None)
            if !form.enable && answer.json["stale"] != true && answer.exit != exit::NO =>
        {
            let form = RuleForm {
                error: Some(answer.text.trim().to_string()),
                ..form
            };
            (form, super::api::status_of(&answer))
        }
        _ => return failed(&c, &answer),
    };
    let list = state
        .ask_for(person, Request::RulesList {}, Output::Json)
        .await
        .response;
    if list.exit != exit::OK {
        return failed(&c, &list);
    }
    let roles = &state.cfg.provisioning.roles;
    page(status, pages::rules(&c, &list.json, roles, Some(&form)))
}
