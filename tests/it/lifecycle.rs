//! Detached containers and what later invocations do with them: `run -d`, `exec`, `logs`,
//! `stop`, `kill`, `inspect` of their state. Every test runs once per identity.

use crate::util::{eventually, for_each_user};

#[test]
fn detached_exec_logs_stop() {
    for_each_user("lifecycle", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "-d", "--name", "web", "busybox"])
            .args(["sh", "-c", "echo started; exec sleep 600"])
            .output()
            .success();
        let id = out.text();
        assert!(
            id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{out}"
        );
        assert_eq!(env.field("web", ".State.Running"), "true");

        // exec joins the container's namespaces: same pid namespace, same hostname. The shell
        // may not have reached its `exec sleep` yet: wait for it.
        eventually("the container's shell to exec sleep", || {
            let out = env
                .rbox()
                .args(["exec", "web", "cat", "/proc/1/cmdline"])
                .output()
                .success();
            out.stdout.starts_with("sleep")
        });
        let out = env
            .rbox()
            .args(["exec", "web", "hostname"])
            .output()
            .success();
        assert_eq!(out.text(), &id[..12]);
        let out = env
            .rbox()
            .args(["exec", "-e", "GREETING=hi", "-w", "/tmp", "web"])
            .args(["sh", "-c", "echo $GREETING $(pwd) $$"])
            .output()
            .success();
        let f: Vec<String> = out.text().split(' ').map(String::from).collect();
        assert_eq!(&f[..2], ["hi", "/tmp"], "{out}");
        assert_ne!(f[2], "1", "exec'd process is not the container's init");
        env.rbox()
            .args(["exec", "web", "sh", "-c", "exit 5"])
            .output()
            .code_is(5);
        env.rbox()
            .args(["exec", "web", "no-such-command"])
            .output()
            .code_is(127);
        let out = env.rbox().args(["exec", "nosuch", "true"]).output();
        out.rbox_error();

        // logs: what the detached container wrote (the monitor relays it to the log file as
        // it reads it: the shell's exec of sleep can be seen first on a loaded machine)
        eventually("logs to show what the container wrote", || {
            env.rbox().args(["logs", "web"]).output().success().text() == "started"
        });

        // stop: sleep as PID 1 ignores SIGTERM, so stop escalates to SIGKILL after -t.
        env.rbox()
            .args(["stop", "-t", "1", "web"])
            .output()
            .success();
        assert_eq!(env.field("web", ".State.Running"), "false");
        assert_eq!(env.field("web", ".State.ExitCode"), "137");
        env.rbox()
            .args(["exec", "web", "true"])
            .output()
            .rbox_error();
        env.rbox().args(["rm", "web"]).output().success();
    });
}

/// `exec -t` and `run --init -t` get their terminal as `run -t` does (`runtime::terminal`):
/// a pty of the container's own devpts, sized like the caller's, the exit status through it.
#[test]
fn exec_and_init_terminals() {
    for_each_user("exec_tty", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--name", "web", "busybox", "sleep", "600"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["exec", "-t", "web", "tty"])
            .pty()
            .output()
            .success();
        assert!(out.text().starts_with("/dev/pts/"), "{out}");
        env.rbox()
            .args(["exec", "-t", "web", "sh", "-c", "exit 4"])
            .pty()
            .output()
            .code_is(4);
        // The terminal rbox runs on is 33x101; the exec'd process's pty must say the same.
        let out = env
            .rbox_on_terminal(33, 101, &["exec", "-t", "web", "stty", "-a"])
            .output()
            .success();
        assert!(out.stdout.contains("rows 33; columns 101;"), "{out}");
        env.rbox().args(["rm", "-f", "web"]).output().success();

        let out = env
            .rbox()
            .args(["run", "--rm", "--init", "-t", "busybox", "tty"])
            .pty()
            .output()
            .success();
        assert!(out.text().starts_with("/dev/pts/"), "{out}");
    });
}

/// A process in its exit path or a zombie no longer runs anything.
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
    }
}

