//! The phase before a session: reading the PROXY protocol header that a
//! trusted load balancer (`--trusted-proxies`) sends first on each
//! connection, to learn the real client's address.
//!
//! Bounded in bytes (at most [`proxy::MAX_V2`], the longest header taken)
//! and in time ([`HEADER_TIMEOUT`]). Whatever arrives behind the header
//! (an HTTP request, a TLS ClientHello) is handed on untouched as the
//! first input of what comes next.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::metrics::Protocol;
use crate::protocol::proxy::{self, Status};
use crate::session::http::Role as HttpRole;
use crate::tls;

/// Longest a trusted proxy has to send its header (less when
/// `--head-timeout` is shorter). HAProxy sends it at once with the
/// connection, before any client byte, so a few seconds only ever run out
/// for a peer that is not really a proxy.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection from a trusted proxy whose header is not read yet.
pub(super) struct Preface {
    pub stream: TcpStream,
    /// The proxy's address.
    pub proxy: SocketAddr,
    pub protocol: Protocol,
    pub role: HttpRole,
    /// The TLS front the connection came in on: TLS starts after the
    /// header.
    pub secure: Option<tls::Front>,
    pub deadline: Instant,
    buf: Vec<u8>,
}

/// Where reading the header got to.
pub(super) enum Step {
    /// The socket has nothing more now.
    Wait,
    /// A whole header: the client it names (`None`: the proxy's own
    /// connection, such as a health check) and the bytes read past it.
    Done {
        client: Option<SocketAddr>,
        early: Vec<u8>,
    },
    /// Not a header, closed early, or a socket error: close it.
    Failed(String),
}

impl Preface {
    pub(super) fn new(
        stream: TcpStream,
        proxy: SocketAddr,
        protocol: Protocol,
        role: HttpRole,
        secure: Option<tls::Front>,
        deadline: Instant,
    ) -> Preface {
        Preface {
            stream,
            proxy,
            protocol,
            role,
            secure,
            deadline,
            buf: Vec::new(),
        }
    }

    /// Reads what the socket has until the header is whole, wrong, or the
    /// socket would block. Never holds more than [`proxy::MAX_V2`] bytes:
    /// the parser decides by then.
    pub(super) fn read(&mut self) -> Step {
        let mut chunk = [0u8; proxy::MAX_V2];
        loop {
            let room = proxy::MAX_V2 - self.buf.len();
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => return Step::Failed("closed before its PROXY header".to_owned()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    match proxy::parse(&self.buf) {
                        Ok(Status::Partial) => continue,
                        Ok(Status::Complete(header)) => {
                            return Step::Done {
                                client: header.source,
                                early: self.buf.split_off(header.consumed),
                            };
                        }
                        Err(err) => return Step::Failed(err.to_string()),
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Step::Failed(err.to_string()),
            }
        }
    }
}
