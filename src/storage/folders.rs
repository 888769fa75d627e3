//! Folders: where a path leads beneath a user's directory handle, and
//! the operations on folders (create, remove, remove a tree, move, copy,
//! describe).
//!
//! A path is resolved from the user's directory handle with
//! [`Dir::open_folder`] (one `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, or a walk of `O_NOFOLLOW`
//! opens), so no symlink in any component is ever followed, whenever it
//! was put there. Every operation then acts on the last name relative to
//! the folder handle it opened, exactly as on a single name at the root.
//!
//! Records follow the tree: the SHA-256 record of `a/b/c` is
//! `sums/a/b/c`, so moving a folder moves its records with one rename.
//! Partials and their hash states stay flat, one per path: a single name
//! keeps its name (the layout of servers before folders), a longer path is
//! keyed by `\x01` and the SHA-256 of the path (a control byte no name
//! holds, so no key of a path is ever the name of another).
//!
//! A removed tree is first renamed into the server's temporary directory
//! (so it is gone for every session at once, atomically), then emptied
//! there by [`Storage::housekeeping`] a bounded number of entries per turn
//! of the loop.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use super::dir::Dir;
use super::quota::Tally;
use super::record::{self, Identity};
use super::{DIR_MODE, Listing, ListingStep, PutLimits, PutRefusal, Storage, StorageError};
use super::{Upload, UserDir};
use crate::integrity::{Digest, Hasher};
use crate::protocol::path::{self, FilePath, FilePathBuf};
use crate::sys;

/// Entries of a removed tree deleted per turn of the loop. An unlink costs
/// about 25 µs on ext4 but now and then waits for the journal, so a turn
/// stays at a couple of milliseconds with 64 (a 100,000-entry folder: 250
/// of 256 unlinks took up to 94 ms on the development VM, and NOOPs of
/// other sessions waited 27-38 ms at the 99th percentile; with 64, see
/// `tests/it/folders.rs`).
pub(super) const TRASH_BUDGET: usize = 64;
/// Bytes a copy moves per step: large enough that the calls cost nothing
/// next to the data, small enough that a step takes about a millisecond
/// from the page cache.
const COPY_STEP: usize = 1024 * 1024;
/// How often a trashed folder is read again when something appeared in it
/// while it was emptied (an upload that held its handle).
const TRASH_PASSES: u8 = 3;

/// The folder a path's last name is in: the user's directory itself (as
/// [`Storage::files`] hands it out: from the open ones, or opened again and
/// checked to be the one found at login), or a folder opened beneath it.
#[derive(Debug)]
pub(super) enum Folder {
    Root(Arc<Dir>),
    Sub(Dir),
}

impl Deref for Folder {
    type Target = Dir;

    fn deref(&self) -> &Dir {
        match self {
            Folder::Root(dir) => dir,
            Folder::Sub(dir) => dir,
        }
    }
}

impl Folder {
    pub(super) fn into_held(self) -> Held {
        match self {
            // Not kept: an upload would hold the user's directory open
            // whether or not it is among the open ones, a descriptor per
            // upload beyond what a transfer costs (see `kept_dirs`).
            Folder::Root(_) => Held::Root,
            Folder::Sub(dir) => Held::Sub(Arc::new(dir)),
        }
    }
}

/// A [`Folder`] kept by an upload: a folder beneath the user's directory
/// by the handle it resolved when it began, so that nothing moved or
/// swapped in meanwhile redirects it; the user's directory itself by its
/// identity, through [`Storage::files`] when the upload is placed (a
/// directory moved away or replaced since is refused, never followed).
#[derive(Debug)]
pub(super) enum Held {
    Root,
    Sub(Arc<Dir>),
}

/// What [`Storage::stat`] tells of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub folder: bool,
    /// Bytes (0 for a folder).
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// The recorded SHA-256 of a file, when the record is current.
    pub sha256: Option<Digest>,
}

