//! An upload in progress: a temporary file that becomes the named file on
//! [`Storage::commit`](super::Storage::commit), becomes a resumable partial
//! on [`Storage::keep_partial`](super::Storage::keep_partial), and is
//! removed when dropped otherwise.
//!
//! With syncing on, the file's data is handed to the disk while it streams
//! in: every [`WRITEBACK_CHUNK`] bytes, write-out of the bytes since the
//! last time is started without waiting for it, and the write-out started
//! the time before is awaited (normally long finished). So the final sync
//! before the `226` finds at most about two chunks left to write, and the
//! one thread never stops for the whole file at once. Any error the kernel
//! reports on the way fails the upload for good: after it, the final sync
//! could report success for data that never reached the disk.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::dir::Dir;
use super::folders::{Held, partial_key};
use super::{UserDir, retire};
use crate::protocol::path::{FilePath, FilePathBuf};
use crate::sys;

/// How many bytes arrive between two hand-overs to the disk. Large enough
/// that the two calls cost nothing next to the data (a few per second at
/// disk speed), small enough that two of them are written in tens of
/// milliseconds on an ordinary SSD.
const WRITEBACK_CHUNK: u64 = 8 * 1024 * 1024;

/// What an upload claims of the user's quota from its start: `bytes` (at
/// least what it holds) and, when its name is new, one file.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Claim {
    pub(super) bytes: u64,
    pub(super) new_name: bool,
}

#[derive(Debug)]
pub struct Upload {
    file: Option<File>,
    /// The server's temporary directory, which holds the file until it is
    /// placed.
    tmp: Arc<Dir>,
    /// The file's name in `tmp`; `None` once it has left it.
    tmp_name: Option<String>,
    dir: UserDir,
    /// The folder the file goes into, as resolved when the upload began
    /// (the user's directory itself by identity, see [`Held`]).
    folder: Held,
    path: FilePathBuf,
    /// Placing the file must not replace one (a copy without replace).
    no_replace: bool,
    /// Bytes in the file: the resumed offset plus what was written since.
    len: u64,
    /// Early write-back, when uploads are synced.
    writeback: Option<Writeback>,
    /// A write or write-back failed: the file's content is not what the
    /// client sent, so it must never be placed.
    failed: bool,
    /// Bytes claimed against the user's quota (see `Claims`), at least
    /// `len`; released when the upload is dropped.
    claimed: u64,
    /// Whether a file is claimed too (the name was new).
    claimed_file: bool,
    /// Bytes that placing the upload frees: the file it replaces and the
    /// partial it supersedes.
    given_back: u64,
    /// Where a large upload dropped unfinished says it left its file to
    /// be freed in steps (see `storage/retire.rs`); without it the file
    /// is removed at once.
    retiring: Option<Arc<AtomicUsize>>,
}

/// How far the data has been handed to the disk.
#[derive(Debug, Default, Clone, Copy)]
struct Writeback {
    /// Write-out has been started for `0..started`.
    started: u64,
    /// Write-out of `0..awaited` has completed.
    awaited: u64,
}

