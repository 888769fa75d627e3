//! The verbs, run against one [`Remote`]: the same code for the command
//! line and for the shell.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry::client::transfer::{self, Report};
use ferry::client::{Error, ErrorKind, Stream, Timeouts};

/// A session over plain TCP or TLS.
pub(crate) type Connection = ferry::client::Connection<Stream>;

use crate::args::{Command, Options, Verb};
use crate::output::{self, Json};
use crate::progress::Bar;
use crate::settings::Settings;

mod folders;

/// Exit statuses (documented in `--help` and README.md).
pub const EXIT_LOCAL: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Local => EXIT_LOCAL,
        ErrorKind::Usage => EXIT_USAGE,
        ErrorKind::Auth => 3,
        ErrorKind::Remote => 4,
        ErrorKind::Network => 5,
        ErrorKind::Checksum => 6,
        ErrorKind::Cancelled => EXIT_INTERRUPTED,
    }
}

/// A transfer stopped by Ctrl-C in the shell: 128 + SIGINT, as shells say.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The first failure of a run decides its exit status.
#[derive(Default)]
pub struct Status {
    first_failure: Option<u8>,
}

impl Status {
    pub fn fail(&mut self, code: u8) {
        self.first_failure.get_or_insert(code);
    }

    pub fn code(&self) -> u8 {
        self.first_failure.unwrap_or(0)
    }
}

/// The server, logged in on demand and again after a dropped connection.
pub struct Remote {
    settings: Settings,
    password: String,
    conn: Option<Connection>,
    /// Retries at least this many times (the shell: once, so that a session
    /// the server closed while the user was away is opened again).
    min_retries: u32,
}

impl Remote {
    pub fn new(settings: Settings, password: String) -> Remote {
        Remote {
            settings,
            password,
            conn: None,
            min_retries: 0,
        }
    }

    pub fn set_min_retries(&mut self, retries: u32) {
        self.min_retries = retries;
    }

    /// Connects and logs in, unless already done.
    pub fn connect(&mut self) -> Result<&mut Connection, Error> {
        if self.conn.is_none() {
            self.conn = Some(self.new_session()?);
        }
        Ok(self.conn.as_mut().expect("connected just now"))
    }

    /// A session of its own, logged in (the shell's completion lists
    /// folders on one, beside the commands' session).
    pub fn new_session(&self) -> Result<Connection, Error> {
        let timeouts = Timeouts {
            connect: self.settings.timeout.min(Duration::from_secs(10)),
            io: self.settings.timeout,
            ..Timeouts::default()
        };
        let tls = self.settings.tls.as_ref();
        let server = with_port(&self.settings.server, tls.is_some());
        let conn = Connection::open(server.as_str(), timeouts, tls).map_err(|err| match err {
            Error::Network(err) => Error::Network(io::Error::new(
                err.kind(),
                format!("cannot connect to {server}: {err}"),
            )),
            other => other,
        })?;
        let mut conn = conn;
        conn.login(&self.settings.user, &self.password)?;
        Ok(conn)
    }

    /// Reconnections allowed after a dropped connection.
    pub fn retries(&self) -> u32 {
        self.settings.retries.max(self.min_retries)
    }

    /// Runs `op`; after a network failure, reconnects and runs it again, up
    /// to the retries allowed. `op` learns which attempt it is (0 first).
    pub fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut Connection, u32) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let retries = self.retries();
        let mut attempt = 0;
        loop {
            let result = self.connect().and_then(|conn| op(conn, attempt));
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            match err.kind() {
                // The session is in step: the server answered a command.
                ErrorKind::Remote | ErrorKind::Checksum | ErrorKind::Usage => return Err(err),
                // Anything else may have left the stream mid-transfer.
                _ => self.conn = None,
            }
            if !err.is_retryable() || attempt >= retries {
                return Err(err);
            }
            attempt += 1;
            eprintln!("ferry: {err}; reconnecting (retry {attempt} of {retries})");
            std::thread::sleep(Duration::from_millis(500 * u64::from(attempt.min(10))));
        }
    }

    /// Ends the session politely, if there is one.
    pub fn quit(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.quit();
        }
    }
}

/// `host` alone means the default port.
fn with_port(server: &str, tls: bool) -> String {
    if server.contains(':') {
        server.to_string()
    } else if tls {
        format!("{server}:9990")
    } else {
        format!("{server}:9999")
    }
}

