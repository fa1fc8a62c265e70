//! Networking through the user-mode bridges (`--network=pasta`, `--network=slirp4netns`):
//! a published port reaches a server in the container, ps and inspect show it, and the
//! helper process and its files are gone once the container is. Every test runs once per
//! identity, with the real helpers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::util::{eventually, for_each_user, is_root, require, Env};

const BACKENDS: [&str; 2] = ["pasta", "slirp4netns"];

/// GET / on 127.0.0.1:`port`, retried until the server answers (it starts after `run -d`
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

/// A host UDP port nothing is bound to now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The host's first global IPv4 address (what a client on another machine would look like
/// to the container, as far as one machine can show it).
fn host_address() -> Option<String> {
    let out = std::process::Command::new("ip")
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

/// Send `payload` to `ip:port` until a reply comes (the server may not be up yet) or a
/// deadline passes; the reply.
fn udp_ask(ip: &str, port: u16, payload: &str) -> String {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 1500];
    loop {
        s.send_to(payload.as_bytes(), (ip, port)).unwrap();
        if let Ok(n) = s.recv(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(Instant::now() < deadline, "no UDP reply on {ip}:{port}");
    }
}

/// GET / on `ip:port` once: the body, or the error.
fn http_get_once(ip: &str, port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect((ip, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Live (not zombie) processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && alive(&name) {
            found.push(format!("{name}: {text}"));
        }
    }
    found
}

/// The helper processes of container `id` running now: slirp4netns names the container's
/// network directory (`net/<short id>` of the runtime dir) on its command line; pasta's pid
/// is in `pasta.pid` there.
fn helper_of(env: &Env, id: &str) -> Vec<i32> {
    let dir = env.runroot().join("net").join(&id[..12]);
    let mut pids: Vec<i32> = processes_naming(&dir.to_string_lossy())
        .iter()
        .filter_map(|p| p.split(':').next()?.parse().ok())
        .collect();
    if let Ok(text) = std::fs::read_to_string(dir.join("pasta.pid")) {
        pids.extend(text.trim().parse::<i32>().ok());
    }
    still_running(&pids)
}

/// Those of `pids` that are live processes (not zombies).
fn still_running(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|pid| alive(&pid.to_string()))
        .collect()
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_published_port_reaches_the_server_in_the_container() {
    for_each_user("publish", |env| {
        env.import_busybox("busybox");
        for net in BACKENDS {
            let port = crate::util::free_port();
            let id = env
                .rbox()
                .args(["run", "-d", "--name", "web", "--network", net])
                .args(["-p", &format!("{port}:80"), "busybox", "sh", "-c"])
                .arg("mkdir /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www")
                .output()
                .success()
                .text();
            let body = http_get(port);
            assert!(
                body.contains(&format!("hello-{}", &id[..12])),
                "{net}: {body}"
            );
            let helpers = helper_of(env, &id);
            assert!(!helpers.is_empty(), "{net}: no helper runs");
            let ps = env
                .rbox()
                .args(["ps", "--format", "{{.Names}} {{.Ports}}"])
                .output()
                .success()
                .text();
            assert_eq!(ps, format!("web 0.0.0.0:{port}->80/tcp"), "{net}");
            assert_eq!(
                env.inspect("web", "{{json .NetworkSettings.Ports}}"),
                format!(r#"{{"80/tcp":[{{"HostIp":"","HostPort":"{port}"}}]}}"#),
                "{net}"
            );
            assert_eq!(env.inspect("web", "{{.HostConfig.NetworkMode}}"), net);
            // rbox port, as podman port prints it
            let port_of = |args: &[&str]| env.rbox().arg("port").args(args).output();
            assert_eq!(
                port_of(&["web"]).success().text(),
                format!("80/tcp -> 0.0.0.0:{port}")
            );
            assert_eq!(
                port_of(&["web", "80"]).success().text(),
                format!("0.0.0.0:{port}")
            );
            assert_eq!(
                port_of(&["web", "80/tcp"]).success().text(),
                format!("0.0.0.0:{port}")
            );
            assert_eq!(
                port_of(&["-a"]).success().text(),
                format!("{}\t80/tcp -> 0.0.0.0:{port}", &id[..12])
            );
            let out = port_of(&["web", "81"]).code_is(125);
            assert!(
                out.stderr.contains("failed to find published port \"81\""),
                "{out}"
            );
            // rm -f kills the monitor: what it held goes too
            env.rbox().args(["rm", "-f", "web"]).output().success();
            // (killed, a helper takes 20-30 ms more to exit: its tap device's teardown; rbox
            // waits for that only when the helper holds the ports)
            eventually(&format!("{net}: helpers {helpers:?} gone"), || {
                still_running(&helpers).is_empty()
            });
            assert!(!env.runroot().join("net").join(&id[..12]).exists(), "{net}");
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "{net}: port still bound"
            );
        }
    });
}

/// rbox's forwarder: the server in the container sees the client's real address over TCP
/// (busybox httpd logs it) and UDP (the helper's echo names it), from the host's loopback and
/// from its global address; a service bound to the container's own 127.0.0.1 stays private.
#[test]
fn published_ports_keep_the_clients_address() {
    for_each_user("client_address", |env| {
        env.load(&crate::fixtures::helper_docker_archive())
            .success();
        let global = host_address();
        for net in BACKENDS {
            let (tcp, udp, private) = (
                crate::util::free_port(),
                free_udp_port(),
                crate::util::free_port(),
            );
            env.rbox()
                .args(["run", "-d", "--name", "srv", "--network", net])
                .args(["-p", &format!("{tcp}:80"), "-p", &format!("{udp}:5353/udp")])
                .args([
                    "-p",
                    &format!("{private}:81"),
                    "--entrypoint",
                    "sh",
                    "helper",
                ])
                .arg("-c")
                .arg(
                    "mkdir /www && echo hi > /www/index.html && httpd -p 127.0.0.1:81 -h /www \
                     && { httpd -f -vv -p 80 -h /www & } && exec /helper udp-echo 5353",
                )
                .output()
                .success();
            assert!(http_get(tcp).contains("hi"), "{net}");
            assert_eq!(
                udp_ask("127.0.0.1", udp, "ping"),
                "127.0.0.1: ping",
                "{net}"
            );
            if let Some(ip) = &global {
                let body = http_get_once(ip, tcp).unwrap();
                assert!(body.contains("hi"), "{net}: {body}");
                assert_eq!(udp_ask(ip, udp, "ping"), format!("{ip}: ping"), "{net}");
            }
            let got = http_get_once("127.0.0.1", private);
            assert!(
                !matches!(&got, Ok(body) if body.contains("hi")),
                "{net}: the container's loopback service answered: {got:?}"
            );
            let logs = env.rbox().args(["logs", "srv"]).output().success();
            assert!(
                logs.stderr.contains("[::ffff:127.0.0.1]:")
                    || logs.stdout.contains("[::ffff:127.0.0.1]:"),
                "{net}: {logs}"
            );
            if let Some(ip) = &global {
                let seen = format!("[::ffff:{ip}]:");
                assert!(
                    logs.stderr.contains(&seen) || logs.stdout.contains(&seen),
                    "{net}: {logs}"
                );
            }
            env.rbox().args(["rm", "-f", "srv"]).output().success();
            assert!(
                UdpSocket::bind(("0.0.0.0", udp)).is_ok(),
                "{net}: UDP port still bound"
            );
            assert!(
                TcpListener::bind(("0.0.0.0", tcp)).is_ok(),
                "{net}: port still bound"
            );
        }
    });
}

#[test]
fn an_attached_run_is_configured_and_leaves_nothing() {
    for_each_user("attached_net", |env| {
        env.import_busybox("busybox");
        for net in BACKENDS {
            let out = env
                .rbox()
                .args([
                    "run",
                    "--rm",
                    "--network",
                    net,
                    "busybox",
                    "cat",
                    "/proc/net/route",
                ])
                .output()
                .success();
            // a default route (destination 00000000) through the bridge's interface
            assert!(
                out.stdout
                    .lines()
                    .skip(1)
                    .any(|l| l.split_whitespace().nth(1) == Some("00000000")),
                "{net}: no default route:\n{out}"
            );
            let run_net = env.runroot().join("net");
            let left: Vec<_> = std::fs::read_dir(&run_net)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(
                left.is_empty(),
                "{net}: left in {}: {left:?}",
                run_net.display()
            );
            // the helper was killed as the container ended; its exit may take a moment
            eventually(&format!("{net}: helper gone"), || {
                processes_naming(&run_net.to_string_lossy()).is_empty()
            });
        }
    });
}

#[test]
fn publishing_errors_are_one_line_and_125() {
    for_each_user("publish_errors", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "-p",
                "8080:80",
                "busybox",
                "true",
            ])
            .output()
            .code_is(125);
        assert!(
            out.stderr
                .contains("publishing ports needs --network=pasta or --network=slirp4netns"),
            "{out}"
        );
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=pasta",
                "-p",
                "80:80:80",
                "busybox",
                "true",
            ])
            .output()
            .code_is(125);
        assert!(out.stderr.contains("invalid port spec `80:80:80`"), "{out}");
        // a host port that is taken: refused before anything runs
        let taken = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        for net in BACKENDS {
            let out = env
                .rbox()
                .args(["run", "--rm", "--network", net, "-p", &format!("{port}:80")])
                .args(["busybox", "true"])
                .output()
                .code_is(125);
            assert!(out.stderr.contains("already in use"), "{net}: {out}");
            assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out}");
        }
        assert!(processes_naming(&env.runroot().join("net").to_string_lossy()).is_empty());
    });
}

