//! rbox's port forwarder: the published ports of one container, served by one thread of its
//! monitor (no process of its own, one event loop for all the container's ports).
//!
//! [`bind`] takes the host side of every port in the caller's network namespace, so that
//! "port in use" and "privileged port" are errors before anything starts; [`Bound::start`]
//! then runs the loop on a thread that has joined the container's network namespace, where
//! every socket it creates afterwards lives. For each client the loop dials the container's
//! own address (never its loopback: a service bound to 127.0.0.1 in the container stays
//! private) from a socket bound, with IP_TRANSPARENT, to the client's address and port, so the
//! server sees who is calling. A policy rule in the container's namespace
//! (`netlink.rs`) routes the replies from published ports back through the loopback device to
//! that socket. TCP bytes move between the two sockets with splice(2) through a pipe per
//! direction: they never enter user space. UDP datagrams are relayed per client (a flow
//! closes after [`UDP_IDLE`] without traffic) and keep the client's address the same way.
//!
//! Where the address cannot be kept, the container sees its own address instead: an IPv6
//! client of a container without IPv6 (it is dialled over IPv4), or a client port already in
//! use inside the container (the client's address with another port). The rule means a
//! container cannot itself dial out from a published port's number (replies to it would be
//! taken for forwarded ones).

use std::collections::HashMap;
use std::io;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sched::CloneFlags;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    self as sock, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

use crate::{io_err, netlink, sys, Error, PortMapping, Proto, Result};

/// How long a UDP client may be silent before its flow is closed.
pub const UDP_IDLE: Duration = Duration::from_secs(60);
/// Bytes in flight per direction of a TCP connection: a pipe starts at the kernel's default
/// and grows to [`BIG_PIPE`] once a single move fills it (a bulk transfer: fewer, larger
/// splices), for at most [`BIG_PIPES`] pipes at a time. Pipe sizes count against the user's
/// pipe-user-pages-soft budget (64 MiB), shared with all the user's processes: past it, new
/// pipes get one page.
const PIPE_SIZE: usize = 64 << 10;
const BIG_PIPE: usize = 1 << 20;
const BIG_PIPES: usize = 8;

/// The host side of a container's published ports, bound and not yet served.
#[derive(Debug)]
pub struct Bound {
    ports: Vec<(PortMapping, HostSocket)>,
}

#[derive(Debug)]
enum HostSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A running forwarder. Dropping it (or [`Forwarder::stop`]) ends the loop, closing every
/// listening socket and connection.
#[derive(Debug)]
pub struct Forwarder {
    stop: EventFd,
    thread: Option<JoinHandle<Option<Bound>>>,
}

/// Bind the host side of `ports` (host ports chosen: 0 is refused): all addresses means IPv4
/// and IPv6 where the host has IPv6.
pub fn bind(ports: &[PortMapping]) -> Result<Bound> {
    let mut bound = Vec::with_capacity(ports.len());
    for p in ports {
        bound.push((*p, bind_host(p)?));
    }
    Ok(Bound { ports: bound })
}

fn bind_host(port: &PortMapping) -> Result<HostSocket> {
    if port.host_port == 0 {
        return Err(Error::Unpublishable {
            port: *port,
            reason: "choose a host port first (0 means any free port)".to_string(),
        });
    }
    let try_bind = |ip: IpAddr| {
        let addr = SocketAddr::new(ip, port.host_port);
        let s = match port.proto {
            Proto::Tcp => TcpListener::bind(addr).map(HostSocket::Tcp),
            Proto::Udp => UdpSocket::bind(addr).map(HostSocket::Udp),
        }?;
        match &s {
            HostSocket::Tcp(l) => l.set_nonblocking(true)?,
            HostSocket::Udp(u) => u.set_nonblocking(true)?,
        }
        Ok::<_, io::Error>(s)
    };
    let r = match port.host_ip {
        Some(ip) => try_bind(ip),
        // [::] takes IPv4 too (bindv6only is 0 unless an admin changed it); a host without
        // IPv6 refuses the family
        None => match try_bind(IpAddr::V6(Ipv6Addr::UNSPECIFIED)) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                ) =>
            {
                try_bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            }
            r => r,
        },
    };
    r.map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => Error::PortInUse { port: *port },
        io::ErrorKind::PermissionDenied => Error::PrivilegedPort { port: *port },
        _ => Error::Unpublishable {
            port: *port,
            reason: format!("bind host port {}: {e}", port.host_port),
        },
    })
}

