//! Data rows: the checks of each row (field count, employee IDs, emails, duplicates of
//! either) and the employees they give, with their kept values interned.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use csv::ByteRecord;

use super::Capped;
use super::header::Header;
use super::keys::{Key, KeyIndex, NO_KEY, email_key, hash_keys, id_key};
use super::lines::delimiter_name;
use crate::core::columns::{self, fold_cell};
use crate::core::model::{Employee, FastHash, Finding, Interner, Sym};
use crate::core::parallel::{ROWS_WORTH_A_THREAD, join_if};

/// The employees read so far, and what it takes to check the next row against them.
pub(super) struct Rows {
    /// Folded `inactive_statuses`.
    inactive: Vec<String>,
    employees: Vec<Employee>,
    /// The kept values of every row, one after the other (see `Roster::values`).
    values: Vec<Sym>,
    symbols: Interner,
    /// The first row of each employee ID and of each folded email of an employee who is
    /// not inactive seen so far (SPEC §1: one email is one person's SSO identity), when
    /// repeats are found as the rows are read ([`Repeats::AsRead`]).
    firsts: Option<Firsts>,
    /// The rows of each employee ID, once indexed ([`Rows::unrepeated`]).
    ids: Option<KeyIndex>,
    /// How many of `employees` had their ID and email checked ([`Rows::check_pending`]).
    checked: usize,
    /// Whether a row had a status cell that is not blank (see `Roster::status_blank`).
    status_seen: bool,
}

/// When a repeated employee ID or email is found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Repeats {
    /// As each row is read, each an error naming the line where the key first was.
    AsRead,
    /// Once every row is read, only whether one repeats ([`Rows::unrepeated`]): cheaper, for
    /// a file read in parts whose findings are listed by reading it again `AsRead`.
    Later,
}

/// The tables of first rows that find repeats as the rows are read.
#[derive(Default)]
struct Firsts {
    ids: FirstRows,
    emails: FirstRows,
}

/// How many rows are read before their IDs and emails are checked together: each check
/// looks its key up in a table of up to a million entries, and made one after the other,
/// with no row's reading between them, a million-row `sync` took ~5 % less CPU than with
/// each row checked as it was read, the reading of the rows the cheaper (BENCHMARKS.md,
/// session 16).
const CHECK_BATCH: usize = 32;

impl Rows {
    /// No rows yet; `inactive_statuses` as configured (they are compared folded).
    pub(super) fn new(inactive_statuses: &[String], repeats: Repeats) -> Self {
        Self {
            inactive: inactive_statuses.iter().map(|s| fold_cell(s)).collect(),
            employees: Vec::new(),
            values: Vec::new(),
            symbols: Interner::default(),
            firsts: (repeats == Repeats::AsRead).then(Firsts::default),
            ids: None,
            checked: 0,
            status_seen: false,
        }
    }

    /// Makes room for `rows` employees more than those read so far (not more than the room
    /// already made), and in the tables of first rows: they then never grow while rows are
    /// read, each growth being a copy of everything so far and a block freed (a million-row
    /// file grows them 20 times).
    pub(super) fn reserve(&mut self, rows: usize) {
        self.employees.reserve(rows);
        if let Some(firsts) = &mut self.firsts {
            firsts.ids.reserve(rows);
            firsts.emails.reserve(rows);
        }
    }

    /// The employees in file order, their values and the symbols of those, and the rows of
    /// each ID.
    pub(super) fn into_parts(self) -> (Vec<Employee>, Vec<Sym>, Interner, KeyIndex) {
        let ids = self
            .ids
            .unwrap_or_else(|| KeyIndex::new(&self.employees, id_key, |_| true));
        (self.employees, self.values, self.symbols, ids)
    }

