//! TLS for every front: certificates, the policy, and the layer between a
//! socket and a session.
//!
//! The layer is rustls's sans-IO state machine: bytes read from the socket
//! go in (`read_tls`), plaintext comes out for the session, the session's
//! replies go in as plaintext and come out as records for the socket
//! (`write_tls`). The reactor still does every read and write; a session
//! never learns whether TLS is on, only what [`Channel`] says about the
//! connection (confidential or not, and whom a client certificate names).
//!
//! ```text
//!   socket ──read──► Layer::read ── read_tls ─► rustls ── plaintext ──► Session::receive
//!   socket ◄─write── Layer::write ◄─ write_tls ─ rustls ◄─ plaintext ── Session::output
//! ```
//!
//! Bounds: rustls keeps at most one record of received plaintext (its
//! `read_tls` refuses more until the session has taken it, and the session
//! takes only its read limit), and [`SEND_LIMIT`] bytes of records to send:
//! when that is full, the session's output stays in the session's own
//! buffer, which is bounded already, and the socket's writability wakes us.
//! rustls shrinks its receive buffer to 4 KiB once it holds no partial
//! record, which is all an idle TLS session keeps besides its keys.
//!
//! Userspace TLS cannot use `sendfile`: a download over TLS is read into the
//! session's output in bounded steps (as without `sendfile`) and encrypted
//! within the connection's byte budget for the turn. kTLS would give
//! `sendfile` back; it is not used (see the README).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::session::Channel;

/// Bytes of encrypted records waiting for the socket before the layer takes
/// no more plaintext: four full records, so a download keeps the socket's
/// send buffer fed between two turns while a client that never reads holds
/// at most this much (plus the session's own bounded output).
pub const SEND_LIMIT: usize = 4 * 16 * 1024 + 1024;
/// Bytes read from the socket in one call that yield no plaintext before
/// the connection is dropped: a peer could otherwise keep the one thread
/// decrypting empty records for as long as it sends them. Counted in bytes,
/// not reads, since a slow link may deliver a record a byte at a time; a
/// legitimate peer never needs more than its largest handshake flight
/// (64 KiB with a client certificate chain) or one record (16 KiB).
const BYTES_WITHOUT_DATA_LIMIT: usize = 128 * 1024;
/// How often the keys that encrypt resumption tickets change: rustls's
/// rotator makes a new key every 6 hours and accepts tickets of the
/// previous one, so a ticket lives at most 12 hours and a stolen ticket
/// key opens at most 12 hours of resumed sessions.
/// Bytes read from the socket at once for rustls: four full records.
/// Held only while bytes flow (see `Layer::read_tls`), so at most this much
/// per busy connection and nothing per idle one.
const READ_AHEAD: usize = 4 * (16 * 1024 + 256);
/// The same during the handshake, whose messages from the client are small
/// (a ClientHello, or a client certificate chain in a few reads): a new
/// connection does not allocate and zero the whole read-ahead.
const HANDSHAKE_READ: usize = 4096;
/// How long the last records and `close_notify` may wait for a peer that
/// does not read once its session is over; then the socket just closes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
pub const TICKET_KEY_ROTATION: Duration = Duration::from_secs(6 * 60 * 60);

/// The files the TLS listeners use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, the server's own first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1: RSA, ECDSA or Ed25519).
    pub key: PathBuf,
    /// CAs whose client certificates log their common name in.
    pub client_ca: Option<PathBuf>,
}

/// Which front a TLS listener serves: the HTTPS one announces `http/1.1`
/// by ALPN, the line protocol nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    Line,
    Https,
}

/// The provider with the policy applied: TLS 1.3 and 1.2 only (rustls has
/// nothing older), and of its suites only forward-secret ones (every TLS
/// 1.3 suite; ECDHE for 1.2; rustls has no RSA key exchange), AES-256-GCM
/// and ChaCha20-Poly1305 first.
fn crypto() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::*;
    let suites = vec![
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS13_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..provider::default_provider()
    })
}

/// Reads a certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("{}: {}", path.display(), pem_error(err)))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|err| format!("{}: {}", path.display(), pem_error(err)))
}

