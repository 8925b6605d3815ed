//! Header normalization, canonical columns and their aliases (SPEC §1).

use std::collections::BTreeMap;

/// Canonical name of the employee ID column.
pub const EMPLOYEE_ID: &str = "employee_id";
/// Canonical name of the email column.
pub const EMAIL: &str = "email";
/// Canonical name of the manager ID column.
pub const MANAGER_ID: &str = "manager_id";
/// Canonical name of the employment status column.
pub const EMPLOYMENT_STATUS: &str = "employment_status";
/// The derived field; a column of this name in a file is ignored.
pub const IS_MANAGER: &str = "is_manager";

/// The canonical columns with their default aliases, in SPEC order.
pub const DEFAULT_ALIASES: &[(&str, &[&str])] = &[
    (
        EMPLOYEE_ID,
        &[
            "Employee ID",
            "EmployeeID",
            "Emp ID",
            "Worker ID",
            "Person Number",
        ],
    ),
    (EMAIL, &["Email", "Work Email", "Email Address", "UPN"]),
    (
        MANAGER_ID,
        &["Manager ID", "Supervisor ID", "Reports To ID"],
    ),
    (
        EMPLOYMENT_STATUS,
        &["Status", "Employment Status", "Worker Status"],
    ),
];

/// Lower-cases and drops spaces, `_`, `-` and `.`: "Job Title" = "job_title" = "JobTitle";
/// beyond ASCII, drops the characters that show as nothing and composes accents (NFC), as
/// cells are read ([`fold_cell`]): a header exported with a decomposed `é` had rejected
/// every file for a rule's missing `Département` column.
pub fn normalize_header(name: &str) -> String {
    let kept = |c: &char| !matches!(c, ' ' | '_' | '-' | '.') && !c.is_whitespace();
    let key: String = (name.trim().chars().filter(kept))
        .flat_map(char::to_lowercase)
        .collect();
    if key.is_ascii() {
        return key;
    }
    use unicode_normalization::UnicodeNormalization;
    key.chars().filter(|&c| !is_invisible(c)).nfc().collect()
}

/// Trims and lower-cases a value: the comparison SPEC calls "case-insensitive".
pub fn fold_value(value: &str) -> String {
    fold(value).into_owned()
}

/// [`fold_value`] without a copy when the value is folded already (most emails and cells
/// are: a million-row roster folds a million of them).
pub fn fold(value: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = value.trim();
    if trimmed
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        std::borrow::Cow::Borrowed(trimmed)
    } else {
        std::borrow::Cow::Owned(trimmed.to_lowercase())
    }
}

/// Well-formed = no whitespace, exactly one `@`, a non-empty local part, a domain containing a dot.
pub fn is_well_formed_email(email: &str) -> bool {
    // One pass over the bytes (twice per row: the parse and the plan). `@`, `.` and the
    // ASCII whitespace (tab to carriage return, space) never occur inside a multi-byte
    // character, so bytes decide for them; other whitespace is looked for only in the rare
    // address that is not ASCII.
    // An address with no byte below `!` (the usual case) has no ASCII whitespace: its `@`
    // and `.` are then found by `memchr` instead of a byte at a time (a million rows' emails
    // took ~60 ms of a parse that way).
    let bytes = email.as_bytes();
    let shaped = if bytes.iter().fold(false, |low, &b| low | (b < b'!')) {
        shaped_byte_by_byte(bytes)
    } else {
        memchr::memchr(b'@', bytes).is_some_and(|at| {
            let domain = &bytes[at + 1..];
            at > 0
                && memchr::memchr(b'@', domain).is_none()
                && memchr::memchr(b'.', domain).is_some()
        })
    };
    shaped && (email.is_ascii() || !email.chars().any(char::is_whitespace))
}

/// Why an address that is well-formed is not one address ([`is_plain_identity`]), as
/// messages say it.
pub const NOT_ONE_ADDRESS: &str = "a character in it reads as another (such as the Kelvin \
     sign for k) or shows as nothing, or its domain ends in a dot";

