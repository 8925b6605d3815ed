//! A Workday custom report served as a web service (Report-as-a-Service):
//! `GET {report_url}?format=json` answers `{"Report_Entry": [{...}, ...]}` with the report's
//! own field names; a field that is empty in an entry is left out of it.
//!
//! Auth is HTTP Basic with an integration system user, or OAuth 2: a refresh-token grant
//! at the tenant's token endpoint before each fetch, then `Authorization: Bearer`.

use super::csv_out::{Record, parse, union_columns, unknown_statuses, write_csv};
use super::guard::{Answers, ColumnGuard, GUARDED};
use super::http::{FetchError, Http, Sink, form_urlencoded, shown};
use crate::config::hris::{self, Secret, WorkdayAuth, read_secret};
use crate::core::columns::{Columns, EMPLOYMENT_STATUS};
use anyhow::Result;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use std::path::PathBuf;

/// How requests are signed in.
enum Auth {
    /// HTTP Basic.
    Basic { username: String, password: Secret },
    /// Refresh-token grant, then a bearer token.
    Oauth {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        /// The configured refresh token, or the new one a token endpoint that rotates them
        /// gave since (RFC 6749 §6: the old one is then to be discarded).
        refresh_token: std::sync::Mutex<Secret>,
    },
}

/// The Workday provider, credentials loaded.
pub struct Workday {
    url: String,
    auth: Auth,
    columns: Columns,
    /// The optional canonical columns its answers have had.
    guard: ColumnGuard,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Report_Entry")]
    entries: Vec<Record>,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

impl Workday {
    /// From the config; reads the credential files. `columns` finds the canonical columns
    /// among the report's fields.
    pub fn new(w: &hris::Workday, columns: Columns, remembered: PathBuf) -> Result<Workday> {
        let mut url = reqwest::Url::parse(w.report_url.trim())?;
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "format")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("format", "json");
        let auth = match w.auth {
            WorkdayAuth::Basic => Auth::Basic {
                username: w.username.trim().to_string(),
                password: read_secret("source.hris.workday.password_file", &w.password_file)?,
            },
            WorkdayAuth::Oauth => Auth::Oauth {
                token_url: w.token_url.trim().to_string(),
                client_id: w.client_id.trim().to_string(),
                client_secret: read_secret(
                    "source.hris.workday.client_secret_file",
                    &w.client_secret_file,
                )?,
                refresh_token: std::sync::Mutex::new(read_secret(
                    "source.hris.workday.refresh_token_file",
                    &w.refresh_token_file,
                )?),
            },
        };
        Ok(Workday {
            url: url.to_string(),
            auth,
            columns,
            guard: ColumnGuard::new(remembered, Answers::Workday),
        })
    }

    /// Runs the report; the answer's bytes.
    pub async fn answer(&self, http: &Http) -> Result<Vec<u8>, FetchError> {
        if let Auth::Basic { .. } = self.auth {
            return self.report(http, None).await;
        }
        let token = self.access_token(http).await?;
        match self.report(http, Some(&token)).await {
            // The access token may have expired while the report's attempts waited (an hour
            // and more with Retry-After): a refusal is asked once more with a fresh one, so
            // that "credentials refused" means the credentials.
            Err(FetchError::CredentialsRefused { status: 401, .. }) => {
                let token = self.access_token(http).await?;
                self.report(http, Some(&token)).await
            }
            answer => answer,
        }
    }

    /// The report's request, signed with `bearer` or the basic credentials, with its retries.
    async fn report(&self, http: &Http, bearer: Option<&Secret>) -> Result<Vec<u8>, FetchError> {
        let make = || {
            let request = http
                .client()
                .get(&self.url)
                .header(ACCEPT, "application/json");
            match (&self.auth, bearer) {
                (_, Some(token)) => request.bearer_auth(token.expose()),
                (Auth::Basic { username, password }, None) => {
                    request.basic_auth(username, Some(password.expose()))
                }
                (Auth::Oauth { .. }, None) => unreachable!("a token was obtained"),
            }
        };
        let mut sink = Sink::Memory(Vec::new());
        let what = format!("the Workday report ({})", shown(&self.url));
        http.fetch(&what, &make, &mut sink, None).await?;
        Ok(sink.into_bytes())
    }

