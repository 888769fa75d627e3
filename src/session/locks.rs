//! WebDAV's write locks, kept in memory (RFC 4918 §6-7): a server restart
//! forgets them, which a client sees as a lock that expired.
//!
//! A lock belongs to one user's files and names a path (`""` for the
//! user's root); a depth-infinity lock covers everything below its path.
//! Expired locks are dropped whenever a user's locks are looked at, so the
//! table needs no timer. The table is bounded: [`MAX_LOCKS_PER_USER`] per
//! user, [`MAX_LOCKS`] in all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::line::Command;
use crate::protocol::webdav::LockScope;

/// Locks one user may hold at once: a client locks the files it has open
/// (an office suite, a few at a time); more is a client gone wrong.
pub const MAX_LOCKS_PER_USER: usize = 1000;
/// Locks in the whole table: about 200 bytes each, so at most a few MiB.
pub const MAX_LOCKS: usize = 20_000;
/// A lock asked for without a timeout, or for longer, lasts this long
/// (clients refresh a lock they still need well before it ends).
pub const MAX_LOCK_SECS: u64 = 24 * 60 * 60;
/// A lock asked for with no `Timeout` lasts this long.
pub const DEFAULT_LOCK_SECS: u64 = 10 * 60;

#[derive(Debug, Clone)]
pub struct Lock {
    pub token: String,
    /// The locked resource: `""` for the root, else its path.
    pub path: String,
    pub scope: LockScope,
    pub infinite: bool,
    /// The `owner` element as the client sent it.
    pub owner: Option<String>,
    pub expires: Instant,
}

impl Lock {
    /// Whether the lock applies to `path`: its own resource, or one below
    /// it for a depth-infinity lock.
    pub fn covers(&self, path: &str) -> bool {
        self.path == path || (self.infinite && is_below(path, &self.path))
    }

    /// Seconds until it expires.
    pub fn seconds_left(&self, now: Instant) -> u64 {
        self.expires.saturating_duration_since(now).as_secs()
    }
}

/// Whether `path` is strictly below `ancestor` (`""` is above everything).
fn is_below(path: &str, ancestor: &str) -> bool {
    if ancestor.is_empty() {
        return !path.is_empty();
    }
    path.len() > ancestor.len()
        && path.starts_with(ancestor)
        && path.as_bytes()[ancestor.len()] == b'/'
}

/// Why a lock was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockRefused {
    /// Another lock conflicts (`423`).
    Conflict,
    /// The table, or the user's share of it, is full (`503`).
    Full,
}

#[derive(Debug, Default)]
pub struct Locks {
    by_user: HashMap<String, Vec<Lock>>,
    total: usize,
}

impl Locks {
    fn purge(&mut self, user: &str, now: Instant) -> Option<&mut Vec<Lock>> {
        let locks = self.by_user.get_mut(user)?;
        let before = locks.len();
        locks.retain(|lock| lock.expires > now);
        self.total -= before - locks.len();
        if locks.is_empty() {
            self.by_user.remove(user);
            return None;
        }
        self.by_user.get_mut(user)
    }

    /// The live locks of `user` that apply to `path`.
    pub fn covering(&mut self, user: &str, path: &str, now: Instant) -> Vec<Lock> {
        self.purge(user, now)
            .map(|locks| locks.iter().filter(|l| l.covers(path)).cloned().collect())
            .unwrap_or_default()
    }

