//! The event loop: the only code that touches sockets.
//!
//! One `mio::Poll` watches the listeners (the line protocol's and, when
//! configured, the HTTP front's, the control port's and the metrics
//! listener's), every connection, the shutdown waker and
//! (when the embedder asks for it) a signal source. Connections of both
//! kinds live in one `Slab` keyed by their token. Sockets are edge-triggered, so each
//! connection remembers whether it may still be readable or writable (a hint
//! cleared only by `WouldBlock`); a connection that used up its byte budget
//! for this turn goes on the `ready` list and the next poll does not block,
//! so one big transfer cannot starve the others.
//!
//! Downloads go from the file to the socket with `sendfile(2)`: a session
//! offers the rest of its file ([`Session::file_output`]) once the bytes
//! before it are sent, and the reactor moves it within the same byte
//! budget, so file data never passes through a buffer of ours. Where the
//! kernel refuses `sendfile` for a file, that session (and every later one)
//! goes back to reading the file into its output buffer.
//!
//! Time is a min-heap of session deadlines (timeouts, held login replies);
//! the poll blocks until the nearest one. A deadline that moves later is
//! not pushed again: when its entry comes up, the session's current
//! deadline is read and the entry re-armed, so each connection has about
//! one entry however busy it is. With no connections there are no entries
//! and an idle server wakes only for the storage's housekeeping: when a
//! partial upload it knows of expires (none known, no wake-up).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::limits::{CheckWaiters, Connections, Refusal};
use crate::metrics::Protocol;
use crate::session::http::{self, Role as HttpRole};
use crate::session::{DIRECT_MIN, Failure, Services, Session, TRANSFER_BUFFER};
use crate::sys;
use crate::tls::{self, Transport};

/// The TLS listeners and what their connections get.
pub(crate) struct TlsListeners {
    pub(crate) line: Option<std::net::TcpListener>,
    pub(crate) https: Option<std::net::TcpListener>,
    pub(crate) acceptor: tls::Acceptor,
}

mod accept;
mod preface;
mod probe;
mod timers;
use accept::spare_descriptor;
use preface::{Preface, Step};
use timers::earliest;

const LINE_LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const HTTP_LISTENER: Token = Token(usize::MAX - 4);
const CONTROL_LISTENER: Token = Token(usize::MAX - 5);
const METRICS_LISTENER: Token = Token(usize::MAX - 6);
const TLS_LISTENER: Token = Token(usize::MAX - 7);
const HTTPS_LISTENER: Token = Token(usize::MAX - 8);
/// Tokens from here up (to the listeners') are connections still reading
/// their PROXY header ([`preface`]), keyed by `token - PREFACE_BASE`.
const PREFACE_BASE: usize = usize::MAX / 2;
/// The storage health probe's pipe ([`probe`]).
const PROBE: Token = Token(usize::MAX - 9);
/// Control connections at once. They are not counted against the client
/// limits, so the operator gets in when clients have used them all up.
const MAX_CONTROL_SESSIONS: usize = 8;

/// Connections accepted per turn before the others get theirs; the rest
/// wait for the next turn.
const ACCEPT_BATCH: usize = 64;
/// Connections the kernel queues for each listener (it caps this at
/// `net.core.somaxconn`, 4096 by default).
const LISTEN_BACKLOG: i32 = 4096;
/// Bytes moved per connection per turn: two transfer buffers, so a bulk
/// transfer keeps its pace while others still get a turn every few hundred
/// KiB.
const IO_BUDGET: usize = 2 * TRANSFER_BUFFER;
/// Events taken from the kernel per poll.
const EVENTS_CAPACITY: usize = 1024;
/// Bytes of unread input dropped before a close, so that the kernel sends
/// FIN rather than RST and the client still reads the last reply.
const CLOSE_DRAIN_LIMIT: usize = 64 * 1024;
/// How long accepting pauses when the process is out of descriptors (or
/// memory): short enough to recover quickly, long enough not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about failing accepts.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Shared between the reactor and every [`crate::ShutdownHandle`].
#[derive(Debug)]
pub(crate) struct StopSignal {
    requests: AtomicUsize,
    waker: Waker,
}

