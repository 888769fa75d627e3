//! The HTTP front (`--http-listen`, "# The HTTP front" in `protocol.md`),
//! against the real `ferryd` over loopback: with `curl` for what real
//! clients do, and with raw sockets for exact bytes, malformed requests and
//! connection hygiene.
//!
//! Every blocking step is bounded: sockets have read and write timeouts,
//! `curl` runs with `--max-time`, polling loops have deadlines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::common::*;
use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------
// The JSON listing and the Prometheus text.
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct JsonEntry {
    name: String,
    size: u64,
    mtime: u64,
}

/// The listing: an array of objects with exactly `name`, `size`, `mtime`.
fn parse_json_listing(body: &[u8]) -> Vec<JsonEntry> {
    use serde_json::Value;
    let text = std::str::from_utf8(body).expect("JSON listing is not UTF-8");
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let Value::Array(items) = value else {
        panic!("listing is not a JSON array: {text:?}");
    };
    // A non-negative integer written as one (not `1.0` or `1e3`).
    let num = |v: &Value| match v {
        Value::Number(n) if n.is_u64() => n.as_u64().unwrap(),
        other => panic!("not a non-negative integer: {other:?} in {text:?}"),
    };
    items
        .iter()
        .map(|item| {
            let Value::Object(members) = item else {
                panic!("listing item is not an object: {item:?}");
            };
            let keys: BTreeSet<&str> = members.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                BTreeSet::from(["mtime", "name", "size", "type"]),
                "listing item {item:?}"
            );
            let Value::String(name) = &members["name"] else {
                panic!("name is not a string in {item:?}");
            };
            JsonEntry {
                name: name.clone(),
                size: num(&members["size"]),
                mtime: num(&members["mtime"]),
            }
        })
        .collect()
}

/// A normalised series key: `name{k="v",...}` with labels sorted.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    labels.sort();
    if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// Parses the Prometheus text format into normalised series -> value,
/// checking that every family has `# TYPE`.
fn parse_metrics(text: &str) -> BTreeMap<String, u64> {
    let mut typed = BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad metrics line {line:?}"));
        let value: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad metrics value in {line:?}"));
        let (name, labels) = match key.split_once('{') {
            None => (key, Vec::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let labels = inner
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label without =");
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("unquoted label in {line:?}"));
                        (k, v)
                    })
                    .collect();
                (name, labels)
            }
        };
        assert!(typed.contains(name), "no # TYPE line before {line:?}");
        let previous = out.insert(series(name, &labels), value);
        assert!(previous.is_none(), "series repeated: {line:?}");
    }
    out
}

/// `GET /metrics` on `c`: the parsed series and the raw response.
fn get_metrics(c: &mut Conn) -> (BTreeMap<String, u64>, Resp) {
    c.send(&request("GET", "/metrics", &[&metrics_bearer()], b""));
    let resp = c.response();
    resp.assert_status(200, "GET /metrics");
    (parse_metrics(&resp.text()), resp)
}

fn metric(m: &BTreeMap<String, u64>, name: &str, labels: &[(&str, &str)]) -> u64 {
    let key = series(name, labels);
    *m.get(&key)
        .unwrap_or_else(|| panic!("metric {key} missing; have {:?}", m.keys()))
}

