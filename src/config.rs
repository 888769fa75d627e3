//! Server settings for embedders and the `ferryd` command line.

use std::net::{Ipv4Addr, SocketAddr};
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

/// How a [`crate::Server`] runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the line-protocol listener; port 0 picks a free port
    /// (see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// Address of the HTTP listener; `None` means no HTTP front.
    pub http_listen: Option<SocketAddr>,
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
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            http_listen: None,
            storage: PathBuf::from("./server_storage"),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            fsync: true,
            partial_ttl: crate::storage::DEFAULT_PARTIAL_TTL,
        }
    }
}
