//! The only module of the binary allowed `unsafe`: one small wrapper per syscall that nix does
//! not cover (or covers with a signature that does not fit), each with its SAFETY argument.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::ForkResult;

/// One of the standard descriptors 0, 1, 2 (stdin, stdout, stderr) as a borrowed fd, without
/// touching std's `Stdin`/`Stdout` objects (their first use allocates, which a forked child
/// must not do). Panics on any other number.
pub fn stdio(n: RawFd) -> BorrowedFd<'static> {
    assert!((0..=2).contains(&n), "not a standard descriptor: {n}");
    // SAFETY: 0-2 stay open for the life of the process, as std's own `Stdin::as_fd` assumes:
    // rbox never closes them, only replaces them with dup2, which is atomic.
    unsafe { BorrowedFd::borrow_raw(n) }
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// fork(2). Callers guarantee the process is single-threaded, so the child may allocate.
pub fn fork() -> nix::Result<ForkResult> {
    // the one thread a run may have at work by then, joined first (its result kept)
    super::prenet::settle();
    // SAFETY: rbox forks only before it starts any thread (asserted by callers' design: the
    // user namespace is entered and containers are cloned from the main thread alone).
    unsafe { nix::unistd::fork() }
}

/// clone(2) with namespace flags and fork-like semantics (no new stack: the child continues on
/// a copy-on-write copy of ours, like fork). Returns the child's pid, or 0 in the child.
pub fn clone_fork(flags: libc::c_int) -> io::Result<i32> {
    // SAFETY: with a null stack the raw clone syscall behaves as fork (the child gets a copy of
    // the address space); the process is single-threaded, so no lock is held by a lost thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    cvt(r).map(|r| r as i32)
}

/// _exit(2): leave a forked child without running atexit handlers or flushing parent buffers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Run `f` in a new process that shares this one's memory (clone with CLONE_VM and a stack
/// of its own), once this process has exited or exec'd: the child first waits for the
/// end-of-file of a pipe whose write end this process never closes (close-on-exec), so the
/// two never run at once in the one address space. The parent's exit then frees nothing:
/// the child holds the address space, whose teardown (a fork's copy, the parent's exit
/// unmapping rbox's 20 MB image) it pays after the parent has returned. Before it waits,
/// the child lets go of all its parent's descriptors but `keep` (stdio goes to /dev/null)
/// and starts a session of its own, so no pipe's end-of-file and no terminal's signal
/// waits for it. Returns the child's pid.
///
/// Only for a single-threaded process about to exit: a process that waits for its
/// children first would wait for ever. `f` must own what it uses (the parent's values are
/// dropped by the time it runs); it runs with every signal blocked.
pub fn after_exit(f: Box<dyn FnOnce() + Send>, keep: &[RawFd]) -> io::Result<i32> {
    const STACK: usize = 8 << 20;
    let mut kept = [-1; 4];
    if keep.len() > kept.len() - 1 {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    // The child puts /dev/null on 0-2 before it waits: a descriptor it keeps must lie above
    // (a gate there would read /dev/null's end-of-file at once, a write end there would
    // take this process's output).
    if keep.iter().any(|&k| k < 3) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let (gate, held) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (gate, held) = (above_stdio(gate)?, above_stdio(held)?);
    kept[0] = gate.as_raw_fd();
    kept[1..=keep.len()].copy_from_slice(keep);
    kept.sort_unstable();
    // SAFETY: a new private anonymous mapping; nothing else refers to it.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the lowest page of the mapping just made: a guard against overflow.
    unsafe { libc::mprotect(stack, 4096, libc::PROT_NONE) };
    let payload = Box::into_raw(Box::new(AfterExit {
        gate: gate.as_raw_fd(),
        kept,
        f,
    }));
    // The child starts with every signal blocked: a signal before it could block them
    // would run a handler of the parent's beside the parent.
    let all = nix::sys::signal::SigSet::all();
    let mut was = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&all),
        Some(&mut was),
    );
    // SAFETY: `after_exit_child` runs on the new stack (its top, 16-byte aligned) with the
    // payload, which this side no longer touches; CLONE_VM without CLONE_THREAD makes a
    // process of its own, reaped as any child (SIGCHLD).
    let pid = unsafe {
        libc::clone(
            after_exit_child,
            (stack as usize + STACK) as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            payload as *mut libc::c_void,
        )
    };
    let cloned = io::Error::last_os_error();
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&was),
        None,
    );
    if pid < 0 {
        // SAFETY: no child took them.
        unsafe {
            drop(Box::from_raw(payload));
            libc::munmap(stack, STACK);
        }
        return Err(cloned);
    }
    drop(gate);
    // the child's go: closed by this process's exit (or exec) only
    std::mem::forget(held);
    Ok(pid)
}

