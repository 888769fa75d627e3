//! An open directory, and every file operation the storage makes, relative
//! to it.
//!
//! Names are single path components (checked by `protocol::name`, or made
//! by the server). They are resolved with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, or `openat(O_NOFOLLOW)` where the kernel lacks it
//! ([`crate::sys::open_beneath`]), so nothing is ever looked up through a
//! path string that could change between a check and its use.
//!
//! A file is opened for reading or writing only once its kind is known
//! from a handle that cannot change: it is first opened with `O_PATH`
//! (which does no I/O, so even a FIFO or a device is not really opened),
//! checked with `fstat`, and only a regular file is then opened for real
//! through that same handle (`/proc/self/fd/N` names exactly the inode the
//! handle holds). Without `/proc`, the name is opened again with
//! `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (so that a FIFO swapped in at that
//! instant still cannot block) and must turn out to be the same inode.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::StorageError;
use super::handles::Stamp;
use crate::sys;

/// An open directory handle.
#[derive(Debug)]
pub(super) struct Dir {
    handle: File,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.handle.as_fd()
    }
}

/// An entry as a listing sees it (see [`Dir::entry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// A regular file (not a symlink, whatever it points at).
    pub is_file: bool,
    /// A folder (not a symlink to one).
    pub is_dir: bool,
    pub len: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ino: u64,
}

impl EntryMeta {
    pub fn version(&self) -> super::Version {
        super::Version::new(self.ino, self.mtime, self.mtime_nsec, self.len)
    }

    fn of_stat(stat: &libc::stat) -> EntryMeta {
        EntryMeta {
            is_file: stat.st_mode & libc::S_IFMT == libc::S_IFREG,
            is_dir: stat.st_mode & libc::S_IFMT == libc::S_IFDIR,
            len: u64::try_from(stat.st_size).unwrap_or(0),
            mtime: stat.st_mtime,
            mtime_nsec: stat.st_mtime_nsec,
            ino: stat.st_ino,
        }
    }

    pub fn of(meta: &Metadata) -> EntryMeta {
        EntryMeta {
            is_file: meta.file_type().is_file(),
            is_dir: meta.is_dir(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ino: meta.ino(),
        }
    }

    /// The modification time (the epoch for one before it, which no
    /// header can say anyway).
    pub fn modified(&self) -> SystemTime {
        let (Ok(secs), Ok(nanos)) = (u64::try_from(self.mtime), u32::try_from(self.mtime_nsec))
        else {
            return UNIX_EPOCH;
        };
        UNIX_EPOCH + Duration::new(secs, nanos)
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

impl Dir {
    /// Opens the directory at `path`: only the storage root is ever opened
    /// by path (it is the operator's choice, symlinks in it included).
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(Dir { handle })
    }

    /// Opens the subdirectory `name`; a symlink is refused.
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> io::Result<Dir> {
        let name = name.as_ref();
        let fd = sys::open_beneath(
            self.as_fd(),
            &c_name(name)?,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .map_err(|err| match err.raw_os_error() {
            // A kind of its own, so that a walk can tell a name swapped
            // for a symlink or a file (passed over) from a failure.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", name.to_string_lossy()),
            ),
            _ => err,
        })?;
        Ok(Dir {
            handle: File::from(fd),
        })
    }

    /// Opens the folder at the relative path `path` (names joined by `/`,
    /// checked by `protocol::path`) beneath this directory, never
    /// following a symlink in any of its components
    /// ([`sys::open_beneath_path`]). A missing component, or one that is
    /// not a folder, is [`StorageError::NoFolder`]; a symlink anywhere is
    /// [`StorageError::NotRegular`].
    pub fn open_folder(&self, path: &str) -> Result<Dir, StorageError> {
        let fd = sys::open_beneath_path(
            self.as_fd(),
            path.as_bytes(),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ENOENT) => StorageError::NoFolder,
            // The last name is not a folder: a file, or a symlink (which
            // O_NOFOLLOW | O_DIRECTORY also reports so). Looked at without
            // following it, to tell which.
            Some(libc::ENOTDIR) => {
                let last = sys::open_beneath_path(self.as_fd(), path.as_bytes(), libc::O_PATH, 0);
                match last.map(File::from).and_then(|node| node.metadata()) {
                    Ok(meta) if meta.file_type().is_symlink() => StorageError::NotRegular,
                    Ok(meta) if !meta.is_file() && !meta.is_dir() => StorageError::NotRegular,
                    Ok(_) => StorageError::NoFolder,
                    Err(err) if err.raw_os_error() == Some(libc::ELOOP) => StorageError::NotRegular,
                    Err(_) => StorageError::NoFolder,
                }
            }
            // A symlink (ELOOP), or an escape that cannot happen without
            // one (EXDEV).
            Some(libc::ELOOP | libc::EXDEV) => StorageError::NotRegular,
            _ => StorageError::Io(err),
        })?;
        Ok(Dir {
            handle: File::from(fd),
        })
    }

