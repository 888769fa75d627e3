//! Counters for `/metrics`, kept by the one reactor thread (plain `Cell`s,
//! no atomics) and written out in the Prometheus text format.

use std::cell::Cell;
use std::fmt::Write as _;

/// Which front a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Line,
    Http,
    /// The operator's control port.
    Control,
}

impl Protocol {
    const ALL: [Protocol; 3] = [Protocol::Line, Protocol::Http, Protocol::Control];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Line => "line",
            Protocol::Http => "http",
            Protocol::Control => "control",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Upload, Direction::Download];

    fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Reply and status codes are three digits; one counter per possible code
/// per protocol keeps counting allocation-free.
const CODES: usize = 600;

#[derive(Debug)]
pub struct Metrics {
    sessions_open: [Cell<u64>; 3],
    received: Cell<u64>,
    sent: Cell<u64>,
    started: [Cell<u64>; 2],
    completed: [Cell<u64>; 2],
    aborted: [Cell<u64>; 2],
    failed_logins: [Cell<u64>; 3],
    replies: [Box<[Cell<u64>]>; 3],
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let codes = || (0..CODES).map(|_| Cell::new(0)).collect::<Box<[_]>>();
        Metrics {
            sessions_open: Default::default(),
            received: Cell::new(0),
            sent: Cell::new(0),
            started: Default::default(),
            completed: Default::default(),
            aborted: Default::default(),
            failed_logins: Default::default(),
            replies: [codes(), codes(), codes()],
        }
    }

    pub fn session_opened(&self, protocol: Protocol) {
        add(&self.sessions_open[protocol.index()], 1);
    }

    pub fn session_closed(&self, protocol: Protocol) {
        let open = &self.sessions_open[protocol.index()];
        open.set(open.get().saturating_sub(1));
    }

    pub fn received(&self, bytes: usize) {
        add(&self.received, bytes as u64);
    }

    pub fn sent(&self, bytes: usize) {
        add(&self.sent, bytes as u64);
    }

    pub fn transfer_started(&self, direction: Direction) {
        add(&self.started[direction.index()], 1);
    }

    /// Transfers started and not yet completed or aborted.
    pub fn transfers_running(&self) -> u64 {
        Direction::ALL
            .into_iter()
            .map(|d| {
                let i = d.index();
                let ended = self.completed[i].get() + self.aborted[i].get();
                self.started[i].get().saturating_sub(ended)
            })
            .sum()
    }

    pub fn received_total(&self) -> u64 {
        self.received.get()
    }

    pub fn sent_total(&self) -> u64 {
        self.sent.get()
    }

    pub fn transfer_completed(&self, direction: Direction) {
        add(&self.completed[direction.index()], 1);
    }

    pub fn transfer_aborted(&self, direction: Direction) {
        add(&self.aborted[direction.index()], 1);
    }

    pub fn failed_login(&self, protocol: Protocol) {
        add(&self.failed_logins[protocol.index()], 1);
    }

    pub fn reply(&self, protocol: Protocol, code: u16) {
        if let Some(counter) = self.replies[protocol.index()].get(usize::from(code)) {
            add(counter, 1);
        }
    }

    pub fn open_sessions(&self, protocol: Protocol) -> u64 {
        self.sessions_open[protocol.index()].get()
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut text = String::new();
        header(
            &mut text,
            "ferry_sessions_open",
            "gauge",
            "Open client connections by protocol.",
        );
        for protocol in Protocol::ALL {
            let _ = writeln!(
                text,
                "ferry_sessions_open{{protocol=\"{}\"}} {}",
                protocol.as_str(),
                self.sessions_open[protocol.index()].get()
            );
        }
        header(
            &mut text,
            "ferry_transfers_running",
            "gauge",
            "Uploads and downloads in progress.",
        );
        let _ = writeln!(text, "ferry_transfers_running {}", self.transfers_running());
        header(
            &mut text,
            "ferry_received_bytes_total",
            "counter",
            "Bytes read from clients.",
        );
        let _ = writeln!(text, "ferry_received_bytes_total {}", self.received.get());
        header(
            &mut text,
            "ferry_sent_bytes_total",
            "counter",
            "Bytes written to clients.",
        );
        let _ = writeln!(text, "ferry_sent_bytes_total {}", self.sent.get());
        for (name, help, counters) in [
            (
                "ferry_transfers_completed_total",
                "Uploads stored and downloads sent in full.",
                &self.completed,
            ),
            (
                "ferry_transfers_aborted_total",
                "Uploads and downloads that did not complete.",
                &self.aborted,
            ),
        ] {
            header(&mut text, name, "counter", help);
            for direction in Direction::ALL {
                let _ = writeln!(
                    text,
                    "{name}{{direction=\"{}\"}} {}",
                    direction.as_str(),
                    counters[direction.index()].get()
                );
            }
        }
        header(
            &mut text,
            "ferry_failed_logins_total",
            "counter",
            "Failed logins by protocol.",
        );
        for protocol in Protocol::ALL {
            let _ = writeln!(
                text,
                "ferry_failed_logins_total{{protocol=\"{}\"}} {}",
                protocol.as_str(),
                self.failed_logins[protocol.index()].get()
            );
        }
        header(
            &mut text,
            "ferry_replies_total",
            "counter",
            "Line-protocol replies and HTTP responses by code.",
        );
        for protocol in Protocol::ALL {
            for (code, count) in self.replies[protocol.index()].iter().enumerate() {
                if count.get() > 0 {
                    let _ = writeln!(
                        text,
                        "ferry_replies_total{{protocol=\"{}\",code=\"{code}\"}} {}",
                        protocol.as_str(),
                        count.get()
                    );
                }
            }
        }
        text
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let metrics = Metrics::new();
        metrics.session_opened(Protocol::Http);
        metrics.received(10);
        metrics.sent(7);
        metrics.transfer_completed(Direction::Upload);
        metrics.transfer_aborted(Direction::Download);
        metrics.failed_login(Protocol::Line);
        metrics.reply(Protocol::Line, 226);
        metrics.reply(Protocol::Http, 404);
        metrics.reply(Protocol::Http, 999);
        let text = metrics.render();
        for line in [
            "ferry_sessions_open{protocol=\"http\"} 1",
            "ferry_sessions_open{protocol=\"line\"} 0",
            "ferry_received_bytes_total 10",
            "ferry_sent_bytes_total 7",
            "ferry_transfers_completed_total{direction=\"upload\"} 1",
            "ferry_transfers_aborted_total{direction=\"download\"} 1",
            "ferry_failed_logins_total{protocol=\"line\"} 1",
            "ferry_replies_total{protocol=\"line\",code=\"226\"} 1",
            "ferry_replies_total{protocol=\"http\",code=\"404\"} 1",
            "# TYPE ferry_sent_bytes_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        metrics.session_closed(Protocol::Http);
        metrics.session_closed(Protocol::Http);
        assert_eq!(metrics.open_sessions(Protocol::Http), 0);
    }
}
