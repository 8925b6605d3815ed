//! Roster parsing (SPEC §1): bytes -> a validated `Roster`, or everything wrong with the file.
//!
//! One pass over the decoded text: `decode` turns bytes into text, `lines` finds the
//! delimiter and counts physical lines, `header` reads the header row and `rows` checks
//! each data row; the parser here drives them and collects the findings.

mod decode;
mod halves;
mod header;
mod keys;
mod lines;
mod rows;
mod spans;

use csv::{ByteRecord, ReaderBuilder, Terminator};

use self::header::Header;
use self::keys::KeyIndex;
use self::lines::{Lines, QuoteFault, detect_delimiter, quote_fault, skip_line_ends};
use self::rows::{Repeats, Rows};
use super::columns::{self, Columns};
use super::model::{Employee, Finding, Interner, Roster, Sym};
use super::org;

pub use self::decode::Encoding;
pub use self::spans::{Records, delimiter};

/// How many lines (as findings count them) end in `text`, which starts at a line's start
/// and ends after a whole line end: a record's bytes with its line end.
pub fn line_breaks(text: &[u8]) -> u64 {
    Lines::new(text).at(text.len()) - 1
}

/// What `parse` needs to know beyond the bytes: config values and the fields rules use.
#[derive(Debug, Clone)]
pub struct RosterOptions {
    /// How to decode the bytes.
    pub encoding: Encoding,
    /// `employment_status` values that mean the employee has left (compared folded).
    pub inactive_statuses: Vec<String>,
    /// The alias table: defaults plus config `roster.columns`.
    pub columns: Columns,
    /// Larger files are rejected before decoding.
    pub max_bytes: u64,
    /// Files with more data rows are rejected.
    pub max_rows: u64,
    /// Field names as written in enabled rules; their folded values are kept.
    pub needed_fields: Vec<String>,
}

impl Default for RosterOptions {
    fn default() -> Self {
        Self {
            encoding: Encoding::Auto,
            inactive_statuses: ["terminated", "inactive", "separated", "deceased"]
                .map(String::from)
                .to_vec(),
            columns: Columns::default(),
            max_bytes: 512 * 1024 * 1024,
            max_rows: 5_000_000,
            needed_fields: Vec::new(),
        }
    }
}

/// Why a file was rejected: its errors (the first `MAX_ERRORS`), and what else was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The errors, in the order found: header first, then rows in file order.
    pub errors: Vec<Finding>,
    /// How many more errors there were beyond `errors`.
    pub more_errors: usize,
    /// Warnings found before the file was rejected.
    pub warnings: Vec<Finding>,
    /// Data rows read (stops counting where reading stopped, e.g. past `max_rows`).
    pub rows: usize,
}

/// At most this many errors are listed; `Rejection::more_errors` counts the rest.
pub const MAX_ERRORS: usize = 1000;

/// At most this many roster warnings are listed; one more warning counts the rest.
pub const MAX_WARNINGS: usize = 1000;

/// Parses and validates a roster file: a `Roster` when it can be applied, else every error.
pub fn parse(bytes: &[u8], opts: &RosterOptions) -> Result<Roster, Rejection> {
    check(bytes, opts).map(Checked::finish)
}

/// A roster whose rows are read and checked, and which owns all it keeps of the file: the
/// file's bytes can go before [`Checked::finish`] builds the manager graph (at a million rows
/// the file is ~116 MB and the graph's index ~60 MB, so they need not be held together).
pub struct Checked {
    employees: Vec<Employee>,
    values: Vec<Sym>,
    symbols: Interner,
    fields: Vec<String>,
    present: Vec<String>,
    warnings: Vec<Finding>,
    email_column: String,
    manager_column: String,
    /// The rows of each employee ID, for the manager graph.
    ids: KeyIndex,
    /// Where each row's record starts in the decoded text.
    starts: Vec<u32>,
    /// Where the decoded text starts in the file when it is the file's own bytes (after a
    /// byte-order mark); `None` when it was transcoded.
    text_offset: Option<usize>,
    /// See `Roster::status_blank`.
    status_blank: bool,
    /// See `Roster::mixed_encoding`.
    mixed_encoding: Option<String>,
}

impl Checked {
    /// The roster, with `is_manager` derived and the manager graph's warnings after the
    /// rows' (SPEC §1).
    pub fn finish(mut self) -> Roster {
        let ids = &self.ids;
        let (graph, managers) =
            org::derive(&mut self.employees, &self.manager_column, &|all, id| {
                ids.row_of(all, id)
            });
        self.warnings.extend(graph);
        Roster {
            managers,
            ..self.into_roster()
        }
    }

    /// The roster of rows read out of a larger file ([`parse_records`]), each row's
    /// `is_manager` as `is_manager` says (the file's manager graph is not these rows'), with
    /// only the findings of its rows.
    pub fn finish_given(mut self, is_manager: impl Fn(usize) -> bool) -> Roster {
        for (row, e) in self.employees.iter_mut().enumerate() {
            e.is_manager = is_manager(row);
        }
        self.into_roster()
    }

    /// The roster of what was read, without the manager graph's rows.
    fn into_roster(self) -> Roster {
        Roster {
            rows: self.employees.len(),
            fields: self.fields,
            present: self.present,
            employees: self.employees,
            values: self.values,
            symbols: self.symbols,
            warnings: self.warnings,
            email_column: self.email_column,
            starts: self.starts,
            text_offset: self.text_offset,
            managers: Vec::new(),
            status_blank: self.status_blank,
            mixed_encoding: self.mixed_encoding,
        }
    }

