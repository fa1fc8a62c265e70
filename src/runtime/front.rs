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
//! prints nothing and exits 0. Each key counts only as a whole read (see [`Keys`]), so piped
//! or pasted data never detaches; piped stdin (not a terminal) comes through here too, where a
//! program that writes the keys one read at a time detaches as on a terminal, and the
//! container's stdin ends on a detach (it reads end-of-file, as Podman's does). The end of
//! the caller's stdin ends the container's (a pipe) or sends the terminal's end-of-file
//! character, for `rbox run` and `rbox attach` alike, as Podman's do. Without `--sig-proxy`
//! the signals rbox gets keep their default action: `rbox run` (or `attach`) ends, the
//! container goes on.
//!
//! `rbox attach` is the same client on a later connection ([`attach`]): one loop serves both.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout};
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

/// [`keys_or_conf`] with containers.conf read only when `given` is `None` (`attach`, `exec`).
pub fn keys(given: Option<&str>) -> Result<Vec<u8>> {
    let conf = match given {
        None => crate::config::containers()?.detach_keys,
        Some(_) => None,
    };
    keys_or_conf(given, conf.as_deref())
}

/// Finds the detach keys in what is typed. As Podman's (containers/common `detach.Copy`),
/// each key must be the whole of one read, so that data piped or pasted, which comes in
/// larger reads, never detaches, and neither do both keys arriving in one read (observed with
/// Podman 4.3.1: `printf '\x10\x11'` into its terminal does not detach). The keys matched so
/// far are held back, and passed on with the read that breaks the match; that read is not
/// taken as a new start.
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
        if let [b] = input {
            if self.keys.get(self.matched) == Some(b) {
                self.matched += 1;
                let done = self.matched == self.keys.len();
                if done {
                    self.matched = 0;
                }
                return (Vec::new(), done);
            }
        }
        let mut out = self.keys[..self.matched].to_vec();
        self.matched = 0;
        out.extend_from_slice(input);
        (out, false)
    }
}

/// What the front end does.
#[derive(Debug, Clone)]
pub struct Options {
    pub keys: Vec<u8>,
    pub sig_proxy: bool,
    /// [stdout, stderr] not shown (`run -a`): the monitor still logs them
    pub hidden: [bool; 2],
}

/// Relay the caller's terminal or stdio to the container `rec` through `sock` (the monitor's
/// first client) until it exits (its code) or the detach keys are typed (0).
pub fn run(g: &Context, rec: &ContainerRecord, sock: UnixStream, o: Options) -> Result<ExitCode> {
    let stdin = rec.spec.interactive;
    let client = Client::new(sock, &o, stdin)?;
    crate::events::container(g, rec, "attach");
    client.relay(g, rec)
}

/// `rbox attach`: as [`run`], through a later connection to the monitor's attach socket;
/// `stdin`: whether the caller's stdin goes to the container (not with `--no-stdin`).
pub fn attach(
    g: &Context,
    rec: &ContainerRecord,
    sock: UnixStream,
    o: Options,
    stdin: bool,
) -> Result<ExitCode> {
    let client = Client::new(sock, &o, stdin)?;
    crate::events::container(g, rec, "attach");
    client.relay(g, rec)
}

/// What the client queues for the monitor at most before it stops reading its stdin.
const QUEUE_MAX: usize = 1 << 20;

/// One attach client: its connection to the monitor and the frames not yet sent. Writes to
/// the monitor never block: the monitor may be waiting for this client to read the
/// container's output (a container that echoes a huge paste) while this client has more
/// input for it, so input is queued and sent when the socket takes it, and the output is
/// read meanwhile.
struct Client {
    sock: UnixStream,
    keys: Keys,
    sig_proxy: bool,
    hidden: [bool; 2],
    stdin: bool,
    /// frames for the monitor, from `sent` on
    queue: Vec<u8>,
    sent: usize,
}

impl Client {
    fn new(sock: UnixStream, o: &Options, stdin: bool) -> Result<Client> {
        sock.set_nonblocking(true)
            .context("make the attach socket non-blocking")?;
        Ok(Client {
            sock,
            keys: Keys::new(o.keys.clone()),
            sig_proxy: o.sig_proxy,
            hidden: o.hidden,
            stdin,
            queue: Vec::new(),
            sent: 0,
        })
    }

    fn send(&mut self, tag: u8, payload: &[u8]) {
        self.queue.extend_from_slice(&frame(tag, payload));
    }

    fn queued(&self) -> usize {
        self.queue.len() - self.sent
    }

