//! More `run`/`create` flags Podman users pass (issue 9), end to end as every test user:
//! `--mount`, `--rmi`, `--replace`, `--pidfile`, `--preserve-fds`, `--sysctl`,
//! `--read-only-tmpfs`, `--security-opt mask/unmask`, `--device`, the resource flags,
//! `-a/--attach`, `--pid`/`--uts`/`--cgroupns=host`, `--conmon-pidfile`, `--authfile`,
//! `--disable-content-trust`, `--http-proxy`, `--network-alias`, `--personality`,
//! `--init-path`, `--seccomp-policy`, the per-device block I/O limits and `--cpu-rt-*`.
//! Each is compared with what Podman 4.3 shows for the same flags (mount options, error
//! texts, exit codes).

use crate::util::{for_each_user, Env};

/// The line of /proc/mounts in a fresh container for mount point `at`, with `flags`.
fn mount_line(env: &Env, flags: &[&str], at: &str) -> String {
    let out = env
        .rbox()
        .args(["run", "--rm", "--network=none"])
        .args(flags)
        .args(["busybox", "grep", &format!(" {at} "), "/proc/mounts"])
        .output()
        .success();
    out.text()
}

/// The mount options field of a /proc/mounts line.
fn opts(line: &str) -> Vec<String> {
    line.split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect()
}

#[test]
fn mount_flag() {
    for_each_user("run_flags2_mount", |env| {
        env.import_busybox("busybox");
        let src = env.path("work");
        env.write("work/f", "hello\n");
        let src = src.to_str().unwrap();
        // a read-only bind, in Podman's spellings (src/dst/readonly, source/target/ro)
        for m in [
            format!("type=bind,src={src},dst=/x,readonly"),
            format!("type=bind,source={src},target=/x,ro=true,bind-propagation=rprivate"),
        ] {
            let l = mount_line(env, &["--mount", &m], "/x");
            assert!(opts(&l).contains(&"ro".to_string()), "{m}: {l}");
        }
        // rw, with the content, and ro=false is rw
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--mount"])
            .arg(format!("type=bind,source={src},target=/x,ro=false"))
            .args(["busybox", "sh", "-c", "cat /x/f && echo more >> /x/f"])
            .output()
            .success();
        assert_eq!(out.text(), "hello");
        assert_eq!(
            std::fs::read_to_string(env.path("work/f")).unwrap(),
            "hello\nmore\n"
        );
        // a tmpfs with Podman's size and mode options, exec unless noexec (unlike --tmpfs)
        let l = mount_line(
            env,
            &[
                "--mount",
                "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700",
            ],
            "/t",
        );
        let o = opts(&l);
        for want in ["size=1024k", "mode=700", "nosuid", "nodev"] {
            assert!(o.contains(&want.to_string()), "{want} in {l}");
        }
        assert!(!o.contains(&"noexec".to_string()), "{l}");
        let l = mount_line(env, &["--mount", "type=tmpfs,dst=/t,noexec,ro"], "/t");
        assert!(opts(&l).contains(&"noexec".to_string()), "{l}");
        assert!(opts(&l).contains(&"ro".to_string()), "{l}");
        // a devpts instance of its own
        let l = mount_line(
            env,
            &["--mount", "type=devpts,target=/dev/pts2"],
            "/dev/pts2",
        );
        assert!(l.starts_with("devpts /dev/pts2 devpts"), "{l}");
        // inspect shows it as Podman does
        env.rbox()
            .args(["create", "--name", "m", "--mount"])
            .arg(format!("type=bind,source={src},target=/x,ro"))
            .args(["busybox", "true"])
            .output()
            .success();
        assert_eq!(
            env.field(
                "m",
                "range .Mounts}}{{.Type}} {{.Destination}} {{.RW}}{{end"
            ),
            "bind /x false"
        );

        // Podman's texts for what it refuses
        for (m, want) in [
            (
                format!("source={src},target=/x"),
                "Error: incorrect mount format: should be --mount type=<bind|tmpfs|volume>,[src=<host-dir|volume-name>,]target=<ctr-dir>[,options]".to_string(),
            ),
            ("type=foo,target=/x".into(), "Error: invalid filesystem type \"foo\"".into()),
            (format!("type=bind,source={src}"), "Error: must set volume destination".into()),
            (
                format!("type=bind,source={src},target=x"),
                "Error: invalid container path \"x\", must be an absolute path".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,bogus=1"),
                "Error: bogus: invalid mount option".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,tmpfs-size=1m"),
                "Error: tmpfs-size: invalid mount option".into(),
            ),
            (
                "type=tmpfs,source=/tmp,target=/t".into(),
                "Error: source is not supported with tmpfs mounts".into(),
            ),
            (
                "type=bind,source=/nonexistent-rbox,target=/x".into(),
                "Error: statfs /nonexistent-rbox: no such file or directory".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,ro=maybe"),
                "Error: 'readonly', 'ro', or 'rw' must be set to true or false, instead received \"maybe\": must provide an argument for option".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,bind-propagation=bogus"),
                "Error: invalid option type \"bogus\"".into(),
            ),
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm", "--mount", &m, "busybox", "true"])
                .output()
                .rbox_error();
            assert_eq!(out.stderr.trim_end(), want, "{m}");
        }
        // an image mount's keys (the mounts themselves: volumes::mount_type_image_as_podman)
        let out = env
            .rbox()
            .args(["run", "--rm", "--mount", "type=image,target=/i"])
            .args(["busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("an image mount needs source=IMAGE"),
            "{out}"
        );
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--mount",
                "type=image,source=busybox,target=/i,noexec",
            ])
            .args(["busybox", "true"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: noexec: invalid mount option",
            "{out}"
        );
    });
}

