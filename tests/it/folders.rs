//! Folders: paths on both fronts, containment over paths, moves, copies,
//! trees, listings of large folders, and quotas across the tree.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

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
    // `Depth: 0` removes only an empty folder; a DELETE of a folder is
    // otherwise of all of it (RFC 4918 §9.6.1: no Depth is infinity).
    let refused = http(addr, &alice_with("DELETE", "/files/docs/", &["Depth: 0"]));
    assert_eq!(
        (refused.status, refused.text().as_str()),
        (409, "folder not empty\n")
    );
    assert_eq!(status(&alice_req("DELETE", "/files/docs")), 204);
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
    // A folder is copied whole, to a new folder only.
    let copied = http(addr, &alice_with("COPY", "/files/a", &[&dest("z")]));
    assert_eq!(
        (copied.status, copied.header("X-Ferry-SHA256")),
        (201, None)
    );
    assert_eq!(http(addr, &alice_req("GET", "/files/z/b/f")).body, b"data");
    // Over an existing folder, `Overwrite: T` (the default) removes it
    // first, whatever it holds (RFC 4918 §9.8.4).
    assert_eq!(status(&put_req("/files/z/only-in-z", b"gone")), 201);
    assert_eq!(status(&alice_with("COPY", "/files/a", &[&dest("z")])), 204);
    assert_eq!(status(&alice_req("GET", "/files/z/only-in-z")), 404);
    assert_eq!(http(addr, &alice_req("GET", "/files/z/b/f")).body, b"data");
    // Never by removing the source's own folder.
    assert_eq!(
        status(&alice_with("MOVE", "/files/z/b", &[&dest("z")])),
        403
    );
    assert_eq!(http(addr, &alice_req("GET", "/files/z/b/f")).body, b"data");
    assert_eq!(
        status(&alice_with(
            "COPY",
            "/files/a",
            &[&dest("z"), "Overwrite: F"]
        )),
        412
    );
    assert_eq!(
        status(&alice_with("COPY", "/files/a", &[&dest("a/b/a")])),
        403
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

/// A tree `a/b/c/d/f` for alice, made over the protocol; returns the
/// client.
fn deep_tree(server: &TestServer) -> Client {
    let mut c = server.alice();
    for folder in ["a", "a/b", "a/b/c", "a/b/c/d"] {
        c.expect(&format!("MKDIR {folder}"), 257);
    }
    c.put("a/b/c/d/f", b"inside");
    c
}

#[test]
fn traversal_in_any_component_is_refused() {
    let server = TestServer::start();
    server.plant_file(BOB, "canary", b"bob's canary");
    let mut c = deep_tree(&server);
    for bad in [
        "..",
        "../bob/canary",
        "a/../../bob/canary",
        "a/b/../../../bob/canary",
        "a/./b",
        "a/b/c/d/..",
        "./a",
        "a//b",
        "a/b/",
        "/",
        "//a",
        "a/b/c/d/f/",
        "a/\u{1}/b",
    ] {
        for verb in [
            "GET", "VIEW", "DEL", "HASH", "STAT", "LIST", "TREE", "MKDIR", "RMDIR", "RMTREE",
            "FROM", "MOVE", "COPY", "PARTIAL",
        ] {
            let (code, text) = c.cmd(&format!("{verb} {bad}"));
            assert_eq!(code, 553, "{verb} {bad:?} answered `{code} {text}`");
        }
        let (code, text) = c.cmd(&format!("PUT 4 {bad}"));
        assert_eq!(code, 553, "PUT {bad:?} answered `{code} {text}`");
    }
    // A leading `/` is the user's own root, never the server's.
    assert_eq!(c.get("/a/b/c/d/f"), b"inside");
    assert_eq!(c.cmd("GET /bob/canary").1, "no such folder");
    assert_eq!(c.cmd("GET /etc/passwd").1, "no such folder");
    // Path limits: 64 names, 4096 bytes (a line holds less than that).
    let deep = vec!["x"; 65].join("/");
    assert_eq!(c.cmd(&format!("STAT {deep}")).0, 553);
    let deepest = vec!["x"; 64].join("/");
    assert_eq!(c.cmd(&format!("STAT {deepest}")).1, "no such folder");
    assert_eq!(
        fs::read(server.user_dir(BOB).join("canary")).unwrap(),
        b"bob's canary"
    );
}

#[test]
fn a_symlinked_folder_at_any_depth_is_never_followed() {
    let server = TestServer::start();
    let outside = server.root().join("outside");
    // The same tree outside alice's directory, with a canary everywhere.
    fs::create_dir_all(outside.join("b/c/d")).unwrap();
    for at in ["", "b", "b/c", "b/c/d"] {
        fs::write(outside.join(at).join("f"), b"CANARY").unwrap();
    }
    let mut c = deep_tree(&server);
    let home = server.user_dir(ALICE);
    for depth in 1..=4 {
        let folders = ["a", "a/b", "a/b/c", "a/b/c/d"];
        let swapped = home.join(folders[depth - 1]);
        let aside = home.join("aside");
        fs::rename(&swapped, &aside).unwrap();
        let target = outside.join(["", "b", "b/c", "b/c/d"][depth - 1]);
        symlink(&target, &swapped).unwrap();
        let through = "a/b/c/d/f";
        let folder = folders[3];
        for line in [
            format!("GET {through}"),
            format!("VIEW {through}"),
            format!("HASH {through}"),
            format!("STAT {through}"),
            format!("DEL {through}"),
            format!("LIST {folder}"),
            format!("TREE {folder}"),
            format!("MKDIR {folder}/new"),
            format!("RMTREE {folder}"),
            format!("RMDIR {folder}"),
        ] {
            let (code, text) = c.cmd(&line);
            assert_eq!(
                (code, text.as_str()),
                (550, "not a regular file"),
                "depth {depth}: {line}"
            );
        }
        let (code, text) = c.cmd(&format!("PUT 4 {through}"));
        assert_eq!(
            (code, text.as_str()),
            (550, "not a regular file"),
            "depth {depth}: PUT"
        );
        c.cmd(&format!("FROM {through}"));
        assert_eq!(c.cmd("MOVE moved").0, 550, "depth {depth}: MOVE out");
        c.cmd("FROM moved-not-there");
        c.put("here", b"here");
        c.cmd("FROM here");
        assert_eq!(
            c.cmd(&format!("MOVE {folder}/here")).0,
            550,
            "depth {depth}: MOVE in"
        );
        c.expect("DEL here", 250);
        // The tree listing leaves the link out; nothing outside changed.
        let tree = listed(&mut c, "TREE");
        assert!(
            tree.keys()
                .all(|p| !p.ends_with("/f") || p.starts_with("aside/")),
            "depth {depth}: {tree:?}"
        );
        fs::remove_file(&swapped).unwrap();
        fs::rename(&aside, &swapped).unwrap();
        for at in ["", "b", "b/c", "b/c/d"] {
            assert_eq!(fs::read(outside.join(at).join("f")).unwrap(), b"CANARY");
        }
        assert!(!outside.join("b/c/d/new").exists());
    }
    assert_eq!(c.get("a/b/c/d/f"), b"inside");
}

#[test]
fn a_folder_swapped_for_a_symlink_mid_upload_does_not_redirect_it() {
    let server = TestServer::start();
    let outside = server.root().join("outside");
    fs::create_dir(&outside).unwrap();
    let mut c = deep_tree(&server);
    let home = server.user_dir(ALICE);
    let data = pseudo_random_bytes(7, 300_000);
    c.start_put("a/b/up", data.len());
    c.send_raw(&data[..100_000]);
    // While the upload runs, its folder moves away and a symlink to the
    // outside takes its name.
    fs::rename(home.join("a/b"), home.join("a/moved")).unwrap();
    symlink(&outside, home.join("a/b")).unwrap();
    c.send_raw(&data[100_000..]);
    let (code, text) = c.read_reply();
    assert_eq!(code, 226, "{text}");
    // It landed in the folder it began in, wherever that is now.
    assert_eq!(fs::read(home.join("a/moved/up")).unwrap(), data);
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing outside"
    );
    assert_eq!(c.cmd("GET a/b/up").1, "not a regular file");
    assert_eq!(c.get("a/moved/up"), data);
    assert_eq!(
        c.cmd("HASH a/moved/up").1,
        format!("sha256={}", sha256_hex(&data))
    );
}

