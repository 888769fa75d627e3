//! What the web interface needs from a request head beyond the file
//! routes: the session cookie, where the request comes from (`Origin`,
//! `Sec-Fetch-Site`, `Host`), the CSRF token header and what the client
//! accepts; and the `application/x-www-form-urlencoded` bodies of its
//! forms. Pure functions of bytes, like the rest of `protocol/`.

use super::http::percent_decode;

/// The name of the web interface's session cookie.
pub const SESSION_COOKIE: &str = "ferry_session";
/// The header a script sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longest form body the interface reads (a login, a delete): it is read
/// whole into the request's input, so head and body together must fit
/// within [`super::http::MAX_HEAD`].
pub const MAX_FORM: usize = 4 * 1024;

/// The web interface's header fields, borrowed from the head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebFields<'a> {
    /// The value of the `ferry_session` cookie, if sent.
    pub session: Option<&'a [u8]>,
    pub origin: Option<&'a [u8]>,
    pub sec_fetch_site: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    pub csrf: Option<&'a [u8]>,
    /// `Accept` names `text/html` (a browser navigating).
    pub accepts_html: bool,
    /// `Accept` names `application/json` (a script).
    pub accepts_json: bool,
}

impl<'a> WebFields<'a> {
    /// Records a field this struct is about; true when no other code needs
    /// it (`Host` is also checked by the head parser, so it stays false).
    pub fn take(&mut self, name: &str, value: &'a [u8]) -> bool {
        if name.eq_ignore_ascii_case("cookie") {
            if let Some(session) = cookie_value(value, SESSION_COOKIE.as_bytes()) {
                self.session = Some(session);
            }
            true
        } else if name.eq_ignore_ascii_case("origin") {
            self.origin = Some(value.trim_ascii());
            true
        } else if name.eq_ignore_ascii_case("sec-fetch-site") {
            self.sec_fetch_site = Some(value.trim_ascii());
            true
        } else if name.eq_ignore_ascii_case(CSRF_HEADER) {
            self.csrf = Some(value.trim_ascii());
            true
        } else if name.eq_ignore_ascii_case("accept") {
            for item in value.split(|&b| b == b',') {
                let media = item.split(|&b| b == b';').next().unwrap_or_default();
                let media = media.trim_ascii();
                self.accepts_html |= media.eq_ignore_ascii_case(b"text/html");
                self.accepts_json |= media.eq_ignore_ascii_case(b"application/json");
            }
            true
        } else {
            if name.eq_ignore_ascii_case("host") {
                self.host = Some(value.trim_ascii());
            }
            false
        }
    }

    /// Whether the request may be one a page of another site made the
    /// browser send: `Sec-Fetch-Site` other than `same-origin`, or an
    /// `Origin` whose host and port are not `Host`'s. A client that sends
    /// neither (curl, an old browser) is not suspected here; the CSRF
    /// token decides for it.
    pub fn cross_site(&self) -> bool {
        if let Some(site) = self.sec_fetch_site
            && !site.eq_ignore_ascii_case(b"same-origin")
        {
            return true;
        }
        match self.origin {
            None => false,
            Some(origin) => {
                let authority = origin
                    .strip_prefix(b"https://")
                    .or_else(|| origin.strip_prefix(b"http://"));
                match (authority, self.host) {
                    (Some(authority), Some(host)) => !authority.eq_ignore_ascii_case(host),
                    // `Origin: null` (a sandboxed or privacy-sensitive
                    // context) and anything else unreadable.
                    _ => true,
                }
            }
        }
    }
}

/// The value of cookie `name` in a `Cookie` field (`a=1; b=2`).
fn cookie_value<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    value.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// The value of `key` in an `application/x-www-form-urlencoded` body or
/// query, decoded (`+` is a space, `%XX` a byte); `None` when absent or
/// badly encoded.
pub fn form_value(form: &[u8], key: &str) -> Option<Vec<u8>> {
    form.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        if decode_form(k)? != key.as_bytes() {
            return None;
        }
        decode_form(v)
    })
}

fn decode_form(raw: &[u8]) -> Option<Vec<u8>> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced)
}

/// Percent-encodes `value` for a URL path segment or a query value: every
/// byte but the unreserved ones of RFC 3986.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_among_others() {
        let mut fields = WebFields::default();
        assert!(fields.take("Cookie", b"a=1; ferry_session=abc ; b=2"));
        assert_eq!(fields.session, Some(&b"abc"[..]));
        let mut none = WebFields::default();
        none.take("cookie", b"xferry_session=1");
        assert_eq!(none.session, None);
    }

    #[test]
    fn cross_site_by_fetch_metadata_or_origin() {
        let mut f = WebFields::default();
        assert!(!f.take("Host", b"127.0.0.1:8080"));
        assert!(!f.cross_site(), "no evidence either way");
        f.take("Origin", b"http://127.0.0.1:8080");
        assert!(!f.cross_site());
        f.take("Origin", b"http://evil.example");
        assert!(f.cross_site());
        f.take("Origin", b"null");
        assert!(f.cross_site());
        let mut g = WebFields::default();
        g.take("Sec-Fetch-Site", b"cross-site");
        assert!(g.cross_site());
        g.take("Sec-Fetch-Site", b"same-origin");
        assert!(!g.cross_site());
    }

    #[test]
    fn form_values_decode_plus_and_percent() {
        let form = b"user=al+ice&password=p%26w%3D&x";
        assert_eq!(form_value(form, "user").unwrap(), b"al ice");
        assert_eq!(form_value(form, "password").unwrap(), b"p&w=");
        assert_eq!(form_value(form, "x").unwrap(), b"");
        assert_eq!(form_value(form, "y"), None);
        assert_eq!(form_value(b"a=%zz", "a"), None);
    }

    #[test]
    fn url_encoding_round_trips() {
        let name = "<img src=x onerror=alert(1)>.html &?#%/é";
        let encoded = url_encode(name);
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
        );
        assert_eq!(percent_decode(encoded.as_bytes()).unwrap(), name.as_bytes());
    }
}