/// The key of the partial (and of its hash state) of `path`.
pub(super) fn partial_key(path: FilePath<'_>) -> String {
    match path.single() {
        Some(name) => name.as_str().to_owned(),
        None => format!("\u{1}{}", Digest::of(path.as_str().as_bytes())),
    }
}

/// A tree being removed from the temporary directory, depth first.
#[derive(Debug)]
pub(super) struct Trash {
    /// The folders being emptied, innermost last, each with its name in
    /// the folder before it (the first: in the temporary directory).
    frames: Vec<TrashFrame>,
    /// The user's counts, which get each removed file back; `None` for
    /// a tree of records.
    tally: Option<Arc<Tally>>,
}

#[derive(Debug)]
struct TrashFrame {
    /// A handle of its own: its read position is this frame's.
    dir: Dir,
    name: OsString,
    /// Directory records read and not yet taken: a batch at a time, so
    /// that a folder of any size costs a small buffer and bounded steps.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    passes: u8,
}

/// Bytes of directory records a frame reads at once.
const TRASH_READ: usize = 4096;

impl TrashFrame {
    fn new(dir: Dir, name: OsString, passes: u8) -> TrashFrame {
        TrashFrame {
            dir,
            name,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            passes,
        }
    }

    /// The next name in the folder (one `getdents64` now and then), or
    /// `None` at its end.
    fn next_name(&mut self) -> Option<OsString> {
        loop {
            if self.pos >= self.len {
                if self.buf.is_empty() {
                    self.buf = vec![0; TRASH_READ];
                }
                self.len = self.dir.read_entries(&mut self.buf).ok()?;
                self.pos = 0;
                if self.len == 0 {
                    return None;
                }
            }
            let (raw, next) = sys::next_dirent(&self.buf[..self.len], self.pos)?;
            self.pos = next;
            if raw != b"." && raw != b".." {
                return Some(OsString::from_vec(raw.to_vec()));
            }
        }
    }
}

/// The folder mirroring `folder` (the user's root for `None`) beneath
/// `base`, a record directory whose tree follows the user's (`sums/`,
/// `props/`); made with `create`, a stale record in the way removed.
/// `None` when there is none: records are never the only copy of
/// anything.
pub(super) fn mirror(base: Dir, folder: Option<FilePath<'_>>, create: bool) -> Option<Dir> {
    let Some(folder) = folder else {
        return Some(base);
    };
    if !create {
        return base.open_folder(folder.as_str()).ok();
    }
    let mut held: Option<Dir> = None;
    for name in folder.names() {
        let at = held.as_ref().unwrap_or(&base);
        let next = match at.open_dir(name.as_str()) {
            Ok(next) => next,
            Err(_) => {
                // A record of a file that had this name, or nothing.
                record::remove(at, name.as_str());
                at.ensure_dir(name.as_str(), DIR_MODE, false).ok()?
            }
        };
        held = Some(next);
    }
    held
}

impl Storage {
    /// The folder `path`'s last name is in, opened beneath the user's
    /// handle; [`StorageError::NoFolder`] when it does not exist.
    pub(super) fn folder_of(
        &self,
        dir: &UserDir,
        path: FilePath<'_>,
    ) -> Result<Folder, StorageError> {
        let files = self.files(dir)?;
        match path.parent() {
            None => Ok(Folder::Root(files)),
            Some(parent) => files.open_folder(parent.as_str()).map(Folder::Sub),
        }
    }

    /// The folder an upload places its file in (see [`Held`]).
    pub(super) fn held_folder(&self, dir: &UserDir, held: &Held) -> io::Result<Arc<Dir>> {
        match held {
            Held::Root => self.files(dir),
            Held::Sub(folder) => Ok(Arc::clone(folder)),
        }
    }

