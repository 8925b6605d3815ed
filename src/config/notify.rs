//! `[notify]` (SPEC §10 "Unattended operation"): where events are posted, and after how
//! long without an applied file the `stale` event fires.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// `[notify]`. Its `stale_after` counts from the last *applied* file and drives the `stale`
/// webhook event; `source.stale_after` is a different clock: the `status` warning that no
/// file *arrived* (a rejected or held file counts as an arrival there). Both stay: a roster
/// that keeps arriving broken is not stale for `status`, but is for `notify`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Where events are POSTed: HTTPS, or `http://` to a loopback address; `None` (an
    /// empty `webhook_url`) = notifications off. It may carry a token (Slack's do): it is
    /// never logged nor shown whole, only [`Notify::target`].
    #[serde(default, deserialize_with = "webhook_url")]
    pub webhook_url: Option<reqwest::Url>,
    /// A file holding the webhook URL instead (one line), read by the daemon alone when it
    /// starts ([`Notify::resolved`]): the config is read by every command, so by everyone
    /// in the socket's group, and the URL's token need not be.
    #[serde(default, deserialize_with = "optional_path")]
    pub webhook_url_file: Option<std::path::PathBuf>,
    /// The `stale` event fires when no file was applied for this long (default 36 h).
    #[serde(default = "default_stale_after", deserialize_with = "super::duration")]
    pub stale_after: Duration,
}

impl Default for Notify {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_url_file: None,
            stale_after: default_stale_after(),
        }
    }
}

/// The URL stays out of debug output: it may carry a token.
impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify")
            .field("webhook_url", &self.target())
            .field("webhook_url_file", &self.webhook_url_file)
            .field("stale_after", &self.stale_after)
            .finish()
    }
}

impl Notify {
    /// `webhook_url` and `webhook_url_file` are one setting: both set is refused.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.webhook_url.is_some() && self.webhook_url_file.is_some() {
            anyhow::bail!("notify.webhook_url and notify.webhook_url_file are both set: keep one");
        }
        Ok(())
    }

    /// This `[notify]` with the URL of `webhook_url_file` read (by the daemon, at its
    /// start), checked as `webhook_url` is; an error names the key and the file, never the
    /// URL.
    pub fn resolved(&self) -> anyhow::Result<Notify> {
        let Some(path) = &self.webhook_url_file else {
            return Ok(self.clone());
        };
        let key = "notify.webhook_url_file";
        // A file of blank lines is refused there: no URL, not "off" (written so by mistake,
        // it had turned every notification off without a word).
        let text = super::hris::read_secret(key, path)?;
        let url = parse_webhook_url(text.expose())
            .map_err(|e| anyhow::anyhow!("{key} = {}: {e}", path.display()))?;
        Ok(Notify {
            webhook_url: url,
            webhook_url_file: None,
            ..self.clone()
        })
    }

    /// Where events go, safe to log: scheme, host and port only (no path, query or
    /// credentials, which may hold the webhook's token).
    pub fn target(&self) -> Option<String> {
        self.webhook_url.as_ref().map(target)
    }
}

fn default_stale_after() -> Duration {
    Duration::from_secs(36 * 3600)
}

/// `scheme://host[:port]` of a URL, without its path, query or user information.
pub fn target(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// A path where empty means unset, as `""` does for every other key (an empty
/// `AUTOPROV__NOTIFY__WEBHOOK_URL_FILE` had counted as set, and the start failed).
fn optional_path<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<std::path::PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.trim().is_empty()).then(|| std::path::PathBuf::from(text)))
}

/// `notify.webhook_url`: empty = off; HTTPS; `http://` only to a loopback address, so an
/// event (and the URL's token) never crosses a network in clear text.
fn webhook_url<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<reqwest::Url>, D::Error> {
    let text = String::deserialize(d)?;
    parse_webhook_url(&text).map_err(serde::de::Error::custom)
}