    /// Whether no two rows share an employee ID, or the email of an employee who has not
    /// left, for rows read with [`Repeats::Later`]; the IDs' index is kept for
    /// [`Self::into_parts`]. Call once every row is read and checked.
    pub(super) fn unrepeated(&mut self) -> bool {
        let rows = &self.employees;
        let two_cores = rows.len() >= ROWS_WORTH_A_THREAD;
        let active = |e: &Employee| !e.inactive;
        // The keys hashed by rows (an email costs more to hash than an ID), then each index
        // made on a core of its own.
        let (mut ids, mut emails) = (vec![NO_KEY; rows.len()], vec![NO_KEY; rows.len()]);
        let half = rows.len() / 2;
        let ((id_head, id_tail), (email_head, email_tail)) =
            (ids.split_at_mut(half), emails.split_at_mut(half));
        let (head, tail) = rows.split_at(half);
        join_if(
            two_cores,
            || {
                hash_keys(head, id_key, |_| true, id_head);
                hash_keys(head, email_key, active, email_head);
            },
            || {
                hash_keys(tail, id_key, |_| true, id_tail);
                hash_keys(tail, email_key, active, email_tail);
            },
        );
        let ((ids, ids_repeat), emails_repeat) = join_if(
            two_cores,
            || {
                let ids = KeyIndex::of_hashes(ids, id_key);
                let repeat = ids.repeats(rows);
                (ids, repeat)
            },
            || KeyIndex::of_hashes(emails, email_key).repeats(rows),
        );
        self.ids = Some(ids);
        !ids_repeat && !emails_repeat
    }

    /// Appends the employees of `later` (the rows that follow these in the file, both read
    /// with [`Repeats::Later`]), their values interned here: the employees and symbols that
    /// reading all the rows in one pass gives. Call only once every row is read and checked.
    pub(super) fn append(&mut self, later: Rows) {
        debug_assert!(
            self.checked == self.employees.len() && later.checked == later.employees.len()
        );
        debug_assert!(self.firsts.is_none() && later.firsts.is_none());
        let renumber = self.symbols.absorb(&later.symbols);
        let (employees, values) = (&mut self.employees, &mut self.values);
        // Each a copy into a larger block: on two cores, a million rows' took ~0.02 s less.
        join_if(
            later.employees.len() >= ROWS_WORTH_A_THREAD,
            || employees.extend(later.employees),
            || values.extend(later.values.iter().map(|sym| renumber[sym.0 as usize])),
        );
        self.checked = self.employees.len();
        self.status_seen |= later.status_seen;
    }

    /// Whether some row's status cell is not blank.
    pub(super) fn status_seen(&self) -> bool {
        self.status_seen
    }

    /// Checks the data record on lines `line..=last_line`, pushing what is wrong with it to
    /// `errors`; a record with the header's field count becomes an employee either way. Its
    /// ID and email are checked with the next rows' ([`CHECK_BATCH`]): call
    /// [`Self::check_pending`] before any other finding is pushed to `errors`, and at the end.
    pub(super) fn push(
        &mut self,
        h: &Header,
        record: &ByteRecord,
        line: u64,
        last_line: u64,
        delimiter: u8,
        errors: &mut Capped,
    ) {
        if record.len() != h.written.len() {
            self.check_pending(h, errors);
            errors.push(wrong_field_count(h, record, line, last_line, delimiter));
            return;
        }
        let cells = Cells::of(record);
        let id = cells.get(h.employee_id);
        let email = cells.get(h.email);
        let manager_id = cells.get(h.manager_id);
        let status = h.status.map(|c| cells.get(Some(c)));
        let inactive = status.is_some_and(|s| self.is_inactive(s));
        self.status_seen |= status.is_some_and(|s| !s.is_empty());
        let employee = Employee::new(line, id, email, manager_id, inactive);

        if self.values.capacity() == 0 {
            self.values
                .reserve(self.employees.capacity() * h.fields.len());
        }
        for &column in &h.fields {
            let sym = intern_folded(&mut self.symbols, cells.get(column));
            self.values.push(sym);
        }
        self.employees.push(employee);
        if self.employees.len() - self.checked >= CHECK_BATCH {
            self.check_pending(h, errors);
        }
    }

    /// Checks the IDs and emails of the rows pushed since the last call, in row order,
    /// pushing what is wrong to `errors`.
    pub(super) fn check_pending(&mut self, h: &Header, errors: &mut Capped) {
        for row in self.checked..self.employees.len() {
            self.check_id(h, row, errors);
            if !self.employees[row].inactive {
                self.check_email(h, row, errors);
            }
        }
        self.checked = self.employees.len();
    }

