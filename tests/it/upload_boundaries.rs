//! Upload payloads that take several socket reads, of sizes that are not a
//! multiple of the read size, with more bytes right behind them in the
//! same write (issue 22): the payload never swallows the next command or
//! request, never stops short of it, and what is stored and hashed is the
//! payload exactly.

use std::fs;

use crate::common::*;

/// The most the server reads from a socket at once (its transfer buffer):
/// the sizes below end a payload inside a read, at its end, just before
/// it, and inside the first one.
const READ: usize = 128 * 1024;
const SIZES: [usize; 5] = [3 * READ + 17, 2 * READ, READ - 1, READ + 1, 1];

#[test]
fn line_payload_over_several_reads_leaves_the_commands_behind_it() {
    let server = TestServer::start();
    let mut c = server.alice();
    for (i, size) in SIZES.into_iter().enumerate() {
        let data = pseudo_random_bytes(2200 + i as u64, size);
        let name = format!("up{i}");
        c.send_line(&format!("PUT {size} {name}"));
        assert_eq!(c.read_reply(), (150, size.to_string()));
        let mut wire = data.clone();
        wire.extend_from_slice(format!("HASH {name}\nNOOP\n").as_bytes());
        c.send_raw(&wire);
        assert_eq!(c.read_reply(), (226, stored(&data)), "size {size}");
        assert_eq!(
            c.read_reply(),
            (213, format!("sha256={}", sha256_hex(&data))),
            "size {size}"
        );
        assert_eq!(c.read_code(), 200, "size {size}");
        assert_eq!(fs::read(server.user_dir(ALICE).join(&name)).unwrap(), data);
    }
}

/// The command line, its payload and the next command in one write: the
/// first read holds the line and the start of the payload.
#[test]
fn line_put_its_payload_and_the_next_command_in_one_write() {
    let server = TestServer::start();
    let mut c = server.alice();
    for (i, size) in SIZES.into_iter().enumerate() {
        let data = pseudo_random_bytes(2210 + i as u64, size);
        let name = format!("one{i}");
        let mut wire = format!("PUT {size} {name}\n").into_bytes();
        wire.extend_from_slice(&data);
        wire.extend_from_slice(b"NOOP\n");
        c.send_raw(&wire);
        assert_eq!(c.read_reply(), (150, size.to_string()));
        assert_eq!(c.read_reply(), (226, stored(&data)), "size {size}");
        assert_eq!(c.read_code(), 200, "size {size}");
        assert_eq!(c.get(&name), data);
    }
}

#[test]
fn http_body_over_several_reads_leaves_the_request_behind_it() {
    let (_server, addr) = http_server();
    let mut conn = Conn::open(addr);
    for (i, size) in SIZES.into_iter().enumerate() {
        let data = pseudo_random_bytes(2220 + i as u64, size);
        let target = file_target(&format!("up{i}"));
        let mut wire = put_req(&target, &data);
        wire.extend_from_slice(&alice_req("GET", &target));
        conn.send(&wire);
        let put = conn.response();
        put.assert_status(201, "a PUT with a request behind it");
        let get = conn.response();
        get.assert_status(200, "the GET behind the PUT's body");
        assert_eq!(get.body.len(), size);
        assert!(get.body == data, "size {size}: the stored bytes differ");
    }
}
