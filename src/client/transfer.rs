//! Whole-file transfers, verified and resumable.
//!
//! - [`upload`] hashes the file while it sends it and compares the digest
//!   with the server's `226`. When the server holds a partial of the name
//!   (`PARTIAL`), it continues from there (`REST`), announcing the whole
//!   file's digest first (`EXPECT`) so that a partial from some other
//!   content is refused by the server instead of stored.
//! - [`download`] asks for the server's digest (`HASH`), writes to
//!   `<target>.ferry-part` next to the target, and renames it over the
//!   target only once the digest matches. A `.ferry-part` left by an
//!   interrupted download is continued (`REST`).
//!
//! A resumed transfer whose result does not match (the file changed since
//! the interruption) is done once more from the start before anything is
//! reported as a mismatch.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Connection, Error, Progress, Result, check_name};
use crate::integrity::{Digest, Hasher};

/// Suffix of the file a download is written to before it is verified.
pub const PART_SUFFIX: &str = ".ferry-part";

/// What a finished transfer did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The name on the server.
    pub remote: String,
    /// The local file.
    pub local: PathBuf,
    /// Size of the whole file.
    pub size: u64,
    /// Its SHA-256, checked on both ends.
    pub sha256: Digest,
    /// Bytes that were already in place (on the server for an upload, in
    /// the `.ferry-part` file for a download) and were not sent again.
    pub resumed_from: u64,
}

/// Progress of a whole file: where it starts, then what moves.
pub trait Meter: Progress {
    /// A transfer of `name` begins (again) with `done` bytes in place.
    fn begin(&mut self, name: &str, done: u64);
}

/// A meter that shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn advance(&mut self, _bytes: u64) {}
}

impl Meter for Silent {
    fn begin(&mut self, _name: &str, _done: u64) {}
}

/// Uploads `local` as `remote`. With `resume`, continues the server's
/// partial of `remote` when there is one.
pub fn upload<S: Read + Write>(
    conn: &mut Connection<S>,
    local: &Path,
    remote: &str,
    resume: bool,
    meter: &mut dyn Meter,
) -> Result<Report> {
    check_name(remote)?;
    let mut file = File::open(local).map_err(|e| Error::local(local, e))?;
    let meta = file.metadata().map_err(|e| Error::local(local, e))?;
    if !meta.is_file() {
        return Err(Error::local(local, not_a_file()));
    }
    let size = meta.len();
    let report = |sha256, resumed_from| Report {
        remote: remote.to_string(),
        local: local.to_path_buf(),
        size,
        sha256,
        resumed_from,
    };

    let held = if resume { conn.partial(remote)? } else { 0 };
    if held > 0 && held <= size {
        // The server cannot tell whether the bytes it holds are the start of
        // this file: give it the whole file's digest to check.
        let whole = hash_prefix(&mut file, local, size)?;
        file.seek(SeekFrom::Start(held))
            .map_err(|e| Error::local(local, e))?;
        meter.begin(remote, held);
        let mut sent = Hasher::new();
        match conn.put(
            remote,
            size,
            held,
            &mut file,
            local,
            Some(whole),
            &mut sent,
            meter,
        ) {
            Ok(stored) if stored == whole => return Ok(report(whole, held)),
            Ok(stored) => {
                return Err(Error::Checksum {
                    name: remote.to_string(),
                    expected: whole,
                    received: stored,
                });
            }
            // The partial was the start of something else; the server has
            // dropped it. Send the whole file.
            Err(Error::Remote { reply, .. }) if is_checksum_refusal(&reply) => {}
            Err(err) => return Err(err),
        }
    }

    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::local(local, e))?;
    meter.begin(remote, 0);
    let mut sent = Hasher::new();
    let stored = conn.put(remote, size, 0, &mut file, local, None, &mut sent, meter)?;
    let ours = sent.finish();
    if stored != ours {
        return Err(Error::Checksum {
            name: remote.to_string(),
            expected: ours,
            received: stored,
        });
    }
    Ok(report(ours, 0))
}

