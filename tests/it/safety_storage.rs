//! Issue 14, storage: several servers on one root, temporary names, the
//! running quota count, chunked uploads against the quota, partial expiry
//! while running, user directories on another mount.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// A second server on `first`'s storage root (its own users file and
/// ports), started with `args`.
fn second_builder(first: &TestServer) -> ServerBuilder {
    TestServer::builder().arg("--storage").arg(first.storage())
}

fn partial_dir(server: &TestServer, user: &str) -> PathBuf {
    server.records_dir(user).join("partial")
}

/// Bytes held in `dir`'s regular files.
fn bytes_in(dir: &Path) -> u64 {
    dir_entries(dir)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_second_start_on_the_same_root_leaves_the_first_ones_uploads_alone() {
    let first = TestServer::start();
    let data = pseudo_random_bytes(1, 600_000);
    // An interrupted upload, kept as a partial.
    let mut cut = first.alice();
    cut.start_put("cut", data.len());
    cut.send_raw(&data[..250_000]);
    drop(cut);
    let mut probe = first.alice();
    assert_eq!(
        probe.wait_partial("cut", 250_000, Duration::from_secs(5)),
        250_000
    );
    // An upload in progress, half sent.
    let mut running = first.alice();
    running.start_put("running", data.len());
    running.send_raw(&data[..300_000]);
    first.wait_tmp_bytes(300_000, Duration::from_secs(5));

    // A start that fails: its port is taken.
    let failed = second_builder(&first)
        .listen(&first.addr().to_string())
        .run_to_exit(Duration::from_secs(10));
    assert_ne!(failed.status.code(), Some(0), "stderr:\n{}", failed.stderr);
    assert!(
        failed.stderr.contains("cannot listen on"),
        "stderr:\n{}",
        failed.stderr
    );
    assert_eq!(first.tmp_bytes(), 300_000, "the failed start touched tmp");
    // A start that succeeds, and serves, on the same root.
    let second = second_builder(&first).start();
    let mut other = second.alice();
    other.put("from-second", b"second");
    assert_eq!(first.tmp_bytes(), 300_000, "the second start touched tmp");
    assert!(
        !second.stderr_text().contains("removed"),
        "stderr:\n{}",
        second.stderr_text()
    );

    running.send_raw(&data[300_000..]);
    assert_eq!(running.read_reply(), (226, stored(&data)));
    assert_eq!(running.get("running"), data);
    assert_eq!(probe.partial("cut"), 250_000);
    probe.resume_put("cut", &data, 250_000);
    assert_eq!(other.get("cut"), data);
    assert_eq!(probe.get("from-second"), b"second");
}

#[test]
fn a_stopped_servers_temporary_files_are_removed_by_the_others() {
    let first = TestServer::start();
    let second = second_builder(&first).start();
    let mut running = second.alice();
    running.start_put("lost", 100_000);
    running.send_raw(&[7; 40_000]);
    first.wait_tmp_bytes(40_000, Duration::from_secs(5));
    // SIGKILL: nothing is cleaned up by the server itself.
    let mut second = second;
    second.signal(nix::sys::signal::Signal::SIGKILL);
    second.wait_exit(Duration::from_secs(5)).unwrap();
    drop(running);
    // A third start sweeps it; the first one keeps serving.
    let third = second_builder(&first).start();
    first.assert_tmp_empty_within(Duration::from_secs(5));
    assert!(third.stderr_text().contains("of 1 stopped server(s)"));
    first.alice().put("still", b"fine");
}

#[test]
fn temporary_names_belong_to_one_server_and_are_never_replaced() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(2, 200_000);
    let mut c = server.alice();
    c.start_put("doc", data.len());
    c.send_raw(&data[..100_000]);
    drop(c);
    let mut c = server.alice();
    assert_eq!(
        c.wait_partial("doc", 100_000, Duration::from_secs(5)),
        100_000
    );

    // Files that another server (another container, where every server is
    // pid 1) could hold under the names this one would pick.
    let instances = dir_entries(&server.storage().join(".ferry/instances"));
    let id = instances
        .first()
        .map_or("no-id", |path| path.file_name().unwrap().to_str().unwrap())
        .to_owned();
    let tmp = server.tmp_dir();
    let pid = server.pid();
    let mut planted = Vec::new();
    for n in 0..64 {
        for name in [format!("upload-{pid}-{n}"), format!("{id}-upload-{n}")] {
            fs::write(tmp.join(&name), format!("bob's bytes {n}")).unwrap();
            planted.push(name);
        }
    }
    c.rest(100_000);
    let (code, text) = c.cmd(&format!("PUT {} doc", data.len()));
    assert_ne!(code, 150, "PUT went ahead: {code} {text}");
    for (n, name) in planted.iter().enumerate() {
        assert_eq!(
            fs::read(tmp.join(name)).unwrap(),
            format!("bob's bytes {}", n / 2).as_bytes(),
            "{name} was replaced"
        );
    }
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(id.len(), 32, "a 128-bit id in hex: {id}");
    // The partial is still there to continue once the names are free.
    assert_eq!(c.partial("doc"), 100_000);
    for name in &planted {
        fs::remove_file(tmp.join(name)).unwrap();
    }
    c.resume_put("doc", &data, 100_000);
    assert_eq!(c.get("doc"), data);
}

