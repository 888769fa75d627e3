//! Resumable transfers: `REST` before `GET` and `PUT`, interrupted uploads
//! kept as partials (`PARTIAL`), across breaks, restarts and expiry.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// Bound for the server to notice a break or to write what it was sent.
const NOTICE: Duration = Duration::from_secs(10);
/// How long a reply may wait for the server to hash a partial of about
/// 100 MiB (a debug build's SHA-256, on a shared 2-core machine).
const HASHING: Duration = Duration::from_secs(60);

/// How an upload is broken off by its client.
#[derive(Debug, Clone, Copy)]
enum Break {
    /// Close the socket once the server has read every byte sent.
    Close,
    /// Half-close (shutdown of the sending side) once the server has read
    /// every byte sent.
    HalfClose,
    /// Abortive close (RST) straight after sending: the server may lose
    /// bytes it has not read yet.
    Reset,
}

/// Starts an upload of all of `data` as `name` for alice: a fresh `PUT`
/// when `from` is 0, else `REST from` + `PUT`. Sends `data[from..to]`,
/// breaks the connection `how`, waits until the server has dealt with the
/// break and returns the bytes it holds (from `PARTIAL`), after checking
/// that the partial is exactly a prefix of `data`.
fn upload_and_break(
    server: &TestServer,
    name: &str,
    data: &[u8],
    from: u64,
    to: u64,
    how: Break,
) -> u64 {
    assert!(
        from <= to && to < data.len() as u64,
        "bad break {from}..{to}"
    );
    let mut up = server.alice();
    if from == 0 {
        up.start_put(name, data.len());
    } else {
        up.rest(from);
        up.send_line(&format!("PUT {} {name}", data.len()));
        let left = data.len() as u64 - from;
        assert_eq!(
            up.read_reply(),
            (150, left.to_string()),
            "REST {from} + PUT {} {name:?}",
            data.len()
        );
    }
    up.send_raw(&data[from as usize..to as usize]);
    match how {
        Break::Close => {
            server.wait_tmp_bytes(to, NOTICE);
            drop(up);
        }
        Break::HalfClose => {
            server.wait_tmp_bytes(to, NOTICE);
            up.shutdown_write();
            let rest = up.read_to_eof();
            assert!(
                !rest.starts_with(b"226"),
                "upload half-closed after {to} of {} bytes answered {:?}",
                data.len(),
                String::from_utf8_lossy(&rest)
            );
        }
        Break::Reset => up.abort(),
    }
    // The upload leaves the temporary area once the server saw the break.
    server.assert_tmp_empty_within(NOTICE);
    let mut c = server.alice();
    let held = match how {
        Break::Close | Break::HalfClose => {
            let held = c.wait_partial(name, to, Duration::from_secs(5));
            assert_eq!(
                held, to,
                "PARTIAL {name:?} after {how:?} with {to} bytes received"
            );
            held
        }
        Break::Reset => {
            let held = c.partial(name);
            assert!(
                from <= held && held <= to,
                "PARTIAL {name:?} is {held} after a reset at {to} (continued from {from})"
            );
            held
        }
    };
    if held > 0 {
        let kept = fs::read(server.partial_path(ALICE, name)).unwrap();
        assert_same_bytes(&kept, &data[..held as usize], "bytes held as partial");
    }
    held
}

/// Asserts `REST offset` + `PUT` of all of `data` ends in exactly
/// `226 stored <len> sha256=<want>`.
fn resume_with_digest(c: &mut Client, name: &str, data: &[u8], offset: u64, want: &str) {
    let reply = c.resume_put_reply(name, data, offset);
    assert_eq!(
        reply,
        (226, format!("stored {} sha256={want}", data.len())),
        "REST {offset} + PUT {} {name:?}",
        data.len()
    );
}

/// After a complete upload: `HASH`, `GET`, the digest record, no partial
/// left and no temporary file.
fn assert_stored(server: &TestServer, name: &str, data: &[u8], want: &str) {
    let mut c = server.alice();
    assert_eq!(c.hash(name), want, "HASH {name:?}");
    assert_same_bytes(&c.get(name), data, &format!("GET {name:?}"));
    assert_eq!(
        recorded_sha256(&server.sum_record(ALICE, name)),
        want,
        "digest record of {name:?}"
    );
    assert_eq!(c.partial(name), 0, "partial left after a complete upload");
    assert!(
        !server.partial_path(ALICE, name).exists(),
        "partial file left after a complete upload"
    );
    server.assert_tmp_empty();
}

