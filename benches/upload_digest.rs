//! What the SHA-256 of every upload costs.
//!
//! `cargo bench --bench upload_digest` measures, on this machine:
//!
//! 1. SHA-256 alone, in memory, through `ferry::internal::integrity::Hasher`;
//! 2. uploads of a large file to a release `ferryd` over loopback, with the
//!    storage on tmpfs (`/dev/shm` when present) and `--no-fsync`, so the
//!    disk does not hide the CPU cost;
//!
//! and reports the share of the upload's time that hashing takes: upload
//! rate divided by hash rate. ferryd hashes on its one thread, in series
//! with reading the socket and writing the file, so while it is the
//! bottleneck that share is what the digest costs, and the upload rate
//! without it would be `1 / (1/upload - 1/hash)`. On tmpfs that is the worst
//! case; on a real disk with fsync the share is smaller.
//!
//! Settings: `FERRY_BENCH_MIB` (file size, default 1024),
//! `FERRY_BENCH_DIR` (where the storage goes, default `/dev/shm`),
//! `FERRY_BENCH_FSYNC=1` (sync every upload, as ferryd does by default).
//! Traffic stays on 127.0.0.1; sizes and rounds are fixed, so it ends by
//! itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry::internal::integrity::Hasher;

const ROUNDS: usize = 5;
const CHUNK: usize = 1 << 20;

fn main() {
    let mib: u64 = std::env::var("FERRY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();

    let hash_rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut hasher = Hasher::new();
            for _ in 0..(size / CHUNK as u64) {
                hasher.update(&chunk);
            }
            std::hint::black_box(hasher.finish());
            rate(size, started.elapsed())
        })
        .collect();

    let fsync = std::env::var("FERRY_BENCH_FSYNC").is_ok_and(|v| v == "1");
    let parent = std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let base = if Path::new(&parent).is_dir() {
        tempfile::tempdir_in(&parent)
    } else {
        tempfile::tempdir()
    }
    .expect("temporary directory");
    let users = base.path().join("users.txt");
    std::fs::write(&users, "bench:bench\n").unwrap();
    let mut server = Server::start(base.path(), &users, fsync);

    let mut upload_rates = Vec::new();
    for round in 0..ROUNDS {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        expect(&mut reader, "220");
        writer.write_all(b"AUTH bench bench\n").unwrap();
        expect(&mut reader, "230");
        let started = Instant::now();
        writeln!(writer, "PUT {size} file-{round}").unwrap();
        expect(&mut reader, "150");
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            writer.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        let reply = expect(&mut reader, "226");
        upload_rates.push(rate(size, started.elapsed()));
        assert!(reply.contains("sha256="), "{reply}");
        writeln!(writer, "DEL file-{round}\nQUIT").unwrap();
        expect(&mut reader, "250");
    }
    server.stop();

    let hash = median(hash_rates);
    let upload = median(upload_rates);
    let share = upload / hash;
    println!(
        "{mib} MiB uploads to {} ({}), {ROUNDS} rounds, medians",
        base.path().display(),
        if fsync { "fsync" } else { "--no-fsync" }
    );
    println!("SHA-256 alone:                 {:>6.0} MB/s", hash / 1e6);
    println!("upload with the digest:        {:>6.0} MB/s", upload / 1e6);
    if share < 1.0 {
        println!(
            "upload without it (derived):   {:>6.0} MB/s",
            upload / (1.0 - share) / 1e6
        );
    }
    println!("digest's share of upload time: {:>6.0} %", 100.0 * share);
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn expect(reader: &mut BufReader<TcpStream>, code: &str) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("reply");
    assert!(line.starts_with(code), "expected {code}, got {line:?}");
    line
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &Path, users: &Path, fsync: bool) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "info"])
            .args(if fsync { None } else { Some("--no-fsync") })
            .arg("--storage")
            .arg(dir.join("storage"))
            .arg("--users")
            .arg(users)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferryd");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("ferryd exited before listening");
            }
            if let Some((_, addr)) = line.trim().split_once("ferryd listening on ") {
                break addr.parse().unwrap();
            }
        };
        // Keep draining the log so ferryd never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stderr.read_to_end(&mut sink);
        });
        Server { child, addr }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
