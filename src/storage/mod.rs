//! Per-user file storage: the narrow interface the connection asks.
//!
//! Checked names in, open handles out. Layout under the storage root:
//!
//! ```text
//! <root>/                          0700
//!   <user>/                        0700, one per user, created on first login
//!     <name>                       0600, complete files only
//!   .ferry/                        the server's own (usernames never start with '.')
//!     tmp/                         uploads in progress, emptied at start-up
//!     users/<user>/
//!       sums/<name>                SHA-256 record of <user>/<name>
//!       partial/<name>             bytes of an interrupted upload of <name>
//!       partial-sums/<name>        saved hash state of those bytes
//! ```
//!
//! Uploads never write in place: they go to a fresh file in `.ferry/tmp/`,
//! which is renamed over the final name only when every byte has arrived
//! (and has been synced, unless fsync is off). An upload that is cut off
//! is moved to `partial/` instead, where a later upload of the same name
//! can continue it, until it expires. A download keeps its open handle, so
//! a replace or delete of the same name during it leaves it the complete
//! old content. Only regular files are ever opened: symlinks, directories,
//! FIFOs and devices in a user directory are refused without being
//! followed.
//!
//! The SHA-256 of every stored file is kept in a sidecar record ([`record`])
//! tied to the file's identity, so asking for it costs no re-read.

mod record;
mod upload;

use std::cell::Cell;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::integrity::{Digest, Hasher};
use crate::protocol::name::{self, FileName};

pub use record::Identity;
pub use upload::Upload;

/// Mode of the storage root and of every user directory: private to the
/// server's own user.
const DIR_MODE: u32 = 0o700;
/// Mode of stored files.
const FILE_MODE: u32 = 0o600;
/// The server's private area under the root; its name starts with `.`, which
/// no username can, so it never collides with a user directory.
const PRIVATE_DIR: &str = ".ferry";
const TMP_DIR: &str = "tmp";
const USERS_DIR: &str = "users";
const SUMS_DIR: &str = "sums";
const PARTIAL_DIR: &str = "partial";
const PARTIAL_SUMS_DIR: &str = "partial-sums";
/// Record keys.
const SHA256_KEY: &str = "sha256";
const STATE_KEY: &str = "sha256-state";

/// How long an interrupted upload is kept for resuming by default.
pub const DEFAULT_PARTIAL_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How a storage root is used.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sync uploads (data and directory) before acknowledging them.
    pub fsync: bool,
    /// Interrupted uploads older than this (since their last byte) are
    /// removed.
    pub partial_ttl: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            fsync: true,
            partial_ttl: DEFAULT_PARTIAL_TTL,
        }
    }
}

/// Why a storage request failed. Mapped to replies in `protocol::reply`.
#[derive(Debug)]
pub enum StorageError {
    /// No file of that name.
    NotFound,
    /// The name exists but is not a regular file (symlink, directory, FIFO,
    /// device, socket): never opened, never followed.
    NotRegular,
    /// A resumed upload asked to start past the bytes held for it.
    OffsetPastHeld { offset: u64, held: u64 },
    /// The file system failed (disk full, permissions, I/O error).
    Io(io::Error),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("no such file"),
            StorageError::NotRegular => f.write_str("not a regular file"),
            StorageError::OffsetPastHeld { offset, held } => {
                write!(f, "offset {offset} past the {held} bytes held")
            }
            StorageError::Io(err) => write!(f, "{err}"),
        }
    }
}

impl From<io::Error> for StorageError {
    fn from(err: io::Error) -> StorageError {
        match err.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound,
            _ if err.raw_os_error() == Some(libc::ELOOP) => StorageError::NotRegular,
            _ => StorageError::Io(err),
        }
    }
}

/// One file in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
}

/// The storage root. Exactly one server may use a root at a time.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    tmp: PathBuf,
    options: Options,
    next_tmp: Cell<u64>,
}

/// A user's private directory and the server's records about it, handed
/// out after login.
#[derive(Debug, Clone)]
pub struct UserDir {
    path: PathBuf,
    /// `.ferry/users/<user>`: the server's records about this user.
    records: PathBuf,
}

impl UserDir {
    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn sums(&self, name: &str) -> PathBuf {
        self.records.join(SUMS_DIR).join(name)
    }