impl StopSignal {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if let Err(err) = self.waker.wake() {
            log::error!("cannot wake the event loop: {err}");
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// The socket itself, or TLS over it: every read and write of the
    /// connection goes through this.
    transport: Transport,
    peer: SocketAddr,
    session: Session,
    /// What the socket is registered for now.
    interest: Interest,
    /// May still be readable / writable: set by events, cleared by
    /// `WouldBlock`.
    readable: bool,
    writable: bool,
    /// On the `ready` list already.
    queued: bool,
    /// The earliest deadline this connection has in the timer heap.
    armed: Option<Instant>,
    /// In the queue for a password-check slot.
    waiting_check: bool,
}

/// A listening socket and the kind of session its connections get.
struct Listener {
    socket: TcpListener,
    token: Token,
    protocol: Protocol,
    /// What an HTTP session on it serves (the metrics listener's serve
    /// only `/metrics` and `/healthz`).
    role: HttpRole,
    addr: SocketAddr,
    /// Its connections speak TLS, for this front.
    tls: Option<tls::Front>,
    /// More connections may be waiting in its accept queue.
    pending: bool,
    /// Accepting failed for lack of descriptors: not again before this.
    paused_until: Option<Instant>,
}

/// What the loop is doing about shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Stop requested: health checks fail (`--drain-delay`) while
    /// everything else goes on, so a load balancer moves new clients
    /// elsewhere before the listeners close.
    Delaying {
        until: Instant,
    },
    Draining {
        deadline: Instant,
    },
}

pub(crate) struct Reactor {
    poll: Poll,
    /// Emptied when shutdown begins.
    listeners: Vec<Listener>,
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    control_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    /// The TLS listeners' certificates and policy, when there are any.
    acceptor: Option<tls::Acceptor>,
    conns: Slab<Conn>,
    ready: Vec<usize>,
    /// Connections from trusted proxies still reading their PROXY header,
    /// those that may have bytes now, and their deadlines.
    prefaces: Slab<Preface>,
    prefaces_ready: Vec<usize>,
    preface_timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The storage health probe, run when health checks ask.
    prober: probe::Prober,
    /// Session deadlines: (when, connection key).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Connections waiting for a password-check slot, in turns across
    /// addresses.
    check_waiters: CheckWaiters,
    connections: Connections,
    last_accept_warning: Option<Instant>,
    /// A descriptor held in reserve: when accepting fails for lack of
    /// descriptors, it is closed to accept one waiting connection and tell
    /// it so (`421`, `503`) rather than leave it in the backlog without a
    /// word, then taken again.
    spare: Option<std::fs::File>,
    /// One read buffer for every connection: reads go here and are handed
    /// to the session at once, so no session owns a read buffer. Upload
    /// bytes are hashed and written to the file straight from it, with no
    /// allocation per chunk. `splice(2)` from the socket to the file would
    /// save that pass through user space, but the SHA-256 of every upload
    /// must see each byte, so the bytes come through here anyway. Reads of
    /// 256 or 512 KiB (with the budget grown to match) measured no faster
    /// than 128 KiB (`upload_digest`, 512 MiB to tmpfs: within the noise).
    scratch: Box<[u8]>,
    stop: Arc<StopSignal>,
    signals: Option<Signals>,
    /// Stop requests from signals and the control port.
    signal_count: usize,
    phase: Phase,
    drain_timeout: Duration,
    /// Tell systemd when ready, reloading and stopping (`Config::systemd`).
    notify_systemd: bool,
    /// The embedder's reload (see [`crate::Server::on_reload`]).
    reload_hook: Option<crate::ReloadHook>,
    /// Where the access log is reopened at a reload.
    access_path: Option<std::path::PathBuf>,
    services: Services,
    /// `sendfile` works here; cleared the first time the kernel refuses
    /// it (`EINVAL`, `ENOSYS`), after which sessions read files into their
    /// buffers.
    sendfile: bool,
}

