//! One line-protocol connection as a sans-IO state machine.
//!
//! The session never touches a socket. The reactor asks it how many bytes it
//! will take ([`Front::read_limit`]), hands it what it read
//! ([`Front::receive`], [`Front::receive_eof`]), takes the bytes it wants
//! sent ([`Front::output`], [`Front::output_written`]) and closes the
//! socket once [`Front::is_done`]. Storage and users are reached through
//! [`Services`]. A test or a fuzz target can drive a whole session from a
//! byte slice.
//!
//! ```text
//!            AUTH ok                 PUT accepted          all bytes in
//!   Auth ───────────────► Idle ───────────────► Receiving ─────────────┐
//!    │ 3rd failure,        ▲ │ LIST/VIEW/GET        ▲                   │
//!    │ QUIT, EOF,          │ ├─────────────► Sending ──────┐            │
//!    │ shutdown            │ │ HASH, resumed PUT  │ prefix hashed       │
//!    │                     │ └─────────────► Hashing ──────┤            │
//!    │                     └───────────────────────────────┴────────────┘
//!    ▼                          QUIT, EOF, shutdown, lost connection
//!  Closing ◄──────────────────────────── (from any state)
//! ```
//!
//! `Hashing` is work without a socket: reading a file to compute its
//! SHA-256 (for `HASH` of a file that has no digest record, or for the held
//! bytes of a resumed upload). The reactor runs it a bounded step at a time
//! ([`Front::has_work`], [`Front::work`]) so that hashing a large file
//! never holds up other sessions. A `LIST` is sent from its own state,
//! `Listing` (drawn as `Sending`), which reads the directory the same way,
//! a block of entries per step, and takes the next step only once the last
//! block was sent.
//!
//! Buffers are bounded: pending command bytes at most [`MAX_LINE`], queued
//! replies stop command processing past [`REPLY_BACKLOG`], and a download
//! holds at most [`TRANSFER_BUFFER`](super::TRANSFER_BUFFER) bytes of file data, a listing about
//! [`LIST_BLOCK`](super::LIST_BLOCK). Upload bytes go
//! straight from the reactor's read buffer to the file. An idle session
//! holds no buffer at all.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::time::Instant;

use super::listing::{Streaming, write_listing_line};
use super::replies::Failure;
use super::transfer::{self, Download, Finished, Intake, Interrupted, PREVIEW_LEN};
use super::{Checked, Front, LoginStart, PasswordCheck, Phase, Services, Shell};
use crate::audit::{Event, TransferKind, TreeChange, Who};
use crate::integrity::Digest;
use crate::metrics::Protocol;
use crate::protocol::line::{self, Command, MAX_LINE, ParseError, Status, Verb};
use crate::protocol::path::{FilePath, FilePathBuf};
use crate::protocol::reply::Reply;
use crate::storage::{PutStarted, StorageError, UserDir};

mod folders;
mod hashing;

use hashing::{Digesting, Purpose};

/// While more reply bytes than this wait to be sent, no further pipelined
/// command runs: a client that sends and never reads cannot grow the buffer.
pub const REPLY_BACKLOG: usize = 4096;

/// A logged-in user: who, their directory, and what `REST` and `EXPECT`
/// asked of the next transfer.
#[derive(Debug)]
struct Login {
    /// The user's directory, which also holds the user's name (shared by
    /// every session of the user: no copy per session).
    dir: UserDir,
    /// Boxed, and absent until used: most sessions never send them.
    pending: Option<Box<Pending>>,
}

/// What `REST` and `EXPECT` asked of the next transfer.
#[derive(Debug, Default)]
struct Pending {
    /// `REST`: the next `GET` or `PUT` starts here.
    rest: Option<u64>,
    /// `EXPECT`: the next `PUT` must have this digest.
    expect: Option<Digest>,
    /// `FROM`: the source of the next `MOVE` or `COPY`.
    from: Option<FilePathBuf>,
    /// `REPLACE`: the next `MOVE` or `COPY` may replace its destination.
    replace: bool,
}

impl Login {
    fn new(dir: UserDir) -> Login {
        Login { dir, pending: None }
    }

    fn user(&self) -> &str {
        self.dir.user()
    }

    /// The user, for an audit line.
    fn who(&self, peer: SocketAddr) -> Who<'_> {
        Who {
            peer,
            protocol: Protocol::Line,
            user: self.user(),
        }
    }

    fn pending(&mut self) -> &mut Pending {
        self.pending.get_or_insert_default()
    }

    /// Takes the `REST` offset for the transfer that starts now.
    fn take_rest(&mut self) -> Option<u64> {
        self.pending.as_mut().and_then(|p| p.rest.take())
    }

    fn take_expect(&mut self) -> Option<Digest> {
        self.pending.as_mut().and_then(|p| p.expect.take())
    }
}

/// A login waiting for its password-hash check.
#[derive(Debug)]
struct Verifying {
    failures: u8,
    since: Instant,
    /// The user name as claimed, for the audit line.
    claimed: Vec<u8>,
    check: PasswordCheck,
}

/// A `PUT` in progress: the upload, its announced size, and the digest
/// `EXPECT` announced for it.
#[derive(Debug)]
struct Receive {
    intake: Intake,
    size: u64,
    expect: Option<Digest>,
}

impl Receive {
    /// Payload bytes still to come.
    fn remaining(&self) -> u64 {
        self.size - self.intake.received()
    }
}

#[derive(Debug)]
enum State {
    /// Not logged in yet, since `since`.
    Auth {
        failures: u8,
        since: Instant,
    },
    /// An `AUTH` whose password hash is being checked, a slice at a time.
    Verifying(Box<Verifying>),
    Idle(Login),
    // Boxed: an idle session pays only for a pointer to what a transfer
    // needs.
    Receiving(Login, Box<Receive>),
    Sending(Login, Box<Download>),
    Listing(Login, Box<Streaming>),
    Hashing(Login, Box<Digesting>),
    /// A `COPY`, a step at a time.
    Copying(Login, Box<folders::LineCopy>),
    Closing,
}

/// One connection's protocol state and buffers.
#[derive(Debug)]
pub struct Session {
    state: State,
    shell: Shell,
    /// The rest of a too-long line is being dropped, up to its LF.
    discarding: bool,
}

impl Front for Session {
    fn shell(&self) -> &Shell {
        &self.shell
    }

    fn shell_mut(&mut self) -> &mut Shell {
        &mut self.shell
    }

