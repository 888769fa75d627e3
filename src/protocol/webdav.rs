//! WebDAV (RFC 4918) on the wire: the XML request bodies (`PROPFIND`,
//! `PROPPATCH`, `LOCK`), the header fields WebDAV adds (`Depth`, `If`,
//! `Timeout`, `Lock-Token`), and the pieces of a `207 Multi-Status` body.
//! Pure functions of bytes; the session decides what they mean for files.
//!
//! Request bodies are parsed with `quick-xml`, which never expands
//! entities and never reads a DTD: a body with a `<!DOCTYPE` or a
//! reference to an entity other than XML's five and character references
//! is refused ([`XmlError::Dtd`], [`XmlError::Entity`]), so an entity bomb
//! costs nothing. A body is at most [`MAX_XML_BODY`] bytes (the session
//! refuses a longer one before reading it) and at most [`MAX_XML_DEPTH`]
//! elements deep, so parsing is bounded whatever arrives.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Longest `PROPFIND`, `PROPPATCH` or `LOCK` body: the bodies real clients
/// send are well under 4 KiB (Windows' `PROPPATCH` of its four times is
/// about 1 KiB); 64 KiB leaves room for many dead properties at once and
/// is what a session holds at most while a body arrives.
pub const MAX_XML_BODY: usize = 64 * 1024;
/// Deepest element nesting in a request body: the deepest WebDAV body
/// (`propertyupdate/set/prop/<property>/<value>...`) needs five levels;
/// dead property values may nest further, but not without bound.
pub const MAX_XML_DEPTH: usize = 32;
/// Elements in one body: bounds the tree built from it (a 64 KiB body of
/// `<a/>` would otherwise be 16,000 nodes).
pub const MAX_XML_ELEMENTS: usize = 2048;

/// The DAV: namespace.
pub const DAV: &str = "DAV:";
/// Microsoft's namespace of the Win32 times Windows' client sets.
pub const WIN32: &str = "urn:schemas-microsoft-com:";

/// Why a request body is not one the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlError {
    /// Not well-formed XML (or not UTF-8).
    Malformed,
    /// A `<!DOCTYPE ...>`: refused whatever it holds.
    Dtd,
    /// A reference to an entity other than `&lt;` `&gt;` `&amp;` `&apos;`
    /// `&quot;` and character references.
    Entity,
    /// Nested deeper than [`MAX_XML_DEPTH`] or more than
    /// [`MAX_XML_ELEMENTS`] elements.
    TooComplex,
    /// Well-formed, but not the element WebDAV asks for here.
    Unexpected,
}

impl XmlError {
    /// The text of the `400` that refuses it.
    pub fn describe(self) -> &'static str {
        match self {
            XmlError::Malformed => "request body is not well-formed XML",
            XmlError::Dtd => "XML with a DTD is refused",
            XmlError::Entity => "XML entities are refused",
            XmlError::TooComplex => "request body nests too deep or has too many elements",
            XmlError::Unexpected => "request body is not the XML this method takes",
        }
    }
}

/// A property's name: namespace and local name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropName {
    pub ns: String,
    pub name: String,
}

impl PropName {
    pub fn new(ns: &str, name: &str) -> PropName {
        PropName {
            ns: ns.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }
}

/// What a `PROPFIND` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropFind {
    /// `allprop` (or an empty body): every live property the server
    /// defines plus every dead one; `include` names more (none of the
    /// server's live properties are left out of allprop, so it changes
    /// nothing here).
    AllProp,
    /// `propname`: the names only.
    PropName,
    /// `prop`: these, in this order.
    Props(Vec<PropName>),
}

/// One instruction of a `PROPPATCH`, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropUpdate {
    /// Set the property; `element` is the whole property element as the
    /// server will send it back (namespace declarations included), and
    /// `text` its text content (for the properties the server applies,
    /// like `getlastmodified`).
    Set {
        prop: PropName,
        element: String,
        text: String,
    },
    Remove(PropName),
}

