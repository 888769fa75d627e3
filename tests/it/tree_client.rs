//! `ferry put -r` and `ferry get -r` (issue 17): trees pipelined over one
//! connection, each file verified, a dropped connection resumed from the
//! file in flight. The real `ferry` binary against a real `ferryd`, with a
//! loopback relay between them where the test needs to see or break the
//! conversation.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// A run of `ferry` may take this long at most.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the relay holds a reply back waiting for the client's next
/// command before it gives up and lets the reply through (and notes that
/// the client did not pipeline). Only a client that waits for each reply
/// ever meets it.
const HOLD: Duration = Duration::from_secs(2);

/// `ferry --quiet --json` as alice against `addr`, in `work`.
fn ferry(addr: SocketAddr, work: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    for var in ["FERRY_SERVER", "FERRY_USER", "FERRY_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", work)
        .env("FERRY_PASSWORD", ALICE_PW)
        .current_dir(work)
        .args(["--server", &addr.to_string(), "--user", ALICE])
        .args(["--quiet", "--json"]);
    cmd
}

/// Runs `cmd`, which must succeed; its JSON lines.
#[track_caller]
fn ferry_ok(cmd: &mut Command) -> (Vec<Value>, String) {
    let out = run_command_to_exit(cmd, RUN_TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "ferry failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let lines = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    (lines, out.stderr)
}

/// Every file under `dir`, by path relative to it, with its SHA-256.
fn digests(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_owned();
                let data = fs::read(entry.path()).unwrap();
                files.insert(rel.to_string_lossy().into_owned(), sha256_hex(&data));
            }
        }
    }
    files
}

/// The transfer line of `--json` output for the remote path `remote`.
fn report<'a>(lines: &'a [Value], remote: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["remote"] == remote)
        .unwrap_or_else(|| panic!("no line for {remote} in {lines:?}"))
}

/// Every line is a verified transfer, in the shape single `put`/`get` give.
#[track_caller]
fn all_verified(lines: &[Value], op: &str, count: usize) {
    assert_eq!(lines.len(), count, "{lines:?}");
    for line in lines {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "local",
                "ok",
                "op",
                "remote",
                "resumed_from",
                "seconds",
                "sha256",
                "size"
            ],
            "{line}"
        );
        assert!(line["op"] == op && line["ok"] == true, "{line}");
    }
}

#[test]
fn put_r_then_get_r_of_1000_small_files_and_some_large_ones_is_identical() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("up").join("album");
    let mut rng = Rng::new(1017);
    write_photo_tree(&tree, &mut rng, 2000);
    // A few larger ones at each level, and an empty one.
    let large = [
        ("big.bin", 3 << 20),
        ("year 4/medium.bin", (1 << 20) + 7),
        ("year 7/month 2/video.bin", 2 << 20),
        ("year 7/empty", 0),
    ];
    for (name, len) in large {
        fs::write(tree.join(name), rng.bytes(len)).unwrap();
    }
    let count = 1000 + large.len();
    let started = Instant::now();
    let (put, _) = ferry_ok(ferry(server.addr(), work).args(["put", "-r"]).arg(&tree));
    all_verified(&put, "put", count);
    let sent = digests(&tree);
    assert_eq!(sent.len(), count);
    assert_eq!(
        digests(&server.user_dir(ALICE).join("album")),
        sent,
        "what the server stored"
    );
    for (name, len) in large {
        let line = report(&put, &format!("album/{name}"));
        assert_eq!(line["size"], len as u64);
        assert_eq!(line["sha256"], sent[name].as_str());
    }

    fs::create_dir(work.join("down")).unwrap();
    let (got, _) = ferry_ok(ferry(server.addr(), work).args(["get", "-r", "album", "-d", "down"]));
    all_verified(&got, "get", count);
    assert_eq!(digests(&work.join("down/album")), sent, "what came back");
    assert!(
        got.iter().all(|l| l["resumed_from"] == 0),
        "nothing was there to resume"
    );
    // Both ways in a few seconds (debug build; one round trip or more per
    // file, as before, would show here on a slow machine only).
    eprintln!(
        "put -r and get -r of {count} files: {:?}",
        started.elapsed()
    );

    // Again into the same folder: each file is there with the server's
    // content, so none is fetched again.
    let (again, _) =
        ferry_ok(ferry(server.addr(), work).args(["get", "-r", "album", "-d", "down"]));
    all_verified(&again, "get", count);
    assert!(
        again.iter().all(|l| l["resumed_from"] == l["size"]),
        "a file already in place is kept"
    );
    assert_eq!(digests(&work.join("down/album")), sent);
}

