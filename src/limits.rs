//! Bookkeeping for the limits the reactor enforces: connections per IP
//! address and in all, and failed logins per IP address (lockout). Plain
//! data on the one reactor thread; every map is bounded.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Policy;

/// Most addresses whose failed logins are remembered at once. Past this,
/// entries that no longer matter are dropped first, then the oldest.
const MAX_TRACKED_ADDRESSES: usize = 65_536;

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
    /// No descriptor is left to serve it (another process may share the
    /// limit): accepted only to be told so.
    OutOfDescriptors,
}

impl Refusal {
    /// The limit's name in the audit log (`limit=<name>`): the option
    /// that sets it.
    pub fn limit(self) -> &'static str {
        match self {
            Refusal::TooMany => "max-connections",
            Refusal::TooManyFromAddress => "max-per-ip",
            Refusal::OutOfDescriptors => "open-files",
        }
    }
}

impl Connections {
    /// Counts a new connection from `ip`, unless a limit forbids it.
    pub fn admit(&mut self, ip: IpAddr, policy: &Policy) -> Result<(), Refusal> {
        // A load balancer's own connections (its health checks, a header
        // that names no client) carry every client's traffic: a cap per
        // address would take the whole farm out of service.
        let exempt = policy
            .trusted_proxies
            .iter()
            .any(|range| range.contains(ip));
        if self.total >= policy.max_connections {
            return Err(Refusal::TooMany);
        }
        let count = self.per_ip.entry(ip).or_insert(0);
        if *count >= policy.max_per_ip && !exempt {
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

/// Connections waiting for a password-check slot (by their key), served
/// round-robin across addresses: many waiting checks from a few addresses
/// delay a login from another one by about one check per address, not by
/// all of theirs.
#[derive(Debug, Default)]
pub struct CheckWaiters {
    by_ip: HashMap<IpAddr, VecDeque<usize>>,
    /// The addresses with waiters, in the order of their next turn.
    turns: VecDeque<IpAddr>,
}

impl CheckWaiters {
    pub fn push(&mut self, ip: IpAddr, key: usize) {
        let queue = self.by_ip.entry(ip).or_default();
        if queue.is_empty() {
            self.turns.push_back(ip);
        }
        queue.push_back(key);
    }

    /// The connection stopped waiting (it closed).
    pub fn remove(&mut self, ip: IpAddr, key: usize) {
        if let Some(queue) = self.by_ip.get_mut(&ip) {
            queue.retain(|&k| k != key);
            if queue.is_empty() {
                self.by_ip.remove(&ip);
                self.turns.retain(|&a| a != ip);
            }
        }
    }

    /// The first waiter of the next address in turn that `may_run`
    /// allows; that address then goes to the back of the turns.
    pub fn next(&mut self, mut may_run: impl FnMut(IpAddr) -> bool) -> Option<usize> {
        for _ in 0..self.turns.len() {
            let ip = self.turns.pop_front()?;
            if !may_run(ip) {
                self.turns.push_back(ip);
                continue;
            }
            let queue = self.by_ip.get_mut(&ip)?;
            let key = queue.pop_front();
            if queue.is_empty() {
                self.by_ip.remove(&ip);
            } else {
                self.turns.push_back(ip);
            }
            return key;
        }
        None
    }

    pub fn clear(&mut self) {
        self.by_ip.clear();
        self.turns.clear();
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
    /// starts a lockout. An address of `--lockout-allow` is not counted.
    pub fn failed(&mut self, ip: IpAddr, now: Instant, policy: &Policy) -> bool {
        if policy.lockout_allow.iter().any(|range| range.contains(ip)) {
            return false;
        }
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

    /// The addresses locked out now, longest left first, with their
    /// failures and the time left.
    pub fn locked(&self, now: Instant) -> Vec<(IpAddr, u32, Duration)> {
        let mut locked: Vec<(IpAddr, u32, Duration)> = self
            .by_ip
            .iter()
            .filter_map(|(ip, f)| {
                let until = f.locked_until.filter(|until| now < *until)?;
                Some((*ip, f.count, until - now))
            })
            .collect();
        locked.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        locked
    }

    /// Forgets the failures of `ip` (lifting its lockout); true when
    /// there were any.
    pub fn clear(&mut self, ip: IpAddr) -> bool {
        self.by_ip.remove(&ip).is_some()
    }

    /// Forgets every failure; returns how many addresses were locked out.
    pub fn clear_all(&mut self, now: Instant) -> usize {
        let locked = self.locked(now).len();
        self.by_ip.clear();
        locked
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
    fn trusted_proxies_pass_max_per_ip_but_not_max_connections() {
        let mut policy = policy();
        policy.trusted_proxies = vec!["10.0.0.9/32".parse().unwrap()];
        let mut conns = Connections::default();
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(conns.admit(proxy, &policy), Ok(()));
        }
        assert_eq!(conns.admit(proxy, &policy), Err(Refusal::TooMany));
        for _ in 0..3 {
            conns.release(proxy);
        }
        assert_eq!(conns.total(), 0);
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
    fn allowed_addresses_are_never_locked_out_and_lockouts_can_be_lifted() {
        let mut policy = policy();
        policy.lockout_allow = vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let mut logins = Logins::default();
        let t0 = Instant::now();
        for ip in ["127.1.2.3", "::1", "::ffff:127.0.0.9"] {
            let ip: IpAddr = ip.parse().unwrap();
            for _ in 0..10 {
                assert!(!logins.failed(ip, t0, &policy));
            }
            assert!(!logins.is_locked(ip, t0));
        }
        let other: IpAddr = "128.0.0.1".parse().unwrap();
        let third: IpAddr = "10.9.9.9".parse().unwrap();
        for ip in [other, third] {
            for _ in 0..3 {
                logins.failed(ip, t0, &policy);
            }
        }
        assert_eq!(logins.locked(t0).len(), 2);
        assert!(logins.clear(other));
        assert!(!logins.is_locked(other, t0));
        assert!(!logins.clear(other));
        assert_eq!(logins.locked(t0), [(third, 3, Duration::from_secs(60))]);
        assert_eq!(logins.clear_all(t0), 1);
        assert!(!logins.is_locked(third, t0));
    }

    #[test]
    fn check_waiters_take_turns_across_addresses() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let mut waiters = CheckWaiters::default();
        for key in 0..4 {
            waiters.push(a, key);
        }
        waiters.push(b, 10);
        waiters.push(c, 20);
        waiters.push(c, 21);
        waiters.remove(c, 20);
        let order: Vec<usize> = std::iter::from_fn(|| waiters.next(|_| true)).collect();
        assert_eq!(order, [0, 10, 21, 1, 2, 3]);
        waiters.push(a, 5);
        waiters.push(b, 6);
        assert_eq!(waiters.next(|ip| ip != a), Some(6));
        assert_eq!(waiters.next(|ip| ip != a), None);
        assert_eq!(waiters.next(|_| true), Some(5));
    }
}
