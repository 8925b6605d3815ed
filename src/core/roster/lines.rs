//! Physical lines of the decoded text, the delimiter of the file, and quotes left open.
//!
//! Line numbers are counted here rather than taken from the csv crate, because csv's
//! `Position::line` lags by one after a CRLF record and says nothing about the empty lines
//! it skips; both must be reported by physical line.

/// Candidate delimiters, in the order that breaks ties.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Physical line numbers of byte offsets, asked in increasing order: linear overall.
///
/// A line ends at LF, CRLF, or a CR alone (csv ends records there too).
pub(super) struct Lines<'a> {
    text: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    pub(super) fn new(text: &'a [u8]) -> Self {
        Self::starting_at(text, 1)
    }

    /// Lines of a part of a file whose first byte is on `line`.
    pub(super) fn starting_at(text: &'a [u8], line: u64) -> Self {
        Self {
            text,
            offset: 0,
            line,
        }
    }

    /// The line of byte `offset` (which must not be before the previous call's).
    pub(super) fn at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.text.len());
        debug_assert!(offset >= self.offset, "line numbers asked out of order");
        if offset > self.offset {
            self.line += line_breaks(self.text, self.offset, offset);
            self.offset = offset;
        }
        self.line
    }

    /// The last line that has content or a line end (a final line end opens no new line).
    pub(super) fn last(&mut self) -> u64 {
        let total = self.at(self.text.len());
        match self.text.last() {
            Some(b'\n' | b'\r') => total - 1,
            Some(_) => total,
            None => 0,
        }
    }
}

/// The line breaks that end in `text[from..to]`: each LF, and each CR not followed by an LF
/// (a CRLF counts at its LF). memchr finds them: a byte-by-byte loop was ~8 % of a
/// million-row parse.
fn line_breaks(text: &[u8], from: usize, to: usize) -> u64 {
    memchr::memchr2_iter(b'\n', b'\r', &text[from..to])
        .filter(|&i| text[from + i] == b'\n' || text.get(from + i + 1) != Some(&b'\n'))
        .count() as u64
}

/// The first byte at or after `offset` that is not part of a line end.
pub(super) fn skip_line_ends(text: &[u8], offset: usize) -> usize {
    text[offset.min(text.len())..]
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .map_or(text.len(), |p| offset + p)
}

/// What is wrong with a record's quoting, read the way csv does: a quote opens a field only
/// at the field's start, and `""` inside quotes is a quote.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum QuoteFault {
    /// The quote opening this field (0-based) is never closed: csv reads to the end of
    /// the file.
    Unclosed(usize),
    /// A quote ends this field's quoted text, and text follows it where the field should
    /// end (at `.1`, the offset of that quote in the record). csv keeps reading the field,
    /// so a quote left open by mistake was closed by any later one (`27" monitor`, rows
    /// further down) and every line in between read as one cell.
    TextAfterClose(usize, usize),
    /// This field starts with spaces and then a quote. csv reads it unquoted, quotes and
    /// all (` "E1"` is the ID `"E1"`, not `E1`): a different employee or email, whose
    /// account would be created and the real one's deactivated.
    SpacedOpen(usize),
}

/// The first fault of `record`'s quoting, if any. A quote left open and closed rows further
/// down where a cell ends (`Dell 27"`) is valid CSV, a value over several lines, and is not
/// one: it cannot be told from an address over several lines (the safety limits bound what
/// it can deactivate).
pub(super) fn quote_fault(record: &[u8], delimiter: u8) -> Option<QuoteFault> {
    let mut field = 0;
    let mut at_field_start = true;
    // Only spaces so far in this field (kept as it is read: looking back at every quote
    // had made a cell of many quotes cost its length squared).
    let mut blank = true;
    let mut quoted = false;
    let mut i = 0;
    while i < record.len() {
        let b = record[i];
        if quoted {
            if b == b'"' {
                if record.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                    // Spaces after the quote are the value's, trimmed as any are.
                    let mut j = i + 1;
                    while j < record.len() && record[j] != delimiter {
                        match space_at(record, j) {
                            Some(len) => j += len,
                            None => break,
                        }
                    }
                    match record.get(j).copied() {
                        None | Some(b'\r' | b'\n') => {}
                        Some(next) if next == delimiter => {}
                        Some(_) => return Some(QuoteFault::TextAfterClose(field, i)),
                    }
                }
            }
        } else if b == delimiter {
            field += 1;
            at_field_start = true;
            blank = true;
            i += 1;
            continue;
        } else if b == b'\n' || b == b'\r' {
            return None;
        } else if b == b'"' && at_field_start {
            quoted = true;
        } else if b == b'"' && blank {
            return Some(QuoteFault::SpacedOpen(field));
        } else if blank {
            // A character's first byte decides; the bytes after it leave `blank` as it is.
            blank = match space_at(record, i) {
                Some(len) => {
                    i += len;
                    at_field_start = false;
                    continue;
                }
                None => false,
            };
        }
        at_field_start = false;
        i += 1;
    }
    quoted.then_some(QuoteFault::Unclosed(field))
}

