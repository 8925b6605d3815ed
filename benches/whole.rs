//! Whole-process benchmarks of the real binary, each figure beside a baseline measured in
//! the same run (see BENCHMARKS.md). Run with
//!
//! ```sh
//! CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench whole            # everything
//! CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench whole -- import    # one part
//! ```
//!
//! `prepare` (not a measurement) leaves a root with the config and rules in
//! `BENCH_DIR/profile` and prints the command to profile.
//! Parts: `import` (1M first import, re-upload, sync and peak RSS vs the csv floor),
//! `scaling` (10k, 100k, 1M), `latency` (10k upload→report through the daemon),
//! `upload` (100 MB over OpenSSH sftp and curl, autoprov vs OpenSSH's sshd),
//! `auth` (`auth check EMAIL` through the daemon on a store of `BENCH_ROWS` employees),
//! `list` (`admins list [--json]` without and through the daemon, see `whole_list`),
//! `cases` (a 0.2 %-changed re-upload and the worst first import, see `whole_cases`).
//! Environment: `AUTOPROV_BENCH_BIN` (another autoprov binary to measure),
//! `AUTOPROV_BENCH_BEFORE` (`list`: an older binary measured beside it), `BENCH_REPS` (default 5), `BENCH_ROWS` (default 1000000), `BENCH_DIR`
//! (default /var/tmp/autoprov-bench; rosters are generated there once and reused).
//!
//! Each timed command runs under a small wrapper (this binary again, `AUTOPROV_BENCH_WRAP`)
//! that waits for it and reads `getrusage(RUSAGE_CHILDREN)`, so every figure has its own
//! peak RSS; the floor runs as a child process too (`AUTOPROV_BENCH_FLOOR`), so both sides
//! pay the same process start and file read.

mod common;
mod whole_cases;
mod whole_list;

use autoprov::api::{Output, Request};
use autoprov::control::{Envelope, client};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WRAP: &str = "AUTOPROV_BENCH_WRAP";
const FLOOR: &str = "AUTOPROV_BENCH_FLOOR";

/// The binary under test: this build's, or `AUTOPROV_BENCH_BIN` (to compare with an older build).
fn bin() -> String {
    std::env::var("AUTOPROV_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_autoprov").into())
}

fn main() {
    if std::env::var_os(WRAP).is_some() {
        wrap();
        return;
    }
    if let Ok(file) = std::env::var(FLOOR) {
        floor(Path::new(&file));
        return;
    }
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |p: &str| parts.is_empty() || parts.iter().any(|a| a == p);
    let bench = Bench::new();
    println!(
        "autoprov whole-process benchmarks: {} repetitions, medians; dir {}",
        bench.reps,
        bench.dir.display()
    );
    if parts.iter().any(|a| a == "prepare") {
        // Not a measurement: a root with the config and the rules, for perf or callgrind.
        let (root, config) = bench.fresh("profile", "");
        let file = bench.roster(bench.rows);
        println!(
            "prepared {}: {} --config {} process {}",
            root.display(),
            bin(),
            config.display(),
            file.display()
        );
        return;
    }
    if want("import") {
        bench.import(bench.rows);
    }
    if want("scaling") {
        bench.scaling();
    }
    if want("latency") {
        bench.latency();
    }
    if want("upload") {
        bench.upload();
    }
    if want("auth") {
        bench.auth(bench.rows);
    }
    if want("list") {
        bench.list(bench.rows);
    }
    if want("cases") {
        bench.cases(bench.rows);
    }
    bench.save();
}

/// The physical floor: one csv `ByteRecord` pass over the file, nothing else.
fn floor(path: &Path) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .expect("open roster");
    let mut record = csv::ByteRecord::new();
    let (mut records, mut fields) = (0u64, 0u64);
    while reader.read_byte_record(&mut record).expect("csv") {
        records += 1;
        fields += record.len() as u64;
    }
    println!("{records} records, {fields} fields");
}