#[test]
fn kill_leaves_no_process_behind() {
    for_each_user("kill", |env| {
        env.import_busybox("busybox");
        // As another user inside (where the user has the ids): the kernel clears the
        // parent-death signal on a uid change, which once let such containers outlive rbox.
        let mut args = vec!["run", "-d", "--name", "k1"];
        if env.user.has_many_ids() {
            args.extend(["-u", "1000"]);
        }
        env.rbox()
            .args(&args)
            .args(["busybox", "sleep", "600"])
            .output()
            .success();
        let pid = env.field("k1", ".State.Pid");
        assert!(pid.parse::<u32>().is_ok_and(|p| p > 1), "pid {pid}");
        env.rbox().args(["kill", "k1"]).output().success();
        assert!(gone(&pid), "container init {pid} still runs after kill");
        assert_eq!(env.field("k1", ".State.Running"), "false");
        assert_eq!(env.field("k1", ".State.ExitCode"), "137");
        env.rbox().args(["rm", "k1"]).output().success();
    });
}

/// `--log-level` drives rbox's own messages: debug lines say what rbox decided (user namespace,
/// storage driver), the default level hides them, and the monitor of a detached container
/// writes its own lines to `monitor.log` in the container's directory, not to the caller.
#[test]
fn log_level_and_monitor_log() {
    for_each_user("log_level", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["--log-level", "debug", "run", "--rm", "busybox", "true"])
            .output()
            .success();
        assert!(out.stderr.contains("Debug: ["), "{out}");
        assert!(out.stderr.contains("storage driver: "), "{out}");
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "true"])
            .output()
            .success();
        assert!(!out.stderr.contains("Debug:"), "{out}");
        env.rbox()
            .args(["--log-level", "verbose", "images"])
            .output()
            .rbox_error();

        let out = env
            .rbox()
            .args([
                "--log-level",
                "debug",
                "run",
                "-d",
                "--name",
                "m",
                "busybox",
            ])
            .args(["sh", "-c", "echo hi; exec sleep 600"])
            .output()
            .success();
        let id = out.text();
        assert!(!out.stderr.contains("monitor started"), "{out}");
        let log = env.store().join("containers").join(&id).join("monitor.log");
        let text = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("read `{}`: {e}\n{out}", log.display()));
        // Written before the monitor answered the caller, so it is there now.
        assert!(text.contains("monitor started"), "{text}");
        assert!(!text.contains('\x1b'), "no colour in a file: {text}");
        // The container's output stays apart (the command runs after `run -d` returns: wait
        // for it, with a deadline).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let logs = env.rbox().args(["logs", "m"]).output().success();
            if !logs.text().is_empty() || std::time::Instant::now() > deadline {
                assert_eq!(logs.text(), "hi");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        env.rbox().args(["rm", "-f", "m"]).output().success();

        // At the default level the monitor's log exists and holds no debug line.
        let id = env
            .rbox()
            .args(["run", "-d", "busybox", "sleep", "600"])
            .output()
            .success()
            .text();
        let log = env.store().join("containers").join(&id).join("monitor.log");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("Debug:"), "{text}");
        env.rbox().args(["rm", "-f", &id]).output().success();
    });
}

