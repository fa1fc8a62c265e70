//! The container's first process. The parent clones it into new mount, pid, uts, ipc, cgroup
//! (and net) namespaces; it is PID 1 there. It brings up loopback, sets the hostname, executes
//! the mount plan, opens the terminal inside the container's own devpts (the master goes back
//! to the parent over a socketpair, as crun's console socket does), then becomes the command,
//! or with `--init` forks it and stays as a reaper that forwards signals.
//!
//! Failures travel back on a close-on-exec pipe as one byte of exit code and one line of text:
//! end-of-file without a message means exec succeeded.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket;
use nix::unistd::Pid;

use super::mounts::Op;
use super::process::{self, Failure};
use super::{sys, terminal};
use crate::state::Spec;

/// Everything the child needs, computed before the clone.
pub struct Launch {
    pub spec: Spec,
    pub ops: Vec<Op>,
    /// where the new root is assembled before pivot_root
    pub target: PathBuf,
    /// only uid/gid 0 exist in the user namespace
    pub single_id: bool,
    pub own_net: bool,
    /// stdin/stdout/stderr for the container when there is no terminal (detached: a log file)
    pub stdio: Option<[RawFd; 3]>,
    /// `--userns=keep-id`: a nested user namespace with these maps (written by the parent)
    pub keep_id: Option<KeepId>,
    /// With `-t`, the caller's window size, set on the container's terminal before exec
    /// (the command may ask for it at once, before rbox relays anything)
    pub winsize: Option<libc::winsize>,
    /// the seccomp program the command runs under (compiled here, installed by the child)
    pub seccomp: Option<Vec<libc::sock_filter>>,
}

/// The id maps of a keep-id container: the caller's own uid/gid inside map to rbox's
/// namespace root (the caller outside); every other id keeps a place from the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepId {
    pub uid: u32,
    pub gid: u32,
    pub uid_count: u32,
    pub gid_count: u32,
}

impl KeepId {
    /// uid_map/gid_map text for `id` with `count` ids available in rbox's namespace.
    pub fn map(id: u32, count: u32) -> String {
        let mut m = String::new();
        if count > 1 {
            // inside 0..id come from outside 1..=id (when the range is big enough)
            let n = id.min(count - 1);
            if n > 0 {
                m.push_str(&format!("0 1 {n}\n"));
            }
        }
        m.push_str(&format!("{id} 0 1\n"));
        if count > id + 1 {
            m.push_str(&format!("{} {} {}\n", id + 1, id + 1, count - id - 1));
        }
        m
    }
}

/// The parent's view of a started container.
pub struct Started {
    pub pid: Pid,
    /// the terminal master, with `-t`
    pub pty: Option<OwnedFd>,
}

/// Signals rbox forwards to the container (and so blocks while it waits).
pub fn forwarded() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
        Signal::SIGALRM,
        Signal::SIGCONT,
    ] {
        s.add(sig);
    }
    s
}

/// Clone the container and wait until it has exec'd its command (or failed to).
pub fn start(l: &Launch) -> Result<Started> {
    // The child runs Rust code (it allocates) between clone and exec: that is only sound
    // while no other thread exists, e.g. one holding the allocator's lock. Pull threads are
    // joined by now; check rather than trust it.
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if threads > 1 {
        anyhow::bail!("start container: rbox has {threads} threads at clone time (a bug in rbox)");
    }
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("create pipe")?;
    let pair = if l.spec.tty {
        Some(
            socket::socketpair(
                socket::AddressFamily::Unix,
                socket::SockType::Stream,
                None,
                socket::SockFlag::SOCK_CLOEXEC,
            )
            .context("create socketpair")?,
        )
    } else {
        None
    };
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if l.own_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if l.keep_id.is_some() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("create pipe")?;
    // Signals stay blocked from here on: the parent takes them from a signalfd, the init
    // from sigwait, and the command gets a clean mask just before exec.
    forwarded().thread_block().context("block signals")?;
    let pid = sys::clone_fork(flags.bits()).map_err(|e| {
        let hint =
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::ENOSPC) {
                ": the host does not allow creating these namespaces (check user.max_*_namespaces)"
            } else {
                ""
            };
        anyhow::anyhow!("create container namespaces: {e}{hint}")
    })?;
    if pid == 0 {
        drop(err_r);
        drop(go_w);
        // If rbox dies, so does the container: no orphaned half-built namespaces. The parent
        // is invisible from the new pid namespace (getppid is 0), so liveness is the go byte:
        // it comes after our id maps are written; end-of-file means rbox is gone.
        if sys::set_pdeathsig(libc::SIGKILL).is_err() {
            sys::exit_now(crate::exit::FAILED as i32);
        }
        let mut b = [0u8; 1];
        if File::from(go_r).read(&mut b).unwrap_or(0) != 1 {
            sys::exit_now(crate::exit::FAILED as i32);
        }
        let sock = pair.map(|(a, b)| {
            drop(a);
            b
        });
        let f = child(l, sock);
        report(err_w, &f);
        sys::exit_now(f.code as i32);
    }
    drop(err_w);
    drop(go_r);
    let pid = Pid::from_raw(pid);
    if let Some(k) = &l.keep_id {
        let r = write_keep_id_maps(pid, k, l.single_id);
        if let Err(e) = r {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(e);
        }
    }
    File::from(go_w)
        .write_all(b"1")
        .context("start container")?;
    let pty = match pair {
        Some((a, b)) => {
            drop(b);
            terminal::receive_master(&a)?
        }
        None => None,
    };
    let mut buf = Vec::new();
    File::from(err_r)
        .read_to_end(&mut buf)
        .context("read container start status")?;
    if let Some((&code, msg)) = buf.split_first() {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(
            crate::exit::CodedError::new(code, String::from_utf8_lossy(msg).into_owned()).into(),
        );
    }
    Ok(Started { pid, pty })
}

