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
//! [`TRANSFER_BUFFER`](super::TRANSFER_BUFFER) bytes of file data, body bytes go straight to the
//! file, and no further pipelined request runs while more than
//! [`OUTPUT_BACKLOG`] bytes of responses wait to be sent.

mod dav;
mod web;

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::time::Instant;

use super::login::MAX_AUTH_FAILURES;
use super::replies::{Failure, Refused};
use super::transfer::{Download, Finished, Intake, Interrupted, PREVIEW_LEN};
use super::{Checked, Front, PasswordCheck, Phase, Services, Shell};
use crate::audit::{Event, TransferKind};
use crate::integrity::Hasher;
use crate::metrics::Protocol;
use crate::protocol::chunked::{ChunkedDecoder, ChunkedError};
use crate::protocol::http::{self, Body, Expect, MAX_HEAD, Method, Request, Route, write_head};
use crate::protocol::line::Status;
use crate::protocol::path::{self as name, FilePath};
use crate::storage::{OverQuota, StorageError, UserDir};

mod auth;
mod folders;
mod listing;
use auth::{AuthCache, Authenticated, HttpVerifying, bearer_matches, who};
use folders::HttpCopy;
use listing::ListJob;

/// While more response bytes than this wait to be sent, no further
/// pipelined request is handled.
pub const OUTPUT_BACKLOG: usize = 64 * 1024;
/// Bytes of framing read past the current chunk of a chunked body, so that
/// what follows the body (a pipelined request) stays small.
const CHUNK_FRAMING_READ: usize = 64;
const TEXT: &str = "text/plain; charset=utf-8";

/// A file being sent as a response body.
#[derive(Debug)]
struct Send {
    download: Download,
    keep_alive: bool,
    user: String,
}

/// How a request body ends: after a declared length, or at the chunked
/// coding's last chunk.
#[derive(Debug)]
enum Framing {
    Length { left: u64 },
    Chunked(ChunkedDecoder),
}

impl Framing {
    /// Hands the body bytes at the front of `data` to `sink` (a chunked
    /// body without its framing); returns how many bytes of `data` were
    /// the body's and whether the body is complete.
    fn feed(
        &mut self,
        data: &[u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), ChunkedError> {
        match self {
            Framing::Length { left } => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                sink(&data[..n]);
                *left -= n as u64;
                Ok((n, *left == 0))
            }
            Framing::Chunked(decoder) => {
                let n = decoder.decode(data, &mut sink)?;
                Ok((n, decoder.is_done()))
            }
        }
    }
}

/// A `PUT` body being received.
#[derive(Debug)]
struct Put {
    intake: Intake,
    user: String,
    existed: bool,
    framing: Framing,
    /// Most bytes the body may have: the maximum file size, or less when
    /// the user's quota leaves less room (`over_quota` then says so).
    limit: u64,
    over_quota: Option<OverQuota>,
    keep_alive: bool,
    /// `?resumable`: an interruption keeps what arrived as a partial.
    resumable: bool,
}

#[derive(Debug)]
enum State {
    /// Waiting for a request head.
    Head,
    Receiving(Box<Put>),
    /// The XML body of a WebDAV request is arriving.
    DavBody(Box<dav::BodyJob>),
    Sending(Box<Send>),
    Listing(Box<ListJob>),
    /// A `COPY`, a step at a time.
    Copying(Box<HttpCopy>),
    /// The request at the front of `input` waits for a password check.
    Verifying(Box<HttpVerifying>),
    /// Sends what is queued, then the connection closes.
    Closing,
}

/// Which listener an HTTP connection came in on, which decides what it
/// serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP front (`--http-listen`): files, listings, `/healthz`, and
    /// `/metrics` for the bearer of the metrics token.
    Main,
    /// The metrics listener (`--metrics-listen`): `/metrics` and
    /// `/healthz` without authentication, nothing else.
    Metrics,
}

/// One HTTP connection's state and buffers.
#[derive(Debug)]
pub struct Session {
    state: State,
    shell: Shell,
    role: Role,
    /// Failed logins on this connection.
    failures: u8,
    auth_cache: Option<Box<AuthCache>>,
    /// The request being answered is a `HEAD`: no response body, whatever
    /// the status.
    head_request: bool,
    /// When the first byte of the request head being read arrived.
    head_started: Instant,
    /// The user of the browser login whose cookie came with the request
    /// being handled, standing in for credentials (`http/web.rs`).
    cookie_user: Option<Box<str>>,
    /// The form body of the `POST` being handled (`http/web.rs`).
    form: Box<[u8]>,
}

