//! Hashing a file a step at a time, so that a large file never holds up
//! the other sessions.

/// Bytes hashed per step of [`super::Session::work`]: a fraction of a millisecond
/// of SHA-256, so other sessions wait no longer than that.
pub const HASH_STEP: usize = 128 * 1024;
