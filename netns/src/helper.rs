//! A running bridge helper and its life: [`start`] picks the backend's runner, [`Helper`] owns
//! the process (by pidfd) and its files until [`Helper::stop`] or drop. Also the pieces both
//! runners share: the host-port check, the helper's stderr in a memfd, waiting on a pidfd.

use std::fs::File;
use std::io::{Read, Seek};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::{backend::find_helper, io_err, pasta, slirp4netns, sys};
use crate::{Backend, Error, PortMapping, Proto, Result};

/// How long a helper may take to get ready, and to exit once told to. Bounds on waits that
/// normally end in milliseconds, not sleeps.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Start the helper for `backend` bridging the network namespace of `target_pid` to the host,
/// having it forward `ports` (host ports must be chosen: 0 is refused) when
/// [`Backend::forwards_ports`]; otherwise they are left to the caller's forwarder. The caller
/// owns the user namespace of that network namespace, or is root. `run_dir` receives the
/// helper's files (slirp4netns' API socket, pasta's pid file); [`Helper::stop`] removes them.
/// Returns once the helper has configured the namespace: [`spawn`] then
/// [`Starting::ready`].
pub fn start(
    target_pid: i32,
    backend: &Backend,
    ports: &[PortMapping],
    run_dir: &Path,
) -> Result<Helper> {
    spawn(target_pid, backend, ports, run_dir)?.ready()
}

/// A helper on its way ([`spawn`]); [`Starting::ready`] waits until it has configured the
/// namespace. Dropping it ends the helper.
#[derive(Debug)]
pub struct Starting(Stage);

#[derive(Debug)]
enum Stage {
    Pasta(pasta::Spawned),
    /// slirp4netns is started whole by `ready` (7-13 ms, in parallel with the container's
    /// setup already): after the container's id maps are written, as it has always been.
    Slirp4netns {
        program: PathBuf,
        options: crate::Slirp4netnsOptions,
        target_pid: i32,
        forwarded: Vec<PortMapping>,
        run_dir: PathBuf,
    },
}

impl Starting {
    /// Wait until the helper has configured the namespace.
    pub fn ready(self) -> Result<Helper> {
        match self.0 {
            Stage::Pasta(p) => p.ready(),
            Stage::Slirp4netns {
                program,
                options,
                target_pid,
                forwarded,
                run_dir,
            } => slirp4netns::start(&program, &options, target_pid, &forwarded, &run_dir),
        }
    }
}

/// [`start`]'s first half: check the ports, find the helper and start pasta's process (whose
/// own start-up is the longest part of a container's network: it runs while the caller goes
/// on, e.g. writes the container's id maps). The namespaces of `target_pid` must exist.
pub fn spawn(
    target_pid: i32,
    backend: &Backend,
    ports: &[PortMapping],
    run_dir: &Path,
) -> Result<Starting> {
    let (name, package) = match backend {
        Backend::Pasta(_) => ("pasta", "passt"),
        Backend::Slirp4netns(_) => ("slirp4netns", "slirp4netns"),
    };
    let program = find_helper(name).ok_or(Error::HelperMissing {
        helper: name,
        package,
    })?;
    let forwarded: &[PortMapping] = if backend.forwards_ports() { ports } else { &[] };
    for port in forwarded {
        check_host_port(port)?;
    }
    Ok(Starting(match backend {
        Backend::Pasta(o) => Stage::Pasta(pasta::spawn(&program, o, target_pid, run_dir)?),
        Backend::Slirp4netns(o) => Stage::Slirp4netns {
            program,
            options: o.clone(),
            target_pid,
            forwarded: forwarded.to_vec(),
            run_dir: run_dir.to_path_buf(),
        },
    }))
}

