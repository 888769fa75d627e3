//! Every reply the line protocol sends, in its exact wire form. Which
//! reply an error of another layer becomes is decided in the session's
//! table (`session/replies.rs`).

use std::io;

use super::line::{SHA256_PREFIX, Verb};
use crate::integrity::Digest;

/// A reply line. [`Reply::write_to`] gives its exact wire form.
#[derive(Debug)]
pub enum Reply {
    /// `220`: the greeting sent on connect.
    Greeting,
    /// `150 <n>`: `n` raw bytes follow (download) or are expected (upload).
    Data(u64),
    /// `200`: `NOOP`.
    Ok,
    /// `221`: `QUIT`; the server closes the connection.
    Bye,
    /// `200 healthy`: `HEALTH`, this server takes new clients.
    Healthy,
    /// `451 unhealthy: <why>`: `HEALTH`, it should not get new clients
    /// (draining, storage not writable); the session goes on.
    Unhealthy(String),
    /// `226 stored <size> sha256=<hex>`: an upload is complete and in place.
    Stored { size: u64, sha256: Digest },
    /// `213 sha256=<hex>`: `HASH`.
    Sha256(Digest),
    /// `213 <n>`: `PARTIAL`, the bytes held of an interrupted upload.
    PartialHeld(u64),
    /// `350`: `REST` accepted for the next `GET` or `PUT`.
    RestartAt(u64),
    /// `200`: `EXPECT` accepted for the next `PUT`.
    Expecting(Digest),
    /// `451`: the upload's digest is not the one `EXPECT` announced; it was
    /// discarded.
    ChecksumMismatch { expected: Digest, received: Digest },
    /// `501`: `REST` beyond the end of the file to download.
    OffsetPastEnd { offset: u64, size: u64 },
    /// `501`: `REST` beyond the bytes held of the upload to continue.
    OffsetPastHeld { offset: u64, held: u64 },
    /// `230`: `AUTH` succeeded.
    LoggedIn,
    /// `250`: `DEL` succeeded.
    Deleted,
    /// `421`: the server is shutting down and closes the connection.
    ShuttingDown,
    /// `421`: a timeout ran out; the server closes the connection.
    Timeout,
    /// `421`: the logged-in user was removed by a reload of the users.
    AccountRemoved,
    /// `421`: a connection limit was reached; sent instead of the greeting.
    TooManyConnections,
    /// `421`: too many password checks wait (from this address or in
    /// all); try again later.
    LoginsBusy,
    /// `421`: the server has no file descriptor free for what was asked
    /// (another process may share its limit); try again later.
    OutOfDescriptors,
    /// `451`: a local I/O failure; nothing was changed.
    LocalError(io::Error),
    /// `500`: the first word is not a verb.
    UnknownCommand,
    /// `500`: an empty line.
    EmptyLine,
    /// `500`: a line over the length limit.
    LineTooLong,
    /// `501`: bad arguments for the verb.
    BadArguments(Verb),
    /// `503`: `AUTH` on a logged-in session.
    AlreadyLoggedIn,
    /// `530`: a file command before `AUTH`.
    NotLoggedIn,
    /// `530`: wrong user or password.
    LoginIncorrect,
    /// `530`: the last allowed failed `AUTH`; the server closes the connection.
    TooManyFailures,
    /// `530`: a login over plaintext from a non-loopback address under
    /// `--require-tls`.
    TlsRequired,
    /// `550`: no such file.
    NoSuchFile,
    /// `550`: the name exists but is not a regular file.
    NotRegularFile,
    /// `552`: the upload is larger than the server allows.
    TooLarge { max: u64 },
    /// `552`: the upload would take the user over their byte quota.
    QuotaBytes { quota: u64 },
    /// `552`: the upload would take the user over their file count.
    QuotaFiles { max: u64 },
    /// `553`: the file name breaks the rules.
    NameNotAllowed,
    /// `257 created`: `MKDIR`.
    Created,
    /// `250 removed`: `RMDIR`, `RMTREE`.
    Removed,
    /// `250 moved`: `MOVE`.
    Moved,
    /// `250 copied <size> sha256=<hex>`: `COPY` of a file.
    Copied { size: u64, sha256: Digest },
    /// `250 copied <files> files, <size> bytes`: `COPY` of a folder.
    CopiedFolder { files: u64, size: u64 },
    /// `350 ready for MOVE or COPY`: `FROM`. (The path is not echoed: a
    /// reply stays one short line, whatever the client sent.)
    From,
    /// `200 replacing`: `REPLACE`.
    Replacing,
    /// `213 type=...`: `STAT`.
    Stat {
        folder: bool,
        size: u64,
        mtime: i64,
        sha256: Option<Digest>,
    },
    /// `503`: `MOVE` or `COPY` without `FROM`.
    NeedFrom,
    /// `550`: a folder of the path does not exist.
    NoSuchFolder,
    /// `550`: a folder where a file is needed.
    IsFolder,
    /// `550`: a file where a folder is needed.
    NotFolder,
    /// `550`: the folder is not empty.
    NotEmpty,
    /// `550`: the path exists and may not be replaced.
    Exists,
    /// `553`: a folder moved or copied into itself.
    IntoItself,
    /// `553`: a move or copy onto its own source.
    SamePath,
    /// `550`: a WebDAV lock holds what the command would change.
    Locked,
}

