//! Descriptors per session (issue 23): many distinct users at once under a
//! low open-file limit, what an idle session costs, and what happens when
//! descriptors run out anyway.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// The password of every generated user.
const PASSWORD: &str = "many-users-Pw-1";
/// PBKDF2's least rounds: the logins are what is tested, not the hash.
const ITERATIONS: u32 = 1000;

/// A users file of `count` distinct users `u0`, `u1`, ... with hashed
/// passwords (the hash made once and shared: the salt need not differ
/// here).
fn many_users(count: usize) -> String {
    let first = hashed_entry("u0", PASSWORD, ITERATIONS);
    let hash = first.strip_prefix("u0:").unwrap();
    (0..count).map(|i| format!("u{i}:{hash}\n")).collect()
}

/// The connection limit the server says it took (its start log); before
/// that log existed, the limit it documented: half the open-file limit
/// less 32.
fn advertised_limit(server: &TestServer, open_files: u64) -> usize {
    let logged = server.stderr_lines().iter().find_map(|line| {
        let end = line.find(" connections at once")?;
        let start = line[..end].rfind("up to ")? + "up to ".len();
        line[start..end].parse().ok()
    });
    logged.unwrap_or(((open_files - 32) / 2) as usize)
}

fn log_in(server: &TestServer, i: usize) -> Client {
    let mut c = server.connect();
    let (code, text) = c.cmd(&format!("AUTH u{i} {PASSWORD}"));
    assert_eq!(code, 230, "login of distinct user {i}: `{code} {text}`");
    c
}

/// Sets the soft open-file limit of the running process `pid`, as another
/// process sharing a limit (or an operator) would leave it.
fn set_soft_open_files(pid: i32, soft: u64) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={soft}:"))
        .status()
        .unwrap();
    assert!(status.success(), "prlimit --pid {pid} --nofile={soft}:");
}

#[test]
fn distinct_users_up_to_the_advertised_limit_all_log_in_upload_and_download() {
    if !outside_client("prlimit") {
        return;
    }
    let _heavy = cpu_heavy();
    const OPEN_FILES: u64 = 512;
    // Enough users for any limit 512 descriptors can advertise.
    let server = TestServer::builder()
        .users_file(many_users(OPEN_FILES as usize / 2))
        .args(["--max-per-ip", "100000", "--idle-timeout", "120"])
        .start_with_open_files(OPEN_FILES);
    let limit = advertised_limit(&server, OPEN_FILES);
    assert!(limit >= 100, "advertised {limit}");
    let mut clients: Vec<Client> = (0..limit).map(|i| log_in(&server, i)).collect();
    // Every one of them transferring at once: an upload each (its
    // temporary file open while its payload has not come)...
    for (i, c) in clients.iter_mut().enumerate() {
        c.start_put("f", format!("file of u{i}").len());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_raw(format!("file of u{i}").as_bytes());
        let (code, text) = c.read_reply();
        assert_eq!(code, 226, "upload of u{i}: `{code} {text}`");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.get("f"), format!("file of u{i}").as_bytes());
    }
    // ...and a download each, held open by a client that does not read
    // (one file, hard-linked into every directory).
    const BIG: usize = 16 << 20;
    let big = server.root().join("big");
    fs::write(&big, pseudo_random_bytes(23, BIG)).unwrap();
    for i in 0..limit {
        fs::hard_link(&big, server.user_dir(&format!("u{i}")).join("big")).unwrap();
    }
    let (last, holding) = clients.split_last_mut().unwrap();
    for (i, c) in holding.iter_mut().enumerate() {
        let (code, text) = c.cmd("GET big");
        assert_eq!(
            (code, text.as_str()),
            (150, BIG.to_string().as_str()),
            "download of u{i}"
        );
    }
    // Each of them holds its socket and its file now.
    let held = server.open_descriptors().len();
    assert!(held >= 2 * (limit - 1), "{held} descriptors");
    // With every other download open, the last session still works.
    last.put("g", b"last one");
    assert_eq!(last.get("g"), b"last one");
    let mut names = last.list_names();
    names.sort();
    assert_eq!(names, ["big", "f", "g"]);
    drop(clients);
    let log = server.stderr_text();
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn an_idle_logged_in_session_costs_one_descriptor() {
    if !outside_client("prlimit") {
        return;
    }
    const OPEN_FILES: u64 = 2048;
    const FIRST: usize = 100;
    const THEN: usize = 600;
    let server = TestServer::builder()
        .users_file(many_users(THEN))
        .args(["--max-per-ip", "100000", "--idle-timeout", "120"])
        .start_with_open_files(OPEN_FILES);
    // Each logs in and does a command, as a session does before it idles.
    let session = |i| {
        let mut c = log_in(&server, i);
        c.list();
        c
    };
    let mut clients: Vec<Client> = (0..FIRST).map(session).collect();
    let at_first = server.open_descriptors().len();
    clients.extend((FIRST..THEN).map(session));
    let at_last = server.open_descriptors().len();
    let per_session = (at_last - at_first) as f64 / (THEN - FIRST) as f64;
    eprintln!(
        "{at_first} descriptors with {FIRST} idle sessions, {at_last} with {THEN}: \
         {per_session:.3} per session"
    );
    assert!(
        per_session <= 1.1,
        "{per_session:.3} descriptors per idle session of a distinct user"
    );
    // Bounded besides: the server's own, and the user directories it keeps.
    assert!(
        at_last <= THEN + 128,
        "{at_last} descriptors for {THEN} sessions"
    );
    drop(clients);
}

