//! The container's init: the process `container::create_with` clones into new mount, pid, uts, ipc,
//! cgroup (and net) namespaces; it is PID 1 there. It waits until the parent has configured
//! its namespaces (sync point 1), brings up loopback, sets the hostname, executes the mount
//! plan, opens the terminal inside the container's own devpts (the master goes to the parent
//! on the channel, as crun's console socket does), and at sync point 2 waits for its start
//! (saying it is ready when the start is not there yet). Then it becomes the command, or with `--init` forks it and stays as a reaper
//! that forwards signals.
//!
//! Failures go to the parent as [`Msg::Failed`] with the exit code `rbox run` returns; a clean
//! exec closes the channel (it is close-on-exec), which the parent reads as success.

use std::os::fd::{OwnedFd, RawFd};

use super::container::forwarded;
use super::launch::Launch;
use super::process::{self, Failure};
use super::sync::{Channel, Msg};
use super::{sys, terminal};

/// The init's whole life; never returns. `allowed`: the CPUs to run on again once
/// configured, where rbox's side moved the init off its own CPU meanwhile.
pub fn main(l: &Launch, chan: Channel, allowed: Option<&std::collections::BTreeSet<usize>>) -> ! {
    // If rbox dies, so does the container: no orphaned half-built namespaces. The parent
    // is invisible from the new pid namespace (getppid is 0), so liveness is the channel:
    // end-of-file instead of the next message means rbox is gone.
    if sys::set_pdeathsig(libc::SIGKILL).is_err() {
        sys::exit_now(crate::exit::FAILED as i32);
    }
    if !matches!(chan.recv(), Ok(Some(Msg::Configured))) {
        sys::exit_now(crate::exit::FAILED as i32);
    }
    // (rbox's side moved it before `Configured`; the init stays on the CPU it runs on)
    if let Some(cpus) = allowed {
        let _ = sys::set_affinity(0, cpus);
    }
    let f = match run(l, &chan) {
        Ok(f) | Err(f) => f,
    };
    let sent = chan.send(&Msg::Failed {
        code: f.code,
        msg: f.msg.clone(),
    });
    if sent.is_err() && l.start_fifo.is_some() {
        // after an OCI `create`, nobody reads the channel: the container's stderr gets it
        let _ = nix::unistd::write(sys::stdio(2), format!("rbox: {}\n", f.msg).as_bytes());
    }
    sys::exit_now(f.code as i32);
}

