//! kill -9 in the middle of uploads: nothing partial under a final name, and
//! the next start removes what the dead process left behind.

use std::fs;
use std::time::Duration;

use crate::common::*;

#[test]
fn kill_9_mid_upload_keeps_old_version_and_restart_removes_partials() {
    let server = TestServer::builder().with_fsync().start();
    let old = pseudo_random_bytes(5, 100_000);
    let mut setup = server.alice();
    setup.put("doc.bin", &old);

    // One overwrite and one new file, both half sent when the server dies.
    let mut overwrite = server.alice();
    overwrite.start_put("doc.bin", 200_000);
    overwrite.send_raw(&pseudo_random_bytes(6, 150_000));
    let mut fresh = server.bob();
    fresh.start_put("new.bin", 1_000_000);
    fresh.send_raw(&[1u8; 300_000]);
    let arrived = wait_until(Duration::from_secs(5), || {
        let partials = server.tmp_entries();
        partials.len() == 2
            && partials
                .iter()
                .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum::<u64>()
                == 450_000
    });
    assert!(
        arrived,
        "the partial uploads never reached the server's disk"
    );

    let server = server.crash_and_restart();

    server.assert_tmp_empty();
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("doc.bin")).unwrap(),
        old
    );
    assert!(!server.user_dir(BOB).join("new.bin").exists());
    let mut alice = server.alice();
    assert_eq!(sha256_hex(&alice.get("doc.bin")), sha256_hex(&old));
    let mut bob = server.bob();
    assert_eq!(bob.cmd("GET new.bin").0, 550);
}
