//! Who may read `/metrics`: the metrics listener (`--metrics-listen`)
//! serves it to anyone who reaches it and serves nothing else; the HTTP
//! front serves it only for the metrics token (`--metrics-token-file`),
//! and not at all without one. `/healthz` stays public everywhere.

use std::time::Duration;

use crate::common::*;

/// GET and HEAD of `target` on `addr` with `headers`: both statuses.
fn get_and_head(addr: std::net::SocketAddr, target: &str, headers: &[&str]) -> (Resp, Resp) {
    let get = exchange(addr, &request("GET", target, headers, b""));
    let head = exchange_head(addr, &request("HEAD", target, headers, b""));
    (get, head)
}

fn is_metrics_text(resp: &Resp) -> bool {
    resp.header("content-type") == Some("text/plain; version=0.0.4")
        && resp
            .text()
            .contains("ferry_sessions_open{protocol=\"http\"}")
}

#[test]
fn metrics_on_the_http_listener_are_404_without_a_token_configured() {
    let server = TestServer::builder()
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    let addr = server.http_addr();
    for headers in [vec![], vec![metrics_bearer()], vec![alice_auth()]] {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let (get, head) = get_and_head(addr, "/metrics", &headers);
        get.assert_status(404, &format!("GET /metrics with {headers:?}"));
        head.assert_status(404, &format!("HEAD /metrics with {headers:?}"));
        assert!(!get.text().contains("ferry_"), "{}", get.text());
    }
    let (get, head) = get_and_head(addr, "/healthz", &[]);
    get.assert_status(200, "GET /healthz");
    assert_eq!(get.body, b"ok\n");
    head.assert_status(200, "HEAD /healthz");
}

#[test]
fn metrics_on_the_http_listener_need_the_bearer_token() {
    let (_server, addr) = http_server();
    let wrong = format!("Authorization: Bearer {METRICS_TOKEN}x");
    let short = "Authorization: Bearer metrics";
    for headers in [
        vec![],
        vec![wrong.as_str()],
        vec![short],
        vec!["Authorization: Bearer "],
        // The token as a Basic password is not the token.
        vec![&basic(ALICE, METRICS_TOKEN)],
        vec![&alice_auth()],
    ] {
        let (get, head) = get_and_head(addr, "/metrics", &headers);
        for (resp, method) in [(&get, "GET"), (&head, "HEAD")] {
            resp.assert_status(401, &format!("{method} /metrics with {headers:?}"));
            let challenge = resp.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer"),
                "{method} /metrics with {headers:?}: WWW-Authenticate {challenge:?}"
            );
        }
        assert!(!get.text().contains("ferry_"), "{}", get.text());
    }
    let bearer = metrics_bearer();
    let (get, head) = get_and_head(addr, "/metrics", &[&bearer]);
    get.assert_status(200, "GET /metrics with the token");
    assert!(is_metrics_text(&get), "{}", get.text());
    head.assert_status(200, "HEAD /metrics with the token");
    // The scheme is case-insensitive, as RFC 9110 has it.
    let lower = format!("Authorization: bearer {METRICS_TOKEN}");
    exchange(addr, &request("GET", "/metrics", &[&lower], b""))
        .assert_status(200, "GET /metrics, scheme in lower case");
    // /healthz stays public on the same listener.
    let (get, head) = get_and_head(addr, "/healthz", &[]);
    get.assert_status(200, "GET /healthz");
    head.assert_status(200, "HEAD /healthz");
}

