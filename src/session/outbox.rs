//! What a session has queued for its client: one buffer with a read
//! position, which can be held back (the reply to a failed login waits for
//! its delay), and the file a download sends. Shared by every kind of
//! session.
//!
//! A file's bytes reach the client one of two ways. By default the session
//! reads them into the buffer a piece at a time ([`FileBody::fill`]), so a
//! driver without a socket (a test, a fuzz target) sees every byte in
//! [`Outbox::sendable`]. The reactor instead asks for direct file output
//! ([`Outbox::send_files_directly`]): once the bytes before the file are
//! sent, the session offers the rest of the file as a [`FileOutput`] and
//! the reactor hands it to the kernel with `sendfile`, so file data never
//! passes through a buffer of ours.

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

/// Downloads shorter than this go through the buffer when the reactor
/// sends files itself (its argument to [`Outbox::send_files_directly`]):
/// then one write carries the reply (or response
/// head) and the whole file, where `sendfile` would take a write for the
/// reply and a `sendfile` for the file, and the client two wake-ups. For
/// 4 KiB GETs on 64 connections that was about 43,000 requests a second
/// against 30,000 (line protocol; HTTP 24,000 against 20,000).
pub const DIRECT_MIN: u64 = 64 * 1024;

/// Bytes the buffer first takes: a response head with its fields is about
/// 200.
const FIRST_CAPACITY: usize = 512;

#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes before this were sent.
    pos: usize,
    /// Nothing is handed to the socket before then.
    hold_until: Option<Instant>,
    /// The driver sends the file bytes of downloads of at least this many
    /// bytes itself (see the module docs).
    /// (A `NonZeroU64`: an idle session is 8 bytes smaller; a minimum of 0
    /// and of 1 send the same files, as an empty download sends none.)
    direct_min: Option<NonZeroU64>,
}

/// Bytes of a file that the driver should send straight from the file to
/// the socket, after everything in the buffer: `len` bytes from `offset`.
#[derive(Debug, Clone, Copy)]
pub struct FileOutput<'a> {
    pub file: &'a File,
    pub offset: u64,
    pub len: u64,
}

/// A file being downloaded and the next byte of it to send. Reads go by
/// offset, never through the file's own position, so one handle can serve
/// several downloads at once (the storage keeps small files' handles
/// between downloads and shares them).
#[derive(Debug)]
pub struct FileBody {
    file: Arc<File>,
    next: u64,
}

impl FileBody {
    /// Sends `file` from `offset` on.
    pub fn new(file: Arc<File>, offset: u64) -> FileBody {
        FileBody { file, next: offset }
    }

    /// Appends the next `want` bytes of the file to `out` (the buffer
    /// path). A file that ends sooner (it was truncated behind the
    /// server's back) is `UnexpectedEof`; after any error nothing was
    /// appended.
    pub fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> io::Result<()> {
        let before = out.len();
        out.resize(before + want, 0);
        let mut filled = 0;
        let result = loop {
            if filled == want {
                break Ok(());
            }
            let offset = self.next + filled as u64;
            match self.file.read_at(&mut out[before + filled..], offset) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        match result {
            Ok(()) => self.next += want as u64,
            Err(_) => out.truncate(before),
        }
        result
    }

    /// The next `len` bytes, for the driver to send.
    pub fn output(&self, len: u64) -> FileOutput<'_> {
        FileOutput {
            file: &self.file,
            offset: self.next,
            len,
        }
    }

    /// The driver sent `n` more bytes of the file.
    pub fn sent(&mut self, n: u64) {
        self.next += n;
    }
}

impl Outbox {
    /// What may be sent now: the queued bytes, or nothing while held.
    pub fn sendable(&self) -> &[u8] {
        if self.hold_until.is_some() {
            return &[];
        }
        self.queued()
    }

    /// Every byte queued and not sent yet, held or not.
    pub fn queued(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The buffer, to append to. An empty one (an idle session holds
    /// none) starts with room for a reply or a response head, so that one
    /// allocation holds it rather than a doubling per piece written.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(FIRST_CAPACITY);
        }
        &mut self.buf
    }

    /// Marks `n` more bytes as sent. The sent prefix is dropped once it is
    /// at least half the buffer, so a client that keeps taking all but a
    /// little of each write cannot grow the buffer by everything ever sent
    /// (and each byte is moved at most once on average).
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Drops everything queued and the allocation.
    pub fn discard(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
    }

    /// Gives back the allocation when nothing is queued (an idle session
    /// holds no buffer).
    pub fn shrink_if_empty(&mut self) {
        if self.queued().is_empty() && self.buf.capacity() > 0 {
            self.discard();
        }
    }

    /// From now on the driver sends the file bytes of downloads of at
    /// least `min_len` bytes itself ([`FileOutput`]).
    pub fn send_files_directly(&mut self, min_len: u64) {
        self.direct_min = NonZeroU64::new(min_len.max(1));
    }

    /// The driver cannot send from files after all (`sendfile` refused
    /// the pair of descriptors): file bytes go through the buffer again.
    pub fn stop_sending_files_directly(&mut self) {
        self.direct_min = None;
    }

    /// Whether a download of `total` bytes is sent by the driver rather
    /// than through the buffer. Decided by the whole download's length, so
    /// one download never switches midway (unless the driver gives up on
    /// `sendfile`).
    pub fn sends_file_directly(&self, total: u64) -> bool {
        self.direct_min.is_some_and(|min| total >= min.get())
    }

    /// Whether a file of a download of `total` bytes may be offered to
    /// the driver now: the driver sends it, and everything queued before
    /// the file has been sent.
    pub fn file_may_follow(&self, total: u64) -> bool {
        self.file_follows(total) && self.queued().is_empty()
    }

    /// Whether a file of a download of `total` bytes will be offered to
    /// the driver as soon as what is queued now has been sent.
    pub fn file_follows(&self, total: u64) -> bool {
        self.sends_file_directly(total) && self.hold_until.is_none()
    }

    /// Holds everything queued (and queued later) until `until`.
    pub fn hold(&mut self, until: Instant) {
        self.hold_until = Some(until);
    }

    pub fn held_until(&self) -> Option<Instant> {
        self.hold_until
    }

    pub fn is_held(&self) -> bool {
        self.hold_until.is_some()
    }

    /// Ends the hold once its time has come; true when it did.
    pub fn release_if_due(&mut self, now: Instant) -> bool {
        match self.hold_until {
            Some(until) if now >= until => {
                self.hold_until = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sent_bytes_do_not_pile_up() {
        let mut outbox = Outbox::default();
        for _ in 0..10_000 {
            outbox.buf().extend_from_slice(b"0123456789");
            let n = outbox.sendable().len() - 1;
            outbox.consume(n);
        }
        assert_eq!(outbox.queued().len(), 1);
        assert!(outbox.buf.len() <= 32, "{}", outbox.buf.len());
    }

    #[test]
    fn held_bytes_wait_for_their_time() {
        let mut outbox = Outbox::default();
        outbox.buf().extend_from_slice(b"530 login incorrect\r\n");
        let now = Instant::now();
        outbox.hold(now + Duration::from_secs(1));
        assert!(outbox.sendable().is_empty());
        assert_eq!(outbox.queued().len(), 21);
        outbox.shrink_if_empty();
        assert!(!outbox.release_if_due(now));
        assert!(outbox.release_if_due(now + Duration::from_secs(1)));
        assert_eq!(outbox.sendable(), b"530 login incorrect\r\n");
    }
}
