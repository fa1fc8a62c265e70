//! The last `run`/`create` flags of Podman 4.3 (issue 9), end to end as every test user:
//! `--systemd`, `--sdnotify`, `--requires`, `--cgroup-conf`, `--device-cgroup-rule`,
//! `--chrootdirs`, `--init-ctr`. Each is compared with what rootless Podman 4.3.1 shows on a cgroup v1 host
//! without delegation for the same flags (mounts, environment, inspect keys, error texts and
//! exit codes).

use crate::util::{for_each_user, Env};

/// The /proc/mounts lines of a fresh container whose mount point is one of `at`.
fn mounts_at(env: &Env, flags: &[&str], cmd: &[&str], at: &[&str]) -> Vec<String> {
    let out = env
        .rbox()
        .args(["run", "--rm", "--network=none"])
        .args(flags)
        .arg("busybox")
        .args(cmd)
        .output()
        .success();
    out.text()
        .lines()
        .filter(|l| at.contains(&l.split_whitespace().nth(1).unwrap_or_default()))
        .map(String::from)
        .collect()
}

const SYSTEMD_TMPFS: [&str; 4] = ["/run", "/run/lock", "/tmp", "/var/log/journal"];

/// `--systemd`: Podman's systemd mode (tmpfs on /run, /run/lock, /tmp, /var/log/journal,
/// container_uuid, SIGRTMIN+3 as stop signal, SystemdMode in inspect) for an init command by
/// default, for any command with `always`, never with `false`; bad values in Podman's words.
/// `run --rm FLAG VALUE busybox true` is refused (125, one clean line) with `text`, for each
/// (VALUE, text).
fn refused(env: &Env, flag: &str, cases: &[(&str, &str)]) {
    for (v, text) in cases {
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", flag, v, "busybox", "true"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains(text), "{flag} {v}: {out}");
    }
}

#[test]
fn systemd_mode() {
    for_each_user("run_flags3_systemd", |env| {
        env.import_busybox("busybox");
        let cat = ["cat", "/proc/mounts"];
        let got = mounts_at(env, &["--systemd=always"], &cat, &SYSTEMD_TMPFS);
        assert_eq!(got.len(), 4, "{got:?}");
        for l in &got {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[2], "tmpfs", "{l}");
            for o in ["rw", "nosuid", "nodev"] {
                assert!(f[3].split(',').any(|x| x == o), "{o} in {l}");
            }
        }
        // the directories are writable for the container's root
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--systemd=ALWAYS",
                "busybox",
            ])
            .args([
                "sh",
                "-c",
                "touch /run/lock/x /var/log/journal/y && echo ok",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "ok");
        // not without systemd mode: the default for a command that is no init, and false
        for flags in [&[][..], &["--systemd=false"], &["--systemd=true"]] {
            assert!(mounts_at(env, flags, &cat, &SYSTEMD_TMPFS).is_empty());
        }
        // a user's mount on one of the paths wins
        let got = mounts_at(
            env,
            &["--systemd=always", "--tmpfs=/tmp:size=1m"],
            &cat,
            &["/tmp"],
        );
        assert!(got.len() == 1 && got[0].contains("size=1024k"), "{got:?}");

        // inspect: SystemdMode and the stop signal (SIGRTMIN+3, 37) as Podman decides them
        let mode = |name: &str, flags: &[&str], cmd: &[&str]| {
            env.rbox()
                .args(["create", "--name", name, "--network=none"])
                .args(flags)
                .arg("busybox")
                .args(cmd)
                .output()
                .success();
            let m = env.inspect(name, "{{.Config.SystemdMode}} {{.Config.StopSignal}}");
            env.rbox().args(["rm", name]).output().success();
            m
        };
        for (flags, cmd) in [
            (&[][..], &["/sbin/init"][..]),
            (&[], &["/usr/sbin/init"]),
            (&[], &["/usr/local/sbin/init"]),
            (&[], &["/usr/lib/systemd/systemd"]),
            (&["--systemd="], &["systemd"]),
            (&["--systemd=True"], &["/sbin/init"]),
            (&["--systemd=always"], &["true"]),
            (&["--entrypoint=/sbin/init"], &[]),
        ] {
            assert_eq!(mode("s", flags, cmd), "true 37", "{flags:?} {cmd:?}");
        }
        for (flags, cmd) in [
            (&[][..], &["init"][..]),
            (&[], &["/bin/systemd-x"]),
            (&["--systemd=FALSE"], &["/sbin/init"]),
        ] {
            assert_eq!(mode("s", flags, cmd), "false SIGTERM", "{flags:?} {cmd:?}");
        }
        // a stop signal given wins
        assert_eq!(
            mode("s", &["--systemd=always", "--stop-signal=TERM"], &["true"]),
            "true SIGTERM"
        );
        // the process gets container_uuid: the id's first 32 characters (and container=)
        env.rbox()
            .args([
                "create",
                "--name",
                "u",
                "--network=none",
                "--systemd=always",
            ])
            .args(["busybox", "env"])
            .output()
            .success();
        let id = env.field("u", ".Id");
        let out = env.rbox().args(["start", "-a", "u"]).output().success();
        let text = out.text();
        assert!(
            text.lines()
                .any(|l| l == format!("container_uuid={}", &id[..32])),
            "{text}"
        );
        assert!(text.lines().any(|l| l.starts_with("container=")), "{text}");
        let bad = "invalid config provided: --systemd values must be one of \"true, false, always\": invalid configuration";
        refused(
            env,
            "--systemd",
            &[("1", bad), ("yes", bad), ("bogus", bad)],
        );
    });
}