/// Breaks an upload of `data` at seeded pseudo-random points, `how` in
/// turn, each time continuing from what `PARTIAL` reports, then completes
/// it and checks the result.
fn break_and_resume(server: &TestServer, name: &str, data: &[u8], seed: u64, breaks: &[Break]) {
    let size = data.len() as u64;
    thread::scope(|s| {
        // The expected digest, worked out while the server is busy.
        let want = s.spawn(|| sha256_hex(data));
        let mut rng = Rng::new(seed);
        let mut held = 0;
        for &how in breaks {
            // At least one byte more than held, at least one byte short.
            let to = rng.range(held + 1, size);
            held = upload_and_break(server, name, data, held, to, how);
        }
        let want = want.join().unwrap();
        let mut c = server.alice();
        assert_eq!(c.partial(name), held);
        resume_with_digest(&mut c, name, data, held, &want);
        assert_stored(server, name, data, &want);
    });
}

// --- Downloads ------------------------------------------------------------

#[test]
fn get_after_rest_sends_the_tail_from_each_offset() {
    let server = TestServer::start();
    let mut c = server.alice();
    // Larger than two transfer buffers (128 KiB), not a round number.
    let data = pseudo_random_bytes(101, 300_007);
    c.put("tail.bin", &data);
    let size = data.len() as u64;
    for offset in [0, 1, 4095, 131_072, 131_073, size - 1, size] {
        c.rest(offset);
        let got = c.get("tail.bin");
        assert_same_bytes(
            &got,
            &data[offset as usize..],
            &format!("GET after REST {offset}"),
        );
    }
    // Past the end: 501, and the offset is forgotten all the same.
    for offset in [size + 1, size + 1_000_000, u64::MAX] {
        c.rest(offset);
        assert_eq!(
            c.get_reply(b"tail.bin"),
            Err((
                501,
                format!("offset {offset} is past the end of the file ({size} bytes)")
            ))
        );
        assert_same_bytes(&c.get("tail.bin"), &data, "GET after a refused REST");
    }
    // An empty file.
    c.put("empty", b"");
    c.rest(0);
    assert!(c.get("empty").is_empty());
    c.rest(1);
    assert_eq!(c.get_reply(b"empty").unwrap_err().0, 501);
    // Pipelined: REST, GET and NOOP in one write.
    c.send_raw(b"REST 300000\nGET tail.bin\nNOOP\n");
    assert_eq!(c.read_code(), 350);
    assert_eq!(c.read_reply(), (150, "7".to_string()));
    assert_eq!(c.read_exact_bytes(7), &data[300_000..]);
    assert_eq!(c.read_reply(), (200, "ok".to_string()));
}

#[test]
fn rest_is_kept_across_other_commands_and_used_up_by_get() {
    let server = TestServer::start();
    let mut c = server.alice();
    let data = pseudo_random_bytes(102, 5000);
    c.put("f", &data);
    c.put("g", b"to be deleted");

    c.rest(1000);
    c.noop();
    assert_eq!(c.list_names(), vec!["f".to_string(), "g".to_string()]);
    // VIEW does not use it: the preview starts at byte 0.
    assert_eq!(c.view("f"), &data[..1024]);
    assert_eq!(c.hash("f"), sha256_hex(&data));
    assert_eq!(c.partial("f"), 0);
    c.expect_sha256(&sha256_hex(b"unused"));
    c.expect("DEL g", 250);
    assert_same_bytes(&c.get("f"), &data[1000..], "GET after REST 1000");
    // Used up: the next GET is whole.
    assert_same_bytes(&c.get("f"), &data, "second GET");

    // A second REST replaces the first.
    c.rest(10);
    c.rest(20);
    assert_same_bytes(&c.get("f"), &data[20..], "GET after REST 10, REST 20");

    // A GET that fails uses it up too.
    c.rest(30);
    assert_eq!(c.get_reply(b"nosuch").unwrap_err().0, 550);
    assert_same_bytes(&c.get("f"), &data, "GET after a failed GET");

    // So does a PUT (here refused: nothing is held for it).
    c.rest(40);
    assert_eq!(c.cmd("PUT 100 newname").0, 501);
    assert_same_bytes(&c.get("f"), &data, "GET after a refused PUT");

    // Leading zeros are allowed, as in a PUT size.
    c.rest(7);
    c.expect("REST 007", 350);
    assert_same_bytes(&c.get("f"), &data[7..], "GET after REST 007");
}