/// `create` writes the container's OCI runtime spec (`config.json`, shown by inspect as
/// `OCIConfigPath`), and `start` runs what that file says, not what `create` was told: the
/// spec is the seam between rbox's command line and its runtime.
#[test]
fn a_created_container_starts_from_its_stored_config_json() {
    for_each_user("oci_config", |env| {
        env.import_busybox("busybox");
        let id = env
            .rbox()
            .args(["create", "--name", "c", "-e", "FROM=flags", "-w", "/tmp"])
            .args(["--hostname", "made", "busybox", "echo", "from-flags"])
            .output()
            .success()
            .text();
        let path = env.field("c", ".OCIConfigPath");
        assert_eq!(
            std::path::Path::new(&path),
            env.store().join("containers").join(&id).join("config.json")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            spec["ociVersion"].as_str().unwrap().starts_with("1."),
            "{text}"
        );
        assert_eq!(
            spec["process"]["args"],
            serde_json::json!(["echo", "from-flags"])
        );
        assert_eq!(spec["process"]["cwd"], "/tmp");
        assert!(spec["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&"FROM=flags".into()));
        assert_eq!(spec["hostname"], "made");
        let ns: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for t in ["pid", "mount", "ipc", "uts", "network", "cgroup"] {
            assert!(ns.contains(&t), "{t} namespace in {ns:?}");
        }

        // what the runtime runs comes from the file
        spec["process"]["args"] = serde_json::json!(["sh", "-c", "echo $FROM $(pwd) $(hostname)"]);
        let env_list = spec["process"]["env"].as_array_mut().unwrap();
        env_list.retain(|e| e != "FROM=flags");
        env_list.push("FROM=config".into());
        spec["process"]["cwd"] = "/".into();
        spec["hostname"] = "edited".into();
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(out.text(), "config / edited", "{out}");
        // and again: a restart runs from the same stored spec
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(out.text(), "config / edited", "{out}");
        env.rbox().args(["rm", "c"]).output().success();
    });
}

/// `rbox restart`, as Podman 4.3 answers here: prints each container as named, restarts a
/// running one (a new init), starts a created one, and fails with 125 for an unknown name.
#[test]
fn restart_stops_and_starts_again() {
    for_each_user("restart", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--name", "r1", "--network=none", "busybox"])
            .args(["sleep", "600"])
            .output()
            .success();
        env.rbox()
            .args(["create", "--name", "r2", "--network=none", "busybox"])
            .args(["sleep", "600"])
            .output()
            .success();
        let pid = |name: &str| {
            env.rbox()
                .args(["inspect", "-f", "{{.State.Pid}}", name])
                .output()
                .success()
                .text()
        };
        let before = pid("r1");
        let out = env
            .rbox()
            .args(["restart", "-t", "0", "r1", "r2"])
            .output()
            .success();
        assert_eq!(out.text(), "r1\nr2", "{out}");
        let after = pid("r1");
        assert_ne!(after, before, "r1 has a new init");
        assert_ne!(after, "0");
        let ps = env
            .rbox()
            .args(["ps", "--format", "{{.Names}} {{.State}}"])
            .output()
            .success()
            .text();
        assert!(
            ps.contains("r1 running") && ps.contains("r2 running"),
            "{ps}"
        );
        let out = env.rbox().args(["restart", "nosuch"]).output().code_is(125);
        assert!(out.stderr.contains("nosuch"), "{out}");
        env.rbox().args(["rm", "-f", "r1", "r2"]).output().success();
    });
}

/// `--restart`: the monitor starts the command again as the policy says (on-failure counts
/// its restarts and stops at the limit, as Podman 4.3 does here); a user's `stop` is never
/// undone, not even while the monitor waits to restart a crashing command; `start --all
/// --filter restart-policy=always` (what runs after a reboot) brings back only those; bad
/// policies and `--rm` with a policy are refused as Podman refuses them.
#[test]
fn restart_policies() {
    for_each_user("restart_policy", |env| {
        env.import_busybox("busybox");
        // on-failure:3: the command runs 4 times, then the container stays exited
        env.rbox()
            .args(["run", "-d", "--name", "of3", "--network=none"])
            .args([
                "--restart=on-failure:3",
                "busybox",
                "sh",
                "-c",
                "echo hi; exit 3",
            ])
            .output()
            .success();
        let logs = || env.rbox().args(["logs", "of3"]).output().success().text();
        eventually("of3 ran 4 times and exited", || {
            logs() == "hi\nhi\nhi\nhi" && env.field("of3", ".State.Status") == "exited"
        });
        // and no more (a 4th restart would come 800 ms after the last exit)
        std::thread::sleep(std::time::Duration::from_millis(1200));
        assert_eq!(logs(), "hi\nhi\nhi\nhi");
        assert_eq!(env.field("of3", ".RestartCount"), "3");
        assert_eq!(env.field("of3", ".State.ExitCode"), "3");
        assert_eq!(
            env.field("of3", ".HostConfig.RestartPolicy.Name"),
            "on-failure"
        );
        assert_eq!(
            env.field("of3", ".HostConfig.RestartPolicy.MaximumRetryCount"),
            "3"
        );
        // on-failure leaves a command that succeeds alone
        env.rbox()
            .args(["run", "-d", "--name", "ok", "--network=none"])
            .args(["--restart=on-failure", "busybox", "true"])
            .output()
            .success();
        eventually("ok exited", || env.field("ok", ".State.Status") == "exited");
        assert_eq!(env.field("ok", ".RestartCount"), "0");

        // always: the command ends (its sleep killed from outside), a new init runs it
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "al",
                "--network=none",
                "--restart=always",
            ])
            .args([
                "busybox",
                "sh",
                "-c",
                "trap 'exit 0' TERM; echo up >> /up; sleep 600 & wait; exit 0",
            ])
            .output()
            .success();
        let first = env.field("al", ".State.Pid");
        // the shell may not have started its sleep yet; (exec's killall may itself die with
        // the pid namespace, when the shell it made exit is the namespace's init: 137 then)
        eventually("al's sleep killed", || {
            let out = env.rbox().args(["exec", "al", "killall", "sleep"]).output();
            matches!(out.code, 0 | 137)
        });
        eventually("al restarted", || {
            env.field("al", ".RestartCount") == "1" && env.field("al", ".State.Status") == "running"
        });
        assert_ne!(env.field("al", ".State.Pid"), first);
        // the restarted shell has set its trap (a TERM before it would go unhandled)
        eventually("al's trap set again", || {
            env.rbox()
                .args(["exec", "al", "cat", "/up"])
                .output()
                .stdout
                .lines()
                .count()
                == 2
        });
        // the user's stop is final (the command exits 0 on its stop signal)
        env.rbox()
            .args(["stop", "-t", "10", "al"])
            .output()
            .success();
        assert_eq!(env.field("al", ".State.ExitCode"), "0");
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(env.field("al", ".State.Status"), "exited");
        assert_eq!(env.field("al", ".RestartCount"), "1");

        // a command that fails at once: restarted with a growing delay, exited meanwhile;
        // stop ends the wait for good
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "crash",
                "--network=none",
                "--restart=always",
            ])
            .args(["busybox", "sh", "-c", "exit 1"])
            .output()
            .success();
        eventually("crash restarted twice", || {
            env.field("crash", ".RestartCount")
                .parse::<u32>()
                .is_ok_and(|n| n >= 2)
        });
        env.rbox().args(["stop", "crash"]).output().success();
        let count = env.field("crash", ".RestartCount");
        std::thread::sleep(std::time::Duration::from_millis(1000));
        assert_eq!(env.field("crash", ".RestartCount"), count, "stop is final");
        assert_eq!(env.field("crash", ".State.Status"), "exited");
        env.rbox()
            .args(["rm", "crash", "ok", "of3"])
            .output()
            .success();

        // after a reboot: only the containers whose policy is `always` come back
        env.rbox()
            .args([
                "create",
                "--name",
                "other",
                "--network=none",
                "busybox",
                "sleep",
                "600",
            ])
            .output()
            .success();
        let id = env.field("al", ".Id");
        let out = env
            .rbox()
            .args(["start", "--all", "--filter", "restart-policy=always"])
            .output()
            .success();
        assert_eq!(out.text(), id, "{out}");
        assert_eq!(env.field("al", ".State.Status"), "running");
        assert_eq!(
            env.field("al", ".RestartCount"),
            "0",
            "a user's start counts from 0"
        );
        assert_eq!(env.field("other", ".State.Status"), "created");
        let ps = env
            .rbox()
            .args([
                "ps",
                "-a",
                "--filter",
                "restart-policy=always",
                "--format",
                "{{.Names}}",
            ])
            .output()
            .success();
        assert_eq!(ps.text(), "al", "{ps}");
        env.rbox()
            .args(["rm", "-f", "al", "other"])
            .output()
            .success();

        // refused before anything is created
        for (flags, wants) in [
            (
                &["--rm", "--restart=always"][..],
                "the --rm option conflicts with --restart",
            ),
            (
                &["--restart=bogus"],
                "`bogus` is not a valid restart policy",
            ),
            (
                &["--restart=always:3"],
                "retries can only be specified with on-failure",
            ),
            (&["--restart=on-failure:x"], "retry count `x`"),
        ] {
            let out = env
                .rbox()
                .arg("run")
                .args(flags)
                .args(["busybox", "true"])
                .output()
                .rbox_error();
            assert!(out.stderr.contains(wants), "{flags:?}: {out}");
        }
        let ps = env.rbox().args(["ps", "-aq"]).output().success();
        assert_eq!(ps.text(), "", "{ps}");
    });
}

