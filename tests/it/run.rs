//! `rbox run`: exit codes, the image config's Entrypoint/Cmd/Env/WorkingDir with Docker's
//! override rules, `-e`/`--env-file`, `-u`, `-w`, bind mounts, `--read-only`, the pid and uts
//! namespaces, `-t` through a real pty, `-i`, signal forwarding, `--rm`, parallel runs.
//! Every test runs once per identity from `util::users()`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::Signal;

use crate::fixtures;
use crate::util::{for_each_user, tree, Env};

/// Import busybox as `busybox` and load the helper image (`localhost/helper:latest`).
fn setup(env: &Env) {
    env.import_busybox("busybox");
    env.load(&fixtures::helper_docker_archive()).success();
}

fn env_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn import_then_run_busybox() {
    for_each_user("import_run", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "echo", "hello"])
            .output()
            .success();
        assert_eq!(out.text(), "hello");
        // Arguments after the image belong to the container, flags included.
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "ls", "-d", "/bin"])
            .output()
            .success();
        assert_eq!(out.text(), "/bin");
    });
}

#[test]
fn exit_codes() {
    for_each_user("exit_codes", |env| {
        setup(env);
        let run = |args: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm"]).args(args);
            c.output()
        };
        run(&["helper", "exit", "0"]).code_is(0);
        run(&["helper", "exit", "3"]).code_is(3);
        run(&["busybox", "sh", "-c", "exit 42"]).code_is(42);
        // 125: rbox itself failed (here: an unknown image, no registry consulted).
        run(&["--pull=never", "no-such-image-here", "true"]).rbox_error();
        // 126: the command exists but cannot be invoked.
        let out = run(&["busybox", "/etc/passwd"]).code_is(126);
        assert!(!out.stderr.contains("panicked"), "{out}");
        run(&["--entrypoint", "/etc/not-executable", "helper"]).code_is(126);
        // 127: no such command, by path and through PATH.
        run(&["busybox", "/no/such/command"]).code_is(127);
        run(&["busybox", "no-such-command-anywhere"]).code_is(127);
        // 128+n: killed by signal n. The kernel ignores a PID 1's signals to itself (it has no
        // handler), so the command runs under --init, as PID 2, and kills itself there.
        run(&["--init", "helper", "kill", "9"]).code_is(128 + 9);
        run(&["--init", "helper", "kill", "15"]).code_is(128 + 15);
        run(&["--init", "busybox", "sh", "-c", "kill -9 $$"]).code_is(137);
        run(&["--init", "helper", "exit", "3"]).code_is(3);
    });
}

#[test]
fn entrypoint_and_cmd_override_rules() {
    for_each_user("entrypoint", |env| {
        setup(env);
        let run = |args: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm"]).args(args);
            c.output().success().text()
        };
        // Image Entrypoint ["/helper"] + Cmd ["args", "from-cmd"].
        assert_eq!(run(&["helper"]), "from-cmd");
        // A trailing command replaces Cmd and keeps the Entrypoint.
        assert_eq!(run(&["helper", "args", "x", "-y", "--z"]), "x\n-y\n--z");
        // --entrypoint replaces the Entrypoint and drops the image's Cmd (Docker's rule).
        assert_eq!(run(&["--entrypoint", "/bin/echo", "helper"]), "");
        assert_eq!(
            run(&["--entrypoint", "/bin/echo", "helper", "a", "b"]),
            "a b"
        );
        // An image with no Entrypoint: the trailing command is the whole argv.
        assert_eq!(run(&["busybox", "echo", "plain"]), "plain");
    });
}

