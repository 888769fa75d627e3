//! The command line, and the same commands typed in `ferry shell`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ferry::internal::ops::manual::{CommandDoc, Manual, OptionDoc};
use lexopt::prelude::*;

/// The commands: usage and help, for `--help`, the man page and the
/// completions.
const COMMANDS: &[(&str, &str)] = &[
    ("put FILE...", "upload files, each under its own file name"),
    (
        "put FILE -o NAME",
        "upload one file under another name (a path: folder/name)",
    ),
    (
        "put -r DIR...",
        "upload folders and everything in them, each file verified",
    ),
    (
        "get NAME...",
        "download files into the current directory (or -d DIR)",
    ),
    ("get NAME -o PATH", "download one file to PATH"),
    (
        "get -r PATH...",
        "download folders and everything in them, each file verified",
    ),
    (
        "ls [-R] [PATH]",
        "list your files and folders, or a folder's; -R: the whole tree (-h: sizes like 1.5M)",
    ),
    (
        "view NAME",
        "show the first 1024 bytes (a hex dump when binary; --raw: the bytes as they are)",
    ),
    (
        "rm NAME...",
        "delete files (-r: folders and everything in them)",
    ),
    (
        "mkdir [-p] PATH...",
        "create folders (-p: and their parents, none an error)",
    ),
    ("rmdir PATH...", "remove empty folders"),
    (
        "mv FROM TO",
        "move or rename a file or folder (--force: replace TO)",
    ),
    (
        "cp FROM TO",
        "copy a file, or a folder with everything in it, on the server (--force: a file replaces TO)",
    ),
    (
        "hash NAME...",
        "print the server's SHA-256 of files, as sha256sum does",
    ),
    (
        "shell",
        "an interactive session with the same commands, history and tab completion of names",
    ),
];

/// The options: short, long, value, help. `parse` below must accept each
/// (a unit test checks it).
const OPTIONS: &[(Option<char>, &str, Option<&str>, &str)] = &[
    (
        None,
        "server",
        Some("HOST:PORT"),
        "the server (default 127.0.0.1:9999)",
    ),
    (None, "user", Some("NAME"), "the user to log in as"),
    (
        None,
        "tls",
        None,
        "speak TLS (ferryd --tls-listen; default port 9990); a tls://HOST:PORT server does too",
    ),
    (
        None,
        "ca-file",
        Some("PATH"),
        "with TLS: trust the CAs in this PEM file (default: the system's)",
    ),
    (
        None,
        "pin",
        Some("sha256:HEX"),
        "with TLS: trust exactly the certificate with this SHA-256 (what ferryd printed)",
    ),
    (
        None,
        "cert",
        Some("PATH"),
        "with TLS: log in by this client certificate (PEM), no password",
    ),
    (
        None,
        "key",
        Some("PATH"),
        "the client certificate's key (PEM)",
    ),
    (
        None,
        "config",
        Some("PATH"),
        "settings file (default $XDG_CONFIG_HOME/ferry/config, else ~/.config/ferry/config)",
    ),
    (
        None,
        "retries",
        Some("N"),
        "after a dropped connection, reconnect and resume up to N times (default 0)",
    ),
    (
        None,
        "timeout",
        Some("SECS"),
        "give up on a server silent this long (default 120)",
    ),
    (
        None,
        "no-resume",
        None,
        "start transfers from the beginning, ignoring what an interrupted one left",
    ),
    (
        None,
        "limit-rate",
        Some("RATE"),
        "move at most RATE bytes per second (K, M, G suffixes)",
    ),
    (
        Some('o'),
        "output",
        Some("NAME"),
        "the other end's name for a single put or get",
    ),
    (
        Some('d'),
        "dir",
        Some("DIR"),
        "where get stores files (default: here)",
    ),
    (
        Some('f'),
        "force",
        None,
        "get: replace a local file whose content differs (without it, ferry asks on a \
         terminal and refuses otherwise)",
    ),
    (
        Some('r'),
        "recursive",
        None,
        "put, get, rm, ls: folders and everything in them (-R too)",
    ),
    (
        Some('p'),
        "parents",
        None,
        "mkdir: create the parents too, and take an existing folder as done",
    ),
    (
        Some('h'),
        "human",
        None,
        "ls: sizes in K, M, G (powers of 1024)",
    ),
    (
        None,
        "raw",
        None,
        "view: write the preview's bytes unchanged",
    ),
    (
        None,
        "json",
        None,
        "one JSON object per line on stdout: one per file for ls, hash, rm, put and get, and \
         one for each error",
    ),
    (
        Some('q'),
        "quiet",
        None,
        "no progress bar and no summary lines",
    ),
    (None, "help", None, "print this help"),
    (None, "version", None, "print the version"),
];

