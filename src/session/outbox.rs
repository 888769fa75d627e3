//! What a session has queued for its client: one buffer with a read
//! position, which can be held back (the reply to a failed login waits for
//! its delay). Shared by every kind of session.

use std::time::Instant;

#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes before this were sent.
    pos: usize,
    /// Nothing is handed to the socket before then.
    hold_until: Option<Instant>,
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

    /// The buffer, to append to.
    pub fn buf(&mut self) -> &mut Vec<u8> {
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
