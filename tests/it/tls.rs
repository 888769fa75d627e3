//! TLS on both fronts (issue 16), with real clients over loopback: Python's
//! `ssl`, curl, `openssl s_client`, and the crate's own client. Each test
//! makes its own CAs and certificates (rcgen) in the server's directory.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use crate::common::{
    self, ALICE, ALICE_PW, BOB, IO_TIMEOUT, ServerBuilder, TestServer, run_command_to_exit,
    sha256_hex,
};

const TLS_MARKER: &str = "ferryd TLS listening on ";
const HTTPS_MARKER: &str = "ferryd HTTPS listening on ";

/// A CA that signs server and client certificates, written as PEM files
/// into `dir`.
struct Ca {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for `localhost` and 127.0.0.1: (cert, key) paths.
    fn server(&self, file: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        self.write(file, params)
    }

    /// A client certificate whose common name is `cn`; `expired` makes one
    /// that ended in 2021.
    fn client(&self, file: &str, cn: &str, expired: bool) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.write(file, params)
    }

    fn write(&self, file: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// A server with both TLS listeners and a certificate from `ca`.
fn tls_builder(builder: ServerBuilder, ca: &Ca) -> ServerBuilder {
    let (cert, key) = ca.server("server");
    builder
        .args([
            "--tls-listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
}

fn start_tls(extra: &[&str]) -> (TestServer, Ca) {
    let builder = ServerBuilder::new();
    let ca = Ca::new(builder.root(), "main");
    let server = tls_builder(builder, &ca).args(extra).start();
    (server, ca)
}

/// Python's `ssl` as a line-protocol client: connects, sends `send` all at
/// once, reads to the end, and prints `VERSION <version> <cipher>`, what it
/// received, then `CLEAN` (close_notify), `RAGGED` (a FIN without it) or
/// `RESET`; or `HANDSHAKE-FAILED <why>`.
const PY_CLIENT: &str = r#"
import json, socket, ssl, sys
a = json.loads(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(a["ca"])
if a.get("cert"):
    ctx.load_cert_chain(a["cert"], a["key"])
if a.get("max"):
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = getattr(ssl.TLSVersion, a["max"])
raw = socket.create_connection(("127.0.0.1", a["port"]), timeout=10)
try:
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
except (ssl.SSLError, OSError) as e:
    print("HANDSHAKE-FAILED", e)
    sys.exit(0)
print("VERSION", s.version(), s.cipher()[0], flush=True)
s.sendall(a["send"].encode("latin1"))
out = b""
end = "CLEAN"
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
except ssl.SSLEOFError:
    end = "RAGGED"
except ConnectionResetError:
    end = "RESET"
sys.stdout.write(out.decode("latin1"))
print(end)
"#;

struct PyClient {
    port: u16,
    ca: PathBuf,
    cert: Option<(PathBuf, PathBuf)>,
    max: Option<&'static str>,
}

impl PyClient {
    fn talk(&self, send: &str) -> String {
        let mut args = serde_json::json!({
            "port": self.port,
            "ca": self.ca,
            "send": send,
        });
        if let Some((cert, key)) = &self.cert {
            args["cert"] = serde_json::json!(cert);
            args["key"] = serde_json::json!(key);
        }
        if let Some(max) = self.max {
            args["max"] = serde_json::json!(max);
        }
        let out = run_command_to_exit(
            Command::new("python3")
                .arg("-c")
                .arg(PY_CLIENT)
                .arg(args.to_string()),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "python failed: {}", out.stderr);
        out.stdout.replace("\r\n", "\n")
    }
}

fn python(port: u16, ca: &Path) -> PyClient {
    PyClient {
        port,
        ca: ca.to_path_buf(),
        cert: None,
        max: None,
    }
}

fn has_python() -> bool {
    common::outside_client("python3")
}

#[test]
fn line_session_over_tls_with_python_ssl() {
    if !has_python() {
        return;
    }
    let (server, ca) = start_tls(&[]);
    let port = server.logged_addr(TLS_MARKER).port();
    let out = python(port, &ca.ca_file()).talk(&format!(
        "AUTH {ALICE} {ALICE_PW}\nPUT 6 a.txt\nhello\nGET a.txt\nLIST\nQUIT\n"
    ));
    let expected = format!(
        "VERSION TLSv1.3 TLS_AES_256_GCM_SHA384\n\
         220 ferry {} ready; HELP lists the commands\n\
         230 logged in\n150 6\n226 {}\n150 6\nhello\n",
        env!("CARGO_PKG_VERSION"),
        common::stored(b"hello\n"),
    );
    assert!(out.starts_with(&expected), "{out}");
    assert!(out.ends_with("221 bye\nCLEAN\n"), "{out}");
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("a.txt")).unwrap(),
        b"hello\n"
    );
}

/// TLS 1.2 is served too, with a forward-secret suite, AES-256-GCM first.
#[test]
fn tls12_gets_an_ecdhe_aes256_suite() {
    if !has_python() {
        return;
    }
    let (server, ca) = start_tls(&[]);
    let port = server.logged_addr(TLS_MARKER).port();
    let client = PyClient {
        max: Some("TLSv1_2"),
        ..python(port, &ca.ca_file())
    };
    let out = client.talk("QUIT\n");
    assert!(
        out.starts_with("VERSION TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384\n"),
        "{out}"
    );
    assert!(out.ends_with("221 bye\nCLEAN\n"), "{out}");
}

#[test]
fn tls10_and_tls11_are_refused() {
    if !has_python() {
        return;
    }
    let (server, ca) = start_tls(&[]);
    let port = server.logged_addr(TLS_MARKER).port();
    for max in ["TLSv1", "TLSv1_1"] {
        let client = PyClient {
            max: Some(max),
            ..python(port, &ca.ca_file())
        };
        let out = client.talk("QUIT\n");
        // The server's alert (rustls answers an offer without TLS 1.2 or
        // 1.3 with handshake_failure), not a client that would not offer.
        assert!(
            out.starts_with("HANDSHAKE-FAILED") && out.contains("ALERT_HANDSHAKE_FAILURE"),
            "{max}: {out}"
        );
    }
    let out = python(port, &ca.ca_file()).talk("QUIT\n");
    assert!(out.ends_with("221 bye\nCLEAN\n"), "{out}");
}

#[test]
fn line_session_with_openssl_s_client() {
    if !common::outside_client("openssl") {
        return;
    }
    let (server, ca) = start_tls(&[]);
    let addr = server.logged_addr(TLS_MARKER);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(addr.to_string())
        .args(["-servername", "localhost", "-CAfile"])
        .arg(ca.ca_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            format!("AUTH {ALICE} {ALICE_PW}\nPUT 3 s.txt\nab\nHASH s.txt\nQUIT\n").as_bytes(),
        )
        .unwrap();
    let mut out = String::new();
    let reader = std::thread::spawn({
        let mut stdout = child.stdout.take().unwrap();
        move || {
            let _ = stdout.read_to_string(&mut out);
            out
        }
    });
    let status = common::wait_child(&mut child, Duration::from_secs(15));
    drop(stdin);
    let _ = child.kill();
    let out = reader.join().unwrap().replace("\r\n", "\n");
    assert!(status.is_some(), "openssl s_client did not end; got {out}");
    let expected = format!(
        "230 logged in\n150 3\n226 {}\n213 sha256={}\n221 bye\n",
        common::stored(b"ab\n"),
        sha256_hex(b"ab\n")
    );
    assert!(out.ends_with(&expected), "{out}");
}

#[test]
fn https_session_with_curl() {
    let (server, ca) = start_tls(&[]);
    let addr = server.logged_addr(HTTPS_MARKER);
    let url = format!("https://localhost:{}/files/c.txt", addr.port());
    let curl = |args: &[&str]| {
        let out = run_command_to_exit(
            Command::new("curl")
                .args(["-sS", "--resolve"])
                .arg(format!("localhost:{}:127.0.0.1", addr.port()))
                .arg("--cacert")
                .arg(ca.ca_file())
                .args(["-u", &format!("{ALICE}:{ALICE_PW}")])
                .args(["-w", "\n%{http_code} %{http_version} %{ssl_verify_result}"])
                .args(args),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "curl: {}", out.stderr);
        out.stdout
    };
    let body = server.root().join("up.txt");
    fs::write(&body, "over https\n").unwrap();
    let put = curl(&["-T", body.to_str().unwrap(), &url]);
    assert!(put.ends_with("\n201 1.1 0"), "{put}");
    let get = curl(&[&url]);
    assert_eq!(get, "over https\n\n200 1.1 0");
    let list = curl(&[&format!("https://localhost:{}/files/", addr.port())]);
    assert!(list.contains("c.txt"), "{list}");
    let del = curl(&["-X", "DELETE", &url]);
    assert!(del.ends_with("\n204 1.1 0"), "{del}");
}

#[test]
fn the_client_library_speaks_tls_with_a_ca_file_and_a_pin() {
    let (server, ca) = start_tls(&[]);
    let addr = format!("localhost:{}", server.logged_addr(TLS_MARKER).port());
    let timeouts = ferry::client::Timeouts::default();
    let options = ferry::client::TlsOptions {
        ca_file: Some(ca.ca_file()),
        ..Default::default()
    };
    let mut conn = ferry::client::Connection::open(&addr, timeouts, Some(&options)).unwrap();
    conn.login(ALICE, ALICE_PW).unwrap();
    let pin = conn.server_fingerprint().unwrap();
    conn.quit().unwrap();
    let pinned = ferry::client::TlsOptions {
        pin: Some(pin),
        ..Default::default()
    };
    let mut conn = ferry::client::Connection::open(&addr, timeouts, Some(&pinned)).unwrap();
    conn.login(ALICE, ALICE_PW).unwrap();
    let wrong = ferry::client::TlsOptions {
        pin: Some(format!("sha256:{}", "0".repeat(64))),
        ..Default::default()
    };
    let err = ferry::client::Connection::open(&addr, timeouts, Some(&wrong))
        .err()
        .expect("a wrong pin is refused");
    assert!(err.to_string().contains("not the pinned one"), "{err}");
}

/// Plaintext to a TLS port: the connection is closed, nothing of the
/// protocol answers, and the server goes on serving.
#[test]
fn plaintext_to_a_tls_port_is_closed_and_the_server_goes_on() {
    let (server, ca) = start_tls(&[]);
    let addr = server.logged_addr(TLS_MARKER);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(format!("AUTH {ALICE} {ALICE_PW}\nLIST\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let started = Instant::now();
    let _ = stream.read_to_end(&mut got);
    assert!(started.elapsed() < Duration::from_secs(5));
    // At most a TLS alert record (content type 21), never a reply line.
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    assert!(!String::from_utf8_lossy(&got).contains("230"));
    let options = ferry::client::TlsOptions {
        ca_file: Some(ca.ca_file()),
        ..Default::default()
    };
    let addr = format!("localhost:{}", addr.port());
    let mut conn =
        ferry::client::Connection::open(&addr, Default::default(), Some(&options)).unwrap();
    conn.login(ALICE, ALICE_PW).unwrap();
    assert!(
        server
            .log_containing("connected (line)")
            .contains("connected")
    );
}

#[test]
fn a_stalled_handshake_is_closed_at_its_deadline() {
    let (server, _ca) = start_tls(&["--tls-handshake-timeout", "1"]);
    let addr = server.logged_addr(TLS_MARKER);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // The start of a ClientHello record, and then nothing.
    stream.write_all(&[22, 3, 1, 2, 0]).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    assert!(
        server
            .log_containing("TLS handshake not completed in time")
            .contains("127.0.0.1")
    );
}

/// 300 connections that never finish their handshake do not slow a
/// normal client down: it is served within 0.5 s.
#[test]
fn stalled_handshakes_do_not_delay_a_normal_client() {
    if !has_python() {
        return;
    }
    let (server, ca) = start_tls(&["--max-per-ip", "1000", "--max-connections", "1000"]);
    let addr = server.logged_addr(TLS_MARKER);
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(&[22, 3, 1, 2, 0, 1]).unwrap();
        stalled.push(stream);
    }
    // Every stalled one is accepted and read before the client comes.
    assert!(common::wait_until(Duration::from_secs(10), || {
        server.stderr_text().matches("connected (line)").count() >= 300
    }));
    let _quiet = common::timing_sensitive();
    let script = r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = time.monotonic()
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5), server_hostname="localhost")
f = s.makefile("rb")
f.readline()
s.sendall(sys.argv[3].encode())
line = f.readline()
print(line.decode().strip(), round(time.monotonic() - t, 3))
"#;
    let out = run_command_to_exit(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(addr.port().to_string())
            .arg(ca.ca_file())
            .arg(format!("AUTH {ALICE} {ALICE_PW}\n")),
        Duration::from_secs(20),
    );
    let (reply, secs) = out.stdout.trim().rsplit_once(' ').unwrap();
    assert_eq!(reply, "230 logged in", "{}", out.stderr);
    let secs: f64 = secs.parse().unwrap();
    assert!(
        secs < 0.5,
        "the client waited {secs} s behind 300 stalled handshakes"
    );
    drop(stalled);
}

/// A session over TLS that the test drives line by line (the crate's own
/// client; rustls underneath).
fn open_session(addr: SocketAddr, ca: &Path) -> ferry::client::Connection<ferry::client::Stream> {
    let options = ferry::client::TlsOptions {
        ca_file: Some(ca.to_path_buf()),
        ..Default::default()
    };
    let addr = format!("localhost:{}", addr.port());
    ferry::client::Connection::open(&addr, Default::default(), Some(&options)).unwrap()
}

/// SIGHUP re-reads the certificate: new handshakes get the new one, a
/// session already open goes on, and a broken file keeps the one in use.
#[test]
fn sighup_rotates_the_certificate_while_a_session_goes_on() {
    let builder = ServerBuilder::new();
    let root = builder.root().to_path_buf();
    let old_ca = Ca::new(&root, "old");
    let server = tls_builder(builder, &old_ca).start();
    let addr = server.logged_addr(TLS_MARKER);
    let mut session = open_session(addr, &old_ca.ca_file());
    session.login(ALICE, ALICE_PW).unwrap();
    let old_pin = session.server_fingerprint().unwrap();

    let new_ca = Ca::new(&root, "new");
    let (cert, key) = new_ca.server("renewed");
    fs::rename(cert, root.join("server.crt")).unwrap();
    fs::rename(key, root.join("server.key")).unwrap();
    server.signal(Signal::SIGHUP);
    assert!(common::wait_until(Duration::from_secs(10), || {
        server.stderr_text().contains("TLS certificate reloaded")
    }));
    let mut fresh = open_session(addr, &new_ca.ca_file());
    fresh.login(BOB, common::BOB_PW).unwrap();
    assert_ne!(fresh.server_fingerprint().unwrap(), old_pin);
    let options = ferry::client::TlsOptions {
        ca_file: Some(old_ca.ca_file()),
        ..Default::default()
    };
    let by_old = format!("localhost:{}", addr.port());
    assert!(ferry::client::Connection::open(&by_old, Default::default(), Some(&options)).is_err());
    // The first session never noticed.
    session.command("NOOP").unwrap();
    assert_eq!(session.command("NOOP").unwrap().code, 200);

    // A broken certificate at the next reload: the renewed one stays.
    fs::write(root.join("server.crt"), "not a certificate\n").unwrap();
    server.signal(Signal::SIGHUP);
    assert!(common::wait_until(Duration::from_secs(10), || {
        server
            .stderr_text()
            .contains("TLS reload failed, keeping the old certificate")
    }));
    let mut again = open_session(addr, &new_ca.ca_file());
    again.login(ALICE, ALICE_PW).unwrap();
    assert_eq!(session.command("NOOP").unwrap().code, 200);
}

#[test]
fn an_unreadable_certificate_stops_the_start_with_exit_2() {
    let out = ServerBuilder::new()
        .args(["--tls-listen", "127.0.0.1:0"])
        .args(["--tls-cert", "/nonexistent/cert.pem"])
        .args(["--tls-key", "/nonexistent/key.pem"])
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("/nonexistent/cert.pem"),
        "{}",
        out.stderr
    );
}

