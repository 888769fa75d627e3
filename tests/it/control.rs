//! The control port: token, STATUS, RELOAD, SHUTDOWN, and the start-up
//! checks that keep it private.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::*;

const TOKEN: &str = CONTROL_TOKEN;

/// Writes a token file with `mode` next to the test and returns its path.
fn control_server(tokens: &tempfile::TempDir) -> (TestServer, std::net::SocketAddr) {
    let token = control_token_file(tokens.path(), 0o600);
    let server = TestServer::builder()
        .args(["--login-delay", "0", "--control", "127.0.0.1:0"])
        .arg("--control-token-file")
        .arg(&token)
        .start();
    let addr = server.control_addr();
    (server, addr)
}

fn control(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect_raw(addr).unwrap();
    assert_eq!(c.read_reply(), (220, "ferry control ready".to_string()));
    c
}

#[test]
fn every_command_needs_the_token() {
    let tokens = tempfile::tempdir().unwrap();
    let (_server, addr) = control_server(&tokens);
    let mut c = control(addr);
    for command in ["STATUS", "RELOAD", "SHUTDOWN"] {
        assert_eq!(c.cmd(command), (530, "token required".to_string()));
    }
    assert_eq!(c.cmd("NOOP"), (200, "ok".to_string()));
    assert_eq!(c.cmd("TOKEN wrong"), (530, "bad token".to_string()));
    assert_eq!(
        c.cmd(&format!("TOKEN {TOKEN}x")),
        (530, "bad token".to_string())
    );
    assert_eq!(
        c.cmd("TOKEN also-wrong"),
        (530, "bad token, too many failures".to_string())
    );
    c.expect_eof();
    let mut c = control(addr);
    assert_eq!(c.cmd(&format!("token {TOKEN}")), (230, "ok".to_string()));
    assert_eq!(c.cmd("BOGUS").0, 500);
    assert_eq!(c.cmd("QUIT"), (221, "bye".to_string()));
    c.expect_eof();
}

#[test]
fn status_reports_sessions_transfers_and_bytes() {
    let tokens = tempfile::tempdir().unwrap();
    let (server, addr) = control_server(&tokens);
    let mut alice = server.alice();
    alice.put("f", b"12345");
    let mut bob = server.bob();
    bob.noop();
    let mut c = control(addr);
    c.expect(&format!("TOKEN {TOKEN}"), 230);
    let (code, text) = c.cmd("STATUS");
    assert_eq!(code, 211, "{text}");
    let fields: std::collections::HashMap<&str, u64> = text
        .split(' ')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    assert_eq!(fields["sessions_line"], 2, "{text}");
    assert_eq!(fields["sessions_http"], 0, "{text}");
    assert_eq!(fields["transfers"], 0, "{text}");
    assert!(fields["received"] >= 5, "{text}");
    assert!(fields["sent"] > 0, "{text}");
    assert!(fields["uptime"] < 600, "{text}");
}

#[test]
fn reload_replaces_users_or_keeps_them_when_the_file_is_broken() {
    let tokens = tempfile::tempdir().unwrap();
    let (server, addr) = control_server(&tokens);
    let users = server.root().join("id_passwd.txt");
    let mut c = control(addr);
    c.expect(&format!("TOKEN {TOKEN}"), 230);

    fs::write(&users, "dave:pw1\neve:pw2\n").unwrap();
    assert_eq!(c.cmd("RELOAD"), (200, "reloaded 2 users".to_string()));
    server.login("dave", "pw1").noop();

    fs::write(&users, "dave:pw1\n:no-user\n").unwrap();
    let (code, text) = c.cmd("RELOAD");
    assert_eq!(code, 451, "{text}");
    assert!(text.contains(":2:"), "names the bad line: {text}");
    server.login("eve", "pw2").noop();
}

#[test]
fn shutdown_is_exactly_sigint() {
    let tokens = tempfile::tempdir().unwrap();
    let (mut server, addr) = control_server(&tokens);
    let mut idle = server.alice();
    let mut c = control(addr);
    c.expect(&format!("TOKEN {TOKEN}"), 230);
    let started = Instant::now();
    assert_eq!(c.cmd("SHUTDOWN"), (221, "shutting down".to_string()));
    assert_eq!(idle.read_reply(), (421, "server shutting down".to_string()));
    server.expect_clean_exit(started, Duration::from_secs(7));
}

#[test]
fn the_token_file_must_be_private_and_the_port_loopback() {
    let tokens = tempfile::tempdir().unwrap();
    let shared = control_token_file(tokens.path(), 0o644);
    let out = TestServer::builder()
        .args(["--control", "127.0.0.1:0", "--control-token-file"])
        .arg(&shared)
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("readable by group or others"),
        "{}",
        out.stderr
    );

    let private = control_token_file(tokens.path(), 0o600);
    let out = TestServer::builder()
        .args(["--control", "0.0.0.0:0", "--control-token-file"])
        .arg(&private)
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("loopback"), "{}", out.stderr);

    let out = TestServer::builder()
        .args(["--control", "127.0.0.1:0"])
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--control-token-file"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_operator_gets_in_when_clients_have_used_every_slot() {
    let tokens = tempfile::tempdir().unwrap();
    let token = control_token_file(tokens.path(), 0o600);
    let server = TestServer::builder()
        .args(["--max-connections", "1", "--control", "127.0.0.1:0"])
        .arg("--control-token-file")
        .arg(&token)
        .start();
    let addr = server.control_addr();
    let _client = server.connect();
    let mut refused = Client::connect_raw(server.addr()).unwrap();
    assert_eq!(refused.read_reply().0, 421);
    let mut c = control(addr);
    c.expect(&format!("TOKEN {TOKEN}"), 230);
    assert_eq!(c.cmd("STATUS").0, 211);
}
