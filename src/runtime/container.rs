//! The container parent: the process that clones the container (`rbox run`, `rbox start -a`,
//! or the monitor of a detached container) and drives its init through the two sync points
//! of [`sync`](super::sync): it writes the id maps of a nested user namespace while the init
//! waits in its new namespaces ([`create_with`]), has the caller record the container as running
//! while the init sets itself up, and then lets it exec ([`Created::start`]).
//! The init's side is `init.rs`.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::launch::Launch;
use super::sync::{Channel, Msg};
use super::{init, sys};

/// A container whose init exists (its namespaces configured) and sets itself up, to exec its
/// command on [`Created::start`]. Dropping it without starting ends the init (it reads
/// end-of-file instead of its start message).
pub struct Created {
    pub pid: Pid,
    /// the terminal master, with `-t`
    pub pty: Option<OwnedFd>,
    chan: Channel,
    /// the FUSE overlay's server, this process's child
    fuse: Option<Pid>,
}

/// The parent's view of a started container.
pub struct Started {
    pub pid: Pid,
    /// the terminal master, with `-t`
    pub pty: Option<OwnedFd>,
    /// the FUSE overlay's server (a `fuse-overlay` root), this process's child: it exits once
    /// the init has; the caller reaps it ([`reap_fuse`])
    pub fuse: Option<Pid>,
}

/// Waits for the FUSE overlay's server of a container whose init has exited (it follows
/// the init at once, see rbox_storage::mount::fuse): its mount is gone once it is.
pub fn reap_fuse(fuse: Option<Pid>) {
    if let Some(p) = fuse {
        let _ = nix::sys::wait::waitpid(p, None);
    }
}

/// Ends the FUSE overlay's server of a container that did not start (or whose init could
/// not be waited for).
pub fn end_fuse(fuse: Option<Pid>) {
    if let Some(p) = fuse {
        let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
    }
    reap_fuse(fuse);
}

type FuseRoot<'a> = (
    (
        &'a [std::path::PathBuf],
        &'a std::path::Path,
        &'a std::path::Path,
    ),
    Option<&'a rbox_storage::mount::fuse::shift::IdShift>,
);

/// The root of a `fuse-overlay` container: its layers (and keep-id's owner shift), served by
/// a server outside the container (see rbox_storage::mount::fuse).
fn fuse_root(l: &Launch) -> Option<FuseRoot<'_>> {
    l.ops.iter().find_map(|o| match o {
        super::mounts::Op::Root(rbox_storage::Rootfs::Fuse {
            lowers,
            upper,
            work,
            shift,
        }) => Some((
            (lowers.as_slice(), upper.as_path(), work.as_path()),
            shift.as_ref(),
        )),
        _ => None,
    })
}

/// Signals rbox forwards to the container (and so blocks while it waits), the real-time ones
/// included.
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
    super::sys::with_realtime(s)
}

/// Clone the container's init and configure its namespaces (sync point 1); it then sets
/// itself up (mounts, pivot_root, terminal) and waits at sync point 2 for its start.
/// `configured` runs at sync point 1 once the init's namespaces are configured and before it
/// sets itself up (the OCI `prestart` and `createRuntime` hooks). `cloned` runs with the
/// init's pid while the init sets itself up (the caller records the container as running
/// there: in parallel with the setup, and before the command can run).
pub fn create_with(
    l: &Launch,
    configured: impl FnOnce(Pid) -> Result<()>,
    cloned: impl FnOnce(Pid) -> Result<()>,
) -> Result<Created> {
    create_with_early(l, |_| Ok(()), configured, cloned)
}