/// Issue 17: `put -r` and `get -r` waited for each file's reply before
/// they asked for the next, a round trip per file. The relay holds each
/// file's reply back until the client has sent its command for the next
/// file: a pipelining client never waits; one that waits for each reply
/// is let through only by the relay's timeout, which counts it.
#[test]
fn put_r_and_get_r_send_the_next_file_before_the_reply_to_the_last() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("pipe");
    fs::create_dir_all(tree.join("sub")).unwrap();
    const FILES: usize = 6;
    for i in 0..FILES {
        let dir = if i % 2 == 0 {
            tree.clone()
        } else {
            tree.join("sub")
        };
        fs::write(
            dir.join(format!("f{i}")),
            format!("file {i} ").repeat(i * 1000),
        )
        .unwrap();
    }

    let relay = Relay::start(server.addr(), Watch::Stored(FILES), None);
    let (put, _) = ferry_ok(ferry(relay.addr, work).args(["put", "-r"]).arg(&tree));
    all_verified(&put, "put", FILES);
    assert_eq!(relay.watched(), FILES, "the relay saw every 226");
    assert_eq!(
        relay.late(),
        0,
        "put -r waited for a 226 before it sent the next PUT"
    );

    let relay = Relay::start(server.addr(), Watch::Got(FILES), None);
    fs::create_dir(work.join("down")).unwrap();
    let (got, _) = ferry_ok(ferry(relay.addr, work).args(["get", "-r", "pipe", "-d", "down"]));
    all_verified(&got, "get", FILES);
    assert_eq!(relay.watched(), FILES, "the relay saw every GET answered");
    assert_eq!(
        relay.late(),
        0,
        "get -r waited for a file's data before it asked for the next"
    );
    assert_eq!(digests(&work.join("down/pipe")), digests(&tree));
}

