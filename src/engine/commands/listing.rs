//! `admins list` of a million accounts, written out rather than built whole (issue 14).
//!
//! The accounts that pass the filters are read once, in place; each is re-encoded without
//! its history into one arena (postcard; the roles and time stamps, which a sync gives many
//! accounts alike, kept once and referred to), beside an index sorted by employee ID. The answer is then written in that order to a writer: the CLI's stdout, or
//! the control socket in chunks. Neither the accounts as owned structs nor the whole output
//! are ever held, and the bytes are those the whole answer printed (`--json`: serde_json's
//! pretty array of [`account_json`](crate::api::render::account_json) without `history`;
//! text: one [`account_line`](crate::api::render::account_line) per account, then
//! "N accounts").

use crate::api::render::{AccountRow, push_account_line};
use crate::api::{Output, Response};
use crate::core::accounts::{Origin, Status};
use crate::core::model::FastHash;
use crate::core::rules::{Rule, RuleId};
use crate::store::{AccountRef, Store, StoreResult};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Write};

/// Which accounts a listing keeps (`--status`, `--origin`, `--rule`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this origin.
    pub origin: Option<Origin>,
    /// Only accounts controlled by this rule.
    pub rule: Option<RuleId>,
}

impl Filter {
    fn keeps(&self, a: &AccountRef<'_>) -> bool {
        self.status.is_none_or(|s| a.status == s)
            && self.origin.is_none_or(|o| a.origin == o)
            && self.rule.is_none_or(|r| a.rule_id == Some(r))
    }
}

/// The accounts of one `admins list`, read and sorted, ready to be written out.
pub struct Listing {
    /// What the two halves of the scan read (see [`Store::scan_accounts_split`]).
    parts: [Part; 2],
    /// (the employee ID's first 8 bytes, big-endian and zero-padded; where its row is in its
    /// part's arena, times 2, plus the part), sorted by employee ID.
    order: Vec<(u64, usize)>,
    rules: Vec<Rule>,
}

/// The rows one thread of the scan read.
#[derive(Default)]
struct Part {
    /// Each kept account's [`Packed`] row, postcard-encoded, one after another.
    arena: Arena,
    /// The roles and time stamps of the rows, each once (a sync gives many accounts one).
    strings: Vec<Box<str>>,
    /// Where each string is in `strings`, while reading.
    interned: HashMap<Box<str>, u32, FastHash>,
    /// (prefix, where the row is in `arena`).
    order: Vec<(u64, usize)>,
}

impl Part {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&n) = self.interned.get(s) {
            return n;
        }
        let n = u32::try_from(self.strings.len()).expect("fewer than 2^32 strings");
        self.strings.push(s.into());
        self.interned.insert(s.into(), n);
        n
    }

    fn keep(&mut self, a: &AccountRef<'_>) {
        let row = Packed {
            employee_id: a.employee_id,
            email: a.email,
            role: self.intern(a.role),
            status: a.status,
            origin: a.origin,
            rule_id: a.rule_id,
            created_at: self.intern(a.created_at),
            updated_at: self.intern(a.updated_at),
        };
        let at = self.arena.push(&row);
        self.order.push((prefix(a.employee_id), at));
    }
}

/// How many bytes of rows an [`Arena`] keeps in one block.
const CHUNK: usize = 1 << 20;

/// Rows one after another, in blocks of [`CHUNK`] bytes: growing copies nothing already
/// there and never holds twice the room the rows take, as one doubling `Vec` did (~40 MB
/// more at 950k accounts, BENCHMARKS.md).
#[derive(Default)]
struct Arena {
    blocks: Vec<Vec<u8>>,
    /// The row being encoded.
    scratch: Vec<u8>,
}

