//! `[web]`: the Auto-Provisioning section in a browser and the HTTP API (SPEC §11), and the
//! rules of who may look and who may change, decided from the config and the person's
//! active account.

use crate::core::columns::{fold, is_plain_identity, is_well_formed_email};
use anyhow::{Result, bail};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// `[web]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Web {
    /// Where the section is served; empty (the default) = off.
    #[serde(default, deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
    /// The header in which the SSO proxy passes the signed-in person's email.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// The addresses (CIDRs, or single addresses) the header is believed from.
    #[serde(default = "default_trusted_proxies", deserialize_with = "cidrs")]
    pub trusted_proxies: Vec<IpNet>,
    /// Emails that may look and change whatever their account.
    #[serde(default)]
    pub org_admins: Vec<String>,
    /// Roles whose active accounts may change rules, manual admins and held files; unset,
    /// "Super Admin" when it is one of `provisioning.roles` ([`Web::org_admin_roles`]).
    #[serde(default)]
    pub org_admin_roles: Option<Vec<String>>,
    /// `NAME SHA256-HEX-OF-TOKEN` lines: the API's read-only bearer tokens; empty = none.
    #[serde(default, deserialize_with = "optional_path")]
    pub api_tokens_file: Option<PathBuf>,
    /// DEVELOPMENT ONLY, for a laptop without an SSO proxy: every request counts as this
    /// email. Accepted only with a loopback `listen`, and logged as a warning at start-up.
    #[serde(default)]
    pub dev_user: Option<String>,
    /// Host names (besides IP addresses and `localhost`) a request believed on the SSO
    /// proxy's header may be addressed to: the name the proxy passes on in `Host`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen: None,
            user_header: default_user_header(),
            trusted_proxies: default_trusted_proxies(),
            org_admins: Vec::new(),
            org_admin_roles: None,
            api_tokens_file: None,
            dev_user: None,
            allowed_hosts: Vec::new(),
        }
    }
}

fn default_user_header() -> String {
    "X-Forwarded-Email".into()
}

fn default_trusted_proxies() -> Vec<IpNet> {
    ["127.0.0.1/32", "::1/128"]
        .iter()
        .map(|c| c.parse().expect("valid CIDR"))
        .collect()
}

/// A name as `web.allowed_hosts` lists it: letters, digits, `-`, `_` (an nginx upstream's
/// name, which nginx sends as `Host`) and `.`, `*.` before a name for any name under it.
fn is_host_name(text: &str) -> bool {
    let name = text.trim().strip_prefix("*.").unwrap_or(text.trim());
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether `text` is a `*.` entry over a domain where anyone may register a name: a
/// top-level domain (`*.com`), or a second level that registries give out as one
/// (`*.co.uk`, `*.com.au`, `*.ne.jp`): any site's name under it would be let in, and with
/// it DNS rebinding. Not `*.localhost` (names there never leave the machine). Without the
/// Public Suffix List, a hosting suffix (`*.github.io`) is not told apart (README).
fn is_public_wildcard(text: &str) -> bool {
    const SECOND_LEVELS: [&str; 14] = [
        "co", "com", "net", "org", "ac", "edu", "gov", "ne", "or", "go", "nom", "ltd", "plc", "gen",
    ];
    let Some(parent) = text.trim().trim_end_matches('.').strip_prefix("*.") else {
        return false;
    };
    let labels: Vec<String> = parent.split('.').map(str::to_ascii_lowercase).collect();
    match labels.as_slice() {
        [tld] => tld != "localhost",
        [second, tld] => tld.len() == 2 && SECOND_LEVELS.contains(&second.as_str()),
        _ => false,
    }
}

/// The role whose accounts may change, unless `web.org_admin_roles` says otherwise.
const DEFAULT_ORG_ADMIN_ROLE: &str = "Super Admin";

/// `web.listen`: an address, or empty for off.
fn listen<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "web.listen = \"{text}\" is not an address ({e}); write e.g. \"127.0.0.1:8080\", or \"\" for off"
        ))
    })
}

/// One trusted proxy: a CIDR, or a single address (a /32 or /128).
pub fn parse_cidr(text: &str) -> std::result::Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "web.trusted_proxies: \"{text}\" is not a CIDR (e.g. \"10.0.0.0/8\") or an address"
            )
        })
}

