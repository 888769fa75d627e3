//! SHA-256 digests of file contents, computed as the bytes stream past.
//!
//! [`Hasher`] wraps the `sha2` crate (which uses the CPU's SHA extensions
//! when it has them) and counts the bytes it has seen. Its state can be
//! saved and restored ([`Hasher::save`], [`Hasher::restore`]), so an
//! interrupted upload can later continue hashing where it stopped without
//! reading its bytes again.

use std::fmt;

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(hex: &[u8]) -> Option<Digest> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(Digest(bytes))
    }

    /// The digest of `data`, in one go (for tests and small inputs).
    pub fn of(data: &[u8]) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(data);
        hasher.finish()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Lower-case hex, the form used on the wire and on disk.
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0; 64];
        // The output buffer is exactly twice the input: this cannot fail.
        let _ = hex::encode_to_slice(self.0, &mut hex);
        f.write_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256={self}")
    }
}

/// A running SHA-256 over a prefix of a file, with its length.
#[derive(Clone)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            sha: Sha256::new(),
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.len += data.len() as u64;
    }

    /// How many bytes have been hashed.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest(self.sha.finalize().into())
    }

    /// The state as bytes: the length (8 bytes, big-endian) followed by the
    /// `sha2` crate's own serialised state.
    pub fn save(&self) -> Vec<u8> {
        let mut out = self.len.to_be_bytes().to_vec();
        out.extend_from_slice(&self.sha.serialize());
        out
    }

    /// The inverse of [`Hasher::save`]; `None` for bytes it did not write.
    pub fn restore(saved: &[u8]) -> Option<Hasher> {
        let (len, state) = saved.split_first_chunk::<8>()?;
        let state = SerializedState::<Sha256>::try_from(state).ok()?;
        let sha = Sha256::deserialize(&state).ok()?;
        Some(Hasher {
            sha,
            len: u64::from_be_bytes(*len),
        })
    }
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_digests() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(
            Digest::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let digest = Digest::from_hex(EMPTY.as_bytes()).unwrap();
        assert_eq!(digest.to_string(), EMPTY);
        let upper = EMPTY.to_ascii_uppercase();
        assert_eq!(Digest::from_hex(upper.as_bytes()), Some(digest));
        for bad in [&EMPTY[1..], "", "zz", &format!("{EMPTY}00")] {
            assert_eq!(Digest::from_hex(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn saved_state_continues_where_it_stopped() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for split in [0, 1, 63, 64, 65, 4097, data.len()] {
            let mut first = Hasher::new();
            first.update(&data[..split]);
            let saved = first.save();
            let mut resumed = Hasher::restore(&saved).unwrap();
            assert_eq!(resumed.len(), split as u64);
            resumed.update(&data[split..]);
            assert_eq!(resumed.finish(), Digest::of(&data), "split at {split}");
        }
        assert!(Hasher::restore(b"short").is_none());
    }
}
