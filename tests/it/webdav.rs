//! WebDAV on `/files/` (issue 20) at the HTTP level: OPTIONS, PROPFIND
//! at each depth and with each kind of body, a large folder's `207`
//! streamed, PROPPATCH's dead properties and times, locks one client holds
//! and another meets, ETag conditions on GET and PUT, and the bodies that
//! are refused (XML bombs, entities, oversized). The real clients are in
//! `dav_clients.rs`.
//!
//! Against the real `ferryd` over loopback; every wait is bounded.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::*;

const XML: &str = "Content-Type: application/xml";

fn dav(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &str,
) -> Resp {
    let auth = alice_auth();
    let length = format!("Content-Length: {}", body.len());
    let mut all: Vec<&str> = vec![&auth, &length, XML];
    all.extend_from_slice(headers);
    exchange(addr, &request(method, target, &all, body.as_bytes()))
}

fn put(addr: std::net::SocketAddr, name: &str, body: &[u8], headers: &[&str]) -> Resp {
    let auth = alice_auth();
    let length = format!("Content-Length: {}", body.len());
    let mut all: Vec<&str> = vec![&auth, &length];
    all.extend_from_slice(headers);
    exchange(addr, &request("PUT", &path_target(name), &all, body))
}

/// `/files/` and the path, each name percent-encoded.
fn path_target(path: &str) -> String {
    let names: Vec<String> = path.split('/').map(|n| pct(n.as_bytes())).collect();
    format!("/files/{}", names.join("/"))
}

/// The `response` elements of a multistatus body, as text.
fn responses(body: &str) -> Vec<&str> {
    body.split("<D:response>").skip(1).collect()
}

fn propfind_body(props: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop>{props}</D:prop></D:propfind>"
    )
}

#[test]
fn options_says_dav_classes_1_and_2_without_a_login() {
    let (_server, addr) = http_server();
    for target in ["/files/", "/files/any%20file"] {
        let resp = exchange(addr, &request("OPTIONS", target, &[], b""));
        resp.assert_status(200, target);
        assert_eq!(resp.header("dav"), Some("1, 2"), "{target}");
        assert_eq!(resp.header("ms-author-via"), Some("DAV"));
        let allow = resp.header("allow").unwrap();
        for method in ["PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "GET", "OPTIONS"] {
            assert!(allow.contains(method), "{target}: Allow {allow:?}");
        }
    }
    // Elsewhere OPTIONS is a method the path does not take.
    exchange(addr, &request("OPTIONS", "/healthz", &[], b"")).assert_status(405, "healthz");
}

#[test]
fn propfind_depth_0_and_1_and_infinity_refused() {
    let (_server, addr) = http_server();
    let names = ["a b.txt", "hash#and?%.bin", "été.txt"];
    for (i, name) in names.iter().enumerate() {
        put(addr, name, &vec![b'x'; i + 1], &[]).assert_status(201, name);
    }
    let resp = dav(addr, "PROPFIND", "/files/", &["Depth: 0"], "");
    resp.assert_status(207, "depth 0");
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("application/xml")
    );
    let body = resp.text();
    let all = responses(&body);
    assert_eq!(all.len(), 1, "{body}");
    assert!(all[0].contains("<D:href>/files/</D:href>"), "{body}");
    assert!(all[0].contains("<D:collection/>"), "{body}");

    let resp = dav(addr, "PROPFIND", "/files/", &["Depth: 1"], "");
    resp.assert_status(207, "depth 1");
    assert_eq!(
        resp.header("transfer-encoding"),
        Some("chunked"),
        "streamed"
    );
    let body = resp.text();
    let all = responses(&body);
    assert_eq!(all.len(), 1 + names.len(), "{body}");
    for (i, name) in names.iter().enumerate() {
        let href = format!("<D:href>{}</D:href>", file_target(name));
        let entry = all
            .iter()
            .find(|r| r.contains(&href))
            .unwrap_or_else(|| panic!("{href} in {body}"));
        assert!(
            entry.contains(&format!(
                "<D:getcontentlength>{}</D:getcontentlength>",
                i + 1
            )),
            "{entry}"
        );
        assert!(entry.contains("<D:resourcetype/>"), "{entry}");
    }
    assert!(body.ends_with("</D:multistatus>\n"), "{body}");

    for depth in [&["Depth: infinity"][..], &[]] {
        let resp = dav(addr, "PROPFIND", "/files/", depth, "");
        resp.assert_status(403, "depth infinity");
        assert!(
            resp.text().contains("<D:propfind-finite-depth/>"),
            "{}",
            resp.text()
        );
    }
    let resp = dav(addr, "PROPFIND", "/files/nope", &["Depth: 0"], "");
    resp.assert_status(404, "missing file");
    // Of a file, any depth is the file.
    let file = file_target(names[0]);
    for depth in [&["Depth: infinity"][..], &[], &["Depth: 1"]] {
        let resp = dav(addr, "PROPFIND", &file, depth, "");
        resp.assert_status(207, "a file at any depth");
        assert_eq!(responses(&resp.text()).len(), 1);
    }
    let resp = dav(addr, "PROPFIND", "/files/", &["Depth: 2"], "");
    resp.assert_status(400, "depth 2");
    // Without credentials, a login is asked for.
    let resp = exchange(addr, &request("PROPFIND", "/files/", &["Depth: 0"], b""));
    resp.assert_status(401, "no login");
}

