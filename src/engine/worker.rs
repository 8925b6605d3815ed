//! The engine thread: runs jobs one at a time, survives a panic in one, and answers requests.

use super::answer::answer_streamed;
use super::commands::Streamed;
use super::handle::EngineHandle;
use super::jobs::{Job, SourceJob};
use super::pipeline::Pipeline;
use super::state::EngineState;
use crate::api::{Request, Response, exit};
use crate::backup::Rotated;
use crate::store::SledStore;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Starts the engine thread over `pipeline`; it ends once every handle is dropped.
pub fn start(
    pipeline: Arc<Pipeline<SledStore>>,
    state: Arc<Mutex<EngineState>>,
    shutdown: CancellationToken,
) -> anyhow::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
    let (handle, jobs) = EngineHandle::new(pipeline.clone(), state.clone());
    let beat = handle.heartbeat();
    let thread = std::thread::Builder::new()
        .name("autoprov-engine".into())
        .spawn(move || run(pipeline, jobs, (state, &beat), shutdown))?;
    Ok((handle, thread))
}

fn run(
    pipeline: Arc<Pipeline<SledStore>>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    (state, beat): (Arc<Mutex<EngineState>>, &super::heartbeat::Heartbeat),
    shutdown: CancellationToken,
) {
    while let Some(job) = jobs.blocking_recv() {
        // A panic (a bug meeting a hostile file) fails that job, not the engine: the file
        // stays in inbox/ and status shows the error.
        beat.busy();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(&pipeline, job, &state, &shutdown)
        }));
        beat.idle();
        if outcome.is_err() {
            let message =
                "the engine hit an internal error (a panic; see the log); the job was abandoned"
                    .to_string();
            tracing::error!("{message}");
            state.lock().expect("state lock").last_error = Some(message);
        }
        stop_if_unwritten(&pipeline, &state, &shutdown);
    }
    if let Err(e) = crate::store::Store::flush(&pipeline.store) {
        tracing::error!("flushing the store at shutdown: {e}");
    }
}

/// Stops the daemon once the store could not write a change to disk: it is opened again
/// from disk by the next start (systemd's `Restart=on-failure`), not answered from memory.
fn stop_if_unwritten(
    pipeline: &Pipeline<SledStore>,
    state: &Mutex<EngineState>,
    shutdown: &CancellationToken,
) {
    if shutdown.is_cancelled() {
        return;
    }
    if let Some(why) = crate::store::Store::write_failed(&pipeline.store) {
        let message = super::commands::stops_unwritten(&why);
        tracing::error!("stopping: {message}");
        state.lock().expect("state lock").last_error = Some(message);
        shutdown.cancel();
    }
}

fn run_job(
    pipeline: &Pipeline<SledStore>,
    job: Job,
    state: &Mutex<EngineState>,
    shutdown: &CancellationToken,
) {
    match job {
        Job::Scan => process_waiting(pipeline, state, shutdown),
        Job::Backup => {
            let outcome = automatic_backup(pipeline, shutdown);
            let backup = &mut state.lock().expect("state lock").backup;
            match outcome {
                Ok(()) => {
                    *backup = super::state::BackupState {
                        ok_at: Some(std::time::SystemTime::now()),
                        failed: None,
                    }
                }
                Err(why) => backup.failed = Some((std::time::SystemTime::now(), why)),
            }
            return;
        }
        Job::Source(job) => {
            source_job(pipeline, job);
            return;
        }
        Job::Request {
            request,
            caller,
            upload,
            seen,
            output,
            stream,
            reply,
        } => {
            // Queued when the stop came: answered, not run. Its asker is still connected
            // (`control::server` keeps a change's connection until it is answered) and
            // learns that nothing was done; the job the engine was running is finished.
            // Its change line, whatever becomes of it (README: each change asked for gets one).
            let change = request.change_line();
            let logged = |exit: u8| {
                if let Some(line) = &change {
                    crate::api::log_change(line, caller.name(), exit);
                }
            };
            if shutdown.is_cancelled() {
                logged(exit::UNREACHABLE);
                let _ = reply.send(Streamed::Whole(Response::fail(
                    exit::UNREACHABLE,
                    "the daemon is stopping; nothing was done: run the command again once it is up",
                )));
                return;
            }
            let decides = matches!(request, Request::FilesDecide { .. });
            // A file filed for real at someone's request (`process`, an approval) clears the
            // engine's last error as one processed from inbox/ does: `/healthz` had said the
            // last file failed until the next upload; a dry run does not (a test run clears no
            // failure that stands), nor a request that failed.
            pipeline.take_filed_for_real();
            // A panic here fails this request with exit 5, not the client's "daemon stopped"
            // (4): the engine goes on (see `run`).
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let answered = answer_streamed(
                    pipeline,
                    request,
                    &caller,
                    upload,
                    seen.as_ref(),
                    output,
                    state,
                );
                match stream {
                    true => answered,
                    false => Streamed::Whole(answered.into_response(output)),
                }
            }))
            .unwrap_or_else(|_| {
                logged(exit::FAILED);
                Streamed::Whole(super::answer::panicked())
            });
            if pipeline.take_filed_for_real() && answered.exit() != exit::FAILED {
                state.lock().expect("state lock").last_error = None;
            }
            let _ = reply.send(answered);
            if decides {
                process_waiting(pipeline, state, shutdown);
            }
        }
    }
    tell_source_of_handoffs(pipeline, state);
}

