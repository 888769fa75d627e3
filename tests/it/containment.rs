//! Clients can only reach regular files inside their own directory.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn names_in(dir: &Path) -> BTreeSet<String> {
    dir_entries(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn path_escape_and_invalid_names_get_553_for_every_file_command() {
    let server = TestServer::start();
    let canary = Canary::plant(server.root());
    let root_before = names_in(server.root());
    let mut c = server.alice();
    c.put("seed", b"seed");

    for name in bad_names() {
        let shown = String::from_utf8_lossy(&name).escape_debug().to_string();
        for verb in ["GET", "VIEW", "DEL"] {
            let mut line = format!("{verb} ").into_bytes();
            line.extend_from_slice(&name);
            let (code, text) = c.cmd_bytes(&line);
            assert_eq!(code, 553, "{verb} {shown:?} answered `{code} {text}`");
        }
        let mut line = b"PUT 4 ".to_vec();
        line.extend_from_slice(&name);
        let (code, text) = c.cmd_bytes(&line);
        assert_eq!(code, 553, "PUT 4 {shown:?} answered `{code} {text}`");
        // A refused PUT expects no payload.
        c.noop();
    }
    // A CR that is not directly before the LF is part of the name: `a\r`.
    c.send_raw(b"GET a\r\r\n");
    assert_eq!(c.read_code(), 553);
    c.send_raw(b"PUT 1 a\r\r\n");
    assert_eq!(c.read_code(), 553);
    c.noop();

    canary.assert_untouched();
    assert_eq!(
        names_in(server.root()),
        root_before,
        "files appeared outside storage"
    );
    assert_eq!(c.list_names(), vec!["seed".to_string()]);
    assert_eq!(
        names_in(&server.user_dir(ALICE)),
        BTreeSet::from(["seed".to_string()])
    );
    for name in names_in(&server.storage()) {
        assert!(
            name == ALICE || name == ".ferry",
            "unexpected entry {name:?} in storage root"
        );
    }
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn name_of_255_bytes_is_allowed() {
    let server = TestServer::start();
    let mut c = server.alice();
    let ascii = "a".repeat(255);
    let multi = format!("{}b", "\u{e9}".repeat(127)); // 254 + 1 bytes
    assert_eq!(multi.len(), 255);
    for name in [&ascii, &multi] {
        c.put(name, name.as_bytes());
        assert_eq!(c.get(name), name.as_bytes());
        assert_eq!(c.view(name).len(), 255);
        assert!(server.user_dir(ALICE).join(name).is_file());
    }
    let mut listed = c.list_names();
    listed.sort();
    let mut want = vec![ascii.clone(), multi.clone()];
    want.sort();
    assert_eq!(listed, want);
    c.expect(&format!("DEL {ascii}"), 250);
    c.expect(&format!("DEL {multi}"), 250);
}

#[test]
fn odd_but_valid_names_are_stored_verbatim_inside_user_dir() {
    let server = TestServer::start();
    let canary = Canary::plant(server.root());
    let mut c = server.alice();
    let names = [
        "...",
        ".. ",
        " ..",
        ". ",
        "..\\x",
        "..\\..\\canary",
        "~",
        "-rf",
        ".ferry",
        "\u{65e5}\u{672c}\u{8a9e}",
        "caf\u{e9}",   // NFC
        "cafe\u{301}", // NFD: a different name, never normalised
        "*",
        "$HOME",
    ];
    for (i, name) in names.iter().enumerate() {
        c.put(name, format!("{i}").as_bytes());
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(c.get(name), format!("{i}").as_bytes(), "GET {name:?}");
        let path = server.user_dir(ALICE).join(name);
        assert_eq!(
            fs::read(&path).unwrap(),
            format!("{i}").as_bytes(),
            "{name:?}"
        );
    }
    let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    assert_eq!(names_in(&server.user_dir(ALICE)), want);
    assert_eq!(c.list_names().into_iter().collect::<BTreeSet<_>>(), want);
    canary.assert_untouched();
}

/// Sends `PUT` over a non-regular file; returns the first reply code. If the
/// server (wrongly) accepts, the payload is sent so its effect can be checked.
fn put_over(c: &mut Client, name: &str, payload: &[u8]) -> (u16, String) {
    c.send_line(&format!("PUT {} {name}", payload.len()));
    let first = c.read_reply();
    if first.0 == 150 {
        c.send_raw(payload);
        let _ = c.read_reply();
    }
    first
}

#[test]
fn symlink_to_outside_file_is_never_followed() {
    let server = TestServer::start();
    let canary = Canary::plant(server.root());
    let mut c = server.alice();
    c.put("seed", b"seed");
    let link = server.user_dir(ALICE).join("link");
    symlink(&canary.path, &link).unwrap();

    c.expect("GET link", 550);
    c.expect("VIEW link", 550);
    assert_eq!(c.list_names(), vec!["seed".to_string()]);

    let first = put_over(&mut c, "link", b"PWNED");
    canary.assert_untouched();
    assert_eq!(
        first.0, 550,
        "PUT over a symlink answered `{} {}`",
        first.0, first.1
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    c.expect("DEL link", 550);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    canary.assert_untouched();
    c.noop();
}

#[test]
fn symlink_swapped_in_during_upload_is_not_written_through() {
    let server = TestServer::start();
    let canary = Canary::plant(server.root());
    let mut c = server.alice();
    c.put("seed", b"seed");
    c.start_put("swap", 10);
    c.send_raw(b"01234");
    let link = server.user_dir(ALICE).join("swap");
    symlink(&canary.path, &link).unwrap();
    c.send_raw(b"56789");
    // Replacing the link itself (226) or refusing (451) are both safe;
    // writing into its target is not.
    let (code, text) = c.read_reply();
    assert!(
        code == 226 || code == 451,
        "upload over a swapped-in symlink answered `{code} {text}`"
    );
    canary.assert_untouched();
    if code == 226 {
        let meta = fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(fs::read(&link).unwrap(), b"0123456789");
    }
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn dangling_symlink_is_not_written_through() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("seed", b"seed");
    let target = server.root().join("created-through-link");
    let link = server.user_dir(ALICE).join("dangling");
    symlink(&target, &link).unwrap();

    c.expect("GET dangling", 550);
    c.expect("VIEW dangling", 550);
    let first = put_over(&mut c, "dangling", b"PWNED");
    assert!(!target.exists(), "PUT wrote through a dangling symlink");
    assert_eq!(
        first.0, 550,
        "PUT over a symlink answered `{} {}`",
        first.0, first.1
    );
    c.expect("DEL dangling", 550);
    assert!(fs::symlink_metadata(&link).is_ok());
    assert_eq!(c.list_names(), vec!["seed".to_string()]);
}

#[test]
fn symlink_to_directory_and_subdirectory_are_not_regular_files() {
    let server = TestServer::start();
    let outside = server.root().join("outside_dir");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret.txt"), b"secret").unwrap();
    let mut c = server.alice();
    c.put("seed", b"seed");
    symlink(&outside, server.user_dir(ALICE).join("dirlink")).unwrap();
    let sub = server.user_dir(ALICE).join("subdir");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("inner"), b"inner").unwrap();

    for name in ["dirlink", "subdir"] {
        c.expect(&format!("GET {name}"), 550);
        c.expect(&format!("VIEW {name}"), 550);
        c.expect(&format!("DEL {name}"), 550);
        let first = put_over(&mut c, name, b"PWNED");
        assert_eq!(
            first.0, 550,
            "PUT {name} answered `{} {}`",
            first.0, first.1
        );
    }
    // A folder is listed as one (its name ends with `/`), a symlink never.
    assert_eq!(
        c.list_names(),
        vec!["seed".to_string(), "subdir/".to_string()]
    );
    assert_eq!(
        names_in(&outside),
        BTreeSet::from(["secret.txt".to_string()])
    );
    assert_eq!(fs::read(outside.join("secret.txt")).unwrap(), b"secret");
    assert!(sub.is_dir());
    assert_eq!(fs::read(sub.join("inner")).unwrap(), b"inner");
    assert!(
        fs::symlink_metadata(server.user_dir(ALICE).join("dirlink"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn fifo_in_user_dir_is_refused_promptly_and_server_keeps_serving() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("seed", b"seed");
    let fifo = server.user_dir(ALICE).join("fifo");
    let st = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo failed");
    // A server that blocks opening the FIFO would stall here: fail fast.
    c.set_read_timeout(Duration::from_secs(3));

    for line in ["GET fifo", "VIEW fifo"] {
        let t = Instant::now();
        c.expect(line, 550);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{line} took {:?}",
            t.elapsed()
        );
        // Another client is served meanwhile.
        let mut other = server.bob();
        other.set_read_timeout(Duration::from_secs(3));
        other.noop();
    }
    let t = Instant::now();
    assert_eq!(c.list_names(), vec!["seed".to_string()]);
    assert!(t.elapsed() < Duration::from_secs(2));
    let first = put_over(&mut c, "fifo", b"data");
    assert_eq!(
        first.0, 550,
        "PUT over a FIFO answered `{} {}`",
        first.0, first.1
    );
    c.expect("DEL fifo", 550);
    assert!(fs::symlink_metadata(&fifo).is_ok());
    c.noop();
}

#[test]
fn users_are_isolated_from_each_other() {
    let server = TestServer::start();
    let mut alice = server.alice();
    let mut bob = server.bob();
    alice.put("secret.txt", b"alice data");
    alice.put("only-alice", b"a");

    bob.expect("GET secret.txt", 550);
    bob.expect("VIEW secret.txt", 550);
    bob.expect("DEL secret.txt", 550);
    bob.expect("GET only-alice", 550);
    bob.send_line("LIST");
    assert_eq!(bob.read_reply(), (150, "0".to_string()));

    // Same name, independent files.
    bob.put("secret.txt", b"bob data!");
    assert_eq!(alice.get("secret.txt"), b"alice data");
    assert_eq!(bob.get("secret.txt"), b"bob data!");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("secret.txt")).unwrap(),
        b"alice data"
    );
    assert_eq!(
        fs::read(server.user_dir(BOB).join("secret.txt")).unwrap(),
        b"bob data!"
    );
    assert_eq!(bob.list_names(), vec!["secret.txt".to_string()]);

    bob.expect("DEL secret.txt", 250);
    assert_eq!(alice.get("secret.txt"), b"alice data");
    assert_eq!(
        alice.list_names(),
        vec!["only-alice".to_string(), "secret.txt".to_string()]
    );
    // Another user's directory is not reachable by name either.
    bob.expect("GET ../alice/secret.txt", 553);
    bob.expect("GET ../alice", 553);
}

#[test]
fn device_files_and_links_to_them_are_refused() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("seed", b"seed");
    let dir = server.user_dir(ALICE);
    symlink("/dev/zero", dir.join("zero-link")).unwrap();
    // A real character device (like /dev/zero) where the system allows it.
    let have_device = Command::new("mknod")
        .arg(dir.join("zero-dev"))
        .args(["c", "1", "5"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let mut names = vec!["zero-link"];
    if have_device {
        names.push("zero-dev");
    }
    c.set_read_timeout(Duration::from_secs(3));
    for name in names {
        for verb in ["GET", "VIEW", "DEL"] {
            let t = Instant::now();
            c.expect(&format!("{verb} {name}"), 550);
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        let first = put_over(&mut c, name, b"data");
        assert_eq!(
            first.0, 550,
            "PUT {name} answered `{} {}`",
            first.0, first.1
        );
    }
    assert_eq!(c.list_names(), vec!["seed".to_string()]);
}