#[test]
fn propfind_named_properties_propname_and_allprop() {
    let (_server, addr) = http_server();
    put(addr, "f", b"hello", &[]).assert_status(201, "put");
    let etag = exchange_head(addr, &alice_req("HEAD", "/files/f"))
        .header("etag")
        .map(str::to_owned)
        .expect("HEAD has an ETag");

    let body = propfind_body("<D:getcontentlength/><D:getetag/><x:nope xmlns:x=\"urn:x\"/>");
    let resp = dav(addr, "PROPFIND", "/files/f", &["Depth: 0"], &body);
    resp.assert_status(207, "named");
    let text = resp.text();
    assert!(
        text.contains("<D:getcontentlength>5</D:getcontentlength>"),
        "{text}"
    );
    let escaped = etag.replace('"', "&quot;");
    assert!(
        text.contains(&format!("<D:getetag>{escaped}</D:getetag>")),
        "{text}"
    );
    let missing = text
        .split("<D:propstat>")
        .find(|p| p.contains("404"))
        .unwrap();
    assert!(
        missing.contains("nope"),
        "the unknown property is 404: {text}"
    );

    let body = "<D:propfind xmlns:D=\"DAV:\"><D:propname/></D:propfind>";
    let text = dav(addr, "PROPFIND", "/files/f", &["Depth: 0"], body).text();
    for live in [
        "getcontentlength/",
        "getlastmodified/",
        "creationdate/",
        "displayname/",
        "getetag/",
        "getcontenttype/",
        "supportedlock/",
        "lockdiscovery/",
        "resourcetype/",
    ] {
        assert!(text.contains(&format!("<D:{live}>")), "{live}: {text}");
    }
    assert!(
        !text.contains("hello") && !text.contains(">5<"),
        "names only: {text}"
    );

    let body = "<D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>";
    let text = dav(addr, "PROPFIND", "/files/f", &["Depth: 0"], body).text();
    assert!(text.contains("<D:displayname>f</D:displayname>"), "{text}");
    assert!(text.contains("<D:getcontenttype>"), "{text}");
    assert!(text.contains("<D:supportedlock><D:lockentry>"), "{text}");
    assert!(text.contains("<D:creationdate>20"), "{text}");
}