/// A running helper. Dropping it stops it too (errors ignored); [`Helper::stop`] reports them.
#[derive(Debug)]
pub struct Helper {
    pub(crate) name: &'static str,
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    /// slirp4netns is our child: reaped on stop. pasta daemonizes: not ours to reap.
    pub(crate) child: Option<Child>,
    /// slirp4netns' `--exit-fd` write end: closing it tells slirp4netns to exit, and the kernel
    /// closes it if our process dies.
    pub(crate) exit_fd: Option<OwnedFd>,
    pub(crate) api_socket: Option<PathBuf>,
    /// Files to remove on stop (API socket, pid file).
    pub(crate) files: Vec<PathBuf>,
    pub(crate) ports: Vec<PortMapping>,
    pub(crate) warnings: Vec<String>,
    /// pasta's DNS forwarding address (UDP only) and the host's resolvers behind it.
    pub(crate) dns_forward: Option<(IpAddr, Vec<IpAddr>)>,
    pub(crate) stopped: bool,
}

impl Helper {
    /// `pasta` or `slirp4netns`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The helper's pid (pasta's daemon, not the process `start` ran).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// slirp4netns' API socket.
    pub fn api_socket(&self) -> Option<&Path> {
        self.api_socket.as_deref()
    }

    /// The ports the helper forwards.
    pub fn ports(&self) -> &[PortMapping] {
        &self.ports
    }

    /// The address at which the helper forwards DNS over UDP only (pasta's `--dns-forward`),
    /// and the host's resolvers it forwards to: DNS over TCP at that address is the caller's
    /// to serve ([`crate::listen_dns`]).
    pub fn dns_forward(&self) -> Option<(IpAddr, &[IpAddr])> {
        self.dns_forward.as_ref().map(|(a, up)| (*a, up.as_slice()))
    }

    /// Things the caller may want to tell the user (e.g. sandboxing not available).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// End the helper, wait until it is gone, and remove its files.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown(true)
    }

    /// End the helper and remove its files without waiting for it to be gone: a helper's
    /// exit takes 20-30 ms here (closing its tap device waits for RCU grace periods), which a
    /// caller that is about to exit itself need not wait for, unless the helper holds ports
    /// that must be free when the caller returns. The helper is not reaped (the caller's own
    /// exit hands it to its reaper).
    pub fn kill(mut self) -> Result<()> {
        self.shutdown(false)
    }

    fn shutdown(&mut self, wait: bool) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut result = Ok(());
        if self.exit_fd.take().is_none() {
            // pasta has no exit fd, and ignores SIGTERM (measured: it waits out any timeout);
            // it keeps no state a graceful exit would save
            let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        }
        if !wait {
            drop(self.child.take());
            return self.remove_files();
        }
        if !wait_exit(&self.pidfd, STOP_TIMEOUT) {
            let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
            if !wait_exit(&self.pidfd, STOP_TIMEOUT) {
                result = Err(Error::HelperFailed {
                    helper: self.name,
                    message: format!("pid {} did not exit after SIGKILL", self.pid),
                });
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        match self.remove_files() {
            Err(e) if result.is_ok() => Err(e),
            _ => result,
        }
    }

    fn remove_files(&mut self) -> Result<()> {
        let mut result = Ok(());
        for f in self.files.drain(..) {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound && result.is_ok() => {
                    result = Err(io_err(format!("remove `{}`", f.display()))(e));
                }
                _ => {}
            }
        }
        result
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.shutdown(true);
    }
}

/// Poll a pidfd until the process has exited; false on timeout.
pub(crate) fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    poll_readable(pidfd, timeout).unwrap_or(true)
}

/// Poll one descriptor for input (or hang-up); false on timeout.
pub(crate) fn poll_readable(fd: &impl AsFd, timeout: Duration) -> std::io::Result<bool> {
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A memfd for a helper's stderr: read back when it fails, never a file left on disk.
pub(crate) fn stderr_file(name: &str) -> Result<File> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    memfd_create(name, MFdFlags::MFD_CLOEXEC)
        .map(File::from)
        .map_err(|e| io_err(format!("create memfd for {name}'s stderr"))(e.into()))
}