    fn phase(&self) -> Phase {
        match self.state {
            State::Closing => Phase::Closing,
            State::Receiving(..) => Phase::Receiving,
            State::Sending(..) => Phase::Sending,
            State::Listing(..) | State::Hashing(..) | State::Copying(..) | State::Verifying(_) => {
                Phase::Working
            }
            State::Auth { .. } | State::Idle(_) => Phase::Ready,
        }
    }

    fn close(&mut self) {
        self.state = State::Closing;
    }

    fn backlog(&self) -> usize {
        REPLY_BACKLOG
    }

    fn shutting_down_words(&mut self, services: &Services) {
        self.fail(Failure::ShuttingDown, services);
    }

    /// Neither hashing nor a password check is a transfer: shutdown does
    /// not wait for them. A resumed upload keeps its bytes for next time.
    fn while_working(&mut self, services: &Services) {
        let awaiting = match &self.state {
            // A listing that has sent nothing yet (it waits for replies
            // before it) is no transfer to finish: at shutdown it is
            // answered like any command not yet answered.
            State::Listing(_, job) if self.shell.shutting_down && !job.has_sent() => {
                self.state = State::Closing;
                self.fail(Failure::ShuttingDown, services);
                return;
            }
            State::Listing(..) => return,
            State::Hashing(_, job) => match &job.purpose {
                Purpose::Resume(receive) if receive.remaining() > self.shell.input.len() as u64 => {
                    Some(receive.remaining())
                }
                _ => None,
            },
            _ => None,
        };
        if self.shell.shutting_down {
            self.interrupt("server shutting down", services);
            self.fail(Failure::ShuttingDown, services);
        } else if let (true, Some(remaining)) = (self.shell.peer_eof, awaiting) {
            // The payload this upload needs is not all here and can no
            // longer arrive: stop now rather than after hashing bytes for
            // nobody. The PUT line is still answered as if the hashing had
            // finished (`150`, then the close that interrupts the upload),
            // exactly as a fresh PUT after the end of the client's stream
            // is. (A HASH, or a resume whose payload is all here, goes on:
            // a client that only closed its sending side still reads the
            // answer.)
            self.reply(Reply::Data(remaining), services);
            self.interrupt("client closed the connection", services);
        }
    }

    /// Executes the next complete line, if there is one.
    fn next_command(&mut self, services: &Services) -> bool {
        if self.discarding {
            match line::skip_line(&self.shell.input) {
                Some(end) => {
                    self.shell.input.drain(..end);
                    self.discarding = false;
                }
                None => {
                    self.shell.input.clear();
                    return false;
                }
            }
        }
        let input = mem::take(&mut self.shell.input);
        let consumed = match line::parse(&input) {
            Status::Partial => {
                self.shell.input = input;
                return false;
            }
            Status::Complete(parsed) => {
                self.execute(parsed.command, &input[..parsed.consumed], services);
                parsed.consumed
            }
        };
        self.shell.input = input;
        self.shell.input.drain(..consumed);
        true
    }

    fn refill(&mut self, services: &Services) {
        let State::Sending(_, download) = &mut self.state else {
            return;
        };
        match download.refill(&mut self.shell.out) {
            Ok(false) => {}
            Ok(true) => self.transition(|session, state| match state {
                State::Sending(login, download) => {
                    download.completed(login.who(session.shell.peer), services);
                    State::Idle(login)
                }
                other => other,
            }),
            // The announced size can no longer be met (a read failed, or
            // the file was truncated behind the server's back).
            Err(err) => self.file_output_failed(&err, services),
        }
    }

    fn take_payload(&mut self, data: &[u8], services: &Services) -> usize {
        let State::Receiving(login, receive) = &mut self.state else {
            return 0;
        };
        let n = data
            .len()
            .min(usize::try_from(receive.remaining()).unwrap_or(usize::MAX));
        if receive.intake.write(&data[..n])
            && let Err(err) = receive.intake.upload()
        {
            log::error!(
                "{} {}: write of {:?} failed: {err}",
                self.shell.peer,
                login.user(),
                receive.intake.name()
            );
        }
        if receive.remaining() == 0 {
            self.transition(|session, state| match state {
                State::Receiving(login, receive) => {
                    session.finish_upload(login, *receive, services)
                }
                other => other,
            });
        }
        n
    }

    fn download(&self) -> Option<&Download> {
        match &self.state {
            State::Sending(_, download) => Some(download),
            _ => None,
        }
    }

    fn download_mut(&mut self) -> Option<&mut Download> {
        match &mut self.state {
            State::Sending(_, download) => Some(download),
            _ => None,
        }
    }

    fn cut_download(&mut self, reason: &str, services: &Services) {
        self.transition(|session, state| {
            if let State::Sending(login, download) = state {
                download.cut(login.who(session.shell.peer), reason, services);
            }
            State::Closing
        });
    }

    /// How many bytes the session takes now; 0 means do not read.
    fn read_limit(&self) -> usize {
        if self.shell.peer_eof || self.shell.out.is_held() || self.shell.hang_up {
            return 0;
        }
        match &self.state {
            State::Closing => 0,
            // Payload goes straight to the file, never past its end, so no
            // command bytes behind it are read into the upload.
            State::Receiving(_, receive) if self.shell.input.is_empty() => {
                usize::try_from(receive.remaining()).unwrap_or(usize::MAX)
            }
            State::Receiving(..) => 0,
            State::Auth { .. }
            | State::Verifying(_)
            | State::Idle(_)
            | State::Sending(..)
            | State::Listing(..)
            | State::Hashing(..)
            | State::Copying(..) => MAX_LINE.saturating_sub(self.shell.input.len()),
        }
    }

    /// When the session next needs [`Front::on_deadline`]: the end of a
    /// held login reply, or the timeout of what it is doing now.
    fn timeout(&self, services: &Services) -> Option<Instant> {
        let policy = &services.policy;
        match self.state {
            State::Auth { since, .. } => Some(since + policy.auth_timeout),
            State::Idle(_) => Some(self.shell.last_activity + policy.idle_timeout),
            // A client that does not read its last reply is a stalled
            // transfer too.
            State::Receiving(..) | State::Sending(..) | State::Listing(..) | State::Closing => {
                Some(self.shell.last_activity + policy.stall_timeout)
            }
            // Hashing is the server's own work.
            State::Hashing(..) | State::Copying(..) => None,
            State::Verifying(ref verifying) => Some(verifying.since + policy.auth_timeout),
        }
    }