#[test]
fn env_from_image_cli_and_file() {
    for_each_user("env", |env| {
        setup(env);
        let out = env
            .rbox()
            .args(["run", "--rm", "helper", "env"])
            .output()
            .success();
        let vars = env_map(&out.stdout);
        assert_eq!(
            vars.get("FROM_IMAGE").map(String::as_str),
            Some("yes"),
            "{out}"
        );
        assert_eq!(
            vars.get("OVERRIDE").map(String::as_str),
            Some("image"),
            "{out}"
        );
        assert_eq!(
            vars.get("PATH").map(String::as_str),
            Some(fixtures::IMAGE_PATH),
            "{out}"
        );
        // The caller's environment does not leak in.
        for leaked in ["XDG_DATA_HOME", "XDG_CONFIG_HOME", "LOGNAME"] {
            assert!(
                !vars.contains_key(leaked),
                "{leaked} leaked into the container:\n{out}"
            );
        }

        let file = env.write(
            "vars.env",
            "# a comment\n\nFILE_VAR=file value with spaces\nOVERRIDE=file\nBOTH=file\n",
        );
        let out = env
            .rbox()
            .env("PASSME", "from-caller")
            .args(["run", "--rm", "--env-file"])
            .arg(&file)
            .args([
                "-e", "BOTH=cli", "-e", "NEW=1", "-e", "PASSME", "-e", "EMPTY=", "helper", "env",
            ])
            .output()
            .success();
        let vars = env_map(&out.stdout);
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("FILE_VAR"), Some("file value with spaces"), "{out}");
        assert_eq!(
            get("OVERRIDE"),
            Some("file"),
            "--env-file overrides the image:\n{out}"
        );
        assert_eq!(get("BOTH"), Some("cli"), "-e overrides --env-file:\n{out}");
        assert_eq!(get("NEW"), Some("1"), "{out}");
        assert_eq!(
            get("PASSME"),
            Some("from-caller"),
            "-e NAME takes the caller's value:\n{out}"
        );
        assert_eq!(get("EMPTY"), Some(""), "{out}");
        assert_eq!(get("FROM_IMAGE"), Some("yes"), "{out}");

        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--env-file",
                "/no/such/env-file",
                "helper",
                "env",
            ])
            .output();
        out.rbox_error();
    });
}

#[test]
fn user_option() {
    for_each_user("user", |env| {
        setup(env);
        let ids = |args: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm"]).args(args).args(["helper", "ids"]);
            c.output()
        };
        let out = ids(&[]).success();
        assert!(
            out.text().starts_with("uid=0 gid=0"),
            "default user is the image's (root):\n{out}"
        );
        if !env.user.has_many_ids() {
            // Only container id 0 exists: any other id is a clean error before the command.
            let out = ids(&["-u", "1000"]);
            assert!(
                [125, 126].contains(&out.code),
                "-u 1000 without a subuid range:\n{out}"
            );
            out.assert_clean_error();
            return;
        }
        let out = ids(&["-u", "tester"]).success();
        let t = out.text();
        assert!(t.starts_with("uid=1000 gid=1000 groups="), "{out}");
        let groups: Vec<&str> = t.rsplit('=').next().unwrap().split(',').collect();
        assert!(
            groups.contains(&"2000"),
            "supplementary groups from /etc/group:\n{out}"
        );
        let out = ids(&["-u", "1000:2000"]).success();
        assert!(out.text().starts_with("uid=1000 gid=2000"), "{out}");
        let out = ids(&["-u", "tester:extra"]).success();
        assert!(out.text().starts_with("uid=1000 gid=2000"), "{out}");
        // A uid that /etc/passwd does not name runs with gid 0, as in Podman.
        let out = ids(&["-u", "1234"]).success();
        assert!(out.text().starts_with("uid=1234 gid=0"), "{out}");
        let out = ids(&["-u", "no-such-user"]);
        assert!([125, 126].contains(&out.code), "unknown user name:\n{out}");
        out.assert_clean_error();
        // The files of the image are owned as the image says.
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "busybox",
                "stat",
                "-c",
                "%u:%g",
                "/home/tester",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "1000:1000");
    });
}

#[test]
fn workdir() {
    for_each_user("workdir", |env| {
        setup(env);
        let cwd = |args: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm"]).args(args).args(["helper", "cwd"]);
            c.output().success().text()
        };
        assert_eq!(cwd(&[]), "/srv", "WorkingDir from the image");
        assert_eq!(cwd(&["-w", "/tmp"]), "/tmp");
        assert_eq!(cwd(&["--workdir", "/home/tester"]), "/home/tester");
        // A missing -w directory is refused with 126, as Podman 4.3 does (the image's own
        // WorkingDir is created: runtime_habits.rs)
        env.rbox()
            .args(["run", "--rm", "-w", "/new/work/dir", "helper", "cwd"])
            .output()
            .code_is(126);
    });
}

