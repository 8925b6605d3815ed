//! Rules: the `--when` condition syntax, evaluation against a roster, and overlap analysis (SPEC §2).
//!
//! A condition is `FIELD OP VALUE`. Parsing keeps the field and values as written so that
//! `rules show` prints what the admin typed; every comparison folds both sides with
//! [`fold_value`], so `department = FINANCE` matches a cell ` finance `.

use crate::core::columns::{Columns, fold_value, normalize_header};
use crate::core::model::{Employee, Roster, Sym};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A rule's identifier: assigned in creation order, never reused; lower wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(pub u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

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
    fn is_positive(self) -> bool {
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
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            chars: text.chars().collect(),
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
            if matches!(last, '<' | '>' | '!') {
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
    v.is_empty() || v.trim() != v || v.starts_with('=') || v.contains([',', '(', ')', '"'])
}

/// Whether a field name must be quoted to parse back to itself.
fn field_needs_quotes(field: &str) -> bool {
    if field.is_empty() || field.trim() != field || field.contains(['"', '=']) {
        return true;
    }
    if field.ends_with(['<', '>', '!']) {
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
        Condition::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn default_enabled() -> bool {
    true
}

/// A provisioning rule: employees for whom all conditions hold get `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Assigned in creation order; the lowest matching id wins.
    pub id: RuleId,
    /// Unique name chosen by the admin.
    pub name: String,
    /// The role granted, one of `provisioning.roles`.
    pub role: String,
    /// All must hold; printed in the `--when` syntax.
    pub conditions: Vec<Condition>,
    /// Disabled rules are kept but never evaluated.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// When the rule was created (RFC 3339).
    pub created_at: String,
    /// Unix user who created the rule.
    pub created_by: String,
}

/// Field names (as written) that the enabled rules read, excluding is_manager, one per
/// field key, in rule order.
pub fn needed_fields(rules: &[Rule], columns: &Columns) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled) {
        for condition in &rule.conditions {
            if let Condition::Field { field, .. } = condition
                && seen.insert(columns.key(field))
            {
                out.push(field.clone());
            }
        }
    }
    out
}

/// What the conditions on one field key allow: `allowed` (if any positive condition) minus `denied`.
#[derive(Default)]
struct FieldConstraint {
    allowed: Option<BTreeSet<String>>,
    denied: BTreeSet<String>,
}

/// Can both rules' conditions hold for one employee? Decided from the conditions alone, field by field.
///
/// Per field key, `=` and `in` intersect and `!=` and `not in` subtract (values folded);
/// a field with no `=` / `in` can always take a value nobody mentioned.
pub fn can_overlap(a: &Rule, b: &Rule, columns: &Columns) -> bool {
    let mut manager: Option<bool> = None;
    let mut fields: BTreeMap<String, FieldConstraint> = BTreeMap::new();
    for condition in a.conditions.iter().chain(&b.conditions) {
        match condition {
            Condition::IsManager(want) => {
                if manager.is_some_and(|m| m != *want) {
                    return false;
                }
                manager = Some(*want);
            }
            Condition::Field { field, op, values } => {
                let constraint = fields.entry(columns.key(field)).or_default();
                let folded: BTreeSet<String> = values.iter().map(|v| fold_value(v)).collect();
                if op.is_positive() {
                    constraint.allowed = Some(match constraint.allowed.take() {
                        None => folded,
                        Some(allowed) => allowed.intersection(&folded).cloned().collect(),
                    });
                } else {
                    constraint.denied.extend(folded);
                }
            }
        }
    }
    fields.values().all(|c| match &c.allowed {
        None => true,
        Some(allowed) => allowed.iter().any(|v| !c.denied.contains(v)),
    })
}

/// Sets of up to this many symbols are searched linearly, larger ones by bisection.
const LINEAR_SEARCH_MAX: usize = 16;

/// One condition resolved against a roster.
#[derive(Debug, Clone)]
enum Test {
    /// The cell at `index` is (`equal`) or is not (`!equal`) `sym`.
    One { index: usize, sym: Sym, equal: bool },
    /// The cell at `index` is (`member`) or is not (`!member`) in the sorted `syms`.
    Set {
        index: usize,
        syms: Box<[Sym]>,
        member: bool,
    },
    /// The employee's derived `is_manager` equals this.
    Manager(bool),
}

