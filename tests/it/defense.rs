//! The reactor against slow, greedy and hostile clients: timeouts,
//! connection limits, running out of descriptors, slowloris, login delay
//! and lockout. Every wait here is bounded; windows and timeouts are set
//! short on the command line so the tests stay quick.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Reads what the server sends until it closes (bounded by the client's
/// read timeout).
fn rest_of(client: &mut Client) -> String {
    String::from_utf8_lossy(&client.read_to_eof()).into_owned()
}

#[test]
fn a_connection_that_does_not_log_in_times_out() {
    let server = TestServer::builder()
        .args(["--auth-timeout", "0.5"])
        .start();
    let started = Instant::now();
    let mut c = server.connect();
    assert_eq!(c.read_reply(), (421, "timeout".to_string()));
    c.expect_eof();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn an_idle_session_times_out_but_activity_keeps_it() {
    let server = TestServer::builder()
        .args(["--idle-timeout", "0.8"])
        .start();
    let mut c = server.alice();
    // Activity more often than the timeout keeps the session.
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(400));
        c.noop();
    }
    let quiet = Instant::now();
    assert_eq!(c.read_reply(), (421, "timeout".to_string()));
    c.expect_eof();
    assert!(quiet.elapsed() >= Duration::from_millis(700));
}

#[test]
fn a_stalled_upload_is_ended_and_never_appears_under_its_name() {
    let server = TestServer::builder()
        .args(["--stall-timeout", "0.5"])
        .start();
    let mut c = server.alice();
    c.put("f", b"old");
    c.start_put("f", 100);
    c.send_raw(&[b'x'; 10]);
    assert_eq!(c.read_reply(), (421, "timeout".to_string()));
    c.expect_eof();
    let mut d = server.alice();
    assert_eq!(d.get("f"), b"old");
    // Like any interrupted upload, what arrived is kept for resuming.
    assert_eq!(d.cmd("PARTIAL f"), (213, "10".to_string()));
    server.assert_tmp_empty();
}

