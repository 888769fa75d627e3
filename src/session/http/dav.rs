//! WebDAV's methods on the HTTP front (RFC 4918, classes 1 and 2), over
//! the same users, files, quotas and audit as every other request:
//! `OPTIONS`, `PROPFIND` (a folder's `207` streamed a step at a time, as
//! a listing is), `PROPPATCH`, `LOCK`, `UNLOCK`, and the lock and
//! condition checks `PUT`, `DELETE` and `GET` make. The XML is read and
//! written by `protocol/webdav.rs`; the locks live in `session/locks.rs`.
//!
//! A resource is named by its path under `/files/`: `""` is the user's
//! root, the collection `/files/`.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use super::{After, Framing, ListJob, Session, State, TEXT};
use crate::audit::{Ending, Transfer, TransferKind};
use crate::integrity::Digest;
use crate::metrics::Protocol;
use crate::protocol::chunked::ChunkedDecoder;
use crate::protocol::http::{self, Body, Expect, Method, Request};
use crate::protocol::path::{self, FilePath};
use crate::protocol::webdav::{
    self, ActiveLock, Condition, DAV, Depth, Facts, IfList, LockScope, MAX_XML_BODY,
    MULTISTATUS_CLOSE, MULTISTATUS_OPEN, PropFind, PropName, PropUpdate, WIN32,
};
use crate::session::listing::Streaming;
use crate::session::locks::{DEFAULT_LOCK_SECS, Lock, LockRefused};
use crate::session::{DavRefused, Failure, Services};
use crate::storage::{DavFacts, DeadProp, Entry, PropsError, StorageError, UserDir};

/// What `Allow` says for a file, a folder, and the root collection.
pub(super) const ALLOW_FILE: &str =
    "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, MOVE, COPY, PROPFIND, PROPPATCH, LOCK, UNLOCK";
pub(super) const ALLOW_FOLDER: &str =
    "OPTIONS, GET, HEAD, DELETE, MKCOL, MOVE, COPY, PROPFIND, PROPPATCH, LOCK, UNLOCK";
pub(super) const ALLOW_ROOT: &str = "OPTIONS, GET, HEAD, PROPFIND, PROPPATCH, LOCK, UNLOCK";
const XML: &str = "application/xml; charset=utf-8";
/// Where WebDAV's resources live.
const BASE: &str = "/files/";

/// Whether `method` is one of WebDAV's that this file answers.
pub(super) fn is_dav(method: Method) -> bool {
    matches!(
        method,
        Method::Options | Method::Propfind | Method::Proppatch | Method::Lock | Method::Unlock
    )
}

/// Whether the method reads a body (an XML one, at most [`MAX_XML_BODY`]).
pub(super) fn takes_body(method: Method) -> bool {
    matches!(method, Method::Propfind | Method::Proppatch | Method::Lock)
}

/// What a WebDAV request said, kept while its body arrives.
#[derive(Debug)]
pub(super) struct Call {
    method: Method,
    /// `""` for the root.
    path: String,
    depth: Option<Vec<u8>>,
    if_: Option<Vec<u8>>,
    timeout: Option<Vec<u8>>,
    lock_token: Option<Vec<u8>>,
    chunked_ok: bool,
    user: String,
    dir: UserDir,
    keep_alive: bool,
}

/// A WebDAV request body being received: at most [`MAX_XML_BODY`] bytes.
#[derive(Debug)]
pub(super) struct BodyJob {
    call: Call,
    framing: Framing,
    body: Vec<u8>,
}

impl BodyJob {
    /// How many bytes the session takes now.
    pub(super) fn read_limit(&self) -> usize {
        match &self.framing {
            Framing::Length { left } => usize::try_from(*left).unwrap_or(usize::MAX),
            Framing::Chunked(decoder) => usize::try_from(decoder.data_left())
                .unwrap_or(usize::MAX)
                .saturating_add(super::CHUNK_FRAMING_READ),
        }
    }
}

/// The rest of a `PROPFIND` of a collection with `Depth: 1`, streamed as
/// a listing is: one `response` per member.
#[derive(Debug)]
pub(super) struct Multistatus {
    find: PropFind,
    dir: UserDir,
    /// The collection's path (`""` for the root).
    base: String,
}