    /// The folder `path` itself (the user's directory for `None`).
    fn folder(&self, dir: &UserDir, path: Option<FilePath<'_>>) -> Result<Folder, StorageError> {
        let files = self.files(dir)?;
        let Some(path) = path else {
            return Ok(Folder::Root(files));
        };
        match files.open_folder(path.as_str()) {
            Ok(folder) => Ok(Folder::Sub(folder)),
            Err(StorageError::NoFolder) => {
                // Say which: the path is a file, or is not there.
                let parent = self.folder_of(dir, path)?;
                match parent.stat(path.leaf().as_str()) {
                    Ok(meta) if meta.is_file() => Err(StorageError::NotFolder),
                    Ok(_) => Err(StorageError::NotRegular),
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// The folder of `path`'s SHA-256 record, mirrored under `sums/`
    /// (opened for the command that needs it, see [`Storage::records`]);
    /// created (a stale record in the way removed) with `create`. `None`
    /// when there is none: records are never the only copy of anything.
    pub(super) fn sums_of(&self, dir: &UserDir, path: FilePath<'_>, create: bool) -> Option<Dir> {
        let sums = self.records(dir, super::SUMS_DIR).ok()?;
        mirror(sums, path.parent(), create)
    }

    /// Facts about `path`: what it is, its size and time, and its
    /// recorded SHA-256 (a file's; none when not recorded).
    pub fn stat(&self, dir: &UserDir, path: FilePath<'_>) -> Result<Facts, StorageError> {
        let folder = self.folder_of(dir, path)?;
        let leaf = path.leaf().as_str();
        let meta = folder.entry(leaf)?;
        if meta.is_dir {
            return Ok(Facts {
                folder: true,
                size: 0,
                mtime: meta.mtime,
                sha256: None,
            });
        }
        if !meta.is_file {
            return Err(StorageError::NotRegular);
        }
        let (file, meta) = folder.open_regular_read(leaf)?;
        Ok(Facts {
            folder: false,
            size: meta.len(),
            mtime: std::os::unix::fs::MetadataExt::mtime(&meta),
            sha256: self.stored_digest(dir, path, &file),
        })
    }

    /// The files and folders of the folder `path` (the user's directory
    /// for `None`), or with `recursive` of the whole tree beneath it, a
    /// batch at a time (see [`Listing`]).
    pub fn listing_of(
        &self,
        dir: &UserDir,
        path: Option<FilePath<'_>>,
        recursive: bool,
    ) -> Result<Listing, StorageError> {
        let folder = self.folder(dir, path).map_err(|err| match err {
            // The folder itself is missing: there is no such thing.
            StorageError::NoFolder => StorageError::NotFound,
            other => other,
        })?;
        // A subfolder was opened for this listing alone; the user's
        // directory is shared, so the listing reads from a handle of its
        // own (one open fewer for a subfolder).
        let own = match folder {
            Folder::Root(shared) => shared.reopen()?,
            Folder::Sub(own) => own,
        };
        Listing::new(own, recursive)
    }

    /// Creates the folder `path`; its parent must exist.
    pub fn mkdir(&self, dir: &UserDir, path: FilePath<'_>) -> Result<(), StorageError> {
        let folder = self.folder_of(dir, path)?;
        match folder.mkdir(path.leaf().as_str(), DIR_MODE) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::Exists);
            }
            Err(err) => return Err(err.into()),
        }
        if self.options.fsync {
            folder.sync()?;
        }
        Ok(())
    }

    /// Removes the empty folder `path`.
    pub fn rmdir(&self, dir: &UserDir, path: FilePath<'_>) -> Result<(), StorageError> {
        let folder = self.folder_of(dir, path)?;
        let leaf = path.leaf().as_str();
        let meta = folder.entry(leaf)?;
        if meta.is_file {
            return Err(StorageError::NotFolder);
        }
        if !meta.is_dir {
            return Err(StorageError::NotRegular);
        }
        // rmdir never follows: a symlink swapped in since is ENOTDIR.
        folder.rmdir(leaf).map_err(|err| match err.raw_os_error() {
            Some(libc::ENOTEMPTY | libc::EEXIST) => StorageError::NotEmpty,
            Some(libc::ENOTDIR) => StorageError::NotRegular,
            _ => err.into(),
        })?;
        self.trash_records(dir, path);
        self.forget_dead_props(dir, path, true);
        if self.options.fsync {
            folder.sync()?;
        }
        Ok(())
    }

    /// Removes `path` and, for a folder, everything beneath it: the folder
    /// is moved out of the user's tree at once (atomically), and emptied
    /// by [`Storage::housekeeping`] in bounded steps. Returns whether it
    /// was a folder.
    pub fn remove_tree(&self, dir: &UserDir, path: FilePath<'_>) -> Result<bool, StorageError> {
        let folder = self.folder_of(dir, path)?;
        let leaf = path.leaf().as_str();
        let meta = folder.entry(leaf)?;
        if meta.is_file {
            self.delete(dir, path)?;
            return Ok(false);
        }
        if !meta.is_dir {
            return Err(StorageError::NotRegular);
        }
        self.to_trash(&folder, leaf, Some(Arc::clone(&dir.inner.tally)))?;
        self.trash_records(dir, path);
        self.forget_dead_props(dir, path, true);
        if self.options.fsync {
            folder.sync()?;
        }
        Ok(true)
    }

    /// Moves the records of the folder `path` (if any) to the trash.
    fn trash_records(&self, dir: &UserDir, path: FilePath<'_>) {
        if let Some(sums) = self.sums_of(dir, path, false) {
            let leaf = path.leaf().as_str();
            if sums.entry(leaf).is_ok_and(|meta| meta.is_dir) {
                let _ = self.to_trash(&sums, leaf, None);
            }
        }
    }

    /// Renames the folder `name` of `folder` into the temporary directory
    /// and queues its removal.
    pub(super) fn to_trash(
        &self,
        folder: &Dir,
        name: &str,
        tally: Option<Arc<Tally>>,
    ) -> Result<(), StorageError> {
        let tmp = self.tmp();
        let trash_name = self.tmp_name("trash");
        folder
            .rename_noreplace(name, &tmp, &trash_name)
            .map_err(|err| match err.raw_os_error() {
                Some(libc::ENOENT) => StorageError::NotFound,
                _ => StorageError::Io(err),
            })?;
        self.queue_trash(OsString::from(trash_name), tally);
        Ok(())
    }

    /// Queues the removal of the folder `name` of the temporary directory
    /// (a removed tree, this server's or a dead one's).
    pub(super) fn queue_trash(&self, name: OsString, tally: Option<Arc<Tally>>) {
        let trashed = match self.tmp().open_dir(&name) {
            Ok(opened) => opened,
            Err(err) => {
                log::warn!(
                    "cannot open the removed folder {}: {err}",
                    name.to_string_lossy()
                );
                return;
            }
        };
        self.trash.borrow_mut().push(Trash {
            frames: vec![TrashFrame::new(trashed, name, 0)],
            tally,
        });
    }

    /// Whether removed trees are waiting to be emptied.
    pub(super) fn has_trash(&self) -> bool {
        !self.trash.borrow().is_empty()
    }

    /// Removes up to `budget` entries of removed trees; returns how many
    /// it removed.
    pub(super) fn empty_trash(&self, budget: usize) -> usize {
        let tmp = self.tmp();
        let mut trash = self.trash.borrow_mut();
        let mut removed = 0;
        let mut steps = 0;
        while steps < budget {
            let Some(job) = trash.last_mut() else {
                break;
            };
            steps += 1;
            let Some(frame) = job.frames.last_mut() else {
                trash.pop();
                continue;
            };
            let Some(name) = frame.next_name() else {
                let frame = job.frames.pop().expect("a frame");
                let parent = job.frames.last().map_or(&*tmp, |below| &below.dir);
                match parent.rmdir(&frame.name) {
                    Ok(()) => removed += 1,
                    Err(err)
                        if err.raw_os_error() == Some(libc::ENOTEMPTY)
                            && frame.passes < TRASH_PASSES =>
                    {
                        // Something arrived meanwhile: read it again, from
                        // its start.
                        if let Ok(dir) = frame.dir.reopen() {
                            job.frames
                                .push(TrashFrame::new(dir, frame.name, frame.passes + 1));
                        }
                    }
                    Err(err) => log::warn!(
                        "cannot remove the folder {}: {err}",
                        frame.name.to_string_lossy()
                    ),
                }
                continue;
            };
            let meta = match frame.dir.entry(&name) {
                Ok(meta) => meta,
                Err(_) => continue,
            };
            if meta.is_dir
                && let Ok(sub) = frame.dir.open_dir(&name)
            {
                job.frames.push(TrashFrame::new(sub, name, 0));
                continue;
            }
            // A file, or anything else: the name goes, nothing is followed
            // (a large file is freed in steps, see `retire.rs`).
            let len = if meta.is_file { meta.len } else { 0 };
            match self.remove_file(&frame.dir, &name, len) {
                Ok(()) => {
                    removed += 1;
                    if meta.is_file
                        && let Some(tally) = &job.tally
                    {
                        tally.change(|c| {
                            c.stored = c.stored.saturating_sub(meta.len);
                            c.files = c.files.saturating_sub(1);
                        });
                    }
                }
                Err(err) => log::warn!("cannot remove {}: {err}", name.to_string_lossy()),
            }
        }
        removed
    }

    /// Before a move or copy of `from` over `to` that replaces (WebDAV's
    /// `Overwrite: T`): removes `to` when it is there and the move could
    /// not take its place as it is (a folder, whatever it holds; a file
    /// where a folder goes), as [`Storage::remove_tree`] does. Returns
    /// whether it removed something. `from` must exist and must not lie
    /// beneath `to` (that would remove the source): else the error the
    /// move itself would give, and nothing is removed.
    pub fn replaced_first(
        &self,
        dir: &UserDir,
        from: FilePath<'_>,
        to: FilePath<'_>,
    ) -> Result<bool, StorageError> {
        if from == to {
            return Err(StorageError::SamePath);
        }
        if to.is_within(from) || from.is_within(to) {
            return Err(StorageError::IntoItself);
        }
        let source = self.folder_of(dir, from)?.stat(from.leaf().as_str())?;
        let target = match self.folder_of(dir, to) {
            Ok(folder) => match folder.stat(to.leaf().as_str()) {
                Ok(meta) => meta,
                Err(StorageError::NotFound) => return Ok(false),
                Err(err) => return Err(err),
            },
            // No parent: the move itself says so.
            Err(_) => return Ok(false),
        };
        if target.is_file() && source.is_file() {
            return Ok(false);
        }
        self.remove_tree(dir, to)?;
        Ok(true)
    }

    /// Moves (renames) `from` to `to` in one atomic step. Without
    /// `replace` an existing `to` is [`StorageError::Exists`]; with it, a
    /// file replaces a file and a folder an empty folder. The SHA-256
    /// record moves along. Returns whether something was replaced.
    pub fn rename(
        &self,
        dir: &UserDir,
        from: FilePath<'_>,
        to: FilePath<'_>,
        replace: bool,
    ) -> Result<bool, StorageError> {
        if from == to {
            return Err(StorageError::SamePath);
        }
        if to.is_within(from) {
            return Err(StorageError::IntoItself);
        }
        let source = self.folder_of(dir, from)?;
        let (from_leaf, to_leaf) = (from.leaf().as_str(), to.leaf().as_str());
        let meta = source.stat(from_leaf)?;
        let is_dir = meta.is_dir();
        if !is_dir && !meta.is_file() {
            return Err(StorageError::NotRegular);
        }
        let target = self.folder_of(dir, to)?;
        let digest = if is_dir {
            None
        } else {
            self.sums_of(dir, from, false).and_then(|sums| {
                record::read(&sums, from_leaf, &Identity::of(&meta), super::SHA256_KEY)
            })
        };
        // What the move replaces: the size of a file, 0 for a folder.
        let replaced = match target.stat(to_leaf) {
            Ok(_) if !replace => return Err(StorageError::Exists),
            Ok(old) if old.is_file() && !is_dir => Some(old.len()),
            Ok(old) if old.is_dir() && is_dir => Some(0),
            Ok(_) => return Err(StorageError::Exists),
            Err(StorageError::NotFound) => None,
            Err(err) => return Err(err),
        };
        let moved = if replace {
            if let Some(len) = replaced.filter(|_| !is_dir) {
                self.retire(&target, to_leaf, len);
            }
            source.rename(from_leaf, &target, to_leaf)
        } else {
            source.rename_noreplace(from_leaf, &target, to_leaf)
        };
        moved.map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST | libc::ENOTEMPTY | libc::EISDIR | libc::ENOTDIR) => {
                StorageError::Exists
            }
            // The kernel's own check that a folder is not moved beneath
            // itself (through handles someone moved meanwhile).
            Some(libc::EINVAL) => StorageError::IntoItself,
            Some(libc::ENOENT) => StorageError::NotFound,
            _ => StorageError::Io(err),
        })?;
        if let Some(size) = replaced.filter(|_| !is_dir) {
            dir.inner.tally.change(|c| {
                c.stored = c.stored.saturating_sub(size);
                c.files = c.files.saturating_sub(1);
            });
        }
        // The records follow: a file's is written again for the identity
        // the rename gave it (its change time moved); a folder's records
        // move with their folder.
        if is_dir {
            if let (Some(old), Some(new)) =
                (self.sums_of(dir, from, false), self.sums_of(dir, to, true))
            {
                record::remove(&new, to_leaf);
                let _ = new.rmdir(to_leaf);
                let _ = old.rename_noreplace(from_leaf, &new, to_leaf);
            }
        } else {
            if let Some(sums) = self.sums_of(dir, from, false) {
                record::remove(&sums, from_leaf);
            }
            if let Some(sums) = self.sums_of(dir, to, false) {
                record::remove(&sums, to_leaf);
            }
            if let Some(hex) = digest
                && let Some(sha256) = Digest::from_hex(hex.as_bytes())
                && let Ok(now) = target.stat(to_leaf)
                && Identity::of(&now).same_inode(&Identity::of(&meta))
            {
                self.record_digest(dir, to, &Identity::of(&now), sha256);
            }
        }
        self.move_dead_props(dir, from, to, is_dir);
        if self.options.fsync {
            source.sync()?;
            target.sync()?;
        }
        Ok(replaced.is_some())
    }

    /// Starts a copy of `from` to `to` on the server: a file within
    /// `limits` as an upload of its size, a folder (to a path that does not
    /// exist yet) as a new folder and a copy of each file beneath it, each
    /// within `limits`. [`Copying::step`] moves the bytes a step at a
    /// time, [`Storage::finish_copy`] puts the (last) file in place.
    pub fn begin_copy(
        &self,
        dir: &UserDir,
        from: FilePath<'_>,
        to: FilePath<'_>,
        replace: bool,
        limits: PutLimits,
    ) -> Result<Copying, PutRefusal> {
        if from == to {
            return Err(StorageError::SamePath.into());
        }
        let source = self.folder_of(dir, from)?;
        if source.entry(from.leaf().as_str())?.is_dir {
            if to.is_within(from) {
                return Err(StorageError::IntoItself.into());
            }
            let folder = source
                .open_dir(from.leaf().as_str())
                .map_err(StorageError::from)?;
            let listing = Listing::new(folder, true)?;
            // A folder copy makes a new folder: it never replaces one.
            self.mkdir(dir, to)?;
            return Ok(Copying(Kind::Tree(Box::new(TreeCopy {
                dir: dir.clone(),
                listing,
                from: from.to_owned(),
                to: to.to_owned(),
                limits,
                current: None,
                files: 0,
                bytes: 0,
            }))));
        }
        drop(source);
        self.begin_file_copy(dir, from, to, replace, limits)
            .map(|file| Copying(Kind::File(Box::new(file))))
    }

    fn begin_file_copy(
        &self,
        dir: &UserDir,
        from: FilePath<'_>,
        to: FilePath<'_>,
        replace: bool,
        limits: PutLimits,
    ) -> Result<FileCopy, PutRefusal> {
        let (file, meta) = self.open_read(dir, from)?;
        let target = self.folder_of(dir, to)?;
        match target.stat(to.leaf().as_str()) {
            Ok(_) if !replace => return Err(StorageError::Exists.into()),
            Ok(old) if !old.is_file() => return Err(StorageError::Exists.into()),
            Ok(_) | Err(StorageError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
        drop(target);
        let sha256 = self.stored_digest(dir, from, &file);
        let size = meta.len();
        let started = self.begin_put(dir, to, Some(size), None, limits)?;
        let mut upload = started.upload;
        upload.no_replace(!replace);
        Ok(FileCopy {
            hasher: sha256.is_none().then(Hasher::new),
            sha256,
            source: file,
            upload,
            size,
            done: 0,
            kernel: true,
            existed: started.existed,
            props: self.dead_props(dir, Some(from), false),
        })
    }

    /// Puts a finished copy in place, like an upload; returns what was
    /// copied.
    pub fn finish_copy(&self, copying: Copying) -> Result<Copied, StorageError> {
        match copying.0 {
            Kind::File(file) => {
                let (size, sha256, existed) = self.finish_file_copy(*file)?;
                Ok(Copied {
                    files: 1,
                    size,
                    sha256: Some(sha256),
                    existed,
                })
            }
            Kind::Tree(tree) => Ok(Copied {
                files: tree.files,
                size: tree.bytes,
                sha256: None,
                existed: false,
            }),
        }
    }

    fn finish_file_copy(&self, copying: FileCopy) -> Result<(u64, Digest, bool), StorageError> {
        let FileCopy {
            sha256,
            hasher,
            upload,
            size,
            existed,
            props,
            ..
        } = copying;
        let sha256 = match (sha256, hasher) {
            (Some(sha256), _) => sha256,
            (None, Some(hasher)) => hasher.finish(),
            (None, None) => return Err(io::Error::other("copy without a digest").into()),
        };
        if upload.len() != size {
            return Err(io::Error::other("the source changed size during the copy").into());
        }
        let (dir, to, _) = upload.target();
        let (dir, to) = (dir.clone(), to.as_str().to_owned());
        self.commit(upload, sha256).map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                StorageError::Exists
            } else {
                StorageError::Io(err)
            }
        })?;
        self.copy_dead_props(&dir, &to, &props);
        Ok((size, sha256, existed))
    }

    /// Bytes and number of the regular files of the user's whole tree.
    pub(super) fn count_tree(&self, dir: &UserDir) -> Result<(u64, u64, bool), StorageError> {
        let files = self.files(dir)?;
        let mut listing = Listing::new(files.reopen()?, true)?;
        let (mut bytes, mut files, mut folders) = (0, 0, false);
        loop {
            match listing.next_entry()? {
                ListingStep::Entry(entry) if !entry.folder => {
                    bytes += entry.size;
                    files += 1;
                }
                ListingStep::Entry(_) => folders = true,
                ListingStep::Skipped => {}
                ListingStep::End => return Ok((bytes, files, folders)),
            }
        }
    }
}

