//! A roster that differs little from the last applied one, re-synced from what changed
//! (issue 14): the rows whose records are byte for byte the last roster's, and whose
//! manager status did not move, get what they got then, so only the others are read and
//! planned.
//!
//! Why that gives the full reading's answer: applying a roster leaves the accounts where
//! planning the same roster again changes nothing (SPEC §4's table has a fixed point), so
//! while the accounts and rules are as that roster left them ([`LastRows`] is kept with
//! the store's accounts token), a row plans the same as long as its fields and its
//! `is_manager` do. What a row's outcome depends on beyond those is checked here, and
//! anything this reading cannot vouch for sends the file to the full reading instead
//! ([`ReadInFull`]):
//!
//! - A changed row is any record not found byte for byte among the last roster's (its
//!   digest finds the candidate; the bytes decide). The changed rows, and the unchanged
//!   rows whose ID, manager ID or email one of them names, are read as a file of their own,
//!   with every check a file gets; any error or warning reads the file in full.
//! - `is_manager` is counted again over the whole file, from each row's manager's row.
//!   Unchanged rows keep their manager's row (by ID, which may now be a changed row).
//! - The manager graph's warnings (a manager not in the file, one's own manager, a cycle)
//!   can only come from a changed row or a row that left; the last roster had none (it is
//!   kept only then).
//! - Manual accounts are listed in `skipped_manual` at every sync: their rows are planned.
//! - An email a changed row shares with an unchanged row, or an ID, reads the file in full.

use crate::core::columns::fold;
use crate::core::model::{Employee, Roster};
use crate::core::org::NO_MANAGER;
use crate::core::parallel::{ROWS_WORTH_A_THREAD, join_if};
use crate::core::reconcile::Counts;
use crate::core::roster::{self, RosterOptions};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::hash::Hasher;

/// What the last applied roster leaves for the next one to be compared with, a row at a
/// time in file order. Kept only for a roster applied with no warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastRows {
    /// The file's bytes before its first record (a byte-order mark included).
    pub header: Vec<u8>,
    /// Where each record starts in the file.
    pub starts: Vec<u32>,
    /// The file's length: where the last record ends.
    pub end: u32,
    /// A digest of each record's bytes ([`digest`]), its line end included.
    pub digests: Vec<u64>,
    /// A digest of each employee ID.
    pub ids: Vec<u64>,
    /// A digest of the folded email of each employee who has not left (0 for one who has).
    pub emails: Vec<u64>,
    /// Each row's manager's row ([`NO_MANAGER`]: none).
    pub managers: Vec<u32>,
    /// Whether each employee has left (`roster.inactive_statuses`).
    pub inactive: Vec<bool>,
    /// The employee IDs of the manual accounts (any status), which every sync reports.
    pub manual: Vec<String>,
    /// Active auto accounts once the roster was applied (the next safety base).
    pub base: u64,
}

/// The digest of a record's or a key's bytes: only ever used to find a candidate, which
/// the bytes (or a key read again) then confirm.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

/// The digest of each record of `bytes` (starting at `starts`, the last ending at the end
/// of `bytes`), on two cores for many.
pub fn digests(bytes: &[u8], starts: &[u32]) -> Vec<u64> {
    let span = |i: usize| {
        let end = starts.get(i + 1).map_or(bytes.len(), |&s| s as usize);
        &bytes[starts[i] as usize..end]
    };
    let half = starts.len() / 2;
    let (first, second) = join_if(
        starts.len() >= ROWS_WORTH_A_THREAD,
        || (0..half).map(|i| digest(span(i))).collect::<Vec<_>>(),
        || (half..starts.len()).map(|i| digest(span(i))).collect::<Vec<_>>(),
    );
    let mut all = first;
    all.extend(second);
    all
}

