//! Reading the accounts group by group, as a sync's plan does
//! ([`crate::store::Store::read_group`], [`crate::store::Store::group_reader`]).

use super::buckets;
use super::store::SledStore;
use super::versions::Directory;
use crate::core::accounts::AccountGroup;
use crate::store::{GroupReader, StoreError, StoreResult};

/// A pass over the groups through the accounts' directory as it was read at its start: one
/// directory read for the 4,096 groups instead of one each. A bucket written since may read
/// as it was (its old page still stored, or still in this thread's cache of pages), or as
/// it now is once its old page is removed ([`super::versions::Versioned::get_at`]).
pub(super) struct Groups<'a> {
    pub(super) store: &'a SledStore,
    pub(super) directory: Directory,
}

impl GroupReader for Groups<'_> {
    fn read_group(&self, g: usize, f: &mut dyn FnMut(&dyn AccountGroup)) -> StoreResult<()> {
        self.store.read_group_at(&self.directory, g, f)
    }
}

impl SledStore {
    /// A pass over the groups from now on ([`crate::store::Store::group_reader`]).
    pub(super) fn groups(&self) -> StoreResult<Groups<'_>> {
        let directory = self
            .buckets()
            .directory()
            .inspect_err(|e| self.heads.note_damage(e))?;
        Ok(Groups {
            store: self,
            directory,
        })
    }

    /// Gives `f` the accounts of group `g` as `directory` names its bucket, each bucket's
    /// heads checked as they are decoded (the start-up check
    /// [`crate::store::Store::read_group`] takes part in).
    fn read_group_at(
        &self,
        directory: &Directory,
        g: usize,
        f: &mut dyn FnMut(&dyn AccountGroup),
    ) -> StoreResult<()> {
        let damage = |e: &StoreError| self.heads.note_damage(e);
        let bytes = self.buckets().get_at(directory, g).inspect_err(damage)?;
        let heads =
            buckets::heads_or_empty(&buckets::key_of(g), bytes.as_deref()).inspect_err(damage)?;
        self.heads.note_read(g);
        f(&heads);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::core::accounts::{Account, GROUPS};
    use crate::core::reconcile::ReadGroup;
    use crate::store::samples::{account, commit_accounts as commit};
    use crate::store::{SledStore, Store, StoreError};

    /// Every group's (ID, status) as `read` gives them.
    fn read_all(read: &ReadGroup<'_, StoreError>) -> Vec<Vec<(String, String)>> {
        (0..GROUPS)
            .map(|g| {
                let mut seen = Vec::new();
                read(g, &mut |group| {
                    seen.extend(
                        group
                            .heads()
                            .iter()
                            .map(|h| (h.employee_id.to_string(), format!("{:?}", h.status))),
                    )
                })
                .unwrap();
                seen
            })
            .collect()
    }

    #[test]
    fn a_pass_reads_what_each_group_read_reads_and_a_later_write_as_it_now_is() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        commit(&s, (0..300).map(|i| account(&format!("E{i}"))).collect());
        let pass = s.group_reader().unwrap();
        let each = read_all(&|g, f| s.read_group(g, f));
        let through = read_all(&|g, f| pass.read_group(g, f));
        assert_eq!(through, each);
        assert_eq!(through.iter().map(Vec::len).sum::<usize>(), 300);

        // A write after the pass began replaces (and removes) the buckets it touches: the
        // pass reads them as they now are, never fails on the removed versions.
        let mut changed: Vec<Account> = (0..300).map(|i| account(&format!("E{i}"))).collect();
        for a in &mut changed {
            a.status = crate::core::accounts::Status::Inactive;
        }
        changed.push(account("NEW"));
        commit(&s, changed);
        let each = read_all(&|g, f| s.read_group(g, f));
        let through = read_all(&|g, f| pass.read_group(g, f));
        assert_eq!(through, each);
        assert_eq!(through.iter().map(Vec::len).sum::<usize>(), 301);
        assert!(
            through
                .iter()
                .flatten()
                .filter(|(id, _)| id != "NEW")
                .all(|(_, status)| status.contains("Inactive"))
        );
    }
}
