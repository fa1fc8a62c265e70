//! The real helpers against a real namespace: a target process in a new user+network
//! namespace (`unshare --user --map-root-user --net`) that is itself a TCP server (this test
//! binary re-run as `serve`), bridged by each backend, reached from the host through a
//! published port, then stopped with nothing left behind.
//!
//! Run as root, `as_unprivileged_user` re-runs this binary as the test user `rboxsub`, so one
//! `cargo test -p rbox-netns` covers both (the binary must be readable by that user:
//! `chmod -R o+rX target`; /dev/net/tun must be mode 0666). With `CI=true` a missing helper or
//! tool fails the test instead of skipping it.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rbox_netns::{
    bind, installed, parse_publish, pick_host_ports, start, Backend, Error, Forwarder,
};

const SERVE_ENV: &str = "RBOX_NETNS_TEST_SERVE";
const GREETING: &str = "hello from the namespace";

/// Not a test of its own: the server the target process runs (see `Target::new`).
#[test]
fn serve() {
    let Ok(port) = std::env::var(SERVE_ENV) else {
        return;
    };
    let port = port.parse::<u16>().unwrap();
    // [::] takes IPv4 too (bindv6only is 0 in a new namespace).
    let l = TcpListener::bind(("::", port)).unwrap();
    // A service for the container only: published, it must not be reachable.
    let private = TcpListener::bind(("127.0.0.1", port + 1)).unwrap();
    // UDP on the same port number: echo each datagram, after the sender's address.
    let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = u.recv_from(&mut buf) {
            let mut reply = format!("{}: ", from.ip()).into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = u.send_to(&reply, from);
        }
    });
    std::thread::spawn(move || {
        for s in private.incoming() {
            let _ = std::io::Write::write_all(&mut s.unwrap(), b"private\n");
        }
    });
    println!("listening");
    for s in l.incoming() {
        let mut s = s.unwrap();
        // the client's address as the server sees it: what the forwarder must keep
        let peer = s.peer_addr().unwrap().ip().to_canonical();
        let _ = std::io::Write::write_all(&mut s, format!("{GREETING} {peer}\n").as_bytes());
    }
}

/// A process in its own user and network namespace, serving TCP and UDP on port 80 inside.
struct Target {
    child: Child,
}

impl Target {
    fn new() -> Target {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("unshare")
            .args(["--user", "--map-root-user", "--net"])
            .arg(exe)
            .args(["--exact", "serve", "--nocapture", "--test-threads=1"])
            .env(SERVE_ENV, "80")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run unshare");
        // The server prints "listening" once bound: the namespace exists and port 80 is open.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert_ne!(out.read_line(&mut line).unwrap(), 0, "target exited early");
            if line.contains("listening") {
                break;
            }
        }
        Target { child }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Run `ip ARGS` inside the target's namespaces.
    fn ip(&self, args: &[&str]) -> String {
        let pid = self.pid().to_string();
        let out = Command::new("nsenter")
            .args(["--preserve-credentials", "-U", "-n", "-t", &pid, "ip"])
            .args(args)
            .output()
            .expect("run nsenter");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// False (and says why) when `name` is missing; under CI=true, a failure instead.
fn have(name: &str) -> bool {
    if installed().get(name).is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} is not installed (CI=true: not skipping)");
    }
    eprintln!("SKIP: {name} is not installed");
    false
}

/// The host's first global IPv4 address (`ip -4 -o addr show scope global`).
fn host_address() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let cidr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(cidr.split('/').next()?.to_string())
}

fn udp_echo(ip: &str, port: u16, payload: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.send_to(payload, (ip, port)).unwrap();
    let mut buf = [0u8; 1500];
    let n = s
        .recv(&mut buf)
        .expect("UDP echo through the published port");
    buf[..n].to_vec()
}

fn fetch(port: u16) -> String {
    fetch_from("127.0.0.1", port)
}

fn fetch_from(ip: &str, port: u16) -> String {
    fetch_result(ip, port).expect("fetch from the published port")
}

fn fetch_result(ip: &str, port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect((ip, port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

fn assert_gone(pid: i32) {
    // pasta's daemon is reaped by its parent, not by us: a zombie counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => {}
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, r)| &r[..1]);
            assert_eq!(state, Some("Z"), "helper {pid} still running: {stat}");
        }
    }
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}

/// rbox's forwarder for the target's published `ports`, in its network namespace.
fn forward(target: &Target, ports: &[rbox_netns::PortMapping]) -> Forwarder {
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", target.pid())).unwrap();
    bind(ports).unwrap().start(netns.into()).unwrap()
}

