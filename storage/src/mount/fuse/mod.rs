//! The FUSE overlay driver (`fuse-overlay`): the container's root served by rbox's own
//! overlay filesystem ([`fs::Overlay`], on the `fuser` crate) over the same layer
//! directories and upper/work directories the kernel overlay driver uses, for hosts where
//! kernel overlayfs cannot be mounted in a user namespace (old kernels, stores on
//! filesystems overlay refuses as a layer). One store serves both drivers: whiteouts are
//! 0/0 character devices and opaque directories carry `user.overlay.opaque=y`.
//!
//! This module owns the server's process. A container's server is forked by the container
//! parent ([`spawn`]: `rbox run`, or the monitor of a detached container) once the init's
//! namespaces exist; it joins the init's user namespace (where it differs) and mount
//! namespace with setns, and when the init asks over a socketpair made before the clone
//! ([`channel`], [`use_server`]; after the init has made its mounts private, before the rest
//! of its mount plan) opens the layer directories, mounts itself at the target with fuser's
//! own mount(2) (it is root in the container's user namespace, so no fusermount is needed),
//! answers, and serves with several threads. `rbox cp`'s child (and squashfuse's
//! `--image-file` root, see [`super::squash`]) still fork a server of their own from the process
//! that mounts ([`mount`]); `rbox mount` of a stopped container starts a detached one
//! ([`detached`]) that lives as long as its mount.
//!
//! Why outside the container's pid namespace: a server there is a process of the container.
//! It shows in `ps` and `top`, and a PID 1 that waits for all its children (busybox tar
//! does) would wait for it forever, so the command could not be PID 1 (the runtime used to
//! force its `--init` reaper). Outside, the container's process list is the command's own.
//! Why in the container's mount namespace rather than mounting outside and being inherited:
//! the mount namespace is made by the clone, and the mount must come after the init's
//! `PrivateAll` (else it would propagate to rbox's namespace); the server's root and working
//! directory then follow the init's pivot_root (the kernel moves every process of the
//! namespace), which the owner supervisor relies on to resolve the container's paths.
//!
//! Its lifetime is exactly the container's: it holds a pidfd of the init and exits as soon as
//! the init has (by then the kernel has killed every other process of the container's pid
//! namespace, so the server is the mount namespace's last member, and the namespace and its
//! mount go with it); PR_SET_PDEATHSIG ends it with the container parent (a killed `rbox
//! run` or monitor, which takes the init with it too); the parent reaps it after the init
//! ([`spawn`]'s pid). It is made non-dumpable, so that the container's processes (the same
//! user) cannot reach its layer descriptors through /proc/PID/fd. After pivot_root the
//! server never resolves a path of the container for itself: it works only through the
//! descriptors it opened before.

pub mod detached;
pub mod fs;
pub mod shift;
pub mod supervisor;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

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

/// The FUSE server outside the container ([`spawn`]) that [`mount`] asks, in the
/// container's init; none: [`mount`] forks its own server.
static REMOTE: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// The two ends of the channel between a container's init and its FUSE server outside the
/// container: (the server's, the init's). Made before the init is cloned, so both inherit it.
pub fn channel() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::io("create the FUSE server's channel", std::io::Error::from(e)))
}

/// In the container's init, before its mount plan: [`mount`] asks the server at the other
/// end of `sock` (see [`spawn`]) to mount the root instead of forking one.
pub fn use_server(sock: OwnedFd) {
    *REMOTE.lock().unwrap_or_else(|p| p.into_inner()) = Some(sock);
}

/// Mounts the overlay of `upper` over `lowers` (topmost first) at `target`, served by a
/// forked child that lives as long as its parent (see the module doc); or, in a container's
/// init given a server outside ([`use_server`]), by that server. Returns once the mount is
/// in place. Call single-threaded. `shift`: the owners shifted for a nested user namespace
/// ([`shift`]; a server outside got it from [`spawn`]).
pub fn mount(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    shift: Option<&shift::IdShift>,
) -> Result<()> {
    let remote = REMOTE.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(sock) = remote {
        return ask(sock, target);
    }
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
            ready_or(&msg, target)
        }
    }
}

/// The server's answer: `ok`, or why it could not mount at `target`.
fn ready_or(msg: &str, target: &Path) -> Result<()> {
    match msg.strip_prefix("ok") {
        Some(_) => Ok(()),
        None => Err(Error::io(
            format!("mount the FUSE overlay at {}", bt(target)),
            std::io::Error::other(if msg.is_empty() {
                "the server exited".to_string()
            } else {
                msg.to_string()
            }),
        )),
    }
}

