//! The user quotas: the running counts of what each user stores (taken
//! once, then kept current by every change the server makes), what running
//! uploads claim, and the one call that starts an upload within the limits
//! ([`Storage::begin_put`]).
//!
//! # Several servers on one root
//!
//! A quota holds for the farm, not for each server:
//!
//! - **Running uploads** claim their bytes (and a file, for a new name) in
//!   the shared root: each server keeps one small file per user with
//!   uploads running, `.ferry/users/<user>/claims/<instance id>`, holding what
//!   its uploads of that user claim (`<bytes> <files>`, rewritten in place
//!   when the number of claimed files changes, when the bytes moved by
//!   [`CLAIM_STEP`] since the file last said them, and when the claims
//!   end; removed with the user's handles, or by the sweep of a dead
//!   server's files). So an upload of less than a step that replaces a
//!   file writes no claim at all: what the file says is never a step or
//!   more from what this server's uploads hold. A quota check adds up the
//!   claims of the other servers whose instance file exists.
//! - **Stored files and partials**, changed by other servers behind this
//!   one's running counts, are counted again whenever the user's directory
//!   or partials directory changed since the last count (their `mtime` and
//!   `ctime`, one `fstat` each): while another server is registered, a
//!   check after any change lists the directory, and one within a second
//!   of the last change too (directory times may be as coarse as a clock
//!   tick, so a change in the same tick as the count would not show).
//!
//! How far the farm can pass a quota: a check reads the others' claims and
//! only then is its own claim written, so uploads that start on different
//! servers within the time one claim file takes to become visible to the
//! others (microseconds on one kernel; on a network file system, up to its
//! attribute and data cache lifetime for that file, see README) do not see
//! each other. With N servers, the bytes stored and claimed for a user stay
//! at most `quota + (N - 1) * S + N * CLAIM_STEP`, where `S` is the largest
//! upload admitted during such a window (at most the smaller of the quota
//! and `--max-file-size`); the file limit likewise by N - 1 files per
//! window. Uploads that start further apart than that are held to the
//! quota to within what the claim files may leave unsaid: less than
//! [`CLAIM_STEP`] per server, the `N * CLAIM_STEP` of the bound.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::dir::Dir;
use super::{Resumed, Storage, StorageError, Upload, Usage, UserDir};
use crate::integrity::Hasher;
use crate::protocol::path::FilePath;

/// How long a user's running usage counts are trusted before a login that
/// finds no session of that user open counts the directory again: files
/// planted behind the server's back, or stored by another server sharing
/// the root, are picked up then. Counting 100,000 files takes about a
/// quarter of a second of the one thread, so not at every login.
pub(super) const RESYNC_AFTER: Duration = Duration::from_secs(5 * 60);

/// `.ferry/users/<user>/claims/`: what running uploads claim, per server.
pub(super) const CLAIMS_DIR: &str = "claims";
/// Growth of a server's claimed bytes for one user (a chunked body, or
/// several small uploads) that is published only once it reaches this:
/// each publication is a write to the shared file system, so not one per
/// received packet. Part of the overrun bound (see the module docs).
pub const CLAIM_STEP: u64 = 1024 * 1024;
/// `<20 digits> <20 digits>\n`: fixed width, so a rewrite in place is
/// one write that never leaves a shorter or mixed line behind.
const CLAIM_LEN: usize = 42;
/// A directory unchanged for this long is trusted to show every change
/// made up to when it was counted (times can be as coarse as a tick).
const SETTLED: Duration = Duration::from_secs(1);

/// The share of a user's quota that uploads in progress hold: each claims
/// its declared size (or what it received so far, when that is more, as
/// for a chunked HTTP body) and, when its name is new, one file. Counted
/// by the uploads themselves ([`Upload`]), released when they end, and
/// published for the other servers on the root (see the module docs).
/// (The server has one thread; atomics and mutexes only keep the handles
/// `Send`.)
#[derive(Debug, Default)]
pub(super) struct Claims {
    bytes: AtomicU64,
    files: AtomicU64,
    /// What the other servers' uploads of the user claimed at the last
    /// quota check.
    others_bytes: AtomicU64,
    others_files: AtomicU64,
    shared: Option<SharedClaim>,
}

