//! Published-port specs: `-p [ip:][hostPort:]containerPort[/tcp|/udp]` as Podman spells them,
//! parsed into one [`PortMapping`] per port. This module only parses; choosing a random host
//! port (host port 0) and forwarding belong to the caller and to the backends.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::{Error, Result};

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port. `host_port == 0` means "any free port": the caller picks one before
/// starting a backend. `host_ip == None` means all addresses (Podman shows `HostIp: ""`;
/// `0.0.0.0` is normalised to `None` as Podman does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    /// `podman port` style: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let host = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port, self.proto, host, self.host_port
        )
    }
}

/// Parse one `-p/--publish` value into its mappings (one per port of a range).
///
/// Accepted as Podman 4 accepts them (checked against `podman create -p` + inspect): `80`,
/// `8080:80`, `:80`, `ip:8080:80`, `ip::80`, `[v6]:8080:80`, `[v6]::80`, ranges
/// `8000-8010:80-90` (equal lengths), `80-90` (random host ports), `/tcp` or `/udp` in any case.
/// Unlike Podman 4 (which refuses it) a host port `0` means "random", as in Docker and
/// Podman 5.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>> {
    let bad = |reason: &str| Error::InvalidPublish {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    if spec.is_empty() {
        return Err(bad("empty port spec"));
    }
    let (addr_part, proto) = match spec.split_once('/') {
        None => (spec, Proto::Tcp),
        Some((_, p)) if p.contains('/') => {
            return Err(bad("the protocol can only be given once"));
        }
        Some((a, p)) => {
            let proto = match p.to_ascii_lowercase().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "" => return Err(bad("empty protocol after `/`")),
                other => return Err(bad(&format!("unsupported protocol `{other}` (tcp or udp)"))),
            };
            (a, proto)
        }
    };

    // Split off a bracketed IPv6 address first: its colons are not separators.
    let (host_ip, rest): (Option<&str>, &str) = if let Some(after) = addr_part.strip_prefix('[') {
        let (ip, rest) = after
            .split_once(']')
            .ok_or_else(|| bad("missing `]` after the IPv6 address"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("expected `:` after the bracketed address"))?;
        if !rest.contains(':') {
            return Err(bad(
                "a host address needs a host port (may be empty) and a container port",
            ));
        }
        (Some(ip), rest)
    } else {
        let parts: Vec<&str> = addr_part.split(':').collect();
        match parts.len() {
            1 | 2 => (None, addr_part),
            3 => {
                let (ip, rest) = addr_part.split_once(':').unwrap_or_default();
                (Some(ip), rest)
            }
            _ => {
                return Err(bad(
                    "expected [[hostIP:]hostPort:]containerPort (IPv6 addresses in brackets)",
                ))
            }
        }
    };

    let host_ip = match host_ip {
        None => None,
        Some("") => return Err(bad("empty host address")),
        Some(s) => {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| bad(&format!("`{s}` is not an IP address")))?;
            (!ip.is_unspecified() || ip.is_ipv6()).then_some(ip)
        }
    };

    let (host, container) = match rest.split_once(':') {
        None => (None, rest),
        Some((h, c)) => (Some(h), c),
    };
    let container = parse_range(container).map_err(|e| bad(&format!("container port: {e}")))?;
    if container.0 == 0 {
        return Err(bad("container port: 0 is not a port"));
    }
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(parse_range(h).map_err(|e| bad(&format!("host port: {e}")))?),
    };
    let len = container.1 - container.0;
    if let Some((hs, he)) = host {
        if he - hs != len {
            return Err(bad(&format!(
                "host and container port ranges have different lengths: {} vs {}",
                u32::from(he - hs) + 1,
                u32::from(len) + 1
            )));
        }
        if hs == 0 && len > 0 {
            return Err(bad("host port 0 (random) cannot start a range"));
        }
    }
    Ok((0..=len)
        .map(|i| PortMapping {
            host_ip,
            host_port: host.map_or(0, |(hs, _)| if hs == 0 { 0 } else { hs + i }),
            container_port: container.0 + i,
            proto,
        })
        .collect())
}

