//! The PROXY protocol header (HAProxy's, versions 1 and 2): how a load
//! balancer in front of ferryd tells it who the client is. A pure function
//! of bytes, like the other parsers: [`parse`] says whether the bytes so far
//! hold a whole header ([`Status::Partial`] is not an error), what address it
//! carries, and how many bytes it took; whatever follows belongs to the
//! protocol behind it (a line-protocol command, an HTTP request, a TLS
//! ClientHello).
//!
//! Version 1 is one text line, at most [`MAX_V1`] bytes:
//!
//! ```text
//! PROXY TCP4 <src> <dst> <sport> <dport>\r\n
//! PROXY TCP6 <src> <dst> <sport> <dport>\r\n
//! PROXY UNKNOWN[ anything]\r\n
//! ```
//!
//! Version 2 is binary: a 12-byte signature, a version and command byte
//! (`0x20` LOCAL: the proxy's own connection, such as a health check;
//! `0x21` PROXY), a family and transport byte, a 16-bit big-endian length,
//! then that many bytes of addresses and TLVs (ignored here). Only TCP over
//! IPv4 and IPv6 carries an address ferryd uses; LOCAL, UNKNOWN and any
//! other family carry none ([`Header::source`] is `None`: the connection's
//! own peer stands).
//!
//! The header is read before anything else on the connection, so the
//! parser never looks past what it consumed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest version 1 header, CRLF included (the specification's bound:
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const MAX_V1: usize = 107;
/// The version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Bytes of a version 2 header before its addresses.
pub const V2_FIXED: usize = 16;
/// Longest version 2 header accepted: the 16 fixed bytes and 520 of
/// addresses and TLVs, the 536 bytes the specification asks a receiver to
/// be able to take in one read. HAProxy's `send-proxy-v2` sends 28 (IPv4)
/// or 52 (IPv6) bytes without TLVs; a longer header is refused, so one
/// connection cannot make the server buffer up to 64 KiB before it is
/// anything.
pub const MAX_V2: usize = 536;

const V1_PREFIX: &[u8] = b"PROXY ";

/// Whether the bytes so far hold a whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// Not yet: read more and call again with all the bytes.
    Partial,
    Complete(T),
}

/// A whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Version 1 or 2.
    pub version: u8,
    /// The client the proxy speaks for; `None` for a LOCAL or UNKNOWN
    /// header (the proxy's own connection, e.g. a health check).
    pub source: Option<SocketAddr>,
    /// Where the client connected (the proxy's front); `None` with
    /// `source`.
    pub destination: Option<SocketAddr>,
    /// Bytes the header took; what follows belongs to the next protocol.
    pub consumed: usize,
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// They start like neither version.
    NotProxy,
    /// A version 1 line that breaks the syntax.
    BadV1,
    /// A version 1 line without its CRLF within [`MAX_V1`] bytes.
    V1TooLong,
    /// A version 2 header with a version other than 2 or a command other
    /// than LOCAL and PROXY.
    BadV2,
    /// A version 2 header whose address block is too short for its family.
    V2Truncated,
    /// A version 2 header longer than [`MAX_V2`].
    V2TooLong,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyError::NotProxy => "no PROXY protocol header",
            ProxyError::BadV1 => "malformed PROXY v1 header",
            ProxyError::V1TooLong => "PROXY v1 header longer than 107 bytes",
            ProxyError::BadV2 => "unsupported PROXY v2 version or command",
            ProxyError::V2Truncated => "PROXY v2 address block too short for its family",
            ProxyError::V2TooLong => "PROXY v2 header longer than 536 bytes",
        })
    }
}

impl std::error::Error for ProxyError {}

