//! The `ferry` command-line client, end to end: the real binary against a
//! real `ferryd` on loopback, in scratch directories, with a clean
//! environment (no settings file or password of whoever runs the tests).
//!
//! Faults are real too: the client is killed mid-transfer, and a loopback
//! proxy between client and server cuts a connection or flips a byte.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use tempfile::TempDir;

const EXIT_LOCAL: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_AUTH: i32 = 3;
const EXIT_REMOTE: i32 = 4;
const EXIT_NETWORK: i32 = 5;
const EXIT_CHECKSUM: i32 = 6;

/// A run of `ferry` may take this long at most (debug build, 2 cores, rate
/// limits of a few seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// A scratch home and working directory for the client.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("ferry-cli-")
            .tempdir()
            .unwrap();
        for sub in ["home", "work"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        Scratch { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.work().join(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// `ferry` with nothing set: no server, user or password.
    fn bare(&self) -> Command {
        let mut cmd = Command::new(ferry_bin());
        for var in [
            "FERRY_PASSWORD",
            "FERRY_SERVER",
            "FERRY_USER",
            "FERRY_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.home())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .current_dir(self.work());
        cmd
    }

    /// `ferry --server <addr> --user alice` with alice's password.
    fn ferry(&self, addr: SocketAddr) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--server")
            .arg(addr.to_string())
            .arg("--user")
            .arg(ALICE)
            .env("FERRY_PASSWORD", ALICE_PW);
        cmd
    }
}

fn run(cmd: &mut Command) -> RunOutput {
    run_command_to_exit(cmd, RUN_TIMEOUT)
}

fn code(out: &RunOutput) -> i32 {
    out.status.code().expect("ferry exited by a signal")
}

#[track_caller]
fn assert_ok(out: &RunOutput) {
    assert_eq!(
        code(out),
        0,
        "ferry failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect()
}

fn stored_file(server: &TestServer, name: &str) -> Vec<u8> {
    fs::read(server.user_dir(ALICE).join(name)).unwrap()
}

// ---------------------------------------------------------------------------
// Round trips and verification
// ---------------------------------------------------------------------------

#[test]
fn put_and_get_round_trip_several_files_verified_by_sha256() {
    let server = TestServer::start();
    let s = Scratch::new();
    let files: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("one", b"x".to_vec()),
        ("five-mib.bin", pseudo_random_bytes(5, 5 << 20)),
        ("name with spaces.txt", b"spaces are fine\n".to_vec()),
    ];
    for (name, data) in &files {
        s.file(name, data);
    }

    let put = run(s
        .ferry(server.addr())
        .arg("put")
        .args(files.iter().map(|(n, _)| n))
        .arg("--json"));
    assert_ok(&put);
    let reports = json_lines(&put.stdout);
    assert_eq!(reports.len(), files.len(), "{}", put.stdout);
    for ((name, data), report) in files.iter().zip(&reports) {
        assert_eq!(report["op"], "put");
        assert_eq!(report["ok"], true);
        assert_eq!(report["remote"], *name);
        assert_eq!(report["size"], data.len() as u64);
        assert_eq!(report["sha256"], sha256_hex(data));
        assert_eq!(report["resumed_from"], 0);
        assert_eq!(&stored_file(&server, name), data, "{name} on the server");
    }
    // No progress bar and nothing else when stderr is not a terminal.
    assert_eq!(put.stderr, "");

    fs::create_dir(s.work().join("back")).unwrap();
    let get = run(s
        .ferry(server.addr())
        .args(["get", "-d", "back", "--json"])
        .args(files.iter().map(|(n, _)| n)));
    assert_ok(&get);
    let reports = json_lines(&get.stdout);
    assert_eq!(reports.len(), files.len());
    for ((name, data), report) in files.iter().zip(&reports) {
        assert_eq!(report["op"], "get");
        assert_eq!(report["sha256"], sha256_hex(data));
        assert_eq!(report["size"], data.len() as u64);
        let local = s.work().join("back").join(name);
        assert_eq!(
            report["local"],
            local.strip_prefix(s.work()).unwrap().to_str().unwrap()
        );
        assert_eq!(&fs::read(&local).unwrap(), data, "{name} downloaded");
    }
    assert_eq!(
        dir_names(&s.work().join("back")).len(),
        files.len(),
        "only the files, no .ferry-part left"
    );
}

#[test]
fn text_summaries_name_both_ends_and_the_digest() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = b"hello\n";
    s.file("local.txt", data);
    let put = run(s
        .ferry(server.addr())
        .args(["put", "local.txt", "-o", "remote.txt"]));
    assert_ok(&put);
    assert_eq!(stored_file(&server, "remote.txt"), data);
    let line = put.stdout.trim_end();
    assert!(
        line.starts_with("uploaded local.txt as remote.txt: 6 bytes in ")
            && line.ends_with(&format!("sha256={} verified", sha256_hex(data))),
        "{line}"
    );

    let get = run(s
        .ferry(server.addr())
        .args(["get", "remote.txt", "-o", "copy.txt"]));
    assert_ok(&get);
    assert_eq!(fs::read(s.work().join("copy.txt")).unwrap(), data);
    assert!(
        get.stdout
            .starts_with("downloaded remote.txt to copy.txt: 6 bytes")
    );

    let quiet = run(s.ferry(server.addr()).args(["get", "-q", "remote.txt"]));
    assert_ok(&quiet);
    assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
}

#[test]
fn get_replaces_an_existing_local_file_only_with_verified_content() {
    let server = TestServer::start();
    let s = Scratch::new();
    server.plant_file(ALICE, "doc", b"new content");
    s.file("doc", b"old local content");
    assert_ok(&run(s.ferry(server.addr()).args(["get", "--force", "doc"])));
    assert_eq!(fs::read(s.work().join("doc")).unwrap(), b"new content");

    // The server's digest is forged: the download must not replace the file.
    server.plant_file(ALICE, "doc2", b"what the server has");
    let mut probe = server.alice();
    probe.expect("HASH doc2", 213);
    forge_recorded_sha256(&server.sum_record(ALICE, "doc2"), &"ab".repeat(32));
    s.file("doc2", b"keep me");
    let out = run(s.ferry(server.addr()).args(["get", "-f", "doc2"]));
    assert_eq!(code(&out), EXIT_CHECKSUM, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("doc2: checksum mismatch: expected sha256=abab"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read(s.work().join("doc2")).unwrap(), b"keep me");
    assert!(!s.work().join("doc2.ferry-part").exists());
}

#[test]
fn an_upload_corrupted_on_the_way_is_a_checksum_error() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(7, 300_000);
    s.file("data.bin", &data);
    // The proxy flips one byte of the payload on the first connection.
    let proxy = Proxy::start(server.addr(), Fault::FlipUpstreamByte(200_000));
    let out = run(s.ferry(proxy.addr).args(["put", "data.bin", "--json"]));
    assert_eq!(code(&out), EXIT_CHECKSUM, "{}", out.stderr);
    let report = &json_lines(&out.stdout)[0];
    assert_eq!(report["ok"], false);
    assert_eq!(report["exit_code"], EXIT_CHECKSUM);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains(&format!("expected sha256={}", sha256_hex(&data))),
        "{report}"
    );
}