/// The stop signal of systemd mode, SIGRTMIN+3 (37), reaches the command at `rbox stop`
/// through the monitor (a real-time signal), as `kill -s RTMIN+3` does; `--stop-signal`
/// takes Podman's real-time names.
#[test]
fn realtime_stop_signal() {
    for_each_user("run_flags3_rtstop", |env| {
        env.import_busybox("busybox");
        let helper = env.copy_in(&crate::fixtures::helper_bin(), "helper");
        let helper = format!("{}:/helper:ro", helper.display());
        let start = |name: &str, flags: &[&str]| {
            env.rbox()
                .args(["run", "-d", "--name", name, "--network=none", "-v", &helper])
                .args(flags)
                .args(["busybox", "/helper", "wait-signal"])
                .output()
                .success();
            crate::util::eventually("the helper is ready", || {
                env.text(&["logs", name]).contains("ready")
            });
        };
        start("s", &["--systemd=always"]);
        // (the timeout is long: SIGKILL would not print the line)
        env.rbox()
            .args(["stop", "-t", "100", "s"])
            .output()
            .success();
        assert_eq!(env.text(&["logs", "s"]), "ready\nsignal=37");
        start("k", &["--stop-signal=SIGRTMIN+3"]);
        assert_eq!(env.field("k", ".Config.StopSignal"), "37");
        env.rbox()
            .args(["kill", "-s", "RTMIN+3", "k"])
            .output()
            .success();
        env.rbox().args(["wait", "k"]).output().success();
        assert_eq!(env.text(&["logs", "k"]), "ready\nsignal=37");
        for bad in ["RTMIN+40", "RTMAX-x", "RTMIN3"] {
            let out = env
                .rbox()
                .args(["create", "--stop-signal", bad, "busybox", "true"])
                .output()
                .rbox_error();
            assert!(
                out.stderr.contains(&format!("invalid signal: {bad}")),
                "{out}"
            );
        }
    });
}

/// `--requires`: the containers named are started first (at `run` and at each `start`), by id
/// in inspect's Dependencies; an unknown one and removing a required one are refused in
/// Podman's words.
#[test]
fn requires_starts_dependencies() {
    for_each_user("run_flags3_requires", |env| {
        env.import_busybox("busybox");
        for n in ["a", "b"] {
            env.rbox()
                .args(["create", "--name", n, "--network=none", "busybox"])
                .args(["sleep", "1000"])
                .output()
                .success();
        }
        let status = |n: &str| env.field(n, ".State.Status");
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--requires",
                "a",
                "busybox",
            ])
            .args(["echo", "hi"])
            .output()
            .success();
        assert_eq!(out.text(), "hi");
        assert_eq!(status("a"), "running");
        assert_eq!(status("b"), "created");
        env.rbox().args(["stop", "-t", "0", "a"]).output().success();
        // create: recorded by id; start starts both (comma-separated, as Podman takes them)
        env.rbox()
            .args(["create", "--name", "c", "--network=none", "--requires=a,b"])
            .args(["busybox", "true"])
            .output()
            .success();
        let ids = format!("[{} {}]", env.field("a", ".Id"), env.field("b", ".Id"));
        assert_eq!(env.field("c", ".Dependencies"), ids);
        env.rbox().args(["start", "c"]).output().success();
        assert_eq!(
            (status("a"), status("b")),
            ("running".into(), "running".into())
        );
        // a restart starts no dependency: refused while one is stopped, as Podman refuses it
        env.rbox().args(["stop", "-t", "0", "b"]).output().success();
        let out = env
            .rbox()
            .args(["restart", "-t", "0", "c"])
            .output()
            .rbox_error();
        let b = env.field("b", ".Id");
        assert!(
            out.stderr.contains(&format!(
                "some dependencies of container {} are not started: {b}: container state improper",
                env.field("c", ".Id")
            )),
            "{out}"
        );
        env.rbox().args(["start", "b"]).output().success();
        env.rbox()
            .args(["restart", "-t", "0", "c"])
            .output()
            .success();
        // a required container stays until its dependents go, even with -f
        for args in [&["rm", "b"][..], &["rm", "-f", "b"]] {
            let out = env.rbox().args(args).output().rbox_error();
            assert!(
                out.stderr
                    .contains("has dependent containers which must be removed before it"),
                "{out}"
            );
        }
        env.rbox()
            .args(["rm", "-f", "--depend", "-t", "0", "a"])
            .output()
            .success();
        env.rbox()
            .args(["rm", "-f", "-t", "0", "b"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--requires", "nosuch"])
            .args(["busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains(
                "\"nosuch\" is not a valid container, cannot be used as a dependency: no container with name or ID \"nosuch\" found: no such container"
            ),
            "{out}"
        );
    });
}

