//! The accounts a commit writes: accounts packed as the store keeps them, and the accounts a
//! sync creates, which are made from their report changes only when they are written.
//!
//! A first import of a million rows creates ~950k accounts. Packed while the plan is made,
//! they took ~200 MB beside the report's changes, which hold the same facts (ID, email,
//! rule, role); made from those changes bucket by bucket as the store writes them, only a
//! batch of them is ever held.

use crate::core::accounts::{Account, GROUPS, Origin, Status, group_of};
use crate::core::packed::Packed;
use crate::core::parallel::Cores;
use crate::core::reconcile::{Action, Change};
use crate::core::report::ByKind;
use crate::core::rules::RuleId;
use std::collections::VecDeque;

/// What one commit writes to the accounts.
pub struct Updates<'a> {
    /// Accounts whose stored value changes, packed (of two of one ID the later wins).
    packed: Vec<Packed>,
    /// The changes whose `created` accounts are written, with when and by what.
    created: Option<Created<'a>>,
}

/// New accounts, as their changes describe them.
#[derive(Clone, Copy)]
struct Created<'a> {
    changes: &'a [Change],
    now: &'a str,
    source: &'a str,
}

impl Created<'_> {
    /// The changes that create an account.
    fn changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action == Action::Created)
    }
}

impl<'a> Updates<'a> {
    /// No account.
    pub fn none() -> Updates<'static> {
        Updates::packed(Vec::new())
    }

    /// These accounts, packed.
    pub fn packed(packed: Vec<Packed>) -> Updates<'static> {
        Updates {
            packed,
            created: None,
        }
    }

    /// A sync's: the accounts it changes, packed, and the accounts its `created` changes
    /// describe, created at `now` by `source` (as [`created_account`] makes them).
    pub fn of_sync(
        packed: Vec<Packed>,
        changes: &'a [Change],
        now: &'a str,
        source: &'a str,
    ) -> Updates<'a> {
        Updates {
            packed,
            created: Some(Created {
                changes,
                now,
                source,
            }),
        }
    }

    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty() && self.created.is_none_or(|c| c.changes().next().is_none())
    }

    /// Every account written, new ones first (a store that holds accounts as values).
    pub fn accounts(&self) -> impl Iterator<Item = Account> + '_ {
        let created = self.created.iter().flat_map(|c| {
            c.changes()
                .map(|change| created_account(change, c.now, c.source))
        });
        created.chain(self.packed.iter().map(Packed::unpack))
    }

    /// The updates in group order ([`group_of`]), for a store that writes group by group.
    pub fn by_group(self) -> ByGroup<'a> {
        // Stable sorts: of two updates of one ID the later stays later.
        let mut packed: Vec<(u32, Packed)> = self
            .packed
            .into_iter()
            .map(|p| (group_of(p.employee_id()) as u32, p))
            .collect();
        packed.sort_by_key(|(g, _)| *g);
        let mut created: Vec<(u32, u32)> = Vec::new();
        if let Some(c) = self.created {
            created.extend(
                c.changes
                    .iter()
                    .enumerate()
                    .filter(|(_, change)| change.action == Action::Created)
                    .map(|(i, change)| (group_of(&change.employee_id) as u32, i as u32)),
            );
            created.sort_by_key(|(g, _)| *g);
        }
        ByGroup {
            packed: VecDeque::from(packed),
            created: VecDeque::from(created),
            of: self.created,
        }
    }
}

/// Updates taken group by group ([`Updates::by_group`]).
pub struct ByGroup<'a> {
    packed: VecDeque<(u32, Packed)>,
    /// (group, index of the change) of the accounts to create.
    created: VecDeque<(u32, u32)>,
    of: Option<Created<'a>>,
}

impl<'a> ByGroup<'a> {
    /// How many accounts of each group are not taken yet (indexed by group).
    pub fn per_group(&self) -> Vec<usize> {
        let mut counts = vec![0; GROUPS];
        for &(g, _) in &self.created {
            counts[g as usize] += 1;
        }
        for (g, _) in &self.packed {
            counts[*g as usize] += 1;
        }
        counts
    }

    /// How many new accounts are not taken yet.
    pub fn created(&self) -> usize {
        self.created.len()
    }