fn pem_error(err: rustls::pki_types::pem::Error) -> String {
    match err {
        rustls::pki_types::pem::Error::Io(err) => err.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the kind needed".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// What the TLS listeners hand each new connection; rebuilt whole by
/// [`Acceptor::reload`], so a connection keeps the configuration it began
/// with.
pub struct Acceptor {
    files: TlsFiles,
    line: Arc<ServerConfig>,
    https: Arc<ServerConfig>,
    /// Checks a client certificate after the handshake (see
    /// [`AnyClientCert`]).
    clients: Option<Arc<dyn ClientCertVerifier>>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Reads the certificate, its key and the client CAs; an error says
    /// which file and why.
    pub fn load(files: &TlsFiles, handshake_timeout: Duration) -> Result<Acceptor, String> {
        let provider = crypto();
        let chain = load_certs(&files.cert)?;
        let key = load_key(&files.key)?;
        let clients: Option<Arc<dyn ClientCertVerifier>> = match &files.client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|err| format!("{}: {err}", path.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|err| format!("{}: {err}", path.display()))?;
                Some(verifier)
            }
            None => None,
        };
        let ticketer = provider::Ticketer::new().map_err(|err| err.to_string())?;
        let build = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, String> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|err| err.to_string())?;
            let builder = match &clients {
                Some(inner) => builder.with_client_cert_verifier(Arc::new(AnyClientCert {
                    inner: inner.clone(),
                })),
                None => builder.with_no_client_auth(),
            };
            let mut config = builder
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|err| {
                    format!(
                        "{} and {}: {err}",
                        files.cert.display(),
                        files.key.display()
                    )
                })?;
            // Our order: AES-256-GCM and ChaCha20 before AES-128.
            config.ignore_client_order = true;
            config.ticketer = ticketer.clone();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(Acceptor {
            files: files.clone(),
            line: build(&[])?,
            https: build(&[b"http/1.1"])?,
            clients,
            handshake_timeout,
        })
    }

    /// Reads the files again (SIGHUP, `RELOAD`): new handshakes get the new
    /// certificate, open sessions go on with theirs. A file that cannot be
    /// used keeps the old configuration, and the log says why.
    pub fn reload(&mut self, handshake_timeout: Duration) {
        match Acceptor::load(&self.files, handshake_timeout) {
            Ok(new) => {
                *self = new;
                log::info!(
                    "TLS certificate reloaded from {}",
                    self.files.cert.display()
                );
            }
            Err(why) => {
                self.handshake_timeout = handshake_timeout;
                log::error!("TLS reload failed, keeping the old certificate: {why}");
            }
        }
    }

    /// The layer for a connection just accepted.
    pub fn layer(&self, front: Front, now: Instant) -> io::Result<Layer> {
        let config = match front {
            Front::Line => &self.line,
            Front::Https => &self.https,
        };
        let mut conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(SEND_LIMIT));
        Ok(Layer {
            conn,
            clients: self.clients.clone(),
            deadline: Some(now + self.handshake_timeout),
            channel_given: false,
            close_sent: false,
            failed: false,
            ahead: Vec::new(),
            ahead_used: 0,
            ahead_end: 0,
        })
    }
}

/// Offers client authentication and takes whatever certificate comes, so
/// that a wrong one does not end the handshake but logs nobody in, and
/// counts as a failed login like a wrong password would (see
/// [`Layer::channel`]). The client still proves it holds the key: the
/// handshake signature is checked as usual.
#[derive(Debug)]
struct AnyClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One connection's TLS: what sits between the socket and the session.
pub struct Layer {
    conn: ServerConnection,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    /// While the handshake runs, and once the session is over while
    /// records still wait: when the connection is closed regardless.
    deadline: Option<Instant>,
    channel_given: bool,
    close_sent: bool,
    /// The connection failed or was given up: nothing more is sent.
    failed: bool,
    /// Bytes read from the socket that rustls has not taken yet:
    /// `ahead[ahead_used..ahead_end]`; no allocation while the socket is
    /// idle.
    ahead: Vec<u8>,
    ahead_used: usize,
    ahead_end: usize,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("handshaking", &self.conn.is_handshaking())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Layer {
    /// Bytes already read from the socket before the layer took over (a
    /// PROXY protocol header's reader read past it): they are the start of
    /// the TLS stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.ahead.truncate(self.ahead_end);
        self.ahead.extend_from_slice(bytes);
        self.ahead_end = self.ahead.len();
    }

