//! The one table from every error a session meets (storage, quota, parse,
//! I/O, refusal) to what each front says about it: a line reply, and an
//! HTTP status with the text of its plain-text body. No other code decides
//! a reply code for an error.

use crate::sys;
use std::borrow::Cow;
use std::io;

use crate::limits::Refusal;
use crate::protocol::http::{HeadError, reason};
use crate::protocol::line::{ParseError, Verb};
use crate::protocol::reply::{OUT_OF_DESCRIPTORS, Reply, describe_io};
use crate::protocol::webdav::XmlError;
use crate::storage::{OverQuota, PutRefusal, StorageError};

/// An error some layer reported, on its way to the client.
#[derive(Debug)]
pub(crate) enum Failure {
    Storage(StorageError),
    OverQuota(OverQuota),
    /// Larger than `--max-file-size`.
    TooLarge {
        max: u64,
    },
    /// A command line that cannot be run (the line protocol's).
    Parse(ParseError),
    /// A request head that cannot be read (HTTP's).
    Head(HeadError),
    /// An offset to continue from past the size announced.
    OffsetPastEnd {
        offset: u64,
        size: u64,
    },
    /// Too many password checks wait.
    LoginsBusy,
    /// No (right) credentials for what needs a login.
    NotLoggedIn,
    /// A login over plaintext from a non-loopback address (`--require-tls`).
    TlsRequired,
    /// A failure of the server's own that the client can do nothing about
    /// (the user's directory cannot be prepared).
    Internal(io::Error),
    /// The client took too long (to log in, to send a request or its
    /// body).
    Timeout,
    /// The server is shutting down, and what ran was cut.
    ShuttingDown,
    /// A request the front cannot serve, for a reason of its own syntax.
    Request(Refused),
    /// A connection over the client limits, refused before its session.
    Connections(Refusal),
    /// A WebDAV request refused for its meaning (locks, conditions, XML).
    Dav(DavRefused),
}

/// Why a WebDAV (or conditional) request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DavRefused {
    /// A body that is not the XML the method takes, or is refused (DTD,
    /// entities, too deep).
    Xml(XmlError),
    /// A `Depth`, `If`, `Timeout` or `Lock-Token` field that cannot be read.
    BadField(&'static str),
    /// `PROPFIND` with `Depth: infinity`.
    InfiniteDepth,
    /// A `PROPFIND`, `PROPPATCH` or `LOCK` body over its bound.
    BodyTooLarge,
    /// A conditional request (`If`, `If-Match`, `If-None-Match`) whose
    /// condition does not hold.
    PreconditionFailed,
    /// The resource is locked and the request did not give the lock's
    /// token.
    Locked,
    /// A `LOCK` that conflicts with a lock already held.
    LockConflict,
    /// Too many locks are held.
    LocksFull,
    /// An `UNLOCK` without a `Lock-Token`.
    NoLockToken,
    /// An `UNLOCK` whose token is not a lock on the resource.
    TokenMismatch,
    /// A `LOCK` refresh whose `If` names no lock on the resource.
    NoLockToRefresh,
}

impl DavRefused {
    /// The precondition element (RFC 4918 §16) the refusal's XML body
    /// names, when it has one.
    pub(crate) fn condition(self) -> Option<&'static str> {
        match self {
            DavRefused::InfiniteDepth => Some("propfind-finite-depth"),
            DavRefused::Locked => Some("lock-token-submitted"),
            DavRefused::LockConflict => Some("no-conflicting-lock"),
            DavRefused::TokenMismatch => Some("lock-token-matches-request-uri"),
            _ => None,
        }
    }
}

impl From<DavRefused> for Failure {
    fn from(refused: DavRefused) -> Failure {
        Failure::Dav(refused)
    }
}

