//! `ferryd`'s settings: one table of options that drives the command line,
//! the config file's keys, `--help`, `check-config`, the example config,
//! the man page and the shell completions, so none of them can drift from
//! another.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;

use super::units::{format_bytes, format_duration, parse_bytes, parse_duration};
use crate::Config;

/// Where `ferryd` looks for a config file when no `--config` is given; it
/// is read only when it exists.
pub const DEFAULT_CONFIG: &str = "/etc/ferry/ferryd.toml";

/// Everything `ferryd` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub users: PathBuf,
    pub control_token_file: Option<PathBuf>,
    pub metrics_token_file: Option<PathBuf>,
    pub log_level: LevelFilter,
    pub log_file: Option<PathBuf>,
    /// The TLS listeners' certificate chain and key (PEM); `None`: a
    /// self-signed pair beside the users file, made on the first run.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CAs whose client certificates log their common name in.
    pub tls_client_ca: Option<PathBuf>,
    /// Remarks for `check-config`, such as a host name that resolved to
    /// several addresses.
    pub notes: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            config: Config::default(),
            users: PathBuf::from("./id_passwd.txt"),
            control_token_file: None,
            metrics_token_file: None,
            log_level: LevelFilter::Info,
            log_file: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            notes: Vec::new(),
        }
    }
}

type Setter = fn(&mut Settings, &str) -> Result<(), String>;
type Getter = fn(&Settings) -> Option<String>;

/// One option: `--NAME ARG` on the command line, `NAME_WITH_UNDERSCORES =`
/// in the config file.
pub struct Opt {
    pub name: &'static str,
    /// The value's placeholder (`BYTES`, `ADDR`); `None` for a flag, which
    /// is `true` or `false` in the config file.
    pub arg: Option<&'static str>,
    pub help: &'static str,
    /// The default in words, when it is not a value (`off`, `no limit`).
    pub default_text: Option<&'static str>,
    /// A value for the example config when `default_text` is given.
    pub example: &'static str,
    set: Setter,
    get: Getter,
}

impl Opt {
    /// The config file's key.
    pub fn key(&self) -> String {
        self.name.replace('-', "_")
    }

    /// Whether the value is a file or directory (for completions).
    pub fn takes_path(&self) -> bool {
        matches!(self.arg, Some("PATH" | "FILE" | "DIR"))
    }

    /// The effective value as a TOML literal; `None` when unset.
    pub fn value(&self, settings: &Settings) -> Option<String> {
        (self.get)(settings)
    }

    /// The default for `--help` and the man page.
    pub fn default_shown(&self) -> Option<String> {
        if let Some(text) = self.default_text {
            return Some(text.to_owned());
        }
        self.arg?;
        let value = (self.get)(&Settings::default())?;
        Some(value.trim_matches('"').to_owned())
    }

    /// Applies a value given as text (a flag takes `true` or `false`).
    pub fn apply(&self, settings: &mut Settings, value: &str) -> Result<(), String> {
        (self.set)(settings, value)
    }
}

fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path_value(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

fn bytes(text: &str) -> Result<u64, String> {
    parse_bytes(text).ok_or_else(|| format!("{text:?} is not a size like 1048576, 512K or 10G"))
}

fn seconds(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 30, 0.5, 90s, 5m or 1h30m"))
}

fn count(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

fn flag(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

/// Resolves `HOST:PORT` (or `IP:PORT`, `[IPv6]:PORT`). A name that resolves
/// to several addresses takes the first IPv4 address the resolver gives,
/// else its first address: ferryd binds one address per listener.
pub fn resolve(text: &str, notes: &mut Vec<String>) -> Result<SocketAddr, String> {
    let bad = || format!("{text:?} is not an address like 127.0.0.1:9999 or localhost:9999");
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') {
        return Err(bad());
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|err| format!("{text:?}: cannot resolve {host:?}: {err}"))?
        .collect();
    let chosen = choose(&found).ok_or_else(|| format!("{text:?}: {host:?} has no address"))?;
    if found.len() > 1 {
        let all: Vec<String> = found.iter().map(SocketAddr::to_string).collect();
        notes.push(format!(
            "{text} resolves to {}; ferryd listens on {chosen} only",
            all.join(", ")
        ));
    }
    Ok(chosen)
}

/// Of a name's addresses, the one ferryd binds: the first IPv4 one in the
/// resolver's order (what most clients of a name like `localhost` try
/// first or also), else the first.
fn choose(found: &[SocketAddr]) -> Option<SocketAddr> {
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
}

fn addr(settings: &mut Settings, text: &str) -> Result<SocketAddr, String> {
    resolve(text, &mut settings.notes)
}

/// `off` (or an empty string) turns an optional address off, so a command
/// line can undo a config file.
fn optional<T>(
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match text {
        "off" | "none" | "" => Ok(None),
        _ => parse(text).map(Some),
    }
}

macro_rules! opt {
    ($name:literal, $arg:expr, $default:expr, $example:literal, $help:literal,
     |$s:ident, $v:ident| $set:expr, |$g:ident| $get:expr) => {
        Opt {
            name: $name,
            arg: $arg,
            help: $help,
            default_text: $default,
            example: $example,
            set: |$s: &mut Settings, $v: &str| -> Result<(), String> {
                $set;
                Ok(())
            },
            get: |$g: &Settings| -> Option<String> { $get },
        }
    };
}

/// Every option of `ferryd`, in the order `--help` lists them.
pub static OPTIONS: &[Opt] = &[
    opt!(
        "listen",
        Some("ADDR"),
        None,
        "",
        "address of the line protocol (IP:PORT, [IPv6]:PORT or HOST:PORT)",
        |s, v| s.config.listen = addr(s, v)?,
        |s| Some(quote(&s.config.listen.to_string()))
    ),
    opt!(
        "http-listen",
        Some("ADDR"),
        Some("off"),
        "\"127.0.0.1:9980\"",
        "also serve HTTP/1.1 on ADDR, e.g. 127.0.0.1:9980",
        |s, v| s.config.http_listen = optional(v, |v| addr(s, v))?,
        |s| s.config.http_listen.map(|a| quote(&a.to_string()))
    ),
    opt!(
        "tls-listen",
        Some("ADDR"),
        Some("off"),
        "\"0.0.0.0:9990\"",
        "also serve the line protocol inside TLS on ADDR, from the first byte (like implicit \
         FTPS), e.g. 0.0.0.0:9990",
        |s, v| s.config.tls_listen = optional(v, |v| addr(s, v))?,
        |s| s.config.tls_listen.map(|a| quote(&a.to_string()))
    ),
    opt!(
        "https-listen",
        Some("ADDR"),
        Some("off"),
        "\"0.0.0.0:9943\"",
        "also serve HTTPS (the HTTP front inside TLS) on ADDR, e.g. 0.0.0.0:9943",
        |s, v| s.config.https_listen = optional(v, |v| addr(s, v))?,
        |s| s.config.https_listen.map(|a| quote(&a.to_string()))
    ),
    opt!(
        "tls-cert",
        Some("PATH"),
        Some("ferryd-tls.crt beside the users file, made self-signed on the first run"),
        "\"/etc/ferry/tls/fullchain.pem\"",
        "the TLS listeners' certificate chain (PEM, the server's certificate first); re-read at \
         SIGHUP",
        |s, v| s.tls_cert = optional(v, |v| Ok(PathBuf::from(v)))?,
        |s| s.tls_cert.as_deref().map(path_value)
    ),
    opt!(
        "tls-key",
        Some("PATH"),
        Some("ferryd-tls.key beside the users file"),
        "\"/etc/ferry/tls/privkey.pem\"",
        "the certificate's private key (PEM: PKCS#8, RSA or SEC1; RSA, ECDSA or Ed25519); \
         re-read at SIGHUP",
        |s, v| s.tls_key = optional(v, |v| Ok(PathBuf::from(v)))?,
        |s| s.tls_key.as_deref().map(path_value)
    ),
    opt!(
        "tls-client-ca",
        Some("PATH"),
        Some("off"),
        "\"/etc/ferry/tls/clients-ca.pem\"",
        "CA certificates (PEM) whose client certificates log in the user their common name \
         names, without a password (AUTH USER; HTTPS without Authorization)",
        |s, v| s.tls_client_ca = optional(v, |v| Ok(PathBuf::from(v)))?,
        |s| s.tls_client_ca.as_deref().map(path_value)
    ),
    opt!(
        "tls-handshake-timeout",
        Some("SECS"),
        None,
        "",
        "close a TLS connection whose handshake has not completed after this",
        |s, v| s.config.policy.handshake_timeout = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.handshake_timeout)))
    ),
    opt!(
        "require-tls",
        None,
        None,
        "",
        "the plaintext listeners log nobody in from an address that is not loopback (530 on \
         the line protocol, HTTP 403), so they stay for local scripts only",
        |s, v| s.config.policy.require_tls = flag(v)?,
        |s| Some(s.config.policy.require_tls.to_string())
    ),
    opt!(
        "control",
        Some("ADDR"),
        Some("off"),
        "\"127.0.0.1:10000\"",
        "a control port on this loopback address, e.g. 127.0.0.1:10000 (TOKEN, STATUS, RELOAD, \
         SHUTDOWN; see README); needs control-token-file",
        |s, v| {
            let control = optional(v, |v| addr(s, v))?;
            if let Some(a) = control.filter(|a| !a.ip().is_loopback()) {
                return Err(format!(
                    "{a} is not a loopback address (127.0.0.0/8 or ::1)"
                ));
            }
            s.config.control_listen = control
        },
        |s| s.config.control_listen.map(|a| quote(&a.to_string()))
    ),
    opt!(
        "control-token-file",
        Some("PATH"),
        Some("none"),
        "\"/etc/ferry/control.token\"",
        "the control port's token (its first line); the file must not be readable by group or \
         others. The token itself is never printed",
        |s, v| s.control_token_file = optional(v, |v| Ok(PathBuf::from(v)))?,
        |s| s.control_token_file.as_deref().map(path_value)
    ),
    opt!(
        "metrics-listen",
        Some("ADDR"),
        Some("off"),
        "\"127.0.0.1:9981\"",
        "serve /metrics and /healthz (nothing else, no login) on ADDR, e.g. 127.0.0.1:9981; \
         anyone who reaches ADDR reads the counters, so keep it on loopback or a private network",
        |s, v| {
            let metrics = optional(v, |v| addr(s, v))?;
            if let Some(a) = metrics.filter(|a| !a.ip().is_loopback()) {
                s.notes.push(format!(
                    "metrics-listen {a} is not a loopback address: anyone who reaches it reads \
                     the counters"
                ));
            }
            s.config.metrics_listen = metrics
        },
        |s| s.config.metrics_listen.map(|a| quote(&a.to_string()))
    ),
    opt!(
        "metrics-token-file",
        Some("PATH"),
        Some("none: /metrics is not served on http-listen"),
        "\"/etc/ferry/metrics.token\"",
        "also serve /metrics on http-listen, to requests with 'Authorization: Bearer TOKEN' where \
         TOKEN is this file's first line; the file must not be readable by group or others. The \
         token itself is never printed",
        |s, v| s.metrics_token_file = optional(v, |v| Ok(PathBuf::from(v)))?,
        |s| s.metrics_token_file.as_deref().map(path_value)
    ),
    opt!(
        "storage",
        Some("DIR"),
        None,
        "",
        "storage root, one directory per user",
        |s, v| s.config.storage = PathBuf::from(v),
        |s| Some(path_value(&s.config.storage))
    ),
    opt!(
        "users",
        Some("FILE"),
        None,
        "",
        "users file, username:password per line (created with one user 'demo' and a random \
         password if missing; see 'ferryd user')",
        |s, v| s.users = PathBuf::from(v),
        |s| Some(path_value(&s.users))
    ),
    opt!(
        "max-file-size",
        Some("BYTES"),
        None,
        "",
        "largest upload accepted",
        |s, v| s.config.max_file_size = bytes(v)?,
        |s| Some(quote(&format_bytes(s.config.max_file_size)))
    ),
    opt!(
        "drain-timeout",
        Some("SECS"),
        None,
        "",
        "how long transfers may finish after SIGINT/SIGTERM",
        |s, v| s.config.drain_timeout = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.drain_timeout)))
    ),
    opt!(
        "partial-ttl",
        Some("SECS"),
        None,
        "",
        "how long the bytes of an interrupted upload are kept for resuming, counted from the \
         last byte received",
        |s, v| s.config.partial_ttl = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.partial_ttl)))
    ),
    opt!(
        "no-fsync",
        None,
        None,
        "",
        "acknowledge uploads and deletes without syncing them to disk (faster; one acknowledged \
         just before a power loss may be lost)",
        |s, v| s.config.fsync = !flag(v)?,
        |s| Some((!s.config.fsync).to_string())
    ),
    opt!(
        "auth-timeout",
        Some("SECS"),
        None,
        "",
        "close a connection that has not logged in after this",
        |s, v| s.config.policy.auth_timeout = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.auth_timeout)))
    ),
    opt!(
        "idle-timeout",
        Some("SECS"),
        None,
        "",
        "close a logged-in session (or an HTTP keep-alive connection) that sends nothing for \
         this long",
        |s, v| s.config.policy.idle_timeout = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.idle_timeout)))
    ),
    opt!(
        "stall-timeout",
        Some("SECS"),
        None,
        "",
        "end a transfer that makes no progress for this long",
        |s, v| s.config.policy.stall_timeout = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.stall_timeout)))
    ),
    opt!(
        "web-session-timeout",
        Some("SECS"),
        None,
        "",
        "log out a web interface session that makes no request for this long",
        |s, v| s.config.policy.web_session_timeout = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.web_session_timeout)))
    ),
    opt!(
        "head-timeout",
        Some("SECS"),
        None,
        "",
        "an HTTP request head must arrive within this",
        |s, v| s.config.policy.head_timeout = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.head_timeout)))
    ),
    opt!(
        "max-connections",
        Some("N"),
        Some("(open-file limit - 128) / 2: a socket and a file each"),
        "1000",
        "connections served at once, both protocols",
        |s, v| s.config.policy.max_connections = count(v)?,
        |s| Some(s.config.policy.max_connections.to_string())
    ),
    opt!(
        "max-per-ip",
        Some("N"),
        None,
        "",
        "connections from one IP address at once",
        |s, v| s.config.policy.max_per_ip = count(v)?,
        |s| Some(s.config.policy.max_per_ip.to_string())
    ),
    opt!(
        "login-delay",
        Some("SECS"),
        None,
        "",
        "hold the reply to a failed login this long",
        |s, v| s.config.policy.login_delay = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.login_delay)))
    ),
    opt!(
        "lockout-failures",
        Some("N"),
        None,
        "",
        "failed logins from one address within the window that lock it out; 0 turns lockouts off",
        |s, v| s.config.policy.lockout_failures = u32::try_from(count(v)?).unwrap_or(u32::MAX),
        |s| Some(s.config.policy.lockout_failures.to_string())
    ),
    opt!(
        "lockout-window",
        Some("SECS"),
        None,
        "",
        "the time within which those failures count",
        |s, v| s.config.policy.lockout_window = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.lockout_window)))
    ),
    opt!(
        "lockout-duration",
        Some("SECS"),
        None,
        "",
        "how long a locked-out address is refused",
        |s, v| s.config.policy.lockout_duration = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.lockout_duration)))
    ),
    opt!(
        "lockout-allow",
        Some("LIST"),
        Some("none"),
        "[\"10.0.0.0/8\", \"::1\"]",
        "addresses never locked out, comma-separated ADDR or ADDR/PREFIX (e.g. 10.0.0.0/8,::1; \
         an array of strings in the config file); each use adds to the list",
        |s, v| {
            for range in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let range = range.parse::<crate::config::AddrRange>()?;
                s.config.policy.lockout_allow.push(range);
            }
        },
        |s| (!s.config.policy.lockout_allow.is_empty()).then(|| {
            let all: Vec<String> = s
                .config
                .policy
                .lockout_allow
                .iter()
                .map(|r| quote(&r.to_string()))
                .collect();
            format!("[{}]", all.join(", "))
        })
    ),
    opt!(
        "trusted-proxies",
        Some("LIST"),
        Some("none"),
        "[\"10.0.0.0/8\"]",
        "load balancers that send a PROXY protocol header (v1 or v2), comma-separated ADDR or \
         ADDR/PREFIX: required from them, never read from anyone else; exempt from max-per-ip",
        |s, v| {
            for range in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let range = range.parse::<crate::config::AddrRange>()?;
                s.config.policy.trusted_proxies.push(range);
            }
        },
        |s| (!s.config.policy.trusted_proxies.is_empty()).then(|| {
            let all: Vec<String> = s
                .config
                .policy
                .trusted_proxies
                .iter()
                .map(|r| quote(&r.to_string()))
                .collect();
            format!("[{}]", all.join(", "))
        })
    ),
    opt!(
        "drain-delay",
        Some("SECS"),
        None,
        "",
        "after SIGINT/SIGTERM, how long health checks fail before the listeners close",
        |s, v| s.config.policy.drain_delay = seconds(v)?,
        |s| Some(quote(&format_duration(s.config.policy.drain_delay)))
    ),
    opt!(
        "user-quota",
        Some("BYTES"),
        Some("no limit"),
        "\"10G\"",
        "bytes each user may store in all, counting partials and uploads in progress",
        |s, v| s.config.policy.user_quota = optional(v, bytes)?,
        |s| s.config.policy.user_quota.map(|n| quote(&format_bytes(n)))
    ),
    opt!(
        "user-max-files",
        Some("N"),
        Some("no limit"),
        "10000",
        "files each user may store, counting uploads of new names in progress",
        |s, v| s.config.policy.user_max_files = optional(v, |v| count(v).map(|n| n as u64))?,
        |s| s.config.policy.user_max_files.map(|n| n.to_string())
    ),
    opt!(
        "log-level",
        Some("LEVEL"),
        None,
        "",
        "off, error, warn, info, debug or trace",
        |s, v| s.log_level = v
            .parse()
            .map_err(|_| { format!("{v:?} is not one of off, error, warn, info, debug, trace") })?,
        |s| Some(quote(&s.log_level.as_str().to_ascii_lowercase()))
    ),
    opt!(
        "log-file",
        Some("PATH"),
        Some("stderr"),
        "\"/var/log/ferry/ferryd.log\"",
        "append the log to PATH instead of stderr",
        |s, v| s.log_file = optional(v, |v| Ok(PathBuf::from(v)))?,
        |s| s.log_file.as_deref().map(path_value)
    ),
    opt!(
        "access-log",
        Some("PATH"),
        Some("off"),
        "\"/var/log/ferry/access.log\"",
        "one line per command or request to PATH (- for stderr), buffered, reopened at SIGHUP",
        |s, v| s.config.access_log = optional(v, |v| Ok(PathBuf::from(v)))?,
        |s| s.config.access_log.as_deref().map(path_value)
    ),
    opt!(
        "log-format",
        Some("FORMAT"),
        None,
        "",
        "the access log's lines: text or json",
        |s, v| s.config.access_log_format = match v {
            "text" => crate::access::Format::Text,
            "json" => crate::access::Format::Json,
            _ => return Err(format!("{v:?} is not text or json")),
        },
        |s| Some(quote(match s.config.access_log_format {
            crate::access::Format::Text => "text",
            crate::access::Format::Json => "json",
        }))
    ),
];

