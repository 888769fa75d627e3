//! Many files over one connection, pipelined: a folder and everything in
//! it, up or down, each file verified and resumable as in [`transfer`].
//!
//! One command and one round trip per file would make a tree of small
//! files cost a round trip each. Commands may be pipelined (`protocol.md`,
//! Framing), so these send the commands for the next files while the
//! replies and data of earlier ones come back, within a window of
//! [`WINDOW_FILES`] files and [`WINDOW_BYTES`] bytes of unanswered command
//! lines:
//!
//! - [`Downloads`]: `HASH`, `REST` (continuing a `.ferry-part`) and `GET`
//!   for each file, written ahead; each file goes to `<target>.ferry-part`
//!   and is renamed over its target once its SHA-256 matches the `HASH`.
//!   A target that is already there with the same content is kept as it is.
//! - [`Uploads`]: `PARTIAL` for the files ahead, then `PUT` file after file.
//!   A payload may only follow its `150`, but the next `PUT` line goes out
//!   right after a payload, before that payload's `226`: the server's
//!   storing and its reply overlap the next file. Each `226`'s digest is
//!   compared with the file's; a partial the server holds is continued
//!   (`EXPECT` with the whole file's digest, `REST`, `PUT`).
//! - [`Connection::mkdirs`]: `MKDIR` for many folders at once.
//!
//! A failure that concerns one file (the server refused it, a checksum
//! did not match, a local file could not be read or written) is that
//! file's outcome, given to [`Observer::finished`], and the others go on.
//! A failure of the connection ends `run` with the error; `run` again on a
//! new connection carries on with the files not finished, the file that
//! was in flight resumed where it stopped, and [`Downloads::give_up`] (or
//! [`Uploads::give_up`]) says which file a final error belongs to.
//!
//! ```no_run
//! use ferry::client::tree::{self, Job, Observer, Uploads};
//! use ferry::client::transfer::{Meter, Report};
//! use ferry::client::{Connection, Progress, Result, Timeouts};
//!
//! struct Print;
//! impl Progress for Print {
//!     fn advance(&mut self, _bytes: u64) {}
//! }
//! impl Meter for Print {
//!     fn begin(&mut self, _name: &str, _done: u64) {}
//! }
//! impl Observer for Print {
//!     fn finished(&mut self, job: &Job, result: Result<Report>) {
//!         println!("{}: {:?}", job.remote, result.map(|r| r.sha256));
//!     }
//! }
//!
//! let mut conn = Connection::connect("127.0.0.1:9999", Timeouts::default())?;
//! conn.login("alice", "s3cret")?;
//! let (folders, files) = tree::walk_local("photos".as_ref(), "photos")?;
//! for (folder, made) in folders.iter().zip(conn.mkdirs(&folders)?) {
//!     if let Err(err) = made {
//!         eprintln!("{folder}: {err}");
//!     }
//! }
//! let mut uploads = Uploads::new(files, true);
//! uploads.run(&mut conn, &mut Print)?;
//! # Ok::<(), ferry::client::Error>(())
//! ```
//!
//! [`transfer`]: super::transfer

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::transfer::{
    Meter, Report, hash_into, hash_prefix, is_checksum_refusal, part_path, sync_parent,
    target_differs,
};
use super::{
    Connection, Entry, Error, HashingWriter, Reply, Result, check_name, remote_or_unexpected,
    stored_digest, unexpected,
};
use crate::integrity::{Digest, Hasher};

/// At most this many files have commands on the wire at once. Past a few
/// dozen, more files ahead save nothing: the round trip is already hidden.
pub const WINDOW_FILES: usize = 32;

/// At most this many bytes of command lines are unanswered at once (a
/// group of one file's lines may pass it when nothing else is out). The
/// client writes blocking, on one thread, while the server may be sending
/// it data it has not read yet; so everything written ahead must fit in
/// the kernel's socket buffers on their own (on Linux a connection starts
/// with 16 KiB to send and 128 KiB to receive), or a write could wait for
/// a server that waits for the client to read.
pub const WINDOW_BYTES: usize = 16 * 1024;

/// One file to move: where it is (or goes) here, and its path there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The local file.
    pub local: PathBuf,
    /// The path on the server.
    pub remote: String,
}

/// Where a batch reports: the progress of the file moving now (a
/// [`Meter`]), and each file's outcome once it is known.
pub trait Observer: Meter {
    /// The file `job` is done with: stored or saved and verified, or failed
    /// for the reason given. Called once per file, in about the order of the
    /// files (a file sent again after a mismatch comes later).
    fn finished(&mut self, job: &Job, result: Result<Report>);

    /// Whether a local file at `job.local` whose content is not the remote
    /// file's may be replaced by a download; without it the file fails with
    /// a local error and stays as it is.
    fn replace(&mut self, _job: &Job) -> bool {
        false
    }
}

