//! `name::validate` and `name::is_valid` against a reference model of the
//! file-name rules in `protocol.md`, `path::validate` against a model of
//! the path rules ("Paths and folders"), the same rules seen through a
//! command line, and the HTTP front's percent-decoding of names and paths
//! (`http::percent_decode`, `http::decode_name`, `http::decode_path`,
//! `http::route`) against a reference decoder.
//!
//! The model is written from the protocol text, not from the code: it reads
//! the name as characters where `validate` scans bytes, so the two only agree
//! if both follow the rules.

#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{same, show};
use ferry::internal::protocol::http::{self, Route};
use ferry::internal::protocol::line::{self, Command, ParseError, Parsed, Status, Verb};
use ferry::internal::protocol::name::{self, MAX_NAME_LEN};
use ferry::internal::protocol::path::{self, FilePath, MAX_DEPTH, MAX_PATH_LEN};
use libfuzzer_sys::fuzz_target;

/// `protocol.md`: "1 to 255 bytes of UTF-8", the Linux `NAME_MAX`.
const SPEC_MAX_NAME_BYTES: usize = 255;

/// The rules of `protocol.md`, "File names": 1 to 255 bytes of UTF-8, no
/// `/`, no control character (0x00-0x1F and 0x7F), not `.` or `..`. Names
/// are never trimmed or decoded, so a name is judged exactly as it is.
fn allowed_by_spec(raw: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(raw) else {
        return false;
    };
    let size_ok = !text.is_empty() && text.len() <= SPEC_MAX_NAME_BYTES;
    let no_forbidden_char = text.chars().all(|c| c != '/' && c >= ' ' && c != '\u{7f}');
    let not_a_dot_entry = text != "." && text != "..";
    size_ok && no_forbidden_char && not_a_dot_entry
}

/// `protocol.md`, "Paths and folders": at most 4096 bytes (without the
/// leading `/`) and 64 names.
const SPEC_MAX_PATH_BYTES: usize = 4096;
const SPEC_MAX_DEPTH: usize = 64;

/// The path rules: an optional leading `/` (the user's root, dropped), then
/// names joined by single `/`, each allowed by the name rules, at most 64
/// of them and 4096 bytes.
fn path_by_spec(raw: &[u8]) -> Option<&[u8]> {
    let rest = match raw.first() {
        Some(b'/') => &raw[1..],
        _ => raw,
    };
    let names: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let ok = !rest.is_empty()
        && rest.len() <= SPEC_MAX_PATH_BYTES
        && names.len() <= SPEC_MAX_DEPTH
        && names.iter().all(|name| allowed_by_spec(name));
    ok.then_some(rest)
}

fn check_path(data: &[u8]) {
    assert_eq!(
        (MAX_PATH_LEN, MAX_DEPTH),
        (SPEC_MAX_PATH_BYTES, SPEC_MAX_DEPTH)
    );
    let want = path_by_spec(data);
    let got = path::validate(data);
    same(
        got.map(|p| p.as_str().as_bytes()),
        want,
        format_args!("path::validate of {}", show(data)),
    );
    let Some(valid) = got else {
        return;
    };
    // Its parts put together again are the path; the parent and the last
    // name split it at its last `/`; a path is within itself and its
    // parent, never within a longer one.
    let names: Vec<&str> = valid.names().map(|n| n.as_str()).collect();
    assert_eq!(names.join("/"), valid.as_str());
    assert_eq!(names.len(), valid.depth());
    assert_eq!(valid.leaf().as_str(), *names.last().unwrap());
    match valid.parent() {
        Some(parent) => {
            assert_eq!(format!("{parent}/{}", valid.leaf()), valid.as_str());
            assert!(valid.is_within(parent) && !parent.is_within(valid));
        }
        None => assert_eq!(valid.single(), Some(valid.leaf())),
    }
    assert!(valid.is_within(valid));
    assert!(path::is_valid(valid.as_str()));
    let owned = valid.to_owned();
    assert_eq!(owned.as_path(), valid);
    // A path is a line's last argument: `STAT <path>` holds it whole.
    check_in_line(b"STAT ", data, Verb::Stat, |name| Command::Stat { name });
    check_in_line(b"MOVE ", data, Verb::Move, |name| Command::Move { name });
}

