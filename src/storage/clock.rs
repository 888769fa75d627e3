//! One expiry rule for the partials of every server sharing a root, judged
//! by the file system's clock.
//!
//! Servers on several hosts disagree about the time, and each may be
//! started with its own `--partial-ttl`; a partial written through one and
//! judged by another would then expire early or late. So:
//!
//! - The age of a partial is the file system's "now" minus its
//!   modification time, both stamped by the file system (the server that
//!   stores the file sets its times: the NFS or metadata server, or the
//!   local kernel). Its "now" is learnt from fresh files: this server's
//!   instance file at start, and every health probe's file (see
//!   `crate::health`); between them, the offset to the local clock is
//!   assumed to stay put (clocks drift by milliseconds per day).
//! - The time to live is the root's, in `.ferry/partial-ttl` (seconds, as
//!   text): every server writes its own at start, so the last one started
//!   sets it for the farm, and every expiry pass reads it again. A server
//!   whose own setting differs says so in its log.

use std::cell::Cell;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, SystemTime};

use super::dir::Dir;
use super::{Storage, TMP_DIR};

/// `.ferry/partial-ttl`.
const TTL_FILE: &str = "partial-ttl";
const TTL_MODE: u32 = 0o600;

/// What the expiry rule needs to know, kept current.
#[derive(Debug)]
pub(super) struct Clock {
    /// Nanoseconds the file system's clock is ahead of this host's.
    fs_ahead: Cell<i128>,
    /// The root's partial TTL, as last read, and when.
    ttl: Cell<Duration>,
    ttl_read: Cell<Option<std::time::Instant>>,
}

/// How long a read of the root's TTL is used before it is read again: a
/// file read per partial looked at would cost more than it tells.
const TTL_REREAD: Duration = Duration::from_secs(1);

fn nanos_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

impl Clock {
    pub(super) fn new(ttl: Duration) -> Clock {
        Clock {
            fs_ahead: Cell::new(0),
            ttl: Cell::new(ttl),
            ttl_read: Cell::new(None),
        }
    }

    /// A file the file system stamped `written` just now, as this host's
    /// clock said `local`.
    pub(super) fn observe(&self, written: SystemTime, local: SystemTime) {
        self.fs_ahead
            .set(nanos_since_epoch(written) - nanos_since_epoch(local));
    }

    /// The file system's time now.
    pub(super) fn fs_now(&self) -> SystemTime {
        let ahead = self.fs_ahead.get();
        let now = SystemTime::now();
        let shift = Duration::from_nanos(ahead.unsigned_abs().min(u64::MAX as u128) as u64);
        if ahead >= 0 { now + shift } else { now - shift }
    }

    /// How long a partial written at `written` (its mtime) has been idle,
    /// by the file system's clock.
    pub(super) fn age(&self, written: SystemTime) -> Duration {
        self.fs_now().duration_since(written).unwrap_or_default()
    }

    pub(super) fn ttl(&self) -> Duration {
        self.ttl.get()
    }
}

/// Writes this server's TTL as the root's (at start).
pub(super) fn publish_ttl(private: &Dir, ttl: Duration) -> std::io::Result<()> {
    let mut file = private.open_or_create(TTL_FILE, TTL_MODE)?;
    file.set_len(0)?;
    file.write_all(format!("{}\n", ttl.as_secs_f64()).as_bytes())
}

/// The root's TTL, if its file holds one.
pub(super) fn read_ttl(private: &Dir) -> Option<Duration> {
    let file = private.open_regular(TTL_FILE, false).ok()?;
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    let secs: f64 = text.trim().parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

impl Storage {
    /// Where the health probe writes: the private directory and
    /// `tmp/<instance id>-probe` in it, this server's own name (swept with
    /// its other temporary files should a probe be cut off by a crash),
    /// reached through the directory's name so that a replaced `tmp` is
    /// probed, not the one held.
    pub fn probe_target(&self) -> (BorrowedFd<'_>, CString) {
        let name = format!("{TMP_DIR}/{}-probe", self.instance.id);
        // An id is hex digits: no NUL.
        let name = CString::new(name).unwrap_or_default();
        (self.private.as_fd(), name)
    }

    /// A probe's fresh file was stamped `written` by the file system when
    /// this host's clock said `local` (see the module docs).
    pub fn observe_fs_clock(&self, written: SystemTime, local: SystemTime) {
        self.clock.observe(written, local);
    }

    /// The root's partial TTL (read again when the last read is older
    /// than a second).
    pub(super) fn partial_ttl(&self) -> Duration {
        let now = std::time::Instant::now();
        let stale = (self.clock.ttl_read.get())
            .is_none_or(|at| now.saturating_duration_since(at) >= TTL_REREAD);
        if stale {
            self.refresh_ttl();
        }
        self.clock.ttl()
    }

    /// Reads the root's TTL again.
    pub(super) fn refresh_ttl(&self) {
        self.clock.ttl_read.set(Some(std::time::Instant::now()));
        if let Some(ttl) = read_ttl(&self.private)
            && ttl != self.clock.ttl()
        {
            log::info!(
                "partials expire after {:?} on this root (set by the last server started), \
                 not {:?}",
                ttl,
                self.options.partial_ttl
            );
            self.clock.ttl.set(ttl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_judged_by_the_file_systems_clock() {
        let clock = Clock::new(Duration::from_secs(60));
        let now = SystemTime::now();
        // The file system is an hour ahead of this host.
        clock.observe(now + Duration::from_secs(3600), now);
        let written = now + Duration::from_secs(3600 - 30);
        let age = clock.age(written);
        assert!(
            age >= Duration::from_secs(30) && age < Duration::from_secs(40),
            "{age:?}"
        );
        // And behind.
        clock.observe(now - Duration::from_secs(3600), now);
        assert!(clock.age(now - Duration::from_secs(3600)) < Duration::from_secs(10));
        assert_eq!(clock.age(now), Duration::ZERO);
    }

    #[test]
    fn the_roots_ttl_is_the_last_one_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_path(tmp.path()).unwrap();
        assert_eq!(read_ttl(&dir), None);
        publish_ttl(&dir, Duration::from_secs(86400)).unwrap();
        publish_ttl(&dir, Duration::from_millis(2500)).unwrap();
        assert_eq!(read_ttl(&dir), Some(Duration::from_millis(2500)));
    }
}