    /// An employee ID must be there, and on no earlier row.
    fn check_id(&mut self, h: &Header, row: usize, errors: &mut Capped) {
        let Some(c) = h.employee_id else {
            return;
        };
        let (id, line) = (self.employees[row].id(), self.employees[row].line());
        if id.is_empty() {
            errors.push(Finding::at(
                line,
                h.name(c),
                "employee_id is empty; every row needs the employee's ID",
            ));
        } else if matches!(id, "." | "..") && !self.employees[row].inactive {
            // `/admins/{employee_id}` cannot name it (browsers resolve `.` and `..` in a
            // path, `%2e` too): its account could not be shown in the web section or the
            // API; `admins add` refuses such an ID too. A leaver's row gets no account: it
            // passes (rejected, the roster would have kept every leaver's rights).
            errors.push(Finding::at(
                line,
                h.name(c),
                format!(
                    "employee_id \"{id}\" cannot name an account (the web section and the API \
                     address one as /admins/{{employee_id}}); correct it in the HR system"
                ),
            ));
        } else if let Some(firsts) = &mut self.firsts
            && let Some(first) = first_line(&mut firsts.ids, &self.employees, row, id, id_key)
        {
            errors.push(Finding::at(
                line,
                h.name(c),
                format!(
                    "employee_id \"{id}\" already appears on line {first}; each employee \
                     must have exactly one row"
                ),
            ));
        }
    }

    /// The email of an employee who is not inactive must be there, well-formed, and on no
    /// earlier row of such an employee.
    fn check_email(&mut self, h: &Header, row: usize, errors: &mut Capped) {
        let Some(c) = h.email else {
            return;
        };
        let employee = &self.employees[row];
        let (email, line) = (employee.email(), employee.line());
        if email.is_empty() {
            errors.push(Finding::at(
                line,
                h.name(c),
                "email is empty; an employee who has not left needs their SSO email \
                 (only rows of inactive employees may leave it empty)",
            ));
        } else if !employee.has_well_formed_email() {
            let why = email_problem(email);
            errors.push(Finding::at(
                line,
                h.name(c),
                format!(
                    "email \"{email}\" is not a well-formed address: {why} (it needs a \
                     local part, one @ and a domain with a dot, and no spaces)"
                ),
            ));
        } else if let Some(firsts) = &mut self.firsts
            && let Some(first) = first_line(
                &mut firsts.emails,
                &self.employees,
                row,
                &columns::fold(email),
                email_key,
            )
        {
            errors.push(Finding::at(
                line,
                h.name(c),
                format!(
                    "email \"{email}\" is already the email of the employee on line {first}; \
                     the email is the SSO identity, so two employees who have not left \
                     cannot share it"
                ),
            ));
        }
    }

    fn is_inactive(&self, status: &str) -> bool {
        if status.is_ascii() {
            // Folded statuses hold no ASCII capitals, so this equals comparing fold_cell.
            self.inactive.iter().any(|s| s.eq_ignore_ascii_case(status))
        } else {
            self.inactive.contains(&fold_cell(status))
        }
    }
}

/// The line of the first row in `table` whose key is `key` (an ID, or a folded email), or
/// `None` when it is new: `row`, the row that has it, is then remembered as its first.
fn first_line(
    table: &mut FirstRows,
    rows: &[Employee],
    row: usize,
    key: &str,
    key_of: Key,
) -> Option<u64> {
    let first = table.first_or_add(key, row as u32, rows, key_of)?;
    Some(rows[first as usize].line())
}

/// The first row of each distinct key (an ID, a folded email) among the rows: its index and
/// 32 bits of the key's hash, 8 bytes a row (a map from the 64-bit hash took 16). The key is
/// read back from the row only when those 32 bits match, and nothing is allocated per row.
#[derive(Default)]
struct FirstRows(HashTable<(u32, u32)>);

/// 32 bits of `key`'s hash, and the 64-bit hash the table places them by.
fn hash_of(key: &str) -> (u32, u64) {
    let short = (FastHash::default().hash_one(key) >> 32) as u32;
    (short, spread(short))
}

