//! Answers to requests while the daemon runs: the commands, plus what only the daemon
//! knows (its state in `status`, and where it may write backups).

use super::commands::{self, Streamed};
use super::pipeline::Pipeline;
use super::state::EngineState;
use crate::api::seen::Seen;
use crate::api::{Caller, Output, Request, Response, Upload, exit};
use crate::store::SledStore;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The daemon writes backups with its own rights: only as new files in `data_dir/backups/`
/// (never over the store, the host keys or into the SFTP drop).
fn backup_target_refusal(p: &Pipeline<SledStore>, path: &str) -> Option<Response> {
    let path = std::path::Path::new(path);
    let inside = path.parent() == Some(p.paths.backups.as_path())
        || std::path::absolute(&p.paths.backups).ok().as_deref() == path.parent();
    // Inside, but taken (a link too, dangling or not): said so (the advice to name a file in
    // backups/ had read as if the path were outside it).
    if inside && path.symlink_metadata().is_ok() {
        return Some(Response::fail(
            exit::REFUSED,
            format!(
                "refused: {} exists; a backup is written only as a new file: name another",
                path.display()
            ),
        ));
    }
    if !inside {
        return Some(Response::fail(
            exit::REFUSED,
            format!(
                "refused: while the daemon runs it writes backups only as new files in {} (e.g. `autoprov backup {}/manual.backup`); stop it to write elsewhere",
                p.paths.backups.display(),
                p.paths.backups.display()
            ),
        ));
    }
    None
}

/// Answers one request on the engine thread (changes) or beside it (reads).
pub fn answer(
    p: &Pipeline<SledStore>,
    request: Request,
    caller: &Caller,
    upload: Option<(Upload, Vec<u8>)>,
    output: Output,
    state: &Mutex<EngineState>,
) -> Response {
    answer_streamed(p, request, caller, upload, None, output, state).into_response(output)
}

/// [`answer`], a long answer (`admins list`, the report of `process` or `sync`) left as its
/// body to write out (issue 14).
pub fn answer_streamed(
    p: &Pipeline<SledStore>,
    request: Request,
    caller: &Caller,
    upload: Option<(Upload, Vec<u8>)>,
    seen: Option<&Seen>,
    output: Output,
    state: &Mutex<EngineState>,
) -> Streamed {
    let request = match (request, upload) {
        (Request::Process { .. }, Some((upload, bytes))) => {
            let Caller::Unix(user) = caller else {
                return Streamed::Whole(Response::fail(
                    exit::USAGE,
                    "files are uploaded over SFTP or the control socket only",
                ));
            };
            if let Some(spooled) = &upload.spooled {
                // An upload over roster.max_bytes, written to disk by the socket's server:
                // filed from there, and rejected with its report.
                let answer = match std::fs::File::open(spooled) {
                    Ok(mut file) => {
                        let content = crate::engine::filing::Content::Stream(&mut file);
                        commands::process_upload(p, &upload.name, content, upload.dry_run, user)
                    }
                    Err(e) => {
                        let failed = Response::fail(
                            exit::FAILED,
                            format!(
                                "reading the upload {}: {e}; nothing was filed",
                                spooled.display()
                            ),
                        );
                        let asked = Request::Process {
                            name: upload.name.clone(),
                        };
                        asked.log_change(user, failed.exit);
                        Streamed::Whole(failed)
                    }
                };
                let _ = std::fs::remove_file(spooled);
                return answer;
            }
            let mut bytes = std::io::Cursor::new(bytes);
            let content = crate::engine::filing::Content::Stream(&mut bytes);
            return commands::process_upload(p, &upload.name, content, upload.dry_run, user);
        }
        (request, _) => request,
    };
    if let Request::Backup { path } = &request
        && let Some(refusal) = backup_target_refusal(p, path)
    {
        request.log_change(caller.name(), refusal.exit);
        return Streamed::Whole(refusal);
    }
    let is_status = matches!(request, Request::Status {});
    match commands::execute_streamed(p, request, caller, seen, output) {
        Streamed::Whole(mut response) if is_status && response.exit == exit::OK => {
            add_daemon_status(p, &mut response, state);
            Streamed::Whole(response)
        }
        answered => answered,
    }
}

