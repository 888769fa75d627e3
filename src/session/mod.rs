//! Client sessions as sans-IO state machines, one kind per front.
//!
//! A session never touches a socket: the reactor drives it through the
//! [`Front`] contract (how many bytes it takes, what it read, what it
//! wants sent or offers from a file, its socket-free work a step at a
//! time, its deadlines, shutdown), and closes the socket once
//! [`Front::is_done`]. Storage, users and counters are reached through
//! [`Services`].
//!
//! What the fronts share is written once: the [`Shell`] every front keeps
//! and the lifecycle over it ([`Front`]'s provided methods), downloads and
//! uploads (`transfer.rs`), logins and the password-check queue
//! (`login.rs`), stepwise hashing (`hashing.rs`), streamed listings
//! (`listing.rs`), and the one table from errors to replies
//! (`replies.rs`). Each front holds only its own syntax and states:
//!
//! - [`line`]: the line protocol of `protocol.md`;
//! - [`http`]: the HTTP/1.1 front;
//! - [`control`]: the operator's control port.

pub mod control;
mod hashing;
pub mod http;
pub mod line;
mod listing;
pub(crate) mod locks;
mod login;
mod outbox;
mod replies;
mod shell;
mod transfer;

pub use hashing::HASH_STEP;
pub use listing::{LIST_BLOCK, LIST_STEP_ENTRIES};
pub(crate) use login::{
    Checked, LoginStart, PasswordCheck, count_failure, failed_on_connection, finish_login,
    start_certificate_login, start_login,
};
pub use login::{
    MAX_AUTH_FAILURES, MAX_CHECKS_PER_ADDRESS, MAX_CONCURRENT_CHECKS, MAX_QUEUED_CHECKS,
};
pub use outbox::{DIRECT_MIN, FileOutput};
pub(crate) use replies::{DavRefused, Failure};
pub use shell::{Channel, Shell};
pub use transfer::{Download, PREVIEW_LEN, TRANSFER_BUFFER};

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::auth::Users;
use crate::config::Policy;
use crate::limits::Logins;
use crate::metrics::{Metrics, Protocol};
use crate::storage::{PutLimits, Storage};
use login::CheckBook;

/// What every session may use beyond its own bytes.
pub struct Services {
    /// Replaced as a whole by a reload; a session holds no borrow of it.
    pub users: RefCell<Users>,
    /// Counts the reloads of `users`: whatever a session remembers of a
    /// login check (HTTP keep-alive) holds only while this has not moved.
    users_generation: Cell<u64>,
    /// Where a reload reads users from, if anywhere.
    pub users_file: Option<PathBuf>,
    pub storage: Storage,
    pub max_file_size: u64,
    pub metrics: Metrics,
    pub policy: Policy,
    /// Failed logins per address, shared by both fronts.
    pub logins: RefCell<Logins>,
    /// When the server started (for the control port's `STATUS`).
    pub started: Instant,
    /// A session asked the server to shut down (the control port's
    /// `SHUTDOWN`); the reactor acts on it.
    pub shutdown_requested: Cell<bool>,
    /// A session asked for the settings to be reloaded (the control port's
    /// `RELOAD`, after the users); the reactor runs the embedder's hook.
    pub reload_requested: Cell<bool>,
    /// What health checks answer (draining, storage not writable).
    pub health: crate::health::Health,
    /// The access log, when there is one: a line per command or request.
    pub access: RefCell<Option<crate::access::AccessLog>>,
    /// The control port's token, when there is a control port.
    pub control_token: Option<String>,
    /// The bearer token `/metrics` on the HTTP listener asks for; without
    /// one, `/metrics` is served only on the metrics listener.
    pub metrics_token: Option<String>,
    /// Password checks waiting and running (see [`CheckTicket`]). Behind
    /// a mutex only so that the server stays `Send`; it is used from one
    /// thread.
    checks: Arc<Mutex<CheckBook>>,
    /// The web interface's browser logins, in memory.
    pub(crate) web: RefCell<crate::web::WebSessions>,
    /// WebDAV's locks, in memory.
    pub(crate) locks: RefCell<locks::Locks>,
}

