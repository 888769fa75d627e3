//! The line-protocol command parser: a pure function of bytes.
//!
//! [`parse`] looks at the bytes a client has sent so far and says whether they
//! hold a complete command line yet ([`Status::Partial`] is not an error),
//! and if so which command it is (borrowing from the input, no allocation)
//! and how many bytes the line took. [`Command::write_to`] formats a command
//! back into a line that parses to the same command.

use super::path::{self, FilePath};
use crate::integrity::Digest;

/// Longest command line in bytes, terminator included. It bounds the one
/// buffer an idle session may hold, and leaves room for the longest name
/// (255 bytes) behind any verb and size with a wide margin.
pub const MAX_LINE: usize = 4096;

/// How a digest is written in `EXPECT` and in replies: the algorithm, `=`,
/// then lower-case hex.
pub const SHA256_PREFIX: &str = "sha256=";

/// What `HELP` sends: every command with its syntax, one per line, for
/// whoever types the protocol by hand (protocol.md has the whole story).
pub const HELP_TEXT: &str = "\
AUTH <user> <password>   log in (the password is the rest of the line)
LIST [<path>]            list a folder: blocks of '<size> <mtime> <name>' lines (folders end in /), ended by 150 0
TREE [<path>]            list a whole tree, as LIST, with paths relative to the folder
VIEW <path>              the first 1024 bytes of a file
GET <path>               download a file
PUT <size> <path>        upload: wait for '150 <size>', then send exactly <size> bytes
DEL <path>               delete a file
HASH <path>              the SHA-256 of a file
STAT <path>              type, size, mtime (and SHA-256 when known) of a path
PARTIAL <path>           bytes held of an interrupted upload of <path>
MKDIR <path>             create a folder (its parent must exist)
RMDIR <path>             remove an empty folder
RMTREE <path>            remove a folder and everything in it
FROM <path>              the source of the next MOVE or COPY
REPLACE                  the next MOVE or COPY may replace its destination
MOVE <path>              move or rename the FROM file or folder to <path>
COPY <path>              copy the FROM file to <path>
REST <offset>            the next GET or PUT starts at byte <offset>
EXPECT sha256=<hex>      the next PUT must have this digest
NOOP                     do nothing
HELP                     this text
QUIT                     end the session
A path is names joined by '/' and is the rest of the line, spaces included. Replies: 'NNN text'; '150 <n>' announces <n> bytes.
";

/// Longest decimal size accepted: `u64::MAX` has 20 digits.
const MAX_SIZE_DIGITS: usize = 20;

/// The verbs of the line protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Auth,
    List,
    View,
    Get,
    Put,
    Del,
    Hash,
    Partial,
    Rest,
    Expect,
    Noop,
    Help,
    Quit,
    Tree,
    Stat,
    Mkdir,
    Rmdir,
    Rmtree,
    From,
    Replace,
    Move,
    Copy,
}

impl Verb {
    const ALL: [Verb; 22] = [
        Verb::Auth,
        Verb::List,
        Verb::View,
        Verb::Get,
        Verb::Put,
        Verb::Del,
        Verb::Hash,
        Verb::Partial,
        Verb::Rest,
        Verb::Expect,
        Verb::Noop,
        Verb::Help,
        Verb::Quit,
        Verb::Tree,
        Verb::Stat,
        Verb::Mkdir,
        Verb::Rmdir,
        Verb::Rmtree,
        Verb::From,
        Verb::Replace,
        Verb::Move,
        Verb::Copy,
    ];

