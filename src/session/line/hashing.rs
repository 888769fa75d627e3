//! The line protocol's `HASH`, and the held bytes of a resumed `PUT`:
//! a file read and hashed a step at a time ([`Stepwise`]) in the state
//! `Hashing`, so that hashing a large file never holds up other sessions.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{Login, Receive, Session, State};
use crate::protocol::path::{self as name, FilePath};
use crate::protocol::reply::Reply;
use crate::session::Services;
use crate::session::hashing::Stepwise;
use crate::session::transfer::Interrupted;
use crate::storage::{HashLookup, Identity};

/// Hashing a file a step at a time, and what to do with the digest.
#[derive(Debug)]
pub(super) struct Digesting {
    pub(super) hashing: Stepwise,
    pub(super) purpose: Purpose,
}

#[derive(Debug)]
pub(super) enum Purpose {
    /// `HASH`: answer with the digest and record it for next time.
    Answer {
        file: File,
        name: String,
        identity: Identity,
    },
    /// A resumed `PUT`: the bytes held are hashed, then the upload goes on.
    Resume(Box<Receive>),
}

impl Digesting {
    pub(super) fn new(end: u64, purpose: Purpose) -> Digesting {
        Digesting {
            hashing: Stepwise::new(end),
            purpose,
        }
    }

    /// Hashes the next chunk; returns how many bytes that was.
    pub(super) fn step(&mut self) -> io::Result<usize> {
        let purpose = &self.purpose;
        self.hashing.step(|buf, offset| match purpose {
            Purpose::Answer { file, .. } => file.read_at(buf, offset),
            Purpose::Resume(receive) => match receive.intake.upload() {
                Ok(upload) => upload.read_at(buf, offset),
                Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
            },
        })
    }
}

impl Session {
    pub(super) fn hash(&mut self, login: Login, name: FilePath<'_>, services: &Services) -> State {
        let (file, size, identity) = match services.storage.hash_lookup(&login.dir, name) {
            Ok(HashLookup::ToRead {
                file,
                size,
                identity,
            }) => (file, size, identity),
            Ok(HashLookup::Recorded(sha256)) => {
                self.reply(Reply::Sha256(sha256), services);
                return State::Idle(login);
            }
            Err(err) => {
                log::info!("{} {}: HASH {name:?}: {err}", self.shell.peer, login.user());
                self.fail(err, services);
                return State::Idle(login);
            }
        };
        // A file that arrived some other way: hash it a step at a time.
        let name = name.as_str().to_owned();
        let purpose = Purpose::Answer {
            file,
            name,
            identity,
        };
        let job = Digesting::new(size, purpose);
        if job.hashing.is_done() {
            // An empty file needs no step.
            return self.hashed(login, job, services);
        }
        State::Hashing(login, Box::new(job))
    }

    /// Every byte is hashed: answers the `HASH`, or goes on with the
    /// resumed upload; returns the next state.
    pub(super) fn hashed(&mut self, login: Login, job: Digesting, services: &Services) -> State {
        let secs = job.hashing.secs();
        let (_, end) = job.hashing.progress();
        let hasher = job.hashing.into_hasher();
        match job.purpose {
            Purpose::Answer {
                file,
                name,
                identity,
            } => {
                let sha256 = hasher.finish();
                log::info!(
                    "{} {}: HASH {name:?} read {} bytes in {secs:.3}s",
                    self.shell.peer,
                    login.user(),
                    end
                );
                // Recorded only if the file did not change while it was read.
                if Identity::of_file(&file).is_ok_and(|now| now == identity)
                    && let Some(name) = name::validate(name.as_bytes())
                {
                    services
                        .storage
                        .remember_digest(&login.dir, name, &identity, sha256);
                }
                self.reply(Reply::Sha256(sha256), services);
                State::Idle(login)
            }
            Purpose::Resume(mut receive) => {
                log::info!(
                    "{} {}: PUT {:?} hashed the {} bytes held in {secs:.3}s",
                    self.shell.peer,
                    login.user(),
                    receive.intake.name(),
                    end
                );
                receive.intake.set_hasher(hasher);
                self.accept_upload(login, *receive, services)
            }
        }
    }

    pub(super) fn hashing_failed(&mut self, err: io::Error, services: &Services) {
        self.transition(|session, state| {
            let State::Hashing(login, job) = state else {
                return state;
            };
            let peer = session.shell.peer;
            let name = match job.purpose {
                Purpose::Answer { name, .. } => name,
                Purpose::Resume(receive) => {
                    let name = receive.intake.name().to_owned();
                    // A partial that cannot be read is of no use.
                    let reason = format!("reading the held bytes failed: {err}");
                    let then = Interrupted::Discarded;
                    receive
                        .intake
                        .interrupt(then, login.who(peer), &reason, services);
                    name
                }
            };
            log::error!(
                "{peer} {}: reading {name:?} to hash it failed: {err}",
                login.user()
            );
            session.fail(err, services);
            State::Idle(login)
        });
    }
}
