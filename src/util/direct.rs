//! Long files written past the page cache (`O_DIRECT`), the rest of them as usual.
//!
//! Why: on this project's machines a byte written through the page cache costs the kernel a
//! fresh page and a copy into it, at 0.4–3 GB/s from one run to the next (`dd`, 256 MB:
//! 0.07–0.57 s of system time), where a write past the cache costs ~0.03 s. A first import
//! at a million rows writes ~340 MB of reports (BENCHMARKS.md).
//!
//! A file is gathered in pieces of [`PIECE`] bytes of page-aligned memory. At the first whole
//! piece the file gets `O_DIRECT` and a thread that writes each whole piece at its offset
//! (aligned, as `O_DIRECT` asks) while the next one is gathered; the end, shorter than a
//! piece, is written with `O_DIRECT` off. A file shorter than a piece is written at its end,
//! through the cache, on the caller's thread. Where the filesystem refuses `O_DIRECT`
//! (tmpfs), everything goes through the cache. The caller syncs the file as before:
//! `O_DIRECT` says nothing about the device's own cache.

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use std::fs::File;
use std::io::{Error, Result, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// How many bytes are gathered before they are written: a multiple of the page, which covers
/// the block sizes `O_DIRECT` asks writes to be aligned to.
#[cfg(not(test))]
pub(crate) const PIECE: usize = 4 << 20;
#[cfg(test)]
pub(crate) const PIECE: usize = 4 * 4096;

/// A file written piece by piece, past the page cache once it is long.
pub struct Direct {
    file: Arc<File>,
    /// [`PIECE`] bytes, page-aligned; `filled` of them gathered.
    piece: memmap2::MmapMut,
    filled: usize,
    /// Where the piece goes in the file.
    at: u64,
    /// The thread writing whole pieces, once there is one.
    writer: Option<Writer>,
}

/// A thread writing whole pieces: where to send a piece, and where the piece sent before
/// comes back, written.
struct Writer {
    pieces: SyncSender<(memmap2::MmapMut, u64)>,
    written: Receiver<Result<memmap2::MmapMut>>,
    thread: std::thread::JoinHandle<()>,
}

impl Direct {
    /// Writes into `file` from its start.
    pub fn new(file: File) -> Result<Direct> {
        Ok(Direct {
            file: Arc::new(file),
            piece: memmap2::MmapMut::map_anon(PIECE)?,
            filled: 0,
            at: 0,
            writer: None,
        })
    }

    /// Writes what is gathered and gives the file back (not synced).
    pub fn finish(mut self) -> Result<File> {
        if let Some(Writer {
            pieces,
            written,
            thread,
        }) = self.writer.take()
        {
            drop(pieces);
            // The piece in flight.
            let in_flight = written.recv().map_err(|_| writer_gone());
            thread.join().map_err(|_| writer_gone())?;
            in_flight??;
            set_direct(&self.file, false)?;
        }
        self.file
            .write_all_at(&self.piece[..self.filled], self.at)?;
        let file = Arc::clone(&self.file);
        drop(self);
        Arc::try_unwrap(file).map_err(|_| writer_gone())
    }

    /// Sends the gathered piece to the writer (started at the first) and takes the piece it
    /// wrote before to gather into.
    fn send_piece(&mut self) -> Result<()> {
        let next = match &self.writer {
            Some(writer) => writer.written.recv().map_err(|_| writer_gone())??,
            None => {
                // Refused (tmpfs): the file goes through the cache.
                let _ = set_direct(&self.file, true);
                let (pieces, to_write) = sync_channel(1);
                let (done, written) = sync_channel(1);
                let file = Arc::clone(&self.file);
                let thread = std::thread::Builder::new()
                    .name("autoprov-write".into())
                    .spawn(move || write_pieces(&file, to_write, done))?;
                self.writer = Some(Writer {
                    pieces,
                    written,
                    thread,
                });
                memmap2::MmapMut::map_anon(PIECE)?
            }
        };
        let full = std::mem::replace(&mut self.piece, next);
        if let Some(writer) = &self.writer {
            writer
                .pieces
                .send((full, self.at))
                .map_err(|_| writer_gone())?;
        }
        self.at += PIECE as u64;
        self.filled = 0;
        Ok(())
    }
}

impl Drop for Direct {
    /// A file given up on (its content failed) is left with no piece still being written.
    fn drop(&mut self) {
        if let Some(Writer {
            pieces,
            written,
            thread,
        }) = self.writer.take()
        {
            drop((pieces, written));
            let _ = thread.join();
        }
    }
}

impl Write for Direct {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let n = buf.len().min(PIECE - self.filled);
        self.piece[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        if self.filled == PIECE {
            self.send_piece()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The writer's thread: writes each piece at its offset and sends it back, until the
/// pieces stop or a write fails (sent back instead of the piece).
fn write_pieces(
    file: &File,
    pieces: Receiver<(memmap2::MmapMut, u64)>,
    written: SyncSender<Result<memmap2::MmapMut>>,
) {
    for (piece, at) in pieces {
        let done = write_piece(file, &piece, at).map(|()| piece);
        let failed = done.is_err();
        if written.send(done).is_err() || failed {
            return;
        }
    }
}

/// Writes a whole piece; one that `O_DIRECT` refuses is written again through the cache,
/// which the rest of the file then goes through.
fn write_piece(file: &File, piece: &[u8], at: u64) -> Result<()> {
    match file.write_all_at(piece, at) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) && is_direct(file)? => {
            set_direct(file, false)?;
            file.write_all_at(piece, at)
        }
        done => done,
    }
}

fn is_direct(file: &File) -> Result<bool> {
    Ok(OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?).contains(OFlag::O_DIRECT))
}

fn set_direct(file: &File, on: bool) -> Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?);
    let flags = match on {
        true => flags | OFlag::O_DIRECT,
        false => flags - OFlag::O_DIRECT,
    };
    fcntl(file, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

fn writer_gone() -> Error {
    Error::other("the file's writing thread stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Writes `content` through a [`Direct`] in `chunk`-byte writes; the file read back.
    fn written(content: &[u8], chunk: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = Direct::new(File::create(&path).unwrap()).unwrap();
        for piece in content.chunks(chunk) {
            w.write_all(piece).unwrap();
        }
        let file = w.finish().unwrap();
        assert!(!is_direct(&file).unwrap(), "O_DIRECT is off once finished");
        file.sync_all().unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn files_of_any_length_hold_what_was_written() {
        for len in [
            0,
            5,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            2 * PIECE,
            10 * PIECE + 123,
        ] {
            let content = bytes(len);
            for chunk in [1000, PIECE + 7] {
                assert!(
                    written(&content, chunk) == content,
                    "{len} bytes by {chunk}"
                );
            }
        }
    }

    #[test]
    fn a_write_o_direct_refuses_is_made_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        if set_direct(&file, true).is_err() {
            // This filesystem refuses O_DIRECT outright: nothing to retry.
            return;
        }
        let content = bytes(PIECE + 1);
        // Memory one byte past a page's start: O_DIRECT refuses it (EINVAL).
        let unaligned = &content[1..];
        assert_eq!(
            file.write_at(unaligned, 0).map_err(|e| e.raw_os_error()),
            Err(Some(nix::libc::EINVAL))
        );
        write_piece(&file, unaligned, 0).unwrap();
        assert!(!is_direct(&file).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), unaligned);
    }
}
