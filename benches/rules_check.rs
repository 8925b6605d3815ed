//! `autoprov rules check` over a large last applied roster, through the real binary (issue 14).
//!
//! ```sh
//! CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench rules_check
//! BENCH_RULES=200 BENCH_REPS=3 AUTOPROV_BENCH_BIN=/path/to/older/autoprov \
//!     CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench rules_check
//! ```
//!
//! A fresh root gets `BENCH_RULES` rules (default 1000) through `autoprov rules add`, one
//! process each, over the generated roster's departments, job titles and locations with the
//! five roles, so that many pairs of rules of different roles can overlap; then
//! `autoprov process` applies the `BENCH_ROWS`-row roster (default 100000, seed 1, the
//! generator of benches/common), and `autoprov rules check` (stdout to a file) is timed
//! `BENCH_REPS` times (default 5): median, min and max.
//! Environment: `AUTOPROV_BENCH_BIN` (another autoprov binary to measure), `BENCH_DIR`
//! (default /var/tmp/autoprov-bench), `BENCH_KEEP` (set: keep the root and print the
//! command, e.g. to profile it).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The binary under test: this build's, or `AUTOPROV_BENCH_BIN` (to compare with an older build).
fn bin() -> String {
    std::env::var("AUTOPROV_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_autoprov").into())
}

fn num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` rules (name, role, conditions) in four shapes, each over the generated roster's values.
fn bench_rules(n: usize) -> Vec<(String, &'static str, Vec<String>)> {
    let departments: Vec<&str> = common::DEPARTMENTS.iter().map(|d| d.0).collect();
    let titles: Vec<String> = common::DEPARTMENTS
        .iter()
        .flat_map(|(_, _, job)| {
            common::LEVELS
                .iter()
                .map(move |level| format!("{level} {job}").trim().to_string())
        })
        .collect();
    let locations = &common::LOCATIONS;
    let pick = |k: usize, len: usize| (k * 7 + k / len) % len;
    (0..n)
        .map(|k| {
            let d = departments[pick(k, departments.len())];
            let d2 = departments[pick(k + 5, departments.len())];
            let t = &titles[pick(k, titles.len())];
            let l = locations[pick(k, locations.len())];
            let l2 = locations[pick(k + 3, locations.len())];
            let when = match k % 4 {
                0 => vec![format!("department = {d:?}"), format!("location = {l:?}")],
                1 => vec![
                    format!("job_title = {t:?}"),
                    format!("location in ({l:?}, {l2:?})"),
                ],
                2 => vec![
                    format!("location = {l:?}"),
                    format!("is_manager = {}", k % 8 == 2),
                ],
                _ => vec![
                    format!("department in ({d:?}, {d2:?})"),
                    format!("job_title != {t:?}"),
                ],
            };
            (
                format!("bench rule {k}"),
                common::ROLES[k % common::ROLES.len()],
                when,
            )
        })
        .collect()
}

fn run(config: &Path, args: &[&str], stdout: Stdio) -> (i32, f64) {
    let start = Instant::now();
    let status = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(stdout)
        .status()
        .expect("run autoprov");
    (status.code().unwrap_or(-1), start.elapsed().as_secs_f64())
}

fn main() {
    let rows = num("BENCH_ROWS", 100_000);
    let n_rules = num("BENCH_RULES", 1000);
    let reps = num("BENCH_REPS", 5).max(1);
    let dir = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/autoprov-bench".into()),
    );
    let root = dir.join(format!("rules-check-{rows}-{n_rules}"));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("bench root");
    let config = root.join("autoprov.toml");
    fs::write(&config, common::config_toml(&root, "")).expect("config");
    let roster = common::roster_file(&dir, rows);
    println!(
        "== rules check: {rows} rows, {n_rules} rules, {reps} repetitions; binary {}",
        bin()
    );

    let start = Instant::now();
    for (name, role, when) in bench_rules(n_rules) {
        let mut args = vec!["rules", "add", "--name", &name, "--role", role];
        for c in &when {
            args.extend(["--when", c.as_str()]);
        }
        let (code, _) = run(&config, &args, Stdio::null());
        assert_eq!(code, 0, "rules add {name}: {when:?}");
    }
    println!(
        "  {n_rules} x `rules add` (no roster applied yet): {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let (code, secs) = run(
        &config,
        &["process", roster.to_str().expect("utf-8 path")],
        Stdio::null(),
    );
    assert_eq!(code, 0, "process {}", roster.display());
    println!("  process (applies the roster): {secs:.3} s");

    let out_path = root.join("rules-check.txt");
    let mut times = Vec::new();
    for rep in 0..reps {
        let out = fs::File::create(&out_path).expect("output file");
        let (code, secs) = run(&config, &["rules", "check"], Stdio::from(out));
        assert_eq!(code, 1, "rules check finds conflicts");
        println!("  rep {rep}: rules check {secs:.3} s");
        times.push(secs);
    }
    let text = fs::read_to_string(&out_path).expect("rules check output");
    let conflicts = text.lines().filter(|l| l.starts_with("conflict:")).count();
    let uncounted = text
        .lines()
        .filter(|l| l.contains("no roster applied"))
        .count();
    assert_eq!(uncounted, 0, "every pair is counted on the applied roster");
    times.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let median = if reps % 2 == 1 {
        times[reps / 2]
    } else {
        (times[reps / 2 - 1] + times[reps / 2]) / 2.0
    };
    println!(
        "  rules check: median {median:.3} s (min {:.3}, max {:.3}); {conflicts} conflicts listed ({:.1} MB of text)",
        times[0],
        times[reps - 1],
        text.len() as f64 / 1e6
    );
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!(
            "  kept: {} --config {} rules check",
            bin(),
            config.display()
        );
    } else {
        let _ = fs::remove_dir_all(&root);
    }
}