/// `fd`, or a copy of it numbered 3 or above where it is one of stdio's numbers (free in a
/// process started with stdio closed).
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    let copy = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

struct AfterExit {
    gate: RawFd,
    /// the descriptors the child keeps, the gate's among them, ascending (-1: none)
    kept: [RawFd; 4],
    f: Box<dyn FnOnce() + Send>,
}

extern "C" fn after_exit_child(arg: *mut libc::c_void) -> libc::c_int {
    let p = arg as *mut AfterExit;
    // Until the gate's end-of-file the parent runs in this address space: system calls
    // only here (no allocation, no lock; a failure, none expected, ends this process
    // without a word).
    // SAFETY: the payload is ours from the clone on; reading plain integers.
    let (gate, kept) = unsafe { ((*p).gate, (*p).kept) };
    let quit = || -> ! {
        // SAFETY: ends this process only.
        unsafe { libc::syscall(libc::SYS_exit, 1) };
        unreachable!()
    };
    // SAFETY: integer arguments and a static NUL-terminated path; every descriptor named
    // is this process's copy.
    unsafe {
        let null = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/dev/null".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC,
        );
        if null < 0 {
            quit();
        }
        // (/dev/null may itself have got one of stdio's numbers, free in the parent)
        for n in (0..3).filter(|&n| n != null) {
            if libc::syscall(libc::SYS_dup3, null, n, 0) < 0 {
                quit();
            }
        }
        if null > 2 {
            libc::syscall(libc::SYS_close, null);
        }
        let mut from: libc::c_long = 3;
        for k in kept.iter().filter(|&&k| k >= 3) {
            if libc::c_long::from(*k) > from {
                libc::syscall(libc::SYS_close_range, from, k - 1, 0);
            }
            from = libc::c_long::from(*k) + 1;
        }
        libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0);
        libc::syscall(libc::SYS_setsid);
    }
    let mut b = 0u8;
    // SAFETY: reads at most one byte into `b`.
    if unsafe { libc::syscall(libc::SYS_read, gate, &mut b as *mut u8, 1usize) } != 0 {
        // (signals are blocked: no EINTR; the parent writes nothing)
        quit();
    }
    // SAFETY: the parent is gone: the address space is this process's alone, and the
    // payload its to take.
    let payload = unsafe { Box::from_raw(p) };
    // SAFETY: the gate is this process's; nothing else refers to it.
    drop(unsafe { OwnedFd::from_raw_fd(payload.gate) });
    (payload.f)();
    exit_now(0)
}

/// sched_getcpu(3): the CPU the calling thread runs on now, `None` where the kernel cannot say.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and only reads the thread's own state.
    usize::try_from(unsafe { libc::sched_getcpu() }).ok()
}

/// sched_getaffinity(2) of the calling thread: the CPUs it may run on, `None` on failure.
pub fn affinity() -> Option<std::collections::BTreeSet<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; the kernel writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if r != 0 {
        return None;
    }
    let n = 8 * std::mem::size_of_val(&set);
    // SAFETY: every c is below the set's size in bits.
    Some(
        (0..n)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect(),
    )
}

/// The CPUs of `allowed` (the caller's affinity) but the one the calling thread runs on
/// now: where a thread it starts to work beside it should run. The scheduler places a new
/// thread on its creator's CPU more often than not (19 times in 30 here, the other CPU
/// idle), where it waits for the creator to sleep; at SCHED_FIFO it spreads them itself.
/// (Waking the idle CPU costs about 0.1 ms on this VM: worth it for work that takes longer
/// while the creator goes on.) `None` with one CPU allowed, or where the kernel cannot say.
pub fn cpus_beside(
    allowed: &std::collections::BTreeSet<usize>,
) -> Option<std::collections::BTreeSet<usize>> {
    let cpu = current_cpu()?;
    let mut others = allowed.clone();
    (others.remove(&cpu) && !others.is_empty()).then_some(others)
}

