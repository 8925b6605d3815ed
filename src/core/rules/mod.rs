//! Rules: the `--when` condition syntax, evaluation against a roster, and overlap analysis (SPEC §2).
//!
//! A condition is `FIELD OP VALUE`. Parsing keeps the field and values as written so that
//! `rules show` prints what the admin typed; every comparison folds both sides with
//! [`fold_cell`](crate::core::columns::fold_cell), so `department = FINANCE` matches a
//! cell ` finance `.
//!
//! `syntax` holds the conditions and their text, `eval` the rules compiled against a
//! roster, `dispatch` which rules a row's values let through, `table` the rules each
//! employee matches, `overlap` the analysis of two rules from their conditions alone.

mod dispatch;
mod eval;
mod overlap;
mod syntax;
mod table;

use crate::core::columns::Columns;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

pub use self::eval::{BOTH_MATCH_SAMPLE, CompiledRule, MatchSet, both_match};
pub use self::overlap::{Constraints, can_overlap};
pub use self::syntax::{Condition, ConditionError, Op};
pub use self::table::{MatchTable, matching};

/// A rule's identifier: assigned in creation order, never reused; lower wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(pub u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn default_enabled() -> bool {
    true
}

/// A provisioning rule: employees for whom all conditions hold get `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Assigned in creation order; the lowest matching id wins.
    pub id: RuleId,
    /// Unique name chosen by the admin.
    pub name: String,
    /// The role granted, one of `provisioning.roles`.
    pub role: String,
    /// All must hold; printed in the `--when` syntax.
    pub conditions: Vec<Condition>,
    /// Disabled rules are kept but never evaluated.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// When the rule was created (RFC 3339).
    pub created_at: String,
    /// Unix user who created the rule.
    pub created_by: String,
}

impl Rule {
    /// For a rule with a condition whose value holds the word `and` followed by what parses
    /// as a condition (`department != Finance and location=Remote` had been saved as one
    /// condition before an unquoted `=` was refused, matching nearly everyone): what to tell
    /// about it. `None` for other rules (`Research and Development`, `"CN=IT,OU=Groups"`).
    pub fn ambiguity(&self) -> Option<String> {
        let reads_as_condition = |v: &String| {
            // Lower-cased in ASCII only: the same byte offsets.
            let lower = v.to_ascii_lowercase();
            lower.match_indices("and").any(|(at, _)| {
                let word_start = lower[..at]
                    .chars()
                    .next_back()
                    .is_none_or(char::is_whitespace);
                let rest = &v[at + 3..];
                let word_end = rest.chars().next().is_some_and(char::is_whitespace);
                word_start && word_end && Condition::parse(rest).is_ok()
            })
        };
        let held = |c: &&Condition| match c {
            Condition::Field { values, .. } => values.iter().any(reads_as_condition),
            Condition::IsManager(_) => false,
        };
        let condition = self.conditions.iter().find(held)?;
        Some(format!(
            "rule {} {} has a condition whose value reads as another condition \
             ({condition}): if it was saved before such values were refused unquoted, it may \
             have been meant as several conditions and match far more employees than meant; \
             edit it with one --when per condition",
            self.id,
            crate::core::model::quoted(&self.name)
        ))
    }
}

/// Field names (as written) that the enabled rules read, one per field key, in rule order;
/// `is_manager` among them when a rule reads it (it is derived from `manager_id`, which the
/// file must then have).
pub fn needed_fields(rules: &[Rule], columns: &Columns) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled) {
        for condition in &rule.conditions {
            let field = match condition {
                Condition::Field { field, .. } => field.as_str(),
                Condition::IsManager(_) => IS_MANAGER,
            };
            if seen.insert(columns.key(field)) {
                out.push(field.to_string());
            }
        }
    }
    out
}