    /// Gives rustls the next bytes of the stream: from the read-ahead
    /// buffer while it holds any, else one read from the socket into it, of
    /// up to [`READ_AHEAD`] bytes ([`HANDSHAKE_READ`] during the
    /// handshake). rustls alone would read at most 4 KiB per call, four
    /// system calls or more per full record; this makes it one per several
    /// records. The buffer is kept (not cleared, so not zeroed again) while
    /// bytes flow and freed once the socket has nothing more, so an idle
    /// connection keeps none.
    fn read_tls<S: Read>(&mut self, socket: &mut S) -> io::Result<usize> {
        if self.ahead_used == self.ahead_end {
            self.ahead_used = 0;
            self.ahead_end = 0;
            let want = if self.conn.is_handshaking() {
                HANDSHAKE_READ
            } else {
                READ_AHEAD
            };
            if self.ahead.len() < want {
                self.ahead.resize(want, 0);
            }
            match socket.read(&mut self.ahead[..want]) {
                Ok(0) => {
                    self.ahead = Vec::new();
                    // rustls learns of the end from a read of nothing.
                    return self.conn.read_tls(&mut io::empty());
                }
                Ok(n) => self.ahead_end = n,
                Err(err) => {
                    if err.kind() == io::ErrorKind::WouldBlock {
                        self.ahead = Vec::new();
                    }
                    return Err(err);
                }
            }
        }
        let n = self
            .conn
            .read_tls(&mut &self.ahead[self.ahead_used..self.ahead_end])?;
        self.ahead_used += n;
        Ok(n)
    }