#[test]
fn a_large_folders_207_is_streamed_while_others_are_served() {
    let _timing = timing_sensitive();
    const FILES: usize = 20_000;
    let (server, addr) = http_server();
    put(addr, "first", b"1", &[]).assert_status(201, "put");
    plant_empty_files(
        &server.user_dir(ALICE),
        (0..FILES).map(|i| format!("{i:06}-{}", "n".repeat(100))),
    );
    // A client that asks and does not read: the server holds a bounded
    // amount for it and serves another client meanwhile.
    let mut slow = Conn::open(addr);
    slow.send(&request(
        "PROPFIND",
        "/files/",
        &[&alice_auth(), "Depth: 1"],
        b"",
    ));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    exchange(addr, &request("GET", "/healthz", &[], b"")).assert_status(200, "healthz");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "another client waited {:?}",
        started.elapsed()
    );
    let resp = slow.response();
    resp.assert_status(207, "depth 1");
    let body = resp.text();
    assert_eq!(
        responses(&body).len(),
        FILES + 2,
        "every file once, and the root"
    );
    assert!(body.ends_with("</D:multistatus>\n"));
    // Over HTTP/1.0 the body ends with the connection.
    let mut old = Conn::open(addr);
    old.send(
        format!(
            "PROPFIND /files/ HTTP/1.0\r\n{}\r\nDepth: 1\r\n\r\n",
            alice_auth()
        )
        .as_bytes(),
    );
    let text = old.read_to_close();
    assert!(text.starts_with("HTTP/1.1 207"), "{}", &text[..200]);
    assert!(text.ends_with("</D:multistatus>\n"), "complete");
}

#[test]
fn proppatch_stores_dead_properties_and_applies_times() {
    let (server, addr) = http_server();
    put(addr, "doc", b"text", &[]).assert_status(201, "put");
    let set = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/z"><D:set><D:prop><Z:author><Z:name>Jane &amp; Joe</Z:name></Z:author><D:getlastmodified>Tue, 03 Mar 2026 10:00:00 GMT</D:getlastmodified></D:prop></D:set></D:propertyupdate>"#;
    let resp = dav(addr, "PROPPATCH", "/files/doc", &[], set);
    resp.assert_status(207, "proppatch");
    let text = resp.text();
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    assert!(!text.contains("424") && !text.contains("403"), "{text}");
    let mtime = fs::metadata(server.user_dir(ALICE).join("doc"))
        .unwrap()
        .mtime();
    assert_eq!(mtime, 1_772_532_000, "getlastmodified set the file's time");

    let find = propfind_body("<Z:author xmlns:Z=\"http://example.com/z\"/><D:getlastmodified/>");
    let text = dav(addr, "PROPFIND", "/files/doc", &["Depth: 0"], &find).text();
    assert!(text.contains("Jane &amp; Joe</Z:name>"), "{text}");
    assert!(text.contains("Tue, 03 Mar 2026 10:00:00 GMT"), "{text}");
    assert!(!text.contains("404"), "{text}");

    // A protected property fails the whole request: nothing is applied.
    let mixed = r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/z"><D:set><D:prop><Z:other>1</Z:other><D:getetag>"x"</D:getetag></D:prop></D:set><D:remove><D:prop><Z:author/></D:prop></D:remove></D:propertyupdate>"#;
    let text = dav(addr, "PROPPATCH", "/files/doc", &[], mixed).text();
    assert!(text.contains("HTTP/1.1 403 Forbidden"), "{text}");
    assert!(text.contains("HTTP/1.1 424 Failed Dependency"), "{text}");
    let text = dav(addr, "PROPFIND", "/files/doc", &["Depth: 0"], &find).text();
    assert!(text.contains("Jane &amp; Joe"), "still there: {text}");

    // Windows' times: Win32LastModifiedTime applies, the others are kept.
    let win = r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop><Z:Win32CreationTime>Mon, 02 Mar 2026 09:00:00 GMT</Z:Win32CreationTime><Z:Win32LastModifiedTime>Wed, 04 Mar 2026 10:00:00 GMT</Z:Win32LastModifiedTime><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>"#;
    let text = dav(addr, "PROPPATCH", "/files/doc", &[], win).text();
    assert!(!text.contains("403") && !text.contains("424"), "{text}");
    let mtime = fs::metadata(server.user_dir(ALICE).join("doc"))
        .unwrap()
        .mtime();
    assert_eq!(mtime, 1_772_618_400);

    // Removing, and the properties go with the file.
    let remove = r#"<D:propertyupdate xmlns:D="DAV:"><D:remove><D:prop><Z:author xmlns:Z="http://example.com/z"/></D:prop></D:remove></D:propertyupdate>"#;
    dav(addr, "PROPPATCH", "/files/doc", &[], remove).assert_status(207, "remove");
    let text = dav(addr, "PROPFIND", "/files/doc", &["Depth: 0"], &find).text();
    assert!(!text.contains("Jane"), "{text}");
    dav(addr, "PROPPATCH", "/files/doc", &[], set).assert_status(207, "set again");
    exchange(addr, &alice_req("DELETE", "/files/doc")).assert_status(204, "delete");
    put(addr, "doc", b"new", &[]).assert_status(201, "put again");
    let text = dav(addr, "PROPFIND", "/files/doc", &["Depth: 0"], &find).text();
    assert!(
        !text.contains("Jane"),
        "a new file has no old properties: {text}"
    );
    // The root takes dead properties too.
    dav(addr, "PROPPATCH", "/files/", &[], remove).assert_status(207, "root");
    dav(addr, "PROPPATCH", "/files/missing", &[], remove).assert_status(404, "missing");
}

