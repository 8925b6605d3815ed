//! A report written out as the CLI prints it, without building it whole first (issue 14: a
//! first import of a million rows reports 950k changes).
//!
//! `--json` prints what `serde_json::to_string_pretty(&serde_json::to_value(report))` prints:
//! every object's keys sorted, as serde_json's map keeps them. [`Sorted`] and the types under
//! it serialize a [`Report`]'s fields in that order, so the answer is written straight from
//! the report instead of through a `serde_json::Value` of 950k objects (~0.8 GB). Each of
//! them takes its struct apart field by field: a field added to a report does not compile
//! until it is placed here. The text form is [`Report::write_text`].

use crate::core::accounts::Status;
use crate::core::model::Finding;
use crate::core::reconcile::{Action, Change, Counts};
use crate::core::report::{ByKind, Decision, Report, ReportStatus};
use crate::core::rules::RuleId;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use std::fmt;
use std::io::{self, Write};

/// Writes `report` to `out` as the CLI prints it: `--json` (`json`) or text, ending with a
/// newline.
pub fn write_report(report: &Report, out: &mut dyn Write, json: bool) -> io::Result<()> {
    if json {
        write_json(report, out, true)?;
        out.write_all(b"\n")?;
    } else {
        write_text(report, out)?;
    }
    out.flush()
}

/// Writes `report` as `serde_json::to_writer_pretty` writes it, or (`sorted`) as it writes
/// [`Sorted`], the `--json` form. Its changes, 950k at a first import, are written here
/// rather than through serde, which took ~0.55 s of CPU for them (the longer of the two
/// reports staged before a commit); the rest goes through serde with no changes, and the
/// changes go where its empty array is. Byte for byte what serde writes: see the tests.
pub fn write_json(report: &Report, out: &mut dyn Write, sorted: bool) -> io::Result<()> {
    let rest = if sorted {
        serde_json::to_vec_pretty(&Sorted {
            changes: Seq::of(&[]),
            ..Sorted::of(report)
        })
    } else {
        serde_json::to_vec_pretty(&Filed::of(report))
    }
    .map_err(io::Error::other)?;
    // A line break is never inside a string (it is escaped there): this is the key of the
    // outer object.
    const KEY: &[u8] = b"\n  \"changes\": [";
    let at = memchr::memmem::find(&rest, b"\n  \"changes\": []")
        .ok_or_else(|| io::Error::other("a report's JSON without its changes"))?
        + KEY.len();
    out.write_all(&rest[..at])?;
    write_changes(&report.changes, out, sorted)?;
    out.write_all(&rest[at..])
}

/// The elements of the `changes` array, as serde_json's pretty printer writes them there
/// (each object's keys in `Change`'s order, or sorted), then the line break and indent
/// before the array's `]`. Each object is written from its [`Shape`], made once for each
/// kind of change ([`ByKind`]).
fn write_changes(changes: &[Change], out: &mut dyn Write, sorted: bool) -> io::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    /// The order of a change's keys when sorted, as indexes of its fields.
    const SORTED: [usize; 8] = [2, 1, 0, 6, 7, 5, 4, 3];
    const AS_DECLARED: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    let order = if sorted { &SORTED } else { &AS_DECLARED };
    let mut shapes: ByKind<Shape> = ByKind::default();
    let mut scratch = Shape::default();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let shape = || {
            let mut shape = Shape::default();
            shape.fill(change, order);
            shape
        };
        match shapes.of(change, shape) {
            Some(shape) => shape.write(&mut buf, change),
            // Past that many kinds (a report read back from its file, whose every change
            // has names of its own), one shape is filled again for each.
            None => {
                scratch.fill(change, order);
                scratch.write(&mut buf, change);
            }
        }
        if buf.len() >= 60_000 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    buf.extend_from_slice(b"\n  ");
    out.write_all(&buf)
}

/// A change's JSON object in three pieces, around its ID and email (the one of the two that
/// comes first in the object's order first).
#[derive(Default)]
struct Shape {
    pieces: [Vec<u8>; 3],
    id_first: bool,
}

