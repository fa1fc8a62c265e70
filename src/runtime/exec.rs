//! `rbox exec`: a new process in a running container. It joins the container's namespaces
//! with setns (its user namespace first: the caller owns it, so the caller may), forks into the
//! pid namespace, and from there takes the same path as the container's own command: user and
//! groups from the container's /etc/passwd, working directory, capabilities, exec. The caller
//! stays attached as `run` does: signals forwarded, terminal relayed, exit code returned.

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};

use super::container::forwarded;
use oci_spec::runtime::Spec as OciSpec;

use super::process::{self, Failure};
use super::sync::{Channel, Msg};
use super::{attach, caps, oci, sys, terminal};
use crate::exit;
use crate::layout;
use crate::state::ContainerRecord;

/// What `rbox exec` may change of the container's process settings.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<std::ffi::OsString>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub privileged: bool,
    /// `-d`: return once the command runs, its output discarded
    pub detach: bool,
    /// `--preserve-fds N`: the caller's descriptors 3 to 3+N-1 passed on
    pub preserve_fds: u32,
    /// `--detach-keys` as bytes (empty: none): with a terminal, typing them leaves the
    /// command running
    pub detach_keys: Vec<u8>,
    /// the store the container lives in: its `config.json`, and the cache of compiled
    /// seccomp programs
    pub store: std::path::PathBuf,
}

/// Namespaces joined, in order: the user namespace must come first (it grants the rest).
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("pid", libc::CLONE_NEWPID),
];

/// Run `o.args` in the running container `rec` whose init is `pid`.
/// `exited` gets the command's exit code once it ends, whether rbox waits for it or (`-d`) a
/// holder of the session does (see [`How::watch`]).
pub fn exec(
    rec: &ContainerRecord,
    pid: i32,
    o: &ExecOptions,
    exited: &dyn Fn(u8),
) -> Result<ExitCode> {
    if o.args.is_empty() {
        bail!("exec needs a command to run in container {}", rec.name);
    }
    // The container's own filter (see below), compiled or read from the cache while our
    // paths are still the host's: joining the mount namespace changes them.
    let spec = super::launch::config(&o.store, rec, None)?;
    let seccomp = super::seccomp_program(&spec, Some(&layout::seccomp_cache(&o.store)))?;
    // The container's process as its OCI spec says, changed by exec's options.
    let cmd = command(&spec, rec, o)?;
    let single_id = super::userns::current_mode() == super::userns::Mode::Single;
    if single_id {
        // a `fuse-overlay` root's owner supervisor takes our process's filter too (see
        // rbox_storage::mount::fuse::supervisor); connected while our paths are the host's
        rbox_storage::mount::fuse::supervisor::connect(&super::launch::fuse_socket(
            &o.store, &rec.id,
        ));
    }
    let how = How {
        tty: o.tty,
        interactive: o.interactive,
        single_id,
        detach: o.detach,
        null_stdio: o.detach,
        detach_keys: &o.detach_keys,
        watch: Some(exited),
    };
    match run_in(&rec.name, pid, &cmd, seccomp.as_deref(), &how) {
        Ok(Ran::Exited(code)) => {
            exited(code);
            Ok(ExitCode::from(code))
        }
        Ok(Ran::Detached(_)) => Ok(ExitCode::SUCCESS),
        // Podman: a detached exec that could not start is exec's own failure (125), not the
        // command's 126 or 127
        Err(e) if o.detach => Err(exit::CodedError::new(exit::FAILED, format!("{e:#}")).into()),
        Err(e) => Err(e),
    }
}

