//! SHA-256 integrity: the digest in `226`, `HASH` (from the kept record, or
//! by reading a file that arrived some other way) and `EXPECT`.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

#[test]
fn new_commands_before_login_get_530() {
    let server = TestServer::start();
    let mut setup = server.alice();
    let data = pseudo_random_bytes(201, 3000);
    setup.put("f", &data);

    let mut c = server.connect();
    let digest = sha256_hex(b"anything");
    for line in [
        "HASH f".to_string(),
        "HASH".to_string(),
        "HASH a/b".to_string(),
        "PARTIAL f".to_string(),
        "PARTIAL".to_string(),
        "REST 5".to_string(),
        "REST".to_string(),
        "REST abc".to_string(),
        format!("EXPECT sha256={digest}"),
        "EXPECT".to_string(),
        "EXPECT junk".to_string(),
        "hash f".to_string(),
    ] {
        assert_eq!(
            c.cmd(&line),
            (530, "not logged in".to_string()),
            "{line:?} before AUTH"
        );
    }
    // Nothing of it sticks to the session once logged in.
    c.login(ALICE, ALICE_PW);
    assert_same_bytes(&c.get("f"), &data, "GET after REST before login");
    c.put("g", b"not what EXPECT said");
}

#[test]
fn every_put_answers_226_with_the_sha256_of_its_bytes() {
    let server = TestServer::start();
    let mut c = server.alice();
    // Around SHA-256 block and padding boundaries, and the transfer buffer.
    let sizes = [0, 1, 55, 56, 63, 64, 65, 1000, 131_072, 131_073, 300_001];
    for (i, &size) in sizes.iter().enumerate() {
        let data = pseudo_random_bytes(210 + i as u64, size);
        let name = format!("file {size}.bin");
        // `put` asserts exactly `226 stored <size> sha256=<digest>`.
        c.put(&name, &data);
        assert_eq!(c.hash(&name), sha256_hex(&data), "HASH {name:?}");
    }
    // The exact reply for 0 bytes, as the protocol shows it.
    assert_eq!(
        c.put_reply(b"empty", b""),
        (226, format!("stored 0 sha256={}", sha256_hex(b"")))
    );
    // An overwrite answers the digest of the new content.
    c.put("file 1.bin", b"xy");
    assert_eq!(c.hash("file 1.bin"), sha256_hex(b"xy"));
}

#[test]
fn hash_of_an_uploaded_file_comes_from_its_record_until_the_file_changes() {
    let server = TestServer::start();
    let mut c = server.alice();
    let data = pseudo_random_bytes(202, 200_000);
    let real = sha256_hex(&data);
    c.put("doc.bin", &data);
    let record = server.sum_record(ALICE, "doc.bin");
    assert_eq!(recorded_sha256(&record), real);
    assert_eq!(c.hash("doc.bin"), real);

    // A forged digest in the record is believed: HASH did not read the file.
    let fake = sha256_hex(b"not the content of doc.bin");
    forge_recorded_sha256(&record, &fake);
    assert_eq!(
        c.hash("doc.bin"),
        fake,
        "HASH re-read the file instead of answering from its record"
    );

    // Changed behind the server's back (another size): the record is stale
    // and the real digest of the new content is answered, then kept.
    let changed = pseudo_random_bytes(203, 123_457);
    fs::write(server.user_dir(ALICE).join("doc.bin"), &changed).unwrap();
    assert_eq!(c.hash("doc.bin"), sha256_hex(&changed));
    assert_eq!(recorded_sha256(&record), sha256_hex(&changed));
    assert_eq!(c.hash("doc.bin"), sha256_hex(&changed));
}

