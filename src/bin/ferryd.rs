//! `ferryd`: the ferry server as a program. Parses the command line, sets up
//! logging and users, and runs [`ferry::Server`] with signal handling.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ferry::auth::LoadError;
use ferry::{Config, Server, Users};
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode, WriteLogger};

const HASH_USAGE: &str = "\
Usage: ferryd hash-password [--iterations N] USER

Reads a password (typed twice without echo on a terminal, else the first
line of standard input) and prints the line for the users file:
  USER:$pbkdf2-sha256$i=N,l=32$<salt>$<hash>
--iterations N  PBKDF2 iterations [default: 600000; at least 1000]";

const USAGE: &str = "\
ferryd: multi-user file transfer server (line protocol and HTTP: see protocol.md)

Usage: ferryd [OPTIONS]
       ferryd hash-password [--iterations N] USER   (prints a users-file line; see --help there)

Options:
  --listen ADDR          address of the line protocol [default: 127.0.0.1:9999]
  --http-listen ADDR     also serve HTTP/1.1 on ADDR, e.g. 127.0.0.1:9980 [default: off]
  --control ADDR         a control port on this loopback address, e.g. 127.0.0.1:10000
                         (TOKEN, STATUS, RELOAD, SHUTDOWN; see README) [default: off]
  --control-token-file PATH  the control port's token (first line); the file must not
                         be readable by group or others
  --storage DIR          storage root, one directory per user [default: ./server_storage]
  --users FILE           users file, username:password per line [default: ./id_passwd.txt]
                         (created with one user 'demo' and a random password if missing)
  --max-file-size BYTES  largest upload accepted [default: 17179869184]
  --drain-timeout SECS   how long transfers may finish after SIGINT/SIGTERM [default: 5]
  --partial-ttl SECS     how long the bytes of an interrupted upload are kept for
                         resuming, counted from the last byte received [default: 86400]
  --no-fsync             acknowledge uploads and deletes without syncing them to disk
                         (faster; one acknowledged just before a power loss may be lost)
  --auth-timeout SECS    close a connection that has not logged in after this [default: 30]
  --idle-timeout SECS    close a logged-in session (or an HTTP keep-alive connection)
                         that sends nothing for this long [default: 300]
  --stall-timeout SECS   end a transfer that makes no progress for this long [default: 60]
  --head-timeout SECS    an HTTP request head must arrive within this [default: 30]
  --max-connections N    connections served at once, both protocols
                         [default: half of the open-file limit less a reserve]
  --max-per-ip N         connections from one IP address at once [default: 64]
  --login-delay SECS     hold the reply to a failed login this long [default: 1]
  --lockout-failures N   failed logins from one address within the window that lock
                         it out; 0 turns lockouts off [default: 10]
  --lockout-window SECS  the time within which those failures count [default: 600]
  --lockout-duration SECS  how long a locked-out address is refused [default: 900]
  --lockout-allow LIST   addresses never locked out, comma-separated ADDR or
                         ADDR/PREFIX (e.g. 10.0.0.0/8,::1) [default: none]
  --user-quota BYTES     bytes each user may store in all, counting partials and
                         uploads in progress [default: no limit]
  --user-max-files N     files each user may store, counting uploads of new names
                         in progress [default: no limit]
  --log-level LEVEL      off, error, warn, info, debug or trace [default: info]
  --log-file PATH        append the log to PATH instead of stderr
  -h, --help             print this help
  -V, --version          print the version

Signals: SIGINT or SIGTERM shut down gracefully; a second one ends the drain at once.
SIGHUP re-reads the users file (a broken file keeps the old users and is logged).
Exit status: 0 after a clean shutdown, 1 when the server cannot start or fails,
2 for a usage error or an invalid users file.";

/// Exit status for a failure at run time (cannot bind, storage unusable).
const EXIT_FAILURE: u8 = 1;
/// Exit status for a bad command line or users file.
const EXIT_USAGE: u8 = 2;

struct Options {
    config: Config,
    users: PathBuf,
    control_token_file: Option<PathBuf>,
    log_level: LevelFilter,
    log_file: Option<PathBuf>,
}

enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|first| first == "hash-password") {
        args.next();
        return hash_password(args);
    }
    let options = match parse_args(args) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("ferryd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("ferryd: {message}\nTry 'ferryd --help'.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(err) = init_logging(&options) {
        eprintln!("ferryd: cannot open the log: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let users = match load_users(&options.users) {
        Ok(users) => users,
        Err(code) => return ExitCode::from(code),
    };
    let mut config = options.config;
    config.users_file = Some(options.users.clone());
    // Socket activation and readiness notifications; without systemd's
    // variables this changes nothing.
    config.systemd = true;
    if let Some(path) = &options.control_token_file {
        match read_token(path) {
            Ok(token) => config.control_token = Some(token),
            Err(message) => {
                eprintln!("ferryd: --control-token-file {message}");
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
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("event loop failed: {err}");
            eprintln!("ferryd: event loop failed: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut options = Options {
        config: Config::default(),
        users: PathBuf::from("./id_passwd.txt"),
        control_token_file: None,
        log_level: LevelFilter::Info,
        log_file: None,
    };
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|err| err.to_string())? {
        match arg {
            Long("listen") => {
                let raw = value(&mut parser, "--listen")?;
                options.config.listen = raw.parse::<SocketAddr>().map_err(|_| {
                    format!("--listen: {raw:?} is not an address like 127.0.0.1:9999")
                })?;
            }
            Long("http-listen") => {
                let raw = value(&mut parser, "--http-listen")?;
                let addr = raw.parse::<SocketAddr>().map_err(|_| {
                    format!("--http-listen: {raw:?} is not an address like 127.0.0.1:9980")
                })?;
                options.config.http_listen = Some(addr);
            }
            Long("control") => {
                let raw = value(&mut parser, "--control")?;
                let addr = raw.parse::<SocketAddr>().map_err(|_| {
                    format!("--control: {raw:?} is not an address like 127.0.0.1:10000")
                })?;
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "--control: {addr} is not a loopback address (127.0.0.0/8 or ::1)"
                    ));
                }
                options.config.control_listen = Some(addr);
            }
            Long("control-token-file") => {
                let path = PathBuf::from(value(&mut parser, "--control-token-file")?);
                options.control_token_file = Some(path);
            }
            Long("storage") => {
                options.config.storage = PathBuf::from(value(&mut parser, "--storage")?)
            }
            Long("users") => options.users = PathBuf::from(value(&mut parser, "--users")?),
            Long("max-file-size") => {
                let raw = value(&mut parser, "--max-file-size")?;
                options.config.max_file_size = raw
                    .parse()
                    .map_err(|_| format!("--max-file-size: {raw:?} is not a number of bytes"))?;
            }
            Long("drain-timeout") => {
                options.config.drain_timeout = seconds(&mut parser, "--drain-timeout")?;
            }
            Long("partial-ttl") => {
                options.config.partial_ttl = seconds(&mut parser, "--partial-ttl")?;
            }
            Long("no-fsync") => options.config.fsync = false,
            Long("auth-timeout") => {
                options.config.policy.auth_timeout = seconds(&mut parser, "--auth-timeout")?
            }
            Long("idle-timeout") => {
                options.config.policy.idle_timeout = seconds(&mut parser, "--idle-timeout")?
            }
            Long("stall-timeout") => {
                options.config.policy.stall_timeout = seconds(&mut parser, "--stall-timeout")?
            }
            Long("head-timeout") => {
                options.config.policy.head_timeout = seconds(&mut parser, "--head-timeout")?
            }
            Long("max-connections") => {
                options.config.policy.max_connections = count(&mut parser, "--max-connections")?
            }
            Long("max-per-ip") => {
                options.config.policy.max_per_ip = count(&mut parser, "--max-per-ip")?
            }
            Long("login-delay") => {
                options.config.policy.login_delay = seconds(&mut parser, "--login-delay")?
            }
            Long("lockout-failures") => {
                let n = count(&mut parser, "--lockout-failures")?;
                options.config.policy.lockout_failures = u32::try_from(n).unwrap_or(u32::MAX);
            }
            Long("lockout-window") => {
                options.config.policy.lockout_window = seconds(&mut parser, "--lockout-window")?
            }
            Long("user-quota") => {
                let n = count(&mut parser, "--user-quota")?;
                options.config.policy.user_quota = Some(n as u64);
            }
            Long("user-max-files") => {
                let n = count(&mut parser, "--user-max-files")?;
                options.config.policy.user_max_files = Some(n as u64);
            }
            Long("lockout-duration") => {
                options.config.policy.lockout_duration = seconds(&mut parser, "--lockout-duration")?
            }
            Long("lockout-allow") => {
                let raw = value(&mut parser, "--lockout-allow")?;
                for range in raw.split(',').filter(|r| !r.trim().is_empty()) {
                    let range = range
                        .trim()
                        .parse()
                        .map_err(|why| format!("--lockout-allow: {why}"))?;
                    options.config.policy.lockout_allow.push(range);
                }
            }
            Long("log-level") => {
                let raw = value(&mut parser, "--log-level")?;
                options.log_level = raw.parse().map_err(|_| {
                    format!(
                        "--log-level: {raw:?} is not one of off, error, warn, info, debug, trace"
                    )
                })?;
            }
            Long("log-file") => {
                options.log_file = Some(PathBuf::from(value(&mut parser, "--log-file")?))
            }
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if options.config.control_listen.is_some() && options.control_token_file.is_none() {
        return Err("--control needs --control-token-file".to_owned());
    }
    Ok(Parsed::Run(Box::new(options)))
}

/// Reads the control port's token: the first line of a file that group and
/// others cannot read.
fn read_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|err| format!("{shown}: {err}"))?;
    if meta.mode() & 0o044 != 0 {
        return Err(format!(
            "{shown}: readable by group or others (mode {:o}); chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|err| format!("{shown}: {err}"))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!("{shown}: the token is empty"));
    }
    Ok(token.to_owned())
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

/// A non-negative number of seconds, fractions allowed.
fn seconds(parser: &mut lexopt::Parser, what: &str) -> Result<Duration, String> {
    let raw = value(parser, what)?;
    raw.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{what}: {raw:?} is not a number of seconds"))
}

fn init_logging(options: &Options) -> io::Result<()> {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .build();
    let result = match &options.log_file {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            WriteLogger::init(options.log_level, config, file)
        }
        None => TermLogger::init(
            options.log_level,
            config,
            TerminalMode::Stderr,
            ColorChoice::Never,
        ),
    };
    result.map_err(io::Error::other)
}

/// `ferryd hash-password [--iterations N] USER`: reads a password (without
/// echo on a terminal, asking twice) and prints the users-file line.
fn hash_password(args: impl Iterator<Item = OsString>) -> ExitCode {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut user = None;
    let mut iterations = ferry::kdf::DEFAULT_ITERATIONS;
    let usage = |message: &str| {
        eprintln!("ferryd hash-password: {message}\n{HASH_USAGE}");
        ExitCode::from(EXIT_USAGE)
    };
    loop {
        match parser.next() {
            Ok(None) => break,
            Ok(Some(Long("iterations"))) => {
                match count(&mut parser, "--iterations").map(u32::try_from) {
                    Ok(Ok(n)) if n >= ferry::kdf::MIN_ITERATIONS => iterations = n,
                    _ => {
                        let min = ferry::kdf::MIN_ITERATIONS;
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
    if !ferry::auth::is_valid_username(user.as_bytes()) {
        return usage(&format!("{user:?} is not a valid username"));
    }
    let password = match read_new_password() {
        Ok(password) => password,
        Err(message) => {
            eprintln!("ferryd hash-password: {message}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let salt = match ferry::auth::random_bytes(16) {
        Ok(salt) => salt,
        Err(err) => {
            eprintln!("ferryd hash-password: no random salt: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let hash = ferry::kdf::PasswordHash::new(password.as_bytes(), &salt, iterations);
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
                    "{}: passwords stored in plain text for: {}; replace each with the line \
                     `ferryd hash-password USER` prints",
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
