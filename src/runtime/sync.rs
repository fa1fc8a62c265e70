//! Typed messages between rbox's processes, on one channel per pair: a close-on-exec
//! `SOCK_SEQPACKET` socketpair, one message per packet, end-of-file when the other side is gone
//! (or has exec'd: the channel is close-on-exec, so a clean exec reads as end-of-file).
//!
//! Used by three pairs of processes (each side is named in the file that runs it):
//! - container parent (`container.rs`) and container init (`init.rs`), with two sync points:
//!   1. the init's namespaces exist and it waits for [`Msg::Configured`]: the parent writes id
//!      maps there (network and FUSE helpers attach at the same point);
//!   2. the init is set up (mounts, pivot_root, terminal) and execs only on [`Msg::Start`], so
//!      the parent records the container as running before its command runs. When the start
//!      is not there yet the init says [`Msg::Ready`] and waits: a caller that splits create
//!      and start (the OCI runtime's `create`) waits for that message. When the parent sent
//!      the start early (`rbox run`: it records the container while the init sets up), the
//!      init goes on without a round trip. Then end-of-file means the exec succeeded,
//!      [`Msg::Failed`] carries the exit code and the reason it did not.
//! - `rbox exec` and its forked process: [`Msg::Failed`] or end-of-file, as after point 2.
//! - the caller of `run -d` and the container's monitor (`monitor.rs`): [`Msg::Ready`] once the
//!   container runs, or [`Msg::Failed`].
//!
//! The container init sends from between clone and exec; the channel allocates only what a
//! message needs and takes no lock.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

use super::sys;

/// Longest failure text carried; longer ones are cut (they are one line for a terminal).
const MAX_TEXT: usize = 3800;
/// Receive buffer: the tag, a code byte, the text.
const PACKET: usize = MAX_TEXT + 16;

/// One message; which side sends which is in the module doc.
#[derive(Debug)]
pub enum Msg {
    /// parent → init: the namespaces are configured from outside; set the container up
    Configured,
    /// init → parent: the master side of the container's terminal (`-t`)
    Terminal(OwnedFd),
    /// init → parent: set up, waiting for [`Msg::Start`]; monitor → caller: the container runs
    Ready,
    /// parent → init: exec the command
    Start,
    /// init → parent, right after [`Msg::Configured`] when the init becomes root of its new
    /// user namespace: it has (its euid changed, dumpable again), so its /proc/PID/ns files
    /// open for the helpers the parent starts next
    Root,
    /// the sender failed: the exit code rbox returns for it, and one line saying why
    Failed { code: u8, msg: String },
}

impl Msg {
    fn tag(&self) -> u8 {
        match self {
            Msg::Configured => b'C',
            Msg::Terminal(_) => b'T',
            Msg::Ready => b'R',
            Msg::Start => b'S',
            Msg::Root => b'U',
            Msg::Failed { .. } => b'F',
        }
    }

    /// What the packet carries besides file descriptors.
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![self.tag()];
        if let Msg::Failed { code, msg } = self {
            b.push(*code);
            let line = msg.replace('\n', " ");
            let mut end = line.len().min(MAX_TEXT);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            b.extend_from_slice(&line.as_bytes()[..end]);
        }
        b
    }

    fn decode(b: &[u8], fd: Option<OwnedFd>) -> io::Result<Msg> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let (&tag, rest) = b.split_first().ok_or_else(|| bad("empty message"))?;
        Ok(match tag {
            b'C' => Msg::Configured,
            b'R' => Msg::Ready,
            b'S' => Msg::Start,
            b'U' => Msg::Root,
            b'T' => Msg::Terminal(fd.ok_or_else(|| bad("terminal message without a terminal"))?),
            b'F' => {
                let (&code, text) = rest
                    .split_first()
                    .ok_or_else(|| bad("failure without an exit code"))?;
                Msg::Failed {
                    code,
                    msg: String::from_utf8_lossy(text).into_owned(),
                }
            }
            _ => return Err(bad(&format!("unknown message tag {tag}"))),
        })
    }
}

