//! `rbox mount`'s server: a stopped container's root (the FUSE overlay's, or an
//! `--image-file` container's) mounted in the caller's mount namespace by a detached process
//! of its own that serves it for exactly as long as the mount exists. It owns that process's
//! life; `rbox mount` owns where the mount goes and the record of the server.
//!
//! A container's server ends with the container's init; this one has no container to watch,
//! so its end is the mount's: when the last reference to the mount goes (`umount`, `rbox
//! unmount`, or the death of the mount namespace that holds it: the end of `rbox unshare`)
//! the kernel aborts the FUSE connection and the serving loop returns. For that the server
//! must not itself be a member of the caller's mount namespace (a member keeps a namespace
//! alive, and so its mounts): it mounts from the caller's namespace and then lives in a
//! private copy of it, from which every FUSE mount has been detached (a copy of
//! another `rbox mount`'s mount would keep that one's server alive after its unmount). An
//! `--image-file`'s squashfuse, the server's child, mounts only in that private copy: the
//! server reaches the lower layer through a descriptor, and squashfuse dies with it
//! (PR_SET_PDEATHSIG). Nothing stays behind: no process once the mount is gone, no mount
//! once the process is.
//!
//! Owners: the server belongs to rbox's user namespace (the one `rbox unshare` gives), so it
//! replies the owners on disk, which are the store's convention (the image's own ids, see
//! [`super::shift`]): what a kernel overlay mount of the same layers shows there, and with a
//! shift (keep-id, nomap, auto) the same numbers the container sees. Under a single-id map
//! the files of other owners are folded to the one id (as the container's kernel sees them:
//! no owner supervisor serves a shell), with the modes the image gives them.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;

use super::shift::IdShift;
use crate::{sys, Error, Result};

/// What a detached server serves: the FUSE overlay of `upper` over `lowers` (topmost first),
/// or over an image file's squashfs (`squash`: the file and the directory where the server
/// mounts it, privately; `lowers` is then ignored).
pub struct Detached<'a> {
    pub lowers: &'a [PathBuf],
    pub upper: &'a Path,
    pub work: &'a Path,
    pub shift: Option<&'a IdShift>,
    pub squash: Option<(&'a Path, &'a Path)>,
}

/// Mounts `root` at `target` in this process's mount namespace, served by a detached server
/// (see the module doc); returns its pid once the mount is in place. Call single-threaded.
pub fn mount(root: &Detached<'_>, target: &Path) -> Result<i32> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("create pipe", std::io::Error::from(e)))?;
    match sys::fork().map_err(|e| Error::io("fork the FUSE server", std::io::Error::from(e)))? {
        ForkResult::Child => {
            drop(r);
            serve(root, target, w)
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            super::ready_or(&msg, target)?;
            Ok(child.as_raw())
        }
    }
}

/// The detached server's life; never returns.
fn serve(root: &Detached<'_>, target: &Path, ready: OwnedFd) -> ! {
    // its own session: no signal of the caller's terminal reaches it
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::prctl::set_name(c"rbox-fuse");
    nix::sys::stat::umask(Mode::empty());
    super::close_others(&[ready.as_raw_fd()]);
    let answer = |msg: &str| {
        let _ = nix::unistd::write(&ready, msg.as_bytes());
    };
    let session = match setup(root, target) {
        Ok(s) => s,
        Err(msg) => {
            answer(&msg);
            sys::exit_now(1)
        }
    };
    answer("ok");
    drop(ready);
    // returns when the kernel ends the connection: the mount's last reference is gone
    let _ = session.run();
    sys::exit_now(0)
}

/// Moves into a private copy of the mount namespace, mounts the image file there (if any),
/// mounts the overlay at `target` back in the caller's namespace, and returns to the copy.
fn setup(
    root: &Detached<'_>,
    target: &Path,
) -> std::result::Result<fuser::Session<super::fs::Overlay>, String> {
    let ns = |p: &str| std::fs::File::open(p).map_err(|e| format!("open `{p}`: {e}"));
    let home = ns("/proc/self/ns/mnt")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("create the FUSE server's mount namespace: {e}"))?;
    let private = ns("/proc/self/ns/mnt")?;
    // nothing done here may reach the caller's namespace (or the host's, as real root)
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("make the FUSE server's mounts slaves: {e}"))?;
    detach_served_mounts();
    // the image file's lower, seen only here; kept as a descriptor across the namespaces
    let lower_fd = match root.squash {
        Some((file, at)) => {
            super::super::squash::mount_file(file, at).map_err(|e| e.to_string())?;
            let fd = open(
                at,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("open {}: {e}", crate::bt(at)))?;
            Some(fd)
        }
        None => None,
    };
    let lowers: Vec<PathBuf> = match &lower_fd {
        Some(fd) => vec![PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))],
        None => root.lowers.to_vec(),
    };
    sys::setns(&home, libc::CLONE_NEWNS)
        .map_err(|e| format!("return to the caller's mount namespace: {e}"))?;
    // the kernel shows a folded owner as the overflow id under a single-id map, and root's
    // capabilities do not apply to it: fold (see fs::Overlay::fold_foreign_owners)
    let fold = super::supervisor::single_id();
    let (session, _owners) =
        super::session(&lowers, root.upper, root.work, target, fold, root.shift)?;
    sys::setns(&private, libc::CLONE_NEWNS)
        .map_err(|e| format!("leave the caller's mount namespace: {e}"))?;
    drop(lower_fd);
    Ok(session)
}

/// Detaches, in this (private) namespace, every FUSE mount: its copies of other servers'
/// mounts (other `rbox mount`s, a user's sshfs), which would keep them serving after their
/// own unmount. Mounts that cannot be unmounted here (locked ones, copied from a more
/// privileged namespace) are not rbox's.
fn detach_served_mounts() {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let point = left.split(' ').nth(4)?;
            (fstype.starts_with("fuse") && point != "/").then(|| unescape(point))
        })
        .collect();
    // deepest (latest) first
    for p in points.iter().rev() {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A mountinfo path field with its octal escapes (`\040` for a space...) undone.
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape("/a\\040b\\011c"), PathBuf::from("/a b\tc"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape("/x\\\\y"), PathBuf::from("/x\\\\y"));
    }
}