/// What a request names, once its path named something.
enum Resource<'a> {
    Healthz,
    Metrics,
    Listing,
    /// A file, its name still percent-encoded.
    File(&'a [u8]),
    /// A folder (a path with a final `/`), still percent-encoded.
    Folder(&'a [u8]),
}

/// What a request does to a file, once its method is one the file takes.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// `GET`, `HEAD`.
    Read,
    /// `PUT`.
    Write,
    /// `DELETE`.
    Delete,
    /// WebDAV's (`session/http/dav.rs`).
    Dav,
    /// `GET`, `HEAD` of a folder.
    List,
    /// `MKCOL`.
    Mkcol,
    /// `MOVE`.
    Move,
    /// `COPY`.
    Copy,
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

impl Front for Session {
    fn shell(&self) -> &Shell {
        &self.shell
    }

    fn shell_mut(&mut self) -> &mut Shell {
        &mut self.shell
    }

    fn phase(&self) -> Phase {
        match self.state {
            State::Closing => Phase::Closing,
            State::Receiving(_) | State::DavBody(_) => Phase::Receiving,
            State::Sending(_) => Phase::Sending,
            State::Listing(_) | State::Copying(_) | State::Verifying(_) => Phase::Working,
            State::Head => Phase::Ready,
        }
    }

    /// An idle keep-alive connection closes without a word.
    fn close(&mut self) {
        self.state = State::Closing;
    }

    fn backlog(&self) -> usize {
        OUTPUT_BACKLOG
    }

    /// A request head's time counts from its first byte.
    fn arriving(&mut self) {
        if self.shell.input.is_empty() {
            self.head_started = Instant::now();
        }
    }

    /// A password check is not a transfer: a shutdown does not wait for
    /// it.
    fn while_working(&mut self, _services: &Services) {
        if matches!(self.state, State::Verifying(_)) && self.shell.shutting_down {
            self.state = State::Closing;
        }
    }

    /// Handles the next complete request head, if there is one.
    fn next_command(&mut self, services: &Services) -> bool {
        let input = mem::take(&mut self.shell.input);
        let consumed = match http::parse_head(&input) {
            Ok(Status::Partial) => {
                self.shell.input = input;
                return false;
            }
            Err(err) => {
                log::info!("{} bad request head: {err:?}", self.shell.peer);
                self.head_request = false;
                self.shell.access_begin(services, None, "-", b"");
                self.fail(err, After::Close, services);
                // Nothing after a head that cannot be read can be trusted.
                return true;
            }
            Ok(Status::Complete(request)) => {
                // A web form's body is read with its head (`http/web.rs`).
                let form = web::form_len(&request);
                let consumed = request.head_len + form;
                if input.len() < consumed {
                    drop(request);
                    self.shell.input = input;
                    return false;
                }
                self.form = input[request.head_len..consumed].into();
                self.handle(&request, services);
                self.form = Box::default();
                if matches!(self.state, State::Verifying(_)) {
                    // The password check decides; the request is handled
                    // again, from the same bytes, once it has.
                    drop(request);
                    self.shell.input = input;
                    return false;
                }
                consumed
            }
        };
        self.shell.input = input;
        self.shell.input.drain(..consumed);
        // A pipelined request behind it has its own time from now.
        self.head_started = Instant::now();
        true
    }

    fn refill(&mut self, services: &Services) {
        let State::Sending(send) = &mut self.state else {
            return;
        };
        match send.download.refill(&mut self.shell.out) {
            Ok(false) => {}
            Ok(true) => {
                if let State::Sending(send) = self.take_state() {
                    let keep = send.keep_alive && !self.shell.shutting_down;
                    let who = who(self.shell.peer, &send.user);
                    send.download.completed(who, services);
                    self.after_response(After::from_keep_alive(keep));
                }
            }
            // The announced length can no longer be met.
            Err(err) => self.file_output_failed(&err, services),
        }
    }

    /// Feeds body bytes to the running upload; returns how many of `data`
    /// belonged to the body.
    fn take_payload(&mut self, data: &[u8], services: &Services) -> usize {
        if let State::DavBody(_) = self.state {
            return self.dav_body(data, services);
        }
        let State::Receiving(put) = &mut self.state else {
            return 0;
        };
        let max = put.limit;
        // A chunked body claims its bytes as they arrive, against the one
        // count every upload of the user shares (a declared length claimed
        // them all at the start).
        let chunked_quota = match put.framing {
            Framing::Chunked(_) => services.policy.user_quota,
            Framing::Length { .. } => None,
        };
        let mut over_quota = false;
        let Put {
            framing, intake, ..
        } = &mut **put;
        let mut write = |bytes: &[u8]| {
            let len = bytes.len() as u64;
            let total = intake.received() + len;
            if total > max || over_quota {
                return intake.skip(len);
            }
            if let Some(quota) = chunked_quota
                && !intake.claim_within(total, quota)
            {
                over_quota = true;
                return intake.skip(len);
            }
            // A failed write is answered once the body is all read.
            intake.write(bytes);
        };
        let (taken, done) = match framing.feed(data, &mut write) {
            Ok(fed) => fed,
            Err(err) => {
                if let State::Receiving(put) = self.take_state() {
                    let reason = format!("bad chunked body: {err:?}");
                    self.abort_upload(*put, &reason, services);
                }
                self.fail(Refused::Malformed, After::Close, services);
                return data.len();
            }
        };
        if put.intake.received() > max || over_quota {
            let over = match chunked_quota {
                Some(quota) if over_quota => Some(OverQuota::Bytes { quota }),
                _ => put.over_quota,
            };
            let reason = if over_quota {
                "body over the quota"
            } else {
                "body over the size limit"
            };
            if let State::Receiving(mut put) = self.take_state() {
                // What can never fit is not worth keeping.
                put.resumable = false;
                self.abort_upload(*put, reason, services);
            }
            let failure = match over {
                Some(over) => Failure::OverQuota(over),
                None => Failure::TooLarge { max },
            };
            self.fail(failure, After::Close, services);
            return data.len();
        }
        if done {
            self.finish_upload(services);
        }
        taken
    }

    fn password_check(&self) -> Option<&PasswordCheck> {
        match &self.state {
            State::Verifying(verifying) => Some(&verifying.check),
            _ => None,
        }
    }

    fn password_check_mut(&mut self) -> Option<&mut PasswordCheck> {
        match &mut self.state {
            State::Verifying(verifying) => Some(&mut verifying.check),
            _ => None,
        }
    }

    fn download(&self) -> Option<&Download> {
        match &self.state {
            State::Sending(send) => Some(&send.download),
            _ => None,
        }
    }

    fn download_mut(&mut self) -> Option<&mut Download> {
        match &mut self.state {
            State::Sending(send) => Some(&mut send.download),
            _ => None,
        }
    }

    fn cut_download(&mut self, reason: &str, services: &Services) {
        if let State::Sending(send) = self.take_state() {
            self.cut(*send, reason, services);
        }
    }

    /// How many bytes the session takes now; 0 means do not read.
    fn read_limit(&self) -> usize {
        if self.shell.peer_eof || self.shell.out.is_held() {
            return 0;
        }
        match &self.state {
            State::Closing => 0,
            State::Receiving(_) | State::DavBody(_) if !self.shell.input.is_empty() => 0,
            State::DavBody(job) => job.read_limit(),
            State::Receiving(put) => match &put.framing {
                Framing::Length { left } => usize::try_from(*left).unwrap_or(usize::MAX),
                Framing::Chunked(decoder) => usize::try_from(decoder.data_left())
                    .unwrap_or(usize::MAX)
                    .saturating_add(CHUNK_FRAMING_READ),
            },
            State::Sending(send) if !send.keep_alive => 0,
            State::Listing(job) if !job.keep_alive => 0,
            State::Copying(copy) if !copy.keep_alive => 0,
            State::Head
            | State::Sending(_)
            | State::Listing(_)
            | State::Copying(_)
            | State::Verifying(_) => MAX_HEAD.saturating_sub(self.shell.input.len()),
        }
    }

    /// When the session next needs [`Front::on_deadline`].
    fn timeout(&self, services: &Services) -> Option<Instant> {
        let policy = &services.policy;
        if let State::Copying(_) = self.state {
            // Work of the server's own, not the client's: no deadline.
            return None;
        }
        Some(match self.state {
            State::Head if self.shell.input.is_empty() => {
                self.shell.last_activity + policy.idle_timeout
            }
            State::Head | State::Verifying(_) => self.head_started + policy.head_timeout,
            State::Receiving(_)
            | State::DavBody(_)
            | State::Sending(_)
            | State::Listing(_)
            | State::Copying(_)
            | State::Closing => self.shell.last_activity + policy.stall_timeout,
        })
    }

    /// Called at or after [`Front::deadline`]: releases a held response,
    /// or ends the connection when its time is up (`408` for a request
    /// that did not arrive in time).
    fn time_out(&mut self, services: &Services) {
        match self.take_state() {
            State::Head if self.shell.input.is_empty() => {
                log::info!("{} idle keep-alive connection closed", self.shell.peer);
            }
            State::Head | State::Verifying(_) => {
                log::info!("{} timeout: request head incomplete", self.shell.peer);
                self.shell.input.clear();
                self.fail(Failure::Timeout, After::Close, services);
            }
            State::Receiving(put) => {
                self.abort_upload(*put, "timeout: upload stalled", services);
                self.fail(Failure::Timeout, After::Close, services);
            }
            State::DavBody(_) => self.fail(Failure::Timeout, After::Close, services),
            State::Sending(send) => {
                self.cut(*send, "timeout: the client stopped reading", services);
                self.shell.out.discard();
            }
            State::Listing(job) => {
                self.cut_listing(&job, "timeout: the client stopped reading");
                self.shell.out.discard();
            }
            State::Copying(_) | State::Closing => self.shell.out.discard(),
        }
    }

    /// Socket-free work: a password-hash check that holds a slot, or the
    /// next step of a listing once the last was sent.
    fn has_work(&self) -> bool {
        match &self.state {
            State::Verifying(v) => v.check.is_running(),
            State::Listing(_) => self.shell.out.queued().is_empty(),
            State::Copying(_) => true,
            _ => false,
        }
    }

    /// One slice of the password check (once decided, the waiting request
    /// is handled again), or one step of a listing.
    fn work(&mut self, services: &Services) -> usize {
        if let State::Copying(_) = self.state {
            self.copy_step(services);
            self.advance(services);
            return usize::MAX;
        }
        if let State::Listing(job) = &self.state {
            if job.dav.is_some() {
                self.dav_list_step(services);
            } else {
                self.list_step();
            }
            self.advance(services);
            // A step is this session's whole turn, as for `LIST`.
            return usize::MAX;
        }
        let State::Verifying(verifying) = &mut self.state else {
            return 0;
        };
        if !verifying.check.is_running() {
            return 0;
        }
        match verifying.check.step(services, self.shell.peer) {
            Checked::Undecided => {}
            // An address locked out while this check waited or ran gets the
            // refusal, not the outcome: nothing is cached, so the request,
            // handled again, meets the lockout.
            Checked::LockedOut => {
                self.state = State::Head;
                self.advance(services);
            }
            Checked::Decided(result) => {
                self.auth_cache = Some(Box::new(AuthCache {
                    key: verifying.key,
                    result,
                    generation: verifying.generation,
                    recorded: false,
                    dir: None,
                }));
                self.state = State::Head;
                self.advance(services);
            }
        }
        // One slice is this session's whole turn: with at most two checks
        // running, a turn of the loop spends about 2 ms on them.
        usize::MAX
    }

    /// The drain is over: an upload is discarded (`503`), a response is cut.
    fn end_drain(&mut self, services: &Services) {
        match self.take_state() {
            State::Receiving(put) => {
                self.abort_upload(*put, "server shutting down", services);
                self.fail(Failure::ShuttingDown, After::Close, services);
            }
            State::DavBody(_) => self.fail(Failure::ShuttingDown, After::Close, services),
            State::Sending(send) => {
                self.cut(*send, "server shutting down", services);
                self.shell.out.discard();
            }
            State::Listing(job) => {
                self.cut_listing(&job, "server shutting down");
                self.shell.out.discard();
            }
            // Never placed: nothing changed.
            State::Copying(_) => self.fail(Failure::ShuttingDown, After::Close, services),
            State::Head | State::Verifying(_) | State::Closing => {}
        }
        self.state = State::Closing;
    }

    fn interrupt(&mut self, reason: &str, services: &Services) {
        match self.take_state() {
            State::Receiving(put) => self.abort_upload(*put, reason, services),
            State::Sending(send) => self.cut(*send, reason, services),
            State::Listing(job) => self.cut_listing(&job, reason),
            State::Head
            | State::DavBody(_)
            | State::Copying(_)
            | State::Verifying(_)
            | State::Closing => {}
        }
    }
}

impl Session {
    pub fn new(peer: SocketAddr) -> Session {
        Session::with_role(peer, Role::Main)
    }

    /// A session for a connection on the listener of `role`.
    pub fn with_role(peer: SocketAddr, role: Role) -> Session {
        Session {
            state: State::Head,
            shell: Shell::new(peer),
            role,
            failures: 0,
            auth_cache: None,
            head_request: false,
            head_started: Instant::now(),
            cookie_user: None,
            form: Box::default(),
        }
    }

    /// Decides the response to one request, in the order of checks of
    /// `protocol.md`: path, method, authentication, name, the request.
    fn handle(&mut self, request: &Request<'_>, services: &Services) {
        self.head_request = request.method == Method::Head;
        self.shell
            .access_begin(services, None, request.method.as_str(), request.path);
        // A body that will not be read leaves the stream unusable.
        let reads_body = request.method == Method::Put
            || web::form_len(request) > 0
            || dav::takes_body(request.method);
        let keep_alive = request.keep_alive && (reads_body || !request.body.is_present());
        let after = After::from_keep_alive(keep_alive && !self.shell.shutting_down);
        // A refusal leaves any body unread, so the connection cannot go on.
        let refuse = if request.body.is_present() {
            After::Close
        } else {
            after
        };
        self.cookie_user = None;
        // `after`, not `refuse`: a form body was read with the head, and
        // any other body makes `after` close anyway.
        if self.role == Role::Main && self.web(request, after, services) {
            return;
        }
        let resource = match (http::route(request.path), self.role) {
            (Route::Healthz, _) => Resource::Healthz,
            (Route::Metrics, Role::Metrics) => Resource::Metrics,
            // Without a token the counters are the metrics listener's
            // alone: the HTTP front does not even admit to having them.
            (Route::Metrics, Role::Main) if services.metrics_token.is_some() => Resource::Metrics,
            (Route::Listing, Role::Main) => Resource::Listing,
            (Route::File(raw), Role::Main) => Resource::File(raw),
            (Route::Folder(raw), Role::Main) => Resource::Folder(raw),
            _ => return self.fail(Refused::NoRoute, refuse, services),
        };
        if request.method == Method::Options
            && let Resource::Listing | Resource::File(_) | Resource::Folder(_) = resource
        {
            let root = matches!(resource, Resource::Listing);
            return self.dav_options(root, refuse, services);
        }
        let access = match (request.method, &resource) {
            (Method::Unknown, _) => return self.fail(Refused::UnknownMethod, refuse, services),
            (method, Resource::Listing | Resource::File(_) | Resource::Folder(_))
                if dav::is_dav(method) =>
            {
                Access::Dav
            }
            (Method::Get | Method::Head, Resource::Folder(_)) => Access::List,
            (Method::Get | Method::Head, _) => Access::Read,
            (Method::Put, Resource::File(_)) => Access::Write,
            (Method::Delete, Resource::File(_) | Resource::Folder(_)) => Access::Delete,
            (Method::Mkcol, Resource::File(_) | Resource::Folder(_)) => Access::Mkcol,
            (Method::Move, Resource::File(_) | Resource::Folder(_)) => Access::Move,
            (Method::Copy, Resource::File(_) | Resource::Folder(_)) => Access::Copy,
            _ => {
                let allowed = match resource {
                    Resource::File(_) => dav::ALLOW_FILE,
                    Resource::Folder(_) => dav::ALLOW_FOLDER,
                    Resource::Listing => dav::ALLOW_ROOT,
                    _ => "GET, HEAD",
                };
                let fields = [("Allow", allowed)];
                let refused = Failure::Request(Refused::MethodNotAllowed);
                return self.fail_with(refused, &fields, false, refuse, services);
            }
        };
        let head_only = request.method == Method::Head;
        match resource {
            Resource::Healthz => match services.health.check(std::time::Instant::now()) {
                None => self.respond(
                    200,
                    &[("Content-Type", TEXT)],
                    b"ok\n",
                    head_only,
                    after,
                    services,
                ),
                Some(why) => self.respond(
                    503,
                    &[("Content-Type", TEXT)],
                    format!("unhealthy: {why}\n").as_bytes(),
                    head_only,
                    after,
                    services,
                ),
            },
            Resource::Metrics => {
                if self.role == Role::Main
                    && !bearer_matches(&request.credentials, services.metrics_token.as_deref())
                {
                    let fields = [("WWW-Authenticate", "Bearer realm=\"ferry metrics\"")];
                    let refused = Failure::NotLoggedIn;
                    return self.fail_with(refused, &fields, head_only, refuse, services);
                }
                let text = services.metrics.render();
                let fields = [("Content-Type", "text/plain; version=0.0.4")];
                self.respond(200, &fields, text.as_bytes(), head_only, after, services)
            }
            Resource::Listing | Resource::File(_) | Resource::Folder(_) => {
                let peer = self.shell.peer;
                if self
                    .shell
                    .channel
                    .refused_by(&peer, services.policy.require_tls)
                {
                    let refused = Failure::TlsRequired;
                    return self.fail_with(refused, &[], head_only, refuse, services);
                }
                if let Err(refused) = self.cookie_login(request, services) {
                    return self.fail(refused, refuse, services);
                }
                let user = match self.authenticate(&request.credentials, services) {
                    Authenticated::User(user) => Some(user),
                    Authenticated::Pending => return,
                    Authenticated::Busy => {
                        let fields = [("Retry-After", "1")];
                        let busy = Failure::LoginsBusy;
                        return self.fail_with(busy, &fields, head_only, After::Close, services);
                    }
                    Authenticated::No => None,
                };
                let Some(user) = user else {
                    let after = if self.failures >= MAX_AUTH_FAILURES {
                        After::Close
                    } else {
                        refuse
                    };
                    let fields = [("WWW-Authenticate", "Basic realm=\"ferry\"")];
                    let refused = Failure::NotLoggedIn;
                    return self.fail_with(refused, &fields, head_only, after, services);
                };
                let dir = match self.user_dir(&user, services) {
                    Ok(dir) => dir,
                    Err(err) => {
                        log::error!(
                            "{} cannot prepare the directory of {user}: {err}",
                            self.shell.peer
                        );
                        return self.fail(Failure::Internal(err), refuse, services);
                    }
                };
                match resource {
                    Resource::File(raw) | Resource::Folder(raw) => {
                        let Some(name) = http::decode_path(raw) else {
                            Event::NameRefused {
                                user: &user,
                                verb: request.method.as_str(),
                                name: raw,
                            }
                            .record(self.shell.peer, Protocol::Http);
                            let refused = Failure::Request(Refused::NameNotAllowed);
                            return self.fail_with(refused, &[], head_only, refuse, services);
                        };
                        let file = (access, name.as_str());
                        self.file_request(request, &user, &dir, file, after, services);
                    }
                    _ if matches!(access, Access::Dav) => {
                        self.dav(request, &user, &dir, None, after, services)
                    }
                    _ => self.listing(request, &user, &dir, None, after, services),
                }
            }
        }
    }

    fn file_request(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        (access, name): (Access, &str),
        after: After,
        services: &Services,
    ) {
        let started = Instant::now();
        let Some(file_name) = name::validate(name.as_bytes()) else {
            return self.fail(Refused::Malformed, After::Close, services);
        };
        if let Access::Write | Access::Delete | Access::Mkcol | Access::Move | Access::Copy = access
            && let Err(refused) = self.dav_guard(request, user, dir, file_name, services)
        {
            // A refused PUT leaves its body unread.
            let after = if request.body.is_present() {
                After::Close
            } else {
                after
            };
            return self.fail(refused, after, services);
        }
        // One arm per method, each a function of its own (WebDAV's
        // methods live in `http/folders.rs`).
        match access {
            Access::Dav => self.dav(request, user, dir, Some(file_name), after, services),
            Access::Read => self.download(request, user, dir, file_name, after, services),
            Access::Write => self.start_upload(request, user, dir, file_name, after, services),
            Access::List => self.listing(request, user, dir, Some(file_name), after, services),
            Access::Delete => self.delete(request, user, dir, file_name, started, after, services),
            Access::Mkcol => self.mkcol(request, user, dir, file_name, after, services),
            Access::Move => {
                self.move_or_copy(request, user, dir, file_name, false, after, services)
            }
            Access::Copy => self.move_or_copy(request, user, dir, file_name, true, after, services),
        }
    }

    fn download(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        name: FilePath<'_>,
        after: After,
        services: &Services,
    ) {
        if http::query_has(request.query, b"partial") {
            return self.partial_held(user, dir, name, after, services);
        }
        let (file, meta) = match services.storage.open_download(dir, name) {
            Ok(opened) => opened,
            // A folder's URL ends with `/`: the client is sent there.
            Err(StorageError::IsFolder) => {
                return self.redirect_to_folder(request, after, services);
            }
            Err(err) => {
                log::info!("{} {user}: GET {name:?}: {err}", self.shell.peer);
                return self.fail(not_found(err), after, services);
            }
        };
        let size = meta.len;
        let modified = httpdate::fmt_http_date(meta.modified());
        let etag = meta.version().to_string();
        if let Some(status) = Session::read_condition(request, &etag) {
            return self.not_sent(status, &etag, after, services);
        }
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
                    let fields = [("Content-Range", field.as_str())];
                    let refused = Failure::Request(Refused::RangeNotSatisfiable);
                    let head_only = request.method == Method::Head;
                    return self.fail_with(refused, &fields, head_only, after, services);
                }
            },
            None if preview => (200, 0, size.min(PREVIEW_LEN), None),
            None => (200, 0, size, None),
        };
        let (content_type, shown) =
            crate::web::download_fields(request.query, name.leaf().as_str());
        let fields = [
            ("Content-Type", content_type),
            ("Last-Modified", modified.as_str()),
            ("ETag", etag.as_str()),
            ("Accept-Ranges", "bytes"),
            ("Content-Range", range_field.as_deref().unwrap_or_default()),
        ];
        // The last field only for a range.
        let mut fields = fields[..if range_field.is_some() { 5 } else { 4 }].to_vec();
        fields.extend(shown.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let fields = &fields[..];
        self.start_head(status, fields, Some(len), after, services);
        if request.method == Method::Head {
            return self.after_response(after);
        }
        let kind = if preview {
            TransferKind::View
        } else {
            TransferKind::Download
        };
        self.state = State::Sending(Box::new(Send {
            download: Download::start(kind, name, file, first, len, services),
            keep_alive: after == After::KeepAlive,
            user: user.to_owned(),
        }));
        self.refill(services);
    }

    fn start_upload(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        name: FilePath<'_>,
        after: After,
        services: &Services,
    ) {
        // Any refusal before the body is read closes the connection: the
        // body (or what the client sends of it) cannot be told from the
        // next request.
        let framing = match request.body {
            Body::None => return self.fail(Refused::LengthRequired, After::Close, services),
            Body::Length(n) if n > services.max_file_size => {
                let max = services.max_file_size;
                return self.fail(Failure::TooLarge { max }, After::Close, services);
            }
            Body::Length(n) => Framing::Length { left: n },
            Body::Chunked => Framing::Chunked(ChunkedDecoder::new()),
        };
        if request.expect == Expect::Unsupported {
            return self.fail(Refused::ExpectationFailed, After::Close, services);
        }
        // `?resumable` and `?offset=N` (`http/web.rs`).
        let (resumable, offset) = match web::resume_of(request) {
            Ok(resume) => resume,
            Err(refused) => return self.fail(refused, After::Close, services),
        };
        // Short of the bytes held, the line protocol hashes them again;
        // HTTP refuses, before the partial is touched.
        if let Some(offset) = offset
            && offset < services.storage.partial_len(dir, name).unwrap_or(0)
        {
            return self.fail(Refused::ResumeUnhashed, After::Close, services);
        }
        // A declared length is checked against the quota now; a chunked
        // body as it grows.
        let size = match framing {
            Framing::Length { left } => Some(left.saturating_add(offset.unwrap_or(0))),
            Framing::Chunked(_) => None,
        };
        let limits = services.put_limits();
        let started = match services.storage.begin_put(dir, name, size, offset, limits) {
            Ok(started) => started,
            Err(refusal) => {
                log::info!("{} {user}: PUT {name:?}: {refusal:?}", self.shell.peer);
                return self.fail(refusal, After::Close, services);
            }
        };
        if request.expect == Expect::Continue {
            services.metrics.reply(Protocol::Http, 100);
            self.shell
                .out
                .buf()
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if let Some(offset) = offset {
            log::info!(
                "{} {user}: PUT {name:?} continues at byte {offset}",
                self.shell.peer
            );
        }
        let Some(hasher) = started.hasher else {
            // Continuing short of the bytes held needs them hashed again,
            // which this front does not do: the partial stays as it was.
            let intake = Intake::start(name, size, started.upload, Hasher::new(), services);
            let then = Interrupted::Resumable { hashed: false };
            let reason = "resume needs the bytes held hashed";
            intake.interrupt(then, who(self.shell.peer, user), reason, services);
            return self.fail(Refused::ResumeUnhashed, After::Close, services);
        };
        let put = Put {
            intake: Intake::start(name, size, started.upload, hasher, services),
            user: user.to_owned(),
            existed: started.existed,
            framing,
            limit: started.limit,
            over_quota: started.limited_by_quota,
            keep_alive: after == After::KeepAlive,
            resumable,
        };
        let empty = matches!(put.framing, Framing::Length { left: 0 });
        self.state = State::Receiving(Box::new(put));
        if empty {
            self.finish_upload(services);
        }
    }

    fn finish_upload(&mut self, services: &Services) {
        let State::Receiving(put) = self.take_state() else {
            return;
        };
        let Put {
            intake,
            user,
            existed,
            keep_alive,
            ..
        } = *put;
        let after = After::from_keep_alive(keep_alive && !self.shell.shutting_down);
        let received = intake.received();
        let path = intake.name().to_owned();
        match intake.finish(None, who(self.shell.peer, &user), services) {
            Finished::Stored(sha256) => {
                let status = if existed { 204 } else { 201 };
                self.shell.access_bytes(received);
                let digest = sha256.to_string();
                let etag = self.stored_etag(&user, &path, services);
                let fields = [("X-Ferry-SHA256", digest.as_str()), ("ETag", &etag)];
                let fields = &fields[..if etag.is_empty() { 1 } else { 2 }];
                self.respond(status, fields, b"", true, after, services);
            }
            Finished::Failed(err) => self.fail(err, after, services),
            // Nothing is expected of an HTTP upload's digest.
            Finished::Mismatch { .. } => {
                let err = io::Error::other("digest mismatch");
                self.fail(Failure::Internal(err), after, services)
            }
        }
    }

    fn abort_upload(&mut self, put: Put, reason: &str, services: &Services) {
        // An HTTP upload is whole or nothing unless it asked to be kept
        // (`?resumable`); the hasher covers every byte it held.
        let who = who(self.shell.peer, &put.user);
        let then = if put.resumable {
            Interrupted::Resumable { hashed: true }
        } else {
            Interrupted::Discarded
        };
        put.intake.interrupt(then, who, reason, services);
    }

    fn cut(&self, send: Send, reason: &str, services: &Services) {
        let who = who(self.shell.peer, &send.user);
        send.download.cut(who, reason, services);
    }

    /// Takes the state whole, to move on from it: every transition that
    /// needs the data of the state it leaves starts here. Until the next
    /// state is set the connection is `Closing`, which is also what it
    /// becomes when none is.
    fn take_state(&mut self) -> State {
        mem::replace(&mut self.state, State::Closing)
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
        if status != 100 {
            // The access log's line of the request: its final status, and
            // the body it announces (a listing's is counted as it goes).
            if !self.head_request {
                self.shell.access_bytes(content_length.unwrap_or(0));
            }
            let user = self.auth_cache.as_ref().and_then(|c| c.result.as_deref());
            self.shell
                .access_end(services, Protocol::Http, user, status);
        }
        write_head(
            self.shell.out.buf(),
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
            self.shell.out.buf().extend_from_slice(body);
        }
        self.after_response(after);
    }

    fn after_response(&mut self, after: After) {
        self.state = match after {
            After::KeepAlive => State::Head,
            After::Close => State::Closing,
        };
    }

    /// A failure, in the words of the one table ([`Failure::http`]).
    fn fail(&mut self, failure: impl Into<Failure>, after: After, services: &Services) {
        self.fail_with(failure.into(), &[], false, after, services);
    }

    /// A failure with fields of its own before the `Content-Type`.
    fn fail_with(
        &mut self,
        failure: Failure,
        fields: &[(&str, &str)],
        head_only: bool,
        after: After,
        services: &Services,
    ) {
        let (status, text) = failure.http();
        let body = format!("{text}\n");
        let mut fields = fields.to_vec();
        let mut after = after;
        if failure.ends_connection() {
            fields.push(("Retry-After", "1"));
            after = After::Close;
        }
        fields.push(("Content-Type", TEXT));
        self.respond(status, &fields, body.as_bytes(), head_only, after, services);
    }
}