    /// The rows read, in file order (their `is_manager` not derived yet).
    pub fn employees(&self) -> &[Employee] {
        &self.employees
    }

    /// Whether anything was found about the rows (the file is still applied).
    pub fn has_warnings(&self) -> bool {
        !self.warnings.is_empty()
    }

    /// Whether the text read is the file's own bytes (not transcoded).
    pub fn is_plain(&self) -> bool {
        self.text_offset.is_some()
    }

    /// Where the decoded text starts in the file when it is the file's own bytes.
    pub fn text_offset(&self) -> Option<usize> {
        self.text_offset
    }

    /// Where each row's record starts in the decoded text.
    pub fn starts(&self) -> &[u32] {
        &self.starts
    }

    /// The manager ID column's header as written (what the manager graph's findings name).
    pub fn manager_column(&self) -> &str {
        &self.manager_column
    }
}

/// Reads the records of `rows` (indexes into `starts`, increasing) out of `text`, whose
/// records start at `starts` (the last ends at `end`), as a file of `header` (the bytes
/// before the first record, byte-order mark included) and those records. For the rows of a
/// roster that changed since the last one: read and checked as every file is.
pub fn parse_records(
    header: &[u8],
    text: &[u8],
    starts: &[u32],
    end: u32,
    rows: &[u32],
    opts: &RosterOptions,
) -> Result<Checked, Rejection> {
    let span = |row: usize| {
        let next = starts.get(row + 1).copied().unwrap_or(end);
        &text[starts[row] as usize..next as usize]
    };
    let mut file = header.to_vec();
    for &row in rows {
        if !file.ends_with(b"\n") && !file.ends_with(b"\r") {
            file.push(b'\n');
        }
        file.extend_from_slice(span(row as usize));
    }
    check(&file, opts)
}

/// [`parse`] up to the manager graph: every check of the file, nothing that needs only the rows.
pub fn check(bytes: &[u8], opts: &RosterOptions) -> Result<Checked, Rejection> {
    if bytes.len() as u64 > opts.max_bytes {
        return Err(Rejection::only(Finding::file(format!(
            "the file is {} bytes, more than roster.max_bytes ({}); split the roster or raise \
             the limit",
            bytes.len(),
            opts.max_bytes
        ))));
    }
    let text = decode::decode(bytes, opts.encoding).map_err(Rejection::only)?;
    let text_offset = match &text {
        std::borrow::Cow::Borrowed(text) => Some(bytes.len() - text.len()),
        std::borrow::Cow::Owned(_) => None,
    };
    // Read as Windows-1252 by `auto` (transcoded): whether it holds UTF-8 text too.
    let mixed = match (text_offset, opts.encoding) {
        (None, decode::Encoding::Auto) => decode::mixed_utf8(bytes),
        _ => None,
    };
    let text = &*text;
    let checked = halves::parse(text, opts).unwrap_or_else(|| Parser::new(text, opts).run());
    checked.map(|mut checked| {
        if let Some((line, why)) = mixed {
            checked.warnings.insert(0, Finding::line(line, why.clone()));
            checked.mixed_encoding = Some(why);
        }
        Checked {
            text_offset,
            ..checked
        }
    })
}

/// The field keys of the file's header row, as `Roster::present` would list them, without
/// reading the data rows; `None` when the file is too large, cannot be decoded or has no
/// header. For callers that must know which columns exist before choosing `needed_fields`.
pub fn header_keys(bytes: &[u8], opts: &RosterOptions) -> Option<Vec<String>> {
    Some(header_of(bytes, opts)?.present)
}

/// The column of `employee_id` in the file's header row, found as the parser finds it;
/// `None` as [`header_keys`] gives `None`, or when the header has no such column.
pub fn employee_id_column(bytes: &[u8], opts: &RosterOptions) -> Option<usize> {
    header_of(bytes, opts)?.employee_id
}

/// Whether the file's employment status column has a cell that is not blank, among the
/// records of `bytes` (the head of a file, cut at a line end); `None` when it has no such
/// column or no header, as [`header_keys`] gives `None`.
pub fn has_a_status(bytes: &[u8], opts: &RosterOptions) -> Option<bool> {
    if bytes.len() as u64 > opts.max_bytes {
        return None;
    }
    let text = decode::decode(bytes, opts.encoding).ok()?;
    let delimiter = detect_delimiter(&text);
    let status = first_header(&text, delimiter, opts)?.status?;
    let mut reader = csv_reader(&*text, delimiter);
    let mut record = ByteRecord::new();
    let mut header = true;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        let cell = record.get(status).map(|c| String::from_utf8_lossy(c));
        if !std::mem::take(&mut header) && cell.is_some_and(|c| !c.trim().is_empty()) {
            return Some(true);
        }
    }
    Some(false)
}

fn header_of(bytes: &[u8], opts: &RosterOptions) -> Option<Header> {
    if bytes.len() as u64 > opts.max_bytes {
        return None;
    }
    let text = decode::decode(bytes, opts.encoding).ok()?;
    let text = &*text;
    first_header(text, detect_delimiter(text), opts)
}

/// A csv reader of `text` set up as the parser reads a roster: no header row of its own,
/// records of any length, any line end. Whatever reads records apart from the parser (the
/// header alone, a re-sync's records, [`spans`]) reads them with it, so that they agree.
fn csv_reader<R: std::io::Read>(text: R, delimiter: u8) -> csv::Reader<R> {
    ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .terminator(Terminator::CRLF)
        .from_reader(text)
}

