//! The refusal of a change from a page that showed its thing otherwise than it is now
//! (see [`crate::api::seen`]), checked on the engine's thread right before the change.

use crate::api::render::account_json;
use crate::api::seen::{Seen, account_version, held_version, rule_version};
use crate::api::{Response, exit};
use crate::core::rules::RuleId;
use crate::engine::pipeline::Pipeline;
use crate::store::{FileEntry, FileStatus, Store};
use std::collections::BTreeMap;

/// The version of held file `entry`'s plan as its report shows it ([`held_version`]; empty
/// when the report cannot be read); `None` when it is not held.
pub(super) fn held_seen<S: Store>(p: &Pipeline<S>, entry: &FileEntry) -> Option<String> {
    /// What the version reads of a report (its changes skipped, not kept).
    #[derive(serde::Deserialize)]
    struct Shown {
        #[serde(default)]
        held_because: Vec<String>,
        #[serde(default)]
        counts: BTreeMap<String, u64>,
    }
    if entry.status != FileStatus::Held {
        return None;
    }
    let path = p
        .paths
        .folder("held")
        .join(format!("{}.report.json", entry.stored_as));
    let shown = std::fs::File::open(path)
        .ok()
        .and_then(|f| serde_json::from_reader::<_, Shown>(std::io::BufReader::new(f)).ok());
    Some(shown.map_or_else(String::new, |s| held_version(&s.held_because, &s.counts)))
}

/// The refusal when `seen` is not what its thing is now; `None` when it is, or when the
/// thing is gone (the change then says that itself).
pub(super) fn stale<S: Store>(
    p: &Pipeline<S>,
    seen: &Seen,
) -> crate::api::Result<Option<Response>> {
    let now = match seen {
        Seen::Rule(id, _) => p.store.rule(RuleId(*id))?.map(|r| {
            let conditions: Vec<String> = r.conditions.iter().map(|c| c.to_string()).collect();
            rule_version(&r.name, &r.role, &conditions, r.enabled)
        }),
        Seen::Account(id, _) => p.store.account(id)?.map(|a| {
            let j = account_json(&a, &[]);
            let field = |k: &str| j[k].as_str().unwrap_or_default().to_string();
            account_version(&field("email"), &field("role"), &field("status"))
        }),
        Seen::Held(id, _) => match p.store.file(*id)? {
            Some(entry) => held_seen(p, &entry),
            None => None,
        },
    };
    let shown = match seen {
        Seen::Rule(_, v) | Seen::Account(_, v) | Seen::Held(_, v) => v,
    };
    Ok(now.filter(|now| now != shown).map(|_| {
        Response::fail(
            exit::REFUSED,
            format!(
                "refused: {} was changed since the page was drawn; nothing was done: reload \
                 the page to see it as it is now",
                seen.what()
            ),
        )
    }))
}
