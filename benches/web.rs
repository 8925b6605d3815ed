//! `GET /api/v1/auth/check?email=E` through the daemon over HTTP, as an SSO gateway asks it
//! at every sign-in, on a store holding the accounts of a `BENCH_ROWS`-row roster (default
//! 1,000,000; see BENCHMARKS.md). Run with
//!
//! ```sh
//! CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench web
//! BENCH_ROWS=100000 CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench web   # quicker
//! ```
//!
//! The store is made through the binary (`rules add` of one broad rule, `process` of the
//! generated roster), the token with `autoprov token add`. Each figure is the latency of one
//! request seen by the client: sequential on one kept-alive connection, sequential with a
//! new connection each time, and 8 clients at once (each on its own connection). Beside
//! them, `GET /healthz` (a read of the ledger, no token check) as a floor of the HTTP stack.
//! Environment: `BENCH_ROWS`, `BENCH_CHECKS` (default 2000), `BENCH_DIR` (default
//! /var/tmp/autoprov-bench).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_autoprov")
}

fn num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the binary with `args`; (seconds, stdout), asserting exit 0.
fn run(config: &Path, args: &[&str]) -> (f64, String) {
    let start = Instant::now();
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run autoprov");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "autoprov {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// `count` Work Emails of random rows of the roster (seed 3), in random order; every tenth
/// is made unknown, so denials are measured too.
fn sample_emails(file: &Path, rows: usize, count: usize) -> Vec<String> {
    let mut rng = common::Rng::new(3);
    let picks: Vec<usize> = (0..count)
        .map(|_| rng.below(rows as u64) as usize)
        .collect();
    let wanted: std::collections::BTreeSet<usize> = picks.iter().copied().collect();
    let mut reader = csv::Reader::from_path(file).expect("open roster");
    let by_row: std::collections::BTreeMap<usize, String> = reader
        .records()
        .enumerate()
        .filter(|(i, _)| wanted.contains(i))
        .map(|(i, r)| (i, r.expect("roster row")[3].to_string()))
        .collect();
    picks
        .iter()
        .enumerate()
        .map(|(n, i)| match n % 10 {
            9 => format!("nobody{n}@example.invalid"),
            _ => by_row[i].clone(),
        })
        .collect()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts the daemon; waits until `status` shows the web address; returns it.
fn start(root: &Path, config: &Path) -> (Child, String) {
    let log = fs::File::create(root.join("daemon.log")).expect("log");
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = Command::new(bin())
            .arg("--config")
            .arg(config)
            .args(["--json", "status"])
            .output()
            .expect("status");
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(web) = v["daemon"]["web"].as_str()
        {
            return (child, format!("http://{web}"));
        }
        if Instant::now() >= deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "daemon not ready: {}",
                fs::read_to_string(root.join("daemon.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Latencies (seconds) of GETs of `urls` by `clients` clients at once.
async fn measure(
    client: &reqwest::Client,
    urls: &[String],
    token: &str,
    clients: usize,
) -> Vec<f64> {
    let chunks: Vec<Vec<String>> = urls
        .chunks(urls.len().div_ceil(clients))
        .map(<[String]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (client, bearer) = (client.clone(), format!("Bearer {token}"));
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for url in chunk {
                let start = Instant::now();
                let r = client
                    .get(&url)
                    .header("authorization", &bearer)
                    .send()
                    .await
                    .expect("GET");
                assert_eq!(r.status(), 200, "{url}");
                let body = r.bytes().await.expect("body");
                times.push(start.elapsed().as_secs_f64());
                assert!(body.starts_with(b"{\"allowed\":") || body == "ok\n");
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

fn report(what: &str, xs: &[f64], wall: f64) {
    let ms = |p| percentile(xs, p) * 1e3;
    println!(
        "  {what:<52} p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {:.0} req/s",
        ms(50.0),
        ms(99.0),
        ms(100.0),
        xs.len() as f64 / wall
    );
}

fn main() {
    let rows = num("BENCH_ROWS", 1_000_000);
    let checks = num("BENCH_CHECKS", 2000);
    let dir = PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/autoprov-bench".into()),
    );
    let root = dir.join("web");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("bench root");
    let roster = common::roster_file(&dir, rows);
    let public = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/keys/hris_ed25519.pub"),
    )
    .expect("test key");
    let source = format!(
        "[source]\nmode = \"host\"\nlisten = \"127.0.0.1:0\"\n[[source.users]]\nname = \"hris\"\nauthorized_keys = [{:?}]\n\n\
         [web]\nlisten = \"127.0.0.1:0\"\napi_tokens_file = {:?}\n",
        public.trim(),
        root.join("api-tokens").display().to_string()
    );
    let config = root.join("autoprov.toml");
    fs::write(&config, common::config_toml(&root, &source)).expect("config");
    println!(
        "\n== web: GET /api/v1/auth/check?email=E over HTTP, {checks} random roster emails (1 in 10 unknown), store of a {rows}-row roster =="
    );
    run(&config, &common::ADD_EVERYONE);
    let (import, _) = run(&config, &["process", roster.to_str().expect("utf-8")]);
    let (_, out) = run(&config, &["token", "add", "bench"]);
    let token = out.lines().next().expect("token").trim().to_string();
    let (_, status) = run(&config, &["--json", "status"]);
    let st: serde_json::Value = serde_json::from_str(&status).expect("status");
    println!("  import: {import:.1} s; accounts: {}", st["accounts"]);
    let (mut child, base) = start(&root, &config);
    let emails = sample_emails(&roster, rows, checks);
    let urls: Vec<String> = emails
        .iter()
        .map(|e| format!("{base}/api/v1/auth/check?email={}", encode(e)))
        .collect();
    let health: Vec<String> = (0..checks).map(|_| format!("{base}/healthz")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let keep = reqwest::Client::new();
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        // Warm-up: the first look-ups read the index's pages from disk.
        measure(&keep, &urls[..urls.len().min(200)], &token, 1).await;
        for (what, client, list, clients) in [
            ("auth/check, one kept-alive connection", &keep, &urls, 1),
            ("auth/check, a new connection per request", &fresh, &urls, 1),
            ("auth/check, 8 clients at once", &keep, &urls, 8),
            (
                "floor: /healthz, one kept-alive connection",
                &keep,
                &health,
                1,
            ),
        ] {
            let start = Instant::now();
            let times = measure(client, list, &token, clients).await;
            report(what, &times, start.elapsed().as_secs_f64());
        }
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let _ = fs::remove_dir_all(&root);
}
