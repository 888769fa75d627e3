//! The client's side of TLS: a [`Stream`] that is a plain TCP connection
//! or TLS over one, and how the server is trusted ([`TlsOptions`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};

use super::{Connection, Error, Result, Timeouts};

/// Where the system keeps its CA certificates (Debian, Ubuntu, Alpine,
/// Arch; Fedora links it too): the trust when neither a CA file nor a pin
/// is given.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How the client trusts the server and proves who it is.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) that sign the server's certificate; without
    /// it (and without `pin`) the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// `sha256:HEX`: trust exactly the certificate with this SHA-256 (what
    /// `ferryd` prints for its self-signed one), whoever signed it.
    pub pin: Option<String>,
    /// A client certificate (PEM chain) and its key, for a login by
    /// certificate (`AUTH USER` without a password).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

/// A connection to a server: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// The line protocol in the clear.
    Plain(TcpStream),
    /// The line protocol inside TLS.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(message: String) -> Error {
    Error::Usage(message)
}

/// The client configuration `options` ask for.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| invalid(err.to_string()))?;
    let builder = match &options.pin {
        Some(pin) => {
            let hex = pin.strip_prefix("sha256:").unwrap_or(pin).replace(':', "");
            let digest = hex::decode(&hex)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| invalid(format!("--pin {pin}: not sha256: and 64 hex digits")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned { digest, provider }))
        }
        None => {
            let path = options
                .ca_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(SYSTEM_CAS));
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|err| invalid(format!("CA file {}: {err:?}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(invalid(format!(
                    "CA file {}: no usable certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots)
        }
    };
    let config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|err| invalid(format!("--cert {}: {err:?}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|err| invalid(format!("--key {}: {err:?}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| invalid(format!("--cert/--key: {err}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(invalid("--cert and --key go together".to_owned())),
    };
    Ok(Arc::new(config))
}

/// Trusts the one certificate whose SHA-256 is pinned; the handshake's
/// signature is still checked, so the server must hold its key.
#[derive(Debug)]
struct Pinned {
    digest: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let seen: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if bool::from(subtle::ConstantTimeEq::ct_eq(&seen[..], &self.digest[..])) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate is sha256:{}, not the pinned one",
                hex::encode(seen)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The host part of `HOST:PORT` (`[v6]:PORT` too), for the server name
/// the certificate must carry.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Connection<Stream> {
    /// Connects to `addr` (`HOST:PORT`), over TLS when `tls` is given, and
    /// reads the greeting. The server's certificate must name `HOST`
    /// unless the options pin it.
    pub fn open(addr: &str, timeouts: Timeouts, tls: Option<&TlsOptions>) -> Result<Self> {
        let Some(options) = tls else {
            return Connection::connect(addr, timeouts)?.map_stream(Stream::Plain);
        };
        let config = client_config(options)?;
        let host = host_of(addr);
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_owned())
                .map_err(|_| invalid(format!("{host:?} is not a host name")))?,
        };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeouts.connect) {
                Ok(tcp) => {
                    tcp.set_read_timeout(Some(timeouts.greeting.min(timeouts.io)))?;
                    tcp.set_write_timeout(Some(timeouts.io))?;
                    tcp.set_nodelay(true)?;
                    let conn = ClientConnection::new(config, name)
                        .map_err(|err| Error::Network(io::Error::other(err)))?;
                    let stream = Stream::Tls(Box::new(StreamOwned::new(conn, tcp)));
                    let conn = Connection::on(stream)?;
                    conn.stream
                        .get_ref()
                        .tcp()
                        .set_read_timeout(Some(timeouts.io))?;
                    return Ok(conn);
                }
                Err(err) => last = err,
            }
        }
        Err(Error::Network(last))
    }

    /// The SHA-256 of the server's certificate, as `--pin` takes it, when
    /// the connection is TLS.
    pub fn server_fingerprint(&self) -> Option<String> {
        match self.stream.get_ref() {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => {
                use sha2::Digest;
                let cert = tls.conn.peer_certificates()?.first()?;
                Some(format!(
                    "sha256:{}",
                    hex::encode(sha2::Sha256::digest(cert.as_ref()))
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("localhost:9990"), "localhost");
        assert_eq!(host_of("127.0.0.1:9990"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9990"), "::1");
    }
}
