//! A blocking client for the line protocol (`protocol.md`).
//!
//! The `ferry` command-line tool is built on this module, and so can any
//! program that wants to move files to and from a `ferryd`. It uses plain
//! `std::net` with timeouts: a client does one thing at a time, so it needs
//! no event loop.
//!
//! - [`Connection`]: one logged-in session, one method per command. It checks
//!   names and passwords before they reach the wire, so nothing a caller
//!   passes can turn into a second command line.
//! - [`transfer`]: whole-file uploads and downloads with resume and SHA-256
//!   verification, the way the `ferry` tool does them.
//! - [`tree`]: the same for many files (a folder and everything in it),
//!   pipelined over one connection.
//! - [`Error`]: what went wrong, sorted into the kinds a caller acts on
//!   differently (see [`ErrorKind`]).

mod folders;
mod tls;
pub mod transfer;
pub mod tree;

pub use tls::{Stream, TlsOptions};

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::integrity::{Digest, Hasher};
use crate::protocol::path as name;

pub use folders::Stat;

/// The size of the buffer for file data in both directions.
const CHUNK: usize = 256 * 1024;

/// A preview is at most this long (`protocol.md`).
const PREVIEW_MAX: u64 = 1024;

/// Longest reply line the client accepts; the server's are far shorter.
const MAX_REPLY: usize = 8192;

/// One reply line: the three-digit code and the text after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three digits (`226`).
    pub code: u16,
    /// What follows them and the space (`stored 6 sha256=...`).
    pub text: String,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// What kind of failure an [`Error`] is; each maps to its own exit code in
/// the `ferry` tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A local file could not be read or written.
    Local,
    /// The caller asked for something that cannot be sent (a name the
    /// protocol does not allow, a password with a line break).
    Usage,
    /// The server refused the login.
    Auth,
    /// The server refused or failed a command (no such file, name not
    /// allowed, quota, its own disk error).
    Remote,
    /// The connection failed, dropped, timed out, was closed by the server
    /// (`421`), or carried something that is not the protocol. Worth a retry.
    Network,
    /// The bytes that arrived are not the bytes that were sent.
    Checksum,
    /// The user stopped it.
    Cancelled,
}

/// A client error. Its `Display` names the file and quotes the server.
#[derive(Debug)]
pub enum Error {
    /// A local file operation failed.
    Local {
        /// The file or folder it was about.
        path: PathBuf,
        /// What failed.
        err: io::Error,
    },
    /// A request that cannot be put on the wire.
    Usage(String),
    /// `AUTH` was answered with this.
    Auth(Reply),
    /// The server answered a command about `name` with this error reply.
    Remote {
        /// The remote file the command named.
        name: String,
        /// The server's answer.
        reply: Reply,
    },
    /// Connecting, sending or receiving failed.
    Network(io::Error),
    /// The server closed the session with `421` (shutting down, timeout,
    /// too many connections, account removed).
    Closed(Reply),
    /// The server sent something the protocol does not allow.
    Protocol(String),
    /// The digest of the data does not match.
    Checksum {
        /// The remote file.
        name: String,
        /// What the bytes should hash to.
        expected: Digest,
        /// What they hash to.
        received: Digest,
    },
    /// The user stopped a transfer ([`Progress::cancelled`]). The session
    /// is mid-transfer, so it cannot be used any more; what moved is kept
    /// for a resume, as after a dropped connection.
    Cancelled,
}

impl Error {
    /// The class of the failure, which `ferry` turns into its exit status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Local { .. } => ErrorKind::Local,
            Error::Usage(_) => ErrorKind::Usage,
            Error::Auth(_) => ErrorKind::Auth,
            Error::Remote { .. } => ErrorKind::Remote,
            Error::Network(_) | Error::Closed(_) | Error::Protocol(_) => ErrorKind::Network,
            Error::Checksum { .. } => ErrorKind::Checksum,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// True for failures that a new connection may get past.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Network
    }

    pub(crate) fn local(path: impl Into<PathBuf>, err: io::Error) -> Error {
        Error::Local {
            path: path.into(),
            err,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Local { path, err } => write!(f, "{}: {err}", path.display()),
            Error::Usage(msg) => f.write_str(msg),
            Error::Auth(reply) => write!(f, "login refused: server said \"{reply}\""),
            Error::Remote { name, reply } => write!(f, "{name}: server said \"{reply}\""),
            Error::Network(err) => write!(f, "network: {err}"),
            Error::Closed(reply) => write!(f, "server closed the session: \"{reply}\""),
            Error::Protocol(msg) => write!(f, "protocol error: {msg}"),
            Error::Cancelled => f.write_str("interrupted; the next transfer of it resumes"),
            Error::Checksum {
                name,
                expected,
                received,
            } => write!(
                f,
                "{name}: checksum mismatch: expected sha256={expected}, received sha256={received}"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::Network(err)
    }
}

/// A client call's outcome.
pub type Result<T> = std::result::Result<T, Error>;

/// One line of `LIST` (or `TREE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file or folder name (in a `TREE`, its path relative to the
    /// listed folder), without a folder's final `/`.
    pub name: String,
    /// A folder (its line ended with `/`).
    pub folder: bool,
    /// Its size in bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
}