#[test]
fn a_download_to_a_client_that_stops_reading_is_cut() {
    let server = TestServer::builder()
        .args(["--stall-timeout", "0.5"])
        .start();
    // Far larger than what loopback socket buffers can hold (sparse, so
    // it costs nothing to make).
    let size = 512u64 << 20;
    let mut alice = server.alice();
    alice.noop();
    std::fs::File::create(server.user_dir(ALICE).join("big"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let mut c = server.alice();
    c.send_line("GET big");
    // Never read: the socket buffers fill, the transfer stalls, the server
    // gives up and closes. Then reading shows fewer bytes than announced.
    thread::sleep(Duration::from_millis(1500));
    let mut got = Vec::new();
    let _ = c.stream().try_clone().unwrap().read_to_end(&mut got);
    assert!((got.len() as u64) < size, "the download was cut");
    alice.noop();
}

#[test]
fn http_heads_must_arrive_in_time_and_idle_keep_alive_closes() {
    let server = TestServer::builder()
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--head-timeout", "0.5", "--idle-timeout", "0.7"])
        .start();
    let addr = server.http_addr();

    let mut slow = Conn::open(addr);
    slow.send(b"GET /healthz HTTP/1.1\r\nHo");
    let response = slow.read_to_close();
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");

    let mut idle = Conn::open(addr);
    idle.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let started = Instant::now();
    let response = idle.read_to_close();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert_eq!(response.matches("HTTP/1.1").count(), 1, "{response}");
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[test]
fn per_address_limit_refuses_the_extra_connection_only() {
    let server = TestServer::builder()
        .args(["--max-per-ip", "3", "--http-listen", "127.0.0.1:0"])
        .start();
    let mut kept: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    let mut extra = Client::connect_raw(server.addr()).unwrap();
    assert_eq!(
        extra.read_reply(),
        (421, "too many connections".to_string())
    );
    extra.expect_eof();
    // HTTP counts against the same address.
    let mut http = Conn::open(server.http_addr());
    let response = http.read_to_close();
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    // The established sessions are unaffected.
    for c in &mut kept {
        c.noop();
    }
    drop(kept.pop());
    // A freed slot is usable again (the close is noticed asynchronously).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect_raw(server.addr()).unwrap();
        match c.read_reply() {
            (220, _) => break,
            (421, _) => assert!(Instant::now() < deadline, "slot never freed"),
            other => panic!("{other:?}"),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn global_limit_counts_both_protocols() {
    let server = TestServer::builder()
        .args(["--max-connections", "2", "--http-listen", "127.0.0.1:0"])
        .start();
    let addr = server.http_addr();
    let mut a = server.connect();
    let mut keep_alive = Conn::open(addr);
    keep_alive.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    keep_alive.response().assert_status(200, "GET /healthz");
    let mut third = Client::connect_raw(server.addr()).unwrap();
    assert_eq!(third.read_reply().0, 421);
    a.noop();
}

/// User and system CPU time of a process, from /proc.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel reports in clock ticks, 100 per second on Linux.
    Duration::from_millis(ticks * 10)
}

#[test]
fn running_out_of_descriptors_does_not_spin_and_recovers() {
    let _measuring = timing_sensitive();
    let server = TestServer::builder()
        .args(["--max-connections", "1000", "--max-per-ip", "1000"])
        .start();
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", server.pid()))
        .arg("--nofile=64:64")
        .status()
        .expect("prlimit (util-linux) is needed for this test");
    assert!(status.success());

    // More clients than the server has descriptors for.
    let mut clients: Vec<TcpStream> = (0..120)
        .map(|_| {
            let s = TcpStream::connect(server.addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let before = cpu_time(server.pid());
    thread::sleep(Duration::from_secs(2));
    let spent = cpu_time(server.pid()) - before;
    assert!(
        spent < Duration::from_millis(300),
        "the server burned {spent:?} of CPU in 2 s while out of descriptors"
    );
    let log = server.stderr_text();
    assert!(log.contains("accept failed"), "{log}");
    assert!(
        log.matches("accept failed").count() <= 2,
        "logged once per interval, not per attempt:\n{log}"
    );

    // Those past the descriptors were told at once to come back (`421`),
    // not left waiting without a word; the others were greeted.
    let waiting = clients.split_off(80);
    let mut told = 0;
    for mut s in waiting.iter() {
        let mut buf = [0u8; 128];
        let n = s.read(&mut buf).unwrap_or(0);
        let line = String::from_utf8_lossy(&buf[..n]);
        if line.starts_with("421 out of file descriptors, try again later") {
            told += 1;
        } else {
            assert!(line.starts_with("220 "), "{line:?}");
        }
    }
    assert!(told > 0, "nobody was told to come back");
    // Others leave; those told come back and are served, by themselves.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..told {
        loop {
            let mut c = Client::connect_raw(server.addr()).unwrap();
            let (code, text) = c.read_reply();
            if code == 220 {
                break;
            }
            assert_eq!(code, 421, "{text}");
            assert!(Instant::now() < deadline, "still refused after 5 s");
            thread::sleep(Duration::from_millis(50));
        }
    }
    let mut c = server.alice();
    c.noop();
}

#[test]
fn slowloris_sockets_do_not_slow_a_normal_client() {
    let _measuring = timing_sensitive();
    const SLOW: usize = 300;
    let server = TestServer::builder()
        .args(["--max-per-ip", "1000", "--http-listen", "127.0.0.1:0"])
        .start();
    let http = server.http_addr();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|i| {
            let addr = if i % 2 == 0 { server.addr() } else { http };
            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut normal = server.alice();
    let started = Instant::now();
    let mut round = 0u8;
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(4) {
        // A byte on every slow socket, as a slowloris client would send.
        for s in &mut slow {
            let _ = s.write(if round.is_multiple_of(2) { b"N" } else { b"O" });
        }
        round = round.wrapping_add(1);
        for _ in 0..10 {
            let t = Instant::now();
            normal.noop();
            worst = worst.max(t.elapsed());
        }
        thread::sleep(Duration::from_millis(300));
    }
    assert!(
        worst < Duration::from_millis(500),
        "a NOOP took {worst:?} next to {SLOW} slow sockets"
    );
}

#[test]
fn a_failed_login_is_answered_after_the_delay_without_holding_others() {
    let _measuring = timing_sensitive();
    let server = TestServer::builder().args(["--login-delay", "1"]).start();
    let mut other = server.alice();
    let mut c = server.connect();
    let started = Instant::now();
    c.send_line(&format!("AUTH {ALICE} wrong"));
    c.send_line("NOOP");
    // Meanwhile everyone else is served at once.
    assert_noops_prompt(&mut other, 5);
    assert_eq!(c.read_reply(), (530, "login incorrect".to_string()));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // What was sent meanwhile is answered after it, in order.
    assert_eq!(c.read_reply(), (200, "ok".to_string()));
}

#[test]
fn unknown_user_and_wrong_password_look_the_same() {
    let server = TestServer::builder().args(["--login-delay", "0.3"]).start();
    let mut timings = Vec::new();
    let mut replies = Vec::new();
    for line in [
        format!("AUTH {ALICE} wrong"),
        "AUTH nobody wrong".to_string(),
    ] {
        let mut c = server.connect();
        let t = Instant::now();
        replies.push(c.cmd(&line));
        timings.push(t.elapsed());
    }
    assert_eq!(replies[0], replies[1]);
    assert_eq!(replies[0].0, 530);
    for t in timings {
        assert!(
            t >= Duration::from_millis(280) && t < Duration::from_secs(2),
            "{t:?}"
        );
    }
}

#[test]
fn repeated_failures_lock_an_address_out_until_it_expires() {
    let server = TestServer::builder()
        .args(["--login-delay", "0", "--lockout-failures", "3"])
        .args(["--lockout-window", "60", "--lockout-duration", "3"])
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    // Failures count per address, across connections.
    for _ in 0..3 {
        let mut c = server.connect();
        c.expect(&format!("AUTH {ALICE} wrong"), 530);
    }
    let locked_at = Instant::now();
    // Now even the right password gets the same 530...
    let mut c = server.connect();
    assert_eq!(
        c.cmd(&format!("AUTH {ALICE} {ALICE_PW}")),
        (530, "login incorrect".to_string())
    );
    // ...and HTTP from the same address is refused too.
    let mut http = Conn::open(server.http_addr());
    let basic = basic_credentials(ALICE, ALICE_PW);
    http.send(
        format!(
            "GET /files/ HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = http.read_to_close();
    assert!(response.starts_with("HTTP/1.1 401 "), "{response}");
    // The log is read on another thread: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr_text().contains("locked out") {
        assert!(Instant::now() < deadline, "no lockout in the log");
        thread::sleep(Duration::from_millis(20));
    }

    // After the lockout, the right password works again.
    let wait = Duration::from_millis(3100).saturating_sub(locked_at.elapsed());
    thread::sleep(wait);
    let mut c = server.connect();
    c.expect(&format!("AUTH {ALICE} {ALICE_PW}"), 230);
}

#[test]
fn the_session_after_a_refusal_is_not_counted() {
    // A refused connection must release nothing it never took: after many
    // refusals the limit still admits exactly its number.
    let server = TestServer::builder().args(["--max-per-ip", "2"]).start();
    let a = server.connect();
    let b = server.connect();
    for _ in 0..20 {
        let mut extra = Client::connect_raw(server.addr()).unwrap();
        assert_eq!(extra.read_reply().0, 421);
        let _ = rest_of(&mut extra);
    }
    drop(a);
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut admitted = 0;
    let mut held = Vec::new();
    while admitted < 2 {
        let mut c = Client::connect_raw(server.addr()).unwrap();
        match c.read_reply().0 {
            220 => {
                admitted += 1;
                held.push(c);
            }
            _ => {
                assert!(Instant::now() < deadline, "slots never freed");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let mut third = Client::connect_raw(server.addr()).unwrap();
    assert_eq!(third.read_reply().0, 421);
}

/// The audit lines (after the `audit: ` marker) in the server's log.
fn audit_lines(server: &TestServer) -> Vec<String> {
    server
        .stderr_lines()
        .into_iter()
        .filter_map(|line| {
            line.split_once(" audit: ")
                .map(|(_, rest)| rest.to_string())
        })
        .collect()
}

#[test]
fn the_audit_log_records_events_and_cannot_be_forged() {
    let server = TestServer::builder().args(["--login-delay", "0"]).start();
    // A claimed user name that tries to end the line and forge another,
    // with an ANSI escape for good measure.
    let mut c = server.connect();
    c.send_raw(
        b"AUTH x\x1b[31m\rT [INFO] audit: login_ok ip=6.6.6.6 proto=line user=\"root\" pw\n",
    );
    assert_eq!(c.read_code(), 530);
    let mut a = server.alice();
    a.put("report.txt", b"hello");
    assert_eq!(a.get("report.txt"), b"hello");
    a.expect("DEL report.txt", 250);
    a.expect("GET ../x", 553);
    drop(a);

    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines = audit_lines(&server);
        if lines.iter().any(|l| l.starts_with("name_refused")) || Instant::now() > deadline {
            break lines;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let text = server.stderr_text();
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the log:\n{text}"
    );
    assert!(!text.contains('\r'), "a raw CR reached the log:\n{text}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("ip=6.6.6.6") && l.starts_with("login_ok")),
        "a forged line:\n{lines:#?}"
    );
    let expect = [
        // The user name is the first word; the rest is the password,
        // which is never logged.
        r#"login_failed ip=127.0.0.1 proto=line user="x\u{1b}[31m\rT""#,
        r#"login_ok ip=127.0.0.1 proto=line user="alice""#,
        r#"upload ip=127.0.0.1 proto=line user="alice" name="report.txt" size=5 received=5 result=ok"#,
        r#"download ip=127.0.0.1 proto=line user="alice" name="report.txt" size=5 sent=5 result=ok"#,
        r#"delete ip=127.0.0.1 proto=line user="alice" name="report.txt" size=5 result=ok"#,
        r#"name_refused ip=127.0.0.1 proto=line user="alice" verb=GET"#,
    ];
    for prefix in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "no audit line starting with {prefix}:\n{lines:#?}"
        );
    }
    // Passwords never appear.
    assert!(!text.contains(ALICE_PW));
}

#[test]
fn sighup_reloads_users_and_a_broken_file_keeps_the_old_ones() {
    let mut server = TestServer::builder().args(["--login-delay", "0"]).start();
    let mut alice = server.alice();
    let users = server.root().join("id_passwd.txt");
    assert!(users.is_file());

    // A new user appears, alice is removed.
    std::fs::write(&users, "carol:new-pass\n").unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr_text().contains("reloaded 1 user") {
        assert!(Instant::now() < deadline, "no reload logged");
        thread::sleep(Duration::from_millis(20));
    }
    let mut carol = server.connect();
    carol.expect("AUTH carol new-pass", 230);
    let mut c = server.connect();
    c.expect(&format!("AUTH {ALICE} {ALICE_PW}"), 530);
    // Alice's open session ends at her next command.
    assert_eq!(alice.cmd("NOOP"), (421, "account removed".to_string()));
    alice.expect_eof();

    // A broken file changes nothing.
    std::fs::write(&users, "carol:new-pass\nbroken line without colon\n").unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr_text().contains("reload failed") {
        assert!(Instant::now() < deadline, "no failed reload logged");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.stderr_text().contains(":2: "),
        "the bad line is named"
    );
    let mut again = server.connect();
    again.expect("AUTH carol new-pass", 230);
    carol.noop();
    assert!(server.is_running());
}

#[test]
fn hash_password_output_round_trips_through_the_pbkdf2_crate() {
    let line = hashed_entry("carol", "open sesame", 2_000);
    let phc = line.strip_prefix("carol:").unwrap();
    let parts: Vec<&str> = phc.split('$').collect();
    let b64 = |s: &str| {
        // Unpadded standard base64, decoded by hand to stay independent.
        const TABLE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.chars() {
            bits = (bits << 6) | TABLE.find(c).unwrap() as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    };
    let (salt, hash) = (b64(parts[3]), b64(parts[4]));
    let mut expected = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"open sesame", &salt, 2_000, &mut expected);
    assert_eq!(hash, expected);
}

#[test]
fn hashed_passwords_work_over_both_protocols_and_warn_about_plain_ones() {
    let entry = hashed_entry("carol", "open sesame", 20_000);
    let server = TestServer::builder()
        .users_file(format!("{entry}\n{ALICE}:{ALICE_PW}\n"))
        .args(["--login-delay", "0", "--http-listen", "127.0.0.1:0"])
        .start();
    let mut c = server.connect();
    c.expect("AUTH carol wrong", 530);
    c.expect("AUTH nobody open sesame", 530);
    c.expect("AUTH carol open sesame", 230);
    c.put("x", b"hashed");

    let mut http = Conn::open(server.http_addr());
    let basic = basic_credentials("carol", "open sesame");
    http.send(
        format!(
            "GET /files/x HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\n\r\n\
             GET /files/x HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = http.read_to_close();
    assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
    assert!(response.ends_with("hashed"), "{response}");

    let log = server.stderr_text();
    assert!(
        log.contains("passwords stored in plain text for: alice;"),
        "{log}"
    );
}

#[test]
fn password_checks_do_not_stall_other_sessions() {
    let _measuring = timing_sensitive();
    // Heavy enough that each check takes many slices and the four (one at
    // a time, all from one address) outlast the NOOPs below, with the
    // optimised hash of every build (about a quarter of a second each,
    // unoptimised or not).
    let entry = hashed_entry("carol", "pw", 1_000_000);
    let server = TestServer::builder()
        .users_file(format!("{entry}\n{ALICE}:{ALICE_PW}\n"))
        .args(["--login-delay", "0", "--max-per-ip", "100"])
        .start();
    let mut alice = server.alice();
    let started = Instant::now();
    let mut checking: Vec<Client> = (0..4)
        .map(|i| {
            let mut c = server.connect();
            let password = if i % 2 == 0 { "pw" } else { "wrong" };
            c.send_line(&format!("AUTH carol {password}"));
            c
        })
        .collect();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        alice.noop();
        worst = worst.max(t.elapsed());
    }
    let probed = started.elapsed();
    for (i, c) in checking.iter_mut().enumerate() {
        let expected = if i % 2 == 0 { 230 } else { 530 };
        assert_eq!(c.read_code(), expected);
    }
    let checked = started.elapsed();
    assert!(
        worst < Duration::from_millis(400),
        "a NOOP waited {worst:?} behind password checks (all took {checked:?})"
    );
    assert!(
        probed < checked,
        "the NOOPs ({probed:?}) did not run while the checks did ({checked:?})"
    );
}

#[test]
fn quotas_refuse_an_upload_before_any_byte_over_both_protocols() {
    let server = TestServer::builder()
        .args(["--user-quota", "100", "--user-max-files", "3"])
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    let mut c = server.alice();
    c.put("a", &[1u8; 60]);
    // 60 + 41 > 100: refused instead of 150, nothing expected, nothing kept.
    assert_eq!(
        c.cmd("PUT 41 b"),
        (
            552,
            "quota exceeded (at most 100 bytes per user)".to_string()
        )
    );
    c.noop();
    server.assert_tmp_empty();
    assert_eq!(c.cmd("PARTIAL b"), (213, "0".to_string()));
    // Replacing a file gives its bytes back first.
    c.put("a", &[2u8; 100]);
    c.expect("DEL a", 250);
    c.put("a", &[3u8; 40]);
    c.put("b", &[4u8; 30]);
    c.put("c", &[5u8; 30]);
    assert_eq!(
        c.cmd("PUT 0 d"),
        (552, "quota exceeded (at most 3 files per user)".to_string())
    );
    // Bob has his own quota.
    server.bob().put("b", &[6u8; 100]);

    // HTTP: a declared length is refused at once, without 100 Continue...
    let mut http = Conn::open(server.http_addr());
    let basic = basic_credentials(ALICE, ALICE_PW);
    http.send(
        format!(
            "PUT /files/a HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\n\
             Content-Length: 41\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    // The first response is the refusal: no `100 Continue` before it.
    let response = http.response();
    response.assert_status(507, "PUT over the quota");
    assert!(response.text().contains("quota exceeded"), "{response:?}");
    // ...and a chunked body as soon as it grows past the room left.
    let mut http = Conn::open(server.http_addr());
    http.send_lenient(
        format!(
            "PUT /files/a HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\n\
             Transfer-Encoding: chunked\r\n\r\n20\r\n{}\r\n20\r\n{}\r\n0\r\n\r\n",
            "x".repeat(32),
            "y".repeat(32)
        )
        .as_bytes(),
    );
    http.response()
        .assert_status(507, "chunked PUT over the quota");
    assert_eq!(c.get("a"), vec![3u8; 40], "the old version stays");
    server.assert_tmp_empty_within(Duration::from_secs(5));
}

/// The quota counts uploads in progress (their declared size from the
/// first byte, over both protocols) and the partials of interrupted
/// uploads: neither two uploads at once nor abandoned uploads pass it.
#[test]
fn quota_counts_uploads_in_progress_and_partials() {
    let server = TestServer::builder()
        .args(["--user-quota", "100"])
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    let over = (
        552,
        "quota exceeded (at most 100 bytes per user)".to_string(),
    );
    // 60 bytes announced and not one sent yet: 41 more do not fit.
    let mut first = server.alice();
    first.start_put("first", 60);
    let mut c = server.alice();
    assert_eq!(c.cmd("PUT 41 second"), over);
    let mut http = Conn::open(server.http_addr());
    let basic = basic_credentials(ALICE, ALICE_PW);
    http.send(
        format!(
            "PUT /files/second HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\n\
             Content-Length: 41\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = http.read_to_close();
    assert!(response.starts_with("HTTP/1.1 507 "), "{response}");
    c.put("second", &[1u8; 40]);
    first.send_raw(&[2u8; 60]);
    assert_eq!(first.read_reply().0, 226);

    // An upload broken off after 30 bytes holds them as a partial, and
    // they count: 60 + 30 + 11 > 100.
    c.expect("DEL second", 250);
    let mut broken = server.alice();
    broken.start_put("third", 40);
    broken.send_raw(&[3u8; 30]);
    drop(broken);
    assert_eq!(c.wait_partial("third", 30, Duration::from_secs(5)), 30);
    assert_eq!(c.cmd("PUT 11 fourth"), over);
    c.put("fourth", &[4u8; 10]);
    // Continuing it gives the 30 bytes held back: 60 + 10 - 30 + 40 > 100...
    c.rest(30);
    assert_eq!(c.cmd("PUT 40 third"), over);
    // ...until there is room for the whole file.
    c.expect("DEL fourth", 250);
    c.rest(30);
    c.send_line("PUT 40 third");
    assert_eq!(c.read_reply(), (150, "10".to_string()));
    c.send_raw(&[3u8; 10]);
    assert_eq!(c.read_reply().0, 226);
    assert_eq!(c.get("third"), vec![3u8; 40]);
    // Everything ended: the claims are all given back.
    c.expect("DEL first", 250);
    c.put("fifth", &[5u8; 60]);
    server.assert_tmp_empty();
}

/// `--user-max-files` counts uploads of new names in progress.
#[test]
fn file_limit_counts_uploads_of_new_names_in_progress() {
    let server = TestServer::builder()
        .args(["--user-max-files", "2"])
        .start();
    let mut running = server.alice();
    running.start_put("x", 5);
    let mut c = server.alice();
    c.put("y", b"y");
    assert_eq!(
        c.cmd("PUT 1 z"),
        (552, "quota exceeded (at most 2 files per user)".to_string())
    );
    // Replacing a file adds none.
    c.put("y", b"yy");
    running.send_raw(b"xxxxx");
    assert_eq!(running.read_reply().0, 226);
    // An upload that ends without completing gives its file back.
    c.expect("DEL y", 250);
    let mut broken = server.alice();
    broken.start_put("w", 5);
    drop(broken);
    server.assert_tmp_empty_within(Duration::from_secs(5));
    c.put("z", b"z");
}

/// Voluntary context switches of a process: each is a wake-up from a wait.
fn wake_ups(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn an_idle_server_does_not_wake_up() {
    let _measuring = timing_sensitive();
    let server = TestServer::builder()
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    // Connect and leave once, so everything is set up, then stay away.
    server.alice().noop();
    thread::sleep(Duration::from_millis(200));
    let before = wake_ups(server.pid());
    thread::sleep(Duration::from_secs(2));
    let after = wake_ups(server.pid());
    assert!(
        after - before <= 2,
        "{} wake-ups in 2 s with nobody connected",
        after - before
    );
}

#[test]
fn idle_sessions_do_not_wake_the_server_before_their_timeout() {
    let _measuring = timing_sensitive();
    let server = TestServer::builder()
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    // Logged-in line sessions and a keep-alive HTTP connection after a
    // download: each has a deadline (the idle timeout, minutes away) and
    // nothing else to do.
    let mut sessions: Vec<Client> = (0..20).map(|_| server.alice()).collect();
    server.plant_file(ALICE, "f", &[7u8; 100_000]);
    for c in &mut sessions {
        assert_eq!(c.get("f").len(), 100_000);
    }
    let mut http = Conn::open(server.http_addr());
    http.send(&alice_req("GET", "/files/f"));
    let got = http.response();
    got.assert_status(200, "GET /files/f");
    assert_eq!(got.body.len(), 100_000);
    thread::sleep(Duration::from_millis(200));
    let before = wake_ups(server.pid());
    thread::sleep(Duration::from_secs(2));
    let after = wake_ups(server.pid());
    assert!(
        after - before <= 2,
        "{} wake-ups in 2 s with only idle sessions",
        after - before
    );
    // Still there, and served at once.
    for c in &mut sessions {
        c.noop();
    }
}

#[test]
fn the_basic_credentials_helper_matches_known_values() {
    assert_eq!(basic_credentials("alice", "pw"), "YWxpY2U6cHc=");
    assert_eq!(basic_credentials("a", "b"), "YTpi");
}