/// `--cgroup-conf KEY=VALUE`: rootless without delegation Podman's one warning and the run
/// goes on; inspect's HostConfig.CgroupConf holds what was given; Podman's text without `=`.
#[test]
fn cgroup_conf() {
    use crate::cgroups::{pure_v2, PODMAN_V1_WARNING};
    for_each_user("run_flags3_cgroupconf", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["create", "--name", "c", "--network=none"])
            .args([
                "--cgroup-conf=pids.max=50",
                "--cgroup-conf",
                "memory.high=100000000",
            ])
            .args(["busybox", "echo", "ran"])
            .output()
            .success();
        let root = env.user.who == crate::util::Who::Root;
        if !root && !pure_v2() {
            assert!(out.stderr.contains(PODMAN_V1_WARNING), "{out}");
        } else if root && !pure_v2() {
            assert!(out.stderr.contains("--cgroup-conf is not applied"), "{out}");
        }
        assert_eq!(
            env.inspect("c", "{{json .HostConfig.CgroupConf}}"),
            r#"{"memory.high":"100000000","pids.max":"50"}"#
        );
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(out.text(), "ran");
        env.rbox()
            .args(["create", "--name", "d", "--network=none", "busybox", "true"])
            .output()
            .success();
        assert_eq!(env.inspect("d", "{{json .HostConfig.CgroupConf}}"), "null");
        refused(
            env,
            "--cgroup-conf",
            &[
                ("bogus", "--cgroup-conf must be formatted KEY=VALUE"),
                ("../x=1", "invalid --cgroup-conf key `../x`"),
            ],
        );
    });
}

/// `--device-cgroup-rule`: checked as Podman checks it (its texts), and accepted: rootless
/// Podman runs the container with no other visible change, as rbox does.
#[test]
fn device_cgroup_rule() {
    for_each_user("run_flags3_devrule", |env| {
        env.import_busybox("busybox");
        for r in ["c 1:3 rwm", "b *:* m", "c 1 r", "c 1:* rw", "a *:* rwm"] {
            let out = env
                .rbox()
                .args(["run", "--rm", "--network=none", "--device-cgroup-rule", r])
                .args(["busybox", "echo", "ran"])
                .output()
                .success();
            assert_eq!(out.text(), "ran", "{r}");
        }
        refused(
            env,
            "--device-cgroup-rule",
            &[
            (
                "bogus",
                "invalid device cgroup rule requires type, major:Minor, and access rules: \"bogus\"",
            ),
            (
                " c 1:3 r",
                "invalid device cgroup rule requires type, major:Minor, and access rules: \" c 1:3 r\"",
            ),
            ("x 1:3 r", "invalid device type in device-access-add: x"),
            ("c 1:3 rwx", "invalid device access in device-access-add: x"),
            ("c a:3 r", "strconv.ParseUint: parsing \"a\": invalid syntax"),
        ],
        );
    });
}

/// `--chrootdirs`: /etc/hosts and /etc/resolv.conf are mounted in each directory's etc/ too
/// (made where missing), as Podman mounts them; Config.ChrootDirs lists them.
#[test]
fn chrootdirs() {
    for_each_user("run_flags3_chrootdirs", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--chrootdirs=/mnt,/new/"])
            .args(["busybox", "sh", "-c"])
            .arg("cmp /etc/hosts /mnt/etc/hosts && cmp /etc/hosts /new/etc/hosts && grep -c -e ' /mnt/etc/' -e ' /new/etc/' /proc/mounts; test -e /mnt/etc/hostname || echo no-hostname")
            .output()
            .success();
        let lines = out.lines();
        let expected = if env
            .rbox()
            .args(["run", "--rm", "--network=none", "busybox", "grep", "-q"])
            .args([" /etc/resolv.conf ", "/proc/mounts"])
            .output()
            .code
            == 0
        {
            "4"
        } else {
            "2"
        };
        assert_eq!(lines, [expected, "no-hostname"], "{out}");
        env.rbox()
            .args([
                "create",
                "--name",
                "c",
                "--chrootdirs=/x,/y",
                "--chrootdirs=/z",
            ])
            .args(["busybox", "true"])
            .output()
            .success();
        assert_eq!(env.field("c", ".Config.ChrootDirs"), "[/x /y /z]");
    });
}