/// Where a transfer reports its progress.
pub trait Progress {
    /// The server agreed to the transfer: `bytes` will now move.
    fn announce(&mut self, _bytes: u64) {}
    /// `bytes` more have moved.
    fn advance(&mut self, bytes: u64);
    /// True when the user asked to stop (Ctrl-C in `ferry shell`): the
    /// transfer ends with [`Error::Cancelled`] at its next chunk.
    fn cancelled(&self) -> bool {
        false
    }
}

impl<F: FnMut(u64)> Progress for F {
    fn advance(&mut self, bytes: u64) {
        self(bytes)
    }
}

/// Timeouts for a [`Connection`].
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// How long connecting to one address may take.
    pub connect: Duration,
    /// How long any one read or write may wait. A `HASH` of a large file
    /// that the server has to read first takes a while, so keep this long.
    pub io: Duration,
    /// How long the greeting may take. A ferryd greets at once, even when
    /// it is busy; a server that says nothing is not one (an HTTP server
    /// waits for a request), so this is short where `io` is long.
    pub greeting: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            io: Duration::from_secs(120),
            greeting: GREETING_TIMEOUT,
        }
    }
}

/// The default [`Timeouts::greeting`].
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server that sent no greeting is given to answer a probe
/// line, so the error can say what it is.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A session with a `ferryd`, over one TCP connection (or, for tests and
/// fuzzing, any byte stream both ways).
pub struct Connection<S = TcpStream> {
    /// Reads are buffered; writes go straight through `get_mut`.
    stream: BufReader<S>,
    greeting: Reply,
}

impl Connection {
    /// Connects (trying each address `addr` resolves to) and reads the
    /// greeting.
    pub fn connect(addr: impl ToSocketAddrs, timeouts: Timeouts) -> Result<Connection> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeouts.connect) {
                Ok(stream) => return Connection::over(stream, timeouts),
                Err(err) => last = err,
            }
        }
        Err(Error::Network(last))
    }

    /// Starts a session on a TCP stream that is already connected. The
    /// greeting must come within `timeouts.greeting`; when it does not, the
    /// server is sent a probe line and the error says what answered (an
    /// HTTP server answers it with an HTTP status line).
    pub fn over(stream: TcpStream, timeouts: Timeouts) -> Result<Connection> {
        stream.set_read_timeout(Some(timeouts.greeting.min(timeouts.io)))?;
        stream.set_write_timeout(Some(timeouts.io))?;
        stream.set_nodelay(true)?;
        match Connection::on(stream.try_clone()?) {
            Ok(conn) => {
                stream.set_read_timeout(Some(timeouts.io))?;
                Ok(conn)
            }
            Err(Error::Network(err))
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Protocol(silent_server(stream, timeouts.greeting)))
            }
            Err(err) => Err(err),
        }
    }
}

/// What to say of a server that sent no greeting within `waited`: it is
/// sent a line that a ferryd, an HTTP server and most line protocols
/// answer, and the first line of its answer tells which it is.
fn silent_server(mut stream: TcpStream, waited: Duration) -> String {
    let silent = format!("not a ferry server: no greeting within {waited:?}");
    if stream.set_read_timeout(Some(PROBE_TIMEOUT)).is_err()
        || stream.write_all(b"QUIT\r\n\r\n").is_err()
    {
        return silent;
    }
    let mut first = Vec::new();
    let _ = BufReader::new(stream)
        .take(MAX_REPLY as u64)
        .read_until(b'\n', &mut first);
    describe_first_line(&first).map_or(silent, |what| {
        format!("not a ferry server (it answered like {what})")
    })
}