/// Downloads `remote` to the file `target`. With `resume`, continues the
/// `<target>.ferry-part` an earlier download left.
///
/// A file already at `target` whose content is not the remote file's is
/// replaced only when `replace(target)` says so; otherwise the download
/// stops with a local error before a byte is fetched and the file stays as
/// it is. (A file with the same content is replaced by the same bytes.)
pub fn download<S: Read + Write>(
    conn: &mut Connection<S>,
    remote: &str,
    target: &Path,
    resume: bool,
    replace: &mut dyn FnMut(&Path) -> bool,
    meter: &mut dyn Meter,
) -> Result<Report> {
    check_name(remote)?;
    let mut expected = conn.hash(remote)?;
    if target_differs(target, &expected)? && !replace(target) {
        return Err(Error::local(
            target,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "exists with other content than {remote}; not replaced (--force replaces it)"
                ),
            ),
        ));
    }
    let part = part_path(target);
    let mut resume = resume;
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| Error::local(&part, e))?;
        // Two downloads into one .ferry-part would interleave their bytes.
        file.try_lock().map_err(|_| {
            Error::local(
                &part,
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another download to this file is running",
                ),
            )
        })?;
        let mut have = file.metadata().map_err(|e| Error::local(&part, e))?.len();
        if !resume && have > 0 {
            file.set_len(0).map_err(|e| Error::local(&part, e))?;
            have = 0;
        }
        let mut hasher = Hasher::new();
        if have > 0 {
            hash_into(&mut file, &part, have, &mut hasher)?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::local(&part, e))?;
        meter.begin(remote, have);
        let mut sink = BufWriter::with_capacity(256 * 1024, &file);
        let got = conn.get(remote, have, &mut sink, &part, &mut hasher, meter);
        // Whatever arrived stays in the .ferry-part file for the next try.
        let flushed = sink.flush().map_err(|e| Error::local(&part, e));
        drop(sink);
        if got.is_err() && file.metadata().is_ok_and(|m| m.len() == 0) {
            // Nothing arrived to resume from: leave no clutter.
            let _ = fs::remove_file(&part);
        }
        match got {
            Ok(_) => flushed?,
            // The partial is longer than the file is now: start over.
            Err(Error::Remote { reply, .. }) if have > 0 && reply.code == 501 => {
                resume = false;
                continue;
            }
            Err(err) => return Err(err),
        }
        let received = hasher.finish();
        if received != expected {
            if have > 0 {
                // The bytes kept from before belong to another version.
                resume = false;
                continue;
            }
            // The file may have been replaced between HASH and GET; then
            // what arrived is the new version, and its digest says so.
            let now = conn.hash(remote)?;
            if now != received {
                let _ = fs::remove_file(&part);
                return Err(Error::Checksum {
                    name: remote.to_string(),
                    expected,
                    received,
                });
            }
            expected = now;
        }
        file.sync_all().map_err(|e| Error::local(&part, e))?;
        fs::rename(&part, target).map_err(|e| Error::local(target, e))?;
        sync_parent(target);
        let size = file.metadata().map_err(|e| Error::local(target, e))?.len();
        return Ok(Report {
            remote: remote.to_string(),
            local: target.to_path_buf(),
            size,
            sha256: expected,
            resumed_from: have,
        });
    }
}

/// Whether something is at `target` that a download of content `expected`
/// would destroy: a file with other content, or anything not a regular
/// file (a symlink is judged by itself, not followed).
pub(super) fn target_differs(target: &Path, expected: &Digest) -> Result<bool> {
    match fs::symlink_metadata(target) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(Error::local(target, err)),
        Ok(meta) if meta.is_file() => Ok(hash_file(target)? != *expected),
        Ok(_) => Ok(true),
    }
}

/// Makes a rename in `path`'s directory durable, as far as it can.
pub(super) fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// `<target>.ferry-part`, in the target's directory.
pub fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().map(OsString::from).unwrap_or_default();
    name.push(PART_SUFFIX);
    target.with_file_name(name)
}

/// SHA-256 of a whole local file.
pub fn hash_file(path: &Path) -> Result<Digest> {
    let mut file = File::open(path).map_err(|e| Error::local(path, e))?;
    let size = file.metadata().map_err(|e| Error::local(path, e))?.len();
    hash_prefix(&mut file, path, size)
}

pub(super) fn hash_prefix(file: &mut File, path: &Path, len: u64) -> Result<Digest> {
    let mut hasher = Hasher::new();
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::local(path, e))?;
    hash_into(file, path, len, &mut hasher)?;
    Ok(hasher.finish())
}

/// Feeds the first `len` bytes of `file` (from where it stands) to `hasher`.
pub(super) fn hash_into(file: &mut File, path: &Path, len: u64, hasher: &mut Hasher) -> Result<()> {
    let mut buf = vec![0; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let got = file
            .read(&mut buf[..want])
            .map_err(|e| Error::local(path, e))?;
        if got == 0 {
            return Err(Error::local(
                path,
                io::Error::new(io::ErrorKind::UnexpectedEof, "the file got shorter"),
            ));
        }
        hasher.update(&buf[..got]);
        left -= got as u64;
    }
    Ok(())
}

pub(super) fn is_checksum_refusal(reply: &super::Reply) -> bool {
    reply.code == 451 && reply.text.starts_with("checksum mismatch")
}

fn not_a_file() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_file_sits_next_to_the_target() {
        assert_eq!(
            part_path(Path::new("/tmp/x/report.pdf")),
            PathBuf::from("/tmp/x/report.pdf.ferry-part")
        );
        assert_eq!(part_path(Path::new("a b")), PathBuf::from("a b.ferry-part"));
    }
}