impl LastRows {
    /// What `roster`, read from a file of `end` bytes that start with `header` and applied
    /// with no warning, leaves (`digests`: its records', [`digests`]); `None` when it was
    /// not read from the file's own bytes (transcoded).
    pub fn of(
        roster: &Roster,
        header: Vec<u8>,
        end: u32,
        digests: Vec<u64>,
        manual: Vec<String>,
    ) -> Option<LastRows> {
        let offset = u32::try_from(roster.text_offset?).ok()?;
        let n = roster.employees.len();
        if roster.starts.len() != n || roster.managers.len() != n || digests.len() != n || n == 0 {
            return None;
        }
        let starts: Vec<u32> = roster.starts.iter().map(|&s| s + offset).collect();
        let (ids, emails) = keys(&roster.employees);
        Some(LastRows {
            header,
            starts,
            end,
            digests,
            ids,
            emails,
            managers: roster.managers.clone(),
            inactive: roster.employees.iter().map(|e| e.inactive).collect(),
            manual,
            base: 0,
        })
    }

    /// How many rows.
    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    /// Row `row`'s record in `bytes`, the file these rows describe.
    fn span<'b>(&self, bytes: &'b [u8], row: usize) -> &'b [u8] {
        let end = self.starts.get(row + 1).copied().unwrap_or(self.end);
        &bytes[self.starts[row] as usize..end as usize]
    }
}

/// The active auto accounts once a sync with these counts is applied: every account that
/// is active and auto after it has one of these actions (SPEC §4; an inactive account that
/// stays so counts nowhere, a manual one is not auto).
pub fn base_after(counts: &Counts) -> u64 {
    (counts.unchanged + counts.created + counts.reassigned + counts.reactivated + counts.role_changed)
        as u64
}

/// The digests of the employees' IDs and of the folded emails of those who have not left.
fn keys(employees: &[Employee]) -> (Vec<u64>, Vec<u64>) {
    let id = |e: &Employee| digest(e.id().as_bytes());
    let email = |e: &Employee| match e.inactive {
        true => 0,
        false => digest(fold(e.email()).as_bytes()),
    };
    let half = employees.len() / 2;
    let (head, tail) = employees.split_at(half);
    let both = |part: &[Employee]| -> (Vec<u64>, Vec<u64>) {
        (part.iter().map(id).collect(), part.iter().map(email).collect())
    };
    let ((mut ids, mut emails), (more_ids, more_emails)) =
        join_if(half >= ROWS_WORTH_A_THREAD, || both(head), || both(tail));
    ids.extend(more_ids);
    emails.extend(more_emails);
    (ids, emails)
}

/// Why a file is read in full rather than from its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadInFull(pub String);

fn full<T>(why: impl Into<String>) -> Result<T, ReadInFull> {
    Err(ReadInFull(why.into()))
}

/// A new file, its records found ([`roster::record_starts`]) and digested ([`digests`]).
pub struct NewFile<'a> {
    /// The file's bytes.
    pub bytes: &'a [u8],
    /// Where each record starts.
    pub starts: Vec<u32>,
    /// Each record's digest.
    pub digests: Vec<u64>,
}

/// What a file changed, ready to be planned.
#[derive(Debug)]
pub struct Changes {
    /// The rows to plan, in file order, each with its `is_manager` in the whole file.
    pub roster: Roster,
    /// Data rows in the file.
    pub rows: usize,
    /// Employee IDs of the last roster's changed rows (those still in the file are planned
    /// with their new rows; the others left).
    pub removed: Vec<String>,
    /// What the file leaves for the next one, once applied (its `base` still to be set).
    pub next: LastRows,
}

impl Changes {
    /// The employee IDs whose accounts the plan must see: the planned rows', the removed
    /// rows', the manual accounts'.
    pub fn visible(&self) -> FxHashSet<String> {
        let planned = self.roster.employees.iter().map(|e| e.id().to_owned());
        let removed = self.removed.iter().cloned();
        let manual = self.next.manual.iter().cloned();
        planned.chain(removed).chain(manual).collect()
    }
}

