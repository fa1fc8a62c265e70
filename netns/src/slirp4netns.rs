//! slirp4netns: the command line (pure, from the options and the installed version's
//! features), the process started with `--ready-fd`/`--exit-fd`, and port forwarding through
//! its API socket (one JSON request per connection, as Podman does).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use serde_json::{json, Value};

use crate::helper::{check_host_port, failed, failure_line, poll_readable, stderr_file};
use crate::helper::{Helper, READY_TIMEOUT};
use crate::{io_err, sys, Error, PortMapping, Result, Slirp4netnsOptions};

const NAME: &str = "slirp4netns";

/// Options the installed slirp4netns knows, read from its `--help` (as Podman does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    pub sandbox: bool,
    pub seccomp: bool,
    pub outbound_addr: bool,
    pub ipv6: bool,
    pub cidr: bool,
}

pub(crate) fn features_from_help(help: &str) -> Features {
    Features {
        sandbox: help.contains("--enable-sandbox"),
        seccomp: help.contains("--enable-seccomp"),
        outbound_addr: help.contains("--outbound-addr"),
        ipv6: help.contains("--enable-ipv6"),
        cidr: help.contains("--cidr"),
    }
}

/// Asked once per process and program: `--help` costs a process start on every container.
fn features(program: &Path) -> Features {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<Vec<(std::path::PathBuf, Features)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((_, f)) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(p, _)| p == program)
    {
        return *f;
    }
    let f = probe_features(program);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((program.to_path_buf(), f));
    f
}

fn probe_features(program: &Path) -> Features {
    let out = Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => {
            let mut help = String::from_utf8_lossy(&o.stdout).into_owned();
            help.push_str(&String::from_utf8_lossy(&o.stderr));
            features_from_help(&help)
        }
        Err(_) => Features::default(),
    }
}

/// The argv after the program name, and warnings for features the installed version lacks.
pub(crate) fn args(
    o: &Slirp4netnsOptions,
    f: Features,
    target_pid: i32,
    api_socket: &Path,
    ready_fd: i32,
    exit_fd: i32,
) -> Result<(Vec<OsString>, Vec<String>)> {
    let unsupported = |what: &str| Error::HelperFailed {
        helper: NAME,
        message: format!("the installed slirp4netns does not support {what}: upgrade it"),
    };
    let mut a: Vec<OsString> = vec!["--configure".into(), format!("--mtu={}", o.mtu).into()];
    let mut warnings = Vec::new();
    if !o.allow_host_loopback {
        a.push("--disable-host-loopback".into());
    }
    if let Some(cidr) = &o.cidr {
        if !f.cidr {
            return Err(unsupported("cidr"));
        }
        a.push(format!("--cidr={cidr}").into());
    }
    if o.enable_ipv6 {
        if !f.ipv6 {
            return Err(unsupported("enable_ipv6"));
        }
        a.push("--enable-ipv6".into());
    }
    for (opt, value) in [
        ("--outbound-addr", &o.outbound_addr),
        ("--outbound-addr6", &o.outbound_addr6),
    ] {
        if let Some(v) = value {
            if !f.outbound_addr {
                return Err(unsupported("outbound_addr"));
            }
            a.push(format!("{opt}={v}").into());
        }
    }
    if f.sandbox {
        a.push("--enable-sandbox".into());
    } else {
        warnings.push(
            "slirp4netns runs without --enable-sandbox (the installed version lacks it)".into(),
        );
    }
    if f.seccomp {
        a.push("--enable-seccomp".into());
    } else {
        warnings.push(
            "slirp4netns runs without --enable-seccomp (the installed version lacks it)".into(),
        );
    }
    a.push("--api-socket".into());
    a.push(api_socket.into());
    a.push(format!("--ready-fd={ready_fd}").into());
    a.push(format!("--exit-fd={exit_fd}").into());
    a.push(target_pid.to_string().into());
    a.push("tap0".into());
    Ok((a, warnings))
}

