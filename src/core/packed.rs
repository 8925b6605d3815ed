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

    /// The encoding.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The fields a sync decides on, read in place.
    pub fn head(&self) -> AccountHead<'_> {
        take_head(&self.0).expect("packed by `Packed::of`").0
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
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            employee_id: &'a str,
            email: &'a str,
            role: &'a str,
            status: Status,
            origin: Origin,
            rule_id: Option<RuleId>,
            _created_at: &'a str,
            _updated_at: &'a str,
            _history: Skipped,
        }
        let f = Fields::deserialize(d)?;
        Ok(Head(AccountHead {
            employee_id: f.employee_id,
            email: f.email,
            role: f.role,
            status: f.status,
            origin: f.origin,
            rule_id: f.rule_id,
        }))
    }
}

/// A history read entry by entry and not kept.
struct Skipped;

impl<'de> serde::Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A [`crate::core::accounts::HistoryEntry`] read in place.
        #[derive(serde::Deserialize)]
        struct Entry<'a> {
            _at: &'a str,
            _source: &'a str,
            _status: Status,
            _role: &'a str,
            _reason: &'a str,
        }
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Skipped;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a history")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Skipped, A::Error> {
                while seq.next_element::<Entry<'de>>()?.is_some() {}
                Ok(Skipped)
            }
        }
        d.deserialize_seq(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_unpacks_as_it_was_packed_and_its_head_reads_in_place() {
        let mut a = Account {
            employee_id: "E1".into(),
            email: "e1@x.io".into(),
            role: "IT Admin".into(),
            status: Status::Active,
            origin: Origin::Auto,
            rule_id: Some(RuleId(3)),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            history: Vec::new(),
        };
        a.record("2026-01-02T00:00:00Z", "r.csv", "created".into());
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
}