#[test]
fn moves_refuse_into_itself_onto_itself_and_other_users() {
    let server = TestServer::start();
    server.plant_file(BOB, "mine", b"bob's");
    let mut c = deep_tree(&server);
    c.expect("FROM a", 350);
    assert_eq!(
        c.cmd("MOVE a/b/c/a").1,
        "cannot move or copy a folder into itself"
    );
    c.expect("FROM a/b", 350);
    assert_eq!(c.cmd("MOVE a/b").1, "source and destination are the same");
    assert_eq!(c.cmd("MOVE x").1, "send FROM first", "FROM is used up");
    c.expect("FROM a/b/c/d/f", 350);
    assert_eq!(
        c.cmd("MOVE /bob/mine").1,
        "no such folder",
        "alice's own /bob"
    );
    assert_eq!(c.cmd("FROM ../bob/mine").0, 553);
    assert_eq!(c.cmd("MOVE ../bob/stolen").0, 553);
    assert_eq!(
        fs::read(server.user_dir(BOB).join("mine")).unwrap(),
        b"bob's"
    );
    assert!(!server.user_dir(BOB).join("stolen").exists());
    // A real move: a folder with its content and its digest record.
    c.expect("FROM a/b", 350);
    c.expect("MOVE top", 250);
    assert_eq!(c.get("top/c/d/f"), b"inside");
    let stat = c.expect("STAT top/c/d/f", 213);
    assert!(stat.contains(&sha256_hex(b"inside")), "{stat}");
    // A file moved keeps its record too (its change time moved).
    c.expect("FROM top/c/d/f", 350);
    c.expect("MOVE g", 250);
    let stat = c.expect("STAT g", 213);
    assert!(stat.contains(&sha256_hex(b"inside")), "{stat}");
    // Replacing needs REPLACE, and then only a file by a file.
    c.put("h", b"h");
    c.expect("FROM g", 350);
    assert_eq!(c.cmd("MOVE h").1, "already exists");
    c.expect("REPLACE", 200);
    c.expect("FROM g", 350);
    c.expect("MOVE h", 250);
    assert_eq!(c.get("h"), b"inside");
    c.expect("REPLACE", 200);
    c.expect("FROM h", 350);
    assert_eq!(c.cmd("MOVE top").1, "already exists", "a folder by a file");
    // COPY: a file whole, with its digest; a folder to a new folder.
    c.expect("FROM h", 350);
    assert_eq!(
        c.cmd("COPY top/h2").1,
        format!("copied 6 sha256={}", sha256_hex(b"inside"))
    );
    assert_eq!(c.get("top/h2"), b"inside");
    c.expect("FROM top", 350);
    assert_eq!(c.cmd("COPY top/c/top").0, 553, "into itself");
    c.expect("FROM top", 350);
    assert_eq!(c.cmd("COPY top2").1, "copied 1 files, 6 bytes");
    assert_eq!(
        listed(&mut c, "TREE top2").into_iter().collect::<Vec<_>>(),
        [
            ("c/".to_owned(), 0),
            ("c/d/".to_owned(), 0),
            ("h2".to_owned(), 6)
        ]
    );
    c.expect("REPLACE", 200);
    c.expect("FROM top", 350);
    assert_eq!(
        c.cmd("COPY top2").1,
        "already exists",
        "never over a folder"
    );
}