const LOCK_EXCLUSIVE: &str = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>mailto:a@example.com</D:href></D:owner></D:lockinfo>"#;
const LOCK_SHARED: &str = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;

fn token_of(resp: &Resp) -> String {
    let field = resp.header("lock-token").expect("a Lock-Token");
    field
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

#[test]
fn a_lock_held_by_one_client_is_respected_by_another() {
    let (server, addr) = http_server();
    put(addr, "shared.doc", b"v1", &[]).assert_status(201, "put");
    let resp = dav(
        addr,
        "LOCK",
        "/files/shared.doc",
        &["Timeout: Second-600", "Depth: 0"],
        LOCK_EXCLUSIVE,
    );
    resp.assert_status(200, "lock");
    let token = token_of(&resp);
    assert!(token.starts_with("opaquelocktoken:"), "{token}");
    let text = resp.text();
    assert!(
        text.contains("<D:exclusive/>") && text.contains("mailto:a@example.com"),
        "{text}"
    );
    assert!(text.contains("Second-"), "{text}");

    // Another client, without the token: everything that writes is 423.
    put(addr, "shared.doc", b"v2", &[]).assert_status(423, "put");
    exchange(addr, &alice_req("DELETE", "/files/shared.doc")).assert_status(423, "delete");
    let patch = r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="urn:x">1</x></D:prop></D:set></D:propertyupdate>"#;
    dav(addr, "PROPPATCH", "/files/shared.doc", &[], patch).assert_status(423, "proppatch");
    dav(addr, "LOCK", "/files/shared.doc", &[], LOCK_EXCLUSIVE).assert_status(423, "second lock");
    dav(addr, "LOCK", "/files/shared.doc", &[], LOCK_SHARED)
        .assert_status(423, "shared over exclusive");
    let resp = dav(
        addr,
        "LOCK",
        "/files/",
        &["Depth: infinity"],
        LOCK_EXCLUSIVE,
    );
    resp.assert_status(423, "the root over a locked member");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("shared.doc")).unwrap(),
        b"v1"
    );
    // Reading is not writing.
    exchange(addr, &alice_req("GET", "/files/shared.doc")).assert_status(200, "get");
    let text = dav(
        addr,
        "PROPFIND",
        "/files/shared.doc",
        &["Depth: 0"],
        &propfind_body("<D:lockdiscovery/>"),
    )
    .text();
    assert!(
        text.contains(&token),
        "lockdiscovery shows the lock: {text}"
    );

    // With the token in an If field, the holder writes.
    let given = format!("If: (<{token}>)");
    put(addr, "shared.doc", b"v2", &[&given]).assert_status(204, "put with token");
    let wrong = "If: (<opaquelocktoken:00000000-0000-4000-8000-000000000000>)";
    put(addr, "shared.doc", b"v3", &[wrong]).assert_status(412, "put with a wrong token");
    // A refresh: no body, the token in If.
    let resp = dav(
        addr,
        "LOCK",
        "/files/shared.doc",
        &[&given, "Timeout: Second-100"],
        "",
    );
    resp.assert_status(200, "refresh");
    assert!(
        resp.text().contains("Second-100") || resp.text().contains("Second-99"),
        "{}",
        resp.text()
    );

    let unlock_wrong = format!("Lock-Token: <{}>", "opaquelocktoken:nope");
    dav(addr, "UNLOCK", "/files/shared.doc", &[&unlock_wrong], "")
        .assert_status(409, "wrong token");
    dav(addr, "UNLOCK", "/files/shared.doc", &[], "").assert_status(400, "no token");
    let unlock = format!("Lock-Token: <{token}>");
    dav(addr, "UNLOCK", "/files/shared.doc", &[&unlock], "").assert_status(204, "unlock");
    put(addr, "shared.doc", b"v3", &[]).assert_status(204, "unlocked");

    // Shared locks: two holders; either one's token lets it write.
    let a = token_of(
        dav(addr, "LOCK", "/files/shared.doc", &[], LOCK_SHARED).assert_status(200, "shared a"),
    );
    let b = token_of(
        dav(addr, "LOCK", "/files/shared.doc", &[], LOCK_SHARED).assert_status(200, "shared b"),
    );
    assert_ne!(a, b);
    put(addr, "shared.doc", b"v4", &[]).assert_status(423, "shared, no token");
    put(addr, "shared.doc", b"v4", &[&format!("If: (<{b}>)")])
        .assert_status(204, "shared b writes");

    // A lock on a name that does not exist makes an empty file.
    let resp = dav(addr, "LOCK", "/files/new.doc", &[], LOCK_EXCLUSIVE);
    resp.assert_status(201, "lock unmapped");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("new.doc")).unwrap(),
        b""
    );
    // Audited as the upload of nothing it is.
    server.log_containing("upload ip=127.0.0.1 proto=http user=\"alice\" name=\"new.doc\" size=0");
    // A depth-infinity lock on the root covers every file: a new name too.
    let resp = dav(
        addr,
        "LOCK",
        "/files/",
        &["Depth: infinity"],
        LOCK_EXCLUSIVE,
    );
    resp.assert_status(423, "the root over new.doc's lock");
    let unlock = format!(
        "Lock-Token: <{}>",
        token_of(&dav(addr, "LOCK", "/files/other", &[], LOCK_EXCLUSIVE))
    );
    dav(addr, "UNLOCK", "/files/other", &[&unlock], "").assert_status(204, "unlock other");
}

