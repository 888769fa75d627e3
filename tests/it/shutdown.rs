//! Graceful shutdown on SIGINT/SIGTERM: 421 for idle sessions, a bounded
//! drain for transfers, atomic uploads, exit status 0.

use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

fn server_with_drain(secs: &str) -> TestServer {
    TestServer::builder()
        .args(["--drain-timeout", secs])
        .start()
}

/// An idle session gets exactly `421` and then EOF.
fn expect_421_then_eof(c: &mut Client, who: &str) {
    match c.read_reply_or_eof() {
        ReplyOrEof::Reply(421, _) => {}
        other => panic!("{who}: expected 421, got {other:?}"),
    }
    c.expect_eof();
}

#[test]
fn sigint_without_clients_exits_0_promptly() {
    let mut server = server_with_drain("10");
    let took = server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(3));
    assert!(took < Duration::from_secs(3));
}

#[test]
fn sigint_with_idle_sessions_sends_421_and_exits_0() {
    // A long drain: idle sessions must not make the server wait for it.
    let mut server = server_with_drain("10");
    let mut anon = server.connect();
    let mut alice = server.alice();
    alice.put("kept.txt", b"kept");
    let mut bob = server.bob();
    bob.noop();
    assert!(alice.get("kept.txt") == b"kept");
    // Half a command line is not a transfer.
    let mut typing = server.alice();
    typing.send_raw(b"LI");
    thread::sleep(Duration::from_millis(100));

    let start = Instant::now();
    server.signal(Signal::SIGINT);
    expect_421_then_eof(&mut anon, "unauthenticated session");
    expect_421_then_eof(&mut alice, "alice");
    expect_421_then_eof(&mut bob, "bob");
    expect_421_then_eof(&mut typing, "session with half a command line");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "idle sessions got 421 only after {:?}",
        start.elapsed()
    );
    server.expect_clean_exit(start, Duration::from_secs(3));
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("kept.txt")).unwrap(),
        b"kept"
    );
    server.assert_tmp_empty();
}

#[test]
fn upload_interrupted_by_sigint_leaves_old_file_after_drain_timeout() {
    let mut server = server_with_drain("2");
    let old = pseudo_random_bytes(1, 30_000);
    let mut setup = server.alice();
    setup.put("keep.txt", &old);
    drop(setup);

    // Overwrite in progress.
    let mut over = server.alice();
    over.start_put("keep.txt", 200_000);
    over.send_raw(&pseudo_random_bytes(2, 10_000));
    // New file in progress, nothing sent yet.
    let mut fresh = server.bob();
    fresh.start_put("new.txt", 200_000);
    // New file in progress, part sent.
    let mut fresh2 = server.alice();
    fresh2.start_put("new2.txt", 200_000);
    fresh2.send_raw(&pseudo_random_bytes(3, 150_000));
    // Idle session.
    let mut idle = server.alice();
    idle.noop();
    thread::sleep(Duration::from_millis(200));

    let start = Instant::now();
    server.signal(Signal::SIGINT);
    expect_421_then_eof(&mut idle, "idle session");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "idle session got 421 only after {:?} (drain is 2 s)",
        start.elapsed()
    );
    let took = server.expect_clean_exit(start, Duration::from_secs(6));
    assert!(
        took >= Duration::from_millis(1700),
        "exited after {took:?}: uploads in progress must get the drain period (2 s)"
    );
    expect_421_or_eof(&mut over, "overwrite");
    expect_421_or_eof(&mut fresh, "new file");
    expect_421_or_eof(&mut fresh2, "new file 2");

    assert_eq!(
        fs::read(server.user_dir(ALICE).join("keep.txt")).unwrap(),
        old
    );
    assert!(!server.user_dir(BOB).join("new.txt").exists());
    assert!(!server.user_dir(ALICE).join("new2.txt").exists());
    server.assert_tmp_empty();
}

#[test]
fn upload_completed_during_drain_gets_226_then_421() {
    let mut server = server_with_drain("4");
    let mut setup = server.alice();
    setup.put("other.txt", b"must survive");
    drop(setup);

    let data = pseudo_random_bytes(4, 50_000);
    let mut c = server.alice();
    c.start_put("done.bin", data.len());
    c.send_raw(&data[..20_000]);
    thread::sleep(Duration::from_millis(100));

    let start = Instant::now();
    server.signal(Signal::SIGINT);
    thread::sleep(Duration::from_millis(300));
    assert!(
        server.is_running(),
        "server exited with an upload in progress"
    );
    // The rest of the payload and, pipelined, a command that arrives after
    // shutdown began: it must not be executed.
    let mut rest = data[20_000..].to_vec();
    rest.extend_from_slice(b"DEL other.txt\n");
    c.send_raw(&rest);
    assert_eq!(c.read_reply(), (226, stored(&data)));
    expect_421_then_eof(&mut c, "uploader");
    server.expect_clean_exit(start, Duration::from_secs(7));

    assert_same_bytes(
        &fs::read(server.user_dir(ALICE).join("done.bin")).unwrap(),
        &data,
        "upload completed during drain",
    );
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("other.txt")).unwrap(),
        b"must survive",
        "a command sent after shutdown began was executed"
    );
    server.assert_tmp_empty();
}