#[test]
fn hash_sees_same_size_changes_made_behind_the_servers_back() {
    let server = TestServer::start();
    let mut c = server.alice();
    let dir = server.user_dir(ALICE);
    let a = pseudo_random_bytes(204, 10_000);
    let b = pseudo_random_bytes(205, 10_000);
    let d = pseudo_random_bytes(206, 10_000);

    // Replaced by another file of the same size (a rename over it).
    c.put("swapped", &a);
    fs::write(dir.join("swapped.new"), &b).unwrap();
    fs::rename(dir.join("swapped.new"), dir.join("swapped")).unwrap();
    assert_eq!(c.hash("swapped"), sha256_hex(&b));

    // Rewritten in place with the same size, later than the upload (by
    // more than any file system's timestamp granularity).
    c.put("rewritten", &a);
    assert_eq!(c.hash("rewritten"), sha256_hex(&a));
    thread::sleep(Duration::from_millis(1100));
    fs::write(dir.join("rewritten"), &d).unwrap();
    assert_eq!(c.hash("rewritten"), sha256_hex(&d));
}

#[test]
fn hash_of_planted_files_is_computed_and_then_kept() {
    let server = TestServer::start();
    let small = pseudo_random_bytes(207, 3 * 128 * 1024 + 5);
    server.plant_file(ALICE, "planted.bin", &small);
    server.plant_file(ALICE, "empty", b"");
    let mut c = server.alice();
    assert_eq!(c.hash("planted.bin"), sha256_hex(&small));
    assert_eq!(c.hash("empty"), sha256_hex(b""));

    // The answer is kept: a forged record is now believed.
    let record = server.sum_record(ALICE, "planted.bin");
    assert_eq!(recorded_sha256(&record), sha256_hex(&small));
    let fake = sha256_hex(b"fake");
    forge_recorded_sha256(&record, &fake);
    assert_eq!(c.hash("planted.bin"), fake);
    // GET is unaffected by records.
    assert_same_bytes(&c.get("planted.bin"), &small, "GET planted.bin");
}

