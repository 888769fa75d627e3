//! The web interface's requests on the HTTP front: `/` (the login form,
//! then the user's files), `/web/...` (forms, a file's page, the assets),
//! and a browser login's cookie standing in for Basic credentials on
//! `/files/...`. The pages, the logins table and the assets are in
//! `web/`; logins go through the one login path ([`Session::authenticate`]),
//! so the form gets the same delays, lockouts and audit lines as every
//! login.
//!
//! A browser login changes nothing without its CSRF token (a form field,
//! or the `X-CSRF-Token` header of a script's request) and never when the
//! request says it came from another site.

use std::os::unix::fs::FileExt as _;
use std::time::Instant;

use super::{After, Authenticated, Session};
use crate::audit::TreeChange;
use crate::protocol::http::{Body, Credentials, MAX_HEAD, Method, Request};
use crate::protocol::name;
use crate::protocol::path::{self, FilePath};
use crate::protocol::web::{MAX_FORM, SESSION_COOKIE, form_value};
use crate::session::login::MAX_AUTH_FAILURES;
use crate::session::replies::{Failure, Refused};
use crate::session::transfer::{self, PREVIEW_LEN};
use crate::session::{Services, http::who};
use crate::storage::ListingStep as Step;
use crate::storage::{Entry, StorageError};
use crate::web::{self, FileFacts, PAGE_CSP, Sort, WebLogin};

const HTML: &str = "text/html; charset=utf-8";

/// The bytes of a form body read together with its head: a `POST` whose
/// `Content-Length` fits [`MAX_FORM`] and, with the head, [`MAX_HEAD`]
/// (the session waits for the head and body together, in the head's
/// buffer). Anything else is 0, and the request is refused unread.
pub(super) fn form_len(request: &Request<'_>) -> usize {
    match (request.method, request.body) {
        (Method::Post, Body::Length(n))
            if n <= MAX_FORM as u64 && request.head_len + n as usize <= MAX_HEAD =>
        {
            n as usize
        }
        _ => 0,
    }
}

/// What a `PUT` asks of resuming: `?resumable` keeps an interrupted body
/// as a partial, `?offset=N` continues the partial at byte `N` (and is
/// resumable too). An offset needs a `Content-Length` (the whole file is
/// `N` + that).
pub(super) fn resume_of(request: &Request<'_>) -> Result<(bool, Option<u64>), Failure> {
    use crate::protocol::http::{query_has, query_value};
    let offset = match query_value(request.query, b"offset") {
        None => None,
        Some(raw) => {
            let text = std::str::from_utf8(raw).unwrap_or_default();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Refused::Malformed.into());
            }
            Some(text.parse().map_err(|_| Refused::Malformed)?)
        }
    };
    if offset.is_some() && request.body == Body::Chunked {
        return Err(Refused::LengthRequired.into());
    }
    Ok((
        offset.is_some() || query_has(request.query, b"resumable"),
        offset,
    ))
}

/// The web routes, once the path named one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Home,
    Asset(&'static str, &'static str),
    Login,
    Logout,
    File,
    Delete,
    Mkdir,
    Move,
    /// `/files/` asked for by a browser navigating: the interface instead.
    ToHome,
    /// `/files/<path>/` asked for by a browser navigating: that folder's
    /// page.
    ToFolder,
}

impl Page {
    fn allows(self, method: Method) -> bool {
        match self {
            Page::Home | Page::Asset(..) | Page::File | Page::ToHome | Page::ToFolder => {
                matches!(method, Method::Get | Method::Head)
            }
            Page::Login | Page::Logout | Page::Delete | Page::Mkdir | Page::Move => {
                method == Method::Post
            }
        }
    }

    fn allow_field(self) -> &'static str {
        match self {
            Page::Login | Page::Logout | Page::Delete | Page::Mkdir | Page::Move => "POST",
            _ => "GET, HEAD",
        }
    }
}

/// A browser navigating (not a script asking for JSON, nor any query).
fn navigating(request: &Request<'_>) -> bool {
    request.method == Method::Get
        && request.web.accepts_html
        && !request.web.accepts_json
        && request.query.is_none()
}