#[test]
fn bind_mounts_rw_and_ro() {
    for_each_user("volumes", |env| {
        setup(env);
        let vol = env.path("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("in"), "host data\n").unwrap();
        env.give_to_user(&vol);
        let spec = format!("{}:/mnt", vol.display());

        let out = env
            .rbox()
            .args(["run", "--rm", "-v", &spec, "helper", "cat", "/mnt/in"])
            .output()
            .success();
        assert_eq!(out.text(), "host data");
        env.rbox()
            .args([
                "run",
                "--rm",
                "-v",
                &format!("{spec}:rw"),
                "helper",
                "write",
                "/mnt/out",
                "written",
            ])
            .output()
            .success();
        assert_eq!(std::fs::read_to_string(vol.join("out")).unwrap(), "written");

        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "-v",
                &format!("{spec}:ro"),
                "helper",
                "write",
                "/mnt/ro",
                "x",
            ])
            .output()
            .code_is(1);
        assert!(out.stderr.contains("Read-only file system"), "{out}");
        assert!(!vol.join("ro").exists());
        // A read-only bind still reads.
        env.rbox()
            .args([
                "run",
                "--rm",
                "-v",
                &format!("{spec}:ro"),
                "helper",
                "cat",
                "/mnt/in",
            ])
            .output()
            .success();
        // A single file can be bound too.
        let out = env
            .rbox()
            .args(["run", "--rm", "-v"])
            .arg(format!("{}:/etc/bound:ro", vol.join("in").display()))
            .args(["helper", "cat", "/etc/bound"])
            .output()
            .success();
        assert_eq!(out.text(), "host data");

        // A source that does not exist, and a spec without a destination, are rbox errors.
        env.rbox()
            .args([
                "run",
                "--rm",
                "-v",
                "/no/such/source/dir:/mnt",
                "helper",
                "cwd",
            ])
            .output()
            .rbox_error();
        env.rbox()
            .args([
                "run",
                "--rm",
                "-v",
                &format!("{}:/mnt:bogus-option", vol.display()),
                "helper",
                "cwd",
            ])
            .output()
            .rbox_error();
    });
}

#[test]
fn read_only_rootfs() {
    for_each_user("read_only", |env| {
        setup(env);
        env.rbox()
            .args(["run", "--rm", "helper", "write", "/etc/x", "y"])
            .output()
            .success();
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--read-only",
                "helper",
                "write",
                "/etc/x",
                "y",
            ])
            .output()
            .code_is(1);
        assert!(out.stderr.contains("Read-only file system"), "{out}");
        // A --tmpfs stays writable under --read-only.
        env.rbox()
            .args([
                "run",
                "--rm",
                "--read-only",
                "--tmpfs",
                "/scratch",
                "helper",
                "write",
                "/scratch/x",
                "y",
            ])
            .output()
            .success();
        // Writes to a container's root never reach the image: a new container sees none.
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "ls", "/etc/x"])
            .output();
        assert_ne!(
            out.code, 0,
            "a write in one container showed up in the image:\n{out}"
        );
    });
}

#[test]
fn pid_namespace() {
    for_each_user("pidns", |env| {
        setup(env);
        let out = env
            .rbox()
            .args(["run", "--rm", "helper", "pid"])
            .output()
            .success();
        assert_eq!(out.text(), "pid=1 ppid=0", "the command is PID 1");
        let out = env
            .rbox()
            .args(["run", "--rm", "helper", "pids"])
            .output()
            .success();
        assert_eq!(out.lines(), vec!["1"], "no host process is visible:\n{out}");
        // busybox ps reads /proc: it must see only itself.
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "ps", "-o", "pid,comm"])
            .output()
            .success();
        let rows: Vec<&str> = out.lines().into_iter().skip(1).collect();
        assert_eq!(rows.len(), 1, "{out}");
        assert!(rows[0].trim_start().starts_with("1 "), "{out}");
    });
}

#[test]
fn hostname() {
    for_each_user("hostname", |env| {
        setup(env);
        let out = env
            .rbox()
            .args(["run", "--rm", "--hostname", "box1", "helper", "hostname"])
            .output();
        assert_eq!(out.success().text(), "box1");
        // Default: its own uts namespace, not the host's name.
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        let out = env
            .rbox()
            .args(["run", "--rm", "helper", "hostname"])
            .output()
            .success();
        assert!(!out.text().is_empty(), "{out}");
        assert_ne!(out.text(), host, "the container shares the host's hostname");
        // /etc/hostname agrees with the name given.
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--hostname",
                "box2",
                "busybox",
                "cat",
                "/etc/hostname",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "box2");
    });
}

