//! Regression tests for bugs the fuzz targets in `fuzz/` found (or that
//! came up while writing their invariants), each reduced to the smallest
//! input that shows it. See `fuzz/README.md`.

use std::fs;
use std::net::SocketAddr;

use ferry::Users;
use ferry::connection::{Services, Session};
use ferry::protocol::line::{self, MAX_LINE, Parsed, Status};
use ferry::storage::Storage;

struct Harness {
    root: tempfile::TempDir,
    users: Users,
    storage: Storage,
}

impl Harness {
    fn new() -> Harness {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::open(root.path(), false).unwrap();
        let users = Users::parse(b"alice:pw\n").unwrap();
        Harness {
            root,
            users,
            storage,
        }
    }

    fn services(&self) -> Services<'_> {
        Services {
            users: &self.users,
            storage: &self.storage,
            max_file_size: 1 << 20,
        }
    }

    fn upload_files_left(&self) -> usize {
        fs::read_dir(self.root.path().join(".ferry").join("tmp"))
            .unwrap()
            .count()
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

/// fuzz target `line_command`: an `AUTH` line of exactly `MAX_LINE` bytes
/// ending in a bare LF is accepted, but `write_to` formats it with CRLF,
/// one byte over the limit, so it parses back as `LineTooLong` instead of
/// the same command.
#[test]
fn a_command_at_the_line_limit_round_trips_through_write_to() {
    let mut text = b"AUTH a ".to_vec();
    text.resize(MAX_LINE - 1, b'x');
    text.push(b'\n');
    let Status::Complete(parsed) = line::parse(&text) else {
        panic!("a full line is decided");
    };
    let command = parsed
        .command
        .expect("a line of MAX_LINE bytes is accepted");

    let mut written = Vec::new();
    command.write_to(&mut written);
    assert_eq!(
        line::parse(&written),
        Status::Complete(Parsed {
            command: Ok(command.clone()),
            consumed: written.len(),
        }),
        "write_to gave {} bytes",
        written.len()
    );
}

/// fuzz target `session`: the client pipelines a download and an upload
/// whose payload it never sends, then closes its side while the download
/// is still being sent. Once the download is out, the `PUT` starts an upload
/// that can never complete, and since the end of input was already seen
/// the session neither reads, writes nor finishes: the connection and its
/// temporary upload file stay until the server shuts down.
#[test]
fn end_of_input_before_a_pipelined_put_still_ends_the_session() {
    let h = Harness::new();
    let services = h.services();
    let mut session = Session::new(peer());
    session.receive(b"AUTH alice pw\nPUT 5 a\nhelloGET a\nPUT 1 f\n", &services);
    assert!(session.read_limit() > 0);
    session.receive_eof(&services);
    for _ in 0..100 {
        let pending = session.output().len();
        if pending == 0 {
            break;
        }
        session.output_written(pending, &services);
    }
    assert!(
        session.is_done(),
        "after the end of input and all output sent, the session must finish"
    );
    drop(session);
    assert_eq!(h.upload_files_left(), 0);
}

/// Found while deriving the output bound for the `session` target. The
/// unsent replies stay under `REPLY_BACKLOG`, but the reply buffer keeps
/// the bytes already sent until a write empties it completely. A client that
/// keeps pipelining commands while the socket takes all but the last few
/// bytes of each write makes the buffer grow by everything ever sent.
#[test]
fn partial_writes_do_not_let_sent_replies_pile_up() {
    const SENT: usize = 32 << 20;
    let h = Harness::new();
    let services = h.services();
    let mut session = Session::new(peer());
    let before = resident_bytes();
    // Empty lines: one byte in, `500 empty line\r\n` out.
    let lines = [b'\n'; MAX_LINE];
    let mut sent = 0;
    while sent < SENT {
        let n = session.read_limit().min(lines.len());
        if n > 0 {
            session.receive(&lines[..n], &services);
        }
        // The socket takes all but the last byte.
        let taken = session.output().len().saturating_sub(1);
        assert!(taken > 0, "the session stopped answering");
        session.output_written(taken, &services);
        sent += taken;
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < SENT / 4,
        "memory grew by {} KiB while {} KiB of replies were sent",
        grown >> 10,
        SENT >> 10
    );
}

/// The resident set of this process, from `/proc/self/status`.
fn resident_bytes() -> usize {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib << 10
}
