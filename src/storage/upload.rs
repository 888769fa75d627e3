//! An upload in progress: a temporary file that becomes the named file on
//! [`Storage::commit`](super::Storage::commit), becomes a resumable partial
//! on [`Storage::keep_partial`](super::Storage::keep_partial), and is
//! removed when dropped otherwise.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::UserDir;
use crate::protocol::name::FileName;

#[derive(Debug)]
pub struct Upload {
    file: Option<File>,
    /// Empty once the file has left the temporary directory.
    tmp_path: PathBuf,
    dir: UserDir,
    name: String,
    /// Bytes in the file: the resumed offset plus what was written since.
    len: u64,
}

impl Upload {
    pub(super) fn new(
        file: File,
        tmp_path: PathBuf,
        len: u64,
        dir: &UserDir,
        name: FileName<'_>,
    ) -> Upload {
        Upload {
            file: Some(file),
            tmp_path,
            dir: dir.clone(),
            name: name.as_str().to_owned(),
            len,
        }
    }

    /// Appends bytes to the temporary file.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file_mut()?.write_all(data)?;
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

    fn file_mut(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))
    }

    /// Cuts the file to `len` bytes and continues writing from there.
    pub(super) fn cut_to(&mut self, len: u64) -> io::Result<()> {
        let file = self.file_mut()?;
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        self.len = len;
        Ok(())
    }

    /// Syncs the data (when asked) and renames the file over its final
    /// name. Returns the open file, the user directory and the name.
    pub(super) fn into_place(mut self, fsync: bool) -> io::Result<(File, UserDir, String)> {
        let file = self.file.take().expect("upload placed twice");
        if fsync {
            file.sync_data()?;
        }
        fs::rename(&self.tmp_path, self.dir.file(&self.name))?;
        // The rename happened: nothing is left to remove.
        self.tmp_path = PathBuf::new();
        Ok((file, self.dir.clone(), std::mem::take(&mut self.name)))
    }

    /// Moves the file to the user's partial area under its name, replacing
    /// an older partial. Returns the open file, the user directory and the
    /// name.
    pub(super) fn into_partial(mut self) -> io::Result<(File, UserDir, String)> {
        fs::rename(&self.tmp_path, self.dir.partial(&self.name))?;
        self.tmp_path = PathBuf::new();
        let file = self.file.take().expect("upload placed twice");
        Ok((file, self.dir.clone(), std::mem::take(&mut self.name)))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.tmp_path.as_os_str().is_empty() {
            return;
        }
        drop(self.file.take());
        if let Err(err) = fs::remove_file(&self.tmp_path) {
            log::error!(
                "cannot remove temporary file {}: {err}",
                self.tmp_path.display()
            );
        }
    }
}