/// The folders and files beneath the local folder `dir`, named for an
/// upload as the remote folder `base`: the folders parents first (`base`
/// itself first), then one job per file, each folder's names sorted.
/// Symbolic links, anything that is neither a file nor a folder, and names
/// that are not UTF-8 are left out.
pub fn walk_local(dir: &Path, base: &str) -> Result<(Vec<String>, Vec<Job>)> {
    let mut folders = vec![(dir.to_path_buf(), base.to_string())];
    let mut files = Vec::new();
    let mut i = 0;
    while i < folders.len() {
        let (at, remote_at) = folders[i].clone();
        i += 1;
        let read = fs::read_dir(&at).map_err(|e| Error::local(&at, e))?;
        let mut entries: Vec<_> = read.filter_map(io::Result::ok).collect();
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let remote = format!("{remote_at}/{name}");
            if kind.is_dir() {
                folders.push((entry.path(), remote));
            } else if kind.is_file() {
                files.push(Job {
                    local: entry.path(),
                    remote,
                });
            }
        }
    }
    Ok((
        folders.into_iter().map(|(_, remote)| remote).collect(),
        files,
    ))
}

/// Makes the local folder `base` and the folders of `entries` (a `TREE`
/// of the remote folder `path`) beneath it, and returns a job per file:
/// `<path>/<name>` to `<base>/<name>`.
pub fn local_jobs(path: &str, entries: &[Entry], base: &Path) -> Result<Vec<Job>> {
    fs::create_dir_all(base).map_err(|e| Error::local(base, e))?;
    for entry in entries.iter().filter(|e| e.folder) {
        let dir = base.join(&entry.name);
        fs::create_dir_all(&dir).map_err(|e| Error::local(&dir, e))?;
    }
    Ok(entries
        .iter()
        .filter(|e| !e.folder)
        .map(|e| Job {
            local: base.join(&e.name),
            remote: format!("{path}/{}", e.name),
        })
        .collect())
}

/// What an unanswered line (or payload) waits for.
#[derive(Clone, Copy, Debug)]
enum Step {
    Mkdir,
    Hash,
    /// A second `HASH` after a download that did not match the first.
    Recheck,
    Rest,
    Get,
    Partial,
    Expect,
    Put,
    /// The `226` after a payload.
    Stored,
}

/// The lines written ahead and the replies they wait for, in order.
#[derive(Default)]
struct Pipe {
    out: Vec<u8>,
    awaited: VecDeque<(usize, Step, usize)>,
    unanswered: usize,
}

impl Pipe {
    fn line(&mut self, job: usize, step: Step, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.awaited.push_back((job, step, line.len() + 2));
        self.unanswered += line.len() + 2;
    }

    /// A reply that comes without a line of its own (a payload's `226`).
    fn follows(&mut self, job: usize, step: Step) {
        self.awaited.push_back((job, step, 0));
    }

    /// Whether lines of `len` bytes more fit the window.
    fn room(&self, len: usize) -> bool {
        self.awaited.is_empty() || self.unanswered + len <= WINDOW_BYTES
    }

