//! A raw HTTP/1.1 client for the tests of the HTTP front: requests
//! written byte for byte, responses read and checked against what
//! `protocol.md` says every response has, and `curl` for what real
//! clients do. Every read and write is bounded by [`IO_TIMEOUT`]; curl
//! runs with `--max-time`.

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;

/// The longest response head the raw client accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Starting a server with the HTTP front.
// ---------------------------------------------------------------------------

/// Starts ferryd from `builder` with `--http-listen 127.0.0.1:0` and waits
/// (bounded) for the HTTP listening line. `/metrics` there takes
/// [`metrics_bearer`] (`--metrics-token-file`).
pub fn start_http(builder: ServerBuilder) -> (TestServer, SocketAddr) {
    let token = metrics_token_file(builder.root(), 0o600);
    let server = builder
        .args(["--http-listen", "127.0.0.1:0", "--metrics-token-file"])
        .arg(&token)
        .start();
    let addr = server.http_addr();
    // Read at the start only; gone, it is out of the way of the tests that
    // look at every file under the root.
    fs::remove_file(token).unwrap();
    (server, addr)
}

/// [`start_http`] with the default settings.
pub fn http_server() -> (TestServer, SocketAddr) {
    start_http(TestServer::builder())
}

// ---------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------

/// The `Authorization` header line for `user`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Authorization: Basic {}", basic_credentials(user, password))
}

pub fn alice_auth() -> String {
    basic(ALICE, ALICE_PW)
}

/// `METHOD target HTTP/1.1`, `Host`, the given header lines, the blank
/// line, then `body` as it is (no framing added).
pub fn request(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An authenticated (alice) request without a body.
pub fn alice_req(method: &str, target: &str) -> Vec<u8> {
    request(method, target, &[&alice_auth()], b"")
}

/// An authenticated (alice) `PUT` framed by `Content-Length`.
pub fn put_req(target: &str, body: &[u8]) -> Vec<u8> {
    let length = format!("Content-Length: {}", body.len());
    request("PUT", target, &[&alice_auth(), &length], body)
}

/// Percent-encodes every byte except the unreserved ones.
pub fn pct(name: &[u8]) -> String {
    let mut out = String::new();
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn file_target(name: &str) -> String {
    format!("/files/{}", pct(name.as_bytes()))
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn lossy(b: &[u8]) -> String {
    let shown = &b[..b.len().min(600)];
    format!("{:?}", String::from_utf8_lossy(shown))
}

// ---------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes of the whole response (head and body) on the wire.
    pub raw_len: usize,
}

impl Resp {
    /// The value of a header that must appear at most once.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_length(&self) -> u64 {
        let raw = self
            .header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length in {self:?}"));
        raw.parse()
            .unwrap_or_else(|_| panic!("Content-Length {raw:?} is not a number"))
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16, what: &str) -> &Resp {
        assert_eq!(
            self.status,
            status,
            "{what}: got {} {:?} body {}",
            self.status,
            self.headers,
            lossy(&self.body)
        );
        self
    }
}

pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let first = found.next().map(|(_, v)| v.as_str());
    assert!(
        found.next().is_none(),
        "header {name} appears more than once: {headers:?}"
    );
    first
}

/// Parses a response head (without the final blank line): status and fields.
pub fn parse_response_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert!(
        version == "HTTP/1.1" || version == "HTTP/1.0",
        "bad status line {status_line:?}"
    );
    let code = parts.next().unwrap_or_default();
    assert!(
        code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()),
        "bad status line {status_line:?}"
    );
    let status = code.parse().unwrap();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?} in {head:?}"));
            assert!(
                !n.is_empty() && !n.contains(' '),
                "bad header name in {l:?}"
            );
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}

/// Checks what `protocol.md` says every (final) response has.
#[track_caller]
pub fn check_response(resp: &Resp, head_request: bool) {
    if resp.status < 200 {
        return;
    }
    let date = resp
        .header("date")
        .unwrap_or_else(|| panic!("response without Date: {resp:?}"));
    assert!(
        httpdate::parse_http_date(date).is_ok(),
        "Date {date:?} is not an HTTP date"
    );
    let server = resp
        .header("server")
        .unwrap_or_else(|| panic!("response without Server: {resp:?}"));
    assert!(
        server.starts_with("ferry/") && server.len() > "ferry/".len(),
        "Server is {server:?}, expected ferry/<version>"
    );
    // WebDAV's refusals that name a precondition (RFC 4918 §16) say it
    // in a short XML body instead.
    let dav_error = resp
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/xml"))
        && find(&resp.body, b"<D:error xmlns:D=\"DAV:\">").is_some();
    if resp.status >= 400 && !head_request && !dav_error {
        let ct = resp.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("text/plain"),
            "error response {} has Content-Type {ct:?}, expected text/plain",
            resp.status
        );
        assert!(
            !resp.body.is_empty() && resp.body.ends_with(b"\n") && resp.body.len() < 256,
            "error response {} body {} is not a short line of text",
            resp.status,
            lossy(&resp.body)
        );
    }
}

