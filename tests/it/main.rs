//! The integration tests, in one test binary.
//!
//! One binary instead of one per file: Cargo links each integration test
//! file into an executable of its own and runs them one after another, so
//! twenty files meant twenty links and a run as long as the sum of each
//! file's slowest test. In one binary the tests of every file share the
//! harness's threads. `cargo test` runs them all; `cargo test --test it
//! faults::` runs one file's.
//!
//! Shared helpers live in `tests/common/`. Since the tests of every file
//! run side by side, a test that measures time, CPU, wake-ups or the
//! server's memory takes `common::timing_sensitive()`, one that keeps the
//! CPU busy for seconds takes `common::cpu_heavy()`, and one that measures
//! its own process starts with `common::in_a_process_of_its_own`.

mod access_log;
mod audit_events;
mod browser;
mod cli;
mod client;
mod commands;
#[path = "../common/mod.rs"]
mod common;
mod concurrency;
mod containment;
mod control;
mod crash;
mod dav_clients;
mod defense;
mod descriptors;
mod downloads;
mod embedding;
mod farm;
mod faults;
mod folders;
mod fuzz_regressions;
mod haproxy;
mod http;
mod integrity;
mod kept_handles;
mod large_files;
mod listing_stream;
mod metrics_access;
mod ops_config;
mod ops_users;
mod reload;
mod resume;
mod safety_auth;
mod safety_storage;
mod shutdown;
mod startup;
mod systemd;
mod tls;
mod tree_client;
mod upload_boundaries;
mod web;
mod webdav;