    /// Called at or after [`Front::deadline`]: releases a held reply, or
    /// ends the session with `421 timeout` when its time is up.
    fn time_out(&mut self, services: &Services) {
        match self.state {
            State::Closing => {
                log::info!("{} closed: the client stopped reading", self.shell.peer);
                self.shell.out.discard();
            }
            State::Sending(..) | State::Listing(..) => {
                self.interrupt("timeout", services);
                self.shell.out.discard();
            }
            _ => {
                let what = match self.state {
                    State::Auth { .. } => "no login",
                    State::Idle(_) => "idle",
                    _ => "transfer stalled",
                };
                log::info!("{} timeout: {what}", self.shell.peer);
                self.interrupt("timeout", services);
                self.fail(Failure::Timeout, services);
            }
        }
    }

    /// True while the session has work that needs no socket (hashing a
    /// file, the next step of a listing once the last was sent): the
    /// caller should call [`Front::work`].
    fn has_work(&self) -> bool {
        match &self.state {
            State::Hashing(..) | State::Copying(..) => true,
            State::Listing(..) => self.shell.out.queued().is_empty(),
            State::Verifying(verifying) => verifying.check.is_running(),
            _ => false,
        }
    }

    fn password_check(&self) -> Option<&PasswordCheck> {
        match &self.state {
            State::Verifying(verifying) => Some(&verifying.check),
            _ => None,
        }
    }

    fn password_check_mut(&mut self) -> Option<&mut PasswordCheck> {
        match &mut self.state {
            State::Verifying(verifying) => Some(&mut verifying.check),
            _ => None,
        }
    }

    /// Runs one bounded step of that work (at most [`HASH_STEP`](super::HASH_STEP) bytes read
    /// and hashed, [`LIST_STEP_ENTRIES`](super::LIST_STEP_ENTRIES) entries of a listing, or one slice
    /// of a password check) and returns how much of the session's turn it
    /// used, in bytes (`usize::MAX`: all of it).
    fn work(&mut self, services: &Services) -> usize {
        if let State::Listing(..) = self.state {
            self.list_step(services);
            self.advance(services);
            // A step is this session's whole turn: its block is sent on the
            // next, so ten listings at once add ten steps to a turn.
            return usize::MAX;
        }
        if let State::Verifying(verifying) = &mut self.state {
            if !verifying.check.is_running() {
                return 0;
            }
            let (result, locked) = match verifying.check.step(services, self.shell.peer) {
                Checked::Undecided => return usize::MAX,
                Checked::Decided(result) => (result, false),
                Checked::LockedOut => (None, true),
            };
            self.transition(|session, state| match state {
                State::Verifying(verifying) => {
                    let Verifying {
                        failures,
                        since,
                        claimed,
                        ..
                    } = *verifying;
                    let auth = (failures, since);
                    session.login_decided(auth, &claimed, result, locked, services)
                }
                other => other,
            });
            self.advance(services);
            // One slice is this session's whole turn: with at most two
            // checks running, a turn of the loop spends about 2 ms on them.
            return usize::MAX;
        }
        if let State::Copying(..) = self.state {
            return self.copy_step(services);
        }
        let State::Hashing(_, job) = &mut self.state else {
            return 0;
        };
        let n = match job.step() {
            Ok(n) => {
                if job.hashing.is_done() {
                    self.transition(|session, state| match state {
                        State::Hashing(login, job) => session.hashed(login, *job, services),
                        other => other,
                    });
                }
                n
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
            Err(err) => {
                self.hashing_failed(err, services);
                0
            }
        };
        // Commands that waited behind the hashing run now.
        self.advance(services);
        n
    }

    /// The drain period is over: an unfinished upload is kept as a
    /// resumable partial and its client gets `421`; an unfinished download
    /// is cut off.
    fn end_drain(&mut self, services: &Services) {
        match self.state {
            // Its last reply is said (221, 421, the last failed login):
            // nothing may follow it.
            State::Closing => {}
            State::Sending(..) | State::Listing(..) => {
                self.interrupt("server shutting down", services);
                self.shell.out.discard();
            }
            _ => {
                self.interrupt("server shutting down", services);
                self.fail(Failure::ShuttingDown, services);
            }
        }
    }

    /// Ends whatever runs now and closes. What an upload received is kept
    /// for a later resume.
    fn interrupt(&mut self, reason: &str, services: &Services) {
        let peer = self.shell.peer;
        self.transition(|_, state| {
            match state {
                State::Receiving(login, receive) => {
                    let then = Interrupted::Resumable { hashed: true };
                    let who = login.who(peer);
                    receive.intake.interrupt(then, who, reason, services);
                }
                State::Sending(login, download) => {
                    download.cut(login.who(peer), reason, services);
                }
                State::Listing(login, job) => job.cut(peer, login.user(), reason),
                State::Hashing(login, job) => {
                    log::info!(
                        "{} {}: hashing stopped after {} of {} bytes: {reason}",
                        peer,
                        login.user(),
                        job.hashing.progress().0,
                        job.hashing.progress().1
                    );
                    if let Purpose::Resume(receive) = job.purpose {
                        // The hasher does not cover the bytes held yet.
                        let then = Interrupted::Resumable { hashed: false };
                        let who = login.who(peer);
                        receive.intake.interrupt(then, who, reason, services);
                    }
                }
                State::Copying(login, _) => {
                    // The copy was never placed: nothing changed.
                    log::info!("{} {}: COPY stopped: {reason}", peer, login.user());
                }
                State::Auth { .. } | State::Verifying(_) | State::Idle(_) | State::Closing => {}
            }
            State::Closing
        });
    }
}

impl Session {
    /// A new connection from `peer`; the greeting is queued.
    pub fn new(peer: SocketAddr, services: &Services) -> Session {
        let mut session = Session {
            state: State::Auth {
                failures: 0,
                since: Instant::now(),
            },
            shell: Shell::new(peer),
            discarding: false,
        };
        session.reply(Reply::Greeting, services);
        session
    }

    /// True while an upload or download is running.
    pub fn is_transferring(&self) -> bool {
        matches!(
            self.state,
            State::Receiving(..) | State::Sending(..) | State::Listing(..)
        )
    }

    /// Every transition that needs the data of the state it leaves goes
    /// through here: the state is taken whole, and what `next` returns
    /// replaces it.
    fn transition(&mut self, next: impl FnOnce(&mut Session, State) -> State) {
        let state = mem::replace(&mut self.state, State::Closing);
        self.state = next(self, state);
    }

    fn reply(&mut self, reply: Reply, services: &Services) {
        services.metrics.reply(Protocol::Line, reply.code());
        reply.write_to(self.shell.out.buf());
        self.access_reply(&reply, services);
    }