/// TLS asked for without a certificate: a self-signed one is made beside
/// the users file (0600), its fingerprint printed once.
#[test]
fn the_first_run_makes_a_self_signed_certificate_and_prints_its_fingerprint() {
    use std::os::unix::fs::PermissionsExt;
    let server = ServerBuilder::new()
        .args(["--tls-listen", "127.0.0.1:0"])
        .start();
    let cert = server.root().join("ferryd-tls.crt");
    let key = server.root().join("ferryd-tls.key");
    for file in [&cert, &key] {
        let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let der = ferry::internal::tls::load_certs(&cert).unwrap();
    let pin = ferry::internal::tls::fingerprint(&der[0]);
    let log = server.log_containing("fingerprint: ");
    assert!(
        log.contains(&format!("fingerprint: {pin}\n")),
        "{log} vs {pin}"
    );
    // The pin is what a client checks.
    let addr = format!("127.0.0.1:{}", server.logged_addr(TLS_MARKER).port());
    let options = ferry::client::TlsOptions {
        pin: Some(pin),
        ..Default::default()
    };
    let mut conn =
        ferry::client::Connection::open(&addr, Default::default(), Some(&options)).unwrap();
    conn.login(ALICE, ALICE_PW).unwrap();
    drop(conn);
    // A restart reuses it and prints nothing about it.
    let server = server.stop_and_restart_with(["--tls-listen", "127.0.0.1:0"]);
    server.logged_addr(TLS_MARKER);
    assert!(!server.stderr_text().contains("fingerprint"));
    assert_eq!(ferry::internal::tls::load_certs(&cert).unwrap(), der);
}

/// Certificate login: a valid client certificate logs its common name in
/// without a password; one naming another user, an expired one and one
/// from another CA log nobody in, and each counts as a failed login.
#[test]
fn certificate_login_on_the_line_protocol() {
    if !has_python() {
        return;
    }
    let builder = ServerBuilder::new();
    let root = builder.root().to_path_buf();
    let ca = Ca::new(&root, "main");
    let clients = Ca::new(&root, "clients");
    let other = Ca::new(&root, "other");
    let server = tls_builder(builder, &ca)
        .arg("--tls-client-ca")
        .arg(clients.ca_file())
        .start();
    let port = server.logged_addr(TLS_MARKER).port();
    let with = |cert| PyClient {
        cert: Some(cert),
        ..python(port, &ca.ca_file())
    };
    let alice = with(clients.client("alice", ALICE, false));
    let out = alice.talk(&format!("AUTH {ALICE}\nPUT 2 c\nx\nQUIT\n"));
    assert!(out.contains("\n230 logged in\n150 2\n226 "), "{out}");
    // A certificate names one user only.
    let out = alice.talk(&format!("AUTH {BOB}\nQUIT\n"));
    assert!(out.contains("\n530 login incorrect\n221 bye\n"), "{out}");
    for (what, cert) in [
        ("expired", clients.client("expired", ALICE, true)),
        ("other CA", other.client("stranger", ALICE, false)),
    ] {
        let out = with(cert).talk(&format!("AUTH {ALICE}\nQUIT\n"));
        assert!(
            out.contains("\n530 login incorrect\n221 bye\n"),
            "{what}: {out}"
        );
    }
    // Without a certificate, AUTH USER alone is a usage error as ever (not
    // counted); a password still works.
    let out =
        python(port, &ca.ca_file()).talk(&format!("AUTH {ALICE}\nAUTH {ALICE} {ALICE_PW}\nQUIT\n"));
    assert!(
        out.contains("\n501 usage: AUTH <user> <password>\n230 logged in\n"),
        "{out}"
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            server.stderr_text().matches("audit: login_failed").count() == 3
        }),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn certificate_login_over_https_with_curl() {
    let builder = ServerBuilder::new();
    let root = builder.root().to_path_buf();
    let ca = Ca::new(&root, "main");
    let clients = Ca::new(&root, "clients");
    let server = tls_builder(builder, &ca)
        .arg("--tls-client-ca")
        .arg(clients.ca_file())
        .start();
    let port = server.logged_addr(HTTPS_MARKER).port();
    server.plant_file(ALICE, "mine.txt", b"alice's\n");
    let get = |cert: Option<(PathBuf, PathBuf)>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert"])
            .arg(ca.ca_file())
            .args(["-w", "\n%{http_code}"]);
        if let Some((cert, key)) = cert {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        cmd.arg(format!("https://127.0.0.1:{port}/files/mine.txt"));
        let out = run_command_to_exit(&mut cmd, Duration::from_secs(20));
        assert!(out.status.success(), "curl: {}", out.stderr);
        out.stdout
    };
    assert_eq!(
        get(Some(clients.client("alice", ALICE, false))),
        "alice's\n\n200"
    );
    assert!(get(Some(clients.client("bob", BOB, false))).ends_with("\n404"));
    assert!(get(Some(clients.client("old", ALICE, true))).ends_with("\n401"));
    assert!(get(None).ends_with("\n401"));
}

/// SIGINT: an idle TLS session is told (`421`) and closed with
/// close_notify, and the server exits cleanly.
#[test]
fn sigint_drains_a_tls_session_with_close_notify() {
    if !has_python() {
        return;
    }
    let (mut server, ca) = start_tls(&[]);
    let port = server.logged_addr(TLS_MARKER).port();
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10), server_hostname="localhost", suppress_ragged_eofs=False)
f = s.makefile("rb")
f.readline()
s.sendall(sys.argv[3].encode())
print(f.readline().decode().strip(), flush=True)
rest = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        rest += d
    print(rest.decode().strip(), "CLEAN")
