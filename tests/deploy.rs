//! Deployment files: the shipped configs load with the real binary, and the systemd unit
//! is valid and hardened (SPEC §9: `systemd-analyze security --offline=true` at most 2.0).
//!
//! The systemd checks need `systemd-analyze` and `systemd-sysusers` (Debian package
//! `systemd`, installed by .ci/run). Outside CI they are ignored where it is missing; under
//! `CI=true` they fail (tests/common/prereq.rs).

mod common;

use common::{Need, require};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MAX_EXPOSURE: f64 = 2.0;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// `autoprov [--json] --config CONFIG status` with the state redirected into `dir`.
fn status(config: &Path, dir: &Path, env: &[(&str, &str)], json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autoprov"));
    // Overrides from the caller's environment would change what is being tested.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AUTOPROV__") {
            cmd.env_remove(key);
        }
    }
    cmd.env("AUTOPROV__DATA_DIR", dir.join("data"))
        .env("AUTOPROV__CONTROL__SOCKET", dir.join("autoprov.sock"))
        .envs(env.iter().copied());
    if json {
        cmd.arg("--json");
    }
    cmd.arg("--config").arg(config).arg("status");
    cmd.output().expect("running autoprov")
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: autoprov status exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn status_json(what: &str, out: &Output) -> serde_json::Value {
    assert_ok(what, out);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: status --json is not JSON ({e})"))
}

#[test]
fn example_config_loads_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    // As shipped, its placeholder key is what `status`, the config check, names.
    let shipped = repo("config/autoprov.example.toml");
    let out = status(&shipped, dir.path(), &[], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("source.users") && err.contains("authorized_keys entry 1"),
        "{err}"
    );
    // With the HR system's key in its place, it loads.
    let key = read("testdata/keys/hris_ed25519.pub");
    let placeholder =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA-REPLACE-WITH-THE-HRIS-PUBLIC-KEY hris@workday";
    let text = read("config/autoprov.example.toml");
    assert!(text.contains(placeholder));
    let config = dir.path().join("autoprov.toml");
    std::fs::write(&config, text.replace(placeholder, key.trim())).unwrap();
    let out = status(&config, dir.path(), &[], true);
    let j = status_json("config/autoprov.example.toml", &out);
    assert_eq!(j["data_dir"], dir.path().join("data").to_str().unwrap());
    assert_eq!(j["mode"], "host");
    assert_eq!(j["listen"], "0.0.0.0:2222");
    assert_eq!(j["sso"]["enabled"], true);
}

#[test]
fn quickstart_config_loads_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = status(&repo("config/quickstart.toml"), dir.path(), &[], false);
    assert_ok("config/quickstart.toml", &out);
}

/// The commented-out poll-mode block of the example is valid once uncommented.
#[test]
fn example_poll_block_loads_when_uncommented() {
    let text = read("config/autoprov.example.toml");
    let mut inside = false;
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line == "# [source.remote]" {
                inside = true;
                found = true;
            } else if line.trim().is_empty() {
                inside = false;
            }
            match line.strip_prefix("# ") {
                Some(rest) if inside => rest.to_string(),
                _ => line.to_string(),
            }
        })
        .collect();
    assert!(
        found,
        "the example has no commented-out [source.remote] block"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("poll.toml");
    let poll = [("AUTOPROV__SOURCE__MODE", "poll")];
    // As written, its pinned host key is a placeholder: the config check says so, as `run`
    // would.
    std::fs::write(&config, lines.join("\n") + "\n").unwrap();
    let out = status(&config, dir.path(), &poll, true);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("known_host_key"),
        "{out:?}"
    );
    // With the server's real key in its place, it loads.
    let key = read("testdata/keys/hris_ed25519.pub");
    let real = lines.join("\n").replace(
        "known_host_key = \"ssh-ed25519 AAAA...\"",
        &format!("known_host_key = {:?}", key.trim()),
    );
    std::fs::write(&config, real + "\n").unwrap();
    let out = status(&config, dir.path(), &poll, true);
    let j = status_json("example with [source.remote] uncommented", &out);
    assert_eq!(j["mode"], "poll");
}

