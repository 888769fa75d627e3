//! `ferryd user add|passwd|del|list` on a users file and a live server, and
//! the demo user written hashed (issue 18).

use crate::common::*;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Hashing at the default 600000 PBKDF2 rounds takes seconds in a debug
/// build; this bounds one command.
const USER_TIMEOUT: Duration = Duration::from_secs(60);

/// PBKDF2 rounds for the users the tests add, but for the one test of the
/// default: a debug build takes seconds for 600000, and several tests run
/// at once.
const FAST: [&str; 2] = ["--iterations", "1000"];

/// Runs `ferryd user ARGS...` with `stdin` as its standard input (not a
/// terminal, so the password is its first line).
fn user(args: &[&str], stdin: &str) -> RunOutput {
    let mut child = Command::new(ferryd_bin())
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused before it reads its password closes the pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let deadline = Instant::now() + USER_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferryd user {args:?} did not end");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    RunOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Only the users file: no temporary file left beside it.
fn assert_alone(path: &Path) {
    let entries = dir_entries(path.parent().unwrap());
    assert_eq!(
        entries,
        vec![path.to_path_buf()],
        "left behind: {entries:?}"
    );
}

const ORIGINAL: &str = "# our users\r\nalice:alice-pw\r\n\n  \n# bob left\nbob:$not:a:hash\n";

fn users_in(dir: &Path) -> PathBuf {
    let path = dir.join("id_passwd.txt");
    fs::write(&path, ORIGINAL).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    path
}

#[test]
fn add_passwd_and_del_keep_every_other_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = users_in(dir.path());
    let p = path.to_str().unwrap();

    let out = user(&["add", "carol", "--users", p], "carol-pw-1\n");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("SIGHUP"),
        "no reload hint: {}",
        out.stderr
    );
    let text = fs::read_to_string(&path).unwrap();
    let (kept, added) = text.split_at(ORIGINAL.len());
    assert_eq!(kept, ORIGINAL);
    assert!(
        added.starts_with("carol:$pbkdf2-sha256$i=600000,"),
        "{added}"
    );
    assert!(
        added.ends_with('\n') && added.lines().count() == 1,
        "{added:?}"
    );
    assert!(!text.contains("carol-pw-1"));
    assert_eq!(mode_of(&path), 0o600);
    assert_alone(&path);

    let out = user(&["list", "--users", p], "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "alice\tplain\nbob\tplain\ncarol\thashed\n");

    // Adding again is refused and changes nothing.
    let out = user(&["add", "carol", "--users", p, FAST[0], FAST[1]], "other\n");
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("exists"), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    assert_alone(&path);

    // passwd replaces exactly that line, keeping its CRLF.
    let out = user(
        &["passwd", "alice", "--users", p, FAST[0], FAST[1]],
        "alice-new\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let changed = fs::read_to_string(&path).unwrap();
    let alice = changed.split('\n').nth(1).unwrap();
    assert!(
        alice.starts_with("alice:$pbkdf2-sha256$i=1000,") && alice.ends_with('\r'),
        "{alice:?}"
    );
    assert_eq!(changed.replace(alice, "alice:alice-pw\r"), text);
    assert_alone(&path);

    for missing in [&["passwd", "dave"][..], &["del", "dave"]] {
        let args = [missing, &["--users", p]].concat();
        let out = user(&args, "x\n");
        assert_eq!(out.status.code(), Some(2), "{missing:?}: {}", out.stderr);
        assert!(out.stderr.contains("no user \"dave\""), "{}", out.stderr);
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), changed);

    let out = user(&["del", "carol", "--users", p], "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let out = user(&["del", "bob", "--users", p], "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        ORIGINAL
            .replace("alice:alice-pw\r", alice)
            .replace("bob:$not:a:hash\n", "")
    );
    assert_alone(&path);
}

#[test]
fn refusals_leave_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id_passwd.txt");
    let broken = "alice:pw\nno colon here\n";
    fs::write(&path, broken).unwrap();
    let p = path.to_str().unwrap();
    let out = user(&["add", "carol", "--users", p], "pw\n");
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("id_passwd.txt:2:"), "{}", out.stderr);
    let out = user(&["add", "bad/name", "--users", p], "pw\n");
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    let out = user(&["add", "carol", "--users", p], "");
    assert_eq!(out.status.code(), Some(2), "empty password: {}", out.stderr);
    let out = user(&["frobnicate", "--users", p], "");
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&path).unwrap(), broken);
    assert_alone(&path);
}

#[test]
fn add_creates_a_missing_file_and_concurrent_adds_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id_passwd.txt");
    let p = path.to_str().unwrap().to_owned();
    let adds: Vec<_> = ["u1", "u2", "u3"]
        .into_iter()
        .map(|name| {
            let p = p.clone();
            thread::spawn(move || user(&["add", name, "--users", &p, FAST[0], FAST[1]], "pw\n"))
        })
        .collect();
    for add in adds {
        let out = add.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    }
    let out = user(&["list", "--users", &p], "");
    let mut names: Vec<&str> = out.stdout.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["u1\thashed", "u2\thashed", "u3\thashed"]);
    assert_eq!(mode_of(&path), 0o600);
    assert_alone(&path);
}

#[test]
fn user_finds_the_file_through_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = users_in(dir.path());
    let config = dir.path().join("ferryd.toml");
    fs::write(&config, format!("users = \"{}\"\n", path.display())).unwrap();
    let out = user(&["list", "--config", config.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "alice\tplain\nbob\tplain\n");
}

