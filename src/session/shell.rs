//! What every front keeps whatever its protocol: the peer, the bytes
//! received and not yet used, the outbox, whether the peer closed its side
//! and the server is shutting down, and when the connection last moved.

use std::net::SocketAddr;
use std::time::Instant;

use super::outbox::Outbox;

#[derive(Debug)]
pub struct Shell {
    pub peer: SocketAddr,
    /// Bytes received but not used yet (a command line, a request head, or
    /// body bytes right behind it); bounded by each front's read limit.
    pub input: Vec<u8>,
    /// Replies and download data; held back after a failed login, and
    /// meanwhile the session takes nothing either.
    pub out: Outbox,
    pub peer_eof: bool,
    pub shutting_down: bool,
    /// Last byte received or sent: the idle and stall timeouts count from
    /// here.
    pub last_activity: Instant,
}

impl Shell {
    pub fn new(peer: SocketAddr) -> Shell {
        Shell {
            peer,
            input: Vec::new(),
            out: Outbox::default(),
            peer_eof: false,
            shutting_down: false,
            last_activity: Instant::now(),
        }
    }

    /// Bytes arrived or left: the connection is alive.
    pub fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// True while the session takes no bytes whatever its state: the peer
    /// closed its side, or a held reply waits.
    pub fn deaf(&self) -> bool {
        self.peer_eof || self.out.is_held()
    }

    /// An idle session keeps no allocation.
    pub fn release_idle_buffers(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = Vec::new();
        }
        self.out.shrink_if_empty();
    }
}
