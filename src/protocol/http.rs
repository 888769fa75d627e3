//! HTTP/1.1 request heads: a pure function of bytes on top of `httparse`.
//!
//! [`parse_head`] says whether the bytes hold a complete request head yet
//! ([`Status::Partial`] is not an error) and, when they do, gives the
//! [`Request`]: method, path and query (borrowed), how the body is framed,
//! credentials, range, and the connection options, with every limit and
//! framing rule of `protocol.md` already checked. [`route`] and
//! [`decode_name`] turn a path into what it names. [`write_head`] writes a
//! response head.

use base64::Engine as _;

use super::line::Status;
use super::name::{self, FileName};
use super::path;
pub use super::web::WebFields;
pub use super::webdav::DavFields;

/// Longest request head (request line and fields, terminator included).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 64;
/// Longest request target.
pub const MAX_TARGET: usize = 8 * 1024;
/// Longest decimal `Content-Length`: `u64::MAX` has 20 digits.
const MAX_LENGTH_DIGITS: usize = 20;

/// Request methods, as far as the server tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Delete,
    /// The web interface's forms (`protocol/web.rs`).
    Post,
    /// WebDAV's (see `protocol/webdav.rs`).
    Options,
    Propfind,
    Proppatch,
    Lock,
    Unlock,
    /// WebDAV's: create a folder.
    Mkcol,
    /// WebDAV's: move to the `Destination`.
    Move,
    /// WebDAV's: copy to the `Destination`.
    Copy,
    /// A standard method the server does not serve anywhere (`PATCH`,
    /// `TRACE`, ...): `405`.
    Other,
    /// Not a method the server knows: `501`.
    Unknown,
}

impl Method {
    /// The method's name (`OTHER` and `UNKNOWN` for the ones not served).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Post => "POST",
            Method::Options => "OPTIONS",
            Method::Propfind => "PROPFIND",
            Method::Proppatch => "PROPPATCH",
            Method::Lock => "LOCK",
            Method::Unlock => "UNLOCK",
            Method::Mkcol => "MKCOL",
            Method::Move => "MOVE",
            Method::Copy => "COPY",
            Method::Other => "OTHER",
            Method::Unknown => "UNKNOWN",
        }
    }

    fn from_bytes(raw: &str) -> Method {
        match raw {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            "PROPFIND" => Method::Propfind,
            "PROPPATCH" => Method::Proppatch,
            "LOCK" => Method::Lock,
            "UNLOCK" => Method::Unlock,
            "MKCOL" => Method::Mkcol,
            "MOVE" => Method::Move,
            "COPY" => Method::Copy,
            "PATCH" | "TRACE" | "CONNECT" => Method::Other,
            _ => Method::Unknown,
        }
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

impl Body {
    pub fn is_present(self) -> bool {
        !matches!(self, Body::None | Body::Length(0))
    }
}

/// What the `Authorization` field held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No field, or a scheme other than Basic and Bearer.
    Missing,
    /// Basic credentials that do not decode to `user:password`.
    Malformed,
    Basic {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    /// A bearer token (`/metrics` on the main listener takes one).
    Bearer(Vec<u8>),
}

/// A single byte range, as the client wrote it (resolved against the size
/// by [`ByteRange::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` or `bytes=a-`.
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The first byte and the length of the range in a file of `size`
    /// bytes, or `None` when it is not satisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From { first, last } => {
                if first >= size {
                    return None;
                }
                let last = last.map_or(size - 1, |last| last.min(size - 1));
                Some((first, last - first + 1))
            }
            ByteRange::Suffix(n) => {
                let n = n.min(size);
                (n > 0).then_some((size - n, n))
            }
        }
    }
}

/// What `Expect` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    None,
    Continue,
    /// Anything else: `417`.
    Unsupported,
}

/// WebDAV's `Overwrite` header (RFC 4918 §10.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Absent: the same as `T`.
    Absent,
    T,
    F,
    /// Anything else: `400`.
    Malformed,
}

