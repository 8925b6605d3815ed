//! Evaluation: rules compiled against one roster (field indices, interned values), and the
//! employees two rules both match.

use super::syntax::Condition;
use super::{Rule, RuleId};
use crate::core::columns::{Columns, fold_cell};
use crate::core::model::{Roster, RuleRow, Sym};

/// Sets of up to this many symbols are searched linearly, larger ones by bisection.
const LINEAR_SEARCH_MAX: usize = 16;

/// One condition resolved against a roster.
#[derive(Debug, Clone)]
enum Test {
    /// The cell at `index` is (`equal`) or is not (`!equal`) `sym`.
    One { index: usize, sym: Sym, equal: bool },
    /// The cell at `index` is (`member`) or is not (`!member`) in the sorted `syms`.
    Set {
        index: usize,
        syms: Box<[Sym]>,
        member: bool,
    },
    /// The employee's derived `is_manager` equals this.
    Manager(bool),
}

impl Test {
    #[inline]
    fn holds(&self, row: RuleRow<'_>) -> bool {
        let value = self
            .field()
            .and_then(|index| row.values.get(index).copied());
        self.holds_for(value, row.is_manager)
    }

    /// The field (index in a row's values) the test reads; `None` for `is_manager`.
    fn field(&self) -> Option<usize> {
        match self {
            Test::One { index, .. } | Test::Set { index, .. } => Some(*index),
            Test::Manager(_) => None,
        }
    }

    /// Whether the test holds for a row whose value of [`Test::field`] is `value` (`None`:
    /// the row has none) and that manages someone or not.
    #[inline]
    fn holds_for(&self, value: Option<Sym>, is_manager: bool) -> bool {
        match self {
            Test::One { sym, equal, .. } => (value == Some(*sym)) == *equal,
            Test::Set { syms, member, .. } => {
                let found = match value {
                    None => false,
                    Some(v) if syms.len() <= LINEAR_SEARCH_MAX => syms.contains(&v),
                    Some(v) => syms.binary_search(&v).is_ok(),
                };
                found == *member
            }
            Test::Manager(want) => is_manager == *want,
        }
    }
}

/// A rule resolved against one roster: field indices and interned value sets, for fast evaluation.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    id: RuleId,
    /// A `=` / `in` whose values no employee has: the rule matches nobody.
    never: bool,
    tests: Box<[Test]>,
}

impl CompiledRule {
    /// Resolves the rule's fields and values; a field the roster did not keep is
    /// `Err(field name as written)`.
    pub fn compile(
        rule: &Rule,
        roster: &Roster,
        columns: &Columns,
    ) -> Result<CompiledRule, String> {
        let mut never = false;
        let mut tests = Vec::with_capacity(rule.conditions.len());
        for condition in &rule.conditions {
            let (field, op, values) = match condition {
                Condition::IsManager(want) => {
                    tests.push(Test::Manager(*want));
                    continue;
                }
                Condition::Field { field, op, values } => (field, *op, values),
            };
            let index = roster
                .field_index(&columns.key(field))
                .ok_or_else(|| field.clone())?;
            // A value no cell has gets no symbol: it can only fail `=`/`in` and pass `!=`/`not in`.
            let mut syms: Vec<Sym> = values
                .iter()
                .filter_map(|v| roster.symbols.get(&fold_cell(v)))
                .collect();
            syms.sort_unstable();
            syms.dedup();
            let positive = op.is_positive();
            match (syms.as_slice(), positive) {
                ([], true) => never = true,
                ([], false) => {}
                ([sym], equal) => tests.push(Test::One {
                    index,
                    sym: *sym,
                    equal,
                }),
                (_, member) => tests.push(Test::Set {
                    index,
                    syms: syms.into_boxed_slice(),
                    member,
                }),
            }
        }
        Ok(CompiledRule {
            id: rule.id,
            never,
            tests: tests.into_boxed_slice(),
        })
    }

    /// Whether all of the rule's conditions hold for a row (of an active employee or not).
    #[inline]
    pub fn matches(&self, row: RuleRow<'_>) -> bool {
        !self.never && self.tests.iter().all(|t| t.holds(row))
    }

    /// The id of the rule this was compiled from.
    pub fn id(&self) -> RuleId {
        self.id
    }

    /// Whether the rule matches nobody of this roster whatever else holds.
    pub(super) fn never(&self) -> bool {
        self.never
    }

