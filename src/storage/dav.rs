//! What WebDAV asks of storage beyond reading and writing files: the
//! facts of a file or of the user's root with a [`Version`] (its ETag),
//! dead properties kept beside the server's other records of the user
//! (`.ferry/users/<user>/props/<name>`), and setting a modification time.
//!
//! A dead-property record is the client's data, not a cache: it is kept
//! across a `PUT` that replaces the file, removed with the file, and
//! written to a temporary file and renamed into place, so a crash leaves
//! the old set or the new one.
//!
//! Format (a magic line, then per property three lengths and the bytes):
//!
//! ```text
//! ferry-props 1
//! <ns-len> <name-len> <xml-len>
//! <ns><name><xml>
//! ```

use std::fmt;
use std::fs::{FileTimes, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

use super::{Storage, StorageError, UserDir, record};
use crate::protocol::name::FileName;

const MAGIC: &str = "ferry-props 1";
/// Most bytes of dead properties per resource (names and values):
/// Windows' four times and a few of a client's own take a few hundred
/// bytes; 64 KiB is what one `PROPPATCH` body can carry.
pub const MAX_DEAD_PROPS: usize = 64 * 1024;
/// Most dead properties per resource.
pub const MAX_DEAD_PROP_COUNT: usize = 256;
const PROPS_MODE: u32 = 0o600;

/// What tells one version of a file from another: a new upload is a new
/// inode (it is renamed into place), a change behind the server's back
/// moves the modification time or the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

impl Version {
    pub(super) fn new(ino: u64, mtime: i64, mtime_nsec: i64, size: u64) -> Version {
        Version {
            ino,
            mtime,
            mtime_nsec,
            size,
        }
    }

    pub fn of(meta: &Metadata) -> Version {
        Version::new(meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.size())
    }
}

/// The strong ETag, with its quotes.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{:x}-{:x}.{:x}-{:x}\"",
            self.ino, self.mtime, self.mtime_nsec, self.size
        )
    }
}

/// A file or the user's root, as WebDAV describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub version: Version,
}

impl Facts {
    fn of(meta: &Metadata) -> Facts {
        Facts {
            size: meta.size(),
            mtime: meta.mtime(),
            version: Version::of(meta),
        }
    }
}

/// One dead property: namespace, name, and the element as it is sent
/// back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadProp {
    pub ns: String,
    pub name: String,
    pub xml: String,
}

/// Why dead properties cannot be stored.
#[derive(Debug)]
pub enum PropsError {
    /// Over [`MAX_DEAD_PROPS`] bytes or [`MAX_DEAD_PROP_COUNT`] properties.
    TooMany,
    Storage(StorageError),
}

impl Storage {
    /// The facts of the regular file `name`.
    pub fn facts(&self, dir: &UserDir, name: FileName<'_>) -> Result<Facts, StorageError> {
        let meta = dir.inner.files.stat(name.as_str())?;
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        Ok(Facts::of(&meta))
    }

    /// The facts of the user's directory itself.
    pub fn root_facts(&self, dir: &UserDir) -> io::Result<Facts> {
        Ok(Facts::of(&dir.inner.files.metadata()?))
    }

    /// The dead properties of `name` (none when there is no record or it
    /// cannot be read).
    pub fn dead_props(&self, dir: &UserDir, name: &str) -> Vec<DeadProp> {
        let Ok(file) = dir.inner.props.open_regular(record_name(name), false) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        let limit = (MAX_DEAD_PROPS + MAX_DEAD_PROP_COUNT * 64 + 64) as u64;
        if file.take(limit).read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        parse_props(&bytes).unwrap_or_else(|| {
            log::warn!("ignoring a malformed property record of {name:?}");
            Vec::new()
        })
    }

