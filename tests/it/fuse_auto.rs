//! The FUSE overlay as the automatic driver (issue 12): a user without subordinate ids (a
//! single-id map) gets it for an image with files of other owners, and sees those owners with
//! no driver flag; the server runs outside the container, so its process list is the
//! command's alone (no `rbox-fuse`, no `rbox-init` reaper unless `--init` was asked), `rbox
//! exec`'s processes see the intended owners too, and nothing of it outlives the container
//! (`rm -f`, a killed monitor). Root and a user with a range keep kernel overlay, and an
//! explicit `--storage-driver=overlay` keeps it for anyone.

use std::path::Path;

use crate::owners::load_owners_image;
use crate::util::{eventually, for_each_user, Env, Who};

/// The driver each identity gets for `localhost/owners` with no flag.
fn expected_driver(env: &Env) -> &'static str {
    if env.user.has_many_ids() {
        "overlay"
    } else {
        "fuse-overlay"
    }
}

/// The pids of FUSE servers (comm `rbox-fuse`) of this test's store: a server is a fork of
/// the rbox that started the container, whose command line names the store (`--root`).
fn servers_of(env: &Env) -> Vec<i32> {
    let store = env.store().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if comm.trim() == "rbox-fuse" && String::from_utf8_lossy(&cmdline).contains(&store) {
            out.push(pid);
        }
    }
    out
}

/// Whether any process that names this test's store still sees an rbox FUSE mount.
fn fuse_mount_left(env: &Env) -> bool {
    let store = env.store().to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let p = Path::new("/proc").join(e.file_name());
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(&store)
            && std::fs::read_to_string(p.join("mountinfo"))
                .unwrap_or_default()
                .contains("rbox-fuse")
    })
}

fn ppid(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn fuse_auto_shows_the_image_owners_without_a_driver_flag() {
    for_each_user("fuse_auto_owners", |env| {
        load_owners_image(env);
        env.rbox()
            .args(["run", "-d", "--name", "c", "--network=none"])
            .args(["localhost/owners", "sleep", "1000"])
            .output()
            .success();
        assert_eq!(
            env.inspect("c", "{{.Driver}}"),
            expected_driver(env),
            "{}",
            env.user
        );
        let exec = |args: &[&str]| {
            env.rbox()
                .args(["exec", "c"])
                .args(args)
                .output()
                .success()
                .text()
        };
        // the command is PID 1, and the container's processes are its own
        assert_eq!(exec(&["cat", "/proc/1/comm"]), "sleep", "{}", env.user);
        let comms = exec(&["sh", "-c", "cat /proc/[0-9]*/comm"]);
        for name in ["rbox-fuse", "rbox-init"] {
            assert!(!comms.contains(name), "{}: {comms}", env.user);
        }
        let ps = exec(&["ps", "-o", "pid,comm"]);
        assert!(!ps.contains("rbox-"), "{}: {ps}", env.user);
        let top = env.rbox().args(["top", "c"]).output().success().text();
        assert!(!top.contains("rbox-"), "{}: {top}", env.user);
        // `rbox exec`'s processes see the image's owners (the supervisor's filter is theirs)
        assert_eq!(
            exec(&["stat", "-c", "%u:%g", "/home/u/f", "/srv/root-owned"]),
            "100:101\n0:0",
            "{}",
            env.user
        );
        // a chown made by exec persists across stop and start
        exec(&["chown", "200:300", "/home/u/g"]);
        env.rbox().args(["stop", "-t", "0", "c"]).output().success();
        if env.user.who == Who::NoSub {
            eventually("the FUSE server to exit with its container", || {
                servers_of(env).is_empty()
            });
        }
        env.rbox().args(["start", "c"]).output().success();
        assert_eq!(
            exec(&["stat", "-c", "%u:%g", "/home/u/g"]),
            "200:300",
            "{}",
            env.user
        );
        // `--init` asked: the reaper is PID 1, as on kernel overlay
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--init",
                "--network=none",
                "localhost/owners",
            ])
            .args(["cat", "/proc/1/comm"])
            .output()
            .success();
        assert_eq!(out.text(), "rbox-init", "{}", env.user);
        env.rbox().args(["rm", "-f", "c"]).output().success();
        eventually("no FUSE server or mount after rm -f", || {
            servers_of(env).is_empty() && !fuse_mount_left(env)
        });
    });
}

#[test]
fn fuse_auto_leaves_nothing_after_a_killed_monitor() {
    for_each_user("fuse_auto_killed", |env| {
        if env.user.who != Who::NoSub {
            // kernel overlay: there is no server to leave behind
            return;
        }
        load_owners_image(env);
        env.rbox()
            .args(["run", "-d", "--name", "k", "--network=none"])
            .args(["localhost/owners", "sleep", "1000"])
            .output()
            .success();
        let servers = servers_of(env);
        assert_eq!(servers.len(), 1, "one FUSE server: {servers:?}");
        // the server's parent is the container's monitor
        let monitor = ppid(servers[0]);
        assert!(monitor > 1, "the server's parent: {monitor}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        eventually(
            "no FUSE server or mount after the monitor was killed",
            || servers_of(env).is_empty() && !fuse_mount_left(env),
        );
        env.rbox().args(["rm", "-f", "k"]).output().success();
    });
}

#[test]
fn fuse_auto_keeps_an_explicit_kernel_overlay() {
    for_each_user("fuse_auto_explicit", |env| {
        load_owners_image(env);
        let out = env
            .rbox()
            .args([
                "--storage-driver=overlay",
                "run",
                "--name",
                "o",
                "--network=none",
            ])
            .args(["localhost/owners", "stat", "-c", "%u:%g", "/home/u/f"])
            .output()
            .success();
        assert_eq!(env.inspect("o", "{{.Driver}}"), "overlay", "{}", env.user);
        // kernel overlay shows the owner on disk: under a single-id map, the one id there is
        let want = if env.user.has_many_ids() {
            "100:101"
        } else {
            "0:0"
        };
        assert_eq!(out.text(), want, "{}", env.user);
        // the same from storage.conf
        let conf = env.write("storage.conf", "[storage]\ndriver = \"overlay\"\n");
        env.give_to_user(&conf);
        env.rbox()
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .args([
                "create",
                "--name",
                "s",
                "--network=none",
                "localhost/owners",
            ])
            .output()
            .success();
        assert_eq!(env.inspect("s", "{{.Driver}}"), "overlay", "{}", env.user);
        // busybox has files of other owners too (/home/tester is 1000's): the FUSE overlay
        // for a single-id map, kernel overlay for the others
        env.import_busybox("busybox");
        env.rbox()
            .args(["create", "--name", "b", "--network=none", "busybox", "true"])
            .output()
            .success();
        let driver = env.inspect("b", "{{.Driver}}");
        assert_eq!(driver, expected_driver(env), "{}", env.user);
    });
}