    /// The access log's line of a command, written with the reply that
    /// ends it: not `PUT`'s go-ahead nor a block of `LIST` (they count its
    /// bytes), but a download's `150` (the data follows) and the `226`
    /// that says how much an upload stored.
    fn access_reply(&mut self, reply: &Reply, services: &Services) {
        let verb = self.shell.access_verb();
        match (verb, reply) {
            (None, _) => return,
            (Some("PUT"), Reply::Data(_)) => return,
            (Some("LIST"), Reply::Data(n)) if *n > 0 => return self.shell.access_bytes(*n),
            (_, Reply::Data(n)) | (_, Reply::Stored { size: n, .. }) => self.shell.access_bytes(*n),
            _ => {}
        }
        self.shell
            .access_end(services, Protocol::Line, None, reply.code());
    }

    /// Answers a failure in the words of the one table.
    fn fail(&mut self, failure: impl Into<Failure>, services: &Services) {
        let failure = failure.into();
        self.shell.hang_up |= failure.ends_connection();
        self.reply(failure.reply(), services);
    }

    /// Runs one command, parsed from `line`.
    fn execute(
        &mut self,
        command: Result<Command<'_>, ParseError>,
        line: &[u8],
        services: &Services,
    ) {
        let verb = match &command {
            Ok(command) => command.verb().as_str(),
            Err(err) => err.verb().map_or("-", Verb::as_str),
        };
        // The file a command names, if it names one (never AUTH's words:
        // they hold a password).
        let names_a_file = |verb: Verb| {
            matches!(
                verb,
                Verb::View
                    | Verb::Get
                    | Verb::Put
                    | Verb::Del
                    | Verb::Hash
                    | Verb::Partial
                    | Verb::Stat
                    | Verb::Mkdir
                    | Verb::Rmdir
                    | Verb::Rmtree
                    | Verb::From
                    | Verb::Move
                    | Verb::Copy
                    | Verb::List
                    | Verb::Tree
            )
        };
        let path = match &command {
            Ok(command) if names_a_file(command.verb()) => name_argument(line, command.verb()),
            Err(err) => err
                .verb()
                .filter(|verb| names_a_file(*verb))
                .map_or(&[][..], |verb| name_argument(line, verb)),
            Ok(_) => &[][..],
        };
        // Who: the user logged in, or the one an AUTH claims to be.
        let user = match (&self.state, &command) {
            (State::Idle(login), _) => Some(login.user().as_bytes()),
            (_, Ok(Command::Auth { user, .. })) => Some(*user),
            _ => None,
        };
        self.shell.access_begin(services, user, verb, path);
        if let State::Idle(login) = &self.state
            && !services.user_exists(login.user())
        {
            log::info!(
                "{} {}: closed, the user was removed from the users file",
                self.shell.peer,
                login.user()
            );
            self.reply(Reply::AccountRemoved, services);
            self.state = State::Closing;
            return;
        }
        let logged_in = matches!(self.state, State::Idle(_));
        let command = match command {
            Ok(command) if command.verb().needs_login() && !logged_in => {
                return self.fail(Failure::NotLoggedIn, services);
            }
            Ok(command) => command,
            Err(err) => {
                if err == ParseError::LineTooLong {
                    self.discarding = true;
                }
                if let (ParseError::NameNotAllowed(verb), State::Idle(login)) = (err, &self.state) {
                    Event::NameRefused {
                        user: login.user(),
                        verb: verb.as_str(),
                        name: name_argument(line, verb),
                    }
                    .record(self.shell.peer, Protocol::Line);
                }
                if !logged_in && err.verb().is_some_and(Verb::needs_login) {
                    return self.fail(Failure::NotLoggedIn, services);
                }
                return self.fail(err, services);
            }
        };
        if let State::Idle(login) = &self.state {
            let from = login.pending.as_ref().and_then(|p| p.from.as_ref());
            let held = super::locks::holds_line_command(
                &mut services.locks.borrow_mut(),
                login.user(),
                &command,
                from.map(|from| from.as_str()),
                std::time::Instant::now(),
            );
            if held {
                return self.fail(super::DavRefused::Locked, services);
            }
        }
        match command {
            Command::Noop => self.reply(Reply::Ok, services),
            Command::Health => {
                let reply = match services.health.check(std::time::Instant::now()) {
                    None => Reply::Healthy,
                    Some(why) => Reply::Unhealthy(why),
                };
                self.reply(reply, services);
            }
            Command::Help => {
                self.reply(Reply::Data(line::HELP_TEXT.len() as u64), services);
                self.shell
                    .out
                    .buf()
                    .extend_from_slice(line::HELP_TEXT.as_bytes());
            }
            Command::Rest { offset } => {
                if let State::Idle(login) = &mut self.state {
                    login.pending().rest = Some(offset);
                }
                self.reply(Reply::RestartAt(offset), services);
            }
            Command::Expect { sha256 } => {
                if let State::Idle(login) = &mut self.state {
                    login.pending().expect = Some(sha256);
                }
                self.reply(Reply::Expecting(sha256), services);
            }
            Command::Quit => {
                self.reply(Reply::Bye, services);
                self.state = State::Closing;
            }
            Command::Auth { user, password } => self.auth(user, password, services),
            Command::List { path } => self.logged_in(services, |s, login| {
                s.start_list(login, path, false, services)
            }),
            Command::Tree { path } => self.logged_in(services, |s, login| {
                s.start_list(login, path, true, services)
            }),
            Command::Stat { name } => {
                self.logged_in(services, |s, login| s.stat(login, name, services))
            }
            Command::Mkdir { name } => self.logged_in(services, |s, login| {
                s.change_tree(login, name, TreeChange::Mkdir, services)
            }),
            Command::Rmdir { name } => self.logged_in(services, |s, login| {
                s.change_tree(login, name, TreeChange::Rmdir, services)
            }),
            Command::Rmtree { name } => self.logged_in(services, |s, login| {
                s.change_tree(login, name, TreeChange::Rmtree, services)
            }),
            Command::From { name } => {
                self.logged_in(services, |s, login| s.from(login, name, services))
            }
            Command::Replace => self.logged_in(services, |s, login| s.replace(login, services)),
            Command::Move { name } => {
                self.logged_in(services, |s, login| s.move_to(login, name, services))
            }
            Command::Copy { name } => {
                self.logged_in(services, |s, login| s.copy_to(login, name, services))
            }
            Command::View { name } => self.logged_in(services, |s, login| {
                s.start_download(login, Verb::View, name, services)
            }),
            Command::Get { name } => self.logged_in(services, |s, login| {
                s.start_download(login, Verb::Get, name, services)
            }),
            Command::Put { size, name } => self.logged_in(services, |s, login| {
                s.start_upload(login, size, name, services)
            }),
            Command::Del { name } => {
                self.logged_in(services, |s, login| s.delete(login, name, services))
            }
            Command::Hash { name } => {
                self.logged_in(services, |s, login| s.hash(login, name, services))
            }
            Command::Partial { name } => {
                self.logged_in(services, |s, login| s.partial(login, name, services))
            }
        }
    }

