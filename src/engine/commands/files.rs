//! `files list | show | approve | reject`, `status`, `backup` and `audit`.

use super::note;
use crate::api::error::Context;
use crate::api::render::report_response;
use crate::api::{Output, Request, Response, exit};
use crate::core::accounts::{Origin, Status};
use crate::core::model::escape_controls;
use crate::core::report::Report;
use crate::engine::pipeline::{Pipeline, Processing};
use crate::store::{FileStatus, Store};
use serde_json::{Value, json};
use std::fmt::Write as _;

fn status<S: Store>(p: &Pipeline<S>) -> crate::api::Result<Response> {
    let mut counts: std::collections::HashMap<(Origin, Status), usize> = Default::default();
    p.store
        .scan_accounts(&mut |a| *counts.entry((a.origin, a.status)).or_default() += 1)?;
    let count = |o: Origin, s: Status| counts.get(&(o, s)).copied().unwrap_or(0);
    let rules = p.store.rules()?;
    let files = p.store.files()?;
    let last = files.last();
    let held: Vec<&crate::store::FileEntry> = files
        .iter()
        .filter(|f| f.status == FileStatus::Held)
        .collect();
    let (waiting, in_hand) = waiting_and_in_hand(p)?;
    let j = json!({
        "data_dir": p.cfg.data_dir,
        "mode": format!("{:?}", p.cfg.source.mode).to_lowercase(),
        // An SFTP address only where a server listens (it had named one in every mode).
        "listen": (p.cfg.source.mode == crate::config::Mode::Host).then(|| p.cfg.source.listen.to_string()),
        "sso": {"enabled": p.cfg.sso.enabled, "provider": p.cfg.sso.provider},
        "rules": {"total": rules.len(), "enabled": rules.iter().filter(|r| r.enabled).count()},
        "accounts": {
            "auto_active": count(Origin::Auto, Status::Active),
            "auto_inactive": count(Origin::Auto, Status::Inactive),
            "manual_active": count(Origin::Manual, Status::Active),
            "manual_inactive": count(Origin::Manual, Status::Inactive),
        },
        "last_file": last.map(|f| json!({"id": f.id, "name": f.stored_as, "status": f.status.as_str(), "processed_at": f.processed_at, "summary": f.summary})),
        "waiting": waiting,
        "processing": in_hand.as_ref().map(|(name, since)| json!({"name": name, "since": crate::util::rfc3339(*since)})),
        "held": held.iter().map(|f| json!({"id": f.id, "name": f.stored_as})).collect::<Vec<_>>(),
        "daemon": Value::Null,
    });
    let mut t = String::new();
    let _ = writeln!(t, "data dir:  {}", p.cfg.data_dir.display());
    // The SFTP server's address only where there is one (host mode).
    let listen = match p.cfg.source.mode {
        crate::config::Mode::Host => format!("  ({})", p.cfg.source.listen),
        _ => String::new(),
    };
    let _ = writeln!(
        t,
        "mode:      {}{listen}",
        j["mode"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        t,
        "sso:       {}",
        if p.cfg.sso.enabled {
            format!("enabled ({})", p.cfg.sso.provider)
        } else {
            "DISABLED: provisioning refuses to run".into()
        }
    );
    let _ = writeln!(
        t,
        "rules:     {} ({} enabled)",
        rules.len(),
        j["rules"]["enabled"]
    );
    let _ = writeln!(
        t,
        "accounts:  auto {} active / {} inactive, manual {} active / {} inactive",
        j["accounts"]["auto_active"],
        j["accounts"]["auto_inactive"],
        j["accounts"]["manual_active"],
        j["accounts"]["manual_inactive"]
    );
    match last {
        Some(f) => {
            let _ = writeln!(
                t,
                "last file: {} {} at {} ({})",
                escape_controls(&f.stored_as),
                f.status.as_str(),
                f.processed_at,
                f.summary
            );
        }
        None => t.push_str("last file: none yet\n"),
    }
    write_queue(&mut t, &waiting, &in_hand);
    for f in &held {
        let _ = writeln!(
            t,
            "HELD:      file {} {}: decide with `autoprov files approve {}` or `reject {}`",
            f.id,
            escape_controls(&f.stored_as),
            f.id,
            f.id
        );
    }
    Ok(Response::ok(j, t))
}

/// The files waiting in inbox/ (every one not filed yet, as scripts that wait for an empty
/// list read it), and which of them is being processed, since when: it had read as one
/// waiting its turn while it was applied. Its name is read after the listing and kept only
/// when listed, so a file filed in between is not named.
fn waiting_and_in_hand<S: Store>(
    p: &Pipeline<S>,
) -> crate::api::Result<(Vec<String>, Option<Processing>)> {
    let waiting = p.waiting()?;
    let in_hand = p.in_hand().filter(|(name, _)| waiting.contains(name));
    Ok((waiting, in_hand))
}

/// `status`' line of the files waiting, and which is being processed.
fn write_queue(t: &mut String, waiting: &[String], in_hand: &Option<Processing>) {
    let _ = write!(t, "waiting:   {}", waiting.len());
    if let Some((name, since)) = in_hand {
        let since = crate::util::rfc3339(*since);
        let _ = write!(
            t,
            " ({} being processed since {since})",
            escape_controls(name)
        );
    }
    t.push('\n');
}

/// Runs a `files`, `status`, `backup` or `audit` request.
pub(super) fn run<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &str,
    output: Output,
) -> crate::api::Result<Response> {
    Ok(match req {
        Request::FilesList {} => files_list(p)?,
        Request::FilesShow { id } => {
            let Some((bytes, path)) = p.report_bytes(id)? else {
                return Ok(no_file(id));
            };
            let report: Report = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the report {}", path.display()))?;
            let mut text = format!("file {id}, report {}\n", path.display());
            text.push_str(&report.to_text());
            Response::ok(serde_json::to_value(&report)?, text)
        }
        Request::FilesDecide { id, approve } => {
            // Not found is a negative answer (exit 1), as for `files show` and every `rules`
            // and `admins` command, not a usage error.
            if p.store.file(id)?.is_none() {
                return Ok(no_file(id));
            }
            if approve {
                report_response(&p.approve(id, caller)?, output)
            } else {
                // The rejection was asked for and done: a success, not a negative answer.
                Response {
                    exit: exit::OK,
                    ..report_response(&p.reject(id, caller)?, output)
                }
            }
        }
        Request::Status {} => status(p)?,
        Request::Backup { path } => {
            let target = std::path::Path::new(&path);
            let (n, path) = crate::data_owner::as_real_user_for(&p.cfg.data_dir, target, || {
                crate::backup::write(&p.store, target)
            })?;
            p.store.append_audit(note(
                caller,
                "backup",
                format!("wrote {n} records to {}", path.display()),
            ))?;
            Response::ok(
                json!({"backup": path, "records": n}),
                format!("wrote {n} records to {}\n", path.display()),
            )
        }
        Request::Audit { since } => {
            // The entries' times are UTC seconds as text: an offset or another form of the
            // same instant compared as text would cut at the wrong time.
            let since = match since {
                Some(t) => Some(crate::util::utc_second(&t).ok_or_else(|| {
                    crate::api::error::Error::usage(format!(
                        "--since {t:?} is not a time: use RFC 3339, e.g. 2026-11-01T00:00:00Z \
                         (or +02:00 for an offset), or a date, 2026-11-01"
                    ))
                })?),
                None => None,
            };
            let entries = p.store.audit(since.as_deref())?;
            let mut text = String::new();
            // One entry a line: what a person or a file gave (an ID, a name, a file's name
            // from an upload) is escaped, as a text report escapes it.
            let escape = crate::core::model::escape_controls;
            for e in &entries {
                let _ = writeln!(
                    text,
                    "{}  {:<10} {:<16} {}",
                    escape(&e.note.at),
                    escape(&e.note.user),
                    escape(&e.note.action),
                    escape(&e.note.detail)
                );
                // On a line of its own, which no entry's text can start (each starts with its
                // time, its line breaks escaped): a detail ending in the mark's words is not it.
                if let Some(undone) = &e.rolled_back {
                    let _ = writeln!(text, "    ^ {}", escape(undone));
                }
            }
            Response::ok(serde_json::to_value(&entries)?, text)
        }
        _ => unreachable!("not a files request"),
    })
}