#[test]
fn a_root_lock_covers_new_names_and_locks_expire() {
    let (_server, addr) = http_server();
    let resp = dav(
        addr,
        "LOCK",
        "/files/",
        &["Depth: infinity", "Timeout: Second-1"],
        LOCK_EXCLUSIVE,
    );
    resp.assert_status(200, "lock the root");
    let token = token_of(&resp);
    put(addr, "fresh", b"x", &[]).assert_status(423, "a new name in a locked root");
    let given = format!("If: (<{token}>)");
    put(addr, "fresh", b"x", &[&given]).assert_status(201, "with the token");
    std::thread::sleep(Duration::from_millis(1300));
    put(addr, "fresh", b"y", &[]).assert_status(204, "the lock expired");
}

#[test]
fn etags_identify_versions_and_condition_get_and_put() {
    let (_server, addr) = http_server();
    put(addr, "e", b"one", &[]).assert_status(201, "put");
    let first = exchange(addr, &alice_req("GET", "/files/e"));
    let etag = first.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let same = exchange(addr, &alice_req("GET", "/files/e"));
    assert_eq!(same.header("etag"), Some(etag.as_str()), "stable");

    let inm = format!("If-None-Match: {etag}");
    let get = |headers: &[&str]| {
        let auth = alice_auth();
        let mut all: Vec<&str> = vec![&auth];
        all.extend_from_slice(headers);
        exchange(addr, &request("GET", "/files/e", &all, b""))
    };
    let resp = get(&[&inm]);
    resp.assert_status(304, "not modified");
    assert_eq!(resp.header("etag"), Some(etag.as_str()));
    assert!(resp.body.is_empty());
    get(&["If-None-Match: \"other\""]).assert_status(200, "other etag");
    get(&["If-Match: \"other\""]).assert_status(412, "if-match other");
    get(&[&format!("If-Match: {etag}")]).assert_status(200, "if-match");

    // PUT: a lost update is refused before the body is read.
    let auth = alice_auth();
    let raw = request(
        "PUT",
        "/files/e",
        &[&auth, "Content-Length: 3", "If-Match: \"stale\""],
        b"two",
    );
    expect_closing_error(addr, &raw, 412, "if-match stale");
    put(addr, "e", b"two", &["If-None-Match: *"]).assert_status(412, "exists");
    put(addr, "new", b"n", &["If-None-Match: *"]).assert_status(201, "new name");
    let replaced = put(addr, "e", b"two", &[&format!("If-Match: {etag}")]);
    replaced.assert_status(204, "current etag");
    let next = exchange(addr, &alice_req("GET", "/files/e"));
    assert_eq!(
        replaced.header("etag"),
        next.header("etag"),
        "a PUT answers the ETag of what it stored"
    );
    assert_eq!(next.body, b"two");
    assert_ne!(
        next.header("etag"),
        Some(etag.as_str()),
        "a new version, a new etag"
    );
    put(addr, "e", b"three", &[&format!("If-Match: {etag}")]).assert_status(412, "old etag");
    // The If field's entity tags too.
    let current = next.header("etag").unwrap();
    put(addr, "e", b"four", &[&format!("If: ([{current}])")]).assert_status(204, "If etag");
    put(addr, "e", b"five", &[&format!("If: ([{current}])")]).assert_status(412, "If stale");
    put(addr, "e", b"six", &["If: (Not <DAV:no-lock>)"]).assert_status(204, "If Not");
    put(addr, "e", b"seven", &["If: (<DAV:no-lock>)"]).assert_status(412, "If no-lock");
    put(addr, "e", b"eight", &["If: garbage"]).assert_status(400, "malformed If");
}

