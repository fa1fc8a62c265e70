//! Raw syscalls nix does not wrap: extended attributes, `sigpending`, and the new mount API (`fsopen`,
//! `fsconfig`, `fsmount`, `move_mount`) that the overlay driver mounts with.
//!
//! The only module of the crate allowed `unsafe` (the workspace denies it everywhere else);
//! one small wrapper per syscall, each unsafe block with its SAFETY argument.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `fsetxattr(2)` on an open file or directory.
pub fn fsetxattr<F: AsFd>(fd: F, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the fd is valid for the call (borrowed), `name` is a NUL-terminated string that
    // outlives the call, and `value` points to `value.len()` readable bytes.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `fgetxattr(2)`: the value of `name`, or `None` when the attribute is absent.
pub fn fgetxattr<F: AsFd>(fd: F, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: the fd is valid for the call, `name` is NUL-terminated, and `buf` has
    // `buf.len()` writable bytes; the kernel writes at most that many.
    let r = unsafe {
        libc::fgetxattr(
            fd.as_fd().as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}

/// `lgetxattr(2)`: the value of `name` on `path` (not following a final symlink), or `None`
/// when it is not set or cannot be read.
pub fn lgetxattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: `p` and `n` are NUL-terminated strings that outlive the call, and `buf` has
    // `buf.len()` writable bytes; the kernel writes at most that many.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Every extended attribute of an open file or directory, names with their values, in the
/// order the kernel lists them. A filesystem without xattrs gives none.
pub fn fxattrs<F: AsFd>(fd: F) -> io::Result<Vec<(String, Vec<u8>)>> {
    let raw = fd.as_fd().as_raw_fd();
    // Sizes can grow between the size query and the read (a running container): retry.
    let names = loop {
        // SAFETY: a null buffer with size 0 asks only for the needed size.
        let n = unsafe { libc::flistxattr(raw, std::ptr::null_mut(), 0) };
        if n == 0 {
            // none (the common case: one system call per file of a layer, not two)
            return Ok(Vec::new());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; n as usize];
        // SAFETY: `buf` has `buf.len()` writable bytes; the kernel writes at most that many.
        let r = unsafe { libc::flistxattr(raw, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            break buf;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let value = loop {
            let c = cstr(name)?;
            // SAFETY: `c` is NUL-terminated and outlives the call; a null buffer with size 0
            // asks only for the size.
            let n = unsafe { libc::fgetxattr(raw, c.as_ptr(), std::ptr::null_mut(), 0) };
            if n < 0 {
                break None;
            }
            let mut buf = vec![0u8; n as usize];
            // SAFETY: as above, and `buf` has `buf.len()` writable bytes.
            let r = unsafe { libc::fgetxattr(raw, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if r >= 0 {
                buf.truncate(r as usize);
                break Some(buf);
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
                break None;
            }
        };
        // Removed meanwhile, or not readable by us: leave it out.
        if let Some(v) = value {
            out.push((name.to_string(), v));
        }
    }
    Ok(out)
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `fsopen(2)` with FSOPEN_CLOEXEC: a filesystem context for `fstype`.
pub fn fsopen(fstype: &str) -> io::Result<OwnedFd> {
    let t = cstr(fstype)?;
    // SAFETY: `t` is a NUL-terminated string that outlives the call; FSOPEN_CLOEXEC is 1.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), 1 as libc::c_uint) })?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
pub fn fsconfig_string(fd: BorrowedFd<'_>, key: &str, value: &str) -> io::Result<()> {
    let (k, v) = (cstr(key)?, cstr(value)?);
    // SAFETY: the fd is valid for the call (borrowed); `k` and `v` are NUL-terminated
    // strings that outlive it.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// `fsconfig(FSCONFIG_SET_FLAG, key)`.
pub fn fsconfig_flag(fd: BorrowedFd<'_>, key: &str) -> io::Result<()> {
    let k = cstr(key)?;
    // SAFETY: the fd is valid for the call, `k` is NUL-terminated and outlives it; the value
    // must be NULL for a flag.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            k.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
    .map(drop)
}

/// `fsconfig(FSCONFIG_CMD_CREATE)`: make the superblock from the configured context.
pub fn fsconfig_create(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: the fd is valid for the call; key and value must be NULL for this command.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
    .map(drop)
}

/// `fsmount(2)` with FSMOUNT_CLOEXEC and the given MOUNT_ATTR_* flags: a detached mount.
pub fn fsmount(fd: BorrowedFd<'_>, attrs: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: the fd is valid for the call; FSMOUNT_CLOEXEC is 1.
    let m =
        cvt(unsafe { libc::syscall(libc::SYS_fsmount, fd.as_raw_fd(), 1 as libc::c_uint, attrs) })?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(m as RawFd) })
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attach a detached mount.
pub fn move_mount_to(fd: BorrowedFd<'_>, target: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let empty = cstr("")?;
    let t = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the fd is valid for the call; both strings are NUL-terminated and outlive it;
    // MOVE_MOUNT_F_EMPTY_PATH is 4.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            4 as libc::c_uint,
        )
    })
    .map(drop)
}

/// `fgetxattr(2)` for the FUSE overlay: the value of `name` (raw bytes), ENODATA as an error.
pub fn fgetxattr_raw<F: AsFd>(fd: F, name: &[u8]) -> io::Result<Vec<u8>> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: the fd is valid for the call, `name` is NUL-terminated, and `buf` has
        // `buf.len()` writable bytes; the kernel writes at most that many.
        let r = unsafe {
            libc::fgetxattr(
                fd.as_fd().as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 16 {
            return Err(e);
        }
        buf.resize(1 << 16, 0);
    }
}

/// `llistxattr(2)`: the NUL-separated attribute names of `path` (not following a final
/// symlink); none on a filesystem without xattrs.
pub fn llistxattr(path: &std::path::Path) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `p` is NUL-terminated and outlives the call, and `buf` has `buf.len()`
        // writable bytes; the kernel writes at most that many.
        let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(1 << 16, 0),
            _ => return Err(e),
        }
    }
}

/// `lremovexattr(2)`.
pub fn lremovexattr(path: &std::path::Path, name: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let n = cstr(name)?;
    // SAFETY: both strings are NUL-terminated and outlive the call.
    if unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `flistxattr(2)`: the NUL-separated list of attribute names.
pub fn flistxattr<F: AsFd>(fd: F) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: the fd is valid for the call and `buf` has `buf.len()` writable bytes; the
        // kernel writes at most that many.
        let r =
            unsafe { libc::flistxattr(fd.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 16 {
            return Err(e);
        }
        buf.resize(1 << 16, 0);
    }
}

/// `fsetxattr(2)` with raw name bytes and flags (XATTR_CREATE / XATTR_REPLACE).
pub fn fsetxattr_flags<F: AsFd>(fd: F, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the fd is valid for the call, `name` is NUL-terminated and outlives the call,
    // and `value` points to `value.len()` readable bytes.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `fremovexattr(2)`.
pub fn fremovexattr<F: AsFd>(fd: F, name: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the fd is valid for the call and `name` is NUL-terminated and outlives it.
    let r = unsafe { libc::fremovexattr(fd.as_fd().as_raw_fd(), name.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// fork(2), for the FUSE overlay's server. The caller guarantees the process is
/// single-threaded (the container's init during its setup, or `rbox cp`'s child), so the
/// child may allocate.
pub fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: callers fork only while single-threaded: no lock is held by a thread that the
    // child would lose.
    unsafe { nix::unistd::fork() }
}

/// _exit(2): leave the forked server without running the parent's atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// dup2(2) on raw numbers (the FUSE server puts /dev/null on its stdio).
pub fn dup2_raw(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only replaces descriptor `new`; nothing in the server owns 0-2 as a Rust
    // object that would close them again.
    cvt(unsafe { libc::dup2(old, new) } as libc::c_long).map(drop)
}

/// copy_file_range(2) at both descriptors' own offsets (the FUSE overlay's copy-up).
pub fn copy_file_range<A: AsFd, B: AsFd>(from: A, to: B, len: usize) -> nix::Result<usize> {
    // SAFETY: both fds are valid for the call; null offset pointers make the kernel use and
    // advance the descriptors' file offsets.
    let r = unsafe {
        libc::copy_file_range(
            from.as_fd().as_raw_fd(),
            std::ptr::null_mut(),
            to.as_fd().as_raw_fd(),
            std::ptr::null_mut(),
            len,
            0,
        )
    };
    if r < 0 {
        Err(nix::Error::last())
    } else {
        Ok(r as usize)
    }
}

/// seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER): installs `program` on
/// this thread (inherited by its children) and returns the listener its
/// `SECCOMP_RET_USER_NOTIF` calls wait on (the owner supervisor, `mount::fuse::supervisor`).
/// Needs no_new_privs or CAP_SYS_ADMIN in the user namespace, as any filter.
pub fn seccomp_listener(program: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, valid for the call; the kernel copies the
    // instructions. On success the return value is a new descriptor that we own.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    })?;
    // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// SECCOMP_IOCTL_NOTIF_RECV: the next notification (blocks).
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<libc::seccomp_notif> {
    // SAFETY: an all-zero seccomp_notif is valid (plain integers), and the kernel wants the
    // buffer zeroed.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `n` is a writable seccomp_notif, the size the ioctl number encodes.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut n as *mut libc::seccomp_notif,
        )
    } as libc::c_long)?;
    Ok(n)
}

/// SECCOMP_IOCTL_NOTIF_SEND: the answer to notification `id`: `Ok(val)` as the call's
/// return value, `Err(errno)` as its failure, `None` to let the kernel run the call itself.
pub fn notif_send(
    listener: BorrowedFd<'_>,
    id: u64,
    answer: Option<Result<i64, i32>>,
) -> io::Result<()> {
    let (val, error, flags) = match answer {
        Some(Ok(v)) => (v, 0, 0),
        Some(Err(e)) => (0, -e, 0),
        None => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
    };
    let mut r = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: `r` is a valid seccomp_notif_resp for the duration of the call.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut r as *mut libc::seccomp_notif_resp,
        )
    } as libc::c_long)
    .map(drop)
}

/// SECCOMP_IOCTL_NOTIF_ID_VALID: whether notification `id` is still waiting (its task has
/// not died, so the pid it named is still that task).
pub fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: `id` is a valid u64 for the call.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &mut id as *mut u64,
        ) == 0
    }
}

