//! Failure messages short enough to read: fuzz inputs and the commands that
//! borrow from them can be kilobytes long.

// Each target uses a different part of this module.
#![allow(dead_code)]

use std::fmt::{Debug, Display};

/// Longest excerpt of a value shown in a failure message.
const EXCERPT: usize = 240;

/// Bytes as an escaped string (`b"..."` style), cut short when long.
pub fn show(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(EXCERPT)];
    let escaped = head.escape_ascii().to_string();
    if head.len() < bytes.len() {
        format!("\"{escaped}\"... (of {} bytes)", bytes.len())
    } else {
        format!("\"{escaped}\"")
    }
}

/// A value's `Debug` form, cut short when long.
pub fn short(value: &impl Debug) -> String {
    let text = format!("{value:?}");
    if text.len() <= EXCERPT {
        return text;
    }
    let mut end = EXCERPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} chars)", &text[..end], text.len())
}

/// `assert_eq!` with short messages.
#[track_caller]
pub fn same<T: PartialEq + Debug>(got: T, want: T, what: impl Display) {
    if got != want {
        panic!("{what}\n  got: {}\n want: {}", short(&got), short(&want));
    }
}