    /// The updates of groups from `group` on, taken out of these into their own.
    pub fn split_off(&mut self, group: usize) -> ByGroup<'a> {
        let group = group.min(GROUPS) as u32;
        let created = self.created.partition_point(|(g, _)| *g < group);
        let packed = self.packed.partition_point(|(g, _)| *g < group);
        ByGroup {
            packed: self.packed.split_off(packed),
            created: self.created.split_off(created),
            of: self.of,
        }
    }

    /// The accounts of the groups below `end` not taken yet, packed: the new ones first,
    /// made on `cores`, then the changed ones in the order given.
    pub fn take_below(&mut self, end: usize, cores: Cores) -> Vec<Packed> {
        let end = end.min(GROUPS) as u32;
        let n = self.created.partition_point(|(g, _)| *g < end);
        let made: Vec<u32> = self.created.drain(..n).map(|(_, i)| i).collect();
        let mut out = match self.of {
            Some(c) => {
                let make = |part: &[u32]| -> Vec<Packed> {
                    let mut packed = Vec::with_capacity(part.len());
                    let mut tails = ByKind::default();
                    for chunk in part.chunks(WARMED) {
                        warm(c.changes, chunk);
                        packed.extend(chunk.iter().map(|&i| {
                            packed_created(&c.changes[i as usize], c.now, c.source, &mut tails)
                        }));
                    }
                    packed
                };
                let (lower, upper) = made.split_at(made.len() / 2);
                let (mut lower, upper) =
                    cores.join_if(made.len() >= MAKE_ON_TWO, || make(lower), || make(upper));
                lower.extend(upper);
                lower
            }
            None => Vec::new(),
        };
        let n = self.packed.partition_point(|(g, _)| *g < end);
        out.extend(self.packed.drain(..n).map(|(_, p)| p));
        out
    }
}

/// How many changes [`warm`] reads ahead.
const WARMED: usize = 32;

/// New accounts are made on two cores from this many in a batch (~1 µs each; a thread
/// costs ~0.1 ms to start and join).
const MAKE_ON_TWO: usize = 1024;

/// Reads the first byte of the ID and email of each change `at`, and the fields that tell
/// its kind (a change spans two cache lines), in a loop of its own: the changes of a group
/// lie far apart (the group of an ID is a hash of it), and packed one after the other each
/// waited for its cache misses in turn; read here first, the misses of many are in flight at
/// once (BENCHMARKS.md).
fn warm(changes: &[Change], at: &[u32]) {
    let first = |s: &str| s.as_bytes().first().copied().unwrap_or(0);
    let read = at.iter().fold(0u8, |acc, &i| {
        let change = &changes[i as usize];
        let kind = change.role.len() as u8 ^ change.action as u8;
        acc ^ first(&change.employee_id) ^ first(&change.email) ^ kind
    });
    std::hint::black_box(read);
}

/// The account a `created` change describes, created at `now` by `source`.
pub fn created_account(change: &Change, now: &str, source: &str) -> Account {
    let reason = created_reason(change);
    let mut account = Account {
        employee_id: change.employee_id.to_string(),
        email: change.email.to_string(),
        role: change.role.to_string(),
        status: Status::Active,
        origin: Origin::Auto,
        rule_id: change.rule_id,
        created_at: now.to_string(),
        updated_at: now.to_string(),
        history: Vec::new(),
    };
    account.record(now, source, reason);
    account
}

/// The history reason of an account created by `change`: `created by rule 7 "Name"`, or
/// rule `-` without one.
fn created_reason(change: &Change) -> String {
    let id = change.rule_id.map(|id| id.0.to_string());
    let name = change.rule.as_deref().unwrap_or_default();
    format!(
        "created by rule {} \"{name}\"",
        id.as_deref().unwrap_or("-")
    )
}