    /// Creates the folder `name` (mode `mode` exactly); `AlreadyExists`
    /// when the name is taken, by anything.
    pub fn mkdir(&self, name: &str, mode: u32) -> io::Result<()> {
        sys::mkdirat(self.as_fd(), &c_name(name.as_ref())?, mode)?;
        // Exactly `mode`, whatever the umask: through a handle of the new
        // folder, never its name followed.
        self.open_dir(name)?.set_mode(mode)
    }

    /// Removes the empty folder `name` (a symlink is `ENOTDIR`, never
    /// followed).
    pub fn rmdir(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        sys::rmdirat(self.as_fd(), &c_name(name.as_ref())?)
    }

    /// Opens the subdirectory `name`, creating it with `mode` (exactly, not
    /// as masked by the umask) when it does not exist. With `durable`, a
    /// directory created here is recorded in this one on disk before the
    /// call returns.
    pub fn ensure_dir(&self, name: &str, mode: u32, durable: bool) -> io::Result<Dir> {
        let created = match sys::mkdirat(self.as_fd(), &c_name(name.as_ref())?, mode) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => false,
            Err(err) => return Err(err),
        };
        let dir = self.open_dir(name)?;
        if created {
            dir.set_mode(mode)?;
            if durable {
                self.sync()?;
            }
        }
        Ok(dir)
    }

    /// The metadata of `name` itself (a symlink is not followed).
    pub fn stat(&self, name: impl AsRef<OsStr>) -> Result<Metadata, StorageError> {
        Ok(self.node(name.as_ref())?.metadata()?)
    }

    /// What a listing needs to know of the entry `name`, from one
    /// `fstatat` that describes a symlink rather than following it: no
    /// descriptor is opened, so a listing of many files costs a third of
    /// the calls [`Dir::stat`] would make.
    pub fn entry(&self, name: impl AsRef<OsStr>) -> Result<EntryMeta, StorageError> {
        let stat = sys::stat_entry(self.as_fd(), &c_name(name.as_ref())?)?;
        Ok(EntryMeta::of_stat(&stat))
    }

    /// What one `fstatat(AT_SYMLINK_NOFOLLOW)` of `name` says, whole: a
    /// symlink described, never followed, and nothing opened.
    pub fn entry_stat(&self, name: impl AsRef<OsStr>) -> Result<libc::stat, StorageError> {
        Ok(sys::stat_entry(self.as_fd(), &c_name(name.as_ref())?)?)
    }

    /// [`Dir::entry`], with what a kept handle of the entry must match
    /// (see `storage/handles.rs`), from the same one `fstatat`.
    pub fn entry_stamped(
        &self,
        name: impl AsRef<OsStr>,
    ) -> Result<(EntryMeta, Stamp), StorageError> {
        let stat = sys::stat_entry(self.as_fd(), &c_name(name.as_ref())?)?;
        Ok((EntryMeta::of_stat(&stat), Stamp::of_stat(&stat)))
    }

    /// An `O_PATH` handle of `name`: enough to learn what it is, not to
    /// read or write it.
    fn node(&self, name: &OsStr) -> Result<File, StorageError> {
        let fd = sys::open_beneath(self.as_fd(), &c_name(name)?, libc::O_PATH, 0)?;
        Ok(File::from(fd))
    }

    /// Opens `name` for reading (and writing, with `write`) if, and only
    /// if, it is a regular file.
    pub fn open_regular(&self, name: impl AsRef<OsStr>, write: bool) -> Result<File, StorageError> {
        self.open_regular_with(name.as_ref(), write, reopen)
            .map(|(file, _)| file)
    }

    /// [`Dir::open_regular`] for reading, with the file's metadata as of
    /// the open (the check needs it anyway: no second `fstat`).
    pub fn open_regular_read(
        &self,
        name: impl AsRef<OsStr>,
    ) -> Result<(File, Metadata), StorageError> {
        self.open_regular_with(name.as_ref(), false, reopen)
    }

    fn open_regular_with(
        &self,
        name: &OsStr,
        write: bool,
        reopen: fn(&File, bool) -> io::Result<File>,
    ) -> Result<(File, Metadata), StorageError> {
        let node = self.node(name)?;
        let meta = node.metadata()?;
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        let file = match reopen(&node, write) {
            // The descriptor's magic link opens the very inode checked
            // above, so its metadata stands: no second `fstat`.
            Ok(file) => return Ok((file, meta)),
            // No /proc: open the name again, safely, and compare below.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
                let flags = access | libc::O_NONBLOCK | libc::O_NOCTTY;
                File::from(sys::open_beneath(self.as_fd(), &c_name(name)?, flags, 0)?)
            }
            Err(err) => return Err(StorageError::Io(err)),
        };
        let opened = file.metadata()?;
        if !opened.file_type().is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino())
        {
            // Swapped between the two opens (fallback only): refuse.
            return Err(StorageError::NotRegular);
        }
        Ok((file, opened))
    }

    /// Gives the file `name` the second name `to` in `to_dir` (a symlink
    /// is linked itself, never followed); never replaces `to`.
    pub fn link(&self, name: impl AsRef<OsStr>, to_dir: &Dir, to: &str) -> io::Result<()> {
        sys::linkat(
            self.as_fd(),
            &c_name(name.as_ref())?,
            to_dir.as_fd(),
            &c_name(to.as_ref())?,
        )
    }

    /// Creates the new file `name` (read and write, mode `mode` exactly);
    /// fails if the name exists in any form.
    pub fn create_new(&self, name: &str, mode: u32) -> io::Result<File> {
        let fd = sys::open_beneath(
            self.as_fd(),
            &c_name(name.as_ref())?,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            mode,
        )?;
        let file = File::from(fd);
        file.set_permissions(Permissions::from_mode(mode))?;
        Ok(file)
    }

    /// Opens the regular file `name` for reading and writing, creating it
    /// (mode `mode`) when it does not exist: a lock file.
    pub fn open_or_create(&self, name: &str, mode: u32) -> io::Result<File> {
        let (file, meta) = self.open_rw(name, libc::O_CREAT, mode)?;
        // Exactly `mode` when just created, whatever the umask.
        if meta.permissions().mode() & 0o7777 != mode && meta.len() == 0 {
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        Ok(file)
    }

    /// Opens the existing regular file at `path` beneath this directory
    /// (names joined by `/`, no symlink followed in any of them) for
    /// reading and writing: one `openat2` and one `fstat`.
    pub fn open_existing_rw(&self, path: &str) -> io::Result<File> {
        Ok(self.open_rw(path, 0, 0)?.0)
    }

    /// Opens `name` for reading and writing with `flags` added, never
    /// blocking on a FIFO, and checks that it is a regular file.
    fn open_rw(&self, name: &str, flags: i32, mode: u32) -> io::Result<(File, Metadata)> {
        let fd = sys::open_beneath(
            self.as_fd(),
            &c_name(name.as_ref())?,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | flags,
            mode,
        )?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::other(format!("{name} is not a regular file")));
        }
        Ok((file, meta))
    }

    /// Renames `from` in this directory to `to` in `to_dir`, replacing
    /// whatever name `to` was (a symlink there is replaced, never followed).
    pub fn rename(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &Dir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        sys::renameat(
            self.as_fd(),
            &c_name(from.as_ref())?,
            to_dir.as_fd(),
            &c_name(to.as_ref())?,
        )
    }

    /// Renames `from` in this directory to `to` in `to_dir` only if `to`
    /// does not exist (`AlreadyExists` otherwise): temporary files and
    /// partials are moved with this, so a move never replaces a file that
    /// another upload (of this server or another one) holds.
    pub fn rename_noreplace(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &Dir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        sys::renameat_noreplace(
            self.as_fd(),
            &c_name(from.as_ref())?,
            to_dir.as_fd(),
            &c_name(to.as_ref())?,
        )
    }

    /// Removes the name `name` (never a directory; a symlink itself, not
    /// its target).
    pub fn remove(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        sys::unlinkat(self.as_fd(), &c_name(name.as_ref())?)
    }

    /// The names in the directory, in no particular order.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        Ok(sys::read_dir(self.as_fd())?
            .into_iter()
            .map(|name| OsString::from_vec(name.into_bytes()))
            .collect())
    }

    /// A handle of this same directory with a read position of its own
    /// (`"."` opened from this handle, never a path), for
    /// [`Dir::read_entries`].
    pub fn reopen(&self) -> io::Result<Dir> {
        Ok(Dir {
            handle: File::from(sys::reopen_dir(self.as_fd())?),
        })
    }

    /// The next batch of entries, as raw records in `buf` (read them with
    /// [`sys::next_dirent`]); 0 at the end. Each call continues where the
    /// last stopped.
    pub fn read_entries(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read_dirents(self.as_fd(), buf)
    }

    /// Makes the directory's entries durable.
    pub fn sync(&self) -> io::Result<()> {
        self.handle.sync_all()
    }

    /// Sets the directory's own permission bits.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        self.handle.set_permissions(Permissions::from_mode(mode))
    }

    /// The mount the directory is on (see [`sys::mount_of`]): renames
    /// work only within one.
    pub fn mount(&self) -> io::Result<u64> {
        sys::mount_of(self.as_fd())
    }

    /// The type of the file system the directory is on (see
    /// [`sys::fs_type`]).
    pub fn fs_type(&self) -> io::Result<i64> {
        sys::fs_type(self.as_fd())
    }

    /// The directory's own metadata.
    pub fn metadata(&self) -> io::Result<Metadata> {
        self.handle.metadata()
    }
}

