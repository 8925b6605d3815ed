//! The rule ids each employee of a roster matches, stored flat.

use super::RuleId;
use super::dispatch::Dispatch;
use super::eval::CompiledRule;
use crate::core::model::Roster;
use crate::core::parallel::join;

/// The matching rule ids of every employee, stored flat: one allocation for the whole roster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchTable {
    /// `ids[offsets[i]..offsets[i + 1]]` belong to employee `i`.
    offsets: Vec<usize>,
    ids: Vec<RuleId>,
}

impl MatchTable {
    /// Evaluates `rules` for every employee of `roster`; inactive employees match nothing.
    /// The two halves of the roster are evaluated on two cores, each row by intersecting
    /// the sets of rules its values pass (see [`Dispatch`]).
    pub fn build(roster: &Roster, rules: &[CompiledRule]) -> MatchTable {
        let dispatch = Dispatch::new(rules);
        let n = roster.employees.len();
        let part = |rows: std::ops::Range<usize>, offsets: &mut Vec<usize>| {
            // Room for a rule a row: most rows match one or none (growing from empty, the
            // copies of a million rows' ids were ~15 % of this step).
            let mut ids = Vec::with_capacity(rows.len());
            let mut scratch = Vec::new();
            for row in rows {
                if !roster.employees[row].inactive {
                    dispatch.matching(roster.row(row), &mut scratch, |id| ids.push(id));
                }
                offsets.push(ids.len());
            }
            ids
        };
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let mut tail_offsets = Vec::with_capacity(n - n / 2);
        let (mut ids, tail_ids) = join(
            || part(0..n / 2, &mut offsets),
            || part(n / 2..n, &mut tail_offsets),
        );
        let shift = ids.len();
        offsets.extend(tail_offsets.into_iter().map(|o| o + shift));
        ids.extend(tail_ids);
        MatchTable { offsets, ids }
    }

    /// A table from per-employee lists (each lowest id first), e.g. written out in a test.
    pub fn from_lists(lists: &[Vec<RuleId>]) -> MatchTable {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        offsets.push(0);
        let mut ids = Vec::new();
        for list in lists {
            ids.extend_from_slice(list);
            offsets.push(ids.len());
        }
        MatchTable { offsets, ids }
    }

    /// Number of employees.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the table covers no employee.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Matching rule ids of employee `i` (roster order), lowest first; empty when out of range.
    pub fn get(&self, i: usize) -> &[RuleId] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&from), Some(&to)) => &self.ids[from..to],
            _ => &[],
        }
    }

    /// The matching rule ids of each employee, in roster order.
    pub fn iter(&self) -> impl Iterator<Item = &[RuleId]> + '_ {
        self.offsets.windows(2).map(|w| &self.ids[w[0]..w[1]])
    }
}

/// For each employee (same order as `roster.employees`): ids of the given compiled rules
/// that match, lowest id first. Inactive employees get an empty list.
pub fn matching(roster: &Roster, rules: &[CompiledRule]) -> Vec<Vec<RuleId>> {
    MatchTable::build(roster, rules)
        .iter()
        .map(<[RuleId]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::columns::Columns;
    use crate::core::rules::eval::tests::{CELLS, condition, sample_roster};
    use crate::core::rules::tests::{people_roster, rule};
    use proptest::prelude::*;

    #[test]
    fn matching_lists_rule_ids_lowest_first_and_nothing_for_inactive() {
        let r = sample_roster();
        let columns = Columns::default();
        let compiled: Vec<CompiledRule> = [
            rule(5, &["job_title = Engineer"]),
            rule(2, &["department = finance"]),
            rule(9, &["is_manager = true"]),
        ]
        .iter()
        .map(|x| CompiledRule::compile(x, &r, &columns).unwrap())
        .collect();
        let ids = |v: &[u64]| v.iter().map(|&i| RuleId(i)).collect::<Vec<_>>();
        assert_eq!(
            matching(&r, &compiled),
            vec![
                ids(&[2, 5, 9]),
                ids(&[2]),
                ids(&[5, 9]),
                ids(&[5]),
                ids(&[]),
                ids(&[])
            ]
        );
        let table = MatchTable::build(&r, &compiled);
        assert_eq!(table.len(), 6);
        assert_eq!(table.get(2), &ids(&[5, 9])[..]);
        assert_eq!(table.get(6), &[] as &[RuleId]);
        assert_eq!(matching(&r, &[]), vec![Vec::<RuleId>::new(); 6]);
        assert_eq!(
            matching(&Roster::default(), &compiled),
            Vec::<Vec<RuleId>>::new()
        );
    }

    proptest! {
        /// More than 64 rules (two words of rule sets), ids not in the order given.
        #[test]
        fn the_match_table_lists_what_evaluating_every_rule_gives(
            people in prop::collection::vec(
                (prop::sample::select(CELLS), prop::sample::select(CELLS), any::<bool>(), prop::bool::weighted(0.2)),
                0..120,
            ),
            conditions in prop::collection::vec(prop::collection::vec(condition(), 1..3), 0..70),
        ) {
            let r = people_roster(&people);
            let columns = Columns::default();
            let compiled: Vec<CompiledRule> = conditions
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let refs: Vec<&str> = c.iter().map(String::as_str).collect();
                    let id = (i as u64 * 37) % 101 + 1;
                    CompiledRule::compile(&rule(id, &refs), &r, &columns).unwrap()
                })
                .collect();
            let table = MatchTable::build(&r, &compiled);
            prop_assert_eq!(table.len(), r.employees.len());
            for (i, e) in r.employees.iter().enumerate() {
                let mut want: Vec<RuleId> = compiled
                    .iter()
                    .filter(|c| !e.inactive && c.matches(r.row(i)))
                    .map(CompiledRule::id)
                    .collect();
                want.sort();
                prop_assert_eq!(table.get(i), &want[..], "employee {}", i);
            }
        }
    }
}
