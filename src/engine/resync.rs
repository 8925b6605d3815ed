//! The pipeline's side of re-syncing a roster from its changes ([`crate::core::resync`]):
//! the record of the last applied roster kept beside the store, and the accounts a plan of
//! the changes sees.
//!
//! The record (`autoprov.last-roster` in the store's folder) is derived data: it names the
//! store's accounts token, the ledger id of the roster it describes and the settings that
//! read it, and is used only while all three are still current and its checksum holds;
//! otherwise the next file is read in full, which writes a new one. The roster's own file
//! (in processed/) is read only while its size and time of last write are those it had when
//! it was read (written again in place, or another file put there, it is not the roster the
//! record describes; moved, or copied with its times, as a restore does, it still is). The
//! record is written aside before the commit that names its token and renamed into place
//! after it, so a crash in between leaves an old record whose token the store no longer has.

use crate::core::accounts::{Account, AccountGroup, AccountHead, GROUPS, group_of};
use crate::core::model::Roster;
use crate::core::reconcile::Limits;
use crate::core::report::Report;
use crate::core::resync::{self, LastRows, base_after, digest};
use crate::core::roster::Checked;
use crate::core::rules::Rule;
use crate::engine::roster_file::LastWrite;
use crate::store::AccountsToken;
use rustc_hash::FxHashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How a roster is planned, besides the roster: the rules (all, and the enabled ones),
/// when, by what, with which limits, and whether as a dry run.
#[derive(Clone)]
pub(super) struct Planning<'a> {
    pub all_rules: Vec<Rule>,
    pub enabled: &'a [Rule],
    pub now: &'a str,
    /// What the accounts' history names as the cause ([`super::pipeline::history_source`]).
    pub source: &'a str,
    pub limits: Option<Limits>,
    pub dry_run: bool,
    /// A roster received now, not the last applied one that `sync` evaluates again (whose
    /// encoding was held, and approved, when it arrived).
    pub received: bool,
}

/// What a roster being planned will leave for the next, if it is applied and its plan finds
/// nothing to warn about (see [`LastRows`] for the roster's own warnings).
pub(super) enum Keep {
    /// Nothing: a dry run, a rejected or transcoded file.
    Nothing,
    /// A file read in full: its header and length (the rest is the roster's).
    Read {
        fingerprint: u64,
        header: Vec<u8>,
        end: u32,
    },
    /// A file re-synced from its changes: its rows.
    Changed {
        fingerprint: u64,
        rows: Box<LastRows>,
    },
}

impl Keep {
    /// What `checked`, read from `bytes` with the settings of `fingerprint`, keeps.
    pub(super) fn read(checked: &Checked, bytes: &[u8], fingerprint: u64) -> Keep {
        let (Some(offset), false) = (checked.text_offset(), checked.has_warnings()) else {
            return Keep::Nothing;
        };
        let starts = checked.starts();
        let (Some(&first), Ok(end)) = (starts.first(), u32::try_from(bytes.len())) else {
            return Keep::Nothing;
        };
        Keep::Read {
            fingerprint,
            header: bytes[..offset + first as usize].to_vec(),
            end,
        }
    }

    /// The record to keep once `roster` (the file's, or its changed rows') is applied with
    /// `report`, the store's manual accounts being `manual`.
    pub(super) fn kept(
        self,
        roster: &mut Roster,
        manual: Vec<String>,
        report: &Report,
    ) -> Option<Kept> {
        let (fingerprint, mut rows) = match self {
            Keep::Nothing => return None,
            Keep::Read {
                fingerprint,
                header,
                end,
            } => (fingerprint, LastRows::of(roster, header, end, Vec::new())?),
            Keep::Changed { fingerprint, rows } => (fingerprint, *rows),
        };
        rows.manual = manual;
        rows.base = base_after(&report.counts);
        Some(Kept {
            fingerprint,
            token: AccountsToken::default(),
            file_id: 0,
            file: LastWrite::default(),
            rows,
        })
    }
}

/// What an evaluation does with the last applied roster's record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Record {
    /// Not used: the roster is read in full (`sync`, which an operator runs to have the
    /// last roster evaluated again, whatever was derived from it before; a dry run).
    Ignored,
    /// Used when it is current (a held file's decision).
    Used,
    /// Used when it is current, and the roster's own kept for the next file (an upload).
    UsedAndKept,
}