/// Finds an option by its command-line name or its config key.
pub fn find(name: &str) -> Option<&'static Opt> {
    let name = name.replace('_', "-");
    OPTIONS.iter().find(|opt| opt.name == name)
}

/// Checks what no single option can: the control port needs its token.
pub fn validate(settings: &Settings) -> Result<(), String> {
    if settings.config.control_listen.is_some() && settings.control_token_file.is_none() {
        return Err("--control needs --control-token-file (control and control_token_file in a config file)".to_owned());
    }
    if settings.tls_cert.is_some() != settings.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".to_owned());
    }
    Ok(())
}

/// Reads a token (the control port's, the metrics one): the first line of
/// a file that group and others cannot read.
pub fn read_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|err| format!("{shown}: {err}"))?;
    if meta.mode() & 0o044 != 0 {
        return Err(format!(
            "{shown}: readable by group or others (mode {:o}); chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|err| format!("{shown}: {err}"))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!("{shown}: the token is empty"));
    }
    Ok(token.to_owned())
}

/// Applies a TOML config file's keys to `settings`. Errors name the file
/// and line: `ferryd.toml:7: unknown key "listn"`.
pub fn apply_file(settings: &mut Settings, path: &Path, text: &str) -> Result<(), String> {
    use toml::de::{DeTable, DeValue};
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let at = |offset: usize, message: String| {
        format!("{}:{}: {message}", path.display(), line_of(offset))
    };
    let table = DeTable::parse(text).map_err(|err| {
        let offset = err.span().map_or(0, |span| span.start);
        at(offset, err.message().trim().to_owned())
    })?;
    for (key, value) in table.get_ref() {
        let Some(opt) = OPTIONS
            .iter()
            .find(|opt| opt.key() == key.get_ref().as_ref())
        else {
            return Err(at(
                key.span().start,
                format!("unknown key {:?}", key.get_ref()),
            ));
        };
        let fail = |message: String| at(value.span().start, format!("{}: {message}", opt.key()));
        let text: String = match (value.get_ref(), opt.arg) {
            (DeValue::Boolean(b), None) => b.to_string(),
            (_, None) => return Err(fail("expected true or false".to_owned())),
            (DeValue::String(s), _) => s.to_string(),
            (DeValue::Integer(n), _) if n.radix() == 10 => n.as_str().to_owned(),
            (DeValue::Float(f), _) => f.as_str().to_owned(),
            (DeValue::Array(items), Some("LIST")) => {
                let mut all = Vec::new();
                for item in items {
                    match item.get_ref() {
                        DeValue::String(s) => all.push(s.to_string()),
                        _ => return Err(fail("expected an array of strings".to_owned())),
                    }
                }
                all.join(",")
            }
            (other, _) => {
                return Err(fail(format!("a {} is not a value here", other.type_str())));
            }
        };
        opt.apply(settings, &text).map_err(fail)?;
    }
    Ok(())
}

/// The example config: every key with its default, commented out.
pub fn example_config() -> String {
    let defaults = Settings::default();
    let mut out = String::from(
        "# ferryd's config file (TOML). Every key is a command-line option of the\n\
         # same name with '_' for '-'; an option given on the command line wins.\n\
         # Sizes take K, M, G, T (powers of 1024): 512K, 10G. Durations are seconds\n\
         # (fractions allowed) or units: 90s, 5m, 1h30m, 250ms.\n\
         # Generated by 'ferryd generate config'; each line shows the default.\n",
    );
    for opt in OPTIONS {
        out.push('\n');
        for line in wrap(opt.help, 76) {
            out.push_str(&format!("# {line}\n"));
        }
        let value = match opt.default_text {
            Some(text) => {
                out.push_str(&format!("# (default: {text})\n"));
                opt.example.to_owned()
            }
            None => opt.value(&defaults).unwrap_or_default(),
        };
        out.push_str(&format!("#{} = {value}\n", opt.key()));
    }
    out
}

/// The effective settings as TOML, as `check-config` prints them.
pub fn effective(settings: &Settings) -> String {
    let mut out = String::new();
    for note in &settings.notes {
        out.push_str(&format!("# note: {note}\n"));
    }
    for opt in OPTIONS {
        match opt.value(settings) {
            Some(value) => out.push_str(&format!("{} = {value}\n", opt.key())),
            None => out.push_str(&format!(
                "# {} is not set ({})\n",
                opt.key(),
                opt.default_text.unwrap_or("off")
            )),
        }
    }
    out
}

/// Splits text into lines of at most `width` characters at spaces.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The settings: the defaults, then the config file (`file`, else
/// [`DEFAULT_CONFIG`] when it exists), then the options given on the
/// command line. A reload can call this again with the same arguments.
pub fn load(file: Option<&Path>, given: &[(&'static Opt, String)]) -> Result<Settings, String> {
    let mut settings = Settings::default();
    let default = Path::new(DEFAULT_CONFIG);
    let file = file.or_else(|| default.exists().then_some(default));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("--config {}: {err}", path.display()))?;
        apply_file(&mut settings, path, &text)?;
    }
    apply_args(&mut settings, given)?;
    validate(&settings)?;
    Ok(settings)
}

/// Applies options given on the command line over what the config file
/// set: each replaces the file's value (a list option given on the command
/// line replaces the file's whole list). Errors name the option.
pub fn apply_args(settings: &mut Settings, given: &[(&'static Opt, String)]) -> Result<(), String> {
    for (opt, _) in given.iter().filter(|(opt, _)| opt.arg == Some("LIST")) {
        match opt.name {
            "trusted-proxies" => settings.config.policy.trusted_proxies.clear(),
            _ => settings.config.policy.lockout_allow.clear(),
        }
    }
    for (opt, value) in given {
        opt.apply(settings, value)
            .map_err(|message| format!("--{}: {message}", opt.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's defaults are the library's: applying each shown default
    /// changes nothing.
    #[test]
    fn shown_defaults_are_the_defaults() {
        let defaults = Settings::default();
        for opt in OPTIONS
            .iter()
            .filter(|o| o.default_text.is_none() && o.arg.is_some())
        {
            let mut s = Settings::default();
            opt.apply(&mut s, &opt.default_shown().unwrap()).unwrap();
            assert_eq!(opt.value(&s), opt.value(&defaults), "{}", opt.name);
        }
    }

    #[test]
    fn a_name_with_several_addresses_binds_its_first_ipv4_one() {
        let addrs = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        let both = addrs(&["[::1]:9", "127.0.0.2:9", "127.0.0.1:9"]);
        assert_eq!(choose(&both), Some("127.0.0.2:9".parse().unwrap()));
        let v6 = addrs(&["[::1]:9", "[fe80::1]:9"]);
        assert_eq!(choose(&v6), Some("[::1]:9".parse().unwrap()));
        assert_eq!(choose(&[]), None);
        let mut notes = Vec::new();
        assert_eq!(
            resolve("127.0.0.1:9", &mut notes),
            Ok("127.0.0.1:9".parse().unwrap())
        );
        assert!(resolve("localhost:99999", &mut notes).is_err());
        assert!(resolve(":9", &mut notes).is_err());
        assert!(resolve("::1:9", &mut notes).is_err());
    }
}