/// `generate systemd`: a forking unit that starts and stops the container with this rbox and
/// this store, whose PIDFile names the container's monitor while it runs (the parent of its
/// init); the runtime directory holds nothing of the container once it is stopped.
#[test]
fn generate_systemd_names_the_monitor() {
    for_each_user("generate_systemd", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--name", "svc", "--network=none", "busybox"])
            .args(["sleep", "600"])
            .output()
            .success();
        let unit = env
            .rbox()
            .args(["generate", "systemd", "--name", "--no-header", "svc"])
            .output()
            .success()
            .stdout;
        let line = |key: &str| {
            unit.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {unit}"))
                .to_string()
        };
        assert!(unit.starts_with("[Unit]\n"), "{unit}");
        assert_eq!(line("Type="), "forking");
        let store = env.store().display().to_string();
        assert!(line("ExecStart=").ends_with(" start svc"), "{unit}");
        assert!(line("ExecStart=").contains(&store), "{unit}");
        assert!(line("ExecStop=").ends_with(" stop -t 10 svc"), "{unit}");
        let pid = env.field("svc", ".State.Pid");
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ppid = ppid[ppid.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string();
        let pidfile = std::fs::read_to_string(line("PIDFile=")).unwrap();
        assert_eq!(pidfile.trim(), ppid, "the monitor's pid");
        // an unknown container: one line, 125
        env.rbox()
            .args(["generate", "systemd", "nosuch"])
            .output()
            .rbox_error();
        env.rbox()
            .args(["stop", "-t", "0", "svc"])
            .output()
            .success();
        let left: Vec<_> = std::fs::read_dir(env.runroot().join("containers"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        env.rbox().args(["rm", "svc"]).output().success();
    });
}

/// Healthchecks run by the container's monitor at their interval (Podman needs systemd for
/// that): a failing check turns the container unhealthy after its retries, `ps` and
/// `inspect` show it, `healthcheck run` answers as Podman 4.3 does here (`unhealthy` and exit
/// 1, nothing and 0 when healthy, 125 without a healthcheck), and `--health-on-failure=restart`
/// runs the command again.
#[test]
fn healthchecks_run_in_the_monitor() {
    for_each_user("healthcheck", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--name", "hc", "--network=none"])
            .args([
                "--health-cmd",
                "test -e /tmp/ok",
                "--health-interval",
                "200ms",
            ])
            .args(["--health-retries", "2", "busybox", "sleep", "600"])
            .output()
            .success();
        assert_eq!(
            env.field("hc", ".Config.Healthcheck.Test"),
            "[CMD-SHELL test -e /tmp/ok]"
        );
        eventually("hc unhealthy", || {
            env.field("hc", ".State.Health.Status") == "unhealthy"
        });
        let ps = env
            .rbox()
            .args(["ps", "--format", "{{.Status}}"])
            .output()
            .success()
            .text();
        assert!(ps.ends_with("(unhealthy)"), "{ps}");
        let out = env.rbox().args(["healthcheck", "run", "hc"]).output();
        assert_eq!(
            (out.code, out.text()),
            (1, "unhealthy".to_string()),
            "{out}"
        );
        env.rbox()
            .args(["exec", "hc", "touch", "/tmp/ok"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["healthcheck", "run", "hc"])
            .output()
            .success();
        assert_eq!(out.text(), "");
        assert_eq!(env.field("hc", ".State.Health.Status"), "healthy");
        assert_eq!(env.field("hc", ".State.Health.FailingStreak"), "0");
        env.rbox().args(["rm", "-f", "hc"]).output().success();

        // unhealthy -> restart: a new init, and the health starts over
        env.rbox()
            .args(["run", "-d", "--name", "hr", "--network=none"])
            .args(["--health-cmd", "false", "--health-interval", "200ms"])
            .args(["--health-retries", "1", "--health-on-failure", "restart"])
            .args([
                "busybox",
                "sh",
                "-c",
                "trap 'exit 0' TERM; sleep 600 & wait",
            ])
            .output()
            .success();
        let first = env.field("hr", ".State.Pid");
        eventually("hr restarted", || {
            let pid = env.field("hr", ".State.Pid");
            pid != first && pid != "0"
        });
        env.rbox().args(["rm", "-f", "hr"]).output().success();

        // errors
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "none",
                "--network=none",
                "busybox",
                "sleep",
                "60",
            ])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["healthcheck", "run", "none"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains("has no defined healthcheck"), "{out}");
        let out = env
            .rbox()
            .args([
                "run",
                "--health-cmd",
                "true",
                "--health-retries",
                "0",
                "busybox",
                "true",
            ])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("healthcheck-retries must be greater than 0"),
            "{out}"
        );
        env.rbox().args(["rm", "-f", "none"]).output().success();
    });
}

