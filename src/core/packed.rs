//! Accounts in the compact binary encoding the store keeps them in (postcard of
//! [`Account`]): a sync hands the accounts it changes to the store so, and the store reads an
//! account's [`AccountHead`] from it in place. A million new accounts take a third of the
//! memory packed that they take as values, and the store writes the bytes as they are.

use crate::core::accounts::{Account, AccountHead, Origin, Status};
use crate::core::rules::RuleId;

/// One account, packed.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl Packed {
    /// Packs an account.
    pub fn of(account: &Account) -> Packed {
        Packed::encode(account)
    }

    /// Packs what encodes as an account does (e.g. one with borrowed strings: postcard
    /// writes a `String` and a `&str` alike).
    pub fn encode(account: &impl serde::Serialize) -> Packed {
        // Encoded on the stack first, so that the one allocation has the exact size (a
        // typical account is ~200 bytes with one history entry).
        let mut room = [0u8; 512];
        match postcard::to_slice(account, &mut room) {
            Ok(bytes) => Packed(Box::from(&*bytes)),
            Err(_) => Packed(
                postcard::to_allocvec(account)
                    .expect("accounts always serialize")
                    .into_boxed_slice(),
            ),
        }
    }

    /// This account, packed with an empty employee ID and email, with `id` and `email`
    /// instead: they lead the encoding, so the rest of it is copied as it is (a first
    /// import's new accounts differ only there within one kind of change).
    pub fn with_id_and_email(&self, id: &str, email: &str) -> Packed {
        let rest = self
            .0
            .strip_prefix(&[0, 0])
            .expect("packed with an empty ID and email");
        let len = varint_len(id.len()) + id.len() + varint_len(email.len()) + email.len();
        let mut bytes = Vec::with_capacity(len + rest.len());
        for s in [id, email] {
            push_varint(&mut bytes, s.len());
            bytes.extend_from_slice(s.as_bytes());
        }
        bytes.extend_from_slice(rest);
        Packed(bytes.into_boxed_slice())
    }

    /// The encoding.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The fields a sync decides on, read in place. Packed here, the bytes are an account:
    /// only its leading fields are read, not its dates and history (a first import reads
    /// the heads of 950k new accounts so, to group them by bucket and to index their emails;
    /// [`take_head`] checked every string of each, ~8 % of the commit's CPU).
    pub fn head(&self) -> AccountHead<'_> {
        postcard::take_from_bytes::<AccountHead<'_>>(&self.0)
            .expect("packed by `Packed::of`")
            .0
    }

    /// The account's employee ID, read without the rest (its first field).
    pub fn employee_id(&self) -> &str {
        postcard::take_from_bytes::<&str>(&self.0)
            .expect("packed by `Packed::of`")
            .0
    }

    /// The account.
    pub fn unpack(&self) -> Account {
        postcard::from_bytes(&self.0).expect("packed by `Packed::of`")
    }
}

/// The bytes of a length as postcard writes it: seven bits a byte, low first, the high bit
/// set on all but the last.
fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// How many bytes [`push_varint`] writes for `n`.
fn varint_len(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unpack().fmt(f)
    }
}

/// Reads the packed account at the start of `bytes`: its head, and the bytes after it. Every
/// byte of the account is read (its history too, without a copy), so that what this accepts
/// unpacks whole.
pub fn take_head(bytes: &[u8]) -> postcard::Result<(AccountHead<'_>, &[u8])> {
    let (head, rest): (Head<'_>, _) = postcard::take_from_bytes(bytes)?;
    Ok((head.0, rest))
}

/// An account's encoding read for its head: the fields of [`Account`] in its order, the
/// rest decoded and let go.
struct Head<'a>(AccountHead<'a>);

impl<'de> serde::Deserialize<'de> for Head<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The head, then the dates and the history, read and let go (postcard lays a
        // struct's fields and a tuple's elements out alike, one after the other).
        type Fields<'a> = (AccountHead<'a>, &'a str, &'a str, History<&'a str>);
        let (head, _created_at, _updated_at, _history) = Fields::deserialize(d)?;
        Ok(Head(head))
    }
}

/// [`take_head`] of the account at `at` in `all`, whose longest valid UTF-8 prefix is `text`
/// (see [`valid_prefix`]); returns the head and where the account ends. The same accounts
/// are accepted and the same heads read, but an account whose strings `text` proves valid
/// is not checked string by string (an account holds ~9 short strings: the calls cost more
/// than the bytes).
pub fn take_head_at<'a>(
    all: &'a [u8],
    text: &'a str,
    at: usize,
) -> postcard::Result<(AccountHead<'a>, usize)> {
    if let Some(found) = head_in_text(all, text, at) {
        return Ok(found);
    }
    let (head, rest) = take_head(all.get(at..).unwrap_or_default())?;
    Ok((head, all.len() - rest.len()))
}