impl Reply {
    pub fn code(&self) -> u16 {
        match self {
            Reply::Data(_) => 150,
            Reply::Ok | Reply::Expecting(_) | Reply::Replacing | Reply::Healthy => 200,
            Reply::Sha256(_) | Reply::PartialHeld(_) | Reply::Stat { .. } => 213,
            Reply::RestartAt(_) | Reply::From => 350,
            Reply::Created => 257,
            Reply::Removed | Reply::Moved | Reply::Copied { .. } | Reply::CopiedFolder { .. } => {
                250
            }
            Reply::NeedFrom => 503,
            Reply::NoSuchFolder
            | Reply::IsFolder
            | Reply::NotFolder
            | Reply::NotEmpty
            | Reply::Exists
            | Reply::Locked => 550,
            Reply::IntoItself | Reply::SamePath => 553,
            Reply::Greeting => 220,
            Reply::Bye => 221,
            Reply::Stored { .. } => 226,
            Reply::LoggedIn => 230,
            Reply::Deleted => 250,
            Reply::ShuttingDown
            | Reply::Timeout
            | Reply::TooManyConnections
            | Reply::LoginsBusy
            | Reply::OutOfDescriptors
            | Reply::AccountRemoved => 421,
            Reply::LocalError(_) | Reply::ChecksumMismatch { .. } | Reply::Unhealthy(_) => 451,
            Reply::UnknownCommand | Reply::EmptyLine | Reply::LineTooLong => 500,
            Reply::BadArguments(_) | Reply::OffsetPastEnd { .. } | Reply::OffsetPastHeld { .. } => {
                501
            }
            Reply::AlreadyLoggedIn => 503,
            Reply::NotLoggedIn
            | Reply::LoginIncorrect
            | Reply::TooManyFailures
            | Reply::TlsRequired => 530,
            Reply::NoSuchFile | Reply::NotRegularFile => 550,
            Reply::TooLarge { .. } | Reply::QuotaBytes { .. } | Reply::QuotaFiles { .. } => 552,
            Reply::NameNotAllowed => 553,
        }
    }