impl Reactor {
    pub(crate) fn new(
        line: std::net::TcpListener,
        http: Option<std::net::TcpListener>,
        control: Option<std::net::TcpListener>,
        metrics: Option<std::net::TcpListener>,
        tls: Option<TlsListeners>,
        services: Services,
        drain_timeout: Duration,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        let (tls_line, https, acceptor) = match tls {
            Some(t) => (t.line, t.https, Some(t.acceptor)),
            None => (None, None, None),
        };
        for (socket, token, protocol, role, tls) in [
            (
                Some(line),
                LINE_LISTENER,
                Protocol::Line,
                HttpRole::Main,
                None,
            ),
            (http, HTTP_LISTENER, Protocol::Http, HttpRole::Main, None),
            (
                control,
                CONTROL_LISTENER,
                Protocol::Control,
                HttpRole::Main,
                None,
            ),
            (
                metrics,
                METRICS_LISTENER,
                Protocol::Http,
                HttpRole::Metrics,
                None,
            ),
            (
                tls_line,
                TLS_LISTENER,
                Protocol::Line,
                HttpRole::Main,
                Some(tls::Front::Line),
            ),
            (
                https,
                HTTPS_LISTENER,
                Protocol::Http,
                HttpRole::Main,
                Some(tls::Front::Https),
            ),
        ] {
            let Some(socket) = socket else {
                continue;
            };
            socket.set_nonblocking(true)?;
            // When many clients connect at once (a restart, a burst), the
            // ones past std's backlog of 128 are dropped by the kernel and
            // retry after a second or more; one thread accepting in batches
            // needs a longer queue than that.
            sys::set_listen_backlog(socket.as_fd(), LISTEN_BACKLOG)?;
            let addr = socket.local_addr()?;
            let mut socket = TcpListener::from_std(socket);
            poll.registry()
                .register(&mut socket, token, Interest::READABLE)?;
            listeners.push(Listener {
                socket,
                token,
                protocol,
                role,
                addr,
                tls,
                pending: true,
                paused_until: None,
            });
        }
        let local_addr = listeners[0].addr;
        let addr_of = |token| {
            listeners
                .iter()
                .find(|listener: &&Listener| listener.token == token)
                .map(|listener| listener.addr)
        };
        let http_addr = addr_of(HTTP_LISTENER);
        let control_addr = addr_of(CONTROL_LISTENER);
        let metrics_addr = addr_of(METRICS_LISTENER);
        let tls_addr = addr_of(TLS_LISTENER);
        let https_addr = addr_of(HTTPS_LISTENER);
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Reactor {
            poll,
            listeners,
            local_addr,
            http_addr,
            control_addr,
            metrics_addr,
            tls_addr,
            https_addr,
            acceptor,
            conns: Slab::new(),
            ready: Vec::new(),
            prefaces: Slab::new(),
            prefaces_ready: Vec::new(),
            preface_timers: BinaryHeap::new(),
            prober: probe::Prober::default(),
            timers: BinaryHeap::new(),
            check_waiters: CheckWaiters::default(),
            connections: Connections::default(),
            last_accept_warning: None,
            // Without /dev/null (a bare chroot) accepting only pauses
            // when descriptors run out, as it did before.
            spare: spare_descriptor()
                .inspect_err(|err| log::warn!("cannot open /dev/null: {err}"))
                .ok(),
            scratch: vec![0; TRANSFER_BUFFER].into_boxed_slice(),
            stop: Arc::new(StopSignal {
                requests: AtomicUsize::new(0),
                waker,
            }),
            signals: None,
            signal_count: 0,
            phase: Phase::Serving,
            drain_timeout,
            notify_systemd: false,
            reload_hook: None,
            access_path: None,
            services,
            sendfile: true,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub(crate) fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub(crate) fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub(crate) fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    pub(crate) fn stop_signal(&self) -> Arc<StopSignal> {
        Arc::clone(&self.stop)
    }

    pub(crate) fn reopen_access_log_at(&mut self, path: std::path::PathBuf) {
        self.access_path = Some(path);
    }

    pub(crate) fn on_reload(&mut self, hook: crate::ReloadHook) {
        self.reload_hook = Some(hook);
    }

    /// Sends systemd the server's state changes (see [`crate::systemd`]).
    pub(crate) fn notify_systemd(&mut self, on: bool) {
        self.notify_systemd = on;
    }

    /// SIGINT and SIGTERM become stop requests on this loop.
    pub(crate) fn handle_signals(&mut self) -> io::Result<()> {
        if self.signals.is_none() {
            let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
            self.poll
                .registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)?;
            self.signals = Some(signals);
        }
        Ok(())
    }

    /// Serves until a shutdown has completed.
    pub(crate) fn run(mut self) -> io::Result<()> {
        log::info!("ferryd listening on {}", self.local_addr);
        if let Some(addr) = self.http_addr {
            log::info!("ferryd HTTP listening on {addr}");
        }
        if let Some(addr) = self.tls_addr {
            log::info!("ferryd TLS listening on {addr}");
        }
        if let Some(addr) = self.https_addr {
            log::info!("ferryd HTTPS listening on {addr}");
        }
        if let Some(addr) = self.control_addr {
            log::info!("ferryd control port listening on {addr}");
        }
        if let Some(addr) = self.metrics_addr {
            log::info!("ferryd metrics listening on {addr}");
            if !addr.ip().is_loopback() {
                log::warn!(
                    "the metrics listener {addr} is not on a loopback address: anyone who \
                     reaches it reads the counters"
                );
            }
        }
        if self.notify_systemd {
            crate::systemd::notify("READY=1");
        }
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let timeout = self.poll_timeout();
            // What this turn logged, written before the loop waits: one
            // write for many lines when the logger buffers them (ferryd's
            // does), nothing left unwritten while the server is idle.
            log::logger().flush();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            for event in events.iter() {
                match event.token() {
                    LINE_LISTENER | HTTP_LISTENER | CONTROL_LISTENER | METRICS_LISTENER
                    | TLS_LISTENER | HTTPS_LISTENER => {
                        for listener in &mut self.listeners {
                            listener.pending |= listener.token == event.token();
                        }
                    }
                    WAKER => {}
                    PROBE => {
                        let services = &self.services;
                        let registry = self.poll.registry();
                        (self.prober).on_readable(&services.health, &services.storage, registry);
                    }
                    SIGNALS => {
                        if let Some(signals) = &mut self.signals {
                            for signal in signals.pending() {
                                if signal == SIGHUP {
                                    log::info!("SIGHUP: reloading the users and settings");
                                    if self.notify_systemd {
                                        crate::systemd::notify(&crate::systemd::reloading_message());
                                    }
                                    // The outcome is logged either way.
                                    let _ = self.services.reload_users();
                                    // The settings, once the signals are read.
                                    self.services.reload_requested.set(true);
                                } else {
                                    self.signal_count += 1;
                                }
                            }
                        }
                    }
                    Token(key) if key >= PREFACE_BASE => {
                        self.prefaces_ready.push(key - PREFACE_BASE);
                    }
                    Token(key) => {
                        if let Some(conn) = self.conns.get_mut(key) {
                            // An error or hang-up shows up on the next read
                            // or write, so it sets both hints.
                            let trouble = event.is_error() || event.is_read_closed();
                            conn.readable |= event.is_readable() || trouble;
                            conn.writable |= event.is_writable() || trouble;
                            if !conn.queued {
                                conn.queued = true;
                                self.ready.push(key);
                            }
                        }
                    }
                }
            }
            self.check_stop_requests();
            let now = Instant::now();
            for index in 0..self.listeners.len() {
                let listener = &mut self.listeners[index];
                if listener.paused_until.is_some_and(|until| now < until) {
                    continue;
                }
                listener.paused_until = None;
                if listener.pending {
                    self.accept_batch(index);
                }
            }
            self.read_prefaces(now);
            self.fire_timers(now);
            self.services.storage.housekeeping(now);
            if let Some(log) = self.services.access.borrow_mut().as_mut()
                && log.flush_due().is_some_and(|due| due <= now)
            {
                log.flush();
            }
            for key in std::mem::take(&mut self.ready) {
                self.drive(key);
            }
            // A session may have asked for a shutdown (control port).
            if self.services.shutdown_requested.get() {
                self.check_stop_requests();
            }
            self.hand_out_check_slots();
            // A health check found the storage's last result old.
            let registry = self.poll.registry();
            let services = &self.services;
            (self.prober).start_if_wanted(&services.health, &services.storage, registry, PROBE);
            self.prober.on_deadline(Instant::now());
            if let Phase::Delaying { until } = self.phase
                && Instant::now() >= until
            {
                self.begin_drain();
            }
            if let Phase::Draining { deadline } = self.phase {
                if Instant::now() >= deadline {
                    self.end_drain();
                }
                if self.conns.is_empty() {
                    log::info!("shutdown complete");
                    return Ok(());
                }
            }
        }
    }

