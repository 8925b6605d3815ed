//! Bytes -> text: UTF-8 (with or without BOM) or Windows-1252, and the "not decodable"
//! error at the line of the first byte that is neither (or of the first NUL).

use std::borrow::Cow;

use super::lines::Lines;
use crate::core::model::Finding;
use crate::core::parallel::join;

/// How the file's bytes are decoded (config `roster.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 (with or without BOM), else Windows-1252.
    #[default]
    Auto,
    /// UTF-8 only; anything else is not decodable.
    Utf8,
    /// Windows-1252 only.
    Windows1252,
}

/// Bytes that Windows-1252 leaves undefined.
const UNDEFINED_IN_1252: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Files at least this long are first checked on two cores (a million rows took ~40 ms on
/// one: the NUL search and the UTF-8 check, before the parse's two halves start).
const SPLIT_MIN: usize = 1 << 22;

/// The text of the file (UTF-8, as bytes), or the "not decodable" error at the line of the
/// first bad byte.
pub(super) fn decode(bytes: &[u8], encoding: Encoding) -> Result<Cow<'_, [u8]>, Finding> {
    if encoding != Encoding::Windows1252 && bytes.len() >= SPLIT_MIN {
        let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        if plain_utf8_on_two_cores(body) {
            return Ok(Cow::Borrowed(body));
        }
    }
    decode_text(bytes, encoding).map(|text| match text {
        Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
    })
}

/// Whether `body` is UTF-8 without a NUL, checked in two halves split after a line feed
/// (never inside a character); `false` also when it has no line feed after its middle.
fn plain_utf8_on_two_cores(body: &[u8]) -> bool {
    let mid = body.len() / 2;
    let Some(lf) = memchr::memchr(b'\n', &body[mid..]) else {
        return false;
    };
    let (head, tail) = body.split_at(mid + lf + 1);
    let plain =
        |part: &[u8]| memchr::memchr(0, part).is_none() && std::str::from_utf8(part).is_ok();
    let (head_plain, tail_plain) = join(|| plain(head), || plain(tail));
    head_plain && tail_plain
}

/// [`decode`] on one core, finding the first bad byte.
fn decode_text(bytes: &[u8], encoding: Encoding) -> Result<Cow<'_, str>, Finding> {
    // memchr: a byte-by-byte search took ~80 ms of a 116 MB file, before anything else.
    let nul = memchr::memchr(0, bytes);
    let decoded = match encoding {
        Encoding::Auto | Encoding::Utf8 => {
            let bom = bytes.starts_with(UTF8_BOM);
            let body = if bom { &bytes[UTF8_BOM.len()..] } else { bytes };
            match std::str::from_utf8(body) {
                Ok(text) => Ok(Cow::Borrowed(text)),
                // A BOM says the file is UTF-8, so Windows-1252 would only produce mojibake.
                Err(e) if bom || encoding == Encoding::Utf8 => {
                    let at = e.valid_up_to() + if bom { UTF8_BOM.len() } else { 0 };
                    let why = if bom {
                        "the file starts with a UTF-8 byte order mark"
                    } else {
                        "roster.encoding is \"utf-8\""
                    };
                    Err((
                        at,
                        format!(
                            "byte 0x{:02X} is not valid UTF-8 and {why}; export the roster \
                             again as CSV UTF-8",
                            bytes[at]
                        ),
                    ))
                }
                // Neither: the first byte that is not UTF-8 is named, not an undefined byte
                // of Windows-1252 inside UTF-8 text ("Á" is C3 81, "Ł" C5 81), before it or
                // after: that line is fine, and the one that is not would go unnamed.
                Err(e) => windows_1252(bytes).map_err(|(at, why)| match e.valid_up_to() {
                    utf8 if at < utf8 || inside_utf8_char(bytes, at) => (
                        utf8,
                        format!(
                            "byte 0x{:02X} is not valid UTF-8, and the file is not Windows-1252 \
                             either (its UTF-8 text has bytes Windows-1252 leaves undefined): it \
                             mixes encodings; export the roster again as CSV UTF-8",
                            bytes[utf8]
                        ),
                    ),
                    _ => (at, why),
                }),
            }
        }
        // The BOM says UTF-8: read as Windows-1252 it would be the text "ï»¿" in the first
        // header, which no column matches (a status column unseen makes leavers active).
        Encoding::Windows1252 if bytes.starts_with(UTF8_BOM) => Err((
            0,
            "the file starts with a UTF-8 byte order mark, but roster.encoding is \
             \"windows-1252\": set roster.encoding to \"auto\" (or \"utf-8\") for this HR \
             system's files"
                .to_owned(),
        )),
        Encoding::Windows1252 => windows_1252(bytes),
    };
    let bad = match (decoded, nul) {
        (Err((at, _)), Some(n)) if n < at => nul_error(n),
        (Ok(_), Some(n)) => nul_error(n),
        (Ok(text), None) => return Ok(text),
        (Err(bad), _) => bad,
    };
    Err(Finding::line(line_of(bytes, bad.0), bad.1))
}