#[test]
fn dns_flags_and_extra_hosts_reach_the_etc_files() {
    for_each_user("dns_flags", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=slirp4netns", "--dns", "192.0.2.1"])
            .args(["--dns-search", "example.com", "--dns-option", "ndots:2"])
            .args([
                "--add-host",
                "db:192.0.2.7",
                "--hostname",
                "box",
                "--name",
                "c",
            ])
            .args(["busybox", "cat", "/etc/resolv.conf", "/etc/hosts"])
            .output()
            .success();
        let text = out.stdout.clone();
        assert!(text.contains("search example.com\n"), "{out}");
        assert!(text.contains("nameserver 192.0.2.1\n"), "{out}");
        assert!(
            !text.contains("nameserver 10.0.2.3"),
            "--dns replaces: {out}"
        );
        assert!(text.contains("options ndots:2\n"), "{out}");
        assert!(text.contains("192.0.2.7\tdb\n"), "{out}");
        assert!(text.contains("127.0.1.1\tbox c\n"), "{out}");
        // slirp4netns's own forwarder when nothing replaces it
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=slirp4netns", "busybox"])
            .args(["cat", "/etc/resolv.conf"])
            .output()
            .success();
        assert!(out.stdout.starts_with("nameserver 10.0.2.3\n"), "{out}");
        for (flag, value, want) in [
            ("--dns", "not-an-ip", "invalid --dns `not-an-ip`"),
            ("--add-host", "db", "invalid --add-host `db`"),
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm", flag, value, "busybox", "true"])
                .output()
                .code_is(125);
            assert!(out.stderr.contains(want), "{out}");
        }
    });
}

