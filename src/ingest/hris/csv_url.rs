//! `csv_url`: any HTTPS URL that answers with a CSV export. The bytes are stored exactly as
//! received (streamed to disk), so every rule of the roster file (SPEC §1) applies unchanged.

use super::http::{FetchError, Http, Sink, shown};
use crate::config::hris::{self, Secret, read_secret};
use anyhow::Result;
use reqwest::header::ACCEPT;

/// How the request is signed in.
enum Auth {
    /// No credentials (e.g. a pre-signed link).
    None,
    /// `Authorization: Bearer`.
    Bearer(Secret),
    /// HTTP Basic.
    Basic(String, Secret),
}

/// The csv_url provider, credentials loaded.
pub struct CsvUrl {
    url: String,
    auth: Auth,
}

impl CsvUrl {
    /// From the config; reads the credential file.
    pub fn new(c: &hris::CsvUrl) -> Result<CsvUrl> {
        let auth = if !c.bearer_token_file.as_os_str().is_empty() {
            Auth::Bearer(read_secret(
                "source.hris.csv_url.bearer_token_file",
                &c.bearer_token_file,
            )?)
        } else if !c.username.trim().is_empty() {
            Auth::Basic(
                c.username.trim().to_string(),
                read_secret("source.hris.csv_url.password_file", &c.password_file)?,
            )
        } else {
            Auth::None
        };
        Ok(CsvUrl {
            url: c.url.trim().to_string(),
            auth,
        })
    }

    /// Streams the export into `sink` as received.
    pub async fn download(&self, http: &Http, sink: &mut Sink) -> Result<(), FetchError> {
        let make = || {
            let request = http
                .client()
                .get(&self.url)
                .header(ACCEPT, "text/csv, */*;q=0.5");
            match &self.auth {
                Auth::None => request,
                Auth::Bearer(token) => request.bearer_auth(token.expose()),
                Auth::Basic(user, password) => request.basic_auth(user, Some(password.expose())),
            }
        };
        let what = format!("the CSV export ({})", shown(&self.url));
        http.fetch(&what, &make, sink).await
    }
}
