//! The front end of an attached `rbox run` that can detach (`-i` with detach keys) or that
//! must not pass signals on (`--sig-proxy=false`): the container runs under the same detached
//! monitor as `run -d`'s, and this process is that monitor's first attach client, as
//! `rbox attach` is a later one. Detaching (Ctrl-P Ctrl-Q, `--detach-keys`) then only ends
//! this process: the container goes on as a detached one, with its monitor holding its
//! terminal, log, network helper, published ports, exit record and `--rm`.
//!
//! Why not fork a monitor at detach time: the container's init is a child of the process that
//! started it, and only its parent can collect its exit status; a process forked later cannot
//! become its parent, and the caller's shell waits for the pid it started. So the process that
//! may leave has to be the one that is not the parent from the start. The cost: the fork of
//! the monitor, its log and attach socket, and one more hop for the output. Measured with
//! `rbox run -it --rm --network=none busybox true` on a pty (debug build, 2 cores at load
//! 14, medians of 15 and 25 runs interleaved): 86 vs 80 ms and 74 vs 69 ms in-process, i.e.
//! +4 to 7 ms. Runs without `-i` (scripts) keep the in-process monitor.
//!
//! The client's socket is connected before the container starts (a socket pair, the
//! monitor's first client), so nothing the container writes first is lost; the monitor
//! waits for this client rather than drop it when it is slow (the caller's own terminal or
//! pipe paces the container, as in the in-process monitor). The monitor sends the exit code
//! in an `EXIT` frame once the exit is recorded (and `--rm` done), so this process returns
//! what `rbox ps -a` already shows.
//!
//! Podman's rules, observed with Podman 4.3.1: `--detach-keys` takes single characters and
//! `ctrl-<value>` (a-z, @, [, \, ], ^, _) separated by commas, "" disables detaching, and
//! anything else is refused as "invalid detach keys: Unknown character: 'KEY'". Detaching
//! prints nothing and exits 0. The keys count only as whole reads (see [`Keys`]), so piped or
//! pasted data never detaches; piped stdin (not a terminal) does not come through here at all
//! but stays the container's own (`create::run_attached`), unless `--sig-proxy=false`: then
//! the keys are looked for there too, and the container's stdin ends on a detach (it reads
//! end-of-file, as Podman's does). Without `--sig-proxy` the signals rbox gets keep their
//! default action: `rbox run` ends, the container goes on.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::console::{frame, take_frames, CLOSE_STDIN, ERR, EXIT, IN, OUT, RESIZE};
use crate::context::Context;
use crate::state::{self, ContainerRecord};

/// Podman's default detach keys.
pub const DEFAULT_KEYS: &str = "ctrl-p,ctrl-q";

/// `--detach-keys` as bytes (`ctrl-p,ctrl-q` -> 16, 17); empty: detaching is off.
pub fn parse_keys(s: &str) -> Result<Vec<u8>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|k| {
            let b = k.as_bytes();
            match b {
                [c] => Ok(*c),
                [b'c', b't', b'r', b'l', b'-', c @ (b'a'..=b'z' | b'@' | b'[' | b'\\' | b']' | b'^' | b'_')] => {
                    Ok(c.to_ascii_uppercase() - b'@')
                }
                // Podman's text
                _ => Err(anyhow!("invalid detach keys: Unknown character: '{k}'")),
            }
        })
        .collect()
}

/// The detach keys: `given` (`--detach-keys`), else containers.conf's `detach_keys`, else
/// Podman's default.
pub fn keys_or_conf(given: Option<&str>, conf: Option<&str>) -> Result<Vec<u8>> {
    parse_keys(given.or(conf).unwrap_or(DEFAULT_KEYS))
}

/// Finds the detach keys in what is typed. As Podman, the keys count only as the whole of
/// what one read brought (Podman: one key per read), so that data piped or pasted, which
/// comes in larger reads, never detaches however many Ctrl-P Ctrl-Q pairs it holds; a read of
/// the keys' first part is held back and passed on when the next read does not finish them.
#[derive(Debug)]
pub struct Keys {
    keys: Vec<u8>,
    matched: usize,
}

impl Keys {
    pub fn new(keys: Vec<u8>) -> Keys {
        Keys { keys, matched: 0 }
    }

    /// The bytes of one read (`input`) to pass on to the container, and whether they
    /// finished the keys.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let rest = &self.keys[self.matched.min(self.keys.len())..];
        if !input.is_empty() && rest.starts_with(input) {
            self.matched += input.len();
            if self.matched == self.keys.len() {
                self.matched = 0;
                return (Vec::new(), true);
            }
            return (Vec::new(), false);
        }
        let mut out = self.keys[..self.matched].to_vec();
        self.matched = 0;
        // a read that is the keys' start, or all of them, after a read that broke a match
        if !input.is_empty() && self.keys.starts_with(input) {
            if input.len() == self.keys.len() {
                return (out, true);
            }
            self.matched = input.len();
            return (out, false);
        }
        out.extend_from_slice(input);
        (out, false)
    }
}

/// What the front end does.
#[derive(Debug, Clone)]
pub struct Options {
    pub keys: Vec<u8>,
    pub sig_proxy: bool,
}

