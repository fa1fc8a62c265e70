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

use rbox_netns::{installed, parse_publish, pick_host_ports, start, Backend, Error};

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
    // UDP on the same port number: echo each datagram.
    let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = u.recv_from(&mut buf) {
            let _ = u.send_to(&buf[..n], from);
        }
    });
    println!("listening");
    for s in l.incoming() {
        let mut s = s.unwrap();
        let _ = std::io::Write::write_all(&mut s, format!("{GREETING}\n").as_bytes());
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
    let mut s = TcpStream::connect((ip, port)).expect("connect to the published port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
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

fn bridge_and_publish(backend: &str, address: &str) {
    if !have(backend) {
        return;
    }
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let mut ports = parse_publish("127.0.0.1::80").unwrap();
    // UDP on all addresses: replies to a client on the host's loopback are lost with both
    // helpers as installed here (pasta 2023-03's loopback splice, slirp4netns 1.2), so the
    // client uses the host's own global address.
    ports.extend(parse_publish("80/udp").unwrap());
    pick_host_ports(&mut ports).unwrap();
    let (port, udp_port) = (ports[0].host_port, ports[1].host_port);
    let backend: Backend = backend.parse().unwrap();
    let helper = start(target.pid(), &backend, &ports, run_dir.path()).unwrap();
    assert_eq!(helper.ports(), &ports[..]);

    let addr = target.ip(&["-4", "addr", "show"]);
    assert!(addr.contains(address), "{addr}");
    let route = target.ip(&["-4", "route", "show"]);
    assert!(route.contains("default via"), "{route}");
    assert_eq!(fetch(port).trim(), GREETING);
    match host_address() {
        Some(ip) => assert_eq!(udp_echo(&ip, udp_port, b"ping over udp"), b"ping over udp"),
        None => eprintln!("SKIP UDP: the host has no global IPv4 address"),
    }

    let pid = helper.pid();
    helper.stop().unwrap();
    assert_gone(pid);
    assert_empty(run_dir.path());
    // The port is free again.
    TcpListener::bind(("127.0.0.1", port)).unwrap();
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

/// pasta (unlike slirp4netns 1.2) publishes on an IPv6 host address.
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
    assert_eq!(fetch_from("::1", ports[0].host_port).trim(), GREETING);
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
    let backend = if installed().pasta.is_some() {
        "pasta"
    } else {
        "slirp4netns"
    };
    let port = start_at - 1;
    let ports = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    // No target needed: the host port is checked before anything starts.
    let err = start(1, &backend.parse().unwrap(), &ports, run_dir.path()).unwrap_err();
    assert!(matches!(err, Error::PrivilegedPort { .. }), "{err}");
    assert!(
        err.to_string().contains("needs root or a lower sysctl"),
        "{err}"
    );
}

fn port_in_use(backend: &str) {
    if !have(backend) {
        return;
    }
    let target = Target::new();
    let run_dir = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let ports = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
    let err = start(
        target.pid(),
        &backend.parse().unwrap(),
        &ports,
        run_dir.path(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::PortInUse { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("publish 80/tcp -> 127.0.0.1:{port}: host port {port}/tcp is already in use")
    );
    assert_empty(run_dir.path());
}

#[test]
fn slirp4netns_port_in_use() {
    port_in_use("slirp4netns");
}

#[test]
fn pasta_port_in_use() {
    port_in_use("pasta");
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
    let out = Command::new("setpriv")
        .args(["--reuid=rboxsub", "--regid=rboxsub", "--init-groups"])
        .args(["env", "HOME=/home/rboxsub"])
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

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
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
