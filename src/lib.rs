//! ferry: a multi-user file transfer server on one event-loop thread.
//!
//! Users log in with a name and password; each has a private directory under
//! a storage root and can upload, download, preview, delete and list files
//! over a line protocol (`protocol.md`). The crate is the server; `ferryd`
//! is a thin binary over it. [`client`] is the other end, which the `ferry`
//! command-line tool is built on.
//!
//! ```text
//!             ┌───────────────────── one thread ─────────────────────┐
//!  clients ──►│ reactor: mio::Poll ── listener, waker, signals       │
//!             │   │  Slab<Conn>: socket + readiness hints            │
//!             │   ▼                                                  │
//!             │ connection::Session (sans-IO state machine)          │
//!             │   │  bytes in ─► protocol::line::parse ─► Command    │
//!             │   │  Reply ◄─ protocol::reply (errors ─► codes)      │
//!             │   ▼                                                  │
//!             │ storage (checked names in, open files out), auth     │
//!             └──────────────────────────────────────────────────────┘
//! ```
//!
//! Embedding:
//!
//! ```no_run
//! use ferry::{Config, Server, Users};
//!
//! let mut users = Users::new();
//! users.insert("alice", b"s3cret").unwrap();
//! let config = Config {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     storage: "/srv/ferry".into(),
//!     ..Config::default()
//! };
//! let server = Server::bind(config, users).unwrap();
//! println!("listening on {}", server.local_addr());
//! let stop = server.shutdown_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(60));
//!     stop.shutdown();
//! });
//! server.run().unwrap(); // returns once the shutdown is complete
//! ```

// `unsafe` is denied everywhere but in `sys`, the one module that wraps the
// system calls std lacks.
#![deny(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod integrity;
pub mod kdf;
pub mod limits;
pub mod metrics;
#[doc(hidden)]
pub mod ops;
pub mod protocol;
mod reactor;
pub mod session;
pub mod storage;
mod sys;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::Users;
pub use config::Config;

use reactor::{Reactor, StopSignal};
use session::Services;
use storage::Storage;

/// A bound server, ready to [`run`](Server::run) in the caller's thread.
pub struct Server {
    reactor: Reactor,
}

impl Server {
    /// Binds the listeners, then prepares the storage root (creating it,
    /// registering this server in it, removing the temporary files of
    /// servers that died and expired partial uploads). A failure to bind
    /// leaves the root untouched.
    pub fn bind(config: Config, users: Users) -> io::Result<Server> {
        if let Some(addr) = config.control_listen {
            let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
            if !addr.ip().is_loopback() {
                return Err(invalid(format!(
                    "the control port must be on a loopback address, not {addr}"
                )));
            }
            if config.control_token.as_deref().is_none_or(str::is_empty) {
                return Err(invalid("the control port needs a token".to_owned()));
            }
        }
        let listener = std::net::TcpListener::bind(config.listen).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot listen on {}: {err}", config.listen),
            )
        })?;
        let http = match config.http_listen {
            Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))
            })?),
            None => None,
        };
        let control = match config.control_listen {
            Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))
            })?),
            None => None,
        };
        // Only now, with every listener bound: a start that fails (a port
        // in use) touches nothing under the root.
        let options = storage::Options {
            fsync: config.fsync,
            partial_ttl: config.partial_ttl,
        };
        let storage = Storage::open(&config.storage, options).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("storage {}: {err}", config.storage.display()),
            )
        })?;
        let mut services = Services::new(users, storage, config.max_file_size);
        services.policy = config.policy.clone();
        services.users_file = config.users_file.clone();
        services.control_token = config.control_token.clone();
        let reactor = Reactor::new(listener, http, control, services, config.drain_timeout)?;
        Ok(Server { reactor })
    }

    /// The address the line-protocol listener is bound to (useful with
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.reactor.local_addr()
    }

    /// The address of the HTTP listener, when [`Config::http_listen`] asked
    /// for one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.reactor.http_addr()
    }

    /// The address of the control port, when [`Config::control_listen`]
    /// asked for one.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.reactor.control_addr()
    }

    /// A handle that asks the running server to shut down, from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: self.reactor.stop_signal(),
        }
    }

    /// Makes SIGINT and SIGTERM shut the server down (a second one ends the
    /// drain at once) instead of killing the process. Optional: an embedder
    /// that handles signals itself uses a [`ShutdownHandle`] instead.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.reactor.handle_signals()
    }

    /// Serves on the calling thread until a shutdown has completed: every
    /// connection closed, every unfinished upload discarded.
    pub fn run(self) -> io::Result<()> {
        self.reactor.run()
    }
}

/// Asks a running [`Server`] to shut down. Cheap to clone, `Send` and
/// `Sync`: the first call starts a graceful shutdown (running transfers get
/// the drain period), a second call ends the drain at once.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: Arc<StopSignal>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.stop.request();
    }
}