/// sched_setaffinity(2): let process `pid` (0: the calling thread) run on `cpus` only.
pub fn set_affinity(pid: i32, cpus: &std::collections::BTreeSet<usize>) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    cvt(r.into()).map(drop)
}

fn cpu_set(cpus: &std::collections::BTreeSet<usize>) -> libc::cpu_set_t {
    // SAFETY: as in `affinity`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let n = 8 * std::mem::size_of_val(&set);
    for &c in cpus.iter().filter(|&&c| c < n) {
        // SAFETY: c is below the set's size in bits.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// pthread_setaffinity_np(3): let thread `t` of this process run on `cpus` only.
pub fn set_thread_affinity(
    t: libc::pthread_t,
    cpus: &std::collections::BTreeSet<usize>,
) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: `t` is a thread of this process not yet joined (its JoinHandle is borrowed by
    // the caller); `set` is a live cpu_set_t of the size passed.
    let r = unsafe { libc::pthread_setaffinity_np(t, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// prctl(PR_SET_PDEATHSIG, sig).
pub fn set_pdeathsig(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } as _)
        .map(drop)
}

/// prctl(PR_GET_PDEATHSIG): the parent-death signal armed, 0 for none.
pub fn pdeathsig() -> io::Result<libc::c_int> {
    let mut sig: libc::c_int = 0;
    // SAFETY: prctl writes one int through the pointer, which outlives the call.
    cvt(unsafe {
        libc::prctl(
            libc::PR_GET_PDEATHSIG,
            &mut sig as *mut libc::c_int,
            0,
            0,
            0,
        )
    } as _)
    .map(|_| sig)
}

/// prctl(PR_SET_KEEPCAPS, 1): keep the permitted set across a change to a non-zero uid.
pub fn set_keepcaps() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } as _).map(drop)
}

/// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap).
pub fn ambient_raise(cap: u32) -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        )
    } as _)
    .map(drop)
}

/// personality(2): set the execution domain of this process (inherited across exec).
pub fn personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: plain syscall with an integer argument; it returns the previous persona or -1.
    cvt(unsafe { libc::personality(persona) } as _).map(drop)
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as _).map(drop)
}

/// seccomp(SECCOMP_SET_MODE_FILTER): install a BPF program on this thread. Without
/// no_new_privs the kernel requires CAP_SYS_ADMIN in the current user namespace (seccomp(2)),
/// so the container's process calls this before it drops its capabilities.
pub fn seccomp_install(program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, valid and unchanged for the duration of the call; the
    // kernel copies the instructions and keeps no reference to our memory.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    })
    .map(drop)
}

/// prctl(PR_CAPBSET_DROP, cap).
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } as _).map(drop)
}

/// prctl(PR_CAPBSET_READ, cap): whether `cap` is in this thread's bounding set.
pub fn capbset_read(cap: u32) -> io::Result<bool> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
    cvt(r as _).map(|r| r == 1)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2) with 64-bit masks (version 3).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: hdr and data are valid for the kernel to read, with the v3 layout of two CapData.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) })
        .map(drop)
}

/// A mount namespace of this process's own whose mounts propagate nowhere (every mount
/// made private): what it mounts goes away with it and never reaches another namespace.
pub fn private_mount_namespace() -> anyhow::Result<()> {
    use anyhow::Context as _;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("create mount namespace")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("make mounts private")
}

/// pivot_root(2).
pub fn pivot_root(new_root: &str, put_old: &str) -> io::Result<()> {
    let a = CString::new(new_root).map_err(|_| io::ErrorKind::InvalidInput)?;
    let b = CString::new(put_old).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: both are valid NUL-terminated strings for the duration of the call.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) }).map(drop)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on `path`, recursively, setting `set` MOUNT_ATTR_* flags.
pub fn mount_setattr_recursive(path: &str, set: u64) -> io::Result<()> {
    let p = CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: valid string and struct; AT_RECURSIVE is 0x8000.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            0x8000 as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Bring the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: s is a new descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: valid socket and ifreq for SIOCGIFFLAGS / SIOCSIFFLAGS.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// ioctl(TIOCSCTTY): make `fd` the controlling terminal of this session.
pub fn set_controlling_tty(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: a borrowed (open) descriptor and integer arguments only.
    cvt(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSCTTY, 0) } as _).map(drop)
}

