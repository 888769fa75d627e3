//! ferryd's HTTP request handling on arbitrary bytes: the request-head
//! parser on top of httparse, the framing rules, the chunked decoder and the
//! percent-decoding of names, each checked against what `protocol.md`
//! promises, and then a whole HTTP session driven from the same bytes.
//!
//! The input is split in two by its first byte: the first part is read as a
//! request head, the rest as a chunked body; the whole is also fed to a
//! session, in pieces and with a connection event (a shutdown, the end of
//! the drain, a lost connection) that the first byte picks. When the input
//! after the first byte has an odd length, the driver takes response bodies straight from the
//! file as the reactor's `sendfile` does (`file_output`), otherwise through
//! the session's buffer.

#![no_main]
#![forbid(unsafe_code)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{same, show};
use ferry::Users;
use ferry::internal::protocol::chunked::{ChunkedDecoder, ChunkedError};
use ferry::internal::protocol::http::{
    self, Body, ByteRange, MAX_HEAD, MAX_TARGET, Method, Route, decode_name, parse_head,
    percent_decode,
};
use ferry::internal::protocol::line::Status;
use ferry::internal::protocol::name;
use ferry::internal::session::http::{OUTPUT_BACKLOG, Session};
use ferry::internal::session::{Front, Services};
use ferry::internal::storage::{Options, Storage};
use libfuzzer_sys::fuzz_target;

/// Most file bytes a response can hold at once (`TRANSFER_BUFFER`), plus a
/// head and the responses queued below the backlog.
const OUTPUT_BOUND: usize = 128 * 1024 + OUTPUT_BACKLOG + 2 * MAX_HEAD;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = (usize::from(split) * rest.len()) / 255;
    let (head, body) = rest.split_at(cut);
    check_head(head);
    check_chunked(body);
    check_names(head);
    drive_session(rest, split);
});

/// The head parser never panics, never claims more than it was given or
/// more than the head limit, and what it accepts follows the rules.
fn check_head(input: &[u8]) {
    let request = match parse_head(input) {
        Ok(Status::Complete(request)) => request,
        Ok(Status::Partial) => {
            assert!(input.len() < MAX_HEAD, "partial at {} bytes", input.len());
            return;
        }
        Err(_) => return,
    };
    assert!(request.head_len > 0 && request.head_len <= input.len().min(MAX_HEAD));
    assert!(
        input[..request.head_len].ends_with(b"\n"),
        "a head ends with its blank line: {}",
        show(&input[..request.head_len])
    );
    assert!(
        request.path.starts_with(b"/"),
        "path {}",
        show(request.path)
    );
    assert!(request.path.len() <= MAX_TARGET);
    assert!(!request.path.contains(&b'?'), "the query is split off");
    assert!(request.minor_version <= 1);
    if request.minor_version == 0 && request.keep_alive {
        // HTTP/1.0 keeps the connection only when asked to.
        let head = String::from_utf8_lossy(&input[..request.head_len]).to_ascii_lowercase();
        assert!(
            head.contains("keep-alive"),
            "{}",
            show(&input[..request.head_len])
        );
    }
    if let Body::Length(n) = request.body {
        // A length the parser accepted was written in plain digits.
        let head = String::from_utf8_lossy(&input[..request.head_len]).to_ascii_lowercase();
        assert!(
            head.contains(&n.to_string()),
            "length {n} from {}",
            show(input)
        );
    }
    if let Some(range) = request.range {
        for size in [0u64, 1, 1000, u64::MAX] {
            if let Some((first, len)) = range.resolve(size) {
                assert!(
                    len > 0 && first < size && len <= size - first,
                    "{range:?} in {size}"
                );
            }
        }
        if let ByteRange::From {
            first,
            last: Some(last),
        } = range
        {
            assert!(first <= last);
        }
    }
    if request.method == Method::Unknown || request.method == Method::Other {
        // Never served: answered 501 or 405 by the session.
        return;
    }
    if let Route::File(raw) = http::route(request.path) {
        check_name(raw);
    }
}

/// A name that `decode_name` accepts is the one-time decoding of the raw
/// segment and passes the name rules.
fn check_name(raw: &[u8]) {
    let Some(name) = decode_name(raw) else {
        return;
    };
    let decoded = percent_decode(raw).expect("an accepted name decodes");
    same(
        name.as_bytes(),
        &decoded[..],
        "the name is the decoded segment",
    );
    assert!(name::is_valid(&name), "a name breaking the rules: {name:?}");
    assert!(!name.contains('/') && name != "." && name != "..");
}

/// Percent-decoding against a reference, and round trips.
fn check_names(input: &[u8]) {
    same(
        percent_decode(input),
        reference_decode(input),
        "percent_decode",
    );
    // Encoding every byte and decoding once gives the bytes back.
    let encoded: String = input.iter().map(|b| format!("%{b:02X}")).collect();
    same(
        percent_decode(encoded.as_bytes()),
        Some(input.to_vec()),
        "round trip",
    );
    check_name(input);
}