#[test]
fn malformed_rest_is_501() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("f", b"0123456789");
    for line in [
        "REST",
        "REST ",
        "REST -1",
        "REST +1",
        "REST 1.5",
        "REST 0x10",
        "REST abc",
        "REST 1 2",
        "REST  1",
        "REST 18446744073709551616",
        "REST 123456789012345678901",
        // More than 20 digits, though a small number.
        "REST 000000000000000000001",
    ] {
        assert_eq!(c.cmd(line).0, 501, "{line:?}");
    }
    // None of them set an offset.
    assert_eq!(c.get("f"), b"0123456789");
}

// --- Interrupted uploads, resumed -------------------------------------------

#[test]
fn empty_upload_has_nothing_to_break_or_resume() {
    let server = TestServer::start();
    let mut c = server.alice();
    let empty = sha256_hex(b"");
    c.put("zero", b"");
    assert_eq!(c.partial("zero"), 0);
    assert_eq!(c.hash("zero"), empty);
    // REST 0 + PUT 0: `150 0` and at once `226`.
    resume_with_digest(&mut c, "zero", b"", 0, &empty);
    // REST 1 is past the end of a 0-byte file.
    c.rest(1);
    assert_eq!(
        c.cmd("PUT 0 zero"),
        (
            501,
            "offset 1 is past the end of the file (0 bytes)".to_string()
        )
    );
    // A PUT of 0 bytes whose client goes away at once is complete anyway.
    let mut gone = server.alice();
    gone.send_line("PUT 0 gone");
    drop(gone);
    assert!(wait_until(NOTICE, || server
        .user_dir(ALICE)
        .join("gone")
        .exists()));
    assert_eq!(c.partial("gone"), 0);
    assert_stored(&server, "zero", b"", &empty);
    assert_stored(&server, "gone", b"", &empty);
}

#[test]
fn one_byte_upload_broken_before_its_byte_is_resumed_from_0() {
    let server = TestServer::start();
    let data = [0x5a_u8];
    // Nothing arrived: nothing is held.
    let held = upload_and_break(&server, "one", &data, 0, 0, Break::Close);
    assert_eq!(held, 0);
    let mut c = server.alice();
    c.rest(1);
    assert_eq!(
        c.cmd("PUT 1 one"),
        (
            501,
            "offset 1 is past the 0 bytes held for this upload".to_string()
        )
    );
    c.expect("GET one", 550);
    let want = sha256_hex(&data);
    resume_with_digest(&mut c, "one", &data, 0, &want);
    assert_stored(&server, "one", &data, &want);
}

#[test]
fn upload_of_1_mib_plus_7_broken_three_ways_is_resumed() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(103, (1 << 20) + 7);
    break_and_resume(
        &server,
        "mid.bin",
        &data,
        103,
        &[Break::Close, Break::HalfClose, Break::Reset],
    );
}

#[test]
fn upload_of_64_mib_broken_twice_is_resumed() {
    let _heavy = cpu_heavy();
    let server = TestServer::start();
    let data = pseudo_random_bytes(104, 64 << 20);
    break_and_resume(
        &server,
        "big.bin",
        &data,
        104,
        &[Break::Close, Break::Reset],
    );
}

#[test]
fn partial_is_not_listed_nor_under_the_name_and_old_version_stays() {
    let server = TestServer::start();
    let mut c = server.alice();
    let name = "my report.bin";
    let old = pseudo_random_bytes(105, 30_000);
    let new = pseudo_random_bytes(106, 250_001);
    c.put(name, &old);
    let k = Rng::new(105).range(1, new.len() as u64);
    let held = upload_and_break(&server, name, &new, 0, k, Break::Close);

    let listing = c.list();
    assert_eq!(listing.len(), 1, "{listing:?}");
    assert_eq!(listing[0].name, name.as_bytes());
    assert_eq!(listing[0].size, old.len() as u64);
    assert_eq!(c.get(name), old);
    assert_eq!(c.hash(name), sha256_hex(&old));
    assert_eq!(
        dir_entries(&server.user_dir(ALICE)),
        vec![server.user_dir(ALICE).join(name)]
    );
    assert_eq!(fs::read(server.user_dir(ALICE).join(name)).unwrap(), old);

    resume_with_digest(&mut c, name, &new, held, &sha256_hex(&new));
    assert_eq!(c.list()[0].size, new.len() as u64);
    assert_stored(&server, name, &new, &sha256_hex(&new));
}

