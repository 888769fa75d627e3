//! The library API as an embedder uses it: build a server from a config,
//! bind, read its address, run it on a thread of the embedder's, and stop
//! it with a shutdown handle.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use ferry::{Config, Server, Users};

fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

fn start(drain: Duration) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let mut users = Users::new();
    users.insert("alice", b"pw").unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        storage: dir.path().join("storage"),
        drain_timeout: drain,
        fsync: false,
        ..Config::default()
    };
    (dir, Server::bind(config, users).unwrap())
}

fn connect(server_addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(server_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!(read_line(&mut reader).starts_with("220 "));
    (stream, reader)
}

#[test]
fn embedded_server_serves_and_stops_with_its_handle() {
    let (dir, server) = start(Duration::from_secs(5));
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let handle = server.shutdown_handle();
    let running = thread::spawn(move || server.run());

    let (mut stream, mut reader) = connect(addr);
    stream.write_all(b"AUTH alice pw\nPUT 3 x\nabc").unwrap();
    assert_eq!(read_line(&mut reader), "230 logged in\r\n");
    assert_eq!(read_line(&mut reader), "150 3\r\n");
    assert_eq!(
        read_line(&mut reader),
        format!(
            "226 stored 3 sha256={}\r\n",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"abc"))
        )
    );
    assert_eq!(
        std::fs::read(dir.path().join("storage/alice/x")).unwrap(),
        b"abc"
    );

    // The handle is Send: stop the server from yet another thread.
    thread::spawn(move || handle.shutdown()).join().unwrap();
    assert_eq!(read_line(&mut reader), "421 server shutting down\r\n");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "connection closed after 421");
    running.join().unwrap().unwrap();
    std::net::TcpListener::bind(addr).expect("the port is free after run() returns");
}

#[test]
fn second_shutdown_request_ends_the_drain_at_once() {
    let (dir, server) = start(Duration::from_secs(60));
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let running = thread::spawn(move || server.run());

    let (mut stream, mut reader) = connect(addr);
    stream
        .write_all(b"AUTH alice pw\nPUT 10 slow\nabc")
        .unwrap();
    assert_eq!(read_line(&mut reader), "230 logged in\r\n");
    assert_eq!(read_line(&mut reader), "150 10\r\n");

    let started = Instant::now();
    handle.shutdown();
    thread::sleep(Duration::from_millis(100));
    assert!(!running.is_finished(), "the upload holds the drain open");
    handle.clone().shutdown();
    assert_eq!(read_line(&mut reader), "421 server shutting down\r\n");
    running.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let storage = dir.path().join("storage");
    assert!(!storage.join("alice/slow").exists(), "no partial file");
    let leftovers = std::fs::read_dir(storage.join(".ferry/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "the temporary file is removed");
}

#[test]
fn the_http_front_is_opt_in_and_shares_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut users = Users::new();
    users.insert("alice", b"pw").unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        storage: dir.path().join("storage"),
        fsync: false,
        ..Config::default()
    };
    let server = Server::bind(config, users).unwrap();
    let http = server.http_addr().expect("an HTTP listener was asked for");
    assert_ne!(http.port(), 0);
    assert_ne!(http, server.local_addr());
    let handle = server.shutdown_handle();
    let running = thread::spawn(move || server.run());

    let mut stream = TcpStream::connect(http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response}");

    handle.shutdown();
    running.join().unwrap().unwrap();

    let (_dir, without) = start(Duration::from_secs(1));
    assert_eq!(without.http_addr(), None, "no flag, no HTTP listener");
}