/// [`created_account`] packed, without making the account: its strings are borrowed from
/// the change (a million new accounts made nine strings each, only to be encoded). What
/// follows the ID and email (role, state, dates, history) is the same for every account of
/// one kind of change, so it is encoded once for the kind and copied ([`ByKind`]; a first
/// import's 950k new accounts are of ~60 kinds), past [`crate::core::report::MAX_KINDS`]
/// kinds account by account.
fn packed_created(change: &Change, now: &str, source: &str, tails: &mut ByKind<Packed>) -> Packed {
    let whole = || encode_created(change, "", "", now, source);
    match tails.of(change, whole) {
        Some(blank) => blank.with_id_and_email(&change.employee_id, &change.email),
        None => encode_created(change, &change.employee_id, &change.email, now, source),
    }
}

/// The encoding of the account `change` creates, with this ID and email.
fn encode_created(change: &Change, id: &str, email: &str, now: &str, source: &str) -> Packed {
    /// An [`Account`] with borrowed strings: the same fields in the same order.
    #[derive(serde::Serialize)]
    struct New<'a> {
        employee_id: &'a str,
        email: &'a str,
        role: &'a str,
        status: Status,
        origin: Origin,
        rule_id: Option<RuleId>,
        created_at: &'a str,
        updated_at: &'a str,
        history: &'a [Entry<'a>],
    }
    /// A [`crate::core::accounts::HistoryEntry`] with borrowed strings.
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        at: &'a str,
        source: &'a str,
        status: Status,
        role: &'a str,
        reason: &'a str,
    }
    Packed::encode(&New {
        employee_id: id,
        email,
        role: &change.role,
        status: Status::Active,
        origin: Origin::Auto,
        rule_id: change.rule_id,
        created_at: now,
        updated_at: now,
        history: &[Entry {
            at: now,
            source,
            status: Status::Active,
            role: &change.role,
            reason: &created_reason(change),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::RuleId;
    use std::sync::Arc;

    fn change(id: &str, action: Action) -> Change {
        Change {
            employee_id: id.into(),
            email: format!("{id}@acme.example").into(),
            action,
            rule_id: Some(RuleId(3)),
            rule: Some(Arc::from("Finance managers")),
            role: Arc::from("Billing Admin"),
            previous_role: None,
            previous_status: None,
        }
    }

    #[test]
    fn a_created_account_packs_to_the_bytes_of_the_account_made() {
        let mut unnamed = change("E2", Action::Created);
        (unnamed.rule_id, unnamed.rule) = (None, None);
        let mut long = change(&"É".repeat(300), Action::Created);
        long.rule = Some(Arc::from("r".repeat(400).as_str()));
        assert_eq!(
            created_reason(&change("E1", Action::Created)),
            "created by rule 3 \"Finance managers\""
        );
        assert_eq!(created_reason(&unnamed), "created by rule - \"\"");
        // One cache of kinds for all, as a commit uses it: E1 and E3 are of one kind (their
        // names are the same strings), the rest of kinds of their own.
        let e1 = change("E1", Action::Created);
        let mut e3 = e1.clone();
        (e3.employee_id, e3.email) = ("E3".into(), "e3.long.email@acme.example".into());
        let mut tails = ByKind::default();
        let (now, source) = ("2026-01-01T00:00:00Z", "roster.csv");
        for c in [e1, unnamed, long, e3] {
            let made = Packed::of(&created_account(&c, now, source));
            let packed = packed_created(&c, now, source, &mut tails);
            assert_eq!(packed.bytes(), made.bytes());
            assert_eq!(made.unpack(), created_account(&c, now, source));
        }
        // Past the kinds a cache keeps, each account is encoded whole, to the same bytes.
        let many: Vec<Change> = (0..crate::core::report::MAX_KINDS + 2)
            .map(|n| {
                let mut c = change(&format!("E{n}"), Action::Created);
                c.role = Arc::from(format!("Role {n}").as_str());
                c
            })
            .collect();
        for c in &many {
            let made = Packed::of(&created_account(c, now, source));
            assert_eq!(
                packed_created(c, now, source, &mut tails).bytes(),
                made.bytes()
            );
        }
    }

    #[test]
    fn a_created_change_makes_the_account_a_sync_creates() {
        let a = created_account(
            &change("E1", Action::Created),
            "2026-01-01T00:00:00Z",
            "hr.csv",
        );
        assert_eq!(a.employee_id, "E1");
        assert_eq!(a.email, "E1@acme.example");
        assert_eq!(a.role, "Billing Admin");
        assert_eq!(
            (a.status, a.origin, a.rule_id),
            (Status::Active, Origin::Auto, Some(RuleId(3)))
        );
        assert_eq!(a.created_at, "2026-01-01T00:00:00Z");
        assert_eq!(a.history.len(), 1);
        assert_eq!(a.history[0].source, "hr.csv");
        assert_eq!(
            a.history[0].reason,
            "created by rule 3 \"Finance managers\""
        );
    }

    #[test]
    fn taken_by_group_every_update_comes_once_in_group_order_new_ones_before_changed_ones() {
        let ids: Vec<String> = (0..3000).map(|i| format!("E{i}")).collect();
        let mut changes: Vec<Change> = ids.iter().map(|id| change(id, Action::Created)).collect();
        // Only `created` changes make accounts.
        changes.push(change("X1", Action::Deactivated));
        let packed = vec![Packed::of(&created_account(
            &change("P1", Action::Created),
            "t",
            "s",
        ))];
        let updates = Updates::of_sync(packed, &changes, "t", "s");
        assert!(!updates.is_empty());
        assert_eq!(updates.accounts().count(), 3001);
        let mut by_group = updates.by_group();
        let mut seen = Vec::new();
        let mut from = 0;
        assert_eq!(by_group.per_group().iter().sum::<usize>(), 3001);
        for end in [700, 1400, 2800, GROUPS] {
            let counts = by_group.per_group();
            let batch = by_group.take_below(end, Cores::Two);
            assert!(!batch.is_empty());
            assert_eq!(
                counts[..end].iter().sum::<usize>(),
                batch.len(),
                "counted as taken"
            );
            for p in &batch {
                assert!(counts[group_of(p.employee_id())] > 0);
            }
            assert!(
                batch
                    .iter()
                    .all(|p| (from..end).contains(&group_of(p.employee_id())))
            );
            if let Some(at) = batch.iter().position(|p| p.employee_id() == "P1") {
                assert_eq!(
                    at,
                    batch.len() - 1,
                    "the changed account after the new ones"
                );
            }
            seen.extend(batch.iter().map(|p| p.employee_id().to_string()));
            from = end;
        }
        assert!(by_group.per_group().iter().all(|&n| n == 0));
        assert!(by_group.take_below(GROUPS, Cores::Two).is_empty());
        let mut expected: Vec<String> = ids.clone();
        expected.push("P1".into());
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn split_off_parts_take_their_own_groups_and_together_every_update() {
        let ids: Vec<String> = (0..3000).map(|i| format!("E{i}")).collect();
        let changes: Vec<Change> = ids.iter().map(|id| change(id, Action::Created)).collect();
        let packed: Vec<Packed> = ["P1", "P2", "P3", "P4"]
            .iter()
            .map(|id| Packed::of(&created_account(&change(id, Action::Created), "t", "s")))
            .collect();
        let mut lower = Updates::of_sync(packed, &changes, "t", "s").by_group();
        let counts = lower.per_group();
        let at = GROUPS / 3;
        let mut upper = lower.split_off(at);
        assert_eq!(lower.per_group()[..at], counts[..at]);
        assert!(lower.per_group()[at..].iter().all(|&n| n == 0));
        assert_eq!(upper.per_group()[at..], counts[at..]);
        assert!(upper.per_group()[..at].iter().all(|&n| n == 0));
        let below = lower.take_below(GROUPS, Cores::One);
        let above = upper.take_below(GROUPS, Cores::One);
        assert!(below.iter().all(|p| group_of(p.employee_id()) < at));
        assert!(above.iter().all(|p| group_of(p.employee_id()) >= at));
        let mut seen: Vec<&str> = below
            .iter()
            .chain(&above)
            .map(Packed::employee_id)
            .collect();
        seen.sort_unstable();
        let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        expected.extend(["P1", "P2", "P3", "P4"]);
        expected.sort_unstable();
        assert_eq!(seen, expected);
    }

    #[test]
    fn nothing_to_write_is_empty() {
        assert!(Updates::none().is_empty());
        let changes = [change("E1", Action::Deactivated)];
        assert!(Updates::of_sync(Vec::new(), &changes, "t", "s").is_empty());
    }
}