/// Read the window size of terminal `fd`.
pub fn get_winsize(fd: impl AsFd) -> Option<libc::winsize> {
    // SAFETY: winsize is plain old data, and the kernel fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: a borrowed descriptor and a valid pointer to a winsize.
    (unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// Set the window size of terminal `fd`.
pub fn set_winsize(fd: impl AsFd, ws: &libc::winsize) {
    // SAFETY: a borrowed descriptor and a valid pointer to a winsize the kernel only reads.
    unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, ws) };
}

/// Whether `fd` is a terminal.
pub fn isatty(fd: impl AsFd) -> bool {
    // SAFETY: a borrowed descriptor only.
    unsafe { libc::isatty(fd.as_fd().as_raw_fd()) == 1 }
}

/// execve(2) of an absolute path; returns only on failure.
pub fn execve(path: &CString, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// Restore the default disposition of every catchable signal and an empty signal mask, as a
/// freshly exec'd container process expects. `ignored`: the signals this process ignores
/// ([`status_masks`]), the only dispositions an execve keeps (a caught signal's handler
/// goes with the old image); `None` resets all of them.
pub fn reset_signals(ignored: Option<u64>) {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        if ignored.is_some_and(|m| m & (1 << (sig - 1)) == 0) {
            continue;
        }
        // The system call itself: glibc's signal() and sigaction() refuse 32 and 33, its own
        // (EINVAL), which a caller may leave ignored all the same (a test harness does).
        // The kernel's struct sigaction on x86_64 and aarch64: handler, flags, restorer, mask.
        let dfl: [libc::c_ulong; 4] = [libc::SIG_DFL as libc::c_ulong, 0, 0, 0];
        // SAFETY: a valid kernel sigaction for SIG_DFL, no old action asked for, the kernel's
        // sigset size; errors for numbers it does not know are ignored.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                8usize,
            )
        };
    }
    // SAFETY: an empty set is valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// This process's ignored signals (`SigIgn`, bit n-1 for signal n) and capability bounding
/// set (`CapBnd`), from one read of /proc/self/status instead of a system call per signal
/// and per capability; `None` without /proc.
pub fn status_masks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some((field("SigIgn:")?, field("CapBnd:")?))
}

/// SIGINT, SIGTERM and SIGHUP call `handler` (which must be async-signal-safe), without
/// SA_RESTART: a system call the signal interrupts (a read waiting for a registry) fails with
/// EINTR instead of waiting on.
pub fn catch_stop_signals(handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the caller's handler is async-signal-safe (the contract above); the
        // previous disposition is not needed.
        unsafe { sigaction(sig, &act) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// dup2(2): make slot `new` (a number such as stdio's 0-2, not an owned object) a copy of `old`.
pub fn dup2(old: impl AsFd, new: RawFd) -> io::Result<()> {
    dup2_raw(old.as_fd().as_raw_fd(), new)
}

/// Replace this process's stdin, stdout and stderr by /dev/null: a process left behind
/// (a detached exec, the `--rm` deleter, the DNS relay) holds none of its parent's pipes or
/// terminal, whose readers would otherwise wait for it.
pub fn stdio_to_null() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for n in 0..3 {
        dup2(&null, n)?;
    }
    Ok(())
}

/// dup2(2) from a raw descriptor: for the launch plan's stdio, which carries the numbers of
/// files the parent holds open across clone (plain data, built before the fork).
pub fn dup2_raw(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: integer arguments only; replacing fd `new` is the intent, and an `old` that is
    // not open fails with EBADF.
    cvt(unsafe { libc::dup2(old, new) } as _).map(drop)
}

/// fchown(2).
pub fn fchown(fd: impl AsFd, uid: u32, gid: Option<u32>) -> io::Result<()> {
    // SAFETY: a borrowed descriptor and integers; -1 (as u32::MAX) leaves the group unchanged.
    cvt(unsafe { libc::fchown(fd.as_fd().as_raw_fd(), uid, gid.unwrap_or(u32::MAX)) } as _)
        .map(drop)
}

/// Mark every descriptor from `first` up close-on-exec, so nothing rbox inherited (a caller's
/// pipe, a test harness's socket) leaks into the container.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: integer arguments only; CLOSE_RANGE_CLOEXEC (4) closes nothing now.
    cvt(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 4 as libc::c_uint) })
        .map(drop)
}

