//! The daemon (`autoprov run`) as a child process of a test: started against a
//! [`TestEnv`], its stderr in `<root>/daemon-N.log`, SIGKILLed on drop (its log printed
//! when a test panics).
//!
//! ```ignore
//! let d = Daemon::start(&env);          // waits (≤ 20 s) until it is ready
//! let st = d.wait_exit(timeout, "...");  // after a signal or a crash point
//! d.stop();                              // SIGTERM, asserts exit status 0 (≤ 20 s)
//! ```

use super::TestEnv;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::fs;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `autoprov run`; its stderr goes to `<root>/daemon-N.log`. SIGKILLed on drop.
pub struct Daemon {
    /// `None` once it has exited (or been reaped).
    pub child: Option<Child>,
    /// The stderr log.
    pub log: PathBuf,
    /// When a test panics the log is printed: all of it, or only its last lines.
    pub log_tail: Option<usize>,
}

impl Daemon {
    /// Spawns the daemon with extra environment variables, without waiting.
    pub fn spawn(env: &TestEnv, envs: &[(&str, &str)]) -> Daemon {
        let n = (1..)
            .find(|n| !env.root().join(format!("daemon-{n}.log")).exists())
            .unwrap();
        let log = env.root().join(format!("daemon-{n}.log"));
        let file = fs::File::create(&log).expect("daemon log");
        let mut cmd = env.command();
        cmd.arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Daemon {
            child: Some(cmd.spawn().expect("spawn autoprov run")),
            log,
            log_tail: None,
        }
    }

    /// Starts the daemon and waits (≤ 20 s) until `status --json` answers through the socket
    /// with `daemon.running = true` and the log says "autoprov ready" (the environments
    /// log at info); panics with the daemon's log otherwise.
    pub fn start(env: &TestEnv) -> Daemon {
        Daemon::start_env(env, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_env(env: &TestEnv, envs: &[(&str, &str)]) -> Daemon {
        // Only once the socket answers: before that the CLI would open the store itself
        // and could take the store's lock from the starting daemon.
        Daemon::spawn(env, envs).wait_ready(env, Duration::from_secs(20), |_| {
            socket_answers(&env.socket)
        })
    }

    /// Waits (≤ `timeout`) until `reachable` holds, `status --json` then answers with
    /// `daemon.running = true` and the log says "autoprov ready". Panics with the log when
    /// the daemon exits or the time runs out.
    pub fn wait_ready(
        mut self,
        env: &TestEnv,
        timeout: Duration,
        reachable: impl Fn(&Daemon) -> bool,
    ) -> Daemon {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                panic!("the daemon exited during start-up ({st}):\n{}", self.log());
            }
            if reachable(&self) {
                let (code, out, _) = env.run(&["--json", "status"]);
                if code == 0 {
                    let v: Value = serde_json::from_str(&out).expect("status --json");
                    // `status` answers before the SFTP server and the watchers are up;
                    // "autoprov ready" (logged with READY=1) comes after all of them.
                    if v["daemon"]["running"] == true && self.log().contains("autoprov ready") {
                        return self;
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "the daemon was not ready within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Prints only the last `lines` lines of the log when a test panics.
    pub fn tail_on_panic(mut self, lines: usize) -> Daemon {
        self.log_tail = Some(lines);
        self
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("daemon running").id() as i32)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits (≤ `timeout`) for the daemon to exit (`what`: after what, for the message);
    /// returns its exit status, or panics with its log (the drop kills it).
    pub fn wait_exit(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .expect("daemon running")
                .try_wait()
                .expect("try_wait")
            {
                self.child = None;
                return st;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the daemon did not exit within {timeout:?} ({what}):\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then asserts a clean exit (status 0) within 20 s.
    pub fn stop(self) {
        self.stop_within(Duration::from_secs(20));
    }

    /// SIGTERM, then asserts a clean exit (status 0) within `timeout`.
    pub fn stop_within(mut self, timeout: Duration) {
        self.sigterm();
        let status = self.wait_exit(timeout, "after SIGTERM");
        assert_eq!(
            status.code(),
            Some(0),
            "daemon exit status {status} after SIGTERM:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            match self.log_tail {
                None => eprintln!("---- daemon log {} ----\n{log}", self.log.display()),
                Some(n) => {
                    let lines: Vec<&str> = log.lines().collect();
                    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
                    eprintln!("---- daemon log {} (tail) ----\n{tail}", self.log.display());
                }
            }
        }
    }
}

/// Whether something accepts on the socket and answers a line (an empty request gets a
/// "bad request" answer from the daemon; a stale socket file refuses the connection).
pub fn socket_answers(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.shutdown(std::net::Shutdown::Write).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).is_ok() && !answer.is_empty()
}