except ssl.SSLEOFError:
    print(rest.decode().strip(), "RAGGED")
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(ca.ca_file())
        .arg(format!("AUTH {ALICE} {ALICE_PW}\n"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(&mut child);
    assert_eq!(lines.recv_timeout(IO_TIMEOUT).unwrap(), "230 logged in");
    server.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(10));
    assert_eq!(
        lines.recv_timeout(IO_TIMEOUT).unwrap(),
        "421 server shutting down CLEAN"
    );
    let _ = common::wait_child(&mut child, Duration::from_secs(5));
}

fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The fault suite's SIGINT case over TLS: a download running when SIGINT
/// comes finishes within the drain, every byte, then close_notify.
#[test]
fn sigint_during_a_tls_download_lets_it_finish() {
    let (mut server, ca) = start_tls(&["--drain-timeout", "20"]);
    let data = common::pseudo_random_bytes(7, 8 << 20);
    server.plant_file(ALICE, "big.bin", &data);
    let addr = server.logged_addr(TLS_MARKER);
    let mut session = open_session(addr, &ca.ca_file());
    session.login(ALICE, ALICE_PW).unwrap();
    // The GET is sent by hand; the reply and bytes are read after SIGINT.
    let stream = session.get_mut();
    stream.write_all(b"GET big.bin\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert_eq!(head, format!("150 {}\r\n", data.len()).as_bytes());
    let mut first = vec![0u8; 1 << 20];
    stream.read_exact(&mut first).unwrap();
    server.signal(Signal::SIGINT);
    let mut rest = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(err) => panic!("after {} bytes: {err}", first.len() + rest.len()),
        }
    }
    first.extend_from_slice(&rest[..data.len() - first.len()]);
    assert!(first == data, "the download changed");
    // After the file: the shutdown notice, then close_notify (Ok(0)
    // above; an unclean end is an error in rustls).
    assert_eq!(
        &rest[data.len() - (1 << 20)..],
        b"421 server shutting down\r\n"
    );
    assert!(server.wait_exit(Duration::from_secs(10)).unwrap().success());
}