// The tokens must never reach a log.
impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("users", &self.users)
            .field("users_generation", &self.users_generation)
            .field("users_file", &self.users_file)
            .field("storage", &self.storage)
            .field("max_file_size", &self.max_file_size)
            .field("policy", &self.policy)
            .field(
                "control_token",
                &self.control_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Services with the default policy and empty counters.
    pub fn new(users: Users, storage: Storage, max_file_size: u64) -> Services {
        Services {
            users: RefCell::new(users),
            users_generation: Cell::new(0),
            users_file: None,
            storage,
            max_file_size,
            metrics: Metrics::new(),
            policy: Policy::default(),
            logins: RefCell::new(Logins::default()),
            started: Instant::now(),
            shutdown_requested: Cell::new(false),
            reload_requested: Cell::new(false),
            health: crate::health::Health::default(),
            access: RefCell::new(None),
            control_token: None,
            metrics_token: None,
            checks: Arc::default(),
            web: RefCell::default(),
            locks: RefCell::default(),
        }
    }

    /// Re-reads the users file: a valid one replaces every user at once, a
    /// broken one leaves the users as they were. Returns how many users
    /// there are now, or why nothing changed.
    pub fn reload_users(&self) -> Result<usize, String> {
        let Some(path) = &self.users_file else {
            return Err("no users file to reload".to_owned());
        };
        match Users::load(path) {
            Ok(users) => {
                let count = users.len();
                *self.users.borrow_mut() = users;
                self.users_generation.set(self.users_generation.get() + 1);
                log::info!("reloaded {count} user(s) from {}", path.display());
                Ok(count)
            }
            Err(err) => {
                let message = match err {
                    crate::auth::LoadError::Io(err) => format!("{}: {err}", path.display()),
                    crate::auth::LoadError::Invalid(err) => format!("{}:{err}", path.display()),
                };
                log::error!("reload failed, keeping the users as they were: {message}");
                Err(message)
            }
        }
    }

    /// True while `user` is still in the users list.
    pub fn user_exists(&self, user: &str) -> bool {
        self.users.borrow().contains(user)
    }

    /// Which load of the users file is in force; a login checked under an
    /// older one must be checked again.
    pub fn users_generation(&self) -> u64 {
        self.users_generation.get()
    }

    /// Adds a line to the access log, if there is one.
    pub fn access(&self, entry: &crate::access::Entry<'_>) {
        if let Some(log) = self.access.borrow_mut().as_mut() {
            log.record(entry);
        }
    }

    /// What every upload must fit: `--max-file-size`, `--user-quota`,
    /// `--user-max-files`.
    pub fn put_limits(&self) -> PutLimits {
        PutLimits {
            max_file_size: self.max_file_size,
            user_quota: self.policy.user_quota,
            user_max_files: self.policy.user_max_files,
        }
    }

    /// True while logins from `ip` are refused.
    pub fn is_locked_out(&self, ip: IpAddr) -> bool {
        self.logins.borrow().is_locked(ip, Instant::now())
    }
}

/// The contract between the reactor and a session of any front. The
/// reactor asks how many bytes the session takes ([`Front::read_limit`]),
/// hands it what it read ([`Front::receive`], [`Front::receive_eof`]),
/// takes what it wants sent ([`Front::output`], [`Front::output_written`],
/// or the file of a download, [`Front::file_output`]), runs its
/// socket-free work ([`Front::has_work`], [`Front::work`]), tells it about
/// time ([`Front::deadline`], [`Front::on_deadline`]) and shutdown, and
/// closes the socket once [`Front::is_done`].
///
/// What every front does alike is written here once, over its [`Shell`];
/// a front writes only what its protocol decides.
pub trait Front {
    /// What every front keeps.
    fn shell(&self) -> &Shell;
    fn shell_mut(&mut self) -> &mut Shell;

    /// Where the session is, as [`Front::advance`] sees it.
    fn phase(&self) -> Phase;

    /// Says its last word and closes: only what is queued still goes.
    fn close(&mut self);

    /// How many bytes the session takes now; 0 means do not read.
    fn read_limit(&self) -> usize;

    /// Runs the next complete command (or request) in the input, if there
    /// is one; false when there is none yet.
    fn next_command(&mut self, services: &Services) -> bool;

    /// While more reply bytes than this wait to be sent, no further
    /// pipelined command runs: a client that sends and never reads cannot
    /// grow the buffer.
    fn backlog(&self) -> usize;

    /// Called first with every chunk of bytes the client sent, before they
    /// join the input.
    fn arriving(&mut self) {}

    /// In [`Phase::Receiving`]: feeds the payload at the start of `data`
    /// to the upload; returns how many bytes that was.
    fn take_payload(&mut self, _data: &[u8], _services: &Services) -> usize {
        0
    }

    /// In [`Phase::Sending`], once the output is sent: moves more of the
    /// download into it, or ends the download.
    fn refill(&mut self, _services: &Services) {}