#[test]
fn resume_short_of_the_bytes_held_drops_the_rest_of_them() {
    let server = TestServer::start();
    let first = pseudo_random_bytes(107, 400_000);
    let held = upload_and_break(&server, "short.bin", &first, 0, 300_001, Break::Close);
    // The file now sent shares only the first 150 000 bytes with what is
    // held, and is longer.
    let offset = 150_000;
    let mut second = first[..offset].to_vec();
    second.extend_from_slice(&pseudo_random_bytes(108, 350_000));
    assert!((offset as u64) < held);
    // Continued there and broken again: the partial is the first 150 000
    // bytes and what arrived after them.
    let held = upload_and_break(
        &server,
        "short.bin",
        &second,
        offset as u64,
        offset as u64 + 100_000,
        Break::Close,
    );
    let mut c = server.alice();
    resume_with_digest(&mut c, "short.bin", &second, held, &sha256_hex(&second));
    assert_stored(&server, "short.bin", &second, &sha256_hex(&second));
}

#[test]
fn rest_0_continues_and_uses_up_the_partial_but_a_plain_put_does_not() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(128, 200_000);
    let held = upload_and_break(&server, "r0.bin", &data, 0, 80_000, Break::Close);
    let mut c = server.alice();

    // A plain PUT broken before any payload leaves the partial alone.
    let mut up = server.alice();
    up.start_put("r0.bin", data.len());
    drop(up);
    server.assert_tmp_empty_within(NOTICE);
    assert_eq!(c.partial("r0.bin"), held);

    // REST 0 + PUT continues the partial from byte 0: broken before any
    // payload, it holds nothing.
    let mut up = server.alice();
    up.rest(0);
    up.send_line(&format!("PUT {} r0.bin", data.len()));
    assert_eq!(up.read_reply(), (150, data.len().to_string()));
    drop(up);
    server.assert_tmp_empty_within(NOTICE);
    assert_eq!(c.partial("r0.bin"), 0);

    // Completed, REST 0 + PUT stores the file and leaves no partial.
    let held = upload_and_break(&server, "r0.bin", &data, 0, 120_000, Break::Close);
    assert_eq!(c.partial("r0.bin"), held);
    resume_with_digest(&mut c, "r0.bin", &data, 0, &sha256_hex(&data));
    assert_stored(&server, "r0.bin", &data, &sha256_hex(&data));
}

#[test]
fn continuing_short_of_a_large_partial_rehashes_without_holding_up_others() {
    let _measuring = timing_sensitive();
    let mut server = TestServer::builder()
        .args(["--drain-timeout", "10"])
        .start();
    const MIB: u64 = 1 << 20;
    // A large partial without saved hash state, put there directly (sparse):
    // continuing it anywhere means hashing what comes before the offset.
    let mut other = server.bob();
    drop(server.alice());
    fs::File::create(server.partial_path(ALICE, "huge.bin"))
        .unwrap()
        .set_len(256 * MIB)
        .unwrap();
    let mut c = server.alice();
    assert_eq!(c.partial("huge.bin"), 256 * MIB);
    let put = format!("PUT {} huge.bin", 300 * MIB);

    // Broken off (reset) while the server hashes: it keeps the bytes up to
    // the offset, and others were served meanwhile.
    let mut up = server.alice();
    up.rest(200 * MIB);
    up.send_line(&put);
    // The partial is claimed and cut to the offset before it is hashed.
    server.wait_tmp_bytes(200 * MIB, NOTICE);
    assert_noops_prompt(&mut other, 3);
    up.abort();
    server.assert_tmp_empty_within(NOTICE);
    assert_eq!(c.partial("huge.bin"), 200 * MIB);

    // Hashing is not a transfer: shutdown does not wait for it, and the
    // partial survives with the bytes up to the offset.
    let mut up = server.alice();
    up.set_read_timeout(Duration::from_secs(20));
    up.rest(150 * MIB);
    up.send_line(&put);
    server.wait_tmp_bytes(150 * MIB, NOTICE);
    let start = Instant::now();
    server.signal(Signal::SIGINT);
    match up.read_reply_or_eof() {
        ReplyOrEof::Reply(421, _) => {}
        other => panic!("a PUT hashing the bytes held got {other:?} at shutdown, expected 421"),
    }
    up.expect_eof();
    let took = server.expect_clean_exit(start, Duration::from_secs(5));
    assert!(
        took < Duration::from_secs(3),
        "shutdown waited {took:?} for a PUT that was hashing"
    );
    let server = server.restart_with(["--drain-timeout", "10"]);
    let mut c = server.alice();
    assert_eq!(c.partial("huge.bin"), 150 * MIB);
    server.assert_tmp_empty();

    // Broken off with an orderly close while the server hashes: noticed at
    // once, not when the hashing of 100 MiB would be done.
    let mut up = server.alice();
    up.rest(100 * MIB);
    up.send_line(&put);
    server.wait_tmp_bytes(100 * MIB, NOTICE);
    let closed = Instant::now();
    drop(up);
    server.assert_tmp_empty_within(NOTICE);
    assert_eq!(c.partial("huge.bin"), 100 * MIB);
    assert!(closed.elapsed() < NOTICE, "{:?}", closed.elapsed());
}

