//! The line protocol's folder commands: `STAT`, `MKDIR`, `RMDIR`,
//! `RMTREE`, `FROM`, `REPLACE`, `MOVE`, `COPY` (`LIST` and `TREE` are the
//! listing's). Each is one storage call; only `COPY` takes more than one
//! step, run by [`Session::copy_step`] under the loop's budget.

use super::{Login, Session, State};
use crate::audit::TreeChange;
use crate::protocol::path::{FilePath, FilePathBuf};
use crate::protocol::reply::Reply;
use crate::session::replies::Failure;
use crate::session::{Front, Services};
use crate::storage::Copying;

/// A `COPY` in progress, with its paths for the audit line at its end.
#[derive(Debug)]
pub(super) struct LineCopy {
    copying: Copying,
    from: FilePathBuf,
    to: FilePathBuf,
}

impl Session {
    /// Says why a folder command failed, and logs it.
    fn folder_failed(
        &mut self,
        login: &Login,
        verb: &str,
        path: FilePath<'_>,
        failure: impl Into<Failure>,
        services: &Services,
    ) {
        let failure = failure.into();
        log::info!(
            "{} {}: {verb} {path:?}: {failure:?}",
            self.shell.peer,
            login.user()
        );
        self.fail(failure, services);
    }

    pub(super) fn stat(&mut self, login: Login, path: FilePath<'_>, services: &Services) -> State {
        match services.storage.stat(&login.dir, path) {
            Ok(facts) => self.reply(
                Reply::Stat {
                    folder: facts.folder,
                    size: facts.size,
                    mtime: facts.mtime,
                    sha256: facts.sha256,
                },
                services,
            ),
            Err(err) => self.folder_failed(&login, "STAT", path, err, services),
        }
        State::Idle(login)
    }

    /// `MKDIR`, `RMDIR` or `RMTREE` (`change`): one storage call, its
    /// audit line once done, the reply.
    pub(super) fn change_tree(
        &mut self,
        login: Login,
        path: FilePath<'_>,
        change: TreeChange,
        services: &Services,
    ) -> State {
        let storage = &services.storage;
        let (done, verb, reply) = match change {
            TreeChange::Mkdir => (storage.mkdir(&login.dir, path), "MKDIR", Reply::Created),
            TreeChange::Rmdir => (storage.rmdir(&login.dir, path), "RMDIR", Reply::Removed),
            _ => {
                let removed = storage.remove_tree(&login.dir, path).map(drop);
                (removed, "RMTREE", Reply::Removed)
            }
        };
        match done {
            Ok(()) => {
                change.record(login.who(self.shell.peer), path.as_str(), None);
                self.reply(reply, services)
            }
            Err(err) => self.folder_failed(&login, verb, path, err, services),
        }
        State::Idle(login)
    }

    pub(super) fn from(
        &mut self,
        mut login: Login,
        path: FilePath<'_>,
        services: &Services,
    ) -> State {
        login.pending().from = Some(path.to_owned());
        self.reply(Reply::From, services);
        State::Idle(login)
    }

    pub(super) fn replace(&mut self, mut login: Login, services: &Services) -> State {
        login.pending().replace = true;
        self.reply(Reply::Replacing, services);
        State::Idle(login)
    }

    pub(super) fn move_to(
        &mut self,
        mut login: Login,
        to: FilePath<'_>,
        services: &Services,
    ) -> State {
        let (from, replace) = login.take_move();
        let Some(from) = from else {
            self.reply(Reply::NeedFrom, services);
            return State::Idle(login);
        };
        match services
            .storage
            .rename(&login.dir, from.as_path(), to, replace)
        {
            Ok(_) => {
                let who = login.who(self.shell.peer);
                TreeChange::Move.record(who, from.as_str(), Some(to.as_str()));
                self.reply(Reply::Moved, services)
            }
            Err(err) => self.folder_failed(&login, "MOVE", to, err, services),
        }
        State::Idle(login)
    }

    pub(super) fn copy_to(
        &mut self,
        mut login: Login,
        to: FilePath<'_>,
        services: &Services,
    ) -> State {
        let (from, replace) = login.take_move();
        let Some(from) = from else {
            self.reply(Reply::NeedFrom, services);
            return State::Idle(login);
        };
        let limits = services.put_limits();
        match services
            .storage
            .begin_copy(&login.dir, from.as_path(), to, replace, limits)
        {
            // The bytes move in `copy_step`, a step per turn.
            Ok(copying) => {
                let to = to.to_owned();
                State::Copying(login, Box::new(LineCopy { copying, from, to }))
            }
            Err(refusal) => {
                self.folder_failed(&login, "COPY", to, refusal, services);
                State::Idle(login)
            }
        }
    }

    /// One step of a `COPY`; the reply once the copy is in place. Returns
    /// how much of the session's turn it used.
    pub(super) fn copy_step(&mut self, services: &Services) -> usize {
        let State::Copying(_, job) = &mut self.state else {
            return 0;
        };
        match job.copying.step(&services.storage) {
            Ok(false) => return usize::MAX,
            Ok(true) => {}
            Err(err) => {
                self.transition(|session, state| match state {
                    State::Copying(login, _) => {
                        log::info!("{} {}: COPY: {err:?}", session.shell.peer, login.user());
                        session.fail(err, services);
                        State::Idle(login)
                    }
                    other => other,
                });
                self.advance(services);
                return usize::MAX;
            }
        }
        self.transition(|session, state| match state {
            State::Copying(login, job) => {
                let LineCopy { copying, from, to } = *job;
                match services.storage.finish_copy(copying) {
                    Ok(copied) => {
                        let who = login.who(session.shell.peer);
                        TreeChange::Copy.record(who, from.as_str(), Some(to.as_str()));
                        match copied.sha256 {
                            Some(sha256) => {
                                let size = copied.size;
                                session.reply(Reply::Copied { size, sha256 }, services)
                            }
                            None => {
                                let (files, size) = (copied.files, copied.size);
                                session.reply(Reply::CopiedFolder { files, size }, services)
                            }
                        }
                    }
                    Err(err) => {
                        log::info!("{} {}: COPY: {err}", session.shell.peer, login.user());
                        session.fail(err, services);
                    }
                }
                State::Idle(login)
            }
            other => other,
        });
        // Commands that waited behind the copy run now.
        self.advance(services);
        usize::MAX
    }
}

impl Login {
    /// Takes what `FROM` and `REPLACE` said, for the `MOVE` or `COPY` that
    /// uses them now.
    fn take_move(&mut self) -> (Option<crate::protocol::path::FilePathBuf>, bool) {
        match self.pending.as_mut() {
            Some(pending) => (pending.from.take(), std::mem::take(&mut pending.replace)),
            None => (None, false),
        }
    }
}