/// The protocol a first line of an answer belongs to, when it is one that
/// is often pointed at by mistake.
fn describe_first_line(line: &[u8]) -> Option<&'static str> {
    if line.starts_with(b"HTTP/") {
        Some("HTTP")
    } else if line.starts_with(b"SSH-") {
        Some("SSH")
    } else if line.starts_with(b"\x15\x03") || line.starts_with(b"\x16\x03") {
        Some("TLS")
    } else if line.is_empty() {
        None
    } else {
        Some("another protocol")
    }
}

impl<S: Read + Write> Connection<S> {
    /// The same session over `wrap(stream)`; only right after the
    /// greeting, while nothing else is buffered.
    fn map_stream<T: Read + Write>(self, wrap: impl FnOnce(S) -> T) -> Result<Connection<T>> {
        if !self.stream.buffer().is_empty() {
            return Err(Error::Protocol(
                "the server sent more than its greeting".to_owned(),
            ));
        }
        Ok(Connection {
            stream: BufReader::with_capacity(CHUNK, wrap(self.stream.into_inner())),
            greeting: self.greeting,
        })
    }

    /// Starts a session on any byte stream: reads the greeting.
    pub fn on(stream: S) -> Result<Connection<S>> {
        let mut conn = Connection {
            stream: BufReader::with_capacity(CHUNK, stream),
            greeting: Reply {
                code: 0,
                text: String::new(),
            },
        };
        let line = conn.read_line()?;
        let Some(greeting) = parse_reply(&line) else {
            let what = describe_first_line(&line).unwrap_or("another protocol");
            return Err(Error::Protocol(format!(
                "not a ferry server (it answered like {what})"
            )));
        };
        match greeting.code {
            220 => {}
            421 => return Err(Error::Closed(greeting)),
            _ => {
                return Err(Error::Protocol(format!(
                    "unexpected greeting \"{greeting}\""
                )));
            }
        }
        conn.greeting = greeting;
        Ok(conn)
    }

    /// The stream underneath, for a test to look at what was sent. Writing
    /// to it puts the session out of step.
    pub fn get_mut(&mut self) -> &mut S {
        self.stream.get_mut()
    }

