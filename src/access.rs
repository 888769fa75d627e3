//! The access log: one line per command (line protocol) or request (HTTP),
//! whatever its outcome, refusals included.
//!
//! ```text
//! 2026-11-30T01:20:00.123Z 127.0.0.1:50312 line alice GET "report.pdf" 150 52311 0.004
//! {"time":"2026-11-30T01:20:00.123Z","addr":"127.0.0.1:50312","proto":"line","user":"alice","verb":"GET","path":"report.pdf","code":150,"bytes":52311,"secs":0.004}
//! ```
//!
//! Fields: time (UTC, milliseconds), client address, front, user (`-`
//! before a login), verb, path (quoted and escaped: it comes from the
//! client), the reply code or HTTP status, the bytes of the body or data
//! moved, and the seconds the command took. The audit log (`audit.rs`) is
//! separate: it records security events for people and fail2ban in the
//! main log; this one records traffic for whoever counts it.
//!
//! Lines are kept in a buffer and written when it holds [`FLUSH_BYTES`],
//! when the event loop finds the oldest line [`FLUSH_AFTER`] old, and at
//! shutdown, so a busy server makes one write per many requests and an
//! idle one never wakes for the log.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A buffer this full is written at once: large enough that a busy server
/// writes once per a few hundred requests, small enough to be nothing per
/// server.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// No line waits longer than this to be written.
pub const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Space-separated fields, client values quoted.
    Text,
    /// One JSON object per line.
    Json,
}

/// One command or request, as the access log records it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub peer: SocketAddr,
    /// `line` or `http`.
    pub proto: &'a str,
    pub user: Option<&'a str>,
    pub verb: &'a str,
    pub path: &'a str,
    pub code: u16,
    pub bytes: u64,
    pub duration: Duration,
}

/// Opens the access log's destination: `-` is standard error, anything
/// else a file opened for appending (created mode 0640).
pub fn open_sink(path: &std::path::Path) -> std::io::Result<Box<dyn Write + Send>> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stderr()));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    Ok(Box::new(file))
}