fn page_of(request: &Request<'_>) -> Option<Page> {
    Some(match request.path {
        b"/" => Page::Home,
        b"/web/app.js" => Page::Asset("text/javascript; charset=utf-8", web::APP_JS),
        b"/web/app.css" => Page::Asset("text/css; charset=utf-8", web::APP_CSS),
        b"/web/login" => Page::Login,
        b"/web/logout" => Page::Logout,
        b"/web/file" => Page::File,
        b"/web/delete" => Page::Delete,
        b"/web/mkdir" => Page::Mkdir,
        b"/web/move" => Page::Move,
        // A browser's navigation gets the interface; scripts (JSON asked
        // for, or any query such as `?json` or `?format=text`) the listing.
        b"/files" | b"/files/" if navigating(request) => Page::ToHome,
        path if path.starts_with(b"/files/") && path.ends_with(b"/") && navigating(request) => {
            Page::ToFolder
        }
        _ => return None,
    })
}

/// Files up to this size without a recorded digest (put there some
/// other way) are hashed for their page at once: about a millisecond of
/// SHA-256, less than the page itself costs. Larger ones say they have
/// none rather than hold up the loop.
const HASH_ON_PAGE: u64 = 1024 * 1024;

/// The SHA-256 for a file's page: the recorded one, or for a small file
/// without a record one computed now (and recorded).
fn digest_of(
    services: &Services,
    dir: &crate::storage::UserDir,
    name: FilePath<'_>,
    file: &std::fs::File,
    size: u64,
) -> Option<crate::integrity::Digest> {
    use crate::storage::HashLookup;
    if let Some(digest) = services.storage.stored_digest(dir, name, file) {
        return Some(digest);
    }
    if size > HASH_ON_PAGE {
        return None;
    }
    let HashLookup::ToRead {
        file,
        size,
        identity,
    } = services.storage.hash_lookup(dir, name).ok()?
    else {
        return None;
    };
    let mut bytes = vec![0; usize::try_from(size).ok()?];
    file.read_exact_at(&mut bytes, 0).ok()?;
    let digest = crate::integrity::Digest::of(&bytes);
    services
        .storage
        .remember_digest(dir, name, &identity, digest);
    Some(digest)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

impl Session {
    /// Tells the session whether its connection is TLS, as the reactor
    /// does once a handshake completes ([`Shell::channel`]); a TLS
    /// connection's cookie is `Secure`.
    pub fn set_tls(&mut self, tls: bool) {
        self.shell.channel.secure = tls;
    }

    /// The cookie's attributes: only this site, never to scripts, never
    /// with a request another site starts, and over TLS only on TLS.
    fn cookie(&self, value: &str, clear: bool) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{}{}",
            if self.shell.channel.secure {
                "; Secure"
            } else {
                ""
            },
            if clear { "; Max-Age=0" } else { "" }
        )
    }

    /// Answers the request if it is the web interface's; false when it is
    /// not (the file routes then answer it).
    pub(super) fn web(&mut self, request: &Request<'_>, after: After, services: &Services) -> bool {
        let path = request.path;
        let Some(page) = page_of(request) else {
            if path.starts_with(b"/web/") {
                self.fail(Refused::NoRoute, after, services);
                return true;
            }
            return false;
        };
        let head_only = request.method == Method::Head;
        if request.method == Method::Unknown {
            self.fail(Refused::UnknownMethod, after, services);
            return true;
        }
        if !page.allows(request.method) {
            let fields = [("Allow", page.allow_field())];
            let refused = Failure::Request(Refused::MethodNotAllowed);
            self.fail_with(refused, &fields, head_only, after, services);
            return true;
        }
        if request.method == Method::Post && request.body.is_present() && form_len(request) == 0 {
            // Not read: the connection cannot go on after it.
            let refused = match request.body {
                Body::Chunked => Failure::Request(Refused::LengthRequired),
                _ => Failure::TooLarge {
                    max: MAX_FORM as u64,
                },
            };
            self.fail(refused, After::Close, services);
            return true;
        }
        let login = self.web_login(request, services);
        if let Some(login) = &login {
            self.shell.access_user(&login.user);
        }
        match page {
            Page::Asset(kind, text) => {
                let fields = [("Content-Type", kind), ("Cache-Control", "no-cache")];
                self.respond(200, &fields, text.as_bytes(), head_only, after, services);
            }
            Page::ToHome => self.see_other("/", None, after, services),
            Page::ToFolder => {
                let raw = &path[b"/files/".len()..path.len() - 1];
                match crate::protocol::http::decode_path(raw) {
                    Some(folder) => {
                        let location = web::folder_href(&folder);
                        self.see_other(&location, None, after, services);
                    }
                    None => self.fail(Refused::NameNotAllowed, after, services),
                }
            }
            Page::Home => match login {
                Some(login) => self.files_page(request, &login, after, services),
                None => {
                    let failed = crate::protocol::http::query_value(request.query, b"login")
                        == Some(b"failed");
                    let page = web::login_page(failed.then_some("Login incorrect."));
                    self.html(200, &page, &[], head_only, after, services);
                }
            },
            Page::Login => self.form_login(request, after, services),
            Page::Logout => {
                if let Some(login) = &login {
                    if !self.form_is_theirs(request, login) {
                        self.fail(Refused::CrossSite, after, services);
                        return true;
                    }
                    if let Some(token) = request.web.session {
                        services.web.borrow_mut().remove(token);
                    }
                    log::info!("{} {}: web logout", self.shell.peer, login.user);
                }
                let cookie = self.cookie("", true);
                self.see_other("/", Some(&cookie), after, services);
            }
            Page::File => match login {
                Some(login) => self.file_page(request, &login, after, services),
                None => self.see_other("/", None, after, services),
            },
            Page::Delete | Page::Mkdir | Page::Move => match login {
                Some(login) if self.form_is_theirs(request, &login) => match page {
                    Page::Delete => self.form_delete(&login, after, services),
                    Page::Mkdir => self.form_mkdir(&login, after, services),
                    _ => self.form_move(&login, after, services),
                },
                Some(_) => self.fail(Refused::CrossSite, after, services),
                None => self.see_other("/", None, after, services),
            },
        }
        true
    }

    /// The browser login the request's cookie names, if it is current and
    /// its user still exists with the same password.
    fn web_login(&self, request: &Request<'_>, services: &Services) -> Option<WebLogin> {
        let token = request.web.session?;
        let timeout = services.policy.web_session_timeout;
        let login = services
            .web
            .borrow_mut()
            .get(token, Instant::now(), timeout)?;
        let fingerprint = services.users.borrow().fingerprint(&login.user);
        if fingerprint != Some(login.fingerprint) {
            log::info!(
                "{} {}: web login ended: the user was removed or the password changed",
                self.shell.peer,
                login.user
            );
            services.web.borrow_mut().remove(token);
            return None;
        }
        Some(login)
    }

    /// A form of this login's own pages: same site, and its CSRF token.
    fn form_is_theirs(&self, request: &Request<'_>, login: &WebLogin) -> bool {
        let token = form_value(&self.form, "csrf").unwrap_or_default();
        !request.web.cross_site() && constant_time_eq(&token, login.csrf.as_bytes())
    }

    /// For `/files/...` without credentials: the browser login of the
    /// cookie stands in for them. A request that changes something must
    /// carry the login's CSRF token in `X-CSRF-Token` and come from this
    /// site, else it is refused (`403`).
    pub(super) fn cookie_login(
        &mut self,
        request: &Request<'_>,
        services: &Services,
    ) -> Result<(), Failure> {
        if request.credentials != Credentials::Missing {
            return Ok(());
        }
        let Some(login) = self.web_login(request, services) else {
            return Ok(());
        };
        let reads = matches!(request.method, Method::Get | Method::Head);
        let token = request.web.csrf.unwrap_or_default();
        if !reads && (request.web.cross_site() || !constant_time_eq(token, login.csrf.as_bytes())) {
            log::info!(
                "{} {}: {} refused: no CSRF token or another site",
                self.shell.peer,
                login.user,
                request.method.as_str()
            );
            return Err(Refused::CrossSite.into());
        }
        self.shell.access_user(&login.user);
        self.cookie_user = Some(login.user.into());
        Ok(())
    }

    /// The login form's post: the one login path, then a cookie.
    fn form_login(&mut self, request: &Request<'_>, after: After, services: &Services) {
        if request.web.cross_site() {
            return self.fail(Refused::CrossSite, after, services);
        }
        let peer = self.shell.peer;
        if (self.shell.channel).refused_by(&peer, services.policy.require_tls) {
            return self.fail(Failure::TlsRequired, after, services);
        }
        let credentials = Credentials::Basic {
            user: form_value(&self.form, "user").unwrap_or_default(),
            password: form_value(&self.form, "password").unwrap_or_default(),
        };
        match self.authenticate(&credentials, services) {
            // Handled again once the password check decides.
            Authenticated::Pending => {}
            Authenticated::Busy => {
                let fields = [("Retry-After", "1")];
                self.fail_with(Failure::LoginsBusy, &fields, false, After::Close, services);
            }
            Authenticated::No => {
                let after = if self.failures >= MAX_AUTH_FAILURES {
                    After::Close
                } else {
                    after
                };
                // Error responses are short plain text (`protocol.md`);
                // the form is shown again by the page it goes back to.
                self.see_other("/?login=failed", None, after, services);
            }
            Authenticated::User(user) => {
                let timeout = services.policy.web_session_timeout;
                let fingerprint = services.users.borrow().fingerprint(&user);
                let created = services.web.borrow_mut().create(
                    &user,
                    fingerprint.unwrap_or_default(),
                    Instant::now(),
                    timeout,
                );
                match created {
                    Ok((token, _)) => {
                        log::info!("{} {user}: web login", self.shell.peer);
                        let cookie = self.cookie(&token, false);
                        self.see_other("/", Some(&cookie), after, services);
                    }
                    Err(err) => self.fail(Failure::Internal(err), after, services),
                }
            }
        }
    }

    fn files_page(
        &mut self,
        request: &Request<'_>,
        login: &WebLogin,
        after: After,
        services: &Services,
    ) {
        let dir = match self.user_dir(&login.user, services) {
            Ok(dir) => dir,
            Err(err) => return self.fail(Failure::Internal(err), after, services),
        };
        let raw = request
            .query
            .and_then(|query| form_value(query, "dir"))
            .unwrap_or_default();
        let folder = if raw.is_empty() {
            None
        } else {
            match path::validate(&raw) {
                Some(folder) => Some(folder),
                None => return self.fail(Refused::NameNotAllowed, after, services),
            }
        };
        let mut listing = match services.storage.listing_of(&dir, folder, false) {
            Ok(listing) => listing,
            Err(err) => return self.fail(err, after, services),
        };
        let mut entries: Vec<Entry> = Vec::new();
        let mut truncated = false;
        loop {
            match listing.next_entry() {
                Ok(Step::Entry(entry)) => {
                    if entries.len() == web::MAX_PAGE_ENTRIES {
                        truncated = true;
                        break;
                    }
                    entries.push(entry);
                }
                Ok(Step::Skipped) => {}
                Ok(Step::End) => break,
                Err(err) => return self.fail(err, after, services),
            }
        }
        let sort = Sort::from_query(request.query);
        sort.apply(&mut entries);
        let shown = folder.map_or("", |folder| folder.as_str());
        let page = web::files_page(&login.user, &login.csrf, shown, &entries, sort, truncated);
        let head_only = request.method == Method::Head;
        self.html(200, &page, &[], head_only, after, services);
    }

    fn file_page(
        &mut self,
        request: &Request<'_>,
        login: &WebLogin,
        after: After,
        services: &Services,
    ) {
        let raw = request
            .query
            .and_then(|query| form_value(query, "name"))
            .unwrap_or_default();
        let Some(name) = path::validate(&raw) else {
            return self.fail(Refused::NameNotAllowed, after, services);
        };
        let dir = match self.user_dir(&login.user, services) {
            Ok(dir) => dir,
            Err(err) => return self.fail(Failure::Internal(err), after, services),
        };
        let (file, meta) = match services.storage.open_read(&dir, name) {
            Ok(opened) => opened,
            Err(err) => return self.fail(err, after, services),
        };
        let mut head = vec![0; PREVIEW_LEN as usize];
        let mut filled = 0;
        while filled < head.len() {
            match file.read_at(&mut head[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return self.fail(err, after, services),
            }
        }
        head.truncate(filled);
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let facts = FileFacts {
            name: name.as_str(),
            size: meta.len(),
            mtime,
            sha256: digest_of(services, &dir, name, &file, meta.len()),
            head: &head,
        };
        let page = web::file_page(&login.user, &login.csrf, &facts);
        let head_only = request.method == Method::Head;
        self.html(200, &page, &[], head_only, after, services);
    }

    /// A delete from a form: asked about first unless the form says it
    /// was (`confirm=yes`, which the script adds after its question).
    fn form_delete(&mut self, login: &WebLogin, after: After, services: &Services) {
        let raw = form_value(&self.form, "name").unwrap_or_default();
        let Some(name) = path::validate(&raw) else {
            return self.fail(Refused::NameNotAllowed, after, services);
        };
        let dir = match self.user_dir(&login.user, services) {
            Ok(dir) => dir,
            Err(err) => return self.fail(Failure::Internal(err), after, services),
        };
        let facts = match services.storage.stat(&dir, name) {
            Ok(facts) => facts,
            Err(err) => return self.fail(err, after, services),
        };
        if form_value(&self.form, "confirm").as_deref() != Some(b"yes") {
            let page =
                web::confirm_delete_page(&login.user, &login.csrf, name.as_str(), facts.folder);
            return self.html(200, &page, &[], false, after, services);
        }
        let started = Instant::now();
        let back = web::folder_href(web::parent(name.as_str()));
        let removed = if facts.folder {
            // The tree leaves the user's folders at once and is emptied
            // in bounded steps by the housekeeping.
            services.storage.remove_tree(&dir, name).map(|_| 0)
        } else {
            services.storage.delete(&dir, name)
        };
        match removed {
            Ok(size) => {
                if facts.folder {
                    let who = who(self.shell.peer, &login.user);
                    TreeChange::Rmtree.record(who, name.as_str(), None);
                } else {
                    transfer::deleted(who(self.shell.peer, &login.user), name, size, started);
                }
                self.see_other(&back, None, after, services);
            }
            Err(err) => {
                log::info!(
                    "{} {}: web delete {name:?}: {err}",
                    self.shell.peer,
                    login.user
                );
                self.fail(err, after, services);
            }
        }
    }

    /// A new folder in the folder the form names.
    fn form_mkdir(&mut self, login: &WebLogin, after: After, services: &Services) {
        let folder = form_value(&self.form, "dir").unwrap_or_default();
        let leaf = form_value(&self.form, "name").unwrap_or_default();
        let folder = String::from_utf8_lossy(&folder).into_owned();
        let Some(leaf) = name::validate(&leaf) else {
            return self.fail(Refused::NameNotAllowed, after, services);
        };
        let joined = web::join(&folder, leaf.as_str());
        let Some(target) = path::validate(joined.as_bytes()) else {
            return self.fail(Refused::NameNotAllowed, after, services);
        };
        let dir = match self.user_dir(&login.user, services) {
            Ok(dir) => dir,
            Err(err) => return self.fail(Failure::Internal(err), after, services),
        };
        match services.storage.mkdir(&dir, target) {
            Ok(()) => {
                let who = who(self.shell.peer, &login.user);
                TreeChange::Mkdir.record(who, target.as_str(), None);
                self.see_other(&web::folder_href(&folder), None, after, services);
            }
            Err(err) => self.storage_refusal_of(&login.user, "mkdir", target, err, after, services),
        }
    }

    /// A rename or move of a file or folder, never over something that
    /// exists.
    fn form_move(&mut self, login: &WebLogin, after: After, services: &Services) {
        let from = form_value(&self.form, "from").unwrap_or_default();
        let to = form_value(&self.form, "to").unwrap_or_default();
        let (Some(from), Some(to)) = (path::validate(&from), path::validate(&to)) else {
            return self.fail(Refused::NameNotAllowed, after, services);
        };
        let dir = match self.user_dir(&login.user, services) {
            Ok(dir) => dir,
            Err(err) => return self.fail(Failure::Internal(err), after, services),
        };
        match services.storage.rename(&dir, from, to, false) {
            Ok(_) => {
                let who = who(self.shell.peer, &login.user);
                TreeChange::Move.record(who, from.as_str(), Some(to.as_str()));
                let back = web::folder_href(web::parent(to.as_str()));
                self.see_other(&back, None, after, services);
            }
            Err(err) => self.storage_refusal_of(&login.user, "move", from, err, after, services),
        }
    }

    fn storage_refusal_of(
        &mut self,
        user: &str,
        what: &str,
        path: FilePath<'_>,
        err: StorageError,
        after: After,
        services: &Services,
    ) {
        log::info!("{} {user}: web {what} {path:?}: {err}", self.shell.peer);
        self.fail(err, after, services);
    }

    /// `GET /files/<path>?partial`: how many bytes of an interrupted
    /// upload of `path` are held (`0` when none), as text.
    pub(super) fn partial_held(
        &mut self,
        user: &str,
        dir: &crate::storage::UserDir,
        path: FilePath<'_>,
        after: After,
        services: &Services,
    ) {
        match services.storage.partial_len(dir, path) {
            Ok(held) => {
                let body = format!("{held}\n");
                let fields = [("Content-Type", "text/plain; charset=utf-8")];
                let head_only = self.head_request;
                self.respond(200, &fields, body.as_bytes(), head_only, after, services);
            }
            Err(err) => self.storage_refusal_of(user, "partial", path, err, after, services),
        }
    }

    /// `303 See Other` to `location`, with a cookie to set.
    fn see_other(
        &mut self,
        location: &str,
        cookie: Option<&str>,
        after: After,
        services: &Services,
    ) {
        let mut fields = vec![("Location", location), ("Cache-Control", "no-store")];
        if let Some(cookie) = cookie {
            fields.push(("Set-Cookie", cookie));
        }
        self.respond(303, &fields, b"", false, after, services);
    }

    /// An interface page, under its Content-Security-Policy.
    fn html(
        &mut self,
        status: u16,
        page: &str,
        fields: &[(&str, &str)],
        head_only: bool,
        after: After,
        services: &Services,
    ) {
        let mut all = vec![
            ("Content-Type", HTML),
            ("Content-Security-Policy", PAGE_CSP),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "same-origin"),
            ("Cache-Control", "no-store"),
        ];
        all.extend_from_slice(fields);
        self.respond(status, &all, page.as_bytes(), head_only, after, services);
    }
}

#[cfg(test)]
mod tests {
    //! The login form driven from bytes, no socket.

    use super::*;
    use crate::session::testing::{Harness, peer};

    fn login_response(tls: bool) -> String {
        let h = Harness::new(1000);
        let mut session = Session::new(peer());
        session.set_tls(tls);
        let body = "user=alice&password=pw";
        let input = format!(
            "POST /web/login HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        h.talk_text(&mut session, input.as_bytes(), 7)
    }

    #[test]
    fn the_cookie_is_secure_exactly_when_the_connection_is_tls() {
        let plain = login_response(false);
        assert!(plain.starts_with("HTTP/1.1 303 "), "{plain}");
        let cookie = plain
            .lines()
            .find(|line| line.starts_with("Set-Cookie: "))
            .unwrap();
        assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
        assert!(!cookie.contains("Secure"), "{cookie}");
        let tls = login_response(true);
        let cookie = tls
            .lines()
            .find(|line| line.starts_with("Set-Cookie: "))
            .unwrap();
        assert!(cookie.ends_with("; Secure"), "{cookie}");
    }
}
