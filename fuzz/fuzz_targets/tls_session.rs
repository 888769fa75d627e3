//! The server side of the TLS layer (`ferry::internal::tls::Transport`) on arbitrary
//! bytes, with a line session behind it, driven as the reactor drives it.
//!
//! The first byte picks the mode and the sizes of reads and writes:
//! - even: the rest is the raw byte stream from the network. It cannot
//!   complete a handshake (that takes the server's random), so the session
//!   must never receive a byte; the layer either waits for more, ends at
//!   EOF, or fails, and what it sends stays within one handshake flight.
//! - odd: an in-memory rustls client completes a real handshake, then sends
//!   the rest as application data in records of fuzzed sizes. Everything
//!   the session receives is exactly what the client sent, in order;
//!   everything the client decrypts is exactly what the session wrote; the
//!   records waiting in the layer stay within its limit; and after the
//!   client's close_notify the session sees the end of the stream.
//!
//! rustls's own fuzzers cover its parsers in depth; this target covers what
//! ferry adds around them: the readiness contract (`WouldBlock` only when
//! the socket said so and no plaintext is left), back-pressure, and the
//! hand-over to the session.

#![no_main]
#![forbid(unsafe_code)]

mod common;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::show;
use ferry::Users;
use ferry::internal::session::line::Session;
use ferry::internal::session::{Front, Services};
use ferry::internal::storage::{Options, Storage};
use ferry::internal::tls::{Acceptor, Front as TlsFront, SEND_LIMIT, TlsFiles, Transport};
use libfuzzer_sys::fuzz_target;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// Largest TLS record on the wire.
const RECORD: usize = 16 * 1024 + 256;

fn acceptor() -> &'static Acceptor {
    static ACCEPTOR: OnceLock<Acceptor> = OnceLock::new();
    ACCEPTOR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        ferry::internal::tls::make_self_signed(&cert, &key).unwrap();
        let files = TlsFiles {
            cert,
            key,
            client_ca: None,
        };
        Acceptor::load(&files, Duration::from_secs(10)).unwrap()
    })
}

/// The network as the server sees it: reads take from `incoming` at most
/// `read_step` bytes at a time (`WouldBlock` when it is empty, `Ok(0)` once
/// `eof`), writes go to `outgoing` at most `write_step` at a time.
struct Wire {
    incoming: VecDeque<u8>,
    eof: bool,
    outgoing: Vec<u8>,
    read_step: usize,
    write_step: usize,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.read_step).min(self.incoming.len());
        for (slot, byte) in buf.iter_mut().zip(self.incoming.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.write_step);
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.outgoing.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn services(root: &std::path::Path) -> Services {
    let options = Options {
        fsync: false,
        ..Options::default()
    };
    let storage = Storage::open(&root.join("storage"), options).unwrap();
    let users = Users::parse(b"alice:pw\n").unwrap();
    let mut services = Services::new(users, storage, 64 * 1024);
    services.policy.login_delay = Duration::ZERO;
    services
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    if seed % 2 == 0 {
        raw(rest, seed);
    } else {
        handshaken(rest, seed);
    }
});

/// Arbitrary bytes from the network: no plaintext ever reaches the session.
fn raw(input: &[u8], seed: u8) {
    let mut transport = Transport::tls(
        acceptor()
            .layer(TlsFront::Line, Instant::now())
            .unwrap(),
    );
    let mut wire = Wire {
        incoming: input.iter().copied().collect(),
        eof: seed % 4 == 0,
        outgoing: Vec::new(),
        read_step: usize::from(seed / 4) + 1,
        write_step: usize::MAX,
    };
    let mut buf = [0u8; 4096];
    for _ in 0..input.len() + 2 {
        match transport.read(&mut wire, &mut buf) {
            // EOF, or a close_notify alert the peer may send in the clear
            // before the handshake is done.
            Ok(0) => break,
            Ok(n) => panic!("{n} bytes of plaintext from {}", show(input)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                assert!(wire.incoming.is_empty(), "WouldBlock with bytes left to read");
                break;
            }
            Err(_) => {
                // A failure is final: nothing more goes out after it.
                let sent = wire.outgoing.len();
                assert!(!transport.wants_write());
                let _ = transport.flush(&mut wire);
                assert_eq!(wire.outgoing.len(), sent);
                break;
            }
        }
    }
    // At most the server's first flight (hello, certificate, finished) or
    // an alert.
    assert!(wire.outgoing.len() < 8 * 1024, "{} bytes sent", wire.outgoing.len());
}