/// Median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
fn with_a_quota_a_put_does_not_list_a_large_directory() {
    let _measuring = timing_sensitive();
    const FILES: usize = 100_000;
    let server = TestServer::builder()
        .args(["--user-quota", "100000000000"])
        .start();
    server.plant_file(ALICE, "seed", b"x");
    let dir = server.user_dir(ALICE);
    plant_empty_files(&dir, (0..FILES).map(|n| format!("f{n}")));
    let mut alice = server.alice();
    let mut bob = server.bob();
    // The first PUT takes the count (one listing).
    let start = Instant::now();
    alice.put("first", b"1");
    let first = start.elapsed();
    let mut puts = Vec::new();
    let mut noops = Vec::new();
    for n in 0..15 {
        let start = Instant::now();
        alice.put(&format!("p{n}"), b"1");
        puts.push(start.elapsed());
        let start = Instant::now();
        bob.noop();
        noops.push(start.elapsed());
    }
    let (put, noop) = (median(puts), median(noops));
    assert!(
        put * 4 < first,
        "a PUT takes {put:?}, the one that counted {first:?}: each lists the directory"
    );
    assert!(noop * 4 < first, "NOOP {noop:?}, counting {first:?}");
}

/// The status of a response that has arrived on `stream`, if one has;
/// `Some(0)` when the connection ended without one (a reset can discard a
/// response not read yet).
fn status_if_any(stream: &mut TcpStream, wait: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if got == 0 {
                    return None;
                }
            }
            Err(_) => break,
        }
    }
    if got == 0 {
        return Some(0);
    }
    let text = String::from_utf8_lossy(&head[..got]).into_owned();
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .or_else(|| panic!("not a response: {text:?}"))
}

#[test]
fn concurrent_chunked_puts_stay_within_the_quota() {
    const QUOTA: u64 = 1_000_000;
    const SIZE: usize = 900_000;
    const CHUNK: usize = 50_000;
    let server = TestServer::builder()
        .args(["--http-listen", "127.0.0.1:0", "--user-quota", "1000000"])
        .start();
    let addr = server.http_addr();
    let auth = basic_credentials(ALICE, ALICE_PW);
    let mut puts: Vec<(TcpStream, Option<u16>)> = (0..5)
        .map(|n| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            write!(
                s,
                "PUT /files/c{n} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
            )
            .unwrap();
            (s, None)
        })
        .collect();
    // A line PUT racing them, declared.
    let mut line = server.alice();
    let body = vec![5u8; CHUNK];
    for round in 0..SIZE / CHUNK {
        for (stream, status) in &mut puts {
            if status.is_some() {
                continue;
            }
            let mut chunk = format!("{CHUNK:x}\r\n").into_bytes();
            chunk.extend_from_slice(&body);
            chunk.extend_from_slice(b"\r\n");
            if stream.write_all(&chunk).is_err() {
                *status = status_if_any(stream, IO_TIMEOUT).or(Some(0));
                continue;
            }
            *status = status_if_any(stream, Duration::from_millis(5));
        }
        if round == 2 {
            let (code, _) = line.put_reply(b"line", &vec![6u8; SIZE]);
            assert!(code == 226 || code == 552, "line PUT: {code}");
        }
    }
    for (stream, status) in &mut puts {
        if status.is_none() {
            let _ = stream.write_all(b"0\r\n\r\n");
            *status = status_if_any(stream, IO_TIMEOUT);
        }
    }
    let statuses: Vec<u16> = puts.iter().map(|(_, s)| s.unwrap()).collect();
    // 0: refused, the 507 lost to a reset.
    assert!(
        statuses.iter().all(|s| [0, 201, 507].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&507), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    let stored = bytes_in(&server.user_dir(ALICE));
    assert!(stored <= QUOTA, "{stored} bytes stored, {statuses:?}");
    assert!(stored >= SIZE as u64, "nothing stored: {statuses:?}");
}