/// pidfd_open(2): a descriptor that becomes readable when `pid` exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) })?;
    // SAFETY: the kernel returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2): signal the process `pidfd` refers to, never another that took its pid.
pub fn pidfd_send_signal(pidfd: impl AsFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor, an integer signal, no siginfo, no flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    })
    .map(drop)
}

/// kill(2) with any signal number: nix's `Signal` has no real-time signals (SIGRTMIN+3 is
/// systemd's halt, the stop signal of a container in systemd mode).
pub fn kill(pid: i32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// The real-time signals, SIGRTMIN to SIGRTMAX as the C library reserves none of them.
pub fn realtime_signals() -> std::ops::RangeInclusive<libc::c_int> {
    libc::SIGRTMIN()..=libc::SIGRTMAX()
}

/// `set` with every real-time signal added (nix's `SigSet::add` takes a `Signal` only).
pub fn with_realtime(set: nix::sys::signal::SigSet) -> nix::sys::signal::SigSet {
    let mut raw: libc::sigset_t = *set.as_ref();
    for sig in realtime_signals() {
        // SAFETY: a valid sigset_t and a valid signal number.
        unsafe { libc::sigaddset(&mut raw, sig) };
    }
    // SAFETY: `raw` is a valid signal set, built from one by sigaddset.
    unsafe { nix::sys::signal::SigSet::from_sigset_t_unchecked(raw) }
}

/// sigwait(3) for one of the blocked signals of `set`, real-time ones included (nix's
/// `SigSet::wait` fails on those): its number.
pub fn sigwait(set: &nix::sys::signal::SigSet) -> io::Result<libc::c_int> {
    let mut sig: libc::c_int = 0;
    // SAFETY: a valid set and a pointer to an int we own.
    match unsafe { libc::sigwait(set.as_ref(), &mut sig) } {
        0 => Ok(sig),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// setns(2) into the namespace `fd` refers to.
pub fn setns(fd: impl AsFd, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor and an integer flag.
    let r = cvt(unsafe { libc::setns(fd.as_fd().as_raw_fd(), nstype) } as _).map(drop);
    if nstype == 0 || nstype & libc::CLONE_NEWUSER != 0 {
        rbox_storage::id_maps_changed();
    }
    r
}

/// prctl(PR_SET_NAME): the process name ps shows.
pub fn set_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: a valid NUL-terminated string of at most 16 bytes is read.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

/// Block until `path` changes links or is replaced (inotify IN_ATTRIB | IN_DELETE_SELF |
/// IN_MOVE_SELF). Returns false at once if it cannot watch it.
pub fn wait_path_change(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let Some(fd) = inotify_init(libc::IN_CLOEXEC) else {
        return false;
    };
    let mask = libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
    // SAFETY: a descriptor we own and a valid NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), p.as_ptr(), mask) } < 0 {
        return false;
    }
    let mut buf = [0u8; 512];
    // SAFETY: a descriptor we own and a buffer valid for its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    n > 0
}

/// inotify_init1(2) with `flags`, as an owned descriptor.
fn inotify_init(flags: libc::c_int) -> Option<OwnedFd> {
    // SAFETY: integer argument only.
    let fd = unsafe { libc::inotify_init1(flags) };
    // SAFETY: the kernel returned a new descriptor that we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether descriptor `fd` is open in this process (fcntl F_GETFD).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Close every descriptor from `first` up (close_range).
pub fn close_from(first: u32) {
    // SAFETY: integer arguments only; the caller owns no descriptor it still needs there.
    unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0 as libc::c_uint) };
}

/// Block until `path` is written to (inotify IN_MODIFY) or `timeout` passes.
pub fn wait_modified(path: &std::path::Path, timeout: std::time::Duration) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let Some(fd) = inotify_init(libc::IN_CLOEXEC | libc::IN_NONBLOCK) else {
        return;
    };
    // SAFETY: a descriptor we own and a valid NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), p.as_ptr(), libc::IN_MODIFY) } >= 0 {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, on a descriptor we own.
        unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            )
        };
    }
}

