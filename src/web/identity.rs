//! Who is asking (SPEC §11): the person the SSO proxy names in `web.user_header`, believed
//! only from `web.trusted_proxies`, or a program with a read-only API token; and what they
//! may do: look (an active admin account, or `web.org_admins`) and change (`web.org_admins`,
//! or an active account whose role is in `web.org_admin_roles`).
//!
//! The extractors [`Reader`] (API reads), [`Viewer`] (pages) and [`Change`] (form posts)
//! answer 401 or 403 themselves, so a handler that takes one runs only for those allowed.

use super::{Denied, WebState, csrf};
use crate::api::{Caller, Output, Request, exit};
use crate::config::web::Web;
use crate::core::columns::is_plain_identity;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What a request claims to be, before anything is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// `Authorization: Bearer TOKEN`.
    Token(String),
    /// The signed-in person's email (from a trusted proxy, or `web.dev_user`).
    Email(String),
}

/// Reads the claim of a request from `peer`: a bearer token, the dev setting's person, or
/// the SSO proxy's header (believed only from `web.trusted_proxies`); 401 otherwise.
pub fn claim(web: &Web, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<Claim, Denied> {
    let once = |name: &str| {
        only_value(headers, name).map_err(|Twice| {
            Denied::unauthorized(format!(
                "not signed in: the {name} header came more than once (the SSO proxy must replace the client's, not add to it)"
            ))
        })
    };
    if let Some(auth) = once(header::AUTHORIZATION.as_str())? {
        // A trusted proxy may pass on an Authorization of its own (oauth2-proxy's
        // `set_authorization_header` forwards the ID token) with the person's header: that
        // request is the person's, not a token's.
        let from_proxy = web.dev_user.is_none()
            && peer.is_some_and(|p| web.trusts(p))
            && headers.contains_key(web.user_header.as_str());
        if !from_proxy {
            return match bearer(auth) {
                Some(t) => Ok(Claim::Token(t.to_string())),
                None => Err(Denied::unauthorized(
                    "the Authorization header is not `Bearer TOKEN`",
                )),
            };
        }
    }
    if let Some(user) = &web.dev_user {
        // Only for a request addressed to this machine by a loopback name or address: a page
        // on another site that points its own name at 127.0.0.1 (DNS rebinding) would
        // otherwise read the forms and send them as the dev user, its Origin matching its Host.
        return match addressed_locally(headers) {
            true => Ok(Claim::Email(user.clone())),
            false => Err(Denied::unauthorized(
                "not signed in: web.dev_user answers only requests addressed to localhost or a \
                 loopback address",
            )),
        };
    }
    let Some(value) = once(web.user_header.as_str())? else {
        return Err(Denied::unauthorized(format!(
            "not signed in: no {} header from the SSO proxy (open this site through the organization's SSO)",
            web.user_header
        )));
    };
    match peer {
        Some(peer) if web.trusts(peer) => {}
        peer => {
            let what = format!(
                "{} header from outside web.trusted_proxies refused",
                web.user_header
            );
            super::refusals::FORGED_HEADER.warn(peer, &what);
            let peer = peer.map_or("an unknown address".to_string(), |p| p.to_string());
            return Err(Denied::unauthorized(format!(
                "not signed in: the {} header is believed only from web.trusted_proxies, and {peer} is not one",
                web.user_header
            )));
        }
    }
    // Addressed by a name the organization gave the section: a page of another site that
    // points its own name at this machine (DNS rebinding) is same-origin with itself, so a
    // browser here lets it send the header, read the forms' tokens and post them, its
    // `Origin` matching its `Host`; from loopback, the header had been believed.
    // Two Host headers name no host to add: said as what they are.
    let Ok(foreign) = foreign_host(web, headers) else {
        let what = "request gives its Host header twice, refused";
        super::refusals::FOREIGN_HOST.warn(peer, what);
        return Err(Denied::unauthorized(
            "not signed in: this request gives its Host header twice, which HTTP refuses \
             (whatever proxy sent it adds a Host of its own to the client's)"
                .to_string(),
        ));
    };
    if let Some(name) = foreign {
        super::refusals::FOREIGN_HOST.warn(
            peer,
            &format!("request addressed to {name:?}, not an address, localhost or one of web.allowed_hosts, refused"),
        );
        return Err(Denied::unauthorized(format!(
            "not signed in: this request is addressed to \"{name}\", which is not in \
             web.allowed_hosts (add the name your SSO proxy passes on in Host; a page of another \
             site pointing its name at this machine would otherwise act as anyone signed in here)"
        )));
    }
    // UTF-8, not ASCII only: an address with a non-ASCII local part passes `auth check`.
    // ASCII spaces only: one beyond ASCII (U+3000) around it is no part of an address.
    let email = std::str::from_utf8(value.as_bytes())
        .unwrap_or_default()
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if !is_plain_identity(email) {
        return Err(Denied::unauthorized(format!(
            "not signed in: the {} header does not hold one email address",
            web.user_header
        )));
    }
    Ok(Claim::Email(email.to_string()))
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme in any letter case, as
/// HTTP's authentication schemes are).
pub(super) fn bearer(auth: &axum::http::HeaderValue) -> Option<&str> {
    let (scheme, token) = auth.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the request's `Host` (when it has one: browsers always send it) names this
/// machine: `localhost` (or a name under it), or a loopback address, with any port.
pub(super) fn addressed_locally(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let name = host_name(host);
    is_localhost(&name) || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The name a request is addressed to (its `Host`), when that is not an IP address,
/// `localhost` (or a name under it) nor one of `web.allowed_hosts`; `None` for a request
/// without `Host` (HTTP/1.0, which no browser sends) or one addressed as allowed; [`Twice`]
/// for a `Host` given twice (HTTP refuses such a request: its first value alone had been
/// looked at).
fn foreign_host(web: &Web, headers: &HeaderMap) -> Result<Option<String>, Twice> {
    let Some(host) = only_value(headers, header::HOST.as_str())? else {
        return Ok(None);
    };
    let name = host_name(host);
    let allowed = is_localhost(&name) || name.parse::<IpAddr>().is_ok() || web.host_allowed(&name);
    Ok((!allowed).then(|| {
        let shown = crate::core::model::escape_controls(&name);
        shown.chars().take(100).collect()
    }))
}

/// The name of a `Host` value: in lower case, without its port, brackets or final dot;
/// empty for one that is not visible ASCII.
fn host_name(host: &HeaderValue) -> String {
    let host = host
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    csrf::split_authority(&host)
        .0
        .trim_end_matches('.')
        .to_string()
}

/// `localhost`, or a name under it (browsers resolve them to this machine themselves).
fn is_localhost(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// A header given more than once.
struct Twice;

/// The value of header `name`, if given; [`Twice`] when given more than once, which is not
/// read as its first value: a proxy that adds its header to the client's (rather than
/// replacing it) would let the client's come first.
fn only_value<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h HeaderValue>, Twice> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    match all.next() {
        Some(_) => Err(Twice),
        None => Ok(first),
    }
}

/// A person, with what their active account lets them do.
#[derive(Debug, Clone)]
pub struct Person {
    /// The email the SSO proxy passed.
    pub email: String,
    /// The role of their one active admin account, if any.
    pub role: Option<String>,
    /// Whether they may change rules, manual admins and held files.
    pub may_change: bool,
    /// The email they are audited as: their account's as stored, else the one passed in
    /// lower case (as sign-ins are matched). Audited as the proxy spelled it, one person's
    /// actions had read as two people's (`Boss@ACME.example` and `boss@acme.example`).
    pub audited_as: String,
}

impl Person {
    /// The engine's name for them (audited by email).
    pub fn caller(&self) -> Caller {
        Caller::Person(self.audited_as.clone())
    }
}

/// Who may read the API.
#[derive(Debug, Clone)]
pub enum Who {
    /// A person who may look.
    Person(Person),
    /// A program holding the API token of this name (read-only).
    Token(String),
}

impl Who {
    /// The engine's name for the asker (tokens read as `token:NAME`).
    pub fn caller(&self) -> Caller {
        match self {
            Who::Person(p) => p.caller(),
            Who::Token(name) => Caller::Person(format!("token:{name}")),
        }
    }
}

impl WebState {
    /// The person behind `email`, looked up in the email index through the engine (a read:
    /// it does not wait for a file being processed); 403 when they may not look.
    pub async fn person(&self, email: String) -> Result<Person, Denied> {
        let caller = Caller::Person(email.clone());
        let request = Request::AuthCheck {
            email: email.clone(),
        };
        let answer = self
            .engine
            .ask_as(request, caller, None, Output::Json)
            .await
            .response;
        let role = match answer.exit {
            exit::OK => answer.json["role"].as_str().map(str::to_string),
            exit::NO => None,
            _ => {
                tracing::error!("looking up {email}: {}", answer.text);
                return Err(Denied::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the accounts cannot be read just now; try again (the daemon's log says why)",
                ));
            }
        };
        let web = &self.cfg.web;
        if !web.may_look(&email, role.as_deref()) {
            return Err(Denied::forbidden(format!(
                "{email} has no active admin account and is not in web.org_admins: nothing to show"
            )));
        }
        let may_change = web.may_change(&email, role.as_deref());
        let audited_as = match (role.is_some(), answer.json["email"].as_str()) {
            (true, Some(stored)) => stored.to_string(),
            _ => crate::core::columns::fold_value(&email),
        };
        Ok(Person {
            email,
            role,
            may_change,
            audited_as,
        })
    }

    /// Who is asking: a token listed in `web.api_tokens_file`, or a person who may look.
    pub async fn who(&self, parts: &Parts) -> Result<Who, Denied> {
        match claim(&self.cfg.web, &parts.headers, peer(parts))? {
            Claim::Token(token) => self.token(&token, peer(parts)).map(Who::Token),
            Claim::Email(email) => self.person(email).await.map(Who::Person),
        }
    }

    /// The name of the API token `token` sent from `peer`; 401 when it is not listed.
    pub fn token(&self, token: &str, peer: Option<IpAddr>) -> Result<String, Denied> {
        let Some(path) = &self.cfg.web.api_tokens_file else {
            return Err(Denied::unauthorized(
                "API tokens are not configured (web.api_tokens_file)",
            ));
        };
        // A few lines, read each time so `autoprov token add` needs no restart.
        match super::tokens::check(path, token) {
            Ok(Some(name)) => Ok(name),
            Ok(None) => {
                super::refusals::UNKNOWN_TOKEN.warn(peer, "unknown API token refused");
                Err(Denied::unauthorized("unknown API token"))
            }
            Err(e) => {
                super::refusals::TOKENS_FILE.warn(peer, &format!("{e:#}"));
                Err(Denied::unauthorized(
                    "API tokens cannot be checked just now (the daemon's log says why)",
                ))
            }
        }
    }
}

/// The peer's address, when the server recorded it.
pub fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// An API reader: a listed token, or a person who may look.
#[derive(Debug, Clone)]
pub struct Reader(pub Who);

impl FromRequestParts<Arc<WebState>> for Reader {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<WebState>) -> Result<Self, Denied> {
        state.who(parts).await.map(Reader)
    }
}

/// A person who may look, for pages: with the CSRF token their forms carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Who they are and whether they may change.
    pub person: Person,
    /// The value of the forms' `csrf` field.
    pub csrf: String,
}

impl FromRequestParts<Arc<WebState>> for Viewer {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<WebState>) -> Result<Self, Denied> {
        match state.who(parts).await? {
            Who::Person(person) => Ok(Viewer {
                csrf: state.csrf.token(&person.email),
                person,
            }),
            Who::Token(_) => Err(Denied::forbidden(
                "API tokens are for /api/v1/ only; pages are for people signed in through SSO",
            )),
        }
    }
}

/// A form posted by a person who may change: signed in, from this site (`Origin`,
/// `Sec-Fetch-Site`), carrying their CSRF token in the field `csrf`.
#[derive(Debug, Clone)]
pub struct Change<T> {
    /// Who posted it.
    pub person: Person,
    /// Whether a browser posted it (`Accept: text/html`): a refusal is then a page.
    pub html: bool,
    /// The form's other fields.
    pub form: T,
}

#[derive(Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

/// The host the browser addressed: `X-Forwarded-Host` from a trusted proxy, else `Host`. A
/// header given twice is not believed: with `X-Forwarded-Host` so, `Host` is compared (a
/// form is then refused unless the proxy passes the browser's host on).
fn addressed_host(web: &Web, parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        let value = only_value(&parts.headers, name).ok().flatten();
        value.and_then(|v| v.to_str().ok()).map(str::to_string)
    };
    let forwarded = peer(parts)
        .filter(|p| web.trusts(*p))
        .and_then(|_| header("x-forwarded-host"));
    forwarded
        .or_else(|| header("host"))
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
}

