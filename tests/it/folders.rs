//! Folders: paths on both fronts, containment over paths, moves, copies,
//! trees, listings of large folders, and quotas across the tree.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::http::*;
use crate::common::*;

/// The lines of a `LIST` or `TREE` as (name, size), sorted by name.
fn listed(c: &mut Client, line: &str) -> BTreeMap<String, u64> {
    c.send_line(line);
    let data = c.read_list_blocks();
    parse_listing(&data)
        .into_iter()
        .map(|e| (String::from_utf8(e.name).unwrap(), e.size))
        .collect()
}

#[test]
fn folders_are_created_listed_and_removed_over_the_line_protocol() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.expect("MKDIR photos", 257);
    c.expect("MKDIR /photos/2024", 257);
    assert_eq!(c.cmd("MKDIR photos").0, 550, "already exists");
    assert_eq!(c.cmd("MKDIR nope/x").1, "no such folder");
    c.put("photos/2024/a b.jpg", b"hello");
    c.put("top.txt", b"top");
    assert_eq!(c.get("/photos/2024/a b.jpg"), b"hello");
    let root = listed(&mut c, "LIST");
    assert_eq!(
        root.keys().collect::<Vec<_>>(),
        ["photos/", "top.txt"],
        "a folder's line ends with /"
    );
    let tree = listed(&mut c, "TREE");
    assert_eq!(
        tree.into_iter().collect::<Vec<_>>(),
        [
            ("photos/".to_owned(), 0),
            ("photos/2024/".to_owned(), 0),
            ("photos/2024/a b.jpg".to_owned(), 5),
            ("top.txt".to_owned(), 3)
        ]
    );
    let sub = listed(&mut c, "LIST photos/2024");
    assert_eq!(
        sub.into_iter().collect::<Vec<_>>(),
        [("a b.jpg".to_owned(), 5)]
    );
    let stat = c.expect("STAT photos/2024/a b.jpg", 213);
    assert!(
        stat.starts_with("type=file size=5 mtime=")
            && stat.ends_with(&format!("sha256={}", sha256_hex(b"hello"))),
        "{stat}"
    );
    assert!(
        c.expect("STAT photos", 213)
            .starts_with("type=folder mtime=")
    );
    assert_eq!(c.cmd("GET photos").1, "is a folder");
    assert_eq!(c.cmd("DEL photos").1, "is a folder");
    assert_eq!(c.cmd("LIST top.txt").1, "not a folder");
    assert_eq!(c.cmd("RMDIR photos").1, "folder not empty");
    assert_eq!(c.cmd("PUT 1 nope/x").1, "no such folder");
    c.noop();
    c.expect("RMTREE photos", 250);
    assert_eq!(c.cmd("STAT photos").0, 550);
    c.expect("MKDIR empty", 257);
    c.expect("RMDIR empty", 250);
    assert_eq!(
        listed(&mut c, "LIST").keys().collect::<Vec<_>>(),
        ["top.txt"]
    );
    // The removed tree leaves nothing behind once it is emptied.
    assert!(wait_until(Duration::from_secs(5), || server
        .tmp_entries()
        .is_empty()));
}

/// One request on a fresh connection, its response.
fn http(addr: std::net::SocketAddr, raw: &[u8]) -> Resp {
    let mut conn = Conn::open(addr);
    conn.send(raw);
    conn.response()
}

fn alice_with(method: &str, target: &str, headers: &[&str]) -> Vec<u8> {
    let auth = alice_auth();
    let mut all = vec![auth.as_str()];
    all.extend_from_slice(headers);
    request(method, target, &all, b"")
}

