//! Several ferryd behind a load balancer on one storage root (issue 21):
//! the PROXY protocol from trusted and untrusted peers, limits and
//! lockouts by the real client address, health for the balancer, and
//! instances sharing quotas and records. The balancer is played by the
//! test (headers written by hand, from its own 127.x address); the suite
//! with a real HAProxy is `haproxy.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;

/// The address the tests' "load balancer" connects from.
const PROXY: &str = "127.0.0.2";

/// A version 1 header for a client at `client` (IPv4).
fn v1(client: &str, port: u16, to: SocketAddr) -> Vec<u8> {
    format!("PROXY TCP4 {client} {} {port} {}\r\n", to.ip(), to.port()).into_bytes()
}

/// A version 2 header (PROXY, TCP over IPv4) for `client`, written from
/// the specification's layout, not with ferry's formatter.
fn v2(client: &str, port: u16, to: SocketAddr) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    let ip: std::net::Ipv4Addr = client.parse().unwrap();
    let SocketAddr::V4(to) = to else { panic!() };
    out.extend_from_slice(&ip.octets());
    out.extend_from_slice(&to.ip().octets());
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&to.port().to_be_bytes());
    out
}

/// A version 2 LOCAL header: the balancer's own connection (its health
/// checks).
fn v2_local() -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0, 0]);
    out
}

/// A line-protocol client that the balancer connected with `header`.
fn proxied(server: &TestServer, header: &[u8]) -> Client {
    let mut stream = tcp_from(PROXY, server.addr());
    stream.write_all(header).unwrap();
    Client::from_stream(stream)
}