    fn flush<S: Read + Write>(&mut self, conn: &mut Connection<S>) -> Result<()> {
        if !self.out.is_empty() {
            conn.stream.get_mut().write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    fn next(&mut self) -> Option<(usize, Step)> {
        let (job, step, len) = self.awaited.pop_front()?;
        self.unanswered -= len;
        Some((job, step))
    }
}

impl<S: Read + Write> Connection<S> {
    /// `MKDIR` of each path, pipelined; one outcome per path, in order.
    /// The server takes them in order, so a parent listed before its
    /// children exists when they are made. An existing folder is the error
    /// `550 already exists`, which a caller making sure may ignore.
    pub fn mkdirs(&mut self, paths: &[String]) -> Result<Vec<Result<()>>> {
        let mut results: Vec<Result<()>> = paths.iter().map(|p| check_name(p)).collect();
        let mut pipe = Pipe::default();
        let mut next = 0;
        loop {
            while next < paths.len() && pipe.room(paths[next].len() + 8) {
                if results[next].is_ok() {
                    pipe.line(next, Step::Mkdir, &format!("MKDIR {}", paths[next]));
                }
                next += 1;
            }
            pipe.flush(self)?;
            let Some((i, _)) = pipe.next() else {
                return Ok(results);
            };
            let reply = self.reply()?;
            if reply.code != 257 {
                results[i] = Err(remote_or_unexpected(&paths[i], reply));
            }
        }
    }

    /// The next reply; `421` is the end of the session.
    fn reply(&mut self) -> Result<Reply> {
        let reply = self.read_reply()?;
        if reply.code == 421 {
            return Err(Error::Closed(reply));
        }
        Ok(reply)
    }
}

/// `<n>` of `213 <n>` or `150 <n>`.
fn number(reply: &Reply, what: &str) -> Result<u64> {
    reply
        .text
        .parse()
        .map_err(|_| unexpected(what, reply.clone()))
}

/// The digest of `213 sha256=<hex>`.
fn hash_reply(reply: &Reply) -> Result<Digest> {
    reply
        .text
        .strip_prefix("sha256=")
        .and_then(|hex| Digest::from_hex(hex.as_bytes()))
        .ok_or_else(|| unexpected("HASH", reply.clone()))
}

/// Which file a failure of the connection belongs to: the one whose reply
/// or payload was moving, else the first not finished.
fn blamed(blame: Option<usize>, finished: impl Fn(usize) -> bool, len: usize) -> Option<usize> {
    blame
        .filter(|&i| !finished(i))
        .or_else(|| (0..len).find(|&i| !finished(i)))
}

/// The end of a `run` with nothing on the wire: `done` when every file
/// has had its turn (a file not yet sent and none outstanding would be a
/// bug here, reported rather than waited for).
fn stalled(done: bool) -> Result<()> {
    match done {
        true => Ok(()),
        false => Err(Error::Protocol(
            "a batch stalled with files to go".to_string(),
        )),
    }
}

/// One download's state.
#[derive(Default)]
struct Fetch {
    finished: bool,
    /// Its commands went out on some connection: a later try resumes.
    tried: bool,
    /// The rest is about the current connection.
    pending: usize,
    /// The target exists: ask `HASH` alone, and compare first.
    compare: bool,
    expected: Option<Digest>,
    /// Bytes of the `.ferry-part` the `GET` continues.
    have: u64,
    /// The digest of a complete download that did not match `HASH`,
    /// waiting for a second `HASH`.
    received: Option<Digest>,
    /// What went wrong while more of its replies are still coming.
    failure: Option<Error>,
    /// The target differs: whether to replace it is asked once nothing
    /// else is on the wire.
    question: bool,
}

/// Downloads of many files, pipelined (see the [module](self)).
pub struct Downloads {
    jobs: Vec<Job>,
    resume: bool,
    state: Vec<Fetch>,
    blame: Option<usize>,
    /// Files whose targets differ, waiting for [`Observer::replace`]. It
    /// may ask a person, so it is asked with nothing in flight: a server
    /// sending data meanwhile would give up on a client that long silent.
    questions: VecDeque<usize>,
}

impl Downloads {
    /// `jobs` to fetch; with `resume`, a `.ferry-part` an earlier download
    /// left is continued (a file retried after a dropped connection always
    /// continues).
    pub fn new(jobs: Vec<Job>, resume: bool) -> Downloads {
        let state = jobs.iter().map(|_| Fetch::default()).collect();
        Downloads {
            jobs,
            resume,
            state,
            blame: None,
            questions: VecDeque::new(),
        }
    }

    /// The files, in order.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// Fetches every file not finished yet over `conn`. `Ok` when each has
    /// had its outcome; an error is the connection's (it cannot be used
    /// any more), and a `run` on a new one carries on.
    pub fn run<S: Read + Write>(
        &mut self,
        conn: &mut Connection<S>,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        for fetch in self.state.iter_mut().filter(|f| !f.finished) {
            *fetch = Fetch {
                tried: fetch.tried,
                ..Fetch::default()
            };
        }
        self.blame = None;
        self.questions.clear();
        let mut pipe = Pipe::default();
        let (mut next, mut in_flight) = (0, 0);
        loop {
            if observer.cancelled() {
                return Err(Error::Cancelled);
            }
            while next < self.jobs.len()
                && in_flight < WINDOW_FILES
                && self.questions.is_empty()
                && pipe.room(2 * self.jobs[next].remote.len() + 40)
            {
                if !self.state[next].finished && self.start(next, &mut pipe, observer) {
                    in_flight += 1;
                }
                next += 1;
            }
            if pipe.awaited.is_empty() {
                while let Some(i) = self.questions.pop_front() {
                    if !self.ask(i, &mut pipe, observer) {
                        in_flight -= 1;
                    }
                }
            }
            pipe.flush(conn)?;
            let Some((i, step)) = pipe.next() else {
                if next < self.jobs.len() && in_flight < WINDOW_FILES {
                    continue;
                }
                return stalled(next == self.jobs.len());
            };
            self.blame = Some(i);
            let was_finished = self.state[i].finished;
            let reply = conn.reply()?;
            self.state[i].pending -= 1;
            match step {
                Step::Hash => self.hashed(i, reply, observer)?,
                Step::Rest if reply.code != 350 => return Err(unexpected("REST", reply)),
                Step::Rest => {}
                Step::Get => self.got(i, reply, conn, &mut pipe, observer)?,
                Step::Recheck => self.rechecked(i, reply, observer)?,
                _ => unreachable!("downloads send no {step:?}"),
            }
            let fetch = &mut self.state[i];
            if fetch.pending == 0 && !fetch.finished && !fetch.question {
                let err = fetch.failure.take().unwrap_or_else(|| {
                    Error::Protocol(format!("{}: no outcome", self.jobs[i].remote))
                });
                self.finish(i, Err(err), observer);
            }
            if self.state[i].finished && !was_finished {
                in_flight -= 1;
            }
            self.blame = None;
        }
    }

    /// Marks the file a final error of `run` belongs to as finished and
    /// returns it (`None` when every file is).
    pub fn give_up(&mut self) -> Option<&Job> {
        let i = blamed(self.blame, |i| self.state[i].finished, self.jobs.len())?;
        self.state[i].finished = true;
        Some(&self.jobs[i])
    }

    /// Writes the first commands of file `i`; false when it finished at
    /// once.
    fn start(&mut self, i: usize, pipe: &mut Pipe, observer: &mut dyn Observer) -> bool {
        let job = &self.jobs[i];
        if let Err(err) = check_name(&job.remote) {
            self.finish(i, Err(err), observer);
            return false;
        }
        let resume = self.resume || self.state[i].tried;
        self.state[i].tried = true;
        pipe.line(i, Step::Hash, &format!("HASH {}", job.remote));
        self.state[i].pending += 1;
        if fs::symlink_metadata(&job.local).is_ok() {
            // Most likely a file an earlier run fetched: compare before
            // fetching it again.
            self.state[i].compare = true;
        } else {
            self.fetch(i, resume, pipe);
        }
        true
    }

    /// Writes `REST` (continuing the `.ferry-part`, with `resume`) and `GET`.
    fn fetch(&mut self, i: usize, resume: bool, pipe: &mut Pipe) {
        let job = &self.jobs[i];
        let have = match resume {
            true => fs::metadata(part_path(&job.local)).map_or(0, |m| m.len()),
            false => 0,
        };
        if have > 0 {
            pipe.line(i, Step::Rest, &format!("REST {have}"));
            self.state[i].pending += 1;
        }
        pipe.line(i, Step::Get, &format!("GET {}", job.remote));
        self.state[i].pending += 1;
        self.state[i].have = have;
    }

    fn hashed(&mut self, i: usize, reply: Reply, observer: &mut dyn Observer) -> Result<()> {
        let job = &self.jobs[i];
        if reply.code != 213 {
            let err = remote_or_unexpected(&job.remote, reply);
            self.state[i].failure.get_or_insert(err);
            return Ok(());
        }
        let expected = hash_reply(&reply)?;
        self.state[i].expected = Some(expected);
        if !self.state[i].compare {
            return Ok(());
        }
        match target_differs(&job.local, &expected) {
            Err(err) => self.finish(i, Err(err), observer),
            Ok(false) => {
                let size = fs::metadata(&job.local).map_or(0, |m| m.len());
                let report = Report {
                    remote: job.remote.clone(),
                    local: job.local.clone(),
                    size,
                    sha256: expected,
                    resumed_from: size,
                };
                self.finish(i, Ok(report), observer);
            }
            Ok(true) => {
                self.state[i].question = true;
                self.questions.push_back(i);
            }
        }
        Ok(())
    }

    /// Asks whether the target of file `i` may be replaced, and fetches it
    /// or fails it; false when it finished here.
    fn ask(&mut self, i: usize, pipe: &mut Pipe, observer: &mut dyn Observer) -> bool {
        self.state[i].question = false;
        let job = &self.jobs[i];
        if observer.replace(job) {
            let resume = self.resume || self.state[i].tried;
            self.fetch(i, resume, pipe);
            return true;
        }
        let err = Error::local(
            &job.local,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "exists with other content than {}; not replaced (--force replaces it)",
                    job.remote
                ),
            ),
        );
        self.finish(i, Err(err), observer);
        false
    }

