//! Release binaries are linked with packed relative relocations (RELR,
//! `-z pack-relative-relocs`): a position-independent executable keeps a
//! 24-byte record per pointer to patch at start (66 KB of ferryd's 2.5 MB);
//! RELR packs them into a bitmap of a few hundred bytes. It needs GNU ld
//! 2.38 or lld and glibc 2.36 (Debian 12) to run; debug builds (the tests)
//! are linked as before.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=FERRY_NO_RELR");
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    // FERRY_NO_RELR=1 builds for an older glibc.
    if release && linux && gnu && std::env::var_os("FERRY_NO_RELR").is_none() {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
