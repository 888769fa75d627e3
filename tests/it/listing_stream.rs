//! Listings of a large directory are streamed (issue 14, item 11): memory
//! per listing stays small whatever the directory's size, a listing reads
//! the directory in steps that leave the other sessions their turn, and a
//! listing read to its end has every file exactly once, over the line
//! protocol and HTTP. Also HTTP/1.0 with `Transfer-Encoding` (item 15).
//!
//! Against the real `ferryd` over loopback; every wait is bounded.

use std::collections::HashSet;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Files planted in the big directory, and the length of their names: the
/// sizes of the report.
const FILES: usize = 100_000;
const NAME_LEN: usize = 200;

fn big_name(i: usize) -> String {
    let head = format!("{i:06}-");
    format!("{head}{}", "n".repeat(NAME_LEN - head.len()))
}

/// Puts `FILES` empty files with long names into alice's directory, and a
/// few entries a listing must leave out. Returns the listing's size in
/// bytes (the line protocol's lines).
fn plant_big_directory(server: &TestServer) -> usize {
    drop(server.alice());
    let dir = server.user_dir(ALICE);
    plant_empty_files(&dir, (0..FILES).map(big_name));
    // "0 <mtime> <name>\n" each, the mtime ten digits.
    let bytes = FILES * (2 + 11 + NAME_LEN + 1);
    // (A folder is listed since folders came: `0 <mtime> name/`.)
    std::os::unix::fs::symlink(big_name(0), dir.join("a link")).unwrap();
    fs::write(dir.join("bad\u{1}name"), b"x").unwrap();
    bytes
}

/// The server's resident memory, in bytes.
fn rss(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Every planted file exactly once in `names`, and nothing else.
fn assert_every_file_once(names: impl IntoIterator<Item = String>, what: &str) {
    let mut seen = HashSet::with_capacity(FILES);
    let mut count = 0;
    for name in names {
        assert!(seen.insert(name.clone()), "{what}: {name:?} listed twice");
        count += 1;
    }
    assert_eq!(count, FILES, "{what}: entries");
    for i in 0..FILES {
        assert!(
            seen.contains(&big_name(i)),
            "{what}: {} missing",
            big_name(i)
        );
    }
}

/// Names in a JSON listing.
fn json_names(body: &[u8]) -> Vec<String> {
    assert!(body.ends_with(b"]\n"), "a JSON array and a newline");
    let items: Vec<serde_json::Value> = serde_json::from_slice(body).expect("a JSON array");
    items
        .iter()
        .map(|item| {
            item["name"]
                .as_str()
                .unwrap_or_else(|| panic!("no name in {item}"))
                .to_string()
        })
        .collect()
}

#[test]
fn listings_of_a_huge_directory_stream_in_bounded_memory_without_stalling_others() {
    let (server, http) = http_server();
    let listing_bytes = plant_big_directory(&server);

    // (c) Read to the end, a listing has every file exactly once: over the
    // line protocol (in blocks of whole lines, `150 0` last), as JSON
    // (chunked, HTTP/1.1) and as text (ends with the connection, HTTP/1.0).
    let mut alice = server.alice();
    let data = alice.list_raw();
    assert_eq!(data.len(), listing_bytes, "LIST bytes");
    let names = parse_listing(&data)
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap());
    assert_every_file_once(names, "LIST");
    alice.noop();

    let auth = alice_auth();
    let mut c = Conn::open(http);
    c.send(&request(
        "GET",
        "/files/",
        &[&auth, "Connection: close"],
        b"",
    ));
    // Chunked, and nothing after the last chunk.
    let response = c.response();
    c.expect_eof();
    response.assert_status(200, "JSON listing");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.header("content-length"), None);
    assert_every_file_once(json_names(&response.body), "JSON listing");

    let mut c = Conn::open(http);
    c.send(
        format!("GET /files/?format=text HTTP/1.0\r\n{auth}\r\nConnection: keep-alive\r\n\r\n")
            .as_bytes(),
    );
    // Neither length nor chunks: the body ends with the connection.
    let response = c.response();
    response.assert_status(200, "HTTP/1.0 text listing");
    assert!(response.says_close(), "{:?}", response.headers);
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.body.len(), listing_bytes, "HTTP/1.0 text body");
    let names = parse_listing(&response.body)
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap());
    assert_every_file_once(names, "HTTP/1.0 text listing");

    // (b) While five listings are read, another user's NOOP is answered
    // promptly. Before, each LIST read and sorted the whole directory in
    // one go: one took hundreds of milliseconds of the only thread.
    // From here on the test measures.
    let _measuring = timing_sensitive();
    let server_addr = server.addr();
    let readers: Vec<_> = (0..5)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(server_addr);
                c.set_read_timeout(Duration::from_secs(60));
                c.login(ALICE, ALICE_PW);
                c.list_raw().len()
            })
        })
        .collect();
    let mut bob = server.bob();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    let started = Instant::now();
    while readers.iter().any(|r| !r.is_finished()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "listings too slow"
        );
        let t = Instant::now();
        bob.noop();
        worst = worst.max(t.elapsed());
        probes += 1;
        thread::sleep(Duration::from_millis(5));
    }
    for reader in readers {
        assert_eq!(reader.join().unwrap(), listing_bytes);
    }
    eprintln!(
        "5 listings read in {:?}; worst NOOP {worst:?} of {probes}",
        started.elapsed()
    );
    assert!(probes >= 10, "only {probes} NOOPs while the listings ran");
    assert!(
        worst < Duration::from_millis(250),
        "a NOOP took {worst:?} while listings ran ({probes} probes)"
    );

    // (a) Forty clients ask for the listing (30 LIST, 10 JSON) and read
    // nothing more than the start: the server's memory grows by a small
    // fraction of what holding every listing would take.
    let before = rss(server.pid());
    let mut line_clients = Vec::new();
    for _ in 0..30 {
        let mut c = server.alice();
        c.set_read_timeout(Duration::from_secs(60));
        c.send_line("LIST");
        line_clients.push(c);
    }
    let mut http_clients = Vec::new();
    for _ in 0..10 {
        let mut c = Conn::open(http);
        c.send(&request("GET", "/files/", &[&auth], b""));
        c.stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        http_clients.push(c);
    }
    // Every listing has started (the old server first built it whole),
    // then the server fills what the sockets take.
    let mut byte = [0u8; 1];
    for c in &line_clients {
        assert_eq!(peek_retrying(c.stream(), &mut byte).unwrap(), 1);
    }
    for c in &http_clients {
        assert_eq!(peek_retrying(&c.stream, &mut byte).unwrap(), 1);
    }
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        peak = peak.max(rss(server.pid()));
        thread::sleep(Duration::from_millis(50));
    }
    let grown = peak.saturating_sub(before);
    eprintln!("RSS {} -> peak {} KiB", before >> 10, peak >> 10);
    // Holding every listing takes 40 times 21 MiB; a streamed one holds a
    // block and a directory buffer, tens of KiB: 256 KiB each leaves room
    // for the allocator's slack.
    let held_all = (40 * listing_bytes) as u64;
    let bound = (40 * 256 * 1024).min(held_all / 20);
    assert!(
        grown < bound,
        "RSS grew by {} KiB for 40 stalled listings ({} MiB of listings)",
        grown >> 10,
        held_all >> 20
    );
    // The server still answers others.
    bob.noop();
    drop(line_clients);
    drop(http_clients);
    bob.noop();
}