/// How long no file arrived, and whether that is longer than `source.stale_after`.
fn quiet_time(
    p: &Pipeline<SledStore>,
    started_at: Option<SystemTime>,
) -> crate::api::Result<(Duration, bool)> {
    // The newest arrival: a processed file, or one still waiting in inbox/.
    let inbox = p.paths.folder("inbox");
    let waiting_arrival = p
        .waiting()?
        .iter()
        .filter_map(|name| std::fs::metadata(inbox.join(name)).ok())
        .filter_map(|m| m.modified().ok())
        .max();
    let last_arrival = p
        .last_received()?
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .into_iter()
        .chain(waiting_arrival)
        .max()
        .or(started_at);
    let quiet = last_arrival
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    Ok((quiet, quiet > p.cfg.source.stale_after))
}

fn add_daemon_status(p: &Pipeline<SledStore>, response: &mut Response, state: &Mutex<EngineState>) {
    let started_at = state.lock().expect("state lock").started_at;
    // The inbox and the ledger are read before the state is locked; when they cannot be
    // read, status still answers with everything else, and says so.
    let (quiet, stale, quiet_error) = match quiet_time(p, started_at) {
        Ok((quiet, stale)) => (quiet, stale, None),
        Err(e) => (Duration::ZERO, false, Some(format!("{e:#}"))),
    };
    let state = state.lock().expect("state lock");
    let source = state.source.as_ref().and_then(|s| s.status());
    let started = state.started_at.map(crate::util::rfc3339);
    response.json["daemon"] = json!({
        "running": true,
        "started_at": started,
        "listen": state.listen.map(|a| a.to_string()),
        "web": state.web.map(|a| a.to_string()),
        "last_error": state.last_error,
        "stale": stale,
        "quiet_for_seconds": quiet.as_secs(),
        "status_error": quiet_error,
        "backup": {
            "ok_at": state.backup.ok_at.map(crate::util::rfc3339),
            "failed_at": state.backup.failed.as_ref().map(|(at, _)| crate::util::rfc3339(*at)),
            "error": state.backup.failed.as_ref().map(|(_, why)| why),
        },
    });
    response.json["daemon"]["poll"] = serde_json::Value::Null;
    let mut text = format!("daemon:    running since {}", started.unwrap_or_default());
    if let Some(addr) = state.listen {
        text.push_str(&format!(", SFTP on {addr}"));
    }
    if let Some(addr) = state.web {
        text.push_str(&format!(", web section on http://{addr}/"));
    }
    text.push('\n');
    if let Some(e) = &state.last_error {
        text.push_str(&format!("LAST ERROR: {e}\n"));
    }
    if let Some((at, why)) = &state.backup.failed {
        // None since the start: the newest on disk is named (from an earlier run), where
        // "none since the start" had read as no backup at all.
        let newest = || {
            let newest = crate::backup::automatic(&p.paths).into_iter().next();
            match newest {
                Some(path) => format!(
                    "none since the start; the newest automatic backup on disk, by its name \
                     (not checked: `autoprov restore` checks it), is {}",
                    path.display()
                ),
                None => "none since the start, and no automatic backup on disk".into(),
            }
        };
        let ok = state.backup.ok_at.map_or_else(newest, crate::util::rfc3339);
        text.push_str(&format!(
            "BACKUP FAILED at {}: {why} (the last that went through: {ok}; tried again hourly)\n",
            crate::util::rfc3339(*at)
        ));
    }
    if let Some(e) = &quiet_error {
        text.push_str(&format!(
            "STATUS ERROR: reading inbox/ or the ledger: {e}\n"
        ));
    }
    if let Some((key, value, lines)) = source {
        response.json["daemon"][key] = value;
        text.push_str(&lines);
    }
    if stale {
        text.push_str(&format!(
            "WARNING:   no file arrived for {} (source.stale_after = {}): is the HR export still running?\n",
            humantime::format_duration(Duration::from_secs(quiet.as_secs())),
            humantime::format_duration(p.cfg.source.stale_after)
        ));
    }
    response.text.push_str(&text);
}

/// The answer to a request whose work panicked (logged): exit 5, the engine going on.
pub(super) fn panicked() -> Response {
    let message =
        "failed: the request hit an internal error (a panic; see the log and `autoprov status`)";
    tracing::error!("{message}");
    Response::fail(exit::FAILED, message)
}