/// `%` followed by two hex digits is that byte, any other byte is itself,
/// and a `%` without two hex digits makes the whole input invalid.
fn reference_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Some(out)
}

/// The chunked decoder gives the same body and the same verdict however the
/// input is split, and never uses more input than it was given.
fn check_chunked(input: &[u8]) {
    let whole = decode_chunked(input, input.len().max(1));
    for step in [1, 2, 7, 64] {
        let pieces = decode_chunked(input, step);
        same(&pieces, &whole, format!("chunked body in pieces of {step}"));
    }
    if let Ok((body, used, true)) = &whole {
        assert!(*used <= input.len());
        assert!(body.len() <= *used);
    }
}

/// Decodes `input` fed `step` bytes at a time: the body, the bytes used,
/// and whether the body ended.
fn decode_chunked(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut used = 0;
    for piece in input.chunks(step) {
        let n = decoder.decode(piece, |data| body.extend_from_slice(data))?;
        assert!(n <= piece.len());
        used += n;
        if decoder.is_done() {
            break;
        }
        assert_eq!(n, piece.len(), "an unfinished body takes every byte");
    }
    assert_eq!(decoder.decoded(), body.len() as u64);
    Ok((body, used, decoder.is_done()))
}

/// What happens to the connection besides the client's bytes, picked by
/// the split byte: mostly nothing (a patient client), else a shutdown, a
/// shutdown whose drain ends, or a lost connection, a few rounds in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    None,
    Shutdown,
    DrainEnds,
    Lost,
}

/// A whole HTTP session over a temporary storage root, the input fed in
/// pieces and the output taken in pieces whose sizes come from `seed`, with
/// the connection event `seed` picks: no panic, buffers bounded, the
/// session finishes once its client has ended and read everything, every
/// response well formed (only a cut connection may end one early), no
/// upload left in the temporary area, nothing outside alice's directory
/// touched.
fn drive_session(input: &[u8], seed: u8) {
    let root = tempfile::tempdir().unwrap();
    let canary = root.path().join("canary");
    std::fs::write(&canary, b"outside").unwrap();
    let options = Options {
        fsync: false,
        ..Options::default()
    };
    let storage = Storage::open(&root.path().join("storage"), options).unwrap();
    let users = Users::parse(b"alice:pw\n").unwrap();
    let mut services = Services::new(users, storage, 64 * 1024);
    services.policy.login_delay = std::time::Duration::ZERO;
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut session = Session::new(peer);
    if input.len() % 2 == 1 {
        // Every file body, however short, goes through `file_output`.
        session.send_files_directly(0);
    }
    let mut out = Vec::new();
    let mut rest = input;
    let step = usize::from(seed % 61) + 1;
    let write_step = if seed % 3 == 0 { step } else { usize::MAX };
    let event = match seed % 8 {
        5 => Event::Shutdown,
        6 => Event::DrainEnds,
        7 => Event::Lost,
        _ => Event::None,
    };
    let event_round = usize::from(seed / 8);
    let mut cut = false;
    let mut eof = false;
    for round in 0..100_000usize {
        if !session.is_done() {
            match (event, round.checked_sub(event_round)) {
                (Event::Shutdown | Event::DrainEnds, Some(0)) => session.begin_shutdown(&services),
                (Event::DrainEnds, Some(2)) => {
                    session.end_drain(&services);
                    cut = true;
                }
                (Event::Lost, Some(0)) => {
                    session.connection_lost("fuzzed", &services);
                    cut = true;
                    assert!(session.is_done(), "a lost connection is finished");
                }
                _ => {}
            }
        }
        assert!(
            session.output().len() <= OUTPUT_BOUND,
            "output {}",
            session.output().len()
        );
        while session.has_work() {
            session.work(&services);
        }
        let pending = session.output().len().min(write_step);
        if pending > 0 {
            out.extend_from_slice(&session.output()[..pending]);
            session.output_written(pending, &services);
            continue;
        }
        if let Some(file) = session.file_output() {
            // As `sendfile` would: from the file at the offset given.
            let n = usize::try_from(file.len)
                .unwrap_or(usize::MAX)
                .min(write_step);
            let start = out.len();
            out.resize(start + n, 0);
            file.file
                .read_exact_at(&mut out[start..], file.offset)
                .expect("the file holds the bytes offered");
            session.file_output_written(n as u64, &services);
            continue;
        }
        if session.is_done() {
            break;
        }
        let n = session.read_limit().min(rest.len()).min(step);
        if n == 0 {
            if eof {
                break;
            }
            // The client has sent all it will (or all the session takes).
            session.receive_eof(&services);
            eof = true;
            assert_eq!(session.read_limit(), 0, "reading after the end");
            continue;
        }
        session.receive(&rest[..n], &services);
        rest = &rest[n..];
    }
    assert!(
        session.is_done(),
        "the client ended and read everything, yet the session goes on"
    );
    drop(session);
    let tmp = root.path().join("storage").join(".ferry").join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(
        left.is_empty(),
        "uploads left in the temporary area: {left:?}"
    );
    check_responses(&out, cut);
    same(
        &std::fs::read(&canary).unwrap()[..],
        &b"outside"[..],
        "the canary",
    );
    assert_outside_untouched(root.path());
}

