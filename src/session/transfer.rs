//! What a download and an upload are, whichever front runs them.

/// Bytes a `VIEW` shows.
pub const PREVIEW_LEN: u64 = 1024;
/// Largest amount of file data a download holds at once: big enough that a
/// fast client needs few wake-ups, small enough for thousands of sessions.
pub const TRANSFER_BUFFER: usize = 128 * 1024;
