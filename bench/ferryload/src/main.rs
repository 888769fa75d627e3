//! ferryload: the one raw client `bench/run` uses for ferryd, nginx and
//! vsftpd, so every system in a scenario is measured through the same code.
//!
//! Each measuring subcommand appends rows `scenario system metric value
//! unit` (tab-separated) to `--out`; `report` turns those rows into the
//! Markdown of `bench/RESULTS.md` (medians and ratios), `svg` draws the
//! cost curves. Blocking sockets and one thread per connection (the server
//! is single-threaded, the client need not be), except for small requests,
//! which one `mio` loop drives (`event.rs`) so that the client is not what
//! is measured. Traffic goes where `--addr` says; `bench/run` only ever
//! passes loopback addresses.

mod client;
mod event;
mod report;
mod svg;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use client::{Client, Payload, Proto, Target};

pub fn die(msg: &str) -> ! {
    eprintln!("ferryload: {msg}");
    std::process::exit(2)
}

/// `--key value` pairs, and everything after `--` for `startup`.
struct Args {
    map: HashMap<String, String>,
    rest: Vec<String>,
}

impl Args {
    fn parse(argv: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut rest = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            if a == "--" {
                rest = argv[i + 1..].to_vec();
                break;
            }
            let Some(k) = a.strip_prefix("--") else {
                die(&format!("unexpected argument {a}"))
            };
            let v = argv
                .get(i + 1)
                .cloned()
                .unwrap_or_else(|| die(&format!("--{k} needs a value")));
            map.insert(k.to_owned(), v);
            i += 2;
        }
        Args { map, rest }
    }
    fn s(&self, k: &str) -> String {
        self.map
            .get(k)
            .cloned()
            .unwrap_or_else(|| die(&format!("missing --{k}")))
    }
    fn or(&self, k: &str, d: &str) -> String {
        self.map.get(k).cloned().unwrap_or_else(|| d.to_owned())
    }
    fn n(&self, k: &str, d: u64) -> u64 {
        match self.map.get(k) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{k}: not a number"))),
            None => d,
        }
    }
    fn target(&self) -> Target {
        let addr: SocketAddr = self
            .s("addr")
            .parse()
            .unwrap_or_else(|_| die("--addr: not IP:PORT"));
        Target {
            proto: Proto::parse(&self.s("proto")),
            addr,
            user: self.or("user", "bench"),
            pass: self.or("pass", "bench"),
            prefix: self.or("prefix", ""),
        }
    }
}

/// Appends one result row to `--out`.
struct Out {
    path: String,
    scenario: String,
    system: String,
}

impl Out {
    fn new(a: &Args) -> Out {
        Out {
            path: a.s("out"),
            scenario: a.s("scenario"),
            system: a.s("system"),
        }
    }
    fn row(&self, metric: &str, value: f64, unit: &str) {
        let line = format!(
            "{}\t{}\t{metric}\t{value:.6}\t{unit}\n",
            self.scenario, self.system
        );
        print!("{line}");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|e| die(&format!("{}: {e}", self.path)));
        f.write_all(line.as_bytes())
            .unwrap_or_else(|e| die(&format!("{}: {e}", self.path)));
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        die(
            "usage: ferryload <mkfile|xfer|small|idle|mix|burst|populate|list|startup|record|report|svg|hashrate> --key value ...",
        )
    };
    let a = Args::parse(&argv[1..]);
    client::READ_TIMEOUT.store(a.n("timeout", 120).max(1), Ordering::Relaxed);
    match cmd.as_str() {
        "mkfile" => mkfile(&a),
        "xfer" => xfer(&a),
        "small" => small(&a),
        "idle" => idle(&a),
        "mix" => mix(&a),
        "burst" => burst(&a),
        "populate" => populate(&a),
        "list" => list(&a),
        "startup" => startup(&a),
        "record" => Out::new(&a).row(
            &a.s("metric"),
            a.s("value")
                .parse()
                .unwrap_or_else(|_| die("--value: not a number")),
            &a.s("unit"),
        ),
        "report" => report::main(
            &a.s("results"),
            &a.or("machine", ""),
            &a.or("evidence", ""),
            &a.or("only", ""),
            &a.or("curves", ""),
        ),
        "svg" => svg::main(&a.s("curves"), &a.s("dir")),
        "hashrate" => hashrate(&a),
        _ => die(&format!("unknown command {cmd}")),
    }
}

