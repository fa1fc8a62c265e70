//! pasta (from passt): the command line (pure) and the start. pasta has no API: ports are fixed
//! at start with `-t`/`-u`. Its foreground process exits 0 once the namespace is configured,
//! leaving the daemon, whose pid it writes to `--pid FILE`; that exit is the readiness signal.

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::helper::{failed, failure_line, stderr_file, wait_exit, Helper, READY_TIMEOUT};
use crate::{io_err, sys, PastaOptions, PortMapping, Proto, Result};

const NAME: &str = "pasta";

/// pasta's spelling of one forwarded port: `[ADDR/]HOST:GUEST`.
fn port_spec(p: &PortMapping) -> String {
    let addr = match p.host_ip {
        None => String::new(),
        Some(IpAddr::V4(ip)) => format!("{ip}/"),
        Some(IpAddr::V6(ip)) => format!("{ip}/"),
    };
    format!("{addr}{}:{}", p.host_port, p.container_port)
}

/// The argv after the program name. As Podman does, every direction the user did not set
/// is `none`: pasta's own default is to forward every port it sees bound ("auto").
/// `runas`: started as root, pasta switches to `nobody` unless told otherwise, and `nobody`
/// cannot join a root-owned namespace; the caller passes the target's own uid and gid.
pub(crate) fn args(
    o: &PastaOptions,
    ports: &[PortMapping],
    target: &[OsString],
    pid_file: &Path,
    runas: Option<(u32, u32)>,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--config-net".into(), "-q".into()];
    let user_has = |short: &str, long: &str| {
        o.args
            .iter()
            .any(|x| x == short || x == long || x.starts_with(&format!("{long}=")))
    };
    for (proto, flag, long) in [
        (Proto::Tcp, "-t", "--tcp-ports"),
        (Proto::Udp, "-u", "--udp-ports"),
    ] {
        let mine: Vec<&PortMapping> = ports.iter().filter(|p| p.proto == proto).collect();
        for p in &mine {
            a.push(flag.into());
            a.push(port_spec(p).into());
        }
        if mine.is_empty() && !user_has(flag, long) {
            a.push(flag.into());
            a.push("none".into());
        }
    }
    for (flag, long) in [("-T", "--tcp-ns"), ("-U", "--udp-ns")] {
        if !user_has(flag, long) {
            a.push(flag.into());
            a.push("none".into());
        }
    }
    if let Some((uid, gid)) = runas.filter(|_| !user_has("--runas", "--runas")) {
        a.push("--runas".into());
        a.push(format!("{uid}:{gid}").into());
    }
    a.extend(o.args.iter().map(OsString::from));
    a.push("--pid".into());
    a.push(pid_file.into());
    a.extend(target.iter().cloned());
    a
}