/// Parses the PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Status<Header>, ProxyError> {
    let v2_seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..v2_seen] == V2_SIGNATURE[..v2_seen] && !buf.is_empty() {
        return parse_v2(buf);
    }
    let v1_seen = buf.len().min(V1_PREFIX.len());
    if buf[..v1_seen] == V1_PREFIX[..v1_seen] {
        return parse_v1(buf);
    }
    if buf.is_empty() {
        return Ok(Status::Partial);
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Status<Header>, ProxyError> {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= MAX_V1 {
            return Err(ProxyError::V1TooLong);
        }
        return Ok(Status::Partial);
    };
    let consumed = lf + 1;
    let line = window[..lf].strip_suffix(b"\r").ok_or(ProxyError::BadV1)?;
    let line = line.strip_prefix(V1_PREFIX).ok_or(ProxyError::BadV1)?;
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::BadV1)?;
    if text == "UNKNOWN" || text.starts_with("UNKNOWN ") {
        return Ok(Status::Complete(Header {
            version: 1,
            source: None,
            destination: None,
            consumed,
        }));
    }
    let mut fields = text.split(' ');
    let family = fields.next().ok_or(ProxyError::BadV1)?;
    let mut next = || fields.next().ok_or(ProxyError::BadV1);
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::BadV1);
    }
    let (src, dst): (IpAddr, IpAddr) = match family {
        "TCP4" => (IpAddr::V4(v1_ipv4(src)?), IpAddr::V4(v1_ipv4(dst)?)),
        "TCP6" => (
            IpAddr::V6(src.parse::<Ipv6Addr>().map_err(|_| ProxyError::BadV1)?),
            IpAddr::V6(dst.parse::<Ipv6Addr>().map_err(|_| ProxyError::BadV1)?),
        ),
        _ => return Err(ProxyError::BadV1),
    };
    Ok(Status::Complete(Header {
        version: 1,
        source: Some(SocketAddr::new(src, v1_port(sport)?)),
        destination: Some(SocketAddr::new(dst, v1_port(dport)?)),
        consumed,
    }))
}

/// Dotted quad, as the specification writes it (std's parser already
/// refuses leading zeros and other forms).
fn v1_ipv4(text: &str) -> Result<Ipv4Addr, ProxyError> {
    text.parse().map_err(|_| ProxyError::BadV1)
}

/// 0 to 65535 in decimal, without sign or leading zeros.
fn v1_port(text: &str) -> Result<u16, ProxyError> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = text == "0" || !text.starts_with('0');
    if !digits_only || !no_leading_zero || text.len() > 5 {
        return Err(ProxyError::BadV1);
    }
    text.parse().map_err(|_| ProxyError::BadV1)
}

fn parse_v2(buf: &[u8]) -> Result<Status<Header>, ProxyError> {
    if buf.len() < V2_FIXED {
        return Ok(Status::Partial);
    }
    let version_command = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 {
        return Err(ProxyError::BadV2);
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::BadV2),
    };
    let consumed = V2_FIXED + len;
    if consumed > MAX_V2 {
        return Err(ProxyError::V2TooLong);
    }
    if buf.len() < consumed {
        return Ok(Status::Partial);
    }
    let block = &buf[V2_FIXED..consumed];
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    // TCP (transport 1) over IPv4 (family 1) or IPv6 (family 2) only; a
    // LOCAL header's addresses, if any, are the proxy's own and ignored.
    let addresses = match family {
        0x11 if !local => {
            if block.len() < 12 {
                return Err(ProxyError::V2Truncated);
            }
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&block[at..at + 4]).unwrap());
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        0x21 if !local => {
            if block.len() < 36 {
                return Err(ProxyError::V2Truncated);
            }
            let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&block[at..at + 16]).unwrap());
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        _ => None,
    };
    Ok(Status::Complete(Header {
        version: 2,
        source: addresses.map(|(src, _)| src),
        destination: addresses.map(|(_, dst)| dst),
        consumed,
    }))
}