/// The length of the character at `i` when it is one a cell's trimming takes away (any
/// Unicode whitespace but a line end: a no-break space, U+3000...).
fn space_at(record: &[u8], i: usize) -> Option<usize> {
    let len = match record[i] {
        b' ' | b'\t' | 0x0b | 0x0c => return Some(1),
        0xc0.. => record[i].leading_ones() as usize,
        _ => return None,
    };
    let c = std::str::from_utf8(record.get(i..i + len)?)
        .ok()?
        .chars()
        .next()?;
    c.is_whitespace().then_some(len)
}

/// The delimiter occurring most often outside quotes in the header line (ties in
/// `DELIMITERS` order; none at all means `,`).
pub(super) fn detect_delimiter(text: &[u8]) -> u8 {
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

/// The delimiter as a finding names it.
pub(super) fn delimiter_name(d: u8) -> &'static str {
    match d {
        b'\t' => "tab",
        b';' => "\";\"",
        b'|' => "\"|\"",
        _ => "\",\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::roster::tests::{ids, lines, needing, ok, ok_with, places, rejected};

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
            assert_eq!(r.employees[0].email(), "a@example.com");
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
        let notes: Vec<&str> = (0..r.employees.len()).map(|i| r.value(i, 0)).collect();
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
                    (Some(11), Some("note"))
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

    proptest::proptest! {
        /// Lines asked at increasing offsets are the lines a byte-by-byte count gives.
        #[test]
        fn line_numbers_are_those_counted_byte_by_byte(
            text in proptest::collection::vec(
                proptest::sample::select(b"a,\"\r\n".to_vec()), 0..200),
            mut asked in proptest::collection::vec(0usize..220, 0..12),
        ) {
            asked.sort_unstable();
            let mut lines = Lines::new(&text);
            for offset in asked {
                let end = offset.min(text.len());
                let counted = 1 + (0..end)
                    .filter(|&i| text[i] == b'\n' || (text[i] == b'\r' && text.get(i + 1) != Some(&b'\n')))
                    .count() as u64;
                proptest::prop_assert_eq!(lines.at(offset), counted, "offset {}", offset);
            }
        }
    }

    #[test]
    fn lone_cr_line_ends_count_as_lines() {
        let r = rejected("employee_id,email\r1,a@example.com\r1,b@example.com\r");
        assert_eq!(places(&r.errors), [(Some(3), Some("employee_id"))]);
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
        assert_eq!(quote_fault(b"a,\"b\"\"c\"\"\",d", b','), None);
        assert_eq!(
            quote_fault(b"a;b;\"c;d", b';'),
            Some(QuoteFault::Unclosed(2))
        );
        assert_eq!(quote_fault(b"\"a\"\"", b','), Some(QuoteFault::Unclosed(0)));
        assert_eq!(
            quote_fault(b"a,\"x\"y,z", b','),
            Some(QuoteFault::TextAfterClose(1, 4))
        );
        assert_eq!(quote_fault(b"a,\"x\"\r\nb", b','), None);
        assert_eq!(
            quote_fault(b"a;\"x\"y;b", b';'),
            Some(QuoteFault::TextAfterClose(1, 4))
        );
        assert_eq!(
            quote_fault(b"a,\"x\";b", b';'),
            None,
            "a quote inside a field is text"
        );
    }

    /// ` "E1"` read as csv reads it is the ID `"E1"`, quotes and all: the real E1's account
    /// was deactivated and a new one created, with a warning at most.
    #[test]
    fn a_quote_after_leading_spaces_is_an_error_at_its_field() {
        let r = rejected("employee_id,email,manager_id\n1,a@example.com,\n \"1\",b@example.com,\n");
        assert_eq!(places(&r.errors), [(Some(3), Some("employee_id"))]);
        assert!(
            r.errors[0]
                .message
                .contains("spaces before its opening quote"),
            "{}",
            r.errors[0].message
        );
        let r = rejected("employee_id,email\n1, \"a@example.com\"\n2,b@example.com\n");
        assert_eq!(places(&r.errors), [(Some(2), Some("email"))]);
        // Tabs and any space a cell's trimming takes away too, with any delimiter; a
        // quote after text, or after a tab delimiter, is not one.
        assert_eq!(
            quote_fault(b"a;\t \"x\";b", b';'),
            Some(QuoteFault::SpacedOpen(1))
        );
        for space in ["\u{a0}", "\u{3000}", "\u{b}", "\u{85}"] {
            let record = format!("a,{space}\"x\",b");
            assert_eq!(
                quote_fault(record.as_bytes(), b','),
                Some(QuoteFault::SpacedOpen(1)),
                "{space:?}"
            );
            // After a closing quote such a space is the value's, trimmed.
            let record = format!("a,\"x\"{space},b");
            assert_eq!(quote_fault(record.as_bytes(), b','), None, "{space:?}");
        }
        // Text that is not a space, then quotes: text, however many.
        let record = format!("a,\u{e9}{},b", "\"".repeat(1000));
        assert_eq!(quote_fault(record.as_bytes(), b','), None);
        assert_eq!(quote_fault(b"a, 27\" screen,b", b','), None);
        assert_eq!(quote_fault(b"a\t\"x\"\tb", b'\t'), None);
        assert_eq!(quote_fault(b"\"x\" ,y", b','), None);
        ok("employee_id,email,note\n1,a@example.com, 27\" screen\n");
    }

    /// A quote left open is closed by a later quote that is followed by text (an inch mark
    /// rows further down): the lines in between had been read as one cell, the rows in
    /// them gone without a word, and their accounts deactivated. Rejected at the row where
    /// the quote opens, as an unclosed quote is; within one line too (`"x"y` had been `xy`).
    #[test]
    fn a_quote_closed_by_one_followed_by_text_is_rejected() {
        let r = rejected(
            "employee_id,email,department,note\n1,a@example.com,IT,\"on leave until Friday\n\
             2,b@example.com,IT,\n3,c@example.com,IT,\n4,d@example.com,IT,needs a 27\" monitor\n\
             5,e@example.com,IT,\n",
        );
        assert_eq!(places(&r.errors), [(Some(2), Some("note"))]);
        assert!(
            r.errors[0]
                .message
                .contains("closed on line 5 by a quote followed by text"),
            "{}",
            r.errors[0].message
        );
        assert!(
            r.errors[0].message.contains("lines 2–5"),
            "{}",
            r.errors[0].message
        );
        let r = rejected("employee_id,email\n1,\"a@example.com\"x\n");
        assert_eq!(places(&r.errors), [(Some(2), Some("email"))]);
        // Spaces after a closing quote are the value's (trimmed), not text after it.
        let r = ok("employee_id,email,note\n1,\"a@example.com\" ,\"x\" \r\n2,b@example.com,y\n");
        assert_eq!(ids(&r), ["1", "2"]);
        // A value over several lines, commas and all, is a value.
        let r = ok("employee_id,email,note\n1,a@example.com,\"Smith, John\nroom 4\"\n");
        assert_eq!(ids(&r), ["1"]);
        // Quoted values closed where they end are read as ever, doubled quotes included.
        let r = ok(
            "employee_id,email,note\n1,a@example.com,\"5\"\" screen\"\r\n\"2\",b@example.com,\"x, y\"\n",
        );
        assert_eq!(ids(&r), ["1", "2"]);
    }
}
