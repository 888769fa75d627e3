//! Users and their passwords: the `id_passwd.txt` format, and checking a
//! login without telling an unknown user from a wrong password.
//!
//! A password entry is either plain text or a PBKDF2 hash
//! ([`crate::kdf`], `$pbkdf2-sha256$...`). Plain entries are checked at
//! once; hashed ones return a [`PendingLogin`] that the session runs a
//! slice at a time.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use subtle::ConstantTimeEq;

use crate::kdf::{self, PasswordHash};

/// Longest username: short enough for a directory name and a log line.
const MAX_USERNAME_LEN: usize = 32;
/// Length of the generated password of the default user: 20 characters of
/// 62 symbols, about 119 bits.
const GENERATED_PASSWORD_LEN: usize = 20;
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// A password compared against when the user is unknown, so that an unknown
/// user costs the same work as a wrong password.
const DECOY_PASSWORD: &[u8] = b"ferry-decoy-password-never-matches";

/// How a user's password is kept.
#[derive(Clone)]
enum Secret {
    Plain(Vec<u8>),
    Hashed(PasswordHash),
}

/// The users a server accepts.
#[derive(Clone, Default)]
pub struct Users {
    passwords: HashMap<String, Secret>,
    /// A hash that an unknown user's password is checked against when
    /// hashed entries exist, so that it costs what a real check costs.
    decoy: Option<PasswordHash>,
}

/// The outcome of starting a login check.
#[derive(Debug)]
pub enum Verification {
    /// Decided: the user's name, or `None` for a failure.
    Done(Option<String>),
    /// A hashed password: run [`PendingLogin::step`] until it decides.
    Pending(Box<PendingLogin>),
}

/// A login whose password hash is being checked, a slice at a time.
#[derive(Debug)]
pub struct PendingLogin {
    /// `None` for an unknown user (checked against the decoy).
    name: Option<String>,
    check: kdf::Check,
    /// For a plain-text entry: whether the password matched. The check
    /// then runs against the decoy only so that the answer takes as long
    /// as a hashed one, and this decides.
    plain: Option<bool>,
}

impl PendingLogin {
    /// Runs at most `budget` iterations; `Some` once decided, with the
    /// user's name on success.
    pub fn step(&mut self, budget: u32) -> Option<Option<String>> {
        let matched = self.check.step(budget)?;
        let matched = self.plain.unwrap_or(matched);
        Some(self.name.take().filter(|_| matched))
    }

    /// Runs iterations for about `time` (checking the clock every
    /// [`kdf::ITERATIONS_PER_CLOCK_CHECK`]), so a slice stays short on any
    /// machine and in any build.
    pub fn step_for(&mut self, time: std::time::Duration) -> Option<Option<String>> {
        let started = std::time::Instant::now();
        loop {
            if let Some(result) = self.step(kdf::ITERATIONS_PER_CLOCK_CHECK) {
                return Some(result);
            }
            if started.elapsed() >= time {
                return None;
            }
        }
    }
}

// Passwords must never reach a log, so Debug shows the names only.
impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.passwords.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

/// What is wrong with a users file: the 1-based line and a message. Its
/// `Display` is `LINE: message`, to be put behind the file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

impl std::error::Error for UsersError {}

