//! The owner supervisor: with a single-id user namespace (no /etc/subuid range) only one id
//! exists in the container, so the kernel shows every other owner the FUSE overlay replies
//! as the overflow id (65534) and refuses a chown to it (EINVAL) before the server sees the
//! request. The intended owners are known (the unpacker keeps them in
//! [`OVERRIDE_STAT`](super::fs::OVERRIDE_STAT), the server's inode table holds them), but no
//! reply of the server can get them past the kernel. A seccomp user-notification filter can:
//! the container's command installs it just before exec (stat family: `stat`, `lstat`,
//! `fstat`, `newfstatat`, `statx`; chown family: `chown`, `lchown`, `fchown`, `fchownat`;
//! x86_64 only) and hands the listener to this thread of the FUSE server over a socketpair
//! made before the server was forked.
//!
//! Why in the FUSE server: it already has the inode table, so a stat answered here costs one
//! table look-up, and it dies with the container (see [`super`]). The server replies the owner
//! on disk (the one mapped id) to the kernel for a file with a folded owner
//! ([`Overlay::fold_foreign_owners`](super::fs::Overlay::fold_foreign_owners)), so the
//! kernel's permission checks see a file root owns, as with the kernel driver; only what a
//! stat returns carries the intended owner. `rbox exec`'s processes install the same filter
//! and hand their listener over a unix socket the server listens on in the container's
//! directory ([`bind`], [`connect`]); this thread polls every listener it holds.
//!
//! A stat: the same call made here (the server's root is the container's root after
//! pivot_root; a relative path starts at `/proc/PID/cwd` or `/proc/PID/fd/N`, under the
//! /proc of the server's own pid namespace, opened before it joined the container's mount
//! namespace: the notifications' pids are of that namespace); where the
//! result is on the FUSE mount, uid, gid and permission bits come from the inode table; the
//! struct goes into the caller with process_vm_writev once the notification is still valid.
//! A chown on the FUSE mount of a regular file or directory, by a caller holding CAP_CHOWN
//! (else the kernel answers, as it would), records the new owner through
//! the mount itself (a `setxattr` of the override that only this thread may make: the server
//! copies up and keeps it, as for a chmod) and clears set-user-ID / set-group-ID of a regular
//! file as the kernel does; symlinks and special files cannot carry the xattr: a chown of
//! them to another id succeeds without effect (what `--security-opt fakeroot` does for every
//! file). `/proc/self/...` is read as the caller's `/proc/PID/...`. Anything else (other
//! `/proc` and `/dev` paths, which may lead through `self` and would name this process,
//! errors other than ENOENT/ENOTDIR, a path that cannot be read) is handed back
//! to the kernel (SECCOMP_USER_NOTIF_FLAG_CONTINUE), which runs the call as if no filter
//! were there. If this thread dies, the listener closes and the kernel fails those calls
//! with ENOSYS: the container never hangs on it.
//!
//! Cost: each watched call is a round trip to this one thread (calls from several threads of
//! the container wait their turn) plus the call made again here. Measured here (2 loaded
//! cores, warm caches): `stat` of 10,000 files 0.15-0.18 s with it, 0.02-0.04 s on the same
//! driver without (rboxsub), so about 13 µs a call; 20,000 stats of one file 0.30-0.40 s
//! against 0.06-0.11 s. Synchronous wake-up (Linux 6.6) cut it about threefold; `ls -lR` of
//! the 10,000 files differed by less than the noise (the FUSE readdir dominates).
//!
//! With `--security-opt fakeroot` the runtime leaves the chown family out of its errno-0 rules
//! (which would win over the notification) and a chown this thread hands back for an id the
//! namespace lacks is answered with success instead ([`fake_unrecorded_chowns`]).
//!
//! Not covered: a caller that chroots (paths resolve from the container's root), other architectures.

use std::ffi::CString;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind as bind_socket, listen, sendmsg, socket, socketpair, AddressFamily, Backlog,
    ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

use super::fs::{format_override, Override, Owners, OVERRIDE_STAT};
use crate::sys;

