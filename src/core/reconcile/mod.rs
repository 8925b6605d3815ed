//! One sync as a pure function: (roster, matching rules, accounts) -> Plan (SPEC §4), the
//! accounts read one group at a time ([`groups`]).

mod groups;
mod holders;
mod names;
mod order;
mod reasons;
mod safety;

pub use groups::{EmployeeGroups, ReadGroup};
use groups::{Manual, Survey};
use holders::{
    Holders, any_email_taken, cap_warnings, email_moved, email_taken, manual_of_leaver, not_active,
    not_one_address, sign_in_moved, taken_by_other,
};
use order::sort_changes;
use reasons::{ABSENT, EMAIL_TAKEN, NO_RULE};
pub use safety::{Limit, Limits};

use crate::core::accounts::{
    Account, AccountGroup, AccountHead, GROUPS, HeldGroup, Origin, Status,
};
use crate::core::model::{Finding, Roster};
use crate::core::packed::Packed;
use crate::core::parallel::join;
use crate::core::rules::{MatchTable, Rule, RuleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use names::Names;

/// What happened to one employee, in the order of precedence SPEC §4 gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new auto account.
    Created,
    /// Moved to another rule (the previous one no longer matches).
    Reassigned,
    /// An inactive auto account became active again.
    Reactivated,
    /// The controlling rule's role was edited.
    RoleChanged,
    /// No rule matches any more, or the employee left.
    Deactivated,
    /// A manual account whose employee matches a rule: left alone.
    SkippedManual,
}

impl Action {
    /// Every action, in precedence order.
    pub const ALL: [Action; 6] = [
        Action::Created,
        Action::Reassigned,
        Action::Reactivated,
        Action::RoleChanged,
        Action::Deactivated,
        Action::SkippedManual,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Reassigned => "reassigned",
            Action::Reactivated => "reactivated",
            Action::RoleChanged => "role_changed",
            Action::Deactivated => "deactivated",
            Action::SkippedManual => "skipped_manual",
        }
    }

    /// Whether the action hands out rights (counted against `safety.max_grants`).
    pub fn is_grant(self) -> bool {
        matches!(
            self,
            Action::Created | Action::Reassigned | Action::Reactivated | Action::RoleChanged
        )
    }
}

/// One changed employee in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The employee.
    pub employee_id: Box<str>,
    /// The account's email after the sync.
    pub email: Box<str>,
    /// The first action that applies.
    pub action: Action,
    /// The rule that controls the account after the sync (for `skipped_manual`: the first matching rule).
    pub rule_id: Option<RuleId>,
    /// That rule's name (shared by the changes that name it: see [`Names`]).
    pub rule: Option<Arc<str>>,
    /// The role after the sync (shared, as the rule's name).
    pub role: Arc<str>,
    /// The account's role before the sync; `None` only for `created`.
    pub previous_role: Option<Arc<str>>,
    /// The account's status before the sync; `None` only for `created`.
    pub previous_status: Option<Status>,
}

/// Employees per action, plus `unchanged`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// New auto accounts.
    pub created: usize,
    /// Accounts moved to another rule.
    pub reassigned: usize,
    /// Accounts made active again.
    pub reactivated: usize,
    /// Accounts whose rule's role changed.
    pub role_changed: usize,
    /// Accounts deactivated.
    pub deactivated: usize,
    /// Manual accounts of employees who match a rule.
    pub skipped_manual: usize,
    /// Active auto accounts that stay active with the same rule and role.
    pub unchanged: usize,
}

impl Counts {
    /// Adds another part's counts to these.
    fn merge(&mut self, other: &Counts) {
        self.created += other.created;
        self.reassigned += other.reassigned;
        self.reactivated += other.reactivated;
        self.role_changed += other.role_changed;
        self.deactivated += other.deactivated;
        self.skipped_manual += other.skipped_manual;
        self.unchanged += other.unchanged;
    }

    fn add(&mut self, action: Action) {
        *match action {
            Action::Created => &mut self.created,
            Action::Reassigned => &mut self.reassigned,
            Action::Reactivated => &mut self.reactivated,
            Action::RoleChanged => &mut self.role_changed,
            Action::Deactivated => &mut self.deactivated,
            Action::SkippedManual => &mut self.skipped_manual,
        } += 1;
    }

    /// The count of one action.
    pub fn get(&self, action: Action) -> usize {
        match action {
            Action::Created => self.created,
            Action::Reassigned => self.reassigned,
            Action::Reactivated => self.reactivated,
            Action::RoleChanged => self.role_changed,
            Action::Deactivated => self.deactivated,
            Action::SkippedManual => self.skipped_manual,
        }
    }
}

/// What a sync would do: the report's changes and counts, and the accounts to write.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// One entry per changed employee, sorted by employee ID.
    pub changes: Vec<Change>,
    /// Employees per action.
    pub counts: Counts,
    /// Accounts whose stored value changes (status, role, rule or email), packed as the
    /// store keeps them; in no particular order (the store groups them). Not the accounts
    /// the plan creates: those are made from their `created` changes as they are written
    /// ([`crate::core::updates::Updates::of_sync`]).
    pub updates: Vec<Packed>,
    /// Active auto accounts before the sync (the safety base N).
    pub base: usize,
    /// The employee IDs of every manual account (in group order).
    pub manual_ids: Vec<String>,
    /// Findings about the roster that only the accounts reveal (an email another employee's
    /// manual account holds, an admin's sign-in email moving, a leaver's manual account);
    /// the file is still applied.
    pub warnings: Vec<Finding>,
    /// The role and rule names the changes share.
    names: Names,
}

/// Inputs of one sync besides the roster and the accounts.
pub struct SyncInput<'a> {
    /// For each employee of the roster (same order): matching enabled rules, lowest id first.
    pub matching: &'a MatchTable,
    /// The rules by id: at least every id in `matching`; disabled ones too, so changes can name them.
    pub rules: &'a BTreeMap<RuleId, Rule>,
    /// When (RFC 3339), for history and timestamps.
    pub now: &'a str,
    /// The file or command, for history.
    pub source: &'a str,
    /// Enabled rules left out because their role is no longer configured, for history.
    pub left_out: &'a [RuleId],
}

/// Plans a sync over accounts held in memory (tests and benchmarks; a store's accounts are
/// read group by group with [`plan`]).
pub fn plan_held(
    roster: &Roster,
    matching: &MatchTable,
    rules: &BTreeMap<RuleId, Rule>,
    accounts: &[Account],
    now: &str,
    source: &str,
) -> Plan {
    let groups = HeldGroup::split(accounts);
    let read = |g: usize, f: &mut dyn FnMut(&dyn AccountGroup)| {
        f(&groups[g]);
        Ok::<(), std::convert::Infallible>(())
    };
    let input = SyncInput {
        matching,
        rules,
        now,
        source,
        left_out: &[],
    };
    match plan(roster, &input, &read) {
        Ok(plan) => plan,
        Err(never) => match never {},
    }
}

/// Plans one sync following the table of SPEC §4, reading the accounts one group at a time
/// with `read` ([`ReadGroup`]): an account is copied whole only when it changes.
///
/// Two passes, each on two cores. The groups first: every employee with an account, and
/// every absent employee's account. Then the employees without an account (all of them at a
/// first import), in roster order: the accounts and changes a first import creates are then
/// made, and later read for the report, in file order rather than scattered by group.
///
/// What the accounts hold as a whole ([`Survey`]) is read in the first pass, which plans as
/// if no manual account held an email. That is the plan when no employee's email is held
/// by another employee's active manual account; when one is, the first pass is planned
/// again knowing them all.
pub fn plan<E: Send>(
    roster: &Roster,
    input: &SyncInput<'_>,
    read: &ReadGroup<'_, E>,
) -> Result<Plan, E> {
    let employees = EmployeeGroups::of(roster);
    let none = Manual::new();
    let first = Holders::manual(&none);
    let (mut grouped, survey) = plan_all_groups(roster, input, &employees, &first, read)?;
    let taken = any_email_taken(roster, &survey.manual);
    let holders = match taken {
        true => Holders::with_rows(&survey.manual, roster),
        false => Holders::manual(&survey.manual),
    };
    if taken {
        (grouped, _) = plan_all_groups(roster, input, &employees, &holders, read)?;
    }
    let n = roster.employees.len();
    let mut lone = vec![false; n];
    for &row in &grouped.without_account {
        lone[row as usize] = true;
    }
    // The first half hands its changes over, a chunk at a time, to one part with room for
    // every likely change; the second keeps its chunks, appended after the first half's
    // one by one, each let go once it is: a million changes are never held twice (appending
    // one half's whole to the other's held the second half twice, ~60 MB at a first
    // import), and they end in roster order (chunks of the two halves interleaved in the
    // part took [`sort_changes`] ~60 ms on one core to undo).
    let room = grouped.without_account.len() + grouped.plan.changes.len();
    let mut part = Part::with_room(room);
    let mut kept = Vec::new();
    let (first, later) = join(
        || {
            plan_rows(roster, input, &holders, &lone, 0..n / 2, &mut |chunk| {
                part.append(chunk)
            })
        },
        || {
            plan_rows(roster, input, &holders, &lone, n / 2..n, &mut |chunk| {
                let changes = std::mem::replace(&mut chunk.plan.changes, Vec::with_capacity(CHUNK));
                kept.push((
                    changes,
                    std::mem::replace(&mut chunk.rows, Vec::with_capacity(CHUNK)),
                ))
            })
        },
    );
    for (changes, rows) in kept {
        part.plan.changes.extend(changes);
        part.rows.extend(rows);
    }
    part.absorb(first);
    part.absorb(later);
    part.absorb(grouped);
    let mut plan = part.plan;
    plan.base = survey.base;
    plan.manual_ids = survey.manual_ids;
    cap_warnings(&mut plan.warnings);
    sort_changes(&mut plan.changes, &part.rows, n);
    Ok(plan)
}

