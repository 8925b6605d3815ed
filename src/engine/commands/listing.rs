//! `admins list` of a million accounts, written out rather than built whole (issue 14).
//!
//! The accounts that pass the filters are read once, in place; each is re-encoded without
//! its history (postcard, [`AccountRow`]) into one arena, beside an index sorted by
//! employee ID. The answer is then written in that order to a writer: the CLI's stdout, or
//! the control socket in chunks. Neither the accounts as owned structs nor the whole output
//! are ever held, and the bytes are those the whole answer printed (`--json`: serde_json's
//! pretty array of [`account_json`](crate::api::render::account_json) without `history`;
//! text: one [`account_line`](crate::api::render::account_line) per account, then
//! "N accounts").

use crate::api::render::{AccountRow, push_account_line};
use crate::api::{Output, Response};
use crate::core::accounts::{Origin, Status};
use crate::core::rules::{Rule, RuleId};
use crate::store::{AccountRef, Store, StoreResult};
use serde::{Serialize, Serializer as _};
use std::io::{self, BufWriter, Write};

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
    /// Each kept account's [`AccountRow`], postcard-encoded, one after another.
    arena: Vec<u8>,
    /// (the employee ID's first 8 bytes, big-endian and zero-padded; where its row starts in
    /// `arena`), sorted by employee ID.
    order: Vec<(u64, usize)>,
    rules: Vec<Rule>,
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
        let mut arena = Vec::new();
        let mut order = Vec::new();
        store.scan_accounts(&mut |a| {
            if filter.keeps(a) {
                let row = AccountRow {
                    employee_id: a.employee_id,
                    email: a.email,
                    role: a.role,
                    status: a.status,
                    origin: a.origin,
                    rule_id: a.rule_id,
                    created_at: a.created_at,
                    updated_at: a.updated_at,
                };
                order.push((prefix(a.employee_id), arena.len()));
                arena = postcard::to_extend(&row, std::mem::take(&mut arena))
                    .expect("rows always serialize");
            }
        })?;
        let listing = Listing {
            arena,
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

    fn row(&self, at: usize) -> AccountRow<'_> {
        postcard::take_from_bytes(&self.arena[at..])
            .expect("rows read back as written")
            .0
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
    /// array and a newline, else their lines and "N accounts".
    pub fn write(&self, out: &mut dyn Write, json: bool) -> io::Result<()> {
        // serde_json and the lines write in small pieces: buffered here, monomorphic.
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        match json {
            true => self.write_json(&mut out)?,
            false => self.write_text(&mut out)?,
        }
        out.flush()
    }

    fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        let mut ser = serde_json::Serializer::pretty(&mut *out);
        ser.collect_seq(self.rows().map(|a| self.json_row(a)))
            .map_err(io::Error::from)?;
        out.write_all(b"\n")
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

    fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let mut line = String::new();
        for a in self.rows() {
            line.clear();
            push_account_line(&mut line, &a, &self.rules);
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        writeln!(out, "{} accounts", self.len())
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
            self.write_text(&mut text).expect("writing to memory");
        }
        Response::ok(
            json,
            String::from_utf8(text).expect("lines of UTF-8 fields"),
        )
    }
}