/// A client that ends its stream (half-close) right after a `PUT` that
/// continues a large partial still reads an answer to every line: with the
/// payload still to come, `150` and then the close (the hashing stops, the
/// partial keeps the bytes up to the offset); with the whole payload sent
/// behind the `PUT` line, the upload completes (`226`).
#[test]
fn half_close_while_hashing_the_bytes_held_answers_the_put() {
    let _heavy = cpu_heavy();
    const MIB: u64 = 1 << 20;
    let server = TestServer::start();
    drop(server.alice());
    let plant = || {
        fs::File::create(server.partial_path(ALICE, "held.bin"))
            .unwrap()
            .set_len(128 * MIB)
            .unwrap();
    };

    // The payload cannot arrive any more.
    plant();
    let mut up = server.alice();
    // Hashing 96 MiB in a debug build on a loaded machine can outlast the
    // usual read timeout; what is under test is the reply, not its speed.
    up.set_read_timeout(HASHING);
    up.rest(96 * MIB);
    up.send_line(&format!("PUT {} held.bin", 100 * MIB));
    up.shutdown_write();
    assert_eq!(up.read_reply(), (150, (4 * MIB).to_string()));
    up.expect_eof();
    server.assert_tmp_empty_within(NOTICE);
    let mut c = server.alice();
    assert_eq!(c.partial("held.bin"), 96 * MIB);
    assert_eq!(c.cmd("HASH held.bin").0, 550, "no file under the name");

    // The payload is all there, behind the PUT line.
    plant();
    let tail = pseudo_random_bytes(7, 1000);
    let mut up = server.alice();
    up.set_read_timeout(HASHING);
    up.rest(96 * MIB);
    up.send_line(&format!("PUT {} held.bin", 96 * MIB + tail.len() as u64));
    up.send_raw(&tail);
    up.shutdown_write();
    assert_eq!(up.read_reply(), (150, tail.len().to_string()));
    let mut whole = vec![0; 96 * MIB as usize];
    whole.extend_from_slice(&tail);
    let want = sha256_hex(&whole);
    assert_eq!(
        up.read_reply(),
        (226, format!("stored {} sha256={want}", whole.len()))
    );
    up.expect_eof();
    assert_stored(&server, "held.bin", &whole, &want);
    assert_eq!(c.partial("held.bin"), 0);
}

#[test]
fn rest_at_the_bytes_held_with_that_size_completes_at_once() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(109, 1000);
    let held = upload_and_break(&server, "prefix", &data, 0, 600, Break::Close);
    // The whole file is what is held: `150 0`, then `226` for those bytes.
    let prefix = &data[..held as usize];
    let mut c = server.alice();
    resume_with_digest(&mut c, "prefix", prefix, held, &sha256_hex(prefix));
    assert_stored(&server, "prefix", prefix, &sha256_hex(prefix));
}

#[test]
fn refused_resumes_leave_the_partial_unchanged_in_the_documented_order() {
    let server = TestServer::builder()
        .args(["--max-file-size", "1000000"])
        .start();
    let data = pseudo_random_bytes(110, 600_000);
    let k = Rng::new(110).range(1, 500_000);
    let held = upload_and_break(&server, "e.bin", &data, 0, k, Break::Close);
    let mut c = server.alice();
    let mut refused = |rest: u64, put: &str| {
        c.rest(rest);
        let reply = c.cmd(put);
        assert_eq!(c.partial("e.bin"), held, "after REST {rest} + {put}");
        reply
    };
    // 552 comes first, even with an offset past the size and past held.
    assert_eq!(refused(held, "PUT 1000001 e.bin").0, 552);
    assert_eq!(refused(2_000_000, "PUT 1000001 e.bin").0, 552);
    // Offset past the size.
    assert_eq!(
        refused(600_001, "PUT 600000 e.bin"),
        (
            501,
            "offset 600001 is past the end of the file (600000 bytes)".to_string()
        )
    );
    // Offset past the bytes held.
    assert_eq!(
        refused(held + 1, "PUT 600000 e.bin"),
        (
            501,
            format!(
                "offset {} is past the {held} bytes held for this upload",
                held + 1
            )
        )
    );
    // The name is not a regular file: 550 before the bytes held are
    // checked, after the size.
    let dir = server.user_dir(ALICE).join("e.bin");
    fs::create_dir(&dir).unwrap();
    assert_eq!(refused(held, "PUT 600000 e.bin").0, 550);
    assert_eq!(refused(held + 1, "PUT 600000 e.bin").0, 550);
    assert_eq!(refused(600_001, "PUT 600000 e.bin").0, 501);
    fs::remove_dir(&dir).unwrap();
    // A bad name is refused before anything else.
    assert_eq!(refused(held, "PUT 600000 a//b").0, 553);

    let kept = fs::read(server.partial_path(ALICE, "e.bin")).unwrap();
    assert_same_bytes(&kept, &data[..held as usize], "partial after refusals");
    // Each refused PUT used up its REST: a PUT now is a fresh upload.
    c.rest(held + 1);
    assert_eq!(c.cmd("PUT 600000 e.bin").0, 501);
    c.put("e.bin", &data);
    assert_stored(&server, "e.bin", &data, &sha256_hex(&data));
}

