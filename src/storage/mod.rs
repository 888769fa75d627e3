//! Per-user file storage: the narrow interface the connection asks.
//!
//! Checked names in, open handles out. Layout under the storage root:
//!
//! ```text
//! <root>/                          0700
//!   <user>/                        0700, one per user, created on first login
//!     <name>                       0600, complete files only
//!     <folder>/<name>              folders (0700) of files, see `storage/folders.rs`
//!   .ferry/                        the server's own (usernames never start with '.')
//!     instances.lock               held while a server registers or sweeps
//!     instances/<id>               one per running server, flock-ed while it lives
//!     partial-ttl                  the partials' time to live for every server
//!                                  on the root (the last one started wrote it)
//!     tmp/<id>-*                   that server's uploads in progress and records
//!                                  being written; removed once the server is dead
//!     users/<user>/
//!       sums/<path>                SHA-256 record of <user>/<path> (folders mirrored)
//!       partial/<key>              bytes of an interrupted upload of a path
//!                                  (key: the name at the root, else \x01 and
//!                                  the SHA-256 of the path)
//!       partial-sums/<key>         saved hash state of those bytes
//!       claims/<id>                bytes and files server <id>'s running uploads
//!                                  of <user> claim (see quota.rs)
//!       props/<path>               WebDAV dead properties of the file <path>;
//!       props/<path>/\x01, props/\x01  those of the folder <path>, of the root
//! ```
//!
//! Containment: the root is opened once, by path; every other operation is
//! made relative to an open directory handle, without following symlinks:
//! a path's folder is opened beneath the user's directory (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, see
//! `storage/dir.rs`), and its last name used relative to that. A user's
//! directories are found at login, and nothing renamed or swapped in later
//! changes what the session reaches: their identities (device and inode)
//! are remembered then, and a directory opened again later (an idle
//! user's handles are not kept, see [`kept_dirs`]) must be that same
//! directory, opened beneath the server's own handle of the root (or of
//! `.ferry/users`) without following symlinks; one moved away or replaced
//! (by another directory or a symlink) is refused, never followed. Only
//! regular files are ever opened for reading or
//! writing: symlinks, directories, FIFOs, sockets and devices in a user
//! directory are refused, not listed, never followed and never opened.
//!
//! Several servers may share one root (see [`instance`]): each has a
//! random 128-bit id that starts the names of its temporary files, holds a lock on its
//! instance file while it runs, and a start or a periodic sweep removes
//! only the temporary files of servers whose lock is free (dead ones).
//! Temporary files and partials are only ever moved with
//! `RENAME_NOREPLACE`, so a move can never replace a file someone holds.
//! User directories must be on the file system of `.ferry` (uploads are
//! renamed across): the root is refused at start otherwise, and an upload
//! into a directory mounted later fails before its body is read.
//!
//! Durability: uploads never write in place. They go to a fresh file in
//! `.ferry/tmp/` (handed to the disk while it streams in, see [`Upload`]),
//! which is synced, renamed over the final name, and the directory synced,
//! before [`Storage::commit`] returns (unless fsync is off). A failure at
//! any step fails the commit and the previous version stays; a failed sync
//! is never retried into a success. An upload that is cut off is moved to
//! `partial/` instead, where a later upload of the same name can continue
//! it, until it expires. A download keeps its open handle, so a replace or
//! delete of the same name during it leaves it the complete old content.
//!
//! The SHA-256 of every stored file is kept in a sidecar record ([`record`])
//! tied to the file's identity, so asking for it costs no re-read.

mod clock;
mod dav;
mod dir;
mod folders;
mod handles;
mod instance;
mod listing;
mod partial;
mod quota;
mod record;
mod retire;
mod upload;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{DirBuilder, File, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::integrity::{Digest, Hasher};
use crate::protocol::name;
use crate::protocol::path::FilePath;

pub use dav::{DavFacts, DeadProp, MAX_DEAD_PROP_COUNT, MAX_DEAD_PROPS, PropsError, Version};
use dir::Dir;
pub use dir::EntryMeta;
pub use folders::{Copied, Copying, Facts};
use folders::{Folder, partial_key};
use instance::Instance;
pub use listing::{Listing, Step as ListingStep};
use quota::{Claims, Counts, Tally};
pub use quota::{OverQuota, PutLimits, PutRefusal, PutStarted};
pub use record::Identity;
use upload::Claim;
pub use upload::Upload;

/// Mode of the storage root and of every user directory: private to the
/// server's own user.
const DIR_MODE: u32 = 0o700;
/// Mode of stored files.
const FILE_MODE: u32 = 0o600;
/// The server's private area under the root; its name starts with `.`, which
/// no username can, so it never collides with a user directory.
const PRIVATE_DIR: &str = ".ferry";
const TMP_DIR: &str = "tmp";
const USERS_DIR: &str = "users";
const SUMS_DIR: &str = "sums";
const PARTIAL_DIR: &str = "partial";
const PARTIAL_SUMS_DIR: &str = "partial-sums";
const PROPS_DIR: &str = "props";
/// Record keys.
const SHA256_KEY: &str = "sha256";
const STATE_KEY: &str = "sha256-state";

/// The most partials the periodic expiry looks at in one turn of the
/// loop (a `stat` each, an unlink for the expired): a few milliseconds at
/// most, so sessions never wait long behind it.
const SWEEP_BUDGET: usize = 256;
/// Shortest time between two expiry passes: partials that expire close
/// together are removed by one pass, not one pass each.
const SWEEP_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// User directories kept open between commands, the most recently used:
/// a descriptor each, whatever the number of users logged in, so that an
/// idle logged-in session costs its socket and nothing more (ten thousand
/// distinct users held four handles each before). The others are opened
/// again when a command needs them (an `openat2` and an `fstat`, a few
/// microseconds); the users' record directories (`.ferry/users/<user>`)
/// are kept the same way, and the folders in them opened for the command
/// that needs them and closed after it. A 64 KiB upload looks into its
/// record directory three times and its user directory twice: opening
/// them again and checking they are the ones found at login each time was
/// 18 of the upload's 70 system calls when both were opened per command.
///
/// How many of each: a thirty-second of the open-file limit
/// `open_files`, at least [`OPEN_USER_DIRS`] user directories and
/// [`OPEN_RECORD_DIRS`] record directories, at most [`MAX_KEPT_DIRS`]
/// each. With 100 users at work and 64 and 32 kept, a third of the
/// commands opened the user directory again and two thirds the record
/// directory: 3 to 5 % of the server's CPU in the 1,000-session mix.
pub fn kept_dirs(open_files: u64) -> (usize, usize) {
    let share = usize::try_from(open_files / 32).unwrap_or(usize::MAX);
    (
        share.clamp(OPEN_USER_DIRS, MAX_KEPT_DIRS),
        share.clamp(OPEN_RECORD_DIRS, MAX_KEPT_DIRS),
    )
}

/// The fewest user directories kept open (see [`kept_dirs`]).
pub const OPEN_USER_DIRS: usize = 64;

/// The fewest record directories kept open (see [`kept_dirs`]).
pub const OPEN_RECORD_DIRS: usize = 32;

/// The most directories of each kind kept open (see [`kept_dirs`]).
pub const MAX_KEPT_DIRS: usize = 1024;

pub use handles::OPEN_FILES;

/// How long an interrupted upload is kept for resuming by default.
pub const DEFAULT_PARTIAL_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How a storage root is used.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sync uploads (data and directory) before acknowledging them, and
    /// deletes before answering them.
    pub fsync: bool,
    /// Interrupted uploads older than this (since their last byte) are
    /// removed.
    pub partial_ttl: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            fsync: true,
            partial_ttl: DEFAULT_PARTIAL_TTL,
        }
    }
}

