//! The audit log's transfer events (issue 15): one kind per event and the
//! same fields whichever front caused it. An HTTP `DELETE` and a line `DEL`
//! are both `delete` with a size and a duration, a preview is `view`, and
//! an HTTP upload line has its size; a refused name is logged alike.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

/// The audit lines after the `audit: ` marker, with `secs=` cut off (it
/// differs by run) and the front's `proto=` named `*`.
fn transfer_lines(server: &TestServer, proto: &str) -> Vec<String> {
    server
        .stderr_lines()
        .into_iter()
        .filter_map(|line| line.split_once(" audit: ").map(|(_, rest)| rest.to_owned()))
        .filter(|line| line.contains(&format!(" proto={proto} ")))
        .filter(|line| !line.starts_with("login"))
        .map(|line| {
            let line = line.replace(&format!(" proto={proto} "), " proto=* ");
            match line.find(" secs=") {
                Some(at) => line[..at].to_owned(),
                None => format!("{line} (no secs)"),
            }
        })
        .collect()
}

/// One HTTP/1.1 request on its own connection; the whole response.
fn http(server: &TestServer, request: &str) -> String {
    let mut stream = TcpStream::connect(server.http_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn both_fronts_write_the_same_transfer_events() {
    let server = TestServer::builder()
        .args(["--login-delay", "0", "--http-listen", "127.0.0.1:0"])
        .start();
    let mut a = server.alice();
    a.put("f", b"hello");
    a.expect("VIEW f", 150);
    assert_eq!(a.read_exact_bytes(5), b"hello");
    assert_eq!(a.get("f"), b"hello");
    a.expect("DEL f", 250);
    a.expect("GET ..", 553);
    drop(a);

    let auth = basic_credentials(ALICE, ALICE_PW);
    let head = format!("Host: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n");
    for (request, status) in [
        (
            format!("PUT /files/f HTTP/1.1\r\n{head}Content-Length: 5\r\n\r\nhello"),
            "201",
        ),
        (
            format!("GET /files/f?preview HTTP/1.1\r\n{head}\r\n"),
            "200",
        ),
        (format!("GET /files/f HTTP/1.1\r\n{head}\r\n"), "200"),
        (format!("DELETE /files/f HTTP/1.1\r\n{head}\r\n"), "204"),
        (format!("GET /files/.. HTTP/1.1\r\n{head}\r\n"), "400"),
    ] {
        let response = http(&server, &request);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?}: {response}"
        );
    }

    let expected = [
        r#"upload ip=127.0.0.1 proto=* user="alice" name="f" size=5 received=5 result=ok"#,
        r#"view ip=127.0.0.1 proto=* user="alice" name="f" size=5 sent=5 result=ok"#,
        r#"download ip=127.0.0.1 proto=* user="alice" name="f" size=5 sent=5 result=ok"#,
        r#"delete ip=127.0.0.1 proto=* user="alice" name="f" size=5 result=ok"#,
        r#"name_refused ip=127.0.0.1 proto=* user="alice" verb=GET name=".." (no secs)"#,
    ];
    let mut lines = (Vec::new(), Vec::new());
    let complete = wait_until(Duration::from_secs(5), || {
        lines = (
            transfer_lines(&server, "line"),
            transfer_lines(&server, "http"),
        );
        lines.0.len() >= 5 && lines.1.len() >= 5
    });
    assert!(complete, "audit lines missing: {lines:#?}");
    assert_eq!(lines.0, expected, "the line protocol's events");
    assert_eq!(lines.1, expected, "HTTP's events");
}

#[test]
fn both_fronts_write_the_same_folder_events() {
    let server = TestServer::builder()
        .args(["--login-delay", "0", "--http-listen", "127.0.0.1:0"])
        .start();
    let mut a = server.alice();
    a.expect("MKDIR d", 257);
    a.put("d/f", b"x");
    a.expect("FROM d", 350);
    a.expect("MOVE e", 250);
    a.expect("FROM e", 350);
    a.expect("COPY c", 250);
    a.expect("MKDIR empty", 257);
    a.expect("RMDIR empty", 250);
    a.expect("RMTREE e", 250);
    a.expect("RMTREE c", 250);
    drop(a);

    let auth = basic_credentials(ALICE, ALICE_PW);
    let head = format!("Host: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n");
    let dest = |to: &str| format!("Destination: /files/{to}\r\n");
    for (request, status) in [
        (format!("MKCOL /files/d HTTP/1.1\r\n{head}\r\n"), "201"),
        (
            format!("PUT /files/d/f HTTP/1.1\r\n{head}Content-Length: 1\r\n\r\nx"),
            "201",
        ),
        (
            format!("MOVE /files/d/ HTTP/1.1\r\n{head}{}\r\n", dest("e/")),
            "201",
        ),
        (
            format!("COPY /files/e/ HTTP/1.1\r\n{head}{}\r\n", dest("c/")),
            "201",
        ),
        (format!("MKCOL /files/empty HTTP/1.1\r\n{head}\r\n"), "201"),
        (
            format!("DELETE /files/empty/ HTTP/1.1\r\n{head}Depth: 0\r\n\r\n"),
            "204",
        ),
        (format!("DELETE /files/e/ HTTP/1.1\r\n{head}\r\n"), "204"),
        (format!("DELETE /files/c/ HTTP/1.1\r\n{head}\r\n"), "204"),
    ] {
        let response = http(&server, &request);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?}: {response}"
        );
    }

    let expected = [
        r#"mkdir ip=127.0.0.1 proto=* user="alice" name="d" (no secs)"#,
        r#"upload ip=127.0.0.1 proto=* user="alice" name="d/f" size=1 received=1 result=ok"#,
        r#"move ip=127.0.0.1 proto=* user="alice" name="d" to="e" (no secs)"#,
        r#"copy ip=127.0.0.1 proto=* user="alice" name="e" to="c" (no secs)"#,
        r#"mkdir ip=127.0.0.1 proto=* user="alice" name="empty" (no secs)"#,
        r#"rmdir ip=127.0.0.1 proto=* user="alice" name="empty" (no secs)"#,
        r#"rmtree ip=127.0.0.1 proto=* user="alice" name="e" (no secs)"#,
        r#"rmtree ip=127.0.0.1 proto=* user="alice" name="c" (no secs)"#,
    ];
    let mut lines = (Vec::new(), Vec::new());
    let complete = wait_until(Duration::from_secs(5), || {
        lines = (
            transfer_lines(&server, "line"),
            transfer_lines(&server, "http"),
        );
        lines.0.len() >= expected.len() && lines.1.len() >= expected.len()
    });
    assert!(complete, "audit lines missing: {lines:#?}");
    assert_eq!(lines.0, expected, "the line protocol's events");
    assert_eq!(lines.1, expected, "HTTP's events");
}
