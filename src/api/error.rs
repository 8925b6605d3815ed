//! The one error type of every command (SPEC §7's exit codes 2–5; 0 and 1 are answers, not
//! errors). Errors are typed where they arise — an I/O or store error is a failure of the
//! work, a refusal of the pipeline is a [`Blocked`], a bad argument is a usage error — and
//! [`Error::exit_code`] / [`Error::response`] read the type; nothing is classified after the
//! fact. Context added on the way up ([`Context`]) only adds words.

use super::{Response, exit};
use crate::store::StoreError;
use std::fmt::Display;
use std::path::PathBuf;

/// The result of engine and command functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a command did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Usage or config error (exit 2): the caller's to fix.
    #[error("error: {0}")]
    Usage(String),
    /// The store is locked by another process (exit 4, as a daemon that cannot be reached:
    /// SPEC §7's 2 is for the command line and the config, and a script told "usage
    /// error" would not try again): not a failure of the work; the caller can wait or point
    /// the command at the daemon's socket.
    #[error("error: {0}")]
    InUse(StoreInUse),
    /// Refused by a rule of the pipeline (exit 3).
    #[error("{0}")]
    Refused(Blocked),
    /// The daemon is stopping or gone (exit 4).
    #[error("{0}")]
    Unreachable(String),
    /// The work could not be done (exit 5): I/O, a full disk, a damaged store.
    #[error("{0}")]
    Failed(Failure),
}

/// A failure of the work (exit 5), with what it left behind.
#[derive(Debug)]
pub struct Failure {
    /// What failed, outermost context first, the cause last.
    message: String,
    /// The cause alone, without the context added on the way up.
    cause: String,
    /// Set when a change was committed before the failure (filing it failed).
    committed: Option<AfterCommit>,
    /// Something was left changed, which the message says (see [`Error::failed_leaving`]).
    left_changed: bool,
}

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.committed.is_some() || self.left_changed {
            true => write!(f, "failed: {}", self.message),
            false => write!(f, "failed: {}; nothing was changed", self.message),
        }
    }
}

impl Error {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// A failure of the work (exit 5) that changed nothing.
    pub fn failed(message: impl Into<String>) -> Error {
        let message = message.into();
        Error::Failed(Failure {
            cause: message.clone(),
            message,
            committed: None,
            left_changed: false,
        })
    }

    /// A failure of the work (exit 5) that left something changed: `message` says what.
    pub fn failed_leaving(message: impl Into<String>) -> Error {
        match Error::failed(message) {
            Error::Failed(f) => Error::Failed(Failure {
                left_changed: true,
                ..f
            }),
            other => other,
        }
    }

    /// What went wrong with its context, without the exit code's wording ("error:",
    /// "failed:", "nothing was changed").
    pub fn detail(&self) -> String {
        match self {
            Error::Usage(m) => m.clone(),
            Error::Failed(f) => f.message.clone(),
            other => other.to_string(),
        }
    }

    /// The innermost cause of a failure, without the context added on the way up.
    pub fn cause(&self) -> String {
        match self {
            Error::Failed(f) => f.cause.clone(),
            other => other.detail(),
        }
    }

    /// SPEC §7's exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::InUse(_) => exit::UNREACHABLE,
            Error::Refused(_) => exit::REFUSED,
            Error::Unreachable(_) => exit::UNREACHABLE,
            Error::Failed(_) => exit::FAILED,
        }
    }

    /// The answer a caller prints.
    pub fn response(&self) -> Response {
        Response::fail(self.exit_code(), self.to_string())
    }

    /// Whether this is a failure of the work (exit 5).
    pub fn is_failure(&self) -> bool {
        matches!(self, Error::Failed(_))
    }

    /// The committed file a failure concerns, if it failed after a commit.
    pub fn committed(&self) -> Option<&AfterCommit> {
        match self {
            Error::Failed(f) => f.committed.as_ref(),
            _ => None,
        }
    }

    /// Adds what was being done to a usage error or a failure; refusals and an unreachable
    /// daemon already say all a person needs.
    pub fn context(self, what: impl Display) -> Error {
        match self {
            Error::Usage(m) => Error::Usage(format!("{what}: {m}")),
            Error::Failed(f) => Error::Failed(Failure {
                message: format!("{what}: {}", f.message),
                ..f
            }),
            other => other,
        }
    }

    /// Marks a failure as one after the commit of file `id` (`name`), `applied` or not: its
    /// outcome is in the store, the filing is finished by the next command or start.
    pub fn after_commit(self, id: u64, name: &str, applied: bool) -> Error {
        let mark = AfterCommit {
            id,
            name: name.to_string(),
            applied,
        };
        match self {
            Error::Failed(f) => Error::Failed(Failure {
                message: format!("{mark}: {}", f.message),
                committed: Some(mark),
                ..f
            }),
            other => other,
        }
    }
}