impl Bound {
    /// Serve the ports into the network namespace `netns` (a descriptor of it, e.g. of
    /// /proc/PID/ns/net). Returns once the loop runs in that namespace with its routing rules
    /// in place, or with what stopped it. The caller must hold CAP_SYS_ADMIN and CAP_NET_ADMIN
    /// over the namespace (its owner's user namespace, or root).
    pub fn start(self, netns: OwnedFd) -> Result<Forwarder> {
        // Two descriptors a connection and a pipe pair each: let this process use what its
        // hard limit allows (children started before keep theirs).
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        let stop = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)
            .map_err(|e| io_err("create eventfd")(e.into()))?;
        let stop_fd = stop
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_err("duplicate eventfd"))?;
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("rbox-forward".into())
            .stack_size(256 << 10)
            .spawn(move || {
                let mut l = match Loop::enter(self, &netns, stop_fd) {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return None;
                    }
                };
                drop(netns);
                l.run();
                Some(Bound {
                    ports: std::mem::take(&mut l.ports),
                })
            })
            .map_err(io_err("start the port forwarder thread"))?;
        let started = ready_rx.recv().unwrap_or_else(|_| {
            Err(Error::Forwarder {
                message: "the forwarder thread ended before it was ready".into(),
            })
        });
        let f = Forwarder {
            stop,
            thread: Some(thread),
        };
        started.map(|()| f)
    }
}

