//! A forked child confined to a container's root filesystem, for `rbox cp`: it runs inside
//! rbox's user namespace (the caller entered it), chroots into the container's root and runs
//! one job there. A running container's root is its init's `/proc/PID/root` (its volumes
//! included); a stopped one's is mounted in a private mount namespace of the child (overlay:
//! the image's layers and the container's upper, so writes land in upper/ with overlay's own
//! copy-up and whiteouts), and goes away with it.
//!
//! Why chroot: every path the job opens (a container's absolute symlink, `..` past its root)
//! then resolves in the container's root by the kernel's own walk, never the host's. The
//! child holds no descriptor of a host directory, so the chroot cannot be left; it only
//! talks to the invocation through the pipes the job captures.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use rbox_storage::Store;

use super::sys;
use crate::context::Context;
use crate::state::{self, ContainerRecord};

/// Where a container's root is, as the child reaches it.
#[derive(Debug, Clone)]
pub enum Root {
    /// a running container: its init's root, seen through /proc
    Proc(PathBuf),
    /// a stopped one: mount this description at `target` first
    Mount {
        rootfs: rbox_storage::Rootfs,
        target: PathBuf,
    },
}

/// Where `rec`'s root is now. Call inside rbox's user namespace, with the store open.
pub fn root_of(g: &Context, store: &Store, rec: &ContainerRecord) -> Result<Root> {
    if let Some((pid, _)) = state::live_pids(g, rec) {
        return Ok(Root::Proc(PathBuf::from(format!("/proc/{pid}/root"))));
    }
    let dir = store
        .container_dir(&rec.id)
        .with_context(|| format!("open the storage of container {}", rec.name))?;
    let rootfs = store.rootfs(rec.driver, &dir, false)?;
    let target = g.runtime_dir()?.join("cp-root");
    std::fs::create_dir_all(&target).with_context(|| format!("create `{}`", target.display()))?;
    Ok(Root::Mount { rootfs, target })
}

/// Fork a child that enters `root` and runs `job` there; `job`'s error is its exit status 1
/// (the job reports its own text through its pipes). `parent_ends` are the invocation's ends
/// of those pipes, closed in the child (so that a reader there sees the end of the stream);
/// the job's own ends, which it captures, close in the invocation when `job` is dropped here.
/// Returns the child's pid for [`wait`].
pub fn spawn(
    root: &Root,
    parent_ends: &[BorrowedFd<'_>],
    job: impl FnOnce() -> std::result::Result<(), ()>,
) -> Result<Pid> {
    let parent_ends: Vec<i32> = parent_ends.iter().map(|f| f.as_raw_fd()).collect();
    // The callers are single-threaded here: only the store was opened.
    match sys::fork().context("fork")? {
        ForkResult::Child => {
            let _ = sys::set_pdeathsig(libc::SIGKILL);
            for fd in parent_ends {
                let _ = nix::unistd::close(fd);
            }
            let code = match enter(root) {
                Ok(()) => match job() {
                    Ok(()) => 0,
                    Err(()) => 1,
                },
                Err(e) => {
                    eprintln!("Error: {e}");
                    2
                }
            };
            sys::exit_now(code);
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Wait for a child of [`spawn`]: whether its job succeeded.
pub fn wait(child: Pid) -> Result<bool> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 2)) => anyhow::bail!("enter the container's root filesystem"),
            Ok(WaitStatus::Exited(_, code)) => return Ok(code == 0),
            Ok(WaitStatus::Signaled(..)) => return Ok(false),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("wait for the copying process"),
        }
    }
}

fn enter(root: &Root) -> Result<()> {
    let dir: &Path = match root {
        Root::Proc(p) => {
            join_user_namespace(p)?;
            p
        }
        Root::Mount { rootfs, target } => {
            sys::private_mount_namespace()?;
            rootfs.mount(target)?;
            target
        }
    };
    nix::unistd::chroot(dir).with_context(|| format!("chroot into `{}`", dir.display()))?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// A keep-id container's init runs in a user namespace below rbox's, and its FUSE root
/// belongs to that namespace: the kernel lets only processes in it (or below) into a FUSE
/// mount, so the child joins it first (rbox's namespace owns it: every capability there).
/// Nothing when the init shares ours.
fn join_user_namespace(proc_root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(ns) = proc_root.parent().map(|d| d.join("ns/user")) else {
        return Ok(());
    };
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let theirs = id(&ns).with_context(|| format!("stat `{}`", ns.display()))?;
    if id(Path::new("/proc/self/ns/user")).ok() == Some(theirs) {
        return Ok(());
    }
    let f = std::fs::File::open(&ns).with_context(|| format!("open `{}`", ns.display()))?;
    sys::setns(&f, libc::CLONE_NEWUSER).context("join the container's user namespace")?;
    // `--userns=nomap` and `auto` do not map rbox's id 0 (the kernel shows it as the
    // overflow id): what this process would create could not be stored. It takes the
    // container's root, as a copy into the container gets under Podman.
    let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(65534);
    if nix::unistd::getuid().as_raw() == overflow {
        let root = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
        nix::unistd::setresgid(root.1, root.1, root.1)
            .and_then(|_| nix::unistd::setresuid(root.0, root.0, root.0))
            .context("become root of the container's user namespace")?;
    }
    Ok(())
}
