//! The `--when` condition syntax: `FIELD OP VALUE`, parsed into a [`Condition`] that keeps
//! the field and values as written, printed back in canonical form, and (de)serialized as
//! that text.

use crate::core::columns::{Columns, fold_value, normalize_header};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A comparison operator of a field condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`: the cell equals the value.
    Eq,
    /// `!=`: the cell differs from the value.
    Ne,
    /// `in (A, B, …)`: the cell equals one of the values.
    In,
    /// `not in (A, B, …)`: the cell equals none of the values.
    NotIn,
}

impl Op {
    /// Whether the operator requires the cell to be one of its values (`=`, `in`).
    pub(super) fn is_positive(self) -> bool {
        matches!(self, Op::Eq | Op::In)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::In => "in",
            Op::NotIn => "not in",
        })
    }
}

/// One condition of a rule, as parsed from the `--when` syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A comparison of a roster field; field and values as written (trimmed, unquoted).
    /// `Eq` and `Ne` have exactly one value, `In` and `NotIn` at least one.
    Field {
        /// The field name as written, e.g. `Job Title`.
        field: String,
        /// The comparison.
        op: Op,
        /// The values as written, without quotes.
        values: Vec<String>,
    },
    /// `is_manager = true|false`, the derived field.
    IsManager(bool),
}

/// A `--when` text that does not parse, with the 1-based character column of the problem.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("in \"{text}\", column {position}: {message}")]
pub struct ConditionError {
    /// The condition as given.
    pub text: String,
    /// 1-based character column where the problem is (one past the end when text is missing).
    pub position: usize,
    /// What is wrong and how to write it instead.
    pub message: String,
}

const OPERATORS_HINT: &str = "use =, !=, in (…) or not in (…), e.g. department = Finance";
const LIST_HINT: &str = "e.g. department in (Sales, \"R&D, Europe\")";

impl Condition {
    /// Parses one condition in the `--when` syntax.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        Parser::new(text).condition()
    }

    /// A condition as stored: as [`Condition::parse`], but an unquoted value may hold `=`,
    /// as rules saved before that was refused were written (and are read back as saved).
    pub fn parse_stored(text: &str) -> Result<Condition, ConditionError> {
        let mut parser = Parser::new(text);
        parser.stored = true;
        parser.condition()
    }

    /// The field key this condition reads (`columns.key(field)`); `None` for `is_manager`.
    pub fn field_key(&self, columns: &Columns) -> Option<String> {
        match self {
            Condition::Field { field, .. } => Some(columns.key(field)),
            Condition::IsManager(_) => None,
        }
    }
}

/// Where an operator was found: its kind, first char, and the char after it
/// (for `in` / `not in`, the index of the opening parenthesis).
#[derive(Debug, Clone, Copy)]
struct FoundOp {
    op: Op,
    start: usize,
    end: usize,
}

/// Result of looking for an operator at one position.
enum OpAt {
    Found(FoundOp),
    /// `in` / `not in` as a word but without a `(` after it: where the `(` was expected.
    KeywordWithoutList(usize),
    None,
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    /// Reading a stored condition ([`Condition::parse_stored`]).
    stored: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            chars: text.chars().collect(),
            stored: false,
        }
    }

    fn error(&self, index: usize, message: impl Into<String>) -> ConditionError {
        ConditionError {
            text: self.text.to_owned(),
            position: index + 1,
            message: message.into(),
        }
    }

    fn skip_ws(&self, mut i: usize) -> usize {
        while i < self.chars.len() && self.chars[i].is_whitespace() {
            i += 1;
        }
        i
    }

    /// Index one past the last non-whitespace char in `from..to`.
    fn trim_end(&self, from: usize, mut to: usize) -> usize {
        while to > from && self.chars[to - 1].is_whitespace() {
            to -= 1;
        }
        to
    }

    fn text_of(&self, from: usize, to: usize) -> String {
        self.chars[from..to].iter().collect()
    }

    fn word_at(&self, i: usize, word: &str) -> bool {
        let mut j = i;
        for w in word.chars() {
            match self.chars.get(j) {
                Some(c) if c.to_ascii_lowercase() == w => j += 1,
                _ => return false,
            }
        }
        true
    }

    /// Looks for an operator starting exactly at `i`; `word_start` says whether a keyword may start here.
    fn op_at(&self, i: usize, word_start: bool) -> OpAt {
        match self.chars[i] {
            '=' => {
                return OpAt::Found(FoundOp {
                    op: Op::Eq,
                    start: i,
                    end: i + 1,
                });
            }
            '!' if self.chars.get(i + 1) == Some(&'=') => {
                return OpAt::Found(FoundOp {
                    op: Op::Ne,
                    start: i,
                    end: i + 2,
                });
            }
            _ => {}
        }
        if !word_start {
            return OpAt::None;
        }
        let (op, after_keyword) = if self.word_at(i, "not") {
            let j = i + 3;
            let k = self.skip_ws(j);
            if k > j && self.word_at(k, "in") {
                (Op::NotIn, k + 2)
            } else {
                return OpAt::None;
            }
        } else if self.word_at(i, "in") {
            (Op::In, i + 2)
        } else {
            return OpAt::None;
        };
        match self.chars.get(after_keyword) {
            None => OpAt::KeywordWithoutList(after_keyword),
            Some('(') => OpAt::Found(FoundOp {
                op,
                start: i,
                end: after_keyword,
            }),
            Some(c) if c.is_whitespace() => {
                let k = self.skip_ws(after_keyword);
                if self.chars.get(k) == Some(&'(') {
                    OpAt::Found(FoundOp {
                        op,
                        start: i,
                        end: k,
                    })
                } else {
                    OpAt::KeywordWithoutList(k)
                }
            }
            Some(_) => OpAt::None,
        }
    }

    fn condition(&self) -> Result<Condition, ConditionError> {
        let len = self.chars.len();
        let start = self.skip_ws(0);
        if start == len {
            return Err(self.error(
                start,
                "the condition is empty; write FIELD OP VALUE, e.g. department = Finance",
            ));
        }
        let (field, found) = if self.chars[start] == '"' {
            self.quoted_field(start)?
        } else {
            self.unquoted_field(start)?
        };

        if normalize_header(&field) == "ismanager" {
            return self.is_manager(found);
        }
        let values = match found.op {
            Op::Eq | Op::Ne => vec![self.single_value(found)?],
            Op::In | Op::NotIn => self.list(found.end)?,
        };
        Ok(Condition::Field {
            field,
            op: found.op,
            values,
        })
    }

    fn quoted_field(&self, start: usize) -> Result<(String, FoundOp), ConditionError> {
        let (field, after) = self.quoted(start, "field name")?;
        if field.trim().is_empty() {
            return Err(self.error(
                start,
                "the field name is empty; write the column's header, e.g. department = Finance",
            ));
        }
        let k = self.skip_ws(after);
        if k == self.chars.len() {
            return Err(self.error(
                k,
                format!("expected an operator after the field name; {OPERATORS_HINT}"),
            ));
        }
        match self.op_at(k, true) {
            OpAt::Found(found) => Ok((field, found)),
            OpAt::KeywordWithoutList(p) => {
                Err(self.error(p, format!("expected \"(\" after \"in\"; {LIST_HINT}")))
            }
            OpAt::None => Err(self.error(
                k,
                format!("expected an operator after the field name; {OPERATORS_HINT}"),
            )),
        }
    }

    fn unquoted_field(&self, start: usize) -> Result<(String, FoundOp), ConditionError> {
        let len = self.chars.len();
        let mut keyword_without_list = None;
        let mut found = None;
        for i in start..len {
            if self.chars[i] == '"' {
                return Err(self.error(
                    i,
                    "unexpected double quote in the field name; quote the whole name if it must \
                     contain one, e.g. \"Size \"\"in\"\"\" = 5",
                ));
            }
            let word_start = i == start || self.chars[i - 1].is_whitespace();
            match self.op_at(i, word_start) {
                OpAt::Found(f) => {
                    found = Some(f);
                    break;
                }
                OpAt::KeywordWithoutList(p) => {
                    keyword_without_list.get_or_insert(p);
                }
                OpAt::None => {}
            }
        }
        let Some(found) = found else {
            return Err(match keyword_without_list {
                Some(p) => self.error(p, format!("expected \"(\" after \"in\"; {LIST_HINT}")),
                None => self.error(
                    self.trim_end(start, len),
                    format!("expected an operator after the field name; {OPERATORS_HINT}"),
                ),
            });
        };
        let field_end = self.trim_end(start, found.start);
        if field_end == start {
            return Err(self.error(
                found.start,
                format!(
                    "expected a field name before \"{}\", e.g. department = Finance",
                    found.op
                ),
            ));
        }
        if found.op == Op::Eq {
            let last = self.chars[field_end - 1];
            // Another language's operator (`~=`, `:=`, `^=`, `*=`, `/=` …) had been saved as
            // a field named `department ~`, which no roster has: every file then rejected.
            if ends_like_an_operator(last) {
                return Err(self.error(
                    field_end - 1,
                    format!("unsupported operator \"{last}=\"; {OPERATORS_HINT}"),
                ));
            }
        }
        Ok((self.text_of(start, field_end), found))
    }

    fn is_manager(&self, found: FoundOp) -> Result<Condition, ConditionError> {
        if found.op != Op::Eq {
            return Err(self.error(
                found.start,
                "is_manager only takes \"= true\" or \"= false\", e.g. is_manager = true",
            ));
        }
        let k = self.skip_ws(found.end);
        let value = self.single_value(found)?;
        match fold_value(&value).as_str() {
            "true" => Ok(Condition::IsManager(true)),
            "false" => Ok(Condition::IsManager(false)),
            _ => Err(self.error(k, "is_manager is true or false, e.g. is_manager = true")),
        }
    }

    /// The value after `=` or `!=`, up to the end of the text.
    fn single_value(&self, found: FoundOp) -> Result<String, ConditionError> {
        let len = self.chars.len();
        let k = self.skip_ws(found.end);
        let expected = format!(
            "expected a value after \"{}\", e.g. department {} Finance (\"\" for an empty cell)",
            found.op, found.op
        );
        if k == len {
            return Err(self.error(k, expected));
        }
        if self.chars[k] == '"' {
            let (value, after) = self.quoted(k, "value")?;
            let rest = self.skip_ws(after);
            if rest != len {
                return Err(self.error(
                    rest,
                    "unexpected text after the closing quote; a quote inside a quoted value is \
                     doubled, e.g. title = \"5\"\" screen\"",
                ));
            }
            return Ok(value);
        }
        if self.chars[k] == '=' {
            return Err(self.error(
                k,
                format!("unsupported operator \"{}=\"; {OPERATORS_HINT}", found.op),
            ));
        }
        // `level => 5` or `department =! Finance` would otherwise be saved as "equals
        // `> 5`" or "equals `! Finance`", rules that match nobody and say nothing. Spaced
        // from the operator, such a value is taken as written (`department = <b>Ops</b>`).
        if let c @ ('<' | '>' | '!' | '~') = self.chars[k]
            && k == found.end
        {
            return Err(self.error(
                k,
                format!("unsupported operator \"{}{c}\"; {OPERATORS_HINT}", found.op),
            ));
        }
        if self.chars[k] == '(' {
            return Err(self.error(
                k,
                format!(
                    "{expected}; for several values write department in (A, B), and quote a \
                     value that contains a parenthesis"
                ),
            ));
        }
        let end = self.trim_end(k, len);
        for i in k..end {
            self.check_unquoted_char(i)?;
        }
        Ok(self.text_of(k, end))
    }

    /// Refuses the characters that an unquoted value may not contain.
    fn check_unquoted_char(&self, i: usize) -> Result<(), ConditionError> {
        match self.chars[i] {
            '"' => Err(self.error(
                i,
                "a value containing a double quote must be quoted, the quote doubled, \
                 e.g. title = \"5\"\" screen\"",
            )),
            c @ (',' | '(' | ')') => Err(self.error(
                i,
                format!(
                    "a value containing \"{c}\" must be in double quotes, \
                     e.g. department = \"R&D, Europe\""
                ),
            )),
            // `department != Finance and department != IT` had been one condition, its
            // value "Finance and department != IT": a rule matching nearly everyone, listed
            // as if it were two conditions.
            '=' if !self.stored => Err(self.error(
                i,
                "one condition per --when: a second operator here would be part of the value \
                 (write --when \"department != A\" --when \"department != B\"); quote a value \
                 that contains \"=\"",
            )),
            _ => Ok(()),
        }
    }

    /// The list of `in` / `not in`; `open` is the index of its `(`.
    fn list(&self, open: usize) -> Result<Vec<String>, ConditionError> {
        let len = self.chars.len();
        let unclosed = || {
            self.error(
                open,
                format!("missing \")\" to close the list opened here; {LIST_HINT}"),
            )
        };
        let mut values = Vec::new();
        let mut pos = open + 1;
        let close = loop {
            let k = self.skip_ws(pos);
            if k == len {
                return Err(unclosed());
            }
            match self.chars[k] {
                ')' if values.is_empty() => {
                    return Err(self.error(
                        k,
                        format!("the list is empty; give at least one value, {LIST_HINT}"),
                    ));
                }
                c @ (')' | ',') => {
                    return Err(self.error(
                        k,
                        format!(
                            "expected a value before \"{c}\" (\"\" for an empty cell); {LIST_HINT}"
                        ),
                    ));
                }
                '"' => {
                    let (value, after) = self.quoted(k, "value")?;
                    values.push(value);
                    pos = after;
                }
                _ => {
                    let mut p = k;
                    while p < len && !matches!(self.chars[p], ',' | ')') {
                        self.check_unquoted_char(p)?;
                        p += 1;
                    }
                    values.push(self.text_of(k, self.trim_end(k, p)));
                    pos = p;
                }
            }
            let k = self.skip_ws(pos);
            match self.chars.get(k) {
                None => return Err(unclosed()),
                Some(',') => pos = k + 1,
                Some(')') => break k,
                Some(_) => {
                    return Err(self.error(
                        k,
                        format!("expected \",\" or \")\" after a value in the list; {LIST_HINT}"),
                    ));
                }
            }
        };
        let rest = self.skip_ws(close + 1);
        if rest != len {
            return Err(self.error(
                rest,
                "unexpected text after the closing \")\"; write one condition per --when",
            ));
        }
        Ok(values)
    }

    /// A double-quoted string starting at `open`; returns its content and the index after it.
    fn quoted(&self, open: usize, what: &str) -> Result<(String, usize), ConditionError> {
        let mut out = String::new();
        let mut i = open + 1;
        while i < self.chars.len() {
            if self.chars[i] == '"' {
                if self.chars.get(i + 1) == Some(&'"') {
                    out.push('"');
                    i += 2;
                    continue;
                }
                return Ok((out, i + 1));
            }
            out.push(self.chars[i]);
            i += 1;
        }
        Err(self.error(
            open,
            format!(
                "missing closing double quote for the {what} that starts here; a quote inside \
                 it is doubled, e.g. title = \"5\"\" screen\""
            ),
        ))
    }
}

/// Writes `s` in double quotes, doubling the quotes inside.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    f.write_str(&s.replace('"', "\"\""))?;
    f.write_str("\"")
}

/// Whether a value must be quoted to parse back to itself.
fn value_needs_quotes(v: &str) -> bool {
    v.is_empty()
        || v.trim() != v
        || v.contains([',', '(', ')', '"', '='])
        || v.contains(char::is_control)
        // Shown with conditions joined by " and ": a value holding the word is quoted, so
        // `"Research and Development"` reads as one value, not two conditions.
        || v.split_whitespace().any(|w| w.eq_ignore_ascii_case("and"))
}

/// Whether `c`, the last character of an unquoted field name right before `=`, makes the
/// two an operator of another language (`<=`, `!=` spelled `! =`, `~=`, `:=`, `^=`, `*=`,
/// `/=`, `@=` …), in its ASCII or full-width form (`！=`, as CJK keyboards type it): refused
/// rather than saved as a field no roster has. Not `#` or `)`: `Employee # = 5` and
/// `Cost (EUR) = 5` name real columns.
fn ends_like_an_operator(c: char) -> bool {
    let ascii = match c {
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
        _ => c,
    };
    matches!(
        ascii,
        '<' | '>'
            | '!'
            | '~'
            | ':'
            | '^'
            | '*'
            | '$'
            | '|'
            | '&'
            | '?'
            | '%'
            | '+'
            | '-'
            | '/'
            | '@'
            | '='
    )
}

/// Whether a field name must be quoted to parse back to itself.
fn field_needs_quotes(field: &str) -> bool {
    if field.is_empty()
        || field.trim() != field
        || field.contains(['"', '='])
        || field.contains(char::is_control)
    {
        return true;
    }
    if field.chars().last().is_some_and(ends_like_an_operator) {
        return true;
    }
    if field
        .split_whitespace()
        .last()
        .is_some_and(|w| w.eq_ignore_ascii_case("not"))
    {
        return true;
    }
    // `in (` / `not in (` inside the name would be taken for the operator.
    let parser = Parser::new(field);
    (0..parser.chars.len()).any(|i| {
        let word_start = i == 0 || parser.chars[i - 1].is_whitespace();
        matches!(parser.op_at(i, word_start), OpAt::Found(_))
    })
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let write_value = |f: &mut fmt::Formatter<'_>, v: &str| {
            if value_needs_quotes(v) {
                write_quoted(f, v)
            } else {
                f.write_str(v)
            }
        };
        match self {
            Condition::IsManager(b) => write!(f, "is_manager = {b}"),
            Condition::Field { field, op, values } => {
                if field_needs_quotes(field) {
                    write_quoted(f, field)?;
                } else {
                    f.write_str(field)?;
                }
                write!(f, " {op} ")?;
                match op {
                    Op::Eq | Op::Ne => write_value(f, values.first().map_or("", String::as_str)),
                    Op::In | Op::NotIn => {
                        f.write_str("(")?;
                        for (i, v) in values.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write_value(f, v)?;
                        }
                        f.write_str(")")
                    }
                }
            }
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Condition::parse_stored(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::Rule;
    use crate::core::rules::tests::field;
    use proptest::prelude::*;

    #[test]
    fn good_conditions_parse_to_field_op_and_values_as_written() {
        use Op::*;
        let cases: &[(&str, Condition)] = &[
            (
                "department = Finance",
                field("department", Eq, &["Finance"]),
            ),
            (
                "  Department   =   Finance  ",
                field("Department", Eq, &["Finance"]),
            ),
            ("department=Finance", field("department", Eq, &["Finance"])),
            ("department != Sales", field("department", Ne, &["Sales"])),
            ("department!=Sales", field("department", Ne, &["Sales"])),
            (
                "Job Title = Senior Engineer",
                field("Job Title", Eq, &["Senior Engineer"]),
            ),
            (
                "department in (Sales, Marketing)",
                field("department", In, &["Sales", "Marketing"]),
            ),
            (
                "department IN(Sales,Marketing)",
                field("department", In, &["Sales", "Marketing"]),
            ),
            (
                "department In ( Sales )",
                field("department", In, &["Sales"]),
            ),
            (
                "department not in (Sales)",
                field("department", NotIn, &["Sales"]),
            ),
            (
                "department NOT   In(Sales, HR)",
                field("department", NotIn, &["Sales", "HR"]),
            ),
            (
                r#"department in ("R&D, Europe", Sales)"#,
                field("department", In, &["R&D, Europe", "Sales"]),
            ),
            (
                r#"title = "5"" screen""#,
                field("title", Eq, &["5\" screen"]),
            ),
            (r#"title = """""#, field("title", Eq, &["\""])),
            (r#"department = """#, field("department", Eq, &[""])),
            (
                r#"department in ("", x)"#,
                field("department", In, &["", "x"]),
            ),
            (
                r#"department = " padded ""#,
                field("department", Eq, &[" padded "]),
            ),
            (
                "department = R&D Europe",
                field("department", Eq, &["R&D Europe"]),
            ),
            (
                r#"department = "a = b""#,
                field("department", Eq, &["a = b"]),
            ),
            (
                r#"formula = "=SUM(A1)""#,
                field("formula", Eq, &["=SUM(A1)"]),
            ),
            ("department in (a, A)", field("department", In, &["a", "A"])),
            (
                "Sign In Method = SSO",
                field("Sign In Method", Eq, &["SSO"]),
            ),
            (
                "Sign In Method in (SSO)",
                field("Sign In Method", In, &["SSO"]),
            ),
            (
                "Cost Center (EU) = 100",
                field("Cost Center (EU)", Eq, &["100"]),
            ),
            (
                "Cost Center (EU) not in (100)",
                field("Cost Center (EU)", NotIn, &["100"]),
            ),
            (
                r#""Based in (city)" in (Paris)"#,
                field("Based in (city)", In, &["Paris"]),
            ),
            (r#""x not" in (a)"#, field("x not", In, &["a"])),
            (r#""a=b" != c"#, field("a=b", Ne, &["c"])),
            ("city = Zürich", field("city", Eq, &["Zürich"])),
            ("部門 = 営業", field("部門", Eq, &["営業"])),
            ("Work Email = a@b.c", field("Work Email", Eq, &["a@b.c"])),
            ("is_manager = true", Condition::IsManager(true)),
            ("IsManager = FALSE", Condition::IsManager(false)),
            (" Is Manager=True ", Condition::IsManager(true)),
            (r#"is_manager = "false""#, Condition::IsManager(false)),
            (r#""is-manager" = true"#, Condition::IsManager(true)),
        ];
        for (text, expected) in cases {
            assert_eq!(Condition::parse(text).as_ref(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_conditions_name_the_column_and_what_to_write() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "the condition is empty"),
            ("   ", 4, "the condition is empty"),
            (
                "department",
                11,
                "expected an operator after the field name",
            ),
            ("department Finance", 19, "use =, !=, in (…) or not in (…)"),
            ("department = a = b", 16, "one condition per --when"),
            (
                "department != Finance and department != IT",
                39,
                "one condition per --when",
            ),
            ("department in (A, B = C)", 21, "one condition per --when"),
            (
                r#""department" Finance"#,
                14,
                "expected an operator after the field name",
            ),
            ("department = (", 14, "expected a value after \"=\""),
            ("department = (a, b)", 14, "write department in (A, B)"),
            ("department =", 13, "expected a value after \"=\""),
            ("department !=  ", 16, "expected a value after \"!=\""),
            ("= Finance", 1, "expected a field name before \"=\""),
            ("  in (a)", 3, "expected a field name before \"in\""),
            ("department in (", 15, "missing \")\" to close the list"),
            ("department in (a", 15, "missing \")\" to close the list"),
            (
                r#"department in ("a", "#,
                15,
                "missing \")\" to close the list",
            ),
            ("department in ()", 16, "the list is empty"),
            ("department in (a,)", 18, "expected a value before \")\""),
            ("department in (a,, b)", 18, "expected a value before \",\""),
            (
                "department in (a) x",
                19,
                "unexpected text after the closing \")\"",
            ),
            (r#"department in ("a" b)"#, 20, "expected \",\" or \")\""),
            ("department in (a(b))", 17, "must be in double quotes"),
            (
                r#"department in (a"b")"#,
                17,
                "must be quoted, the quote doubled",
            ),
            (
                r#"department in ("a"#,
                16,
                "missing closing double quote for the value",
            ),
            (
                r#"department = "Sales"#,
                14,
                "missing closing double quote for the value",
            ),
            (
                r#"department = "Sales" x"#,
                22,
                "unexpected text after the closing quote",
            ),
            ("department in Sales", 15, "expected \"(\" after \"in\""),
            ("department not in Sales", 19, "expected \"(\" after \"in\""),
            ("department in", 14, "expected \"(\" after \"in\""),
            (
                "department = a, b",
                15,
                "a value containing \",\" must be in double quotes",
            ),
            (
                "department = a)",
                15,
                "a value containing \")\" must be in double quotes",
            ),
            (
                r#"department = 5" screen"#,
                15,
                "must be quoted, the quote doubled",
            ),
            ("department == Finance", 13, "unsupported operator \"==\""),
            (
                "department != = Finance",
                15,
                "unsupported operator \"!==\"",
            ),
            ("salary >= 5", 8, "unsupported operator \">=\""),
            ("salary <= 5", 8, "unsupported operator \"<=\""),
            ("level => 5", 8, "unsupported operator \"=>\""),
            ("level =< 5", 8, "unsupported operator \"=<\""),
            ("department =! Finance", 13, "unsupported operator \"=!\""),
            ("department !=~x", 14, "unsupported operator \"!=~\""),
            ("department ~= Sales", 12, "unsupported operator \"~=\""),
            ("department := Sales", 12, "unsupported operator \":=\""),
            ("title *= lead", 7, "unsupported operator \"*=\""),
            ("department /= Sales", 12, "unsupported operator \"/=\""),
            ("department @= Sales", 12, "unsupported operator \"@=\""),
            ("department ！= Sales", 12, "unsupported operator \"！=\""),
            (
                "is_manager != true",
                12,
                "is_manager only takes \"= true\" or \"= false\"",
            ),
            (
                "is_manager in (true)",
                12,
                "is_manager only takes \"= true\"",
            ),
            ("is_manager = yes", 14, "is_manager is true or false"),
            ("is_manager = ", 14, "expected a value after \"=\""),
            (r#""" = x"#, 1, "the field name is empty"),
            (r#""  " = x"#, 1, "the field name is empty"),
            (
                r#""department = x"#,
                1,
                "missing closing double quote for the field name",
            ),
            (
                r#"dep"t = x"#,
                4,
                "unexpected double quote in the field name",
            ),
        ];
        for (text, position, fragment) in cases {
            let err = Condition::parse(text).expect_err(text);
            assert_eq!(err.text, *text);
            assert_eq!(err.position, *position, "{text}: {}", err.message);
            assert!(err.message.contains(fragment), "{text}: {}", err.message);
        }
    }

    /// A value right after its operator that starts like one is an operator's typo;
    /// spaced from it, it is a value (as rules saved before the typo was refused show).
    #[test]
    fn an_operators_typo_is_refused_and_a_spaced_value_is_taken_as_written() {
        assert!(Condition::parse("level => 5").is_err());
        let spaced = Condition::parse("level = > 5").unwrap();
        assert_eq!(spaced, field("level", Op::Eq, &["> 5"]));
        assert_eq!(Condition::parse(&spaced.to_string()), Ok(spaced));
        let stored: Condition = serde_json::from_str(r#""department = ! Finance""#).unwrap();
        assert_eq!(stored, field("department", Op::Eq, &["! Finance"]));
        assert_eq!(
            Condition::parse("department = <b>Ops</b>"),
            Ok(field("department", Op::Eq, &["<b>Ops</b>"]))
        );
        assert_eq!(
            Condition::parse(r#"title ="!x""#),
            Ok(field("title", Op::Eq, &["!x"]))
        );
    }

    #[test]
    fn condition_error_display_quotes_the_text_and_gives_the_column() {
        let err = Condition::parse("department in (Sales").unwrap_err();
        assert_eq!(
            err.to_string(),
            "in \"department in (Sales\", column 15: missing \")\" to close the list opened \
             here; e.g. department in (Sales, \"R&D, Europe\")"
        );
    }

    #[test]
    fn display_is_the_canonical_when_syntax() {
        use Op::*;
        let cases: &[(Condition, &str)] = &[
            (
                field("department", Eq, &["Finance"]),
                "department = Finance",
            ),
            (field("Job Title", Ne, &["Intern"]), "Job Title != Intern"),
            (
                field("department", In, &["Sales", "HR"]),
                "department in (Sales, HR)",
            ),
            (
                field("department", NotIn, &["Sales"]),
                "department not in (Sales)",
            ),
            (
                field("department", In, &["R&D, Europe", "Sales"]),
                r#"department in ("R&D, Europe", Sales)"#,
            ),
            (
                field("title", Eq, &["5\" screen"]),
                r#"title = "5"" screen""#,
            ),
            (field("department", Eq, &[""]), r#"department = """#),
            (
                field("department", Eq, &[" padded "]),
                r#"department = " padded ""#,
            ),
            (field("formula", Eq, &["=x"]), r#"formula = "=x""#),
            (field("formula", Eq, &["a(b)"]), r#"formula = "a(b)""#),
            (
                field("Sign In Method", In, &["SSO"]),
                "Sign In Method in (SSO)",
            ),
            (
                field("Cost Center (EU)", Eq, &["1"]),
                "Cost Center (EU) = 1",
            ),
            (
                field("Based in (city)", In, &["Paris"]),
                r#""Based in (city)" in (Paris)"#,
            ),
            (field("x not", In, &["a"]), r#""x not" in (a)"#),
            (field("a=b", Eq, &["c"]), r#""a=b" = c"#),
            // A value with "=" or the word "and" is quoted: conditions are listed joined by
            // " and ", and one value had read as two conditions.
            (
                field("department", Ne, &["Finance and department != IT"]),
                r#"department != "Finance and department != IT""#,
            ),
            (
                field("department", Eq, &["Research AND Development"]),
                r#"department = "Research AND Development""#,
            ),
            (field("team", Eq, &["Sandy"]), "team = Sandy"),
            (field("size<", Eq, &["c"]), r#""size<" = c"#),
            (field("say \"hi\"", Eq, &["c"]), r#""say ""hi""" = c"#),
            (Condition::IsManager(true), "is_manager = true"),
            (Condition::IsManager(false), "is_manager = false"),
        ];
        for (condition, text) in cases {
            assert_eq!(condition.to_string(), *text);
            assert_eq!(Condition::parse(text).as_ref(), Ok(condition), "{text}");
        }
    }

    #[test]
    fn field_key_resolves_aliases_and_is_none_for_is_manager() {
        let columns = Columns::default();
        let key = |c: &str| Condition::parse(c).unwrap().field_key(&columns);
        assert_eq!(key("Work Email = a@b.c"), Some("email".to_string()));
        assert_eq!(key("Job Title = x"), Some("jobtitle".to_string()));
        assert_eq!(key("is_manager = true"), None);
    }

    /// A rule saved before an unquoted `=` was refused is read back as saved (its stored
    /// text had not quoted it), and shown quoted from then on.
    #[test]
    fn a_stored_condition_with_an_unquoted_equals_sign_still_reads() {
        let stored = r#"{"id":1,"name":"n","role":"r","conditions":["department = a = b"],"enabled":true,"created_at":"t","created_by":"u"}"#;
        let rule: Rule = serde_json::from_str(stored).unwrap();
        assert_eq!(rule.conditions[0], field("department", Op::Eq, &["a = b"]));
        let ldap = Rule {
            conditions: vec![field("group", Op::Eq, &["CN=IT-Admins,OU=Groups"])],
            ..rule.clone()
        };
        assert_eq!(ldap.ambiguity(), None, "a value with = is a value");
        let value = |v: &str| Rule {
            conditions: vec![field("department", Op::Ne, &[v])],
            ..rule.clone()
        };
        for merged in [
            "Finance and department != IT",
            "Finance and location=Remote",
            "Finance AND is_manager=true",
            "Finance and team in (Ops)",
        ] {
            assert!(value(merged).ambiguity().is_some(), "{merged}");
        }
        for plain in ["Research and Development", "a = b", "Sand=Stone", "R&D and"] {
            assert_eq!(value(plain).ambiguity(), None, "{plain}");
        }
        assert_eq!(rule.conditions[0].to_string(), r#"department = "a = b""#);
        let plain = Rule {
            conditions: vec![field("department", Op::Eq, &["a"])],
            ..rule
        };
        assert_eq!(plain.ambiguity(), None);
        assert!(Condition::parse("department = a = b").is_err());
    }

    #[test]
    fn deserializing_a_bad_condition_fails_with_its_message() {
        let err = serde_json::from_str::<Condition>(r#""department in ()""#).unwrap_err();
        assert!(
            err.to_string().contains("column 16: the list is empty"),
            "{err}"
        );
        let no_enabled = r#"{"id":1,"name":"n","role":"r","conditions":["a = b"],"created_at":"t","created_by":"u"}"#;
        assert!(serde_json::from_str::<Rule>(no_enabled).unwrap().enabled);
    }

    // ---- property tests ----

    fn text_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 ,()\"=!<>é日ß\t&]{1,3}",
            Just("in".to_string()),
            Just("not".to_string()),
            Just(" in ".to_string()),
            Just(" not ".to_string()),
            Just("(".to_string()),
            any::<char>().prop_map(String::from),
        ]
    }

    fn text(max_pieces: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(text_piece(), 0..max_pieces).prop_map(|v| v.concat())
    }

    fn arbitrary_condition() -> impl Strategy<Value = Condition> {
        let field_name = text(6).prop_filter("a field name", |f| {
            !f.trim().is_empty() && normalize_header(f) != "ismanager"
        });
        let op = prop_oneof![Just(Op::Eq), Just(Op::Ne), Just(Op::In), Just(Op::NotIn)];
        prop_oneof![
            any::<bool>().prop_map(Condition::IsManager),
            (field_name, op, prop::collection::vec(text(4), 1..4)).prop_map(
                |(field, op, mut values)| {
                    if matches!(op, Op::Eq | Op::Ne) {
                        values.truncate(1);
                    }
                    Condition::Field { field, op, values }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn display_then_parse_gives_back_the_condition(c in arbitrary_condition()) {
            let text = c.to_string();
            prop_assert_eq!(Condition::parse(&text), Ok(c), "{}", text);
        }

        #[test]
        fn parse_never_panics_and_errors_point_inside_or_just_past_the_text(s in text(10)) {
            if let Err(e) = Condition::parse(&s) {
                prop_assert!(e.position >= 1 && e.position <= s.chars().count() + 1, "{:?}", e);
            }
        }
    }
}