    /// Appends the reply as one `NNN text\r\n` line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let code = self.code();
        // Writing into a Vec cannot fail.
        let _ = match self {
            Reply::Greeting => write!(
                out,
                "{code} ferry {} ready; HELP lists the commands",
                env!("CARGO_PKG_VERSION")
            ),
            Reply::Data(n) => write!(out, "{code} {n}"),
            Reply::Ok => write!(out, "{code} ok"),
            Reply::Bye => write!(out, "{code} bye"),
            Reply::Healthy => write!(out, "{code} healthy"),
            Reply::Unhealthy(why) => write!(out, "{code} unhealthy: {why}"),
            Reply::Stored { size, sha256 } => {
                write!(out, "{code} stored {size} {SHA256_PREFIX}{sha256}")
            }
            Reply::Sha256(sha256) => write!(out, "{code} {SHA256_PREFIX}{sha256}"),
            Reply::PartialHeld(n) => write!(out, "{code} {n}"),
            Reply::RestartAt(offset) => write!(out, "{code} restarting at {offset}"),
            Reply::Expecting(sha256) => write!(out, "{code} expecting {SHA256_PREFIX}{sha256}"),
            Reply::ChecksumMismatch { expected, received } => write!(
                out,
                "{code} checksum mismatch: expected {SHA256_PREFIX}{expected}, \
                 received {SHA256_PREFIX}{received}; upload discarded"
            ),
            Reply::OffsetPastEnd { offset, size } => write!(
                out,
                "{code} offset {offset} is past the end of the file ({size} bytes)"
            ),
            Reply::OffsetPastHeld { offset, held } => write!(
                out,
                "{code} offset {offset} is past the {held} bytes held for this upload"
            ),
            Reply::LoggedIn => write!(out, "{code} logged in"),
            Reply::Deleted => write!(out, "{code} deleted"),
            Reply::ShuttingDown => write!(out, "{code} server shutting down"),
            Reply::Timeout => write!(out, "{code} timeout"),
            Reply::AccountRemoved => write!(out, "{code} account removed"),
            Reply::TooManyConnections => write!(out, "{code} too many connections"),
            Reply::LoginsBusy => write!(out, "{code} too many logins waiting, try again later"),
            Reply::OutOfDescriptors => write!(out, "{code} {OUT_OF_DESCRIPTORS}"),
            Reply::LocalError(err) => write!(out, "{code} local error: {}", describe_io(err)),
            Reply::UnknownCommand => write!(out, "{code} unknown command"),
            Reply::EmptyLine => write!(out, "{code} empty line"),
            Reply::LineTooLong => write!(out, "{code} line too long"),
            Reply::BadArguments(verb) => write!(out, "{code} usage: {}", usage(*verb)),
            Reply::AlreadyLoggedIn => write!(out, "{code} already logged in"),
            Reply::NotLoggedIn => write!(out, "{code} not logged in"),
            Reply::LoginIncorrect => write!(out, "{code} login incorrect"),
            Reply::TooManyFailures => write!(out, "{code} login incorrect, too many failures"),
            Reply::TlsRequired => write!(
                out,
                "{code} TLS required: this server logs in from other hosts over TLS only"
            ),
            Reply::NoSuchFile => write!(out, "{code} no such file"),
            Reply::NotRegularFile => write!(out, "{code} not a regular file"),
            Reply::TooLarge { max } => write!(out, "{code} file too large (maximum {max} bytes)"),
            Reply::QuotaBytes { quota } => {
                write!(
                    out,
                    "{code} quota exceeded (at most {quota} bytes per user)"
                )
            }
            Reply::QuotaFiles { max } => {
                write!(out, "{code} quota exceeded (at most {max} files per user)")
            }
            Reply::NameNotAllowed => write!(out, "{code} file name not allowed"),
            Reply::Created => write!(out, "{code} created"),
            Reply::Removed => write!(out, "{code} removed"),
            Reply::Moved => write!(out, "{code} moved"),
            Reply::Copied { size, sha256 } => {
                write!(out, "{code} copied {size} {SHA256_PREFIX}{sha256}")
            }
            Reply::CopiedFolder { files, size } => {
                write!(out, "{code} copied {files} files, {size} bytes")
            }
            Reply::From => write!(out, "{code} ready for MOVE or COPY"),
            Reply::Replacing => write!(out, "{code} replacing"),
            Reply::Stat {
                folder: true,
                mtime,
                ..
            } => write!(out, "{code} type=folder mtime={mtime}"),
            Reply::Stat {
                size,
                mtime,
                sha256,
                ..
            } => {
                let _ = write!(out, "{code} type=file size={size} mtime={mtime}");
                match sha256 {
                    Some(sha256) => write!(out, " {SHA256_PREFIX}{sha256}"),
                    None => Ok(()),
                }
            }
            Reply::NeedFrom => write!(out, "{code} send FROM first"),
            Reply::NoSuchFolder => write!(out, "{code} no such folder"),
            Reply::IsFolder => write!(out, "{code} is a folder"),
            Reply::NotFolder => write!(out, "{code} not a folder"),
            Reply::NotEmpty => write!(out, "{code} folder not empty"),
            Reply::Exists => write!(out, "{code} already exists"),
            Reply::IntoItself => write!(out, "{code} cannot move or copy a folder into itself"),
            Reply::SamePath => write!(out, "{code} source and destination are the same"),
            Reply::Locked => write!(out, "{code} locked (a WebDAV lock holds it)"),
        };
        out.extend_from_slice(b"\r\n");
    }
}