    /// The verb as it is written on the wire (upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Auth => "AUTH",
            Verb::List => "LIST",
            Verb::View => "VIEW",
            Verb::Get => "GET",
            Verb::Put => "PUT",
            Verb::Del => "DEL",
            Verb::Hash => "HASH",
            Verb::Partial => "PARTIAL",
            Verb::Rest => "REST",
            Verb::Expect => "EXPECT",
            Verb::Noop => "NOOP",
            Verb::Help => "HELP",
            Verb::Quit => "QUIT",
            Verb::Tree => "TREE",
            Verb::Stat => "STAT",
            Verb::Mkdir => "MKDIR",
            Verb::Rmdir => "RMDIR",
            Verb::Rmtree => "RMTREE",
            Verb::From => "FROM",
            Verb::Replace => "REPLACE",
            Verb::Move => "MOVE",
            Verb::Copy => "COPY",
        }
    }

    /// File commands need a logged-in session; `AUTH`, `NOOP`, `HELP`
    /// and `QUIT` do not.
    pub fn needs_login(self) -> bool {
        !matches!(self, Verb::Auth | Verb::Noop | Verb::Help | Verb::Quit)
    }

    fn from_bytes(raw: &[u8]) -> Option<Verb> {
        Verb::ALL
            .into_iter()
            .find(|verb| verb.as_str().as_bytes().eq_ignore_ascii_case(raw))
    }
}

/// A complete, well-formed command. Names and credentials borrow from the
/// parsed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `AUTH <user> <password>`; both non-empty, the user has no space, the
    /// password is the rest of the line.
    Auth {
        user: &'a [u8],
        password: &'a [u8],
    },
    /// `LIST [<path>]`: a folder (the root without a path).
    List {
        path: Option<FilePath<'a>>,
    },
    /// `TREE [<path>]`: everything beneath a folder.
    Tree {
        path: Option<FilePath<'a>>,
    },
    View {
        name: FilePath<'a>,
    },
    Get {
        name: FilePath<'a>,
    },
    Put {
        size: u64,
        name: FilePath<'a>,
    },
    Del {
        name: FilePath<'a>,
    },
    /// `HASH <name>`: the SHA-256 of a stored file.
    Hash {
        name: FilePath<'a>,
    },
    /// `PARTIAL <name>`: how many bytes of an interrupted upload are held.
    Partial {
        name: FilePath<'a>,
    },
    /// `REST <offset>`: the next `GET` or `PUT` starts at `offset`.
    Rest {
        offset: u64,
    },
    /// `EXPECT sha256=<hex>`: the next `PUT` must have this digest.
    Expect {
        sha256: Digest,
    },
    Noop,
    /// `HELP`: the commands and their syntax ([`HELP_TEXT`]).
    Help,
    Quit,
    /// `STAT <path>`: type, size, mtime, digest when known.
    Stat {
        name: FilePath<'a>,
    },
    /// `MKDIR <path>`: create one folder.
    Mkdir {
        name: FilePath<'a>,
    },
    /// `RMDIR <path>`: remove an empty folder.
    Rmdir {
        name: FilePath<'a>,
    },
    /// `RMTREE <path>`: remove a folder and everything in it.
    Rmtree {
        name: FilePath<'a>,
    },
    /// `FROM <path>`: the source of the next `MOVE` or `COPY`.
    From {
        name: FilePath<'a>,
    },
    /// `REPLACE`: the next `MOVE` or `COPY` may replace its destination.
    Replace,
    /// `MOVE <path>`: the destination of a move.
    Move {
        name: FilePath<'a>,
    },
    /// `COPY <path>`: the destination of a copy.
    Copy {
        name: FilePath<'a>,
    },
}