/// A missing folder on the way to what a `GET`, `HEAD` or `DELETE` names
/// is a missing file (`404`), not a conflict.
fn not_found(err: StorageError) -> StorageError {
    match err {
        StorageError::NoFolder => StorageError::NotFound,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    //! Whole HTTP conversations driven from byte slices, no socket.

    use super::*;
    use crate::session::testing::{Harness, peer};

    fn harness() -> Harness {
        Harness::new(1000)
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
        let h = harness();
        let mut session = Session::new(peer());
        let input = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /files/nope HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n\
             GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let out = h.talk_text(&mut session, input.as_bytes(), 7);
        assert_eq!(statuses(&out), ["200", "404", "404"], "{out}");
        assert!(!session.is_done(), "keep-alive");
        session.receive_eof(&h.services);
        assert!(session.is_done());
    }

    #[test]
    fn chunked_upload_split_anywhere_then_replace() {
        let h = harness();
        for (step, expected) in [(1, "201"), (5, "204"), (1000, "204")] {
            let mut session = Session::new(peer());
            let input = format!(
                "PUT /files/a%20b HTTP/1.1\r\nHost: x\r\n{AUTH}Transfer-Encoding: chunked\r\n\r\n\
                 3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nGET /files/a%20b HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n"
            );
            let out = h.talk_text(&mut session, input.as_bytes(), step);
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
        let h = harness();
        let mut session = Session::new(peer());
        let input = format!(
            "PUT /files/big HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 1001\r\nExpect: 100-continue\r\n\r\n"
        );
        let out = h.talk_text(&mut session, input.as_bytes(), 4096);
        assert_eq!(statuses(&out), ["413"], "no 100 Continue: {out}");
        assert!(out.contains("Connection: close\r\n"));
        assert!(session.is_done());

        let mut session = Session::new(peer());
        let input = "PUT /files/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let out = h.talk_text(&mut session, input.as_bytes(), 4096);
        assert_eq!(statuses(&out), ["401"]);
        assert!(
            session.is_done(),
            "the unread body cannot be told from a request"
        );
    }

    #[test]
    fn the_third_failed_login_closes() {
        let h = harness();
        let mut session = Session::new(peer());
        let bad = "GET /files/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6bm8=\r\n\r\n";
        let none = "GET /files/ HTTP/1.1\r\nHost: x\r\n\r\n";
        let input = [none, bad, bad, none, bad, none].concat();
        let out = h.talk_text(&mut session, input.as_bytes(), 4096);
        assert_eq!(
            statuses(&out),
            ["401"; 5],
            "the last request is not answered: {out}"
        );
        assert!(session.is_done());
    }

    #[test]
    fn shutdown_closes_idle_and_lets_an_upload_finish() {
        let h = harness();
        let mut idle = Session::new(peer());
        idle.begin_shutdown(&h.services);
        assert!(idle.is_done());

        let mut session = Session::new(peer());
        let head = format!("PUT /files/f HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 4\r\n\r\nab");
        assert_eq!(h.talk_text(&mut session, head.as_bytes(), 4096), "");
        session.begin_shutdown(&h.services);
        let out = h.talk_text(&mut session, b"cdGET /healthz HTTP/1.1\r\n\r\n", 4096);
        assert_eq!(statuses(&out), ["201"], "{out}");
        assert!(out.contains("Connection: close\r\n"));
        assert!(session.is_done());
    }

    #[test]
    fn a_client_that_never_reads_cannot_grow_the_output() {
        let h = harness();
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
        assert!(session.shell.input.len() <= MAX_HEAD);
    }

    #[test]
    fn require_tls_is_403_for_plaintext_from_other_hosts() {
        let mut h = harness();
        h.services.policy.require_tls = true;
        let remote: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let request = format!("GET /files/ HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n");
        let mut session = Session::new(remote);
        let out = String::from_utf8_lossy(&h.talk(&mut session, request.as_bytes())).into_owned();
        assert_eq!(statuses(&out), ["403"], "{out}");
        assert!(out.contains("TLS required"), "{out}");
        let mut secure = Session::new(remote);
        secure.shell.channel = crate::session::Channel::secure();
        let out = String::from_utf8_lossy(&h.talk(&mut secure, request.as_bytes())).into_owned();
        assert_eq!(statuses(&out), ["200"], "{out}");
    }

    #[test]
    fn a_client_certificate_stands_for_the_authorization_field() {
        let h = harness();
        let request = b"GET /files/ HTTP/1.1\r\nHost: x\r\n\r\n";
        for (name, status) in [
            (Ok("alice"), "200"),
            (Ok("bob"), "401"),
            (Err("expired"), "401"),
        ] {
            let mut session = Session::new(peer());
            session.shell.channel = crate::session::Channel {
                secure: true,
                certified: Some(Box::new(name.map(str::to_owned).map_err(str::to_owned))),
            };
            let out = String::from_utf8_lossy(&h.talk(&mut session, request)).into_owned();
            assert_eq!(statuses(&out), [status], "{name:?}: {out}");
        }
    }
}
