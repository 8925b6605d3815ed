//! Headless Chromium for the page tests: the DOM a real browser builds from a page, and
//! screenshots of it.
//!
//! ```ignore
//! #[cfg_attr(missing_chromium, ignore = "needs chromium")]
//! fn page() {
//!     let dom = common::browser::dump_dom("http://127.0.0.1:8080/").unwrap();
//!     common::browser::screenshot(url, &path, 1280, 900).unwrap();
//! }
//! ```
//!
//! Every run has a fresh profile, no network chatter of its own, and a deadline: a page
//! that calls `alert()` (an unescaped `<script>` from a roster cell) makes headless
//! Chromium hang, and that must fail the test rather than stall it.

use super::prereq::{Need, require_tool};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long one browser run may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The DOM Chromium built from `url` (after its scripts, had any been allowed to run),
/// serialized as HTML.
pub fn dump_dom(url: &str) -> anyhow::Result<String> {
    let out = run(&["--dump-dom", url])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PNG of `url` in a window of `width` × `height` CSS pixels, written to `path`.
pub fn screenshot(url: &str, path: &Path, width: u32, height: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Under load (the whole suite at once on two cores) headless Chromium now and then
    // exits 0 without writing the file (seen once in CI): up to three tries, each checked.
    let mut stderr = String::new();
    for _ in 0..3 {
        let _ = std::fs::remove_file(path);
        let out = run(&[
            &format!("--screenshot={}", path.display()),
            &format!("--window-size={width},{height}"),
            "--hide-scrollbars",
            url,
        ])?;
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return Ok(());
        }
        stderr = tail(&out.stderr);
    }
    anyhow::bail!(
        "chromium wrote no screenshot to {} for {url} in three tries; stderr:\n{stderr}",
        path.display()
    )
}

/// Runs headless Chromium with `args` in its own process group; kills the group at the
/// deadline or when it is done (renderer processes must not outlive the test).
fn run(args: &[&str]) -> anyhow::Result<Output> {
    let chromium = require_tool(Need::Chromium);
    let profile = tempfile::tempdir()?;
    let mut command = Command::new(&chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", chromium.display()))?;
    let group = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let result = rx.recv_timeout(TIMEOUT);
    let _ = killpg(group, Signal::SIGKILL);
    let out = match result {
        Ok(out) => out?,
        Err(_) => {
            let stderr = rx
                .recv_timeout(Duration::from_secs(10))
                .ok()
                .and_then(Result::ok)
                .map(|o| tail(&o.stderr))
                .unwrap_or_default();
            anyhow::bail!(
                "chromium {args:?} did not finish within {TIMEOUT:?} (a page that runs alert() \
                 hangs headless Chromium: was a value left unescaped?); stderr:\n{stderr}"
            );
        }
    };
    anyhow::ensure!(
        out.status.success(),
        "chromium {args:?} failed ({}); stderr:\n{}",
        out.status,
        tail(&out.stderr)
    );
    Ok(out)
}

/// The end of Chromium's stderr, without its complaints about the missing D-Bus.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