/// Exclusive or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    Exclusive,
    Shared,
}

/// What a `LOCK` body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub scope: LockScope,
    /// The `owner` element's content as the client sent it (XML).
    pub owner: Option<String>,
}

/// An element of a request body, with what the server needs to give a
/// part of it back verbatim.
#[derive(Debug)]
struct Element {
    ns: String,
    name: String,
    children: Vec<Element>,
    /// Character data directly inside (references resolved).
    text: String,
    /// The content between the start and the end tag, as sent.
    inner: (usize, usize),
    /// The namespace declarations in force at this element, innermost
    /// last (`""` for the default namespace).
    scope: Vec<(String, String)>,
}

impl Element {
    fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }
}

/// Parses a request body into its root element, refusing DTDs, entities
/// and anything too deep or too large.
fn parse_tree(body: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlError::Malformed)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut scopes: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let before = reader.buffer_position() as usize;
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|_| XmlError::Malformed)?;
        let ns = match resolved {
            // The namespace as declared, references and all: its value is
            // what it stands for.
            ResolveResult::Bound(ns) => Some(
                quick_xml::escape::unescape(ns.into_inner())
                    .map_err(|_| XmlError::Entity)?
                    .into_owned(),
            ),
            ResolveResult::Unbound => Some(String::new()),
            ResolveResult::Unknown(_) => None,
        };
        let after = reader.buffer_position() as usize;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Start(start) | Event::Empty(start) => {
                let ns = ns.ok_or(XmlError::Malformed)?;
                elements += 1;
                if root.is_some() || elements > MAX_XML_ELEMENTS {
                    return Err(if root.is_some() {
                        XmlError::Malformed
                    } else {
                        XmlError::TooComplex
                    });
                }
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(XmlError::TooComplex);
                }
                let mut scope = scopes.last().cloned().unwrap_or_default();
                for attr in start.attributes() {
                    let attr = attr.map_err(|_| XmlError::Malformed)?;
                    let key = attr.key.as_ref();
                    let prefix = if key == "xmlns" {
                        Some("")
                    } else {
                        key.strip_prefix("xmlns:")
                    };
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|_| XmlError::Entity)?;
                    if let Some(prefix) = prefix {
                        scope.retain(|(p, _)| p != prefix);
                        scope.push((prefix.to_owned(), value.into_owned()));
                    }
                }
                let name = start.local_name().into_inner().to_owned();
                // quick-xml takes `< a="b"/>` for an element without a
                // name; XML has no such thing.
                if name.is_empty() || name.contains(':') {
                    return Err(XmlError::Malformed);
                }
                let element = Element {
                    ns,
                    name,
                    children: Vec::new(),
                    text: String::new(),
                    inner: (after, after),
                    scope: scope.clone(),
                };
                if empty {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => root = Some(element),
                    }
                } else {
                    stack.push(element);
                    scopes.push(scope);
                }
            }
            Event::End(_) => {
                let mut element = stack.pop().ok_or(XmlError::Malformed)?;
                scopes.pop();
                // `before` is where `</` starts: the end of the content.
                element.inner.1 = before.max(element.inner.0);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(XmlError::Malformed),
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    let c = r
                        .resolve_char_ref()
                        .map_err(|_| XmlError::Malformed)?
                        .ok_or(XmlError::Malformed)?;
                    Cow::Owned(c.to_string())
                } else {
                    Cow::Borrowed(
                        quick_xml::escape::resolve_predefined_entity(&r).ok_or(XmlError::Entity)?,
                    )
                };
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => return Err(XmlError::Malformed),
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed);
    }
    root.ok_or(XmlError::Malformed)
}

fn prop_name(element: &Element) -> PropName {
    PropName::new(&element.ns, &element.name)
}

