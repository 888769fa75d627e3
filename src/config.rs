//! Server settings for embedders and the `ferryd` command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The default port of the line protocol.
pub const DEFAULT_PORT: u16 = 9999;
/// Largest upload accepted unless configured: 16 GiB, large enough for disk
/// images and archives, small enough that one client cannot fill a disk by
/// accident with one file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 * 1024 * 1024 * 1024;
/// How long running transfers may go on after a shutdown request.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`crate::Server`] runs. Its `Debug` leaves out the control and
/// metrics tokens, so a config can be logged.
#[derive(Clone)]
pub struct Config {
    /// Address of the line-protocol listener; port 0 picks a free port
    /// (see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// Address of the HTTP listener; `None` means no HTTP front.
    pub http_listen: Option<SocketAddr>,
    /// Address of the control port (loopback only); `None` means none.
    pub control_listen: Option<SocketAddr>,
    /// The token the control port asks for; required with
    /// `control_listen`.
    pub control_token: Option<String>,
    /// Address of a listener that serves only `/metrics` and `/healthz`,
    /// without authentication (so it belongs on a loopback or otherwise
    /// private address); `None` means none.
    pub metrics_listen: Option<SocketAddr>,
    /// The bearer token that `/metrics` on the HTTP listener asks for;
    /// `None`: `/metrics` is not served there (404), only on
    /// `metrics_listen`.
    pub metrics_token: Option<String>,
    /// Storage root: one directory per user below it.
    pub storage: PathBuf,
    /// Largest upload in bytes; a larger `PUT` is answered `552`.
    pub max_file_size: u64,
    /// How long transfers may finish after a shutdown request.
    pub drain_timeout: Duration,
    /// Sync each upload and its directory before acknowledging it.
    pub fsync: bool,
    /// How long the bytes of an interrupted upload are kept for resuming,
    /// counted from the last byte received.
    pub partial_ttl: Duration,
    /// Timeouts, connection limits and login throttling.
    pub policy: Policy,
    /// The users file that SIGHUP (with [`crate::Server::handle_signals`])
    /// and the control port's `RELOAD` read again; `None` disables reloads.
    pub users_file: Option<PathBuf>,
    /// Work with systemd (see [`crate::systemd`]): use the listening
    /// sockets it passed (socket activation: `LISTEN_PID`, `LISTEN_FDS`,
    /// `LISTEN_FDNAMES`) instead of binding, each matched to its listener
    /// by name (`line`, `http`, `control`, `metrics`, `tls`,
    /// `https`) or by address; and tell it when
    /// the server is ready, reloading and stopping (`$NOTIFY_SOCKET`).
    /// Without those variables this changes nothing.
    pub systemd: bool,
    /// Where the access log goes (see [`crate::access`]): a file, opened
    /// for appending and reopened at every reload (after a rotation), or
    /// `-` for standard error; `None`: no access log.
    pub access_log: Option<PathBuf>,
    /// The access log's lines: text or JSON.
    pub access_log_format: crate::access::Format,
    /// Address of the line protocol inside TLS from the first byte
    /// (`--tls-listen`); needs `tls`.
    pub tls_listen: Option<SocketAddr>,
    /// Address of the HTTP front inside TLS (`--https-listen`); needs
    /// `tls`.
    pub https_listen: Option<SocketAddr>,
    /// The certificate, key and client CAs of the TLS listeners.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("http_listen", &self.http_listen)
            .field("control_listen", &self.control_listen)
            .field(
                "control_token",
                &self.control_token.as_ref().map(|_| "<redacted>"),
            )
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("storage", &self.storage)
            .field("max_file_size", &self.max_file_size)
            .field("drain_timeout", &self.drain_timeout)
            .field("fsync", &self.fsync)
            .field("partial_ttl", &self.partial_ttl)
            .field("policy", &self.policy)
            .field("users_file", &self.users_file)
            .field("systemd", &self.systemd)
            .field("access_log", &self.access_log)
            .field("access_log_format", &self.access_log_format)
            .field("tls_listen", &self.tls_listen)
            .field("https_listen", &self.https_listen)
            .field("tls", &self.tls)
            .finish()
    }
}

/// How the server defends itself against slow, greedy and hostile clients.
/// Every field has a `ferryd` flag of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// A connection must log in within this (`--auth-timeout`).
    pub auth_timeout: Duration,
    /// A logged-in session with nothing running is closed after this much
    /// silence (`--idle-timeout`); for HTTP, an idle keep-alive connection.
    pub idle_timeout: Duration,
    /// A transfer with no progress for this long is ended
    /// (`--stall-timeout`).
    pub stall_timeout: Duration,
    /// An HTTP request head must arrive within this from its first byte
    /// (`--head-timeout`).
    pub head_timeout: Duration,
    /// Connections served at once, over both fronts (`--max-connections`).
    pub max_connections: usize,
    /// Connections from one IP address at once (`--max-per-ip`).
    pub max_per_ip: usize,
    /// How long the reply to a failed login is held back (`--login-delay`).
    pub login_delay: Duration,
    /// Failed logins from one IP address within `lockout_window` that lock
    /// it out (`--lockout-failures`).
    pub lockout_failures: u32,
    /// `--lockout-window`.
    pub lockout_window: Duration,
    /// How long a locked-out address is refused (`--lockout-duration`).
    pub lockout_duration: Duration,
    /// Addresses whose failures are never counted, so they are never
    /// locked out (`--lockout-allow`), e.g. a trusted NAT gateway.
    pub lockout_allow: Vec<AddrRange>,
    /// Load balancers whose connections start with a PROXY protocol
    /// header (v1 or v2) naming the real client (`--trusted-proxies`):
    /// from these addresses the header is required, from any other it is
    /// never read. The client it names is the one limits, lockouts and the
    /// logs see; the proxies themselves are exempt from `max_per_ip`.
    pub trusted_proxies: Vec<AddrRange>,
    /// After SIGINT or SIGTERM, how long health checks report "draining"
    /// before the listeners close (`--drain-delay`), so that a load
    /// balancer moves new connections elsewhere first.
    pub drain_delay: Duration,
    /// Bytes each user may store in all (`--user-quota`); `None`: no limit.
    pub user_quota: Option<u64>,
    /// Files each user may store (`--user-max-files`); `None`: no limit.
    pub user_max_files: Option<u64>,
    /// The plaintext listeners log nobody in from an address that is not
    /// loopback (`--require-tls`).
    pub require_tls: bool,
    /// A TLS handshake must complete within this from the connection's
    /// start (`--tls-handshake-timeout`).
    pub handshake_timeout: Duration,
    /// A web interface login ends after this much time without a request
    /// (`--web-session-timeout`).
    pub web_session_timeout: Duration,
}

