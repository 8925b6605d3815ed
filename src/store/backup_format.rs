//! The portable backup format (`autoprov backup` / `restore`), shared by every store.
//!
//! JSON lines: a header, one record per line, and `{"end": N}` with the record count. The
//! records are laid out as schema 1 of the sled store kept them (one tree per kind of record,
//! one JSON record per account), so a backup of any schema restores into any later one.

use super::{StoreError, StoreResult};
use crate::core::accounts::Account;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identifies autoprov backup files.
pub const BACKUP_FORMAT: &str = "autoprov-backup";
/// The record layout of backups (schema 1's). The `schema` record of `meta` says so too.
pub const BACKUP_SCHEMA: &str = "autoprov-1";

/// Tree names of the record layout (the sled store keeps these trees, accounts aside).
pub mod trees {
    /// Counters, the last applied file and the schema marker.
    pub const META: &str = "meta";
    /// Rules, by id (8 bytes, big-endian).
    pub const RULES: &str = "rules";
    /// Accounts, one JSON record per employee ID.
    pub const ACCOUNTS: &str = "accounts";
    /// Ledger entries, by id (8 bytes, big-endian).
    pub const FILES: &str = "files";
    /// SHA-256 (hex text) -> the first file id with those bytes.
    pub const SHA_INDEX: &str = "sha_index";
    /// Audit entries, by sequence number (8 bytes, big-endian).
    pub const AUDIT: &str = "audit";
    /// Poll mode: inbox name -> where the file came from.
    pub const REMOTE: &str = "remote";
    /// Every tree a backup may hold, in the order they are written.
    pub const ALL: [&str; 7] = [META, RULES, ACCOUNTS, FILES, SHA_INDEX, AUDIT, REMOTE];
}

/// Keys of the `meta` tree (values: 8 bytes big-endian, except the schema marker).
pub mod meta {
    /// The last rule id allocated.
    pub const NEXT_RULE_ID: &[u8] = b"next_rule_id";
    /// The last file id allocated.
    pub const NEXT_FILE_ID: &[u8] = b"next_file_id";
    /// The last audit sequence number written.
    pub const NEXT_AUDIT_SEQ: &[u8] = b"next_audit_seq";
    /// The ledger id of the last applied roster.
    pub const LAST_APPLIED: &[u8] = b"last_applied";
    /// The schema marker.
    pub const SCHEMA: &[u8] = b"schema";
    /// The accounts token (`Store::accounts_token`); never written to a backup, so that a
    /// restored store has none until its first write.
    pub const ACCOUNTS_TOKEN: &[u8] = b"accounts_token";
}

/// The first line of a backup file.
#[derive(Debug, Serialize, Deserialize)]
struct BackupHeader {
    format: String,
    version: u32,
    schema: String,
    created_at: String,
}

/// One record of a backup file; the last line is `{"end": N}` with the record count.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum BackupLine {
    Record {
        tree: String,
        key: String,
        value: serde_json::Value,
    },
    End(EndLine),
}

/// The last line: the record count and the records' SHA-256. Nothing else: a key one
/// letter off (`sha25X`) would otherwise read as an older backup's end line and skip the
/// check.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: u64,
    /// SHA-256 (hex) of the record lines as written, each with its line feed; absent in
    /// backups written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes a backup: the header, then records, then the end line.
pub struct Writer<'w> {
    out: &'w mut dyn std::io::Write,
    records: u64,
    /// Of the record lines, for the end line.
    hasher: Sha256,
}

impl<'w> Writer<'w> {
    /// Writes the header.
    pub fn start(out: &'w mut dyn std::io::Write, created_at: &str) -> std::io::Result<Self> {
        let header = BackupHeader {
            format: BACKUP_FORMAT.into(),
            version: HASHED_HEADER,
            schema: BACKUP_SCHEMA.into(),
            created_at: created_at.into(),
        };
        let mut bytes = serde_json::to_vec(&header)?;
        bytes.push(b'\n');
        out.write_all(&bytes)?;
        // The header is in the SHA-256 too: its time, which says what a restore undoes,
        // had been changed without a word.
        let mut hasher = Sha256::new();
        hasher.update(&bytes);
        Ok(Writer {
            out,
            records: 0,
            hasher,
        })
    }