    /// The reply to `GET`, and its data.
    fn got<S: Read + Write>(
        &mut self,
        i: usize,
        reply: Reply,
        conn: &mut Connection<S>,
        pipe: &mut Pipe,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let job = &self.jobs[i];
        let part = part_path(&job.local);
        let have = self.state[i].have;
        if reply.code != 150 {
            if reply.code == 501 && have > 0 && self.state[i].failure.is_none() {
                // The .ferry-part is longer than the file is now.
                let _ = fs::remove_file(&part);
                self.fetch(i, false, pipe);
                return Ok(());
            }
            let err = remote_or_unexpected(&job.remote, reply);
            self.state[i].failure.get_or_insert(err);
            return Ok(());
        }
        let n = number(&reply, "GET")?;
        let opened = match self.state[i].failure {
            Some(_) => None,
            None => match open_part(&part, have) {
                Ok(opened) => Some(opened),
                Err(err) => {
                    self.state[i].failure = Some(err);
                    None
                }
            },
        };
        let Some((file, mut hasher)) = opened else {
            // The file has failed already; its bytes still come.
            return conn
                .read_data(n, &mut io::sink(), &mut |_| {})
                .map_err(|e| e.into_error(part));
        };
        observer.begin(&job.remote, have);
        observer.announce(n);
        let mut sink = BufWriter::with_capacity(256 * 1024, &file);
        let mut hashing = HashingWriter {
            sink: &mut sink,
            hasher: &mut hasher,
        };
        let got = conn.read_data(n, &mut hashing, observer);
        // Whatever arrived stays in the .ferry-part file for the next try.
        let flushed = sink.flush();
        drop(sink);
        if got.is_err() && file.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&part);
        }
        got.map_err(|e| e.into_error(part.clone()))?;
        flushed
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::local(&part, e))?;
        drop(file);
        let received = hasher.finish();
        let Some(expected) = self.state[i].expected else {
            return Err(Error::Protocol("GET answered before HASH".to_string()));
        };
        if received == expected {
            let result = self.complete(i, have + n, expected);
            self.finish(i, result, observer);
        } else if have > 0 {
            // The bytes kept from before belong to another version.
            let _ = fs::remove_file(&part);
            self.fetch(i, false, pipe);
        } else {
            // The file may have been replaced between HASH and GET; then
            // what arrived is the new version, and its digest says so.
            self.state[i].received = Some(received);
            pipe.line(i, Step::Recheck, &format!("HASH {}", job.remote));
            self.state[i].pending += 1;
        }
        Ok(())
    }

    fn rechecked(&mut self, i: usize, reply: Reply, observer: &mut dyn Observer) -> Result<()> {
        let job = &self.jobs[i];
        if reply.code != 213 {
            let err = remote_or_unexpected(&job.remote, reply);
            self.state[i].failure.get_or_insert(err);
            return Ok(());
        }
        let now = hash_reply(&reply)?;
        let fetch = &self.state[i];
        let (Some(expected), Some(received)) = (fetch.expected, fetch.received) else {
            return Err(Error::Protocol("a second HASH out of turn".to_string()));
        };
        if now == received {
            let size = fs::metadata(part_path(&job.local)).map_or(0, |m| m.len());
            let result = self.complete(i, size, now);
            self.finish(i, result, observer);
        } else {
            let _ = fs::remove_file(part_path(&job.local));
            let err = Error::Checksum {
                name: job.remote.clone(),
                expected,
                received,
            };
            self.finish(i, Err(err), observer);
        }
        Ok(())
    }

    /// Puts a verified `.ferry-part` in place.
    fn complete(&self, i: usize, size: u64, sha256: Digest) -> Result<Report> {
        let job = &self.jobs[i];
        fs::rename(part_path(&job.local), &job.local).map_err(|e| Error::local(&job.local, e))?;
        sync_parent(&job.local);
        Ok(Report {
            remote: job.remote.clone(),
            local: job.local.clone(),
            size,
            sha256,
            resumed_from: self.state[i].have,
        })
    }

    fn finish(&mut self, i: usize, result: Result<Report>, observer: &mut dyn Observer) {
        self.state[i].finished = true;
        observer.finished(&self.jobs[i], result);
    }
}

