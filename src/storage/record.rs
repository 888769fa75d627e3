//! Small sidecar records that remember something about one particular file:
//! the SHA-256 of a stored file, or the saved hash state of an interrupted
//! upload.
//!
//! A record names the file it describes by [`Identity`]: inode, size,
//! modification and change time, taken after the file got its final name.
//! Not the device number: servers sharing a root over a network file
//! system (NFS, JuiceFS, CephFS) each see it under a device number of
//! their own mount, while the file system itself hands every client the
//! same inode number and times, so a record written through one mount
//! must hold through another. (Version 1 records also named the device:
//! they are ignored, and the digest computed once more.) A record is only believed while the file still has that identity,
//! so a record that is stale (the file was replaced, changed behind the
//! server's back, or a crash came between the file and its record) is
//! ignored and the value computed again. Records are never the only copy
//! of anything: losing one costs a re-read, never a wrong answer.
//!
//! Format (text, one record per file, written to a temporary file and
//! renamed into place):
//!
//! ```text
//! ferry-record 2
//! file <ino> <size> <mtime-sec>.<mtime-nsec> <ctime-sec>.<ctime-nsec>
//! <key> <value>
//! ```

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;

use super::dir::Dir;

const MAGIC: &str = "ferry-record 2";
/// Records are a few hundred bytes; anything larger is not one of ours.
const MAX_RECORD: u64 = 4096;
/// Records are the server's own business.
const RECORD_MODE: u32 = 0o600;

/// What tells one version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    pub fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn of_stat(stat: &libc::stat) -> Identity {
        Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
        }
    }

    pub fn of_file(file: &File) -> io::Result<Identity> {
        Ok(Identity::of(&file.metadata()?))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The same inode, whatever has happened to its times since.
    pub fn same_inode(&self, other: &Identity) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// What a record says of the file: everything but the device, which
    /// differs between mounts of one shared file system.
    fn line(&self) -> String {
        format!(
            "file {} {} {}.{} {}.{}",
            self.ino, self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        )
    }
}

/// The identity of `file`, just written and now placed as `name` in `dir`,
/// once its handle is closed: some file systems (JuiceFS and other FUSE
/// ones) stamp a file's times when its last handle is flushed, so an
/// identity taken through the open handle would never match the file
/// again, and every record of it would be stale. When `name` no longer
/// leads to that inode (replaced meanwhile), the handle's identity is
/// kept: a record then describes the file it was computed for, or none.
pub(super) fn settled(file: File, dir: &Dir, name: &str) -> io::Result<Identity> {
    let open = Identity::of_file(&file)?;
    drop(file);
    // One fstatat of the name (nothing opened), not an O_PATH open, fstat
    // and close.
    match dir.entry_stat(name) {
        Ok(stat) if Identity::of_stat(&stat).same_inode(&open) => Ok(Identity::of_stat(&stat)),
        _ => Ok(open),
    }
}

/// Writes `<key> <value>` for the file with `identity` to `dest_name` in
/// `dest`, through the temporary file `tmp_name` in `tmp` (on the same file
/// system). Not synced: a record lost in a crash is recomputed.
pub(super) fn write(
    tmp: &Dir,
    tmp_name: &str,
    dest: &Dir,
    dest_name: &str,
    identity: &Identity,
    key: &str,
    value: &str,
) -> io::Result<()> {
    let text = format!("{MAGIC}\n{}\n{key} {value}\n", identity.line());
    let result = tmp
        .create_new(tmp_name, RECORD_MODE)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| tmp.rename(tmp_name, dest, dest_name));
    if result.is_err() {
        let _ = tmp.remove(tmp_name);
    }
    result
}

/// The value stored under `key` in the record `name` in `dir`, if there is
/// one and it describes the file with `identity`.
pub(super) fn read(dir: &Dir, name: &str, identity: &Identity, key: &str) -> Option<String> {
    let file = dir.open_regular(name, false).ok()?;
    if file.metadata().ok()?.len() > MAX_RECORD {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_RECORD).read_to_string(&mut text).ok()?;
    let mut lines = text.lines();
    if lines.next()? != MAGIC || lines.next()? != identity.line() {
        return None;
    }
    let value = lines.next()?.strip_prefix(key)?.strip_prefix(' ')?;
    if lines.next().is_some() {
        return None;
    }
    Some(value.to_owned())
}

/// Removes a record (or any other file of the server's); a missing one is
/// fine.
pub(super) fn remove(dir: &Dir, name: impl AsRef<OsStr>) {
    let name = name.as_ref();
    match dir.remove(name) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => log::warn!("cannot remove {}: {err}", name.to_string_lossy()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_record_is_believed_only_for_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_path(tmp.path()).unwrap();
        let data = tmp.path().join("data");
        fs::write(&data, b"hello").unwrap();
        let identity = Identity::of(&fs::metadata(&data).unwrap());
        write(&dir, "tmp", &dir, "record", &identity, "sha256", "abc").unwrap();
        assert_eq!(
            read(&dir, "record", &identity, "sha256").as_deref(),
            Some("abc")
        );
        assert_eq!(read(&dir, "record", &identity, "state"), None);
        assert!(!tmp.path().join("tmp").exists());

        // Rewriting the file changes its identity: the record is stale.
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(&data, b"HELLO").unwrap();
        let changed = Identity::of(&fs::metadata(&data).unwrap());
        assert_ne!(changed, identity);
        assert!(changed.same_inode(&identity));
        assert_eq!(read(&dir, "record", &changed, "sha256"), None);

        // Through another mount the device differs; the record holds.
        let elsewhere = Identity {
            dev: identity.dev ^ 0xff,
            ..identity
        };
        assert_eq!(
            read(&dir, "record", &elsewhere, "sha256").as_deref(),
            Some("abc")
        );
        // Another inode with everything else equal does not.
        let other = Identity {
            ino: identity.ino + 1,
            ..identity
        };
        assert_eq!(read(&dir, "record", &other, "sha256"), None);

        fs::write(tmp.path().join("record"), b"garbage").unwrap();
        assert_eq!(read(&dir, "record", &identity, "sha256"), None);
        remove(&dir, "record");
        remove(&dir, "record");
        assert_eq!(read(&dir, "record", &identity, "sha256"), None);
    }
}