#[test]
fn hash_of_missing_or_irregular_file_is_refused() {
    let server = TestServer::start();
    let mut c = server.alice();
    let dir = server.user_dir(ALICE);
    fs::create_dir(dir.join("sub")).unwrap();
    let outside = server.root().join("outside.txt");
    fs::write(&outside, b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

    assert_eq!(c.cmd("HASH nosuch"), (550, "no such file".to_string()));
    assert_eq!(c.cmd("HASH sub").0, 550);
    assert_eq!(c.cmd("HASH link").0, 550);
    assert_eq!(c.cmd("HASH").0, 501);
    assert_eq!(c.cmd("HASH ").0, 501);
    assert_eq!(c.cmd("HASH a/b"), (550, "no such folder".to_string()));
    assert_eq!(c.cmd("HASH a//b").0, 553);
    assert_eq!(c.cmd("HASH ..").0, 553);
    // A deleted file has no digest any more.
    c.put("gone", b"soon gone");
    c.expect("DEL gone", 250);
    assert_eq!(c.cmd("HASH gone").0, 550);
    c.noop();
}

#[test]
fn hash_of_a_large_planted_file_does_not_stall_other_sessions() {
    let _measuring = timing_sensitive();
    let server = TestServer::start();
    // 1 MiB of data, then zeros up to 64 MiB (sparse on disk).
    const SIZE: usize = 64 << 20;
    let head = pseudo_random_bytes(208, 1 << 20);
    let path = server.plant_file(ALICE, "big.img", &head);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(SIZE as u64)
        .unwrap();
    let mut hashing = server.alice();
    // Reading 64 MiB in a debug build on a busy machine takes a while.
    hashing.set_read_timeout(Duration::from_secs(60));
    let mut other = server.bob();

    let hashed = AtomicBool::new(false);
    let (first, second, took, want, while_hashing) = thread::scope(|s| {
        let want = s.spawn(|| {
            let mut content = head.clone();
            content.resize(SIZE, 0);
            sha256_hex(&content)
        });
        // A NOOP pipelined behind HASH is answered after it.
        hashing.send_raw(b"HASH big.img\nNOOP\n");
        let sent = Instant::now();
        let (hashing, hashed) = (&mut hashing, &hashed);
        let answers = s.spawn(move || {
            let first = hashing.read_reply();
            hashed.store(true, Ordering::SeqCst);
            let took = sent.elapsed();
            (first, hashing.read_reply(), took)
        });
        // Long enough for the HASH to start; the hashing itself is short
        // (64 MiB at the optimised hash's speed), so the probes below are
        // close together.
        thread::sleep(Duration::from_millis(5));

        // Meanwhile the other session is served promptly.
        let mut while_hashing = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !hashed.load(Ordering::SeqCst) && Instant::now() < deadline {
            let t = Instant::now();
            other.noop();
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "NOOP took {:?} while another session hashed",
                t.elapsed()
            );
            if !hashed.load(Ordering::SeqCst) {
                while_hashing += 1;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let (first, second, took) = answers.join().unwrap();
        (first, second, took, want.join().unwrap(), while_hashing)
    });
    assert_eq!(first, (213, format!("sha256={want}")), "HASH big.img");
    assert_eq!(second, (200, "ok".to_string()), "NOOP behind HASH");
    assert!(
        while_hashing >= 3,
        "only {while_hashing} NOOPs were answered during the {took:?} of hashing"
    );
    assert_noops_prompt(&mut other, 3);

    // The digest is kept: asked again, it comes from the record.
    assert_eq!(recorded_sha256(&server.sum_record(ALICE, "big.img")), want);
    let t = Instant::now();
    assert_eq!(hashing.hash("big.img"), want);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "second HASH took {:?}",
        t.elapsed()
    );
}

#[test]
fn session_that_is_hashing_gets_421_at_once_on_shutdown() {
    let mut server = TestServer::builder()
        .args(["--drain-timeout", "10"])
        .start();
    // Far more than can be hashed before the signal (sparse on disk).
    let path = server.plant_file(ALICE, "huge.img", b"");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let mut c = server.alice();
    c.set_read_timeout(Duration::from_secs(20));
    c.send_line("HASH huge.img");
    thread::sleep(Duration::from_millis(100));

    let start = Instant::now();
    server.signal(Signal::SIGINT);
    match c.read_reply_or_eof() {
        ReplyOrEof::Reply(421, _) => {}
        other => panic!("a hashing session got {other:?} at shutdown, expected 421"),
    }
    c.expect_eof();
    let took = server.expect_clean_exit(start, Duration::from_secs(5));
    assert!(
        took < Duration::from_secs(3),
        "shutdown waited {took:?} for a HASH"
    );
}

#[test]
fn expect_with_a_wrong_digest_discards_the_upload_and_keeps_the_old_file() {
    let server = TestServer::start();
    let mut c = server.alice();
    let old = pseudo_random_bytes(220, 40_000);
    let new = pseudo_random_bytes(221, 60_000);
    c.put("doc", &old);
    let wrong = sha256_hex(b"something else entirely");

    c.expect_sha256(&wrong);
    assert_eq!(
        c.put_reply(b"doc", &new),
        (
            451,
            format!(
                "checksum mismatch: expected sha256={wrong}, received sha256={}; upload discarded",
                sha256_hex(&new)
            )
        )
    );
    assert_eq!(c.get("doc"), old);
    assert_eq!(c.hash("doc"), sha256_hex(&old));
    assert_eq!(
        recorded_sha256(&server.sum_record(ALICE, "doc")),
        sha256_hex(&old)
    );
    assert_eq!(fs::read(server.user_dir(ALICE).join("doc")).unwrap(), old);
    let listing = c.list();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].size, old.len() as u64);
    assert_eq!(
        c.partial("doc"),
        0,
        "a mismatched upload was kept as partial"
    );
    server.assert_tmp_empty();

    // A new name stays absent.
    c.expect_sha256(&wrong);
    assert_eq!(c.put_reply(b"fresh", &new).0, 451);
    c.expect("GET fresh", 550);
    assert_eq!(c.partial("fresh"), 0);

    // The EXPECT was used up: the same upload without it is stored.
    c.put("doc", &new);
    assert_eq!(c.hash("doc"), sha256_hex(&new));
    server.assert_tmp_empty();
}