const ENVIRONMENT: &str = "\
The password comes from the FERRY_PASSWORD environment variable, or is asked \
for without echo when there is a terminal; it is never an argument. FERRY_SERVER, \
FERRY_USER and FERRY_CONFIG stand in for --server, --user and --config; the \
settings file holds 'server = HOST:PORT', 'user = NAME' and 'retries = N' lines \
('#' starts a comment). An option beats the environment, which beats the file.";

const VERIFICATION: &str = "\
Every upload is hashed while it is sent and checked against the server's \
digest; every download is checked against the server's HASH before it is \
renamed from NAME.ferry-part to NAME. An interrupted transfer is continued \
the next time: a download from its .ferry-part file, an upload from what \
the server kept.";

const EXIT_STATUS: &str = "  0  success
  1  a local file could not be read or written
  2  usage error (bad options, no user or password, bad settings file)
  3  authentication failed
  4  the server refused a command (no such file, name not allowed, quota...)
  5  network failure (cannot connect, connection dropped, timeout, server
     shutting down)
  6  checksum mismatch
  130  a transfer stopped by Ctrl-C in ferry shell (the shell goes on)

When several files are named, each is tried and the status is the first \
failure's; after a network failure that retries do not cure, the rest are \
not tried.";

/// ferry's manual, rendered as `--help`, ferry(1) and the completions
/// (`ferry --generate man|bash|zsh|fish`).
pub fn manual() -> Manual {
    Manual {
        name: "ferry".to_owned(),
        section: 1,
        summary: "the command-line client of a ferry file server".to_owned(),
        synopsis: vec!["ferry [OPTIONS] COMMAND [ARGS]".to_owned()],
        commands: COMMANDS
            .iter()
            .map(|(usage, help)| CommandDoc {
                usage: (*usage).to_owned(),
                help: (*help).to_owned(),
            })
            .collect(),
        options: OPTIONS
            .iter()
            .map(|(short, long, arg, help)| OptionDoc {
                short: *short,
                long: (*long).to_owned(),
                arg: arg.map(str::to_owned),
                path: matches!(arg, Some("PATH" | "DIR")),
                help: (*help).to_owned(),
            })
            .collect(),
        sections: vec![
            ("Password and settings".to_owned(), ENVIRONMENT.to_owned()),
            (
                "Verification and resume".to_owned(),
                VERIFICATION.to_owned(),
            ),
            ("Exit status".to_owned(), EXIT_STATUS.to_owned()),
        ],
    }
}

/// The verbs, on the command line and in the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Put,
    Get,
    Ls,
    View,
    Rm,
    Hash,
    Shell,
    Mkdir,
    Rmdir,
    Mv,
    Cp,
}

impl Verb {
    pub const NAMES: [&'static str; 11] = [
        "put", "get", "ls", "view", "rm", "hash", "shell", "mkdir", "rmdir", "mv", "cp",
    ];

    fn from_name(name: &str) -> Option<Verb> {
        Some(match name {
            "put" => Verb::Put,
            "get" => Verb::Get,
            "ls" => Verb::Ls,
            "view" => Verb::View,
            "rm" => Verb::Rm,
            "hash" => Verb::Hash,
            "shell" => Verb::Shell,
            "mkdir" => Verb::Mkdir,
            "rmdir" => Verb::Rmdir,
            "mv" => Verb::Mv,
            "cp" => Verb::Cp,
            _ => return None,
        })
    }
}

/// Options that shape one command's work and output.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub json: bool,
    pub quiet: bool,
    pub human: bool,
    pub raw: bool,
    pub no_resume: bool,
    /// `get` may replace a local file whose content differs; `mv` and
    /// `cp` may replace their destination.
    pub force: bool,
    /// `-r`, `-R`: folders and what is in them.
    pub recursive: bool,
    /// `mkdir -p`.
    pub parents: bool,
    /// Bytes per second, at most.
    pub limit_rate: Option<u64>,
    pub output: Option<OsString>,
    pub dir: Option<PathBuf>,
}

/// Where and as whom to connect; only on the command line.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    pub server: Option<String>,
    pub user: Option<String>,
    pub config: Option<PathBuf>,
    pub retries: Option<u32>,
    pub timeout: Option<Duration>,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub pin: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Command {
    pub verb: Verb,
    pub operands: Vec<OsString>,
    pub options: Options,
    pub connect: Connect,
}

#[derive(Debug)]
pub enum Parsed {
    Help,
    Version,
    /// `--generate man|bash|zsh|fish` (not in `--help`): ferry(1) or a
    /// completion script.
    Generate(String),
    Run(Box<Command>),
}

