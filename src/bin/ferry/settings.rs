//! Where to connect and as whom: options, then the environment, then the
//! settings file, then the defaults. The password is never an argument.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::args::Connect;

pub const DEFAULT_SERVER: &str = "127.0.0.1:9999";

#[derive(Clone, Debug)]
pub struct Settings {
    pub server: String,
    pub user: String,
    pub retries: u32,
    pub timeout: Duration,
    /// TLS, with how the server is trusted: `--tls` or a `tls://` server.
    pub tls: Option<ferry::client::TlsOptions>,
}

/// What a settings file says.
#[derive(Debug, Default, PartialEq, Eq)]
struct FileSettings {
    server: Option<String>,
    user: Option<String>,
    retries: Option<u32>,
}

/// Resolves the settings; an error is a usage error.
pub fn resolve(connect: &Connect) -> Result<Settings, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let explicit = connect
        .config
        .clone()
        .or_else(|| env("FERRY_CONFIG").map(PathBuf::from));
    let file = match &explicit {
        Some(path) => read_file(path)?,
        None => match default_path() {
            Some(path) if path.exists() => read_file(&path)?,
            _ => FileSettings::default(),
        },
    };
    let server = connect
        .server
        .clone()
        .or_else(|| env("FERRY_SERVER"))
        .or(file.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let user = connect
        .user
        .clone()
        .or_else(|| env("FERRY_USER"))
        .or(file.user)
        .ok_or(
            "no user: give --user NAME, set FERRY_USER, or put 'user = NAME' in the settings file",
        )?;
    let (server, tls) = match server.strip_prefix("tls://") {
        Some(rest) => (rest.to_owned(), true),
        None => (server, connect.tls),
    };
    let tls = tls.then(|| ferry::client::TlsOptions {
        ca_file: connect.ca_file.clone(),
        pin: connect.pin.clone(),
        cert: connect.cert.clone(),
        key: connect.key.clone(),
    });
    Ok(Settings {
        server,
        tls,
        user,
        retries: connect.retries.or(file.retries).unwrap_or(0),
        timeout: connect.timeout.unwrap_or(Duration::from_secs(120)),
    })
}

/// The password: FERRY_PASSWORD, else a prompt without echo on the
/// terminal.
pub fn password(settings: &Settings) -> Result<String, String> {
    // A client certificate logs in without a password.
    if settings.tls.as_ref().is_some_and(|tls| tls.cert.is_some()) {
        return Ok(String::new());
    }
    if let Ok(password) = std::env::var("FERRY_PASSWORD") {
        return Ok(password);
    }
    if !io::stdin().is_terminal() {
        return Err("no password: set FERRY_PASSWORD (there is no terminal to ask on)".to_string());
    }
    rpassword::prompt_password(format!(
        "password for {}@{}: ",
        settings.user, settings.server
    ))
    .map_err(|e| format!("cannot read the password: {e}"))
}

/// `$XDG_CONFIG_HOME/ferry/config`, else `~/.config/ferry/config`.
pub fn default_path() -> Option<PathBuf> {
    Some(xdg_dir("XDG_CONFIG_HOME", ".config")?.join("config"))
}

/// `ferry`'s directory under an XDG base directory: `$<var>/ferry`, else
/// `$HOME/<fallback>/ferry`.
pub fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = set(var)
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(fallback)))?;
    Some(base.join("ferry"))
}

fn read_file(path: &Path) -> Result<FileSettings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("settings file {}: {e}", path.display()))?;
    parse_file(&text).map_err(|e| format!("settings file {}: {e}", path.display()))
}

fn parse_file(text: &str) -> Result<FileSettings, String> {
    let mut settings = FileSettings::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = index + 1;
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {at}: expected 'key = value'"))?;
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(format!("line {at}: '{key}' has no value"));
        }
        match key {
            "server" => settings.server = Some(value.to_string()),
            "user" => settings.user = Some(value.to_string()),
            "retries" => {
                settings.retries = Some(
                    value
                        .parse()
                        .map_err(|_| format!("line {at}: retries: '{value}' is not a number"))?,
                );
            }
            "password" => {
                return Err(format!(
                    "line {at}: passwords are not kept in the settings file; use FERRY_PASSWORD or the prompt"
                ));
            }
            _ => return Err(format!("line {at}: unknown setting '{key}'")),
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_server_user_and_retries() {
        let parsed = parse_file("# mine\n server = h:1 \n\nuser=alice\nretries = 3\n").unwrap();
        assert_eq!(
            parsed,
            FileSettings {
                server: Some("h:1".into()),
                user: Some("alice".into()),
                retries: Some(3),
            }
        );
    }

    #[test]
    fn the_file_refuses_what_it_does_not_know() {
        for bad in [
            "colour = blue",
            "server",
            "user =",
            "retries = many",
            "password = x",
        ] {
            let err = parse_file(bad).unwrap_err();
            assert!(err.starts_with("line 1:"), "{bad}: {err}");
        }
    }
}
