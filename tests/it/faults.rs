//! Fault injection against the real `ferryd`: signals and `kill -9` in the
//! middle of traffic, a full disk, clients that reset, half-close or stop
//! reading, and a corpus of ways out of a user's directory over both
//! protocols. Every check is made on the bytes (SHA-256) and on the disk,
//! and a canary file outside the storage root must never be read, changed
//! or removed.
//!
//! Settings (see README): `FERRY_FAULT_ROUNDS` (kill -9 rounds, default
//! 20), `FERRY_FAULT_SEED` (repeat a run's random choices),
//! `FERRY_STALL_DIR` (measure the longest stall during a large upload to a
//! disk there; off unless set) with `FERRY_STALL_MIB` (default 1024).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

const BOB_SECRET: &[u8] = b"BOB-SECRET-77d0: only bob may read this\n";

/// Asserts that `bytes` carries neither the canary nor bob's secret.
#[track_caller]
fn assert_no_secret(bytes: &[u8], what: &str) {
    for secret in [&CANARY[..14], &BOB_SECRET[..15]] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{what} leaked {:?}",
            String::from_utf8_lossy(secret)
        );
    }
}

fn names_in(dir: &Path) -> BTreeSet<Vec<u8>> {
    dir_entries(dir)
        .iter()
        .map(|p| p.file_name().unwrap().as_bytes().to_vec())
        .collect()
}

fn shown(names: &BTreeSet<Vec<u8>>) -> Vec<String> {
    names
        .iter()
        .map(|n| String::from_utf8_lossy(n).escape_debug().to_string())
        .collect()
}

