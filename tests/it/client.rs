//! The client library (`ferry::client`) against a real `ferryd`: what the
//! `ferry` tool and embedders build on.

use std::fs;

use crate::common::*;
use ferry::client::transfer::{self, Meter, Silent};
use ferry::client::{Connection, ErrorKind, Progress, Timeouts};

fn connect(server: &TestServer) -> Connection {
    let mut conn = Connection::connect(server.addr(), Timeouts::default()).unwrap();
    conn.login(ALICE, ALICE_PW).unwrap();
    conn
}

/// Counts what a transfer reports.
#[derive(Default)]
struct Count {
    begun_at: Vec<u64>,
    announced: u64,
    moved: u64,
}

impl Progress for Count {
    fn announce(&mut self, bytes: u64) {
        self.announced += bytes;
    }

    fn advance(&mut self, bytes: u64) {
        self.moved += bytes;
    }
}

impl Meter for Count {
    fn begin(&mut self, _name: &str, done: u64) {
        self.begun_at.push(done);
    }
}

#[test]
fn transfers_report_progress_and_verify() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(9, 700_001);
    let local = dir.path().join("up");
    fs::write(&local, &data).unwrap();
    let mut conn = connect(&server);

    let mut count = Count::default();
    let report = transfer::upload(&mut conn, &local, "f", true, &mut count).unwrap();
    assert_eq!(report.sha256.to_string(), sha256_hex(&data));
    assert_eq!((report.size, report.resumed_from), (700_001, 0));
    assert_eq!(
        (count.begun_at, count.announced, count.moved),
        (vec![0], 700_001, 700_001)
    );

    let target = dir.path().join("down");
    let mut count = Count::default();
    let report =
        transfer::download(&mut conn, "f", &target, true, &mut |_| false, &mut count).unwrap();
    assert_eq!(report.sha256.to_string(), sha256_hex(&data));
    assert_eq!(fs::read(&target).unwrap(), data);
    assert_eq!(count.moved, 700_001);
    assert!(!transfer::part_path(&target).exists());

    // The same connection goes on: it is still in step.
    assert_eq!(conn.list().unwrap().len(), 1);
    conn.quit().unwrap();
}

#[test]
fn an_upload_continues_the_servers_partial() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(10, 300_000);
    let local = dir.path().join("f");
    fs::write(&local, &data).unwrap();
    let mut raw = server.alice();
    raw.start_put("f", data.len());
    raw.send_raw(&data[..123_456]);
    drop(raw);

    let mut conn = connect(&server);
    assert!(wait_until(IO_TIMEOUT, || conn.partial("f").unwrap() == 123_456));
    let mut count = Count::default();
    let report = transfer::upload(&mut conn, &local, "f", true, &mut count).unwrap();
    assert_eq!(report.resumed_from, 123_456);
    assert_eq!(count.moved, 300_000 - 123_456);
    assert_eq!(fs::read(server.user_dir(ALICE).join("f")).unwrap(), data);
    assert_eq!(conn.partial("f").unwrap(), 0);
}

#[test]
fn failures_come_sorted_by_kind_and_leave_the_session_usable() {
    let server = TestServer::start();
    let mut conn = connect(&server);

    let missing = conn.hash("nope").unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Remote);
    assert_eq!(
        missing.to_string(),
        "nope: server said \"550 no such file\""
    );
    // A name that would end the line early never reaches the wire.
    let smuggled = conn.delete("x\nQUIT").unwrap_err();
    assert_eq!(smuggled.kind(), ErrorKind::Usage);
    conn.noop().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let err = transfer::upload(
        &mut conn,
        &dir.path().join("absent"),
        "a",
        true,
        &mut Silent,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Local);
    conn.noop().unwrap();

    let mut other = Connection::connect(server.addr(), Timeouts::default()).unwrap();
    let refused = other.login(ALICE, "wrong").unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Auth);
    assert!(!refused.is_retryable());
}

#[test]
fn a_server_shutting_down_is_a_retryable_network_failure() {
    let mut server = TestServer::start();
    let mut conn = connect(&server);
    server.signal(nix::sys::signal::Signal::SIGINT);
    assert!(server.wait_exit(IO_TIMEOUT).is_some());
    let err = conn.noop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.is_retryable());
}