/// A copy on the server in progress (see [`Storage::begin_copy`]).
#[derive(Debug)]
pub struct Copying(Kind);

#[derive(Debug)]
enum Kind {
    File(Box<FileCopy>),
    Tree(Box<TreeCopy>),
}

/// What [`Storage::finish_copy`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Files copied (1 for a file).
    pub files: u64,
    /// Their bytes.
    pub size: u64,
    /// A file's SHA-256 (none for a folder).
    pub sha256: Option<Digest>,
    /// A file was replaced.
    pub existed: bool,
}

/// A folder being copied: its tree listed a step at a time, each folder
/// made and each file copied in turn.
#[derive(Debug)]
struct TreeCopy {
    dir: UserDir,
    listing: Listing,
    from: FilePathBuf,
    to: FilePathBuf,
    limits: PutLimits,
    current: Option<FileCopy>,
    files: u64,
    bytes: u64,
}

impl Copying {
    /// Takes the next step (at most [`COPY_STEP`] bytes, or one entry of
    /// a folder's tree); true when everything is copied. A folder copy
    /// that fails part-way keeps what it copied so far.
    pub fn step(&mut self, storage: &Storage) -> Result<bool, PutRefusal> {
        let tree = match &mut self.0 {
            Kind::File(file) => return file.step().map_err(|err| StorageError::Io(err).into()),
            Kind::Tree(tree) => tree,
        };
        if let Some(file) = &mut tree.current {
            if file.step().map_err(StorageError::Io)? {
                let file = tree.current.take().expect("a file being copied");
                let (size, _, _) = storage.finish_file_copy(file)?;
                tree.files += 1;
                tree.bytes += size;
            }
            return Ok(false);
        }
        let entry = match tree.listing.next_entry()? {
            ListingStep::End => return Ok(true),
            ListingStep::Skipped => return Ok(false),
            ListingStep::Entry(entry) => entry,
        };
        let to = format!("{}/{}", tree.to.as_str(), entry.name);
        let Some(to) = path::validate(to.as_bytes()) else {
            let err = io::Error::other("a path of the copy is longer than a path may be");
            return Err(StorageError::Io(err).into());
        };
        if entry.folder {
            storage.mkdir(&tree.dir, to)?;
        } else {
            let from = format!("{}/{}", tree.from.as_str(), entry.name);
            let from = path::validate(from.as_bytes()).expect("a path beneath a path");
            let file = storage.begin_file_copy(&tree.dir, from, to, false, tree.limits)?;
            tree.current = Some(file);
        }
        Ok(false)
    }