fn files_list<S: Store>(p: &Pipeline<S>) -> crate::api::Result<Response> {
    let files = p.store.files()?;
    let list: Vec<Value> = files
        .iter()
        .map(|f| {
            let mut j = json!({
                "id": f.id, "name": f.name, "stored_as": f.stored_as,
                "status": f.status.as_str(), "received_at": f.received_at,
                "processed_at": f.processed_at, "sha256": f.sha256, "size": f.size,
                "report": p.report_path(f), "summary": f.summary,
            });
            // What a page drawn from this list shows of a held file's plan, posted back by
            // its approve and reject (see `crate::api::seen`).
            if let Some(seen) = super::stale::held_seen(p, f) {
                j["seen"] = json!(seen);
            }
            j
        })
        .collect();
    let mut text = String::new();
    for f in &files {
        let _ = writeln!(
            text,
            "{:>4}  {:<8}  {}  {}  ({})",
            f.id,
            f.status.as_str(),
            f.received_at,
            escape_controls(&f.stored_as),
            f.summary
        );
    }
    if files.is_empty() {
        text.push_str("no files processed yet\n");
    }
    Ok(Response::ok(json!(list), text))
}

/// The answer for a file id the ledger does not have (exit 1).
fn no_file(id: u64) -> Response {
    Response::fail(exit::NO, format!("no file {id}: see `autoprov files list`"))
}