/// Whether a record of `raw` bytes (its line end left out) had a quoted field: csv gives
/// the fields of an unquoted one as they are written, so their bytes and delimiters add up
/// to the record's bytes; quotes taken off make them fewer.
fn quoted(record: &ByteRecord, raw: usize) -> bool {
    record.as_slice().len() + record.len().saturating_sub(1) != raw
}

/// The header row of the decoded text, read on its own; its findings are the parser's
/// business, so none are kept here.
fn first_header(text: &[u8], delimiter: u8, opts: &RosterOptions) -> Option<Header> {
    let mut reader = csv_reader(text, delimiter);
    let mut record = ByteRecord::new();
    if !reader.read_byte_record(&mut record).ok()? {
        return None;
    }
    let (mut errors, mut warnings) = (Capped::new(0), Capped::new(0));
    Some(Header::read(&record, 1, opts, &mut errors, &mut warnings))
}

/// The LFs in `text`.
fn line_feeds(text: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', text).count()
}

/// At most how many data rows a text with `line_feeds` LFs holds as far as it matters: one
/// per line, and one past `max_rows` (where reading stops).
fn most_rows(line_feeds: usize, opts: &RosterOptions) -> usize {
    (line_feeds + 1).min(usize::try_from(opts.max_rows.saturating_add(1)).unwrap_or(usize::MAX))
}