#[test]
fn out_of_descriptors_is_a_temporary_refusal_and_the_server_recovers() {
    if !outside_client("prlimit") {
        return;
    }
    let (server, http) = start_http(
        TestServer::builder()
            .users_file(format!("{ALICE}:{ALICE_PW}\n"))
            .arg("--idle-timeout")
            .arg("60"),
    );
    let mut early = server.alice();
    early.put("f", b"before");
    let mut idle = server.alice();
    idle.noop();
    // Every descriptor number below the limit is taken, as when another
    // process shares the limit (nothing the server itself opened).
    let held = server.open_descriptors();
    let first_free = (0..).find(|n| !held.contains(n)).unwrap();
    set_soft_open_files(server.pid(), u64::from(first_free));

    // A new connection is told, at once, to come back later; again and
    // again, over both fronts.
    for _ in 0..3 {
        let mut refused = Client::connect_raw(server.addr()).unwrap();
        refused.set_read_timeout(Duration::from_secs(3));
        match refused.read_reply_or_eof() {
            ReplyOrEof::Reply(code, text) => assert_eq!(
                (code, text.as_str()),
                (421, "out of file descriptors, try again later")
            ),
            ReplyOrEof::Eof => panic!("closed without a word"),
        }
        refused.expect_eof();
        let mut conn = Conn::open(http);
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        conn.send_lenient(&alice_req("GET", "/files/f"));
        let resp = conn.response();
        resp.assert_status(503, "a request when descriptors ran out");
        assert_eq!(
            resp.header("Retry-After"),
            Some("1"),
            "{}\n{}",
            resp.text(),
            server.stderr_text()
        );
        assert!(resp.says_close());
    }
    // A logged-in session whose command needs a file gets the same
    // temporary refusal (not 451), and its connection closes.
    let (code, text) = early.cmd("GET f");
    assert_eq!(
        (code, text.as_str()),
        (421, "out of file descriptors, try again later")
    );
    early.expect_eof();

    // Descriptors are back: the server serves again by itself.
    set_soft_open_files(server.pid(), 1024);
    idle.noop();
    let mut again = server.alice();
    assert_eq!(again.get("f"), b"before");
    again.put("g", b"after");
    assert_eq!(again.get("g"), b"after");
    let mut conn = Conn::open(http);
    conn.send(&alice_req("GET", "/files/g"));
    let got = conn.response();
    got.assert_status(200, "HTTP after the descriptors came back");
    assert_eq!(got.body, b"after");
}

