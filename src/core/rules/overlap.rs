//! Overlap analysis: whether two rules can both hold for one employee, decided from their
//! conditions alone (SPEC §2), before any roster is at hand.

use super::Rule;
use super::syntax::Condition;
use crate::core::columns::{Columns, fold_cell};
use std::collections::{BTreeMap, BTreeSet};

/// What the conditions on one field key allow: `allowed` (if any positive condition) minus `denied`.
#[derive(Debug, Clone, Default)]
struct FieldConstraint {
    allowed: Option<BTreeSet<String>>,
    denied: BTreeSet<String>,
}

impl FieldConstraint {
    /// Whether some value passes both this and `other`.
    fn admits_with(&self, other: &FieldConstraint) -> bool {
        let passes = |v: &&String| !self.denied.contains(*v) && !other.denied.contains(*v);
        match (&self.allowed, &other.allowed) {
            // A value nobody mentioned.
            (None, None) => true,
            (Some(a), None) => a.iter().any(|v| passes(&v)),
            (None, Some(b)) => b.iter().any(|v| passes(&v)),
            (Some(a), Some(b)) => a.iter().filter(|v| b.contains(*v)).any(|v| passes(&v)),
        }
    }
}

/// One rule's conditions reduced for overlap analysis, once per rule: per field key, `=`
/// and `in` intersected and `!=` and `not in` united, values folded. Comparing two of these
/// allocates nothing, so a command can compare every pair of a thousand rules.
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    /// The `is_manager` value required, if any.
    manager: Option<bool>,
    /// The rule's own `is_manager` conditions contradict each other.
    contradictory: bool,
    fields: BTreeMap<String, FieldConstraint>,
}

impl Constraints {
    /// The constraints of `rule`'s conditions.
    pub fn of(rule: &Rule, columns: &Columns) -> Constraints {
        let mut out = Constraints::default();
        for condition in &rule.conditions {
            match condition {
                Condition::IsManager(want) => {
                    out.contradictory |= out.manager.is_some_and(|m| m != *want);
                    out.manager = Some(*want);
                }
                Condition::Field { field, op, values } => {
                    let constraint = out.fields.entry(columns.key(field)).or_default();
                    let folded: BTreeSet<String> = values.iter().map(|v| fold_cell(v)).collect();
                    if op.is_positive() {
                        constraint.allowed = Some(match constraint.allowed.take() {
                            None => folded,
                            Some(allowed) => allowed.intersection(&folded).cloned().collect(),
                        });
                    } else {
                        constraint.denied.extend(folded);
                    }
                }
            }
        }
        out
    }

    /// What makes these conditions hold for nobody, when they cannot all hold for one
    /// employee: the field key whose conditions allow no value, or `is_manager` required
    /// both true and false.
    pub fn never_holds(&self) -> Option<&str> {
        if self.contradictory {
            return Some("is_manager");
        }
        let unconstrained = FieldConstraint::default();
        self.fields
            .iter()
            .find(|(_, c)| !c.admits_with(&unconstrained))
            .map(|(key, _)| key.as_str())
    }

    /// Can one employee satisfy both? Field by field: some value allowed by both and
    /// denied by neither.
    pub fn overlaps(&self, other: &Constraints) -> bool {
        let unconstrained = FieldConstraint::default();
        !self.contradictory
            && !other.contradictory
            && !matches!((self.manager, other.manager), (Some(a), Some(b)) if a != b)
            && self
                .fields
                .iter()
                .all(|(key, a)| a.admits_with(other.fields.get(key).unwrap_or(&unconstrained)))
            && other
                .fields
                .iter()
                .filter(|(key, _)| !self.fields.contains_key(*key))
                .all(|(_, b)| b.admits_with(&unconstrained))
    }
}

