//! One HTTP/1.1 connection as a sans-IO state machine: the same interface
//! as the line session, the same storage, users and counters.
//!
//! ```text
//!            head of a PUT, accepted            whole body in
//!   Head ─────────────────────────► Receiving ──────────────┐
//!    ▲ │ GET of a file or listing                             │ response,
//!    │ └──────────────────────────► Sending ─────────┐        │ keep-alive
//!    └──────────────────────────────────────────────┴────────┘
//!    │ error that closes, Connection: close, EOF, shutdown
//!    ▼
//!  Closing (sends what is queued, then the socket is closed)
//! ```
//!
//! Every response is decided in [`Session::handle`], in the order of checks
//! that `protocol.md` gives. Buffers are bounded as in the line protocol: a
//! request head is at most [`MAX_HEAD`] bytes, a download holds at most
//! [`TRANSFER_BUFFER`] bytes of file data, body bytes go straight to the
//! file, and no further pipelined request runs while more than
//! [`OUTPUT_BACKLOG`] bytes of responses wait to be sent.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::mem;
use std::net::SocketAddr;
use std::time::Instant;

use super::Services;
use super::line::{MAX_AUTH_FAILURES, PREVIEW_LEN, TRANSFER_BUFFER};
use crate::integrity::Hasher;
use crate::metrics::{Direction, Protocol};
use crate::protocol::chunked::ChunkedDecoder;
use crate::protocol::http::{
    self, Body, Credentials, Expect, MAX_HEAD, Method, Request, Route, write_head,
};
use crate::protocol::line::Status;
use crate::protocol::name::{self, FileName};
use crate::protocol::reply::describe_io;
use crate::storage::{Entry, StorageError, Upload, UserDir};

/// While more response bytes than this wait to be sent, no further
/// pipelined request is handled.
pub const OUTPUT_BACKLOG: usize = 64 * 1024;
/// Bytes of framing read past the current chunk of a chunked body, so that
/// what follows the body (a pipelined request) stays small.
const CHUNK_FRAMING_READ: usize = 64;
const TEXT: &str = "text/plain; charset=utf-8";

/// How a response body is produced.
#[derive(Debug)]
enum Source {
    File(File),
    Listing {
        entries: Vec<Entry>,
        next: usize,
        json: bool,
    },
}

/// A response body being sent.
#[derive(Debug)]
struct Send {
    source: Source,
    remaining: u64,
    total: u64,
    keep_alive: bool,
    what: String,
    started: Instant,
}

#[derive(Debug)]
enum Framing {
    Length { left: u64 },
    Chunked(ChunkedDecoder),
}

/// A `PUT` body being received.
#[derive(Debug)]
struct Put {
    user: String,
    name: String,
    existed: bool,
    framing: Framing,
    sink: Result<Upload, io::Error>,
    hasher: Hasher,
    received: u64,
    keep_alive: bool,
    started: Instant,
}

#[derive(Debug)]
enum State {
    /// Waiting for a request head.
    Head,
    Receiving(Box<Put>),
    Sending(Box<Send>),
    /// Sends what is queued, then the connection closes.
    Closing,
}

/// One HTTP connection's state and buffers.
#[derive(Debug)]
pub struct Session {
    state: State,
    peer: SocketAddr,
    /// Bytes of the next request head (or of a body, right behind its head).
    input: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Failed logins on this connection.
    failures: u8,
    /// The request being answered is a `HEAD`: no response body, whatever
    /// the status.
    head_request: bool,
    shutting_down: bool,
    peer_eof: bool,
}

/// What to do after a response: keep the connection or close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
}

impl After {
    fn from_keep_alive(keep_alive: bool) -> After {
        if keep_alive {
            After::KeepAlive
        } else {
            After::Close
        }
    }
}

impl Session {
    pub fn new(peer: SocketAddr) -> Session {
        Session {
            state: State::Head,
            peer,
            input: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            failures: 0,
            head_request: false,
            shutting_down: false,
            peer_eof: false,
        }
    }

