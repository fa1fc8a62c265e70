//! The routing policy that lets rbox's forwarder keep a client's address: inside the
//! container's network namespace, replies sent from a published port go back through the
//! loopback device to the forwarder's transparent socket, instead of out to the bridge
//! (see `forward.rs`); and TCP to pasta's DNS forwarding address goes to rbox's relay of DNS
//! over TCP (see `dns.rs`). Two rtnetlink requests, written by hand (one route, and one rule
//! per port or address), because a netlink crate would be ten times this file.
//!
//! Both run in the namespace the calling thread is in; the caller needs CAP_NET_ADMIN over it.

use std::io;

use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::Proto;

/// The routing table of rbox's forwarder: one `local` default route to the loopback device.
pub(crate) const TABLE: u32 = 0x7262; // "rb"
/// The routing table of rbox's DNS relay: a `local` default route to the loopback device whose
/// preferred source is the loopback address (see [`deliver_tcp_locally`]).
pub(crate) const DNS_TABLE: u32 = TABLE + 1;
/// The rules' priority: before the main table's rule (32766).
pub(crate) const PRIORITY: u32 = 0x7262;

const RTM_NEWROUTE: u16 = 24;
const RTM_NEWRULE: u16 = 32;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTA_OIF: u16 = 4;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FRA_IP_PROTO: u16 = 22;
const FRA_SPORT_RANGE: u16 = 23;
const FRA_DST: u16 = 1;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_HOST: u8 = 254;
const RTN_LOCAL: u8 = 2;
const FR_ACT_TO_TBL: u8 = 1;

/// Route everything sent from `ports` (each a container port and protocol) to the loopback
/// device, for IPv4 and, where the namespace has it, IPv6. Idempotent.
pub(crate) fn route_replies_locally(ports: &[(Proto, u16)], lo_index: u32) -> io::Result<()> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(io::Error::from)?;
    let mut seq = 0;
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        seq += 1;
        let route = local_default_route(family, TABLE, None, lo_index, seq);
        match request(&nl, &route) {
            Ok(()) => {}
            // IPv6 disabled in this namespace (or on the host): IPv4 is enough
            Err(_) if family == libc::AF_INET6 as u8 => continue,
            Err(e) => return Err(e),
        }
        for &(proto, port) in ports {
            seq += 1;
            match request(&nl, &sport_rule(family, proto, port, seq)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Deliver TCP sent to `dst` (an address the namespace does not have) to a socket bound
/// there in the namespace itself: rbox's relay of DNS over TCP at pasta's DNS forwarding
/// address, whose UDP still goes to pasta. The route's preferred source is the loopback
/// address: a client's source must be an address the namespace has (the kernel refuses a
/// route whose source it is not, ENETUNREACH, unless the socket is transparent), and the
/// replies to it stay on the loopback device. Idempotent.
pub(crate) fn deliver_tcp_locally(dst: std::net::IpAddr, lo_index: u32) -> io::Result<()> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(io::Error::from)?;
    let family = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    let src = if dst.is_ipv4() {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    };
    request(
        &nl,
        &local_default_route(family, DNS_TABLE, Some(src), lo_index, 1),
    )?;
    match request(&nl, &tcp_to_rule(dst, 2)) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(e),
        _ => Ok(()),
    }
}

/// `ip rule add to DST ipproto tcp lookup TABLE pref PRIORITY`
fn tcp_to_rule(dst: std::net::IpAddr, seq: u32) -> Vec<u8> {
    let (family, len, addr) = match dst {
        std::net::IpAddr::V4(a) => (libc::AF_INET as u8, 32, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (libc::AF_INET6 as u8, 128, a.octets().to_vec()),
    };
    let mut body = vec![family, len, 0, 0, 0, 0, 0, FR_ACT_TO_TBL];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, FRA_TABLE, &DNS_TABLE.to_ne_bytes());
    attr(&mut body, FRA_PRIORITY, &PRIORITY.to_ne_bytes());
    attr(&mut body, FRA_DST, &addr);
    attr(&mut body, FRA_IP_PROTO, &[libc::IPPROTO_TCP as u8]);
    message(
        RTM_NEWRULE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        &body,
    )
}