#[test]
fn xml_bombs_entities_and_oversized_bodies_are_refused() {
    let (_server, addr) = http_server();
    put(addr, "f", b"x", &[]).assert_status(201, "put");
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">{}]><D:propfind xmlns:D=\"DAV:\"><D:prop><x>&lol9;</x></D:prop></D:propfind>",
        (1..10)
            .map(|i| format!(
                "<!ENTITY lol{i} \"{}\">",
                format!(
                    "&lol{};",
                    if i == 1 {
                        String::new()
                    } else {
                        (i - 1).to_string()
                    }
                )
                .repeat(10)
            ))
            .collect::<String>()
    );
    let external = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x>&e;</x></D:prop></D:set></D:propertyupdate>"#;
    let undeclared = r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x>&e;</x></D:prop></D:set></D:propertyupdate>"#;
    let deep = format!(
        "<D:propfind xmlns:D=\"DAV:\"><D:prop>{}{}</D:prop></D:propfind>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    for (method, body, what) in [
        ("PROPFIND", laughs.as_str(), "DTD"),
        ("PROPPATCH", external, "DTD"),
        ("PROPPATCH", undeclared, "entities"),
        ("PROPFIND", deep.as_str(), "nests"),
        (
            "PROPFIND",
            "<D:propfind xmlns:D=\"DAV:\"><D:prop>",
            "well-formed",
        ),
        ("LOCK", "<nope/>", "not the XML"),
    ] {
        let resp = dav(addr, method, "/files/f", &["Depth: 0"], body);
        resp.assert_status(400, what);
        assert!(resp.text().contains(what), "{what}: {}", resp.text());
    }

    // Over 64 KiB: refused before the body is read, and the connection
    // closes (its body cannot be told from a next request).
    let auth = alice_auth();
    let raw = request(
        "PROPFIND",
        "/files/",
        &[&auth, "Depth: 0", "Content-Length: 70000"],
        b"",
    );
    expect_closing_error(addr, &raw, 413, "declared too large");
    // A chunked body is refused as soon as it grows past the bound.
    let mut c = Conn::open(addr);
    c.send(&request(
        "PROPPATCH",
        "/files/f",
        &[&auth, "Transfer-Encoding: chunked"],
        b"",
    ));
    let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
    for _ in 0..5 {
        c.send_lenient(chunk.as_bytes());
    }
    let resp = c.response();
    resp.assert_status(413, "chunked too large");
    assert!(resp.says_close());
    // A body within the bound, chunked, works.
    let mut c = Conn::open(addr);
    let body = propfind_body("<D:getcontentlength/>");
    c.send(&request(
        "PROPFIND",
        "/files/f",
        &[&auth, "Depth: 0", "Transfer-Encoding: chunked"],
        b"",
    ));
    c.send(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    let resp = c.response();
    resp.assert_status(207, "chunked propfind");
    assert!(
        resp.text().contains("<D:getcontentlength>1<"),
        "{}",
        resp.text()
    );
    // And the connection goes on.
    c.send(&alice_req("GET", "/files/f"));
    c.response().assert_status(200, "next request");
}

