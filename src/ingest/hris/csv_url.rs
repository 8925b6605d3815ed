//! `csv_url`: any HTTPS URL that answers with a CSV export. The bytes are stored exactly as
//! received (streamed to disk), so every rule of the roster file (SPEC §1) applies unchanged.

use super::guard::{Answers, ColumnGuard, GUARDED};
use super::http::{FetchError, Http, Sink, shown};
use crate::config::hris::{self, Secret, read_secret};
use crate::core::columns::canonical_key;
use crate::core::roster::{self, RosterOptions};
use anyhow::Result;
use reqwest::header::ACCEPT;
use std::path::{Path, PathBuf};

/// How much of an export's start is read for its header row.
const HEAD: u64 = 1 << 20;

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
    /// How the export's header is read, as a roster's is.
    options: RosterOptions,
    /// The optional canonical columns its exports have had.
    guard: ColumnGuard,
}

impl CsvUrl {
    /// From the config; reads the credential file. `options` reads an export's header;
    /// the guarded columns its exports have had are remembered in `remembered`.
    pub fn new(c: &hris::CsvUrl, options: RosterOptions, remembered: PathBuf) -> Result<CsvUrl> {
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
            options,
            guard: ColumnGuard::new(remembered, Answers::CsvExport),
        })
    }

    /// Fails when the export written to `path` lacks a guarded column (`manager_id`,
    /// `employment_status`) that earlier exports had ([`ColumnGuard`]): its bytes are
    /// stored as received, and a file without its status column would count every leaver
    /// as active. A header that cannot be read is the roster check's to reject.
    pub fn check_columns(&self, path: &Path) -> Result<(), FetchError> {
        let local = |e: std::io::Error| FetchError::Local {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        let head = crate::util::read_head(path, HEAD).map_err(local)?;
        let Some(keys) = roster::header_keys(&head, &self.options) else {
            return Ok(());
        };
        let has: Vec<&str> = GUARDED
            .into_iter()
            .filter(|c| keys.contains(&canonical_key(c)))
            .collect();
        self.guard.check(&has)
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
        http.fetch(&what, &make, sink, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_url(dir: &Path) -> CsvUrl {
        let c = hris::CsvUrl {
            url: "https://hr.example/export.csv".into(),
            bearer_token_file: PathBuf::new(),
            username: String::new(),
            password_file: PathBuf::new(),
        };
        CsvUrl::new(&c, RosterOptions::default(), dir.join("csv-url-columns")).unwrap()
    }

    /// An export that lost its status column (the HR system's export edited) is a valid
    /// roster that counts every leaver as active: the fetch fails instead, until the file
    /// remembering the columns is deleted. Aliases count (`Status` is employment_status).
    #[test]
    fn an_export_that_lost_its_status_or_manager_column_fails_the_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let c = csv_url(dir.path());
        let export = dir.path().join("export.csv");
        let write = |text: &str| std::fs::write(&export, text).unwrap();
        write("Employee ID;Work Email;Supervisor ID;Status\r\n1;a@x.io;;Active\r\n");
        c.check_columns(&export).unwrap();
        write("Employee ID,Work Email,Supervisor ID\n1,a@x.io,\n");
        let err = c.check_columns(&export).unwrap_err().to_string();
        assert!(err.contains("no employment_status column"), "{err}");
        assert!(err.contains("csv-url-columns"), "{err}");
        write("Employee ID,Work Email,Status\n1,a@x.io,Active\n");
        let err = c.check_columns(&export).unwrap_err().to_string();
        assert!(err.contains("no manager_id column"), "{err}");
        std::fs::remove_file(dir.path().join("csv-url-columns")).unwrap();
        c.check_columns(&export).unwrap();
        // A header that cannot be read is left to the roster check.
        write("");
        c.check_columns(&export).unwrap();
    }
}
