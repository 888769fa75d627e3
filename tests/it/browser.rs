//! The web interface in a real browser: headless Chromium driven through
//! Selenium by `tests/browser/web_flow.py` (log in, upload two files
//! through the file input and one by drag and drop, download one and
//! compare SHA-256, preview a text file, the hostile name shown as text, a
//! cross-site form post refused, a new folder and a file moved into it,
//! delete after the question, phone width, an upload whose connection a
//! proxy cuts continued by the script from the bytes the server kept, log
//! out). This side starts ferryd, plants the hostile file, and checks the
//! storage and the log after.
//! A screenshot of each page is kept in `target/browser-screenshots/`.
//! Skipped with a message when Chromium, chromedriver or Selenium is
//! missing (a failure under `FERRY_REQUIRE_CLIENTS`, as in `.ci/run`).

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::common::*;

/// The whole browser run; it takes about 10 s here.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

fn selenium_installed() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return true;
    }
    let required =
        std::env::var(REQUIRE_CLIENTS_VAR).is_ok_and(|value| !value.is_empty() && value != "0");
    assert!(
        !required,
        "python3's selenium is not installed, and {REQUIRE_CLIENTS_VAR} is set (.ci/run installs it)"
    );
    eprintln!(
        "SKIPPED: python3's selenium is not installed (pip install selenium, or see .ci/run)"
    );
    false
}

#[test]
fn a_browser_logs_in_uploads_downloads_previews_deletes_and_logs_out() {
    if !outside_client("chromium") || !outside_client("chromedriver") || !selenium_installed() {
        return;
    }
    let (server, addr) = start_http(TestServer::builder().args(["--login-delay", "0"]));
    let hostile = "<img src=x onerror=alert(1)>.html";
    server.plant_file(ALICE, hostile, b"<script>alert(2)</script>\n");

    let work = tempfile::tempdir().unwrap();
    let one = "Hello from the browser test.\nSecond line.\n";
    let two = pseudo_random_bytes(19, 300 * 1024 + 7);
    std::fs::write(work.path().join("one.txt"), one).unwrap();
    std::fs::write(work.path().join("two.bin"), &two).unwrap();
    let resumed = pseudo_random_bytes(23, 3 * 1024 * 1024 + 5);
    std::fs::write(work.path().join("resume.bin"), &resumed).unwrap();
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/web_flow.py");

    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(format!("http://{addr}"))
        .args([ALICE, ALICE_PW])
        .arg(work.path())
        .arg(&shots);
    let (ok, stdout, stderr) = run_in_group(&mut cmd, BROWSER_DEADLINE);
    assert!(
        ok,
        "the browser run failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["downloaded_sha256"], sha256_hex(&two));

    // What the browser did is what the storage holds.
    let dir = server.user_dir(ALICE);
    let moved = dir.join("docs").join("two.bin");
    let stored = std::fs::read(moved).unwrap();
    assert_eq!(stored, two, "uploaded whole, then moved into docs/");
    assert!(!dir.join("one.txt").exists(), "deleted in the browser");
    let stored = std::fs::read(dir.join("resume.bin")).unwrap();
    assert!(stored == resumed, "the cut upload, continued, is whole");
    server.log_containing("PUT \"resume.bin\" continues at byte");
    let dropped = std::fs::read(dir.join("dropped.txt")).unwrap();
    assert_eq!(dropped, b"dropped on the page\n", "dropped on the page");
    assert!(
        dir.join(hostile).exists(),
        "the cross-site post deleted nothing"
    );
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(
        taken >= 10,
        "a screenshot of each page: {taken} in {}",
        shots.display()
    );
}

/// Runs `cmd` in a process group of its own, so that on the deadline the
/// script, chromedriver and every Chromium process are killed together
/// (and the pipes they hold close): whether it succeeded, its stdout and
/// stderr.
fn run_in_group(cmd: &mut Command, deadline: Duration) -> (bool, String, String) {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn python3");
    let group = Pid::from_raw(child.id() as i32);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = String::new();
        let _ = out.read_to_string(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = String::new();
        let _ = err.read_to_string(&mut v);
        v
    });
    let status = wait_child(&mut child, deadline);
    // Whatever is left of the browser goes with the group.
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
    let (stdout, stderr) = (t_out.join().unwrap(), t_err.join().unwrap());
    match status {
        Some(status) => (status.success(), stdout, stderr),
        None => (
            false,
            stdout,
            format!("no end within {deadline:?}\n{stderr}"),
        ),
    }
}