/// Parses a `PROPFIND` body; an empty body is `allprop` (RFC 4918 §9.1).
pub fn parse_propfind(body: &[u8]) -> Result<PropFind, XmlError> {
    if body.trim_ascii().is_empty() {
        return Ok(PropFind::AllProp);
    }
    let root = parse_tree(body)?;
    if !root.is(DAV, "propfind") {
        return Err(XmlError::Unexpected);
    }
    for child in &root.children {
        if child.is(DAV, "allprop") {
            return Ok(PropFind::AllProp);
        }
        if child.is(DAV, "propname") {
            return Ok(PropFind::PropName);
        }
        if child.is(DAV, "prop") {
            return Ok(PropFind::Props(
                child.children.iter().map(prop_name).collect(),
            ));
        }
    }
    Err(XmlError::Unexpected)
}

/// Parses a `PROPPATCH` body (`propertyupdate`), its instructions in
/// document order.
pub fn parse_propertyupdate(body: &[u8]) -> Result<Vec<PropUpdate>, XmlError> {
    let root = parse_tree(body)?;
    if !root.is(DAV, "propertyupdate") {
        return Err(XmlError::Unexpected);
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::Malformed)?;
    let mut updates = Vec::new();
    for action in &root.children {
        let set = action.is(DAV, "set");
        if !set && !action.is(DAV, "remove") {
            continue;
        }
        for prop in action.children.iter().filter(|c| c.is(DAV, "prop")) {
            for property in &prop.children {
                let name = prop_name(property);
                if set {
                    updates.push(PropUpdate::Set {
                        element: dead_element(property, text),
                        text: property.text.trim().to_owned(),
                        prop: name,
                    });
                } else {
                    updates.push(PropUpdate::Remove(name));
                }
            }
        }
    }
    if updates.is_empty() {
        return Err(XmlError::Unexpected);
    }
    Ok(updates)
}

/// The prefix a stored property element is written with; a declaration
/// of the same prefix in the client's scope is left out.
const DEAD_PREFIX: &str = "ferryP";

/// A property element as it will be sent back: its own namespace bound
/// to [`DEAD_PREFIX`], every other declaration in scope repeated so that
/// the value means what it meant, and the content as the client sent it.
fn dead_element(property: &Element, body: &str) -> String {
    let mut out = String::new();
    let inner = &body[property.inner.0..property.inner.1];
    let open = if property.ns.is_empty() {
        format!("<{}", property.name)
    } else {
        format!(
            "<{DEAD_PREFIX}:{} xmlns:{DEAD_PREFIX}=\"{}\"",
            property.name,
            escape(&property.ns)
        )
    };
    out.push_str(&open);
    let mut default_declared = false;
    for (prefix, uri) in &property.scope {
        if prefix == DEAD_PREFIX {
            continue;
        }
        if prefix.is_empty() {
            default_declared = true;
            let _ = write!(out, " xmlns=\"{}\"", escape(uri));
        } else {
            let _ = write!(out, " xmlns:{prefix}=\"{}\"", escape(uri));
        }
    }
    if property.ns.is_empty() && !default_declared {
        // An element in no namespace: a default in the response's scope
        // must not claim it.
        out.push_str(" xmlns=\"\"");
    }
    if inner.is_empty() {
        out.push_str("/>");
    } else {
        out.push('>');
        out.push_str(inner);
        if property.ns.is_empty() {
            let _ = write!(out, "</{}>", property.name);
        } else {
            let _ = write!(out, "</{DEAD_PREFIX}:{}>", property.name);
        }
    }
    out
}

