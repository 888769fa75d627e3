//! The access log (issue 18): one line per command or request on both
//! fronts, refusals included, as text or JSON, buffered and written within
//! about a second (and at shutdown), against the real `ferryd`.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::*;
use nix::sys::signal::Signal;

fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_and_request_gets_a_json_line_even_refused_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut server = TestServer::builder()
        .arg("--access-log")
        .arg(&log)
        .args(["--log-format", "json", "--http-listen", "127.0.0.1:0"])
        .start();
    let http = server.http_addr();

    let mut c = server.alice();
    c.put("report.txt", b"twelve bytes");
    assert_eq!(c.get("report.txt"), b"twelve bytes");
    c.list();
    c.expect("DEL nosuch", 550);
    c.expect("BREW tea", 500);
    // Buffered: nothing is written per command.
    assert!(
        read_lines(&log).is_empty(),
        "written at once: {:?}",
        read_lines(&log)
    );

    let auth = format!(
        "Authorization: Basic {}",
        basic_credentials(ALICE, ALICE_PW)
    );
    exchange(http, &request("GET", "/files/report.txt", &[&auth], b"")).assert_status(200, "GET");
    exchange(http, &request("POST", "/files/report.txt", &[&auth], b"")).assert_status(405, "POST");
    exchange(http, &request("GET", "/files/nosuch", &[&auth], b"")).assert_status(404, "GET");
    exchange(http, b"NONSENSE\r\n\r\n").assert_status(400, "bad head");

    // Within about a second, without a shutdown.
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || read_lines(&log).len() >= 10),
        "{:?}",
        read_lines(&log)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(10));

    let entries: Vec<serde_json::Value> = read_lines(&log)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let find = |proto: &str, verb: &str, code: u64| {
        entries
            .iter()
            .find(|e| e["proto"] == proto && e["verb"] == verb && e["code"] == code)
            .unwrap_or_else(|| panic!("no {proto} {verb} {code} in {entries:#?}"))
    };
    let auth = find("line", "AUTH", 230);
    assert_eq!(
        auth["path"], "",
        "AUTH's words (a password) are never logged"
    );
    assert!(auth["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    let put = find("line", "PUT", 226);
    assert_eq!(
        (&put["user"], &put["path"], &put["bytes"]),
        (&"alice".into(), &"report.txt".into(), &12.into())
    );
    assert_eq!(find("line", "GET", 150)["bytes"], 12);
    assert_eq!(find("line", "LIST", 150)["path"], "");
    assert_eq!(find("line", "DEL", 550)["path"], "nosuch");
    assert_eq!(find("line", "-", 500)["user"], "alice");
    let get = find("http", "GET", 200);
    assert_eq!(
        (&get["user"], &get["path"], &get["bytes"]),
        (&"alice".into(), &"/files/report.txt".into(), &12.into())
    );
    find("http", "POST", 405);
    find("http", "GET", 404);
    find("http", "-", 400);
    for entry in &entries {
        assert!(entry["time"].as_str().unwrap().ends_with('Z'), "{entry}");
        assert!(entry["secs"].as_f64().unwrap() >= 0.0, "{entry}");
    }
    assert!(
        !fs::read_to_string(&log).unwrap().contains(ALICE_PW),
        "a password in the access log"
    );
}

#[test]
fn text_lines_quote_client_values_and_the_log_is_reopened_at_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server = TestServer::builder().arg("--access-log").arg(&log).start();
    let mut c = server.alice();
    c.expect("DEL a\"b c", 550);
    assert!(wait_until(Duration::from_secs(5), || read_lines(&log)
        .len()
        >= 2));
    let lines = read_lines(&log);
    let del = lines.iter().find(|l| l.contains(" DEL ")).unwrap();
    assert!(
        del.contains(" line \"alice\" DEL \"a\\\"b c\" 550 0 "),
        "{del}"
    );

    // logrotate's way: move the file, then SIGHUP; the next lines go to a
    // new file of the same name.
    let rotated = dir.path().join("access.log.1");
    fs::rename(&log, &rotated).unwrap();
    server.signal(Signal::SIGHUP);
    assert!(wait_until(IO_TIMEOUT, || server
        .stderr_text()
        .contains("settings reloaded")));
    c.expect("NOOP", 200);
    assert!(
        wait_until(Duration::from_secs(5), || read_lines(&log)
            .iter()
            .any(|l| l.contains(" NOOP "))),
        "new file: {:?}",
        read_lines(&log)
    );
    assert!(!read_lines(&rotated).iter().any(|l| l.contains(" NOOP ")));
}