#[test]
fn quotas_count_the_whole_tree() {
    let server = TestServer::builder()
        .args(["--user-quota", "100", "--user-max-files", "4"])
        .start();
    let mut c = server.alice();
    c.expect("MKDIR a", 257);
    c.expect("MKDIR a/b", 257);
    c.put("a/one", &[1; 40]);
    c.put("a/b/two", &[2; 40]);
    assert_eq!(c.cmd("PUT 30 three").0, 552, "40 + 40 + 30 > 100");
    c.put("three", &[3; 20]);
    // A copy counts as an upload of its size.
    c.expect("FROM three", 350);
    assert_eq!(c.cmd("COPY a/b/copy").0, 552);
    // Moving changes nothing; removing a tree gives its bytes back.
    c.expect("FROM a/b", 350);
    c.expect("MOVE b", 250);
    assert_eq!(c.cmd("PUT 1 x").0, 552);
    c.expect("RMTREE b", 250);
    assert!(
        wait_until(Duration::from_secs(5), || c.cmd("PUT 30 x").0 == 150),
        "the removed tree's bytes come back"
    );
    c.send_raw(&[0; 30]);
    assert_eq!(c.read_reply().0, 226);
    c.put("y", b"y");
    assert_eq!(
        c.cmd("PUT 1 z").1,
        "quota exceeded (at most 4 files per user)"
    );
}

