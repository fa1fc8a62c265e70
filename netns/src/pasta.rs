//! pasta (from passt): the command line (pure) and the start. pasta forwards no ports here:
//! published ports are the caller's forwarder's ([`crate::Backend::forwards_ports`]). It runs
//! in the foreground (`-f`) as the caller's child, in a process group of its own (a terminal's
//! ^C is the container's, not pasta's) and killed by the kernel if the thread that started it
//! dies (a killed monitor takes it along; pasta itself does not
//! notice that the namespace is gone). Its pid file is a pipe: pasta writes its pid there once
//! the namespace is configured, which is the readiness signal; the caller then writes the real
//! pid file for later invocations.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::helper::{failed, failure_line, stderr_file, Helper, READY_TIMEOUT};
use crate::{io_err, sys, PastaOptions, Result};

const NAME: &str = "pasta";

/// The argv after the program name. As Podman does, every direction the user did not set
/// is `none`: pasta's own default is to forward every port it sees bound ("auto").
/// `runas`: started as root, pasta switches to `nobody` unless told otherwise, and `nobody`
/// cannot join a root-owned namespace; the caller passes the target's own uid and gid.
pub(crate) fn args(
    o: &PastaOptions,
    target: &[OsString],
    pid_file: &Path,
    runas: Option<(u32, u32)>,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--config-net".into(), "-q".into(), "-f".into()];
    let user_has = |short: &str, long: &str| {
        o.args
            .iter()
            .any(|x| x == short || x == long || x.starts_with(&format!("{long}=")))
    };
    for (flag, long) in [
        ("-t", "--tcp-ports"),
        ("-u", "--udp-ports"),
        ("-T", "--tcp-ns"),
        ("-U", "--udp-ns"),
    ] {
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

/// pasta spawned, not yet known to have configured the namespace: [`Spawned::ready`].
#[derive(Debug)]
pub(crate) struct Spawned {
    helper: Helper,
    ready: OwnedFd,
    stderr: std::fs::File,
    pid_file: PathBuf,
}

/// Start pasta for the namespaces of `target_pid` and return at once: its own start-up
/// (20-30 ms of CPU here: it zeroes its packet buffers and fills its socket and pipe pools)
/// runs while the caller goes on. The namespaces must exist; the user namespace's id maps
/// need not be written yet.
pub(crate) fn spawn(
    program: &Path,
    o: &PastaOptions,
    target_pid: i32,
    run_dir: &Path,
) -> Result<Spawned> {
    let pid_file = run_dir.join("pasta.pid");
    match std::fs::remove_file(&pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err(format!("remove stale `{}`", pid_file.display()))(e))
        }
        _ => {}
    }
    // The namespaces go to pasta as descriptors opened here: pasta drops its capabilities
    // before it opens a target, and opening another process's /proc/PID/ns/* needs the
    // target's capabilities (a container's init in our own user namespace has them all).
    let open_ns = |kind: &str| {
        let p = format!("/proc/{target_pid}/ns/{kind}");
        std::fs::File::open(&p).map_err(io_err(format!("open `{p}`")))
    };
    let (userns, netns) = (open_ns("user")?, open_ns("net")?);
    let runas = if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        if same_ns(&userns, "/proc/self/ns/user") {
            let proc = format!("/proc/{target_pid}");
            let m = std::fs::metadata(&proc).map_err(io_err(format!("stat `{proc}`")))?;
            Some((m.uid(), m.gid()))
        } else {
            // a nested user namespace (keep-id's) belongs to this process, which made it;
            // its init may be changing its own ids meanwhile (it becomes the namespace's root)
            Some((
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ))
        }
    } else {
        None
    };
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
    // A host that names only loopback resolvers (systemd-resolved's 127.0.0.53, without
    // its upstream list: see `names::host_resolv`) leaves the container none it can reach:
    // pasta answers at a forwarding address instead, the one the container's resolv.conf
    // names (see `names::pasta_dns_forward`).
    let host_resolv = crate::names::host_resolv_conf();
    // That forwarder carries UDP only: TCP at the same address is rbox's relay's (`dns.rs`),
    // to the same resolvers.
    let mut o = o.clone();
    let dns_forward = crate::names::pasta_dns_forward(&o, &host_resolv);
    if let Some(a) = dns_forward.filter(|_| !crate::names::user_forwards_dns(&o)) {
        o.args.extend(["--dns-forward".to_string(), a.to_string()]);
    }
    let dns_forward = dns_forward.map(|a| (a, crate::names::nameservers(&host_resolv)));
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io_err("create pipe")(e.into()))?;
    let ready_path = PathBuf::from(format!("/proc/self/fd/{}", ready_w.as_raw_fd()));
    inherited.push(ready_w.as_raw_fd());
    let stderr = stderr_file(NAME)?;
    // argv[0] stays `pasta`: passt picks its mode from that name, not from the file's
    let mut cmd = Command::new(direct_build(program).as_deref().unwrap_or(program));
    cmd.arg0(NAME);
    sys::inherit_fds(&mut cmd, inherited);
    sys::die_with_parent(&mut cmd);
    let mut child = cmd
        .args(args(&o, &target, &ready_path, runas))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().map_err(io_err("dup memfd"))?)
        .stderr(stderr.try_clone().map_err(io_err("dup memfd"))?)
        .spawn()
        .map_err(io_err(format!("run `{}`", program.display())))?;
    drop(ready_w);
    let pid = child.id() as i32;
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io_err("pidfd_open pasta")(e));
        }
    };
    let helper = Helper {
        name: NAME,
        pid,
        pidfd,
        child: Some(child),
        exit_fd: None,
        api_socket: None,
        files: vec![pid_file.clone()],
        ports: Vec::new(),
        warnings: Vec::new(),
        dns_forward,
        stopped: false,
    };
    Ok(Spawned {
        helper,
        ready: ready_r,
        stderr,
        pid_file,
    })
}