/// The output is a sequence of well-formed responses (protocol.md, "The
/// HTTP front"): a status line `HTTP/1.1 NNN reason`; the interim
/// `100 Continue` is that line alone; a final response has `Date` and
/// `Server: ferry/<version>`, fields of printable bytes, `Content-Length`
/// unless it is a `204` or a listing (`Transfer-Encoding: chunked`, or with
/// `Connection: close` a body that ends with the connection), and nothing
/// follows a `Connection: close`.
/// Whether a body follows depends on the request (`HEAD` has none), which is
/// not tracked here: a response's body is taken as present when the bytes
/// behind it are the end or the next status line, else as absent, and one
/// of the two must fit. When the connection was `cut` (lost, or the drain
/// ended), the last response may stop anywhere.
fn check_responses(out: &[u8], cut: bool) {
    let mut rest = out;
    while !rest.is_empty() {
        let Some(end) = find(rest, b"\r\n\r\n") else {
            assert!(cut, "a response head without its end: {}", show(rest));
            return;
        };
        let head = std::str::from_utf8(&rest[..end])
            .unwrap_or_else(|_| panic!("a response head not in UTF-8: {}", show(rest)));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|tail| tail.get(..3))
            .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (100..600).contains(code))
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        assert_eq!(
            status_line,
            format!("HTTP/1.1 {status} {}", http::reason(status)),
            "status line"
        );
        rest = &rest[end + 4..];
        if status == 100 {
            assert_eq!(head, "HTTP/1.1 100 Continue", "100 is a bare status line");
            continue;
        }
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        let mut date = false;
        let mut server = false;
        for field in lines {
            let (name, value) = field
                .split_once(": ")
                .unwrap_or_else(|| panic!("field {field:?} in {head:?}"));
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
                "field name {name:?}"
            );
            assert!(
                value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                "field value {value:?}"
            );
            match name {
                "Content-Length" => {
                    assert!(length.is_none(), "two lengths in {head:?}");
                    length = Some(value.parse::<usize>().expect("a decimal length"));
                }
                "Transfer-Encoding" => {
                    assert_eq!(value, "chunked", "{head:?}");
                    chunked = true;
                }
                "Connection" => close |= value == "close",
                "Date" => date = true,
                "Server" => {
                    server = true;
                    assert!(value.starts_with("ferry/"), "{value:?}");
                }
                _ => {}
            }
        }
        assert!(date && server, "Date and Server in {head:?}");
        if status == 204 {
            assert_eq!(length, None, "a 204 has no Content-Length");
        }
        if chunked {
            assert_eq!(length, None, "Content-Length and chunked in {head:?}");
            // A body is present unless the next response follows (`HEAD`).
            let next = rest.is_empty()
                || rest.starts_with(b"HTTP/1.1 ")
                || (cut && b"HTTP/1.1 ".starts_with(rest));
            if !next {
                match decode_chunked(rest, rest.len()) {
                    Ok((_, used, true)) => rest = &rest[used..],
                    Ok((_, _, false)) => {
                        assert!(cut, "a chunked body without its end: {}", show(rest));
                        return;
                    }
                    Err(err) => panic!("a malformed chunked body ({err:?}): {}", show(rest)),
                }
            }
            if close {
                assert!(
                    rest.is_empty(),
                    "a response after Connection: close: {}",
                    show(rest)
                );
            }
            continue;
        }
        if length.is_none() && status != 204 {
            // A body that ends where the connection does.
            assert!(close, "no Content-Length in {head:?}");
            return;
        }
        let length = length.unwrap_or_else(|| {
            assert_eq!(status, 204, "no Content-Length in {head:?}");
            0
        });
        // The next status line, or (cut) the start of one.
        let is_next = |at: &[u8]| {
            at.is_empty() || at.starts_with(b"HTTP/1.1 ") || (cut && b"HTTP/1.1 ".starts_with(at))
        };
        if rest.len() >= length && is_next(&rest[length..]) {
            rest = &rest[length..];
        } else if cut && rest.len() < length && !rest.starts_with(b"HTTP/1.1 ") {
            // A body cut short: nothing can follow it.
            return;
        } else {
            assert!(is_next(rest), "after {head:?}: {}", show(rest));
        }
        if close {
            assert!(
                rest.is_empty(),
                "a response after Connection: close: {}",
                show(rest)
            );
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Only `storage/alice` and the server's private area may hold anything.
fn assert_outside_untouched(root: &Path) {
    let storage = root.join("storage");
    for entry in std::fs::read_dir(&storage).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            name == "alice" || name == ".ferry",
            "something appeared in the storage root: {name:?}"
        );
    }
    let mut top: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    same(
        top,
        vec!["canary".into(), "storage".into()],
        "the test root",
    );
}