/// The first pass of [`plan`] over every group, on two cores, with what the accounts hold as
/// a whole.
fn plan_all_groups<E: Send>(
    roster: &Roster,
    input: &SyncInput<'_>,
    employees: &EmployeeGroups,
    holders: &Holders<'_>,
    read: &ReadGroup<'_, E>,
) -> Result<(Part, Survey), E> {
    let half = GROUPS / 2;
    let (lower, upper) = join(
        || plan_groups(roster, input, holders, employees, 0..half, read),
        || plan_groups(roster, input, holders, employees, half..GROUPS, read),
    );
    let ((mut part, mut survey), (upper, upper_survey)) = (lower?, upper?);
    part.absorb(upper);
    survey.absorb(upper_survey);
    Ok((part, survey))
}

/// A part of a plan: the plan, the roster position of each of its changes (`u32::MAX`: an
/// absent employee), and the employees found without an account (left to [`plan_rows`]).
#[derive(Default)]
struct Part {
    plan: Plan,
    rows: Vec<u32>,
    without_account: Vec<u32>,
}

impl Part {
    fn with_room(room: usize) -> Part {
        let mut part = Part::default();
        part.plan.changes.reserve(room);
        part.rows.reserve(room);
        part
    }

    /// Moves a part's changes and their rows to the end of these.
    fn append(&mut self, other: &mut Part) {
        self.plan.changes.append(&mut other.plan.changes);
        self.rows.append(&mut other.rows);
    }

    /// Appends another part's.
    fn absorb(&mut self, other: Part) {
        self.plan.counts.merge(&other.plan.counts);
        self.plan.changes.extend(other.plan.changes);
        self.rows.extend(other.rows);
        self.plan.updates.extend(other.plan.updates);
        self.plan.warnings.extend(other.plan.warnings);
        self.without_account.extend(other.without_account);
    }
}

/// Plans the employees of `range` marked in `lone` (those without an account), in roster
/// order, handing their changes (with their rows) over to `hand_over` [`CHUNK`] at a time.
/// The part returned holds the rest: counts and warnings.
fn plan_rows(
    roster: &Roster,
    input: &SyncInput<'_>,
    holders: &Holders<'_>,
    lone: &[bool],
    range: std::ops::Range<usize>,
    hand_over: &mut (dyn FnMut(&mut Part) + Send),
) -> Part {
    let mut part = Part::with_room(CHUNK);
    for row in range.filter(|&row| lone[row]) {
        let plan = &mut part.plan;
        plan_row(
            plan,
            roster,
            input,
            holders,
            row,
            input.matching.get(row),
            None,
        );
        part.rows.resize(part.plan.changes.len(), row as u32);
        if part.plan.changes.len() >= CHUNK {
            hand_over(&mut part);
        }
    }
    hand_over(&mut part);
    part
}

/// How many changes [`plan_rows`] makes before handing them over (~1 MB).
const CHUNK: usize = 8192;

/// Plans the groups `range`: the employees with an account and the absent employees'
/// accounts; the employees without one are listed in the part. Surveys the groups' accounts
/// too.
fn plan_groups<E>(
    roster: &Roster,
    input: &SyncInput<'_>,
    holders: &Holders<'_>,
    employees: &EmployeeGroups,
    range: std::ops::Range<usize>,
    read: &ReadGroup<'_, E>,
) -> Result<(Part, Survey), E> {
    let mut part = Part::default();
    let mut survey = Survey::default();
    let mut scratch = Scratch::default();
    for g in range {
        let rows = employees.of_group(g);
        read(g, &mut |accounts| {
            survey.add(accounts);
            let planning = (roster, input, holders);
            plan_group(&mut part, &mut scratch, planning, rows, accounts);
        })?;
    }
    Ok((part, survey))
}

/// What [`plan_group`] keeps between groups so as not to allocate it again.
#[derive(Default)]
struct Scratch<'r> {
    /// Which of the group's accounts belong to an employee of the roster.
    found: Vec<bool>,
    /// Each row's ID and matching rules, and the first of those rules: read there only so
    /// that its cache miss overlaps the others' (without it a 1M sync took ~0.1 s longer).
    gathered: Vec<(&'r str, &'r [RuleId], Option<RuleId>)>,
}

/// Plans one group: those of the employees `rows` (roster positions) who have an account,
/// and the accounts of absent employees; `found` is scratch space, kept between groups.
fn plan_group<'r>(
    part: &mut Part,
    scratch: &mut Scratch<'r>,
    (roster, input, holders): (&'r Roster, &SyncInput<'r>, &Holders<'_>),
    rows: &[u32],
    accounts: &dyn AccountGroup,
) {
    let heads = accounts.heads();
    if heads.is_empty() {
        // No account to find (every group of a first import): each row is left to
        // `plan_rows`, in roster order, without reading it here at random.
        part.without_account.extend_from_slice(rows);
        return;
    }
    let Scratch { found, gathered } = scratch;
    found.clear();
    found.resize(heads.len(), false);
    // A group's rows lie far apart in the roster and its table of matching rules. Read in
    // a loop of their own first, their cache misses overlap; planning row by row waited for
    // each in turn (BENCHMARKS.md).
    gathered.clear();
    gathered.extend(rows.iter().map(|&row| {
        let matching = input.matching.get(row as usize);
        let id = roster.employees[row as usize].id();
        (id, matching, matching.first().copied())
    }));
    let mut next = Cursor::default();
    for (&row, &(id, matching, _)) in rows.iter().zip(gathered.iter()) {
        let row = row as usize;
        let Ok(at) = next.find(heads, id) else {
            part.without_account.push(row as u32);
            continue;
        };
        found[at] = true;
        let stored = Stored {
            head: &heads[at],
            group: accounts,
            at,
        };
        let plan = &mut part.plan;
        plan_row(plan, roster, input, holders, row, matching, Some(stored));
        part.rows.resize(part.plan.changes.len(), row as u32);
    }
    // Auto accounts whose employee is absent.
    for (at, head) in heads.iter().enumerate() {
        if !found[at] && head.origin == Origin::Auto {
            let stored = Stored {
                head,
                group: accounts,
                at,
            };
            plan_auto(&mut part.plan, input, stored, None, &[], ABSENT);
            part.rows.resize(part.plan.changes.len(), u32::MAX);
        }
    }
}

/// Where the last ID was looked up in a group's heads (sorted by ID). The rows of a group
/// come in roster order, and a roster is usually in ID order: then each row's account is
/// the head right after the last one found, checked first, and a binary search is left for
/// the others.
#[derive(Default)]
struct Cursor<'a> {
    last: Option<&'a str>,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Where `id` is in `heads`, as `binary_search` answers.
    fn find(&mut self, heads: &[AccountHead<'_>], id: &'a str) -> Result<usize, usize> {
        let from = match self.last {
            Some(last) if last < id => self.at,
            _ => 0,
        };
        let found = match heads.get(from) {
            Some(h) if h.employee_id == id => Ok(from),
            _ => heads[from..]
                .binary_search_by(|h| h.employee_id.cmp(id))
                .map(|k| from + k)
                .map_err(|k| from + k),
        };
        self.last = Some(id);
        self.at = match found {
            Ok(k) => k + 1,
            Err(k) => k,
        };
        found
    }
}