    /// Runs a file command from `Idle` (a command that needs the login
    /// is refused before it gets here); its function returns the next
    /// state.
    fn logged_in(
        &mut self,
        services: &Services,
        command: impl FnOnce(&mut Session, Login) -> State,
    ) {
        self.transition(|session, state| match state {
            State::Idle(login) => command(session, login),
            other => other,
        });
        // An empty download may already be complete.
        if let State::Sending(..) = self.state {
            self.refill(services);
        }
    }

    fn auth(&mut self, user: &[u8], password: &[u8], services: &Services) {
        let State::Auth { failures, since } = self.state else {
            return self.reply(Reply::AlreadyLoggedIn, services);
        };
        let peer = self.shell.peer;
        if self
            .shell
            .channel
            .refused_by(&peer, services.policy.require_tls)
        {
            return self.fail(Failure::TlsRequired, services);
        }
        if password.is_empty() && self.shell.channel.certified.is_none() {
            // No client certificate to log in by: the password is missing,
            // as it always was without TLS (not a failed login).
            let usage = Failure::Parse(ParseError::BadArguments(Verb::Auth));
            return self.fail(usage, services);
        }
        let start = if password.is_empty() {
            super::start_certificate_login(services, &self.shell.channel, peer, user)
        } else {
            super::start_login(services, peer, user, password, Protocol::Line)
        };
        match start {
            LoginStart::Done(result) => {
                self.state = self.login_decided((failures, since), user, result, false, services);
            }
            LoginStart::Locked => {
                self.state = self.login_decided((failures, since), user, None, true, services);
            }
            LoginStart::Busy => {
                self.fail(Failure::LoginsBusy, services);
                self.state = State::Closing;
            }
            LoginStart::Pending(check) => {
                self.state = State::Verifying(Box::new(Verifying {
                    failures,
                    since,
                    claimed: user.to_vec(),
                    check,
                }));
            }
        }
    }

    /// Answers an `AUTH` once its outcome is known, from the `Auth` state
    /// of `failures` so far since `since`; returns the next state.
    fn login_decided(
        &mut self,
        (mut failures, since): (u8, Instant),
        claimed: &[u8],
        result: Option<String>,
        locked: bool,
        services: &Services,
    ) -> State {
        let result = super::finish_login(
            services,
            self.shell.peer,
            claimed,
            result,
            locked,
            Protocol::Line,
        );
        let Some(name) = result else {
            // The audit log has the failure; this says what it means for
            // the connection.
            if super::failed_on_connection(&mut failures, &mut self.shell, services) {
                self.reply(Reply::TooManyFailures, services);
                return State::Closing;
            }
            self.reply(Reply::LoginIncorrect, services);
            return State::Auth { failures, since };
        };
        match services.storage.user_dir(&name) {
            Ok(dir) => {
                self.reply(Reply::LoggedIn, services);
                State::Idle(Login::new(dir))
            }
            Err(err) => {
                log::error!(
                    "{} cannot prepare the directory of {name}: {err}",
                    self.shell.peer
                );
                self.fail(err, services);
                State::Auth { failures, since }
            }
        }
    }

    /// Starts a `LIST` (or a `TREE`, `recursive`): nothing is sent until
    /// its first step has run.
    fn start_list(
        &mut self,
        login: Login,
        path: Option<FilePath<'_>>,
        recursive: bool,
        services: &Services,
    ) -> State {
        match services.storage.listing_of(&login.dir, path, recursive) {
            Ok(listing) => State::Listing(login, Box::new(Streaming::new(listing))),
            Err(err) => {
                log::error!("{} {}: LIST failed: {err}", self.shell.peer, login.user());
                self.fail(err, services);
                State::Idle(login)
            }
        }
    }

    /// One step of a `LIST`: the next block (`150 <n>` and its lines), and
    /// `150 0` once the directory is read to its end. A directory that
    /// cannot be read further ends the listing with an error reply instead.
    fn list_step(&mut self, services: &Services) {
        let State::Listing(_, job) = &mut self.state else {
            return;
        };
        let out = self.shell.out.buf();
        let start = out.len();
        let result = job.step(out, |entry, _, out| write_listing_line(entry, out));
        let added = out.len() - start;
        if added > 0 {
            let mut head = Vec::new();
            Reply::Data(added as u64).write_to(&mut head);
            out.splice(start..start, head);
            services.metrics.reply(Protocol::Line, 150);
        }
        let ended = match result {
            Ok(false) => return,
            Ok(true) => Ok(()),
            Err(err) => Err(err),
        };
        self.transition(|session, state| match state {
            State::Listing(login, job) => session.list_ended(login, &job, ended, services),
            other => other,
        });
    }

    /// The listing ended (`Ok`), or cannot be read further: the last
    /// reply, and the next state.
    fn list_ended(
        &mut self,
        login: Login,
        job: &Streaming,
        ended: Result<(), StorageError>,
        services: &Services,
    ) -> State {
        job.ended(self.shell.peer, login.user(), &ended);
        match ended {
            Ok(()) => self.reply(Reply::Data(0), services),
            Err(err) => self.fail(err, services),
        }
        State::Idle(login)
    }

    fn start_download(
        &mut self,
        mut login: Login,
        verb: Verb,
        name: FilePath<'_>,
        services: &Services,
    ) -> State {
        let offset = if verb == Verb::Get {
            login.take_rest().unwrap_or(0)
        } else {
            0
        };
        let opened = services
            .storage
            .open_download(&login.dir, name)
            .map(|(file, meta)| {
                let size = meta.len;
                if offset > size {
                    return Err(Failure::OffsetPastEnd { offset, size });
                }
                Ok((file, size - offset))
            });
        match opened {
            Ok(Ok((file, size))) => {
                let (kind, total) = if verb == Verb::View {
                    (TransferKind::View, size.min(PREVIEW_LEN))
                } else {
                    (TransferKind::Download, size)
                };
                self.reply(Reply::Data(total), services);
                let download = Download::start(kind, name, file, offset, total, services);
                State::Sending(login, Box::new(download))
            }
            Ok(Err(past_end)) => {
                self.fail(past_end, services);
                State::Idle(login)
            }
            Err(err) => {
                log::info!(
                    "{} {}: {} {name:?}: {err}",
                    self.shell.peer,
                    login.user(),
                    verb.as_str()
                );
                self.fail(err, services);
                State::Idle(login)
            }
        }
    }

