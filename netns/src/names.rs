//! Names for a bridged namespace: which DNS server a container can reach (the host's own, or
//! pasta's forwarder when the host names only loopback resolvers such as systemd-resolved's
//! 127.0.0.53), and which address reaches the host (`host.containers.internal`). Pure
//! functions of the host's resolv.conf and routing table; writing the container's files is
//! the rbox binary's.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use crate::{Backend, PastaOptions};

/// The address pasta answers DNS on when it forwards to a host resolver the container cannot
/// reach itself (link-local, so it clashes with no real network; Podman 5's choice).
pub const PASTA_DNS_FORWARD: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1));

/// The `nameserver` addresses of a resolv.conf text, in order (unparsable ones left out).
pub fn nameservers(resolv: &str) -> Vec<IpAddr> {
    resolv
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|a| a.split('%').next()?.parse().ok())
        .collect()
}

/// systemd-resolved's list of the upstream servers behind its stub (127.0.0.53).
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The host's resolv.conf as a container's starts from: /etc/resolv.conf, read now.
pub fn host_resolv_conf() -> String {
    let etc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstream = std::fs::read_to_string(RESOLVED_UPSTREAM).ok();
    host_resolv(&etc, upstream.as_deref())
}

/// `etc` (the host's /etc/resolv.conf), or systemd-resolved's `upstream` list when `etc`
/// names only loopback resolvers (its stub) and `upstream` names a server another network
/// namespace can reach: the container asks those itself, over UDP and TCP alike, where
/// pasta's forwarder (`--dns-forward`, in passt 2023) carries UDP only.
pub fn host_resolv(etc: &str, upstream: Option<&str>) -> String {
    let servers = nameservers(etc);
    let only_loopback = !servers.is_empty() && servers.iter().all(IpAddr::is_loopback);
    match upstream {
        Some(u) if only_loopback && nameservers(u).iter().any(|a| !a.is_loopback()) => {
            u.to_string()
        }
        _ => etc.to_string(),
    }
}

/// The address pasta forwards DNS from: the user's own `--dns-forward`, else
/// [`PASTA_DNS_FORWARD`] when every nameserver of the host is a loopback address (unreachable
/// from another network namespace, so the container would have none), else none.
pub fn pasta_dns_forward(o: &PastaOptions, host_resolv: &str) -> Option<IpAddr> {
    if let Some(a) = user_value(&o.args, "--dns-forward", None) {
        return a.parse().ok();
    }
    let servers = nameservers(host_resolv);
    (!servers.is_empty() && servers.iter().all(IpAddr::is_loopback)).then_some(PASTA_DNS_FORWARD)
}

/// Whether the user's pasta options already say `--dns-forward`.
pub(crate) fn user_forwards_dns(o: &PastaOptions) -> bool {
    user_value(&o.args, "--dns-forward", None).is_some()
}

/// The value of option `long` (or `short`) in pasta's argument list (`--opt V`, `--opt=V`).
fn user_value<'a>(args: &'a [String], long: &str, short: Option<&str>) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == long || Some(a.as_str()) == short {
            return it.next().map(String::as_str);
        }
        if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}

/// The IPv4 gateway of the default route in a `/proc/net/route` text.
pub fn default_gateway(route: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            return None;
        }
        // the kernel prints the address's network-order bytes read as a native u32, in hex
        let gw = u32::from_str_radix(f[2], 16).ok().filter(|g| *g != 0)?;
        Some(Ipv4Addr::from(gw.to_ne_bytes()))
    })
}

/// The address that reaches the host from a namespace bridged by `backend`, for
/// `host.containers.internal`, given the host's default gateway: pasta maps its gateway
/// address to the host (unless `--no-map-gw`); slirp4netns reaches the host's loopback at
/// its gateway (`.2` of its network) only with `allow_host_loopback=true`, else, as Podman,
/// the host's own address on its default route. `None` when there is none.
pub fn host_address(backend: &Backend, gateway: Option<Ipv4Addr>) -> Option<IpAddr> {
    match backend {
        Backend::Pasta(o) => {
            if o.args.iter().any(|a| a == "--no-map-gw") {
                return None;
            }
            if let Some(g) = user_value(&o.args, "--gateway", Some("-g")) {
                return g.parse().ok();
            }
            gateway.map(IpAddr::V4)
        }
        Backend::Slirp4netns(o) if o.allow_host_loopback => {
            let net = o.cidr.as_deref().unwrap_or("10.0.2.0/24");
            let base: Ipv4Addr = net.split_once('/')?.0.parse().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(u32::from(base) + 2)))
        }
        Backend::Slirp4netns(_) => source_address(gateway?),
    }
}