/// The thread id of the supervisor: the only requester whose `setxattr` of the override the
/// server takes (a FUSE request carries the calling thread's id).
pub static SUPERVISOR_TID: AtomicI32 = AtomicI32::new(0);

/// `--security-opt fakeroot` (see [`fake_unrecorded_chowns`]).
static FAKEROOT: AtomicBool = AtomicBool::new(false);

/// For a server forked after this call: a chown of the container's that the override cannot
/// record (a file off the overlay, a special file, a caller without CAP_CHOWN) and that the
/// kernel would refuse for an id the namespace lacks succeeds without effect, as
/// `--security-opt fakeroot` fakes every chown on other roots; one the kernel can make it
/// still makes.
pub fn fake_unrecorded_chowns(on: bool) {
    FAKEROOT.store(on, Ordering::SeqCst);
}

/// The container side of the socketpair, in the process that mounted the root (the init),
/// inherited by the command it forks (the init is single-threaded: no lock is held across
/// the fork). None: not a single-id namespace.
static HANDOVER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// The syscalls the filter sends here (x86_64 numbers).
#[cfg(target_arch = "x86_64")]
const WATCHED: [i64; 9] = [
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_fchown,
    libc::SYS_fchownat,
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// The filter: `SECCOMP_RET_USER_NOTIF` for [`WATCHED`] on x86_64, allow everything else.
#[cfg(target_arch = "x86_64")]
pub fn program() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let n = WATCHED.len() as u8;
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // 0: arch, 1: not x86_64 -> allow, 2: nr, 3..3+n: watched -> notify, 3+n: allow,
    // 4+n: notify
    let mut p = vec![stmt(ld, 4), jeq(AUDIT_ARCH_X86_64, 0, n + 1), stmt(ld, 0)];
    for (i, nr) in WATCHED.iter().enumerate() {
        p.push(jeq(*nr as u32, n - i as u8, 0));
    }
    p.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    p.push(stmt(ret, libc::SECCOMP_RET_USER_NOTIF));
    p
}

/// Whether this process's user namespace maps a single uid (no subordinate range).
pub fn single_id() -> bool {
    let (map, _) = crate::own_id_maps();
    let lines: Vec<Vec<u64>> = map
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .collect();
    lines.len() == 1 && lines[0].len() == 3 && lines[0][2] == 1
}

/// Called by [`super::mount`] before it forks the server, under a single-id map only: the
/// server's end of a new socketpair (the other stays here for the command to hand over its
/// listener, see [`hand_over`]).
pub(super) fn pair() -> Option<OwnedFd> {
    if !cfg!(target_arch = "x86_64") || !single_id() {
        return None;
    }
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ok()?;
    *HANDOVER.lock().unwrap_or_else(|p| p.into_inner()) = Some(ours);
    Some(theirs)
}

/// In the container's init, once the server outside ([`super::spawn`]) has mounted the root:
/// `sock`, its channel to that server, carries the command's listener (under a single-id
/// map only, as [`pair`]).
pub(super) fn keep(sock: OwnedFd) {
    if cfg!(target_arch = "x86_64") && single_id() {
        *HANDOVER.lock().unwrap_or_else(|p| p.into_inner()) = Some(sock);
    }
}

/// `/proc/self/fd/N/NAME` for `path` (N: its directory, opened here): a unix socket's path
/// has room for 107 bytes, a store's container directory may be longer.
fn short_path(path: &Path) -> std::io::Result<(OwnedFd, String)> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let dir = nix::fcntl::open(
        parent,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let short = format!(
        "/proc/self/fd/{}/{}",
        dir.as_raw_fd(),
        name.to_string_lossy()
    );
    Ok((dir, short))
}

/// The FUSE server's socket at `path` (the container's directory) where `rbox exec` hands
/// the listeners of its processes ([`connect`]); made before the server leaves the host's
/// mount namespace.
pub(super) fn bind(path: &Path) -> Result<OwnedFd, String> {
    let err = |e: std::io::Error| format!("listen on {}: {e}", crate::bt(path));
    let (_dir, short) = short_path(path).map_err(err)?;
    let _ = std::fs::remove_file(path);
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err(e.into()))?;
    let addr = UnixAddr::new(short.as_str()).map_err(|e| err(e.into()))?;
    bind_socket(sock.as_raw_fd(), &addr).map_err(|e| err(e.into()))?;
    listen(&sock, Backlog::new(16).unwrap_or(Backlog::MAXCONN)).map_err(|e| err(e.into()))?;
    Ok(sock)
}