pub(crate) fn start(
    program: &Path,
    o: &PastaOptions,
    target_pid: i32,
    ports: &[PortMapping],
    run_dir: &Path,
) -> Result<Helper> {
    let pid_file = run_dir.join("pasta.pid");
    match std::fs::remove_file(&pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err(format!("remove stale `{}`", pid_file.display()))(e))
        }
        _ => {}
    }
    let runas = if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        let proc = format!("/proc/{target_pid}");
        let m = std::fs::metadata(&proc).map_err(io_err(format!("stat `{proc}`")))?;
        Some((m.uid(), m.gid()))
    } else {
        None
    };
    // The namespaces go to pasta as descriptors opened here: pasta drops its capabilities
    // before it opens a target, and opening another process's /proc/PID/ns/* needs the
    // target's capabilities (a container's init in our own user namespace has them all).
    let open_ns = |kind: &str| {
        let p = format!("/proc/{target_pid}/ns/{kind}");
        std::fs::File::open(&p).map_err(io_err(format!("open `{p}`")))
    };
    let (userns, netns) = (open_ns("user")?, open_ns("net")?);
    let mut target: Vec<OsString> = vec![
        "--netns".into(),
        format!("/proc/self/fd/{}", netns.as_raw_fd()).into(),
    ];
    let mut inherited = vec![netns.as_raw_fd()];
    // a process cannot join the user namespace it is in (EINVAL): only a nested one
    if same_ns(&userns, "/proc/self/ns/user") {
        target.push("--netns-only".into());
    } else {
        target.push("--userns".into());
        target.push(format!("/proc/self/fd/{}", userns.as_raw_fd()).into());
        inherited.push(userns.as_raw_fd());
    }
    // A host that names only loopback resolvers (systemd-resolved's 127.0.0.53) leaves the
    // container none it can reach: pasta answers at a forwarding address instead, the one
    // the container's resolv.conf names (see `names::pasta_dns_forward`).
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut o = o.clone();
    if let Some(a) = crate::names::pasta_dns_forward(&o, &host_resolv)
        .filter(|_| !crate::names::user_forwards_dns(&o))
    {
        o.args.extend(["--dns-forward".to_string(), a.to_string()]);
    }
    let mut stderr = stderr_file(NAME)?;
    let mut cmd = Command::new(program);
    sys::inherit_fds(&mut cmd, inherited);
    let mut child = cmd
        .args(args(&o, ports, &target, &pid_file, runas))
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().map_err(io_err("dup memfd"))?)
        .stderr(stderr.try_clone().map_err(io_err("dup memfd"))?)
        .spawn()
        .map_err(io_err(format!("run `{}`", program.display())))?;
    let configured = match sys::pidfd_open(child.id() as i32) {
        Ok(fd) => wait_exit(&fd, READY_TIMEOUT),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io_err("pidfd_open pasta")(e));
        }
    };
    if !configured {
        let _ = child.kill();
    }
    let status = child.wait().map_err(io_err("wait for pasta"))?;
    // A daemon may exist even when the foreground failed (pid file written): end it.
    let daemon = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(|pid| sys::pidfd_open(pid).ok().map(|fd| (pid, fd)));
    let Some((pid, pidfd)) = daemon else {
        let _ = std::fs::remove_file(&pid_file);
        let what = if !configured {
            format!("not configured after {}s", READY_TIMEOUT.as_secs())
        } else if status.success() {
            format!("no pid in `{}`", pid_file.display())
        } else {
            status.to_string()
        };
        return Err(failed(NAME, failure_line(&mut stderr), what));
    };
    let helper = Helper {
        name: NAME,
        pid,
        pidfd,
        child: None,
        exit_fd: None,
        api_socket: None,
        files: vec![pid_file],
        ports: ports.to_vec(),
        warnings: Vec::new(),
        stopped: false,
    };
    if !status.success() || !configured {
        let what = if configured {
            status.to_string()
        } else {
            format!("not configured after {}s", READY_TIMEOUT.as_secs())
        };
        // Dropping the helper ends the daemon and removes the pid file.
        drop(helper);
        return Err(failed(NAME, failure_line(&mut stderr), what));
    }
    Ok(helper)
}

/// Whether the namespace file `f` is the namespace at `path`.
fn same_ns(f: &std::fs::File, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn argv_like_podman() {
        let mut ports = crate::parse_publish("8080:80").unwrap();
        ports.extend(crate::parse_publish("[::1]:9000-9001:53-54/udp").unwrap());
        ports.extend(crate::parse_publish("127.0.0.1:8443:443").unwrap());
        let a = args(
            &PastaOptions::default(),
            &ports,
            &["42".into()],
            Path::new("/r/pasta.pid"),
            Some((0, 0)),
        );
        assert_eq!(
            strs(&a),
            [
                "--config-net",
                "-q",
                "-t",
                "8080:80",
                "-t",
                "127.0.0.1/8443:443",
                "-u",
                "::1/9000:53",
                "-u",
                "::1/9001:54",
                "-T",
                "none",
                "-U",
                "none",
                "--runas",
                "0:0",
                "--pid",
                "/r/pasta.pid",
                "42"
            ]
        );
    }

    #[test]
    fn user_options_pass_through() {
        let crate::Backend::Pasta(o) = "pasta:-T,8080,--ipv4-only".parse().unwrap() else {
            unreachable!()
        };
        let a = args(&o, &[], &["7".into()], Path::new("p"), None);
        assert_eq!(
            strs(&a),
            [
                "--config-net",
                "-q",
                "-t",
                "none",
                "-u",
                "none",
                "-U",
                "none",
                "-T",
                "8080",
                "--ipv4-only",
                "--pid",
                "p",
                "7"
            ]
        );
    }
}