    /// Reads plaintext, like `Read::read` on the socket: `Ok(0)` is the end
    /// (the peer's `close_notify`, or its TCP FIN), `WouldBlock` only when
    /// the socket said so and no plaintext is left, so edge-triggered
    /// readiness holds.
    pub fn read<S: Read + Write>(&mut self, socket: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        let mut without_data = 0;
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify: to the session
                // that is the end of the stream all the same (an upload it
                // cuts short stays incomplete either way).
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(err) => return Err(err),
            }
            if without_data > BYTES_WITHOUT_DATA_LIMIT {
                self.failed = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "too many TLS records without data",
                ));
            }
            match self.read_tls(socket) {
                Ok(n) => without_data += n,
                Err(err) => return Err(err),
            }
            if let Err(err) = self.conn.process_new_packets() {
                // rustls queued an alert that says why; it goes if the
                // socket takes it now.
                let _ = self.conn.write_tls(socket);
                self.failed = true;
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            if !self.conn.is_handshaking() && !self.close_sent {
                self.deadline = None;
            }
            // Handshake replies go out at once; what does not fit waits
            // for writability (see `wants_write`).
            match self.flush(socket) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Takes plaintext to send, like `Write::write` on the socket:
    /// `WouldBlock` only when the socket said so and the records waiting
    /// fill [`SEND_LIMIT`].
    pub fn write<S: Read + Write>(&mut self, socket: &mut S, buf: &[u8]) -> io::Result<usize> {
        let flushed = self.flush(socket);
        if let Err(err) = &flushed
            && err.kind() != io::ErrorKind::WouldBlock
        {
            return flushed.map(|()| 0);
        }
        let n = self.conn.writer().write(buf)?;
        match self.flush(socket) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends the records waiting, until none is left (`Ok`) or the socket
    /// would block.
    pub fn flush<S: Write>(&mut self, socket: &mut S) -> io::Result<()> {
        while self.wants_write() {
            match self.conn.write_tls(socket) {
                Ok(0) => {
                    self.failed = true;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Err(err),
                Err(err) => {
                    self.failed = true;
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Records wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.failed && self.conn.wants_write()
    }

    /// When the connection is closed, whatever it is doing: the end of
    /// the handshake's time, or of the last records' time to go.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.failed)
    }

    /// Why [`Layer::deadline`] closes the connection.
    pub fn deadline_reason(&self) -> &'static str {
        if self.close_sent {
            "the peer did not take the last TLS records in time"
        } else {
            "TLS handshake not completed in time"
        }
    }

    /// Sends nothing more: the connection is given up.
    pub fn abandon(&mut self) {
        self.failed = true;
    }

    /// The session is done: tell the peer with `close_notify` (once), so it
    /// can tell the end from a cut; what waits has [`CLOSE_TIMEOUT`] to go.
    pub fn close_notify(&mut self) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        if !self.conn.is_handshaking() {
            self.conn.send_close_notify();
        }
        if self.wants_write() {
            self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        }
    }

    /// Once, when the handshake has completed: what the session may know
    /// of the connection. A client certificate is checked here against the
    /// client CAs; one that fails (expired, another CA) names nobody.
    pub fn channel(&mut self) -> Option<Channel> {
        if self.channel_given || self.conn.is_handshaking() {
            return None;
        }
        self.channel_given = true;
        let mut channel = Channel::secure();
        if let (Some(verifier), Some(chain)) = (&self.clients, self.conn.peer_certificates())
            && let Some((end, intermediates)) = chain.split_first()
        {
            channel.certified = Some(Box::new(
                match verifier.verify_client_cert(end, intermediates, UnixTime::now()) {
                    Ok(_) => match common_name(end) {
                        Some(name) => Ok(name),
                        None => Err("the certificate has no common name".to_owned()),
                    },
                    Err(err) => Err(err.to_string()),
                },
            ));
        }
        Some(channel)
    }
}

/// The subject's common name (OID 2.5.4.3) of a DER certificate, when it
/// is a UTF-8, printable or IA5 string.
pub fn common_name(cert: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
    // OPTIONAL, serial, signature, issuer, validity, subject, ... } ... }
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    let mut skip = 4; // serial, signature, issuer, validity
    if tbs.first() == Some(&0xa0) {
        skip += 1;
    }
    for _ in 0..skip {
        tbs = der(tbs)?.2;
    }
    let (tag, mut subject, _) = der(tbs)?;
    if tag != 0x30 {
        return None;
    }
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }
    let mut found = None;
    while !subject.is_empty() {
        let (_, set, rest) = der(subject)?;
        subject = rest;
        let (_, pair, _) = der(set)?;
        let (oid_tag, oid, value) = der(pair)?;
        if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
            let (tag, value, _) = der(value)?;
            if matches!(tag, 0x0c | 0x13 | 0x16) {
                found = Some(String::from_utf8(value.to_vec()).ok()?);
            }
        }
    }
    found
}

/// One DER element: its tag, contents and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..count] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Where the first run's self-signed certificate and key are kept: beside
/// the users file.
pub fn self_signed_paths(users_file: &Path) -> (PathBuf, PathBuf) {
    let dir = users_file.parent().unwrap_or(Path::new("."));
    (dir.join("ferryd-tls.crt"), dir.join("ferryd-tls.key"))
}

