//! `list`: `admins list` and `admins list --json` on the store of a `BENCH_ROWS` roster
//! (950k accounts at 1M rows), written to /dev/null, without the daemon and through it
//! (issue 14). With `AUTOPROV_BENCH_BEFORE` (an older binary, e.g. built at 7cc99a8), the
//! same commands of that binary alternate with this build's on the same store, and the two
//! outputs are compared byte for byte once.

use super::{Bench, bin, measured, median, spread};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// A process's `VmRSS` and `VmHWM` (peak) in MB, from /proc.
fn rss_of(pid: u32) -> (f64, f64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// Whether two files hold the same bytes (read in pieces: ~300 MB each at 1M rows).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        fs::File::open(a).expect("output"),
        fs::File::open(b).expect("output"),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).expect("read");
        if n == 0 {
            return b.read(&mut y).expect("read") == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}

/// One command's figures over the repetitions.
#[derive(Default)]
struct Figures {
    secs: Vec<f64>,
    cpu: Vec<f64>,
    rss: Vec<f64>,
    /// Through the daemon: the daemon's peak RSS during the call above its RSS before it.
    daemon_growth: Vec<f64>,
}

impl Figures {
    fn line(&self) -> String {
        let mut line = format!(
            "{} | cpu {:.3} s | peak RSS {:.0} MB",
            spread(&self.secs, "s", 1.0),
            median(self.cpu.clone()),
            self.rss.iter().cloned().fold(0.0, f64::max)
        );
        if !self.daemon_growth.is_empty() {
            line += &format!(
                " | daemon RSS growth {:.0} MB",
                self.daemon_growth.iter().cloned().fold(0.0, f64::max)
            );
        }
        line
    }
}

const FORMS: [(&str, &[&str]); 2] = [("text", &[]), ("json", &["--json"])];

impl Bench {
    /// See the module's documentation.
    pub(super) fn list(&self, rows: usize) {
        let file = self.roster(rows);
        let before = std::env::var("AUTOPROV_BENCH_BEFORE").ok();
        println!(
            "\n== list: `autoprov admins list [--json]` > /dev/null, store of a {rows}-row roster, 60 rules{} ==",
            before
                .as_ref()
                .map_or(String::new(), |b| format!("; before: {b}"))
        );
        let (root, config) = self.fresh("list", &Self::host_source());
        let cfg = config.to_str().expect("utf-8 path");
        let (_, code) = Self::timed(&config, &["process", file.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "import applied");
        let mut builds = vec![("after", bin())];
        if let Some(b) = before {
            builds.insert(0, ("before", b));
        }
        if builds.len() == 2 {
            self.compare_outputs(&root, cfg, &builds[0].1);
        }
        for (label, exe) in &builds {
            // The floor: `status` opens and checks the store (every account bucket) too.
            let mut f = Figures::default();
            for _ in 0..self.reps {
                let r = measured(&[exe.as_str(), "--config", cfg, "status"]);
                assert_eq!(r.exit, 0, "{label} status");
                f.secs.push(r.secs);
                f.cpu.push(r.cpu);
                f.rss.push(r.rss_mb);
            }
            println!("  {label:<6} `status` (opens the store): {}", f.line());
            self.record(
                &format!("list_{rows}_{label}_status_s"),
                median(f.secs.clone()),
            );
            self.record(
                &format!("list_{rows}_{label}_status_rss_mb"),
                f.rss.iter().cloned().fold(0.0, f64::max),
            );
            for (form, flag) in FORMS {
                let mut f = Figures::default();
                for _ in 0..self.reps {
                    let r = measured(
                        &[&[exe.as_str(), "--config", cfg], flag, &["admins", "list"]].concat(),
                    );
                    assert_eq!(r.exit, 0, "{label} admins list {form}");
                    f.secs.push(r.secs);
                    f.cpu.push(r.cpu);
                    f.rss.push(r.rss_mb);
                }
                println!("  {label:<6} {form:<4} no daemon:      {}", f.line());
                self.record(
                    &format!("list_{rows}_{label}_{form}_s"),
                    median(f.secs.clone()),
                );
                self.record(
                    &format!("list_{rows}_{label}_{form}_cpu_s"),
                    median(f.cpu.clone()),
                );
                self.record(
                    &format!("list_{rows}_{label}_{form}_rss_mb"),
                    f.rss.iter().cloned().fold(0.0, f64::max),
                );
            }
        }
        for (label, exe) in &builds {
            self.through_daemon(&root, &config, label, exe, rows);
        }
        let _ = fs::remove_dir_all(&root);
    }

    /// The same commands through a daemon of the same build.
    fn through_daemon(&self, root: &Path, config: &Path, label: &str, exe: &str, rows: usize) {
        let cfg = config.to_str().expect("utf-8 path");
        let (mut child, _) = self.daemon_of(exe, root, config);
        let pid = child.id();
        let (idle, _) = rss_of(pid);
        for (form, flag) in FORMS {
            let mut f = Figures::default();
            for _ in 0..self.reps {
                // Resets the daemon's peak RSS (VmHWM) to its RSS now.
                let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
                let (now, _) = rss_of(pid);
                let r = measured(&[&[exe, "--config", cfg], flag, &["admins", "list"]].concat());
                assert_eq!(r.exit, 0, "{label} admins list {form} through the daemon");
                let (_, peak) = rss_of(pid);
                f.secs.push(r.secs);
                f.cpu.push(r.cpu);
                f.rss.push(r.rss_mb);
                f.daemon_growth.push(peak - now);
            }
            println!("  {label:<6} {form:<4} through daemon: {}", f.line());
            let k = format!("list_{rows}_{label}_{form}_daemon");
            self.record(&format!("{k}_s"), median(f.secs.clone()));
            self.record(
                &format!("{k}_cli_rss_mb"),
                f.rss.iter().cloned().fold(0.0, f64::max),
            );
            self.record(
                &format!("{k}_growth_mb"),
                f.daemon_growth.iter().cloned().fold(0.0, f64::max),
            );
        }
        let (after, _) = rss_of(pid);
        println!("  {label:<6} daemon RSS: {idle:.0} MB idle, {after:.0} MB after the listings");
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let _ = child.wait();
    }

    /// Both builds' outputs, text and JSON, without the daemon: byte for byte the same.
    fn compare_outputs(&self, root: &Path, cfg: &str, before: &str) {
        for (form, flag) in FORMS {
            let mut outs = vec![];
            for (n, exe) in [before.to_string(), bin()].iter().enumerate() {
                let out = root.join(format!("out-{form}-{n}"));
                let status = Command::new(exe)
                    .args([&["--config", cfg], flag, &["admins", "list"]].concat())
                    .stdout(fs::File::create(&out).expect("output file"))
                    .stdin(Stdio::null())
                    .status()
                    .expect("run admins list");
                assert!(status.success(), "{exe} admins list {form}");
                outs.push(out);
            }
            let same = same_bytes(&outs[0], &outs[1]);
            println!(
                "  {form} output, before and after: {} ({} bytes)",
                if same { "identical" } else { "DIFFERENT" },
                fs::metadata(&outs[1]).map(|m| m.len()).unwrap_or(0)
            );
            assert!(same, "admins list {form}: the outputs differ");
            outs.iter().for_each(|o| drop(fs::remove_file(o)));
        }
    }
}