/// Parses a `LOCK` body; an empty body is a refresh (`None`).
pub fn parse_lockinfo(body: &[u8]) -> Result<Option<LockInfo>, XmlError> {
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    let root = parse_tree(body)?;
    if !root.is(DAV, "lockinfo") {
        return Err(XmlError::Unexpected);
    }
    let scope = root
        .child(DAV, "lockscope")
        .and_then(|s| s.children.first())
        .ok_or(XmlError::Unexpected)?;
    let scope = if scope.is(DAV, "exclusive") {
        LockScope::Exclusive
    } else if scope.is(DAV, "shared") {
        LockScope::Shared
    } else {
        return Err(XmlError::Unexpected);
    };
    let write = root
        .child(DAV, "locktype")
        .and_then(|t| t.children.first())
        .is_some_and(|t| t.is(DAV, "write"));
    if !write {
        return Err(XmlError::Unexpected);
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::Malformed)?;
    let owner = root.child(DAV, "owner").map(|owner| {
        let inner = &text[owner.inner.0..owner.inner.1];
        // Declarations the owner's content relies on come along.
        let mut decls = String::new();
        for (prefix, uri) in &owner.scope {
            if prefix.is_empty() {
                let _ = write!(decls, " xmlns=\"{}\"", escape(uri));
            } else if prefix != "D" {
                let _ = write!(decls, " xmlns:{prefix}=\"{}\"", escape(uri));
            }
        }
        format!("<D:owner{decls}>{inner}</D:owner>")
    });
    Ok(Some(LockInfo { scope, owner }))
}

/// The request fields of WebDAV's locks and of conditional requests, as
/// sent (each parsed where it is used; `Depth`, `Destination` and
/// `Overwrite` are [`Request`](super::http::Request)'s own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DavFields<'a> {
    pub if_: Option<&'a [u8]>,
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub timeout: Option<&'a [u8]>,
    pub lock_token: Option<&'a [u8]>,
}

impl<'a> DavFields<'a> {
    /// Keeps the field if it is one of these; false otherwise.
    pub fn take(&mut self, name: &str, value: &'a [u8]) -> bool {
        let slot = if name.eq_ignore_ascii_case("if") {
            &mut self.if_
        } else if name.eq_ignore_ascii_case("if-match") {
            &mut self.if_match
        } else if name.eq_ignore_ascii_case("if-none-match") {
            &mut self.if_none_match
        } else if name.eq_ignore_ascii_case("timeout") {
            &mut self.timeout
        } else if name.eq_ignore_ascii_case("lock-token") {
            &mut self.lock_token
        } else {
            return false;
        };
        *slot = Some(value);
        true
    }
}

/// The `Depth` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Zero,
    One,
    Infinity,
}

/// `0`, `1` or `infinity`; `None` for anything else (`400`).
pub fn parse_depth(value: &[u8]) -> Option<Depth> {
    match value.trim_ascii() {
        b"0" => Some(Depth::Zero),
        b"1" => Some(Depth::One),
        v if v.eq_ignore_ascii_case(b"infinity") => Some(Depth::Infinity),
        _ => None,
    }
}

/// The first acceptable value of a `Timeout` field (`Second-N` or
/// `Infinite`, comma-separated), in seconds, `u64::MAX` for `Infinite`.
pub fn parse_timeout(value: &[u8]) -> Option<u64> {
    value.split(|&b| b == b',').find_map(|item| {
        let item = item.trim_ascii();
        if item.eq_ignore_ascii_case(b"infinite") {
            return Some(u64::MAX);
        }
        let digits = item
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case(b"second-"))
            .map(|_| &item[7..])?;
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    })
}

/// A `Lock-Token` field: `<token>`.
pub fn parse_lock_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    value.strip_prefix(b"<")?.strip_suffix(b">")
}

/// One condition of an `If` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A state token (`<opaquelocktoken:...>`, `<DAV:no-lock>`).
    Token { not: bool, token: String },
    /// An entity tag, with its quotes (`["abc"]` is `"abc"`).
    ETag { not: bool, etag: String },
}

/// A list of conditions, all of which must hold, about the request's
/// resource (`resource` is `None`) or a tagged one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfList {
    pub resource: Option<String>,
    pub conditions: Vec<Condition>,
}

/// Most lists in an `If` field; the head's size bounds it anyway.
const MAX_IF_LISTS: usize = 64;