/// Why a storage request failed. Mapped to replies in `protocol::reply`.
#[derive(Debug)]
pub enum StorageError {
    /// No file of that name.
    NotFound,
    /// The name exists but is not a regular file (symlink, directory, FIFO,
    /// device, socket): never opened, never followed.
    NotRegular,
    /// A resumed upload asked to start past the bytes held for it.
    OffsetPastHeld { offset: u64, held: u64 },
    /// A folder of the path does not exist (or is not a folder).
    NoFolder,
    /// The path names a folder where a file is needed.
    IsFolder,
    /// The path names a file where a folder is needed.
    NotFolder,
    /// A folder to remove (or replace) is not empty.
    NotEmpty,
    /// The path exists, and may not be replaced.
    Exists,
    /// A folder moved or copied into itself or beneath itself.
    IntoItself,
    /// A move or copy whose source is its destination.
    SamePath,
    /// The file system failed (disk full, permissions, I/O error).
    Io(io::Error),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("no such file"),
            StorageError::NotRegular => f.write_str("not a regular file"),
            StorageError::OffsetPastHeld { offset, held } => {
                write!(f, "offset {offset} past the {held} bytes held")
            }
            StorageError::NoFolder => f.write_str("no such folder"),
            StorageError::IsFolder => f.write_str("is a folder"),
            StorageError::NotFolder => f.write_str("not a folder"),
            StorageError::NotEmpty => f.write_str("folder not empty"),
            StorageError::Exists => f.write_str("already exists"),
            StorageError::IntoItself => f.write_str("cannot move or copy a folder into itself"),
            StorageError::SamePath => f.write_str("source and destination are the same"),
            StorageError::Io(err) => write!(f, "{err}"),
        }
    }
}

impl From<io::Error> for StorageError {
    fn from(err: io::Error) -> StorageError {
        match err.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound,
            // A symlink met by O_NOFOLLOW or RESOLVE_NO_SYMLINKS.
            _ if err.raw_os_error() == Some(libc::ELOOP) => StorageError::NotRegular,
            _ => StorageError::Io(err),
        }
    }
}

/// One file or folder in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name, or in a recursive listing the path relative to the
    /// listed folder.
    pub name: String,
    /// A folder (its size is 0).
    pub folder: bool,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// What tells this version of the file from others (the ETag).
    pub version: Version,
}

/// The storage root. Several servers may share it (see the module docs).
///
/// Every operation is made relative to an open directory handle: the root
/// is opened once, by path, at start; everything below it, by single names
/// relative to handles (see `storage/dir.rs`).
#[derive(Debug)]
pub struct Storage {
    path: PathBuf,
    root: Arc<Dir>,
    /// `.ferry`.
    private: Dir,
    /// `.ferry/tmp`, shared with every upload (which removes its file from
    /// it when dropped). Opened again if an operator replaced it.
    tmp: RefCell<Arc<Dir>>,
    /// `.ferry/users`.
    users: Arc<Dir>,
    /// The user directories kept open ([`kept_dirs`]).
    open_dirs: RefCell<OpenDirs>,
    /// The users' record directories kept open ([`kept_dirs`]).
    open_records: RefCell<OpenDirs>,
    /// Small files kept open between downloads ([`OPEN_FILES`]).
    open_files: RefCell<handles::OpenFiles>,
    /// `.ferry/instances`.
    instances: Dir,
    /// This server's registration: its id and the lock that says it lives.
    instance: Instance,
    options: Options,
    next_tmp: Cell<u64>,
    /// The logged-in users, shared by their sessions.
    user_dirs: RefCell<HashMap<Arc<str>, Weak<UserDirs>>>,
    /// The size of `user_dirs` at which it is next pruned.
    user_dirs_pruned_at: Cell<usize>,
    /// Every user's running usage counts, kept across logins.
    tallies: RefCell<HashMap<Arc<str>, Arc<Tally>>>,
    /// The periodic expiry of partials.
    sweep: RefCell<Sweep>,
    /// The file system's clock and the root's partial TTL.
    clock: clock::Clock,
    /// Removed trees still to empty (see `storage/folders.rs`).
    trash: RefCell<Vec<folders::Trash>>,
    /// Large files being freed a step at a time (see `storage/retire.rs`).
    retiring: RefCell<retire::Retiring>,
}

/// Where the periodic expiry of partials is: a pass visits every user's
/// partials, [`SWEEP_BUDGET`] of them per turn.
#[derive(Debug)]
struct Sweep {
    /// When the next pass starts (or the current one continues): when the
    /// first partial this server knows of expires. `None` while it knows
    /// of none, so an idle server with no partials never wakes for this.
    next: Option<Instant>,
    /// The first expiry among the live partials this pass has seen.
    earliest: Option<Instant>,
    /// Users still to visit in this pass.
    users: Vec<OsString>,
    /// The user being visited, their partial and partial-sums
    /// directories, and the names still to look at.
    current: Option<(String, Dir, Option<Dir>, Vec<OsString>)>,
    /// A pass is running.
    running: bool,
}

/// A user's private directory and the server's records about it, handed
/// out after login: which directories they are (not open handles, which
/// would cost descriptors per idle user), so that a rename of anything
/// cannot redirect what a session reaches (see `reopen_same`).
#[derive(Debug, Clone)]
pub struct UserDir {
    inner: Arc<UserDirs>,
}

/// A directory's identity: device and inode.
type DirId = (u64, u64);

#[derive(Debug)]
struct UserDirs {
    /// Shared with the maps below and the claims (one allocation a user).
    user: Arc<str>,
    /// `<root>/<user>` and `.ferry/users/<user>` (which holds `sums`,
    /// `partial`, `partial-sums`) as found at login.
    files: DirId,
    records: DirId,
    /// What this user's running uploads claim against the quota.
    claims: Claims,
    /// What the user stores, as running counts.
    tally: Arc<Tally>,
    /// The user directory is on another file system than this server's
    /// temporary directory (mounted there): uploads cannot be renamed
    /// into it, so they are refused before their body is read.
    foreign: Option<String>,
}

/// What a user stores and holds, as the quota counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Regular files, partials of interrupted uploads, and the claims of
    /// uploads in progress.
    pub bytes: u64,
    /// Regular files, and uploads in progress to names that were new.
    pub files: u64,
}

/// Directories kept open, the most recently used (see [`kept_dirs`]).
#[derive(Debug)]
struct OpenDirs {
    capacity: usize,
    /// Each with when it was last used (`clock`).
    dirs: HashMap<DirId, (Arc<Dir>, u64)>,
    clock: u64,
}

impl OpenDirs {
    fn new(capacity: usize) -> OpenDirs {
        OpenDirs {
            capacity,
            dirs: HashMap::new(),
            clock: 0,
        }
    }

    fn get(&mut self, id: DirId) -> Option<Arc<Dir>> {
        self.clock += 1;
        let (dir, used) = self.dirs.get_mut(&id)?;
        *used = self.clock;
        Some(Arc::clone(dir))
    }

    fn keep(&mut self, id: DirId, dir: &Arc<Dir>) {
        self.dirs.remove(&id);
        if self.capacity == 0 {
            return;
        }
        if self.dirs.len() >= self.capacity {
            // The eighth used least recently is closed at once (nobody
            // else holds these between commands), so that a server with
            // more users at work than it keeps does not look through all
            // of them at every open.
            let excess = (self.dirs.len() + 1 - self.capacity).max(self.capacity / 8);
            let mut used: Vec<u64> = self.dirs.values().map(|(_, used)| *used).collect();
            let (_, &mut newest_closed, _) = used.select_nth_unstable(excess - 1);
            self.dirs.retain(|_, (_, used)| *used > newest_closed);
        }
        self.clock += 1;
        self.dirs.insert(id, (Arc::clone(dir), self.clock));
    }
}

/// Opens `name` beneath `parent` again (no symlink followed, never outside
/// `parent`) and checks that it is the directory `id` found at login:
/// one moved away, or replaced by another directory (or a symlink), is
/// refused, so a session never reaches anything but its own directory.
/// (Only a directory deleted and another created under the same name
/// with the very inode number it had could pass, and that is the same
/// user's name under the root all the same.)
fn reopen_same(parent: &Dir, name: &str, id: DirId, path: &Path) -> io::Result<Dir> {
    let moved = || {
        io::Error::other(format!(
            "{} was moved or replaced since the login",
            path.display()
        ))
    };
    let dir = parent.open_dir(name).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => moved(),
        _ => err,
    })?;
    let meta = dir.metadata()?;
    if (meta.dev(), meta.ino()) != id {
        return Err(moved());
    }
    Ok(dir)
}

