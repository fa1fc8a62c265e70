//! rbox's relay of DNS over TCP for pasta. When the host names only loopback resolvers (a
//! local dnsmasq at 127.0.0.1, systemd-resolved's 127.0.0.53 without its upstream list), the
//! container's resolv.conf names pasta's DNS forwarding address, and pasta (passt 2023)
//! forwards only UDP from there: a truncated answer, or a client that asks over TCP, would get
//! nothing. The relay serves TCP at that address: [`listen_dns`] binds a listener inside the
//! container's network namespace (a policy rule, `netlink.rs`, delivers TCP to that address
//! there while UDP still goes to pasta), and [`DnsListener::serve`] serves it from the
//! caller's thread, which must be in the host's network namespace: each client is connected to
//! the host's resolver over TCP and bytes are copied both ways (DNS messages are small: a
//! poll loop with two small buffers a connection).
//!
//! Not here: choosing the address and the resolvers (`names.rs`, [`crate::Helper::dns_forward`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::socket::{self as sock, sockopt, AddressFamily, Backlog, SockFlag, SockType};

use crate::{netlink, sys, Error, Result};

const DNS_PORT: u16 = 53;
/// A connection that moves nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// Relayed connections at a time: a container cannot make the relay hold more (each holds
/// two sockets and two buffers).
const MAX_CONNS: usize = 64;
const BUF: usize = 16 << 10;
/// The host's resolver is normally on its loopback (it answers or refuses at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The relay's listener, bound in the container's network namespace, and the host's resolvers
/// it connects clients to.
#[derive(Debug)]
pub struct DnsListener {
    listener: TcpListener,
    upstream: Vec<SocketAddr>,
}

/// Listen for DNS over TCP at `addr` port 53 inside the network namespace `netns`, for the
/// host's resolvers `upstream` (port 53). The caller must hold CAP_SYS_ADMIN and CAP_NET_ADMIN
/// over the namespace (its owner's user namespace, or root); the calling thread stays in its
/// own namespace.
pub fn listen_dns(netns: &OwnedFd, addr: IpAddr, upstream: &[IpAddr]) -> Result<DnsListener> {
    let fail = |message: String| Error::DnsRelay { addr, message };
    if upstream.is_empty() {
        return Err(fail("the host names no resolver".into()));
    }
    let netns = netns
        .try_clone()
        .map_err(|e| fail(format!("duplicate the namespace's descriptor: {e}")))?;
    // a thread of its own joins the namespace (and ends there): this one stays in the host's
    let listener = std::thread::scope(|s| {
        s.spawn(move || listen_in(&netns, addr))
            .join()
            .unwrap_or_else(|_| Err("the thread that binds it panicked".into()))
    })
    .map_err(fail)?;
    Ok(DnsListener {
        listener,
        upstream: upstream
            .iter()
            .map(|ip| SocketAddr::new(*ip, DNS_PORT))
            .collect(),
    })
}

fn listen_in(netns: &OwnedFd, addr: IpAddr) -> Result<TcpListener, String> {
    nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("join the container's network namespace: {e}"))?;
    let lo = nix::net::if_::if_nametoindex("lo")
        .map_err(|e| format!("find the container's loopback device: {e}"))?;
    netlink::deliver_tcp_locally(addr, lo)
        .map_err(|e| format!("route TCP to it in the container: {e}"))?;
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = sock::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| format!("create socket: {e}"))?;
    // the namespace does not have the address (pasta answers there): a transparent socket
    // may bind it
    match family {
        AddressFamily::Inet => {
            sock::setsockopt(&fd, sockopt::IpTransparent, &true).map_err(io::Error::from)
        }
        _ => sys::set_ipv6_transparent(&fd),
    }
    .map_err(|e| format!("set IP_TRANSPARENT: {e}"))?;
    let _ = sock::setsockopt(&fd, sockopt::ReuseAddr, &true);
    let at = SocketAddr::new(addr, DNS_PORT);
    let bound = match at {
        SocketAddr::V4(a) => sock::bind(fd.as_raw_fd(), &sock::SockaddrIn::from(a)),
        SocketAddr::V6(a) => sock::bind(fd.as_raw_fd(), &sock::SockaddrIn6::from(a)),
    };
    bound.map_err(|e| format!("bind {at}: {e}"))?;
    sock::listen(&fd, Backlog::new(64).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| format!("listen on {at}: {e}"))?;
    Ok(TcpListener::from(fd))
}