/// The changes of `new` against `last` (read from the file `old`), reading at most `most`
/// changed records; otherwise why the file is read in full.
pub fn changes(
    last: &LastRows,
    old: &[u8],
    new: NewFile<'_>,
    opts: &RosterOptions,
    most: usize,
) -> Result<Changes, ReadInFull> {
    let n = new.starts.len();
    let end = u32::try_from(new.bytes.len()).or_else(|_| full("the file is over 4 GiB"))?;
    if n == 0 || n as u64 > opts.max_rows {
        return full("no data rows, or more than roster.max_rows");
    }
    if new.bytes[..new.starts[0] as usize] != last.header[..] {
        return full("the header differs from the last roster's");
    }
    let matched = Matched::of(last, old, &new, end)?;
    let (added, removed) = (matched.added(), matched.removed());
    if added.len() + removed.len() > most {
        return full(format!(
            "{} records are new and {} gone, more than {most}",
            added.len(),
            removed.len()
        ));
    }
    let read = |text: &[u8], starts: &[u32], end: u32, rows: &[u32]| {
        match roster::parse_records(&last.header, text, starts, end, rows, opts) {
            Ok(checked) if !checked.has_warnings() && checked.is_plain() => Ok(checked),
            Ok(_) => full("the changed rows have warnings, or are not UTF-8"),
            Err(_) => full("the changed rows have errors"),
        }
    };
    let added_rows = read(new.bytes, &new.starts, end, &added)?;
    let removed_rows = read(old, &last.starts, last.end, &removed)?;
    let named = matched.named(last, added_rows.employees());
    let named_rows = read(new.bytes, &new.starts, end, &named)?;
    let keyed = Keyed::of(&added, added_rows.employees(), &named, named_rows.employees())?;
    let back: Vec<u32> = removed_rows
        .employees()
        .iter()
        .map(|e| keyed.row_of(e.id()).unwrap_or(NO_MANAGER))
        .collect();
    let graph = Graph::of(
        last,
        &matched,
        &removed,
        &back,
        &added,
        added_rows.employees(),
        &keyed,
    )?;
    let mut planned: Vec<u32> = added.iter().chain(&named).copied().collect();
    planned.extend(graph.flipped(last, &matched, &planned));
    planned.sort_unstable();
    planned.dedup();
    let roster = read(new.bytes, &new.starts, end, &planned)?
        .finish_given(|row| graph.reports[planned[row] as usize] > 0);
    let next = graph.next(last, &matched, &added, added_rows.employees(), new, end);
    Ok(Changes {
        roster,
        rows: n,
        removed: removed_rows
            .employees()
            .iter()
            .map(|e| e.id().to_owned())
            .collect(),
        next,
    })
}

/// The new file's records matched with the last roster's.
struct Matched {
    /// For each new row, the last roster's row it repeats ([`NO_MANAGER`]: none).
    old_of_new: Vec<u32>,
    /// For each of the last roster's rows, the new row that repeats it.
    new_of_old: Vec<u32>,
}

impl Matched {
    fn of(last: &LastRows, old: &[u8], new: &NewFile<'_>, end: u32) -> Result<Matched, ReadInFull> {
        const NONE: u32 = NO_MANAGER;
        let mut by_digest: FxHashMap<u64, u32> = FxHashMap::default();
        by_digest.reserve(last.rows());
        for (row, &d) in last.digests.iter().enumerate() {
            // Two of the last records with one digest: neither is found by it.
            by_digest
                .entry(d)
                .and_modify(|r| *r = NONE)
                .or_insert(row as u32);
        }
        let span = |i: usize| {
            let next = new.starts.get(i + 1).copied().unwrap_or(end);
            &new.bytes[new.starts[i] as usize..next as usize]
        };
        let mut old_of_new = vec![NONE; new.starts.len()];
        let mut new_of_old = vec![NONE; last.rows()];
        let mut next_old = 0usize;
        for (i, &d) in new.digests.iter().enumerate() {
            // Most records follow the one before them, as they did in the last roster.
            let candidate = match last.digests.get(next_old) {
                Some(&o) if o == d => next_old as u32,
                _ => by_digest.get(&d).copied().unwrap_or(NONE),
            };
            if candidate == NONE || last.span(old, candidate as usize) != span(i) {
                continue;
            }
            if new_of_old[candidate as usize] != NONE {
                return full("a record repeats");
            }
            new_of_old[candidate as usize] = i as u32;
            old_of_new[i] = candidate;
            next_old = candidate as usize + 1;
        }
        Ok(Matched {
            old_of_new,
            new_of_old,
        })
    }