/// A version 1 header for `source` connecting to `destination` (of the
/// same family), or `PROXY UNKNOWN` when there is none.
pub fn format_v1(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    match addresses {
        Some((src, dst)) if src.is_ipv4() == dst.is_ipv4() => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        _ => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// A version 2 header (PROXY over TCP) for `source` connecting to
/// `destination`, or a LOCAL header when there is none.
pub fn format_v2(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let mut block = Vec::new();
    match addresses {
        Some((SocketAddr::V4(src), SocketAddr::V4(dst))) => {
            out.extend_from_slice(&[0x21, 0x11]);
            block.extend_from_slice(&src.ip().octets());
            block.extend_from_slice(&dst.ip().octets());
            block.extend_from_slice(&src.port().to_be_bytes());
            block.extend_from_slice(&dst.port().to_be_bytes());
        }
        Some((SocketAddr::V6(src), SocketAddr::V6(dst))) => {
            out.extend_from_slice(&[0x21, 0x21]);
            block.extend_from_slice(&src.ip().octets());
            block.extend_from_slice(&dst.ip().octets());
            block.extend_from_slice(&src.port().to_be_bytes());
            block.extend_from_slice(&dst.port().to_be_bytes());
        }
        _ => out.extend_from_slice(&[0x20, 0x00]),
    }
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_and_what_follows() {
        let input = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 9999\r\nAUTH a b\r\n";
        let Ok(Status::Complete(header)) = parse(input) else {
            panic!()
        };
        assert_eq!(header.source, Some(addr("192.0.2.7:56324")));
        assert_eq!(header.destination, Some(addr("10.0.0.1:9999")));
        assert_eq!(&input[header.consumed..], b"AUTH a b\r\n");
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let input = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
        let Ok(Status::Complete(header)) = parse(input) else {
            panic!()
        };
        assert_eq!(header.source, Some(addr("[2001:db8::1]:1")));
        for unknown in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN ff:: ::1 1 2\r\n"] {
            let Ok(Status::Complete(header)) = parse(unknown) else {
                panic!()
            };
            assert_eq!((header.source, header.consumed), (None, unknown.len()));
        }
    }

    #[test]
    fn partial() {
        let whole = format_v1(Some((addr("1.2.3.4:5"), addr("6.7.8.9:10"))));
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(Status::Partial), "{cut}");
        }
        let whole = format_v2(Some((addr("1.2.3.4:5"), addr("6.7.8.9:10"))));
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(Status::Partial), "{cut}");
        }
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyError::BadV1), "{}", bad.escape_ascii());
        }
        assert_eq!(parse(&[b'P'; 1]), Ok(Status::Partial));
        assert_eq!(parse(b"AUTH a b\r\n"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::NotProxy));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(MAX_V1, b'x');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        long.truncate(MAX_V1 - 2);
        long.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&long), Ok(Status::Complete(_))));
    }

    #[test]
    fn v2_proxy_local_and_limits() {
        let pair = (addr("[2001:db8::7]:40000"), addr("[::1]:443"));
        let mut input = format_v2(Some(pair));
        input.extend_from_slice(b"\x16\x03\x01");
        let Ok(Status::Complete(header)) = parse(&input) else {
            panic!()
        };
        assert_eq!(
            (header.source, header.destination),
            (Some(pair.0), Some(pair.1))
        );
        assert_eq!(&input[header.consumed..], b"\x16\x03\x01");

        let local = format_v2(None);
        assert_eq!(
            parse(&local),
            Ok(Status::Complete(Header {
                version: 2,
                source: None,
                destination: None,
                consumed: 16
            }))
        );
        // TLVs after the addresses are skipped.
        let mut tlvs = format_v2(Some((addr("1.2.3.4:5"), addr("6.7.8.9:10"))));
        tlvs[15] += 4;
        tlvs.extend_from_slice(&[0x04, 0x00, 0x01, 0xAA, b'X']);
        let Ok(Status::Complete(header)) = parse(&tlvs) else {
            panic!()
        };
        assert_eq!(header.consumed, tlvs.len() - 1);

        let mut bad = format_v2(None);
        bad[12] = 0x11;
        assert_eq!(parse(&bad), Err(ProxyError::BadV2));
        bad[12] = 0x22;
        assert_eq!(parse(&bad), Err(ProxyError::BadV2));
        let mut short = format_v2(None);
        short[12] = 0x21;
        short[13] = 0x11;
        assert_eq!(parse(&short), Err(ProxyError::V2Truncated));
        let mut huge = format_v2(None);
        huge[14..16].copy_from_slice(&((MAX_V2 - V2_FIXED + 1) as u16).to_be_bytes());
        assert_eq!(parse(&huge), Err(ProxyError::V2TooLong));
    }

    #[test]
    fn round_trips() {
        for pair in [
            (addr("127.0.0.5:1"), addr("127.0.0.1:2")),
            (addr("[fe80::1]:65535"), addr("[::]:0")),
        ] {
            for bytes in [format_v1(Some(pair)), format_v2(Some(pair))] {
                let Ok(Status::Complete(header)) = parse(&bytes) else {
                    panic!()
                };
                assert_eq!(header.source, Some(pair.0));
                assert_eq!(header.destination, Some(pair.1));
                assert_eq!(header.consumed, bytes.len());
            }
        }
    }
}
