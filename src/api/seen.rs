//! What a page showed of the thing a change from it acts on: a form posts it back, and the
//! engine, on its thread, does the change only while the thing is still so.
//!
//! Why: a form sends every field it shows, not only the one the person changed. A manual
//! admin's row drawn while active, posted after someone suspended them to lower their role,
//! had made them active again; a rule's edit form undid another admin's narrowing of the
//! rule; an approval applied a held file's plan re-planned since the page showed it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The thing a change acts on, with the version of it the page showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seen {
    /// Rule `.0`, as [`rule_version`] gives.
    Rule(u64, String),
    /// The account of employee `.0`, as [`account_version`] gives.
    Account(String, String),
    /// Held file `.0`'s report, as [`held_version`] gives.
    Held(u64, String),
}

impl Seen {
    /// What the refusal names.
    pub fn what(&self) -> String {
        match self {
            Seen::Rule(id, _) => format!("rule {id}"),
            Seen::Account(id, _) => {
                format!("the account of {}", crate::core::model::escape_controls(id))
            }
            Seen::Held(id, _) => format!("the plan of held file {id}"),
        }
    }
}

/// A rule as a page shows it: its name, role, conditions and whether it is enabled.
pub fn rule_version(name: &str, role: &str, conditions: &[String], enabled: bool) -> String {
    let enabled = if enabled { "enabled" } else { "disabled" };
    digest(
        [name, role, enabled]
            .into_iter()
            .chain(conditions.iter().map(String::as_str)),
    )
}

/// An account as a page shows it: its email, role and status.
pub fn account_version(email: &str, role: &str, status: &str) -> String {
    digest([email, role, status])
}

/// A held file's report as its page shows it: why it is held (a re-plan says so there, by
/// whom and when) and its counts.
pub fn held_version(held_because: &[String], counts: &BTreeMap<String, u64>) -> String {
    let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    digest(
        held_because
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("--"))
            .chain(counts.iter().map(String::as_str)),
    )
}

/// The conflicts of a rule as the engine found them and the page showed them (the
/// `conflicts` of `rules add|edit --strict`'s refusal).
pub fn conflicts_version(conflicts: &serde_json::Value) -> String {
    crate::util::sha256_hex(conflicts.to_string().as_bytes())
}

/// The SHA-256 of the parts, each ended by a NUL (which no part holds unescaped).
fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = Vec::new();
    for part in parts {
        text.extend_from_slice(part.as_bytes());
        text.push(0);
    }
    crate::util::sha256_hex(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thing_a_page_shows_moves_its_version() {
        let conditions = vec!["department = IT".to_string()];
        let base = rule_version("IT", "IT Admin", &conditions, true);
        assert_eq!(base, rule_version("IT", "IT Admin", &conditions, true));
        assert_ne!(base, rule_version("IT", "IT Admin", &conditions, false));
        assert_ne!(base, rule_version("IT", "Super Admin", &conditions, true));
        let narrower = vec![conditions[0].clone(), "is_manager = true".into()];
        assert_ne!(base, rule_version("IT", "IT Admin", &narrower, true));
        // Parts cannot run into each other.
        assert_ne!(
            account_version("a", "bc", "d"),
            account_version("ab", "c", "d")
        );
        assert_ne!(
            account_version("a@x.io", "IT Admin", "active"),
            account_version("a@x.io", "IT Admin", "inactive")
        );
        let counts = BTreeMap::from([("created".to_string(), 311)]);
        let more = BTreeMap::from([("created".to_string(), 1683)]);
        let why = vec!["over max_grants".to_string()];
        assert_ne!(held_version(&why, &counts), held_version(&why, &more));
        assert_ne!(held_version(&why, &counts), held_version(&[], &counts));
    }
}