/// RFC 9112 §6.1: an HTTP/1.0 request with `Transfer-Encoding` is answered
/// and the connection then closed, even when it asks for keep-alive; a
/// request pipelined behind it is not answered.
#[test]
fn http_1_0_with_transfer_encoding_is_answered_then_closed() {
    let (server, http) = http_server();
    drop(server.alice());
    let auth = alice_auth();
    let raw = format!(
        "PUT /files/te.txt HTTP/1.0\r\n{auth}\r\nConnection: keep-alive\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
         GET /files/te.txt HTTP/1.0\r\n{auth}\r\nConnection: keep-alive\r\n\r\n"
    );
    let mut c = Conn::open(http);
    c.send(raw.as_bytes());
    let response = c.response();
    response.assert_status(201, "PUT over HTTP/1.0 with Transfer-Encoding");
    assert!(response.says_close(), "{:?}", response.headers);
    // One response: the pipelined GET is not answered.
    c.expect_eof();
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("te.txt")).unwrap(),
        b"hello"
    );

    // HTTP/1.1 with the same framing keeps the connection.
    let raw = format!(
        "PUT /files/te.txt HTTP/1.1\r\nHost: x\r\n{auth}\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
         GET /files/te.txt HTTP/1.1\r\nHost: x\r\n{auth}\r\nConnection: close\r\n\r\n"
    );
    let mut c = Conn::open(http);
    c.send(raw.as_bytes());
    // Two responses, the second the new content.
    c.response();
    let got = c.response();
    got.assert_status(200, "GET after the chunked PUT");
    assert_eq!(got.body, b"hi");
    c.expect_eof();
}

/// The line protocol's blocks: each at most a few KiB more than 16 KiB,
/// of whole lines, the last `150 0`; commands pipelined behind the `LIST`
/// are answered after it.
#[test]
fn list_comes_in_blocks_of_whole_lines_and_pipelined_commands_follow() {
    let server = TestServer::start();
    drop(server.alice());
    let dir = server.user_dir(ALICE);
    for i in 0..2_000 {
        fs::write(dir.join(format!("file {i:04}")), b"data").unwrap();
    }
    let mut c = server.alice();
    c.send_raw(b"LIST\nNOOP\n");
    let mut names = HashSet::new();
    let mut blocks = 0;
    loop {
        let (code, text) = c.read_reply();
        assert_eq!(code, 150, "{text}");
        let n: usize = text.parse().unwrap();
        if n == 0 {
            break;
        }
        blocks += 1;
        assert!(n <= 16 * 1024 + 300, "a block of {n} bytes");
        let block = c.read_exact_bytes(n);
        assert!(block.ends_with(b"\n"));
        for entry in parse_listing(&block) {
            assert_eq!(entry.size, 4);
            assert!(names.insert(entry.name), "listed twice");
        }
    }
    assert_eq!(names.len(), 2_000);
    assert!(blocks > 1, "one block for {} bytes", 2_000 * 25);
    assert_eq!(c.read_code(), 200, "the NOOP behind the LIST");
}
