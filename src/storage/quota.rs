//! The user quotas: the running counts of what each user stores (taken
//! once, then kept current by every change the server makes), and the one
//! call that starts an upload within the limits ([`Storage::begin_put`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Resumed, Storage, StorageError, Upload, Usage, UserDir};
use crate::integrity::Hasher;
use crate::protocol::path::FilePath;

/// How long a user's running usage counts are trusted before a login that
/// finds no session of that user open counts the directory again: files
/// planted behind the server's back, or stored by another server sharing
/// the root, are picked up then. Counting 100,000 files takes about a
/// quarter of a second of the one thread, so not at every login.
pub(super) const RESYNC_AFTER: Duration = Duration::from_secs(5 * 60);

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
        let counts = match dir.inner.tally.get() {
            Some(counts) => counts,
            None => {
                let counts = self.count(dir)?;
                dir.inner.tally.set(counts);
                counts
            }
        };
        Ok(dir.inner.usage(counts))
    }

    /// Lists the user's whole tree and partials to take the running counts.
    fn count(&self, dir: &UserDir) -> Result<Counts, StorageError> {
        let taken = Instant::now();
        let (stored, files) = self.count_tree(dir)?;
        let mut partial_bytes = 0;
        let partial = &dir.inner.partial;
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
        let existed = self.size_of(dir, name).is_some();
        let Resumed { mut upload, hasher } = match offset {
            Some(offset) if offset > declared => {
                let size = declared;
                return Err(PutRefusal::OffsetPastEnd { offset, size });
            }
            Some(offset) => self.resume_upload(dir, name, offset)?,
            None => Resumed {
                upload: self.begin_upload(dir, name)?,
                hasher: Some(Hasher::new()),
            },
        };
        upload.claim(declared);
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
