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
//! Format (text, one record per file, rewritten in place):
//!
//! ```text
//! ferry-record 3
//! file <ino> <size> <mtime-sec>.<mtime-nsec> <ctime-sec>.<ctime-nsec>
//! <key> <value>
//! end <SHA-256 of the three lines above, newlines included, in hex>
//! ```
//!
//! A record is rewritten in its own file (one `pwrite`, then cut to its
//! length), not written to a temporary file and renamed over the old one:
//! for a 64 KiB upload that rename, the temporary file's creation and the
//! old record's removal were about a tenth of the server's work. So a
//! reader may meet a record half written (a crash, or another server
//! writing it that moment) or old bytes behind a shorter new record: the
//! `end` line tells a whole record, and anything else is not believed.
//! Version 2 records (renamed into place, no `end` line) are still read.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};

use super::dir::Dir;
use crate::integrity::Digest;

const MAGIC: &str = "ferry-record 3";
/// Whole by construction (renamed into place): still believed.
const MAGIC_V2: &str = "ferry-record 2";
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

/// Writes `<key> <value>` for the file with `identity` to the record
/// `name` in `dir`, in place (see the module docs). Not synced: a record
/// lost in a crash is recomputed.
pub(super) fn write(
    dir: &Dir,
    name: &str,
    identity: &Identity,
    key: &str,
    value: &str,
) -> io::Result<()> {
    let body = format!("{MAGIC}\n{}\n{key} {value}\n", identity.line());
    let text = format!("{body}end {}\n", Digest::of(body.as_bytes()));
    let file = dir.open_or_create(name, RECORD_MODE)?;
    let old_len = file.metadata()?.len();
    file.write_all_at(text.as_bytes(), 0)?;
    if old_len > text.len() as u64 {
        file.set_len(text.len() as u64)?;
    }
    Ok(())
}

/// The value stored under `key` in the record `name` in `dir`, if there is
/// one, whole, and it describes the file with `identity`.
pub(super) fn read(dir: &Dir, name: &str, identity: &Identity, key: &str) -> Option<String> {
    let file = dir.open_regular(name, false).ok()?;
    if file.metadata().ok()?.len() > MAX_RECORD {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_RECORD).read_to_string(&mut text).ok()?;
    let body = whole(&text)?;
    let mut lines = body.lines();
    lines.next()?;
    if lines.next()? != identity.line() {
        return None;
    }
    let value = lines.next()?.strip_prefix(key)?.strip_prefix(' ')?;
    if lines.next().is_some() {
        return None;
    }
    Some(value.to_owned())
}

/// The record's lines before its `end` line, if that line vouches for
/// them (a version 2 record: all of it).
fn whole(text: &str) -> Option<&str> {
    if text.starts_with(MAGIC_V2) && text.as_bytes().get(MAGIC_V2.len()) == Some(&b'\n') {
        return Some(text);
    }
    if !text.starts_with(MAGIC) || text.as_bytes().get(MAGIC.len()) != Some(&b'\n') {
        return None;
    }
    // The fourth line ends the record; bytes after it are an older,
    // longer record's tail not cut yet.
    let mut end = 0;
    for _ in 0..3 {
        end += text[end..].find('\n')? + 1;
    }
    let (body, rest) = text.split_at(end);
    let claimed = rest.strip_prefix("end ")?.split('\n').next()?;
    (claimed == Digest::of(body.as_bytes()).to_string()).then_some(body)
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

    /// A directory with a file `data` in it, and the file's identity.
    fn setup() -> (tempfile::TempDir, Dir, std::path::PathBuf, Identity) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_path(tmp.path()).unwrap();
        let data = tmp.path().join("data");
        fs::write(&data, b"hello").unwrap();
        let identity = Identity::of(&fs::metadata(&data).unwrap());
        (tmp, dir, data, identity)
    }

    #[test]
    fn a_record_is_believed_only_for_its_file() {
        let (tmp, dir, data, identity) = setup();
        write(&dir, "record", &identity, "sha256", "abc").unwrap();
        assert_eq!(
            read(&dir, "record", &identity, "sha256").as_deref(),
            Some("abc")
        );
        assert_eq!(read(&dir, "record", &identity, "state"), None);

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

        // Rewritten in place, shorter: the longer one's tail is cut.
        write(&dir, "record", &identity, "sha256", "x").unwrap();
        assert_eq!(
            read(&dir, "record", &identity, "sha256").as_deref(),
            Some("x")
        );
        let text = fs::read_to_string(tmp.path().join("record")).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");

        fs::write(tmp.path().join("record"), b"garbage").unwrap();
        assert_eq!(read(&dir, "record", &identity, "sha256"), None);
        remove(&dir, "record");
        remove(&dir, "record");
        assert_eq!(read(&dir, "record", &identity, "sha256"), None);
    }

    #[test]
    fn a_record_half_written_or_mixed_with_an_older_one_is_not_believed() {
        let (tmp, dir, _, identity) = setup();
        let path = tmp.path().join("record");
        write(&dir, "record", &identity, "sha256", &"a".repeat(64)).unwrap();
        let whole = fs::read(&path).unwrap();
        // Cut anywhere before its end: a crash in the middle of the write.
        for len in 0..whole.len() - 1 {
            fs::write(&path, &whole[..len]).unwrap();
            assert_eq!(read(&dir, "record", &identity, "sha256"), None, "{len}");
        }
        // Another server's write of another value caught halfway: the new
        // bytes over the start of the old record.
        write(&dir, "record", &identity, "sha256", &"b".repeat(64)).unwrap();
        let newer = fs::read(&path).unwrap();
        assert_eq!(newer.len(), whole.len());
        // Split inside the value, and inside the end line.
        let value_at = whole.windows(7).position(|w| w == b"sha256 ").unwrap() + 7;
        for at in [value_at + 1, value_at + 40, whole.len() - 10] {
            assert_ne!(newer[..at], whole[..at]);
            let mut mixed = newer[..at].to_vec();
            mixed.extend_from_slice(&whole[at..]);
            fs::write(&path, &mixed).unwrap();
            assert_eq!(read(&dir, "record", &identity, "sha256"), None, "{at}");
        }
        // A longer old record's tail behind a whole new one does not matter.
        let mut tailed = newer.clone();
        tailed.extend_from_slice(b"stale tail\n");
        fs::write(&path, &tailed).unwrap();
        assert_eq!(
            read(&dir, "record", &identity, "sha256"),
            Some("b".repeat(64))
        );
        // A version 2 record, renamed into place by an older server.
        let v2 = format!("ferry-record 2\n{}\nsha256 c\n", identity.line());
        fs::write(&path, v2).unwrap();
        assert_eq!(
            read(&dir, "record", &identity, "sha256").as_deref(),
            Some("c")
        );
    }
}