#[test]
fn rmi_replace_pidfile_preserve_fds() {
    for_each_user("run_flags2_lifecycle", |env| {
        env.import_busybox("busybox");
        // --rmi with --rm: the image goes with the container; a second name only untags
        env.rbox()
            .args(["tag", "busybox", "other"])
            .output()
            .success();
        env.rbox()
            .args(["run", "--rm", "--rmi", "--network=none", "other", "true"])
            .output()
            .success();
        let images = env
            .rbox()
            .args(["images", "--format", "{{.Repository}}"])
            .output()
            .success();
        assert_eq!(images.text(), "localhost/busybox", "{images}");
        env.rbox()
            .args(["tag", "busybox", "gone"])
            .output()
            .success();
        env.rbox().args(["rmi", "busybox"]).output().success();
        env.rbox()
            .args(["run", "--rm", "--rmi", "--network=none", "gone", "true"])
            .output()
            .success();
        let images = env.rbox().args(["images", "-q"]).output().success();
        assert_eq!(images.text(), "", "{images}");
        env.import_busybox("busybox");
        // without --rm the container still uses it: an error line, the container's exit code
        let out = env
            .rbox()
            .args([
                "run",
                "--rmi",
                "--name",
                "keeps",
                "--network=none",
                "busybox",
                "sh",
                "-c",
                "exit 3",
            ])
            .output()
            .code_is(3);
        assert!(out.stderr.contains("in use"), "{out}");
        env.rbox()
            .args(["image", "exists", "busybox"])
            .output()
            .success();

        // --replace: Podman's text without --name; a running container of that name goes
        let out = env
            .rbox()
            .args(["run", "--replace", "busybox", "true"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: cannot replace container without --name being set"
        );
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "rep",
                "--network=none",
                "--stop-timeout",
                "1",
                "busybox",
                "sleep",
                "600",
            ])
            .output()
            .success();
        let old = env.field("rep", ".Id");
        let out = env
            .rbox()
            .args([
                "run",
                "--replace",
                "--name",
                "rep",
                "--network=none",
                "busybox",
                "echo",
                "new",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "new");
        assert_ne!(env.field("rep", ".Id"), old);
        // and one that is not running, with create
        env.rbox()
            .args(["create", "--replace", "--name", "rep", "busybox", "true"])
            .output()
            .success();
        let all = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .success();
        assert_eq!(
            all.lines().iter().filter(|n| **n == "rep").count(),
            1,
            "{all}"
        );
        // no container of the name: nothing to replace
        env.rbox()
            .args([
                "run",
                "--rm",
                "--replace",
                "--name",
                "fresh",
                "--network=none",
                "busybox",
                "true",
            ])
            .output()
            .success();

        // --pidfile: the init's pid at each start, no newline (as Podman writes it)
        let pf = env.path("work/pid");
        env.rbox()
            .args(["run", "-d", "--name", "pf", "--network=none", "--pidfile"])
            .arg(&pf)
            .args(["busybox", "sleep", "600"])
            .output()
            .success();
        let pid = std::fs::read_to_string(&pf).unwrap();
        assert_eq!(pid, env.field("pf", ".State.Pid"));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.starts_with(b"sleep\x00600"), "{cmdline:?}");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "pf"])
            .output()
            .success();

        // --preserve-fds: fd 3 (a file opened by the caller) reaches the command
        let out = env
            .cmd("sh")
            .arg("-c")
            .arg(format!(
                "exec 3<{} && exec \"$@\"",
                env.write("work/fd3", "through fd 3\n").display()
            ))
            .args(["sh", crate::util::RBOX])
            .args(["--root"])
            .arg(env.store())
            .arg("--runroot")
            .arg(env.runroot())
            .args([
                "run",
                "--rm",
                "--network=none",
                "--preserve-fds",
                "1",
                "busybox",
                "cat",
                "/proc/self/fd/3",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "through fd 3");
        // without the flag it does not
        let out = env
            .cmd("sh")
            .arg("-c")
            .arg(format!(
                "exec 3<{} && exec \"$@\"",
                env.path("work/fd3").display()
            ))
            .args(["sh", crate::util::RBOX])
            .args(["--root"])
            .arg(env.store())
            .arg("--runroot")
            .arg(env.runroot())
            .args([
                "run",
                "--rm",
                "--network=none",
                "busybox",
                "ls",
                "/proc/self/fd/3",
            ])
            .output();
        assert_ne!(out.code, 0, "{out}");
        // Podman's check when the descriptor is not there
        let out = env
            .rbox()
            .args(["run", "--rm", "--preserve-fds", "5", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("the preserve-fds option requires that file descriptors must be passed"),
            "{out}"
        );
    });
}

