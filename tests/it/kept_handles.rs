//! Small files' handles kept between downloads (issue 22): a name changed
//! behind the server's back after a download is served as it is now, and
//! one swapped for a FIFO, a device or a symlink is still refused without
//! being opened, over both fronts; the server's own deletes release the
//! handle; the number kept is bounded.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::common::*;

/// GET of `name` over the line protocol and over HTTP (one keep-alive
/// connection): the bytes, or the refusal's code and status.
fn both_fronts(
    c: &mut Client,
    conn: &mut Conn,
    name: &str,
) -> (Result<Vec<u8>, u16>, u16, Vec<u8>) {
    let line = c.get_reply(name.as_bytes()).map_err(|(code, _)| code);
    conn.send(&alice_req("GET", &file_target(name)));
    let resp = conn.response();
    (line, resp.status, resp.body)
}

/// Replaces `name` in `dir` atomically by what `make` creates under a
/// staging name (as another program would: a rename over it).
fn swap(dir: &Path, name: &str, make: impl FnOnce(&Path)) {
    let staged = dir.join(format!(".{name}.staged"));
    make(&staged);
    fs::rename(&staged, dir.join(name)).unwrap();
}

/// The descriptors `server` holds that lead to `path`, or to the file
/// that had that name (the kernel shows it as `path (deleted)`).
fn held(server: &TestServer, path: &Path) -> usize {
    let deleted = format!("{} (deleted)", path.display());
    server
        .open_descriptors()
        .iter()
        .filter(|fd| {
            fs::read_link(format!("/proc/{}/fd/{fd}", server.pid()))
                .is_ok_and(|to| to == path || to.as_os_str() == deleted.as_str())
        })
        .count()
}

#[test]
fn a_file_replaced_after_a_download_is_served_as_it_is_now() {
    let (server, http) = http_server();
    let mut c = server.alice();
    let mut conn = Conn::open(http);
    let dir = server.user_dir(ALICE);
    c.put("f", b"first version");
    for _ in 0..2 {
        let (line, status, body) = both_fronts(&mut c, &mut conn, "f");
        assert_eq!(line.unwrap(), b"first version");
        assert_eq!((status, body.as_slice()), (200, &b"first version"[..]));
    }
    // Renamed over by another program: a new inode.
    swap(&dir, "f", |p| {
        fs::write(p, b"second, longer version").unwrap()
    });
    let (line, status, body) = both_fronts(&mut c, &mut conn, "f");
    assert_eq!(line.unwrap(), b"second, longer version");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"second, longer version"[..])
    );
    // Rewritten in place: the same inode, its bytes and length now.
    fs::write(dir.join("f"), b"third").unwrap();
    let (line, status, body) = both_fronts(&mut c, &mut conn, "f");
    assert_eq!(line.unwrap(), b"third");
    assert_eq!((status, body.as_slice()), (200, &b"third"[..]));
    // Removed by another program: gone for the server too.
    fs::remove_file(dir.join("f")).unwrap();
    let (line, status, _) = both_fronts(&mut c, &mut conn, "f");
    assert_eq!((line, status), (Err(550), 404));
}