/// A file the server refuses, or a local file in the way, is that file's
/// failure, with its JSON line and exit status; the files around it still
/// go, on the same connection.
#[test]
fn a_failure_of_one_file_is_reported_and_the_others_go_on() {
    let server = TestServer::builder()
        .args(["--max-file-size", "10000"])
        .start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("t");
    fs::create_dir_all(tree.join("sub")).unwrap();
    for (name, len) in [("a", 10), ("b", 20_000), ("c", 30), ("sub/d", 40)] {
        fs::write(tree.join(name), vec![b'x'; len]).unwrap();
    }
    let out = run_command_to_exit(
        ferry(server.addr(), work).args(["put", "-r"]).arg(&tree),
        RUN_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(
        out.stderr.contains("t/b: server said \"552 file too large"),
        "{}",
        out.stderr
    );
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let failed: Vec<&Value> = lines.iter().filter(|l| l["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["exit_code"], 4);
    assert!(
        failed[0]["name"].as_str().unwrap().ends_with("t/b"),
        "{lines:?}"
    );
    fs::remove_file(tree.join("b")).unwrap();
    assert_eq!(digests(&server.user_dir(ALICE).join("t")), digests(&tree));

    // Down: a local file of other content is not replaced (no --force,
    // no terminal to ask on); the others arrive.
    fs::create_dir_all(work.join("down/t")).unwrap();
    fs::write(work.join("down/t/c"), b"mine").unwrap();
    let out = run_command_to_exit(
        ferry(server.addr(), work).args(["get", "-r", "t", "-d", "down"]),
        RUN_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["ok"] == false && l["name"] == "t/c" && l["exit_code"] == 1),
        "{lines:?}"
    );
    assert_eq!(fs::read(work.join("down/t/c")).unwrap(), b"mine");
    assert_eq!(fs::read(work.join("down/t/a")).unwrap(), vec![b'x'; 10]);
    assert_eq!(fs::read(work.join("down/t/sub/d")).unwrap(), vec![b'x'; 40]);
}

/// A tree with a large file among small ones, before and after it.
fn tree_with_a_large_file(dir: &Path, seed: u64) -> BTreeMap<String, String> {
    let mut rng = Rng::new(seed);
    for sub in ["a", "b", "c"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
        for i in 0..20 {
            let len = rng.range(0, 3000) as usize;
            fs::write(dir.join(sub).join(format!("{i}.txt")), rng.bytes(len)).unwrap();
        }
    }
    fs::write(dir.join("b/large.bin"), rng.bytes(4 << 20)).unwrap();
    digests(dir)
}

#[test]
fn a_get_r_cut_in_a_large_file_reconnects_and_resumes_it() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("t");
    let want = tree_with_a_large_file(&tree, 3);
    ferry_ok(ferry(server.addr(), work).args(["put", "-r"]).arg(&tree));

    // The first connection breaks 2 MiB into what the server sends: in
    // the large file, with small files pipelined behind it.
    let relay = Relay::start(server.addr(), Watch::Nothing, Some(Cut::Down(2 << 20)));
    fs::create_dir(work.join("down")).unwrap();
    let (got, stderr) =
        ferry_ok(ferry(relay.addr, work).args(["get", "-r", "t", "-d", "down", "--retries", "3"]));
    assert!(stderr.contains("reconnecting (retry 1 of 3)"), "{stderr}");
    assert_eq!(relay.connections(), 2);
    all_verified(&got, "get", want.len());
    let large = report(&got, "t/b/large.bin");
    let resumed = large["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0 && resumed < 4 << 20, "{large}\n{stderr}");
    assert_eq!(digests(&work.join("down/t")), want);
    let parts: Vec<_> = digests(&work.join("down/t"))
        .into_keys()
        .filter(|k| k.ends_with(".ferry-part"))
        .collect();
    assert!(parts.is_empty(), "{parts:?}");
}

#[test]
fn a_put_r_cut_in_a_large_file_reconnects_and_resumes_it() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("t");
    let want = tree_with_a_large_file(&tree, 4);

    // The first connection breaks 2 MiB into what the client sends.
    let relay = Relay::start(server.addr(), Watch::Nothing, Some(Cut::Up(2 << 20)));
    let (put, stderr) = ferry_ok(
        ferry(relay.addr, work)
            .args(["put", "-r", "--retries", "3"])
            .arg(&tree),
    );
    assert!(stderr.contains("reconnecting (retry 1 of 3)"), "{stderr}");
    assert_eq!(relay.connections(), 2);
    all_verified(&put, "put", want.len());
    let large = report(&put, "t/b/large.bin");
    let resumed = large["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0 && resumed < 4 << 20, "{large}\n{stderr}");
    assert_eq!(digests(&server.user_dir(ALICE).join("t")), want);
}

#[test]
fn an_interrupted_get_r_run_again_continues_where_it_stopped() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("t");
    let want = tree_with_a_large_file(&tree, 5);
    ferry_ok(ferry(server.addr(), work).args(["put", "-r"]).arg(&tree));

    // Without retries the cut ends the run: a network failure (exit 5).
    let relay = Relay::start(server.addr(), Watch::Nothing, Some(Cut::Down(2 << 20)));
    fs::create_dir(work.join("down")).unwrap();
    let out = run_command_to_exit(
        ferry(relay.addr, work).args(["get", "-r", "t", "-d", "down"]),
        RUN_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    let first: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed: Vec<&Value> = first.iter().filter(|l| l["ok"] == false).collect();
    assert!(
        failed.len() == 1 && failed[0]["name"] == "t/b/large.bin" && failed[0]["exit_code"] == 5,
        "the file in flight fails, the run stops: {first:?}"
    );
    let done: Vec<&Value> = first.iter().filter(|l| l["ok"] == true).collect();
    let part = work.join("down/t/b/large.bin.ferry-part");
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept > 0, "what arrived is kept");

    // The next run fetches the rest: the large file from its part; the
    // files that came before are there already and are kept.
    let (got, _) = ferry_ok(ferry(server.addr(), work).args(["get", "-r", "t", "-d", "down"]));
    all_verified(&got, "get", want.len());
    assert_eq!(report(&got, "t/b/large.bin")["resumed_from"], kept);
    for line in done {
        let again = report(&got, line["remote"].as_str().unwrap());
        assert_eq!(again["resumed_from"], again["size"], "{again}");
    }
    assert_eq!(digests(&work.join("down/t")), want);
}

// ---------------------------------------------------------------------------
// A loopback relay between ferry and ferryd
// ---------------------------------------------------------------------------

/// What the relay watches for on each connection.
#[derive(Clone, Copy)]
enum Watch {
    Nothing,
    /// `put -r` of this many files: the k-th `226` waits for the (k+1)-th
    /// `PUT` line.
    Stored(usize),
    /// `get -r` of this many files: the reply to the k-th `GET` waits for
    /// the (k+1)-th `GET` line.
    Got(usize),
}

/// Where the first connection breaks.
#[derive(Clone, Copy)]
enum Cut {
    /// After this many bytes from the client.
    Up(u64),
    /// After this many bytes from the server.
    Down(u64),
}

/// What the client has sent so far on one connection.
#[derive(Default)]
struct Sent {
    /// Verbs of the command lines not answered yet (`Watch::Got`).
    verbs: VecDeque<String>,
    puts: usize,
    gets: usize,
}

struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Replies the relay watched.
    watched: Arc<AtomicUsize>,
    /// Replies let through by the timeout, not by the client's next command.
    late: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: SocketAddr, watch: Watch, cut: Option<Cut>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            watched: Arc::default(),
            late: Arc::default(),
            stop: Arc::default(),
        };
        let (accepted, watched, late, stop) = (
            Arc::clone(&relay.accepted),
            Arc::clone(&relay.watched),
            Arc::clone(&relay.late),
            Arc::clone(&relay.stop),
        );
        thread::spawn(move || {
            let deadline = Instant::now() + RUN_TIMEOUT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let first = accepted.fetch_add(1, Ordering::SeqCst) == 0;
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(upstream).unwrap();
                let cut = cut.filter(|_| first);
                let sent = Arc::new((Mutex::new(Sent::default()), Condvar::new()));
                let up = Pump {
                    from: client.try_clone().unwrap(),
                    to: server.try_clone().unwrap(),
                    cut: match cut {
                        Some(Cut::Up(n)) => Some(n),
                        _ => None,
                    },
                    downstream: false,
                };
                let down = Pump {
                    from: server,
                    to: client,
                    cut: match cut {
                        Some(Cut::Down(n)) => Some(n),
                        _ => None,
                    },
                    downstream: true,
                };
                let sent2 = Arc::clone(&sent);
                thread::spawn(move || up.commands(watch, &sent2));
                let (watched, late) = (Arc::clone(&watched), Arc::clone(&late));
                thread::spawn(move || match watch {
                    Watch::Nothing => down.raw(),
                    _ => down.replies(watch, &sent, &watched, &late),
                });
            }
        });
        relay
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn watched(&self) -> usize {
        self.watched.load(Ordering::SeqCst)
    }

    fn late(&self) -> usize {
        self.late.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One direction of a relayed connection.
struct Pump {
    from: TcpStream,
    to: TcpStream,
    /// Break both directions after this many bytes.
    cut: Option<u64>,
    /// Server to client.
    downstream: bool,
}

impl Pump {
    fn close(&self) {
        let _ = self.from.shutdown(Shutdown::Both);
        let _ = self.to.shutdown(Shutdown::Both);
    }

    /// Forwards `bytes`, at `offset` of this direction; false once cut.
    fn forward(&mut self, bytes: &[u8], offset: &mut u64) -> bool {
        let end = *offset + bytes.len() as u64;
        if let Some(limit) = self.cut
            && end >= limit
        {
            let _ = self.to.write_all(&bytes[..(limit - *offset) as usize]);
            match self.downstream {
                // The client reads what came and then the end. Its
                // socket stays open (the other direction holds it) until
                // it closes its end: a reset could throw away what it has
                // not read yet.
                true => {
                    let _ = self.to.shutdown(Shutdown::Write);
                }
                // The client is sending: its next write must fail.
                false => self.close(),
            }
            return false;
        }
        *offset = end;
        self.to.write_all(bytes).is_ok()
    }

    /// Client to server: notes the commands (before they reach the server,
    /// so that they are known when their replies come) and passes them on.
    fn commands(mut self, watch: Watch, sent: &(Mutex<Sent>, Condvar)) {
        let mut buf = vec![0; 64 * 1024];
        let (mut offset, mut line, mut tail) = (0, Vec::new(), Vec::new());
        loop {
            let n = match self.from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            {
                let mut s = sent.0.lock().unwrap();
                match watch {
                    // The payloads are "file <n> " over and over, which
                    // never holds "PUT " (a PUT line may follow a payload
                    // directly, without a line break).
                    Watch::Stored(_) => {
                        tail.extend_from_slice(chunk);
                        s.puts += tail.windows(4).filter(|w| w == b"PUT ").count();
                        tail.drain(..tail.len().saturating_sub(3));
                    }
                    // get -r sends no payload: every byte is a line.
                    Watch::Got(_) => {
                        for &b in chunk {
                            if b != b'\n' {
                                line.push(b);
                                continue;
                            }
                            let text = String::from_utf8_lossy(&line).into_owned();
                            let verb = text.split(' ').next().unwrap_or("").trim().to_uppercase();
                            s.gets += usize::from(verb == "GET");
                            s.verbs.push_back(verb);
                            line.clear();
                        }
                    }
                    Watch::Nothing => {}
                }
                sent.1.notify_all();
            }
            if !self.forward(chunk, &mut offset) {
                return;
            }
        }
        let _ = self.to.shutdown(Shutdown::Write);
    }

    /// Server to client, as it comes.
    fn raw(mut self) {
        let mut buf = vec![0; 64 * 1024];
        let mut offset = 0;
        loop {
            let n = match self.from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !self.forward(&buf[..n], &mut offset) {
                return;
            }
        }
        let _ = self.to.shutdown(Shutdown::Write);
    }

    /// Server to client, reply by reply, holding back the watched ones.
    fn replies(
        mut self,
        watch: Watch,
        sent: &(Mutex<Sent>, Condvar),
        watched: &AtomicUsize,
        late: &AtomicUsize,
    ) {
        let mut reader = BufReader::new(self.from.try_clone().unwrap());
        let mut offset = 0;
        let mut greeted = false;
        let mut k = 0;
        loop {
            let mut reply = Vec::new();
            if !matches!(reader.read_until(b'\n', &mut reply), Ok(n) if n > 0) {
                break;
            }
            let text = String::from_utf8_lossy(&reply).trim_end().to_string();
            let data: u64 = match text.strip_prefix("150 ") {
                Some(n) if matches!(watch, Watch::Got(_)) => n.parse().unwrap(),
                _ => 0,
            };
            // Which file's reply this is, if one the relay holds.
            let mut hold = None;
            match watch {
                Watch::Stored(files) if text.starts_with("226 ") => {
                    k += 1;
                    hold = Some((files, k));
                }
                Watch::Got(files) if greeted => {
                    let mut s = sent.0.lock().unwrap();
                    let verb = s.verbs.front().cloned().unwrap_or_default();
                    // A listing goes on until its 150 0.
                    let listing = (verb == "TREE" || verb == "LIST") && text.starts_with("150 ");
                    if !listing || data == 0 {
                        s.verbs.pop_front();
                    }
                    if verb == "GET" {
                        k += 1;
                        hold = Some((files, k));
                    }
                }
                _ => {}
            }
            greeted = true;
            if let Some((files, k)) = hold {
                watched.fetch_add(1, Ordering::SeqCst);
                let s = sent.0.lock().unwrap();
                let (guard, waited) = sent
                    .1
                    .wait_timeout_while(s, HOLD, |s| {
                        k < files
                            && match watch {
                                Watch::Stored(_) => s.puts <= k,
                                _ => s.gets <= k,
                            }
                    })
                    .unwrap();
                drop(guard);
                if waited.timed_out() {
                    late.fetch_add(1, Ordering::SeqCst);
                }
            }
            if !self.forward(&reply, &mut offset) {
                return;
            }
            let mut left = data;
            while left > 0 {
                let chunk = reader.fill_buf().unwrap_or_default().to_vec();
                if chunk.is_empty() {
                    self.close();
                    return;
                }
                let take = chunk.len().min(left as usize);
                reader.consume(take);
                left -= take as u64;
                if !self.forward(&chunk[..take], &mut offset) {
                    return;
                }
            }
        }
        let _ = self.to.shutdown(Shutdown::Write);
    }
}