/// Give every mapping with host port 0 a free port of its own, as the kernel picks them for
/// a bind to port 0 (all sockets are held until every port is chosen, so no two mappings
/// get the same one). Racy by nature, like Podman's: another process may take the port
/// before the helper binds it, which [`crate::start`] then reports as in use.
pub fn pick_host_ports(ports: &mut [PortMapping]) -> Result<()> {
    use std::net::{SocketAddr, TcpListener, UdpSocket};
    let mut held = Vec::new();
    for p in ports.iter_mut().filter(|p| p.host_port == 0) {
        let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let addr = SocketAddr::new(ip, 0);
        let bound = match p.proto {
            Proto::Tcp => TcpListener::bind(addr).and_then(|l| {
                let port = l.local_addr()?.port();
                held.push(Box::new(l) as Box<dyn std::any::Any>);
                Ok(port)
            }),
            Proto::Udp => UdpSocket::bind(addr).and_then(|s| {
                let port = s.local_addr()?.port();
                held.push(Box::new(s) as Box<dyn std::any::Any>);
                Ok(port)
            }),
        };
        p.host_port = bound.map_err(|e| Error::Unpublishable {
            port: *p,
            reason: format!("pick a free host port on {ip}: {e}"),
        })?;
    }
    Ok(())
}