/// Parses a command line (without the program name). In the shell
/// (`in_shell`), the connection options are refused and `shell` is not a
/// command.
pub fn parse(args: Vec<OsString>, in_shell: bool) -> Result<Parsed, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut verb = None;
    let mut operands = Vec::new();
    let mut options = Options::default();
    let mut connect = Connect::default();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("help") => return Ok(Parsed::Help),
            Long("version") if !in_shell => return Ok(Parsed::Version),
            Long("generate") if !in_shell => {
                return Ok(Parsed::Generate(text(value(&mut parser)?, "--generate")?));
            }
            Long(
                "server" | "user" | "config" | "retries" | "timeout" | "tls" | "ca-file" | "pin"
                | "cert" | "key",
            ) if in_shell => {
                return Err("connection options are set when the shell starts".to_string());
            }
            Long("server") => connect.server = Some(text(value(&mut parser)?, "--server")?),
            Long("user") => connect.user = Some(text(value(&mut parser)?, "--user")?),
            Long("config") => connect.config = Some(value(&mut parser)?.into()),
            Long("tls") => connect.tls = true,
            Long("ca-file") => connect.ca_file = Some(value(&mut parser)?.into()),
            Long("pin") => connect.pin = Some(text(value(&mut parser)?, "--pin")?),
            Long("cert") => connect.cert = Some(value(&mut parser)?.into()),
            Long("key") => connect.key = Some(value(&mut parser)?.into()),
            Long("retries") => connect.retries = Some(number(value(&mut parser)?, "--retries")?),
            Long("timeout") => {
                let secs: f64 = number(value(&mut parser)?, "--timeout")?;
                if !(secs > 0.0 && secs.is_finite()) {
                    return Err("--timeout must be a positive number of seconds".to_string());
                }
                connect.timeout = Some(Duration::from_secs_f64(secs));
            }
            Long("no-resume") => options.no_resume = true,
            Long("limit-rate") => {
                options.limit_rate = Some(rate(&text(value(&mut parser)?, "--limit-rate")?)?);
            }
            Short('o') | Long("output") => options.output = Some(value(&mut parser)?),
            Short('d') | Long("dir") => options.dir = Some(value(&mut parser)?.into()),
            Short('h') | Long("human") => options.human = true,
            Long("raw") => options.raw = true,
            Long("json") => options.json = true,
            Short('q') | Long("quiet") => options.quiet = true,
            Short('f') | Long("force") => options.force = true,
            Short('r' | 'R') | Long("recursive") => options.recursive = true,
            Short('p') | Long("parents") => options.parents = true,
            Value(value) if verb.is_none() => {
                let name = value.to_string_lossy();
                match Verb::from_name(&name) {
                    Some(Verb::Shell) if in_shell => {
                        return Err("already in the shell".to_string());
                    }
                    Some(v) => verb = Some(v),
                    None => return Err(format!("unknown command '{name}'")),
                }
            }
            Value(value) => operands.push(value),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let Some(verb) = verb else {
        if options.human && operands.is_empty() && !in_shell {
            // `ferry -h` alone: the usual meaning of -h.
            return Ok(Parsed::Help);
        }
        return Err("no command given".to_string());
    };
    check(verb, &operands, &options)?;
    Ok(Parsed::Run(Box::new(Command {
        verb,
        operands,
        options,
        connect,
    })))
}