#[test]
fn folders_are_collections_with_properties_and_locks() {
    let (server, addr) = http_server();
    dav(addr, "MKCOL", "/files/docs/", &[], "").assert_status(201, "mkcol");
    dav(addr, "MKCOL", "/files/docs/inner/", &[], "").assert_status(201, "mkcol inner");
    put(addr, "docs/a b.txt", b"abc", &[]).assert_status(201, "put");

    // Depth 1 of a folder: the folder, its file, its subfolder.
    for target in ["/files/docs/", "/files/docs"] {
        let resp = dav(addr, "PROPFIND", target, &["Depth: 1"], "");
        resp.assert_status(207, target);
        let body = resp.text();
        let all = responses(&body);
        assert_eq!(all.len(), 3, "{body}");
        assert!(all[0].contains("<D:href>/files/docs/</D:href>"), "{body}");
        let file = all
            .iter()
            .find(|r| r.contains("/files/docs/a%20b.txt<"))
            .unwrap();
        assert!(file.contains("<D:getcontentlength>3<"), "{file}");
        let inner = all
            .iter()
            .find(|r| r.contains("/files/docs/inner/<"))
            .unwrap();
        assert!(inner.contains("<D:collection/>"), "{inner}");
        assert!(inner.contains("<D:displayname>inner<"), "{inner}");
    }
    let resp = dav(addr, "PROPFIND", "/files/nowhere/", &["Depth: 1"], "");
    resp.assert_status(404, "missing folder");

    // Dead properties of a folder and of a file in it move with MOVE.
    let set = r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><t xmlns="urn:t">kept</t></D:prop></D:set></D:propertyupdate>"#;
    dav(addr, "PROPPATCH", "/files/docs/", &[], set).assert_status(207, "folder");
    dav(addr, "PROPPATCH", "/files/docs/a%20b.txt", &[], set).assert_status(207, "file");
    let find = propfind_body("<t xmlns=\"urn:t\"/>");
    let moved = ["Destination: http://127.0.0.1/files/papers/"];
    dav(addr, "MOVE", "/files/docs/", &moved, "").assert_status(201, "move");
    for target in ["/files/papers/", "/files/papers/a%20b.txt"] {
        let text = dav(addr, "PROPFIND", target, &["Depth: 0"], &find).text();
        assert!(text.contains(">kept</ferryP:t>"), "{target}: {text}");
    }
    // COPY gives the copy the source's dead properties.
    let copied = ["Destination: http://127.0.0.1/files/copied.txt"];
    dav(addr, "COPY", "/files/papers/a%20b.txt", &copied, "").assert_status(201, "copy");
    let text = dav(addr, "PROPFIND", "/files/copied.txt", &["Depth: 0"], &find).text();
    assert!(text.contains(">kept</ferryP:t>"), "copy: {text}");
    // A folder with the old name starts without them.
    dav(addr, "MKCOL", "/files/docs/", &[], "").assert_status(201, "mkcol again");
    let text = dav(addr, "PROPFIND", "/files/docs/", &["Depth: 0"], &find).text();
    assert!(!text.contains("kept"), "{text}");

    // A depth-infinity lock on a folder guards everything beneath it.
    let resp = dav(
        addr,
        "LOCK",
        "/files/papers/",
        &["Depth: infinity"],
        LOCK_EXCLUSIVE,
    );
    resp.assert_status(200, "lock folder");
    let token = token_of(&resp);
    put(addr, "papers/new.txt", b"n", &[]).assert_status(423, "put beneath");
    put(addr, "papers/a b.txt", b"n", &[]).assert_status(423, "replace beneath");
    dav(addr, "MKCOL", "/files/papers/sub/", &[], "").assert_status(423, "mkcol beneath");
    dav(addr, "DELETE", "/files/papers/a%20b.txt", &[], "").assert_status(423, "delete beneath");
    let away = ["Destination: http://127.0.0.1/files/elsewhere"];
    dav(addr, "MOVE", "/files/papers/a%20b.txt", &away, "").assert_status(423, "move out");
    let into = ["Destination: http://127.0.0.1/files/papers/copy.txt"];
    put(addr, "free.txt", b"f", &[]).assert_status(201, "put outside");
    dav(addr, "COPY", "/files/free.txt", &into, "").assert_status(423, "copy into");
    // A lock on a member of a folder stops the folder's removal.
    let given = format!("If: (<{token}>)");
    put(addr, "papers/new.txt", b"n", &[&given]).assert_status(201, "with the token");
    let unlock = format!("Lock-Token: <{token}>");
    dav(addr, "UNLOCK", "/files/papers/", &[&unlock], "").assert_status(204, "unlock");
    let resp = dav(addr, "LOCK", "/files/papers/new.txt", &[], LOCK_EXCLUSIVE);
    resp.assert_status(200, "lock member");
    let member = token_of(&resp);
    let recursive = ["Depth: infinity"];
    dav(addr, "DELETE", "/files/papers/", &recursive, "").assert_status(423, "delete tree");
    // The token is about the member, so its list is tagged with it (an
    // untagged list is about the folder, which that lock does not cover).
    let untagged = format!("If: (<{member}>)");
    let headers = ["Depth: infinity", untagged.as_str()];
    dav(addr, "DELETE", "/files/papers/", &headers, "").assert_status(412, "untagged");
    let given = format!("If: <http://127.0.0.1/files/papers/new.txt> (<{member}>)");
    let headers = ["Depth: infinity", given.as_str()];
    dav(addr, "DELETE", "/files/papers/", &headers, "").assert_status(204, "delete tree");
    assert!(!server.user_dir(ALICE).join("papers").exists());
    // The member's lock went with it: the same path, made again, is free.
    dav(addr, "MKCOL", "/files/papers/", &[], "").assert_status(201, "mkcol again");
    put(addr, "papers/new.txt", b"again", &[]).assert_status(201, "no lock left");
    // A lock on a name whose folder does not exist is 409.
    dav(addr, "LOCK", "/files/none/x", &[], LOCK_EXCLUSIVE).assert_status(409, "no folder");
}

