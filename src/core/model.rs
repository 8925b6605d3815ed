//! Data shared by the core modules: findings, the parsed roster and its employees.

use serde::{Deserialize, Serialize};
use std::fmt;

/// FxHash as rustc uses it (the `rustc-hash` crate) for the core's big maps of short
/// strings (IDs, cell values): a sync of a million rows hashes millions of them, where
/// SipHash's resistance to chosen keys buys nothing (the roster comes from the HR system,
/// and a collision costs time only). Its string hash passes SMHasher: the hand-written
/// word-at-a-time FxHash used before gave 19 full 64-bit collisions among the 400k IDs
/// and emails of the 200k-row bench roster (`kenji.nguyen.7103@…` and `…7186@…`), which
/// sent that file's two-core read back to one pass.
pub type FastHash = rustc_hash::FxBuildHasher;

/// An error or warning about a file: the physical line (1-based, header = 1) and the
/// column header as written, when they apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Physical line where the record starts; `None` for whole-file findings.
    pub line: Option<u64>,
    /// Column header as written in the file (or canonical/rule name for header errors).
    pub column: Option<String>,
    /// What is wrong, in words a person acts on.
    pub message: String,
}

/// The most characters of a column's header a finding names: past them it is cut, ending
/// in `…`. Header matching ignores `.`, `_`, `-` and spaces, so `Manager ID` followed by
/// 100,000 dots was the manager column, and each of a thousand warnings named it in full:
/// a 137 KB roster had given 200 MB of reports.
pub const MAX_COLUMN_SHOWN: usize = 100;

/// `name` as a finding names a column: at most [`MAX_COLUMN_SHOWN`] characters.
pub fn column_shown(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(MAX_COLUMN_SHOWN) {
        None => name.into(),
        Some((end, _)) => format!("{}…", &name[..end]).into(),
    }
}

impl Finding {
    /// A finding about one line and column (its header cut to [`MAX_COLUMN_SHOWN`]).
    pub fn at(line: u64, column: impl Into<String>, message: impl Into<String>) -> Self {
        let column: String = column.into();
        Self {
            line: Some(line),
            column: Some(match column_shown(&column) {
                std::borrow::Cow::Borrowed(_) => column,
                std::borrow::Cow::Owned(cut) => cut,
            }),
            message: message.into(),
        }
    }

    /// A finding about one line, no column.
    pub fn line(line: u64, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: None,
            message: message.into(),
        }
    }

    /// A finding about the whole file.
    pub fn file(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// The finding that stands for `n` more of a kind past those listed: "`n` more `what`
    /// (not listed`; note`)".
    pub fn not_listed(n: usize, what: &str, note: &str) -> Self {
        let note = match note {
            "" => String::new(),
            note => format!("; {note}"),
        };
        Self::file(format!("{n} more {what} (not listed{note})"))
    }

    /// How many findings this one stands for: `n` for a [`Finding::not_listed`], else 1.
    pub fn counts(&self) -> usize {
        stands_for(self.line, self.column.as_deref(), &self.message)
    }
}

/// How many findings the finding of these fields stands for ([`Finding::counts`]; the web
/// section reads reports into a type of its own).
pub fn stands_for(line: Option<u64>, column: Option<&str>, message: &str) -> usize {
    let more = (line.is_none() && column.is_none())
        .then(|| message.split_once(" more "))
        .flatten()
        .filter(|(_, rest)| rest.contains(" (not listed"));
    more.and_then(|(n, _)| n.parse().ok()).unwrap_or(1)
}

/// A finding on one line, whatever the cells it quotes hold (a quoted cell may hold a line
/// break: written as it is, it would start a line of its own in `report.txt` or on a
/// terminal, e.g. one that reads like another finding).
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = escape_controls(&self.message);
        match (&self.line, self.column.as_deref().map(escape_controls)) {
            (Some(l), Some(c)) => write!(f, "line {l}, column \"{c}\": {message}"),
            (Some(l), None) => write!(f, "line {l}: {message}"),
            (None, Some(c)) => write!(f, "column \"{c}\": {message}"),
            (None, None) => write!(f, "{message}"),
        }
    }
}