impl Forwarder {
    /// End the loop and wait for it: every port is closed when this returns.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// End the loop and its connections but keep the host ports bound (clients queue on
    /// them meanwhile), to serve them again with [`Bound::start`], e.g. into the same
    /// namespace once the container's command runs again. Its thread is gone when this
    /// returns.
    pub fn pause(mut self) -> Option<Bound> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Option<Bound> {
        let t = self.thread.take()?;
        let _ = self.stop.write(1);
        t.join().ok().flatten()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// epoll tokens: the kind in the top byte, an index or connection id below it
const STOP: u64 = 0;
const HOST: u64 = 1 << 56;
const CLIENT: u64 = 2 << 56;
const BACKEND: u64 = 3 << 56;
const FLOW: u64 = 4 << 56;
const KIND: u64 = 0xff << 56;

/// The container's addresses that clients are dialled at.
#[derive(Debug, Clone, Copy)]
struct Dest {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

/// One direction of a TCP connection: its pipe and how far it has got.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// its capacity in bytes
    size: usize,
    /// grown to BIG_PIPE
    big: bool,
    fill: usize,
    eof: bool,
}

struct Conn {
    client: TcpStream,
    backend: TcpStream,
    connected: bool,
    up: Pipe,
    down: Pipe,
}

struct Flow {
    sock: UdpSocket,
    host: usize,
    peer: SocketAddr,
    last: Instant,
}

struct Loop {
    epoll: Epoll,
    /// the stop eventfd, registered in `epoll`: open as long as the loop runs
    _stop: OwnedFd,
    ports: Vec<(PortMapping, HostSocket)>,
    dest: Dest,
    conns: HashMap<u64, Conn>,
    flows: HashMap<u64, Flow>,
    flow_of: HashMap<(usize, SocketAddr), u64>,
    /// pipes grown to BIG_PIPE now
    big_pipes: usize,
    /// a descriptor held to be given up when the process runs out of them (see accept_all)
    spare: Option<std::fs::File>,
    next: u64,
    buf: Vec<u8>,
}

impl Loop {
    /// Join the namespace, find the container's addresses, install the reply routing, and
    /// register the host sockets.
    fn enter(bound: Bound, netns: &OwnedFd, stop: OwnedFd) -> Result<Loop> {
        let fail = |what: &str, e: io::Error| Error::Forwarder {
            message: format!("{what}: {e}"),
        };
        nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| fail("join the container's network namespace", e.into()))?;
        let dest = container_addresses();
        let mut rules: Vec<(Proto, u16)> = bound
            .ports
            .iter()
            .map(|(p, _)| (p.proto, p.container_port))
            .collect();
        rules.sort();
        rules.dedup();
        let lo = nix::net::if_::if_nametoindex("lo")
            .map_err(|e| fail("find the container's loopback device", e.into()))?;
        netlink::route_replies_locally(&rules, lo)
            .map_err(|e| fail("route replies of published ports in the container", e))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| fail("create epoll", e.into()))?;
        epoll
            .add(&stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))
            .map_err(|e| fail("watch the stop event", e.into()))?;
        for (i, (_, s)) in bound.ports.iter().enumerate() {
            let fd = match s {
                HostSocket::Tcp(l) => l.as_fd(),
                HostSocket::Udp(u) => u.as_fd(),
            };
            epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, HOST | i as u64))
                .map_err(|e| fail("watch a host port", e.into()))?;
        }
        Ok(Loop {
            epoll,
            _stop: stop,
            ports: bound.ports,
            dest,
            conns: HashMap::new(),
            flows: HashMap::new(),
            flow_of: HashMap::new(),
            big_pipes: 0,
            spare: std::fs::File::open("/dev/null").ok(),
            next: 1,
            buf: vec![0; 65536],
        })
    }

    fn run(&mut self) {
        let mut events = [EpollEvent::empty(); 64];
        let mut swept = Instant::now();
        loop {
            let timeout = if self.flows.is_empty() {
                EpollTimeout::NONE
            } else {
                EpollTimeout::try_from(Duration::from_secs(5)).unwrap_or(EpollTimeout::NONE)
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            for ev in &events[..n] {
                let token = ev.data();
                let id = token & !KIND;
                match token & KIND {
                    STOP if token == STOP => return,
                    HOST => self.host_ready(id as usize),
                    CLIENT | BACKEND => self.conn_ready(id, token & KIND == BACKEND),
                    FLOW => self.flow_ready(id),
                    _ => {}
                }
            }
            if swept.elapsed() >= Duration::from_secs(5) {
                swept = Instant::now();
                self.sweep_flows();
            }
        }
    }

    fn host_ready(&mut self, i: usize) {
        match &self.ports[i].1 {
            HostSocket::Tcp(_) => self.accept_all(i),
            HostSocket::Udp(_) => self.relay_from_clients(i),
        }
    }

    fn accept_all(&mut self, i: usize) {
        loop {
            let HostSocket::Tcp(l) = &self.ports[i].1 else {
                return;
            };
            let (client, peer) = match l.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: the listener stays readable, and the loop would spin
                    // on it. Spend the spare descriptor to take the client and close it.
                    self.spare = None;
                    if let Ok((c, _)) = l.accept() {
                        reset(&c);
                    }
                    self.spare = std::fs::File::open("/dev/null").ok();
                    return;
                }
                // the client gave up already: next time
                Err(_) => return,
            };
            let port = self.ports[i].0.container_port;
            // a client the loop cannot serve is closed; there is nobody to tell from here
            let _ = self.dial(client, peer, port);
        }
    }

    /// Open the container side of a new client: a transparent socket with the client's
    /// address, connecting (without blocking) to the container.
    fn dial(&mut self, client: TcpStream, peer: SocketAddr, port: u16) -> io::Result<()> {
        client.set_nonblocking(true)?;
        let _ = client.set_nodelay(true);
        let (fd, to) = container_socket(self.dest, peer, port, SockType::Stream)?;
        match connect(&fd, to) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => {
                reset(&client);
                return Err(e.into());
            }
        }
        let backend = TcpStream::from(fd);
        let _ = backend.set_nodelay(true);
        let id = self.next;
        self.next += 1;
        let edge = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        self.epoll
            .add(&backend, EpollEvent::new(edge, BACKEND | id))?;
        self.conns.insert(
            id,
            Conn {
                client,
                backend,
                connected: false,
                up: Pipe::new()?,
                down: Pipe::new()?,
            },
        );
        Ok(())
    }

    fn conn_ready(&mut self, id: u64, backend_side: bool) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if !c.connected {
            if !backend_side {
                return;
            }
            match c.backend.take_error() {
                Ok(None) if c.backend.peer_addr().is_ok() => {}
                // still connecting (a spurious wake-up)
                Ok(None) => return,
                // refused or unreachable: the client sees a reset, as from a closed port
                _ => {
                    reset(&c.client);
                    self.close(id);
                    return;
                }
            }
            c.connected = true;
            let edge = EpollFlags::EPOLLIN
                | EpollFlags::EPOLLOUT
                | EpollFlags::EPOLLRDHUP
                | EpollFlags::EPOLLET;
            if self
                .epoll
                .add(&c.client, EpollEvent::new(edge, CLIENT | id))
                .is_err()
            {
                self.close(id);
                return;
            }
        }
        let up = c.up.pump(&c.client, &c.backend, &mut self.big_pipes);
        let down = c.down.pump(&c.backend, &c.client, &mut self.big_pipes);
        match (up, down) {
            (Ok(true), Ok(true)) => self.close(id),
            (Ok(_), Ok(_)) => {}
            (Err(_), _) => {
                reset(&c.backend);
                self.close(id);
            }
            (_, Err(_)) => {
                reset(&c.client);
                self.close(id);
            }
        }
    }

    fn close(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            self.big_pipes -= usize::from(c.up.big) + usize::from(c.down.big);
            let _ = self.epoll.delete(&c.client);
            let _ = self.epoll.delete(&c.backend);
        }
    }

    /// Datagrams from host clients, each sent on to the container from its client's flow.
    fn relay_from_clients(&mut self, i: usize) {
        loop {
            let HostSocket::Udp(u) = &self.ports[i].1 else {
                return;
            };
            let (n, peer) = match u.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let port = self.ports[i].0.container_port;
            let id = match self.flow_of.get(&(i, peer)) {
                Some(&id) => id,
                None => match self.open_flow(i, peer, port) {
                    Ok(id) => id,
                    // dropped like a datagram the network lost
                    Err(_) => continue,
                },
            };
            if let Some(f) = self.flows.get_mut(&id) {
                f.last = Instant::now();
                let to = destination(self.dest, peer, port);
                let _ = f.sock.send_to(&self.buf[..n], to);
            }
        }
    }

    fn open_flow(&mut self, host: usize, peer: SocketAddr, port: u16) -> io::Result<u64> {
        let (fd, _) = container_socket(self.dest, peer, port, SockType::Datagram)?;
        let sock = UdpSocket::from(fd);
        let id = self.next;
        self.next += 1;
        self.epoll.add(
            &sock,
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, FLOW | id),
        )?;
        self.flows.insert(
            id,
            Flow {
                sock,
                host,
                peer,
                last: Instant::now(),
            },
        );
        self.flow_of.insert((host, peer), id);
        Ok(id)
    }

    /// Replies from the container, back to the flow's client from the host port.
    fn flow_ready(&mut self, id: u64) {
        let Some(f) = self.flows.get_mut(&id) else {
            return;
        };
        let HostSocket::Udp(host) = &self.ports[f.host].1 else {
            return;
        };
        loop {
            match f.sock.recv_from(&mut self.buf) {
                Ok((n, _)) => {
                    f.last = Instant::now();
                    let _ = host.send_to(&self.buf[..n], f.peer);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn sweep_flows(&mut self) {
        let idle: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last.elapsed() >= UDP_IDLE)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(f) = self.flows.remove(&id) {
                let _ = self.epoll.delete(&f.sock);
                self.flow_of.remove(&(f.host, f.peer));
            }
        }
    }
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = nix::fcntl::fcntl(&w, FcntlArg::F_GETPIPE_SZ).map_or(PIPE_SIZE, |n| n as usize);
        Ok(Pipe {
            r,
            w,
            size,
            big: false,
            fill: 0,
            eof: false,
        })
    }

    /// Grow to BIG_PIPE (kept at its size when the user's pipe budget says no).
    fn grow(&mut self, big_pipes: &mut usize) {
        if let Ok(n) = nix::fcntl::fcntl(&self.w, FcntlArg::F_SETPIPE_SZ(BIG_PIPE as i32)) {
            self.size = n as usize;
            self.big = true;
            *big_pipes += 1;
        }
    }

    /// Move what `src` has to `dst` until one of them would block. Ok(true) once `src` has
    /// ended and everything reached `dst` (whose write side is then shut).
    fn pump(
        &mut self,
        src: &TcpStream,
        dst: &TcpStream,
        big_pipes: &mut usize,
    ) -> io::Result<bool> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            while self.fill > 0 {
                match splice(&self.r, None, dst, None, self.fill, flags) {
                    Ok(n) => self.fill -= n.min(self.fill),
                    Err(Errno::EAGAIN) => return Ok(false),
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if self.eof {
                let _ = dst.shutdown(Shutdown::Write);
                return Ok(true);
            }
            match splice(src, None, &self.w, None, self.size, flags) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.fill += n;
                    if n >= self.size && !self.big && *big_pipes < BIG_PIPES {
                        self.grow(big_pipes);
                    }
                }
                Err(Errno::EAGAIN) => return Ok(false),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A socket in the container's namespace (this thread's) for a client at `peer`: bound to
/// the client's address with IP_TRANSPARENT where the container can be reached over the
/// client's family, and the address to reach the container's `port` at.
fn container_socket(
    dest: Dest,
    peer: SocketAddr,
    port: u16,
    kind: SockType,
) -> io::Result<(OwnedFd, SocketAddr)> {
    let to = destination(dest, peer, port);
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = sock::socket(
        family,
        kind,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let source = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    if source.is_ipv4() == to.is_ipv4() {
        let transparent = match family {
            AddressFamily::Inet => {
                sock::setsockopt(&fd, sockopt::IpTransparent, &true).map_err(io::Error::from)
            }
            _ => sys::set_ipv6_transparent(&fd),
        };
        if transparent.is_ok() {
            let _ = sock::setsockopt(&fd, sockopt::ReuseAddr, &true);
            // the client's port may be taken in the container: then any port
            if bind_to(&fd, source).is_err() {
                let _ = bind_to(&fd, SocketAddr::new(source.ip(), 0));
            }
        }
    }
    Ok((fd, to))
}

/// Where the container's `port` is reached for a client at `peer`: its address of the
/// client's family if it has one, else its other one, else loopback (a namespace with no
/// other address).
fn destination(dest: Dest, peer: SocketAddr, port: u16) -> SocketAddr {
    let ip = match (peer.ip().to_canonical(), dest.v4, dest.v6) {
        (IpAddr::V6(_), _, Some(v6)) => IpAddr::V6(v6),
        (_, Some(v4), _) => IpAddr::V4(v4),
        (_, None, Some(v6)) => IpAddr::V6(v6),
        (_, None, None) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, port)
}

fn bind_to(fd: &OwnedFd, a: SocketAddr) -> nix::Result<()> {
    match a {
        SocketAddr::V4(v4) => sock::bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => sock::bind(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    }
}

fn connect(fd: &OwnedFd, a: SocketAddr) -> nix::Result<()> {
    match a {
        SocketAddr::V4(v4) => sock::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => sock::connect(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    }
}

/// Close with a reset rather than an orderly end (SO_LINGER 0), when the other side failed.
fn reset(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = sock::setsockopt(s, sockopt::Linger, &l);
}

/// The first global IPv4 and IPv6 addresses of an up, non-loopback interface in this thread's
/// network namespace (the bridge's tap device).
fn container_addresses() -> Dest {
    let mut d = Dest { v4: None, v6: None };
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return d;
    };
    for a in addrs {
        use nix::net::if_::InterfaceFlags as F;
        if !a.flags.contains(F::IFF_UP) || a.flags.contains(F::IFF_LOOPBACK) {
            continue;
        }
        let Some(addr) = a.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            d.v4 = d.v4.or(Some(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = v6.ip();
            // link-local addresses need a scope: not worth dialling
            if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                d.v6 = d.v6.or(Some(ip));
            }
        }
    }
    d
}
