//! The rule ids each employee of a roster matches: the distinct sets of rules, stored flat,
//! and which one each employee has.

use rustc_hash::FxHashMap;

use super::RuleId;
use super::dispatch::Dispatch;
use super::eval::CompiledRule;
use crate::core::model::Roster;
use crate::core::parallel::join;

/// The matching rule ids of every employee. Rows share few sets of rules (a million rows
/// and the bench's 60 rules: a few hundred), so each row holds the number of its set: 4
/// bytes a row, where a list of ids a row took ~25 MB at a million rows and most of this
/// step's time went to page faults and copies as it grew (BENCHMARKS.md).
///
/// The sets are numbered in the order of the first employee that has each, after set 0,
/// the empty one, so two tables of the same lists are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchTable {
    /// Employee `i`'s set is number `of_row[i]`.
    of_row: Vec<u32>,
    /// Set `k` is `ids[starts[k]..starts[k + 1]]`.
    starts: Vec<usize>,
    ids: Vec<RuleId>,
}

impl Default for MatchTable {
    fn default() -> MatchTable {
        MatchTable::from_lists(&[])
    }
}

impl MatchTable {
    /// Evaluates `rules` for every employee of `roster`; inactive employees match nothing.
    /// The two halves of the roster are evaluated on two cores, each row by intersecting
    /// the sets of rules its values pass (see [`Dispatch`]).
    pub fn build(roster: &Roster, rules: &[CompiledRule]) -> MatchTable {
        let dispatch = Dispatch::new(rules);
        let n = roster.employees.len();
        let mut of_row = vec![0u32; n];
        let (head, tail) = of_row.split_at_mut(n / 2);
        let (mut sets, tail_sets) = join(
            || Sets::of_rows(&dispatch, roster, 0, head),
            || Sets::of_rows(&dispatch, roster, n / 2, tail),
        );
        let renumbered: Vec<u32> = tail_sets.order.iter().map(|s| sets.number(s)).collect();
        for k in tail {
            *k = renumbered[*k as usize];
        }
        let mut table = MatchTable {
            of_row,
            starts: vec![0],
            ids: Vec::new(),
        };
        for set in &sets.order {
            dispatch.ids(set, |id| table.ids.push(id));
            table.starts.push(table.ids.len());
        }
        table
    }

    /// A table from per-employee lists (each lowest id first), e.g. written out in a test.
    pub fn from_lists(lists: &[Vec<RuleId>]) -> MatchTable {
        let mut numbers: FxHashMap<&[RuleId], u32> = FxHashMap::default();
        numbers.insert(&[][..], 0);
        let mut table = MatchTable {
            of_row: Vec::with_capacity(lists.len()),
            starts: vec![0, 0],
            ids: Vec::new(),
        };
        for list in lists {
            let next = set_number(numbers.len());
            let k = *numbers.entry(list).or_insert_with(|| {
                table.ids.extend_from_slice(list);
                table.starts.push(table.ids.len());
                next
            });
            table.of_row.push(k);
        }
        table
    }

    /// Number of employees.
    pub fn len(&self) -> usize {
        self.of_row.len()
    }

    /// Whether the table covers no employee.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Matching rule ids of employee `i` (roster order), lowest first; empty when out of range.
    pub fn get(&self, i: usize) -> &[RuleId] {
        self.of_row.get(i).map_or(&[], |&k| self.set(k))
    }

    /// The matching rule ids of each employee, in roster order.
    pub fn iter(&self) -> impl Iterator<Item = &[RuleId]> + '_ {
        self.of_row.iter().map(|&k| self.set(k))
    }

    /// Set number `k`.
    fn set(&self, k: u32) -> &[RuleId] {
        let k = k as usize;
        &self.ids[self.starts[k]..self.starts[k + 1]]
    }
}

/// The distinct sets of rules some rows match, as [`Dispatch::set_of`] makes them,
/// numbered in the order first seen; set 0 is the empty one.
struct Sets {
    order: Vec<Box<[u64]>>,
    numbers: FxHashMap<Box<[u64]>, u32>,
}

impl Sets {
    /// The sets of the rows from `first` on, one for each number of `out`, each number
    /// written there (0 for an inactive row).
    fn of_rows(dispatch: &Dispatch<'_>, roster: &Roster, first: usize, out: &mut [u32]) -> Sets {
        let mut sets = Sets {
            order: Vec::new(),
            numbers: FxHashMap::default(),
        };
        let mut set = vec![0; dispatch.words()];
        sets.number(&set);
        for (row, k) in (first..).zip(out.iter_mut()) {
            if !roster.employees[row].inactive {
                dispatch.set_of(roster.row(row), &mut set);
                *k = sets.number(&set);
            }
        }
        sets
    }

    /// The number of `set`, given it if it is new.
    fn number(&mut self, set: &[u64]) -> u32 {
        if let Some(&k) = self.numbers.get(set) {
            return k;
        }
        let k = set_number(self.order.len());
        self.order.push(set.into());
        self.numbers.insert(set.into(), k);
        k
    }
}

/// `n` as a set's number: each set is first some row's, and a roster of 4G rows would be
/// far over `roster.max_bytes`.
fn set_number(n: usize) -> u32 {
    u32::try_from(n).expect("fewer sets of rules than 4G")
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
        assert_eq!(table.get(3), &ids(&[5])[..]);
        assert_eq!(MatchTable::default(), MatchTable::from_lists(&[]));
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
            let mut lists = Vec::new();
            for (i, e) in r.employees.iter().enumerate() {
                let mut want: Vec<RuleId> = compiled
                    .iter()
                    .filter(|c| !e.inactive && c.matches(r.row(i)))
                    .map(CompiledRule::id)
                    .collect();
                want.sort();
                prop_assert_eq!(table.get(i), &want[..], "employee {}", i);
                lists.push(want);
            }
            // The two halves' sets are numbered as one pass over the lists numbers them.
            prop_assert_eq!(&table, &MatchTable::from_lists(&lists));
            prop_assert!(table.iter().eq(lists.iter().map(Vec::as_slice)));
        }
    }
}