/// The fault suite's kill -9 case over TLS: an upload cut by a crash
/// leaves the old file whole, and the restart cleans its temporary file.
#[test]
fn kill_9_during_a_tls_upload_keeps_the_old_file() {
    let (server, ca) = start_tls(&[]);
    server.plant_file(ALICE, "doc.txt", b"old version\n");
    let addr = server.logged_addr(TLS_MARKER);
    let mut session = open_session(addr, &ca.ca_file());
    session.login(ALICE, ALICE_PW).unwrap();
    let stream = session.get_mut();
    stream.write_all(b"PUT 1000000 doc.txt\r\n").unwrap();
    stream.write_all(&vec![b'n'; 300_000]).unwrap();
    stream.flush().unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || !server
        .tmp_entries()
        .is_empty()));
    let server = server.crash_and_restart();
    assert_eq!(
        fs::read(server.user_dir(ALICE).join("doc.txt")).unwrap(),
        b"old version\n"
    );
    server.assert_tmp_empty_within(Duration::from_secs(5));
}

/// `--require-tls`: loopback clients of the plaintext port still log in
/// (the port stays for local scripts); the refusal of other addresses is
/// covered by the sessions' unit tests, which can give a session any peer.
#[test]
fn require_tls_keeps_loopback_plaintext_logins() {
    let (server, _ca) = start_tls(&["--require-tls"]);
    let mut c = server.login(ALICE, ALICE_PW);
    assert_eq!(c.cmd("NOOP").0, 200);
}

