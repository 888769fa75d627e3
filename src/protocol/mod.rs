//! The wire: pure functions of bytes, no IO.
//!
//! - [`name`]: the file-name rules every protocol shares.
//! - [`path`]: paths, names joined by `/`.
//! - [`line`]: the line-protocol command parser and formatter.
//! - [`reply`]: every reply the line protocol sends.
//! - [`control`]: every reply the control port sends.
//! - [`http`]: HTTP/1.1 request heads (on `httparse`), paths, names,
//!   ranges, credentials, and response heads.
//! - [`web`]: the web interface's cookie, origin and form fields.
//! - [`chunked`]: the chunked transfer coding, decoded incrementally.
//! - [`proxy`]: the PROXY protocol header (v1 and v2) a load balancer
//!   sends before anything else.
//! - [`webdav`]: WebDAV's XML bodies and header fields, and its `207`
//!   bodies.

pub mod chunked;
pub mod control;
pub mod http;
pub mod line;
pub mod name;
pub mod path;
pub mod proxy;
pub mod reply;
pub mod web;
pub mod webdav;