/// `ip route replace local default dev lo table TABLE [src SRC]`
fn local_default_route(
    family: u8,
    table: u32,
    src: Option<std::net::IpAddr>,
    lo_index: u32,
    seq: u32,
) -> Vec<u8> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags
    let mut body = vec![family, 0, 0, 0, 0, RTPROT_BOOT, RT_SCOPE_HOST, RTN_LOCAL];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, RTA_TABLE, &table.to_ne_bytes());
    attr(&mut body, RTA_OIF, &lo_index.to_ne_bytes());
    match src {
        Some(std::net::IpAddr::V4(a)) => attr(&mut body, RTA_PREFSRC, &a.octets()),
        Some(std::net::IpAddr::V6(a)) => attr(&mut body, RTA_PREFSRC, &a.octets()),
        None => {}
    }
    message(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
        &body,
    )
}

/// `ip rule add ipproto PROTO sport PORT lookup TABLE pref PRIORITY`
fn sport_rule(family: u8, proto: Proto, port: u16, seq: u32) -> Vec<u8> {
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; u32 flags
    let mut body = vec![family, 0, 0, 0, 0, 0, 0, FR_ACT_TO_TBL];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, FRA_TABLE, &TABLE.to_ne_bytes());
    attr(&mut body, FRA_PRIORITY, &PRIORITY.to_ne_bytes());
    let ipproto = match proto {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        Proto::Udp => libc::IPPROTO_UDP as u8,
    };
    attr(&mut body, FRA_IP_PROTO, &[ipproto]);
    // struct fib_rule_port_range { __u16 start, end; }
    let mut range = port.to_ne_bytes().to_vec();
    range.extend_from_slice(&port.to_ne_bytes());
    attr(&mut body, FRA_SPORT_RANGE, &range);
    message(
        RTM_NEWRULE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        &body,
    )
}

/// Append one rtattr (length, type, value, padding to 4 bytes).
fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// A netlink message: struct nlmsghdr (length, type, flags, seq, pid) and `body`.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// Send one request and read its acknowledgement (an NLMSG_ERROR with error 0).
fn request(nl: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    send(nl.as_raw_fd(), msg, MsgFlags::empty()).map_err(io::Error::from)?;
    let mut buf = [0u8; 1024];
    let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io::Error::from)?;
    let field = |at: usize| buf.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    let kind = buf.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match (n >= 20, kind, field(16)) {
        (true, Some(NLMSG_ERROR), Some(e)) => match i32::from_ne_bytes(e) {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(-e)),
        },
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected rtnetlink reply",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_laid_out_as_the_kernel_reads_it() {
        let m = sport_rule(libc::AF_INET as u8, Proto::Udp, 53, 7);
        // header 16 + fib_rule_hdr 12 + table 8 + priority 8 + ipproto 8 (padded) + range 8
        assert_eq!(m.len(), 60);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 60);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWRULE);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m[23], FR_ACT_TO_TBL);
        // the protocol attribute: length 5, type 22, value 17, three bytes of padding
        assert_eq!(&m[44..52], &[5, 0, 22, 0, 17, 0, 0, 0]);
        assert_eq!(u16::from_ne_bytes(m[56..58].try_into().unwrap()), 53);
    }

    #[test]
    fn a_destination_rule_carries_its_prefix() {
        let m = tcp_to_rule("169.254.1.1".parse().unwrap(), 3);
        // header 16 + fib_rule_hdr 12 + table 8 + priority 8 + dst 8 + ipproto 8 (padded)
        assert_eq!(m.len(), 60);
        assert_eq!((m[16], m[17]), (libc::AF_INET as u8, 32));
        assert_eq!(&m[44..52], &[8, 0, 1, 0, 169, 254, 1, 1]);
        assert_eq!(&m[52..57], &[5, 0, 22, 0, 6]);
        let m6 = tcp_to_rule("fd00::53".parse().unwrap(), 4);
        assert_eq!((m6[16], m6[17], m6.len()), (libc::AF_INET6 as u8, 128, 72));
    }
}
