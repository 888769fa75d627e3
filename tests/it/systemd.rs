//! Working with systemd (issue 18), against the real `ferryd`: readiness,
//! reload and stop notifications received on a test notify socket, and
//! socket activation with listening sockets handed over as systemd does
//! (descriptors 3 and on, `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`).
//! The test plays the service manager; no systemd is needed.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// Reads datagrams from `socket` until one equals (or starts with)
/// `want`, within `timeout`; returns it.
fn expect_message(socket: &UnixDatagram, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(deadline - Instant::now() + Duration::from_millis(1)))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.starts_with(want) {
                    return message;
                }
                seen.push(message);
            }
            Err(_) => break,
        }
    }
    panic!("no {want:?} from ferryd within {timeout:?}; got {seen:?}");
}

#[test]
fn ready_reloading_and_stopping_are_sent_to_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut server = TestServer::builder().env("NOTIFY_SOCKET", &path).start();
    expect_message(&socket, "READY=1", STARTUP_TIMEOUT);
    // The server is ready when it says so.
    server.alice().noop();

    server.signal(Signal::SIGHUP);
    let reloading = expect_message(&socket, "RELOADING=1", IO_TIMEOUT);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    expect_message(&socket, "READY=1", IO_TIMEOUT);

    server.signal(Signal::SIGINT);
    expect_message(&socket, "STOPPING=1", IO_TIMEOUT);
    server.expect_clean_exit(Instant::now(), Duration::from_secs(10));
}

#[test]
fn an_abstract_notify_socket_works_too() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ferry-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let _server = TestServer::builder()
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .start();
    expect_message(&socket, "READY=1", STARTUP_TIMEOUT);
}

/// A ferryd started the way systemd starts a socket-activated service:
/// `line` as descriptor 3 and `http` as 4 (a shell moves them there from
/// standard input and output, then `exec`s ferryd under its own process
/// id, which is what `LISTEN_PID` must name).
struct Activated {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

fn start_activated(
    line: &TcpListener,
    http: &TcpListener,
    names: &str,
    listen: &[&str],
) -> Activated {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("id_passwd.txt");
    std::fs::write(&users, default_users_file()).unwrap();
    let script = format!(
        "exec 3<&0 4>&1 0</dev/null 1>/dev/null; \
         LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES={names} exec \"$0\" \"$@\""
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(ferryd_bin())
        .args(listen)
        .arg("--storage")
        .arg(dir.path().join("storage"))
        .arg("--users")
        .arg(&users)
        .args(["--no-fsync", "--login-delay", "0"])
        .stdin(Stdio::from(OwnedFd::from(line.try_clone().unwrap())))
        .stdout(Stdio::from(OwnedFd::from(http.try_clone().unwrap())))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Activated {
        child,
        lines,
        _dir: dir,
    }
}

impl Activated {
    /// Waits for a log line containing `want`; panics with the log so far.
    fn wait_for(&self, want: &str) -> String {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(want) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "ferryd did not log {want:?}; it logged:\n{}",
            seen.join("\n")
        );
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
        let status = wait_child(&mut self.child, Duration::from_secs(10)).expect("ferryd exits");
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn greeting(addr: SocketAddr) -> String {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn handed_over_sockets_serve_and_a_restart_refuses_no_connection() {
    // The test is the service manager: it holds the listening sockets
    // across restarts of the service.
    let line = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let line_addr = line.local_addr().unwrap();
    let http_addr = http.local_addr().unwrap();

    // Addresses nobody could bind here: only the handed-over sockets can
    // serve.
    let elsewhere = ["--listen", "192.0.2.1:9", "--http-listen", "192.0.2.1:10"];
    let first = start_activated(&line, &http, "line:http", &elsewhere);
    first.wait_for(&format!("ferryd listening on {line_addr}"));
    first.wait_for(&format!("ferryd HTTP listening on {http_addr}"));
    assert!(greeting(line_addr).starts_with("220 "));
    let mut c = Client::connect(line_addr);
    c.login(ALICE, ALICE_PW);
    c.put("kept", b"across restarts");
    let mut http_conn = TcpStream::connect(http_addr).unwrap();
    std::io::Write::write_all(&mut http_conn, b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    http_conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut status = String::new();
    BufReader::new(http_conn).read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
    drop(c);
    first.stop();

    // Between two runs of the service a client connects: the socket is
    // still listening (held by the manager), so it waits in the backlog
    // and the next run answers it.
    let waiting = TcpStream::connect(line_addr).expect("the socket stays open between runs");
    let second = start_activated(&line, &http, "line:http", &elsewhere);
    second.wait_for("ferryd listening on");
    waiting.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut line_read = String::new();
    BufReader::new(waiting).read_line(&mut line_read).unwrap();
    assert!(line_read.starts_with("220 "), "{line_read:?}");
    second.stop();
}

#[test]
fn unnamed_sockets_are_matched_by_address_and_a_stray_one_is_refused() {
    let line = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let (line_addr, http_addr) = (line.local_addr().unwrap(), http.local_addr().unwrap());
    let (line_arg, http_arg) = (line_addr.to_string(), http_addr.to_string());
    let by_address = start_activated(
        &line,
        &http,
        "",
        &["--listen", &line_arg, "--http-listen", &http_arg],
    );
    by_address.wait_for(&format!("ferryd HTTP listening on {http_addr}"));
    assert!(greeting(line_addr).starts_with("220 "));
    by_address.stop();

    // A socket neither named for a listener nor at a configured address:
    // ferryd cannot tell what it is for, says so and does not start.
    let mut stray = start_activated(&line, &http, "line:gopher", &["--listen", "127.0.0.1:0"]);
    let message = stray.wait_for("socket activation");
    assert!(
        message.contains(&format!(
            "no listener is configured for gopher on {http_addr}"
        )),
        "{message}"
    );
    let status = wait_child(&mut stray.child, Duration::from_secs(10)).expect("ferryd exits");
    assert!(!status.success());
}