#[cfg(test)]
thread_local! {
    /// How many files this thread re-synced from their changes (tests).
    pub(super) static RESYNCED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The record's name in the store's folder.
const FILE: &str = "autoprov.last-roster";

/// Its first bytes; the number changes with its layout.
const MAGIC: &[u8] = b"autoprov last roster 3\n";

/// The last applied roster's rows, and what they are valid with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Kept {
    /// The settings that read the roster ([`fingerprint`]).
    pub fingerprint: u64,
    /// The accounts token the roster's commit wrote.
    pub token: AccountsToken,
    /// The roster's ledger id.
    pub file_id: u64,
    /// Its file's size and time of last write when it was read (its rows are read again
    /// from it, in processed/).
    pub file: LastWrite,
    /// Its rows.
    pub rows: LastRows,
}

/// What a record is valid with: its first fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub fingerprint: u64,
    pub token: AccountsToken,
    pub file_id: u64,
}

impl Kept {
    pub(super) fn stamp(&self) -> Stamp {
        Stamp {
            fingerprint: self.fingerprint,
            token: self.token,
            file_id: self.file_id,
        }
    }
}

/// The stamp at the start of the record at `path` (the rest is checked when it is read).
pub(super) fn read_stamp(path: &Path) -> Option<Stamp> {
    use std::io::Read;
    let mut head = [0u8; MAGIC.len() + 32];
    fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    let mut r = Reader(head.strip_prefix(MAGIC)?);
    Some(Stamp {
        fingerprint: r.u64()?,
        token: AccountsToken::try_from(r.take(16)?).ok()?,
        file_id: r.u64()?,
    })
}

/// A digest of the settings a roster is read with (the columns, the statuses that mean
/// an employee left, the fields the rules read, the limits) and of this build (its version
/// and `AUTOPROV_BUILD_ID`, a digest of its sources, see build.rs): a record written by
/// another build is not used, since that build may have read rows or matched rules otherwise.
pub(super) fn fingerprint(options: &impl std::fmt::Debug) -> u64 {
    fingerprint_of(BUILD, options)
}

/// This build: its version and the digest of its sources.
const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " ", env!("AUTOPROV_BUILD_ID"));

fn fingerprint_of(build: &str, options: &impl std::fmt::Debug) -> u64 {
    digest(format!("{build} {options:?}").as_bytes())
}

/// The record's path in the store folder `store`.
pub(super) fn path(store: &Path) -> PathBuf {
    store.join(FILE)
}

/// Where the record is written before its commit.
pub(super) fn staged_path(store: &Path) -> PathBuf {
    store.join(format!(".{FILE}.tmp"))
}

/// The record's bytes are checksummed in pieces of this many, so that it is written
/// without a copy of it in memory.
pub(super) const PIECE: usize = 1 << 16;

/// A writer that sums what goes through it, [`PIECE`] bytes at a time.
struct Summed<W: Write> {
    out: W,
    piece: Vec<u8>,
    sum: u64,
}