/// Can both rules' conditions hold for one employee? Decided from the conditions alone, field by field.
///
/// Per field key, `=` and `in` intersect and `!=` and `not in` subtract (values folded);
/// a field with no `=` / `in` can always take a value nobody mentioned. To compare many
/// pairs, compute each rule's [`Constraints`] once.
pub fn can_overlap(a: &Rule, b: &Rule, columns: &Columns) -> bool {
    Constraints::of(a, columns).overlaps(&Constraints::of(b, columns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::syntax::Op;
    use crate::core::rules::tests::{Row, field, roster, rule};
    use crate::core::rules::{CompiledRule, both_match};
    use proptest::prelude::*;

    #[test]
    fn a_rule_whose_conditions_allow_no_value_of_a_field_never_holds() {
        let columns = Columns::default();
        let never = |conditions: &[&str]| {
            let r = rule(1, conditions);
            Constraints::of(&r, &columns)
                .never_holds()
                .map(str::to_string)
        };
        assert_eq!(never(&["department = Finance"]), None);
        assert_eq!(never(&["department = Finance", "location = Paris"]), None);
        assert_eq!(
            never(&["department = A", "department = a"]),
            None,
            "same value folded"
        );
        assert_eq!(never(&["department != A", "department != B"]), None);
        assert_eq!(
            never(&["department = A", "department = B"]).as_deref(),
            Some("department")
        );
        assert_eq!(
            never(&["department in (A, B)", "department not in (b, a)"]).as_deref(),
            Some("department")
        );
        assert_eq!(
            never(&["is_manager = true", "is_manager = false"]).as_deref(),
            Some("is_manager")
        );
    }

    #[test]
    fn can_overlap_decides_from_conditions_field_by_field() {
        let columns = Columns::default();
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["department = Finance"], &["department = Finance"], true),
            (&["department = Finance"], &["department = Sales"], false),
            (
                &["department = Finance"],
                &["DEPARTMENT = \" FINANCE \""],
                true,
            ),
            (&["department = Finance"], &["department != finance"], false),
            (&["department = Finance"], &["department != Sales"], true),
            (&["department in (A, B)"], &["department not in (A)"], true),
            (
                &["department in (A, B)"],
                &["department not in (b, a)"],
                false,
            ),
            (&["department in (A, B)"], &["department in (B, C)"], true),
            (&["department in (A)"], &["department in (B)"], false),
            (&["department != A"], &["department != B"], true),
            (&["department not in (A)"], &["department not in (A)"], true),
            (&["department = A"], &["title = B"], true),
            (
                &["department = A"],
                &["title != B", "is_manager = false"],
                true,
            ),
            (&["Work Email = x@y.z"], &["email != X@Y.Z"], false),
            (&["Work Email = x@y.z"], &["UPN = X@Y.Z"], true),
            (&["Job Title = x"], &["job_title != x"], false),
            (&["is_manager = true"], &["is_manager = false"], false),
            (&["is_manager = true"], &["is_manager = true"], true),
            (&["is_manager = true"], &["department = A"], true),
            (&["department = A", "department = B"], &["title = x"], false),
            (
                &["department in (A, B)", "department != A"],
                &["department = B"],
                true,
            ),
            (
                &["department in (A, B)", "department != A"],
                &["department != B"],
                false,
            ),
            (&["department = \"\""], &["department != \"\""], false),
            (&["department = \"\""], &["department = \" \""], true),
            (
                &["department = A", "is_manager = true"],
                &["department = A", "is_manager = false"],
                false,
            ),
        ];
        for (a, b, expected) in cases {
            let (ra, rb) = (rule(1, a), rule(2, b));
            assert_eq!(can_overlap(&ra, &rb, &columns), *expected, "{a:?} vs {b:?}");
            assert_eq!(can_overlap(&rb, &ra, &columns), *expected, "{b:?} vs {a:?}");
        }
        let contradictory = rule(1, &["department = A", "department != a"]);
        assert!(!can_overlap(&contradictory, &contradictory, &columns));
        let plain = rule(2, &["department = A"]);
        assert!(can_overlap(&plain, &plain, &columns));
    }

    /// Small universes so that generated rules and employees collide often.
    const FIELDS: &[&str] = &[
        "department",
        "Department",
        "Job Title",
        "job_title",
        "email",
        "Work Email",
    ];
    const VALUES: &[&str] = &["a", "A", " a", "b", "c", ""];
    const KEYS: &[&str] = &["department", "jobtitle", "email"];
    const CELLS: &[&str] = &["a", "b", "c", "", "d"];

    fn small_condition() -> impl Strategy<Value = Condition> {
        let op = prop_oneof![Just(Op::Eq), Just(Op::Ne), Just(Op::In), Just(Op::NotIn)];
        prop_oneof![
            1 => any::<bool>().prop_map(Condition::IsManager),
            4 => (
                prop::sample::select(FIELDS),
                op,
                prop::collection::vec(prop::sample::select(VALUES), 1..4)
            )
                .prop_map(|(f, op, values)| {
                    let n = if matches!(op, Op::Eq | Op::Ne) { 1 } else { values.len() };
                    field(f, op, &values[..n])
                }),
        ]
    }

    fn small_rule(id: u64) -> impl Strategy<Value = Rule> {
        prop::collection::vec(small_condition(), 1..4).prop_map(move |conditions| Rule {
            conditions,
            ..rule(id, &[])
        })
    }

    /// An employee who satisfies both rules, built from the constraints, when they can overlap.
    fn witness(a: &Rule, b: &Rule) -> (Vec<String>, bool) {
        let columns = Columns::default();
        let mut is_manager = false;
        let cells = KEYS
            .iter()
            .map(|key| {
                let mut allowed: Option<BTreeSet<String>> = None;
                let mut denied = BTreeSet::new();
                for c in a.conditions.iter().chain(&b.conditions) {
                    match c {
                        Condition::IsManager(m) => is_manager = *m,
                        Condition::Field { field, op, values } if columns.key(field) == *key => {
                            let folded: BTreeSet<String> =
                                values.iter().map(|v| fold_cell(v)).collect();
                            if op.is_positive() {
                                allowed = Some(match allowed.take() {
                                    None => folded,
                                    Some(s) => s.intersection(&folded).cloned().collect(),
                                });
                            } else {
                                denied.extend(folded);
                            }
                        }
                        Condition::Field { .. } => {}
                    }
                }
                match allowed {
                    Some(s) => s
                        .into_iter()
                        .find(|v| !denied.contains(v))
                        .unwrap_or_default(),
                    None => "never-mentioned".to_string(),
                }
            })
            .collect();
        (cells, is_manager)
    }

    proptest! {

        #[test]
        fn can_overlap_is_symmetric(a in small_rule(1), b in small_rule(2)) {
            let columns = Columns::default();
            prop_assert_eq!(can_overlap(&a, &b, &columns), can_overlap(&b, &a, &columns));
        }

        #[test]
        fn can_overlap_is_sound_and_exact(
            a in small_rule(1),
            b in small_rule(2),
            people in prop::collection::vec(
                (prop::collection::vec(prop::sample::select(CELLS), 3), any::<bool>()),
                0..12,
            ),
        ) {
            let columns = Columns::default();
            let overlap = can_overlap(&a, &b, &columns);
            let names: Vec<String> = (0..people.len()).map(|i| format!("P{i}")).collect();
            let mut rows: Vec<Row> = people
                .iter()
                .zip(&names)
                .map(|((cells, m), n)| (n.as_str(), &cells[..], *m, false))
                .collect();
            let (w_cells, w_manager) = witness(&a, &b);
            let w_refs: Vec<&str> = w_cells.iter().map(String::as_str).collect();
            rows.push(("W", &w_refs, w_manager, false));
            let r = roster(KEYS, &rows);
            let ca = CompiledRule::compile(&a, &r, &columns).unwrap();
            let cb = CompiledRule::compile(&b, &r, &columns).unwrap();
            let (count, _) = both_match(&r, &ca, &cb);
            let w = r.employees.len() - 1;
            let witness_matches = ca.matches(r.row(w)) && cb.matches(r.row(w));
            // Sound: an employee matching both means the rules overlap.
            prop_assert!(count == 0 || overlap, "{} employees match both", count);
            // Exact: when they overlap, the constructed witness matches both.
            prop_assert_eq!(witness_matches, overlap);
        }
    }
}
