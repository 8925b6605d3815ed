//! The russh-sftp server handler of a [`DropFs`] session: what each SFTP request may do.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File as SftpFile, FileAttributes, Handle, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};
use russh_sftp::server::{Handler, StatusReply};

use super::handles::{Listing, OpenHandle, READDIR_BATCH, next_entries};
use super::paths::{Area, Target, attrs_of, resolve, walk};
use super::status::{blocking, denied, failure, io_status, ok_status};
use super::{DropFs, MAX_IO_LEN, MAX_OPEN_HANDLES, MAX_PACKET_LEN, truncate};

fn limits_reply() -> Vec<u8> {
    let mut data = Vec::with_capacity(32);
    for v in [
        u64::from(MAX_PACKET_LEN),
        u64::from(MAX_IO_LEN),
        u64::from(MAX_IO_LEN),
        MAX_OPEN_HANDLES as u64,
    ] {
        data.extend_from_slice(&v.to_be_bytes());
    }
    data
}

impl Handler for DropFs {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        if self.initialized {
            return Err(failure("duplicate init"));
        }
        self.initialized = true;
        tracing::debug!(parent: &self.span, client_version = version, "sftp session initialised");
        let mut reply = Version::new();
        reply
            .extensions
            .insert(russh_sftp::extensions::LIMITS.to_string(), "1".to_string());
        Ok(reply)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let target = resolve(&filename).inspect_err(|e| {
            self.log_refusal("open", &filename, e.error_message.as_deref().unwrap_or(""));
        })?;
        self.room_for_a_handle()?;
        let writes = pflags.intersects(
            OpenFlags::WRITE
                | OpenFlags::APPEND
                | OpenFlags::CREATE
                | OpenFlags::TRUNCATE
                | OpenFlags::EXCLUDE,
        );
        // `put r.csv /inbox/x.csv/` (or `x.csv/.`, `x.csv/y/..`) names a folder, which the
        // inbox has none of: it had been written as the file x.csv (empty and `.` parts of
        // a path are dropped, `..` goes up).
        let last = filename.rsplit('/').next().unwrap_or_default();
        if writes && matches!(last, "" | "." | "..") {
            self.log_refusal(
                "open",
                &filename,
                "a file name must end with the file's name",
            );
            return Err(denied("a file name must end with the file's name"));
        }
        let handle = if writes {
            self.open_upload(target, pflags).await?
        } else {
            self.open_read(target).await?
        };
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        let Some(open) = self.handles.remove(&handle) else {
            return Err(failure("invalid handle"));
        };
        self.root.open_handles.fetch_sub(1, Ordering::AcqRel);
        let OpenHandle::Upload(mut upload) = open else {
            return Ok(ok_status(id));
        };
        if let Some(reason) = upload.failed {
            return Err(failure(&format!("upload discarded: {reason}")));
        }
        upload.flush().await?;
        upload.synced().await?;
        if upload.temporary {
            return self.park(id, upload).await;
        }
        let span = self.span.clone();
        let name = upload.name.clone();
        let md = blocking(move || {
            let secs = upload.started.elapsed().as_secs_f64();
            match upload.commit() {
                Ok((md, elsewhere)) => {
                    tracing::info!(parent: &span, file = %crate::logging::ClientText(&upload.name), bytes = md.len(),
                        seconds = format!("{secs:.3}"), "upload complete");
                    Ok((md, elsewhere))
                }
                Err(e) => {
                    upload.failed = Some("close failed");
                    let _ = fs::remove_file(&upload.temp);
                    tracing::warn!(parent: &span, file = %crate::logging::ClientText(&upload.name),
                        reason = e.error_message.as_deref().unwrap_or(""), "upload discarded at close");
                    Err(e)
                }
            }
        })
        .await?;
        self.parked.delivered(name, attrs_of(&md.0), md.1);
        Ok(ok_status(id))
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = match self.handles.get(&handle) {
            Some(OpenHandle::Read { file }) => file.clone(),
            Some(_) => return Err(denied("handle not open for reading")),
            None => return Err(failure("invalid handle")),
        };
        let len = len.min(MAX_IO_LEN) as usize;
        let data = blocking(move || {
            let mut buf = vec![0u8; len];
            let mut n = 0;
            while n < len {
                match file.read_at(&mut buf[n..], offset + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_status(&e)),
                }
            }
            buf.truncate(n);
            Ok(buf)
        })
        .await?;
        if data.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let max = self.max_upload_bytes;
        // One upload of a session gathers writes at a time: another one's batch is written
        // out and its buffers let go first, so a session holds at most one batch however
        // many uploads it keeps open. A failure there discards that upload (its own later
        // requests and its close fail).
        if let Some(other) = self.gathering.take_if(|h| *h != handle)
            && let Some(OpenHandle::Upload(u)) = self.handles.get_mut(&other)
        {
            u.settle().await;
        }
        let upload = match self.handles.get_mut(&handle) {
            Some(OpenHandle::Upload(u)) => u,
            Some(_) => return Err(denied("handle not open for writing")),
            None => return Err(failure("invalid handle")),
        };
        self.gathering = Some(handle.clone());
        if let Some(reason) = upload.failed {
            return Err(failure(&format!("upload discarded: {reason}")));
        }
        let end = match offset.checked_add(data.len() as u64) {
            Some(end) if end <= max => end,
            _ => {
                upload.discard("larger than the maximum upload size");
                return Err(failure(&format!(
                    "upload larger than the maximum of {max} bytes; discarded"
                )));
            }
        };
        upload.write(offset, &data).await?;
        // Let go here, on the thread that made it, not on the blocking pool's.
        drop(data);
        upload.extent = upload.extent.max(end);
        Ok(ok_status(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = self.stat_path(path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = self.stat_path(path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let file = match self.handles.get_mut(&handle) {
            Some(OpenHandle::Read { file }) => file.clone(),
            Some(OpenHandle::Upload(u)) => {
                // Its size counts every write received.
                u.flush().await?;
                u.file.clone()
            }
            Some(OpenHandle::Dir { attrs, .. }) => {
                return Ok(Attrs {
                    id,
                    attrs: attrs.clone(),
                });
            }
            None => return Err(failure("invalid handle")),
        };
        let md = blocking(move || file.metadata().map_err(|e| io_status(&e))).await?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&md),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        // Accepted and ignored, as `fsetstat` of an upload is, for a name this session
        // uploaded: one waiting for its rename, or delivered. rclone sets the time by path
        // once the upload is closed (renamed in, often taken by the engine already); refused,
        // it counted the transfer as failed and its retry delivered the roster again.
        let own = resolve(&path).ok().is_some_and(|target| self.owns(&target));
        match own {
            true => Ok(ok_status(id)),
            false => Err(self.refuse("setstat", &path, "changing attributes is not allowed")),
        }
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        match self.handles.get(&handle) {
            // Clients that preserve times/modes (sftp -p, WinSCP) would otherwise fail the
            // whole transfer; the request is accepted and ignored for our own new upload.
            Some(OpenHandle::Upload(_)) => Ok(ok_status(id)),
            Some(_) => Err(self.refuse("fsetstat", &handle, "changing attributes is not allowed")),
            None => Err(failure("invalid handle")),
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let target = resolve(&path).inspect_err(|e| {
            self.log_refusal("opendir", &path, e.error_message.as_deref().unwrap_or(""));
        })?;
        if let Target::Entry {
            area: Area::Inbox, ..
        } = target
        {
            return Err(self.refuse("opendir", &path, "no subdirectories in /inbox"));
        }
        // Before listing: a client asking again and again must not cost a listing each time.
        self.room_for_a_handle()?;
        let root = self.root.path().to_path_buf();
        let (listing, attrs) = blocking(move || match target {
            Target::Root => {
                let md = fs::symlink_metadata(&root).map_err(|e| io_status(&e))?;
                let mut entries = Vec::new();
                for area in Area::ALL {
                    if let Ok((_, md)) = walk(&root, area, &[]) {
                        entries.push(SftpFile::new(area.dir_name(), attrs_of(&md)));
                    }
                }
                Ok((Listing::Fixed(entries.into_iter()), attrs_of(&md)))
            }
            // /inbox takes uploads and lists as empty (SPEC §5 lists only processed/,
            // rejected/ and held/): its names are other uploads waiting. Opening it still
            // works, for clients that list a folder before they upload into it.
            Target::Area(Area::Inbox) => {
                let (_, md) = walk(&root, Area::Inbox, &[])?;
                Ok((Listing::Fixed(Vec::new().into_iter()), attrs_of(&md)))
            }
            Target::Area(area) => {
                let (p, md) = walk(&root, area, &[])?;
                let stream = fs::read_dir(&p).map_err(|e| io_status(&e))?;
                Ok((Listing::Stream(Some(stream)), attrs_of(&md)))
            }
            Target::Entry { area, rel } => {
                let (p, md) = walk(&root, area, &rel)?;
                if !md.is_dir() {
                    return Err(failure("not a directory"));
                }
                let stream = fs::read_dir(&p).map_err(|e| io_status(&e))?;
                Ok((Listing::Stream(Some(stream)), attrs_of(&md)))
            }
        })
        .await?;
        let handle = self.insert(OpenHandle::Dir { listing, attrs })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let stream = match self.handles.get_mut(&handle) {
            Some(OpenHandle::Dir {
                listing: Listing::Fixed(entries),
                ..
            }) => {
                let files: Vec<SftpFile> = entries.by_ref().take(READDIR_BATCH).collect();
                if files.is_empty() {
                    return Err(StatusCode::Eof.into());
                }
                return Ok(Name { id, files });
            }
            Some(OpenHandle::Dir {
                listing: Listing::Stream(stream),
                ..
            }) => stream.take(),
            Some(_) => return Err(failure("not a directory handle")),
            None => return Err(failure("invalid handle")),
        };
        let Some(mut stream) = stream else {
            return Err(StatusCode::Eof.into());
        };
        let (stream, files) = blocking(move || {
            let files = next_entries(&mut stream);
            Ok((stream, files))
        })
        .await?;
        if files.is_empty() {
            // The end: the directory stream is closed now rather than at CLOSE.
            return Err(StatusCode::Eof.into());
        }
        if let Some(OpenHandle::Dir {
            listing: Listing::Stream(slot),
            ..
        }) = self.handles.get_mut(&handle)
        {
            *slot = Some(stream);
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        // This session's upload waiting under a temporary name may be given up (WinSCP
        // removes its .filepart after a failed transfer); nothing else may be deleted.
        let own = resolve(&filename)
            .ok()
            .and_then(|t| super::inbox_name(&t).and_then(|n| self.parked.take(n)));
        match own {
            Some(waiting) => {
                blocking(move || {
                    waiting.remove();
                    Ok(())
                })
                .await?;
                Ok(ok_status(id))
            }
            None => Err(self.refuse("remove", &filename, "deleting files is not allowed")),
        }
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("mkdir", &path, "creating directories is not allowed"))
    }

    async fn rmdir(&mut self, _id: u32, path: String) -> Result<Status, Self::Error> {
        Err(self.refuse("rmdir", &path, "removing directories is not allowed"))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = resolve(&path).inspect_err(|e| {
            self.log_refusal("realpath", &path, e.error_message.as_deref().unwrap_or(""));
        })?;
        Ok(Name {
            id,
            files: vec![SftpFile::dummy(target.virtual_path())],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.name_upload(&oldpath, &newpath).await?;
        Ok(ok_status(id))
    }

    async fn readlink(&mut self, _id: u32, path: String) -> Result<Name, Self::Error> {
        Err(self.refuse("readlink", &path, "symbolic links are not served"))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        linkpath: String,
        _targetpath: String,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("symlink", &linkpath, "creating links is not allowed"))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        _data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        if request == russh_sftp::extensions::LIMITS {
            return Ok(Packet::ExtendedReply(ExtendedReply {
                id,
                data: limits_reply(),
            }));
        }
        tracing::debug!(parent: &self.span, request = %truncate(&request), "unsupported extension");
        Err(StatusCode::OpUnsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::sftp::drop_fs::{DropRoot, MAX_OPEN_HANDLES_TOTAL, TEMP_PREFIX};
    use std::path::Path;
    use std::sync::Arc;
    use tracing::Span;

    #[test]
    fn limits_reply_is_four_big_endian_u64() {
        let data = limits_reply();
        assert_eq!(data.len(), 32);
        assert_eq!(u64::from_be_bytes(data[0..8].try_into().unwrap()), 262144);
        assert_eq!(u64::from_be_bytes(data[8..16].try_into().unwrap()), 261120);
    }

    fn session(dir: &Path, max: u64) -> DropFs {
        let root = Arc::new(DropRoot::prepare(dir).unwrap());
        DropFs::new(root, max, Span::none(), None)
    }

    const NEW: OpenFlags = OpenFlags::WRITE
        .union(OpenFlags::CREATE)
        .union(OpenFlags::TRUNCATE);

    fn inbox_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("inbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn out_of_order_writes_then_close_renames_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let h = fs_
            .open(1, "/inbox/r.csv".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        assert_eq!(inbox_names(dir.path()).len(), 1);
        assert!(inbox_names(dir.path())[0].starts_with(TEMP_PREFIX));
        fs_.write(2, h.clone(), 5, b"world".to_vec()).await.unwrap();
        fs_.write(3, h.clone(), 0, b"hello".to_vec()).await.unwrap();
        fs_.close(4, h).await.unwrap();
        assert_eq!(inbox_names(dir.path()), vec!["r.csv".to_string()]);
        assert_eq!(
            fs::read(dir.path().join("inbox/r.csv")).unwrap(),
            b"helloworld"
        );
    }

    /// Writes are gathered into batches of [`super::super::handles::WRITE_BATCH`] bytes:
    /// across several batches, with writes out of order and one rewriting bytes an earlier
    /// batch wrote, the file holds what writing each in turn gives, and FSTAT counts every
    /// write received.
    #[tokio::test]
    async fn writes_gathered_in_batches_land_as_written_in_turn() {
        use super::super::handles::WRITE_BATCH;
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 30);
        let h = fs_
            .open(1, "inbox/big.bin".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        let len = 3 * WRITE_BATCH + WRITE_BATCH / 2;
        let chunk = 32 * 1024;
        let mut expected = vec![0u8; len];
        let mut order: Vec<usize> = (0..len.div_ceil(chunk)).collect();
        // Two pairs swapped, one across a batch's end.
        order.swap(3, 4);
        order.swap(31, 33);
        let mut id = 2;
        for (n, &k) in order.iter().enumerate() {
            let at = k * chunk;
            let data: Vec<u8> = (at..(at + chunk).min(len))
                .map(|i| (i * 7 + n) as u8)
                .collect();
            expected[at..at + data.len()].copy_from_slice(&data);
            fs_.write(id, h.clone(), at as u64, data).await.unwrap();
            id += 1;
            if n == 40 {
                let seen = fs_.fstat(id, h.clone()).await.unwrap().attrs.size;
                let received = order[..=n]
                    .iter()
                    .map(|&k| ((k + 1) * chunk).min(len))
                    .max();
                assert_eq!(seen, received.map(|r| r as u64));
            }
        }
        // Bytes the first batch wrote, written again.
        let again = vec![0xEE; 1000];
        expected[100..1100].copy_from_slice(&again);
        fs_.write(id, h.clone(), 100, again).await.unwrap();
        fs_.close(id + 1, h).await.unwrap();
        assert_eq!(
            fs::read(dir.path().join("inbox/big.bin")).unwrap(),
            expected
        );
    }

    /// A session gathers writes for one upload at a time: a write to another upload writes
    /// the first one's batch out, so a client holding many uploads open holds one batch.
    #[tokio::test]
    async fn a_write_to_another_upload_writes_the_gathered_batch_out_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 30);
        let mut handles = Vec::new();
        for (id, name) in [(1, "inbox/a.bin"), (2, "inbox/b.bin")] {
            let open = fs_.open(id, name.into(), NEW, FileAttributes::default());
            handles.push(open.await.unwrap().handle);
        }
        let on_disk = || -> u64 {
            fs::read_dir(dir.path().join("inbox"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        fs_.write(3, handles[0].clone(), 0, vec![1; 100_000])
            .await
            .unwrap();
        assert_eq!(on_disk(), 0, "gathered");
        fs_.write(4, handles[1].clone(), 0, vec![2; 10])
            .await
            .unwrap();
        assert_eq!(
            on_disk(),
            100_000,
            "a.bin's batch written out, b.bin's gathered"
        );
        fs_.write(5, handles[0].clone(), 100_000, vec![3; 5])
            .await
            .unwrap();
        assert_eq!(on_disk(), 100_010);
        for (id, h) in [(6, &handles[0]), (7, &handles[1])] {
            fs_.close(id, h.clone()).await.unwrap();
        }
        let mut a = vec![1; 100_000];
        a.extend([3; 5]);
        assert_eq!(fs::read(dir.path().join("inbox/a.bin")).unwrap(), a);
        assert_eq!(
            fs::read(dir.path().join("inbox/b.bin")).unwrap(),
            vec![2; 10]
        );
    }

    /// Scattered one-byte writes fill batches by their count, and empty writes add nothing.
    #[tokio::test]
    async fn many_small_scattered_writes_land_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 30);
        let h = fs_
            .open(1, "inbox/s.bin".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        let n = 40_000u32;
        let mut expected = vec![0u8; 2 * n as usize];
        for i in 0..n {
            let at = 2 * u64::from(i);
            fs_.write(2 + i, h.clone(), at, vec![i as u8])
                .await
                .unwrap();
            fs_.write(2 + i, h.clone(), at + 1, Vec::new())
                .await
                .unwrap();
            expected[at as usize] = i as u8;
        }
        fs_.close(2 + n, h).await.unwrap();
        // The file ends at the last byte written (the empty write after it adds nothing).
        expected.pop();
        assert_eq!(fs::read(dir.path().join("inbox/s.bin")).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_session_dropped_with_a_batch_being_written_leaves_nothing() {
        use super::super::handles::WRITE_BATCH;
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 30);
        let h = fs_
            .open(1, "inbox/a.bin".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        let data = vec![7u8; WRITE_BATCH + 1];
        fs_.write(2, h, 0, data).await.unwrap();
        drop(fs_);
        assert!(inbox_names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn oversize_write_discards_and_close_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 8);
        let h = fs_
            .open(1, "inbox/big.csv".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        fs_.write(2, h.clone(), 0, b"1234".to_vec()).await.unwrap();
        let e = fs_
            .write(3, h.clone(), 4, b"56789".to_vec())
            .await
            .unwrap_err();
        assert_eq!(e.status_code, StatusCode::Failure);
        assert!(inbox_names(dir.path()).is_empty());
        let e = fs_.write(4, h.clone(), 4, b"5".to_vec()).await.unwrap_err();
        assert_eq!(e.status_code, StatusCode::Failure);
        assert_eq!(
            fs_.close(5, h).await.unwrap_err().status_code,
            StatusCode::Failure
        );
        assert!(inbox_names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn dropping_the_session_deletes_unfinished_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let h = fs_
            .open(1, "inbox/a.csv".into(), NEW, FileAttributes::default())
            .await
            .unwrap()
            .handle;
        fs_.write(2, h, 0, b"partial".to_vec()).await.unwrap();
        drop(fs_);
        assert!(inbox_names(dir.path()).is_empty());
    }

    /// An upload whose name another file took in inbox/ while it was open is kept under the
    /// next free name, and a `stat` of its name answers with its own size (paramiko's size
    /// check after `put`): discarded with a failure at the close, which curl does not
    /// report, the roster had been lost while the job was told it arrived. A name of 254
    /// bytes is cut (`~`) to leave room for a number (`-2` had failed the rename).
    #[tokio::test]
    async fn close_keeps_an_upload_whose_name_was_taken_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}.csv", "L".repeat(250));
        for name in ["a.csv", long.as_str()] {
            let mut fs_ = session(dir.path(), 1 << 20);
            let path = format!("inbox/{name}");
            let h = fs_
                .open(1, path.clone(), NEW, FileAttributes::default())
                .await
                .unwrap()
                .handle;
            fs_.write(2, h.clone(), 0, b"mine".to_vec()).await.unwrap();
            fs::write(dir.path().join("inbox").join(name), b"theirs").unwrap();
            fs_.close(3, h).await.unwrap();
            let names = inbox_names(dir.path());
            assert_eq!(names.len(), 2, "{names:?}");
            let kept = names.iter().find(|n| *n != name).unwrap();
            let numbered = kept.ends_with("-2.csv") || kept.ends_with("~.csv");
            assert!(numbered && kept.len() <= 255, "{kept}");
            assert_eq!(
                fs::read(dir.path().join("inbox").join(kept)).unwrap(),
                b"mine"
            );
            assert_eq!(
                fs::read(dir.path().join("inbox").join(name)).unwrap(),
                b"theirs"
            );
            assert_eq!(fs_.stat(4, path).await.unwrap().attrs.size, Some(4));
            for n in names {
                fs::remove_file(dir.path().join("inbox").join(n)).unwrap();
            }
        }
    }

    /// `setstat` by path (rclone sets the time so once it closed the upload) is accepted and
    /// ignored for a name this session uploaded, delivered (even once the engine took it
    /// from inbox/) or waiting for its rename; refused for any other name. Refused, rclone
    /// had counted the transfer as failed and delivered the roster again.
    #[tokio::test]
    async fn setstat_of_the_sessions_own_upload_is_accepted_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let mut other = session(dir.path(), 1 << 20);
        let attrs = FileAttributes::default;
        for name in ["/inbox/r.csv", "/inbox/w.csv.part"] {
            let h = fs_.open(1, name.into(), NEW, attrs()).await.unwrap().handle;
            fs_.write(2, h.clone(), 0, b"id\n".to_vec()).await.unwrap();
            fs_.close(3, h).await.unwrap();
        }
        // The engine took the delivered file out of inbox/.
        fs::remove_file(dir.path().join("inbox/r.csv")).unwrap();
        for name in ["/inbox/r.csv", "inbox/w.csv.part"] {
            let done = fs_.setstat(4, name.into(), attrs()).await.unwrap();
            assert_eq!(done.status_code, StatusCode::Ok, "{name}");
        }
        fs::write(dir.path().join("inbox/theirs.csv"), b"x").unwrap();
        let deny = StatusCode::PermissionDenied;
        for (own, name) in [
            (true, "inbox/theirs.csv"),
            (true, "inbox/never.csv"),
            (false, "inbox/r.csv"),
            (false, "inbox/w.csv.part"),
        ] {
            let session = if own { &mut fs_ } else { &mut other };
            let refused = session.setstat(5, name.into(), attrs()).await.unwrap_err();
            assert_eq!(refused.status_code, deny, "{name}");
        }
        assert_eq!(fs::read(dir.path().join("inbox/theirs.csv")).unwrap(), b"x");
    }

    #[tokio::test]
    async fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        fs::write(dir.path().join("inbox/existing.csv"), b"x").unwrap();
        fs::write(dir.path().join("processed/done.csv"), b"x").unwrap();
        let deny = StatusCode::PermissionDenied;
        let attrs = FileAttributes::default;
        let code = |r: Result<Handle, StatusReply>| r.unwrap_err().status_code;
        assert_eq!(
            code(fs_.open(1, "inbox/existing.csv".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(fs_.open(1, "processed/new.csv".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(
                fs_.open(1, "inbox/existing.csv".into(), OpenFlags::READ, attrs())
                    .await
            ),
            deny
        );
        assert_eq!(
            code(fs_.open(1, "inbox/sub/x.csv".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(fs_.open(1, "inbox/.x.csv".into(), NEW, attrs()).await),
            deny
        );
        assert_eq!(
            code(
                fs_.open(1, "/etc/passwd".into(), OpenFlags::READ, attrs())
                    .await
            ),
            deny
        );
        let append = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::APPEND;
        let refused = fs_
            .open(1, "inbox/n.csv".into(), append, attrs())
            .await
            .unwrap_err();
        assert_eq!(refused.status_code, deny);
        // Said as what it is: the name is new.
        assert!(
            refused
                .error_message
                .as_deref()
                .is_some_and(|m| m.contains("appending is not supported")),
            "{refused:?}"
        );
        assert_eq!(
            fs_.remove(1, "processed/done.csv".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.rename(1, "processed/done.csv".into(), "processed/x".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.mkdir(1, "inbox/d".into(), attrs())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.setstat(1, "processed/done.csv".into(), attrs())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.symlink(1, "inbox/l".into(), "/etc".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert_eq!(
            fs_.readlink(1, "inbox/l".into())
                .await
                .unwrap_err()
                .status_code,
            deny
        );
        assert!(
            fs_.open(1, "processed/done.csv".into(), OpenFlags::READ, attrs())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn symlinks_on_disk_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("processed/link.csv")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("held/dirlink")).unwrap();
        let r = fs_
            .open(
                1,
                "processed/link.csv".into(),
                OpenFlags::READ,
                FileAttributes::default(),
            )
            .await;
        assert_eq!(r.unwrap_err().status_code, StatusCode::PermissionDenied);
        let r = fs_
            .open(
                1,
                "held/dirlink/passwd".into(),
                OpenFlags::READ,
                FileAttributes::default(),
            )
            .await;
        assert_eq!(r.unwrap_err().status_code, StatusCode::PermissionDenied);
        let r = fs_.stat(1, "processed/link.csv".into()).await;
        assert_eq!(r.unwrap_err().status_code, StatusCode::PermissionDenied);
        let h = fs_.opendir(1, "processed".into()).await.unwrap().handle;
        assert_eq!(
            fs_.readdir(2, h.clone()).await.unwrap_err().status_code,
            StatusCode::Eof
        );
    }

    #[tokio::test]
    async fn a_large_directory_is_streamed_in_batches_then_eof() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let n = READDIR_BATCH * 2 + 5;
        for i in 0..n {
            fs::write(dir.path().join(format!("processed/f{i:04}.csv")), b"x").unwrap();
        }
        fs::write(dir.path().join("processed/.hidden"), b"x").unwrap();
        let h = fs_.opendir(1, "processed".into()).await.unwrap().handle;
        // Files created after OPENDIR may or may not show; none of these is lost.
        let mut names = Vec::new();
        let mut batches = 0;
        loop {
            match fs_.readdir(2, h.clone()).await {
                Ok(name) => {
                    assert!(name.files.len() <= READDIR_BATCH);
                    batches += 1;
                    names.extend(name.files.into_iter().map(|f| f.filename));
                }
                Err(e) => {
                    assert_eq!(e.status_code, StatusCode::Eof);
                    break;
                }
            }
        }
        names.sort();
        let want: Vec<String> = (0..n).map(|i| format!("f{i:04}.csv")).collect();
        assert_eq!(names, want);
        assert_eq!(batches, 3);
        // Still EOF, and the handle closes normally.
        assert_eq!(
            fs_.readdir(3, h.clone()).await.unwrap_err().status_code,
            StatusCode::Eof
        );
        fs_.close(4, h).await.unwrap();
    }

    #[tokio::test]
    async fn handles_are_capped_per_session_and_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(DropRoot::prepare(dir.path()).unwrap());
        let mut sessions: Vec<DropFs> = (0..MAX_OPEN_HANDLES_TOTAL / MAX_OPEN_HANDLES + 1)
            .map(|_| DropFs::new(root.clone(), 1, Span::none(), None))
            .collect();
        let (last, full) = sessions.split_last_mut().unwrap();
        for fs_ in full.iter_mut() {
            for _ in 0..MAX_OPEN_HANDLES {
                fs_.opendir(1, "/".into()).await.unwrap();
            }
            let e = fs_.opendir(1, "/".into()).await.unwrap_err();
            assert_eq!(e.error_message.as_deref(), Some("too many open handles"));
        }
        assert_eq!(
            root.open_handles.load(Ordering::Relaxed),
            MAX_OPEN_HANDLES_TOTAL
        );
        // The server-wide budget is spent: another session gets no handle ...
        let e = last.opendir(1, "/".into()).await.unwrap_err();
        assert!(e.error_message.unwrap().contains("on this server"));
        // ... until a handle is closed or a session ends.
        let h = full[0].opendir(1, "/".into()).await;
        assert!(h.is_err());
        sessions.remove(0);
        assert_eq!(
            root.open_handles.load(Ordering::Relaxed),
            MAX_OPEN_HANDLES_TOTAL - MAX_OPEN_HANDLES
        );
        let last = sessions.last_mut().unwrap();
        let h = last.opendir(1, "/".into()).await.unwrap().handle;
        last.close(2, h).await.unwrap();
        assert_eq!(
            root.open_handles.load(Ordering::Relaxed),
            MAX_OPEN_HANDLES_TOTAL - MAX_OPEN_HANDLES
        );
        drop(sessions);
        assert_eq!(root.open_handles.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn root_listing_shows_the_four_areas_then_eof() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs_ = session(dir.path(), 1 << 20);
        let h = fs_.opendir(1, "/".into()).await.unwrap().handle;
        let names: Vec<String> = fs_
            .readdir(2, h.clone())
            .await
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.filename)
            .collect();
        assert_eq!(names, ["inbox", "processed", "rejected", "held"]);
        assert_eq!(
            fs_.readdir(3, h).await.unwrap_err().status_code,
            StatusCode::Eof
        );
    }
}
