//! `ferry`: the command-line client (see `ferry --help` and README.md).
//!
//! - `args`: the command line, and the same commands in the shell.
//! - `settings`: server, user and password, from options, the environment
//!   and the settings file.
//! - `commands`: each verb over a [`commands::Remote`] that reconnects and
//!   resumes after a dropped connection.
//! - `output`: listings, previews, summaries, JSON lines.
//! - `progress`: the progress bar.
//! - `shell`: `ferry shell`.
//!
//! The protocol and the verified, resumable transfers are in the library,
//! [`ferry::client`], which the tests use too.

mod args;
mod commands;
mod output;
mod progress;
mod settings;
mod shell;

use std::process::ExitCode;

use args::{Parsed, Verb};
use commands::{EXIT_USAGE, Remote, Status};

fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1).collect(), false) {
        Ok(Parsed::Run(command)) => command,
        Ok(Parsed::Help) => {
            println!("{}", args::manual().help());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Generate(what)) => {
            let manual = args::manual();
            let text = match what.as_str() {
                "man" => manual.man(),
                "bash" => manual.bash(),
                "zsh" => manual.zsh(),
                "fish" => manual.fish(),
                _ => return usage_error("--generate: which of man, bash, zsh, fish?"),
            };
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("ferry {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage_error(&message),
    };
    let settings = match settings::resolve(&command.connect) {
        Ok(settings) => settings,
        Err(message) => return usage_error(&message),
    };
    let password = match settings::password(&settings) {
        Ok(password) => password,
        Err(message) => return usage_error(&message),
    };
    let mut remote = Remote::new(settings, password);
    let mut status = Status::default();
    match command.verb {
        Verb::Shell => shell::run(&mut remote, &command.options, &mut status),
        _ => commands::run(&mut remote, &command, &mut status),
    }
    remote.quit();
    ExitCode::from(status.code())
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("ferry: {message}\nTry 'ferry --help'.");
    ExitCode::from(EXIT_USAGE)
}