impl<W: Write> Summed<W> {
    fn new(out: W) -> Summed<W> {
        Summed {
            out,
            piece: Vec::with_capacity(PIECE),
            sum: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut bytes = bytes;
        while !bytes.is_empty() {
            let take = bytes.len().min(PIECE - self.piece.len());
            self.piece.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.piece.len() == PIECE {
                self.flush_piece()?;
            }
        }
        Ok(())
    }

    fn flush_piece(&mut self) -> std::io::Result<()> {
        self.sum = add_piece(self.sum, &self.piece);
        self.out.write_all(&self.piece)?;
        self.piece.clear();
        Ok(())
    }

    /// Writes the last piece and the sum.
    fn finish(mut self) -> std::io::Result<W> {
        if !self.piece.is_empty() {
            self.flush_piece()?;
        }
        self.out.write_all(&self.sum.to_le_bytes())?;
        Ok(self.out)
    }
}

/// The sum of the pieces so far, and then `piece`.
fn add_piece(sum: u64, piece: &[u8]) -> u64 {
    sum.rotate_left(7) ^ digest(piece)
}

/// Writes the record: its header, the rows' columns one after the other (little-endian),
/// and a checksum of all before it.
pub(super) fn encode(kept: &Kept, out: impl Write) -> std::io::Result<()> {
    let r = &kept.rows;
    let mut w = Summed::new(out);
    w.put(MAGIC)?;
    w.put(&kept.fingerprint.to_le_bytes())?;
    w.put(&kept.token)?;
    let f = &kept.file;
    for v in [
        kept.file_id,
        f.size,
        f.mtime.0 as u64,
        f.mtime.1 as u64,
        r.base,
        r.starts.len() as u64,
        u64::from(r.end),
    ] {
        w.put(&v.to_le_bytes())?;
    }
    put_counted(&mut w, &r.header)?;
    w.put(&(r.manual.len() as u64).to_le_bytes())?;
    for id in &r.manual {
        put_counted(&mut w, id.as_bytes())?;
    }
    for column in [&r.starts, &r.lines] {
        put_column(&mut w, column, u32::to_le_bytes)?;
    }
    for column in [&r.ids, &r.emails] {
        put_column(&mut w, column, u64::to_le_bytes)?;
    }
    put_column(&mut w, &r.managers, u32::to_le_bytes)?;
    w.put(&r.flags)?;
    w.put(&(r.not_in_file.len() as u64).to_le_bytes())?;
    for (row, manager) in &r.not_in_file {
        w.put(&row.to_le_bytes())?;
        w.put(&manager.to_le_bytes())?;
    }
    w.finish()?.flush()
}

/// A column's values, little-endian, a piece at a time.
fn put_column<W: Write, T: Copy, const N: usize>(
    w: &mut Summed<W>,
    column: &[T],
    bytes: fn(T) -> [u8; N],
) -> std::io::Result<()> {
    let mut piece = Vec::with_capacity(PIECE);
    for chunk in column.chunks(PIECE / N) {
        piece.clear();
        piece.extend(chunk.iter().flat_map(|&v| bytes(v)));
        w.put(&piece)?;
    }
    Ok(())
}

fn put_counted<W: Write>(w: &mut Summed<W>, bytes: &[u8]) -> std::io::Result<()> {
    w.put(&(bytes.len() as u64).to_le_bytes())?;
    w.put(bytes)
}

/// The record in `bytes`, or `None` when it is not one whole (another layout, cut short,
/// damaged) or its rows do not hold together ([`LastRows::is_consistent`]).
pub(super) fn decode(bytes: &[u8]) -> Option<Kept> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    let summed = body.chunks(PIECE).fold(0, add_piece);
    if summed.to_le_bytes() != sum || !body.starts_with(MAGIC) {
        return None;
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let fingerprint = r.u64()?;
    let token = AccountsToken::try_from(r.take(16)?).ok()?;
    let file_id = r.u64()?;
    let file = LastWrite {
        size: r.u64()?,
        mtime: (r.u64()? as i64, r.u64()? as i64),
    };
    let (base, n, end) = (r.u64()?, r.u64()? as usize, r.u64()?);
    let header = r.take_counted()?.to_vec();
    let manual = (0..r.u64()?)
        .map(|_| String::from_utf8(r.take_counted()?.to_vec()).ok())
        .collect::<Option<Vec<_>>>()?;
    let starts = r.column(n, 4, |b| u32::from_le_bytes(b.try_into().unwrap()))?;
    let lines = r.column(n, 4, |b| u32::from_le_bytes(b.try_into().unwrap()))?;
    let mut wide = || r.column(n, 8, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let (ids, emails) = (wide()?, wide()?);
    let managers = r.column(n, 4, |b| u32::from_le_bytes(b.try_into().unwrap()))?;
    let flags = r.column(n, 1, |b| b[0])?;
    let count = usize::try_from(r.u64()?).ok()?;
    let not_in_file = r.column(count, 12, |b| {
        let (row, manager) = b.split_at(4);
        (
            u32::from_le_bytes(row.try_into().unwrap()),
            u64::from_le_bytes(manager.try_into().unwrap()),
        )
    })?;
    if !r.0.is_empty() {
        return None;
    }
    let kept = Kept {
        fingerprint,
        token,
        file_id,
        file,
        rows: LastRows {
            header,
            starts,
            lines,
            end: u32::try_from(end).ok()?,
            ids,
            emails,
            managers,
            flags,
            not_in_file,
            manual,
            base,
        },
    };
    kept.rows.is_consistent().then_some(kept)
}

/// Reads a record's fields in turn.
struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn take_counted(&mut self) -> Option<&'b [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }

    fn column<T>(&mut self, n: usize, width: usize, of: impl Fn(&[u8]) -> T) -> Option<Vec<T>> {
        Some(
            self.take(n.checked_mul(width)?)?
                .chunks_exact(width)
                .map(of)
                .collect(),
        )
    }
}

/// The last roster's file read a window at a time as the records are compared, mostly in
/// order: a copy of a few MB at a time out of the page cache, not the whole file in fresh
/// memory. The window after the one in use is read on a thread of its own meanwhile: the
/// records are followed on one core, and a million rows' 116 MB copied on that core took
/// ~20 ms of it (BENCHMARKS.md, session 27).
pub(super) struct Window {
    file: Arc<fs::File>,
    len: u64,
    buf: Vec<u8>,
    /// Where the window starts in the file, and how many of `buf`'s bytes it holds.
    at: u64,
    held: usize,
    /// The window that follows this one, being read.
    ahead: Option<Ahead>,
    /// A buffer for the next window read ahead.
    spare_buf: Vec<u8>,
}

/// A window read ahead: where it starts, and the thread reading it (its buffer and how
/// many bytes of it were read).
struct Ahead {
    at: u64,
    reading: JoinHandle<std::io::Result<(Vec<u8>, usize)>>,
}

impl Window {
    /// A window's size.
    const SIZE: usize = 4 << 20;