/// In `rbox exec`, before it joins the container: connects to the FUSE server's socket at
/// `path` (see [`bind`]) for [`hand_over`] in its process. Nothing where no server listens
/// there (kernel overlay, a container started before rbox had it).
pub fn connect(path: &Path) {
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let Ok((_dir, short)) = short_path(path) else {
        return;
    };
    let Ok(sock) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return;
    };
    let Ok(addr) = UnixAddr::new(short.as_str()) else {
        return;
    };
    if nix::sys::socket::connect(sock.as_raw_fd(), &addr).is_ok() {
        *HANDOVER.lock().unwrap_or_else(|p| p.into_inner()) = Some(sock);
    }
}

/// Drops this process's handover socket (`rbox exec`'s own copy, once its process has one).
pub fn forget() {
    HANDOVER.lock().unwrap_or_else(|p| p.into_inner()).take();
}

/// In the container's command, just before exec (while it holds CAP_SYS_ADMIN in its
/// namespace): installs the filter and sends its listener to the FUSE server's supervisor.
/// Nothing when the root is not a FUSE overlay under a single-id map, or when the kernel
/// refuses the filter. An error only once the filter is on and its listener could not be
/// sent: the calls it watches would fail with ENOSYS.
#[cfg(target_arch = "x86_64")]
pub fn hand_over() -> std::io::Result<()> {
    let Some(sock) = HANDOVER.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Ok(());
    };
    let Ok(listener) = sys::seccomp_listener(&program()) else {
        // a kernel without user notification (before 5.0): the folded owners, as on
        // kernel overlay; the server's thread sees the socket close
        return Ok(());
    };
    let fds = [listener.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"l")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
pub fn hand_over() -> std::io::Result<()> {
    Ok(())
}