impl Test {
    #[inline]
    fn holds(&self, employee: &Employee) -> bool {
        match self {
            Test::One { index, sym, equal } => (employee.values.get(*index) == Some(sym)) == *equal,
            Test::Set {
                index,
                syms,
                member,
            } => {
                let found = match employee.values.get(*index) {
                    None => false,
                    Some(v) if syms.len() <= LINEAR_SEARCH_MAX => syms.contains(v),
                    Some(v) => syms.binary_search(v).is_ok(),
                };
                found == *member
            }
            Test::Manager(want) => employee.is_manager == *want,
        }
    }
}

/// A rule resolved against one roster: field indices and interned value sets, for fast evaluation.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    id: RuleId,
    /// A `=` / `in` whose values no employee has: the rule matches nobody.
    never: bool,
    tests: Box<[Test]>,
}

impl CompiledRule {
    /// Resolves the rule's fields and values; a field the roster did not keep is
    /// `Err(field name as written)`.
    pub fn compile(
        rule: &Rule,
        roster: &Roster,
        columns: &Columns,
    ) -> Result<CompiledRule, String> {
        let mut never = false;
        let mut tests = Vec::with_capacity(rule.conditions.len());
        for condition in &rule.conditions {
            let (field, op, values) = match condition {
                Condition::IsManager(want) => {
                    tests.push(Test::Manager(*want));
                    continue;
                }
                Condition::Field { field, op, values } => (field, *op, values),
            };
            let index = roster
                .field_index(&columns.key(field))
                .ok_or_else(|| field.clone())?;
            // A value no cell has gets no symbol: it can only fail `=`/`in` and pass `!=`/`not in`.
            let mut syms: Vec<Sym> = values
                .iter()
                .filter_map(|v| roster.symbols.get(&fold_value(v)))
                .collect();
            syms.sort_unstable();
            syms.dedup();
            let positive = op.is_positive();
            match (syms.as_slice(), positive) {
                ([], true) => never = true,
                ([], false) => {}
                ([sym], equal) => tests.push(Test::One {
                    index,
                    sym: *sym,
                    equal,
                }),
                (_, member) => tests.push(Test::Set {
                    index,
                    syms: syms.into_boxed_slice(),
                    member,
                }),
            }
        }
        Ok(CompiledRule {
            id: rule.id,
            never,
            tests: tests.into_boxed_slice(),
        })
    }

    /// Whether all of the rule's conditions hold for `employee` (active or not).
    #[inline]
    pub fn matches(&self, employee: &Employee) -> bool {
        !self.never && self.tests.iter().all(|t| t.holds(employee))
    }

    /// The id of the rule this was compiled from.
    pub fn id(&self) -> RuleId {
        self.id
    }
}

/// The matching rule ids of every employee, stored flat: one allocation for the whole roster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchTable {
    /// `ids[offsets[i]..offsets[i + 1]]` belong to employee `i`.
    offsets: Vec<usize>,
    ids: Vec<RuleId>,
}

impl MatchTable {
    /// Evaluates `rules` for every employee of `roster`; inactive employees match nothing.
    pub fn build(roster: &Roster, rules: &[CompiledRule]) -> MatchTable {
        let mut order: Vec<&CompiledRule> = rules.iter().collect();
        order.sort_by_key(|r| r.id);
        let mut offsets = Vec::with_capacity(roster.employees.len() + 1);
        let mut ids = Vec::new();
        offsets.push(0);
        for employee in &roster.employees {
            if !employee.inactive {
                ids.extend(order.iter().filter(|r| r.matches(employee)).map(|r| r.id));
            }
            offsets.push(ids.len());
        }
        MatchTable { offsets, ids }
    }

    /// A table from per-employee lists (each lowest id first), e.g. written out in a test.
    pub fn from_lists(lists: &[Vec<RuleId>]) -> MatchTable {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        offsets.push(0);
        let mut ids = Vec::new();
        for list in lists {
            ids.extend_from_slice(list);
            offsets.push(ids.len());
        }
        MatchTable { offsets, ids }
    }

    /// Number of employees.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the table covers no employee.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Matching rule ids of employee `i` (roster order), lowest first; empty when out of range.
    pub fn get(&self, i: usize) -> &[RuleId] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&from), Some(&to)) => &self.ids[from..to],
            _ => &[],
        }
    }

    /// The matching rule ids of each employee, in roster order.
    pub fn iter(&self) -> impl Iterator<Item = &[RuleId]> + '_ {
        self.offsets.windows(2).map(|w| &self.ids[w[0]..w[1]])
    }
}