fn farm_server(extra: &[&str]) -> TestServer {
    TestServer::builder()
        .args([
            "--trusted-proxies",
            "127.0.0.2/32",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .start()
}

/// The audit lines (after `audit: `) of event `event`.
fn audit(server: &TestServer, event: &str) -> Vec<String> {
    server
        .stderr_lines()
        .into_iter()
        .filter_map(|line| line.split_once(" audit: ").map(|(_, rest)| rest.to_owned()))
        .filter(|line| line.starts_with(&format!("{event} ")))
        .collect()
}

fn wait_audit(server: &TestServer, event: &str, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let found = wait_until(IO_TIMEOUT, || {
        lines = audit(server, event);
        lines.iter().any(|line| line.contains(needle))
    });
    assert!(
        found,
        "no audit {event} with {needle:?}:\n{}",
        server.stderr_text()
    );
    lines
}

#[test]
fn a_trusted_proxy_names_the_client_with_v1_or_v2() {
    let server = farm_server(&["--access-log", "-"]);
    // v1 on the line protocol: the greeting, then the session as usual.
    let mut c = proxied(&server, &v1("192.0.2.7", 40000, server.addr()));
    assert_eq!(c.read_reply().0, 220);
    c.login(ALICE, ALICE_PW);
    c.put("f", b"hello");
    wait_audit(&server, "login_ok", "ip=192.0.2.7 ");
    wait_audit(&server, "upload", "ip=192.0.2.7 ");
    // The access log and the server log name the client too.
    server.log_containing("192.0.2.7:40000 line \"alice\" PUT \"f\" 226");
    server.log_containing("192.0.2.7:40000 connected (line)");

    // v2 on HTTP, with the request in the same write as the header: the
    // bytes behind the header are the request.
    let mut stream = tcp_from(PROXY, server.http_addr());
    let mut bytes = v2("198.51.100.9", 41000, server.http_addr());
    bytes.extend_from_slice(
        b"GET /files/f HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6d3Jvbmc=\r\n\
          Connection: close\r\n\r\n",
    );
    stream.write_all(&bytes).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 401 "), "{response}");
    wait_audit(&server, "login_failed", "ip=198.51.100.9 ");
    // The proxy's own address is in no audit line.
    let log = server.stderr_text();
    for line in log.lines().filter(|l| l.contains(" audit: ")) {
        assert!(!line.contains(PROXY), "{line}");
    }
}

#[test]
fn an_untrusted_peer_cannot_claim_an_address() {
    let server = farm_server(&[]);
    let mut stream = tcp_from("127.0.0.3", server.addr());
    stream
        .write_all(&v1("192.0.2.7", 40000, server.addr()))
        .unwrap();
    let mut c = Client::from_stream(stream);
    assert_eq!(c.read_reply().0, 220);
    // Read as a command like any other line.
    assert_eq!(c.read_reply().0, 500);
    c.login(ALICE, ALICE_PW);
    let lines = wait_audit(&server, "login_ok", "ip=127.0.0.3 ");
    assert!(lines.iter().all(|l| !l.contains("192.0.2.7")), "{lines:?}");
}

#[test]
fn a_trusted_proxy_must_send_a_header_in_time() {
    let server = farm_server(&["--head-timeout", "1"]);
    // A command instead of a header: closed without a word.
    let mut c = proxied(&server, b"AUTH alice alice-Pw-4711\r\n");
    assert!(c.read_to_eof().is_empty());
    // A broken v2 header.
    let mut bad = v2("192.0.2.7", 1, server.addr());
    bad[12] = 0x22;
    let mut c = proxied(&server, &bad);
    assert!(c.read_to_eof().is_empty());
    // Silence: closed at the deadline, not left open.
    let started = Instant::now();
    let mut c = proxied(&server, b"");
    assert!(c.read_to_eof().is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Half a header, the rest late: the same.
    let header = v1("192.0.2.7", 40000, server.addr());
    let mut c = proxied(&server, &header[..10]);
    assert!(c.read_to_eof().is_empty());
    // Still serving.
    let mut ok = proxied(&server, &header);
    assert_eq!(ok.read_reply().0, 220);
    server.log_containing("closing a connection from a trusted proxy");
}

#[test]
fn lockouts_follow_the_real_client_address() {
    let server = farm_server(&["--lockout-failures", "3"]);
    let to = server.addr();
    for _ in 0..3 {
        let mut c = proxied(&server, &v1("203.0.113.5", 1000, to));
        assert_eq!(c.read_reply().0, 220);
        assert_eq!(c.cmd("AUTH alice wrong").0, 530);
    }
    wait_audit(&server, "lockout", "ip=203.0.113.5 ");
    // The locked-out address is refused even with the right password ...
    let mut c = proxied(&server, &v2("203.0.113.5", 1001, to));
    assert_eq!(c.read_reply().0, 220);
    assert_ne!(c.cmd(&format!("AUTH {ALICE} {ALICE_PW}")).0, 230);
    // ... while another client behind the same proxy logs in, and so do
    // the proxy's own connections.
    let mut other = proxied(&server, &v2("203.0.113.6", 1002, to));
    assert_eq!(other.read_reply().0, 220);
    other.login(ALICE, ALICE_PW);
    let mut local = proxied(&server, &v2_local());
    assert_eq!(local.read_reply().0, 220);
    local.login(BOB, BOB_PW);
}

#[test]
fn trusted_proxies_are_exempt_from_max_per_ip_but_their_clients_are_not() {
    let server = farm_server(&["--max-per-ip", "2"]);
    let to = server.addr();
    // Five clients and three health checks through one proxy address.
    let mut kept = Vec::new();
    for i in 0..5u8 {
        let mut c = proxied(&server, &v1(&format!("10.9.0.{i}"), 5000, to));
        assert_eq!(c.read_reply().0, 220, "client {i}");
        kept.push(c);
    }
    for i in 0..3 {
        let mut c = proxied(&server, &v2_local());
        assert_eq!(c.read_reply().0, 220, "health check {i}");
        kept.push(c);
    }
    // A third connection of one real client is over its limit.
    kept.push(proxied(&server, &v1("10.9.0.1", 5001, to)));
    kept.last_mut().unwrap().read_reply();
    let mut third = proxied(&server, &v1("10.9.0.1", 5002, to));
    assert_eq!(
        third.read_reply(),
        (421, "too many connections".to_string())
    );
    wait_audit(&server, "limit", "ip=10.9.0.1 ");
    // An untrusted address keeps its limit.
    let mut a = Client::from_stream(tcp_from("127.0.0.3", to));
    let mut b = Client::from_stream(tcp_from("127.0.0.3", to));
    assert_eq!(a.read_reply().0, 220);
    assert_eq!(b.read_reply().0, 220);
    let mut c = Client::from_stream(tcp_from("127.0.0.3", to));
    assert_eq!(c.read_reply().0, 421);
}

/// One HTTP request through `stream`, read to the close.
fn http_once(mut stream: TcpStream, head: &[u8], request: &str) -> String {
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(request.as_bytes());
    stream.write_all(&bytes).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// `HEALTH` on a fresh line connection (no login): the reply.
fn line_health(server: &TestServer) -> (u16, String) {
    let mut c = server.connect();
    c.cmd("HEALTH")
}

/// `GET /healthz`: the status and body.
fn healthz(server: &TestServer) -> (u16, String) {
    let stream = TcpStream::connect(server.http_addr()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let response = http_once(
        stream,
        b"",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// Asks both health checks until `want` (bounded); the last answers.
fn wait_health(server: &TestServer, healthy: bool, within: Duration) -> (String, String) {
    let started = Instant::now();
    loop {
        let (code, text) = line_health(server);
        let (status, body) = healthz(server);
        let line_ok = code == 200;
        let http_ok = status == 200;
        if line_ok == healthy && http_ok == healthy {
            return (text, body);
        }
        assert!(
            started.elapsed() < within,
            "health not {healthy} within {within:?}: {code} {text} / {status} {body}\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_fails_while_the_storage_root_cannot_be_written() {
    let server = farm_server(&[]);
    let (text, body) = wait_health(&server, true, IO_TIMEOUT);
    assert_eq!((text.as_str(), body.as_str()), ("healthy", "ok\n"));
    // The temporary directory becomes a file: nothing can be created in
    // it (as a dead mount or a read-only remount would do).
    let tmp = server.storage().join(".ferry/tmp");
    let away = server.storage().join(".ferry/tmp.away");
    std::fs::rename(&tmp, &away).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let (text, body) = wait_health(&server, false, IO_TIMEOUT);
    assert!(
        text.starts_with("unhealthy: storage not writable: "),
        "{text}"
    );
    assert!(
        body.starts_with("unhealthy: storage not writable"),
        "{body}"
    );
    std::fs::remove_file(&tmp).unwrap();
    std::fs::rename(&away, &tmp).unwrap();
    wait_health(&server, true, IO_TIMEOUT);
}

#[test]
fn health_fails_within_its_deadline_when_storage_hangs_and_the_loop_goes_on() {
    let server = farm_server(&[]);
    wait_health(&server, true, IO_TIMEOUT);
    // A FIFO where the probe creates its file: opening it for writing
    // blocks until a reader comes, as a write to a dead mount hangs.
    let instances = server.storage().join(".ferry/instances");
    let ids: Vec<_> = std::fs::read_dir(&instances).unwrap().flatten().collect();
    assert_eq!(ids.len(), 1);
    let id = ids[0].file_name().into_string().unwrap();
    let fifo = server.storage().join(format!(".ferry/tmp/{id}-probe"));
    // (A probe of the checks above may still have its file there.)
    let made = wait_until(IO_TIMEOUT, || {
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).is_ok()
    });
    assert!(made);
    let mut alice = server.alice();
    let started = Instant::now();
    let (text, _) = wait_health(&server, false, Duration::from_secs(10));
    assert!(
        text.contains("did not answer") || text.contains("without a report"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // Meanwhile nobody waited for the storage probe.
    for _ in 0..5 {
        let asked = Instant::now();
        alice.noop();
        assert!(asked.elapsed() < Duration::from_millis(500));
    }
    std::fs::remove_file(&fifo).unwrap();
    wait_health(&server, true, IO_TIMEOUT);
    alice.put("after", b"the storage is back");
}

#[test]
fn health_fails_during_the_drain_delay_while_clients_are_still_served() {
    let mut server = farm_server(&["--drain-delay", "1.5"]);
    wait_health(&server, true, IO_TIMEOUT);
    let mut alice = server.alice();
    let stopped = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let (text, body) = wait_health(&server, false, IO_TIMEOUT);
    assert_eq!(text, "unhealthy: draining");
    assert_eq!(body, "unhealthy: draining\n");
    // Still served, old sessions and new ones, until the delay is over.
    alice.put("during", b"the delay");
    let mut late = server.alice();
    late.noop();
    assert!(stopped.elapsed() < Duration::from_millis(1500));
    // Then the usual shutdown.
    assert_eq!(alice.read_reply().0, 421);
    let waited = server.expect_clean_exit(stopped, IO_TIMEOUT);
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
}

/// Two servers on one storage root (the second is given the first's).
fn two_on_one_root(extra: &[&str]) -> (TestServer, TestServer) {
    let a = TestServer::builder().args(extra).start();
    let root = a.storage();
    let b = TestServer::builder()
        .args(extra)
        .arg("--storage")
        .arg(&root)
        .start();
    (a, b)
}

/// Bytes stored in `user`'s directory of `server`'s root.
fn stored_bytes(server: &TestServer, user: &str) -> u64 {
    std::fs::read_dir(server.user_dir(user))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

const QUOTA: u64 = 3 * 1024 * 1024;

#[test]
fn the_quota_holds_across_instances_for_running_and_stored_uploads() {
    let (a, b) = two_on_one_root(&["--user-quota", "3M", "--user-max-files", "3"]);
    // An upload running on A claims its bytes for B too.
    let mut on_a = a.alice();
    on_a.start_put("big1", 2_000_000);
    on_a.send_raw(&vec![1u8; 1_000_000]);
    let mut on_b = b.alice();
    let (code, text) = on_b.put_reply(b"big2", &vec![2u8; 2_000_000]);
    assert_eq!(code, 552, "{text}");
    on_a.send_raw(&vec![1u8; 1_000_000]);
    assert_eq!(on_a.read_reply().0, 226);
    // What A stored counts on B at once, and the other way round.
    on_b.put("small", &vec![3u8; 500_000]);
    assert_eq!(on_a.put_reply(b"more", &vec![4u8; 700_000]).0, 552);
    assert_eq!(on_b.put_reply(b"more", &vec![4u8; 700_000]).0, 552);
    // The file limit too: two files so far, one more fits.
    on_a.put("f3", b"x");
    let (code, text) = on_b.put_reply(b"f4", b"y");
    assert_eq!(code, 552, "{text}");
    assert!(text.contains("files"), "{text}");
    assert!(stored_bytes(&a, ALICE) <= QUOTA);
}

#[test]
fn racing_uploads_on_two_instances_stay_within_the_stated_bound() {
    let (a, b) = two_on_one_root(&["--user-quota", "3M"]);
    // Four uploads of 1.2 MB start together, two through each server:
    // only two fit the quota.
    const SIZE: usize = 1_200_000;
    let mut clients: Vec<Client> = (0..4)
        .map(|i| if i % 2 == 0 { a.alice() } else { b.alice() })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_line(&format!("PUT {SIZE} race{i}"));
    }
    let mut started = 0;
    for c in &mut clients {
        let (code, _) = c.read_reply();
        if code == 150 {
            c.send_raw(&vec![7u8; SIZE]);
            assert_eq!(c.read_reply().0, 226);
            started += 1;
        } else {
            assert_eq!(code, 552);
        }
    }
    // The bound of storage/quota.rs with N = 2 and S = 1.2 MB, one claim
    // step per server; here on one kernel the window is microseconds, so
    // in practice exactly two fit.
    let bound = QUOTA + SIZE as u64 + 2 * 1024 * 1024;
    let stored = stored_bytes(&a, ALICE);
    assert!(stored <= bound, "{stored} > {bound}");
    assert!(started >= 2, "{started}");
    assert!(stored <= QUOTA || started == 3, "{stored}");
}

#[test]
fn a_dead_instance_claims_are_swept_with_it_and_a_live_ones_kept() {
    let (a, b) = two_on_one_root(&["--user-quota", "3M"]);
    let root = a.storage();
    let mut on_a = a.alice();
    on_a.start_put("held", 2_000_000);
    on_a.send_raw(&[1u8; 1000]);
    let claims = root.join(".ferry/users/alice/claims");
    assert!(wait_until(IO_TIMEOUT, || dir_entries(&claims).len() == 1));
    // Killed: its claim stays until someone sweeps, then goes.
    let restarted = a.crash_and_restart();
    assert!(
        wait_until(IO_TIMEOUT, || dir_entries(&claims).is_empty()),
        "{:?}",
        dir_entries(&claims)
    );
    // B's own claims are not touched by that sweep.
    let mut on_b = b.alice();
    on_b.put("after", &vec![0u8; 2_500_000]);
    drop(restarted);
}

#[test]
fn partials_expire_by_one_rule_for_every_instance_on_the_root() {
    // A wants a day; B, started last, sets 2 s for the root.
    let a = TestServer::builder().args(["--partial-ttl", "1d"]).start();
    let b = TestServer::builder()
        .args(["--partial-ttl", "2", "--storage"])
        .arg(a.storage())
        .start();
    let mut c = a.alice();
    c.start_put("p", 1000);
    c.send_raw(&[5u8; 500]);
    c.abort();
    let mut on_a = a.alice();
    assert_eq!(on_a.wait_partial("p", 500, IO_TIMEOUT), 500);
    let mut on_b = b.alice();
    assert_eq!(on_b.partial("p"), 500, "B sees the partial A kept");
    std::thread::sleep(Duration::from_millis(2500));
    // Both judge it by the root's rule: expired.
    assert_eq!(on_a.partial("p"), 0);
    assert_eq!(on_b.partial("p"), 0);
}

#[test]
fn digest_records_written_by_one_instance_are_believed_by_another() {
    let (a, b) = two_on_one_root(&[]);
    let data = b"recorded once, through either server".to_vec();
    a.alice().put("f", &data);
    let record = a.sum_record(ALICE, "f");
    assert_eq!(recorded_sha256(&record), sha256_hex(&data));
    // Forged: an answer from the record proves that B believed A's record
    // (re-reading would give the real digest). The device number of the
    // file is no part of the record (storage/record.rs), so this holds
    // across mounts of a network file system too; the unit test
    // `a_record_is_believed_only_for_its_file` checks that part.
    let forged = "0".repeat(64);
    forge_recorded_sha256(&record, &forged);
    assert_eq!(b.alice().hash("f"), forged);
    assert_eq!(a.alice().hash("f"), forged);
}

/// Children of `pid` that have exited and not been reaped.
fn zombies_of(pid: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid ...`; comm may hold spaces.
            let Some(after) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
                return false;
            };
            let mut fields = after.split(' ');
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .count()
}

#[test]
fn health_probes_leave_no_zombies() {
    let server = farm_server(&[]);
    for _ in 0..20 {
        wait_health(&server, true, IO_TIMEOUT);
        std::thread::sleep(Duration::from_millis(30));
    }
    // The last probe may have ended since the last check: the next one
    // reaps it.
    assert!(
        zombies_of(server.pid()) <= 1,
        "{} zombies",
        zombies_of(server.pid())
    );
}

#[test]
fn a_file_stored_in_a_folder_through_one_instance_counts_on_the_other() {
    let (a, b) = two_on_one_root(&["--user-quota", "3M"]);
    let mut on_b = b.alice();
    on_b.expect("MKDIR sub", 257);
    // A counts alice's tree, and the count settles: her root directory
    // does not change again below.
    let mut on_a = a.alice();
    on_a.put("x", b"x");
    std::thread::sleep(Duration::from_millis(1500));
    // A refused upload makes A count, and keep the count with the time
    // of alice's root, which stays as it is from here.
    assert_eq!(on_a.cmd("PUT 5000000 w").0, 552);
    // B stores 2 MB in the folder: only `sub`'s times change.
    on_b.put("sub/f", &vec![1u8; 2_000_000]);
    let (code, text) = on_a.put_reply(b"z", &vec![2u8; 2_000_000]);
    assert_eq!(code, 552, "A did not see what B stored in sub/: {text}");
    assert!(stored_bytes(&a, ALICE) <= QUOTA);
}