/// Partial uploads the server keeps for `user`.
fn partial_dir(storage: &Path, user: &str) -> PathBuf {
    storage
        .join(".ferry")
        .join("users")
        .join(user)
        .join("partial")
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Lets the threads of a test start their transfers at the same moment.
/// Unlike a barrier it cannot hang the suite: a thread that dies before
/// it arrives, or a gate that never opens, fails the test in bounded time.
#[derive(Clone)]
struct Gate {
    arrived: mpsc::Sender<()>,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    fn new() -> (Gate, mpsc::Receiver<()>) {
        let (arrived, arrivals) = mpsc::channel();
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        (Gate { arrived, open }, arrivals)
    }

    /// Called by each thread once it is ready; returns when the gate opens.
    fn pass(&self) {
        self.arrived.send(()).expect("the test gave up");
        let (lock, cvar) = &*self.open;
        let guard = lock.lock().unwrap();
        let (open, _) = cvar
            .wait_timeout_while(guard, STARTUP_TIMEOUT, |open| !*open)
            .unwrap();
        assert!(*open, "the gate never opened");
    }

    /// Waits for `threads` arrivals, then opens the gate.
    fn open_after(self, arrivals: &mpsc::Receiver<()>, threads: usize) {
        drop(self.arrived);
        for n in 0..threads {
            if let Err(err) = arrivals.recv_timeout(STARTUP_TIMEOUT) {
                panic!("only {n} of {threads} threads got ready: {err}");
            }
        }
        let (lock, cvar) = &*self.open;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`):
/// the response, after which the server must close the connection.
fn http(
    addr: SocketAddr,
    method: &str,
    target: &[u8],
    user: (&str, &str),
    body: Option<&[u8]>,
) -> Resp {
    let target = std::str::from_utf8(target).expect("request targets are ASCII");
    let auth = basic(user.0, user.1);
    let length = body.map(|body| format!("Content-Length: {}", body.len()));
    let mut headers = vec![auth.as_str(), "Connection: close"];
    headers.extend(length.as_deref());
    let mut c = Conn::open(addr);
    // The server may refuse before the body and close: that is its answer.
    c.send_lenient(&request(method, target, &headers, body.unwrap_or_default()));
    let response = if method == "HEAD" {
        c.head_response()
    } else {
        c.response()
    };
    c.expect_eof();
    response
}

/// Reads one reply line a byte at a time, so that nothing after it is
/// taken from the socket.
fn raw_reply(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        assert_eq!(stream.read(&mut byte).expect("read a reply"), 1, "EOF");
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

/// A logged-in connection without a read buffer in front of it: the test
/// reads the payload from the socket at its own pace.
fn raw_login(addr: SocketAddr, user: &str, password: &str) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert!(raw_reply(&mut stream).starts_with("220 "));
    stream
        .write_all(format!("AUTH {user} {password}\n").as_bytes())
        .unwrap();
    assert!(raw_reply(&mut stream).starts_with("230 "));
    stream
}

/// A `PUT` that tolerates a server that dies or closes at any point:
/// `None` when no final reply arrived.
fn try_put(c: &mut Client, name: &str, data: &[u8]) -> Option<(u16, String)> {
    c.try_send_raw(format!("PUT {} {name}\n", data.len()).as_bytes())
        .ok()?;
    let (code, text) = c.try_read_reply().ok()??;
    if code != 150 {
        return Some((code, text));
    }
    // Sent in pieces, so that a kill can land in the middle of a payload.
    for piece in data.chunks(64 * 1024) {
        c.try_send_raw(piece).ok()?;
    }
    c.try_read_reply().ok()?
}

// ---------------------------------------------------------------------------
// 1. SIGINT in the middle of 20 uploads and 20 downloads
// ---------------------------------------------------------------------------

/// How an uploader behaves once its `150` came.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// Everything at once: done before or early in the drain.
    Fast,
    /// Small pieces with pauses: done during the drain, or cut by its end.
    Slow,
    /// Half the payload, then silence: always cut by the end of the drain.
    Stalled,
}

#[derive(Debug)]
enum UploadOutcome {
    /// `226` with the right size and digest.
    Acked,
    /// `421`, EOF or reset instead.
    NotAcked,
}

#[test]
fn sigint_during_20_uploads_and_20_downloads_loses_nothing_acknowledged() {
    let _heavy = cpu_heavy();
    const DRAIN: Duration = Duration::from_millis(1500);
    let mut rng = Rng::from_env("sigint");
    let mut server = TestServer::builder()
        .with_fsync()
        .args(["--drain-timeout", "1.5"])
        .start();
    let canary = Canary::plant(server.root());
    let addr = server.addr();

    // Files to download, and old versions for half of the uploads.
    let downloads: Vec<Vec<u8>> = (0..4)
        .map(|i| pseudo_random_bytes(100 + i, 6 * 1024 * 1024))
        .collect();
    for (i, data) in downloads.iter().enumerate() {
        server.plant_file(ALICE, &format!("down{i}"), data);
    }
    let mut olds = HashMap::new();
    let mut setup = server.alice();
    for i in (0..20).step_by(2) {
        let old = pseudo_random_bytes(200 + i, 50_000);
        setup.put(&format!("up{i}"), &old);
        olds.insert(format!("up{i}"), old);
    }
    drop(setup);

    let (start, arrivals) = Gate::new();
    let mut uploaders = Vec::new();
    for i in 0..20u64 {
        let pace = match i % 3 {
            0 => Pace::Fast,
            1 => Pace::Slow,
            _ => Pace::Stalled,
        };
        let size = rng.range(64 * 1024, 768 * 1024) as usize;
        let data = pseudo_random_bytes(300 + i, size);
        let start = start.clone();
        uploaders.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.login(ALICE, ALICE_PW);
            let name = format!("up{i}");
            c.start_put(&name, data.len());
            start.pass();
            let sent = match pace {
                Pace::Fast => c.try_send_raw(&data).is_ok(),
                Pace::Slow => data.chunks(32 * 1024).all(|piece| {
                    thread::sleep(Duration::from_millis(40));
                    c.try_send_raw(piece).is_ok()
                }),
                Pace::Stalled => c.try_send_raw(&data[..data.len() / 2]).is_ok(),
            };
            let outcome = match c.read_reply_or_eof() {
                ReplyOrEof::Reply(226, text) => {
                    assert!(sent);
                    assert_eq!(text, stored(&data), "{name}: 226 for other bytes");
                    UploadOutcome::Acked
                }
                ReplyOrEof::Reply(421, _) | ReplyOrEof::Eof => UploadOutcome::NotAcked,
                ReplyOrEof::Reply(code, text) => panic!("{name} ({pace:?}): `{code} {text}`"),
            };
            (name, data, outcome)
        }));
    }
    let mut downloaders = Vec::new();
    for i in 0..20usize {
        let expected = downloads[i % downloads.len()].clone();
        let start = start.clone();
        downloaders.push(thread::spawn(move || {
            let mut stream = raw_login(addr, ALICE, ALICE_PW);
            stream
                .write_all(format!("GET down{}\n", i % 4).as_bytes())
                .unwrap();
            assert_eq!(raw_reply(&mut stream), format!("150 {}", expected.len()));
            start.pass();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while got.len() < expected.len() {
                // A third read slowly enough to be cut off by the drain.
                if i % 3 == 2 {
                    thread::sleep(Duration::from_millis(60));
                }
                let want = buf.len().min(expected.len() - got.len());
                match stream.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if is_reset(&e) => break,
                    Err(e) => panic!("download {i}: {e}"),
                }
            }
            assert_same_bytes(&got, &expected[..got.len()], "downloaded prefix");
            got.len() == expected.len()
        }));
    }
    start.open_after(&arrivals, 40);
    thread::sleep(Duration::from_millis(300));
    let took = server.signal_and_expect_clean_exit(Signal::SIGINT, DRAIN + Duration::from_secs(1));
    // The port is free the moment the process is gone.
    TcpListener::bind(addr).expect("the listening port is still taken after exit");

    let storage = server.storage();
    let (mut acked, mut complete) = (0, 0);
    for uploader in uploaders {
        let (name, data, outcome) = uploader.join().unwrap();
        let path = server.user_dir(ALICE).join(&name);
        match outcome {
            UploadOutcome::Acked => {
                acked += 1;
                let on_disk = fs::read(&path).unwrap_or_else(|e| panic!("{name} acked but {e}"));
                assert_eq!(sha256_hex(&on_disk), sha256_hex(&data), "{name} acked");
            }
            UploadOutcome::NotAcked => {
                match olds.get(&name) {
                    Some(old) => assert_eq!(
                        sha256_hex(&fs::read(&path).unwrap()),
                        sha256_hex(old),
                        "{name}: not acknowledged, but the old version changed"
                    ),
                    None => assert!(!path.exists(), "{name}: not acknowledged, but present"),
                }
                // What arrived may stay as a resumable partial: a prefix.
                if let Ok(held) = fs::read(partial_dir(&storage, ALICE).join(&name)) {
                    assert_same_bytes(&held, &data[..held.len()], "kept partial");
                }
            }
        }
    }
    for downloader in downloaders {
        complete += usize::from(downloader.join().unwrap());
    }
    eprintln!(
        "sigint: exit after {took:?}; {acked}/20 uploads acknowledged, {complete}/20 downloads complete"
    );
    // Some of each kind finished and some were cut, or the test tested
    // nothing.
    assert!(
        acked > 0 && acked < 20,
        "{acked} of 20 uploads acknowledged"
    );
    assert!(complete < 20, "no download was cut off");
    server.assert_tmp_empty();
    canary.assert_untouched();
}

// ---------------------------------------------------------------------------
// 2. kill -9 at random moments, restart, repeat
// ---------------------------------------------------------------------------

/// A ferryd on a storage root that outlives it (restarted after each kill).
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    /// Starts ferryd (syncing, as by default) on `<root>/storage` with the
    /// users in `<root>/id_passwd.txt`.
    fn start(root: &Path) -> Daemon {
        Daemon::start_with_umask(root, None)
    }

    /// The same, under the file-creation mask `umask` (as a shell sets it).
    fn start_with_umask(root: &Path, umask: Option<&str>) -> Daemon {
        let mut command = match umask {
            None => Command::new(ferryd_bin()),
            Some(mask) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
                    .arg(ferryd_bin());
                sh
            }
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--storage"])
            .arg(root.join("storage"))
            .arg("--users")
            .arg(root.join("id_passwd.txt"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferryd");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            // Keeps draining stderr so ferryd never blocks on a full pipe.
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = parse_listening_line(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferryd did not start");
            }
        };
        Daemon { child, addr }
    }

    fn kill_9(&mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients did to one name, across all rounds.
#[derive(Default)]
struct History {
    /// Digest of every version ever sent, by version number.
    sent: HashMap<u64, String>,
    /// The version the name must hold at least: the last one answered
    /// `226`, or the one found on disk after the last restart (`None`:
    /// no file).
    settled: Option<u64>,
    /// Versions sent since then without an answer: any of them may have
    /// been placed just before the server died.
    unanswered: Vec<u64>,
    /// Whether any version was ever acknowledged.
    acked: bool,
}

#[test]
fn kill_9_at_random_moments_never_loses_or_mixes_acknowledged_files() {
    let rounds: u64 = std::env::var("FERRY_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng::from_env("kill -9");
    let root = tempfile::Builder::new()
        .prefix("ferry-kill9-")
        .tempdir()
        .unwrap();
    fs::write(root.path().join("id_passwd.txt"), default_users_file()).unwrap();
    let canary = Canary::plant(root.path());
    let user_dir = root.path().join("storage").join(ALICE);
    let tmp_dir = root.path().join("storage/.ferry/tmp");
    const WRITERS: usize = 3;
    const NAMES_PER_WRITER: usize = 2;
    let histories: Arc<Mutex<HashMap<String, History>>> = Arc::default();
    let next_version = Arc::new(AtomicU64::new(1));
    let mut acked_total = 0u64;

    for round in 0..rounds {
        let mut daemon = Daemon::start(root.path());
        // Start-up removed whatever the last kill left in flight.
        let left: Vec<_> = dir_entries(&tmp_dir);
        assert!(
            left.is_empty(),
            "round {round}: temporary files left: {left:?}"
        );
        verify_histories(&mut histories.lock().unwrap(), &user_dir, round);

        let stop = Arc::new(AtomicBool::new(false));
        let (ready, arrivals) = Gate::new();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let seed = rng.next_u64();
                let (histories, next_version, stop, ready) = (
                    Arc::clone(&histories),
                    Arc::clone(&next_version),
                    Arc::clone(&stop),
                    ready.clone(),
                );
                let addr = daemon.addr;
                thread::spawn(move || {
                    let mut rng = Rng::new(seed);
                    let mut c = Client::connect(addr);
                    c.login(ALICE, ALICE_PW);
                    ready.pass();
                    let mut acked = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("w{w}-{}", rng.range(0, NAMES_PER_WRITER as u64));
                        let version = next_version.fetch_add(1, Ordering::Relaxed);
                        // Mostly small files, some large enough to be cut
                        // in the middle; never empty.
                        let size = if rng.range(0, 4) == 0 {
                            rng.range(256 * 1024, 2 * 1024 * 1024)
                        } else {
                            rng.range(1, 64 * 1024)
                        };
                        let data = pseudo_random_bytes(version, size as usize);
                        {
                            let mut all = histories.lock().unwrap();
                            let history = all.entry(name.clone()).or_default();
                            history.sent.insert(version, sha256_hex(&data));
                            history.unanswered.push(version);
                        }
                        match try_put(&mut c, &name, &data) {
                            Some((226, text)) => {
                                assert_eq!(text, stored(&data));
                                let mut all = histories.lock().unwrap();
                                let history = all.get_mut(&name).unwrap();
                                history.settled = Some(version);
                                history.unanswered.clear();
                                history.acked = true;
                                acked += 1;
                            }
                            Some((code, text)) => panic!("PUT {name}: `{code} {text}`"),
                            // The server is gone.
                            None => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        ready.open_after(&arrivals, WRITERS);
        thread::sleep(Duration::from_millis(rng.range(10, 400)));
        daemon.kill_9();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            acked_total += writer.join().unwrap();
        }
    }
    let mut daemon = Daemon::start(root.path());
    assert!(dir_entries(&tmp_dir).is_empty());
    verify_histories(&mut histories.lock().unwrap(), &user_dir, rounds);
    // What is on disk is also what the server serves.
    let mut c = Client::connect(daemon.addr);
    c.login(ALICE, ALICE_PW);
    for name in histories.lock().unwrap().keys() {
        if let Ok(on_disk) = fs::read(user_dir.join(name)) {
            assert_eq!(sha256_hex(&c.get(name)), sha256_hex(&on_disk));
        }
    }
    daemon.kill_9();
    eprintln!("kill -9: {rounds} rounds, {acked_total} uploads acknowledged");
    assert!(acked_total > 0);
    canary.assert_untouched();
}

/// Every name holds exactly its last acknowledged version, or one sent
/// after it that got no answer (the rename can land just before the
/// reply); never a mix, a truncation, or nothing. What is found becomes
/// the version the next round starts from.
fn verify_histories(histories: &mut HashMap<String, History>, user_dir: &Path, round: u64) {
    let mut expected_names = BTreeSet::new();
    for (name, history) in histories.iter_mut() {
        let allowed: Vec<u64> = history
            .settled
            .into_iter()
            .chain(history.unanswered.iter().copied())
            .collect();
        let path = user_dir.join(name);
        match fs::read(&path) {
            Ok(on_disk) => {
                let digest = sha256_hex(&on_disk);
                let version = history
                    .sent
                    .iter()
                    .find(|(_, sha)| **sha == digest)
                    .map(|(v, _)| *v);
                assert!(
                    version.is_some_and(|v| allowed.contains(&v)),
                    "round {round}: {name} holds {} bytes that are {}; allowed versions {allowed:?}",
                    on_disk.len(),
                    match version {
                        Some(v) => format!("version {v}"),
                        None => "no version ever sent (mixed or truncated)".to_string(),
                    }
                );
                expected_names.insert(name.as_bytes().to_vec());
                history.settled = version;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                assert!(
                    history.settled.is_none() && !history.acked,
                    "round {round}: {name} is gone, but version {:?} was there",
                    history.settled
                );
            }
            Err(e) => panic!("{name}: {e}"),
        }
        history.unanswered.clear();
    }
    let present = names_in(user_dir);
    assert_eq!(
        shown(&present),
        shown(&expected_names),
        "round {round}: unexpected files"
    );
}

/// A users file and a storage path (not created yet) in a fresh directory.
fn daemon_root() -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("ferry-faults-")
        .tempdir()
        .unwrap();
    fs::write(root.path().join("id_passwd.txt"), default_users_file()).unwrap();
    root
}

#[test]
fn partials_survive_kill_9_and_temporary_files_do_not() {
    let root = daemon_root();
    let storage = root.path().join("storage");
    let mut daemon = Daemon::start(root.path());
    let data = pseudo_random_bytes(41, 1_000_000);

    // One upload is cut by its client (kept as a partial), one by the kill.
    let mut cut = Client::connect(daemon.addr);
    cut.login(ALICE, ALICE_PW);
    cut.start_put("resumable", data.len());
    cut.send_raw(&data[..300_000]);
    drop(cut);
    let mut probe = Client::connect(daemon.addr);
    probe.login(ALICE, ALICE_PW);
    let kept = wait_until(Duration::from_secs(5), || {
        probe.expect("PARTIAL resumable", 213) == "300000"
    });
    assert!(kept, "the cut upload was not kept as a partial");
    let mut in_flight = Client::connect(daemon.addr);
    in_flight.login(ALICE, ALICE_PW);
    in_flight.start_put("in-flight", data.len());
    in_flight.send_raw(&data[..200_000]);
    let tmp = storage.join(".ferry/tmp");
    let arrived = wait_until(Duration::from_secs(5), || {
        dir_entries(&tmp)
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.len() == 200_000))
    });
    assert!(arrived, "the in-flight upload never reached the disk");
    daemon.kill_9();

    let daemon = Daemon::start(root.path());
    assert!(
        dir_entries(&tmp).is_empty(),
        "temporary files survived a restart"
    );
    let mut c = Client::connect(daemon.addr);
    c.login(ALICE, ALICE_PW);
    assert_eq!(c.expect("PARTIAL in-flight", 213), "0");
    assert_eq!(c.expect("PARTIAL resumable", 213), "300000");
    c.expect("REST 300000", 350);
    c.send_line(&format!("PUT {} resumable", data.len()));
    assert_eq!(c.read_reply(), (150, "700000".to_string()));
    c.send_raw(&data[300_000..]);
    assert_eq!(c.read_reply(), (226, stored(&data)));
    assert_eq!(sha256_hex(&c.get("resumable")), sha256_hex(&data));
    assert_eq!(
        names_in(&storage.join(ALICE)),
        BTreeSet::from([b"resumable".to_vec()])
    );
}

#[test]
fn files_and_directories_are_private_whatever_the_umask() {
    for umask in ["000", "277"] {
        let root = daemon_root();
        let storage = root.path().join("storage");
        let daemon = Daemon::start_with_umask(root.path(), Some(umask));
        let mut c = Client::connect(daemon.addr);
        c.login(ALICE, ALICE_PW);
        c.put("file", b"data");
        c.start_put("cut", 10);
        c.send_raw(b"12345");
        drop(c);
        let records = storage.join(".ferry/users").join(ALICE);
        let partial = records.join("partial/cut");
        assert!(wait_until(Duration::from_secs(5), || partial.exists()));
        for dir in [
            storage.clone(),
            storage.join(".ferry"),
            storage.join(".ferry/tmp"),
            storage.join(".ferry/users"),
            storage.join(ALICE),
            records.clone(),
            records.join("sums"),
            records.join("partial"),
            records.join("partial-sums"),
        ] {
            assert_eq!(mode_of(&dir), 0o700, "umask {umask}: {}", dir.display());
        }
        for file in [
            storage.join(ALICE).join("file"),
            records.join("sums/file"),
            partial,
        ] {
            assert_eq!(mode_of(&file), 0o600, "umask {umask}: {}", file.display());
        }
    }
}

// ---------------------------------------------------------------------------
// 3. A full disk
// ---------------------------------------------------------------------------

/// A tmpfs mounted for one test, unmounted when dropped (also when the
/// test fails).
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        if !is_root() {
            eprintln!("SKIPPED: the disk-full test mounts a small tmpfs and needs root");
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(path)
            .status();
        match status {
            Ok(s) if s.success() => Some(Mount {
                path: path.to_path_buf(),
            }),
            other => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs on {} ({other:?})",
                    path.display()
                );
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: the server may still hold files open on it.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A server whose storage is a mount. Fields drop in order: the mount is
/// detached first, so that the server's temporary directory, mount point
/// included, can then be removed (also when the test fails).
struct OnFullDisk {
    _mount: Mount,
    server: TestServer,
}

#[test]
fn disk_full_mid_upload_answers_451_keeps_serving_and_recovers() {
    let builder = TestServer::builder()
        .with_fsync()
        .args(["--http-listen", "127.0.0.1:0"]);
    let Some(mount) = Mount::tmpfs(&builder.storage(), "8m") else {
        return;
    };
    let full = OnFullDisk {
        _mount: mount,
        server: builder.start(),
    };
    let server = &full.server;
    let canary = Canary::plant(server.root());
    let http_at = server.http_addr();
    let mut c = server.alice();
    let keep = pseudo_random_bytes(1, 1024 * 1024);
    c.put("keep", &keep);
    let filler = pseudo_random_bytes(2, 5 * 1024 * 1024);
    c.put("filler", &filler);

    // About 2 MiB are left: each of these runs out of space half-way.
    let big = pseudo_random_bytes(3, 3 * 1024 * 1024);
    let (code, text) = c.put_reply(b"big", &big);
    assert_eq!((code, text.as_str()), (451, "local error: disk full"));
    let (code, text) = c.put_reply(b"keep", &big);
    assert_eq!((code, text.as_str()), (451, "local error: disk full"));
    let put = http(
        http_at,
        "PUT",
        b"/files/big-http",
        (BOB, BOB_PW),
        Some(&big),
    );
    assert_eq!(put.status, 507, "{}", String::from_utf8_lossy(&put.body));

    // Nothing partial anywhere; the old version and downloads are served.
    server.assert_tmp_empty_within(Duration::from_secs(2));
    assert!(!server.user_dir(ALICE).join("big").exists());
    assert!(!server.user_dir(BOB).join("big-http").exists());
    assert!(dir_entries(&partial_dir(&server.storage(), ALICE)).is_empty());
    let mut other = server.bob();
    other.noop();
    assert_eq!(sha256_hex(&c.get("keep")), sha256_hex(&keep));
    let got = http(http_at, "GET", b"/files/keep", (ALICE, ALICE_PW), None);
    assert_eq!(
        (got.status, sha256_hex(&got.body)),
        (200, sha256_hex(&keep))
    );
    // Bob's session never sees alice's files, full disk or not.
    assert_eq!(other.get_reply(b"keep").unwrap_err().0, 550);

    // Space comes back: uploads work again, on the same session.
    c.expect("DEL filler", 250);
    c.put("big", &big);
    assert_eq!(sha256_hex(&c.get("big")), sha256_hex(&big));
    let put = http(
        http_at,
        "PUT",
        b"/files/big-http",
        (BOB, BOB_PW),
        Some(&keep),
    );
    assert_eq!(put.status, 201);
    assert_eq!(sha256_hex(&other.get("big-http")), sha256_hex(&keep));
    assert_eq!(sha256_hex(&c.get("keep")), sha256_hex(&keep));
    server.assert_tmp_empty();
    canary.assert_untouched();
}

// ---------------------------------------------------------------------------
// 4. Resets, half-closed sockets, a client that stops reading
// ---------------------------------------------------------------------------

/// Waits until the server's next reply sits unread in the socket, so that
/// closing the socket now makes the kernel send a reset (RST), not a FIN.
fn wait_for_unread(c: &Client) {
    let mut byte = [0u8; 1];
    let n = peek_retrying(c.stream(), &mut byte).expect("peek");
    assert_eq!(n, 1, "the server closed instead of replying");
}

#[test]
fn client_resets_and_half_closes_mid_transfer_leave_the_server_serving() {
    let _measuring = timing_sensitive();
    let server = TestServer::start();
    let big = pseudo_random_bytes(9, 16 * 1024 * 1024);
    server.plant_file(ALICE, "big", &big);
    let mut watcher = server.bob();

    // Reset in the middle of an upload: unread `150` + close = RST.
    let payload = pseudo_random_bytes(10, 300_000);
    let mut c = server.alice();
    c.send_line("PUT 1000000 reset-up");
    wait_for_unread(&c);
    c.send_raw(&payload);
    thread::sleep(Duration::from_millis(100));
    drop(c);
    // Reset in the middle of a download.
    let mut c = server.alice();
    c.send_line("GET big");
    assert_eq!(c.read_reply(), (150, big.len().to_string()));
    c.read_exact_bytes(1024 * 1024);
    drop(c);
    assert_noops_prompt(&mut watcher, 3);

    // The cut upload left no file and no temporary file; its bytes may be
    // kept as a partial (a prefix of what was sent).
    server.assert_tmp_empty_within(Duration::from_secs(2));
    assert!(!server.user_dir(ALICE).join("reset-up").exists());
    if let Ok(held) = fs::read(partial_dir(&server.storage(), ALICE).join("reset-up")) {
        assert_same_bytes(&held, &payload[..held.len()], "partial after a reset");
    }

    // Half-closed mid-upload: the upload is cut, nothing is placed.
    let mut c = server.alice();
    c.start_put("half-up", 100_000);
    c.send_raw(&payload[..50_000]);
    c.shutdown_write();
    match c.read_reply_or_eof() {
        ReplyOrEof::Eof => {}
        ReplyOrEof::Reply(code, text) => assert!(code >= 400, "`{code} {text}`"),
    }
    assert!(!server.user_dir(ALICE).join("half-up").exists());
    // Half-closed after asking for a download: the whole file still comes.
    let mut c = server.alice();
    c.send_line("GET big");
    c.shutdown_write();
    assert_eq!(c.read_reply(), (150, big.len().to_string()));
    assert_eq!(sha256_hex(&c.read_exact_bytes(big.len())), sha256_hex(&big));
    c.expect_eof();

    assert_noops_prompt(&mut watcher, 3);
    server.assert_tmp_empty_within(Duration::from_secs(2));
    assert_eq!(sha256_hex(&server.alice().get("big")), sha256_hex(&big));
    // The resets were resets (RST), not orderly closes. A download may
    // meet the reset on its next write: a broken pipe.
    let log = server.stderr_text();
    // (The audit log has one line per transfer with its result and reason.)
    for (name, result) in [("reset-up", "result=aborted"), ("big", "result=cut")] {
        let name = format!("name=\"{name}\"");
        assert!(
            log.lines().any(|l| l.contains(&name)
                && l.contains(result)
                && (l.contains("reset by peer") || l.contains("Broken pipe"))),
            "no reset logged for {name} {result}:\n{log}"
        );
    }
}

#[test]
fn clients_that_stop_reading_large_downloads_hold_bounded_memory() {
    let _measuring = timing_sensitive();
    let server = TestServer::start();
    let big = pseudo_random_bytes(11, 64 * 1024 * 1024);
    server.plant_file(ALICE, "big", &big);
    let mut watcher = server.bob();
    watcher.noop();
    let before = rss_kib(server.pid());

    // Eight downloads of 64 MiB each that nobody reads.
    let stalled: Vec<Client> = (0..8)
        .map(|_| {
            let mut c = server.alice();
            c.send_line("GET big");
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    // Another session still uploads and downloads promptly meanwhile.
    assert_noops_prompt(&mut watcher, 5);
    let data = pseudo_random_bytes(12, 1024 * 1024);
    let t = Instant::now();
    watcher.put("meanwhile", &data);
    assert_eq!(sha256_hex(&watcher.get("meanwhile")), sha256_hex(&data));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let during = rss_kib(server.pid());
    // Each stalled download may hold its 128 KiB buffer; the rest waits on
    // disk, not in memory (8 x 64 MiB would be 512 MiB).
    assert!(
        during < before + 24 * 1024,
        "ferryd grew from {before} KiB to {during} KiB with stalled readers"
    );
    drop(stalled);
    assert_noops_prompt(&mut watcher, 3);
}

// ---------------------------------------------------------------------------
// 5. Ways out of the user's directory, over both protocols
// ---------------------------------------------------------------------------

/// A server with alice (who tries to get out), bob (whose file she must
/// not reach), a canary next to the storage root, and in alice's
/// directory: symlinks to the canary and to bob's directory, and a FIFO.
struct Escape {
    server: TestServer,
    http: SocketAddr,
    canary: Canary,
    alice_names: BTreeSet<Vec<u8>>,
    root_names: BTreeSet<Vec<u8>>,
}

impl Escape {
    fn set_up() -> Escape {
        let server = TestServer::builder()
            .args(["--http-listen", "127.0.0.1:0"])
            .start();
        let http = server.http_addr();
        let canary = Canary::plant(server.root());
        let mut bob = server.bob();
        bob.put("secret", BOB_SECRET);
        let mut alice = server.alice();
        alice.put("seed", b"seed");
        let dir = server.user_dir(ALICE);
        symlink(&canary.path, dir.join("to-canary")).unwrap();
        symlink("../../canary", dir.join("rel-canary")).unwrap();
        symlink(server.user_dir(BOB), dir.join("to-bob")).unwrap();
        let made = Command::new("mkfifo")
            .arg(dir.join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let alice_names = names_in(&dir);
        let root_names = names_in(server.root());
        Escape {
            server,
            http,
            canary,
            alice_names,
            root_names,
        }
    }

    fn assert_contained(self) {
        let server = &self.server;
        assert_eq!(
            shown(&names_in(&server.user_dir(ALICE))),
            shown(&self.alice_names),
            "alice's directory changed"
        );
        assert_eq!(
            names_in(server.root()),
            self.root_names,
            "files appeared outside"
        );
        let storage: BTreeSet<_> = names_in(&server.storage());
        let allowed: BTreeSet<Vec<u8>> = [ALICE, BOB, ".ferry"]
            .iter()
            .map(|n| n.as_bytes().to_vec())
            .collect();
        assert_eq!(shown(&storage), shown(&allowed), "storage root changed");
        assert_eq!(
            fs::read(server.user_dir(BOB).join("secret")).unwrap(),
            BOB_SECRET
        );
        assert_eq!(names_in(&server.user_dir(BOB)).len(), 1);
        server.assert_tmp_empty_within(Duration::from_secs(2));
        self.canary.assert_untouched();
    }
}

/// Names the line protocol must refuse, or else confine to alice's
/// directory under exactly that name: the common corpus of names not
/// allowed, and ways out through this test's links, FIFO and canary.
fn line_corpus(canary: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = [
        &b"../canary"[..],
        b"../../canary",
        b"../../../canary",
        b"...",
        b".. ",
        b" ..",
        b"./seed",
        b"//etc/passwd",
        b"..\\canary",
        b"..\\..\\canary",
        b"\\..\\..\\canary",
        b"%2e%2e%2fcanary",
        b"%2e%2e/canary",
        b"..%2fcanary",
        b"%252e%252e%252fcanary",
        b"%2e%2e%5c%2e%2e%5ccanary",
        b"\xc0\xae\xc0\xae/canary",
        b"\xc0\xae\xc0\xae\xc0\xafcanary",
        b"..\xc0\xafcanary",
        b"\xe0\x80\xae\xe0\x80\xae",
        b"\xf0\x80\x80\xaf",
        "\u{ff0e}\u{ff0e}\u{ff0f}canary".as_bytes(),
        "\u{ff0e}\u{ff0e}".as_bytes(),
        "\u{2024}\u{2024}".as_bytes(),
        b"canary\0",
        b"\0../canary",
        b"seed\0../../canary",
        b"../canary\r",
        b"../bob/secret",
        b"..\\bob\\secret",
        b"%2e%2e%2fbob%2fsecret",
        b"to-bob/secret",
        b"to-bob",
        b"to-canary",
        b"rel-canary",
        b"fifo",
        b"fifo/",
        b"seed/..",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    names.push(canary.as_os_str().as_bytes().to_vec());
    names.extend(bad_names());
    names.push(vec![b'n'; 4096]);
    names.push(format!("{}canary", "../".repeat(1300)).into_bytes());
    names
}

#[test]
fn path_escape_corpus_over_the_line_protocol() {
    let escape = Escape::set_up();
    let mut c = escape.server.alice();
    c.set_read_timeout(Duration::from_secs(3));
    let payload = b"pwned-by-line";
    let mut created = 0;
    for name in line_corpus(&escape.canary.path) {
        let what = String::from_utf8_lossy(&name).escape_debug().to_string();
        let what = &what[..what.len().min(60)];
        let t = Instant::now();
        let refused = |c: &mut Client, verb: &str| {
            let mut line = format!("{verb} ").into_bytes();
            line.extend_from_slice(&name);
            match c.data_cmd(&line) {
                Ok(data) => panic!("{verb} {what:?} sent {} bytes", data.len()),
                Err((code, text)) => {
                    assert_no_secret(text.as_bytes(), verb);
                    // PARTIAL of a name never uploaded holds 0 bytes.
                    assert!(
                        matches!(code, 500 | 501 | 550 | 553) || (verb == "PARTIAL" && text == "0"),
                        "{verb} {what:?} answered `{code} {text}`"
                    );
                }
            }
        };
        // Nothing of these names exists inside: every read is refused.
        for verb in ["GET", "VIEW", "HASH", "PARTIAL"] {
            refused(&mut c, verb);
        }
        let (code, text) = c.put_reply(&name, payload);
        if code == 226 {
            // Allowed only as a plain file of exactly that name, inside.
            created += 1;
            let inside = escape
                .server
                .user_dir(ALICE)
                .join(std::ffi::OsStr::from_bytes(&name));
            assert_eq!(fs::read(&inside).unwrap(), payload, "{what}");
            assert_eq!(c.get_reply(&name).unwrap(), payload, "{what}");
            let mut del = b"DEL ".to_vec();
            del.extend_from_slice(&name);
            c.expect_bytes(&del, 250);
        } else {
            assert!(
                matches!(code, 500 | 501 | 550 | 553),
                "PUT {what:?} answered `{code} {text}`"
            );
            refused(&mut c, "DEL");
        }
        // Symlinks and the FIFO are answered at once, never followed.
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what:?} took {:?}",
            t.elapsed()
        );
    }
    assert!(created > 5, "only {created} literal names were accepted");
    let listing = c.list_raw();
    assert_no_secret(&listing, "LIST");
    assert_eq!(c.list_names(), vec!["seed".to_string()]);
    c.noop();
    escape.assert_contained();
}

/// What an HTTP request target must come to.
enum Expect {
    /// A 4xx, whatever the method.
    Refused,
    /// A 403 (a name that is not a regular file), at once.
    NotRegular,
    /// A file of exactly this name inside alice's directory.
    Literal(&'static str),
}

#[test]
fn path_escape_corpus_over_http() {
    let escape = Escape::set_up();
    let canary_encoded: String = escape
        .canary
        .path
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("%{b:02x}"))
        .collect();
    let long_a = format!("/files/{}", "a".repeat(256));
    let long_b = format!("/files/{}", "b".repeat(4096));
    let long_encoded = format!("/files/{}", "%61".repeat(256));
    let absolute_canary = format!("/files/{canary_encoded}");
    let cases: Vec<(&str, Expect)> = vec![
        ("/files/../canary", Expect::Refused),
        ("/files/../../canary", Expect::Refused),
        ("/files/..%2fcanary", Expect::Refused),
        ("/files/%2e%2e%2fcanary", Expect::Refused),
        ("/files/%2E%2E%2F%2E%2E%2Fcanary", Expect::Refused),
        ("/files/%2e%2e/canary", Expect::Refused),
        ("/files/%2e%2e", Expect::Refused),
        ("/files/%2e", Expect::Refused),
        ("/files/..", Expect::Refused),
        ("/files/%2fetc%2fpasswd", Expect::Refused),
        ("/files//etc/passwd", Expect::Refused),
        (absolute_canary.as_str(), Expect::Refused),
        ("/files/..%5c..%5ccanary", Expect::Literal("..\\..\\canary")),
        (
            "/files/%252e%252e%252fcanary",
            Expect::Literal("%2e%2e%2fcanary"),
        ),
        ("/files/%25252e%25252e", Expect::Literal("%252e%252e")),
        ("/files/%c0%ae%c0%ae%c0%afcanary", Expect::Refused),
        ("/files/..%c0%afcanary", Expect::Refused),
        ("/files/%e0%80%ae%e0%80%ae", Expect::Refused),
        (
            "/files/%ef%bc%8e%ef%bc%8e%ef%bc%8fcanary",
            Expect::Literal("\u{ff0e}\u{ff0e}\u{ff0f}canary"),
        ),
        ("/files/canary%00", Expect::Refused),
        ("/files/%00..%2fcanary", Expect::Refused),
        ("/files/a%0d%0ab", Expect::Refused),
        ("/files/a%0db", Expect::Refused),
        ("/files/a%0a", Expect::Refused),
        (long_a.as_str(), Expect::Refused),
        (long_encoded.as_str(), Expect::Refused),
        (long_b.as_str(), Expect::Refused),
        ("/files/to-canary", Expect::NotRegular),
        ("/files/rel-canary", Expect::NotRegular),
        ("/files/to-bob", Expect::NotRegular),
        ("/files/fifo", Expect::NotRegular),
        ("/files/to-bob%2fsecret", Expect::Refused),
        ("/files/to-bob/secret", Expect::Refused),
        ("/files/..%2fbob%2fsecret", Expect::Refused),
        ("/files/%2e%2e%2fbob%2fsecret", Expect::Refused),
        ("/files/x/../../bob/secret", Expect::Refused),
        ("/files/../bob/secret", Expect::Refused),
        ("/../bob/secret", Expect::Refused),
        ("/files/%2e%2e%2f%2e%2e%2fcanary?preview", Expect::Refused),
        ("http://ferry/files/..%2fcanary", Expect::Refused),
    ];
    let alice = (ALICE, ALICE_PW);
    let payload = b"pwned-by-http";
    for (target, expect) in &cases {
        let shown_target = &target[..target.len().min(60)];
        let t = Instant::now();
        let request = |method: &str, body: Option<&[u8]>| {
            let response = http(escape.http, method, target.as_bytes(), alice, body);
            assert_no_secret(&response.body, &format!("{method} {shown_target}"));
            response.status
        };
        // Reads first, while nothing of the name exists inside.
        let get = request("GET", None);
        let head = request("HEAD", None);
        let put = request("PUT", Some(payload));
        match expect {
            Expect::Literal(name) => {
                assert_eq!((get, head, put), (404, 404, 201), "{shown_target}");
                let inside = escape.server.user_dir(ALICE).join(name);
                assert_eq!(fs::read(&inside).unwrap(), payload, "{shown_target}");
                let got = http(escape.http, "GET", target.as_bytes(), alice, None);
                assert_eq!((got.status, got.body.as_slice()), (200, &payload[..]));
                assert_eq!(request("DELETE", None), 204, "DELETE {shown_target}");
                assert!(!inside.exists());
            }
            Expect::Refused | Expect::NotRegular => {
                let delete = request("DELETE", None);
                for (method, status) in [
                    ("GET", get),
                    ("HEAD", head),
                    ("PUT", put),
                    ("DELETE", delete),
                ] {
                    match expect {
                        Expect::NotRegular => assert_eq!(status, 403, "{method} {shown_target}"),
                        _ => assert!(
                            (400..500).contains(&status),
                            "{method} {shown_target} answered {status}"
                        ),
                    }
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{shown_target} took {:?}",
            t.elapsed()
        );
    }
    let listing = http(escape.http, "GET", b"/files/", alice, None);
    assert_eq!(listing.status, 200);
    assert_no_secret(&listing.body, "listing");
    assert_eq!(listing.body.iter().filter(|&&b| b == b'{').count(), 1);
    escape.assert_contained();
}

#[test]
fn symlink_swapped_in_and_out_during_downloads_never_reaches_the_canary() {
    let escape = Escape::set_up();
    let server = &escape.server;
    let dir = server.user_dir(ALICE);
    let stage = server.root().join("stage");
    fs::create_dir(&stage).unwrap();
    let content = pseudo_random_bytes(21, 200_000);
    let stop = Arc::new(AtomicBool::new(false));
    // The swap: `swap` is, atomically and alternately, a regular file and
    // a symlink to the canary (or to bob's directory).
    let swapper = {
        let (stop, dir, stage, content) = (
            Arc::clone(&stop),
            dir.clone(),
            stage.clone(),
            content.clone(),
        );
        let canary = escape.canary.path.clone();
        let bob = server.user_dir(BOB);
        thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fs::write(stage.join("file"), &content).unwrap();
                fs::rename(stage.join("file"), dir.join("swap")).unwrap();
                thread::yield_now();
                let target = if swaps.is_multiple_of(2) {
                    &canary
                } else {
                    &bob
                };
                symlink(target, stage.join("link")).unwrap();
                fs::rename(stage.join("link"), dir.join("swap")).unwrap();
                swaps += 1;
            }
            // End on the regular file.
            fs::write(stage.join("file"), &content).unwrap();
            fs::rename(stage.join("file"), dir.join("swap")).unwrap();
            swaps
        })
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut c = server.alice();
    let (mut line_files, mut http_files, mut refusals) = (0, 0, 0);
    while Instant::now() < deadline {
        match c.get_reply(b"swap") {
            Ok(data) => {
                assert_same_bytes(&data, &content, "GET during swaps");
                line_files += 1;
            }
            Err((550, _)) => refusals += 1,
            Err((code, text)) => panic!("GET swap answered `{code} {text}`"),
        }
        match c.view_reply(b"swap") {
            Ok(data) => assert_eq!(data, content[..1024]),
            Err((550, _)) => refusals += 1,
            Err((code, text)) => panic!("VIEW swap answered `{code} {text}`"),
        }
        let got = http(escape.http, "GET", b"/files/swap", (ALICE, ALICE_PW), None);
        match got.status {
            200 => {
                assert_same_bytes(&got.body, &content, "HTTP GET during swaps");
                http_files += 1;
            }
            403 | 404 => assert_no_secret(&got.body, "HTTP refusal"),
            status => panic!("HTTP GET swap answered {status}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!(
        "TOCTOU: {swaps} swaps; {line_files} line and {http_files} HTTP downloads of the file, {refusals} refusals"
    );
    assert!(swaps > 10, "the swapper barely ran");
    assert_eq!(c.get("swap"), content);
    c.expect("DEL swap", 250);
    fs::remove_dir_all(&stage).unwrap();
    escape.assert_contained();
}

#[test]
fn a_user_directory_swapped_for_a_symlink_does_not_lead_elsewhere() {
    let escape = Escape::set_up();
    let server = &escape.server;
    let mut c = server.alice();
    let dir = server.user_dir(ALICE);
    let moved = server.storage().join("alice-moved");
    // The directory alice logged in to moves away; her name now leads to
    // bob's directory.
    fs::rename(&dir, &moved).unwrap();
    symlink(server.user_dir(BOB), &dir).unwrap();

    // The logged-in session still works in her own directory, wherever it
    // went, and never sees bob's file.
    assert_eq!(c.get("seed"), b"seed");
    assert_eq!(c.get_reply(b"secret").unwrap_err().0, 550);
    assert_eq!(c.list_names(), vec!["seed".to_string()]);
    c.put("new", b"new");
    assert_eq!(fs::read(moved.join("new")).unwrap(), b"new");
    assert!(!server.user_dir(BOB).join("new").exists());
    // A new login cannot go through the symlink.
    let mut fresh = server.connect();
    let (code, text) = fresh.cmd(&format!("AUTH {ALICE} {ALICE_PW}"));
    if code == 230 {
        assert_eq!(
            fresh.get_reply(b"secret").unwrap_err().0,
            550,
            "`{code} {text}`"
        );
    } else {
        assert_eq!(code, 451, "`{code} {text}`");
    }
    let got = http(
        escape.http,
        "GET",
        b"/files/secret",
        (ALICE, ALICE_PW),
        None,
    );
    assert_ne!(got.status, 200);
    assert_no_secret(&got.body, "HTTP GET through a swapped directory");

    // Put things back for the final checks.
    fs::remove_file(&dir).unwrap();
    fs::rename(&moved, &dir).unwrap();
    fs::remove_file(dir.join("new")).unwrap();
    escape.assert_contained();
}

#[test]
fn a_hard_link_is_an_ordinary_file_never_written_through_or_destroyed() {
    let escape = Escape::set_up();
    let server = &escape.server;
    let outside = server.root().join("outside-hl");
    fs::write(&outside, b"shared inode").unwrap();
    let dir = server.user_dir(ALICE);
    fs::hard_link(&outside, dir.join("hl")).unwrap();
    fs::hard_link(&outside, dir.join("hl2")).unwrap();
    let mut c = server.alice();
    assert_eq!(c.get("hl"), b"shared inode");
    // An upload replaces the name; the other links keep the old content.
    c.put("hl", b"replaced");
    assert_eq!(fs::read(&outside).unwrap(), b"shared inode");
    assert_eq!(fs::read(dir.join("hl2")).unwrap(), b"shared inode");
    assert_eq!(c.get("hl"), b"replaced");
    // A delete removes the name only.
    c.expect("DEL hl2", 250);
    let http_del = http(escape.http, "DELETE", b"/files/hl", (ALICE, ALICE_PW), None);
    assert_eq!(http_del.status, 204);
    assert_eq!(fs::read(&outside).unwrap(), b"shared inode");
    fs::remove_file(&outside).unwrap();
    escape.assert_contained();
}

// ---------------------------------------------------------------------------
// The longest stall during a large synced upload (measurement)
// ---------------------------------------------------------------------------

/// Measures what other sessions feel while a large upload is written and
/// synced: a probe sends NOOPs one after the other and the longest wait
/// for an answer is the longest stall of the one thread. Off unless
/// `FERRY_STALL_DIR` names a directory on the disk to measure; run it in
/// release mode (`cargo test --release --test faults stall -- --nocapture`).
#[test]
fn stall_during_a_large_synced_upload() {
    let Ok(parent) = std::env::var("FERRY_STALL_DIR") else {
        eprintln!("SKIPPED: set FERRY_STALL_DIR=/path/on/a/disk to measure the stall");
        return;
    };
    let mib: usize = std::env::var("FERRY_STALL_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let root = tempfile::Builder::new()
        .prefix("ferry-stall-")
        .tempdir_in(&parent)
        .unwrap();
    fs::write(root.path().join("id_passwd.txt"), default_users_file()).unwrap();
    let daemon = Daemon::start(root.path());
    let addr = daemon.addr;
    let done = Arc::new(AtomicBool::new(false));
    let probe = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.login(BOB, BOB_PW);
            let mut worst = (Duration::ZERO, Duration::ZERO);
            let started = Instant::now();
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.noop();
                let took = t.elapsed();
                if took > worst.0 {
                    worst = (took, started.elapsed());
                }
                samples.push(took);
                thread::sleep(Duration::from_millis(1));
            }
            samples.sort();
            let p99 = samples[samples.len() * 99 / 100];
            (worst, p99, samples.len())
        })
    };
    thread::sleep(Duration::from_millis(200));
    let block = pseudo_random_bytes(31, 8 * 1024 * 1024);
    let size = mib * 1024 * 1024;
    let mut c = Client::connect(addr);
    c.set_read_timeout(Duration::from_secs(120));
    c.login(ALICE, ALICE_PW);
    let started = Instant::now();
    c.start_put("big", size);
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        c.send_raw(&block[..n]);
        left -= n;
    }
    let sent = started.elapsed();
    let (code, text) = c.read_reply();
    let total = started.elapsed();
    assert_eq!(code, 226, "{text}");
    thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    let ((worst, at), p99, count) = probe.join().unwrap();
    eprintln!(
        "stall: {mib} MiB synced upload to {parent}: {:.0} MB/s; last byte sent to 226: {:?}; \
         probe: {count} NOOPs, p99 {p99:?}, longest {worst:?} at {at:?} (upload ran {:?}..{:?})",
        size as f64 / total.as_secs_f64() / 1e6,
        total - sent,
        Duration::from_millis(200),
        Duration::from_millis(200) + total,
    );
    drop(daemon);
}
