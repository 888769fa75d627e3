//! Per-user file storage: the narrow interface the connection asks.
//!
//! Checked names in, open handles out. Layout under the storage root:
//!
//! ```text
//! <root>/                 0700
//!   <user>/               0700, one per user, created on first login
//!     <name>              0600, complete files only
//!   .ferry/tmp/           uploads in progress (usernames never start with '.')
//! ```
//!
//! Uploads never write in place: they go to a fresh file in `.ferry/tmp/`,
//! which is renamed over the final name only when every byte has arrived
//! (and has been synced, unless fsync is off). A download keeps its open
//! handle, so a replace or delete of the same name during it leaves it the
//! complete old content. Only regular files are ever opened: symlinks,
//! directories, FIFOs and devices in a user directory are refused without
//! being followed.

use std::cell::Cell;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::protocol::name::{self, FileName};

/// Mode of the storage root and of every user directory: private to the
/// server's own user.
const DIR_MODE: u32 = 0o700;
/// Mode of stored files.
const FILE_MODE: u32 = 0o600;
/// The server's private area under the root; its name starts with `.`, which
/// no username can, so it never collides with a user directory.
const PRIVATE_DIR: &str = ".ferry";
const TMP_DIR: &str = "tmp";

/// Why a storage request failed. Mapped to replies in `protocol::reply`.
#[derive(Debug)]
pub enum StorageError {
    /// No file of that name.
    NotFound,
    /// The name exists but is not a regular file (symlink, directory, FIFO,
    /// device, socket): never opened, never followed.
    NotRegular,
    /// The file system failed (disk full, permissions, I/O error).
    Io(io::Error),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("no such file"),
            StorageError::NotRegular => f.write_str("not a regular file"),
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
    fsync: bool,
    next_upload: Cell<u64>,
}

/// A user's private directory, handed out after login.
#[derive(Debug)]
pub struct UserDir {
    path: PathBuf,
}

/// An upload in progress: a temporary file that becomes `final_path` on
/// [`Storage::commit`]. Dropping it without committing removes the
/// temporary file.
#[derive(Debug)]
pub struct Upload {
    file: Option<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    dir: PathBuf,
}

impl Storage {
    /// Opens (and creates, mode 0700) the storage root, and removes the
    /// temporary files of uploads that a crash left behind.
    pub fn open(root: &Path, fsync: bool) -> io::Result<Storage> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)?;
        let tmp = root.join(PRIVATE_DIR).join(TMP_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&tmp)?;
        let mut stale = 0;
        for entry in fs::read_dir(&tmp)? {
            let path = entry?.path();
            match fs::remove_file(&path) {
                Ok(()) => stale += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                // Something ferryd did not put there (a directory, a file it
                // may not remove): upload names cannot collide with it, so
                // it is reported rather than made fatal.
                Err(err) => log::warn!("cannot remove {}: {err}", path.display()),
            }
        }
        if stale > 0 {
            log::info!("removed {stale} stale temporary upload file(s)");
        }
        Ok(Storage {
            root: root.to_path_buf(),
            tmp,
            fsync,
            next_upload: Cell::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `user` (a valid username), created mode 0700 on
    /// first use.
    pub fn user_dir(&self, user: &str) -> io::Result<UserDir> {
        let path = self.root.join(user);
        match DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::metadata(&path)?.is_dir() {
                    return Err(io::Error::other(format!(
                        "{} is not a directory",
                        path.display()
                    )));
                }
            }
            Err(err) => return Err(err),
        }
        Ok(UserDir { path })
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

    /// Opens a regular file for reading and returns it with its size at the
    /// moment of opening.
    pub fn open_read(
        &self,
        dir: &UserDir,
        name: FileName<'_>,
    ) -> Result<(File, u64), StorageError> {
        let path = dir.path.join(name.as_str());
        // Refuse anything that is not a regular file before opening it, so a
        // device or FIFO is never even opened in the common case...
        if !fs::symlink_metadata(&path)?.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        // ...and check again on the opened handle, because the name may have
        // been swapped in between: O_NOFOLLOW refuses a symlink, O_NONBLOCK
        // keeps a FIFO from blocking the reactor.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        Ok((file, meta.len()))
    }

    /// Starts an upload to `name`. Nothing under `name` changes until
    /// [`Storage::commit`].
    pub fn begin_upload(&self, dir: &UserDir, name: FileName<'_>) -> Result<Upload, StorageError> {
        let final_path = dir.path.join(name.as_str());
        match fs::symlink_metadata(&final_path) {
            Ok(meta) if !meta.file_type().is_file() => return Err(StorageError::NotRegular),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(StorageError::Io(err)),
        }
        let serial = self.next_upload.get();
        self.next_upload.set(serial + 1);
        let tmp_path = self
            .tmp
            .join(format!("upload-{}-{serial}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp_path)
            .map_err(StorageError::Io)?;
        Ok(Upload {
            file: Some(file),
            tmp_path,
            final_path,
            dir: dir.path.clone(),
        })
    }

    /// Puts a complete upload in place: sync its data (unless fsync is off),
    /// rename it over the final name, sync the directory. On error the
    /// temporary file is removed and the final name is unchanged.
    pub fn commit(&self, mut upload: Upload) -> io::Result<()> {
        let file = upload.file.take().expect("upload committed twice");
        if self.fsync {
            file.sync_data()?;
        }
        drop(file);
        fs::rename(&upload.tmp_path, &upload.final_path)?;
        // The rename happened: nothing is left to remove.
        upload.tmp_path = PathBuf::new();
        if self.fsync {
            File::open(&upload.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes a regular file's name (other hard links and open handles keep
    /// the data) and returns the size it had.
    pub fn delete(&self, dir: &UserDir, name: FileName<'_>) -> Result<u64, StorageError> {
        let path = dir.path.join(name.as_str());
        let meta = fs::symlink_metadata(&path)?;
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        fs::remove_file(&path)?;
        Ok(meta.len())
    }
}

impl Upload {
    /// Appends bytes to the temporary file.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.write_all(data),
            None => Err(io::Error::other("upload already finished")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn name(raw: &str) -> FileName<'_> {
        name::validate(raw.as_bytes()).unwrap()
    }

    fn setup() -> (tempfile::TempDir, Storage, UserDir) {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::open(root.path(), false).unwrap();
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
        storage.commit(upload).unwrap();
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
        storage.commit(first).unwrap();
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
        std::os::unix::fs::symlink(&outside, dir.path.join("link")).unwrap();
        fs::create_dir(dir.path.join("sub")).unwrap();
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
        let storage = Storage::open(root.path(), false).unwrap();
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
