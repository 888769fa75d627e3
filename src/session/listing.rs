//! A directory listing sent a block at a time, as both fronts stream it.

use std::net::SocketAddr;
use std::time::Instant;

use crate::storage::{Entry, Listing, ListingStep, StorageError};

/// Most bytes of listing lines in one `150 <n>` block of `LIST` (one more
/// line may go past it), and so about the most a listing holds for a
/// client that does not read: forty such clients hold under a MiB, where
/// each used to hold the whole listing (20 MiB for 100,000 long names).
pub const LIST_BLOCK: usize = 16 * 1024;
/// Directory entries looked at in one step of a listing ([`super::Front::work`]):
/// each costs an `fstatat`, so a step stays well under a millisecond and
/// other sessions wait no longer than that.
pub const LIST_STEP_ENTRIES: usize = 256;

/// One `LIST` line: `<size> <mtime> <name>\n`.
pub(crate) fn write_listing_line(entry: &Entry, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    // A folder's name ends with `/`, its type marker (no name holds one).
    let marker = if entry.folder { "/" } else { "" };
    let _ = writeln!(out, "{} {} {}{marker}", entry.size, entry.mtime, entry.name);
}

/// One step of a listing of either front: writes the next entries with
/// `write` until [`LIST_BLOCK`] bytes are added to `out` or
/// [`LIST_STEP_ENTRIES`] directory entries were looked at. True when the
/// directory has been read to its end.
pub(crate) fn listing_step(
    listing: &mut Listing,
    out: &mut Vec<u8>,
    mut write: impl FnMut(&Entry, &mut Vec<u8>),
) -> Result<bool, StorageError> {
    let start = out.len();
    // Room for the block, its last line and its framing at once, so that
    // the buffer does not double past it (to 32 KiB) while it fills.
    out.reserve(LIST_BLOCK + 1024);
    let mut looked = 0;
    while out.len() - start < LIST_BLOCK && looked < LIST_STEP_ENTRIES {
        match listing.next_entry()? {
            ListingStep::Entry(entry) => {
                write(&entry, out);
                looked += 1;
            }
            ListingStep::Skipped => looked += Listing::SKIP_LIMIT,
            ListingStep::End => return Ok(true),
        }
    }
    Ok(false)
}

/// A listing being streamed, whichever front sends it: the directory read
/// a step at a time, the entries and body bytes sent so far, and the log
/// line it ends with. The front frames each step's block its own way.
#[derive(Debug)]
pub struct Streaming {
    listing: Listing,
    /// Entries written so far (a JSON entry after the first starts with
    /// a comma).
    entries: usize,
    /// Body bytes written so far (framing not counted).
    bytes: u64,
    started: Instant,
}

impl Streaming {
    /// True once a block (or the head of the response) went out.
    pub fn has_sent(&self) -> bool {
        self.bytes > 0
    }

    pub fn new(listing: Listing) -> Streaming {
        Streaming {
            listing,
            entries: 0,
            bytes: 0,
            started: Instant::now(),
        }
    }

    /// Body bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// One step (see [`listing_step`]): the next entries, each written
    /// with `write(entry, index, out)`. True when the directory has been
    /// read to its end.
    pub fn step(
        &mut self,
        out: &mut Vec<u8>,
        mut write: impl FnMut(&Entry, usize, &mut Vec<u8>),
    ) -> Result<bool, StorageError> {
        let start = out.len();
        let mut index = self.entries;
        let result = listing_step(&mut self.listing, out, |entry, out| {
            write(entry, index, out);
            index += 1;
        });
        self.entries = index;
        self.bytes += (out.len() - start) as u64;
        result
    }

    /// The front wrote `n` more body bytes of its own (JSON brackets).
    pub fn wrote(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// Logs how the listing of `user` ended: read to its end (`Ok`), or
    /// not readable further.
    pub fn ended(&self, peer: SocketAddr, user: &str, result: &Result<(), StorageError>) {
        match result {
            Ok(()) => log::info!(
                "{peer} {user}: listing ok ({} bytes in {:.3}s)",
                self.bytes,
                self.started.elapsed().as_secs_f64()
            ),
            Err(err) => log::error!(
                "{peer} {user}: listing failed after {} bytes: {err}",
                self.bytes
            ),
        }
    }

    /// Logs that the listing of `user` was cut before its end.
    pub fn cut(&self, peer: SocketAddr, user: &str, reason: &str) {
        log::info!(
            "{peer} {user}: listing cut after {} bytes: {reason}",
            self.bytes
        );
    }
}