/// Logs in until `code` comes back (a reload is not instant), at most 20 s.
fn login_code_becomes(server: &TestServer, user: &str, password: &str, code: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = server.connect();
        let (got, text) = c.cmd(&format!("AUTH {user} {password}"));
        if got == code {
            return;
        }
        assert!(Instant::now() < deadline, "AUTH {user}: still {got} {text}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_server_takes_the_changes_on_sighup() {
    let server = ServerBuilder::new().start();
    let users = server.root().join("id_passwd.txt");
    let p = users.to_str().unwrap();
    let out = user(
        &["add", "carol", "--users", p, FAST[0], FAST[1]],
        "carol-secret\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let out = user(&["del", BOB, "--users", p], "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    server.connect().expect("AUTH carol carol-secret", 530);
    server.signal(Signal::SIGHUP);
    login_code_becomes(&server, "carol", "carol-secret", 230);
    login_code_becomes(&server, BOB, BOB_PW, 530);
    server.alice();
}

#[test]
fn user_reloads_a_running_server_over_its_control_port() {
    let tokens = tempfile::tempdir().unwrap();
    let token = tokens.path().join("token");
    fs::write(&token, "ctl-token-9\n").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let server = ServerBuilder::new()
        .args(["--control", "127.0.0.1:0", "--control-token-file"])
        .arg(&token)
        .start();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let control = loop {
        let found = server.stderr_lines().iter().find_map(|line| {
            line.split_once("ferryd control port listening on ")
                .map(|(_, addr)| addr.trim().to_owned())
        });
        if let Some(addr) = found {
            break addr;
        }
        assert!(Instant::now() < deadline, "no control port line");
        thread::sleep(Duration::from_millis(20));
    };
    let users = server.root().join("id_passwd.txt");
    let out = user(
        &[
            "add",
            "carol",
            FAST[0],
            FAST[1],
            "--users",
            users.to_str().unwrap(),
            "--control",
            &control,
            "--control-token-file",
            token.to_str().unwrap(),
        ],
        "carol-secret\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("reloaded"), "{}", out.stderr);
    assert!(!out.stderr.contains("ctl-token-9"));
    // Reloaded before the command returned: no SIGHUP, no waiting.
    server.login("carol", "carol-secret");
}

#[test]
fn the_demo_user_is_written_hashed_and_no_start_warns_about_it() {
    let server = ServerBuilder::new().no_users_file().start();
    let stderr = server.stderr_text();
    let password = stderr
        .lines()
        .find_map(|l| {
            l.split_once("password: ")
                .map(|(_, pw)| pw.trim().to_owned())
        })
        .expect("the demo password is printed");
    let content = fs::read_to_string(server.root().join("id_passwd.txt")).unwrap();
    assert!(
        content.contains("\ndemo:$pbkdf2-sha256$i=600000,"),
        "{content}"
    );
    assert!(!content.contains(&password), "{content}");
    server.login("demo", &password);
    drop(server);

    let again = ServerBuilder::new().users_file(&content).start();
    again.login("demo", &password);
    let stderr = again.stderr_text();
    assert!(!stderr.contains("plain text"), "{stderr}");
}

#[test]
fn the_file_keeps_its_owner_and_a_new_one_takes_its_directorys() {
    use std::os::unix::fs::{MetadataExt, chown};
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    fs::write(&probe, "").unwrap();
    if fs::metadata(&probe).unwrap().uid() != 0 {
        eprintln!("not root: ownership cannot be tested here");
        return;
    }
    fs::remove_file(&probe).unwrap();
    // As the directory ferryd's service owns (its StateDirectory).
    const FERRY: u32 = 65534;
    chown(dir.path(), Some(FERRY), Some(FERRY)).unwrap();
    let path = dir.path().join("id_passwd.txt");
    let p = path.to_str().unwrap();
    let out = user(&["add", "carol", "--users", p, FAST[0], FAST[1]], "pw\n");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (FERRY, FERRY));
    // Replaced by root, it stays the server's.
    chown(&path, Some(FERRY + 1), Some(FERRY + 1)).unwrap();
    let out = user(
        &["passwd", "carol", "--users", p, FAST[0], FAST[1]],
        "pw2\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (FERRY + 1, FERRY + 1));
    assert_eq!(meta.mode() & 0o777, 0o600);
}

#[test]
fn edits_during_a_stream_of_reloads_are_never_seen_half_written() {
    let server = ServerBuilder::new().start();
    let users = server.root().join("id_passwd.txt");
    let p = users.to_str().unwrap().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = nix::unistd::Pid::from_raw(server.pid());
    let hup = {
        let stop = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 500 {
                nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
                sent += 1;
                thread::sleep(Duration::from_millis(5));
            }
            sent
        })
    };
    for name in ["u1", "u2", "u3", "u4"] {
        let out = user(
            &["add", name, "--users", &p, FAST[0], FAST[1]],
            &format!("{name}-pw\n"),
        );
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    }
    let out = user(&["del", "u2", "--users", &p], "");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(hup.join().unwrap() > 0);
    server.signal(Signal::SIGHUP);
    for name in ["u1", "u3", "u4"] {
        login_code_becomes(&server, name, &format!("{name}-pw"), 230);
    }
    login_code_becomes(&server, "u2", "u2-pw", 530);
    let stderr = server.stderr_text();
    assert!(
        !stderr.contains("reload failed"),
        "a reload saw a partial file:\n{stderr}"
    );
}