/// The `add_hostfwd` request for one port. slirp4netns 1.2 takes only IPv4 host addresses.
pub(crate) fn hostfwd_request(p: &PortMapping) -> Result<Value> {
    let mut args = json!({
        "proto": p.proto.as_str(),
        "host_port": p.host_port,
        "guest_port": p.container_port,
    });
    match p.host_ip {
        None => {}
        Some(std::net::IpAddr::V4(ip)) => args["host_addr"] = json!(ip.to_string()),
        Some(std::net::IpAddr::V6(_)) => {
            return Err(Error::Unpublishable {
                port: *p,
                reason: "slirp4netns cannot listen on an IPv6 host address: use --network=pasta"
                    .to_string(),
            })
        }
    }
    Ok(json!({"execute": "add_hostfwd", "arguments": args}))
}

/// One request on a fresh connection: write, shut down the write side, read the reply.
fn api_call(socket: &Path, request: &Value) -> Result<Value> {
    let ctx = || format!("slirp4netns API `{}`", socket.display());
    let mut s = UnixStream::connect(socket).map_err(io_err(ctx()))?;
    s.write_all(request.to_string().as_bytes())
        .map_err(io_err(ctx()))?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(io_err(ctx()))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(io_err(ctx()))?;
    serde_json::from_slice(&reply).map_err(|e| Error::HelperFailed {
        helper: NAME,
        message: format!("{}: unreadable reply: {e}", ctx()),
    })
}