/// A metric that is absent counts as 0 (reply codes appear once used).
fn metric_or_0(m: &BTreeMap<String, u64>, name: &str, labels: &[(&str, &str)]) -> u64 {
    m.get(&series(name, labels)).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Files on disk.
// ---------------------------------------------------------------------------

/// Every regular file under `dir` (symbolic links are not followed) with
/// its content.
fn walk(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in dir_entries(&d) {
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn mtime_secs(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn http_date_secs(value: &str) -> u64 {
    httpdate::parse_http_date(value)
        .unwrap_or_else(|_| panic!("{value:?} is not an HTTP date"))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ===========================================================================
// With curl.
// ===========================================================================

#[test]
fn curl_upload_over_1_mib_with_100_continue_then_replace_download_and_head() {
    let (server, addr) = http_server();
    let work = tempfile::tempdir().unwrap();
    let userpass = alice_userpass();
    let url = format!("http://{addr}/files/big.bin");
    let stored_path = server.user_dir(ALICE).join("big.bin");

    let v1 = pseudo_random_bytes(11, 1024 * 1024 + 300_001);
    let v2 = pseudo_random_bytes(12, 1024 * 1024 + 77_777);
    let mut digests = Vec::new();
    for (i, data) in [&v1, &v2].into_iter().enumerate() {
        let src = work.path().join(format!("v{i}"));
        fs::write(&src, data).unwrap();
        let out = curl_ok(&["-v", "-u", &userpass, "-T", src.to_str().unwrap(), &url]);
        let want_status = if i == 0 { 201 } else { 204 };
        assert_eq!(
            out.code, want_status,
            "upload #{i}: expected {want_status} (new name / replace); stderr:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("> Expect: 100-continue"),
            "curl did not send Expect: 100-continue for {} bytes; stderr:\n{}",
            data.len(),
            out.stderr
        );
        assert!(
            out.saw_100() && out.stderr.contains("< HTTP/1.1 100 Continue"),
            "no `100 Continue` before the body of upload #{i}; stderr:\n{}",
            out.stderr
        );
        let want_sha = sha256_hex(data);
        assert_eq!(out.header("x-ferry-sha256"), Some(want_sha.as_str()));
        assert!(
            out.body.is_empty(),
            "{want_status} must have no body: {}",
            lossy(&out.body)
        );
        assert_same_bytes(&fs::read(&stored_path).unwrap(), data, "stored file");
        digests.push(want_sha);
    }
    assert_ne!(digests[0], digests[1]);

    let got = curl_ok(&["-u", &userpass, &url]);
    assert_eq!(got.code, 200);
    assert_same_bytes(&got.body, &v2, "curl download");
    assert_eq!(
        got.header("content-length"),
        Some(v2.len().to_string().as_str())
    );

    let head = curl_ok(&["-I", "-u", &userpass, &url]);
    assert_eq!(head.code, 200, "HEAD");
    // (curl -I writes the head to its output: the raw tests check that a
    // HEAD response has no body.)
    assert_eq!(
        head.header("content-length"),
        Some(v2.len().to_string().as_str()),
        "HEAD Content-Length"
    );
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    let last_modified = head
        .header("last-modified")
        .expect("HEAD: no Last-Modified");
    assert_eq!(
        http_date_secs(last_modified),
        mtime_secs(&stored_path),
        "Last-Modified {last_modified:?} is not the file's mtime"
    );
    for h in ["date", "server"] {
        assert!(head.header(h).is_some(), "HEAD: no {h}");
    }
    server.assert_tmp_empty();
}

#[test]
fn curl_single_byte_ranges_and_unsatisfiable_ones() {
    let (server, addr) = http_server();
    let data = pseudo_random_bytes(21, 1000);
    server.plant_file(ALICE, "r.bin", &data);
    let userpass = alice_userpass();
    let url = format!("http://{addr}/files/r.bin");

    for (range, first, last) in [
        ("10-19", 10, 19),
        ("100-", 100, 999),
        ("-5", 995, 999),
        ("990-5000", 990, 999),
        ("0-0", 0, 0),
        ("999-", 999, 999),
        ("-5000", 0, 999),
    ] {
        let out = curl_ok(&["-u", &userpass, "-r", range, &url]);
        assert_eq!(out.code, 206, "-r {range}");
        assert_eq!(
            out.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "-r {range}"
        );
        assert_eq!(
            out.header("content-length"),
            Some((last - first + 1).to_string().as_str()),
            "-r {range}"
        );
        assert_eq!(out.body, &data[first..=last], "-r {range}: bytes");
    }
    for range in ["1000-", "5000-6000"] {
        let out = curl_ok(&["-u", &userpass, "-r", range, &url]);
        assert_eq!(out.code, 416, "-r {range}");
        assert_eq!(
            out.header("content-range"),
            Some("bytes */1000"),
            "-r {range}"
        );
    }

    // Raw: the other forms the spec names.
    let with_range = |range: &str| {
        let r = format!("Range: {range}");
        exchange(
            addr,
            &request("GET", "/files/r.bin", &[&alice_auth(), &r], b""),
        )
    };
    let resp = with_range("bytes=-0");
    resp.assert_status(416, "bytes=-0");
    assert_eq!(resp.header("content-range"), Some("bytes */1000"));
    // Not a single well-formed byte range: ignored, the whole file.
    for ignored in ["bytes=5-2", "bytes=0-1,5-6", "items=0-5", "bytes=x-3"] {
        let resp = with_range(ignored);
        resp.assert_status(200, ignored);
        assert!(resp.header("content-range").is_none(), "{ignored}");
        assert_eq!(resp.body, data, "{ignored}: whole file");
    }
    // An empty file: every range starts at or past its end.
    server.plant_file(ALICE, "empty", b"");
    for range in ["bytes=0-", "bytes=-5"] {
        let r = format!("Range: {range}");
        let resp = exchange(
            addr,
            &request("GET", "/files/empty", &[&alice_auth(), &r], b""),
        );
        resp.assert_status(416, range);
        assert_eq!(resp.header("content-range"), Some("bytes */0"));
    }
}

#[test]
fn preview_is_the_first_1024_bytes_like_view() {
    let (server, addr) = http_server();
    let big = pseudo_random_bytes(31, 3000);
    let small = b"tiny file\n".to_vec();
    let exact = pseudo_random_bytes(32, 1024);
    let mut alice = server.alice();
    alice.put("big", &big);
    alice.put("small", &small);
    alice.put("exact", &exact);
    alice.put("empty", b"");
    let userpass = alice_userpass();
    for (name, data) in [
        ("big", &big),
        ("small", &small),
        ("exact", &exact),
        ("empty", &Vec::new()),
    ] {
        let want = &data[..data.len().min(1024)];
        let out = curl_ok(&[
            "-u",
            &userpass,
            &format!("http://{addr}/files/{name}?preview"),
        ]);
        assert_eq!(out.code, 200, "{name}?preview");
        assert_eq!(out.body, want, "{name}?preview bytes");
        assert_eq!(
            out.header("content-length"),
            Some(want.len().to_string().as_str())
        );
        assert_eq!(
            out.body,
            alice.view(name),
            "{name}: ?preview differs from VIEW"
        );
    }
}

#[test]
fn delete_then_404() {
    let (server, addr) = http_server();
    let userpass = alice_userpass();
    let mut alice = server.alice();
    alice.put("gone.txt", b"short-lived");
    alice.put("stays.txt", b"stays");
    let url = format!("http://{addr}/files/gone.txt");
    let out = curl_ok(&["-u", &userpass, "-X", "DELETE", &url]);
    assert_eq!(out.code, 204, "DELETE of an existing file");
    assert!(out.body.is_empty());
    assert!(!server.user_dir(ALICE).join("gone.txt").exists());
    let out = curl_ok(&["-u", &userpass, "-X", "DELETE", &url]);
    assert_eq!(out.code, 404, "second DELETE");
    let out = curl_ok(&["-u", &userpass, &url]);
    assert_eq!(out.code, 404, "GET after DELETE");
    let out = curl_ok(&["-u", &userpass, "-I", &url]);
    assert_eq!(out.code, 404, "HEAD after DELETE");
    assert_eq!(alice.list_names(), ["stays.txt"]);
    assert!(matches!(alice.get_reply(b"gone.txt"), Err((550, _))));
}

#[test]
fn listing_json_escapes_names_and_text_equals_list() {
    let (server, addr) = http_server();
    let names = [
        "plain.txt",
        "with \"quotes\".txt",
        "back\\slash",
        "both \\\" mixed",
        "a b  c",
        " leading and trailing ",
        ".hidden",
        "café ✓ 日本語",
        "rocket 🚀",
        "line\u{2028}sep and \u{85} C1",
        "%41 not decoded",
        "{json:[1]}",
        "<tag> & 'apos'",
        "Zebra",
    ];
    let mut alice = server.alice();
    let mut want: Vec<(String, u64)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let data = pseudo_random_bytes(40 + i as u64, i * 37 + 1);
        alice.put(name, &data);
        want.push((name.to_string(), data.len() as u64));
    }
    want.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let list = alice.list();

    let out = curl_ok(&["-u", &alice_userpass(), &format!("http://{addr}/files/")]);
    assert_eq!(out.code, 200);
    assert_eq!(out.header("content-type"), Some("application/json"));
    // Directory order: compared by name.
    let mut entries = parse_json_listing(&out.body);
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let got: Vec<(String, u64)> = entries.iter().map(|e| (e.name.clone(), e.size)).collect();
    assert_eq!(got, want, "JSON listing (names, sizes)");
    for (e, l) in entries.iter().zip(&list) {
        assert_eq!(e.name.as_bytes(), &l.name[..]);
        assert_eq!(e.mtime, l.mtime, "mtime of {:?} differs from LIST", e.name);
        assert_eq!(
            e.mtime,
            mtime_secs(&server.user_dir(ALICE).join(&e.name)),
            "mtime of {:?}",
            e.name
        );
    }
    // The JSON escapes what it must (and the parser above would have
    // refused a raw control character).
    let raw = String::from_utf8(out.body.clone()).unwrap();
    assert!(raw.contains(r#"with \"quotes\".txt"#), "{raw}");
    assert!(raw.contains(r#"back\\slash"#), "{raw}");

    // HEAD gives the same framing and no body.
    let head = exchange_head(addr, &alice_req("HEAD", "/files/"));
    head.assert_status(200, "HEAD /files/");
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("content-length"), None);

    // ?format=text is exactly LIST's data (the same directory, the same
    // order).
    let text = exchange(addr, &alice_req("GET", "/files/?format=text"));
    text.assert_status(200, "?format=text");
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let list_raw = alice.list_raw();
    assert_eq!(
        text.text(),
        String::from_utf8(list_raw).unwrap(),
        "?format=text differs from LIST"
    );

    // Every name round-trips through percent-encoding in a download.
    for (i, name) in names.iter().enumerate() {
        let resp = exchange(addr, &alice_req("GET", &file_target(name)));
        resp.assert_status(200, name);
        assert_eq!(
            resp.body,
            pseudo_random_bytes(40 + i as u64, i * 37 + 1),
            "{name:?}"
        );
    }

    // An empty directory: `[]` and an empty text block.
    drop(server.bob());
    let bob = basic(BOB, BOB_PW);
    let resp = exchange(addr, &request("GET", "/files/", &[&bob], b""));
    resp.assert_status(200, "bob's listing");
    assert!(parse_json_listing(&resp.body).is_empty(), "{}", resp.text());
    let resp = exchange(addr, &request("GET", "/files/?format=text", &[&bob], b""));
    resp.assert_status(200, "bob's text listing");
    assert!(resp.body.is_empty());
}

#[test]
fn authentication_failures_and_the_third_wrong_password_closes() {
    let (server, addr) = http_server();
    server.plant_file(ALICE, "secret", b"alice's data");
    let url = format!("http://{addr}/files/secret");
    let url_listing = format!("http://{addr}/files/");

    for (what, args) in [
        ("wrong password", vec!["-u", "alice:wrong"]),
        ("unknown user", vec!["-u", "mallory:alice-Pw-4711"]),
        (
            "bob's password for alice",
            vec!["-u", "alice:correct horse battery"],
        ),
        ("no credentials", vec![]),
    ] {
        for u in [&url, &url_listing] {
            let mut args = args.clone();
            args.push(u.as_str());
            let out = curl_ok(&args);
            assert_eq!(out.code, 401, "{what}: {u}");
            assert_eq!(
                out.header("www-authenticate"),
                Some("Basic realm=\"ferry\""),
                "{what}"
            );
            assert!(
                !out.body.windows(6).any(|w| w == b"alice'"),
                "{what}: leaked"
            );
        }
    }
    // A PUT without valid credentials stores nothing.
    for auth in [basic(ALICE, "nope"), "X-No-Auth: 1".to_string()] {
        let raw = request("PUT", "/files/secret", &[&auth, "Content-Length: 8"], b"");
        let resp = exchange(addr, &raw);
        resp.assert_status(401, "PUT without valid credentials");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"ferry\"")
        );
    }
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("secret")).unwrap(),
        b"alice's data"
    );

    // Raw, one keep-alive connection: requests without credentials and
    // with a malformed or non-Basic Authorization are not all counted...
    let wrong = basic(ALICE, "wrong");
    let mut c = Conn::open(addr);
    for i in 0..2 {
        c.send(&request("GET", "/files/secret", &[&wrong], b""));
        let resp = c.response();
        resp.assert_status(401, &format!("wrong password #{}", i + 1));
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"ferry\"")
        );
        assert!(!resp.says_close(), "wrong password #{} closed", i + 1);
    }
    for _ in 0..4 {
        c.send(&request("GET", "/files/secret", &[], b""));
        let resp = c.response();
        resp.assert_status(401, "no credentials");
        assert!(!resp.says_close(), "a request without credentials counted");
    }
    // ...the right password still works after two failures...
    c.send(&alice_req("GET", "/files/secret"));
    let resp = c.response();
    resp.assert_status(200, "right password after two failures");
    assert_eq!(resp.body, b"alice's data");
    // ...and the third failure closes.
    c.send(&request("GET", "/files/secret", &[&wrong], b""));
    let resp = c.response();
    resp.assert_status(401, "third wrong password");
    assert!(resp.says_close(), "third failure: {:?}", resp.headers);
    c.expect_eof();

    // Three failures with an unknown user, on a fresh connection.
    let mut c = Conn::open(addr);
    let unknown = basic("mallory", "x");
    for i in 1..=3 {
        c.send(&request("GET", "/files/", &[&unknown], b""));
        let resp = c.response();
        resp.assert_status(401, &format!("unknown user #{i}"));
        assert_eq!(resp.says_close(), i == 3, "unknown user #{i}");
    }
    c.expect_eof();
}

#[test]
fn healthz_needs_no_auth_and_metrics_counters_move() {
    let (server, addr) = http_server();
    let out = curl_ok(&[&format!("http://{addr}/healthz")]);
    assert_eq!(out.code, 200);
    assert_eq!(out.body, b"ok\n");
    let head = exchange_head(addr, &request("HEAD", "/healthz", &[], b""));
    head.assert_status(200, "HEAD /healthz");
    assert_eq!(head.content_length(), 3);
    // Credentials, even wrong ones, are not needed.
    let resp = exchange(
        addr,
        &request("GET", "/healthz", &[&basic(ALICE, "x")], b""),
    );
    resp.assert_status(200, "/healthz with wrong credentials");

    let out = curl_ok(&["-H", &metrics_bearer(), &format!("http://{addr}/metrics")]);
    assert_eq!(out.code, 200);
    assert_eq!(
        out.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let m = parse_metrics(&String::from_utf8(out.body).unwrap());
    for (name, labels) in [
        ("ferry_sessions_open", &[("protocol", "http")][..]),
        ("ferry_sessions_open", &[("protocol", "line")]),
        ("ferry_received_bytes_total", &[]),
        ("ferry_sent_bytes_total", &[]),
        (
            "ferry_transfers_completed_total",
            &[("direction", "upload")],
        ),
        (
            "ferry_transfers_completed_total",
            &[("direction", "download")],
        ),
        ("ferry_transfers_aborted_total", &[("direction", "upload")]),
        (
            "ferry_transfers_aborted_total",
            &[("direction", "download")],
        ),
        ("ferry_failed_logins_total", &[("protocol", "http")]),
        ("ferry_failed_logins_total", &[("protocol", "line")]),
    ] {
        metric(&m, name, labels);
    }
    assert!(metric(&m, "ferry_sessions_open", &[("protocol", "http")]) >= 1);
    assert!(
        metric_or_0(
            &m,
            "ferry_replies_total",
            &[("protocol", "http"), ("code", "200")]
        ) >= 1
    );

    // Open connections: this one, then one more idle, then a line session.
    let mut c = Conn::open(addr);
    let open = |c: &mut Conn, proto: &str| {
        metric(
            &get_metrics(c).0,
            "ferry_sessions_open",
            &[("protocol", proto)],
        )
    };
    assert!(
        wait_until(Duration::from_secs(5), || open(&mut c, "http") == 1),
        "ferry_sessions_open{{protocol=\"http\"}} is {}, expected 1",
        open(&mut c, "http")
    );
    let idle = Conn::open(addr);
    assert!(
        wait_until(Duration::from_secs(5), || open(&mut c, "http") == 2),
        "an idle HTTP connection is not counted"
    );
    drop(idle);
    assert!(
        wait_until(Duration::from_secs(5), || open(&mut c, "http") == 1),
        "a closed HTTP connection is still counted"
    );
    let line = server.connect();
    assert_eq!(open(&mut c, "line"), 1);
    drop(line);
    assert!(wait_until(Duration::from_secs(5), || open(&mut c, "line") == 0));

    // Exact deltas across one upload, one download and one failed login.
    let (before, m1_resp) = get_metrics(&mut c);
    let body = pseudo_random_bytes(51, 5000);
    let put = put_req("/files/m.bin", &body);
    c.send(&put);
    let put_resp = c.response();
    put_resp.assert_status(201, "PUT");
    let get = alice_req("GET", "/files/m.bin");
    c.send(&get);
    let get_resp = c.response();
    get_resp.assert_status(200, "GET");
    assert_eq!(get_resp.body, body);
    let bad = request("GET", "/files/", &[&basic(ALICE, "bad")], b"");
    c.send(&bad);
    let bad_resp = c.response();
    bad_resp.assert_status(401, "wrong password");
    let metrics_req = request("GET", "/metrics", &[&metrics_bearer()], b"");
    let (after, _) = get_metrics(&mut c);

    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric_or_0(&after, name, labels) - metric_or_0(&before, name, labels)
    };
    assert_eq!(
        delta(
            "ferry_transfers_completed_total",
            &[("direction", "upload")]
        ),
        1
    );
    assert_eq!(
        delta(
            "ferry_transfers_completed_total",
            &[("direction", "download")]
        ),
        1
    );
    assert_eq!(
        delta("ferry_transfers_aborted_total", &[("direction", "upload")]),
        0
    );
    assert_eq!(
        delta("ferry_failed_logins_total", &[("protocol", "http")]),
        1
    );
    assert_eq!(
        delta("ferry_failed_logins_total", &[("protocol", "line")]),
        0
    );
    for (code, n) in [("201", 1), ("401", 1)] {
        assert_eq!(
            delta(
                "ferry_replies_total",
                &[("protocol", "http"), ("code", code)]
            ),
            n,
            "replies with code {code}"
        );
    }
    let received = (put.len() + get.len() + bad.len() + metrics_req.len()) as u64;
    assert_eq!(
        delta("ferry_received_bytes_total", &[]),
        received,
        "bytes read between the two /metrics renders"
    );
    let sent = (m1_resp.raw_len + put_resp.raw_len + get_resp.raw_len + bad_resp.raw_len) as u64;
    assert_eq!(
        delta("ferry_sent_bytes_total", &[]),
        sent,
        "bytes written between the two /metrics renders"
    );
}

#[test]
fn traversal_attempts_never_leave_alices_directory() {
    let (server, addr) = http_server();
    server.plant_file(BOB, "canary", b"bob's canary");
    server.plant_file(ALICE, "mine", b"alice's own");
    fs::write(server.storage().join("canary"), b"storage canary").unwrap();
    fs::write(server.root().join("canary"), b"root canary").unwrap();
    let alice_dir = server.user_dir(ALICE);
    let outside = |files: BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
        files
            .into_iter()
            .filter(|(p, _)| {
                !p.starts_with(&alice_dir) && !p.starts_with(server.storage().join(".ferry"))
            })
            .collect()
    };
    let before = outside(walk(server.root()));
    assert_eq!(before.len(), 4, "{before:?}"); // bob's canary, 2 canaries, users
    let secrets: [&[u8]; 3] = [b"bob's canary", b"storage canary", b"root canary"];
    let leaks = |resp: &Resp| secrets.iter().any(|s| find(&resp.body, s).is_some());

    // (target, status): 400 for names that decode to something not allowed.
    let cases = [
        ("/files/..%2f..%2fbob%2fcanary", 400),
        ("/files/..%2fbob%2fcanary", 400),
        ("/files/..%2Fcanary", 400),
        ("/files/..%2f..%2fcanary", 400),
        ("/files/%2e%2e", 400),
        ("/files/%2E%2E", 400),
        ("/files/%2e%2e%2fbob%2fcanary", 400),
        ("/files/%2e%2e%2f%2e%2e%2fcanary", 400),
        ("/files/%2e%2e%2f", 400),
        ("/files/..", 400),
        ("/files/.", 400),
        ("/files/%2e", 400),
        ("/files/../bob/canary", 400),
        ("/files/../../canary", 400),
        ("/files/../../etc/passwd", 400),
        // Paths beneath alice's root, whose folders do not exist.
        ("/files/a/b", 404),
        ("/files/bob/canary", 404),
        ("/files/a%2fb", 400),
        ("/files/%2fetc%2fpasswd", 400),
        ("/files/a%00b", 400),
        ("/files/%00", 400),
        ("/files/..%00", 400),
        ("http://127.0.0.1/files/..%2fbob%2fcanary", 400),
        // Decoded once: a literal, harmless name inside alice's directory.
        ("/files/%252e%252e%252f", 404),
        ("/files/%252e%252e%252fbob%252fcanary", 404),
        ("/files/..%5cbob%5ccanary", 404),
        ("/files/...", 404),
        // Not under /files/ at all.
        ("/../storage/bob/canary", 404),
        ("/bob/canary", 404),
    ];
    for (target, status) in cases {
        for method in ["GET", "HEAD", "DELETE"] {
            let raw = alice_req(method, target);
            let resp = if method == "HEAD" {
                exchange_head(addr, &raw)
            } else {
                exchange(addr, &raw)
            };
            resp.assert_status(status, &format!("{method} {target}"));
            assert!(!leaks(&resp), "{method} {target} leaked a canary");
            if status == 400 && method != "HEAD" {
                assert_eq!(
                    resp.text(),
                    "file name not allowed\n",
                    "{method} {target}: body"
                );
            }
        }
        // PUT: refused, except the literal names, which stay inside.
        let put_status = match status {
            400 => 400,
            _ if !target.starts_with("/files/") => 404,
            _ if target == "/files/a/b" || target == "/files/bob/canary" => 409,
            _ => 201,
        };
        let resp = exchange(addr, &put_req(target, b"EVIL-PAYLOAD"));
        resp.assert_status(put_status, &format!("PUT {target}"));
    }
    // The literal names were stored as they are, in alice's directory.
    for literal in [
        "%2e%2e%2f",
        "%2e%2e%2fbob%2fcanary",
        "..\\bob\\canary",
        "...",
    ] {
        assert_eq!(
            fs::read(alice_dir.join(literal)).unwrap_or_default(),
            b"EVIL-PAYLOAD",
            "literal name {literal:?}"
        );
    }
    let resp = exchange(addr, &alice_req("GET", "/files/%252e%252e%252f"));
    resp.assert_status(200, "GET of the literal %2e%2e%2f");
    assert_eq!(resp.body, b"EVIL-PAYLOAD");

    // curl, with and without --path-as-is.
    let userpass = alice_userpass();
    let out = curl_ok(&[
        "--path-as-is",
        "-u",
        &userpass,
        &format!("http://{addr}/files/../../etc/passwd"),
    ]);
    assert_eq!(out.code, 400, "--path-as-is /files/../../etc/passwd");
    assert!(find(&out.body, b"root:").is_none());
    // Without it curl squashes the dot segments to /etc/passwd.
    let out = curl_ok(&[
        "-u",
        &userpass,
        &format!("http://{addr}/files/../../etc/passwd"),
    ]);
    assert_eq!(out.code, 404, "/etc/passwd");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("evil");
    fs::write(&src, b"EVIL-PAYLOAD").unwrap();
    for target in [
        "/files/../bob/canary",
        "/files/..%2fbob%2fcanary",
        "/files/%2e%2e%2fcanary",
    ] {
        // Expect: 100-continue, so that curl sends no body to a refusal.
        let out = curl_ok(&[
            "--path-as-is",
            "-u",
            &userpass,
            "-H",
            "Expect: 100-continue",
            "-T",
            src.to_str().unwrap(),
            &format!("http://{addr}{target}"),
        ]);
        assert_eq!(out.code, 400, "curl PUT {target}");
    }

    // Nothing outside alice's directory changed, no payload anywhere else.
    assert_eq!(
        outside(walk(server.root())),
        before,
        "files outside alice's directory changed"
    );
    for (path, content) in walk(server.root()) {
        if find(&content, b"EVIL-PAYLOAD").is_some() {
            assert!(
                path.parent() == Some(alice_dir.as_path()),
                "payload written to {}",
                path.display()
            );
        }
    }
    assert_eq!(fs::read(alice_dir.join("mine")).unwrap(), b"alice's own");
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn name_rules_and_percent_decoding() {
    let (server, addr) = http_server();
    let long = "n".repeat(255);
    for (name, raw_target) in [
        (long.clone(), format!("/files/{long}")),
        ("a b".to_string(), "/files/a%20b".to_string()),
        ("a+b".to_string(), "/files/a+b".to_string()),
        ("café".to_string(), "/files/caf%C3%A9".to_string()),
        (" x ".to_string(), "/files/%20x%20".to_string()),
        ("%zz".to_string(), "/files/%25zz".to_string()),
    ] {
        let resp = exchange(addr, &put_req(&raw_target, name.as_bytes()));
        resp.assert_status(201, &raw_target);
        assert_eq!(
            fs::read(server.user_dir(ALICE).join(&name)).unwrap(),
            name.as_bytes(),
            "{raw_target} stored as {name:?}"
        );
    }
    for bad in [
        format!("/files/{}", "n".repeat(256)),
        "/files/%ff".to_string(),
        "/files/%C3".to_string(),
        "/files/a%".to_string(),
        "/files/a%4".to_string(),
        "/files/%zz".to_string(),
        "/files/a%0Ab".to_string(),
        "/files/a%7Fb".to_string(),
        "/files/a%1fb".to_string(),
    ] {
        let resp = exchange(addr, &alice_req("GET", &bad));
        resp.assert_status(400, &bad);
        let resp = exchange(addr, &put_req(&bad, b"x"));
        resp.assert_status(400, &format!("PUT {bad}"));
    }
    // The names the line protocol refuses, percent-encoded.
    for name in bad_names() {
        let target = format!("/files/{}", pct(&name));
        let resp = exchange(addr, &alice_req("GET", &target));
        resp.assert_status(400, &target);
        let resp = exchange(addr, &put_req(&target, b"x"));
        resp.assert_status(400, &format!("PUT {target}"));
    }
    let mut alice = server.alice();
    let mut names = alice.list_names();
    names.sort();
    let mut want = vec![
        long,
        "a b".into(),
        "a+b".into(),
        "café".into(),
        " x ".into(),
        "%zz".into(),
    ];
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn non_regular_files_are_403_and_symlinks_are_not_followed() {
    let (server, addr) = http_server();
    server.plant_file(BOB, "canary", b"bob's canary");
    drop(server.alice());
    let alice_dir = server.user_dir(ALICE);
    fs::create_dir(alice_dir.join("subdir")).unwrap();
    std::os::unix::fs::symlink("../bob/canary", alice_dir.join("link")).unwrap();
    // A folder: redirected to its URL (which lists it), never opened as a
    // file, never replaced by one.
    let resp = exchange(addr, &alice_req("GET", "/files/subdir"));
    resp.assert_status(301, "GET /files/subdir");
    exchange(addr, &put_req("/files/subdir", b"EVIL")).assert_status(409, "PUT /files/subdir");
    {
        let target = "/files/link".to_string();
        let resp = exchange(addr, &alice_req("GET", &target));
        resp.assert_status(403, &format!("GET {target}"));
        assert!(find(&resp.body, b"canary").is_none());
        exchange_head(addr, &alice_req("HEAD", &target)).assert_status(403, "HEAD");
        exchange(addr, &put_req(&target, b"EVIL")).assert_status(403, &format!("PUT {target}"));
        exchange(addr, &alice_req("DELETE", &target))
            .assert_status(403, &format!("DELETE {target}"));
    }
    assert!(alice_dir.join("subdir").is_dir());
    assert!(
        fs::symlink_metadata(alice_dir.join("link"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(
        fs::read(server.user_dir(BOB).join("canary")).unwrap(),
        b"bob's canary"
    );
    let listing = exchange(addr, &alice_req("GET", "/files/"));
    let json: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
    // The folder, never the link.
    assert_eq!(
        json,
        serde_json::json!([{"name": "subdir", "type": "folder", "size": 0,
            "mtime": json[0]["mtime"].clone()}]),
        "{}",
        listing.text()
    );
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn checks_run_in_order_path_method_auth_name() {
    let (_server, addr) = http_server();
    let wrong = basic(ALICE, "wrong");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            request("BREW", "/nope", &[], b""),
            404,
            "unknown method, unknown path",
        ),
        (
            request("POST", "/nope", &[], b""),
            404,
            "POST on an unknown path",
        ),
        (
            request("POST", "/files/x", &[], b""),
            405,
            "POST without credentials",
        ),
        (
            request("PUT", "/files/", &[], b""),
            405,
            "PUT on the listing",
        ),
        (request("BREW", "/files/x", &[], b""), 501, "unknown method"),
        (
            request("BREW", "/files/..", &[], b""),
            501,
            "unknown method, bad name",
        ),
        (
            request("GET", "/files/..", &[], b""),
            401,
            "bad name, no credentials",
        ),
        (
            request("PUT", "/files/%2e%2e", &[&wrong], b""),
            401,
            "bad name, wrong password",
        ),
        (
            request("DELETE", "/files/a%2fb", &[], b""),
            401,
            "DELETE bad name, no credentials",
        ),
        (
            alice_req("GET", "/files/.."),
            400,
            "bad name, right password",
        ),
        (alice_req("GET", "/files/missing"), 404, "no such file"),
    ];
    for (raw, status, what) in cases {
        exchange(addr, &raw).assert_status(status, what);
    }
}

#[test]
fn other_paths_are_404() {
    let (_server, addr) = http_server();
    let mut wrong = Vec::new();
    // `/` is the web interface (tests/it/web.rs).
    for target in [
        "/FILES/x",
        "/healthz/",
        "/metricsx",
        "/file/x",
        "/files%2fx",
    ] {
        for method in ["GET", "HEAD"] {
            let raw = alice_req(method, target);
            let resp = if method == "HEAD" {
                exchange_head(addr, &raw)
            } else {
                exchange(addr, &raw)
            };
            if resp.status != 404 {
                wrong.push(format!("{method} {target} answered {}", resp.status));
            }
        }
    }
    // The table of paths has `/files/` (and `/files`); "any other path is 404".
    assert!(
        wrong.is_empty(),
        "expected 404 for paths not in the table: {wrong:?}"
    );
    // `/files` without the slash is the listing, exactly like `/files/`.
    let without = exchange(addr, &alice_req("GET", "/files"));
    let with = exchange(addr, &alice_req("GET", "/files/"));
    assert_eq!((without.status, with.status), (200, 200));
    assert_eq!(without.body, with.body);
}

#[test]
fn cross_protocol_http_and_line_see_the_same_files() {
    let (server, addr) = http_server();
    let mut alice = server.alice();

    // HTTP up, line down.
    let up = pseudo_random_bytes(71, 300_000);
    let resp = exchange(addr, &put_req("/files/from%20http.bin", &up));
    resp.assert_status(201, "PUT over HTTP");
    let sha = sha256_hex(&up);
    assert_eq!(resp.header("x-ferry-sha256"), Some(sha.as_str()));
    assert_same_bytes(
        &alice.get("from http.bin"),
        &up,
        "line GET of an HTTP upload",
    );
    assert_eq!(
        alice.hash("from http.bin"),
        sha,
        "line HASH of an HTTP upload"
    );
    assert_eq!(alice.view("from http.bin"), &up[..1024]);

    // Line up, HTTP (curl) down.
    let down = pseudo_random_bytes(72, 250_001);
    alice.put("from line.bin", &down);
    let out = curl_ok(&[
        "-u",
        &alice_userpass(),
        &format!("http://{addr}/files/from%20line.bin"),
    ]);
    assert_eq!(out.code, 200);
    assert_same_bytes(&out.body, &down, "curl GET of a line upload");

    // Replace over HTTP what the line protocol stored: 204, and both agree.
    let newer = pseudo_random_bytes(73, 10_000);
    let resp = exchange(addr, &put_req("/files/from%20line.bin", &newer));
    resp.assert_status(204, "replace over HTTP");
    assert_eq!(
        resp.header("x-ferry-sha256"),
        Some(sha256_hex(&newer).as_str())
    );
    assert_eq!(alice.get("from line.bin"), newer);
    assert_eq!(alice.hash("from line.bin"), sha256_hex(&newer));

    // An empty upload.
    let resp = exchange(addr, &put_req("/files/empty", b""));
    resp.assert_status(201, "empty PUT");
    assert_eq!(
        resp.header("x-ferry-sha256"),
        Some(sha256_hex(b"").as_str())
    );
    assert_eq!(alice.get("empty"), b"");

    // Delete over the line protocol: HTTP sees it gone.
    alice.expect("DEL from http.bin", 250);
    exchange(addr, &alice_req("GET", "/files/from%20http.bin")).assert_status(404, "after DEL");
    assert_eq!(alice.list_names(), ["empty", "from line.bin"]);
    server.assert_tmp_empty();
}

// ===========================================================================
// Raw sockets.
// ===========================================================================

#[test]
fn keep_alive_pipelining_connection_close_and_http_1_0() {
    let (server, addr) = http_server();
    server.plant_file(ALICE, "first", b"FIRST FILE");
    server.plant_file(ALICE, "second", b"2nd");

    // Four requests in one write, answered in order.
    let mut c = Conn::open(addr);
    let mut batch = alice_req("GET", "/files/first");
    batch.extend(alice_req("HEAD", "/files/second"));
    batch.extend(request("GET", "/healthz", &[], b""));
    batch.extend(alice_req("GET", "/files/second"));
    c.send(&batch);
    let r1 = c.response();
    r1.assert_status(200, "pipelined #1");
    assert_eq!(r1.body, b"FIRST FILE");
    let r2 = c.head_response();
    r2.assert_status(200, "pipelined #2 (HEAD)");
    assert_eq!(r2.content_length(), 3);
    let r3 = c.response();
    r3.assert_status(200, "pipelined #3");
    assert_eq!(r3.body, b"ok\n");
    let r4 = c.response();
    r4.assert_status(200, "pipelined #4");
    assert_eq!(r4.body, b"2nd");
    for r in [&r1, &r2, &r3, &r4] {
        assert!(!r.says_close(), "keep-alive response says close: {r:?}");
    }

    // A PUT and a GET of the same name in one write: the body ends exactly
    // where its Content-Length says.
    let body = pseudo_random_bytes(81, 70_000);
    let mut batch = put_req("/files/third", &body);
    batch.extend(alice_req("GET", "/files/third"));
    batch.extend(request(
        "GET",
        "/files/third?preview",
        &[&alice_auth()],
        b"",
    ));
    c.send(&batch);
    c.response().assert_status(201, "pipelined PUT");
    let got = c.response();
    got.assert_status(200, "GET after pipelined PUT");
    assert_same_bytes(&got.body, &body, "pipelined GET");
    assert_eq!(c.response().body, &body[..1024]);

    // Absolute form is accepted.
    c.send(&alice_req("GET", &format!("http://{addr}/files/first")));
    assert_eq!(c.response().body, b"FIRST FILE");

    // Connection: close is honoured.
    c.send(&request("GET", "/healthz", &["Connection: close"], b""));
    let resp = c.response();
    resp.assert_status(200, "Connection: close");
    assert!(resp.says_close());
    c.expect_eof();

    // HTTP/1.0 closes by default...
    let mut c = Conn::open(addr);
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let resp = c.response();
    resp.assert_status(200, "HTTP/1.0");
    assert!(resp.says_close(), "HTTP/1.0 response: {:?}", resp.headers);
    c.expect_eof();
    // ...unless it asks for keep-alive.
    let mut c = Conn::open(addr);
    let auth = alice_auth();
    let keep = format!("GET /files/first HTTP/1.0\r\nConnection: keep-alive\r\n{auth}\r\n\r\n");
    for _ in 0..2 {
        c.send(keep.as_bytes());
        let resp = c.response();
        resp.assert_status(200, "HTTP/1.0 keep-alive");
        assert!(!resp.says_close());
        assert_eq!(resp.body, b"FIRST FILE");
    }
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert!(c.response().says_close());
    c.expect_eof();

    // An HTTP/1.1 request without Host.
    let resp = expect_closing_error(addr, b"GET /healthz HTTP/1.1\r\n\r\n", 400, "no Host");
    assert!(resp.header("content-type").is_some());
    let no_host = format!("GET /files/first HTTP/1.1\r\n{auth}\r\n\r\n");
    let resp = expect_closing_error(addr, no_host.as_bytes(), 400, "no Host, with credentials");
    assert!(find(&resp.body, b"FIRST").is_none());
}

#[test]
fn head_responses_have_no_body_whatever_the_status() {
    let (server, addr) = http_server();
    server.plant_file(ALICE, "x", &pseudo_random_bytes(151, 3000));
    fs::create_dir(server.user_dir(ALICE).join("subdir")).unwrap();
    let auth = alice_auth();
    let wrong = basic(ALICE, "wrong");
    let range = |r: &str| format!("Range: {r}");
    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        ("/files/x", vec![auth.clone()], 200),
        ("/files/x?preview", vec![auth.clone()], 200),
        ("/files/x", vec![auth.clone(), range("bytes=0-9")], 206),
        ("/files/x", vec![auth.clone(), range("bytes=5000-")], 416),
        ("/files/", vec![auth.clone()], 200),
        ("/files/?format=text", vec![auth.clone()], 200),
        ("/healthz", vec![], 200),
        ("/metrics", vec![metrics_bearer()], 200),
        ("/metrics", vec![], 401),
        ("/files/x", vec![], 401),
        ("/files/x", vec![wrong], 401),
        ("/files/..", vec![auth.clone()], 400),
        ("/files/missing", vec![auth.clone()], 404),
        // A folder's URL without its `/`.
        ("/files/subdir", vec![auth.clone()], 301),
        ("/nope", vec![], 404),
    ];
    let mut wrong_bodies = Vec::new();
    for (target, headers, status) in cases {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let what = format!("HEAD {target} ({status})");
        // The HEAD and a GET behind it, in one write.
        let mut c = Conn::open(addr);
        let mut batch = request("HEAD", target, &headers, b"");
        batch.extend(request("GET", "/healthz", &[], b""));
        c.send(&batch);
        let resp = c.head_response();
        resp.assert_status(status, &what);
        if status == 200 && target == "/files/x" {
            assert_eq!(resp.content_length(), 3000, "{what}");
        }
        if resp.says_close() {
            continue;
        }
        // Collect instead of failing at once, to report every status.
        match c.status_line_next() {
            Ok(()) => {
                c.response().assert_status(200, "GET behind the HEAD");
            }
            Err(got) => wrong_bodies.push(format!("{what}: {got}")),
        }
    }
    assert!(
        wrong_bodies.is_empty(),
        "responses to HEAD must have no body, but these were followed by bytes before the next response: {wrong_bodies:#?}"
    );
}

#[test]
fn framing_errors_are_400_or_501_and_close() {
    let (server, addr) = http_server();
    let auth = alice_auth();
    let put = |headers: &[&str], body: &[u8]| {
        let mut h = vec![auth.as_str()];
        h.extend_from_slice(headers);
        request("PUT", "/files/framed", &h, body)
    };
    expect_closing_error(
        addr,
        &put(
            &["Content-Length: 5", "Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        400,
        "Content-Length and Transfer-Encoding",
    );
    expect_closing_error(
        addr,
        &put(
            &["Transfer-Encoding: chunked", "Content-Length: 5"],
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        400,
        "Transfer-Encoding and Content-Length",
    );
    expect_closing_error(
        addr,
        &put(&["Content-Length: 5", "Content-Length: 6"], b"hello!"),
        400,
        "two different Content-Length",
    );
    for bad in ["+1", "0x10", "-1", "", "1.0", "1 1", "one"] {
        expect_closing_error(
            addr,
            &put(&[&format!("Content-Length: {bad}")], b"x"),
            400,
            &format!("Content-Length: {bad:?}"),
        );
    }
    for coding in ["gzip", "gzip, chunked", "deflate"] {
        expect_closing_error(
            addr,
            &put(&[&format!("Transfer-Encoding: {coding}")], b""),
            501,
            &format!("Transfer-Encoding: {coding}"),
        );
    }
    // Nothing of all that was stored.
    assert!(!server.user_dir(ALICE).join("framed").exists());
    // The same Content-Length twice is one length.
    let resp = exchange(
        addr,
        &put(&["Content-Length: 5", "Content-Length: 5"], b"hello"),
    );
    resp.assert_status(201, "Content-Length repeated with the same value");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("framed")).unwrap(),
        b"hello"
    );
    // Leading zeros are digits too.
    let resp = exchange(addr, &put(&["Content-Length: 0003"], b"abc"));
    resp.assert_status(204, "Content-Length: 0003");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("framed")).unwrap(),
        b"abc"
    );

    // Malformed heads.
    for (raw, what) in [
        (
            &b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n"[..],
            "field without colon",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
            "space in a field name",
        ),
        (
            b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "target without a slash",
        ),
        (
            b"\x01\x02\x03 / HTTP/1.1\r\nHost: x\r\n\r\n",
            "binary method",
        ),
    ] {
        expect_closing_error(addr, raw, 400, what);
    }

    // A request other than PUT that announces a body is answered, then
    // the connection closes.
    let mut c = Conn::open(addr);
    c.send(&request(
        "GET",
        "/healthz",
        &["Content-Length: 5"],
        b"hello",
    ));
    let resp = c.response();
    resp.assert_status(200, "GET with a body");
    assert!(resp.says_close());
    c.expect_eof();
    let mut c = Conn::open(addr);
    c.send(&request(
        "DELETE",
        "/files/framed",
        &[&auth, "Transfer-Encoding: chunked"],
        b"0\r\n\r\n",
    ));
    let resp = c.response();
    assert!(resp.says_close(), "DELETE with a body: {resp:?}");
    c.expect_eof();
}

#[test]
fn methods_limits_and_expectations() {
    let (server, addr) = http_server();
    let allow = |resp: &Resp| -> BTreeSet<String> {
        resp.header("allow")
            .unwrap_or_else(|| panic!("405 without Allow: {resp:?}"))
            .split(',')
            .map(|m| m.trim().to_string())
            .collect()
    };
    // WebDAV's (issue 20) and the folders' (issue 17) methods too.
    let dav = ["OPTIONS", "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK"];
    let all = BTreeSet::from_iter(
        ["GET", "HEAD", "PUT", "DELETE", "MKCOL", "MOVE", "COPY"]
            .into_iter()
            .chain(dav)
            .map(String::from),
    );
    let read_only = BTreeSet::from(["GET", "HEAD"].map(String::from));
    let root = BTreeSet::from_iter(["GET", "HEAD"].into_iter().chain(dav).map(String::from));
    for (method, target, want) in [
        ("POST", "/files/x", &all),
        ("POST", "/healthz", &read_only),
        ("PUT", "/metrics", &read_only),
        ("DELETE", "/files/", &root),
        ("PUT", "/files/", &root),
    ] {
        let resp = exchange(addr, &alice_req(method, target));
        resp.assert_status(405, &format!("{method} {target}"));
        assert_eq!(&allow(&resp), want, "{method} {target}");
    }
    // A 405 with a body closes the connection.
    let resp = expect_closing_error(
        addr,
        &request(
            "POST",
            "/files/x",
            &[&alice_auth(), "Content-Length: 3"],
            b"abc",
        ),
        405,
        "POST with a body",
    );
    assert_eq!(allow(&resp), all);
    // PROPFIND is WebDAV's now (tests/it/webdav.rs); SEARCH is not served.
    for method in ["BREW", "get", "SEARCH"] {
        exchange(addr, &alice_req(method, "/files/x")).assert_status(501, method);
    }

    // A head of exactly 16 KiB is fine; a few bytes more is 431 (whether or
    // not the final blank line counts).
    let sized_head = |total: usize| {
        let fixed = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n".len();
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(total - fixed)
        )
    };
    let exact = sized_head(16 * 1024);
    assert_eq!(exact.len(), 16384);
    exchange(addr, exact.as_bytes()).assert_status(200, "16 KiB head");
    expect_closing_error(
        addr,
        sized_head(16 * 1024 + 3).as_bytes(),
        431,
        "16 KiB + 3 head",
    );
    expect_closing_error(addr, sized_head(20_000).as_bytes(), 431, "20 kB head");
    // 64 fields are fine; 65 are 431.
    let fields = |n: usize| {
        let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
        for i in 1..n {
            head.push_str(&format!("X-F{i}: v\r\n"));
        }
        head.push_str("\r\n");
        head
    };
    exchange(addr, fields(64).as_bytes()).assert_status(200, "64 header fields");
    expect_closing_error(addr, fields(65).as_bytes(), 431, "65 header fields");
    // A target of exactly 8 KiB is fine; one byte more is 414.
    let target = |len: usize| format!("/healthz?{}", "q".repeat(len - "/healthz?".len()));
    exchange(addr, &request("GET", &target(8192), &[], b"")).assert_status(200, "8 KiB target");
    expect_closing_error(
        addr,
        &request("GET", &target(8193), &[], b""),
        414,
        "8 KiB + 1 target",
    );
    expect_closing_error(
        addr,
        &alice_req("GET", &format!("/files/{}", "a".repeat(9000))),
        414,
        "9000-byte file target",
    );

    // Expect other than 100-continue: 417, nothing stored.
    let mut c = Conn::open(addr);
    c.send(&request(
        "PUT",
        "/files/expect",
        &[&alice_auth(), "Content-Length: 5", "Expect: something-else"],
        b"",
    ));
    c.response().assert_status(417, "Expect: something-else");
    drop(c);
    assert!(!server.user_dir(ALICE).join("expect").exists());
}

#[test]
fn expect_100_continue_only_after_every_check() {
    let (server, addr) = start_http(TestServer::builder().args(["--max-file-size", "1000"]));
    let put_expect = |target: &str, auth: &str, length: usize| {
        let cl = format!("Content-Length: {length}");
        request("PUT", target, &[auth, &cl, "Expect: 100-continue"], b"")
    };
    let alice = alice_auth();
    let wrong = basic(ALICE, "wrong");
    for (raw, status, what) in [
        (
            put_expect("/files/ok", "X-None: 1", 10),
            401,
            "no credentials",
        ),
        (put_expect("/files/ok", &wrong, 10), 401, "wrong password"),
        (put_expect("/files/..", &alice, 10), 400, "bad name"),
        (
            put_expect("/files/big", &alice, 1001),
            413,
            "over --max-file-size",
        ),
        (
            put_expect("/files/huge", &alice, 1 << 40),
            413,
            "far over --max-file-size",
        ),
    ] {
        // The first response must be the final one, not 100.
        expect_closing_error(addr, &raw, status, what);
    }
    // Exactly at the limit: 100 Continue, then the body, then 201.
    let data = pseudo_random_bytes(91, 1000);
    let mut c = Conn::open(addr);
    c.send(&put_expect("/files/ok", &alice, 1000));
    let interim = c.response();
    interim.assert_status(100, "PUT of exactly --max-file-size");
    c.send(&data);
    let resp = c.response();
    resp.assert_status(201, "body after 100 Continue");
    assert_eq!(
        resp.header("x-ferry-sha256"),
        Some(sha256_hex(&data).as_str())
    );
    assert_eq!(fs::read(server.user_dir(ALICE).join("ok")).unwrap(), data);

    // curl: 413 at once, no 100 Continue, the body never sent.
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("big");
    fs::write(&src, pseudo_random_bytes(92, 5000)).unwrap();
    let out = curl(&[
        "-v",
        "-u",
        &alice_userpass(),
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "10",
        "-T",
        src.to_str().unwrap(),
        &format!("http://{addr}/files/big"),
    ]);
    assert_eq!(
        out.code, 413,
        "curl PUT over the limit; stderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("> Expect: 100-continue"),
        "curl did not send Expect; stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.saw_100() && !out.stderr.contains("< HTTP/1.1 100"),
        "100 Continue sent before a 413; stderr:\n{}",
        out.stderr
    );
    assert!(
        out.took < Duration::from_secs(5),
        "413 took {:?}: the server waited for the body",
        out.took
    );
    assert!(!server.user_dir(ALICE).join("big").exists());
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

/// Chunked encoding of `data` with the given chunk sizes (the last one
/// takes the rest), a chunk extension on every other chunk, mixed-case hex,
/// and a trailer.
fn chunked(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let n = size.min(data.len() - at);
        if n == 0 {
            break;
        }
        let hex = if i % 2 == 0 {
            format!("{n:x}")
        } else {
            format!("{n:X}")
        };
        out.extend_from_slice(hex.as_bytes());
        if i % 2 == 1 {
            out.extend_from_slice(b";name=\"va;lue\";flag");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&data[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    assert_eq!(at, data.len(), "chunk sizes do not cover the data");
    out.extend_from_slice(b"0;last=1\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n");
    out
}

#[test]
fn chunked_put_stores_exactly_the_decoded_bytes() {
    let (server, addr) = http_server();
    let data = pseudo_random_bytes(101, 200_000);
    let body = chunked(&data, &[1, 26, 4096, 65536, 0xABCD, 30_000, 100_000]);
    let mut c = Conn::open(addr);
    c.send(&request(
        "PUT",
        "/files/chunked.bin",
        &[&alice_auth(), "Transfer-Encoding: chunked"],
        b"",
    ));
    // Split the body at awkward places, across separate writes.
    let mut rng = Rng::new(7);
    let mut at = 0;
    while at < body.len() {
        let n = (rng.range(1, 40_000) as usize).min(body.len() - at);
        let n = if rng.range(0, 3) == 0 { n.min(3) } else { n };
        c.send(&body[at..at + n]);
        at += n;
        thread::sleep(Duration::from_millis(2));
    }
    let resp = c.response();
    resp.assert_status(201, "chunked PUT");
    assert_eq!(
        resp.header("x-ferry-sha256"),
        Some(sha256_hex(&data).as_str())
    );
    assert!(!resp.says_close());
    assert_same_bytes(
        &fs::read(server.user_dir(ALICE).join("chunked.bin")).unwrap(),
        &data,
        "stored chunked upload",
    );
    // The connection goes on after the trailer.
    c.send(&alice_req("GET", "/files/chunked.bin"));
    let got = c.response();
    got.assert_status(200, "GET after a chunked PUT");
    assert_same_bytes(&got.body, &data, "download of the chunked upload");

    // A chunked PUT and a request behind it, in one write.
    let small = b"hello, chunked world".to_vec();
    let mut batch = request(
        "PUT",
        "/files/small",
        &[&alice_auth(), "Transfer-Encoding: chunked"],
        &chunked(&small, &[5, 5, 100]),
    );
    batch.extend(alice_req("GET", "/files/small"));
    c.send(&batch);
    c.response().assert_status(201, "pipelined chunked PUT");
    assert_eq!(c.response().body, small);
    // An empty chunked body.
    c.send(&request(
        "PUT",
        "/files/small",
        &[&alice_auth(), "Transfer-Encoding: chunked"],
        b"0\r\n\r\n",
    ));
    let resp = c.response();
    resp.assert_status(204, "empty chunked PUT replacing");
    assert_eq!(
        resp.header("x-ferry-sha256"),
        Some(sha256_hex(b"").as_str())
    );
    assert_eq!(fs::read(server.user_dir(ALICE).join("small")).unwrap(), b"");
    server.assert_tmp_empty();
}

#[test]
fn malformed_chunked_body_is_400_and_keeps_the_previous_file() {
    let (server, addr) = http_server();
    let v1 = pseudo_random_bytes(111, 4000);
    let mut alice = server.alice();
    alice.put("keep.bin", &v1);
    for (body, what) in [
        (&b"zz\r\nhello\r\n0\r\n\r\n"[..], "non-hex size"),
        (b"5\r\nhelloX\r\n0\r\n\r\n", "no CRLF after the data"),
        (b"-5\r\nhello\r\n0\r\n\r\n", "signed size"),
        (b" 5\r\nhello\r\n0\r\n\r\n", "space before the size"),
        (b"5\nhello\r\n0\r\n\r\n", "bare LF after the size"),
        (b"5\r\nhello\r\n0\r\n\n", "bare LF at the end"),
        (b"4\r\nhello\r\n0\r\n\r\n", "size shorter than the data"),
        (b"10000000000000000\r\nhello", "size over 64 bits"),
    ] {
        let mut c = Conn::open(addr);
        c.send(&request(
            "PUT",
            "/files/keep.bin",
            &[&alice_auth(), "Transfer-Encoding: chunked"],
            b"",
        ));
        thread::sleep(Duration::from_millis(20));
        c.send_lenient(body);
        let resp = c.response();
        resp.assert_status(400, what);
        assert!(resp.says_close(), "{what}: {:?}", resp.headers);
        c.expect_eof();
        assert_eq!(
            fs::read(server.user_dir(ALICE).join("keep.bin")).unwrap(),
            v1,
            "{what}: the previous file changed"
        );
    }
    assert_eq!(alice.hash("keep.bin"), sha256_hex(&v1));
    assert_eq!(alice.partial("keep.bin"), 0);
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn bodies_over_max_file_size_are_413() {
    let (server, addr) = start_http(TestServer::builder().args(["--max-file-size", "1000"]));
    let v1 = b"previous version".to_vec();
    let mut alice = server.alice();
    alice.put("lim.bin", &v1);

    // Content-Length over the limit, body sent along: 413, closes.
    let over = pseudo_random_bytes(121, 1001);
    expect_closing_error(
        addr,
        &put_req("/files/lim.bin", &over),
        413,
        "Content-Length 1001",
    );

    // A chunked body that grows past the limit: 413 as soon as it does,
    // without the last chunk.
    let mut c = Conn::open(addr);
    c.send(&request(
        "PUT",
        "/files/lim.bin",
        &[&alice_auth(), "Transfer-Encoding: chunked"],
        b"",
    ));
    let part = pseudo_random_bytes(122, 600);
    let mut chunk = b"258\r\n".to_vec();
    chunk.extend_from_slice(&part);
    chunk.extend_from_slice(b"\r\n");
    c.send(&chunk);
    thread::sleep(Duration::from_millis(50));
    c.send_lenient(&chunk);
    let resp = c.response();
    resp.assert_status(413, "chunked body past the limit");
    assert!(resp.says_close());
    c.expect_eof();

    // Exactly at the limit, chunked: fine.
    let full = pseudo_random_bytes(123, 1000);
    let resp = exchange(
        addr,
        &request(
            "PUT",
            "/files/exact.bin",
            &[&alice_auth(), "Transfer-Encoding: chunked"],
            &chunked(&full, &[300, 700]),
        ),
    );
    resp.assert_status(201, "chunked body of exactly the limit");

    assert_eq!(alice.get("lim.bin"), v1, "the previous version changed");
    assert_eq!(alice.get("exact.bin"), full);
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn interrupted_upload_keeps_the_previous_version_and_no_temp_file() {
    let (server, addr) = http_server();
    let v1 = pseudo_random_bytes(131, 10_000);
    let mut alice = server.alice();
    alice.put("doc.bin", &v1);
    let v2 = pseudo_random_bytes(132, 200_000);

    // Content-Length framing, the client closes (FIN) mid-body.
    let mut c = Conn::open(addr);
    c.send(&request(
        "PUT",
        "/files/doc.bin",
        &[&alice_auth(), &format!("Content-Length: {}", v2.len())],
        &v2[..50_000],
    ));
    server.wait_tmp_bytes(50_000, Duration::from_secs(5));
    drop(c);
    server.assert_tmp_empty_within(Duration::from_secs(5));
    assert_eq!(alice.get("doc.bin"), v1, "after an interrupted upload");

    // Chunked framing, the client is killed (RST) mid-chunk.
    let mut c = Conn::open(addr);
    let mut body = format!("{:x}\r\n", v2.len()).into_bytes();
    body.extend_from_slice(&v2[..100_000]);
    c.send(&request(
        "PUT",
        "/files/doc.bin",
        &[&alice_auth(), "Transfer-Encoding: chunked"],
        &body,
    ));
    server.wait_tmp_bytes(100_000, Duration::from_secs(5));
    c.abort();
    server.assert_tmp_empty_within(Duration::from_secs(5));

    // A brand-new name interrupted: no file appears.
    let mut c = Conn::open(addr);
    c.send(&request(
        "PUT",
        "/files/new.bin",
        &[&alice_auth(), "Content-Length: 1000"],
        b"only part",
    ));
    server.wait_tmp_bytes(9, Duration::from_secs(5));
    drop(c);
    server.assert_tmp_empty_within(Duration::from_secs(5));

    assert_eq!(alice.get("doc.bin"), v1);
    assert_eq!(alice.hash("doc.bin"), sha256_hex(&v1));
    assert_eq!(alice.partial("doc.bin"), 0, "an HTTP upload left a partial");
    assert_eq!(alice.partial("new.bin"), 0, "an HTTP upload left a partial");
    assert_eq!(alice.list_names(), ["doc.bin"]);

    let mut m = Conn::open(addr);
    let aborted = |m: &mut Conn| {
        metric(
            &get_metrics(m).0,
            "ferry_transfers_aborted_total",
            &[("direction", "upload")],
        )
    };
    assert!(
        wait_until(Duration::from_secs(5), || aborted(&mut m) == 3),
        "ferry_transfers_aborted_total{{direction=\"upload\"}} is {}, expected 3",
        aborted(&mut m)
    );
}

#[test]
fn sigint_closes_idle_keep_alive_connections_and_exits_0() {
    let (mut server, addr) = start_http(TestServer::builder().args(["--drain-timeout", "10"]));
    let mut used = Conn::open(addr);
    used.send(&request("GET", "/healthz", &[], b""));
    let resp = used.response();
    resp.assert_status(200, "before shutdown");
    assert!(!resp.says_close());
    let mut never_used = Conn::open(addr);
    let mut m = Conn::open(addr);
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            &get_metrics(&mut m).0,
            "ferry_sessions_open",
            &[("protocol", "http")]
        ) == 3),
        "the idle connections were not accepted"
    );
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    for c in [&mut used, &mut never_used, &mut m] {
        c.expect_eof();
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "idle keep-alive connections closed only after {:?} (drain is 10 s)",
        start.elapsed()
    );
    server.expect_clean_exit(start, Duration::from_secs(5));
}

#[test]
fn sigint_lets_an_arriving_upload_finish_then_closes() {
    let (mut server, addr) = start_http(TestServer::builder().args(["--drain-timeout", "10"]));
    let data = pseudo_random_bytes(141, 100_000);
    let mut c = Conn::open(addr);
    c.send(&request(
        "PUT",
        "/files/late.bin",
        &[&alice_auth(), &format!("Content-Length: {}", data.len())],
        &data[..40_000],
    ));
    server.wait_tmp_bytes(40_000, Duration::from_secs(5));
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    thread::sleep(Duration::from_millis(200));
    c.send(&data[40_000..]);
    let resp = c.response();
    resp.assert_status(201, "upload finished during the drain");
    assert!(
        resp.says_close(),
        "response during shutdown: {:?}",
        resp.headers
    );
    assert_eq!(
        resp.header("x-ferry-sha256"),
        Some(sha256_hex(&data).as_str())
    );
    c.expect_eof();
    server.expect_clean_exit(start, Duration::from_secs(5));
    assert_same_bytes(
        &fs::read(server.user_dir(ALICE).join("late.bin")).unwrap(),
        &data,
        "upload finished during the drain",
    );
    assert!(server.tmp_entries().is_empty());
}

#[test]
fn sigint_lets_a_download_in_progress_finish_then_closes() {
    let (mut server, addr) = start_http(TestServer::builder().args(["--drain-timeout", "10"]));
    // Large enough that the socket buffers cannot hold it all.
    let data = pseudo_random_bytes(161, 24 * 1024 * 1024);
    server.plant_file(ALICE, "huge.bin", &data);
    let mut c = Conn::open(addr);
    c.send(&alice_req("GET", "/files/huge.bin"));
    while c.buf.len() < 100_000 {
        assert!(c.fill().unwrap() > 0, "closed early");
    }
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    thread::sleep(Duration::from_millis(200));
    let resp = c.response();
    resp.assert_status(200, "download across SIGINT");
    assert_same_bytes(&resp.body, &data, "download finished during the drain");
    c.expect_eof();
    server.expect_clean_exit(start, Duration::from_secs(8));
}

#[test]
fn drain_end_discards_an_unfinished_upload() {
    let (mut server, addr) = start_http(TestServer::builder().args(["--drain-timeout", "1"]));
    let v1 = b"the previous version".to_vec();
    server.alice().put("doc.bin", &v1);
    let mut c = Conn::open(addr);
    c.send(&request(
        "PUT",
        "/files/doc.bin",
        &[&alice_auth(), "Content-Length: 100000"],
        &pseudo_random_bytes(171, 30_000),
    ));
    let mut n = Conn::open(addr);
    n.send(&request(
        "PUT",
        "/files/new.bin",
        &[&alice_auth(), "Content-Length: 100000"],
        &pseudo_random_bytes(172, 20_000),
    ));
    server.wait_tmp_bytes(50_000, Duration::from_secs(5));
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    for c in [&mut c, &mut n] {
        // Whatever is said (if anything), the connection then closes.
        if let Some(resp) = c.try_response(false) {
            assert!(
                resp.status >= 400 && resp.says_close(),
                "unfinished upload at the end of the drain answered {resp:?}"
            );
        }
        c.expect_eof();
    }
    let took = server.expect_clean_exit(start, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(900),
        "the drain ended after {took:?}, not ~1 s"
    );
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("doc.bin")).unwrap(),
        v1
    );
    assert!(!server.user_dir(ALICE).join("new.bin").exists());
    assert!(
        server.tmp_entries().is_empty(),
        "{:?}",
        server.tmp_entries()
    );
    // Not kept as a partial either, across a restart.
    let server = server.restart_with(Vec::<String>::new());
    let mut alice = server.alice();
    assert_eq!(alice.partial("doc.bin"), 0);
    assert_eq!(alice.partial("new.bin"), 0);
    assert_eq!(alice.list_names(), ["doc.bin"]);
}

// ---------------------------------------------------------------------------
// Response bodies sent straight from the file (sendfile).
// ---------------------------------------------------------------------------

/// Reads a response head off `c` and returns its Content-Length, leaving
/// any body bytes in `c.buf`.
fn read_head_only(c: &mut Conn) -> (u16, usize) {
    let end = loop {
        if let Some(i) = find(&c.buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(c.fill().unwrap() > 0, "closed inside the head");
    };
    let head = String::from_utf8(c.buf[..end - 4].to_vec()).unwrap();
    let (status, headers) = parse_response_head(&head);
    let length = header_in(&headers, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    c.buf.drain(..end);
    (status, length)
}

#[test]
fn ranges_and_whole_files_of_a_large_file_on_one_keep_alive_connection() {
    let (server, addr) = http_server();
    let data = pseudo_random_bytes(181, 5 * 1024 * 1024 + 3);
    server.plant_file(ALICE, "big.bin", &data);
    let mut c = Conn::open(addr);
    let last = data.len() - 1;
    for (range, first, end) in [
        ("bytes=1000000-4000000", 1_000_000, 4_000_001),
        ("bytes=4095-", 4095, data.len()),
        ("bytes=-3", data.len() - 3, data.len()),
        (&*format!("bytes={last}-{last}"), last, data.len()),
    ] {
        let field = format!("Range: {range}");
        c.send(&request(
            "GET",
            "/files/big.bin",
            &[&alice_auth(), &field],
            b"",
        ));
        let resp = c.response();
        resp.assert_status(206, range);
        assert_eq!(
            resp.header("content-range"),
            Some(format!("bytes {first}-{}/{}", end - 1, data.len()).as_str()),
            "{range}"
        );
        assert_same_bytes(&resp.body, &data[first..end], range);
    }
    // A whole file and a small one, pipelined behind each other.
    server.plant_file(ALICE, "small.bin", &data[..4096]);
    let mut both = alice_req("GET", "/files/big.bin");
    both.extend_from_slice(&alice_req("GET", "/files/small.bin"));
    c.send(&both);
    let resp = c.response();
    resp.assert_status(200, "whole file");
    assert_same_bytes(&resp.body, &data, "whole file");
    let resp = c.response();
    resp.assert_status(200, "small file");
    assert_same_bytes(&resp.body, &data[..4096], "small file");
}

#[test]
fn a_file_truncated_during_an_http_download_closes_the_connection() {
    let (server, addr) = http_server();
    let data = pseudo_random_bytes(182, 32 * 1024 * 1024);
    let path = server.plant_file(ALICE, "shrink.bin", &data);
    let mut c = Conn::open(addr);
    c.send(&alice_req("GET", "/files/shrink.bin"));
    let (status, length) = read_head_only(&mut c);
    assert_eq!((status, length), (200, data.len()));
    while c.buf.len() < 1000 {
        assert!(c.fill().unwrap() > 0, "closed early");
    }
    let head: Vec<u8> = c.buf.drain(..1000).collect();
    assert_same_bytes(&head, &data[..1000], "bytes read before the truncation");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    while c.fill().unwrap() > 0 {}
    let got = 1000 + c.buf.len();
    assert!(
        got < data.len(),
        "received all {got} announced bytes of a truncated file"
    );
    // The server goes on serving.
    let resp = exchange(addr, &alice_req("GET", "/files/shrink.bin"));
    resp.assert_status(200, "after the truncation");
    assert_eq!(resp.body.len(), 4096);
}

#[test]
fn drain_end_cuts_off_a_download_to_a_client_that_does_not_read() {
    let (mut server, addr) = start_http(TestServer::builder().args(["--drain-timeout", "1"]));
    // Sparse and far larger than the socket buffers.
    let size = 1u64 << 30;
    let path = server.plant_file(ALICE, "huge", b"");
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
    let mut c = Conn::open(addr);
    c.send(&alice_req("GET", "/files/huge"));
    let (status, length) = read_head_only(&mut c);
    assert_eq!((status, length as u64), (200, size));
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    let took = server.expect_clean_exit(start, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(900),
        "the drain ended after {took:?}, not ~1 s"
    );
    while c.fill().unwrap() > 0 {}
    assert!((c.buf.len() as u64) < size, "the download was not cut off");
    assert!(
        c.buf.iter().all(|&b| b == 0),
        "a sparse file reads as zeros"
    );
}

/// Issue 14, item 1: `curl -C 1000 -T` sends the tail of the file with
/// `Content-Range`; taking that body as the whole file replaced a 52,311-byte
/// file by its 51,311-byte tail and answered `204`. Such a PUT is refused
/// before its body is read, and the stored file stays as it was; so does a
/// body with a `Content-Encoding` the server does not decode.
#[test]
fn put_with_content_range_or_encoding_is_refused_and_changes_nothing() {
    let (server, addr) = http_server();
    let work = tempfile::tempdir().unwrap();
    let userpass = alice_userpass();
    let url = format!("http://{addr}/files/resume.pdf");
    let stored_path = server.user_dir(ALICE).join("resume.pdf");
    let report = pseudo_random_bytes(14, 52_311);
    let src = work.path().join("report.pdf");
    fs::write(&src, &report).unwrap();
    let first = curl_ok(&["-u", &userpass, "-T", src.to_str().unwrap(), &url]);
    assert_eq!(first.code, 201);

    let resumed = curl(&[
        "-v",
        "-u",
        &userpass,
        "-C",
        "1000",
        "-T",
        src.to_str().unwrap(),
        &url,
    ]);
    assert!(
        resumed
            .stderr
            .contains("> Content-Range: bytes 1000-52310/52311"),
        "curl -C did not send the Content-Range this test is about; stderr:\n{}",
        resumed.stderr
    );
    assert_eq!(resumed.code, 400, "stderr:\n{}", resumed.stderr);
    assert!(
        String::from_utf8_lossy(&resumed.body).contains("Content-Range"),
        "the 400 must say what was refused: {}",
        lossy(&resumed.body)
    );
    assert_same_bytes(&fs::read(&stored_path).unwrap(), &report, "after -C");

    // The same over a raw socket, for a name that does not exist yet: no
    // file appears.
    let tail = &report[1000..];
    let range = format!("Content-Range: bytes 1000-52310/{}", report.len());
    let length = format!("Content-Length: {}", tail.len());
    let raw = request(
        "PUT",
        "/files/new.pdf",
        &[&alice_auth(), &length, &range],
        tail,
    );
    expect_closing_error(addr, &raw, 400, "PUT with Content-Range");
    assert!(!server.user_dir(ALICE).join("new.pdf").exists());

    let gzip = request(
        "PUT",
        "/files/resume.pdf",
        &[&alice_auth(), "Content-Length: 4", "Content-Encoding: gzip"],
        b"\x1f\x8b\x08\x00",
    );
    let resp = expect_closing_error(addr, &gzip, 415, "PUT with Content-Encoding: gzip");
    assert!(String::from_utf8_lossy(&resp.body).contains("Content-Encoding"));
    assert_same_bytes(
        &fs::read(&stored_path).unwrap(),
        &report,
        "after Content-Encoding",
    );

    // `identity` is no encoding at all.
    let plain = request(
        "PUT",
        "/files/plain.txt",
        &[
            &alice_auth(),
            "Content-Length: 5",
            "Content-Encoding: identity",
        ],
        b"hello",
    );
    exchange(addr, &plain).assert_status(201, "PUT with Content-Encoding: identity");
    server.assert_tmp_empty();
}