#[test]
fn sysctl_and_read_only_tmpfs() {
    for_each_user("run_flags2_sysctl", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .args([
                "--sysctl",
                "net.ipv4.ip_forward=1",
                "--sysctl",
                "kernel.shmmax=1000000",
            ])
            .args(["--sysctl", "kernel.sem=250 32000 32 128"])
            .args([
                "busybox",
                "cat",
                "/proc/sys/net/ipv4/ip_forward",
                "/proc/sys/kernel/shmmax",
            ])
            .args(["/proc/sys/kernel/sem"])
            .output()
            .success();
        assert_eq!(out.lines(), ["1", "1000000", "250\t32000\t32\t128"]);
        // /proc/sys stays read-only for the command
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--sysctl",
                "net.ipv4.ip_forward=1",
            ])
            .args([
                "busybox",
                "sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv4/ip_forward",
            ])
            .output();
        assert_ne!(out.code, 0, "{out}");
        // Podman's texts
        for (flags, want) in [
            (
                &["--sysctl", "vm.swappiness=10"][..],
                "Error: sysctl 'vm.swappiness' is not allowed",
            ),
            (
                &["--sysctl", "kernel.hostname=x"][..],
                "Error: sysctl 'kernel.hostname' is not allowed",
            ),
            (
                &["--sysctl", "foo"][..],
                "Error: foo is invalid, sysctl values must be in the form of KEY=VALUE",
            ),
            (
                &["--network=host", "--sysctl", "net.ipv4.ip_forward=1"][..],
                "Error: sysctl net.ipv4.ip_forward=1 can't be set since Network Namespace set to host: invalid argument",
            ),
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm"])
                .args(flags)
                .args(["busybox", "true"])
                .output()
                .rbox_error();
            assert_eq!(out.stderr.trim_end(), want);
        }
        // a name the kernel does not have: the start fails, saying which
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--sysctl",
                "net.nonexistent=1",
            ])
            .args(["busybox", "true"])
            .output();
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains("net.nonexistent"), "{out}");

        // --read-only: tmpfs on /tmp, /var/tmp, /run unless --read-only-tmpfs=false
        let script =
            "grep -cE ' /(tmp|var/tmp|run) tmpfs' /proc/mounts; touch /tmp/x && echo writable";
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--read-only",
                "busybox",
                "sh",
                "-c",
                script,
            ])
            .output()
            .success();
        assert_eq!(out.lines(), ["3", "writable"]);
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--read-only",
                "--read-only-tmpfs=false",
            ])
            .args(["busybox", "sh", "-c", script])
            .output();
        assert_eq!(out.lines(), ["0"], "{out}");
        assert!(out.stderr.contains("Read-only file system"), "{out}");
        // without --read-only it changes nothing
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--read-only-tmpfs=false"])
            .args(["busybox", "sh", "-c", "touch /tmp/x && echo ok"])
            .output()
            .success();
        assert_eq!(out.text(), "ok");
    });
}

#[test]
fn resource_flags_recorded_with_a_warning() {
    for_each_user("run_flags2_resources", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--name", "lim", "--network=none", "-m", "64m"])
            .args([
                "--memory-swap",
                "128m",
                "--memory-reservation",
                "32m",
                "--cpus",
                "1.5",
            ])
            .args([
                "--cpu-shares",
                "512",
                "--cpuset-cpus",
                "0",
                "--pids-limit",
                "100",
            ])
            .args(["busybox", "echo", "ran"])
            .output()
            .success();
        assert_eq!(out.text(), "ran");
        // this host delegates no cgroup v2 subtree (the test machine's setup): one warning
        // rootless; root applies them (tests/it/cgroups.rs)
        let warnings: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.to_lowercase().contains("resource limits"))
            .collect();
        let want = usize::from(env.user.who != crate::util::Who::Root);
        assert_eq!(warnings.len(), want, "{out}");
        assert_eq!(
            env.field("lim",
                ".HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} {{.HostConfig.PidsLimit"
            ),
            "67108864 134217728 1500000000 512 0 100"
        );
        let out = env
            .rbox()
            .args(["run", "--rm", "--memory", "abc", "busybox", "true"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: invalid value for memory: invalid size: 'abc'"
        );
    });
}

