//! Interrupts of `process` run without a daemon: the roster it began is finished, never
//! left half-taken.
//!
//! Killed by Ctrl-C (or SIGTERM, SIGHUP) while it processed, `process` had left its copy
//! in `inbox/`: the store unchanged, the command silent, and the next command or daemon
//! start applied the roster unasked, audited as `autoprov` instead of the person who ran
//! it. Now such a signal, while [`finish_first`] is in force, is told to wait on stderr and
//! the command ends as it would have (its report printed, its exit code); at any other time
//! (asking a daemon, opening the store) it ends the process as before (exit 128 + N).

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a roster is being processed here.
static FINISHING: AtomicBool = AtomicBool::new(false);

/// The signals waited for: what a person or a service manager sends to stop a command.
fn stops() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
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
        let mut told = false;
        loop {
            let Ok(signal) = set.wait() else { continue };
            if !FINISHING.load(Ordering::SeqCst) {
                std::process::exit(128 + signal as i32);
            }
            if !told {
                told = true;
                let _ = writeln!(
                    std::io::stderr(),
                    "autoprov: {signal}: the roster being processed is finished first (a roster \
                     is never left half-taken); its report follows"
                );
            }
        }
    });
    if started.is_err() {
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    }
}

/// From now on a stopping signal waits for this process to end (see the module's note).
pub fn finish_first() {
    FINISHING.store(true, Ordering::SeqCst);
}