/// Whether `email`, as an SSO identity, is one address: ASCII spaces around it aside, it is
/// well-formed, and each of its characters is the one its lower case stands for. The
/// Kelvin sign `K` lower-cases to `k` (as `K` does), the Ångström sign to `å` (as `Å`
/// does): `Kim@…` written with it had matched kim@…'s account and been given its role, and
/// `kim@…` had matched an account whose roster email was written so. Spaces beyond ASCII
/// around it (U+3000) are no part of an address either.
///
/// Nor an address with a character that shows as nothing (a zero-width space, a soft
/// hyphen, a direction mark: `kim\u{200b}@…` listed as kim@…, Super Admin beside the real
/// one), nor one whose accents are not composed as Unicode's NFC composes them (`é` as `e`
/// and a combining accent: a second spelling of the same address, which had got an account
/// of its own beside the composed one's).
///
/// Nor one with a lower-case letter whose capital is another letter's too, written for
/// that letter (`ſ` for `s`, `ϐ` for `β`, the Greek symbols `ϑ ϕ ϖ ϰ ϱ ϵ`): a gateway
/// comparing case-insensitively letter by letter takes both spellings for one address,
/// and `ſam@…` had been given its own account and role beside sam@…; nor one with a
/// compatibility form that stands for others (a ligature, `ﬁ` for `fi`; a fullwidth or
/// mathematical letter: [`is_compatibility_form`]). Greek's final `ς` (where lower-casing
/// puts one: [`sigmas_are_final`]) and Turkish `ı` are letters of their languages' spelling
/// (`νίκος@…`, `aydın@…`) and pass, though their capitals are `σ`'s and `i`'s too (README).
/// Nor one whose lower case is not composed. Nor one whose domain ends in a dot (the DNS
/// spelling of the same domain: `alice@acme.example.` had been given a manual account and
/// a role of its own beside alice@acme.example's).
pub fn is_plain_identity(email: &str) -> bool {
    let email = email.trim_matches(|c: char| c.is_ascii_whitespace());
    is_well_formed_email(email)
        && !email.ends_with('.')
        && (email.is_ascii()
            || (email
                .chars()
                .all(|c| is_own_case(c) && !is_invisible(c) && !is_compatibility_form(c))
                && sigmas_are_final(email)
                && !has_split_sara_am(email)
                && unicode_normalization::is_nfc(email)
                // Its lower case composed as well: `J̌OE@…` lower-cases to `j` and a caron,
                // not `ǰ`, and had been an account of its own beside ǰoe@….
                && unicode_normalization::is_nfc(&fold(email))))
}

/// Whether every `ς` of `email` stands where lower-casing puts one (Unicode's final sigma,
/// which `str::to_lowercase` follows): its capital `Σ` then lower-cases back to it. Before
/// a letter (`ςοφία`), or before `.` and another word (`νίκος.παπας`, whose capitals
/// lower-case to `νίκοσ.παπας`, another account's address), it does not.
fn sigmas_are_final(email: &str) -> bool {
    if !email.contains('ς') {
        return true;
    }
    let capitals: String = email
        .chars()
        .map(|c| if c == 'ς' { 'Σ' } else { c })
        .collect();
    capitals.to_lowercase() == email.to_lowercase()
}

/// Whether `c` is a compatibility form that stands for other characters, which a gateway
/// mapping widths or compatibility forms (PRECIS, NFKC) takes for them: any character
/// Unicode's NFKC maps to others, a ligature (`ﬁ` for `fi`, `ŉ`), a digraph (`ǅ` for
/// `Dž`), a fullwidth or halfwidth form (`ｋ`), a mathematical, circled or letter-like
/// symbol (`𝐤`, `ⓚ`, `ℓ`), a Roman numeral (`ⅰ`), a superscript or subscript letter
/// (`ᵃ`, `ʰ`, `ᵢ`), a presentation form: `ｋate@…` had held an account of its own beside
/// kate@…. But for letters that Thai and Lao spell with, as their writers type them, which
/// NFKC decomposes too (`ำ`, `ຳ`, `ໜ`, `ໝ`), and Armenian `և` (README: left open): refused,
/// Thai admins had lost sign-in. (`ĳ`, `ŀ`, compatibility jamo and the rest pass no more:
/// each had held an account beside its NFKC twin, `ĳsbrand@…` beside ijsbrand@….)
fn is_compatibility_form(c: char) -> bool {
    use unicode_normalization::UnicodeNormalization;
    let spelled = matches!(c, '\u{e33}' | '\u{eb3}' | '\u{edc}'..='\u{edd}' | '\u{587}');
    !spelled && std::iter::once(c).nfkc().ne(std::iter::once(c))
}