    /// The file at `path`, which must be `len` bytes long and last written as `written`
    /// says: another file there, or this one written again (even to the same length), is
    /// not the roster the record describes.
    pub(super) fn open(path: &Path, len: u32, written: &LastWrite) -> std::io::Result<Window> {
        let file = fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.len() != u64::from(len) {
            return Err(std::io::Error::other("not the length recorded"));
        }
        if LastWrite::of(&meta) != *written {
            return Err(std::io::Error::other("written since it was recorded"));
        }
        Ok(Window {
            file: Arc::new(file),
            len: u64::from(len),
            buf: vec![0; Self::SIZE],
            at: 0,
            held: 0,
            ahead: None,
            spare_buf: Vec::new(),
        })
    }

    /// The bytes at `start..end`: in the window, in a new window there when past this one
    /// (windows only move forward, so the file is read once at most however the records
    /// jump ahead), or else (before the window) read on their own into `spare`.
    fn bytes<'w>(&'w mut self, start: u32, end: u32, spare: &'w mut Vec<u8>) -> Option<&'w [u8]> {
        use std::os::unix::fs::FileExt;
        let (start, end) = (u64::from(start), u64::from(end));
        if end > self.len || start > end {
            return None;
        }
        let window_end = self.at + self.held as u64;
        let inside = start >= self.at && end <= window_end;
        let past = start >= window_end;
        if !inside && past && end - start <= Self::SIZE as u64 {
            self.move_to(start, end).ok()?;
        } else if !inside {
            spare.resize((end - start) as usize, 0);
            self.file.read_exact_at(spare, start).ok()?;
            return Some(spare);
        }
        Some(&self.buf[(start - self.at) as usize..(end - self.at) as usize])
    }

    /// Makes the window one that holds `start..end` (past this one, at most a window
    /// long): the window read ahead when it does, else one read at `start`; then starts
    /// reading the window after it.
    fn move_to(&mut self, start: u64, end: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        // A window read ahead that failed is read again, directly, if it is needed.
        let ahead = self.ahead.take().and_then(|Ahead { at, reading }| {
            let read = reading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            read.ok().map(|read| (at, read))
        });
        let old = match ahead {
            Some((at, (buf, held))) if start >= at && end <= at + held as u64 => {
                (self.at, self.held) = (at, held);
                std::mem::replace(&mut self.buf, buf)
            }
            other => {
                // Emptied first: a read that fails part-way leaves no window, not the
                // old one's range over new bytes.
                self.held = 0;
                let held = (self.len - start).min(Self::SIZE as u64) as usize;
                self.file.read_exact_at(&mut self.buf[..held], start)?;
                (self.at, self.held) = (start, held);
                other.map(|(_, (buf, _))| buf).unwrap_or_default()
            }
        };
        self.spare_buf = old;
        self.read_ahead();
        Ok(())
    }

    /// Starts reading the window after this one, if the file goes on.
    fn read_ahead(&mut self) {
        use std::os::unix::fs::FileExt;
        let at = self.at + self.held as u64;
        if at >= self.len {
            return;
        }
        let held = (self.len - at).min(Self::SIZE as u64) as usize;
        let mut buf = std::mem::take(&mut self.spare_buf);
        let file = Arc::clone(&self.file);
        let thread = std::thread::Builder::new().name("autoprov-window".into());
        // Without a thread, the next window is read when it is needed, as it was.
        self.ahead = thread
            .spawn(move || {
                buf.resize(Self::SIZE, 0);
                file.read_exact_at(&mut buf[..held], at)
                    .map(|()| (buf, held))
            })
            .ok()
            .map(|reading| Ahead { at, reading });
    }
}

impl resync::OldFile for Window {
    fn holds(&mut self, start: u32, end: u32, bytes: &[u8]) -> bool {
        let mut spare = Vec::new();
        self.bytes(start, end, &mut spare) == Some(bytes)
    }

