//! `line::parse` on arbitrary bytes, read as a stream of pipelined command
//! lines the way a session reads it: parse, drop what was consumed, and after
//! a too-long line skip to its LF.
//!
//! Beyond "no panic", every decision is checked against what `parse`
//! documents: `Partial` only without a LF in a short buffer, `LineTooLong`
//! only for a full window without LF, `consumed` ending right after the first
//! LF, nothing behind the line changing the answer, the verb being
//! case-insensitive, one CR before the LF being dropped. Every accepted
//! command must round-trip: `write_to` then `parse` gives an equal command
//! that consumes exactly the written bytes. Nothing here lists the verbs, so
//! new commands are covered as soon as `parse` and `write_to` know them.

#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{same, show};
use ferry::internal::protocol::line::{self, Command, MAX_LINE, ParseError, Parsed, Status};
use ferry::internal::protocol::path::{self as name, FilePath};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some(taken) = next_line(rest) {
        assert!(taken > 0 && taken <= rest.len());
        rest = &rest[taken..];
    }
});

/// Checks the decision on the first line of `buf` and returns how many bytes
/// a session drops for it (the line, or a too-long line up to its LF), or
/// `None` when it has to wait for more input.
fn next_line(buf: &[u8]) -> Option<usize> {
    let status = line::parse(buf);
    same(
        &status,
        &line::parse(buf),
        "parse is a function of its input",
    );
    let window = &buf[..buf.len().min(MAX_LINE)];
    let first_lf = window.iter().position(|&b| b == b'\n');

    let Status::Complete(Parsed { command, consumed }) = status else {
        assert!(first_lf.is_none(), "Partial although a LF is in the window");
        assert!(buf.len() < MAX_LINE, "Partial with a full window");
        return None;
    };
    assert!(consumed > 0 && consumed <= buf.len().min(MAX_LINE));
    // Bytes behind the decided line never change the decision.
    same(
        line::parse(&buf[..consumed]),
        Status::Complete(Parsed {
            command: command.clone(),
            consumed,
        }),
        format_args!("the decided line alone: {}", show(&buf[..consumed])),
    );

    let Some(lf) = first_lf else {
        assert_eq!(command, Err(ParseError::LineTooLong));
        assert_eq!(consumed, MAX_LINE);
        // The session discards the rest of the line, up to its LF.
        let after = &buf[MAX_LINE..];
        return match line::skip_line(after) {
            Some(end) => {
                assert!(end > 0 && after[end - 1] == b'\n');
                assert!(!after[..end - 1].contains(&b'\n'));
                Some(MAX_LINE + end)
            }
            None => {
                assert!(!after.contains(&b'\n'));
                None
            }
        };
    };
    assert_eq!(consumed, lf + 1, "a line ends right after its first LF");
    assert_ne!(command, Err(ParseError::LineTooLong), "the line fits");
    check_line(&buf[..lf], &command);
    if let Ok(command) = &command {
        check_command(command, &buf[..lf]);
    }
    Some(consumed)
}

/// `text` is the line without its LF (a CR before it is still there).
fn check_line(text: &[u8], command: &Result<Command<'_>, ParseError>) {
    let content = text.strip_suffix(b"\r").unwrap_or(text);
    assert_eq!(
        *command == Err(ParseError::EmptyLine),
        content.is_empty(),
        "EmptyLine exactly for a line with nothing but its terminator"
    );

    let word_end = content
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(content.len());
    let verb = match command {
        Ok(command) => Some(command.verb()),
        Err(err) => err.verb(),
    };
    if let Some(verb) = verb {
        assert!(
            verb.as_str()
                .as_bytes()
                .eq_ignore_ascii_case(&content[..word_end]),
            "the first word is the verb {verb:?}"
        );
    }

    // The same content, with either terminator (where that keeps the
    // content) and with the first word in either case, means the same.
    let mut endings: Vec<&[u8]> = vec![b"\r\n"];
    if !content.ends_with(b"\r") {
        endings.push(b"\n");
    }
    for ending in endings {
        for upper in [false, true] {
            let mut variant = content.to_vec();
            if upper {
                variant[..word_end].make_ascii_uppercase();
            } else {
                variant[..word_end].make_ascii_lowercase();
            }
            variant.extend_from_slice(ending);
            if variant.len() > MAX_LINE {
                continue;
            }
            same(
                line::parse(&variant),
                Status::Complete(Parsed {
                    command: command.clone(),
                    consumed: variant.len(),
                }),
                format_args!("{} means the same as {}", show(&variant), show(text)),
            );
        }
    }
}

/// An accepted command: its parts obey their rules, and it round-trips.
fn check_command(command: &Command<'_>, text: &[u8]) {
    if let Command::Auth { user, password } = command {
        // An empty password is `AUTH <user>` alone: a certificate login.
        assert!(!user.is_empty());
        assert!(!user.contains(&b' '), "the user ends at the first space");
        assert!(!user.contains(&b'\n') && !password.contains(&b'\n'));
    }
    if let Command::Expect { sha256 } = command {
        // The digest is exactly the 64 hex digits of the line, in any case.
        let hex = sha256.to_string();
        assert_eq!(hex.len(), 64);
        let content = text.strip_suffix(b"\r").unwrap_or(text);
        assert!(
            content.len() >= 64
                && content[content.len() - 64..].eq_ignore_ascii_case(hex.as_bytes()),
            "{hex} from {}",
            show(text)
        );
    }
    if let Some(name) = file_name(command) {
        same(
            name::validate(name.as_str().as_bytes()),
            Some(name),
            "a parsed path is valid",
        );
    }

    let mut written = Vec::new();
    command.write_to(&mut written);
    // One line, ending in LF; in CRLF only when the command's own last byte
    // is a CR (a password may end in one), which `parse` would otherwise
    // take for the terminator's.
    assert_eq!(
        written.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one line: {}",
        show(&written)
    );
    let body = written.strip_suffix(b"\n").expect("ends with LF");
    let written_content = match body.strip_suffix(b"\r") {
        Some(before) if before.ends_with(b"\r") => before,
        Some(_) => panic!("CRLF after a command not ending in CR: {}", show(&written)),
        None => body,
    };
    // The written form is canonical (one space, upper-case verb, no leading
    // zeros, lower-case hex), so its content is never longer than the line
    // it came from, and neither is the whole written line.
    let content = text.strip_suffix(b"\r").unwrap_or(text);
    assert!(
        written_content.len() <= content.len() && written.len() <= text.len() + 1,
        "{} written from {}",
        show(&written),
        show(text)
    );
    same(
        line::parse(&written),
        Status::Complete(Parsed {
            command: Ok(command.clone()),
            consumed: written.len(),
        }),
        format_args!(
            "round trip through write_to: {} ({} bytes) from the line {}",
            show(&written),
            written.len(),
            show(text)
        ),
    );
}

/// The path a command carries. Add new commands that name a path here.
fn file_name<'a>(command: &Command<'a>) -> Option<FilePath<'a>> {
    match command {
        Command::View { name }
        | Command::Get { name }
        | Command::Put { name, .. }
        | Command::Del { name }
        | Command::Hash { name }
        | Command::Partial { name }
        | Command::Stat { name }
        | Command::Mkdir { name }
        | Command::Rmdir { name }
        | Command::Rmtree { name }
        | Command::From { name }
        | Command::Move { name }
        | Command::Copy { name } => Some(*name),
        Command::List { path } | Command::Tree { path } => *path,
        _ => None,
    }
}