/// Opens the very inode an `O_PATH` handle holds, for reading (and
/// writing), through the handle's `/proc/self/fd` entry: no name lookup
/// that anyone else could race. `NotFound` when `/proc` is not mounted.
fn reopen(node: &File, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", node.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A directory holding `file` (4 bytes), `link` (a symlink to it) and
    /// the directory `sub`.
    fn populated() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_path(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("file"), b"data").unwrap();
        std::os::unix::fs::symlink("file", tmp.path().join("link")).unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        (tmp, dir)
    }

    #[test]
    fn entry_describes_a_symlink_and_never_follows_it() {
        let (tmp, dir) = populated();
        let file = dir.entry("file").unwrap();
        assert!(file.is_file);
        assert_eq!(file.len, 4);
        let mtime = std::fs::metadata(tmp.path().join("file")).unwrap().mtime();
        assert_eq!(file.mtime, mtime);
        assert!(!dir.entry("link").unwrap().is_file, "a link to a file");
        assert!(!dir.entry("sub").unwrap().is_file);
        assert!(matches!(dir.entry("gone"), Err(StorageError::NotFound)));
    }

    #[test]
    fn only_regular_files_are_opened() {
        let (tmp, dir) = populated();
        let fifo = std::process::Command::new("mkfifo")
            .arg(tmp.path().join("fifo"))
            .status()
            .is_ok_and(|status| status.success());

        // Through /proc, and as without it.
        let no_proc: fn(&File, bool) -> io::Result<File> =
            |_, _| Err(io::Error::from(io::ErrorKind::NotFound));
        for reopen in [reopen, no_proc] {
            let open = |name: &str, write| {
                dir.open_regular_with(name.as_ref(), write, reopen)
                    .map(|(file, _)| file)
            };
            std::fs::write(tmp.path().join("file"), b"data").unwrap();
            let mut text = String::new();
            open("file", false)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "data");
            open("file", true).unwrap().write_all(b"DA").unwrap();
            assert_eq!(std::fs::read(tmp.path().join("file")).unwrap(), b"DAta");
            let mut refused = vec!["link", "sub"];
            if fifo {
                refused.push("fifo");
            }
            for name in refused {
                for write in [false, true] {
                    assert!(matches!(open(name, write), Err(StorageError::NotRegular)));
                }
                assert!(!dir.stat(name).unwrap().file_type().is_file());
            }
            assert!(matches!(
                open("missing", false),
                Err(StorageError::NotFound)
            ));
        }
        assert!(dir.open_dir("link").is_err());
        assert!(dir.open_dir("file").is_err());
        dir.open_dir("sub").unwrap();
    }

    #[test]
    fn paths_are_opened_beneath_without_following_any_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_path(tmp.path()).unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b/c")).unwrap();
        std::fs::write(tmp.path().join("a/file"), b"x").unwrap();
        std::os::unix::fs::symlink("b", tmp.path().join("a/link")).unwrap();
        std::os::unix::fs::symlink("/", tmp.path().join("a/b/root")).unwrap();
        let kind = |path: &str| match dir.open_folder(path) {
            Ok(_) => "ok",
            Err(StorageError::NoFolder) => "no folder",
            Err(StorageError::NotRegular) => "not regular",
            Err(_) => "other",
        };
        assert_eq!(kind("a/b/c"), "ok");
        assert_eq!(kind("a/link"), "not regular");
        assert_eq!(kind("a/link/c"), "not regular");
        assert_eq!(kind("a/b/root"), "not regular");
        assert_eq!(kind("a/b/root/etc"), "not regular");
        assert_eq!(kind("a/file"), "no folder");
        assert_eq!(kind("a/file/x"), "no folder");
        assert_eq!(kind("a/missing/x"), "no folder");
        // The walk used where openat2 is missing refuses the same paths.
        let walk = |path: &str| {
            sys::walk_beneath(
                dir.as_fd(),
                path.as_bytes(),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
            .map(drop)
            .map_err(|err| err.raw_os_error())
        };
        assert_eq!(walk("a/b/c"), Ok(()));
        for refused in ["a/link", "a/link/c", "a/b/root", "a/b/root/etc", "a/file/x"] {
            let err = walk(refused).unwrap_err();
            assert!(
                matches!(err, Some(libc::ELOOP | libc::ENOTDIR)),
                "{refused}: {err:?}"
            );
        }
    }

    #[test]
    fn created_files_and_directories_get_their_mode_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_path(tmp.path()).unwrap();
        let sub = dir.ensure_dir("sub", 0o700, true).unwrap();
        dir.ensure_dir("sub", 0o700, true).unwrap();
        assert_eq!(sub.metadata().unwrap().mode() & 0o7777, 0o700);
        let file = sub.create_new("f", 0o600).unwrap();
        assert_eq!(file.metadata().unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            sub.create_new("f", 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        sub.rename("f", &dir, "g").unwrap();
        assert_eq!(dir.names().unwrap().len(), 2);
        // A move that would replace a file fails and changes nothing.
        sub.create_new("f", 0o600)
            .unwrap()
            .write_all(b"mine")
            .unwrap();
        let err = sub.rename_noreplace("f", &dir, "g").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(tmp.path().join("sub/f")).unwrap(), b"mine");
        sub.rename_noreplace("f", &dir, "h").unwrap();
        assert_eq!(std::fs::read(tmp.path().join("h")).unwrap(), b"mine");
        dir.remove("h").unwrap();
        dir.remove("g").unwrap();
        assert!(dir.remove("sub").is_err());
    }
}