/// Logs in Podman's k8s-file format, kept for attached and detached runs alike: stdout and
/// stderr come back on their own streams, `-t` puts each line's time first, `--tail`,
/// `--since` and `-n` as Podman 4.3 answers them here; `--log-driver=none` keeps nothing and
/// `logs` says so in Podman's words; `--log-opt path=` puts the log where asked.
#[test]
fn logs_keep_streams_times_and_drivers() {
    for_each_user("logs_k8s", |env| {
        env.import_busybox("busybox");
        // (pauses between the writes: the two pipes are read in turn, and a write is in the
        // log before the next)
        let script =
            "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; printf part; sleep 0.1; echo ial";
        env.rbox()
            .args([
                "run",
                "--name",
                "att",
                "--network=none",
                "busybox",
                "sh",
                "-c",
                script,
            ])
            .output()
            .success();
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "det",
                "--network=none",
                "busybox",
                "sh",
                "-c",
                script,
            ])
            .output()
            .success();
        eventually("det exited", || {
            env.field("det", ".State.Status") == "exited"
        });
        for name in ["att", "det"] {
            let out = env.rbox().args(["logs", name]).output().success();
            assert_eq!(out.stdout, "out1\npartial\n", "{name}: {out}");
            assert_eq!(out.stderr, "err1\n", "{name}: {out}");
            let out = env.rbox().args(["logs", "-t", name]).output().success();
            let first = out.stdout.lines().next().unwrap_or_default().to_string();
            let (ts, text) = first.split_once(' ').unwrap();
            assert_eq!(text, "out1", "{out}");
            assert!(
                ts.ends_with('Z') && ts.contains('T') && ts.len() > 20,
                "{out}"
            );
            let out = env
                .rbox()
                .args(["logs", "--tail", "1", name])
                .output()
                .success();
            assert_eq!(out.stdout, "partial\n", "{name}: {out}");
            let out = env
                .rbox()
                .args(["logs", "--since", "2999-01-01T00:00:00Z", name])
                .output()
                .success();
            assert_eq!(
                (out.stdout.as_str(), out.stderr.as_str()),
                ("", ""),
                "{out}"
            );
        }
        let raw = std::fs::read_to_string(
            env.store()
                .join("containers")
                .join(env.field("det", ".Id"))
                .join("ctr.log"),
        )
        .unwrap();
        let kinds: Vec<String> = raw
            .lines()
            .map(|l| l.splitn(4, ' ').skip(1).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            kinds,
            [
                "stdout F out1",
                "stderr F err1",
                "stdout P part",
                "stdout F ial"
            ],
            "{raw}"
        );
        let out = env
            .rbox()
            .args(["logs", "-n", "att", "det"])
            .output()
            .success();
        assert_eq!(
            out.stdout,
            "att out1\natt partatt ial\ndet out1\ndet partdet ial\n"
        );

        // none: nothing kept
        env.rbox()
            .args([
                "run",
                "--name",
                "quiet",
                "--log-driver=none",
                "--network=none",
            ])
            .args(["busybox", "echo", "hi"])
            .output()
            .success();
        let out = env.rbox().args(["logs", "quiet"]).output().rbox_error();
        assert!(out.stderr.contains("using the 'none' log driver"), "{out}");
        // a log where the user wants it
        let path = env.path("my.log");
        env.rbox()
            .args(["run", "-d", "--name", "there", "--network=none"])
            .arg(format!("--log-opt=path={}", path.display()))
            .args(["busybox", "echo", "here"])
            .output()
            .success();
        eventually("there exited", || {
            env.field("there", ".State.Status") == "exited"
        });
        let out = env.rbox().args(["logs", "there"]).output().success();
        assert_eq!(out.stdout, "here\n");
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with(" stdout F here\n"));
        env.rbox()
            .args(["run", "--log-driver=journald", "busybox", "true"])
            .output()
            .rbox_error();
        env.rbox()
            .args(["rm", "att", "det", "quiet", "there"])
            .output()
            .success();
    });
}