/// How [`run_in`] runs its process.
#[derive(Clone, Copy)]
pub struct How<'a> {
    pub tty: bool,
    pub interactive: bool,
    /// only id 0 exists in the container's user namespace (no setgroups)
    pub single_id: bool,
    /// return once the process runs (it outlives the caller), with its pid
    pub detach: bool,
    /// the process's stdin, stdout and stderr are /dev/null, not the caller's (`exec -d`:
    /// no caller's pipe held open by it)
    pub null_stdio: bool,
    /// the keys that, typed on the caller's terminal (`tty` and `interactive`), leave the
    /// process running (empty: none)
    pub detach_keys: &'a [u8],
    /// With `detach`: a holder process of the session forks the command and waits for it,
    /// then calls this with its exit code (Podman's conmon logs an exec's `exec_died`), and
    /// the pid returned is the holder's. `None`: the command is this process's child, left
    /// to whoever reaps it (the OCI runtime's `exec -d`, whose caller waits for it as a
    /// subreaper).
    pub watch: Option<&'a dyn Fn(u8)>,
}

impl How<'_> {
    /// Whether the caller may leave the process running by typing the detach keys: then it
    /// must not die with the caller (as Podman's exec sessions outlive `podman exec`).
    fn may_detach(&self) -> bool {
        self.tty && self.interactive && !self.detach_keys.is_empty()
    }
}

/// What became of [`run_in`]'s process.
pub enum Ran {
    /// its exit code (128+n for signal n)
    Exited(u8),
    /// started and left running (`detach`): its pid
    Detached(i32),
}

