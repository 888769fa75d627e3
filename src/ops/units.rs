//! Human units for sizes and durations, as `ferryd` accepts them on its
//! command line and in its config file.
//!
//! Sizes: a whole number of bytes, or a number (fractions allowed) with `K`,
//! `M`, `G` or `T` (powers of 1024; a trailing `B` or `iB` is allowed, case
//! does not matter): `17179869184`, `16G`, `512K`, `1.5GiB`.
//!
//! Durations: a number of seconds (fractions allowed), or numbers each with
//! a unit `ms`, `s`, `m`, `h` or `d`, largest first: `90`, `0.5`, `90s`,
//! `5m`, `1h30m`, `250ms`.

use std::time::Duration;

/// Parses a size in bytes; `None` when it is not one (or overflows).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let lower = text.to_ascii_lowercase();
    let unit_at = lower.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = lower.split_at(unit_at);
    let scale: u64 = match unit {
        "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let value = parse_number(number)?;
    let bytes = value * scale as f64;
    // 2^64 is exactly representable; anything at or above it overflows.
    (bytes < 18_446_744_073_709_551_616.0).then_some(bytes as u64)
}

/// Parses a duration; `None` when it is not one.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(secs) = parse_number(text) {
        return Duration::try_from_secs_f64(secs).ok();
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    // Largest first, each at most once: `1h30m`, not `30m1h` or `1m1m`.
    const UNITS: [(&str, f64); 5] = [
        ("d", 86400.0),
        ("h", 3600.0),
        ("ms", 0.001),
        ("m", 60.0),
        ("s", 1.0),
    ];
    const RANK: [usize; 5] = [0, 1, 4, 2, 3];
    let mut next_rank = 0;
    while !rest.is_empty() {
        let split = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let (number, tail) = rest.split_at(split);
        let value = parse_number(number)?;
        let index = UNITS.iter().position(|(unit, _)| tail.starts_with(unit))?;
        let (unit, scale) = UNITS[index];
        if RANK[index] < next_rank {
            return None;
        }
        next_rank = RANK[index] + 1;
        total = total.checked_add(Duration::try_from_secs_f64(value * scale).ok()?)?;
        rest = &tail[unit.len()..];
    }
    Some(total)
}

/// A non-negative decimal number: digits, at most one `.` with digits
/// around it (no sign, exponent, `inf` or `nan`).
fn parse_number(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    text.parse().ok()
}

/// A size as the shortest exact form: `16G`, `512K`, `1000`.
pub fn format_bytes(bytes: u64) -> String {
    for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A duration as `1h30m`, `90s` becomes `1m30s`, `0.5s`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() != 0 || duration.is_zero() {
        return format!("{}s", duration.as_secs_f64());
    }
    let mut secs = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("17179869184"), Some(16 << 30));
        assert_eq!(parse_bytes("16G"), Some(16 << 30));
        assert_eq!(parse_bytes("512k"), Some(512 << 10));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("10MB"), Some(10 << 20));
        assert_eq!(parse_bytes("7B"), Some(7));
        for bad in [
            "",
            "-1",
            "1.5",
            "G",
            "1X",
            "1e3",
            "inf",
            "1 G G",
            "16384P",
            "99999999T",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
        for n in [0, 1000, 1 << 10, 3 << 29, 16 << 30, u64::MAX] {
            assert_eq!(parse_bytes(&format_bytes(n)), Some(n));
        }
        assert_eq!(format_bytes(16 << 30), "16G");
    }

    #[test]
    fn durations() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("90"), Some(s(90)));
        assert_eq!(parse_duration("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Some(s(90)));
        assert_eq!(parse_duration("5m"), Some(s(300)));
        assert_eq!(parse_duration("1h30m"), Some(s(5400)));
        assert_eq!(parse_duration("1d2h3m4s"), Some(s(93784)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Some(s(90)));
        for bad in [
            "", "-1", "soon", "5x", "30m1h", "1m1m", "m", "1h 30m", "nan",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        for d in [
            s(0),
            s(5),
            s(90),
            s(5400),
            s(86400),
            Duration::from_millis(500),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
        assert_eq!(format_duration(s(5400)), "1h30m");
    }
}