// ---------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------

/// Starts `ferry` and kills it with SIGKILL once `progressed` says enough
/// has moved.
fn kill_midway(mut cmd: Command, mut progressed: impl FnMut() -> bool) {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moved = wait_until(Duration::from_secs(30), &mut progressed);
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        moved && !finished_early,
        "the transfer was not caught midway"
    );
}

#[test]
fn a_killed_download_is_resumed_from_its_part_file() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(11, 5 << 20);
    server.plant_file(ALICE, "big.bin", &data);
    let part = s.work().join("big.bin.ferry-part");

    let mut slow = s.ferry(server.addr());
    slow.args(["get", "big.bin", "--limit-rate", "1M"]);
    kill_midway(slow, || {
        fs::metadata(&part).is_ok_and(|m| m.len() >= 512 * 1024)
    });
    let held = fs::metadata(&part).unwrap().len();
    assert!(held < data.len() as u64);
    assert!(
        !s.work().join("big.bin").exists(),
        "not renamed before verified"
    );

    let out = run(s.ferry(server.addr()).args(["get", "big.bin", "--json"]));
    assert_ok(&out);
    let report = &json_lines(&out.stdout)[0];
    assert_eq!(report["resumed_from"], held);
    assert_eq!(report["sha256"], sha256_hex(&data));
    assert_eq!(fs::read(s.work().join("big.bin")).unwrap(), data);
    assert!(!part.exists());
}

#[test]
fn a_killed_upload_is_resumed_from_the_servers_partial() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(12, 5 << 20);
    s.file("big.bin", &data);

    let mut slow = s.ferry(server.addr());
    slow.args(["put", "big.bin", "--limit-rate", "1M"]);
    kill_midway(slow, || server.tmp_bytes() >= 512 * 1024);
    let mut probe = server.alice();
    assert!(
        wait_until(Duration::from_secs(10), || probe.partial("big.bin") > 0),
        "the server kept no partial"
    );
    let held = probe.partial("big.bin");
    assert!(!server.user_dir(ALICE).join("big.bin").exists());

    let out = run(s.ferry(server.addr()).args(["put", "big.bin", "--json"]));
    assert_ok(&out);
    let report = &json_lines(&out.stdout)[0];
    assert_eq!(report["resumed_from"], held);
    assert_eq!(report["sha256"], sha256_hex(&data));
    assert_eq!(stored_file(&server, "big.bin"), data);
    assert_eq!(probe.partial("big.bin"), 0);
}

#[test]
fn a_partial_of_other_content_is_not_continued() {
    let server = TestServer::start();
    let s = Scratch::new();
    // An interrupted upload of one content...
    let old = pseudo_random_bytes(1, 100_000);
    let mut c = server.alice();
    c.start_put("f", old.len());
    c.send_raw(&old[..40_000]);
    drop(c);
    let mut probe = server.alice();
    assert!(wait_until(Duration::from_secs(10), || probe.partial("f") == 40_000));

    // ...and then a client putting another of the same size.
    let new = pseudo_random_bytes(2, 100_000);
    s.file("f", &new);
    let out = run(s.ferry(server.addr()).args(["put", "f", "--json"]));
    assert_ok(&out);
    assert_eq!(json_lines(&out.stdout)[0]["resumed_from"], 0);
    assert_eq!(stored_file(&server, "f"), new);

    // The same on the download side: a .ferry-part of other bytes.
    s.file("f.ferry-part", &old[..40_000]);
    let out = run(s.ferry(server.addr()).args(["get", "f", "--json"]));
    assert_ok(&out);
    assert_eq!(json_lines(&out.stdout)[0]["resumed_from"], 0);
    assert_eq!(fs::read(s.work().join("f")).unwrap(), new);

    // And one longer than the file.
    s.file("f.ferry-part", &pseudo_random_bytes(3, 150_000));
    assert_ok(&run(s.ferry(server.addr()).args(["get", "f"])));
    assert_eq!(fs::read(s.work().join("f")).unwrap(), new);
}

