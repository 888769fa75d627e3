//! HTTP's folder requests: the redirect of a folder URL without its final
//! `/`, `DELETE` of files and folders, and WebDAV's `MKCOL`, `MOVE` and
//! `COPY` (`GET` of a folder is the listing's). Each is one storage call;
//! a `COPY` is stepped by [`Session::copy_step`] under the loop's budget.
//! The other WebDAV methods add their arms beside these in
//! `Session::file_request`.

use std::time::Instant;

use super::{After, Session, State, not_found, who};
use crate::audit::TreeChange;
use crate::protocol::http::{self, Overwrite, Request};
use crate::protocol::path::{self, FilePath, FilePathBuf};
use crate::session::Services;
use crate::session::replies::{Failure, Refused};
use crate::session::transfer;
use crate::storage::{Copying, PutRefusal, StorageError, UserDir};

/// A `COPY` in progress.
#[derive(Debug)]
pub(super) struct HttpCopy {
    copying: Copying,
    pub(super) keep_alive: bool,
    user: String,
    /// The destination was there and was removed first (`Overwrite: T`).
    cleared: bool,
    /// For the audit line once the copy is in place.
    from: FilePathBuf,
    to: FilePathBuf,
}

impl Session {
    /// `301` to the folder URL: the path as it was sent, and a `/`.
    pub(super) fn redirect_to_folder(
        &mut self,
        request: &Request<'_>,
        after: After,
        services: &Services,
    ) {
        let mut location = String::from_utf8_lossy(request.path).into_owned();
        location.push('/');
        let fields = [("Location", location.as_str())];
        let head_only = self.head_request;
        self.respond(301, &fields, b"", head_only, after, services);
    }