/// [`create_with`], with `early` run first, with the init's pid as soon as its namespaces
/// exist, before its id maps are written: the network helper starts there, its own start-up
/// (the longest part of a bridged network's) running while the maps are written and the init
/// sets up.
pub fn create_with_early(
    l: &Launch,
    early: impl FnOnce(Pid) -> Result<()>,
    configured: impl FnOnce(Pid) -> Result<()>,
    cloned: impl FnOnce(Pid) -> Result<()>,
) -> Result<Created> {
    // The child runs Rust code (it allocates) between clone and exec: that is only sound
    // while no other thread exists, e.g. one holding the allocator's lock. Pull threads are
    // joined by now; check rather than trust it.
    // (A thread just joined, such as the port forwarder paused for a restart, may still be
    // listed for a moment: it is on its way out.)
    super::prenet::cancel();
    let count = || {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(1)
    };
    let mut threads = count();
    for _ in 0..100 {
        if threads == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        threads = count();
    }
    if threads > 1 {
        anyhow::bail!("start container: rbox has {threads} threads at clone time (a bug in rbox)");
    }
    let (ours, theirs) = Channel::pair().context("create sync channel")?;
    let mut flags = CloneFlags::from_bits_truncate(l.clone_flags)
        - CloneFlags::CLONE_NEWNET
        - CloneFlags::CLONE_NEWUSER;
    if l.own_net && l.pre_net.is_none() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if l.user_maps.is_some() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    // Signals stay blocked from here on: the parent takes them from a signalfd, the init
    // from sigwait, and the command gets a clean mask just before exec.
    forwarded().thread_block().context("block signals")?;
    // `container:`/`ns:`: the init is cloned inside the namespace it joins. This process
    // stays there: rootless, its own namespace is the host's, owned by the initial user
    // namespace, where rbox has no privilege to setns back; and it has no network work left
    // (a joining container has no helper and no ports of its own).
    if let Some(n) = &l.join_net {
        n.enter()?;
    }
    for (f, typ) in l.joins.iter().filter(|(_, t)| *t != libc::CLONE_NEWNS) {
        sys::setns(f, *typ).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                ": rbox joins namespaces from the caller's user namespace, which needs \
                 CAP_SYS_ADMIN there (run as root)"
            } else {
                ""
            };
            anyhow::anyhow!("join the {} namespace: {e}{hint}", ns_name(*typ))
        })?;
    }
    // the FUSE overlay's server is forked from here once the init's namespaces exist; the
    // init asks it to mount over this channel
    let fuse = match fuse_root(l) {
        Some(_) => Some(rbox_storage::mount::fuse::channel().context("start container")?),
        None => None,
    };
    // The init sets up (mounts, 1.5 ms) while this side configures it and records the
    // start (0.3 ms): on another CPU, where the scheduler would more often than not queue it
    // behind this side (see sys::cpus_beside), until it has been configured; then on all
    // the CPUs it may use again, which its command inherits.
    let allowed = sys::affinity();
    let beside = allowed.as_ref().and_then(sys::cpus_beside);
    let cloned_pid = sys::clone_fork(flags.bits());
    if matches!(cloned_pid, Ok(0)) {
        drop(ours);
        if let Some((server, init)) = fuse {
            drop(server);
            rbox_storage::mount::fuse::use_server(init);
        }
        init::main(l, theirs, allowed.as_ref().filter(|_| beside.is_some()));
    }
    if let (Ok(pid), Some(cpus)) = (&cloned_pid, &beside) {
        let _ = sys::set_affinity(*pid, cpus);
    }
    let pid = cloned_pid.map_err(|e| {
        let hint =
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::ENOSPC) {
                ": the host does not allow creating these namespaces (check user.max_*_namespaces)"
            } else {
                ""
            };
        anyhow::anyhow!("create container namespaces: {e}{hint}")
    })?;
    drop(theirs);
    let pid = Pid::from_raw(pid);
    let mut server = None;
    let fail = |e: anyhow::Error| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        e
    };
    // keep-id's init becomes root after sync point 1, and a helper started before could
    // find its namespaces closed meanwhile: `early` waits for that then
    let mut early = Some(early);
    if !l.become_root {
        if let Some(early) = early.take() {
            early(pid).map_err(fail)?;
        }
    }
    // sync point 1: the init's namespaces exist; configure them from outside
    if let Some(maps) = &l.user_maps {
        if l.map_helpers {
            super::userns::write_maps_with_helpers(pid.as_raw(), maps).map_err(fail)?;
        } else {
            write_user_maps(pid, maps, l.single_id).map_err(fail)?;
        }
    }
    if let (Some((ours_fuse, theirs_fuse)), Some((root, shift))) = (fuse, fuse_root(l)) {
        drop(theirs_fuse);
        // the server forked here inherits it
        rbox_storage::mount::fuse::supervisor::fake_unrecorded_chowns(l.fakeroot_chown);
        let p = rbox_storage::mount::fuse::spawn(
            pid.as_raw(),
            ours_fuse,
            root,
            &l.target,
            l.fuse_socket.as_deref(),
            shift,
        )
        .context("start container")
        .map_err(fail)?;
        server = Some(Pid::from_raw(p));
    }
    // the server exits with the init (it watches it); reaped here when the start fails
    let fail = |e: anyhow::Error| {
        let e = fail(e);
        end_fuse(server);
        e
    };
    configured(pid).map_err(fail)?;
    ours.send(&Msg::Configured)
        .context("start container")
        .map_err(fail)?;
    if l.become_root {
        // while the init changes its ids its /proc/PID/ns files are closed to us: the
        // network helpers (`early`, held back until now, and `cloned`) open them
        match ours.recv() {
            Ok(Some(Msg::Root)) => {}
            Ok(other) => return Err(failed(pid, other)),
            Err(e) => return Err(fail(anyhow::Error::from(e).context("start container"))),
        }
        if let Some(early) = early.take() {
            early(pid).map_err(fail)?;
        }
    }
    if let Err(e) = cloned(pid) {
        // The init sets up while this side makes its network: when the init fails early (a
        // bad mount, a missing command), its namespaces go and the network helper fails too
        // (slirp4netns: "child failed"). The init's reason, queued before it exited, is the
        // answer, with its exit code.
        while let Ok(Some(m)) = ours.pending() {
            if matches!(m, Msg::Failed { .. }) {
                return Err(failed(pid, Some(m)));
            }
        }
        return Err(fail(e));
    }
    Ok(Created {
        pid,
        pty: None,
        chan: ours,
        fuse: server,
    })
}

