//! Hashed passwords: PBKDF2-HMAC-SHA256 in the PHC string format, checked
//! a slice at a time so a slow hash never freezes the one thread.
//!
//! ```text
//! $pbkdf2-sha256$i=<iterations>,l=32$<salt>$<hash>
//! ```
//!
//! `<salt>` and `<hash>` are base64 without padding (the PHC string
//! format, as written by the `pbkdf2` crate and passlib-compatible tools);
//! `l=32` may be left out. The HMAC comes from the `hmac` crate; the
//! iteration loop is written out here only so that it can stop and resume
//! between reactor turns ([`Check::step`]). The tests hold it to the
//! `pbkdf2` crate's result.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Iterations `ferryd hash-password` uses: OWASP's 2023 figure for
/// PBKDF2-HMAC-SHA256, about 60 ms of CPU per login on the development
/// machine (AMD EPYC with SHA extensions; `ferryd hash-password` in a
/// release build), checked in slices.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Fewest iterations accepted in a users file.
pub const MIN_ITERATIONS: u32 = 1_000;
/// How long one slice of a password check runs: with at most two checks
/// at once, a turn of the event loop spends about 2 ms on them.
pub const STEP_TIME: std::time::Duration = std::time::Duration::from_millis(1);
/// Iterations between looks at the clock during a slice: about 60 µs on
/// the development machine.
pub const ITERATIONS_PER_CLOCK_CHECK: u32 = 500;
const KEY_LEN: usize = 32;
const PREFIX: &str = "$pbkdf2-sha256$";

/// A parsed password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; KEY_LEN],
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash(pbkdf2-sha256, i={})", self.iterations)
    }
}

impl PasswordHash {
    /// True when `entry` looks like a hash this module writes (as opposed
    /// to a plain-text password).
    pub fn is_hash(entry: &[u8]) -> bool {
        entry.starts_with(PREFIX.as_bytes())
    }

    /// Parses `$pbkdf2-sha256$i=N[,l=32]$salt$hash`.
    pub fn parse(entry: &str) -> Result<PasswordHash, String> {
        let rest = entry
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("not a {PREFIX} hash"))?;
        let mut parts = rest.split('$');
        let (Some(params), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected $pbkdf2-sha256$i=N$salt$hash".to_owned());
        };
        let mut iterations = None;
        for param in params.split(',') {
            match param.split_once('=') {
                Some(("i", n)) => {
                    iterations = Some(n.parse::<u32>().map_err(|_| format!("bad i={n}"))?)
                }
                Some(("l", "32")) => {}
                _ => return Err(format!("unsupported parameter {param:?}")),
            }
        }
        let iterations = iterations.ok_or("missing i=<iterations>")?;
        if iterations < MIN_ITERATIONS {
            return Err(format!(
                "{iterations} iterations is too few (at least {MIN_ITERATIONS})"
            ));
        }
        let salt = B64.decode(salt).map_err(|_| "salt is not base64")?;
        if salt.len() < 8 {
            return Err("salt shorter than 8 bytes".to_owned());
        }
        let hash: [u8; KEY_LEN] = B64
            .decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or("hash is not 32 bytes of base64")?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Hashes `password` with `salt` (done once, off the reactor, by
    /// `ferryd hash-password`).
    pub fn new(password: &[u8], salt: &[u8], iterations: u32) -> PasswordHash {
        let mut check = Check::start(password, salt, iterations, [0; KEY_LEN]);
        while check.step(u32::MAX).is_none() {}
        PasswordHash {
            iterations,
            salt: salt.to_vec(),
            hash: check.t(),
        }
    }

    /// Starts checking `password` against this hash.
    pub fn check(&self, password: &[u8]) -> Check {
        Check::start(password, &self.salt, self.iterations, self.hash)
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}i={},l={KEY_LEN}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.hash)
        )
    }
}

/// A password check in progress: PBKDF2 with one output block,
/// `T = U1 ^ U2 ^ ... ^ Uc` where `U1 = HMAC(P, S || 1)` and
/// `Ui = HMAC(P, U(i-1))`.
pub struct Check {
    /// SHA-256 states after the HMAC key's inner and outer pad blocks:
    /// each iteration then costs exactly two compressions, with no hasher
    /// to clone or finalise.
    inner: [u32; 8],
    outer: [u32; 8],
    /// The last block of each of the two hashes, padding and length
    /// already in place: an iteration writes only the 32 bytes of `U`
    /// (into `block`) and of the inner hash (into `inner_out`). Kept in
    /// words and whole blocks so that an unoptimised build (the tests)
    /// runs few instructions per round: the rounds are most of a test
    /// run's CPU time when it makes the 600000-round demo user.
    block: [u8; 64],
    inner_out: [u8; 64],
    t: [u32; 8],
    done: u32,
    iterations: u32,
    expected: [u8; KEY_LEN],
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The state after one block of `key ^ pad` (the key padded to 64 bytes,
/// hashed first when longer, as HMAC does).
fn pad_state(key: &[u8], pad: u8) -> [u32; 8] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        use sha2::Digest as _;
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    for byte in &mut block {
        *byte ^= pad;
    }
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, &[block]);
    state
}