/// A stored account found for an employee: its head, read whole only when it changes.
#[derive(Clone, Copy)]
struct Stored<'g> {
    head: &'g AccountHead<'g>,
    group: &'g dyn AccountGroup,
    at: usize,
}

impl Stored<'_> {
    fn whole(&self) -> Account {
        self.group.whole(self.at)
    }
}

/// Plans the employee at `row` of the roster, whose account (if any) is `account`.
fn plan_row(
    plan: &mut Plan,
    roster: &Roster,
    input: &SyncInput<'_>,
    holders: &Holders<'_>,
    row: usize,
    matching: &[RuleId],
    account: Option<Stored<'_>>,
) {
    let employee = &roster.employees[row];
    let auto = account.filter(|a| a.head.origin == Origin::Auto);
    let mut email = employee.has_well_formed_email().then_some(employee.email());
    if let Some(holder) = email.and_then(|e| taken_by_other(holders.manual, e, employee.id())) {
        // No new account and no email change for this employee, and a warning naming both
        // (SPEC §3), whatever that blocks: HR gives the address another person than the one
        // who signs in with it, and that sign-in had gone on with the manual admin's role
        // while the report said nothing.
        plan.warnings.push(email_taken(roster, employee, holder));
        email = None;
    }
    if employee.inactive {
        // A leaver's account keeps the address HR gave last (SPEC §4).
        if let Some(account) = auto {
            plan_auto(plan, input, account, email, &[], ABSENT);
        }
        // A manual account is never changed by a roster; its holder leaving is told.
        if account.is_some_and(|a| a.head.origin == Origin::Manual && a.head.is_active()) {
            plan.warnings.push(manual_of_leaver(employee));
        }
        return;
    }
    // No two active accounts share an email (SPEC §3). An auto account the rules keep or
    // make active is not, when the email it would have is another employee's roster email
    // (one it keeps because its row's is taken), or, for an inactive one, is held by another
    // employee's active manual account (given it while it was inactive): it stays or
    // becomes inactive.
    if let Some(a) = auto.filter(|_| !matching.is_empty()) {
        let kept = email.unwrap_or(a.head.email);
        let manual_holder = || match a.head.is_active() {
            true => None,
            false => taken_by_other(holders.manual, kept, employee.id()),
        };
        let holder = manual_holder().or_else(|| {
            (email.is_none())
                .then(|| holders.row_of_other(kept, employee.id()))
                .flatten()
        });
        if let Some(holder) = holder {
            plan.warnings
                .push(not_active(roster, employee, kept, holder));
            if a.head.is_active() {
                plan_auto(plan, input, a, None, &[], EMAIL_TAKEN);
            }
            return;
        }
        // The address an admin signs in with moves: told, as a deactivation would be.
        if let Some(new) = email.filter(|new| a.head.is_active() && email_moved(new, a.head.email))
        {
            plan.warnings
                .push(sign_in_moved(roster, employee, a.head.email, new));
        }
    }
    // A manual account keeps its own email (a roster never changes it): only an account
    // the rules make or keep is given to nobody.
    let ruled = account.is_none_or(|a| a.head.origin == Origin::Auto);
    if ruled
        && !matching.is_empty()
        && email.is_some_and(|e| {
            (!e.is_ascii() || e.ends_with('.')) && !crate::core::columns::is_plain_identity(e)
        })
    {
        plan.warnings.push(not_one_address(roster, employee));
    }
    plan_employee(plan, input, employee.id(), email, account, matching);
}

fn plan_employee(
    plan: &mut Plan,
    input: &SyncInput<'_>,
    employee_id: &str,
    roster_email: Option<&str>,
    account: Option<Stored<'_>>,
    matching: &[RuleId],
) {
    let first = matching.first().and_then(|id| input.rules.get(id));
    match account {
        Some(account) if account.head.origin == Origin::Manual => {
            if let Some(rule) = first {
                let change = Change {
                    rule_id: Some(rule.id),
                    rule: Some(plan.names.of(&rule.name)),
                    ..Change::of_existing(
                        account.head,
                        account.head,
                        Action::SkippedManual,
                        &mut plan.names,
                    )
                };
                plan.push(change);
            }
        }
        None => {
            let (Some(rule), Some(email)) = (first, roster_email) else {
                return;
            };
            // The account itself is made from this change when it is written
            // ([`crate::core::updates`]).
            let change = Change {
                employee_id: employee_id.into(),
                email: email.into(),
                action: Action::Created,
                rule_id: Some(rule.id),
                rule: Some(plan.names.of(&rule.name)),
                role: plan.names.of(&rule.role),
                previous_role: None,
                previous_status: None,
            };
            plan.push(change);
        }
        Some(account) => plan_auto(plan, input, account, roster_email, matching, NO_RULE),
    }
}

/// Plans an auto account; `gone` is why, if it is deactivated.
fn plan_auto(
    plan: &mut Plan,
    input: &SyncInput<'_>,
    stored: Stored<'_>,
    roster_email: Option<&str>,
    matching: &[RuleId],
    gone: &str,
) {
    let account = stored.head;
    // The common case of a re-sync: the account keeps its rule, role and status. Decided
    // on its head, without reading the account (and its history) whole.
    let keeps_rule = account.rule_id.is_some_and(|id| matching.contains(&id));
    let unchanged = match account.rule_id.and_then(|id| input.rules.get(&id)) {
        Some(rule) if keeps_rule => account.is_active() && account.role == rule.role,
        _ => matching.is_empty() && !account.is_active(),
    };
    if unchanged && roster_email.is_none_or(|email| email == account.email) {
        if account.is_active() {
            plan.counts.unchanged += 1;
        }
        return;
    }
    let mut next = stored.whole();
    let mut moved = None;
    if let Some(email) = roster_email {
        if email_moved(email, &next.email) {
            moved = Some(format!("email changed from {} to {email}", next.email));
        }
        next.email = email.to_string();
    }
    let current = account.rule_id.filter(|id| matching.contains(id));
    let target = current.or_else(|| matching.first().copied());
    let action = match target.and_then(|id| input.rules.get(&id)) {
        Some(rule) => {
            next.status = Status::Active;
            next.role = rule.role.clone();
            next.rule_id = Some(rule.id);
            let was_inactive = !account.is_active();
            let role_changed = account.role != rule.role;
            let action = if current.is_none() {
                Some(Action::Reassigned)
            } else if was_inactive {
                Some(Action::Reactivated)
            } else if role_changed {
                Some(Action::RoleChanged)
            } else {
                None
            };
            if let Some(action) = action {
                let reason = reasons::moved(input, action, rule, account.rule_id);
                next.record(input.now, input.source, reason);
            }
            action
        }
        None if account.is_active() => {
            next.status = Status::Inactive;
            let gone = reasons::gone(input, gone, account.rule_id);
            next.record(input.now, input.source, gone);
            Some(Action::Deactivated)
        }
        None => None,
    };
    // The account's sign-in address, in its history (`updated_at` with it).
    if let Some(moved) = moved {
        next.record(input.now, input.source, moved);
    }
    match action {
        Some(action) => {
            let rule = next
                .rule_id
                .and_then(|id| input.rules.get(&id))
                .map(|r| plan.names.of(&r.name));
            let change = Change::of_existing(account, &next.head(), action, &mut plan.names);
            plan.push(Change { rule, ..change });
        }
        None if next.is_active() => plan.counts.unchanged += 1,
        None => {}
    }
    // An action records history; otherwise only the email may have moved.
    if action.is_some() || next.head() != *account {
        plan.updates.push(Packed::of(&next));
    }
}

impl Change {
    /// A change from `before` to `after`, without rule name.
    fn of_existing(
        before: &AccountHead<'_>,
        after: &AccountHead<'_>,
        action: Action,
        names: &mut Names,
    ) -> Change {
        Change {
            previous_role: Some(names.of(before.role)),
            previous_status: Some(before.status),
            ..Change::of(after, action, names)
        }
    }

    /// The account's status after the sync.
    pub fn status(&self) -> Status {
        match self.action {
            Action::Deactivated => Status::Inactive,
            Action::SkippedManual => self.previous_status.unwrap_or(Status::Active),
            _ => Status::Active,
        }
    }

