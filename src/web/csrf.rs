//! Cross-site request forgery: every state-changing request carries a token tied to the
//! person (HMAC-SHA256 of their email under a server secret kept in `data_dir`, so tokens
//! survive restarts), and is refused when `Origin` or `Sec-Fetch-Site` shows another site.

use crate::core::columns::fold;
use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The server secret's length in bytes.
const SECRET_LEN: usize = 32;

/// The key tokens are made with.
#[derive(Clone)]
pub struct CsrfKey([u8; SECRET_LEN]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

/// `n` bytes from the kernel's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    crate::util::random_bytes().context("reading random bytes from /dev/urandom")
}

impl CsrfKey {
    /// A key from bytes (tests).
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> CsrfKey {
        CsrfKey(bytes)
    }

    /// Reads the secret at `path`, or makes it (mode 0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<CsrfKey> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; SECRET_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
                    anyhow::anyhow!(
                        "{} holds {} bytes, not the {SECRET_LEN} of the web section's secret; remove it to make a new one (open forms then need a reload)",
                        path.display(),
                        b.len()
                    )
                })?;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .with_context(|| format!("making {} private (0600)", path.display()))?;
                }
                Ok(CsrfKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<SECRET_LEN>()?;
                let write = || -> std::io::Result<()> {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)?;
                    f.write_all(&key)?;
                    f.sync_all()
                };
                write().with_context(|| format!("creating the web secret {}", path.display()))?;
                Ok(CsrfKey(key))
            }
            Err(e) => Err(e).with_context(|| format!("reading the web secret {}", path.display())),
        }
    }

    fn mac(&self, email: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"autoprov csrf v1\0");
        mac.update(fold(email.trim()).as_bytes());
        mac
    }

    /// The token for forms posted by `email` (hex).
    pub fn token(&self, email: &str) -> String {
        hex(&self.mac(email).finalize().into_bytes())
    }

    /// Whether `token` is `email`'s token, compared in constant time.
    pub fn verify(&self, email: &str, token: &str) -> bool {
        match unhex(token.trim()) {
            Some(bytes) => self.mac(email).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex (either case); None when not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why a state-changing request is refused as cross-site, or None when it may go on.
/// `host` is the host the browser addressed (the `Host` header, or `X-Forwarded-Host` from
/// a trusted proxy). A request without `Origin` and `Sec-Fetch-Site` (not a browser, or an
/// old one) is left to the CSRF token.
pub fn cross_site(
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
    host: Option<&str>,
) -> Option<String> {
    if let Some(site) = sec_fetch_site.map(str::trim)
        && !site.eq_ignore_ascii_case("same-origin")
        && !site.eq_ignore_ascii_case("none")
    {
        return Some(format!(
            "refused: the form was sent from another site (Sec-Fetch-Site: {site})"
        ));
    }
    let origin = origin?.trim();
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Some(format!(
            "refused: the form was sent from another site (Origin: {origin})"
        ));
    };
    let same = host
        .is_some_and(|host| same_authority(&scheme.to_ascii_lowercase(), authority, host.trim()));
    (!same).then(|| {
        format!(
            "refused: the form was sent from another site (Origin: {origin}, this site: {})",
            host.unwrap_or("unknown")
        )
    })
}

/// Whether an origin's `host[:port]` names the same host and port as `host[:port]`,
/// default ports (80, 443) written or not.
fn same_authority(scheme: &str, origin: &str, host: &str) -> bool {
    let default = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let split = |a: &str| -> (String, String) {
        let a = a.to_ascii_lowercase();
        let (h, p) = split_authority(&a);
        (
            h.to_string(),
            p.filter(|p| !p.is_empty()).unwrap_or(default).to_string(),
        )
    };
    !origin.is_empty() && split(origin) == split(host)
}

/// An authority's host (an IPv6 literal without its brackets) and its port when one is
/// written: `[::1]:8080`, `[::1]`, `host:8080`, `host`.
pub fn split_authority(a: &str) -> (&str, Option<&str>) {
    let (host, port) = match a.rfind(':') {
        Some(i) if !a[i..].contains(']') => (&a[..i], Some(&a[i + 1..])),
        _ => (a, None),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CsrfKey {
        CsrfKey::from_bytes([n; SECRET_LEN])
    }

    #[test]
    fn a_token_is_tied_to_the_person_and_the_secret() {
        let k = key(1);
        let t = k.token("alice@acme.example");
        assert_eq!(t.len(), 64);
        assert!(k.verify("alice@acme.example", &t));
        // Emails compare in any letter case, as everywhere.
        assert!(k.verify("Alice@ACME.example", &t));
        assert!(!k.verify("bob@acme.example", &t));
        assert!(!key(2).verify("alice@acme.example", &t));
        assert!(!k.verify("alice@acme.example", ""));
        assert!(!k.verify("alice@acme.example", "zz"));
        assert!(!k.verify("alice@acme.example", &t[..62]));
        let mut flipped = t.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert!(!k.verify("alice@acme.example", &String::from_utf8(flipped).unwrap()));
        assert!(k.verify("alice@acme.example", &t.to_uppercase()));
    }

    #[test]
    fn the_secret_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web_secret");
        let first = CsrfKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = CsrfKey::load_or_create(&path).unwrap();
        assert_eq!(first.token("a@b.io"), again.token("a@b.io"));
        std::fs::write(&path, b"short").unwrap();
        let err = format!("{:#}", CsrfKey::load_or_create(&path).unwrap_err());
        assert!(
            err.contains("web_secret") && err.contains("5 bytes"),
            "{err}"
        );
    }

    #[test]
    fn another_origin_or_site_is_refused() {
        let host = Some("autoprov.acme.example");
        for (origin, site, want_ok) in [
            (None, None, true),
            (Some("https://autoprov.acme.example"), None, true),
            (Some("https://autoprov.acme.example:443"), None, true),
            (
                Some("http://AutoProv.acme.example"),
                Some("same-origin"),
                true,
            ),
            (None, Some("none"), true),
            (Some("https://evil.example"), None, false),
            (
                Some("https://autoprov.acme.example.evil.example"),
                None,
                false,
            ),
            (Some("https://autoprov.acme.example:8443"), None, false),
            (Some("null"), None, false),
            (None, Some("cross-site"), false),
            (None, Some("same-site"), false),
            (
                Some("https://autoprov.acme.example"),
                Some("cross-site"),
                false,
            ),
        ] {
            let verdict = cross_site(origin, site, host);
            assert_eq!(
                verdict.is_none(),
                want_ok,
                "{origin:?} {site:?}: {verdict:?}"
            );
        }
        assert!(cross_site(Some("http://127.0.0.1:8080"), None, Some("127.0.0.1:8080")).is_none());
        assert!(cross_site(Some("http://[::1]:8080"), None, Some("[::1]:8080")).is_none());
        assert!(cross_site(Some("http://[::1]:8080"), None, Some("[::1]:8081")).is_some());
        assert!(cross_site(Some("http://127.0.0.1:8080"), None, None).is_some());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00abFF"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("é0"), None);
    }
}
