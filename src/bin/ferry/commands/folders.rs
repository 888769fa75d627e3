//! The folder verbs: `mkdir [-p]`, `rmdir`, `mv`, `cp`, `rm -r`,
//! `ls [-R] [PATH]`, `put -r DIR`, `get -r PATH`. Trees move over one
//! connection, pipelined (`ferry::client::tree`), each file verified.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry::client::transfer::{Meter, Report};
use ferry::client::tree::{self, Downloads, Job, Observer, Uploads};
use ferry::client::{Entry, Error, ErrorKind, Progress};

use super::Connection;

use super::{Out, Remote, Status, confirm_replace, operand_name, stops_the_run};
use crate::args::Options;
use crate::output::{self, Json};
use crate::progress::Bar;

/// Whether the server refused because the path already exists.
fn exists(err: &Error) -> bool {
    matches!(err, Error::Remote { reply, .. } if reply.text == "already exists")
}

/// `ls [-R] [PATH]`, sorted by name.
pub(super) fn ls(remote: &mut Remote, operands: &[OsString], out: &Out, status: &mut Status) {
    let options = out.options;
    let path = match operands.first().map(|p| operand_name(p)).transpose() {
        Ok(path) => path,
        Err(err) => return out.error("ls", operands.first().map(|p| p.as_os_str()), &err, status),
    };
    let listed = remote.run(|conn, _| {
        if options.recursive {
            conn.tree(path.as_deref())
        } else {
            conn.list_folder(path.as_deref())
        }
    });
    let mut entries = match listed {
        Ok(entries) => entries,
        Err(err) => return out.error("ls", operands.first().map(|p| p.as_os_str()), &err, status),
    };
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    if !options.json {
        return out.text(&output::listing(&entries, options.human));
    }
    for entry in &entries {
        out.line(
            Json::new()
                .str("op", "ls")
                .str("name", &entry.name)
                .str("type", if entry.folder { "folder" } else { "file" })
                .num("size", entry.size)
                .num("mtime", entry.mtime)
                .finish(),
        );
    }
}