impl Command<'_> {
    pub fn verb(&self) -> Verb {
        match self {
            Command::Auth { .. } => Verb::Auth,
            Command::List { .. } => Verb::List,
            Command::Tree { .. } => Verb::Tree,
            Command::Stat { .. } => Verb::Stat,
            Command::Mkdir { .. } => Verb::Mkdir,
            Command::Rmdir { .. } => Verb::Rmdir,
            Command::Rmtree { .. } => Verb::Rmtree,
            Command::From { .. } => Verb::From,
            Command::Replace => Verb::Replace,
            Command::Move { .. } => Verb::Move,
            Command::Copy { .. } => Verb::Copy,
            Command::View { .. } => Verb::View,
            Command::Get { .. } => Verb::Get,
            Command::Put { .. } => Verb::Put,
            Command::Del { .. } => Verb::Del,
            Command::Hash { .. } => Verb::Hash,
            Command::Partial { .. } => Verb::Partial,
            Command::Rest { .. } => Verb::Rest,
            Command::Expect { .. } => Verb::Expect,
            Command::Noop => Verb::Noop,
            Command::Help => Verb::Help,
            Command::Quit => Verb::Quit,
        }
    }

    /// Appends the command as a complete line such that [`parse`] gives
    /// back an equal command. The line ends with LF, or with CRLF when the
    /// command itself ends with CR (a password may), so that it is never
    /// longer than the line it was parsed from.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(self.verb().as_str().as_bytes());
        match self {
            Command::Auth { user, password } => {
                out.push(b' ');
                out.extend_from_slice(user);
                out.push(b' ');
                out.extend_from_slice(password);
            }
            Command::View { name }
            | Command::Get { name }
            | Command::Del { name }
            | Command::Hash { name }
            | Command::Partial { name }
            | Command::Stat { name }
            | Command::Mkdir { name }
            | Command::Rmdir { name }
            | Command::Rmtree { name }
            | Command::From { name }
            | Command::Move { name }
            | Command::Copy { name } => {
                out.push(b' ');
                out.extend_from_slice(name.as_str().as_bytes());
            }
            Command::Rest { offset } => out.extend_from_slice(format!(" {offset}").as_bytes()),
            Command::Expect { sha256 } => {
                out.extend_from_slice(format!(" {SHA256_PREFIX}{sha256}").as_bytes())
            }
            Command::Put { size, name } => {
                out.extend_from_slice(format!(" {size} ").as_bytes());
                out.extend_from_slice(name.as_str().as_bytes());
            }
            Command::List { path } | Command::Tree { path } => {
                if let Some(path) = path {
                    out.push(b' ');
                    out.extend_from_slice(path.as_str().as_bytes());
                }
            }
            Command::Noop | Command::Help | Command::Quit | Command::Replace => {}
        }
        if out[start..].ends_with(b"\r") {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
}

/// Why a complete line is not a command. Each maps to one reply in
/// [`super::reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The line holds nothing but its terminator.
    EmptyLine,
    /// The first word is not a verb of this protocol.
    UnknownCommand,
    /// No LF within [`MAX_LINE`] bytes. The caller must discard the rest of
    /// the line, up to and including its LF.
    LineTooLong,
    /// The verb is known but its arguments are missing, extra or malformed.
    BadArguments(Verb),
    /// The path breaks the rules of [`path::validate`].
    NameNotAllowed(Verb),
}

impl ParseError {
    /// The verb of the line, when it had a known one.
    pub fn verb(self) -> Option<Verb> {
        match self {
            ParseError::BadArguments(verb) | ParseError::NameNotAllowed(verb) => Some(verb),
            ParseError::EmptyLine | ParseError::UnknownCommand | ParseError::LineTooLong => None,
        }
    }
}

/// Whether the input held enough bytes to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// No complete line yet: read more and call again with all bytes.
    Partial,
    Complete(T),
}

/// A decided line: the command or why it is not one, and how many input
/// bytes it took (the line and its terminator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub command: Result<Command<'a>, ParseError>,
    pub consumed: usize,
}

/// Parses the first command line in `buf`.
///
/// Returns [`Status::Partial`] while `buf` holds fewer than [`MAX_LINE`]
/// bytes and no LF. With [`MAX_LINE`] bytes and no LF among them the line is
/// too long: the result is [`ParseError::LineTooLong`] with `consumed ==
/// MAX_LINE`, and the caller discards up to the next LF.
pub fn parse(buf: &[u8]) -> Status<Parsed<'_>> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if window.len() == MAX_LINE {
            return Status::Complete(Parsed {
                command: Err(ParseError::LineTooLong),
                consumed: MAX_LINE,
            });
        }
        return Status::Partial;
    };
    let mut line = &window[..lf];
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    Status::Complete(Parsed {
        command: parse_line(line),
        consumed: lf + 1,
    })
}

/// Finds the end of the line that [`ParseError::LineTooLong`] cut short:
/// the number of bytes up to and including the next LF, if it is in `buf`.
pub fn skip_line(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|lf| lf + 1)
}