impl Overwrite {
    /// Whether the destination may be replaced (`T`, or no header).
    pub fn allows(self) -> bool {
        matches!(self, Overwrite::Absent | Overwrite::T)
    }
}

/// A complete, checked request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The path of the target, still percent-encoded.
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub body: Body,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    pub expect: Expect,
    pub credentials: Credentials,
    /// A single well-formed byte range; anything else is ignored.
    pub range: Option<ByteRange>,
    /// The fields the web interface reads (cookie, origin, CSRF token).
    pub web: WebFields<'a>,
    /// The fields WebDAV and conditional requests add, unparsed.
    pub dav: DavFields<'a>,
    /// `Destination` (WebDAV's `MOVE` and `COPY`), as sent.
    pub destination: Option<&'a [u8]>,
    /// `Overwrite` (WebDAV's `MOVE` and `COPY`).
    pub overwrite: Overwrite,
    /// `Depth`, as sent (trimmed).
    pub depth: Option<&'a [u8]>,
    /// Bytes of the head, terminator included.
    pub head_len: usize,
}

/// Why a head cannot be served. Each is answered with its status and the
/// connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// `400`: not a well-formed request head (or no `Host` in HTTP/1.1).
    Malformed,
    /// `400`: `Content-Length` malformed or repeated with another value, or
    /// given together with `Transfer-Encoding`.
    BadFraming,
    /// `414`: the request target is over [`MAX_TARGET`].
    TargetTooLong,
    /// `431`: the head is over [`MAX_HEAD`] or has more than
    /// [`MAX_HEADERS`] fields.
    HeadTooLarge,
    /// `501`: a transfer coding other than `chunked`.
    UnsupportedCoding,
    /// `400`: a `PUT` with `Content-Range`. A ranged write is not
    /// implemented, and taking the body as the whole file would replace the
    /// file by a piece of it (RFC 9110 §14.4 asks for `400`).
    RangedPut,
    /// `415`: a `PUT` whose body has a `Content-Encoding` other than
    /// `identity`: storing the encoded bytes as the file would be wrong.
    EncodedBody,
    /// `505`: not HTTP/1.0 or HTTP/1.1.
    Version,
}