impl Shape {
    /// Made the shape of `change`'s object, its keys in `order` (indexes of its fields).
    fn fill(&mut self, change: &Change, order: &[usize; 8]) {
        const ID: usize = 0;
        const EMAIL: usize = 1;
        let Change {
            employee_id: _,
            email: _,
            action,
            rule_id,
            rule,
            role,
            previous_role,
            previous_status,
        } = change;
        let mut number = itoa::Buffer::new();
        let rule_id = rule_id.map(|id| number.format(id.0));
        let fields: [(&str, Option<&str>, bool); 8] = [
            ("employee_id", None, true),
            ("email", None, true),
            ("action", Some(action.as_str()), true),
            ("rule_id", rule_id, false),
            ("rule", rule.as_deref(), true),
            ("role", Some(role), true),
            ("previous_role", previous_role.as_deref(), true),
            ("previous_status", previous_status.map(Status::as_str), true),
        ];
        let pieces = &mut self.pieces;
        pieces.iter_mut().for_each(Vec::clear);
        let mut at = 0;
        self.id_first =
            order.iter().position(|&f| f == ID) < order.iter().position(|&f| f == EMAIL);
        pieces[0].extend_from_slice(b"\n    {");
        for (k, &field) in order.iter().enumerate() {
            let (key, value, quoted) = fields[field];
            let buf = &mut pieces[at];
            buf.extend_from_slice(if k == 0 {
                b"\n      \""
            } else {
                b",\n      \""
            });
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(b"\": ");
            match (field, value) {
                (ID | EMAIL, _) => at += 1,
                (_, None) => buf.extend_from_slice(b"null"),
                (_, Some(v)) if quoted => json_string(buf, v),
                (_, Some(v)) => buf.extend_from_slice(v.as_bytes()),
            }
        }
        pieces[at].extend_from_slice(b"\n    }");
    }

    /// Writes `change`'s object, which must be of the kind this shape was made for.
    fn write(&self, buf: &mut Vec<u8>, change: &Change) {
        let (first, second) = match self.id_first {
            true => (&change.employee_id, &change.email),
            false => (&change.email, &change.employee_id),
        };
        buf.extend_from_slice(&self.pieces[0]);
        json_string(buf, first);
        buf.extend_from_slice(&self.pieces[1]);
        json_string(buf, second);
        buf.extend_from_slice(&self.pieces[2]);
    }
}

/// `s` as a JSON string: copied between quotes when nothing in it is escaped (a quote, a
/// backslash or a control character), else as serde_json escapes it.
fn json_string(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        serde_json::to_writer(&mut *buf, s).expect("a string written to memory");
    }
}

/// A [`Report`] borrowed in its own field order, its changes left for [`write_changes`].
#[derive(Serialize)]
struct Filed<'a> {
    file: &'a str,
    stored_as: Option<&'a str>,
    sha256: &'a str,
    received_at: &'a str,
    processed_at: &'a str,
    status: ReportStatus,
    rows: usize,
    counts: &'a Counts,
    changes: &'a [Change],
    errors: &'a [Finding],
    more_errors: usize,
    warnings: &'a [Finding],
    held_because: &'a [String],
    repeats: Option<&'a str>,
    decision: Option<&'a Decision>,
}

impl<'a> Filed<'a> {
    /// The report's fields, borrowed, without its changes.
    fn of(report: &'a Report) -> Filed<'a> {
        let Report {
            file,
            stored_as,
            sha256,
            received_at,
            processed_at,
            status,
            rows,
            counts,
            changes: _,
            errors,
            more_errors,
            warnings,
            held_because,
            repeats,
            decision,
        } = report;
        Filed {
            file,
            stored_as: stored_as.as_deref(),
            sha256,
            received_at,
            processed_at,
            status: *status,
            rows: *rows,
            counts,
            changes: &[],
            errors,
            more_errors: *more_errors,
            warnings,
            held_because,
            repeats: repeats.as_deref(),
            decision: decision.as_ref(),
        }
    }
}

/// Writes [`Report::to_text`] to `out`, piece by piece.
pub fn write_text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut text = FmtIo {
        inner: out,
        error: None,
    };
    match report.write_text(&mut text) {
        Ok(()) => Ok(()),
        Err(_) => Err(text
            .error
            .unwrap_or_else(|| io::Error::other("formatting the report failed"))),
    }
}

