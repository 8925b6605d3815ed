//! Where a roster file's records start, their fields not read: what a re-sync needs to
//! follow a file record by record ([`crate::core::resync`]). A record is read by a csv
//! reader set up as the parser's, and the next one taken to start where the parser takes
//! a row to start, so the two agree (see the tests).

use csv::{ByteRecord, ReaderBuilder, Terminator};

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
    let rest = bytes
        .get(at..)
        .filter(|r| !r.is_empty() && !r.starts_with(BOM))?;
    let mut reader = ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .terminator(Terminator::CRLF)
        .from_reader(rest);
    let mut record = ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => Some(skip_line_ends(
            bytes,
            at + reader.position().byte() as usize,
        )),
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
}