/// Relay the caller's terminal or stdio to the container `rec` through `sock` (the monitor's
/// first client) until it exits (its code) or the detach keys are typed (0).
pub fn run(
    g: &Context,
    rec: &ContainerRecord,
    mut sock: UnixStream,
    o: Options,
) -> Result<ExitCode> {
    let tty = rec.spec.tty;
    let use_stdin = rec.spec.interactive;
    let stdin = std::io::stdin();
    let is_tty = super::sys::isatty(super::sys::stdio(0));
    let _raw = (tty && use_stdin && is_tty).then(super::attach::RawMode::enter);
    let send_size = |sock: &mut UnixStream| {
        if let Some(ws) = super::terminal::caller_winsize() {
            let mut p = ws.ws_row.to_le_bytes().to_vec();
            p.extend_from_slice(&ws.ws_col.to_le_bytes());
            let _ = sock.write_all(&frame(RESIZE, &p));
        }
    };
    if tty {
        send_size(&mut sock);
    }
    // SIGWINCH always (the window size); the others only when they are passed on, else they
    // keep their default action
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGWINCH);
    if o.sig_proxy {
        for s in super::container::forwarded().iter() {
            if s != Signal::SIGCHLD {
                sigs.add(s);
            }
        }
    }
    sigs.thread_block().context("block signals")?;
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC).context("create signalfd")?;
    let mut keys = Keys::new(o.keys);
    let mut stdin_open = use_stdin;
    let mut inbuf = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        let mut fds = vec![
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            let n = match sock.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                break;
            }
            inbuf.extend_from_slice(&buf[..n]);
            for (tag, data) in take_frames(&mut inbuf) {
                match tag {
                    OUT => {
                        let _ = stdout.write_all(&data);
                        let _ = stdout.flush();
                    }
                    ERR => {
                        let _ = stderr.write_all(&data);
                    }
                    EXIT if data.len() == 4 => {
                        let code = i32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
                        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
                    }
                    _ => {}
                }
            }
        }
        if ready[1] {
            if let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) if tty => send_size(&mut sock),
                    Ok(Signal::SIGWINCH) => {}
                    Ok(s) => {
                        let _ = super::signal_container(g, rec, s);
                    }
                    Err(_) => {}
                }
            }
        }
        if stdin_open && ready.get(2).copied().unwrap_or(false) {
            let n = match stdin.lock().read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                stdin_open = false;
                // end-of-file: the terminal's end-of-file character, or the end of the
                // container's stdin pipe
                let f = if tty {
                    frame(IN, &[4])
                } else {
                    frame(CLOSE_STDIN, &[])
                };
                let _ = sock.write_all(&f);
                continue;
            }
            let (out, detached) = keys.feed(&buf[..n]);
            if !out.is_empty() && sock.write_all(&frame(IN, &out)).is_err() {
                stdin_open = false;
            }
            if detached {
                if !tty {
                    let _ = sock.write_all(&frame(CLOSE_STDIN, &[]));
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    drop(_raw);
    // The monitor ended without saying the code (killed): the code it recorded, if any.
    let code = match state::lookup(g, &rec.id) {
        Ok(cur) if !state::is_running(&cur) => cur.state.exit_code.unwrap_or(0),
        Ok(_) | Err(_) => i32::from(crate::exit::FAILED),
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_podman_takes_them() {
        assert_eq!(parse_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(
            parse_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_").unwrap(),
            vec![0, 27, 28, 29, 30, 31]
        );
        assert_eq!(parse_keys("1,~, ").unwrap(), vec![b'1', b'~', b' ']);
        assert!(parse_keys("").unwrap().is_empty());
        for bad in ["foo", "ctrl-1", "ctrl-", "ctrl-P", "ab", ","] {
            assert!(parse_keys(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_keys("ctrl-p,,ctrl-q").unwrap_err().to_string(),
            "invalid detach keys: Unknown character: ''"
        );
        assert_eq!(
            parse_keys("foo").unwrap_err().to_string(),
            "invalid detach keys: Unknown character: 'foo'"
        );
    }

    #[test]
    fn keys_count_as_whole_reads() {
        // typed: one key per read, or both in one read
        let mut k = Keys::new(vec![16, 17]);
        assert_eq!(k.feed(b"ls\n"), (b"ls\n".to_vec(), false));
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(&[17]), (vec![], true));
        assert_eq!(k.feed(&[16, 17]), (vec![], true));
        // within more data (piped, pasted): passed on
        assert_eq!(
            k.feed(&[b'a', 16, 17, b'z']),
            (vec![b'a', 16, 17, b'z'], false)
        );
        assert_eq!(k.feed(&[b'a', 16]), (vec![b'a', 16], false));
        assert_eq!(k.feed(&[17]), (vec![17], false));
        // a held start is passed on when the next read breaks it, and may start again
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(b"x"), (vec![16, b'x'], false));
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(&[16]), (vec![16], false));
        assert_eq!(k.feed(&[17]), (vec![], true));
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(&[16, 17]), (vec![16], true));
        // off: everything passes
        let mut k = Keys::new(vec![]);
        assert_eq!(k.feed(&[16, 17]), (vec![16, 17], false));
        assert_eq!(k.feed(&[16]), (vec![16], false));
    }
}