impl Rejection {
    fn only(error: Finding) -> Self {
        Self {
            errors: vec![error],
            more_errors: 0,
            warnings: Vec::new(),
            rows: 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------
// The parser

/// A list of findings capped at a maximum, counting the ones beyond.
struct Capped {
    list: Vec<Finding>,
    more: usize,
    cap: usize,
}

impl Capped {
    fn new(cap: usize) -> Self {
        Self {
            list: Vec::new(),
            more: 0,
            cap,
        }
    }

    fn push(&mut self, finding: Finding) {
        if self.list.len() < self.cap {
            self.list.push(finding);
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The listed findings, plus one that counts the rest (for warnings).
    fn into_summarized(mut self) -> Vec<Finding> {
        if self.more > 0 {
            self.list
                .push(Finding::not_listed(self.more, "warnings", ""));
        }
        self.list
    }
}

/// One pass over the decoded text (or one part of it), collecting the findings and the
/// employees.
struct Parser<'a> {
    text: &'a [u8],
    opts: &'a RosterOptions,
    lines: Lines<'a>,
    delimiter: u8,
    errors: Capped,
    warnings: Capped,
    employees: Rows,
    header: Option<Header>,
    /// Data rows read.
    rows: u64,
    /// Last physical line of the previous record (0 before the first).
    previous_end: u64,
    /// Where `text` starts in the whole decoded text.
    base: usize,
    /// Where each data record starts in the whole decoded text.
    starts: Vec<u32>,
}

/// Reading stopped before the end: more than `max_rows` data rows.
struct TooManyRows;

impl<'a> Parser<'a> {
    fn new(text: &'a [u8], opts: &'a RosterOptions) -> Self {
        let room = most_rows(line_feeds(text), opts);
        Self::with_room(text, opts, detect_delimiter(text), room, Repeats::AsRead)
    }

    /// A parser of `text` with room for `room` rows (see [`Rows::reserve`]), finding
    /// repeated IDs and emails as `repeats` says.
    fn with_room(
        text: &'a [u8],
        opts: &'a RosterOptions,
        delimiter: u8,
        room: usize,
        repeats: Repeats,
    ) -> Self {
        let mut employees = Rows::new(&opts.inactive_statuses, repeats);
        employees.reserve(room);
        Self {
            text,
            opts,
            lines: Lines::new(text),
            delimiter,
            errors: Capped::new(MAX_ERRORS),
            warnings: Capped::new(MAX_WARNINGS),
            employees,
            header: None,
            rows: 0,
            previous_end: 0,
            base: 0,
            starts: Vec::with_capacity(room),
        }
    }

    /// A parser of the data rows in `text`, a part of a file that starts on `line` at the
    /// start of a record (at `base` in the file's text), after the record that ends on
    /// `line - 1`; `header` is the file's.
    #[allow(clippy::too_many_arguments)]
    fn part(
        text: &'a [u8],
        base: usize,
        opts: &'a RosterOptions,
        delimiter: u8,
        line: u64,
        header: Header,
        room: usize,
    ) -> Self {
        Self {
            lines: Lines::starting_at(text, line),
            header: Some(header),
            previous_end: line - 1,
            base,
            ..Self::with_room(text, opts, delimiter, room, Repeats::Later)
        }
    }

    fn run(mut self) -> Result<Checked, Rejection> {
        match self.read() {
            Ok(()) => self.finish(),
            Err(TooManyRows) => Err(self.reject()),
        }
    }

    /// Reads every record of the text.
    fn read(&mut self) -> Result<(), TooManyRows> {
        let mut reader = csv_reader(self.text, self.delimiter);
        let mut record = ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => {
                    self.check_pending();
                    return Ok(());
                }
                Err(e) => {
                    self.check_pending();
                    // Unreachable for bytes in memory with `flexible`; still, never panic.
                    self.errors.push(Finding::file(format!(
                        "the file cannot be read as CSV: {e}"
                    )));
                    return Ok(());
                }
            }
            let end = reader.position().byte() as usize;
            self.record(&record, end)?;
        }
    }

    /// Takes one record, which ends just before `end`.
    fn record(&mut self, record: &ByteRecord, end: usize) -> Result<(), TooManyRows> {
        let resumed = record.position().map_or(0, |p| p.byte() as usize);
        let start = skip_line_ends(self.text, resumed);
        let line = self.lines.at(start);
        self.empty_lines(self.previous_end + 1, line - 1);
        // A record whose fields are its bytes less its delimiters has no quoted field: the
        // quoting of the others is checked (a quote left open runs to the end of the file,
        // or to any later quote that text follows), and the last record's always.
        let last = end >= self.text.len();
        // A record read without quotes is checked too when it holds one (` "E1"`).
        let raw = &self.text[start..end.min(self.text.len())];
        let fault =
            match last || quoted(record, end - start - 1) || memchr::memchr(b'"', raw).is_some() {
                true => quote_fault(raw, self.delimiter),
                false => None,
            };
        // The line of a closing quote at fault (lines are asked for in order).
        let closed = match fault {
            Some(QuoteFault::TextAfterClose(_, at)) => self.lines.at(start + at),
            _ => line,
        };
        // `end` is just past the first byte of the record's line end (or the end of
        // the file), so the byte before it is on the record's last line.
        self.previous_end = self.lines.at(end.saturating_sub(1).max(start));
        if let Some(fault) = &fault {
            self.check_pending();
            self.quote_fault(fault, line, closed);
        }
        let Some(h) = &self.header else {
            self.header = Some(Header::read(
                record,
                line,
                self.opts,
                &mut self.errors,
                &mut self.warnings,
            ));
            return Ok(());
        };
        self.rows += 1;
        if self.rows > self.opts.max_rows {
            self.check_pending();
            self.errors.push(Finding::file(format!(
                "the file has more than {} data rows (roster.max_rows); split the \
                 roster or raise the limit",
                self.opts.max_rows
            )));
            return Err(TooManyRows);
        }
        // Past 4 GiB (far over `roster.max_bytes`) the offset is wrong, and never used: a
        // record's span is compared byte for byte before it is trusted.
        self.starts.push((self.base + start) as u32);
        if fault.is_none() {
            self.employees.push(
                h,
                record,
                line,
                self.previous_end,
                self.delimiter,
                &mut self.errors,
            );
        }
        Ok(())
    }

    /// Checks the IDs and emails of the rows read since the last check (see
    /// [`Rows::push`]): before any other error is pushed, and once every record is read.
    fn check_pending(&mut self) {
        if let Some(h) = &self.header {
            self.employees.check_pending(h, &mut self.errors);
        }
    }

    /// The roster, or the rejection, once every record is read.
    fn finish(mut self) -> Result<Checked, Rejection> {
        let (rows, header) = (self.rows, self.header.take());
        self.trailing_lines(self.previous_end, header.is_some());
        let Some(header) = header else {
            self.errors.push(Finding::file(
                "the file is empty: there is no header row; export the roster with its header",
            ));
            return Err(self.reject());
        };
        if rows == 0 {
            self.errors.push(Finding::file(
                "the file has a header but no data rows; a roster must list every employee",
            ));
        }
        if !self.errors.is_empty() {
            return Err(self.reject());
        }
        let status_blank = header.status.is_some() && !self.employees.status_seen();
        let (employees, values, symbols, ids) = self.employees.into_parts();
        let column =
            |c: Option<usize>, default: &str| c.map_or(default, |c| header.name(c)).to_owned();
        Ok(Checked {
            employees,
            values,
            symbols,
            ids,
            manager_column: column(header.manager_id, columns::MANAGER_ID),
            email_column: column(header.email, columns::EMAIL),
            warnings: self.warnings.into_summarized(),
            fields: header.field_keys,
            present: header.present,
            starts: self.starts,
            text_offset: None,
            status_blank,
            mixed_encoding: None,
        })
    }

    /// The error for a last record that ends inside quotes: csv read it to the end of the
    /// file, swallowing every row after the quote, and possibly with the right field count.
    /// The error for a record starting on `line` whose quoting is at fault (a quote
    /// followed by text on line `closed`).
    fn quote_fault(&mut self, fault: &QuoteFault, line: u64, closed: u64) {
        let last = self.previous_end;
        let (field, message) = match *fault {
            QuoteFault::Unclosed(field) => {
                let read = match last > line {
                    true => format!(", so lines {line}–{last} were read as one row"),
                    false => String::new(),
                };
                (
                    field,
                    format!(
                        "a quote opened in field {} of this row is never closed{read}; close or \
                         remove the quote",
                        field + 1
                    ),
                )
            }
            QuoteFault::SpacedOpen(field) => (
                field,
                format!(
                    "field {} of this row has spaces before its opening quote, so the quotes \
                     would be read as part of the value; remove the spaces before the quote",
                    field + 1
                ),
            ),
            QuoteFault::TextAfterClose(field, _) => {
                let read = match closed > line {
                    true => format!(", so lines {line}–{last} were read as one row"),
                    false => String::new(),
                };
                (
                    field,
                    format!(
                        "a quote opened in field {} of this row is closed on line {closed} by \
                         a quote followed by text{read}; close the quote where the value \
                         ends, and double a quote inside a quoted value (\"\")",
                        field + 1
                    ),
                )
            }
        };
        self.errors.push(Finding {
            line: Some(line),
            column: self
                .header
                .as_ref()
                .and_then(|h| h.written.get(field))
                .cloned(),
            message,
        });
    }

    /// Warns about the empty lines after the last record (`previous_end`).
    fn trailing_lines(&mut self, previous_end: u64, header_seen: bool) {
        let last = self.lines.last();
        if previous_end >= last {
            return;
        }
        let (from, count) = (previous_end + 1, last - previous_end);
        if !header_seen {
            self.empty_lines(from, last);
        } else if count == 1 {
            self.warnings.push(Finding::line(
                from,
                "blank line at the end of the file ignored",
            ));
        } else {
            self.warnings.push(Finding::line(
                from,
                format!("{count} blank lines at the end of the file (lines {from}–{last}) ignored"),
            ));
        }
    }

    fn reject(self) -> Rejection {
        Rejection {
            errors: self.errors.list,
            more_errors: self.errors.more,
            warnings: self.warnings.into_summarized(),
            rows: self.rows as usize,
        }
    }

    /// Warns about the empty lines `from..=to`, one warning per run.
    fn empty_lines(&mut self, from: u64, to: u64) {
        if from > to {
            return;
        }
        self.warnings.push(Finding::line(
            from,
            if from == to {
                "empty line skipped".to_owned()
            } else {
                format!("empty lines {from}–{to} skipped")
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};

    pub(super) fn ok(text: &str) -> Roster {
        ok_with(text.as_bytes(), &RosterOptions::default())
    }

    pub(super) fn ok_with(bytes: &[u8], opts: &RosterOptions) -> Roster {
        match parse(bytes, opts) {
            Ok(r) => r,
            Err(r) => panic!("rejected: {:#?}", r.errors),
        }
    }

    #[test]
    fn each_rows_record_start_and_managers_row_are_kept() {
        let text = "\u{feff}employee_id,email,manager_id,note\r\n\
                    E1,e1@x.example,,\"two\r\nlines\"\r\n\
                    E2,e2@x.example,E1,plain\r\n\
                    E3,e3@x.example,E2,last";
        let roster = ok(text);
        let body = &text.as_bytes()[3..];
        assert_eq!(roster.text_offset, Some(3));
        let at: Vec<&str> = roster
            .starts
            .iter()
            .map(|&s| std::str::from_utf8(&body[s as usize..s as usize + 2]).unwrap())
            .collect();
        assert_eq!(at, ["E1", "E2", "E3"]);
        assert_eq!(roster.managers, [org::NO_MANAGER, 0, 1]);
        let cp1252 = parse(
            b"employee_id,email\nE\xe9,e@x.example\n",
            &RosterOptions::default(),
        );
        assert_eq!(cp1252.unwrap().text_offset, None, "transcoded");
    }

    #[test]
    fn records_read_out_of_a_file_are_read_as_a_file_of_their_own() {
        let text = "employee_id,email,manager_id\nE1,e1@x.example,\nE2,e2@x.example,E1\nE3,e3@x.example,E1";
        let roster = ok(text);
        let header = &text.as_bytes()[..roster.starts[0] as usize];
        let end = text.len() as u32;
        let some = parse_records(
            header,
            text.as_bytes(),
            &roster.starts,
            end,
            &[0, 2],
            &RosterOptions::default(),
        )
        .unwrap();
        let ids: Vec<&str> = some.employees().iter().map(|e| e.id()).collect();
        assert_eq!(ids, ["E1", "E3"]);
        assert!(!some.has_warnings() && some.is_plain());
        let given = some.finish_given(|row| row == 0);
        assert!(given.employees[0].is_manager && !given.employees[1].is_manager);
        // The last record, with no line end, first: a line end is put between records.
        let reversed = parse_records(
            header,
            text.as_bytes(),
            &roster.starts,
            end,
            &[2, 0],
            &RosterOptions::default(),
        );
        let ids: Vec<String> = reversed
            .unwrap()
            .employees()
            .iter()
            .map(|e| e.id().to_owned())
            .collect();
        assert_eq!(ids, ["E3", "E1"]);
    }

    pub(super) fn rejected(text: &str) -> Rejection {
        rejected_with(text.as_bytes(), &RosterOptions::default())
    }

    pub(super) fn rejected_with(bytes: &[u8], opts: &RosterOptions) -> Rejection {
        match parse(bytes, opts) {
            Ok(r) => panic!("accepted: {} rows, warnings {:#?}", r.rows, r.warnings),
            Err(r) => r,
        }
    }

    pub(super) type Place<'a> = (Option<u64>, Option<&'a str>);
    type OwnedPlace = (Option<u64>, Option<String>);

    pub(super) fn places(findings: &[Finding]) -> Vec<Place<'_>> {
        findings
            .iter()
            .map(|f| (f.line, f.column.as_deref()))
            .collect()
    }

    pub(super) fn ids(r: &Roster) -> Vec<&str> {
        r.employees.iter().map(|e| e.id()).collect()
    }

    pub(super) fn lines(r: &Roster) -> Vec<u64> {
        r.employees.iter().map(|e| e.line()).collect()
    }

    pub(super) fn needing(fields: &[&str]) -> RosterOptions {
        RosterOptions {
            needed_fields: fields.iter().map(|f| f.to_string()).collect(),
            ..RosterOptions::default()
        }
    }

    const HEADER: &str = "employee_id,email,manager_id,status\n";

    // --- empty lines --------------------------------------------------------------------

    #[test]
    fn empty_lines_are_skipped_with_a_warning_before_the_header_too() {
        let r = ok("\n\nemployee_id,email\n1,a@example.com\n\n2,b@example.com\n");
        assert_eq!(ids(&r), ["1", "2"]);
        assert_eq!(lines(&r), [4, 6]);
        assert_eq!(places(&r.warnings), [(Some(1), None), (Some(5), None)]);
        assert_eq!(r.warnings[0].message, "empty lines 1–2 skipped");
        assert_eq!(r.warnings[1].message, "empty line skipped");
    }

    #[test]
    fn blank_trailing_lines_are_a_warning() {
        let r = ok("employee_id,email\r\n1,a@example.com\r\n\r\n\r\n");
        assert_eq!(places(&r.warnings), [(Some(3), None)]);
        assert_eq!(
            r.warnings[0].message,
            "2 blank lines at the end of the file (lines 3–4) ignored"
        );
        let r = ok("employee_id,email\n1,a@example.com\n\n");
        assert_eq!(
            r.warnings[0].message,
            "blank line at the end of the file ignored"
        );
        // One final line end is not a blank line, nor is its absence anything.
        assert!(
            ok("employee_id,email\n1,a@example.com\n")
                .warnings
                .is_empty()
        );
        assert!(ok("employee_id,email\n1,a@example.com").warnings.is_empty());
    }

    // --- whole-file errors --------------------------------------------------------------

    #[test]
    fn a_file_without_a_header_is_an_error() {
        for text in ["", "\n", "\r\n\r\n\n"] {
            let r = rejected(text);
            assert_eq!(places(&r.errors), [(None, None)], "{text:?}");
            assert!(r.errors[0].message.contains("no header row"));
        }
        assert!(rejected("").warnings.is_empty());
        let r = rejected("\n\n");
        assert_eq!(places(&r.warnings), [(Some(1), None)]);
        assert_eq!(r.warnings[0].message, "empty lines 1–2 skipped");
    }

    #[test]
    fn zero_data_rows_is_a_whole_file_error() {
        for text in [
            "employee_id,email",
            "employee_id,email\n",
            "employee_id,email\n\n\n",
        ] {
            let r = rejected(text);
            assert_eq!(places(&r.errors), [(None, None)], "{text:?}");
            assert!(r.errors[0].message.contains("no data rows"));
            assert_eq!(r.rows, 0);
        }
    }

    #[test]
    fn a_file_larger_than_max_bytes_is_rejected_before_decoding() {
        let opts = RosterOptions {
            max_bytes: 20,
            ..RosterOptions::default()
        };
        let bytes = b"employee_id,email\n1,\0\x81@example.com\n";
        let r = rejected_with(bytes, &opts);
        assert_eq!(places(&r.errors), [(None, None)]);
        assert!(
            r.errors[0].message.contains("roster.max_bytes (20)"),
            "{}",
            r.errors[0].message
        );
        let exact = b"employee_id,email\n1,a@b.c\n";
        let opts = RosterOptions {
            max_bytes: exact.len() as u64,
            ..RosterOptions::default()
        };
        ok_with(exact, &opts);
    }

    #[test]
    fn more_than_max_rows_is_a_whole_file_error() {
        let opts = RosterOptions {
            max_rows: 2,
            ..RosterOptions::default()
        };
        ok_with(b"employee_id,email\n1,a@b.c\n2,b@b.c\n", &opts);
        let r = rejected_with(b"employee_id,email\n1,a@b.c\n2,b@b.c\n3,c@b.c\n4,\n", &opts);
        assert_eq!(places(&r.errors), [(None, None)]);
        assert!(r.errors[0].message.contains("more than 2 data rows"));
        assert_eq!(r.rows, 3);
    }

    #[test]
    fn all_errors_are_collected_header_first_then_rows() {
        let text = "employee_id,email,Email Address\n\
                    ,a@example.com,x\n\
                    2,bob@,x\n\
                    2,c@example.com,x\n\
                    3,d@example.com\n";
        let r = rejected(text);
        assert_eq!(
            places(&r.errors),
            [
                (Some(1), Some("email")),
                (Some(2), Some("employee_id")),
                (Some(3), Some("email")),
                (Some(4), Some("employee_id")),
                (Some(5), Some("Email Address")),
            ]
        );
        assert_eq!(r.more_errors, 0);
        assert_eq!(r.rows, 4);
    }

    #[test]
    fn errors_are_capped_at_max_errors_with_a_count_of_the_rest() {
        let mut text = String::from("employee_id,email\n");
        for i in 0..MAX_ERRORS + 234 {
            text.push_str(&format!(",a{i}@example.com\n"));
        }
        let r = rejected(&text);
        assert_eq!(r.errors.len(), MAX_ERRORS);
        assert_eq!(r.more_errors, 234);
        assert_eq!(r.errors[MAX_ERRORS - 1].line, Some(MAX_ERRORS as u64 + 1));
        assert_eq!(r.rows, MAX_ERRORS + 234);
    }

    #[test]
    fn warnings_are_returned_with_a_rejection() {
        let r = rejected("\nemployee_id,email,is_manager\n1,,\n\n");
        assert_eq!(places(&r.errors), [(Some(3), Some("email"))]);
        assert_eq!(
            places(&r.warnings),
            [
                (Some(1), None),
                (Some(2), Some("is_manager")),
                (Some(4), None)
            ]
        );
    }

    #[test]
    fn warnings_are_capped_with_a_count_of_the_rest() {
        let mut text = String::from("employee_id,email\n");
        for i in 0..MAX_WARNINGS + 7 {
            text.push_str(&format!("{i},a{i}@example.com\n\n"));
        }
        let r = ok(&text);
        assert_eq!(r.warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(
            r.warnings[MAX_WARNINGS].message,
            "7 more warnings (not listed)"
        );
    }

    // --- the roster ---------------------------------------------------------------------

    /// A status column blank in every row is told apart from one with a status, in a
    /// roster (`status_blank`) and in a file's head (`has_a_status`); a row's spaces are
    /// blank too.
    #[test]
    fn a_status_column_blank_in_every_row_is_told_apart() {
        let opts = RosterOptions::default();
        let blank = "\nEmployee ID;Email;Status\n1;a@x.io; \n2;b@x.io;\n";
        assert!(ok(blank).status_blank);
        assert_eq!(has_a_status(blank.as_bytes(), &opts), Some(false));
        let one = "Employee ID,Email,Status\n1,a@x.io,\n2,b@x.io,Terminated\n";
        assert!(!ok(one).status_blank);
        assert_eq!(has_a_status(one.as_bytes(), &opts), Some(true));
        let none = "Employee ID,Email\n1,a@x.io\n";
        assert!(!ok(none).status_blank);
        assert_eq!(has_a_status(none.as_bytes(), &opts), None);
    }

    #[test]
    fn header_keys_reads_only_the_header_row() {
        let header = "\nEmployee ID,Work Email,Department,,Is Manager\n";
        let good = format!("{header}1,a@example.com,Finance,,x\n");
        let r = ok(&good);
        assert_eq!(r.present.len(), 4, "{:?}", r.present);
        let defaults = RosterOptions::default();
        assert_eq!(
            header_keys(good.as_bytes(), &defaults),
            Some(r.present.clone())
        );
        // Rows the parser rejects and a needed column the header lacks: the header still reads.
        let broken = format!("{header}1,a@example.com\n2,\"open");
        let opts = needing(&["Cost Center"]);
        rejected_with(broken.as_bytes(), &opts);
        assert_eq!(header_keys(broken.as_bytes(), &opts), Some(r.present));
        assert_eq!(header_keys(b"", &defaults), None);
        assert_eq!(header_keys(b"\n\n", &defaults), None);
        let small = RosterOptions {
            max_bytes: 3,
            ..RosterOptions::default()
        };
        assert_eq!(header_keys(good.as_bytes(), &small), None);
    }

    #[test]
    fn a_valid_roster_has_its_rows_managers_and_graph_warnings() {
        let text = format!(
            "{HEADER}1,a@example.com,,active\n2,b@example.com,1,active\n3,c@example.com,9,active\n4,,3,terminated\n5,e@example.com,5,\n"
        );
        let r = ok(&text);
        assert_eq!(r.rows, 5);
        assert_eq!(ids(&r), ["1", "2", "3", "4", "5"]);
        assert_eq!(lines(&r), [2, 3, 4, 5, 6]);
        let managers: Vec<bool> = r.employees.iter().map(|e| e.is_manager).collect();
        // 3's only report is terminated, 5 manages only themselves.
        assert_eq!(managers, [true, false, false, false, false]);
        assert_eq!(
            places(&r.warnings),
            [(Some(4), Some("manager_id")), (Some(6), Some("manager_id"))]
        );
        assert!(r.fields.is_empty());
        assert!(r.values.is_empty());
    }

    #[test]
    fn graph_warnings_name_the_manager_column_as_written() {
        let r = ok("employee_id,email,Supervisor ID\n1,a@example.com,2\n");
        assert_eq!(places(&r.warnings), [(Some(2), Some("Supervisor ID"))]);
    }

    #[test]
    fn without_a_manager_id_column_nobody_is_a_manager() {
        let r = ok("employee_id,email,boss\n1,a@example.com,\n2,b@example.com,1\n");
        assert!(
            r.employees
                .iter()
                .all(|e| !e.is_manager && e.manager_id().is_empty())
        );
        assert!(r.warnings.is_empty());
    }

    // --- the corpus of broken files -----------------------------------------------------

    /// `testdata/broken` of the crate this file belongs to, wherever it is compiled from.
    fn broken_dir() -> PathBuf {
        // `file!()` is relative to the crate root in the crate itself, and absolute when
        // the file is included by path from another crate.
        let source = Path::new(file!());
        let source = if source.is_absolute() {
            source.to_path_buf()
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(source)
        };
        let root = source
            .ancestors()
            .nth(4)
            .expect("src/core/roster/mod.rs has a crate root");
        root.join("testdata/broken")
    }

    /// Reads `NAME.expected`: `LINE<TAB>COLUMN` per error (`-` for none), `#` comments,
    /// and `@needs FIELD, FIELD` for the fields enabled rules refer to.
    fn expectations(text: &str) -> (Vec<OwnedPlace>, RosterOptions) {
        let mut opts = RosterOptions::default();
        let mut expected = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(fields) = line.strip_prefix("@needs ") {
                opts.needed_fields = fields.split(',').map(|f| f.trim().to_owned()).collect();
                continue;
            }
            let (l, c) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("no tab in {line:?}"));
            let l = (l != "-").then(|| l.parse().unwrap_or_else(|_| panic!("bad line {l:?}")));
            let c = (c != "-").then(|| c.to_owned());
            expected.push((l, c));
        }
        (expected, opts)
    }

    #[test]
    fn every_broken_file_is_rejected_with_exactly_its_expected_errors() {
        let dir = broken_dir();
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        names.sort();
        assert!(
            names.len() >= 15,
            "only {} broken files in {}",
            names.len(),
            dir.display()
        );
        let mut failures = Vec::new();
        for csv in &names {
            let bytes = std::fs::read(csv).expect("read csv");
            let expected_path = csv.with_extension("expected");
            let text = std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            let (expected, opts) = expectations(&text);
            assert!(
                !expected.is_empty(),
                "{} lists no error",
                expected_path.display()
            );
            match parse(&bytes, &opts) {
                Ok(_) => failures.push(format!("{}: accepted", csv.display())),
                Err(r) => {
                    let got: Vec<OwnedPlace> = r
                        .errors
                        .iter()
                        .map(|f| (f.line, f.column.clone()))
                        .collect();
                    if got != expected {
                        failures.push(format!(
                            "{}:\n  expected {expected:?}\n  got      {got:?}\n  {:#?}",
                            csv.display(),
                            r.errors
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    // --- properties -----------------------------------------------------------------------

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes, &needing(&["department", "is_manager"]));
        }

        #[test]
        fn parse_never_panics_on_csv_like_text(
            text in "[a-d@.,;|\t\" \r\n0-2]{0,300}",
            max_rows in 0u64..5,
        ) {
            let header = format!("employee_id,email,manager_id,status,department\n{text}");
            let opts = RosterOptions { max_rows, ..needing(&["department"]) };
            let _ = parse(header.as_bytes(), &opts);
            let _ = parse(text.as_bytes(), &opts);
        }
    }

    /// One generated row: a unique id, an email, a note that may need quoting, and how
    /// many empty lines follow it.
    #[derive(Debug, Clone)]
    struct GenRow {
        email: String,
        note: Vec<&'static str>,
        empty_after: usize,
    }

    fn gen_row() -> impl Strategy<Value = GenRow> {
        let piece = prop::sample::select(vec![
            "a", "Z", " ", ",", ";", "\t", "|", "\"", "\n", "\r\n", "é", "=1+1",
        ]);
        (
            "[a-z]{1,6}@[a-z]{1,6}\\.(com|org)",
            proptest::collection::vec(piece, 0..6),
            0usize..3,
        )
            .prop_map(|(email, note, empty_after)| GenRow {
                email,
                note,
                empty_after,
            })
    }

    /// The file for `rows`, and each row's expected (line, id, email).
    fn render(rows: &[GenRow], delimiter: char, eol: &str) -> (String, Vec<(u64, String, String)>) {
        let d = delimiter;
        let mut text = format!("Employee ID{d}Note{d}Work Email{eol}");
        let mut line = 2u64;
        let mut expected = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let id = format!("0{i}");
            // The row number makes each email unique: a repeated one is an error of its own.
            let email = format!("r{i}-{}", row.email);
            let note: String = row.note.concat().replace('"', "\"\"");
            text.push_str(&format!("{id}{d}\"{note}\"{d}{email}{eol}"));
            expected.push((line, id, email));
            let breaks = row.note.iter().filter(|p| p.contains('\n')).count() as u64;
            line += 1 + breaks;
            for _ in 0..row.empty_after {
                text.push_str(eol);
                line += 1;
            }
        }
        (text, expected)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn a_generated_roster_round_trips_whatever_the_delimiter_and_line_ends(
            rows in proptest::collection::vec(gen_row(), 1..25),
            delimiter in prop::sample::select(vec![',', ';', '\t', '|']),
            eol in prop::sample::select(vec!["\n", "\r\n"]),
        ) {
            let (text, expected) = render(&rows, delimiter, eol);
            let r = match parse(text.as_bytes(), &RosterOptions::default()) {
                Ok(r) => r,
                Err(e) => return Err(TestCaseError::fail(format!("{:?}\n{text:?}", e.errors))),
            };
            let got: Vec<(u64, String, String)> = r
                .employees
                .iter()
                .map(|e| (e.line(), e.id().to_string(), e.email().to_string()))
                .collect();
            prop_assert_eq!(got, expected);
            let empty_runs = rows.iter().filter(|row| row.empty_after > 0).count();
            prop_assert_eq!(r.warnings.len(), empty_runs);
        }

        #[test]
        fn errors_name_the_line_their_record_starts_on_after_quoted_newlines(
            rows in proptest::collection::vec(gen_row(), 2..25),
            delimiter in prop::sample::select(vec![',', ';', '\t', '|']),
            eol in prop::sample::select(vec!["\n", "\r\n"]),
            pick in any::<prop::sample::Index>(),
        ) {
            // Break one row's email; the error must name exactly that row's first line.
            let k = pick.index(rows.len());
            let mut rows = rows;
            rows[k].email = "not an email".to_owned();
            let (text, expected) = render(&rows, delimiter, eol);
            let r = match parse(text.as_bytes(), &RosterOptions::default()) {
                Ok(_) => return Err(TestCaseError::fail("accepted")),
                Err(r) => r,
            };
            let got: Vec<OwnedPlace> =
                r.errors.iter().map(|f| (f.line, f.column.clone())).collect();
            prop_assert_eq!(got, vec![(Some(expected[k].0), Some("Work Email".to_owned()))]);
        }
    }
}