impl Created {
    /// Let the init exec the command once it is set up; returns once it has exec'd (or
    /// failed to). The start goes out at once: the init finds it waiting at sync point 2 and
    /// needs no round trip. (A caller that splits create and start, as the OCI runtime's
    /// `create` will, first reads the init's `Ready`.)
    pub fn start(self) -> Result<Started> {
        let Created {
            pid,
            mut pty,
            chan,
            fuse,
        } = self;
        let fail = |e: anyhow::Error| {
            end_fuse(fuse);
            e
        };
        if let Err(e) = chan.send(&Msg::Start) {
            // the init is gone; when it failed during its setup (while the network was being
            // made), its reason is still queued on the channel: that is the answer, not EPIPE
            while let Ok(Some(m)) = chan.recv() {
                if matches!(m, Msg::Failed { .. }) {
                    return Err(fail(failed(pid, Some(m))));
                }
            }
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(fail(anyhow::Error::from(e).context("start container")));
        }
        loop {
            let got = match chan.recv() {
                // the init failed and closed with our start unread: the kernel reports that
                // once, and its reason is still queued behind it
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => chan.recv(),
                other => other,
            };
            match got.context("read container start status").map_err(fail)? {
                Some(Msg::Terminal(fd)) => pty = Some(fd),
                Some(Msg::Ready) => {}
                None => return Ok(Started { pid, pty, fuse }),
                other => return Err(fail(failed(pid, other))),
            }
        }
    }
}

impl Created {
    /// Wait until the init is set up and waits for its start elsewhere (the OCI runtime's
    /// `create`, whose init waits on a FIFO): returns its pid and terminal master.
    pub fn ready(self) -> Result<(Pid, Option<OwnedFd>)> {
        let Created {
            pid, mut pty, chan, ..
        } = self;
        loop {
            match chan.recv().context("read container setup status")? {
                Some(Msg::Terminal(fd)) => pty = Some(fd),
                Some(Msg::Ready) => return Ok((pid, pty)),
                other => return Err(failed(pid, other)),
            }
        }
    }
}

/// The error for what the init sent instead of the next step (it exits after a failure:
/// reap it).
fn failed(pid: Pid, got: Option<Msg>) -> anyhow::Error {
    let _ = nix::sys::wait::waitpid(pid, None);
    match got {
        Some(Msg::Failed { code, msg }) => crate::exit::CodedError::new(code, msg).into(),
        None => anyhow::anyhow!("start container: its init exited during setup"),
        Some(m) => anyhow::anyhow!("start container: unexpected message {m:?} from its init"),
    }
}

/// The name of a `CLONE_NEW*` namespace type, as /proc/PID/ns names it.
fn ns_name(typ: libc::c_int) -> &'static str {
    match typ {
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWNET => "net",
        libc::CLONE_NEWNS => "mnt",
        libc::CLONE_NEWUSER => "user",
        _ => "unknown",
    }
}

/// The id maps of the container's own user namespace (keep-id), from outside it.
fn write_user_maps(pid: Pid, (uid_map, gid_map): &(String, String), single_id: bool) -> Result<()> {
    let p = format!("/proc/{pid}");
    std::fs::write(format!("{p}/uid_map"), uid_map).context("write the container's uid map")?;
    if single_id {
        // setgroups is denied in rbox's namespace, and so must be in any namespace below it
        std::fs::write(format!("{p}/setgroups"), "deny").context("deny setgroups")?;
    }
    std::fs::write(format!("{p}/gid_map"), gid_map).context("write the container's gid map")?;
    Ok(())
}