/// Runs one command. `status` collects its failures.
pub fn run(remote: &mut Remote, command: &Command, status: &mut Status) {
    let options = &command.options;
    let out = Out { options };
    // Remote wildcards (`get 'photos/*.jpg'`), for the verbs that take
    // several existing files.
    let operands = match command.verb {
        Verb::Get | Verb::Rm | Verb::Hash if !options.recursive => {
            let op = Verb::NAMES[command.verb as usize];
            folders::expand(remote, &command.operands, op, &out, status)
        }
        _ => command.operands.clone(),
    };
    match command.verb {
        Verb::Put if options.recursive => {
            folders::put_tree(remote, &command.operands, &out, status)
        }
        Verb::Get if options.recursive => {
            folders::get_tree(remote, &command.operands, &out, status)
        }
        Verb::Put => put(remote, &command.operands, options, &out, status),
        Verb::Get => get(remote, &operands, options, &out, status),
        Verb::Ls => folders::ls(remote, &command.operands, &out, status),
        Verb::Rm if options.recursive => folders::rm_tree(remote, &command.operands, &out, status),
        Verb::Mkdir => folders::mkdir(remote, &command.operands, &out, status),
        Verb::Rmdir => folders::rmdir(remote, &command.operands, &out, status),
        Verb::Mv => folders::mv_or_cp(remote, &command.operands, false, &out, status),
        Verb::Cp => folders::mv_or_cp(remote, &command.operands, true, &out, status),
        Verb::View => {
            let name = operand_name(&command.operands[0]);
            match name.and_then(|name| remote.run(|conn, _| conn.view(&name)).map(|b| (name, b))) {
                Ok((name, bytes)) if options.json => {
                    let mut json = Json::new()
                        .str("op", "view")
                        .str("name", &name)
                        .num("length", bytes.len() as u64)
                        .str("hex", &hex::encode(&bytes));
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        json = json.str("text", text);
                    }
                    out.line(json.finish());
                }
                Ok((_, bytes)) if options.raw => out.bytes(&bytes),
                Ok((_, bytes)) => out.text(&output::preview(&bytes)),
                Err(err) => out.error("view", Some(&command.operands[0]), &err, status),
            }
        }
        Verb::Rm => each_name(remote, &operands, &out, status, "rm", |conn, name| {
            conn.delete(name)?;
            Ok((
                Json::new()
                    .str("op", "rm")
                    .str("name", name)
                    .bool("ok", true)
                    .finish(),
                None,
            ))
        }),
        Verb::Hash => each_name(remote, &operands, &out, status, "hash", |conn, name| {
            let digest = conn.hash(name)?;
            Ok((
                Json::new()
                    .str("op", "hash")
                    .str("name", name)
                    .str("sha256", &digest.to_string())
                    .finish(),
                Some(format!("{digest}  {name}\n")),
            ))
        }),
        Verb::Shell => unreachable!("the shell is started by main"),
    }
}