/// Where the table places an entry.
fn placed(&(_, short): &(u32, u32)) -> u64 {
    spread(short)
}

/// 32 bits of a hash as the table's 64: the same bits twice, as it takes an entry's tag
/// from the top and its slot from the bottom.
fn spread(short: u32) -> u64 {
    (u64::from(short) << 32) | u64::from(short)
}

impl FirstRows {
    /// Makes room for `rows` more keys.
    fn reserve(&mut self, rows: usize) {
        self.0.reserve(rows, placed);
    }

    /// The first row whose key is `key`; `None` when there is none, and `next` (the row
    /// that has it, the first not yet in the table) is remembered as its first.
    fn first_or_add(
        &mut self,
        key: &str,
        next: u32,
        rows: &[Employee],
        key_of: Key,
    ) -> Option<u32> {
        let (short, hash) = hash_of(key);
        let entry = self.0.entry(
            hash,
            |&(row, s)| s == short && key_of(&rows[row as usize]) == key,
            placed,
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(first) => Some(first.get().0),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert((next, short));
                None
            }
        }
    }
}

/// The error for a record whose field count differs from the header's, with its likely cause.
fn wrong_field_count(
    h: &Header,
    record: &ByteRecord,
    line: u64,
    last_line: u64,
    delimiter: u8,
) -> Finding {
    let d = delimiter_name(delimiter);
    let why = if record.len() == 1 && Cells::of(record).get(Some(0)).is_empty() {
        "the line is blank but for spaces; delete it".to_owned()
    } else if last_line > line {
        format!(
            "the row runs over lines {line}–{last_line}, so a quoted value probably \
             has a line break in it or a quote that is not closed"
        )
    } else if record.len() > h.written.len() {
        format!("a value probably contains a {d}; put that value in double quotes")
    } else {
        format!("a value or a {d} is probably missing")
    };
    // The column where the row stops matching the header: the first one it lacks, or, with
    // fields past the header's, its last (SPEC §1: every row error names a column).
    // A column whose header is empty is named by its place.
    let at = record.len().min(h.written.len().saturating_sub(1));
    let column = match h.written.get(at).map(String::as_str) {
        Some("") | None => format!("column {}", at + 1),
        Some(name) => name.to_owned(),
    };
    Finding::at(
        line,
        column,
        format!(
            "wrong number of fields: expected {} (as in the header), got {}; {why}",
            h.written.len(),
            record.len()
        ),
    )
}

/// A record's cells as text: its bytes checked as UTF-8 once, not cell by cell.
struct Cells<'r> {
    record: &'r ByteRecord,
    /// The record's fields one after the other.
    text: &'r str,
}

impl<'r> Cells<'r> {
    fn of(record: &'r ByteRecord) -> Cells<'r> {
        // The file's text is valid UTF-8 and csv splits it only at ASCII bytes, so this and
        // every cell's range are (otherwise a cell reads as empty).
        let text = std::str::from_utf8(record.as_slice()).unwrap_or("");
        Cells { record, text }
    }

    /// The trimmed text of a cell; empty when the column is absent.
    fn get(&self, column: Option<usize>) -> &'r str {
        let cell = column
            .and_then(|c| self.record.range(c))
            .and_then(|range| self.text.get(range))
            .unwrap_or("");
        trim(cell)
    }
}

/// `s.trim()`, without looking for Unicode spaces when `s` starts and ends with an ASCII
/// character that is not one (most cells).
fn trim(s: &str) -> &str {
    let plain = |b: &u8| b.is_ascii() && !char::from(*b).is_whitespace();
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if plain(first) && plain(last) => s,
        _ => s.trim(),
    }
}

/// Interns `fold_cell(value)` without allocating when the value is ASCII.
fn intern_folded(symbols: &mut Interner, value: &str) -> Sym {
    if !value.is_ascii() {
        return symbols.intern(&fold_cell(value));
    }
    symbols.intern_ascii_folding(value)
}