    /// Runs the embedder's reload hook (SIGHUP, the control port's
    /// `RELOAD`) and applies what it returns; sessions see the new limits
    /// and timeouts from their next check on.
    fn reload_settings(&mut self) {
        self.services.reload_requested.set(false);
        // After a rotation the access log goes to a new file of its name.
        if let (Some(path), Some(log)) = (&self.access_path, self.services.access.get_mut()) {
            match crate::access::open_sink(path) {
                Ok(sink) => log.replace_sink(sink),
                Err(err) => log::error!(
                    "cannot reopen the access log {}: {err}; it goes on in the old file",
                    path.display()
                ),
            }
        }
        if let Some(hook) = &mut self.reload_hook {
            match hook() {
                Ok(settings) => {
                    if let Some(acceptor) = &mut self.acceptor {
                        acceptor.reload(settings.policy.handshake_timeout);
                    }
                    self.services.policy = settings.policy;
                    self.services.max_file_size = settings.max_file_size;
                    self.drain_timeout = settings.drain_timeout;
                    log::info!("settings reloaded");
                }
                Err(why) => {
                    log::error!("reload failed, keeping the settings as they were: {why}")
                }
            }
        } else if let Some(acceptor) = &mut self.acceptor {
            // An embedder without a hook still gets renewed certificates.
            acceptor.reload(self.services.policy.handshake_timeout);
        }
        if self.notify_systemd {
            crate::systemd::notify("READY=1");
        }
    }