    fn start_upload(
        &mut self,
        mut login: Login,
        size: u64,
        name: FilePath<'_>,
        services: &Services,
    ) -> State {
        let rest = login.take_rest();
        let expect = login.take_expect();
        let limits = services.put_limits();
        let started = services
            .storage
            .begin_put(&login.dir, name, Some(size), rest, limits);
        let PutStarted { upload, hasher, .. } = match started {
            Ok(started) => started,
            Err(refusal) => {
                log::info!(
                    "{} {}: PUT {name:?}: {refusal:?}",
                    self.shell.peer,
                    login.user()
                );
                self.fail(refusal, services);
                return State::Idle(login);
            }
        };
        let offset = upload.len();
        if offset > 0 {
            log::info!(
                "{} {}: PUT {name:?} continues at byte {offset}",
                self.shell.peer,
                login.user()
            );
        }
        let intake = Intake::start(
            name,
            Some(size),
            upload,
            hasher.clone().unwrap_or_default(),
            services,
        );
        let receive = Receive {
            intake,
            size,
            expect,
        };
        match hasher {
            Some(_) => self.accept_upload(login, receive, services),
            // The bytes held must be hashed before more can follow them.
            None => {
                let purpose = Purpose::Resume(Box::new(receive));
                State::Hashing(login, Box::new(Digesting::new(offset, purpose)))
            }
        }
    }

    /// Asks for the payload (`150`), or finishes at once when there is none
    /// left to send.
    fn accept_upload(&mut self, login: Login, receive: Receive, services: &Services) -> State {
        // Hashing held bytes does not count against the client's time.
        self.shell.last_activity = Instant::now();
        self.reply(Reply::Data(receive.remaining()), services);
        if receive.remaining() == 0 {
            self.finish_upload(login, receive, services)
        } else {
            State::Receiving(login, Box::new(receive))
        }
    }

    fn finish_upload(&mut self, login: Login, receive: Receive, services: &Services) -> State {
        let Receive {
            intake,
            size,
            expect,
        } = receive;
        match intake.finish(expect, login.who(self.shell.peer), services) {
            Finished::Stored(sha256) => self.reply(Reply::Stored { size, sha256 }, services),
            Finished::Mismatch { expected, received } => {
                self.reply(Reply::ChecksumMismatch { expected, received }, services)
            }
            Finished::Failed(err) => self.fail(err, services),
        }
        State::Idle(login)
    }

    fn delete(&mut self, login: Login, name: FilePath<'_>, services: &Services) -> State {
        let started = Instant::now();
        match services.storage.delete(&login.dir, name) {
            Ok(size) => {
                transfer::deleted(login.who(self.shell.peer), name, size, started);
                self.reply(Reply::Deleted, services);
            }
            Err(err) => {
                log::info!("{} {}: DEL {name:?}: {err}", self.shell.peer, login.user());
                self.fail(err, services);
            }
        }
        State::Idle(login)
    }
}

impl Session {
    fn partial(&mut self, login: Login, name: FilePath<'_>, services: &Services) -> State {
        match services.storage.partial_len(&login.dir, name) {
            Ok(held) => self.reply(Reply::PartialHeld(held), services),
            Err(err) => {
                log::info!(
                    "{} {}: PARTIAL {name:?}: {err}",
                    self.shell.peer,
                    login.user()
                );
                self.fail(err, services);
            }
        }
        State::Idle(login)
    }
}

/// What a refused command gave as its file name, for the audit line: the
/// line after the verb (and after the size, for `PUT`).
fn name_argument(line: &[u8], verb: Verb) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut rest = line.strip_suffix(b"\r").unwrap_or(line);
    let words = if verb == Verb::Put { 2 } else { 1 };
    for _ in 0..words {
        rest = match rest.iter().position(|&b| b == b' ') {
            Some(space) => &rest[space + 1..],
            None => &[],
        };
    }
    rest
}

#[cfg(test)]
mod tests {
    //! Whole sessions driven from byte slices, no socket: the sans-IO
    //! property the fuzz targets rely on.

    use super::*;
    use crate::session::HASH_STEP;
    use crate::session::testing::{Harness, peer};