/// Whether the byte at `at` is a continuation byte of a well-formed UTF-8 character.
fn inside_utf8_char(bytes: &[u8], at: usize) -> bool {
    (1..=3).filter(|back| *back <= at).any(|back| {
        let start = at - back;
        let len = match bytes[start] {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return false,
        };
        at < start + len
            && (bytes.get(start..start + len)).is_some_and(|c| std::str::from_utf8(c).is_ok())
    })
}

fn nul_error(at: usize) -> (usize, String) {
    (
        at,
        "the file contains a NUL byte (0x00), so it is not a text CSV (a UTF-16 export or a \
         spreadsheet file?); export the roster as CSV UTF-8"
            .to_owned(),
    )
}

fn windows_1252(bytes: &[u8]) -> Result<Cow<'_, str>, (usize, String)> {
    if let Some(at) = bytes.iter().position(|b| UNDEFINED_IN_1252.contains(b)) {
        return Err((
            at,
            format!(
                "byte 0x{:02X} is neither valid UTF-8 nor a character of Windows-1252, so the \
                 file cannot be decoded; export the roster again as CSV UTF-8",
                bytes[at]
            ),
        ));
    }
    Ok(encoding_rs::WINDOWS_1252
        .decode_without_bom_handling(bytes)
        .0)
}

/// When `bytes`, not UTF-8 and so read as Windows-1252, also hold UTF-8 text (a character
/// of two to four bytes that UTF-8 reads whole): the line of the first such character, and
/// why the file may mix encodings, naming it, what Windows-1252 made of it, and the first
/// byte that is not UTF-8. A file exported as Windows-1252 rarely holds such a pair (an
/// accented capital followed by a symbol or a no-break space); one that mixes both reads
/// `São Paulo` as `SÃ£o Paulo`, and a rule's `not in` then no longer leaves it out.
pub(super) fn mixed_utf8(bytes: &[u8]) -> Option<(u64, String)> {
    let bad = std::str::from_utf8(bytes).err()?.valid_up_to();
    let mut at = 0;
    let (start, c) = bytes.utf8_chunks().find_map(|chunk| {
        let found = (chunk.valid().char_indices()).find(|(_, c)| !c.is_ascii());
        let here = at;
        at += chunk.valid().len() + chunk.invalid().len();
        found.map(|(i, c)| (here + i, c))
    })?;
    let read_as = encoding_rs::WINDOWS_1252
        .decode_without_bom_handling(&bytes[start..start + c.len_utf8()])
        .0;
    let line = line_of(bytes, start);
    Some((
        line,
        format!(
            "the file is not UTF-8 (line {}: byte 0x{:02X}), so it was read as Windows-1252, \
             but line {line} holds UTF-8 text ({:?}, read as {:?}): the file may mix encodings, \
             and rules may match its values wrongly; export the roster again as CSV UTF-8, \
             or set roster.encoding = \"windows-1252\" if this HR system's files are",
            line_of(bytes, bad),
            bytes[bad],
            crate::core::model::escape_controls(&c.to_string()),
            crate::core::model::escape_controls(&read_as),
        ),
    ))
}