/// `rm` and `hash`: one command per name, each with its JSON line and,
/// perhaps, a text line.
fn each_name(
    remote: &mut Remote,
    operands: &[OsString],
    out: &Out,
    status: &mut Status,
    op: &str,
    mut action: impl FnMut(&mut Connection, &str) -> Result<(String, Option<String>), Error>,
) {
    for operand in operands {
        let result =
            operand_name(operand).and_then(|name| remote.run(|conn, _| action(conn, &name)));
        match result {
            Ok((json, _)) if out.options.json => out.line(json),
            Ok((_, Some(text))) => out.text(&text),
            Ok((_, None)) => {}
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

fn put(
    remote: &mut Remote,
    operands: &[OsString],
    options: &Options,
    out: &Out,
    status: &mut Status,
) {
    for local in operands {
        let local = Path::new(local);
        let name = match &options.output {
            Some(name) => operand_name(name),
            None => local
                .file_name()
                .ok_or_else(|| Error::Usage(format!("{}: names no file", local.display())))
                .and_then(operand_name),
        };
        let started = Instant::now();
        let mut bar = Bar::new(options.quiet, options.limit_rate);
        let result = name.and_then(|name| {
            remote.run(|conn, attempt| {
                let resume = !options.no_resume || attempt > 0;
                transfer::upload(conn, local, &name, resume, &mut bar)
            })
        });
        bar.clear();
        if !out.transfer("put", local.as_os_str(), result, started, status) {
            return;
        }
    }
}

fn get(
    remote: &mut Remote,
    operands: &[OsString],
    options: &Options,
    out: &Out,
    status: &mut Status,
) {
    for operand in operands {
        let name = match operand_name(operand) {
            Ok(name) => name,
            Err(err) => {
                out.error("get", Some(operand), &err, status);
                continue;
            }
        };
        // A remote path is saved under its last name.
        let leaf = name.rsplit('/').next().unwrap_or(&name);
        let mut target = match (&options.output, &options.dir) {
            (Some(path), _) => PathBuf::from(path),
            (None, Some(dir)) => dir.join(leaf),
            (None, None) => PathBuf::from(leaf),
        };
        if target.is_dir() {
            target.push(leaf);
        }
        // Said of the folder itself: the first file the download opens is
        // NAME.ferry-part, whose name would only puzzle.
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            let err = Error::Local {
                path: parent.to_path_buf(),
                err: io::Error::new(io::ErrorKind::NotFound, "no such folder"),
            };
            out.error("get", Some(operand), &err, status);
            continue;
        }
        let started = Instant::now();
        let mut bar = Bar::new(options.quiet, options.limit_rate);
        let mut replace = |path: &Path| options.force || confirm_replace(path, &name);
        let result = remote.run(|conn, attempt| {
            let resume = !options.no_resume || attempt > 0;
            transfer::download(conn, &name, &target, resume, &mut replace, &mut bar)
        });
        bar.clear();
        if !out.transfer("get", operand, result, started, status) {
            return;
        }
    }
}

/// Asks on the terminal whether the local `path`, whose content is not
/// the remote file's, may be replaced. Without a terminal to ask on, the
/// answer is no: a script gets the refusal and its exit status.
fn confirm_replace(path: &Path, remote: &str) -> bool {
    if !(io::stdin().is_terminal() && io::stderr().is_terminal()) {
        return false;
    }
    eprint!(
        "ferry: {} exists and differs from {remote}; replace it? [y/N] ",
        path.display()
    );
    let mut answer = String::new();
    if io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// A remote name from an operand: it must be UTF-8 to go on the wire.
fn operand_name(operand: &std::ffi::OsStr) -> Result<String, Error> {
    operand
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Usage(format!("{}: not valid UTF-8", operand.to_string_lossy())))
}

/// After these, nothing more can be done on this run.
fn stops_the_run(err: &Error) -> bool {
    matches!(err.kind(), ErrorKind::Network | ErrorKind::Auth)
}

/// Output of one command: stdout for results, stderr for errors.
struct Out<'a> {
    options: &'a Options,
}

impl Out<'_> {
    fn line(&self, line: String) {
        self.text(&format!("{line}\n"));
    }

    fn text(&self, text: &str) {
        self.bytes(text.as_bytes());
    }

    fn bytes(&self, bytes: &[u8]) {
        let mut stdout = io::stdout().lock();
        // A closed stdout (`ferry ls | head -1`) is not worth a panic.
        let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
    }

    /// Reports an error on stderr (and as JSON on stdout with `--json`).
    fn error(&self, op: &str, operand: Option<&std::ffi::OsStr>, err: &Error, status: &mut Status) {
        let code = exit_code(err.kind());
        status.fail(code);
        eprintln!("ferry: {op}: {err}");
        if self.options.json {
            let mut json = Json::new().str("op", op);
            if let Some(operand) = operand {
                json = json.str("name", &operand.to_string_lossy());
            }
            self.line(
                json.bool("ok", false)
                    .str("error", &err.to_string())
                    .num("exit_code", u64::from(code))
                    .finish(),
            );
        }
    }

    /// Reports a finished or failed transfer; false when the run must stop.
    fn transfer(
        &self,
        op: &str,
        operand: &std::ffi::OsStr,
        result: Result<Report, Error>,
        started: Instant,
        status: &mut Status,
    ) -> bool {
        let report = match result {
            Ok(report) => report,
            Err(err) => {
                let stop = stops_the_run(&err);
                self.error(op, Some(operand), &err, status);
                return !stop;
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let local = report.local.to_string_lossy();
        if self.options.json {
            self.line(
                Json::new()
                    .str("op", op)
                    .str("local", &local)
                    .str("remote", &report.remote)
                    .num("size", report.size)
                    .str("sha256", &report.sha256.to_string())
                    .num("resumed_from", report.resumed_from)
                    .float("seconds", seconds)
                    .bool("ok", true)
                    .finish(),
            );
        } else if !self.options.quiet {
            let what = match op {
                "put" => format!("uploaded {local} as {}", report.remote),
                _ => format!("downloaded {} to {local}", report.remote),
            };
            let resumed = match report.resumed_from {
                0 => String::new(),
                n => format!(", resumed at byte {n}"),
            };
            self.line(format!(
                "{what}: {} bytes in {seconds:.2} s, sha256={} verified{resumed}",
                report.size, report.sha256
            ));
        }
        true
    }
}