    /// The live locks of `user` on `path` or below it (what a
    /// depth-infinity lock or a delete of `path` would meet).
    pub fn at_or_below(&mut self, user: &str, path: &str, now: Instant) -> Vec<Lock> {
        self.purge(user, now)
            .map(|locks| {
                locks
                    .iter()
                    .filter(|l| l.path == path || is_below(&l.path, path))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Grants a new lock unless one conflicts: an exclusive lock conflicts
    /// with any other on the resources it covers, a shared one with an
    /// exclusive one.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &mut self,
        user: &str,
        path: &str,
        scope: LockScope,
        infinite: bool,
        owner: Option<String>,
        secs: u64,
        token: String,
        now: Instant,
    ) -> Result<Lock, LockRefused> {
        let mut affected = self.covering(user, path, now);
        if infinite {
            affected.extend(self.at_or_below(user, path, now));
        }
        let conflict = affected
            .iter()
            .any(|l| scope == LockScope::Exclusive || l.scope == LockScope::Exclusive);
        if conflict {
            return Err(LockRefused::Conflict);
        }
        let count = self.by_user.get(user).map_or(0, Vec::len);
        if count >= MAX_LOCKS_PER_USER || self.total >= MAX_LOCKS {
            return Err(LockRefused::Full);
        }
        let lock = Lock {
            token,
            path: path.to_owned(),
            scope,
            infinite,
            owner,
            expires: now + Duration::from_secs(secs.min(MAX_LOCK_SECS)),
        };
        self.by_user
            .entry(user.to_owned())
            .or_default()
            .push(lock.clone());
        self.total += 1;
        Ok(lock)
    }

    /// Extends the lock `token` of `user` that applies to `path`.
    pub fn refresh(
        &mut self,
        user: &str,
        path: &str,
        token: &str,
        secs: u64,
        now: Instant,
    ) -> Option<Lock> {
        let locks = self.purge(user, now)?;
        let lock = locks
            .iter_mut()
            .find(|l| l.token == token && l.covers(path))?;
        lock.expires = now + Duration::from_secs(secs.min(MAX_LOCK_SECS));
        Some(lock.clone())
    }

    /// Removes the lock `token` of `user` if it applies to `path`.
    pub fn release(&mut self, user: &str, path: &str, token: &str, now: Instant) -> bool {
        let Some(locks) = self.purge(user, now) else {
            return false;
        };
        let Some(at) = locks
            .iter()
            .position(|l| l.token == token && l.covers(path))
        else {
            return false;
        };
        locks.swap_remove(at);
        self.total -= 1;
        true
    }

    /// Removes every lock on `path` and below: the resource is gone.
    pub fn forget(&mut self, user: &str, path: &str) {
        let Some(locks) = self.by_user.get_mut(user) else {
            return;
        };
        let before = locks.len();
        locks.retain(|l| !(l.path == path || is_below(&l.path, path)));
        self.total -= before - locks.len();
    }
}

/// Whether a WebDAV lock holds what the line-protocol `command` of `user`
/// would change (`from`: the source `FROM` gave, for `MOVE`). The line
/// protocol has no way to give a lock token, so any live lock on what it
/// changes refuses it: the file itself, for a removal or a move what is
/// beneath it too, and for a new or removed name its folder's depth-0
/// lock.
pub(crate) fn holds_line_command(
    locks: &mut Locks,
    user: &str,
    command: &Command<'_>,
    from: Option<&str>,
    now: Instant,
) -> bool {
    let mut targets: Vec<(&str, bool)> = Vec::new();
    match command {
        Command::Put { name, .. } => targets.push((name.as_str(), false)),
        Command::Del { name } | Command::Mkdir { name } => targets.push((name.as_str(), false)),
        Command::Rmdir { name } | Command::Rmtree { name } => targets.push((name.as_str(), true)),
        Command::Move { name } => {
            targets.push((name.as_str(), true));
            targets.extend(from.map(|from| (from, true)));
        }
        Command::Copy { name } => targets.push((name.as_str(), true)),
        _ => return false,
    }
    if !locks.by_user.contains_key(user) {
        return false;
    }
    targets.into_iter().any(|(path, below)| {
        let parent = path.rfind('/').map_or("", |slash| &path[..slash]);
        !locks.covering(user, path, now).is_empty()
            || (below && !locks.at_or_below(user, path, now).is_empty())
            || locks
                .covering(user, parent, now)
                .iter()
                .any(|l| l.path == parent && !l.infinite)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u32) -> String {
        format!("opaquelocktoken:{n}")
    }

    #[test]
    fn exclusive_and_shared_locks_conflict_as_rfc_4918_says() {
        let now = Instant::now();
        let mut locks = Locks::default();
        let (ex, sh) = (LockScope::Exclusive, LockScope::Shared);
        locks
            .grant("a", "f", sh, false, None, 60, token(1), now)
            .unwrap();
        locks
            .grant("a", "f", sh, false, None, 60, token(2), now)
            .unwrap();
        let conflict = locks.grant("a", "f", ex, false, None, 60, token(3), now);
        assert_eq!(conflict.unwrap_err(), LockRefused::Conflict);
        // Another user's files are not these.
        locks
            .grant("b", "f", ex, false, None, 60, token(4), now)
            .unwrap();
        // A depth-infinity lock on the root meets the locks below it.
        let root = locks.grant("a", "", ex, true, None, 60, token(5), now);
        assert_eq!(root.unwrap_err(), LockRefused::Conflict);
        assert!(locks.release("a", "f", &token(1), now));
        assert!(!locks.release("a", "f", &token(1), now));
        assert_eq!(locks.covering("a", "f", now).len(), 1);
        // Expired locks are gone.
        let later = now + Duration::from_secs(61);
        assert!(locks.covering("a", "f", later).is_empty());
        locks
            .grant("a", "", ex, true, None, 60, token(6), later)
            .unwrap();
        assert_eq!(locks.covering("a", "g", later).len(), 1);
        assert!(locks.refresh("a", "g", &token(6), 600, later).is_some());
        locks.forget("a", "");
        assert!(locks.covering("a", "g", later).is_empty());
        assert_eq!(locks.total, 1, "b's lock");
    }
}