/// The final block of a SHA-256 over one 64-byte block already hashed
/// and 32 bytes still to come (written at the front later): padding and
/// the length of 64 + 32 bytes, 768 bits.
fn tail_block() -> [u8; 64] {
    let mut block = [0u8; 64];
    block[32] = 0x80;
    block[56..].copy_from_slice(&768u64.to_be_bytes());
    block
}

/// Writes `state` big-endian over the first 32 bytes of `block`.
fn put_state(block: &mut [u8; 64], state: &[u32; 8]) {
    let mut i = 0;
    while i < 8 {
        let [a, b, c, d] = state[i].to_be_bytes();
        block[4 * i] = a;
        block[4 * i + 1] = b;
        block[4 * i + 2] = c;
        block[4 * i + 3] = d;
        i += 1;
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Check({}/{})", self.done, self.iterations)
    }
}

impl Check {
    fn start(password: &[u8], salt: &[u8], iterations: u32, expected: [u8; KEY_LEN]) -> Check {
        // HMAC takes keys of any length.
        let mut first = <Hmac<Sha256> as KeyInit>::new_from_slice(password)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        first.update(salt);
        first.update(&1u32.to_be_bytes());
        let u: [u8; KEY_LEN] = first.finalize().into_bytes().into();
        let mut block = tail_block();
        block[..KEY_LEN].copy_from_slice(&u);
        let mut t = [0u32; 8];
        for (word, bytes) in t.iter_mut().zip(u.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        Check {
            inner: pad_state(password, 0x36),
            outer: pad_state(password, 0x5c),
            block,
            inner_out: tail_block(),
            t,
            done: 1,
            iterations,
            expected,
        }
    }

    /// Runs at most `budget` more iterations. `None` while unfinished;
    /// then whether the password matched (compared in constant time).
    pub fn step(&mut self, budget: u32) -> Option<bool> {
        let end = self.iterations.min(self.done.saturating_add(budget));
        while self.done < end {
            // HMAC(P, u) = H(outer pad || H(inner pad || u)).
            let mut state = self.inner;
            sha2::block_api::compress256(&mut state, std::slice::from_ref(&self.block));
            put_state(&mut self.inner_out, &state);
            state = self.outer;
            sha2::block_api::compress256(&mut state, std::slice::from_ref(&self.inner_out));
            put_state(&mut self.block, &state);
            let mut i = 0;
            while i < 8 {
                self.t[i] ^= state[i];
                i += 1;
            }
            self.done += 1;
        }
        (self.done >= self.iterations).then(|| bool::from(self.t().ct_eq(&self.expected)))
    }

    /// The derived key, `T`, as bytes.
    fn t(&self) -> [u8; KEY_LEN] {
        let mut block = [0u8; 64];
        put_state(&mut block, &self.t);
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(&block[..KEY_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_pbkdf2_crate() {
        for (password, salt, iterations) in [
            (&b"password"[..], &b"saltsalt"[..], 1_000),
            (b"", b"0123456789abcdef", 1_001),
            (b"p\xffw \x00", b"longer salt than usual", 4_321),
            // Longer than a block: HMAC hashes the key first.
            (&[0x5a; 65][..], b"saltsalt", 1_000),
            (&[0x5a; 64][..], b"saltsalt", 1_000),
        ] {
            let ours = PasswordHash::new(password, salt, iterations);
            let mut theirs = [0u8; KEY_LEN];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut theirs);
            assert_eq!(ours.hash, theirs);
        }
    }

    #[test]
    fn format_round_trip_and_slices() {
        let hash = PasswordHash::new(b"correct horse", b"NaCl-and-more", 5_000);
        let text = hash.to_string();
        assert!(text.starts_with("$pbkdf2-sha256$i=5000,l=32$"), "{text}");
        assert_eq!(PasswordHash::parse(&text), Ok(hash.clone()));
        let short = text.replace(",l=32", "");
        assert_eq!(PasswordHash::parse(&short), Ok(hash.clone()));

        let mut check = hash.check(b"correct horse");
        let mut steps = 0;
        let result = loop {
            steps += 1;
            if let Some(result) = check.step(1_000) {
                break result;
            }
        };
        assert!(result);
        assert_eq!(steps, 5);
        let mut wrong = hash.check(b"correct horsf");
        assert_eq!(wrong.step(u32::MAX), Some(false));
    }

    #[test]
    fn rejects_malformed_and_weak_hashes() {
        let good = PasswordHash::new(b"x", b"saltsalt", 1_000).to_string();
        for bad in [
            "$pbkdf2-sha256$i=999$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=1000$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$AAAA",
            "$pbkdf2-sha256$i=1000,l=64$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha512$i=1000$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
        assert!(PasswordHash::parse(&good).is_ok());
        assert!(PasswordHash::parse(&format!("{good}$extra")).is_err());
    }
}
