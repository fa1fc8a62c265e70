//! The DNS relay process: rbox's relay of DNS over TCP for a container whose resolv.conf names
//! pasta's DNS forwarding address (pasta carries UDP only there; the relay's loop and its
//! listener in the container's namespace are `rbox_netns::DnsListener`'s). It is a process of
//! its own, `rbox-dns`, forked from the monitor (`monitor`) once the container's network is
//! ready, and killed with it. Not here: when a relay is needed (`rbox_netns::Helper::dns_forward`).

use std::fs;
use std::os::fd::AsRawFd;

use anyhow::{bail, Context as _, Result};

use super::sys;

/// rbox's relay of DNS over TCP for a container whose resolv.conf names pasta's forwarder
/// (UDP only): a process of its own, forked from the monitor while it has one thread. A thread
/// would not do: the relay dials the host's resolvers from the host's network namespace, and
/// a restart has the monitor join the container's (rootless, for good: see
/// `container::create_with`); the process stays across restarts.
pub struct DnsRelay {
    pid: nix::unistd::Pid,
}

impl DnsRelay {
    /// Fork the relay serving `l` (bound in the container's namespace); this process must
    /// have one thread, and be in the host's network namespace.
    pub fn start(l: rbox_netns::DnsListener) -> Result<DnsRelay> {
        use std::os::fd::AsFd;
        let threads = fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
        if threads != 1 {
            bail!("start the DNS relay: the monitor has {threads} threads (a bug in rbox)");
        }
        let parent = nix::unistd::getpid();
        match sys::fork().context("fork the DNS relay")? {
            nix::unistd::ForkResult::Child => {
                // killed with the monitor; not by a terminal's ^C (a group of its own)
                let _ = sys::set_pdeathsig(libc::SIGKILL);
                if nix::unistd::getppid() != parent {
                    sys::exit_now(0);
                }
                let _ = nix::unistd::setpgid(
                    nix::unistd::Pid::from_raw(0),
                    nix::unistd::Pid::from_raw(0),
                );
                sys::set_name("rbox-dns");
                // hold nothing else of the monitor's: the caller's stdio, the container's
                // pipes, terminal and channels must see their ends when their owners close
                // them
                let _ = sys::stdio_to_null();
                let keep = l.as_fd().as_raw_fd();
                let open: Vec<i32> = fs::read_dir("/proc/self/fd")
                    .map(|d| {
                        d.flatten()
                            .filter_map(|e| e.file_name().to_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep) {
                    let _ = nix::unistd::close(fd);
                }
                // never readable: the relay ends with SIGKILL (from `stop` or the kernel)
                let (never, _w) = match nix::unistd::pipe() {
                    Ok(p) => p,
                    Err(_) => sys::exit_now(1),
                };
                l.serve(&never);
                sys::exit_now(0);
            }
            nix::unistd::ForkResult::Parent { child } => Ok(DnsRelay { pid: child }),
        }
    }

    /// End the relay (SIGKILL: it keeps no state) and reap it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for DnsRelay {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}