#[test]
fn the_metrics_listener_serves_metrics_and_healthz_and_nothing_else() {
    let server = TestServer::builder()
        .args(["--metrics-listen", "127.0.0.1:0"])
        .start();
    let addr = server.metrics_addr();
    let (get, head) = get_and_head(addr, "/metrics", &[]);
    get.assert_status(200, "GET /metrics on the metrics listener");
    assert!(is_metrics_text(&get), "{}", get.text());
    head.assert_status(200, "HEAD /metrics on the metrics listener");
    let (get, head) = get_and_head(addr, "/healthz", &[]);
    get.assert_status(200, "GET /healthz on the metrics listener");
    assert_eq!(get.body, b"ok\n");
    head.assert_status(200, "HEAD /healthz on the metrics listener");
    // No files, no listing, no login: not even for a right password.
    server.plant_file(ALICE, "x", b"secret");
    for target in ["/files/", "/files", "/files/x", "/", "/metricsx"] {
        for headers in [vec![], vec![alice_auth()]] {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let (get, head) = get_and_head(addr, target, &headers);
            get.assert_status(404, &format!("GET {target} with {headers:?}"));
            head.assert_status(404, &format!("HEAD {target} with {headers:?}"));
            assert!(!get.text().contains("secret"), "{}", get.text());
        }
    }
    let put = request(
        "PUT",
        "/files/y",
        &[&alice_auth(), "Content-Length: 1"],
        b"y",
    );
    expect_closing_error(addr, &put, 404, "PUT /files/y on the metrics listener");
    assert!(!server.user_dir(ALICE).join("y").exists());
    // A metrics connection is an HTTP session in the counters.
    let mut c = Conn::open(addr);
    c.send(&request("GET", "/metrics", &[], b""));
    let resp = c.response();
    resp.assert_status(200, "GET /metrics, kept alive");
    assert!(
        resp.text()
            .lines()
            .any(|l| l.starts_with("ferry_sessions_open{protocol=\"http\"} ") && !l.ends_with(" 0")),
        "{}",
        resp.text()
    );
}

#[test]
fn the_metrics_token_stays_out_of_check_config_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let shared = metrics_token_file(dir.path(), 0o644);
    let out = TestServer::builder()
        .args(["--http-listen", "127.0.0.1:0", "--metrics-token-file"])
        .arg(&shared)
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("metrics-token-file") && out.stderr.contains("readable by group"),
        "{}",
        out.stderr
    );

    let private = metrics_token_file(dir.path(), 0o600);
    let out = run_command_to_exit(
        std::process::Command::new(ferryd_bin())
            .args(["check-config", "--metrics-token-file"])
            .arg(&private)
            .current_dir(dir.path()),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("metrics_token_file = ")
            && out.stdout.contains("# metrics token: read, not shown"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(METRICS_TOKEN), "{}", out.stdout);
    assert!(!out.stderr.contains(METRICS_TOKEN), "{}", out.stderr);

    let server = TestServer::builder()
        .args([
            "--log-level",
            "trace",
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-token-file",
        ])
        .arg(&private)
        .start();
    let addr = server.http_addr();
    let bearer = metrics_bearer();
    exchange(addr, &request("GET", "/metrics", &[&bearer], b""))
        .assert_status(200, "GET /metrics with the token");
    let wrong = format!("Authorization: Bearer {METRICS_TOKEN}x");
    exchange(addr, &request("GET", "/metrics", &[&wrong], b""))
        .assert_status(401, "GET /metrics with a wrong token");
    exchange(server.metrics_addr(), &request("GET", "/metrics", &[], b""))
        .assert_status(200, "GET /metrics on the metrics listener");
    // Both requests were served, so whatever was logged about them is in.
    assert!(
        wait_until(Duration::from_secs(5), || server
            .stderr_text()
            .contains("disconnected")),
        "{}",
        server.stderr_text()
    );
    assert!(
        !server.stderr_text().contains(METRICS_TOKEN),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn a_socket_handed_over_as_metrics_serves_the_metrics() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::os::fd::OwnedFd;
    use std::process::{Command, Stdio};

    // The test is the service manager: descriptors 3 and 4, named.
    let line = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("id_passwd.txt");
    std::fs::write(&users, default_users_file()).unwrap();
    let script = "exec 3<&0 4>&1 0</dev/null 1>/dev/null; \
                  LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=line:metrics exec \"$0\" \"$@\"";
    // Addresses nobody could bind here: only the handed-over sockets serve.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(ferryd_bin())
        .args([
            "--listen",
            "192.0.2.1:9",
            "--metrics-listen",
            "192.0.2.1:10",
        ])
        .arg("--storage")
        .arg(dir.path().join("storage"))
        .arg("--users")
        .arg(&users)
        .arg("--no-fsync")
        .stdin(Stdio::from(OwnedFd::from(line.try_clone().unwrap())))
        .stdout(Stdio::from(OwnedFd::from(metrics.try_clone().unwrap())))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let want = format!("ferryd metrics listening on {metrics_addr}");
    let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(&want) => break,
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    let served = exchange(metrics_addr, &request("GET", "/metrics", &[], b""));
    let _ = child.kill();
    let _ = child.wait();
    served.assert_status(200, &format!("GET /metrics; log: {seen:?}"));
    assert!(is_metrics_text(&served), "{}", served.text());
}
