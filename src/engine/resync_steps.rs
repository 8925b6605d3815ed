//! The pipeline's steps of a re-sync from changes ([`super::resync`]): finding the changes
//! of a file against the last roster's record, and keeping the record a processed file
//! leaves.

use super::pipeline::{Evaluation, Pipeline};
use super::resync::{PIECE, Window, decode, encode, fingerprint, path, read_stamp, staged_path};
use crate::api::error::Result;
use crate::core::resync::{self, Changes, ReadInFull};
use crate::core::roster::RosterOptions;
use crate::engine::roster_file::LastWrite;
use crate::store::{AccountsToken, Store, TokenChange};
use std::fs;
use std::path::PathBuf;

impl<S: Store> Pipeline<S> {
    /// The changes of `bytes` against the last applied roster, when they can be planned on
    /// their own (see [`resync::changes`]); `None`: the file is read in full.
    /// `from_token`: the store's accounts token when the evaluation started.
    pub(super) fn changes_of(
        &self,
        bytes: &[u8],
        opts: &RosterOptions,
        from_token: Option<AccountsToken>,
    ) -> Result<Option<Changes>> {
        let record = path(&self.paths.store);
        let Some(stamp) = read_stamp(&record) else {
            return Ok(None);
        };
        let last = self.store.last_applied()?;
        let current = stamp.fingerprint == fingerprint(opts)
            && from_token == Some(stamp.token)
            && last.as_ref().is_some_and(|f| f.id == stamp.file_id);
        let Some(last) = last.filter(|_| current) else {
            tracing::debug!("the last roster's record is not current: the file is read in full");
            return Ok(None);
        };
        let kept = fs::read(&record).ok().and_then(|b| decode(&b));
        let Some(kept) = kept.filter(|k| k.stamp() == stamp) else {
            tracing::warn!(path = %record.display(), "the last roster's record is damaged or does not hold together: the file is read in full");
            return Ok(None);
        };
        let old_path = self.paths.folder("processed").join(&last.stored_as);
        let Ok(mut old) = Window::open(&old_path, kept.rows.end, &kept.file) else {
            tracing::warn!(path = %old_path.display(), "the last roster is missing, or written since its record was made: the file is read in full");
            return Ok(None);
        };
        let most = (kept.rows.rows() / 10).max(1000);
        match resync::changes(&kept.rows, &mut old, bytes, opts, most) {
            Ok(changes) => {
                tracing::info!(
                    planned = changes.roster.rows,
                    removed = changes.removed.len(),
                    "re-synced from the rows that changed since {}",
                    last.stored_as
                );
                Ok(Some(changes))
            }
            Err(ReadInFull(why)) => {
                tracing::info!(why, "the file is read in full");
                Ok(None)
            }
        }
    }

    /// Writes the record an applied evaluation leaves aside, for the file `file_id` (last
    /// written as `file` says: it is read again from processed/ only while it still is),
    /// with a new token for its commit to write, on a thread of its own while
    /// the commit writes; `None` when there is none (nor when the file is not known).
    pub(super) fn stage_next(
        &self,
        eval: &mut Evaluation,
        file_id: u64,
        file: Option<LastWrite>,
    ) -> Option<Staged> {
        let mut kept = eval.next.take()?;
        kept.file = file?;
        let token = match crate::util::random_bytes() {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "no token for the roster's record: the next file is read in full");
                return None;
            }
        };
        (kept.token, kept.file_id) = (token, file_id);
        let path = staged_path(&self.paths.store);
        let at = path.clone();
        let writing = std::thread::Builder::new()
            .name("last-roster".into())
            .spawn(move || {
                let file = std::io::BufWriter::with_capacity(PIECE, fs::File::create(&at)?);
                encode(&kept, file)
            })
            .ok()?;
        eval.token = Some(TokenChange {
            from: eval.from_token,
            to: token,
        });
        Some(Staged { path, writing })
    }

    /// Makes the record staged by [`Self::stage_next`] current once it is written and its
    /// commit is made, or removes it (the next file is then read in full).
    pub(super) fn keep_next(&self, staged: Option<Staged>, committed: bool) {
        let Some(Staged {
            path: staged,
            writing,
        }) = staged
        else {
            return;
        };
        let written = writing
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writing thread panicked")));
        let done = match (written, committed) {
            (Ok(()), true) => fs::rename(&staged, path(&self.paths.store)),
            (Ok(()), false) => fs::remove_file(&staged),
            (Err(e), _) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "the roster's record for the next re-sync was not kept");
            let _ = fs::remove_file(&staged);
        }
    }
}

/// A record being written aside ([`Pipeline::stage_next`]).
pub(super) struct Staged {
    path: PathBuf,
    writing: std::thread::JoinHandle<std::io::Result<()>>,
}