#[test]
fn second_sigint_ends_drain_at_once() {
    let mut server = server_with_drain("30");
    let mut setup = server.alice();
    setup.put("prev", b"previous version");
    drop(setup);
    let mut up = server.alice();
    up.start_put("prev", 100_000);
    up.send_raw(&[1u8; 1000]);
    let mut up2 = server.alice();
    up2.start_put("never", 100_000);
    up2.send_raw(&[2u8; 1000]);
    thread::sleep(Duration::from_millis(100));

    server.signal(Signal::SIGINT);
    thread::sleep(Duration::from_millis(500));
    assert!(
        server.is_running(),
        "server did not wait for the uploads in progress"
    );
    let start = Instant::now();
    let took = server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(3));
    assert!(took < Duration::from_secs(3));
    assert!(start.elapsed() < Duration::from_secs(3));
    expect_421_or_eof(&mut up, "overwrite");
    expect_421_or_eof(&mut up2, "new file");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("prev")).unwrap(),
        b"previous version"
    );
    assert!(!server.user_dir(ALICE).join("never").exists());
    server.assert_tmp_empty();
}

#[test]
fn sigterm_behaves_like_sigint() {
    let mut server = server_with_drain("1");
    let mut setup = server.alice();
    setup.put("t.txt", b"old");
    drop(setup);
    let mut idle = server.bob();
    let mut up = server.alice();
    up.start_put("t.txt", 10_000);
    up.send_raw(&[9u8; 100]);
    thread::sleep(Duration::from_millis(100));

    let start = Instant::now();
    server.signal(Signal::SIGTERM);
    expect_421_then_eof(&mut idle, "idle session");
    server.expect_clean_exit(start, Duration::from_secs(5));
    expect_421_or_eof(&mut up, "uploader");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("t.txt")).unwrap(),
        b"old"
    );
    server.assert_tmp_empty();
}

#[test]
fn port_is_free_after_exit() {
    let mut server = server_with_drain("1");
    let addr = server.addr();
    let mut c = server.alice();
    c.put("x", b"x");
    server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(3));
    expect_421_then_eof(&mut c, "idle session");
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect_err("connect to a server that exited succeeded");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    TcpListener::bind(addr).expect("port still in use after exit");
}

#[test]
fn new_connections_are_not_accepted_during_drain() {
    let mut server = server_with_drain("3");
    let mut up = server.alice();
    up.start_put("slow", 10_000);
    up.send_raw(&[0u8; 10]);
    thread::sleep(Duration::from_millis(100));

    let start = Instant::now();
    server.signal(Signal::SIGINT);
    thread::sleep(Duration::from_millis(300));
    assert!(server.is_running());
    match Client::connect_raw(server.addr()) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut late) => {
            // The kernel may complete the handshake from a backlog, but the
            // server must never greet (serve) the connection.
            let got = late.read_to_eof();
            assert!(
                !got.starts_with(b"220"),
                "a connection made during the drain was greeted: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    server.expect_clean_exit(start, Duration::from_secs(7));
    expect_421_or_eof(&mut up, "uploader");
}

#[test]
fn download_is_cut_off_when_drain_ends() {
    let mut server = server_with_drain("1");
    // Far more than the socket buffers can hold.
    let data = pseudo_random_bytes(5, 48 * 1024 * 1024);
    server.plant_file(ALICE, "huge.bin", &data);

    let mut c = server.alice();
    c.send_line("GET huge.bin");
    assert_eq!(c.read_reply(), (150, data.len().to_string()));
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    server.expect_clean_exit(start, Duration::from_secs(5));
    // The client stalled through the whole drain: it must get fewer bytes
    // than announced, and what it got is a prefix of the file.
    let got = c.read_to_eof();
    assert!(
        got.len() < data.len(),
        "download was not cut off: got all {} bytes",
        got.len()
    );
    assert_same_bytes(&got, &data[..got.len()], "received prefix");
}

#[test]
fn download_completing_during_drain_delivers_all_bytes() {
    let mut server = server_with_drain("5");
    let data = pseudo_random_bytes(6, 16 * 1024 * 1024);
    server.plant_file(ALICE, "big.bin", &data);

    let mut c = server.alice();
    c.send_line("GET big.bin");
    assert_eq!(c.read_reply(), (150, data.len().to_string()));
    let head = c.read_exact_bytes(1000);
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    thread::sleep(Duration::from_millis(300));
    let mut got = head;
    got.extend_from_slice(&c.read_exact_bytes(data.len() - 1000));
    assert_same_bytes(&got, &data, "download during drain");
    expect_421_or_eof(&mut c, "downloader");
    server.expect_clean_exit(start, Duration::from_secs(8));
}

#[test]
fn stale_tmp_is_empty_after_shutdown_with_many_interrupted_uploads() {
    let mut server = server_with_drain("0.5");
    let mut clients = Vec::new();
    for i in 0..8 {
        let mut c = server.alice();
        c.start_put(&format!("u{i}"), 1_000_000);
        c.send_raw(&pseudo_random_bytes(i, 20_000 * (i as usize + 1)));
        clients.push(c);
    }
    thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    server.expect_clean_exit(start, Duration::from_secs(4));
    for (i, c) in clients.iter_mut().enumerate() {
        expect_421_or_eof(c, &format!("uploader {i}"));
    }
    server.assert_tmp_empty();
    assert!(dir_entries(&server.user_dir(ALICE)).is_empty());
}