    /// `DELETE` of a file or of a folder with all it holds (with
    /// `Depth: 0`, only an empty folder).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn delete(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        path: FilePath<'_>,
        started: Instant,
        after: After,
        services: &Services,
    ) {
        let storage = &services.storage;
        let result = match storage.delete(dir, path) {
            Ok(size) => {
                transfer::deleted(who(self.shell.peer, user), path, size, started);
                Ok(())
            }
            Err(StorageError::IsFolder) => {
                // RFC 4918 §9.6.1: a DELETE of a collection removes all of
                // it (no Depth means infinity), which WebDAV clients count
                // on; `Depth: 0` is the form that removes only an empty
                // folder, and `?recursive` says the default out loud.
                let recursive = http::query_has(request.query, b"recursive")
                    || request
                        .depth
                        .is_none_or(|depth| depth.eq_ignore_ascii_case(b"infinity"));
                let (change, removed) = if recursive {
                    (TreeChange::Rmtree, storage.remove_tree(dir, path).map(drop))
                } else {
                    (TreeChange::Rmdir, storage.rmdir(dir, path))
                };
                if removed.is_ok() {
                    change.record(who(self.shell.peer, user), path.as_str(), None);
                }
                removed
            }
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => {
                Session::dav_forget(user, path.as_str(), services);
                self.respond(204, &[], b"", true, after, services)
            }
            Err(err) => {
                log::info!("{} {user}: DELETE {path:?}: {err}", self.shell.peer);
                self.fail(not_found(err), after, services);
            }
        }
    }

    /// `MKCOL`: `201`, `405` when the path exists, `409` without its
    /// parent, `415` with a body.
    pub(super) fn mkcol(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        path: FilePath<'_>,
        after: After,
        services: &Services,
    ) {
        if request.body.is_present() {
            // RFC 4918 §9.3.1; the body is not read, so the connection ends.
            let refused = Failure::Request(Refused::UnsupportedBody);
            return self.fail(refused, After::Close, services);
        }
        match services.storage.mkdir(dir, path) {
            Ok(()) => {
                TreeChange::Mkdir.record(who(self.shell.peer, user), path.as_str(), None);
                self.respond(201, &[], b"", true, after, services)
            }
            Err(StorageError::Exists) => {
                let fields = [("Allow", "GET, HEAD, DELETE, MOVE, COPY")];
                let refused = Failure::Request(Refused::MethodNotAllowed);
                self.fail_with(refused, &fields, false, after, services);
            }
            Err(err) => {
                log::info!("{} {user}: MKCOL {path:?}: {err}", self.shell.peer);
                self.fail(err, after, services);
            }
        }
    }

    /// `MOVE` or `COPY` (`copy`) to the `Destination`, replacing it unless
    /// `Overwrite: F`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn move_or_copy(
        &mut self,
        request: &Request<'_>,
        user: &str,
        dir: &UserDir,
        from: FilePath<'_>,
        copy: bool,
        after: After,
        services: &Services,
    ) {
        let verb = if copy { "COPY" } else { "MOVE" };
        let to = request
            .destination
            .and_then(http::destination_path)
            .and_then(http::decode_path);
        let (Some(to), true) = (to, request.overwrite != Overwrite::Malformed) else {
            return self.fail(Refused::Malformed, after, services);
        };
        let to = path::validate(to.as_bytes()).expect("a decoded path is valid");
        let replace = request.overwrite.allows();
        let storage = &services.storage;
        // RFC 4918 §9.8.4, §9.9.3: with `Overwrite: T` a destination the
        // move or copy cannot simply replace (a folder, or a file where a
        // folder goes) is deleted first, whatever it holds, as a DELETE
        // would (`Depth: infinity`). Never when the source lies beneath
        // the destination, or is not there to take its place.
        let cleared = match replace.then(|| storage.replaced_first(dir, from, to)) {
            Some(Err(err)) => {
                log::info!("{} {user}: {verb} {from:?}: {err}", self.shell.peer);
                return self.move_failed(err, replace, after, services);
            }
            Some(Ok(cleared)) => {
                if cleared {
                    Session::dav_forget(user, to.as_str(), services);
                }
                cleared
            }
            None => false,
        };
        if !copy {
            return match storage.rename(dir, from, to, replace) {
                Ok(replaced) => {
                    let replaced = replaced || cleared;
                    let who = who(self.shell.peer, user);
                    TreeChange::Move.record(who, from.as_str(), Some(to.as_str()));
                    // Locks stay with the URL they were taken on, which
                    // now names nothing (or something else).
                    Session::dav_forget(user, from.as_str(), services);
                    Session::dav_forget(user, to.as_str(), services);
                    let status = if replaced { 204 } else { 201 };
                    self.respond(status, &[], b"", true, after, services);
                }
                Err(err) => {
                    log::info!("{} {user}: {verb} {from:?}: {err}", self.shell.peer);
                    self.move_failed(err, replace, after, services)
                }
            };
        }
        match storage.begin_copy(dir, from, to, replace, services.put_limits()) {
            Ok(copying) => {
                self.state = State::Copying(Box::new(HttpCopy {
                    copying,
                    keep_alive: after == After::KeepAlive,
                    user: user.to_owned(),
                    cleared,
                    from: from.to_owned(),
                    to: to.to_owned(),
                }));
            }
            Err(PutRefusal::Storage(err)) => {
                log::info!("{} {user}: {verb} {from:?}: {err}", self.shell.peer);
                self.move_failed(err, replace, after, services)
            }
            Err(refusal) => {
                log::info!("{} {user}: COPY {from:?}: {refusal:?}", self.shell.peer);
                self.fail(refusal, after, services);
            }
        }
    }

    /// What a refused `MOVE` or `COPY` answers.
    fn move_failed(&mut self, err: StorageError, replace: bool, after: After, services: &Services) {
        match err {
            // RFC 4918 §9.8.5, §9.9.4: an existing destination and
            // `Overwrite: F`.
            StorageError::Exists if !replace => {
                let body = b"already exists\n";
                let fields = [("Content-Type", super::TEXT)];
                self.respond(412, &fields, body, false, after, services);
            }
            err => self.fail(err, after, services),
        }
    }

    /// One step of a `COPY`; the response once the copy is in place.
    pub(super) fn copy_step(&mut self, services: &Services) {
        let State::Copying(job) = &mut self.state else {
            return;
        };
        let finished = match job.copying.step(&services.storage) {
            Ok(false) => return,
            Ok(true) => None,
            Err(err) => Some(err),
        };
        let State::Copying(job) = self.take_state() else {
            return;
        };
        let HttpCopy {
            copying,
            keep_alive,
            user,
            cleared,
            from,
            to,
        } = *job;
        let after = After::from_keep_alive(keep_alive && !self.shell.shutting_down);
        let result = match finished {
            Some(refusal) => Err(refusal),
            None => services
                .storage
                .finish_copy(copying)
                .map_err(PutRefusal::Storage),
        };
        match result {
            Ok(copied) => {
                let who = who(self.shell.peer, &user);
                TreeChange::Copy.record(who, from.as_str(), Some(to.as_str()));
                let status = if copied.existed || cleared { 204 } else { 201 };
                let digest = copied.sha256.map(|d| d.to_string());
                match &digest {
                    Some(digest) => {
                        let fields = [("X-Ferry-SHA256", digest.as_str())];
                        self.respond(status, &fields, b"", true, after, services);
                    }
                    None => self.respond(status, &[], b"", true, after, services),
                }
            }
            Err(PutRefusal::Storage(err)) => {
                log::info!("{} {user}: COPY: {err}", self.shell.peer);
                self.move_failed(err, false, after, services);
            }
            Err(refusal) => {
                log::info!("{} {user}: COPY: {refusal:?}", self.shell.peer);
                self.fail(refusal, after, services);
            }
        }
    }
}