/// Run `cmd` in the namespaces of the container `name` whose init is `pid` (rbox's, or an
/// OCI runtime container's: `rbox oci exec`).
pub fn run_in(
    name: &str,
    pid: i32,
    cmd: &process::Command,
    seccomp: Option<&[libc::sock_filter]>,
    how: &How,
) -> Result<Ran> {
    if let (true, Some(watch)) = (how.detach, how.watch) {
        return hold_session(name, pid, cmd, seccomp, how, watch);
    }
    // Open every namespace before joining any: /proc paths resolve differently afterwards.
    let mut fds: Vec<(OwnedFd, libc::c_int)> = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let same = match (
            fs::metadata(&theirs),
            fs::metadata(format!("/proc/self/ns/{name}")),
        ) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            (Err(e), _) => bail!("open namespaces of container {name}: {e}"),
            _ => false,
        };
        if !same {
            let f = File::open(&theirs).with_context(|| format!("open `{theirs}`"))?;
            fds.push((f.into(), *flag));
        }
    }
    // The init's root: not its mount namespace's root when the container has none of its
    // own (an OCI spec without one, or joining one by path: the init chrooted). Best effort:
    // unreadable, the namespace's root is the container's as usual.
    let root = File::open(format!("/proc/{pid}/root")).ok();
    // `--userns=nomap`'s pid and net namespaces belong to rbox's namespace, not to the
    // container's (its init enters that after its setup, see init's `enter_nested`): from
    // the container's user namespace they cannot be joined. Then rbox's namespace (the
    // container's parent) is joined first, from which every namespace of the container can
    // be, and the container's user namespace last.
    let user = fds.iter().position(|(_, f)| *f == libc::CLONE_NEWUSER);
    let parent = user.and_then(|u| {
        let owned_elsewhere = fds.iter().any(|(fd, f)| {
            *f != libc::CLONE_NEWUSER
                && sys::ns_owner(fd, false).is_ok_and(|o| same_ns(&o, &fds[u].0) == Some(false))
        });
        owned_elsewhere
            .then(|| sys::ns_owner(&fds[u].0, true).ok())
            .flatten()
    });
    if let (Some(parent), Some(u)) = (parent, user) {
        let user = fds.remove(u);
        let ours = File::open("/proc/self/ns/user")
            .ok()
            .and_then(|own| same_ns(&own, &parent));
        if ours != Some(true) {
            fds.insert(0, (parent, libc::CLONE_NEWUSER));
        }
        fds.push(user);
    }
    for (fd, flag) in &fds {
        sys::setns(fd, *flag)
            .with_context(|| format!("join the namespaces of container {name}"))?;
    }
    drop(fds);
    if let (Some(r), Ok(now)) = (root, fs::metadata("/")) {
        let theirs = r
            .metadata()
            .with_context(|| format!("stat the root of container {name}"))?;
        if (theirs.dev(), theirs.ino()) != (now.dev(), now.ino()) {
            nix::unistd::fchdir(&r)
                .and_then(|_| nix::unistd::chroot("."))
                .with_context(|| format!("enter the root of container {name}"))?;
        }
    }
    // The container's own filter, as its capabilities decided it: `exec --privileged` adds
    // capabilities to this process but does not lift the container's seccomp profile (Podman).
    // The terminal comes from the container's own devpts, which is ours now too.
    let pty = if how.tty {
        Some(terminal::open(terminal::caller_winsize().as_ref())?)
    } else {
        None
    };
    let (ours, theirs) = Channel::pair().context("create channel")?;
    forwarded().thread_block().context("block signals")?;
    let child = match sys::fork().context("fork exec process")? {
        ForkResult::Child => {
            drop(ours);
            let f = child_main(cmd, how, pty.as_ref().map(|p| &p.slave), seccomp);
            let _ = theirs.send(&Msg::Failed {
                code: f.code,
                msg: f.msg,
            });
            sys::exit_now(f.code as i32);
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    // the process has its own copy of the owner supervisor's socket
    rbox_storage::mount::fuse::supervisor::forget();
    let master = pty.map(|p| p.master);
    // end-of-file: the command was exec'd (the channel is close-on-exec)
    match ours.recv().context("read exec status")? {
        None => {}
        Some(Msg::Failed { code, msg }) => {
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(exit::CodedError::new(code, msg).into());
        }
        Some(m) => bail!("unexpected message {m:?} from the exec process"),
    }
    if how.detach {
        return Ok(Ran::Detached(child.as_raw()));
    }
    let keys = how
        .may_detach()
        .then(|| super::front::Keys::new(how.detach_keys.to_vec()));
    let out = attach::Output {
        keys,
        ..Default::default()
    };
    let master_fd = master.as_ref().map(|m| m.try_clone()).transpose()?;
    match attach::relay(Pid::from_raw(child.as_raw()), master, how.interactive, out)? {
        WaitStatus::StillAlive => {
            if let Some(m) = master_fd {
                hold_terminal(m)?;
            }
            Ok(Ran::Detached(child.as_raw()))
        }
        status => Ok(Ran::Exited(exit::from_wait(status))),
    }
}

/// `exec -d` with a watcher: fork the session's holder, which joins the container and forks
/// the command ([`run_in`] without the watcher), tells this process how its exec went
/// (end-of-file: it runs), waits for it and calls `watch` with its exit code. Forked before
/// any namespace is joined, the holder stays outside the container's pid namespace (only its
/// child enters it), in a session of its own with no stdio of the caller's: a caller reading
/// rbox's output gets end-of-file when rbox returns.
fn hold_session(
    name: &str,
    pid: i32,
    cmd: &process::Command,
    seccomp: Option<&[libc::sock_filter]>,
    how: &How,
    watch: &dyn Fn(u8),
) -> Result<Ran> {
    let (ours, theirs) = Channel::pair().context("create channel")?;
    let holder = match sys::fork().context("fork the exec session's holder")? {
        ForkResult::Child => {
            drop(ours);
            let _ = nix::unistd::setsid();
            let _ = sys::stdio_to_null();
            let child = match run_in(
                name,
                pid,
                cmd,
                seccomp,
                &How {
                    watch: None,
                    ..*how
                },
            ) {
                Ok(Ran::Detached(child)) => child,
                Ok(Ran::Exited(_)) => sys::exit_now(0),
                Err(e) => {
                    let code = e
                        .downcast_ref::<exit::CodedError>()
                        .map_or(exit::FAILED, |c| c.code);
                    let _ = theirs.send(&Msg::Failed {
                        code,
                        msg: format!("{e:#}"),
                    });
                    sys::exit_now(code as i32);
                }
            };
            // the command runs: rbox returns
            drop(theirs);
            let status = loop {
                match nix::sys::wait::waitpid(Pid::from_raw(child), None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(s) => break Some(s),
                    Err(_) => break None,
                }
            };
            if let Some(s) = status {
                watch(exit::from_wait(s));
            }
            sys::exit_now(0);
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    match ours.recv().context("read exec status")? {
        None => Ok(Ran::Detached(holder.as_raw())),
        Some(Msg::Failed { code, msg }) => {
            let _ = nix::sys::wait::waitpid(holder, None);
            Err(exit::CodedError::new(code, msg).into())
        }
        Some(m) => bail!("unexpected message {m:?} from the exec session's holder"),
    }
}

/// After a detach, a process of its own keeps the command's terminal open (its closing would
/// hang the command up) and reads what the command writes there, until the command and every
/// other holder of the terminal are gone; rbox itself returns.
fn hold_terminal(master: OwnedFd) -> Result<()> {
    match sys::fork().context("fork the terminal's holder")? {
        ForkResult::Child => {
            let _ = nix::unistd::setsid();
            let _ = sys::stdio_to_null();
            let mut buf = [0u8; 4096];
            while let Ok(1..) | Err(nix::errno::Errno::EINTR) = nix::unistd::read(&master, &mut buf)
            {
            }
            sys::exit_now(0);
        }
        ForkResult::Parent { .. } => Ok(()),
    }
}

/// The container's process (from its spec) with exec's command, environment, user and
/// directory.
fn command(spec: &OciSpec, rec: &ContainerRecord, o: &ExecOptions) -> Result<process::Command> {
    let bad = |e: anyhow::Error| e.context(format!("container {}", rec.name));
    let mut p = oci::process(spec).map_err(bad)?;
    let own_userns = oci::namespaces(spec).map_err(bad)?.user_maps.is_some();
    p.args = o
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    p.env = super::spec::merge_env(&[&p.env, &o.env]);
    if let Some(u) = &o.user {
        p.user = oci::User::Name(u.clone());
    }
    p.user = oci::User::Exec(Box::new(p.user));
    if let Some(w) = &o.workdir {
        p.cwd = w.clone();
    }
    p.terminal = o.tty;
    if o.privileged {
        p.caps = caps::kept(&["ALL".to_string()], &[], true, caps::last_cap())?;
    }
    Ok(process::Command {
        process: p,
        argv: o.args.clone(),
        hostname: oci::hostname(spec),
        own_userns,
        missing_cwd: process::MissingCwd::Fail,
        preserve_fds: o.preserve_fds,
    })
}

fn child_main(
    cmd: &process::Command,
    how: &How,
    slave: Option<&OwnedFd>,
    seccomp: Option<&[libc::sock_filter]>,
) -> Failure {
    if !how.detach && !how.may_detach() {
        if let Err(e) = sys::set_pdeathsig(libc::SIGKILL) {
            return Failure::setup(format!("set parent death signal: {e}"));
        }
    }
    if how.null_stdio && slave.is_none() {
        if let Err(e) = sys::stdio_to_null() {
            return Failure::setup(format!("redirect the process's stdio to /dev/null: {e}"));
        }
    } else if let Err(f) = terminal::attach_stdio(slave, !how.interactive) {
        return f;
    }
    process::exec(cmd, how.single_id, seccomp)
}

/// Whether two namespace descriptors name the same namespace; `None` when one cannot be
/// examined.
fn same_ns(a: &impl std::os::fd::AsFd, b: &impl std::os::fd::AsFd) -> Option<bool> {
    let (a, b) = (
        nix::sys::stat::fstat(a.as_fd()).ok()?,
        nix::sys::stat::fstat(b.as_fd()).ok()?,
    );
    Some((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}
