//! `name::validate` and `name::is_valid` against a reference model of the
//! file-name rules in `protocol.md`, and the same rules seen through a
//! command line.
//!
//! The model is written from the protocol text, not from the code: it reads
//! the name as characters where `validate` scans bytes, so the two only agree
//! if both follow the rules.

#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{same, show};
use ferry::protocol::line::{self, Command, ParseError, Parsed, Status, Verb};
use ferry::protocol::name::{self, MAX_NAME_LEN};
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

fuzz_target!(|data: &[u8]| {
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
    command: impl for<'a> Fn(name::FileName<'a>) -> Command<'a>,
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
        match name::validate(raw) {
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