#[test]
fn partial_needs_a_valid_name() {
    let server = TestServer::start();
    let mut c = server.alice();
    assert_eq!(c.cmd("PARTIAL").0, 501);
    assert_eq!(c.cmd("PARTIAL ").0, 501);
    assert_eq!(c.cmd("PARTIAL a//b").0, 553);
    // A path whose folder does not exist holds nothing.
    assert_eq!(c.partial("a/b"), 0);
    assert_eq!(c.cmd("PARTIAL ..").0, 553);
    assert_eq!(c.partial("never uploaded"), 0);
}

#[test]
fn partial_is_private_to_its_user() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(111, 200_000);
    let held = upload_and_break(&server, "mine.bin", &data, 0, 123_456, Break::Close);
    let mut bob = server.bob();
    assert_eq!(bob.partial("mine.bin"), 0);
    bob.rest(held);
    assert_eq!(
        bob.cmd("PUT 200000 mine.bin"),
        (
            501,
            format!("offset {held} is past the 0 bytes held for this upload")
        )
    );
    // Bob's own complete upload of the name leaves alice's partial alone.
    let bobs = pseudo_random_bytes(112, 5000);
    bob.put("mine.bin", &bobs);
    let mut alice = server.alice();
    assert_eq!(alice.partial("mine.bin"), held);
    resume_with_digest(&mut alice, "mine.bin", &data, held, &sha256_hex(&data));
    assert_stored(&server, "mine.bin", &data, &sha256_hex(&data));
    assert_eq!(bob.get("mine.bin"), bobs);
    assert_eq!(bob.hash("mine.bin"), sha256_hex(&bobs));
}

#[test]
fn fresh_put_replaces_the_partial_only_once_complete_and_del_leaves_it() {
    let server = TestServer::start();
    let first = pseudo_random_bytes(113, 100_000);
    let second = pseudo_random_bytes(114, 80_000);
    let third = pseudo_random_bytes(115, 90_000);
    let held = upload_and_break(&server, "f.bin", &first, 0, 60_000, Break::Close);
    let mut c = server.alice();

    // A fresh PUT in progress leaves the partial alone...
    let mut up = server.alice();
    up.start_put("f.bin", second.len());
    up.send_raw(&second[..1000]);
    server.wait_tmp_bytes(1000, NOTICE);
    assert_eq!(c.partial("f.bin"), held);
    // ...and removes it once complete.
    up.send_raw(&second[1000..]);
    assert_eq!(up.read_reply(), (226, stored(&second)));
    assert_stored(&server, "f.bin", &second, &sha256_hex(&second));

    // DEL does not touch a partial of the same name.
    let held = upload_and_break(&server, "f.bin", &first, 0, 70_000, Break::Close);
    c.expect("DEL f.bin", 250);
    assert_eq!(c.partial("f.bin"), held);
    c.expect("GET f.bin", 550);
    c.expect("HASH f.bin", 550);

    // A newer interrupted upload replaces the partial.
    let held = upload_and_break(&server, "f.bin", &third, 0, 20_000, Break::Close);
    assert_eq!(c.partial("f.bin"), held);
    resume_with_digest(&mut c, "f.bin", &third, held, &sha256_hex(&third));
    assert_stored(&server, "f.bin", &third, &sha256_hex(&third));
}

