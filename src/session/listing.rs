//! A directory listing sent a block at a time, as both fronts stream it.

use crate::storage::{Entry, Listing, ListingStep, StorageError};

/// Most bytes of listing lines in one `150 <n>` block of `LIST` (one more
/// line may go past it), and so about the most a listing holds for a
/// client that does not read: forty such clients hold under a MiB, where
/// each used to hold the whole listing (20 MiB for 100,000 long names).
pub const LIST_BLOCK: usize = 16 * 1024;
/// Directory entries looked at in one step of a listing ([`super::Session::work`]):
/// each costs an `fstatat`, so a step stays well under a millisecond and
/// other sessions wait no longer than that.
pub const LIST_STEP_ENTRIES: usize = 256;

/// One `LIST` line: `<size> <mtime> <name>\n`.
pub(crate) fn write_listing_line(entry: &Entry, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = writeln!(out, "{} {} {}", entry.size, entry.mtime, entry.name);
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