/// This server's claim file for one user. It holds no descriptor: the
/// file is opened for each publication (at most one per upload's start,
/// end and [`CLAIM_STEP`] of change), so that a logged-in user costs no
/// descriptor beyond the sessions' sockets (issue 23).
#[derive(Debug)]
struct SharedClaim {
    /// `.ferry/users/`, one handle for every user; the user's `claims/`
    /// is made beneath `<user>/` at the first claim (a user who never
    /// uploads gets none).
    users: Arc<Dir>,
    /// The user's name and this server's id (the file's name), shared.
    user: Arc<str>,
    id: Arc<str>,
    /// What the file says now: (bytes, files); `None` before it is made.
    published: Mutex<Option<(u64, u64)>>,
}

impl SharedClaim {
    /// `.ferry/users/<user>/claims/`, made when `create` is set.
    fn dir(&self, create: bool) -> io::Result<Dir> {
        let records = self.users.open_dir(&*self.user)?;
        if create {
            records.ensure_dir(CLAIMS_DIR, super::DIR_MODE, false)
        } else {
            records.open_dir(CLAIMS_DIR)
        }
    }
}

impl Claims {
    pub(super) fn add(&self, bytes: u64, files: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.files.fetch_add(files, Ordering::Relaxed);
        self.publish();
    }

    pub(super) fn release(&self, bytes: u64, files: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.files.fetch_sub(files, Ordering::Relaxed);
        self.publish();
    }

    /// Bytes claimed by the running uploads of this server and, as of the
    /// last check, of the others.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed) + self.others_bytes.load(Ordering::Relaxed)
    }

    pub(super) fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed) + self.others_files.load(Ordering::Relaxed)
    }

    /// Writes this server's claims to its claim file when they changed
    /// enough (see [`CLAIM_STEP`]). Best effort: a failure is logged, and
    /// costs the other servers an undercount of this one's claims.
    fn publish(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let now = (
            self.bytes.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed),
        );
        let mut published = shared.published.lock().unwrap_or_else(|e| e.into_inner());
        let last = published.unwrap_or((0, 0));
        // Bytes within CLAIM_STEP of what the file says are within the
        // bound, so an upload under a step that replaces a file publishes
        // nothing; claims that end are published, so that the others never
        // go on counting bytes nobody holds any more.
        let due =
            now.1 != last.1 || now.0.abs_diff(last.0) >= CLAIM_STEP || (now.0 == 0 && last.0 != 0);
        if !due {
            return;
        }
        let line = format!("{:020} {:020}\n", now.0, now.1);
        // Made by this server's first publication for the user; after that
        // the file is opened by its path beneath `users/` in one `openat2`
        // (no symlink followed in any of its names), and only if it is gone
        // is the directory opened (and made) again, so that the
        // publications of an upload's start and end cost four calls each.
        let direct = match *published {
            Some(_) => {
                let path = format!("{}/{CLAIMS_DIR}/{}", shared.user, shared.id);
                shared.users.open_existing_rw(&path)
            }
            None => Err(io::ErrorKind::NotFound.into()),
        };
        let file = direct.or_else(|_| {
            shared
                .dir(false)
                .or_else(|_| shared.dir(true))?
                .open_or_create(&shared.id, 0o600)
        });
        let written = file.and_then(|file| file.write_all_at(line.as_bytes(), 0));
        match written {
            Ok(()) => *published = Some(now),
            Err(err) => log::warn!("cannot publish upload claims: {err}"),
        }
    }
}

impl Drop for SharedClaim {
    fn drop(&mut self) {
        let made = self.published.get_mut().unwrap_or_else(|e| e.into_inner());
        if made.is_some()
            && let Ok(dir) = self.dir(false)
        {
            super::record::remove(&dir, &*self.id);
        }
    }
}

/// `<bytes> <files>` of a claim file.
fn parse_claim(text: &str) -> Option<(u64, u64)> {
    let mut words = text.split_whitespace();
    let bytes = words.next()?.parse().ok()?;
    let files = words.next()?.parse().ok()?;
    Some((bytes, files))
}

