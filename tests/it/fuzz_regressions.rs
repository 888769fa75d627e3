//! Regression tests for bugs the fuzz targets in `fuzz/` found (or that
//! came up while writing their invariants), each reduced to the smallest
//! input that shows it. See `fuzz/README.md`.

use std::fs;
use std::net::SocketAddr;

use ferry::Users;
use ferry::internal::protocol::line::{self, MAX_LINE, Parsed, Status};
use ferry::internal::session::line::Session;
use ferry::internal::session::{Front, Services};
use ferry::internal::storage::{Options, Storage};

struct Harness {
    root: tempfile::TempDir,
    services: Services,
}

impl Harness {
    fn new() -> Harness {
        let root = tempfile::tempdir().unwrap();
        let options = Options {
            fsync: false,
            ..Options::default()
        };
        let storage = Storage::open(root.path(), options).unwrap();
        let users = Users::parse(b"alice:pw\n").unwrap();
        Harness {
            services: Services::new(users, storage, 1 << 20),
            root,
        }
    }

    fn services(&self) -> &Services {
        &self.services
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
    let mut session = Session::new(peer(), services);
    session.receive(b"AUTH alice pw\nPUT 5 a\nhelloGET a\nPUT 1 f\n", services);
    assert!(session.read_limit() > 0);
    session.receive_eof(services);
    for _ in 0..100 {
        let pending = session.output().len();
        if pending == 0 {
            break;
        }
        session.output_written(pending, services);
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
    // The bound is on this process's memory, which other tests would share.
    if crate::common::in_a_process_of_its_own(
        "fuzz_regressions::partial_writes_do_not_let_sent_replies_pile_up",
    ) {
        return;
    }
    const SENT: usize = 32 << 20;
    let h = Harness::new();
    let services = h.services();
    let mut session = Session::new(peer(), services);
    let before = resident_bytes();
    // Empty lines: one byte in, `500 empty line\r\n` out.
    let lines = [b'\n'; MAX_LINE];
    let mut sent = 0;
    while sent < SENT {
        let n = session.read_limit().min(lines.len());
        if n > 0 {
            session.receive(&lines[..n], services);
        }
        // The socket takes all but the last byte.
        let taken = session.output().len().saturating_sub(1);
        assert!(taken > 0, "the session stopped answering");
        session.output_written(taken, services);
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

/// fuzz target `session` (input `QUIT\n`, then shutdown and the end of the
/// drain before the client read anything): a session that has already
/// said its last reply (`221`, `421`, the last failed login) and is only
/// flushing it is still handed `end_drain` by the reactor, which queues
/// `421 server shutting down` behind that last reply. protocol.md: nothing
/// follows `221` or `421`; the session is not in a transfer, so the end of
/// the drain has nothing to say to it.
#[test]
fn end_of_drain_adds_nothing_after_the_last_reply() {
    let h = Harness::new();
    let services = h.services();
    let mut session = Session::new(peer(), services);
    session.receive(b"QUIT\n", services);
    session.begin_shutdown(services);
    session.end_drain(services);
    let out = String::from_utf8_lossy(session.output()).into_owned();
    assert!(out.ends_with("\r\n221 bye\r\n"), "{out:?}");

    // The same after the 421 of the shutdown itself.
    let mut session = Session::new(peer(), services);
    session.begin_shutdown(services);
    session.end_drain(services);
    let out = String::from_utf8_lossy(session.output()).into_owned();
    assert_eq!(out.matches("421").count(), 1, "{out:?}");
}

/// fuzz target `session` (minimised: a `NOOP`-like line answered `500`,
/// then `PUT 10 f` with 3 bytes of payload, then the end of input, all
/// before the client read the replies): the end of input in the middle of
/// an upload discards every queued reply, also the replies to the complete
/// lines before the `PUT`. protocol.md, "NOOP and QUIT": the server still
/// answers the complete command lines it received before the client's end
/// of the stream and then closes. Dropping the upload is right; dropping
/// what is queued for the client is not (a reset connection is another
/// matter: `connection_lost`).
#[test]
fn end_of_input_mid_upload_still_sends_the_replies_before_it() {
    let h = Harness::new();
    let services = h.services();
    let mut session = Session::new(peer(), services);
    session.receive(b"AUTH alice pw\nNOOP\nPUT 10 f\nabc", services);
    session.receive_eof(services);
    let out = String::from_utf8_lossy(session.output()).into_owned();
    assert!(
        out.ends_with("\r\n230 logged in\r\n200 ok\r\n150 10\r\n"),
        "{out:?}"
    );
    let pending = session.output().len();
    session.output_written(pending, services);
    assert!(session.is_done());
    drop(session);
    assert_eq!(h.upload_files_left(), 0);
}

/// fuzz target `session`: a client that ends its stream right behind
/// `REST` + `PUT` that continue a partial, while the server still hashes
/// the bytes held. The `PUT` went unanswered (the session stopped hashing
/// and closed in silence), and when the whole payload had arrived behind
/// the `PUT` line the upload was dropped instead of completed.
/// `tests/resume.rs` checks the same over a socket, where the timing cannot
/// be forced.
#[test]
fn end_of_input_while_hashing_the_bytes_held_still_answers_the_put() {
    let h = Harness::new();
    let services = h.services();
    let held: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    let plant = || {
        let partials = h.root.path().join(".ferry/users/alice/partial");
        fs::create_dir_all(&partials).unwrap();
        fs::write(partials.join("f"), &held).unwrap();
    };
    let drive = |client: &[u8]| {
        let mut session = Session::new(peer(), services);
        session.receive(client, services);
        let early = String::from_utf8_lossy(session.output()).into_owned();
        assert!(session.has_work(), "hashing the bytes held: {early:?}");
        session.receive_eof(services);
        while session.has_work() {
            session.work(services);
        }
        let out = String::from_utf8_lossy(session.output()).into_owned();
        let pending = session.output().len();
        session.output_written(pending, services);
        assert!(session.is_done(), "{out:?}");
        out
    };

    plant();
    let out = drive(b"AUTH alice pw\nREST 600000\nPUT 1000000 f\n");
    assert!(
        out.ends_with("\r\n230 logged in\r\n350 restarting at 600000\r\n150 400000\r\n"),
        "{out:?}"
    );
    let kept = fs::read(h.root.path().join(".ferry/users/alice/partial/f")).unwrap();
    assert!(
        kept == held[..600_000],
        "the partial holds the bytes up to the offset"
    );

    plant();
    let out = drive(b"AUTH alice pw\nREST 600000\nPUT 600003 f\nxyz");
    let mut whole = held[..600_000].to_vec();
    whole.extend_from_slice(b"xyz");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&whole));
    let want = format!("\r\n150 3\r\n226 stored 600003 sha256={digest}\r\n");
    assert!(out.ends_with(&want), "{out:?}");
    assert!(fs::read(h.root.path().join("alice/f")).unwrap() == whole);
    assert_eq!(h.upload_files_left(), 0);
}

/// `client_replies`: the client took any text after `<size> <mtime> ` in a
/// listing as a name, so a hostile server could put a CR or terminal
/// escapes in front of whoever runs `ferry ls`. Entries must now be names
/// the protocol allows.
#[test]
fn the_client_refuses_listing_names_the_protocol_does_not_allow() {
    use ferry::client::{Connection, ErrorKind};
    use std::io::{Cursor, Read, Write};

    struct Wire(Cursor<Vec<u8>>);
    impl Read for Wire {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for Wire {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    for data in [&b"0 0 \r"[..], b"1 2 \x1b[2J\n", b"1 2 ..\n", b"1 2 ok"] {
        let mut server = b"220 ferry ready\r\n".to_vec();
        server.extend_from_slice(format!("150 {}\r\n", data.len()).as_bytes());
        server.extend_from_slice(data);
        let mut conn = Connection::on(Wire(Cursor::new(server))).unwrap();
        let err = conn.list().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Network, "{data:?}: {err}");
    }
}

/// fuzz target `session`: a `LIST` taken while earlier replies were still
/// unsent waits to send its first block until they are out. A shutdown
/// that began meanwhile let it go on, so its first reply came after the
/// shutdown, as if a new command had run. A listing that has sent nothing
/// is no transfer to finish: it is answered `421` like any command not
/// yet answered.
#[test]
fn a_listing_that_sent_nothing_yet_is_answered_421_at_shutdown() {
    let h = Harness::new();
    let services = h.services();
    let mut session = Session::new(peer(), services);
    session.receive(b"AUTH alice pw\nNOOP\nLIST\n", services);
    for _ in 0..10 {
        if !session.has_work() {
            break;
        }
        session.work(services);
    }
    // The greeting, 230 and 200 are still unsent; the listing waits.
    let before = String::from_utf8_lossy(session.output()).into_owned();
    assert!(before.ends_with("200 ok\r\n"), "{before:?}");
    session.begin_shutdown(services);
    while session.has_work() {
        session.work(services);
    }
    let after = String::from_utf8_lossy(session.output()).into_owned();
    let pending = session.output().len();
    session.output_written(pending, services);
    while session.has_work() {
        session.work(services);
    }
    let rest = String::from_utf8_lossy(session.output()).into_owned();
    assert_eq!(
        format!("{after}{rest}").strip_prefix(&before),
        Some("421 server shutting down\r\n"),
        "after the shutdown: {after:?} then {rest:?}"
    );
    assert!(session.is_done());
}

/// fuzz target `session`: `HELP` answers a block of text, not one line, so
/// the pending output outside a transfer may pass the backlog by that
/// block. It may never pass it by more, however many `HELP`s a client that
/// reads nothing pipelines.
#[test]
fn pipelined_help_never_grows_the_output_past_the_backlog_and_one_text() {
    use ferry::internal::protocol::line::HELP_TEXT;
    use ferry::internal::session::line::REPLY_BACKLOG;
    let h = Harness::new();
    let services = h.services();
    let mut session = Session::new(peer(), services);
    for _ in 0..100 {
        let n = session.read_limit().min(5);
        if n == 0 {
            break;
        }
        session.receive(&b"HELP\n"[..n], services);
        assert!(
            session.output().len() <= REPLY_BACKLOG + 16 + HELP_TEXT.len(),
            "{} bytes pending",
            session.output().len()
        );
    }
    assert!(session.output().len() > REPLY_BACKLOG, "the backlog filled");
}
