//! The web interface ("The web interface" in `protocol.md`) at the HTTP
//! level, without a browser: the login form and its cookie, expiry on the
//! server, CSRF refusals, escaping, the types and policies of what is
//! served, the JSON that scripts keep, and the form's share of the login
//! delay and lockout. Every socket read is bounded (`Conn`'s timeouts).

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

const HOSTILE: &str = "<img src=x onerror=alert(1)>.html";

/// `key=value&...`, form-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k.as_bytes()), pct(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("&")
}

/// One request on a fresh connection.
fn send(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut conn = Conn::open(addr);
    conn.send(bytes);
    conn.response()
}

fn post(addr: SocketAddr, path: &str, headers: &[&str], body: &str) -> Resp {
    let length = format!("Content-Length: {}", body.len());
    let mut all = vec![
        "Content-Type: application/x-www-form-urlencoded",
        length.as_str(),
    ];
    all.extend_from_slice(headers);
    send(addr, &request("POST", path, &all, body.as_bytes()))
}

fn get(addr: SocketAddr, target: &str, headers: &[&str]) -> Resp {
    send(addr, &request("GET", target, headers, b""))
}

/// Logs in through the form: the `Cookie` header line to send after.
fn login(addr: SocketAddr, user: &str, password: &str) -> String {
    let body = form(&[("user", user), ("password", password)]);
    let resp = post(addr, "/web/login", &["Origin: http://127.0.0.1"], &body);
    resp.assert_status(303, "form login");
    assert_eq!(resp.header("location"), Some("/"));
    let cookie = resp.header("set-cookie").expect("a cookie");
    let value = cookie.split(';').next().unwrap().trim();
    assert!(
        value.starts_with("ferry_session=") && value.len() > 40,
        "{cookie}"
    );
    format!("Cookie: {value}")
}

