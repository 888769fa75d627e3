//! Freeing a large file: removing its last name frees every page of it in
//! one system call (0.3 s per GiB on tmpfs, 0.7 s per GiB of cached data
//! on ext4), which on one thread holds up every session. ferryd frees it
//! a step at a time instead, and never while someone still reads it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Writes `len` bytes of `data` repeated to `path`, through the page cache
/// (the pages are what freeing costs).
fn write_file(path: &Path, len: usize, data: &[u8]) {
    let mut file = File::create(path).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(data.len());
        file.write_all(&data[..n]).unwrap();
        left -= n;
    }
    // Written back, as a file stored a while ago is: freeing clean pages
    // and their blocks is what costs (dirty ones never written are cheap).
    file.sync_all().unwrap();
}

/// The longest a `NOOP` waited for its reply while `act` ran.
fn longest_noop_during(server: &TestServer, act: impl FnOnce()) -> Duration {
    let mut probe = server.alice();
    probe.noop();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                probe.noop();
                longest = longest.max(sent.elapsed());
                thread::sleep(Duration::from_millis(2));
            }
            longest
        })
    };
    thread::sleep(Duration::from_millis(50));
    act();
    // The steps that free the file run after the reply: keep probing
    // through them.
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap()
}

#[test]
fn deleting_or_replacing_a_gigabyte_file_does_not_hold_up_other_sessions() {
    let _quiet = timing_sensitive();
    let server = TestServer::start();
    const GIB: usize = 1 << 30;
    let block = vec![0x5au8; 1 << 20];
    let dir = server.user_dir(ALICE);
    fs::create_dir_all(&dir).unwrap();

    write_file(&dir.join("big"), GIB, &block);
    let mut c = server.alice();
    let longest = longest_noop_during(&server, || {
        c.expect("DEL big", 250);
    });
    assert!(
        longest < Duration::from_millis(100),
        "a NOOP waited {longest:?} while a 1 GiB file was deleted"
    );

    write_file(&dir.join("big"), GIB, &block);
    let longest = longest_noop_during(&server, || {
        c.put("big", b"small now");
    });
    assert!(
        longest < Duration::from_millis(100),
        "a NOOP waited {longest:?} while a 1 GiB file was replaced"
    );
    assert_eq!(c.get("big"), b"small now");
    // And the space does come back.
    server.assert_tmp_empty_within(Duration::from_secs(30));
}

#[test]
fn a_large_file_deleted_or_replaced_during_its_download_is_still_sent_whole() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(17, 80 << 20);
    for replace in [false, true] {
        server.plant_file(ALICE, "big", &data);
        let mut reader = server.alice();
        reader.send_line("GET big");
        let (code, text) = reader.read_reply();
        assert_eq!((code, text), (150, data.len().to_string()));
        let mut got = reader.read_exact_bytes(1 << 20);

        let mut other = server.alice();
        if replace {
            other.put("big", b"new");
        } else {
            other.expect("DEL big", 250);
        }
        // Housekeeping passes meanwhile, many times: the file is retired
        // but must not shrink while it is read.
        thread::sleep(Duration::from_millis(800));
        got.extend_from_slice(&reader.read_exact_bytes(data.len() - got.len()));
        assert!(
            got == data,
            "the download of the old version (replace: {replace}) came out different"
        );
        reader.noop();
        drop(reader);
        // Once nobody reads it, it is freed.
        server.assert_tmp_empty_within(Duration::from_secs(20));
    }
}

/// An HTTP upload without `?resumable` that is cut is dropped; its
/// temporary file, large, is left under a retired name for housekeeping
/// to find and free. If it were never found, it would stay in `tmp`.
#[test]
fn a_large_upload_dropped_unfinished_is_freed_too() {
    let (server, http) = start_http(TestServer::builder());
    let mut conn = Conn::open(http);
    let head = format!(
        "PUT /files/cut HTTP/1.1\r\nHost: x\r\n{}\r\nContent-Length: {}\r\n\r\n",
        alice_auth(),
        64 << 20
    );
    conn.send(head.as_bytes());
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..40 {
        conn.send(&chunk);
    }
    // The 40 MiB are in the temporary file before the cut.
    assert!(wait_until(Duration::from_secs(10), || {
        server
            .tmp_entries()
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.len() >= 40 << 20))
    }));
    drop(conn);
    server.assert_tmp_empty_within(Duration::from_secs(20));
    let mut c = server.alice();
    assert!(c.list_names().iter().all(|n| n != "cut"));
}