    /// Replaces the dead properties of `name` (none removes the record).
    pub fn set_dead_props(
        &self,
        dir: &UserDir,
        name: &str,
        props: &[DeadProp],
    ) -> Result<(), PropsError> {
        let size: usize = props
            .iter()
            .map(|p| p.ns.len() + p.name.len() + p.xml.len())
            .sum();
        if size > MAX_DEAD_PROPS || props.len() > MAX_DEAD_PROP_COUNT {
            return Err(PropsError::TooMany);
        }
        let record = record_name(name);
        if props.is_empty() {
            record::remove(&dir.inner.props, record);
            return Ok(());
        }
        let mut text = format!("{MAGIC}\n").into_bytes();
        for p in props {
            let _ = writeln!(text, "{} {} {}", p.ns.len(), p.name.len(), p.xml.len());
            text.extend_from_slice(p.ns.as_bytes());
            text.extend_from_slice(p.name.as_bytes());
            text.extend_from_slice(p.xml.as_bytes());
            text.push(b'\n');
        }
        let tmp = self.tmp();
        let tmp_name = self.tmp_name("props");
        let result = tmp
            .create_new(&tmp_name, PROPS_MODE)
            .and_then(|mut file| file.write_all(&text))
            .and_then(|()| tmp.rename(&tmp_name, &dir.inner.props, record));
        if let Err(err) = result {
            let _ = tmp.remove(&tmp_name);
            return Err(PropsError::Storage(StorageError::Io(err)));
        }
        Ok(())
    }

    /// Removes the dead properties of `name`, as its file goes.
    pub(super) fn forget_dead_props(&self, dir: &UserDir, name: &str) {
        record::remove(&dir.inner.props, record_name(name));
    }

    /// Sets the modification time of the regular file `name` (`PROPPATCH`
    /// of `getlastmodified` or Windows' `Win32LastModifiedTime`). The
    /// recorded digest follows the file to its new identity.
    pub fn set_modified(
        &self,
        dir: &UserDir,
        name: FileName<'_>,
        time: SystemTime,
    ) -> Result<(), StorageError> {
        let (file, _) = dir.inner.files.open_regular_read(name.as_str())?;
        let digest = self.stored_digest(dir, name, &file);
        file.set_times(FileTimes::new().set_modified(time))?;
        if let Some(digest) = digest {
            let identity = super::Identity::of_file(&file)?;
            self.remember_digest(dir, name, &identity, digest);
        }
        Ok(())
    }
}

/// The record of a resource: the file's name, or `.` for the user's
/// root (no file name is `.`).
fn record_name(name: &str) -> &str {
    if name.is_empty() { "." } else { name }
}

fn parse_props(bytes: &[u8]) -> Option<Vec<DeadProp>> {
    let rest = bytes.strip_prefix(MAGIC.as_bytes())?.strip_prefix(b"\n")?;
    let mut rest = rest;
    let mut props = Vec::new();
    while !rest.is_empty() {
        let eol = rest.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&rest[..eol]).ok()?;
        let mut lens = line.split(' ').map(|n| n.parse::<usize>().ok());
        let (a, b, c) = (lens.next()??, lens.next()??, lens.next()??);
        rest = &rest[eol + 1..];
        let total = a.checked_add(b)?.checked_add(c)?;
        if rest.len() < total + 1 || rest[total] != b'\n' {
            return None;
        }
        let text = |r: &[u8]| String::from_utf8(r.to_vec()).ok();
        props.push(DeadProp {
            ns: text(&rest[..a])?,
            name: text(&rest[a..a + b])?,
            xml: text(&rest[a + b..total])?,
        });
        rest = &rest[total + 1..];
    }
    Some(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_props_record_reads_back() {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::open(root.path(), Default::default()).unwrap();
        let dir = storage.user_dir("alice").unwrap();
        let props = vec![
            DeadProp {
                ns: "urn:x".into(),
                name: "a\nb".into(),
                xml: "<x:a>1\n2</x:a>".into(),
            },
            DeadProp {
                ns: String::new(),
                name: "n".into(),
                xml: "<n xmlns=\"\"/>".into(),
            },
        ];
        storage.set_dead_props(&dir, "f", &props).unwrap();
        assert_eq!(storage.dead_props(&dir, "f"), props);
        assert_eq!(storage.dead_props(&dir, ""), []);
        storage.set_dead_props(&dir, "f", &[]).unwrap();
        assert_eq!(storage.dead_props(&dir, "f"), []);
        let big = vec![DeadProp {
            ns: String::new(),
            name: "n".into(),
            xml: "x".repeat(MAX_DEAD_PROPS),
        }];
        assert!(matches!(
            storage.set_dead_props(&dir, "f", &big),
            Err(PropsError::TooMany)
        ));
    }
}
