//! A large roster read as two halves on two cores.
//!
//! The text is split at a line end near the middle and each half is read by its own
//! [`Parser`]; the second half's employees are then appended to the first's. The result is
//! taken only when it is the one reading the file in one pass gives, which holds when:
//!
//! - the first half's last record ends at the split, outside quotes. A CSV reader's state
//!   at a byte depends only on the bytes before it, so the one-pass reader is then at the
//!   start of a record at the split, where the second half's reader starts. The split is
//!   chosen where the quotes before it are even in number, which is right for every file
//!   whose quotes open fields; a stray quote can fool that count, and then the first half
//!   ends inside quotes, which its reader reports as an error;
//! - neither half found an error, and no two rows of the whole share an employee ID or the
//!   email of an employee who has not left. The halves find repeats only once both are read
//!   ([`Repeats::Later`]): the findings of a rejected file name the line where a repeated
//!   key first was ("already appears on line N"), so a rejected file is read again in one
//!   pass, which lists them exactly (a file with errors costs one and a half reads; a
//!   valid file one).
//!
//! The second half never starts with a byte-order mark, which its reader would drop.
//!
//! Otherwise the caller reads the file in one pass.

use memchr::memchr_iter;

use super::lines::detect_delimiter;
use super::rows::Repeats;
use super::{Checked, Parser, Rejection, RosterOptions, first_header, line_feeds, most_rows};
use crate::core::parallel::join;

/// The UTF-8 byte-order mark.
pub(super) const BOM: &[u8] = "\u{feff}".as_bytes();

/// Smaller texts are read in one pass: a second thread would not pay for itself.
pub(super) const MIN_BYTES: usize = 1 << 20;

/// The roster or its rejection read as two halves, or `None` when the text must be read
/// in one pass (see the module's note).
pub(super) fn parse(text: &[u8], opts: &RosterOptions) -> Option<Result<Checked, Rejection>> {
    if text.len() < MIN_BYTES {
        return None;
    }
    parse_split(text, split_point(text)?, opts)
}

/// Reads `text[..at]` and `text[at..]` on two cores.
fn parse_split(text: &[u8], at: usize, opts: &RosterOptions) -> Option<Result<Checked, Rejection>> {
    // Only just after a LF: after a CR, the LF that may follow belongs to the first half.
    if at >= text.len() || text.get(at.wrapping_sub(1)) != Some(&b'\n') {
        return None;
    }
    // Never before a byte-order mark: a csv reader drops one at the start of what it reads,
    // so the second half's reader would lose a character the one-pass reader keeps (and a
    // quote after it would open a field there and not in one pass).
    if text[at..].starts_with(BOM) {
        return None;
    }
    let delimiter = detect_delimiter(text);
    let header = first_header(text, delimiter, opts)?;
    let (head, tail) = text.split_at(at);
    let ((head_lf, head_crs), tail_lf) =
        join(|| (line_feeds(head), lone_crs(head)), || line_feeds(tail));
    let line = 1 + (head_lf + head_crs) as u64;
    let tail_rows = most_rows(tail_lf, opts);
    let ((mut first, first_whole), (second, second_whole)) = join(
        || {
            // Room for both halves' rows: appending the second's then copies only those,
            // into room not yet touched. Room for the first half's alone moved its
            // employees once more as they grew (a million-row `sync`: 23 MB more peak RSS,
            // ~0.04 s more CPU, in alternated runs of session 24; session 10's runs had
            // measured the opposite, on a noisier machine; BENCHMARKS.md).
            read_all(Parser::with_room(
                head,
                opts,
                delimiter,
                most_rows(head_lf + tail_lf, opts),
                Repeats::Later,
            ))
        },
        || {
            read_all(Parser::part(
                tail, at, opts, delimiter, line, header, tail_rows,
            ))
        },
    );
    let joined = first_whole
        && second_whole
        && first.errors.is_empty()
        && second.errors.is_empty()
        && first.header.is_some()
        && first.previous_end + 1 == line
        && first.rows + second.rows <= opts.max_rows;
    if !joined {
        return None;
    }
    first.append(second);
    if !first.employees.unrepeated() {
        return None;
    }
    Some(first.finish())
}

/// The parser after reading its whole text, and whether it did (it stops at too many rows).
fn read_all(mut parser: Parser<'_>) -> (Parser<'_>, bool) {
    let whole = parser.read().is_ok();
    (parser, whole)
}

