//! ferryd's config file, human units, host names, `check-config`, and the
//! man pages and completions generated from the same option table as
//! `--help` (issue 18).

use crate::common::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// Runs ferryd in an empty directory, so that the default relative paths
/// (`./id_passwd.txt`) find nothing of the checkout's.
fn ferryd(args: &[&str]) -> RunOutput {
    let cwd = tempfile::tempdir().unwrap();
    run_command_to_exit(
        Command::new(ferryd_bin())
            .args(args)
            .current_dir(cwd.path()),
        EXIT_TIMEOUT,
    )
}

fn ferry(args: &[&str]) -> RunOutput {
    run_command_to_exit(
        Command::new(env!("CARGO_BIN_EXE_ferry")).args(args),
        EXIT_TIMEOUT,
    )
}

/// The long options a `--help` lists (`--name` at the start of an
/// option line).
fn options_in_help(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        for word in line.split([' ', ',']) {
            if let Some(name) = word.strip_prefix("--")
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && !names.contains(&name.to_string())
            {
                names.push(name.to_string());
            }
            if !word.starts_with('-') && !word.is_empty() {
                break;
            }
        }
    }
    names
}

#[test]
fn units_are_accepted_on_the_command_line() {
    let server = ServerBuilder::new()
        .args([
            "--max-file-size",
            "1K",
            "--idle-timeout",
            "1m30s",
            "--user-quota",
            "1.5K",
        ])
        .start();
    let mut c = server.alice();
    c.expect("PUT 1025 big", 552);
    c.put("exact", &[7u8; 1024]);
}

#[test]
fn a_config_file_sets_options_and_the_command_line_wins() {
    let builder = ServerBuilder::new();
    let config = write(
        builder.root(),
        "ferryd.toml",
        "# sizes in units\nmax_file_size = \"1K\"\nuser_max_files = 1\nidle_timeout = \"5m\"\n",
    );
    let server = builder.arg("--config").arg(&config).start();
    let mut c = server.alice();
    c.expect("PUT 1025 big", 552);
    c.put("one", b"1");
    c.expect("PUT 1 two", 552);
    drop(c);
    drop(server);

    let builder = ServerBuilder::new();
    let config = write(builder.root(), "ferryd.toml", "max_file_size = 1024\n");
    let server = builder
        .arg("--config")
        .arg(&config)
        .args(["--max-file-size", "2K"])
        .start();
    let mut c = server.alice();
    c.put("bigger", &[1u8; 2000]);
    c.expect("PUT 2049 big", 552);
}