/// Adds context to the error of a `Result`, turning it into an [`Error`].
pub trait Context<T> {
    /// `what` was being done when the error happened.
    fn context(self, what: impl Display) -> Result<T>;
    /// Like `context`, the words built only on error.
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::failed(e.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            // Not "nothing was changed": a `rules add` repeated on that word made the rule twice.
            StoreError::Unflushed(_) => Error::failed_leaving(format!(
                "{e}; it may be missing once the store is read from disk again (the daemon \
                 stops to restart for that): check whether it is there, once autoprov runs \
                 again, before making it again"
            )),
            // Not a failure of the work: the operator runs the autoprov that wrote it.
            StoreError::Newer(why) => Error::usage(why),
            e => Error::failed(e.to_string()),
        }
    }
}

/// Our own JSON (a report, a ledger record) that does not read back is a failure of the work.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::failed(e.to_string())
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        StoreError::from(e).into()
    }
}

impl From<Blocked> for Error {
    fn from(b: Blocked) -> Error {
        Error::Refused(b)
    }
}

impl From<StoreInUse> for Error {
    fn from(e: StoreInUse) -> Error {
        Error::InUse(e)
    }
}

impl From<DamagedStore> for Error {
    fn from(e: DamagedStore) -> Error {
        Error::failed(e.to_string())
    }
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
/// another command that opened it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store {} is in use by another process (a daemon on another control.socket, or another autoprov command); try again, or check control.socket",
    store.display()
)]
pub struct StoreInUse {
    /// The store's folder.
    pub store: PathBuf,
}

/// A change was committed, then filing it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "file {id} ({name}): its outcome was committed to the store, but filing it and its reports did not complete (what was not moved yet stays where it was); the next scan of inbox/, `process` or daemon start finishes the filing"
)]
pub struct AfterCommit {
    /// The ledger id.
    pub id: u64,
    /// The name it had in inbox/.
    pub name: String,
    /// Whether its outcome changed admins (applied), not rejected, held or a dry run.
    pub applied: bool,
}

/// Refusals (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum Blocked {
    /// An API token of that name exists already (`token add`).
    #[error(
        "refused: a token named \"{name}\" exists already; names are unique (remove its line from web.api_tokens_file to replace it)"
    )]
    TokenNameInUse {
        /// The name asked for.
        name: String,
    },
    /// A held file whose roster left held/ (a store restored from a backup taken while it
    /// was held): it cannot be approved, ever; a rejection closes it.
    #[error(
        "refused: file {id}'s roster is not in held/ ({path}): it cannot be approved, and \
         nothing was changed. If the store was restored from a backup taken while the file \
         was held, it was decided after that backup; `autoprov files reject {id}` closes it \
         (no account is changed; its reports are filed in rejected/) so that the files \
         waiting behind it are processed"
    )]
    RosterGone {
        /// The held file's id.
        id: u64,
        /// Where its roster should be.
        path: String,
    },
    /// `sync` before any roster was applied: there is nothing to re-evaluate (not a usage
    /// error, which a script would read as a broken command line or config).
    #[error(
        "refused: no roster has been applied yet, so there is nothing to sync: upload one or run `autoprov process FILE`"
    )]
    NothingApplied,
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
    /// A held file whose re-plan now rejects it (a rule enabled since needs a column it
    /// lacks): it can only be rejected.
    #[error(
        "refused: nothing was applied. File {id} ({name}) can no longer be applied: checked again with today's rules it is rejected ({why}). Reject it with `autoprov files reject {id}` and send a corrected roster, or change the rules and approve again"
    )]
    CannotApply {
        /// The held file's id.
        id: u64,
        /// Its stored name.
        name: String,
        /// The first error, in words.
        why: String,
    },
    /// A backup is written only as a new file.
    #[error(
        "refused: {} exists; a backup is written only as a new file, never over one: name another",
        path.display()
    )]
    Exists {
        /// The path asked for.
        path: PathBuf,
    },
    /// A held file waits for a decision.
    #[error("{}", held_text(*id, name, *gone))]
    Held {
        /// The held file's id.
        id: u64,
        /// Its stored name.
        name: String,
        /// Its roster is gone from held/ (a store restored from a backup taken while it was
        /// held): it cannot be approved, only rejected.
        gone: bool,
    },
}

