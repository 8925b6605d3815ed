//! Failures of the work itself (SPEC §7, exit 5): an I/O error, a full disk, a damaged or
//! unusable store. Unlike a usage error (2) or a refusal (3) they are nobody's mistake on
//! the command line, and a script may retry once the cause is fixed.
//!
//! [`error_response`] is the one place that turns an error into an exit code and a
//! message: refusals of the pipeline ([`Blocked`], 3), failures of the work (5, with what
//! they left behind), and everything else, a usage or config error (2).

use super::{Response, exit};
use crate::store::StoreError;
use std::path::PathBuf;

/// What a failed command left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aftermath {
    /// Nothing was changed: the store and the drop are as before the command.
    Unchanged,
    /// A change was committed to the store, and a step after the commit (filing the file
    /// and its reports) failed; the next command or daemon start finishes it.
    Committed,
}

/// The store did not pass the start-up check: autoprov refuses to use it (SPEC §8).
#[derive(Debug, thiserror::Error)]
#[error("refusing to run on a damaged store {}: {detail}; {advice}", store.display())]
pub struct DamagedStore {
    /// The store's folder.
    pub store: PathBuf,
    /// What the check found.
    pub detail: String,
    /// Which backup to restore (`backup::advice`).
    pub advice: String,
}

/// The store is locked by another process: a daemon listening on another socket, or
/// another command that opened it. Not a failure of the work: the caller can wait or
/// point the command at the daemon's socket.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store {} is in use by another process (a daemon on another control.socket, or another autoprov command); try again, or check control.socket",
    store.display()
)]
pub struct StoreInUse {
    /// The store's folder.
    pub store: PathBuf,
}

/// A change was committed, then filing it failed (attached as context to the cause).
#[derive(Debug, thiserror::Error)]
#[error(
    "file {id} ({name}) was applied and recorded, but filing it and its reports failed; the next command or daemon start finishes the filing"
)]
pub struct AfterCommit {
    /// The ledger id.
    pub id: u64,
    /// The name it had in inbox/.
    pub name: String,
}

/// Whether `e` is a failure of the work (exit 5), and what it left behind; None for
/// usage errors and refusals.
pub fn failed(e: &anyhow::Error) -> Option<Aftermath> {
    if has::<AfterCommit>(e) {
        return Some(Aftermath::Committed);
    }
    let failure = has::<std::io::Error>(e)
        || has::<StoreError>(e)
        || has::<sled::Error>(e)
        || has::<DamagedStore>(e);
    failure.then_some(Aftermath::Unchanged)
}

/// The committed file a failure concerns, if it failed after a commit.
pub fn committed(e: &anyhow::Error) -> Option<&AfterCommit> {
    e.downcast_ref::<AfterCommit>()
}

/// Whether `T` is in `e`: as its context, its root, or the source of either.
fn has<T: std::error::Error + Send + Sync + 'static>(e: &anyhow::Error) -> bool {
    e.downcast_ref::<T>().is_some() || e.chain().any(|cause| cause.is::<T>())
}

/// Refusals of the pipeline (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum Blocked {
    /// Only held files can be decided.
    #[error(
        "refused: file {id} ({name}) is {status}, not held: only held files can be approved or rejected"
    )]
    NotHeld {
        /// The file's id.
        id: u64,
        /// Its stored name.
        name: String,
        /// Its status.
        status: &'static str,
    },
    /// Approving would apply other changes than the held report showed (SPEC §4).
    #[error(
        "refused: nothing was applied. The plan for file {id} ({name}) changed since its report was shown (rules or accounts changed meanwhile): {what}. Its held report now shows the new plan; review it (`autoprov files show {id}`) and approve again to apply it"
    )]
    PlanChanged {
        /// The held file's id.
        id: u64,
        /// Its stored name.
        name: String,
        /// What differs, in words.
        what: String,
    },
    /// A held file waits for a decision.
    #[error(
        "file {id} ({name}) is held and blocks later files: decide with `autoprov files approve {id}` or `autoprov files reject {id}`"
    )]
    Held {
        /// The held file's id.
        id: u64,
        /// Its stored name.
        name: String,
    },
}

/// The answer to a command that ended in an error, the one place errors become exit codes:
/// 3 for a refusal of the pipeline, 5 when the work could not be done (SPEC §7), else 2.
pub fn error_response(e: &anyhow::Error) -> Response {
    if let Some(b) = e.downcast_ref::<Blocked>() {
        return Response::fail(exit::REFUSED, b.to_string());
    }
    match failed(e) {
        Some(Aftermath::Unchanged) => {
            Response::fail(exit::FAILED, format!("failed: {e:#}; nothing was changed"))
        }
        Some(Aftermath::Committed) => Response::fail(exit::FAILED, format!("failed: {e:#}")),
        None => Response::fail(exit::USAGE, format!("error: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn enospc() -> anyhow::Error {
        anyhow::Error::new(std::io::Error::from_raw_os_error(28)).context("writing the report")
    }

    #[test]
    fn io_store_and_damage_are_failures_that_changed_nothing() {
        assert_eq!(failed(&enospc()), Some(Aftermath::Unchanged));
        let store: anyhow::Error = StoreError::Corrupt("bad bucket".into()).into();
        assert_eq!(
            failed(&store.context("listing")),
            Some(Aftermath::Unchanged)
        );
        let sled_io = StoreError::Sled(sled::Error::Io(std::io::Error::other("eio")));
        assert_eq!(
            failed(&anyhow::Error::new(sled_io)),
            Some(Aftermath::Unchanged)
        );
        let damaged = DamagedStore {
            store: "/s".into(),
            detail: "x".into(),
            advice: "y".into(),
        };
        assert_eq!(failed(&damaged.into()), Some(Aftermath::Unchanged));
    }

    #[test]
    fn a_failure_after_a_commit_says_so() {
        let e = enospc().context(AfterCommit {
            id: 7,
            name: "r.csv".into(),
        });
        let e = Err::<(), _>(e).context("processing").unwrap_err();
        assert_eq!(failed(&e), Some(Aftermath::Committed));
        assert_eq!(committed(&e).map(|c| c.id), Some(7));
    }

    #[test]
    fn usage_errors_and_a_locked_store_are_not_failures() {
        assert_eq!(failed(&anyhow::anyhow!("no file 3")), None);
        let busy = StoreInUse { store: "/s".into() };
        assert_eq!(failed(&busy.into()), None);
    }
}