#[test]
fn two_downloads_into_one_file_do_not_mix() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(13, 2 << 20);
    server.plant_file(ALICE, "f", &data);
    let part = s.work().join("f.ferry-part");
    let mut slow = s
        .ferry(server.addr())
        .args(["get", "-q", "f", "--limit-rate", "1M"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || fs::metadata(&part)
        .is_ok_and(|m| m.len() > 0)));
    let second = run(s.ferry(server.addr()).args(["get", "f"]));
    assert_eq!(code(&second), EXIT_LOCAL, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("another download to this file is running"),
        "{}",
        second.stderr
    );
    assert!(wait_child(&mut slow, RUN_TIMEOUT).unwrap().success());
    assert_eq!(fs::read(s.work().join("f")).unwrap(), data);
}

#[test]
fn no_resume_starts_over() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(4, 200_000);
    server.plant_file(ALICE, "f", &data);
    s.file("f.ferry-part", &data[..50_000]);
    let out = run(s
        .ferry(server.addr())
        .args(["get", "f", "--no-resume", "--json"]));
    assert_ok(&out);
    assert_eq!(json_lines(&out.stdout)[0]["resumed_from"], 0);
    assert_eq!(fs::read(s.work().join("f")).unwrap(), data);

    // Without --no-resume the same part file is continued.
    s.file("f.ferry-part", &data[..50_000]);
    let out = run(s.ferry(server.addr()).args(["get", "f", "--json"]));
    assert_eq!(json_lines(&out.stdout)[0]["resumed_from"], 50_000);
    assert_eq!(fs::read(s.work().join("f")).unwrap(), data);
}

#[test]
fn retries_reconnect_and_resume_after_a_dropped_connection() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(21, 3 << 20);
    server.plant_file(ALICE, "down.bin", &data);
    s.file("up.bin", &data);

    // Download: the first connection is cut after 1 MiB from the server.
    let proxy = Proxy::start(server.addr(), Fault::CutDownstreamAfter(1 << 20));
    let out = run(s
        .ferry(proxy.addr)
        .args(["get", "down.bin", "--retries", "3", "--json"]));
    assert_ok(&out);
    let report = &json_lines(&out.stdout)[0];
    let resumed = report["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0 && resumed <= 1 << 20, "{report}");
    assert_eq!(fs::read(s.work().join("down.bin")).unwrap(), data);
    assert!(
        out.stderr.contains("reconnecting (retry 1 of 3)"),
        "{}",
        out.stderr
    );
    assert_eq!(proxy.connections(), 2);

    // Upload: the first connection is cut after 1 MiB to the server.
    let proxy = Proxy::start(server.addr(), Fault::CutUpstreamAfter(1 << 20));
    let out = run(s
        .ferry(proxy.addr)
        .args(["put", "up.bin", "--retries", "3", "--json"]));
    assert_ok(&out);
    assert_eq!(json_lines(&out.stdout)[0]["sha256"], sha256_hex(&data));
    assert_eq!(stored_file(&server, "up.bin"), data);
}

#[test]
fn without_retries_a_dropped_connection_is_a_network_failure() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(22, 3 << 20);
    server.plant_file(ALICE, "a", &data);
    server.plant_file(ALICE, "b", b"b");
    let proxy = Proxy::start(server.addr(), Fault::CutDownstreamAfter(1 << 20));
    let out = run(s.ferry(proxy.addr).args(["get", "a", "b"]));
    assert_eq!(code(&out), EXIT_NETWORK, "{}", out.stderr);
    assert!(out.stderr.contains("ferry: get: a: network:") || out.stderr.contains("network"));
    // What arrived is kept for the next run; the rest was not tried.
    assert!(fs::metadata(s.work().join("a.ferry-part")).unwrap().len() > 0);
    assert!(!s.work().join("b").exists());
    assert_eq!(proxy.connections(), 1);
}

// ---------------------------------------------------------------------------
// Listing, preview, delete, hash
// ---------------------------------------------------------------------------