/// The longest prefix of `bytes` that is valid UTF-8.
pub fn valid_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// The account at `at` read with its strings as bytes, which `text` (valid UTF-8 over the
/// same bytes) proves valid: each of the head's strings is `text` sliced at char boundaries,
/// and the history's strings are valid when every varint between them takes one byte (an
/// ASCII byte: next to it is always a char boundary, so each string is a slice of `text` at
/// char boundaries) and the history ends at a char boundary. `None` when that cannot be
/// shown; [`take_head`] then decides.
fn head_in_text<'a>(all: &'a [u8], text: &'a str, at: usize) -> Option<(AccountHead<'a>, usize)> {
    let (raw, rest): (RawHead<'a>, _) = postcard::take_from_bytes(all.get(at..)?).ok()?;
    let end = all.len() - rest.len();
    // Where a string read from `all` starts in it (postcard hands out slices of its input).
    let start_of = |s: &[u8]| (s.as_ptr() as usize).checked_sub(all.as_ptr() as usize);
    let str_of = |s: &'a [u8]| {
        let start = start_of(s)?;
        text.get(start..start + s.len())
    };
    let history = start_of(raw.updated_at)? + raw.updated_at.len();
    let varints = 1 + 5 * raw.history.entries;
    let one_byte_varints = end.checked_sub(history)? == varints + raw.history.text_bytes;
    if !one_byte_varints || !text.is_char_boundary(end) {
        return None;
    }
    str_of(raw.created_at)?;
    str_of(raw.updated_at)?;
    let head = AccountHead {
        employee_id: str_of(raw.employee_id)?,
        email: str_of(raw.email)?,
        role: str_of(raw.role)?,
        status: raw.status,
        origin: raw.origin,
        rule_id: raw.rule_id,
    };
    Some((head, end))
}

/// An account's encoding with its strings read as bytes (postcard writes a string and bytes
/// alike: a varint length, then the bytes).
#[derive(serde::Deserialize)]
struct RawHead<'a> {
    employee_id: &'a [u8],
    email: &'a [u8],
    role: &'a [u8],
    status: Status,
    origin: Origin,
    rule_id: Option<RuleId>,
    created_at: &'a [u8],
    updated_at: &'a [u8],
    history: History<&'a [u8]>,
}

/// A history read entry by entry and not kept: how many entries, and how many bytes their
/// strings take. The strings are read as `T`: `&str` (checked as UTF-8) or `&[u8]` (not).
struct History<T> {
    entries: usize,
    text_bytes: usize,
    text: std::marker::PhantomData<T>,
}

