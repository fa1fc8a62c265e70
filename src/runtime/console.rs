//! The attach socket of a detached container (`rbox attach`): its monitor listens on a unix
//! socket in the runtime directory, sends what the container writes to every client attached
//! and passes their input to the container's terminal (or its stdin pipe, with `-i` and no
//! terminal), and their window size to its terminal. The clients are other rbox invocations;
//! nobody else may connect (the runtime directory is the user's, mode 0700).
//!
//! Frames both ways: a tag byte, a little-endian u32 length, the payload. The monitor sends
//! [`OUT`] and [`ERR`], and [`EXIT`] (the exit code, i32) once the container's exit is
//! recorded; a client sends [`IN`], [`RESIZE`] (rows and columns, u16 each) and
//! [`CLOSE_STDIN`] (the container's stdin pipe ends). A client that does not keep up is
//! dropped rather than stall the container, except the first client of an attached
//! `rbox run` (`runtime::front`), whose terminal paces the container as it would without a
//! monitor between them. The clients' input is held here and written as the container's
//! terminal or stdin pipe takes it, never blocking: a container that does not read its
//! stdin yet keeps its output flowing, and the clients are read again once it did.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;

pub const OUT: u8 = 1;
pub const ERR: u8 = 2;
pub const IN: u8 = 3;
pub const RESIZE: u8 = 4;
pub const EXIT: u8 = 5;
pub const CLOSE_STDIN: u8 = 6;