/// What tells whether a user's files or partials changed: the `mtime`
/// and `ctime` of both directories.
type Stamp = [(i64, i64); 4];

fn stamp_of(files: &Dir, partial: &Dir) -> io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (files.metadata()?, partial.metadata()?);
    Ok([
        (a.mtime(), a.mtime_nsec()),
        (a.ctime(), a.ctime_nsec()),
        (b.mtime(), b.mtime_nsec()),
        (b.ctime(), b.ctime_nsec()),
    ])
}

fn latest(stamp: &Stamp) -> SystemTime {
    let (secs, nanos) = stamp.iter().max().copied().unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
}

/// Why an upload does not fit the user's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverQuota {
    Bytes { quota: u64 },
    Files { max: u64 },
}

/// What a user stores, as running counts: taken once by listing the
/// directory (at the first quota check that needs them), then kept current
/// by every change this server makes, so a quota check costs no listing.
#[derive(Debug)]
pub(super) struct Tally {
    /// The user directory counted: (device, inode).
    pub(super) of: (u64, u64),
    counts: Mutex<Option<Counts>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    /// Bytes and number of the regular files.
    pub(super) stored: u64,
    pub(super) files: u64,
    /// Bytes of the partials of interrupted uploads.
    pub(super) partial: u64,
    pub(super) taken: Instant,
    /// The directories' times just before they were counted, when they
    /// had settled (see the module docs); `None`: count again at the next
    /// check if the root is shared.
    stamp: Option<Stamp>,
}

impl Tally {
    pub(super) fn new(of: (u64, u64)) -> Tally {
        Tally {
            of,
            counts: Mutex::new(None),
        }
    }

    pub(super) fn get(&self) -> Option<Counts> {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set(&self, counts: Counts) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = Some(counts);
    }

    /// Applies a change the server made, if the counts were taken.
    pub(super) fn change(&self, apply: impl FnOnce(&mut Counts)) {
        if let Some(counts) = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            apply(counts);
        }
    }

    /// Counts that may be trusted for a new set of handles.
    pub(super) fn fresh(&self) -> bool {
        self.get()
            .is_none_or(|counts| counts.taken.elapsed() < RESYNC_AFTER)
    }
}

/// What every upload must fit (see [`Storage::begin_put`]).
#[derive(Debug, Clone, Copy)]
pub struct PutLimits {
    pub max_file_size: u64,
    /// `--user-quota`: bytes per user.
    pub user_quota: Option<u64>,
    /// `--user-max-files`: files per user.
    pub user_max_files: Option<u64>,
}

/// Why [`Storage::begin_put`] refused an upload.
#[derive(Debug)]
pub enum PutRefusal {
    /// Over the maximum file size.
    TooLarge {
        max: u64,
    },
    OverQuota(OverQuota),
    /// The offset to continue from is past the announced size.
    OffsetPastEnd {
        offset: u64,
        size: u64,
    },
    Storage(StorageError),
}

impl From<StorageError> for PutRefusal {
    fn from(err: StorageError) -> PutRefusal {
        PutRefusal::Storage(err)
    }
}

impl From<OverQuota> for PutRefusal {
    fn from(over: OverQuota) -> PutRefusal {
        PutRefusal::OverQuota(over)
    }
}

/// An upload [`Storage::begin_put`] started.
#[derive(Debug)]
pub struct PutStarted {
    pub upload: Upload,
    /// The hash state of the bytes held, or `None` when they must be
    /// hashed again first.
    pub hasher: Option<Hasher>,
    /// A file of that name existed (it will be replaced).
    pub existed: bool,
    /// Most bytes the file may have: the maximum file size, or less when
    /// the user's byte quota leaves less room (`limited_by_quota` then
    /// says so). A body of unknown size is held to it as it arrives.
    pub limit: u64,
    pub limited_by_quota: Option<OverQuota>,
}

