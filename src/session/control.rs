//! The control port: a tiny line protocol for the operator, on a loopback
//! listener of the same reactor (`--control`), off by default.
//!
//! ```text
//! S: 220 ferry control ready
//! C: TOKEN <token>          S: 230 ok             (530 bad token)
//! C: STATUS                 S: 211 uptime=12 sessions_line=3 sessions_http=1 transfers=1 received=1024 sent=2048
//! C: RELOAD                 S: 200 reloaded 4 users   (451 reload failed: <why>)
//! C: SHUTDOWN               S: 221 shutting down  (exactly as SIGINT)
//! C: LOCKOUTS               S: 211-127.0.0.2 failures=10 remaining=893
//!                           S: 211 1 locked out
//! C: UNLOCK <address>|ALL   S: 200 unlocked 1     (550 not locked out)
//! C: NOOP                   S: 200 ok
//! C: QUIT                   S: 221 bye
//! ```
//!
//! Every command but `TOKEN`, `NOOP` and `QUIT` needs the token first
//! (`530 token required`). The third wrong token closes the connection,
//! and each wrong one is answered after the login delay, as for users; a
//! wrong token counts toward the address's lockout like a failed login,
//! and a locked-out address gets `530 bad token` whatever it sends. A
//! connection without the token is closed after
//! [`TOKEN_TIMEOUT`], and when every control slot is taken a new
//! connection takes the place of the oldest one without the token, so
//! idle connections cannot keep the operator out.
//! Lines end with LF (CRLF works), are at most [`MAX_CONTROL_LINE`] bytes,
//! and the verb is case-insensitive.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::replies::Failure;
use super::{Front, Phase, Services, Shell};
use crate::audit::Event;
use crate::metrics::Protocol;
use crate::protocol::control::{ControlReply, Status};
use crate::protocol::line::ParseError;

/// Longest control line, terminator included.
pub const MAX_CONTROL_LINE: usize = 1024;
/// While more reply bytes than this wait, no further command runs.
const REPLY_BACKLOG: usize = 4096;
/// How long a control connection may take to give the token (or less,
/// with a shorter `--auth-timeout`): the operator's tools send it at
/// once, and a short wait keeps idle connections from holding the slots.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most locked-out addresses `LOCKOUTS` lists (the longest left first).
const MAX_LISTED_LOCKOUTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the token, since `since`.
    Locked {
        failures: u8,
        since: Instant,
    },
    Unlocked,
    Closing,
}

/// One control connection.
#[derive(Debug)]
pub struct Session {
    state: State,
    shell: Shell,
}

impl Session {
    pub fn new(peer: SocketAddr) -> Session {
        let mut session = Session {
            state: State::Locked {
                failures: 0,
                since: Instant::now(),
            },
            shell: Shell::new(peer),
        };
        session.reply(ControlReply::Ready);
        session
    }
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
            State::Locked { .. } | State::Unlocked => Phase::Ready,
        }
    }

    fn close(&mut self) {
        self.state = State::Closing;
    }

    fn backlog(&self) -> usize {
        REPLY_BACKLOG
    }

    fn shutting_down_words(&mut self, _services: &Services) {
        self.fail(Failure::ShuttingDown);
    }

    fn next_command(&mut self, services: &Services) -> bool {
        let Some(lf) = self.shell.input.iter().position(|&b| b == b'\n') else {
            if self.shell.input.len() >= MAX_CONTROL_LINE {
                self.fail(Failure::Parse(ParseError::LineTooLong));
                self.state = State::Closing;
            }
            return false;
        };
        let mut line: Vec<u8> = self.shell.input.drain(..=lf).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.execute(&line, services);
        true
    }

    fn read_limit(&self) -> usize {
        if self.shell.deaf() || self.state == State::Closing {
            return 0;
        }
        MAX_CONTROL_LINE.saturating_sub(self.shell.input.len())
    }

    fn interrupt(&mut self, _reason: &str, _services: &Services) {
        self.state = State::Closing;
    }

    fn end_drain(&mut self, _services: &Services) {
        self.state = State::Closing;
    }

    fn timeout(&self, services: &Services) -> Option<Instant> {
        let policy = &services.policy;
        Some(match self.state {
            State::Locked { since, .. } => since + policy.auth_timeout.min(TOKEN_TIMEOUT),
            State::Unlocked => self.shell.last_activity + policy.idle_timeout,
            State::Closing => self.shell.last_activity + policy.stall_timeout,
        })
    }

    fn time_out(&mut self, _services: &Services) {
        if self.state != State::Closing {
            self.fail(Failure::Timeout);
        } else {
            self.shell.out.discard();
        }
        self.state = State::Closing;
    }

    /// When a connection still without the token connected.
    fn waiting_since(&self) -> Option<Instant> {
        match self.state {
            State::Locked { since, .. } => Some(since),
            _ => None,
        }
    }

    /// Closes at once, without a word: its slot goes to a new connection.
    fn give_way(&mut self) {
        log::info!(
            "{} control connection without a token closed for a new one",
            self.shell.peer
        );
        self.state = State::Closing;
        self.shell.out.discard();
    }
}

