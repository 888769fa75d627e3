//! A few small files kept open between downloads, so that a download of a
//! file fetched a moment ago costs one `fstatat` of its name instead of the
//! safe open's five calls (an `O_PATH` open, `fstat`, the reopen through
//! `/proc/self/fd`, and two closes; see `storage/dir.rs`).
//!
//! A handle goes in only after the safe open accepted the file, so only
//! regular files are ever in here, and it is used again only while the
//! name still leads to that very inode, unchanged: the name is looked at
//! with `fstatat(AT_SYMLINK_NOFOLLOW)` relative to a folder handle opened
//! as safely as ever, and its device, inode, mode, owner and change time
//! must be those the handle had when it was checked. A name that now leads
//! anywhere else (a replaced file, a symlink, a FIFO, a device) or to an
//! inode whose permissions changed is opened again the safe way, which
//! refuses what it always refused; nothing but a regular file is ever
//! opened. The inode is the one held open, so it cannot have been freed
//! and its number reused meanwhile, and reads see its current bytes.
//!
//! Only on the local file systems [`coherent`] names: a network file
//! system's client may answer the `fstatat` from its attribute cache, where
//! an open asks the server (close-to-open consistency), so a file another
//! server of the farm replaced could be served in its old version for a
//! while. Elsewhere every download opens its file the safe way.
//!
//! The server's own changes (an upload committed over a name, a delete)
//! drop the handle at once; a name changed behind the server's back is
//! caught by the check at its next download, and its handle is dropped
//! then or when pushed out. That is why only small files are kept: a file
//! removed by someone else is held open until then, so what the cache can
//! hold is bounded at [`OPEN_FILES`] x [`SMALL_FILE`] bytes (2 MiB).

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Handles kept: enough for the small files a busy moment fetches again and
/// again; counted in the server's descriptor reserve
/// (`config::descriptor_reserve`).
pub const OPEN_FILES: usize = 32;

/// Largest file kept open. Below this the open costs as much as the
/// transfer (a 4 KiB GET is eight system calls, five of them the open);
/// above it, the transfer dwarfs it. The same bound as the downloads sent
/// through the buffer rather than by `sendfile` (`outbox::DIRECT_MIN`).
pub const SMALL_FILE: u64 = 64 * 1024;

/// What must be unchanged for a kept handle to serve its name again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    ctime: i64,
    ctime_nsec: i64,
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }

    pub fn of_stat(stat: &libc::stat) -> Stamp {
        Stamp {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mode: stat.st_mode,
            uid: stat.st_uid,
            gid: stat.st_gid,
            ctime: stat.st_ctime,
            ctime_nsec: stat.st_ctime_nsec,
        }
    }
}

/// A kept handle: the name it was opened by (the user's directory and the
/// path in it), and how the inode was when it was checked.
#[derive(Debug)]
struct Kept {
    user: (u64, u64),
    path: String,
    stamp: Stamp,
    file: Arc<File>,
}

/// Whether the file system type `f_type` (of `fstatfs`) is a local one
/// whose names and attributes every process sees at once: tmpfs, ext2-4,
/// XFS, Btrfs, F2FS, ZFS, bcachefs, overlayfs. Any other (NFS, CIFS,
/// FUSE such as JuiceFS, CephFS, or one not known here) keeps no handles.
pub fn coherent(f_type: i64) -> bool {
    const LOCAL: [i64; 8] = [
        0x0102_1994, // tmpfs
        0xef53,      // ext2, ext3, ext4
        0x5846_5342, // XFS
        0x9123_683e, // Btrfs
        0xf2f5_2010, // F2FS
        0x2fc1_2fc1, // ZFS
        0xca45_1a4e, // bcachefs
        0x794c_7630, // overlayfs
    ];
    LOCAL.contains(&f_type)
}

/// The kept handles, the most recently used last.
#[derive(Debug, Default)]
pub struct OpenFiles {
    /// Handles are kept at all (see [`coherent`]).
    enabled: bool,
    files: Vec<Kept>,
}

impl OpenFiles {
    /// Kept handles, or none (`enabled` false: every `keep` is ignored).
    pub fn new(enabled: bool) -> OpenFiles {
        OpenFiles {
            enabled,
            files: Vec::new(),
        }
    }

    /// The handle kept for `path` in the user directory `user`, with the
    /// stamp it was checked with.
    pub fn get(&mut self, user: (u64, u64), path: &str) -> Option<(Stamp, Arc<File>)> {
        let at = self
            .files
            .iter()
            .position(|kept| kept.user == user && kept.path == path)?;
        let kept = self.files.remove(at);
        let found = (kept.stamp, Arc::clone(&kept.file));
        self.files.push(kept);
        Some(found)
    }

    /// Keeps `file`, just checked with `stamp`, for `path` in `user`; the
    /// handle used least recently goes when [`OPEN_FILES`] are kept.
    pub fn keep(&mut self, user: (u64, u64), path: &str, stamp: Stamp, file: &Arc<File>) {
        self.forget(user, path);
        if !self.enabled {
            return;
        }
        if self.files.len() >= OPEN_FILES {
            self.files.remove(0);
        }
        self.files.push(Kept {
            user,
            path: path.to_owned(),
            stamp,
            file: Arc::clone(file),
        });
    }

    /// Drops the handle kept for `path` in `user`, if any.
    pub fn forget(&mut self, user: (u64, u64), path: &str) {
        self.files
            .retain(|kept| !(kept.user == user && kept.path == path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first_and_names_do_not_mix() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let stamp = Stamp::of(&file.metadata().unwrap());
        let mut kept = OpenFiles::new(true);
        for i in 0..OPEN_FILES {
            kept.keep((1, 1), &format!("n{i}"), stamp, &file);
        }
        // n0 used again: n1 is now the one used least recently.
        assert!(kept.get((1, 1), "n0").is_some());
        kept.keep((1, 1), "new", stamp, &file);
        assert_eq!(kept.files.len(), OPEN_FILES);
        assert!(kept.get((1, 1), "n0").is_some());
        assert!(kept.get((1, 1), "n1").is_none());
        // Another user's directory, same path: not the same name.
        assert!(kept.get((1, 2), "n0").is_none());
        kept.forget((1, 1), "n0");
        assert!(kept.get((1, 1), "n0").is_none());
        assert_eq!(Arc::strong_count(&file), OPEN_FILES);
        let mut none = OpenFiles::new(false);
        none.keep((1, 1), "n0", stamp, &file);
        assert!(none.get((1, 1), "n0").is_none());
    }

    #[test]
    fn only_local_file_systems_keep_handles() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(tmp.path()).unwrap();
        let f_type = crate::sys::fs_type(std::os::fd::AsFd::as_fd(&dir)).unwrap();
        // The tests' temporary directories are on a local file system.
        assert!(coherent(f_type), "{f_type:#x}");
        assert!(!coherent(0x6969), "NFS");
        assert!(!coherent(0x6573_5546), "FUSE");
    }
}