/// Opens (or creates) the `.ferry-part` a `GET` continues at byte `have`,
/// locked, with a hasher that has seen its first `have` bytes.
fn open_part(part: &Path, have: u64) -> Result<(File, Hasher)> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(|e| Error::local(part, e))?;
    // Two downloads into one .ferry-part would interleave their bytes.
    file.try_lock().map_err(|_| {
        Error::local(
            part,
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "another download to this file is running",
            ),
        )
    })?;
    let len = file.metadata().map_err(|e| Error::local(part, e))?.len();
    if len < have {
        return Err(Error::local(
            part,
            io::Error::new(io::ErrorKind::UnexpectedEof, "the file got shorter"),
        ));
    }
    if len > have {
        file.set_len(have).map_err(|e| Error::local(part, e))?;
    }
    let mut hasher = Hasher::new();
    hash_into(&mut file, part, have, &mut hasher)?;
    file.seek(SeekFrom::Start(have))
        .map_err(|e| Error::local(part, e))?;
    Ok((file, hasher))
}

/// One upload's state.
#[derive(Default)]
struct Send {
    finished: bool,
    /// Its commands went out on some connection: a later try resumes.
    tried: bool,
    /// The rest is about the current connection: the bytes the server
    /// holds of it (from `PARTIAL`; 0 without resume).
    held: Option<u64>,
    file: Option<File>,
    size: u64,
    /// Where the `PUT` continues.
    offset: u64,
    /// The whole file's digest, announced with `EXPECT`, when continuing.
    whole: Option<Digest>,
    /// The digest of what was sent, when sending the whole file.
    sent: Option<Digest>,
}