    /// The server's `220` line.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// `AUTH`: logs in, or fails with [`Error::Auth`]. An empty password
    /// asks for a login by the TLS client certificate (`AUTH USER`).
    pub fn login(&mut self, user: &str, password: &str) -> Result<()> {
        if user.is_empty() || user.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::Usage(format!("user name {user:?} cannot be sent")));
        }
        if password.bytes().any(|b| b == b'\n' || b == b'\r') {
            return Err(Error::Usage("the password holds a line break".to_string()));
        }
        // No password: a login by the TLS client certificate.
        let reply = if password.is_empty() {
            self.command(&format!("AUTH {user}"))?
        } else {
            self.command(&format!("AUTH {user} {password}"))?
        };
        match reply.code {
            230 => Ok(()),
            530 => Err(Error::Auth(reply)),
            _ => Err(unexpected("AUTH", reply)),
        }
    }

    /// Sends one command line and reads its reply. `421` becomes
    /// [`Error::Closed`]; other codes are the caller's to judge.
    pub fn command(&mut self, line: &str) -> Result<Reply> {
        debug_assert!(!line.contains('\n'));
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&bytes)?;
        let reply = self.read_reply()?;
        if reply.code == 421 {
            return Err(Error::Closed(reply));
        }
        Ok(reply)
    }

    /// `LIST`, parsed, in the order the server sent (directory order).
    /// The reply is a series of `150 <n>` blocks of whole lines, ended by
    /// `150 0`.
    pub fn list(&mut self) -> Result<Vec<Entry>> {
        self.listing("LIST")
    }

    /// A `LIST` or `TREE` command line, its blocks read and parsed.
    fn listing(&mut self, line: &str) -> Result<Vec<Entry>> {
        let mut reply = self.command(line)?;
        if reply.code != 150 {
            return Err(remote_or_unexpected(line, reply));
        }
        let mut entries = Vec::new();
        loop {
            let n = data_size("LIST", &reply)?;
            if n == 0 {
                return Ok(entries);
            }
            let mut data = Vec::new();
            self.read_data(n, &mut data, &mut |_| {})
                .map_err(|e| e.into_error(PathBuf::new()))?;
            let text = String::from_utf8(data)
                .map_err(|_| Error::Protocol("LIST data is not UTF-8".to_string()))?;
            if !text.ends_with('\n') {
                return Err(Error::Protocol(
                    "LIST block does not end with a line break".to_string(),
                ));
            }
            for line in text.split_terminator('\n') {
                entries.push(parse_entry(line)?);
            }
            reply = self.read_reply()?;
            if reply.code == 421 {
                return Err(Error::Closed(reply));
            }
        }
    }

    /// `VIEW`: the first (up to) 1024 bytes of `name`.
    pub fn view(&mut self, name: &str) -> Result<Vec<u8>> {
        check_name(name)?;
        let reply = self.command(&format!("VIEW {name}"))?;
        let n = expect_data(name, reply)?;
        if n > PREVIEW_MAX {
            return Err(Error::Protocol(format!(
                "VIEW announced {n} bytes, more than {PREVIEW_MAX}"
            )));
        }
        let mut data = Vec::new();
        self.read_data(n, &mut data, &mut |_| {})
            .map_err(|e| e.into_error(PathBuf::new()))?;
        Ok(data)
    }

    /// `HASH`: the server's SHA-256 of `name`.
    pub fn hash(&mut self, name: &str) -> Result<Digest> {
        check_name(name)?;
        let reply = self.command(&format!("HASH {name}"))?;
        if reply.code != 213 {
            return Err(remote_or_unexpected(name, reply));
        }
        reply
            .text
            .strip_prefix("sha256=")
            .and_then(|hex| Digest::from_hex(hex.as_bytes()))
            .ok_or_else(|| unexpected("HASH", reply.clone()))
    }

    /// `PARTIAL`: bytes the server holds of an interrupted upload of `name`.
    pub fn partial(&mut self, name: &str) -> Result<u64> {
        check_name(name)?;
        let reply = self.command(&format!("PARTIAL {name}"))?;
        if reply.code != 213 {
            return Err(remote_or_unexpected(name, reply));
        }
        reply
            .text
            .parse()
            .map_err(|_| unexpected("PARTIAL", reply.clone()))
    }

    /// `DEL`.
    pub fn delete(&mut self, name: &str) -> Result<()> {
        check_name(name)?;
        let reply = self.command(&format!("DEL {name}"))?;
        match reply.code {
            250 => Ok(()),
            _ => Err(remote_or_unexpected(name, reply)),
        }
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<()> {
        let reply = self.command("NOOP")?;
        match reply.code {
            200 => Ok(()),
            _ => Err(unexpected("NOOP", reply)),
        }
    }

    /// `QUIT`, then the connection is gone.
    pub fn quit(mut self) -> Result<()> {
        let reply = self.command("QUIT")?;
        match reply.code {
            221 => Ok(()),
            _ => Err(unexpected("QUIT", reply)),
        }
    }

    /// Downloads `name` from byte `offset` (`REST`, when not 0) into `sink`,
    /// hashing what it writes into `hasher`. Returns the bytes received.
    ///
    /// When the transfer breaks, the bytes that arrived are all in `sink`
    /// (a caller can resume from there) and the error says what broke.
    pub fn get(
        &mut self,
        name: &str,
        offset: u64,
        sink: &mut dyn Write,
        sink_path: &Path,
        hasher: &mut Hasher,
        progress: &mut dyn Progress,
    ) -> Result<u64> {
        check_name(name)?;
        if offset > 0 {
            let reply = self.command(&format!("REST {offset}"))?;
            if reply.code != 350 {
                return Err(remote_or_unexpected(name, reply));
            }
        }
        let reply = self.command(&format!("GET {name}"))?;
        let n = expect_data(name, reply)?;
        progress.announce(n);
        let mut hashing = HashingWriter { sink, hasher };
        self.read_data(n, &mut hashing, progress)
            .map_err(|e| e.into_error(sink_path.to_path_buf()))?;
        Ok(n)
    }

    /// Uploads `size` bytes from `source` as `name` with `PUT`, starting at
    /// byte `offset` of the file (`REST`, continuing the server's partial,
    /// when `offset` is not 0; `source` must then be positioned there).
    /// With `expect`, the server checks the whole file's digest (`EXPECT`)
    /// and keeps nothing on a mismatch. Every byte sent is also fed to
    /// `hasher`. Returns the digest from the server's `226`.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        name: &str,
        size: u64,
        offset: u64,
        source: &mut dyn Read,
        source_path: &Path,
        expect: Option<Digest>,
        hasher: &mut Hasher,
        progress: &mut dyn Progress,
    ) -> Result<Digest> {
        check_name(name)?;
        if offset > size {
            return Err(Error::Usage(format!(
                "{name}: cannot continue at {offset}, past the size {size}"
            )));
        }
        if let Some(digest) = expect {
            let reply = self.command(&format!("EXPECT sha256={digest}"))?;
            if reply.code != 200 {
                return Err(unexpected("EXPECT", reply));
            }
        }
        if offset > 0 {
            let reply = self.command(&format!("REST {offset}"))?;
            if reply.code != 350 {
                return Err(remote_or_unexpected(name, reply));
            }
        }
        let reply = self.command(&format!("PUT {size} {name}"))?;
        let announced = expect_data(name, reply)?;
        if announced != size - offset {
            return Err(Error::Protocol(format!(
                "PUT of {} bytes answered 150 {announced}",
                size - offset
            )));
        }
        progress.announce(announced);
        self.send_payload(announced, source, source_path, hasher, progress)?;
        let reply = self.read_reply()?;
        match reply.code {
            226 => stored_digest(size, &reply).ok_or_else(|| unexpected("PUT", reply.clone())),
            421 => Err(Error::Closed(reply)),
            _ => Err(remote_or_unexpected(name, reply)),
        }
    }

    /// Sends the `n` payload bytes of a `PUT` that the server answered
    /// `150 <n>`, reading them from `source` and feeding them to `hasher`.
    fn send_payload(
        &mut self,
        n: u64,
        source: &mut dyn Read,
        source_path: &Path,
        hasher: &mut Hasher,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let mut buf = vec![0; CHUNK.min(n.try_into().unwrap_or(CHUNK))];
        let mut left = n;
        while left > 0 {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let want = left.min(CHUNK as u64) as usize;
            let got = source
                .read(&mut buf[..want])
                .map_err(|e| Error::local(source_path, e))?;
            if got == 0 {
                // The file shrank while it was being sent. Stopping here
                // (the caller drops the connection) leaves the server a
                // partial and the old version of the file in place.
                return Err(Error::local(
                    source_path,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file got shorter while it was being sent",
                    ),
                ));
            }
            hasher.update(&buf[..got]);
            self.stream.get_mut().write_all(&buf[..got])?;
            left -= got as u64;
            progress.advance(got as u64);
        }
        Ok(())
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let line = self.read_line()?;
        parse_reply(&line).ok_or_else(|| {
            Error::Protocol(format!(
                "malformed reply {:?}",
                String::from_utf8_lossy(&line)
            ))
        })
    }

    /// One line from the server, without its line end.
    fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = (&mut self.stream)
            .take(MAX_REPLY as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(Error::Network(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        if line.last() != Some(&b'\n') {
            return Err(if n >= MAX_REPLY {
                Error::Protocol("reply line too long".to_string())
            } else {
                Error::Network(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection in the middle of a reply",
                ))
            });
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }

    /// Reads exactly `n` data bytes into `sink`.
    fn read_data(
        &mut self,
        n: u64,
        sink: &mut dyn Write,
        progress: &mut dyn Progress,
    ) -> std::result::Result<(), DataError> {
        let mut left = n;
        while left > 0 {
            if progress.cancelled() {
                return Err(DataError::Cancelled);
            }
            let chunk = match self.stream.fill_buf() {
                Ok([]) => {
                    return Err(DataError::Network(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the connection closed after {} of {n} bytes", n - left),
                    )));
                }
                Ok(chunk) => chunk,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(DataError::Network(err)),
            };
            let take = chunk.len().min(left.min(usize::MAX as u64) as usize);
            sink.write_all(&chunk[..take]).map_err(DataError::Local)?;
            self.stream.consume(take);
            left -= take as u64;
            progress.advance(take as u64);
        }
        Ok(())
    }
}