/// Makes a self-signed certificate (ECDSA P-256, for `localhost`, the host
/// name and the loopback addresses, valid from a day ago without an end)
/// and its key at `cert` and `key`, both mode 0600 and never overwritten;
/// returns the certificate's SHA-256 fingerprint for clients to pin.
pub fn make_self_signed(cert: &Path, key: &Path) -> Result<String, String> {
    let mut host = None;
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim().to_owned();
        if !name.is_empty() && name != "localhost" && name.is_ascii() {
            host = Some(name);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (der, pkcs8) = self_signed_der(host.as_deref(), now.saturating_sub(86_400))?;
    write_new(key, pem("PRIVATE KEY", &pkcs8).as_bytes())?;
    write_new(cert, pem("CERTIFICATE", &der).as_bytes())?;
    Ok(fingerprint(&der))
}

/// A self-signed X.509 v3 certificate (DER) and its PKCS#8 key, written
/// out by hand: one fixed shape needs no certificate library.
fn self_signed_der(host: Option<&str>, not_before: u64) -> Result<(Vec<u8>, Vec<u8>), String> {
    use ring::rand::{SecureRandom, SystemRandom};
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| "cannot make a key".to_owned())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "cannot use the key made".to_owned())?;
    let mut serial = [0u8; 16];
    rng.fill(&mut serial)
        .map_err(|_| "no random numbers".to_owned())?;
    serial[0] = (serial[0] & 0x7f) | 0x01; // positive, no leading zero
    // ecdsa-with-SHA256, ecPublicKey, prime256v1, commonName, subjectAltName
    const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    let algorithm = tlv(0x30, &tlv(0x06, ECDSA_SHA256));
    let name = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(
                0x30,
                &[tlv(0x06, COMMON_NAME), tlv(0x0c, b"ferryd")].concat(),
            ),
        ),
    );
    let validity = tlv(
        0x30,
        &[
            tlv(0x17, utc_time(not_before).as_bytes()),
            // RFC 5280's "no well-defined expiration date".
            tlv(0x18, b"99991231235959Z"),
        ]
        .concat(),
    );
    let mut key_bits = vec![0];
    key_bits.extend_from_slice(pair.public_key().as_ref());
    let public_key = tlv(
        0x30,
        &[
            tlv(0x30, &[tlv(0x06, EC_PUBLIC_KEY), tlv(0x06, P256)].concat()),
            tlv(0x03, &key_bits),
        ]
        .concat(),
    );
    let mut alt_names = vec![
        tlv(0x82, b"localhost"),
        tlv(0x87, &[127, 0, 0, 1]),
        tlv(0x87, &std::net::Ipv6Addr::LOCALHOST.octets()),
    ];
    if let Some(host) = host {
        alt_names.push(tlv(0x82, host.as_bytes()));
    }
    let san = tlv(
        0x30,
        &[
            tlv(0x06, SUBJECT_ALT_NAME),
            tlv(0x04, &tlv(0x30, &alt_names.concat())),
        ]
        .concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            tlv(0xa0, &tlv(0x02, &[2])), // v3
            tlv(0x02, &serial),
            algorithm.clone(),
            name.clone(),
            validity,
            name,
            public_key,
            tlv(0xa3, &tlv(0x30, &san)),
        ]
        .concat(),
    );
    let signature = pair
        .sign(&rng, &tbs)
        .map_err(|_| "cannot sign the certificate".to_owned())?;
    let mut sig_bits = vec![0];
    sig_bits.extend_from_slice(signature.as_ref());
    let cert = tlv(0x30, &[tbs, algorithm, tlv(0x03, &sig_bits)].concat());
    Ok((cert, pkcs8.as_ref().to_vec()))
}