    fn check_stop_requests(&mut self) {
        if self.services.reload_requested.get() {
            self.reload_settings();
        }
        // A SHUTDOWN on the control port counts like a signal.
        self.signal_count += usize::from(self.services.shutdown_requested.replace(false));
        let requests = self.stop.requests.load(Ordering::SeqCst) + self.signal_count;
        if requests >= 1 && self.phase == Phase::Serving {
            self.services.health.set_draining();
            let delay = self.services.policy.drain_delay;
            if delay.is_zero() {
                self.begin_drain();
            } else {
                log::info!("stop requested: health checks fail for {delay:?}, then shutdown");
                self.phase = Phase::Delaying {
                    until: Instant::now() + delay,
                };
            }
        }
        if requests >= 2 && matches!(self.phase, Phase::Delaying { .. }) {
            self.begin_drain();
        }
        if requests >= 2 && !self.conns.is_empty() {
            log::info!("second stop request: ending the drain now");
            self.end_drain();
        }
    }

    fn begin_drain(&mut self) {
        if self.notify_systemd {
            crate::systemd::notify("STOPPING=1");
        }
        log::info!(
            "shutting down: no new connections, draining transfers for up to {:?}",
            self.drain_timeout
        );
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        // Not a session yet: nothing of theirs to finish.
        for mut preface in self.prefaces.drain() {
            let _ = self.poll.registry().deregister(&mut preface.stream);
            self.connections.release(preface.proxy.ip());
        }
        self.prefaces_ready.clear();
        self.preface_timers.clear();
        self.phase = Phase::Draining {
            deadline: Instant::now() + self.drain_timeout,
        };
        let services = &self.services;
        for (key, conn) in self.conns.iter_mut() {
            conn.session.begin_shutdown(services);
            if !conn.queued {
                conn.queued = true;
                self.ready.push(key);
            }
        }
    }

    /// Ends every transfer now, flushes what the sockets take without
    /// waiting, and closes everything.
    fn end_drain(&mut self) {
        let services = &self.services;
        for (_, conn) in self.conns.iter_mut() {
            conn.session.end_drain(services);
            flush_once(conn);
        }
        for conn in self.conns.drain() {
            self.services
                .metrics
                .session_closed(conn.session.protocol());
            release(&mut self.connections, &conn);
            close(conn, &mut self.scratch, &self.poll);
        }
        self.timers.clear();
        self.ready.clear();
        self.check_waiters.clear();
    }