    /// In [`Phase::Working`], after every event: what the front does while
    /// its work waits (shutdown does not wait for hashing or a password
    /// check).
    fn while_working(&mut self, _services: &Services) {}

    /// What the front says to an idle client when the server shuts down.
    fn shutting_down_words(&mut self, _services: &Services) {}

    /// What the front does when its peer closes its sending side, before
    /// it runs what it still can: a login waiting for its password check
    /// has nobody left to answer, so the check (queued or running) is
    /// dropped rather than delaying everyone else's.
    fn peer_closed(&mut self) {
        if self.password_check().is_some() {
            log::info!("{} closed during its password check", self.shell().peer);
            self.shell_mut().input.clear();
            self.close();
        }
    }

    /// Ends whatever runs now and closes, silently; `reason` is for the
    /// logs. What an interrupted upload becomes is the front's to say.
    fn interrupt(&mut self, reason: &str, services: &Services);

    /// When the session next needs [`Front::on_deadline`], besides the
    /// end of a held reply.
    fn timeout(&self, services: &Services) -> Option<Instant>;

    /// The time given by [`Front::timeout`] is up.
    fn time_out(&mut self, services: &Services);

    /// The drain period after a shutdown is over.
    fn end_drain(&mut self, services: &Services);

    /// True while there is socket-free work: call [`Front::work`].
    fn has_work(&self) -> bool {
        false
    }

    /// Runs one bounded step of that work; returns how much of the
    /// session's turn it used, in bytes (`usize::MAX`: all of it).
    fn work(&mut self, _services: &Services) -> usize {
        0
    }

    /// The download running now, if any.
    fn download(&self) -> Option<&Download> {
        None
    }

    fn download_mut(&mut self) -> Option<&mut Download> {
        None
    }

    /// Ends the running download before its end: the announced length can
    /// no longer be met, so closing the connection is the only honest
    /// signal left. What was queued is still sent.
    fn cut_download(&mut self, _reason: &str, _services: &Services) {}