/// Runs the command after `--` with stdout to /dev/null; prints "elapsed_ns max_rss_kb exit".
fn wrap() {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let start = Instant::now();
    let status = Command::new(&args[0])
        .args(&args[1..])
        .env_remove(WRAP)
        .stdout(Stdio::null())
        .status()
        .expect("run the measured command");
    let elapsed = start.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
    println!(
        "{} {} {} {}",
        elapsed.as_nanos(),
        usage.max_rss(),
        status.code().unwrap_or(-1),
        (micros(usage.user_time()) + micros(usage.system_time())) * 1e3
    );
}

/// An upload client: `(to_autoprov, remote name) -> seconds`.
type Upload<'a> = Box<dyn Fn(bool, &str) -> f64 + 'a>;

/// One measured run.
#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    /// User + system CPU time: less sensitive than wall time to other work on the machine.
    cpu: f64,
    rss_mb: f64,
    exit: i32,
}

fn measured(cmd: &[&str]) -> Run {
    measured_with(cmd, &[])
}

fn measured_with(cmd: &[&str], envs: &[(&str, &str)]) -> Run {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .env(WRAP, "1")
        .envs(envs.iter().copied())
        .arg("--")
        .args(cmd)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the wrapper");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|w| w.parse().expect("wrapper output"))
        .collect();
    Run {
        secs: v[0] / 1e9,
        rss_mb: v[1] / 1024.0,
        exit: v[2] as i32,
        cpu: v[3] / 1e9,
    }
}

/// The `p`-th percentile (nearest rank) of `xs`.
fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// (median, min, max) as text.
fn spread(xs: &[f64], unit: &str, scale: f64) -> String {
    let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.3} {unit} (min {:.3}, max {:.3})",
        median(xs.to_vec()) * scale,
        min * scale,
        max * scale
    )
}

struct Bench {
    dir: PathBuf,
    reps: usize,
    rows: usize,
    results: std::cell::RefCell<BTreeMap<String, f64>>,
}

impl Bench {
    fn new() -> Bench {
        let dir = PathBuf::from(
            std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/autoprov-bench".into()),
        );
        fs::create_dir_all(&dir).expect("bench dir");
        let num = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Bench {
            dir,
            reps: num("BENCH_REPS", 5),
            rows: num("BENCH_ROWS", 1_000_000),
            results: Default::default(),
        }
    }

    fn record(&self, key: &str, value: f64) {
        self.results.borrow_mut().insert(key.to_string(), value);
    }

    fn save(&self) {
        let path = self.dir.join("results.json");
        let json = serde_json::to_string_pretty(&*self.results.borrow()).expect("json");
        fs::write(&path, json).expect("write results");
        println!("\nfigures saved to {}", path.display());
    }

    /// The generated roster of `rows` rows (seed 1), written once.
    fn roster(&self, rows: usize) -> PathBuf {
        common::roster_file(&self.dir, rows)
    }

    /// A fresh root with the config (plus `source`) and the 60 rules installed.
    fn fresh(&self, name: &str, source: &str) -> (PathBuf, PathBuf) {
        let root = self.dir.join(name);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("root");
        let config = root.join("autoprov.toml");
        fs::write(&config, common::config_toml(&root, source)).expect("config");
        common::install_rules(&root.join("data"));
        (root, config)
    }

