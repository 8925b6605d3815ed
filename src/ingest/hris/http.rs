//! The one HTTPS client of the HRIS source: system roots plus `ca_file`, a 10 s connect
//! timeout, `timeout` per request (to the last byte of the answer), answers capped at
//! `roster.max_bytes` while they stream in, and the retry policy of SPEC §10.

use crate::config::hris::Hris;
use anyhow::{Result, bail};
use reqwest::{Client, RequestBuilder, StatusCode, header};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Time allowed to open a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait after a 5xx or a network error; doubled after each.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Why a fetch failed. Messages name what was asked and never carry a credential.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// 401 or 403 (or a refused token grant): never retried.
    #[error(
        "credentials refused ({what} answered HTTP {status}{said}); check the credential files"
    )]
    CredentialsRefused {
        /// Which request.
        what: String,
        /// The status code.
        status: u16,
        /// What the vendor said why, as in [`FetchError::Status`].
        said: String,
    },
    /// Another status that is not a success.
    #[error("{what} answered HTTP {status}{said}")]
    Status {
        /// Which request.
        what: String,
        /// The status code.
        status: u16,
        /// What the vendor said why, in a header its errors carry ([`Said`]), shown as
        /// `; it says "…"`; empty when it said nothing or was not asked.
        said: String,
    },
    /// The answer is larger than `roster.max_bytes`.
    #[error("the answer of {what} is larger than roster.max_bytes = {max} bytes; abandoned")]
    TooLarge {
        /// Which request.
        what: String,
        /// The limit.
        max: u64,
    },
    /// No complete answer within `source.hris.timeout`.
    #[error("{what}: no complete answer within source.hris.timeout = {}", humantime::format_duration(*timeout))]
    Timeout {
        /// Which request.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// No connection (TCP and TLS) within [`CONNECT_TIMEOUT`]: a host that does not
    /// answer, a firewall that drops, a proxy in the way. Told apart from `Timeout`, whose
    /// message had sent people to raise `source.hris.timeout`, which cannot help.
    #[error("{what}: could not connect (TCP and TLS) within {}: is the host up and reachable from here (firewall, proxy)?", humantime::format_duration(*within))]
    ConnectTimeout {
        /// Which request.
        what: String,
        /// The connect timeout: 10 s, or `source.hris.timeout` when shorter.
        within: Duration,
    },
    /// Connecting or reading failed.
    #[error("{what}: {detail}")]
    Network {
        /// Which request.
        what: String,
        /// What went wrong (the error's chain).
        detail: String,
    },
    /// The answer arrived but is not what the vendor documents.
    #[error("{0}")]
    Invalid(String),
    /// Writing the fetched roster locally failed.
    #[error("writing {path}: {detail}")]
    Local {
        /// The file.
        path: String,
        /// The I/O error.
        detail: String,
    },
}

/// Where an answer's body goes: memory (JSON to convert) or a file (bytes kept as received).
pub enum Sink {
    /// Kept in memory.
    Memory(Vec<u8>),
    /// Written to this file (emptied again before a retry).
    File(tokio::fs::File, String),
}

impl Sink {
    /// What a memory sink holds (empty for a file).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Sink::Memory(v) => v,
            Sink::File(..) => Vec::new(),
        }
    }

    /// The file a file sink writes.
    pub fn into_file(self) -> Option<tokio::fs::File> {
        match self {
            Sink::Memory(_) => None,
            Sink::File(f, _) => Some(f),
        }
    }

    async fn reset(&mut self) -> Result<(), FetchError> {
        match self {
            Sink::Memory(v) => v.clear(),
            Sink::File(f, path) => {
                let local = |e: std::io::Error| FetchError::Local {
                    path: path.clone(),
                    detail: e.to_string(),
                };
                f.set_len(0).await.map_err(local)?;
                f.rewind().await.map_err(local)?;
            }
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        match self {
            Sink::Memory(v) => v.extend_from_slice(bytes),
            Sink::File(f, path) => f.write_all(bytes).await.map_err(|e| FetchError::Local {
                path: path.clone(),
                detail: e.to_string(),
            })?,
        }
        Ok(())
    }
}

