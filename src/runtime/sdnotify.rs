//! `--sdnotify`: the sd_notify(3) readiness protocol between a container and the systemd unit
//! (or any service manager) that runs `rbox run`, as Podman 4.3 with conmon speaks it. Only
//! when the caller has `$NOTIFY_SOCKET`:
//! - `container` (the default): the container gets a socket of the monitor's own, bound on
//!   /run/notify/notify.sock, in `$NOTIFY_SOCKET`; the monitor tells the caller its own pid
//!   (`MAINPID=`, it is the process that lives as long as the container) once the command
//!   runs, and passes on the container's `READY=1` and `WATCHDOG=1`, as conmon does (the
//!   other messages, STATUS= and such, conmon drops too);
//! - `conmon`: the monitor says `MAINPID=` and `READY=1` itself once the command runs;
//! - `ignore`: nothing, and the container gets no `$NOTIFY_SOCKET`.
//!
//! Owns the socket and the relay thread; the monitor (`monitor`) decides when they start and
//! end, `launch` mounts the socket's directory.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

/// Where the container finds the socket (Podman's path).
pub const INSIDE_DIR: &str = "/run/notify";
const SOCKET_NAME: &str = "notify.sock";

/// `--sdnotify MODE`, checked with Podman's text: `None` for `container`, the default.
pub fn parse(mode: &str) -> Result<Option<String>> {
    match mode {
        "" | "container" => Ok(None),
        "conmon" | "ignore" => Ok(Some(mode.to_string())),
        // Podman's text
        _ => bail!("invalid config provided: invalid argument: invalid sdnotify value {mode:?}: must be container, conmon or ignore"),
    }
}

/// The caller's `$NOTIFY_SOCKET`, when it names one.
fn caller_socket() -> Option<String> {
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The socket the container writes to, bound before it starts (datagrams wait in it until
/// the relay reads them), in directory `dir`, which is mounted on [`INSIDE_DIR`].
pub struct Prepared {
    sock: UnixDatagram,
    pub dir: PathBuf,
    caller: String,
}

/// What a container of mode `mode` (`None`: `container`) gets before it starts: with a
/// caller's socket and mode `container`, a socket of its own in `container_dir`/notify.
pub fn prepare(mode: Option<&str>, container_dir: &Path) -> Result<Option<Prepared>> {
    let Some(caller) = caller_socket() else {
        return Ok(None);
    };
    if mode.is_some() {
        return Ok(None);
    }
    let dir = container_dir.join("notify");
    let path = dir.join(SOCKET_NAME);
    std::fs::create_dir_all(&dir).with_context(|| format!("create `{}`", dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    // searchable by every id of the container (it is mounted as it is)
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod `{}`", dir.display()))?;
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove `{}`", path.display())),
    }
    // a store's container directory may be longer than a socket address holds (107 bytes):
    // bound through the directory's descriptor
    let d = std::fs::File::open(&dir).with_context(|| format!("open `{}`", dir.display()))?;
    use std::os::fd::AsRawFd;
    let short = format!("/proc/self/fd/{}/{SOCKET_NAME}", d.as_raw_fd());
    let sock = UnixDatagram::bind(&short)
        .with_context(|| format!("bind the notify socket `{}`", path.display()))?;
    // any user of the container may notify, as any process of a unit may
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("chmod `{}`", path.display()))?;
    Ok(Some(Prepared { sock, dir, caller }))
}

/// The `NOTIFY_SOCKET` variable of a container given a [`Prepared`] socket.
pub fn container_env() -> String {
    format!("NOTIFY_SOCKET={INSIDE_DIR}/{SOCKET_NAME}")
}

/// Send `msg` to the service manager's socket `to` (a path, or `@NAME` for an abstract one).
fn send(to: &str, msg: &str) {
    let sent = UnixDatagram::unbound().and_then(|s| match to.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            s.send_to_addr(msg.as_bytes(), &addr)
        }
        None => s.send_to(msg.as_bytes(), to),
    });
    if let Err(e) = sent {
        tracing::warn!("notify `{to}`: {e}");
    }
}

/// The relay of a running container's readiness messages; dropping it ends the thread.
pub struct Relay {
    sock: Arc<UnixDatagram>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        // a shut-down socket's recv returns 0 at once: the thread ends
        let _ = self.sock.shutdown(std::net::Shutdown::Read);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The command of a container of mode `mode` runs (the monitor is `monitor`): tell the caller,
/// and with a [`Prepared`] socket relay what the container says.
pub fn started(mode: Option<&str>, prepared: Option<Prepared>, monitor: u32) -> Option<Relay> {
    let caller = caller_socket()?;
    match mode {
        Some("ignore") => None,
        Some(_) => {
            send(&caller, &format!("MAINPID={monitor}\nREADY=1"));
            None
        }
        None => {
            send(&caller, &format!("MAINPID={monitor}"));
            let p = prepared?;
            let sock = Arc::new(p.sock);
            let theirs = Arc::clone(&sock);
            let to = p.caller;
            let thread = std::thread::Builder::new()
                .name("sdnotify".into())
                .spawn(move || relay(&theirs, &to))
                .map_err(|e| tracing::warn!("start the notify relay: {e}"))
                .ok()?;
            Some(Relay {
                sock,
                thread: Some(thread),
            })
        }
    }
}

/// What conmon passes on of a container's message: READY=1 and WATCHDOG=1, each alone.
pub fn passed_on(msg: &str) -> Vec<&'static str> {
    ["READY=1", "WATCHDOG=1"]
        .into_iter()
        .filter(|m| msg.lines().any(|l| l == *m))
        .collect()
}

fn relay(sock: &UnixDatagram, to: &str) {
    let mut buf = vec![0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                for m in passed_on(&String::from_utf8_lossy(&buf[..n])) {
                    send(to, m);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("read the container's notify socket: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_messages_as_podman() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("container").unwrap(), None);
        assert_eq!(parse("conmon").unwrap().as_deref(), Some("conmon"));
        let e = parse("CONMON").unwrap_err().to_string();
        assert!(e.contains("invalid sdnotify value \"CONMON\""), "{e}");
        assert!(parse("healthy").is_err());
        assert_eq!(passed_on("READY=1\nSTATUS=up"), ["READY=1"]);
        assert_eq!(passed_on("WATCHDOG=1"), ["WATCHDOG=1"]);
        assert!(passed_on("STATUS=READY=1").is_empty());
    }
}