/// `--device`: the host's node bind-mounted (a rootless container cannot make one), usable in
/// the container, under its own path or another; Podman's texts for a missing path and for
/// what is not a device.
#[test]
fn device_nodes_are_passed_in() {
    for_each_user("device", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--device", "/dev/fuse"])
            .args([
                "--device",
                "/dev/net/tun:/dev/tun0:rw",
                "busybox",
                "sh",
                "-c",
            ])
            .arg("stat -c '%t:%T' /dev/fuse /dev/tun0 && exec 3<>/dev/fuse && echo opened")
            .output()
            .success();
        assert_eq!(out.text(), "a:e5\na:c8\nopened", "{out}");
        let out = env
            .rbox()
            .args(["run", "--rm", "--device", "/dev/nosuch", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("stat /dev/nosuch: no such file or directory"),
            "{out}"
        );
        let out = env
            .rbox()
            .args(["run", "--rm", "--device", "/etc/passwd", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("/etc/passwd is not a valid device: not a device node"),
            "{out}"
        );
    });
}

/// `--security-opt mask=` hides more paths (as the defaults are hidden), `unmask=PATH|ALL`
/// leaves defaults alone.
#[test]
fn security_opt_mask_and_unmask() {
    for_each_user("mask", |env| {
        env.import_busybox("busybox");
        let run = |opts: &[&str], script: &str| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(opts)
                .args(["busybox", "sh", "-c", script])
                .output()
                .success()
                .text()
        };
        let firmware = "ls /sys/firmware | wc -l";
        assert_eq!(run(&[], firmware), "0", "masked by default");
        let host = std::fs::read_dir("/sys/firmware")
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(
            run(&["--security-opt", "unmask=/sys/firmware"], firmware),
            host.to_string()
        );
        assert_eq!(
            run(&["--security-opt", "unmask=ALL"], firmware),
            host.to_string()
        );
        assert_eq!(
            run(
                &["--security-opt", "mask=/etc/hostname:/etc/passwd"],
                "cat /etc/hostname /etc/passwd | wc -c"
            ),
            "0"
        );
        env.rbox()
            .args([
                "run",
                "--rm",
                "--security-opt",
                "mask=etc",
                "busybox",
                "true",
            ])
            .output()
            .rbox_error();
    });
}

/// `-a/--attach`: only the named streams reach the caller (any case, repeated or
/// comma-separated), the others still reach the log; stdin follows `-i` (Podman 4.3 passes it
/// with `-i -a stdout` and not with `-a stdin` alone); with `-d` the container runs detached,
/// as Podman runs it; `create -a` is checked but `start -a` shows everything, as Podman's
/// does. A stream Podman does not know is refused in its words.
#[test]
fn attach_flag() {
    for_each_user("run_flags2_attach", |env| {
        env.import_busybox("busybox");
        let run = |flags: &[&str]| {
            env.rbox()
                .args(["run", "--network=none"])
                .args(flags)
                .args(["busybox", "sh", "-c", "echo out; echo err >&2"])
                .output()
                .success()
        };
        let both = |o: &crate::util::Output| (o.stdout.clone(), o.stderr.clone());
        let (out, err) = ("out\n".to_string(), "err\n".to_string());
        assert_eq!(
            both(&run(&["--rm", "-a", "stdout"])),
            (out.clone(), "".into())
        );
        assert_eq!(
            both(&run(&["--rm", "--attach=STDERR"])),
            ("".into(), err.clone())
        );
        for f in [
            &["-a", "stdout", "-a", "stderr"][..],
            &["-a", "stdout,stderr"],
        ] {
            let o = run(&[&["--rm"][..], f].concat());
            assert_eq!(both(&o), (out.clone(), err.clone()), "{f:?}");
        }
        // with -i the output comes through the detached monitor: the same choice
        let o = run(&["--rm", "-i", "-a", "stdout"]);
        assert_eq!(both(&o), (out.clone(), "".into()));
        // what is not shown is logged all the same
        run(&["--name", "att", "-a", "stderr"]);
        let logs = env.rbox().args(["logs", "att"]).output().success();
        assert!(logs.stdout.contains("out"), "{logs}");
        assert!(
            logs.stderr.contains("err") || logs.stdout.contains("err"),
            "{logs}"
        );
        env.rbox().args(["rm", "att"]).output().success();
        // create's -a is checked, not kept: `start -a` shows every stream (as Podman's)
        env.rbox()
            .args(["create", "--network=none", "--name", "atc", "-a", "stdout"])
            .args(["busybox", "sh", "-c", "echo out; echo err >&2"])
            .output()
            .success();
        let o = env.rbox().args(["start", "-a", "atc"]).output().success();
        assert_eq!(both(&o), (out.clone(), err.clone()));
        env.rbox().args(["rm", "atc"]).output().success();
        // stdin: with -i, whatever -a says; not without it
        for (flags, want) in [
            (&["-i", "-a", "stdout"][..], "hi"),
            (&["-i", "-a", "stdin", "-a", "stdout"], "hi"),
            (&["-a", "stdin", "-a", "stdout"], ""),
        ] {
            let o = env
                .rbox()
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .args(["busybox", "cat"])
                .stdin("hi\n")
                .output()
                .success();
            assert_eq!(o.text(), want, "{flags:?}");
        }
        let o = env
            .rbox()
            .args([
                "run",
                "-d",
                "--network=none",
                "-a",
                "stdout",
                "--name",
                "attd",
            ])
            .args(["busybox", "true"])
            .output()
            .success();
        assert_eq!(o.text().len(), 64, "{o}");
        env.rbox().args(["rm", "-f", "attd"]).output().success();
        for (bad, msg) in [
            ("bogus", "Error: invalid stream \"bogus\" for --attach - must be one of stdin, stdout, or stderr: invalid argument"),
            ("", "Error: must provide at least one stream to attach to: invalid argument"),
        ] {
            let o = env
                .rbox()
                .args(["run", "--rm", "-a", bad, "busybox", "true"])
                .output()
                .rbox_error();
            assert_eq!(o.stderr.trim_end(), msg);
        }
    });
}