/// An [`io::Write`] seen as a [`fmt::Write`], keeping the error a write met.
struct FmtIo<W> {
    /// Where the text goes.
    inner: W,
    /// The first error of a write.
    error: Option<io::Error>,
}

impl<W: Write> fmt::Write for FmtIo<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.inner.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

/// A [`Report`] whose keys serialize sorted (see the module's documentation).
#[derive(Serialize)]
struct Sorted<'a> {
    changes: Seq<'a, Change, SortedChange<'a>>,
    counts: SortedCounts,
    decision: Option<SortedDecision<'a>>,
    errors: Seq<'a, Finding, SortedFinding<'a>>,
    file: &'a str,
    held_because: &'a [String],
    more_errors: usize,
    processed_at: &'a str,
    received_at: &'a str,
    repeats: Option<&'a str>,
    rows: usize,
    sha256: &'a str,
    status: ReportStatus,
    stored_as: Option<&'a str>,
    warnings: Seq<'a, Finding, SortedFinding<'a>>,
}

impl<'a> Sorted<'a> {
    /// The report's fields, borrowed.
    fn of(report: &'a Report) -> Sorted<'a> {
        let Report {
            file,
            stored_as,
            sha256,
            received_at,
            processed_at,
            status,
            rows,
            counts,
            changes,
            errors,
            more_errors,
            warnings,
            held_because,
            repeats,
            decision,
        } = report;
        Sorted {
            changes: Seq::of(changes),
            counts: SortedCounts::of(counts),
            decision: decision.as_ref().map(SortedDecision::of),
            errors: Seq::of(errors),
            file,
            held_because,
            more_errors: *more_errors,
            processed_at,
            received_at,
            repeats: repeats.as_deref(),
            rows: *rows,
            sha256,
            status: *status,
            stored_as: stored_as.as_deref(),
            warnings: Seq::of(warnings),
        }
    }
}

/// A slice serialized as an array of each item's sorted form `S`.
struct Seq<'a, T, S> {
    items: &'a [T],
    sorted: std::marker::PhantomData<S>,
}

impl<'a, T, S> Seq<'a, T, S> {
    fn of(items: &'a [T]) -> Self {
        Seq {
            items,
            sorted: std::marker::PhantomData,
        }
    }
}

impl<'a, T, S: Serialize + From<&'a T>> Serialize for Seq<'a, T, S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let mut seq = serializer.serialize_seq(Some(self.items.len()))?;
        for item in self.items {
            seq.serialize_element(&S::from(item))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct SortedChange<'a> {
    action: Action,
    email: &'a str,
    employee_id: &'a str,
    previous_role: Option<&'a str>,
    previous_status: Option<Status>,
    role: &'a str,
    rule: Option<&'a str>,
    rule_id: Option<RuleId>,
}

impl<'a> From<&'a Change> for SortedChange<'a> {
    fn from(change: &'a Change) -> Self {
        let Change {
            employee_id,
            email,
            action,
            rule_id,
            rule,
            role,
            previous_role,
            previous_status,
        } = change;
        SortedChange {
            action: *action,
            email,
            employee_id,
            previous_role: previous_role.as_deref(),
            previous_status: *previous_status,
            role,
            rule: rule.as_deref(),
            rule_id: *rule_id,
        }
    }
}

#[derive(Serialize)]
struct SortedFinding<'a> {
    column: Option<&'a str>,
    line: Option<u64>,
    message: &'a str,
}

impl<'a> From<&'a Finding> for SortedFinding<'a> {
    fn from(finding: &'a Finding) -> Self {
        let Finding {
            line,
            column,
            message,
        } = finding;
        SortedFinding {
            column: column.as_deref(),
            line: *line,
            message,
        }
    }
}

#[derive(Serialize)]
struct SortedCounts {
    created: usize,
    deactivated: usize,
    reactivated: usize,
    reassigned: usize,
    role_changed: usize,
    skipped_manual: usize,
    unchanged: usize,
}