/// A failure while reading data: the socket's or the sink's.
enum DataError {
    Network(io::Error),
    Local(io::Error),
    Cancelled,
}

impl DataError {
    fn into_error(self, path: PathBuf) -> Error {
        match self {
            DataError::Network(err) => Error::Network(err),
            DataError::Local(err) => Error::Local { path, err },
            DataError::Cancelled => Error::Cancelled,
        }
    }
}

/// Writes through to a sink and hashes what it wrote.
struct HashingWriter<'a> {
    sink: &'a mut dyn Write,
    hasher: &'a mut Hasher,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sink.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// Refuses a name the server would refuse anyway, and above all one that
/// would end the command line early.
pub fn check_name(name: &str) -> Result<()> {
    if name::is_valid(name) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{name:?}: not a path the server allows (names of 1 to 255 bytes joined by '/', no control characters, no . or .. or empty name)"
        )))
    }
}

/// `NNN text`, three digits and a space (the text may be empty).
fn parse_reply(line: &[u8]) -> Option<Reply> {
    let text = std::str::from_utf8(line).ok()?;
    let (code, rest) = text.split_at_checked(3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = match rest {
        "" => "",
        _ => rest.strip_prefix(' ')?,
    };
    Some(Reply {
        code: code.parse().ok()?,
        text: rest.to_string(),
    })
}

fn parse_entry(line: &str) -> Result<Entry> {
    let bad = || Error::Protocol(format!("malformed LIST line {line:?}"));
    let (size, rest) = line.split_once(' ').ok_or_else(bad)?;
    let (mtime, name) = rest.split_once(' ').ok_or_else(bad)?;
    let (name, folder) = match name.strip_suffix('/') {
        Some(folder) => (folder, true),
        None => (name, false),
    };
    // A name the server could never have stored, and one that could carry
    // terminal escapes to whoever reads the listing.
    if !name::is_valid(name) {
        return Err(bad());
    }
    Ok(Entry {
        name: name.to_string(),
        folder,
        size: size.parse().map_err(|_| bad())?,
        mtime: mtime.parse().map_err(|_| bad())?,
    })
}

/// The `<n>` of a `150 <n>`, or the error the reply stands for.
fn expect_data(name: &str, reply: Reply) -> Result<u64> {
    if reply.code == 150 {
        data_size(name, &reply)
    } else {
        Err(remote_or_unexpected(name, reply))
    }
}

fn data_size(what: &str, reply: &Reply) -> Result<u64> {
    if reply.code != 150 {
        return Err(unexpected(what, reply.clone()));
    }
    reply
        .text
        .parse()
        .map_err(|_| unexpected(what, reply.clone()))
}

/// The digest in `226 stored <size> sha256=<hex>`, when the size is right.
fn stored_digest(size: u64, reply: &Reply) -> Option<Digest> {
    let rest = reply.text.strip_prefix("stored ")?;
    let (stored, hex) = rest.split_once(" sha256=")?;
    if stored.parse::<u64>().ok()? != size {
        return None;
    }
    Digest::from_hex(hex.as_bytes())
}

/// Error replies (4xx/5xx) are the server refusing something about `name`;
/// anything else is a reply the command cannot have.
fn remote_or_unexpected(name: &str, reply: Reply) -> Error {
    match reply.code {
        421 => Error::Closed(reply),
        400..=599 => Error::Remote {
            name: name.to_string(),
            reply,
        },
        _ => unexpected(name, reply),
    }
}

fn unexpected(what: &str, reply: Reply) -> Error {
    Error::Protocol(format!("unexpected reply to {what}: \"{reply}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_as_the_protocol_writes_them() {
        assert_eq!(
            parse_reply(b"226 stored 6 sha256=ab"),
            Some(Reply {
                code: 226,
                text: "stored 6 sha256=ab".into()
            })
        );
        assert_eq!(parse_reply(b"200").map(|r| r.code), Some(200));
        for bad in [&b"20 ok"[..], b"abc ok", b"200ok", b"", b"2001 x"] {
            assert_eq!(parse_reply(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn list_lines_keep_spaces_in_names() {
        let entry = parse_entry("12 1763700000  two  spaces ").unwrap();
        assert_eq!(entry.name, " two  spaces ");
        assert_eq!((entry.size, entry.mtime), (12, 1763700000));
        assert!(parse_entry("12 x name").is_err());
        assert!(parse_entry("12").is_err());
        assert!(parse_entry("1 2 \r").is_err());
        assert!(parse_entry("1 2 \x1b[2J").is_err());
        assert!(parse_entry("1 2 ..").is_err());
    }

    #[test]
    fn stored_digest_checks_the_size() {
        let digest = Digest::of(b"hello\n");
        let reply = Reply {
            code: 226,
            text: format!("stored 6 sha256={digest}"),
        };
        assert_eq!(stored_digest(6, &reply), Some(digest));
        assert_eq!(stored_digest(7, &reply), None);
    }

    #[test]
    fn names_that_would_break_the_line_are_refused_before_sending() {
        for bad in ["a\nDEL b", "a\r", "", ".", "..", "x//y", "x/../y", "x/"] {
            assert_eq!(check_name(bad).unwrap_err().kind(), ErrorKind::Usage);
        }
        check_name("my file.txt").unwrap();
        check_name("my folder/my file.txt").unwrap();
    }
}