    /// First import, re-upload of the same roster, and `sync`, each against the floor.
    fn import(&self, rows: usize) -> f64 {
        let file = self.roster(rows);
        let size_mb = fs::metadata(&file).expect("roster").len() as f64 / 1e6;
        println!(
            "\n== import: {rows} rows ({size_mb:.1} MB), 60 rules, `autoprov process` (stdout to /dev/null) =="
        );
        let (mut fl, mut first, mut again, mut sync) = (vec![], vec![], vec![], vec![]);
        let (mut fl_cpu, mut first_cpu, mut again_cpu, mut sync_cpu) =
            (vec![], vec![], vec![], vec![]);
        let mut rss = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for rep in 0..self.reps {
            let (root, config) = self.fresh(&format!("import-{rows}"), "");
            let cfg = config.to_str().expect("utf-8 path");
            let exe = std::env::current_exe().expect("own path");
            let f = measured_with(
                &[exe.to_str().expect("utf-8 path")],
                &[(FLOOR, file.to_str().expect("utf-8 path"))],
            );
            assert_eq!(f.exit, 0, "floor pass");
            let a = measured(&[&bin(), "--config", cfg, "process", file.to_str().unwrap()]);
            assert_eq!(a.exit, 0, "first import applied");
            let copy = root.join("again.csv");
            fs::copy(&file, &copy).expect("copy roster");
            let b = measured(&[&bin(), "--config", cfg, "process", copy.to_str().unwrap()]);
            assert_eq!(b.exit, 0, "re-upload applied");
            let c = measured(&[&bin(), "--config", cfg, "sync"]);
            assert_eq!(c.exit, 0, "sync applied");
            println!(
                "  rep {rep}: floor {:.3} s (cpu {:.3}) | first import {:.3} s (cpu {:.3}), {:.0} MB | re-upload {:.3} s (cpu {:.3}), {:.0} MB | sync {:.3} s (cpu {:.3}), {:.0} MB",
                f.secs,
                f.cpu,
                a.secs,
                a.cpu,
                a.rss_mb,
                b.secs,
                b.cpu,
                b.rss_mb,
                c.secs,
                c.cpu,
                c.rss_mb
            );
            fl_cpu.push(f.cpu);
            first_cpu.push(a.cpu);
            again_cpu.push(b.cpu);
            sync_cpu.push(c.cpu);
            fl.push(f.secs);
            first.push(a.secs);
            again.push(b.secs);
            sync.push(c.secs);
            rss = (
                rss.0.max(f.rss_mb),
                rss.1.max(a.rss_mb),
                rss.2.max(b.rss_mb),
                rss.3.max(c.rss_mb),
            );
            let _ = fs::remove_dir_all(&root);
        }
        let floor = median(fl.clone());
        let ratio = |xs: &[f64]| median(xs.to_vec()) / floor;
        println!(
            "  floor (csv ByteRecord pass):    {}",
            spread(&fl, "s", 1.0)
        );
        println!(
            "  first import:                   {}  = {:.2}x floor (target <= 2.0)",
            spread(&first, "s", 1.0),
            ratio(&first)
        );
        println!(
            "  re-upload, nothing to write:    {}  = {:.2}x floor (target <= 1.5)",
            spread(&again, "s", 1.0),
            ratio(&again)
        );
        println!(
            "  sync, nothing to write:         {}  = {:.2}x floor (target <= 1.5)",
            spread(&sync, "s", 1.0),
            ratio(&sync)
        );
        let floor_cpu = median(fl_cpu.clone());
        println!(
            "  CPU time (user+sys), medians: floor {:.3} s | first import {:.3} s = {:.2}x | re-upload {:.3} s = {:.2}x | sync {:.3} s = {:.2}x",
            floor_cpu,
            median(first_cpu.clone()),
            median(first_cpu.clone()) / floor_cpu,
            median(again_cpu.clone()),
            median(again_cpu.clone()) / floor_cpu,
            median(sync_cpu.clone()),
            median(sync_cpu.clone()) / floor_cpu
        );
        println!(
            "  peak RSS: floor {:.0} MB, first import {:.0} MB (target <= 200), re-upload {:.0} MB, sync {:.0} MB",
            rss.0, rss.1, rss.2, rss.3
        );
        let k = format!("import_{rows}");
        self.record(&format!("{k}_floor_s"), floor);
        self.record(&format!("{k}_first_s"), median(first.clone()));
        self.record(&format!("{k}_again_s"), median(again.clone()));
        self.record(&format!("{k}_sync_s"), median(sync.clone()));
        self.record(&format!("{k}_first_ratio"), ratio(&first));
        self.record(&format!("{k}_again_ratio"), ratio(&again));
        self.record(&format!("{k}_sync_ratio"), ratio(&sync));
        self.record(&format!("{k}_floor_cpu_s"), floor_cpu);
        self.record(&format!("{k}_first_cpu_s"), median(first_cpu));
        self.record(&format!("{k}_again_cpu_s"), median(again_cpu));
        self.record(&format!("{k}_sync_cpu_s"), median(sync_cpu));
        self.record(&format!("{k}_first_rss_mb"), rss.1);
        self.record(&format!("{k}_again_rss_mb"), rss.2);
        self.record(&format!("{k}_sync_rss_mb"), rss.3);
        median(first) / rows as f64
    }

