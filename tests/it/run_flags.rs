//! `run`/`create` flags Podman users pass (issue 9), end to end as every test user: the stop
//! signal and timeout, `--timeout`, `--ulimit`, `--umask`. Each is compared with what Podman
//! 4.3 shows for the same flags (values, error texts, exit codes).

use std::time::{Duration, Instant};

use crate::util::{for_each_user, Env};

/// Poll `rbox inspect` until the container's status is `want` (a deadline, no fixed sleep).
fn wait_status(env: &Env, name: &str, want: &str, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let st = env.field(name, ".State.Status");
        if st == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "container {name} is {st}, not {want}, after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stop_signal_and_stop_timeout() {
    for_each_user("run_flags_stop", |env| {
        env.import_busybox("busybox");
        // the stop signal reaches the command: its trap runs and decides the exit code
        let mut run = env
            .rbox()
            .args([
                "run",
                "--name",
                "sig",
                "--network=none",
                "--stop-signal",
                "USR1",
            ])
            .args(["busybox", "sh", "-c"])
            .arg("trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done")
            .spawn();
        assert_eq!(run.read_line(), "ready\n");
        assert_eq!(env.field("sig", ".Config.StopSignal"), "SIGUSR1");
        env.rbox().args(["stop", "sig"]).output().success();
        let out = run.wait().code_is(7);
        assert!(out.stdout.contains("got-usr1"), "{out}");

        // --stop-timeout: `stop` without -t waits that long, not 10 seconds, before SIGKILL
        // (sleep as PID 1 ignores SIGTERM)
        env.rbox()
            .args(["run", "-d", "--name", "slow", "--network=none"])
            .args(["--stop-timeout", "1", "busybox", "sleep", "600"])
            .output()
            .success();
        assert_eq!(env.field("slow", ".Config.StopTimeout"), "1");
        let t = Instant::now();
        env.rbox().args(["stop", "slow"]).output().success();
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
        assert_eq!(env.field("slow", ".State.ExitCode"), "137");
        // and the default is Podman's 10
        env.rbox()
            .args(["create", "--name", "plain", "busybox", "true"])
            .output()
            .success();
        assert_eq!(env.field("plain", ".Config.StopTimeout"), "10");
        assert_eq!(env.field("plain", ".Config.Timeout"), "0");

        // Podman's texts for bad values
        let out = env
            .rbox()
            .args(["run", "--rm", "--stop-signal", "FOO", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains("invalid signal: FOO"), "{out}");
        let out = env
            .rbox()
            .args(["run", "--rm", "--stop-signal", "99", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("valid signals are 1 through 64"),
            "{out}"
        );
        env.rbox()
            .args(["run", "--rm", "--stop-timeout", "x", "busybox", "true"])
            .output()
            .rbox_error();
    });
}

#[test]
fn timeout_kills_the_container() {
    for_each_user("run_flags_timeout", |env| {
        env.import_busybox("busybox");
        let t = Instant::now();
        env.rbox()
            .args(["run", "--rm", "--network=none", "--timeout", "1"])
            .args(["busybox", "sleep", "600"])
            .output()
            .code_is(137);
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        // detached: the monitor kills it, and records the kill
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "tmo",
                "--network=none",
                "--timeout",
                "1",
            ])
            .args(["busybox", "sleep", "600"])
            .output()
            .success();
        assert_eq!(env.field("tmo", ".Config.Timeout"), "1");
        wait_status(env, "tmo", "exited", Duration::from_secs(30));
        assert_eq!(env.field("tmo", ".State.ExitCode"), "137");
        // a command that ends first is not touched
        env.rbox()
            .args(["run", "--rm", "--network=none", "--timeout", "600"])
            .args(["busybox", "sh", "-c", "exit 3"])
            .output()
            .code_is(3);
    });
}

