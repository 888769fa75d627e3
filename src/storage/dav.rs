//! What WebDAV asks of storage beyond reading and writing files: the
//! facts of a file, a folder or the user's root with a [`Version`] (its
//! ETag), dead properties kept beside the server's other records of the
//! user, and setting a modification time.
//!
//! Dead-property records follow the tree as the SHA-256 records do: the
//! record of the file `a/b/c` is `.ferry/users/<user>/props/a/b/c`, and a
//! folder's own (and the root's) is the file `\x01` inside its mirror
//! folder (`props/a/b/\x01`, `props/\x01`), a name no file can have. So
//! a move of a folder moves its records with one rename, and a removed
//! tree's records go with it.
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

use super::dir::Dir;
use super::folders::mirror;
use super::{PROPS_DIR, Storage, StorageError, UserDir, record};
use crate::protocol::path::FilePath;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// A file, a folder or the user's root, as WebDAV describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DavFacts {
    pub folder: bool,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub version: Version,
}

impl DavFacts {
    fn of(meta: &Metadata) -> DavFacts {
        DavFacts {
            folder: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.size() },
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

/// The name of a folder's (or the root's) own record inside its mirror
/// folder under `props/`: a control byte, which no file name holds.
const SELF_RECORD: &str = "\u{1}";

impl Storage {
    /// The facts of `path` (the user's root for `None`): a regular file or
    /// a folder; anything else is [`StorageError::NotRegular`].
    pub fn dav_facts(
        &self,
        dir: &UserDir,
        path: Option<FilePath<'_>>,
    ) -> Result<DavFacts, StorageError> {
        let Some(path) = path else {
            return Ok(DavFacts::of(&self.files(dir)?.metadata()?));
        };
        let folder = self.folder_of(dir, path).map_err(|err| match err {
            StorageError::NoFolder => StorageError::NotFound,
            other => other,
        })?;
        let meta = folder.entry(path.leaf().as_str())?;
        if !meta.is_file && !meta.is_dir {
            return Err(StorageError::NotRegular);
        }
        Ok(DavFacts {
            folder: meta.is_dir,
            size: if meta.is_dir { 0 } else { meta.len },
            mtime: meta.mtime,
            version: meta.version(),
        })
    }

    /// The mirror under `props/` of the folder `path` (the props root for
    /// `None`), created with `create` (a stale record in the way removed).
    fn props_mirror(&self, dir: &UserDir, path: Option<FilePath<'_>>, create: bool) -> Option<Dir> {
        mirror(self.records(dir, PROPS_DIR).ok()?, path, create)
    }

    /// Where the record of `path` is: a file's beside its siblings', a
    /// folder's (and the root's) inside the folder's own mirror.
    fn props_record<'a>(
        &self,
        dir: &UserDir,
        path: Option<FilePath<'a>>,
        folder: bool,
        create: bool,
    ) -> Option<(Dir, &'a str)> {
        match path {
            Some(path) if !folder => {
                let mirror = self.props_mirror(dir, path.parent(), create)?;
                Some((mirror, path.leaf().as_str()))
            }
            _ => Some((self.props_mirror(dir, path, create)?, SELF_RECORD)),
        }
    }

    /// The dead properties of `path` (none when there is no record or it
    /// cannot be read).
    pub fn dead_props(
        &self,
        dir: &UserDir,
        path: Option<FilePath<'_>>,
        folder: bool,
    ) -> Vec<DeadProp> {
        let Some((mirror, name)) = self.props_record(dir, path, folder, false) else {
            return Vec::new();
        };
        let Ok(file) = mirror.open_regular(name, false) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        let limit = (MAX_DEAD_PROPS + MAX_DEAD_PROP_COUNT * 64 + 64) as u64;
        if file.take(limit).read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        parse_props(&bytes).unwrap_or_else(|| {
            log::warn!("ignoring a malformed property record of {path:?}");
            Vec::new()
        })
    }

    /// Replaces the dead properties of `path` (none removes the record).
    pub fn set_dead_props(
        &self,
        dir: &UserDir,
        path: Option<FilePath<'_>>,
        folder: bool,
        props: &[DeadProp],
    ) -> Result<(), PropsError> {
        let size: usize = props
            .iter()
            .map(|p| p.ns.len() + p.name.len() + p.xml.len())
            .sum();
        if size > MAX_DEAD_PROPS || props.len() > MAX_DEAD_PROP_COUNT {
            return Err(PropsError::TooMany);
        }
        if props.is_empty() {
            if let Some((mirror, name)) = self.props_record(dir, path, folder, false) {
                record::remove(&mirror, name);
            }
            return Ok(());
        }
        let Some((mirror, name)) = self.props_record(dir, path, folder, true) else {
            let err = io::Error::other("cannot make the property records' folder");
            return Err(PropsError::Storage(StorageError::Io(err)));
        };
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
            .and_then(|()| tmp.rename(&tmp_name, &mirror, name));
        if let Err(err) = result {
            let _ = tmp.remove(&tmp_name);
            return Err(PropsError::Storage(StorageError::Io(err)));
        }
        Ok(())
    }

    /// Removes the dead properties of `path` as it goes: a file's record,
    /// or a folder's whole mirror (its members' records with it).
    pub(super) fn forget_dead_props(&self, dir: &UserDir, path: FilePath<'_>, folder: bool) {
        let Some(parent) = self.props_mirror(dir, path.parent(), false) else {
            return;
        };
        let leaf = path.leaf().as_str();
        if !folder {
            if parent.entry(leaf).is_ok_and(|meta| meta.is_file) {
                record::remove(&parent, leaf);
            }
            return;
        }
        if parent.entry(leaf).is_ok_and(|meta| meta.is_dir) {
            let _ = self.to_trash(&parent, leaf, None);
        }
    }

    /// The dead properties of `from` follow it to `to` (a move); those
    /// `to` had are gone, as what it named is.
    pub(super) fn move_dead_props(
        &self,
        dir: &UserDir,
        from: FilePath<'_>,
        to: FilePath<'_>,
        folder: bool,
    ) {
        self.forget_dead_props(dir, to, folder);
        let Some(source) = self.props_mirror(dir, from.parent(), false) else {
            return;
        };
        let from_leaf = from.leaf().as_str();
        if source.entry(from_leaf).is_err() {
            return;
        }
        if let Some(target) = self.props_mirror(dir, to.parent(), true) {
            let _ = source.rename(from_leaf, &target, to.leaf().as_str());
        }
    }

    /// A copy's dead properties: the source's, in place of whatever the
    /// replaced file had (RFC 4918 §9.8.2). Best effort: the copy itself
    /// is what the client asked for.
    pub(super) fn copy_dead_props(&self, dir: &UserDir, to: &str, props: &[DeadProp]) {
        let Some(to) = crate::protocol::path::validate(to.as_bytes()) else {
            return;
        };
        if let Err(err) = self.set_dead_props(dir, Some(to), false, props) {
            log::warn!("cannot copy the dead properties to {to:?}: {err:?}");
        }
    }

    /// Sets the modification time of the regular file `path` (`PROPPATCH`
    /// of `getlastmodified` or Windows' `Win32LastModifiedTime`). The
    /// recorded digest follows the file to its new identity.
    pub fn set_modified(
        &self,
        dir: &UserDir,
        path: FilePath<'_>,
        time: SystemTime,
    ) -> Result<(), StorageError> {
        let folder = self.folder_of(dir, path)?;
        let (file, _) = folder.open_regular_read(path.leaf().as_str())?;
        let digest = self.stored_digest(dir, path, &file);
        file.set_times(FileTimes::new().set_modified(time))?;
        if let Some(digest) = digest {
            let identity = super::Identity::of_file(&file)?;
            self.remember_digest(dir, path, &identity, digest);
        }
        Ok(())
    }
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
    use crate::protocol::path;

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
        let f = path::validate(b"f");
        storage.set_dead_props(&dir, f, false, &props).unwrap();
        assert_eq!(storage.dead_props(&dir, f, false), props);
        assert_eq!(storage.dead_props(&dir, None, true), []);
        let deep = path::validate(b"a/b");
        storage.set_dead_props(&dir, deep, true, &props).unwrap();
        storage
            .set_dead_props(&dir, None, true, &props[1..])
            .unwrap();
        assert_eq!(storage.dead_props(&dir, deep, true), props);
        assert_eq!(storage.dead_props(&dir, None, true), props[1..]);
        let moved = path::validate(b"c").unwrap();
        storage.move_dead_props(&dir, path::validate(b"a").unwrap(), moved, true);
        assert_eq!(
            storage.dead_props(&dir, path::validate(b"c/b"), true),
            props
        );
        assert_eq!(storage.dead_props(&dir, deep, true), []);
        storage.set_dead_props(&dir, f, false, &[]).unwrap();
        assert_eq!(storage.dead_props(&dir, f, false), []);
        let big = vec![DeadProp {
            ns: String::new(),
            name: "n".into(),
            xml: "x".repeat(MAX_DEAD_PROPS),
        }];
        assert!(matches!(
            storage.set_dead_props(&dir, f, false, &big),
            Err(PropsError::TooMany)
        ));
    }
}