#[test]
fn tty_through_a_real_pty() {
    for_each_user("tty", |env| {
        setup(env);
        let out = env
            .rbox()
            .args(["run", "--rm", "-t", "helper", "tty"])
            .pty()
            .output()
            .success();
        assert!(
            out.text().contains("stdin=1 stdout=1"),
            "-t gives the container a terminal:\n{out}"
        );
        // The exit status passes through the terminal path too.
        env.rbox()
            .args(["run", "--rm", "-t", "helper", "exit", "5"])
            .pty()
            .output()
            .code_is(5);
        // The container's terminal is its own: it has a name under /dev/pts.
        let out = env
            .rbox()
            .args(["run", "--rm", "-t", "busybox", "tty"])
            .pty()
            .output()
            .success();
        assert!(out.text().starts_with("/dev/pts/"), "{out}");
        // Without -t (and with pipes), neither end is a terminal.
        let out = env
            .rbox()
            .args(["run", "--rm", "helper", "tty"])
            .output()
            .success();
        assert_eq!(out.text(), "stdin=0 stdout=0");
    });
}

#[test]
fn ctrl_c_through_the_terminal_reaches_the_container() {
    for_each_user("ctrl_c", |env| {
        setup(env);
        // rbox puts the caller's terminal in raw mode, so ^C travels as a byte to the
        // container's own terminal, whose line discipline turns it into SIGINT there.
        let mut r = env
            .rbox()
            .args(["run", "--rm", "-it", "helper", "wait-signal"])
            .pty()
            .spawn();
        let line = r.read_line();
        assert_eq!(line.trim_end(), "ready", "helper did not start");
        r.write_stdin(b"\x03");
        let out = r.wait().success();
        assert!(out.text().contains("signal=2"), "{out}");
    });
}

#[test]
fn tty_gets_the_callers_window_size() {
    for_each_user("winsize", |env| {
        setup(env);
        // The terminal rbox runs on is 33x101; the container's own pty must say the same.
        let out = env
            .rbox_on_terminal(33, 101, &["run", "--rm", "-t", "busybox", "stty", "-a"])
            .output()
            .success();
        // busybox's `stty size` refuses to run as a container's first process; -a does not
        assert!(out.stdout.contains("rows 33; columns 101;"), "{out}");
    });
}

#[test]
fn interactive_stdin() {
    for_each_user("stdin", |env| {
        setup(env);
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "-i",
                "busybox",
                "sh",
                "-c",
                "read a; read b; echo \"$b $a\"",
            ])
            .stdin("first\nsecond\n")
            .output()
            .success();
        assert_eq!(out.text(), "second first");
        // Without -i the container's stdin is empty.
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "wc", "-c"])
            .stdin("ignored\n")
            .output()
            .success();
        assert_eq!(out.text().trim(), "0");
    });
}

#[test]
fn signals_are_forwarded() {
    for_each_user("signals", |env| {
        setup(env);
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGUSR1] {
            let mut r = env
                .rbox()
                .args(["run", "--rm", "helper", "wait-signal"])
                .spawn();
            // The helper prints "ready" once its handlers are installed: no sleep needed.
            let line = r.read_line();
            assert_eq!(line.trim_end(), "ready", "helper did not start");
            r.signal(sig);
            let out = r.wait().success();
            assert_eq!(out.text(), format!("signal={}", sig as i32), "{out}");
        }
        // Under --init the command is not PID 1, so a signal without a handler kills it as it
        // would outside a container; rbox reports 128+n.
        let mut r = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--init",
                "busybox",
                "sh",
                "-c",
                "echo ready; exec sleep 600",
            ])
            .spawn();
        assert_eq!(r.read_line().trim_end(), "ready");
        r.signal(Signal::SIGHUP);
        r.wait().code_is(128 + Signal::SIGHUP as i32);
    });
}

