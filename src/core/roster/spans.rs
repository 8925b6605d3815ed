//! Where each record of a roster file starts, its fields not read: what a re-sync compares
//! with the last applied roster ([`crate::core::resync`]). The records are found by a csv
//! reader set up as the parser's, and each start is taken as the parser takes a row's, so
//! the two agree (see the tests).

use csv::{ByteRecord, ReaderBuilder, Terminator};

use super::halves::{BOM, MIN_BYTES, split_point};
use super::lines::{detect_delimiter, open_quote_field, skip_line_ends};
use crate::core::parallel::join;

/// Where each data record of the file `bytes` starts (offsets into `bytes`, a byte-order
/// mark counted), in file order; `None` when there is no header record or the reader
/// stops. A large file is read as two halves on two cores, split where the parser splits
/// it, when the first half's last record is closed at the split.
pub fn record_starts(bytes: &[u8]) -> Option<Vec<u32>> {
    let bom = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    let text = &bytes[bom..];
    let delimiter = detect_delimiter(text);
    let halves = (text.len() >= MIN_BYTES)
        .then(|| split_point(text))
        .flatten()
        .and_then(|at| in_halves(text, at, bom, delimiter));
    let mut starts = match halves {
        Some(starts) => starts,
        None => starts_in(text, bom, delimiter, true)?,
    };
    // The first record is the header.
    (!starts.is_empty()).then(|| {
        starts.remove(0);
        starts
    })
}

/// The record starts of `text[..at]` and `text[at..]`, each read on its own core, when the
/// first half's last record ends at `at` outside quotes (so that reading the whole text is
/// at the start of a record there).
fn in_halves(text: &[u8], at: usize, bom: usize, delimiter: u8) -> Option<Vec<u32>> {
    // A reader drops a byte-order mark at the start of what it reads: never split before one.
    if text[at..].starts_with(BOM) {
        return None;
    }
    let (head, tail) = text.split_at(at);
    let (first, second) = join(
        || starts_in(head, bom, delimiter, true),
        || starts_in(tail, bom + at, delimiter, false),
    );
    let (mut first, second) = (first?, second?);
    let last = *first.last()? as usize - bom;
    if open_quote_field(&head[last..], delimiter).is_some() {
        return None;
    }
    first.extend(second);
    Some(first)
}

/// Where each record of `text` starts, plus `base`; `None` when the reader stops on an
/// error (which bytes in memory never cause). `whole`: `text` is the file's whole text, whose
/// first record is read as the parser reads the header.
fn starts_in(text: &[u8], base: usize, delimiter: u8, whole: bool) -> Option<Vec<u32>> {
    let mut reader = ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .terminator(Terminator::CRLF)
        .from_reader(text);
    let mut record = ByteRecord::new();
    let mut starts = Vec::with_capacity(if whole { 1024 } else { text.len() / 64 });
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                let resumed = record.position().map_or(0, |p| p.byte() as usize);
                // Offsets past 4 GiB (far over `roster.max_bytes`) are never compared: the
                // caller refuses such a file first.
                starts.push((base + skip_line_ends(text, resumed)) as u32);
            }
            Ok(false) => return Some(starts),
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ok;
    use super::*;

    /// The starts the parser keeps for `text`'s rows, as offsets into the file.
    fn parsed(text: &str) -> Vec<u32> {
        let roster = ok(text);
        let offset = roster.text_offset.unwrap() as u32;
        roster.starts.iter().map(|s| s + offset).collect()
    }

    #[test]
    fn records_start_where_the_parsers_rows_do() {
        for text in [
            "employee_id,email\nE1,a@x.example\nE2,b@x.example\n",
            "\u{feff}employee_id;email;note\r\nE1;a@x.example;\"a\r\nb\"\r\n\r\nE2;b@x.example;c",
            "\n\nemployee_id,email,note\nE1,a@x.example,\"x,\"\"y\"\"\nz\"\nE2,b@x.example,q\"r\n",
        ] {
            assert_eq!(
                record_starts(text.as_bytes()).unwrap(),
                parsed(text),
                "{text:?}"
            );
        }
        assert_eq!(record_starts(b""), None);
    }

    #[test]
    fn a_large_file_read_in_halves_starts_its_records_as_in_one_pass() {
        let mut text = String::from("employee_id,email,note\r\n");
        let mut i = 0;
        while text.len() < 3 * MIN_BYTES {
            let note = match i % 5 {
                0 => "\"two\nlines\"",
                1 => "\"a, \"\"quoted\"\" b\"",
                _ => "plain",
            };
            text.push_str(&format!("E{i},e{i}@x.example,{note}\r\n"));
            i += 1;
        }
        let bytes = text.as_bytes();
        let at = split_point(bytes).unwrap();
        assert!(in_halves(bytes, at, 0, b',').is_some(), "read in halves");
        assert_eq!(record_starts(bytes).unwrap(), parsed(&text));
        // A split inside a quoted field is refused: the half before it ends in quotes.
        let inside = text.find("two\nlines").unwrap() + 4;
        assert_eq!(in_halves(bytes, inside, 0, b','), None);
    }
}
