//! Folders: paths on both fronts, containment over paths, moves, copies,
//! trees, listings of large folders, and quotas across the tree.

use std::collections::BTreeMap;
use std::time::Duration;

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
    assert_eq!(sub.into_iter().collect::<Vec<_>>(), [("a b.jpg".to_owned(), 5)]);
    let stat = c.expect("STAT photos/2024/a b.jpg", 213);
    assert!(
        stat.starts_with("type=file size=5 mtime=")
            && stat.ends_with(&format!("sha256={}", sha256_hex(b"hello"))),
        "{stat}"
    );
    assert!(c.expect("STAT photos", 213).starts_with("type=folder mtime="));
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
    assert_eq!(listed(&mut c, "LIST").keys().collect::<Vec<_>>(), ["top.txt"]);
    // The removed tree leaves nothing behind once it is emptied.
    assert!(wait_until(Duration::from_secs(5), || server
        .tmp_entries()
        .is_empty()));
}