/// What one attempt came to when it did not succeed.
enum Failed {
    /// Give up.
    Final(FetchError),
    /// Try again (when retries are left), after `after` or the back-off.
    Again(FetchError, Option<Duration>),
}

/// Where a vendor says why it refused a request: a header of its error answers
/// (BambooHR's `X-BambooHR-Error-Message`, which names a field it does not know), shown
/// after the status, its characters escaped and cut at [`SAID_CHARS`]: without it a typo in
/// `source.hris.fields` had read as a bare 400. Not shown when it repeats part of the
/// credential ([`repeats`]).
pub struct Said<'a> {
    /// The header's name.
    pub header: &'static str,
    /// The request's credential (BambooHR's API key, sent as the Basic user `key:x`).
    pub secret: &'a str,
}

/// How long a run of the credential (or of its Basic encoding) a vendor's message may not
/// repeat: one blanked only where it was written whole had shown it in another case, cut,
/// split, percent-encoded or as the request's own `Authorization` value.
const SECRET_RUN: usize = 8;

/// Whether `text` repeats, in any letter case, a run of [`SECRET_RUN`] characters of
/// `secret` or of its Basic encoding (`secret:x` in base64), or all of a shorter one.
fn repeats(text: &str, secret: &str) -> bool {
    use base64::Engine;
    if secret.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{secret}:x"));
    [secret.to_lowercase(), basic.to_lowercase()]
        .iter()
        .any(|s| {
            let chars: Vec<char> = s.chars().collect();
            chars
                .windows(SECRET_RUN.min(chars.len()))
                .any(|run| text.contains(&run.iter().collect::<String>()))
        })
}

/// At most this many characters of what a vendor said are shown.
const SAID_CHARS: usize = 300;

impl Said<'_> {
    /// `; it says "…"`, or empty when the answer has no such header.
    fn of(&self, headers: &header::HeaderMap) -> String {
        let Some(value) = headers.get(self.header) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if repeats(&text, self.secret) {
            return "; what it says repeats part of the credential, so it is not shown".into();
        }
        let mut shown: String = text.chars().take(SAID_CHARS).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        match shown.trim() {
            "" => String::new(),
            said => format!("; it says {}", crate::core::model::quoted(said)),
        }
    }
}

/// The HTTPS client with the retry policy.
#[derive(Clone)]
pub struct Http {
    client: Client,
    strict: Client,
    retries: u32,
    max_bytes: u64,
    timeout: Duration,
}