/// Whether `text` holds a control character (a line break, a tab, ...) or Unicode's line
/// or paragraph separator: refused in names a person gives (a rule's, a manual admin's
/// employee ID), which are shown one to a line (the CLI's lists, the audit log, the web).
pub fn breaks_lines(text: &str) -> bool {
    text.contains(|c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// The longest name a person may give (a rule's, a manual admin's employee ID).
pub const MAX_NAME_CHARS: usize = 200;

/// Why `text`, a name a person gives (a rule's, a manual admin's employee ID), could pass
/// for something else where it is shown one to a line (the audit log, `rules list`):
/// [`breaks_lines`]; a character that shows as nothing; a run of spaces (hundreds of them
/// had pushed the real role off the line, past a fake one written in the name); or more
/// than [`MAX_NAME_CHARS`] characters. `None` when it is fine.
pub fn disguises(text: &str) -> Option<&'static str> {
    if breaks_lines(text) {
        return Some("a line break, tab or other control character");
    }
    if text.chars().any(crate::core::columns::is_invisible) {
        return Some("a character that shows as nothing (a zero-width space, a soft hyphen, …)");
    }
    // A space, or a character drawn as one (the Braille blank).
    let blank = |c: char| c.is_whitespace() || c == '\u{2800}';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if blank(c) && chars.peek().is_some_and(|&n| blank(n)) {
            return Some("two spaces in a row");
        }
    }
    (text.chars().count() > MAX_NAME_CHARS).then_some("more than 200 characters")
}

/// A name a person gave (a rule's) in double quotes, its control characters escaped and a
/// quote in it doubled, as in a condition: `"a" -> Read-only Admin ...` in a name cannot
/// pass for the end of it.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", escape_controls(name).replace('"', "\"\""))
}

/// Whether `c` is escaped where text from a file or a person is shown on one line: a
/// control character, Unicode's line or paragraph separator (a line break to a viewer that
/// follows Unicode: a cell holding one had written a line into `report.txt` that read like
/// a change), or a character that shows as nothing or turns the text around it (a
/// right-to-left override had reversed the rest of a report's line).
pub fn is_escaped(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{fff9}'..='\u{fffb}')
        || crate::core::columns::is_invisible(c)
}

/// `text` with [`is_escaped`] characters escaped (`\n`, `\r`, `\t`, `\u{..}`), the rest
/// as it is: text from a file or a person, on one line of a text report.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    // Most text is ASCII without a control character: a byte scan, without an early exit
    // so that it runs on vectors (a first import's text report scans two million IDs and
    // emails: with one, it cost ~2 % of the import).
    let suspect = text
        .bytes()
        .fold(false, |seen, b| seen | !(0x20..0x7f).contains(&b));
    if !suspect || !text.chars().any(is_escaped) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match is_escaped(c) {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out.into()
}

pub use super::interner::{Interner, Sym};

/// One data row of a roster, reduced to what provisioning needs. Its ID, email and manager
/// ID are kept in one allocation (a million-row roster makes two million fewer); the values
/// rules read are in [`Roster::values`], all rows' in one allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct Employee {
    /// Physical line where the row starts (see [`Employee::line`]).
    line: u32,
    /// The ID, the email and the manager ID, one after the other.
    text: Box<str>,
    /// Where the ID ends and the email starts in `text`.
    id_end: u32,
    /// Where the email ends and the manager ID starts in `text`.
    email_end: u32,
    /// Whether `employment_status` is one of `roster.inactive_statuses`.
    pub inactive: bool,
    /// Derived: another active row names this employee as its manager.
    pub is_manager: bool,
    /// Whether `email` is well-formed, decided once when the row is read.
    well_formed_email: bool,
}

impl Employee {
    /// An employee on `line` (not yet a manager: [`crate::core::org`] derives it).
    pub fn new(line: u64, id: &str, email: &str, manager_id: &str, inactive: bool) -> Employee {
        let mut text = String::with_capacity(id.len() + email.len() + manager_id.len());
        text.push_str(id);
        text.push_str(email);
        text.push_str(manager_id);
        let end = |len: usize| u32::try_from(len).expect("a row's cells are under 4 GiB");
        Employee {
            // Past 4G lines (a file of 4 GB and more, far over `roster.max_bytes`'s default)
            // the line named is the last a u32 holds.
            line: u32::try_from(line).unwrap_or(u32::MAX),
            text: text.into_boxed_str(),
            id_end: end(id.len()),
            email_end: end(id.len() + email.len()),
            inactive,
            is_manager: false,
            well_formed_email: crate::core::columns::is_well_formed_email(email),
        }
    }

    /// Whether the email is well-formed (see [`crate::core::columns::is_well_formed_email`]).
    pub fn has_well_formed_email(&self) -> bool {
        self.well_formed_email
    }

    /// The physical line where the row starts.
    pub fn line(&self) -> u64 {
        u64::from(self.line)
    }

    /// `employee_id`, trimmed; exact comparison (leading zeros count).
    pub fn id(&self) -> &str {
        &self.text[..self.id_end as usize]
    }

    /// `email`, trimmed, as written (may be empty for inactive employees).
    pub fn email(&self) -> &str {
        &self.text[self.id_end as usize..self.email_end as usize]
    }

    /// `manager_id`, trimmed; empty means no manager.
    pub fn manager_id(&self) -> &str {
        &self.text[self.email_end as usize..]
    }
}