/// Why a users file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    Io(io::Error),
    Invalid(UsersError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(err) => write!(f, "{err}"),
            LoadError::Invalid(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Usernames are 1 to 32 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`
/// (so a username is always a plain, visible directory name).
pub fn is_valid_username(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && !matches!(name[0], b'.' | b'-')
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Users {
    pub fn new() -> Users {
        Users::default()
    }

    pub fn len(&self) -> usize {
        self.passwords.len()
    }

    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }

    /// Adds a user. Fails on an invalid username, an empty password, or a
    /// user that already exists.
    pub fn insert(&mut self, user: &str, password: &[u8]) -> Result<(), String> {
        if !is_valid_username(user.as_bytes()) {
            return Err(format!(
                "invalid username {user:?} (1 to {MAX_USERNAME_LEN} of A-Z a-z 0-9 _ . -, not starting with . or -)"
            ));
        }
        if password.is_empty() {
            return Err(format!("empty password for user {user:?}"));
        }
        if self.passwords.contains_key(user) {
            return Err(format!("duplicate user {user:?}"));
        }
        let secret = if PasswordHash::is_hash(password) {
            let text = std::str::from_utf8(password)
                .map_err(|_| format!("password hash of {user:?} is not UTF-8"))?;
            let hash = PasswordHash::parse(text)
                .map_err(|why| format!("password hash of {user:?}: {why}"))?;
            // The decoy costs what the most expensive real check costs.
            if self
                .decoy
                .as_ref()
                .is_none_or(|decoy| decoy.iterations() < hash.iterations())
            {
                self.decoy = Some(PasswordHash::new(
                    DECOY_PASSWORD,
                    b"ferry-decoy-salt",
                    hash.iterations(),
                ));
            }
            Secret::Hashed(hash)
        } else {
            Secret::Plain(password.to_vec())
        };
        self.passwords.insert(user.to_owned(), secret);
        Ok(())
    }

    /// The users whose password is stored in plain text, sorted.
    pub fn plain_text_users(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .passwords
            .iter()
            .filter(|(_, secret)| matches!(secret, Secret::Plain(_)))
            .map(|(name, _)| name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// Parses the `id_passwd.txt` format: one `username:password` per line
    /// (the first `:` splits), blank lines and lines starting with `#`
    /// ignored, CRLF tolerated.
    pub fn parse(text: &[u8]) -> Result<Users, UsersError> {
        let mut users = Users::new();
        for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.iter().all(u8::is_ascii_whitespace) || line.first() == Some(&b'#') {
                continue;
            }
            let fail = |message: String| UsersError {
                line: index + 1,
                message,
            };
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| fail("expected username:password".to_owned()))?;
            let (user, password) = (&line[..colon], &line[colon + 1..]);
            let user = std::str::from_utf8(user)
                .map_err(|_| fail("username is not valid UTF-8".to_owned()))?;
            users.insert(user, password).map_err(fail)?;
        }
        Ok(users)
    }

    /// Reads and parses a users file.
    pub fn load(path: &Path) -> Result<Users, LoadError> {
        let text = fs::read(path).map_err(LoadError::Io)?;
        Users::parse(&text).map_err(LoadError::Invalid)
    }

    /// Creates a new users file (mode 0600; it must not exist yet) holding
    /// one user `demo` with a random password, stored hashed, and returns
    /// the users and that password.
    pub fn create_default(path: &Path) -> io::Result<(Users, String)> {
        let password = random_password()?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        // Hashed, so that the file holds nothing a reader could log in with
        // and start-up does not warn about a plain-text password.
        let entry = hash_entry(password.as_bytes(), crate::kdf::DEFAULT_ITERATIONS)?;
        let text = format!("# ferry users: one username:password per line.\ndemo:{entry}\n");
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        let mut users = Users::new();
        users
            .insert("demo", entry.as_bytes())
            .map_err(io::Error::other)?;
        Ok((users, password))
    }

    pub fn contains(&self, user: &str) -> bool {
        self.passwords.contains_key(user)
    }

    /// A digest of how `user`'s password is kept, which changes when the
    /// password does: what a login kept beyond its check (a web
    /// interface cookie) holds only while it stays the same.
    pub fn fingerprint(&self, user: &str) -> Option<[u8; 32]> {
        let entry = match self.passwords.get(user)? {
            Secret::Plain(password) => [b"plain:".as_slice(), password].concat(),
            Secret::Hashed(hash) => format!("hashed:{hash}").into_bytes(),
        };
        Some(*crate::integrity::Digest::of(&entry).as_bytes())
    }

    /// Checks a plain-text login at once. Returns the user's name when the
    /// password matches. An unknown user is compared against a decoy, so
    /// both failures take the same path; password bytes are compared in
    /// constant time. A hashed entry never matches here: use
    /// [`Users::start_verify`].
    pub fn verify(&self, user: &[u8], password: &[u8]) -> Option<&str> {
        let found = std::str::from_utf8(user)
            .ok()
            .and_then(|user| self.passwords.get_key_value(user));
        let expected = match found {
            Some((_, Secret::Plain(p))) => p.as_slice(),
            _ => DECOY_PASSWORD,
        };
        let matches = bool::from(expected.ct_eq(password));
        match found {
            Some((name, Secret::Plain(_))) if matches => Some(name.as_str()),
            _ => None,
        }
    }

    /// Starts checking a login: with no hashed entry in the file every
    /// login is decided at once; with one, every login (hashed, plain
    /// text or unknown user) runs a check of the same cost a slice at a
    /// time, so the time of the answer tells nothing about the user.
    pub fn start_verify(&self, user: &[u8], password: &[u8]) -> Verification {
        let found = std::str::from_utf8(user)
            .ok()
            .and_then(|user| self.passwords.get_key_value(user));
        let Some(decoy) = &self.decoy else {
            return Verification::Done(self.verify(user, password).map(str::to_owned));
        };
        let pending = match found {
            Some((name, Secret::Hashed(hash))) => PendingLogin {
                name: Some(name.clone()),
                check: hash.check(password),
                plain: None,
            },
            Some((name, Secret::Plain(_))) => PendingLogin {
                name: Some(name.clone()),
                check: decoy.check(password),
                plain: Some(self.verify(user, password).is_some()),
            },
            None => PendingLogin {
                name: None,
                check: decoy.check(password),
                plain: None,
            },
        };
        Verification::Pending(Box::new(pending))
    }
}