    fn partial(&self, name: &str) -> PathBuf {
        self.records.join(PARTIAL_DIR).join(name)
    }

    fn partial_sums(&self, name: &str) -> PathBuf {
        self.records.join(PARTIAL_SUMS_DIR).join(name)
    }
}

/// A continued upload: the claimed partial, cut to the requested offset,
/// and the hash state of its bytes when it was saved for exactly that
/// offset (otherwise the caller hashes the first `offset` bytes again).
#[derive(Debug)]
pub struct Resumed {
    pub upload: Upload,
    pub hasher: Option<Hasher>,
}

impl Storage {
    /// Opens (and creates, mode 0700) the storage root, removes the
    /// temporary files of uploads that a crash left behind, and removes
    /// interrupted uploads that have expired.
    pub fn open(root: &Path, options: Options) -> io::Result<Storage> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)?;
        let private = root.join(PRIVATE_DIR);
        let tmp = private.join(TMP_DIR);
        for dir in [&tmp, &private.join(USERS_DIR)] {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
        }
        let storage = Storage {
            root: root.to_path_buf(),
            tmp,
            options,
            next_tmp: Cell::new(0),
        };
        storage.remove_stale_tmp()?;
        storage.remove_expired_partials()?;
        Ok(storage)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn remove_stale_tmp(&self) -> io::Result<()> {
        let mut stale = 0;
        for entry in fs::read_dir(&self.tmp)? {
            let path = entry?.path();
            match fs::remove_file(&path) {
                Ok(()) => stale += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                // Something ferryd did not put there (a directory, a file it
                // may not remove): temporary names cannot collide with it,
                // so it is reported rather than made fatal.
                Err(err) => log::warn!("cannot remove {}: {err}", path.display()),
            }
        }
        if stale > 0 {
            log::info!("removed {stale} stale temporary upload file(s)");
        }
        Ok(())
    }

    fn remove_expired_partials(&self) -> io::Result<()> {
        let mut expired = 0;
        for user in fs::read_dir(self.root.join(PRIVATE_DIR).join(USERS_DIR))? {
            let user = user?.path();
            let Ok(partials) = fs::read_dir(user.join(PARTIAL_DIR)) else {
                continue;
            };
            for entry in partials {
                let entry = entry?;
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if self.is_expired(&meta) {
                    let _ = fs::remove_file(entry.path());
                    record::remove(&user.join(PARTIAL_SUMS_DIR).join(entry.file_name()));
                    expired += 1;
                }
            }
        }
        if expired > 0 {
            log::info!("removed {expired} expired partial upload(s)");
        }
        Ok(())
    }

    fn is_expired(&self, meta: &fs::Metadata) -> bool {
        let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        written
            .elapsed()
            .is_ok_and(|age| age > self.options.partial_ttl)
    }

    /// A fresh path in the temporary directory.
    fn tmp_path(&self, kind: &str) -> PathBuf {
        let serial = self.next_tmp.get();
        self.next_tmp.set(serial + 1);
        self.tmp
            .join(format!("{kind}-{}-{serial}", std::process::id()))
    }

    /// The directory of `user` (a valid username), created mode 0700 on
    /// first use, with the server's record directories for it.
    pub fn user_dir(&self, user: &str) -> io::Result<UserDir> {
        let path = self.root.join(user);
        create_private_dir(&path)?;
        let records = self.root.join(PRIVATE_DIR).join(USERS_DIR).join(user);
        create_private_dir(&records)?;
        for sub in [SUMS_DIR, PARTIAL_DIR, PARTIAL_SUMS_DIR] {
            create_private_dir(&records.join(sub))?;
        }
        Ok(UserDir { path, records })
    }

    /// The user's regular files, sorted by name (byte order). Names that
    /// break the rules and anything that is not a regular file are left out.
    pub fn list(&self, dir: &UserDir) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(&dir.path)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name::is_valid(&name) {
                continue;
            }
            // DirEntry::metadata does not follow symlinks.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(StorageError::Io(err)),
            };
            if meta.file_type().is_file() {
                entries.push(Entry {
                    name,
                    size: meta.len(),
                    mtime: meta.mtime(),
                });
            }
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// What a user stores now: bytes and number of regular files (partials
    /// of interrupted uploads are not counted).
    pub fn usage(&self, dir: &UserDir) -> Result<(u64, u64), StorageError> {
        let entries = self.list(dir)?;
        Ok((entries.iter().map(|e| e.size).sum(), entries.len() as u64))
    }

    /// The size of `name` if it is a regular file now, else `None`.
    pub fn size_of(&self, dir: &UserDir, name: FileName<'_>) -> Option<u64> {
        fs::symlink_metadata(dir.file(name.as_str()))
            .ok()
            .filter(|meta| meta.is_file())
            .map(|meta| meta.len())
    }

    /// Opens a regular file for reading and returns it with its size at the
    /// moment of opening.
    pub fn open_read(
        &self,
        dir: &UserDir,
        name: FileName<'_>,
    ) -> Result<(File, u64), StorageError> {
        let file = open_regular(&dir.file(name.as_str()), false)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// The recorded SHA-256 of `file` (opened from `name`), if the record
    /// still describes it.
    pub fn stored_digest(&self, dir: &UserDir, name: FileName<'_>, file: &File) -> Option<Digest> {
        let identity = Identity::of_file(file).ok()?;
        let hex = record::read(&dir.sums(name.as_str()), &identity, SHA256_KEY)?;
        Digest::from_hex(hex.as_bytes())
    }

    /// Records the SHA-256 of the file `name` had the identity `identity`,
    /// so the next request need not read it. Best effort: a failure only
    /// costs a re-read later.
    pub fn remember_digest(
        &self,
        dir: &UserDir,
        name: FileName<'_>,
        identity: &Identity,
        sha256: Digest,
    ) {
        let dest = dir.sums(name.as_str());
        let tmp = self.tmp_path("sum");
        if let Err(err) = record::write(&tmp, &dest, identity, SHA256_KEY, &sha256.to_string()) {
            log::warn!("cannot record the digest of {}: {err}", dest.display());
        }
    }

    /// How many bytes of an interrupted upload of `name` are held (0 when
    /// there is none, or it expired).
    pub fn partial_len(&self, dir: &UserDir, name: FileName<'_>) -> Result<u64, StorageError> {
        Ok(self.partial(dir, name)?.map_or(0, |meta| meta.len()))
    }

    /// The metadata of the live partial of `name`; an expired one is
    /// removed and reported as none.
    fn partial(
        &self,
        dir: &UserDir,
        name: FileName<'_>,
    ) -> Result<Option<fs::Metadata>, StorageError> {
        let path = dir.partial(name.as_str());
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StorageError::Io(err)),
        };
        if !meta.is_file() {
            return Err(StorageError::NotRegular);
        }
        if self.is_expired(&meta) {
            self.discard_partial(dir, name);
            return Ok(None);
        }
        Ok(Some(meta))
    }

    fn discard_partial(&self, dir: &UserDir, name: FileName<'_>) {
        record::remove(&dir.partial(name.as_str()));
        record::remove(&dir.partial_sums(name.as_str()));
    }

    /// Checks that `name` can receive an upload: absent, or a regular file.
    fn check_target(&self, dir: &UserDir, name: FileName<'_>) -> Result<PathBuf, StorageError> {
        let final_path = dir.file(name.as_str());
        match fs::symlink_metadata(&final_path) {
            Ok(meta) if !meta.file_type().is_file() => Err(StorageError::NotRegular),
            Ok(_) => Ok(final_path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(final_path),
            Err(err) => Err(StorageError::Io(err)),
        }
    }

    /// Starts an upload to `name`. Nothing under `name` changes until
    /// [`Storage::commit`].
    pub fn begin_upload(&self, dir: &UserDir, name: FileName<'_>) -> Result<Upload, StorageError> {
        self.check_target(dir, name)?;
        let tmp_path = self.tmp_path("upload");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp_path)
            .map_err(StorageError::Io)?;
        Ok(Upload::new(file, tmp_path, 0, dir, name))
    }

    /// Continues the interrupted upload of `name` from byte `offset`: the
    /// partial is taken out of `partial/` (so no other session continues
    /// it at the same time) and cut to `offset`. `offset` 0 with no
    /// partial is a fresh upload.
    pub fn resume_upload(
        &self,
        dir: &UserDir,
        name: FileName<'_>,
        offset: u64,
    ) -> Result<Resumed, StorageError> {
        self.check_target(dir, name)?;
        let held = self.partial(dir, name)?;
        let held_len = held.as_ref().map_or(0, |meta| meta.len());
        if offset > held_len {
            return Err(StorageError::OffsetPastHeld {
                offset,
                held: held_len,
            });
        }
        let Some(held) = held else {
            return Ok(Resumed {
                upload: self.begin_upload(dir, name)?,
                hasher: Some(Hasher::new()),
            });
        };
        // The saved hash state is read before the partial moves, because
        // the move changes its change time.
        let before = Identity::of(&held);
        let saved = record::read(&dir.partial_sums(name.as_str()), &before, STATE_KEY)
            .and_then(|hex| hex::decode(hex).ok())
            .and_then(|bytes| Hasher::restore(&bytes))
            .filter(|hasher| hasher.len() == held_len && offset == held_len);
        let tmp_path = self.tmp_path("upload");
        match fs::rename(dir.partial(name.as_str()), &tmp_path) {
            Ok(()) => {}
            // Another session took it a moment ago.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::OffsetPastHeld { offset, held: 0 });
            }
            Err(err) => return Err(StorageError::Io(err)),
        }
        record::remove(&dir.partial_sums(name.as_str()));
        let file = match open_regular(&tmp_path, true) {
            Ok(file) => file,
            Err(err) => {
                let _ = fs::remove_file(&tmp_path);
                return Err(err);
            }
        };
        // From here on, dropping the upload removes the claimed file.
        let mut upload = Upload::new(file, tmp_path, offset, dir, name);
        let claimed = Identity::of_file(upload.file())?;
        let hasher = saved.filter(|_| claimed.same_inode(&before) && claimed.size() == held_len);
        upload.cut_to(offset)?;
        Ok(Resumed { upload, hasher })
    }

    /// Puts a complete upload in place: sync its data (unless fsync is off),
    /// rename it over the final name, record its digest, sync the directory.
    /// On error the temporary file is removed and the final name is
    /// unchanged. A partial of the same name is superseded and removed.
    pub fn commit(&self, upload: Upload, sha256: Digest) -> io::Result<()> {
        let (file, dir, name) = upload.into_place(self.options.fsync)?;
        let sum_tmp = self.tmp_path("sum");
        let recorded = Identity::of_file(&file).and_then(|identity| {
            record::write(
                &sum_tmp,
                &dir.sums(&name),
                &identity,
                SHA256_KEY,
                &sha256.to_string(),
            )
        });
        if let Err(err) = recorded {
            log::warn!("cannot record the digest of {name:?}: {err}");
        }
        record::remove(&dir.partial(&name));
        record::remove(&dir.partial_sums(&name));
        if self.options.fsync {
            File::open(&dir.path)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes a regular file's name (other hard links and open handles keep
    /// the data) and returns the size it had.
    pub fn delete(&self, dir: &UserDir, name: FileName<'_>) -> Result<u64, StorageError> {
        let path = dir.file(name.as_str());
        let meta = fs::symlink_metadata(&path)?;
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        fs::remove_file(&path)?;
        record::remove(&dir.sums(name.as_str()));
        Ok(meta.len())
    }

    /// Keeps what an interrupted upload received, so that a later upload of
    /// the same name can continue it (`REST` + `PUT`), together with the
    /// hash state of those bytes when the caller has it. Not synced: no
    /// client was told these bytes are safe. An empty upload is discarded.
    pub fn keep_partial(&self, upload: Upload, hasher: Option<&Hasher>) {
        let len = upload.len();
        if len == 0 {
            return;
        }
        let (file, dir, name) = match upload.into_partial() {
            Ok(kept) => kept,
            Err(err) => {
                log::warn!("cannot keep an interrupted upload: {err}");
                return;
            }
        };
        let state_path = dir.partial_sums(&name);
        let saved = match (hasher, Identity::of_file(&file)) {
            (Some(hasher), Ok(identity)) if hasher.len() == len => {
                let state = hex::encode(hasher.save());
                record::write(
                    &self.tmp_path("state"),
                    &state_path,
                    &identity,
                    STATE_KEY,
                    &state,
                )
            }
            _ => Err(io::Error::other("no hash state for these bytes")),
        };
        if let Err(err) = saved {
            // Without it a resume hashes the held bytes again.
            log::debug!("no saved hash state for the partial {name:?}: {err}");
            record::remove(&state_path);
        }
    }
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            if fs::symlink_metadata(path)?.is_dir() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "{} is not a directory",
                    path.display()
                )))
            }
        }
        Err(err) => Err(err),
    }
}