/// The rules of each verb: how many operands, which options.
fn check(verb: Verb, operands: &[OsString], options: &Options) -> Result<(), String> {
    let name = Verb::NAMES[verb as usize];
    match verb {
        Verb::Put | Verb::Get | Verb::Rm | Verb::Hash | Verb::Mkdir | Verb::Rmdir
            if operands.is_empty() =>
        {
            return Err(format!("{name} needs at least one file name"));
        }
        Verb::Mv | Verb::Cp if operands.len() != 2 => {
            return Err(format!("{name} takes two paths: FROM TO"));
        }
        Verb::Ls if operands.len() > 1 => {
            return Err("ls takes at most one folder".to_string());
        }
        Verb::View if operands.len() != 1 => {
            return Err("view takes exactly one file name".to_string());
        }
        Verb::Shell if !operands.is_empty() => {
            return Err(format!("{name} takes no file names"));
        }
        _ => {}
    }
    if options.output.is_some() {
        if !matches!(verb, Verb::Put | Verb::Get) {
            return Err("-o applies to put and get".to_string());
        }
        if operands.len() != 1 {
            return Err("-o names one file; give one file with it".to_string());
        }
        if options.dir.is_some() {
            return Err("-o and -d do not go together".to_string());
        }
    }
    if options.dir.is_some() && verb != Verb::Get {
        return Err("-d applies to get".to_string());
    }
    if options.force && !matches!(verb, Verb::Get | Verb::Mv | Verb::Cp | Verb::Shell) {
        return Err("--force applies to get, mv and cp".to_string());
    }
    if options.recursive
        && !matches!(
            verb,
            Verb::Put | Verb::Get | Verb::Rm | Verb::Ls | Verb::Shell
        )
    {
        return Err("-r applies to put, get, rm and ls".to_string());
    }
    if options.recursive && options.output.is_some() && verb == Verb::Get {
        return Err("get -r takes -d DIR, not -o".to_string());
    }
    if options.parents && !matches!(verb, Verb::Mkdir | Verb::Shell) {
        return Err("-p applies to mkdir".to_string());
    }
    if options.human && verb != Verb::Ls && verb != Verb::Shell {
        return Err("-h applies to ls".to_string());
    }
    if options.limit_rate.is_some() && !matches!(verb, Verb::Put | Verb::Get | Verb::Shell) {
        return Err("--limit-rate applies to put and get".to_string());
    }
    if options.raw && verb != Verb::View {
        return Err("--raw applies to view".to_string());
    }
    if options.raw && options.json {
        return Err("--raw and --json do not go together".to_string());
    }
    Ok(())
}

/// `RATE` with an optional K, M or G (powers of 1024), bytes per second.
fn rate(text: &str) -> Result<u64, String> {
    let bad = || format!("--limit-rate: '{text}' is not a rate like 500K or 2M");
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1 << 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    match n.checked_mul(scale) {
        Some(rate) if rate > 0 => Ok(rate),
        _ => Err(bad()),
    }
}

fn value(parser: &mut lexopt::Parser) -> Result<OsString, String> {
    parser.value().map_err(|e| e.to_string())
}

fn text(value: OsString, option: &str) -> Result<String, String> {
    value
        .into_string()
        .map_err(|_| format!("{option}: not valid UTF-8"))
}

fn number<T: std::str::FromStr>(value: OsString, option: &str) -> Result<T, String> {
    let value = text(value, option)?;
    value
        .parse()
        .map_err(|_| format!("{option}: '{value}' is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, String> {
        match parse(args.iter().map(OsString::from).collect(), false)? {
            Parsed::Run(command) => Ok(*command),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_go_before_or_after_the_command() {
        let a = run(&["--server", "h:1", "put", "a", "b", "--json"]).unwrap();
        assert_eq!(a.verb, Verb::Put);
        assert_eq!(a.operands, ["a", "b"]);
        assert!(a.options.json);
        assert_eq!(a.connect.server.as_deref(), Some("h:1"));
        let b = run(&["get", "--", "-o"]).unwrap();
        assert_eq!(b.operands, ["-o"]);
    }

    #[test]
    fn each_verb_checks_its_operands() {
        for bad in [
            &["put"][..],
            &["view", "a", "b"],
            &["ls", "x", "y"],
            &["put", "a", "b", "-o", "c"],
            &["get", "a", "-o", "x", "-d", "y"],
            &["ls", "--raw"],
            &["put", "a", "-h"],
            &["frobnicate"],
            &[],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        assert!(run(&["ls", "-h"]).unwrap().options.human);
        let limited = run(&["get", "x", "--limit-rate", "2M"]).unwrap();
        assert_eq!(limited.options.limit_rate, Some(2 << 20));
        assert!(run(&["get", "x", "--limit-rate", "0"]).is_err());
        assert!(run(&["get", "x", "--limit-rate", "fast"]).is_err());
    }

    /// The manual lists what the parser takes, and the parser takes every
    /// option the manual lists.
    #[test]
    fn every_documented_option_is_parsed() {
        for (short, long, arg, _) in OPTIONS {
            let mut spellings = vec![format!("--{long}")];
            spellings.extend(short.map(|c| format!("-{c}")));
            for spelled in spellings {
                let mut args = vec![spelled.clone()];
                args.extend(arg.map(|_| "1".to_owned()));
                args.extend(["ls".to_owned()]);
                let result = parse(args.into_iter().map(OsString::from).collect(), false);
                if let Err(message) = result {
                    assert!(
                        !message.contains("invalid option") && !message.contains("unexpected"),
                        "{spelled}: {message}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_shell_refuses_connection_options() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect();
        assert!(parse(args(&["ls", "--server", "x:1"]), true).is_err());
        assert!(parse(args(&["shell"]), true).is_err());
        assert!(parse(args(&["get", "a b"]), true).is_ok());
    }
}
