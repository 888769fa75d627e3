//! Whether this server should be given new clients: what `GET /healthz`
//! and the line protocol's `HEALTH` answer, for a load balancer.
//!
//! Unhealthy while the server is draining (from the first SIGINT or
//! SIGTERM on, through `--drain-delay`), and while the storage root
//! cannot be written: the reactor checks it by a probe in a child process
//! (`sys::spawn_write_probe`) that creates, writes, syncs and removes a
//! file under `.ferry/tmp/`, so a dead mount hangs the child, never the
//! loop. A check answers at once from the last probe's result and asks for
//! a new probe when that result is older than [`PROBE_REFRESH`]; a probe
//! still unanswered after [`PROBE_TIMEOUT`] makes the server unhealthy by
//! itself. Probes run only when checks come, so a server nobody checks
//! never wakes for them.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// A probe that has not answered within this makes the server unhealthy:
/// a local disk writes, syncs and removes a small file in milliseconds, a
/// network file system in tens of them; seconds mean clients would wait
/// as long for every upload.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A check finding the last probe's result older than this asks for a new
/// one. HAProxy checks every 2 s by default, so each of its checks starts
/// the probe the next one reads.
pub const PROBE_REFRESH: Duration = Duration::from_millis(500);

/// The server's health as a load balancer sees it.
#[derive(Debug, Default)]
pub struct Health {
    draining: Cell<bool>,
    storage: RefCell<Storage>,
    /// A check found the probe result old; the reactor starts a probe.
    wanted: Cell<bool>,
}

#[derive(Debug, Default)]
struct Storage {
    /// Why the last finished probe failed; `None`: it succeeded (or none
    /// ran yet: opening the root at start wrote to it).
    failure: Option<String>,
    /// When the last probe finished.
    checked: Option<Instant>,
    /// When the probe now running started.
    running_since: Option<Instant>,
}

impl Health {
    /// Why the server should not get new clients now, if it should not;
    /// asks for a fresh probe when the last result is old.
    pub fn check(&self, now: Instant) -> Option<String> {
        let storage = self.storage.borrow();
        let old = storage
            .checked
            .is_none_or(|at| now.saturating_duration_since(at) >= PROBE_REFRESH);
        if old && storage.running_since.is_none() {
            self.wanted.set(true);
        }
        if self.draining.get() {
            return Some("draining".to_owned());
        }
        if let Some(since) = storage.running_since
            && now.saturating_duration_since(since) >= PROBE_TIMEOUT
        {
            return Some(format!(
                "storage did not answer a write within {}s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
        storage
            .failure
            .as_ref()
            .map(|why| format!("storage not writable: {why}"))
    }

    /// From the first stop request on.
    pub fn set_draining(&self) {
        self.draining.set(true);
    }

    /// Takes the request for a probe, if a check made one.
    pub fn take_wanted(&self) -> bool {
        self.wanted.replace(false)
    }

    pub fn probe_started(&self, now: Instant) {
        self.storage.borrow_mut().running_since = Some(now);
    }

    /// A probe ended: `Ok` or why it failed.
    pub fn probe_finished(&self, now: Instant, result: Result<(), String>) {
        let mut storage = self.storage.borrow_mut();
        storage.running_since = None;
        storage.checked = Some(now);
        storage.failure = result.err();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_when_draining_failing_or_late() {
        let health = Health::default();
        let t0 = Instant::now();
        assert_eq!(health.check(t0), None);
        assert!(health.take_wanted());
        health.probe_started(t0);
        assert_eq!(health.check(t0 + PROBE_TIMEOUT / 2), None);
        assert!(!health.take_wanted(), "one probe at a time");
        let late = health.check(t0 + PROBE_TIMEOUT).unwrap();
        assert!(late.contains("did not answer"), "{late}");
        health.probe_finished(t0 + PROBE_TIMEOUT, Err("open: EROFS".to_owned()));
        let failed = health.check(t0 + PROBE_TIMEOUT).unwrap();
        assert!(failed.contains("EROFS"), "{failed}");
        assert!(!health.take_wanted(), "fresh result");
        health.probe_finished(t0 + PROBE_TIMEOUT, Ok(()));
        assert_eq!(health.check(t0 + PROBE_TIMEOUT), None);
        health.set_draining();
        assert_eq!(health.check(t0).as_deref(), Some("draining"));
    }
}