/// fstatat(2) into the kernel's own `struct stat`, to be copied into another process as is.
pub fn fstatat_raw(dirfd: RawFd, path: &std::ffi::CStr, flags: i32) -> io::Result<libc::stat> {
    // SAFETY: all-zero is a valid `struct stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated, `st` writable; a bad dirfd is an EBADF, not UB.
    cvt(unsafe { libc::fstatat(dirfd, path.as_ptr(), &mut st, flags) } as libc::c_long)?;
    Ok(st)
}

/// statx(2) into the kernel's own `struct statx`.
pub fn statx_raw(
    dirfd: RawFd,
    path: &std::ffi::CStr,
    flags: i32,
    mask: u32,
) -> io::Result<libc::statx> {
    // SAFETY: all-zero is a valid `struct statx`.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated, `st` writable; a bad dirfd is an EBADF, not UB.
    cvt(unsafe { libc::statx(dirfd, path.as_ptr(), flags, mask, &mut st) } as libc::c_long)?;
    Ok(st)
}

/// The bytes of a plain C struct (a `stat` or `statx` written into another process).
pub fn struct_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: `T` is one of the kernel's plain integer structs (no padding we could leak
    // beyond what the kernel itself zeroed: ours were zeroed before the call filled them);
    // the slice lives as long as the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// recvmsg(2) of one descriptor sent with SCM_RIGHTS (close-on-exec here); `None` at