    fn scaling(&self) {
        println!("\n== scaling: first import, time per row ==");
        let mut per_row = vec![];
        for rows in [10_000, 100_000, 1_000_000] {
            // The 1M figure of `import`, when it ran in this run.
            let done = self
                .results
                .borrow()
                .get(&format!("import_{rows}_first_s"))
                .copied();
            let t = match done {
                Some(secs) => secs / rows as f64,
                None => self.import(rows),
            };
            per_row.push((rows, t));
        }
        println!("\n  rows       us/row (first import)   vs 10k");
        for (rows, t) in &per_row {
            println!(
                "  {rows:>9}  {:>8.3}                {:.2}x",
                t * 1e6,
                t / per_row[0].1
            );
            self.record(&format!("scaling_{rows}_us_per_row"), t * 1e6);
        }
    }

    /// Starts `autoprov run` in `root`; returns it and its SFTP port.
    fn daemon(&self, root: &Path, config: &Path) -> (Child, u16) {
        self.daemon_of(&bin(), root, config)
    }

    /// [`Bench::daemon`] of the binary `exe`.
    fn daemon_of(&self, exe: &str, root: &Path, config: &Path) -> (Child, u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let socket = root.join("autoprov.sock");
        let mut child = loop {
            let log = fs::File::create(root.join("daemon.log")).expect("log");
            let mut child = Command::new(exe)
                .arg("--config")
                .arg(config)
                .arg("run")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start the daemon");
            // sled's flusher thread may hold the store's lock a moment after the rules
            // were installed: a daemon that could not open the store is started again.
            while !socket.exists() && child.try_wait().expect("wait").is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if socket.exists() {
                break child;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not start: {}",
                fs::read_to_string(root.join("daemon.log")).unwrap_or_default()
            );
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
        };
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!(
                    "daemon exited ({status}): {}",
                    fs::read_to_string(root.join("daemon.log")).unwrap_or_default()
                );
            }
            let out = Command::new(exe)
                .arg("--config")
                .arg(config)
                .args(["--json", "status"])
                .output()
                .expect("status");
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                && v["daemon"]["running"] == true
                && let Some(port) = v["daemon"]["listen"]
                    .as_str()
                    .and_then(|l| l.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p != 0)
            {
                return (child, port);
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready: {}",
                fs::read_to_string(root.join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(child: &mut Child) {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let _ = child.wait();
    }

    /// The test key copied with mode 0600 (ssh refuses readable keys).
    fn key(&self) -> PathBuf {
        let key = self.dir.join("hris_ed25519");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/keys");
        fs::copy(src.join("hris_ed25519"), &key).expect("key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::copy(src.join("hris_ed25519.pub"), key.with_extension("pub")).expect("pub key");
        key
    }

    fn host_source() -> String {
        let public = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/keys/hris_ed25519.pub"),
        )
        .expect("pub key");
        format!(
            "[source]\nmode = \"host\"\nlisten = \"127.0.0.1:0\"\nrescan_interval = \"60s\"\n\n\
             [[source.users]]\nname = \"hris\"\nauthorized_keys = [{:?}]\n",
            public.trim()
        )
    }

    /// `sftp -b` putting `file` at `remote`; returns the wall time.
    fn sftp_put(&self, user: &str, port: u16, cipher: &str, file: &Path, remote: &str) -> f64 {
        let batch = self.dir.join("batch");
        fs::write(&batch, format!("put {} {remote}\n", file.display())).expect("batch");
        let start = Instant::now();
        let out = Command::new("sftp")
            .arg("-b")
            .arg(&batch)
            .arg("-i")
            .arg(self.key())
            .args(["-P", &port.to_string(), "-c", cipher])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .stdin(Stdio::null())
            .output()
            .expect("run sftp");
        let secs = start.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "sftp to {user}@{port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        secs
    }

    fn curl_put(&self, user: &str, port: u16, file: &Path, remote: &str) -> f64 {
        let key = self.key();
        let start = Instant::now();
        let out = Command::new("curl")
            .args(["-sS", "-k", "--key"])
            .arg(&key)
            .arg("--pubkey")
            .arg(key.with_extension("pub"))
            .arg("-T")
            .arg(file)
            .arg(format!("sftp://{user}@127.0.0.1:{port}{remote}"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let secs = start.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "curl to {user}@{port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        secs
    }

    /// Waits until `dir` has a file ending in `suffix`.
    fn wait_for(dir: &Path, suffix: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(entries) = fs::read_dir(dir)
                && entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
            {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "no {suffix} in {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Upload → report latency of a 10k-row roster through the daemon (OpenSSH sftp).
    fn latency(&self) {
        let file = self.roster(10_000);
        println!(
            "\n== latency: 10k-row roster ({:.1} MB) uploaded with OpenSSH sftp until its report is in processed/ ==",
            fs::metadata(&file).expect("roster").len() as f64 / 1e6
        );
        let (mut first, mut again, mut up) = (vec![], vec![], vec![]);
        for rep in 0..self.reps {
            let (root, config) = self.fresh("latency", &Self::host_source());
            let (mut child, port) = self.daemon(&root, &config);
            let processed = root.join("data/drop/processed");
            for (n, out) in [(1, &mut first), (2, &mut again)] {
                let name = format!("r{n}.csv");
                let start = Instant::now();
                let upload = self.sftp_put(
                    "hris",
                    port,
                    "chacha20-poly1305@openssh.com",
                    &file,
                    &format!("inbox/{name}"),
                );
                let done = Self::wait_for(
                    &processed,
                    &format!("_{name}.report.json"),
                    Duration::from_secs(60),
                );
                out.push((done - start).as_secs_f64());
                if n == 1 {
                    up.push(upload);
                }
            }
            Self::stop(&mut child);
            println!(
                "  rep {rep}: first {:.3} s (upload {:.3} s), re-upload {:.3} s",
                first[rep], up[rep], again[rep]
            );
        }
        println!(
            "  upload->report, first import (creates ~9.5k accounts): {}  (target <= 1 s)",
            spread(&first, "s", 1.0)
        );
        println!(
            "  upload->report, same roster again (nothing to write):   {}",
            spread(&again, "s", 1.0)
        );
        println!(
            "  of which the sftp upload itself:                        {}",
            spread(&up, "s", 1.0)
        );
        self.record("latency_10k_first_s", median(first));
        self.record("latency_10k_again_s", median(again));
        self.record("latency_10k_upload_s", median(up));
    }

    /// A free loopback port (bound then released).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    }

    /// OpenSSH's sshd with internal-sftp on a loopback port, for the current user.
    fn sshd(&self, root: &Path) -> (Child, u16) {
        let dir = root.join("sshd");
        fs::create_dir_all(dir.join("up")).expect("sshd dir");
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let host_key = dir.join("host_ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .expect("ssh-keygen");
        assert!(st.success());
        fs::copy(
            self.key().with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .expect("keys");
        let port = Self::free_port();
        let cfg = dir.join("sshd_config");
        fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPidFile none\n\
                 Subsystem sftp internal-sftp\n",
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .expect("sshd config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("sshd.log")).expect("log"))
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, port)
    }

    /// 100 MB uploads: OpenSSH sftp and curl, to autoprov and to OpenSSH's sshd.
    fn upload(&self) {
        const MB: usize = 100;
        let file = self.dir.join("upload-100MB.bin");
        if fs::metadata(&file).map(|m| m.len()).ok() != Some((MB * 1_000_000) as u64) {
            let mut rng = common::Rng::new(7);
            let mut f = std::io::BufWriter::new(fs::File::create(&file).expect("upload file"));
            for _ in 0..(MB * 1_000_000 / 8) {
                f.write_all(&rng.next().to_le_bytes()).expect("write");
            }
            f.flush().expect("flush");
        }
        println!(
            "\n== upload: {MB} MB (random bytes) over loopback, autoprov (russh) vs OpenSSH sshd internal-sftp =="
        );
        let (root, config) = self.fresh("upload", &Self::host_source());
        let (mut daemon, port) = self.daemon(&root, &config);
        let (mut sshd, sshd_port) = self.sshd(&root);
        let me = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let rejected = root.join("data/drop/rejected");
        let sshd_up = root.join("sshd/up");
        let mut n = 0;
        let mb = MB as f64;
        let mut clients: Vec<(String, Upload<'_>)> = vec![];
        for cipher in ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"] {
            let file = file.clone();
            let me = me.clone();
            let sshd_up = sshd_up.clone();
            clients.push((
                format!("OpenSSH sftp, {cipher}"),
                Box::new(move |to_autoprov, name| {
                    if to_autoprov {
                        self.sftp_put("hris", port, cipher, &file, &format!("inbox/{name}"))
                    } else {
                        self.sftp_put(
                            &me,
                            sshd_port,
                            cipher,
                            &file,
                            &sshd_up.join(name).display().to_string(),
                        )
                    }
                }),
            ));
        }
        {
            let file = file.clone();
            let me = me.clone();
            let sshd_up = sshd_up.clone();
            clients.push((
                "curl (libssh2)".into(),
                Box::new(move |to_autoprov, name| {
                    if to_autoprov {
                        self.curl_put("hris", port, &file, &format!("/inbox/{name}"))
                    } else {
                        self.curl_put(
                            &me,
                            sshd_port,
                            &file,
                            &sshd_up.join(name).display().to_string(),
                        )
                    }
                }),
            ));
        }
        for (label, put) in &clients {
            let (mut ours, mut theirs) = (vec![], vec![]);
            for rep in 0..self.reps {
                // Alternate which server goes first, so drift hits both alike.
                for to_autoprov in if rep % 2 == 0 {
                    [true, false]
                } else {
                    [false, true]
                } {
                    n += 1;
                    let name = format!("u{n}.bin");
                    let secs = put(to_autoprov, &name);
                    if to_autoprov {
                        // Let the daemon file (reject) it before the next upload competes for CPU.
                        Self::wait_for(
                            &rejected,
                            &format!("_{name}.report.json"),
                            Duration::from_secs(60),
                        );
                        ours.push(mb / secs);
                    } else {
                        let _ = fs::remove_file(sshd_up.join(&name));
                        theirs.push(mb / secs);
                    }
                }
            }
            let (o, t) = (median(ours.clone()), median(theirs.clone()));
            println!(
                "  {label}: autoprov {} | sshd {} | ratio {:.2}x",
                spread(&ours, "MB/s", 1.0),
                spread(&theirs, "MB/s", 1.0),
                o / t
            );
            let key = label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>();
            self.record(&format!("upload_{key}_autoprov_mbps"), o);
            self.record(&format!("upload_{key}_sshd_mbps"), t);
            self.record(&format!("upload_{key}_ratio"), o / t);
        }
        drop(clients);
        Self::stop(&mut daemon);
        Self::stop(&mut sshd);
        let _ = fs::remove_dir_all(&root);
    }
}

impl Bench {
    /// `count` distinct row numbers of a `rows`-row roster (seed 3), and the Work Email of
    /// each, read from the roster file.
    fn sample_emails(file: &Path, rows: usize, count: usize) -> Vec<String> {
        let mut rng = common::Rng::new(3);
        let mut wanted = std::collections::BTreeSet::new();
        while wanted.len() < count.min(rows) {
            wanted.insert(rng.below(rows as u64) as usize);
        }
        let mut reader = csv::Reader::from_path(file).expect("open roster");
        let emails: Vec<String> = reader
            .records()
            .enumerate()
            .filter(|(i, _)| wanted.contains(i))
            .map(|(_, r)| r.expect("roster row")[3].to_string())
            .collect();
        // In a random order, not the roster's.
        let mut order: Vec<(u64, String)> = emails.into_iter().map(|e| (rng.next(), e)).collect();
        order.sort();
        order.into_iter().map(|(_, e)| e).collect()
    }

    /// Runs the binary under test with `args`; (seconds, exit code).
    fn timed(config: &Path, args: &[&str]) -> (f64, i32) {
        let start = Instant::now();
        let out = Command::new(bin())
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run autoprov");
        (
            start.elapsed().as_secs_f64(),
            out.status.code().unwrap_or(-1),
        )
    }

    /// `auth check EMAIL` sent on the control socket as the CLI sends it; (seconds, exit).
    fn socket_auth_check(socket: &Path, email: &str) -> (f64, u8) {
        let envelope = Envelope {
            request: Request::AuthCheck {
                email: email.into(),
            },
            upload: None,
            output: Output::Text,
            stream: true,
        };
        let start = Instant::now();
        // The daemon the bench started runs as this user.
        let me = nix::unistd::geteuid().as_raw();
        let reach = client::call(
            socket,
            &[me],
            &envelope,
            None,
            Some(Duration::from_secs(60)),
            &mut std::io::sink(),
        );
        let secs = start.elapsed().as_secs_f64();
        match reach {
            client::Reach::Answered(response) => (secs, response.exit),
            _ => panic!("the daemon did not answer auth check {email}"),
        }
    }

    /// `auth check EMAIL` latency through the daemon, sequential, as the SSO gateway calls
    /// it at every sign-in, on a store holding the accounts of a `rows`-row roster. The
    /// store is made through the binary under test (`rules add`, then `process`), so that
    /// `AUTOPROV_BENCH_BIN` may name a build of another store schema. Beside it: the same
    /// request sent on the control socket from this process (the daemon's part alone), and
    /// the binary's `--version` (process start and exit, no daemon).
    fn auth(&self, rows: usize) {
        const CHECKS: usize = 200;
        let file = self.roster(rows);
        println!(
            "\n== auth: `autoprov auth check EMAIL` through the daemon, {CHECKS} random roster emails, store of a {rows}-row roster =="
        );
        let root = self.dir.join("auth");
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("root");
        let config = root.join("autoprov.toml");
        fs::write(&config, common::config_toml(&root, &Self::host_source())).expect("config");
        let (_, code) = Self::timed(&config, &common::ADD_EVERYONE);
        assert_eq!(code, 0, "rules add");
        let (import, code) = Self::timed(&config, &["process", file.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "import applied");
        // Opening the store checks it whole (and, since schema 3, its email index).
        let (open, code) = Self::timed(&config, &["status"]);
        assert_eq!(code, 0, "status");
        println!(
            "  import (one broad rule): {import:.2} s; `status` without the daemon (open + check): {open:.2} s"
        );
        let emails = Self::sample_emails(&file, rows, CHECKS);
        let (mut child, _) = self.daemon(&root, &config);
        let (mut checks, mut calls, mut active) = (Vec::new(), Vec::new(), 0);
        for email in &emails {
            let (secs, code) = Self::timed(&config, &["auth", "check", email]);
            assert!(code == 0 || code == 1, "auth check {email}: exit {code}");
            active += usize::from(code == 0);
            checks.push(secs);
            let (secs, answer) = Self::socket_auth_check(&root.join("autoprov.sock"), email);
            assert_eq!(
                i32::from(answer),
                code,
                "{email}: the socket and the CLI agree"
            );
            calls.push(secs);
        }
        Self::stop(&mut child);
        let version: Vec<f64> = (0..CHECKS / 4)
            .map(|_| Self::timed(&config, &["--version"]).0)
            .collect();
        let ms = |xs: &[f64], p: f64| percentile(xs, p) * 1e3;
        println!(
            "  auth check ({active} of {} active): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target: p99 < 5 ms)",
            checks.len(),
            ms(&checks, 50.0),
            ms(&checks, 99.0),
            ms(&checks, 100.0)
        );
        println!(
            "  the same request on the control socket from this process (no process start): p50 {:.2} ms, p99 {:.2} ms",
            ms(&calls, 50.0),
            ms(&calls, 99.0)
        );
        println!(
            "  baseline, `autoprov --version` (process start, no daemon): p50 {:.2} ms, p99 {:.2} ms",
            ms(&version, 50.0),
            ms(&version, 99.0)
        );
        let k = format!("auth_{rows}");
        self.record(&format!("{k}_p50_ms"), ms(&checks, 50.0));
        self.record(&format!("{k}_p99_ms"), ms(&checks, 99.0));
        self.record(&format!("{k}_socket_p50_ms"), ms(&calls, 50.0));
        self.record(&format!("{k}_socket_p99_ms"), ms(&calls, 99.0));
        self.record(&format!("{k}_version_p50_ms"), ms(&version, 50.0));
        self.record(&format!("{k}_import_s"), import);
        self.record(&format!("{k}_status_s"), open);
        let _ = fs::remove_dir_all(&root);
    }
}