    /// The fields (indices in a row's values) the rule's conditions read, each with the
    /// values its conditions name (a field of two conditions once for each).
    pub(super) fn fields(&self) -> impl Iterator<Item = (usize, &[Sym])> {
        self.tests.iter().filter_map(|t| match t {
            Test::One { index, sym, .. } => Some((*index, std::slice::from_ref(sym))),
            Test::Set { index, syms, .. } => Some((*index, &syms[..])),
            Test::Manager(_) => None,
        })
    }

    /// Whether every condition of the rule on field `index` holds for the value `value`
    /// (`None`: a row without one, which is also how a value no condition names fares).
    pub(super) fn holds_on(&self, index: usize, value: Option<Sym>) -> bool {
        self.tests
            .iter()
            .filter(|t| t.field() == Some(index))
            .all(|t| t.holds_for(value, false))
    }

    /// Whether every `is_manager` condition of the rule holds for a row that manages
    /// someone (`true`) or not.
    pub(super) fn holds_as_manager(&self, is_manager: bool) -> bool {
        self.tests
            .iter()
            .filter(|t| t.field().is_none())
            .all(|t| t.holds_for(None, is_manager))
    }
}

/// How many employee IDs `both_match` and [`MatchSet::both`] list.
pub const BOTH_MATCH_SAMPLE: usize = 10;

/// The active employees of one roster that a compiled rule matches, as a bitset over
/// `roster.employees` and as the list of their indices in file order. Built once per rule;
/// two rules' sets intersect without evaluating either rule again: word by word, or, when
/// one set is small, by looking up its members in the other's bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchSet {
    /// Bit `i % 64` of word `i / 64`: employee `i` matches.
    words: Box<[u64]>,
    /// The indices of the set bits, ascending.
    members: Box<[u32]>,
}

impl MatchSet {
    /// Evaluates `rule` once for every employee of `roster`; inactive employees are never in it.
    pub fn build(roster: &Roster, rule: &CompiledRule) -> MatchSet {
        let mut words = vec![0u64; roster.employees.len().div_ceil(64)];
        let mut members = Vec::new();
        if !rule.never {
            for (i, employee) in roster.employees.iter().enumerate() {
                if !employee.inactive && rule.matches(roster.row(i)) {
                    words[i / 64] |= 1 << (i % 64);
                    // A roster has at most `roster.max_rows` rows, far below u32::MAX.
                    members.push(i as u32);
                }
            }
        }
        MatchSet {
            words: words.into_boxed_slice(),
            members: members.into_boxed_slice(),
        }
    }

    /// How many employees are in the set.
    pub fn count(&self) -> usize {
        self.members.len()
    }

    fn contains(&self, index: u32) -> bool {
        let i = index as usize;
        self.words
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// Employees in both sets (built over the same `roster`): (count, up to
    /// `BOTH_MATCH_SAMPLE` employee ids in file order).
    pub fn both(&self, other: &MatchSet, roster: &Roster) -> (usize, Vec<String>) {
        let (small, large) = if self.count() <= other.count() {
            (self, other)
        } else {
            (other, self)
        };
        if small.count() < small.words.len() {
            small.both_by_lookup(large, roster)
        } else {
            small.both_by_words(large, roster)
        }
    }

    /// [`MatchSet::both`] looking each member of `self` up in `other`: for a small `self`.
    fn both_by_lookup(&self, other: &MatchSet, roster: &Roster) -> (usize, Vec<String>) {
        let mut count = 0;
        let mut sample = Vec::new();
        for &i in self.members.iter().filter(|&&i| other.contains(i)) {
            count += 1;
            if sample.len() < BOTH_MATCH_SAMPLE {
                sample.extend(employee_id(roster, i as usize));
            }
        }
        (count, sample)
    }

    /// [`MatchSet::both`] word by word: counts every word, samples the first set bits.
    fn both_by_words(&self, other: &MatchSet, roster: &Roster) -> (usize, Vec<String>) {
        let pairs = || self.words.iter().zip(other.words.iter());
        let count = pairs().map(|(a, b)| (a & b).count_ones() as usize).sum();
        let mut sample = Vec::new();
        'words: for (w, (a, b)) in pairs().enumerate() {
            let mut word = a & b;
            while word != 0 {
                if sample.len() == BOTH_MATCH_SAMPLE {
                    break 'words;
                }
                sample.extend(employee_id(roster, w * 64 + word.trailing_zeros() as usize));
                word &= word - 1;
            }
        }
        (count, sample)
    }
}

/// The id of employee `index` of `roster`, if there is one.
fn employee_id(roster: &Roster, index: usize) -> Option<String> {
    roster.employees.get(index).map(|e| e.id().to_string())
}