/// Every key that config.rs accepts is documented in the example (set or commented out).
#[test]
fn example_config_documents_every_key() {
    let text = read("config/autoprov.example.toml");
    let keys = [
        "data_dir",
        "[sso]",
        "enabled",
        "provider",
        "[provisioning]",
        "roles",
        "[roster]",
        "encoding",
        "inactive_statuses",
        "max_bytes",
        "max_rows",
        "[roster.columns]",
        "employee_id",
        "email",
        "manager_id",
        "employment_status",
        "[safety]",
        "max_deactivations",
        "max_grants",
        "[source]",
        "mode",
        "listen",
        "ssh_profile",
        "rsa_host_key",
        "watch_dir",
        "settle",
        "rescan_interval",
        "max_upload_bytes",
        "stale_after",
        "auth_deadline",
        "idle_timeout",
        "max_connections_per_ip",
        "[[source.users]]",
        "name",
        "authorized_keys",
        "password_hash",
        "[source.remote]",
        "host",
        "port",
        "user",
        "private_key",
        "known_host_key",
        "inbox",
        "processed",
        "rejected",
        "poll_interval",
        "[control]",
        "socket",
        "org_admins",
        "[log]",
        "format",
        "level",
        "[notify]",
        "webhook_url",
        "[web]",
        "user_header",
        "trusted_proxies",
        "org_admin_roles",
        "api_tokens_file",
        "dev_user",
    ];
    for key in keys {
        let documented = text.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            if key.starts_with('[') {
                line == key
            } else {
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            }
        });
        assert!(
            documented,
            "config/autoprov.example.toml does not show {key}"
        );
    }
}

/// The directives SPEC §9 and the deployment rely on, whatever systemd-analyze says.
#[test]
fn unit_has_the_required_directives() {
    let unit = read("systemd/autoprov.service");
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for directive in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/local/bin/autoprov --config /etc/autoprov/autoprov.toml run",
        "User=autoprov",
        "Group=autoprov",
        "StateDirectory=autoprov",
        "RuntimeDirectory=autoprov",
        "ConfigurationDirectory=autoprov",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "StartLimitIntervalSec=0",
        "KillSignal=SIGTERM",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            lines.contains(&directive),
            "systemd/autoprov.service lacks {directive}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("WatchdogSec=")));
    assert!(lines.iter().any(|l| l.starts_with("TimeoutStopSec=")));
    // The sysusers snippet creates the user the unit runs as.
    let sysusers = read("systemd/autoprov.sysusers.conf");
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", "autoprov"])),
        "systemd/autoprov.sysusers.conf does not create user autoprov"
    );
}

/// Runs `systemd-analyze ARGS`.
fn systemd_analyze(args: &[&str]) -> Output {
    require(Need::Systemd);
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running systemd-analyze: {e}"))
}

/// The number in "→ Overall exposure level for autoprov.service: 1.2 OK 🙂".
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let (_, after) = line.rsplit_once(": ")?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_is_parsed_from_the_report_line() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for autoprov.service: 1.2 OK 🙂\n"),
        Some(1.2)
    );
    assert_eq!(exposure("nothing here"), None);
}

