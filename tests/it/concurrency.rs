//! Many clients at once against the single-threaded server.

use std::fs;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn twenty_clients_upload_and_download_distinct_files() {
    let _heavy = cpu_heavy();
    let server = Arc::new(TestServer::start());
    const CLIENTS: usize = 20;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let server = Arc::clone(&server);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let (user, pw) = if i % 2 == 0 {
                    (ALICE, ALICE_PW)
                } else {
                    (BOB, BOB_PW)
                };
                // Sizes from a few bytes to ~2 MiB, none a round number.
                let size = (i * 104_729 + i * i * 7_919) % (2 * 1024 * 1024) + i;
                let data = pseudo_random_bytes(1000 + i as u64, size);
                let name = format!("file-{i:02}.bin");
                let mut c = server.login(user, pw);
                barrier.wait();
                c.put(&name, &data);
                let got = c.get(&name);
                assert_eq!(got.len(), data.len(), "{name}");
                assert_eq!(sha256_hex(&got), sha256_hex(&data), "{name}");
                assert_eq!(c.view(&name), &data[..data.len().min(1024)]);
                c.noop();
                (user, name, sha256_hex(&data), size)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    // Afterwards every file is intact, in the right user's directory and
    // listed with the right size.
    let mut alice = server.alice();
    let mut bob = server.bob();
    let alice_list = alice.list();
    let bob_list = bob.list();
    for (user, name, sha, size) in &results {
        let (c, list) = if *user == ALICE {
            (&mut alice, &alice_list)
        } else {
            (&mut bob, &bob_list)
        };
        assert_eq!(&sha256_hex(&c.get(name)), sha, "{name}");
        let on_disk = fs::read(server.user_dir(user).join(name)).unwrap();
        assert_eq!(&sha256_hex(&on_disk), sha);
        let entry = list
            .iter()
            .find(|e| e.name == name.as_bytes())
            .unwrap_or_else(|| panic!("{name} not listed for {user}"));
        assert_eq!(entry.size, *size as u64);
    }
    assert_eq!(alice_list.len(), CLIENTS / 2);
    assert_eq!(bob_list.len(), CLIENTS / 2);
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn concurrent_uploads_of_same_name_leave_exactly_one_complete_upload() {
    let server = Arc::new(TestServer::start());
    const CLIENTS: usize = 5;
    let contents: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| pseudo_random_bytes(2000 + i as u64, 300_000 + i * 1_000))
        .collect();
    let contents = Arc::new(contents);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let server = Arc::clone(&server);
            let barrier = Arc::clone(&barrier);
            let contents = Arc::clone(&contents);
            thread::spawn(move || {
                let data = &contents[i];
                let mut c = server.alice();
                c.start_put("shared.bin", data.len());
                // Everyone has an upload open before anyone sends data.
                barrier.wait();
                // Interleave the payloads in chunks.
                for chunk in data.chunks(32 * 1024) {
                    c.send_raw(chunk);
                    thread::sleep(Duration::from_millis(2));
                }
                assert_eq!(c.read_reply(), (226, stored(data)));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut c = server.alice();
    let got = c.get("shared.bin");
    let got_sha = sha256_hex(&got);
    assert!(
        contents.iter().any(|d| sha256_hex(d) == got_sha),
        "final file ({} bytes) equals none of the uploads",
        got.len()
    );
    assert_eq!(c.list().len(), 1);
    server.assert_tmp_empty_within(Duration::from_secs(2));
}

#[test]
fn download_overlapping_replace_and_delete_delivers_old_content() {
    let server = TestServer::start();
    let mut writer = server.alice();
    // Larger than the socket buffers, so the transfer is still running when
    // the file is replaced and then deleted.
    let old = pseudo_random_bytes(3000, 24 * 1024 * 1024);
    let new = pseudo_random_bytes(3001, 1024 * 1024);
    server.plant_file(ALICE, "big.bin", &old);

    let mut reader = server.alice();
    reader.send_line("GET big.bin");
    assert_eq!(reader.read_reply(), (150, old.len().to_string()));
    let head = reader.read_exact_bytes(1000);
    assert_eq!(head, &old[..1000]);

    // Replace, then delete, while the download is in flight.
    writer.put("big.bin", &new);
    assert_same_bytes(&writer.get("big.bin"), &new, "replacement");
    writer.expect("DEL big.bin", 250);
    writer.expect("GET big.bin", 550);

    let rest = reader.read_exact_bytes(old.len() - 1000);
    let mut got = head;
    got.extend_from_slice(&rest);
    assert_same_bytes(&got, &old, "download overlapping replace and delete");
    reader.noop();
}

#[test]
fn stalled_downloader_does_not_block_other_clients() {
    let _measuring = timing_sensitive();
    let server = TestServer::start();
    let data = pseudo_random_bytes(4000, 32 * 1024 * 1024);
    server.plant_file(ALICE, "huge.bin", &data);

    let mut slow = server.alice();
    slow.send_line("GET huge.bin");
    assert_eq!(slow.read_reply(), (150, data.len().to_string()));
    // `slow` now reads nothing for a while; the server's writes to it block.
    thread::sleep(Duration::from_millis(300));

    let t = Instant::now();
    let mut other = server.bob();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "connect+login took {:?}",
        t.elapsed()
    );
    assert_noops_prompt(&mut other, 5);
    other.put("small", b"fine");
    assert_eq!(other.get("small"), b"fine");
    // Also a fresh connection's greeting arrives promptly.
    let t = Instant::now();
    let mut third = server.connect();
    third.noop();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "greeting+NOOP took {:?}",
        t.elapsed()
    );

    let got = slow.read_exact_bytes(data.len());
    assert_same_bytes(&got, &data, "stalled download");
    slow.noop();
}

