//! Every command of SPEC §7 executed against the pipeline. The CLI runs requests here
//! directly when no daemon runs; the daemon runs the same requests for callers of the
//! control socket, so both paths print the same thing.

mod admins;
mod files;
mod last_roster;
mod listing;
mod rules;
mod stale;

pub use listing::{Filter, Listing};

use crate::api::error::Context as _;
use crate::api::render::{report_exit, report_response};
use crate::api::report_out::write_report;
use crate::api::seen::Seen;
use crate::api::{Caller, Output, Request, Response, exit, person_refusal, refusal};
use crate::core::report::{Report, ReportStatus};
use crate::engine::filing::Content;
use crate::engine::pipeline::Pipeline;
use crate::engine::roster_file::FileBytes;
use crate::store::{AuditNote, Store};
use crate::util::now_rfc3339;
use std::fs::File;
use std::path::PathBuf;

/// The refusal a request meets before it runs: changes need an org admin, provisioning needs SSO.
pub fn precheck<S: Store>(p: &Pipeline<S>, req: &Request, caller: &Caller) -> Option<Response> {
    if req.is_change() {
        match caller {
            Caller::Unix(user) if !p.cfg.is_org_admin(user) => return Some(refusal(user)),
            Caller::Unix(_) => {}
            // Checked here, on the engine thread, so a role changed by the file before this
            // request counts, not the role the web section saw when the form was posted.
            Caller::Person(email) => match admins::active_role(p, email) {
                Err(e) => return Some(e.response()),
                Ok(role) if !p.cfg.web.may_change(email, role.as_deref()) => {
                    return Some(person_refusal(email));
                }
                Ok(_) => {}
            },
        }
    }
    if req.provisions() && !p.cfg.sso.enabled {
        return Some(Response::fail(
            exit::USAGE,
            "refused: [sso] enabled = true is not set. autoprov provisions admins who sign in through SSO only; enable SSO in the config first",
        ));
    }
    None
}

/// Runs one request for the Unix user `caller`.
pub fn execute<S: Store>(p: &Pipeline<S>, req: Request, caller: &str, output: Output) -> Response {
    execute_as(p, req, &Caller::Unix(caller.to_string()), output)
}

/// Runs one request for `caller` (a Unix user or a person of the web section), its answer
/// whole.
pub fn execute_as<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &Caller,
    output: Output,
) -> Response {
    execute_streamed(p, req, caller, None, output).into_response(output)
}

/// An answer that may be written out as it is made rather than built whole.
pub enum Streamed {
    /// The whole answer.
    Whole(Response),
    /// A long answer (issue 14): its body, to write out.
    Body(Body),
}

/// The body of a long answer, written out as the CLI prints it rather than built whole.
pub enum Body {
    /// `admins list`: exit 0 (see [`Listing::write`]).
    Listing(Box<Listing>),
    /// The report of `process` or `sync` (see [`write_report`]), with its exit code, and
    /// where its text was filed, if it was.
    Report(Box<Report>, Option<PathBuf>),
}

impl Body {
    /// The exit code of the answer.
    pub fn exit(&self) -> u8 {
        match self {
            Body::Listing(_) => exit::OK,
            Body::Report(report, _) => report_exit(report),
        }
    }

    /// Lets go of the answer in a process that exits next: a report's memory is left to the
    /// exit (freeing a first import's 950k changes one by one took ~0.05 s on one core).
    pub fn let_go_at_exit(self) {
        match self {
            Body::Report(report, _) => std::mem::forget(report),
            listing => drop(listing),
        }
    }

    /// Writes the answer to `out`: what printing its `json` (`json`) or `text` prints.
    pub fn write<W: std::io::Write>(&self, out: &mut W, json: bool) -> std::io::Result<()> {
        match self {
            Body::Listing(listing) => listing.write(out, json),
            Body::Report(report, filed) => {
                // The text filed is what `write_report` writes of the same report: copied,
                // not written again (a first import's is 88 MB, 0.2 s to write), a MiB at a
                // time (8 KiB reads, `io::copy`'s, were 11k system calls there). `out` is
                // generic so that the CLI's buffered stdout is known here: `io::copy` then
                // has the kernel copy the file (`sendfile`, `splice`, `copy_file_range`),
                // ~30 ms of copying through this process at the end of a first import.
                match filed.as_ref().filter(|_| !json).map(File::open) {
                    Some(Ok(text)) => {
                        std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, text), out)?;
                        out.flush()
                    }
                    _ => write_report(report, out, json),
                }
            }
        }
    }
}

