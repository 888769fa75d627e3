//! One blocking client per protocol, all with the same four operations, so a
//! scenario drives ferryd and its peers through the same code.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;

/// How long a read may wait for the server, in seconds (`--timeout`).
pub static READ_TIMEOUT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(120);

/// Bytes of read buffer per connection. Large enough that a 1 GiB download
/// is not bounded by the number of `read` calls the client makes.
const READ_BUF: usize = 256 * 1024;

/// The repeating content every file and upload is made of: byte `i` of a
/// file is `PATTERN[i % len]`, so any part of a file can be checked cheaply.
pub fn pattern() -> Vec<u8> {
    (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Line,
    Http,
    Ftp,
}

impl Proto {
    pub fn parse(s: &str) -> Proto {
        match s {
            "line" => Proto::Line,
            "http" => Proto::Http,
            "ftp" => Proto::Ftp,
            _ => crate::die(&format!("unknown --proto {s} (line, http, ftp)")),
        }
    }
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub proto: Proto,
    pub addr: SocketAddr,
    pub user: String,
    pub pass: String,
    /// HTTP: the path files live under (`/files/` for ferryd, `/` for nginx);
    /// FTP: the directory prefix (`pub/`).
    pub prefix: String,
}

/// A logged-in session of any protocol.
pub enum Client {
    Line(Conn),
    Http(Conn, String, String),
    Ftp(Conn, String),
}

/// A socket with a read buffer in front of it.
pub struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let secs = READ_TIMEOUT.load(std::sync::atomic::Ordering::Relaxed);
        s.set_read_timeout(Some(Duration::from_secs(secs)))?;
        Ok(Conn {
            r: BufReader::with_capacity(READ_BUF, s),
        })
    }
    /// One command, one `write`: a line split over several segments would
    /// measure Nagle and the server's partial-line path, not the command.
    fn send(&mut self, line: &str) -> io::Result<()> {
        self.w().write_all(line.as_bytes())
    }
    fn w(&mut self) -> &mut TcpStream {
        self.r.get_mut()
    }
    fn line(&mut self) -> io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(eof());
        }
        while l.ends_with('\n') || l.ends_with('\r') {
            l.pop();
        }
        Ok(l)
    }
    /// Reads exactly `n` bytes, handing them to `sink` a buffer at a time.
    fn body(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(eof());
            }
            let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            sink(&buf[..take]);
            self.r.consume(take);
            n -= take as u64;
        }
        Ok(())
    }
    /// Reads to end of stream.
    fn drain_to_end(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Ok(total);
            }
            let n = buf.len();
            sink(buf);
            self.r.consume(n);
            total += n as u64;
        }
    }
}

pub fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
}

fn bad(what: String) -> io::Error {
    io::Error::other(what)
}

