//! User-namespace modes (`--userns`, `--uidmap`, `--gidmap`) and container state that stays
//! true under load: many containers started and stopped at once, a killed monitor, a runtime
//! directory that vanished while a container was recorded as running (issue 9).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{for_each_user, Cmd};

/// Whether `pid` still runs (a zombie or an exiting process does not).
fn runs(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = s.rsplit_once(')') else {
        return false;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let flags: u64 = f.get(6).and_then(|x| x.parse().ok()).unwrap_or(0);
    !matches!(f.first(), Some(&"Z" | &"X")) && flags & PF_EXITING == 0
}

/// The parent pid of `pid`.
fn ppid(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Wait (with a deadline) until none of `pids` runs.
fn wait_gone(pids: &[i32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(p) = pids.iter().find(|p| runs(**p)) {
        assert!(Instant::now() < deadline, "{what} {p} still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes other than the pause process whose command line names `dir` (rbox
/// invocations and monitors of this test).
fn rbox_processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(pid) = name.parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if cmd.contains(&needle) && comm.trim() != "rbox-pause" && runs(pid) {
            out.push(format!("{pid} {}: {cmd}", comm.trim()));
        }
    }
    out
}

/// The entries of `dir` (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Run `f` on `n` threads at once, each with its index; returns the outputs in order.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                s.spawn({
                    let f = &f;
                    move || f(i)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// 50 detached containers started at once all run and show in `ps`; stopped at once and
/// removed they leave no process, no mount, no runtime file and no name behind, and one
/// pause process keeps the user namespace.
#[test]
fn fifty_containers_started_and_stopped_at_once() {
    const N: usize = 50;
    for_each_user("fifty", |env| {
        env.import_busybox("busybox");
        let pause_file = env.runroot().join("pause.pid");
        if env.user.uid != 0 {
            // no pause process yet: the 50 invocations race to start one
            let text = std::fs::read_to_string(&pause_file).unwrap();
            let p: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
            std::fs::remove_file(&pause_file).unwrap();
            wait_gone(&[p], "pause process");
        }
        let outs = parallel(N, |i| {
            let mut c: Cmd = env.rbox();
            c.timeout(Duration::from_secs(120));
            c.args(["run", "-d", "--network=none", "--name", &format!("c{i}")])
                .args(["busybox", "sleep", "600"])
                .try_output()
        });
        for o in &outs {
            let o = o.as_ref().expect("run rbox");
            assert_eq!(o.code, 0, "{o}");
        }
        let out = env
            .rbox()
            .args(["ps", "--format", "{{.Names}} {{.Status}}"])
            .output()
            .success();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), N, "{out}");
        for i in 0..N {
            let want = format!("c{i} Up");
            assert!(lines.iter().any(|l| l.starts_with(&want)), "c{i}: {out}");
        }
        // the container inits and their monitors
        let mut pids = Vec::new();
        for i in 0..N {
            let pid: i32 = env.field(&format!("c{i}"), ".State.Pid").parse().unwrap();
            assert!(runs(pid), "c{i}'s init {pid}");
            pids.push(pid);
            pids.push(ppid(pid));
        }
        if env.user.uid != 0 {
            let text = std::fs::read_to_string(&pause_file).unwrap();
            let p: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
            assert!(runs(p), "pause process {p}");
            // every monitor (odd entries) lives in the pause process's user namespace
            let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
            for m in pids.iter().skip(1).step_by(2) {
                assert_eq!(ns(*m), ns(p), "monitor {m} and pause {p}");
            }
            let all_pauses: Vec<String> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| {
                    let pid = e.file_name().to_string_lossy().into_owned();
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "rbox-pause")
                        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                            String::from_utf8_lossy(&c).contains(&*env.runroot().to_string_lossy())
                        })
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert!(all_pauses.len() <= 1, "pause processes: {all_pauses:?}");
        }

        // any later invocation enters any of them
        for i in [0, N / 2, N - 1] {
            let out = env.rbox().args(["exec", &format!("c{i}"), "true"]).output();
            assert_eq!(out.code, 0, "{out}");
        }

        let outs = parallel(N, |i| {
            let mut c: Cmd = env.rbox();
            c.timeout(Duration::from_secs(120));
            c.args(["stop", "-t", "0", &format!("c{i}")]).try_output()
        });
        for o in &outs {
            let o = o.as_ref().expect("run rbox");
            assert_eq!(o.code, 0, "{o}");
        }
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .output()
            .success();
        assert_eq!(out.stdout.lines().count(), N, "{out}");
        assert!(!out.stdout.contains(" Up"), "{out}");
        let outs = parallel(N, |i| {
            let mut c: Cmd = env.rbox();
            c.timeout(Duration::from_secs(120));
            c.args(["rm", &format!("c{i}")]).try_output()
        });
        for o in &outs {
            let o = o.as_ref().expect("run rbox");
            assert_eq!(o.code, 0, "{o}");
        }
        wait_gone(&pids, "container init or monitor");
        let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(out.stdout, "", "{out}");
        // (each `rm` leaves a child behind that deletes the container's files, and ends)
        crate::util::eventually("the children rm left behind end", || {
            rbox_processes_naming(&env.dir).is_empty()
        });
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = env.dir.to_string_lossy().into_owned();
        assert!(
            !mounts.contains(&dir),
            "mounts left under `{dir}`: {mounts}"
        );
        for sub in ["containers", "attach", "net"] {
            let e = entries(&env.runroot().join(sub));
            assert!(e.is_empty(), "runroot {sub}/ holds {e:?}");
        }
        let names = entries(&env.store().join("container-names"));
        assert!(names.is_empty(), "names left: {names:?}");
        let dirs = entries(&env.store().join("containers"));
        assert!(dirs.is_empty(), "container dirs left: {dirs:?}");
    });
}