#[cfg(test)]
impl Employee {
    /// This employee with another email (tests).
    pub fn set_email(&mut self, email: &str) {
        let id = self.id().to_owned();
        let manager = self.manager_id().to_owned();
        self.rebuild(&id, email, &manager);
    }

    /// This employee with another manager ID (tests).
    pub fn set_manager_id(&mut self, manager_id: &str) {
        let (id, email) = (self.id().to_owned(), self.email().to_owned());
        self.rebuild(&id, &email, manager_id);
    }

    fn rebuild(&mut self, id: &str, email: &str, manager_id: &str) {
        let is_manager = self.is_manager;
        *self = Employee::new(self.line(), id, email, manager_id, self.inactive);
        self.is_manager = is_manager;
    }
}

impl std::fmt::Debug for Employee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Employee")
            .field("line", &self.line)
            .field("id", &self.id())
            .field("email", &self.email())
            .field("manager_id", &self.manager_id())
            .field("inactive", &self.inactive)
            .field("is_manager", &self.is_manager)
            .finish()
    }
}

/// A validated roster: the employees and the values of the fields rules need.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// Number of data rows.
    pub rows: usize,
    /// Field keys (see `columns::Columns::key`) whose values are kept, in the order of each
    /// row's values.
    pub fields: Vec<String>,
    /// Every field key present in the file's header.
    pub present: Vec<String>,
    /// The rows, in file order.
    pub employees: Vec<Employee>,
    /// The folded values of `fields` of every row, `fields.len()` a row, in row order.
    pub values: Vec<Sym>,
    /// Interned folded values of `fields`.
    pub symbols: Interner,
    /// Warnings: the file is still applied.
    pub warnings: Vec<Finding>,
    /// The email column's header as written, for findings about emails.
    pub email_column: String,
    /// Where each row's record starts in the decoded text (empty when not read from one).
    pub starts: Vec<u32>,
    /// Where the decoded text starts in the file when it is the file's own bytes (after a
    /// byte-order mark); `None` when transcoded or not read from a file.
    pub text_offset: Option<usize>,
    /// Each row's manager's row (`core::org::NO_MANAGER` for none), as the manager graph
    /// found them; empty when not derived, or when the graph has a reporting cycle.
    pub managers: Vec<u32>,
    /// The file has an employment status column, and every row's cell in it is blank (an
    /// export whose status mapping broke: every leaver counted as active).
    pub status_blank: bool,
    /// Why the file may mix encodings: it is not UTF-8, so it was read as Windows-1252
    /// (SPEC §1), but it also holds UTF-8 text, which Windows-1252 reads as other
    /// characters (`São` as `SÃ£o`): a rule's value then matches where it should not.
    pub mixed_encoding: Option<String>,
}

impl Roster {
    /// Index of a kept field in a row's values.
    pub fn field_index(&self, key: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == key)
    }

    /// Whether the file had a column with this field key.
    pub fn has_field(&self, key: &str) -> bool {
        self.present.iter().any(|f| f == key)
    }

    /// Folded value of kept field `index` of row `row`.
    pub fn value(&self, row: usize, index: usize) -> &str {
        self.symbols.resolve(self.row(row).values[index])
    }

    /// What rules read of row `row`: its kept values (none after [`Roster::forget_values`])
    /// and whether it manages someone.
    pub fn row(&self, row: usize) -> RuleRow<'_> {
        let n = self.fields.len();
        RuleRow {
            values: self.values.get(row * n..(row + 1) * n).unwrap_or_default(),
            is_manager: self.employees[row].is_manager,
        }
    }

    /// Lets go of the kept values, which only matching rules needs: a sync plans without
    /// them (a million rows' take ~20 MB). No field is kept after this.
    pub fn forget_values(&mut self) {
        self.values = Vec::new();
        self.fields.clear();
        self.symbols = Interner::default();
    }
}

/// What rules read of one row (see [`Roster::row`]).
#[derive(Debug, Clone, Copy)]
pub struct RuleRow<'a> {
    /// Folded values of `Roster::fields`, in that order.
    pub values: &'a [Sym],
    /// Derived: another active row names this employee as its manager.
    pub is_manager: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million rows hold a million of these: 32 bytes (the line as 32 bits, the values
    /// rules read kept apart), not 56.
    #[test]
    fn an_employee_takes_32_bytes_and_keeps_its_line() {
        assert_eq!(std::mem::size_of::<Employee>(), 32);
        let e = Employee::new(4_000_000_123, "E1", "e1@x.io", "", false);
        assert_eq!(e.line(), 4_000_000_123);
        let far = Employee::new(u64::from(u32::MAX) + 9, "E2", "e2@x.io", "", false);
        assert_eq!(far.line(), u64::from(u32::MAX));
    }
}