/// Accepts the server's certificate without checking it: the target tests
/// the layer, not the trust.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ECDSA_NISTP256_SHA256]
    }
}

fn client_config(tls12: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    Arc::new(config)
}

/// A real client behind a handshake; the input is its application data.
fn handshaken(input: &[u8], seed: u8) {
    let root = tempfile::tempdir().unwrap();
    let services = services(root.path());
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut session = Session::new(peer, &services);
    let mut transport = Transport::tls(
        acceptor()
            .layer(TlsFront::Line, Instant::now())
            .unwrap(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(client_config(seed & 2 != 0), name).unwrap();
    let mut wire = Wire {
        incoming: VecDeque::new(),
        eof: false,
        outgoing: Vec::new(),
        read_step: usize::from(seed / 8 % 8) * 997 + 1,
        // Sometimes a socket that takes little, so the layer's limit and
        // the session's back-pressure are reached.
        write_step: if seed & 4 != 0 { 700 } else { usize::MAX },
    };
    let chunk = usize::from(seed / 64) * 3001 + 1;
    let mut to_send = input;
    let mut sent_plain: Vec<u8> = Vec::new();
    let mut received_plain: Vec<u8> = Vec::new();
    let mut session_wrote: Vec<u8> = Vec::new();
    let mut client_got: Vec<u8> = Vec::new();
    let mut closed = false;
    let mut saw_end = false;
    let mut buf = vec![0u8; 128 * 1024];
    for _round in 0..10_000 {
        // The client: its records to the server, the server's to it.
        if !client.is_handshaking() && !to_send.is_empty() {
            let n = chunk.min(to_send.len());
            client.writer().write_all(&to_send[..n]).unwrap();
            sent_plain.extend_from_slice(&to_send[..n]);
            to_send = &to_send[n..];
        } else if !client.is_handshaking() && !closed {
            client.send_close_notify();
            closed = true;
        }
        while client.wants_write() {
            let mut out = Vec::new();
            client.write_tls(&mut out).unwrap();
            wire.incoming.extend(out);
        }
        if !wire.outgoing.is_empty() {
            let bytes = std::mem::take(&mut wire.outgoing);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
                client.process_new_packets().expect("the server's records are valid");
            }
            let _ = client.reader().read_to_end(&mut client_got);
        }
        // The server, as the reactor drives it.
        let mut progressed = false;
        if transport.wants_write() && transport.flush(&mut wire).is_ok() {
            progressed = true;
        }
        let out = session.output().to_vec();
        if !out.is_empty() {
            match transport.write(&mut wire, &out) {
                Ok(n) => {
                    session_wrote.extend_from_slice(&out[..n]);
                    session.output_written(n, &services);
                    progressed = true;
                }
                Err(err) => assert_eq!(err.kind(), io::ErrorKind::WouldBlock),
            }
        }
        let limit = session.read_limit().min(buf.len());
        if limit > 0 && !saw_end {
            match transport.read(&mut wire, &mut buf[..limit]) {
                Ok(0) => {
                    assert!(closed, "the end before the client's close_notify");
                    saw_end = true;
                    session.receive_eof(&services);
                    progressed = true;
                }
                Ok(n) => {
                    assert!(n <= limit);
                    received_plain.extend_from_slice(&buf[..n]);
                    session.receive(&buf[..n], &services);
                    progressed = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    assert!(wire.incoming.is_empty(), "WouldBlock with bytes left");
                }
                Err(err) => panic!("the client's records failed: {err}"),
            }
        }
        while session.has_work() {
            session.work(&services);
            progressed = true;
        }
        assert!(
            received_plain == sent_plain[..received_plain.len()],
            "the session got other bytes than the client sent"
        );
        assert!(
            client_got == session_wrote[..client_got.len()],
            "the client got other bytes than the session wrote"
        );
        if session.is_done() {
            transport.close_notify();
            if !transport.wants_write() {
                break;
            }
        }
        if !progressed && wire.incoming.is_empty() && wire.outgoing.is_empty() && closed {
            if saw_end || session.read_limit() == 0 {
                break;
            }
        }
        // Bounded: the socket's side of the layer and the session's
        // output buffer.
        assert!(wire.outgoing.len() <= SEND_LIMIT + 2 * RECORD);
    }
    // Whatever the session wrote and the layer accepted reached the client.
    if !wire.outgoing.is_empty() {
        let bytes = std::mem::take(&mut wire.outgoing);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
        let _ = client.reader().read_to_end(&mut client_got);
    }
}
