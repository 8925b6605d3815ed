//! `cases`: the two cases of issue 14 that `import` does not run, each against the floor in
//! the same repetition, stdout to /dev/null:
//!
//! - **re-sync of a 0.2 %-changed roster**: a first import of the `BENCH_ROWS` roster with
//!   the 60 rules (not timed), then `process` of the same roster with every 500th line's
//!   employment status set to `Terminated` (timed);
//! - **the worst first import**: one broad rule (`employment_status != "Leave of
//!   Absence"`, 950k accounts created at 1M rows) into an empty store, `process` and
//!   `process --json`, each into its own fresh root.

use super::{Bench, FLOOR, bin, measured, measured_with, median, spread};
use std::fs;
use std::path::{Path, PathBuf};

/// The roster with every 500th line's employment status (the second-to-last field; the
/// generated rosters never quote it) set to `Terminated`.
fn changed(file: &Path) -> PathBuf {
    let path = file.with_file_name(format!(
        "{}-changed.csv",
        file.file_stem().expect("a name").to_string_lossy()
    ));
    let text = fs::read_to_string(file).expect("roster");
    let mut out = String::with_capacity(text.len() + text.len() / 200);
    for (n, line) in text.lines().enumerate() {
        if n % 500 == 499 {
            let mut fields = line.rsplitn(3, ',');
            let (cost_center, _status, rest) = (
                fields.next().expect("a cost center"),
                fields.next().expect("a status"),
                fields.next().expect("the other fields"),
            );
            out.push_str(&format!("{rest},Terminated,{cost_center}"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    fs::write(&path, out).expect("write the changed roster");
    path
}

/// Seconds, CPU seconds and peak RSS of the repetitions of one command.
#[derive(Default)]
struct Figures {
    secs: Vec<f64>,
    cpu: Vec<f64>,
    rss: f64,
}

impl Figures {
    fn add(&mut self, run: super::Run) {
        assert_eq!(run.exit, 0, "the measured command succeeded");
        self.secs.push(run.secs);
        self.cpu.push(run.cpu);
        self.rss = self.rss.max(run.rss_mb);
    }
}

impl Bench {
    /// See the module's documentation.
    pub(super) fn cases(&self, rows: usize) {
        let file = self.roster(rows);
        let changed = changed(&file);
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        println!(
            "\n== cases: {rows} rows; a 0.2 %-changed roster after a first import (60 rules); the worst first import (one broad rule) =="
        );
        let exe = path(&std::env::current_exe().expect("own path"));
        let (mut floor, mut resync, mut worst, mut worst_json) = Default::default();
        for rep in 0..self.reps {
            let f = measured_with(&[&exe], &[(FLOOR, &path(&file))]);
            assert_eq!(f.exit, 0, "floor pass");
            Figures::add(&mut floor, f);

            let (root, config) = self.fresh(&format!("cases-{rows}"), "");
            let cfg = path(&config);
            let first = measured(&[&bin(), "--config", &cfg, "process", &path(&file)]);
            assert_eq!(first.exit, 0, "first import applied");
            let copy = root.join("changed.csv");
            fs::copy(&changed, &copy).expect("copy roster");
            let r = measured(&[&bin(), "--config", &cfg, "process", &path(&copy)]);
            Figures::add(&mut resync, r);

            let w = self.worst(rows, &file, &[]);
            Figures::add(&mut worst, w);
            let j = self.worst(rows, &file, &["--json"]);
            Figures::add(&mut worst_json, j);
            println!(
                "  rep {rep}: floor {:.3} s | 0.2 % changed {:.3} s, {:.0} MB | worst first import {:.3} s, {:.0} MB | with --json {:.3} s, {:.0} MB",
                f.secs, r.secs, r.rss_mb, w.secs, w.rss_mb, j.secs, j.rss_mb
            );
            let _ = fs::remove_dir_all(&root);
        }
        let floor_s = median(floor.secs.clone());
        let k = format!("cases_{rows}");
        self.record(&format!("{k}_floor_s"), floor_s);
        println!(
            "  floor (csv ByteRecord pass):   {}",
            spread(&floor.secs, "s", 1.0)
        );
        for (name, key, target, figures) in [
            ("0.2 % changed re-upload", "changed", 3.0, &resync),
            ("worst first import", "worst", 5.0, &worst),
            ("worst, --json", "worst_json", 5.0, &worst_json),
        ] {
            let ratio = median(figures.secs.clone()) / floor_s;
            println!(
                "  {name:<29} {}  = {ratio:.2}x floor (target <= {target:.1}) | cpu {:.3} s | peak RSS {:.0} MB (target <= 400)",
                spread(&figures.secs, "s", 1.0),
                median(figures.cpu.clone()),
                figures.rss
            );
            self.record(&format!("{k}_{key}_s"), median(figures.secs.clone()));
            self.record(&format!("{k}_{key}_ratio"), ratio);
            self.record(&format!("{k}_{key}_cpu_s"), median(figures.cpu.clone()));
            self.record(&format!("{k}_{key}_rss_mb"), figures.rss);
        }
    }

    /// `process [ARGS]` of the roster into a fresh root whose one rule gives every employee
    /// not on leave an account (the rule added with the binary under test).
    fn worst(&self, rows: usize, file: &Path, args: &[&str]) -> super::Run {
        let root = self.dir.join(format!("worst-{rows}"));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("root");
        let config = root.join("autoprov.toml");
        fs::write(&config, super::common::config_toml(&root, "")).expect("config");
        let (_, code) = Self::timed(&config, &super::common::ADD_EVERYONE);
        assert_eq!(code, 0, "rules add");
        let cfg = config.to_str().expect("utf-8 path");
        let mut cmd = vec![bin(), "--config".into(), cfg.into()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        cmd.extend(["process".into(), file.to_str().expect("utf-8").into()]);
        let run = measured(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
        let _ = fs::remove_dir_all(&root);
        run
    }
}
