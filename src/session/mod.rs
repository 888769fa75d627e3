//! Client sessions as sans-IO state machines, one kind per front.
//!
//! A session never touches a socket. The reactor asks it how many bytes it
//! will take ([`Session::read_limit`]), hands it what it read
//! ([`Session::receive`], [`Session::receive_eof`]), takes the bytes it
//! wants sent ([`Session::output`], [`Session::output_written`]; when the
//! reactor asks for it, a download offers its file for `sendfile` instead,
//! [`Session::file_output`]), runs its socket-free work a step at a time
//! ([`Session::has_work`], [`Session::work`]) and closes the socket once
//! [`Session::is_done`]. Storage, users and counters are reached through
//! [`Services`].
//!
//! - [`line`]: the line protocol of `protocol.md`;
//! - [`http`]: the HTTP/1.1 front;
//! - [`control`]: the operator's control port.

pub mod control;
mod hashing;
pub mod http;
pub mod line;
mod listing;
mod login;
mod outbox;
mod replies;
mod transfer;

pub use hashing::HASH_STEP;
pub use listing::{LIST_BLOCK, LIST_STEP_ENTRIES};
pub(crate) use login::{CheckTicket, LoginStart, count_failure, finish_login, start_login};
pub use login::{
    MAX_AUTH_FAILURES, MAX_CHECKS_PER_ADDRESS, MAX_CONCURRENT_CHECKS, MAX_QUEUED_CHECKS,
};
pub use outbox::{DIRECT_MIN, FileOutput};
pub(crate) use replies::Failure;
pub use transfer::{PREVIEW_LEN, TRANSFER_BUFFER};

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::auth::Users;
use crate::config::Policy;
use crate::limits::Logins;
use crate::metrics::{Metrics, Protocol};
use crate::protocol::name::FileName;
use crate::storage::{Storage, UserDir};
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
    /// The control port's token, when there is a control port.
    pub control_token: Option<String>,
    /// Password checks waiting and running (see [`CheckTicket`]). Behind
    /// a mutex only so that the server stays `Send`; it is used from one
    /// thread.
    checks: Arc<Mutex<CheckBook>>,
}

// The control token must never reach a log.
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
            control_token: None,
            checks: Arc::default(),
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

    /// True while logins from `ip` are refused.
    pub fn is_locked_out(&self, ip: IpAddr) -> bool {
        self.logins.borrow().is_locked(ip, Instant::now())
    }
}

/// Checks that storing `size` bytes under `name` keeps the user within
/// `--user-quota` and `--user-max-files`, and returns how many bytes the
/// quota leaves for `name` (`None`: no byte quota). The user's files,
/// partials and running uploads count (see [`Storage::usage`]); the file
/// the upload replaces and the partial of the same name give their bytes
/// back (the upload takes their place). The caller claims `size` on the
/// upload it then starts ([`Upload::claim`]), so that the next check
/// counts it.
///
/// [`Storage::usage`]: crate::storage::Storage::usage
/// [`Upload::claim`]: crate::storage::Upload::claim
pub(crate) fn check_quota(
    services: &Services,
    dir: &UserDir,
    name: FileName<'_>,
    size: u64,
) -> Result<Option<u64>, crate::storage::OverQuota> {
    let policy = &services.policy;
    if policy.user_quota.is_none() && policy.user_max_files.is_none() {
        return Ok(None);
    }
    let storage = &services.storage;
    // If the usage cannot be read, the upload itself will tell.
    let Ok(usage) = storage.usage(dir) else {
        return Ok(None);
    };
    let existing = storage.size_of(dir, name);
    let held = storage.partial_len(dir, name).unwrap_or(0);
    let given_back = existing.unwrap_or(0).saturating_add(held);
    let room = policy
        .user_quota
        .map(|quota| quota.saturating_sub(usage.bytes.saturating_sub(given_back)));
    if let (Some(quota), Some(room)) = (policy.user_quota, room)
        && size > room
    {
        return Err(crate::storage::OverQuota::Bytes { quota });
    }
    if let Some(max) = policy.user_max_files
        && existing.is_none()
        && usage.files + 1 > max
    {
        return Err(crate::storage::OverQuota::Files { max });
    }
    Ok(room)
}

/// A session of either kind, as the reactor keeps it.
#[derive(Debug)]
pub enum Session {
    Line(line::Session),
    Http(http::Session),
    Control(control::Session),
}