    fn line(&mut self, line: &BackupLine) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line)?;
        bytes.push(b'\n');
        if let BackupLine::Record { .. } = line {
            self.hasher.update(&bytes);
        }
        self.out.write_all(&bytes)
    }

    /// One record whose value is JSON.
    pub fn json(
        &mut self,
        tree: &str,
        key: &[u8],
        value: serde_json::Value,
    ) -> std::io::Result<()> {
        self.records += 1;
        self.line(&BackupLine::Record {
            tree: tree.into(),
            key: hex(key),
            value,
        })
    }

    /// One record whose value is bytes (counters, the SHA index), written as `hex:…`.
    pub fn bytes(&mut self, tree: &str, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let value = serde_json::Value::String(format!("hex:{}", hex(value)));
        self.json(tree, key, value)
    }

    /// One record as a store keeps it: JSON values as JSON, counters and the SHA index as
    /// bytes, and the schema marker as the backup's record layout.
    pub fn stored(&mut self, tree: &str, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        if tree == trees::META && key == meta::SCHEMA {
            return self.bytes(tree, key, BACKUP_SCHEMA.as_bytes());
        }
        match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(json) if tree != trees::META && tree != trees::SHA_INDEX => {
                self.json(tree, key, json)
            }
            _ => self.bytes(tree, key, value),
        }
    }

    /// One account, keyed by its employee ID.
    pub fn account(&mut self, account: &Account) -> std::io::Result<()> {
        let value = serde_json::to_value(account)?;
        self.json(trees::ACCOUNTS, account.employee_id.as_bytes(), value)
    }

    /// Writes the end line and flushes; returns the record count.
    pub fn finish(mut self) -> std::io::Result<u64> {
        let sha256 = hex(&std::mem::take(&mut self.hasher).finalize());
        let end = BackupLine::End(EndLine {
            end: self.records,
            sha256: Some(sha256),
        });
        self.line(&end)?;
        self.out.flush()?;
        Ok(self.records)
    }
}

/// A backup read whole and checked.
pub struct Backup {
    /// Every record but the accounts and the schema marker: (tree, key, value bytes).
    pub records: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// The accounts, sorted by employee ID, each ID once.
    pub accounts: Vec<Account>,
    /// How many records the file holds (the end line's count).
    pub count: u64,
    /// When the backup was written (its header's `created_at`).
    pub created_at: String,
    /// What its end line's SHA-256 checked (the older form has none: such a file restores
    /// unchecked, and the restore says so).
    pub checked: Checked,
}

/// What a backup's end line's SHA-256 vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Nothing: a version 1 end line without one (an older build's).
    No,
    /// The records, not the header: a version 1 backup, whose time (from which a restore
    /// tells what it undid) is not checked.
    Records,
    /// The header and the records (version 2).
    Whole,
}

fn bad(m: String) -> StoreError {
    StoreError::Corrupt(format!("backup: {m}"))
}

/// The longest line a backup holds: a record is one account or one entry of a small tree,
/// far below this. A file without line breaks (`restore /dev/zero`) had been read into
/// memory whole, until the system killed the process.
const MAX_LINE: u64 = 16 << 20;