// ---------------------------------------------------------------------------
// A raw HTTP connection over a TcpStream with timeouts.
// ---------------------------------------------------------------------------

pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the HTTP listener");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to ferryd");
    }

    /// Writes, ignoring a server that has already closed (the response to
    /// a refused request can still be read).
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads more bytes; `Ok(0)` at EOF (a reset counts as EOF).
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if is_reset(&e) => return Ok(0),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one response; `None` when the connection closes before its
    /// first byte. `head_request`: the response to a `HEAD`, without body.
    pub fn try_response(&mut self, head_request: bool) -> Option<Resp> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.buf.len() < MAX_RESPONSE_HEAD,
                "response head over {MAX_RESPONSE_HEAD} bytes: {}",
                lossy(&self.buf)
            );
            match self.fill() {
                Ok(0) if self.buf.is_empty() => return None,
                Ok(0) => panic!(
                    "connection closed inside a response head: {}",
                    lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!(
                    "no complete response within the timeout ({e}); got {}",
                    lossy(&self.buf)
                ),
            }
        };
        let head = String::from_utf8(self.buf[..head_end - 4].to_vec())
            .unwrap_or_else(|_| panic!("response head is not UTF-8: {}", lossy(&self.buf)));
        let (status, headers) = parse_response_head(&head);
        let no_body = head_request || status < 200 || status == 204 || status == 304;
        let chunked = header_in(&headers, "transfer-encoding").is_some_and(|v| v == "chunked");
        if !no_body && chunked {
            assert_eq!(header_in(&headers, "content-length"), None, "{head:?}");
            let (body, end) = self.read_chunked(head_end, status);
            self.buf.drain(..end);
            let resp = Resp {
                status,
                headers,
                body,
                raw_len: end,
            };
            check_response(&resp, head_request);
            return Some(resp);
        }
        let body_len = if no_body {
            0
        } else if let Some(raw) = header_in(&headers, "content-length") {
            raw.parse::<usize>()
                .unwrap_or_else(|_| panic!("bad Content-Length {raw:?}"))
        } else {
            // Only a body that ends with the connection has neither.
            assert!(
                header_in(&headers, "connection") == Some("close"),
                "response {status} without Content-Length: {head:?}"
            );
            while self.fill().expect("a body that ends with the connection") > 0 {}
            self.buf.len() - head_end
        };
        while self.buf.len() < head_end + body_len {
            match self.fill() {
                Ok(0) => panic!(
                    "connection closed after {} of {body_len} body bytes of a {status}",
                    self.buf.len() - head_end
                ),
                Ok(_) => {}
                Err(e) => panic!(
                    "body of a {status} incomplete ({} of {body_len} bytes): {e}",
                    self.buf.len() - head_end
                ),
            }
        }
        let body = self.buf[head_end..head_end + body_len].to_vec();
        self.buf.drain(..head_end + body_len);
        let resp = Resp {
            status,
            headers,
            body,
            raw_len: head_end + body_len,
        };
        check_response(&resp, head_request);
        Some(resp)
    }

    /// Reads a chunked body starting at `at` in the buffer: the body and
    /// where the response ends.
    pub fn read_chunked(&mut self, mut at: usize, status: u16) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[at..], b"\r\n") {
                    break at + i;
                }
                self.fill_for(status);
            };
            let size_line = lossy(&self.buf[at..line_end]);
            let size = std::str::from_utf8(&self.buf[at..line_end])
                .ok()
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| panic!("bad chunk size line {size_line}"));
            let data_at = line_end + 2;
            while self.buf.len() < data_at + size + 2 {
                self.fill_for(status);
            }
            assert_eq!(
                &self.buf[data_at + size..data_at + size + 2],
                b"\r\n",
                "chunk of {size} bytes not followed by CRLF"
            );
            if size == 0 {
                return (body, data_at + 2);
            }
            body.extend_from_slice(&self.buf[data_at..data_at + size]);
            at = data_at + size + 2;
        }
    }

    pub fn fill_for(&mut self, status: u16) {
        match self.fill() {
            Ok(0) => panic!(
                "connection closed inside the chunked body of a {status}: {}",
                lossy(&self.buf)
            ),
            Ok(_) => {}
            Err(e) => panic!("chunked body of a {status} incomplete: {e}"),
        }
    }

    #[track_caller]
    pub fn response(&mut self) -> Resp {
        self.try_response(false)
            .expect("ferryd closed the connection instead of responding")
    }

    #[track_caller]
    pub fn head_response(&mut self) -> Resp {
        self.try_response(true)
            .expect("ferryd closed the connection instead of responding")
    }

    /// Whether the next bytes on the connection start a status line
    /// (`Err` with what is there instead, such as a stray body).
    pub fn status_line_next(&mut self) -> Result<(), String> {
        while self.buf.len() < 5 {
            match self.fill() {
                Ok(0) => return Err(format!("closed after {}", lossy(&self.buf))),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} after {}", lossy(&self.buf))),
            }
        }
        if self.buf.starts_with(b"HTTP/") {
            Ok(())
        } else {
            Err(lossy(&self.buf))
        }
    }

    /// Asserts that the server closes the connection without sending more.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!(
                    "ferryd did not close the connection ({e}); pending {}",
                    lossy(&self.buf)
                ),
            }
        }
        assert!(
            self.buf.is_empty(),
            "expected the connection to close, got {}",
            lossy(&self.buf)
        );
    }

    /// Everything the server sends until it closes the connection (a
    /// reset counts as a close), as text; panics if it has not closed
    /// within the read timeout.
    #[track_caller]
    pub fn read_to_close(&mut self) -> String {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!(
                    "ferryd did not close the connection ({e}); got {}",
                    lossy(&self.buf)
                ),
            }
        }
        let all = std::mem::take(&mut self.buf);
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Closes abortively (RST), like a killed client.
    pub fn abort(self) {
        use nix::sys::socket::{setsockopt, sockopt};
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        setsockopt(&self.stream, sockopt::Linger, &linger).expect("setsockopt(SO_LINGER)");
        drop(self);
    }
}