/// Parses an `If` field (RFC 4918 §10.4): the lists, any of which may
/// hold; `None` when it is malformed (`400`).
pub fn parse_if(value: &[u8]) -> Option<Vec<IfList>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut rest = text.trim_start();
    let mut lists = Vec::new();
    let mut tag: Option<String> = None;
    let mut tagged = None;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            // A resource tag: the lists after it are about that resource.
            if tagged == Some(false) {
                return None;
            }
            tagged = Some(true);
            let end = after.find('>')?;
            tag = Some(after[..end].to_owned());
            rest = after[end + 1..].trim_start();
            if !rest.starts_with('(') {
                return None;
            }
            continue;
        }
        let after = rest.strip_prefix('(')?;
        if tagged.is_none() {
            tagged = Some(false);
        }
        let end = after.find(')')?;
        let mut inner = after[..end].trim();
        rest = after[end + 1..].trim_start();
        let mut conditions = Vec::new();
        while !inner.is_empty() {
            let mut not = false;
            if let Some(after_not) = inner.strip_prefix("Not") {
                not = true;
                inner = after_not.trim_start();
            }
            if let Some(after) = inner.strip_prefix('<') {
                let end = after.find('>')?;
                conditions.push(Condition::Token {
                    not,
                    token: after[..end].to_owned(),
                });
                inner = after[end + 1..].trim_start();
            } else if let Some(after) = inner.strip_prefix('[') {
                let end = after.find(']')?;
                conditions.push(Condition::ETag {
                    not,
                    etag: after[..end].trim().to_owned(),
                });
                inner = after[end + 1..].trim_start();
            } else {
                return None;
            }
        }
        if conditions.is_empty() || lists.len() >= MAX_IF_LISTS {
            return None;
        }
        lists.push(IfList {
            resource: tag.clone(),
            conditions,
        });
    }
    (!lists.is_empty()).then_some(lists)
}

/// Whether an `If-Match`/`If-None-Match` value names `etag` (`*` names
/// any existing version). Weak tags compare by their opaque part.
pub fn etag_list_matches(value: &[u8], etag: Option<&str>) -> bool {
    let Some(etag) = etag else {
        return false;
    };
    let value = String::from_utf8_lossy(value);
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Escapes text for XML content or a double-quoted attribute.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Percent-encodes a path for an `href`: unreserved characters and `/`
/// stay, every other byte becomes `%XX`, so any name (spaces, `#`, `?`,
/// `%`, non-ASCII) comes back as the same bytes once decoded.
pub fn encode_href(path: &str, out: &mut String) {
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `creationdate`'s format (RFC 3339, UTC): `2026-11-30T01:20:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = super::civil_from_days(secs.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `getlastmodified`'s format (RFC 1123, as `Last-Modified`).
pub fn http_date(secs: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    httpdate::fmt_http_date(time)
}

/// The start of every `207` body.
pub const MULTISTATUS_OPEN: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n";
/// The end of every `207` body.
pub const MULTISTATUS_CLOSE: &str = "</D:multistatus>\n";

/// What the server knows of a resource, for its live properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'a> {
    pub collection: bool,
    pub size: u64,
    pub mtime: i64,
    pub etag: Option<&'a str>,
    pub display_name: &'a str,
}

/// The live properties, in the order allprop and propname give them.
pub const LIVE: [&str; 9] = [
    "resourcetype",
    "getcontentlength",
    "getlastmodified",
    "creationdate",
    "displayname",
    "getetag",
    "getcontenttype",
    "supportedlock",
    "lockdiscovery",
];

/// Whether `prop` is one of the server's live properties (which
/// `PROPPATCH` may not set, except the modification times it applies).
pub fn is_live(prop: &PropName) -> bool {
    prop.ns == DAV && LIVE.contains(&prop.name.as_str())
}

/// An active lock as `lockdiscovery` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveLock<'a> {
    pub scope: LockScope,
    pub infinite: bool,
    /// The `owner` element, as the client sent it.
    pub owner: Option<&'a str>,
    /// Seconds left.
    pub timeout: u64,
    pub token: &'a str,
    /// The path of the locked resource (percent-encoded for `href`).
    pub root: &'a str,
}