/// Uploads of many files, pipelined (see the [module](self)). The remote
/// folders must exist ([`Connection::mkdirs`]).
pub struct Uploads {
    jobs: Vec<Job>,
    resume: bool,
    state: Vec<Send>,
    blame: Option<usize>,
}

impl Uploads {
    /// `jobs` to send; with `resume`, a partial the server holds of a file
    /// is continued (a file retried after a dropped connection always
    /// continues).
    pub fn new(jobs: Vec<Job>, resume: bool) -> Uploads {
        let state = jobs.iter().map(|_| Send::default()).collect();
        Uploads {
            jobs,
            resume,
            state,
            blame: None,
        }
    }

    /// The files, in order.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// Sends every file not finished yet over `conn`. `Ok` when each has
    /// had its outcome; an error is the connection's (it cannot be used
    /// any more), and a `run` on a new one carries on.
    pub fn run<S: Read + Write>(
        &mut self,
        conn: &mut Connection<S>,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        for send in self.state.iter_mut().filter(|s| !s.finished) {
            *send = Send {
                tried: send.tried,
                ..Send::default()
            };
        }
        self.blame = None;
        let mut pipe = Pipe::default();
        // Files whose PARTIAL is answered, in the order they go.
        let mut ready: VecDeque<usize> = VecDeque::new();
        let (mut next, mut in_flight) = (0, 0);
        // A PUT line is out and its 150 not back: nothing may follow it.
        let mut put_out = false;
        loop {
            if observer.cancelled() {
                return Err(Error::Cancelled);
            }
            if !put_out {
                while next < self.jobs.len()
                    && in_flight < WINDOW_FILES
                    && pipe.room(self.jobs[next].remote.len() + 10)
                {
                    if !self.state[next].finished && self.ask(next, &mut pipe, &mut ready, observer)
                    {
                        in_flight += 1;
                    }
                    next += 1;
                }
                while let Some(i) = ready.pop_front() {
                    if self.put(i, &mut pipe, observer) {
                        put_out = true;
                        break;
                    }
                    in_flight -= 1;
                }
            }
            pipe.flush(conn)?;
            let Some((i, step)) = pipe.next() else {
                if next < self.jobs.len() && in_flight < WINDOW_FILES {
                    continue;
                }
                return stalled(next == self.jobs.len() && ready.is_empty() && !put_out);
            };
            self.blame = Some(i);
            let was_finished = self.state[i].finished;
            let reply = conn.reply()?;
            let job = &self.jobs[i];
            match step {
                Step::Partial if reply.code == 213 => {
                    self.state[i].held = Some(number(&reply, "PARTIAL")?);
                    ready.push_back(i);
                }
                Step::Partial => {
                    let err = remote_or_unexpected(&job.remote, reply);
                    self.finish(i, Err(err), observer);
                }
                Step::Expect if reply.code != 200 => return Err(unexpected("EXPECT", reply)),
                Step::Rest if reply.code != 350 => return Err(unexpected("REST", reply)),
                Step::Expect | Step::Rest => {}
                Step::Put => {
                    put_out = false;
                    if reply.code == 150 {
                        self.send(i, &reply, conn, observer)?;
                        pipe.follows(i, Step::Stored);
                    } else {
                        let err = remote_or_unexpected(&job.remote, reply);
                        self.finish(i, Err(err), observer);
                    }
                }
                Step::Stored => self.stored(i, reply, &mut ready, observer)?,
                _ => unreachable!("uploads send no {step:?}"),
            }
            if self.state[i].finished && !was_finished {
                in_flight -= 1;
            }
            self.blame = None;
        }
    }

    /// Marks the file a final error of `run` belongs to as finished and
    /// returns it (`None` when every file is).
    pub fn give_up(&mut self) -> Option<&Job> {
        let i = blamed(self.blame, |i| self.state[i].finished, self.jobs.len())?;
        self.state[i].finished = true;
        Some(&self.jobs[i])
    }

    /// Writes `PARTIAL` for file `i`, or makes it ready at once without
    /// resume; false when it finished at once.
    fn ask(
        &mut self,
        i: usize,
        pipe: &mut Pipe,
        ready: &mut VecDeque<usize>,
        observer: &mut dyn Observer,
    ) -> bool {
        if let Err(err) = check_name(&self.jobs[i].remote) {
            self.finish(i, Err(err), observer);
            return false;
        }
        if self.resume || self.state[i].tried {
            pipe.line(
                i,
                Step::Partial,
                &format!("PARTIAL {}", self.jobs[i].remote),
            );
        } else {
            self.state[i].held = Some(0);
            ready.push_back(i);
        }
        self.state[i].tried = true;
        true
    }