/// `-P` publishes every exposed port (the image's ExposedPorts and `--expose`) that `-p` did
/// not, each on a free host port; the server behind one answers through it.
#[test]
fn publish_all_takes_the_images_exposed_ports() {
    for_each_user("publish_all", |env| {
        env.load(&crate::fixtures::exposing_docker_archive())
            .success();
        let fixed = crate::util::free_port();
        let id = env
            .rbox()
            .args(["run", "-d", "--name", "web", "--network=slirp4netns", "-P"])
            .args(["--expose", "8000-8001", "-p", &format!("{fixed}:8000")])
            .args(["localhost/exposing", "sh", "-c"])
            .arg("echo exposed > /index.html && exec httpd -f -p 80 -h /")
            .output()
            .success()
            .text();
        let ports = env.rbox().args(["port", "web"]).output().success().text();
        let mut lines: Vec<&str> = ports.lines().collect();
        lines.sort();
        assert_eq!(lines.len(), 4, "{ports}");
        assert!(
            ports.contains(&format!("8000/tcp -> 0.0.0.0:{fixed}")),
            "{ports}"
        );
        for p in [
            "80/tcp -> 0.0.0.0:",
            "53/udp -> 0.0.0.0:",
            "8001/tcp -> 0.0.0.0:",
        ] {
            assert!(ports.contains(p), "{p} in {ports}");
        }
        let http: u16 = env
            .rbox()
            .args(["port", "web", "80"])
            .output()
            .success()
            .text()
            .rsplit_once(':')
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!(http_get(http).contains("exposed"));
        assert_eq!(
            env.inspect("web", "{{json .Config.ExposedPorts}}"),
            r#"{"53/udp":{},"80/tcp":{},"8000/tcp":{},"8001/tcp":{}}"#
        );
        let helpers = helper_of(env, &id);
        assert!(!helpers.is_empty());
        env.rbox().args(["rm", "-f", "web"]).output().success();
        eventually("helpers gone", || still_running(&helpers).is_empty());
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--expose",
                "80/sctp",
                "localhost/exposing",
                "true",
            ])
            .output()
            .code_is(125);
        assert!(out.stderr.contains("invalid --expose `80/sctp`"), "{out}");
    });
}