/// Writes one `activelock` element.
pub fn write_activelock(out: &mut String, lock: &ActiveLock<'_>) {
    let scope = match lock.scope {
        LockScope::Exclusive => "exclusive",
        LockScope::Shared => "shared",
    };
    let depth = if lock.infinite { "infinity" } else { "0" };
    let _ = write!(
        out,
        "<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:{scope}/></D:lockscope>\
         <D:depth>{depth}</D:depth>{}<D:timeout>Second-{}</D:timeout>\
         <D:locktoken><D:href>{}</D:href></D:locktoken><D:lockroot><D:href>",
        lock.owner.unwrap_or_default(),
        lock.timeout,
        escape(lock.token),
    );
    encode_href(lock.root, out);
    out.push_str("</D:href></D:lockroot></D:activelock>");
}

/// Writes the value of live property `name` (a `DAV:` name) of a
/// resource as a whole element; false when the resource does not have it
/// (a collection has no length or content type). `locks` is the content
/// of `lockdiscovery`.
pub fn write_live(out: &mut String, name: &str, facts: &Facts<'_>, locks: &str) -> bool {
    match name {
        "resourcetype" if facts.collection => {
            out.push_str("<D:resourcetype><D:collection/></D:resourcetype>")
        }
        "resourcetype" => out.push_str("<D:resourcetype/>"),
        "getcontentlength" if !facts.collection => {
            let _ = write!(out, "<D:getcontentlength>{}</D:getcontentlength>", facts.size);
        }
        "getlastmodified" => {
            let _ = write!(
                out,
                "<D:getlastmodified>{}</D:getlastmodified>",
                http_date(facts.mtime)
            );
        }
        "creationdate" => {
            let _ = write!(
                out,
                "<D:creationdate>{}</D:creationdate>",
                rfc3339(facts.mtime)
            );
        }
        "displayname" => {
            let _ = write!(
                out,
                "<D:displayname>{}</D:displayname>",
                escape(facts.display_name)
            );
        }
        "getetag" => match facts.etag {
            Some(etag) => {
                let _ = write!(out, "<D:getetag>{}</D:getetag>", escape(etag));
            }
            None => return false,
        },
        "getcontenttype" if !facts.collection => {
            out.push_str("<D:getcontenttype>application/octet-stream</D:getcontenttype>")
        }
        "supportedlock" => out.push_str(
            "<D:supportedlock>\
             <D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>\
             <D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>\
             </D:supportedlock>",
        ),
        "lockdiscovery" => {
            let _ = write!(out, "<D:lockdiscovery>{locks}</D:lockdiscovery>");
        }
        _ => return false,
    }
    true
}

/// Writes an empty element for `prop` (for `propname`, and for the
/// properties a propstat reports without a value).
pub fn write_empty_prop(out: &mut String, prop: &PropName) {
    if prop.ns == DAV {
        let _ = write!(out, "<D:{}/>", prop.name);
    } else if prop.ns.is_empty() {
        let _ = write!(out, "<{} xmlns=\"\"/>", prop.name);
    } else {
        let _ = write!(
            out,
            "<{DEAD_PREFIX}:{} xmlns:{DEAD_PREFIX}=\"{}\"/>",
            prop.name,
            escape(&prop.ns)
        );
    }
}

/// The reason phrase in a `propstat`'s status line.
pub fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        424 => "Failed Dependency",
        507 => "Insufficient Storage",
        _ => "Error",
    };
    format!("HTTP/1.1 {status} {reason}")
}

/// Writes a `response` with one `propstat` per status, each holding its
/// properties' XML; a status with no properties is left out.
pub fn write_response(out: &mut String, href: &str, propstats: &[(u16, &str)]) {
    out.push_str("<D:response><D:href>");
    encode_href(href, out);
    out.push_str("</D:href>");
    for (status, props) in propstats.iter().filter(|(_, p)| !p.is_empty()) {
        let _ = write!(
            out,
            "<D:propstat><D:prop>{props}</D:prop><D:status>{}</D:status></D:propstat>",
            status_line(*status)
        );
    }
    out.push_str("</D:response>\n");
}