impl Arena {
    /// Appends `row`, encoded; where it starts (its block, times 2^32, plus its offset).
    fn push(&mut self, row: &Packed<'_>) -> usize {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.scratch = postcard::to_extend(row, scratch).expect("rows always serialize");
        let len = self.scratch.len();
        if self
            .blocks
            .last()
            .is_none_or(|b| b.capacity() - b.len() < len)
        {
            self.blocks.push(Vec::with_capacity(CHUNK.max(len)));
        }
        let n = self.blocks.len() - 1;
        let block = &mut self.blocks[n];
        let at = (n << 32) | block.len();
        block.extend_from_slice(&self.scratch);
        at
    }

    /// The bytes from the row that starts at `at` to the end of its block.
    fn from(&self, at: usize) -> &[u8] {
        &self.blocks[at >> 32][at & 0xffff_ffff..]
    }
}

/// An account's row in an arena: its role and time stamps are indexes into its part's
/// [`Part::strings`].
#[derive(Serialize, serde::Deserialize)]
struct Packed<'a> {
    employee_id: &'a str,
    email: &'a str,
    role: u32,
    status: Status,
    origin: Origin,
    rule_id: Option<RuleId>,
    created_at: u32,
    updated_at: u32,
}

/// The JSON object of one account: [`crate::api::render::account_json`] without `history`,
/// its keys in the order serde_json's map (sorted) writes them.
#[derive(Serialize)]
struct JsonRow<'a> {
    created_at: &'a str,
    email: &'a str,
    employee_id: &'a str,
    origin: Origin,
    role: &'a str,
    rule: Option<&'a str>,
    rule_id: Option<RuleId>,
    status: Status,
    updated_at: &'a str,
}

/// Accounts rendered at a time by one thread (~600 KB of JSON).
const BLOCK: usize = 2048;
/// Threads that render blocks.
const RENDERERS: usize = 2;

/// serde_json's `PrettyFormatter` (two spaces) started `depth` levels in: an array
/// element's object as `to_string_pretty` of the whole array writes it.
struct Indented {
    depth: usize,
    has_value: bool,
}

impl Indented {
    fn at(depth: usize) -> Indented {
        Indented {
            depth,
            has_value: false,
        }
    }

    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.newline(w, b"\n")?;
        }
        w.write_all(bracket)
    }

    fn newline<W: ?Sized + Write>(&self, w: &mut W, start: &[u8]) -> io::Result<()> {
        w.write_all(start)?;
        (0..self.depth).try_for_each(|_| w.write_all(b"  "))
    }
}