/// Parses `notify.webhook_url` (empty = off; HTTPS, or `http://` to loopback); the error
/// names the key and never repeats the URL's path or query.
pub fn parse_webhook_url(text: &str) -> Result<Option<reqwest::Url>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let url = reqwest::Url::parse(text).map_err(|e| {
        format!(
            "notify.webhook_url is not a URL ({e}); write e.g. \"https://hooks.example.com/...\""
        )
    })?;
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(Some(url)),
        "http" if is_loopback(&url) => Ok(Some(url)),
        "http" => Err(format!(
            "notify.webhook_url = \"{}/...\": http:// is allowed only to a loopback address \
             (127.0.0.1, [::1], localhost); use https://",
            target(&url)
        )),
        scheme => Err(format!(
            "notify.webhook_url: the scheme \"{scheme}\" is not supported; use https://"
        )),
    }
}

/// Whether `url`'s host is this machine (`localhost` or a loopback address).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_from_a_file_is_checked_as_the_url_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        let from = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Notify {
                webhook_url_file: Some(file.clone()),
                ..Notify::default()
            }
        };
        let n = from("https://hooks.example.com/T/B/s3cr3t\n")
            .resolved()
            .unwrap();
        assert_eq!(n.target().as_deref(), Some("https://hooks.example.com"));
        assert_eq!(n.webhook_url.unwrap().path(), "/T/B/s3cr3t");
        // Blank lines after it, as an editor leaves them: the URL all the same.
        let n = from("https://hooks.example.com/T/B/s3cr3t\n\r\n\n").resolved();
        assert_eq!(n.unwrap().webhook_url.unwrap().path(), "/T/B/s3cr3t");
        let err = from("http://hooks.example.com/T/s3cr3t")
            .resolved()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("notify.webhook_url_file") && err.contains("loopback"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
        let both = Notify {
            webhook_url: parse_webhook_url("https://a.example/x").unwrap(),
            ..from("https://b.example/y")
        };
        assert!(both.check().is_err());
        assert!(Notify::default().resolved().unwrap().webhook_url.is_none());
        for blank in ["\n\n", "   \n", " \t "] {
            let err = from(blank).resolved().unwrap_err().to_string();
            assert!(
                err.contains("holds only blank space or line breaks"),
                "{blank:?}: {err}"
            );
        }
    }

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for ok in [
            "https://hooks.slack.com/services/T/B/secret",
            "http://127.0.0.1:8080/hook",
            "http://127.9.9.9/hook",
            "http://[::1]:9/x",
            "http://localhost/x",
            "http://LOCALHOST:1/x",
        ] {
            assert!(
                matches!(parse_webhook_url(ok), Ok(Some(_))),
                "{ok}: {:?}",
                parse_webhook_url(ok)
            );
        }
        assert_eq!(parse_webhook_url("  "), Ok(None));
        for (bad, says) in [
            ("http://hooks.example.com/services/secret", "loopback"),
            ("http://10.0.0.1/secret", "loopback"),
            ("http://localhost.example.com/secret", "loopback"),
            ("ftp://127.0.0.1/secret", "\"ftp\""),
            ("hooks.example.com/secret", "not a URL"),
        ] {
            let err = parse_webhook_url(bad).unwrap_err();
            assert!(err.starts_with("notify.webhook_url"), "{err}");
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains("secret"), "the path is not repeated: {err}");
        }
    }

    #[test]
    fn the_target_and_debug_output_leave_out_path_query_and_credentials() {
        let n = Notify {
            webhook_url: parse_webhook_url("https://user:pw@hooks.example.com:8443/T/secret?k=v")
                .unwrap(),
            ..Notify::default()
        };
        assert_eq!(n.target().unwrap(), "https://hooks.example.com:8443");
        let debug = format!("{n:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("pw"),
            "{debug}"
        );
        // A zero stale_after is refused with the config's other intervals (config::tests).
        assert_eq!(n.stale_after, Duration::from_secs(36 * 3600));
    }
}
