//! `roster.columns`: each alias names one column only.

use super::Config;
use crate::core::columns::Columns;
use anyhow::{Result, bail};
use std::collections::BTreeMap;

impl Config {
    /// An alias of `roster.columns` names one column only: one that is already another
    /// column's name or alias (built in, or listed under another column) would take that
    /// column over without a word — `manager_id = ["Status"]` had every leaver read as
    /// active, with their manager "Terminated".
    pub(super) fn check_aliases(&self) -> Result<()> {
        let defaults = Columns::default();
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (canonical, aliases) in &self.roster.columns {
            let key = crate::core::columns::canonical_key(canonical);
            for alias in aliases {
                if let Some(other) = defaults.canonical(alias)
                    && crate::core::columns::canonical_key(other) != key
                {
                    bail!(
                        "roster.columns.{canonical}: \"{alias}\" already names another column \
                         (a name or alias of {other}); an alias may name one column only"
                    );
                }
                let normalized = crate::core::columns::canonical_key(alias);
                // Derived from manager_id, never read from the file (SPEC §1): an alias so
                // named had a rule on is_manager look for that column (a valid file
                // rejected) and an `IsManager` column read as the aliased one unwarned.
                if normalized == crate::core::columns::canonical_key("is_manager") {
                    bail!(
                        "roster.columns.{canonical}: \"{alias}\" names is_manager, which is derived \
                         from manager_id and never read from the file; choose another alias"
                    );
                }
                if let Some(other) = seen.insert(normalized, canonical.as_str())
                    && other != canonical.as_str()
                {
                    bail!(
                        "roster.columns: \"{alias}\" is listed under both {other} and {canonical}; \
                         an alias may name one column only"
                    );
                }
            }
        }
        Ok(())
    }
}