/// Writes a file of `--size` bytes of the pattern (the content every
/// download is checked against).
fn mkfile(a: &Args) {
    let pat = client::pattern();
    let mut f = io::BufWriter::new(
        fs::File::create(a.s("path")).unwrap_or_else(|e| die(&format!("mkfile: {e}"))),
    );
    let mut left = a.n("size", 0);
    while left > 0 {
        let n = pat.len().min(left as usize);
        f.write_all(&pat[..n])
            .unwrap_or_else(|e| die(&format!("mkfile: {e}")));
        left -= n as u64;
    }
    f.flush().unwrap_or_else(|e| die(&format!("mkfile: {e}")));
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

/// One upload or download of `--size` bytes (`--repeat` times over one
/// session). Records the throughput of the median operation; with
/// `--curve FILE` also a point of the size/time curve. Downloads are
/// checked byte for byte against the pattern when `--verify 1`.
fn xfer(a: &Args) {
    let t = a.target();
    let name = a.s("name");
    let size = a.n("size", 0);
    let repeat = a.n("repeat", 1).max(1);
    let verify = a.n("verify", 0) == 1;
    let op = a.s("op");
    let pat = client::pattern();
    let mut c = Client::open(&t).unwrap_or_else(|e| die(&format!("connect {}: {e}", t.addr)));
    let mut times = Vec::new();
    for _ in 0..repeat {
        let start = Instant::now();
        match op.as_str() {
            "get" => {
                let mut off = 0u64;
                let mut ok = true;
                let n = c
                    .get(&name, &mut |b| {
                        if verify {
                            ok &= client::check_pattern(&pat, off, b);
                        }
                        off += b.len() as u64;
                    })
                    .unwrap_or_else(|e| die(&format!("GET {name}: {e}")));
                if n != size || !ok {
                    die(&format!("GET {name}: {n} bytes, content ok: {ok}"));
                }
            }
            "put" => {
                c.put(&name, &Payload::Pattern(&pat, size))
                    .unwrap_or_else(|e| die(&format!("PUT {name}: {e}")));
            }
            _ => die("--op get|put"),
        }
        times.push(start.elapsed().as_secs_f64());
    }
    let med = median(&mut times);
    if let Some(curve) = a.map.get("curve") {
        let line = format!(
            "{}\t{}\t{size}\t{:.6}\n",
            a.s("chart"),
            a.s("system"),
            med * 1e3
        );
        append(curve, &line);
    }
    if a.map.contains_key("out") {
        Out::new(a).row("throughput", size as f64 / med / 1e6, "MB/s");
    }
}

fn append(path: &str, line: &str) {
    print!("{line}");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| die(&format!("{path}: {e}")));
    f.write_all(line.as_bytes())
        .unwrap_or_else(|e| die(&format!("{path}: {e}")));
}