impl HeadError {
    /// What was refused, where the reason phrase alone would not tell the
    /// client what to change (the status is the session's to decide).
    pub fn detail(self) -> Option<&'static str> {
        match self {
            HeadError::RangedPut => {
                Some("Content-Range is not supported on PUT: send the whole file")
            }
            HeadError::EncodedBody => {
                Some("Content-Encoding is not supported on PUT: send the body as is")
            }
            _ => None,
        }
    }
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Result<Status<Request<'_>>, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if window.len() < MAX_HEAD {
                return Ok(Status::Partial);
            }
            // The whole window is used up without an end of head: blame the
            // request line when it is that long by itself.
            let line_end = window.iter().position(|&b| b == b'\n');
            return Err(match line_end {
                None => HeadError::TargetTooLong,
                Some(_) => HeadError::HeadTooLarge,
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(_) => return Err(HeadError::Malformed),
    };
    let method = Method::from_bytes(request.method.unwrap_or_default());
    let target = request.path.unwrap_or_default().as_bytes();
    if target.len() > MAX_TARGET {
        return Err(HeadError::TargetTooLong);
    }
    let minor_version = request.version.unwrap_or(1);
    let (path, query) = split_target(target)?;

    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut host = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect = Expect::None;
    let mut credentials = Credentials::Missing;
    let mut range = None;
    let mut ranges_seen = 0;
    let mut content_range = false;
    let mut content_encoding = false;
    let mut web = WebFields::default();
    let mut dav = DavFields::default();
    let mut destination = None;
    let mut overwrite = Overwrite::Absent;
    let mut depth = None;
    for field in request.headers.iter() {
        let value = field.value;
        let name = field.name;
        if web.take(name, value) || dav.take(name, value) {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = parse_length(value).ok_or(HeadError::BadFraming)?;
            if length.is_some_and(|earlier| earlier != parsed) {
                return Err(HeadError::BadFraming);
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding || !trim(value).eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::UnsupportedCoding);
            }
            transfer_encoding = true;
            chunked = true;
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect = if trim(value).eq_ignore_ascii_case(b"100-continue") {
                Expect::Continue
            } else {
                Expect::Unsupported
            };
        } else if name.eq_ignore_ascii_case("authorization") {
            credentials = parse_basic(value);
        } else if name.eq_ignore_ascii_case("range") {
            ranges_seen += 1;
            range = parse_range(value);
        } else if name.eq_ignore_ascii_case("destination") {
            destination = Some(trim(value));
        } else if name.eq_ignore_ascii_case("overwrite") {
            overwrite = match trim(value) {
                b"T" | b"t" => Overwrite::T,
                b"F" | b"f" => Overwrite::F,
                _ => Overwrite::Malformed,
            };
        } else if name.eq_ignore_ascii_case("depth") {
            depth = Some(trim(value));
        } else if name.eq_ignore_ascii_case("content-range") {
            content_range = true;
        } else if name.eq_ignore_ascii_case("content-encoding") {
            content_encoding |= value
                .split(|&b| b == b',')
                .map(trim)
                .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"));
        }
    }
    // Headers that change what a body means, which the server does not
    // implement: refused before a byte of the body is read, so nothing is
    // stored.
    if method == Method::Put && content_range {
        return Err(HeadError::RangedPut);
    }
    if method == Method::Put && content_encoding {
        return Err(HeadError::EncodedBody);
    }
    if length.is_some() && transfer_encoding {
        return Err(HeadError::BadFraming);
    }
    if minor_version == 1 && !host {
        return Err(HeadError::Malformed);
    }
    if ranges_seen > 1 {
        range = None;
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked,
        (false, Some(n)) => Body::Length(n),
        (false, None) => Body::None,
    };
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message makes its
    // framing suspect; the request is answered and the connection closed.
    let suspect_framing = minor_version == 0 && transfer_encoding;
    let keep_alive = !close && !suspect_framing && (minor_version == 1 || keep_alive_token);
    Ok(Status::Complete(Request {
        method,
        path,
        query,
        minor_version,
        body,
        keep_alive,
        expect,
        credentials,
        range,
        web,
        dav,
        destination,
        overwrite,
        depth,
        head_len,
    }))
}