/// Parses one line without its terminator.
fn parse_line(line: &[u8]) -> Result<Command<'_>, ParseError> {
    if line.is_empty() {
        return Err(ParseError::EmptyLine);
    }
    let (word, args) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], Some(&line[space + 1..])),
        None => (line, None),
    };
    let verb = Verb::from_bytes(word).ok_or(ParseError::UnknownCommand)?;
    let bad = ParseError::BadArguments(verb);
    match verb {
        Verb::Noop | Verb::Help | Verb::Quit | Verb::Replace => {
            if args.is_some() {
                return Err(bad);
            }
            Ok(match verb {
                Verb::Noop => Command::Noop,
                Verb::Help => Command::Help,
                Verb::Replace => Command::Replace,
                _ => Command::Quit,
            })
        }
        Verb::List | Verb::Tree => {
            // `LIST ` (a space, then nothing) is as malformed as `GET `.
            let path = match args {
                None => None,
                Some([]) => return Err(bad),
                Some(raw) => Some(file_name(raw, verb)?),
            };
            Ok(match verb {
                Verb::List => Command::List { path },
                _ => Command::Tree { path },
            })
        }
        Verb::Auth => {
            let args = args.ok_or(bad)?;
            let space = args.iter().position(|&b| b == b' ').ok_or(bad)?;
            let (user, password) = (&args[..space], &args[space + 1..]);
            if user.is_empty() || password.is_empty() {
                return Err(bad);
            }
            Ok(Command::Auth { user, password })
        }
        Verb::View
        | Verb::Get
        | Verb::Del
        | Verb::Hash
        | Verb::Partial
        | Verb::Stat
        | Verb::Mkdir
        | Verb::Rmdir
        | Verb::Rmtree
        | Verb::From
        | Verb::Move
        | Verb::Copy => {
            let raw = args.filter(|a| !a.is_empty()).ok_or(bad)?;
            let name = file_name(raw, verb)?;
            Ok(match verb {
                Verb::View => Command::View { name },
                Verb::Get => Command::Get { name },
                Verb::Del => Command::Del { name },
                Verb::Hash => Command::Hash { name },
                Verb::Stat => Command::Stat { name },
                Verb::Mkdir => Command::Mkdir { name },
                Verb::Rmdir => Command::Rmdir { name },
                Verb::Rmtree => Command::Rmtree { name },
                Verb::From => Command::From { name },
                Verb::Move => Command::Move { name },
                Verb::Copy => Command::Copy { name },
                _ => Command::Partial { name },
            })
        }
        Verb::Rest => {
            let offset = args.and_then(parse_size).ok_or(bad)?;
            Ok(Command::Rest { offset })
        }
        Verb::Expect => {
            let args = args.ok_or(bad)?;
            let (algorithm, hex) = args.split_at_checked(SHA256_PREFIX.len()).ok_or(bad)?;
            if !algorithm.eq_ignore_ascii_case(SHA256_PREFIX.as_bytes()) {
                return Err(bad);
            }
            let sha256 = Digest::from_hex(hex).ok_or(bad)?;
            Ok(Command::Expect { sha256 })
        }
        Verb::Put => {
            let args = args.ok_or(bad)?;
            let space = args.iter().position(|&b| b == b' ').ok_or(bad)?;
            let size = parse_size(&args[..space]).ok_or(bad)?;
            let raw = &args[space + 1..];
            if raw.is_empty() {
                return Err(bad);
            }
            Ok(Command::Put {
                size,
                name: file_name(raw, verb)?,
            })
        }
    }
}

fn file_name(raw: &[u8], verb: Verb) -> Result<FilePath<'_>, ParseError> {
    path::validate(raw).ok_or(ParseError::NameNotAllowed(verb))
}