#[test]
fn a_downloaded_name_swapped_for_a_fifo_device_or_symlink_is_refused_unopened() {
    let (server, http) = http_server();
    let canary = Canary::plant(server.root());
    let mut c = server.alice();
    c.set_read_timeout(Duration::from_secs(3));
    let mut conn = Conn::open(http);
    let dir = server.user_dir(ALICE);
    let have_device = Command::new("mknod")
        .arg(server.root().join("probe-dev"))
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    let _ = fs::remove_file(server.root().join("probe-dev"));
    let mut kinds = vec!["fifo", "symlink to outside", "symlink to a file"];
    if have_device {
        // /dev/null's numbers.
        kinds.push("device");
    }
    for kind in kinds {
        c.put("f", b"a small file");
        for _ in 0..2 {
            let (line, status, _) = both_fronts(&mut c, &mut conn, "f");
            assert_eq!((line.unwrap(), status), (b"a small file".to_vec(), 200));
        }
        fs::write(dir.join("target"), b"another file").unwrap();
        swap(&dir, "f", |p| match kind {
            "fifo" => assert!(Command::new("mkfifo").arg(p).status().unwrap().success()),
            "device" => assert!(
                Command::new("mknod")
                    .arg(p)
                    .args(["c", "1", "3"])
                    .status()
                    .unwrap()
                    .success()
            ),
            "symlink to outside" => symlink(&canary.path, p).unwrap(),
            _ => symlink("target", p).unwrap(),
        });
        // A writer waits in open() until someone opens the FIFO to read:
        // were the server to open it (even without blocking), the writer
        // would go on.
        let (opened_tx, opened_rx) = mpsc::channel();
        let writer = (kind == "fifo").then(|| {
            let fifo = dir.join("f");
            thread::spawn(move || {
                let opened = fs::OpenOptions::new().write(true).open(&fifo);
                opened_tx.send(opened.is_ok()).unwrap();
            })
        });
        thread::sleep(Duration::from_millis(50));
        for _ in 0..2 {
            let (line, status, body) = both_fronts(&mut c, &mut conn, "f");
            assert_eq!(line, Err(550), "{kind}: line GET");
            assert_eq!(status, 403, "{kind}: HTTP GET: {}", lossy(&body));
            assert!(find(&body, b"another file").is_none());
        }
        if let Some(writer) = writer {
            assert!(
                opened_rx.recv_timeout(Duration::from_millis(200)).is_err(),
                "the server opened the FIFO"
            );
            // Let the writer go: open the FIFO to read, here.
            let reader = fs::File::open(dir.join("f")).unwrap();
            assert!(opened_rx.recv_timeout(Duration::from_secs(3)).unwrap());
            writer.join().unwrap();
            drop(reader);
        }
        c.expect("DEL f", 550);
        fs::remove_file(dir.join("f")).unwrap();
    }
    canary.assert_untouched();
}

#[test]
fn a_deleted_file_is_let_go_and_few_handles_are_kept() {
    let (server, http) = http_server();
    let mut c = server.alice();
    let mut conn = Conn::open(http);
    let dir = server.user_dir(ALICE);
    c.put("f", b"small");
    assert_eq!(c.get("f"), b"small");
    let path = dir.join("f");
    assert_eq!(held(&server, &path), 1, "a small file's handle is kept");
    // Deleted over either front: the handle goes with the name, so its
    // space is free at once.
    c.expect("DEL f", 250);
    assert_eq!(held(&server, &path), 0, "kept after the line DEL");
    c.put("f", b"small again");
    let (_, status, _) = both_fronts(&mut c, &mut conn, "f");
    assert_eq!(status, 200);
    conn.send(&alice_req("DELETE", "/files/f"));
    assert_eq!(conn.response().status, 204);
    assert_eq!(held(&server, &path), 0, "kept after the HTTP DELETE");
    // Replaced by an upload: the old version is let go too.
    c.put("g", b"one");
    assert_eq!(c.get("g"), b"one");
    c.put("g", b"two");
    let before = server.open_descriptors().len();
    assert_eq!(c.get("g"), b"two");
    assert!(server.open_descriptors().len() <= before + 1);
    // A large file is not kept; of many small ones, a bounded number.
    let big = pseudo_random_bytes(5, 65 * 1024 + 1);
    c.put("big", &big);
    assert_eq!(c.get("big"), big);
    // The reply comes after the download's end, its file closed.
    c.noop();
    assert_eq!(held(&server, &dir.join("big")), 0, "a large file was kept");
    let at_start = server.open_descriptors().len();
    for i in 0..100 {
        let name = format!("s{i}");
        c.put(&name, name.as_bytes());
        assert_eq!(c.get(&name), name.as_bytes());
    }
    let grown = server.open_descriptors().len() - at_start;
    assert!(
        grown <= 32,
        "{grown} more descriptors after 100 small files"
    );
}
