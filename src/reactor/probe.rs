//! Runs the storage health probe (see [`crate::health`]): one child
//! process at a time (`sys::spawn_write_probe`), whose pipe the loop
//! watches like any socket, with a deadline after which the child is
//! killed and the server reported unhealthy until a probe succeeds.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::health::{Health, PROBE_TIMEOUT};
use crate::storage::Storage;
use crate::sys;

/// A probe under way.
struct Running {
    pid: libc::pid_t,
    pipe: File,
    /// When it started, by this host's clocks (the wall clock's, to
    /// compare with the time the file system stamps the probe's file).
    started: Instant,
    wall: SystemTime,
    report: Vec<u8>,
    /// Past its deadline: killed, its end still awaited.
    killed: bool,
}

#[derive(Default)]
pub(super) struct Prober {
    running: Option<Running>,
    /// Probes that ended (their pipe closed) but had not quite exited when
    /// last asked: reaped at the next probe, so none stays a zombie.
    unreaped: Vec<libc::pid_t>,
}

impl Prober {
    /// Starts a probe if a health check asked for one and none runs.
    pub(super) fn start_if_wanted(
        &mut self,
        health: &Health,
        storage: &Storage,
        registry: &Registry,
        token: Token,
    ) {
        if !health.take_wanted() || self.running.is_some() {
            return;
        }
        self.unreaped.retain(|&pid| !sys::reap(pid));
        let now = Instant::now();
        let (dir, name) = storage.probe_target();
        let (pid, pipe) = match sys::spawn_write_probe(dir, &name) {
            Ok(spawned) => spawned,
            Err(err) => {
                health.probe_finished(now, Err(format!("cannot start a probe: {err}")));
                return;
            }
        };
        let pipe = File::from(pipe);
        let fd = pipe.as_raw_fd();
        if let Err(err) = registry.register(&mut SourceFd(&fd), token, Interest::READABLE) {
            log::error!("cannot watch the storage probe: {err}");
            sys::kill_child(pid);
            self.unreaped.push(pid);
            return;
        }
        health.probe_started(now);
        self.running = Some(Running {
            pid,
            pipe,
            started: now,
            wall: SystemTime::now(),
            report: Vec::new(),
            killed: false,
        });
    }

    /// When the running probe's deadline comes.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let running = self.running.as_ref().filter(|r| !r.killed)?;
        Some(running.started + PROBE_TIMEOUT)
    }

    /// A probe past its deadline is killed; health already says so (it
    /// reads the start time), and stays so until a probe succeeds.
    pub(super) fn on_deadline(&mut self, now: Instant) {
        if let Some(running) = &mut self.running
            && !running.killed
            && now >= running.started + PROBE_TIMEOUT
        {
            log::warn!(
                "storage health probe: no answer within {PROBE_TIMEOUT:?}; reporting unhealthy"
            );
            sys::kill_child(running.pid);
            running.killed = true;
        }
    }

    /// Reads what the probe's pipe has; at its end, records the result.
    pub(super) fn on_readable(&mut self, health: &Health, storage: &Storage, registry: &Registry) {
        let Some(running) = &mut self.running else {
            return;
        };
        let mut buf = [0u8; sys::PROBE_REPORT_LEN];
        let ended = loop {
            match running.pipe.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    let room = sys::PROBE_REPORT_LEN.saturating_sub(running.report.len());
                    running.report.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if !ended {
            return;
        }
        let Some(running) = self.running.take() else {
            return;
        };
        let fd = running.pipe.as_raw_fd();
        let _ = registry.deregister(&mut SourceFd(&fd));
        // It wrote and closed: it exits at once (a killed one, as soon as
        // the kernel lets it). Reaped now, or by the next probe's end.
        if !sys::reap(running.pid) {
            self.unreaped.push(running.pid);
        }
        let result = interpret(&running.report);
        match &result {
            Ok(written) => {
                storage.observe_fs_clock(*written, running.wall);
                if running.killed {
                    log::info!("storage health probe answered late, but answered");
                }
            }
            Err(why) => log::warn!("storage health probe: {why}"),
        }
        health.probe_finished(Instant::now(), result.map(|_| ()));
    }
}

/// The child's report: the fresh file's time, or why it failed.
fn interpret(report: &[u8]) -> Result<SystemTime, String> {
    if report.len() < sys::PROBE_REPORT_LEN {
        return Err("the probe ended without a report (killed, or storage hung)".to_owned());
    }
    let word = |at: usize| i32::from_ne_bytes(report[at..at + 4].try_into().unwrap_or_default());
    let long = |at: usize| i64::from_ne_bytes(report[at..at + 8].try_into().unwrap_or_default());
    let (errno, step) = (word(0), word(4));
    if errno != 0 {
        let what = match step {
            1 => "create",
            2 => "write",
            3 => "fsync",
            4 => "stat",
            _ => "remove",
        };
        let err = io::Error::from_raw_os_error(errno);
        return Err(format!("{what} of a probe file failed: {err}"));
    }
    let (secs, nanos) = (long(8), long(16));
    let since_epoch = Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
    Ok(SystemTime::UNIX_EPOCH + since_epoch)
}