/// The physical line (1-based) of byte `at`.
fn line_of(bytes: &[u8], at: usize) -> u64 {
    let mut lines = Lines::new(bytes);
    lines.at(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::roster::RosterOptions;
    use crate::core::roster::tests::{ids, needing, ok, ok_with, places, rejected, rejected_with};

    #[test]
    fn utf8_is_decoded_with_or_without_bom() {
        let plain = "employee_id,email,name\n1,zoë@example.com,Zoë\n";
        let with_bom = format!("\u{FEFF}{plain}");
        for text in [plain, with_bom.as_str()] {
            let r = ok(text);
            assert_eq!(ids(&r), ["1"]);
            assert_eq!(r.employees[0].email(), "zoë@example.com");
            // The BOM is not part of the first header.
            assert_eq!(r.present[0], "employeeid");
        }
    }

    /// A file read as Windows-1252 that also holds UTF-8 text is told: the line of the
    /// UTF-8 character, what it was read as, and the first byte that is not UTF-8. One that
    /// is Windows-1252 throughout, or UTF-8, is not.
    #[test]
    fn utf8_text_in_a_file_read_as_windows_1252_is_told() {
        let mixed = b"id,city,note\n1,S\xC3\xA3o Paulo,\n2,Lyon,Caf\xE9\n";
        let (line, why) = mixed_utf8(mixed).unwrap();
        assert_eq!(line, 2);
        assert!(
            why.starts_with("the file is not UTF-8 (line 3: byte 0xE9)")
                && why.contains("line 2 holds UTF-8 text (\"ã\", read as \"Ã£\")"),
            "{why}"
        );
        // The UTF-8 after the first bad byte is found too.
        let later = b"id,note\n1,Caf\xE9\n2,Z\xC3\xBCrich\n";
        assert_eq!(mixed_utf8(later).unwrap().0, 3);
        assert_eq!(mixed_utf8(b"id,city\n1,S\xE3o Paulo\n"), None);
        assert_eq!(mixed_utf8("id,city\n1,São Paulo\n".as_bytes()), None);
        // Through the parser: a warning first, and the roster says why.
        let mixed = b"employee_id,email,city\n1,a@x.io,S\xC3\xA3o Paulo\n2,b@x.io,Caf\xE9\n";
        let r = ok_with(mixed, &RosterOptions::default());
        assert_eq!(r.warnings[0].line, Some(2), "{:?}", r.warnings);
        assert!(r.mixed_encoding.is_some());
        // Read as Windows-1252 because the config says so: nothing to tell.
        let latin = RosterOptions {
            encoding: Encoding::Windows1252,
            ..RosterOptions::default()
        };
        assert_eq!(ok_with(mixed, &latin).mixed_encoding, None);
    }

    #[test]
    fn windows_1252_is_decoded_when_the_file_is_not_utf8() {
        // 0xEB is ë and 0x80 is € in Windows-1252; neither is valid UTF-8 here.
        let bytes = b"employee_id,email,Department\n1,zo\xEB@example.com,\x80 Finance\n";
        let r = ok_with(bytes, &needing(&["department"]));
        assert_eq!(r.employees[0].email(), "zoë@example.com");
        assert_eq!(r.value(0, 0), "€ finance");
    }

    /// UTF-8 text whose characters hold bytes Windows-1252 leaves undefined (Á is C3 81),
    /// then a stray Windows-1252 byte: the error names the line of the stray byte, not
    /// the line of the valid UTF-8 character.
    #[test]
    fn a_file_that_mixes_encodings_is_not_decodable_at_the_first_byte_that_is_not_utf8() {
        let bytes = "employee_id,email,name\n1,a@example.com,Álvarez\n2,b@example.com,x\n"
            .as_bytes()
            .iter()
            .copied()
            .chain(*b"3,c@example.com,Ren\xE9\n")
            .collect::<Vec<u8>>();
        let r = rejected_with(&bytes, &RosterOptions::default());
        assert_eq!(places(&r.errors), [(Some(4), None)], "{:?}", r.errors);
        assert!(
            r.errors[0].message.contains("0xE9") && r.errors[0].message.contains("mixes"),
            "{}",
            r.errors[0].message
        );
    }

    /// The stray Windows-1252 byte first, then UTF-8 text holding a byte Windows-1252 leaves
    /// undefined (Ł is C5 81): the error names the stray byte's line, not Ł's (it had said
    /// byte 0x81 of a valid line could not be decoded, and the bad line went unnamed).
    #[test]
    fn a_stray_byte_before_utf8_text_is_the_one_named() {
        let mut bytes = b"employee_id,email,name\n1,a@example.com,Caf\xE9\n".to_vec();
        bytes.extend_from_slice("2,b@example.com,Łukasz\n".as_bytes());
        let r = rejected_with(&bytes, &RosterOptions::default());
        assert_eq!(places(&r.errors), [(Some(2), None)], "{:?}", r.errors);
        assert!(
            r.errors[0].message.contains("0xE9") && r.errors[0].message.contains("mixes"),
            "{}",
            r.errors[0].message
        );
    }

    #[test]
    fn bytes_undefined_in_windows_1252_are_not_decodable_at_their_line() {
        for b in UNDEFINED_IN_1252 {
            let mut bytes = b"employee_id,email\n1,a\xE9@example.com\n2,b".to_vec();
            bytes.push(b);
            bytes.extend_from_slice(b"@example.com\n");
            let r = rejected_with(&bytes, &RosterOptions::default());
            assert_eq!(places(&r.errors), [(Some(3), None)], "byte {b:#x}");
            assert!(
                r.errors[0].message.contains(&format!("0x{b:02X}")),
                "{}",
                r.errors[0].message
            );
        }
    }

    #[test]
    fn a_nul_byte_is_not_decodable_at_its_line() {
        let r = rejected("employee_id,email\r\n1,a@example.com\r\n2,b@exa\0mple.com\r\n");
        assert_eq!(places(&r.errors), [(Some(3), None)]);
        assert!(
            r.errors[0].message.contains("NUL"),
            "{}",
            r.errors[0].message
        );
        assert_eq!(r.rows, 0);
    }

    #[test]
    fn a_utf16_export_is_not_decodable_at_line_1() {
        let utf16: Vec<u8> = "\u{FEFF}employee_id,email\n1,a@example.com\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let r = rejected_with(&utf16, &RosterOptions::default());
        assert_eq!(places(&r.errors), [(Some(1), None)]);
    }

    #[test]
    fn not_decodable_names_the_first_bad_byte() {
        // 0x81 on line 2 comes before the NUL on line 3.
        let r = rejected_with(
            b"employee_id,email\n1,\x81\n2,\0\n",
            &RosterOptions::default(),
        );
        assert_eq!(places(&r.errors), [(Some(2), None)]);
        assert!(r.errors[0].message.contains("0x81"));
        let r = rejected_with(
            b"employee_id,email\n1,\0\n2,\x81\n",
            &RosterOptions::default(),
        );
        assert_eq!(places(&r.errors), [(Some(2), None)]);
        assert!(r.errors[0].message.contains("NUL"));
    }

    #[test]
    fn encoding_utf8_forces_utf8() {
        let opts = RosterOptions {
            encoding: Encoding::Utf8,
            ..RosterOptions::default()
        };
        let r = rejected_with(
            b"employee_id,email\n1,a@example.com\n2,zo\xEB@example.com\n",
            &opts,
        );
        assert_eq!(places(&r.errors), [(Some(3), None)]);
        assert!(
            r.errors[0].message.contains("0xEB"),
            "{}",
            r.errors[0].message
        );
        ok_with("employee_id,email\n1,zoë@example.com\n".as_bytes(), &opts);
    }

    #[test]
    fn encoding_windows_1252_forces_windows_1252() {
        let opts = RosterOptions {
            encoding: Encoding::Windows1252,
            ..RosterOptions::default()
        };
        // Valid UTF-8 "ë" is read as the two Windows-1252 characters "Ã«".
        let r = ok_with("employee_id,email\n1,zoë@example.com\n".as_bytes(), &opts);
        assert_eq!(r.employees[0].email(), "zoÃ«@example.com");
        let r = rejected_with(b"employee_id,email\n1,a\x9D@example.com\n", &opts);
        assert_eq!(places(&r.errors), [(Some(2), None)]);
    }

    /// A UTF-8 BOM under `roster.encoding = "windows-1252"` had become "ï»¿" in the first
    /// header: a first column `status` went unseen, so leavers were provisioned.
    #[test]
    fn a_utf8_bom_under_forced_windows_1252_is_not_decodable() {
        let opts = RosterOptions {
            encoding: Encoding::Windows1252,
            ..RosterOptions::default()
        };
        let r = rejected_with(
            b"\xEF\xBB\xBFstatus,employee_id,email\nterminated,1,a@example.com\n",
            &opts,
        );
        assert_eq!(places(&r.errors), [(Some(1), None)]);
        assert!(r.errors[0].message.contains("byte order mark"));
    }

    #[test]
    fn a_long_text_checked_on_two_cores_decodes_as_on_one() {
        let rows = "1,zoë@example.com,Zoë\n".repeat(SPLIT_MIN / 20);
        let plain = format!("employee_id,email,name\n{rows}");
        let with_bom = format!("\u{FEFF}{plain}");
        for text in [&plain, &with_bom] {
            let decoded = decode(text.as_bytes(), Encoding::Auto).unwrap();
            assert_eq!(&*decoded, plain.as_bytes());
            assert!(matches!(decoded, Cow::Borrowed(_)));
        }
        // A bad byte or a NUL in either half: found where one core finds it.
        for (at, byte) in [
            (100, 0xEBu8),
            (plain.len() - 10, 0xEB),
            (plain.len() - 10, 0),
        ] {
            let mut bytes = plain.clone().into_bytes();
            bytes[at] = byte;
            let expected = decode_text(&bytes, Encoding::Utf8).map(|t| t.into_owned());
            let got = decode(&bytes, Encoding::Utf8).map(|t| t.into_owned());
            assert_eq!(
                got.map_err(|f| f.line),
                expected.map(String::into_bytes).map_err(|f| f.line)
            );
            assert!(decode(&bytes, Encoding::Utf8).is_err());
        }
        // Not UTF-8 at all: Windows-1252, as on one core.
        let mut bytes = plain.into_bytes();
        bytes[200] = 0xEB;
        let decoded = decode(&bytes, Encoding::Auto).unwrap();
        assert_eq!(
            decoded.into_owned(),
            decode_text(&bytes, Encoding::Auto)
                .unwrap()
                .into_owned()
                .into_bytes()
        );
    }

    #[test]
    fn a_bom_with_invalid_utf8_is_not_decoded_as_windows_1252() {
        let r = rejected_with(
            b"\xEF\xBB\xBFemployee_id,email\n1,zo\xEB@example.com\n",
            &RosterOptions::default(),
        );
        assert_eq!(places(&r.errors), [(Some(2), None)]);
        assert!(r.errors[0].message.contains("byte order mark"));
    }
}
