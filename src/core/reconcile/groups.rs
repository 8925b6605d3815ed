//! How a sync goes through the accounts: one group at a time ([`GROUPS`]), the roster's
//! employees sorted by the same groups, and what the accounts hold as a whole ([`Survey`]),
//! read as the groups are planned.

use crate::core::accounts::{AccountGroup, GROUPS, Origin, group_of};
use crate::core::columns::fold_value;
use crate::core::model::{Employee, Roster};
use crate::core::parallel::{ROWS_WORTH_A_THREAD, join_if};
use std::collections::HashMap;

/// Reads the accounts of group `g` (sorted by employee ID) and gives them to the callback:
/// the store's reading, kept out of the core. Called from two threads at once.
pub type ReadGroup<'r, E> =
    dyn Fn(usize, &mut dyn FnMut(&dyn AccountGroup)) -> Result<(), E> + Sync + 'r;

/// The active manual accounts' employee IDs by folded email: their emails are taken (SPEC §3).
pub type Manual = HashMap<String, String>;

/// What a sync must know of all accounts as a whole, read as it plans the groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Active auto accounts (the safety base N).
    pub base: usize,
    /// The active manual accounts' emails.
    pub manual: Manual,
    /// The employee IDs of every manual account, active or not.
    pub manual_ids: Vec<String>,
}

impl Survey {
    /// Adds another part's (of other groups).
    pub fn absorb(&mut self, other: Survey) {
        self.base += other.base;
        self.manual.extend(other.manual);
        self.manual_ids.extend(other.manual_ids);
    }

    /// Adds the accounts of one group.
    pub fn add(&mut self, group: &dyn AccountGroup) {
        for head in group.heads() {
            match (head.origin, head.is_active()) {
                (Origin::Auto, true) => self.base += 1,
                (Origin::Auto, false) => {}
                (Origin::Manual, active) => {
                    self.manual_ids.push(head.employee_id.to_string());
                    if active {
                        self.manual
                            .insert(fold_value(head.email), head.employee_id.to_string());
                    }
                }
            }
        }
    }
}

/// The roster's employees (their positions) sorted by the group of their ID.
pub struct EmployeeGroups {
    /// Where each group's positions start in `rows`; `GROUPS + 1` entries.
    starts: Vec<u32>,
    rows: Vec<u32>,
}

impl EmployeeGroups {
    /// Sorts the roster's employees by group (a counting sort: two passes, no comparisons).
    pub fn of(roster: &Roster) -> EmployeeGroups {
        // Each ID's group (a hash of its bytes), the rows shared by two cores.
        let mut groups = vec![0u16; roster.employees.len()];
        let half = groups.len() / 2;
        let (head, tail) = groups.split_at_mut(half);
        let (first, second) = roster.employees.split_at(half);
        let fill = |rows: &[Employee], into: &mut [u16]| {
            for (e, g) in rows.iter().zip(into) {
                *g = group_of(e.id()) as u16;
            }
        };
        join_if(
            half >= ROWS_WORTH_A_THREAD,
            || fill(first, head),
            || fill(second, tail),
        );
        let mut starts = vec![0u32; GROUPS + 1];
        for &g in &groups {
            starts[g as usize + 1] += 1;
        }
        for g in 0..GROUPS {
            starts[g + 1] += starts[g];
        }
        let mut next = starts.clone();
        let mut rows = vec![0u32; groups.len()];
        for (row, &g) in groups.iter().enumerate() {
            rows[next[g as usize] as usize] = row as u32;
            next[g as usize] += 1;
        }
        EmployeeGroups { starts, rows }
    }

    /// The positions of group `g`'s employees, in roster order.
    pub fn of_group(&self, g: usize) -> &[u32] {
        &self.rows[self.starts[g] as usize..self.starts[g + 1] as usize]
    }
}