/// The CSRF token the page gives the logged-in browser.
fn csrf_of(addr: SocketAddr, cookie: &str) -> String {
    let page = get(addr, "/", &[cookie]);
    page.assert_status(200, "files page");
    let text = page.text();
    let at = text
        .find("name=\"csrf-token\" content=\"")
        .expect("csrf meta");
    let rest = &text[at + "name=\"csrf-token\" content=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn put_basic(addr: SocketAddr, name: &str, data: &[u8]) {
    let resp = send(addr, &put_req(&file_target(name), data));
    assert!(resp.status == 201 || resp.status == 204, "{resp:?}");
}

fn web_server() -> (TestServer, SocketAddr) {
    start_http(TestServer::builder().args(["--login-delay", "0"]))
}

#[test]
fn form_login_gives_a_strict_http_only_cookie_and_logout_ends_it() {
    let (_server, addr) = web_server();
    let page = get(addr, "/", &["Accept: text/html"]);
    page.assert_status(200, "login page");
    assert!(page.text().contains("action=\"/web/login\""));
    assert!(page.text().contains("<label for=\"password\">"));

    let body = form(&[("user", ALICE), ("password", ALICE_PW)]);
    let resp = post(addr, "/web/login", &[], &body);
    resp.assert_status(303, "login");
    let set = resp.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure: {set}");
    assert!(!set.contains("Max-Age"), "expiry is the server's: {set}");
    let cookie = format!("Cookie: {}", set.split(';').next().unwrap());

    let files = get(addr, "/", &[&cookie]);
    files.assert_status(200, "files page");
    assert!(files.text().contains("<h1>Files</h1>"), "{}", files.text());
    let csrf = csrf_of(addr, &cookie);

    // Logging out needs the token; then the cookie is worth nothing.
    let refused = post(addr, "/web/logout", &[&cookie], "csrf=wrong");
    refused.assert_status(403, "logout without the token");
    let out = post(addr, "/web/logout", &[&cookie], &form(&[("csrf", &csrf)]));
    out.assert_status(303, "logout");
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = get(addr, "/", &[&cookie]);
    assert!(after.text().contains("action=\"/web/login\""), "logged out");
    let listing = get(addr, "/files/", &[&cookie]);
    listing.assert_status(401, "the cookie of a logged-out session");
}

#[test]
fn a_web_session_expires_on_the_server() {
    let builder = TestServer::builder().args(["--login-delay", "0", "--web-session-timeout", "1"]);
    let (_server, addr) = start_http(builder);
    let cookie = login(addr, ALICE, ALICE_PW);
    get(addr, "/files/?json", &[&cookie]).assert_status(200, "fresh cookie");
    thread::sleep(Duration::from_millis(1600));
    get(addr, "/files/?json", &[&cookie]).assert_status(401, "expired cookie");
    let page = get(addr, "/", &[&cookie]);
    assert!(page.text().contains("action=\"/web/login\""), "login again");
}

#[test]
fn cross_site_and_tokenless_requests_with_the_cookie_are_refused() {
    let (server, addr) = web_server();
    put_basic(addr, "keep.txt", b"keep");
    let cookie = login(addr, ALICE, ALICE_PW);
    let csrf = csrf_of(addr, &cookie);
    let delete = form(&[("csrf", &csrf), ("name", "keep.txt"), ("confirm", "yes")]);
    let kept = server.user_dir(ALICE).join("keep.txt");

    // A page of another site posting a form (the browser adds the cookie
    // only if SameSite failed; Origin and Sec-Fetch-Site say where from).
    for headers in [
        &[&cookie, "Origin: http://evil.example"][..],
        &[&cookie, "Sec-Fetch-Site: cross-site"][..],
        &[&cookie, "Origin: null"][..],
    ] {
        let resp = post(addr, "/web/delete", headers, &delete);
        resp.assert_status(403, "cross-site form post");
        assert!(kept.exists());
    }
    let no_token = form(&[("name", "keep.txt"), ("confirm", "yes")]);
    post(addr, "/web/delete", &[&cookie], &no_token).assert_status(403, "no token");
    assert!(kept.exists());

    // A script's PUT and DELETE need the token in X-CSRF-Token.
    let put = |headers: &[&str]| {
        let mut all = vec![cookie.as_str(), "Content-Length: 3"];
        all.extend_from_slice(headers);
        send(addr, &request("PUT", "/files/new.txt", &all, b"abc"))
    };
    put(&[]).assert_status(403, "PUT without the token");
    assert!(!server.user_dir(ALICE).join("new.txt").exists());
    let token = format!("X-CSRF-Token: {csrf}");
    put(&[&token, "Origin: http://evil.example"]).assert_status(403, "PUT from elsewhere");
    put(&[&token, "Sec-Fetch-Site: same-origin"]).assert_status(201, "PUT with the token");
    assert_eq!(
        std::fs::read(server.user_dir(ALICE).join("new.txt")).unwrap(),
        b"abc"
    );
    let del = |headers: &[&str]| {
        let mut all = vec![cookie.as_str()];
        all.extend_from_slice(headers);
        send(addr, &request("DELETE", "/files/new.txt", &all, b""))
    };
    del(&[]).assert_status(403, "DELETE without the token");
    del(&[&token]).assert_status(204, "DELETE with the token");

    // The form's own delete asks first, then deletes.
    let ask = form(&[("csrf", &csrf), ("name", "keep.txt")]);
    let question = post(addr, "/web/delete", &[&cookie], &ask);
    question.assert_status(200, "confirmation page");
    assert!(question.text().contains("name=\"confirm\" value=\"yes\""));
    assert!(kept.exists());
    let origin = "Origin: http://127.0.0.1";
    post(addr, "/web/delete", &[&cookie, origin], &delete).assert_status(303, "delete");
    assert!(!kept.exists());

    // A login form posted from another site is refused too.
    let body = form(&[("user", ALICE), ("password", ALICE_PW)]);
    let resp = post(addr, "/web/login", &["Origin: http://evil.example"], &body);
    resp.assert_status(403, "cross-site login");
    assert_eq!(resp.header("set-cookie"), None);
}

#[test]
fn a_hostile_name_is_shown_as_text_and_markup_never_runs_as_the_site() {
    let (_server, addr) = web_server();
    let content = b"<script>alert(document.cookie)</script>";
    put_basic(addr, HOSTILE, content);
    put_basic(
        addr,
        "pic.svg",
        b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
    );
    let cookie = login(addr, ALICE, ALICE_PW);
    let escaped = "&lt;img src=x onerror=alert(1)&gt;.html";

    let list = get(addr, "/", &[&cookie]);
    let text = list.text();
    assert!(text.contains(escaped), "{text}");
    assert!(!text.contains("<img src=x"), "{text}");
    let page = get(
        addr,
        &format!("/web/file?name={}", pct(HOSTILE.as_bytes())),
        &[&cookie],
    );
    page.assert_status(200, "file page");
    let text = page.text();
    assert!(text.contains(escaped), "{text}");
    assert!(!text.contains("<script>alert"), "{text}");
    assert!(
        text.contains("&lt;script&gt;alert(document.cookie)"),
        "{text}"
    );
    assert!(text.contains(&sha256_hex(content)), "the SHA-256: {text}");

    for name in [HOSTILE, "pic.svg"] {
        let inline = get(addr, &format!("{}?inline", file_target(name)), &[&cookie]);
        inline.assert_status(200, "inline view");
        assert_eq!(
            inline.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(inline.header("x-content-type-options"), Some("nosniff"));
        assert!(
            inline
                .header("content-security-policy")
                .unwrap()
                .contains("sandbox")
        );
        assert!(
            inline
                .header("content-disposition")
                .unwrap()
                .starts_with("inline;")
        );
    }
}

#[test]
fn content_types_nosniff_and_the_interface_policy() {
    let (_server, addr) = web_server();
    put_basic(addr, "a.png", b"\x89PNG\r\n\x1a\n");
    put_basic(addr, "notes.txt", b"hello\n");
    put_basic(addr, "blob.bin", b"\x00\x01");
    let cookie = login(addr, ALICE, ALICE_PW);

    let page = get(addr, "/", &[&cookie]);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!page.text().contains("<script>"), "no inline script");

    let js = get(addr, "/web/app.js", &[]);
    js.assert_status(200, "script");
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let css = get(addr, "/web/app.css", &[]);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    get(addr, "/web/nothing", &[]).assert_status(404, "unknown web path");

    let inline = |name: &str| get(addr, &format!("{}?inline", file_target(name)), &[&cookie]);
    assert_eq!(inline("a.png").header("content-type"), Some("image/png"));
    assert_eq!(
        inline("notes.txt").header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let blob = inline("blob.bin");
    assert_eq!(
        blob.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(
        blob.header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
    let download = get(addr, "/files/notes.txt?download", &[&cookie]);
    assert!(
        download
            .header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );

    // Scripts get what they always got, and nosniff with every response.
    let plain = get(addr, "/files/notes.txt", &[&alice_auth()]);
    assert_eq!(
        plain.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(plain.header("content-disposition"), None);
    for resp in [
        plain,
        get(addr, "/healthz", &[]),
        get(addr, "/nowhere", &[]),
        js,
    ] {
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{resp:?}"
        );
    }
}

#[test]
fn scripts_keep_the_json_listing_and_browsers_get_the_interface() {
    let (_server, addr) = web_server();
    put_basic(addr, "a.txt", b"a");
    let auth = alice_auth();
    let browser = "Accept: text/html,application/xhtml+xml,*/*;q=0.8";
    for headers in [
        vec![auth.as_str()],
        vec![auth.as_str(), "Accept: */*"],
        vec![auth.as_str(), "Accept: application/json"],
        vec![auth.as_str(), "Accept: text/html, application/json"],
    ] {
        let resp = get(addr, "/files/", &headers);
        resp.assert_status(200, "script listing");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert!(resp.text().contains("\"name\":\"a.txt\""));
    }
    let json = get(addr, "/files/?json", &[&auth, browser]);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let navigate = get(addr, "/files/", &[&auth, browser]);
    navigate.assert_status(303, "a browser navigating");
    assert_eq!(navigate.header("location"), Some("/"));
    let folder = get(addr, "/files/my%20docs/2026/", &[browser]);
    folder.assert_status(303, "a browser navigating to a folder");
    assert_eq!(folder.header("location"), Some("/?dir=my%20docs%2F2026"));
    let script = get(addr, "/files/my%20docs/2026/", &[&auth]);
    script.assert_status(404, "a script asking for a folder that is not there");
    // The cookie stands in for credentials on the file routes.
    let cookie = login(addr, ALICE, ALICE_PW);
    let listing = get(addr, "/files/?json", &[&cookie]);
    assert!(listing.text().contains("\"name\":\"a.txt\""));
}

#[test]
fn folder_page_sorts_by_column_with_human_sizes_and_utc_times() {
    let (server, addr) = web_server();
    server.plant_file(ALICE, "b-big", &vec![7u8; 3 * 1024]);
    server.plant_file(ALICE, "a-small", b"x");
    server.plant_file(ALICE, "c-mid", &[1u8; 1500]);
    let cookie = login(addr, ALICE, ALICE_PW);
    let order = |target: &str| {
        let text = get(addr, target, &[&cookie]).text();
        let mut found: Vec<(usize, &str)> = ["a-small", "b-big", "c-mid"]
            .into_iter()
            .map(|n| (text.find(&format!(">{n}</a>")).expect(n), n))
            .collect();
        found.sort();
        found.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
    };
    assert_eq!(order("/"), ["a-small", "b-big", "c-mid"]);
    assert_eq!(
        order("/?sort=name&order=desc"),
        ["c-mid", "b-big", "a-small"]
    );
    assert_eq!(order("/?sort=size"), ["a-small", "c-mid", "b-big"]);
    assert_eq!(
        order("/?sort=size&order=desc"),
        ["b-big", "c-mid", "a-small"]
    );
    let text = get(addr, "/", &[&cookie]).text();
    assert!(text.contains(">3.0 KiB<"), "{text}");
    assert!(text.contains(">1 B<"), "{text}");
    assert!(text.contains("<time datetime=\"20"), "{text}");
    assert!(text.contains(" UTC</time>"), "{text}");
}

#[test]
fn form_logins_share_the_delay_and_the_lockout() {
    let builder = TestServer::builder()
        .args(["--login-delay", "0.3", "--lockout-failures", "3"])
        .args(["--lockout-window", "60", "--lockout-duration", "60"]);
    let (server, addr) = start_http(builder);
    let wrong = form(&[("user", ALICE), ("password", "nope")]);
    for attempt in 0..3 {
        let started = Instant::now();
        let resp = post(addr, "/web/login", &[], &wrong);
        resp.assert_status(303, "failed login");
        assert_eq!(resp.header("location"), Some("/?login=failed"), "{attempt}");
        assert_eq!(resp.header("set-cookie"), None);
        assert!(
            started.elapsed() >= Duration::from_millis(280),
            "the login delay"
        );
    }
    let page = get(addr, "/?login=failed", &[]);
    assert!(page.text().contains("Login incorrect."));
    // Locked out: the right password is refused alike, through the form
    // and with Basic credentials.
    let right = form(&[("user", ALICE), ("password", ALICE_PW)]);
    let resp = post(addr, "/web/login", &[], &right);
    assert_eq!(resp.header("location"), Some("/?login=failed"));
    assert_eq!(resp.header("set-cookie"), None);
    get(addr, "/files/", &[&alice_auth()]).assert_status(401, "locked out over Basic too");
    server.log_containing("locked out");
}

#[test]
fn an_interrupted_resumable_upload_continues_where_the_server_bytes_end() {
    let (server, addr) = web_server();
    let whole = pseudo_random_bytes(7, 100_000);
    let cookie = login(addr, ALICE, ALICE_PW);
    let csrf = format!("X-CSRF-Token: {}", csrf_of(addr, &cookie));
    let held = || get(addr, "/files/big.bin?partial", &[&cookie]).text();

    // Cut after 40,000 of 100,000 bytes: kept, because it asked to be.
    let mut conn = Conn::open(addr);
    let length = format!("Content-Length: {}", whole.len());
    conn.send(&request(
        "PUT",
        "/files/big.bin?resumable",
        &[&cookie, &csrf, &length],
        &whole[..40_000],
    ));
    drop(conn);
    assert!(
        wait_until(Duration::from_secs(5), || held() == "40000\n"),
        "held: {}",
        held()
    );
    assert!(!server.user_dir(ALICE).join("big.bin").exists());

    // Past the bytes held, or short of them: refused, the partial kept.
    let rest = |offset: usize| {
        let length = format!("Content-Length: {}", whole.len() - offset);
        let target = format!("/files/big.bin?offset={offset}");
        send(
            addr,
            &request("PUT", &target, &[&cookie, &csrf, &length], &whole[offset..]),
        )
    };
    rest(50_000).assert_status(416, "offset past the bytes held");
    rest(10_000).assert_status(409, "offset short of the bytes held");
    let huge = format!("/files/big.bin?offset={}", u64::MAX);
    let over = send(
        addr,
        &request("PUT", &huge, &[&cookie, &csrf, "Content-Length: 1"], b"x"),
    );
    over.assert_status(413, "an offset past any size");
    assert_eq!(held(), "40000\n");

    let done = rest(40_000);
    done.assert_status(201, "the rest");
    assert_eq!(
        done.header("x-ferry-sha256"),
        Some(sha256_hex(&whole).as_str())
    );
    assert_eq!(
        std::fs::read(server.user_dir(ALICE).join("big.bin")).unwrap(),
        whole
    );
    assert_eq!(held(), "0\n", "the partial is used up");
    server.log_containing("continues at byte 40000");

    // Without ?resumable an HTTP upload stays whole or nothing.
    let mut conn = Conn::open(addr);
    conn.send(&request(
        "PUT",
        "/files/gone.bin",
        &[&alice_auth(), &length],
        &whole[..40_000],
    ));
    drop(conn);
    thread::sleep(Duration::from_millis(300));
    let partial = get(addr, "/files/gone.bin?partial", &[&alice_auth()]);
    assert_eq!(partial.text(), "0\n");
}

#[test]
fn folders_in_the_interface_breadcrumbs_new_folder_move_and_delete() {
    let (server, addr) = web_server();
    put_basic(addr, "a.txt", b"aaa");
    let cookie = login(addr, ALICE, ALICE_PW);
    let csrf = csrf_of(addr, &cookie);
    let origin = "Origin: http://127.0.0.1";

    let made = post(
        addr,
        "/web/mkdir",
        &[&cookie, origin],
        &form(&[("csrf", &csrf), ("dir", ""), ("name", "docs")]),
    );
    made.assert_status(303, "new folder");
    assert_eq!(made.header("location"), Some("/"));
    let nested = form(&[("csrf", &csrf), ("dir", "docs"), ("name", "<b>old")]);
    post(addr, "/web/mkdir", &[&cookie], &nested).assert_status(303, "nested folder");
    assert!(server.user_dir(ALICE).join("docs/<b>old").is_dir());
    let again = post(addr, "/web/mkdir", &[&cookie], &nested);
    assert!(again.status >= 400, "an existing folder: {}", again.status);
    let no_token = form(&[("dir", ""), ("name", "x")]);
    post(addr, "/web/mkdir", &[&cookie], &no_token).assert_status(403, "mkdir without the token");

    // Folders first, with a final / and a link to their page.
    let root = get(addr, "/", &[&cookie]).text();
    let folder_at = root.find(">docs/</a>").expect("the folder listed");
    assert!(
        folder_at < root.find(">a.txt</a>").unwrap(),
        "folders first"
    );
    assert!(root.contains("href=\"/?dir=docs\""), "{root}");

    // Move a file into the folder; its page has breadcrumbs.
    let moved = post(
        addr,
        "/web/move",
        &[&cookie],
        &form(&[("csrf", &csrf), ("from", "a.txt"), ("to", "docs/b.txt")]),
    );
    moved.assert_status(303, "move");
    assert_eq!(moved.header("location"), Some("/?dir=docs"));
    assert_eq!(
        std::fs::read(server.user_dir(ALICE).join("docs/b.txt")).unwrap(),
        b"aaa"
    );
    let page = get(addr, "/?dir=docs", &[&cookie]).text();
    assert!(page.contains("<nav class=\"crumbs\""), "{page}");
    assert!(page.contains("<a href=\"/\">Files</a>"), "{page}");
    assert!(
        page.contains("<li aria-current=\"page\">docs</li>"),
        "{page}"
    );
    assert!(page.contains(">&lt;b&gt;old/</a>"), "{page}");
    assert!(
        page.contains("data-dir=\"docs\""),
        "uploads go here: {page}"
    );
    assert!(
        page.contains("href=\"/files/docs/b.txt?download\""),
        "{page}"
    );
    let file = get(addr, "/web/file?name=docs%2Fb.txt", &[&cookie]).text();
    assert!(file.contains("href=\"/?dir=docs\">docs</a>"), "{file}");

    // A script's upload into the folder, with the cookie and the token.
    let headers = [
        cookie.as_str(),
        &format!("X-CSRF-Token: {csrf}"),
        "Content-Length: 2",
    ];
    let put = send(addr, &request("PUT", "/files/docs/c.txt", &headers, b"cc"));
    put.assert_status(201, "upload into the folder");

    // Deleting the folder asks first, then takes everything in it.
    let ask = form(&[("csrf", &csrf), ("name", "docs")]);
    let question = post(addr, "/web/delete", &[&cookie], &ask);
    assert!(
        question.text().contains("everything in it"),
        "{}",
        question.text()
    );
    let yes = form(&[("csrf", &csrf), ("name", "docs"), ("confirm", "yes")]);
    let gone = post(addr, "/web/delete", &[&cookie], &yes);
    gone.assert_status(303, "delete the folder");
    assert!(!server.user_dir(ALICE).join("docs").exists());
}

#[test]
fn requests_made_with_the_cookie_are_logged_for_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let builder = TestServer::builder()
        .args(["--login-delay", "0", "--log-format", "json", "--access-log"])
        .arg(&log);
    let (_server, addr) = start_http(builder);
    let cookie = login(addr, ALICE, ALICE_PW);
    get(addr, "/files/?json", &[&cookie]).assert_status(200, "listing");
    get(addr, "/", &[&cookie]).assert_status(200, "page");
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    let logged = |path: &str| {
        lines().lines().any(|line| {
            line.contains(&format!("\"path\":\"{path}\"")) && line.contains("\"user\":\"alice\"")
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || logged("/files/") && logged("/")),
        "{}",
        lines()
    );
}

#[test]
fn form_bodies_are_bounded_and_may_arrive_in_pieces() {
    let (_server, addr) = web_server();
    // Head first, the body a moment later: the login waits for it.
    let body = form(&[("user", ALICE), ("password", ALICE_PW)]);
    let length = format!("Content-Length: {}", body.len());
    let mut conn = Conn::open(addr);
    conn.send(&request("POST", "/web/login", &[&length], b""));
    thread::sleep(Duration::from_millis(200));
    conn.send(&body.as_bytes()[..5]);
    thread::sleep(Duration::from_millis(100));
    conn.send(&body.as_bytes()[5..]);
    let resp = conn.response();
    resp.assert_status(303, "login in pieces");
    assert!(resp.header("set-cookie").is_some());
    assert!(!resp.says_close(), "keep-alive after a form");
    conn.send(&request("GET", "/healthz", &[], b""));
    conn.response()
        .assert_status(200, "the next request on the connection");

    let big = "x".repeat(5000);
    let resp = post(addr, "/web/login", &[], &big);
    resp.assert_status(413, "a form over 4 KiB");
    assert!(resp.says_close());
    let chunked = request(
        "POST",
        "/web/login",
        &["Transfer-Encoding: chunked"],
        b"3\r\nabc\r\n0\r\n\r\n",
    );
    let resp = send(addr, &chunked);
    resp.assert_status(411, "a chunked form");
    assert!(resp.says_close());
    get(addr, "/web/login", &[]).assert_status(405, "GET of a form's target");
}

#[test]
fn a_file_page_gives_the_sha256_of_a_small_file_put_there_some_other_way() {
    let (server, addr) = web_server();
    let content = b"placed behind the server's back\n";
    std::fs::create_dir_all(server.user_dir(ALICE)).unwrap();
    std::fs::write(server.user_dir(ALICE).join("raw.txt"), content).unwrap();
    let cookie = login(addr, ALICE, ALICE_PW);
    let page = get(addr, "/web/file?name=raw.txt", &[&cookie]).text();
    assert!(page.contains(&sha256_hex(content)), "{page}");
    let big = vec![3u8; 2 * 1024 * 1024];
    std::fs::write(server.user_dir(ALICE).join("big.raw"), &big).unwrap();
    let page = get(addr, "/web/file?name=big.raw", &[&cookie]).text();
    assert!(page.contains("not recorded"), "{page}");
}

#[test]
fn a_new_password_ends_the_web_logins_of_its_user_at_the_next_reload() {
    let (server, addr) = web_server();
    let alice = login(addr, ALICE, ALICE_PW);
    let bob = login(addr, BOB, BOB_PW);
    let users = server.root().join("id_passwd.txt");
    std::fs::write(&users, format!("{ALICE}:a-new-one\n{BOB}:{BOB_PW}\n")).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.log_containing("reloaded 2 user(s)");
    let page = get(addr, "/", &[&alice]);
    assert!(page.text().contains("action=\"/web/login\""), "logged out");
    get(addr, "/files/?json", &[&alice]).assert_status(401, "old login");
    get(addr, "/files/?json", &[&bob]).assert_status(200, "bob's stays");
    login(addr, ALICE, "a-new-one");
}