impl Storage {
    /// What a user stores and holds now, as the quota counts it: regular
    /// files, the partials of interrupted uploads (bytes only; an expired
    /// one counts until the periodic expiry removes it), and what the
    /// uploads in progress claim. O(1): the directory is listed once, at
    /// the first call, and the counts are then kept current by the
    /// server's own changes (see [`RESYNC_AFTER`] for the rest).
    pub fn usage(&self, dir: &UserDir) -> Result<Usage, StorageError> {
        let shared = self.shared_root();
        let counts = match dir.inner.tally.get() {
            Some(counts) if !shared => counts,
            Some(counts) if counts.stamp.is_some() && counts.stamp == self.stamp(dir).ok() => {
                counts
            }
            _ => {
                let counts = self.count(dir)?;
                dir.inner.tally.set(counts);
                counts
            }
        };
        let (bytes, files) = if shared {
            self.others_claims(dir)?
        } else {
            (0, 0)
        };
        let claims = &dir.inner.claims;
        claims.others_bytes.store(bytes, Ordering::Relaxed);
        claims.others_files.store(files, Ordering::Relaxed);
        Ok(dir.inner.usage(counts))
    }

    /// Another server is registered on this root (one directory read).
    fn shared_root(&self) -> bool {
        self.instances.names().is_ok_and(|names| names.len() > 1)
    }

    fn stamp(&self, dir: &UserDir) -> io::Result<Stamp> {
        stamp_of(&*self.files(dir)?, &self.records(dir, super::PARTIAL_DIR)?)
    }

    /// What the other live servers' uploads of the user claim. A claim
    /// that cannot be read fails the check rather than count as nothing,
    /// which would let the user past the quota; one removed meanwhile (its
    /// upload ended) is nothing.
    fn others_claims(&self, dir: &UserDir) -> Result<(u64, u64), StorageError> {
        let Some(shared) = &dir.inner.claims.shared else {
            return Ok((0, 0));
        };
        let claims = match shared.dir(false) {
            Ok(claims) => claims,
            // No upload of this user has published a claim yet.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(err) => return Err(StorageError::Io(err)),
        };
        let mut sum = (0u64, 0u64);
        for name in claims.names()? {
            let Some(id) = name.to_str() else {
                continue;
            };
            // Ours, or a dead server's whose file the sweep has not
            // removed yet while its instance file is gone already.
            if id == &*shared.id || self.instances.stat(id).is_err() {
                continue;
            }
            let file = match claims.open_regular(id, false) {
                Ok(file) => file,
                Err(StorageError::NotFound) => continue,
                Err(err) => return Err(err),
            };
            let mut buf = [0u8; CLAIM_LEN];
            let n = file.read_at(&mut buf, 0)?;
            if let Some((bytes, files)) = std::str::from_utf8(&buf[..n]).ok().and_then(parse_claim)
            {
                sum = (sum.0.saturating_add(bytes), sum.1.saturating_add(files));
            }
        }
        Ok(sum)
    }

    /// The claims of `user`'s uploads, published in the shared root.
    pub(super) fn claims_for(&self, user: &Arc<str>) -> io::Result<Claims> {
        Ok(Claims {
            shared: Some(SharedClaim {
                users: Arc::clone(&self.users),
                user: Arc::clone(user),
                id: Arc::clone(&self.instance.id),
                published: Mutex::new(None),
            }),
            ..Claims::default()
        })
    }