/// A password's users-file entry: `$pbkdf2-sha256$...` with a fresh salt.
pub fn hash_entry(password: &[u8], iterations: u32) -> io::Result<String> {
    let salt = random_bytes(16)?;
    Ok(crate::kdf::PasswordHash::new(password, &salt, iterations).to_string())
}

/// `n` bytes from the kernel's random source (salts).
pub fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; n];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A password from the kernel's random source: letters and digits only, so
/// it can be typed and pasted anywhere.
fn random_password() -> io::Result<String> {
    let mut source = fs::File::open("/dev/urandom")?;
    let mut password = String::with_capacity(GENERATED_PASSWORD_LEN);
    let mut byte = [0u8; 1];
    // Rejection sampling keeps every symbol equally likely: 248 is the
    // largest multiple of 62 that fits in a byte.
    let limit = 256 - 256 % PASSWORD_ALPHABET.len();
    while password.len() < GENERATED_PASSWORD_LEN {
        source.read_exact(&mut byte)?;
        if usize::from(byte[0]) < limit {
            password.push(char::from(
                PASSWORD_ALPHABET[usize::from(byte[0]) % PASSWORD_ALPHABET.len()],
            ));
        }
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_blank_lines_and_crlf() {
        let users = Users::parse(b"# users\r\n\r\nalice:s3cret\r\n  \nbob:pa:ss word\n").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users.verify(b"alice", b"s3cret"), Some("alice"));
        assert_eq!(users.verify(b"bob", b"pa:ss word"), Some("bob"));
    }

    #[test]
    fn wrong_password_and_unknown_user_both_fail() {
        let users = Users::parse(b"alice:s3cret\n").unwrap();
        assert_eq!(users.verify(b"alice", b"s3cre"), None);
        assert_eq!(users.verify(b"alice", b"s3crets"), None);
        assert_eq!(users.verify(b"mallory", b"s3cret"), None);
        assert_eq!(users.verify(b"mallory", DECOY_PASSWORD), None);
        assert_eq!(users.verify(b"\xff", b"x"), None);
    }

    #[test]
    fn errors_name_the_line() {
        let cases: [(&[u8], usize, &str); 5] = [
            (b"alice:x\nnocolon\n", 2, "expected username:password"),
            (b"alice:x\n\nalice:y\n", 3, "duplicate user"),
            (b"-bad:x\n", 1, "invalid username"),
            (b"a/b:x\n", 1, "invalid username"),
            (b"alice:\n", 1, "empty password"),
        ];
        for (text, line, message) in cases {
            let err = Users::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{err}");
            assert!(err.message.contains(message), "{err}");
        }
    }

    #[test]
    fn username_rules() {
        assert!(is_valid_username(b"a"));
        assert!(is_valid_username(b"A.b_c-9"));
        assert!(is_valid_username(&[b'x'; 32]));
        assert!(!is_valid_username(&[b'x'; 33]));
        assert!(!is_valid_username(b""));
        assert!(!is_valid_username(b".hidden"));
        assert!(!is_valid_username(b"-dash"));
        assert!(!is_valid_username(b"sp ace"));
    }

    #[test]
    fn default_file_is_private_and_loadable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_passwd.txt");
        let (users, password) = Users::create_default(&path).unwrap();
        assert_eq!(password.len(), GENERATED_PASSWORD_LEN);
        assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
        // Stored hashed: only a full check logs in.
        let check = |users: &Users, password: &str| match users
            .start_verify(b"demo", password.as_bytes())
        {
            Verification::Done(result) => result,
            Verification::Pending(mut pending) => pending.step(u32::MAX).unwrap(),
        };
        assert_eq!(users.plain_text_users(), Vec::<&str>::new());
        assert_eq!(check(&users, &password).as_deref(), Some("demo"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!fs::read_to_string(&path).unwrap().contains(&password));
        let loaded = Users::load(&path).unwrap();
        assert_eq!(check(&loaded, &password).as_deref(), Some("demo"));
        assert_eq!(check(&loaded, "wrong"), None);
        assert!(!format!("{users:?}").contains(&password));
        assert!(Users::create_default(&path).is_err(), "must not overwrite");
    }
}