/// Writes the automatic backup, unless the store is unchanged since the newest one; why
/// not when it failed.
fn automatic_backup(p: &Pipeline<SledStore>, stop: &CancellationToken) -> Result<(), String> {
    match crate::backup::rotate(&p.store, &p.paths, &|| stop.is_cancelled()) {
        Ok(Rotated::Written(path)) => {
            tracing::info!(backup = %path.display(), "store backed up");
        }
        Ok(Rotated::Unchanged(path)) => tracing::info!(
            newest = %path.display(),
            "automatic backup unchanged: the store holds what the newest backup holds; none written"
        ),
        Err(e) if stop.is_cancelled() => {
            tracing::info!("automatic backup not finished: {e:#}");
            return Err(format!("{e:#}"));
        }
        Err(e) => {
            tracing::error!("automatic backup failed: {e:#}; tried again within the hour");
            return Err(format!("{e:#}"));
        }
    }
    Ok(())
}

fn source_job(p: &Pipeline<SledStore>, job: SourceJob) {
    match job {
        SourceJob::Known(origin, reply) => {
            let _ = reply.send(p.remote_known(&origin));
        }
        SourceJob::File(file, reply) => {
            let _ = reply.send(p.file_in(&file.tmp, &file.name, &file.origin));
        }
        SourceJob::Fetched {
            tmp,
            name,
            asker,
            reply,
        } => {
            let _ = reply.send(p.file_fetched(&tmp, &name, asker.as_deref()));
        }
        SourceJob::Handoffs(reply) => {
            let _ = reply.send(p.remote_work());
        }
        SourceJob::HandedOff(id, reply) => {
            let _ = reply.send(p.remote_done(id));
        }
    }
}

/// Wakes the source when a decided file waits for its finishing work.
fn tell_source_of_handoffs(p: &Pipeline<SledStore>, state: &Mutex<EngineState>) {
    let source = state.lock().expect("state lock").source.clone();
    let Some(source) = source else {
        return;
    };
    match p.remote_work() {
        Ok(work) if !work.is_empty() => source.handoffs_waiting(),
        Ok(_) => {}
        Err(e) => tracing::error!("reading the ledger for files the source must finish: {e:#}"),
    }
}