#[test]
fn expired_partials_leave_the_disk_while_the_server_runs() {
    let server = TestServer::builder().partial_ttl("1").start();
    for n in 0..4 {
        let mut c = server.alice();
        c.start_put(&format!("cut{n}"), 900_000);
        c.send_raw(&[9; 300_000]);
        drop(c);
        thread::sleep(Duration::from_millis(300));
    }
    let partials = partial_dir(&server, ALICE);
    assert!(wait_until(Duration::from_secs(5), || partials
        .join("cut3")
        .exists()));
    let gone = wait_until(Duration::from_secs(6), || dir_entries(&partials).is_empty());
    assert!(gone, "still on disk: {:?}", dir_entries(&partials));
    assert!(wait_until(IO_TIMEOUT, || server
        .stderr_text()
        .contains("expired partial upload(s)")));
}

/// A bind mount that is undone when dropped.
struct Mount(PathBuf);

impl Mount {
    /// Bind-mounts `source` on `target`; `None` where mounting is not
    /// permitted (not root, no CAP_SYS_ADMIN).
    fn bind(source: &Path, target: &Path) -> Option<Mount> {
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        ok.then(|| Mount(target.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_user_directory_on_another_mount_is_refused_before_any_body() {
    let elsewhere = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let storage = root.path().join("storage");
    let alice_dir = storage.join(ALICE);
    fs::create_dir_all(&alice_dir).unwrap();
    let users = root.path().join("users");
    fs::write(&users, default_users_file()).unwrap();
    let Some(mount) = Mount::bind(elsewhere.path(), &alice_dir) else {
        eprintln!("SKIPPED: mount --bind is not permitted here");
        return;
    };
    // At start: refused, saying which directory and why.
    let mut cmd = Command::new(ferryd_bin());
    cmd.args(["--listen", "127.0.0.1:0", "--no-fsync", "--storage"])
        .arg(&storage)
        .arg("--users")
        .arg(&users);
    let out = run_command_to_exit(&mut cmd, Duration::from_secs(10));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        out.stderr
            .contains(&format!("{} is on another mount", alice_dir.display())),
        "stderr:\n{}",
        out.stderr
    );
    drop(mount);

    // Mounted while running: uploads are refused before their body.
    let server = TestServer::start();
    server.plant_file(ALICE, "old", b"old");
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(elsewhere.path().join("old"), b"old").unwrap();
    let Some(_mount) = Mount::bind(elsewhere.path(), &server.user_dir(ALICE)) else {
        panic!("mount --bind worked a moment ago");
    };
    let mut c = server.alice();
    let (code, text) = c.cmd("PUT 5 new");
    assert_eq!(code, 451, "{text}");
    assert_eq!(c.get("old"), b"old");
    // The log comes through a pipe: the line written before the reply
    // may still be on its way to the test.
    assert!(
        wait_until(IO_TIMEOUT, || server
            .stderr_text()
            .contains("is on another mount")),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn two_servers_on_one_root_never_continue_the_same_partial_twice() {
    let first = TestServer::start();
    let second = second_builder(&first).start();
    let data = pseudo_random_bytes(3, 400_000);
    let mut cut = first.alice();
    cut.start_put("doc", data.len());
    cut.send_raw(&data[..150_000]);
    drop(cut);
    let mut a = first.alice();
    assert_eq!(
        a.wait_partial("doc", 150_000, Duration::from_secs(5)),
        150_000
    );
    // The second server takes it...
    let mut b = second.alice();
    assert_eq!(b.partial("doc"), 150_000);
    b.rest(150_000);
    b.send_line(&format!("PUT {} doc", data.len()));
    assert_eq!(b.read_reply(), (150, "250000".to_string()));
    // ...so the first one has nothing left to continue.
    assert_eq!(a.partial("doc"), 0);
    a.rest(150_000);
    let (code, _) = a.cmd(&format!("PUT {} doc", data.len()));
    assert_eq!(code, 501);
    b.send_raw(&data[150_000..]);
    assert_eq!(b.read_reply(), (226, stored(&data)));
    assert_eq!(a.get("doc"), data);
}