#[test]
fn rm_leaves_nothing_behind() {
    for_each_user("rm", |env| {
        setup(env);
        // The first run may create lasting structure (lock files, directories); later runs
        // with --rm must leave everything exactly as they found it.
        env.rbox()
            .args(["run", "--rm", "helper", "pid"])
            .output()
            .success();
        // a --rm container's files are deleted by a child rbox leaves behind: wait for it
        let settled = || {
            crate::util::eventually("removed containers' files are deleted", || {
                !tree(&env.store().join("tmp"))
                    .iter()
                    .any(|n| n.ends_with(".rmcontainer"))
            })
        };
        settled();
        let before = (tree(&env.store()), tree(&env.runroot()));
        env.rbox()
            .args(["run", "--rm", "helper", "write", "/tmp/x", "y"])
            .output()
            .success();
        env.rbox()
            .args(["run", "--rm", "helper", "exit", "7"])
            .output()
            .code_is(7);
        env.rbox()
            .args(["run", "--rm", "--init", "helper", "kill", "9"])
            .output()
            .code_is(137);
        settled();
        let after = (tree(&env.store()), tree(&env.runroot()));
        assert_eq!(before.0, after.0, "--rm left files in the store");
        assert_eq!(before.1, after.1, "--rm left files in the runtime dir");
        let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(out.text(), "", "--rm left a container record");
        // Without --rm the container stays until `rbox rm`.
        env.rbox()
            .args(["run", "--name", "kept", "helper", "pid"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .success();
        assert_eq!(out.text(), "kept");
        env.rbox().args(["rm", "kept"]).output().success();
        assert_eq!(
            env.rbox()
                .args(["ps", "-a", "-q"])
                .output()
                .success()
                .text(),
            ""
        );
        // (its files deleted by a child `rm` leaves behind, as `--rm`'s)
        settled();
        let after_rm = (tree(&env.store()), tree(&env.runroot()));
        assert_eq!(before.0, after_rm.0, "rm left files in the store");
        assert_eq!(before.1, after_rm.1, "rm left files in the runtime dir");
    });
}

/// Generated names come from 576 adjective_surname pairs, so 40 containers made at once meet
/// on a first choice about three times in four: each must still get a name of its own (a
/// taken one was once an error, seen as a flaky parallel_runs).
#[test]
fn generated_names_never_collide() {
    for_each_user("gen-names", |env| {
        env.import_busybox("busybox");
        let outs: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..40)
                .map(|_| s.spawn(move || env.rbox().args(["create", "busybox", "true"]).output()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for out in outs {
            out.success();
        }
        let names = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .success();
        let mut list: Vec<&str> = names.lines();
        assert_eq!(list.len(), 40, "{names}");
        list.sort();
        list.dedup();
        assert_eq!(list.len(), 40, "names repeat:\n{names}");
    });
}

#[test]
fn parallel_runs() {
    for_each_user("parallel", |env| {
        setup(env);
        let outs: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    s.spawn(move || {
                        env.rbox()
                            .args(["run", "--rm", "helper", "args", &format!("run-{i}")])
                            .output()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, out) in outs.into_iter().enumerate() {
            assert_eq!(out.success().text(), format!("run-{i}"));
        }
        assert_eq!(
            env.rbox()
                .args(["ps", "-a", "-q"])
                .output()
                .success()
                .text(),
            ""
        );
        // Named containers at once: every name distinct, all listed, then all removed.
        std::thread::scope(|s| {
            for i in 0..4 {
                s.spawn(move || {
                    env.rbox()
                        .args(["run", "--name", &format!("par{i}"), "helper", "pid"])
                        .output()
                        .success();
                });
            }
        });
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .success();
        let mut names = out.lines();
        names.sort();
        assert_eq!(names, vec!["par0", "par1", "par2", "par3"]);
        env.rbox().args(["rm", "-a"]).output().success();
    });
}

#[test]
fn capabilities_and_no_new_privs() {
    for_each_user("caps", |env| {
        setup(env);
        let caps = |args: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm"]).args(args).args(["helper", "caps"]);
            env_map(&c.output().success().stdout.replace(":\t", "="))
        };
        // Podman's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL NET_BIND_SERVICE SETFCAP
        // SETGID SETPCAP SETUID SYS_CHROOT = bits 0,1,3,4,5,6,7,8,10,18,31.
        let default = caps(&[]);
        assert_eq!(
            default.get("CapEff").map(String::as_str),
            Some("00000000800405fb"),
            "{default:?}"
        );
        assert_eq!(
            default.get("CapBnd").map(String::as_str),
            Some("00000000800405fb"),
            "{default:?}"
        );
        // Podman's default leaves no_new_privs off (setuid programs work in the container)...
        assert_eq!(
            default.get("NoNewPrivs").map(String::as_str),
            Some("0"),
            "{default:?}"
        );
        // ...and --security-opt no-new-privileges turns it on.
        let nnp = caps(&["--security-opt", "no-new-privileges"]);
        assert_eq!(
            nnp.get("NoNewPrivs").map(String::as_str),
            Some("1"),
            "{nnp:?}"
        );
        let dropped = caps(&["--cap-drop", "CHOWN"]);
        assert_eq!(
            dropped.get("CapEff").map(String::as_str),
            Some("00000000800405fa"),
            "{dropped:?}"
        );
        // SYS_ADMIN is bit 21.
        let added = caps(&["--cap-add", "SYS_ADMIN"]);
        assert_eq!(
            added.get("CapEff").map(String::as_str),
            Some("00000000802405fb"),
            "{added:?}"
        );
    });
}

#[test]
fn devices_proc_and_sys() {
    for_each_user("dev_proc_sys", |env| {
        setup(env);
        let sh = |script: &str| {
            env.rbox()
                .args(["run", "--rm", "busybox", "sh", "-c", script])
                .output()
        };
        // The usual device nodes, a private devpts, shm and mqueue.
        let out = sh("for d in null zero full random urandom tty ptmx; do [ -e /dev/$d ] || echo missing $d; done; \
                      echo x > /dev/null && head -c 4 /dev/zero | wc -c; \
                      [ -d /dev/pts ] && [ -d /dev/shm ] && [ -d /dev/mqueue ] && echo dirs")
            .success();
        assert_eq!(out.text(), "4\ndirs", "{out}");
        // /sys and /proc/sys are read-only; /proc/timer_list is masked as Podman masks it.
        let out = sh("(touch /sys/x) 2>/dev/null && echo sys-writable; \
                      (echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo procsys-writable; \
                      echo checked")
        .success();
        assert_eq!(out.text(), "checked", "{out}");
        if std::path::Path::new("/proc/timer_list").exists() {
            let out = sh("wc -c < /proc/timer_list").success();
            assert_eq!(
                out.text().trim(),
                "0",
                "/proc/timer_list is not masked:\n{out}"
            );
        }
        // /etc/hosts names the container.
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--hostname",
                "hosty",
                "busybox",
                "cat",
                "/etc/hosts",
            ])
            .output()
            .success();
        assert!(out.stdout.contains("localhost"), "{out}");
        assert!(out.stdout.contains("hosty"), "{out}");
    });
}

#[test]
fn network_none_and_host() {
    for_each_user("network", |env| {
        setup(env);
        let ifaces = |net: &str| {
            let out = env
                .rbox()
                .args([
                    "run",
                    "--rm",
                    "--network",
                    net,
                    "busybox",
                    "cat",
                    "/proc/net/dev",
                ])
                .output()
                .success();
            out.lines()
                .iter()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(|n| n.trim().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ifaces("none"),
            vec!["lo"],
            "--network=none has only a loopback"
        );
        // ... that is up, in a namespace of the container's own (made ahead of the init's
        // clone, see runtime::prenet): not the host's, and its sysfs shows it
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "busybox", "sh", "-c"])
            .arg("readlink /proc/self/ns/net; cat /sys/class/net/lo/flags; ls /sys/class/net")
            .output()
            .success();
        let lines = out.lines();
        let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_ne!(lines[0], host_ns.to_string_lossy(), "{out}");
        let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 1, 1, "loopback is up: {out}");
        assert_eq!(lines[2..], ["lo"], "{out}");
        let host: Vec<String> = std::fs::read_to_string("/proc/net/dev")
            .unwrap()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .collect();
        let mut got = ifaces("host");
        let mut want = host.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "--network=host shares the host's interfaces");
    });
}

