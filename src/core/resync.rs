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
//! - A changed row is any record whose bytes are not those of the last roster's record in
//!   its place (the new file is followed record by record, [`Matched::follow`]; bytes are
//!   compared, never digests). The changed rows, and the unchanged rows whose ID, manager
//!   ID or email one of them names, are read as a file of their own, with every check a
//!   file gets; any error or warning about them reads the file in full.
//! - `is_manager` is counted again over the whole file, from each row's manager's row.
//!   Unchanged rows keep their manager's row (by ID, which may now be a changed row).
//! - The manager graph's warnings about a manager not in the file and one's own manager are
//!   listed again from each row's flags, at the lines the rows are on now; a reporting
//!   cycle reads the file in full (a roster with one keeps no record).
//! - Manual accounts are listed in `skipped_manual` at every sync: their rows are planned.
//! - An email a changed row shares with an unchanged row, or an ID, reads the file in full.

use crate::core::columns::fold;
use crate::core::model::{Employee, Finding, Roster};
use crate::core::org::{self, MAX_WARNINGS_PER_KIND, NO_MANAGER};
use crate::core::parallel::{ROWS_WORTH_A_THREAD, join_if};
use crate::core::reconcile::Counts;
use crate::core::roster::{self, RosterOptions};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::hash::Hasher;

/// What the last applied roster leaves for the next one to be compared with, a row at a
/// time in file order. Kept only for a roster applied with no warning but the manager
/// graph's about managers not in the file and employees their own manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastRows {
    /// The file's bytes before its first record (a byte-order mark included).
    pub header: Vec<u8>,
    /// Where each record starts in the file.
    pub starts: Vec<u32>,
    /// The physical line each record starts on.
    pub lines: Vec<u32>,
    /// The file's length: where the last record ends.
    pub end: u32,
    /// A digest of each employee ID.
    pub ids: Vec<u64>,
    /// A digest of the folded email of each employee who has not left (0 for one who has).
    pub emails: Vec<u64>,
    /// Each row's manager's row ([`NO_MANAGER`]: none, or not in the file).
    pub managers: Vec<u32>,
    /// What else is known of each row: [`INACTIVE`], [`NOT_IN_FILE`], [`OWN_MANAGER`].
    pub flags: Vec<u8>,
    /// The rows whose manager is not in the file, with a digest of that manager's ID.
    pub not_in_file: Vec<(u32, u64)>,
    /// The employee IDs of the manual accounts (any status), which every sync reports.
    pub manual: Vec<String>,
    /// Active auto accounts once the roster was applied (the next safety base).
    pub base: u64,
}

/// The employee has left (`roster.inactive_statuses`).
pub const INACTIVE: u8 = 1;
/// The row names a manager who is not in the file (a warning).
pub const NOT_IN_FILE: u8 = 2;
/// The row names the employee as their own manager (a warning).
pub const OWN_MANAGER: u8 = 4;

/// The digest of a key's bytes (an ID, a folded email): only ever used to find candidates,
/// which the keys read again then confirm, or to check a record file.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