    /// The rest of the file being downloaded, once everything before it
    /// was sent, when the driver sends files itself.
    fn file_output(&self) -> Option<FileOutput<'_>> {
        self.download()?.file_output(&self.shell().out)
    }

    /// `n` bytes of [`Front::file_output`] were sent (at most its `len`).
    fn file_output_written(&mut self, n: u64, services: &Services) {
        if let Some(download) = self.download_mut() {
            download.file_written(n);
            self.shell_mut().touch();
        }
        self.advance(services);
    }

    /// Sending [`Front::file_output`] failed on the file's side: it ended
    /// sooner than announced (`UnexpectedEof`) or could not be read.
    fn file_output_failed(&mut self, err: &std::io::Error, services: &Services) {
        if self.download().is_some() {
            log::error!("{} read failed during download: {err}", self.shell().peer);
            self.cut_download("read failed", services);
        }
    }

    /// The password check the session waits for or runs, if any.
    fn password_check(&self) -> Option<&PasswordCheck> {
        None
    }

    fn password_check_mut(&mut self) -> Option<&mut PasswordCheck> {
        None
    }

    /// True while a password check waits for a free slot.
    fn wants_check_slot(&self) -> bool {
        self.password_check()
            .is_some_and(|check| !check.is_running())
    }

    /// Takes a free password-check slot if the session waits for one;
    /// true when it did (the session then has work).
    fn take_check_slot(&mut self, _services: &Services) -> bool {
        self.password_check_mut()
            .is_some_and(PasswordCheck::take_slot)
    }

    /// For a control connection that has not given the token yet: when
    /// it connected (the oldest gives way to a new one when every control
    /// slot is taken).
    fn waiting_since(&self) -> Option<Instant> {
        None
    }

    /// Closes at once, to give the slot to a new connection.
    fn give_way(&mut self) {}

    /// True once the session said its last word: only what is queued
    /// still goes.
    fn is_closing(&self) -> bool {
        self.phase() == Phase::Closing
    }

    /// Takes bytes the client sent; `data.len()` is at most
    /// [`Front::read_limit`].
    fn receive(&mut self, data: &[u8], services: &Services) {
        self.shell_mut().touch();
        self.arriving();
        let taken = self.take_payload(data, services);
        self.shell_mut().input.extend_from_slice(&data[taken..]);
        self.advance(services);
    }

    /// Runs whatever can run now; called after every event: feeds buffered
    /// payload to an upload, refills a download, runs complete commands
    /// while the replies before them are not piling up.
    fn advance(&mut self, services: &Services) {
        loop {
            if self.shell().out.is_held() {
                break;
            }
            match self.phase() {
                Phase::Closing => break,
                Phase::Receiving => {
                    if self.shell().input.is_empty() {
                        if self.shell().peer_eof {
                            // The upload cannot complete; the replies to
                            // what came before it are still sent.
                            self.interrupt("client closed the connection", services);
                        }
                        break;
                    }
                    // Payload that arrived right behind its command.
                    let input = std::mem::take(&mut self.shell_mut().input);
                    let taken = self.take_payload(&input, services);
                    let shell = self.shell_mut();
                    shell.input = input;
                    shell.input.drain(..taken);
                    if taken == 0 {
                        break;
                    }
                }
                Phase::Sending => {
                    if !self.output().is_empty() {
                        break;
                    }
                    self.refill(services);
                    if self.phase() == Phase::Sending {
                        break;
                    }
                }
                // Its steps run from `work`, and commands behind it wait.
                Phase::Working => {
                    self.while_working(services);
                    break;
                }
                Phase::Ready => {
                    if self.shell().hang_up {
                        self.close();
                        break;
                    }
                    if self.output().len() > self.backlog() {
                        break;
                    }
                    if self.shell().shutting_down {
                        self.shutting_down_words(services);
                        self.close();
                        break;
                    }
                    if !self.next_command(services) {
                        if self.shell().peer_eof {
                            self.close();
                        }
                        break;
                    }
                }
            }
        }
        self.shell_mut().release_idle_buffers();
    }

    /// Bytes waiting to be sent.
    fn output(&self) -> &[u8] {
        self.shell().out.sendable()
    }

    /// The file of a download follows [`Front::output`] as soon as that is
    /// sent, through [`Front::file_output`]: the driver may write the
    /// output so that the kernel waits for the file's first bytes and sends
    /// them together (see `sys::send_more`).
    fn file_follows_output(&self) -> bool {
        self.download()
            .is_some_and(|download| download.file_follows(&self.shell().out))
    }

    /// True while there is anything to send, from the buffer or a file.
    fn wants_to_write(&self) -> bool {
        !self.output().is_empty() || self.file_output().is_some()
    }

    /// `n` bytes of [`Front::output`] were sent.
    fn output_written(&mut self, n: usize, services: &Services) {
        let shell = self.shell_mut();
        shell.touch();
        shell.out.consume(n);
        self.advance(services);
    }

    /// The client closed its sending side: what it sent before is still
    /// answered.
    fn receive_eof(&mut self, services: &Services) {
        self.shell_mut().peer_eof = true;
        self.peer_closed();
        self.advance(services);
    }

    /// True when the session has nothing more to do and the socket can be
    /// closed.
    fn is_done(&self) -> bool {
        self.is_closing() && self.shell().out.queued().is_empty()
    }

    /// The driver sends file bytes itself from now on: a download of at
    /// least `min_len` bytes offers its file through
    /// [`Front::file_output`] instead of reading it into [`Front::output`]
    /// (the reactor passes [`DIRECT_MIN`]).
    fn send_files_directly(&mut self, min_len: u64) {
        self.shell_mut().out.send_files_directly(min_len);
    }

    /// The driver cannot send from files after all: the file goes through
    /// [`Front::output`] again, from where it stopped.
    fn stop_sending_files_directly(&mut self, services: &Services) {
        self.shell_mut().out.stop_sending_files_directly();
        self.advance(services);
    }

    /// The server is shutting down: an idle session says so and closes; a
    /// running transfer may finish first.
    fn begin_shutdown(&mut self, services: &Services) {
        self.shell_mut().shutting_down = true;
        self.advance(services);
    }

    /// The connection failed (reset, write error): drop everything.
    fn connection_lost(&mut self, reason: &str, services: &Services) {
        self.interrupt(reason, services);
        self.shell_mut().out.discard();
    }

    /// When the session next needs [`Front::on_deadline`]: the end of a
    /// held reply, or the timeout of what it is doing now.
    fn deadline(&self, services: &Services) -> Option<Instant> {
        self.shell()
            .out
            .held_until()
            .or_else(|| self.timeout(services))
    }

    /// Called at or after [`Front::deadline`]: releases a held reply, or
    /// ends what ran out of time.
    fn on_deadline(&mut self, now: Instant, services: &Services) {
        if self.shell().out.is_held() {
            if self.shell_mut().out.release_if_due(now) {
                self.advance(services);
            }
            return;
        }
        if self
            .timeout(services)
            .is_some_and(|deadline| now >= deadline)
        {
            self.time_out(services);
        }
    }
}