extern "C" {
    /// glibc's pointer to argv[0], the start of the argument area /proc/PID/cmdline shows.
    static program_invocation_name: *mut libc::c_char;
}

/// Replace what /proc/self/cmdline shows with `title` (setproctitle's trick: overwrite the
/// argument area in place), so a forked helper (the --init reaper inside a container, the
/// pause process) does not show rbox's host command line with its paths.
pub fn set_cmdline(title: &str) {
    // The kernel's argument area is argv[0]..=argv[n], each NUL-terminated and contiguous.
    let total: usize = std::env::args_os().map(|a| a.len() + 1).sum();
    if total == 0 {
        return;
    }
    let n = title.len().min(total - 1);
    // SAFETY: program_invocation_name points at argv[0] in the argument area the kernel set up
    // at exec, which holds `total` bytes; we write within it. Rust's std::env::args copied the
    // arguments at startup and never reads this memory again.
    unsafe {
        let p = program_invocation_name as *mut u8;
        if p.is_null() {
            return;
        }
        std::ptr::write_bytes(p, 0, total);
        std::ptr::copy_nonoverlapping(title.as_ptr(), p, n);
    }
}

/// Own a descriptor that recvmsg(SCM_RIGHTS) just installed in this process.
pub fn owned_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed `fd` for us with the message; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// ioctl(NS_GET_NSTYPE): the CLONE_NEW* flag of the namespace `fd` refers to (ENOTTY when it
/// is not a namespace file).
pub fn ns_type(fd: impl AsFd) -> io::Result<libc::c_int> {
    // _IO(0xb7, 0x3), linux/nsfs.h
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: a valid descriptor; this request takes no argument.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), NS_GET_NSTYPE as _) };
    cvt(r as _).map(|t| t as libc::c_int)
}

/// ioctl(NS_GET_USERNS) (`parent` false) or ioctl(NS_GET_PARENT) (`parent` true): the user
/// namespace that owns namespace `fd`, or the parent of user namespace `fd`.
pub fn ns_owner(fd: impl AsFd, parent: bool) -> io::Result<OwnedFd> {
    // _IO(0xb7, 0x1) and _IO(0xb7, 0x2), linux/nsfs.h
    let req: libc::c_ulong = if parent { 0xb702 } else { 0xb701 };
    // SAFETY: a valid descriptor; these requests take no argument and return a new one.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), req as _) };
    // SAFETY: on success the kernel installed a new descriptor that nothing else owns.
    cvt(r as _).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Let the kernel take back what starting a container touched and waiting for it does not
/// use: the heap pages malloc holds free, the pages of rbox and its libraries (code, read-only
/// data, unwind tables) this process has mapped, and the main thread's stack below the current
/// frame. A long-lived monitor then holds only what its loop touches again, faulted back in
/// from the page cache (or, for the stack, zero pages) as it needs it. See
/// [`pages_to_release`] for why nothing is lost.
pub fn release_startup_pages() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    // an address in this frame: what lies below it (past a margin for the calls made from
    // here) is stack no frame uses
    let here = 0u8;
    let sp = std::hint::black_box(&here) as *const u8 as usize;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    for r in pages_to_release(&smaps, sp, page) {
        // SAFETY: `pages_to_release` names only (a) private read-only mappings of the program
        // and its libraries whose pages all still hold the file's bytes (no copy-on-write page,
        // so not the relocated RELRO data): MADV_DONTNEED drops their page-table entries and
        // a later access faults the same bytes back in from the file; and (b) the part of the
        // main thread's stack more than STACK_MARGIN below this frame, which no live frame
        // uses: a later access finds zero pages, as a fresh stack has.
        unsafe {
            libc::madvise(r.start as *mut libc::c_void, r.len(), libc::MADV_DONTNEED);
        }
    }
}

/// How much of the stack below the caller's frame [`release_startup_pages`] keeps: room for
/// the calls it makes itself (reading smaps, madvise), which live there meanwhile.
const STACK_MARGIN: usize = 64 << 10;