impl<T: DeserializeOwned + Send> FromRequest<Arc<WebState>> for Change<T> {
    type Rejection = Denied;

    async fn from_request(
        req: axum::extract::Request,
        state: &Arc<WebState>,
    ) -> Result<Self, Denied> {
        // Each refused form gets the log line of a change refused, with who sent it (an
        // attempt without the right is what a security team most wants to see).
        // The path quoted as Rust writes strings (control and format characters escaped).
        let form = format!("web form {:?}", req.uri().path());
        let html = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        let mut who = None;
        let read = Change::read(req, state, &mut who)
            .await
            .map_err(|denied| denied.for_browser(html));
        if let (Err(denied), Some(who)) = (&read, who)
            && denied.status == StatusCode::FORBIDDEN
        {
            crate::api::log_change(&form, &who, exit::REFUSED);
        }
        read
    }
}

impl<T: DeserializeOwned + Send> Change<T> {
    /// The change a form posts, from a person who may change; `who` is the person who sent
    /// it, once known. A bearer token is refused unread, unlogged: anyone can send one (an
    /// unknown token's reads are logged, throttled, where tokens are checked).
    async fn read(
        req: axum::extract::Request,
        state: &Arc<WebState>,
        who: &mut Option<String>,
    ) -> Result<Self, Denied> {
        let (parts, body) = req.into_parts();
        let email = match claim(&state.cfg.web, &parts.headers, peer(&parts))? {
            Claim::Token(_) => {
                return Err(Denied::forbidden(
                    "refused: API tokens may only read; changes are made by a person signed in through SSO",
                ));
            }
            Claim::Email(email) => email,
        };
        *who = Some(email.clone());
        let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let html = text(header::ACCEPT.as_str()).is_some_and(|a| a.contains("text/html"));
        let host = addressed_host(&state.cfg.web, &parts);
        if let Some(reason) = csrf::cross_site(
            text(header::ORIGIN.as_str()),
            text("sec-fetch-site"),
            host.as_deref(),
        ) {
            return Err(Denied::forbidden(reason));
        }
        let person = state.person(email).await?;
        // Refused before the body is read: a person who may only look cannot hold a
        // connection open with a form that never ends.
        if !person.may_change {
            return Err(Denied::forbidden(
                crate::api::person_refusal(&person.email).text,
            ));
        }
        let request = axum::extract::Request::from_parts(parts, body);
        // The body within the time its head had (the connection's own timeout covers only
        // the head): 128 forms sent a byte a minute would have kept every other request,
        // `/healthz` too, waiting for a free connection.
        let form = axum::Form::<WithCsrf<T>>::from_request(request, state);
        let posted = match tokio::time::timeout(super::conns::HEADER_READ, form).await {
            Ok(Ok(axum::Form(posted))) => posted,
            // 400 whatever axum would say (415, 422): a form that cannot be read is a usage
            // error, as the README's table of statuses has it.
            Ok(Err(rejection)) => {
                return Err(Denied::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the form's fields could not be read: {}",
                        rejection.body_text()
                    ),
                ));
            }
            Err(_) => {
                return Err(Denied::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the form did not arrive within {} s",
                        super::conns::HEADER_READ.as_secs()
                    ),
                ));
            }
        };
        if !state.csrf.verify(&person.email, &posted.csrf) {
            return Err(Denied::forbidden(
                "refused: the form's CSRF token is missing or not yours; reload the page and send the form again",
            ));
        }
        Ok(Change {
            person,
            html,
            form: posted.form,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::web::parse_cidr;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    /// A proxy that adds its header after the client's gives it twice: refused, whichever
    /// comes first, and so is a second Authorization header.
    #[test]
    fn a_header_given_twice_is_refused() {
        let web = Web::default();
        let twice = headers(&[
            ("X-Forwarded-Email", "it-lead@acme.example"),
            ("X-Forwarded-Email", "me@acme.example"),
        ]);
        let d = claim(&web, &twice, ip("127.0.0.1")).unwrap_err();
        assert_eq!(d.status, StatusCode::UNAUTHORIZED);
        assert!(d.message.contains("more than once"), "{}", d.message);
        let tokens = headers(&[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]);
        assert_eq!(
            claim(&web, &tokens, None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let once = headers(&[("X-Forwarded-Email", "me@acme.example")]);
        assert!(claim(&web, &once, ip("127.0.0.1")).is_ok());
    }

    /// `X-Forwarded-Host` is believed from a trusted proxy when given once; given twice,
    /// not (the `Host` header is compared instead).
    #[test]
    fn the_forwarded_host_given_twice_is_not_believed() {
        let parts = |hosts: &[&str]| {
            let mut request = axum::http::Request::builder().header("host", "127.0.0.1:8080");
            for h in hosts {
                request = request.header("x-forwarded-host", *h);
            }
            let (mut parts, ()) = request.body(()).unwrap().into_parts();
            let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
            parts.extensions.insert(ConnectInfo(peer));
            parts
        };
        let web = Web::default();
        assert_eq!(
            addressed_host(&web, &parts(&["admin.acme.example"])).as_deref(),
            Some("admin.acme.example")
        );
        assert_eq!(
            addressed_host(&web, &parts(&["evil.example", "admin.acme.example"])).as_deref(),
            Some("127.0.0.1:8080")
        );
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// The header is believed only on a request addressed to an IP address, `localhost` or
    /// a name of `web.allowed_hosts`: a page of another site whose name was pointed at
    /// 127.0.0.1 (DNS rebinding) had been believed from loopback, and acted as anyone.
    #[test]
    fn the_header_counts_only_on_a_request_addressed_by_an_allowed_name() {
        let web = Web {
            allowed_hosts: vec![
                "autoprov.acme.example".into(),
                "*.admin.acme.example".into(),
            ],
            ..Web::default()
        };
        let addressed = |host: &str| {
            let h = headers(&[("Host", host), ("X-Forwarded-Email", "lead@acme.example")]);
            claim(&web, &h, ip("127.0.0.1"))
        };
        for host in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "10.0.0.5:8080",
            "localhost:8080",
            "a.localhost",
            "AutoProv.Acme.Example",
            "autoprov.acme.example.:443",
            "eu.admin.acme.example",
        ] {
            assert_eq!(
                addressed(host).unwrap(),
                Claim::Email("lead@acme.example".into()),
                "{host}"
            );
        }
        for host in [
            "evil.example:8080",
            "autoprov.acme.example.evil.example",
            "admin.acme.example",
            "xadmin.acme.example",
            "localhost.evil.example",
        ] {
            let d = addressed(host).unwrap_err();
            assert_eq!(d.status, StatusCode::UNAUTHORIZED, "{host}");
            assert!(
                d.message.contains("not in web.allowed_hosts"),
                "{}",
                d.message
            );
        }
        // Host given twice: refused, whatever its first value (it alone had been looked at).
        let twice = headers(&[
            ("Host", "127.0.0.1:8080"),
            ("Host", "evil.example"),
            ("X-Forwarded-Email", "lead@acme.example"),
        ]);
        let d = claim(&web, &twice, ip("127.0.0.1")).unwrap_err();
        assert!(
            d.message.contains("gives its Host header twice"),
            "{}",
            d.message
        );
        // With none listed, a name is refused and an address is not.
        let none = Web::default();
        let h = |host: &str| headers(&[("Host", host), ("X-Forwarded-Email", "lead@acme.example")]);
        assert!(claim(&none, &h("autoprov.acme.example"), ip("127.0.0.1")).is_err());
        assert!(claim(&none, &h("127.0.0.1:8080"), ip("127.0.0.1")).is_ok());
        // A token is not the header's: its request may be addressed by any name.
        let token = headers(&[("Host", "evil.example"), ("Authorization", "Bearer ap_1")]);
        assert_eq!(
            claim(&none, &token, ip("127.0.0.1")).unwrap(),
            Claim::Token("ap_1".into())
        );
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let web = Web {
            trusted_proxies: vec![parse_cidr("10.0.0.0/24").unwrap()],
            ..Web::default()
        };
        let h = headers(&[("X-Forwarded-Email", "a@acme.example")]);
        assert_eq!(
            claim(&web, &h, ip("10.0.0.9")).unwrap(),
            Claim::Email("a@acme.example".into())
        );
        for peer in [ip("10.0.1.9"), ip("127.0.0.1"), None] {
            let d = claim(&web, &h, peer).unwrap_err();
            assert_eq!(d.status, StatusCode::UNAUTHORIZED, "{peer:?}");
            assert!(d.message.contains("web.trusted_proxies"), "{}", d.message);
        }
        // Without the header, or with something else in it.
        let d = claim(&web, &HeaderMap::new(), ip("10.0.0.9")).unwrap_err();
        assert_eq!(d.status, StatusCode::UNAUTHORIZED);
        let h = headers(&[("X-Forwarded-Email", "alice")]);
        assert_eq!(
            claim(&web, &h, ip("10.0.0.9")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn the_configured_header_is_read_and_no_other() {
        let web = Web {
            user_header: "X-Auth-Request-Email".into(),
            ..Web::default()
        };
        let h = headers(&[("X-Forwarded-Email", "a@acme.example")]);
        assert!(claim(&web, &h, ip("127.0.0.1")).is_err());
        let h = headers(&[("x-auth-request-email", "b@acme.example")]);
        assert_eq!(
            claim(&web, &h, ip("127.0.0.1")).unwrap(),
            Claim::Email("b@acme.example".into())
        );
    }

    /// An SSO header whose address reads as another (the Kelvin sign for a `k`), or has a
    /// space beyond ASCII around it, signs nobody in: each had been taken as kim@…
    #[test]
    fn a_header_address_that_reads_as_another_signs_nobody_in() {
        let web = Web::default();
        for email in [
            "\u{212a}im@acme.example",
            "\u{3000}kim@acme.example\u{3000}",
        ] {
            let h = headers(&[("X-Forwarded-Email", email)]);
            let denied = claim(&web, &h, ip("127.0.0.1")).unwrap_err();
            assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{email:?}");
        }
        let h = headers(&[("X-Forwarded-Email", " kim@acme.example ")]);
        assert_eq!(
            claim(&web, &h, ip("127.0.0.1")).unwrap(),
            Claim::Email("kim@acme.example".into())
        );
    }

    #[test]
    fn bearer_tokens_and_the_dev_user() {
        let web = Web::default();
        let h = headers(&[("Authorization", "Bearer ap_123")]);
        assert_eq!(
            claim(&web, &h, None).unwrap(),
            Claim::Token("ap_123".into())
        );
        let h = headers(&[("Authorization", "bearer  ap_456 ")]);
        assert_eq!(
            claim(&web, &h, None).unwrap(),
            Claim::Token("ap_456".into()),
            "the scheme in any case"
        );
        let h = headers(&[("Authorization", "Basic abc")]);
        assert_eq!(
            claim(&web, &h, ip("127.0.0.1")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        // A trusted proxy's own Authorization beside the person's header: the person.
        let h = headers(&[
            ("Authorization", "Bearer eyJhbGciOi.id-token.sig"),
            ("X-Forwarded-Email", "a@acme.example"),
        ]);
        assert_eq!(
            claim(&web, &h, ip("127.0.0.1")).unwrap(),
            Claim::Email("a@acme.example".into())
        );
        // From elsewhere, the header is not believed and the bearer value is a token.
        assert_eq!(
            claim(&web, &h, ip("10.1.1.1")).unwrap(),
            Claim::Token("eyJhbGciOi.id-token.sig".into())
        );
        let h = headers(&[("X-Forwarded-Email", "jürgen@acme.example")]);
        assert_eq!(
            claim(&web, &h, ip("127.0.0.1")).unwrap(),
            Claim::Email("jürgen@acme.example".into()),
            "a non-ASCII address"
        );
        let dev = Web {
            dev_user: Some("me@example.com".into()),
            ..Web::default()
        };
        // Every request is the dev user, whatever the peer or header says.
        let h = headers(&[("X-Forwarded-Email", "other@acme.example")]);
        assert_eq!(
            claim(&dev, &h, ip("10.9.9.9")).unwrap(),
            Claim::Email("me@example.com".into())
        );
        assert_eq!(
            claim(&dev, &HeaderMap::new(), None).unwrap(),
            Claim::Email("me@example.com".into())
        );
        let twice = headers(&[
            ("X-Forwarded-Email", "a@acme.example"),
            ("X-Forwarded-Email", "b@acme.example"),
        ]);
        assert_eq!(
            claim(&dev, &twice, None).unwrap(),
            Claim::Email("me@example.com".into())
        );
        // Addressed by a loopback name or address only (not a rebound name of another site).
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "app.localhost",
            "LOCALHOST",
        ] {
            let h = headers(&[("Host", host)]);
            assert_eq!(
                claim(&dev, &h, ip("127.0.0.1")).unwrap(),
                Claim::Email("me@example.com".into()),
                "{host}"
            );
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:8080",
        ] {
            let h = headers(&[("Host", host)]);
            let denied = claim(&dev, &h, ip("127.0.0.1")).unwrap_err();
            assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{host}");
        }
    }
}
