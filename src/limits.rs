//! Bookkeeping for the limits the reactor enforces: connections per IP
//! address and in all, and failed logins per IP address (lockout). Plain
//! data on the one reactor thread; every map is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Policy;

/// Most addresses whose failed logins are remembered at once. Past this,
/// entries that no longer matter are dropped first, then the oldest.
const MAX_TRACKED_ADDRESSES: usize = 65_536;

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

/// Open connections, in all and per address.
#[derive(Debug, Default)]
pub struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a new connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooMany,
    TooManyFromAddress,
}

impl Connections {
    /// Counts a new connection from `ip`, unless a limit forbids it.
    pub fn admit(&mut self, ip: IpAddr, policy: &Policy) -> Result<(), Refusal> {
        if self.total >= policy.max_connections {
            return Err(Refusal::TooMany);
        }
        let count = self.per_ip.entry(ip).or_insert(0);
        if *count >= policy.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *count += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `ip` closed.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
            self.total -= 1;
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// Failed logins of one address.
#[derive(Debug, Clone)]
struct Failures {
    /// When the failures in the current window started to count.
    window_start: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

/// Failed logins per address, and the lockouts they lead to.
#[derive(Debug, Default)]
pub struct Logins {
    by_ip: HashMap<IpAddr, Failures>,
}

impl Logins {
    /// True while `ip` is locked out: its logins are refused without
    /// checking the password.
    pub fn is_locked(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_ip
            .get(&ip)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Records a failed login from `ip`; returns true when this failure
    /// starts a lockout.
    pub fn failed(&mut self, ip: IpAddr, now: Instant, policy: &Policy) -> bool {
        if !self.by_ip.contains_key(&ip) && self.by_ip.len() >= MAX_TRACKED_ADDRESSES {
            self.prune(now, policy);
        }
        let entry = self.by_ip.entry(ip).or_insert(Failures {
            window_start: now,
            count: 0,
            locked_until: None,
        });
        if entry.locked_until.is_some_and(|until| now >= until) {
            entry.locked_until = None;
            entry.count = 0;
            entry.window_start = now;
        }
        if now.duration_since(entry.window_start) > policy.lockout_window {
            entry.window_start = now;
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        if entry.locked_until.is_none()
            && policy.lockout_failures > 0
            && entry.count >= policy.lockout_failures
        {
            entry.locked_until = Some(now + policy.lockout_duration);
            return true;
        }
        false
    }

    /// A successful login does not clear earlier failures: an attacker who
    /// knows one password must not reset the count for guessing others.
    /// Forgets addresses whose failures no longer matter; when that is not
    /// enough, the ones seen longest ago.
    fn prune(&mut self, now: Instant, policy: &Policy) {
        let horizon = policy.lockout_window.max(policy.lockout_duration);
        self.by_ip.retain(|_, f| {
            f.locked_until.is_some_and(|until| now < until)
                || now.duration_since(f.window_start) <= horizon
        });
        if self.by_ip.len() >= MAX_TRACKED_ADDRESSES {
            let mut starts: Vec<Instant> = self.by_ip.values().map(|f| f.window_start).collect();
            starts.sort_unstable();
            let cutoff = starts[starts.len() / 2];
            self.by_ip.retain(|_, f| f.window_start > cutoff);
        }
    }
}

/// A short description of a duration for log lines.
pub fn secs(d: Duration) -> String {
    format!("{:.0}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_connections: 3,
            max_per_ip: 2,
            lockout_failures: 3,
            lockout_window: Duration::from_secs(10),
            lockout_duration: Duration::from_secs(60),
            ..Policy::default()
        }
    }

    #[test]
    fn connection_limits() {
        let policy = policy();
        let mut conns = Connections::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(conns.admit(a, &policy), Ok(()));
        assert_eq!(conns.admit(a, &policy), Ok(()));
        assert_eq!(conns.admit(a, &policy), Err(Refusal::TooManyFromAddress));
        assert_eq!(conns.admit(b, &policy), Ok(()));
        assert_eq!(conns.admit(b, &policy), Err(Refusal::TooMany));
        conns.release(a);
        assert_eq!(conns.admit(b, &policy), Ok(()));
        assert_eq!(conns.total(), 3);
        conns.release(a);
        conns.release(b);
        conns.release(b);
        assert_eq!(conns.total(), 0);
        assert!(conns.per_ip.is_empty());
    }

    #[test]
    fn lockout_after_failures_in_the_window_and_its_expiry() {
        let policy = policy();
        let mut logins = Logins::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        assert!(!logins.failed(ip, t0, &policy));
        // The window passes: the count starts again.
        assert!(!logins.failed(ip, t0 + Duration::from_secs(11), &policy));
        assert!(!logins.failed(ip, t0 + Duration::from_secs(12), &policy));
        assert!(logins.failed(ip, t0 + Duration::from_secs(13), &policy));
        assert!(logins.is_locked(ip, t0 + Duration::from_secs(14)));
        assert!(!logins.is_locked("::2".parse().unwrap(), t0));
        let after = t0 + Duration::from_secs(13 + 60);
        assert!(!logins.is_locked(ip, after));
        assert!(!logins.failed(ip, after, &policy), "a fresh count");
    }

    #[test]
    fn the_open_file_limit_is_readable() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}