impl Session {
    fn reply(&mut self, reply: ControlReply<'_>) {
        reply.write_to(self.shell.out.buf());
    }

    /// Answers a failure in the words of the one table (as the line
    /// protocol does).
    fn fail(&mut self, failure: Failure) {
        failure.reply().write_to(self.shell.out.buf());
    }

    fn execute(&mut self, line: &[u8], services: &Services) {
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], Some(&line[space + 1..])),
            None => (line, None),
        };
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        match (verb.as_str(), arg) {
            ("NOOP", None) => self.reply(ControlReply::Ok),
            ("QUIT", None) => {
                self.reply(ControlReply::Bye);
                self.state = State::Closing;
            }
            ("TOKEN", Some(token)) => self.token(token, services),
            ("STATUS" | "RELOAD" | "SHUTDOWN" | "LOCKOUTS", None) | ("UNLOCK", Some(_))
                if matches!(self.state, State::Locked { .. }) =>
            {
                self.reply(ControlReply::TokenRequired)
            }
            ("LOCKOUTS", None) => {
                let locked = services.logins.borrow().locked(Instant::now());
                for (ip, failures, left) in locked.iter().take(MAX_LISTED_LOCKOUTS) {
                    self.reply(ControlReply::Lockout {
                        ip: *ip,
                        failures: *failures,
                        remaining_secs: left.as_secs(),
                    });
                }
                self.reply(ControlReply::LockedOut(locked.len()));
            }
            ("UNLOCK", Some(arg)) => self.unlock(arg, services),
            ("STATUS", None) => {
                let metrics = &services.metrics;
                self.reply(ControlReply::Status(Status {
                    uptime: services.started.elapsed().as_secs(),
                    sessions_line: metrics.open_sessions(Protocol::Line),
                    sessions_http: metrics.open_sessions(Protocol::Http),
                    transfers: metrics.transfers_running(),
                    received: metrics.received_total(),
                    sent: metrics.sent_total(),
                }));
            }
            ("RELOAD", None) => {
                // The settings follow, as after SIGHUP: the reactor runs
                // the embedder's reload at the end of this turn.
                services.reload_requested.set(true);
                match services.reload_users() {
                    Ok(count) => self.reply(ControlReply::Reloaded(count)),
                    Err(why) => self.reply(ControlReply::ReloadFailed(&why)),
                }
            }
            ("SHUTDOWN", None) => {
                log::info!("{} SHUTDOWN on the control port", self.shell.peer);
                self.reply(ControlReply::ShuttingDown);
                services.shutdown_requested.set(true);
                self.state = State::Closing;
            }
            ("", None) => self.fail(Failure::Parse(ParseError::EmptyLine)),
            ("NOOP" | "QUIT" | "STATUS" | "RELOAD" | "SHUTDOWN" | "LOCKOUTS", Some(_))
            | ("TOKEN" | "UNLOCK", None) => self.reply(ControlReply::BadArguments),
            _ => self.fail(Failure::Parse(ParseError::UnknownCommand)),
        }
    }

    fn token(&mut self, token: &[u8], services: &Services) {
        let State::Locked { failures, since } = self.state else {
            return self.reply(ControlReply::AlreadyUnlocked);
        };
        let expected = services.control_token.as_deref().unwrap_or_default();
        let locked = services.is_locked_out(self.shell.peer.ip());
        let matches =
            !locked && !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(token));
        if matches {
            Event::ControlOk.record(self.shell.peer, Protocol::Control);
            self.state = State::Unlocked;
            return self.reply(ControlReply::Unlocked);
        }
        let failed = Event::ControlFailed { locked_out: locked };
        failed.record(self.shell.peer, Protocol::Control);
        if !locked {
            super::count_failure(services, self.shell.peer, Protocol::Control);
        }
        let mut failures = failures;
        if super::failed_on_connection(&mut failures, &mut self.shell, services) {
            self.reply(ControlReply::BadTokenLast);
            self.state = State::Closing;
        } else {
            self.reply(ControlReply::BadToken);
            self.state = State::Locked { failures, since };
        }
    }
}

impl Session {
    /// `UNLOCK <address>` or `UNLOCK ALL`: forgets failed logins, lifting
    /// lockouts.
    fn unlock(&mut self, arg: &[u8], services: &Services) {
        let arg = String::from_utf8_lossy(arg);
        let mut logins = services.logins.borrow_mut();
        let now = Instant::now();
        let reply = if arg.eq_ignore_ascii_case("ALL") {
            ControlReply::UnlockedAddresses(logins.clear_all(now))
        } else {
            match arg.parse::<IpAddr>() {
                Err(_) => ControlReply::BadArguments,
                Ok(ip) => {
                    let was_locked = logins.is_locked(ip, now);
                    logins.clear(ip);
                    if was_locked {
                        ControlReply::UnlockedAddresses(1)
                    } else {
                        ControlReply::NotLockedOut
                    }
                }
            }
        };
        drop(logins);
        if reply.code() == 200 {
            log::info!("{} UNLOCK {arg} on the control port", self.shell.peer);
        }
        self.reply(reply);
    }
}
