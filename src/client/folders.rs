//! The folder commands: listings of a folder or a tree, `MKDIR`, `RMDIR`,
//! `RMTREE`, `STAT`, and `MOVE`/`COPY` with their `FROM` (and `REPLACE`).

use std::io::{Read, Write};

use super::{Connection, Entry, Result, check_name, remote_or_unexpected, unexpected};
use crate::integrity::Digest;

/// What `STAT` says of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// A folder, not a file.
    pub folder: bool,
    /// Bytes (0 for a folder).
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: u64,
    /// The server's SHA-256, when it knows it without reading the file.
    pub sha256: Option<Digest>,
}

impl<S: Read + Write> Connection<S> {
    /// `LIST <path>`: the folder's files and folders (the root for
    /// `None`), in directory order.
    pub fn list_folder(&mut self, path: Option<&str>) -> Result<Vec<Entry>> {
        self.listing(&with_path("LIST", path)?)
    }

    /// `TREE <path>`: everything beneath the folder, depth first, each
    /// name a path relative to it.
    pub fn tree(&mut self, path: Option<&str>) -> Result<Vec<Entry>> {
        self.listing(&with_path("TREE", path)?)
    }

    /// `MKDIR`.
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.simple("MKDIR", path, 257)
    }

    /// `RMDIR`: an empty folder.
    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        self.simple("RMDIR", path, 250)
    }

    /// `RMTREE`: a folder and everything in it (or a file).
    pub fn rmtree(&mut self, path: &str) -> Result<()> {
        self.simple("RMTREE", path, 250)
    }

    /// `FROM`, `REPLACE` (with `replace`), `MOVE`.
    pub fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        self.from(from, to, replace)?;
        self.simple("MOVE", to, 250)
    }

    /// `FROM`, `REPLACE` (with `replace`), `COPY`; the copy's digest.
    pub fn copy(&mut self, from: &str, to: &str, replace: bool) -> Result<Digest> {
        self.from(from, to, replace)?;
        let reply = self.command(&format!("COPY {to}"))?;
        if reply.code != 250 {
            return Err(remote_or_unexpected(to, reply));
        }
        reply
            .text
            .split_once(" sha256=")
            .and_then(|(_, hex)| Digest::from_hex(hex.as_bytes()))
            .ok_or_else(|| unexpected("COPY", reply.clone()))
    }

    /// `STAT`.
    pub fn stat(&mut self, path: &str) -> Result<Stat> {
        check_name(path)?;
        let reply = self.command(&format!("STAT {path}"))?;
        if reply.code != 213 {
            return Err(remote_or_unexpected(path, reply));
        }
        let mut stat = Stat {
            folder: false,
            size: 0,
            mtime: 0,
            sha256: None,
        };
        for field in reply.text.split(' ') {
            match field.split_once('=') {
                Some(("type", kind)) => stat.folder = kind == "folder",
                Some(("size", n)) => stat.size = n.parse().unwrap_or(0),
                Some(("mtime", n)) => stat.mtime = n.parse().unwrap_or(0),
                Some(("sha256", hex)) => stat.sha256 = Digest::from_hex(hex.as_bytes()),
                _ => {}
            }
        }
        Ok(stat)
    }

    fn from(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        check_name(from)?;
        check_name(to)?;
        if replace {
            let reply = self.command("REPLACE")?;
            if reply.code != 200 {
                return Err(unexpected("REPLACE", reply));
            }
        }
        let reply = self.command(&format!("FROM {from}"))?;
        if reply.code != 350 {
            return Err(remote_or_unexpected(from, reply));
        }
        Ok(())
    }

    /// A command on one path whose success is one reply code.
    fn simple(&mut self, verb: &str, path: &str, code: u16) -> Result<()> {
        check_name(path)?;
        let reply = self.command(&format!("{verb} {path}"))?;
        if reply.code == code {
            Ok(())
        } else {
            Err(remote_or_unexpected(path, reply))
        }
    }
}

fn with_path(verb: &str, path: Option<&str>) -> Result<String> {
    match path {
        None => Ok(verb.to_string()),
        Some(path) => {
            check_name(path)?;
            Ok(format!("{verb} {path}"))
        }
    }
}