impl UserDirs {
    fn usage(&self, counts: Counts) -> Usage {
        Usage {
            bytes: counts.stored + counts.partial + self.claims.bytes(),
            files: counts.files + self.claims.files(),
        }
    }
}

impl UserDir {
    /// The user whose directory this is.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    #[cfg(test)]
    fn file(&self, storage: &Storage, name: &str) -> PathBuf {
        storage.path.join(&*self.inner.user).join(name)
    }
}

/// What [`Storage::hash_lookup`] found.
#[derive(Debug)]
pub enum HashLookup {
    /// The digest recorded when the file was stored.
    Recorded(Digest),
    /// No record (the file arrived some other way): read it to hash it.
    ToRead {
        file: File,
        size: u64,
        identity: Identity,
    },
}

/// A continued upload: the claimed partial, cut to the requested offset,
/// and the hash state of its bytes when it was saved for exactly that
/// offset (otherwise the caller hashes the first `offset` bytes again).
#[derive(Debug)]
pub struct Resumed {
    pub upload: Upload,
    pub hasher: Option<Hasher>,
}

impl Storage {
    /// Opens (and creates, mode 0700) the storage root, registers this
    /// server in it, removes the temporary files of servers that died
    /// (never those of a live one), and removes interrupted uploads that
    /// have expired. Fails, saying which, if a user directory is on
    /// another file system than `.ferry`.
    pub fn open(root: &Path, options: Options) -> io::Result<Storage> {
        let created = !root.is_dir();
        if created {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(root)?;
        }
        let root_dir = Dir::open_path(root)?;
        if created {
            // 0700 whatever the umask; a root that already existed keeps
            // the mode its owner gave it.
            root_dir.set_mode(DIR_MODE)?;
        }
        let durable = options.fsync;
        let private = root_dir.ensure_dir(PRIVATE_DIR, DIR_MODE, durable)?;
        let tmp = private.ensure_dir(TMP_DIR, DIR_MODE, durable)?;
        let users = private.ensure_dir(USERS_DIR, DIR_MODE, durable)?;
        let instances = private.ensure_dir(instance::INSTANCES_DIR, DIR_MODE, durable)?;
        check_same_file_system(root, &root_dir, &tmp, &users)?;
        let (instance, swept) = instance::register(&private, &instances, &tmp, durable)?;
        if swept.instances > 0 || swept.files > 0 {
            log::info!(
                "removed {} temporary upload file(s) of {} stopped server(s)",
                swept.files,
                swept.instances
            );
        }
        report_unowned_tmp_files(root, &instances, &tmp);
        let clock = clock::Clock::new(options.partial_ttl);
        // The instance file is fresh: its time is the file system's now.
        if let Ok(written) = instance.written() {
            clock.observe(written, SystemTime::now());
        }
        clock::publish_ttl(&private, options.partial_ttl)?;
        let left_folders = swept.folders;
        let keep_files = root_dir.fs_type().is_ok_and(handles::coherent);
        let (kept_users, kept_records) =
            kept_dirs(crate::config::open_file_limit().unwrap_or(1024));
        let storage = Storage {
            path: root.to_path_buf(),
            root: Arc::new(root_dir),
            private,
            tmp: RefCell::new(Arc::new(tmp)),
            users: Arc::new(users),
            open_dirs: RefCell::new(OpenDirs::new(kept_users)),
            open_records: RefCell::new(OpenDirs::new(kept_records)),
            open_files: RefCell::new(handles::OpenFiles::new(keep_files)),
            instances,
            instance,
            options,
            next_tmp: Cell::new(0),
            user_dirs: RefCell::new(HashMap::new()),
            user_dirs_pruned_at: Cell::new(64),
            tallies: RefCell::new(HashMap::new()),
            sweep: RefCell::new(Sweep {
                next: Some(Instant::now()),
                earliest: None,
                users: Vec::new(),
                current: None,
                running: false,
            }),
            clock,
            trash: RefCell::new(Vec::new()),
            retiring: RefCell::new(retire::Retiring::default()),
        };
        // The first pass, whole, before serving.
        let expired = storage.sweep_partials(usize::MAX);
        if expired > 0 {
            log::info!("removed {expired} expired partial upload(s)");
        }
        // Emptied in housekeeping, a bounded number of entries a turn.
        for folder in left_folders {
            storage.queue_trash(folder, None);
        }
        Ok(storage)
    }

    pub fn root(&self) -> &Path {
        &self.path
    }

    /// This server's id among the servers sharing the root.
    pub fn instance_id(&self) -> &str {
        &self.instance.id
    }