/// Where the second half starts: just after a line end near the middle, with an even
/// number of quotes before it and content on the line it ends (so that the line belongs to
/// the first half's last record, and a blank line is never the split).
fn split_point(text: &[u8]) -> Option<usize> {
    let mid = text.len() / 2;
    let mut quoted = memchr_iter(b'"', &text[..mid]).count() % 2 == 1;
    for i in mid.max(1)..text.len() {
        match text[i] {
            b'"' => quoted = !quoted,
            b'\n' if !quoted && has_content_before(text, i) => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Whether the line that ends with the LF at `lf` (a CR just before it being part of the
/// line end) is not blank.
fn has_content_before(text: &[u8], lf: usize) -> bool {
    let end = if lf > 0 && text[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    end > 0 && !matches!(text[end - 1], b'\n' | b'\r')
}

/// The CRs in `text` not followed by a LF: with its LFs, the line ends in `text` as
/// [`super::lines::Lines`] counts them (LF, CRLF, or a CR alone).
fn lone_crs(text: &[u8]) -> usize {
    memchr_iter(b'\r', text)
        .filter(|&i| text.get(i + 1) != Some(&b'\n'))
        .count()
}

impl<'a> Parser<'a> {
    /// Takes over the part that follows this one (see [`super::rows::Rows::append`]).
    fn append(&mut self, later: Parser<'a>) {
        self.employees.append(later.employees);
        self.starts.extend(later.starts);
        for warning in later.warnings.list {
            self.warnings.push(warning);
        }
        self.warnings.more += later.warnings.more;
        self.rows += later.rows;
        self.previous_end = later.previous_end;
        self.text = later.text;
        self.lines = later.lines;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ids, lines};
    use super::*;
    use crate::core::model::Roster;
    use proptest::prelude::*;

    /// [`parse_split`], the roster finished.
    fn split(text: &[u8], at: usize, opts: &RosterOptions) -> Option<Result<Roster, Rejection>> {
        finished(parse_split(text, at, opts))
    }

    fn finished(read: Option<Result<Checked, Rejection>>) -> Option<Result<Roster, Rejection>> {
        read.map(|r| r.map(Checked::finish))
    }

    /// The one-pass reading of `text`.
    fn one_pass(text: &[u8], opts: &RosterOptions) -> Result<Roster, Rejection> {
        Parser::new(text, opts).run().map(Checked::finish)
    }

    /// Asserts that two readings agree on everything a roster or rejection holds.
    fn assert_same(halves: &Result<Roster, Rejection>, one: &Result<Roster, Rejection>) {
        match (halves, one) {
            (Ok(h), Ok(o)) => {
                assert_eq!(h.rows, o.rows);
                assert_eq!(h.fields, o.fields);
                assert_eq!(h.present, o.present);
                assert_eq!(h.employees, o.employees);
                assert_eq!(h.starts, o.starts);
                assert_eq!(h.managers, o.managers);
                assert_eq!(h.warnings, o.warnings);
                assert_eq!(h.email_column, o.email_column);
                assert_eq!(h.symbols, o.symbols);
            }
            (Err(h), Err(o)) => assert_eq!(h, o),
            _ => panic!("one reading accepted the file and the other did not"),
        }
    }

    /// A roster with `n` rows, some with quoted values over two lines, CRLF line ends when
    /// `crlf`, and blank lines here and there.
    fn roster(n: usize, crlf: bool) -> String {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("employee_id,email,manager_id,department,status{end}");
        for i in 0..n {
            let department = match i % 7 {
                0 => "\"Sales, \"\"EMEA\"\"\"".to_owned(),
                3 => format!("\"R&D{end}lab {}\"", i % 5),
                _ => format!("Dept {}", i % 11),
            };
            let status = if i % 13 == 0 { "Terminated" } else { "Active" };
            let manager = if i > 0 {
                (i / 6).to_string()
            } else {
                String::new()
            };
            text.push_str(&format!(
                "{i},e{i}@example.com,{manager},{department},{status}{end}"
            ));
            if i % 97 == 50 {
                text.push_str(end);
            }
        }
        text
    }

    fn opts() -> RosterOptions {
        super::super::tests::needing(&["department"])
    }

    #[test]
    fn a_large_roster_read_in_halves_is_the_roster_read_in_one_pass() {
        for crlf in [false, true] {
            let text = roster(40_000, crlf);
            assert!(text.len() >= MIN_BYTES, "{} bytes", text.len());
            let halves = finished(parse(text.as_bytes(), &opts())).expect("read in halves");
            let roster = halves.as_ref().expect("accepted");
            assert_eq!(roster.rows, 40_000);
            assert_eq!(ids(roster)[39_999], "39999");
            assert!(lines(roster).windows(2).all(|w| w[0] < w[1]));
            assert_same(&halves, &one_pass(text.as_bytes(), &opts()));
        }
    }

    #[test]
    fn every_split_point_gives_the_one_pass_reading_or_defers_to_it() {
        let text = roster(300, true);
        let text = text.as_bytes();
        let one = one_pass(text, &opts());
        let mut joined = 0;
        for at in 1..text.len() {
            if let Some(halves) = split(text, at, &opts()) {
                joined += 1;
                assert_same(&halves, &one);
            }
        }
        // Every record end outside quotes past the header can be joined there.
        assert!(joined > 250, "{joined} split points joined");
    }

    #[test]
    fn a_split_inside_a_quoted_value_is_not_taken() {
        // The first half would end inside the quoted department of row 3.
        let text = roster(20, false);
        let at = text.find("R&D\n").unwrap() + 4;
        assert!(split(text.as_bytes(), at, &opts()).is_none());
    }

    #[test]
    fn rows_repeated_anywhere_or_errors_are_left_to_the_one_pass_reading() {
        let base = roster(200, false);
        let duplicate_id = format!("{base}5,x5@example.com,,Dept 1,Active\n");
        let duplicate_email = format!("{base}900,e7@example.com,,Dept 1,Active\n");
        let bad_row = format!("{base}901,e901@example.com\n");
        // Both rows of a repeat in the same half, the first or the second.
        let (header, rows) = base.split_at(base.find('\n').unwrap() + 1);
        let in_first = format!("{header}7,x7@example.com,,Dept 1,Active\n{rows}");
        let in_second = format!("{base}903,E190@Example.com,,Dept 1,Active\n");
        for text in [duplicate_id, duplicate_email, bad_row, in_first, in_second] {
            let at = split_point(text.as_bytes()).unwrap();
            assert!(split(text.as_bytes(), at, &opts()).is_none(), "{at}");
            let one = one_pass(text.as_bytes(), &opts());
            assert!(one.is_err());
        }
        // A leaver's email may repeat another row's: that file is joined.
        let leaver = format!("{base}902,e7@example.com,,Dept 1,Terminated\n");
        let at = split_point(leaver.as_bytes()).unwrap();
        let halves = split(leaver.as_bytes(), at, &opts()).expect("joined");
        assert_same(&halves, &one_pass(leaver.as_bytes(), &opts()));
    }

    #[test]
    fn a_byte_order_mark_at_the_split_is_left_to_the_one_pass_reading() {
        // One pass keeps a mid-file U+FEFF (the ID is "\u{feff}2"; before a quote it keeps
        // the quote from opening the field, and the row has too many fields); a reader
        // starting at the split would drop it. Found by review: both were taken before.
        for row in ["\u{feff}2,e2@x.io,D\n", "\u{feff}\"2,x\",e2@x.io,D\n"] {
            let text = format!("employee_id,email,department\n1,e1@x.io,D\n{row}");
            let at = text.find('\u{feff}').unwrap();
            assert!(split(text.as_bytes(), at, &opts()).is_none());
            // The same in a large file, and `parse` gives the one-pass reading of it.
            let mut large = roster(40_000, false);
            let mid = split_point(large.as_bytes()).unwrap();
            large.insert_str(mid, row);
            assert!(split(large.as_bytes(), mid, &opts()).is_none());
            let read = crate::core::roster::parse(large.as_bytes(), &opts());
            assert_same(&read, &one_pass(large.as_bytes(), &opts()));
        }
    }

    #[test]
    fn distinct_values_are_not_taken_for_shared_ones() {
        // Two emails whose hashes were equal under the word-at-a-time FxHash used before
        // (a difference in one word's top byte cancelled by the next word's low byte): the
        // halves were always read again in one pass when they fell on both sides. They no
        // longer collide; keys whose hashes do are tested in `keys`.
        let text = "employee_id,email,department\n1,kenji.nguyen.7103@acme.example,D\n\
                    2,kenji.nguyen.7186@acme.example,D\n";
        let at = split_point(text.as_bytes()).unwrap();
        assert_eq!(&text[at..at + 2], "2,");
        let halves = split(text.as_bytes(), at, &opts()).expect("joined");
        assert_same(&halves, &one_pass(text.as_bytes(), &opts()));
    }

    /// A file large enough for the halves and for hashing its keys on two cores: a repeated
    /// ID (also on a leaver's row) or active email (in another case, with spaces around it)
    /// in either half or across them is rejected as the one-pass reading rejects it; a
    /// leaver's email may repeat anyone's. Found in review, where no test covered repeats at
    /// this size.
    #[test]
    fn a_large_file_repeating_a_key_anywhere_is_read_as_in_one_pass() {
        let base = roster(40_000, false);
        let (header, rows) = base.split_at(base.find('\n').unwrap() + 1);
        // Row i has ID i and email e{i}@example.com; every 13th row is a leaver. Each case:
        // a row before the others, a row after them, and whether the file is valid.
        let cases = [
            ("7,x@example.com,,Dept 1,Active\n", "", false),
            ("7000,  E7001@EXAMPLE.com ,,Dept 1,Active\n", "", false),
            ("", "99999,  E39001@EXAMPLE.com ,,Dept 1,Active\n", false),
            ("", "99999,e20@example.com,,Dept 1,Active\n", false),
            ("", "39998,z@example.com,,Dept 1,Terminated\n", false),
            ("", "99999,e39001@example.com,,Dept 1,Terminated\n", true),
            ("99999,E39001@example.com,,Dept 1,Terminated\n", "", true),
            // Row 39000 is a leaver's: an active employee may take that email.
            ("", "99999,e39000@example.com,,Dept 1,Active\n", true),
        ]
        .map(|(first, last, valid)| (format!("{header}{first}{rows}{last}"), valid));
        for (i, (text, valid)) in cases.into_iter().enumerate() {
            let read = crate::core::roster::parse(text.as_bytes(), &opts());
            assert_eq!(read.is_ok(), valid, "case {i}");
            assert_same(&read, &one_pass(text.as_bytes(), &opts()));
            let at = split_point(text.as_bytes()).unwrap();
            assert_eq!(
                split(text.as_bytes(), at, &opts()).is_some(),
                valid,
                "case {i}"
            );
        }
    }

    #[test]
    fn line_breaks_count_lf_crlf_and_lone_cr() {
        let line_breaks = |text: &[u8]| line_feeds(text) + lone_crs(text);
        assert_eq!(line_breaks(b""), 0);
        assert_eq!(line_breaks(b"a\nb\r\nc\rd\r"), 4);
        assert_eq!(line_breaks(b"\r\n\r\n\n"), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any text split anywhere: the halves agree with one pass, or defer to it.
        #[test]
        fn halves_agree_with_one_pass_on_any_text(
            rows in proptest::collection::vec(
                "[0-9]{1,3}|\"[0-9,\r\n]{0,4}\"|[a-z\"]{0,3}@x\\.io|\r?\n", 1..120),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut text = String::from("employee_id,email,department\n");
            for (i, cell) in rows.iter().enumerate() {
                text.push_str(cell);
                text.push(if i % 3 == 2 { '\n' } else { ',' });
            }
            let at = cut.index(text.len() - 1) + 1;
            if let Some(halves) = split(text.as_bytes(), at, &opts()) {
                assert_same(&halves, &one_pass(text.as_bytes(), &opts()));
            }
        }

        /// A valid roster whose departments may be quoted with commas and line breaks, cut
        /// after any line feed: at a record's start the halves read it, as one pass does;
        /// inside a quoted field they agree with one pass or defer to it. (Random text, above,
        /// is almost never a valid roster, so that property rarely reaches the halves'
        /// reading.)
        #[test]
        fn halves_read_a_valid_roster_cut_at_any_line_feed(
            departments in proptest::collection::vec(
                "[a-z]{0,4}|\"[a-z, \r\n]{0,6}\"", 2..80),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut text = String::from("employee_id,email,department\n");
            let mut starts = Vec::new();
            for (i, department) in departments.iter().enumerate() {
                starts.push(text.len());
                text.push_str(&format!("{i},e{i}@x.io,{department}\n"));
            }
            let feeds: Vec<usize> = text
                .match_indices('\n')
                .map(|(i, _)| i + 1)
                .filter(|&i| i < text.len())
                .collect();
            let at = feeds[cut.index(feeds.len())];
            let one = one_pass(text.as_bytes(), &opts());
            prop_assert!(one.is_ok());
            match split(text.as_bytes(), at, &opts()) {
                Some(halves) => assert_same(&halves, &one),
                None => prop_assert!(
                    !starts.contains(&at) || at == starts[0],
                    "a record's start, {at}, deferred to one pass"
                ),
            }
        }
    }
}