/// A frame's bytes.
pub fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(tag);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Splits whole frames off the front of `buf`.
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 5 {
        let len = u32::from_le_bytes(buf[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        if buf.len() - at - 5 < len {
            break;
        }
        out.push((buf[at], buf[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    buf.drain(..at);
    out
}

/// The monitor's side.
pub struct Console {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    /// where input goes when the container has no terminal (`-i`): its stdin pipe
    stdin: Option<OwnedFd>,
    /// clients' input the container has not taken yet: written without blocking when its
    /// terminal or stdin pipe has room (a container that does not read its stdin must not
    /// stop the monitor), and no more is read from clients while it is [`INPUT_MAX`] long
    input: Vec<u8>,
    /// a client ended the stdin pipe: closed once `input` is written
    close_stdin: bool,
}

/// The clients' input the monitor holds at most before it stops reading them.
const INPUT_MAX: usize = 256 * 1024;

struct Client {
    sock: UnixStream,
    buf: Vec<u8>,
    /// an attached `rbox run`: waited for, never dropped for being slow
    paces: bool,
}

impl Console {
    /// Listen at `path` (replacing a stale socket). `stdin`: the write end of the container's
    /// stdin pipe, when it has one.
    pub fn listen(path: &Path, stdin: Option<OwnedFd>) -> io::Result<Console> {
        let _ = std::fs::remove_file(path);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(Console {
            listener,
            path: path.to_path_buf(),
            clients: Vec::new(),
            stdin,
            input: Vec::new(),
            close_stdin: false,
        })
    }

    /// Add the attached `rbox run`'s end of a socket pair as a client that paces the output.
    pub fn add_pacing_client(&mut self, sock: UnixStream) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        self.clients.push(Client {
            sock,
            buf: Vec::new(),
            paces: true,
        });
        Ok(())
    }

    /// Where clients' input goes from now on (a restarted container's new stdin pipe).
    pub fn set_stdin(&mut self, stdin: Option<OwnedFd>) {
        self.stdin = stdin;
        self.input.clear();
        self.close_stdin = false;
    }

    /// The descriptors to poll and for what: the listener first, then each client (not for
    /// input while [`INPUT_MAX`] of it waits), then, while input waits, where it goes (`pty`,
    /// the terminal's master, or the stdin pipe).
    pub fn fds<'a>(&'a self, pty: Option<&'a OwnedFd>) -> Vec<(BorrowedFd<'a>, PollFlags)> {
        let from_clients = if self.input.len() < INPUT_MAX {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        let mut fds: Vec<_> = std::iter::once((self.listener.as_fd(), PollFlags::POLLIN))
            .chain(self.clients.iter().map(|c| (c.sock.as_fd(), from_clients)))
            .collect();
        if let Some(to) = self.input_target(pty).filter(|_| !self.input.is_empty()) {
            fds.push((to, PollFlags::POLLOUT));
        }
        fds
    }

    fn input_target<'a>(&'a self, pty: Option<&'a OwnedFd>) -> Option<BorrowedFd<'a>> {
        pty.or(self.stdin.as_ref()).map(|f| f.as_fd())
    }

    /// Write what the container's terminal or stdin pipe takes now of the waiting input;
    /// input nobody can take any more (no target, the reader gone) is dropped.
    fn write_input(&mut self, pty: Option<&OwnedFd>) {
        if !self.input.is_empty() {
            let Some(to) = self.input_target(pty) else {
                self.input.clear();
                return;
            };
            let _ = nix::fcntl::fcntl(
                to,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            let mut at = 0;
            while at < self.input.len() {
                match nix::unistd::write(to, &self.input[at..]) {
                    Ok(n) => at += n,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(_) => {
                        at = self.input.len();
                    }
                }
            }
            self.input.drain(..at);
        }
        if self.input.is_empty() && self.close_stdin {
            self.stdin = None;
            self.close_stdin = false;
        }
    }

    /// Act on what poll reported for [`Console::fds`] (`ready` in the same order): accept
    /// clients, and pass their input to `pty` (the terminal's master) or the stdin pipe.
    pub fn ready(&mut self, ready: &[bool], pty: Option<&OwnedFd>) {
        self.write_input(pty);
        let mut gone = Vec::new();
        for (i, c) in self.clients.iter_mut().enumerate() {
            if !ready.get(i + 1).copied().unwrap_or(false) || self.input.len() >= INPUT_MAX {
                continue;
            }
            let mut b = [0u8; 16384];
            match c.sock.read(&mut b) {
                Ok(0) => gone.push(i),
                Ok(n) => {
                    c.buf.extend_from_slice(&b[..n]);
                    for (tag, data) in take_frames(&mut c.buf) {
                        match (tag, pty, &self.stdin) {
                            (IN, Some(_), _) | (IN, None, Some(_)) => {
                                self.input.extend_from_slice(&data)
                            }
                            (CLOSE_STDIN, _, _) => self.close_stdin = true,
                            (RESIZE, Some(m), _) if data.len() == 4 => {
                                let ws = libc::winsize {
                                    ws_row: u16::from_le_bytes([data[0], data[1]]),
                                    ws_col: u16::from_le_bytes([data[2], data[3]]),
                                    ws_xpixel: 0,
                                    ws_ypixel: 0,
                                };
                                super::sys::set_winsize(m, &ws);
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
        self.write_input(pty);
        if ready.first().copied().unwrap_or(false) {
            while let Ok((sock, _)) = self.listener.accept() {
                if sock.set_nonblocking(true).is_ok() {
                    self.clients.push(Client {
                        sock,
                        buf: Vec::new(),
                        paces: false,
                    });
                }
            }
        }
    }

    /// Send the container's output to every client.
    pub fn broadcast(&mut self, tag: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let f = frame(tag, data);
        self.clients.retain_mut(|c| {
            // a client that cannot take a whole frame now is too slow: dropped (one that
            // paces the output is waited for until it takes it or goes)
            let mut at = 0;
            let mut tries = 0;
            loop {
                match c.sock.write(&f[at..]) {
                    Ok(n) => {
                        at += n;
                        if at == f.len() {
                            return true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if c.paces {
                            let mut p = [nix::poll::PollFd::new(
                                c.sock.as_fd(),
                                nix::poll::PollFlags::POLLOUT,
                            )];
                            let _ = nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE);
                            continue;
                        }
                        tries += 1;
                        if tries == 100 {
                            return false;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        });
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_where_they_end() {
        let mut buf = frame(OUT, b"hello");
        buf.extend(frame(RESIZE, &[1, 0, 2, 0]));
        buf.extend(&frame(IN, b"partial")[..6]);
        let got = take_frames(&mut buf);
        assert_eq!(
            got,
            vec![(OUT, b"hello".to_vec()), (RESIZE, vec![1, 0, 2, 0])]
        );
        assert_eq!(buf.len(), 6);
    }
}