/// The body of a refusal that names a precondition (RFC 4918 §16), such
/// as `propfind-finite-depth`.
pub fn error_body(condition: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:error xmlns:D=\"DAV:\"><D:{condition}/></D:error>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propfind_bodies() {
        assert_eq!(parse_propfind(b""), Ok(PropFind::AllProp));
        let body = br#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><x:a xmlns:x="urn:x"/></D:prop></D:propfind>"#;
        assert_eq!(
            parse_propfind(body),
            Ok(PropFind::Props(vec![
                PropName::new(DAV, "getetag"),
                PropName::new("urn:x", "a")
            ]))
        );
        let body = br#"<propfind xmlns="DAV:"><propname/></propfind>"#;
        assert_eq!(parse_propfind(body), Ok(PropFind::PropName));
        assert_eq!(
            parse_propfind(b"<propfind xmlns='DAV:'><prop>"),
            Err(XmlError::Malformed)
        );
        assert_eq!(parse_propfind(b"<a/>"), Err(XmlError::Unexpected));
    }

    #[test]
    fn dtds_and_entities_are_refused() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><D:propfind xmlns:D="DAV:"><D:prop><x>&lol2;</x></D:prop></D:propfind>"#;
        assert_eq!(parse_propfind(bomb), Err(XmlError::Dtd));
        let entity = br#"<D:propfind xmlns:D="DAV:"><D:prop><x>&lol;</x></D:prop></D:propfind>"#;
        assert_eq!(parse_propfind(entity), Err(XmlError::Entity));
        // Found by the fuzz target `webdav_xml`: an element without a name.
        let nameless =
            br#"<D:propfind xmlns:D="DAV:"><D:prop>< xmlns:x="urn:x"/></D:prop></D:propfind>"#;
        assert_eq!(parse_propfind(nameless), Err(XmlError::Malformed));
        let hidden = br#"<?xml version="1.0"?><!-- a comment --><?pi x?>