/// The words of a refusal for lack of descriptors, on either front.
pub(crate) const OUT_OF_DESCRIPTORS: &str = "out of file descriptors, try again later";

fn usage(verb: Verb) -> &'static str {
    match verb {
        Verb::Auth => "AUTH <user> <password>",
        Verb::List => "LIST [<path>]",
        Verb::Tree => "TREE [<path>]",
        Verb::View => "VIEW <path>",
        Verb::Get => "GET <path>",
        Verb::Put => "PUT <size> <path>",
        Verb::Del => "DEL <path>",
        Verb::Hash => "HASH <path>",
        Verb::Partial => "PARTIAL <path>",
        Verb::Stat => "STAT <path>",
        Verb::Mkdir => "MKDIR <path>",
        Verb::Rmdir => "RMDIR <path>",
        Verb::Rmtree => "RMTREE <path>",
        Verb::From => "FROM <path>",
        Verb::Replace => "REPLACE",
        Verb::Move => "MOVE <path>",
        Verb::Copy => "COPY <path>",
        Verb::Rest => "REST <offset>",
        Verb::Health => "HEALTH",
        Verb::Expect => "EXPECT sha256=<64 hex digits>",
        Verb::Noop => "NOOP",
        Verb::Help => "HELP",
        Verb::Quit => "QUIT",
    }
}

/// A short, path-free description of an I/O failure for the client: the
/// client learns what kind of trouble it is, never where on the server.
pub(crate) fn describe_io(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOSPC) => "disk full",
        Some(libc::EDQUOT) => "disk quota exceeded",
        Some(libc::EROFS) => "read-only file system",
        Some(libc::EACCES) | Some(libc::EPERM) => "permission denied",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too many open files",
        Some(libc::EIO) => "i/o error",
        _ if err.kind() == io::ErrorKind::UnexpectedEof => "file changed while reading",
        _ => "i/o error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(reply: Reply) -> String {
        let mut out = Vec::new();
        reply.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exact_tokens() {
        assert_eq!(line(Reply::Data(42)), "150 42\r\n");
        let abc = Digest::of(b"abc");
        assert_eq!(
            line(Reply::Stored {
                size: 7,
                sha256: abc
            }),
            format!("226 stored 7 sha256={abc}\r\n")
        );
        assert_eq!(line(Reply::Sha256(abc)), format!("213 sha256={abc}\r\n"));
        assert_eq!(line(Reply::PartialHeld(9)), "213 9\r\n");
        assert_eq!(line(Reply::RestartAt(9)), "350 restarting at 9\r\n");
        assert_eq!(line(Reply::ShuttingDown), "421 server shutting down\r\n");
        assert_eq!(
            line(Reply::LocalError(io::Error::from_raw_os_error(
                libc::ENOSPC
            ))),
            "451 local error: disk full\r\n"
        );
    }

    #[test]
    fn every_reply_is_one_well_formed_line() {
        let replies = [
            Reply::Greeting,
            Reply::BadArguments(Verb::Put),
            Reply::TooLarge { max: 10 },
            Reply::TooManyFailures,
            Reply::ChecksumMismatch {
                expected: Digest::of(b"a"),
                received: Digest::of(b"b"),
            },
            Reply::OffsetPastEnd { offset: 5, size: 4 },
            Reply::OffsetPastHeld { offset: 5, held: 4 },
        ];
        for reply in replies {
            let text = line(reply);
            let bytes = text.as_bytes();
            assert!(bytes[..3].iter().all(u8::is_ascii_digit), "{text:?}");
            assert_eq!(bytes[3], b' ');
            assert!(text.ends_with("\r\n"));
            assert_eq!(text.matches('\n').count(), 1);
        }
    }
}