/// The path of a resource (`None` for the root).
fn file_path(path: &str) -> Option<FilePath<'_>> {
    if path.is_empty() {
        None
    } else {
        path::validate(path.as_bytes())
    }
}

/// The path of `name` in the collection `base`.
fn member(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}/{name}")
    }
}

/// The state tokens an `If` field submits (RFC 4918 §10.4): those it
/// names without `Not`.
fn submitted(lists: &[IfList]) -> Vec<&str> {
    lists
        .iter()
        .flat_map(|list| &list.conditions)
        .filter_map(|c| match c {
            Condition::Token { not: false, token } => Some(token.as_str()),
            _ => None,
        })
        .collect()
}

/// The parent collection of `path`, whose membership a new or removed
/// `path` changes.
fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..slash])
}

/// A fresh lock token: 128 random bits in the UUID form clients expect.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if crate::sys::random_bytes(&mut bytes).is_err() {
        // Unique is what matters; the kernel's random bytes are the
        // normal case, time and a counter the fallback.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    format!(
        "opaquelocktoken:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The `lockdiscovery` content of the locks in `locks`.
fn discovery(locks: &[Lock], now: Instant) -> String {
    let mut out = String::new();
    for lock in locks {
        let root = format!("{BASE}{}", lock.path);
        webdav::write_activelock(
            &mut out,
            &ActiveLock {
                scope: lock.scope,
                infinite: lock.infinite,
                owner: lock.owner.as_deref(),
                timeout: lock.seconds_left(now),
                token: &lock.token,
                root: &root,
            },
        );
    }
    out
}

/// A resource's facts as the XML side wants them.
struct Described {
    collection: bool,
    size: u64,
    mtime: i64,
    etag: String,
    name: String,
}

impl Described {
    fn of(path: &str, facts: DavFacts) -> Described {
        Described {
            collection: facts.folder,
            size: facts.size,
            mtime: facts.mtime,
            etag: facts.version.to_string(),
            name: path.rsplit('/').next().unwrap_or(path).to_owned(),
        }
    }

    fn of_entry(entry: &Entry) -> Described {
        Described {
            collection: entry.folder,
            size: entry.size,
            mtime: entry.mtime,
            etag: entry.version.to_string(),
            name: entry.name.clone(),
        }
    }

    fn href(&self, path: &str) -> String {
        if self.collection && !path.is_empty() {
            format!("{BASE}{path}/")
        } else {
            format!("{BASE}{path}")
        }
    }
}

/// Writes the `response` of one resource for `find`: found properties in a
/// `200` propstat, the others in a `404` one.
fn write_resource(
    out: &mut String,
    href: &str,
    described: &Described,
    find: &PropFind,
    dead: &dyn Fn() -> Vec<DeadProp>,
    locks: &dyn Fn() -> String,
) {
    let facts = Facts {
        collection: described.collection,
        size: described.size,
        mtime: described.mtime,
        etag: Some(&described.etag),
        display_name: &described.name,
    };
    let mut found = String::new();
    let mut missing = String::new();
    match find {
        PropFind::AllProp => {
            let discovery = locks();
            for live in webdav::LIVE {
                webdav::write_live(&mut found, live, &facts, &discovery);
            }
            for prop in dead() {
                found.push_str(&prop.xml);
            }
        }
        PropFind::PropName => {
            for live in webdav::LIVE {
                let mut scratch = String::new();
                if webdav::write_live(&mut scratch, live, &facts, "") {
                    webdav::write_empty_prop(&mut found, &PropName::new(DAV, live));
                }
            }
            for prop in dead() {
                webdav::write_empty_prop(&mut found, &PropName::new(&prop.ns, &prop.name));
            }
        }
        PropFind::Props(names) => {
            let mut dead_props: Option<Vec<DeadProp>> = None;
            let mut discovery: Option<String> = None;
            for prop in names {
                if webdav::is_live(prop) {
                    let discovery = if prop.name == "lockdiscovery" {
                        discovery.get_or_insert_with(locks).as_str()
                    } else {
                        ""
                    };
                    if !webdav::write_live(&mut found, &prop.name, &facts, discovery) {
                        webdav::write_empty_prop(&mut missing, prop);
                    }
                    continue;
                }
                let props = dead_props.get_or_insert_with(dead);
                match props
                    .iter()
                    .find(|p| p.ns == prop.ns && p.name == prop.name)
                {
                    Some(p) => found.push_str(&p.xml),
                    None => webdav::write_empty_prop(&mut missing, prop),
                }
            }
        }
    }
    webdav::write_response(out, href, &[(200, &found), (404, &missing)]);
}

