//! What the `ferryd` program needs besides the server: its settings (the
//! option table, the config file, human units), editing the users file,
//! and rendering `--help`, man pages and shell completions. Not part of
//! the embedding API; public so both binaries and the tests reach it.

pub mod manual;
pub mod settings;
pub mod units;
pub mod users_file;