/// `rbox attach`: a detached container's output from the moment of attaching, then a newline
/// and exit 0 (as Podman 4.3's; `wait` has the code); with `-i`, stdin reaches the container; with `-dit`, the terminal both
/// ways, and Ctrl-P Ctrl-Q detaches and leaves the container running.
#[test]
fn attach_to_a_detached_container() {
    for_each_user("attach", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "ticks",
                "--network=none",
                "busybox",
                "sh",
                "-c",
            ])
            .arg("while [ ! -e /go ]; do echo tick; usleep 100000; done; echo after >&2; exit 5")
            .output()
            .success();
        let mut att = env.rbox().args(["attach", "ticks"]).spawn();
        assert_eq!(att.read_line(), "tick\n");
        env.rbox()
            .args(["exec", "ticks", "touch", "/go"])
            .output()
            .success();
        // attach exits 0 whatever the container's code, as Podman 4.3's
        let out = att.wait();
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(out.stderr, "after\n", "{out}");
        assert_eq!(env.text(&["wait", "ticks"]), "5");

        env.rbox()
            .args([
                "run",
                "-di",
                "--name",
                "reader",
                "--network=none",
                "busybox",
            ])
            .args(["sh", "-c", "read line; echo got $line; exit 3"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["attach", "reader"])
            .stdin("hello\n")
            .output();
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "got hello\n\n"),
            "{out}"
        );

        env.rbox()
            .args([
                "run",
                "-dit",
                "--name",
                "term",
                "--network=none",
                "busybox",
                "sh",
            ])
            .output()
            .success();
        let mut att = env.rbox_on_terminal(24, 80, &["attach", "term"]).spawn();
        att.write_stdin(b"echo marker-$((6*7))\n");
        let mut seen = String::new();
        while !seen.contains("marker-42") {
            let l = att.read_line();
            assert!(!l.is_empty(), "attach ended before the echo: {seen}");
            seen.push_str(&l);
        }
        att.type_apart(b"\x10\x11");
        let out = att.wait();
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(env.field("term", ".State.Status"), "running");
        let out = env.rbox().args(["attach", "nosuch"]).output().rbox_error();
        assert!(out.stderr.contains("nosuch"), "{out}");
        env.rbox()
            .args(["rm", "-f", "ticks", "reader", "term"])
            .output()
            .success();
    });
}
