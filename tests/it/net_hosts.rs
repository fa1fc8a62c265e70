//! Networking on hosts unlike the test machine's own: a host without IPv6, and DNS over TCP
//! through each bridge to a resolver the host names (reachable, or systemd-resolved's stub
//! with its upstream list). Each host is a private network namespace the test makes as root
//! (a veth pair for an external interface and a default route, as a real host has), and
//! every identity's rbox runs inside it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{for_each_user, is_root, require, Env};

const BACKENDS: [&str; 2] = ["pasta", "slirp4netns"];

/// The host's address on its external interface, in the namespaces [`on_a_private_host`] makes.
const HOST_ADDR: &str = "192.0.2.10";
/// A resolver on another machine, as far as the container can tell (an address of the
/// namespace's other veth end).
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// systemd-resolved's stub address.
pub(crate) const STUB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
/// What the test's resolver answers to every A question.
pub(crate) const ANSWER: [u8; 4] = [192, 0, 2, 77];

/// Run `f` on a thread in a new network namespace set up as a small host: loopback, an
/// external interface with an address and a default route, IPv6 disabled everywhere unless
/// `ipv6`. Commands the thread starts (rbox, its helpers) live in that namespace; sockets it
/// opens too.
pub(crate) fn on_a_private_host<T: Send>(ipv6: bool, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare the network namespace");
            if !ipv6 {
                // before any interface exists, so none gets an IPv6 address (::1 included)
                for conf in ["all", "default"] {
                    std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1")
                        .expect("disable IPv6 in the namespace");
                }
            }
            for line in [
                "link set lo up".to_string(),
                "link add v0 type veth peer name v1".into(),
                format!("addr add {HOST_ADDR}/24 dev v0"),
                format!("addr add {UPSTREAM}/32 dev v1"),
                "link set v0 up".into(),
                "link set v1 up".into(),
                "route add default via 192.0.2.1 dev v0 onlink".into(),
            ] {
                let out = Command::new("ip")
                    .args(line.split(' '))
                    .output()
                    .expect("run ip");
                assert!(
                    out.status.success(),
                    "ip {line}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// This thread's network namespace's IPv6 addresses (/proc/net is the main thread's).
fn ipv6_addresses() -> String {
    std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap_or_default()
}

/// GET / on 127.0.0.1:`port` until an HTTP answer comes (the server starts after `run -d`
/// returns) or a deadline passes.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match got {
            Ok(body) if body.starts_with("HTTP/") => return body,
            other => assert!(
                Instant::now() < deadline,
                "no answer on port {port} after 20 s: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pasta and slirp4netns start on a host without IPv6 (no address, not even ::1): the
/// container gets its IPv4 address and route, and a published port serves.
#[test]
fn a_host_without_ipv6_still_works() {
    if !require(is_root(), "root, to make a network namespace without IPv6") {
        return;
    }
    on_a_private_host(false, || {
        assert_eq!(ipv6_addresses(), "", "the namespace still has IPv6");
        for_each_user("no_ipv6", |env| {
            env.import_busybox("busybox");
            for net in BACKENDS {
                let out = env
                    .rbox()
                    .args(["run", "--rm", "--network", net, "busybox"])
                    .args(["sh", "-c", "ip -4 -o addr show scope global; ip route"])
                    .output()
                    .success();
                assert!(out.stdout.contains(" inet "), "{net}: {out}");
                assert!(out.stdout.contains("default via"), "{net}: {out}");
                let port = crate::util::free_port();
                env.rbox()
                    .args(["run", "-d", "--name", "web", "--network", net])
                    .args(["-p", &format!("{port}:80"), "busybox", "sh", "-c"])
                    .arg("mkdir /www && echo hello-no-ipv6 > /www/index.html && exec httpd -f -p 80 -h /www")
                    .output()
                    .success();
                let body = http_get(port);
                assert!(body.contains("hello-no-ipv6"), "{net}: {body}");
                env.rbox().args(["rm", "-f", "web"]).output().success();
            }
        });
    });
}

/// A DNS answer to `query` (any name): [`ANSWER`] for an A question, no answer otherwise.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    end += 5; // the root label, QTYPE, QCLASS
    let qtype = u16::from_be_bytes([*query.get(end - 4)?, *query.get(end - 3)?]);
    let mut r = query.get(..end)?.to_vec();
    r[2] = 0x81; // a response, recursion desired
    r[3] = 0x80; // recursion available, no error
    let a = qtype == 1;
    r[6..12].copy_from_slice(&[0, u8::from(a), 0, 0, 0, 0]);
    if a {
        r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend(ANSWER);
    }
    Some(r)
}

/// Serve DNS on `ip`:53 over UDP and TCP (length-prefixed, one question a connection), on
/// threads that live as long as the test binary; the sockets belong to the calling thread's
/// network namespace.
pub(crate) fn resolver(ip: Ipv4Addr) {
    let udp = UdpSocket::bind((ip, 53)).expect("bind the test resolver's UDP port");
    let tcp = TcpListener::bind((ip, 53)).expect("bind the test resolver's TCP port");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            if let Some(r) = dns_answer(&buf[..n]) {
                let _ = udp.send_to(&r, from);
            }
        }
    });
    std::thread::spawn(move || {
        for mut c in tcp.incoming().flatten() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if c.read_exact(&mut q).is_err() {
                continue;
            }
            if let Some(r) = dns_answer(&q) {
                let mut msg = (r.len() as u16).to_be_bytes().to_vec();
                msg.extend(r);
                let _ = c.write_all(&msg);
            }
        }
    });
}

