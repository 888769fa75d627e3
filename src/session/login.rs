//! Logins, as both fronts check them: the rules (lockout, the password
//! check's queue), the audit lines and the failure counters, and the
//! password check a session runs a slice at a time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{Services, Shell};
use crate::audit::Event;
use crate::auth::{PendingLogin, Verification};
use crate::kdf::STEP_TIME;
use crate::metrics::Protocol;

/// Failed logins allowed on one connection before it is closed (`530` and
/// the close on the line protocol, `401` and the close over HTTP).
pub const MAX_AUTH_FAILURES: u8 = 3;

/// How a login check started.
#[derive(Debug)]
pub(crate) enum LoginStart {
    /// Decided at once (no hashed entry in the users file): the user, or
    /// `None`.
    Done(Option<String>),
    /// A password check: it runs a slice at a time once its ticket runs
    /// ([`PasswordCheck::step`]), then [`finish_login`].
    Pending(PasswordCheck),
    /// The address is locked out: refused without looking at the password.
    Locked,
    /// Too many checks wait already (from this address or in all): refused
    /// for now, without counting as a failure.
    Busy,
}

/// Starts a login check with the rules both fronts share.
pub(crate) fn start_login(
    services: &Services,
    peer: SocketAddr,
    user: &[u8],
    password: &[u8],
    protocol: Protocol,
) -> LoginStart {
    if services.is_locked_out(peer.ip()) {
        return LoginStart::Locked;
    }
    match services.users.borrow().start_verify(user, password) {
        Verification::Done(result) => LoginStart::Done(result),
        Verification::Pending(pending) => match services.queue_check(peer.ip()) {
            Some(ticket) => LoginStart::Pending(PasswordCheck::new(pending, ticket)),
            None => {
                let reason = "busy";
                Event::LoginRefused {
                    claimed: user,
                    reason,
                }
                .record(peer, protocol);
                LoginStart::Busy
            }
        },
    }
}

/// Starts a login by client certificate (a login without a password):
/// it succeeds when the connection's valid client certificate names
/// `user` and `user` exists; anything else is a failed login like a wrong
/// password (the caller records it with [`finish_login`]).
pub(crate) fn start_certificate_login(
    services: &Services,
    channel: &super::Channel,
    peer: SocketAddr,
    user: &[u8],
) -> LoginStart {
    if services.is_locked_out(peer.ip()) {
        return LoginStart::Locked;
    }
    let named = channel
        .certified_user()
        .filter(|name| name.as_bytes() == user && services.user_exists(name));
    if named.is_none()
        && let Some(why) = channel.certified.as_deref().and_then(|c| c.as_ref().err())
    {
        log::info!("{peer}: client certificate refused: {why}");
    }
    LoginStart::Done(named.map(str::to_owned))
}

/// A password check as a session waits for it and runs it, a slice at a
/// time, whichever front it serves.
#[derive(Debug)]
pub struct PasswordCheck {
    pending: Box<PendingLogin>,
    /// Not running while the check waits its turn (see the reactor).
    ticket: CheckTicket,
}

/// What one slice of a [`PasswordCheck`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// Not decided yet.
    Undecided,
    /// Decided: the user, or `None`.
    Decided(Option<String>),
    /// The address was locked out while the check waited or ran: it gets
    /// the refusal, not the outcome.
    LockedOut,
}

impl PasswordCheck {
    /// Takes its place among the running checks at once if it can.
    fn new(pending: Box<PendingLogin>, mut ticket: CheckTicket) -> PasswordCheck {
        ticket.try_run();
        PasswordCheck { pending, ticket }
    }

    /// True once it holds a slot: the session then has work.
    pub fn is_running(&self) -> bool {
        self.ticket.is_running()
    }

    /// Takes a free slot when waiting for one; true when it did.
    pub fn take_slot(&mut self) -> bool {
        !self.ticket.is_running() && self.ticket.try_run()
    }

    /// Runs one slice (about [`STEP_TIME`]) once it holds a slot.
    pub fn step(&mut self, services: &Services, peer: SocketAddr) -> Checked {
        if !self.ticket.is_running() {
            return Checked::Undecided;
        }
        if services.is_locked_out(peer.ip()) {
            return Checked::LockedOut;
        }
        match self.pending.step_for(STEP_TIME) {
            Some(result) => Checked::Decided(result),
            None => Checked::Undecided,
        }
    }
}

/// Counts a failed login on a connection (`failures` of it so far) and
/// holds the reply to it for the login delay, so that an unknown user and
/// a wrong password are answered alike and guessing stays slow. True when
/// it was the last one allowed: the connection then closes.
pub fn failed_on_connection(failures: &mut u8, shell: &mut Shell, services: &Services) -> bool {
    *failures = failures.saturating_add(1);
    log::debug!(
        "{} failed login {} of {MAX_AUTH_FAILURES}",
        shell.peer,
        *failures
    );
    if !services.policy.login_delay.is_zero() {
        shell.out.hold(Instant::now() + services.policy.login_delay);
    }
    *failures >= MAX_AUTH_FAILURES
}

