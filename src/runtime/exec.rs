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
use nix::unistd::{ForkResult, Pid};

use super::container::forwarded;
use super::process::{self, Failure};
use super::sync::{Channel, Msg};
use super::{attach, sys, terminal};
use crate::exit;
use crate::state::{ContainerRecord, Spec};

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
    /// where compiled seccomp programs are cached (`layout::seccomp_cache`)
    pub seccomp_cache: Option<std::path::PathBuf>,
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
pub fn exec(rec: &ContainerRecord, pid: i32, o: &ExecOptions) -> Result<ExitCode> {
    if o.args.is_empty() {
        bail!("exec needs a command to run in container {}", rec.name);
    }
    // The container's own filter (see below), compiled or read from the cache while our
    // paths are still the host's: joining the mount namespace changes them.
    let seccomp = super::seccomp_program(&rec.spec, o.seccomp_cache.as_deref())?;
    // Open every namespace before joining any: /proc paths resolve differently afterwards.
    let mut fds: Vec<(OwnedFd, libc::c_int)> = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let same = match (
            fs::metadata(&theirs),
            fs::metadata(format!("/proc/self/ns/{name}")),
        ) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            (Err(e), _) => bail!("open namespaces of container {}: {e}", rec.name),
            _ => false,
        };
        if !same {
            let f = File::open(&theirs).with_context(|| format!("open `{theirs}`"))?;
            fds.push((f.into(), *flag));
        }
    }
    for (fd, flag) in &fds {
        sys::setns(fd, *flag)
            .with_context(|| format!("join the namespaces of container {}", rec.name))?;
    }
    drop(fds);
    let spec = exec_spec(&rec.spec, o);
    // The container's own filter, as its capabilities decided it: `exec --privileged` adds
    // capabilities to this process but does not lift the container's seccomp profile (Podman).
    // The terminal comes from the container's own devpts, which is ours now too.
    let pty = if o.tty {
        Some(terminal::open(terminal::caller_winsize().as_ref())?)
    } else {
        None
    };
    let (ours, theirs) = Channel::pair().context("create channel")?;
    forwarded().thread_block().context("block signals")?;
    let child = match sys::fork().context("fork exec process")? {
        ForkResult::Child => {
            drop(ours);
            let f = child_main(&spec, pty.as_ref().map(|p| &p.slave), seccomp.as_deref());
            let _ = theirs.send(&Msg::Failed {
                code: f.code,
                msg: f.msg,
            });
            sys::exit_now(f.code as i32);
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
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
    let status = attach::wait(Pid::from_raw(child.as_raw()), master, o.interactive)?;
    Ok(ExitCode::from(exit::from_wait(status)))
}

/// The container's spec with exec's command, environment, user and directory.
fn exec_spec(base: &Spec, o: &ExecOptions) -> Spec {
    let mut s = base.clone();
    s.set_args(o.args.clone());
    s.env = super::spec::merge_env(&[&base.env, &o.env]);
    if let Some(u) = &o.user {
        s.user = u.clone();
    }
    if let Some(w) = &o.workdir {
        s.workdir = w.clone();
    }
    s.tty = o.tty;
    s.interactive = o.interactive;
    s.privileged = base.privileged || o.privileged;
    if o.privileged {
        s.cap_add = vec!["ALL".into()];
        s.cap_drop.clear();
    }
    s
}

fn child_main(
    spec: &Spec,
    slave: Option<&OwnedFd>,
    seccomp: Option<&[libc::sock_filter]>,
) -> Failure {
    if let Err(e) = sys::set_pdeathsig(libc::SIGKILL) {
        return Failure::setup(format!("set parent death signal: {e}"));
    }
    if let Err(f) = terminal::attach_stdio(slave, !spec.interactive) {
        return f;
    }
    let single_id = super::userns::current_mode() == super::userns::Mode::Single;
    process::exec(spec, single_id, seccomp)
}