/// Why `email` is not well-formed (see `columns::is_well_formed_email`), in words.
fn email_problem(email: &str) -> &'static str {
    if email.chars().any(char::is_whitespace) {
        return "it contains whitespace";
    }
    match email.split_once('@') {
        None => "it has no @",
        Some((_, domain)) if domain.contains('@') => "it has more than one @",
        Some(("", _)) => "nothing comes before the @",
        Some((_, "")) => "nothing comes after the @",
        Some(_) => "the domain has no dot",
    }
}

#[cfg(test)]
mod tests {
    use crate::core::roster::RosterOptions;
    use crate::core::roster::tests::{ids, needing, ok, ok_with, places, rejected, rejected_with};
    use proptest::prelude::*;

    /// The findings a row-by-row check of IDs and emails gives, in line order, for `rows`
    /// (ID choice, email choice, inactive, whether the row has the header's field count) of
    /// a file whose header is `employee_id,email,status`.
    fn row_by_row(rows: &[(u8, u8, bool, bool)]) -> Vec<(u64, Option<&'static str>)> {
        let (mut ids, mut emails) = (Vec::new(), Vec::new());
        let mut found = Vec::new();
        for (i, &(id, email, inactive, whole)) in rows.iter().enumerate() {
            let line = i as u64 + 2;
            if !whole {
                found.push((line, Some("status")));
                continue;
            }
            if id == 0 || ids.contains(&id) {
                found.push((line, Some("employee_id")));
            } else {
                ids.push(id);
            }
            // Choices 6 and 7 are 2 and 3 in capitals: the same folded email.
            let folded = if email >= 6 { email - 4 } else { email };
            if !inactive {
                if email <= 1 || emails.contains(&folded) {
                    found.push((line, Some("email")));
                } else {
                    emails.push(folded);
                }
            }
        }
        found
    }

    proptest! {
        /// IDs and emails checked a batch of rows at a time give what a row-by-row check
        /// gives, in line order, the rows of the wrong length in their place among them.
        #[test]
        fn ids_and_emails_checked_by_batch_are_found_as_row_by_row(
            rows in proptest::collection::vec((0u8..6, 0u8..8, any::<bool>(), 0u8..12), 1..160),
        ) {
            let rows: Vec<(u8, u8, bool, bool)> =
                rows.into_iter().map(|(i, e, x, w)| (i, e, x, w != 0)).collect();
            let mut text = String::from("employee_id,email,status\n");
            for &(id, email, inactive, whole) in &rows {
                let id = if id == 0 { String::new() } else { format!("E{id}") };
                let email = match email {
                    0 => String::new(),
                    1 => "not-an-email".to_owned(),
                    6 | 7 => format!("U{}@EXAMPLE.com", email - 4),
                    n => format!("u{n}@example.com"),
                };
                let status = if inactive { "terminated" } else { "active" };
                if whole {
                    text.push_str(&format!("{id},{email},{status}\n"));
                } else {
                    text.push_str(&format!("{id},{email}\n"));
                }
            }
            let errors = match crate::core::roster::parse(text.as_bytes(), &RosterOptions::default()) {
                Ok(_) => Vec::new(),
                Err(r) => r.errors,
            };
            let found: Vec<(u64, Option<&str>)> = places(&errors)
                .into_iter()
                .map(|(line, column)| (line.expect("a row's line"), column))
                .collect();
            prop_assert_eq!(found, row_by_row(&rows));
        }

        /// The shortcut of `trim` gives what `str::trim` gives, Unicode spaces and the
        /// vertical tab (a space to `char`, not to `u8::is_ascii_whitespace`) included.
        #[test]
        fn trim_is_str_trim(s in "[ \t\n\r\u{b}\u{c}\u{85}\u{a0}\u{3000}aé€]{0,6}") {
            prop_assert_eq!(super::trim(&s), s.trim());
        }
    }