    /// Bytes of the file being copied (0 for a folder).
    pub fn size(&self) -> u64 {
        match &self.0 {
            Kind::File(file) => file.size,
            Kind::Tree(_) => 0,
        }
    }
}

/// One file being copied.
#[derive(Debug)]
struct FileCopy {
    source: File,
    upload: Upload,
    size: u64,
    done: u64,
    /// The source's recorded digest, which the copy shares.
    sha256: Option<Digest>,
    /// Without a record, the bytes are hashed as they are copied.
    hasher: Option<Hasher>,
    /// `copy_file_range` still works here.
    kernel: bool,
    existed: bool,
    /// The source's WebDAV dead properties, which the copy gets.
    props: Vec<super::DeadProp>,
}

impl FileCopy {
    /// Copies the next step of at most [`COPY_STEP`] bytes; true when the
    /// whole file is copied.
    fn step(&mut self) -> io::Result<bool> {
        let want = (self.size - self.done).min(COPY_STEP as u64) as usize;
        if want == 0 {
            return Ok(true);
        }
        if self.kernel && self.hasher.is_none() {
            use std::os::fd::AsFd;
            match sys::copy_file_range(
                self.source.as_fd(),
                self.done,
                self.upload.file().as_fd(),
                self.done,
                want,
            ) {
                Ok(0) => return Err(io::Error::other("the source ended early")),
                Ok(n) => {
                    self.upload.copied(n as u64)?;
                    self.done += n as u64;
                    return Ok(self.done == self.size);
                }
                // Not between these files (another file system, an old
                // kernel): the bytes go through the server.
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                    ) =>
                {
                    self.kernel = false;
                }
                Err(err) => return Err(err),
            }
        }
        let mut buf = vec![0; want];
        let n = std::os::unix::fs::FileExt::read_at(&self.source, &mut buf, self.done)?;
        if n == 0 {
            return Err(io::Error::other("the source ended early"));
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.upload.write(&buf[..n])?;
        self.done += n as u64;
        Ok(self.done == self.size)
    }
}