#[test]
fn userns_keep_id() {
    for_each_user("keep_id", |env| {
        setup(env);
        if env.user.who == crate::util::Who::Root {
            // keep-id is for ordinary users; as root the ids are already the host's.
            return;
        }
        let out = env
            .rbox()
            .args(["run", "--rm", "--userns=keep-id", "helper", "ids"])
            .output()
            .success();
        let want = format!("uid={} gid={}", env.user.uid, env.user.gid);
        assert!(
            out.text().starts_with(&want),
            "keep-id runs as the caller's ids:\n{out}"
        );
        // Files the caller owns on the host are the caller's inside too.
        let vol = env.path("vol");
        std::fs::create_dir(&vol).unwrap();
        env.give_to_user(&vol);
        let out = env
            .rbox()
            .args(["run", "--rm", "--userns=keep-id", "-v"])
            .arg(format!("{}:/mnt", vol.display()))
            .args(["busybox", "sh", "-c", "touch /mnt/f && stat -c %u /mnt/f"])
            .output()
            .success();
        assert_eq!(out.text(), env.user.uid.to_string());
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(vol.join("f")).unwrap()),
            env.user.uid
        );
    });
}

#[test]
fn info_describes_the_host() {
    for_each_user("info", |env| {
        let out = env.rbox().arg("info").output().success();
        assert!(!out.stdout.trim().is_empty(), "{out}");
        let lower = out.stdout.to_lowercase();
        assert!(
            lower.contains("subuid") || lower.contains("uid map") || lower.contains("idmap"),
            "{out}"
        );
        // the network bridges rbox can start, as their own --version names them
        let net = env
            .rbox()
            .args(["info", "--format", "{{json .host.network}}"])
            .output()
            .success();
        let v: serde_json::Value = serde_json::from_str(&net.stdout).unwrap();
        // .ci/run installs passt: pasta is the default (slirp4netns only without it)
        assert_eq!(v["default"], "pasta", "{net}");
        assert_eq!(
            v["slirp4netns"]["executable"], "/usr/bin/slirp4netns",
            "{net}"
        );
        let version = v["slirp4netns"]["version"].as_str().unwrap();
        assert!(version.starts_with("slirp4netns version "), "{net}");
        assert_eq!(v["pasta"]["executable"], "/usr/bin/pasta", "{net}");
        assert!(
            v["pasta"]["version"]
                .as_str()
                .unwrap()
                .starts_with("pasta "),
            "{net}"
        );
    });
}