/// Splits a target into path and query; an absolute-form target loses its
/// scheme and authority.
fn split_target(target: &[u8]) -> Result<(&[u8], Option<&[u8]>), HeadError> {
    let mut rest = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if rest.len() >= scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let after = &rest[scheme.len()..];
            rest = match after.iter().position(|&b| b == b'/' || b == b'?') {
                Some(i) if after[i] == b'/' => &after[i..],
                _ => b"/",
            };
            break;
        }
    }
    if rest.first() != Some(&b'/') {
        return Err(HeadError::Malformed);
    }
    Ok(match rest.iter().position(|&b| b == b'?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    })
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// Digits only, no sign, no other base, fits in a `u64`.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > MAX_LENGTH_DIGITS || !value.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn parse_basic(value: &[u8]) -> Credentials {
    let value = trim(value);
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Credentials::Missing;
    };
    if value[..space].eq_ignore_ascii_case(b"bearer") {
        return Credentials::Bearer(trim(&value[space..]).to_vec());
    }
    if !value[..space].eq_ignore_ascii_case(b"basic") {
        return Credentials::Missing;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(trim(&value[space..]))
    else {
        return Credentials::Malformed;
    };
    match decoded.iter().position(|&b| b == b':') {
        Some(colon) => {
            let mut user = decoded;
            let password = user.split_off(colon + 1);
            user.truncate(colon);
            Credentials::Basic { user, password }
        }
        None => Credentials::Malformed,
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`; anything else (several ranges,
/// other units, `b < a`) is `None` and the header is ignored.
fn parse_range(value: &[u8]) -> Option<ByteRange> {
    let spec = trim(value).strip_prefix(b"bytes=")?;
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (trim(&spec[..dash]), trim(&spec[dash + 1..]));
    let number = |raw: &[u8]| parse_length(raw);
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(ByteRange::Suffix(number(last)?)),
        (false, true) => Some(ByteRange::From {
            first: number(first)?,
            last: None,
        }),
        (false, false) => {
            let (first, last) = (number(first)?, number(last)?);
            (last >= first).then_some(ByteRange::From {
                first,
                last: Some(last),
            })
        }
    }
}

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Metrics,
    /// `/files/` (or `/files`): the listing.
    Listing,
    /// `/files/<path>`, still percent-encoded.
    File(&'a [u8]),
    /// `/files/<path>/`: a folder, still percent-encoded, without the
    /// final `/`.
    Folder(&'a [u8]),
    NotFound,
}

pub fn route(path: &[u8]) -> Route<'_> {
    match path {
        b"/healthz" => Route::Healthz,
        b"/metrics" => Route::Metrics,
        b"/files" | b"/files/" => Route::Listing,
        _ => match path.strip_prefix(b"/files/") {
            Some(name) => match name.strip_suffix(b"/") {
                Some(folder) => Route::Folder(folder),
                None => Route::File(name),
            },
            None => Route::NotFound,
        },
    }
}

/// Percent-decodes `raw` exactly once: `%XX` (two hex digits) becomes that
/// byte, everything else stays. A `%` without two hex digits is an error.
pub fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let mut byte = [0u8];
            hex::decode_to_slice(hex, &mut byte).ok()?;
            out.push(byte[0]);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The file name a `/files/<name>` segment stands for, after one round of
/// percent-decoding and the name rules; `None` is `400`.
pub fn decode_name(raw: &[u8]) -> Option<String> {
    let decoded = percent_decode(raw)?;
    name::validate(&decoded).map(|name: FileName<'_>| name.as_str().to_owned())
}

/// The path a `/files/<path>` target stands for: split at each `/`, each
/// segment percent-decoded once (so `%2F` never separates), the whole
/// checked by the path rules; `None` is `400`.
pub fn decode_path(raw: &[u8]) -> Option<String> {
    let mut decoded = Vec::with_capacity(raw.len());
    for (i, segment) in raw.split(|&b| b == b'/').enumerate() {
        let segment = percent_decode(segment)?;
        // Every segment a name: no empty one (`/files//x` is not `x`), no
        // encoded `/`.
        if segment.is_empty() || segment.contains(&b'/') {
            return None;
        }
        if i > 0 {
            decoded.push(b'/');
        }
        decoded.extend_from_slice(&segment);
    }
    path::validate(&decoded).map(|path| path.as_str().to_owned())
}

/// The still-encoded `/files/` path a `Destination` names (an absolute
/// URL, whose host is not looked at, or an absolute path), without a
/// final `/`; `None` when it names nothing under `/files/`.
pub fn destination_path(value: &[u8]) -> Option<&[u8]> {
    let (path, _query) = split_target(value).ok()?;
    let rest = path.strip_prefix(b"/files/")?;
    Some(rest.strip_suffix(b"/").unwrap_or(rest))
}

/// Whether `key` (without a value, or with any value) is in the query.
pub fn query_has(query: Option<&[u8]>, key: &[u8]) -> bool {
    query_value(query, key).is_some()
}

/// The value of `key` in the query (`""` for a bare key).
pub fn query_value<'a>(query: Option<&'a [u8]>, key: &[u8]) -> Option<&'a [u8]> {
    query?.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        (k == key).then_some(v)
    })
}

/// The reason phrase of the statuses the server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        415 => "Unsupported Media Type",
        301 => "Moved Permanently",
        409 => "Conflict",
        412 => "Precondition Failed",
        417 => "Expectation Failed",
        423 => "Locked",
        424 => "Failed Dependency",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Writes a response head: status line, `Date`, `Server`, the given
