//! `ferryd`: the ferry server as a program. Reads its settings (the config
//! file and the command line, through the one option table in
//! [`ferry::internal::ops::settings`]), sets up logging and users, and runs
//! [`ferry::Server`] with signal handling; or runs one of the operator's
//! commands: `check-config`, `user`, `hash-password`, `generate`.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ferry::internal::auth::LoadError;
use ferry::internal::ops::manual::{CommandDoc, Manual, OptionDoc};
use ferry::internal::ops::settings::{
    DEFAULT_CONFIG, OPTIONS, Opt, Settings, effective, example_config, find, load, read_token,
};
use ferry::internal::ops::users_file::{self, Edit, EditError};
use ferry::{Server, Users};
use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

const HASH_USAGE: &str = "\
Usage: ferryd hash-password [--iterations N] USER

Reads a password (typed twice without echo on a terminal, else the first
line of standard input) and prints the line for the users file:
  USER:$pbkdf2-sha256$i=N,l=32$<salt>$<hash>
--iterations N  PBKDF2 iterations [default: 600000; at least 1000]";

/// Exit status for a failure at run time (cannot bind, storage unusable).
const EXIT_FAILURE: u8 = 1;
/// Exit status for a bad command line or users file.
const EXIT_USAGE: u8 = 2;

enum Parsed {
    Run(Box<Settings>),
    Help,
    Version,
}

/// What the command line asked for besides the options: the words after
/// the subcommand.
struct CommandLine {
    settings: Settings,
    words: Vec<String>,
    /// `user add|passwd --iterations N`: PBKDF2 rounds of the new hash.
    iterations: Option<u32>,
}

