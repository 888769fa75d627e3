//! What systemd asks of a service, without libsystemd: readiness and
//! state notifications (`sd_notify`, a datagram to `$NOTIFY_SOCKET`), and
//! socket activation (listening sockets handed over as descriptors 3, 4,
//! ... with `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`).
//!
//! Outside systemd neither variable is set and both are no-ops, so the
//! server calls them unconditionally.

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Sends `state` (e.g. `READY=1`, `STOPPING=1`) to the service manager, if
/// there is one. Best effort: a manager that is gone must not stop the
/// server, so a failure is only logged.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send(&socket, state) {
        log::warn!("cannot notify the service manager ({state:?}): {err}");
    }
}

fn send(socket: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = socket.as_bytes();
    let datagram = UnixDatagram::unbound()?;
    match path.strip_prefix(b"@") {
        // An abstract socket: '@' stands for the leading NUL.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            datagram.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            datagram.send_to(state.as_bytes(), std::path::Path::new(socket))?;
        }
    }
    Ok(())
}

/// `RELOADING=1` with the monotonic time systemd wants beside it (for
/// `Type=notify-reload`; harmless with `Type=notify`).
pub fn reloading_message() -> String {
    format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        crate::sys::monotonic_usec()
    )
}

/// A listening socket the service manager handed over, with the name its
/// socket unit gave it (`FileDescriptorName=`), if any.
#[derive(Debug)]
pub struct Activated {
    pub name: Option<String>,
    pub listener: TcpListener,
}

/// Takes the listening sockets passed to this process, once: an empty
/// list when there are none (no `LISTEN_FDS`, or they were meant for
/// another process). Each must be a listening TCP socket; anything else
/// is an error that names it.
pub fn take_listeners() -> io::Result<Vec<Activated>> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    if !for_us || TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let count: i32 = match std::env::var("LISTEN_FDS") {
        Ok(count) => count.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS={count:?} is not a number"),
            )
        })?,
        Err(_) => return Ok(Vec::new()),
    };
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|names| names.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    (0..count.max(0))
        .map(|i| {
            let fd = LISTEN_FDS_START + i;
            let listener = crate::sys::inherited_listener(fd).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("socket activation: descriptor {fd}: {err}"),
                )
            })?;
            let name = names
                .get(i as usize)
                .filter(|name| !name.is_empty() && *name != "unknown")
                .cloned();
            Ok(Activated { name, listener })
        })
        .collect()
}
