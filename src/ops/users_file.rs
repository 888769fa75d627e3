//! `ferryd user add|passwd|del|list`: edits the users file in place of a
//! text editor. Every other line (comments, blank lines, other users, line
//! ends) is kept byte for byte, the new file replaces the old one
//! atomically (a temporary file in the same directory, synced, renamed,
//! the directory synced), and the result must parse as the server would
//! load it, or nothing is written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::Users;

/// Why an edit was refused or failed.
#[derive(Debug)]
pub enum EditError {
    /// The request cannot be done as asked (exit status 2): the user exists
    /// or does not, the file is invalid.
    Refused(String),
    /// Reading or writing failed (exit status 1).
    Io(String),
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::Refused(message) | EditError::Io(message) => f.write_str(message),
        }
    }
}

pub enum Edit<'a> {
    /// A new user with this entry (a hash); refused if the user exists.
    Add(&'a str, &'a str),
    /// A new entry for an existing user.
    Passwd(&'a str, &'a str),
    Del(&'a str),
}

/// The user a line defines, if it is not a comment or blank.
fn user_of(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) || line.first() == Some(&b'#') {
        return None;
    }
    let colon = line.iter().position(|&b| b == b':')?;
    Some(&line[..colon])
}

/// The users of a file, in file order, each with whether its password is
/// hashed.
pub fn list(path: &Path) -> Result<Vec<(String, bool)>, EditError> {
    let text = fs::read(path).map_err(|err| EditError::Io(format!("{}: {err}", path.display())))?;
    check(path, &text)?;
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        if let Some(user) = user_of(line) {
            let rest = &line[user.len() + 1..];
            let hashed =
                crate::kdf::PasswordHash::is_hash(rest.strip_suffix(b"\r").unwrap_or(rest));
            out.push((String::from_utf8_lossy(user).into_owned(), hashed));
        }
    }
    Ok(out)
}

fn check(path: &Path, text: &[u8]) -> Result<(), EditError> {
    Users::parse(text)
        .map(|_| ())
        .map_err(|err| EditError::Refused(format!("{}:{err}", path.display())))
}

/// Applies one edit to the users file. `Add` creates the file when it
/// does not exist.
pub fn edit(path: &Path, edit: Edit) -> Result<(), EditError> {
    let io = |err: io::Error| EditError::Io(format!("{}: {err}", path.display()));
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Two edits at once must not lose one: they take turns on a lock of
    // the directory (the file itself is replaced, so it cannot hold it).
    let dir_handle =
        File::open(dir).map_err(|err| EditError::Io(format!("{}: {err}", dir.display())))?;
    dir_handle.lock().map_err(io)?;
    let old = match fs::read(path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == io::ErrorKind::NotFound && matches!(edit, Edit::Add(..)) => None,
        Err(err) => return Err(io(err)),
    };
    let text = old
        .clone()
        .unwrap_or_else(|| b"# ferry users: one username:password per line.\n".to_vec());
    check(path, &text)?;
    let target = match edit {
        Edit::Add(user, _) | Edit::Passwd(user, _) | Edit::Del(user) => user,
    };
    if !crate::auth::is_valid_username(target.as_bytes()) {
        return Err(EditError::Refused(format!(
            "{target:?} is not a valid username"
        )));
    }
    let mut out: Vec<u8> = Vec::with_capacity(text.len() + 128);
    let mut found = false;
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        if user_of(line) == Some(target.as_bytes()) {
            found = true;
            match edit {
                Edit::Add(..) => {}
                Edit::Passwd(_, entry) => {
                    out.extend_from_slice(format!("{target}:{entry}").as_bytes());
                    if line.ends_with(b"\r") {
                        out.push(b'\r');
                    }
                    if !last {
                        out.push(b'\n');
                    }
                }
                Edit::Del(_) => {}
            }
            continue;
        }
        out.extend_from_slice(line);
        if !last {
            out.push(b'\n');
        }
    }
    match edit {
        Edit::Add(..) if found => {
            return Err(EditError::Refused(format!(
                "{}: user {target:?} exists; 'ferryd user passwd {target}' changes the password",
                path.display()
            )));
        }
        Edit::Add(_, entry) => {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(format!("{target}:{entry}\n").as_bytes());
        }
        Edit::Passwd(..) | Edit::Del(_) if !found => {
            return Err(EditError::Refused(format!(
                "{}: no user {target:?}",
                path.display()
            )));
        }
        _ => {}
    }
    check(path, &out)?;
    // A replaced file keeps its owner; a new one takes its directory's
    // owner when it can (root adding the first user in ferryd's
    // StateDirectory makes a file the server can read).
    let owner = match &old {
        Some(_) => Some((fs::metadata(path).map_err(io)?, true)),
        None => fs::metadata(dir).ok().map(|meta| (meta, false)),
    };
    replace(path, dir, &out, owner).map_err(io)
}

/// Writes `bytes` to a temporary file beside `path` (mode 0600, with
/// `owner`'s owner: required, or only when allowed), syncs it, renames it over `path` and syncs the
/// directory. On any failure the temporary file is removed and `path` is
/// as it was.
fn replace(
    path: &Path,
    dir: &Path,
    bytes: &[u8],
    owner: Option<(fs::Metadata, bool)>,
) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.ferryd-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        if let Some((meta, required)) = &owner {
            let mine = file.metadata()?;
            if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
                // root editing the file of the user ferryd runs as: the
                // server must still be able to read it.
                let changed = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
                if *required {
                    changed?;
                }
            }
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