impl Streamed {
    /// The exit code of the answer.
    pub fn exit(&self) -> u8 {
        match self {
            Streamed::Whole(response) => response.exit,
            Streamed::Body(body) => body.exit(),
        }
    }

    /// The answer whole.
    pub fn into_response(self, output: Output) -> Response {
        match self {
            Streamed::Whole(response) => response,
            Streamed::Body(Body::Listing(listing)) => listing.response(output),
            Streamed::Body(Body::Report(report, _)) => report_response(&report, output),
        }
    }

    /// A report to write out; `filed`: where its text was filed (`sync`'s report names
    /// the file it re-evaluated, whose text is that file's own report, not this one).
    fn report(report: Report, filed: Option<PathBuf>) -> Streamed {
        Streamed::Body(Body::Report(Box::new(report), filed))
    }
}

/// Runs one request for `caller`: `admins list` and the report of `process` and `sync` come
/// back as a [`Body`] to write out (issue 14: a million accounts or changes), every other
/// answer whole ([`execute_as`] takes every answer whole).
pub fn execute_streamed<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &Caller,
    seen: Option<&Seen>,
    output: Output,
) -> Streamed {
    // Each change asked for, done or refused, gets a log line with who asked (a security
    // team reads the journal, not only `autoprov audit`).
    let change = req.change_line();
    let answer = answer(p, req, caller, seen, output);
    if let Some(change) = change {
        crate::api::log_change(&change, caller.name(), answer.exit());
    }
    answer
}

fn answer<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &Caller,
    seen: Option<&Seen>,
    output: Output,
) -> Streamed {
    if let Some(why) = p.store.write_failed() {
        return Streamed::Whole(Response::fail(exit::FAILED, unwritten(&why)));
    }
    if let Some(refusal) = precheck(p, &req, caller) {
        return Streamed::Whole(refusal);
    }
    match seen.map(|seen| stale::stale(p, seen)).transpose() {
        Ok(Some(Some(refusal))) => return Streamed::Whole(refusal),
        Err(e) => return Streamed::Whole(e.response()),
        Ok(_) => {}
    }
    // A rule edited from its page, as the page drew it (see `rules::edit_rule`).
    let drawn = matches!(seen, Some(Seen::Rule(..)));
    run(p, req, caller.name(), output, drawn).unwrap_or_else(|e| Streamed::Whole(e.response()))
}

/// The answer to every request once the store could not write a change to disk: its memory
/// may hold what the disk does not (an admin removed there had still signed in), so nothing
/// is answered from it until it is opened again (the daemon stops for that).
pub fn unwritten(why: &str) -> String {
    format!(
        "failed: the store could not write a change to disk ({why}); nothing is answered from \
         it until autoprov opens it again from disk (the daemon stops to restart: with \
         systemd it is restarted), where the last change may be missing: check once it runs \
         again; nothing was done"
    )
}

/// Why the daemon stops once the store could not write a change to disk (its log line,
/// `status`, and its last word, which systemd keeps): not "nothing was done" of the change
/// that failed, which may be applied or not.
pub fn stops_unwritten(why: &str) -> String {
    format!(
        "the store could not write a change to disk ({why}); the daemon stops so that it \
         reads the store from disk again when started (systemd restarts it), where the last \
         change may be missing: check `autoprov files list` and `autoprov status` once it \
         runs again"
    )
}

fn run<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &str,
    output: Output,
    drawn: bool,
) -> crate::api::Result<Streamed> {
    Ok(Streamed::Whole(match req {
        Request::Process { name } => return process(p, &name, None, caller, false),
        Request::Sync { force } => return Ok(Streamed::report(p.sync(caller, force)?, None)),
        Request::AdminsList {
            status,
            origin,
            rule,
        } => {
            return Ok(match admins::listing(p, status, origin, rule)? {
                Ok(listing) => Streamed::Body(Body::Listing(Box::new(listing))),
                Err(refusal) => Streamed::Whole(refusal),
            });
        }
        req @ (Request::RulesList {}
        | Request::RulesShow { .. }
        | Request::RulesAdd { .. }
        | Request::RulesEdit { .. }
        | Request::RulesDelete { .. }
        | Request::RulesEnable { .. }
        | Request::RulesCheck {}) => rules::run(p, req, caller, drawn)?,
        req @ (Request::AdminsShow { .. }
        | Request::AdminsAdd { .. }
        | Request::AdminsSet { .. }
        | Request::AdminsRemove { .. }
        | Request::AuthCheck { .. }) => admins::run(p, req, caller)?,
        req @ (Request::FilesList {}
        | Request::FilesShow { .. }
        | Request::FilesDecide { .. }
        | Request::Status {}
        | Request::Backup { .. }
        | Request::Audit { .. }) => files::run(p, req, caller, output)?,
        Request::Fetch {} => Response::fail(
            exit::UNREACHABLE,
            "`autoprov fetch` runs through the daemon, which fetches from the HR system",
        ),
    }))
}