/// The test's own namespace of `kind` (`pid`, `uts`, `cgroup`): rbox's users share it.
fn own_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// `--pid=host`, `--uts=host`, `--cgroupns=host|private`, which Podman 4.3 runs rootless: the
/// container stays in the host's namespace of that kind. With `--pid=host` its /proc is the
/// host's (its pids are the host's: `$$` is not 1, /proc/1 is the host's init) and `top`,
/// `--pidfile`, `stop` still reach its process; with `--uts=host` the hostname is the host's
/// and cannot be set from a user namespace, while /etc/hostname names the container (as under
/// Podman), and `--hostname` is refused in Podman's words.
#[test]
fn host_namespaces() {
    for_each_user("run_flags2_hostns", |env| {
        env.import_busybox("busybox");
        let run = |flags: &[&str], script: &str| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .args(["busybox", "sh", "-c", script])
                .output()
                .success()
                .lines()
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let l = run(
            &["--pid=host"],
            "readlink /proc/self/ns/pid; echo $$; test -d /proc/1 && echo one",
        );
        assert_eq!(l[0], own_ns("pid"), "{l:?}");
        assert_ne!(l[1], "1", "{l:?}");
        assert_eq!(l[2], "one", "{l:?}");
        let l = run(&["--pid=private"], "readlink /proc/self/ns/pid; echo $$");
        assert_ne!(l[0], own_ns("pid"), "{l:?}");
        assert_eq!(l[1], "1", "{l:?}");

        // a detached one: its pid file, `top` (its process alone, not the namespace's
        // others) and `stop`
        let pidfile = env.path("work/pid");
        env.rbox()
            .args(["run", "-d", "--network=none", "--pid=host", "--name", "ph"])
            .arg("--pidfile")
            .arg(&pidfile)
            .args(["busybox", "sleep", "1000"])
            .output()
            .success();
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert_eq!(cmdline, b"sleep\x001000\x00");
        let top = env.rbox().args(["top", "ph"]).output().success();
        let lines = top.lines();
        assert_eq!(lines.len(), 2, "{top}");
        assert!(lines[1].contains(&format!(" {} ", pid.trim())), "{top}");
        env.rbox()
            .args(["stop", "-t", "1", "ph"])
            .output()
            .success();
        assert_eq!(env.inspect("ph", "{{.State.Status}}"), "exited");
        env.rbox().args(["rm", "ph"]).output().success();

        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        // setting it is tried as the unprivileged users only: root's container in the host's
        // UTS namespace may set the machine's
        let set = if env.user.uid == 0 {
            ""
        } else {
            "hostname x 2>/dev/null || echo refused"
        };
        let l = run(
            &["--uts=host"],
            &format!("hostname; cat /etc/hostname; readlink /proc/self/ns/uts; {set}"),
        );
        assert_eq!(l[0], host_name.trim(), "{l:?}");
        assert!(
            l[1].len() == 12 && l[1].bytes().all(|b| b.is_ascii_hexdigit()),
            "{l:?}"
        );
        assert_eq!(l[2], own_ns("uts"), "{l:?}");
        if env.user.uid != 0 {
            assert_eq!(l[3], "refused", "{l:?}");
        }
        let l = run(
            &["--uts=private", "--hostname=box"],
            "hostname; readlink /proc/self/ns/uts",
        );
        assert_eq!(l[0], "box");
        assert_ne!(l[1], own_ns("uts"));
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--uts=host",
                "--hostname=box",
                "busybox",
                "true",
            ])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: invalid config provided: cannot set hostname when running in the host UTS namespace: invalid configuration"
        );

        let l = run(&["--cgroupns=host"], "readlink /proc/self/ns/cgroup");
        assert_eq!(l[0], own_ns("cgroup"));
        let l = run(&["--cgroupns", "private"], "readlink /proc/self/ns/cgroup");
        assert_ne!(l[0], own_ns("cgroup"));
        let out = env
            .rbox()
            .args(["run", "--rm", "--cgroupns=bogus", "busybox", "true"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: unrecognized namespace mode bogus passed"
        );
    });
}