#[test]
fn ulimit_sets_the_process_limits() {
    for_each_user("run_flags_ulimit", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .args(["--ulimit", "nofile=100:200", "--ulimit", "nproc=50"])
            .args(["--ulimit", "core=0", "--ulimit", "stack=-1:-1"])
            .args([
                "busybox",
                "sh",
                "-c",
                "ulimit -n; ulimit -Hn; ulimit -u; ulimit -c",
            ])
            .output()
            .success();
        assert_eq!(out.lines(), ["100", "200", "50", "0"], "{out}");
        let out = env
            .rbox()
            .args(["create", "--name", "lim", "--ulimit", "nofile=100:200"])
            .args(["busybox", "true"])
            .output()
            .success();
        let shown = env.field("lim", "json .HostConfig.Ulimits");
        assert_eq!(
            shown, r#"[{"Hard":200,"Name":"RLIMIT_NOFILE","Soft":100}]"#,
            "{out}"
        );
        // Podman's `--ulimit host` keeps the caller's limits
        env.rbox()
            .args(["run", "--rm", "--network=none", "--ulimit", "host"])
            .args(["busybox", "true"])
            .output()
            .success();
        // above fs.nr_open no one may raise NOFILE: the command cannot be invoked (126)
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--ulimit",
                "nofile=2000000000",
            ])
            .args(["busybox", "true"])
            .output()
            .code_is(126);
        assert!(out.stderr.contains("setrlimit `RLIMIT_NOFILE`"), "{out}");
        for (bad, text) in [
            ("foo=1", "invalid ulimit type: foo"),
            (
                "nofile=200:100",
                "must be less than or equal to hard limit: 200 > 100",
            ),
            ("nofile", "invalid ulimit argument: nofile"),
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm", "--ulimit", bad, "busybox", "true"])
                .output()
                .rbox_error();
            assert!(
                out.stderr
                    .contains(&format!("ulimit option \"{bad}\" requires name=SOFT:HARD")),
                "{out}"
            );
            assert!(out.stderr.contains(text), "{out}");
        }
    });
}

#[test]
fn umask_of_the_process() {
    for_each_user("run_flags_umask", |env| {
        env.import_busybox("busybox");
        let script = "umask; touch /tmp/f; stat -c %a /tmp/f";
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--umask", "0077"])
            .args(["busybox", "sh", "-c", script])
            .output()
            .success();
        assert_eq!(out.lines(), ["0077", "600"], "{out}");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--umask", "27"])
            .args(["busybox", "sh", "-c", "umask"])
            .output()
            .success();
        assert_eq!(out.text(), "0027");
        // Podman's default, whatever the caller's own umask
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "busybox",
                "sh",
                "-c",
                "umask",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "0022");
        let out = env
            .rbox()
            .args(["run", "--rm", "--umask", "99", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("invalid umask string 99: invalid argument"),
            "{out}"
        );
    });
}

#[test]
fn environment_flags_as_podman() {
    for_each_user("run_flags_env", |env| {
        env.import_busybox("busybox");
        let run = |flags: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .args(["busybox", "/bin/busybox", "env"])
                .env("RBOX_TEST_HOST", "from-host")
                .output()
                .success()
                .lines()
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        };
        let has = |lines: &[String], l: &str| lines.iter().any(|x| x == l);
        let plain = run(&[]);
        assert!(has(&plain, "container=rbox") && !has(&plain, "RBOX_TEST_HOST=from-host"));
        // Podman's TERM, without -t too
        assert!(has(&plain, "TERM=xterm"), "{plain:?}");
        // --unsetenv removes a default, not what -e gives
        let e = run(&["--unsetenv", "PATH", "-e", "A=1", "--unsetenv", "A"]);
        assert!(!e.iter().any(|l| l.starts_with("PATH=")), "{e:?}");
        assert!(has(&e, "A=1") && has(&e, "container=rbox"), "{e:?}");
        // --unsetenv-all: only -e and what the start adds (HOME, HOSTNAME)
        let e = run(&["--unsetenv-all", "-e", "A=1"]);
        let keys: Vec<&str> = e.iter().map(|l| l.split('=').next().unwrap()).collect();
        assert_eq!(keys, ["A", "HOME", "HOSTNAME"], "{e:?}");
        // --env-merge rewrites a default with the defaults expanded; other names are ignored
        let e = run(&["--env-merge", "PATH=/x:${PATH}", "--env-merge", "NEW=a"]);
        let path = plain.iter().find(|l| l.starts_with("PATH=")).unwrap();
        assert!(has(&e, &path.replacen("PATH=", "PATH=/x:", 1)), "{e:?}");
        assert!(!e.iter().any(|l| l.starts_with("NEW=")), "{e:?}");
        // --env-host: the caller's variables; -e still wins
        let e = run(&["--env-host", "-e", "RBOX_TEST_HOST=mine"]);
        assert!(has(&e, "RBOX_TEST_HOST=mine"), "{e:?}");
        let e = run(&["--env-host"]);
        assert!(has(&e, "RBOX_TEST_HOST=from-host"), "{e:?}");
    });
}

