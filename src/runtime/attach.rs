//! The parent side while a container runs: forward signals to it, relay the terminal (raw mode
//! on the caller's terminal, window size, bytes both ways), and collect its exit status.
//! Single-threaded: one poll loop over a signalfd, the pty master (or the output pipes of a
//! container without a terminal) and stdin; an attached container's output is also appended
//! to its log.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::container::forwarded;
use super::{sys, terminal};

/// Restores the caller's terminal mode when dropped, even on error paths.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, t);
        }
    }
}

pub(crate) fn write_all(fd: BorrowedFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Poll `fds` until one is ready (again after EINTR) or `timeout` passes; what each
/// reported, in their order (nothing, after the timeout).
pub(crate) fn poll_events(fds: &mut [PollFd], timeout: PollTimeout) -> Result<Vec<PollFlags>> {
    loop {
        match poll(fds, timeout) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
    }
    Ok(fds
        .iter()
        .map(|f| f.revents().unwrap_or(PollFlags::empty()))
        .collect())
}

/// Where an attached container's output goes besides the caller: without a terminal its
/// stdout and stderr come through these pipes (read ends), and everything relayed is appended
/// to `log` (the container's `ctr.log`, plain bytes as the detached monitor writes it).
#[derive(Default)]
pub struct Output<'a> {
    pub pipes: Option<[OwnedFd; 2]>,
    pub log: Option<&'a mut super::logfile::Writer>,
    /// the output goes to the log only (a detached container: nobody is attached)
    pub log_only: bool,
    /// [stdout, stderr] left out of what the caller gets (`run -a`): only logged
    pub hidden: [bool; 2],
    /// a detached container's attach socket: its clients get the output too, and their
    /// input goes to the container
    pub console: Option<&'a mut super::console::Console>,
    /// the detach keys, typed on the caller's terminal (`exec -it --detach-keys`): the relay
    /// ends and the process goes on
    pub keys: Option<super::front::Keys>,
}

/// Wait for the container's process, forwarding signals and relaying the terminal. Signals in
/// [`forwarded`] are already blocked (by `container::start`). Returns the wait status.
pub fn wait(pid: Pid, pty: Option<OwnedFd>, interactive: bool) -> Result<WaitStatus> {
    relay(pid, pty, interactive, Output::default())
}

/// Write `data` (from the container's `stream`) to the caller's `fd` and append it to the
/// log. A log that cannot be written (a full disk) stops being written; the caller still gets
/// everything.
fn pass_on(
    fd: Option<BorrowedFd>,
    log: &mut Option<&mut super::logfile::Writer>,
    console: &mut Option<&mut super::console::Console>,
    stream: super::logfile::Stream,
    data: &[u8],
) -> bool {
    if let Some(c) = console {
        let tag = match stream {
            super::logfile::Stream::Stdout => super::console::OUT,
            super::logfile::Stream::Stderr => super::console::ERR,
        };
        c.broadcast(tag, data);
    }
    if let Some(w) = log {
        if let Err(e) = w.write(stream, data) {
            tracing::warn!("write the container's log: {e}");
            *log = None;
        }
    }
    match fd {
        Some(fd) => write_all(fd, data),
        None => true,
    }
}