    fn harness() -> Harness {
        Harness::new(1 << 20)
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn whole_session_from_bytes() {
        let h = harness();
        let mut session = Session::new(peer(), h.services());
        let greeting = format!(
            "220 ferry {} ready; HELP lists the commands\r\n",
            env!("CARGO_PKG_VERSION")
        );
        let out = h.talk(&mut session, b"LIST\nAUTH alice pw\nPUT 5 a b\nhello");
        assert_eq!(
            text(&out),
            format!(
                "{greeting}530 not logged in\r\n230 logged in\r\n150 5\r\n\
                 226 stored 5 sha256={}\r\n",
                Digest::of(b"hello")
            )
        );
        let dir = h.services.storage.user_dir("alice").unwrap();
        let mtime = h.services.storage.list(&dir).unwrap()[0].mtime;
        let listing = format!("5 {mtime} a b\n");
        let out = h.talk(&mut session, b"VIEW a b\nLIST\nDEL a b\nGET a b\nQUIT\n");
        assert_eq!(
            text(&out),
            format!(
                "150 5\r\nhello150 {}\r\n{listing}150 0\r\n250 deleted\r\n550 no such file\r\n221 bye\r\n",
                listing.len()
            )
        );
        assert!(session.is_done());
    }

    #[test]
    fn too_long_line_is_answered_once_and_skipped() {
        let h = harness();
        let mut session = Session::new(peer(), h.services());
        let mut input = vec![b'x'; 3 * MAX_LINE];
        input.extend_from_slice(b"\nNOOP\n");
        let out = text(&h.talk(&mut session, &input));
        assert!(
            out.ends_with("\r\n500 line too long\r\n200 ok\r\n"),
            "{out}"
        );
        assert!(session.shell.input.capacity() <= MAX_LINE);
    }

    #[test]
    fn a_client_that_never_reads_cannot_grow_the_buffers() {
        let h = harness();
        let services = h.services();
        let mut session = Session::new(peer(), h.services());
        // Keep sending NOOPs without taking any output.
        for _ in 0..10_000 {
            let n = session.read_limit().min(5);
            if n == 0 {
                break;
            }
            session.receive(&b"NOOP\n"[..n], services);
        }
        assert_eq!(session.read_limit(), 0, "must stop taking input");
        assert!(session.output().len() <= REPLY_BACKLOG + 64);
        assert!(session.shell.input.len() <= MAX_LINE);
    }

    #[test]
    fn upload_over_the_limit_is_refused_before_any_byte() {
        let h = harness();
        let mut session = Session::new(peer(), h.services());
        let out = text(&h.talk(&mut session, b"AUTH alice pw\nPUT 2000000 big\nNOOP\n"));
        assert!(
            out.ends_with("552 file too large (maximum 1048576 bytes)\r\n200 ok\r\n"),
            "{out}"
        );
    }

    #[test]
    fn shutdown_lets_an_upload_finish_then_closes() {
        let h = harness();
        let services = h.services();
        let mut session = Session::new(peer(), h.services());
        h.talk(&mut session, b"AUTH alice pw\nPUT 4 f\nab");
        session.begin_shutdown(services);
        assert!(session.is_transferring());
        let out = text(&h.talk(&mut session, b"cdNOOP\n"));
        assert_eq!(
            out,
            format!(
                "226 stored 4 sha256={}\r\n421 server shutting down\r\n",
                Digest::of(b"abcd")
            )
        );
        assert!(session.is_done());
    }

    #[test]
    fn end_of_drain_discards_the_upload() {
        let h = harness();
        let mut session = Session::new(peer(), h.services());
        h.talk(&mut session, b"AUTH alice pw\nPUT 4 f\nab");
        session.begin_shutdown(h.services());
        session.end_drain(h.services());
        assert_eq!(text(session.output()), "421 server shutting down\r\n");
        let dir = h.services.storage.user_dir("alice").unwrap();
        assert!(h.services.storage.list(&dir).unwrap().is_empty());
    }

    #[test]
    fn eof_still_answers_complete_lines() {
        let h = harness();
        let services = h.services();
        let mut session = Session::new(peer(), h.services());
        let out = text(&h.talk(&mut session, b"NOOP\nNOO"));
        assert!(out.ends_with("200 ok\r\n"));
        session.receive_eof(services);
        assert!(session.is_done(), "a partial last line is ignored");
    }

    fn login(h: &Harness) -> Session {
        let mut session = Session::new(peer(), h.services());
        let out = text(&h.talk(&mut session, b"AUTH alice pw\n"));
        assert!(out.ends_with("230 logged in\r\n"), "{out}");
        session
    }

    #[test]
    fn hash_comes_from_the_upload_and_from_reading_a_planted_file() {
        let h = harness();
        let mut session = login(&h);
        let digest = Digest::of(b"hello");
        let out = text(&h.talk(&mut session, b"PUT 5 a\nhello"));
        assert_eq!(out, format!("150 5\r\n226 stored 5 sha256={digest}\r\n"));
        let out = text(&h.talk(&mut session, b"HASH a\n"));
        assert_eq!(out, format!("213 sha256={digest}\r\n"));
        assert!(!session.has_work(), "answered from the record");

        // A file put there by other means is read a step at a time.
        let dir = h.services.storage.user_dir("alice").unwrap();
        let big: Vec<u8> = (0..3 * HASH_STEP + 5).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir_path(&h, "planted"), &big).unwrap();
        let services = h.services();
        session.receive(b"HASH planted\nNOOP\n", services);
        assert!(session.has_work());
        assert_eq!(session.output(), b"", "nothing before the digest");
        let mut steps = 0;
        while session.has_work() {
            assert!(session.work(services) <= HASH_STEP);
            steps += 1;
        }
        assert_eq!(steps, 4);
        let want = format!("213 sha256={}\r\n200 ok\r\n", Digest::of(&big));
        assert_eq!(text(session.output()), want);
        drop(dir);
    }

    fn dir_path(h: &Harness, name: &str) -> std::path::PathBuf {
        h.services.storage.root().join("alice").join(name)
    }

    #[test]
    fn rest_then_get_sends_the_tail() {
        let h = harness();
        let mut session = login(&h);
        h.talk(&mut session, b"PUT 10 f\n0123456789");
        let out = text(&h.talk(&mut session, b"REST 7\nGET f\nGET f\n"));
        assert_eq!(
            out,
            "350 restarting at 7\r\n150 3\r\n789150 10\r\n0123456789"
        );
        let out = text(&h.talk(&mut session, b"REST 10\nGET f\nREST 11\nGET f\n"));
        assert_eq!(
            out,
            "350 restarting at 10\r\n150 0\r\n350 restarting at 11\r\n\
             501 offset 11 is past the end of the file (10 bytes)\r\n"
        );
    }

    #[test]
    fn an_interrupted_upload_is_continued_with_its_saved_hash_state() {
        let h = harness();
        let services = h.services();
        let mut session = login(&h);
        h.talk(&mut session, b"PUT 10 f\n0123");
        session.connection_lost("test", services);
        assert!(session.is_done());

        let mut session = login(&h);
        let out = text(&h.talk(&mut session, b"PARTIAL f\nLIST\n"));
        assert_eq!(out, "213 4\r\n150 0\r\n", "kept, but not listed");
        let services = h.services();
        session.receive(b"REST 4\nPUT 10 f\n", services);
        assert!(
            !session.has_work(),
            "the saved state makes re-reading unnecessary"
        );
        let out = text(&h.talk(&mut session, b"456789"));
        let want = format!(
            "350 restarting at 4\r\n150 6\r\n226 stored 10 sha256={}\r\n",
            Digest::of(b"0123456789")
        );
        assert_eq!(out, want);
        let out = text(&h.talk(&mut session, b"PARTIAL f\nGET f\n"));
        assert_eq!(out, "213 0\r\n150 10\r\n0123456789");
    }

    #[test]
    fn resuming_before_the_end_of_the_held_bytes_rehashes_them() {
        let h = harness();
        let mut session = login(&h);
        h.talk(&mut session, b"PUT 10 f\n0123xx");
        session.receive_eof(h.services());
        assert!(session.is_done());

        let mut session = login(&h);
        let out = text(&h.talk(&mut session, b"REST 7\nPUT 10 f\n"));
        assert_eq!(
            out,
            "350 restarting at 7\r\n501 offset 7 is past the 6 bytes held for this upload\r\n"
        );
        let out = text(&h.talk(&mut session, b"REST 4\nPUT 10 f\n456789"));
        let want = format!(
            "350 restarting at 4\r\n150 6\r\n226 stored 10 sha256={}\r\n",
            Digest::of(b"0123456789")
        );
        assert_eq!(out, want);
    }