/// The supervisor thread's life: receive listeners (one from each of `socks`, the
/// container's command; one from each connection to `accept`, `rbox exec`'s processes), then
/// answer their notifications until no listener and no way to get one is left. `proc`: the
/// /proc where the notifications' pids are (opened at the first listener where `None`).
pub(super) fn run(
    mut socks: Vec<OwnedFd>,
    accept: Option<OwnedFd>,
    proc: Option<OwnedFd>,
    owners: Owners,
) {
    SUPERVISOR_TID.store(nix::unistd::gettid().as_raw(), Ordering::SeqCst);
    let mut s = Supervisor {
        owners,
        fuse_dev: None,
        proc,
    };
    let mut listeners: Vec<OwnedFd> = Vec::new();
    while !(socks.is_empty() && accept.is_none() && listeners.is_empty()) {
        let revents = {
            let mut fds: Vec<PollFd> = accept
                .iter()
                .chain(socks.iter())
                .chain(listeners.iter())
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(_) => return,
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect::<Vec<_>>()
        };
        let (a, rest) = revents.split_at(usize::from(accept.is_some()));
        let (from_socks, from_listeners) = rest.split_at(socks.len());
        // notifications first: their callers wait
        let mut gone = Vec::new();
        for (i, ev) in from_listeners.iter().enumerate() {
            if ev.contains(PollFlags::POLLIN) {
                s.one(listeners[i].as_fd());
            } else if !ev.is_empty() {
                // POLLHUP: every process filtered through it has exited
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            listeners.remove(i);
        }
        let mut done = Vec::new();
        for (i, ev) in from_socks.iter().enumerate() {
            if ev.is_empty() {
                continue;
            }
            // one listener per socket; end-of-file: its holders exited without one
            if let Ok(Some(l)) = sys::recv_fd(socks[i].as_fd()) {
                if s.proc.is_none() {
                    s.proc = nix::fcntl::open(
                        "/proc",
                        nix::fcntl::OFlag::O_PATH
                            | nix::fcntl::OFlag::O_DIRECTORY
                            | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .ok();
                }
                // older kernels: the usual wake-up, only slower
                let _ = sys::notif_sync_wake_up(l.as_fd());
                listeners.push(l);
            }
            done.push(i);
        }
        for i in done.into_iter().rev() {
            socks.remove(i);
        }
        if let (Some(ev), Some(acc)) = (a.first(), &accept) {
            if ev.contains(PollFlags::POLLIN) {
                if let Ok(fd) = sys::accept(acc) {
                    socks.push(fd);
                }
            }
        }
    }
}

struct Supervisor {
    owners: Owners,
    /// the device number of the FUSE mount (the container's root), found at first use
    fuse_dev: Option<u64>,
    /// the /proc of this process's pid namespace (the notifications' pids)
    proc: Option<OwnedFd>,
}

/// What a notified call works on: a directory descriptor (ours) and a path relative to it.
struct Target {
    dir: Option<OwnedFd>,
    path: CString,
}

impl Target {
    fn dirfd(&self) -> RawFd {
        self.dir.as_ref().map_or(libc::AT_FDCWD, |d| d.as_raw_fd())
    }
}

type Answer = Option<Result<i64, i32>>;

impl Supervisor {
    /// Answers one notification of listener `l`.
    fn one(&mut self, l: BorrowedFd<'_>) {
        let n = match sys::notif_recv(l) {
            Ok(n) => n,
            // the caller died between the notification and the read, or a signal
            Err(_) => return,
        };
        let answer = self.answer(l, &n);
        // ENOENT: the caller is gone (killed meanwhile); nothing to do
        let _ = sys::notif_send(l, n.id, answer);
    }

    fn answer(&mut self, l: BorrowedFd<'_>, n: &libc::seccomp_notif) -> Answer {
        let a = n.data.args;
        let ids = match i64::from(n.data.nr) {
            libc::SYS_chown | libc::SYS_lchown | libc::SYS_fchown => Some((a[1], a[2])),
            libc::SYS_fchownat => Some((a[2], a[3])),
            _ => None,
        };
        let answer = self.answer_call(l, n);
        match (answer, ids) {
            (None, Some((uid, gid)))
                if FAKEROOT.load(Ordering::Relaxed)
                    && !self.ids_mapped(n.pid, uid as u32, gid as u32) =>
            {
                Some(Ok(0))
            }
            (answer, _) => answer,
        }
    }

    /// The text of `/proc/PID/FILE` of task `pid` (empty when it cannot be read).
    fn proc_file(&self, pid: u32, file: &str) -> String {
        self.proc
            .as_ref()
            .and_then(|p| {
                nix::fcntl::openat(
                    p,
                    format!("{pid}/{file}").as_str(),
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .ok()
            })
            .and_then(|f| std::io::read_to_string(std::fs::File::from(f)).ok())
            .unwrap_or_default()
    }

    /// Whether the caller's user namespace has `uid` and `gid` (-1: unchanged, always).
    fn ids_mapped(&self, pid: u32, uid: u32, gid: u32) -> bool {
        let has = |file: &str, id: u32| {
            if id == u32::MAX {
                return true;
            }
            self.proc_file(pid, file).lines().any(|l| {
                let v: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                matches!(v[..], [inside, _, count] if (inside..inside + count).contains(&u64::from(id)))
            })
        };
        has("uid_map", uid) && has("gid_map", gid)
    }

    fn answer_call(&mut self, l: BorrowedFd<'_>, n: &libc::seccomp_notif) -> Answer {
        let a = n.data.args;
        let pid = n.pid as i32;
        match i64::from(n.data.nr) {
            libc::SYS_stat => self.stat(l, n, self.target(pid, libc::AT_FDCWD, a[0])?, a[1], 0),
            libc::SYS_lstat => self.stat(
                l,
                n,
                self.target(pid, libc::AT_FDCWD, a[0])?,
                a[1],
                libc::AT_SYMLINK_NOFOLLOW,
            ),
            libc::SYS_fstat => self.stat(
                l,
                n,
                self.fd_target(pid, a[0] as i32)?,
                a[1],
                libc::AT_EMPTY_PATH,
            ),
            libc::SYS_newfstatat => self.stat(
                l,
                n,
                self.target(pid, a[0] as i32, a[1])?,
                a[2],
                a[3] as i32,
            ),
            libc::SYS_statx => self.statx(
                l,
                n,
                self.target(pid, a[0] as i32, a[1])?,
                a[2] as i32,
                a[3] as u32,
                a[4],
            ),
            libc::SYS_chown => {
                self.chown(l, n, self.target(pid, libc::AT_FDCWD, a[0])?, a[1], a[2], 0)
            }
            libc::SYS_lchown => self.chown(
                l,
                n,
                self.target(pid, libc::AT_FDCWD, a[0])?,
                a[1],
                a[2],
                libc::AT_SYMLINK_NOFOLLOW,
            ),
            libc::SYS_fchown => self.chown(
                l,
                n,
                self.fd_target(pid, a[0] as i32)?,
                a[1],
                a[2],
                libc::AT_EMPTY_PATH,
            ),
            libc::SYS_fchownat => self.chown(
                l,
                n,
                self.target(pid, a[0] as i32, a[1])?,
                a[2],
                a[3],
                a[4] as i32,
            ),
            _ => None,
        }
    }

    /// `/proc/PID/...` of the caller: a descriptor of `rest` under [`Supervisor::proc`].
    fn in_proc(&self, rest: &str) -> Option<OwnedFd> {
        nix::fcntl::openat(
            self.proc.as_ref()?,
            rest,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()
    }

    /// The file an `*at` call names: `None` (hand back to the kernel) where this thread
    /// could not resolve it as the caller would.
    fn target(&self, pid: i32, dirfd: i32, addr: u64) -> Option<Target> {
        let path = if addr == 0 {
            CString::default()
        } else {
            read_path(pid, addr)?
        };
        let b = path.as_bytes();
        if b.starts_with(b"/") {
            // the caller's own `/proc/self/fd/N` (a FUSE file opened) is its pid's here
            for own in [&b"/proc/self/"[..], b"/proc/thread-self/"] {
                if let Some(rest) = b.strip_prefix(own).filter(|r| !r.is_empty()) {
                    let mut p = format!("{pid}/").into_bytes();
                    p.extend_from_slice(rest);
                    let proc = self.proc.as_ref()?.try_clone().ok()?;
                    return Some(Target {
                        dir: Some(proc),
                        path: CString::new(p).ok()?,
                    });
                }
            }
            // other `/proc` paths may lead through `self`, `/dev/fd/N` and `/dev/stdin` do:
            // they would name this process, not the caller
            if b == b"/proc" || b.starts_with(b"/proc/") || b.starts_with(b"/dev/") {
                return None;
            }
            return Some(Target { dir: None, path });
        }
        let dir = if dirfd == libc::AT_FDCWD {
            format!("{pid}/cwd")
        } else {
            format!("{pid}/fd/{dirfd}")
        };
        Some(Target {
            dir: Some(self.in_proc(&dir)?),
            path,
        })
    }

    fn fd_target(&self, pid: i32, fd: i32) -> Option<Target> {
        Some(Target {
            dir: Some(self.in_proc(&format!("{pid}/fd/{fd}"))?),
            path: CString::default(),
        })
    }

    fn fuse_dev(&mut self) -> Option<u64> {
        if self.fuse_dev.is_none() {
            self.fuse_dev = sys::fstatat_raw(libc::AT_FDCWD, c"/", 0)
                .ok()
                .map(|s| s.st_dev);
        }
        self.fuse_dev
    }

    /// The intended owner of inode `ino` of the mount, where one differs from the disk's.
    fn owner(&mut self, dev: u64, ino: u64) -> Option<Override> {
        if Some(dev) != self.fuse_dev() {
            return None;
        }
        self.owners.get(ino)
    }

    /// Writes `bytes` at `addr` in the caller, once the notification is still its own (the
    /// pid cannot have been reused by then).
    fn write_back(
        &self,
        l: BorrowedFd<'_>,
        n: &libc::seccomp_notif,
        addr: u64,
        bytes: &[u8],
    ) -> Answer {
        if !sys::notif_id_valid(l, n.id) {
            return Some(Err(libc::ENOENT));
        }
        let remote = [RemoteIoVec {
            base: addr as usize,
            len: bytes.len(),
        }];
        match process_vm_writev(
            Pid::from_raw(n.pid as i32),
            &[std::io::IoSlice::new(bytes)],
            &remote,
        ) {
            Ok(w) if w == bytes.len() => Some(Ok(0)),
            Ok(_) => Some(Err(libc::EFAULT)),
            // the kernel reports the fault (or whatever it is) itself
            Err(_) => None,
        }
    }

    fn stat(
        &mut self,
        l: BorrowedFd<'_>,
        n: &libc::seccomp_notif,
        t: Target,
        buf: u64,
        flags: i32,
    ) -> Answer {
        let flags =
            flags & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | libc::AT_NO_AUTOMOUNT);
        let mut st = match sys::fstatat_raw(t.dirfd(), &t.path, flags) {
            Ok(st) => st,
            Err(e) => return quick_error(e),
        };
        if let Some((u, g, m)) = self.owner(st.st_dev, st.st_ino) {
            st.st_uid = u;
            st.st_gid = g;
            st.st_mode = (st.st_mode & !0o7777) | (m & 0o7777);
        }
        self.write_back(l, n, buf, sys::struct_bytes(&st))
    }

    fn statx(
        &mut self,
        l: BorrowedFd<'_>,
        n: &libc::seccomp_notif,
        t: Target,
        flags: i32,
        mask: u32,
        buf: u64,
    ) -> Answer {
        let mut st = match sys::statx_raw(t.dirfd(), &t.path, flags, mask) {
            Ok(st) => st,
            Err(e) => return quick_error(e),
        };
        let dev = libc::makedev(st.stx_dev_major, st.stx_dev_minor);
        if let Some((u, g, m)) = self.owner(dev, st.stx_ino) {
            st.stx_uid = u;
            st.stx_gid = g;
            st.stx_mode = (st.stx_mode & !0o7777) | (m & 0o7777) as u16;
        }
        self.write_back(l, n, buf, sys::struct_bytes(&st))
    }

    fn chown(
        &mut self,
        l: BorrowedFd<'_>,
        n: &libc::seccomp_notif,
        t: Target,
        uid: u64,
        gid: u64,
        flags: i32,
    ) -> Answer {
        let (uid, gid) = (uid as u32, gid as u32);
        let mut oflags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC;
        if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
            oflags |= nix::fcntl::OFlag::O_NOFOLLOW;
        }
        let file = if t.path.is_empty() {
            if flags & libc::AT_EMPTY_PATH == 0 {
                return None;
            }
            t.dir?
        } else {
            let dir = t.dir.as_ref().map(|d| d.as_fd());
            let opened = match dir {
                Some(d) => {
                    nix::fcntl::openat(d, t.path.as_c_str(), oflags, nix::sys::stat::Mode::empty())
                }
                None => nix::fcntl::open(t.path.as_c_str(), oflags, nix::sys::stat::Mode::empty()),
            };
            match opened {
                Ok(f) => f,
                Err(e) => return quick_error(std::io::Error::from(e)),
            }
        };
        let st = sys::fstatat_raw(file.as_raw_fd(), c"", libc::AT_EMPTY_PATH).ok()?;
        if Some(st.st_dev) != self.fuse_dev() {
            return None;
        }
        let cur = self.owners.get(st.st_ino);
        let keep = u32::MAX;
        let now = cur.unwrap_or((st.st_uid, st.st_gid, st.st_mode & 0o7777));
        let new_uid = if uid == keep { now.0 } else { uid };
        let new_gid = if gid == keep { now.1 } else { gid };
        if cur.is_none() && new_uid == st.st_uid && new_gid == st.st_gid {
            // ids this namespace has, on a file without an override: the real chown
            return None;
        }
        if !self.has_cap_chown(n.pid) {
            // the kernel's own answer for a caller without CAP_CHOWN
            return None;
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFDIR {
            return if cur.is_none() && (new_uid, new_gid) != (st.st_uid, st.st_gid) {
                // cannot carry the override (see the module doc)
                Some(Ok(0))
            } else {
                None
            };
        }
        let mut mode = now.2;
        if kind == libc::S_IFREG && (uid != keep || gid != keep) {
            // as the kernel does on chown, root's included
            mode &= !libc::S_ISUID;
            if mode & libc::S_IXGRP != 0 {
                mode &= !libc::S_ISGID;
            }
        }
        if !sys::notif_id_valid(l, n.id) {
            return Some(Err(libc::ENOENT));
        }
        let value = format_override((new_uid, new_gid, mode));
        // an O_PATH descriptor takes no fsetxattr: reopened (a regular file or a directory)
        // through its /proc link, the link of this thread's /proc: the one of the root,
        // the container's, has no entry for a server outside its pid namespace
        let reopened = nix::fcntl::openat(
            self.proc.as_ref()?,
            format!("thread-self/fd/{}", file.as_raw_fd()).as_str(),
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        let res = match reopened {
            Ok(f) => sys::fsetxattr(&f, OVERRIDE_STAT, value.as_bytes()),
            Err(e) => Err(std::io::Error::from(e)),
        };
        match res {
            Ok(()) => Some(Ok(0)),
            Err(e) => Some(Err(e.raw_os_error().unwrap_or(libc::EPERM))),
        }
    }

    /// Whether task `pid` holds CAP_CHOWN (bit 0 of its `CapEff` line): only then does a chown
    /// to an id the kernel cannot map become an override; without it the kernel refuses as it
    /// would.
    fn has_cap_chown(&self, pid: u32) -> bool {
        self.proc_file(pid, "status")
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|caps| caps & 1 != 0)
    }
}

/// Answers a failed call directly where the caller would see the same errno (a missing path
/// is a missing path); anything else goes back to the kernel to fail in the caller's own
/// context (its capabilities may be fewer than ours).
fn quick_error(e: std::io::Error) -> Answer {
    match e.raw_os_error() {
        Some(c @ (libc::ENOENT | libc::ENOTDIR)) => Some(Err(c)),
        _ => None,
    }
}

/// The NUL-terminated path at `addr` in process `pid`, read up to each page's end (a path
/// near the end of a mapping must not fail for the page after it). At most PATH_MAX bytes.
fn read_path(pid: i32, addr: u64) -> Option<CString> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize {
        let len = (PAGE - at % PAGE) as usize;
        let mut buf = vec![0u8; len];
        let remote = [RemoteIoVec {
            base: at as usize,
            len,
        }];
        let got = process_vm_readv(
            Pid::from_raw(pid),
            &mut [IoSliceMut::new(&mut buf)],
            &remote,
        )
        .ok()?;
        if got == 0 {
            return None;
        }
        if let Some(end) = buf[..got].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return CString::new(out).ok();
        }
        out.extend_from_slice(&buf[..got]);
        at += got as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_filter_notifies_the_watched_calls_and_allows_the_rest() {
        let p = program();
        // walk the program as the kernel would for a given nr on x86_64
        let run = |nr: i64, arch: u32| -> u32 {
            let mut pc = 0usize;
            let mut acc = 0u32;
            loop {
                let i = p[pc];
                let code = u32::from(i.code);
                if code == (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) {
                    acc = if i.k == 4 { arch } else { nr as u32 };
                    pc += 1;
                } else if code == (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) {
                    pc += 1 + usize::from(if acc == i.k { i.jt } else { i.jf });
                } else {
                    return i.k;
                }
            }
        };
        for nr in WATCHED {
            assert_eq!(run(nr, AUDIT_ARCH_X86_64), libc::SECCOMP_RET_USER_NOTIF);
            assert_eq!(run(nr, 0x4000_0003), libc::SECCOMP_RET_ALLOW);
        }
        for nr in [libc::SYS_read, libc::SYS_openat, libc::SYS_chmod, 0] {
            assert_eq!(run(nr, AUDIT_ARCH_X86_64), libc::SECCOMP_RET_ALLOW);
        }
    }
}
