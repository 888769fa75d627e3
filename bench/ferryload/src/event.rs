//! Small requests from one thread over many sessions (`small --engine
//! event`), the way `wrk` drives HTTP: each session sends a request, waits
//! for the whole response, and sends the next, and a single `mio` loop
//! serves them all. Unlike one blocking thread per session, the client
//! then costs little next to the server, so the line protocol and HTTP can
//! be compared at rates where the threaded client saturates first.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::client::{Client, Proto, Target};

/// One session: its request, and the response being read.
struct Session {
    stream: TcpStream,
    request: Vec<u8>,
    /// Bytes of the request still to write.
    unsent: usize,
    response: Vec<u8>,
    /// The whole response's length, once its head is in.
    expected: Option<usize>,
    started: Instant,
}

/// What the run measured: latencies in microseconds and errors.
pub struct Outcome {
    pub latencies: Vec<u32>,
    pub errors: u64,
    pub elapsed: Duration,
}

pub fn run(t: &Target, conns: usize, secs: u64, name: &str, view: bool) -> Outcome {
    let mut poll = Poll::new().unwrap_or_else(|e| crate::die(&format!("poll: {e}")));
    let mut sessions = Vec::with_capacity(conns);
    let mut errors = 0;
    for i in 0..conns {
        let opened = Client::open(t).ok().and_then(Client::into_stream);
        let Some((stream, http)) = opened else {
            errors += 1;
            continue;
        };
        stream
            .set_nonblocking(true)
            .unwrap_or_else(|e| crate::die(&format!("nonblocking: {e}")));
        let mut stream = TcpStream::from_std(stream);
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap_or_else(|e| crate::die(&format!("register: {e}")));
        let request = request(t.proto, http, name, view);
        sessions.push(Some(Session {
            unsent: request.len(),
            stream,
            request,
            response: Vec::with_capacity(8192),
            expected: None,
            started: Instant::now(),
        }));
    }
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    for session in sessions.iter_mut().flatten() {
        session.started = Instant::now();
    }
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < end {
        if let Err(e) = poll.poll(&mut events, Some(end - Instant::now().min(end))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            crate::die(&format!("poll: {e}"));
        }
        for event in events.iter() {
            let slot = &mut sessions[event.token().0];
            let Some(session) = slot else {
                continue;
            };
            match drive(session, &mut buf, &mut latencies) {
                Ok(()) => {}
                Err(_) => {
                    errors += 1;
                    *slot = None;
                }
            }
        }
    }
    Outcome {
        latencies,
        errors,
        elapsed: start.elapsed(),
    }
}

/// The request bytes, written in one piece each time.
fn request(proto: Proto, http: Option<(String, String)>, name: &str, view: bool) -> Vec<u8> {
    match (proto, http) {
        (Proto::Http, Some((auth, prefix))) => {
            let range = if view { "Range: bytes=0-1023\r\n" } else { "" };
            format!(
                "GET {prefix}{name} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n{range}\r\n"
            )
            .into_bytes()
        }
        (Proto::Line, _) => format!("{} {name}\n", if view { "VIEW" } else { "GET" }).into_bytes(),
        _ => crate::die("--engine event speaks the line protocol and HTTP"),
    }
}

/// Writes what is left of the request, reads what has arrived, and starts
/// the next request when a response is complete.
fn drive(s: &mut Session, buf: &mut [u8], latencies: &mut Vec<u32>) -> io::Result<()> {
    loop {
        if s.unsent > 0 {
            let from = s.request.len() - s.unsent;
            match s.stream.write(&s.request[from..]) {
                Ok(n) => s.unsent -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
            continue;
        }
        let n = match s.stream.read(buf) {
            Ok(0) => return Err(crate::client::eof()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        s.response.extend_from_slice(&buf[..n]);
        if s.expected.is_none() {
            s.expected = expected_len(&s.response)?;
        }
        if let Some(len) = s.expected {
            if s.response.len() > len {
                return Err(io::Error::other("more bytes than the response holds"));
            }
            if s.response.len() == len {
                latencies.push(u32::try_from(s.started.elapsed().as_micros()).unwrap_or(u32::MAX));
                s.response.clear();
                s.expected = None;
                s.unsent = s.request.len();
                s.started = Instant::now();
            }
        }
    }
}

/// The length of the whole response once its head has arrived: `150 <n>`
/// and `n` bytes, or an HTTP head and its `Content-Length`.
fn expected_len(got: &[u8]) -> io::Result<Option<usize>> {
    let bad = |what: &str| io::Error::other(format!("{what}: {:?}", String::from_utf8_lossy(got)));
    if got.starts_with(b"HTTP/") {
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&got[..end]).map_err(|_| bad("head"))?;
        if !(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.1 206")) {
            return Err(bad("status"));
        }
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .ok_or_else(|| bad("no Content-Length"))?;
        return Ok(Some(end + 4 + len));
    }
    let Some(end) = got.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&got[..end]).map_err(|_| bad("reply"))?;
    let n: usize = line
        .trim_end()
        .strip_prefix("150 ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("not 150"))?;
    Ok(Some(end + 1 + n))
}