/// One request on a new connection; its response.
#[track_caller]
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut c = Conn::open(addr);
    c.send_lenient(raw);
    c.response()
}

#[track_caller]
pub fn exchange_head(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut c = Conn::open(addr);
    c.send_lenient(raw);
    c.head_response()
}

/// Sends `raw` on a new connection; the response must be `status` with
/// `Connection: close`, and the server must then close the connection.
#[track_caller]
pub fn expect_closing_error(addr: SocketAddr, raw: &[u8], status: u16, what: &str) -> Resp {
    let mut c = Conn::open(addr);
    c.send_lenient(raw);
    let resp = c.response();
    resp.assert_status(status, what);
    assert!(
        resp.says_close(),
        "{what}: a {status} that closes must say Connection: close: {:?}",
        resp.headers
    );
    c.expect_eof();
    resp
}

// ---------------------------------------------------------------------------
// curl.
// ---------------------------------------------------------------------------

pub fn curl_bin() -> &'static str {
    static CHECKED: OnceLock<bool> = OnceLock::new();
    let ok = *CHECKED.get_or_init(|| {
        Command::new("curl")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    assert!(
        ok,
        "the HTTP tests need `curl` on PATH (`curl --version` failed); install it, e.g. `apt-get install curl`"
    );
    "curl"
}

pub struct CurlOut {
    pub exit: Option<i32>,
    /// `%{http_code}` of the last response.
    pub code: u16,
    /// Every response head curl saw (interim `100` ones too), in order.
    pub heads: Vec<(u16, Vec<(String, String)>)>,
    pub body: Vec<u8>,
    pub stderr: String,
    pub took: Duration,
}

impl CurlOut {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.heads.last().expect("no response head").1, name)
    }

    pub fn saw_100(&self) -> bool {
        self.heads.iter().any(|(s, _)| *s == 100)
    }
}

/// Runs curl with `args` (plus quiet, no proxy, no config file, timeouts);
/// the body goes to a file, the heads to another.
pub fn curl(args: &[&str]) -> CurlOut {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let body = dir.path().join("body");
    let mut cmd = Command::new(curl_bin());
    cmd.args(["-q", "-sS", "--noproxy", "*"])
        .args(["--connect-timeout", "5", "--max-time", "20"])
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args);
    let start = Instant::now();
    let out = run_command_to_exit(&mut cmd, Duration::from_secs(30));
    let took = start.elapsed();
    let code = out.stdout.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl {args:?}: %{{http_code}} printed {:?}; stderr:\n{}",
            out.stdout, out.stderr
        )
    });
    let head_text = fs::read(&headers).unwrap_or_default();
    let head_text = String::from_utf8_lossy(&head_text);
    let heads = head_text
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .map(parse_response_head)
        .collect();
    CurlOut {
        exit: out.status.code(),
        code,
        heads,
        body: fs::read(&body).unwrap_or_default(),
        stderr: out.stderr,
        took,
    }
}

/// [`curl`], asserting that curl itself succeeded.
#[track_caller]
pub fn curl_ok(args: &[&str]) -> CurlOut {
    let out = curl(args);
    assert_eq!(
        out.exit,
        Some(0),
        "curl {args:?} failed; stderr:\n{}",
        out.stderr
    );
    out
}

pub fn alice_userpass() -> String {
    format!("{ALICE}:{ALICE_PW}")
}
