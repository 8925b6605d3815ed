//! Where a roster file's records start, their fields not read: what a re-sync needs to
//! follow a file record by record ([`crate::core::resync`]). A record is read by the
//! parser's csv reader ([`super::csv_reader`]), and the next one taken to start where the
//! parser takes a row to start, so the two agree (see the tests).

use csv::ByteRecord;
use std::io::{Cursor, SeekFrom};

use super::halves::BOM;
use super::lines::{detect_delimiter, skip_line_ends};

/// The delimiter of the file `bytes` (as the parser finds it in its header line).
pub fn delimiter(bytes: &[u8]) -> u8 {
    detect_delimiter(bytes.strip_prefix(BOM).unwrap_or(bytes))
}

/// A file's records, read one at a time wherever one starts, by one reader: building a
/// reader costs more than reading a record (a re-sync's ~2,000 new records, each read by a
/// reader of its own, took ~14 µs apiece; BENCHMARKS.md, session 27).
pub struct Records<'a> {
    bytes: &'a [u8],
    reader: csv::Reader<Cursor<&'a [u8]>>,
    record: ByteRecord,
}

impl<'a> Records<'a> {
    /// The records of the file `bytes`, whose delimiter is `delimiter`.
    pub fn of(bytes: &'a [u8], delimiter: u8) -> Records<'a> {
        let mut reader = super::csv_reader(Cursor::new(bytes), delimiter);
        // A reader reads its first record (as a header) before its first seek; read here,
        // what it finds there is never used.
        let _ = reader.byte_headers();
        Records {
            bytes,
            reader,
            record: ByteRecord::new(),
        }
    }

    /// Where the record that starts at `at` ends: where the next record starts (its line
    /// end and any blank lines after it skipped), or the end of the file; `None` when there
    /// is no record there, or one a reader started there would read otherwise than the
    /// file's reader (one starting with a byte-order mark, which a reader drops).
    pub fn next_record(&mut self, at: usize) -> Option<usize> {
        self.bytes
            .get(at..)
            .filter(|r| !r.is_empty() && !r.starts_with(BOM))?;
        let mut position = csv::Position::new();
        position.set_byte(at as u64);
        self.reader
            .seek_raw(SeekFrom::Start(at as u64), position)
            .ok()?;
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => Some(skip_line_ends(
                self.bytes,
                self.reader.position().byte() as usize,
            )),
            _ => None,
        }
    }

    /// Field `column` of the record that starts at `at` (its bytes as a reader gives them:
    /// unquoted, not trimmed); `None` where [`Self::next_record`] gives `None`, or the
    /// record is shorter.
    pub fn field_of_record(&mut self, at: usize, column: usize) -> Option<Vec<u8>> {
        self.next_record(at)?;
        self.record.get(column).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ok;
    use super::*;

    /// Where each record of `bytes` starts, following them from the first after the header.
    fn followed(bytes: &[u8], first: usize) -> Vec<u32> {
        let mut records = Records::of(bytes, delimiter(bytes));
        let mut starts = vec![first as u32];
        let mut at = first;
        while let Some(next) = records.next_record(at).filter(|&n| n < bytes.len()) {
            starts.push(next as u32);
            at = next;
        }
        starts
    }

    #[test]
    fn records_followed_one_by_one_start_where_the_parsers_rows_do() {
        for text in [
            "employee_id,email\nE1,a@x.example\nE2,b@x.example\n",
            "\u{feff}employee_id;email;note\r\nE1;a@x.example;\"a\r\nb\"\r\n\r\nE2;b@x.example;c",
            "\n\nemployee_id,email,note\nE1,a@x.example,\"x,\"\"y\"\"\nz\"\nE2,b@x.example,q\"r\n\n\n",
            "employee_id|email\rE1|a@x.example\rE2|b@x.example",
        ] {
            let roster = ok(text);
            let offset = roster.text_offset.unwrap() as u32;
            let parsed: Vec<u32> = roster.starts.iter().map(|s| s + offset).collect();
            assert_eq!(
                followed(text.as_bytes(), parsed[0] as usize),
                parsed,
                "{text:?}"
            );
        }
        let next = |bytes: &[u8], at| Records::of(bytes, b',').next_record(at);
        assert_eq!(next(b"a,b\n", 4), None, "nothing there");
        assert_eq!(
            next(b"a,b\n\xEF\xBB\xBFc\n", 4),
            None,
            "a mark a reader drops"
        );
    }

    #[test]
    fn a_records_field_is_read_as_the_reader_reads_it() {
        let bytes = b"id,email\n\"E,1\",\"a\nb\"\nE2\n";
        // One reader, read at offsets in any order, as a re-sync jumps.
        let mut records = Records::of(bytes, b',');
        let second = records.next_record(9).unwrap();
        assert_eq!(records.field_of_record(9, 0).as_deref(), Some(&b"E,1"[..]));
        assert_eq!(records.field_of_record(9, 1).as_deref(), Some(&b"a\nb"[..]));
        assert_eq!(
            records.field_of_record(second, 0).as_deref(),
            Some(&b"E2"[..])
        );
        assert_eq!(records.field_of_record(second, 1), None, "a short record");
        assert_eq!(records.field_of_record(bytes.len(), 0), None, "no record");
    }
}