/// The certificates of `source.hris.ca_file` (none when it is not set): read at the
/// daemon's start, and by `status` (the config check; not a secret file).
pub fn ca_certs(hris: &Hris) -> Result<Vec<reqwest::Certificate>> {
    if hris.ca_file.as_os_str().is_empty() {
        return Ok(Vec::new());
    }
    let key = "source.hris.ca_file";
    let path = hris.ca_file.display();
    let pem = std::fs::read(&hris.ca_file)
        .map_err(|e| anyhow::anyhow!("{key} = {path}: cannot read it ({e})"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("{key} = {path}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        bail!("{key} = {path}: holds no PEM certificate");
    }
    Ok(certs)
}

/// How long a connection (TCP and TLS) may take: [`CONNECT_TIMEOUT`], or, under a shorter
/// `source.hris.timeout`, nine tenths of it, so that it fires first: the whole fetch's
/// limit firing first had told a host that never answered as an answer that did not
/// complete in time.
fn connect_within(timeout: Duration) -> Duration {
    match timeout > CONNECT_TIMEOUT {
        true => CONNECT_TIMEOUT,
        false => timeout.mul_f64(0.9),
    }
}

impl Http {
    /// Builds the client from `[source.hris]` (answers capped at `max_bytes`, i.e.
    /// `roster.max_bytes`): HTTPS only, the system's roots plus `ca_file`. Errors are
    /// config errors naming the key.
    pub fn new(hris: &Hris, max_bytes: u64) -> Result<Http> {
        let certs = ca_certs(hris)?;
        let build = |redirects: reqwest::redirect::Policy| {
            let mut builder = Client::builder()
                .https_only(true)
                .redirect(redirects)
                // A redirect's Referer would carry the URL's query (a pre-signed link's
                // signature) to the host redirected to.
                .referer(false)
                .connect_timeout(connect_within(hris.timeout))
                .timeout(hris.timeout)
                .user_agent(concat!("autoprov/", env!("CARGO_PKG_VERSION")));
            if !certs.is_empty() {
                builder = builder.tls_certs_merge(certs.clone());
            }
            builder
                .build()
                .map_err(|e| anyhow::anyhow!("setting up the HTTPS client: {}", chain(&e)))
        };
        let client = build(credentials_kept_home())?;
        let strict = build(same_origin_redirects())?;
        Ok(Http {
            client,
            strict,
            retries: hris.retries,
            max_bytes,
            timeout: hris.timeout,
        })
    }

    /// The underlying client, to build requests with. It follows redirects to other hosts
    /// (an export behind a download link), without the request's credentials: reqwest drops
    /// `Authorization` and cookies on a hop to another host.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client for a request whose body holds secrets (Workday's token grant): it
    /// follows redirects only within the origin asked, since a 307 or 308 resends the body.
    pub fn client_for_secret_body(&self) -> &Client {
        &self.strict
    }

    /// Sends the request `make` builds, retrying as SPEC §10 says, and streams a successful
    /// answer into `sink` (emptied before each attempt). `what` names the request in messages;
    /// `said` is where the vendor says why it refused one.
    pub async fn fetch(
        &self,
        what: &str,
        make: &(dyn Fn() -> RequestBuilder + Send + Sync),
        sink: &mut Sink,
        said: Option<&Said<'_>>,
    ) -> Result<(), FetchError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let (error, after) = match self.attempt(what, make(), sink, said).await {
                Ok(()) => return Ok(()),
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Again(e, after)) => (e, after),
            };
            if attempt >= self.retries {
                return Err(error);
            }
            attempt += 1;
            let wait = after.unwrap_or_else(|| {
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            });
            tracing::warn!(
                "{error}; retry {attempt} of {} in {}",
                self.retries,
                humantime::format_duration(wait)
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        what: &str,
        request: RequestBuilder,
        sink: &mut Sink,
        said: Option<&Said<'_>>,
    ) -> Result<(), Failed> {
        let (client, request) = request.build_split();
        let asked = request.as_ref().map(|r| r.url().origin()).ok();
        let sent = async {
            client
                .execute(request.map_err(|e| (e, true))?)
                .await
                .map_err(|e| (e, false))
        };
        let mut response =
            sent.await.map_err(
                |(e, built)| match built || e.is_redirect() || e.is_builder() {
                    // A redirect refused (another host, too many, a scheme other than HTTPS) is
                    // refused again: not retried.
                    true => Failed::Final(self.network(what, e)),
                    false => Failed::Again(self.network(what, e), None),
                },
            )?;
        if !response.status().is_success() {
            let moved = asked.is_some_and(|origin| origin != response.url().origin());
            return Err(refused(what, moved, &response, said));
        }
        if !framed(&response) {
            return Err(Failed::Final(FetchError::Network {
                what: what.to_string(),
                detail: "the answer has neither a Content-Length nor chunked encoding, so its \
                         end cannot be told from a cut connection; refused (a roster cut short \
                         would deactivate everyone after the cut)"
                    .to_string(),
            }));
        }
        let too_large = || {
            Failed::Final(FetchError::TooLarge {
                what: what.to_string(),
                max: self.max_bytes,
            })
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(too_large());
        }
        sink.reset().await.map_err(Failed::Final)?;
        let mut received: u64 = 0;
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| Failed::Again(self.network(what, e), None))?;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            received += chunk.len() as u64;
            if received > self.max_bytes {
                return Err(too_large());
            }
            sink.write(&chunk).await.map_err(Failed::Final)?;
        }
    }

    /// The error of a request that got no (complete) answer. Without its URL: a URL may hold
    /// a credential (a pre-signed link's signature), and `what` names the request.
    fn network(&self, what: &str, e: reqwest::Error) -> FetchError {
        let e = e.without_url();
        if e.is_connect() && e.is_timeout() {
            return FetchError::ConnectTimeout {
                what: what.to_string(),
                within: connect_within(self.timeout),
            };
        }
        if e.is_timeout() {
            return FetchError::Timeout {
                what: what.to_string(),
                timeout: self.timeout,
            };
        }
        FetchError::Network {
            what: what.to_string(),
            detail: chain(&e),
        }
    }
}