/// The path a tagged `If` list names (`http://host/files/x` or
/// `/files/x`), or `None` when it is not one of this user's resources.
fn tagged_path(resource: &str) -> Option<String> {
    let raw = resource.as_bytes();
    let path = match raw.iter().position(|&b| b == b'/') {
        Some(0) => raw,
        _ => {
            let after = raw.windows(3).position(|w| w == b"://")? + 3;
            let slash = raw[after..].iter().position(|&b| b == b'/')? + after;
            &raw[slash..]
        }
    };
    match http::route(path) {
        http::Route::Listing => Some(String::new()),
        http::Route::File(raw) | http::Route::Folder(raw) => http::decode_path(raw),
        _ => None,
    }
}

impl Session {
    /// `OPTIONS` on `/files/` or a file: what WebDAV clients probe first,
    /// answered without authentication (it says nothing about any file).
    pub(super) fn dav_options(&mut self, root: bool, after: After, services: &Services) {
        let allow = if root { ALLOW_ROOT } else { ALLOW_FILE };
        let fields = [("DAV", "1, 2"), ("MS-Author-Via", "DAV"), ("Allow", allow)];
        self.respond(200, &fields, b"", true, after, services);
    }

    /// A WebDAV method on `/files/` (`name` is `None`) or a file, after
    /// authentication: reads its body, if it has one, then runs it.
    pub(super) fn dav(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        name: Option<FilePath<'_>>,
        after: After,
        services: &Services,
    ) {
        let owned = |field: Option<&[u8]>| field.map(<[u8]>::to_vec);
        let call = Call {
            method: request.method,
            path: name.map_or(String::new(), |n| n.as_str().to_owned()),
            depth: owned(request.depth),
            if_: owned(request.dav.if_),
            timeout: owned(request.dav.timeout),
            lock_token: owned(request.dav.lock_token),
            chunked_ok: request.minor_version >= 1,
            user: user.to_owned(),
            dir: dir.clone(),
            keep_alive: after == After::KeepAlive,
        };
        if !takes_body(request.method) || !request.body.is_present() {
            return self.dav_run(call, &[], services);
        }
        let framing = match request.body {
            Body::Length(n) if n > MAX_XML_BODY as u64 => {
                return self.dav_fail(DavRefused::BodyTooLarge, After::Close, services);
            }
            Body::Length(n) => Framing::Length { left: n },
            Body::Chunked => Framing::Chunked(ChunkedDecoder::new()),
            Body::None => Framing::Length { left: 0 },
        };
        if request.expect == Expect::Unsupported {
            let refused = super::Refused::ExpectationFailed;
            return self.fail(refused, After::Close, services);
        }
        if request.expect == Expect::Continue {
            services.metrics.reply(Protocol::Http, 100);
            self.shell
                .out
                .buf()
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.state = State::DavBody(Box::new(BodyJob {
            call,
            framing,
            body: Vec::new(),
        }));
    }

    /// Body bytes of a WebDAV request; returns how many of `data` were
    /// its. A body over [`MAX_XML_BODY`] is `413` and closes.
    pub(super) fn dav_body(&mut self, data: &[u8], services: &Services) -> usize {
        let State::DavBody(job) = &mut self.state else {
            return 0;
        };
        let BodyJob { framing, body, .. } = &mut **job;
        let mut over = false;
        let mut keep = |bytes: &[u8]| {
            if body.len() + bytes.len() > MAX_XML_BODY {
                over = true;
            } else {
                body.extend_from_slice(bytes);
            }
        };
        let Ok((taken, done)) = framing.feed(data, &mut keep) else {
            self.fail(super::Refused::Malformed, After::Close, services);
            return data.len();
        };
        if over {
            self.dav_fail(DavRefused::BodyTooLarge, After::Close, services);
            return data.len();
        }
        if done && let State::DavBody(job) = self.take_state() {
            let BodyJob { call, body, .. } = *job;
            self.dav_run(call, &body, services);
        }
        taken
    }

    /// A refusal of WebDAV's: a precondition's XML body where RFC 4918
    /// names one, the text of the one table otherwise.
    fn dav_fail(&mut self, refused: DavRefused, after: After, services: &Services) {
        let Some(condition) = refused.condition() else {
            return self.fail(refused, after, services);
        };
        let (status, _) = Failure::Dav(refused).http();
        let body = webdav::error_body(condition);
        let fields = [("Content-Type", XML)];
        self.respond(status, &fields, body.as_bytes(), false, after, services);
    }

    fn after_of(call: &Call) -> After {
        After::from_keep_alive(call.keep_alive)
    }

    /// Runs a WebDAV request whose body (if any) is all here.
    fn dav_run(&mut self, call: Call, body: &[u8], services: &Services) {
        let after = Session::after_of(&call);
        let lists = match call.if_.as_deref().map(webdav::parse_if) {
            None => Vec::new(),
            Some(Some(lists)) => lists,
            Some(None) => return self.dav_fail(DavRefused::BadField("If"), after, services),
        };
        if !self.if_holds(&call, &lists, services) {
            return self.dav_fail(DavRefused::PreconditionFailed, after, services);
        }
        let result = match call.method {
            Method::Propfind => self.propfind(&call, body, services),
            Method::Proppatch => self.proppatch(&call, body, &lists, services),
            Method::Lock => self.lock(&call, body, &lists, services),
            Method::Unlock => self.unlock(&call, services),
            _ => Err(super::Refused::MethodNotAllowed.into()),
        };
        if let Err(failure) = result {
            match failure {
                Failure::Dav(refused) => self.dav_fail(refused, after, services),
                failure => self.fail(failure, after, services),
            }
        }
    }

    /// The current facts of `path` (`None`: nothing there).
    fn facts_of(
        &self,
        dir: &UserDir,
        path: &str,
        services: &Services,
    ) -> Result<Option<DavFacts>, Failure> {
        if !path.is_empty() && file_path(path).is_none() {
            return Ok(None);
        }
        match services.storage.dav_facts(dir, file_path(path)) {
            Ok(facts) => Ok(Some(facts)),
            Err(StorageError::NotFound | StorageError::NoFolder | StorageError::NotFolder) => {
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Whether the `If` field holds (RFC 4918 §10.4): no lists, or any
    /// list whose conditions all hold for its resource.
    fn if_holds(&self, call: &Call, lists: &[IfList], services: &Services) -> bool {
        if lists.is_empty() {
            return true;
        }
        let now = Instant::now();
        lists.iter().any(|list| {
            let path = match &list.resource {
                None => Some(call.path.clone()),
                Some(tag) => tagged_path(tag),
            };
            let Some(path) = path else {
                return false;
            };
            let etag = self
                .facts_of(&call.dir, &path, services)
                .ok()
                .flatten()
                .map(|facts| facts.version.to_string());
            let locks = services.locks.borrow_mut().covering(&call.user, &path, now);
            list.conditions.iter().all(|condition| match condition {
                Condition::Token { not, token } => {
                    locks.iter().any(|lock| &lock.token == token) != *not
                }
                Condition::ETag { not, etag: wanted } => {
                    (etag.as_deref() == Some(wanted.as_str())) != *not
                }
            })
        })
    }

    /// Whether the locks on `path` let this request change it: every lock
    /// that applies (and, when the request adds or removes `path`, every
    /// lock on its parent collection) must have its token submitted; of
    /// shared locks, one suffices.
    fn may_write(
        user: &str,
        path: &str,
        (membership, below): (bool, bool),
        tokens: &[&str],
        services: &Services,
    ) -> Result<(), DavRefused> {
        let now = Instant::now();
        let mut locks = services.locks.borrow_mut();
        let mut applying = locks.covering(user, path, now);
        if below {
            // A folder removed or moved takes its members along: their
            // locks are met too.
            applying.extend(
                locks
                    .at_or_below(user, path, now)
                    .into_iter()
                    .filter(|l| l.path != path),
            );
        }
        if membership && !path.is_empty() {
            let parent = parent(path);
            applying.extend(
                locks
                    .covering(user, parent, now)
                    .into_iter()
                    .filter(|l| l.path == parent && !l.infinite),
            );
        }
        if applying.is_empty() {
            return Ok(());
        }
        let given = |lock: &Lock| tokens.contains(&lock.token.as_str());
        let exclusive_ok = applying
            .iter()
            .filter(|l| l.scope == LockScope::Exclusive)
            .all(given);
        let shared: Vec<&Lock> = applying
            .iter()
            .filter(|l| l.scope == LockScope::Shared)
            .collect();
        let shared_ok = shared.is_empty() || shared.iter().any(|l| given(l));
        if exclusive_ok && shared_ok {
            Ok(())
        } else {
            Err(DavRefused::Locked)
        }
    }

    /// The checks a `PUT`, `DELETE`, `MKCOL`, `MOVE` or `COPY` of `path`
    /// makes before it runs: `If-Match`, `If-None-Match`, `If`, and the
    /// locks on what it changes (for `MOVE` and `COPY`, the `Destination`
    /// too).
    pub(super) fn dav_guard(
        &self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        path: FilePath<'_>,
        services: &Services,
    ) -> Result<(), Failure> {
        let current = self
            .facts_of(dir, path.as_str(), services)?
            .map(|facts| facts.version.to_string());
        if let Some(value) = request.dav.if_match
            && !webdav::etag_list_matches(value, current.as_deref())
        {
            return Err(DavRefused::PreconditionFailed.into());
        }
        if let Some(value) = request.dav.if_none_match
            && webdav::etag_list_matches(value, current.as_deref())
        {
            return Err(DavRefused::PreconditionFailed.into());
        }
        let lists = match request.dav.if_.map(webdav::parse_if) {
            None => Vec::new(),
            Some(Some(lists)) => lists,
            Some(None) => return Err(DavRefused::BadField("If").into()),
        };
        if !lists.is_empty() {
            let call = Call {
                method: request.method,
                path: path.as_str().to_owned(),
                depth: None,
                if_: None,
                timeout: None,
                lock_token: None,
                chunked_ok: true,
                user: user.to_owned(),
                dir: dir.clone(),
                keep_alive: false,
            };
            if !self.if_holds(&call, &lists, services) {
                return Err(DavRefused::PreconditionFailed.into());
            }
        }
        let tokens = submitted(&lists);
        let path = path.as_str();
        let check = |path: &str, membership: (bool, bool)| {
            Session::may_write(user, path, membership, &tokens, services)
        };
        match request.method {
            Method::Put => check(path, (current.is_none(), false))?,
            Method::Mkcol => check(path, (true, false))?,
            Method::Delete => check(path, (true, true))?,
            Method::Move | Method::Copy => {
                if request.method == Method::Move {
                    check(path, (true, true))?;
                }
                let destination = request
                    .destination
                    .and_then(http::destination_path)
                    .and_then(http::decode_path);
                if let Some(to) = destination {
                    check(&to, (true, true))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The ETag of the file `path` of `user` just stored (empty when it
    /// cannot be told), for the response to its `PUT`.
    pub(super) fn stored_etag(&mut self, user: &str, path: &str, services: &Services) -> String {
        let Ok(dir) = self.user_dir(user, services) else {
            return String::new();
        };
        match self.facts_of(&dir, path, services) {
            Ok(Some(facts)) if !facts.folder => facts.version.to_string(),
            _ => String::new(),
        }
    }

    /// `If-Match` and `If-None-Match` of a `GET` or `HEAD`: `Some(304)` or
    /// `Some(412)` when the download is not to be sent.
    pub(super) fn read_condition(request: &Request<'_>, etag: &str) -> Option<u16> {
        if let Some(value) = request.dav.if_match
            && !webdav::etag_list_matches(value, Some(etag))
        {
            return Some(412);
        }
        if let Some(value) = request.dav.if_none_match
            && webdav::etag_list_matches(value, Some(etag))
        {
            return Some(304);
        }
        None
    }

    /// A resource is gone (deleted, moved away or replaced): so are its
    /// locks, and those below it.
    pub(super) fn dav_forget(user: &str, path: &str, services: &Services) {
        services.locks.borrow_mut().forget(user, path);
    }

    fn multistatus(&mut self, body: &str, call: &Call, services: &Services) {
        let after = Session::after_of(call);
        let fields = [("Content-Type", XML)];
        self.respond(207, &fields, body.as_bytes(), false, after, services);
    }

    fn propfind(&mut self, call: &Call, body: &[u8], services: &Services) -> Result<(), Failure> {
        let depth = match call.depth.as_deref() {
            None => Depth::Infinity,
            Some(value) => webdav::parse_depth(value).ok_or(DavRefused::BadField("Depth"))?,
        };
        let find = webdav::parse_propfind(body).map_err(DavRefused::Xml)?;
        let Some(facts) = self.facts_of(&call.dir, &call.path, services)? else {
            return Err(StorageError::NotFound.into());
        };
        let collection = facts.folder;
        // A whole tree is refused (RFC 4918 §9.1); a file's depth is the
        // file whatever the depth says.
        if depth == Depth::Infinity && collection {
            return Err(DavRefused::InfiniteDepth.into());
        }
        let described = Described::of(&call.path, facts);
        let mut out = String::from(MULTISTATUS_OPEN);
        self.write_described(&mut out, call, &described, &call.path, &find, services);
        if !(collection && depth == Depth::One) {
            out.push_str(MULTISTATUS_CLOSE);
            self.multistatus(&out, call, services);
            return Ok(());
        }
        // The members follow a step at a time, as a listing's do.
        let listing = services
            .storage
            .listing_of(&call.dir, file_path(&call.path), false)?;
        let after = if call.chunked_ok {
            Session::after_of(call)
        } else {
            After::Close
        };
        let mut fields = vec![("Content-Type", XML)];
        if call.chunked_ok {
            fields.push(("Transfer-Encoding", "chunked"));
        }
        self.start_head(207, &fields, None, after, services);
        let mut streaming = Streaming::new(listing);
        let head = self.shell.out.buf();
        let start = head.len();
        head.extend_from_slice(out.as_bytes());
        streaming.wrote(out.len());
        if call.chunked_ok {
            let size = format!("{:x}\r\n", out.len());
            head.splice(start..start, size.bytes());
            head.extend_from_slice(b"\r\n");
        }
        self.state = State::Listing(Box::new(ListJob {
            streaming,
            json: false,
            chunked: call.chunked_ok,
            keep_alive: after == After::KeepAlive,
            user: call.user.clone(),
            dav: Some(Box::new(Multistatus {
                find,
                dir: call.dir.clone(),
                base: call.path.clone(),
            })),
        }));
        Ok(())
    }

    fn write_described(
        &self,
        out: &mut String,
        call: &Call,
        described: &Described,
        path: &str,
        find: &PropFind,
        services: &Services,
    ) {
        let dead = || {
            let folder = described.collection;
            services
                .storage
                .dead_props(&call.dir, file_path(path), folder)
        };
        let locks = || {
            let now = Instant::now();
            let locks = services.locks.borrow_mut().covering(&call.user, path, now);
            discovery(&locks, now)
        };
        write_resource(out, &described.href(path), described, find, &dead, &locks);
    }

    /// One step of a `Depth: 1` `PROPFIND` of the root: the next files'
    /// `response`s, framed as a listing's chunks, and the end of the body
    /// once the directory is read to its end.
    pub(super) fn dav_list_step(&mut self, services: &Services) {
        let State::Listing(job) = &mut self.state else {
            return;
        };
        let Some(ms) = job.dav.as_ref() else {
            return;
        };
        let out = self.shell.out.buf();
        let start = out.len();
        let user = job.user.clone();
        let mut xml = String::new();
        let result = job.streaming.step(out, |entry, _, out| {
            xml.clear();
            let described = Described::of_entry(entry);
            let path = member(&ms.base, &entry.name);
            let dead = || {
                let folder = entry.folder;
                services
                    .storage
                    .dead_props(&ms.dir, file_path(&path), folder)
            };
            let locks = || {
                let now = Instant::now();
                let locks = services.locks.borrow_mut().covering(&user, &path, now);
                discovery(&locks, now)
            };
            let href = described.href(&path);
            write_resource(&mut xml, &href, &described, &ms.find, &dead, &locks);
            out.extend_from_slice(xml.as_bytes());
        });
        self.end_list_step(start, MULTISTATUS_CLOSE.as_bytes(), result);
    }

    fn proppatch(
        &mut self,
        call: &Call,
        body: &[u8],
        lists: &[IfList],
        services: &Services,
    ) -> Result<(), Failure> {
        let tokens = submitted(lists);
        Session::may_write(&call.user, &call.path, (false, false), &tokens, services)?;
        let updates = webdav::parse_propertyupdate(body).map_err(DavRefused::Xml)?;
        let Some(facts) = self.facts_of(&call.dir, &call.path, services)? else {
            return Err(StorageError::NotFound.into());
        };
        let collection = facts.folder;
        let target = file_path(&call.path);
        let mut props = services.storage.dead_props(&call.dir, target, collection);
        let mut statuses: Vec<(PropName, u16)> = Vec::new();
        let mut modified: Option<SystemTime> = None;
        for update in &updates {
            let (prop, status) = match update {
                PropUpdate::Set {
                    prop,
                    element,
                    text,
                } => {
                    let times =
                        prop.is(DAV, "getlastmodified") || prop.is(WIN32, "Win32LastModifiedTime");
                    let status = if times {
                        match httpdate::parse_http_date(text) {
                            Ok(time) if !collection => {
                                modified = Some(time);
                                200
                            }
                            Ok(_) => 403,
                            Err(_) => 409,
                        }
                    } else if webdav::is_live(prop) {
                        403
                    } else {
                        props.retain(|p| !(p.ns == prop.ns && p.name == prop.name));
                        props.push(DeadProp {
                            ns: prop.ns.clone(),
                            name: prop.name.clone(),
                            xml: element.clone(),
                        });
                        200
                    };
                    (prop, status)
                }
                PropUpdate::Remove(prop) => {
                    let status = if webdav::is_live(prop) {
                        403
                    } else {
                        props.retain(|p| !(p.ns == prop.ns && p.name == prop.name));
                        200
                    };
                    (prop, status)
                }
            };
            statuses.retain(|(p, _)| p != prop);
            statuses.push((prop.clone(), status));
        }
        let failed = statuses.iter().any(|(_, s)| *s != 200);
        if !failed {
            match services
                .storage
                .set_dead_props(&call.dir, target, collection, &props)
            {
                Ok(()) => {}
                Err(PropsError::TooMany) => {
                    for (_, status) in &mut statuses {
                        *status = 507;
                    }
                }
                Err(PropsError::Storage(err)) => return Err(err.into()),
            }
        }
        if let (false, Some(time), Some(path)) = (failed, modified, target) {
            services.storage.set_modified(&call.dir, path, time)?;
        }
        if failed {
            // Nothing was applied: the others failed with them.
            for (_, status) in &mut statuses {
                if *status == 200 {
                    *status = 424;
                }
            }
        }
        let mut groups: Vec<(u16, String)> = Vec::new();
        for (prop, status) in &statuses {
            let at = match groups.iter().position(|(s, _)| s == status) {
                Some(at) => at,
                None => {
                    groups.push((*status, String::new()));
                    groups.len() - 1
                }
            };
            webdav::write_empty_prop(&mut groups[at].1, prop);
        }
        let groups: Vec<(u16, &str)> = groups.iter().map(|(s, p)| (*s, p.as_str())).collect();
        let mut out = String::from(MULTISTATUS_OPEN);
        let href = Described::of(&call.path, facts).href(&call.path);
        webdav::write_response(&mut out, &href, &groups);
        out.push_str(MULTISTATUS_CLOSE);
        self.multistatus(&out, call, services);
        Ok(())
    }

    fn lock(
        &mut self,
        call: &Call,
        body: &[u8],
        lists: &[IfList],
        services: &Services,
    ) -> Result<(), Failure> {
        let secs = match call.timeout.as_deref() {
            None => DEFAULT_LOCK_SECS,
            Some(value) => webdav::parse_timeout(value).unwrap_or(DEFAULT_LOCK_SECS),
        };
        let info = webdav::parse_lockinfo(body).map_err(DavRefused::Xml)?;
        let now = Instant::now();
        let Some(info) = info else {
            // A refresh: the `If` field names the lock.
            let mut locks = services.locks.borrow_mut();
            let refreshed = submitted(lists)
                .into_iter()
                .find_map(|token| locks.refresh(&call.user, &call.path, token, secs, now));
            drop(locks);
            let lock = refreshed.ok_or(DavRefused::NoLockToRefresh)?;
            let body = lock_body(&lock, now);
            let fields = [("Content-Type", XML)];
            let after = Session::after_of(call);
            self.respond(200, &fields, body.as_bytes(), false, after, services);
            return Ok(());
        };
        let infinite = match call.depth.as_deref() {
            None => true,
            Some(value) => match webdav::parse_depth(value) {
                Some(Depth::Zero) => false,
                Some(Depth::Infinity) => true,
                _ => return Err(DavRefused::BadField("Depth").into()),
            },
        };
        let exists = self.facts_of(&call.dir, &call.path, services)?.is_some();
        if !exists {
            // The new file joins its collection, which its locks guard;
            // conflicts with locks on the resource itself are the grant's.
            let tokens = submitted(lists);
            Session::may_write(&call.user, &call.path, (true, false), &tokens, services)?;
        }
        let token = new_token();
        let granted = services.locks.borrow_mut().grant(
            &call.user, &call.path, info.scope, infinite, info.owner, secs, token, now,
        );
        let lock = granted.map_err(|refused| match refused {
            LockRefused::Conflict => DavRefused::LockConflict,
            LockRefused::Full => DavRefused::LocksFull,
        })?;
        let mut status = 200;
        if !exists {
            // A lock on an unmapped name makes it an empty file (RFC 4918
            // §9.10.4), through the same path as any upload.
            let created = file_path(&call.path)
                .ok_or(Failure::Request(super::Refused::NameNotAllowed))
                .and_then(|name| self.create_empty(call, name, services));
            if let Err(failure) = created {
                services
                    .locks
                    .borrow_mut()
                    .release(&call.user, &call.path, &lock.token, now);
                return Err(failure);
            }
            status = 201;
        }
        let body = lock_body(&lock, now);
        let token_field = format!("<{}>", lock.token);
        let fields = [("Content-Type", XML), ("Lock-Token", token_field.as_str())];
        let after = Session::after_of(call);
        self.respond(status, &fields, body.as_bytes(), false, after, services);
        Ok(())
    }

    /// The empty file a `LOCK` of an unmapped name makes: an upload of
    /// nothing, with its audit line like any other.
    fn create_empty(
        &self,
        call: &Call,
        name: FilePath<'_>,
        services: &Services,
    ) -> Result<(), Failure> {
        let begun = Instant::now();
        let limits = services.put_limits();
        let started = services
            .storage
            .begin_put(&call.dir, name, Some(0), None, limits)?;
        services
            .storage
            .commit(started.upload, Digest::of(b""))
            .map_err(Failure::from)?;
        let line = Transfer {
            kind: TransferKind::Upload,
            name: name.as_str(),
            size: 0,
            moved: 0,
            started: begun,
        };
        line.record(super::who(self.shell.peer, &call.user), Ending::Ok, "");
        Ok(())
    }

    fn unlock(&mut self, call: &Call, services: &Services) -> Result<(), Failure> {
        let token = call.lock_token.as_deref().ok_or(DavRefused::NoLockToken)?;
        let token = webdav::parse_lock_token(token).ok_or(DavRefused::BadField("Lock-Token"))?;
        let token = std::str::from_utf8(token).map_err(|_| DavRefused::BadField("Lock-Token"))?;
        let released =
            services
                .locks
                .borrow_mut()
                .release(&call.user, &call.path, token, Instant::now());
        if !released {
            return Err(DavRefused::TokenMismatch.into());
        }
        let after = Session::after_of(call);
        self.respond(204, &[], b"", true, after, services);
        Ok(())
    }

    /// `304` or `412` for a conditional `GET` or `HEAD`, with the ETag.
    pub(super) fn not_sent(&mut self, status: u16, etag: &str, after: After, services: &Services) {
        if status == 304 {
            self.start_head(304, &[("ETag", etag)], None, after, services);
            return self.after_response(after);
        }
        let fields = [("ETag", etag), ("Content-Type", TEXT)];
        let body = format!("{}\n", http::reason(status));
        self.respond(status, &fields, body.as_bytes(), false, after, services);
    }
}

/// A `LOCK` response's body: the lock's `lockdiscovery`.
fn lock_body(lock: &Lock, now: Instant) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:prop xmlns:D=\"DAV:\"><D:lockdiscovery>",
    );
    let _ = write!(out, "{}", discovery(std::slice::from_ref(lock), now));
    out.push_str("</D:lockdiscovery></D:prop>\n");
    out
}