fn cidrs<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|c| parse_cidr(c).map_err(serde::de::Error::custom))
        .collect()
}

fn optional_path<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.trim().is_empty()).then(|| PathBuf::from(text.trim())))
}

impl Web {
    /// Whether `name` (a `Host` header's name, in lower case, its port and final dot taken
    /// off) is one of `web.allowed_hosts`, or under a `*.` entry.
    pub fn host_allowed(&self, name: &str) -> bool {
        self.allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.trim().trim_end_matches('.').to_ascii_lowercase();
            match allowed.strip_prefix("*.") {
                Some(parent) => name
                    .strip_suffix(parent)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => name == allowed,
            }
        })
    }

    /// Checks what serde cannot: the dev setting's loopback rule, the header's name, the
    /// emails and roles named (`roles` = `provisioning.roles`).
    pub fn validate(&self, roles: &[String]) -> Result<()> {
        if let Some(user) = &self.dev_user {
            if !is_plain_identity(user) {
                bail!(
                    "web.dev_user = {user:?} is not an email address, or is a second \
                     spelling of one (a character that shows as nothing, stands for another \
                     or is not composed)"
                );
            }
            if let Some(addr) = self.listen.filter(|a| !a.ip().is_loopback()) {
                bail!(
                    "web.dev_user is for a laptop without an SSO proxy and works only with web.listen on a loopback address (127.0.0.1 or ::1), not {addr}: remove dev_user and put an SSO proxy in front (README, \"The web section\")"
                );
            }
        }
        if axum::http::HeaderName::from_bytes(self.user_header.as_bytes()).is_err() {
            bail!(
                "web.user_header = \"{}\" is not a header name",
                self.user_header
            );
        }
        // A header HTTP or the browser gives a meaning of its own never holds the signed-in
        // email: every request had been refused (401), with nothing saying why.
        const TAKEN: [&str; 28] = [
            "host",
            "authorization",
            "proxy-authorization",
            "cookie",
            "origin",
            "referer",
            "content-type",
            "content-length",
            "content-encoding",
            "transfer-encoding",
            "te",
            "connection",
            "upgrade",
            "user-agent",
            "accept",
            "accept-language",
            "accept-encoding",
            "cache-control",
            "range",
            "if-none-match",
            "if-match",
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "sec-fetch-site",
            "sec-fetch-mode",
            "sec-fetch-dest",
        ];
        if TAKEN.contains(&self.user_header.to_ascii_lowercase().as_str()) {
            bail!(
                "web.user_header = \"{}\" is a header HTTP or the browser fills; name the \
                 one your SSO proxy sets to the signed-in email (e.g. X-Forwarded-Email)",
                self.user_header
            );
        }
        if let Some(bad) = self.allowed_hosts.iter().find(|h| !is_host_name(h)) {
            bail!(
                "web.allowed_hosts: \"{bad}\" is not a host name; write the name browsers use, \
                 without scheme, port or path (e.g. \"autoprov.acme.example\")"
            );
        }
        if let Some(bad) = self.allowed_hosts.iter().find(|h| is_public_wildcard(h)) {
            bail!(
                "web.allowed_hosts: \"{bad}\" takes every name under a public domain, \
                 where anyone can register one and point it at this host (DNS rebinding); list \
                 the names, or a domain of your own (e.g. \"*.acme.example\")"
            );
        }
        if let Some(bad) = self.org_admins.iter().find(|e| !is_well_formed_email(e)) {
            bail!("web.org_admins: \"{bad}\" is not an email address");
        }
        // A second spelling of an address (a Kelvin sign for `k`, a zero-width space, a
        // decomposed accent), which no sign-in gives: compared in lower case, `\u{212a}im@…`
        // had made kim@… an org admin, though `admins add` refuses such an address.
        if let Some(bad) = self.org_admins.iter().find(|e| !is_plain_identity(e)) {
            bail!(
                "web.org_admins: {bad:?} is a second spelling of an address (a character \
                 that shows as nothing, stands for another or is not composed), which no \
                 sign-in gives; write the address as people type it"
            );
        }
        let known = |r: &String| roles.iter().any(|k| fold(k) == fold(r));
        // Only roles written in the config: the default is left out where it is no role.
        let written = self.org_admin_roles.iter().flatten();
        if let Some(bad) = written.into_iter().find(|r| !known(r)) {
            bail!(
                "web.org_admin_roles: \"{bad}\" is not in provisioning.roles ({})",
                roles.join(", ")
            );
        }
        Ok(())
    }

    /// `web.org_admin_roles` unset becomes "Super Admin" when that is one of `roles`
    /// (`provisioning.roles`), else none: a config whose roles leave it out is valid.
    pub fn settle_org_admin_roles(&mut self, roles: &[String]) {
        if self.org_admin_roles.is_none() {
            let default = roles
                .iter()
                .find(|r| fold(r) == fold(DEFAULT_ORG_ADMIN_ROLE));
            self.org_admin_roles = Some(default.into_iter().cloned().collect());
        }
    }

    /// The roles whose active accounts may change: none until
    /// [`Web::settle_org_admin_roles`] has given the unwritten default (deny by default).
    pub fn org_admin_roles(&self) -> &[String] {
        self.org_admin_roles.as_deref().unwrap_or_default()
    }

    /// Whether the SSO header is believed from this peer.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// Whether `email` is listed in `web.org_admins` (in any letter case).
    pub fn is_org_admin(&self, email: &str) -> bool {
        self.org_admins.iter().any(|a| fold(a) == fold(email))
    }

    /// Whether a person may look: an active admin account (`active_role` is its role) or
    /// an org admin.
    pub fn may_look(&self, email: &str, active_role: Option<&str>) -> bool {
        active_role.is_some() || self.is_org_admin(email)
    }

    /// Whether a person may change rules, manual admins and held files: an org admin, or
    /// an active account whose role is in `web.org_admin_roles`.
    pub fn may_change(&self, email: &str, active_role: Option<&str>) -> bool {
        self.is_org_admin(email)
            || active_role
                .is_some_and(|role| self.org_admin_roles().iter().any(|r| fold(r) == fold(role)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Vec<String> {
        vec!["Super Admin".into(), "IT Admin".into()]
    }

    #[test]
    fn allowed_hosts_are_host_names() {
        let checked = |host: &str| {
            let w = Web {
                allowed_hosts: vec![host.into()],
                ..Web::default()
            };
            w.validate(&roles()).map_err(|e| e.to_string())
        };
        let good = [
            "autoprov.acme.example",
            "*.acme.example",
            "intranet",
            "autoprov_backend",
        ];
        for host in good.into_iter().chain(["a-b.c1.example"]) {
            assert!(checked(host).is_ok(), "{host}");
        }
        let bad = [
            "",
            "https://a.example",
            "a.example:8080",
            "a.example/",
            "a..example",
        ];
        for host in bad.into_iter().chain(["a b", "*"]) {
            let e = checked(host).unwrap_err();
            assert!(e.starts_with("web.allowed_hosts: "), "{e}");
        }
        // A wildcard over a public domain lets any site's name in.
        assert!(
            checked("*.localhost").is_ok(),
            "names that never leave the machine"
        );
        assert!(checked("*.acme.co.uk").is_ok());
        for host in [
            "*.com",
            "*.example",
            " *.com ",
            "*.co.uk",
            "*.COM.au",
            "*.ne.jp",
        ] {
            let e = checked(host).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "web.allowed_hosts: \"{host}\" takes every name under a public domain"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn defaults_are_off_loopback_and_super_admin() {
        let w = Web::default();
        assert_eq!(w.listen, None);
        assert_eq!(w.user_header, "X-Forwarded-Email");
        assert!(w.trusts("127.0.0.1".parse().unwrap()));
        assert!(w.trusts("::1".parse().unwrap()));
        // An IPv4 peer seen on a dual-stack socket.
        assert!(w.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!w.trusts("10.1.2.3".parse().unwrap()));
        assert!(!w.trusts("127.0.0.2".parse().unwrap()));
        assert!(w.org_admin_roles().is_empty(), "none until settled");
        let mut settled = w.clone();
        settled.settle_org_admin_roles(&roles());
        assert_eq!(settled.org_admin_roles(), ["Super Admin"]);
        w.validate(&roles()).unwrap();
    }

    #[test]
    fn trusted_proxies_match_by_cidr() {
        let w = Web {
            trusted_proxies: vec![
                parse_cidr("10.0.0.0/8").unwrap(),
                parse_cidr("192.168.1.7").unwrap(),
                parse_cidr("fd00::/8").unwrap(),
            ],
            ..Web::default()
        };
        for (peer, want) in [
            ("10.200.3.4", true),
            ("11.0.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("127.0.0.1", false),
        ] {
            assert_eq!(w.trusts(peer.parse().unwrap()), want, "{peer}");
        }
        let err = parse_cidr("10.0.0.0/33").unwrap_err();
        assert!(
            err.contains("web.trusted_proxies") && err.contains("10.0.0.0/33"),
            "{err}"
        );
    }

    #[test]
    fn who_may_look_and_who_may_change() {
        let mut w = Web {
            org_admins: vec!["Lead@Acme.example".into()],
            ..Web::default()
        };
        w.settle_org_admin_roles(&roles());
        // An org admin without an account.
        assert!(w.may_look("lead@acme.example", None));
        assert!(w.may_change("LEAD@acme.example", None));
        // An active account looks; only a role of org_admin_roles changes.
        assert!(w.may_look("it@acme.example", Some("IT Admin")));
        assert!(!w.may_change("it@acme.example", Some("IT Admin")));
        assert!(w.may_change("boss@acme.example", Some("super admin")));
        // No active account, not listed: neither.
        assert!(!w.may_look("x@acme.example", None));
        assert!(!w.may_change("x@acme.example", None));
    }

    #[test]
    fn the_dev_user_needs_a_loopback_listen_address() {
        let dev = |listen: &str| Web {
            listen: Some(listen.parse().unwrap()),
            dev_user: Some("me@example.com".into()),
            ..Web::default()
        };
        dev("127.0.0.1:8080").validate(&roles()).unwrap();
        dev("[::1]:8080").validate(&roles()).unwrap();
        let err = format!("{:#}", dev("0.0.0.0:8080").validate(&roles()).unwrap_err());
        assert!(
            err.contains("web.dev_user") && err.contains("loopback"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            dev("192.168.1.2:80").validate(&roles()).unwrap_err()
        );
        assert!(err.contains("192.168.1.2:80"), "{err}");
    }

    #[test]
    fn names_roles_and_emails_are_checked() {
        let w = Web {
            org_admin_roles: Some(vec!["Super Admn".into()]),
            ..Web::default()
        };
        let err = format!("{:#}", w.validate(&roles()).unwrap_err());
        assert!(
            err.contains("web.org_admin_roles") && err.contains("Super Admn"),
            "{err}"
        );
        let w = Web {
            user_header: "X Email".into(),
            ..Web::default()
        };
        assert!(format!("{:#}", w.validate(&roles()).unwrap_err()).contains("web.user_header"));
        for taken in [
            "Host",
            "authorization",
            "Origin",
            "X-Forwarded-For",
            "Accept",
        ] {
            let w = Web {
                user_header: taken.into(),
                ..Web::default()
            };
            let err = format!("{:#}", w.validate(&roles()).unwrap_err());
            assert!(err.contains("HTTP or the browser fills"), "{err}");
        }
        let w = Web {
            org_admins: vec!["alice".into()],
            ..Web::default()
        };
        assert!(format!("{:#}", w.validate(&roles()).unwrap_err()).contains("web.org_admins"));
        // A second spelling of an address: refused, where `\u{212a}im@…` had been kim@….
        for bad in [
            "\u{212a}im@acme.example",
            "ki\u{200b}m@acme.example",
            "zoe\u{301}@a.io",
        ] {
            let w = Web {
                org_admins: vec![bad.into()],
                ..Web::default()
            };
            let err = format!("{:#}", w.validate(&roles()).unwrap_err());
            assert!(
                err.contains("web.org_admins") && err.contains("second spelling"),
                "{err}"
            );
        }
        let w = Web {
            org_admins: vec!["zoë@a.io".into(), "Kim@Acme.example".into()],
            ..Web::default()
        };
        w.validate(&roles()).unwrap();
    }
}