#[cfg(test)]
mod tests {
    use crate::api::{Output, Request, exit};
    use crate::engine::commands::execute;
    use crate::engine::filing::Content;

    /// `status` names the file being processed among those waiting (it stays in inbox/ until
    /// it is filed): it had read as one waiting its turn while it was applied.
    #[test]
    fn status_names_the_file_in_hand_among_those_waiting() {
        let (_dir, p) = crate::engine::tests::pipeline();
        let mut names = Vec::new();
        for name in ["first.csv", "second.csv"] {
            let bytes: &[u8] = b"employee_id,email\n1,a@x.io\n";
            let received = p.receive(name, Content::Stream(&mut &bytes[..]), false, None);
            names.push(received.unwrap().0);
        }
        let status = |output| execute(&p, Request::Status {}, "root", output);
        let in_hand = p.take_in_hand(&names[0]);
        let r = status(Output::Json);
        assert_eq!(r.exit, exit::OK, "{}", r.text);
        // Still among those waiting (not filed yet): scripts wait for an empty list.
        assert_eq!(r.json["waiting"], serde_json::json!(names));
        assert_eq!(r.json["processing"]["name"], names[0].as_str());
        let since = r.json["processing"]["since"].as_str().unwrap();
        assert!(since.ends_with('Z'), "{since}");
        let text = status(Output::Text).text;
        let line = format!("waiting:   2 ({} being processed since ", names[0]);
        assert!(text.contains(&line), "{text}");
        drop(in_hand);
        // A name in hand that is not in inbox/ (filed in between) is not named.
        let gone = p.take_in_hand("gone.csv");
        assert!(status(Output::Json).json["processing"].is_null());
        drop(gone);
        let r = status(Output::Json);
        assert_eq!(r.json["waiting"], serde_json::json!(names));
        assert!(r.json["processing"].is_null(), "{}", r.json);
        assert!(!status(Output::Text).text.contains("being processed"));
    }
}