/// Why a request is refused for its syntax, whichever front's. (Each front
/// meets some of them only; the other's answer is the nearest it has.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such resource (HTTP: a path outside the routes).
    NoRoute,
    /// A method (verb) nobody knows.
    UnknownMethod,
    /// A known method the resource does not take.
    MethodNotAllowed,
    /// An upload whose length is not given in any way.
    LengthRequired,
    /// An `Expect` the server does not meet.
    ExpectationFailed,
    /// A request that cannot be read as one: a file name that is not one,
    /// a body whose framing breaks.
    Malformed,
    /// A range outside the file.
    RangeNotSatisfiable,
    /// A file name that breaks the rules.
    NameNotAllowed,
    /// A state-changing request of a browser login without its CSRF token,
    /// or sent from another site (`Origin`, `Sec-Fetch-Site`).
    CrossSite,
    /// An HTTP upload continued short of the bytes held (or without their
    /// hash state): the line protocol's `REST` can, HTTP cannot.
    ResumeUnhashed,
    /// A body where the method takes none (`MKCOL`'s).
    UnsupportedBody,
}

impl From<Refused> for Failure {
    fn from(refused: Refused) -> Failure {
        Failure::Request(refused)
    }
}

impl From<StorageError> for Failure {
    fn from(err: StorageError) -> Failure {
        Failure::Storage(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        Failure::Storage(StorageError::Io(err))
    }
}

impl From<OverQuota> for Failure {
    fn from(over: OverQuota) -> Failure {
        Failure::OverQuota(over)
    }
}

impl From<PutRefusal> for Failure {
    fn from(refusal: PutRefusal) -> Failure {
        match refusal {
            PutRefusal::TooLarge { max } => Failure::TooLarge { max },
            PutRefusal::OverQuota(over) => Failure::OverQuota(over),
            PutRefusal::OffsetPastEnd { offset, size } => Failure::OffsetPastEnd { offset, size },
            PutRefusal::Storage(err) => Failure::Storage(err),
        }
    }
}

impl From<ParseError> for Failure {
    fn from(err: ParseError) -> Failure {
        Failure::Parse(err)
    }
}

impl From<HeadError> for Failure {
    fn from(err: HeadError) -> Failure {
        Failure::Head(err)
    }
}

impl Failure {
    /// True for a refusal that ends the connection though the session
    /// would not otherwise: a request that found no descriptor free is
    /// answered as temporary (`421`, HTTP `503` with `Retry-After`), and
    /// closing gives a descriptor back; the client comes back later.
    pub(crate) fn ends_connection(&self) -> bool {
        match self {
            Failure::Storage(StorageError::Io(err)) | Failure::Internal(err) => {
                sys::out_of_descriptors(err)
            }
            _ => false,
        }
    }