#[test]
fn helper_binary_is_static() {
    // The payload must run in an image without a libc: check the fixture itself.
    let bin = fixtures::helper_bin();
    let meta = std::fs::metadata(&bin).unwrap();
    assert!(meta.permissions().mode() & 0o111 != 0);
    let out = std::process::Command::new(&bin)
        .args(["args", "ok"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

/// `run --rootfs DIR`: a host directory as the root, overlaid so that it is never written
/// (the container's changes stay in its own upper layer, across starts); the host's own `/`
/// works too, although a user namespace may not overlay it whole (its locked mounts below).
#[test]
fn rootfs_overlays_a_host_directory() {
    for_each_user("rootfs", |env| {
        let dir = env.path("tree");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::copy(crate::fixtures::BUSYBOX, dir.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("busybox", dir.join("bin/cat")).unwrap();
        std::fs::write(dir.join("hello"), "from the tree\n").unwrap();
        env.give_to_user(&dir);
        let tree = dir.display().to_string();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--rootfs", &tree])
            .args(["sh", "-c", "cat /hello; echo changed > /hello; cat /hello"])
            .output()
            .success();
        assert_eq!(out.text(), "from the tree\nchanged");
        assert_eq!(
            std::fs::read_to_string(dir.join("hello")).unwrap(),
            "from the tree\n"
        );
        // a created container keeps its changes from one start to the next
        env.rbox()
            .args(["create", "--name", "t", "--network=none", "--rootfs", &tree])
            .args(["sh", "-c", "cat /hello; echo again > /hello"])
            .output()
            .success();
        let first = env.rbox().args(["start", "-a", "t"]).output().success();
        assert_eq!(first.text(), "from the tree");
        let second = env.rbox().args(["start", "-a", "t"]).output().success();
        assert_eq!(second.text(), "again");
        assert_eq!(env.inspect("t", "{{.ImageName}}"), "");
        env.rbox().args(["rm", "t"]).output().success();

        // the host's root: what the host has, and nothing written to it
        let host = std::fs::read_to_string("/etc/os-release").unwrap();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--rootfs", "/"])
            .args([
                "sh",
                "-c",
                "touch /etc/rbox-rootfs-test && cat /etc/os-release",
            ])
            .output()
            .success();
        assert_eq!(out.stdout, host);
        assert!(!std::path::Path::new("/etc/rbox-rootfs-test").exists());

        let out = env
            .rbox()
            .args(["run", "--rm", "--rootfs", "/nonexistent", "true"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains("not a directory"), "{out}");
    });
}