pub(crate) fn start(
    program: &Path,
    o: &Slirp4netnsOptions,
    target_pid: i32,
    ports: &[PortMapping],
    run_dir: &Path,
) -> Result<Helper> {
    // Refuse an IPv6 host address before anything runs.
    let requests = ports
        .iter()
        .map(|p| hostfwd_request(p).map(|r| (p, r)))
        .collect::<Result<Vec<_>>>()?;
    let api_socket = run_dir.join("slirp4netns.sock");
    // sun_path holds 108 bytes including the NUL.
    if api_socket.as_os_str().len() > 107 {
        return Err(Error::HelperFailed {
            helper: NAME,
            message: format!(
                "API socket path `{}` is longer than a unix socket allows: use a shorter run directory",
                api_socket.display()
            ),
        });
    }
    match std::fs::remove_file(&api_socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err(format!("remove stale `{}`", api_socket.display()))(
                e,
            ))
        }
        _ => {}
    }

    let pipe = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| io_err("create pipe for slirp4netns")(e.into()))
    };
    let (ready_r, ready_w) = pipe()?;
    let (exit_r, exit_w) = pipe()?;
    let (argv, warnings) = args(
        o,
        features(program),
        target_pid,
        &api_socket,
        ready_w.as_raw_fd(),
        exit_r.as_raw_fd(),
    )?;
    let mut stderr = stderr_file(NAME)?;
    let mut cmd = Command::new(program);
    cmd.args(&argv)
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().map_err(io_err("dup memfd"))?)
        .stderr(stderr.try_clone().map_err(io_err("dup memfd"))?);
    sys::inherit_fds(&mut cmd, vec![ready_w.as_raw_fd(), exit_r.as_raw_fd()]);
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("run `{}`", program.display())))?;
    // Our copies of the child's ends: with them closed, EOF on the ready pipe means it died.
    drop(ready_w);
    drop(exit_r);
    let pidfd = match sys::pidfd_open(child.id() as i32) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io_err("pidfd_open slirp4netns")(e));
        }
    };
    // Its pid, for whoever cleans up after an owner that was killed: slirp4netns exits by
    // itself then, but a caller that must know its ports are free waits for it.
    let pid_file = run_dir.join("slirp4netns.pid");
    let pid = child.id() as i32;
    if let Err(e) = std::fs::write(&pid_file, format!("{pid}\n")) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io_err(format!("write `{}`", pid_file.display()))(e));
    }
    let mut helper = Helper {
        name: NAME,
        pid,
        pidfd,
        child: Some(child),
        exit_fd: Some(exit_w),
        api_socket: Some(api_socket.clone()),
        files: vec![api_socket.clone(), pid_file],
        ports: Vec::new(),
        warnings,
        dns_forward: None,
        stopped: false,
    };

    // Ready = the byte '1' on the ready fd; EOF = it exited first.
    let mut ready = File::from(ready_r);
    match poll_readable(&ready, READY_TIMEOUT) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Error::HelperFailed {
                helper: NAME,
                message: format!("not ready after {}s", READY_TIMEOUT.as_secs()),
            })
        }
        Err(e) => return Err(io_err("poll slirp4netns ready fd")(e)),
    }
    let mut byte = [0u8; 1];
    let n = ready
        .read(&mut byte)
        .map_err(io_err("read slirp4netns ready fd"))?;
    if n == 0 || byte[0] != b'1' {
        let status = helper
            .child
            .as_mut()
            .and_then(|c| c.wait().ok())
            .map(|s| s.to_string())
            .unwrap_or_else(|| "exited".to_string());
        return Err(failed(
            NAME,
            failure_line(&mut stderr),
            format!("{status} before it was ready"),
        ));
    }

    for (port, request) in requests {
        let reply = api_call(&api_socket, &request)?;
        if reply.get("return").is_some() {
            helper.ports.push(*port);
            continue;
        }
        let desc = reply["error"]["desc"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| reply.to_string());
        // slirp4netns says only "slirp_add_hostfwd failed": find out why for the user.
        check_host_port(port)?;
        return Err(Error::Unpublishable {
            port: *port,
            reason: format!("slirp4netns: {desc}"),
        });
    }
    Ok(helper)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP_1_2: &str = "--configure --mtu=MTU --cidr=CIDR --disable-host-loopback \
        --netns-type=TYPE --userns-path=PATH --enable-sandbox --enable-seccomp --enable-ipv6 \
        --outbound-addr=IPv4 --outbound-addr6=IPv6 --disable-dns --macaddress";

    fn strs(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn argv_like_podman() {
        let f = features_from_help(HELP_1_2);
        let (a, w) = args(
            &Slirp4netnsOptions::default(),
            f,
            42,
            Path::new("/run/x/slirp4netns.sock"),
            3,
            4,
        )
        .unwrap();
        assert_eq!(
            strs(&a),
            [
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--enable-sandbox",
                "--enable-seccomp",
                "--api-socket",
                "/run/x/slirp4netns.sock",
                "--ready-fd=3",
                "--exit-fd=4",
                "42",
                "tap0"
            ]
        );
        assert!(w.is_empty());
    }

    #[test]
    fn argv_with_options_and_old_version() {
        let o: crate::Backend = "slirp4netns:allow_host_loopback=true,mtu=1500,cidr=10.0.3.0/24,enable_ipv6=true,outbound_addr=192.0.2.1"
            .parse()
            .unwrap();
        let crate::Backend::Slirp4netns(o) = o else {
            unreachable!()
        };
        let (a, w) = args(&o, features_from_help(HELP_1_2), 7, Path::new("s"), 5, 6).unwrap();
        let a = strs(&a);
        assert_eq!(
            a[..6],
            [
                "--configure",
                "--mtu=1500",
                "--cidr=10.0.3.0/24",
                "--enable-ipv6",
                "--outbound-addr=192.0.2.1",
                "--enable-sandbox"
            ]
        );
        assert!(w.is_empty());
        // An old slirp4netns: no sandbox (warned), no cidr (refused).
        let old = features_from_help("--configure --mtu=MTU --disable-host-loopback");
        let (a, w) = args(&Slirp4netnsOptions::default(), old, 7, Path::new("s"), 5, 6).unwrap();
        assert!(!strs(&a).contains(&"--enable-sandbox"));
        assert_eq!(w.len(), 2);
        let err = args(&o, old, 7, Path::new("s"), 5, 6).unwrap_err();
        assert!(err.to_string().contains("does not support cidr"), "{err}");
    }

    #[test]
    fn hostfwd_requests() {
        let p = crate::parse_publish("127.0.0.1:8080:80/udp").unwrap()[0];
        assert_eq!(
            hostfwd_request(&p).unwrap(),
            json!({"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"127.0.0.1","host_port":8080,"guest_port":80}})
        );
        let p = crate::parse_publish("8080:80").unwrap()[0];
        assert_eq!(
            hostfwd_request(&p).unwrap(),
            json!({"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}})
        );
        let p = crate::parse_publish("[::1]:8080:80").unwrap()[0];
        assert!(hostfwd_request(&p)
            .unwrap_err()
            .to_string()
            .contains("use --network=pasta"));
    }
}
