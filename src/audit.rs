//! The audit log: one line per security event, in a stable format that
//! tools such as fail2ban can match.
//!
//! ```text
//! <time> [INFO] audit: <event> ip=<address> proto=<line|http> key=value ...
//! ```
//!
//! `<event>` is one of `login_ok`, `login_failed`, `login_refused` (the
//! address is locked out), `lockout`, `limit`, `name_refused`, and the
//! transfer events `upload`, `download`, `view`, `delete` (see
//! [`Transfer`]), with the same fields whichever front caused them. Values that come from a client (user names, file
//! names) are written as quoted strings with every control character,
//! quote and backslash escaped (`"a\nb"`, `"\u{1b}[31m"`), so no input can
//! end a line early or forge another. Passwords and tokens never appear.
//! The lines go to the same log as everything else, under the log target
//! `audit`.

use std::fmt;
use std::net::SocketAddr;

use crate::metrics::Protocol;

/// A client-supplied value, quoted and escaped for a log line.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug formatting of a str quotes it and escapes quotes,
        // backslashes and every control character.
        write!(f, "{:?}", self.0)
    }
}

/// Client bytes that may not be UTF-8 (a claimed user name), quoted.
pub fn lossy(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &bytes[..bytes.len().min(MAX)];
    format!("{:?}", String::from_utf8_lossy(cut))
}

/// The end of a transfer's line: `result=<result>`, the quoted reason when
/// there is one, and the seconds it took. Formatted only when the line is
/// written (nothing is allocated when the log level drops it).
pub fn outcome<'a>(result: &'a str, reason: &'a str, started: std::time::Instant) -> Outcome<'a> {
    Outcome {
        result,
        reason,
        started,
    }
}

/// See [`outcome`].
pub struct Outcome<'a> {
    result: &'a str,
    reason: &'a str,
    started: std::time::Instant,
}

impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.started.elapsed().as_secs_f64();
        write!(f, "result={}", self.result)?;
        if !self.reason.is_empty() {
            write!(f, " reason={}", Quoted(self.reason))?;
        }
        write!(f, " secs={secs:.3}")
    }
}

/// Every audit event but the transfers (see [`Transfer`]), with its
/// fields: the same whichever front caused it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// `login_ok user=`.
    LoginOk { user: &'a str },
    /// `login_failed user=` (the name as claimed).
    LoginFailed { claimed: &'a [u8] },
    /// `login_refused user= reason=`: `locked out`, or `busy` when too many
    /// password checks wait.
    LoginRefused {
        claimed: &'a [u8],
        reason: &'static str,
    },
    /// `lockout failures= duration=`: the address is locked out now.
    Lockout {
        failures: u32,
        duration: std::time::Duration,
    },
    /// `control_ok result=ok`: the control port's token was right.
    ControlOk,
    /// `control_failed result=bad_token|locked_out`.
    ControlFailed { locked_out: bool },
    /// `limit limit=max-connections|max-per-ip|open-files`: a connection refused.
    Limit { limit: &'static str },
    /// `name_refused user= verb= name=`: a file name that breaks the
    /// rules (`verb` is the command or method, `name` what was sent).
    NameRefused {
        user: &'a str,
        verb: &'a str,
        name: &'a [u8],
    },
}

impl Event<'_> {
    /// Writes the line.
    pub fn record(&self, peer: SocketAddr, protocol: Protocol) {
        match *self {
            Event::LoginOk { user } => event(
                "login_ok",
                peer,
                protocol,
                format_args!("user={}", Quoted(user)),
            ),
            Event::LoginFailed { claimed } => event(
                "login_failed",
                peer,
                protocol,
                format_args!("user={}", lossy(claimed)),
            ),
            Event::LoginRefused { claimed, reason } => event(
                "login_refused",
                peer,
                protocol,
                format_args!("user={} reason={}", lossy(claimed), Quoted(reason)),
            ),
            Event::Lockout { failures, duration } => event(
                "lockout",
                peer,
                protocol,
                format_args!(
                    "failures={failures} duration={:.0}s",
                    duration.as_secs_f64()
                ),
            ),
            Event::ControlOk => event("control_ok", peer, protocol, format_args!("result=ok")),
            Event::ControlFailed { locked_out } => {
                let result = if locked_out {
                    "locked_out"
                } else {
                    "bad_token"
                };
                event(
                    "control_failed",
                    peer,
                    protocol,
                    format_args!("result={result}"),
                )
            }
            Event::Limit { limit } => event("limit", peer, protocol, format_args!("limit={limit}")),
            Event::NameRefused { user, verb, name } => event(
                "name_refused",
                peer,
                protocol,
                format_args!("user={} verb={verb} name={}", Quoted(user), lossy(name)),
            ),
        }
    }
}

/// Writes one audit line: `audit: <event> ip=<ip> proto=<protocol> <rest>`.
fn event(event: &str, peer: SocketAddr, protocol: Protocol, rest: fmt::Arguments<'_>) {
    log::info!(
        target: "audit",
        "audit: {event} ip={} proto={} {rest}",
        peer.ip(),
        protocol.as_str()
    );
}

/// Who caused an event: the connection and, once logged in, the user.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub user: &'a str,
}