    /// Write what the socket takes now; false once the monitor is gone.
    fn flush(&mut self) -> bool {
        while self.sent < self.queue.len() {
            match self.sock.write(&self.queue[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => {
                    self.queue.clear();
                    self.sent = 0;
                    return false;
                }
            }
        }
        self.queue.clear();
        self.sent = 0;
        true
    }

    fn send_size(&mut self) {
        if let Some(ws) = super::terminal::caller_winsize() {
            let mut p = ws.ws_row.to_le_bytes().to_vec();
            p.extend_from_slice(&ws.ws_col.to_le_bytes());
            self.send(RESIZE, &p);
        }
    }

    fn relay(mut self, g: &Context, rec: &ContainerRecord) -> Result<ExitCode> {
        let tty = rec.spec.tty;
        let stdin = std::io::stdin();
        let is_tty = super::sys::isatty(super::sys::stdio(0));
        let raw = (tty && self.stdin && is_tty).then(super::attach::RawMode::enter);
        if tty {
            self.send_size();
        }
        // SIGWINCH always (the window size); the others only when they are passed on, else
        // they keep their default action
        let mut sigs = SigSet::empty();
        sigs.add(Signal::SIGWINCH);
        if self.sig_proxy {
            for s in super::container::forwarded().iter() {
                if s != Signal::SIGCHLD {
                    sigs.add(s);
                }
            }
        }
        sigs.thread_block().context("block signals")?;
        let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC).context("create signalfd")?;
        let mut stdin_open = self.stdin;
        // detached: what is queued goes out, then this process ends
        let mut detached = false;
        let mut inbuf = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        loop {
            if detached && self.queued() == 0 {
                return Ok(ExitCode::SUCCESS);
            }
            let mut sock_events = PollFlags::POLLIN;
            if self.queued() > 0 {
                sock_events |= PollFlags::POLLOUT;
            }
            let read_stdin = stdin_open && !detached && self.queued() < QUEUE_MAX;
            let mut fds = vec![
                PollFd::new(self.sock.as_fd(), sock_events),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            if read_stdin {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            // after a detach, a monitor that takes nothing more for a second (its container
            // does not read its stdin) is not waited for
            let timeout = if detached {
                PollTimeout::from(1000u16)
            } else {
                PollTimeout::NONE
            };
            let ready = super::attach::poll_events(&mut fds, timeout)?;
            drop(fds);
            if detached && ready.iter().all(|r| r.is_empty()) {
                return Ok(ExitCode::SUCCESS);
            }
            let sock_ready = ready[0];
            // a monitor that no longer reads: nothing more goes to it, what it sent is read
            if sock_ready.intersects(PollFlags::POLLOUT | PollFlags::POLLERR | PollFlags::POLLHUP)
                && !self.flush()
            {
                stdin_open = false;
            }
            if sock_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                let n = match self.sock.read(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                        ) =>
                    {
                        continue
                    }
                    Err(_) => 0,
                };
                if n == 0 {
                    break;
                }
                inbuf.extend_from_slice(&buf[..n]);
                for (tag, data) in take_frames(&mut inbuf) {
                    match tag {
                        // after a detach the output is no longer the caller's
                        OUT | ERR if detached => {}
                        OUT if self.hidden[0] => {}
                        ERR if self.hidden[1] => {}
                        OUT => {
                            let _ = stdout.write_all(&data);
                            let _ = stdout.flush();
                        }
                        ERR => {
                            let _ = stderr.write_all(&data);
                        }
                        // the monitor recorded the exit (with `--rm` the record is gone)
                        EXIT if data.len() == 4 && !detached => {
                            let code = i32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
                            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
                        }
                        _ => {}
                    }
                }
            }
            if ready[1].contains(PollFlags::POLLIN) {
                if let Ok(Some(info)) = sfd.read_signal() {
                    match info.ssi_signo as libc::c_int {
                        libc::SIGWINCH if tty => self.send_size(),
                        libc::SIGWINCH => {}
                        s => {
                            let _ = super::signal_container(g, rec, s);
                        }
                    }
                }
            }
            if read_stdin && !ready[2].is_empty() {
                let n = match stdin.lock().read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                if n == 0 {
                    stdin_open = false;
                    // end-of-file: the terminal's end-of-file character, or the end of the
                    // container's stdin pipe (as Podman's run and attach end it)
                    if tty {
                        self.send(IN, &[4]);
                    } else {
                        self.send(CLOSE_STDIN, &[]);
                    }
                } else {
                    let (out, keys) = self.keys.feed(&buf[..n]);
                    if !out.is_empty() {
                        self.send(IN, &out);
                    }
                    if keys {
                        // without a terminal, the container's stdin ends (as Podman's)
                        if !tty {
                            self.send(CLOSE_STDIN, &[]);
                        }
                        detached = true;
                    }
                }
            }
            // what was queued goes out now, as far as the socket takes it
            if self.queued() > 0 && !self.flush() {
                stdin_open = false;
            }
        }
        drop(raw);
        if detached {
            return Ok(ExitCode::SUCCESS);
        }
        // The monitor ended without saying the code (killed): the code it recorded, once
        // the record says so.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match state::lookup(g, &rec.id) {
                Ok(cur) if !state::is_running(&cur) => {
                    let code = cur.state.exit_code.unwrap_or(0);
                    return Ok(ExitCode::from(code.clamp(0, 255) as u8));
                }
                Ok(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Ok(_) | Err(_) => return Ok(ExitCode::from(crate::exit::FAILED)),
            }
        }
    }
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
        // typed: one key per read
        let mut k = Keys::new(vec![16, 17]);
        assert_eq!(k.feed(b"ls\n"), (b"ls\n".to_vec(), false));
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(&[17]), (vec![], true));
        // both keys in one read, or within more data (piped, pasted): passed on
        assert_eq!(k.feed(&[16, 17]), (vec![16, 17], false));
        assert_eq!(
            k.feed(&[b'a', 16, 17, b'z']),
            (vec![b'a', 16, 17, b'z'], false)
        );
        assert_eq!(k.feed(&[b'a', 16]), (vec![b'a', 16], false));
        assert_eq!(k.feed(&[17]), (vec![17], false));
        // a held start is passed on with the read that breaks it, which starts nothing
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(b"x"), (vec![16, b'x'], false));
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(&[16]), (vec![16, 16], false));
        assert_eq!(k.feed(&[17]), (vec![17], false));
        assert_eq!(k.feed(&[16]), (vec![], false));
        assert_eq!(k.feed(&[16, 17]), (vec![16, 16, 17], false));
        // one key: one read of it
        let mut k = Keys::new(vec![b'x']);
        assert_eq!(k.feed(b"xx"), (b"xx".to_vec(), false));
        assert_eq!(k.feed(b"x"), (vec![], true));
        // off: everything passes
        let mut k = Keys::new(vec![]);
        assert_eq!(k.feed(&[16, 17]), (vec![16, 17], false));
        assert_eq!(k.feed(&[16]), (vec![16], false));
    }
}