/// A size is 1 to 20 ASCII digits and fits in a `u64`: no sign, no space,
/// no other base.
fn parse_size(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > MAX_SIZE_DIGITS || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str) -> FilePath<'_> {
        path::validate(name.as_bytes()).unwrap()
    }

    fn one(input: &[u8]) -> Result<Command<'_>, ParseError> {
        match parse(input) {
            Status::Complete(parsed) => {
                assert_eq!(parsed.consumed, input.len(), "{input:?}");
                parsed.command
            }
            Status::Partial => panic!("partial: {input:?}"),
        }
    }

    #[test]
    fn partial_until_lf() {
        assert_eq!(parse(b""), Status::Partial);
        assert_eq!(parse(b"GET a"), Status::Partial);
        assert_eq!(parse(b"GET a\r"), Status::Partial);
    }

    #[test]
    fn verbs_are_case_insensitive_and_crlf_is_dropped() {
        assert_eq!(one(b"noop\n"), Ok(Command::Noop));
        assert_eq!(one(b"NoOp\r\n"), Ok(Command::Noop));
        assert_eq!(one(b"list\r\n"), Ok(Command::List { path: None }));
        assert_eq!(one(b"get a b\r\n"), Ok(Command::Get { name: n("a b") }));
    }

    #[test]
    fn pipelined_lines_are_taken_one_at_a_time() {
        let input = b"NOOP\nGET x\nLIS";
        let Status::Complete(first) = parse(input) else {
            panic!()
        };
        assert_eq!(first.command, Ok(Command::Noop));
        assert_eq!(first.consumed, 5);
        let Status::Complete(second) = parse(&input[5..]) else {
            panic!()
        };
        assert_eq!(second.command, Ok(Command::Get { name: n("x") }));
        assert_eq!(parse(&input[5 + second.consumed..]), Status::Partial);
    }

    #[test]
    fn name_is_the_rest_of_the_line() {
        assert_eq!(one(b"GET  lead\n"), Ok(Command::Get { name: n(" lead") }));
        assert_eq!(one(b"DEL trail \n"), Ok(Command::Del { name: n("trail ") }));
        assert_eq!(
            one(b"PUT 12 my file.txt\n"),
            Ok(Command::Put {
                size: 12,
                name: n("my file.txt")
            })
        );
    }

    #[test]
    fn auth_password_is_the_rest_of_the_line() {
        assert_eq!(
            one(b"AUTH bob pass word:x\n"),
            Ok(Command::Auth {
                user: b"bob",
                password: b"pass word:x"
            })
        );
        for bad in [&b"AUTH\n"[..], b"AUTH bob\n", b"AUTH bob \n", b"AUTH  pw\n"] {
            assert_eq!(
                one(bad),
                Err(ParseError::BadArguments(Verb::Auth)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sizes_are_plain_decimal() {
        assert_eq!(
            one(b"PUT 18446744073709551615 a\n"),
            Ok(Command::Put {
                size: u64::MAX,
                name: n("a")
            })
        );
        assert_eq!(
            one(b"PUT 007 a\n"),
            Ok(Command::Put {
                size: 7,
                name: n("a")
            })
        );
        for bad in [
            &b"PUT 18446744073709551616 a\n"[..],
            b"PUT 123456789012345678901 a\n",
            b"PUT -1 a\n",
            b"PUT +1 a\n",
            b"PUT 0x10 a\n",
            b"PUT abc a\n",
            b"PUT  a\n",
            b"PUT 10\n",
            b"PUT 10 \n",
            b"PUT\n",
        ] {
            assert_eq!(
                one(bad),
                Err(ParseError::BadArguments(Verb::Put)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn resume_and_integrity_commands() {
        assert_eq!(one(b"rest 0\n"), Ok(Command::Rest { offset: 0 }));
        assert_eq!(one(b"REST 0042\n"), Ok(Command::Rest { offset: 42 }));
        assert_eq!(one(b"HASH a b\n"), Ok(Command::Hash { name: n("a b") }));
        assert_eq!(one(b"partial x\n"), Ok(Command::Partial { name: n("x") }));
        let hex = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        let expect = format!("EXPECT SHA256={hex}\r\n");
        assert_eq!(
            one(expect.as_bytes()),
            Ok(Command::Expect {
                sha256: Digest::of(b"abc")
            })
        );
        for bad in [&b"REST\n"[..], b"REST \n", b"REST -1\n", b"REST 1 2\n"] {
            assert_eq!(one(bad), Err(ParseError::BadArguments(Verb::Rest)));
        }
        let short = format!("EXPECT sha256={}\n", &hex[1..]);
        let other = format!("EXPECT md5={hex}\n");
        let spaced = format!("EXPECT sha256= {hex}\n");
        for bad in [&b"EXPECT\n"[..], b"EXPECT sha256=\n", b"EXPECT x\n"]
            .into_iter()
            .chain([short.as_bytes(), other.as_bytes(), spaced.as_bytes()])
        {
            assert_eq!(one(bad), Err(ParseError::BadArguments(Verb::Expect)));
        }
        assert_eq!(
            one(b"HASH ../x\n"),
            Err(ParseError::NameNotAllowed(Verb::Hash))
        );
        assert_eq!(
            one(b"PARTIAL\n"),
            Err(ParseError::BadArguments(Verb::Partial))
        );
    }

    #[test]
    fn arguments_where_none_belong_are_refused() {
        assert_eq!(one(b"NOOP x\n"), Err(ParseError::BadArguments(Verb::Noop)));
        assert_eq!(one(b"LIST \n"), Err(ParseError::BadArguments(Verb::List)));
        assert_eq!(one(b"GET\n"), Err(ParseError::BadArguments(Verb::Get)));
        assert_eq!(one(b"GET \n"), Err(ParseError::BadArguments(Verb::Get)));
    }

    #[test]
    fn bad_names_are_refused_not_normalised() {
        for bad in [
            &b"GET ..\n"[..],
            b"GET ../x\n",
            b"VIEW a/../etc\n",
            b"DEL a\0b\n",
            b"GET a//b\n",
            b"LIST a/\n",
        ] {
            assert!(
                matches!(one(bad), Err(ParseError::NameNotAllowed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            one(b"PUT 1 a\rb\n"),
            Err(ParseError::NameNotAllowed(Verb::Put))
        );
        // A path beneath the user's root, leading `/` or not.
        assert_eq!(
            one(b"VIEW /etc/passwd\n"),
            Ok(Command::View {
                name: n("etc/passwd")
            })
        );
    }

    #[test]
    fn unknown_and_empty() {
        assert_eq!(one(b"\n"), Err(ParseError::EmptyLine));
        assert_eq!(one(b"\r\n"), Err(ParseError::EmptyLine));
        assert_eq!(one(b"RETR x\n"), Err(ParseError::UnknownCommand));
        assert_eq!(one(b" GET x\n"), Err(ParseError::UnknownCommand));
        assert_eq!(one(b"G\xc3\xa9T x\n"), Err(ParseError::UnknownCommand));
    }

    #[test]
    fn too_long_line() {
        let mut exact = vec![b'x'; MAX_LINE - 1];
        exact.push(b'\n');
        assert_eq!(one(&exact), Err(ParseError::UnknownCommand));

        let long = vec![b'x'; MAX_LINE + 10];
        let Status::Complete(parsed) = parse(&long) else {
            panic!()
        };
        assert_eq!(parsed.command, Err(ParseError::LineTooLong));
        assert_eq!(parsed.consumed, MAX_LINE);
        assert_eq!(parse(&long[..MAX_LINE - 1]), Status::Partial);
        assert_eq!(skip_line(b"xxxx\nNOOP\n"), Some(5));
        assert_eq!(skip_line(b"xxxx"), None);
    }

    #[test]
    fn formatting_round_trips() {
        let commands = [
            Command::Auth {
                user: b"bob",
                password: b"p w\r",
            },
            Command::List { path: None },
            Command::List {
                path: Some(n("a/b c")),
            },
            Command::Tree { path: None },
            Command::Mkdir { name: n("x/y") },
            Command::From { name: n("a") },
            Command::Replace,
            Command::Move { name: n("b") },
            Command::Copy { name: n("c") },
            Command::View { name: n("v") },
            Command::Get { name: n(" g ") },
            Command::Put {
                size: 0,
                name: n("p"),
            },
            Command::Put {
                size: u64::MAX,
                name: n("x y"),
            },
            Command::Del { name: n("d") },
            Command::Hash { name: n("h") },
            Command::Partial { name: n("p a") },
            Command::Rest { offset: 0 },
            Command::Rest { offset: u64::MAX },
            Command::Expect {
                sha256: Digest::of(b"x"),
            },
            Command::Noop,
            Command::Quit,
        ];
        for command in commands {
            let mut line = Vec::new();
            command.write_to(&mut line);
            assert_eq!(one(&line), Ok(command.clone()));
        }
    }
}