#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd-analyze (apt-get install systemd; .ci/run installs it)"
)]
fn unit_is_rated_ok_by_systemd_analyze_security() {
    let unit = repo("systemd/autoprov.service");
    let unit = unit.to_str().unwrap();
    let out = systemd_analyze(&["security", "--no-pager", "--offline=true", unit]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let score = exposure(&text).unwrap_or_else(|| {
        panic!(
            "no \"Overall exposure level\" line ({})\n{text}\n{stderr}",
            out.status
        )
    });
    eprintln!("systemd-analyze security: {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure level {score} > {MAX_EXPOSURE}:\n{text}"
    );
}

/// `systemd-analyze verify` finds nothing to complain about in the unit. ExecStart= must
/// name an existing executable, so a copy of the unit points it at the freshly built binary.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd-analyze (apt-get install systemd; .ci/run installs it)"
)]
fn unit_passes_systemd_analyze_verify() {
    let unit = read("systemd/autoprov.service");
    let exec = "ExecStart=/usr/local/bin/autoprov ";
    assert!(unit.contains(exec), "unexpected ExecStart= in the unit");
    let unit = unit.replace(
        exec,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_autoprov")),
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("autoprov.service");
    std::fs::write(&copy, unit).unwrap();
    let out = systemd_analyze(&["verify", "--no-pager", copy.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify also loads the units ours depends on; only complaints about ours count.
    let ours: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("autoprov"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// The sysusers.d snippet is valid and creates user and group autoprov (needs root).
#[test]
#[cfg_attr(
    any(missing_root, missing_systemd),
    ignore = "needs root and systemd-sysusers (apt-get install systemd; .ci/run installs it)"
)]
fn sysusers_snippet_creates_the_user() {
    require(Need::Root);
    require(Need::Systemd);
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let snippet = repo("systemd/autoprov.sysusers.conf");
    let mut cmd = Command::new("systemd-sysusers");
    cmd.arg(format!("--root={}", root.path().display()))
        .arg(&snippet);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running systemd-sysusers: {e}"));
    assert!(
        out.status.success(),
        "systemd-sysusers: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("autoprov:"))
        .expect("user autoprov created");
    assert!(
        user.ends_with(":/var/lib/autoprov:/usr/sbin/nologin"),
        "{user}"
    );
    assert!(group.lines().any(|l| l.starts_with("autoprov:")));
}

/// `source.hris.provider` given in the environment, not the file: the file's other keys are
/// still read strictly (a required key missing from the file had ended the strict reading,
/// and `enabled = "yes"` had then turned SSO on).
#[test]
fn a_provider_from_the_environment_leaves_the_file_read_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hris.toml");
    let text = "[source]\nmode = \"hris\"\n[source.hris]\nevery = \"1h\"\n\
                [source.hris.csv_url]\nurl = \"https://hr.example/r.csv\"\n[sso]\nenabled = \"yes\"\n";
    std::fs::write(&config, text).unwrap();
    let provider = [("AUTOPROV__SOURCE__HRIS__PROVIDER", "csv_url")];
    let out = status(&config, dir.path(), &provider, true);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 8") && err.contains("expected a boolean"),
        "{err}"
    );
    // Valid, it loads with the provider from the environment; missing, it is named.
    std::fs::write(&config, text.replace("\"yes\"", "true")).unwrap();
    let j = status_json(
        "provider from the environment",
        &status(&config, dir.path(), &provider, true),
    );
    assert_eq!(j["mode"], "hris");
    let out = status(&config, dir.path(), &[], true);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("source.hris.provider is missing"), "{err}");
}

/// `testdata/load_rules.sh` reads a rules file saved by Windows tools (a UTF-8 byte order
/// mark, CRLF) as it reads a plain one: the mark had become part of the first rule's name,
/// or made a first comment line a syntax error.
#[test]
fn load_rules_reads_a_rules_file_with_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let plain = "# sample\nFin | Billing Admin | department = Finance ; is_manager = true\n";
    let windows = format!("\u{feff}{}", plain.replace('\n', "\r\n"));
    let dry_run = |text: &str, name: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = Command::new("bash")
            .arg(repo("testdata/load_rules.sh"))
            .arg("x.toml")
            .env("RULES", &file)
            .env("DRY_RUN", "1")
            .output()
            .unwrap();
        assert_ok(name, &out);
        String::from_utf8(out.stdout).unwrap()
    };
    let expected = dry_run(plain, "plain.txt");
    assert!(expected.contains("--name Fin "), "{expected}");
    assert_eq!(dry_run(&windows, "windows.txt"), expected);
    let first_rule = format!("\u{feff}{}", plain.lines().nth(1).unwrap());
    assert_eq!(dry_run(&first_rule, "first.txt"), expected);
}
