//! The drop's naming rules, defined once for every mode (host, watch, poll).

/// Suffixes of names that are still being written (SPEC §5), compared in any letter case.
const PARTIAL_SUFFIXES: [&str; 4] = [".part", ".filepart", ".tmp", ".partial"];

/// Names every mode passes over (SPEC §5): hidden names (starting with `.`) and names ending
/// in `.part`, `.filepart`, `.tmp` or `.partial` in any letter case. The SFTP server refuses
/// uploads under them, the inbox and watch scans and poll mode's listings skip them.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.')
        || PARTIAL_SUFFIXES.iter().any(|suffix| {
            let (n, s) = (name.as_bytes(), suffix.as_bytes());
            n.len() >= s.len() && n[n.len() - s.len()..].eq_ignore_ascii_case(s)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_partial_names_are_ignored_in_any_letter_case() {
        for name in [
            ".roster.csv",
            ".",
            "roster.csv.part",
            "roster.csv.Part",
            "ROSTER.CSV.PART",
            "x.FilePart",
            "x.TMP",
            "x.Partial",
            "été.tmp",
        ] {
            assert!(is_ignored(name), "{name} should be ignored");
        }
        for name in [
            "roster.csv",
            "part",
            "x.part.csv",
            "x.tmp2",
            "x.parts",
            "été.csv",
            "tmp",
        ] {
            assert!(!is_ignored(name), "{name} should not be ignored");
        }
    }
}