/// `--conmon-pidfile`: the pid of the container's monitor (rbox's conmon), its parent, as
/// Podman writes conmon's (no newline; the file stays after the exit): the rbox invocation
/// itself for an attached run, the forked monitor for `-d`. An empty path writes nothing.
#[test]
fn conmon_pidfile() {
    for_each_user("run_flags2_conmonpid", |env| {
        env.import_busybox("busybox");
        let (conmon, pidfile) = (env.path("work/conmon"), env.path("work/pid"));
        // the container's parent, seen from the host's pid namespace
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--pid=host"])
            .arg("--conmon-pidfile")
            .arg(&conmon)
            .args(["busybox", "sh", "-c", "echo $PPID"])
            .output()
            .success();
        assert_eq!(std::fs::read_to_string(&conmon).unwrap(), out.text());
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "cp"])
            .arg("--conmon-pidfile")
            .arg(&conmon)
            .arg("--pidfile")
            .arg(&pidfile)
            .args(["busybox", "sleep", "1000"])
            .output()
            .success();
        let monitor = std::fs::read_to_string(&conmon).unwrap();
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.lines().any(|l| l == format!("PPid:\t{monitor}")),
            "monitor {monitor}:\n{status}"
        );
        let cmdline = std::fs::read(format!("/proc/{monitor}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("--conmon-pidfile"),
            "{cmdline:?}"
        );
        env.rbox()
            .args(["rm", "-f", "-t", "0", "cp"])
            .output()
            .success();
        env.rbox()
            .args(["run", "--rm", "--network=none", "--conmon-pidfile", ""])
            .args(["busybox", "true"])
            .output()
            .success();
    });
}

/// `--authfile` gives `run` and `create` the credentials of the pull they make (as `pull
/// --authfile`), `--disable-content-trust` is accepted and does nothing, as in Podman 4.3.
#[test]
fn authfile_for_the_pull() {
    use crate::registry::{prerequisites, push_helper, Options, Registry};
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options {
        basic_auth: Some(("tester".into(), "s3cret".into())),
        ..Default::default()
    });
    for_each_user("run_flags2_authfile", |env| {
        let image = push_helper(&reg, env, "test/run-authfile");
        // without credentials the registry refuses the pull
        env.rbox()
            .args(["run", "--rm", "--tls-verify=false", &image, "args", "x"])
            .output()
            .rbox_error();
        // "tester:s3cret"
        let file = env.write(
            "creds/auth.json",
            format!(
                "{{\"auths\":{{\"{}\":{{\"auth\":\"dGVzdGVyOnMzY3JldA==\"}}}}}}",
                reg.addr
            ),
        );
        env.give_to_user(&env.path("creds"));
        let authfile = format!("--authfile={}", file.display());
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--tls-verify=false",
                "--disable-content-trust",
            ])
            .args([&authfile, &image, "args", "authed"])
            .output()
            .success();
        assert_eq!(out.text(), "authed");
        env.rbox().args(["rmi", &image]).output().success();
        env.rbox()
            .args([
                "create",
                "--tls-verify=false",
                "--name",
                "c",
                &authfile,
                &image,
            ])
            .output()
            .success();
        env.rbox().args(["rm", "c"]).output().success();
        // a missing file is a one-line error, as for pull
        env.rbox()
            .args(["run", "--rm", "--tls-verify=false", "--pull=always"])
            .args(["--authfile=/nonexistent/auth.json", &image])
            .output()
            .rbox_error();
    });
}

/// `--http-proxy` (on by default): the caller's proxy variables, in both cases, reach the
/// container under the image's and -e's; `--http-proxy=false` keeps them out. `--network-alias`
/// is refused as Podman refuses it without a bridge network.
#[test]
fn http_proxy_and_network_alias() {
    for_each_user("run_flags2_http_proxy", |env| {
        env.import_busybox("busybox");
        let proxied = |flags: &[&str]| -> Vec<String> {
            let out = env
                .rbox()
                .env("http_proxy", "http://p1:3128")
                .env("HTTPS_PROXY", "http://p2:3128")
                .env("no_proxy", "localhost")
                .env("FTP_PROXY", "ftp://p3")
                .env("all_proxy", "socks5://p4")
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .args(["busybox", "env"])
                .output()
                .success();
            let mut v: Vec<String> = out
                .lines()
                .iter()
                .filter(|l| l.to_ascii_lowercase().contains("proxy="))
                .map(|l| l.to_string())
                .collect();
            v.sort();
            v
        };
        // all_proxy is not one Podman passes
        let all = [
            "FTP_PROXY=ftp://p3",
            "HTTPS_PROXY=http://p2:3128",
            "http_proxy=http://p1:3128",
            "no_proxy=localhost",
        ];
        assert_eq!(proxied(&[]), all);
        assert_eq!(proxied(&["--http-proxy"]), all);
        assert_eq!(proxied(&["--http-proxy=true"]), all);
        assert!(proxied(&["--http-proxy=false"]).is_empty());
        assert_eq!(
            proxied(&["-e", "http_proxy=mine", "--http-proxy=true"]),
            [
                "FTP_PROXY=ftp://p3",
                "HTTPS_PROXY=http://p2:3128",
                "http_proxy=mine",
                "no_proxy=localhost",
            ]
        );
        env.rbox()
            .args(["run", "--rm", "--http-proxy=maybe", "busybox", "true"])
            .output()
            .rbox_error();
        for net in ["--network=none", "--network=host"] {
            let out = env
                .rbox()
                .args([
                    "run",
                    "--rm",
                    net,
                    "--network-alias",
                    "web",
                    "busybox",
                    "true",
                ])
                .output()
                .rbox_error();
            assert!(
                out.stderr
                    .contains("--network-alias can only be set when the network mode is bridge"),
                "{out}"
            );
        }
        env.rbox()
            .args(["create", "--network-alias=web", "busybox", "true"])
            .output()
            .rbox_error();
    });
}