/// `N` or `N-M` with `N < M`; the text of the error is a clause for [`parse_publish`].
fn parse_range(s: &str) -> std::result::Result<(u16, u16), String> {
    let port = |p: &str| -> std::result::Result<u16, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{p}` is not a port number"));
        }
        p.parse::<u16>()
            .map_err(|_| format!("{p} is out of range (1-65535)"))
    };
    match s.split_once('-') {
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a == 0 {
                return Err("0 is not a port".to_string());
            }
            if b <= a {
                return Err(format!(
                    "the end of range {a}-{b} must be higher than its start"
                ));
            }
            Ok((a, b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortMapping {
        let v = parse_publish(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v[0]
    }

    fn pm(ip: Option<&str>, host: u16, container: u16, proto: Proto) -> PortMapping {
        PortMapping {
            host_ip: ip.map(|s| s.parse().unwrap()),
            host_port: host,
            container_port: container,
            proto,
        }
    }

    // Each accepted spec with what `podman create -p SPEC` + inspect showed (host port 0 where
    // Podman picked a random one).
    #[test]
    fn accepted_like_podman() {
        use Proto::*;
        assert_eq!(one("80"), pm(None, 0, 80, Tcp));
        assert_eq!(one("8080:80"), pm(None, 8080, 80, Tcp));
        assert_eq!(one(":80"), pm(None, 0, 80, Tcp));
        assert_eq!(
            one("127.0.0.1:8080:80"),
            pm(Some("127.0.0.1"), 8080, 80, Tcp)
        );
        assert_eq!(one("127.0.0.1::80"), pm(Some("127.0.0.1"), 0, 80, Tcp));
        assert_eq!(one("0.0.0.0:8080:80"), pm(None, 8080, 80, Tcp));
        assert_eq!(one("[::1]:8080:80"), pm(Some("::1"), 8080, 80, Tcp));
        assert_eq!(one("[::1]::80"), pm(Some("::1"), 0, 80, Tcp));
        assert_eq!(one("[::]:8080:80"), pm(Some("::"), 8080, 80, Tcp));
        assert_eq!(one("80/udp"), pm(None, 0, 80, Udp));
        assert_eq!(one("8080:80/udp"), pm(None, 8080, 80, Udp));
        assert_eq!(one("8080:80/tcp"), pm(None, 8080, 80, Tcp));
        assert_eq!(one("8080:80/TCP"), pm(None, 8080, 80, Tcp));
        assert_eq!(one("65535:80"), pm(None, 65535, 80, Tcp));
        // Docker and Podman 5: 0 = random (Podman 4 refuses it).
        assert_eq!(one("0:80"), pm(None, 0, 80, Tcp));
    }

    #[test]
    fn ranges() {
        use Proto::*;
        assert_eq!(
            parse_publish("8000-8002:80-82").unwrap(),
            vec![
                pm(None, 8000, 80, Tcp),
                pm(None, 8001, 81, Tcp),
                pm(None, 8002, 82, Tcp)
            ]
        );
        assert_eq!(
            parse_publish("80-82").unwrap(),
            vec![
                pm(None, 0, 80, Tcp),
                pm(None, 0, 81, Tcp),
                pm(None, 0, 82, Tcp)
            ]
        );
        assert_eq!(
            parse_publish("127.0.0.1:9000-9001:53-54/udp").unwrap(),
            vec![
                pm(Some("127.0.0.1"), 9000, 53, Udp),
                pm(Some("127.0.0.1"), 9001, 54, Udp)
            ]
        );
    }

    // Each refused spec was refused by podman too; the reason is ours, one line.
    #[test]
    fn refused_like_podman() {
        for (spec, reason) in [
            ("8000-8001:80-82", "different lengths: 2 vs 3"),
            ("8080-8082:80", "different lengths: 3 vs 1"),
            ("8080:80-82", "different lengths: 1 vs 3"),
            ("9000-9002:80/udp", "different lengths: 3 vs 1"),
            ("::80", "empty host address"),
            ("::1:8080:80", "expected [[hostIP:]hostPort:]containerPort"),
            ("1:2:3:4", "expected [[hostIP:]hostPort:]containerPort"),
            ("abc", "container port: `abc` is not a port number"),
            (" 80", "container port: ` 80` is not a port number"),
            ("70000:80", "host port: 70000 is out of range"),
            ("8080:65536", "container port: 65536 is out of range"),
            ("8080:0", "container port: 0 is not a port"),
            ("-1:80", "host port: `` is not a port number"),
            ("1.2.3:80:80", "`1.2.3` is not an IP address"),
            ("localhost:8080:80", "`localhost` is not an IP address"),
            ("[fe80::1%eth0]:8080:80", "is not an IP address"),
            (
                "127.0.0.1:80",
                "host port: `127.0.0.1` is not a port number",
            ),
            ("[::1]:80", "needs a host port"),
            ("80/tcp/udp", "protocol can only be given once"),
            ("8080:80/", "empty protocol"),
            ("8080:80/sctp", "unsupported protocol `sctp`"),
            ("80-80", "must be higher than its start"),
            ("9-8:80-79", "must be higher than its start"),
            ("", "empty port spec"),
        ] {
            let err = parse_publish(spec).unwrap_err().to_string();
            assert!(err.contains(reason), "{spec:?}: {err}");
            assert!(
                err.starts_with(&format!("invalid port spec `{spec}`: ")),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn random_host_ports_are_picked_once_each() {
        let mut v = parse_publish("127.0.0.1::80-82").unwrap();
        v.extend(parse_publish("127.0.0.1:9999:53/udp").unwrap());
        pick_host_ports(&mut v).unwrap();
        let mut hosts: Vec<u16> = v[..3].iter().map(|p| p.host_port).collect();
        assert!(hosts.iter().all(|&h| h != 0), "{hosts:?}");
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), 3);
        assert_eq!(v[3].host_port, 9999);
        assert_eq!(v[0].container_port, 80);
    }

    #[test]
    fn display_like_podman_port() {
        assert_eq!(one("8080:80").to_string(), "80/tcp -> 0.0.0.0:8080");
        assert_eq!(one("[::1]:8080:53/udp").to_string(), "53/udp -> [::1]:8080");
    }
}