/// fields, `Content-Length` when given, `Connection: close` when closing,
/// and the blank line.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    fields: &[(&str, &str)],
    content_length: Option<u64>,
    close: bool,
) {
    use std::io::Write as _;
    let date = httpdate::HttpDate::from(std::time::SystemTime::now());
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nDate: {date}\r\nServer: ferry/{}\r\n",
        reason(status),
        env!("CARGO_PKG_VERSION")
    );
    // No response body is ever to be taken for another type than it says
    // (a stored file sniffed as HTML would run as the site).
    out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    for (name, value) in fields {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(length) = content_length {
        let _ = write!(out, "Content-Length: {length}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Request<'_>, HeadError> {
        match parse_head(raw.as_bytes())? {
            Status::Complete(request) => Ok(request),
            Status::Partial => panic!("partial: {raw:?}"),
        }
    }

    #[test]
    fn a_plain_get() {
        let request = head("GET /files/a%20b?preview HTTP/1.1\r\nHost: x\r\n\r\nNEXT").unwrap();
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.path, b"/files/a%20b");
        assert_eq!(request.query, Some(&b"preview"[..]));
        assert!(request.keep_alive);
        assert_eq!(request.body, Body::None);
        assert_eq!(request.head_len, 46, "everything before NEXT");
        assert_eq!(route(request.path), Route::File(b"a%20b"));
        assert_eq!(decode_name(b"a%20b").as_deref(), Some("a b"));
        assert!(query_has(request.query, b"preview"));
    }

    #[test]
    fn partial_until_the_blank_line() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(Status::Partial)
        );
        assert_eq!(parse_head(b""), Ok(Status::Partial));
    }

    #[test]
    fn framing_rules() {
        let chunked = "PUT /files/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(head(chunked).unwrap().body, Body::Chunked);
        let same =
            "PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(head(same).unwrap().body, Body::Length(5));
        for bad in ["+1", "0x10", "-1", "", "1 2", "99999999999999999999999"] {
            let raw = format!("PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(head(&raw), Err(HeadError::BadFraming), "{bad:?}");
        }
        let two =
            "PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(head(two), Err(HeadError::BadFraming));
        let both = "PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(both), Err(HeadError::BadFraming));
        let gzip = "PUT /files/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(head(gzip), Err(HeadError::UnsupportedCoding));
    }

    #[test]
    fn put_bodies_the_server_cannot_store_as_sent() {
        let ranged = "PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Range: bytes 1000-1002/1003\r\n\r\n";
        assert_eq!(head(ranged), Err(HeadError::RangedPut));
        let gzip = "PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Encoding: gzip\r\n\r\n";
        assert_eq!(head(gzip), Err(HeadError::EncodedBody));
        let identity = "PUT /files/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Encoding: identity\r\n\r\n";
        assert_eq!(head(identity).unwrap().body, Body::Length(3));
        // Without a body to misread, the fields change nothing.
        let get = "GET /files/a HTTP/1.1\r\nHost: x\r\nContent-Range: bytes 0-1/2\r\nContent-Encoding: gzip\r\n\r\n";
        assert_eq!(head(get).unwrap().method, Method::Get);
    }

    #[test]
    fn limits() {
        let long_target = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(MAX_TARGET)
        );
        assert_eq!(head(&long_target), Err(HeadError::TargetTooLong));
        let endless_line = "G".repeat(MAX_HEAD + 1);
        assert_eq!(
            parse_head(endless_line.as_bytes()),
            Err(HeadError::TargetTooLong)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS)
        );
        assert_eq!(head(&many), Err(HeadError::HeadTooLarge));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nA: {}\r\n",
            "b".repeat(MAX_HEAD)
        );
        assert_eq!(parse_head(big.as_bytes()), Err(HeadError::HeadTooLarge));
    }

    #[test]
    fn versions_and_connection() {
        assert_eq!(head("GET / HTTP/1.1\r\n\r\n"), Err(HeadError::Malformed));
        let old = head("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!old.keep_alive);
        let old_kept = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(old_kept.keep_alive);
        let closing = head("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(!closing.keep_alive);
        assert_eq!(head("GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Version));
        assert_eq!(
            head("GET x HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        let absolute = head("GET http://h:1/files/q?x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(
            (absolute.path, absolute.query),
            (&b"/files/q"[..], Some(&b"x"[..]))
        );
    }

    #[test]
    fn http_1_0_with_transfer_encoding_closes() {
        let raw =
            "PUT /files/a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
        let request = head(raw).unwrap();
        assert_eq!(request.body, Body::Chunked);
        assert!(!request.keep_alive);
        let raw = "PUT /files/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(head(raw).unwrap().keep_alive);
    }

    #[test]
    fn methods() {
        for (raw, method) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("POST", Method::Post),
            ("BREW", Method::Unknown),
            ("get", Method::Unknown),
        ] {
            let raw_head = format!("{raw} / HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(head(&raw_head).unwrap().method, method, "{raw}");
        }
    }

    #[test]
    fn basic_credentials() {
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: basic YWxpY2U6cCB3OjE=\r\n\r\n";
        assert_eq!(
            head(raw).unwrap().credentials,
            Credentials::Basic {
                user: b"alice".to_vec(),
                password: b"p w:1".to_vec()
            }
        );
        let bad = "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!\r\n\r\n";
        assert_eq!(head(bad).unwrap().credentials, Credentials::Malformed);
        let bearer = "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: bearer  abc \r\n\r\n";
        assert_eq!(
            head(bearer).unwrap().credentials,
            Credentials::Bearer(b"abc".to_vec())
        );
        let other = "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Digest abc\r\n\r\n";
        assert_eq!(head(other).unwrap().credentials, Credentials::Missing);
    }

    #[test]
    fn ranges() {
        let range = |value: &str| parse_range(value.as_bytes());
        assert_eq!(
            range("bytes=2-5"),
            Some(ByteRange::From {
                first: 2,
                last: Some(5)
            })
        );
        assert_eq!(range("bytes=-3"), Some(ByteRange::Suffix(3)));
        for ignored in [
            "bytes=5-2",
            "bytes=1-2,4-5",
            "items=1-2",
            "bytes=-",
            "bytes=x-",
        ] {
            assert_eq!(range(ignored), None, "{ignored}");
        }
        let from = |first, last| ByteRange::From { first, last };
        assert_eq!(from(2, Some(5)).resolve(10), Some((2, 4)));
        assert_eq!(from(2, Some(50)).resolve(10), Some((2, 8)));
        assert_eq!(from(9, None).resolve(10), Some((9, 1)));
        assert_eq!(from(10, None).resolve(10), None);
        assert_eq!(ByteRange::Suffix(3).resolve(10), Some((7, 3)));
        assert_eq!(ByteRange::Suffix(30).resolve(10), Some((0, 10)));
        assert_eq!(ByteRange::Suffix(0).resolve(10), None);
        assert_eq!(ByteRange::Suffix(3).resolve(0), None);
    }

    #[test]
    fn names_are_decoded_once_and_checked() {
        assert_eq!(
            decode_name(b"%252e%252e%252f").as_deref(),
            Some("%2e%2e%2f")
        );
        for bad in [
            &b"..%2f"[..],
            b"%2e%2e",
            b"%2E%2E%2Fetc",
            b"a%00b",
            b"%2f",
            b"a%",
            b"a%4",
            b"%zz",
            b"",
            b"%ff",
        ] {
            assert_eq!(decode_name(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode_name("caf%C3%A9".as_bytes()).as_deref(), Some("café"));
        assert_eq!(route(b"/files/"), Route::Listing);
        assert_eq!(route(b"/files/a/b"), Route::File(b"a/b"));
        assert_eq!(route(b"/other"), Route::NotFound);
    }

    #[test]
    fn response_head_shape() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            404,
            &[("Content-Type", "text/plain")],
            Some(10),
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nDate: "),
            "{text}"
        );
        assert!(text.contains("\r\nServer: ferry/"));
        assert!(text.ends_with(
            "Content-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        ));
    }
}