#[test]
fn a_removed_tree_a_crashed_server_left_is_emptied_by_the_next() {
    let server = TestServer::start();
    drop(server.alice());
    let instances = server.storage().join(".ferry/instances");
    let id = fs::read_dir(&instances)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    // What a crash in the middle of emptying a removed tree leaves.
    let left = server
        .tmp_dir()
        .join(format!("{}-trash-7", id.to_string_lossy()));
    fs::create_dir_all(left.join("a/b")).unwrap();
    for i in 0..300 {
        fs::write(left.join(format!("a/b/{i}")), b"x").unwrap();
    }
    let server = server.crash_and_restart();
    assert!(
        wait_until(Duration::from_secs(5), || server.tmp_entries().is_empty()),
        "left: {:?}",
        server.tmp_entries()
    );
}

/// `ferry` against `server` as alice, in `work`.
fn ferry(server: &TestServer, work: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    for var in ["FERRY_SERVER", "FERRY_USER", "FERRY_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", work)
        .env("FERRY_PASSWORD", ALICE_PW)
        .current_dir(work)
        .args([
            "--server",
            &server.addr().to_string(),
            "--user",
            ALICE,
            "--quiet",
        ]);
    cmd
}

#[track_caller]
fn ferry_ok(cmd: &mut std::process::Command) -> String {
    let out = run_command_to_exit(cmd, Duration::from_secs(120));
    assert_eq!(
        out.status.code(),
        Some(0),
        "ferry failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Every file under `dir`, by path relative to it, with its content.
fn local_tree(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

#[test]
fn put_r_then_get_r_of_a_tree_of_1000_files_is_identical() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("up").join("photos");
    let mut rng = Rng::new(17);
    write_photo_tree(&tree, &mut rng, 3000);
    ferry_ok(ferry(&server, work).args(["put", "-r"]).arg(&tree));
    // On the server, the same tree, each file with its digest.
    let mut c = server.alice();
    let listed = listed(&mut c, "TREE photos");
    assert_eq!(listed.keys().filter(|p| !p.ends_with('/')).count(), 1000);
    assert_eq!(listed.keys().filter(|p| p.ends_with('/')).count(), 110);
    fs::create_dir(work.join("down")).unwrap();
    ferry_ok(ferry(&server, work).args(["get", "-r", "photos", "-d", "down"]));
    let sent = local_tree(&tree);
    assert_eq!(sent.len(), 1000);
    assert!(
        local_tree(&work.join("down/photos")) == sent,
        "the trees differ"
    );
    // ls shows folders with a final /; -R the tree.
    let top = ferry_ok(ferry(&server, work).args(["ls", "photos"]));
    assert!(
        top.lines().all(|l| l.ends_with('/')) && top.lines().count() == 10,
        "{top}"
    );
    let deep = ferry_ok(ferry(&server, work).args(["ls", "-R", "photos/year 3"]));
    assert_eq!(deep.lines().count(), 110, "{deep}");
}

#[test]
fn the_client_makes_moves_copies_and_removes_folders() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    fs::write(work.join("f"), b"content").unwrap();
    ferry_ok(ferry(&server, work).args(["mkdir", "-p", "a/b/c"]));
    ferry_ok(ferry(&server, work).args(["mkdir", "-p", "a/b"]));
    ferry_ok(ferry(&server, work).args(["put", "f", "-o", "a/b/c/f"]));
    ferry_ok(ferry(&server, work).args(["cp", "a/b/c/f", "a/g"]));
    ferry_ok(ferry(&server, work).args(["mv", "a/b", "b"]));
    let out = run_command_to_exit(
        ferry(&server, work).args(["mv", "a/g", "b/c/f"]),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "replacing needs --force: {}",
        out.stderr
    );
    ferry_ok(ferry(&server, work).args(["mv", "--force", "a/g", "b/c/f"]));
    let out = run_command_to_exit(
        ferry(&server, work).args(["rmdir", "b"]),
        Duration::from_secs(60),
    );
    assert!(out.stderr.contains("folder not empty"), "{}", out.stderr);
    ferry_ok(ferry(&server, work).args(["rm", "-r", "b"]));
    ferry_ok(ferry(&server, work).args(["rmdir", "a"]));
    let mut c = server.alice();
    assert!(listed(&mut c, "TREE").is_empty());
}

#[test]
fn an_empty_segment_in_a_url_is_refused_not_dropped() {
    let (server, addr) = http_server();
    assert_eq!(http(addr, &put_req("/files/x", b"x")).status, 201);
    for target in ["/files//x", "/files/a//x", "/files//"] {
        assert_eq!(
            http(addr, &alice_req("GET", target)).status,
            400,
            "{target}"
        );
    }
    drop(server);
}

#[test]
fn a_folder_of_100000_entries_is_listed_while_another_session_is_served_promptly() {
    const FILES: usize = 100_000;
    let server = TestServer::start();
    let mut alice = server.alice();
    alice.expect("MKDIR big", 257);
    alice.expect("MKDIR big/sub", 257);
    alice.put("big/sub/deep", b"deep");
    plant_empty_files(
        &server.user_dir(ALICE).join("big"),
        (0..FILES).map(|i| format!("file-{i:06}")),
    );
    let _measuring = timing_sensitive();
    let mut bob = server.bob();
    // What this machine gives a NOOP with nothing else to do, over as many
    // probes: on a machine loaded by others, the bound grows with it.
    let mut baseline = Duration::ZERO;
    for _ in 0..200 {
        let t = Instant::now();
        bob.noop();
        baseline = baseline.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    let bound = Duration::from_millis(20).max(baseline * 2);
    let addr = server.addr();
    let reader = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.set_read_timeout(Duration::from_secs(60));
        c.login(ALICE, ALICE_PW);
        let list = parse_listing(&{
            c.send_line("LIST big");
            c.read_list_blocks()
        });
        let tree = parse_listing(&{
            c.send_line("TREE big");
            c.read_list_blocks()
        });
        (list.len(), tree.len())
    });
    let mut samples = Vec::new();
    let started = Instant::now();
    while !reader.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "listings too slow"
        );
        let t = Instant::now();
        bob.noop();
        samples.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    // The folder `sub/` is an entry of its own; the tree has its file too.
    assert_eq!(reader.join().unwrap(), (FILES + 1, FILES + 2));
    samples.sort();
    let probes = samples.len();
    assert!(probes >= 10, "only {probes} NOOPs while the listings ran");
    // The 99th percentile: a loop that stalls shows in many probes, a
    // preemption by another process on a shared machine in one or two.
    let (worst, p99) = (samples[probes - 1], samples[probes * 99 / 100]);
    eprintln!(
        "LIST and TREE of {FILES} in {:?}; NOOP 99% under {p99:?}, worst {worst:?} of {probes}",
        started.elapsed()
    );
    assert!(
        p99 < bound && worst < Duration::from_millis(250),
        "NOOPs took up to {worst:?}, 99% under {p99:?} ({probes} probes; alone at most {baseline:?})"
    );

    // Removing it: gone at once, emptied in the background, a bounded
    // number of entries a turn, while bob is still served promptly.
    alice.expect("RMTREE big", 250);
    assert_eq!(alice.cmd("STAT big").1, "no such file");
    let mut samples = Vec::new();
    let started = Instant::now();
    while !server.tmp_entries().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "removal too slow"
        );
        let t = Instant::now();
        bob.noop();
        samples.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    samples.sort();
    let probes = samples.len();
    let (worst, median) = (samples[probes - 1], samples[probes / 2]);
    eprintln!(
        "{FILES} removed in {:?}; NOOP median {median:?}, worst {worst:?} of {probes}",
        started.elapsed()
    );
    assert!(
        probes >= 10,
        "only {probes} NOOPs while the tree was removed"
    );
    // Unlinks wait for the file system's journal now and then, longer
    // while other programs write to the same disk (on the shared
    // development VM a run saw 99% of NOOPs under 6.5 ms, another under
    // 61 ms), so the tail is the disk's; that the removal's own steps are
    // bounded shows in the typical probe. A removal in one go would hold
    // every NOOP for seconds.
    assert!(
        median < bound && worst < Duration::from_secs(2),
        "NOOPs took up to {worst:?}, median {median:?} ({probes} probes; alone at most {baseline:?})"
    );
}

