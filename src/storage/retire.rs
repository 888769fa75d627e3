//! Large files are freed a step at a time. Removing the last name of a
//! file frees all its pages in that one call: about 0.3 s per GiB on
//! tmpfs and 0.7 s per GiB of cached data on ext4 here, during which the
//! one thread serves nobody. So before the last name of a large file is
//! removed or replaced (`DEL`, an upload or a move over it, an aborted
//! upload), the file gets a second name in the temporary directory, and
//! housekeeping shrinks it there [`STEP`] bytes per turn, then removes it.
//!
//! Shrinking is safe only for a file nobody reads any more: a download of
//! the old version still running (here or in another server on the root)
//! must get every byte. So a step is taken only while the retired name is
//! the file's only name and a write lease says no one else has it open
//! ([`sys::open_nowhere_else`]); otherwise the file waits. On a file
//! system another machine or mount may read too (NFS, FUSE such as
//! JuiceFS), where no lease here sees every reader, and where leases are
//! not to be had, the name is removed and the file is freed when its last
//! reader closes, at once, as before.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::sys;

/// Files smaller than this are removed at once: freeing 16 MiB takes
/// about 5 ms, a normal turn of the loop.
pub(super) const RETIRE_MIN: u64 = 16 << 20;
/// Bytes freed per turn.
const STEP: u64 = 32 << 20;
/// How long a retired file that someone still reads waits before the next
/// look.
const BUSY_WAIT: Duration = Duration::from_millis(250);
/// Suffix of the temporary names of retired files.
const KIND: &str = "retired";

/// Retired files still to free, oldest first.
#[derive(Debug, Default)]
pub(super) struct Retiring {
    /// Names in the temporary directory, each with when to look at it next.
    queue: VecDeque<(String, Instant)>,
    /// Large uploads dropped unfinished rename their temporary file to a
    /// retired name and count it here (see [`Upload`]'s `Drop`); the next
    /// step finds them in the temporary directory.
    dropped: Arc<AtomicUsize>,
}

impl Retiring {
    /// The count an [`Upload`] raises when it retires its temporary file.
    pub(super) fn dropped(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.dropped)
    }

    /// The name a dropped upload's temporary file takes.
    pub(super) fn name_for(tmp_name: &str) -> String {
        format!("{tmp_name}-{KIND}")
    }
}

impl Storage {
    /// Gives the regular file `name` in `dir`, of `len` bytes, a second
    /// name to be freed from, when it is large, before its name goes away.
    /// Should the name then not go away after all, the file has two names
    /// and the retired one is simply removed.
    pub(super) fn retire(&self, dir: &Dir, name: impl AsRef<OsStr>, len: u64) {
        let name = name.as_ref();
        if len < RETIRE_MIN {
            return;
        }
        let retired = self.tmp_name(KIND);
        match dir.link(name, &self.tmp(), &retired) {
            Ok(()) => {
                let mut retiring = self.retiring.borrow_mut();
                retiring.queue.push_back((retired, Instant::now()));
            }
            // Freed at once, as without this.
            Err(err) => log::debug!("cannot retire {name:?} to free it in steps: {err}"),
        }
    }

    /// Removes the regular file `name` (of `len` bytes) from `dir`, a large
    /// one freed in steps afterwards.
    pub(super) fn remove_file(
        &self,
        dir: &Dir,
        name: impl AsRef<OsStr>,
        len: u64,
    ) -> io::Result<()> {
        self.retire(dir, name.as_ref(), len);
        dir.remove(name)
    }

    /// Frees the file `tmp_name` of `len` bytes in the temporary
    /// directory: a large one in steps.
    pub(super) fn free_tmp_file(&self, tmp_name: &str, len: u64) {
        if len >= RETIRE_MIN {
            let mut retiring = self.retiring.borrow_mut();
            retiring
                .queue
                .push_back((tmp_name.to_owned(), Instant::now()));
            return;
        }
        record::remove(&self.tmp(), tmp_name);
    }

    /// When the next step is due: `None` while nothing is retired.
    pub(super) fn next_retire_step(&self) -> Option<Instant> {
        let retiring = self.retiring.borrow();
        if retiring.dropped.load(Ordering::Relaxed) > 0 {
            return Some(Instant::now());
        }
        retiring.queue.iter().map(|&(_, at)| at).min()
    }

    /// Frees up to [`STEP`] bytes of the first retired file that is due.
    pub(super) fn retire_step(&self, now: Instant) {
        if self.retiring.borrow().dropped.swap(0, Ordering::Relaxed) > 0 {
            self.find_dropped();
        }
        let tmp = self.tmp();
        let mut retiring = self.retiring.borrow_mut();
        let Some(i) = retiring.queue.iter().position(|&(_, at)| at <= now) else {
            return;
        };
        let (name, _) = retiring.queue.remove(i).expect("a queued file");
        match step(&tmp, &name) {
            Ok(Step::Shrunk) => retiring.queue.push_back((name, now)),
            Ok(Step::Busy) => retiring.queue.push_back((name, now + BUSY_WAIT)),
            Ok(Step::Gone) => {}
            Err(err) => {
                // No lease to be had, or the file cannot be opened: the
                // kernel frees it when its last reader closes.
                log::debug!("retired file {name}: {err}; removed at once");
                if let Err(err) = tmp.remove(&name)
                    && err.kind() != io::ErrorKind::NotFound
                {
                    log::warn!("cannot remove the retired file {name}: {err}");
                }
            }
        }
    }

    /// Queues this server's retired files that dropped uploads left in
    /// the temporary directory.
    fn find_dropped(&self) {
        let Ok(names) = self.tmp().names() else {
            return;
        };
        let own = format!("{}-", self.instance.id);
        let suffix = format!("-{KIND}");
        let mut retiring = self.retiring.borrow_mut();
        let now = Instant::now();
        for name in names {
            let Some(name) = name.to_str() else {
                continue;
            };
            if name.starts_with(&own)
                && name.ends_with(&suffix)
                && !retiring.queue.iter().any(|(queued, _)| queued == name)
            {
                retiring.queue.push_back((name.to_owned(), now));
            }
        }
    }
}

enum Step {
    /// Some bytes freed; more to go.
    Shrunk,
    /// Someone still reads it, or it has another name: not now.
    Busy,
    /// Removed.
    Gone,
}

/// One step on the retired file `name` in `tmp`.
fn step(tmp: &Dir, name: &str) -> io::Result<Step> {
    let file = match tmp.open_regular(name, true) {
        Ok(file) => file,
        Err(StorageError::NotFound) => return Ok(Step::Gone),
        Err(StorageError::Io(err)) => return Err(err),
        Err(other) => return Err(io::Error::other(other.to_string())),
    };
    let meta = file.metadata()?;
    if meta.nlink() > 1 {
        // Its name in the user's folder is still there (a removal that
        // failed after the link): removing this name frees nothing.
        tmp.remove(name)?;
        return Ok(Step::Gone);
    }
    if !super::handles::coherent(sys::fs_type(file.as_fd())?) {
        return Err(io::Error::other(
            "not a local file system: readers elsewhere are not seen",
        ));
    }
    if !sys::open_nowhere_else(file.as_fd())? {
        return Ok(Step::Busy);
    }
    let len = meta.len();
    if len <= STEP {
        drop(file);
        tmp.remove(name)?;
        return Ok(Step::Gone);
    }
    file.set_len(len - STEP)?;
    Ok(Step::Shrunk)
}
