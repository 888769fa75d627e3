//! What every front keeps whatever its protocol: the peer, the bytes
//! received and not yet used, the outbox, whether the peer closed its side
//! and the server is shutting down, and when the connection last moved.

use std::net::SocketAddr;
use std::time::Instant;

use super::Services;
use super::outbox::Outbox;
use crate::metrics::Protocol;

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
    /// A reply ended the connection (`421` when descriptors ran out): the
    /// session takes nothing more and closes once between commands, which
    /// gives a descriptor back.
    pub hang_up: bool,
    /// Last byte received or sent: the idle and stall timeouts count from
    /// here.
    pub last_activity: Instant,
    /// The command or request the access log will record once it is
    /// answered; only while there is an access log.
    access: Option<Box<Pending>>,
    /// What the transport underneath says about the connection (TLS or
    /// not, a client certificate); set by the reactor.
    pub channel: Channel,
}

/// What a session may know of its connection's transport: whether it is
/// confidential, and whom a client certificate names. Nothing else of TLS
/// reaches a session.
#[derive(Debug, Default)]
pub struct Channel {
    /// The bytes cross the network encrypted (TLS).
    pub secure: bool,
    /// A client certificate came: `Ok(common name)` when it is signed by a
    /// client CA and valid now, `Err(why)` when not (it names nobody).
    pub certified: Option<Box<Result<String, String>>>,
}

impl Channel {
    pub fn secure() -> Channel {
        Channel {
            secure: true,
            certified: None,
        }
    }

    /// The user a valid client certificate names.
    pub fn certified_user(&self) -> Option<&str> {
        self.certified.as_deref()?.as_deref().ok()
    }

    /// True when `--require-tls` keeps this connection from logging in:
    /// plaintext, from an address that is not loopback.
    pub fn refused_by(&self, peer: &SocketAddr, require_tls: bool) -> bool {
        require_tls && !self.secure && !peer.ip().is_loopback()
    }
}

/// What the access log needs of a command or request until its answer.
#[derive(Debug)]
struct Pending {
    user: Option<String>,
    verb: &'static str,
    path: String,
    bytes: u64,
    started: Instant,
}

impl Shell {
    pub fn new(peer: SocketAddr) -> Shell {
        Shell {
            peer,
            input: Vec::new(),
            out: Outbox::default(),
            peer_eof: false,
            shutting_down: false,
            hang_up: false,
            last_activity: Instant::now(),
            access: None,
            channel: Channel::default(),
        }
    }

    /// A command or request begins (only noted when there is an access
    /// log). `path` is what it names: a file, a folder, a URL path.
    /// A request handled again (after its password check) keeps the
    /// time it began.
    pub fn access_begin(
        &mut self,
        services: &Services,
        user: Option<&[u8]>,
        verb: &'static str,
        path: &[u8],
    ) {
        if self.access.is_some() || services.access.borrow().is_none() {
            return;
        }
        self.access = Some(Box::new(Pending {
            user: user.map(|user| String::from_utf8_lossy(user).into_owned()),
            verb,
            path: String::from_utf8_lossy(path).into_owned(),
            bytes: 0,
            started: Instant::now(),
        }));
    }

    /// The user the pending request turned out to be for, when no login
    /// check said so (a web interface login's cookie).
    pub fn access_user(&mut self, user: &str) {
        if let Some(pending) = &mut self.access {
            pending.user = Some(user.to_owned());
        }
    }

    /// The verb of the command or request the access log waits to record.
    pub fn access_verb(&self) -> Option<&'static str> {
        self.access.as_ref().map(|pending| pending.verb)
    }

    /// Data the pending command moves (a block of a listing, an upload).
    pub fn access_bytes(&mut self, bytes: u64) {
        if let Some(pending) = &mut self.access {
            pending.bytes += bytes;
        }
    }

    /// The pending command is answered with `code`: its access-log line,
    /// for `user` if the front knows one by now, else for the one it knew
    /// at the start.
    pub fn access_end(
        &mut self,
        services: &Services,
        protocol: Protocol,
        user: Option<&str>,
        code: u16,
    ) {
        let Some(pending) = self.access.take() else {
            return;
        };
        services.access(&crate::access::Entry {
            peer: self.peer,
            proto: protocol.as_str(),
            user: user.or(pending.user.as_deref()),
            verb: pending.verb,
            path: &pending.path,
            code,
            bytes: pending.bytes,
            duration: pending.started.elapsed(),
        });
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
