//! The server's insides, for the fuzz targets, the integration tests and
//! the two binaries: hidden from the documented API, and changed without
//! notice. An embedder uses what the crate root exports.
//!
//! The modules stay where they are on disk (`src/storage/`, ...); only
//! their path in the crate is `ferry::internal::...`.

#[path = "access.rs"]
pub mod access;
#[path = "audit.rs"]
pub mod audit;
#[path = "auth.rs"]
pub mod auth;
#[path = "health.rs"]
pub mod health;
#[path = "integrity.rs"]
pub mod integrity;
#[path = "kdf.rs"]
pub mod kdf;
#[path = "limits.rs"]
pub mod limits;
#[path = "metrics.rs"]
pub mod metrics;
#[path = "ops/mod.rs"]
pub mod ops;
#[path = "protocol/mod.rs"]
pub mod protocol;
#[path = "session/mod.rs"]
pub mod session;
#[path = "storage/mod.rs"]
pub mod storage;
#[path = "systemd.rs"]
pub mod systemd;
#[path = "tls.rs"]
pub mod tls;
