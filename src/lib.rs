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
//!             │   │  tls::Transport: the socket, or rustls over it   │
//!             │   ▼                                                  │
//!             │ connection::Session (sans-IO state machine)          │
//!             │   │  bytes in ─► protocol::line::parse ─► Command    │
//!             │   │  Reply ◄─ protocol::reply (errors ─► codes)      │
//!             │   ▼                                                  │
//!             │ storage (checked names in, open files out), auth     │
//!             └──────────────────────────────────────────────────────┘
//! ```
//!
//! Embedding: a server on a port of its own, stopped from another thread.
//!
//! ```
//! use ferry::{Config, Server, Users};
//!
//! let storage = std::env::temp_dir().join(format!("ferry-doc-{}", std::process::id()));
//! let mut users = Users::new();
//! users.insert("alice", b"s3cret").unwrap();
//! let config = Config {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     storage: storage.clone(),
//!     ..Config::default()
//! };
//! let server = Server::bind(config, users).unwrap();
//! println!("listening on {}", server.local_addr());
//! let stop = server.shutdown_handle();
//! let stopper = std::thread::spawn(move || {
//!     // A real embedder stops when it is told to; this example at once.
//!     stop.shutdown();
//! });
//! server.run().unwrap(); // returns once the shutdown is complete
//! stopper.join().unwrap();
//! std::fs::remove_dir_all(storage).unwrap();
//! ```
//!
//! The documented API is [`Server`], [`ShutdownHandle`], [`Config`] with
//! [`config::Policy`], [`Users`], [`Reloaded`], [`raise_open_file_limit`]
//! and the [`client`]. The other
//! public modules are the server's insides, public for the fuzz targets,
//! the tests and the two binaries; they are hidden here and change without
//! notice.

// `unsafe` is denied everywhere but in `sys`, the one module that wraps the
// system calls std lacks.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;

// The server's insides: public for the fuzz targets, the integration tests
// and the two binaries through `ferry::internal`, hidden from the
// documented API (rustls keeps `rustls::internal` for the same reason).
// They change without notice. Imported here, so that the crate names them
// `crate::storage` and so on.
#[doc(hidden)]
pub mod internal;
use internal::{
    access, audit, auth, health, integrity, kdf, limits, metrics, protocol, session, storage,
    systemd, tls,
};
mod reactor;
mod sys;
// The web interface's pages, logins and assets (`session/http/web.rs` answers).
mod web;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::Users;
pub use config::Config;

use reactor::{Reactor, StopSignal};
use session::Services;
use storage::Storage;

