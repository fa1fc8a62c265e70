//! The FUSE overlay driver (`fuse-overlay`): the container's root served by rbox's own
//! overlay filesystem ([`fs::Overlay`], on the `fuser` crate) over the same layer
//! directories and upper/work directories the kernel overlay driver uses, for hosts where
//! kernel overlayfs cannot be mounted in a user namespace (old kernels, stores on
//! filesystems overlay refuses as a layer). One store serves both drivers: whiteouts are
//! 0/0 character devices and opaque directories carry `user.overlay.opaque=y`.
//!
//! This module owns the server's process. [`mount`] forks it from the process that mounts
//! the root (the container's init during its setup, before pivot_root; or `rbox cp`'s child
//! in its own mount namespace). The server opens the layer directories, mounts itself at
//! the target with fuser's own mount(2) (it is root in the container's user namespace, so no
//! fusermount is needed), says it is ready over a pipe, and serves with several threads.
//!
//! Why a child of the container's setup rather than a process joining the container from
//! outside: it is then a member of the container's pid namespace, so when the container's
//! PID 1 exits the kernel kills it with every other process there, and the mount goes with
//! the last process of the mount namespace: nothing is left behind after a normal exit,
//! `rm -f`, or a killed rbox or monitor (which kill PID 1), and no process outside needs to
//! watch. PR_SET_PDEATHSIG ties it to its parent as well (a container sharing the host's
//! pid namespace). A child of PID 1 is waited for by a PID 1 that waits for all its children
//! (busybox tar does): so the runtime runs such a container with its `--init` reaper as
//! PID 1, which forks the command and is the server's parent. The cost: the server and the
//! reaper show in the container's process list (as `rbox-fuse` and `rbox-init`), and a container given CAP_SYS_PTRACE could reach its layer descriptors;
//! it is made non-dumpable so that without that capability /proc/PID/fd stays closed.
//! After pivot_root the server's root and working directory are the container's root (the
//! kernel moves every process of the namespace), so the server never resolves a path: it
//! works only through the descriptors it opened before.

pub mod fs;
pub mod shift;
pub mod supervisor;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;

use crate::{bt, sys, Error, Result};

/// Whether this process can open /dev/fuse (what an unprivileged FUSE mount needs first).
pub fn available() -> std::result::Result<(), String> {
    match open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "open `/dev/fuse`: {e} (make it mode 0666 on the host: chmod 0666 /dev/fuse)"
        )),
    }
}

/// Mounts the overlay of `upper` over `lowers` (topmost first) at `target`, served by a
/// forked child that lives as long as its parent (see the module doc). Returns once the
/// mount is in place. Call single-threaded. `shift`: the owners shifted for a nested user
/// namespace ([`shift`]).
pub fn mount(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    shift: Option<&shift::IdShift>,
) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("create pipe", std::io::Error::from(e)))?;
    let sup = supervisor::pair();
    match sys::fork().map_err(|e| Error::io("fork the FUSE server", std::io::Error::from(e)))? {
        ForkResult::Child => {
            drop(r);
            serve(lowers, upper, work, target, w, sup, shift)
        }
        ForkResult::Parent { .. } => {
            drop(w);
            drop(sup);
            let mut f = std::fs::File::from(r);
            let mut msg = String::new();
            let _ = f.read_to_string(&mut msg);
            match msg.strip_prefix("ok") {
                Some(_) => Ok(()),
                None => Err(Error::io(
                    format!("mount the FUSE overlay at {}", bt(target)),
                    std::io::Error::other(if msg.is_empty() {
                        "the server exited".to_string()
                    } else {
                        msg
                    }),
                )),
            }
        }
    }
}

/// The server's whole life; never returns.
fn serve(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    ready: OwnedFd,
    sup: Option<OwnedFd>,
    shift: Option<&shift::IdShift>,
) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::prctl::set_name(c"rbox-fuse");
    nix::sys::stat::umask(Mode::empty());
    let mut keep = vec![ready.as_raw_fd()];
    keep.extend(sup.as_ref().map(|s| s.as_raw_fd()));
    close_others(&keep);
    let mut ready = std::fs::File::from(ready);
    let res = (|| -> std::result::Result<fuser::Session<fs::Overlay>, String> {
        let dir = |p: &Path| {
            open(
                p,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("open {}: {e}", bt(p)))
        };
        let up = dir(upper)?;
        let wk = dir(work)?;
        let lows = lowers
            .iter()
            .map(|p| dir(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let overlay = fs::Overlay::new(up, wk, lows)
            .fold_foreign_owners(sup.is_some())
            .shift_owners(shift.cloned());
        let owners = overlay.owners();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            fuser::MountOption::FSName("rbox-fuse".into()),
            fuser::MountOption::Subtype("rbox-overlay".into()),
            fuser::MountOption::DefaultPermissions,
            fuser::MountOption::Suid,
            fuser::MountOption::Exec,
            fuser::MountOption::RW,
            // as fuse-overlayfs mounts for Podman: no atime bookkeeping on every read, which
            // costs a warm read through the page cache about a fifth of its time
            fuser::MountOption::NoAtime,
        ];
        cfg.acl = fuser::SessionACL::All;
        cfg.n_threads = Some(threads);
        let session = fuser::Session::new(overlay, target, &cfg).map_err(|e| {
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::ENOENT) {
                match available() {
                    Err(why) => why,
                    Ok(()) => e.to_string(),
                }
            } else {
                e.to_string()
            }
        })?;
        if let Some(sock) = sup {
            std::thread::Builder::new()
                .name("rbox-owners".into())
                .spawn(move || supervisor::run(sock, owners))
                .map_err(|e| format!("start the owner supervisor: {e}"))?;
        }
        Ok(session)
    })();
    match res {
        Ok(session) => {
            if ready.write_all(b"ok").is_err() {
                sys::exit_now(1);
            }
            drop(ready);
            let _ = session.run();
            sys::exit_now(0)
        }
        Err(msg) => {
            let _ = ready.write_all(msg.as_bytes());
            sys::exit_now(1)
        }
    }
}

/// Closes every descriptor but those in `keep`, with stdio on /dev/null: the server must hold
/// no end of the container's channels or pipes (rbox waits for their end-of-file).
pub(crate) fn close_others(keep: &[i32]) {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (0..1024).collect(),
    };
    for fd in fds {
        if !keep.contains(&fd) && fd > 2 {
            let _ = nix::unistd::close(fd);
        }
    }
    if let Ok(null) = open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
        for fd in 0..3 {
            let _ = sys::dup2_raw(null.as_raw_fd(), fd);
        }
    }
}