    /// When [`Storage::housekeeping`] next has work.
    pub fn next_housekeeping(&self) -> Option<Instant> {
        // A removed tree being emptied: every turn, a step at a time.
        if self.has_trash() {
            return Some(Instant::now());
        }
        let sweep = self.sweep.borrow().next;
        match (sweep, self.next_retire_step()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Empties removed trees (a bounded number of entries per call),
    /// removes expired partials (a bounded number per call) and, once per
    /// pass, the temporary files of servers sharing the root that died.
    /// Called by the event loop when [`Storage::next_housekeeping`] comes.
    pub fn housekeeping(&self, now: Instant) {
        self.empty_trash(folders::TRASH_BUDGET);
        self.retire_step(now);
        if self.sweep.borrow().next.is_none_or(|next| now < next) {
            return;
        }
        let expired = self.sweep_partials(SWEEP_BUDGET);
        if expired > 0 {
            log::info!("removed {expired} expired partial upload(s)");
        }
    }

    /// The temporary directory.
    fn tmp(&self) -> Arc<Dir> {
        Arc::clone(&self.tmp.borrow())
    }

    /// Creates a fresh temporary file. If that fails because the directory
    /// the server holds is no longer `.ferry/tmp` (an operator removed or
    /// replaced it), the new one is opened and tried once more.
    fn create_tmp(&self, kind: &str) -> io::Result<(Arc<Dir>, String, File)> {
        let tmp_name = self.tmp_name(kind);
        let tmp = self.tmp();
        let err = match tmp.create_new(&tmp_name, FILE_MODE) {
            Ok(file) => return Ok((tmp, tmp_name, file)),
            Err(err) => err,
        };
        let held = tmp.metadata()?;
        let replaced = match self.private.stat(TMP_DIR) {
            Ok(now) => (now.dev(), now.ino()) != (held.dev(), held.ino()),
            Err(_) => true,
        };
        if !replaced {
            return Err(err);
        }
        let fresh = Arc::new(
            self.private
                .ensure_dir(TMP_DIR, DIR_MODE, self.options.fsync)?,
        );
        log::warn!("{TMP_DIR} was replaced; using the new one");
        *self.tmp.borrow_mut() = Arc::clone(&fresh);
        let file = fresh.create_new(&tmp_name, FILE_MODE)?;
        Ok((fresh, tmp_name, file))
    }

    /// A fresh name in the temporary directory, unique across servers
    /// sharing the root, hosts and PID namespaces: it starts with this
    /// server's random 128-bit id (which only this server uses), and is
    /// created with `O_EXCL` all the same.
    fn tmp_name(&self, kind: &str) -> String {
        let serial = self.next_tmp.get();
        self.next_tmp.set(serial + 1);
        format!("{}-{kind}-{serial}", self.instance.id)
    }

    /// The directory of `user` (a valid username), created mode 0700 on
    /// first use, with the server's record directories for it. Sessions of
    /// the same user share one [`UserDir`] (and so the claims of their
    /// uploads); it holds no descriptor (see [`kept_dirs`]).
    pub fn user_dir(&self, user: &str) -> io::Result<UserDir> {
        if let Some(inner) = self.cached_user_dir(user) {
            return Ok(UserDir { inner });
        }
        let durable = self.options.fsync;
        let files = self.root.ensure_dir(user, DIR_MODE, durable)?;
        let records = self.users.ensure_dir(user, DIR_MODE, durable)?;
        let partial = records.ensure_dir(PARTIAL_DIR, DIR_MODE, durable)?;
        let held = files.metadata()?;
        let tmp_mount = self.tmp().mount()?;
        let foreign = [files.mount()?, partial.mount()?]
            .into_iter()
            .any(|mount| mount != tmp_mount)
            .then(|| cross_device_message(&self.path.join(user), &self.path));
        let user: Arc<str> = Arc::from(user);
        if let Some(message) = &foreign {
            log::error!("{message}");
        }
        let of = (held.dev(), held.ino());
        let tally = {
            let mut tallies = self.tallies.borrow_mut();
            match tallies.get(&*user) {
                Some(tally) if tally.of == of && tally.fresh() => Arc::clone(tally),
                _ => {
                    let tally = Arc::new(Tally::new(of));
                    tallies.insert(Arc::clone(&user), Arc::clone(&tally));
                    tally
                }
            }
        };
        records.ensure_dir(SUMS_DIR, DIR_MODE, durable)?;
        records.ensure_dir(PARTIAL_SUMS_DIR, DIR_MODE, durable)?;
        records.ensure_dir(PROPS_DIR, DIR_MODE, durable)?;
        let records_held = records.metadata()?;
        // Kept open for the commands a login is usually followed by; the
        // record directories close here.
        self.open_dirs.borrow_mut().keep(of, &Arc::new(files));
        let inner = Arc::new(UserDirs {
            user: Arc::clone(&user),
            files: of,
            records: (records_held.dev(), records_held.ino()),
            claims: self.claims_for(&user)?,
            tally,
            foreign,
        });
        let mut cache = self.user_dirs.borrow_mut();
        // Entries of users with no session left are pruned once the map
        // has doubled since the last pruning: amortised O(1) a login,
        // where a scan at each new user's login was O(users).
        if cache.len() >= self.user_dirs_pruned_at.get() {
            cache.retain(|_, dirs| dirs.strong_count() > 0);
            self.user_dirs_pruned_at.set((2 * cache.len()).max(64));
        }
        cache.insert(user, Arc::downgrade(&inner));
        Ok(UserDir { inner })
    }

    /// The handles a session of `user` already holds, if the name still
    /// leads to that same directory (an operator may have moved it).
    fn cached_user_dir(&self, user: &str) -> Option<Arc<UserDirs>> {
        let inner = self.user_dirs.borrow().get(user)?.upgrade()?;
        let named = self.root.stat(user).ok()?;
        let same = named.file_type().is_dir() && (named.dev(), named.ino()) == inner.files;
        same.then_some(inner)
    }

    /// The user's directory, from those kept open, or else opened again
    /// beneath the root and checked to be the one found at login (see
    /// [`reopen_same`]): a session whose directory was moved away or
    /// replaced since gets an error, never another directory.
    fn files(&self, dir: &UserDir) -> io::Result<Arc<Dir>> {
        let id = dir.inner.files;
        if let Some(files) = self.open_dirs.borrow_mut().get(id) {
            return Ok(files);
        }
        let files = Arc::new(reopen_same(
            &self.root,
            &dir.inner.user,
            id,
            &self.path.join(&*dir.inner.user),
        )?);
        self.open_dirs.borrow_mut().keep(id, &files);
        Ok(files)
    }

    /// One of the user's record directories (`sums`, `partial`,
    /// `partial-sums`), opened for the command that needs it beneath
    /// `.ferry/users/<user>`, which must be the one found at login: from
    /// those kept open ([`kept_dirs`]), or else opened again and
    /// checked (see [`reopen_same`]).
    fn records(&self, dir: &UserDir, which: &str) -> io::Result<Dir> {
        self.records_root(dir)?.open_dir(which)
    }

    /// `.ferry/users/<user>` itself (see [`Storage::records`]): a record
    /// is looked up beneath it as `<which>/<key>` in one `openat2`, which
    /// follows no symlink in either name, where opening `<which>` first
    /// would take an open and a close more.
    fn records_root(&self, dir: &UserDir) -> io::Result<Arc<Dir>> {
        let id = dir.inner.records;
        let kept = self.open_records.borrow_mut().get(id);
        let records = match kept {
            Some(records) => records,
            None => {
                let user: &str = &dir.inner.user;
                let path = self.path.join(PRIVATE_DIR).join(USERS_DIR).join(user);
                let records = Arc::new(reopen_same(&self.users, user, id, &path)?);
                self.open_records.borrow_mut().keep(id, &records);
                records
            }
        };
        Ok(records)
    }

    /// The user's regular files a batch at a time, in directory order
    /// (see [`Listing`]): what `LIST` and the HTTP listing send, with a
    /// small buffer whatever the size of the directory.
    pub fn listing(&self, dir: &UserDir) -> Result<Listing, StorageError> {
        let files = self.files(dir)?;
        Listing::new(files.reopen()?, false)
    }

    /// The user's regular files, sorted by name (byte order). Names that
    /// break the rules and anything that is not a regular file are left out.
    pub fn list(&self, dir: &UserDir) -> Result<Vec<Entry>, StorageError> {
        let files = self.files(dir)?;
        let mut entries = Vec::new();
        for name in files.names()? {
            let Some(name) = name.to_str() else {
                continue;
            };
            if !name::is_valid(name) {
                continue;
            }
            let meta = match files.entry(name) {
                Ok(meta) => meta,
                // Gone meanwhile.
                Err(StorageError::NotFound | StorageError::NotRegular) => continue,
                Err(err) => return Err(err),
            };
            if meta.is_file {
                entries.push(Entry {
                    name: name.to_owned(),
                    folder: false,
                    size: meta.len,
                    mtime: meta.mtime,
                    version: meta.version(),
                });
            }
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The size of `name` if it is a regular file now, else `None`.
    pub fn size_of(&self, dir: &UserDir, name: FilePath<'_>) -> Option<u64> {
        // One fstatat (Dir::entry), not an O_PATH open, fstat and close:
        // nothing is opened, so nothing needs checking before it is.
        self.folder_of(dir, name)
            .ok()?
            .entry(name.leaf().as_str())
            .ok()
            .filter(|meta| meta.is_file)
            .map(|meta| meta.len)
    }

    /// Opens a regular file for reading and returns it with its metadata
    /// (size, modification time) at the moment of opening.
    pub fn open_read(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
    ) -> Result<(File, Metadata), StorageError> {
        let folder = self.folder_of(dir, name)?;
        let leaf = name.leaf().as_str();
        folder
            .open_regular_read(leaf)
            .map_err(|err| is_folder(&folder, leaf, err))
    }

    /// [`Storage::open_read`] for a download, with what a response says
    /// of the file. A small file downloaded again is served from a handle
    /// kept since, while its name still leads to that same unchanged
    /// inode (one `fstatat` instead of five calls; see
    /// `storage/handles.rs`); the containment is that of `open_read`.
    pub fn open_download(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
    ) -> Result<(Arc<File>, EntryMeta), StorageError> {
        let folder = self.folder_of(dir, name)?;
        let leaf = name.leaf().as_str();
        let user = dir.inner.files;
        let kept = self.open_files.borrow_mut().get(user, name.as_str());
        if let Some((stamp, file)) = kept {
            if let Ok((meta, now)) = folder.entry_stamped(leaf)
                && now == stamp
            {
                return Ok((file, meta));
            }
            self.open_files.borrow_mut().forget(user, name.as_str());
        }
        let (file, meta) = folder
            .open_regular_read(leaf)
            .map_err(|err| is_folder(&folder, leaf, err))?;
        let file = Arc::new(file);
        if meta.len() <= handles::SMALL_FILE {
            let stamp = handles::Stamp::of(&meta);
            self.open_files
                .borrow_mut()
                .keep(user, name.as_str(), stamp, &file);
        }
        Ok((file, EntryMeta::of(&meta)))
    }

    /// What `HASH` needs, in one call: the recorded SHA-256 of `name` if
    /// the record still describes the file, else the file opened to read
    /// and hash, with its size and identity at the moment of opening (a
    /// digest is recorded only if the file has not changed since).
    pub fn hash_lookup(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
    ) -> Result<HashLookup, StorageError> {
        let (file, meta) = self.open_read(dir, name)?;
        let identity = Identity::of_file(&file)?;
        if let Some(sha256) = self.stored_digest(dir, name, &file) {
            return Ok(HashLookup::Recorded(sha256));
        }
        Ok(HashLookup::ToRead {
            file,
            size: meta.len(),
            identity,
        })
    }

    /// The recorded SHA-256 of `file` (opened from `name`), if the record
    /// still describes it.
    pub fn stored_digest(&self, dir: &UserDir, name: FilePath<'_>, file: &File) -> Option<Digest> {
        let identity = Identity::of_file(file).ok()?;
        let sums = self.sums_of(dir, name, false)?;
        let hex = record::read(&sums, name.leaf().as_str(), &identity, SHA256_KEY)?;
        Digest::from_hex(hex.as_bytes())
    }

    /// Records the SHA-256 of the file `name` had the identity `identity`,
    /// so the next request need not read it. Best effort: a failure only
    /// costs a re-read later.
    pub fn remember_digest(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
        identity: &Identity,
        sha256: Digest,
    ) {
        self.record_digest(dir, name, identity, sha256);
    }

    fn record_digest(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
        identity: &Identity,
        sha256: Digest,
    ) {
        let value = sha256.to_string();
        // A file in the user's root: `sums/<name>` opened beneath the kept
        // records directory in one call (see `Storage::records_root`).
        let direct = match (name.single(), self.records_root(dir)) {
            (Some(leaf), Ok(records)) => {
                let path = format!("{SUMS_DIR}/{}", leaf.as_str());
                record::write(&records, &path, identity, SHA256_KEY, &value).is_ok()
            }
            _ => false,
        };
        if direct {
            return;
        }
        let Some(sums) = self.sums_of(dir, name, true) else {
            log::warn!("cannot record the digest of {name}: no record folder");
            return;
        };
        let written = record::write(&sums, name.leaf().as_str(), identity, SHA256_KEY, &value);
        if let Err(err) = written {
            let path = self.path.join(&*dir.inner.user).join(name.as_str());
            log::warn!("cannot record the digest of {}: {err}", path.display());
        }
    }

    /// Checks that `name` can receive an upload: in a folder that exists,
    /// absent or a regular file. Returns whether the name is new, and the
    /// folder.
    /// The size of the regular file `name` replaces (`None`: the name is
    /// new), one `fstatat`.
    fn check_target(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
    ) -> Result<(Option<u64>, Folder), StorageError> {
        let folder = self.folder_of(dir, name)?;
        match folder.entry(name.leaf().as_str()) {
            Ok(meta) if meta.is_dir => Err(StorageError::IsFolder),
            Ok(meta) if !meta.is_file => Err(StorageError::NotRegular),
            Ok(meta) => Ok((Some(meta.len), folder)),
            Err(StorageError::NotFound) => Ok((None, folder)),
            Err(err) => Err(err),
        }
    }

    /// Starts an upload to `name`. Nothing under `name` changes until
    /// [`Storage::commit`].
    pub fn begin_upload(&self, dir: &UserDir, name: FilePath<'_>) -> Result<Upload, StorageError> {
        self.start_upload(dir, name, 0)
    }

    /// [`Storage::begin_upload`], claiming `claim` bytes from the start.
    fn start_upload(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
        claim: u64,
    ) -> Result<Upload, StorageError> {
        let (replaced, folder) = self.check_target(dir, name)?;
        cross_device(dir)?;
        let (tmp, tmp_name, file) = self.create_tmp("upload").map_err(StorageError::Io)?;
        let held = folder.into_held();
        let fsync = self.options.fsync;
        let claim = Claim {
            bytes: claim,
            new_name: replaced.is_none(),
        };
        let mut upload = Upload::new(file, &tmp, tmp_name, 0, dir, held, name, fsync, claim);
        upload.retire_via(self.retiring.borrow().dropped());
        // Placing it replaces the file and supersedes the partial.
        let held = self.partial_len(dir, name).unwrap_or(0);
        upload.give_back(replaced.unwrap_or(0).saturating_add(held));
        Ok(upload)
    }

    /// Continues the interrupted upload of `name` from byte `offset`: the
    /// partial is taken out of `partial/` (so no other session continues
    /// it at the same time) and cut to `offset`. `offset` 0 with no
    /// partial is a fresh upload.
    pub fn resume_upload(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
        offset: u64,
    ) -> Result<Resumed, StorageError> {
        self.continue_upload(dir, name, offset, 0)
    }

    /// [`Storage::resume_upload`], claiming `claim` bytes from the start.
    fn continue_upload(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
        offset: u64,
        claim: u64,
    ) -> Result<Resumed, StorageError> {
        let (replaced, folder) = self.check_target(dir, name)?;
        let key = partial_key(name);
        cross_device(dir)?;
        let held = self.partial(dir, name)?;
        let held_len = held.as_ref().map_or(0, |meta| meta.len());
        if offset > held_len {
            return Err(StorageError::OffsetPastHeld {
                offset,
                held: held_len,
            });
        }
        let Some(held) = held else {
            return Ok(Resumed {
                upload: self.start_upload(dir, name, claim)?,
                hasher: Some(Hasher::new()),
            });
        };
        // The saved hash state is read before the partial moves, because
        // the move changes its change time.
        let before = Identity::of(&held);
        let partial = self.records(dir, PARTIAL_DIR)?;
        let partial_sums = self.records(dir, PARTIAL_SUMS_DIR)?;
        let saved = record::read(&partial_sums, &key, &before, STATE_KEY)
            .and_then(|hex| hex::decode(hex).ok())
            .and_then(|bytes| Hasher::restore(&bytes))
            .filter(|hasher| hasher.len() == held_len && offset == held_len);
        let tmp = self.tmp();
        let tmp_name = self.tmp_name("upload");
        // Never over an existing file: the name is this server's own, but
        // a move must not be able to replace anything, whatever happened.
        match partial.rename_noreplace(&key, &tmp, &tmp_name) {
            Ok(()) => {}
            // Another session (or server) took it a moment ago.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::OffsetPastHeld { offset, held: 0 });
            }
            Err(err) => return Err(StorageError::Io(err)),
        }
        dir.inner
            .tally
            .change(|c| c.partial = c.partial.saturating_sub(held_len));
        record::remove(&partial_sums, &key);
        drop((partial, partial_sums));
        let file = match tmp.open_regular(&tmp_name, true) {
            Ok(file) => file,
            Err(err) => {
                record::remove(&tmp, &tmp_name);
                return Err(err);
            }
        };
        // From here on, dropping the upload removes the claimed file.
        let fsync = self.options.fsync;
        let held = folder.into_held();
        let claim = Claim {
            bytes: claim,
            new_name: replaced.is_none(),
        };
        let mut upload = Upload::new(file, &tmp, tmp_name, offset, dir, held, name, fsync, claim);
        upload.retire_via(self.retiring.borrow().dropped());
        let claimed = Identity::of_file(upload.file())?;
        if claimed.size() < offset {
            // Replaced by a shorter partial between the look and the move
            // (another server): cutting would add zeros. It goes back.
            self.keep_partial(upload, None);
            return Err(StorageError::OffsetPastHeld {
                offset,
                held: claimed.size(),
            });
        }
        let hasher = saved.filter(|_| claimed.same_inode(&before) && claimed.size() == held_len);
        upload.cut_to(offset)?;
        upload.give_back(replaced.unwrap_or(0));
        Ok(Resumed { upload, hasher })
    }

    /// Puts a complete upload in place: sync its data (unless fsync is off),
    /// rename it over the final name, record its digest, sync the directory,
    /// all before returning, so that a success is durable. If the data sync
    /// or the rename fails, the temporary file is removed and the final
    /// name is unchanged. If only the directory sync fails, the name
    /// already holds the complete new file, but the call still fails: the
    /// client is never told an upload is safe that may not be. A partial of
    /// the same name is superseded and removed.
    pub fn commit(&self, upload: Upload, sha256: Digest) -> io::Result<()> {
        let (dir, name, held) = upload.target();
        let folder = self.held_folder(dir, held)?;
        let replaced = folder
            .entry(name.leaf().as_str())
            .ok()
            .filter(|meta| meta.is_file);
        let len = upload.len();
        if let Some(old) = &replaced {
            self.retire(&folder, name.leaf().as_str(), old.len);
        }
        let (file, dir, name) = upload.into_place(&folder, self.options.fsync)?;
        let name = name.as_path();
        self.open_files
            .borrow_mut()
            .forget(dir.inner.files, name.as_str());
        dir.inner.tally.change(|c| {
            c.stored = (c.stored + len).saturating_sub(replaced.map_or(0, |meta| meta.len));
            c.files += u64::from(replaced.is_none());
        });
        match record::settled(file, &folder, name.leaf().as_str()) {
            Ok(identity) => self.record_digest(&dir, name, &identity, sha256),
            Err(err) => log::warn!("cannot record the digest of {name:?}: {err}"),
        }
        self.discard_partial(&dir, name);
        if self.options.fsync {
            folder.sync()?;
        }
        Ok(())
    }

    /// Removes a regular file's name (other hard links and open handles keep
    /// the data) and returns the size it had. With fsync on, the removal is
    /// durable when this returns.
    pub fn delete(&self, dir: &UserDir, name: FilePath<'_>) -> Result<u64, StorageError> {
        let files = self.folder_of(dir, name)?;
        let leaf = name.leaf().as_str();
        let meta = files.stat(leaf)?;
        if meta.is_dir() {
            return Err(StorageError::IsFolder);
        }
        if !meta.file_type().is_file() {
            return Err(StorageError::NotRegular);
        }
        // unlinkat removes a name, whatever it is by now: even if it was
        // swapped for something else since the check, nothing is followed
        // (and a folder is never removed: EISDIR).
        self.remove_file(&files, leaf, meta.len())?;
        self.open_files
            .borrow_mut()
            .forget(dir.inner.files, name.as_str());
        dir.inner.tally.change(|c| {
            c.stored = c.stored.saturating_sub(meta.len());
            c.files = c.files.saturating_sub(1);
        });
        if let Some(sums) = self.sums_of(dir, name, false) {
            record::remove(&sums, leaf);
        }
        self.forget_dead_props(dir, name, false);
        if self.options.fsync {
            files.sync()?;
        }
        Ok(meta.len())
    }
}

/// A folder where a file was wanted is [`StorageError::IsFolder`], not
/// just "not a regular file".
fn is_folder(folder: &Dir, leaf: &str, err: StorageError) -> StorageError {
    match err {
        StorageError::NotRegular if folder.entry(leaf).is_ok_and(|meta| meta.is_dir) => {
            StorageError::IsFolder
        }
        other => other,
    }
}

/// Refuses an upload into a user directory that is on another file
/// system than the temporary directory, before any byte is received.
fn cross_device(dir: &UserDir) -> Result<(), StorageError> {
    match &dir.inner.foreign {
        Some(message) => Err(StorageError::Io(io::Error::new(
            io::ErrorKind::CrossesDevices,
            message.clone(),
        ))),
        None => Ok(()),
    }
}

fn cross_device_message(dir: &Path, root: &Path) -> String {
    format!(
        "{} is on another mount than {} (a bind mount or another file system): \
         uploads are written in the latter and renamed into place, which cannot \
         cross mounts; mount the whole storage root instead",
        dir.display(),
        root.join(PRIVATE_DIR).join(TMP_DIR).display()
    )
}

/// Refuses a root where `.ferry/users` or an existing user directory is
/// on another mount than `.ferry/tmp` (a bind mount of the same file
/// system counts: `rename` fails across mounts all the same): every upload
/// there would fail only after its whole body was received.
fn check_same_file_system(path: &Path, root: &Dir, tmp: &Dir, users: &Dir) -> io::Result<()> {
    let mount = tmp.mount()?;
    let foreign = |message: String| io::Error::new(io::ErrorKind::CrossesDevices, message);
    if users.mount()? != mount {
        let dir = path.join(PRIVATE_DIR).join(USERS_DIR);
        return Err(foreign(cross_device_message(&dir, path)));
    }
    for name in root.names()? {
        // Only what can be a user's directory (not lost+found, say).
        if !crate::auth::is_valid_username(name.as_encoded_bytes()) {
            continue;
        }
        let Ok(dir) = root.open_dir(&name) else {
            // Not a directory (or a symlink): never a user directory.
            continue;
        };
        if dir.mount()? != mount {
            return Err(foreign(cross_device_message(&path.join(&name), path)));
        }
    }
    Ok(())
}

/// Files in `.ferry/tmp` that no registered server owns come from an
/// older ferryd (or someone removed an instance file): nothing says
/// whether their owner still runs, so they are reported, never removed.
fn report_unowned_tmp_files(root: &Path, instances: &Dir, tmp: &Dir) {
    let unowned = instance::unowned(instances, tmp);
    if unowned > 0 {
        log::warn!(
            "{unowned} file(s) in {} belong to no registered server (an older ferryd?); \
             remove them once no such server uses this root",
            root.join(PRIVATE_DIR).join(TMP_DIR).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quota::RESYNC_AFTER;
    use std::fs;
    use std::io::Read;

    fn name(raw: &str) -> FilePath<'_> {
        crate::protocol::path::validate(raw.as_bytes()).unwrap()
    }

    fn no_fsync() -> Options {
        Options {
            fsync: false,
            ..Options::default()
        }
    }

    fn setup() -> (tempfile::TempDir, Storage, UserDir) {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::open(root.path(), no_fsync()).unwrap();
        let dir = storage.user_dir("alice").unwrap();
        (root, storage, dir)
    }

    fn tmp_is_empty(storage: &Storage) -> bool {
        storage.tmp().names().unwrap().is_empty()
    }

    #[test]
    fn uploads_in_progress_and_partials_count_in_usage_until_they_end() {
        let (_root, storage, dir) = setup();
        let usage = |bytes, files| Usage { bytes, files };
        assert_eq!(storage.usage(&dir).unwrap(), usage(0, 0));
        let mut upload = storage.begin_upload(&dir, name("a")).unwrap();
        upload.claim(100);
        assert_eq!(storage.usage(&dir).unwrap(), usage(100, 1));
        // Past the claim, what was written counts.
        upload.write(&[7; 150]).unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(150, 1));
        // A partial counts its bytes, not a file.
        storage.keep_partial(upload, None);
        assert_eq!(storage.usage(&dir).unwrap(), usage(150, 0));
        // Continued, the claim covers the whole file; placed, the file.
        let mut upload = storage.resume_upload(&dir, name("a"), 100).unwrap().upload;
        upload.claim(120);
        assert_eq!(storage.usage(&dir).unwrap(), usage(120, 1));
        upload.write(&[8; 20]).unwrap();
        storage.commit(upload, Digest::of(b"any")).unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(120, 1));
        // A dropped upload gives everything back.
        let mut upload = storage.begin_upload(&dir, name("b")).unwrap();
        upload.claim(1000);
        assert_eq!(storage.usage(&dir).unwrap(), usage(1120, 2));
        drop(upload);
        assert_eq!(storage.usage(&dir).unwrap(), usage(120, 1));
    }

    #[test]
    fn begin_put_refuses_in_order_and_says_how_much_fits() {
        let (_root, storage, dir) = setup();
        let limits = PutLimits {
            max_file_size: 100,
            user_quota: Some(150),
            user_max_files: Some(1),
        };
        let put =
            |name_: &str, size, offset| storage.begin_put(&dir, name(name_), size, offset, limits);
        // Over the maximum size before the quota is looked at.
        assert!(matches!(
            put("a", Some(200), None),
            Err(PutRefusal::TooLarge { max: 100 })
        ));
        let started = put("a", Some(60), None).unwrap();
        assert!(!started.existed);
        assert_eq!((started.limit, started.hasher.is_some()), (100, true));
        let mut upload = started.upload;
        upload.write(&[1; 60]).unwrap();
        storage.commit(upload, Digest::of(&[1; 60])).unwrap();
        // A second file is one too many; the first may be replaced.
        assert!(matches!(
            put("b", Some(1), None),
            Err(PutRefusal::OverQuota(OverQuota::Files { max: 1 }))
        ));
        assert!(matches!(
            put("a", Some(10), Some(11)),
            Err(PutRefusal::OffsetPastEnd {
                offset: 11,
                size: 10
            })
        ));
        // A body of unknown size is held to what the quota leaves.
        let started = put("a", None, None).unwrap();
        assert!(started.existed);
        assert_eq!(started.limit, 100);
        let limits = PutLimits {
            user_quota: Some(90),
            ..limits
        };
        let started = storage
            .begin_put(&dir, name("a"), None, None, limits)
            .unwrap();
        assert_eq!(
            (started.limit, started.limited_by_quota),
            (90, Some(OverQuota::Bytes { quota: 90 }))
        );
    }

    #[test]
    fn forgotten_counts_are_taken_again() {
        let (root, storage, dir) = setup();
        let mut upload = storage.begin_upload(&dir, name("a")).unwrap();
        upload.write(b"hello").unwrap();
        storage.commit(upload, Digest::of(b"hello")).unwrap();
        assert_eq!(storage.usage(&dir).unwrap().bytes, 5);
        drop(dir);
        // Removed behind the server's back: the running counts do not see
        // it, even through new handles, until they are forgotten.
        std::fs::remove_file(root.path().join("alice").join("a")).unwrap();
        let dir = storage.user_dir("alice").unwrap();
        assert_eq!(storage.usage(&dir).unwrap().bytes, 5);
        drop(dir);
        storage.recount("alice");
        let dir = storage.user_dir("alice").unwrap();
        assert_eq!(storage.usage(&dir).unwrap().bytes, 0);
    }

    #[test]
    fn upload_is_invisible_until_committed() {
        let (_root, storage, dir) = setup();
        let mut upload = storage.begin_upload(&dir, name("a")).unwrap();
        upload.write(b"hello").unwrap();
        assert!(storage.list(&dir).unwrap().is_empty());
        storage.commit(upload, Digest::of(b"hello")).unwrap();
        let listed = storage.list(&dir).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("a", 5));
        assert!(tmp_is_empty(&storage));
    }

    #[test]
    fn dropped_upload_leaves_old_version() {
        let (_root, storage, dir) = setup();
        let mut first = storage.begin_upload(&dir, name("a")).unwrap();
        first.write(b"old").unwrap();
        storage.commit(first, Digest::of(b"old")).unwrap();
        let mut second = storage.begin_upload(&dir, name("a")).unwrap();
        second.write(b"new but partial").unwrap();
        drop(second);
        let (mut file, meta) = storage.open_read(&dir, name("a")).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), meta.len()), ("old", 3));
        assert!(tmp_is_empty(&storage));
    }

    #[test]
    fn symlinks_and_directories_are_refused() {
        let (root, storage, dir) = setup();
        let outside = root.path().join("canary");
        fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, dir.file(&storage, "link")).unwrap();
        fs::create_dir(dir.file(&storage, "sub")).unwrap();
        for (bad, refused) in [("link", "NotRegular"), ("sub", "IsFolder")] {
            let kind = |err: StorageError| match err {
                StorageError::NotRegular => "NotRegular",
                StorageError::IsFolder => "IsFolder",
                _ => "other",
            };
            assert_eq!(
                storage.open_read(&dir, name(bad)).map(drop).map_err(kind),
                Err(refused)
            );
            assert_eq!(
                storage
                    .begin_upload(&dir, name(bad))
                    .map(drop)
                    .map_err(kind),
                Err(refused)
            );
            assert_eq!(
                storage.delete(&dir, name(bad)).map(drop).map_err(kind),
                Err(refused)
            );
        }
        assert!(storage.list(&dir).unwrap().is_empty());
        assert_eq!(fs::read(&outside).unwrap(), b"secret");
    }

    #[test]
    fn only_the_temporary_files_of_stopped_servers_are_removed_at_open() {
        let (root, first, dir) = setup();
        let tmp = root.path().join(PRIVATE_DIR).join(TMP_DIR);
        fs::write(tmp.join("upload-1-1"), b"an older ferryd's").unwrap();
        let mut upload = first.begin_upload(&dir, name("a")).unwrap();
        upload.write(b"running").unwrap();
        // A second server on the same root leaves the first one's file
        // (and the older one's) alone.
        let second = Storage::open(root.path(), no_fsync()).unwrap();
        assert_ne!(first.instance_id(), second.instance_id());
        assert_eq!(first.tmp().names().unwrap().len(), 2);
        // The first one stops, its file left behind as by a crash.
        std::mem::forget(upload);
        drop(first);
        let third = Storage::open(root.path(), no_fsync()).unwrap();
        let left = third.tmp().names().unwrap();
        assert_eq!(left, vec![std::ffi::OsString::from("upload-1-1")]);
        let instances = fs::read_dir(root.path().join(".ferry/instances")).unwrap();
        assert_eq!(instances.count(), 2, "the second and the third");
        drop(second);
    }

    #[test]
    fn expiry_removes_only_the_partial_it_looked_at() {
        let (_root, storage, dir) = setup();
        let keep = |bytes: &[u8]| {
            let mut upload = storage.begin_upload(&dir, name("p")).unwrap();
            upload.write(bytes).unwrap();
            storage.keep_partial(upload, None);
        };
        keep(b"old");
        let partials = &storage.records(&dir, PARTIAL_DIR).unwrap();
        let old = partials.stat("p").unwrap();
        // Replaced (by another server) after the look.
        keep(b"newer");
        assert!(!storage.remove_expired(partials, OsStr::new("p"), &old));
        assert_eq!(storage.partial_len(&dir, name("p")).unwrap(), 5);
        let newer = partials.stat("p").unwrap();
        assert!(storage.remove_expired(partials, OsStr::new("p"), &newer));
        assert_eq!(storage.partial_len(&dir, name("p")).unwrap(), 0);
        assert!(tmp_is_empty(&storage));
    }

    #[test]
    fn usage_is_kept_as_running_counts() {
        let (_root, storage, dir) = setup();
        let usage = |bytes, files| Usage { bytes, files };
        let mut upload = storage.begin_upload(&dir, name("a")).unwrap();
        upload.write(&[1; 10]).unwrap();
        storage.commit(upload, Digest::of(b"any")).unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(10, 1));
        // A file planted behind the server's back is not listed again...
        fs::write(dir.file(&storage, "planted"), [0; 5]).unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(10, 1));
        // ...while the server's own changes are counted.
        let mut upload = storage.begin_upload(&dir, name("a")).unwrap();
        upload.write(&[1; 30]).unwrap();
        storage.commit(upload, Digest::of(b"any")).unwrap();
        let mut upload = storage.begin_upload(&dir, name("b")).unwrap();
        upload.write(&[1; 7]).unwrap();
        storage.keep_partial(upload, None);
        assert_eq!(storage.usage(&dir).unwrap(), usage(37, 1));
        let mut upload = storage.begin_upload(&dir, name("b")).unwrap();
        upload.write(&[1; 3]).unwrap();
        storage.keep_partial(upload, None);
        assert_eq!(storage.usage(&dir).unwrap(), usage(33, 1));
        storage.delete(&dir, name("a")).unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(3, 0));
        // Counted again once the handles are new and the counts old.
        drop(dir);
        let dir = storage.user_dir("alice").unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(3, 0));
        storage.tallies.borrow()["alice"].change(|c| c.taken -= RESYNC_AFTER);
        drop(dir);
        let dir = storage.user_dir("alice").unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(8, 1));
        // Or at once when asked, with the handles still held.
        fs::write(dir.file(&storage, "planted too"), [0; 4]).unwrap();
        assert_eq!(storage.usage(&dir).unwrap(), usage(8, 1));
        storage.recount("alice");
        assert_eq!(storage.usage(&dir).unwrap(), usage(12, 2));
    }

    #[test]
    fn a_chunked_claim_counts_every_other_upload() {
        let (_root, storage, dir) = setup();
        let mut first = storage.begin_upload(&dir, name("a")).unwrap();
        let mut second = storage.begin_upload(&dir, name("b")).unwrap();
        storage.usage(&dir).unwrap();
        assert!(first.claim_within(600, 1000));
        assert!(!second.claim_within(500, 1000));
        assert!(second.claim_within(400, 1000));
        assert!(!first.claim_within(601, 1000));
        drop(first);
        assert!(second.claim_within(1000, 1000));
        drop(second);
        // What placing the upload frees counts as room.
        let mut upload = storage.begin_upload(&dir, name("a")).unwrap();
        upload.write(&[1; 600]).unwrap();
        storage.commit(upload, Digest::of(b"any")).unwrap();
        let mut replacing = storage.begin_upload(&dir, name("a")).unwrap();
        assert!(replacing.claim_within(1000, 1000));
        let mut other = storage.begin_upload(&dir, name("b")).unwrap();
        assert!(!other.claim_within(1, 1000));
    }

    #[test]
    fn directories_kept_grow_with_the_open_file_limit_and_the_least_used_go() {
        assert_eq!(kept_dirs(1024), (64, 32));
        assert_eq!(kept_dirs(20_000), (625, 625));
        assert_eq!(kept_dirs(1 << 20), (1024, 1024));
        assert_eq!(crate::config::descriptor_reserve(1024), 192);
        assert_eq!(crate::config::descriptor_reserve(65_536), 2144);
        let mut last = 0;
        for limit in (256..70_000).step_by(97) {
            let capacity = crate::config::connection_capacity(limit);
            assert!(capacity >= last, "{limit}: {capacity} < {last}");
            last = capacity;
        }

        let root = tempfile::tempdir().unwrap();
        let dir = Arc::new(Dir::open_path(root.path()).unwrap());
        let mut kept = OpenDirs::new(16);
        for i in 0..16 {
            kept.keep((1, i), &dir);
        }
        // 0 and 1 used again: 2 and 3 are now the least recently used.
        assert!(kept.get((1, 0)).is_some() && kept.get((1, 1)).is_some());
        kept.keep((1, 100), &dir);
        // Full: the eighth used least recently (2) was closed, not 0 or 1.
        assert_eq!(kept.dirs.len(), 15);
        assert!(kept.get((1, 2)).is_none() && kept.get((1, 3)).is_none());
        assert!(kept.get((1, 0)).is_some() && kept.get((1, 100)).is_some());
        // Only this map and `dir` hold the handle.
        assert_eq!(Arc::strong_count(&dir), 16);
    }

    #[test]
    fn claims_are_published_for_new_names_and_steps_not_for_small_replacements() {
        let (root, storage, dir) = setup();
        let claim_file = root
            .path()
            .join(PRIVATE_DIR)
            .join(USERS_DIR)
            .join("alice/claims");
        let claim_file = claim_file.join(&*storage.instance.id);
        let said = || fs::read_to_string(&claim_file).ok();
        let limits = quota::PutLimits {
            max_file_size: u64::MAX,
            user_quota: None,
            user_max_files: None,
        };
        let put = |path, size| {
            storage
                .begin_put(&dir, name(path), Some(size), None, limits)
                .unwrap()
                .upload
        };
        // A new name: the file is claimed, with the bytes, at once.
        let mut upload = put("a", 10);
        assert_eq!(
            said().as_deref(),
            Some(concat!("00000000000000000010 ", "00000000000000000001\n"))
        );
        upload.write(&[1; 10]).unwrap();
        storage.commit(upload, Digest::of(&[1; 10])).unwrap();
        assert_eq!(
            said().as_deref(),
            Some(concat!("00000000000000000000 ", "00000000000000000000\n"))
        );
        // Replacing it with less than a step: nothing written.
        fs::remove_file(&claim_file).unwrap();
        let small = put("a", quota::CLAIM_STEP - 1);
        assert_eq!(said(), None);
        drop(small);
        assert_eq!(said(), None);
        // A step or more is published, and so is its end.
        let big = put("a", quota::CLAIM_STEP);
        assert_eq!(
            said().as_deref(),
            Some(concat!("00000000000001048576 ", "00000000000000000000\n"))
        );
        drop(big);
        assert_eq!(
            said().as_deref(),
            Some(concat!("00000000000000000000 ", "00000000000000000000\n"))
        );
    }

    #[test]
    fn a_user_directory_opened_again_must_be_the_one_found_at_login() {
        let (root, storage, alice) = setup();
        let path = |user: &str| root.path().join(user);
        let mut upload = storage.begin_upload(&alice, name("mine")).unwrap();
        upload.write(b"mine").unwrap();
        storage.commit(upload, Digest::of(b"mine")).unwrap();
        let bob = storage.user_dir("bob").unwrap();
        fs::write(path("bob").join("secret"), b"bob's").unwrap();
        // Moved away while its handle is kept open: the session goes on
        // in it, wherever it went.
        fs::rename(path("alice"), path("alice-moved")).unwrap();
        std::os::unix::fs::symlink(path("bob"), path("alice")).unwrap();
        assert_eq!(storage.list(&alice).unwrap()[0].name, "mine");
        // Once the handle is closed, what the name leads to now is refused:
        // a symlink to bob's directory, then bob's directory itself.
        storage.open_dirs.borrow_mut().capacity = 1;
        storage.user_dir("carol").unwrap();
        let refused = |storage: &Storage| {
            assert!(storage.list(&alice).is_err());
            assert!(storage.open_read(&alice, name("secret")).is_err());
            assert!(storage.begin_upload(&alice, name("new")).is_err());
            assert!(storage.delete(&alice, name("secret")).is_err());
            assert_eq!(storage.size_of(&alice, name("secret")), None);
        };
        refused(&storage);
        fs::remove_file(path("alice")).unwrap();
        fs::rename(path("bob"), path("alice")).unwrap();
        refused(&storage);
        assert_eq!(fs::read(path("alice").join("secret")).unwrap(), b"bob's");
        assert!(!path("alice").join("new").exists());
        // Back in place, it is hers again.
        fs::rename(path("alice"), path("bob")).unwrap();
        fs::rename(path("alice-moved"), path("alice")).unwrap();
        assert_eq!(storage.list(&alice).unwrap()[0].name, "mine");
        assert_eq!(storage.list(&bob).unwrap()[0].name, "secret");
        assert_eq!(storage.open_dirs.borrow().dirs.len(), 1);
    }

    #[test]
    fn paths_and_uploads_reach_only_the_user_directory_found_at_login() {
        let (root, storage, alice) = setup();
        let path = |user: &str| root.path().join(user);
        storage.mkdir(&alice, name("sub")).unwrap();
        storage.user_dir("bob").unwrap();
        fs::create_dir(path("bob").join("sub")).unwrap();
        fs::write(path("bob").join("sub/secret"), b"bob's").unwrap();
        let mut into_root = storage.begin_upload(&alice, name("late")).unwrap();
        into_root.write(b"late").unwrap();
        let mut into_sub = storage.begin_upload(&alice, name("sub/late")).unwrap();
        into_sub.write(b"late").unwrap();
        // Her directory moved away and bob's under its name, once her
        // handle is closed.
        fs::rename(path("alice"), path("alice-moved")).unwrap();
        fs::rename(path("bob"), path("alice")).unwrap();
        storage.open_dirs.borrow_mut().capacity = 1;
        storage.user_dir("carol").unwrap();
        assert!(storage.stat(&alice, name("sub/secret")).is_err());
        assert!(storage.open_read(&alice, name("sub/secret")).is_err());
        assert!(storage.listing_of(&alice, Some(name("sub")), true).is_err());
        assert!(storage.mkdir(&alice, name("sub/new")).is_err());
        let moved = storage.rename(&alice, name("sub/secret"), name("taken"), false);
        assert!(moved.is_err());
        assert!(storage.remove_tree(&alice, name("sub")).is_err());
        assert!(storage.begin_upload(&alice, name("sub/new")).is_err());
        // An upload into her directory itself holds no handle of it: it is
        // placed through the directory found at login, so it is refused.
        assert!(storage.commit(into_root, Digest::of(b"late")).is_err());
        // One into a folder holds that folder, and lands in it wherever
        // it is now.
        storage.commit(into_sub, Digest::of(b"late")).unwrap();
        assert_eq!(
            fs::read(path("alice-moved").join("sub/late")).unwrap(),
            b"late"
        );
        assert!(!path("alice").join("late").exists());
        assert!(!path("alice").join("sub/late").exists());
        assert!(!path("alice").join("sub/new").exists());
        assert_eq!(
            fs::read(path("alice").join("sub/secret")).unwrap(),
            b"bob's"
        );
    }

    #[test]
    fn missing_file_is_not_found() {
        let (_root, storage, dir) = setup();
        assert!(matches!(
            storage.open_read(&dir, name("nope")),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            storage.delete(&dir, name("nope")),
            Err(StorageError::NotFound)
        ));
    }
}