    /// What the line protocol (and the control port) answers.
    pub(crate) fn reply(self) -> Reply {
        if self.ends_connection() {
            return Reply::OutOfDescriptors;
        }
        match self {
            Failure::Storage(StorageError::NotFound) => Reply::NoSuchFile,
            Failure::Storage(StorageError::NotRegular) => Reply::NotRegularFile,
            Failure::Storage(StorageError::OffsetPastHeld { offset, held }) => {
                Reply::OffsetPastHeld { offset, held }
            }
            Failure::Storage(StorageError::Io(err)) => Reply::LocalError(err),
            Failure::Storage(StorageError::NoFolder) => Reply::NoSuchFolder,
            Failure::Storage(StorageError::IsFolder) => Reply::IsFolder,
            Failure::Storage(StorageError::NotFolder) => Reply::NotFolder,
            Failure::Storage(StorageError::NotEmpty) => Reply::NotEmpty,
            Failure::Storage(StorageError::Exists) => Reply::Exists,
            Failure::Storage(StorageError::IntoItself) => Reply::IntoItself,
            Failure::Storage(StorageError::SamePath) => Reply::SamePath,
            Failure::OverQuota(OverQuota::Bytes { quota }) => Reply::QuotaBytes { quota },
            Failure::OverQuota(OverQuota::Files { max }) => Reply::QuotaFiles { max },
            Failure::TooLarge { max } => Reply::TooLarge { max },
            Failure::Parse(ParseError::EmptyLine) => Reply::EmptyLine,
            Failure::Parse(ParseError::UnknownCommand) => Reply::UnknownCommand,
            Failure::Parse(ParseError::LineTooLong) => Reply::LineTooLong,
            Failure::Parse(ParseError::BadArguments(verb)) => Reply::BadArguments(verb),
            Failure::Parse(ParseError::NameNotAllowed(_)) => Reply::NameNotAllowed,
            // A line client never sends a request head; the nearest words.
            Failure::Head(HeadError::HeadTooLarge | HeadError::TargetTooLong) => Reply::LineTooLong,
            Failure::Head(_) => Reply::UnknownCommand,
            Failure::OffsetPastEnd { offset, size } => Reply::OffsetPastEnd { offset, size },
            Failure::LoginsBusy => Reply::LoginsBusy,
            Failure::Connections(Refusal::OutOfDescriptors) => Reply::OutOfDescriptors,
            Failure::Connections(_) => Reply::TooManyConnections,
            Failure::NotLoggedIn => Reply::NotLoggedIn,
            Failure::TlsRequired => Reply::TlsRequired,
            Failure::Internal(err) => Reply::LocalError(err),
            Failure::Timeout => Reply::Timeout,
            Failure::ShuttingDown => Reply::ShuttingDown,
            Failure::Request(Refused::NoRoute | Refused::UnknownMethod) => Reply::UnknownCommand,
            Failure::Request(Refused::MethodNotAllowed | Refused::ExpectationFailed) => {
                Reply::UnknownCommand
            }
            Failure::Request(Refused::LengthRequired) => Reply::BadArguments(Verb::Put),
            Failure::Request(Refused::Malformed | Refused::NameNotAllowed) => Reply::NameNotAllowed,
            Failure::Request(Refused::RangeNotSatisfiable) => Reply::BadArguments(Verb::Rest),
            // Only the web interface meets it.
            Failure::Request(Refused::CrossSite) => Reply::NotLoggedIn,
            Failure::Request(Refused::ResumeUnhashed) => Reply::BadArguments(Verb::Rest),
            Failure::Request(Refused::UnsupportedBody) => Reply::UnknownCommand,
            // A WebDAV lock, met by a line command (which cannot give
            // its token); the line protocol meets no other WebDAV refusal.
            Failure::Dav(DavRefused::Locked | DavRefused::LockConflict) => Reply::Locked,
            Failure::Dav(_) => Reply::UnknownCommand,
        }
    }

