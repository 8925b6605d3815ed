//! The last applied roster as the `rules` commands compare rules with it: read and parsed
//! once a command, each rule's overlap constraints and match set built the first time a
//! pair needs them.

use crate::core::columns::Columns;
use crate::core::model::Roster;
use crate::core::roster;
use crate::core::rules::{CompiledRule, Condition, Constraints, MatchSet, Rule, RuleId};
use crate::engine::pipeline::Pipeline;
use crate::store::Store;
use std::collections::{BTreeSet, HashMap};

/// How messages name the field `is_manager` reads.
const IS_MANAGER_FIELD: &str = "is_manager (derived from manager_id)";

/// What one `rules` command compares rules with: the last applied roster, read and parsed
/// once, and per rule its overlap constraints and its match set on that roster, each built
/// the first time a pair needs it.
pub(super) struct LastRoster {
    /// None when no roster was applied yet, or its file is gone or no longer parses.
    roster: Option<Roster>,
    /// Why an applied roster is not there to count on (its file gone or unreadable).
    pub(super) unread: Option<String>,
    columns: Columns,
    /// By rule id (as all maps here): the ids of one command's rules are distinct.
    constraints: HashMap<RuleId, Constraints>,
    sets: HashMap<RuleId, Evaluated>,
}

/// A rule evaluated on the last applied roster.
enum Evaluated {
    Matches(MatchSet),
    /// A field the rule reads (as written) that the roster has no column for.
    Unreadable(String),
}

/// What the last applied roster says about the employees matching two rules.
pub(super) enum Both {
    NoRoster,
    /// How many match both, and up to `BOTH_MATCH_SAMPLE` of their ids.
    Counted(usize, Vec<String>),
    /// Not counted: this rule reads this field, which the roster has no column for.
    Uncounted(RuleId, String),
}

impl LastRoster {
    /// Reads and parses the last applied roster once, keeping the values of every field
    /// that `rules` read and its header has: a column one rule lacks neither rejects the
    /// file nor keeps the other rules from being evaluated.
    pub(super) fn load<S: Store>(
        p: &Pipeline<S>,
        rules: &[&Rule],
    ) -> crate::api::Result<LastRoster> {
        let mut last = LastRoster {
            roster: None,
            unread: None,
            columns: p.cfg.columns(),
            constraints: HashMap::new(),
            sets: HashMap::new(),
        };
        let Some(entry) = p.store.last_applied()? else {
            return Ok(last);
        };
        let path = p.paths.folder("processed").join(&entry.stored_as);
        let unread = |why: String| format!("the last applied roster {} {why}", path.display());
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                last.unread = Some(unread(format!("cannot be read ({e})")));
                return Ok(last);
            }
        };
        // Counted from what was applied, as `sync` reads it: a copy edited since had been
        // counted from, where `sync` refuses it.
        if crate::util::sha256_hex(&bytes) != entry.sha256 {
            last.unread = Some(unread(
                "was changed on disk (its SHA-256 differs from the ledger's)".into(),
            ));
            return Ok(last);
        }
        let Some(present) = roster::header_keys(&bytes, &p.cfg.roster_options(Vec::new())) else {
            last.unread = Some(unread("no longer parses".into()));
            return Ok(last);
        };
        let mut keys = BTreeSet::new();
        let mut needed = Vec::new();
        for condition in rules.iter().flat_map(|r| &r.conditions) {
            if let Condition::Field { field, .. } = condition {
                let key = last.columns.key(field);
                if present.contains(&key) && keys.insert(key) {
                    needed.push(field.clone());
                }
            }
        }
        last.roster = roster::parse(&bytes, &p.cfg.roster_options(needed)).ok();
        if last.roster.is_none() {
            last.unread = Some(unread("no longer parses".into()));
        }
        Ok(last)
    }

    /// What was found for the rule `from` (its constraints, its match set), kept as the
    /// rule `to`'s: a new rule given its id.
    pub(super) fn renamed(&mut self, from: RuleId, to: RuleId) {
        if let Some(c) = self.constraints.remove(&from) {
            self.constraints.insert(to, c);
        }
        if let Some(set) = self.sets.remove(&from) {
            self.sets.insert(to, set);
        }
    }

    /// What to warn of in a rule: conditions that can never all hold, and the fields it
    /// reads that the last applied roster lacks.
    pub(super) fn warnings(&self, rule: &Rule) -> Vec<String> {
        let never = Constraints::of(rule, &self.columns)
            .never_holds()
            .map(|field| {
                let field = match field {
                    "is_manager" => IS_MANAGER_FIELD,
                    field => field,
                };
                format!("its conditions on \"{field}\" can never all hold: the rule matches nobody")
            });
        never.into_iter().chain(self.missing_fields(rule)).collect()
    }

    /// Fields the rule reads that the last applied roster lacks, as warnings.
    fn missing_fields(&self, rule: &Rule) -> Vec<String> {
        let Some(roster) = &self.roster else {
            return Vec::new();
        };
        rule.conditions
            .iter()
            .filter_map(|c| {
                // is_manager is derived from manager_id: a file without it is rejected too.
                let (key, name) = match c {
                    Condition::Field { field, .. } => (c.field_key(&self.columns)?, field.as_str()),
                    Condition::IsManager(_) => (
                        crate::core::columns::canonical_key(crate::core::columns::MANAGER_ID),
                        IS_MANAGER_FIELD,
                    ),
                };
                (!roster.has_field(&key)).then(|| {
                    format!(
                        "the last applied roster has no column for \"{name}\"; while this rule is enabled, files without it are rejected"
                    )
                })
            })
            .collect()
    }

    /// Whether both rules' conditions can hold for one employee (`rules::can_overlap`).
    pub(super) fn can_overlap(&mut self, a: &Rule, b: &Rule) -> bool {
        for rule in [a, b] {
            self.constraints
                .entry(rule.id)
                .or_insert_with(|| Constraints::of(rule, &self.columns));
        }
        self.constraints[&a.id].overlaps(&self.constraints[&b.id])
    }

    /// The employees of the last applied roster matching both rules, each rule evaluated
    /// at most once per command.
    pub(super) fn both(&mut self, a: &Rule, b: &Rule) -> Both {
        let Some(roster) = &self.roster else {
            return Both::NoRoster;
        };
        let managers = crate::core::columns::canonical_key(crate::core::columns::MANAGER_ID);
        for rule in [a, b] {
            self.sets.entry(rule.id).or_insert_with(|| {
                // is_manager is derived from manager_id: without it, nobody would count as
                // a manager, and such a file is rejected while the rule is enabled.
                let derived = rule
                    .conditions
                    .iter()
                    .any(|c| matches!(c, Condition::IsManager(_)));
                if derived && !roster.has_field(&managers) {
                    return Evaluated::Unreadable(IS_MANAGER_FIELD.to_string());
                }
                match CompiledRule::compile(rule, roster, &self.columns) {
                    Ok(compiled) => Evaluated::Matches(MatchSet::build(roster, &compiled)),
                    Err(field) => Evaluated::Unreadable(field),
                }
            });
        }
        match (&self.sets[&a.id], &self.sets[&b.id]) {
            (Evaluated::Matches(x), Evaluated::Matches(y)) => {
                let (count, ids) = x.both(y, roster);
                Both::Counted(count, ids)
            }
            (Evaluated::Unreadable(field), _) => Both::Uncounted(a.id, field.clone()),
            (_, Evaluated::Unreadable(field)) => Both::Uncounted(b.id, field.clone()),
        }
    }
}
