//! Reloading without a restart (issue 18): SIGHUP (or the control port's
//! `RELOAD`) reads the config file again and applies what can change with
//! sessions open, reopens the log file after a rotation, and says what
//! would take a restart. Against the real `ferryd`.

use std::fs;
use std::path::Path;

use crate::common::*;
use nix::sys::signal::Signal;

fn write_config(path: &Path, text: &str) {
    // Written aside and renamed, as an editor or a deployment would: the
    // server never reads half a file.
    let aside = path.with_extension("new");
    fs::write(&aside, text).unwrap();
    fs::rename(&aside, path).unwrap();
}

/// Waits (bounded) until ferryd has logged `count` lines containing `what`.
fn wait_logged(server: &TestServer, what: &str, count: usize) {
    let found = wait_until(IO_TIMEOUT, || {
        server
            .stderr_lines()
            .iter()
            .filter(|line| line.contains(what))
            .count()
            >= count
    });
    assert!(
        found,
        "no {what:?} (x{count}) in:\n{}",
        server.stderr_text()
    );
}

#[test]
fn a_reload_changes_limits_with_sessions_open_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    write_config(&config, "max_per_ip = 2\n");
    let server = TestServer::builder().arg("--config").arg(&config).start();
    let mut first = server.alice();
    let mut second = server.bob();
    let mut third = Client::connect_raw(server.addr()).unwrap();
    assert_eq!(third.read_reply().0, 421, "the third of two allowed");

    write_config(&config, "max_per_ip = 4\npartial_ttl = \"1h\"\n");
    server.signal(Signal::SIGHUP);
    wait_logged(&server, "settings reloaded", 1);
    // The sessions that were open go on; the new limit lets more in.
    first.noop();
    second.noop();
    let mut third = server.connect();
    third.login(ALICE, ALICE_PW);
    third.noop();
    // What only a restart can change keeps its value, and the log says so.
    wait_logged(
        &server,
        "reload: partial-ttl changed; that takes a restart, the running value stays",
        1,
    );

    // A broken file changes nothing, and the server goes on.
    write_config(&config, "max_per_ip = many\n");
    server.signal(Signal::SIGHUP);
    wait_logged(
        &server,
        "reload failed, keeping the settings as they were",
        1,
    );
    let mut fourth = server.connect();
    fourth.login(BOB, BOB_PW);
    let mut fifth = Client::connect_raw(server.addr()).unwrap();
    assert_eq!(fifth.read_reply().0, 421, "the limit is still 4");
}

#[test]
fn the_log_file_is_reopened_after_a_rotation_and_the_level_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    let log = dir.path().join("ferryd.log");
    write_config(&config, "log_level = \"info\"\n");
    // Logging to a file, ferryd says nothing on stderr: started by hand.
    let users = dir.path().join("id_passwd.txt");
    fs::write(&users, default_users_file()).unwrap();
    let child = std::process::Command::new(ferryd_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-fsync",
            "--login-delay",
            "0",
        ])
        .arg("--storage")
        .arg(dir.path().join("storage"))
        .arg("--users")
        .arg(&users)
        .arg("--config")
        .arg(&config)
        .arg("--log-file")
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = KillOnDrop(child);
    let addr = wait_for_listening_in(&log);
    Client::connect(addr).login(ALICE, ALICE_PW);

    // logrotate's way: move the file, then SIGHUP.
    let rotated = dir.path().join("ferryd.log.1");
    fs::rename(&log, &rotated).unwrap();
    // At warn from now on; the change of a restart-only setting gives a
    // warning to look for in the new file.
    write_config(&config, "log_level = \"warn\"\npartial_ttl = \"1h\"\n");
    nix::sys::signal::kill(server.pid(), Signal::SIGHUP).unwrap();
    let reopened = wait_until(IO_TIMEOUT, || {
        fs::read_to_string(&log).is_ok_and(|text| text.contains("partial-ttl changed"))
    });
    assert!(reopened, "no new {} after SIGHUP", log.display());
    // At warn, the next login (logged before its 230) leaves no line;
    // everything before the rotation is in the old file.
    Client::connect(addr).login(BOB, BOB_PW);
    let new = fs::read_to_string(&log).unwrap();
    assert!(!new.contains("login_ok"), "logged at warn:\n{new}");
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("listening on") && old.contains("login_ok"),
        "{old}"
    );
    assert!(!old.contains("partial-ttl changed"), "{old}");
}

struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.id() as i32)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address in the `ferryd listening on` line of the log file `log`.
fn wait_for_listening_in(log: &Path) -> std::net::SocketAddr {
    let mut addr = None;
    let found = wait_until(STARTUP_TIMEOUT, || {
        addr = fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .find_map(parse_listening_line);
        addr.is_some()
    });
    assert!(found, "no listening line in {}", log.display());
    addr.unwrap()
}

#[test]
fn reload_over_the_control_port_reloads_the_settings_too() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    write_config(&config, "max_per_ip = 1\n");
    let token = dir.path().join("control-token");
    fs::write(&token, "reload-token\n").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let server = TestServer::builder()
        .arg("--config")
        .arg(&config)
        .args(["--control", "127.0.0.1:0", "--control-token-file"])
        .arg(&token)
        .start();
    let control_addr = server.control_addr();
    let _first = server.alice();
    let mut second = Client::connect_raw(server.addr()).unwrap();
    assert_eq!(second.read_reply().0, 421);
    write_config(&config, "max_per_ip = 3\n");
    let mut control = Client::connect_raw(control_addr).unwrap();
    control.read_reply();
    control.expect("TOKEN reload-token", 230);
    control.expect("RELOAD", 200);
    wait_logged(&server, "settings reloaded", 1);
    server.bob().noop();
}