impl<'de, T: serde::Deserialize<'de> + AsRef<[u8]>> serde::Deserialize<'de> for History<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A [`crate::core::accounts::HistoryEntry`] read in place.
        #[derive(serde::Deserialize)]
        struct Entry<T> {
            at: T,
            source: T,
            _status: Status,
            role: T,
            reason: T,
        }
        struct Entries<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de> + AsRef<[u8]>> serde::de::Visitor<'de> for Entries<T> {
            type Value = History<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a history")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<History<T>, A::Error> {
                let mut history = History {
                    entries: 0,
                    text_bytes: 0,
                    text: std::marker::PhantomData,
                };
                while let Some(e) = seq.next_element::<Entry<T>>()? {
                    history.entries += 1;
                    history.text_bytes += [e.at, e.source, e.role, e.reason]
                        .iter()
                        .map(|t| t.as_ref().len())
                        .sum::<usize>();
                }
                Ok(history)
            }
        }
        d.deserialize_seq(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An auto account with one history entry.
    fn sample(id: &str, email: &str) -> Account {
        let mut a = Account {
            employee_id: id.into(),
            email: email.into(),
            role: "IT Admin".into(),
            status: Status::Active,
            origin: Origin::Auto,
            rule_id: Some(RuleId(3)),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            history: Vec::new(),
        };
        a.record("2026-01-02T00:00:00Z", "r.csv", "created".into());
        a
    }

    #[test]
    fn an_account_unpacks_as_it_was_packed_and_its_head_reads_in_place() {
        let mut a = sample("E1", "e1@x.io");
        let p = Packed::of(&a);
        assert_eq!(p.unpack(), a);
        assert_eq!(p.head(), a.head());
        assert_eq!(p.employee_id(), a.employee_id);
        let (head, rest) = take_head(p.bytes()).unwrap();
        assert_eq!((head, rest.len()), (a.head(), 0));
        assert_eq!(p.bytes(), postcard::to_allocvec(&a).unwrap());
        // Longer than the stack room: packed all the same.
        a.history = (0..20).map(|_| a.history[0].clone()).collect();
        let p = Packed::of(&a);
        assert!(p.bytes().len() > 512);
        assert_eq!(p.unpack(), a);
    }

    #[test]
    fn an_id_and_email_set_in_a_blank_packing_give_the_accounts_own_bytes() {
        let mut a = sample("", "");
        let blank = Packed::of(&a);
        // Lengths either side of each step of the length's encoding.
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            (a.employee_id, a.email) = ("i".repeat(len), "e".repeat(len / 2 + 1));
            let set = blank.with_id_and_email(&a.employee_id, &a.email);
            assert_eq!(set.bytes(), Packed::of(&a).bytes(), "{len}");
            assert_eq!(set.unpack(), a);
        }
    }

    proptest::proptest! {
        /// The head a packed account reads in place is the account's, and what
        /// [`take_head`], which checks every string, reads.
        #[test]
        fn a_packed_heads_leading_fields_are_the_accounts_head(
            id in "\\PC{0,12}",
            email in "\\PC{0,24}",
            role in "\\PC{0,12}",
            active in proptest::bool::ANY,
            auto in proptest::bool::ANY,
            rule in proptest::option::of(0u64..100_000),
            reasons in proptest::collection::vec("\\PC{0,30}", 0..3),
        ) {
            let mut a = Account {
                employee_id: id,
                email,
                role,
                status: if active { Status::Active } else { Status::Inactive },
                origin: if auto { Origin::Auto } else { Origin::Manual },
                rule_id: rule.map(RuleId),
                created_at: "2026-01-01T00:00:00Z".into(),
                updated_at: "2026-01-01T00:00:00Z".into(),
                history: Vec::new(),
            };
            for reason in reasons {
                a.record("2026-01-02T00:00:00Z", "r.csv", reason);
            }
            let p = Packed::of(&a);
            proptest::prop_assert_eq!(p.head(), a.head());
            proptest::prop_assert_eq!(take_head(p.bytes()).unwrap().0, a.head());
        }
    }

    fn account(rule: u64, reason: &str) -> Account {
        let mut a = Account {
            employee_id: "E1".into(),
            email: "é1@x.io".into(),
            role: "IT Admin".into(),
            status: Status::Active,
            origin: Origin::Auto,
            rule_id: Some(RuleId(rule)),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            history: Vec::new(),
        };
        a.record("2026-01-02T00:00:00Z", "r.csv", reason.into());
        a
    }

    /// `take_head_at` of the only account in `bytes`, and whether its strings were taken
    /// from the text without checking them one by one.
    fn read_at(bytes: &[u8]) -> (postcard::Result<(AccountHead<'_>, usize)>, bool) {
        let text = valid_prefix(bytes);
        let fast = head_in_text(bytes, text, 0).is_some();
        (take_head_at(bytes, text, 0), fast)
    }

    #[test]
    fn heads_read_in_the_text_are_the_heads_take_head_reads() {
        // A usual account: one-byte varints, its strings proved valid by the text.
        let a = account(3, "created by rule 3 \"Finance\"");
        let p = Packed::of(&a);
        let (read, fast) = read_at(p.bytes());
        assert!(fast);
        assert_eq!(read.unwrap(), (a.head(), p.bytes().len()));
        // A rule id of two bytes: checked string by string, read the same.
        let a = account(300, "created");
        let p = Packed::of(&a);
        let (read, fast) = read_at(p.bytes());
        assert!(!fast);
        assert_eq!(read.unwrap(), (a.head(), p.bytes().len()));
        // The last string ends with the first byte of a character that the byte after the
        // account completes: the text is valid, the account is not (refused as take_head does).
        let mut bytes = Packed::of(&account(3, "ab")).bytes().to_vec();
        *bytes.last_mut().unwrap() = 0xC3;
        assert!(take_head(&bytes).is_err());
        bytes.push(0xA9);
        assert!(std::str::from_utf8(&bytes).is_ok());
        let (read, fast) = read_at(&bytes);
        assert!(!fast);
        assert!(read.is_err());
        // A byte that is never UTF-8 inside the history: refused.
        let mut bytes = Packed::of(&account(3, "ab")).bytes().to_vec();
        let b = bytes.len() - 1;
        bytes[b] = 0xFF;
        let (read, fast) = read_at(&bytes);
        assert!(!fast && read.is_err());
    }
}