    /// How many bytes the session takes now; 0 means do not read.
    pub fn read_limit(&self) -> usize {
        if self.peer_eof {
            return 0;
        }
        match &self.state {
            State::Closing => 0,
            State::Receiving(_) if !self.input.is_empty() => 0,
            State::Receiving(put) => match &put.framing {
                Framing::Length { left } => usize::try_from(*left).unwrap_or(usize::MAX),
                Framing::Chunked(decoder) => usize::try_from(decoder.data_left())
                    .unwrap_or(usize::MAX)
                    .saturating_add(CHUNK_FRAMING_READ),
            },
            State::Sending(send) if !send.keep_alive => 0,
            State::Head | State::Sending(_) => MAX_HEAD.saturating_sub(self.input.len()),
        }
    }

    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Closing) && self.output().is_empty()
    }

    /// HTTP sessions have no socket-free work.
    pub fn has_work(&self) -> bool {
        false
    }

    pub fn work(&mut self, _services: &Services) -> usize {
        0
    }

    pub fn receive(&mut self, data: &[u8], services: &Services) {
        let taken = self.take_body(data, services);
        self.input.extend_from_slice(&data[taken..]);
        self.advance(services);
    }

    pub fn receive_eof(&mut self, services: &Services) {
        self.peer_eof = true;
        self.advance(services);
    }

    pub fn output_written(&mut self, n: usize, services: &Services) {
        self.out_pos += n;
        debug_assert!(self.out_pos <= self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.advance(services);
    }

    /// Idle keep-alive connections close now; a response or upload in
    /// progress may finish, and its connection closes after it.
    pub fn begin_shutdown(&mut self, services: &Services) {
        self.shutting_down = true;
        self.advance(services);
    }

    /// The drain is over: an upload is discarded (`503`), a response is cut.
    pub fn end_drain(&mut self, services: &Services) {
        match mem::replace(&mut self.state, State::Closing) {
            State::Receiving(put) => {
                self.abort_upload(*put, "server shutting down", services);
                self.error(503, After::Close, services);
            }
            State::Sending(send) => {
                self.cut(&send, "server shutting down", services);
                self.drop_output();
            }
            State::Head | State::Closing => {}
        }
        self.state = State::Closing;
    }

    pub fn connection_lost(&mut self, reason: &str, services: &Services) {
        match mem::replace(&mut self.state, State::Closing) {
            State::Receiving(put) => self.abort_upload(*put, reason, services),
            State::Sending(send) => self.cut(&send, reason, services),
            State::Head | State::Closing => {}
        }
        self.drop_output();
    }

    fn drop_output(&mut self) {
        self.out = Vec::new();
        self.out_pos = 0;
    }

    fn advance(&mut self, services: &Services) {
        loop {
            match &self.state {
                State::Closing => break,
                State::Receiving(_) => {
                    if self.input.is_empty() {
                        if self.peer_eof {
                            self.connection_lost("client closed the connection", services);
                        }
                        break;
                    }
                    // Body bytes that arrived right behind the head.
                    let input = mem::take(&mut self.input);
                    let taken = self.take_body(&input, services);
                    self.input = input;
                    self.input.drain(..taken);
                    if matches!(self.state, State::Receiving(_)) {
                        break;
                    }
                }
                State::Sending(_) => {
                    if !self.output().is_empty() {
                        break;
                    }
                    self.refill(services);
                    if matches!(self.state, State::Sending(_)) {
                        break;
                    }
                }
                State::Head => {
                    if self.output().len() > OUTPUT_BACKLOG {
                        break;
                    }
                    if self.shutting_down {
                        // Idle keep-alive connection: closed without a word.
                        self.state = State::Closing;
                        break;
                    }
                    if !self.next_request(services) {
                        if self.peer_eof {
                            self.state = State::Closing;
                        }
                        break;
                    }
                }
            }
        }
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = Vec::new();
        }
        if self.output().is_empty() && self.out.capacity() > 0 {
            self.drop_output();
        }
    }

    /// Handles the next complete request head, if there is one.
    fn next_request(&mut self, services: &Services) -> bool {
        let input = mem::take(&mut self.input);
        let consumed = match http::parse_head(&input) {
            Ok(Status::Partial) => {
                self.input = input;
                return false;
            }
            Err(err) => {
                log::info!("{} bad request head: {err:?}", self.peer);
                self.head_request = false;
                self.error(err.status(), After::Close, services);
                // Nothing after a head that cannot be read can be trusted.
                return true;
            }
            Ok(Status::Complete(request)) => {
                let consumed = request.head_len;
                self.handle(&request, services);
                consumed
            }
        };
        self.input = input;
        self.input.drain(..consumed);
        true
    }

    /// Decides the response to one request, in the order of checks of
    /// `protocol.md`: path, method, authentication, name, the request.
    fn handle(&mut self, request: &Request<'_>, services: &Services) {
        self.head_request = request.method == Method::Head;
        // A body that will not be read leaves the stream unusable.
        let reads_body = request.method == Method::Put;
        let keep_alive = request.keep_alive && (reads_body || !request.body.is_present());
        let after = After::from_keep_alive(keep_alive && !self.shutting_down);
        // A refusal leaves any body unread, so the connection cannot go on.
        let refuse = if request.body.is_present() {
            After::Close
        } else {
            after
        };
        let route = http::route(request.path);
        let allowed = match route {
            Route::NotFound => return self.error(404, refuse, services),
            Route::Healthz | Route::Metrics | Route::Listing => "GET, HEAD",
            Route::File(_) => "GET, HEAD, PUT, DELETE",
        };
        let method_ok = match request.method {
            Method::Unknown => return self.error(501, refuse, services),
            Method::Get | Method::Head => true,
            Method::Put | Method::Delete => matches!(route, Route::File(_)),
            Method::Other => false,
        };
        if !method_ok {
            let body = format!("{}\n", http::reason(405));
            let fields = [("Allow", allowed), ("Content-Type", TEXT)];
            return self.respond(405, &fields, body.as_bytes(), false, refuse, services);
        }
        let head_only = request.method == Method::Head;
        match route {
            Route::Healthz => self.respond(
                200,
                &[("Content-Type", TEXT)],
                b"ok\n",
                head_only,
                after,
                services,
            ),
            Route::Metrics => {
                let text = services.metrics.render();
                let fields = [("Content-Type", "text/plain; version=0.0.4")];
                self.respond(200, &fields, text.as_bytes(), head_only, after, services)
            }
            Route::Listing | Route::File(_) => {
                let Some(user) = self.authenticate(&request.credentials, services) else {
                    let after = if self.failures >= MAX_AUTH_FAILURES {
                        After::Close
                    } else {
                        refuse
                    };
                    let fields = [
                        ("WWW-Authenticate", "Basic realm=\"ferry\""),
                        ("Content-Type", TEXT),
                    ];
                    let body = format!("{}\n", http::reason(401));
                    return self.respond(401, &fields, body.as_bytes(), head_only, after, services);
                };
                let dir = match services.storage.user_dir(&user) {
                    Ok(dir) => dir,
                    Err(err) => {
                        log::error!(
                            "{} cannot prepare the directory of {user}: {err}",
                            self.peer
                        );
                        return self.error(500, refuse, services);
                    }
                };
                match route {
                    Route::File(raw) => {
                        let Some(name) = http::decode_name(raw) else {
                            let fields = [("Content-Type", TEXT)];
                            return self.respond(
                                400,
                                &fields,
                                b"file name not allowed\n",
                                head_only,
                                refuse,
                                services,
                            );
                        };
                        self.file_request(request, &user, &dir, &name, after, services);
                    }
                    _ => self.listing(request, &user, &dir, after, services),
                }
            }
            Route::NotFound => unreachable!("answered above"),
        }
    }

    /// The user the credentials name, or `None` after counting a failure
    /// (wrong credentials) or not (none given).
    fn authenticate(&mut self, credentials: &Credentials, services: &Services) -> Option<String> {
        let (user, password): (&[u8], &[u8]) = match credentials {
            Credentials::Missing => return None,
            Credentials::Malformed => (b"", b""),
            Credentials::Basic { user, password } => (user, password),
        };
        if let Some(name) = services.users.verify(user, password) {
            return Some(name.to_owned());
        }
        self.failures = self.failures.saturating_add(1);
        services.metrics.failed_login(Protocol::Http);
        log::warn!(
            "{} HTTP login failed for user {:?} ({} of {MAX_AUTH_FAILURES})",
            self.peer,
            String::from_utf8_lossy(&user[..user.len().min(64)]),
            self.failures
        );
        None
    }

    fn listing(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        after: After,
        services: &Services,
    ) {
        let entries = match services.storage.list(dir) {
            Ok(entries) => entries,
            Err(err) => {
                log::error!("{} {user}: listing failed: {err}", self.peer);
                return self.storage_error(err, after, services);
            }
        };
        let json = http::query_value(request.query, b"format") != Some(b"text");
        let mut scratch = Vec::new();
        let mut total = 0;
        for (i, entry) in entries.iter().enumerate() {
            scratch.clear();
            write_listing_entry(entry, i, json, &mut scratch);
            total += scratch.len() as u64;
        }
        if json {
            total += (JSON_OPEN.len() + JSON_CLOSE.len()) as u64;
        }
        let content_type = if json { "application/json" } else { TEXT };
        self.start_head(
            200,
            &[("Content-Type", content_type)],
            Some(total),
            after,
            services,
        );
        if request.method == Method::Head {
            return self.after_response(after);
        }
        let mut remaining = total;
        if json {
            self.out.extend_from_slice(JSON_OPEN.as_bytes());
            remaining -= JSON_OPEN.len() as u64;
        }
        self.state = State::Sending(Box::new(Send {
            source: Source::Listing {
                entries,
                next: 0,
                json,
            },
            remaining,
            total,
            keep_alive: after == After::KeepAlive,
            what: format!("{user} listing"),
            started: Instant::now(),
        }));
        self.refill(services);
    }

    fn file_request(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        name: &str,
        after: After,
        services: &Services,
    ) {
        let Some(file_name) = name::validate(name.as_bytes()) else {
            return self.error(400, After::Close, services);
        };
        match request.method {
            Method::Get | Method::Head => {
                self.download(request, user, dir, file_name, after, services)
            }
            Method::Put => self.start_upload(request, user, dir, file_name, after, services),
            Method::Delete => match services.storage.delete(dir, file_name) {
                Ok(size) => {
                    log::info!("{} {user}: DELETE {name:?} ({size} bytes)", self.peer);
                    self.respond(204, &[], b"", true, after, services);
                }
                Err(err) => {
                    log::info!("{} {user}: DELETE {name:?}: {err}", self.peer);
                    self.storage_error(err, after, services);
                }
            },
            Method::Other | Method::Unknown => unreachable!("refused before"),
        }
    }

    fn download(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        name: FileName<'_>,
        after: After,
        services: &Services,
    ) {
        let (mut file, size) = match services.storage.open_read(dir, name) {
            Ok(opened) => opened,
            Err(err) => {
                log::info!("{} {user}: GET {name:?}: {err}", self.peer);
                return self.storage_error(err, after, services);
            }
        };
        let modified = file
            .metadata()
            .and_then(|meta| meta.modified())
            .map(httpdate::fmt_http_date)
            .unwrap_or_default();
        let preview = http::query_has(request.query, b"preview");
        let (status, first, len, range_field) = match request.range.filter(|_| !preview) {
            Some(range) => match range.resolve(size) {
                Some((first, len)) => {
                    let last = first + len - 1;
                    (
                        206,
                        first,
                        len,
                        Some(format!("bytes {first}-{last}/{size}")),
                    )
                }
                None => {
                    let field = format!("bytes */{size}");
                    let fields = [("Content-Range", field.as_str()), ("Content-Type", TEXT)];
                    let body = format!("{}\n", http::reason(416));
                    return self.respond(
                        416,
                        &fields,
                        body.as_bytes(),
                        request.method == Method::Head,
                        after,
                        services,
                    );
                }
            },
            None if preview => (200, 0, size.min(PREVIEW_LEN), None),
            None => (200, 0, size, None),
        };
        if first > 0
            && let Err(err) = file.seek(SeekFrom::Start(first))
        {
            return self.storage_error(StorageError::Io(err), after, services);
        }
        let mut fields = vec![
            ("Content-Type", "application/octet-stream"),
            ("Last-Modified", modified.as_str()),
            ("Accept-Ranges", "bytes"),
        ];
        if let Some(range) = &range_field {
            fields.push(("Content-Range", range.as_str()));
        }
        self.start_head(status, &fields, Some(len), after, services);
        if request.method == Method::Head {
            return self.after_response(after);
        }
        self.state = State::Sending(Box::new(Send {
            source: Source::File(file),
            remaining: len,
            total: len,
            keep_alive: after == After::KeepAlive,
            what: format!("{user}: GET {name:?}"),
            started: Instant::now(),
        }));
        self.refill(services);
    }

    fn start_upload(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        name: FileName<'_>,
        after: After,
        services: &Services,
    ) {
        // Any refusal before the body is read closes the connection: the
        // body (or what the client sends of it) cannot be told from the
        // next request.
        let framing = match request.body {
            Body::None => return self.error(411, After::Close, services),
            Body::Length(n) if n > services.max_file_size => {
                return self.error(413, After::Close, services);
            }
            Body::Length(n) => Framing::Length { left: n },
            Body::Chunked => Framing::Chunked(ChunkedDecoder::new()),
        };
        if request.expect == Expect::Unsupported {
            return self.error(417, After::Close, services);
        }
        let existed = match services.storage.open_read(dir, name) {
            Ok(_) => true,
            Err(StorageError::NotFound) => false,
            Err(err) => return self.storage_error(err, After::Close, services),
        };
        let upload = match services.storage.begin_upload(dir, name) {
            Ok(upload) => upload,
            Err(err) => {
                log::info!("{} {user}: PUT {name:?}: {err}", self.peer);
                return self.storage_error(err, After::Close, services);
            }
        };
        if request.expect == Expect::Continue {
            services.metrics.reply(Protocol::Http, 100);
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let put = Put {
            user: user.to_owned(),
            name: name.as_str().to_owned(),
            existed,
            framing,
            sink: Ok(upload),
            hasher: Hasher::new(),
            received: 0,
            keep_alive: after == After::KeepAlive,
            started: Instant::now(),
        };
        let empty = matches!(put.framing, Framing::Length { left: 0 });
        self.state = State::Receiving(Box::new(put));
        if empty {
            self.finish_upload(services);
        }
    }

    /// Feeds body bytes to the running upload; returns how many of `data`
    /// belonged to the body.
    fn take_body(&mut self, data: &[u8], services: &Services) -> usize {
        let State::Receiving(put) = &mut self.state else {
            return 0;
        };
        let max = services.max_file_size;
        let Put {
            framing,
            sink,
            hasher,
            received,
            ..
        } = &mut **put;
        let mut write = |bytes: &[u8]| {
            *received += bytes.len() as u64;
            if *received > max {
                return;
            }
            hasher.update(bytes);
            if let Ok(upload) = sink
                && let Err(err) = upload.write(bytes)
            {
                // Dropping the upload frees its space at once; the rest of
                // the body is still read so the stream stays in step.
                *sink = Err(err);
            }
        };
        let (taken, done) = match framing {
            Framing::Length { left } => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                write(&data[..n]);
                *left -= n as u64;
                (n, *left == 0)
            }
            Framing::Chunked(decoder) => match decoder.decode(data, &mut write) {
                Ok(n) => (n, decoder.is_done()),
                Err(err) => {
                    let State::Receiving(put) = mem::replace(&mut self.state, State::Closing)
                    else {
                        unreachable!();
                    };
                    self.abort_upload(*put, &format!("bad chunked body: {err:?}"), services);
                    self.error(400, After::Close, services);
                    return data.len();
                }
            },
        };
        if put.received > max {
            let State::Receiving(put) = mem::replace(&mut self.state, State::Closing) else {
                unreachable!();
            };
            self.abort_upload(*put, "body over the maximum file size", services);
            self.error(413, After::Close, services);
            return data.len();
        }
        if done {
            self.finish_upload(services);
        }
        taken
    }

    fn finish_upload(&mut self, services: &Services) {
        let State::Receiving(put) = mem::replace(&mut self.state, State::Closing) else {
            return;
        };
        let Put {
            user,
            name,
            existed,
            sink,
            hasher,
            received,
            keep_alive,
            started,
            ..
        } = *put;
        let after = After::from_keep_alive(keep_alive && !self.shutting_down);
        let sha256 = hasher.finish();
        match sink.and_then(|upload| services.storage.commit(upload, sha256)) {
            Ok(()) => {
                services.metrics.transfer_completed(Direction::Upload);
                log::info!(
                    "{} {user}: PUT {name:?} {received} bytes in {:.3}s",
                    self.peer,
                    started.elapsed().as_secs_f64()
                );
                let status = if existed { 204 } else { 201 };
                let digest = sha256.to_string();
                let fields = [("X-Ferry-SHA256", digest.as_str())];
                self.respond(status, &fields, b"", true, after, services);
            }
            Err(err) => {
                services.metrics.transfer_aborted(Direction::Upload);
                log::error!("{} {user}: PUT {name:?} failed: {err}", self.peer);
                self.storage_error(StorageError::Io(err), after, services);
            }
        }
    }

    fn abort_upload(&mut self, put: Put, reason: &str, services: &Services) {
        services.metrics.transfer_aborted(Direction::Upload);
        log::warn!(
            "{} {}: PUT {:?} aborted after {} bytes: {reason}",
            self.peer,
            put.user,
            put.name,
            put.received
        );
        // Dropping the upload removes its temporary file.
    }

    fn cut(&self, send: &Send, reason: &str, services: &Services) {
        if matches!(send.source, Source::File(_)) {
            services.metrics.transfer_aborted(Direction::Download);
        }
        log::warn!(
            "{} {} cut after {} of {} bytes: {reason}",
            self.peer,
            send.what,
            send.total - send.remaining,
            send.total
        );
    }

    /// Moves more of a response body into the output, or ends it.
    fn refill(&mut self, services: &Services) {
        let State::Sending(send) = &mut self.state else {
            return;
        };
        if send.remaining == 0 {
            let State::Sending(send) = mem::replace(&mut self.state, State::Closing) else {
                unreachable!();
            };
            if matches!(send.source, Source::File(_)) {
                services.metrics.transfer_completed(Direction::Download);
            }
            log::info!(
                "{} {} {} bytes in {:.3}s",
                self.peer,
                send.what,
                send.total,
                send.started.elapsed().as_secs_f64()
            );
            let keep = send.keep_alive && !self.shutting_down;
            return self.after_response(After::from_keep_alive(keep));
        }
        let room = TRANSFER_BUFFER.saturating_sub(self.out.len() - self.out_pos);
        let want = send.remaining.min(room as u64) as usize;
        let before = self.out.len();
        let result = match &mut send.source {
            Source::File(file) => {
                self.out.reserve_exact(want);
                file.take(want as u64)
                    .read_to_end(&mut self.out)
                    .and_then(|n| {
                        if n < want {
                            Err(io::Error::from(io::ErrorKind::UnexpectedEof))
                        } else {
                            Ok(())
                        }
                    })
            }
            Source::Listing {
                entries,
                next,
                json,
            } => {
                while *next < entries.len() && self.out.len() - before < want {
                    write_listing_entry(&entries[*next], *next, *json, &mut self.out);
                    *next += 1;
                }
                if *next == entries.len() && *json {
                    self.out.extend_from_slice(JSON_CLOSE.as_bytes());
                    // Written once: no entry is left to trigger it again.
                    *next += 1;
                }
                Ok(())
            }
        };
        let added = (self.out.len() - before) as u64;
        match result {
            Ok(()) if added <= send.remaining => send.remaining -= added,
            result => {
                // The announced length can no longer be met: closing the
                // connection is the only honest signal left.
                if let Err(err) = result {
                    log::error!("{} read failed during download: {err}", self.peer);
                }
                self.out.truncate(before);
                if let State::Sending(send) = mem::replace(&mut self.state, State::Closing) {
                    self.cut(&send, "read failed", services);
                }
            }
        }
    }

    /// Queues a response head; the body (if any) follows separately.
    fn start_head(
        &mut self,
        status: u16,
        fields: &[(&str, &str)],
        content_length: Option<u64>,
        after: After,
        services: &Services,
    ) {
        services.metrics.reply(Protocol::Http, status);
        write_head(
            &mut self.out,
            status,
            fields,
            content_length,
            after == After::Close,
        );
    }

    /// Queues a whole response with an in-memory body (not sent for `HEAD`
    /// and for `204`).
    fn respond(
        &mut self,
        status: u16,
        fields: &[(&str, &str)],
        body: &[u8],
        head_only: bool,
        after: After,
        services: &Services,
    ) {
        let length = (status != 204).then_some(body.len() as u64);
        self.start_head(status, fields, length, after, services);
        if !head_only && !self.head_request && status != 204 {
            self.out.extend_from_slice(body);
        }
        self.after_response(after);
    }

    fn after_response(&mut self, after: After) {
        self.state = match after {
            After::KeepAlive => State::Head,
            After::Close => State::Closing,
        };
    }

    /// A short plain-text error response: the reason and a newline.
    fn error(&mut self, status: u16, after: After, services: &Services) {
        let body = format!("{}\n", http::reason(status));
        self.respond(
            status,
            &[("Content-Type", TEXT)],
            body.as_bytes(),
            false,
            after,
            services,
        );
    }

    /// The one place storage errors become HTTP statuses.
    fn storage_error(&mut self, err: StorageError, after: After, services: &Services) {
        let (status, text) = match &err {
            StorageError::NotFound => (404, "no such file".to_owned()),
            StorageError::NotRegular => (403, "not a regular file".to_owned()),
            StorageError::OffsetPastHeld { .. } => (416, err.to_string()),
            StorageError::Io(io) => match io.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => (507, describe_io(io).to_owned()),
                _ => (500, describe_io(io).to_owned()),
            },
        };
        let body = format!("{text}\n");
        self.respond(
            status,
            &[("Content-Type", TEXT)],
            body.as_bytes(),
            false,
            after,
            services,
        );
    }
}