/// Whether `email` spells Thai's or Lao's SARA AM as its two parts (NIKHAHIT and SARA AA),
/// the twin of the one character keyboards type (`ำ`): two accounts of one address.
fn has_split_sara_am(email: &str) -> bool {
    email.contains("\u{e4d}\u{e32}") || email.contains("\u{ecd}\u{eb2}")
}

/// Whether `c` shows as nothing: Unicode's default ignorable code points (zero-width
/// spaces and joiners, the soft hyphen, direction marks and overrides, the byte order
/// mark, variation selectors, tags).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// A cell as rules and `roster.inactive_statuses` compare it: [`fold_value`], and beyond
/// ASCII of its NFC form without the characters that show as nothing. A status
/// `Terminated` with a zero-width space, or `Départ` with a combining accent, had counted
/// as active (a leaver kept their admin rights); `department != Sales` had matched a
/// `Sales` cell with a zero-width space, and `not in (Comptabilité)` a decomposed
/// `Comptabilité`, granting the rule's role to those it excludes. Rule values are folded
/// alike. Emails are not: a second spelling of an address is no address (see
/// [`is_plain_identity`]), not the same one.
pub fn fold_cell(value: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::{IsNormalized, is_nfc_quick};
    // Most cells are ASCII, or composed and without such characters (`Zürich`): folded as
    // they are, without the copies (a million-row roster's non-ASCII cells are tens of
    // thousands).
    if value.is_ascii()
        || (!value.chars().any(is_invisible) && is_nfc_quick(value.chars()) == IsNormalized::Yes)
    {
        return fold_value(value);
    }
    // The invisible characters go first: between a letter and its accent (a combining
    // grapheme joiner, a variation selector), one keeps NFC from composing them.
    let visible: String = value.chars().filter(|&c| !is_invisible(c)).collect();
    fold_value(&visible.nfc().collect::<String>())
}

/// Whether `c` is the letter its lower case stands for: lower-case or uncased; the upper
/// case of its lower case (`Å`, not the Ångström sign; `K`, not the Kelvin sign); a
/// title-case letter (`ǅ`); or a capital whose lower case has no single capital to be
/// confused with (`ẞ`: `ß` upper-cases to `SS`). Not `İ`, whose lower case is `i` and a
/// combining dot.
fn is_own_case(c: char) -> bool {
    let mut lower = c.to_lowercase();
    let (Some(l), None) = (lower.next(), lower.next()) else {
        return false;
    };
    if l == c {
        // Lower-case or uncased: its capital must stand for it alone (`ſ`'s `S` is `s`'s),
        // but for the final sigma and the dotless i, which their languages spell with; a
        // capital of several letters (`ß`: `SS`) is no single letter to share.
        let mut upper = c.to_uppercase();
        return match (upper.next(), upper.next()) {
            (Some(u), None) => matches!(c, 'ς' | 'ı') || u.to_lowercase().eq(std::iter::once(c)),
            _ => true,
        };
    }
    let mut upper = l.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u == c || is_title_case(c),
        _ => true,
    }
}

/// Unicode's title-case letters (category Lt).
fn is_title_case(c: char) -> bool {
    matches!(
        c,
        '\u{1c5}'
            | '\u{1c8}'
            | '\u{1cb}'
            | '\u{1f2}'
            | '\u{1f88}'..='\u{1f8f}'
            | '\u{1f98}'..='\u{1f9f}'
            | '\u{1fa8}'..='\u{1faf}'
            | '\u{1fbc}'
            | '\u{1fcc}'
            | '\u{1ffc}'
    )
}

/// [`is_well_formed_email`]'s shape, but for whitespace beyond ASCII, one byte at a time.
fn shaped_byte_by_byte(bytes: &[u8]) -> bool {
    let mut at = None;
    let mut dotted_domain = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\t'..=b'\r' | b' ' => return false,
            b'@' if at.is_some() => return false,
            b'@' => at = Some(i),
            b'.' => dotted_domain |= at.is_some(),
            _ => {}
        }
    }
    at.is_some_and(|i| i > 0) && dotted_domain
}