    /// Opens file `i` and writes its `PUT` (after `EXPECT` and `REST` when
    /// the server holds a partial of it); false when it failed here.
    fn put(&mut self, i: usize, pipe: &mut Pipe, observer: &mut dyn Observer) -> bool {
        match self.prepare(i) {
            Ok(lines) => {
                for (step, line) in lines {
                    pipe.line(i, step, &line);
                }
                true
            }
            Err(err) => {
                self.finish(i, Err(err), observer);
                false
            }
        }
    }

    fn prepare(&mut self, i: usize) -> Result<Vec<(Step, String)>> {
        let Job { local, remote } = &self.jobs[i];
        let mut file = File::open(local).map_err(|e| Error::local(local, e))?;
        let meta = file.metadata().map_err(|e| Error::local(local, e))?;
        if !meta.is_file() {
            let err = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(Error::local(local, err));
        }
        let size = meta.len();
        let held = self.state[i].held.unwrap_or(0);
        let mut lines = Vec::new();
        let send = &mut self.state[i];
        (send.size, send.offset, send.whole, send.sent) = (size, 0, None, None);
        if held > 0 && held <= size {
            // The server cannot tell whether the bytes it holds are the
            // start of this file: give it the whole file's digest to check.
            let whole = hash_prefix(&mut file, local, size)?;
            file.seek(SeekFrom::Start(held))
                .map_err(|e| Error::local(local, e))?;
            lines.push((Step::Expect, format!("EXPECT sha256={whole}")));
            lines.push((Step::Rest, format!("REST {held}")));
            (send.offset, send.whole) = (held, Some(whole));
        }
        lines.push((Step::Put, format!("PUT {size} {remote}")));
        send.file = Some(file);
        Ok(lines)
    }

    /// The payload after `150`.
    fn send<S: Read + Write>(
        &mut self,
        i: usize,
        reply: &Reply,
        conn: &mut Connection<S>,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let Job { local, remote } = &self.jobs[i];
        let send = &mut self.state[i];
        let announced = number(reply, "PUT")?;
        if announced != send.size - send.offset {
            return Err(Error::Protocol(format!(
                "PUT of {} bytes answered 150 {announced}",
                send.size - send.offset
            )));
        }
        let Some(mut file) = send.file.take() else {
            return Err(Error::Protocol("150 for no PUT".to_string()));
        };
        observer.begin(remote, send.offset);
        observer.announce(announced);
        let mut hasher = Hasher::new();
        conn.send_payload(announced, &mut file, local, &mut hasher, observer)?;
        send.sent = Some(hasher.finish());
        Ok(())
    }

    /// The reply after a payload.
    fn stored(
        &mut self,
        i: usize,
        reply: Reply,
        ready: &mut VecDeque<usize>,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let Job { local, remote } = &self.jobs[i];
        let send = &mut self.state[i];
        if reply.code != 226 {
            if send.whole.is_some() && is_checksum_refusal(&reply) {
                // The partial was the start of something else; the server
                // has dropped it. Send the whole file next.
                send.held = Some(0);
                ready.push_front(i);
                return Ok(());
            }
            let err = remote_or_unexpected(remote, reply);
            self.finish(i, Err(err), observer);
            return Ok(());
        }
        let stored =
            stored_digest(send.size, &reply).ok_or_else(|| unexpected("PUT", reply.clone()))?;
        let (expected, resumed_from) = match (send.whole, send.sent) {
            (Some(whole), _) => (whole, send.offset),
            (None, Some(sent)) => (sent, 0),
            (None, None) => return Err(Error::Protocol("226 for no payload".to_string())),
        };
        let result = if stored == expected {
            Ok(Report {
                remote: remote.clone(),
                local: local.clone(),
                size: send.size,
                sha256: stored,
                resumed_from,
            })
        } else {
            Err(Error::Checksum {
                name: remote.clone(),
                expected,
                received: stored,
            })
        };
        self.finish(i, result, observer);
        Ok(())
    }