/// One end of a channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

impl Channel {
    /// Both ends of a new channel, close-on-exec.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::SeqPacket,
            None,
            socket::SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel(a), Channel(b)))
    }

    /// Send one message (with its descriptor, for [`Msg::Terminal`]).
    pub fn send(&self, m: &Msg) -> io::Result<()> {
        let data = m.encode();
        let iov = [IoSlice::new(&data)];
        let fds: Vec<RawFd> = match m {
            Msg::Terminal(fd) => vec![fd.as_raw_fd()],
            _ => Vec::new(),
        };
        let rights = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match socket::sendmsg::<()>(
                self.0.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message; `None` when the other side has closed its end (exited or exec'd).
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        self.recv_with(MsgFlags::empty())
    }

    /// The message already waiting, without blocking: `Ok(None)` when there is none yet, an
    /// `UnexpectedEof` error when the other side has closed its end.
    pub fn pending(&self) -> io::Result<Option<Msg>> {
        match self.recv_with(MsgFlags::MSG_DONTWAIT) {
            Ok(Some(m)) => Ok(Some(m)),
            Ok(None) => Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv_with(&self, flags: MsgFlags) -> io::Result<Option<Msg>> {
        let mut buf = vec![0u8; PACKET];
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([RawFd; 1]);
            let msg = match socket::recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC | flags,
            ) {
                Ok(m) => m,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut fd = None;
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for (i, raw) in fds.into_iter().enumerate() {
                        let owned = sys::owned_received_fd(raw);
                        if i == 0 {
                            fd = Some(owned);
                        }
                    }
                }
            }
            let n = msg.bytes;
            if n == 0 {
                return Ok(None);
            }
            return Msg::decode(&buf[..n], fd).map(Some);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_one_by_one_and_eof_follows_close() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::Configured).unwrap();
        a.send(&Msg::Failed {
            code: 127,
            msg: "executable file `nope` not found\nin $PATH".into(),
        })
        .unwrap();
        assert!(matches!(b.recv().unwrap(), Some(Msg::Configured)));
        match b.recv().unwrap() {
            Some(Msg::Failed { code, msg }) => {
                assert_eq!(code, 127);
                assert!(
                    msg.starts_with("executable file `nope` not found in $PATH"),
                    "{msg}"
                );
            }
            m => panic!("got {m:?}"),
        }
        assert!(a.pending().unwrap().is_none(), "nothing sent yet");
        b.send(&Msg::Start).unwrap();
        assert!(matches!(a.pending().unwrap(), Some(Msg::Start)));
        drop(a);
        assert!(b.recv().unwrap().is_none());
        assert_eq!(
            b.pending().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_terminal_travels_with_its_descriptor() {
        let (a, b) = Channel::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        a.send(&Msg::Terminal(w)).unwrap();
        let Some(Msg::Terminal(got)) = b.recv().unwrap() else {
            panic!("no terminal")
        };
        nix::unistd::write(&got, b"x").unwrap();
        let mut buf = [0u8; 1];
        nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf, b"x");
        let fl = nix::fcntl::fcntl(&got, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(fl & libc::FD_CLOEXEC, 0, "received close-on-exec");
    }

    #[test]
    fn long_failures_are_cut_on_a_character_boundary() {
        let (a, b) = Channel::pair().unwrap();
        let long = "é".repeat(MAX_TEXT);
        a.send(&Msg::Failed {
            code: 125,
            msg: long,
        })
        .unwrap();
        let Some(Msg::Failed { msg, .. }) = b.recv().unwrap() else {
            panic!()
        };
        assert!(msg.len() <= MAX_TEXT && msg.chars().all(|c| c == 'é'));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Msg::decode(b"", None).is_err());
        assert!(Msg::decode(b"Z", None).is_err());
        assert!(Msg::decode(b"F", None).is_err());
        assert!(Msg::decode(b"T", None).is_err());
    }
}
