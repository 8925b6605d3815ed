//! The `autoprov` binary: parse arguments, load config, dispatch, map errors to exit codes.
#![deny(unsafe_code)]

use autoprov::api::{Output, Request, Response, exit};
use autoprov::cli::{Cli, Command, TokenCommand};
use autoprov::config::Config;
use autoprov::local;
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a million-row roster makes millions of small
/// allocations, and glibc spent a quarter of a re-sync in `malloc_consolidate`/`unlink_chunk`
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process but in the memory it advises them for
/// (`PR_THP_DISABLE_EXCEPT_ADVISED`, Linux 6.18); off everywhere on a kernel without that.
/// The flag is passed by hand: neither nix nor rustix passes it.
fn huge_pages_only_where_asked() -> nix::Result<()> {
    const PR_THP_DISABLE_EXCEPT_ADVISED: nix::libc::c_ulong = 1 << 1;
    #[allow(unsafe_code)]
    // SAFETY: prctl with integer arguments only: no memory of this process is read or written.
    let set = unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_THP_DISABLE,
            1 as nix::libc::c_ulong,
            PR_THP_DISABLE_EXCEPT_ADVISED,
            0 as nix::libc::c_ulong,
            0 as nix::libc::c_ulong,
        )
    };
    match nix::errno::Errno::result(set) {
        Ok(_) => Ok(()),
        // An older kernel refuses the flag (EINVAL).
        Err(_) => nix::sys::prctl::set_thp_disable(true),
    }
}

fn main() -> ExitCode {
    restrict_umask();
    // No transparent huge pages but where asked for: the kernel zeroes a whole 2 MB page on
    // first touch, and with mimalloc's arenas that was half the time of a million-row import
    // (BENCHMARKS.md). mimalloc reserves its first arena before `main`, so it is built not to
    // ask for them itself (its `no_thp` feature): that arena's two huge pages were ~1.3 ms of
    // every run. A roster's bytes, read whole, ask for them (`roster_file`).
    let thp_off = huge_pages_only_where_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "autoprov: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    // `status` only, the config check (`run` has the SFTP server check its users as it
    // starts): a key's typo must not make `auth check` (the sign-in hook) or any other
    // command refuse to run.
    if matches!(cli.command, Command::Status)
        && let Err(e) = autoprov::ingest::check_config(&cfg)
    {
        let file = cfg.file.display();
        let _ = writeln!(std::io::stderr(), "autoprov: invalid config {file}: {e:#}");
        return ExitCode::from(exit::USAGE);
    }
    autoprov::logging::init(&cfg, cli.log_format);
    if let Err(e) = thp_off {
        tracing::debug!("transparent huge pages stay on: {e}");
    }
    let output = if cli.json { Output::Json } else { Output::Text };
    let request = match &cli.command {
        Command::Run => match autoprov::daemon::run(cfg) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => return finish(e.response(), cli.json),
        },
        Command::Process { .. } => Request::Process {
            name: String::new(),
        },
        Command::Restore { file } => return finish(local::restore(cfg, file), cli.json),
        Command::Token(TokenCommand::Add { name }) => {
            return finish(local::token_add(&cfg, name), cli.json);
        }
        other => other.request().expect("every other command is a request"),
    };
    let upload = match &cli.command {
        Command::Process { file, dry_run } => Some((file.as_path(), *dry_run)),
        _ => None,
    };
    // Before any thread starts: a roster processed here is finished, not left in inbox/.
    if upload.is_some() {
        autoprov::interrupts::watch();
    }
    // A long answer (a million accounts or changes) is written out as it comes (issue 14).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match local::execute(cfg, request, upload, output, &mut out) {
        local::Outcome::Written(exit) => ExitCode::from(exit),
        local::Outcome::Answer(response) => {
            drop(out);
            finish(response, cli.json)
        }
    }
}

/// Prints an answer and gives its exit code. An answer stdout cannot take (a full disk, an
/// I/O error; not a closed pipe) is told on stderr, exit 5: it had been lost with exit 0,
/// and a `--json` failure's own message with it.
fn finish(response: Response, json: bool) -> ExitCode {
    let to_stdout = json
        || !matches!(
            response.exit,
            exit::USAGE | exit::UNREACHABLE | exit::FAILED
        );
    match print(&response, json, to_stdout) {
        // Stdout (a failure's own text goes to stderr, whose loss changes no exit code).
        Err(e) if to_stdout && e.kind() != std::io::ErrorKind::BrokenPipe => {
            let (told, code) = match response.exit {
                // Its text said on stderr, its code kept: nothing was done.
                code @ (exit::USAGE | exit::UNREACHABLE | exit::FAILED) => (response.text, code),
                code => (Response::unwritten(&e, code).text, exit::FAILED),
            };
            let _ = writeln!(std::io::stderr(), "autoprov: {}", told.trim_end());
            ExitCode::from(code)
        }
        _ => ExitCode::from(response.exit),
    }
}

/// Answers (reports, listings, refusals with exit 1 or 3) go `to_stdout`; usage errors, an
/// unreachable daemon and failures to stderr (but in `--json`).
fn print(response: &Response, json: bool, to_stdout: bool) -> std::io::Result<()> {
    let out = if json {
        serde_json::to_string_pretty(&response.json).expect("json values serialize") + "\n"
    } else {
        response.text.clone()
    };
    // A closed pipe (`| head`) or a gone stderr loses the text, never the exit code: the
    // macros `print!` and `eprint!` would panic instead. Stdout is flushed here, where its
    // error can be told ([`finish`]), not at the exit, where it is lost.
    let end = if out.ends_with('\n') { "" } else { "\n" };
    match to_stdout {
        true => write!(std::io::stdout(), "{out}{end}").and_then(|()| std::io::stdout().flush()),
        false => write!(std::io::stderr(), "autoprov: {out}{end}"),
    }
}

/// HR data is never world-readable: everything this process creates (data dir, drop
/// folders, rosters, reports, backups, the store) gets at most 0750 for folders and 0640
/// for files, whatever umask the caller has; a stricter one is kept. The systemd unit's
/// `UMask=0027` does the same; this covers the daemon and the CLI run by hand.
fn restrict_umask() {
    use nix::sys::stat::{Mode, umask};
    let strict = Mode::from_bits_truncate(0o027);
    let old = umask(strict);
    umask(old | strict);
}