const JSON_OPEN: &str = "[";
const JSON_CLOSE: &str = "]\n";

/// One entry of a listing: the line protocol's `LIST` line, or a JSON
/// object (with a leading comma after the first).
fn write_listing_entry(entry: &Entry, index: usize, json: bool, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = if json {
        write!(
            out,
            "{}{{\"name\":\"{}\",\"size\":{},\"mtime\":{}}}",
            if index == 0 { "" } else { "," },
            escape8259::escape(&entry.name),
            entry.size,
            entry.mtime
        )
    } else {
        writeln!(out, "{} {} {}", entry.size, entry.mtime, entry.name)
    };
}

#[cfg(test)]
mod tests {
    //! Whole HTTP conversations driven from byte slices, no socket.

    use super::*;
    use crate::auth::Users;
    use crate::metrics::Metrics;
    use crate::storage::{Options, Storage};

    struct Harness {
        _root: tempfile::TempDir,
        services: Services,
    }

    impl Harness {
        fn new() -> Harness {
            let root = tempfile::tempdir().unwrap();
            let options = Options {
                fsync: false,
                ..Options::default()
            };
            Harness {
                services: Services {
                    users: Users::parse(b"alice:pw\n").unwrap(),
                    storage: Storage::open(root.path(), options).unwrap(),
                    max_file_size: 1000,
                    metrics: Metrics::new(),
                },
                _root: root,
            }
        }

