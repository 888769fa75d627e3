//! The progress bar on stderr (`indicatif`): bytes, rate and time left.
//! Only on a terminal, and never with `--quiet`. It also keeps a transfer
//! under `--limit-rate`, since it sees every chunk go by.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use ferry::client::Progress;
use ferry::client::transfer::Meter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Set by Ctrl-C while `ferry shell` runs a command (see
/// `shell::interactive`): the transfer in progress stops at its next chunk
/// and the shell goes back to its prompt. Outside the shell nothing sets it
/// and Ctrl-C ends the program as usual.
pub static INTERRUPTED: LazyLock<Arc<AtomicBool>> =
    LazyLock::new(|| Arc::new(AtomicBool::new(false)));

pub struct Bar {
    bar: Option<ProgressBar>,
    /// Bytes in place before this run of the transfer.
    done: u64,
    enabled: bool,
    /// `--limit-rate`, and the bytes moved since this run began.
    limit: Option<u64>,
    moved: u64,
    began: Instant,
}

impl Bar {
    pub fn new(quiet: bool, limit: Option<u64>) -> Bar {
        Bar {
            bar: None,
            done: 0,
            enabled: !quiet && std::io::stderr().is_terminal(),
            limit,
            moved: 0,
            began: Instant::now(),
        }
    }

    /// Removes the bar, before a summary line takes its place.
    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.clear();
    }
}

impl Meter for Bar {
    fn begin(&mut self, name: &str, done: u64) {
        self.clear();
        self.done = done;
        self.moved = 0;
        self.began = Instant::now();
        if !self.enabled {
            return;
        }
        let style = ProgressStyle::with_template(
            "{msg:.bold} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(name.to_string());
        bar.set_position(done);
        // Rate and ETA count from here, not from the bytes already in place.
        bar.reset_eta();
        self.bar = Some(bar);
    }
}

impl Progress for Bar {
    fn announce(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(self.done + bytes);
        }
    }

    fn cancelled(&self) -> bool {
        INTERRUPTED.load(Ordering::Relaxed)
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        if let Some(limit) = self.limit {
            // Sleep until the bytes moved so far are due at the limit.
            self.moved += bytes;
            let due = Duration::from_secs_f64(self.moved as f64 / limit as f64);
            if let Some(early) = due.checked_sub(self.began.elapsed()) {
                std::thread::sleep(early);
            }
        }
    }
}