/// A change to the tree of folders, written when it is done: the same kind
/// and fields whichever front made it (a line `MKDIR`, an HTTP `MKCOL` and
/// the web interface's new folder are all `mkdir`; a `RMTREE`, an HTTP
/// `DELETE` of a folder and the web interface's delete of one are all
/// `rmtree`). `name` is the path changed; a move or copy adds `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeChange {
    Mkdir,
    Rmdir,
    Rmtree,
    Move,
    Copy,
}

impl TreeChange {
    fn as_str(self) -> &'static str {
        match self {
            TreeChange::Mkdir => "mkdir",
            TreeChange::Rmdir => "rmdir",
            TreeChange::Rmtree => "rmtree",
            TreeChange::Move => "move",
            TreeChange::Copy => "copy",
        }
    }

    /// Writes the line: `<kind> ip= protocol= user= name= [to=]`.
    pub fn record(self, who: Who<'_>, name: &str, to: Option<&str>) {
        struct To<'a>(Option<&'a str>);
        impl fmt::Display for To<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Some(to) => write!(f, " to={}", Quoted(to)),
                    None => Ok(()),
                }
            }
        }
        event(
            self.as_str(),
            who.peer,
            who.protocol,
            format_args!("user={} name={}{}", Quoted(who.user), Quoted(name), To(to)),
        );
    }
}

/// The kinds of transfer line: the same kind and fields whichever front
/// caused it (an HTTP `DELETE` and a line `DEL` are both `delete`, a
/// preview is `view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Upload,
    Download,
    View,
    Delete,
}

impl TransferKind {
    fn as_str(self) -> &'static str {
        match self {
            TransferKind::Upload => "upload",
            TransferKind::Download => "download",
            TransferKind::View => "view",
            TransferKind::Delete => "delete",
        }
    }

    /// The name of the bytes that moved: `sent` or `received`.
    fn moved(self) -> Option<&'static str> {
        match self {
            TransferKind::Upload => Some("received"),
            TransferKind::Download | TransferKind::View => Some("sent"),
            TransferKind::Delete => None,
        }
    }
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Ok,
    /// An upload that stopped before its end (connection, timeout,
    /// shutdown, a body over a limit).
    Aborted,
    /// An upload whose file could not be written or put in place.
    Failed,
    /// An upload whose digest was not the one announced.
    Mismatch,
    /// A download that stopped before its end.
    Cut,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Ok => "ok",
            Ending::Aborted => "aborted",
            Ending::Failed => "failed",
            Ending::Mismatch => "mismatch",
            Ending::Cut => "cut",
        }
    }
}

/// One transfer's audit line:
/// `<kind> ip= proto= user= name= size= [sent=|received=] result= [reason=] secs=`.
/// `size` is what was announced (an upload's declared size, or what it
/// received when it declared none; a download's length; a deleted file's
/// size), `sent`/`received` what moved.
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    pub kind: TransferKind,
    pub name: &'a str,
    pub size: u64,
    pub moved: u64,
    pub started: std::time::Instant,
}

impl Transfer<'_> {
    /// Writes the line.
    pub fn record(&self, who: Who<'_>, ending: Ending, reason: &str) {
        struct Moved(Option<&'static str>, u64);
        impl fmt::Display for Moved {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Some(field) => write!(f, " {field}={}", self.1),
                    None => Ok(()),
                }
            }
        }
        event(
            self.kind.as_str(),
            who.peer,
            who.protocol,
            format_args!(
                "user={} name={} size={}{} {}",
                Quoted(who.user),
                Quoted(self.name),
                self.size,
                Moved(self.kind.moved(), self.moved),
                outcome(ending.as_str(), reason, self.started)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_values_cannot_break_the_line() {
        let forged = "x\n2026-01-01T00:00:00Z [INFO] audit: login_ok ip=1.2.3.4";
        let quoted = Quoted(forged).to_string();
        assert!(!quoted.contains('\n'), "{quoted}");
        assert!(quoted.starts_with('"') && quoted.ends_with('"'));
        let ansi = Quoted("\u{1b}[31mred\"\\").to_string();
        assert_eq!(ansi, r#""\u{1b}[31mred\"\\""#);
        assert_eq!(lossy(b"bob\xff\r"), "\"bob\u{fffd}\\r\"");
    }
}