/// Maps normalized header names to field keys: aliases resolve to their canonical column.
///
/// A field key is the normalized form of the canonical name for canonical columns
/// (`employeeid`, `email`, `managerid`, `employmentstatus`) and the normalized header
/// for every other column. Rule conditions resolve their field names the same way, so
/// `Work Email = x` and `email = x` name the same field.
#[derive(Debug, Clone)]
pub struct Columns {
    alias_to_key: BTreeMap<String, String>,
}

impl Default for Columns {
    fn default() -> Self {
        Self::new(&BTreeMap::new())
    }
}

impl Columns {
    /// Builds the table from the defaults plus `roster.columns` (canonical -> extra aliases).
    pub fn new(extra: &BTreeMap<String, Vec<String>>) -> Self {
        let mut alias_to_key = BTreeMap::new();
        for (canonical, aliases) in DEFAULT_ALIASES {
            let key = normalize_header(canonical);
            alias_to_key.insert(key.clone(), key.clone());
            for alias in *aliases {
                alias_to_key.insert(normalize_header(alias), key.clone());
            }
        }
        for (canonical, aliases) in extra {
            let key = normalize_header(canonical);
            for alias in aliases {
                alias_to_key.insert(normalize_header(alias), key.clone());
            }
        }
        Self { alias_to_key }
    }

    /// The field key a header or rule field name refers to.
    pub fn key(&self, name: &str) -> String {
        let normalized = normalize_header(name);
        match self.alias_to_key.get(&normalized) {
            Some(key) => key.clone(),
            None => normalized,
        }
    }

    /// The canonical column (`manager_id`) that `name` names, by its name or an alias.
    pub fn canonical(&self, name: &str) -> Option<&'static str> {
        let key = self.key(name);
        DEFAULT_ALIASES
            .iter()
            .map(|(canonical, _)| *canonical)
            .find(|canonical| normalize_header(canonical) == key)
    }

    /// Whether `name` is one of the canonical column names of `extra` (for config validation).
    pub fn is_canonical(name: &str) -> bool {
        DEFAULT_ALIASES.iter().any(|(c, _)| *c == name)
    }
}