/// Collects per-thread latencies (µs) and merges them sorted.
fn merge(all: Vec<Vec<u32>>) -> Vec<u32> {
    let mut v: Vec<u32> = all.into_iter().flatten().collect();
    v.sort_unstable();
    v
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// `--conns` persistent sessions each fetching `--name` (GET or VIEW) one
/// request at a time, as fast as they can, for `--secs`: one blocking
/// thread per session, or with `--engine event` all sessions on one
/// thread (see `event.rs`).
fn small(a: &Args) {
    let t = a.target();
    let conns = a.n("conns", 64) as usize;
    let secs = a.n("secs", 5);
    let name = a.s("name");
    let op = a.or("op", "get");
    if a.or("engine", "threads") == "event" {
        let outcome = event::run(&t, conns, secs, &name, op == "view");
        let lat = merge(vec![outcome.latencies]);
        small_rows(a, &lat, outcome.elapsed.as_secs_f64(), outcome.errors);
        return;
    }
    let barrier = Arc::new(Barrier::new(conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for _ in 0..conns {
        let (t, name, op, barrier, stop, errors) = (
            t.clone(),
            name.clone(),
            op.clone(),
            barrier.clone(),
            stop.clone(),
            errors.clone(),
        );
        hs.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut c = Client::open(&t);
                    barrier.wait();
                    let mut lat = Vec::with_capacity(1 << 16);
                    let Ok(c) = c.as_mut() else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return lat;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let s = Instant::now();
                        let r = if op == "view" {
                            c.view(&name, &mut |_| ())
                        } else {
                            c.get(&name, &mut |_| ())
                        };
                        if r.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        lat.push(micros(s.elapsed()));
                    }
                    lat
                })
                .unwrap_or_else(|e| die(&format!("thread: {e}"))),
        );
    }
    barrier.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let lat = merge(hs.into_iter().filter_map(|h| h.join().ok()).collect());
    let el = start.elapsed().as_secs_f64();
    small_rows(a, &lat, el, errors.load(Ordering::Relaxed));
}

/// The rows of `small`, whichever engine drove it: `lat` sorted, in µs.
fn small_rows(a: &Args, lat: &[u32], secs: f64, errors: u64) {
    let out = Out::new(a);
    out.row("rate", lat.len() as f64 / secs, "req/s");
    out.row("p99", percentile(lat, 0.99), "ms");
    out.row("errors", errors as f64, "count");
}

/// PSS in KiB summed over `root` and all its descendants.
fn tree(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
            let ppid: u32 = after
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            parent.push((pid, ppid));
        }
    }
    let mut set = vec![root];
    let mut i = 0;
    while i < set.len() {
        let p = set[i];
        for &(c, pp) in &parent {
            if pp == p && !set.contains(&c) {
                set.push(c);
            }
        }
        i += 1;
    }
    set
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l[key.len()..].split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn pss_kib(root: u32) -> u64 {
    tree(root)
        .iter()
        .map(|&p| proc_field(p, "smaps_rollup", "Pss:"))
        .sum()
}

fn switches(root: u32) -> u64 {
    tree(root)
        .iter()
        .map(|&p| {
            proc_field(p, "status", "voluntary_ctxt_switches:")
                + proc_field(p, "status", "nonvoluntary_ctxt_switches:")
        })
        .sum()
}

/// Descriptors the server's processes hold now.
fn fds(root: u32) -> u64 {
    tree(root)
        .iter()
        .map(|&p| fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |rd| rd.count() as u64))
        .sum()
}

