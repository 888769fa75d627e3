//! Hashing a file a step at a time, so that a large file never holds up
//! the other sessions.

/// Bytes hashed per step of [`super::Front::work`]: a fraction of a millisecond
/// of SHA-256, so other sessions wait no longer than that.
pub const HASH_STEP: usize = 128 * 1024;

use std::io;
use std::time::Instant;

use crate::integrity::Hasher;

/// Hashing `end` bytes of something readable by offset, [`HASH_STEP`]
/// bytes a step: the reactor runs one step per turn of the session.
#[derive(Debug)]
pub struct Stepwise {
    /// Covers the bytes before `pos`.
    hasher: Hasher,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    started: Instant,
}

impl Stepwise {
    pub fn new(end: u64) -> Stepwise {
        let chunk = usize::try_from(end).unwrap_or(usize::MAX).min(HASH_STEP);
        Stepwise {
            hasher: Hasher::new(),
            pos: 0,
            end,
            buf: vec![0; chunk],
            started: Instant::now(),
        }
    }

    /// Hashes the next chunk, read with `read_at(buf, offset)`; returns
    /// how many bytes that was. What ends before `end` is `UnexpectedEof`.
    pub fn step(
        &mut self,
        read_at: impl FnOnce(&mut [u8], u64) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let want = (self.end - self.pos).min(self.buf.len() as u64) as usize;
        let buf = &mut self.buf[..want];
        let n = read_at(buf, self.pos)?;
        if n == 0 && want > 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }

    pub fn is_done(&self) -> bool {
        self.pos == self.end
    }

    /// Bytes hashed so far, and how many there are to hash.
    pub fn progress(&self) -> (u64, u64) {
        (self.pos, self.end)
    }

    /// Seconds since the first step.
    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The hash state over every byte.
    pub fn into_hasher(self) -> Hasher {
        self.hasher
    }
}