        /// Feeds `input` in pieces of `step` bytes (never more than the
        /// session takes), collecting all output.
        fn talk(&self, session: &mut Session, mut input: &[u8], step: usize) -> String {
            let mut seen = Vec::new();
            loop {
                let pending = session.output().len();
                if pending > 0 {
                    seen.extend_from_slice(session.output());
                    session.output_written(pending, &self.services);
                    continue;
                }
                let n = session.read_limit().min(input.len()).min(step);
                if n == 0 {
                    return String::from_utf8_lossy(&seen).into_owned();
                }
                session.receive(&input[..n], &self.services);
                input = &input[n..];
            }
        }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    /// `alice:pw` in Basic form.
    const AUTH: &str = "Authorization: Basic YWxpY2U6cHc=\r\n";

    fn statuses(text: &str) -> Vec<&str> {
        text.match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
            .collect()
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let h = Harness::new();
        let mut session = Session::new(peer());
        let input = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /files/nope HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n\
             GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let out = h.talk(&mut session, input.as_bytes(), 7);
        assert_eq!(statuses(&out), ["200", "404", "404"], "{out}");
        assert!(!session.is_done(), "keep-alive");
        session.receive_eof(&h.services);
        assert!(session.is_done());
    }

    #[test]
    fn chunked_upload_split_anywhere_then_replace() {
        let h = Harness::new();
        for (step, expected) in [(1, "201"), (5, "204"), (1000, "204")] {
            let mut session = Session::new(peer());
            let input = format!(
                "PUT /files/a%20b HTTP/1.1\r\nHost: x\r\n{AUTH}Transfer-Encoding: chunked\r\n\r\n\
                 3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nGET /files/a%20b HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n"
            );
            let out = h.talk(&mut session, input.as_bytes(), step);
            assert_eq!(statuses(&out), [expected, "200"], "step {step}: {out}");
            let digest = crate::integrity::Digest::of(b"abcde");
            assert!(
                out.contains(&format!("X-Ferry-SHA256: {digest}\r\n")),
                "{out}"
            );
            assert!(out.ends_with("\r\n\r\nabcde"), "{out}");
        }
    }