/// The lines of `input` (without their `\n` or `\r\n`), each at most [`MAX_LINE`] bytes.
fn lines_of(mut input: impl std::io::BufRead) -> impl Iterator<Item = std::io::Result<String>> {
    use std::io::{BufRead, Read};
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        let read = (&mut input).take(MAX_LINE + 1).read_until(b'\n', &mut line);
        match read {
            Ok(0) => None,
            Ok(_) if line.len() as u64 > MAX_LINE => Some(Err(std::io::Error::other(format!(
                "a line longer than {} MiB: not a backup",
                MAX_LINE >> 20
            )))),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                Some(String::from_utf8(line).map_err(std::io::Error::other))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

/// The version of backups whose SHA-256 covers the header line as well as the records
/// (version 1: the records only, still read).
const HASHED_HEADER: u32 = 2;

/// The header, once it is one this build reads.
fn read_header(line: Option<std::io::Result<String>>) -> StoreResult<(BackupHeader, String)> {
    let line = match line {
        Some(Ok(l)) => l,
        // Said as it is (a folder had read as "empty file").
        Some(Err(e)) => return Err(bad(format!("reading it: {e}"))),
        None => return Err(bad("empty file".into())),
    };
    let header: BackupHeader =
        serde_json::from_str(&line).map_err(|e| bad(format!("header: {e}")))?;
    check_header(&header)?;
    Ok((header, line))
}

/// Whether `header` is one this build reads (its format, version and record layout).
fn check_header(header: &BackupHeader) -> StoreResult<()> {
    if header.format != BACKUP_FORMAT || !(1..=HASHED_HEADER).contains(&header.version) {
        return Err(bad(format!(
            "not an autoprov backup version 1 or {HASHED_HEADER} ({} {})",
            header.format, header.version
        )));
    }
    if header.schema != BACKUP_SCHEMA {
        return Err(bad(format!(
            "record layout {} is not {BACKUP_SCHEMA}",
            header.schema
        )));
    }
    Ok(())
}

/// The SHA-256 of a backup's record lines as written (each with its line feed; not the
/// header or the end line, which hold its time), when the backup is whole and intact: its
/// end line's count and SHA-256 are those of what it holds. `None` otherwise: a backup
/// damaged since (a byte of its header or end line) had been taken for the store's current
/// copy, and no new one was written while the one kept could not be restored.
pub fn records_digest(mut input: impl std::io::BufRead) -> Option<[u8; 32]> {
    let mut line = Vec::new();
    // A line at most [`MAX_LINE`] long, as restore reads them: a file under an automatic
    // name without line breaks had been read whole into memory at every rotation.
    let mut next = |line: &mut Vec<u8>| {
        line.clear();
        let read = std::io::BufRead::read_until(
            &mut std::io::Read::take(&mut input, MAX_LINE + 1),
            b'\n',
            line,
        )
        .ok();
        read.filter(|n| *n > 0 && line.len() as u64 <= MAX_LINE)
    };
    next(&mut line)?;
    let header: BackupHeader = serde_json::from_slice(line.strip_suffix(b"\n")?).ok()?;
    // A header restore would refuse (version 1's is outside its SHA-256).
    check_header(&header).ok()?;
    let mut all = Sha256::new();
    if header.version >= HASHED_HEADER {
        all.update(&line);
    }
    let (mut records, mut count, mut last) = (Sha256::new(), 0u64, Vec::new());
    while next(&mut line).is_some() {
        if !last.is_empty() {
            records.update(&last);
            all.update(&last);
            count += 1;
        }
        std::mem::swap(&mut last, &mut line);
    }
    let end: EndLine = serde_json::from_slice(last.strip_suffix(b"\n")?).ok()?;
    let intact = end.end == count && end.sha256 == Some(hex(&all.finalize()));
    intact.then(|| records.finalize().into())
}

/// The end line `end` (its count and SHA-256) against the `count` records read and the
/// SHA-256 `hasher` took of them (and of the header, from version 2): what it checked (a
/// version 1 end line may have no SHA-256), or why the file is refused.
fn check_end(
    end: Option<(u64, Option<String>)>,
    count: u64,
    version: u32,
    hasher: Sha256,
) -> StoreResult<Checked> {
    match end {
        Some((n, _)) if n != count => {
            Err(bad(format!("{count} records where the end line says {n}")))
        }
        // A changed byte that still reads as a record (a role "HR Rdmin", an email one
        // letter off) had restored without a word.
        Some((_, Some(sha256))) if sha256 != hex(&hasher.finalize()) => Err(bad(
            "its header and records are not those it was written with (their SHA-256 \
             differs from the end line's): the file was changed or damaged"
                .into(),
        )),
        // A version 2 end line always has one: without it, it was taken out.
        Some((_, None)) if version >= HASHED_HEADER => Err(bad(
            "its end line has no SHA-256, which every version 2 backup has: the file was \
             changed or damaged"
                .into(),
        )),
        Some((_, None)) => Ok(Checked::No),
        Some((_, Some(_))) if version >= HASHED_HEADER => Ok(Checked::Whole),
        Some((_, Some(_))) => Ok(Checked::Records),
        None => Err(bad("truncated: no end line".into())),
    }
}

fn read_account(key: &[u8], value: &[u8]) -> StoreResult<Account> {
    let account: Account = serde_json::from_slice(value)
        .map_err(|e| bad(format!("account {}: {e}", String::from_utf8_lossy(key))))?;
    if account.employee_id.as_bytes() != key {
        return Err(bad(format!(
            "account {:?} filed under key {:?}",
            account.employee_id,
            String::from_utf8_lossy(key)
        )));
    }
    Ok(account)
}

/// Reads a whole backup, refusing anything but a complete, well-formed one.
pub fn read(input: impl std::io::BufRead) -> StoreResult<Backup> {
    let mut lines = lines_of(input);
    let (header, header_line) = read_header(lines.next())?;
    let mut hasher = Sha256::new();
    if header.version >= HASHED_HEADER {
        hasher.update(header_line.as_bytes());
        hasher.update(b"\n");
    }
    let mut backup = Backup {
        records: Vec::new(),
        accounts: Vec::new(),
        count: 0,
        created_at: header.created_at,
        checked: Checked::No,
    };
    let mut end = None;
    for line in lines.by_ref() {
        let line = line.map_err(|e| bad(e.to_string()))?;
        let (tree, key, value) =
            match serde_json::from_str::<BackupLine>(&line).map_err(|e| match e.is_eof() {
                // An empty line among the records is no cut (it had read as "truncated").
                true if line.trim().is_empty() => bad(format!(
                    "line {} is empty, among the records: the file was changed or damaged",
                    backup.count + 2
                )),
                // Cut within a line: its own column said nothing of where in the file.
                true => bad(format!(
                    "truncated: line {} ends within its record",
                    backup.count + 2
                )),
                false => bad(format!("line {}: {e}", backup.count + 2)),
            })? {
                BackupLine::End(EndLine { end: n, sha256 }) => {
                    end = Some((n, sha256));
                    break;
                }
                BackupLine::Record { tree, key, value } => (tree, key, value),
            };
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
        backup.count += 1;
        if !trees::ALL.contains(&tree.as_str()) {
            return Err(bad(format!("unknown tree {tree:?}")));
        }
        let key = unhex(&key).ok_or_else(|| bad(format!("bad key in {tree}")))?;
        let value = match &value {
            serde_json::Value::String(s) if s.starts_with("hex:") => {
                unhex(&s[4..]).ok_or_else(|| bad(format!("bad value in {tree}")))?
            }
            v => serde_json::to_vec(v).expect("json values serialize"),
        };
        if tree == trees::ACCOUNTS {
            backup.accounts.push(read_account(&key, &value)?);
        } else if !(tree == trees::META && key == meta::SCHEMA) {
            backup.records.push((tree, key, value));
        }
    }
    backup.checked = check_end(end, backup.count, header.version, hasher)?;
    // Nothing after the end line: bytes there (another file appended, a second backup)
    // had been ignored without a word.
    for line in lines {
        let line = line.map_err(|e| bad(e.to_string()))?;
        if !line.trim().is_empty() {
            return Err(bad(
                "there is more after its end line: the file was changed or damaged, or \
                 another was appended to it"
                    .into(),
            ));
        }
    }
    backup
        .accounts
        .sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
    if let Some(w) = backup
        .accounts
        .windows(2)
        .find(|w| w[0].employee_id == w[1].employee_id)
    {
        return Err(bad(format!("account {:?} twice", w[0].employee_id)));
    }
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that counts the bytes read through it.
    struct Counted<R>(R, u64);

    impl<R: std::io::Read> std::io::Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n as u64;
            Ok(n)
        }
    }

    /// A file without line breaks is refused once a line passes [`MAX_LINE`] (it had been
    /// read whole: `restore /dev/zero` ran the system out of memory); a read error is said
    /// as one, not as an empty file.
    #[test]
    fn a_line_past_the_longest_a_backup_holds_is_refused() {
        use std::io::Read;
        let endless = std::io::BufReader::new(std::io::repeat(b'x').take(MAX_LINE + 2));
        let err = read(endless).err().unwrap().to_string();
        assert!(err.contains("a line longer than 16 MiB"), "{err}");
        // The intact check reads no more than a line of it either (it read a file so
        // named whole at every rotation): no digest, after one line's worth.
        let endless = std::io::repeat(b'x').take(u64::MAX);
        let mut counted = std::io::BufReader::new(Counted(endless, 0));
        assert_eq!(records_digest(&mut counted), None);
        assert!(
            counted.get_ref().1 <= MAX_LINE + (1 << 16),
            "{}",
            counted.get_ref().1
        );
        let dir = tempfile::tempdir().unwrap();
        let folder = std::io::BufReader::new(std::fs::File::open(dir.path()).unwrap());
        let err = read(folder).err().unwrap().to_string();
        assert!(
            err.contains("reading it") && !err.contains("empty"),
            "{err}"
        );
    }

    /// A backup with one byte of a record changed is refused; one written before the end
    /// line had its SHA-256 still reads.
    #[test]
    fn a_changed_record_is_refused_and_an_older_end_line_still_reads() {
        let mut bytes = Vec::new();
        let mut w = Writer::start(&mut bytes, "2026-01-01T00:00:00Z").unwrap();
        w.json(trees::RULES, b"1", serde_json::json!({"role": "HR Admin"}))
            .unwrap();
        w.json(trees::RULES, b"2", serde_json::json!({"role": "IT Admin"}))
            .unwrap();
        assert_eq!(w.finish().unwrap(), 2);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(read(text.as_bytes()).unwrap().count, 2);
        let changed = text.replace("HR Admin", "HR Rdmin");
        let err = read(changed.as_bytes()).err().unwrap().to_string();
        assert!(err.contains("SHA-256"), "{err}");
        // Its header's time too (what a restore says it undoes is read from it), and its
        // version set back to one whose SHA-256 covers the records only.
        for header in [
            ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
            ("\"version\":2", "\"version\":1"),
        ] {
            let err = read(text.replacen(header.0, header.1, 1).as_bytes())
                .err()
                .unwrap();
            assert!(err.to_string().contains("SHA-256"), "{header:?}: {err}");
        }
        // A version 1 backup, its SHA-256 of the records alone, still reads.
        let records: String = text
            .lines()
            .skip(1)
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect();
        let v1_end = format!(
            "{{\"end\":2,\"sha256\":\"{}\"}}",
            hex(&Sha256::digest(records.as_bytes()))
        );
        let v1 = format!(
            "{}\n{records}{v1_end}\n",
            text.lines()
                .next()
                .unwrap()
                .replace("\"version\":2", "\"version\":1")
        );
        assert_eq!(read(v1.as_bytes()).unwrap().count, 2, "{v1}");
        // What each vouched for: the records of version 1, its header's time not.
        assert_eq!(read(v1.as_bytes()).unwrap().checked, Checked::Records);
        assert_eq!(read(text.as_bytes()).unwrap().checked, Checked::Whole);
        let end = text.lines().last().unwrap();
        let older = text
            .replace(end, r#"{"end":2}"#)
            .replace("HR Admin", "HR Rdmin");
        // Only as version 1 wrote it: a version 2 end line without one was taken out.
        let err = read(older.as_bytes()).err().unwrap().to_string();
        assert!(err.contains("no SHA-256, which every version 2"), "{err}");
        let older = older.replacen("\"version\":2", "\"version\":1", 1);
        assert_eq!(read(older.as_bytes()).unwrap().count, 2);
        assert_eq!(read(older.as_bytes()).unwrap().checked, Checked::No);
        // Its key changed, the SHA-256 is not skipped: the line is no end line.
        let renamed = text
            .replace("\"sha256\"", "\"sha25X\"")
            .replace("HR Admin", "HR Rdmin");
        assert!(read(renamed.as_bytes()).is_err());
        // Anything after the end line is refused (a second backup appended had been
        // ignored); a blank line is not anything.
        let appended = format!("{text}{text}");
        let err = read(appended.as_bytes()).err().unwrap().to_string();
        assert!(err.contains("more after its end line"), "{err}");
        assert!(err.contains("changed or damaged"), "{err}");
        // An empty line among the records: no cut.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "");
        let err = read((lines.join("\n") + "\n").as_bytes()).err().unwrap();
        assert!(
            err.to_string()
                .contains("line 3 is empty, among the records"),
            "{err}"
        );
        assert_eq!(read(format!("{text}\n").as_bytes()).unwrap().count, 2);
        // Cut within a record: said so, with the file's line (it had been a column of
        // serde's within that one line).
        let cut = &text[..text.find("IT Admin").unwrap()];
        let err = read(cut.as_bytes()).err().unwrap().to_string();
        assert!(
            err.contains("truncated: line 3 ends within its record"),
            "{err}"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_odd_or_non_hex_text() {
        assert_eq!(unhex(&hex(b"\x00\xffab")).unwrap(), b"\x00\xffab");
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