    /// Moves bytes (and runs socket-free work such as hashing a file) for one
    /// connection until its socket would block, it has nothing to do, or its
    /// budget for this turn is spent.
    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.queued = false;
        let services = &self.services;
        let mut budget = IO_BUDGET;
        // Set once a read got this connection an answer: it reads no more
        // this turn, so a client that asks again at once (keep-alive,
        // request after request) waits behind the others instead of being
        // served until its byte budget runs out. An upload, which gets no
        // answer until its end, is bounded by the budget alone.
        let mut answered = false;
        loop {
            let mut progressed = false;
            if conn.writable && conn.transport.wants_write() {
                match conn.transport.flush(&mut conn.stream) {
                    Ok(()) => progressed = true,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
                    Err(err) => {
                        conn.session.connection_lost(&err.to_string(), services);
                        progressed = true;
                    }
                }
            }
            if conn.writable && !conn.session.output().is_empty() {
                // A reply the file's bytes follow at once by `sendfile`
                // waits for them in the kernel: one packet, one wake-up
                // of the client, as with nginx's `tcp_nopush`.
                let written = if !conn.transport.is_tls() && conn.session.file_follows_output() {
                    sys::send_more(conn.stream.as_fd(), conn.session.output())
                } else {
                    conn.transport
                        .write(&mut conn.stream, conn.session.output())
                };
                match written {
                    Ok(0) => conn
                        .session
                        .connection_lost("connection closed while writing", services),
                    Ok(n) => {
                        services.metrics.sent(n);
                        conn.session.output_written(n, services);
                        budget = budget.saturating_sub(n);
                        progressed = true;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => progressed = true,
                    Err(err) => conn.session.connection_lost(&err.to_string(), services),
                }
            }
            if conn.writable && budget > 0 {
                match send_file(conn, budget) {
                    FileSend::Nothing => {}
                    FileSend::Sent(n) => {
                        services.metrics.sent(n);
                        conn.session.file_output_written(n as u64, services);
                        budget = budget.saturating_sub(n);
                        progressed = true;
                    }
                    FileSend::WouldBlock => conn.writable = false,
                    FileSend::Interrupted => progressed = true,
                    FileSend::FileFailed(err) => {
                        conn.session.file_output_failed(&err, services);
                        progressed = true;
                    }
                    FileSend::SocketFailed(err) => {
                        conn.session.connection_lost(&err.to_string(), services);
                    }
                    FileSend::Unsupported(err) => {
                        if self.sendfile {
                            log::warn!(
                                "sendfile is not usable here ({err}); reading files instead"
                            );
                            self.sendfile = false;
                        }
                        conn.session.stop_sending_files_directly(services);
                        progressed = true;
                    }
                }
            }
            let limit = conn.session.read_limit().min(self.scratch.len());
            if conn.readable && limit > 0 && !answered {
                match conn
                    .transport
                    .read(&mut conn.stream, &mut self.scratch[..limit])
                {
                    Ok(0) => {
                        conn.readable = false;
                        conn.session.receive_eof(services);
                        progressed = true;
                    }
                    Ok(n) => {
                        services.metrics.received(n);
                        if let Some(channel) = conn.transport.channel() {
                            conn.session.shell_mut().channel = channel;
                        }
                        conn.session.receive(&self.scratch[..n], services);
                        budget = budget.saturating_sub(n);
                        answered |= conn.session.wants_to_write();
                        progressed = true;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => progressed = true,
                    Err(err) => conn.session.connection_lost(&err.to_string(), services),
                }
            }
            if conn.session.has_work() {
                let n = conn.session.work(services);
                budget = budget.saturating_sub(n.max(1));
                progressed = true;
            }
            if conn.session.is_done() {
                // The last reply may still sit in the TLS layer; it goes,
                // and `close_notify` after it, before the socket closes.
                conn.transport.close_notify();
                if conn.transport.wants_write() && conn.writable {
                    continue;
                }
            }
            if conn.session.is_done() && !conn.transport.wants_write() {
                let conn = self.conns.remove(key);
                log::info!("{} disconnected", conn.peer);
                self.services
                    .metrics
                    .session_closed(conn.session.protocol());
                release(&mut self.connections, &conn);
                if conn.waiting_check {
                    self.check_waiters.remove(conn.peer.ip(), key);
                }
                close(conn, &mut self.scratch, &self.poll);
                return;
            }
            if !progressed {
                // Answered, with more perhaps waiting to be read: the others
                // get their turn first.
                if answered && conn.readable && conn.session.read_limit() > 0 {
                    conn.queued = true;
                    self.ready.push(key);
                }
                break;
            }
            if budget == 0 {
                conn.queued = true;
                self.ready.push(key);
                break;
            }
        }
        let wanted = interest_of(&conn.session, &conn.transport);
        if wanted != conn.interest {
            match self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), wanted)
            {
                Ok(()) => conn.interest = wanted,
                Err(err) => log::error!("cannot update interest: {err}"),
            }
        }
        if conn.session.wants_check_slot() && !conn.waiting_check {
            conn.waiting_check = true;
            self.check_waiters.push(conn.peer.ip(), key);
        }
        self.arm(key);
    }
}