#[test]
fn folders_over_http_mkcol_put_list_redirect_and_delete() {
    let (server, addr) = http_server();
    let status = |raw: &[u8]| http(addr, raw).status;
    assert_eq!(status(&alice_req("MKCOL", "/files/docs")), 201);
    assert_eq!(status(&alice_req("MKCOL", "/files/docs/")), 405, "exists");
    assert_eq!(status(&alice_req("MKCOL", "/files/no/such")), 409);
    assert_eq!(status(&put_req("/files/docs/a%20b.txt", b"hello")), 201);
    assert_eq!(status(&put_req("/files/nope/x", b"x")), 409, "no parent");
    assert_eq!(status(&put_req("/files/docs", b"x")), 409, "a folder");
    let got = http(addr, &alice_req("GET", "/files/docs/a%20b.txt"));
    assert_eq!((got.status, got.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(status(&alice_req("GET", "/files/nope/x")), 404);
    // A folder's URL without the slash redirects to the one with it.
    let moved = http(addr, &alice_req("GET", "/files/docs"));
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("Location"), Some("/files/docs/"));
    let listed = http(addr, &alice_req("GET", "/files/docs/"));
    assert_eq!(listed.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(json[0]["name"], "a b.txt");
    assert_eq!(json[0]["type"], "file");
    assert_eq!(json[0]["size"], 5);
    let root = http(addr, &alice_req("GET", "/files/"));
    let json: serde_json::Value = serde_json::from_slice(&root.body).unwrap();
    assert_eq!(json[0]["name"], "docs");
    assert_eq!(json[0]["type"], "folder");
    let tree = http(addr, &alice_req("GET", "/files/?recursive&format=text"));
    assert_eq!(
        tree.text(),
        format!(
            "0 {} docs/\n5 {} docs/a b.txt\n",
            json[0]["mtime"],
            tree.text()
                .lines()
                .nth(1)
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
        )
    );
    assert_eq!(
        status(&alice_req("GET", "/files/docs/a%20b.txt/")),
        409,
        "not a folder"
    );
    // An encoded slash never separates.
    assert_eq!(status(&alice_req("GET", "/files/docs%2Fa%20b.txt")), 400);
    assert_eq!(status(&alice_req("GET", "/files/docs/..")), 400);
    assert_eq!(status(&alice_req("GET", "/files/docs//x")), 400);
    // A folder that is not empty goes only when the request says so.
    let refused = http(addr, &alice_req("DELETE", "/files/docs/"));
    assert_eq!(
        (refused.status, refused.text().as_str()),
        (409, "folder not empty\n")
    );
    assert_eq!(
        status(&alice_with("DELETE", "/files/docs", &["Depth: infinity"])),
        204
    );
    assert_eq!(status(&alice_req("GET", "/files/docs/")), 404);
    assert_eq!(status(&alice_req("MKCOL", "/files/e")), 201);
    assert_eq!(
        status(&alice_req("DELETE", "/files/e")),
        204,
        "an empty folder"
    );
    assert!(wait_until(Duration::from_secs(5), || server
        .tmp_entries()
        .is_empty()));
}

#[test]
fn move_and_copy_over_http_follow_destination_and_overwrite() {
    let (server, addr) = http_server();
    let status = |raw: &[u8]| http(addr, raw).status;
    assert_eq!(status(&alice_req("MKCOL", "/files/a")), 201);
    assert_eq!(status(&alice_req("MKCOL", "/files/a/b")), 201);
    assert_eq!(status(&put_req("/files/a/b/f", b"data")), 201);
    assert_eq!(status(&put_req("/files/g", b"other")), 201);
    let dest = |path: &str| format!("Destination: http://127.0.0.1/files/{path}");
    // Into itself, onto itself.
    assert_eq!(
        status(&alice_with("MOVE", "/files/a", &[&dest("a/b/a")])),
        403
    );
    assert_eq!(status(&alice_with("MOVE", "/files/a", &[&dest("a")])), 403);
    // Outside /files/, or a path that breaks the rules: nothing to name.
    assert_eq!(
        status(&alice_with(
            "MOVE",
            "/files/g",
            &["Destination: /files/../bob/g"]
        )),
        400
    );
    assert_eq!(
        status(&alice_with("MOVE", "/files/g", &["Destination: /healthz"])),
        400
    );
    assert_eq!(
        status(&alice_with(
            "MOVE",
            "/files/g",
            &[&dest("x"), "Overwrite: maybe"]
        )),
        400
    );
    // Overwrite: F keeps an existing destination.
    assert_eq!(
        status(&alice_with(
            "COPY",
            "/files/g",
            &[&dest("a/b/f"), "Overwrite: F"]
        )),
        412
    );
    let copied = http(addr, &alice_with("COPY", "/files/a/b/f", &[&dest("c")]));
    assert_eq!(copied.status, 201);
    assert_eq!(
        copied.header("X-Ferry-SHA256"),
        Some(sha256_hex(b"data").as_str())
    );
    assert_eq!(
        status(&alice_with("COPY", "/files/g", &[&dest("c")])),
        204,
        "replaced"
    );
    assert_eq!(http(addr, &alice_req("GET", "/files/c")).body, b"other");
    assert_eq!(
        status(&alice_with("COPY", "/files/a", &[&dest("z")])),
        403,
        "a folder"
    );
    assert_eq!(
        status(&alice_with("MOVE", "/files/a", &[&dest("no/z")])),
        409
    );
    assert_eq!(
        status(&alice_with(
            "MOVE",
            "/files/a/",
            &["Destination: /files/m/"]
        )),
        201
    );
    assert_eq!(http(addr, &alice_req("GET", "/files/m/b/f")).body, b"data");
    assert_eq!(status(&alice_req("GET", "/files/a/b/f")), 404);
    assert_eq!(
        status(&alice_with("MOVE", "/files/c", &[&dest("m/b/f")])),
        204
    );
    assert_eq!(http(addr, &alice_req("GET", "/files/m/b/f")).body, b"other");
    drop(server);
}