/// Opens a regular file, never following a symlink and never blocking on
/// a FIFO or device.
fn open_regular(path: &Path, write: bool) -> Result<File, StorageError> {
    // Refuse anything that is not a regular file before opening it, so a
    // device or FIFO is never even opened in the common case...
    if !fs::symlink_metadata(path)?.file_type().is_file() {
        return Err(StorageError::NotRegular);
    }
    // ...and check again on the opened handle, because the name may have
    // been swapped in between: O_NOFOLLOW refuses a symlink, O_NONBLOCK
    // keeps a FIFO from blocking the reactor.
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(StorageError::NotRegular);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn name(raw: &str) -> FileName<'_> {
        name::validate(raw.as_bytes()).unwrap()
    }

    fn no_fsync() -> Options {
        Options {
            fsync: false,
            ..Options::default()
        }
    }

    fn setup() -> (tempfile::TempDir, Storage, UserDir) {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::open(root.path(), no_fsync()).unwrap();
        let dir = storage.user_dir("alice").unwrap();
        (root, storage, dir)
    }

    fn tmp_is_empty(storage: &Storage) -> bool {
        fs::read_dir(&storage.tmp).unwrap().next().is_none()
    }

    #[test]
    fn upload_is_invisible_until_committed() {
        let (_root, storage, dir) = setup();
        let mut upload = storage.begin_upload(&dir, name("a")).unwrap();
        upload.write(b"hello").unwrap();
        assert!(storage.list(&dir).unwrap().is_empty());
        storage.commit(upload, Digest::of(b"hello")).unwrap();
        let listed = storage.list(&dir).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("a", 5));
        assert!(tmp_is_empty(&storage));
    }

    #[test]
    fn dropped_upload_leaves_old_version() {
        let (_root, storage, dir) = setup();
        let mut first = storage.begin_upload(&dir, name("a")).unwrap();
        first.write(b"old").unwrap();
        storage.commit(first, Digest::of(b"old")).unwrap();
        let mut second = storage.begin_upload(&dir, name("a")).unwrap();
        second.write(b"new but partial").unwrap();
        drop(second);
        let (mut file, size) = storage.open_read(&dir, name("a")).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), size), ("old", 3));
        assert!(tmp_is_empty(&storage));
    }

    #[test]
    fn symlinks_and_directories_are_refused() {
        let (root, storage, dir) = setup();
        let outside = root.path().join("canary");
        fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, dir.file("link")).unwrap();
        fs::create_dir(dir.file("sub")).unwrap();
        for bad in ["link", "sub"] {
            assert!(matches!(
                storage.open_read(&dir, name(bad)),
                Err(StorageError::NotRegular)
            ));
            assert!(matches!(
                storage.begin_upload(&dir, name(bad)),
                Err(StorageError::NotRegular)
            ));
            assert!(matches!(
                storage.delete(&dir, name(bad)),
                Err(StorageError::NotRegular)
            ));
        }
        assert!(storage.list(&dir).unwrap().is_empty());
        assert_eq!(fs::read(&outside).unwrap(), b"secret");
    }

    #[test]
    fn stale_temporary_files_are_removed_at_open() {
        let (root, storage, _dir) = setup();
        fs::write(storage.tmp.join("upload-1-1"), b"partial").unwrap();
        drop(storage);
        let storage = Storage::open(root.path(), no_fsync()).unwrap();
        assert!(tmp_is_empty(&storage));
    }

    #[test]
    fn missing_file_is_not_found() {
        let (_root, storage, dir) = setup();
        assert!(matches!(
            storage.open_read(&dir, name("nope")),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            storage.delete(&dir, name("nope")),
            Err(StorageError::NotFound)
        ));
    }
}