/// Records the outcome of a login: the audit line, the failure counters
/// and the address's lockout. Returns the user's name on success.
pub(crate) fn finish_login(
    services: &Services,
    peer: SocketAddr,
    claimed: &[u8],
    result: Option<String>,
    locked: bool,
    protocol: Protocol,
) -> Option<String> {
    match &result {
        Some(user) => Event::LoginOk { user }.record(peer, protocol),
        None if locked => {
            services.metrics.failed_login(protocol);
            let reason = "locked out";
            Event::LoginRefused { claimed, reason }.record(peer, protocol);
        }
        None => {
            services.metrics.failed_login(protocol);
            Event::LoginFailed { claimed }.record(peer, protocol);
            count_failure(services, peer, protocol);
        }
    }
    result
}

/// Counts a failed login (or control token) of `peer` toward its
/// address's lockout, and logs the lockout it may start.
pub(crate) fn count_failure(services: &Services, peer: SocketAddr, protocol: Protocol) {
    let now = Instant::now();
    if services
        .logins
        .borrow_mut()
        .failed(peer.ip(), now, &services.policy)
    {
        Event::Lockout {
            failures: services.policy.lockout_failures,
            duration: services.policy.lockout_duration,
        }
        .record(peer, protocol);
    }
}

/// Password checks running at once, over every session: each takes
/// slices of the one thread, so more would only delay everyone.
pub const MAX_CONCURRENT_CHECKS: usize = 2;
/// Password checks one address may have waiting or running. One runs at
/// a time per address, so more would only wait; past this a login is
/// refused for now (`421`, HTTP `503`) instead of queueing without end.
pub const MAX_CHECKS_PER_ADDRESS: usize = 8;
/// Password checks waiting or running in all: at about 140 ms each, two
/// at a time, the whole queue drains within the 30 s login timeout only
/// if it stays this short (the queue is fair across addresses, so a new
/// address is served after one check per waiting address, not after all).
pub const MAX_QUEUED_CHECKS: usize = 512;

/// The checks waiting and running, per address.
#[derive(Debug, Default)]
pub(crate) struct CheckBook {
    /// Checks waiting or running, per address; no zero entries.
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
    /// The addresses with a check running: one check each.
    running: Vec<IpAddr>,
}

/// A password check's place in the queue, and once it runs, among the
/// [`MAX_CONCURRENT_CHECKS`]; given back when dropped, however the check
/// ends (decided, or its connection gone).
#[derive(Debug)]
pub struct CheckTicket {
    ip: IpAddr,
    running: bool,
    book: Arc<Mutex<CheckBook>>,
}

fn lock(book: &Mutex<CheckBook>) -> MutexGuard<'_, CheckBook> {
    // Used from one thread: a poisoned lock only means a panic elsewhere,
    // and the counts are still whole.
    book.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CheckTicket {
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Starts running when a slot is free and no other check of this
    /// address runs; true when it runs (now or already).
    pub fn try_run(&mut self) -> bool {
        if !self.running {
            let mut book = lock(&self.book);
            if book.running.len() < MAX_CONCURRENT_CHECKS && !book.running.contains(&self.ip) {
                book.running.push(self.ip);
                self.running = true;
            }
        }
        self.running
    }
}

impl Drop for CheckTicket {
    fn drop(&mut self) {
        let mut book = lock(&self.book);
        if self.running {
            book.running.retain(|ip| *ip != self.ip);
        }
        book.total -= 1;
        if let Some(count) = book.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                book.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Services {
    /// A place in the password-check queue for a login from `ip`, unless
    /// the queue is full for it.
    pub(crate) fn queue_check(&self, ip: IpAddr) -> Option<CheckTicket> {
        let mut book = lock(&self.checks);
        let count = book.per_ip.get(&ip).copied().unwrap_or(0);
        if count >= MAX_CHECKS_PER_ADDRESS || book.total >= MAX_QUEUED_CHECKS {
            return None;
        }
        book.per_ip.insert(ip, count + 1);
        book.total += 1;
        Some(CheckTicket {
            ip,
            running: false,
            book: Arc::clone(&self.checks),
        })
    }

    pub fn check_slot_free(&self) -> bool {
        lock(&self.checks).running.len() < MAX_CONCURRENT_CHECKS
    }

    /// True while a check of a login from `ip` runs.
    pub fn check_running_for(&self, ip: IpAddr) -> bool {
        lock(&self.checks).running.contains(&ip)
    }
}
