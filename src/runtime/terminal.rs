//! The container's terminal, for `run -t` and `exec -t`: a pty opened from the container's own
//! devpts (by the container's init for `run`, whose master goes back to rbox on the sync channel
//! as crun's console socket does; by the exec process once it has joined the container's mount
//! namespace), sized like the caller's terminal; and the command's side of it: a new session,
//! the pty as controlling terminal on stdin, stdout and stderr, or /dev/null as stdin when
//! nothing is attached. The relay between the caller's terminal and the master is `attach`.

use std::fmt;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::process::Failure;
use super::sys;

/// Both ends of a new pty.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// A step of opening a pty that failed, and why.
#[derive(Debug)]
pub struct Error {
    step: String,
    errno: Errno,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.errno)
    }
}

impl std::error::Error for Error {}

fn step(what: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let step = what.into();
    move |errno| Error { step, errno }
}

/// The caller's window size: its stdin's terminal, else its stdout's.
pub fn caller_winsize() -> Option<libc::winsize> {
    sys::get_winsize(sys::stdio(0)).or_else(|| sys::get_winsize(sys::stdio(1)))
}

/// Give the terminal `fd` the caller's window size, if the caller has a terminal.
pub fn copy_caller_winsize(fd: &OwnedFd) {
    if let Some(ws) = caller_winsize() {
        sys::set_winsize(fd, &ws);
    }
}

/// Open a new pty from /dev/ptmx as this process sees it (in the container: its own devpts),
/// both ends close-on-exec and neither this process's controlling terminal. With `winsize`,
/// the terminal has that size before the command can ask for it.
pub fn open(winsize: Option<&libc::winsize>) -> Result<Pty, Error> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(step("open /dev/ptmx in the container"))?;
    nix::pty::grantpt(&master).map_err(step("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(step("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(step("ptsname"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(step(format!("open `{name}`")))?;
    let master: OwnedFd = master.into();
    // TIOCSWINSZ on the master sizes the pair (the kernel applies it to the slave side).
    if let Some(ws) = winsize {
        sys::set_winsize(&master, ws);
    }
    Ok(Pty { master, slave })
}

/// Make this process's stdio the command's: a new session; with `slave`, that terminal as
/// the controlling terminal on stdin, stdout and stderr; without, /dev/null as stdin when
/// `null_stdin` (nothing attached, and no log file in its place).
pub fn attach_stdio(slave: Option<&OwnedFd>, null_stdin: bool) -> Result<(), Failure> {
    nix::unistd::setsid().map_err(|e| Failure::setup(format!("create session: {e}")))?;
    if let Some(s) = slave {
        sys::set_controlling_tty(s)
            .map_err(|e| Failure::setup(format!("set controlling terminal: {e}")))?;
        for i in 0..3 {
            sys::dup2(s, i).map_err(|e| Failure::setup(format!("set up terminal: {e}")))?;
        }
    } else if null_stdin {
        let null = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, Mode::empty())
            .map_err(|e| Failure::setup(format!("open /dev/null: {e}")))?;
        sys::dup2(&null, 0).map_err(|e| Failure::setup(format!("set up stdin: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_step() {
        let e = step("open `/dev/pts/3`")(Errno::EACCES);
        assert_eq!(
            e.to_string(),
            "open `/dev/pts/3`: EACCES: Permission denied"
        );
        // the child reports it as a setup failure with the same text
        let f = Failure::from(e);
        assert_eq!(f.msg, "open `/dev/pts/3`: EACCES: Permission denied");
        assert_eq!(f.code, crate::exit::FAILED);
    }

    #[test]
    fn a_new_pty_has_the_size_asked_for() {
        if !std::path::Path::new("/dev/ptmx").exists() {
            eprintln!("skipped: no /dev/ptmx on this host");
            return;
        }
        let ws = libc::winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = open(Some(&ws)).expect("open a pty");
        let got = sys::get_winsize(&pty.slave).expect("slave is a terminal");
        assert_eq!((got.ws_row, got.ws_col), (33, 101));
        for fd in [&pty.master, &pty.slave] {
            let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(fl & libc::FD_CLOEXEC, 0, "close-on-exec");
        }
    }
}
