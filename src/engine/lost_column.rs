//! A roster that lost its status column (SPEC §4's safety, beyond the limits): a file
//! without `employment_status`, or with the column blank in every row, is still valid (the
//! column is optional, a blank status active), but read after a roster that had the column
//! it counts every leaver as active, so their accounts stay or become active again. Such a
//! file is held, whatever the limits, for an org admin to approve (the column taken out on
//! purpose) or reject. Workday and `csv_url` fetches fail before it, by their own guard of
//! the columns an HR system's answers had (`ingest::hris::guard`).

use super::pipeline::Pipeline;
use crate::api::Result;
use crate::core::columns::{EMPLOYMENT_STATUS, canonical_key};
use crate::core::model::Roster;
use crate::core::roster;
use crate::store::Store;

/// How much of the last applied roster is read for its header.
const HEAD: u64 = 64 * 1024;

impl<S: Store> Pipeline<S> {
    /// Why `roster` is held for its missing status column: the last applied roster, which
    /// it replaces, had one, or cannot be read to tell (pruned from processed/, or no
    /// longer parsing: held, not taken on trust). `None` when it has one, or nothing
    /// applied had one.
    pub(super) fn status_column_lost(&self, roster: &Roster) -> Result<Option<String>> {
        let status = canonical_key(EMPLOYMENT_STATUS);
        if roster.present.contains(&status) && !roster.status_blank {
            return Ok(None);
        }
        let Some(last) = self.store.last_applied()? else {
            return Ok(None);
        };
        let path = self.paths.folder("processed").join(&last.stored_as);
        let head = crate::util::read_head(&path, HEAD).unwrap_or_default();
        let opts = self.cfg.roster_options(Vec::new());
        // An unread file has no header: not told apart, and held.
        let keys = roster::header_keys(&head, &opts);
        // A column blank in every row, after one blank in the last roster's first rows too,
        // is how that HR system sends it: not held again and again.
        if roster.status_blank && roster::has_a_status(&head, &opts) == Some(false) {
            return Ok(None);
        }
        let missing = match roster.status_blank {
            true => "the file's employment status column is blank in every row",
            false => {
                "the file has no employment status column (Status, Employment Status or Worker \
                 Status, or an alias in roster.columns)"
            }
        };
        let risk = "every leaver would count as active and keep or get back their admin \
                    rights. Approve it only if the column was taken out on purpose";
        Ok(match keys {
            Some(keys) if !keys.contains(&status) => None,
            Some(_) => Some(format!(
                "{missing}, a column the last applied roster, {}, had: {risk}",
                last.stored_as
            )),
            None => Some(format!(
                "{missing}, and the last applied roster, {}, cannot be read to tell whether \
                 it had one: {risk}",
                path.display()
            )),
        })
    }
}
