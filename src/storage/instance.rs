//! Which running server owns which temporary files, so that several
//! servers can share one storage root and a start never removes what a
//! live one is writing.
//!
//! Every server registers at start: it picks a random 128-bit id, creates
//! `.ferry/instances/<id>` exclusively and holds an exclusive `flock` on it
//! for as long as the process lives (the kernel drops the lock when the
//! process dies, however it dies). The names of its temporary files in
//! `.ferry/tmp/` all start with `<id>-`. An instance file whose lock can be
//! taken therefore belongs to a dead server, and only such a server's
//! temporary files are ever swept.
//!
//! Registering and sweeping happen under `.ferry/instances.lock` (also a
//! `flock`), so a sweeper never sees an instance between the creation of
//! its file and the taking of its lock. An instance's file is created
//! before any of its temporary files and removed after them. Names without
//! such a prefix come from an older ferryd, which may still be running,
//! and an id without an instance file proves nothing (someone removed the
//! file): both are reported and left alone.
//!
//! `flock` is per open file description and works across processes, PID
//! namespaces and containers on one kernel; for a root shared over the
//! network the file system must support it (NFSv4 maps it to its own
//! locks).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::sync::Arc;

use super::dir::Dir;
use crate::sys;

/// `.ferry/instances/`: one locked file per running server.
pub(super) const INSTANCES_DIR: &str = "instances";
/// `.ferry/instances.lock`: held while registering or sweeping.
const START_LOCK: &str = "instances.lock";
const LOCK_MODE: u32 = 0o600;

/// This server's registration; dropping it (at exit) releases the lock.
#[derive(Debug)]
pub(super) struct Instance {
    pub id: Arc<str>,
    /// Holds the `flock` that says "alive".
    _lock: File,
}

impl Instance {
    /// When the file system stamped this server's instance file (created
    /// at start): its clock's time then.
    pub(super) fn written(&self) -> io::Result<std::time::SystemTime> {
        self._lock.metadata()?.modified()
    }
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Swept {
    pub instances: usize,
    pub files: usize,
    /// Folders of dead servers (removed trees they had not emptied), for
    /// the caller to empty in bounded steps.
    pub folders: Vec<std::ffi::OsString>,
}

/// A fresh random 128-bit id, in hex.
pub(super) fn random_id() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    sys::random_bytes(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn is_id(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.len() == 32 && bytes.iter().all(|b| b.is_ascii_hexdigit())
}

/// The id that owns the temporary file `name`, if it is one of a
/// registered server's.
pub(super) fn owner(name: &OsStr) -> Option<&[u8]> {
    // `<32 hex digits>-...`
    let bytes = name.as_encoded_bytes();
    let id = bytes.get(..32)?;
    (bytes.get(32) == Some(&b'-') && id.iter().all(u8::is_ascii_hexdigit)).then_some(id)
}

/// Registers a new server: sweeps what dead ones left (under the start
/// lock), then creates and locks this one's instance file.
pub(super) fn register(
    private: &Dir,
    instances: &Dir,
    tmp: &Dir,
    durable: bool,
) -> io::Result<(Instance, Swept)> {
    let start = private.open_or_create(START_LOCK, LOCK_MODE)?;
    // Blocks only while another server registers or sweeps: moments.
    start.lock()?;
    let swept = sweep_locked(private, instances, tmp);
    let (id, lock) = loop {
        let id = random_id()?;
        match instances.create_new(&id, LOCK_MODE) {
            Ok(file) => break (id, file),
            // 128 random bits do not collide; but never take another's.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    };
    // Nobody else can hold it: it is new, and sweepers wait for `start`.
    lock.try_lock().map_err(io::Error::from)?;
    if durable {
        instances.sync()?;
    }
    drop(start);
    Ok((
        Instance {
            id: id.into(),
            _lock: lock,
        },
        swept,
    ))
}

/// Temporary files that no registered server (alive or dead) owns:
/// nothing proves they are free to remove.
pub(super) fn unowned(instances: &Dir, tmp: &Dir) -> usize {
    let ids = instances.names().unwrap_or_default();
    tmp.names()
        .unwrap_or_default()
        .iter()
        .filter(|name| owner(name).is_none_or(|id| !ids.iter().any(|i| i.as_encoded_bytes() == id)))
        .count()
}

/// Sweeps dead servers' files if no other server is registering or
/// sweeping right now (otherwise the next pass will).
pub(super) fn sweep(private: &Dir, instances: &Dir, tmp: &Dir) -> io::Result<Swept> {
    let start = private.open_or_create(START_LOCK, LOCK_MODE)?;
    match start.try_lock() {
        Ok(()) => Ok(sweep_locked(private, instances, tmp)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Swept::default()),
        Err(std::fs::TryLockError::Error(err)) => Err(err),
    }
}

/// With the start lock held: removes the temporary files, the upload
/// claims (`.ferry/users/<user>/claims/<id>`) and the instance file of every
/// server whose lock is free (it is dead). Nothing else: a live server's
/// files, and names that belong to no registered server, stay.
fn sweep_locked(private: &Dir, instances: &Dir, tmp: &Dir) -> Swept {
    let mut swept = Swept::default();
    let names = match instances.names() {
        Ok(names) => names,
        Err(err) => {
            log::warn!("cannot list {INSTANCES_DIR}: {err}");
            return swept;
        }
    };
    let mut dead = Vec::new();
    for name in names.into_iter().filter(|name| is_id(name)) {
        let Ok(file) = instances.open_regular(&name, false) else {
            continue;
        };
        match file.try_lock() {
            // Dead: kept locked until its files are gone.
            Ok(()) => dead.push((name, file)),
            // Alive.
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(err)) => {
                log::warn!("cannot lock instance {}: {err}", name.to_string_lossy());
            }
        }
    }
    let files = match tmp.names() {
        Ok(files) => files,
        Err(err) => {
            log::warn!("cannot list the temporary directory: {err}");
            return swept;
        }
    };
    for file in &files {
        let Some(id) = owner(file) else {
            continue;
        };
        if !dead.iter().any(|(dead, _)| dead.as_encoded_bytes() == id) {
            continue;
        }
        match tmp.remove(file) {
            Ok(()) => swept.files += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) if err.raw_os_error() == Some(libc::EISDIR) => {
                swept.folders.push(file.clone());
            }
            Err(err) => log::warn!("cannot remove {}: {err}", file.to_string_lossy()),
        }
    }
    if let Ok(users) = private.open_dir(super::USERS_DIR)
        && !dead.is_empty()
    {
        for user in users.names().unwrap_or_default() {
            let Ok(user_claims) = users
                .open_dir(&user)
                .and_then(|records| records.open_dir(super::quota::CLAIMS_DIR))
            else {
                continue;
            };
            for (id, _) in &dead {
                match user_claims.remove(id) {
                    Ok(()) => swept.files += 1,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => log::warn!("cannot remove a dead server's claims: {err}"),
                }
            }
        }
    }
    // Removed after its files, still locked.
    for (name, _lock) in dead {
        match instances.remove(&name) {
            Ok(()) => swept.instances += 1,
            Err(err) => log::warn!("cannot remove instance {}: {err}", name.to_string_lossy()),
        }
    }
    swept
}