/// The runtime directory deleted while a container was recorded as running, with its
/// processes gone (as after a reboot): `ps` shows it exited, and it starts again.
#[test]
fn a_vanished_runtime_directory_is_recovered() {
    for_each_user("stale_runroot", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args([
                "run",
                "-d",
                "--network=none",
                "--name",
                "s",
                "busybox",
                "sleep",
                "600",
            ])
            .output()
            .success();
        let pid: i32 = env.field("s", ".State.Pid").parse().unwrap();
        let monitor = ppid(pid);
        // the reboot: the runtime directory goes, then every process
        std::fs::remove_dir_all(env.runroot()).unwrap();
        for p in [monitor, pid] {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        wait_gone(&[pid, monitor], "container init or monitor");
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .output()
            .success();
        assert!(out.stdout.starts_with("s Exited"), "{out}");
        assert_eq!(env.field("s", ".State.Running"), "false");
        env.rbox().args(["start", "s"]).output().success();
        assert_eq!(env.field("s", ".State.Running"), "true");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "s"])
            .output()
            .success();
    });
}

/// `--userns=keep-id[:uid=N,gid=N]` runs as the caller's ids (or the given ones), with the
/// caller's passwd and group entries; `host` is the default map; `--uidmap` maps ids of
/// rbox's namespace; what rbox cannot do is refused with exit 125.
#[test]
fn userns_modes_and_id_maps() {
    for_each_user("userns_modes", |env| {
        env.import_busybox("busybox");
        let run = |args: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(args)
                .output()
        };
        let out = run(&[
            "--userns=keep-id",
            "busybox",
            "sh",
            "-c",
            "id -u; id -un; id -gn; echo $HOME",
        ]);
        if env.user.uid == 0 {
            // root has no user namespace to keep an id in: Podman's refusal
            let out = out.rbox_error();
            assert_eq!(
                out.stderr.trim_end(),
                "Error: keep-id is only supported in rootless mode",
                "{out}"
            );
        } else {
            let out = out.success();
            let want = format!("{}\n{n}\n{n}\n/\n", env.user.uid, n = env.user.name);
            assert_eq!(out.stdout, want, "{out}");
            let out = run(&[
                "--userns=keep-id:uid=200,gid=300",
                "busybox",
                "sh",
                "-c",
                "id -u; id -g; grep ^200: /etc/passwd; grep ^300: /etc/group",
            ])
            .success();
            assert_eq!(
                out.stdout, "200\n300\n200:*:200:300:container user:/:/bin/sh\n300:x:300:200\n",
                "{out}"
            );
        }
        let out = run(&["--userns=host", "busybox", "id", "-u"]).success();
        assert_eq!(out.stdout, "0\n", "{out}");
        // host id 0 of rbox's namespace (the caller) as container id 0 only
        let out = run(&[
            "--uidmap",
            "0:0:1",
            "busybox",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map /proc/self/gid_map",
        ])
        .success();
        let lines: Vec<Vec<&str>> = out
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [vec!["0"], vec!["0", "0", "1"], vec!["0", "0", "1"]],
            "{out}"
        );

        for (args, msg) in [
            (&["--userns=bogus"][..], "Error: unrecognized namespace mode bogus passed"),
            (&["--userns=keep-id:foo=1"][..], "Error: unknown option specified: \"foo\""),
            (
                &["--uidmap", "0:bad"][..],
                "Error: initializing ID mappings: UID setting is malformed expected [\"uint32:uint32:uint32\"]: [\"0:bad\"]",
            ),
            (
                &["--userns=keep-id", "--uidmap", "0:0:1"][..],
                "Error: --userns and --uidmap/--gidmap/--subuidname/--subgidname are mutually exclusive",
            ),
            (&["--subuidname", "x"][..], "Error: no subuid ranges found for user \"x\" in /etc/subuid"),
            (&["--uidmap", "0:1:10"][..], "must map host id 0"),
            // (`--userns=nomap` and `auto`: tests/it/userns_nomap.rs; they run for a user
            // with a range)
        ] {
            let out = run(&[args, &["busybox", "true"]].concat()).rbox_error();
            assert!(out.stderr.contains(msg), "{args:?}: {out}");
        }
        let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(out.stdout, "", "a refused run leaves no container: {out}");
    });
}