    /// A change describing `account` as it is after the sync, without rule name or previous values.
    fn of(account: &AccountHead<'_>, action: Action, names: &mut Names) -> Change {
        Change {
            employee_id: account.employee_id.into(),
            email: account.email.into(),
            action,
            rule_id: account.rule_id,
            rule: None,
            role: names.of(account.role),
            previous_role: None,
            previous_status: None,
        }
    }
}

impl Plan {
    fn push(&mut self, change: Change) {
        self.counts.add(change.action);
        self.changes.push(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Employee, Roster};
    use crate::core::updates::Updates;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const NOW: &str = "2026-01-02T00:00:00Z";

    fn rule(id: u64, role: &str) -> Rule {
        Rule {
            id: RuleId(id),
            name: format!("r{id}"),
            role: role.to_string(),
            conditions: Vec::new(),
            enabled: true,
            created_at: NOW.into(),
            created_by: "t".into(),
        }
    }

    fn employee(id: &str, inactive: bool) -> Employee {
        let email = format!("{}@acme.example", id.to_lowercase());
        Employee::new(2, id, &email, "", inactive)
    }

    fn account(id: &str, origin: Origin, rule: Option<u64>, role: &str, status: Status) -> Account {
        Account {
            employee_id: id.into(),
            email: format!("{}@acme.example", id.to_lowercase()),
            role: role.into(),
            status,
            origin,
            rule_id: rule.map(RuleId),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            history: Vec::new(),
        }
    }

    struct World {
        roster: Roster,
        matching: Vec<Vec<RuleId>>,
        rules: BTreeMap<RuleId, Rule>,
        accounts: HashMap<String, Account>,
        left_out: Vec<RuleId>,
    }

    impl World {
        fn new(rules: &[(u64, &str)]) -> World {
            World {
                roster: Roster::default(),
                matching: Vec::new(),
                rules: rules
                    .iter()
                    .map(|(id, role)| (RuleId(*id), rule(*id, role)))
                    .collect(),
                accounts: HashMap::new(),
                left_out: Vec::new(),
            }
        }
        fn row(mut self, id: &str, inactive: bool, matching: &[u64]) -> World {
            self.roster.employees.push(employee(id, inactive));
            self.matching
                .push(matching.iter().copied().map(RuleId).collect());
            self.roster.rows += 1;
            self
        }
        fn acct(mut self, a: Account) -> World {
            self.accounts.insert(a.employee_id.clone(), a);
            self
        }
        fn plan(&self) -> Unpacked {
            let accounts: Vec<Account> = self.accounts.values().cloned().collect();
            if self.left_out.is_empty() {
                return Unpacked::of(plan_held(
                    &self.roster,
                    &MatchTable::from_lists(&self.matching),
                    &self.rules,
                    &accounts,
                    NOW,
                    "test.csv",
                ));
            }
            let groups = HeldGroup::split(&accounts);
            let read = |g: usize, f: &mut dyn FnMut(&dyn AccountGroup)| {
                f(&groups[g]);
                Ok::<(), std::convert::Infallible>(())
            };
            let input = SyncInput {
                matching: &MatchTable::from_lists(&self.matching),
                rules: &self.rules,
                now: NOW,
                source: "test.csv",
                left_out: &self.left_out,
            };
            Unpacked::of(plan(&self.roster, &input, &read).unwrap_or_else(|e| match e {}))
        }
    }

    /// A plan with its updates unpacked, for tests to read.
    struct Unpacked {
        plan: Plan,
        updates: Vec<Account>,
    }

    impl Unpacked {
        /// The accounts written, new ones made from their changes, sorted by ID (the plan
        /// gives them in no particular order).
        fn of(plan: Plan) -> Unpacked {
            let written = Updates::of_sync(plan.updates.clone(), &plan.changes, NOW, "test.csv");
            let mut updates: Vec<Account> = written.accounts().collect();
            updates.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
            Unpacked { plan, updates }
        }
    }

    impl std::ops::Deref for Unpacked {
        type Target = Plan;
        fn deref(&self) -> &Plan {
            &self.plan
        }
    }

    fn only(plan: &Plan) -> &Change {
        assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
        &plan.changes[0]
    }

    #[test]
    fn manual_account_is_untouched_and_reported_skipped_when_a_rule_matches() {
        let w = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(account(
                "E1",
                Origin::Manual,
                None,
                "HR Admin",
                Status::Active,
            ));
        let p = w.plan();
        let c = only(&p);
        assert_eq!(c.action, Action::SkippedManual);
        assert_eq!(&*c.role, "HR Admin");
        assert_eq!(c.rule_id, Some(RuleId(1)));
        assert!(p.updates.is_empty());
        assert_eq!(p.counts.skipped_manual, 1);
    }

    #[test]
    fn manual_account_without_matching_rule_is_not_reported_and_never_deactivated() {
        let w = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[])
            .acct(account(
                "E1",
                Origin::Manual,
                None,
                "HR Admin",
                Status::Active,
            ))
            .acct(account(
                "E9",
                Origin::Manual,
                None,
                "HR Admin",
                Status::Active,
            ));
        let p = w.plan();
        assert!(p.changes.is_empty());
        assert!(p.updates.is_empty());
    }

    #[test]
    fn no_account_and_no_match_gives_nothing() {
        let p = World::new(&[(1, "IT Admin")]).row("E1", false, &[]).plan();
        assert!(p.changes.is_empty() && p.updates.is_empty());
    }

    #[test]
    fn no_account_and_a_match_creates_an_active_auto_account_with_the_first_rule() {
        let p = World::new(&[(1, "IT Admin"), (2, "Super Admin")])
            .row("E1", false, &[1, 2])
            .plan();
        let c = only(&p);
        assert_eq!(
            (c.action, c.rule_id, &*c.role),
            (Action::Created, Some(RuleId(1)), "IT Admin")
        );
        assert_eq!(c.rule.as_deref(), Some("r1"));
        let a = &p.updates[0];
        assert_eq!(
            (a.origin, a.status, a.rule_id),
            (Origin::Auto, Status::Active, Some(RuleId(1)))
        );
        assert_eq!(a.history.len(), 1);
        assert_eq!(p.counts.created, 1);
    }

