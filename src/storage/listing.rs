//! A user's files read a batch at a time, so that a listing holds a small
//! buffer whatever the size of the directory, and its caller can spread
//! the work over many turns of the event loop.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::dir::Dir;
use super::{Entry, StorageError};
use crate::protocol::name;
use crate::sys;

/// Bytes of directory records read at once: about 35 entries of 200-byte
/// names, 250 of short ones; the only memory a listing holds besides
/// the entry it hands out.
const READ_BUF: usize = 8 * 1024;

/// The regular files of a user's directory, in the order the directory
/// gives them (unspecified; nothing is sorted, which would need every
/// name at once). An entry added or removed while the listing runs may or
/// may not be in it; every other entry is in it exactly once.
#[derive(Debug)]
pub struct Listing {
    /// A handle of its own: its read position is this listing's.
    dir: Dir,
    buf: Vec<u8>,
    /// Records in `buf[..len]`; the next starts at `pos`.
    pos: usize,
    len: usize,
    ended: bool,
}

impl Listing {
    pub(super) fn new(files: &Dir) -> Result<Listing, StorageError> {
        Ok(Listing {
            dir: files.reopen()?,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            ended: false,
        })
    }

    /// The next regular file; [`Step::Skipped`] when the
    /// [`Listing::SKIP_LIMIT`] entries it looked at are all left out;
    /// [`Step::End`] at the end. Each call does bounded work: at most
    /// [`Listing::SKIP_LIMIT`] `getdents64` and `fstatat` calls.
    pub fn next_entry(&mut self) -> Result<Step, StorageError> {
        for _ in 0..Self::SKIP_LIMIT {
            if self.pos >= self.len {
                if self.ended {
                    return Ok(Step::End);
                }
                if self.buf.is_empty() {
                    self.buf = vec![0; READ_BUF];
                }
                let n = self.dir.read_entries(&mut self.buf)?;
                if n == 0 {
                    self.ended = true;
                    // Nothing more to read: give the buffer back now.
                    self.buf = Vec::new();
                    return Ok(Step::End);
                }
                (self.pos, self.len) = (0, n);
            }
            let Some((raw, next)) = sys::next_dirent(&self.buf[..self.len], self.pos) else {
                return Err(StorageError::Io(std::io::Error::other(
                    "malformed directory record",
                )));
            };
            self.pos = next;
            let Ok(name) = std::str::from_utf8(raw) else {
                continue;
            };
            // `.` and `..` are not valid names either.
            if !name::is_valid(name) {
                continue;
            }
            let meta = match self.dir.entry(OsStr::from_bytes(raw)) {
                Ok(meta) => meta,
                // Gone meanwhile.
                Err(StorageError::NotFound | StorageError::NotRegular) => continue,
                Err(err) => return Err(err),
            };
            if meta.is_file {
                return Ok(Step::Entry(Entry {
                    name: name.to_owned(),
                    size: meta.len,
                    mtime: meta.mtime,
                    version: meta.version(),
                }));
            }
        }
        Ok(Step::Skipped)
    }

    /// Entries that are not listed (not regular files, names that break
    /// the rules) looked at in one [`Listing::next_entry`] before it
    /// returns anyway, so that no call does unbounded work.
    pub const SKIP_LIMIT: usize = 64;
}

/// What one [`Listing::next_entry`] found.
#[derive(Debug)]
pub enum Step {
    Entry(Entry),
    /// Only entries that are not listed, [`Listing::SKIP_LIMIT`] of them.
    Skipped,
    End,
}
