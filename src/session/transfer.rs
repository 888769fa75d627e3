//! What a download and an upload are, whichever front runs them: the file
//! sent or written, the hash of what was received, the counters and the
//! one audit line each ends with.

use std::fs::File;
use std::io;
use std::mem;
use std::sync::Arc;
use std::time::Instant;

use super::Services;
use super::outbox::{FileBody, FileOutput, Outbox};
use crate::audit::{Ending, Transfer, TransferKind, Who};
use crate::integrity::{Digest, Hasher};
use crate::metrics::Direction;
use crate::protocol::path::FilePath;
use crate::storage::Upload;

/// Bytes a `VIEW` shows.
pub const PREVIEW_LEN: u64 = 1024;
/// Largest amount of file data a download holds at once: big enough that a
/// fast client needs few wake-ups, small enough for thousands of sessions.
pub const TRANSFER_BUFFER: usize = 128 * 1024;

/// A download (or preview) in progress: a file sent from an offset,
/// `total` bytes announced. Whichever front runs it, its bytes go the same
/// way (through the outbox, or from the file by `sendfile`), and it ends
/// with the same counters and audit line.
#[derive(Debug)]
pub struct Download {
    kind: TransferKind,
    name: String,
    body: FileBody,
    total: u64,
    remaining: u64,
    started: Instant,
}

impl Download {
    /// Starts sending `total` bytes of `file` from `offset`.
    pub fn start(
        kind: TransferKind,
        name: FilePath<'_>,
        file: impl Into<Arc<File>>,
        offset: u64,
        total: u64,
        services: &Services,
    ) -> Download {
        services.metrics.transfer_started(Direction::Download);
        Download {
            kind,
            name: name.as_str().to_owned(),
            body: FileBody::new(file.into(), offset),
            total,
            remaining: total,
            started: Instant::now(),
        }
    }

    /// The rest of the file, once everything queued before it was sent,
    /// when the driver sends files itself.
    pub fn file_output(&self, out: &Outbox) -> Option<FileOutput<'_>> {
        (self.remaining > 0 && out.file_may_follow(self.total))
            .then(|| self.body.output(self.remaining))
    }

    /// Bytes of the file will be offered by [`Download::file_output`] once
    /// what `out` queues now is sent.
    pub fn file_follows(&self, out: &Outbox) -> bool {
        self.remaining > 0 && out.file_follows(self.total)
    }

    /// The driver sent `n` bytes of [`Download::file_output`].
    pub fn file_written(&mut self, n: u64) {
        let n = n.min(self.remaining);
        self.body.sent(n);
        self.remaining -= n;
    }

    /// Moves more of the file into `out` (at most [`TRANSFER_BUFFER`]
    /// queued), unless the driver sends it. True once every byte is out;
    /// an error means the announced length cannot be met.
    pub fn refill(&mut self, out: &mut Outbox) -> io::Result<bool> {
        if self.remaining == 0 {
            return Ok(true);
        }
        if out.sends_file_directly(self.total) {
            return Ok(false);
        }
        let room = TRANSFER_BUFFER.saturating_sub(out.queued().len());
        let want = self.remaining.min(room as u64) as usize;
        self.body.fill(out.buf(), want)?;
        self.remaining -= want as u64;
        Ok(false)
    }

    fn audit(&self) -> Transfer<'_> {
        Transfer {
            kind: self.kind,
            name: &self.name,
            size: self.total,
            moved: self.total - self.remaining,
            started: self.started,
        }
    }

    /// Every byte was sent.
    pub fn completed(self, who: Who<'_>, services: &Services) {
        services.metrics.transfer_completed(Direction::Download);
        self.audit().record(who, Ending::Ok, "");
    }

    /// The download stops before its end.
    pub fn cut(self, who: Who<'_>, reason: &str, services: &Services) {
        services.metrics.transfer_aborted(Direction::Download);
        self.audit().record(who, Ending::Cut, reason);
    }
}

/// What an interrupted upload becomes: each front says, as its protocol
/// promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// Kept for a later resume, with its hash state when `hashed` (the
    /// hasher covers every byte held).
    Resumable { hashed: bool },
    /// Removed.
    Discarded,
}

/// How an upload that received all its bytes ended.
#[derive(Debug)]
pub enum Finished {
    Stored(Digest),
    /// The digest is not the one announced; the upload was discarded.
    Mismatch {
        expected: Digest,
        received: Digest,
    },
    /// The file could not be written or put in place.
    Failed(io::Error),
}

