//! The safety limits of SPEC §4 and a plan's check against them.

use super::Plan;
use serde::{Deserialize, Serialize};

/// A safety limit: exceeded when both the count and the percentage of the base are exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Absolute number of accounts.
    pub count: usize,
    /// Percent of the active auto accounts before the sync.
    pub percent: u32,
}

impl Limit {
    /// More than `count` and more than `percent`% of `base`.
    pub fn exceeded_by(&self, n: usize, base: usize) -> bool {
        n > self.count && (n as u128) * 100 > (self.percent as u128) * (base as u128)
    }
}

/// The two limits of SPEC §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deactivations.
    pub max_deactivations: Limit,
    /// Grants: created, reassigned, reactivated, role_changed.
    pub max_grants: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_deactivations: Limit {
                count: 10,
                percent: 20,
            },
            max_grants: Limit {
                count: 50,
                percent: 20,
            },
        }
    }
}

impl Plan {
    /// Employees whose action hands out rights.
    pub fn grants(&self) -> usize {
        self.counts.created
            + self.counts.reassigned
            + self.counts.reactivated
            + self.counts.role_changed
    }

    /// The limits this plan exceeds, in words; empty when it may be applied.
    pub fn safety_violations(&self, limits: &Limits) -> Vec<String> {
        let mut out = Vec::new();
        let d = self.counts.deactivated;
        if limits.max_deactivations.exceeded_by(d, self.base) {
            out.push(format!(
                "{d} deactivations exceed safety.max_deactivations (more than {} and more than {}% of {} active auto accounts)",
                limits.max_deactivations.count, limits.max_deactivations.percent, self.base
            ));
        }
        let g = self.grants();
        if limits.max_grants.exceeded_by(g, self.base) {
            out.push(format!(
                "{g} grants exceed safety.max_grants (more than {} and more than {}% of {} active auto accounts)",
                limits.max_grants.count, limits.max_grants.percent, self.base
            ));
        }
        out
    }
}
