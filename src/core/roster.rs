//! Roster parsing (SPEC §1): bytes -> a validated `Roster`, or everything wrong with the file.
//!
//! One pass over the decoded text. Line numbers are counted here rather than taken from
//! the csv crate, because csv's `Position::line` lags by one after a CRLF record and says
//! nothing about the empty lines it skips; both must be reported by physical line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

use csv::{ByteRecord, ReaderBuilder, Terminator};

use super::columns::{self, Columns, fold_value};
use super::model::{Employee, FastHash, Finding, Interner, Roster, Sym};
use super::org;

/// How the file's bytes are decoded (config `roster.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 (with or without BOM), else Windows-1252.
    #[default]
    Auto,
    /// UTF-8 only; anything else is not decodable.
    Utf8,
    /// Windows-1252 only.
    Windows1252,
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

/// The field key of the derived `is_manager` field.
const IS_MANAGER_KEY: &str = "ismanager";

/// Candidate delimiters, in the order that breaks ties.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Bytes that Windows-1252 leaves undefined.
const UNDEFINED_IN_1252: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses and validates a roster file: a `Roster` when it can be applied, else every error.
pub fn parse(bytes: &[u8], opts: &RosterOptions) -> Result<Roster, Rejection> {
    if bytes.len() as u64 > opts.max_bytes {
        return Err(Rejection::only(Finding::file(format!(
            "the file is {} bytes, more than roster.max_bytes ({}); split the roster or raise \
             the limit",
            bytes.len(),
            opts.max_bytes
        ))));
    }
    let text = decode(bytes, opts.encoding).map_err(Rejection::only)?;
    Parser::new(text.as_bytes(), opts).run()
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
// Decoding

/// The text of the file, or the "not decodable" error at the line of the first bad byte.
fn decode(bytes: &[u8], encoding: Encoding) -> Result<Cow<'_, str>, Finding> {
    let nul = bytes.iter().position(|&b| b == 0);
    let decoded = match encoding {
        Encoding::Auto | Encoding::Utf8 => {
            let bom = bytes.starts_with(UTF8_BOM);
            let body = if bom { &bytes[UTF8_BOM.len()..] } else { bytes };
            match std::str::from_utf8(body) {
                Ok(text) => Ok(Cow::Borrowed(text)),
                // A BOM says the file is UTF-8, so Windows-1252 would only produce mojibake.
                Err(e) if bom || encoding == Encoding::Utf8 => {
                    let at = e.valid_up_to() + if bom { UTF8_BOM.len() } else { 0 };
                    let why = if bom {
                        "the file starts with a UTF-8 byte order mark"
                    } else {
                        "roster.encoding is \"utf-8\""
                    };
                    Err((
                        at,
                        format!(
                            "byte 0x{:02X} is not valid UTF-8 and {why}; export the roster \
                             again as CSV UTF-8",
                            bytes[at]
                        ),
                    ))
                }
                Err(_) => windows_1252(bytes),
            }
        }
        Encoding::Windows1252 => windows_1252(bytes),
    };
    let bad = match (decoded, nul) {
        (Err((at, _)), Some(n)) if n < at => nul_error(n),
        (Ok(_), Some(n)) => nul_error(n),
        (Ok(text), None) => return Ok(text),
        (Err(bad), _) => bad,
    };
    Err(Finding::line(line_of(bytes, bad.0), bad.1))
}

fn nul_error(at: usize) -> (usize, String) {
    (
        at,
        "the file contains a NUL byte (0x00), so it is not a text CSV (a UTF-16 export or a \
         spreadsheet file?); export the roster as CSV UTF-8"
            .to_owned(),
    )
}

fn windows_1252(bytes: &[u8]) -> Result<Cow<'_, str>, (usize, String)> {
    if let Some(at) = bytes.iter().position(|b| UNDEFINED_IN_1252.contains(b)) {
        return Err((
            at,
            format!(
                "byte 0x{:02X} is neither valid UTF-8 nor a character of Windows-1252, so the \
                 file cannot be decoded; export the roster again as CSV UTF-8",
                bytes[at]
            ),
        ));
    }
    Ok(encoding_rs::WINDOWS_1252
        .decode_without_bom_handling(bytes)
        .0)
}

/// The physical line (1-based) of byte `at`.
fn line_of(bytes: &[u8], at: usize) -> u64 {
    let mut lines = Lines::new(bytes);
    lines.at(at)
}

// ---------------------------------------------------------------------------------------
// Lines and delimiter

/// Physical line numbers of byte offsets, asked in increasing order: linear overall.
///
/// A line ends at LF, CRLF, or a CR alone (csv ends records there too).
struct Lines<'a> {
    text: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The line of byte `offset` (which must not be before the previous call's).
    fn at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.text.len());
        debug_assert!(offset >= self.offset, "line numbers asked out of order");
        if offset > self.offset {
            let text = self.text;
            let mut breaks = 0u64;
            for i in self.offset..offset {
                breaks += match text[i] {
                    b'\n' => 1,
                    b'\r' => u64::from(text.get(i + 1) != Some(&b'\n')),
                    _ => 0,
                };
            }
            self.line += breaks;
            self.offset = offset;
        }
        self.line
    }

    /// The last line that has content or a line end (a final line end opens no new line).
    fn last(&mut self) -> u64 {
        let total = self.at(self.text.len());
        match self.text.last() {
            Some(b'\n' | b'\r') => total - 1,
            Some(_) => total,
            None => 0,
        }
    }
}