/// Descriptors the server holds, with `open_files` descriptors, whatever
/// its client connections, kept out of what the connection limit is
/// derived from: the standard streams
/// and logs, the poll, its waker and the signal pipe, up to four
/// listeners, the storage root's own handles (about seven), the expiry
/// sweep's two directories, the spare descriptor that lets a connection be
/// refused when there are none left, the two or three a command opens for
/// a moment (one thread: never more at once), up to eight control
/// connections (not counted against `--max-connections`), the user
/// directories and record directories kept open (a thirty-second of the
/// limit each, between 64 and 32 and 1,024: [`crate::storage::kept_dirs`])
/// and the small files kept open between downloads
/// ([`crate::storage::OPEN_FILES`]). About 40 of the first 64 are used;
/// the rest is margin. 192 at the limit of 1,024 descriptors, 2,144 from
/// 32,768 up.
pub fn descriptor_reserve(open_files: u64) -> u64 {
    let (users, records) = crate::storage::kept_dirs(open_files);
    64 + users as u64 + records as u64 + crate::storage::OPEN_FILES as u64
}

/// Descriptors one client connection holds at most: its socket, and while
/// a transfer runs the one thing it reads or writes (an upload's temporary
/// file, a download's file, a listing's directory, the file `HASH`
/// reads). A logged-in idle session holds its socket only. Folders are
/// not counted: an upload or copy into a folder also holds the folder, a
/// copy its source, a recursive listing (and a folder's copy) a
/// directory per level.
pub const DESCRIPTORS_PER_CONNECTION: u64 = 2;

impl Policy {
    /// The default connection limit: as many connections as the soft
    /// open-file limit holds with every one of them transferring, after
    /// the reserve (see [`connection_capacity`]).
    pub fn default_max_connections() -> usize {
        connection_capacity(open_file_limit().unwrap_or(1024))
    }
}

/// How many connections `open_files` descriptors serve at once with each
/// of them in a transfer: `(open_files - descriptor_reserve) / 2`, at
/// least 1. Below it, no request fails for lack of descriptors.
pub fn connection_capacity(open_files: u64) -> usize {
    let usable =
        open_files.saturating_sub(descriptor_reserve(open_files)) / DESCRIPTORS_PER_CONNECTION;
    usize::try_from(usable.max(1)).unwrap_or(usize::MAX)
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            auth_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(60),
            head_timeout: Duration::from_secs(30),
            max_connections: Policy::default_max_connections(),
            max_per_ip: 64,
            login_delay: Duration::from_secs(1),
            lockout_failures: 10,
            lockout_window: Duration::from_secs(10 * 60),
            lockout_duration: Duration::from_secs(15 * 60),
            lockout_allow: Vec::new(),
            trusted_proxies: Vec::new(),
            drain_delay: Duration::ZERO,
            user_quota: None,
            user_max_files: None,
            require_tls: false,
            // A real handshake takes a few round trips; ten seconds
            // leaves room for a slow network, not for a slowloris.
            handshake_timeout: Duration::from_secs(10),
            web_session_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            http_listen: None,
            control_listen: None,
            control_token: None,
            metrics_listen: None,
            metrics_token: None,
            storage: PathBuf::from("./server_storage"),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            fsync: true,
            partial_ttl: crate::storage::DEFAULT_PARTIAL_TTL,
            policy: Policy::default(),
            users_file: None,
            systemd: false,
            access_log: None,
            access_log_format: crate::access::Format::Text,
            tls_listen: None,
            https_listen: None,
            tls: None,
        }
    }
}

/// The soft open-file limit of this process (`RLIMIT_NOFILE`), read from
/// `/proc/self/limits` so that no unsafe call is needed.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// A range of addresses (`--lockout-allow`): `ADDR/PREFIX`, or one
/// address. An IPv4 range also holds the IPv4-mapped IPv6 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    addr: IpAddr,
    prefix: u8,
}

impl AddrRange {
    /// True when `ip` is in the range (an IPv4-mapped IPv6 address as its
    /// IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for AddrRange {
    type Err = String;

    fn from_str(text: &str) -> Result<AddrRange, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or ADDRESS/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {max}"))?,
        };
        Ok(AddrRange { addr, prefix })
    }
}

impl std::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges_parse_and_match() {
        let other: IpAddr = "128.0.0.1".parse().unwrap();
        for bad in ["10.0.0.0/33", "nonsense", "::1/129", "1.2.3.4/"] {
            assert!(bad.parse::<AddrRange>().is_err(), "{bad}");
        }
        assert!("0.0.0.0/0".parse::<AddrRange>().unwrap().contains(other));
        assert!(!"10.0.0.0/8".parse::<AddrRange>().unwrap().contains(other));
    }

    #[test]
    fn the_open_file_limit_is_readable() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}
