//! WebDAV with real clients from Debian's packages (issue 20): litmus's
//! basic, copymove, props, locks and http groups; rclone's webdav remote
//! syncing a 3-level tree of 1,000 files up and back and again after
//! changes; cadaver driven by a script. Each suite skips (or, under
//! `.ci/run`, fails) when its client is not installed.
//!
//! Against the real `ferryd` over loopback; every client runs under a
//! time limit.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::*;

/// Runs `cmd` and kills it past `limit`: a client that hangs fails the
/// test instead of holding the suite.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the client");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for the client").is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still ran after {limit:?}; it said: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn base_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/files/")
}

/// What litmus reported for one group: the counts of its summary line and
/// the names of the tests that failed.
#[derive(Debug)]
struct LitmusGroup {
    run: u32,
    passed: u32,
    failed: Vec<String>,
    text: String,
}

fn litmus_group(group: &str) -> LitmusGroup {
    // A server of its own per group: a group's leftovers (litmus removes
    // its collection with a DELETE that folders refuse while it is not
    // empty) must not stop the next group's start.
    let (server, addr) = http_server();
    let mut cmd = Command::new("litmus");
    cmd.arg(base_url(addr))
        .args([ALICE, ALICE_PW])
        .env("TESTS", group)
        // litmus writes debug.log where it runs.
        .current_dir(server.root());
    let out = run_bounded(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = text
        .lines()
        .find(|l| l.starts_with("<- summary for"))
        .unwrap_or_else(|| panic!("litmus {group}: no summary in {text}"));
    // "<- summary for `basic': of 16 tests run: 16 passed, 0 failed. 100.0%"
    let number = |after: &str| -> u32 {
        let at = summary.find(after).unwrap() + after.len();
        summary[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let failed = text
        .lines()
        .filter(|l| l.contains(" FAIL"))
        .filter_map(|l| {
            // " 4. copy_overwrite........ FAIL (why)" (the name is printed
            // twice without a terminal): the name of the test.
            let before = &l[..l.find(" FAIL")?];
            let name = before.split_whitespace().last()?.trim_end_matches('.');
            Some(name.to_owned())
        })
        .collect();
    LitmusGroup {
        run: number("of "),
        passed: number("run: "),
        failed,
        text,
    }
}

#[test]
fn litmus_basic_copymove_props_locks_and_http() {
    if !outside_client("litmus") {
        return;
    }
    let mut counts = BTreeMap::new();
    for group in ["basic", "copymove", "props", "locks", "http"] {
        let result = litmus_group(group);
        eprintln!(
            "litmus {group}: {} run, {} passed, {} failed {:?}",
            result.run,
            result.passed,
            result.run - result.passed,
            result.failed
        );
        assert!(result.run > 1, "{group} ran: {}", result.text);
        let unexpected: Vec<&String> = result.failed.iter().collect();
        assert!(
            unexpected.is_empty(),
            "litmus {group}: unexpected failures {unexpected:?}:\n{}",
            result.text
        );
        assert_eq!(
            result.run - result.passed,
            result.failed.len() as u32,
            "every failure named: {}",
            result.text
        );
        counts.insert(group, (result.run, result.passed));
    }
    for group in ["basic", "copymove", "props", "locks", "http"] {
        let (run, passed) = counts[group];
        assert_eq!(run, passed, "litmus {group}");
    }
}

fn rclone_command(args: &[&str], addr: std::net::SocketAddr, home: &Path) -> Command {
    let password = {
        let mut obscure = Command::new("rclone");
        obscure.args(["obscure", ALICE_PW]);
        let out = run_bounded(obscure, Duration::from_secs(20));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let mut cmd = Command::new("rclone");
    // The remote from the environment only: no config file anywhere.
    cmd.args(["--config", "/dev/null"])
        .args(args)
        .env("HOME", home)
        .env("RCLONE_CONFIG_FERRY_TYPE", "webdav")
        .env("RCLONE_CONFIG_FERRY_VENDOR", "other")
        .env("RCLONE_CONFIG_FERRY_URL", base_url(addr))
        .env("RCLONE_CONFIG_FERRY_USER", ALICE)
        .env("RCLONE_CONFIG_FERRY_PASS", password);
    cmd
}

fn rclone(args: &[&str], addr: std::net::SocketAddr, home: &Path) -> String {
    let out = run_bounded(rclone_command(args, addr, home), Duration::from_secs(120));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rclone {args:?} failed: {text}");
    text
}

/// The top folders each `rclone sync` worker takes (rclone filter
/// patterns): together, the whole tree.
const WORKERS: [&str; 5] = [
    "/dir [01]/**",
    "/dir [23]/**",
    "/dir [45]/**",
    "/dir [67]/**",
    "/dir [89]/**",
];

/// `rclone sync from to`, the tree shared among [`WORKERS`] running at
/// once. rclone's webdav remote spaces its calls 10 ms apart (its pacer,
/// which 1.60 cannot change) and makes three per uploaded file (`MKCOL`
/// of the folder, `PUT`, `PROPFIND`): one process takes over 30 s for
/// 1,000 files, five take a fifth of that. Each worker's sync is a sync of
/// its part (a filtered sync deletes only what its filter takes).
fn rclone_sync(from: &str, to: &str, addr: std::net::SocketAddr, home: &Path) {
    let children: Vec<_> = WORKERS
        .iter()
        .map(|filter| {
            let args = ["sync", from, to, "--include", filter];
            let mut cmd = rclone_command(&args, addr, home);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            (filter, cmd.spawn().expect("start rclone"))
        })
        .collect();
    let started = Instant::now();
    for (filter, mut child) in children {
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                panic!("rclone sync {from} {to} ({filter}) hangs");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "rclone sync {from} {to} ({filter}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every file under `root`, by relative path, with its bytes.
fn tree_of(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn rclone_syncs_a_tree_of_1000_files_up_and_back() {
    if !outside_client("rclone") {
        return;
    }
    let (server, addr) = http_server();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    // 10 x 10 folders of 10 files: three levels, 1,000 files, sizes that
    // differ, some names with spaces.
    let mut rng = Rng::new(20);
    for a in 0..10 {
        for b in 0..10 {
            let folder = local.join(format!("dir {a}")).join(format!("sub{b}"));
            fs::create_dir_all(&folder).unwrap();
            for c in 0..10 {
                let len = rng.range(0, 3000) as usize;
                let body: Vec<u8> = (0..len).map(|_| rng.range(0, 256) as u8).collect();
                fs::write(folder.join(format!("file {c}.bin")), body).unwrap();
            }
        }
    }
    let local_arg = local.to_str().unwrap();
    rclone_sync(local_arg, "ferry:tree", addr, work.path());
    let check = rclone(&["check", local_arg, "ferry:tree"], addr, work.path());
    assert!(check.contains("0 differences found"), "{check}");
    assert!(check.contains("1000 matching files"), "{check}");
    // What the server stores is what was sent, byte for byte.
    assert_eq!(
        tree_of(&server.user_dir(ALICE).join("tree")),
        tree_of(&local)
    );

    let back = work.path().join("back");
    rclone_sync("ferry:tree", back.to_str().unwrap(), addr, work.path());
    assert_eq!(tree_of(&back), tree_of(&local), "the round trip");

    // Change (to another size, which is what rclone compares here: the
    // server keeps no time it was given), add and delete some.
    for (i, (a, b, c)) in [(0, 0, 0), (3, 4, 5), (9, 9, 9)].into_iter().enumerate() {
        let file = local
            .join(format!("dir {a}"))
            .join(format!("sub{b}"))
            .join(format!("file {c}.bin"));
        fs::write(&file, format!("changed {i}").repeat(100 + i)).unwrap();
    }
    fs::write(local.join("dir 1").join("new at level two"), b"new").unwrap();
    fs::create_dir_all(local.join("dir 2").join("new sub")).unwrap();
    fs::write(local.join("dir 2").join("new sub").join("n.txt"), b"n").unwrap();
    fs::remove_file(local.join("dir 5").join("sub5").join("file 5.bin")).unwrap();
    fs::remove_dir_all(local.join("dir 7").join("sub7")).unwrap();
    rclone_sync(local_arg, "ferry:tree", addr, work.path());
    let check = rclone(&["check", local_arg, "ferry:tree"], addr, work.path());
    assert!(check.contains("0 differences found"), "{check}");
    // 1000, less the file and the folder of 10 removed, plus the 2 added.
    assert!(check.contains("991 matching files"), "{check}");
    assert_eq!(
        tree_of(&server.user_dir(ALICE).join("tree")),
        tree_of(&local)
    );
    rclone_sync("ferry:tree", back.to_str().unwrap(), addr, work.path());
    assert_eq!(tree_of(&back), tree_of(&local), "the second round trip");
}

#[test]
fn cadaver_scripted_ls_put_get_mkcol_move_copy_delete_lock() {
    if !outside_client("cadaver") {
        return;
    }
    let (server, addr) = http_server();
    let home = tempfile::tempdir().unwrap();
    let netrc = home.path().join(".netrc");
    fs::write(
        &netrc,
        format!("machine 127.0.0.1\nlogin {ALICE}\npassword {ALICE_PW}\n"),
    )
    .unwrap();
    let mut perms = fs::metadata(&netrc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    fs::set_permissions(&netrc, perms).unwrap();
    let work = home.path();
    fs::write(work.join("local.txt"), b"hello from cadaver\n").unwrap();
    let script = "\
mkcol docs
put local.txt docs/a.txt
ls docs
get docs/a.txt fetched.txt
copy docs/a.txt docs/b.txt
move docs/b.txt docs/c.txt
lock docs/c.txt
showlocks
put local.txt docs/c.txt
unlock docs/c.txt
delete docs/a.txt
ls docs
quit
";
    let mut cmd = Command::new("cadaver");
    cmd.arg(base_url(addr))
        .env("HOME", home.path())
        .current_dir(work)
        .stdin(Stdio::piped());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start cadaver");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "cadaver hangs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    for step in [
        "Creating `docs': succeeded.",
        "Uploading local.txt to `/files/docs/a.txt': [.] succeeded.",
        "Downloading `/files/docs/a.txt' to fetched.txt:",
        "Copying `/files/docs/a.txt' to `/files/docs/b.txt':  succeeded.",
        "Moving `/files/docs/b.txt' to `/files/docs/c.txt':  succeeded.",
        "Locking `docs/c.txt': succeeded.",
        "Unlocking `docs/c.txt': succeeded.",
        "Deleting `docs/a.txt': succeeded.",
    ] {
        let key = step.split(':').next().unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no {key:?} in {text}"));
        assert!(line.contains("succeeded"), "{line}\n{text}");
    }
    assert!(!text.contains("failed"), "{text}");
    assert!(text.contains("Scope: exclusive"), "showlocks: {text}");
    assert_eq!(
        fs::read(work.join("fetched.txt")).unwrap(),
        b"hello from cadaver\n"
    );
    let docs = server.user_dir(ALICE).join("docs");
    assert!(!docs.join("a.txt").exists() && !docs.join("b.txt").exists());
    assert_eq!(
        fs::read(docs.join("c.txt")).unwrap(),
        b"hello from cadaver\n"
    );
    // The last listing shows c.txt alone.
    let last = text.rsplit("ls docs").next().unwrap();
    assert!(last.contains("c.txt") && !last.contains("a.txt"), "{last}");
}