/// Raises this process's soft open-file limit to its hard limit (what
/// `ferryd` does first thing), so that [`Config::default`] derives the
/// connection limit from the larger value; returns the limit before and
/// after. An embedder that shares the process with code that uses
/// `select(2)` leaves it alone.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let limit = sys::raise_open_file_limit()?;
    Ok((limit.was, limit.now))
}

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
        if config.metrics_token.as_deref() == Some("") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the metrics token is empty",
            ));
        }
        // Sockets handed over by systemd (socket activation) are used
        // instead of binding, so a restart refuses no connection.
        let mut activated = if config.systemd {
            systemd::take_listeners()?
        } else {
            Vec::new()
        };
        let listener = listen(&mut activated, "line", config.listen)?;
        let http = match config.http_listen {
            Some(addr) => Some(listen(&mut activated, "http", addr)?),
            None => None,
        };
        let control = match config.control_listen {
            Some(addr) => Some(listen(&mut activated, "control", addr)?),
            None => None,
        };
        let metrics = match config.metrics_listen {
            Some(addr) => Some(listen(&mut activated, "metrics", addr)?),
            None => None,
        };
        let tls = bind_tls(&config, &mut activated)?;
        if !activated.is_empty() {
            let left: Vec<String> = activated.iter().map(describe_activated).collect();
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket activation: no listener is configured for {} (name each socket \
                     FileDescriptorName=line, http, control, metrics, tls or https, or give \
                     its address to --listen, --http-listen, --control, --metrics-listen, \
                     --tls-listen or --https-listen)",
                    left.join(", ")
                ),
            ));
        }
        let access_log = match &config.access_log {
            Some(path) => {
                let sink = access::open_sink(path).map_err(|err| {
                    io::Error::new(err.kind(), format!("access log {}: {err}", path.display()))
                })?;
                Some(access::AccessLog::new(config.access_log_format, sink))
            }
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
        log_capacity(config.policy.max_connections);
        let mut services = Services::new(users, storage, config.max_file_size);
        services.policy = config.policy.clone();
        services.users_file = config.users_file.clone();
        services.control_token = config.control_token.clone();
        services.metrics_token = config.metrics_token.clone();
        *services.access.get_mut() = access_log;
        let mut reactor = Reactor::new(
            listener,
            http,
            control,
            metrics,
            tls,
            services,
            config.drain_timeout,
        )?;
        reactor.notify_systemd(config.systemd);
        if let Some(path) = config.access_log.filter(|path| path.as_os_str() != "-") {
            reactor.reopen_access_log_at(path);
        }
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

    /// The address of the TLS line-protocol listener, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.reactor.tls_addr()
    }

    /// The address of the HTTPS listener, if there is one.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.reactor.https_addr()
    }

    /// The address of the metrics listener, when
    /// [`Config::metrics_listen`] asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.reactor.metrics_addr()
    }

    /// Sets what a reload (SIGHUP with [`Server::handle_signals`], or the
    /// control port's `RELOAD`) does besides reading the users file again:
    /// `hook` returns the settings to use from then on (limits, timeouts,
    /// quotas, the largest upload, the drain period), which apply to
    /// sessions already open at their next check; or why it could not,
    /// and everything stays as it was. The embedder's own settings (its
    /// log level, its log file) are its hook's to change.
    pub fn on_reload(&mut self, hook: impl FnMut() -> Result<Reloaded, String> + Send + 'static) {
        self.reactor.on_reload(Box::new(hook));
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

/// Says how many connections the server takes and what the open-file
/// limit holds; warns when the first is more, since past the capacity a
/// transfer may find no descriptor (and is refused as temporary, `421`
/// or `503`).
fn log_capacity(max_connections: usize) {
    let Some(open_files) = config::open_file_limit() else {
        log::info!("up to {max_connections} connections at once");
        return;
    };
    let capacity = config::connection_capacity(open_files);
    log::info!(
        "up to {max_connections} connections at once; the open-file limit {open_files} holds \
         {capacity} ({} descriptors each, {} kept for the server)",
        config::DESCRIPTORS_PER_CONNECTION,
        config::descriptor_reserve(open_files)
    );
    if max_connections > capacity {
        log::warn!(
            "--max-connections {max_connections} is more than the {capacity} connections the \
             open-file limit {open_files} holds when each transfers: idle sessions fit (a \
             descriptor each), but past {capacity} a transfer may be refused for lack of \
             descriptors (421, HTTP 503); raise the limit (LimitNOFILE=) to serve them all"
        );
    }
}

/// The listener of `role` at `addr`: a socket systemd handed over under
/// that name, or for that address, else a new one bound now.
/// Binds the TLS listeners and reads their certificate; a certificate or
/// key that cannot be used stops the start with the file and the reason.
fn bind_tls(
    config: &Config,
    activated: &mut Vec<systemd::Activated>,
) -> io::Result<Option<reactor::TlsListeners>> {
    if config.tls_listen.is_none() && config.https_listen.is_none() {
        return Ok(None);
    }
    let Some(files) = &config.tls else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a TLS listener needs a certificate and its key",
        ));
    };
    let acceptor = tls::Acceptor::load(files, config.policy.handshake_timeout)
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {why}")))?;
    let line = match config.tls_listen {
        Some(addr) => Some(listen(activated, "tls", addr)?),
        None => None,
    };
    let https = match config.https_listen {
        Some(addr) => Some(listen(activated, "https", addr)?),
        None => None,
    };
    Ok(Some(reactor::TlsListeners {
        line,
        https,
        acceptor,
    }))
}

fn listen(
    activated: &mut Vec<systemd::Activated>,
    role: &str,
    addr: SocketAddr,
) -> io::Result<std::net::TcpListener> {
    let by_name = activated
        .iter()
        .position(|a| a.name.as_deref() == Some(role));
    let by_addr = || {
        activated
            .iter()
            .position(|a| a.name.is_none() && a.listener.local_addr().ok() == Some(addr))
    };
    if let Some(at) = by_name.or_else(by_addr) {
        let handed = activated.remove(at);
        log::info!(
            "{role}: using the socket the service manager passed ({})",
            describe_activated(&handed)
        );
        return Ok(handed.listener);
    }
    std::net::TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))
}

fn describe_activated(activated: &systemd::Activated) -> String {
    let addr = activated
        .listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    match &activated.name {
        Some(name) => format!("{name} on {addr}"),
        None => addr,
    }
}

/// The settings a reload may change without dropping a session (see
/// [`Server::on_reload`]). Everything else in [`Config`] needs a restart.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// Timeouts, connection limits, login throttling, quotas.
    pub policy: config::Policy,
    /// The largest upload, in bytes.
    pub max_file_size: u64,
    /// How long transfers may finish after a shutdown request.
    pub drain_timeout: std::time::Duration,
}

/// See [`Server::on_reload`].
pub(crate) type ReloadHook = Box<dyn FnMut() -> Result<Reloaded, String> + Send>;

/// Asks a running [`Server`] to shut down. Cheap to clone, `Send` and
/// `Sync`: the first call starts a graceful shutdown (running transfers get
/// the drain period), a second call ends the drain at once.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: Arc<StopSignal>,
}

impl ShutdownHandle {
    /// Asks for a graceful shutdown; a second call ends the drain at once.
    pub fn shutdown(&self) {
        self.stop.request();
    }
}