impl serde_json::ser::Formatter for Indented {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.newline(w, if first { b"\n" } else { b",\n" })
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.newline(w, if first { b"\n" } else { b",\n" })
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// The employee ID's first 8 bytes as a big-endian number, zero-padded: ordered as the IDs
/// are (a tie says nothing).
fn prefix(id: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = id.len().min(8);
    bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

impl Listing {
    /// Reads the accounts `filter` keeps from `store`, without their history.
    pub fn read<S: Store>(store: &S, filter: Filter) -> StoreResult<Listing> {
        let rules = store.rules()?;
        let (mut lower, mut upper) = (Part::default(), Part::default());
        store.scan_accounts_split(
            &mut |a| {
                if filter.keeps(a) {
                    lower.keep(a)
                }
            },
            &mut |a| {
                if filter.keeps(a) {
                    upper.keep(a)
                }
            },
        )?;
        let mut order = Vec::with_capacity(lower.order.len() + upper.order.len());
        for (n, part) in [&mut lower, &mut upper].into_iter().enumerate() {
            order.extend(part.order.drain(..).map(|(p, at)| (p, at * 2 + n)));
            part.order.shrink_to_fit();
            part.interned = HashMap::default();
        }
        let listing = Listing {
            parts: [lower, upper],
            order: Vec::new(),
            rules,
        };
        // Employee IDs are unique: an unstable sort gives the one order.
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                listing
                    .row(a.1)
                    .employee_id
                    .cmp(listing.row(b.1).employee_id)
            })
        });
        Ok(Listing { order, ..listing })
    }

    /// How many accounts it lists.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The row at `at` of [`Listing::order`].
    fn row(&self, at: usize) -> AccountRow<'_> {
        let part = &self.parts[at % 2];
        let (row, _): (Packed<'_>, _) =
            postcard::take_from_bytes(part.arena.from(at / 2)).expect("rows read back as written");
        AccountRow {
            employee_id: row.employee_id,
            email: row.email,
            role: &part.strings[row.role as usize],
            status: row.status,
            origin: row.origin,
            rule_id: row.rule_id,
            created_at: &part.strings[row.created_at as usize],
            updated_at: &part.strings[row.updated_at as usize],
        }
    }

    fn rows(&self) -> impl ExactSizeIterator<Item = AccountRow<'_>> {
        self.order.iter().map(|&(_, at)| self.row(at))
    }

    fn rule_name(&self, id: Option<RuleId>) -> Option<&str> {
        let id = id?;
        self.rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.name.as_str())
    }

    /// Writes what the CLI prints on stdout: with `json`, the accounts as serde_json's pretty
    /// array and a newline, else their lines and "N accounts". Two threads render blocks of
    /// accounts by turns while this one writes them in order: a few blocks are held at once.
    pub fn write(&self, out: &mut dyn Write, json: bool) -> io::Result<()> {
        let blocks = self.order.chunks(BLOCK).collect::<Vec<_>>();
        if json {
            out.write_all(b"[")?;
        }
        std::thread::scope(|scope| {
            let mut turns = Vec::new();
            for first in 0..RENDERERS {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
                let mine = blocks.iter().enumerate().skip(first).step_by(RENDERERS);
                scope.spawn(move || {
                    for (n, block) in mine {
                        let mut buf = Vec::with_capacity(block.len() * 320);
                        self.render(&mut buf, n == 0, block, json);
                        if tx.send(buf).is_err() {
                            return; // the writer stopped
                        }
                    }
                });
                turns.push(rx);
            }
            for n in 0..blocks.len() {
                let block = turns[n % RENDERERS]
                    .recv()
                    .map_err(|_| io::Error::other("a renderer of the listing stopped"))?;
                out.write_all(&block)?;
            }
            Ok::<_, io::Error>(())
        })?;
        match json {
            true if self.is_empty() => out.write_all(b"]\n")?,
            true => out.write_all(b"\n]\n")?,
            false => writeln!(out, "{} accounts", self.len())?,
        }
        out.flush()
    }

    /// Appends the accounts of `block` (`first`: the listing's first block) to `buf`: in
    /// JSON, each array element as serde_json's pretty printer writes it inside the array.
    fn render(&self, buf: &mut Vec<u8>, first: bool, block: &[(u64, usize)], json: bool) {
        let mut line = String::new();
        for (i, &(_, at)) in block.iter().enumerate() {
            let a = self.row(at);
            if json {
                buf.extend_from_slice(if first && i == 0 { b"\n  " } else { b",\n  " });
                let mut ser = serde_json::Serializer::with_formatter(&mut *buf, Indented::at(1));
                self.json_row(a)
                    .serialize(&mut ser)
                    .expect("rows serialize to memory");
            } else {
                line.clear();
                push_account_line(&mut line, &a, &self.rules);
                line.push('\n');
                buf.extend_from_slice(line.as_bytes());
            }
        }
    }

    fn json_row<'a>(&'a self, a: AccountRow<'a>) -> JsonRow<'a> {
        JsonRow {
            created_at: a.created_at,
            email: a.email,
            employee_id: a.employee_id,
            origin: a.origin,
            role: a.role,
            rule: self.rule_name(a.rule_id),
            rule_id: a.rule_id,
            status: a.status,
            updated_at: a.updated_at,
        }
    }

    /// The whole answer (for the web section and a client that does not take a streamed
    /// one): `json` and `text` as `output` asks.
    pub fn response(&self, output: Output) -> Response {
        let json = match output.wants_json() {
            false => serde_json::Value::Null,
            true => self
                .rows()
                .map(|a| serde_json::to_value(self.json_row(a)).expect("rows serialize"))
                .collect(),
        };
        let mut text = Vec::new();
        if output.wants_text() {
            self.write(&mut text, false).expect("writing to memory");
        }
        Response::ok(
            json,
            String::from_utf8(text).expect("lines of UTF-8 fields"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::render::account_json;
    use crate::core::accounts::{Account, HistoryEntry};
    use crate::core::rules::Condition;
    use crate::store::{AuditNote, MemoryStore};
    use serde_json::Value;
    use std::fmt::Write as _;

    fn note() -> AuditNote {
        AuditNote {
            at: "2026-01-01T00:00:00Z".into(),
            user: "tester".into(),
            action: "test".into(),
            detail: String::new(),
        }
    }

    /// Rows across several blocks, one of them larger than a block, read back as written.
    #[test]
    fn an_arena_keeps_rows_across_blocks_and_one_larger_than_a_block() {
        let mut arena = Arena::default();
        let long = "x".repeat(CHUNK + 10);
        let email = |i: usize| match i {
            20_000 => long.as_str(),
            _ => "someone.with.an.address@example.com",
        };
        let ids: Vec<String> = (0..40_000).map(|i| format!("E{i:06}")).collect();
        let at: Vec<usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                arena.push(&Packed {
                    employee_id: id,
                    email: email(i),
                    role: 1,
                    status: Status::Active,
                    origin: Origin::Auto,
                    rule_id: None,
                    created_at: 2,
                    updated_at: 3,
                })
            })
            .collect();
        assert!(arena.blocks.len() >= 3, "{} blocks", arena.blocks.len());
        for (i, (id, &at)) in ids.iter().zip(&at).enumerate() {
            let (back, _): (Packed<'_>, _) = postcard::take_from_bytes(arena.from(at)).unwrap();
            assert_eq!((back.employee_id, back.email), (id.as_str(), email(i)));
        }
    }

    /// Accounts whose IDs share 8-byte prefixes, are shorter than 8 bytes, hold NUL and
    /// non-ASCII bytes; emails and roles that JSON escapes; rules present, deleted and none.
    fn store() -> MemoryStore {
        let store = MemoryStore::new();
        for (id, name) in [(1, "Eng \"managers\""), (2, "Finance\tlead é")] {
            let rule = Rule {
                id: RuleId(id),
                name: name.into(),
                role: "IT Admin".into(),
                conditions: vec![Condition::parse("department = IT").unwrap()],
                enabled: true,
                created_at: "2026-01-01T00:00:00Z".into(),
                created_by: "tester".into(),
            };
            store.put_rule(&rule, note()).unwrap();
        }
        let ids = [
            "E0000010",
            "E00000100",
            "E00000099",
            "E000000",
            "E0000010\0",
            "Z",
            "",
            "é-1",
            "E0000009",
            "a\u{1}b",
            "E00000100x",
            "M \"quoted\\\"",
        ];
        for (i, id) in ids.iter().enumerate() {
            let account = Account {
                employee_id: id.to_string(),
                email: format!("user{i}+\"x\"\\\u{7f}\u{2028}@ex.ample"),
                role: ["IT Admin", "Super Admin", "Read-only Admin ünï"][i % 3].into(),
                status: [Status::Active, Status::Inactive][i % 2],
                origin: [Origin::Auto, Origin::Auto, Origin::Manual][i % 3],
                rule_id: [Some(RuleId(1)), Some(RuleId(2)), None, Some(RuleId(7))][i % 4],
                created_at: format!("2026-01-0{}T00:00:00Z", 1 + i % 9),
                updated_at: "2026-02-01T00:00:00Z".into(),
                history: vec![HistoryEntry {
                    at: "2026-01-01T00:00:00Z".into(),
                    source: "day1.csv".into(),
                    status: Status::Active,
                    role: "IT Admin".into(),
                    reason: "created".into(),
                }],
            };
            store.put_account(&account, false, note()).unwrap();
        }
        store
    }

    /// What `admins list` printed before issue 14 (7cc99a8), built whole: the `--json`
    /// output and the text output.
    fn old_list(store: &MemoryStore, filter: Filter) -> (String, String) {
        let rules = store.rules().unwrap();
        let mut accounts: Vec<Account> = store
            .accounts()
            .unwrap()
            .into_iter()
            .filter(|a| filter.keeps(&AccountRef::of(a)))
            .map(|mut a| {
                a.history.clear();
                a
            })
            .collect();
        accounts.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
        let mut text = String::new();
        for a in &accounts {
            let rule = a
                .rule_id
                .map(|id| match rules.iter().find(|r| r.id == id) {
                    Some(r) => format!("rule {id} \"{}\"", r.name),
                    None => format!("rule {id} (deleted)"),
                })
                .unwrap_or_else(|| "-".into());
            // Control characters escaped (a NUL in an ID below), as the text shows them.
            let line = format!(
                "{:<12} {:<32} {:<16} {:<8} {:<6} {}",
                crate::core::model::escape_controls(&a.employee_id),
                crate::core::model::escape_controls(&a.email),
                a.role,
                a.status,
                a.origin,
                rule
            );
            let _ = writeln!(text, "{line}");
        }
        let _ = writeln!(text, "{} accounts", accounts.len());
        let json = Value::Array(
            accounts
                .iter()
                .map(|a| {
                    let mut v = account_json(a, &rules);
                    if let Value::Object(fields) = &mut v {
                        fields.remove("history");
                    }
                    v
                })
                .collect(),
        );
        (serde_json::to_string_pretty(&json).unwrap() + "\n", text)
    }

    fn filters() -> Vec<Filter> {
        let mut out = vec![Filter::default()];
        for status in [Some(Status::Active), Some(Status::Inactive)] {
            out.push(Filter {
                status,
                ..Filter::default()
            });
        }
        for origin in [Some(Origin::Auto), Some(Origin::Manual)] {
            out.push(Filter {
                origin,
                ..Filter::default()
            });
        }
        for rule in [1, 2, 7, 99] {
            out.push(Filter {
                rule: Some(RuleId(rule)),
                ..Filter::default()
            });
        }
        out.push(Filter {
            status: Some(Status::Active),
            origin: Some(Origin::Auto),
            rule: Some(RuleId(1)),
        });
        out
    }

    #[test]
    fn written_listing_is_byte_for_byte_the_old_output() {
        let store = store();
        for filter in filters() {
            let (json, text) = old_list(&store, filter);
            let listing = Listing::read(&store, filter).unwrap();
            let mut written = Vec::new();
            listing.write(&mut written, true).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), json, "{filter:?}");
            let mut written = Vec::new();
            listing.write(&mut written, false).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), text, "{filter:?}");
        }
        // The filters are not all empty or all full.
        let all = Listing::read(&store, Filter::default()).unwrap();
        assert_eq!(all.len(), 12);
        let none = Listing::read(&store, filters()[8]).unwrap();
        assert!(none.is_empty());
        assert_eq!(old_list(&store, filters()[8]).0, "[]\n");
    }

    #[test]
    fn whole_response_is_the_old_response() {
        let store = store();
        for filter in filters() {
            let (json, text) = old_list(&store, filter);
            let listing = Listing::read(&store, filter).unwrap();
            let both = listing.response(Output::Both);
            assert_eq!(both.exit, 0);
            assert_eq!(
                serde_json::to_string_pretty(&both.json).unwrap() + "\n",
                json,
                "{filter:?}"
            );
            assert_eq!(both.text, text, "{filter:?}");
            assert_eq!(listing.response(Output::Json).text, "");
            assert_eq!(listing.response(Output::Text).json, Value::Null);
        }
    }

    #[test]
    fn ids_sort_by_their_bytes_past_the_prefix() {
        let listing = Listing::read(&store(), Filter::default()).unwrap();
        let ids: Vec<&str> = listing.rows().map(|a| a.employee_id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(ids[0], "");
        assert!(
            prefix("E0000010") == prefix("E0000010\0") && prefix("E000000") < prefix("E0000009")
        );
    }
}