/// A tree `a/b/c/d` with a file in each folder; the paths `TREE` lists.
fn plant_tree(server: &TestServer) -> Vec<String> {
    let mut c = server.alice();
    let mut expected = Vec::new();
    let mut folder = String::new();
    for name in ["a", "b", "c", "d"] {
        folder = if folder.is_empty() {
            name.to_string()
        } else {
            format!("{folder}/{name}")
        };
        c.expect(&format!("MKDIR {folder}"), 257);
        c.put(&format!("{folder}/f"), folder.as_bytes());
        expected.push(format!("{folder}/"));
        expected.push(format!("{folder}/f"));
    }
    expected.sort();
    expected
}

/// `TREE`'s listing: the paths it named, sorted, or the reply that
/// ended it in place of the next block.
fn tree_of(c: &mut Client) -> Result<Vec<String>, (u16, String)> {
    c.send_line("TREE");
    let mut data = Vec::new();
    loop {
        let (code, text) = c.read_reply();
        if code != 150 {
            return Err((code, text));
        }
        let n: usize = text.parse().unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&c.read_exact_bytes(n));
    }
    let mut names: Vec<String> = parse_listing(&data)
        .into_iter()
        .map(|entry| String::from_utf8(entry.name).unwrap())
        .collect();
    names.sort();
    Ok(names)
}

/// A recursive listing that cannot open a subfolder for want of
/// descriptors used to leave that folder out and end as if complete: a
/// partial tree taken as the whole by `get -r`, a sync or a folder copy.
/// Whatever the limit, the listing is now either whole or ends with an
/// error reply, and the folder copy either copies everything or fails.
#[test]
fn a_recursive_listing_short_of_descriptors_fails_instead_of_leaving_folders_out() {
    if !outside_client("prlimit") {
        return;
    }
    let server = TestServer::builder()
        .users_file(format!("{ALICE}:{ALICE_PW}\n"))
        .arg("--idle-timeout")
        .arg("60")
        .start();
    let expected = plant_tree(&server);
    let mut refused = 0;
    // From no descriptor to spare up to more than the tree needs: every
    // point at which a listing can run short.
    for extra in 0..8u64 {
        let mut c = server.alice();
        c.noop();
        let held = server.open_descriptors();
        let first_free = (0..).find(|n| !held.contains(n)).unwrap();
        set_soft_open_files(server.pid(), u64::from(first_free) + extra);
        let listed = tree_of(&mut c);
        let copied = match &listed {
            Ok(_) => Some(c.cmd("FROM a").0)
                .filter(|&code| code == 350)
                .map(|_| c.cmd(&format!("COPY copy{extra}"))),
            Err(_) => None,
        };
        set_soft_open_files(server.pid(), 1024);
        match listed {
            // Copies made before are in the tree too (a copy that failed
            // part-way keeps what it copied): only `a` is checked.
            Ok(names) => assert_eq!(
                names
                    .into_iter()
                    .filter(|n| n.starts_with("a/"))
                    .collect::<Vec<_>>(),
                expected,
                "TREE with {extra} descriptors to spare"
            ),
            Err((code, text)) => {
                refused += 1;
                assert!(
                    code == 421 || code == 451,
                    "TREE with {extra} to spare ended `{code} {text}`"
                );
            }
        }
        // A folder copy that says it copied did copy all four files.
        if let Some((250, text)) = copied {
            assert!(
                text.starts_with("copied 4 files"),
                "COPY with {extra} to spare: `250 {text}`"
            );
        }
    }
    assert!(refused > 0, "no limit made the listing run short");
    // And with descriptors back, the whole tree is listed.
    let mut c = server.alice();
    let names = tree_of(&mut c).unwrap();
    for path in &expected {
        assert!(
            names.contains(path),
            "{path} missing after recovery: {names:?}"
        );
    }
}
