//! The wire: pure functions of bytes, no IO.
//!
//! - [`name`]: the file-name rules every protocol shares.
//! - [`path`]: paths, names joined by `/`.
//! - [`line`]: the line-protocol command parser and formatter.
//! - [`reply`]: every reply the line protocol sends.
//! - [`control`]: every reply the control port sends.
//! - [`http`]: HTTP/1.1 request heads (on `httparse`), paths, names,
//!   ranges, credentials, and response heads.
//! - [`web`]: the web interface's cookie, origin and form fields.
//! - [`chunked`]: the chunked transfer coding, decoded incrementally.
//! - [`proxy`]: the PROXY protocol header (v1 and v2) a load balancer
//!   sends before anything else.
//! - [`webdav`]: WebDAV's XML bodies and header fields, and its `207`
//!   bodies.

pub mod chunked;
pub mod control;
pub mod http;
pub mod line;
pub mod name;
pub mod path;
pub mod proxy;
pub mod reply;
pub mod web;
pub mod webdav;

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