    #[test]
    fn refusals_before_the_body_close_the_connection() {
        let h = Harness::new();
        let mut session = Session::new(peer());
        let input = format!(
            "PUT /files/big HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 1001\r\nExpect: 100-continue\r\n\r\n"
        );
        let out = h.talk(&mut session, input.as_bytes(), 4096);
        assert_eq!(statuses(&out), ["413"], "no 100 Continue: {out}");
        assert!(out.contains("Connection: close\r\n"));
        assert!(session.is_done());

        let mut session = Session::new(peer());
        let input = "PUT /files/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let out = h.talk(&mut session, input.as_bytes(), 4096);
        assert_eq!(statuses(&out), ["401"]);
        assert!(
            session.is_done(),
            "the unread body cannot be told from a request"
        );
    }

    #[test]
    fn the_third_failed_login_closes() {
        let h = Harness::new();
        let mut session = Session::new(peer());
        let bad = "GET /files/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6bm8=\r\n\r\n";
        let none = "GET /files/ HTTP/1.1\r\nHost: x\r\n\r\n";
        let input = [none, bad, bad, none, bad, none].concat();
        let out = h.talk(&mut session, input.as_bytes(), 4096);
        assert_eq!(
            statuses(&out),
            ["401"; 5],
            "the last request is not answered: {out}"
        );
        assert!(session.is_done());
    }

    #[test]
    fn shutdown_closes_idle_and_lets_an_upload_finish() {
        let h = Harness::new();
        let mut idle = Session::new(peer());
        idle.begin_shutdown(&h.services);
        assert!(idle.is_done());

        let mut session = Session::new(peer());
        let head = format!("PUT /files/f HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 4\r\n\r\nab");
        assert_eq!(h.talk(&mut session, head.as_bytes(), 4096), "");
        session.begin_shutdown(&h.services);
        let out = h.talk(&mut session, b"cdGET /healthz HTTP/1.1\r\n\r\n", 4096);
        assert_eq!(statuses(&out), ["201"], "{out}");
        assert!(out.contains("Connection: close\r\n"));
        assert!(session.is_done());
    }

    #[test]
    fn a_client_that_never_reads_cannot_grow_the_output() {
        let h = Harness::new();
        let mut session = Session::new(peer());
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..100_000 {
            let n = session.read_limit().min(request.len());
            if n < request.len() {
                break;
            }
            session.receive(request, &h.services);
        }
        assert!(session.output().len() <= OUTPUT_BACKLOG + 1024);
        assert!(session.input.len() <= MAX_HEAD);
    }
}