/// `process` of a file handed over by the caller (CLI or control socket): the refusals come
/// before anything is filed, then the bytes go into inbox/ and through the pipeline; the
/// report comes back as its body to write out.
pub fn process_upload<S: Store>(
    p: &Pipeline<S>,
    original_name: &str,
    content: Content<'_>,
    dry_run: bool,
    caller: &str,
) -> Streamed {
    let answered = upload_answer(p, original_name, content, dry_run, caller);
    let asked = Request::Process {
        name: original_name.to_string(),
    };
    asked.log_change(caller, answered.exit());
    answered
}

/// [`process_upload`]'s answer.
fn upload_answer<S: Store>(
    p: &Pipeline<S>,
    original_name: &str,
    content: Content<'_>,
    dry_run: bool,
    caller: &str,
) -> Streamed {
    let probe = Request::Process {
        name: String::new(),
    };
    if let Some(refusal) = precheck(p, &probe, &Caller::Unix(caller.to_string())) {
        return Streamed::Whole(refusal);
    }
    let held = match p.held() {
        Ok(held) => held,
        Err(e) => return Streamed::Whole(e.response()),
    };
    if let Some(held) = held {
        let blocked = crate::api::error::Error::from(p.blocked_by(held));
        return Streamed::Whole(blocked.response());
    }
    // The pipeline reads the file back from inbox/, unless its bytes were read already (and
    // then not again); either way a large roster is held once.
    let filed = p.receive(original_name, content, dry_run, Some(caller));
    let (name, bytes) = match filed {
        Ok(filed) => filed,
        Err(e) => return Streamed::Whole(e.context("filing the file into inbox/").response()),
    };
    process(p, &name, bytes, caller, true).unwrap_or_else(|e| {
        // A failure (exit 5) changes nothing: the copy filed for this request goes, unless
        // it is the one committed before the failure.
        let ours_committed = e.committed().is_some_and(|c| c.name == name);
        if e.is_failure() && !ours_committed && !p.discard_received(&name) {
            // Kept, as the ledger in memory has it: said, or the file sent again had been
            // applied after this copy, which the next command took up unasked.
            let kept = crate::api::error::Error::failed_leaving(format!(
                "{}; its copy stays in inbox/{name}, which the next command or start files, or \
                 processes if its change is not on disk: do not send it again, see `autoprov \
                 files list` then",
                e.detail()
            ));
            return Streamed::Whole(kept.response());
        }
        Streamed::Whole(e.response())
    })
}

/// Takes `name`, the copy a request filed in inbox/, back out: what a request was refused
/// or not done is never applied later, unseen.
fn take_back<S: Store>(p: &Pipeline<S>, name: &str) -> crate::api::Result<()> {
    let inbox = p.paths.folder("inbox");
    std::fs::remove_file(inbox.join(name))
        .and_then(|()| crate::util::fsync_dir(&inbox))
        .with_context(|| format!("taking {name} out of inbox/"))?;
    p.forget_unmarked(name);
    Ok(())
}