/// Employees of `roster` (not inactive) matching both rules: (count, up to 10 employee
/// ids in file order). Builds both rules' [`MatchSet`]s; to compare many pairs, build each
/// rule's set once and use [`MatchSet::both`].
pub fn both_match(roster: &Roster, a: &CompiledRule, b: &CompiledRule) -> (usize, Vec<String>) {
    MatchSet::build(roster, a).both(&MatchSet::build(roster, b), roster)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::core::rules::tests::{Row, people_roster, roster, rule};
    use proptest::prelude::*;

    pub(in crate::core::rules) fn sample_roster() -> Roster {
        roster(
            &["Department", "Job Title", "Work Email"],
            &[
                ("E1", &["Finance", "Engineer", "e1@x.com"], true, false),
                ("E2", &[" finance ", "Analyst", "e2@x.com"], false, false),
                ("E3", &["Sales", "Engineer", "e3@x.com"], true, false),
                ("E4", &["R&D, Europe", "Engineer", "e4@x.com"], false, false),
                ("E5", &["", "Intern", "e5@x.com"], false, false),
                ("E6", &["Finance", "Engineer", "e6@x.com"], true, true),
            ],
        )
    }

    fn ids_matching(roster: &Roster, conditions: &[&str]) -> Vec<&'static str> {
        let compiled = CompiledRule::compile(&rule(1, conditions), roster, &Columns::default())
            .expect("fields present");
        let names = ["E1", "E2", "E3", "E4", "E5", "E6"];
        (0..roster.employees.len())
            .zip(names)
            .filter(|&(i, _)| compiled.matches(roster.row(i)))
            .map(|(_, n)| n)
            .collect()
    }

    #[test]
    fn compiled_rules_compare_folded_values() {
        let r = sample_roster();
        let cases: &[(&[&str], &[&str])] = &[
            (&["department = FINANCE"], &["E1", "E2", "E6"]),
            (
                &["department = Finance", "is_manager = true"],
                &["E1", "E6"],
            ),
            (&["department = Finance", "is_manager = false"], &["E2"]),
            (&["department != Finance"], &["E3", "E4", "E5"]),
            (&["department in (Sales, \"R&D, Europe\")"], &["E3", "E4"]),
            (
                &["department not in (Sales, \"r&d, europe\", \"\")"],
                &["E1", "E2", "E6"],
            ),
            (&["department = \"\""], &["E5"]),
            (&["department = \"  \""], &["E5"]),
            (
                &["job_title = engineer", "department != finance"],
                &["E3", "E4"],
            ),
            (&["email = E3@X.COM"], &["E3"]),
            (&["department = Legal"], &[]),
            (&["department in (Legal, Ops)"], &[]),
            (&["department in (Legal, Sales)"], &["E3"]),
            (
                &["department != Legal"],
                &["E1", "E2", "E3", "E4", "E5", "E6"],
            ),
            (
                &["department not in (Legal, Ops)"],
                &["E1", "E2", "E3", "E4", "E5", "E6"],
            ),
            (&["department = Legal", "is_manager = true"], &[]),
            (&["is_manager = true", "is_manager = false"], &[]),
            (&["department = Finance", "department = Sales"], &[]),
        ];
        for (conditions, expected) in cases {
            assert_eq!(ids_matching(&r, conditions), *expected, "{conditions:?}");
        }
    }

    #[test]
    fn large_value_sets_are_searched_correctly() {
        let values: Vec<String> = (0..40).map(|i| format!("D{i}")).collect();
        let cells: Vec<[&str; 1]> = values.iter().map(|v| [v.as_str()]).collect();
        let rows: Vec<Row> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (values[i].as_str(), &c[..], false, false))
            .collect();
        let r = roster(&["department"], &rows);
        let odd: Vec<String> = (1..40).step_by(2).map(|i| format!("d{i}")).collect();
        let list = format!("department in ({})", odd.join(", "));
        let not_list = format!("department not in ({})", odd.join(", "));
        let columns = Columns::default();
        let ins = CompiledRule::compile(&rule(1, &[&list]), &r, &columns).unwrap();
        let outs = CompiledRule::compile(&rule(2, &[&not_list]), &r, &columns).unwrap();
        let matched: Vec<usize> = (0..40).filter(|&i| ins.matches(r.row(i))).collect();
        assert_eq!(matched, (1..40).step_by(2).collect::<Vec<_>>());
        let unmatched: Vec<usize> = (0..40).filter(|&i| outs.matches(r.row(i))).collect();
        assert_eq!(unmatched, (0..40).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn compile_refuses_a_field_the_roster_did_not_keep() {
        let r = sample_roster();
        let columns = Columns::default();
        let err = CompiledRule::compile(
            &rule(1, &["department = x", "Cost Center = 1"]),
            &r,
            &columns,
        )
        .unwrap_err();
        assert_eq!(err, "Cost Center");
        let ok =
            CompiledRule::compile(&rule(9, &["DEPARTMENT = x", "UPN = y"]), &r, &columns).unwrap();
        assert_eq!(ok.id(), RuleId(9));
    }

    #[test]
    fn both_match_counts_active_employees_and_samples_ten_ids_in_file_order() {
        let names: Vec<String> = (1..=15).map(|i| format!("{i:03}")).collect();
        let mut rows: Vec<Row> = names
            .iter()
            .map(|n| (n.as_str(), &["Finance"][..], true, false))
            .collect();
        rows.insert(3, ("X1", &["Finance"], true, true));
        rows.push(("X2", &["Sales"], true, false));
        let r = roster(&["department"], &rows);
        let columns = Columns::default();
        let a = CompiledRule::compile(&rule(1, &["department = finance"]), &r, &columns).unwrap();
        let b = CompiledRule::compile(&rule(2, &["is_manager = true"]), &r, &columns).unwrap();
        let (count, sample) = both_match(&r, &a, &b);
        assert_eq!(count, 15);
        assert_eq!(sample, names[..10].to_vec());
        let c = CompiledRule::compile(&rule(3, &["department = Sales"]), &r, &columns).unwrap();
        assert_eq!(both_match(&r, &b, &c), (1, vec!["X2".to_string()]));
        assert_eq!(both_match(&r, &a, &c), (0, vec![]));
    }

    /// Employees matching both, by evaluating both rules on every employee.
    fn both_by_walking(r: &Roster, a: &CompiledRule, b: &CompiledRule) -> (usize, Vec<String>) {
        let ids: Vec<String> = (0..r.employees.len())
            .filter(|&i| !r.employees[i].inactive && a.matches(r.row(i)) && b.matches(r.row(i)))
            .map(|i| r.employees[i].id().to_string())
            .collect();
        (ids.len(), ids.into_iter().take(BOTH_MATCH_SAMPLE).collect())
    }

    /// Cells of generated rosters; `zz` appears only in conditions.
    pub(in crate::core::rules) const CELLS: &[&str] = &["a", "b", "c", ""];
    const VALUES: &[&str] = &["a", "B", " c ", "zz"];

    pub(in crate::core::rules) fn condition() -> impl Strategy<Value = String> {
        let field = || prop::sample::select(&["department", "Job Title"][..]);
        prop_oneof![
            (
                field(),
                prop::sample::select(&["=", "!="][..]),
                prop::sample::select(VALUES)
            )
                .prop_map(|(f, op, v)| format!("{f} {op} \"{v}\"")),
            (
                field(),
                prop::sample::select(&["in", "not in"][..]),
                prop::collection::vec(prop::sample::select(VALUES), 1..4),
            )
                .prop_map(|(f, op, vs)| format!("{f} {op} (\"{}\")", vs.join("\", \""))),
            any::<bool>().prop_map(|m| format!("is_manager = {m}")),
        ]
    }

    proptest! {
        #[test]
        fn match_sets_intersect_like_walking_every_employee(
            people in prop::collection::vec(
                (prop::sample::select(CELLS), prop::sample::select(CELLS), any::<bool>(), prop::bool::weighted(0.2)),
                0..300,
            ),
            a in prop::collection::vec(condition(), 1..3),
            b in prop::collection::vec(condition(), 1..3),
        ) {
            let r = people_roster(&people);
            let columns = Columns::default();
            let a_refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let b_refs: Vec<&str> = b.iter().map(String::as_str).collect();
            let ca = CompiledRule::compile(&rule(1, &a_refs), &r, &columns).unwrap();
            let cb = CompiledRule::compile(&rule(2, &b_refs), &r, &columns).unwrap();
            let expected = both_by_walking(&r, &ca, &cb);
            let (sa, sb) = (MatchSet::build(&r, &ca), MatchSet::build(&r, &cb));
            prop_assert_eq!(&sa.both(&sb, &r), &expected);
            prop_assert_eq!(&sb.both(&sa, &r), &expected);
            prop_assert_eq!(&both_match(&r, &ca, &cb), &expected);
            // Both ways of intersecting, whichever `both` would choose here.
            prop_assert_eq!(&sa.both_by_lookup(&sb, &r), &expected);
            prop_assert_eq!(&sb.both_by_lookup(&sa, &r), &expected);
            prop_assert_eq!(&sa.both_by_words(&sb, &r), &expected);
            prop_assert_eq!(sa.count(), both_by_walking(&r, &ca, &ca).0);
        }
    }
}