/// Set up, wait for the start, exec; returns only on failure. `Err` for setup failures,
/// `Ok` for what happened after the start message.
fn run(l: &Launch, chan: &Channel) -> Result<Failure, Failure> {
    // the namespace made ahead, before anything that sees the network (sysfs, /proc/sys/net)
    if let Some(ns) = &l.pre_net {
        sys::setns(ns, libc::CLONE_NEWNET)
            .map_err(|e| Failure::setup(format!("join the network namespace: {e}")))?;
    }
    if l.become_root {
        let root = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
        nix::unistd::setresgid(root.1, root.1, root.1)
            .and_then(|_| nix::unistd::setresuid(root.0, root.0, root.0))
            .map_err(|e| {
                Failure::setup(format!(
                    "become root of the container's user namespace: {e} (do uidMappings and gidMappings map id 0?)"
                ))
            })?;
        // a change of euid makes the process non-dumpable, which closes /proc/PID/ns/* to
        // rbox outside (the network helper and `container:` joins open them)
        nix::sys::prctl::set_dumpable(true)
            .map_err(|e| Failure::setup(format!("set the init dumpable: {e}")))?;
        chan.send(&Msg::Root)
            .map_err(|e| Failure::setup(format!("tell rbox the init is root: {e}")))?;
    }
    // a mount namespace joined by path: the container's mounts are made there
    for (f, _) in l.joins.iter().filter(|(_, t)| *t == libc::CLONE_NEWNS) {
        sys::setns(f, libc::CLONE_NEWNS)
            .map_err(|e| Failure::setup(format!("join the mnt namespace: {e}")))?;
    }
    if l.own_net && l.pre_net.is_none() {
        sys::loopback_up().map_err(|e| Failure::setup(format!("bring up loopback: {e}")))?;
    }
    if !l.hostname.is_empty() {
        nix::unistd::sethostname(&l.hostname)
            .map_err(|e| Failure::setup(format!("set hostname `{}`: {e}", l.hostname)))?;
    }
    if let Some((_, root)) = &l.nested_maps {
        as_nested_root(*root)?;
    }
    let apply = |ops| {
        super::mounts::apply(ops, &l.target).map_err(|e| {
            let runtime = e
                .downcast_ref::<super::mounts::Failed>()
                .is_some_and(|f| f.runtime);
            Failure {
                code: if runtime {
                    l.mount_failure_code
                } else {
                    crate::exit::FAILED
                },
                msg: format!("{e:#}"),
            }
        })
    };
    if l.create_hooks.is_empty() {
        apply(&l.ops)?;
    } else {
        // the OCI `createContainer` hooks: in the container's namespaces, its mounts made,
        // before pivot_root
        let pivot = l
            .ops
            .iter()
            .position(|o| matches!(o, super::mounts::Op::Pivot | super::mounts::Op::Chroot))
            .unwrap_or(l.ops.len());
        apply(&l.ops[..pivot])?;
        run_hooks(l, "createContainer", &l.create_hooks)?;
        apply(&l.ops[pivot..])?;
    }
    if let Some((maps, (uid, gid))) = &l.nested_maps {
        // devpts's and mqueue's roots belong to rbox's namespace, which made them: the
        // container's root owns them under Podman (best effort: a failure leaves nobody)
        for d in ["/dev/pts", "/dev/mqueue"] {
            let _ = std::os::unix::fs::lchown(d, Some(*uid), Some(*gid));
        }
        enter_nested(maps, l.clone_flags & libc::CLONE_NEWUTS != 0)?;
    }
    if let Some(fds) = l.stdio {
        for (i, fd) in fds.iter().enumerate() {
            sys::dup2_raw(*fd, i as RawFd)
                .map_err(|e| Failure::setup(format!("set up stdio: {e}")))?;
        }
    }
    let slave = if l.command.process.terminal {
        let pty = terminal::open(l.winsize.as_ref())?;
        chan.send(&Msg::Terminal(pty.master))
            .map_err(|e| Failure::setup(format!("send terminal to rbox: {e}")))?;
        Some(pty.slave)
    } else {
        None
    };
    if !l.init {
        stdio(l, slave.as_ref())?;
    }
    // sync point 2: set up; exec once the parent, having recorded the container as running,
    // says start (already waiting when the parent sent it early: then no round trip)
    if let Some(fifo) = l.start_fifo {
        // the OCI runtime's `create` exits once we are ready: live on without it and wait
        // for `start` on the FIFO
        sys::set_pdeathsig(0)
            .map_err(|e| Failure::setup(format!("clear parent death signal: {e}")))?;
        chan.send(&Msg::Ready)
            .map_err(|e| Failure::setup(format!("report to rbox: {e}")))?;
        wait_fifo(fifo)?;
        run_start_hooks(l)?;
        return Ok(process::exec(&l.command, l.single_id, l.seccomp.as_deref()));
    }
    match chan.pending() {
        Ok(Some(Msg::Start)) => {}
        Ok(None) => {
            chan.send(&Msg::Ready)
                .map_err(|e| Failure::setup(format!("report to rbox: {e}")))?;
            if !matches!(chan.recv(), Ok(Some(Msg::Start))) {
                sys::exit_now(crate::exit::FAILED as i32);
            }
        }
        _ => sys::exit_now(crate::exit::FAILED as i32),
    }
    run_start_hooks(l)?;
    if l.init {
        return Ok(reaper(l, slave));
    }
    Ok(process::exec(&l.command, l.single_id, l.seccomp.as_deref()))
}

/// Block until `rbox oci start` opens the FIFO (`O_PATH` descriptor `fifo`) for reading, then
/// tell it we go on (runc's exec.fifo).
fn wait_fifo(fifo: RawFd) -> Result<(), Failure> {
    use std::io::Write;
    let path = format!("/proc/self/fd/{fifo}");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Failure::setup(format!("open the start FIFO: {e}")))?;
    f.write_all(b"0")
        .map_err(|e| Failure::setup(format!("write the start FIFO: {e}")))?;
    let _ = nix::unistd::close(fifo);
    Ok(())
}

/// The OCI `startContainer` hooks, in the container.
fn run_start_hooks(l: &Launch) -> Result<(), Failure> {
    run_hooks(l, "startContainer", &l.start_hooks)
}

/// OCI hooks run by the init, with the state `rbox oci` keeps on stdin.
fn run_hooks(l: &Launch, kind: &str, hooks: &[oci_spec::runtime::Hook]) -> Result<(), Failure> {
    if hooks.is_empty() {
        return Ok(());
    }
    let state = match l.state_dir {
        Some(d) => std::fs::read(format!("/proc/self/fd/{d}/state.json")).unwrap_or_default(),
        None => Vec::new(),
    };
    super::hooks::run(kind, hooks, &state).map_err(|e| Failure::setup(format!("{e:#}")))
}

/// The command's stdio: the terminal, or /dev/null as stdin when nothing is attached.
fn stdio(l: &Launch, slave: Option<&OwnedFd>) -> Result<(), Failure> {
    terminal::attach_stdio(slave, !l.interactive && l.stdio.is_none())
}