/// Where a session is, as [`Front::advance`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its last word is said: only what is queued still goes.
    Closing,
    /// The payload of an upload arrives.
    Receiving,
    /// A download's bytes go out.
    Sending,
    /// Socket-free work of its own runs from [`Front::work`] (hashing, a
    /// listing's steps, a password check): commands behind it wait.
    Working,
    /// Ready for the next command or request.
    Ready,
}

/// A session of any front, as the reactor keeps it: an enum rather than a
/// box, so that an idle connection costs no allocation of its own.
#[derive(Debug)]
pub enum Session {
    Line(line::Session),
    Http(http::Session),
    Control(control::Session),
}

impl Session {
    /// A new session of `protocol` for a connection from `peer`.
    pub fn new(protocol: Protocol, peer: SocketAddr, services: &Services) -> Session {
        match protocol {
            Protocol::Line => Session::Line(line::Session::new(peer, services)),
            Protocol::Http => Session::Http(http::Session::new(peer)),
            Protocol::Control => Session::Control(control::Session::new(peer)),
        }
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            Session::Line(_) => Protocol::Line,
            Session::Http(_) => Protocol::Http,
            Session::Control(_) => Protocol::Control,
        }
    }
}

/// The reactor calls every [`Front`] method on a `Session` directly.
impl std::ops::Deref for Session {
    type Target = dyn Front;

    fn deref(&self) -> &(dyn Front + 'static) {
        match self {
            Session::Line(s) => s,
            Session::Http(s) => s,
            Session::Control(s) => s,
        }
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut (dyn Front + 'static) {
        match self {
            Session::Line(s) => s,
            Session::Http(s) => s,
            Session::Control(s) => s,
        }
    }
}

/// What the unit tests of every front drive a session with, no socket.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;

    use super::{Front, Services};
    use crate::auth::Users;
    use crate::storage::{Options, Storage};

    /// Services over a temporary directory, with the user `alice:pw`.
    pub struct Harness {
        _root: tempfile::TempDir,
        pub services: Services,
    }

    impl Harness {
        pub fn new(max_file_size: u64) -> Harness {
            let root = tempfile::tempdir().unwrap();
            let options = Options {
                fsync: false,
                ..Options::default()
            };
            let storage = Storage::open(root.path(), options).unwrap();
            let users = Users::parse(b"alice:pw\n").unwrap();
            let mut services = Services::new(users, storage, max_file_size);
            // Held replies are tested on their own.
            services.policy.login_delay = std::time::Duration::ZERO;
            Harness {
                _root: root,
                services,
            }
        }

        pub fn services(&self) -> &Services {
            &self.services
        }

        /// Feeds `input` as the reactor would, `step` bytes at a time at
        /// most (and never more than `read_limit`), running socket-free
        /// work and reading all output as it appears.
        pub fn talk_in_steps(
            &self,
            session: &mut dyn Front,
            mut input: &[u8],
            step: usize,
        ) -> Vec<u8> {
            let services = self.services();
            let mut seen = Vec::new();
            loop {
                if session.has_work() {
                    session.work(services);
                    continue;
                }
                let pending = session.output().len();
                if pending > 0 {
                    seen.extend_from_slice(session.output());
                    session.output_written(pending, services);
                    continue;
                }
                let n = session.read_limit().min(input.len()).min(step);
                if n == 0 {
                    return seen;
                }
                session.receive(&input[..n], services);
                input = &input[n..];
            }
        }
    }

    impl Harness {
        /// [`Harness::talk_in_steps`] with no limit on the step.
        pub fn talk(&self, session: &mut dyn Front, input: &[u8]) -> Vec<u8> {
            self.talk_in_steps(session, input, usize::MAX)
        }

        /// [`Harness::talk_in_steps`], as text.
        pub fn talk_text(&self, session: &mut dyn Front, input: &[u8], step: usize) -> String {
            String::from_utf8_lossy(&self.talk_in_steps(session, input, step)).into_owned()
        }
    }

    pub fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection pays for a whole `Session` even when idle; what a
    /// transfer needs is boxed. Growing past this is a footprint decision.
    #[test]
    fn an_idle_session_stays_small() {
        let size = std::mem::size_of::<Session>();
        println!(
            "size_of::<Session>() = {size}, line {}, http {}, control {}",
            std::mem::size_of::<line::Session>(),
            std::mem::size_of::<http::Session>(),
            std::mem::size_of::<control::Session>()
        );
        assert!(size <= 256, "Session is {size} bytes");
    }
}
