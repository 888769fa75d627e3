//! A user's files and folders read a batch at a time, so that a listing holds a small
//! buffer whatever the size of the directory, and its caller can spread
//! the work over many turns of the event loop.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::dir::Dir;
use super::{Entry, StorageError};
use crate::protocol::{name, path};
use crate::sys;

/// Bytes of directory records read at once: about 35 entries of 200-byte
/// names, 250 of short ones; the only memory a listing holds besides
/// the entry it hands out.
const READ_BUF: usize = 8 * 1024;

/// The regular files and folders of a user's folder (or of the whole tree
/// beneath it), in the order the directory gives them (unspecified;
/// nothing is sorted, which would need every name at once). An entry
/// added or removed while the listing runs may or may not be in it; every
/// other entry is in it exactly once.
///
/// A recursive listing goes depth first: a folder's entry comes before its
/// content. It holds one open handle and one read buffer per level it is
/// in, at most [`path::MAX_DEPTH`] of them; deeper folders are listed but
/// not entered.
#[derive(Debug)]
pub struct Listing {
    /// The folders being read, the innermost last.
    frames: Vec<Frame>,
    recursive: bool,
}

#[derive(Debug)]
struct Frame {
    /// A handle of its own: its read position is this listing's.
    dir: Dir,
    /// The path of this folder relative to the listed one, with a final
    /// `/` (empty for the listed folder itself).
    prefix: String,
    buf: Vec<u8>,
    /// Records in `buf[..len]`; the next starts at `pos`.
    pos: usize,
    len: usize,
}

impl Listing {
    /// The listing of `folder`, a handle of its own: its read position is
    /// the listing's (a shared handle is [`Dir::reopen`]ed first).
    pub(super) fn new(folder: Dir, recursive: bool) -> Result<Listing, StorageError> {
        Ok(Listing {
            frames: vec![Frame {
                dir: folder,
                prefix: String::new(),
                buf: Vec::new(),
                pos: 0,
                len: 0,
            }],
            recursive,
        })
    }

    /// The next regular file or folder; [`Step::Skipped`] when the
    /// [`Listing::SKIP_LIMIT`] entries it looked at are all left out;
    /// [`Step::End`] at the end. Each call does bounded work: at most
    /// [`Listing::SKIP_LIMIT`] `getdents64` and `fstatat` calls, and one
    /// folder opened.
    pub fn next_entry(&mut self) -> Result<Step, StorageError> {
        for _ in 0..Self::SKIP_LIMIT {
            let depth = self.frames.len();
            let Some(frame) = self.frames.last_mut() else {
                return Ok(Step::End);
            };
            if frame.pos >= frame.len {
                if frame.buf.is_empty() {
                    frame.buf = vec![0; READ_BUF];
                }
                let n = frame.dir.read_entries(&mut frame.buf)?;
                if n == 0 {
                    // Nothing more to read: give the buffer back now.
                    self.frames.pop();
                    continue;
                }
                (frame.pos, frame.len) = (0, n);
            }
            let Some((raw, next)) = sys::next_dirent(&frame.buf[..frame.len], frame.pos) else {
                return Err(StorageError::Io(std::io::Error::other(
                    "malformed directory record",
                )));
            };
            frame.pos = next;
            let Ok(name) = std::str::from_utf8(raw) else {
                continue;
            };
            // `.` and `..` are not valid names either.
            if !name::is_valid(name) {
                continue;
            }
            let meta = match frame.dir.entry(OsStr::from_bytes(raw)) {
                Ok(meta) => meta,
                // Gone meanwhile.
                Err(StorageError::NotFound | StorageError::NotRegular) => continue,
                Err(err) => return Err(err),
            };
            let path = format!("{}{name}", frame.prefix);
            if meta.is_dir && self.recursive && depth < path::MAX_DEPTH {
                // Opened without following anything: a folder swapped for
                // a symlink (or removed) since the look is left out, never
                // entered. Any other failure (out of descriptors, I/O) ends
                // the listing with an error: a listing that silently left a
                // folder out would be taken as the whole tree by a copy,
                // the quota's count or a sync.
                let sub = match frame.dir.open_dir(OsStr::from_bytes(raw)) {
                    Ok(sub) => sub,
                    Err(err)
                        if matches!(
                            err.kind(),
                            std::io::ErrorKind::NotADirectory | std::io::ErrorKind::NotFound
                        ) =>
                    {
                        continue;
                    }
                    Err(err) => return Err(StorageError::Io(err)),
                };
                self.frames.push(Frame {
                    dir: sub,
                    prefix: format!("{path}/"),
                    buf: Vec::new(),
                    pos: 0,
                    len: 0,
                });
            }
            if meta.is_file || meta.is_dir {
                return Ok(Step::Entry(Entry {
                    name: path,
                    folder: meta.is_dir,
                    size: if meta.is_dir { 0 } else { meta.len },
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