    /// More rows than several chunks, in no ID order, some with accounts: the changes of
    /// the two halves are handed over chunk by chunk and come out once each, sorted by ID,
    /// each the change of its own employee.
    #[test]
    fn changes_handed_over_in_chunks_come_out_once_each_sorted_by_id() {
        let n = 5 * CHUNK + 123;
        let mut w = World::new(&[(1, "IT Admin")]);
        for i in 0..n {
            // A fixed shuffle of the IDs; every 7th row matches no rule.
            let id = format!("E{:06}", (i * 7919) % n);
            let matching: &[u64] = if i % 7 == 0 { &[] } else { &[1] };
            w = w.row(&id, false, matching);
        }
        // Accounts for some: unchanged ones make no change, those matching nothing are
        // deactivated.
        let has_account = |i: usize| i % 1000 == 1;
        for i in (1..n).filter(|&i| has_account(i)) {
            let id = format!("E{:06}", (i * 7919) % n);
            w = w.acct(account(
                &id,
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ));
        }
        let p = w.plan();
        let ids: Vec<&str> = p.changes.iter().map(|c| &*c.employee_id).collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "sorted, once each"
        );
        let expected = (0..n).filter(|&i| i % 7 != 0 && !has_account(i)).count();
        assert_eq!(p.counts.created, expected);
        let deactivated = (0..n).filter(|&i| i % 7 == 0 && has_account(i)).count();
        assert!(deactivated > 0);
        assert_eq!(p.counts.deactivated, deactivated);
        assert_eq!(p.changes.len(), expected + deactivated);
        for c in &p.changes {
            assert_eq!(
                c.email,
                format!("{}@acme.example", c.employee_id.to_lowercase()).into_boxed_str()
            );
        }
        assert_eq!(p.updates.len(), p.changes.len());
    }

    #[test]
    fn sticky_rule_still_matching_keeps_the_account_unchanged_even_when_a_lower_rule_matches() {
        let p = World::new(&[(1, "Super Admin"), (2, "IT Admin")])
            .row("E1", false, &[1, 2])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(2),
                "IT Admin",
                Status::Active,
            ))
            .plan();
        assert!(p.changes.is_empty());
        assert!(p.updates.is_empty());
        assert_eq!(p.counts.unchanged, 1);
    }

    #[test]
    fn inactive_account_whose_rule_matches_again_is_reactivated() {
        let p = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Inactive,
            ))
            .plan();
        let c = only(&p);
        assert_eq!(c.action, Action::Reactivated);
        assert_eq!(c.previous_status, Some(Status::Inactive));
        assert_eq!(c.previous_role.as_deref(), Some("IT Admin"));
        assert_eq!(p.updates[0].status, Status::Active);
    }

    #[test]
    fn edited_role_of_the_controlling_rule_is_role_changed() {
        let p = World::new(&[(1, "Super Admin")])
            .row("E1", false, &[1])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ))
            .plan();
        let c = only(&p);
        assert_eq!(c.action, Action::RoleChanged);
        assert_eq!(c.previous_role.as_deref(), Some("IT Admin"));
        assert_eq!(&*c.role, "Super Admin");
        assert!(p.grants() == 1);
    }

    #[test]
    fn reactivated_takes_precedence_over_role_changed_and_previous_fields_show_both() {
        let p = World::new(&[(1, "Super Admin")])
            .row("E1", false, &[1])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Inactive,
            ))
            .plan();
        let c = only(&p);
        assert_eq!(c.action, Action::Reactivated);
        assert_eq!(c.previous_role.as_deref(), Some("IT Admin"));
        assert_eq!(c.previous_status, Some(Status::Inactive));
        assert_eq!(p.counts.reactivated, 1);
        assert_eq!(p.counts.role_changed, 0);
    }

    #[test]
    fn rule_no_longer_matching_but_another_does_reassigns_to_the_first_matching() {
        let p = World::new(&[(1, "IT Admin"), (2, "Billing Admin"), (3, "HR Admin")])
            .row("E1", false, &[2, 3])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Inactive,
            ))
            .plan();
        let c = only(&p);
        assert_eq!(c.action, Action::Reassigned);
        assert_eq!(c.rule_id, Some(RuleId(2)));
        assert_eq!(c.previous_role.as_deref(), Some("IT Admin"));
        assert_eq!(c.previous_status, Some(Status::Inactive));
        assert_eq!(p.counts.reassigned, 1);
        assert_eq!(p.counts.reactivated, 0);
    }

    #[test]
    fn deleted_or_disabled_rule_moves_accounts_to_the_next_matching_rule() {
        // Rule 1 is gone from `rules` and from `matching` (disabled rules never match).
        let p = World::new(&[(2, "HR Admin")])
            .row("E1", false, &[2])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ))
            .plan();
        assert_eq!(only(&p).action, Action::Reassigned);
        assert_eq!(p.updates[0].rule_id, Some(RuleId(2)));
        // The history says why rule 1 let it go: deleted, or disabled, not "no longer
        // matches", which sends an auditor to the employee's HR data.
        let reason = |p: &Unpacked| p.updates[0].history.last().unwrap().reason.clone();
        assert!(
            reason(&p).contains("(rule 1 was deleted)"),
            "{}",
            reason(&p)
        );
        let mut w = World::new(&[(1, "IT Admin"), (2, "HR Admin")])
            .row("E1", false, &[2])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ));
        w.rules.get_mut(&RuleId(1)).unwrap().enabled = false;
        let p = w.plan();
        assert!(
            reason(&p).contains("(rule 1 is disabled)"),
            "{}",
            reason(&p)
        );
        // Left out for its role (no longer configured): said so, moved or deactivated.
        w.rules.get_mut(&RuleId(1)).unwrap().enabled = true;
        w.left_out = vec![RuleId(1)];
        let p = w.plan();
        assert!(
            reason(&p).contains("(rule 1's role \"IT Admin\" is no longer in provisioning.roles)"),
            "{}",
            reason(&p)
        );
        w.matching = vec![vec![]];
        let p = w.plan();
        assert_eq!(
            reason(&p),
            "deactivated: rule 1's role \"IT Admin\" is no longer in provisioning.roles"
        );
        // Deactivated for a rule disabled or deleted: said so too.
        w.left_out.clear();
        w.rules.get_mut(&RuleId(1)).unwrap().enabled = false;
        assert_eq!(reason(&w.plan()), "deactivated: rule 1 is disabled");
        w.rules.remove(&RuleId(1));
        assert_eq!(reason(&w.plan()), "deactivated: rule 1 was deleted");
    }

    #[test]
    fn no_match_deactivates_keeping_the_rule() {
        let p = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ))
            .plan();
        let c = only(&p);
        assert_eq!(c.action, Action::Deactivated);
        assert_eq!(c.previous_status, Some(Status::Active));
        assert_eq!(p.updates[0].rule_id, Some(RuleId(1)));
        assert_eq!(p.updates[0].status, Status::Inactive);
    }

    #[test]
    fn absent_and_inactive_employees_are_deactivated_once() {
        let p = World::new(&[(1, "IT Admin")])
            .row("E2", true, &[1])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ))
            .acct(account(
                "E2",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ))
            .acct(account(
                "E3",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Inactive,
            ))
            .plan();
        let ids: Vec<(&str, Action)> = p
            .changes
            .iter()
            .map(|c| (&*c.employee_id, c.action))
            .collect();
        assert_eq!(
            ids,
            vec![("E1", Action::Deactivated), ("E2", Action::Deactivated)]
        );
        assert_eq!(p.counts.deactivated, 2);
        assert_eq!(
            p.counts.unchanged, 0,
            "an inactive account that stays inactive counts nowhere"
        );
    }

    #[test]
    fn inactive_employee_without_account_gets_nothing_even_when_a_rule_matches() {
        let p = World::new(&[(1, "IT Admin")]).row("E1", true, &[1]).plan();
        assert!(p.changes.is_empty() && p.updates.is_empty());
    }

    #[test]
    fn email_follows_the_roster_without_being_an_action() {
        let mut a = account("E1", Origin::Auto, Some(1), "IT Admin", Status::Active);
        a.email = "old@acme.example".into();
        let p = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(a)
            .plan();
        assert!(p.changes.is_empty(), "an email update is no action");
        assert_eq!(p.counts.unchanged, 1);
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].email, "e1@acme.example");
        // But the address the admin signs in with moved: in the account's history, and
        // warned about in the report.
        let history: Vec<&str> = p.updates[0]
            .history
            .iter()
            .map(|h| h.reason.as_str())
            .collect();
        assert_eq!(
            history,
            ["email changed from old@acme.example to e1@acme.example"]
        );
        assert_eq!(p.updates[0].updated_at, NOW);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0].message.contains(
                "\"E1\" now signs in as \"e1@acme.example\" instead of \"old@acme.example\""
            ),
            "{:?}",
            p.warnings
        );
        // A change of letter case alone is no move.
        let mut a = account("E1", Origin::Auto, Some(1), "IT Admin", Status::Active);
        a.email = "E1@ACME.example".into();
        let p = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(a)
            .plan();
        assert!(p.warnings.is_empty() && p.updates[0].history.is_empty());
    }

    /// A leaver (an inactive row) who holds an active manual account keeps it, as every
    /// manual account is kept, and the report says so.
    #[test]
    fn a_leavers_active_manual_account_is_kept_and_warned_about() {
        let manual = account("E1", Origin::Manual, None, "Super Admin", Status::Active);
        let p = World::new(&[(1, "IT Admin")])
            .row("E1", true, &[])
            .acct(manual)
            .plan();
        assert!(p.changes.is_empty() && p.updates.is_empty());
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0]
                .message
                .contains("\"E1\" is inactive but holds an active manual"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn an_inactive_employees_row_still_updates_the_accounts_email() {
        // Issue 10 point 1: a leaver's account keeps the address HR gave last.
        let mut active = account("E1", Origin::Auto, Some(1), "IT Admin", Status::Active);
        active.email = "old1@acme.example".into();
        let mut inactive = account("E2", Origin::Auto, Some(1), "IT Admin", Status::Inactive);
        inactive.email = "old2@acme.example".into();
        let p = World::new(&[(1, "IT Admin")])
            .row("E1", true, &[])
            .row("E2", true, &[])
            .acct(active)
            .acct(inactive)
            .plan();
        let c = only(&p);
        assert_eq!((&*c.employee_id, c.action), ("E1", Action::Deactivated));
        assert_eq!(&*c.email, "e1@acme.example");
        let emails: Vec<(&str, &str, Status)> = p
            .updates
            .iter()
            .map(|a| (a.employee_id.as_str(), a.email.as_str(), a.status))
            .collect();
        assert_eq!(
            emails,
            [
                ("E1", "e1@acme.example", Status::Inactive),
                ("E2", "e2@acme.example", Status::Inactive)
            ]
        );
        let reasons =
            |a: &Account| -> Vec<String> { a.history.iter().map(|h| h.reason.clone()).collect() };
        assert_eq!(
            reasons(&p.updates[1]),
            ["email changed from old2@acme.example to e2@acme.example"],
            "an email update alone is no action, but in the history"
        );
        assert!(
            p.warnings.is_empty(),
            "leavers sign in nowhere: {:?}",
            p.warnings
        );
    }

    #[test]
    fn previous_role_and_status_are_set_whenever_there_was_an_account() {
        // Issue 10 point 2: role_changed of an active account had previous_status null.
        let p = World::new(&[(1, "Super Admin")])
            .row("E1", false, &[1])
            .acct(account(
                "E1",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ))
            .plan();
        let c = only(&p);
        assert_eq!(c.action, Action::RoleChanged);
        assert_eq!(c.previous_role.as_deref(), Some("IT Admin"));
        assert_eq!(c.previous_status, Some(Status::Active));
        let p = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(account(
                "E1",
                Origin::Manual,
                None,
                "HR Admin",
                Status::Inactive,
            ))
            .plan();
        let c = only(&p);
        assert_eq!(c.action, Action::SkippedManual);
        assert_eq!(c.previous_role.as_deref(), Some("HR Admin"));
        assert_eq!(c.previous_status, Some(Status::Inactive));
    }

    #[test]
    fn an_email_held_by_another_employees_manual_account_is_not_taken() {
        // Issue 10 point 8: HR data cannot lock a manual Super Admin out.
        let mut boss = account("M1", Origin::Manual, None, "Super Admin", Status::Active);
        boss.email = "E1@Acme.Example".into();
        let mut e2 = account("E2", Origin::Auto, Some(1), "IT Admin", Status::Active);
        e2.email = "old2@acme.example".into();
        let mut w = World::new(&[(1, "IT Admin"), (2, "HR Admin")])
            .row("E1", false, &[1])
            .row("E2", false, &[2])
            .acct(boss.clone())
            .acct(e2);
        // E2's roster email is the boss's too: no email change, but its rule change applies.
        w.roster.employees[1].set_email("e1@acme.example");
        w.roster.email_column = "Work Email".into();
        let p = w.plan();
        assert_eq!(p.changes.len(), 1, "E1 gets no account: {:?}", p.changes);
        assert_eq!(&*p.changes[0].employee_id, "E2");
        assert_eq!(p.changes[0].action, Action::Reassigned);
        assert_eq!(&*p.changes[0].email, "old2@acme.example");
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].email, "old2@acme.example");
        assert_eq!(p.warnings.len(), 2);
        for (warning, who) in p.warnings.iter().zip(["\"E1\"", "\"E2\""]) {
            assert_eq!(warning.column.as_deref(), Some("Work Email"));
            assert!(warning.message.contains(who) && warning.message.contains("\"M1\""));
        }
        // An inactive manual account holds no email.
        boss.status = Status::Inactive;
        let w = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(boss);
        let p = w.plan();
        assert_eq!(
            only(&p).action,
            Action::Created,
            "an inactive manual account holds nothing"
        );
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn an_inactive_account_is_not_made_active_again_with_an_email_a_manual_account_holds() {
        // E1 left; while its auto account was inactive, E1's address went by hand to M1's
        // manual account. E1 is back on the roster with that address, matching a rule.
        let mut boss = account("M1", Origin::Manual, None, "Super Admin", Status::Active);
        boss.email = "E1@Acme.Example".into();
        let e1 = account("E1", Origin::Auto, Some(1), "IT Admin", Status::Inactive);
        let w = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(boss.clone())
            .acct(e1.clone());
        let p = w.plan();
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert!(p.updates.is_empty());
        // Warned twice, both naming E1 and M1: the roster's email is held (SPEC §3, whatever
        // it blocks), and so the account stays inactive.
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        for (warning, says) in p
            .warnings
            .iter()
            .zip(["no new account", "not left or made active"])
        {
            let message = &warning.message;
            assert!(
                message.contains("\"E1\"") && message.contains("\"M1\"") && message.contains(says),
                "{message}"
            );
        }
        // The address kept by the account is taken, the roster's own is free: made active
        // again with the roster's.
        let mut w = World::new(&[(1, "IT Admin")])
            .row("E1", false, &[1])
            .acct(boss)
            .acct(e1);
        w.roster.employees[0].set_email("e1.back@acme.example");
        let p = w.plan();
        assert_eq!(only(&p).action, Action::Reactivated);
        assert_eq!(p.updates[0].email, "e1.back@acme.example");
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn an_account_does_not_keep_an_email_the_roster_gives_another_employee() {
        // E1's row now has M1's (manual) address, so E1's account keeps h@; HR gave h@ to
        // E3. E1's account would share h@ with E3's: it is deactivated (or, inactive, stays
        // so), E3 gets h@.
        let mut boss = account("M1", Origin::Manual, None, "Super Admin", Status::Active);
        boss.email = "m1@acme.example".into();
        for status in [Status::Active, Status::Inactive] {
            let mut e1 = account("E1", Origin::Auto, Some(1), "IT Admin", status);
            e1.email = "h@acme.example".into();
            let mut w = World::new(&[(1, "IT Admin")])
                .row("E1", false, &[1])
                .row("E3", false, &[1])
                .acct(boss.clone())
                .acct(e1);
            w.roster.employees[0].set_email("M1@acme.example");
            w.roster.employees[1].set_email("h@acme.example");
            let p = w.plan();
            let by_id = |id: &str| p.changes.iter().find(|c| &*c.employee_id == id);
            let created = by_id("E3").expect("E3 is created");
            assert_eq!(
                (created.action, &*created.email),
                (Action::Created, "h@acme.example")
            );
            match status {
                Status::Active => {
                    let gone = by_id("E1").expect("E1 is deactivated");
                    assert_eq!(gone.action, Action::Deactivated);
                    let e1 = p.updates.iter().find(|a| a.employee_id == "E1").unwrap();
                    assert_eq!(e1.status, Status::Inactive);
                    assert_eq!(e1.email, "h@acme.example");
                    assert_eq!(e1.history.last().unwrap().reason, EMAIL_TAKEN);
                }
                Status::Inactive => assert!(by_id("E1").is_none(), "{:?}", p.changes),
            }
            let about = |who: &str| p.warnings.iter().any(|w| w.message.contains(who));
            assert!(about("\"E3\"") && about("\"M1\""), "{:?}", p.warnings);
        }
    }

    #[test]
    fn an_account_does_not_keep_an_email_the_roster_gives_someone_who_gets_no_account() {
        // As above, but E3 gets no account with h@: no rule matches E3, or E3 has a manual
        // account (which keeps its own email). h@ is E3's sign-in all the same (SPEC §3:
        // the email is the SSO identity): E1's account, left active with it, had given E3
        // E1's role. It is deactivated; a leaver's row with h@ takes nobody's place.
        let mut boss = account("M1", Origin::Manual, None, "Super Admin", Status::Active);
        boss.email = "m1@acme.example".into();
        let mut own = account("E3", Origin::Manual, None, "HR Admin", Status::Active);
        own.email = "e3.own@acme.example".into();
        for (e3_manual, e3_left) in [(false, false), (true, false), (false, true)] {
            let mut e1 = account("E1", Origin::Auto, Some(1), "IT Admin", Status::Active);
            e1.email = "h@acme.example".into();
            let mut w = World::new(&[(1, "IT Admin")])
                .row("E1", false, &[1])
                .row("E3", e3_left, if e3_manual { &[1] } else { &[] })
                .acct(boss.clone())
                .acct(e1);
            if e3_manual {
                w = w.acct(own.clone());
            }
            w.roster.employees[0].set_email("M1@acme.example");
            w.roster.employees[1].set_email("h@acme.example");
            let p = w.plan();
            let by_id = |id: &str| p.changes.iter().find(|c| &*c.employee_id == id);
            match e3_manual {
                true => assert_eq!(by_id("E3").unwrap().action, Action::SkippedManual),
                false => assert!(by_id("E3").is_none(), "{:?}", p.changes),
            }
            let about = |who: &str| p.warnings.iter().any(|w| w.message.contains(who));
            if e3_left {
                assert!(by_id("E1").is_none(), "E1 stays active: {:?}", p.changes);
                assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
                assert!(about("\"M1\""), "{:?}", p.warnings);
                continue;
            }
            let gone = by_id("E1").expect("E1 is deactivated");
            assert_eq!(gone.action, Action::Deactivated);
            let e1 = p.updates.iter().find(|a| a.employee_id == "E1").unwrap();
            assert_eq!(e1.history.last().unwrap().reason, EMAIL_TAKEN);
            assert!(about("\"E3\"") && about("\"M1\""), "{:?}", p.warnings);
        }
    }

    #[test]
    fn manual_accounts_that_hold_no_one_elses_email_change_nothing() {
        // The first pass plans as if no email were held; with manual accounts that hold only
        // their own employee's email (or none on the roster), it is not planned again and
        // gives what it gives without them.
        let mut own = account("M1", Origin::Manual, None, "Super Admin", Status::Active);
        own.email = "M1@acme.example".into();
        let mut elsewhere = account("M9", Origin::Manual, None, "IT Admin", Status::Active);
        elsewhere.email = "nobody@acme.example".into();
        let mut e2 = account("E2", Origin::Auto, Some(1), "IT Admin", Status::Active);
        e2.email = "old2@acme.example".into();
        let world = |manual: &[&Account]| {
            let mut w = World::new(&[(1, "IT Admin")])
                .row("M1", false, &[1])
                .row("E2", false, &[1])
                .row("E3", false, &[1])
                .acct(e2.clone());
            for &a in manual {
                w = w.acct(a.clone());
            }
            w.roster.employees[0].set_email("m1@acme.example");
            w
        };
        let with = world(&[&own, &elsewhere]).plan();
        let without = world(&[]).plan();
        let outcome = |p: &Unpacked| {
            let changes: Vec<_> = p
                .changes
                .iter()
                .filter(|c| &*c.employee_id != "M1")
                .map(|c| (c.employee_id.to_string(), c.action))
                .collect();
            let written: Vec<_> = p
                .updates
                .iter()
                .filter(|a| a.employee_id != "M1")
                .map(|a| (a.employee_id.clone(), a.email.clone()))
                .collect();
            (changes, written)
        };
        assert_eq!(outcome(&with), outcome(&without));
        assert_eq!(
            outcome(&with),
            (
                vec![("E3".to_string(), Action::Created)],
                vec![
                    ("E2".to_string(), "e2@acme.example".to_string()),
                    ("E3".to_string(), "e3@acme.example".to_string()),
                ]
            )
        );
        assert_eq!(with.warnings, without.warnings);
        assert_eq!(
            with.warnings.len(),
            1,
            "E2's sign-in moved: {:?}",
            with.warnings
        );
        assert!(with.warnings[0].message.contains("\"E2\" now signs in as"));
        assert_eq!(with.counts.skipped_manual, 1);
    }

    #[test]
    fn warnings_about_held_emails_are_capped_with_a_count_of_the_rest() {
        let mut boss = account("M1", Origin::Manual, None, "Super Admin", Status::Active);
        boss.email = "shared@acme.example".into();
        let n = crate::core::roster::MAX_WARNINGS + 5;
        let mut w = World::new(&[(1, "IT Admin")]).acct(boss);
        for i in 0..n {
            w = w.row(&format!("E{i}"), false, &[1]);
            w.roster.employees[i].set_email("shared@acme.example");
        }
        let p = w.plan();
        assert!(p.changes.is_empty());
        assert_eq!(p.warnings.len(), crate::core::roster::MAX_WARNINGS + 1);
        let last = &p.warnings.last().unwrap().message;
        assert!(
            last.starts_with("5 more warnings (not listed; the 1005 warnings' digest "),
            "{last}"
        );
        // One warning not listed changed, the count the same (another employee's email
        // held, after the first thousand): the digest says so (approval compares it).
        let mut w = World::new(&[(1, "IT Admin")]).acct({
            let mut boss = account("M1", Origin::Manual, None, "Super Admin", Status::Active);
            boss.email = "shared@acme.example".into();
            boss
        });
        for i in 0..n {
            // E999's warning is among the five not listed (they sort by their text).
            let id = if i == 999 {
                "E999z".to_string()
            } else {
                format!("E{i}")
            };
            w = w.row(&id, false, &[1]);
            w.roster.employees[i].set_email("shared@acme.example");
        }
        let other = w.plan();
        let max = crate::core::roster::MAX_WARNINGS;
        assert!(
            other.warnings[..max] == p.warnings[..max],
            "the same thousand listed"
        );
        let (a, b) = (
            &p.warnings.last().unwrap().message,
            &other.warnings.last().unwrap().message,
        );
        assert!(
            a != b && b.starts_with("5 more warnings (not listed; the 1005 warnings' digest "),
            "{a} / {b}"
        );
    }

    #[test]
    fn safety_limits_need_both_the_count_and_the_percentage() {
        let limits = Limits::default();
        let mut p = Plan {
            base: 100,
            ..Plan::default()
        };
        p.counts.deactivated = 11;
        assert!(
            p.safety_violations(&limits).is_empty(),
            "11 of 100 is only 11%"
        );
        p.counts.deactivated = 21;
        assert_eq!(p.safety_violations(&limits).len(), 1);
        p.base = 10;
        p.counts.deactivated = 10;
        assert!(
            p.safety_violations(&limits).is_empty(),
            "10 is not more than 10"
        );
        p.counts.deactivated = 0;
        p.base = 0;
        p.counts.created = 51;
        let v = p.safety_violations(&limits);
        assert_eq!(v.len(), 1, "a first import of 51 grants is held");
        assert!(v[0].contains("max_grants"), "{v:?}");
        p.counts.created = 50;
        assert!(p.safety_violations(&limits).is_empty());
    }

    #[test]
    fn grants_count_created_reassigned_reactivated_and_role_changed() {
        let p = World::new(&[(1, "IT Admin"), (2, "HR Admin")])
            .row("A", false, &[1])
            .row("B", false, &[2])
            .row("C", false, &[1])
            .row("D", false, &[2])
            .acct(account(
                "B",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Active,
            ))
            .acct(account(
                "C",
                Origin::Auto,
                Some(1),
                "IT Admin",
                Status::Inactive,
            ))
            .acct(account(
                "D",
                Origin::Auto,
                Some(2),
                "IT Admin",
                Status::Active,
            ))
            .plan();
        assert_eq!(p.grants(), 4);
        assert_eq!(p.base, 2);
        let actions: Vec<Action> = p.changes.iter().map(|c| c.action).collect();
        assert_eq!(
            actions,
            vec![
                Action::Created,
                Action::Reassigned,
                Action::Reactivated,
                Action::RoleChanged
            ]
        );
    }

    // ---- properties ----

    #[derive(Debug, Clone)]
    struct Case {
        rules: Vec<(u64, String, bool)>,
        rows: Vec<(String, bool, Vec<u64>)>,
        accounts: Vec<Account>,
    }

    fn case() -> impl Strategy<Value = Case> {
        let roles = prop::sample::select(vec!["IT Admin", "HR Admin", "Super Admin"]);
        let rules = prop::collection::vec((roles.clone(), any::<bool>()), 1..5);
        rules.prop_flat_map(move |rules| {
            let n = rules.len() as u64;
            let rules: Vec<(u64, String, bool)> = rules
                .into_iter()
                .enumerate()
                .map(|(i, (role, enabled))| (i as u64 + 1, role.to_string(), enabled))
                .collect();
            let row = (
                any::<bool>(),
                prop::collection::btree_set(1..=n, 0..=n as usize),
            );
            let rows = prop::collection::btree_map(0u8..20, row, 0..15);
            // The stored email: the roster's, an old one (the roster changes it today, for
            // leavers too), or another employee's (a manual account may hold it).
            let email = (0u8..3, 0u8..20);
            let acct = (
                any::<bool>(),
                prop::option::of(1..=n + 1),
                prop::sample::select(vec!["IT Admin", "HR Admin", "Super Admin"]),
                any::<bool>(),
                email,
            );
            let accts = prop::collection::btree_map(0u8..25, acct, 0..12);
            (Just(rules), rows, accts).prop_map(|(rules, rows, accts)| {
                let rows = rows
                    .into_iter()
                    .map(|(id, (inactive, m))| {
                        (format!("E{id}"), inactive, m.into_iter().collect())
                    })
                    .collect();
                let accounts = accts
                    .into_iter()
                    .map(|(id, (manual, rule, role, active, (kind, other)))| {
                        let origin = if manual { Origin::Manual } else { Origin::Auto };
                        let status = if active {
                            Status::Active
                        } else {
                            Status::Inactive
                        };
                        let mut a = account(
                            &format!("E{id}"),
                            origin,
                            if manual { None } else { rule },
                            role,
                            status,
                        );
                        match kind {
                            1 => a.email = format!("old.e{id}@acme.example"),
                            2 if manual => a.email = format!("E{other}@ACME.example"),
                            _ => {}
                        }
                        a
                    })
                    .collect();
                Case {
                    rules,
                    rows,
                    accounts,
                }
            })
        })
    }

    impl Case {
        fn world(&self, reverse: bool) -> World {
            let mut w = World::new(&[]);
            w.rules = self
                .rules
                .iter()
                .filter(|(_, _, enabled)| *enabled)
                .map(|(id, role, _)| (RuleId(*id), rule(*id, role)))
                .collect();
            let mut rows = self.rows.clone();
            if reverse {
                rows.reverse();
            }
            for (id, inactive, m) in rows {
                // Disabled rules never match: callers compile enabled rules only.
                let m: Vec<u64> = m
                    .into_iter()
                    .filter(|r| w.rules.contains_key(&RuleId(*r)))
                    .collect();
                w = w.row(&id, inactive, &m);
            }
            for a in &self.accounts {
                w = w.acct(a.clone());
            }
            w
        }
    }

    fn apply(w: &World, p: &Unpacked) -> HashMap<String, Account> {
        let mut after = w.accounts.clone();
        for a in &p.updates {
            after.insert(a.employee_id.clone(), a.clone());
        }
        after
    }

    proptest! {
        /// The cursor finds what a binary search finds, whatever order the IDs come in.
        #[test]
        fn the_cursor_finds_what_a_binary_search_finds(
            stored in proptest::collection::btree_set("[A-D][0-9]?", 0..12),
            asked in proptest::collection::vec("[A-D][0-9]?", 0..20),
        ) {
            let accounts: Vec<Account> = stored
                .iter()
                .map(|id| account(id, Origin::Auto, Some(1), "IT Admin", Status::Active))
                .collect();
            let heads: Vec<AccountHead<'_>> = accounts.iter().map(Account::head).collect();
            let mut cursor = Cursor::default();
            for id in &asked {
                let want = heads.binary_search_by(|h| h.employee_id.cmp(id.as_str()));
                prop_assert_eq!(cursor.find(&heads, id), want);
            }
        }

        /// Changes found group by group come out sorted by ID, each once, whatever the
        /// roster order and wherever the absent employees' changes are.
        #[test]
        fn changes_come_out_sorted_by_id(
            ids in proptest::collection::hash_set("[A-Z][0-9]{1,3}", 0..40),
            absent in proptest::collection::vec(any::<bool>(), 40),
            seed in any::<u64>(),
        ) {
            let ids: Vec<String> = ids.into_iter().collect();
            // The roster holds the IDs in the order the set gives; the changes arrive in
            // another order (a rotation and a reversal, by seed).
            let mut arrival: Vec<usize> = (0..ids.len()).collect();
            let n = arrival.len().max(1);
            arrival.rotate_left(seed as usize % n);
            if seed % 2 == 0 {
                arrival.reverse();
            }
            let mut changes: Vec<Change> = arrival
                .iter()
                .map(|&i| Change {
                    employee_id: ids[i].as_str().into(),
                    email: Box::default(),
                    action: Action::Created,
                    rule_id: None,
                    rule: None,
                    role: "".into(),
                    previous_role: None,
                    previous_status: None,
                })
                .collect();
            let rows: Vec<u32> = arrival
                .iter()
                .map(|&i| if absent[i] { u32::MAX } else { i as u32 })
                .collect();
            sort_changes(&mut changes, &rows, ids.len());
            let got: Vec<&str> = changes.iter().map(|c| &*c.employee_id).collect();
            let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
            want.sort();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn manual_accounts_never_change(c in case()) {
            let w = c.world(false);
            let after = apply(&w, &w.plan());
            for a in w.accounts.values().filter(|a| a.origin == Origin::Manual) {
                prop_assert_eq!(&after[&a.employee_id], a);
            }
        }

        #[test]
        fn active_auto_accounts_have_an_enabled_rule_that_matches_their_employee(c in case()) {
            let w = c.world(false);
            let after = apply(&w, &w.plan());
            let matching: HashMap<&str, &Vec<RuleId>> = w.roster.employees.iter().zip(&w.matching)
                .filter(|(e, _)| !e.inactive).map(|(e, m)| (e.id(), m)).collect();
            for a in after.values().filter(|a| a.origin == Origin::Auto && a.is_active()) {
                let rule = a.rule_id.expect("auto accounts have a rule");
                prop_assert!(w.rules.contains_key(&rule));
                prop_assert!(matching.get(a.employee_id.as_str()).is_some_and(|m| m.contains(&rule)));
                prop_assert_eq!(&a.role, &w.rules[&rule].role);
            }
        }

        #[test]
        fn an_active_auto_account_is_never_moved_off_a_rule_that_still_matches(c in case()) {
            let w = c.world(false);
            let after = apply(&w, &w.plan());
            for (e, m) in w.roster.employees.iter().zip(&w.matching) {
                if e.inactive { continue; }
                if let Some(before) = w.accounts.get(e.id())
                    && before.origin == Origin::Auto
                    && before.rule_id.is_some_and(|r| m.contains(&r))
                {
                    prop_assert_eq!(after[e.id()].rule_id, before.rule_id);
                }
            }
        }

        #[test]
        fn a_second_sync_changes_nothing(c in case()) {
            let mut w = c.world(false);
            let first = w.plan();
            w.accounts = apply(&w, &first);
            let second = w.plan();
            prop_assert!(second.changes.iter().all(|c| c.action == Action::SkippedManual), "{:?}", second.changes);
            prop_assert!(second.updates.is_empty());
        }

        #[test]
        fn the_outcome_does_not_depend_on_row_order(c in case()) {
            let a = c.world(false);
            let b = c.world(true);
            let (pa, pb) = (a.plan(), b.plan());
            prop_assert_eq!(&pa.changes, &pb.changes);
            prop_assert_eq!(&pa.counts, &pb.counts);
            prop_assert_eq!(&pa.updates, &pb.updates);
        }

        #[test]
        fn previous_role_and_status_are_the_accounts_before_and_null_only_when_created(c in case()) {
            let w = c.world(false);
            for change in w.plan().plan.changes {
                match w.accounts.get(&*change.employee_id) {
                    None => {
                        prop_assert_eq!(change.action, Action::Created);
                        prop_assert_eq!(change.previous_role, None);
                        prop_assert_eq!(change.previous_status, None);
                    }
                    Some(before) => {
                        prop_assert_eq!(change.previous_role.as_deref(), Some(before.role.as_str()));
                        prop_assert_eq!(change.previous_status, Some(before.status));
                    }
                }
            }
        }

        #[test]
        fn email_follows_every_row_unless_another_employees_manual_account_holds_it(c in case()) {
            let w = c.world(false);
            let p = w.plan();
            let after = apply(&w, &p);
            for e in &w.roster.employees {
                let holders: Vec<String> = w.accounts.values().filter(|a| {
                    a.origin == Origin::Manual
                        && a.is_active()
                        && *a.employee_id != *e.id()
                        && a.email.to_lowercase() == e.email().to_lowercase()
                }).map(|h| format!("\"{}\"", h.employee_id)).collect();
                let holder = holders.first();
                let (before, now) = (w.accounts.get(e.id()), after.get(e.id()));
                match (holder, before) {
                    (_, Some(b)) if b.origin == Origin::Manual => prop_assert_eq!(now, Some(b)),
                    (None, _) => prop_assert!(now.is_none_or(|a| *a.email == *e.email()), "{:?}", now),
                    (Some(_), _) => {
                        prop_assert_eq!(now.map(|a| &a.email), before.map(|a| &a.email));
                        // Warned whatever it blocks (SPEC §3: "the report warns, naming both").
                        let who = format!("\"{}\"", e.id());
                        let warned = p.warnings.iter().any(|f| {
                            f.message.contains(&who) && holders.iter().any(|h| f.message.contains(h))
                        });
                        prop_assert!(warned, "{:?}", p.warnings);
                    }
                }
            }
        }

        #[test]
        fn each_changed_employee_appears_once_and_counts_add_up(c in case()) {
            let w = c.world(false);
            let p = w.plan();
            let mut ids: Vec<&str> = p.changes.iter().map(|c| &*c.employee_id).collect();
            ids.dedup();
            prop_assert_eq!(ids.len(), p.changes.len());
            let total: usize = Action::ALL.iter().map(|a| p.counts.get(*a)).sum();
            prop_assert_eq!(total, p.changes.len());
        }
    }
}
