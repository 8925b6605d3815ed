//! HR data is never world-readable (README "Decisions"): run by hand with the common umask
//! 022, outside the systemd unit's `UMask=0027`, the CLI and the daemon create folders with
//! at most 0750 and files with at most 0640; private host keys 0600, the control socket 0660.
//!
//! The test process sets its umask to 022 (inherited by every command it starts), so this
//! file holds only tests that want that umask.

mod common;

use common::daemon::Daemon;
use common::{Settings, TestEnv, files, testdata};
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Host mode on 127.0.0.1:0 with one SFTP user (the daemon creates its host keys).
fn host_source() -> String {
    let public = fs::read_to_string(testdata("keys/hris_ed25519.pub")).expect("pub key");
    format!(
        "[source]\nmode = \"host\"\nlisten = \"127.0.0.1:0\"\nrescan_interval = \"1s\"\n\n\
         [[source.users]]\nname = \"hris\"\nauthorized_keys = [{:?}]\n",
        public.trim()
    )
}

/// Watch mode on `dir`, settle 1 s, rescans every second.
fn watch_source(dir: &Path) -> String {
    format!(
        "[source]\nmode = \"watch\"\nwatch_dir = {:?}\nsettle = \"1s\"\nstartup_settle = \"1s\"\nrescan_interval = \"1s\"\n",
        dir.to_str().unwrap()
    )
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every entry under `dir` (itself included), depth first.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The modes under `dir` that are too open: folders above 0750, files above 0640, private
/// host keys other than 0600.
fn too_open(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    walk(dir, &mut all);
    all.iter()
        .filter_map(|p| {
            let m = mode(p);
            let private_key = p.parent().is_some_and(|d| d.ends_with("host_keys"))
                && p.extension().is_none_or(|x| x != "pub");
            let ok = if p.is_dir() {
                m & !0o750 == 0
            } else if private_key {
                m == 0o600
            } else {
                m & !0o640 == 0
            };
            (!ok).then(|| format!("{:o} {}", m, p.display()))
        })
        .collect()
}

fn wait_for_file(env: &TestEnv, name: &str, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !files(env).iter().any(|f| f["name"] == name) {
        assert!(
            Instant::now() < deadline,
            "{name} was not processed:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn with_umask_022_nothing_created_is_group_writable_or_readable_by_others() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut env = TestEnv::with(Settings {
        max_grants: Some((10_000_000, 100)),
        max_deactivations: Some((10_000_000, 100)),
        log_level: "info".into(),
        extra_toml: host_source(),
        ..Settings::default()
    });
    // The CLI without a daemon: data dir, store, drop folders, a roster and its reports.
    env.load_sample_rules();
    let day1 = env.input_from("sequence/day1.csv", "day1.csv");
    assert_eq!(env.process(&day1, &[]).0, 0);
    let manual = env.root().join("manual.backup");
    env.json_ok(0, &["backup", manual.to_str().unwrap()]);

    // The daemon: host keys, the automatic backup, the control socket.
    let d = Daemon::start(&env);
    let socket = fs::symlink_metadata(&env.socket).expect("control socket");
    assert!(socket.file_type().is_socket());
    assert_eq!(mode(&env.socket), 0o660, "control.socket");
    d.stop();

    // Watch mode: a world-readable file renamed in from watch_dir keeps no such mode.
    let watch = env.root().join("watch");
    fs::create_dir_all(&watch).unwrap();
    env.reconfigure(|s| s.extra_toml = watch_source(&watch));
    let d = Daemon::start(&env);
    let staged = env.root().join("day3.csv");
    fs::copy(testdata("sequence/day3.csv"), &staged).unwrap();
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&staged, watch.join("day3.csv")).unwrap();
    wait_for_file(&env, "day3.csv", &d);
    d.stop();

    let processed = env.files_in("processed");
    for name in ["day1.csv", "day3.csv"] {
        let filed: Vec<&String> = processed.iter().filter(|n| n.contains(name)).collect();
        assert_eq!(filed.len(), 3, "{name} and its two reports: {processed:?}");
    }
    let backups = fs::read_dir(env.data_dir.join("backups")).unwrap().count();
    assert!(backups >= 1, "the daemon's automatic backup");
    assert!(
        env.data_dir.join("host_keys").read_dir().unwrap().count() >= 1,
        "host keys were created"
    );
    let mut open = too_open(&env.data_dir);
    if mode(&manual) & !0o640 != 0 {
        open.push(format!("{:o} {}", mode(&manual), manual.display()));
    }
    assert!(
        open.is_empty(),
        "too open with umask 022:\n{}",
        open.join("\n")
    );
}
