//! Command line, users file, start-up housekeeping and logging.

use std::fs;
use std::net::TcpListener;
use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs ferryd with a users file that must be rejected on `line`.
fn expect_bad_users_file(content: &str, line: usize) {
    let out = ServerBuilder::new()
        .users_file(content)
        .run_to_exit(EXIT_TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(2),
        "users file {content:?}: status {:?}, stderr:\n{}",
        out.status,
        out.stderr
    );
    let want = format!("id_passwd.txt:{line}:");
    assert!(
        out.stderr.contains(&want),
        "users file {content:?}: stderr does not mention {want:?}:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(LISTENING_MARKER),
        "ferryd listened despite a bad users file"
    );
}

#[test]
fn missing_users_file_is_created_with_demo_user() {
    let server = ServerBuilder::new().no_users_file().start();
    let users = server.root().join("id_passwd.txt");
    let mut password = None;
    let found = wait_until(Duration::from_secs(5), || {
        password = server.stderr_lines().iter().find_map(|l| {
            l.find("password: ")
                .map(|i| l[i + "password: ".len()..].trim_end().to_string())
        });
        password.is_some()
    });
    assert!(
        found,
        "no `password: ` line on stderr:\n{}",
        server.stderr_text()
    );
    let password = password.unwrap();
    assert!(!password.is_empty());
    assert!(
        server
            .stderr_lines()
            .iter()
            .any(|l| l.contains("ferryd:") && l.contains("password: "))
    );

    assert!(users.is_file(), "users file was not created");
    assert_eq!(mode_of(&users), 0o600);
    let content = fs::read_to_string(&users).unwrap();
    let entries: Vec<&str> = content
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // Stored hashed (issue 18); the printed password is the only copy.
    assert_eq!(entries.len(), 1, "{content}");
    assert!(entries[0].starts_with("demo:$pbkdf2-sha256$"), "{content}");
    assert!(!content.contains(&password));

    let mut c = server.connect();
    c.expect("AUTH demo wrong", 530);
    c.login("demo", &password);
    c.put("hello", b"demo works");
    assert_eq!(c.get("hello"), b"demo works");
}

#[test]
fn generated_passwords_differ_between_runs() {
    let pw = || {
        let server = ServerBuilder::new().no_users_file().start();
        let stderr = server.stderr_text();
        stderr
            .lines()
            .find_map(|l| {
                l.split_once("password: ")
                    .map(|(_, pw)| pw.trim().to_string())
            })
            .expect("demo password on stderr")
    };
    let (a, b) = (pw(), pw());
    assert_ne!(a, b, "the demo password is not random");
    assert!(
        a.len() >= 8,
        "demo password {a:?} is too short to be random"
    );
}

#[test]
fn users_file_line_without_colon_is_rejected() {
    expect_bad_users_file("# users\nalice:pw\nbogus line\n", 3);
}

#[test]
fn users_file_duplicate_user_is_rejected() {
    expect_bad_users_file("alice:pw\nbob:x\nalice:other\n", 3);
    expect_bad_users_file("bob:pw\n\nbob:pw\n", 3);
}

#[test]
fn users_file_empty_password_is_rejected() {
    expect_bad_users_file("alice:pw\n# c\ncarol:\n", 3);
}

#[test]
fn users_file_invalid_usernames_are_rejected() {
    for bad in [
        "-dash",
        ".dot",
        "has space",
        "sl/ash",
        "semi;colon",
        "caf\u{e9}",
        "",
        &"u".repeat(33),
    ] {
        expect_bad_users_file(&format!("alice:pw\nbob:pw\n{bad}:secret\n"), 3);
    }
}

#[test]
fn users_file_line_numbers_count_comments_blank_lines_and_crlf() {
    expect_bad_users_file("# header\r\n\r\nalice:pw\r\nbad user:pw\r\n", 4);
}

#[test]
fn users_file_comments_blank_lines_crlf_and_colons_in_passwords() {
    let name32 = "A".repeat(31) + "z";
    let content = format!(
        "# users for tests\r\n\r\nalice:pw:with:colons\r\n# bob:commented-out\r\n\nbob:pass word\r\nA.b_c-9:x\r\n{name32}:long name\n0digit:zero"
    );
    let server = ServerBuilder::new().users_file(content).start();
    let mut c = server.connect();
    c.login("alice", "pw:with:colons");
    let mut c = server.connect();
    c.expect("AUTH alice pw", 530);
    // The CR of a CRLF line is not part of the password.
    c.send_raw(b"AUTH alice pw:with:colons\r\r\n");
    assert_eq!(c.read_code(), 530);
    c.login("bob", "pass word");
    let mut c = server.connect();
    c.expect("AUTH bob commented-out", 530);
    c.expect("AUTH # bob:commented-out", 530);
    let mut c = server.connect();
    c.login("A.b_c-9", "x");
    let mut c = server.connect();
    c.login(&name32, "long name");
    // Last line without a newline.
    let mut c = server.connect();
    c.login("0digit", "zero");
}