    /// What HTTP answers: the status, and the text of the plain-text body
    /// (a newline follows it on the wire).
    pub(crate) fn http(&self) -> (u16, Cow<'static, str>) {
        if self.ends_connection() {
            return (503, OUT_OF_DESCRIPTORS.into());
        }
        match self {
            Failure::Storage(StorageError::NotFound) => (404, "no such file".into()),
            Failure::Storage(StorageError::NotRegular) => (403, "not a regular file".into()),
            Failure::Storage(err @ StorageError::OffsetPastHeld { .. }) => {
                (416, err.to_string().into())
            }
            // WebDAV's words (RFC 4918): a missing parent, a folder in
            // the way or not empty, a replacement not allowed are
            // conflicts; a move into itself is forbidden. A front that
            // means another status for one method (404 for a missing
            // folder on GET, 412 or 405 for an existing target) says so.
            Failure::Storage(
                err @ (StorageError::NoFolder
                | StorageError::IsFolder
                | StorageError::NotFolder
                | StorageError::NotEmpty
                | StorageError::Exists),
            ) => (409, err.to_string().into()),
            Failure::Storage(err @ (StorageError::IntoItself | StorageError::SamePath)) => {
                (403, err.to_string().into())
            }
            Failure::Storage(StorageError::Io(err)) => match err.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => (507, describe_io(err).into()),
                _ => (500, describe_io(err).into()),
            },
            Failure::OverQuota(OverQuota::Bytes { quota }) => (
                507,
                format!("quota exceeded (at most {quota} bytes per user)").into(),
            ),
            Failure::OverQuota(OverQuota::Files { max }) => (
                507,
                format!("quota exceeded (at most {max} files per user)").into(),
            ),
            Failure::TooLarge { .. } => (413, reason(413).into()),
            Failure::Parse(ParseError::NameNotAllowed(_))
            | Failure::Request(Refused::NameNotAllowed) => (400, "file name not allowed".into()),
            Failure::Parse(_) => (400, reason(400).into()),
            Failure::Head(err) => {
                let status = match err {
                    HeadError::Malformed | HeadError::BadFraming | HeadError::RangedPut => 400,
                    HeadError::TargetTooLong => 414,
                    HeadError::HeadTooLarge => 431,
                    HeadError::UnsupportedCoding => 501,
                    HeadError::EncodedBody => 415,
                    HeadError::Version => 505,
                };
                (status, err.detail().unwrap_or(reason(status)).into())
            }
            Failure::OffsetPastEnd { offset, size } => (
                416,
                format!("offset {offset} is past the end of the file ({size} bytes)").into(),
            ),
            Failure::LoginsBusy => (503, "too many logins waiting, try again later".into()),
            Failure::NotLoggedIn => (401, reason(401).into()),
            Failure::TlsRequired => (
                403,
                "TLS required: this server logs in from other hosts over HTTPS only".into(),
            ),
            Failure::Internal(_) => (500, reason(500).into()),
            Failure::Timeout => (408, reason(408).into()),
            Failure::ShuttingDown => (503, reason(503).into()),
            Failure::Request(Refused::CrossSite) => (403, "cross-site request refused".into()),
            Failure::Request(Refused::ResumeUnhashed) => (
                409,
                "cannot continue here: continue from the bytes held, or from 0".into(),
            ),
            Failure::Request(refused) => {
                let status = match refused {
                    Refused::NoRoute => 404,
                    Refused::UnknownMethod => 501,
                    Refused::MethodNotAllowed => 405,
                    Refused::LengthRequired => 411,
                    Refused::ExpectationFailed => 417,
                    Refused::Malformed | Refused::NameNotAllowed => 400,
                    Refused::RangeNotSatisfiable => 416,
                    Refused::CrossSite => 403,
                    Refused::ResumeUnhashed => 409,
                    Refused::UnsupportedBody => 415,
                };
                (status, reason(status).into())
            }
            Failure::Connections(Refusal::TooMany) => (503, "too many connections".into()),
            Failure::Connections(Refusal::OutOfDescriptors) => (503, OUT_OF_DESCRIPTORS.into()),
            Failure::Connections(Refusal::TooManyFromAddress) => {
                (503, "too many connections from this address".into())
            }
            Failure::Dav(refused) => match refused {
                DavRefused::Xml(err) => (400, err.describe().into()),
                DavRefused::BadField(field) => (400, format!("malformed {field} field").into()),
                DavRefused::InfiniteDepth => {
                    (403, "PROPFIND with Depth: infinity is refused".into())
                }
                DavRefused::BodyTooLarge => (413, "request body too large".into()),
                DavRefused::PreconditionFailed => (412, reason(412).into()),
                DavRefused::Locked => (423, "locked: the request gave no lock token of it".into()),
                DavRefused::LockConflict => (423, "locked by another lock".into()),
                DavRefused::LocksFull => (503, "too many locks".into()),
                DavRefused::NoLockToken => (400, "UNLOCK needs a Lock-Token field".into()),
                DavRefused::TokenMismatch => (409, "no such lock on this resource".into()),
                DavRefused::NoLockToRefresh => (412, "no lock of this token to refresh".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_bodies_the_server_cannot_store_are_refused_with_their_status() {
        assert_eq!(Failure::Head(HeadError::RangedPut).http().0, 400);
        assert_eq!(Failure::Head(HeadError::EncodedBody).http().0, 415);
    }

    #[test]
    fn no_descriptor_left_is_a_temporary_refusal_that_closes() {
        for errno in [libc::EMFILE, libc::ENFILE] {
            let none_left = || Failure::from(io::Error::from_raw_os_error(errno));
            assert!(none_left().ends_connection());
            assert_eq!(none_left().http().0, 503);
            assert_eq!(none_left().reply().code(), 421);
            let internal = Failure::Internal(io::Error::from_raw_os_error(errno));
            assert_eq!(internal.reply().code(), 421);
        }
        assert!(!Failure::from(io::Error::from_raw_os_error(libc::EIO)).ends_connection());
        let refused = Failure::Connections(Refusal::OutOfDescriptors);
        assert_eq!((refused.http().0, refused.reply().code()), (503, 421));
    }

    #[test]
    fn a_full_disk_is_507_and_451() {
        let full = || Failure::from(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(full().http(), (507, "disk full".into()));
        assert_eq!(full().reply().code(), 451);
    }
}