impl LastRows {
    /// What `roster`, read from a file of `end` bytes that start with `header` and applied
    /// with no warning about its rows, leaves; `None` when it was not read from the file's
    /// own bytes (transcoded), or its manager graph has a cycle.
    ///
    /// The roster's record starts and manager rows are taken, not copied (a million rows'
    /// record is ~33 MB, made while the roster and its plan are held).
    pub fn of(
        roster: &mut Roster,
        header: Vec<u8>,
        end: u32,
        manual: Vec<String>,
    ) -> Option<LastRows> {
        let offset = u32::try_from(roster.text_offset?).ok()?;
        let n = roster.employees.len();
        if roster.starts.len() != n || roster.managers.len() != n || n == 0 {
            return None;
        }
        let mut starts = std::mem::take(&mut roster.starts);
        starts.iter_mut().for_each(|s| *s += offset);
        // A line past u32 (a file far over `roster.max_bytes`) is clamped, as rows' are.
        let lines = roster.employees.iter().map(|e| e.line() as u32).collect();
        let (ids, emails) = keys(&roster.employees);
        let mut not_in_file = Vec::new();
        let flags = (roster.employees.iter().zip(&roster.managers).enumerate())
            .map(|(row, (e, &m))| {
                let inactive = if e.inactive { INACTIVE } else { 0 };
                match (m, e.manager_id()) {
                    (NO_MANAGER, manager) if manager == e.id() => inactive | OWN_MANAGER,
                    (NO_MANAGER, manager) if !manager.is_empty() => {
                        not_in_file.push((row as u32, digest(manager.as_bytes())));
                        inactive | NOT_IN_FILE
                    }
                    _ => inactive,
                }
            })
            .collect();
        Some(LastRows {
            header,
            starts,
            lines,
            end,
            ids,
            emails,
            managers: std::mem::take(&mut roster.managers),
            flags,
            not_in_file,
            manual,
            base: 0,
        })
    }

    /// Whether the rows hold together as [`Self::of`] leaves them: records in order inside
    /// the file, each on a later line, managers and flagged rows among the rows, only known
    /// flags. A record read back from a file is used only then: one written wrong (by a bug,
    /// by hand) would otherwise index past its rows, or follow the wrong bytes.
    pub fn is_consistent(&self) -> bool {
        let n = self.rows();
        let same_lengths = [
            self.lines.len(),
            self.ids.len(),
            self.emails.len(),
            self.managers.len(),
            self.flags.len(),
        ]
        .iter()
        .all(|&len| len == n);
        let in_file = self
            .starts
            .first()
            .is_some_and(|&s| s as usize >= self.header.len())
            && self.starts.last().is_some_and(|&s| s < self.end);
        let known = INACTIVE | NOT_IN_FILE | OWN_MANAGER;
        same_lengths
            && in_file
            && self.starts.windows(2).all(|w| w[0] < w[1])
            && self.lines.first().is_some_and(|&l| l > 1)
            && self.lines.windows(2).all(|w| w[0] < w[1])
            && (self.managers.iter()).all(|&m| m == NO_MANAGER || (m as usize) < n)
            && self.flags.iter().all(|&f| f & !known == 0)
            && self.not_in_file.iter().all(|&(row, _)| (row as usize) < n)
    }

    fn inactive(&self, row: usize) -> bool {
        self.flags[row] & INACTIVE != 0
    }

    /// How many rows.
    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    /// Where row `row`'s record starts and ends in the file these rows describe.
    fn span(&self, row: usize) -> (u32, u32) {
        let end = self.starts.get(row + 1).copied().unwrap_or(self.end);
        (self.starts[row], end)
    }

    /// The records of `rows`, read out of `old` as a file of their own: their bytes one
    /// after the other and where each starts there.
    fn records(&self, old: &mut dyn OldFile, rows: &[u32]) -> Option<(Vec<u8>, Vec<u32>)> {
        let mut text = Vec::new();
        let mut starts = Vec::with_capacity(rows.len());
        for &row in rows {
            let (start, end) = self.span(row as usize);
            starts.push(u32::try_from(text.len()).ok()?);
            if !old.read_into(start, end, &mut text) {
                return None;
            }
        }
        Some((text, starts))
    }
}