#[test]
fn stale_temp_files_are_removed_at_startup() {
    let builder = ServerBuilder::new();
    let tmp = builder.storage().join(".ferry").join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    // Files of a server that is gone: its instance file is not locked.
    let dead = "0123456789abcdef0123456789abcdef";
    let instances = builder.storage().join(".ferry").join("instances");
    fs::create_dir_all(&instances).unwrap();
    fs::write(instances.join(dead), b"").unwrap();
    fs::write(tmp.join(format!("{dead}-upload-1")), b"half an upload").unwrap();
    fs::write(tmp.join(format!("{dead}-sum-2")), vec![0u8; 10_000]).unwrap();
    // Files of an older ferryd, which might still be running, and of an
    // id no instance file names: kept.
    fs::write(tmp.join("upload-1-7"), b"x").unwrap();
    let unknown = format!("{}-upload-3", "f".repeat(32));
    fs::write(tmp.join(&unknown), b"x").unwrap();
    let alice_dir = builder.storage().join(ALICE);
    fs::create_dir(&alice_dir).unwrap();
    fs::write(alice_dir.join("keep.txt"), b"user data").unwrap();

    let server = builder.start();
    let mut left = server.tmp_entries();
    left.sort();
    assert_eq!(left, vec![tmp.join(&unknown), tmp.join("upload-1-7")]);
    assert!(!instances.join(dead).exists());
    assert!(
        server.stderr_text().contains("2 file(s) in"),
        "{}",
        server.stderr_text()
    );
    assert_eq!(fs::read(alice_dir.join("keep.txt")).unwrap(), b"user data");
    let mut c = server.alice();
    assert_eq!(c.list_names(), vec!["keep.txt".to_string()]);
    assert_eq!(c.get("keep.txt"), b"user data");
}

#[test]
fn help_exits_0_and_mentions_listen() {
    let out = ServerBuilder::new().arg("--help").run_to_exit(EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", out.stderr);
    assert!(
        out.stdout.contains("--listen") || out.stderr.contains("--listen"),
        "help does not mention --listen:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stderr.contains(LISTENING_MARKER),
        "--help started the server"
    );
}

#[test]
fn version_exits_0_and_prints_version() {
    let out = ServerBuilder::new()
        .arg("--version")
        .run_to_exit(EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", out.stderr);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        out.stdout.contains(version) || out.stderr.contains(version),
        "--version does not print {version}:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stderr.contains(LISTENING_MARKER),
        "--version started the server"
    );
}

#[test]
fn unknown_flag_exits_2() {
    let out = ServerBuilder::new()
        .arg("--no-such-flag")
        .run_to_exit(EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", out.stderr);
    assert!(!out.stderr.contains(LISTENING_MARKER));
    let out = ServerBuilder::new().arg("stray").run_to_exit(EXIT_TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(2),
        "positional argument; stderr:\n{}",
        out.stderr
    );
}

#[test]
fn bad_flag_values_exit_2() {
    for args in [
        &["--max-file-size", "abc"][..],
        &["--max-file-size", "-1"],
        &["--drain-timeout", "soon"],
        &["--drain-timeout", "-1"],
        &["--log-level", "loud"],
        &["--listen", "not-an-address"],
        &["--max-file-size"],
        &["--listen=127.0.0.1:99999"],
    ] {
        let out = ServerBuilder::new().args(args).run_to_exit(EXIT_TIMEOUT);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: status {:?}, stderr:\n{}",
            out.status,
            out.stderr
        );
        assert!(
            !out.stderr.contains(LISTENING_MARKER),
            "{args:?} started the server"
        );
    }
}

#[test]
fn cannot_bind_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ServerBuilder::new().listen(&addr).run_to_exit(EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    drop(taken);
}

#[test]
fn flags_accept_equals_form_and_fractional_drain() {
    let mut server = ServerBuilder::new()
        .args([
            "--max-file-size=10",
            "--drain-timeout=0.5",
            "--log-level=debug",
        ])
        .start();
    let mut c = server.alice();
    c.expect("PUT 11 big", 552);
    c.put("ok", b"0123456789");
    // An upload in progress is cut off after the half-second drain.
    let mut up = server.alice();
    up.start_put("slow", 10);
    up.send_raw(b"12");
    std::thread::sleep(Duration::from_millis(100));
    let took = server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(3));
    assert!(
        took >= Duration::from_millis(400),
        "drain ended after {took:?}"
    );
    assert!(!server.user_dir(ALICE).join("slow").exists());
}

#[test]
fn password_never_appears_in_logs() {
    let secret = "Sup3r-S3cret-Pa55phrase";
    let wrong = "Wr0ng-Gu3ss-XYZZY";
    let mut server = ServerBuilder::new()
        .users_file(format!("alice:{secret}\nbob:{wrong}-other\n"))
        .args(["--log-level", "trace"])
        .start();
    let mut c = server.connect();
    c.expect(&format!("AUTH alice {wrong}"), 530);
    c.expect(&format!("AUTH nobody {secret}"), 530);
    c.expect(&format!("AUTH alice {secret}"), 230);
    c.expect(&format!("AUTH alice {secret}"), 503);
    c.put("f", b"x");
    c.expect("QUIT", 221);
    let mut d = server.connect();
    d.expect(&format!("AUTH bob {wrong}"), 530);
    d.expect(&format!("AUTH bob {wrong}"), 530);
    d.expect(&format!("AUTH bob {wrong}"), 530);
    d.expect_eof();
    server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(5));
    let log = server.stderr_text();
    assert!(log.contains(LISTENING_MARKER));
    assert!(
        !log.contains(secret),
        "password leaked into the log:\n{log}"
    );
    assert!(
        !log.contains(wrong),
        "attempted password leaked into the log:\n{log}"
    );
    assert!(
        !log.contains("Sup3r-S3cret"),
        "password prefix leaked:\n{log}"
    );
}