fn rss_kib(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// A TLS client that asks for a large file and never reads: the server's
/// memory stays put (a full socket stops the layer's writes, the layer's
/// records stop the session's, whose buffer is bounded), and other
/// clients are served. Measured: about 0.7 MiB for four such clients.
#[test]
fn a_tls_client_that_never_reads_cannot_grow_the_server() {
    let (server, ca) = start_tls(&[]);
    let data = common::pseudo_random_bytes(3, 48 << 20);
    server.plant_file(ALICE, "big.bin", &data);
    let addr = server.logged_addr(TLS_MARKER);
    let _quiet = common::timing_sensitive();
    let mut stalled = Vec::new();
    let before = rss_kib(server.pid());
    for _ in 0..4 {
        let mut session = open_session(addr, &ca.ca_file());
        session.login(ALICE, ALICE_PW).unwrap();
        session.get_mut().write_all(b"GET big.bin\r\n").unwrap();
        stalled.push(session);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let grown = rss_kib(server.pid()).saturating_sub(before);
    // Each: the kernel's socket buffers hold most of what was sent; the
    // server keeps one transfer buffer and the layer's limit (about
    // 200 KiB); far from the 48 MiB asked for.
    assert!(grown < 4 * 1024, "the server grew by {grown} KiB");
    let mut other = open_session(addr, &ca.ca_file());
    other.login(BOB, common::BOB_PW).unwrap();
    assert_eq!(other.command("NOOP").unwrap().code, 200);
}

/// The `ferry` tool over TLS: `tls://` with a CA file, `--tls` with the
/// pin of ferryd's self-signed certificate, a wrong pin refused (exit 5),
/// and a login by client certificate without any password.
#[test]
fn the_ferry_tool_speaks_tls() {
    let builder = ServerBuilder::new();
    let root = builder.root().to_path_buf();
    let ca = Ca::new(&root, "main");
    let clients = Ca::new(&root, "clients");
    let server = tls_builder(builder, &ca)
        .arg("--tls-client-ca")
        .arg(clients.ca_file())
        .start();
    let port = server.logged_addr(TLS_MARKER).port();
    let local = root.join("note.txt");
    fs::write(&local, "over tls\n").unwrap();
    let ferry = |args: &[&std::ffi::OsStr], password: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(args)
            .env_remove("FERRY_SERVER")
            .env_remove("FERRY_USER")
            .env_remove("FERRY_CONFIG")
            .env("XDG_CONFIG_HOME", &root)
            .current_dir(&root);
        match password {
            Some(password) => cmd.env("FERRY_PASSWORD", password),
            None => cmd.env_remove("FERRY_PASSWORD"),
        };
        run_command_to_exit(&mut cmd, Duration::from_secs(30))
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let server_url = os(&format!("tls://localhost:{port}"));
    let put = ferry(
        &[
            &os("--server"),
            &server_url,
            &os("--ca-file"),
            ca.ca_file().as_os_str(),
            &os("--user"),
            &os(ALICE),
            &os("put"),
            local.as_os_str(),
        ],
        Some(ALICE_PW),
    );
    assert!(put.status.success(), "{}{}", put.stdout, put.stderr);
    let pin = {
        let der = ferry::internal::tls::load_certs(&root.join("server.crt")).unwrap();
        ferry::internal::tls::fingerprint(&der[0])
    };
    let plain_addr = os(&format!("127.0.0.1:{port}"));
    let ls = ferry(
        &[
            &os("--server"),
            &plain_addr,
            &os("--tls"),
            &os("--pin"),
            &os(&pin),
            &os("--user"),
            &os(ALICE),
            &os("ls"),
        ],
        Some(ALICE_PW),
    );
    assert!(ls.stdout.contains("note.txt"), "{}{}", ls.stdout, ls.stderr);
    let wrong = ferry(
        &[
            &os("--server"),
            &plain_addr,
            &os("--tls"),
            &os("--pin"),
            &os(&format!("sha256:{}", "ab".repeat(32))),
            &os("--user"),
            &os(ALICE),
            &os("ls"),
        ],
        Some(ALICE_PW),
    );
    assert_eq!(wrong.status.code(), Some(5), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("not the pinned one"),
        "{}",
        wrong.stderr
    );
    let (cert, key) = clients.client("alice", ALICE, false);
    let by_cert = ferry(
        &[
            &os("--server"),
            &server_url,
            &os("--ca-file"),
            ca.ca_file().as_os_str(),
            &os("--cert"),
            cert.as_os_str(),
            &os("--key"),
            key.as_os_str(),
            &os("--user"),
            &os(ALICE),
            &os("hash"),
            &os("note.txt"),
        ],
        None,
    );
    assert!(
        by_cert.stdout.contains(&sha256_hex(b"over tls\n")),
        "{}{}",
        by_cert.stdout,
        by_cert.stderr
    );
}

#[test]
fn the_web_login_cookie_is_secure_over_https_only() {
    let (server, ca) = start_tls(&["--http-listen", "127.0.0.1:0"]);
    let https = server.logged_addr(HTTPS_MARKER);
    let login = |url: String, tls: bool| {
        let mut command = Command::new("curl");
        command.args(["-sS", "-o", "/dev/null", "-D", "-"]);
        if tls {
            command
                .args(["--resolve"])
                .arg(format!("localhost:{}:127.0.0.1", https.port()))
                .arg("--cacert")
                .arg(ca.ca_file());
        }
        command
            .args(["--data", &format!("user={ALICE}&password={ALICE_PW}")])
            .arg(url);
        let out = run_command_to_exit(&mut command, Duration::from_secs(20));
        assert!(out.status.success(), "curl: {}", out.stderr);
        out.stdout
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
            .unwrap_or_else(|| panic!("no cookie in {}", out.stdout))
            .to_owned()
    };
    let secure = login(
        format!("https://localhost:{}/web/login", https.port()),
        true,
    );
    assert!(secure.contains("; Secure"), "{secure}");
    let plain = login(format!("http://{}/web/login", server.http_addr()), false);
    assert!(!plain.contains("Secure"), "{plain}");
}