/// Footprint: PSS and descriptors of the server's processes (`--root-pid`
/// and its descendants) before and after `--n` idle logged-in sessions,
/// and the server's context switches per second over `--wake-secs` while
/// they idle. With `--users K` (K > 1) session i logs in as user
/// `<user><i % K>`: that many distinct users at once.
fn idle(a: &Args) {
    let base = a.target();
    let n = a.n("n", 10_000) as usize;
    let users = a.n("users", 1).max(1) as usize;
    let root = a.n("root-pid", 0) as u32;
    let small = a.or("small", "small.bin");
    std::thread::sleep(Duration::from_millis(500));
    let before = pss_kib(root);
    let fds_before = fds(root);
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let mut t = base.clone();
        if users > 1 {
            t.user = format!("{}{}", base.user, i % users);
        }
        match client::open_idle(&t, &small) {
            Ok(c) => sessions.push(c),
            Err(e) => die(&format!("session {i} of {n}: {e}")),
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = pss_kib(root);
    let fds_after = fds(root);
    let out = Out::new(a);
    out.row("sessions", sessions.len() as f64, "count");
    out.row("pss_before", before as f64, "KiB");
    out.row("pss_after", after as f64, "KiB");
    out.row(
        "per_session",
        (after as f64 - before as f64) * 1024.0 / n as f64,
        "B",
    );
    out.row(
        "fds_per_session",
        (fds_after as f64 - fds_before as f64) / n as f64,
        "count",
    );
    let t = base;
    let wake = a.n("wake-secs", 0);
    if wake > 0 {
        let s0 = switches(root);
        std::thread::sleep(Duration::from_secs(wake));
        let s1 = switches(root);
        out.row("wakeups", (s1 - s0) as f64 / wake as f64, "1/s");
    }
    // Prove the sessions were alive all along: the last one still answers.
    if let Some(c) = sessions.last_mut() {
        let ok = match t.proto {
            Proto::Ftp => true,
            // The distinct users have no file of their own.
            Proto::Line if users > 1 => c.list("/").is_ok(),
            _ => c.get(&small, &mut |_| ()).is_ok(),
        };
        if !ok {
            die("an idle session was closed by the server");
        }
    }
}

/// 64 KiB contents the mix uploads; distinct so a mix-up shows.
fn variants(size: usize) -> Vec<(Vec<u8>, String)> {
    (0..4u32)
        .map(|v| {
            let mut x = 0x9e37_79b9u32.wrapping_mul(v + 1);
            let data: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let hex: String = Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (data, hex)
        })
        .collect()
}

/// Scale: `--conns` sessions, each owning four files, doing a random mix
/// of LIST (10%), VIEW (20%), GET (40%) and PUT (30%) for `--secs`. Every
/// GET is hashed and compared with what that session last stored there,
/// every VIEW compared byte for byte, every server-reported upload digest
/// checked: mismatches are `checksum_errors`. With `--server-pid`, also
/// the server's CPU time per operation over the same window.
fn mix(a: &Args) {
    let base = a.target();
    let conns = a.n("conns", 1000) as usize;
    let secs = a.n("secs", 30);
    let size = a.n("size", 65536) as usize;
    let users = a.n("users", 1).max(1) as usize;
    // nginx keeps each user's files in a directory of its own: `/u<i>/`.
    let user_dirs = a.n("user-dirs", 0) == 1;
    let list_base = a.or("list-path", "/");
    // Sessions connect spread over this time: the scenario measures 1,000
    // sessions at work, not a connection storm (`burst` measures that).
    let ramp = Duration::from_millis(a.n("ramp-ms", 2000));
    let overflows0 = listen_overflows();
    let vars = Arc::new(variants(size));
    let barrier = Arc::new(Barrier::new(conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let (bad_sum, errors, bytes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut hs = Vec::new();
    for i in 0..conns {
        let mut t = base.clone();
        let u = i % users;
        if users > 1 {
            t.user = format!("{}{u}", base.user);
        }
        let dir = if user_dirs {
            format!("u{u}/")
        } else {
            String::new()
        };
        let list_path = format!("{list_base}{dir}");
        let (vars, barrier, stop, bad_sum, errors, bytes) = (
            vars.clone(),
            barrier.clone(),
            stop.clone(),
            bad_sum.clone(),
            errors.clone(),
            bytes.clone(),
        );
        hs.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let names: Vec<String> = (0..4).map(|k| format!("{dir}m{i}_{k}")).collect();
                    let mut held = [0usize, 1, 2, 3];
                    let mut lat = Vec::new();
                    std::thread::sleep(ramp * i as u32 / conns as u32);
                    let setup = (|| -> io::Result<Client> {
                        let mut c = Client::open(&t)?;
                        for k in 0..4 {
                            c.put(&names[k], &Payload::Bytes(&vars[held[k]].0))?;
                        }
                        Ok(c)
                    })();
                    barrier.wait();
                    let mut c = match setup {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("mix session {i}: setup: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            return lat;
                        }
                    };
                    let mut rng = 0x2545_f491_4f6c_dd1du64
                        ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    while !stop.load(Ordering::Relaxed) {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let k = (rng >> 8) as usize % 4;
                        let pick = (rng >> 16) % 10;
                        let s = Instant::now();
                        let r: io::Result<()> = match pick {
                            0 => c.list(&list_path).map(|n| {
                                bytes.fetch_add(n, Ordering::Relaxed);
                            }),
                            1 | 2 => {
                                let want = &vars[held[k]].0[..1024.min(size)];
                                let mut got = Vec::with_capacity(1024);
                                c.view(&names[k], &mut |b| got.extend_from_slice(b))
                                    .map(|n| {
                                        bytes.fetch_add(n, Ordering::Relaxed);
                                        if got != want {
                                            bad_sum.fetch_add(1, Ordering::Relaxed);
                                        }
                                    })
                            }
                            3..=6 => {
                                let mut h = Sha256::new();
                                c.get(&names[k], &mut |b| h.update(b)).map(|n| {
                                    bytes.fetch_add(n, Ordering::Relaxed);
                                    let hex: String =
                                        h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                                    if hex != vars[held[k]].1 {
                                        bad_sum.fetch_add(1, Ordering::Relaxed);
                                    }
                                })
                            }
                            _ => {
                                let v = (rng >> 24) as usize % 4;
                                c.put(&names[k], &Payload::Bytes(&vars[v].0)).map(|sha| {
                                    bytes.fetch_add(size as u64, Ordering::Relaxed);
                                    held[k] = v;
                                    if sha.is_some_and(|s| s != vars[v].1) {
                                        bad_sum.fetch_add(1, Ordering::Relaxed);
                                    }
                                })
                            }
                        };
                        match r {
                            Ok(()) => lat.push(micros(s.elapsed())),
                            Err(e) => {
                                eprintln!("mix session {i}: {e}");
                                errors.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    lat
                })
                .unwrap_or_else(|e| die(&format!("thread: {e}"))),
        );
    }
    // `--server-pid`: the server's CPU time over the same window (its one
    // thread; nginx: its worker), per operation done: steadier than the
    // rate on a machine whose speed swings, and what the rate comes to
    // when the server is the bottleneck.
    let server = a.map.get("server-pid").cloned();
    barrier.wait();
    let start = Instant::now();
    let cpu0 = server.as_deref().and_then(cpu_ns);
    std::thread::sleep(Duration::from_secs(secs));
    let cpu1 = server.as_deref().and_then(cpu_ns);
    stop.store(true, Ordering::Relaxed);
    let lat = merge(hs.into_iter().filter_map(|h| h.join().ok()).collect());
    let el = start.elapsed().as_secs_f64();
    let out = Out::new(a);
    out.row("ops", lat.len() as f64 / el, "op/s");
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        let ops = lat.len().max(1) as f64 * secs as f64 / el;
        out.row("server_cpu_per_op", (c1 - c0) as f64 / 1e3 / ops, "us");
    }
    out.row(
        "throughput",
        bytes.load(Ordering::Relaxed) as f64 / el / 1e6,
        "MB/s",
    );
    out.row("p99", percentile(&lat, 0.99), "ms");
    out.row(
        "checksum_errors",
        bad_sum.load(Ordering::Relaxed) as f64,
        "count",
    );
    out.row(
        "session_errors",
        errors.load(Ordering::Relaxed) as f64,
        "count",
    );
    out.row(
        "listen_overflows",
        listen_overflows().saturating_sub(overflows0) as f64,
        "count",
    );
}

/// CPU time the thread `pid` has run, in nanoseconds (the first field of
/// `/proc/<pid>/schedstat`).
fn cpu_ns(pid: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The kernel's count of connections dropped because a listener's accept
/// queue was full (TcpExt ListenOverflows, all listeners of the host).
fn listen_overflows() -> u64 {
    let text = fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A connection storm: `--n` sessions connect and log in at the same
/// instant (HTTP: make one small request). Records how many got in within
/// `--timeout` seconds, the p99 and slowest time to logged in, and the
/// listen-queue overflows the kernel counted meanwhile.
fn burst(a: &Args) {
    let t = a.target();
    let n = a.n("n", 1000) as usize;
    let small = a.or("small", "small.bin");
    let barrier = Arc::new(Barrier::new(n + 1));
    let overflows0 = listen_overflows();
    let mut hs = Vec::new();
    for _ in 0..n {
        let (t, small, barrier) = (t.clone(), small.clone(), barrier.clone());
        hs.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    let s = Instant::now();
                    let c = client::open_idle(&t, &small);
                    // Returned, so it stays open until every thread is done:
                    // the storm is n sessions at once.
                    (micros(s.elapsed()), c.ok())
                })
                .unwrap_or_else(|e| die(&format!("thread: {e}"))),
        );
    }
    barrier.wait();
    let results: Vec<(u32, Option<Client>)> =
        hs.into_iter().filter_map(|h| h.join().ok()).collect();
    let mut ok: Vec<u32> = results
        .iter()
        .filter(|r| r.1.is_some())
        .map(|r| r.0)
        .collect();
    ok.sort_unstable();
    let out = Out::new(a);
    out.row("logged_in", ok.len() as f64, "count");
    out.row("failed", (n - ok.len()) as f64, "count");
    out.row("login_p99", percentile(&ok, 0.99), "ms");
    out.row("login_max", percentile(&ok, 1.0), "ms");
    out.row(
        "listen_overflows",
        listen_overflows().saturating_sub(overflows0) as f64,
        "count",
    );
}

/// Creates `--n` empty files `f000000`.. in `--dir` (for the LIST curve;
/// the listing cost is per entry, not per byte). With `--levels L` (L > 0)
/// a tree instead: `--fanout F` folders `d0`.. in each folder, L levels
/// deep, and the `--n` files spread evenly over the F^L deepest folders.
fn populate(a: &Args) {
    let dir = a.s("dir");
    let n = a.n("n", 0);
    let levels = a.n("levels", 0) as u32;
    let fanout = a.n("fanout", 10).max(1);
    let leaves = fanout.pow(levels);
    for leaf in 0..leaves {
        let mut d = Path::new(&dir).to_path_buf();
        let mut rest = leaf;
        for _ in 0..levels {
            d.push(format!("d{}", rest % fanout));
            rest /= fanout;
        }
        fs::create_dir_all(&d).unwrap_or_else(|e| die(&format!("{}: {e}", d.display())));
        // Leaf k of L gets files [k n / L, (k + 1) n / L): n in all.
        for i in leaf * n / leaves..(leaf + 1) * n / leaves {
            let p = d.join(format!("f{i:06}"));
            if !p.exists() {
                fs::File::create(&p).unwrap_or_else(|e| die(&format!("{}: {e}", p.display())));
            }
        }
    }
}

/// LIST of `--list-path`, median of `--repeat`. With `--recursive 1` the
/// whole tree beneath it in one request (ferryd: line `TREE`, HTTP
/// `?recursive`); with `--walk 1` the tree the way a client must fetch it
/// from nginx's `autoindex`, which has no recursive form: the folder's
/// JSON, then each folder it names, one request after another over the
/// same keep-alive connection, until none is left. The time is to the
/// last byte of the last listing. With `--curve FILE` a curve point with
/// x = `--files`; with `--out` the rows `<--metric> (ms)` and, for a
/// tree, `requests` and `bytes` per listing.
fn list(a: &Args) {
    let t = a.target();
    let repeat = a.n("repeat", 5).max(1);
    let path = a.or("list-path", "/");
    let recursive = a.n("recursive", 0) == 1;
    let walk = a.n("walk", 0) == 1;
    let mut c = Client::open(&t).unwrap_or_else(|e| die(&format!("connect {}: {e}", t.addr)));
    let mut times = Vec::new();
    let (mut requests, mut bytes) = (0u64, 0u64);
    for _ in 0..repeat {
        let s = Instant::now();
        (requests, bytes) = if walk {
            walk_autoindex(&mut c, &path)
        } else {
            let n = c
                .listing(&path, recursive, &mut |_| ())
                .unwrap_or_else(|e| die(&format!("LIST {path}: {e}")));
            (1, n)
        };
        times.push(s.elapsed().as_secs_f64());
    }
    let ms = median(&mut times) * 1e3;
    if let Some(curve) = a.map.get("curve") {
        let line = format!(
            "{}\t{}\t{}\t{ms:.6}\n",
            a.s("chart"),
            a.s("system"),
            a.s("files")
        );
        append(curve, &line);
    }
    if a.map.contains_key("out") {
        let out = Out::new(a);
        out.row(&a.or("metric", "ttlb"), ms, "ms");
        if recursive || walk {
            out.row("requests", requests as f64, "count");
            out.row("bytes", bytes as f64, "B");
        }
    }
}

/// Fetches `path` and every folder beneath it from nginx's `autoindex_format
/// json`, depth first, over `c`; returns the requests made and the bytes
/// of all the listings.
fn walk_autoindex(c: &mut Client, path: &str) -> (u64, u64) {
    let mut todo = vec![path.to_owned()];
    let (mut requests, mut bytes) = (0u64, 0u64);
    let mut body = Vec::new();
    while let Some(dir) = todo.pop() {
        body.clear();
        bytes += c
            .listing(&dir, false, &mut |b| body.extend_from_slice(b))
            .unwrap_or_else(|e| die(&format!("GET {dir}: {e}")));
        requests += 1;
        for name in autoindex_folders(&body) {
            todo.push(format!("{dir}{name}/"));
        }
    }
    (requests, bytes)
}

/// The folders an `autoindex_format json` listing names: nginx writes one
/// object per line, `{ "name":"<name>", "type":"directory", ... }`. The
/// benchmark's names are plain ASCII without quotes or escapes, so the
/// name is what lies between its quotes (anything else is refused).
fn autoindex_folders(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap_or_else(|_| die("autoindex: not UTF-8"));
    text.lines()
        .filter(|l| l.contains("\"type\":\"directory\""))
        .map(|l| {
            let name = l
                .split_once("\"name\":\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(name, _)| name)
                .unwrap_or_else(|| die(&format!("autoindex: no name in {l:?}")));
            if name.contains(['\\', '%', '&']) {
                die(&format!("autoindex: a name the walk cannot use: {name:?}"));
            }
            name.to_owned()
        })
        .collect()
}

/// SHA-256 of `--mib` MiB in memory, with the same `sha2` ferryd uses:
/// the most an upload can reach while ferryd hashes it on its one thread.
fn hashrate(a: &Args) {
    let pat = client::pattern();
    let mib = a.n("mib", 1024);
    let s = Instant::now();
    let mut h = Sha256::new();
    for _ in 0..mib {
        h.update(&pat);
    }
    let d = h.finalize();
    let secs = s.elapsed().as_secs_f64();
    println!(
        "{:.0} MB/s ({:02x}..)",
        (mib << 20) as f64 / secs / 1e6,
        d[0]
    );
}

/// Start-up to listening: runs the command after `--`, and times from
/// spawn until `--addr` accepts a connection; median of `--count`.
fn startup(a: &Args) {
    let addr: SocketAddr = a.s("addr").parse().unwrap_or_else(|_| die("--addr"));
    let count = a.n("count", 20);
    let mut times = Vec::new();
    for _ in 0..count {
        let s = Instant::now();
        let mut child = Command::new(&a.rest[0])
            .args(&a.rest[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| die(&format!("{}: {e}", a.rest[0])));
        loop {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                die(&format!("server exited before listening: {st}"));
            }
            if s.elapsed() > Duration::from_secs(10) {
                die("server not listening after 10 s");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        times.push(s.elapsed().as_secs_f64() * 1e3);
        let _ = child.kill();
        let _ = child.wait();
    }
    Out::new(a).row("startup", median(&mut times), "ms");
}