    /// Lists the user's whole tree and partials to take the running counts.
    fn count(&self, dir: &UserDir) -> Result<Counts, StorageError> {
        let taken = Instant::now();
        // Before listing: a change during the listing shows as a newer
        // time at the next check.
        let stamp = self
            .stamp(dir)
            .ok()
            .filter(|stamp| self.clock.age(latest(stamp)) >= SETTLED);
        let (stored, files, folders) = self.count_tree(dir)?;
        // The stamp sees changes in the user's root only: a file another
        // server stores in a folder changes that folder's times alone. So
        // a tree with folders is counted again at every check while the
        // root is shared (a listing of the tree each time).
        let stamp = stamp.filter(|_| !folders);
        let mut partial_bytes = 0;
        let partial = self.records(dir, super::PARTIAL_DIR)?;
        for name in partial.names()? {
            let Some(name) = name.to_str() else {
                continue;
            };
            match partial.entry(name) {
                Ok(meta) if meta.is_file => partial_bytes += meta.len,
                // Gone meanwhile (claimed by a resume), or not ours.
                Ok(_) | Err(StorageError::NotFound | StorageError::NotRegular) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(Counts {
            stored,
            files,
            partial: partial_bytes,
            taken,
            stamp,
        })
    }

    /// Forgets the running counts of `user`, so that the next quota check
    /// lists the user's files and partials again, even through handles
    /// already held. For whoever changed them behind the server's back (an
    /// operator, a fuzz target restoring its tree between runs) and wants
    /// the change counted now rather than once the counts are older than
    /// `RESYNC_AFTER`.
    pub fn recount(&self, user: &str) {
        if let Some(tally) = self.tallies.borrow().get(user) {
            *tally.counts.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Starts (or, from `offset`, continues) an upload of `size` bytes
    /// (`None`: not announced) to `name`, within `limits`: the one call a
    /// session makes to start one. Refused, in this order, when `size` is
    /// over the maximum file size, when it does not fit the user's quota,
    /// when `offset` is past `size`, or when the storage cannot take it.
    /// The upload claims `size` of the user's quota while it runs.
    pub fn begin_put(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
        size: Option<u64>,
        offset: Option<u64>,
        limits: PutLimits,
    ) -> Result<PutStarted, PutRefusal> {
        let declared = size.unwrap_or(0);
        if declared > limits.max_file_size {
            let max = limits.max_file_size;
            return Err(PutRefusal::TooLarge { max });
        }
        let room = self.room_for(dir, name, declared, limits)?;
        // The declared size is claimed as the upload is made: one
        // publication of the claim, not one for the file and one for the
        // bytes.
        let Resumed { upload, hasher } = match offset {
            Some(offset) if offset > declared => {
                let size = declared;
                return Err(PutRefusal::OffsetPastEnd { offset, size });
            }
            Some(offset) => self.continue_upload(dir, name, offset, declared)?,
            None => Resumed {
                upload: self.start_upload(dir, name, declared)?,
                hasher: Some(Hasher::new()),
            },
        };
        let existed = !upload.is_new_name();
        let (limit, limited_by_quota) = match (room, limits.user_quota) {
            (Some(room), Some(quota)) if room < limits.max_file_size => {
                (room, Some(OverQuota::Bytes { quota }))
            }
            _ => (limits.max_file_size, None),
        };
        Ok(PutStarted {
            upload,
            hasher,
            existed,
            limit,
            limited_by_quota,
        })
    }

    /// Checks that storing `size` bytes under `name` keeps the user within
    /// the quotas of `limits`, and returns how many bytes the byte quota
    /// leaves for `name` (`None`: no byte quota). The user's files,
    /// partials and running uploads count (see [`Storage::usage`]); the
    /// file the upload replaces and the partial of the same name give
    /// their bytes back (the upload takes their place).
    fn room_for(
        &self,
        dir: &UserDir,
        name: FilePath<'_>,
        size: u64,
        limits: PutLimits,
    ) -> Result<Option<u64>, OverQuota> {
        if limits.user_quota.is_none() && limits.user_max_files.is_none() {
            return Ok(None);
        }
        // If the usage cannot be read, the upload itself will tell.
        let Ok(usage) = self.usage(dir) else {
            return Ok(None);
        };
        let existing = self.size_of(dir, name);
        let held = self.partial_len(dir, name).unwrap_or(0);
        let given_back = existing.unwrap_or(0).saturating_add(held);
        let room = limits
            .user_quota
            .map(|quota| quota.saturating_sub(usage.bytes.saturating_sub(given_back)));
        if let (Some(quota), Some(room)) = (limits.user_quota, room)
            && size > room
        {
            return Err(OverQuota::Bytes { quota });
        }
        if let Some(max) = limits.user_max_files
            && existing.is_none()
            && usage.files + 1 > max
        {
            return Err(OverQuota::Files { max });
        }
        Ok(room)
    }
}