/// In the container: an A question for probe.test over TCP (busybox nslookup has only UDP)
/// to the first nameserver of its resolv.conf, the answer's bytes in decimal; then the same
/// name through nslookup (UDP).
pub(crate) const ASK_OVER_TCP: &str = r"ns=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)
echo server=$ns
printf '\000\034\022\064\001\000\000\001\000\000\000\000\000\000\005probe\004test\000\000\001\000\001' \
  | timeout 5 nc $ns 53 | od -An -tu1 | tr -s ' \n' '  '
echo
nslookup -type=a probe.test $ns | tail -n 3
";

/// A question over TCP from the container reaches the host's resolver through each
/// bridge: one the host names directly (pasta: the container asks it itself; slirp4netns:
/// through 10.0.2.3), and behind a systemd-resolved stub (127.0.0.53), whose upstream list
/// the container's resolv.conf then names (pasta's own forwarder carries UDP only).
#[test]
fn dns_over_tcp_reaches_the_hosts_resolver() {
    if !require(
        is_root(),
        "root, to make a network namespace and a fake resolv.conf",
    ) {
        return;
    }
    let have_resolved_dir = require(
        Path::new("/run/systemd").is_dir(),
        "/run/systemd, to mount a fake systemd-resolved upstream list over",
    );
    on_a_private_host(true, || {
        resolver(UPSTREAM);
        resolver(STUB);
        for_each_user("dns_tcp", |env| {
            env.import_busybox("busybox");
            let direct = env.write("direct.conf", format!("nameserver {UPSTREAM}\n"));
            let stub = env.write("stub.conf", format!("nameserver {STUB}\nsearch lan\n"));
            env.write(
                "systemd/resolve/resolv.conf",
                format!("nameserver {UPSTREAM}\nsearch lan\n"),
            );
            let mut hosts = vec![("direct", direct.clone(), None)];
            if have_resolved_dir {
                hosts.push(("stub", stub, Some(env.path("systemd"))));
            }
            for (host, conf, resolved) in &hosts {
                for net in BACKENDS {
                    let out = ask(env, net, conf, resolved.as_deref());
                    let server = if net == "slirp4netns" {
                        "10.0.2.3".to_string()
                    } else {
                        UPSTREAM.to_string()
                    };
                    assert!(
                        out.contains(&format!("server={server}\n")),
                        "{host} {net}: {out}"
                    );
                    let answer: Vec<String> = ANSWER.iter().map(u8::to_string).collect();
                    assert!(
                        out.lines()
                            .nth(1)
                            .is_some_and(|l| l.trim_end().ends_with(&answer.join(" "))),
                        "{host} {net}: no answer over TCP: {out}"
                    );
                    assert!(out.contains("Address: 192.0.2.77"), "{host} {net}: {out}");
                }
            }
        });
    });
}

/// Run [`ASK_OVER_TCP`] in a container on `net`, with `conf` as the host's resolv.conf and
/// `resolved` (a directory) as /run/systemd; its output.
pub(crate) fn ask(env: &Env, net: &str, conf: &Path, resolved: Option<&Path>) -> String {
    let mut cmd = env.rbox();
    cmd.bind_over(conf, Path::new("/etc/resolv.conf"));
    if let Some(dir) = resolved {
        cmd.bind_over(dir, Path::new("/run/systemd"));
    }
    cmd.args(["run", "--rm", "--network", net, "busybox", "sh", "-c"])
        .arg(ASK_OVER_TCP)
        .output()
        .success()
        .stdout
}