/// The parent of process `pid` (from /proc/PID/stat).
fn parent_of(pid: &str) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A container stopped and started again serves on the same published port (no "address
/// in use": the old monitor let it go); a killed monitor or a killed `rbox run` leaves no
/// helper, no network directory and no bound port behind.
#[test]
fn ports_survive_a_restart_and_die_with_a_killed_monitor() {
    for_each_user("net_restart", |env| {
        env.import_busybox("busybox");
        for net in BACKENDS {
            let port = crate::util::free_port();
            let id = env
                .rbox()
                .args(["run", "-d", "--name", "web", "--network", net])
                .args(["-p", &format!("{port}:80"), "busybox", "sh", "-c"])
                .arg("mkdir -p /www && echo up > /www/index.html && exec httpd -f -p 80 -h /www")
                .output()
                .success()
                .text();
            assert!(http_get(port).contains("up"), "{net}");
            env.rbox()
                .args(["stop", "-t", "1", "web"])
                .output()
                .success();
            assert!(
                helper_of(env, &id).is_empty(),
                "{net}: helper outlived stop"
            );
            env.rbox().args(["start", "web"]).output().success();
            assert!(http_get(port).contains("up"), "{net}: after start");
            let ps = env
                .rbox()
                .args(["ps", "--format", "{{.Ports}}"])
                .output()
                .success()
                .text();
            assert_eq!(ps, format!("0.0.0.0:{port}->80/tcp"), "{net}");
            // `rbox restart`: the same, in one command (the old monitor is gone, and its
            // ports free, before the new one starts)
            let out = env
                .rbox()
                .args(["restart", "-t", "1", "web"])
                .output()
                .success();
            assert_eq!(out.text(), "web", "{net}");
            assert!(http_get(port).contains("up"), "{net}: after restart");

            // the monitor killed: its forwarder thread and helper go with it
            let helpers = helper_of(env, &id);
            assert!(!helpers.is_empty(), "{net}: no helper runs after start");
            let pid = env.inspect("web", "{{.State.Pid}}");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(parent_of(&pid)),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            eventually(&format!("{net}: port {port} freed"), || {
                TcpListener::bind(("0.0.0.0", port)).is_ok()
            });
            eventually(&format!("{net}: helper gone"), || {
                still_running(&helpers).is_empty()
            });
            env.rbox().args(["rm", "web"]).output().success();
            assert!(!env.runroot().join("net").join(&id[..12]).exists(), "{net}");

            // a foreground `rbox run` killed
            let port = crate::util::free_port();
            let mut run = env
                .rbox()
                .args(["run", "--name", "fg", "--network", net])
                .args(["-p", &format!("{port}:80"), "busybox", "sh", "-c"])
                .arg("echo ready; exec sleep 600")
                .spawn();
            assert_eq!(run.read_line(), "ready\n");
            let id = env.inspect("fg", "{{.Id}}");
            let helpers = helper_of(env, &id);
            assert!(
                !helpers.is_empty(),
                "{net}: no helper runs in the foreground"
            );
            assert!(
                TcpListener::bind(("0.0.0.0", port)).is_err(),
                "{net}: published"
            );
            run.signal(nix::sys::signal::Signal::SIGKILL);
            run.wait();
            eventually(&format!("{net}: port {port} freed after kill"), || {
                TcpListener::bind(("0.0.0.0", port)).is_ok()
            });
            eventually(&format!("{net}: helper gone after kill"), || {
                still_running(&helpers).is_empty()
            });
            env.rbox().args(["rm", "-f", "fg"]).output().success();
            assert!(!env.runroot().join("net").join(&id[..12]).exists(), "{net}");
        }
    });
}

/// Without `--network` a container gets pasta (installed by .ci/run; slirp4netns without it),
/// recorded so that inspect shows it, and a default route through it.
#[test]
fn the_default_network_is_the_installed_bridge() {
    for_each_user("default_net", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "--rm", "busybox", "true"])
            .output()
            .success();
        env.rbox()
            .args(["create", "--name", "c", "busybox", "true"])
            .output()
            .success();
        assert_eq!(env.inspect("c", "{{.HostConfig.NetworkMode}}"), "pasta");
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "cat", "/proc/net/route"])
            .output()
            .success();
        assert!(
            out.lines()
                .iter()
                .skip(1)
                .any(|l| l.split_whitespace().nth(1) == Some("00000000")),
            "no default route:\n{out}"
        );
    });
}