/// The address ranges of this process whose pages can be dropped without losing data, from
/// the text of /proc/self/smaps, an address `sp` in the caller's stack frame and the page size:
///
/// - the private, non-writable mappings of every file that has code mapped (the program and
///   its shared libraries: text, rodata, eh_frame), unless one of their pages is anonymous
///   (a copy-on-write page: the RELRO segment the dynamic linker relocated and then made
///   read-only holds pointers the file does not have);
/// - the main thread's stack (`[stack]`) from its lowest mapped page up to `sp` less
///   [`STACK_MARGIN`], page-aligned.
pub fn pages_to_release(smaps: &str, sp: usize, page: usize) -> Vec<std::ops::Range<usize>> {
    struct Mapping<'a> {
        range: std::ops::Range<usize>,
        perms: &'a str,
        path: &'a str,
        rss: u64,
        anonymous: u64,
    }
    let mut maps: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some(key) = first.strip_suffix(':') {
            // a field of the last mapping: "Rss:  12 kB"
            let (Some(m), Some(n)) = (maps.last_mut(), f.next().and_then(|n| n.parse().ok()))
            else {
                continue;
            };
            match key {
                "Rss" => m.rss = n,
                "Anonymous" => m.anonymous = n,
                _ => {}
            }
            continue;
        }
        // a mapping: "start-end perms offset dev inode [path]"
        let Some((a, b)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        let perms = f.next().unwrap_or("");
        let path = f.nth(3).unwrap_or("");
        maps.push(Mapping {
            range: start..end,
            perms,
            path,
            rss: 0,
            // unknown until its field is read: counted as anonymous, so never released
            anonymous: u64::MAX,
        });
    }
    let objects: std::collections::HashSet<&str> = maps
        .iter()
        .filter(|m| m.path.starts_with('/') && m.perms.as_bytes().get(2) == Some(&b'x'))
        .map(|m| m.path)
        .collect();
    let mut out = Vec::new();
    for m in &maps {
        let p = m.perms.as_bytes();
        let read_only_private = p.len() == 4 && p[1] == b'-' && p[3] == b'p';
        if read_only_private && objects.contains(m.path) && m.anonymous == 0 && m.rss > 0 {
            out.push(m.range.clone());
        }
        if m.path == "[stack]" {
            let top = sp.saturating_sub(STACK_MARGIN) & !(page - 1);
            if m.range.contains(&sp) && top > m.range.start {
                out.push(m.range.start..top);
            }
        }
    }
    out
}