/// The first byte at or after `offset` that is not part of a line end.
fn skip_line_ends(text: &[u8], offset: usize) -> usize {
    text[offset.min(text.len())..]
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .map_or(text.len(), |p| offset + p)
}

/// The field (0-based) whose opening quote `record` never closes, reading it the way csv
/// does: a quote opens a field only at the field's start, and `""` inside quotes is a quote.
fn open_quote_field(record: &[u8], delimiter: u8) -> Option<usize> {
    let mut field = 0;
    let mut at_field_start = true;
    let mut quoted = false;
    let mut bytes = record.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if quoted {
            if b == b'"' {
                if bytes.peek() == Some(&b'"') {
                    bytes.next();
                } else {
                    quoted = false;
                }
            }
        } else if b == delimiter {
            field += 1;
            at_field_start = true;
            continue;
        } else if b == b'\n' || b == b'\r' {
            return None;
        } else if b == b'"' && at_field_start {
            quoted = true;
        }
        at_field_start = false;
    }
    quoted.then_some(field)
}

/// The delimiter occurring most often outside quotes in the header line (ties in
/// `DELIMITERS` order; none at all means `,`).
fn detect_delimiter(text: &[u8]) -> u8 {
    let start = skip_line_ends(text, 0);
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in &text[start..] {
        match b {
            // A doubled quote toggles twice, so it stays inside the quotes.
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(k) = DELIMITERS.iter().position(|&d| d == b) {
                    counts[k] += 1;
                }
            }
            _ => {}
        }
    }
    let mut best = 0;
    for k in 1..DELIMITERS.len() {
        if counts[k] > counts[best] {
            best = k;
        }
    }
    DELIMITERS[best]
}

fn delimiter_name(d: u8) -> &'static str {
    match d {
        b'\t' => "tab",
        b';' => "\";\"",
        b'|' => "\"|\"",
        _ => "\",\"",
    }
}

// ---------------------------------------------------------------------------------------
// Header

/// What the header row says: where each column of interest is and how it is written.
struct Header {
    /// Each column's header as written (trimmed), for findings.
    written: Vec<String>,
    employee_id: Option<usize>,
    email: Option<usize>,
    manager_id: Option<usize>,
    status: Option<usize>,
    /// Column of each kept field (`Roster::fields` order); `None` when missing (an error).
    fields: Vec<Option<usize>>,
}

impl Header {
    fn name(&self, column: usize) -> &str {
        &self.written[column]
    }
}

/// The name a header finding uses for a field key: the canonical name when there is one.
fn display_name(key: &str) -> &str {
    columns::DEFAULT_ALIASES
        .iter()
        .map(|(canonical, _)| *canonical)
        .find(|canonical| columns::canonical_key(canonical) == key)
        .unwrap_or(key)
}

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
            self.list.push(Finding::file(format!(
                "{} more warnings (not listed)",
                self.more
            )));
        }
        self.list
    }
}

struct Parser<'a> {
    text: &'a [u8],
    opts: &'a RosterOptions,
    lines: Lines<'a>,
    delimiter: u8,
    errors: Capped,
    warnings: Capped,
    /// Folded `inactive_statuses`.
    inactive: Vec<String>,
    fields: Vec<String>,
    present: Vec<String>,
    employees: Vec<Employee>,
    symbols: Interner,
    /// Each employee ID seen so far, by its hash: the index of its first row in `employees`
    /// (the ID itself is in that row, so nothing is allocated per row).
    seen_ids: HashMap<u64, u32, FastHash>,
    /// IDs whose hash equals that of an earlier, different ID, with their first line.
    collided_ids: HashMap<Box<str>, u64>,
    /// The folded email of each employee who is not inactive, by its hash: the index of its
    /// first row in `employees` (SPEC §1: one email is one person's SSO identity).
    seen_emails: HashMap<u64, u32, FastHash>,
    /// Folded emails whose hash equals that of an earlier, different email, with their line.
    collided_emails: HashMap<Box<str>, u64>,
    /// Reused buffers: a row's symbols, and a value being lower-cased.
    values: Vec<Sym>,
    fold_buf: String,
}

impl<'a> Parser<'a> {
    fn new(text: &'a [u8], opts: &'a RosterOptions) -> Self {
        Self {
            text,
            opts,
            lines: Lines::new(text),
            delimiter: detect_delimiter(text),
            errors: Capped::new(MAX_ERRORS),
            warnings: Capped::new(MAX_WARNINGS),
            inactive: opts
                .inactive_statuses
                .iter()
                .map(|s| fold_value(s))
                .collect(),
            fields: Vec::new(),
            present: Vec::new(),
            employees: Vec::new(),
            symbols: Interner::default(),
            seen_ids: HashMap::default(),
            collided_ids: HashMap::new(),
            seen_emails: HashMap::default(),
            collided_emails: HashMap::new(),
            values: Vec::new(),
            fold_buf: String::new(),
        }
    }

