//! Time in the loop: how long to block in `poll`, the heap of
//! connection deadlines (idle, login, transfer, TLS handshake) and the
//! password-check slots handed out as they free up.

use super::*;

impl Reactor {
    /// Block until an event, unless work is left over from the last turn
    /// or the drain period is running out.
    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        let accepting = self
            .listeners
            .iter()
            .any(|listener| listener.pending && listener.paused_until.is_none());
        if !self.ready.is_empty() || accepting {
            return Some(Duration::ZERO);
        }
        let drain = match self.phase {
            Phase::Serving => None,
            Phase::Delaying { until } => Some(until),
            Phase::Draining { deadline } => Some(deadline),
        };
        let resume = self.listeners.iter().filter_map(|l| l.paused_until).min();
        let timer = self.timers.peek().map(|Reverse((when, _))| *when);
        let header = self.preface_timers.peek().map(|Reverse((when, _))| *when);
        let probe = self.prober.deadline();
        // Expiry of partials, and sweeping the files of stopped servers.
        let storage = self.services.storage.next_housekeeping();
        // Access-log lines waiting to be written (none: no wake-up).
        let access = self
            .services
            .access
            .borrow()
            .as_ref()
            .and_then(|log| log.flush_due());
        let next = [drain, resume, timer, header, probe, storage, access]
            .into_iter()
            .flatten()
            .min()?;
        // mio rounds up to whole milliseconds, so this never wakes early.
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Gives free password-check slots to waiting connections, one
    /// address after another, never two checks of one address at once.
    pub(super) fn hand_out_check_slots(&mut self) {
        while self.services.check_slot_free() {
            let services = &self.services;
            let Some(key) = self
                .check_waiters
                .next(|ip| !services.check_running_for(ip))
            else {
                return;
            };
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.waiting_check = false;
            if conn.session.take_check_slot(&self.services) && !conn.queued {
                conn.queued = true;
                self.ready.push(key);
            }
        }
    }

    /// Runs the sessions whose deadline has come.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((when, key))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.armed != Some(when) {
                // Stale: the connection has an earlier entry, or is new.
                continue;
            }
            conn.armed = None;
            if conn.transport.deadline().is_some_and(|at| at <= now) {
                let why = conn.transport.expire();
                log::info!("{}: {why}", conn.peer);
                conn.session.connection_lost(why, &self.services);
                if !conn.queued {
                    conn.queued = true;
                    self.ready.push(key);
                }
                continue;
            }
            match deadline_of(conn, &self.services) {
                Some(deadline) if deadline <= now => {
                    conn.session.on_deadline(now, &self.services);
                    if !conn.queued {
                        conn.queued = true;
                        self.ready.push(key);
                    }
                }
                // The deadline moved on since this entry was pushed.
                _ => self.arm(key),
            }
        }
    }

    /// Makes sure the connection's current deadline is in the heap.
    pub(super) fn arm(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(deadline) = deadline_of(conn, &self.services) else {
            return;
        };
        if conn.armed.is_none_or(|armed| deadline < armed) {
            conn.armed = Some(deadline);
            self.timers.push(Reverse((deadline, key)));
        }
    }
}

/// The earlier of two deadlines.
pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When the connection next needs the timer: its session's deadline, or
/// the end of its TLS handshake.
pub(super) fn deadline_of(conn: &Conn, services: &Services) -> Option<Instant> {
    earliest(conn.session.deadline(services), conn.transport.deadline())
}