/// `--personality LINUX32|LINUX` sets the execution domain before exec (linux.personality, as
/// crun does for Podman); any other name is refused before anything is made. `--init-path` is
/// refused: rbox's --init runs no init binary.
#[test]
fn personality_and_init_path() {
    for_each_user("run_flags2_personality", |env| {
        env.import_busybox("busybox");
        let run = |flags: &[&str], cmd: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .arg("busybox")
                .args(cmd)
                .output()
        };
        let machine = run(&[], &["uname", "-m"]).success().text();
        if machine == "x86_64" {
            let out = run(&["--personality", "LINUX32"], &["uname", "-m"]).success();
            assert_eq!(out.text(), "i686");
        }
        // PER_LINUX32 is 0x0008; it outlives the exec of a child
        let out = run(
            &["--personality=LINUX32"],
            &["sh", "-c", "cat /proc/self/personality"],
        );
        assert_eq!(out.success().text(), "00000008");
        let out = run(&["--personality=LINUX"], &["cat", "/proc/self/personality"]);
        assert_eq!(out.success().text(), "00000000");
        // kept by create for start
        env.rbox()
            .args([
                "create",
                "--name",
                "p",
                "--network=none",
                "--personality=LINUX32",
            ])
            .args(["busybox", "cat", "/proc/self/personality"])
            .output()
            .success();
        let out = env.rbox().args(["start", "-a", "p"]).output().success();
        assert_eq!(out.text(), "00000008");
        env.rbox().args(["rm", "p"]).output().success();
        for bad in ["linux32", "PER_LINUX", ""] {
            let out = run(&["--personality", bad], &["true"]).rbox_error();
            assert!(out.stderr.contains("unknown persona"), "{out}");
        }
        let out = run(&["--init", "--init-path=/usr/bin/catatonit"], &["true"]).rbox_error();
        assert!(out.stderr.contains("--init-path"), "{out}");
    });
}

/// `--seccomp-policy`: default keeps rbox's profile; image takes the profile of the image's
/// io.containers.seccomp.profile label, and refuses an image without one in Podman's words;
/// another policy is refused in Podman's words too.
#[test]
fn seccomp_policy() {
    for_each_user("run_flags2_seccomp_policy", |env| {
        env.import_busybox("busybox");
        let run = |flags: &[&str], image: &str| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .args([image, "mkdir", "/tmp/d"])
                .output()
        };
        run(&["--seccomp-policy=default"], "busybox").success();
        let out = run(&["--seccomp-policy=image"], "busybox").rbox_error();
        assert!(
            out.stderr.contains("no seccomp policy defined by image"),
            "{out}"
        );
        let out = run(&["--seccomp-policy", "foo"], "busybox").rbox_error();
        assert!(
            out.stderr.contains(
                r#"invalid seccomp policy "foo": valid policies are ["default" "image"]"#
            ),
            "{out}"
        );
        // an image whose label forbids mkdir
        env.write("work/ctx/Containerfile", "FROM busybox\n");
        let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":95}]}"#;
        env.give_to_user(&env.path("work"));
        env.rbox()
            .args(["build", "--network=none", "-q", "-t", "labelled"])
            .arg(format!("--label=io.containers.seccomp.profile={profile}"))
            .arg(env.path("work/ctx"))
            .output()
            .success();
        run(&[], "labelled").success();
        run(&["--seccomp-policy=default"], "labelled").success();
        let out = run(&["--seccomp-policy=image"], "labelled").code_is(1);
        assert!(out.stderr.contains("mkdir"), "{out}");
        // unconfined stays unconfined
        run(
            &[
                "--seccomp-policy=image",
                "--security-opt=seccomp=unconfined",
            ],
            "labelled",
        )
        .success();
    });
}