#[test]
fn ls_lines_up_and_speaks_json() {
    let server = TestServer::start();
    let s = Scratch::new();
    let empty = run(s.ferry(server.addr()).arg("ls"));
    assert_ok(&empty);
    assert_eq!(empty.stdout, "");

    server.plant_file(ALICE, "small", b"12345");
    server.plant_file(ALICE, "big one", &vec![0; 3 * 1024 * 1024 / 2]);
    let out = run(s.ferry(server.addr()).arg("ls"));
    assert_ok(&out);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[0].starts_with("1572864  ") && lines[0].ends_with("  big one"));
    assert!(lines[1].starts_with("      5  ") && lines[1].ends_with("  small"));
    // The date column: YYYY-MM-DD HH:MM UTC (std knows no time zones, and
    // the column says so).
    let date = &lines[0][9..29];
    assert!(
        date.as_bytes()[4] == b'-' && date.as_bytes()[13] == b':' && date.ends_with(" UTC"),
        "{date}"
    );

    let human = run(s.ferry(server.addr()).args(["ls", "-h"]));
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(lines[0].starts_with("1.5M  "), "{}", human.stdout);
    assert!(lines[1].starts_with("   5  "), "{}", human.stdout);

    let json = run(s.ferry(server.addr()).args(["ls", "--json"]));
    let entries = json_lines(&json.stdout);
    assert!(entries.iter().all(|e| e["op"] == "ls"), "{}", json.stdout);
    assert_eq!(entries[0]["name"], "big one");
    assert_eq!(entries[0]["size"], 1572864);
    assert_eq!(entries[1]["name"], "small");
    assert!(entries[1]["mtime"].as_u64().unwrap() > 1_700_000_000);
}

#[test]
fn view_shows_text_as_text_and_anything_else_as_a_hex_dump() {
    let server = TestServer::start();
    let s = Scratch::new();
    let mut text = b"line one\nline two\n".repeat(100);
    server.plant_file(ALICE, "notes.txt", &text);
    let out = run(s.ferry(server.addr()).args(["view", "notes.txt"]));
    assert_ok(&out);
    text.truncate(1024);
    // The preview stops mid-line; a line break is added for the terminal.
    assert_eq!(
        out.stdout.as_bytes(),
        [&text[..], b"\n"].concat(),
        "the first 1024 bytes"
    );
    let raw = run(s.ferry(server.addr()).args(["view", "--raw", "notes.txt"]));
    assert_eq!(raw.stdout.as_bytes(), &text[..]);

    // Terminal escapes never reach the terminal.
    server.plant_file(ALICE, "evil", b"\x1b]0;pwned\x07\x1b[2Jhello");
    let out = run(s.ferry(server.addr()).args(["view", "evil"]));
    assert_ok(&out);
    assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
    assert!(
        out.stdout.starts_with(
            "00000000  1b 5d 30 3b 70 77 6e 65  64 07 1b 5b 32 4a 68 65  |.]0;pwned..[2Jhe|"
        ),
        "{}",
        out.stdout
    );

    // --raw: the bytes unchanged, for a pipe.
    let raw = run(s.ferry(server.addr()).args(["view", "evil", "--raw"]));
    assert_eq!(raw.stdout.as_bytes(), b"\x1b]0;pwned\x07\x1b[2Jhello");

    let missing = run(s.ferry(server.addr()).args(["view", "nope"]));
    assert_eq!(code(&missing), EXIT_REMOTE);
    assert!(
        missing
            .stderr
            .contains("nope: server said \"550 no such file\""),
        "{}",
        missing.stderr
    );
}

#[test]
fn rm_and_hash_take_several_names_and_report_each_failure() {
    let server = TestServer::start();
    let s = Scratch::new();
    server.plant_file(ALICE, "a", b"aaa");
    server.plant_file(ALICE, "b c", b"bbb");

    let hash = run(s.ferry(server.addr()).args(["hash", "a", "b c"]));
    assert_ok(&hash);
    assert_eq!(
        hash.stdout,
        format!("{}  a\n{}  b c\n", sha256_hex(b"aaa"), sha256_hex(b"bbb"))
    );
    let json = run(s.ferry(server.addr()).args(["hash", "--json", "a", "zzz"]));
    assert_eq!(code(&json), EXIT_REMOTE);
    let lines = json_lines(&json.stdout);
    assert_eq!(lines[0]["sha256"], sha256_hex(b"aaa"));
    assert_eq!(
        (&lines[1]["name"], &lines[1]["ok"]),
        (&"zzz".into(), &false.into())
    );

    let rm = run(s.ferry(server.addr()).args(["rm", "missing", "a", "b c"]));
    assert_eq!(code(&rm), EXIT_REMOTE, "{}", rm.stderr);
    assert!(
        rm.stderr
            .contains("missing: server said \"550 no such file\"")
    );
    assert!(
        dir_names(&server.user_dir(ALICE)).is_empty(),
        "both deleted"
    );
}

#[test]
fn names_that_could_smuggle_a_command_are_refused_before_sending() {
    let server = TestServer::start();
    let s = Scratch::new();
    server.plant_file(ALICE, "victim", b"v");
    for name in ["x\nDEL victim", "x\rDEL victim", "../victim", "."] {
        let out = run(s.ferry(server.addr()).args(["rm", name]));
        assert_eq!(code(&out), EXIT_USAGE, "{name:?}: {}", out.stderr);
    }
    assert!(server.user_dir(ALICE).join("victim").exists());
}

// ---------------------------------------------------------------------------
// Failures and their exit codes
// ---------------------------------------------------------------------------