fn write_keep_id_maps(pid: Pid, k: &KeepId, single_id: bool) -> Result<()> {
    let p = format!("/proc/{pid}");
    std::fs::write(format!("{p}/uid_map"), KeepId::map(k.uid, k.uid_count))
        .context("write keep-id uid map")?;
    if single_id {
        // setgroups is denied in rbox's namespace, and so must be in any namespace below it
        std::fs::write(format!("{p}/setgroups"), "deny").context("deny setgroups")?;
    }
    std::fs::write(format!("{p}/gid_map"), KeepId::map(k.gid, k.gid_count))
        .context("write keep-id gid map")?;
    Ok(())
}

fn report(err_w: OwnedFd, f: &Failure) {
    let mut msg = vec![f.code];
    msg.extend_from_slice(f.msg.replace('\n', " ").as_bytes());
    let _ = File::from(err_w).write_all(&msg);
}

/// The child side; returns only on failure.
fn child(l: &Launch, sock: Option<OwnedFd>) -> Failure {
    match child_setup(l, sock) {
        Ok(f) | Err(f) => f,
    }
}

fn child_setup(l: &Launch, sock: Option<OwnedFd>) -> Result<Failure, Failure> {
    if l.own_net {
        sys::loopback_up().map_err(|e| Failure::setup(format!("bring up loopback: {e}")))?;
    }
    nix::unistd::sethostname(&l.spec.hostname)
        .map_err(|e| Failure::setup(format!("set hostname `{}`: {e}", l.spec.hostname)))?;
    super::mounts::apply(&l.ops, &l.target)?;
    if let Some(fds) = l.stdio {
        for (i, fd) in fds.iter().enumerate() {
            sys::dup2_raw(*fd, i as RawFd)
                .map_err(|e| Failure::setup(format!("set up stdio: {e}")))?;
        }
    }
    if l.spec.init {
        return Ok(init(l, sock));
    }
    terminal(l, sock)?;
    Ok(process::exec(&l.spec, l.single_id, l.seccomp.as_deref()))
}

/// Give the command its stdio: with `-t` a pty from our own devpts, whose master goes to rbox.
fn terminal(l: &Launch, sock: Option<OwnedFd>) -> Result<(), Failure> {
    let slave = match sock {
        Some(sock) => {
            let pty = terminal::open(l.winsize.as_ref())?;
            terminal::send_master(&sock, &pty.master)?;
            Some(pty.slave)
        }
        None => None,
    };
    terminal::attach_stdio(slave.as_ref(), !l.spec.interactive && l.stdio.is_none())
}

/// `--init`: PID 1 forks the command, forwards signals to it and reaps every process until
/// the command exits; then exits with its status (128+n for signal n).
fn init(l: &Launch, sock: Option<OwnedFd>) -> Failure {
    let pid = match sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Err(f) = terminal(l, sock) {
                return f;
            }
            return process::exec(&l.spec, l.single_id, l.seccomp.as_deref());
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Failure::setup(format!("fork init child: {e}")),
    };
    drop(sock);
    sys::set_name("rbox-init");
    sys::set_cmdline("rbox-init");
    // Close our copy of the status pipe so rbox sees EOF when the command execs.
    for fd in 3..1024 {
        let _ = nix::unistd::close(fd);
    }
    let set = forwarded();
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig == Signal::SIGCHLD {
            loop {
                match nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(_) => break,
                    Ok(st) if st.pid() == Some(pid) => {
                        sys::exit_now(crate::exit::from_wait(st) as i32)
                    }
                    Ok(_) => {}
                }
            }
        } else if sig != Signal::SIGWINCH {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeepId;

    #[test]
    fn keep_id_maps() {
        assert_eq!(
            KeepId::map(1000, 65537),
            "0 1 1000\n1000 0 1\n1001 1001 64536\n"
        );
        assert_eq!(KeepId::map(1000, 1), "1000 0 1\n");
        // a range smaller than the uid: what exists below it is mapped, nothing above
        assert_eq!(KeepId::map(1000, 501), "0 1 500\n1000 0 1\n");
    }
}