    fn read_into(&mut self, start: u32, end: u32, out: &mut Vec<u8>) -> bool {
        let mut spare = Vec::new();
        match self.bytes(start, end, &mut spare) {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// The accounts of one group that a plan of changes sees: those of `visible` IDs.
pub(super) struct Visible<'g> {
    group: &'g dyn AccountGroup,
    heads: Vec<AccountHead<'g>>,
    at: Vec<usize>,
}

impl<'g> Visible<'g> {
    pub(super) fn of(group: &'g dyn AccountGroup, visible: &FxHashSet<String>) -> Visible<'g> {
        let (mut heads, mut at) = (Vec::new(), Vec::new());
        for (i, head) in group.heads().iter().enumerate() {
            if visible.contains(head.employee_id) {
                heads.push(*head);
                at.push(i);
            }
        }
        Visible { group, heads, at }
    }
}

impl AccountGroup for Visible<'_> {
    fn heads(&self) -> &[AccountHead<'_>] {
        &self.heads
    }

    fn whole(&self, i: usize) -> Account {
        self.group.whole(self.at[i])
    }
}

/// Which groups hold an account of the `visible` IDs (the others need not be read).
pub(super) fn groups_of(visible: &FxHashSet<String>) -> Vec<bool> {
    let mut groups = vec![false; GROUPS];
    for id in visible {
        groups[group_of(id)] = true;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Kept {
        Kept {
            fingerprint: 7,
            token: [3; 16],
            file_id: 12,
            file: LastWrite {
                size: 48,
                mtime: (-5, 999_999_999),
            },
            rows: LastRows {
                header: b"employee_id,email\n".to_vec(),
                starts: vec![18, 33],
                lines: vec![2, 3],
                end: 48,
                ids: vec![3, 4],
                emails: vec![5, 0],
                managers: vec![u32::MAX, 0],
                flags: vec![2, 1],
                not_in_file: vec![(0, 77)],
                manual: vec!["E9".into()],
                base: 1,
            },
        }
    }

    #[test]
    fn another_build_has_another_fingerprint() {
        let options = ("employee_id", ["terminated"]);
        assert_eq!(fingerprint(&options), fingerprint_of(BUILD, &options));
        assert_ne!(
            fingerprint_of("0.1.0 0000000000000001", &options),
            fingerprint_of("0.1.0 0000000000000002", &options)
        );
        let id = BUILD.rsplit(' ').next().unwrap();
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{BUILD}"
        );
    }

    #[test]
    fn a_record_reads_back_as_written_and_a_damaged_one_not_at_all() {
        let mut bytes = Vec::new();
        encode(&kept(), &mut bytes).unwrap();
        assert_eq!(decode(&bytes), Some(kept()));
        for at in [0, MAGIC.len() + 3, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert_eq!(decode(&damaged), None, "byte {at}");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 9]), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn a_record_whose_rows_do_not_hold_together_is_not_used() {
        let breaks: [fn(&mut LastRows); 8] = [
            |r| r.managers[1] = 2,
            |r| r.starts = vec![33, 18],
            |r| r.starts[0] = 17,
            |r| r.end = 33,
            |r| r.lines = vec![3, 3],
            |r| r.flags[0] = 8,
            |r| r.not_in_file[0].0 = 2,
            |r| r.ids.push(9),
        ];
        for (i, break_it) in breaks.iter().enumerate() {
            let mut broken = kept();
            break_it(&mut broken.rows);
            let mut bytes = Vec::new();
            encode(&broken, &mut bytes).unwrap();
            assert_eq!(decode(&bytes), None, "change {i}");
        }
    }

    #[test]
    fn a_record_of_many_pieces_reads_back_and_is_checked_in_each() {
        let n = 10_000u32;
        let mut large = kept();
        let r = &mut large.rows;
        r.starts = (0..n).map(|i| 18 + 15 * i).collect();
        r.lines = (0..n).map(|i| 2 + i).collect();
        r.end = 18 + 15 * n;
        r.ids = (0..u64::from(n)).map(|d| d * 3).collect();
        r.emails = (0..u64::from(n)).map(|d| d * 5).collect();
        r.managers = (0..n).map(|i| i.saturating_sub(1)).collect();
        r.flags = (0..n).map(|i| (i % 3) as u8).collect();
        let mut bytes = Vec::new();
        encode(&large, &mut bytes).unwrap();
        assert!(bytes.len() > 4 * PIECE);
        assert_eq!(decode(&bytes), Some(large));
        for at in [PIECE - 1, 2 * PIECE + 5, bytes.len() - 9] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert_eq!(decode(&damaged), None, "byte {at}");
        }
    }

    fn written(path: &Path) -> LastWrite {
        LastWrite::of(&fs::metadata(path).unwrap())
    }

    /// The last roster's file is read only while it is as it was when recorded: moved, or
    /// copied with its times (a restore), yes; written again in place (even to the same
    /// length, a while later), or another file of the same length put in its place, no.
    #[test]
    fn the_last_roster_is_not_read_once_written_again_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.csv");
        let text = b"employee_id,email\nE1,a@x.io,Sales\n";
        fs::write(&path, text).unwrap();
        let len = text.len() as u32;
        let recorded = written(&path);
        assert!(Window::open(&path, len, &recorded).is_ok());
        // Moved (as filing does), then copied with its times (as a restore does).
        let moved = dir.path().join("processed.csv");
        fs::rename(&path, &moved).unwrap();
        assert!(Window::open(&moved, len, &recorded).is_ok());
        let restored = dir.path().join("restored.csv");
        fs::write(&restored, text).unwrap();
        let modified = fs::metadata(&moved).unwrap().modified().unwrap();
        let copy = fs::File::options().write(true).open(&restored).unwrap();
        copy.set_modified(modified).unwrap();
        assert!(Window::open(&restored, len, &recorded).is_ok());
        // Written again in place, same length, after the clock moved on.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&moved, b"employee_id,email\nE1,a@x.io,Legal\n").unwrap();
        assert!(
            Window::open(&moved, len, &recorded).is_err(),
            "written again"
        );
        // Another file of the same length put in its place.
        let again = written(&moved);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let other = dir.path().join("other.csv");
        fs::write(&other, text).unwrap();
        fs::rename(&other, &moved).unwrap();
        assert!(Window::open(&moved, len, &again).is_err(), "replaced");
        // Not the length recorded.
        assert!(Window::open(&moved, len + 1, &written(&moved)).is_err());
    }