impl SortedCounts {
    fn of(counts: &Counts) -> Self {
        let Counts {
            created,
            reassigned,
            reactivated,
            role_changed,
            deactivated,
            skipped_manual,
            unchanged,
        } = *counts;
        SortedCounts {
            created,
            deactivated,
            reactivated,
            reassigned,
            role_changed,
            skipped_manual,
            unchanged,
        }
    }
}

#[derive(Serialize)]
struct SortedDecision<'a> {
    at: &'a str,
    by: &'a str,
    decision: &'a str,
}

impl<'a> SortedDecision<'a> {
    fn of(d: &'a Decision) -> Self {
        let Decision { decision, by, at } = d;
        SortedDecision { at, by, decision }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report that sets every field, with both a created and a changed account.
    fn full() -> Report {
        let mut r = Report::new(
            "roster \"2\".csv",
            "ab12",
            "2026-12-04T01:00:00Z",
            "2026-12-04T01:00:01Z",
        );
        r.stored_as = Some("20261204T010000Z_roster.csv".into());
        r.status = ReportStatus::Held;
        r.rows = 3;
        r.counts = Counts {
            created: 1,
            reassigned: 2,
            reactivated: 3,
            role_changed: 4,
            deactivated: 5,
            skipped_manual: 6,
            unchanged: 7,
        };
        r.changes = vec![
            Change {
                employee_id: "E1".into(),
                email: "a@x.example".into(),
                action: Action::Created,
                rule_id: Some(RuleId(3)),
                rule: Some("Finance \u{e9}".into()),
                role: "Billing Admin".into(),
                previous_role: None,
                previous_status: None,
            },
            Change {
                employee_id: "E2".into(),
                email: "b@x.example".into(),
                action: Action::Deactivated,
                rule_id: None,
                rule: None,
                role: "Read-only Admin".into(),
                previous_role: Some("Read-only Admin".into()),
                previous_status: Some(Status::Active),
            },
        ];
        r.errors = vec![Finding::at(4, "Email", "bad\tvalue"), Finding::line(5, "x")];
        r.more_errors = 9;
        r.warnings = vec![Finding::at(2, "Department", "w")];
        r.held_because = vec!["over max_revokes".into()];
        r.repeats = Some("earlier.csv".into());
        r.decision = Some(Decision {
            decision: "approved".into(),
            by: "root".into(),
            at: "2026-12-04T02:00:00Z".into(),
        });
        r
    }

    fn through_value(r: &Report) -> String {
        serde_json::to_string_pretty(&serde_json::to_value(r).unwrap()).unwrap() + "\n"
    }

    fn written(r: &Report, json: bool) -> String {
        let mut out = Vec::new();
        write_report(r, &mut out, json).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(r: &Report, sorted: bool) -> String {
        let mut out = Vec::new();
        write_json(r, &mut out, sorted).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_is_what_serde_writes_of_the_report() {
        let full = full();
        let empty = Report::new("sync", "", "t", "t");
        for r in [&full, &empty] {
            assert_eq!(json(r, false), serde_json::to_string_pretty(r).unwrap());
            assert_eq!(
                json(r, true),
                serde_json::to_string_pretty(&Sorted::of(r)).unwrap()
            );
        }
    }

    fn arbitrary_change() -> impl proptest::strategy::Strategy<Value = Change> {
        use proptest::prelude::*;
        // Quotes, backslashes, control characters, DEL, non-ASCII and a key's own text.
        let text = "[a-z\"\\\u{0}-\u{1f}\u{7f}é日 ]{0,12}|\n  \"changes\": \\[\\]";
        let status = prop_oneof![Just(Status::Active), Just(Status::Inactive)];
        (
            (text, text, proptest::sample::select(Action::ALL.to_vec())),
            proptest::option::of(any::<u64>()),
            (proptest::option::of(text), text, proptest::option::of(text)),
            proptest::option::of(status),
        )
            .prop_map(
                |(
                    (employee_id, email, action),
                    rule_id,
                    (rule, role, previous_role),
                    previous_status,
                )| Change {
                    employee_id: employee_id.into(),
                    email: email.into(),
                    action,
                    rule_id: rule_id.map(RuleId),
                    rule: rule.map(Into::into),
                    role: role.into(),
                    previous_role: previous_role.map(Into::into),
                    previous_status,
                },
            )
    }

    proptest::proptest! {
        /// Any changes, in either form, are written byte for byte as serde writes them.
        #[test]
        fn changes_are_written_as_serde_writes_them(
            changes in proptest::collection::vec(arbitrary_change(), 0..8),
            file in "[a-z\"\n]{0,6}",
        ) {
            let mut r = full();
            r.file = file;
            r.changes = changes;
            proptest::prop_assert_eq!(json(&r, false), serde_json::to_string_pretty(&r).unwrap());
            proptest::prop_assert_eq!(
                json(&r, true),
                serde_json::to_string_pretty(&Sorted::of(&r)).unwrap()
            );
        }

        /// Changes that share their names (as a plan's do, so that one shape serves many),
        /// each with its own ID and email.
        #[test]
        fn changes_of_one_kind_are_written_as_serde_writes_them(
            kinds in proptest::collection::vec(arbitrary_change(), 2..5),
            own in proptest::collection::vec(arbitrary_change(), 0..12),
        ) {
            // Every other kind shares the first one's names and differs in the rest.
            let kinds: Vec<Change> = kinds
                .iter()
                .enumerate()
                .map(|(j, k)| match j % 2 {
                    1 => Change {
                        rule: kinds[0].rule.clone(),
                        role: kinds[0].role.clone(),
                        previous_role: kinds[0].previous_role.clone(),
                        ..k.clone()
                    },
                    _ => k.clone(),
                })
                .collect();
            let mut r = full();
            r.changes = own
                .into_iter()
                .enumerate()
                .map(|(i, c)| Change {
                    employee_id: c.employee_id,
                    email: c.email,
                    ..kinds[i % kinds.len()].clone()
                })
                .collect();
            proptest::prop_assert_eq!(json(&r, false), serde_json::to_string_pretty(&r).unwrap());
            proptest::prop_assert_eq!(
                json(&r, true),
                serde_json::to_string_pretty(&Sorted::of(&r)).unwrap()
            );
        }
    }

    /// Past the kinds kept (a report read back from its file: every change's names are its
    /// own), each change is still written as serde writes it.
    #[test]
    fn changes_past_the_kinds_kept_are_written_as_serde_writes_them() {
        let mut r = full();
        let kinds = crate::core::report::MAX_KINDS + 50;
        r.changes = (0..kinds)
            .map(|i| Change {
                employee_id: format!("E{i}").into(),
                email: format!("e{i}@x.io").into(),
                action: Action::ALL[i % Action::ALL.len()],
                rule_id: Some(RuleId(i as u64 % 7)),
                rule: Some(format!("rule \"{}\"", i % 3).into()),
                role: "IT Admin".into(),
                previous_role: (i % 2 == 0).then(|| "HR Admin".into()),
                previous_status: (i % 5 == 0).then_some(Status::Inactive),
            })
            .collect();
        assert_eq!(json(&r, false), serde_json::to_string_pretty(&r).unwrap());
        assert_eq!(
            json(&r, true),
            serde_json::to_string_pretty(&Sorted::of(&r)).unwrap()
        );
        // The text of the report read back is the text of the report.
        let back: Report = serde_json::from_str(&json(&r, false)).unwrap();
        assert_eq!(back.to_text(), r.to_text());
    }

    #[test]
    fn json_is_what_the_value_printed() {
        let full = full();
        assert_eq!(written(&full, true), through_value(&full));
        let empty = Report::new("sync", "", "t", "t");
        assert_eq!(written(&empty, true), through_value(&empty));
    }

    #[test]
    fn text_is_the_text_report() {
        let full = full();
        assert_eq!(written(&full, false), full.to_text());
        assert!(written(&full, false).ends_with('\n'));
    }

    #[test]
    fn a_failed_write_is_an_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for json in [true, false] {
            let e = write_report(&full(), &mut Full, json).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        }
    }
}