/// What rbox keeps of std's process start-up, which its C `main` skips (see main.rs): SIGPIPE
/// ignored (a closed pipe is an error to handle, see `exit::quiet_on_closed_stdout`; children
/// started through `std::process::Command` get the default back, as before), and stdio's
/// descriptors 0-2 opened on /dev/null where the caller left them closed, so that no file
/// rbox opens takes one of their numbers and receives its output.
#[cfg_attr(test, allow(dead_code))]
pub fn start_process() {
    // SAFETY: signal() with SIG_IGN, poll() on an array that lives across the call, and
    // open() of a constant C string: no memory of rbox's is handed to the kernel to keep.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        if libc::poll(fds.as_mut_ptr(), 3, 0) > 0 {
            for f in fds.iter().filter(|f| f.revents & libc::POLLNVAL != 0) {
                // the lowest free number: this one, as the lower ones are open by now
                if libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != f.fd {
                    libc::abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// smaps of a process: the program (its text, rodata, relocated RELRO, data), a data
    /// file mapped read-only, libc's text, the heap, the stack, the vdso
    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:01 1234 /usr/bin/rbox
Rss:                 812 kB
Anonymous:             0 kB
VmFlags: rd mr mw me
55d0a0100000-55d0a0200000 r-xp 00100000 fe:01 1234 /usr/bin/rbox
Rss:                1896 kB
Anonymous:             0 kB
55d0a0200000-55d0a0280000 r--p 00200000 fe:01 1234 /usr/bin/rbox
Rss:                 448 kB
Anonymous:           448 kB
55d0a0280000-55d0a0290000 rw-p 00280000 fe:01 1234 /usr/bin/rbox
Rss:                  12 kB
Anonymous:            12 kB
55d0a0290000-55d0a02a0000 r--p 00000000 fe:01 99 /var/lib/data.bin
Rss:                  64 kB
Anonymous:             0 kB
55d0a02a0000-55d0a02b0000 r--p 00000000 fe:01 1234 /usr/bin/rbox
Rss:                   0 kB
Anonymous:             0 kB
55d0b0000000-55d0b0100000 rw-p 00000000 00:00 0 [heap]
Rss:                 364 kB
Anonymous:           364 kB
7f0000000000-7f0000100000 r-xp 00028000 fe:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 640 kB
Anonymous:             0 kB
7f0000100000-7f0000110000 r--p 00000000 fe:01 78 /usr/lib/x86_64-linux-gnu/libm.so.6
Rss:                   4 kB
Anonymous:             4 kB
7ffc00000000-7ffc00041000 rw-p 00000000 00:00 0 [stack]
Rss:                 260 kB
Anonymous:           260 kB
7ffc00100000-7ffc00102000 r-xp 00000000 00:00 0 [vdso]
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn after_exit_runs_once_its_process_is_gone_and_holds_none_of_its_pipes() {
        after_exit_case(false);
    }

    /// With stdio closed the gate's pipe would take its numbers: kept above them, it still
    /// holds the child until the process is gone.
    #[test]
    fn after_exit_waits_as_well_in_a_process_without_stdio() {
        after_exit_case(true);
    }

    fn after_exit_case(no_stdio: bool) {
        use std::io::Read;
        let d = tempfile::tempdir().unwrap();
        let mark = d.path().join("mark");
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        // in a forked child: single-threaded, and its exit is the go
        match fork().unwrap() {
            ForkResult::Child => {
                drop(r);
                if no_stdio {
                    for fd in 0..3 {
                        // SAFETY: this forked child's own stdio, used by nothing after this
                        unsafe { libc::close(fd) };
                    }
                }
                let m = mark.clone();
                let started = after_exit(
                    Box::new(move || {
                        // long enough for the test to see the pipe end first
                        std::thread::sleep(std::time::Duration::from_millis(500));
                        let _ = std::fs::write(&m, std::process::id().to_string());
                    }),
                    &[],
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
                // nothing ran while this process lives
                let early = mark.exists();
                drop(w);
                exit_now(if started.is_ok() && !early { 0 } else { 1 });
            }
            ForkResult::Parent { child } => {
                drop(w);
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
                // end-of-file now: the child left behind holds no copy of the write end
                let mut rest = Vec::new();
                std::fs::File::from(r).read_to_end(&mut rest).unwrap();
                assert!(
                    !mark.exists(),
                    "the pipe's end-of-file came before the work"
                );
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !mark.exists() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let pid: i32 = std::fs::read_to_string(&mark).unwrap().parse().unwrap();
                assert_ne!(pid, child.as_raw(), "run by a process of its own");
            }
        }
    }

    #[test]
    fn releases_file_pages_and_dead_stack_only() {
        let sp = 0x7ffc_0003_f123;
        let got = pages_to_release(SMAPS, sp, 4096);
        assert_eq!(
            got,
            vec![
                // rodata and text of the program, libc's text
                0x55d0_a000_0000..0x55d0_a010_0000,
                0x55d0_a010_0000..0x55d0_a020_0000,
                0x7f00_0000_0000..0x7f00_0010_0000,
                // the stack up to 64 KiB below sp, page-aligned
                0x7ffc_0000_0000..0x7ffc_0002_f000,
            ]
        );
        // sp outside the main stack (another thread's): none of it
        let got = pages_to_release(SMAPS, 0x7f00_0020_0000, 4096);
        assert!(got.iter().all(|r| r.start != 0x7ffc_0000_0000), "{got:x?}");
        // a mapping whose Anonymous field is missing counts as holding private pages
        let cut = SMAPS.replace("Anonymous:             0 kB\nVmFlags", "VmFlags");
        let got = pages_to_release(&cut, sp, 4096);
        assert!(
            !got.contains(&(0x55d0_a000_0000..0x55d0_a010_0000)),
            "{got:x?}"
        );
    }

    #[test]
    fn release_startup_pages_keeps_the_process_working() {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let ranges = pages_to_release(&smaps, 0, 4096);
        assert!(!ranges.is_empty(), "the test binary's text is releasable");
        // the test runs its code and reads its data again after the drop
        let before: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        release_startup_pages();
        let after: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        assert_eq!(before, after);
        assert!(std::fs::read_to_string("/proc/self/smaps").is_ok());
    }
}
