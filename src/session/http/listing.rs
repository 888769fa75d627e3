//! The JSON and text listings of a folder (or, with `?recursive`, of a
//! tree) over HTTP, streamed a step at a time as the line protocol's
//! `LIST` is: chunked on HTTP/1.1, ended by closing on HTTP/1.0. WebDAV's
//! `207` is streamed through the same steps ([`Session::end_list_step`]).

use super::{After, Session, State, TEXT, dav};
use crate::protocol::http::{self, Method, Request};
use crate::protocol::path::FilePath;
use crate::session::Services;
use crate::session::listing::{Streaming, write_listing_line};
use crate::storage::{Entry, UserDir};

/// A listing being sent: the directory is read a step at a time
/// ([`Front::work`]), as for the line protocol's `LIST`, and the body
/// has no length: HTTP/1.1 sends it chunked (a chunk per step), HTTP/1.0
/// ends it by closing the connection.
#[derive(Debug)]
pub(super) struct ListJob {
    pub(super) streaming: Streaming,
    pub(super) json: bool,
    pub(super) chunked: bool,
    pub(super) keep_alive: bool,
    pub(super) user: String,
    /// A `PROPFIND` of the root with `Depth: 1` (a `207`), not a listing.
    pub(super) dav: Option<Box<dav::Multistatus>>,
}

impl Session {
    /// The listing of the folder `path` (the root for `None`), of the
    /// whole tree beneath it with `?recursive`.
    pub(super) fn listing(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        path: Option<FilePath<'_>>,
        after: After,
        services: &Services,
    ) {
        let recursive = http::query_has(request.query, b"recursive");
        let listing = match services.storage.listing_of(dir, path, recursive) {
            Ok(listing) => listing,
            Err(err) => {
                log::error!("{} {user}: listing failed: {err}", self.shell.peer);
                return self.fail(err, after, services);
            }
        };
        let json = http::query_value(request.query, b"format") != Some(b"text");
        let content_type = if json { "application/json" } else { TEXT };
        // The length is not known before the end; HTTP/1.0 has no chunked
        // coding, so there the body ends where the connection closes.
        let chunked = request.minor_version >= 1;
        let after = if chunked { after } else { After::Close };
        let mut fields = vec![("Content-Type", content_type)];
        if chunked {
            fields.push(("Transfer-Encoding", "chunked"));
        }
        self.start_head(200, &fields, None, after, services);
        if request.method == Method::Head {
            return self.after_response(after);
        }
        self.state = State::Listing(Box::new(ListJob {
            streaming: Streaming::new(listing),
            json,
            chunked,
            keep_alive: after == After::KeepAlive,
            user: user.to_owned(),
            dav: None,
        }));
        // The first step now, a bounded one, so that the head goes out
        // with the first entries (a small folder: with all of them) in one
        // write, not a write of its own.
        self.list_step();
    }

    /// One step of a listing: the next chunk of entries (with `[` before
    /// the first and `]` after the last, for JSON), and the end of the
    /// body once the directory is read to its end. A directory that cannot
    /// be read further cuts the body short: the connection closes without
    /// the last chunk, which a client sees as an incomplete response.
    pub(super) fn list_step(&mut self) {
        let State::Listing(job) = &mut self.state else {
            return;
        };
        let out = self.shell.out.buf();
        let start = out.len();
        let json = job.json;
        if json && job.streaming.bytes() == 0 {
            out.extend_from_slice(JSON_OPEN.as_bytes());
            job.streaming.wrote(JSON_OPEN.len());
        }
        let result = job.streaming.step(out, |entry, index, out| {
            write_listing_entry(entry, index, json, out);
        });
        let close = if json { JSON_CLOSE } else { "" };
        self.end_list_step(start, close.as_bytes(), result);
    }

    /// How every step of a streamed listing ends (the JSON or text
    /// listing, WebDAV's `207`): `close` after the last entry, the step's
    /// bytes framed as one chunk, and once the folder is read to its end
    /// the last chunk and the response's end. `start` is where the step's
    /// bytes began in the output.
    pub(super) fn end_list_step(
        &mut self,
        start: usize,
        close: &[u8],
        result: Result<bool, crate::storage::StorageError>,
    ) {
        let State::Listing(job) = &mut self.state else {
            return;
        };
        let out = self.shell.out.buf();
        if matches!(result, Ok(true)) && !close.is_empty() {
            out.extend_from_slice(close);
            job.streaming.wrote(close.len());
        }
        let added = out.len() - start;
        if job.chunked && added > 0 {
            let size = format!("{added:x}\r\n");
            out.splice(start..start, size.bytes());
            out.extend_from_slice(b"\r\n");
        }
        match result {
            Ok(false) => {}
            Ok(true) => {
                if job.chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                job.streaming.ended(self.shell.peer, &job.user, &Ok(()));
                let keep = job.keep_alive && !self.shell.shutting_down;
                self.after_response(After::from_keep_alive(keep));
            }
            Err(err) => {
                job.streaming.ended(self.shell.peer, &job.user, &Err(err));
                self.state = State::Closing;
            }
        }
    }

    pub(super) fn cut_listing(&self, job: &ListJob, reason: &str) {
        job.streaming.cut(self.shell.peer, &job.user, reason);
    }
}

const JSON_OPEN: &str = "[";
const JSON_CLOSE: &str = "]\n";

/// One entry of a listing: the line protocol's `LIST` line, or a JSON
/// object (with a leading comma after the first).
fn write_listing_entry(entry: &Entry, index: usize, json: bool, out: &mut Vec<u8>) {
    use std::io::Write as _;
    if !json {
        return write_listing_line(entry, out);
    }
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{}{{\"name\":\"{}\",\"type\":\"{}\",\"size\":{},\"mtime\":{}}}",
        if index == 0 { "" } else { "," },
        escape8259::escape(&entry.name),
        if entry.folder { "folder" } else { "file" },
        entry.size,
        entry.mtime
    );
}
