//! The refusal of a change from a page that showed its thing otherwise than it is now
//! (see [`crate::api::seen`]), checked on the engine's thread right before the change.

use crate::api::seen::{Seen, account_version, held_version, rule_version};
use crate::api::{Response, exit};
use crate::core::rules::RuleId;
use crate::engine::pipeline::Pipeline;
use crate::store::{FileEntry, FileStatus, Store};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// What tells a rewrite of a file apart: its device, inode, size, and times of last write
/// and of last change (which no tool can set back, as `touch -d` sets the other).
type Stamp = (u64, u64, u64, (i64, i64), (i64, i64));

/// The version of held file `entry`'s plan as its report in held/ shows it
/// ([`held_version`]); `None` when it is not held, or its report cannot be read there (not
/// filed yet, or removed): nothing can be decided from a page then.
pub(super) fn held_seen<S: Store>(p: &Pipeline<S>, entry: &FileEntry) -> Option<String> {
    /// What the version reads of a report (its changes skipped, not kept).
    #[derive(serde::Deserialize)]
    struct Shown {
        #[serde(default)]
        held_because: Vec<String>,
        #[serde(default)]
        counts: BTreeMap<String, u64>,
    }
    /// The last version read, by the report's path and what tells a rewrite of it apart
    /// ([`Stamp`]): `files list`, `/healthz` and every page view ask,
    /// and a held report of a million changes took seconds to read (its reasons follow
    /// its changes); a re-plan writes a new one.
    static LAST: Mutex<Option<(PathBuf, Stamp, String)>> = Mutex::new(None);
    if entry.status != FileStatus::Held {
        return None;
    }
    let path = p
        .paths
        .folder("held")
        .join(format!("{}.report.json", entry.stored_as));
    let file = std::fs::File::open(&path).ok()?;
    let meta = file.metadata().ok()?;
    let stamp = (
        meta.dev(),
        meta.ino(),
        meta.size(),
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
    );
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, s, version)) = &*last
        && *p == path
        && *s == stamp
    {
        return Some(version.clone());
    }
    let shown: Shown = serde_json::from_reader(std::io::BufReader::new(file)).ok()?;
    let version = held_version(&shown.held_because, &shown.counts);
    *last = Some((path, stamp, version.clone()));
    Some(version)
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
        Seen::Account(id, _) => p
            .store
            .account(id)?
            .map(|a| account_version(&a.email, &a.role, a.status.as_str())),
        // A held file whose plan cannot be read is decided from no page (an empty version
        // matches none posted).
        Seen::Held(id, _) => match p.store.file(*id)? {
            Some(entry) if entry.status == FileStatus::Held => {
                Some(held_seen(p, &entry).unwrap_or_default())
            }
            _ => None,
        },
    };
    let shown = match seen {
        Seen::Rule(_, v) | Seen::Account(_, v) | Seen::Held(_, v) => v,
    };
    Ok(now.filter(|now| now != shown).map(|_| {
        let mut refusal = Response::fail(
            exit::REFUSED,
            format!(
                "refused: {} was changed since the page was drawn; nothing was done: reload \
                 the page to see it as it is now",
                seen.what()
            ),
        );
        // Told apart from the other refusals: a form sent back to be corrected would carry
        // the same stale version, and every Save of it be refused again.
        refusal.json["stale"] = true.into();
        refusal
    }))
}
