//! `client::Connection` against an arbitrary server: the bytes a hostile or
//! broken server could send, in reads of arbitrary sizes.
//!
//! Input: `[n] [n op bytes] [read size] <server bytes>`. After the greeting
//! and a login, each op byte picks one client call (`LIST`, `VIEW`, `HASH`,
//! `PARTIAL`, `DEL`, `NOOP`, a `GET` from an offset, a `PUT` of a few
//! bytes); the run stops at the first error that leaves the stream out of
//! step. Beyond "no panic" it checks that:
//!
//! - everything the client writes, outside a `PUT`'s payload, is command
//!   lines ending in CRLF with no other CR or LF, whose verbs are the ones
//!   that call sends, in order;
//! - a `PUT` sends at most the bytes the `150` asked for, and only after it;
//! - a `GET` that succeeds wrote exactly the bytes it reports, and hashed
//!   exactly those; a `VIEW` never returns more than 1024 bytes; `LIST`
//!   entries hold no line break;
//! - a `Remote` error carries a 4xx/5xx reply other than `421`.

#![no_main]
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::path::Path;

use ferry::client::{Connection, Error, ErrorKind};
use ferry::internal::integrity::Hasher;
use libfuzzer_sys::fuzz_target;

/// The two ends of the wire: the server's bytes to read, the client's
/// bytes written.
struct Wire<'a> {
    from_server: &'a [u8],
    read_size: usize,
    to_server: Vec<u8>,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.read_size).min(self.from_server.len());
        buf[..n].copy_from_slice(&self.from_server[..n]);
        self.from_server = &self.from_server[n..];
        Ok(n)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_server.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8).min(rest.len());
    let (ops, rest) = rest.split_at(n);
    let Some((&read_size, server)) = rest.split_first() else {
        return;
    };
    let wire = Wire {
        from_server: server,
        read_size: usize::from(read_size).max(1),
        to_server: Vec::new(),
    };
    let Ok(mut conn) = Connection::on(wire) else {
        return;
    };
    let mut written = 0;
    let login = conn.login("alice", "pw");
    check_lines(&mut conn, &mut written, &["AUTH"]);
    if login.is_err() {
        return;
    }
    for &op in ops {
        if !step(&mut conn, &mut written, op) {
            return;
        }
    }
});

/// Runs one client call; false when the stream is out of step.
fn step(conn: &mut Connection<Wire<'_>>, written: &mut usize, op: u8) -> bool {
    let arg = u64::from(op >> 3);
    let result: Result<(), Error> = match op % 8 {
        0 => conn.list().map(|entries| {
            for entry in entries {
                assert!(!entry.name.contains(['\n', '\r']), "{entry:?}");
            }
        }),
        1 => conn.view("a b").map(|bytes| assert!(bytes.len() <= 1024)),
        2 => conn.hash("h").map(drop),
        3 => conn.partial("p").map(drop),
        4 => conn.delete("d").map(drop),
        5 => conn.noop(),
        6 => {
            let mut sink = Vec::new();
            let mut hasher = Hasher::new();
            let got = conn.get(
                "g",
                arg,
                &mut sink,
                Path::new("sink"),
                &mut hasher,
                &mut |_| {},
            );
            if let Ok(n) = got {
                assert_eq!(n, sink.len() as u64);
                assert_eq!(hasher.len(), n);
            }
            check_lines(
                conn,
                written,
                if arg > 0 { &["REST", "GET"] } else { &["GET"] },
            );
            return settle(got.map(drop));
        }
        _ => {
            let payload = vec![b'x'; arg as usize];
            let mut hasher = Hasher::new();
            let got = conn.put(
                "f",
                arg,
                0,
                &mut &payload[..],
                Path::new("payload"),
                None,
                &mut hasher,
                &mut |_| {},
            );
            check_put(conn, written, arg);
            return settle(got.map(drop));
        }
    };
    let verbs: &[&str] = match op % 8 {
        0 => &["LIST"],
        1 => &["VIEW"],
        2 => &["HASH"],
        3 => &["PARTIAL"],
        4 => &["DEL"],
        _ => &["NOOP"],
    };
    check_lines(conn, written, verbs);
    settle(result)
}

/// Whether the session can go on after `result`, checking what a `Remote`
/// error may carry.
fn settle(result: Result<(), Error>) -> bool {
    match result {
        Ok(()) => true,
        Err(Error::Remote { reply, .. }) => {
            assert!(
                (400..=599).contains(&reply.code) && reply.code != 421,
                "{reply}"
            );
            true
        }
        Err(err) => {
            assert!(
                matches!(err.kind(), ErrorKind::Network | ErrorKind::Usage),
                "{err}"
            );
            err.kind() == ErrorKind::Usage
        }
    }
}

/// The bytes written since the last check are command lines: a prefix of
/// `verbs`, in order (a call may stop after any of its lines).
fn check_lines(conn: &mut Connection<Wire<'_>>, written: &mut usize, verbs: &[&str]) {
    let out = &conn.get_mut().to_server[*written..];
    *written += out.len();
    let lines = split_lines(out);
    assert!(lines.len() <= verbs.len(), "{lines:?} for {verbs:?}");
    for (line, verb) in lines.iter().zip(verbs) {
        assert!(line.starts_with(verb), "{line:?} is not {verb}");
    }
}

/// A `PUT` writes its line, then at most `size` payload bytes.
fn check_put(conn: &mut Connection<Wire<'_>>, written: &mut usize, size: u64) {
    let out = &conn.get_mut().to_server[*written..];
    *written += out.len();
    let line = format!("PUT {size} f\r\n");
    if out.is_empty() {
        return;
    }
    assert!(
        out.starts_with(line.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(out)
    );
    assert!((out.len() - line.len()) as u64 <= size);
}

/// Splits written bytes into lines ending in CRLF; nothing may be left over
/// and no line may hold another CR or LF.
fn split_lines(out: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(out).expect("commands are UTF-8");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    text.split_terminator("\r\n")
        .map(|line| {
            assert!(!line.contains(['\r', '\n']), "{line:?}");
            line.to_string()
        })
        .collect()
}