    /// A row's finding names a long header cut to [`MAX_COLUMN_SHOWN`] characters: named in
    /// full by each of a thousand findings, a 100 KB header had given 200 MB of reports.
    #[test]
    fn a_long_header_is_named_cut_short_by_each_rows_finding() {
        use crate::core::model::MAX_COLUMN_SHOWN;
        let long = format!("Note{}", ".".repeat(100_000));
        let mut text = format!("employee_id,email,{long}\n");
        for i in 0..50 {
            text.push_str(&format!("E{i},e{i}@example.com\n"));
        }
        let r = rejected(&text);
        assert_eq!(r.errors.len(), 50);
        for e in &r.errors {
            let column = e.column.as_deref().unwrap();
            assert_eq!(column.chars().count(), MAX_COLUMN_SHOWN + 1, "{column}");
            assert!(column.starts_with("Note....") && column.ends_with('…'));
        }
        let short = rejected("employee_id,email,Note\nE1,e1@example.com\n");
        assert_eq!(places(&short.errors), [(Some(2), Some("Note"))]);
        // Columns repeating it (`note` means `Note...`) name both headers cut short too.
        let repeated = format!("employee_id,email,{long},note,note\nE1,e1@example.com,,,\n");
        let r = rejected(&repeated);
        assert_eq!(r.errors.len(), 2);
        for e in &r.errors {
            assert!(e.message.len() < 400, "{}", e.message);
            assert!(e.message.contains("…\" and \"note\""), "{}", e.message);
        }
    }