/// For each employee (same order as `roster.employees`): ids of the given compiled rules
/// that match, lowest id first. Inactive employees get an empty list.
pub fn matching(roster: &Roster, rules: &[CompiledRule]) -> Vec<Vec<RuleId>> {
    MatchTable::build(roster, rules)
        .iter()
        .map(<[RuleId]>::to_vec)
        .collect()
}

/// How many employee IDs `both_match` lists.
pub const BOTH_MATCH_SAMPLE: usize = 10;

/// Employees of `roster` (not inactive) matching both rules: (count, up to 10 employee
/// ids in file order).
pub fn both_match(roster: &Roster, a: &CompiledRule, b: &CompiledRule) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut sample = Vec::new();
    for employee in &roster.employees {
        if !employee.inactive && a.matches(employee) && b.matches(employee) {
            count += 1;
            if sample.len() < BOTH_MATCH_SAMPLE {
                sample.push(employee.id.to_string());
            }
        }
    }
    (count, sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Interner;
    use proptest::prelude::*;

    fn field(name: &str, op: Op, values: &[&str]) -> Condition {
        Condition::Field {
            field: name.to_string(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn rule(id: u64, conditions: &[&str]) -> Rule {
        Rule {
            id: RuleId(id),
            name: format!("rule {id}"),
            role: "IT Admin".to_string(),
            conditions: conditions
                .iter()
                .map(|c| Condition::parse(c).unwrap())
                .collect(),
            enabled: true,
            created_at: "2025-01-01T00:00:00Z".to_string(),
            created_by: "alice".to_string(),
        }
    }

    /// One roster row: id, cells (in `fields` order), is_manager, inactive.
    type Row<'a> = (&'a str, &'a [&'a str], bool, bool);

    fn roster(fields: &[&str], rows: &[Row]) -> Roster {
        let mut symbols = Interner::default();
        let employees = rows
            .iter()
            .enumerate()
            .map(|(i, (id, cells, is_manager, inactive))| {
                assert_eq!(cells.len(), fields.len(), "row {id}");
                Employee {
                    line: i as u64 + 2,
                    id: (*id).into(),
                    email: format!("{id}@example.com").into(),
                    manager_id: "".into(),
                    inactive: *inactive,
                    is_manager: *is_manager,
                    values: cells
                        .iter()
                        .map(|c| symbols.intern(&fold_value(c)))
                        .collect(),
                }
            })
            .collect::<Vec<_>>();
        let keys: Vec<String> = fields.iter().map(|f| Columns::default().key(f)).collect();
        Roster {
            rows: employees.len(),
            fields: keys.clone(),
            present: keys,
            employees,
            symbols,
            warnings: Vec::new(),
            email_column: "email".into(),
        }
    }

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
            ("department = a = b", field("department", Eq, &["a = b"])),
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

    #[test]
    fn rules_serialize_with_conditions_in_when_syntax() {
        let r = rule(
            7,
            &[
                r#"department in ("R&D, Europe", Sales)"#,
                "is_manager = true",
            ],
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"id":7,"name":"rule 7","role":"IT Admin","conditions":["department in (\"R&D, Europe\", Sales)","is_manager = true"],"enabled":true,"created_at":"2025-01-01T00:00:00Z","created_by":"alice"}"#
        );
        assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), r);
        assert_eq!(RuleId(42).to_string(), "42");
        assert_eq!(serde_json::to_string(&RuleId(42)).unwrap(), "42");
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

    #[test]
    fn needed_fields_lists_each_field_key_once_from_enabled_rules() {
        let columns = Columns::default();
        let mut disabled = rule(3, &["cost_center = 1"]);
        disabled.enabled = false;
        let rules = [
            rule(
                1,
                &[
                    "Department = Finance",
                    "is_manager = true",
                    "Work Email != x",
                ],
            ),
            disabled,
            rule(
                2,
                &[
                    "department in (a)",
                    "email = y",
                    "Job Title = z",
                    "job_title != w",
                ],
            ),
        ];
        assert_eq!(
            needed_fields(&rules, &columns),
            vec!["Department", "Work Email", "Job Title"]
        );
        assert_eq!(needed_fields(&[], &columns), Vec::<String>::new());
    }

    #[test]
    fn can_overlap_decides_from_conditions_field_by_field() {
        let columns = Columns::default();
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["department = Finance"], &["department = Finance"], true),
            (&["department = Finance"], &["department = Sales"], false),
            (
                &["department = Finance"],
                &["DEPARTMENT = \" FINANCE \""],
                true,
            ),
            (&["department = Finance"], &["department != finance"], false),
            (&["department = Finance"], &["department != Sales"], true),
            (&["department in (A, B)"], &["department not in (A)"], true),
            (
                &["department in (A, B)"],
                &["department not in (b, a)"],
                false,
            ),
            (&["department in (A, B)"], &["department in (B, C)"], true),
            (&["department in (A)"], &["department in (B)"], false),
            (&["department != A"], &["department != B"], true),
            (&["department not in (A)"], &["department not in (A)"], true),
            (&["department = A"], &["title = B"], true),
            (
                &["department = A"],
                &["title != B", "is_manager = false"],
                true,
            ),
            (&["Work Email = x@y.z"], &["email != X@Y.Z"], false),
            (&["Work Email = x@y.z"], &["UPN = X@Y.Z"], true),
            (&["Job Title = x"], &["job_title != x"], false),
            (&["is_manager = true"], &["is_manager = false"], false),
            (&["is_manager = true"], &["is_manager = true"], true),
            (&["is_manager = true"], &["department = A"], true),
            (&["department = A", "department = B"], &["title = x"], false),
            (
                &["department in (A, B)", "department != A"],
                &["department = B"],
                true,
            ),
            (
                &["department in (A, B)", "department != A"],
                &["department != B"],
                false,
            ),
            (&["department = \"\""], &["department != \"\""], false),
            (&["department = \"\""], &["department = \" \""], true),
            (
                &["department = A", "is_manager = true"],
                &["department = A", "is_manager = false"],
                false,
            ),
        ];
        for (a, b, expected) in cases {
            let (ra, rb) = (rule(1, a), rule(2, b));
            assert_eq!(can_overlap(&ra, &rb, &columns), *expected, "{a:?} vs {b:?}");
            assert_eq!(can_overlap(&rb, &ra, &columns), *expected, "{b:?} vs {a:?}");
        }
        let contradictory = rule(1, &["department = A", "department != a"]);
        assert!(!can_overlap(&contradictory, &contradictory, &columns));
        let plain = rule(2, &["department = A"]);
        assert!(can_overlap(&plain, &plain, &columns));
    }

    fn sample_roster() -> Roster {
        roster(
            &["Department", "Job Title", "Work Email"],
            &[
                ("E1", &["Finance", "Engineer", "e1@x.com"], true, false),
                ("E2", &[" finance ", "Analyst", "e2@x.com"], false, false),
                ("E3", &["Sales", "Engineer", "e3@x.com"], true, false),
                ("E4", &["R&D, Europe", "Engineer", "e4@x.com"], false, false),
                ("E5", &["", "Intern", "e5@x.com"], false, false),
                ("E6", &["Finance", "Engineer", "e6@x.com"], true, true),
            ],
        )
    }

    fn ids_matching(roster: &Roster, conditions: &[&str]) -> Vec<&'static str> {
        let compiled = CompiledRule::compile(&rule(1, conditions), roster, &Columns::default())
            .expect("fields present");
        let names = ["E1", "E2", "E3", "E4", "E5", "E6"];
        roster
            .employees
            .iter()
            .zip(names)
            .filter(|(e, _)| compiled.matches(e))
            .map(|(_, n)| n)
            .collect()
    }

    #[test]
    fn compiled_rules_compare_folded_values() {
        let r = sample_roster();
        let cases: &[(&[&str], &[&str])] = &[
            (&["department = FINANCE"], &["E1", "E2", "E6"]),
            (
                &["department = Finance", "is_manager = true"],
                &["E1", "E6"],
            ),
            (&["department = Finance", "is_manager = false"], &["E2"]),
            (&["department != Finance"], &["E3", "E4", "E5"]),
            (&["department in (Sales, \"R&D, Europe\")"], &["E3", "E4"]),
            (
                &["department not in (Sales, \"r&d, europe\", \"\")"],
                &["E1", "E2", "E6"],
            ),
            (&["department = \"\""], &["E5"]),
            (&["department = \"  \""], &["E5"]),
            (
                &["job_title = engineer", "department != finance"],
                &["E3", "E4"],
            ),
            (&["email = E3@X.COM"], &["E3"]),
            (&["department = Legal"], &[]),
            (&["department in (Legal, Ops)"], &[]),
            (&["department in (Legal, Sales)"], &["E3"]),
            (
                &["department != Legal"],
                &["E1", "E2", "E3", "E4", "E5", "E6"],
            ),
            (
                &["department not in (Legal, Ops)"],
                &["E1", "E2", "E3", "E4", "E5", "E6"],
            ),
            (&["department = Legal", "is_manager = true"], &[]),
            (&["is_manager = true", "is_manager = false"], &[]),
            (&["department = Finance", "department = Sales"], &[]),
        ];
        for (conditions, expected) in cases {
            assert_eq!(ids_matching(&r, conditions), *expected, "{conditions:?}");
        }
    }

    #[test]
    fn large_value_sets_are_searched_correctly() {
        let values: Vec<String> = (0..40).map(|i| format!("D{i}")).collect();
        let cells: Vec<[&str; 1]> = values.iter().map(|v| [v.as_str()]).collect();
        let rows: Vec<Row> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (values[i].as_str(), &c[..], false, false))
            .collect();
        let r = roster(&["department"], &rows);
        let odd: Vec<String> = (1..40).step_by(2).map(|i| format!("d{i}")).collect();
        let list = format!("department in ({})", odd.join(", "));
        let not_list = format!("department not in ({})", odd.join(", "));
        let columns = Columns::default();
        let ins = CompiledRule::compile(&rule(1, &[&list]), &r, &columns).unwrap();
        let outs = CompiledRule::compile(&rule(2, &[&not_list]), &r, &columns).unwrap();
        let matched: Vec<usize> = (0..40).filter(|&i| ins.matches(&r.employees[i])).collect();
        assert_eq!(matched, (1..40).step_by(2).collect::<Vec<_>>());
        let unmatched: Vec<usize> = (0..40).filter(|&i| outs.matches(&r.employees[i])).collect();
        assert_eq!(unmatched, (0..40).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn compile_refuses_a_field_the_roster_did_not_keep() {
        let r = sample_roster();
        let columns = Columns::default();
        let err = CompiledRule::compile(
            &rule(1, &["department = x", "Cost Center = 1"]),
            &r,
            &columns,
        )
        .unwrap_err();
        assert_eq!(err, "Cost Center");
        let ok =
            CompiledRule::compile(&rule(9, &["DEPARTMENT = x", "UPN = y"]), &r, &columns).unwrap();
        assert_eq!(ok.id(), RuleId(9));
    }

    #[test]
    fn matching_lists_rule_ids_lowest_first_and_nothing_for_inactive() {
        let r = sample_roster();
        let columns = Columns::default();
        let compiled: Vec<CompiledRule> = [
            rule(5, &["job_title = Engineer"]),
            rule(2, &["department = finance"]),
            rule(9, &["is_manager = true"]),
        ]
        .iter()
        .map(|x| CompiledRule::compile(x, &r, &columns).unwrap())
        .collect();
        let ids = |v: &[u64]| v.iter().map(|&i| RuleId(i)).collect::<Vec<_>>();
        assert_eq!(
            matching(&r, &compiled),
            vec![
                ids(&[2, 5, 9]),
                ids(&[2]),
                ids(&[5, 9]),
                ids(&[5]),
                ids(&[]),
                ids(&[])
            ]
        );
        let table = MatchTable::build(&r, &compiled);
        assert_eq!(table.len(), 6);
        assert_eq!(table.get(2), &ids(&[5, 9])[..]);
        assert_eq!(table.get(6), &[] as &[RuleId]);
        assert_eq!(matching(&r, &[]), vec![Vec::<RuleId>::new(); 6]);
        assert_eq!(
            matching(&Roster::default(), &compiled),
            Vec::<Vec<RuleId>>::new()
        );
    }

    #[test]
    fn both_match_counts_active_employees_and_samples_ten_ids_in_file_order() {
        let names: Vec<String> = (1..=15).map(|i| format!("{i:03}")).collect();
        let mut rows: Vec<Row> = names
            .iter()
            .map(|n| (n.as_str(), &["Finance"][..], true, false))
            .collect();
        rows.insert(3, ("X1", &["Finance"], true, true));
        rows.push(("X2", &["Sales"], true, false));
        let r = roster(&["department"], &rows);
        let columns = Columns::default();
        let a = CompiledRule::compile(&rule(1, &["department = finance"]), &r, &columns).unwrap();
        let b = CompiledRule::compile(&rule(2, &["is_manager = true"]), &r, &columns).unwrap();
        let (count, sample) = both_match(&r, &a, &b);
        assert_eq!(count, 15);
        assert_eq!(sample, names[..10].to_vec());
        let c = CompiledRule::compile(&rule(3, &["department = Sales"]), &r, &columns).unwrap();
        assert_eq!(both_match(&r, &b, &c), (1, vec!["X2".to_string()]));
        assert_eq!(both_match(&r, &a, &c), (0, vec![]));
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

    /// Small universes so that generated rules and employees collide often.
    const FIELDS: &[&str] = &[
        "department",
        "Department",
        "Job Title",
        "job_title",
        "email",
        "Work Email",
    ];
    const VALUES: &[&str] = &["a", "A", " a", "b", "c", ""];
    const KEYS: &[&str] = &["department", "jobtitle", "email"];
    const CELLS: &[&str] = &["a", "b", "c", "", "d"];

    fn small_condition() -> impl Strategy<Value = Condition> {
        let op = prop_oneof![Just(Op::Eq), Just(Op::Ne), Just(Op::In), Just(Op::NotIn)];
        prop_oneof![
            1 => any::<bool>().prop_map(Condition::IsManager),
            4 => (
                prop::sample::select(FIELDS),
                op,
                prop::collection::vec(prop::sample::select(VALUES), 1..4)
            )
                .prop_map(|(f, op, values)| {
                    let n = if matches!(op, Op::Eq | Op::Ne) { 1 } else { values.len() };
                    field(f, op, &values[..n])
                }),
        ]
    }

    fn small_rule(id: u64) -> impl Strategy<Value = Rule> {
        prop::collection::vec(small_condition(), 1..4).prop_map(move |conditions| Rule {
            conditions,
            ..rule(id, &[])
        })
    }

    /// An employee who satisfies both rules, built from the constraints, when they can overlap.
    fn witness(a: &Rule, b: &Rule) -> (Vec<String>, bool) {
        let columns = Columns::default();
        let mut is_manager = false;
        let cells = KEYS
            .iter()
            .map(|key| {
                let mut allowed: Option<BTreeSet<String>> = None;
                let mut denied = BTreeSet::new();
                for c in a.conditions.iter().chain(&b.conditions) {
                    match c {
                        Condition::IsManager(m) => is_manager = *m,
                        Condition::Field { field, op, values } if columns.key(field) == *key => {
                            let folded: BTreeSet<String> =
                                values.iter().map(|v| fold_value(v)).collect();
                            if op.is_positive() {
                                allowed = Some(match allowed.take() {
                                    None => folded,
                                    Some(s) => s.intersection(&folded).cloned().collect(),
                                });
                            } else {
                                denied.extend(folded);
                            }
                        }
                        Condition::Field { .. } => {}
                    }
                }
                match allowed {
                    Some(s) => s
                        .into_iter()
                        .find(|v| !denied.contains(v))
                        .unwrap_or_default(),
                    None => "never-mentioned".to_string(),
                }
            })
            .collect();
        (cells, is_manager)
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

        #[test]
        fn can_overlap_is_symmetric(a in small_rule(1), b in small_rule(2)) {
            let columns = Columns::default();
            prop_assert_eq!(can_overlap(&a, &b, &columns), can_overlap(&b, &a, &columns));
        }

        #[test]
        fn can_overlap_is_sound_and_exact(
            a in small_rule(1),
            b in small_rule(2),
            people in prop::collection::vec(
                (prop::collection::vec(prop::sample::select(CELLS), 3), any::<bool>()),
                0..12,
            ),
        ) {
            let columns = Columns::default();
            let overlap = can_overlap(&a, &b, &columns);
            let names: Vec<String> = (0..people.len()).map(|i| format!("P{i}")).collect();
            let mut rows: Vec<Row> = people
                .iter()
                .zip(&names)
                .map(|((cells, m), n)| (n.as_str(), &cells[..], *m, false))
                .collect();
            let (w_cells, w_manager) = witness(&a, &b);
            let w_refs: Vec<&str> = w_cells.iter().map(String::as_str).collect();
            rows.push(("W", &w_refs, w_manager, false));
            let r = roster(KEYS, &rows);
            let ca = CompiledRule::compile(&a, &r, &columns).unwrap();
            let cb = CompiledRule::compile(&b, &r, &columns).unwrap();
            let (count, _) = both_match(&r, &ca, &cb);
            let witness_matches = r.employees.last().is_some_and(|w| ca.matches(w) && cb.matches(w));
            // Sound: an employee matching both means the rules overlap.
            prop_assert!(count == 0 || overlap, "{} employees match both", count);
            // Exact: when they overlap, the constructed witness matches both.
            prop_assert_eq!(witness_matches, overlap);
        }
    }
}