#[test]
fn only_one_session_continues_a_partial_and_a_broken_resume_keeps_the_new_total() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(116, 500_000);
    let held = upload_and_break(&server, "one.bin", &data, 0, 100_000, Break::Close);

    let mut first = server.alice();
    first.rest(held);
    first.send_line("PUT 500000 one.bin");
    assert_eq!(first.read_reply(), (150, (500_000 - held).to_string()));
    first.send_raw(&data[held as usize..250_000]);
    server.wait_tmp_bytes(250_000, NOTICE);

    // While it runs, nobody else can continue the same partial.
    let mut second = server.alice();
    second.rest(held);
    let (code, text) = second.cmd("PUT 500000 one.bin");
    assert_eq!(
        code, 501,
        "a second session continuing the same partial got `{code} {text}`"
    );

    // Broken again: the partial now holds everything received.
    drop(first);
    server.assert_tmp_empty_within(NOTICE);
    assert_eq!(second.wait_partial("one.bin", 250_000, NOTICE), 250_000);
    let kept = fs::read(server.partial_path(ALICE, "one.bin")).unwrap();
    assert_same_bytes(&kept, &data[..250_000], "partial after a broken resume");
    resume_with_digest(&mut second, "one.bin", &data, 250_000, &sha256_hex(&data));
    assert_stored(&server, "one.bin", &data, &sha256_hex(&data));
}

#[test]
fn expect_covers_the_whole_file_of_a_resumed_upload() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(117, 300_000);
    let held = upload_and_break(&server, "x.bin", &data, 0, 111_111, Break::Close);
    let mut c = server.alice();
    // EXPECT, REST and PUT pipelined in one write.
    c.send_raw(
        format!(
            "EXPECT sha256={}\nREST {held}\nPUT 300000 x.bin\n",
            sha256_hex(&data)
        )
        .as_bytes(),
    );
    assert_eq!(c.read_code(), 200);
    assert_eq!(c.read_code(), 350);
    assert_eq!(c.read_reply(), (150, (300_000 - held).to_string()));
    c.send_raw(&data[held as usize..]);
    assert_eq!(c.read_reply(), (226, stored(&data)));
    assert_stored(&server, "x.bin", &data, &sha256_hex(&data));

    // The bytes held are not the start of the file sent now: EXPECT with
    // the digest of the whole file catches it, and nothing is kept.
    let held = upload_and_break(&server, "w.bin", &data, 0, 111_111, Break::Close);
    let other = pseudo_random_bytes(118, 300_000);
    let mut mixed = data[..held as usize].to_vec();
    mixed.extend_from_slice(&other[held as usize..]);
    c.expect_sha256(&sha256_hex(&other));
    let reply = c.resume_put_reply("w.bin", &other, held);
    assert_eq!(
        reply,
        (
            451,
            format!(
                "checksum mismatch: expected sha256={}, received sha256={}; upload discarded",
                sha256_hex(&other),
                sha256_hex(&mixed)
            )
        )
    );
    assert_eq!(c.partial("w.bin"), 0, "a mismatched upload was kept");
    c.expect("GET w.bin", 550);
    server.assert_tmp_empty();
    c.put("w.bin", &other);
    assert_stored(&server, "w.bin", &other, &sha256_hex(&other));
}

#[test]
fn uploads_that_fail_or_mismatch_are_not_kept_as_partials() {
    let server = TestServer::start();
    let mut c = server.alice();
    // Cannot be stored: the name became a directory during the upload.
    c.start_put("target", 10);
    c.send_raw(b"01234");
    server.wait_tmp_bytes(5, NOTICE);
    fs::create_dir(server.user_dir(ALICE).join("target")).unwrap();
    c.send_raw(b"56789");
    assert_eq!(c.read_code(), 451);
    assert_eq!(c.partial("target"), 0);
    assert!(!server.partial_path(ALICE, "target").exists());
    server.assert_tmp_empty();

    // Checksum mismatch.
    let data = pseudo_random_bytes(119, 50_000);
    c.expect_sha256(&sha256_hex(b"something else"));
    assert_eq!(c.put_reply(b"sum.bin", &data).0, 451);
    assert_eq!(c.partial("sum.bin"), 0);
    assert!(!server.partial_path(ALICE, "sum.bin").exists());
    c.expect("GET sum.bin", 550);
    c.expect("HASH sum.bin", 550);
    server.assert_tmp_empty();
    c.noop();
}

// --- Restarts and expiry ----------------------------------------------------

#[test]
fn partial_survives_a_graceful_restart() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(120, 700_001);
    let k = Rng::new(120).range(1, data.len() as u64);
    let held = upload_and_break(&server, "restart.bin", &data, 0, k, Break::Close);

    let server = server.stop_and_restart();
    let mut c = server.alice();
    assert_eq!(c.partial("restart.bin"), held);
    c.expect("GET restart.bin", 550);
    resume_with_digest(&mut c, "restart.bin", &data, held, &sha256_hex(&data));
    assert_stored(&server, "restart.bin", &data, &sha256_hex(&data));
}