/// How rules name the derived field.
const IS_MANAGER: &str = "is_manager";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::columns::fold_cell;
    use crate::core::model::{Employee, Interner, Roster};

    pub(super) fn field(name: &str, op: Op, values: &[&str]) -> Condition {
        Condition::Field {
            field: name.to_string(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    pub(super) fn rule(id: u64, conditions: &[&str]) -> Rule {
        Rule {
            id: RuleId(id),
            name: format!("rule {id}"),
            role: "IT Admin".to_string(),
            conditions: conditions
                .iter()
                .map(|c| Condition::parse(c).unwrap())
                .collect(),
            enabled: true,
            created_at: "2025-01-01T00:00:00Z".to_string(),
            created_by: "alice".to_string(),
        }
    }

    /// One roster row: id, cells (in `fields` order), is_manager, inactive.
    pub(super) type Row<'a> = (&'a str, &'a [&'a str], bool, bool);

    pub(super) fn roster(fields: &[&str], rows: &[Row]) -> Roster {
        let mut symbols = Interner::default();
        let mut values = Vec::new();
        let employees = rows
            .iter()
            .enumerate()
            .map(|(i, (id, cells, is_manager, inactive))| {
                assert_eq!(cells.len(), fields.len(), "row {id}");
                values.extend(cells.iter().map(|c| symbols.intern(&fold_cell(c))));
                let email = format!("{id}@example.com");
                let mut e = Employee::new(i as u64 + 2, id, &email, "", *inactive);
                e.is_manager = *is_manager;
                e
            })
            .collect::<Vec<_>>();
        let keys: Vec<String> = fields.iter().map(|f| Columns::default().key(f)).collect();
        Roster {
            rows: employees.len(),
            fields: keys.clone(),
            present: keys,
            employees,
            values,
            symbols,
            warnings: Vec::new(),
            email_column: "email".into(),
            ..Roster::default()
        }
    }

    /// A roster of people P0, P1, … with a department, a job title, whether they manage
    /// someone and whether they left (the proptests' people).
    pub(super) fn people_roster(people: &[(&str, &str, bool, bool)]) -> Roster {
        let names: Vec<String> = (0..people.len()).map(|i| format!("P{i}")).collect();
        let cells: Vec<[&str; 2]> = people.iter().map(|p| [p.0, p.1]).collect();
        let rows: Vec<Row> = people
            .iter()
            .zip(&names)
            .zip(&cells)
            .map(|((p, n), c)| (n.as_str(), &c[..], p.2, p.3))
            .collect();
        roster(&["department", "job_title"], &rows)
    }

    #[test]
    fn rules_serialize_with_conditions_in_when_syntax() {
        let r = rule(
            7,
            &[
                r#"department in ("R&D, Europe", Sales)"#,
                "is_manager = true",
            ],
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"id":7,"name":"rule 7","role":"IT Admin","conditions":["department in (\"R&D, Europe\", Sales)","is_manager = true"],"enabled":true,"created_at":"2025-01-01T00:00:00Z","created_by":"alice"}"#
        );
        assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), r);
        assert_eq!(RuleId(42).to_string(), "42");
        assert_eq!(serde_json::to_string(&RuleId(42)).unwrap(), "42");
    }

    #[test]
    fn needed_fields_lists_each_field_key_once_from_enabled_rules() {
        let columns = Columns::default();
        let mut disabled = rule(3, &["cost_center = 1"]);
        disabled.enabled = false;
        let rules = [
            rule(
                1,
                &[
                    "Department = Finance",
                    "is_manager = true",
                    "Work Email != x",
                ],
            ),
            disabled,
            rule(
                2,
                &[
                    "department in (a)",
                    "email = y",
                    "Job Title = z",
                    "job_title != w",
                ],
            ),
        ];
        assert_eq!(
            needed_fields(&rules, &columns),
            vec!["Department", "is_manager", "Work Email", "Job Title"]
        );
        assert_eq!(needed_fields(&[], &columns), Vec::<String>::new());
    }
}