fuzz_target!(|data: &[u8]| {
    check_percent_decoding(data);
    check_path_decoding(data);
    if !data.contains(&b'\n') {
        check_path(data);
    }
    assert_eq!(MAX_NAME_LEN, SPEC_MAX_NAME_BYTES);
    let expected = allowed_by_spec(data);

    let validated = name::validate(data);
    assert_eq!(
        validated.is_some(),
        expected,
        "validate disagrees on {}",
        show(data)
    );
    if let Some(valid) = validated {
        // Accepted as it is: the stored name is the name that was sent.
        same(valid.as_str().as_bytes(), data, "the name as sent");
        assert_eq!(valid.to_string(), valid.as_str());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(
            name::is_valid(text),
            expected,
            "is_valid disagrees on {}",
            show(data)
        );
    }

    // The same name as the last argument of a command line. A CRLF ending
    // drops exactly the one CR, so every byte of `data` reaches the name.
    if data.contains(&b'\n') {
        return;
    }
    check_in_line(b"GET ", data, Verb::Get, |name| Command::Get { name });
    check_in_line(b"PUT 0 ", data, Verb::Put, |name| Command::Put {
        size: 0,
        name,
    });
});

/// `prefix` + `raw` + CRLF must parse to the command holding exactly `raw`
/// when the name is allowed, and be refused for its name (or, when empty,
/// for a missing argument) otherwise.
fn check_in_line(
    prefix: &[u8],
    raw: &[u8],
    verb: Verb,
    command: impl for<'a> Fn(FilePath<'a>) -> Command<'a>,
) {
    let mut text = prefix.to_vec();
    text.extend_from_slice(raw);
    text.extend_from_slice(b"\r\n");
    if text.len() > line::MAX_LINE {
        return;
    }
    let want = if raw.is_empty() {
        Err(ParseError::BadArguments(verb))
    } else {
        match path::validate(raw) {
            Some(valid) => Ok(command(valid)),
            None => Err(ParseError::NameNotAllowed(verb)),
        }
    };
    same(
        line::parse(&text),
        Status::Complete(Parsed {
            command: want,
            consumed: text.len(),
        }),
        show(&text),
    );
}

/// `protocol.md`, "Paths": a name is percent-decoded exactly once, `%`
/// followed by two hexadecimal digits (either case) is that byte, every other
/// byte stands for itself, and a `%` without two hex digits makes the whole
/// segment invalid (`400`). Written byte by byte, without `hex`.
fn reference_decode(raw: &[u8]) -> Option<Vec<u8>> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let high = digit(*raw.get(i + 1)?)?;
            let low = digit(*raw.get(i + 2)?)?;
            out.push(high * 16 + low);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The HTTP front's names: `data` as the segment after `/files/`.
fn check_percent_decoding(data: &[u8]) {
    let decoded = reference_decode(data);
    same(
        http::percent_decode(data),
        decoded.clone(),
        format_args!("percent_decode of {}", show(data)),
    );
    // decode_name == validate(percent_decode(x)): decoded once, then the
    // line protocol's rules, on the decoded bytes as they are.
    let want = decoded
        .as_deref()
        .filter(|bytes| allowed_by_spec(bytes))
        .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap());
    same(
        http::decode_name(data),
        want,
        format_args!("decode_name of {}", show(data)),
    );
    // Exactly once: encoding every byte (upper and lower case hex) and
    // decoding gives the bytes back, `%` included, so `%252F` is `%2F`.
    for upper in [false, true] {
        let encoded: String = data
            .iter()
            .map(|b| {
                if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect();
        same(
            http::percent_decode(encoded.as_bytes()),
            Some(data.to_vec()),
            "decoding an encoded segment",
        );
    }
    // The segment behind `/files/` is what `route` hands on, undecoded.
    let mut path = b"/files/".to_vec();
    path.extend_from_slice(data);
    let want = if data.is_empty() {
        Route::Listing
    } else if let Some(folder) = data.strip_suffix(b"/") {
        Route::Folder(folder)
    } else {
        Route::File(data)
    };
    same(
        http::route(&path),
        want,
        format_args!("route of {}", show(&path)),
    );
}

/// `protocol.md`, "Paths" of the HTTP front: split at each `/` first, each
/// segment decoded once (an encoded `/` in a segment refuses the path),
/// then the path rules on the whole.
fn check_path_decoding(data: &[u8]) {
    let mut decoded: Option<Vec<u8>> = Some(Vec::new());
    for (i, segment) in data.split(|&b| b == b'/').enumerate() {
        let segment = reference_decode(segment).filter(|s| !s.is_empty() && !s.contains(&b'/'));
        decoded = match (decoded, segment) {
            (Some(mut out), Some(segment)) => {
                if i > 0 {
                    out.push(b'/');
                }
                out.extend_from_slice(&segment);
                Some(out)
            }
            _ => None,
        };
    }
    let want = decoded
        .as_deref()
        .and_then(path_by_spec)
        .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap());
    same(
        http::decode_path(data),
        want,
        format_args!("decode_path of {}", show(data)),
    );
}