/// The pause process's record (`pause.stamp` beside `pause.pid`) says what /etc/subuid and
/// /etc/subgid were when it made the namespace (inode, size, change time): while they stay so,
/// an invocation joins it without the user database or those files; a record that no longer
/// matches is joined by comparing the maps, as before, and written again. The pid file keeps
/// the two words earlier versions read. The container's ids are the namespace's either way.
#[test]
fn pause_process_is_joined_by_its_record_of_subid_files() {
    for_each_user("pause_stamp", |env| {
        if env.user.uid == 0 {
            return;
        }
        env.import_busybox("busybox");
        let read = |f: &str| {
            std::fs::read_to_string(env.runroot().join(f))
                .unwrap()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let pid = read("pause.pid");
        assert_eq!(pid.len(), 2, "{pid:?}");
        let stamp = read("pause.stamp");
        assert_eq!(stamp.len(), 3, "{stamp:?}");
        assert_eq!(stamp[..2], pid[..]);
        assert!(stamp[2].contains(','), "{stamp:?}");
        let maps = || {
            env.rbox()
                .args(["run", "--rm", "--network=none", "busybox"])
                .args(["cat", "/proc/self/uid_map", "/proc/self/gid_map"])
                .output()
                .success()
                .stdout
        };
        let before = maps();
        assert_eq!(read("pause.pid"), pid);
        // a record that no longer matches
        let stale = format!("{} {} -,-\n", pid[0], pid[1]);
        std::fs::write(env.runroot().join("pause.stamp"), stale).unwrap();
        assert_eq!(maps(), before);
        assert_eq!(read("pause.pid"), pid);
        assert_eq!(read("pause.stamp"), stamp);
        assert!(runs(pid[0].parse().unwrap()), "the pause process ended");
    });
}
