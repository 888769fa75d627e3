//! What `ferry` prints: listings, previews, summaries and JSON lines.

use std::fmt::Write as _;

use ferry::client::Entry;

/// One JSON object, built a field at a time; strings are escaped as RFC
/// 8259 says (`escape8259`).
pub struct Json(String);

impl Json {
    pub fn new() -> Json {
        Json(String::from("{"))
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{key}\":");
    }

    pub fn str(mut self, key: &str, value: &str) -> Json {
        self.key(key);
        let _ = write!(self.0, "\"{}\"", escape8259::escape(value));
        self
    }

    pub fn num(mut self, key: &str, value: u64) -> Json {
        self.key(key);
        let _ = write!(self.0, "{value}");
        self
    }

    pub fn float(mut self, key: &str, value: f64) -> Json {
        self.key(key);
        let _ = write!(self.0, "{value:.3}");
        self
    }

    pub fn bool(mut self, key: &str, value: bool) -> Json {
        self.key(key);
        let _ = write!(self.0, "{value}");
        self
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// `ls`: size, modification time (marked UTC) and name, in lined-up columns.
pub fn listing(entries: &[Entry], human: bool) -> String {
    let sizes: Vec<String> = entries
        .iter()
        .map(|e| {
            if human {
                human_size(e.size)
            } else {
                e.size.to_string()
            }
        })
        .collect();
    let width = sizes.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (entry, size) in entries.iter().zip(&sizes) {
        // The time zone is named: std has no time zone database, so the
        // times are UTC, and a reader must not take them for local times.
        let _ = writeln!(
            out,
            "{size:>width$}  {} UTC  {}{}",
            utc_minute(entry.mtime),
            entry.name,
            if entry.folder { "/" } else { "" }
        );
    }
    out
}

/// Sizes the way `ls -h` prints them: `1023`, `1.0K`, `15M`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc_minute(epoch_secs: u64) -> String {
    let days = (epoch_secs / 86_400) as i64;
    let secs = epoch_secs % 86_400;
    let (year, month, day) = ferry::internal::access::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// A preview made safe for a terminal: the text itself when it is text
/// (UTF-8 without control characters other than tab and line breaks, and
/// without the invisible marks that reorder a line), else a hex dump.
pub fn preview(bytes: &[u8]) -> String {
    match printable_text(bytes) {
        Some(text) if text.ends_with('\n') || text.is_empty() => text.to_string(),
        Some(text) => format!("{text}\n"),
        None => hex_dump(bytes),
    }
}

/// The bytes as text, when they are. A multi-byte character cut off by the
/// end of the preview is left out rather than making it binary.
fn printable_text(bytes: &[u8]) -> Option<&str> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) if err.error_len().is_none() => {
            std::str::from_utf8(&bytes[..err.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    let safe = |c: char| {
        matches!(c, '\n' | '\t' | '\r')
            || !(c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    };
    text.chars().all(safe).then_some(text)
}

/// `offset  16 bytes in hex  |ASCII|`, the layout of `hexdump -C`.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", row * 16);
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    if !bytes.is_empty() {
        let _ = writeln!(out, "{:08x}", bytes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_ls_h() {
        let cases = [
            (0, "0"),
            (1023, "1023"),
            (1024, "1.0K"),
            (1536, "1.5K"),
            (10 * 1024, "10K"),
            (5 * 1024 * 1024, "5.0M"),
            (1024 * 1024 * 1024 - 1, "1.0G"),
            (u64::MAX, "16E"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(human_size(bytes), shown, "{bytes}");
        }
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_763_700_000), "2025-11-21 04:40");
    }

    #[test]
    fn listing_lines_up_sizes() {
        let entries = [
            Entry {
                name: "a b".into(),
                folder: false,
                size: 5,
                mtime: 0,
            },
            Entry {
                name: "big".into(),
                folder: false,
                size: 123_456,
                mtime: 0,
            },
        ];
        assert_eq!(
            listing(&entries, false),
            "     5  1970-01-01 00:00 UTC  a b\n123456  1970-01-01 00:00 UTC  big\n"
        );
        assert_eq!(
            listing(&entries, true),
            "   5  1970-01-01 00:00 UTC  a b\n121K  1970-01-01 00:00 UTC  big\n"
        );
    }

    #[test]
    fn previews_of_text_stay_text_and_anything_else_is_dumped() {
        assert_eq!(preview(b"hello\nworld"), "hello\nworld\n");
        // A character cut in two by the 1024-byte limit.
        assert_eq!(preview("é".as_bytes()[..1].as_ref()), "");
        assert_eq!(preview(&[b'a', 0xc3]), "a\n");
        for hostile in [
            &b"\x1b[2J"[..],
            b"a\0b",
            "\u{202e}txt".as_bytes(),
            b"\xff\xfe",
        ] {
            assert!(preview(hostile).starts_with("00000000 "), "{hostile:?}");
        }
        assert_eq!(
            hex_dump(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRxy"),
            "00000000  89 50 4e 47 0d 0a 1a 0a  00 00 00 0d 49 48 44 52  |.PNG........IHDR|\n\
             00000010  78 79                                             |xy|\n\
             00000012\n"
        );
    }

    #[test]
    fn json_escapes_names() {
        let line = Json::new()
            .str("name", "a\"b\n")
            .num("size", 3)
            .bool("ok", true)
            .finish();
        assert_eq!(line, r#"{"name":"a\"b\n","size":3,"ok":true}"#);
    }
}