/// What [`Blocked::Held`] says: how to decide the held file (only a rejection, when its
/// roster is gone: approve is refused for good, and had been offered too).
fn held_text(id: u64, name: &str, gone: bool) -> String {
    match gone {
        false => format!(
            "file {id} ({name}) is held and blocks later files: decide with `autoprov files \
             approve {id}` or `autoprov files reject {id}`"
        ),
        true => format!(
            "file {id} ({name}) is held and blocks later files, and its roster is not in held/ \
             (a store restored from a backup taken while it was held): it cannot be \
             approved; `autoprov files reject {id}` closes it, and the files behind it go on"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> Error {
        Error::from(std::io::Error::from_raw_os_error(28)).context("writing the report")
    }

    #[test]
    fn io_store_and_damage_are_failures_that_changed_nothing() {
        let r = enospc().response();
        assert_eq!(r.exit, exit::FAILED);
        assert!(
            r.text.starts_with("failed: writing the report: "),
            "{}",
            r.text
        );
        assert!(r.text.ends_with("; nothing was changed"), "{}", r.text);
        let store = Error::from(StoreError::Corrupt("bad bucket".into())).context("listing");
        assert_eq!(store.exit_code(), exit::FAILED);
        let sled_io = StoreError::Sled(sled::Error::Io(std::io::Error::other("eio")));
        assert_eq!(Error::from(sled_io).exit_code(), exit::FAILED);
        let damaged = DamagedStore {
            store: "/s".into(),
            detail: "x".into(),
            advice: "y".into(),
        };
        let r = Error::from(damaged).response();
        assert_eq!(r.exit, exit::FAILED);
        assert!(
            r.text
                .contains("refusing to run on a damaged store /s: x; y"),
            "{}",
            r.text
        );
    }

    #[test]
    fn a_failure_after_a_commit_says_so_and_not_that_nothing_changed() {
        let e = enospc()
            .after_commit(7, "r.csv", true)
            .context("processing");
        assert_eq!(e.committed().map(|c| c.id), Some(7));
        let r = e.response();
        assert_eq!(r.exit, exit::FAILED);
        assert!(
            r.text
                .starts_with("failed: processing: file 7 (r.csv): its outcome was committed"),
            "{}",
            r.text
        );
        assert!(r.text.contains("writing the report"), "{}", r.text);
        assert!(!r.text.contains("nothing was changed"), "{}", r.text);
    }

    #[test]
    fn usage_errors_refusals_and_a_locked_store_keep_their_codes_through_context() {
        let usage = Err::<(), _>(Error::usage("no file 9"))
            .context("deciding")
            .unwrap_err();
        assert_eq!(usage.response().text, "error: deciding: no file 9");
        assert_eq!(usage.exit_code(), exit::USAGE);
        let busy = Error::from(StoreInUse { store: "/s".into() }).context("x");
        assert_eq!(busy.exit_code(), exit::UNREACHABLE);
        let held = Error::from(Blocked::Held {
            id: 3,
            name: "a.csv".into(),
            gone: false,
        })
        .context("processing");
        assert_eq!(held.exit_code(), exit::REFUSED);
        assert!(
            held.to_string().starts_with("file 3 (a.csv) is held"),
            "{held}"
        );
        assert!(held.committed().is_none() && !held.is_failure());
        assert_eq!(
            Error::Unreachable("stopping".into()).exit_code(),
            exit::UNREACHABLE
        );
    }
}