    /// The new file's rows that are not the last roster's.
    fn added(&self) -> Vec<u32> {
        rows_where(&self.old_of_new, |o| o == NO_MANAGER)
    }

    /// The last roster's rows the new file does not repeat.
    fn removed(&self) -> Vec<u32> {
        rows_where(&self.new_of_old, |o| o == NO_MANAGER)
    }

    /// The unchanged rows (new rows) whose ID is a manual account's or what an added row
    /// names as its ID or manager, or whose email an added row has: read, so that a row
    /// named is known by its ID and a repeated key is found as the full reading finds it.
    /// A digest alone never decides: a row found by a digest that is not the key's is
    /// read too, and is then only planned for nothing.
    fn named(&self, last: &LastRows, added: &[Employee]) -> Vec<u32> {
        let mut ids: FxHashSet<u64> = last.manual.iter().map(|id| digest(id.as_bytes())).collect();
        let mut emails = FxHashSet::default();
        for e in added {
            ids.insert(digest(e.id().as_bytes()));
            if !e.manager_id().is_empty() {
                ids.insert(digest(e.manager_id().as_bytes()));
            }
            if !e.inactive {
                emails.insert(digest(fold(e.email()).as_bytes()));
            }
        }
        let mut rows: Vec<u32> = (0..last.rows())
            .filter(|&j| {
                self.new_of_old[j] != NO_MANAGER
                    && (ids.contains(&last.ids[j])
                        || (!last.inactive[j] && emails.contains(&last.emails[j])))
            })
            .map(|j| self.new_of_old[j])
            .collect();
        rows.sort_unstable();
        rows
    }
}

/// The rows of `of` whose value passes `keep`.
fn rows_where(of: &[u32], keep: impl Fn(u32) -> bool) -> Vec<u32> {
    (0..of.len() as u32).filter(|&i| keep(of[i as usize])).collect()
}

/// The new rows read, by employee ID.
struct Keyed<'e> {
    rows: FxHashMap<&'e str, u32>,
}

impl<'e> Keyed<'e> {
    /// The IDs of the added rows and of the unchanged rows read, refusing an ID or the email
    /// of an employee who has not left on two of them.
    fn of(
        added: &[u32],
        added_rows: &'e [Employee],
        named: &[u32],
        named_rows: &'e [Employee],
    ) -> Result<Keyed<'e>, ReadInFull> {
        let mut rows = FxHashMap::default();
        let mut emails = FxHashSet::default();
        for (&row, e) in added.iter().zip(added_rows).chain(named.iter().zip(named_rows)) {
            if rows.insert(e.id(), row).is_some() {
                return full(format!("employee ID {:?} is on two rows", e.id()));
            }
            if !e.inactive && !emails.insert(fold(e.email())) {
                return full("an email is on two rows");
            }
        }
        Ok(Keyed { rows })
    }

    fn row_of(&self, id: &str) -> Option<u32> {
        self.rows.get(id).copied()
    }
}

/// The new file's manager graph: each row's manager's row, and how many active employees
/// report to each row.
struct Graph {
    managers: Vec<u32>,
    inactive: Vec<bool>,
    reports: Vec<u32>,
}

