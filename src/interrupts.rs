//! Interrupts of `process` run without a daemon: the roster it began is finished, never
//! left half-taken.
//!
//! Killed by Ctrl-C (or SIGTERM, SIGHUP) while it processed, `process` had left its copy
//! in `inbox/`: the store unchanged, the command silent, and the next command or daemon
//! start applied the roster unasked, audited as `autoprov` instead of the person who ran
//! it. Now such a signal, while [`finish_first`] is in force, waits: the roster is taken
//! and filed, and then [`finished`] ends the process by that signal, as it would have
//! ended (a shell running a script stops it only for a command killed by the signal). At
//! any other time (asking a daemon, reading the file, writing the report out) the signal
//! acts at once, as before. A signal the caller ignores (`nohup`, a background job's
//! SIGINT) is left ignored.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask, raise};
use std::io::Write;
use std::sync::Mutex;

/// Whether a roster is being taken here, and the stopping signal that came meanwhile.
struct State {
    finishing: bool,
    came: Option<Signal>,
}

/// One lock for the decision and the move into `inbox/`: a signal that finds the roster
/// not yet being taken ends the process while it holds the lock, so the copy is never
/// named after that.
static STATE: Mutex<State> = Mutex::new(State {
    finishing: false,
    came: None,
});

/// The stopping signals this process does not ignore (`/proc/self/status`'s `SigIgn`).
fn stops() -> SigSet {
    let ignored = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("SigIgn:"))?;
            u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).ok()
        })
        .unwrap_or(0);
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        if ignored & (1 << (s as u32 - 1)) == 0 {
            set.add(s);
        }
    }
    set
}

/// Ends the process by `signal`: its action is the default one (a signal the caller
/// ignores is never waited for), so unblocked here it ends every thread.
fn die_of(signal: Signal) -> ! {
    let mut one = SigSet::empty();
    one.add(signal);
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
    let _ = raise(signal);
    // Not reached: the default action of these signals ends the process.
    std::process::exit(128 + signal as i32)
}

/// Blocks the stopping signals in this thread, and so in every thread started after it,
/// and waits for them on a thread of its own. Call it before any other thread starts (a
/// thread started earlier would still die of them). Without a thread the signals keep
/// their default action.
pub fn watch() {
    let set = stops();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return;
    }
    let waiter = std::thread::Builder::new().name("autoprov-signals".into());
    let started = waiter.spawn(move || {
        loop {
            let Ok(signal) = set.wait() else { continue };
            let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
            if !state.finishing {
                die_of(signal);
            }
            if state.came.is_none() {
                state.came = Some(signal);
                let _ = writeln!(
                    std::io::stderr(),
                    "autoprov: {signal}: the roster being processed is finished first (a roster \
                     is never left half-taken), then this command stops"
                );
            }
        }
    });
    if started.is_err() {
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    }
}

/// From now on a stopping signal waits for [`finished`] (see the module's note).
pub fn finish_first() {
    STATE.lock().unwrap_or_else(|p| p.into_inner()).finishing = true;
}

/// The roster's processing ended as `outcome` says: `flush` makes what the exit would have
/// written durable first (so a signal after this, which acts at once, loses nothing), then
/// a stopping signal that came meanwhile ends the process, saying `outcome`.
pub fn finished(outcome: &str, flush: impl FnOnce()) {
    // Still finishing while it flushes: a signal meanwhile is told how the roster ended (one
    // waiting on the lock during the flush had found it over, and ended the process unsaid).
    flush();
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    state.finishing = false;
    if let Some(signal) = state.came {
        let _ = writeln!(std::io::stderr(), "autoprov: {signal}: {outcome}; stopping");
        die_of(signal);
    }
}