/// Serve `GET` on the host's 127.0.0.1 (an ephemeral port) with `body`, forever.
fn loopback_server(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}"
            );
        }
    });
    port
}

/// host.containers.internal and host.docker.internal reach a server on the host's loopback:
/// pasta maps its gateway address to the host, slirp4netns its 10.0.2.2 with
/// allow_host_loopback=true.
#[test]
fn host_containers_internal_reaches_the_hosts_loopback() {
    for_each_user("host_internal", |env| {
        env.import_busybox("busybox");
        let port = loopback_server("hello-from-the-host");
        for net in ["pasta", "slirp4netns:allow_host_loopback=true"] {
            for name in ["host.containers.internal", "host.docker.internal"] {
                // the fixture's static busybox cannot resolve names through glibc's NSS (its
                // wget crashes), so the shell looks the name up in /etc/hosts as a resolver
                // would; busybox nc may not end when the server closes behind pasta, hence the
                // timeout (the answer has arrived by then)
                let script = format!(
                    "a=$(awk '{{for (i = 2; i <= NF; i++) if ($i == \"{name}\") {{print $1; exit}}}}' /etc/hosts) \
                     && printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 2 nc $a {port}; true"
                );
                let out = env
                    .rbox()
                    .args([
                        "run",
                        "--rm",
                        "--network",
                        net,
                        "busybox",
                        "sh",
                        "-c",
                        &script,
                    ])
                    .output()
                    .success();
                assert!(
                    out.stdout.contains("hello-from-the-host"),
                    "{net} {name}: {out}"
                );
            }
        }
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=slirp4netns:allow_host_loopback=true",
            ])
            .args(["busybox", "grep", "host.containers.internal", "/etc/hosts"])
            .output()
            .success();
        assert_eq!(
            out.text(),
            "10.0.2.2\thost.containers.internal host.docker.internal",
            "{out}"
        );
    });
}

/// A DNS answer to `query` (any name): `addr` for an A question, no answer for the others.
fn dns_answer(query: &[u8], addr: [u8; 4]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    end += 5; // the root label, QTYPE, QCLASS
    let qtype = u16::from_be_bytes([*query.get(end - 4)?, query[end - 3]]);
    let mut r = query.get(..end)?.to_vec();
    r[2] = 0x81; // a response, recursion desired
    r[3] = 0x80; // recursion available, no error
    let a = qtype == 1;
    r[6..12].copy_from_slice(&[0, u8::from(a), 0, 0, 0, 0]);
    if a {
        r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend(addr);
    }
    Some(r)
}