/// The failure an answer that is not a success tells: retried or not as SPEC §10 says,
/// with what the vendor said why (`said`); `moved`: a redirect led to another origin.
fn refused(
    what: &str,
    moved: bool,
    response: &reqwest::Response,
    said: Option<&Said<'_>>,
) -> Failed {
    let status = response.status();
    // Another host a redirect led to is named, and its 401 is not told as "credentials
    // refused": reqwest sends it no credentials, and that 401 had sent admins to rotate a
    // key that works. (Within the configured host they are sent, and a refusal there is
    // theirs; a chain that went away and came back, sent none at the last hop, is not told
    // apart: reqwest does not say which way it went.)
    let what = match moved {
        true => format!(
            "{what}, redirected to {} (sent no credentials, as to any other host),",
            shown(response.url().as_str())
        ),
        false => what.to_string(),
    };
    // Only the configured host's answer is asked why (another host a redirect led to is
    // not the vendor).
    let said = match (said, moved) {
        (Some(said), false) => said.of(response.headers()),
        _ => String::new(),
    };
    let error = |status: StatusCode| FetchError::Status {
        what: what.clone(),
        status: status.as_u16(),
        said: said.clone(),
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if moved => Failed::Final(error(status)),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Failed::Final(FetchError::CredentialsRefused {
                what: what.to_string(),
                status: status.as_u16(),
                said: said.clone(),
            })
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            Failed::Again(error(status), retry_after(response.headers()))
        }
        s if s.is_server_error() => Failed::Again(error(s), None),
        s => Failed::Final(error(s)),
    }
}

/// Whether the end of `response`'s body will be known when it comes: HTTP/2 frames it, and
/// HTTP/1.x by a Content-Length or chunked encoding. An HTTP/1.x body without either ends
/// where the connection closes, which a connection cut cleanly (a TLS close) after a
/// proxy's or the exporter's failure looks the same as.
fn framed(response: &reqwest::Response) -> bool {
    // Chunked framing only when chunked is the last coding (RFC 9112 §6.3, as hyper reads
    // it): `chunked, gzip` ends where the connection closes.
    let chunked = || {
        let codings: Vec<String> = response
            .headers()
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        codings.last().is_some_and(|c| c == "chunked")
    };
    response.version() >= reqwest::Version::HTTP_2
        || response.headers().contains_key(header::CONTENT_LENGTH)
        || chunked()
}

/// How many redirects a request follows.
const MAX_REDIRECTS: usize = 10;