/// The one place where a session's state becomes socket interest: read
/// while it takes bytes, write while it has bytes to send. A session that
/// wants neither is about to close; readable keeps hang-ups visible.
fn interest_of(session: &Session, transport: &Transport) -> Interest {
    let read = session.read_limit() > 0;
    let write = session.wants_to_write() || transport.wants_write();
    match (read, write) {
        (true, true) => Interest::READABLE | Interest::WRITABLE,
        (false, true) => Interest::WRITABLE,
        _ => Interest::READABLE,
    }
}

/// Gives back the connection's place under the client limits.
fn release(connections: &mut Connections, conn: &Conn) {
    if conn.session.protocol() != Protocol::Control {
        connections.release(conn.peer.ip());
    }
}

/// What one `sendfile` of a session's file output came to.
enum FileSend {
    /// No file output is waiting.
    Nothing,
    Sent(usize),
    WouldBlock,
    Interrupted,
    /// The file ended before the announced length (it was truncated
    /// behind the server's back), or reading it failed.
    FileFailed(io::Error),
    /// The connection failed.
    SocketFailed(io::Error),
    /// The kernel cannot `sendfile` from this file to this socket.
    Unsupported(io::Error),
}

/// Sends up to `budget` bytes of the session's file output straight from
/// the file to the socket.
fn send_file(conn: &Conn, budget: usize) -> FileSend {
    if !conn.session.output().is_empty() {
        return FileSend::Nothing;
    }
    let Some(out) = conn.session.file_output() else {
        return FileSend::Nothing;
    };
    let count = usize::try_from(out.len).unwrap_or(usize::MAX).min(budget);
    match sys::sendfile(conn.stream.as_fd(), out.file.as_fd(), out.offset, count) {
        // Asked for at least one byte, the file has none left at `offset`.
        Ok(0) => FileSend::FileFailed(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file is shorter than announced",
        )),
        Ok(n) => FileSend::Sent(n),
        Err(err) => match err.raw_os_error() {
            Some(libc::EAGAIN) => FileSend::WouldBlock,
            Some(libc::EINTR) => FileSend::Interrupted,
            Some(libc::EINVAL | libc::ENOSYS) => FileSend::Unsupported(err),
            // Errors of reading the file; everything else is the socket's.
            Some(libc::EIO | libc::ENOMEM | libc::EOVERFLOW | libc::ESPIPE) => {
                FileSend::FileFailed(err)
            }
            _ => FileSend::SocketFailed(err),
        },
    }
}

/// One non-blocking attempt to send what is queued.
fn flush_once(conn: &mut Conn) {
    let output = conn.session.output();
    if !output.is_empty() {
        let _ = conn.transport.write(&mut conn.stream, output);
    }
    conn.transport.close_notify();
    let _ = conn.transport.flush(&mut conn.stream);
}

/// Closes a connection gracefully: end our side, drop what the client still
/// had in flight (so the kernel does not answer it with RST), close.
fn close(mut conn: Conn, scratch: &mut [u8], poll: &Poll) {
    let _ = poll.registry().deregister(&mut conn.stream);
    let _ = conn.stream.shutdown(Shutdown::Write);
    let mut drained = 0;
    while drained < CLOSE_DRAIN_LIMIT {
        match conn.stream.read(scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}