/// Writes `size` bytes of the pattern, starting at file offset 0.
fn send_pattern(w: &mut TcpStream, pat: &[u8], size: u64) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        let n = pat.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        w.write_all(&pat[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// What a PUT sends: either `size` bytes of the pattern or one given buffer.
pub enum Payload<'a> {
    Pattern(&'a [u8], u64),
    Bytes(&'a [u8]),
}

impl Payload<'_> {
    fn len(&self) -> u64 {
        match self {
            Payload::Pattern(_, n) => *n,
            Payload::Bytes(b) => b.len() as u64,
        }
    }
    fn send(&self, w: &mut TcpStream) -> io::Result<()> {
        match self {
            Payload::Pattern(p, n) => send_pattern(w, p, *n),
            Payload::Bytes(b) => w.write_all(b),
        }
    }
}

impl Client {
    /// The socket and, for HTTP, the credentials and path prefix: for the
    /// event-driven client, which drives many sessions on one thread.
    /// `None` when bytes are still buffered (there should be none between
    /// requests).
    pub fn into_stream(self) -> Option<(TcpStream, Option<(String, String)>)> {
        let (conn, http) = match self {
            Client::Line(c) | Client::Ftp(c, _) => (c, None),
            Client::Http(c, auth, prefix) => (c, Some((auth, prefix))),
        };
        if !conn.r.buffer().is_empty() {
            return None;
        }
        Some((conn.r.into_inner(), http))
    }

    /// Connects and logs in (line: `AUTH`; FTP: `USER`/`PASS`/`TYPE I`;
    /// HTTP: nothing until the first request, which carries the credentials).
    pub fn open(t: &Target) -> io::Result<Client> {
        let mut c = Conn::connect(t.addr)?;
        match t.proto {
            Proto::Line => {
                expect(&c.line()?, "220")?;
                c.send(&format!("AUTH {} {}\n", t.user, t.pass))?;
                expect(&c.line()?, "230")?;
                Ok(Client::Line(c))
            }
            Proto::Http => {
                let auth = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", t.user, t.pass));
                Ok(Client::Http(c, auth, t.prefix.clone()))
            }
            Proto::Ftp => {
                ftp_reply(&mut c, "220")?;
                c.send(&format!("USER {}\r\n", t.user))?;
                let r = ftp_reply_any(&mut c)?;
                if r.starts_with("331") {
                    c.send(&format!("PASS {}\r\n", t.pass))?;
                    ftp_reply(&mut c, "230")?;
                } else {
                    expect(&r, "230")?;
                }
                c.send("TYPE I\r\n")?;
                ftp_reply(&mut c, "200")?;
                Ok(Client::Ftp(c, t.prefix.clone()))
            }
        }
    }

    /// The whole file; returns its size.
    pub fn get(&mut self, name: &str, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        match self {
            Client::Line(c) => {
                c.send(&format!("GET {name}\n"))?;
                line_download(c, sink)
            }
            Client::Http(c, auth, prefix) => {
                let head = format!(
                    "GET {prefix}{name} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n\r\n"
                );
                c.w().write_all(head.as_bytes())?;
                http_response(c, &[200], false, sink).map(|(n, _)| n)
            }
            Client::Ftp(c, prefix) => {
                let mut data = ftp_pasv(c)?;
                c.send(&format!("RETR {prefix}{name}\r\n"))?;
                ftp_reply(c, "150")?;
                let n = data.drain_to_end(sink)?;
                ftp_reply(c, "226")?;
                Ok(n)
            }
        }
    }

    /// The preview: the first 1024 bytes (line `VIEW`, HTTP `Range`).
    pub fn view(&mut self, name: &str, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        match self {
            Client::Line(c) => {
                c.send(&format!("VIEW {name}\n"))?;
                line_download(c, sink)
            }
            Client::Http(c, auth, prefix) => {
                let head = format!(
                    "GET {prefix}{name} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\nRange: bytes=0-1023\r\n\r\n"
                );
                c.w().write_all(head.as_bytes())?;
                http_response(c, &[200, 206], false, sink).map(|(n, _)| n)
            }
            Client::Ftp(..) => Err(bad("no preview in FTP".into())),
        }
    }

    /// Uploads; returns the SHA-256 the server reported, if it reports one.
    pub fn put(&mut self, name: &str, data: &Payload) -> io::Result<Option<String>> {
        let size = data.len();
        match self {
            Client::Line(c) => {
                c.send(&format!("PUT {size} {name}\n"))?;
                expect(&c.line()?, "150")?;
                data.send(c.w())?;
                let l = c.line()?;
                expect(&l, "226")?;
                Ok(l.split("sha256=").nth(1).map(str::to_owned))
            }
            Client::Http(c, auth, prefix) => {
                let head = format!(
                    "PUT {prefix}{name} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\nContent-Length: {size}\r\n\r\n"
                );
                c.w().write_all(head.as_bytes())?;
                data.send(c.w())?;
                http_response(c, &[200, 201, 204], false, &mut |_| ()).map(|(_, sha)| sha)
            }
            Client::Ftp(c, prefix) => {
                let mut d = ftp_pasv(c)?;
                c.send(&format!("STOR {prefix}{name}\r\n"))?;
                ftp_reply(c, "150")?;
                data.send(d.w())?;
                d.w().shutdown(Shutdown::Write)?;
                d.drain_to_end(&mut |_| ())?;
                ftp_reply(c, "226")?;
                Ok(None)
            }
        }
    }

    /// The listing; returns its size in bytes. `list_path` is the HTTP path
    /// of the directory (FTP: the directory name; line: `/` is the root).
    pub fn list(&mut self, list_path: &str) -> io::Result<u64> {
        self.listing(list_path, false, &mut |_| ())
    }

    /// A folder's listing, or with `recursive` the whole tree beneath it
    /// (line `TREE`, HTTP `?recursive`: ferryd's forms), handing the body to
    /// `sink`; returns its size in bytes. Line paths are sent without their
    /// leading and trailing `/` (a path has no empty component); `/` alone,
    /// or nothing, is the root.
    pub fn listing(
        &mut self,
        list_path: &str,
        recursive: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<u64> {
        match self {
            Client::Line(c) => {
                let verb = if recursive { "TREE" } else { "LIST" };
                let path = list_path.trim_matches('/');
                if path.is_empty() {
                    c.send(&format!("{verb}\n"))?;
                } else {
                    c.send(&format!("{verb} {path}\n"))?;
                }
                // Blocks of `150 <n>` and their bytes, until `150 0`.
                let mut total = 0;
                loop {
                    match line_download(c, sink)? {
                        0 => return Ok(total),
                        n => total += n,
                    }
                }
            }
            Client::Http(c, auth, _) => {
                let query = if recursive { "?recursive" } else { "" };
                let head = format!(
                    "GET {list_path}{query} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n\r\n"
                );
                c.w().write_all(head.as_bytes())?;
                http_response(c, &[200], false, sink).map(|(n, _)| n)
            }
            Client::Ftp(c, _) => {
                let mut data = ftp_pasv(c)?;
                c.send(&format!("NLST {list_path}\r\n"))?;
                ftp_reply(c, "150")?;
                let n = data.drain_to_end(sink)?;
                ftp_reply(c, "226")?;
                Ok(n)
            }
        }
    }
}

fn expect(line: &str, code: &str) -> io::Result<()> {
    if line.starts_with(code) {
        Ok(())
    } else {
        Err(bad(format!("expected {code}, got {line:?}")))
    }
}

fn line_download(c: &mut Conn, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
    let l = c.line()?;
    expect(&l, "150")?;
    let n: u64 = l[4..]
        .trim()
        .parse()
        .map_err(|_| bad(format!("bad 150 line {l:?}")))?;
    c.body(n, sink)?;
    Ok(n)
}

/// Reads one response: status, head, body (by `Content-Length` or chunked).
/// Returns the body length and the `X-Ferry-SHA256` field when present.
fn http_response(
    c: &mut Conn,
    ok: &[u16],
    head_only: bool,
    sink: &mut dyn FnMut(&[u8]),
) -> io::Result<(u64, Option<String>)> {
    let status_line = c.line()?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut len = None;
    let mut chunked = false;
    let mut sha = None;
    loop {
        let l = c.line()?;
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = v.parse::<u64>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        } else if k.eq_ignore_ascii_case("x-ferry-sha256") {
            sha = Some(v.to_owned());
        }
    }
    let mut n = 0;
    if !head_only {
        if chunked {
            loop {
                let size_line = c.line()?;
                let size =
                    u64::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    while !c.line()?.is_empty() {}
                    break;
                }
                c.body(size, sink)?;
                c.line()?;
                n += size;
            }
        } else {
            n = len.unwrap_or(0);
            c.body(n, sink)?;
        }
    }
    if !ok.contains(&status) {
        return Err(bad(format!("HTTP {status_line:?}")));
    }
    Ok((n, sha))
}

/// Reads a possibly multi-line FTP reply and returns its last line.
fn ftp_reply_any(c: &mut Conn) -> io::Result<String> {
    let first = c.line()?;
    if first.len() >= 4 && first.as_bytes()[3] == b'-' {
        let code = first[..3].to_owned();
        loop {
            let l = c.line()?;
            if l.starts_with(&code) && l.as_bytes().get(3) == Some(&b' ') {
                return Ok(l);
            }
        }
    }
    Ok(first)
}

fn ftp_reply(c: &mut Conn, code: &str) -> io::Result<String> {
    let l = ftp_reply_any(c)?;
    expect(&l, code)?;
    Ok(l)
}

/// `PASV`, then connects to the address it names.
fn ftp_pasv(c: &mut Conn) -> io::Result<Conn> {
    c.w().write_all(b"PASV\r\n")?;
    let l = ftp_reply(c, "227")?;
    let inner = l
        .split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad(format!("bad 227 {l:?}")))?;
    let n: Vec<u16> = inner
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    if n.len() != 6 {
        return Err(bad(format!("bad 227 {l:?}")));
    }
    let addr = SocketAddr::from((
        [n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8],
        n[4] * 256 + n[5],
    ));
    Conn::connect(addr)
}

/// Opens `n` sessions and leaves them logged in and idle. HTTP sessions
/// make one small request each, so they are keep-alive connections that
/// have been used, as a browser's would be.
pub fn open_idle(t: &Target, small: &str) -> io::Result<Client> {
    let mut c = Client::open(t)?;
    if t.proto == Proto::Http {
        c.get(small, &mut |_| ())?;
    }
    Ok(c)
}

/// For sinks that must check content: the pattern byte at file offset `off`.
pub fn check_pattern(pat: &[u8], off: u64, data: &[u8]) -> bool {
    let mut i = (off % pat.len() as u64) as usize;
    for &b in data {
        if b != pat[i] {
            return false;
        }
        i += 1;
        if i == pat.len() {
            i = 0;
        }
    }
    true
}