    #[test]
    fn the_window_moves_to_a_read_far_past_it() {
        use resync::OldFile;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.csv");
        let bytes: Vec<u8> = (0..3 * Window::SIZE).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &bytes).unwrap();
        let mut w = Window::open(&path, bytes.len() as u32, &written(&path)).unwrap();
        assert!(w.holds(0, 10, &bytes[..10]));
        let far = 2 * Window::SIZE + 7;
        assert!(w.holds(far as u32, far as u32 + 10, &bytes[far..far + 10]));
        // The next records are read from that window, not each on its own.
        assert_eq!(w.at, far as u64);
        assert!(w.holds(far as u32 + 10, far as u32 + 20, &bytes[far + 10..far + 20]));
        assert_eq!(w.at, far as u64);
        // Before the window: read on its own, the window left where it is.
        assert!(w.holds(5, 15, &bytes[5..15]));
        assert_eq!(w.at, far as u64);
    }

    #[test]
    fn records_read_in_order_across_windows_are_the_files_bytes() {
        use resync::OldFile;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.csv");
        let bytes: Vec<u8> = (0..3 * Window::SIZE + 999)
            .map(|i| (i % 253) as u8)
            .collect();
        fs::write(&path, &bytes).unwrap();
        let mut w = Window::open(&path, bytes.len() as u32, &written(&path)).unwrap();
        // Records of 1,000 bytes, some across a window's end, then a jump within the
        // window read ahead, then one past it.
        let mut at = 0;
        while at + 1000 <= 2 * Window::SIZE {
            assert!(w.holds(at as u32, (at + 1000) as u32, &bytes[at..at + 1000]));
            assert!(!w.holds(at as u32, (at + 1000) as u32, &bytes[at + 1..at + 1001]));
            at += 1000;
        }
        let near = 2 * Window::SIZE + 4096;
        assert!(w.holds(near as u32, near as u32 + 10, &bytes[near..near + 10]));
        let last = bytes.len() - 10;
        assert!(w.holds(last as u32, bytes.len() as u32, &bytes[last..]));
        assert!(!w.holds(last as u32, bytes.len() as u32 + 1, &bytes[last..]));
    }
}