/// `--init`: PID 1 forks the command, forwards signals to it and reaps every process until
/// the command exits; then exits with its status (128+n for signal n).
fn reaper(l: &Launch, slave: Option<OwnedFd>) -> Failure {
    let pid = match sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Err(f) = stdio(l, slave.as_ref()) {
                return f;
            }
            drop(slave);
            return process::exec(&l.command, l.single_id, l.seccomp.as_deref());
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Failure::setup(format!("fork init child: {e}")),
    };
    drop(slave);
    sys::set_name("rbox-init");
    sys::set_cmdline("rbox-init");
    // Close our copy of the channel so rbox sees end-of-file when the command execs.
    for fd in 3..1024 {
        let _ = nix::unistd::close(fd);
    }
    let set = forwarded();
    loop {
        let Ok(sig) = sys::sigwait(&set) else {
            continue;
        };
        if sig == libc::SIGCHLD {
            loop {
                match nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(_) => break,
                    Ok(st) if st.pid() == Some(pid) => {
                        sys::exit_now(crate::exit::from_wait(st) as i32)
                    }
                    Ok(_) => {}
                }
            }
        } else if sig != libc::SIGWINCH {
            let _ = sys::kill(pid.as_raw(), sig);
        }
    }
}

/// `--userns=nomap` and `auto`, before the mounts: what the init creates (mount points,
/// `/dev`'s tmpfs) is owned by the nested namespace's root (rbox's id 1 for nomap), as it is root's under
/// Podman, while the init keeps the capabilities of rbox's root to reach the store. A
/// change of fsuid from 0 drops the file capabilities from the effective set: raised again.
fn as_nested_root((uid, gid): (u32, u32)) -> Result<(), Failure> {
    nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid));
    let permitted = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("CapPrm:"))?;
            u64::from_str_radix(l["CapPrm:".len()..].trim(), 16).ok()
        })
        .ok_or_else(|| Failure::setup("read the init's capabilities".to_string()))?;
    sys::capset(permitted, permitted, 0)
        .map_err(|e| Failure::setup(format!("raise the init's capabilities: {e}")))?;
    // the fsuid change made the init non-dumpable: its /proc files (the uid_map the writer
    // of enter_nested opens) would belong to nobody
    nix::sys::prctl::set_dumpable(true)
        .map_err(|e| Failure::setup(format!("set the init dumpable: {e}")))
}

/// `--userns=nomap`: the mounts are made (from rbox's namespace, which owns the store);
/// now move into a user namespace with `maps`, which does not map rbox's id 0, and take
/// its root, with new mount, uts and ipc namespaces that it owns (so the container's root
/// may mount and set the hostname, as under Podman). A process created in a namespace
/// cannot write its own maps beyond its own id: a child forked before the unshare, still
/// root of rbox's namespace, writes them. Without `own_uts` (`--uts=host`) the UTS namespace
/// stays the host's.
fn enter_nested((uid_map, gid_map): &(String, String), own_uts: bool) -> Result<(), Failure> {
    use nix::sched::CloneFlags;
    let fail = |what: &str, e: nix::Error| Failure::setup(format!("{what}: {e}"));
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| fail("create the id map pipe", e))?;
    let child = match sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(w);
            let mut b = [0u8; 1];
            if !matches!(nix::unistd::read(&r, &mut b), Ok(1)) {
                sys::exit_now(1);
            }
            // rbox's root again (see as_nested_root): the map files are its
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
            nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
            let p = format!("/proc/{}", nix::unistd::getppid());
            let ok = std::fs::write(format!("{p}/uid_map"), uid_map)
                .and_then(|_| std::fs::write(format!("{p}/gid_map"), gid_map));
            let ok = ok.is_ok();
            sys::exit_now(if ok { 0 } else { 1 });
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Err(fail("fork the id map writer", e)),
    };
    drop(r);
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC;
    if own_uts {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    let res =
        nix::sched::unshare(flags).map_err(|e| fail("create the container's user namespace", e));
    rbox_storage::id_maps_changed();
    // a failed unshare closes the pipe unwritten: the writer exits at once
    if res.is_ok() {
        let _ = nix::unistd::write(&w, b"u");
    }
    drop(w);
    let status = nix::sys::wait::waitpid(child, None);
    res?;
    if !matches!(status, Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) {
        return Err(Failure::setup(format!(
            "write the container's id maps ({}, {})",
            uid_map.trim(),
            gid_map.trim()
        )));
    }
    let root = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    nix::unistd::setresgid(root.1, root.1, root.1)
        .and_then(|_| nix::unistd::setresuid(root.0, root.0, root.0))
        .map_err(|e| fail("become root of the container's user namespace", e))?;
    // the id change made the init non-dumpable, which closes /proc/PID/ns/* to `rbox exec`
    nix::sys::prctl::set_dumpable(true).map_err(|e| fail("set the init dumpable", e))
}