    /// The refresh-token grant (RFC 6749 §6, client credentials in the body).
    async fn access_token(&self, http: &Http) -> Result<Secret, FetchError> {
        let Auth::Oauth {
            token_url,
            client_id,
            client_secret,
            refresh_token,
        } = &self.auth
        else {
            unreachable!("only for oauth");
        };
        let sent = refresh_token
            .lock()
            .expect("refresh token")
            .expose()
            .to_string();
        let body = form_urlencoded(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &sent),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
        ]);
        let make = || {
            http.client_for_secret_body()
                .post(token_url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .body(body.clone())
        };
        let what = format!("Workday's token endpoint ({})", shown(token_url));
        let mut sink = Sink::Memory(Vec::new());
        match http.fetch(&what, &make, &mut sink, None).await {
            Ok(()) => {}
            // A refused grant is answered 400 (invalid_grant, invalid_client): not retried.
            Err(FetchError::Status {
                what,
                status: 400,
                said,
            }) => {
                return Err(FetchError::CredentialsRefused {
                    what,
                    status: 400,
                    said,
                });
            }
            Err(e) => return Err(e),
        }
        // Never serde's message: it could quote the token.
        let token: Token = serde_json::from_slice(&sink.into_bytes()).map_err(|_| {
            FetchError::Invalid(format!(
                "{what} did not answer with a JSON object holding an access_token"
            ))
        })?;
        // A new refresh token replaces the one sent (RFC 6749 §6), for this run: the next
        // grant had sent the old one, which such an endpoint refuses. It is not written
        // back to refresh_token_file (the daemon may not write its credentials), so the
        // warning says that a restart needs a new one there.
        if let Some(new) = token
            .refresh_token
            .filter(|new| !new.is_empty() && *new != sent)
        {
            tracing::warn!(
                "{what} answered with a new refresh token (it rotates them): autoprov uses it \
                 from now on, but cannot write it into source.hris.workday.refresh_token_file; \
                 after a restart the old one there is refused. Give the API client \
                 non-expiring refresh tokens (README, Workday)"
            );
            *refresh_token.lock().expect("refresh token") = Secret::from_fetched(new);
        }
        Ok(Secret::from_fetched(token.access_token))
    }

    /// The answer as the CSV of SPEC §10: columns are the union of the entries' fields.
    pub fn to_csv(&self, answer: &[u8]) -> Result<Vec<u8>, FetchError> {
        let answer: Answer = parse(
            answer,
            "the Workday report's answer",
            "{\"Report_Entry\": [{...}, ...]}",
        )?;
        if answer.entries.is_empty() {
            return Err(FetchError::Invalid(
                "the Workday report has no entries (Report_Entry is empty): check the report's filters and the integration system user's access".into(),
            ));
        }
        let columns = union_columns(&answer.entries, &self.columns);
        let has: Vec<&str> = GUARDED
            .into_iter()
            .filter(|c| columns.iter().any(|col| col.header == *c))
            .collect();
        self.guard.check(&has)?;
        // A status left out of some entries only (Workday leaves out a field that is empty
        // or that the integration user may not see): a leaver among them had been active
        // again, as BambooHR's answers are refused.
        if let Some(unknown) = unknown_statuses(&columns, &answer.entries) {
            let status = columns.iter().find(|c| c.header == EMPLOYMENT_STATUS);
            return Err(FetchError::Invalid(format!(
                "the Workday report has no value of field \"{}\" (the roster's \
                 {EMPLOYMENT_STATUS}) for {} of its {} entries, the first Report_Entry[{}] \
                 (id {}), its value {}: a leaver among them would count as active; give the \
                 integration system user access to it for every worker, and every worker a \
                 status in the report",
                status.map_or("status", |c| c.field.as_str()),
                unknown.count,
                answer.entries.len(),
                unknown.index,
                unknown.id,
                if unknown.left_out {
                    "left out"
                } else {
                    "null or blank"
                },
            )));
        }
        write_csv(&columns, &answer.entries, "Report_Entry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(report_url: &str) -> Workday {
        basic_in(report_url, &tempfile::tempdir().unwrap().keep())
    }

    /// [`basic`] remembering its columns in `dir`.
    fn basic_in(report_url: &str, dir: &std::path::Path) -> Workday {
        let pw = dir.join("pw");
        std::fs::write(&pw, "pw\n").unwrap();
        let w = hris::Workday {
            report_url: report_url.into(),
            auth: WorkdayAuth::Basic,
            username: "ISU@acme".into(),
            password_file: pw,
            token_url: String::new(),
            client_id: String::new(),
            client_secret_file: Default::default(),
            refresh_token_file: Default::default(),
        };
        Workday::new(&w, Columns::default(), dir.join("workday-columns")).unwrap()
    }

    #[test]
    fn format_json_is_asked_for_once() {
        assert_eq!(
            basic("https://wd/ccx/service/customreport2/acme/ISU/Roster").url,
            "https://wd/ccx/service/customreport2/acme/ISU/Roster?format=json"
        );
        assert_eq!(
            basic("https://wd/r?Effective=2026-01-01&format=csv").url,
            "https://wd/r?Effective=2026-01-01&format=json"
        );
    }

    #[test]
    fn an_empty_report_fails_the_fetch() {
        let err = basic("https://wd/r")
            .to_csv(br#"{"Report_Entry": []}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no entries"), "{err}");
    }

    /// A status left out of some entries only, or blank: a leaver among them would be
    /// active again.
    #[test]
    fn a_status_left_out_of_some_entries_fails_the_fetch() {
        let w = basic("https://wd/r");
        let some = br#"{"Report_Entry": [{"Employee_ID": "1", "Work_Email": "a@x.io", "Status": "Active"}, {"Employee_ID": "2", "Work_Email": "b@x.io"}, {"Employee_ID": "3", "Work_Email": "c@x.io", "Status": null}]}"#;
        let err = w.to_csv(some).unwrap_err().to_string();
        let first =
            "for 2 of its 3 entries, the first Report_Entry[1] (id \"2\"), its value left out";
        assert!(err.contains(first) && err.contains("\"Status\""), "{err}");
        let blank = br#"{"Report_Entry": [{"Employee_ID": "1", "Work_Email": "a@x.io", "Status": "Active"}, {"Employee_ID": 2, "Work_Email": "b@x.io", "Status": " \u200b"}]}"#;
        let err = w.to_csv(blank).unwrap_err().to_string();
        assert!(
            err.contains("Report_Entry[1] (id 2), its value null or blank"),
            "{err}"
        );
        // Every entry with a status, or none with one (no status column): taken.
        let every = br#"{"Report_Entry": [{"Employee_ID": "1", "Work_Email": "a@x.io", "Status": "Active"}, {"Employee_ID": "2", "Work_Email": "b@x.io", "Status": "Terminated"}]}"#;
        basic("https://wd/r").to_csv(every).unwrap();
        let none = br#"{"Report_Entry": [{"Employee_ID": "1", "Work_Email": "a@x.io"}]}"#;
        basic("https://wd/r").to_csv(none).unwrap();
    }

    /// A field the integration user may no longer see is left out of every entry: the
    /// roster would be valid and count every leaver as active. The fetch fails instead,
    /// until the file remembering the columns is deleted.
    #[test]
    fn a_status_or_manager_field_that_vanishes_fails_the_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let w = basic_in("https://wd/r", dir.path());
        let with = br#"{"Report_Entry": [{"Employee_ID": "1", "Work_Email": "a@x.io", "Manager_ID": "2", "Status": "Active"}, {"Employee_ID": "2", "Work_Email": "b@x.io", "Status": "Terminated"}]}"#;
        let without = br#"{"Report_Entry": [{"Employee_ID": "1", "Work_Email": "a@x.io", "Manager_ID": "2"}, {"Employee_ID": "2", "Work_Email": "b@x.io"}]}"#;
        // A first answer without the field is taken (nothing remembered yet).
        w.to_csv(without).unwrap();
        w.to_csv(with).unwrap();
        let err = w.to_csv(without).unwrap_err().to_string();
        assert!(err.contains("no employment_status field"), "{err}");
        assert!(err.contains("workday-columns"), "{err}");
        // Still refused at the next fetch, and by a new process (remembered on disk).
        let again = basic_in("https://wd/r", dir.path());
        assert!(again.to_csv(without).is_err());
        std::fs::remove_file(dir.path().join("workday-columns")).unwrap();
        again.to_csv(without).unwrap();
        // A file that cannot be read fails the fetch rather than letting a column go.
        std::fs::remove_file(dir.path().join("workday-columns")).unwrap();
        std::fs::create_dir(dir.path().join("workday-columns")).unwrap();
        let err = again.to_csv(with).unwrap_err().to_string();
        assert!(err.contains("workday-columns"), "{err}");
    }
}