#[test]
fn a_wrong_password_or_user_exits_3() {
    let server = TestServer::start();
    let s = Scratch::new();
    let mut wrong = s.ferry(server.addr());
    wrong.env("FERRY_PASSWORD", "not-it").arg("ls");
    let out = run(&mut wrong);
    assert_eq!(code(&out), EXIT_AUTH, "{}", out.stderr);
    assert!(out.stderr.contains("530 login incorrect"), "{}", out.stderr);

    let mut nobody = s.bare();
    nobody
        .args([
            "--server",
            &server.addr().to_string(),
            "--user",
            "nobody",
            "ls",
        ])
        .env("FERRY_PASSWORD", "x");
    assert_eq!(code(&run(&mut nobody)), EXIT_AUTH);

    let out = run(s
        .ferry(server.addr())
        .env("FERRY_PASSWORD", "not-it")
        .arg("shell"));
    assert_eq!(code(&out), EXIT_AUTH);
}

#[test]
fn usage_errors_exit_2_and_the_password_is_never_an_argument() {
    let server = TestServer::start();
    let s = Scratch::new();
    let addr = server.addr().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["put"],
        vec!["ls", "--password", "x"],
        vec!["get", "a", "b", "-o", "c"],
        vec!["--retries", "many", "ls"],
    ];
    for args in cases {
        let out = run(s.ferry(server.addr()).args(&args));
        assert_eq!(code(&out), EXIT_USAGE, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("Try 'ferry --help'"), "{}", out.stderr);
    }
    // No user anywhere.
    let mut no_user = s.bare();
    no_user
        .args(["--server", &addr, "ls"])
        .env("FERRY_PASSWORD", "x");
    let out = run(&mut no_user);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(out.stderr.contains("no user"), "{}", out.stderr);
    // No password and no terminal to ask on.
    let mut no_password = s.bare();
    no_password.args(["--server", &addr, "--user", ALICE, "ls"]);
    let out = run(&mut no_password);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(out.stderr.contains("FERRY_PASSWORD"), "{}", out.stderr);
}

#[test]
fn help_documents_every_exit_code() {
    let s = Scratch::new();
    let out = run(s.bare().arg("--help"));
    assert_ok(&out);
    for line in [
        "0  success",
        "1  a local file",
        "2  usage error",
        "3  authentication failed",
        "4  the server refused",
        "5  network failure",
        "6  checksum mismatch",
    ] {
        assert!(out.stdout.contains(line), "--help lacks {line:?}");
    }
}

#[test]
fn an_unreachable_server_exits_5_and_names_it() {
    let s = Scratch::new();
    // A port nobody listens on: bound, then closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(s.ferry(addr).arg("ls"));
    assert_eq!(code(&out), EXIT_NETWORK);
    assert!(
        out.stderr.contains(&format!("cannot connect to {addr}")),
        "{}",
        out.stderr
    );
}