    fn finish(&mut self, i: usize, result: Result<Report>, observer: &mut dyn Observer) {
        self.state[i].finished = true;
        observer.finished(&self.jobs[i], result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Progress;

    /// A server's replies, handed out one line (or one data block) per
    /// read, with a log of what the client wrote and read, in order.
    struct Script {
        replies: VecDeque<Vec<u8>>,
        log: Vec<String>,
    }

    impl Script {
        fn new(replies: &[&[u8]]) -> Script {
            Script {
                replies: replies.iter().map(|r| r.to_vec()).collect(),
                log: Vec::new(),
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(mut next) = self.replies.pop_front() else {
                return Ok(0);
            };
            let n = next.len().min(buf.len());
            buf[..n].copy_from_slice(&next[..n]);
            if n < next.len() {
                self.replies.push_front(next.split_off(n));
            }
            self.log.push(format!(
                "read {}",
                String::from_utf8_lossy(&next[..n]).trim_end()
            ));
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let text = String::from_utf8_lossy(buf);
            self.log.push(format!("write {}", text.trim_end()));
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct Outcomes(Vec<(String, bool)>, Vec<usize>);

    impl Progress for Outcomes {
        fn advance(&mut self, _bytes: u64) {}
    }

    impl Meter for Outcomes {
        fn begin(&mut self, _name: &str, _done: u64) {}
    }

    impl Observer for Outcomes {
        fn finished(&mut self, job: &Job, result: Result<Report>) {
            self.0.push((job.remote.clone(), result.is_ok()));
        }

        /// Yes, noting how many files had finished when it was asked.
        fn replace(&mut self, _job: &Job) -> bool {
            self.1.push(self.0.len());
            true
        }
    }

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_next_put_goes_out_before_the_last_226_is_read() {
        let dir = scratch("tree-put");
        fs::write(dir.join("a"), b"hello").unwrap();
        fs::write(dir.join("b"), b"abc").unwrap();
        let stored =
            |data: &[u8]| format!("226 stored {} sha256={}\r\n", data.len(), Digest::of(data));
        let (a, b) = (stored(b"hello"), stored(b"abc"));
        let script = Script::new(&[
            b"220 ferry ready\r\n",
            b"150 5\r\n",
            a.as_bytes(),
            b"150 3\r\n",
            b.as_bytes(),
        ]);
        let mut conn = Connection::on(script).unwrap();
        let jobs = ["a", "b"].map(|n| Job {
            local: dir.join(n),
            remote: format!("t/{n}"),
        });
        let mut uploads = Uploads::new(jobs.to_vec(), false);
        let mut outcomes = Outcomes::default();
        uploads.run(&mut conn, &mut outcomes).unwrap();
        assert_eq!(outcomes.0, [("t/a".into(), true), ("t/b".into(), true)]);
        assert_eq!(
            conn.get_mut().log[1..],
            [
                "write PUT 5 t/a".to_string(),
                "read 150 5".into(),
                "write hello".into(),
                "write PUT 3 t/b".into(),
                format!("read {}", a.trim_end()),
                "read 150 3".into(),
                "write abc".into(),
                format!("read {}", b.trim_end()),
            ]
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn gets_go_out_together_and_each_file_is_verified() {
        let dir = scratch("tree-get");
        let hash = |data: &[u8]| format!("213 sha256={}\r\n", Digest::of(data));
        let (a, b) = (hash(b"hello"), hash(b"abc"));
        let script = Script::new(&[
            b"220 ferry ready\r\n",
            a.as_bytes(),
            b"150 5\r\n",
            b"hello",
            b.as_bytes(),
            // Not the bytes HASH announced: b fails, and only b.
            b"150 3\r\n",
            b"abd",
            b.as_bytes(),
        ]);
        let mut conn = Connection::on(script).unwrap();
        let jobs = ["a", "b"].map(|n| Job {
            local: dir.join(n),
            remote: format!("t/{n}"),
        });
        let mut downloads = Downloads::new(jobs.to_vec(), true);
        let mut outcomes = Outcomes::default();
        downloads.run(&mut conn, &mut outcomes).unwrap();
        assert_eq!(outcomes.0, [("t/a".into(), true), ("t/b".into(), false)]);
        let log = &conn.get_mut().log;
        assert_eq!(
            log[1], "write HASH t/a\r\nGET t/a\r\nHASH t/b\r\nGET t/b",
            "{log:?}"
        );
        assert_eq!(
            log.last().unwrap(),
            &format!("read {}", b.trim_end()),
            "the second HASH"
        );
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"hello");
        assert!(!dir.join("b").exists() && !part_path(&dir.join("b")).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn whether_to_replace_a_file_is_asked_with_nothing_in_flight() {
        let dir = scratch("tree-ask");
        fs::write(dir.join("a"), b"old").unwrap();
        let hash = |data: &[u8]| format!("213 sha256={}\r\n", Digest::of(data));
        let (a, b) = (hash(b"new"), hash(b"bbb"));
        let script = Script::new(&[
            b"220 ferry ready\r\n",
            a.as_bytes(),
            b.as_bytes(),
            b"150 3\r\n",
            b"bbb",
            b"150 3\r\n",
            b"new",
        ]);
        let mut conn = Connection::on(script).unwrap();
        let jobs = ["a", "b"].map(|n| Job {
            local: dir.join(n),
            remote: format!("t/{n}"),
        });
        let mut downloads = Downloads::new(jobs.to_vec(), true);
        let mut outcomes = Outcomes::default();
        downloads.run(&mut conn, &mut outcomes).unwrap();
        assert_eq!(outcomes.0, [("t/b".into(), true), ("t/a".into(), true)]);
        assert_eq!(outcomes.1, [1], "asked once, after b was done");
        let log = &conn.get_mut().log;
        assert_eq!(log[1], "write HASH t/a\r\nHASH t/b\r\nGET t/b", "{log:?}");
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"new");
        fs::remove_dir_all(dir).unwrap();
    }
}