#[test]
fn concurrent_moves_uploads_and_deletes_in_one_tree_leave_whole_files() {
    use std::sync::{Arc, Mutex};
    const ROUNDS: usize = 60;
    let server = TestServer::start();
    let mut setup = server.alice();
    setup.expect("MKDIR t", 257);
    setup.expect("MKDIR t/x", 257);
    let addr = server.addr();
    // Every content ever sent, by its digest.
    let sent: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let client = move || {
        let mut c = Client::connect(addr);
        c.set_read_timeout(Duration::from_secs(30));
        c.login(ALICE, ALICE_PW);
        c
    };
    let uploader = |seed: u64| {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            let mut c = client();
            let mut rng = Rng::new(seed);
            for round in 0..ROUNDS {
                let len = rng.range(1, 20_000) as usize;
                let data = rng.bytes(len);
                let digest = sha256_hex(&data);
                sent.lock().unwrap().insert(digest.clone(), data.clone());
                let name = format!("f{}", round % 4);
                // The folder is t/x or t/y, whichever the mover left.
                for folder in ["t/x", "t/y", "t/x"] {
                    let (code, text) = c.put_reply(format!("{folder}/{name}").as_bytes(), &data);
                    match code {
                        226 => {
                            assert_eq!(text, format!("stored {len} sha256={digest}"));
                            break;
                        }
                        550 => continue,
                        _ => panic!("PUT answered {code} {text}"),
                    }
                }
            }
        })
    };
    let uploaders = [uploader(1), uploader(2)];
    let mover = std::thread::spawn(move || {
        let mut c = client();
        for _ in 0..ROUNDS {
            for (from, to) in [("t/x", "t/y"), ("t/y", "t/x")] {
                c.expect(&format!("FROM {from}"), 350);
                let (code, text) = c.cmd(&format!("MOVE {to}"));
                assert!(code == 250 || code == 550, "MOVE answered {code} {text}");
            }
        }
    });
    let deleter = std::thread::spawn(move || {
        let mut c = client();
        for round in 0..ROUNDS {
            for folder in ["t/x", "t/y"] {
                let (code, text) = c.cmd(&format!("DEL {folder}/f{}", round % 4));
                assert!(code == 250 || code == 550, "DEL answered {code} {text}");
            }
        }
    });
    for thread in uploaders {
        thread.join().unwrap();
    }
    mover.join().unwrap();
    deleter.join().unwrap();
    // Every file left is one whole upload, its digest what HASH says.
    let sent = sent.lock().unwrap();
    let tree = listed(&mut setup, "TREE t");
    let folders: Vec<_> = tree.keys().filter(|p| p.ends_with('/')).collect();
    assert_eq!(folders.len(), 1, "one folder, x or y: {tree:?}");
    for (path, size) in tree.iter().filter(|(p, _)| !p.ends_with('/')) {
        let data = setup.get(&format!("t/{path}"));
        assert_eq!(data.len() as u64, *size);
        let digest = sha256_hex(&data);
        assert!(
            sent.get(&digest) == Some(&data),
            "t/{path} is no upload's content"
        );
        assert_eq!(
            setup.cmd(&format!("HASH t/{path}")).1,
            format!("sha256={digest}")
        );
    }
    server.assert_tmp_empty_within(Duration::from_secs(5));
}