/// `mkdir [-p] PATH...`.
pub(super) fn mkdir(remote: &mut Remote, operands: &[OsString], out: &Out, status: &mut Status) {
    each(
        remote,
        operands,
        out,
        status,
        "mkdir",
        |conn, path, options| {
            if !options.parents {
                return conn.mkdir(path);
            }
            let mut at = String::new();
            for name in path.trim_start_matches('/').split('/') {
                if !at.is_empty() {
                    at.push('/');
                }
                at.push_str(name);
                match conn.mkdir(&at) {
                    Ok(()) => {}
                    Err(err) if exists(&err) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        },
    );
}

/// `rmdir PATH...`.
pub(super) fn rmdir(remote: &mut Remote, operands: &[OsString], out: &Out, status: &mut Status) {
    each(remote, operands, out, status, "rmdir", |conn, path, _| {
        conn.rmdir(path)
    });
}

/// `rm -r PATH...`.
pub(super) fn rm_tree(remote: &mut Remote, operands: &[OsString], out: &Out, status: &mut Status) {
    each(remote, operands, out, status, "rm", |conn, path, _| {
        conn.rmtree(path)
    });
}

/// `mv FROM TO` and `cp FROM TO`.
pub(super) fn mv_or_cp(
    remote: &mut Remote,
    operands: &[OsString],
    copy: bool,
    out: &Out,
    status: &mut Status,
) {
    let op = if copy { "cp" } else { "mv" };
    let replace = out.options.force;
    let result = operand_name(&operands[0]).and_then(|from| {
        let to = operand_name(&operands[1])?;
        remote.run(|conn, _| {
            if copy {
                conn.copy(&from, &to, replace).map(Some)
            } else {
                conn.rename(&from, &to, replace).map(|()| None)
            }
        })
    });
    match result {
        Ok(digest) if out.options.json => {
            let mut json = Json::new()
                .str("op", op)
                .str("name", &operands[0].to_string_lossy())
                .str("to", &operands[1].to_string_lossy());
            if let Some(digest) = digest {
                json = json.str("sha256", &digest.to_string());
            }
            out.line(json.bool("ok", true).finish());
        }
        Ok(_) => {}
        Err(err) => out.error(op, Some(&operands[0]), &err, status),
    }
}

/// One command per operand.
fn each(
    remote: &mut Remote,
    operands: &[OsString],
    out: &Out,
    status: &mut Status,
    op: &str,
    mut action: impl FnMut(&mut Connection, &str, &Options) -> Result<(), Error>,
) {
    for operand in operands {
        let result = operand_name(operand)
            .and_then(|path| remote.run(|conn, _| action(conn, &path, out.options)));
        match result {
            Ok(()) if out.options.json => out.line(
                Json::new()
                    .str("op", op)
                    .str("name", &operand.to_string_lossy())
                    .bool("ok", true)
                    .finish(),
            ),
            Ok(()) => {}
            Err(err) => {
                let stop = stops_the_run(&err);
                out.error(op, Some(operand), &err, status);
                if stop {
                    return;
                }
            }
        }
    }
}

/// `put -r DIR...`: each local folder becomes a remote folder of its name
/// (or `-o NAME`) with everything in it; symlinks and anything that is
/// not a file or folder are skipped.
pub(super) fn put_tree(remote: &mut Remote, operands: &[OsString], out: &Out, status: &mut Status) {
    let options = out.options;
    for local in operands {
        let local = Path::new(local);
        let base = match &options.output {
            Some(name) => operand_name(name),
            None => local
                .file_name()
                .ok_or_else(|| Error::Usage(format!("{}: names no folder", local.display())))
                .and_then(operand_name),
        };
        let walked = base.and_then(|base| tree::walk_local(local, &base));
        let (folders, files) = match walked {
            Ok(walked) => walked,
            Err(err) => {
                let local_error = err.kind() == ErrorKind::Local;
                out.error("put", Some(local.as_os_str()), &err, status);
                if local_error {
                    return;
                }
                continue;
            }
        };
        // Folders first, parents before children, all written at once.
        match remote.run(|conn, _| conn.mkdirs(&folders)) {
            Ok(made) => {
                for err in made.into_iter().filter_map(Result::err) {
                    if !exists(&err) {
                        out.error("put", Some(local.as_os_str()), &err, status);
                    }
                }
            }
            Err(err) => {
                let stop = stops_the_run(&err);
                out.error("put", Some(local.as_os_str()), &err, status);
                if stop {
                    return;
                }
            }
        }
        let mut uploads = Uploads::new(files, !options.no_resume);
        if !run_batch(remote, &mut uploads, &mut Tally::new("put", out, status)) {
            return;
        }
    }
}

/// `get -r PATH...`: each remote folder becomes a local folder of its
/// name (in `-d DIR`, else here) with everything beneath it.
pub(super) fn get_tree(remote: &mut Remote, operands: &[OsString], out: &Out, status: &mut Status) {
    let options = out.options;
    for operand in operands {
        let path = match operand_name(operand) {
            Ok(path) => path.trim_start_matches('/').to_string(),
            Err(err) => {
                out.error("get", Some(operand), &err, status);
                continue;
            }
        };
        let entries: Vec<Entry> = match remote.run(|conn, _| conn.tree(Some(&path))) {
            Ok(entries) => entries,
            Err(err) => {
                let stop = stops_the_run(&err);
                out.error("get", Some(operand), &err, status);
                if stop {
                    return;
                }
                continue;
            }
        };
        let leaf = path.rsplit('/').next().unwrap_or(&path);
        let base: PathBuf = options.dir.clone().unwrap_or_default().join(leaf);
        let jobs = match tree::local_jobs(&path, &entries, &base) {
            Ok(jobs) => jobs,
            Err(err) => {
                out.error("get", Some(operand), &err, status);
                continue;
            }
        };
        let mut downloads = Downloads::new(jobs, !options.no_resume);
        if !run_batch(remote, &mut downloads, &mut Tally::new("get", out, status)) {
            return;
        }
    }
}

/// [`Uploads`] and [`Downloads`], to [`run_batch`].
trait Batch {
    fn run(&mut self, conn: &mut Connection, observer: &mut dyn Observer) -> Result<(), Error>;
    fn give_up(&mut self) -> Option<Job>;
}

impl Batch for Uploads {
    fn run(&mut self, conn: &mut Connection, observer: &mut dyn Observer) -> Result<(), Error> {
        Uploads::run(self, conn, observer)
    }

    fn give_up(&mut self) -> Option<Job> {
        Uploads::give_up(self).cloned()
    }
}

impl Batch for Downloads {
    fn run(&mut self, conn: &mut Connection, observer: &mut dyn Observer) -> Result<(), Error> {
        Downloads::run(self, conn, observer)
    }

    fn give_up(&mut self) -> Option<Job> {
        Downloads::give_up(self).cloned()
    }
}

/// Runs `batch` until every file has its outcome, reconnecting after a
/// dropped connection as `--retries` allows; the retries count again once
/// a file has gone through. False when the run must stop.
fn run_batch(remote: &mut Remote, batch: &mut dyn Batch, tally: &mut Tally) -> bool {
    loop {
        let before = tally.finished;
        let err = match remote.run(|conn, _| batch.run(conn, tally)) {
            Ok(()) => return true,
            Err(err) => err,
        };
        if err.is_retryable() && tally.finished > before && remote.retries() > 0 {
            eprintln!("ferry: {err}; reconnecting (files went through since the last retry)");
            continue;
        }
        // Stopped by the user: the other files wait for the next run.
        let stop = stops_the_run(&err) || err.kind() == ErrorKind::Cancelled;
        match batch.give_up() {
            Some(job) => tally.finished(&job, Err(err)),
            None => {
                tally.bar.clear();
                tally.out.error(tally.op, None, &err, tally.status);
            }
        }
        if stop {
            return false;
        }
    }
}

/// Reports each file of a tree as it finishes, and shows the progress of
/// the one moving.
struct Tally<'a> {
    op: &'static str,
    bar: Bar,
    out: &'a Out<'a>,
    status: &'a mut Status,
    /// When the previous file finished: a file's time counts from there,
    /// since the files overlap.
    since: Instant,
    finished: usize,
}

impl<'a> Tally<'a> {
    fn new(op: &'static str, out: &'a Out<'a>, status: &'a mut Status) -> Tally<'a> {
        Tally {
            op,
            bar: Bar::new(out.options.quiet, out.options.limit_rate),
            out,
            status,
            since: Instant::now(),
            finished: 0,
        }
    }
}