#[test]
fn check_config_prints_the_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "ferryd.toml",
        "listen = \"127.0.0.1:7001\"\nuser_quota = \"10G\"\nidle_timeout = \"90m\"\n\
         drain_timeout = 0.5\nno_fsync = true\nlockout_allow = [\"10.0.0.0/8\", \"::1\"]\n",
    );
    let config = config.to_str().unwrap();
    let out = ferryd(&[
        "check-config",
        "--config",
        config,
        "--listen",
        "127.0.0.1:7002",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    for line in [
        "listen = \"127.0.0.1:7002\"",
        "user_quota = \"10G\"",
        "idle_timeout = \"1h30m\"",
        "drain_timeout = \"0.5s\"",
        "no_fsync = true",
        "lockout_allow = [\"10.0.0.0/8\", \"::1/128\"]",
        "max_file_size = \"16G\"",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{}",
            out.stdout
        );
    }
    // A flag and an optional value can be undone on the command line.
    let out = ferryd(&[
        "check-config",
        "--config",
        config,
        "--no-fsync=false",
        "--user-quota",
        "off",
    ]);
    assert!(out.stdout.contains("no_fsync = false\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("# user_quota is not set"),
        "{}",
        out.stdout
    );
    // A list on the command line replaces the file's list.
    let out = ferryd(&[
        "check-config",
        "--config",
        config,
        "--lockout-allow",
        "192.0.2.0/24",
    ]);
    assert!(
        out.stdout.contains("lockout_allow = [\"192.0.2.0/24\"]"),
        "{}",
        out.stdout
    );
}

#[test]
fn check_config_names_the_line_of_an_unknown_key_or_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "# ferryd\n\nlistn = \"127.0.0.1:1\"\n",
            ":3: unknown key \"listn\"",
        ),
        (
            "listen = \"127.0.0.1:1\"\nmax_file_size = \"lots\"\n",
            ":2: max_file_size: \"lots\" is not a size",
        ),
        (
            "idle_timeout = \"5x\"\n",
            ":1: idle_timeout: \"5x\" is not a duration",
        ),
        (
            "no_fsync = \"yes\"\n",
            ":1: no_fsync: expected true or false",
        ),
        (
            "max_per_ip = -3\n",
            ":1: max_per_ip: \"-3\" is not a whole number",
        ),
        ("\n\nlisten = \n", ":3:"),
        (
            "[server]\nlisten = \"127.0.0.1:1\"\n",
            ":1: unknown key \"server\"",
        ),
        (
            "control = \"192.0.2.1:10000\"\n",
            ":1: control: 192.0.2.1:10000 is not a loopback address",
        ),
    ] {
        let config = write(dir.path(), "ferryd.toml", text);
        let shown = config.display().to_string();
        for first in ["check-config", "--no-fsync"] {
            let out = ferryd(&[first, "--config", &shown]);
            assert_eq!(out.status.code(), Some(2), "{text:?}: {}", out.stderr);
            assert!(
                out.stderr.contains(&format!("{shown}{expected}")),
                "{text:?}: expected {expected:?} in:\n{}",
                out.stderr
            );
            assert!(!out.stderr.contains(LISTENING_MARKER));
        }
    }
    let out = ferryd(&["check-config", "--idle-timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("--idle-timeout: \"soon\""),
        "{}",
        out.stderr
    );
    let out = ferryd(&["check-config", "--config", "/nonexistent/ferryd.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("/nonexistent/ferryd.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_config_never_prints_the_control_token() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Sekr1t-T0ken-42";
    let token = write(dir.path(), "token", &format!("{secret}\n"));
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let config = write(
        dir.path(),
        "ferryd.toml",
        &format!(
            "control = \"127.0.0.1:10000\"\ncontrol_token_file = \"{}\"\n",
            token.display()
        ),
    );
    let out = ferryd(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
        "--log-level",
        "trace",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("control = \"127.0.0.1:10000\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("control_token_file = \"{}\"", token.display()))
    );
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    // A token others can read is a problem check-config names.
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let out = ferryd(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stdout);
    assert!(
        out.stderr.contains("readable by group or others"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    // The control port without a token file is refused.
    let out = ferryd(&["check-config", "--control", "127.0.0.1:10000"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn listen_takes_a_host_name() {
    let server = ServerBuilder::new().listen("localhost:0").start();
    assert!(server.addr().ip().is_loopback(), "{}", server.addr());
    let mut c = server.alice();
    c.put("a", b"by name");
    let out = ServerBuilder::new()
        .listen("no-such-host.invalid:9999")
        .run_to_exit(EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("no-such-host.invalid"),
        "{}",
        out.stderr
    );
    let out = ServerBuilder::new()
        .listen("localhost:99999")
        .run_to_exit(EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}

#[test]
fn every_option_in_help_is_a_config_key() {
    let help = ferryd(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let options = options_in_help(&help.stdout);
    assert!(options.len() >= 25, "{options:?}");
    let checked = ferryd(&["check-config"]);
    assert_eq!(checked.status.code(), Some(0), "{}", checked.stderr);
    let example = ferryd(&["generate", "config"]).stdout;
    for option in options
        .iter()
        .filter(|o| !["config", "help", "version"].contains(&o.as_str()))
    {
        let key = option.replace('-', "_");
        assert!(
            checked.stdout.contains(&format!("{key} = "))
                || checked.stdout.contains(&format!("# {key} is not set")),
            "check-config lacks {key}:\n{}",
            checked.stdout
        );
        assert!(
            example.contains(&format!("#{key} = ")),
            "the example lacks {key}"
        );
    }
}

#[test]
fn the_committed_example_config_is_the_generated_one() {
    let generated = ferryd(&["generate", "config"]);
    assert_eq!(generated.status.code(), Some(0));
    let committed =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ferryd.toml"))
            .unwrap();
    assert_eq!(
        committed, generated.stdout,
        "contrib/ferryd.toml is stale: ferryd generate config > contrib/ferryd.toml"
    );
    // Uncommented, every key of it is accepted.
    let dir = tempfile::tempdir().unwrap();
    let text: String = committed
        .lines()
        .filter_map(|l| {
            l.strip_prefix('#')
                .filter(|l| l.contains(" = ") && !l.starts_with(' '))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config = write(dir.path(), "all.toml", &text);
    let token = write(dir.path(), "token", "t\n");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let out = ferryd(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
        "--control-token-file",
        token.to_str().unwrap(),
        "--metrics-token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
}

/// Each generated page and script names every option `--help` lists.
fn check_generated(help: &RunOutput, generated: [(&str, RunOutput); 4]) {
    let options = options_in_help(&help.stdout);
    assert!(!options.is_empty());
    for (what, out) in generated {
        assert_eq!(out.status.code(), Some(0), "{what}: {}", out.stderr);
        for option in &options {
            let spelled = match what {
                "man" => format!("\\-\\-{}", option.replace('-', "\\-")),
                "fish" => format!("-l {}", option),
                _ => format!("--{option}"),
            };
            assert!(out.stdout.contains(&spelled), "{what} lacks --{option}");
        }
    }
}

#[test]
fn ferryd_man_page_and_completions_cover_every_option() {
    let help = ferryd(&["--help"]);
    check_generated(
        &help,
        ["man", "bash", "zsh", "fish"].map(|what| (what, ferryd(&["generate", what]))),
    );
    let man = ferryd(&["generate", "man"]).stdout;
    assert!(man.starts_with(".TH FERRYD 8"), "{man}");
    for word in ["check\\-config", "user add USER", "hash\\-password"] {
        assert!(man.contains(word), "the man page lacks {word}");
    }
    let bash = ferryd(&["generate", "bash"]).stdout;
    assert!(bash.contains("add passwd del list") && bash.contains("complete -F _ferryd ferryd"));
}

#[test]
fn ferry_man_page_and_completions_cover_every_option() {
    let help = ferry(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(options_in_help(&help.stdout).len() >= 16);
    check_generated(
        &help,
        ["man", "bash", "zsh", "fish"].map(|what| (what, ferry(&["--generate", what]))),
    );
    let man = ferry(&["--generate", "man"]).stdout;
    assert!(man.starts_with(".TH FERRY 1"), "{man}");
    let fish = ferry(&["--generate", "fish"]).stdout;
    for verb in ["put", "get", "ls", "view", "rm", "hash", "shell"] {
        assert!(fish.contains(&format!("-a {verb} ")), "fish lacks {verb}");
    }
}

/// What the generated bash completion offers for a command line (the
/// last word being completed).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "completion.bash", script);
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _{}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        quoted.join(" "),
        words.len() - 1,
        words[0],
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_offers_commands_and_options() {
    let ferryd_script = ferryd(&["generate", "bash"]).stdout;
    assert_eq!(
        bash_completes(&ferryd_script, &["ferryd", "user", ""]),
        ["add", "passwd", "del", "list"]
    );
    assert_eq!(
        bash_completes(&ferryd_script, &["ferryd", "--idle-t"]),
        ["--idle-timeout"]
    );
    assert!(bash_completes(&ferryd_script, &["ferryd", "ch"]).contains(&"check-config".to_owned()));
    let ferry_script = ferry(&["--generate", "bash"]).stdout;
    let verbs = bash_completes(&ferry_script, &["ferry", "--user", "demo", ""]);
    assert_eq!(
        verbs,
        [
            "put", "get", "ls", "view", "rm", "mkdir", "rmdir", "mv", "cp", "hash", "shell"
        ]
    );
    assert_eq!(
        bash_completes(&ferry_script, &["ferry", "--lim"]),
        ["--limit-rate"]
    );
}

#[test]
fn generated_scripts_are_valid_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("ferryd.bash", ferryd(&["generate", "bash"]).stdout),
        ("ferry.bash", ferry(&["--generate", "bash"]).stdout),
    ] {
        assert!(text.contains("complete -F _ferry"), "{name}: {text}");
        let path = write(dir.path(), name, &text);
        let status = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(status.success(), "{name} is not valid bash");
    }
}