impl Spawned {
    /// Wait until pasta has configured the namespace (it writes its pid to the pipe), then
    /// write the real pid file. Dropping the helper on a failure ends pasta and removes the
    /// pid file.
    pub(crate) fn ready(mut self) -> Result<Helper> {
        if let Err(what) = wait_ready(&self.ready, &self.helper.pidfd) {
            return Err(failed(NAME, failure_line(&mut self.stderr), what));
        }
        let pid = self.helper.pid;
        std::fs::write(&self.pid_file, format!("{pid}\n"))
            .map_err(io_err(format!("write `{}`", self.pid_file.display())))?;
        Ok(self.helper)
    }
}

/// Wait until pasta writes its pid to the pipe (configured), exits, or the timeout passes;
/// the failure in words.
fn wait_ready(ready: &OwnedFd, pidfd: &OwnedFd) -> Result<(), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [
            PollFd::new(ready.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, ms) {
            Ok(0) => return Err(format!("not configured after {}s", READY_TIMEOUT.as_secs())),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let ready_now = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if ready_now {
            let mut buf = [0u8; 32];
            return match nix::unistd::read(ready, &mut buf) {
                Ok(n) if n > 0 => Ok(()),
                _ => Err("exited before it was configured".to_string()),
            };
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return Err("exited before it was configured".to_string());
        }
    }
}

/// The build of passt that `program` would end up running, when that is another file: on
/// x86-64, passt packages ship a second build for AVX2 CPUs beside the plain one
/// (`passt.avx2` next to `passt`, which `pasta` links to), and the plain build's first act
/// on such a CPU is to execute it (passt's `arch.c`: the real path of its own executable
/// plus `.avx2`). Running it directly saves that second exec, its dynamic linking and about
/// 270 page faults: 1.2 ms of CPU per container start here (`perf stat`, bench/results/
/// lifecycle-20261125-1925.md). None: not x86-64, no AVX2, or no such file.
fn direct_build(program: &Path) -> Option<PathBuf> {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return None;
        }
        let real = std::fs::canonicalize(program).ok()?;
        if real.extension().is_some_and(|e| e == "avx2") {
            return None;
        }
        let mut avx2 = real.into_os_string();
        avx2.push(".avx2");
        let avx2 = PathBuf::from(avx2);
        crate::backend::is_executable(&avx2).then_some(avx2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = program;
        None
    }
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
        let a = args(
            &PastaOptions::default(),
            &["42".into()],
            Path::new("/r/pasta.pid"),
            Some((0, 0)),
        );
        assert_eq!(
            strs(&a),
            [
                "--config-net",
                "-q",
                "-f",
                "-t",
                "none",
                "-u",
                "none",
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
    fn the_avx2_build_is_run_directly_where_the_cpu_has_avx2() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("rbox-pasta-avx2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let exe = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        exe("passt");
        symlink("passt", dir.join("pasta")).unwrap();
        // the plain build alone: itself
        assert_eq!(direct_build(&dir.join("pasta")), None);
        exe("passt.avx2");
        symlink("passt.avx2", dir.join("pasta.avx2")).unwrap();
        #[cfg(target_arch = "x86_64")]
        let want = std::arch::is_x86_feature_detected!("avx2").then(|| dir.join("passt.avx2"));
        #[cfg(not(target_arch = "x86_64"))]
        let want = None;
        // found through the `pasta` link, as on $PATH: the real file's name plus `.avx2`
        assert_eq!(direct_build(&dir.join("pasta")), want);
        // the AVX2 build named directly runs as it is
        assert_eq!(direct_build(&dir.join("pasta.avx2")), None);
        // not executable: the plain build, which runs whatever it can
        std::fs::set_permissions(
            dir.join("passt.avx2"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(direct_build(&dir.join("pasta")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn user_options_pass_through() {
        let crate::Backend::Pasta(o) = "pasta:-T,8080,--ipv4-only".parse().unwrap() else {
            unreachable!()
        };
        let a = args(&o, &["7".into()], Path::new("p"), None);
        assert_eq!(
            strs(&a),
            [
                "--config-net",
                "-q",
                "-f",
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