#[test]
fn annotations_and_group_add() {
    for_each_user("run_flags_groups", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["create", "--name", "ann", "--annotation", "a=b"])
            .args(["--annotation", "k=v=w", "busybox", "true"])
            .output()
            .success();
        assert_eq!(
            env.field("ann", "json .Config.Annotations"),
            r#"{"a":"b","k":"v=w"}"#
        );
        let cfg = env.field("ann", ".OCIConfigPath");
        let text = env.cmd("cat").arg(&cfg).output().success().stdout;
        assert!(text.contains(r#""k": "v=w""#), "{text}");
        let out = env
            .rbox()
            .args(["run", "--rm", "--annotation", "c", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("annotations must be formatted KEY=VALUE"),
            "{out}"
        );

        // names come from the container's /etc/group; unknown ones cannot be invoked (126)
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--group-add", "nosuch"])
            .args(["busybox", "true"])
            .output()
            .code_is(126);
        assert!(
            out.stderr
                .contains("Unable to find group nosuch: no matching entries in group file"),
            "{out}"
        );
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--group-add",
                "keep-groups",
                "--group-add",
                "5",
            ])
            .args(["busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("'--group-add keep-groups' option is not allowed"),
            "{out}"
        );
        env.rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--group-add",
                "keep-groups",
            ])
            .args(["busybox", "true"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--group-add", "extra"])
            .args(["--group-add", "1234", "busybox", "id", "-G"])
            .output();
        if env.user.has_many_ids() {
            let groups: Vec<&str> = out.text().leak().split(' ').collect();
            // the test image's group `extra` is 2000
            assert!(
                groups.contains(&"2000") && groups.contains(&"1234"),
                "{out}"
            );
        } else {
            // only id 0 exists without a subordinate range
            let out = out.code_is(126);
            assert!(
                out.stderr.contains("does not exist in this user namespace"),
                "{out}"
            );
        }
    });
}

#[test]
fn shm_size_of_dev_shm() {
    for_each_user("run_flags_shm", |env| {
        env.import_busybox("busybox");
        let shm = |flags: &[&str]| {
            let out = env
                .rbox()
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .args(["busybox", "grep", " /dev/shm ", "/proc/mounts"])
                .output()
                .success();
            out.text()
        };
        let line = shm(&["--shm-size", "10m"]);
        assert!(line.contains("size=10240k"), "{line}");
        let line = shm(&[]);
        assert!(line.contains("size=65536k"), "{line}");
        env.rbox()
            .args([
                "create",
                "--name",
                "s",
                "--shm-size",
                "1g",
                "busybox",
                "true",
            ])
            .output()
            .success();
        assert_eq!(env.field("s", ".HostConfig.ShmSize"), "1073741824");
        let out = env
            .rbox()
            .args(["run", "--rm", "--shm-size", "x", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("unable to translate --shm-size: invalid size: 'x'"),
            "{out}"
        );
    });
}
