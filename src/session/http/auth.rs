//! Who an HTTP request is: Basic credentials checked once per connection
//! (and users file) and remembered as a digest, a client certificate, the
//! metrics token; the user's directory kept for the connection's next
//! requests.

use std::io;
use std::net::SocketAddr;

use super::{Session, State};
use crate::audit::Who;
use crate::integrity::Hasher;
use crate::metrics::Protocol;
use crate::protocol::http::Credentials;
use crate::session::{self, LoginStart, PasswordCheck, Services};
use crate::storage::UserDir;

/// A password check for the request waiting at the front of the input.
#[derive(Debug)]
pub(super) struct HttpVerifying {
    pub(super) key: [u8; 32],
    pub(super) check: PasswordCheck,
    /// [`Services::users_generation`] when the check started.
    pub(super) generation: u64,
}

/// The last credentials checked on this connection and their outcome, so a
/// keep-alive client does not pay for a password check per request.
#[derive(Debug)]
pub(super) struct AuthCache {
    /// SHA-256 of the user and password, not the password itself.
    pub(super) key: [u8; 32],
    pub(super) result: Option<String>,
    /// The users file the outcome was decided under
    /// ([`Services::users_generation`]): after a reload it is checked
    /// again, so a removed user or an old password stops working at once.
    pub(super) generation: u64,
    /// Whether the outcome is already in the audit log and counters.
    pub(super) recorded: bool,
    /// The user's directory, once a request needed it: kept for the
    /// requests that follow on this connection, as a line session keeps
    /// it from login to logout, so that each does not open it again.
    pub(super) dir: Option<UserDir>,
}

/// What [`Session::authenticate`] found.
pub(super) enum Authenticated {
    User(String),
    No,
    Pending,
    /// Too many password checks wait: `503`, try again later.
    Busy,
}

/// Who an audit line is about.
pub(super) fn who(peer: SocketAddr, user: &str) -> Who<'_> {
    Who {
        peer,
        protocol: Protocol::Http,
        user,
    }
}

/// A digest of credentials for [`AuthCache`]: user and password with a
/// separator, so `a:bc` and `ab:c` differ.
fn credentials_key(user: &[u8], password: &[u8]) -> [u8; 32] {
    let mut hasher = Hasher::new();
    hasher.update(&(user.len() as u64).to_be_bytes());
    hasher.update(user);
    hasher.update(password);
    *hasher.finish().as_bytes()
}

/// Whether the request carries the metrics token, compared in constant
/// time so that the time to refuse tells nothing about the token.
pub(super) fn bearer_matches(credentials: &Credentials, token: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    match (credentials, token) {
        (Credentials::Bearer(given), Some(token)) => {
            bool::from(given.as_slice().ct_eq(token.as_bytes()))
        }
        _ => false,
    }
}

impl Session {
    /// The user the credentials name; a failure is counted (wrong
    /// credentials) or not (none given). A hashed password puts the session
    /// in `Verifying` and the request is handled again when it is decided.
    pub(super) fn authenticate(
        &mut self,
        credentials: &Credentials,
        services: &Services,
    ) -> Authenticated {
        if let Some(user) = self.cookie_user.take() {
            return Authenticated::User(user.into());
        }
        let (user, password): (&[u8], &[u8]) = match credentials {
            Credentials::Missing | Credentials::Bearer(_)
                if self.shell.channel.certified.is_some() =>
            {
                return self.certificate_login(services);
            }
            Credentials::Missing | Credentials::Bearer(_) => return Authenticated::No,
            Credentials::Malformed => (b"", b""),
            Credentials::Basic { user, password } => (user, password),
        };
        let key = credentials_key(user, password);
        let generation = services.users_generation();
        let result = match self.auth_cache.take() {
            // Decided before on this connection (or just now, by a
            // password check) under the users in force: no second check.
            Some(cached) if cached.key == key && cached.generation == generation => {
                let result = if cached.result.is_some() && cached.recorded {
                    cached.result.clone()
                } else {
                    session::finish_login(
                        services,
                        self.shell.peer,
                        user,
                        cached.result.clone(),
                        false,
                        Protocol::Http,
                    )
                };
                self.auth_cache = Some(Box::new(AuthCache {
                    recorded: true,
                    ..*cached
                }));
                result
            }
            _ => {
                match session::start_login(
                    services,
                    self.shell.peer,
                    user,
                    password,
                    Protocol::Http,
                ) {
                    LoginStart::Done(result) => {
                        let result = session::finish_login(
                            services,
                            self.shell.peer,
                            user,
                            result,
                            false,
                            Protocol::Http,
                        );
                        self.auth_cache = Some(Box::new(AuthCache {
                            key,
                            result: result.clone(),
                            generation,
                            recorded: true,
                            dir: None,
                        }));
                        result
                    }
                    LoginStart::Locked => session::finish_login(
                        services,
                        self.shell.peer,
                        user,
                        None,
                        true,
                        Protocol::Http,
                    ),
                    LoginStart::Busy => return Authenticated::Busy,
                    LoginStart::Pending(check) => {
                        self.state = State::Verifying(Box::new(HttpVerifying {
                            key,
                            check,
                            generation,
                        }));
                        return Authenticated::Pending;
                    }
                }
            }
        };
        if let Some(name) = result {
            return Authenticated::User(name);
        }
        // The response to it closes the connection after the last failure
        // allowed (see `handle`).
        session::failed_on_connection(&mut self.failures, &mut self.shell, services);
        Authenticated::No
    }

    /// A request without credentials on a connection with a client
    /// certificate: the user it names, when it is valid and names one; a
    /// failed login otherwise. Decided once per connection (and users
    /// file); a failure counts again with every request, as a wrong
    /// password would.
    fn certificate_login(&mut self, services: &Services) -> Authenticated {
        let claimed = self
            .shell
            .channel
            .certified_user()
            .unwrap_or_default()
            .to_owned();
        let key = credentials_key(claimed.as_bytes(), b"\0client certificate");
        let generation = services.users_generation();
        if let Some(cached) = &self.auth_cache
            && cached.key == key
            && cached.generation == generation
            && let Some(user) = &cached.result
        {
            return Authenticated::User(user.clone());
        }
        let peer = self.shell.peer;
        let start = session::start_certificate_login(
            services,
            &self.shell.channel,
            peer,
            claimed.as_bytes(),
        );
        let (result, locked) = match start {
            LoginStart::Done(result) => (result, false),
            _ => (None, true),
        };
        let result = session::finish_login(
            services,
            peer,
            claimed.as_bytes(),
            result,
            locked,
            Protocol::Http,
        );
        self.auth_cache = Some(Box::new(AuthCache {
            key,
            result: result.clone(),
            generation,
            recorded: true,
            dir: None,
        }));
        if let Some(name) = result {
            return Authenticated::User(name);
        }
        session::failed_on_connection(&mut self.failures, &mut self.shell, services);
        Authenticated::No
    }

    /// The directory of `user`, who the cached credentials name.
    pub(super) fn user_dir(&mut self, user: &str, services: &Services) -> io::Result<UserDir> {
        let Some(cache) = self
            .auth_cache
            .as_mut()
            .filter(|cache| cache.result.as_deref() == Some(user))
        else {
            return services.storage.user_dir(user);
        };
        if let Some(dir) = &cache.dir {
            return Ok(dir.clone());
        }
        let dir = services.storage.user_dir(user)?;
        cache.dir = Some(dir.clone());
        Ok(dir)
    }
}