/// Processes waiting files in order until none is left, one is held, or shutdown.
fn process_waiting(
    p: &Pipeline<SledStore>,
    state: &Mutex<EngineState>,
    shutdown: &CancellationToken,
) {
    // Files committed whose filing failed (an I/O error, a flush that failed), a decided
    // held file's too: finished at each scan, not only at the next start.
    match p.finish_all_unfiled() {
        Ok(0) => {}
        Ok(_) => state.lock().expect("state lock").last_error = None,
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!("{message}; retried at the next scan");
            state.lock().expect("state lock").last_error = Some(message);
            return;
        }
    }
    if let Err(e) = p.rename_unclean() {
        tracing::error!("renaming inbox/'s names that are not UTF-8: {e:#}");
    }
    let waiting = match p.waiting() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("listing inbox/: {e:#}");
            return;
        }
    };
    for name in waiting {
        if shutdown.is_cancelled() {
            return;
        }
        match p.held() {
            Ok(Some(held)) => {
                tracing::info!(held = %held.stored_as, "files wait in inbox/ until the held file is approved or rejected");
                return;
            }
            Ok(None) => {}
            Err(e) => {
                let message = format!("reading the ledger before inbox/{name}: {e:#}");
                tracing::error!("{message}; the file stays in inbox/");
                state.lock().expect("state lock").last_error = Some(message);
                return;
            }
        }
        match p.process(&name) {
            // A dry run leaves it: a failure that stands is not cleared by a test run.
            Ok(report) if report.status == crate::core::report::ReportStatus::DryRun => {}
            Ok(_) => state.lock().expect("state lock").last_error = None,
            Err(e) => {
                // The file stays in inbox/ and is retried at the next scan (e.g. after disk
                // space is freed); one committed is filed then (it may be filed already, but
                // for a folder's sync).
                let message = format!("processing inbox/{name}: {e:#}");
                let next = match e.committed() {
                    Some(_) => "the next scan finishes its filing",
                    None => "the file stays in inbox/ and is retried at the next scan",
                };
                tracing::error!("{message}; {next}");
                state.lock().expect("state lock").last_error = Some(message);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed automatic backup is in `status` (when, why, the last that went through)
    /// until one goes through; it had been a log line only.
    #[test]
    fn a_failed_automatic_backup_is_told_in_status_until_one_goes_through() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let state: Mutex<EngineState> = Mutex::default();
        let shutdown = CancellationToken::new();
        let status = |p: &Pipeline<SledStore>| {
            let caller = crate::api::Caller::Unix("root".into());
            let output = crate::api::Output::Both;
            let r =
                super::super::answer::answer(p, Request::Status {}, &caller, None, output, &state);
            (r.text, r.json["daemon"]["backup"].clone())
        };
        // backups/ cannot be made: a file has its name.
        std::fs::write(&p.paths.backups, b"in the way").unwrap();
        run_job(&p, Job::Backup, &state, &shutdown);
        let (text, json) = status(&p);
        assert!(text.contains("BACKUP FAILED at "), "{text}");
        assert!(
            text.contains("none since the start, and no automatic backup on disk"),
            "{text}"
        );
        assert!(
            json["error"].is_string() && json["ok_at"].is_null(),
            "{json:#}"
        );
        std::fs::remove_file(&p.paths.backups).unwrap();
        // One from an earlier run on disk: named, as unchecked (it had read as no backup at
        // all); a folder under such a name is none.
        std::fs::create_dir(&p.paths.backups).unwrap();
        let earlier = p.paths.backups.join("autoprov-20260101T000000Z.backup");
        std::fs::write(&earlier, b"").unwrap();
        std::fs::create_dir(p.paths.backups.join("autoprov-20260102T000000Z.backup")).unwrap();
        state.lock().unwrap().backup.failed = Some((std::time::SystemTime::now(), "full".into()));
        let (text, _) = status(&p);
        let named = format!(
            "by its name (not checked: `autoprov restore` checks it), is {}",
            earlier.display()
        );
        assert!(text.contains(&named), "{text}");
        std::fs::remove_file(&earlier).unwrap();
        std::fs::remove_dir(p.paths.backups.join("autoprov-20260102T000000Z.backup")).unwrap();
        run_job(&p, Job::Backup, &state, &shutdown);
        let (text, json) = status(&p);
        assert!(!text.contains("BACKUP FAILED"), "{text}");
        assert!(
            json["error"].is_null() && json["ok_at"].is_string(),
            "{json:#}"
        );
    }

    /// A file filed at someone's request (`process`) clears the engine's last error as one
    /// taken from inbox/ does: `/healthz` had kept saying the last file failed until the
    /// next upload. A dry run does not (a test run clears no failure that stands), unless
    /// the request filed a waiting file for real before it.
    #[test]
    fn a_file_processed_on_request_clears_the_last_error() {
        let (_dir, p) = super::super::tests::pipeline_on("", |folder| {
            crate::store::SledStore::open(folder).unwrap()
        });
        let state: Mutex<EngineState> = Mutex::default();
        let failed = || state.lock().unwrap().last_error = Some("inbox/x.csv failed".into());
        let shutdown = CancellationToken::new();
        let inbox = p.paths.folder("inbox");
        let roster = b"employee_id,email\nE1,e1@x.io\n";
        let ask = |name: &str| {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job::Request {
                request: Request::Process { name: name.into() },
                caller: crate::api::Caller::Unix("root".into()),
                upload: None,
                seen: None,
                output: crate::api::Output::Text,
                stream: false,
                reply,
            };
            run_job(&p, job, &state, &shutdown);
            answer.blocking_recv().unwrap().exit()
        };
        let standing = || state.lock().unwrap().last_error.is_some();
        failed();
        assert_eq!(ask("missing.csv"), exit::USAGE);
        assert!(standing(), "nothing processed");
        std::fs::write(inbox.join("d.dryrun.csv"), roster).unwrap();
        assert_eq!(ask("d.dryrun.csv"), exit::OK);
        assert!(standing(), "a dry run clears nothing");
        std::fs::write(inbox.join("r.csv"), roster).unwrap();
        assert_eq!(ask("r.csv"), exit::OK);
        assert!(!standing());
        // A waiting file applied before the dry run asked for clears it.
        failed();
        std::fs::write(inbox.join("y.csv"), b"employee_id,email\nE2,e2@x.io\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(inbox.join("z.dryrun.csv"), roster).unwrap();
        assert_eq!(ask("z.dryrun.csv"), exit::OK);
        assert!(!standing(), "y.csv was applied");
    }
}