/// On a host whose resolv.conf names only systemd-resolved's stub (127.0.0.53), the
/// container's resolv.conf names no loopback address: pasta's forwarder (started with
/// `--dns-forward`) or slirp4netns's 10.0.2.3, and the host's search and options lines. A
/// name asked through pasta's forwarder reaches the stub on the host.
#[test]
fn resolv_conf_on_a_host_with_a_loopback_stub() {
    if !require(
        is_root(),
        "root, to bind a fake /etc/resolv.conf in a mount namespace",
    ) {
        return;
    }
    // the stub: a DNS server on 127.0.0.53:53, answering 192.0.2.99 to every A question
    let stub = std::net::UdpSocket::bind("127.0.0.53:53");
    let have_stub = require(stub.is_ok(), "127.0.0.53:53 free for a fake resolver");
    if let Ok(stub) = stub {
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = stub.recv_from(&mut buf) {
                if let Some(r) = dns_answer(&buf[..n], [192, 0, 2, 99]) {
                    let _ = stub.send_to(&r, from);
                }
            }
        });
    }
    for_each_user("resolv_stub", |env| {
        env.import_busybox("busybox");
        let fake = env.write(
            "resolv.conf",
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.test\n",
        );
        let run = |net: &str, script: &str| {
            env.rbox()
                .bind_over(&fake, std::path::Path::new("/etc/resolv.conf"))
                .args([
                    "run",
                    "--rm",
                    "--network",
                    net,
                    "busybox",
                    "sh",
                    "-c",
                    script,
                ])
                .output()
                .success()
        };
        for (net, server) in [("pasta", "169.254.1.1"), ("slirp4netns", "10.0.2.3")] {
            let out = run(net, "cat /etc/resolv.conf");
            assert_eq!(
                out.stdout,
                format!("nameserver {server}\noptions edns0 trust-ad\nsearch example.test\n"),
                "{net}: {out}"
            );
        }
        if have_stub {
            let out = run("pasta", "nslookup -type=a probe.example.test");
            assert!(out.stdout.contains("192.0.2.99"), "{out}");
        }
        // the pasta that serves it was told to forward
        let id = env
            .rbox()
            .bind_over(&fake, std::path::Path::new("/etc/resolv.conf"))
            .args(["run", "-d", "--name", "fw", "busybox", "sleep", "600"])
            .output()
            .success()
            .text();
        let cmdlines: Vec<String> = helper_of(env, &id)
            .iter()
            .map(|pid| {
                let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&raw).replace('\0', " ")
            })
            .collect();
        assert!(
            cmdlines
                .iter()
                .any(|h| h.contains(" --dns-forward 169.254.1.1 ")),
            "{cmdlines:?}"
        );
        env.rbox().args(["rm", "-f", "fw"]).output().success();
    });
}

/// `--no-hosts` leaves the image's /etc/hosts alone (this image has none: nothing is
/// mounted over it, and the container may write its own); with `--add-host` it is refused
/// as Podman refuses it.
#[test]
fn no_hosts_leaves_the_images_hosts() {
    for_each_user("no_hosts", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "--no-hosts", "busybox", "sh", "-c"])
            .arg(
                "test ! -e /etc/hosts && ! grep -q ' /etc/hosts ' /proc/mounts \
                 && echo '192.0.2.5 mine' > /etc/hosts && cat /etc/hosts",
            )
            .output()
            .success();
        assert_eq!(out.text(), "192.0.2.5 mine", "{out}");
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "busybox",
                "grep",
                "-c",
                " /etc/hosts ",
                "/proc/mounts",
            ])
            .output()
            .success();
        assert_eq!(
            out.text(),
            "1",
            "without --no-hosts rbox's file is mounted: {out}"
        );
        let out = env
            .rbox()
            .args(["run", "--rm", "--no-hosts", "--add-host", "db:192.0.2.7"])
            .args(["busybox", "true"])
            .output()
            .code_is(125);
        assert_eq!(
            out.stderr.trim_end(),
            "Error: --no-hosts and --add-host cannot be set together",
            "{out}"
        );
    });
}

/// `--userns=keep-id` (a user namespace of the container's own, below rbox's) with a bridge:
/// the helper and the forwarder still enter its network namespace, and the server keeps the
/// client's address.
#[test]
fn keep_id_containers_publish_ports() {
    for_each_user("keepid_net", |env| {
        if env.user.uid == 0 {
            // root has no keep-id (Podman refuses it: see userns_shift.rs)
            return;
        }
        env.import_busybox("busybox");
        for net in BACKENDS {
            let port = crate::util::free_port();
            env.rbox()
                .args([
                    "run",
                    "-d",
                    "--name",
                    "kid",
                    "--userns=keep-id",
                    "--network",
                    net,
                ])
                .args(["-p", &format!("{port}:8080"), "busybox", "sh", "-c"])
                .arg(
                    "mkdir -p /tmp/www && id -u > /tmp/www/index.html \
                     && exec httpd -f -vv -p 8080 -h /tmp/www",
                )
                .output()
                .success();
            let body = http_get(port);
            assert!(
                body.ends_with(&format!("{}\n", env.user.uid)),
                "{net}: {body}"
            );
            let logs = env.rbox().args(["logs", "kid"]).output().success();
            assert!(
                logs.stderr.contains("[::ffff:127.0.0.1]:")
                    || logs.stdout.contains("[::ffff:127.0.0.1]:"),
                "{net}: {logs}"
            );
            env.rbox().args(["rm", "-f", "kid"]).output().success();
        }
    });
}