    #[test]
    fn expect_mismatch_discards_and_keeps_the_old_file() {
        let h = harness();
        let mut session = login(&h);
        h.talk(&mut session, b"PUT 3 f\nold");
        let good = Digest::of(b"new");
        let bad = Digest::of(b"other");
        let input = format!("EXPECT sha256={bad}\nPUT 3 f\nnewGET f\n");
        let out = text(&h.talk(&mut session, input.as_bytes()));
        assert_eq!(
            out,
            format!(
                "200 expecting sha256={bad}\r\n150 3\r\n451 checksum mismatch: expected \
                 sha256={bad}, received sha256={good}; upload discarded\r\n150 3\r\nold"
            )
        );
        // EXPECT applied to that PUT only.
        let out = text(&h.talk(&mut session, b"PUT 3 f\nnew"));
        assert_eq!(out, format!("150 3\r\n226 stored 3 sha256={good}\r\n"));
        let out = text(&h.talk(&mut session, b"PARTIAL f\n"));
        assert_eq!(out, "213 0\r\n", "a mismatch is not kept for resuming");
    }

    #[test]
    fn shutdown_stops_hashing_and_keeps_the_partial() {
        let mut h = harness();
        h.services.max_file_size = 1 << 30;
        let services = h.services();
        let mut session = login(&h);
        let mut put = b"PUT 3000000 f\n".to_vec();
        put.extend_from_slice(&vec![7u8; 2 * HASH_STEP]);
        session.receive(&put, services);
        session.connection_lost("test", services);

        let mut session = login(&h);
        // Not the end of the held bytes: they are hashed again first.
        session.receive(b"REST 100\nPUT 3000000 f\n", services);
        assert!(session.has_work());
        session.begin_shutdown(services);
        assert!(!session.has_work());
        assert_eq!(
            text(session.output()),
            "350 restarting at 100\r\n421 server shutting down\r\n"
        );
        session.output_written(session.output().len(), services);
        assert!(session.is_done());
        let mut session = login(&h);
        assert_eq!(text(&h.talk(&mut session, b"PARTIAL f\n")), "213 100\r\n");
    }

    #[test]
    fn a_direct_download_falls_back_to_the_buffer_where_it_stopped() {
        use std::os::unix::fs::FileExt;
        let h = harness();
        let services = h.services();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut session = Session::new(peer(), services);
        session.send_files_directly(100_000);
        let input = [b"AUTH alice pw\nPUT 300000 f\n".as_slice(), &data].concat();
        h.talk(&mut session, &input);
        // Under the threshold: through the buffer, reply and bytes at once.
        let out = h.talk(&mut session, b"REST 250000\nGET f\n");
        assert_eq!(
            out[..out.len() - 50_000],
            *b"350 restarting at 250000\r\n150 50000\r\n"
        );
        assert_eq!(out[out.len() - 50_000..], data[250_000..]);
        // Over it: the reply, then the file is offered, not buffered.
        let out = h.talk(&mut session, b"REST 1000\nGET f\nNOOP\n");
        assert_eq!(text(&out), "350 restarting at 1000\r\n150 299000\r\n");
        let mut got = Vec::new();
        for _ in 0..3 {
            let file = session.file_output().expect("the file is offered");
            assert_eq!(
                (file.offset, file.len),
                (1000 + got.len() as u64, 299_000 - got.len() as u64)
            );
            let mut chunk = vec![0; 70_000];
            file.file.read_exact_at(&mut chunk, file.offset).unwrap();
            got.extend_from_slice(&chunk);
            session.file_output_written(70_000, services);
            assert!(session.output().is_empty(), "nothing before the last byte");
        }
        // sendfile refused: the rest comes through the buffer, then the NOOP.
        session.stop_sending_files_directly(services);
        assert!(session.file_output().is_none());
        let out = h.talk(&mut session, b"");
        got.extend_from_slice(&out[..out.len() - 8]);
        assert_eq!(&out[out.len() - 8..], b"200 ok\r\n");
        assert!(got == data[1000..], "the download's bytes differ");
    }

    /// `--require-tls`: a plaintext login from another host is refused
    /// with a reason (and is not a failed login); over TLS, and from
    /// loopback, the same login works.
    #[test]
    fn require_tls_refuses_plaintext_logins_from_other_hosts() {
        let mut h = harness();
        h.services.policy.require_tls = true;
        let remote: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let mut session = Session::new(remote, h.services());
        let out = text(&h.talk(&mut session, b"AUTH alice pw\nAUTH alice\nLIST\n"));
        assert!(
            out.ends_with(
                "530 TLS required: this server logs in from other hosts over TLS only\r\n\
                 530 TLS required: this server logs in from other hosts over TLS only\r\n\
                 530 not logged in\r\n"
            ),
            "{out}"
        );
        let mut secure = Session::new(remote, h.services());
        secure.shell.channel = crate::session::Channel::secure();
        let out = text(&h.talk(&mut secure, b"AUTH alice pw\n"));
        assert!(out.ends_with("230 logged in\r\n"), "{out}");
        let mut local = Session::new(peer(), h.services());
        let out = text(&h.talk(&mut local, b"AUTH alice pw\n"));
        assert!(out.ends_with("230 logged in\r\n"), "{out}");
    }

    /// `AUTH USER` alone logs in the user a valid client certificate
    /// names, and nobody else.
    #[test]
    fn auth_without_a_password_takes_the_certificate_name() {
        let h = harness();
        let certified = |name: Result<&str, &str>| {
            let mut session = Session::new(peer(), h.services());
            session.shell.channel = crate::session::Channel {
                secure: true,
                certified: Some(Box::new(name.map(str::to_owned).map_err(str::to_owned))),
            };
            session
        };
        let out = text(&h.talk(&mut certified(Ok("alice")), b"AUTH alice\n"));
        assert!(out.ends_with("230 logged in\r\n"), "{out}");
        for (name, line) in [
            (Ok("alice"), &b"AUTH bob\n"[..]),
            (Ok("nobody"), b"AUTH nobody\n"),
            (Err("expired"), b"AUTH alice\n"),
        ] {
            let out = text(&h.talk(&mut certified(name), line));
            assert!(out.ends_with("530 login incorrect\r\n"), "{name:?}: {out}");
        }
        // Without a certificate the password is missing, as ever.
        let mut plain = Session::new(peer(), h.services());
        let out = text(&h.talk(&mut plain, b"AUTH alice\n"));
        assert!(
            out.ends_with("501 usage: AUTH <user> <password>\r\n"),
            "{out}"
        );
    }
}