/// end-of-file or when the message carried none.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut got = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel installed these descriptors in this process for this
                // message; nothing else knows them.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(fd);
                }
            }
        }
    }
    Ok(got)
}

/// SECCOMP_IOCTL_NOTIF_SET_FLAGS with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): the
/// kernel switches straight to the supervisor on a notification and back on its answer,
/// instead of waking it on another CPU (much less latency per call). Best effort.
pub fn notif_sync_wake_up(listener: BorrowedFd<'_>) -> io::Result<()> {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    // SAFETY: the ioctl takes its flags by value; no memory is passed.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    } as libc::c_long)
    .map(drop)
}

/// pidfd_open(2) (Linux 5.3): a descriptor that polls readable once process `pid` has exited
/// (the FUSE server outside the container watches the container's init with it).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags by value; on success the return value is a
    // new descriptor that we own.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: `fd` is the new descriptor the kernel just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// setns(2) into the namespace `fd` names (the FUSE server joining the container's user and
/// mount namespaces; it is single-threaded then).
pub fn setns<F: AsFd>(fd: F, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes a valid descriptor and a flag; it touches no memory of ours.
    let r = cvt(unsafe { libc::setns(fd.as_fd().as_raw_fd(), nstype) } as libc::c_long).map(drop);
    if nstype == 0 || nstype & libc::CLONE_NEWUSER != 0 {
        crate::id_maps_changed();
    }
    r
}