<!DOCTYPE x SYSTEM "file:///etc/passwd"><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;
        assert_eq!(parse_propfind(hidden), Err(XmlError::Dtd));
        let fine = br#"<D:propfind xmlns:D="DAV:"><D:prop><x>&lt;&#65;</x></D:prop></D:propfind>"#;
        assert!(parse_propfind(fine).is_ok());
        let deep = format!(
            "<D:propfind xmlns:D=\"DAV:\">{}{}</D:propfind>",
            "<a>".repeat(40),
            "</a>".repeat(40)
        );
        assert_eq!(parse_propfind(deep.as_bytes()), Err(XmlError::TooComplex));
    }

    #[test]
    fn proppatch_keeps_values_with_their_namespaces() {
        let body = br#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/ns"><D:set><D:prop><Z:author><Z:name>Jane &amp; co</Z:name></Z:author><D:getlastmodified>Mon, 30 Nov 2026 01:00:00 GMT</D:getlastmodified></D:prop></D:set><D:remove><D:prop><Z:old/></D:prop></D:remove></D:propertyupdate>"#;
        let updates = parse_propertyupdate(body).unwrap();
        assert_eq!(updates.len(), 3);
        let PropUpdate::Set { prop, element, .. } = &updates[0] else {
            panic!("{updates:?}");
        };
        assert_eq!(prop, &PropName::new("http://example.com/ns", "author"));
        assert!(
            element.contains("<Z:name>Jane &amp; co</Z:name>"),
            "{element}"
        );
        assert!(
            element.contains("xmlns:Z=\"http://example.com/ns\""),
            "{element}"
        );
        // The stored element parses again, to the same property.
        let again = format!(
            "<D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop>{element}</D:prop></D:set></D:propertyupdate>"
        );
        let reparsed = parse_propertyupdate(again.as_bytes()).unwrap();
        assert!(matches!(&reparsed[0], PropUpdate::Set { prop: p, .. } if p == prop));
        assert!(
            matches!(&updates[1], PropUpdate::Set { text, .. } if text == "Mon, 30 Nov 2026 01:00:00 GMT")
        );
        assert_eq!(
            updates[2],
            PropUpdate::Remove(PropName::new("http://example.com/ns", "old"))
        );
    }

    /// Found by the fuzz target `webdav_xml`: a namespace declared with
    /// a reference (`&apos;`) was kept as written, so a stored property
    /// came back in another namespace (`ur&amp;apos;n:z`).
    #[test]
    fn a_namespace_with_references_means_its_value() {
        let body = br#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="ur&apos;n:z"><D:set><D:prop><Z:a>1</Z:a></D:prop></D:set></D:propertyupdate>"#;
        let updates = parse_propertyupdate(body).unwrap();
        let PropUpdate::Set { prop, element, .. } = &updates[0] else {
            panic!("{updates:?}");
        };
        assert_eq!(prop, &PropName::new("ur'n:z", "a"));
        let again = format!(
            "<D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop>{element}</D:prop></D:set></D:propertyupdate>"
        );
        let reparsed = parse_propertyupdate(again.as_bytes()).unwrap();
        assert!(
            matches!(&reparsed[0], PropUpdate::Set { prop: p, .. } if p == prop),
            "{element}"
        );
    }

    #[test]
    fn lockinfo_and_headers() {
        let body = br#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>me</D:href></D:owner></D:lockinfo>"#;
        let info = parse_lockinfo(body).unwrap().unwrap();
        assert_eq!(info.scope, LockScope::Exclusive);
        assert_eq!(
            info.owner.as_deref(),
            Some("<D:owner><D:href>me</D:href></D:owner>")
        );
        assert_eq!(parse_lockinfo(b""), Ok(None));
        assert_eq!(parse_timeout(b"Second-600"), Some(600));
        assert_eq!(
            parse_timeout(b"Infinite, Second-4100000000"),
            Some(u64::MAX)
        );
        assert_eq!(parse_timeout(b"Second-x, Second-5"), Some(5));
        assert_eq!(parse_depth(b"Infinity"), Some(Depth::Infinity));
        assert_eq!(parse_depth(b"2"), None);
        assert_eq!(
            parse_lock_token(b" <opaquelocktoken:x> "),
            Some(&b"opaquelocktoken:x"[..])
        );
    }

    #[test]
    fn if_fields() {
        let lists = parse_if(b"(<opaquelocktoken:a> [\"e1\"]) (Not <DAV:no-lock>)").unwrap();
        assert_eq!(lists.len(), 2);
        assert_eq!(
            lists[0].conditions,
            vec![
                Condition::Token {
                    not: false,
                    token: "opaquelocktoken:a".into()
                },
                Condition::ETag {
                    not: false,
                    etag: "\"e1\"".into()
                }
            ]
        );
        let tagged = parse_if(b"<http://h/files/x> (<t1>) <http://h/files/y> (<t2>)").unwrap();
        assert_eq!(tagged[1].resource.as_deref(), Some("http://h/files/y"));
        assert_eq!(parse_if(b"(<t1>) <http://h/x> (<t2>)"), None, "mixed");
        assert_eq!(parse_if(b"()"), None);
        assert_eq!(parse_if(b"<x>"), None);
        assert_eq!(parse_if(b"(<t1"), None);
    }

    #[test]
    fn dates_and_hrefs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
        let mut href = String::new();
        encode_href("/files/a b#%é", &mut href);
        assert_eq!(href, "/files/a%20b%23%25%C3%A9");
        assert!(etag_list_matches(b"\"x\", W/\"y\"", Some("\"y\"")));
        assert!(etag_list_matches(b"*", Some("\"y\"")));
        assert!(!etag_list_matches(b"*", None));
    }
}