#[test]
fn remote_wildcards_name_the_matching_files_of_a_folder() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let mut c = server.alice();
    c.expect("MKDIR photos", 257);
    c.expect("MKDIR photos/x.jpg.d", 257);
    for name in ["a.jpg", "b.jpg", "c.png"] {
        c.put(&format!("photos/{name}"), name.as_bytes());
    }
    ferry_ok(ferry(&server, work).args(["get", "photos/*.jpg"]));
    assert_eq!(fs::read(work.join("a.jpg")).unwrap(), b"a.jpg");
    assert_eq!(fs::read(work.join("b.jpg")).unwrap(), b"b.jpg");
    assert!(!work.join("c.png").exists());
    let out = ferry_ok(ferry(&server, work).args(["hash", "photos/?.png"]));
    assert!(out.contains("photos/c.png"), "{out}");
    let out = run_command_to_exit(
        ferry(&server, work).args(["rm", "photos/*.gif"]),
        Duration::from_secs(60),
    );
    assert!(
        out.stderr.contains("no remote file matches"),
        "{}",
        out.stderr
    );
    ferry_ok(ferry(&server, work).args(["rm", "photos/*"]));
    assert_eq!(
        listed(&mut c, "LIST photos").keys().collect::<Vec<_>>(),
        ["x.jpg.d/"]
    );
}