#[test]
fn local_file_problems_exit_1_and_the_other_files_still_go() {
    let server = TestServer::start();
    let s = Scratch::new();
    s.file("good", b"good");
    fs::create_dir(s.work().join("a-dir")).unwrap();
    let out = run(s
        .ferry(server.addr())
        .args(["put", "missing", "a-dir", "good"]));
    assert_eq!(code(&out), EXIT_LOCAL, "{}", out.stderr);
    assert!(
        out.stderr.contains("missing: No such file"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("a-dir: not a regular file"),
        "{}",
        out.stderr
    );
    assert_eq!(stored_file(&server, "good"), b"good");

    // A download into a directory that does not exist.
    let out = run(s
        .ferry(server.addr())
        .args(["get", "good", "-o", "no/such/dir/x"]));
    assert_eq!(code(&out), EXIT_LOCAL, "{}", out.stderr);
}

#[test]
fn a_server_refusal_exits_4_with_the_reply() {
    let server = TestServer::builder()
        .args(["--max-file-size", "1000"])
        .start();
    let s = Scratch::new();
    s.file("big", &[7; 2000]);
    let out = run(s.ferry(server.addr()).args(["put", "big"]));
    assert_eq!(code(&out), EXIT_REMOTE);
    assert!(
        out.stderr.contains("big: server said \"552 file too large"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

#[test]
fn the_settings_file_gives_server_and_user_and_options_win() {
    let server = TestServer::start();
    let s = Scratch::new();
    server.plant_file(ALICE, "mine", b"alice's");
    server.plant_file(BOB, "his", b"bob's");
    let config_dir = s.home().join(".config").join("ferry");
    fs::create_dir_all(&config_dir).unwrap();
    fs::write(
        config_dir.join("config"),
        format!(
            "# ferry settings\nserver = {}\nuser = {ALICE}\n",
            server.addr()
        ),
    )
    .unwrap();

    let mut from_file = s.bare();
    from_file.env("FERRY_PASSWORD", ALICE_PW).arg("ls");
    let out = run(&mut from_file);
    assert_ok(&out);
    assert!(out.stdout.ends_with("  mine\n"), "{}", out.stdout);

    // The environment beats the file, and an option beats both.
    let mut env = s.bare();
    env.env("FERRY_USER", BOB)
        .env("FERRY_PASSWORD", BOB_PW)
        .arg("ls");
    assert!(run(&mut env).stdout.ends_with("  his\n"));
    let mut opt = s.bare();
    opt.env("FERRY_USER", "nobody")
        .env("FERRY_PASSWORD", BOB_PW)
        .args(["--user", BOB, "ls"]);
    assert!(run(&mut opt).stdout.ends_with("  his\n"));

    // XDG_CONFIG_HOME moves the file; --config names one.
    let elsewhere = s.dir.path().join("elsewhere");
    fs::create_dir_all(elsewhere.join("ferry")).unwrap();
    fs::write(elsewhere.join("ferry/config"), "user = nobody\n").unwrap();
    let mut xdg = s.bare();
    xdg.env("XDG_CONFIG_HOME", &elsewhere)
        .env("FERRY_PASSWORD", ALICE_PW)
        .args(["--server", &server.addr().to_string(), "ls"]);
    assert_eq!(
        code(&run(&mut xdg)),
        EXIT_AUTH,
        "user nobody came from XDG_CONFIG_HOME"
    );

    let bad = s.dir.path().join("bad-config");
    fs::write(&bad, "server = x\ncolour = blue\n").unwrap();
    let mut broken = s.bare();
    broken.arg("--config").arg(&bad).arg("ls");
    let out = run(&mut broken);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(
        out.stderr.contains("line 2: unknown setting 'colour'"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// The shell
// ---------------------------------------------------------------------------

fn shell(s: &Scratch, addr: SocketAddr, script: &str, extra: &[&str]) -> RunOutput {
    let mut child = s
        .ferry(addr)
        .arg("shell")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = thread::spawn(move || {
        let _ = err_pipe.read_to_string(&mut stderr);
        stderr
    });
    let _ = out_pipe.read_to_string(&mut stdout);
    let status = wait_child(&mut child, RUN_TIMEOUT).expect("the shell did not exit");
    RunOutput {
        status,
        stdout,
        stderr: err_reader.join().unwrap(),
    }
}

#[test]
fn the_shell_runs_commands_from_a_pipe() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(31, 100_000);
    s.file("my file.bin", &data);
    let script = "\
put 'my file.bin'
ls
get \"my file.bin\" -o copy.bin
hash my\\ file.bin

view nope
rm 'my file.bin'
ls --json
quit
ls
";
    let out = shell(&s, server.addr(), script, &["-q"]);
    // `view nope` failed: the status says so, and the rest still ran.
    assert_eq!(code(&out), EXIT_REMOTE, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("nope: server said \"550 no such file\"")
    );
    assert_eq!(fs::read(s.work().join("copy.bin")).unwrap(), data);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "ls, hash; the empty ls --json prints nothing:\n{}",
        out.stdout
    );
    assert!(lines[0].starts_with("100000  ") && lines[0].ends_with("  my file.bin"));
    assert_eq!(lines[1], format!("{}  my file.bin", sha256_hex(&data)));
    assert!(
        dir_names(&server.user_dir(ALICE)).is_empty(),
        "rm ran; ls after quit did not"
    );

    // A clean script exits 0; a line the shell cannot parse is a usage error.
    let clean = shell(&s, server.addr(), "ls\nhelp\n", &[]);
    assert_ok(&clean);
    assert!(clean.stdout.contains("quit, exit"));
    let bad = shell(&s, server.addr(), "get 'unclosed\nput\n", &[]);
    assert_eq!(code(&bad), EXIT_USAGE);
    assert!(bad.stderr.contains("unbalanced quotes"), "{}", bad.stderr);
}

#[test]
fn the_shell_reconnects_after_the_server_closed_an_idle_session() {
    let server = TestServer::builder().args(["--idle-timeout", "1"]).start();
    let s = Scratch::new();
    server.plant_file(ALICE, "f", b"f");
    let mut child = s
        .ferry(server.addr())
        .args(["shell", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hash f\n").unwrap();
    // Longer than the idle timeout: the server closes the session.
    thread::sleep(Duration::from_millis(2500));
    stdin.write_all(b"hash f\n").unwrap();
    drop(stdin);
    let status = wait_child(&mut child, RUN_TIMEOUT).unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(status.success());
    assert_eq!(stdout, format!("{0}  f\n{0}  f\n", sha256_hex(b"f")));
}

/// Runs `ferry ARGS` on a pseudo-terminal (util-linux `script`), typing
/// `lines` one at a time: each after `ready` says the one before is done.
/// Returns the exit status and what the terminal showed (stdout and stderr
/// together).
fn on_a_terminal(
    s: &Scratch,
    addr: SocketAddr,
    args: &str,
    lines: &[&[u8]],
    mut ready: impl FnMut(usize) -> bool,
) -> (i32, String) {
    let command = format!("{} --server {addr} --user {ALICE} {args}", ferry_bin());
    let mut child = s
        .ferry(addr)
        .env("TERM", "xterm")
        .program_is_script(&command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script runs the client on a terminal");
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut shown = Vec::new();
        let _ = stdout.read_to_end(&mut shown);
        shown
    });
    // A line typed before the line editor has taken the one before may be
    // dropped when it switches the terminal's mode, as with a real user.
    let mut stdin = child.stdin.take().unwrap();
    for (i, line) in lines.iter().enumerate() {
        stdin.write_all(line).unwrap();
        assert!(
            wait_until(RUN_TIMEOUT, || ready(i)),
            "line {i} was not done"
        );
    }
    // `script` ends once its input has ended and the program has exited.
    drop(stdin);
    let status = wait_child(&mut child, RUN_TIMEOUT).expect("ferry on a terminal did not exit");
    let shown = reader.join().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&shown).into_owned(),
    )
}

trait ScriptCommand {
    fn program_is_script(&mut self, command: &str) -> &mut Command;
}

impl ScriptCommand for Command {
    /// Replaces the program with `script -qec COMMAND /dev/null`, keeping
    /// the environment and directory.
    fn program_is_script(&mut self, command: &str) -> &mut Command {
        let mut script = Command::new("script");
        script.args(["-q", "-e", "-c", command, "/dev/null"]);
        for (key, value) in self.get_envs() {
            match value {
                Some(value) => script.env(key, value),
                None => script.env_remove(key),
            };
        }
        if let Some(dir) = self.get_current_dir() {
            script.current_dir(dir);
        }
        *self = script;
        self
    }
}

#[test]
fn on_a_terminal_transfers_show_a_progress_bar_and_the_shell_completes_names() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(41, 1 << 20);
    server.plant_file(ALICE, "progress.bin", &data);

    let (code, shown) = on_a_terminal(
        &s,
        server.addr(),
        "get progress.bin --limit-rate 2M",
        &[],
        |_| true,
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("ETA"), "no progress bar:\n{shown}");
    assert!(shown.contains("/1.00 MiB"), "no total in the bar:\n{shown}");
    assert!(shown.contains("downloaded progress.bin to progress.bin"));
    assert_eq!(fs::read(s.work().join("progress.bin")).unwrap(), data);

    // --quiet: no bar, even on a terminal.
    let (_, shown) = on_a_terminal(&s, server.addr(), "get -q progress.bin", &[], |_| true);
    assert!(!shown.contains("ETA"), "{shown}");

    // The shell: Tab completes the remote name typed in part.
    let by_tab = s.work().join("by-tab.bin");
    let (code, shown) = on_a_terminal(
        &s,
        server.addr(),
        "shell -q",
        // No space typed after the Tab: completion adds it.
        &[b"get progr\t-o by-tab.bin\n", b"quit\n"],
        |line| line > 0 || by_tab.exists(),
    );
    assert_eq!(code, 0, "{shown}");
    assert_eq!(
        fs::read(&by_tab).unwrap(),
        data,
        "the completed name was downloaded:\n{shown}"
    );
}

// ---------------------------------------------------------------------------
// A loopback proxy that injects one fault into the first connection
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Fault {
    /// Close both ends after this many bytes from the client.
    CutUpstreamAfter(u64),
    /// Close both ends after this many bytes from the server.
    CutDownstreamAfter(u64),
    /// Invert the byte at this offset of what the client sends.
    FlipUpstreamByte(u64),
}

struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on 127.0.0.1; the first connection gets `fault`, later ones
    /// pass through untouched.
    fn start(upstream: SocketAddr, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted2, stop2) = (Arc::clone(&accepted), Arc::clone(&stop));
        thread::spawn(move || {
            let deadline = Instant::now() + RUN_TIMEOUT;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let first = accepted2.fetch_add(1, Ordering::SeqCst) == 0;
                        client.set_nonblocking(false).unwrap();
                        let server = TcpStream::connect(upstream).unwrap();
                        let fault = first.then_some(fault);
                        pump(client, server, fault);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            addr,
            accepted,
            stop,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies both ways on two threads, applying the fault.
fn pump(client: TcpStream, server: TcpStream, fault: Option<Fault>) {
    let (cut_up, cut_down, flip) = match fault {
        Some(Fault::CutUpstreamAfter(n)) => (Some(n), None, None),
        Some(Fault::CutDownstreamAfter(n)) => (None, Some(n), None),
        Some(Fault::FlipUpstreamByte(n)) => (None, None, Some(n)),
        None => (None, None, None),
    };
    let clone = |stream: &TcpStream| stream.try_clone().unwrap();
    let (up_from, up_to) = (clone(&client), clone(&server));
    let up_both = [clone(&client), clone(&server)];
    let down_both = [clone(&client), clone(&server)];
    thread::spawn(move || copy(up_from, up_to, cut_up, flip, up_both));
    thread::spawn(move || copy(server, client, cut_down, None, down_both));
}

fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    cut_after: Option<u64>,
    flip_at: Option<u64>,
    both: [TcpStream; 2],
) {
    let mut buf = vec![0; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let end = offset + n as u64;
        if let Some(limit) = cut_after
            && end >= limit
        {
            let _ = to.write_all(&buf[..(limit - offset) as usize]);
            for side in &both {
                let _ = side.shutdown(Shutdown::Both);
            }
            return;
        }
        if let Some(at) = flip_at
            && (offset..end).contains(&at)
        {
            buf[(at - offset) as usize] ^= 0xff;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        offset = end;
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Issue 14, item 4: `ferry get report.pdf` silently replaced a different
/// local `report.pdf`. Without `--force` (and without a terminal to ask
/// on) a local file of other content is left alone: exit 1, nothing
/// fetched, no part file; the other names still go. A local file with the
/// same content, and ferry's own `.ferry-part`, are no obstacle.
#[test]
fn get_never_replaces_a_local_file_of_other_content_unless_forced() {
    let server = TestServer::start();
    let s = Scratch::new();
    server.plant_file(ALICE, "report.pdf", b"the server's report");
    server.plant_file(ALICE, "other", b"other");
    s.file("report.pdf", b"my own, different report");
    let out = run(s
        .ferry(server.addr())
        .stdin(std::process::Stdio::null())
        .args(["get", "report.pdf", "other"]));
    assert_eq!(code(&out), EXIT_LOCAL, "{}", out.stderr);
    assert!(
        out.stderr.contains("report.pdf")
            && out.stderr.contains("exists with other content")
            && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read(s.work().join("report.pdf")).unwrap(),
        b"my own, different report"
    );
    assert!(!s.work().join("report.pdf.ferry-part").exists());
    assert_eq!(fs::read(s.work().join("other")).unwrap(), b"other");

    // The same content: nothing to lose, so no question.
    fs::write(s.work().join("same"), b"same bytes").unwrap();
    server.plant_file(ALICE, "same", b"same bytes");
    assert_ok(&run(s.ferry(server.addr()).args(["get", "same"])));

    // An interrupted download of ours is continued without asking.
    let data = pseudo_random_bytes(41, 200_000);
    server.plant_file(ALICE, "big", &data);
    fs::write(s.work().join("big.ferry-part"), &data[..50_000]).unwrap();
    let out = run(s.ferry(server.addr()).args(["--json", "get", "big"]));
    assert_ok(&out);
    assert_eq!(json_lines(&out.stdout)[0]["resumed_from"], 50_000);
    assert_eq!(fs::read(s.work().join("big")).unwrap(), data);

    assert_ok(&run(s.ferry(server.addr()).args([
        "get",
        "--force",
        "report.pdf",
    ])));
    assert_eq!(
        fs::read(s.work().join("report.pdf")).unwrap(),
        b"the server's report"
    );
}

/// Issue 14, item 18: pointed at an HTTP port, `ferry` waited two minutes
/// for a greeting. A server that does not greet within a few seconds is
/// named for what it is.
#[test]
fn a_server_that_answers_like_http_is_named_within_seconds() {
    let server = TestServer::builder()
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    let http = server.http_addr();
    let s = Scratch::new();
    let started = Instant::now();
    let out = run(s.ferry(http).arg("ls"));
    let took = started.elapsed();
    assert_eq!(code(&out), EXIT_NETWORK, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("not a ferry server (it answered like HTTP)"),
        "{}",
        out.stderr
    );
    assert!(
        took < Duration::from_secs(20),
        "took {took:?}: the greeting deadline is a few seconds"
    );
}

/// Issue 18: every `--json` object names its operation, as errors do.
#[test]
fn every_json_object_names_its_operation() {
    let server = TestServer::start();
    let s = Scratch::new();
    server.plant_file(ALICE, "a", b"alpha");
    server.plant_file(ALICE, "b", b"beta");
    for (args, op) in [
        (&["hash", "a", "b"][..], "hash"),
        (&["view", "a"][..], "view"),
        (&["rm", "a", "b"][..], "rm"),
    ] {
        let out = run(s.ferry(server.addr()).arg("--json").args(args));
        assert_ok(&out);
        let objects = json_lines(&out.stdout);
        assert!(!objects.is_empty(), "{args:?}: no output");
        for object in objects {
            assert_eq!(object["op"], op, "{args:?}: {object}");
        }
    }
}

/// Issue 18: `-d` (or `-o`) into a folder that does not exist is said of
/// the folder, not of the `.ferry-part` file the download would open.
#[test]
fn get_into_a_missing_folder_names_the_folder() {
    let server = TestServer::start();
    let s = Scratch::new();
    server.plant_file(ALICE, "a", b"alpha");
    for args in [
        &["get", "a", "-d", "nowhere"][..],
        &["get", "a", "-o", "nowhere/a"],
    ] {
        let out = run(s.ferry(server.addr()).args(args));
        assert_eq!(code(&out), EXIT_LOCAL, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("nowhere: no such folder") && !out.stderr.contains("ferry-part"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// Issue 18: Ctrl-C during a transfer in `ferry shell` stops the transfer
/// and goes back to the prompt; the shell goes on, and what arrived stays
/// for a resume.
#[test]
fn ctrl_c_in_the_shell_stops_the_transfer_not_the_shell() {
    let server = TestServer::start();
    let s = Scratch::new();
    let data = pseudo_random_bytes(43, 8 << 20);
    server.plant_file(ALICE, "slow.bin", &data);
    server.plant_file(ALICE, "after", b"after");
    let part = s.work().join("slow.bin.ferry-part");
    let after = s.work().join("after");
    let (code, shown) = on_a_terminal(
        &s,
        server.addr(),
        "shell",
        &[
            b"get slow.bin --limit-rate 1M\n",
            b"\x03",
            b"get after\n",
            b"quit\n",
        ],
        |line| match line {
            // The download has begun.
            0 => fs::metadata(&part).is_ok_and(|m| m.len() > 100_000),
            // The shell took the next command.
            2 => after.exists(),
            _ => true,
        },
    );
    assert_eq!(
        code, 130,
        "the shell's status is the interruption's:\n{shown}"
    );
    assert!(shown.contains("interrupted"), "{shown}");
    assert_eq!(fs::read(&after).unwrap(), b"after", "{shown}");
    let kept = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(
        kept > 0 && kept < data.len() as u64,
        "the part file keeps what arrived: {kept} bytes\n{shown}"
    );
    assert!(!s.work().join("slow.bin").exists());
}