/// Redirects followed (at most [`MAX_REDIRECTS`]) but for one within another host after
/// the chain reached it, which is refused with an error that says so. reqwest (0.13, through
/// tower-http) starts each hop from the first request's headers and drops the credentials
/// only when the hop changes host: A → B → B had sent A's `Authorization` to B on the
/// second hop (a test saw it). Hops to yet another host, or back to the first, are followed:
/// the one drops the credentials, the other gives them to the host configured.
fn credentials_kept_home() -> reqwest::redirect::Policy {
    // A hop that changes host as reqwest tells it (scheme, host and port): the origin, as
    // the token grant's policy below compares.
    let same = |a: &reqwest::Url, b: &reqwest::Url| a.origin() == b.origin();
    reqwest::redirect::Policy::custom(move |attempt| {
        let (next, chain) = (attempt.url(), attempt.previous());
        let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
            return attempt.follow();
        };
        if chain.len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if same(next, last) && !same(next, first) {
            attempt.error("redirected again within another host, where the HTTP client would send the configured credentials; refused")
        } else {
            attempt.follow()
        }
    })
}

/// Redirects followed only within the origin (scheme, host and port) of the URL configured,
/// for [`Http::client_for_secret_body`]: a 307 or 308 resends the request's body, and
/// Workday's token grant carries the client secret and the refresh token there; a redirect
/// to another host is refused with an error that says so.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if first == Some(attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.error("redirected to another host, which is refused (only redirects within the configured host are followed)")
        }
    })
}

/// `url` as messages show it (see [`crate::config::hris::shown`]).
pub use crate::config::hris::shown;

/// An error and its causes, e.g. "error sending request: connection refused", each URL in
/// them [`shown`] as its origin: a cause may name the URL a redirect led to ("builder error
/// for url (http://…?X-Amz-Signature=…)"), which the outer error's `without_url` does not
/// reach, and these messages go to the log, `status`, `/healthz` and the webhook.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    urls_shown(&text)
}

/// `text` with each URL in it [`shown`] as its origin (one without an origin as "a URL"). A
/// URL runs from its scheme to the next space: a path or query may hold brackets and quotes
/// (`report(1).csv?X-Amz-Signature=…`), and an end taken at the first of them had shown
/// the signature after it. Punctuation that ends the text around it (`)`, `:`, `.`…) is
/// kept after the origin.
fn urls_shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+.-".contains(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = rest[at..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |i| at + i);
        let token = &rest[scheme..end];
        let url = token.trim_end_matches(|c: char| ")]}>.,;:'\"`".contains(c));
        out.push_str(&rest[..scheme]);
        match shown(url) {
            s if s == "the configured URL" => out.push_str("a URL"),
            s => out.push_str(&s),
        }
        out.push_str(&token[url.len()..]);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `Retry-After` as seconds or an HTTP date, at most 10 minutes; None when absent or unreadable.