    #[test]
    fn a_line_of_only_spaces_is_a_row_like_any_other() {
        let r = rejected("employee_id,email\n1,a@example.com\n   \n2,b@example.com\n");
        assert_eq!(places(&r.errors), [(Some(3), Some("email"))]);
        assert_eq!(
            r.errors[0].message,
            "wrong number of fields: expected 2 (as in the header), got 1; the line is blank but \
             for spaces; delete it"
        );
        assert_eq!(r.rows, 3);
        // With a single column it is a row with an empty employee_id.
        let opts = RosterOptions::default();
        let r = rejected_with(b"employee_id\n1\n  \n", &opts);
        assert_eq!(
            places(&r.errors),
            [(Some(1), Some("email")), (Some(3), Some("employee_id"))]
        );
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_an_error_at_the_column_it_breaks() {
        let r = rejected(
            "employee_id,email,name\n1,a@example.com\n2,b@example.com,Bo,extra\n3,c@example.com,Cy\n",
        );
        // The first column it lacks; with fields past the header's, the header's last.
        assert_eq!(
            places(&r.errors),
            [(Some(2), Some("name")), (Some(3), Some("name"))]
        );
        assert!(
            r.errors[0]
                .message
                .starts_with("wrong number of fields: expected 3 (as in the header), got 2"),
            "{}",
            r.errors[0].message
        );
        assert!(
            r.errors[0]
                .message
                .ends_with("got 2; a value or a \",\" is probably missing"),
            "{}",
            r.errors[0].message
        );
        assert!(
            r.errors[1].message.ends_with(
                "got 4; a value probably contains a \",\"; put that value in double quotes"
            ),
            "{}",
            r.errors[1].message
        );
        // An empty header (a trailing delimiter) is named by its place.
        let r = rejected("employee_id,email,\nE1,a@x.io,\nE2,b@x.io\n");
        assert_eq!(places(&r.errors)[0], (Some(3), Some("column 3")));
    }

    #[test]
    fn a_wrong_field_count_after_a_quoted_multiline_field_names_the_record_start() {
        let r = rejected(
            "employee_id,email,note\n1,a@example.com,\"one\ntwo\"\n2,b@example.com,\"x\ny\",z\n",
        );
        assert_eq!(places(&r.errors), [(Some(4), Some("note"))]);
        assert!(
            r.errors[0].message.contains("runs over lines 4–5"),
            "{}",
            r.errors[0].message
        );
    }

    #[test]
    fn an_empty_employee_id_is_an_error_in_its_column_as_written() {
        let r = rejected("Emp ID,email\n  ,a@example.com\n\"\",b@example.com\n3,c@example.com\n");
        assert_eq!(
            places(&r.errors),
            [(Some(2), Some("Emp ID")), (Some(3), Some("Emp ID"))]
        );
    }

    #[test]
    fn an_employee_id_no_path_can_name_is_an_error() {
        let r = rejected(
            "Emp ID,email,status\n.,a@example.com,active\n..,b@example.com,\n...,c@example.com,\n",
        );
        assert_eq!(
            places(&r.errors),
            [(Some(2), Some("Emp ID")), (Some(3), Some("Emp ID"))]
        );
        assert!(
            r.errors[0].message.contains("cannot name an account"),
            "{:?}",
            r.errors
        );
        // A leaver's row gets no account: it passes (a rejected roster keeps every leaver's
        // admin rights).
        let opts = crate::core::roster::RosterOptions::default();
        let leaver = "Emp ID,email,status\n1,a@example.com,active\n..,,Terminated\n";
        assert!(crate::core::roster::parse(leaver.as_bytes(), &opts).is_ok());
    }

    #[test]
    fn two_active_employees_sharing_an_email_reject_the_file_at_the_second_line() {
        // Issue 10 point 8: the email is one person's SSO identity (case-insensitive).
        let r = rejected(
            "employee_id,Work Email,status\n1,Ann@Example.com,active\n2,b@example.com,active\n\
             3,ann@example.COM,active\n4,ÄNN@example.com,\n5,änn@example.com,\n",
        );
        assert_eq!(
            places(&r.errors),
            [(Some(4), Some("Work Email")), (Some(6), Some("Work Email"))]
        );
        assert!(
            r.errors[0].message.contains("line 2"),
            "{}",
            r.errors[0].message
        );
        assert!(
            r.errors[1].message.contains("line 5"),
            "{}",
            r.errors[1].message
        );
    }

    #[test]
    fn an_inactive_employee_may_share_an_email_with_an_active_one() {
        let r = ok(
            "employee_id,email,status\n1,a@example.com,terminated\n2,A@example.com,active\n\
             3,a@example.com,inactive\n",
        );
        assert_eq!(ids(&r), ["1", "2", "3"]);
    }

    #[test]
    fn a_duplicate_employee_id_names_the_line_it_was_first_on() {
        let r = rejected(
            "employee_id,email\n1,a@example.com\n2,b@example.com\n 1 ,c@example.com\n1,d@example.com\n",
        );
        assert_eq!(
            places(&r.errors),
            [
                (Some(4), Some("employee_id")),
                (Some(5), Some("employee_id"))
            ]
        );
        assert_eq!(
            r.errors[0].message,
            "employee_id \"1\" already appears on line 2; each employee must have exactly one row"
        );
        assert!(r.errors[1].message.contains("line 2"));
    }

    #[test]
    fn employee_ids_compare_exactly_after_trimming() {
        let r = ok(
            "employee_id,email\n007,a@example.com\n7,b@example.com\n 07 ,c@example.com\nA7,d@example.com\na7,e@example.com\n",
        );
        assert_eq!(ids(&r), ["007", "7", "07", "A7", "a7"]);
    }

    #[test]
    fn an_empty_email_is_an_error_only_for_employees_who_are_not_inactive() {
        let text = "employee_id,Work Email,Status\n\
                    1,,Active\n\
                    2,,Terminated\n\
                    3,,\n\
                    4, ,  INACTIVE \n\
                    5,e@example.com,\n";
        let r = rejected(text);
        assert_eq!(
            places(&r.errors),
            [(Some(2), Some("Work Email")), (Some(4), Some("Work Email"))]
        );
        // Without a status column nobody is inactive.
        let r = rejected("employee_id,email\n1,\n");
        assert_eq!(places(&r.errors), [(Some(2), Some("email"))]);
    }

    #[test]
    fn inactive_rows_may_leave_email_empty_or_malformed() {
        let r = ok(
            "employee_id,email,status\n1,a@example.com,active\n2,,separated\n3,not-an-email,Deceased\n",
        );
        assert_eq!(ids(&r), ["1", "2", "3"]);
        let inactive: Vec<bool> = r.employees.iter().map(|e| e.inactive).collect();
        assert_eq!(inactive, [false, true, true]);
        assert_eq!(r.employees[1].email(), "");
    }

    #[test]
    fn email_well_formedness() {
        for good in ["a@example.com", "first.last+tag@sub.example.co.uk", "A@B.C"] {
            ok(&format!("employee_id,email\n1,{good}\n"));
        }
        let cases: &[(&str, &str)] = &[
            ("bob@", "nothing comes after the @"),
            ("bob", "it has no @"),
            ("@example.com", "nothing comes before the @"),
            ("a@@example.com", "it has more than one @"),
            ("a@b@example.com", "it has more than one @"),
            ("a@localhost", "the domain has no dot"),
            ("a b@example.com", "it contains whitespace"),
            ("a@exa\tmple.com", "it contains whitespace"),
            ("a@exa\u{A0}mple.com", "it contains whitespace"),
        ];
        for (email, why) in cases {
            let r = rejected(&format!("employee_id,email\n1,\"{email}\"\n"));
            assert_eq!(places(&r.errors), [(Some(2), Some("email"))], "{email:?}");
            assert!(
                r.errors[0].message.contains(why),
                "{email:?}: {}",
                r.errors[0].message
            );
        }
        let r = rejected("employee_id,email\n1,bob@\n");
        assert_eq!(places(&r.errors), [(Some(2), Some("email"))]);
        assert_eq!(
            r.errors[0].message,
            "email \"bob@\" is not a well-formed address: nothing comes after the @ (it needs a \
             local part, one @ and a domain with a dot, and no spaces)"
        );
        // Surrounding spaces are trimmed, not whitespace inside the address.
        assert_eq!(
            ok("employee_id,email\n1,  a@example.com \n").employees[0].email(),
            "a@example.com"
        );
    }

    #[test]
    fn status_is_compared_case_insensitively_against_inactive_statuses() {
        let opts = RosterOptions {
            inactive_statuses: vec!["Ausgeschieden".into(), "RÉSILIÉ".into()],
            ..RosterOptions::default()
        };
        let text = "employee_id,email,Worker Status\n\
                    1,,ausgeschieden\n\
                    2,, AUSGESCHIEDEN \n\
                    3,,résilié\n\
                    4,,Résilié\n\
                    5,e@example.com,terminated\n\
                    6,f@example.com,aktiv\n";
        let r = ok_with(text.as_bytes(), &opts);
        let inactive: Vec<bool> = r.employees.iter().map(|e| e.inactive).collect();
        assert_eq!(inactive, [true, true, true, true, false, false]);
    }

    /// A status that shows as an inactive one is one: with a character that shows as
    /// nothing (a zero-width space, a byte order mark), or with its accents decomposed.
    /// Each had counted as active, the leaver keeping their admin rights.
    #[test]
    fn a_status_that_shows_as_an_inactive_one_is_one() {
        let opts = RosterOptions {
            inactive_statuses: vec!["terminated".into(), "Résilié".into()],
            ..RosterOptions::default()
        };
        let text = "employee_id,email,status\n\
                    1,,Terminated\u{200b}\n\
                    2,,\u{feff}Terminated\n\
                    3,,Term\u{ad}inated\n\
                    4,,Re\u{301}silie\u{301}\n\
                    5,e@x.io,Terminate\n";
        let r = ok_with(text.as_bytes(), &opts);
        let inactive: Vec<bool> = r.employees.iter().map(|e| e.inactive).collect();
        assert_eq!(inactive, [true, true, true, true, false]);
    }

    #[test]
    fn default_inactive_statuses_are_the_four_of_the_spec() {
        let r = ok(
            "employee_id,email,status\n1,,Terminated\n2,,INACTIVE\n3,,separated\n4,,deceased\n5,e@x.io,on leave\n",
        );
        let inactive: Vec<bool> = r.employees.iter().map(|e| e.inactive).collect();
        assert_eq!(inactive, [true, true, true, true, false]);
    }

    #[test]
    fn nothing_in_a_cell_is_interpreted() {
        let text = "employee_id,email,note\n\
                    =1+1,a@example.com,\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"\n\
                    @SUM(A1),b@example.com,+cmd|' /C calc'!A0\n";
        let r = ok_with(text.as_bytes(), &needing(&["note"]));
        assert_eq!(ids(&r), ["=1+1", "@SUM(A1)"]);
        assert_eq!(r.value(0, 0), "=hyperlink(\"http://evil\",\"x\")");
        assert_eq!(r.value(1, 0), "+cmd|' /c calc'!a0");
    }
}