#[test]
fn a_webdav_lock_holds_against_the_line_protocol() {
    let (server, addr) = http_server();
    put(addr, "held.txt", b"v1", &[]).assert_status(201, "put");
    dav(addr, "MKCOL", "/files/box/", &[], "").assert_status(201, "mkcol");
    let file_lock = token_of(&dav(addr, "LOCK", "/files/held.txt", &[], LOCK_EXCLUSIVE));
    let box_lock = token_of(&dav(addr, "LOCK", "/files/box/", &[], LOCK_SHARED));

    // A line client cannot give a token: what a lock holds is refused.
    let mut c = server.alice();
    let (code, text) = c.cmd("PUT 2 held.txt");
    assert_eq!(
        (code, text.as_str()),
        (550, "locked (a WebDAV lock holds it)")
    );
    c.expect("DEL held.txt", 550);
    c.expect("FROM held.txt", 350);
    c.expect("MOVE moved.txt", 550);
    c.expect("MKDIR box/inner", 550);
    c.expect("RMTREE box", 550);
    c.expect("FROM free.txt", 350);
    c.expect("COPY box/copy.txt", 550);
    // Reading is not writing, and what no lock holds is free.
    c.expect("HASH held.txt", 213);
    c.put("free.txt", b"free");
    c.expect("MKDIR elsewhere", 257);
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("held.txt")).unwrap(),
        b"v1"
    );

    for (target, token) in [("/files/held.txt", &file_lock), ("/files/box/", &box_lock)] {
        let unlock = format!("Lock-Token: <{token}>");
        dav(addr, "UNLOCK", target, &[&unlock], "").assert_status(204, target);
    }
    c.put("held.txt", b"v2");
    c.expect("MKDIR box/inner", 257);
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("held.txt")).unwrap(),
        b"v2"
    );
}