/// The per-device block I/O flags (`--device-read-bps`, `--device-write-bps`,
/// `--device-read-iops`, `--device-write-iops`, `--blkio-weight-device`): as root they are in
/// the container's cgroup; rootless without delegation Podman's one warning and the run goes on,
/// as Podman 4.3 does. A bad rate or a missing device is refused in Podman's words.
#[test]
fn device_io_limits() {
    use crate::cgroups::{cgroup_file, pure_v2, read, PODMAN_V1_WARNING};
    // a block device of the host, by its /sys/block entry (loop devices on this machine kind)
    let Some((dev, numbers)) = std::fs::read_dir("/sys/block").ok().and_then(|d| {
        d.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let numbers = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let dev = format!("/dev/{name}");
            std::path::Path::new(&dev)
                .exists()
                .then(|| (dev, numbers.trim().to_string()))
        })
    }) else {
        assert!(!crate::util::is_ci(), "no block device in /sys/block");
        eprintln!("SKIP device_io_limits: no block device in /sys/block");
        return;
    };
    for_each_user("run_flags2_device_io", |env| {
        env.import_busybox("busybox");
        let name = format!("io-{}", crate::util::unique());
        let out = env
            .rbox()
            .args(["run", "-d", "--name", &name, "--network=none"])
            .arg(format!("--device-read-bps={dev}:1mb"))
            .arg(format!("--device-write-bps={dev}:2048"))
            .arg(format!("--device-read-iops={dev}:100"))
            .arg(format!("--device-write-iops={dev}:200"))
            .args(["busybox", "sleep", "1000"])
            .output()
            .success();
        if env.user.who == crate::util::Who::Root {
            let pid: i32 = env.field(&name, ".State.Pid").parse().unwrap();
            if pure_v2() {
                let max = read(&cgroup_file(pid, "io", "io.max"));
                for want in ["rbps=1048576", "wbps=2048", "riops=100", "wiops=200"] {
                    assert!(max.contains(want), "{want} in {max}");
                }
            } else {
                for (file, want) in [
                    ("blkio.throttle.read_bps_device", "1048576"),
                    ("blkio.throttle.write_bps_device", "2048"),
                    ("blkio.throttle.read_iops_device", "100"),
                    ("blkio.throttle.write_iops_device", "200"),
                ] {
                    assert_eq!(
                        read(&cgroup_file(pid, "blkio", file)),
                        format!("{numbers} {want}"),
                        "{file}: {out}"
                    );
                }
            }
        } else {
            assert_eq!(env.field(&name, ".State.Status"), "running", "{out}");
            if !pure_v2() {
                assert!(out.stderr.contains(PODMAN_V1_WARNING), "{out}");
            }
        }
        env.rbox().args(["rm", "-f", &name]).output().success();
        // a weight the host cannot apply (no weight files without BFQ's) is a warning, as for
        // --blkio-weight: the run goes on
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .arg(format!("--blkio-weight-device={dev}:300"))
            .args(["busybox", "echo", "ran"])
            .output()
            .success();
        assert_eq!(out.text(), "ran", "{out}");
        for (flag, text) in [
            (
                format!("--device-read-bps={dev}:x"),
                "invalid rate for device",
            ),
            (
                format!("--device-write-iops={dev}:0"),
                "invalid rate for device",
            ),
            (
                "--device-read-bps=/dev/nosuch:1mb".into(),
                "could not parse throttle device at /dev/nosuch",
            ),
            (
                format!("--blkio-weight-device={dev}:5"),
                "--blkio-weight-device",
            ),
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm", &flag, "busybox", "true"])
                .output()
                .rbox_error();
            assert!(out.stderr.contains(text), "{flag}: {out}");
        }
    });
}

/// `--cpu-rt-period` and `--cpu-rt-runtime`: as root on cgroup v1 in the container's cpu
/// cgroup; rootless without delegation Podman's one warning and the run goes on.
#[test]
fn cpu_rt_limits() {
    use crate::cgroups::{cgroup_file, pure_v2, read, PODMAN_V1_WARNING};
    for_each_user("run_flags2_cpu_rt", |env| {
        env.import_busybox("busybox");
        let name = format!("rt-{}", crate::util::unique());
        // a runtime above 0 needs the parent cgroups' real-time budget: the period alone is
        // what any host takes
        let out = env
            .rbox()
            .args(["run", "-d", "--name", &name, "--network=none"])
            .args(["--cpu-rt-period=50000", "busybox", "sleep", "1000"])
            .output()
            .success();
        let root = env.user.who == crate::util::Who::Root;
        if root && !pure_v2() {
            let pid: i32 = env.field(&name, ".State.Pid").parse().unwrap();
            let f = cgroup_file(pid, "cpu", "cpu.rt_period_us");
            assert_eq!(read(&f), "50000", "{out}");
        } else if pure_v2() {
            assert!(out.stderr.contains("no real-time CPU limits"), "{out}");
        } else {
            assert!(out.stderr.contains(PODMAN_V1_WARNING), "{out}");
        }
        assert_eq!(env.field(&name, ".State.Status"), "running", "{out}");
        env.rbox().args(["rm", "-f", &name]).output().success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .args(["--cpu-rt-period=100000", "--cpu-rt-runtime=1000"])
            .args(["busybox", "echo", "ran"])
            .output()
            .success();
        assert_eq!(out.text(), "ran", "{out}");
        env.rbox()
            .args(["run", "--rm", "--cpu-rt-period=x", "busybox", "true"])
            .output()
            .rbox_error();
    });
}
