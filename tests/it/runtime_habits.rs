//! Runtime behaviour that Podman users rely on (issue 9), each checked against what Podman
//! 4.3 did with the same arguments: mount destinations, capabilities under a narrow bounding
//! set, the working directory and the root's mode, `--userns=keep-id`, the pause process of
//! a runtime directory, and the logs of attached containers. Every test runs once per
//! identity.

use crate::util::{for_each_user, Env};

fn setup(env: &Env) {
    env.import_busybox("busybox");
}

/// `rbox run --rm --network=none OPTS busybox ARGS`.
fn run(env: &Env, opts: &[&str], args: &[&str]) -> crate::util::Output {
    let mut c = env.rbox();
    c.args(["run", "--rm", "--network=none"])
        .args(opts)
        .arg("busybox")
        .args(args);
    c.output()
}

/// Podman 4.3: `-v A:/x -v B:/x` and `-v A:/x --tmpfs /x` exit 125 with
/// "Error: /x: duplicate mount destination"; paths compare cleaned.
#[test]
fn two_mounts_on_one_destination_are_refused() {
    for_each_user("habits_dup_mount", |env| {
        setup(env);
        let a = env.path("a");
        let b = env.path("b");
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            env.give_to_user(d);
        }
        let va = format!("{}:/x", a.display());
        let vb = format!("{}:/x/", b.display());
        for opts in [
            vec!["-v", va.as_str(), "-v", vb.as_str()],
            vec!["-v", va.as_str(), "--tmpfs", "/x"],
        ] {
            let out = run(env, &opts, &["true"]).rbox_error();
            assert!(
                out.stderr
                    .contains("Error: /x: duplicate mount destination"),
                "{out}"
            );
        }
        // distinct destinations still work
        let vb = format!("{}:/y", b.display());
        run(env, &["-v", &va, "-v", &vb], &["true"]).success();
    });
}

/// The capability mask of `field` (CapEff, CapBnd) in /proc/self/status's text.
fn cap_mask(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// `--privileged` and `--cap-add all` grant what the bounding set of the caller holds (as
/// crun does) instead of failing with "set capabilities: Operation not permitted" where the
/// host's bounding set lacks one (root here lacks CAP_SYS_RESOURCE). Podman 4.3 as root ran
/// both with CapEff equal to the host's CapBnd.
#[test]
fn privileged_gets_the_bounding_set_it_has() {
    for_each_user("habits_caps_bounding", |env| {
        setup(env);
        // Root's own bounding set is the limit; an unprivileged user's rbox runs in a user
        // namespace of its own, whose bounding set is full (user_namespaces(7)).
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let all = (1u64 << (last + 1)) - 1;
        let expected = if env.user.uid == 0 {
            let host = env.cmd("cat").arg("/proc/self/status").output().success();
            cap_mask(&host.stdout, "CapBnd") & all
        } else {
            all
        };
        for opts in [&["--privileged"][..], &["--cap-add", "all"][..]] {
            let out = run(env, opts, &["cat", "/proc/self/status"]).success();
            assert_eq!(cap_mask(&out.stdout, "CapEff"), expected, "{out}");
            assert_eq!(cap_mask(&out.stdout, "CapBnd"), expected, "{out}");
        }
    });
}

/// Podman 4.3: `run -w /nonexistent` exits 126 with
/// `Error: workdir "/nonexistent" does not exist on container ID`; an image's own WorkingDir
/// that does not exist is created; `exec -w /nonexistent` exits 127. `/` shows mode 555
/// (`stat -c %a /`): containers/storage gives a layer without a root entry a 0555 root.
#[test]
fn workdir_must_exist_unless_the_image_names_it() {
    for_each_user("habits_workdir", |env| {
        setup(env);
        let out = run(env, &["-w", "/nonexistent"], &["pwd"]).code_is(126);
        assert!(
            out.stderr
                .contains("Error: workdir \"/nonexistent\" does not exist on container "),
            "{out}"
        );
        // an existing directory is used as it is
        assert_eq!(run(env, &["-w", "/tmp"], &["pwd"]).success().text(), "/tmp");
        // the image's WorkingDir is created
        let tar = env.copy_in(&crate::fixtures::busybox_rootfs_tar(), "wd.tar");
        env.rbox()
            .args(["import", "--change", "WORKDIR /made/here"])
            .arg(&tar)
            .arg("wdimage")
            .output()
            .success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "wdimage", "pwd"])
            .output()
            .success();
        assert_eq!(out.text(), "/made/here");
        // the root's mode
        assert_eq!(
            run(env, &[], &["stat", "-c", "%a", "/"]).success().text(),
            "555"
        );
        // exec -w of a missing directory
        let name = format!("wd{}", crate::util::unique());
        env.rbox()
            .args([
                "run",
                "-d",
                "--network=none",
                "--name",
                &name,
                "busybox",
                "sleep",
                "60",
            ])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["exec", "-w", "/nonexistent", &name, "pwd"])
            .output()
            .code_is(127);
        assert!(out.stderr.contains("/nonexistent"), "{out}");
        env.rbox()
            .args(["rm", "-f", "-t", "0", &name])
            .output()
            .success();
    });
}