fn main() -> ExitCode {
    // Before any settings are read, since the default connection limit is
    // derived from it (`check-config` shows what a start would use).
    let limit = ferry::raise_open_file_limit();
    let mut args = std::env::args_os().skip(1).peekable();
    let sub = args
        .peek()
        .and_then(|first| first.to_str())
        .filter(|first| SUBCOMMANDS.contains(first))
        .map(str::to_owned);
    if sub.is_some() {
        args.next();
    }
    match sub.as_deref() {
        Some("hash-password") => return hash_password(args),
        Some("generate") => return generate(args),
        Some(sub) => {
            return match parse_command_line(args) {
                Ok(Some(line)) if sub == "check-config" => check_config(line),
                Ok(Some(line)) => user_command(line),
                Ok(None) => {
                    println!("{}", manual().help());
                    ExitCode::SUCCESS
                }
                Err(message) => usage_error(&message),
            };
        }
        None => {}
    }
    let args: Vec<OsString> = args.collect();
    let settings = match parse_args(args.clone()) {
        Ok(Parsed::Run(settings)) => settings,
        Ok(Parsed::Help) => {
            println!("{}", manual().help());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("ferryd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage_error(&message),
    };
    let log = match init_logging(&settings) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("ferryd: cannot open the log: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = serve(args, *settings, log, limit);
    // The log is buffered: what the last turn logged, or a failed start.
    log::logger().flush();
    code
}

/// Loads what the server needs, runs it until it stops, and says how it
/// ended.
fn serve(
    args: Vec<OsString>,
    settings: Settings,
    log: LogSink,
    limit: io::Result<(u64, u64)>,
) -> ExitCode {
    match limit {
        Ok((was, now)) if was < now => log::info!("raised the open-file limit from {was} to {now}"),
        Ok(_) => {}
        Err(err) => log::warn!("cannot read the open-file limit: {err}"),
    }
    let users = match load_users(&settings.users) {
        Ok(users) => users,
        Err(code) => return ExitCode::from(code),
    };
    let mut config = settings.config.clone();
    config.users_file = Some(settings.users.clone());
    if config.tls_listen.is_some() || config.https_listen.is_some() {
        match tls_files(&settings, config.policy.handshake_timeout) {
            Ok(files) => config.tls = Some(files),
            Err(message) => {
                eprintln!("ferryd: {message}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    // Socket activation and readiness notifications; without systemd's
    // variables this changes nothing.
    config.systemd = true;
    if let Some(path) = &settings.control_token_file {
        match read_token(path) {
            Ok(token) => config.control_token = Some(token),
            Err(message) => {
                eprintln!("ferryd: --control-token-file {message}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if let Some(path) = &settings.metrics_token_file {
        match read_token(path) {
            Ok(token) => config.metrics_token = Some(token),
            Err(message) => {
                eprintln!("ferryd: --metrics-token-file {message}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let mut server = match Server::bind(config, users) {
        Ok(server) => server,
        Err(err) => {
            log::error!("{err}");
            eprintln!("ferryd: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Err(err) = server.handle_signals() {
        eprintln!("ferryd: cannot install signal handlers: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let running = settings;
    server.on_reload(move || reload(&args, &running, &log));
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("event loop failed: {err}");
            eprintln!("ferryd: event loop failed: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("ferryd: {message}\nTry 'ferryd --help'.");
    ExitCode::from(EXIT_USAGE)
}

const SUBCOMMANDS: [&str; 4] = ["hash-password", "check-config", "user", "generate"];

/// ferryd's manual: the option table plus what is not an option, rendered
/// as `--help`, the man page and the completions.
fn manual() -> Manual {
    let mut options: Vec<OptionDoc> = vec![OptionDoc {
        short: None,
        long: "config".to_owned(),
        arg: Some("PATH".to_owned()),
        path: true,
        help: format!(
            "read settings from this TOML file [default: {DEFAULT_CONFIG}, when it exists]"
        ),
    }];
    options.extend(OPTIONS.iter().map(|opt| {
        let default = opt
            .default_shown()
            .map(|d| format!(" [default: {d}]"))
            .unwrap_or_default();
        OptionDoc {
            short: None,
            long: opt.name.to_owned(),
            arg: opt.arg.map(str::to_owned),
            path: opt.takes_path(),
            help: format!("{}{default}", opt.help),
        }
    }));
    for (short, long, help) in [
        ('h', "help", "print this help"),
        ('V', "version", "print the version"),
    ] {
        options.push(OptionDoc {
            short: Some(short),
            long: long.to_owned(),
            arg: None,
            path: false,
            help: help.to_owned(),
        });
    }
    let command = |usage: &str, help: &str| CommandDoc {
        usage: usage.to_owned(),
        help: help.to_owned(),
    };
    Manual {
        name: "ferryd".to_owned(),
        section: 8,
        summary: "multi-user file transfer server (line protocol and HTTP; see protocol.md)"
            .to_owned(),
        synopsis: vec![
            "ferryd [--config PATH] [OPTIONS]".to_owned(),
            "ferryd check-config [--config PATH] [OPTIONS]".to_owned(),
            "ferryd user add|passwd|del USER [--iterations N] [--users FILE | --config PATH]"
                .to_owned(),
            "ferryd user list [--users FILE | --config PATH]".to_owned(),
            "ferryd hash-password [--iterations N] USER".to_owned(),
            "ferryd generate man|bash|zsh|fish|config".to_owned(),
        ],
        commands: vec![
            command("(none)", "run the server"),
            command(
                "check-config",
                "validate the settings (config file, options, token and users files) and print \
                 the effective ones as TOML, the control token never shown; exit 0, or 2 naming \
                 the problem",
            ),
            command(
                "user add USER",
                "add a user to the users file, the password (read without echo, or the first \
                 line of standard input) stored hashed (--iterations N PBKDF2 rounds, default \
                 600000); an existing user is refused",
            ),
            command("user passwd USER", "set an existing user's password"),
            command("user del USER", "remove a user"),
            command(
                "user list",
                "print each user and whether the password is hashed",
            ),
            command(
                "hash-password USER",
                "print a users-file line (see its --help)",
            ),
            command(
                "generate man|bash|zsh|fish|config",
                "print the man page (man), a completion script (bash, zsh, fish) or the \
                 example config file with every key and its default (config)",
            ),
        ],
        options,
        sections: vec![
            (
                "Config file".to_owned(),
                format!(
                    "Every option is also a key of a TOML config file, with '_' for '-' \
                     (max_file_size = \"10G\"; no_fsync = true). The file is --config PATH, \
                     else {DEFAULT_CONFIG} when it exists. An option on the command line wins \
                     over the file. Sizes take K, M, G or T (powers of 1024): 512K, 10G. \
                     Durations are seconds (fractions allowed) or 90s, 5m, 1h30m, 250ms. \
                     Addresses may name a host (localhost:9999); a name with several \
                     addresses binds its first IPv4 one, else its first."
                ),
            ),
            (
                "Signals".to_owned(),
                "SIGINT or SIGTERM shut down gracefully; a second one ends the drain at once. \
                 SIGHUP re-reads the users file (a broken file keeps the old users and is \
                 logged), reopens the log file, and reloads the config file and command line: \
                 limits, timeouts, quotas, login throttling, the largest upload, the drain \
                 period and the log level change with sessions open; a changed address, \
                 storage, users or token file, partial TTL, fsync or log file path is logged \
                 as needing a restart."
                    .to_owned(),
            ),
            (
                "Exit status".to_owned(),
                "0 after a clean shutdown, 1 when the server cannot start or fails, 2 for a \
                 usage error, a bad config file or an invalid users file."
                    .to_owned(),
            ),
        ],
    }
}

/// Parses options and words: the config file first, then the command
/// line over it. `Ok(None)` for `--help`.
fn parse_command_line(
    args: impl IntoIterator<Item = OsString>,
) -> Result<Option<CommandLine>, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut given: Vec<(&'static Opt, String)> = Vec::new();
    let mut config_file: Option<PathBuf> = None;
    let mut words = Vec::new();
    let mut iterations = None;
    while let Some(arg) = parser.next().map_err(|err| err.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("iterations") => {
                let min = ferry::internal::kdf::MIN_ITERATIONS;
                match count(&mut parser, "--iterations").map(u32::try_from) {
                    Ok(Ok(n)) if n >= min => iterations = Some(n),
                    _ => return Err(format!("--iterations must be a number of at least {min}")),
                }
            }
            Long("config") => config_file = Some(PathBuf::from(value(&mut parser, "--config")?)),
            Long(name) => {
                let name = name.to_owned();
                let Some(opt) = find(&name).filter(|opt| opt.name == name) else {
                    return Err(format!("invalid option '--{name}'"));
                };
                let value = match opt.arg {
                    Some(_) => value(&mut parser, &format!("--{name}"))?,
                    // `--no-fsync=false` undoes a config file's `true`.
                    None => match parser.optional_value() {
                        Some(given) => given
                            .into_string()
                            .map_err(|_| format!("--{name}: the value is not valid UTF-8"))?,
                        None => "true".to_owned(),
                    },
                };
                given.push((opt, value));
            }
            Value(word) => words.push(
                word.into_string()
                    .map_err(|_| "an argument is not valid UTF-8".to_owned())?,
            ),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let settings = load(config_file.as_deref(), &given)?;
    Ok(Some(CommandLine {
        settings,
        words,
        iterations,
    }))
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let args: Vec<OsString> = args.into_iter().collect();
    // -V and --version before anything else, as before the config file.
    if args.iter().any(|a| a == "-V" || a == "--version") {
        return Ok(Parsed::Version);
    }
    match parse_command_line(args)? {
        None => Ok(Parsed::Help),
        Some(line) => match line.words.first() {
            Some(word) => Err(format!("unexpected argument '{word}'")),
            None if line.iterations.is_some() => {
                Err("--iterations applies to user add and user passwd".to_owned())
            }
            None => Ok(Parsed::Run(Box::new(line.settings))),
        },
    }
}

fn value(parser: &mut lexopt::Parser, what: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|err| err.to_string())?
        .into_string()
        .map_err(|_| format!("{what}: the value is not valid UTF-8"))
}

/// A non-negative whole number.
fn count(parser: &mut lexopt::Parser, what: &str) -> Result<usize, String> {
    let raw = value(parser, what)?;
    raw.parse()
        .map_err(|_| format!("{what}: {raw:?} is not a whole number"))
}

/// `ferryd check-config`: validates everything a start would read, without
/// binding, and prints the effective settings.
fn check_config(line: CommandLine) -> ExitCode {
    if let Some(word) = line.words.first() {
        return usage_error(&format!("check-config: unexpected argument '{word}'"));
    }
    if line.iterations.is_some() {
        return usage_error("--iterations applies to user add and user passwd");
    }
    let settings = &line.settings;
    if let Some(path) = &settings.control_token_file {
        // Read to prove it is usable; the token itself is never shown.
        if let Err(message) = read_token(path) {
            eprintln!("ferryd: control-token-file {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if let Some(path) = &settings.metrics_token_file
        && let Err(message) = read_token(path)
    {
        eprintln!("ferryd: metrics-token-file {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut remarks = Vec::new();
    match Users::load(&settings.users) {
        Ok(users) => {
            let plain = users.plain_text_users();
            remarks.push(format!(
                "{} users in {}",
                users.len(),
                settings.users.display()
            ));
            if !plain.is_empty() {
                remarks.push(format!("plain-text passwords for: {}", plain.join(", ")));
            }
        }
        Err(LoadError::Invalid(err)) => {
            eprintln!("{}:{err}", settings.users.display());
            return ExitCode::from(EXIT_USAGE);
        }
        Err(LoadError::Io(err)) if err.kind() == io::ErrorKind::NotFound => remarks.push(format!(
            "{} does not exist; a start creates it with a user 'demo'",
            settings.users.display()
        )),
        Err(LoadError::Io(err)) => {
            eprintln!("ferryd: cannot read {}: {err}", settings.users.display());
            return ExitCode::from(EXIT_USAGE);
        }
    }
    print!("{}", effective(settings));
    for remark in remarks {
        println!("# {remark}");
    }
    if settings.control_token_file.is_some() {
        println!("# control token: read, not shown");
    }
    if settings.metrics_token_file.is_some() {
        println!("# metrics token: read, not shown");
    }
    ExitCode::SUCCESS
}

/// `ferryd generate man|bash|zsh|fish|config`.
fn generate(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    let what = args.next().map(|w| w.to_string_lossy().into_owned());
    if let Some(extra) = args.next() {
        return usage_error(&format!("generate: unexpected argument {extra:?}"));
    }
    let text = match what.as_deref() {
        Some("man") => manual().man(),
        Some("bash") => manual().bash(),
        Some("zsh") => manual().zsh(),
        Some("fish") => manual().fish(),
        Some("config") => example_config(),
        _ => return usage_error("generate: which of man, bash, zsh, fish, config?"),
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// `ferryd user add|passwd|del|list`.
fn user_command(line: CommandLine) -> ExitCode {
    let words: Vec<&str> = line.words.iter().map(String::as_str).collect();
    let path = &line.settings.users;
    let fail = |err: EditError| {
        eprintln!("ferryd user: {err}");
        ExitCode::from(match err {
            EditError::Refused(_) => EXIT_USAGE,
            EditError::Io(_) => EXIT_FAILURE,
        })
    };
    let (action, user) = match words.as_slice() {
        ["list"] => {
            return match users_file::list(path) {
                Ok(users) => {
                    for (user, hashed) in users {
                        println!("{user}\t{}", if hashed { "hashed" } else { "plain" });
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => fail(err),
            };
        }
        [action @ ("add" | "passwd" | "del"), user] => (*action, *user),
        _ => return usage_error("user: add USER, passwd USER, del USER or list"),
    };
    if !ferry::internal::auth::is_valid_username(user.as_bytes()) {
        return usage_error(&format!("user: {user:?} is not a valid username"));
    }
    let entry = if action == "del" {
        String::new()
    } else {
        let password = match read_new_password() {
            Ok(password) => password,
            Err(message) => {
                eprintln!("ferryd user: {message}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let iterations = line
            .iterations
            .unwrap_or(ferry::internal::kdf::DEFAULT_ITERATIONS);
        match ferry::internal::auth::hash_entry(password.as_bytes(), iterations) {
            Ok(entry) => entry,
            Err(err) => {
                eprintln!("ferryd user: no random salt: {err}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    };
    let edit = match action {
        "add" => Edit::Add(user, &entry),
        "passwd" => Edit::Passwd(user, &entry),
        _ => Edit::Del(user),
    };
    if let Err(err) = users_file::edit(path, edit) {
        return fail(err);
    }
    let done = match action {
        "add" => "added",
        "passwd" => "changed the password of",
        _ => "removed",
    };
    eprintln!("ferryd user: {done} {user} in {}", path.display());
    tell_server(&line.settings);
    ExitCode::SUCCESS
}

/// After an edit: asks a running server to reload over its control port
/// when the settings name one, else says how to.
fn tell_server(settings: &Settings) {
    let hint = "a running ferryd reads it on SIGHUP (e.g. 'systemctl reload ferryd' or \
                'kill -HUP PID'), or at its next start";
    let (Some(addr), Some(token_file)) =
        (settings.config.control_listen, &settings.control_token_file)
    else {
        eprintln!("ferryd user: {hint}");
        return;
    };
    match control_reload(addr, token_file) {
        Ok(reply) => eprintln!("ferryd user: the server at {addr} reloaded: {reply}"),
        Err(why) => {
            eprintln!("ferryd user: no reload over the control port {addr} ({why}); {hint}")
        }
    }
}

fn control_reload(addr: std::net::SocketAddr, token_file: &Path) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Write};
    let token = read_token(token_file)?;
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|err| err.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|err| err.to_string())?;
    let mut writer = stream.try_clone().map_err(|err| err.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut reply = |expect: &str| -> Result<String, String> {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|err| err.to_string())?;
        let line = line.trim_end().to_owned();
        if line.starts_with(expect) {
            Ok(line)
        } else {
            Err(format!("the server said {line:?}"))
        }
    };
    reply("220")?;
    writer
        .write_all(format!("TOKEN {token}\r\n").as_bytes())
        .map_err(|err| err.to_string())?;
    reply("230")?;
    writer
        .write_all(b"RELOAD\r\n")
        .map_err(|err| err.to_string())?;
    reply("200")
}

/// A reload (SIGHUP, the control port's `RELOAD`): reads the config file
/// and the command line again, reopens the log file (after a rotation),
/// takes the new log level, and hands the server what it can change
/// without dropping a session. What needs a restart is logged as such and
/// keeps its running value.
fn reload(args: &[OsString], running: &Settings, log: &LogSink) -> Result<ferry::Reloaded, String> {
    // First, so that what follows lands in the new file.
    log.reopen().map_err(|err| {
        let path = log.path.as_deref().unwrap_or(Path::new("-"));
        format!("cannot reopen the log {}: {err}", path.display())
    })?;
    let new = match parse_command_line(args.to_vec())? {
        Some(line) => line.settings,
        None => return Err("the command line asks for --help".to_owned()),
    };
    for what in needs_restart(running, &new) {
        log::warn!("reload: {what} changed; that takes a restart, the running value stays");
    }
    log::set_max_level(new.log_level);
    Ok(ferry::Reloaded {
        policy: new.config.policy,
        max_file_size: new.config.max_file_size,
        drain_timeout: new.config.drain_timeout,
    })
}

/// The settings that differ between `running` and `new` and that only a
/// restart can change: the listeners, the storage, the files read at start.
fn needs_restart(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let (a, b) = (&running.config, &new.config);
    let mut changed = Vec::new();
    let mut check = |what, same: bool| {
        if !same {
            changed.push(what);
        }
    };
    check("listen", a.listen == b.listen);
    check("http-listen", a.http_listen == b.http_listen);
    check("tls-listen", a.tls_listen == b.tls_listen);
    check("https-listen", a.https_listen == b.https_listen);
    check("tls-cert", running.tls_cert == new.tls_cert);
    check("tls-key", running.tls_key == new.tls_key);
    check("tls-client-ca", running.tls_client_ca == new.tls_client_ca);
    check("control", a.control_listen == b.control_listen);
    check("metrics-listen", a.metrics_listen == b.metrics_listen);
    check("storage", a.storage == b.storage);
    check("fsync", a.fsync == b.fsync);
    check("partial-ttl", a.partial_ttl == b.partial_ttl);
    check("users", running.users == new.users);
    check(
        "control-token-file",
        running.control_token_file == new.control_token_file,
    );
    check(
        "metrics-token-file",
        running.metrics_token_file == new.metrics_token_file,
    );
    check("log-file", running.log_file == new.log_file);
    changed
}

/// Where log lines go: standard error or a file, through a buffer. The
/// reactor flushes the logger once per turn of its loop, before it waits
/// ([`log::Log::flush`]), so a busy server writes many lines with one
/// `write` instead of one each (at the default level, a line per
/// request), and an idle one has written everything. The file is reopened
/// by path at every reload, so that after `mv ferryd.log ferryd.log.1;
/// kill -HUP` the log goes to a new `ferryd.log` (what
/// `contrib/logrotate/ferryd` does).
#[derive(Clone)]
struct LogSink {
    path: Option<PathBuf>,
    out: std::sync::Arc<std::sync::Mutex<io::BufWriter<LogTarget>>>,
}

enum LogTarget {
    Stderr(io::Stderr),
    File(std::fs::File),
}

impl io::Write for LogTarget {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LogTarget::Stderr(err) => err.write(buf),
            LogTarget::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LogTarget::Stderr(err) => err.flush(),
            LogTarget::File(file) => file.flush(),
        }
    }
}

/// Lines held before a write when the loop does not flush sooner: a
/// turn's worth of lines at any realistic rate.
const LOG_BUFFER: usize = 16 * 1024;

impl LogSink {
    fn open(path: Option<&Path>) -> io::Result<LogSink> {
        let target = match path {
            Some(path) => LogTarget::File(Self::open_file(path)?),
            None => LogTarget::Stderr(io::stderr()),
        };
        Ok(LogSink {
            path: path.map(Path::to_path_buf),
            out: std::sync::Arc::new(std::sync::Mutex::new(io::BufWriter::with_capacity(
                LOG_BUFFER, target,
            ))),
        })
    }

    fn open_file(path: &Path) -> io::Result<std::fs::File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    /// Opens the log file again by its path (nothing to do for standard
    /// error), after writing out what the old one still owes.
    fn reopen(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = Self::open_file(path)?;
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = io::Write::flush(&mut *out);
        *out.get_mut() = LogTarget::File(file);
        Ok(())
    }

    /// Writes out what is buffered, unless the buffer is in use (a panic
    /// while a line was being written): for the panic hook, which must
    /// not wait on a lock its own thread holds.
    fn flush_if_free(&self) {
        if let Ok(mut out) = self.out.try_lock() {
            let _ = io::Write::flush(&mut *out);
        }
    }
}

impl io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Sets up the log (a file, or standard error), buffered: see [`LogSink`].
/// A panic writes out the buffered lines before its own message.
fn init_logging(options: &Settings) -> io::Result<LogSink> {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        // mio's own trace lines say nothing to an operator at `trace`.
        .add_filter_ignore_str("mio")
        .build();
    let sink = LogSink::open(options.log_file.as_deref())?;
    // Every level is let through to the logger, so that a reload can
    // raise the level with `log::set_max_level` alone.
    WriteLogger::init(LevelFilter::Trace, config, sink.clone()).map_err(io::Error::other)?;
    log::set_max_level(options.log_level);
    let on_panic = sink.clone();
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        on_panic.flush_if_free();
        report(info);
    }));
    Ok(sink)
}

/// `ferryd hash-password [--iterations N] USER`: reads a password (without
/// echo on a terminal, asking twice) and prints the users-file line.
fn hash_password(args: impl Iterator<Item = OsString>) -> ExitCode {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut user = None;
    let mut iterations = ferry::internal::kdf::DEFAULT_ITERATIONS;
    let usage = |message: &str| {
        eprintln!("ferryd hash-password: {message}\n{HASH_USAGE}");
        ExitCode::from(EXIT_USAGE)
    };
    loop {
        match parser.next() {
            Ok(None) => break,
            Ok(Some(Long("iterations"))) => {
                match count(&mut parser, "--iterations").map(u32::try_from) {
                    Ok(Ok(n)) if n >= ferry::internal::kdf::MIN_ITERATIONS => iterations = n,
                    _ => {
                        let min = ferry::internal::kdf::MIN_ITERATIONS;
                        return usage(&format!("--iterations must be a number of at least {min}"));
                    }
                }
            }
            Ok(Some(Short('h') | Long("help"))) => {
                println!("{HASH_USAGE}");
                return ExitCode::SUCCESS;
            }
            Ok(Some(Value(value))) if user.is_none() => {
                user = Some(value.to_string_lossy().into_owned())
            }
            Ok(Some(arg)) => return usage(&arg.unexpected().to_string()),
            Err(err) => return usage(&err.to_string()),
        }
    }
    let Some(user) = user else {
        return usage("which user?");
    };
    if !ferry::internal::auth::is_valid_username(user.as_bytes()) {
        return usage(&format!("{user:?} is not a valid username"));
    }
    let password = match read_new_password() {
        Ok(password) => password,
        Err(message) => {
            eprintln!("ferryd hash-password: {message}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let hash = match ferry::internal::auth::hash_entry(password.as_bytes(), iterations) {
        Ok(hash) => hash,
        Err(err) => {
            eprintln!("ferryd hash-password: no random salt: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    println!("{user}:{hash}");
    ExitCode::SUCCESS
}

/// A password from the terminal (typed twice, not echoed) or, when stdin
/// is not a terminal, its first line.
fn read_new_password() -> Result<String, String> {
    use std::io::IsTerminal;
    let password = if io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|err| err.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|err| err.to_string())?;
        if first != again {
            return Err("the passwords differ".to_owned());
        }
        first
    } else {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .map_err(|err| err.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err("empty password".to_owned());
    }
    Ok(password)
}

/// The TLS listeners' files: the ones configured, or on a first run a
/// self-signed certificate made beside the users file, whose fingerprint
/// is printed this once. The files are read here, so one that cannot be
/// used stops the start with its reason.
fn tls_files(
    settings: &Settings,
    handshake_timeout: std::time::Duration,
) -> Result<ferry::internal::tls::TlsFiles, String> {
    let (cert, key) = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let (cert, key) = ferry::internal::tls::self_signed_paths(&settings.users);
            if !cert.exists() && !key.exists() {
                let fingerprint = ferry::internal::tls::make_self_signed(&cert, &key)?;
                eprintln!(
                    "ferryd: created a self-signed TLS certificate {}",
                    cert.display()
                );
                eprintln!("ferryd:   key: {}", key.display());
                eprintln!("ferryd:   fingerprint: {fingerprint}");
                eprintln!("ferryd: (clients can pin it: ferry --pin {fingerprint})");
            }
            (cert, key)
        }
    };
    let files = ferry::internal::tls::TlsFiles {
        cert,
        key,
        client_ca: settings.tls_client_ca.clone(),
    };
    ferry::internal::tls::Acceptor::load(&files, handshake_timeout)
        .map_err(|why| format!("TLS: {why}"))?;
    Ok(files)
}

/// Loads the users file, or creates it with a `demo` user when it does not
/// exist. On failure, prints why and returns the exit status.
fn load_users(path: &Path) -> Result<Users, u8> {
    match Users::load(path) {
        Ok(users) => {
            if users.is_empty() {
                log::warn!("{} has no users: nobody can log in", path.display());
            }
            let plain = users.plain_text_users();
            if !plain.is_empty() {
                log::warn!(
                    "{}: passwords stored in plain text for: {}; replace each with \
                     `ferryd user passwd USER`",
                    path.display(),
                    plain.join(", ")
                );
            }
            Ok(users)
        }
        Err(LoadError::Invalid(err)) => {
            eprintln!("{}:{err}", path.display());
            Err(EXIT_USAGE)
        }
        Err(LoadError::Io(err)) if err.kind() == io::ErrorKind::NotFound => {
            match Users::create_default(path) {
                Ok((users, password)) => {
                    eprintln!("ferryd: created {} with one user.", path.display());
                    eprintln!("ferryd:   user: demo");
                    eprintln!("ferryd:   password: {password}");
                    eprintln!("ferryd: (the password is shown only this once)");
                    Ok(users)
                }
                Err(err) => {
                    eprintln!("ferryd: cannot create {}: {err}", path.display());
                    Err(EXIT_FAILURE)
                }
            }
        }
        Err(LoadError::Io(err)) => {
            eprintln!("ferryd: cannot read {}: {err}", path.display());
            Err(EXIT_FAILURE)
        }
    }
}
