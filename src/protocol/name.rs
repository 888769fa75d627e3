//! File-name rules.
//!
//! A name is accepted or refused as it is: nothing is trimmed, decoded or
//! normalised, so the name a client sends is the name that is stored.

/// Longest file name in bytes, the limit of common Linux file systems
/// (`NAME_MAX`), so that any accepted name can be created.
pub const MAX_NAME_LEN: usize = 255;

/// A file name that passed [`validate`]. Storage takes only these, so a name
/// that was not checked cannot reach the file system.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName<'a>(&'a str);

impl<'a> FileName<'a> {
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl std::fmt::Debug for FileName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl std::fmt::Display for FileName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names hold no control characters, so they are safe in a log line.
        f.write_str(self.0)
    }
}

/// Checks a file name against the rules in `protocol.md`: 1 to 255 bytes of
/// UTF-8, no `/`, no control character (0x00-0x1F, 0x7F), not `.` or `..`.
pub fn validate(raw: &[u8]) -> Option<FileName<'_>> {
    if raw.is_empty() || raw.len() > MAX_NAME_LEN {
        return None;
    }
    if raw == b"." || raw == b".." {
        return None;
    }
    if raw.iter().any(|&b| b == b'/' || b < 0x20 || b == 0x7f) {
        return None;
    }
    std::str::from_utf8(raw).ok().map(FileName)
}

/// True when `name` passes [`validate`].
pub fn is_valid(name: &str) -> bool {
    validate(name.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "a",
            "hello.txt",
            " spaced name ",
            ".hidden",
            "...",
            "ünïcödé",
            "a\\b",
        ] {
            assert_eq!(
                validate(ok.as_bytes()).map(|n| n.as_str()),
                Some(ok),
                "{ok:?}"
            );
        }
        let longest = "x".repeat(MAX_NAME_LEN);
        assert!(is_valid(&longest));
    }

    #[test]
    fn refuses_escapes_and_control_bytes() {
        let too_long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"../x",
            b"/etc/passwd",
            b"a/b",
            b"nul\0",
            b"tab\t",
            b"cr\rlf",
            b"del\x7f",
            b"\xff\xfe",
            too_long.as_bytes(),
        ] {
            assert_eq!(validate(bad), None, "{bad:?}");
        }
    }
}