    fn run(mut self) -> Result<Roster, Rejection> {
        let mut reader = ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(true)
            .terminator(Terminator::CRLF)
            .from_reader(self.text);
        let mut record = ByteRecord::new();
        let mut header: Option<Header> = None;
        let mut rows: u64 = 0;
        // Last physical line of the previous record (0 before the first).
        let mut previous_end = 0;
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // Unreachable for bytes in memory with `flexible`; still, never panic.
                    self.errors.push(Finding::file(format!(
                        "the file cannot be read as CSV: {e}"
                    )));
                    break;
                }
            }
            let resumed = record.position().map_or(0, |p| p.byte() as usize);
            let start = skip_line_ends(self.text, resumed);
            let line = self.lines.at(start);
            self.empty_lines(previous_end + 1, line - 1);
            // `end` is just past the first byte of the record's line end (or the end of
            // the file), so the byte before it is on the record's last line.
            let end = reader.position().byte() as usize;
            previous_end = self.lines.at(end.saturating_sub(1).max(start));
            // Only the last record can end inside quotes: csv reads to the end of the file.
            let open_quote = if end >= self.text.len() {
                open_quote_field(&self.text[start..], self.delimiter)
            } else {
                None
            };
            if let Some(field) = open_quote {
                self.unclosed_quote(header.as_ref(), field, line, previous_end);
            }

            match &header {
                None => header = Some(self.header(&record, line)),
                Some(h) => {
                    rows += 1;
                    if rows > self.opts.max_rows {
                        self.errors.push(Finding::file(format!(
                            "the file has more than {} data rows (roster.max_rows); split the \
                             roster or raise the limit",
                            self.opts.max_rows
                        )));
                        return Err(self.reject(rows));
                    }
                    if open_quote.is_none() {
                        self.row(h, &record, line, previous_end);
                    }
                }
            }
        }
        self.trailing_lines(previous_end, header.is_some());
        let Some(header) = header else {
            self.errors.push(Finding::file(
                "the file is empty: there is no header row; export the roster with its header",
            ));
            return Err(self.reject(rows));
        };
        if rows == 0 {
            self.errors.push(Finding::file(
                "the file has a header but no data rows; a roster must list every employee",
            ));
        }
        if !self.errors.is_empty() {
            return Err(self.reject(rows));
        }
        let manager_column = header
            .manager_id
            .map_or(columns::MANAGER_ID, |c| header.name(c));
        let org_warnings = org::derive(&mut self.employees, manager_column);
        let email_column = header
            .email
            .map_or(columns::EMAIL, |c| header.name(c))
            .to_owned();
        let mut warnings = self.warnings.into_summarized();
        warnings.extend(org_warnings);
        Ok(Roster {
            rows: self.employees.len(),
            fields: self.fields,
            present: self.present,
            employees: self.employees,
            symbols: self.symbols,
            warnings,
            email_column,
        })
    }

    /// The error for a last record that ends inside quotes: csv read it to the end of the
    /// file, swallowing every row after the quote, and possibly with the right field count.
    fn unclosed_quote(&mut self, header: Option<&Header>, field: usize, line: u64, last: u64) {
        self.errors.push(Finding {
            line: Some(line),
            column: header.and_then(|h| h.written.get(field)).cloned(),
            message: format!(
                "a quote opened in field {} of this row is never closed, so lines \
                 {line}–{last} were read as one row; close or remove the quote",
                field + 1
            ),
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

    fn reject(self, rows: u64) -> Rejection {
        Rejection {
            errors: self.errors.list,
            more_errors: self.errors.more,
            warnings: self.warnings.into_summarized(),
            rows: rows as usize,
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

    fn header(&mut self, record: &ByteRecord, line: u64) -> Header {
        let mut h = Header {
            written: Vec::with_capacity(record.len()),
            employee_id: None,
            email: None,
            manager_id: None,
            status: None,
            fields: Vec::new(),
        };
        // Field key -> first column that has it.
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (column, raw) in record.iter().enumerate() {
            let written = String::from_utf8_lossy(raw).trim().to_owned();
            let key = self.opts.columns.key(&written);
            h.written.push(written);
            if key.is_empty() {
                self.warnings.push(Finding::line(
                    line,
                    format!(
                        "column {} has no header name; its values are ignored",
                        column + 1
                    ),
                ));
                continue;
            }
            if let Some(&first) = by_key.get(&key) {
                self.errors.push(Finding::at(
                    line,
                    display_name(&key),
                    format!(
                        "columns \"{}\" and \"{}\" both mean {}; remove or rename one of them",
                        h.written[first],
                        h.written[column],
                        display_name(&key)
                    ),
                ));
                continue;
            }
            by_key.insert(key.clone(), column);
            if key == IS_MANAGER_KEY {
                self.warnings.push(Finding::at(
                    line,
                    h.written[column].clone(),
                    format!(
                        "column \"{}\" is ignored: is_manager is derived from manager_id, never \
                         read from the file",
                        h.written[column]
                    ),
                ));
            }
            self.present.push(key);
        }
        let column_of = |canonical: &str| by_key.get(&columns::canonical_key(canonical)).copied();
        h.employee_id = column_of(columns::EMPLOYEE_ID);
        h.email = column_of(columns::EMAIL);
        h.manager_id = column_of(columns::MANAGER_ID);
        h.status = column_of(columns::EMPLOYMENT_STATUS);
        for (canonical, found) in [
            (columns::EMPLOYEE_ID, h.employee_id),
            (columns::EMAIL, h.email),
        ] {
            if found.is_none() {
                let aliases = columns::DEFAULT_ALIASES
                    .iter()
                    .find(|(c, _)| *c == canonical)
                    .map(|(_, a)| a.join("\", \""))
                    .unwrap_or_default();
                self.errors.push(Finding::at(
                    line,
                    canonical,
                    format!(
                        "the required column {canonical} is missing; add it, with the header \
                         \"{canonical}\" or one of \"{aliases}\""
                    ),
                ));
            }
        }
        for name in &self.opts.needed_fields {
            let key = self.opts.columns.key(name);
            if key == IS_MANAGER_KEY || self.fields.contains(&key) {
                continue;
            }
            let column = by_key.get(&key).copied();
            if column.is_none() {
                self.errors.push(Finding::at(
                    line,
                    name.clone(),
                    format!(
                        "column \"{name}\" is missing, but an enabled rule refers to it; add the \
                         column to the file, or change or disable the rule"
                    ),
                ));
            }
            self.fields.push(key);
            h.fields.push(column);
        }
        h
    }

    fn row(&mut self, h: &Header, record: &ByteRecord, line: u64, last_line: u64) {
        if record.len() != h.written.len() {
            let d = delimiter_name(self.delimiter);
            let why = if record.len() == 1 && cell(record, Some(0)).is_empty() {
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
            self.errors.push(Finding::line(
                line,
                format!(
                    "wrong number of fields: expected {} (as in the header), got {}; {why}",
                    h.written.len(),
                    record.len()
                ),
            ));
            return;
        }
        let id = cell(record, h.employee_id);
        let email = cell(record, h.email);
        let manager_id = cell(record, h.manager_id);
        let inactive = h
            .status
            .is_some_and(|c| self.is_inactive(cell(record, Some(c))));

        if let Some(c) = h.employee_id {
            if id.is_empty() {
                self.errors.push(Finding::at(
                    line,
                    h.name(c),
                    "employee_id is empty; every row needs the employee's ID",
                ));
            } else if let Some(first) = self.first_line_of(id, line) {
                self.errors.push(Finding::at(
                    line,
                    h.name(c),
                    format!(
                        "employee_id \"{id}\" already appears on line {first}; each employee \
                         must have exactly one row"
                    ),
                ));
            }
        }
        if let Some(c) = h.email
            && !inactive
        {
            if email.is_empty() {
                self.errors.push(Finding::at(
                    line,
                    h.name(c),
                    "email is empty; an employee who has not left needs their SSO email \
                     (only rows of inactive employees may leave it empty)",
                ));
            } else if !columns::is_well_formed_email(email) {
                let why = email_problem(email);
                self.errors.push(Finding::at(
                    line,
                    h.name(c),
                    format!(
                        "email \"{email}\" is not a well-formed address: {why} (it needs a \
                         local part, one @ and a domain with a dot, and no spaces)"
                    ),
                ));
            } else if let Some(first) = self.first_line_of_email(email, line) {
                self.errors.push(Finding::at(
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

        self.values.clear();
        for &column in &h.fields {
            let sym = intern_folded(&mut self.symbols, &mut self.fold_buf, cell(record, column));
            self.values.push(sym);
        }
        self.employees.push(Employee {
            line,
            id: id.into(),
            email: email.into(),
            manager_id: manager_id.into(),
            inactive,
            is_manager: false,
            values: self.values.as_slice().into(),
        });
    }

    /// The line where `id` was first seen, or `None` when it is new (it is then remembered
    /// as the ID of the row about to be pushed, on `line`).
    fn first_line_of(&mut self, id: &str, line: u64) -> Option<u64> {
        let hash = FastHash::default().hash_one(id);
        let next = self.employees.len() as u32;
        match self.seen_ids.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(next);
                None
            }
            Entry::Occupied(slot) => {
                let first = &self.employees[*slot.get() as usize];
                if &*first.id == id {
                    return Some(first.line);
                }
                match self.collided_ids.get(id) {
                    Some(&line) => Some(line),
                    None => {
                        self.collided_ids.insert(id.into(), line);
                        None
                    }
                }
            }
        }
    }

    /// The line of the first active row with the same email (case-insensitive), or `None`
    /// when it is new (it is then remembered as the email of the row about to be pushed).
    fn first_line_of_email(&mut self, email: &str, line: u64) -> Option<u64> {
        let folded = fold_email(email);
        let hash = FastHash::default().hash_one(&*folded);
        let next = self.employees.len() as u32;
        match self.seen_emails.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(next);
                None
            }
            Entry::Occupied(slot) => {
                let first = &self.employees[*slot.get() as usize];
                if *fold_email(&first.email) == *folded {
                    return Some(first.line);
                }
                match self.collided_emails.get(&*folded) {
                    Some(&line) => Some(line),
                    None => {
                        self.collided_emails.insert(folded.into(), line);
                        None
                    }
                }
            }
        }
    }

    fn is_inactive(&self, status: &str) -> bool {
        if status.is_ascii() {
            // Folded statuses hold no ASCII capitals, so this equals comparing fold_value.
            self.inactive.iter().any(|s| s.eq_ignore_ascii_case(status))
        } else {
            let folded = fold_value(status);
            self.inactive.contains(&folded)
        }
    }
}

/// The trimmed text of a cell; empty when the column is absent.
fn cell(record: &ByteRecord, column: Option<usize>) -> &str {
    column
        .and_then(|c| record.get(c))
        // The text is valid UTF-8 and csv splits it only at ASCII bytes.
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .unwrap_or("")
        .trim()
}

/// Interns `fold_value(value)` without allocating when the value is ASCII.
fn intern_folded(symbols: &mut Interner, buf: &mut String, value: &str) -> Sym {
    if !value.is_ascii() {
        return symbols.intern(&fold_value(value));
    }
    if !value.bytes().any(|b| b.is_ascii_uppercase()) {
        return symbols.intern(value);
    }
    buf.clear();
    buf.push_str(value);
    buf.make_ascii_lowercase();
    symbols.intern(buf)
}

/// An email folded for comparison (SPEC §1: Unicode lower-casing), borrowed when it has no
/// capitals.
fn fold_email(email: &str) -> Cow<'_, str> {
    if email.is_ascii() && !email.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(email)
    } else {
        Cow::Owned(fold_value(email))
    }
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
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    fn ok(text: &str) -> Roster {
        ok_with(text.as_bytes(), &RosterOptions::default())
    }

    fn ok_with(bytes: &[u8], opts: &RosterOptions) -> Roster {
        match parse(bytes, opts) {
            Ok(r) => r,
            Err(r) => panic!("rejected: {:#?}", r.errors),
        }
    }

    fn rejected(text: &str) -> Rejection {
        rejected_with(text.as_bytes(), &RosterOptions::default())
    }

    fn rejected_with(bytes: &[u8], opts: &RosterOptions) -> Rejection {
        match parse(bytes, opts) {
            Ok(r) => panic!("accepted: {} rows, warnings {:#?}", r.rows, r.warnings),
            Err(r) => r,
        }
    }

    type Place<'a> = (Option<u64>, Option<&'a str>);
    type OwnedPlace = (Option<u64>, Option<String>);

    fn places(findings: &[Finding]) -> Vec<Place<'_>> {
        findings
            .iter()
            .map(|f| (f.line, f.column.as_deref()))
            .collect()
    }

    fn ids(r: &Roster) -> Vec<&str> {
        r.employees.iter().map(|e| &*e.id).collect()
    }

    fn lines(r: &Roster) -> Vec<u64> {
        r.employees.iter().map(|e| e.line).collect()
    }

    fn needing(fields: &[&str]) -> RosterOptions {
        RosterOptions {
            needed_fields: fields.iter().map(|f| f.to_string()).collect(),
            ..RosterOptions::default()
        }
    }

    const HEADER: &str = "employee_id,email,manager_id,status\n";

    // --- decoding ---------------------------------------------------------------------

    #[test]
    fn utf8_is_decoded_with_or_without_bom() {
        let plain = "employee_id,email,name\n1,zoë@example.com,Zoë\n";
        let with_bom = format!("\u{FEFF}{plain}");
        for text in [plain, with_bom.as_str()] {
            let r = ok(text);
            assert_eq!(ids(&r), ["1"]);
            assert_eq!(&*r.employees[0].email, "zoë@example.com");
            // The BOM is not part of the first header.
            assert_eq!(r.present[0], "employeeid");
        }
    }

    #[test]
    fn windows_1252_is_decoded_when_the_file_is_not_utf8() {
        // 0xEB is ë and 0x80 is € in Windows-1252; neither is valid UTF-8 here.
        let bytes = b"employee_id,email,Department\n1,zo\xEB@example.com,\x80 Finance\n";
        let r = ok_with(bytes, &needing(&["department"]));
        assert_eq!(&*r.employees[0].email, "zoë@example.com");
        assert_eq!(r.value(&r.employees[0], 0), "€ finance");
    }

    #[test]
    fn bytes_undefined_in_windows_1252_are_not_decodable_at_their_line() {
        for b in UNDEFINED_IN_1252 {
            let mut bytes = b"employee_id,email\n1,a\xE9@example.com\n2,b".to_vec();
            bytes.push(b);
            bytes.extend_from_slice(b"@example.com\n");
            let r = rejected_with(&bytes, &RosterOptions::default());
            assert_eq!(places(&r.errors), [(Some(3), None)], "byte {b:#x}");
            assert!(
                r.errors[0].message.contains(&format!("0x{b:02X}")),
                "{}",
                r.errors[0].message
            );
        }
    }

    #[test]
    fn a_nul_byte_is_not_decodable_at_its_line() {
        let r = rejected("employee_id,email\r\n1,a@example.com\r\n2,b@exa\0mple.com\r\n");
        assert_eq!(places(&r.errors), [(Some(3), None)]);
        assert!(
            r.errors[0].message.contains("NUL"),
            "{}",
            r.errors[0].message
        );
        assert_eq!(r.rows, 0);
    }

    #[test]
    fn a_utf16_export_is_not_decodable_at_line_1() {
        let utf16: Vec<u8> = "\u{FEFF}employee_id,email\n1,a@example.com\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let r = rejected_with(&utf16, &RosterOptions::default());
        assert_eq!(places(&r.errors), [(Some(1), None)]);
    }

    #[test]
    fn not_decodable_names_the_first_bad_byte() {
        // 0x81 on line 2 comes before the NUL on line 3.
        let r = rejected_with(
            b"employee_id,email\n1,\x81\n2,\0\n",
            &RosterOptions::default(),
        );
        assert_eq!(places(&r.errors), [(Some(2), None)]);
        assert!(r.errors[0].message.contains("0x81"));
        let r = rejected_with(
            b"employee_id,email\n1,\0\n2,\x81\n",
            &RosterOptions::default(),
        );
        assert_eq!(places(&r.errors), [(Some(2), None)]);
        assert!(r.errors[0].message.contains("NUL"));
    }

    #[test]
    fn encoding_utf8_forces_utf8() {
        let opts = RosterOptions {
            encoding: Encoding::Utf8,
            ..RosterOptions::default()
        };
        let r = rejected_with(
            b"employee_id,email\n1,a@example.com\n2,zo\xEB@example.com\n",
            &opts,
        );
        assert_eq!(places(&r.errors), [(Some(3), None)]);
        assert!(
            r.errors[0].message.contains("0xEB"),
            "{}",
            r.errors[0].message
        );
        ok_with("employee_id,email\n1,zoë@example.com\n".as_bytes(), &opts);
    }

    #[test]
    fn encoding_windows_1252_forces_windows_1252() {
        let opts = RosterOptions {
            encoding: Encoding::Windows1252,
            ..RosterOptions::default()
        };
        // Valid UTF-8 "ë" is read as the two Windows-1252 characters "Ã«".
        let r = ok_with("employee_id,email\n1,zoë@example.com\n".as_bytes(), &opts);
        assert_eq!(&*r.employees[0].email, "zoÃ«@example.com");
        let r = rejected_with(b"employee_id,email\n1,a\x9D@example.com\n", &opts);
        assert_eq!(places(&r.errors), [(Some(2), None)]);
    }

    #[test]
    fn a_bom_with_invalid_utf8_is_not_decoded_as_windows_1252() {
        let r = rejected_with(
            b"\xEF\xBB\xBFemployee_id,email\n1,zo\xEB@example.com\n",
            &RosterOptions::default(),
        );
        assert_eq!(places(&r.errors), [(Some(2), None)]);
        assert!(r.errors[0].message.contains("byte order mark"));
    }

    // --- delimiter, line ends, quoting ------------------------------------------------

    #[test]
    fn delimiter_is_the_most_frequent_outside_quotes_in_the_header_line() {
        let cases: &[(&str, u8)] = &[
            ("a,b,c", b','),
            ("a;b;c", b';'),
            ("a\tb\tc", b'\t'),
            ("a|b|c", b'|'),
            ("a;b;c,d", b';'),
            // Inside quotes they do not count, doubled quotes included.
            ("\"a,b,c\";d;\"e\"\",\"", b';'),
            // Ties go in the order , ; tab |.
            ("a,b;c", b','),
            ("a;b\tc", b';'),
            ("a\tb|c", b'\t'),
            ("a|b;c", b';'),
            // None at all: comma.
            ("employee_id", b','),
            ("", b','),
            // Only the header line counts, even after empty lines.
            ("\n\r\na;b\nc,d,e,f,g", b';'),
            // A quoted line break does not end the header line.
            ("\"a\nb|c|d|e\",x,y", b','),
        ];
        for (text, expected) in cases {
            assert_eq!(
                detect_delimiter(text.as_bytes()) as char,
                *expected as char,
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_delimiter_parses() {
        for d in [",", ";", "\t", "|"] {
            let text = format!("employee_id{d}email{d}name\n1{d}a@example.com{d}\"Doe{d} Jane\"\n");
            let r = ok(&text);
            assert_eq!(ids(&r), ["1"], "delimiter {d:?}");
            assert_eq!(&*r.employees[0].email, "a@example.com");
        }
    }

    #[test]
    fn crlf_and_lf_line_ends_give_the_same_rows_and_lines() {
        let lf = "employee_id,email\n1,a@example.com\n2,b@example.com\n";
        let crlf = lf.replace('\n', "\r\n");
        let mixed = "employee_id,email\r\n1,a@example.com\n2,b@example.com\r\n";
        for text in [lf, crlf.as_str(), mixed] {
            let r = ok(text);
            assert_eq!(ids(&r), ["1", "2"], "{text:?}");
            assert_eq!(lines(&r), [2, 3], "{text:?}");
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        }
    }

    #[test]
    fn quoted_fields_may_contain_delimiters_quotes_and_newlines() {
        let text = "employee_id,email,note\n\
                    \"1\",a@example.com,\"x, y; z\"\n\
                    2,b@example.com,\"she said \"\"hi\"\"\"\n\
                    3,c@example.com,\"two\nlines\r\nthree\"\n\
                    4,d@example.com,plain\n";
        let r = ok_with(text.as_bytes(), &needing(&["note"]));
        assert_eq!(ids(&r), ["1", "2", "3", "4"]);
        let notes: Vec<&str> = r.employees.iter().map(|e| r.value(e, 0)).collect();
        assert_eq!(
            notes,
            ["x, y; z", "she said \"hi\"", "two\nlines\r\nthree", "plain"]
        );
        assert_eq!(lines(&r), [2, 3, 4, 7]);
    }

    #[test]
    fn line_numbers_count_quoted_newlines_and_skipped_empty_lines() {
        for eol in ["\n", "\r\n"] {
            let text = [
                "",                       // 1 empty
                "employee_id,email,note", // 2 header
                "1,a@example.com,\"x",    // 3
                "",                       // 4 (inside quotes)
                "y\"",                    // 5
                "",                       // 6 empty
                "",                       // 7 empty
                "1,b@example.com,z",      // 8 duplicate
                ",c@example.com,\"p",     // 9 empty id
                "q\"",                    // 10
                "3,d@example.com",        // 11 short row
                "",
            ]
            .join(eol);
            let r = rejected(&text);
            assert_eq!(
                places(&r.errors),
                [
                    (Some(8), Some("employee_id")),
                    (Some(9), Some("employee_id")),
                    (Some(11), None)
                ],
                "{eol:?}"
            );
            assert!(
                r.errors[0].message.contains("already appears on line 3"),
                "{}",
                r.errors[0].message
            );
            assert_eq!(places(&r.warnings), [(Some(1), None), (Some(6), None)]);
            assert_eq!(r.warnings[1].message, "empty lines 6–7 skipped");
        }
    }

    #[test]
    fn lone_cr_line_ends_count_as_lines() {
        let r = rejected("employee_id,email\r1,a@example.com\r1,b@example.com\r");
        assert_eq!(places(&r.errors), [(Some(3), Some("employee_id"))]);
    }

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

    #[test]
    fn a_line_of_only_spaces_is_a_row_like_any_other() {
        let r = rejected("employee_id,email\n1,a@example.com\n   \n2,b@example.com\n");
        assert_eq!(places(&r.errors), [(Some(3), None)]);
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

    // --- headers --------------------------------------------------------------------------

    #[test]
    fn headers_match_ignoring_case_spaces_underscores_dashes_and_dots() {
        for header in [
            "Employee ID,E-Mail,Manager.ID,Employment_Status,Job Title",
            "employee_id,email,manager_id,employment_status,job_title",
            "EMPLOYEEID,EMAIL,MANAGERID,EMPLOYMENTSTATUS,JOBTITLE",
            " emp id ,Work Email,Reports To ID,Worker Status,jobTitle",
        ] {
            let text = format!("{header}\n1,a@example.com,,Active,Chef\n2,,1,Terminated,Cook\n");
            let r = ok_with(text.as_bytes(), &needing(&["Job-Title"]));
            assert_eq!(
                r.present,
                [
                    "employeeid",
                    "email",
                    "managerid",
                    "employmentstatus",
                    "jobtitle"
                ],
                "{header}"
            );
            assert_eq!(r.fields, ["jobtitle"]);
            assert_eq!(r.employees[1].manager_id.as_ref(), "1");
            assert!(r.employees[1].inactive, "{header}");
            assert_eq!(r.value(&r.employees[0], 0), "chef");
        }
    }

    #[test]
    fn configured_aliases_are_honoured() {
        let mut extra = BTreeMap::new();
        extra.insert("employee_id".to_string(), vec!["Badge Number".to_string()]);
        let opts = RosterOptions {
            columns: Columns::new(&extra),
            ..RosterOptions::default()
        };
        let r = ok_with(b"Badge Number,UPN\n1,a@example.com\n", &opts);
        assert_eq!(ids(&r), ["1"]);
    }

    #[test]
    fn two_headers_with_the_same_key_are_a_duplicate_column() {
        let r = rejected("employee_id,Email,Work Email\n1,a@example.com,b@example.com\n");
        assert_eq!(places(&r.errors), [(Some(1), Some("email"))]);
        assert_eq!(
            r.errors[0].message,
            "columns \"Email\" and \"Work Email\" both mean email; remove or rename one of them"
        );
        let r = rejected("employee_id,email,Job Title,job_title\n1,a@example.com,x,y\n");
        assert_eq!(places(&r.errors), [(Some(1), Some("jobtitle"))]);
        assert!(
            r.errors[0]
                .message
                .contains("\"Job Title\" and \"job_title\"")
        );
    }

    #[test]
    fn required_columns_missing_are_errors_at_the_header_line() {
        let r = rejected("name,department\nAda,R&D\n");
        assert_eq!(
            places(&r.errors),
            [(Some(1), Some("employee_id")), (Some(1), Some("email"))]
        );
        assert!(
            r.errors[0].message.contains("\"Employee ID\""),
            "{}",
            r.errors[0].message
        );
        let r = rejected("Worker ID,name\n1,Ada\n");
        assert_eq!(places(&r.errors), [(Some(1), Some("email"))]);
    }

    #[test]
    fn header_errors_name_the_header_line_after_skipped_empty_lines() {
        let r = rejected("\n\nemployee_id,name\n1,Ada\n");
        assert_eq!(places(&r.errors), [(Some(3), Some("email"))]);
    }

    #[test]
    fn a_field_an_enabled_rule_needs_must_be_in_the_header() {
        let opts = needing(&["Department", "cost-center", "is_manager", "department"]);
        let r = rejected_with(
            b"employee_id,email,Cost Center\n1,a@example.com,42\n",
            &opts,
        );
        assert_eq!(places(&r.errors), [(Some(1), Some("Department"))]);
        assert!(
            r.errors[0].message.contains("an enabled rule refers to it"),
            "{}",
            r.errors[0].message
        );
    }

    #[test]
    fn needed_fields_keep_their_folded_values_and_skip_is_manager() {
        let opts = needing(&[
            "Department",
            "is_manager",
            "job_title",
            "DEPARTMENT",
            "Work Email",
        ]);
        let text = "employee_id,email,department,Job Title,other\n\
                    1,Ada@Example.com,  Finance ,ÉCOLE Lead,x\n\
                    2,b@example.com,finance,,y\n";
        let r = ok_with(text.as_bytes(), &opts);
        assert_eq!(r.fields, ["department", "jobtitle", "email"]);
        assert_eq!(
            r.present,
            ["employeeid", "email", "department", "jobtitle", "other"]
        );
        let row = |i: usize| -> Vec<&str> {
            (0..r.fields.len())
                .map(|f| r.value(&r.employees[i], f))
                .collect()
        };
        assert_eq!(row(0), ["finance", "école lead", "ada@example.com"]);
        assert_eq!(row(1), ["finance", "", "b@example.com"]);
        // Equal folded values share one symbol.
        assert_eq!(r.employees[0].values[0], r.employees[1].values[0]);
        // The email itself is kept trimmed, as written.
        assert_eq!(&*r.employees[0].email, "Ada@Example.com");
    }

    #[test]
    fn an_is_manager_column_is_ignored_with_a_warning() {
        let text = "employee_id,email,IsManager,manager_id\n1,a@example.com,true,\n2,b@example.com,false,1\n";
        let r = ok_with(text.as_bytes(), &needing(&["is_manager"]));
        assert_eq!(places(&r.warnings), [(Some(1), Some("IsManager"))]);
        // Derived, not read: 1 has a report, 2 has none.
        let managers: Vec<bool> = r.employees.iter().map(|e| e.is_manager).collect();
        assert_eq!(managers, [true, false]);
        assert!(r.fields.is_empty());
    }

    #[test]
    fn a_column_without_a_header_name_is_ignored_with_a_warning() {
        let r = ok("employee_id,email,\n1,a@example.com,\n");
        assert_eq!(places(&r.warnings), [(Some(1), None)]);
        assert!(
            r.warnings[0]
                .message
                .contains("column 3 has no header name")
        );
        assert_eq!(r.present, ["employeeid", "email"]);
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

    // --- row errors ---------------------------------------------------------------------

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_an_error_without_a_column() {
        let r = rejected(
            "employee_id,email,name\n1,a@example.com\n2,b@example.com,Bo,extra\n3,c@example.com,Cy\n",
        );
        assert_eq!(places(&r.errors), [(Some(2), None), (Some(3), None)]);
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
    }

    #[test]
    fn a_wrong_field_count_after_a_quoted_multiline_field_names_the_record_start() {
        let r = rejected(
            "employee_id,email,note\n1,a@example.com,\"one\ntwo\"\n2,b@example.com,\"x\ny\",z\n",
        );
        assert_eq!(places(&r.errors), [(Some(4), None)]);
        assert!(
            r.errors[0].message.contains("runs over lines 4–5"),
            "{}",
            r.errors[0].message
        );
    }

    #[test]
    fn an_unclosed_quote_swallows_the_rest_of_the_file_into_one_row() {
        // The field count even matches: without this check, rows 3 and 4 would vanish.
        let r = rejected(
            "employee_id,email,note\n1,a@example.com,\"oops\n2,b@example.com,x\n3,c@example.com,y\n",
        );
        assert_eq!(places(&r.errors), [(Some(2), Some("note"))]);
        assert!(
            r.errors[0]
                .message
                .contains("field 3 of this row is never closed, so lines 2–4"),
            "{}",
            r.errors[0].message
        );
        let r = rejected("employee_id,email,note\n1,a@example.com,x\n2,\"b@example.com,\"\"y\n");
        assert_eq!(places(&r.errors), [(Some(3), Some("email"))]);
        // A quote inside an unquoted value is a literal quote, not an opening one.
        let r = ok("employee_id,email,note\n1,a@example.com,5\" screen\n");
        assert_eq!(ids(&r), ["1"]);
        assert_eq!(open_quote_field(b"a,\"b\"\"c\"\"\",d", b','), None);
        assert_eq!(open_quote_field(b"a;b;\"c;d", b';'), Some(2));
        assert_eq!(open_quote_field(b"\"a\"\"", b','), Some(0));
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
        assert_eq!(&*r.employees[1].email, "");
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
            &*ok("employee_id,email\n1,  a@example.com \n").employees[0].email,
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

    #[test]
    fn default_inactive_statuses_are_the_four_of_the_spec() {
        let r = ok(
            "employee_id,email,status\n1,,Terminated\n2,,INACTIVE\n3,,separated\n4,,deceased\n5,e@x.io,on leave\n",
        );
        let inactive: Vec<bool> = r.employees.iter().map(|e| e.inactive).collect();
        assert_eq!(inactive, [true, true, true, true, false]);
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
                (Some(5), None),
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

    #[test]
    fn nothing_in_a_cell_is_interpreted() {
        let text = "employee_id,email,note\n\
                    =1+1,a@example.com,\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"\n\
                    @SUM(A1),b@example.com,+cmd|' /C calc'!A0\n";
        let r = ok_with(text.as_bytes(), &needing(&["note"]));
        assert_eq!(ids(&r), ["=1+1", "@SUM(A1)"]);
        assert_eq!(
            r.value(&r.employees[0], 0),
            "=hyperlink(\"http://evil\",\"x\")"
        );
        assert_eq!(r.value(&r.employees[1], 0), "+cmd|' /c calc'!a0");
    }

    // --- the roster ---------------------------------------------------------------------

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
        assert!(r.employees.iter().all(|e| e.values.is_empty()));
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
                .all(|e| !e.is_manager && e.manager_id.is_empty())
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
            .nth(3)
            .expect("src/core/roster.rs has a crate root");
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
            let note: String = row.note.concat().replace('"', "\"\"");
            text.push_str(&format!("{id}{d}\"{note}\"{d}{}{eol}", row.email));
            expected.push((line, id, row.email.clone()));
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
                .map(|e| (e.line, e.id.to_string(), e.email.to_string()))
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