impl Upload {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        file: File,
        tmp: &Arc<Dir>,
        tmp_name: String,
        len: u64,
        dir: &UserDir,
        folder: Held,
        path: FilePath<'_>,
        sync: bool,
        claim: Claim,
    ) -> Upload {
        // One publication for the file and the bytes (see `Claims`).
        let claimed = len.max(claim.bytes);
        dir.inner.claims.add(claimed, u64::from(claim.new_name));
        Upload {
            file: Some(file),
            tmp: Arc::clone(tmp),
            tmp_name: Some(tmp_name),
            dir: dir.clone(),
            folder,
            path: path.to_owned(),
            no_replace: false,
            len,
            writeback: sync.then(Writeback::default),
            failed: false,
            claimed,
            claimed_file: claim.new_name,
            given_back: 0,
            retiring: None,
        }
    }

    /// A dropped upload of [`retire::RETIRE_MIN`] bytes or more leaves its
    /// file under a retired name and counts it in `dropped`.
    pub(super) fn retire_via(&mut self, dropped: Arc<AtomicUsize>) {
        self.retiring = Some(dropped);
    }

    pub(super) fn give_back(&mut self, bytes: u64) {
        self.given_back = bytes;
    }

    /// The user directory, the path the upload is for, and the folder it
    /// goes into.
    pub(super) fn target(&self) -> (&UserDir, FilePath<'_>, &Held) {
        (&self.dir, self.path.as_path(), &self.folder)
    }

    /// Placing the upload fails rather than replace a file.
    pub(super) fn no_replace(&mut self, no_replace: bool) {
        self.no_replace = no_replace;
    }

    /// Counts `n` bytes that were written to the file behind its back (a
    /// copy inside the kernel, at the end of the file), and moves the
    /// write position past them.
    pub(super) fn copied(&mut self, n: u64) -> io::Result<()> {
        self.len += n;
        let len = self.len;
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))?
            .seek(SeekFrom::Start(len))?;
        self.claim(len);
        Ok(())
    }

    /// The name was new when the upload began: placing it adds a file.
    pub(super) fn is_new_name(&self) -> bool {
        self.claimed_file
    }

    /// Claims `size` bytes of the user's quota for as long as the upload
    /// runs: the size it declared, so that uploads running at the same time
    /// count against each other from their first byte.
    pub fn claim(&mut self, size: u64) {
        if size > self.claimed {
            self.dir.inner.claims.add(size - self.claimed, 0);
            self.claimed = size;
        }
    }

    /// Claims `size` bytes like [`Upload::claim`] only if the user's usage
    /// then stays within `quota` bytes, counting what every other upload
    /// of the user claims at this moment: a body whose size is not known
    /// in advance claims its bytes this way as they arrive. Returns false
    /// (and claims nothing more) when it would not fit. O(1).
    pub fn claim_within(&mut self, size: u64, quota: u64) -> bool {
        if size <= self.claimed {
            return true;
        }
        // Counts not taken: the check that started the upload could not
        // read them either; the upload itself will tell.
        let Some(counts) = self.dir.inner.tally.get() else {
            self.claim(size);
            return true;
        };
        let others = self.dir.inner.usage(counts).bytes - self.claimed;
        if others.saturating_sub(self.given_back).saturating_add(size) > quota {
            return false;
        }
        self.claim(size);
        true
    }

    /// Appends bytes to the temporary file. After an error the upload is
    /// broken for good: every later call fails too.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this upload failed"));
        }
        let result = self.append(data);
        self.claim(self.len);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))?;
        file.write_all(data)?;
        self.len += data.len() as u64;
        if let Some(progress) = &mut self.writeback
            && self.len - progress.started >= WRITEBACK_CHUNK
        {
            let fd = file.as_fd();
            sys::start_writeback(fd, progress.started, self.len - progress.started)?;
            if progress.started > progress.awaited {
                sys::await_writeback(fd, progress.awaited, progress.started - progress.awaited)?;
                progress.awaited = progress.started;
            }
            progress.started = self.len;
        }
        Ok(())
    }

    /// How many bytes the file holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads bytes already written, at `offset`, without moving the write
    /// position (a resumed upload hashes what it holds).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file().read_at(buf, offset)
    }

    pub(super) fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("upload file is present until it is placed")
    }

    /// Cuts the file to `len` bytes and continues writing from there.
    pub(super) fn cut_to(&mut self, len: u64) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))?;
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        self.len = len;
        if let Some(progress) = &mut self.writeback {
            // The held bytes were never synced: hand them over with the
            // first chunk.
            *progress = Writeback::default();
        }
        Ok(())
    }

    /// Syncs the data (when asked) and renames the file over its final
    /// name. Returns the open file, the user directory and the name. On
    /// error nothing was renamed, and dropping the upload removes the
    /// temporary file.
    pub(super) fn into_place(
        mut self,
        folder: &Dir,
        fsync: bool,
    ) -> io::Result<(File, UserDir, FilePathBuf)> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this upload failed"));
        }
        let file = self.file.take().expect("upload placed twice");
        if fsync {
            // An error here is final: the kernel reports a failed
            // write-back once, so asking again could answer "synced" for
            // data that is lost.
            file.sync_data()?;
        }
        let tmp_name = self.tmp_name.as_deref().expect("upload placed twice");
        let leaf = self.path.as_path().leaf();
        if self.no_replace {
            self.tmp.rename_noreplace(tmp_name, folder, leaf.as_str())?;
        } else {
            self.tmp.rename(tmp_name, folder, leaf.as_str())?;
        }
        // The rename happened: nothing is left to remove.
        self.tmp_name = None;
        Ok((file, self.dir.clone(), self.path.clone()))
    }

    /// Moves the file to the user's partial area under its name, in place
    /// of an older partial, which is removed first: the move itself never
    /// replaces a file (another server may be claiming that one). Returns
    /// the open file, the user directory, the name, and the size of the
    /// older partial removed.
    pub(super) fn into_partial(
        mut self,
        partial: &Dir,
    ) -> io::Result<(File, UserDir, String, u64)> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this upload failed"));
        }
        let tmp_name = self.tmp_name.as_deref().expect("upload placed twice");
        let key = partial_key(self.path.as_path());
        let mut older = 0;
        if let Err(err) = self.tmp.rename_noreplace(tmp_name, partial, &key) {
            if err.kind() != io::ErrorKind::AlreadyExists {
                return Err(err);
            }
            // The newest interrupted upload of a name is the one kept.
            let meta = partial.stat(&key).map_err(|err| match err {
                super::StorageError::Io(err) => err,
                other => io::Error::other(other.to_string()),
            })?;
            if !meta.is_file() {
                return Err(io::Error::other("a partial that is not a regular file"));
            }
            match partial.remove(&key) {
                Ok(()) => older = meta.len(),
                // Claimed by a resume meanwhile.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
            // Should yet another one have come in between, this one is
            // dropped rather than put over it.
            self.tmp.rename_noreplace(tmp_name, partial, &key)?;
        }
        self.tmp_name = None;
        let file = self.file.take().expect("upload placed twice");
        Ok((file, self.dir.clone(), key, older))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Placed, kept as a partial or removed: either way the bytes are
        // counted where they are now, or not at all.
        let files = u64::from(self.claimed_file);
        self.dir.inner.claims.release(self.claimed, files);
        let Some(tmp_name) = self.tmp_name.take() else {
            return;
        };
        drop(self.file.take());
        if let Some(dropped) = &self.retiring
            && self.len >= retire::RETIRE_MIN
        {
            let retired = retire::Retiring::name_for(&tmp_name);
            match self.tmp.rename_noreplace(&tmp_name, &self.tmp, &retired) {
                Ok(()) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(err) => log::debug!("cannot retire {tmp_name}: {err}"),
            }
        }
        if let Err(err) = self.tmp.remove(&tmp_name) {
            log::error!("cannot remove temporary file {tmp_name}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Options, Storage};
    use super::*;
    use crate::integrity::Digest;
    use crate::protocol::path as name;

    fn synced() -> (tempfile::TempDir, Storage) {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::open(root.path(), Options::default()).unwrap();
        (root, storage)
    }

    #[test]
    fn a_synced_upload_is_handed_to_the_disk_chunk_by_chunk() {
        let (root, storage) = synced();
        let dir = storage.user_dir("alice").unwrap();
        let name = name::validate(b"big").unwrap();
        let mut upload = storage.begin_upload(&dir, name).unwrap();
        let block: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..20 {
            upload.write(&block).unwrap();
        }
        let progress = upload.writeback.unwrap();
        assert_eq!(
            progress.started,
            2 * WRITEBACK_CHUNK.div_ceil(1_000_000) * 1_000_000
        );
        assert_eq!(
            progress.awaited,
            WRITEBACK_CHUNK.div_ceil(1_000_000) * 1_000_000
        );
        storage.commit(upload, Digest::of(b"not checked")).unwrap();
        let stored = std::fs::read(root.path().join("alice/big")).unwrap();
        assert_eq!(stored.len(), 20_000_000);
        assert!(stored.chunks(1_000_000).all(|chunk| chunk == block));
    }

    #[test]
    fn a_failed_write_fails_the_upload_for_good() {
        let (root, storage) = synced();
        let dir = storage.user_dir("alice").unwrap();
        let name = name::validate(b"doc").unwrap();
        std::fs::write(root.path().join("alice/doc"), b"old").unwrap();
        // A file the upload cannot write to stands in for a full disk.
        let (tmp, tmp_name, _) = storage.create_tmp("upload").unwrap();
        let read_only = tmp.open_regular(&tmp_name, false).unwrap();
        let mut upload = Upload::new(
            read_only,
            &tmp,
            tmp_name,
            0,
            &dir,
            Held::Root,
            name,
            true,
            Claim::default(),
        );
        assert!(upload.write(b"new").is_err());
        assert!(upload.write(b"").is_err(), "a failure is sticky");
        assert!(storage.commit(upload, Digest::of(b"new")).is_err());
        assert_eq!(
            std::fs::read(root.path().join("alice/doc")).unwrap(),
            b"old"
        );
        assert!(storage.tmp().names().unwrap().is_empty());
    }
}
