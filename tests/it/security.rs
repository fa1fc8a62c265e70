//! What another user can reach of ours, and container state that must not lie: the store and
//! the runtime directory are closed to other users (setuid layer files and an image's
//! world-writable /tmp included); a container looks the same whichever runtime directory the
//! caller has; a /tmp/rbox-run-UID that another user made first is never used; and a container
//! whose exit nobody saw is recorded as killed (137), not as a clean exit.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fixtures::{self, Layer};
use crate::util::{self, for_each_user, other_user, Cmd, Env, Who};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat `{}`: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path below `root` whose mode matches `pred` (walked as root, the test process).
fn find(root: &Path, pred: &dyn Fn(&std::fs::Metadata, &Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if pred(&m, &p) {
                out.push(p.clone());
            }
            if m.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

/// A small image whose only layer holds a setuid-root executable and a world-writable /tmp.
fn setuid_rootfs(env: &Env) -> PathBuf {
    let helper = std::fs::read(fixtures::helper_bin()).unwrap();
    let mut l = Layer::new();
    l.dir("bin", 0o755, 0, 0);
    l.dir("tmp", 0o1777, 0, 0);
    l.file("bin/suid", &helper, 0o4755, 0, 0);
    env.write("suid.tar", l.finish())
}

fn inspect(rbox: impl Fn() -> Cmd, name: &str, field: &str) -> String {
    rbox()
        .args(["inspect", "--format", &format!("{{{{{field}}}}}"), name])
        .output()
        .success()
        .text()
}

/// Wait (with a deadline) until the container no longer runs.
fn wait_not_running(rbox: impl Fn() -> Cmd, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while inspect(&rbox, name, ".State.Running") == "true" {
        assert!(
            Instant::now() < deadline,
            "container {name} still runs 20 s after its monitor was killed"
        );
        std::thread::yield_now();
    }
}

/// Whether `pid` still runs: a zombie, or a process in its exit path (PF_EXITING: a pid
/// namespace's init stays there while the kernel kills the rest of the namespace), does not.
fn runs(pid: &str) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = s.rsplit_once(')') else {
        return false;
    };
    // fields from 3 (state); 9 is flags
    let f: Vec<&str> = rest.split_whitespace().collect();
    let flags: u64 = f.get(6).and_then(|x| x.parse().ok()).unwrap_or(0);
    !matches!(f.first(), Some(&"Z" | &"X")) && flags & PF_EXITING == 0
}

#[test]
fn store_and_runtime_dir_are_closed_to_other_users() {
    let Some(other) = other_user() else { return };
    for_each_user("closed", |env| {
        let stranger = Env::new("closed-stranger", &other);
        let tar = setuid_rootfs(env);
        env.rbox()
            .arg("import")
            .arg(&tar)
            .arg("suid")
            .output()
            .success();
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--name", "c1", "busybox", "sleep", "600"])
            .output()
            .success();
        assert_eq!(mode(&env.store()), 0o700, "store root");
        assert_eq!(mode(&env.runroot()), 0o700, "runtime dir");

        let suid = find(&env.store(), &|m, _| m.is_file() && m.mode() & 0o4000 != 0);
        assert!(!suid.is_empty(), "no setuid file in the store");
        let world = find(&env.store(), &|m, p| {
            m.is_dir() && m.mode() & 0o002 != 0 && p.ends_with("tmp")
        });
        assert!(!world.is_empty(), "no image /tmp in the store");
        let live = find(&env.runroot(), &|m, _| m.is_file());
        assert!(!live.is_empty(), "no live state in the runtime dir");

        let fails = |prog: &str, args: &[&Path]| {
            let out = stranger.cmd(prog).args(args).output();
            assert_ne!(
                out.code, 0,
                "{} reached {}'s files:\n{out}",
                other, env.user
            );
        };
        for d in [env.store(), env.runroot(), env.store().join("layers")] {
            fails("ls", &[&d]);
            fails("touch", &[&d.join("planted")]);
        }
        for f in suid.iter().chain(&live) {
            fails("cat", &[f]);
            fails(f.to_str().unwrap(), &[]);
        }
        for d in &world {
            fails("ls", &[d]);
            fails("touch", &[&d.join("planted")]);
        }
        env.rbox().args(["rm", "-f", "c1"]).output().success();
    });
}

#[test]
fn an_open_store_is_closed_on_open() {
    for_each_user("reopen", |env| {
        let store = env.store();
        std::fs::create_dir(&store).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        env.give_to_user(&store);
        env.rbox().arg("images").output().success();
        assert_eq!(mode(&store), 0o700);
    });
}

#[test]
fn killed_run_or_monitor_is_recorded_as_killed() {
    for_each_user("killed", |env| {
        env.import_busybox("busybox");
        let rbox = || env.rbox();

        // a foreground `rbox run`, killed
        let mut run = env
            .rbox()
            .args(["run", "--name", "fg", "busybox"])
            .args(["sh", "-c", "echo ready; exec sleep 600"])
            .spawn();
        assert_eq!(run.read_line(), "ready\n");
        // the record says running before the command runs (sync point 2), never after
        assert_eq!(inspect(rbox, "fg", ".State.Status"), "running");
        let pid = inspect(rbox, "fg", ".State.Pid");
        run.signal(nix::sys::signal::Signal::SIGKILL);
        run.wait();
        wait_not_running(rbox, "fg");
        assert!(!runs(&pid), "container init {pid} outlived its rbox run");
        assert_eq!(inspect(rbox, "fg", ".State.ExitCode"), "137");

        // the monitor of a detached container, killed
        env.rbox()
            .args(["run", "-d", "--name", "bg", "busybox", "sleep", "600"])
            .output()
            .success();
        let pid = inspect(rbox, "bg", ".State.Pid");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let monitor: i32 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{monitor}/comm")).unwrap();
        assert_eq!(comm.trim(), "rbox", "parent of the container init");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_not_running(rbox, "bg");
        assert!(!runs(&pid), "container init {pid} outlived its monitor");
        assert_eq!(inspect(rbox, "bg", ".State.ExitCode"), "137");
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .output()
            .success();
        for l in out.lines() {
            assert!(l.contains("Exited (137)"), "{out}");
        }
        env.rbox().args(["rm", "fg", "bg"]).output().success();
    });
}

/// rbox as the env's user with `--root` only: the runtime directory comes from the
/// environment, `xdg` or none.
fn rbox_at(env: &Env, xdg: Option<&Path>) -> Cmd {
    let mut c = env.cmd(util::RBOX);
    if let Some(x) = xdg {
        c.env("XDG_RUNTIME_DIR", x);
    }
    c.arg("--root").arg(env.store());
    c
}

/// One container started with one runtime directory and seen, exec'd into, stopped and
/// removed with the other.
fn across(env: &Env, start: Option<&Path>, later: Option<&Path>, name: &str) {
    rbox_at(env, start)
        .args(["run", "-d", "--name", name, "busybox", "sleep", "600"])
        .output()
        .success();
    let pid = inspect(|| rbox_at(env, start), name, ".State.Pid");
    let out = rbox_at(env, later)
        .args(["ps", "--format", "{{.Names}} {{.Status}}"])
        .output()
        .success();
    assert!(out.text().starts_with(&format!("{name} Up")), "{out}");
    let out = rbox_at(env, later)
        .args(["exec", name, "cat", "/proc/1/cmdline"])
        .output()
        .success();
    assert!(out.stdout.starts_with("sleep"), "{out}");
    rbox_at(env, later)
        .args(["stop", "-t", "1", name])
        .output()
        .success();
    assert!(!runs(&pid), "stop reported success, but init {pid} runs");
    assert_eq!(
        inspect(|| rbox_at(env, start), name, ".State.ExitCode"),
        "137"
    );
    rbox_at(env, later).args(["rm", name]).output().success();

    // rm -f of a running container from the other side
    rbox_at(env, start)
        .args(["run", "-d", "--name", name, "busybox", "sleep", "600"])
        .output()
        .success();
    let pid = inspect(|| rbox_at(env, start), name, ".State.Pid");
    rbox_at(env, later)
        .args(["rm", "-f", name])
        .output()
        .success();
    assert!(!runs(&pid), "rm -f reported success, but init {pid} runs");
}

/// The runtime directories of one user: a private `$XDG_RUNTIME_DIR`, and the shared-/tmp
/// fallback, which another user may have made first. Every test that uses the fallback
/// directory is here (it is one per uid on the machine), and it is removed afterwards.
#[test]
fn runtime_dir_confusion_and_a_hostile_fallback() {
    let other = if util::is_root() { other_user() } else { None };
    for_each_user("rundirs", |env| {
        env.import_busybox("busybox");
        let xdg = env.path("xdg");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
        env.give_to_user(&xdg);
        let fallback = PathBuf::from(format!("/tmp/rbox-run-{}", env.user.uid));
        let clear = || {
            if env.user.who != Who::Current {
                let _ = std::fs::remove_file(&fallback);
                let _ = std::fs::remove_dir_all(&fallback);
            }
        };
        clear();

        across(env, None, Some(&xdg), "unset-then-set");
        across(env, Some(&xdg), None, "set-then-unset");

        let Some(other) = &other else { return };
        let stranger = Env::new("rundirs-stranger", other);
        let theirs = stranger.path("theirs");
        stranger
            .cmd("mkdir")
            .args(["-m", "0777"])
            .arg(&theirs)
            .output()
            .success();
        let plant = |how: &str| {
            clear();
            match how {
                "symlink" => {
                    stranger
                        .cmd("ln")
                        .arg("-s")
                        .arg(&theirs)
                        .arg(&fallback)
                        .output()
                        .success();
                }
                "their dir" => {
                    stranger
                        .cmd("mkdir")
                        .args(["-m", "0777"])
                        .arg(&fallback)
                        .output()
                        .success();
                }
                _ => {
                    std::fs::create_dir(&fallback).unwrap();
                    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o777))
                        .unwrap();
                }
            }
        };
        let mut kinds = vec!["symlink", "their dir"];
        if env.user.who != Who::Root {
            kinds.push("root's dir");
        }
        for how in kinds {
            eprintln!("--- /tmp/rbox-run-{} is {how}", env.user.uid);
            plant(how);
            let rbox = || rbox_at(env, None);
            // the command's own status, and a record that says so
            rbox()
                .args(["run", "--name", "fg", "busybox", "sh", "-c", "exit 7"])
                .output()
                .code_is(7);
            assert_eq!(inspect(rbox, "fg", ".State.ExitCode"), "7");
            // a detached container is tracked: listed, stopped, removed
            rbox()
                .args(["run", "-d", "--name", "bg", "busybox", "sleep", "600"])
                .output()
                .success();
            let pid = inspect(rbox, "bg", ".State.Pid");
            assert!(runs(&pid), "{how}: detached init {pid} does not run");
            let out = rbox()
                .args(["ps", "--format", "{{.Names}}"])
                .output()
                .success();
            assert_eq!(out.text(), "bg", "{how}");
            rbox().args(["rm", "-f", "bg", "fg"]).output().success();
            assert!(!runs(&pid), "{how}: rm -f left init {pid} running");
            // nothing of ours went into the other user's directory
            let target = if how == "symlink" { &theirs } else { &fallback };
            assert!(
                util::tree(target).is_empty(),
                "{how}: {:?}",
                util::tree(target)
            );
            let m = std::fs::symlink_metadata(&fallback).unwrap();
            assert_eq!(m.file_type().is_symlink(), how == "symlink", "{how}");
        }
        clear();
    });
}