/// [`wait`], also relaying `out`'s pipes and writing the log. With `out.keys`, returns
/// `StillAlive` once the caller typed them: the process goes on, its terminal no longer
/// relayed (the caller keeps the master open for it).
pub fn relay(pid: Pid, pty: Option<OwnedFd>, interactive: bool, out: Output) -> Result<WaitStatus> {
    use super::logfile::Stream;
    let Output {
        pipes,
        mut log,
        log_only,
        hidden,
        mut console,
        mut keys,
    } = out;
    // whether the caller gets the container's stdout (0) or stderr (1)
    let shown = |i: usize| !log_only && !hidden[i];
    // [stdout, stderr] of the container, each open until its end-of-file
    let mut pipes_open = [pipes.is_some(); 2];
    let stderr = std::io::stderr();
    let sfd =
        SignalFd::with_flags(&forwarded(), SfdFlags::SFD_CLOEXEC).context("create signalfd")?;
    let _raw = match &pty {
        Some(m) if sys::isatty(sys::stdio(0)) && interactive => {
            terminal::copy_caller_winsize(m);
            Some(RawMode::enter())
        }
        Some(m) => {
            terminal::copy_caller_winsize(m);
            None
        }
        None => None,
    };
    let mut stdin_open = pty.is_some() && interactive;
    let mut master_open = pty.is_some();
    let stdout = std::io::stdout();
    let stdin = std::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    // The child may have exited before the signalfd existed: its SIGCHLD is pending, not lost.
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let (true, Some(m)) = (master_open, &pty) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let pipe_base = fds.len();
        if let Some(p) = &pipes {
            for (i, fd) in p.iter().enumerate() {
                if pipes_open[i] {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
            }
        }
        let console_base = fds.len();
        if let Some(c) = &console {
            for (fd, events) in c.fds(pty.as_ref()) {
                fds.push(PollFd::new(fd, events));
            }
        }
        let ready: Vec<bool> = poll_events(&mut fds, PollTimeout::NONE)?
            .iter()
            .map(|r| !r.is_empty())
            .collect();
        drop(fds);
        if let Some(c) = &mut console {
            c.ready(&ready[console_base..], pty.as_ref());
        }
        let mut idx = 1;
        if master_open {
            if ready[idx] {
                let m = pty.as_ref().expect("master");
                match nix::unistd::read(m.as_fd(), &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                    Ok(n) => {
                        pass_on(
                            shown(0).then(|| stdout.as_fd()),
                            &mut log,
                            &mut console,
                            Stream::Stdout,
                            &buf[..n],
                        );
                    }
                    Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                    Err(_) => master_open = false,
                }
            }
            idx += 1;
        }
        if stdin_open && ready[idx] {
            let m = pty.as_ref().expect("master");
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) => {
                    // EOF on a pipe: pass it on as the terminal's end-of-file character
                    write_all(m.as_fd(), &[4]);
                    stdin_open = false;
                }
                Ok(n) => match &mut keys {
                    Some(k) => {
                        let (typed, detach) = k.feed(&buf[..n]);
                        write_all(m.as_fd(), &typed);
                        if detach {
                            return Ok(WaitStatus::StillAlive);
                        }
                    }
                    None => {
                        write_all(m.as_fd(), &buf[..n]);
                    }
                },
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
        if let Some(p) = &pipes {
            let mut slot = pipe_base;
            for (i, fd) in p.iter().enumerate() {
                if !pipes_open[i] {
                    continue;
                }
                if ready[slot] {
                    let (to, stream) = if i == 0 {
                        (stdout.as_fd(), Stream::Stdout)
                    } else {
                        (stderr.as_fd(), Stream::Stderr)
                    };
                    let to = shown(i).then_some(to);
                    match nix::unistd::read(fd.as_fd(), &mut buf) {
                        Ok(0) => pipes_open[i] = false,
                        Ok(n) => {
                            pass_on(to, &mut log, &mut console, stream, &buf[..n]);
                        }
                        Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                        Err(_) => pipes_open[i] = false,
                    }
                }
                slot += 1;
            }
        }
        if ready[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                match Signal::try_from(sig) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => {
                        if let Some(m) = &pty {
                            terminal::copy_caller_winsize(m);
                        }
                    }
                    // real-time ones too, which `Signal` does not name
                    _ => {
                        let _ = sys::kill(pid.as_raw(), sig);
                    }
                }
            }
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(st @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    // drain what the container wrote last
                    if let Some(m) = &pty {
                        let _ = nix::fcntl::fcntl(
                            m,
                            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                        );
                        while let Ok(n) = nix::unistd::read(m.as_fd(), &mut buf) {
                            let to = shown(0).then(|| stdout.as_fd());
                            if n == 0
                                || !pass_on(to, &mut log, &mut console, Stream::Stdout, &buf[..n])
                            {
                                break;
                            }
                        }
                    }
                    // The pipes: until end-of-file, since the container's pid namespace
                    // ends with its init and takes every writer with it (a process that
                    // escaped it with a copy, e.g. through a bind-mounted socket, would be
                    // waited for: read without blocking then).
                    if let Some(p) = &pipes {
                        for (i, fd) in p.iter().enumerate() {
                            let (to, stream) = if i == 0 {
                                (stdout.as_fd(), Stream::Stdout)
                            } else {
                                (stderr.as_fd(), Stream::Stderr)
                            };
                            let to = shown(i).then_some(to);
                            let _ = nix::fcntl::fcntl(
                                fd,
                                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                            );
                            if !pipes_open[i] {
                                continue;
                            }
                            while let Ok(n @ 1..) = nix::unistd::read(fd.as_fd(), &mut buf) {
                                pass_on(to, &mut log, &mut console, stream, &buf[..n]);
                            }
                        }
                    }
                    return Ok(st);
                }
                Ok(_) => {}
                Err(e) => return Err(e).context("wait for container"),
            }
        }
    }
}