#[test]
fn partial_survives_kill_9_after_the_break_but_an_upload_cut_by_the_crash_is_not_kept() {
    let server = TestServer::start();
    let data = pseudo_random_bytes(121, 600_000);
    let k = Rng::new(121).range(1, data.len() as u64);
    let held = upload_and_break(&server, "kept.bin", &data, 0, k, Break::Close);

    // Another upload is running when the server dies.
    let old = pseudo_random_bytes(122, 10_000);
    let new = pseudo_random_bytes(123, 500_000);
    let mut setup = server.alice();
    setup.put("cut.bin", &old);
    let mut running = server.alice();
    running.start_put("cut.bin", new.len());
    running.send_raw(&new[..200_000]);
    server.wait_tmp_bytes(200_000, NOTICE);

    let server = server.crash_and_restart();
    drop(running);
    let mut c = server.alice();
    assert_eq!(c.partial("cut.bin"), 0, "an upload cut by a crash was kept");
    assert_eq!(c.get("cut.bin"), old);
    assert_eq!(c.partial("kept.bin"), held);
    resume_with_digest(&mut c, "kept.bin", &data, held, &sha256_hex(&data));
    assert_stored(&server, "kept.bin", &data, &sha256_hex(&data));
}

#[test]
fn upload_stopped_when_the_drain_ends_is_kept_and_resumed_after_restart() {
    let mut server = TestServer::builder()
        .args(["--drain-timeout", "0.5"])
        .start();
    let old = pseudo_random_bytes(124, 20_000);
    let data = pseudo_random_bytes(125, 400_003);
    let mut setup = server.alice();
    setup.put("drained.bin", &old);
    drop(setup);
    let k = Rng::new(125).range(1, data.len() as u64);
    let mut up = server.alice();
    up.start_put("drained.bin", data.len());
    up.send_raw(&data[..k as usize]);
    server.wait_tmp_bytes(k, NOTICE);

    let start = Instant::now();
    server.signal(Signal::SIGINT);
    server.expect_clean_exit(start, Duration::from_secs(5));
    expect_421_or_eof(&mut up, "uploader");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("drained.bin")).unwrap(),
        old
    );

    let server = server.restart_with(["--drain-timeout", "0.5"]);
    let mut c = server.alice();
    assert_eq!(c.partial("drained.bin"), k);
    assert_eq!(c.get("drained.bin"), old);
    let kept = fs::read(server.partial_path(ALICE, "drained.bin")).unwrap();
    assert_same_bytes(&kept, &data[..k as usize], "partial kept at drain end");
    resume_with_digest(&mut c, "drained.bin", &data, k, &sha256_hex(&data));
    assert_stored(&server, "drained.bin", &data, &sha256_hex(&data));
}

#[test]
fn expired_partial_is_treated_as_absent() {
    let server = TestServer::builder().partial_ttl("3").start();
    let data = pseudo_random_bytes(126, 100_000);
    let held = upload_and_break(&server, "old.bin", &data, 0, 40_000, Break::Close);
    // The last byte arrived before this point.
    let broken = Instant::now();
    assert_eq!(held, 40_000);
    let left = Duration::from_millis(3500).saturating_sub(broken.elapsed());
    thread::sleep(left);

    let mut c = server.alice();
    assert_eq!(c.partial("old.bin"), 0, "an expired partial is still held");
    c.rest(held);
    assert_eq!(
        c.cmd("PUT 100000 old.bin"),
        (
            501,
            format!("offset {held} is past the 0 bytes held for this upload")
        )
    );
    c.put("old.bin", &data);
    assert_stored(&server, "old.bin", &data, &sha256_hex(&data));
}

#[test]
fn expired_partial_is_removed_at_start() {
    let mut server = TestServer::start();
    let data = pseudo_random_bytes(127, 100_000);
    let held = upload_and_break(&server, "stale.bin", &data, 0, 50_000, Break::Close);
    assert_eq!(held, 50_000);
    server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(5));
    thread::sleep(Duration::from_millis(1300));

    let server = server.restart_with(["--partial-ttl", "1"]);
    assert!(
        !server.partial_path(ALICE, "stale.bin").exists(),
        "an expired partial was not removed at start-up"
    );
    let mut c = server.alice();
    assert_eq!(c.partial("stale.bin"), 0);
}