/// The line of a helper's stderr that explains its failure, or None.
pub(crate) fn failure_line(stderr: &mut File) -> Option<String> {
    let mut text = String::new();
    stderr.rewind().ok()?;
    stderr.read_to_string(&mut text).ok()?;
    summarize(&text)
}

fn summarize(text: &str) -> Option<String> {
    // Chatter both helpers print on every run, which explains nothing.
    let noise = |l: &str| {
        (l.starts_with("Failed to send") && l.ends_with("to syslog"))
            || l.starts_with("WARNING: Support for seccomp is experimental")
            || l.starts_with("sent tapfd")
            || l.starts_with("received tapfd")
            || l.starts_with("Starting slirp")
            || l.starts_with("apifd event")
            || l.starts_with("api_handler")
            || l.starts_with("* ")
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !noise(l))
        .collect();
    let telling = |l: &&&str| {
        let l = l.to_ascii_lowercase();
        l.contains("error") || l.contains("fail") || l.contains("denied") || l.contains("cannot")
    };
    let tun = |l: &&&str| l.contains("/dev/net/tun");
    lines
        .iter()
        .find(tun)
        .or_else(|| lines.iter().rev().find(telling))
        .or(lines.last())
        .map(|l| l.to_string())
}

/// The error for a helper that exited or failed before it was ready.
pub(crate) fn failed(helper: &'static str, line: Option<String>, what: String) -> Error {
    match line {
        Some(line) if line.contains("/dev/net/tun") => Error::TunUnusable {
            helper,
            message: line,
        },
        Some(line) => Error::HelperFailed {
            helper,
            message: format!("{what}: {line}"),
        },
        None => Error::HelperFailed {
            helper,
            message: what,
        },
    }
}

/// Bind the host side of `port` for a moment so that "in use" and "privileged" are clear
/// errors before a helper is started (pasta exits 0 even when it cannot bind a port).
pub(crate) fn check_host_port(port: &PortMapping) -> Result<()> {
    if port.host_port == 0 {
        return Err(Error::Unpublishable {
            port: *port,
            reason: "choose a host port first (0 means any free port)".to_string(),
        });
    }
    let ip = port.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddr::new(ip, port.host_port);
    let r = match port.proto {
        Proto::Tcp => TcpListener::bind(addr).map(drop),
        Proto::Udp => UdpSocket::bind(addr).map(drop),
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(Error::PortInUse { port: *port })
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(Error::PrivilegedPort { port: *port })
        }
        Err(e) => Err(Error::Unpublishable {
            port: *port,
            reason: format!("bind {addr}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_picks_the_telling_line() {
        let slirp = "sent tapfd=6 for tap0\nWARNING: Support for seccomp is experimental\n\
                     open(\"/dev/net/tun\"): Permission denied\nchild failed(1)\n";
        assert_eq!(
            summarize(slirp).unwrap(),
            "open(\"/dev/net/tun\"): Permission denied"
        );
        let pasta = "Failed to send 45 bytes to syslog\nFailed to open tun socket in namespace\n";
        assert_eq!(
            summarize(pasta).unwrap(),
            "Failed to open tun socket in namespace"
        );
        assert_eq!(summarize("sent tapfd=5 for tap0\n"), None);
    }

    #[test]
    fn port_zero_is_refused_at_start() {
        let p = crate::parse_publish("80").unwrap()[0];
        let err = check_host_port(&p).unwrap_err().to_string();
        assert_eq!(
            err,
            "publish 80/tcp -> 0.0.0.0:0: choose a host port first (0 means any free port)"
        );
    }

    #[test]
    fn port_in_use_is_clear() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = format!("127.0.0.1:{}:80", l.local_addr().unwrap().port());
        let p = crate::parse_publish(&spec).unwrap()[0];
        let err = check_host_port(&p).unwrap_err();
        assert!(matches!(err, Error::PortInUse { .. }), "{err}");
        assert!(err.to_string().ends_with("is already in use"), "{err}");
    }
}