/// Calls the same method on whichever session this is.
macro_rules! each {
    ($self:expr, $session:ident => $call:expr) => {
        match $self {
            Session::Line($session) => $call,
            Session::Http($session) => $call,
            Session::Control($session) => $call,
        }
    };
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

    pub fn read_limit(&self) -> usize {
        each!(self, s => s.read_limit())
    }

    pub fn receive(&mut self, data: &[u8], services: &Services) {
        each!(self, s => s.receive(data, services))
    }

    pub fn receive_eof(&mut self, services: &Services) {
        each!(self, s => s.receive_eof(services))
    }

    pub fn output(&self) -> &[u8] {
        each!(self, s => s.output())
    }

    pub fn output_written(&mut self, n: usize, services: &Services) {
        each!(self, s => s.output_written(n, services))
    }

    /// The driver sends the bytes of downloads of at least `min_len`
    /// bytes straight from the file ([`Session::file_output`]); the
    /// control port has no downloads.
    pub fn send_files_directly(&mut self, min_len: u64) {
        match self {
            Session::Line(s) => s.send_files_directly(min_len),
            Session::Http(s) => s.send_files_directly(min_len),
            Session::Control(_) => {}
        }
    }

    /// File bytes to send after [`Session::output`], when the driver sends
    /// files itself.
    pub fn file_output(&self) -> Option<FileOutput<'_>> {
        match self {
            Session::Line(s) => s.file_output(),
            Session::Http(s) => s.file_output(),
            Session::Control(_) => None,
        }
    }

    pub fn file_output_written(&mut self, n: u64, services: &Services) {
        match self {
            Session::Line(s) => s.file_output_written(n, services),
            Session::Http(s) => s.file_output_written(n, services),
            Session::Control(_) => {}
        }
    }

    pub fn file_output_failed(&mut self, err: &std::io::Error, services: &Services) {
        match self {
            Session::Line(s) => s.file_output_failed(err, services),
            Session::Http(s) => s.file_output_failed(err, services),
            Session::Control(_) => {}
        }
    }

    pub fn stop_sending_files_directly(&mut self, services: &Services) {
        match self {
            Session::Line(s) => s.stop_sending_files_directly(services),
            Session::Http(s) => s.stop_sending_files_directly(services),
            Session::Control(_) => {}
        }
    }

    /// True while there is anything to send, from the buffer or a file.
    pub fn wants_to_write(&self) -> bool {
        !self.output().is_empty() || self.file_output().is_some()
    }

    pub fn has_work(&self) -> bool {
        each!(self, s => s.has_work())
    }

    pub fn work(&mut self, services: &Services) -> usize {
        each!(self, s => s.work(services))
    }

    pub fn is_done(&self) -> bool {
        each!(self, s => s.is_done())
    }

    pub fn begin_shutdown(&mut self, services: &Services) {
        each!(self, s => s.begin_shutdown(services))
    }

    pub fn end_drain(&mut self, services: &Services) {
        each!(self, s => s.end_drain(services))
    }

    pub fn connection_lost(&mut self, reason: &str, services: &Services) {
        each!(self, s => s.connection_lost(reason, services))
    }

    pub fn deadline(&self, services: &Services) -> Option<Instant> {
        each!(self, s => s.deadline(services))
    }

    pub fn on_deadline(&mut self, now: Instant, services: &Services) {
        each!(self, s => s.on_deadline(now, services))
    }

    /// For a control connection that has not given the token yet: when
    /// it connected (the oldest gives way to a new one when every control
    /// slot is taken).
    pub fn control_waiting_since(&self) -> Option<Instant> {
        match self {
            Session::Control(s) => s.waiting_since(),
            _ => None,
        }
    }

    /// Closes a control connection at once, to give its slot to a new one.
    pub fn give_way(&mut self) {
        if let Session::Control(s) = self {
            s.give_way();
        }
    }

    /// True while the session waits for a password-check slot.
    pub fn wants_check_slot(&self) -> bool {
        match self {
            Session::Line(s) => s.wants_check_slot(),
            Session::Http(s) => s.wants_check_slot(),
            Session::Control(_) => false,
        }
    }

    /// Takes a free password-check slot if the session waits for one;
    /// true when it did (the session then has work).
    pub fn take_check_slot(&mut self, services: &Services) -> bool {
        match self {
            Session::Line(s) => s.take_check_slot(services),
            Session::Http(s) => s.take_check_slot(services),
            Session::Control(_) => false,
        }
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
        assert!(size <= 256, "Session is {size} bytes");
    }
}