impl Progress for Tally<'_> {
    fn announce(&mut self, bytes: u64) {
        self.bar.announce(bytes);
    }

    fn advance(&mut self, bytes: u64) {
        self.bar.advance(bytes);
    }

    fn cancelled(&self) -> bool {
        self.bar.cancelled()
    }
}

impl Meter for Tally<'_> {
    fn begin(&mut self, name: &str, done: u64) {
        self.bar.begin(name, done);
    }
}

impl Observer for Tally<'_> {
    fn finished(&mut self, job: &Job, result: Result<Report, Error>) {
        self.bar.clear();
        let operand = match self.op {
            "put" => job.local.as_os_str(),
            _ => OsStr::new(&job.remote),
        };
        self.out
            .transfer(self.op, operand, result, self.since, self.status);
        self.since = Instant::now();
        self.finished += 1;
    }

    fn replace(&mut self, job: &Job) -> bool {
        self.out.options.force || confirm_replace(&job.local, &job.remote)
    }
}

/// Whether `name` matches the shell-style `pattern`: `*` any run of
/// characters, `?` one character, anything else itself.
pub(super) fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // The classic two-pointer match with one backtrack point per `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(at) = star {
            i = at + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Remote wildcards: an operand whose last name holds `*` or `?` stands
/// for the files of its folder that match it (sorted); none is an error.
/// Other operands stay as they are.
pub(super) fn expand(
    remote: &mut Remote,
    operands: &[OsString],
    op: &str,
    out: &Out,
    status: &mut Status,
) -> Vec<OsString> {
    let mut expanded = Vec::new();
    for operand in operands {
        let Some(text) = operand.to_str() else {
            expanded.push(operand.clone());
            continue;
        };
        let (folder, pattern) = match text.rsplit_once('/') {
            Some((folder, pattern)) => (Some(folder), pattern),
            None => (None, text),
        };
        if !pattern.contains(['*', '?']) {
            expanded.push(operand.clone());
            continue;
        }
        let folder = folder.filter(|f| !f.is_empty());
        match remote.run(|conn, _| conn.list_folder(folder)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .into_iter()
                    .filter(|e| !e.folder && glob_matches(pattern, &e.name))
                    .map(|e| match folder {
                        Some(folder) => format!("{folder}/{}", e.name),
                        None => e.name,
                    })
                    .collect();
                if names.is_empty() {
                    let err = Error::Usage(format!("{text}: no remote file matches"));
                    out.error(op, Some(operand), &err, status);
                }
                names.sort();
                expanded.extend(names.into_iter().map(OsString::from));
            }
            Err(err) => out.error(op, Some(operand), &err, status),
        }
    }
    expanded
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn wildcards_match_like_a_shell() {
        for (pattern, name, want) in [
            ("*.jpg", "a.jpg", true),
            ("*.jpg", "a.jpeg", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("*a*b*", "xxaybz", true),
            ("*a*b", "xxaybz", false),
            ("img *", "img 1.png", true),
            ("ü*", "über", true),
        ] {
            assert_eq!(glob_matches(pattern, name), want, "{pattern} {name}");
        }
    }
}