/// The active auto accounts once a sync with these counts is applied: every account that
/// is active and auto after it has one of these actions (SPEC §4; an inactive account that
/// stays so counts nowhere, a manual one is not auto).
pub fn base_after(counts: &Counts) -> u64 {
    (counts.unchanged
        + counts.created
        + counts.reassigned
        + counts.reactivated
        + counts.role_changed) as u64
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
        (
            part.iter().map(id).collect(),
            part.iter().map(email).collect(),
        )
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

/// The last roster's file, read as a re-sync needs it (the pipeline reads it a window at a
/// time, mostly in order, rather than whole into memory).
pub trait OldFile {
    /// Whether the bytes at `start..end` are `bytes` (`false` when they cannot be read).
    fn holds(&mut self, start: u32, end: u32, bytes: &[u8]) -> bool;
    /// The bytes at `start..end`, appended to `out`; `false` when they cannot be read.
    fn read_into(&mut self, start: u32, end: u32, out: &mut Vec<u8>) -> bool;
}

/// A file held in memory is read in place.
impl OldFile for &[u8] {
    fn holds(&mut self, start: u32, end: u32, bytes: &[u8]) -> bool {
        self.get(start as usize..end as usize) == Some(bytes)
    }

    fn read_into(&mut self, start: u32, end: u32, out: &mut Vec<u8>) -> bool {
        match self.get(start as usize..end as usize) {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// The new file and where its records start.
struct NewFile<'a> {
    bytes: &'a [u8],
    starts: Vec<u32>,
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
    /// The active auto accounts before (the last roster's `base`).
    pub base: u64,
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

/// A new file followed against the last roster: its records matched, where they start,
/// the new rows (not the last roster's) and the last roster's rows gone.
struct Followed {
    matched: Matched,
    starts: Vec<u32>,
    added: Vec<u32>,
    removed: Vec<u32>,
}

/// The new file `bytes` followed against `last` ([`Matched::follow`]) when it has the
/// same header, and its rows, new and gone, are within `opts.max_rows` and `most`.
fn followed(
    last: &LastRows,
    old: &mut dyn OldFile,
    bytes: &[u8],
    opts: &RosterOptions,
    most: usize,
) -> Result<Followed, ReadInFull> {
    if !bytes.starts_with(&last.header) {
        return full("the header differs from the last roster's");
    }
    if last.header.ends_with(b"\r") && bytes.get(last.header.len()) == Some(&b'\n') {
        // The header's line ends in CR LF where the last roster's ended in CR: the new
        // file's first record would start at that LF, a line early.
        return full("the header's line end differs from the last roster's");
    }
    let id_column = roster::employee_id_column(&last.header, opts);
    let (matched, starts) = Matched::follow(last, old, bytes, id_column, most)?;
    let n = starts.len();
    if n == 0 || n as u64 > opts.max_rows {
        return full("no data rows, or more than roster.max_rows");
    }
    let (added, removed) = (matched.added(), matched.removed());
    if added.len() + removed.len() > most {
        return full(format!(
            "{} records are new and {} gone, more than {most}",
            added.len(),
            removed.len()
        ));
    }
    Ok(Followed {
        matched,
        starts,
        added,
        removed,
    })
}

/// The changes of `new` against `last` (read from the file `old`), reading at most `most`
/// changed records; otherwise why the file is read in full.
pub fn changes(
    last: &LastRows,
    old: &mut dyn OldFile,
    bytes: &[u8],
    opts: &RosterOptions,
    most: usize,
) -> Result<Changes, ReadInFull> {
    let end = u32::try_from(bytes.len()).or_else(|_| full("the file is over 4 GiB"))?;
    let Followed {
        matched,
        starts,
        added,
        removed,
    } = followed(last, old, bytes, opts, most)?;
    let n = starts.len();
    let new = NewFile { bytes, starts };
    // Each set of rows read as a file of its own (none: nothing to read).
    let read = |text: &[u8], starts: &[u32], end: u32, rows: &[u32]| {
        if rows.is_empty() {
            return Ok(None);
        }
        match roster::parse_records(&last.header, text, starts, end, rows, opts) {
            Ok(checked) if !checked.has_warnings() && checked.is_plain() => Ok(Some(checked)),
            Ok(_) => full("the changed rows have warnings, or are not UTF-8"),
            Err(_) => full("the changed rows have errors"),
        }
    };
    let added_rows = read(new.bytes, &new.starts, end, &added)?;
    let Some((removed_text, removed_starts)) = last.records(old, &removed) else {
        return full("the last roster could not be read");
    };
    let every: Vec<u32> = (0..removed.len() as u32).collect();
    let removed_end = removed_text.len() as u32;
    let removed_rows = read(&removed_text, &removed_starts, removed_end, &every)?;
    let named = matched.named(last, employees(&added_rows));
    let named_rows = read(new.bytes, &new.starts, end, &named)?;
    let keyed = Keyed::of(
        &added,
        employees(&added_rows),
        &named,
        employees(&named_rows),
    )?;
    let removed_ids: Vec<&str> = employees(&removed_rows).iter().map(|e| e.id()).collect();
    let graph = Graph::of(
        last,
        &matched,
        (&removed, &removed_ids),
        (&added, employees(&added_rows)),
        (&named, employees(&named_rows)),
        &keyed,
    )?;
    // The changed rows, the manual accounts' (listed at every sync) and the unchanged rows
    // whose `is_manager` moved; the other rows read are only named by a changed one.
    let manual: FxHashSet<&str> = last.manual.iter().map(String::as_str).collect();
    let mut planned: Vec<u32> = added.clone();
    planned.extend(
        named
            .iter()
            .zip(employees(&named_rows))
            .filter(|(_, e)| manual.contains(e.id()))
            .map(|(&i, _)| i),
    );
    planned.extend(graph.flipped(last, &matched, &planned));
    // At least one row, so that the roster planned has the file's columns.
    planned.push(0);
    planned.sort_unstable();
    planned.dedup();
    let checked = read(new.bytes, &new.starts, end, &planned)?.expect("a row at least");
    let lines = lines_of(last, &matched, new.bytes, &new.starts, end);
    let warned = graph.warned();
    let warned_rows = read(new.bytes, &new.starts, end, &warned)?;
    let column = checked.manager_column();
    let warnings = graph.warnings(&warned, employees(&warned_rows), &lines, column);
    let mut roster = checked.finish_given(|row| graph.reports[planned[row] as usize] > 0);
    roster.warnings = warnings;
    let next = graph.next(
        last,
        &matched,
        (&added, employees(&added_rows)),
        new,
        lines,
        end,
    );
    Ok(Changes {
        roster,
        rows: n,
        removed: removed_ids.iter().map(|id| id.to_string()).collect(),
        next,
        base: last.base,
    })
}

/// The line each of the new file's records starts on: the first where the last roster's
/// did (the header is the same), each next one after its record's lines, counted again only
/// for a record that is not the last roster's (or was its last).
fn lines_of(
    last: &LastRows,
    matched: &Matched,
    bytes: &[u8],
    starts: &[u32],
    end: u32,
) -> Vec<u32> {
    let mut lines = Vec::with_capacity(starts.len());
    let mut line = last.lines[0];
    for (i, &j) in matched.old_of_new.iter().enumerate() {
        lines.push(line);
        let j = j as usize;
        line += match last.lines.get(j + 1) {
            Some(&next) if j != UNMATCHED as usize => next - last.lines[j],
            _ => {
                let stop = starts.get(i + 1).copied().unwrap_or(end);
                roster::line_breaks(&bytes[starts[i] as usize..stop as usize]) as u32
            }
        };
    }
    lines
}

/// The rows a file of some records read, none when none were.
fn employees(read: &Option<roster::Checked>) -> &[Employee] {
    read.as_ref().map_or(&[], |c| c.employees())
}

/// A row the other file does not repeat (in [`Matched`]).
const UNMATCHED: u32 = u32::MAX;

/// How many of the last roster's records past the last one found a new record is compared
/// with.
#[cfg(not(test))]
const LOOK_AHEAD: usize = 64;
/// Few in tests, so that small files go past it.
#[cfg(test)]
const LOOK_AHEAD: usize = 4;

/// How many records in a row not found ahead have the next one looked for by its ID.
#[cfg(not(test))]
const JUMP_AFTER: usize = 8;
#[cfg(test)]
const JUMP_AFTER: usize = 2;

/// Each row of `ids` (digests), by its digest (the first row of a repeated one).
fn rows_by_digest(ids: &[u64]) -> FxHashMap<u64, u32> {
    let mut rows = FxHashMap::with_capacity_and_hasher(ids.len(), Default::default());
    for (j, &id) in ids.iter().enumerate() {
        rows.entry(id).or_insert(j as u32);
    }
    rows
}

/// The new file's records matched with the last roster's.
struct Matched {
    /// For each new row, the last roster's row it repeats ([`UNMATCHED`]: none).
    old_of_new: Vec<u32>,
    /// For each of the last roster's rows, the new row that repeats it.
    new_of_old: Vec<u32>,
}

impl Matched {
    /// Follows the new file `bytes` record by record from its header (the last roster's):
    /// a record is the last roster's next one (or one of the [`LOOK_AHEAD`] after it) when
    /// it has that one's bytes and the next record starts right after them; otherwise it is
    /// read to its end. After [`JUMP_AFTER`] records in a row not found so, a record is
    /// also looked for further on, at the last roster's row of its ID (column `id_column`),
    /// compared as any other. The bytes that match are the comparison: no record is read twice.
    /// Where the new file's records start, too; more than `most` records not matched read
    /// the file in full.
    fn follow(
        last: &LastRows,
        old: &mut dyn OldFile,
        bytes: &[u8],
        id_column: Option<usize>,
        most: usize,
    ) -> Result<(Matched, Vec<u32>), ReadInFull> {
        let mut records = roster::Records::of(bytes, roster::delimiter(&last.header));
        let mut starts = Vec::with_capacity(last.rows() + 1024);
        let mut old_of_new = Vec::with_capacity(last.rows() + 1024);
        let mut new_of_old = vec![UNMATCHED; last.rows()];
        let (mut at, mut next_old, mut unmatched) = (last.header.len(), 0usize, 0usize);
        let (mut missed, mut by_id) = (0usize, None);
        while at < bytes.len() {
            let i = u32::try_from(starts.len()).or_else(|_| full("too many rows"))?;
            starts.push(u32::try_from(at).or_else(|_| full("the file is over 4 GiB"))?);
            // Whether the record at `at` is the last roster's row `j`, and where it ends.
            let mut is_row = |j: usize| {
                let (start, stop) = last.span(j);
                let next = at + (stop - start) as usize;
                let record = bytes.get(at..next)?;
                let ends_line = matches!(record.last(), Some(b'\n' | b'\r'));
                // The next record starts right there: the end of the file, or (after a line
                // end) a byte that is not one; a record at the end of the last file, with no
                // line end, only at the end of this one.
                let whole =
                    next == bytes.len() || (ends_line && !matches!(bytes[next], b'\n' | b'\r'));
                (whole && old.holds(start, stop, record)).then_some((j, next))
            };
            let ahead = next_old..(next_old + LOOK_AHEAD).min(last.rows());
            let found = ahead.into_iter().find_map(&mut is_row).or_else(|| {
                // Past a run of records not found ahead (rows removed together, more than
                // the look-ahead): the last roster's row of this record's ID, further on.
                let column = id_column.filter(|_| missed >= JUMP_AFTER)?;
                let id = records.field_of_record(at, column)?;
                let by_id = by_id.get_or_insert_with(|| rows_by_digest(&last.ids));
                let j = *by_id.get(&digest(id.trim_ascii()))? as usize;
                (j >= next_old + LOOK_AHEAD).then(|| is_row(j))?
            });
            match found {
                Some((j, next)) => {
                    new_of_old[j] = i;
                    old_of_new.push(j as u32);
                    (next_old, at, missed) = (j + 1, next, 0);
                }
                None => {
                    (unmatched, missed) = (unmatched + 1, missed + 1);
                    if unmatched > most {
                        return full(format!("more than {most} records are new"));
                    }
                    old_of_new.push(UNMATCHED);
                    at = records
                        .next_record(at)
                        .map_or_else(|| full("a record cannot be followed"), Ok)?;
                }
            }
        }
        let matched = Matched {
            old_of_new,
            new_of_old,
        };
        Ok((matched, starts))
    }

    /// The new file's rows that are not the last roster's.
    fn added(&self) -> Vec<u32> {
        rows_where(&self.old_of_new, |o| o == UNMATCHED)
    }

    /// The last roster's rows the new file does not repeat.
    fn removed(&self) -> Vec<u32> {
        rows_where(&self.new_of_old, |o| o == UNMATCHED)
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
                self.new_of_old[j] != UNMATCHED
                    && (ids.contains(&last.ids[j])
                        || (!last.inactive(j) && emails.contains(&last.emails[j])))
            })
            .map(|j| self.new_of_old[j])
            .collect();
        // And the unchanged rows whose manager was not in the file, when an added row may be
        // that manager.
        let added_ids: FxHashSet<u64> = added.iter().map(|e| digest(e.id().as_bytes())).collect();
        rows.extend(
            last.not_in_file
                .iter()
                .filter(|(j, m)| self.new_of_old[*j as usize] != UNMATCHED && added_ids.contains(m))
                .map(|(j, _)| self.new_of_old[*j as usize]),
        );
        rows.sort_unstable();
        rows.dedup();
        rows
    }
}

/// The rows of `of` whose value passes `keep`.
fn rows_where(of: &[u32], keep: impl Fn(u32) -> bool) -> Vec<u32> {
    (0..of.len() as u32)
        .filter(|&i| keep(of[i as usize]))
        .collect()
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
        for (&row, e) in added
            .iter()
            .zip(added_rows)
            .chain(named.iter().zip(named_rows))
        {
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

/// The new file's manager graph: each row's manager's row, what is known of each row
/// ([`LastRows::flags`]), and how many active employees report to each row.
struct Graph {
    managers: Vec<u32>,
    flags: Vec<u8>,
    reports: Vec<u32>,
    /// The rows whose manager is not in the file, with the digest of the manager's ID.
    not_in_file: Vec<(u32, u64)>,
}

impl Graph {
    /// Each unchanged row keeps its manager, now the new row of that manager's ID (a
    /// removed row's ID on an added row, or on none: then not in the file); one whose
    /// manager was not in the file may find it on an added row; each added row's is found
    /// by ID. A reporting cycle (which only a row with a new manager can close) reads the
    /// file in full.
    fn of(
        last: &LastRows,
        matched: &Matched,
        (removed, removed_ids): (&[u32], &[&str]),
        (added, added_rows): (&[u32], &[Employee]),
        (named, named_rows): (&[u32], &[Employee]),
        keyed: &Keyed<'_>,
    ) -> Result<Graph, ReadInFull> {
        let n = matched.old_of_new.len();
        let mut managers = vec![NO_MANAGER; n];
        let mut flags = vec![0u8; n];
        let mut moved = Vec::new();
        // A removed row's ID: the new row that has it, and its digest.
        let back: FxHashMap<u32, (Option<u32>, u64)> = removed
            .iter()
            .zip(removed_ids)
            .map(|(&j, id)| (j, (keyed.row_of(id), digest(id.as_bytes()))))
            .collect();
        let old_not_in_file: FxHashMap<u32, u64> = last.not_in_file.iter().copied().collect();
        let mut not_in_file = Vec::new();
        for (i, &j) in matched.old_of_new.iter().enumerate() {
            if j == UNMATCHED {
                continue;
            }
            let j = j as usize;
            flags[i] = last.flags[j];
            if let Some(&m) = old_not_in_file.get(&(j as u32)) {
                not_in_file.push((i as u32, m));
            }
            let k = last.managers[j];
            if k == NO_MANAGER {
                continue;
            }
            managers[i] = match (matched.new_of_old[k as usize], back.get(&k)) {
                (UNMATCHED, Some(&(Some(now), _))) => {
                    moved.push(i as u32);
                    now
                }
                (UNMATCHED, Some(&(None, m))) => {
                    flags[i] |= NOT_IN_FILE;
                    not_in_file.push((i as u32, m));
                    NO_MANAGER
                }
                (UNMATCHED, None) => return full("a manager's row is lost"),
                (now, _) => now,
            };
        }
        // Unchanged rows whose manager was not in the file and may now be.
        for (&i, e) in named.iter().zip(named_rows) {
            if flags[i as usize] & NOT_IN_FILE != 0
                && let Some(now) = keyed.row_of(e.manager_id())
            {
                managers[i as usize] = now;
                flags[i as usize] &= !NOT_IN_FILE;
                moved.push(i);
            }
        }
        not_in_file.retain(|&(i, _)| flags[i as usize] & NOT_IN_FILE != 0);
        for (&i, e) in added.iter().zip(added_rows) {
            let (i, m) = (i as usize, e.manager_id());
            flags[i] = if e.inactive { INACTIVE } else { 0 };
            if m.is_empty() {
                continue;
            }
            if m == e.id() {
                flags[i] |= OWN_MANAGER;
                continue;
            }
            match keyed.row_of(m) {
                Some(now) => managers[i] = now,
                None => {
                    flags[i] |= NOT_IN_FILE;
                    not_in_file.push((i as u32, digest(m.as_bytes())));
                }
            }
        }
        not_in_file.sort_unstable();
        moved.extend_from_slice(added);
        no_cycle_through(&managers, &moved)?;
        let mut reports = vec![0u32; n];
        for (i, &m) in managers.iter().enumerate() {
            if m != NO_MANAGER && flags[i] & INACTIVE == 0 {
                reports[m as usize] += 1;
            }
        }
        Ok(Graph {
            managers,
            flags,
            reports,
            not_in_file,
        })
    }

    /// The unchanged rows (not in `planned`) whose `is_manager` the changes moved.
    fn flipped(&self, last: &LastRows, matched: &Matched, planned: &[u32]) -> Vec<u32> {
        let mut before = vec![false; last.rows()];
        for (j, &m) in last.managers.iter().enumerate() {
            if m != NO_MANAGER && !last.inactive(j) {
                before[m as usize] = true;
            }
        }
        let planned: FxHashSet<u32> = planned.iter().copied().collect();
        (0..matched.old_of_new.len() as u32)
            .filter(|&i| {
                let j = matched.old_of_new[i as usize];
                j != UNMATCHED
                    && before[j as usize] != (self.reports[i as usize] > 0)
                    && !planned.contains(&i)
            })
            .collect()
    }

    /// The rows whose warnings are listed: the first of each kind, in file order.
    fn warned(&self) -> Vec<u32> {
        let first = |flag: u8| {
            (0..self.flags.len() as u32)
                .filter(move |&i| self.flags[i as usize] & flag != 0)
                .take(MAX_WARNINGS_PER_KIND)
        };
        let mut rows: Vec<u32> = first(NOT_IN_FILE).chain(first(OWN_MANAGER)).collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// The manager graph's warnings, as the full reading lists them: `warned`'s rows read
    /// (`rows`), their lines counted in the file `bytes` whose records start at `starts`.
    fn warnings(
        &self,
        warned: &[u32],
        rows: &[Employee],
        lines: &[u32],
        column: &str,
    ) -> Vec<Finding> {
        let (mut not_in_file, mut own) = (Vec::new(), Vec::new());
        for (&i, e) in warned.iter().zip(rows) {
            let line = u64::from(lines[i as usize]);
            let flags = self.flags[i as usize];
            if flags & NOT_IN_FILE != 0 {
                not_in_file.push(org::not_in_file(line, column, e.manager_id(), e.id()));
            }
            if flags & OWN_MANAGER != 0 {
                own.push(org::own_manager(line, column, e.id()));
            }
        }
        let count = |flag: u8| self.flags.iter().filter(|&&f| f & flag != 0).count();
        org::warnings_without_cycles(not_in_file, count(NOT_IN_FILE), own, count(OWN_MANAGER))
    }

    /// What the new file leaves for the next one.
    fn next(
        self,
        last: &LastRows,
        matched: &Matched,
        (added, added_rows): (&[u32], &[Employee]),
        new: NewFile<'_>,
        lines: Vec<u32>,
        end: u32,
    ) -> LastRows {
        let (added_ids, added_emails) = keys(added_rows);
        let pick = |old: &[u64], fresh: &[u64]| -> Vec<u64> {
            let mut out: Vec<u64> = matched
                .old_of_new
                .iter()
                .map(|&j| if j == UNMATCHED { 0 } else { old[j as usize] })
                .collect();
            for (&i, &v) in added.iter().zip(fresh) {
                out[i as usize] = v;
            }
            out
        };
        LastRows {
            header: last.header.clone(),
            end,
            ids: pick(&last.ids, &added_ids),
            emails: pick(&last.emails, &added_emails),
            managers: self.managers,
            flags: self.flags,
            not_in_file: self.not_in_file,
            manual: last.manual.clone(),
            base: 0,
            starts: new.starts,
            lines,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roster_of(ids: impl Iterator<Item = usize>) -> Vec<u8> {
        let mut text = String::from("employee_id,email,manager_id,department\n");
        for i in ids {
            text.push_str(&format!("E{i:03},e{i}@x.example,E000,IT\n"));
        }
        text.into_bytes()
    }

    fn last_of(bytes: &[u8], opts: &RosterOptions) -> LastRows {
        let mut roster = roster::parse(bytes, opts).unwrap();
        let first = roster.starts[0] as usize + roster.text_offset.unwrap();
        LastRows::of(
            &mut roster,
            bytes[..first].to_vec(),
            bytes.len() as u32,
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn rows_removed_together_past_the_look_ahead_are_found_again_by_id() {
        let opts = RosterOptions::default();
        let old = roster_of(0..60);
        let last = last_of(&old, &opts);
        // Rows 10 to 29 gone: five times the tests' look-ahead.
        let new = roster_of((0..10).chain(30..60));
        let found = changes(&last, &mut &old[..], &new, &opts, 1000).unwrap();
        assert_eq!(found.rows, 40);
        // The 20 gone, and the rows of the records read before one was found by its ID.
        assert_eq!(found.removed.len(), 20 + JUMP_AFTER);
        // Those records (and E000, which they name as their manager) are planned, not all
        // 30 after the gap.
        assert!(
            found.roster.employees.len() <= JUMP_AFTER + 1,
            "{} rows planned",
            found.roster.employees.len()
        );
        // A record found by its ID is still compared byte for byte: E032, the first record
        // looked for by its ID, edited, is not taken for the last roster's row; the next one
        // is found by its own.
        let edited = String::from_utf8(new.clone())
            .unwrap()
            .replace("E032,e32@x.example,E000,IT", "E032,e32@x.example,E000,OT");
        let found = changes(&last, &mut &old[..], edited.as_bytes(), &opts, 1000).unwrap();
        let planned: Vec<&str> = found.roster.employees.iter().map(|e| e.id()).collect();
        assert!(planned.contains(&"E032"), "{planned:?}");
        assert!(!planned.contains(&"E033"), "{planned:?}");
        assert_eq!(found.removed.len(), 20 + JUMP_AFTER + 1);
    }

    #[test]
    fn a_crlf_roster_after_a_cr_only_one_is_read_in_full() {
        let opts = RosterOptions::default();
        let cr = String::from_utf8(roster_of(0..5))
            .unwrap()
            .replace('\n', "\r");
        let last = last_of(cr.as_bytes(), &opts);
        let crlf = String::from_utf8(roster_of(0..5))
            .unwrap()
            .replace('\n', "\r\n");
        let mut old = cr.as_bytes();
        match changes(&last, &mut old, crlf.as_bytes(), &opts, 1000) {
            Err(ReadInFull(why)) => assert!(why.contains("line end"), "{why}"),
            Ok(_) => panic!("re-synced, with every line one off"),
        }
    }
}