#[test]
fn stalled_uploader_and_partial_line_do_not_block_other_clients() {
    let _measuring = timing_sensitive();
    let server = TestServer::start();
    let mut up = server.alice();
    up.start_put("slow.bin", 10_000);
    up.send_raw(&[7u8; 100]);
    // A client that sent half a command line and stopped.
    let mut half = server.connect();
    half.send_raw(b"NOO");

    let mut other = server.bob();
    assert_noops_prompt(&mut other, 5);
    other.put("x", b"y");

    up.send_raw(&[7u8; 9_900]);
    assert_eq!(up.read_reply(), (226, stored(&[7u8; 10_000])));
    half.send_raw(b"P\n");
    assert_eq!(half.read_code(), 200);
    assert_eq!(up.get("slow.bin"), vec![7u8; 10_000]);
}

#[test]
fn many_idle_connections_do_not_block_service() {
    // More connections from 127.0.0.1 than the default per-address limit.
    let server = TestServer::builder().args(["--max-per-ip", "200"]).start();
    let idle: Vec<Client> = (0..64).map(|_| server.connect()).collect();
    let mut c = server.alice();
    let t = Instant::now();
    c.put("f", b"data");
    c.noop();
    assert!(t.elapsed() < Duration::from_secs(1));
    // The idle ones are still served.
    for mut i in idle {
        i.noop();
    }
}

#[test]
fn client_pipelining_without_reading_does_not_block_others_and_gets_every_reply() {
    let server = TestServer::start();
    const COUNT: usize = 50_000;
    let mut greedy = server.alice();
    let mut w = greedy.stream().try_clone().unwrap();
    // The writer blocks once the server stops reading (it must, since the
    // replies are not being read); the test never deadlocks because the main
    // thread reads everything afterwards.
    let writer = thread::spawn(move || {
        use std::io::Write;
        let batch = "NOOP\n".repeat(1000);
        for _ in 0..COUNT / 1000 {
            w.write_all(batch.as_bytes()).unwrap();
        }
        w.write_all(b"DEL nosuch\n").unwrap();
    });
    thread::sleep(Duration::from_millis(300));
    let mut other = server.bob();
    for _ in 0..3 {
        let t = Instant::now();
        other.noop();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "NOOP took {:?}",
            t.elapsed()
        );
    }
    for i in 0..COUNT {
        let (code, text) = greedy.read_reply();
        assert_eq!(code, 200, "reply {i}: `{code} {text}`");
    }
    assert_eq!(greedy.read_code(), 550);
    writer.join().unwrap();
    greedy.noop();
}

#[test]
fn busy_transfers_do_not_starve_other_sessions() {
    let _measuring = timing_sensitive();
    // One client downloads and another uploads as fast as loopback allows;
    // a third one's NOOPs must keep being answered while they run, because
    // the reactor bounds the work per connection per turn.
    let server = TestServer::start();
    let data = pseudo_random_bytes(77, 16 * 1024 * 1024);
    let mut setup = server.alice();
    setup.put("big.bin", &data);
    let expected = sha256_hex(&data);

    let mut downloader = server.alice();
    let mut uploader = server.bob();
    let upload = data.clone();
    let busy = thread::spawn(move || {
        for round in 0..3 {
            assert_eq!(sha256_hex(&downloader.get("big.bin")), expected);
            uploader.put(&format!("up{round}.bin"), &upload);
        }
    });

    let mut other = server.connect();
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    while !busy.is_finished() {
        let t = Instant::now();
        other.noop();
        slowest = slowest.max(t.elapsed());
        answered += 1;
        thread::sleep(Duration::from_millis(5));
    }
    busy.join().unwrap();
    assert!(answered > 0);
    assert!(
        slowest < Duration::from_secs(1),
        "a NOOP waited {slowest:?} behind bulk transfers"
    );
}
