//! An upload in progress: a temporary file that becomes the named file on
//! [`Storage::commit`](super::Storage::commit), becomes a resumable partial
//! on [`Storage::keep_partial`](super::Storage::keep_partial), and is
//! removed when dropped otherwise.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::UserDir;
use super::dir::Dir;
use crate::protocol::name::FileName;

#[derive(Debug)]
pub struct Upload {
    file: Option<File>,
    /// The server's temporary directory, which holds the file until it is
    /// placed.
    tmp: Arc<Dir>,
    /// The file's name in `tmp`; `None` once it has left it.
    tmp_name: Option<String>,
    dir: UserDir,
    name: String,
    /// Bytes in the file: the resumed offset plus what was written since.
    len: u64,
    /// A write failed: the file's content is not what the
    /// client sent, so it must never be placed.
    failed: bool,
}

impl Upload {
    pub(super) fn new(
        file: File,
        tmp: &Arc<Dir>,
        tmp_name: String,
        len: u64,
        dir: &UserDir,
        name: FileName<'_>,
    ) -> Upload {
        Upload {
            file: Some(file),
            tmp: Arc::clone(tmp),
            tmp_name: Some(tmp_name),
            dir: dir.clone(),
            name: name.as_str().to_owned(),
            len,
            failed: false,
        }
    }

    /// Appends bytes to the temporary file. After an error the upload is
    /// broken for good: every later call fails too.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this upload failed"));
        }
        let result = self.append(data);
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
        Ok(())
    }

    /// Syncs the data (when asked) and renames the file over its final
    /// name. Returns the open file, the user directory and the name. On
    /// error nothing was renamed, and dropping the upload removes the
    /// temporary file.
    pub(super) fn into_place(mut self, fsync: bool) -> io::Result<(File, UserDir, String)> {
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
        self.tmp
            .rename(tmp_name, &self.dir.inner.files, &self.name)?;
        // The rename happened: nothing is left to remove.
        self.tmp_name = None;
        Ok((file, self.dir.clone(), std::mem::take(&mut self.name)))
    }

    /// Moves the file to the user's partial area under its name, replacing
    /// an older partial. Returns the open file, the user directory and the
    /// name.
    pub(super) fn into_partial(mut self) -> io::Result<(File, UserDir, String)> {
        if self.failed {
            return Err(io::Error::other("an earlier write of this upload failed"));
        }
        let tmp_name = self.tmp_name.as_deref().expect("upload placed twice");
        self.tmp
            .rename(tmp_name, &self.dir.inner.partial, &self.name)?;
        self.tmp_name = None;
        let file = self.file.take().expect("upload placed twice");
        Ok((file, self.dir.clone(), std::mem::take(&mut self.name)))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(tmp_name) = self.tmp_name.take() else {
            return;
        };
        drop(self.file.take());
        if let Err(err) = self.tmp.remove(&tmp_name) {
            log::error!("cannot remove temporary file {tmp_name}: {err}");
        }
    }
}
