//! Running commands without a daemon: open the store directly, copy files into inbox/.

use crate::commands::{self, Request, Response, exit};
use crate::config::Config;
use crate::pipeline::{DRY_RUN_SUFFIX, Paths, Pipeline};
use crate::store::SledStore;
use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::Path;

/// The name of the calling Unix user (for authorization and the audit log).
pub fn caller() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}

/// Opens the store and the pipeline, finishing any filing interrupted by a crash.
pub fn open(cfg: Config) -> Result<Pipeline<SledStore>> {
    let paths = Paths::new(&cfg.data_dir);
    fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;
    let store = SledStore::open(&paths.store).with_context(|| {
        format!(
            "opening the store {} (is the daemon or another autoprov command using it?)",
            paths.store.display()
        )
    })?;
    let pipeline = Pipeline::new(cfg, store)?;
    pipeline.recover()?;
    Ok(pipeline)
}

/// Copies `file` into inbox/ as a complete file (temp name, fsync, rename) and returns its name there.
pub fn copy_into_inbox(paths: &Paths, file: &Path, dry_run: bool) -> Result<String> {
    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let original = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the file has no name")?;
    let mut name = original.trim_start_matches('.').to_string();
    if dry_run && !name.ends_with(DRY_RUN_SUFFIX) {
        name = match name.strip_suffix(".csv") {
            Some(stem) => format!("{stem}{DRY_RUN_SUFFIX}"),
            None => format!("{name}{DRY_RUN_SUFFIX}"),
        };
    }
    let inbox = paths.folder("inbox");
    let mut candidate = name.clone();
    let mut n = 1;
    while inbox.join(&candidate).exists() {
        n += 1;
        candidate = match name.rfind('.') {
            Some(i) if i > 0 => format!("{}-{n}{}", &name[..i], &name[i..]),
            _ => format!("{name}-{n}"),
        };
    }
    let tmp = inbox.join(format!(".{candidate}.part"));
    {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, inbox.join(&candidate))?;
    crate::util::fsync_dir(&inbox)?;
    Ok(candidate)
}

/// Runs one request against the store directly.
pub fn execute(cfg: Config, request: Request) -> Response {
    match open(cfg) {
        Ok(p) => commands::execute(&p, request, &caller()),
        Err(e) => Response::fail(exit::USAGE, format!("error: {e:#}")),
    }
}

/// `process FILE`: copy, then run the pipeline until that file is done.
pub fn process(cfg: Config, file: &Path, dry_run: bool) -> Response {
    let run = || -> Result<Response> {
        let p = open(cfg)?;
        let user = caller();
        if !p.cfg.is_org_admin(&user) || !p.cfg.sso.enabled {
            // Let execute() give the refusal before anything is copied.
            return Ok(commands::execute(
                &p,
                Request::Process {
                    name: String::new(),
                },
                &user,
            ));
        }
        if let Some(held) = p.held()? {
            return Ok(Response::fail(
                exit::REFUSED,
                format!(
                    "refused: file {} ({}) is held; decide it with `autoprov files approve {}` or `reject {}` first",
                    held.id, held.stored_as, held.id, held.id
                ),
            ));
        }
        let name = copy_into_inbox(&p.paths, file, dry_run)?;
        Ok(commands::execute(&p, Request::Process { name }, &user))
    };
    run().unwrap_or_else(|e| Response::fail(exit::USAGE, format!("error: {e:#}")))
}