/// Processes the files waiting in inbox/ in order until `name` is done, that one audited
/// as `caller`'s (the others as their source's). `bytes`: those of inbox/<name> when they
/// were read already.
fn process<S: Store>(
    p: &Pipeline<S>,
    name: &str,
    mut bytes: Option<FileBytes>,
    caller: &str,
    uploaded: bool,
) -> crate::api::Result<Streamed> {
    // The inbox watcher may have processed it first (a source filed it, then asked).
    if !name.is_empty()
        && !p.waiting()?.iter().any(|w| w == name)
        && let Some((done, filed)) = processed_already(p, name)?
    {
        return Ok(Streamed::report(done, Some(filed)));
    }
    if let Some(held) = p.held()? {
        return Err(p.blocked_by(held).into());
    }
    // Files committed whose filing failed are filed first, as a scan does: while one keeps
    // failing the files behind it wait (`process` had applied them past it).
    p.finish_all_unfiled()?;
    let waiting_now = p.waiting()?;
    for waiting in waiting_now.iter().cloned() {
        if p.stopping() {
            // The copy this request filed is taken back out: exit 4 says nothing was done,
            // and a script that sent the roster again had had it applied twice, the copy
            // left here first, audited as the asker's, its report seen by no one.
            if uploaded && waiting_now.iter().any(|w| w == name) {
                take_back(p, name)?;
                return Ok(Streamed::Whole(Response::fail(
                    exit::UNREACHABLE,
                    format!(
                        "the daemon is stopping; nothing was done ({name} was taken back out of \
                         inbox/): send it again once the daemon is up"
                    ),
                )));
            }
            return Ok(Streamed::Whole(Response::fail(
                exit::UNREACHABLE,
                format!(
                    "the daemon is stopping; {name} stays in inbox/ and is processed after it restarts"
                ),
            )));
        }
        let (read, by, ours) = match waiting == name {
            true => (bytes.take(), caller, uploaded),
            false => (None, crate::engine::pipeline::AUTOPROV, false),
        };
        let report = p
            .process_received(&waiting, read, by, ours)
            .with_context(|| format!("processing inbox/{waiting}"))?;
        if waiting == name {
            let filed = p.filed_text(&report);
            return Ok(Streamed::report(report, filed));
        }
        if report.status == ReportStatus::Held {
            // Refused means not applied, now or later: the copy this request filed is taken
            // out (left, it was applied unseen once the held file was decided); only a
            // file waiting in inbox/ under that name.
            if waiting_now.iter().any(|w| w == name) {
                take_back(p, name)?;
            }
            return Ok(Streamed::Whole(Response::fail(
                exit::REFUSED,
                format!(
                    "refused: an earlier file in inbox/, {waiting}, was held and blocks {name}, which was not processed and was taken out of inbox/: decide the held file with `autoprov files approve|reject`, then send {name} again"
                ),
            )));
        }
    }
    Ok(Streamed::Whole(Response::fail(
        exit::USAGE,
        format!("{name} is not waiting in inbox/"),
    )))
}

/// The report of the newest file in the ledger that had `name` in inbox/, with the exit
/// code `process` gives it, and where its text is (beside it).
fn processed_already<S: Store>(
    p: &Pipeline<S>,
    name: &str,
) -> crate::api::Result<Option<(Report, PathBuf)>> {
    let files = p.store.files()?;
    let Some(entry) = files.iter().rev().find(|f| f.name == name) else {
        return Ok(None);
    };
    let path = p.report_path(entry);
    let report: Report = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some((report, path.with_extension("txt"))))
}

pub(crate) fn note(user: &str, action: &str, detail: String) -> AuditNote {
    AuditNote {
        at: now_rfc3339(),
        user: user.to_string(),
        action: action.to_string(),
        detail,
    }
}

/// The role as configured (matched case-insensitively), or the refusal of an unknown one.
pub(crate) fn configured_role<S: Store>(p: &Pipeline<S>, role: &str) -> Result<String, Response> {
    p.cfg.role(role).map(str::to_string).ok_or_else(|| {
        Response::fail(
            exit::REFUSED,
            format!(
                "refused: role \"{role}\" is not in provisioning.roles ({})",
                p.cfg.provisioning.roles.join(", ")
            ),
        )
    })
}

