//! Why an account's status or rule changed, as its history says (SPEC §3: each account
//! keeps a history with the reason). An auditor reading "no longer matches" looks for a
//! change in the employee's HR data: where the rule was deleted, disabled or left out for
//! its role, the reason says that.

use super::{Action, SyncInput};
use crate::core::model::quoted;
use crate::core::rules::{Rule, RuleId};

/// Why an account is deactivated, in its history.
pub(super) const NO_RULE: &str = "deactivated: no enabled rule matches";
pub(super) const ABSENT: &str = "deactivated: employee absent from the roster or inactive";
pub(super) const EMAIL_TAKEN: &str = "deactivated: its email is another employee's";

/// Why the account's rule `id` no longer keeps it.
fn left_rule(input: &SyncInput<'_>, id: Option<RuleId>) -> String {
    match id.map(|id| (id, input.rules.get(&id))) {
        None => "it had no rule".to_string(),
        Some((id, Some(r))) if input.left_out.contains(&id) => format!(
            "rule {id}'s role \"{}\" is no longer in provisioning.roles",
            r.role
        ),
        Some((id, None)) => format!("rule {id} was deleted"),
        Some((id, Some(r))) if !r.enabled => format!("rule {id} is disabled"),
        Some((id, Some(_))) => format!("rule {id} no longer matches"),
    }
}

/// The reason of `action` (reassigned, reactivated or role changed) to `rule`, from the
/// account's rule `was`.
pub(super) fn moved(
    input: &SyncInput<'_>,
    action: Action,
    rule: &Rule,
    was: Option<RuleId>,
) -> String {
    match action {
        Action::Reassigned => format!(
            "reassigned to rule {} {} ({})",
            rule.id,
            quoted(&rule.name),
            left_rule(input, was)
        ),
        Action::Reactivated => format!("reactivated by rule {} {}", rule.id, quoted(&rule.name)),
        _ => format!("role of rule {} {} changed", rule.id, quoted(&rule.name)),
    }
}

/// The reason of a deactivation, `gone` unless the account's rule `was` deleted, disabled or
/// left out for its role ("no enabled rule matches" is not why then).
pub(super) fn gone(input: &SyncInput<'_>, gone: &str, was: Option<RuleId>) -> String {
    match was.map(|id| (id, input.rules.get(&id))) {
        Some((id, r))
            if gone == NO_RULE && r.is_none_or(|r| !r.enabled || input.left_out.contains(&id)) =>
        {
            format!("deactivated: {}", left_rule(input, was))
        }
        _ => gone.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::MatchTable;
    use std::collections::BTreeMap;

    /// A rule's name is quoted with its quotes doubled: `X" (rule 1 was deleted)` cannot
    /// make the reason read as another.
    #[test]
    fn a_rule_name_cannot_pass_for_the_reason() {
        let rule = Rule {
            id: RuleId(2),
            name: r#"X" (rule 1 is disabled)"#.into(),
            role: "IT Admin".into(),
            conditions: Vec::new(),
            enabled: true,
            created_at: String::new(),
            created_by: String::new(),
        };
        let rules = BTreeMap::from([(RuleId(2), rule.clone())]);
        let matching = MatchTable::from_lists(&[]);
        let input = SyncInput {
            matching: &matching,
            rules: &rules,
            now: "t",
            source: "s",
            left_out: &[],
        };
        assert_eq!(
            moved(&input, Action::Reassigned, &rule, Some(RuleId(1))),
            r#"reassigned to rule 2 "X"" (rule 1 is disabled)" (rule 1 was deleted)"#
        );
    }
}