/// An upload in progress: the file being written (or, once a write
/// failed, why: the rest of the body is still taken and dropped so the
/// stream stays in step), and the hash of every byte of it, including
/// those a resumed upload already held.
#[derive(Debug)]
pub struct Intake {
    name: String,
    /// The size announced, if any (a chunked body announces none).
    size: Option<u64>,
    /// Bytes of the file so far, held ones included, and any taken past
    /// a limit and dropped.
    received: u64,
    sink: Result<Upload, io::Error>,
    hasher: Hasher,
    started: Instant,
}

impl Intake {
    /// Starts an upload of `size` bytes (if announced) into `upload`,
    /// whose held bytes `hasher` covers.
    pub fn start(
        name: FilePath<'_>,
        size: Option<u64>,
        upload: Upload,
        hasher: Hasher,
        services: &Services,
    ) -> Intake {
        services.metrics.transfer_started(Direction::Upload);
        Intake {
            name: name.as_str().to_owned(),
            size,
            received: upload.len(),
            sink: Ok(upload),
            hasher,
            started: Instant::now(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of the file so far (see the field).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The file being written, unless a write failed.
    pub fn upload(&self) -> Result<&Upload, &io::Error> {
        self.sink.as_ref()
    }

    /// Replaces the hash state (a resume hashed its held bytes first).
    pub fn set_hasher(&mut self, hasher: Hasher) {
        self.hasher = hasher;
    }

    /// Counts `n` bytes taken past a limit and dropped.
    pub fn skip(&mut self, n: u64) {
        self.received += n;
    }

    /// Claims `total` bytes against `quota` for this upload; false when
    /// they do not fit (see [`Upload::claim_within`]).
    pub fn claim_within(&mut self, total: u64, quota: u64) -> bool {
        match &mut self.sink {
            Ok(upload) => upload.claim_within(total, quota),
            Err(_) => true,
        }
    }

    /// Hashes and writes `bytes`. A failed write drops the file at once
    /// (which frees the space on a full disk); true when this write was
    /// the one that failed ([`Intake::upload`] then says why). The upload
    /// then ends as [`Finished::Failed`].
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.received += bytes.len() as u64;
        self.hasher.update(bytes);
        if let Ok(upload) = &mut self.sink
            && let Err(err) = upload.write(bytes)
        {
            self.sink = Err(err);
            return true;
        }
        false
    }

    fn audit(&self) -> Transfer<'_> {
        Transfer {
            kind: TransferKind::Upload,
            name: &self.name,
            size: self.size.unwrap_or(self.received),
            moved: self.received,
            started: self.started,
        }
    }

    /// Every byte is in: checks the digest against `expect`, puts the file
    /// in place, and counts and logs how it ended.
    pub fn finish(mut self, expect: Option<Digest>, who: Who<'_>, services: &Services) -> Finished {
        let sha256 = mem::take(&mut self.hasher).finish();
        let sink = mem::replace(&mut self.sink, Err(io::Error::other("finished")));
        let finished = match expect {
            Some(expected) if expected != sha256 => Finished::Mismatch {
                expected,
                received: sha256,
            },
            // Dropping the upload removes its temporary file.
            _ => match sink.and_then(|upload| services.storage.commit(upload, sha256)) {
                Ok(()) => Finished::Stored(sha256),
                Err(err) => Finished::Failed(err),
            },
        };
        match &finished {
            Finished::Stored(_) => {
                services.metrics.transfer_completed(Direction::Upload);
                self.audit().record(who, Ending::Ok, "");
            }
            Finished::Mismatch { expected, received } => {
                services.metrics.transfer_aborted(Direction::Upload);
                let reason = format!("checksum mismatch: expected {expected}, received {received}");
                self.audit().record(who, Ending::Mismatch, &reason);
            }
            Finished::Failed(err) => {
                services.metrics.transfer_aborted(Direction::Upload);
                self.audit().record(who, Ending::Failed, &err.to_string());
            }
        }
        finished
    }

    /// The upload stops before its end and becomes what `then` says.
    pub fn interrupt(self, then: Interrupted, who: Who<'_>, reason: &str, services: &Services) {
        services.metrics.transfer_aborted(Direction::Upload);
        self.audit().record(who, Ending::Aborted, reason);
        if let (Interrupted::Resumable { hashed }, Ok(upload)) = (then, self.sink) {
            let hasher = hashed.then_some(&self.hasher);
            services.storage.keep_partial(upload, hasher);
        }
    }
}

/// A file was deleted: the same line from every front.
pub fn deleted(who: Who<'_>, name: FilePath<'_>, size: u64, started: Instant) {
    let line = Transfer {
        kind: TransferKind::Delete,
        name: name.as_str(),
        size,
        moved: size,
        started,
    };
    line.record(who, Ending::Ok, "");
}