/// `--init-ctr`: create refuses it without a pod (rbox has none) and run does not know it,
/// both in Podman's words.
#[test]
fn init_ctr_refused() {
    for_each_user("run_flags3_initctr", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["create", "--init-ctr=always", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("must specify pod value with init-ctr"),
            "{out}"
        );
        let out = env
            .rbox()
            .args(["run", "--rm", "--init-ctr=once", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains("unknown flag: --init-ctr"), "{out}");
    });
}

/// A service manager's notify socket for the test's user (sd_notify(3)): a datagram socket
/// anyone may write to, read with a generous timeout.
fn notify_socket(env: &Env) -> (std::os::unix::net::UnixDatagram, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let path = env.path("n.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    (sock, path)
}

fn next_message(sock: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `--sdnotify`, with the caller's $NOTIFY_SOCKET as a systemd unit has it: `container` (the
/// default) gives the container a socket of its own whose READY=1 and WATCHDOG=1 reach the
/// caller's after rbox's MAINPID (the monitor, as --conmon-pidfile names it), also from a
/// detached container; `conmon` sends MAINPID and READY=1 itself, `ignore` nothing, and
/// neither gives the container a socket. As Podman 4.3 with conmon.
#[test]
fn sdnotify_relays_readiness() {
    for_each_user("run_flags3_sdnotify", |env| {
        env.import_busybox("busybox");
        let helper = env.copy_in(&crate::fixtures::helper_bin(), "helper");
        let helper = format!("{}:/helper:ro", helper.display());
        let (sock, path) = notify_socket(env);
        let conmon = env.path("conmon.pid");
        let run = |flags: &[&str], script: &str| {
            env.rbox()
                .env("NOTIFY_SOCKET", &path)
                .args(["run", "--rm", "--network=none", "-v", &helper])
                .arg("--conmon-pidfile")
                .arg(&conmon)
                .args(flags)
                .args(["busybox", "sh", "-c", script])
                .output()
                .success()
        };
        let out = run(
            &[],
            "/helper notify STATUS=starting && /helper notify 'READY=1\nSTATUS=up' && /helper notify WATCHDOG=1 && echo $NOTIFY_SOCKET",
        );
        assert_eq!(out.text(), "/run/notify/notify.sock");
        let monitor = std::fs::read_to_string(&conmon).unwrap();
        assert_eq!(next_message(&sock), format!("MAINPID={monitor}"));
        assert_eq!(next_message(&sock), "READY=1");
        assert_eq!(next_message(&sock), "WATCHDOG=1");
        // ignore: nothing (the next message is conmon's), no socket
        let out = run(&["--sdnotify=ignore"], "echo ${NOTIFY_SOCKET:-none}");
        assert_eq!(out.text(), "none");
        let out = run(&["--sdnotify=conmon"], "echo ${NOTIFY_SOCKET:-none}");
        assert_eq!(out.text(), "none");
        let monitor = std::fs::read_to_string(&conmon).unwrap();
        assert_eq!(next_message(&sock), format!("MAINPID={monitor}\nREADY=1"));
        // detached: the monitor passes on what the container says after `run -d` returned
        let go = env.path("go");
        std::fs::create_dir_all(&go).unwrap();
        env.give_to_user(&go);
        env.rbox()
            .env("NOTIFY_SOCKET", &path)
            .args(["run", "-d", "--name", "d", "--network=none", "-v", &helper])
            .arg("-v")
            .arg(format!("{}:/go", go.display()))
            .args(["busybox", "sh", "-c"])
            .arg("while [ ! -e /go/now ]; do sleep 0.1; done; /helper notify READY=1; exec sleep 1000")
            .output()
            .success();
        assert!(next_message(&sock).starts_with("MAINPID="));
        env.write("go/now", "");
        assert_eq!(next_message(&sock), "READY=1");
        assert_eq!(env.field("d", ".Config.sdNotifyMode"), "container");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "d"])
            .output()
            .success();
        // without a service manager's socket, nothing to relay: no socket in the container
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "busybox", "sh", "-c"])
            .arg("echo ${NOTIFY_SOCKET:-none}; test -e /run/notify || echo no-dir")
            .output()
            .success();
        assert_eq!(out.lines(), ["none", "no-dir"]);
        let out = env
            .rbox()
            .args(["run", "--rm", "--sdnotify=healthy", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains(
                "invalid config provided: invalid argument: invalid sdnotify value \"healthy\": must be container, conmon or ignore"
            ),
            "{out}"
        );
    });
}