pub(crate) fn no_rule(id: u64) -> Response {
    Response::fail(exit::NO, format!("no rule {id}: see `autoprov rules list`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_need_an_org_admin_and_reads_do_not() {
        assert!(Request::RulesDelete { id: 1 }.is_change());
        assert!(Request::Sync { force: false }.is_change());
        assert!(
            Request::FilesDecide {
                id: 1,
                approve: false
            }
            .is_change()
        );
        assert!(!Request::RulesList {}.is_change());
        assert!(
            !Request::AuthCheck {
                email: "a@b.c".into()
            }
            .is_change()
        );
        assert!(!Request::Status {}.is_change());
        // `fetch` changes state like `process` (it is one, through the daemon).
        assert!(Request::Fetch {}.is_change() && Request::Fetch {}.provisions());
    }

    #[test]
    fn an_io_failure_names_what_failed_and_that_nothing_was_changed() {
        let enospc = || {
            Err::<(), _>(std::io::Error::from_raw_os_error(28))
                .context("writing inbox/r.csv")
                .unwrap_err()
        };
        let r = enospc().response();
        assert_eq!(r.exit, exit::FAILED);
        assert_eq!(
            r.text,
            "failed: writing inbox/r.csv: No space left on device (os error 28); nothing was changed"
        );
        assert_eq!(r.json["error"], r.text.as_str());
    }

    /// A pipeline with SSO on and a fresh store under `dir`.
    fn pipeline_in(dir: &std::path::Path) -> Pipeline<crate::store::SledStore> {
        let config = dir.join("c.toml");
        std::fs::write(
            &config,
            format!("data_dir = {:?}\n[sso]\nenabled = true\n", dir.join("data")),
        )
        .unwrap();
        let cfg = crate::config::Config::load(Some(&config)).unwrap();
        let store =
            crate::store::SledStore::open(&crate::layout::Paths::new(&cfg.data_dir).store).unwrap();
        Pipeline::new(cfg, store).unwrap()
    }

    #[test]
    fn process_stops_between_files_when_the_daemon_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let name = p
            .receive(
                "r.csv",
                Content::Stream(&mut &b"Employee ID,Email\nE1,a@b.io\n"[..]),
                false,
                None,
            )
            .unwrap()
            .0;
        p.request_stop();
        let r = execute(
            &p,
            Request::Process { name: name.clone() },
            "root",
            Output::Both,
        );
        assert_eq!(r.exit, exit::UNREACHABLE, "{}", r.text);
        assert!(r.text.contains("stays in inbox/"), "{}", r.text);
        assert_eq!(p.waiting().unwrap(), vec![name]);
        assert!(p.store.files().unwrap().is_empty());
    }

    /// A file sent with `process` while the daemon stops before its turn is taken back out
    /// of inbox/, and the answer, exit 4, says nothing was done: left there, it was applied
    /// at the next start, audited as the sender's and its report seen by no one, while a
    /// script that sent it again on exit 4 had it applied twice.
    #[test]
    fn a_file_sent_with_process_while_the_daemon_stops_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        p.request_stop();
        let roster = b"Employee ID,Email\nE1,a@b.io\n";
        let r = upload_answer(
            &p,
            "r.csv",
            Content::Stream(&mut &roster[..]),
            false,
            "root",
        );
        let Streamed::Whole(r) = r else {
            panic!("not a refusal")
        };
        assert_eq!(r.exit, exit::UNREACHABLE, "{}", r.text);
        assert!(r.text.contains("nothing was done"), "{}", r.text);
        assert!(p.waiting().unwrap().is_empty(), "taken back out of inbox/");
        assert!(p.store.files().unwrap().is_empty());
    }

    /// A file sent with `process` is the sender's whoever processes it: the daemon killed
    /// before its turn leaves it in inbox/, and the next start audits it as theirs (it had
    /// been `autoprov`'s, as was one the inbox's scan took before the request).
    #[test]
    fn a_file_sent_with_process_is_the_senders_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let roster = b"Employee ID,Email\nE1,a@b.io\n";
        let content = Content::Stream(&mut &roster[..]);
        let (name, _) = p.receive("r.csv", content, false, Some("root")).unwrap();
        assert_eq!(p.waiting().unwrap(), std::slice::from_ref(&name));
        drop(p);
        let p = pipeline_in(dir.path());
        p.process(&name).unwrap();
        let audit = p.store.audit(None).unwrap();
        let entry = audit.last().unwrap();
        assert_eq!(entry.note.action, "file applied", "{entry:?}");
        assert_eq!(entry.note.user, "root", "{entry:?}");
        // Filed, it is nobody's request: a copy put back into inbox/ is not root's.
        let stored_as = p.store.files().unwrap().pop().unwrap().stored_as;
        let filed = p.paths.folder("processed").join(&stored_as);
        assert_eq!(crate::engine::asker::of(&filed), None);
        // Where no mark could be set, the daemon remembers the asker while it runs.
        p.asked_unmarked("again.csv", "root");
        std::fs::copy(&filed, p.paths.folder("inbox").join("again.csv")).unwrap();
        p.process("again.csv").unwrap();
        let audit = p.store.audit(None).unwrap();
        assert_eq!(audit.last().unwrap().note.user, "root");
        // Remembered until the file leaves inbox/, however it does: a filing that failed
        // after the commit and was finished by a later scan had left it for the next file
        // of that name (an SFTP upload audited as the earlier asker).
        p.asked_unmarked("third.csv", "root");
        std::fs::copy(&filed, p.paths.folder("inbox").join("third.csv")).unwrap();
        let blocked = ["processed", "held"].map(|f| p.paths.folder(f));
        for (i, folder) in blocked.iter().enumerate() {
            std::fs::rename(folder, dir.path().join(format!("aside{i}"))).unwrap();
            std::fs::write(folder, b"in the way").unwrap();
        }
        let third = p.process("third.csv");
        assert!(third.is_err(), "its filing fails: {third:?}");
        for (i, folder) in blocked.iter().enumerate() {
            std::fs::remove_file(folder).unwrap();
            std::fs::rename(dir.path().join(format!("aside{i}")), folder).unwrap();
        }
        assert_eq!(p.finish_all_unfiled().unwrap(), 1);
        if let Ok(Some(held)) = p.held() {
            p.reject(held.id, "root").unwrap();
        }
        std::fs::copy(&filed, p.paths.folder("inbox").join("third.csv")).unwrap();
        p.process("third.csv").unwrap();
        let audit = p.store.audit(None).unwrap();
        assert_eq!(audit.last().unwrap().note.user, "autoprov");
    }

    #[test]
    fn process_of_a_file_processed_meanwhile_answers_its_report() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let name = p
            .receive(
                "hris-x.csv",
                Content::Stream(&mut &b"Employee ID,Email\nE1,a@b.io\n"[..]),
                false,
                None,
            )
            .unwrap()
            .0;
        // The inbox watcher got to it first.
        p.process(&name).unwrap();
        let r = execute(&p, Request::Process { name }, "root", Output::Json);
        assert_eq!(r.exit, exit::OK, "{}", r.text);
        assert_eq!(r.json["status"], "applied");
        assert_eq!(r.json["file"], "hris-x.csv");
        let r = execute(
            &p,
            Request::Process {
                name: "other.csv".into(),
            },
            "root",
            Output::Json,
        );
        assert_eq!(r.exit, exit::USAGE, "{}", r.text);
    }

    #[test]
    fn the_text_printed_is_the_text_filed_and_json_is_written_from_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let roster = b"Employee ID,Email\nE1,a@b.io\nE2,b@b.io\n";
        let Streamed::Body(body) = process_upload(
            &p,
            "r.csv",
            Content::Stream(&mut &roster[..]),
            false,
            "root",
        ) else {
            panic!("a report to write out");
        };
        let Body::Report(report, Some(filed)) = &body else {
            panic!("a report filed");
        };
        let print = |json: bool| {
            let mut out = Vec::new();
            body.write(&mut out, json).unwrap();
            String::from_utf8(out).unwrap()
        };
        let text = print(false);
        assert_eq!(text, std::fs::read_to_string(filed).unwrap());
        assert_eq!(text, report.to_text());
        // Into a buffered file, as the CLI's stdout (the kernel copies it, after what the
        // buffer held).
        let printed = dir.path().join("printed");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&printed).unwrap());
        std::io::Write::write_all(&mut out, b"before\n").unwrap();
        body.write(&mut out, false).unwrap();
        drop(out);
        assert_eq!(
            std::fs::read_to_string(&printed).unwrap(),
            format!("before\n{text}")
        );
        let mut json = Vec::new();
        write_report(report, &mut json, true).unwrap();
        assert_eq!(print(true).as_bytes(), json);

        // Without its filed text (removed meanwhile), the text is written from the report.
        std::fs::remove_file(filed).unwrap();
        assert_eq!(print(false), report.to_text());
    }

    #[test]
    fn a_report_is_rendered_only_as_the_asker_prints_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let roster = b"Employee ID,Email\nE1,a@b.io\n";
        let mut seen = Vec::new();
        for output in [Output::Text, Output::Json, Output::Both] {
            let r = process_upload(
                &p,
                "r.dryrun.csv",
                Content::Stream(&mut &roster[..]),
                false,
                "root",
            )
            .into_response(output);
            assert_eq!(r.exit, exit::OK, "{}", r.text);
            let has_text = r.text.contains("DRY RUN");
            let has_json = r.json["status"] == "dry_run";
            seen.push((output, has_text, has_json));
        }
        assert_eq!(
            seen,
            vec![
                (Output::Text, true, false),
                (Output::Json, false, true),
                (Output::Both, true, true)
            ]
        );
        // An older client sends no `output`: it gets both.
        let env: crate::control::Envelope =
            serde_json::from_str(r#"{"request":{"command":"status"},"upload":null}"#).unwrap();
        assert_eq!(env.output, Output::Both);
    }

    /// Once the store could not write a change to disk, nothing is answered from its memory
    /// (an admin removed there but not on disk had still been denied, then allowed again
    /// after a restart): every request fails, reads and sign-ins too, also once the disk
    /// has room again; only opening the store again from disk ends it.
    #[test]
    fn nothing_is_answered_from_a_store_that_could_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let add = |id: &str| Request::AdminsAdd {
            employee_id: id.into(),
            email: format!("{id}@acme.example"),
            role: "IT Admin".into(),
        };
        assert_eq!(execute(&p, add("m1"), "root", Output::Text).exit, exit::OK);
        // The watermark cannot be written: the flush after the next change fails.
        let blocker = p.paths.store.join(".autoprov.watermark.tmp");
        std::fs::create_dir(&blocker).unwrap();
        let r = execute(&p, add("m2"), "root", Output::Text);
        assert_eq!(r.exit, exit::FAILED, "{}", r.text);
        assert!(r.text.contains("may be missing"), "{}", r.text);
        assert!(p.store.write_failed().is_some());
        std::fs::remove_dir(&blocker).unwrap();
        let check = Request::AuthCheck {
            email: "m1@acme.example".into(),
        };
        for req in [check, Request::Status {}, add("m3")] {
            let r = execute(&p, req, "root", Output::Text);
            assert_eq!(r.exit, exit::FAILED, "{}", r.text);
            assert!(r.text.contains("nothing is answered from it"), "{}", r.text);
        }
    }

    /// A manual admin's employee ID with a line break is refused (it had printed a line of
    /// its own in the audit log: a forged entry), and the audit log's text escapes what an
    /// entry holds, as a text report does.
    #[test]
    fn the_audit_log_keeps_each_entry_on_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let forged = "W1\n2026-12-07T03:10:00Z  it-lead  admins remove  removed W1";
        // Nor one padded to push its real role off the line past a fake one, nor one with a
        // character that shows as nothing, nor an overlong one.
        let padded = format!("M9 (m9@acme.example, Read-only Admin){}x", " ".repeat(200));
        let long = "E".repeat(201);
        for (id, why) in [
            (forged, "control character"),
            ("W1\u{2028}x", "control character"),
            ("W1\tx", "control character"),
            (padded.as_str(), "two spaces in a row"),
            ("W\u{200b}1", "shows as nothing"),
            ("W1\u{2800}\u{2800}x", "two spaces in a row"),
            (long.as_str(), "more than 200 characters"),
        ] {
            let r = execute(
                &p,
                Request::AdminsAdd {
                    employee_id: id.into(),
                    email: "w1@acme.example".into(),
                    role: "IT Admin".into(),
                },
                "root",
                Output::Text,
            );
            assert_eq!(r.exit, exit::USAGE, "{}", r.text);
            assert!(r.text.contains(why), "{}", r.text);
        }
        // A rule's name likewise; and names equal as shown are one name.
        let add = |name: &str| Request::RulesAdd {
            name: name.into(),
            role: "IT Admin".into(),
            when: vec!["department = IT".into()],
            strict: false,
            accept: None,
        };
        let r = execute(&p, add("Helpdesk  x"), "root", Output::Text);
        assert_eq!(r.exit, exit::USAGE, "{}", r.text);
        assert_eq!(
            execute(&p, add("Jos\u{e9}"), "root", Output::Text).exit,
            exit::OK
        );
        let r = execute(&p, add("Jose\u{301}"), "root", Output::Text);
        assert_eq!(r.exit, exit::REFUSED, "{}", r.text);
        assert_eq!(
            execute(&p, add("Help Desk"), "root", Output::Text).exit,
            exit::OK
        );
        for same in ["Help\u{a0}Desk", "Help\u{2800}Desk"] {
            let r = execute(&p, add(same), "root", Output::Text);
            assert_eq!(r.exit, exit::REFUSED, "{same:?}: {}", r.text);
        }
        // A quote in a name is doubled where the name is shown quoted (it could end it).
        let r = execute(&p, add(r#"Help" -> Read-only Admin"#), "root", Output::Text);
        assert_eq!(r.exit, exit::OK, "{}", r.text);
        assert!(
            r.text
                .contains(r#""Help"" -> Read-only Admin" -> IT Admin"#),
            "{}",
            r.text
        );
        let listed = execute(&p, Request::RulesList {}, "root", Output::Text).text;
        assert!(
            listed.contains(r#""Help"" -> Read-only Admin" -> IT Admin"#),
            "{listed}"
        );
        assert!(p.store.accounts().unwrap().is_empty());
        p.store
            .append_audit(crate::store::AuditNote {
                at: "2026-12-07T03:00:00Z".into(),
                user: "root".into(),
                action: "admins add".into(),
                detail: forged.into(),
            })
            .unwrap();
        let r = execute(&p, Request::Audit { since: None }, "root", Output::Text);
        assert_eq!(r.exit, exit::OK, "{}", r.text);
        // The three rules added above, and the forged entry on one line.
        assert_eq!(r.text.lines().count(), 4, "{}", r.text);
        assert!(r.text.contains("W1\\n2026"), "{}", r.text);
    }

    #[test]
    fn a_person_changes_only_with_a_right_checked_by_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline_in(dir.path());
        let add = |id: &str, email: &str, role: &str| Request::AdminsAdd {
            employee_id: id.into(),
            email: email.into(),
            role: role.into(),
        };
        let root = |req| execute(&p, req, "root", Output::Json);
        // An ID that /admins/{employee_id} cannot name (a browser resolves `..`).
        for dots in [".", ".."] {
            let r = root(add(dots, "dots@acme.example", "IT Admin"));
            assert_eq!(r.exit, exit::USAGE, "{}", r.text);
            assert!(r.text.contains("cannot name it"), "{}", r.text);
        }
        assert_eq!(
            root(add("M1", "it@acme.example", "IT Admin")).exit,
            exit::OK
        );
        assert_eq!(
            root(add("M2", "boss@acme.example", "Super Admin")).exit,
            exit::OK
        );
        let rule = || Request::RulesAdd {
            name: format!("r{}", p.store.rules().unwrap().len()),
            role: "IT Admin".into(),
            when: vec!["department = IT".into()],
            strict: false,
            accept: None,
        };
        let person = |email: &str| Caller::Person(email.into());
        // An IT Admin, an unknown email, and a Unix user's name as an email: refused.
        for email in ["it@acme.example", "nobody@acme.example", "root"] {
            let r = execute_as(&p, rule(), &person(email), Output::Json);
            assert_eq!(r.exit, exit::REFUSED, "{email}: {}", r.text);
            assert!(r.text.contains("web.org_admin_roles"), "{}", r.text);
        }
        assert!(p.store.rules().unwrap().is_empty());
        // A Super Admin changes, audited by email; reads need no right.
        let r = execute_as(&p, rule(), &person("BOSS@acme.example"), Output::Json);
        assert_eq!(r.exit, exit::OK, "{}", r.text);
        let audit = p.store.audit(None).unwrap();
        assert_eq!(audit.last().unwrap().note.user, "BOSS@acme.example");
        let r = execute_as(
            &p,
            Request::RulesList {},
            &person("nobody@acme.example"),
            Output::Json,
        );
        assert_eq!(r.exit, exit::OK);
        // Once the account is inactive, the same person is refused.
        let off = Request::AdminsSet {
            id: "M2".into(),
            role: None,
            status: Some("inactive".into()),
        };
        assert_eq!(root(off).exit, exit::OK);
        let r = execute_as(&p, rule(), &person("boss@acme.example"), Output::Json);
        assert_eq!(r.exit, exit::REFUSED, "{}", r.text);
        // An edit that names nothing to change is a usage error, and audits nothing.
        let audited = p.store.audit(None).unwrap().len();
        let nothing = Request::RulesEdit {
            id: 1,
            name: None,
            role: None,
            when: vec![],
            strict: false,
            accept: None,
        };
        let r = root(nothing);
        assert_eq!(r.exit, exit::USAGE, "{}", r.text);
        assert!(r.text.contains("--name, --role or --when"), "{}", r.text);
        assert_eq!(p.store.audit(None).unwrap().len(), audited);
    }

    #[test]
    fn requests_round_trip_as_json() {
        let r = Request::RulesAdd {
            name: "n".into(),
            role: "IT Admin".into(),
            when: vec!["department = IT".into()],
            strict: true,
            accept: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"command\":\"rules_add\""), "{text}");
        let back: Request = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Request::RulesAdd { strict: true, .. }));
    }
}