/// One DER element.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// `YYMMDDHHMMSSZ` (UTCTime, for years before 2050) of a Unix time.
fn utc_time(secs: u64) -> String {
    let rest = secs % 86_400;
    let (year, month, day) = crate::protocol::civil_from_days((secs / 86_400) as i64);
    format!(
        "{:02}{month:02}{day:02}{:02}{:02}{:02}Z",
        year % 100,
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `sha256:` and the hex SHA-256 of a DER certificate, as `--pin` takes it.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// The transport of one connection as the reactor drives it: the socket
/// itself, or the socket through a [`Layer`].
#[derive(Debug, Default)]
pub struct Transport(Option<Box<Layer>>);

impl Transport {
    pub fn plain() -> Transport {
        Transport(None)
    }

    pub fn tls(layer: Layer) -> Transport {
        Transport(Some(Box::new(layer)))
    }

    pub fn is_tls(&self) -> bool {
        self.0.is_some()
    }

    pub fn layer_mut(&mut self) -> Option<&mut Layer> {
        self.0.as_deref_mut()
    }

    pub fn read<S: Read + Write>(&mut self, socket: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            None => socket.read(buf),
            Some(layer) => layer.read(socket, buf),
        }
    }

    pub fn write<S: Read + Write>(&mut self, socket: &mut S, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            None => socket.write(buf),
            Some(layer) => layer.write(socket, buf),
        }
    }

    /// Bytes of the transport's own wait for the socket (handshake
    /// messages, records, `close_notify`).
    pub fn wants_write(&self) -> bool {
        self.0.as_ref().is_some_and(|layer| layer.wants_write())
    }

    pub fn flush<S: Write>(&mut self, socket: &mut S) -> io::Result<()> {
        match &mut self.0 {
            None => Ok(()),
            Some(layer) => layer.flush(socket),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.0.as_ref().and_then(|layer| layer.deadline())
    }

    pub fn close_notify(&mut self) {
        if let Some(layer) = &mut self.0 {
            layer.close_notify();
        }
    }

    /// The deadline is up: why, and nothing more is sent.
    pub fn expire(&mut self) -> &'static str {
        match &mut self.0 {
            None => "",
            Some(layer) => {
                layer.abandon();
                layer.deadline_reason()
            }
        }
    }

    pub fn channel(&mut self) -> Option<Channel> {
        self.0.as_mut().and_then(|layer| layer.channel())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "ferry");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));
    }

    #[test]
    fn utc_time_of_known_dates() {
        assert_eq!(utc_time(0), "700101000000Z");
        assert_eq!(utc_time(1_796_010_551), "261130034911Z");
        assert_eq!(utc_time(951_782_400), "000229000000Z");
    }

    #[test]
    fn the_self_signed_certificate_serves_a_handshake() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let _ = std::fs::remove_file(&cert);
        let _ = std::fs::remove_file(&key);
        let pin = make_self_signed(&cert, &key).unwrap();
        let chain = load_certs(&cert).unwrap();
        assert_eq!(pin, fingerprint(&chain[0]));
        assert_eq!(common_name(&chain[0]).as_deref(), Some("ferryd"));
        let files = TlsFiles {
            cert: cert.clone(),
            key,
            client_ca: None,
        };
        assert!(Acceptor::load(&files, Duration::from_secs(1)).is_ok());
        // The client trusts it for localhost, as `--cacert` would.
        let mut roots = RootCertStore::empty();
        roots.add(chain[0].clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(crypto())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let acceptor = Acceptor::load(&files, Duration::from_secs(1)).unwrap();
        let mut server = acceptor.layer(Front::Line, Instant::now()).unwrap().conn;
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut &wire[..]).unwrap();
            server.process_new_packets().unwrap();
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut &wire[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The socket side as a test drives it: reads give `step` bytes at a
    /// time from `incoming`, writes go to `outgoing`.
    struct Trickle {
        incoming: std::collections::VecDeque<u8>,
        outgoing: Vec<u8>,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.incoming.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.step).min(self.incoming.len());
            for (slot, byte) in buf.iter_mut().zip(self.incoming.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.outgoing.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A full record that arrives a byte per read (a slow link) is read
    /// whole: the guard against records without data counts bytes, not
    /// reads (found by the tls_session fuzz target). The handshake starts
    /// from bytes handed over with `feed`.
    #[test]
    fn a_record_arriving_a_byte_at_a_time_is_read() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-trickle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let _ = std::fs::remove_file(&cert);
        let _ = std::fs::remove_file(&key);
        make_self_signed(&cert, &key).unwrap();
        let files = TlsFiles {
            cert: cert.clone(),
            key,
            client_ca: None,
        };
        let acceptor = Acceptor::load(&files, Duration::from_secs(1)).unwrap();
        let mut layer = acceptor.layer(Front::Line, Instant::now()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(load_certs(&cert).unwrap().remove(0)).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(crypto())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut socket = Trickle {
            incoming: Default::default(),
            outgoing: Vec::new(),
            step: usize::MAX,
        };
        let mut buf = vec![0u8; 64 * 1024];
        // The ClientHello as a PROXY header's reader would hand it over:
        // already read from the socket.
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        layer.feed(&hello);
        while client.is_handshaking() {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            socket.incoming.extend(wire);
            let _ = layer.read(&mut socket, &mut buf);
            let out = std::mem::take(&mut socket.outgoing);
            client.read_tls(&mut &out[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        let data = vec![b'x'; 16 * 1024];
        client.writer().write_all(&data).unwrap();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        socket.incoming.extend(wire);
        socket.step = 1;
        let mut got = Vec::new();
        while got.len() < data.len() {
            match layer.read(&mut socket, &mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                other => panic!("after {} bytes: {other:?}", got.len()),
            }
        }
        assert!(got == data);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn common_name_of_garbage_is_none() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
        ] {
            assert_eq!(common_name(bytes), None);
        }
    }
}
