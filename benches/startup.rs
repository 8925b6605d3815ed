//! Daemon start-up on a large store: how long `autoprov run` takes until it tells systemd
//! READY, and when the automatic backup of that start is on disk (see BENCHMARKS.md).
//!
//! ```sh
//! CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench startup
//! BENCH_ROWS=100000 cargo bench --bench startup          # a smaller store
//! AUTOPROV_BENCH_BIN=/path/to/older/autoprov cargo bench --bench startup   # another build (same store schema)
//! ```
//!
//! The store is made once per run: the 60 bench rules, then `autoprov process` of the
//! `BENCH_ROWS` (default 1M) roster, whose catch-all rule creates an account for every active
//! employee (950k at 1M). Then, `BENCH_REPS` times (default 5), the daemon is started in
//! watch mode with `NOTIFY_SOCKET` naming a datagram socket of this process, exactly as
//! systemd's `Type=notify` would see it, and stopped with SIGTERM once its backup is written.
//! Half the repetitions start on a store changed since the newest backup (a `rules add` with
//! the daemon stopped), half on an unchanged one.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> String {
    std::env::var("AUTOPROV_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_autoprov").into())
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_or("BENCH_ROWS", 1_000_000);
    let reps = env_or("BENCH_REPS", 5);
    let dir = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/autoprov-bench".into()),
    );
    let root = dir.join("startup");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("bench root");
    let roster = common::roster_file(&dir, rows);
    let config = root.join("autoprov.toml");
    let watched = root.join("watched");
    fs::create_dir_all(&watched).expect("watch dir");
    let source = format!(
        "[source]\nmode = \"watch\"\nwatch_dir = {:?}\n",
        watched.display().to_string()
    );
    fs::write(&config, common::config_toml(&root, &source)).expect("config");
    common::install_rules(&root.join("data"));
    let start = Instant::now();
    run_ok(&config, &["process", roster.to_str().expect("utf-8 path")]);
    println!(
        "autoprov daemon start-up: store of a {rows}-row roster made in {:.1} s ({}), {reps} starts",
        start.elapsed().as_secs_f64(),
        bin()
    );
    let backups = root.join("data/backups");
    let (mut ready, mut backed, mut stopped) = (vec![], vec![], vec![]);
    for rep in 0..reps {
        let changed = rep % 2 == 0;
        if changed {
            let name = format!("bench change {rep}");
            run_ok(
                &config,
                &[
                    "rules",
                    "add",
                    "--name",
                    &name,
                    "--role",
                    "Read-only Admin",
                    "--when",
                    "department = \"Nowhere\"",
                ],
            );
        }
        let before = newest(&backups);
        let start = one_start(&root, &config);
        let daemon = start.daemon;
        let written = wait_backup(&backups, &before, &root, changed);
        let stop = Instant::now();
        stop_daemon(daemon);
        stopped.push(stop.elapsed().as_secs_f64() - 0.3);
        ready.push(start.ready.as_secs_f64());
        backed.push(written.map(|w| (w - start.spawned).as_secs_f64()));
        println!(
            "  start {rep} ({}): READY after {:.3} s; backup {}; stopped {:.3} s after SIGTERM",
            if changed {
                "store changed"
            } else {
                "store unchanged"
            },
            ready[rep],
            match backed[rep] {
                Some(s) => format!("written {s:.3} s after the start"),
                None => "not written (unchanged since the newest)".into(),
            },
            stopped[rep]
        );
    }
    println!(
        "  READY: median {:.3} s, min {:.3}, max {:.3}  (target <= 2 s)",
        median(&ready),
        min(&ready),
        max(&ready)
    );
    let written: Vec<f64> = backed.iter().flatten().copied().collect();
    if !written.is_empty() {
        println!(
            "  backup on disk (changed store): median {:.3} s after the start",
            median(&written)
        );
    }
    println!("  stop after SIGTERM: median {:.3} s", median(&stopped));
    let on_disk: u64 = fs::read_dir(&backups)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "  backups kept: {:.0} MB in {}",
        on_disk as f64 / 1e6,
        backups.display()
    );
    let _ = fs::remove_dir_all(&root);
}

fn run_ok(config: &Path, args: &[&str]) {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .expect("run autoprov");
    assert!(
        out.status.success(),
        "autoprov {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Started {
    daemon: Child,
    spawned: Instant,
    ready: Duration,
}

/// Starts the daemon with `NOTIFY_SOCKET` set and waits for `READY=1`.
fn one_start(root: &Path, config: &Path) -> Started {
    let notify = root.join("notify.sock");
    let _ = fs::remove_file(&notify);
    let socket = UnixDatagram::bind(&notify).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let log = fs::File::create(root.join("daemon.log")).expect("log");
    let spawned = Instant::now();
    let mut daemon = Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify)
        // Info: the log says when a start's backup is skipped (the store is unchanged).
        .env("AUTOPROV__LOG__LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let mut buf = [0u8; 4096];
    loop {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = daemon.kill();
                let _ = daemon.wait();
                panic!(
                    "no READY from the daemon: {e}: {}",
                    fs::read_to_string(root.join("daemon.log")).unwrap_or_default()
                )
            }
        };
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            return Started {
                daemon,
                spawned,
                ready: spawned.elapsed(),
            };
        }
    }
}

/// The newest automatic backup's name, if any.
fn newest(backups: &Path) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(backups)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".backup"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.pop()
}

/// Waits until a backup newer than `before` is on disk (`expect_one`), or until the
/// daemon's log says the start's backup was skipped or failed.
fn wait_backup(
    backups: &Path,
    before: &Option<String>,
    root: &Path,
    expect_one: bool,
) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let now = newest(backups);
        if now.is_some() && now != *before {
            return Some(Instant::now());
        }
        let log = fs::read_to_string(root.join("daemon.log")).unwrap_or_default();
        if log.contains("backup at start-up failed") {
            panic!("the daemon's backup failed: {log}");
        }
        if log.contains("backup unchanged") {
            assert!(!expect_one, "a changed store was not backed up: {log}");
            return None;
        }
        assert!(Instant::now() < deadline, "no backup written: {log}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop_daemon(mut daemon: Child) {
    // Builds before 0d1fd2d set their SIGTERM handler only after READY: give them a moment.
    std::thread::sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = daemon.wait().expect("wait for the daemon");
    assert!(status.success(), "the daemon stopped with {status}");
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(0.0, f64::max)
}