/// accept4(2) with SOCK_CLOEXEC (the owner supervisor's socket for `rbox exec`).
pub fn accept<F: AsFd>(sock: F) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers: the peer's address is not wanted; on success the return
    // value is a new descriptor that we own.
    let fd = cvt(unsafe {
        libc::accept4(
            sock.as_fd().as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    } as libc::c_long)?;
    // SAFETY: `fd` is the new descriptor the kernel just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether SIGINT, SIGTERM or SIGHUP waits, blocked, for this thread or process
/// (`sigpending(2)`; nix does not wrap it). Never consumes the signal.
pub fn stop_signal_pending() -> bool {
    // SAFETY: an all-zero `sigset_t` is a valid (empty) set for sigpending to fill.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t for the duration of the call.
    if unsafe { libc::sigpending(&mut set) } != 0 {
        return false;
    }
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .iter()
        // SAFETY: `set` was filled by sigpending and `s` is a valid signal number.
        .any(|s| unsafe { libc::sigismember(&set, *s) } == 1)
}

/// This thread's id (gettid(2)), for [`wake_thread`].
pub fn gettid() -> i32 {
    // SAFETY: no arguments, no memory.
    unsafe { libc::gettid() }
}

/// The signal that wakes a thread of this process out of a blocking system call
/// ([`crate::interrupt::wake`]): SIGURG, whose default is to be ignored, so that it is
/// harmless where [`catch_wake_signal`] was not called.
const WAKE: libc::c_int = libc::SIGURG;

/// A handler for [`WAKE`] that does nothing, installed without SA_RESTART: a system call it
/// interrupts fails with EINTR, and the stream around it looks at the stop request.
pub fn catch_wake_signal() -> io::Result<()> {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a zeroed sigaction with a handler that touches nothing, an empty mask and no
    // flags; no old action asked for.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut act.sa_mask);
        cvt(libc::sigaction(WAKE, &act, std::ptr::null_mut()) as libc::c_long).map(drop)
    }
}

/// Send [`WAKE`] to thread `tid` of this process.
pub fn wake_thread(tid: i32) {
    // SAFETY: integer arguments; a thread that has ended gives ESRCH, ignored.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, WAKE) };
}