pub fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(SystemTime::now()).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// `application/x-www-form-urlencoded` for `pairs` (the OAuth token request).
pub fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> header::HeaderMap {
        let mut h = header::HeaderMap::new();
        h.insert(header::RETRY_AFTER, value.parse().unwrap());
        h
    }

    /// What a vendor says is shown quoted on one line, cut, the credential blanked; an
    /// absent or blank header says nothing.
    #[test]
    fn what_a_vendor_says_is_shown_escaped_cut_and_without_the_secret() {
        let said = Said {
            header: "x-bamboohr-error-message",
            secret: "abc123SECRETkey456def",
        };
        let of = |value: &[u8]| {
            let mut h = header::HeaderMap::new();
            h.insert(said.header, header::HeaderValue::from_bytes(value).unwrap());
            said.of(&h)
        };
        assert_eq!(said.of(&header::HeaderMap::new()), "");
        assert_eq!(of(b"  "), "");
        assert_eq!(
            of(b"Invalid field\t\"x\""),
            "; it says \"Invalid field\\t\"\"x\"\"\""
        );
        // The key, or a run of it or of the Basic value sent, in any case: not shown.
        for repeated in [
            "Invalid key abc123SECRETkey456def",
            "b64 Basic YWJjMTIzU0VDUkVUa2V5NDU2ZGVmOng=",
            "upper ABC123SECRETKEY456DEF",
            "pct abc123%53ECRETkey456def",
            "partial abc123SECRETk",
            "split abc123SECRET key456def",
        ] {
            assert_eq!(
                of(repeated.as_bytes()),
                "; what it says repeats part of the credential, so it is not shown",
                "{repeated}"
            );
        }
        assert_eq!(of(b"caf\xe9"), "; it says \"caf\u{fffd}\"");
        let long = of("x".repeat(400).as_bytes());
        assert!(long.ends_with("x…\""), "{long}");
        assert_eq!(long.chars().filter(|&c| c == 'x').count(), SAID_CHARS);
    }

    /// Every URL in a message is shown as its origin, whatever its path holds: brackets and
    /// quotes in a path or query had ended it early, and the signature after them was
    /// shown. The text around it stays.
    #[test]
    fn urls_in_messages_are_shown_as_their_origin() {
        for (text, shown) in [
            (
                "builder error for url (http://127.0.0.1:22611/report(1).csv?X-Amz-Signature=S3CR3T): URL scheme is not allowed",
                "builder error for url (http://127.0.0.1:22611/…): URL scheme is not allowed",
            ),
            (
                "for url (https://h.example/it's/x?sig=S3CR3T).",
                "for url (https://h.example/…).",
            ),
            (
                "at https://user:S3CR3T@[::1]:8443/a \"b\" then ftp://x/S3CR3T, end",
                "at https://[::1]:8443/… \"b\" then ftp://x/…, end",
            ),
            ("é→https://h.example/S3CR3T", "é→https://h.example/…"),
            ("mailto-like x://S3CR3T here", "mailto-like a URL here"),
            ("no url here", "no url here"),
            ("https://h.example", "https://h.example"),
        ] {
            assert_eq!(urls_shown(text), shown, "{text}");
            assert!(!urls_shown(text).contains("S3CR3T"));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_capped_at_ten_minutes() {
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers("86400")), Some(MAX_RETRY_AFTER));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let wait = retry_after(&headers(&soon)).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(120));
        assert_eq!(retry_after(&headers(&past)), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(7200));
        assert_eq!(retry_after(&headers(&later)), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&header::HeaderMap::new()), None);
    }

    #[test]
    fn a_connection_may_take_ten_seconds_or_less_than_the_whole_fetch() {
        assert_eq!(connect_within(Duration::from_secs(300)), CONNECT_TIMEOUT);
        assert_eq!(
            connect_within(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
        assert_eq!(
            connect_within(Duration::from_secs(3)),
            Duration::from_millis(2700)
        );
    }

    /// A host that takes the connection but never completes TLS is told as a connection
    /// that did not come within the connect timeout: it had been told as "no complete
    /// answer within source.hris.timeout", sending people to raise a limit that cannot help.
    #[tokio::test]
    async fn a_connect_timeout_is_not_told_as_the_fetchs_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/export.csv", silent.local_addr().unwrap());
        let client = Client::builder()
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let http = Http {
            client: client.clone(),
            strict: client.clone(),
            retries: 0,
            max_bytes: 1,
            timeout: Duration::from_secs(60),
        };
        let e = client.get(&url).send().await.unwrap_err();
        let told = http.network("the CSV export", e).to_string();
        assert!(
            told.starts_with("the CSV export: could not connect (TCP and TLS) within 10s"),
            "{told}"
        );
        assert!(!told.contains("source.hris.timeout"), "{told}");
        drop(silent);
    }

    #[test]
    fn form_encoding_escapes_what_it_must() {
        assert_eq!(
            form_urlencoded(&[("grant_type", "refresh_token"), ("x", "a b&c=d/é")]),
            "grant_type=refresh_token&x=a+b%26c%3Dd%2F%C3%A9"
        );
    }
}