fn bridge_and_publish(backend: &str, address: &str) {
    if !have(backend) {
        return;
    }
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let mut ports = parse_publish("127.0.0.1::80").unwrap();
    ports.extend(parse_publish("80/udp").unwrap());
    ports.extend(parse_publish("81").unwrap());
    ports.extend(parse_publish("80").unwrap());
    pick_host_ports(&mut ports).unwrap();
    let [port, udp_port, private_port, any_port] = [0, 1, 2, 3].map(|i| ports[i].host_port);
    let backend: Backend = backend.parse().unwrap();
    let helper = start(target.pid(), &backend, &ports, run_dir.path()).unwrap();
    // the ports are rbox's forwarder's, not the helper's
    assert_eq!(helper.ports(), &[]);
    let forwarder = forward(&target, &ports);

    let addr = target.ip(&["-4", "addr", "show"]);
    assert!(addr.contains(address), "{addr}");
    let route = target.ip(&["-4", "route", "show"]);
    assert!(route.contains("default via"), "{route}");
    // the server sees the client's own address
    assert_eq!(fetch(port).trim(), format!("{GREETING} 127.0.0.1"));
    match host_address() {
        Some(ip) => {
            assert_eq!(fetch_from(&ip, any_port).trim(), format!("{GREETING} {ip}"));
            assert_eq!(
                udp_echo(&ip, udp_port, b"ping over udp"),
                format!("{ip}: ping over udp").into_bytes()
            );
        }
        None => eprintln!("SKIP the global address: the host has no global IPv4 address"),
    }
    assert_eq!(
        udp_echo("127.0.0.1", udp_port, b"ping"),
        b"127.0.0.1: ping".to_vec()
    );
    // a service the container keeps to its own loopback is not reachable
    let private = fetch_result("127.0.0.1", private_port);
    assert!(
        !matches!(&private, Ok(t) if t.contains("private")),
        "{private:?}"
    );

    let pid = helper.pid();
    forwarder.stop();
    helper.stop().unwrap();
    assert_gone(pid);
    assert_empty(run_dir.path());
    // The ports are free again.
    TcpListener::bind(("127.0.0.1", port)).unwrap();
    UdpSocket::bind(("0.0.0.0", udp_port)).unwrap();
}

#[test]
fn slirp4netns_bridges_and_publishes() {
    bridge_and_publish("slirp4netns", "inet 10.0.2.100/24");
}

#[test]
fn pasta_bridges_and_publishes() {
    // pasta copies the host's address: any global IPv4 address on an interface but lo.
    bridge_and_publish("pasta", "scope global");
}

/// slirp4netns' own port handler (`port_handler=slirp4netns`) still forwards through its API.
#[test]
fn slirp4netns_port_handler_forwards_itself() {
    if !have("slirp4netns") {
        return;
    }
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let mut ports = parse_publish("127.0.0.1::80").unwrap();
    pick_host_ports(&mut ports).unwrap();
    let backend = "slirp4netns:port_handler=slirp4netns".parse().unwrap();
    let helper = start(target.pid(), &backend, &ports, run_dir.path()).unwrap();
    assert_eq!(helper.ports(), &ports[..]);
    // slirp4netns shows every client as its gateway
    assert_eq!(
        fetch(ports[0].host_port).trim(),
        format!("{GREETING} 10.0.2.2")
    );
    helper.stop().unwrap();
}

/// Published on an IPv6 host address; the container is dialled over IPv6 when it has it.
#[test]
fn pasta_publishes_on_ipv6_loopback() {
    if !have("pasta") {
        return;
    }
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIP: the host has no IPv6 loopback");
        return;
    }
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let mut ports = parse_publish("[::1]::80").unwrap();
    pick_host_ports(&mut ports).unwrap();
    let helper = start(
        target.pid(),
        &"pasta".parse().unwrap(),
        &ports,
        run_dir.path(),
    )
    .unwrap();
    let forwarder = forward(&target, &ports);
    let has_v6 = target
        .ip(&["-6", "addr", "show", "scope", "global"])
        .contains("inet6");
    let seen = if has_v6 { "::1" } else { "10.0.2.100" };
    let got = fetch_from("::1", ports[0].host_port);
    if has_v6 {
        assert_eq!(got.trim(), format!("{GREETING} {seen}"));
    } else {
        assert!(got.starts_with(GREETING), "{got}");
    }
    forwarder.stop();
    helper.stop().unwrap();
    assert_empty(run_dir.path());
}

/// An unprivileged user publishing on a port below net.ipv4.ip_unprivileged_port_start.
#[test]
fn privileged_port_is_clear() {
    let start_at: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if nix_is_root() || start_at <= 1 {
        eprintln!("SKIP: every port is bindable here (root, or ip_unprivileged_port_start=0)");
        return;
    }
    let port = start_at - 1;
    let ports = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
    // No target needed: the host port is bound before anything starts.
    let err = bind(&ports).unwrap_err();
    assert!(matches!(err, Error::PrivilegedPort { .. }), "{err}");
    assert!(
        err.to_string().contains("needs root or a lower sysctl"),
        "{err}"
    );
}

fn port_in_use(ports: &str) {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let ports = parse_publish(&ports.replace("PORT", &port.to_string())).unwrap();
    let err = bind(&ports).unwrap_err();
    assert!(matches!(err, Error::PortInUse { .. }), "{err}");
    let shown = &ports[0];
    assert_eq!(
        err.to_string(),
        format!("publish {shown}: host port {port}/tcp is already in use")
    );
}