#[test]
fn expect_with_the_right_digest_in_either_case_succeeds() {
    let server = TestServer::start();
    let mut c = server.alice();
    let data = pseudo_random_bytes(222, 77_777);
    let digest = sha256_hex(&data);

    c.expect_sha256(&digest);
    c.put("a", &data);

    // Upper-case hex, upper-case prefix, lower-case verb: the reply is in
    // lower case.
    let upper = digest.to_ascii_uppercase();
    assert_eq!(
        c.cmd(&format!("expect SHA256={upper}")),
        (200, format!("expecting sha256={digest}"))
    );
    c.put("b", &data);
    c.expect_sha256(&upper);
    c.put("c", &data);
    for name in ["a", "b", "c"] {
        assert_eq!(c.hash(name), digest);
        assert_same_bytes(&c.get(name), &data, name);
    }
}

#[test]
fn expect_applies_to_the_next_put_only() {
    let server = TestServer::builder()
        .args(["--max-file-size", "100000"])
        .start();
    let mut c = server.alice();
    let a = pseudo_random_bytes(223, 1000);
    let b = pseudo_random_bytes(224, 2000);
    let wrong = sha256_hex(b"wrong");

    // Used by one PUT, not by the one after it.
    c.expect_sha256(&sha256_hex(&a));
    c.put("a", &a);
    c.put("b", &b);

    // Other commands do not use it up.
    c.expect_sha256(&wrong);
    c.noop();
    c.list();
    assert_eq!(c.get("a"), a);
    assert_eq!(c.hash("a"), sha256_hex(&a));
    assert_eq!(c.put_reply(b"x", &a).0, 451);
    c.expect("GET x", 550);

    // A refused PUT uses it up: over the size limit...
    c.expect_sha256(&wrong);
    assert_eq!(c.cmd("PUT 100001 big").0, 552);
    c.put("y", &a);
    // ...or aimed at a directory.
    fs::create_dir(server.user_dir(ALICE).join("dir")).unwrap();
    c.expect_sha256(&wrong);
    assert_eq!(c.cmd("PUT 1000 dir").0, 550);
    c.put("z", &b);

    // A second EXPECT replaces the first, both ways.
    c.expect_sha256(&wrong);
    c.expect_sha256(&sha256_hex(&a));
    c.put("a2", &a);
    c.expect_sha256(&sha256_hex(&a));
    c.expect_sha256(&wrong);
    assert_eq!(c.put_reply(b"a3", &a).0, 451);
    c.expect("GET a3", 550);
    server.assert_tmp_empty();
}

#[test]
fn malformed_expect_is_501() {
    let server = TestServer::start();
    let mut c = server.alice();
    let hex = sha256_hex(b"malformed");
    let lines = [
        "EXPECT".to_string(),
        "EXPECT ".to_string(),
        "EXPECT sha256=".to_string(),
        format!("EXPECT sha256={}", &hex[..63]),
        format!("EXPECT sha256={hex}0"),
        format!("EXPECT sha256={}g", &hex[..63]),
        format!("EXPECT sha256={hex} "),
        format!("EXPECT sha256={hex} extra"),
        format!("EXPECT sha256= {hex}"),
        format!("EXPECT  sha256={hex}"),
        format!("EXPECT sha256:{hex}"),
        format!("EXPECT sha-256={hex}"),
        format!("EXPECT {hex}"),
        format!("EXPECT md5={}", &hex[..32]),
        format!("EXPECT sha1={}", &hex[..40]),
    ];
    for line in &lines {
        assert_eq!(c.cmd(line).0, 501, "{line:?}");
    }
    // None of them set an expectation.
    c.put("after", b"any content at all");
}

#[test]
fn expect_applies_to_an_empty_upload_too() {
    let server = TestServer::start();
    let mut c = server.alice();
    c.put("e", b"old");
    c.expect_sha256(&sha256_hex(b"old"));
    // `150 0` and at once the verdict.
    assert_eq!(c.cmd("PUT 0 e"), (150, "0".to_string()));
    assert_eq!(
        c.read_reply(),
        (
            451,
            format!(
                "checksum mismatch: expected sha256={}, received sha256={}; upload discarded",
                sha256_hex(b"old"),
                sha256_hex(b"")
            )
        )
    );
    assert_eq!(c.get("e"), b"old");
    c.expect_sha256(&sha256_hex(b""));
    c.put("e", b"");
    assert_eq!(c.hash("e"), sha256_hex(b""));
}