/// The field key of a canonical column (its normalized name).
pub fn canonical_key(canonical: &str) -> String {
    normalize_header(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_normalize_ignoring_case_spaces_underscores_dashes_dots() {
        for h in [
            "Job Title",
            "job_title",
            "JobTitle",
            "JOB-TITLE",
            "job.title",
            " Job  Title ",
        ] {
            assert_eq!(normalize_header(h), "jobtitle", "{h}");
        }
        // Beyond ASCII as cells are read: accents composed, what shows as nothing dropped.
        for h in [
            "Département",
            "De\u{301}partement",
            "DÉ\u{200b}PARTEMENT",
            "de\u{301}\u{feff}partement",
        ] {
            assert_eq!(normalize_header(h), "département", "{h:?}");
        }
    }

    #[test]
    fn aliases_resolve_to_canonical_keys() {
        let c = Columns::default();
        assert_eq!(c.key("Work Email"), "email");
        assert_eq!(c.key("UPN"), "email");
        assert_eq!(c.key("Person Number"), "employeeid");
        assert_eq!(c.key("employee_id"), "employeeid");
        assert_eq!(c.key("Reports To ID"), "managerid");
        assert_eq!(c.key("Worker Status"), "employmentstatus");
        assert_eq!(c.key("Department"), "department");
    }

    #[test]
    fn configured_aliases_are_added() {
        let mut extra = BTreeMap::new();
        extra.insert("employee_id".to_string(), vec!["Badge Number".to_string()]);
        let c = Columns::new(&extra);
        assert_eq!(c.key("badge_number"), "employeeid");
        assert_eq!(c.key("Emp ID"), "employeeid");
    }

    #[test]
    fn emails_are_well_formed_only_with_one_at_a_local_part_and_a_dotted_domain() {
        for ok in ["a@b.c", "first.last@acme.example", "x+tag@sub.example.org"] {
            assert!(is_well_formed_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "@b.c", "a@b", "a@@b.c", "a@b@c.d", "a b@c.d", "a@b.c ", "a\t@b.c",
        ] {
            assert!(!is_well_formed_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn an_identity_is_one_spelling_of_one_address() {
        for ok in [
            "kim@acme.example",
            " Kim@Acme.Example ",
            "zoë@x.example",
            "ZOË@x.example",
            "\u{c5}sa@x.example",
            "straße@x.example",
            "STRA\u{1e9e}E@x.example",
            "\u{1f88}@x.example",
            "ΣΩ@x.example",
            "IŞIK@x.example",
            "ı@x.example",
            "aydın.yıldız@x.example",
            "νίκος@x.example",
            "\u{1f0}oe@x.example",
            // Letters of a script's own spelling that NFKC decomposes too.
            "กำพล@x.example",
            "\u{edc}a@x.example",
            "\u{587}@x.example",
            "νίκος-παπας@x.example",
            "ΠΑΠΑΣ@x.example",
        ] {
            assert!(is_plain_identity(ok), "{ok:?}");
        }
        // The Kelvin, Ångström and Ohm signs, the capital theta symbol, a dotted capital I
        // (lower-cased: i and a combining dot), spaces beyond ASCII around or inside it.
        for bad in [
            "\u{212a}im@acme.example",
            "\u{212b}sa@acme.example",
            "\u{2126}mega@acme.example",
            "\u{3f4}eta@acme.example",
            "\u{130}an@acme.example",
            "\u{3000}kim@acme.example",
            "kim@acme.example\u{a0}",
            "kim@acme",
            // Lower-case letters written for another that shares their capital: the long
            // s, Greek symbols, a historic Cyrillic form.
            "\u{17f}am@acme.example",
            "\u{3d0}eta@acme.example",
            "\u{3d1}eta@acme.example",
            // A ligature for its letters; a final sigma inside a word.
            "\u{fb01}nn@acme.example",
            "\u{149}@acme.example",
            // Compatibility forms: fullwidth, mathematical, circled letters, a Roman
            // numeral, a title-case digraph (NFKC: `Dž`).
            "\u{ff4b}ate@acme.example",
            "\u{1d424}ate@acme.example",
            "\u{24da}ate@acme.example",
            "\u{2170}@acme.example",
            // Superscript and subscript letters outside the superscripts' block.
            "\u{1d43}lice@acme.example",
            "jo\u{2b0}n@acme.example",
            "\u{1d62}van@acme.example",
            "\u{2c7c}ane@acme.example",
            "\u{309f}@acme.example",
            // NFKC twins of letters that had passed: ĳ (ij), ŀ (l·), compatibility jamo
            // (ㄱㅏ is 가), Arabic ٵ, Tibetan's non-breaking tsheg; Thai's SARA AM in two
            // parts (the one character passes).
            "\u{133}sbrand@x.example",
            "co\u{140}lega@x.example",
            "\u{3131}\u{314f}@x.example",
            "\u{675}@x.example",
            "\u{f0c}@x.example",
            "\u{e17}\u{e4d}\u{e32}@x.example",
            "\u{1c5}emal@x.example",
            "ςοφία@acme.example",
            // Capitals whose lower case is not composed (j and a caron, not ǰ).
            "J\u{30c}OE@x.example",
            "\u{3aa}\u{301}\u{3a3}@x.example",
            // Its capitals lower-case to νίκοσ.παπας: not where a final sigma stands.
            "νίκος.παπας@acme.example",
            // The DNS spelling of the domain: the same mailbox to a gateway.
            "alice@acme.example.",
            "ας'α@acme.example",
            "1ς@acme.example",
            "\u{1e9b}@acme.example",
            "\u{1c80}@acme.example",
        ] {
            assert!(!is_plain_identity(bad), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The byte pass decides as the definition does: no whitespace character, exactly
        /// one `@`, a non-empty local part, a dot in the domain.
        #[test]
        fn email_whitespace_is_every_whitespace_character(
            email in "[a@.\t\n\x0B\x0C\r \x01\u{85}\u{A0}\u{2003}é]{0,8}"
        ) {
            let spaced = email.chars().any(char::is_whitespace);
            let mut parts = email.split('@');
            let shaped = match (parts.next(), parts.next(), parts.next()) {
                (Some(local), Some(domain), None) => !local.is_empty() && domain.contains('.'),
                _ => false,
            };
            proptest::prop_assert_eq!(is_well_formed_email(&email), !spaced && shaped);
        }
    }

    #[test]
    fn values_fold_by_trimming_and_unicode_lowercasing() {
        assert_eq!(fold_value("  Finance "), "finance");
        assert_eq!(fold_value("ÉCOLE"), "école");
        assert_eq!(fold_value("r&d"), "r&d");
    }
}
