//! Line-protocol downloads as the reactor sends them, straight from the
//! file to the socket: exact bytes from any offset, pipelined commands
//! behind them, and slow readers. (Truncation behind the server's back is
//! in `commands.rs`, the drain cut-off in `shutdown.rs`, fairness in
//! `concurrency.rs`.)

use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn get_after_rest_sends_exactly_the_rest_of_a_large_file() {
    let server = TestServer::start();
    // Not a multiple of any page or buffer size.
    let data = pseudo_random_bytes(91, 9 * 1024 * 1024 + 7);
    server.plant_file(ALICE, "big.bin", &data);
    let mut c = server.alice();
    for offset in [0, 1, 4095, 3_000_001, data.len() - 1, data.len()] {
        c.expect(&format!("REST {offset}"), 350);
        c.send_line("GET big.bin");
        let rest = data.len() - offset;
        assert_eq!(c.read_reply(), (150, rest.to_string()), "REST {offset}");
        let got = c.read_exact_bytes(rest);
        assert_same_bytes(&got, &data[offset..], &format!("GET after REST {offset}"));
        // Nothing more than announced: the next reply follows at once.
        c.noop();
    }
}

#[test]
fn commands_pipelined_behind_downloads_are_answered_after_their_bytes() {
    let server = TestServer::start();
    let big = pseudo_random_bytes(92, 3 * 1024 * 1024 + 11);
    let small = pseudo_random_bytes(93, 4096);
    server.plant_file(ALICE, "big.bin", &big);
    server.plant_file(ALICE, "small.bin", &small);
    let mut c = server.alice();
    c.send_raw(b"GET big.bin\r\nREST 100\r\nGET small.bin\r\nVIEW big.bin\r\nNOOP\r\n");
    assert_eq!(c.read_reply(), (150, big.len().to_string()));
    assert_same_bytes(&c.read_exact_bytes(big.len()), &big, "GET big.bin");
    assert_eq!(c.read_code(), 350);
    assert_eq!(c.read_reply(), (150, (small.len() - 100).to_string()));
    assert_same_bytes(
        &c.read_exact_bytes(small.len() - 100),
        &small[100..],
        "GET small.bin",
    );
    assert_eq!(c.read_reply(), (150, "1024".to_string()));
    assert_same_bytes(&c.read_exact_bytes(1024), &big[..1024], "VIEW big.bin");
    assert_eq!(c.read_code(), 200);
}

#[test]
fn a_slow_reader_gets_the_whole_download_without_being_cut_for_stalling() {
    // A reader descheduled for half a second by a busy machine would be a
    // stalled one: kept apart from the CPU-heavy tests.
    let _measuring = timing_sensitive();
    // The stall timeout counts from the last byte the server sent, so a
    // client that keeps reading, however slowly, is never cut off: here
    // the download takes well over the timeout.
    let server = TestServer::builder()
        .args(["--stall-timeout", "0.5"])
        .start();
    // Several times what loopback socket buffers hold, so the server
    // keeps sending well past the timeout.
    let data = pseudo_random_bytes(94, 16 * 1024 * 1024);
    server.plant_file(ALICE, "slow.bin", &data);
    let mut c = server.alice();
    c.send_line("GET slow.bin");
    assert_eq!(c.read_reply(), (150, data.len().to_string()));
    let started = Instant::now();
    let mut got = Vec::with_capacity(data.len());
    while got.len() < data.len() {
        let n = (64 * 1024).min(data.len() - got.len());
        got.extend_from_slice(&c.read_exact_bytes(n));
        // About 6 MiB/s at most.
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        started.elapsed() > Duration::from_millis(1000),
        "the reader was not slow: {:?}",
        started.elapsed()
    );
    assert_same_bytes(&got, &data, "slow download");
    c.noop();
}

#[test]
fn many_downloads_at_once_each_get_their_own_bytes() {
    let server = TestServer::start();
    let files: Vec<Vec<u8>> = (0..8)
        .map(|i| pseudo_random_bytes(100 + i, 2 * 1024 * 1024 + i as usize * 4099))
        .collect();
    for (i, data) in files.iter().enumerate() {
        server.plant_file(ALICE, &format!("f{i}"), data);
    }
    let readers: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let mut c = server.alice();
            let data = data.clone();
            thread::spawn(move || {
                for _ in 0..3 {
                    let got = c.get(&format!("f{i}"));
                    assert_same_bytes(&got, &data, &format!("f{i}"));
                }
            })
        })
        .collect();
    for reader in readers {
        reader.join().unwrap();
    }
}