/// The buffered access log.
pub struct AccessLog {
    format: Format,
    sink: Box<dyn Write + Send>,
    buf: Vec<u8>,
    /// When the oldest buffered line was added.
    oldest: Option<Instant>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.format)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// An access log writing to `sink` (a file, standard error).
    pub fn new(format: Format, sink: Box<dyn Write + Send>) -> AccessLog {
        AccessLog {
            format,
            sink,
            buf: Vec::new(),
            oldest: None,
        }
    }

    /// Adds the line for `entry`, written now if the buffer is full.
    pub fn record(&mut self, entry: &Entry<'_>) {
        let mut line = String::with_capacity(160);
        format_line(&mut line, self.format, SystemTime::now(), entry);
        self.buf.extend_from_slice(line.as_bytes());
        self.oldest.get_or_insert_with(Instant::now);
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// When the buffered lines must be written, if there are any.
    pub fn flush_due(&self) -> Option<Instant> {
        self.oldest.map(|oldest| oldest + FLUSH_AFTER)
    }

    /// Writes what is buffered. A failed write is reported once per
    /// failure and its lines dropped: the log must not grow without end
    /// or stop the server.
    pub fn flush(&mut self) {
        self.oldest = None;
        if self.buf.is_empty() {
            return;
        }
        let result = self
            .sink
            .write_all(&self.buf)
            .and_then(|()| self.sink.flush());
        if let Err(err) = result {
            log::warn!("access log: {} bytes not written: {err}", self.buf.len());
        }
        self.buf.clear();
        if self.buf.capacity() > FLUSH_BYTES * 2 {
            self.buf.shrink_to(FLUSH_BYTES);
        }
    }

    /// Writes what is buffered, then uses `sink` from now on (the file was
    /// reopened after a rotation).
    pub fn replace_sink(&mut self, sink: Box<dyn Write + Send>) {
        self.flush();
        self.sink = sink;
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Appends the line for `entry` at `time`, newline included.
pub fn format_line(out: &mut String, format: Format, time: SystemTime, entry: &Entry<'_>) {
    let time = utc_timestamp(time);
    let secs = entry.duration.as_secs_f64();
    match format {
        Format::Text => {
            let _ = writeln!(
                out,
                "{time} {} {} {} {} {:?} {} {} {secs:.3}",
                entry.peer,
                entry.proto,
                entry
                    .user
                    .map_or_else(|| "-".to_owned(), |u| format!("{u:?}")),
                entry.verb,
                entry.path,
                entry.code,
                entry.bytes,
            );
        }
        Format::Json => {
            let _ = write!(
                out,
                "{{\"time\":\"{time}\",\"addr\":\"{}\",\"proto\":\"{}\",\"user\":",
                entry.peer, entry.proto
            );
            match entry.user {
                Some(user) => json_string(out, user),
                None => out.push_str("null"),
            }
            let _ = write!(out, ",\"verb\":");
            json_string(out, entry.verb);
            let _ = write!(out, ",\"path\":");
            json_string(out, entry.path);
            let _ = writeln!(
                out,
                ",\"code\":{},\"bytes\":{},\"secs\":{secs:.3}}}",
                entry.code, entry.bytes
            );
        }
    }
}

fn json_string(out: &mut String, value: &str) {
    out.push('"');
    out.push_str(&escape8259::escape(value));
    out.push('"');
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

pub use crate::protocol::civil_from_days;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    fn entry<'a>(path: &'a str, user: Option<&'a str>) -> Entry<'a> {
        Entry {
            peer: "127.0.0.1:50312".parse().unwrap(),
            proto: "line",
            user,
            verb: "GET",
            path,
            code: 150,
            bytes: 52311,
            duration: Duration::from_millis(4),
        }
    }

    #[test]
    fn lines_in_both_formats() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_465_600_123);
        let mut text = String::new();
        format_line(
            &mut text,
            Format::Text,
            at,
            &entry("report.pdf", Some("alice")),
        );
        assert_eq!(
            text,
            "2025-11-30T01:20:00.123Z 127.0.0.1:50312 line \"alice\" GET \"report.pdf\" 150 52311 0.004\n"
        );
        let mut json = String::new();
        format_line(&mut json, Format::Json, at, &entry("a\"b\n", None));
        assert_eq!(
            json,
            "{\"time\":\"2025-11-30T01:20:00.123Z\",\"addr\":\"127.0.0.1:50312\",\"proto\":\"line\",\"user\":null,\"verb\":\"GET\",\"path\":\"a\\\"b\\n\",\"code\":150,\"bytes\":52311,\"secs\":0.004}\n"
        );
    }

    #[test]
    fn a_client_value_cannot_end_a_line() {
        let mut text = String::new();
        let forged = "x\" 200 1 0.1\n2025-01-01T00:00:00.000Z 1.2.3.4:1 http";
        format_line(
            &mut text,
            Format::Text,
            UNIX_EPOCH,
            &entry(forged, Some("a\nb")),
        );
        assert_eq!(text.matches('\n').count(), 1, "{text}");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_wait_in_the_buffer_until_it_fills_or_is_flushed() {
        let written = Shared::default();
        let mut log = AccessLog::new(Format::Text, Box::new(written.clone()));
        assert_eq!(log.flush_due(), None, "nothing buffered, nothing due");
        log.record(&entry("a", Some("alice")));
        assert!(
            written.0.lock().unwrap().is_empty(),
            "one line is not written at once"
        );
        let due = log.flush_due().expect("a line waits");
        assert!(due <= Instant::now() + FLUSH_AFTER);
        log.flush();
        assert_eq!(
            written
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            1
        );
        assert_eq!(log.flush_due(), None);
        let long = "x".repeat(1000);
        for _ in 0..FLUSH_BYTES / 1000 + 1 {
            log.record(&entry(&long, None));
        }
        assert!(
            written.0.lock().unwrap().len() > FLUSH_BYTES,
            "a full buffer is written without waiting"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
