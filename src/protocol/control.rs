//! Every reply the control port sends, in its exact wire form (see
//! "The control port" in `protocol.md`). Which reply an error becomes is
//! the session's table to decide; the failures the control port shares
//! with the line protocol (timeout, shutdown, a line that cannot be read)
//! are written by [`super::reply::Reply`].

use std::net::IpAddr;

/// The counters `STATUS` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub uptime: u64,
    pub sessions_line: u64,
    pub sessions_http: u64,
    pub transfers: u64,
    pub received: u64,
    pub sent: u64,
}

/// A control reply line. [`ControlReply::write_to`] gives its exact wire
/// form.
#[derive(Debug)]
pub enum ControlReply<'a> {
    /// `220`: the greeting.
    Ready,
    /// `200 ok`: `NOOP`.
    Ok,
    /// `221 bye`: `QUIT`.
    Bye,
    /// `230 ok`: the token is right.
    Unlocked,
    /// `503`: `TOKEN` once the connection is unlocked.
    AlreadyUnlocked,
    /// `530`: a command that needs the token, before it.
    TokenRequired,
    /// `530`: a wrong token (or any, from a locked-out address).
    BadToken,
    /// `530`: the last wrong token allowed; the connection closes.
    BadTokenLast,
    /// `211-`: one locked-out address of `LOCKOUTS`.
    Lockout {
        ip: IpAddr,
        failures: u32,
        remaining_secs: u64,
    },
    /// `211`: how many addresses are locked out, after their lines.
    LockedOut(usize),
    /// `211`: `STATUS`.
    Status(Status),
    /// `200`: `RELOAD` read the users file.
    Reloaded(usize),
    /// `451`: `RELOAD` failed; the users stay as they were.
    ReloadFailed(&'a str),
    /// `221`: `SHUTDOWN`, exactly as SIGINT.
    ShuttingDown,
    /// `200`: `UNLOCK` lifted this many lockouts.
    UnlockedAddresses(usize),
    /// `550`: `UNLOCK` of an address that is not locked out.
    NotLockedOut,
    /// `501`: bad or missing arguments.
    BadArguments,
}

impl ControlReply<'_> {
    pub fn code(&self) -> u16 {
        match self {
            ControlReply::Ready => 220,
            ControlReply::Ok | ControlReply::Reloaded(_) | ControlReply::UnlockedAddresses(_) => {
                200
            }
            ControlReply::Bye | ControlReply::ShuttingDown => 221,
            ControlReply::Unlocked => 230,
            ControlReply::AlreadyUnlocked => 503,
            ControlReply::TokenRequired | ControlReply::BadToken | ControlReply::BadTokenLast => {
                530
            }
            ControlReply::Lockout { .. } | ControlReply::LockedOut(_) | ControlReply::Status(_) => {
                211
            }
            ControlReply::ReloadFailed(_) => 451,
            ControlReply::NotLockedOut => 550,
            ControlReply::BadArguments => 501,
        }
    }

    /// Appends the reply as one `NNN text\r\n` line (`NNN-text` for a
    /// line that more follow).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let code = self.code();
        // Writing into a Vec cannot fail.
        let _ = match self {
            ControlReply::Ready => write!(out, "{code} ferry control ready"),
            ControlReply::Ok | ControlReply::Unlocked => write!(out, "{code} ok"),
            ControlReply::Bye => write!(out, "{code} bye"),
            ControlReply::AlreadyUnlocked => write!(out, "{code} already unlocked"),
            ControlReply::TokenRequired => write!(out, "{code} token required"),
            ControlReply::BadToken => write!(out, "{code} bad token"),
            ControlReply::BadTokenLast => write!(out, "{code} bad token, too many failures"),
            ControlReply::Lockout {
                ip,
                failures,
                remaining_secs,
            } => write!(
                out,
                "{code}-{ip} failures={failures} remaining={remaining_secs}"
            ),
            ControlReply::LockedOut(n) => write!(out, "{code} {n} locked out"),
            ControlReply::Status(s) => write!(
                out,
                "{code} uptime={} sessions_line={} sessions_http={} transfers={} received={} sent={}",
                s.uptime, s.sessions_line, s.sessions_http, s.transfers, s.received, s.sent
            ),
            ControlReply::Reloaded(n) => write!(out, "{code} reloaded {n} users"),
            ControlReply::ReloadFailed(why) => {
                // One line whatever the message: control characters become
                // spaces.
                let why: String = why
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                write!(out, "{code} reload failed: {why}")
            }
            ControlReply::ShuttingDown => write!(out, "{code} shutting down"),
            ControlReply::UnlockedAddresses(n) => write!(out, "{code} unlocked {n}"),
            ControlReply::NotLockedOut => write!(out, "{code} not locked out"),
            ControlReply::BadArguments => write!(out, "{code} bad arguments"),
        };
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_error_stays_on_one_line() {
        let mut out = Vec::new();
        ControlReply::ReloadFailed("users:3\nbad\u{1b}").write_to(&mut out);
        assert_eq!(out, b"451 reload failed: users:3 bad \r\n");
    }
}