/// The host's own address on the route to `gateway` (a connected UDP socket sends nothing).
fn source_address(gateway: Ipv4Addr) -> Option<IpAddr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((gateway, 53)).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pasta(spec: &str) -> PastaOptions {
        match spec.parse().unwrap() {
            Backend::Pasta(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn systemd_resolveds_upstream_list_replaces_its_stub() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let upstream = "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n";
        assert_eq!(host_resolv(stub, Some(upstream)), upstream);
        // no list, or one naming only loopback servers: the stub stays (pasta forwards)
        assert_eq!(host_resolv(stub, None), stub);
        assert_eq!(host_resolv(stub, Some("nameserver 127.0.0.1\n")), stub);
        assert_eq!(host_resolv(stub, Some("")), stub);
        // a host naming a reachable server keeps its own file
        let own = "nameserver 10.255.255.53\n";
        assert_eq!(host_resolv(own, Some(upstream)), own);
        assert_eq!(
            host_resolv(
                "nameserver 127.0.0.53\nnameserver 10.0.0.1\n",
                Some(upstream)
            ),
            "nameserver 127.0.0.53\nnameserver 10.0.0.1\n"
        );
    }

    #[test]
    fn forward_only_when_every_host_resolver_is_loopback() {
        let none = pasta("pasta");
        let stub =
            "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        assert_eq!(pasta_dns_forward(&none, stub), Some(PASTA_DNS_FORWARD));
        assert_eq!(
            pasta_dns_forward(&none, "nameserver ::1\nnameserver 127.0.0.1\n"),
            Some(PASTA_DNS_FORWARD)
        );
        assert_eq!(
            pasta_dns_forward(&none, "nameserver 127.0.0.53\nnameserver 10.0.0.1\n"),
            None
        );
        assert_eq!(pasta_dns_forward(&none, "nameserver 10.255.255.53\n"), None);
        assert_eq!(pasta_dns_forward(&none, ""), None);
        let mine = pasta("pasta:--dns-forward,192.0.2.53");
        assert_eq!(
            pasta_dns_forward(&mine, "nameserver 10.0.0.1\n"),
            Some("192.0.2.53".parse().unwrap())
        );
        assert!(user_forwards_dns(&mine) && !user_forwards_dns(&none));
        let eq = pasta("pasta:--dns-forward=192.0.2.54");
        assert_eq!(
            pasta_dns_forward(&eq, stub),
            Some("192.0.2.54".parse().unwrap())
        );
    }

    #[test]
    fn nameservers_in_order() {
        assert_eq!(
            nameservers("nameserver 10.0.0.1\n#nameserver 10.9.9.9\nnameserver fe80::1%eth0\nnameserver bad\n"),
            ["10.0.0.1".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]
        );
    }

    #[test]
    fn gateway_of_the_default_route() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(route), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(
            default_gateway(
                route
                    .lines()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .as_str()
            ),
            None
        );
    }

    #[test]
    fn the_address_that_reaches_the_host() {
        let gw = Some(Ipv4Addr::new(192, 0, 2, 1));
        let b = |s: &str| s.parse::<Backend>().unwrap();
        assert_eq!(
            host_address(&b("pasta"), gw),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(host_address(&b("pasta"), None), None);
        assert_eq!(host_address(&b("pasta:--no-map-gw"), gw), None);
        assert_eq!(
            host_address(&b("pasta:-g,192.0.2.9"), gw),
            Some("192.0.2.9".parse().unwrap())
        );
        assert_eq!(
            host_address(&b("slirp4netns:allow_host_loopback=true"), gw),
            Some("10.0.2.2".parse().unwrap())
        );
        assert_eq!(
            host_address(
                &b("slirp4netns:allow_host_loopback=true,cidr=10.7.0.0/24"),
                None
            ),
            Some("10.7.0.2".parse().unwrap())
        );
        assert_eq!(host_address(&b("slirp4netns"), None), None);
    }
}