/// The init's side of [`spawn`]: asks the server to mount, waits for its answer. The same
/// socket then carries the command's seccomp listener to the owner supervisor (under a
/// single-id map).
fn ask(sock: OwnedFd, target: &Path) -> Result<()> {
    let io = |e: nix::Error| {
        Error::io(
            format!("mount the FUSE overlay at {}", bt(target)),
            std::io::Error::from(e),
        )
    };
    nix::unistd::write(&sock, b"m").map_err(io)?;
    let mut buf = [0u8; 4096];
    let n = nix::unistd::read(&sock, &mut buf).map_err(io)?;
    ready_or(&String::from_utf8_lossy(&buf[..n]), target)?;
    supervisor::keep(sock);
    Ok(())
}

/// Forks the FUSE server of a container whose init (`init`, a pid of this process's pid
/// namespace) has its namespaces configured and will ask over its end of [`channel`] (the
/// server gets `sock`, the other end). The server joins the init's user and mount
/// namespaces, mounts at `target` when asked and serves until the init exits; `listen`, a
/// socket path where `rbox exec` hands its processes' seccomp listeners to the owner
/// supervisor. Returns the server's pid (the caller reaps it once the init has exited).
/// Call single-threaded.
pub fn spawn(
    init: i32,
    sock: OwnedFd,
    root: (&[PathBuf], &Path, &Path),
    target: &Path,
    listen: Option<&Path>,
    shift: Option<&shift::IdShift>,
) -> Result<i32> {
    // opened before the fork, not by the server: right after this returns the init may
    // change its ids (keep-id's becomes root), which closes its /proc/PID/ns files to us for
    // a moment
    let joins = init_namespaces(init);
    match sys::fork().map_err(|e| Error::io("fork the FUSE server", std::io::Error::from(e)))? {
        ForkResult::Child => outside(init, sock, joins, root, target, listen, shift),
        ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// The namespaces a server joins: the init's user and mount namespaces, where they differ
/// from this process's.
type Joins = std::result::Result<Vec<(std::fs::File, libc::c_int, &'static str)>, String>;

/// Opens the init's user and mount namespaces that differ from this process's.
fn init_namespaces(init: i32) -> Joins {
    use std::os::unix::fs::MetadataExt;
    let mut joins = Vec::new();
    for (ns, typ) in [("user", libc::CLONE_NEWUSER), ("mnt", libc::CLONE_NEWNS)] {
        let theirs = format!("/proc/{init}/ns/{ns}");
        let f = std::fs::File::open(&theirs).map_err(|e| format!("open `{theirs}`: {e}"))?;
        let same = match (
            f.metadata(),
            std::fs::metadata(format!("/proc/self/ns/{ns}")),
        ) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            (Err(e), _) => return Err(format!("open `{theirs}`: {e}")),
            _ => false,
        };
        if !same {
            joins.push((f, typ, ns));
        }
    }
    Ok(joins)
}

/// The life of a server forked by [`spawn`]; never returns.
fn outside(
    init: i32,
    sock: OwnedFd,
    joins: Joins,
    (lowers, upper, work): (&[PathBuf], &Path, &Path),
    target: &Path,
    listen: Option<&Path>,
    shift: Option<&shift::IdShift>,
) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::prctl::set_name(c"rbox-fuse");
    nix::sys::stat::umask(Mode::empty());
    // opened before joining the mount namespace: the host's /proc, where the pids of this
    // process's namespace (those the supervisor's notifications carry) are
    let setup = (|| -> std::result::Result<(OwnedFd, OwnedFd, Option<OwnedFd>, bool), String> {
        let pidfd =
            sys::pidfd_open(init).map_err(|e| format!("watch the container's init: {e}"))?;
        let proc = open(
            "/proc",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("open `/proc`: {e}"))?;
        let listener = listen.map(supervisor::bind).transpose()?;
        for (f, typ, ns) in joins? {
            sys::setns(&f, typ).map_err(|e| format!("join the container's {ns} namespace: {e}"))?;
        }
        // the container's user namespace now, as its init sees it
        let fold = cfg!(target_arch = "x86_64") && supervisor::single_id();
        Ok((pidfd, proc, listener, fold))
    })();
    let mut keep = vec![sock.as_raw_fd()];
    if let Ok((pidfd, proc, listener, _)) = &setup {
        keep.extend([pidfd.as_raw_fd(), proc.as_raw_fd()]);
        keep.extend(listener.as_ref().map(|l| l.as_raw_fd()));
    }
    close_others(&keep);
    // the init's request, once it has made its mounts private; end-of-file: it failed first
    let mut req = [0u8; 1];
    if !matches!(nix::unistd::read(&sock, &mut req), Ok(1)) {
        sys::exit_now(0);
    }
    let answer = |msg: &str| {
        let _ = nix::unistd::write(&sock, msg.as_bytes());
    };
    let (pidfd, proc, listener, fold) = match setup {
        Ok(s) => s,
        Err(msg) => {
            answer(&msg);
            sys::exit_now(1)
        }
    };
    let (session, owners) = match session(lowers, upper, work, target, fold, shift) {
        Ok(s) => s,
        Err(msg) => {
            answer(&msg);
            sys::exit_now(1)
        }
    };
    // The container's end: when its init has exited, every process of its pid namespace is
    // gone, and this server is the mount namespace's last member: exiting frees it and the
    // mount (nothing unmounts it from outside).
    let watch = std::thread::Builder::new()
        .name("rbox-watch".into())
        .spawn(move || loop {
            let mut fd = [nix::poll::PollFd::new(
                pidfd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fd, nix::poll::PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                _ => sys::exit_now(0),
            }
        });
    if let Err(e) = watch {
        answer(&format!("start the FUSE server's watch: {e}"));
        sys::exit_now(1);
    }
    // no supervisor: `rbox exec` finds nobody at the socket and hands nothing over
    let listener = listener.filter(|_| fold);
    if fold {
        let sup = match sock.try_clone() {
            Ok(s) => s,
            Err(e) => {
                answer(&format!("start the owner supervisor: {e}"));
                sys::exit_now(1)
            }
        };
        let started = std::thread::Builder::new()
            .name("rbox-owners".into())
            .spawn(move || supervisor::run(vec![sup], listener, Some(proc), owners));
        if let Err(e) = started {
            answer(&format!("start the owner supervisor: {e}"));
            sys::exit_now(1);
        }
    }
    answer("ok");
    drop(sock);
    let _ = session.run();
    sys::exit_now(0)
}

/// Opens the layers and mounts the overlay at `target` (this process is root in the user
/// namespace that owns the mount namespace it is in).
fn session(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    fold: bool,
    shift: Option<&shift::IdShift>,
) -> std::result::Result<(fuser::Session<fs::Overlay>, fs::Owners), String> {
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
        .fold_foreign_owners(fold)
        .shift_owners(shift.cloned());
    let owners = overlay.owners();
    let threads = server_threads(std::env::var("RBOX_FUSE_THREADS").ok().as_deref());
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
    Ok((session, owners))
}

/// How many threads serve the mount: `RBOX_FUSE_THREADS` (1 to 8), else one per CPU,
/// between 2 and 8, so that processes reading or writing files at the same time are served
/// at the same time.
///
/// A single-process workload is faster with one thread (`RBOX_FUSE_THREADS=1`): its requests
/// come one at a time and every metadata operation takes the inode table's lock anyway, so a
/// second thread only adds wake-ups (the kernel hands each request to the thread that has
/// waited longest, so consecutive requests and the asynchronous RELEASE and FORGET land on
/// different threads) and lock hand-offs. Counted in a container creating, listing and
/// deleting 2,000 files (bench/run-fuse-count.sh): per deleted file 2.9 voluntary context
/// switches and 1.4 futex calls in the server with two threads, 1.7 and none with one;
/// busybox `tar -x` of 5,000 files took 0.5-0.7x the time with one thread on a loaded
/// 2-core machine (bench/results/fuse-smallfile-20261125-1320.md).
fn server_threads(env: Option<&str>) -> usize {
    env.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=8).contains(n))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8)
        })
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
        let (session, owners) = session(lowers, upper, work, target, sup.is_some(), shift)?;
        if let Some(sock) = sup {
            // /proc opened at the first listener: this server is in the container's pid
            // namespace, whose /proc is mounted after it starts
            std::thread::Builder::new()
                .name("rbox-owners".into())
                .spawn(move || supervisor::run(vec![sock], None, None, owners))
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
