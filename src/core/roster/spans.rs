//! Where a roster file's records start, their fields not read: what a re-sync needs to
//! follow a file record by record ([`crate::core::resync`]). A record is read by the
//! parser's csv reader ([`super::csv_reader`]), and the next one taken to start where the
//! parser takes a row to start, so the two agree (see the tests).

use csv::ByteRecord;

use super::halves::BOM;
use super::lines::{detect_delimiter, skip_line_ends};

/// The delimiter of the file `bytes` (as the parser finds it in its header line).
pub fn delimiter(bytes: &[u8]) -> u8 {
    detect_delimiter(bytes.strip_prefix(BOM).unwrap_or(bytes))
}

/// Where the record that starts at `at` in the file `bytes` ends: where the next record
/// starts (its line end and any blank lines after it skipped), or the end of the file;
/// `None` when there is no record there, or one a reader started there would read otherwise
/// than the file's reader (one starting with a byte-order mark, which a reader drops).
pub fn next_record(bytes: &[u8], at: usize, delimiter: u8) -> Option<usize> {
    read_record(bytes, at, delimiter).map(|(_, next)| next)
}

/// Field `column` of the record that starts at `at` (its bytes as a reader gives them:
/// unquoted, not trimmed); `None` where [`next_record`] gives `None`, or the record is
/// shorter.
pub fn field_of_record(bytes: &[u8], at: usize, delimiter: u8, column: usize) -> Option<Vec<u8>> {
    let (record, _) = read_record(bytes, at, delimiter)?;
    record.get(column).map(<[u8]>::to_vec)
}

/// The record that starts at `at`, and where the next one starts (see [`next_record`]).
fn read_record(bytes: &[u8], at: usize, delimiter: u8) -> Option<(ByteRecord, usize)> {
    let rest = bytes
        .get(at..)
        .filter(|r| !r.is_empty() && !r.starts_with(BOM))?;
    let mut reader = super::csv_reader(rest, delimiter);
    let mut record = ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => {
            let next = skip_line_ends(bytes, at + reader.position().byte() as usize);
            Some((record, next))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ok;
    use super::*;

    /// Where each record of `bytes` starts, following them from the first after the header.
    fn followed(bytes: &[u8], first: usize) -> Vec<u32> {
        let d = delimiter(bytes);
        let mut starts = vec![first as u32];
        let mut at = first;
        while let Some(next) = next_record(bytes, at, d).filter(|&n| n < bytes.len()) {
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
        assert_eq!(next_record(b"a,b\n", 4, b','), None, "nothing there");
        assert_eq!(
            next_record(b"a,b\n\xEF\xBB\xBFc\n", 4, b','),
            None,
            "a mark a reader drops"
        );
    }

    #[test]
    fn a_records_field_is_read_as_the_reader_reads_it() {
        let bytes = b"id,email\n\"E,1\",\"a\nb\"\nE2\n";
        let second = next_record(bytes, 9, b',').unwrap();
        assert_eq!(
            field_of_record(bytes, 9, b',', 0).as_deref(),
            Some(&b"E,1"[..])
        );
        assert_eq!(
            field_of_record(bytes, 9, b',', 1).as_deref(),
            Some(&b"a\nb"[..])
        );
        assert_eq!(
            field_of_record(bytes, second, b',', 0).as_deref(),
            Some(&b"E2"[..])
        );
        assert_eq!(
            field_of_record(bytes, second, b',', 1),
            None,
            "a short record"
        );
        assert_eq!(
            field_of_record(bytes, bytes.len(), b',', 0),
            None,
            "no record"
        );
    }
}