impl AsFd for DnsListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl DnsListener {
    /// Serve until `stop` is readable or hung up (e.g. the read end of a pipe whose write end
    /// the caller closes): accept clients and move their bytes. The calling thread's network
    /// namespace is where the resolvers are reached.
    pub fn serve(self, stop: impl AsFd) -> DnsListener {
        let mut conns: Vec<Conn> = Vec::new();
        loop {
            let mut fds = vec![
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            ];
            for c in &conns {
                let (client, server) = c.interest();
                fds.push(PollFd::new(c.client.as_fd(), client));
                fds.push(PollFd::new(c.server.as_fd(), server));
            }
            // with connections, wake up now and then to close the idle ones
            let timeout = if conns.is_empty() {
                PollTimeout::NONE
            } else {
                PollTimeout::from(1000u16)
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return self,
            }
            let fired = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            if fired(&fds[0]) {
                return self;
            }
            let accept = fired(&fds[1]);
            let active: Vec<bool> = fds[2..]
                .chunks(2)
                .map(|pair| pair.iter().any(fired))
                .collect();
            drop(fds);
            let now = Instant::now();
            for (c, active) in conns.iter_mut().zip(active) {
                if active {
                    c.last = now;
                    c.pump();
                }
            }
            conns.retain(|c| !c.done() && now.duration_since(c.last) < IDLE);
            // every client queued (the listener does not block); past MAX_CONNS, closed
            while let Some(client) = accept.then(|| self.listener.accept().ok()).flatten() {
                if conns.len() < MAX_CONNS {
                    conns.extend(Conn::open(client.0, &self.upstream));
                }
            }
        }
    }
}

/// One client and its connection to the host's resolver.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    /// client -> server, server -> client
    up: Pipe,
    down: Pipe,
    last: Instant,
    failed: bool,
}

/// Bytes read from one side and not yet written to the other.
struct Pipe {
    buf: Vec<u8>,
    from: usize,
    to: usize,
    /// the source said end-of-file
    eof: bool,
    /// ... and the end-of-file was passed on
    shut: bool,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: vec![0; BUF],
            from: 0,
            to: 0,
            eof: false,
            shut: false,
        }
    }

    fn pending(&self) -> bool {
        self.from < self.to
    }

    /// Move what `src` has to `dst` until either would block.
    fn pump(&mut self, mut src: &TcpStream, mut dst: &TcpStream) -> io::Result<()> {
        loop {
            if self.pending() {
                match dst.write(&self.buf[self.from..self.to]) {
                    Ok(n) => self.from += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if self.eof {
                if !self.shut {
                    self.shut = true;
                    let _ = dst.shutdown(Shutdown::Write);
                }
                return Ok(());
            }
            match src.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => (self.from, self.to) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Conn {
    /// Connect `client` to the first of the resolvers that accepts; None if none does.
    fn open(client: TcpStream, upstream: &[SocketAddr]) -> Option<Conn> {
        let server = upstream
            .iter()
            .find_map(|a| TcpStream::connect_timeout(a, CONNECT_TIMEOUT).ok())?;
        for s in [&client, &server] {
            s.set_nonblocking(true).ok()?;
            let _ = s.set_nodelay(true);
        }
        Some(Conn {
            client,
            server,
            up: Pipe::new(),
            down: Pipe::new(),
            last: Instant::now(),
            failed: false,
        })
    }

    /// What to wait for on the client and on the server.
    fn interest(&self) -> (PollFlags, PollFlags) {
        let side = |reads: &Pipe, writes: &Pipe| {
            let mut f = PollFlags::empty();
            if !reads.pending() && !reads.eof {
                f |= PollFlags::POLLIN;
            }
            if writes.pending() {
                f |= PollFlags::POLLOUT;
            }
            f
        };
        (side(&self.up, &self.down), side(&self.down, &self.up))
    }

    fn pump(&mut self) {
        let up = self.up.pump(&self.client, &self.server);
        let down = self.down.pump(&self.server, &self.client);
        self.failed |= up.is_err() || down.is_err();
    }

    /// Both directions ended (or one failed: the other side gets a reset by the close).
    fn done(&self) -> bool {
        self.failed || (self.up.shut && self.down.shut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// The loop, served from an ordinary listener on this namespace's loopback to a "resolver"
    /// that answers each message with its bytes reversed and then half-closes: messages in
    /// both directions, the end-of-file passed on, several clients at once.
    #[test]
    fn relays_both_ways_and_passes_the_end_on() {
        let resolver = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let upstream = vec![
            // refused first (nothing listens there), then the resolver
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), {
                let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                l.local_addr().unwrap().port()
            }),
            resolver.local_addr().unwrap(),
        ];
        let server = std::thread::spawn(move || {
            for _ in 0..3 {
                let (mut c, _) = resolver.accept().unwrap();
                std::thread::spawn(move || {
                    let mut q = Vec::new();
                    c.read_to_end(&mut q).unwrap();
                    q.reverse();
                    c.write_all(&q).unwrap();
                });
            }
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let at = listener.local_addr().unwrap();
        let l = DnsListener { listener, upstream };
        let (stop_r, stop_w) = nix::unistd::pipe().unwrap();
        let relay = std::thread::spawn(move || l.serve(stop_r));
        let clients: Vec<_> = (0..3u8)
            .map(|i| {
                let mut c = TcpStream::connect(at).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let msg: Vec<u8> = (0..40_000u32).map(|b| (b as u8) ^ i).collect();
                c.write_all(&msg).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                (c, msg)
            })
            .collect();
        for (mut c, mut msg) in clients {
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            msg.reverse();
            assert_eq!(got.len(), msg.len());
            assert!(got == msg, "the answer came back altered");
        }
        server.join().unwrap();
        // the stop pipe's write end closed: the loop ends, the listener comes back
        drop(stop_w);
        let listener = relay.join().unwrap();
        assert_eq!(listener.listener.local_addr().unwrap(), at);
    }
}