impl Graph {
    /// Each unchanged row keeps its manager (the new row of its ID: `back` gives the new
    /// row of each removed row's ID); each added row's is found by ID. A manager not in
    /// the file, one's own manager, or a cycle (which only an added row can close) reads
    /// the file in full.
    fn of(
        last: &LastRows,
        matched: &Matched,
        removed: &[u32],
        back: &[u32],
        added: &[u32],
        added_rows: &[Employee],
        keyed: &Keyed<'_>,
    ) -> Result<Graph, ReadInFull> {
        let n = matched.old_of_new.len();
        let mut back_of_old = FxHashMap::default();
        for (&j, &b) in removed.iter().zip(back) {
            back_of_old.insert(j, b);
        }
        let mut managers = vec![NO_MANAGER; n];
        let mut inactive = vec![false; n];
        for (i, &j) in matched.old_of_new.iter().enumerate() {
            if j == NO_MANAGER {
                continue;
            }
            inactive[i] = last.inactive[j as usize];
            let k = last.managers[j as usize];
            if k == NO_MANAGER {
                continue;
            }
            managers[i] = match matched.new_of_old[k as usize] {
                NO_MANAGER => match back_of_old.get(&k) {
                    Some(&b) if b != NO_MANAGER => b,
                    _ => return full("a manager's row left the file"),
                },
                now => now,
            };
        }
        for (&i, e) in added.iter().zip(added_rows) {
            inactive[i as usize] = e.inactive;
            let m = e.manager_id();
            if m.is_empty() {
                continue;
            }
            if m == e.id() {
                return full("an employee is their own manager");
            }
            managers[i as usize] = keyed
                .row_of(m)
                .map_or_else(|| full("a manager is not in the file"), Ok)?;
        }
        no_cycle_through(&managers, added)?;
        let mut reports = vec![0u32; n];
        for (i, &m) in managers.iter().enumerate() {
            if m != NO_MANAGER && !inactive[i] {
                reports[m as usize] += 1;
            }
        }
        Ok(Graph {
            managers,
            inactive,
            reports,
        })
    }

    /// The unchanged rows (not in `planned`) whose `is_manager` the changes moved.
    fn flipped(&self, last: &LastRows, matched: &Matched, planned: &[u32]) -> Vec<u32> {
        let mut before = vec![false; last.rows()];
        for (j, &m) in last.managers.iter().enumerate() {
            if m != NO_MANAGER && !last.inactive[j] {
                before[m as usize] = true;
            }
        }
        let planned: FxHashSet<u32> = planned.iter().copied().collect();
        (0..matched.old_of_new.len() as u32)
            .filter(|&i| {
                let j = matched.old_of_new[i as usize];
                j != NO_MANAGER
                    && before[j as usize] != (self.reports[i as usize] > 0)
                    && !planned.contains(&i)
            })
            .collect()
    }

    /// What the new file leaves for the next one.
    fn next(
        self,
        last: &LastRows,
        matched: &Matched,
        added: &[u32],
        added_rows: &[Employee],
        new: NewFile<'_>,
        end: u32,
    ) -> LastRows {
        let (added_ids, added_emails) = keys(added_rows);
        let pick = |old: &[u64], fresh: &[u64]| -> Vec<u64> {
            let mut out: Vec<u64> = matched
                .old_of_new
                .iter()
                .map(|&j| if j == NO_MANAGER { 0 } else { old[j as usize] })
                .collect();
            for (&i, &v) in added.iter().zip(fresh) {
                out[i as usize] = v;
            }
            out
        };
        LastRows {
            header: last.header.clone(),
            end,
            digests: new.digests,
            ids: pick(&last.ids, &added_ids),
            emails: pick(&last.emails, &added_emails),
            managers: self.managers,
            inactive: self.inactive,
            manual: last.manual.clone(),
            base: 0,
            starts: new.starts,
        }
    }
}

/// Refuses a reporting cycle through one of the `added` rows (the only rows whose manager
/// is new): each walk up from one stops at a row already walked, or at the top.
fn no_cycle_through(managers: &[u32], added: &[u32]) -> Result<(), ReadInFull> {
    let mut seen: FxHashMap<u32, bool> = FxHashMap::default(); // row -> walk finished
    for &start in added {
        let mut path = Vec::new();
        let mut row = start;
        while row != NO_MANAGER {
            match seen.get(&row) {
                Some(true) => break,
                Some(false) => return full("a reporting cycle"),
                None => {
                    seen.insert(row, false);
                    path.push(row);
                    row = managers[row as usize];
                }
            }
        }
        for r in path {
            seen.insert(r, true);
        }
    }
    Ok(())
}