#[test]
fn port_in_use_on_one_address() {
    port_in_use("127.0.0.1:PORT:80");
}

#[test]
fn port_in_use_on_any_address() {
    port_in_use("PORT:80");
}

/// slirp4netns forwarding itself checks the host port before it starts.
#[test]
fn slirp4netns_port_in_use() {
    if !have("slirp4netns") {
        return;
    }
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let ports = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
    let backend = "slirp4netns:port_handler=slirp4netns".parse().unwrap();
    let err = start(target.pid(), &backend, &ports, run_dir.path()).unwrap_err();
    assert!(matches!(err, Error::PortInUse { .. }), "{err}");
    assert_empty(run_dir.path());
}

/// Dropping a Helper (e.g. on an error path in the caller) stops it like `stop`.
#[test]
fn drop_stops_the_helper() {
    if !have("slirp4netns") {
        return;
    }
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let helper = start(
        target.pid(),
        &"slirp4netns".parse().unwrap(),
        &[],
        run_dir.path(),
    )
    .unwrap();
    let pid = helper.pid();
    assert!(helper.api_socket().unwrap().exists());
    drop(helper);
    assert_gone(pid);
    assert_empty(run_dir.path());
}

const OWNER_ENV: &str = "RBOX_NETNS_TEST_OWNER";
const RUN_DIR_ENV: &str = "RBOX_NETNS_TEST_RUN_DIR";

/// Not a test of its own: the owner role of `slirp4netns_dies_with_its_owner`. Starts
/// slirp4netns for the pid in $RBOX_NETNS_TEST_OWNER, prints its pid, then waits to be killed.
#[test]
fn owner() {
    let Ok(target) = std::env::var(OWNER_ENV) else {
        return;
    };
    let run_dir = std::env::var_os(RUN_DIR_ENV).unwrap();
    let backend = "slirp4netns".parse().unwrap();
    let helper = start(target.parse().unwrap(), &backend, &[], Path::new(&run_dir)).unwrap();
    println!("helper {}", helper.pid());
    loop {
        std::thread::park();
    }
}

/// A killed owner (rbox, the monitor) takes slirp4netns with it: the kernel closes the
/// exit fd's write end. (Its API socket stays: cleaning up after a killed owner is the
/// caller's job.)
#[test]
fn slirp4netns_dies_with_its_owner() {
    if !have("slirp4netns") {
        return;
    }
    // Orphans of this process come back to it, so the helper can be waited for once its
    // owner is gone.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "owner", "--nocapture", "--test-threads=1"])
        .env(OWNER_ENV, target.pid().to_string())
        .env(RUN_DIR_ENV, run_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(owner.stdout.take().unwrap());
    let mut line = String::new();
    let helper = loop {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "owner exited early");
        if let Some(pid) = line.split("helper ").nth(1) {
            break pid.trim().parse::<i32>().unwrap();
        }
    };
    owner.kill().unwrap();
    owner.wait().unwrap();
    // Blocks until slirp4netns exits; it was reparented to us when its owner died.
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(helper), None).unwrap();
    assert!(
        matches!(status, nix::sys::wait::WaitStatus::Exited(_, _)),
        "{status:?}"
    );
    assert!(run_dir.path().join("slirp4netns.sock").exists());
}

/// As root: the same tests again as the unprivileged test user, the way rbox runs rootless.
#[test]
fn as_unprivileged_user() {
    if !nix_is_root() {
        eprintln!("running as an unprivileged user already: nothing to re-run");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // in a user namespace of its own, as rbox runs (the forwarder joins the container's
    // network namespace from there)
    let out = Command::new("setpriv")
        .args(["--reuid=rboxsub", "--regid=rboxsub", "--init-groups"])
        .args(["env", "HOME=/home/rboxsub"])
        .args(["unshare", "--user", "--map-root-user"])
        .arg(&exe)
        .args(["--skip", "as_unprivileged_user", "--test-threads=2"])
        .current_dir("/")
        .output()
        .expect("run setpriv");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "as rboxsub (is `{}` readable by it? is /dev/net/tun 0666?):\n{text}",
        exe.display()
    );
    eprintln!("as rboxsub:\n{text}");
}

/// Root of the initial user namespace (not root of a namespace of its own).
fn nix_is_root() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    nix::unistd::geteuid().is_root()
        && map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// `rbox info` material: both helpers found, each with a version (CI installs both).
#[test]
fn installed_helpers_have_versions() {
    let found = installed();
    for name in ["pasta", "slirp4netns"] {
        if have(name) {
            let tool = found.get(name).unwrap();
            assert!(tool.path.is_absolute(), "{tool:?}");
            assert!(!tool.version.is_empty(), "{tool:?}");
        }
    }
    if let Some(s) = &found.slirp4netns {
        assert!(s.version.starts_with("slirp4netns version "), "{s:?}");
    }
}