/// `rbox logs NAME`'s stdout.
fn logs(env: &Env, name: &str) -> String {
    env.rbox().args(["logs", name]).output().success().stdout
}

/// Podman 4.3 keeps the output of attached containers: after `podman run IMG echo X` (and
/// `create` + `start --attach`) `podman logs` prints X. rbox relays an attached container's
/// output (through pipes, or its terminal with `-t`) and appends it to the same log the
/// detached monitor writes; the caller still gets stdout and stderr apart.
#[test]
fn attached_containers_keep_logs() {
    for_each_user("habits_attached_logs", |env| {
        setup(env);
        let out = env
            .rbox()
            .args(["run", "--name", "one", "--network=none", "busybox"])
            .args([
                "sh",
                "-c",
                "echo X; echo E >&2; [ -t 1 ] || echo pipe; exit 3",
            ])
            .output()
            .code_is(3);
        assert_eq!(out.stdout, "X\npipe\n", "{out}");
        assert!(out.stderr.contains('E'), "{out}");
        let l = logs(env, "one");
        assert!(l.contains("X\n") && l.contains("pipe\n"), "{l}");

        env.rbox()
            .args([
                "create",
                "--name",
                "two",
                "--network=none",
                "busybox",
                "echo",
                "Y",
            ])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["start", "--attach", "two"])
            .output()
            .success();
        assert_eq!(out.text(), "Y");
        assert_eq!(logs(env, "two"), "Y\n");

        // -i: stdin still reaches the container
        let out = env
            .rbox()
            .args([
                "run",
                "-i",
                "--name",
                "three",
                "--network=none",
                "busybox",
                "cat",
            ])
            .stdin("in\n")
            .output()
            .success();
        assert_eq!(out.text(), "in");
        assert_eq!(logs(env, "three"), "in\n");

        // -t: what the terminal showed
        let out = env
            .rbox_on_terminal(
                24,
                80,
                &[
                    "run",
                    "-t",
                    "--name",
                    "four",
                    "--network=none",
                    "busybox",
                    "echo",
                    "Z",
                ],
            )
            .output()
            .success();
        assert!(out.stdout.contains('Z'), "{out}");
        assert!(logs(env, "four").contains('Z'));
    });
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

/// Each `--runroot` of an unprivileged user gets a pause process that keeps rbox's user
/// namespace; it ends (woken by inotify, not by polling) once its runtime directory is
/// removed, so that the tests' many runtime directories leave none behind.
#[test]
fn pause_process_ends_with_its_runtime_directory() {
    for_each_user("habits_pause", |env| {
        setup(env);
        let pidfile = env.runroot().join("pause.pid");
        if env.user.uid == 0 {
            // root needs no user namespace and has no pause process
            assert!(!pidfile.exists());
            return;
        }
        let text = std::fs::read_to_string(&pidfile).expect("a pause process after import");
        let pid = text.split_whitespace().next().unwrap().to_string();
        assert!(!ended(&pid), "pause process {pid} is not running");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "rbox-pause");
        std::fs::remove_dir_all(env.runroot()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ended(&pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "pause process {pid} outlived its runtime directory"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
}

/// The container's command starts with every signal at its default disposition and none
/// blocked, whatever rbox's caller ignored (`nohup`, a shell's background job, a `trap ''`)
/// and though rbox itself ignores SIGPIPE; its capability bounding set is the default
/// one. (The init reads both from /proc/self/status once.)
#[test]
fn the_command_starts_with_default_signal_dispositions() {
    use crate::util::{shell_quote, RBOX};
    for_each_user("habits_signals", |env| {
        setup(env);
        let line = format!(
            "trap '' HUP INT QUIT TERM USR1 PIPE; exec {rbox} --root {root} --runroot {run} \
             run --rm --network=none busybox grep -E '^(SigIgn|SigBlk|CapBnd)' /proc/self/status",
            rbox = shell_quote(RBOX),
            root = shell_quote(&env.store().to_string_lossy()),
            run = shell_quote(&env.runroot().to_string_lossy()),
        );
        let out = env.cmd("sh").args(["-c", &line]).output().success();
        assert!(out.stdout.contains("SigIgn:\t0000000000000000"), "{out}");
        assert!(out.stdout.contains("SigBlk:\t0000000000000000"), "{out}");
        // Podman 4.3's default set (as run::capabilities_and_no_new_privs checks)
        assert!(out.stdout.contains("CapBnd:\t00000000800405fb"), "{out}");
    });
}