#[test]
fn the_shell_has_a_remote_folder_cd_pwd_and_lls() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    fs::write(work.join("f.txt"), b"in a folder").unwrap();
    fs::create_dir(work.join("tree")).unwrap();
    fs::write(work.join("tree/t"), b"t").unwrap();
    let mut cmd = ferry(&server, work);
    cmd.arg("shell").stdin(std::process::Stdio::piped());
    let script = "mkdir -p a/b\ncd a/b\npwd\nput f.txt\nput -r tree\nls\ncd ..\npwd\ncd /nope\nls -R\nlls\nget b/f.txt -o copy.txt\n";
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the failed cd\n{stdout}\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "/a/b", "{stdout}");
    assert!(lines.contains(&"/a"), "{stdout}");
    assert!(
        stdout.contains("f.txt") && stdout.contains("tree/"),
        "{stdout}"
    );
    assert!(stdout.contains("b/tree/t"), "ls -R: {stdout}");
    assert!(
        lines.contains(&"tree/") && lines.contains(&"f.txt"),
        "lls: {stdout}"
    );
    assert!(stderr.contains("cd:"), "{stderr}");
    assert_eq!(
        fs::read(work.join("copy.txt")).unwrap_or_default(),
        b"in a folder",
        "{stdout}\n{stderr}"
    );
    let mut c = server.alice();
    assert_eq!(c.get("a/b/tree/t"), b"t");
}
