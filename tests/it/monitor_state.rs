//! What a detached container's state reads while its monitor records the exit: between the
//! moment its command is gone and the moment the monitor has written the exit code (it stops
//! the network first), `ps` and `inspect` must not guess a kill (`Exited (137)`); a monitor
//! that is killed itself still leaves the container recorded as exited.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use crate::util::{self, for_each_user, Env};

/// Let the container blocked reading fifo `fifo` go on: write it a line once it has opened it
/// (polled, with a deadline).
fn release(fifo: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut f = loop {
        // ENXIO until a reader has the fifo open
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => break f,
            Err(e) => {
                assert!(Instant::now() < deadline, "open `{}`: {e}", fifo.display());
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    f.write_all(b"go\n").unwrap();
}

/// Start a container that exits 3 once released, release it, and read its state in a tight
/// loop (`ps -a` and `inspect` in turn) until it reads exited: it must never read 137.
fn one_round(env: &Env, name: &str, net: &[&str]) {
    let dir = env.path(&format!("{name}-w"));
    std::fs::create_dir(&dir).unwrap();
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let vol = format!("{}:/w", dir.display());
    env.rbox()
        .args(["run", "-d", "--name", name, "-v", &vol])
        .args(net)
        .args(["busybox", "sh", "-c", "read x </w/fifo; exit 3"])
        .output()
        .success();
    release(&fifo);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut seen_exited = false;
    loop {
        let ps = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .output()
            .success()
            .text();
        let line = ps
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from ps -a: {ps}"))
            .to_string();
        let state = env.inspect(name, "{{.State.Status}} {{.State.ExitCode}}");
        assert!(
            !line.contains("137") && state != "exited 137",
            "{name} read as killed while its monitor recorded the exit: ps `{line}`, \
             inspect `{state}` (after {seen:?})"
        );
        // running, then exited with its code, never back (inspect runs after ps)
        let exited = (line.contains("Exited"), state.starts_with("exited"));
        assert!(
            state.starts_with("running") || state == "exited 3",
            "inspect `{state}` (after {seen:?})"
        );
        assert!(!exited.0 || exited.1, "ps `{line}`, then inspect `{state}`");
        assert!(
            !seen_exited || exited.0,
            "{name} read as running again: ps `{line}` (after {seen:?})"
        );
        seen_exited |= exited.1;
        if exited.0 {
            assert!(line.contains("Exited (3)"), "{line}");
            break;
        }
        seen.push(line);
        assert!(
            Instant::now() < deadline,
            "{name} still not exited after 20 s: {seen:?}"
        );
    }
    env.rbox().args(["rm", name]).output().success();
}

#[test]
fn exit_being_recorded_is_never_read_as_killed() {
    for_each_user("monexit", |env| {
        env.import_busybox("busybox");
        for round in 0..20 {
            one_round(env, &format!("ex{round}"), &["--network=none"]);
        }
    });
}

/// With a published port the monitor stops its network helper before it records the exit
/// (20-30 ms that the port must be freed in): a wider window.
#[test]
fn exit_being_recorded_with_a_published_port_is_never_read_as_killed() {
    if !util::require(util::have("slirp4netns"), "slirp4netns is not installed") {
        return;
    }
    for_each_user("monexitnet", |env| {
        env.import_busybox("busybox");
        // two ports the kernel finds free, each used by every other round: a port in use
        // by any other process (a fixed number in the ephemeral range was, once) is not
        // what this test is about
        let ports = [crate::util::free_port(), crate::util::free_port()];
        for round in 0..10 {
            let p = format!("{}:80", ports[round % 2]);
            one_round(
                env,
                &format!("exn{round}"),
                &["--network=slirp4netns", "-p", &p],
            );
        }
    });
}

#[test]
fn a_killed_rm_container_is_removed() {
    // Podman: `kill` of a `run -d --rm` container, and a `stop` that ends in SIGKILL, remove
    // it; the SIGKILL ends rbox's monitor too, so the killer does the monitor's removal
    for_each_user("monitor_kill_rm", |env| {
        env.import_busybox("busybox");
        for how in [&["kill"][..], &["stop", "-t", "0"][..]] {
            env.rbox()
                .args([
                    "run",
                    "-d",
                    "--rm",
                    "--network=none",
                    "--name",
                    "k",
                    "busybox",
                ])
                .args(["sleep", "1000"])
                .output()
                .success();
            env.rbox().args(how).arg("k").output().success();
            let left = env.rbox().args(["ps", "-a", "-q"]).output().success();
            assert_eq!(left.stdout, "", "{how:?}: {left}");
            env.rbox()
                .args(["container", "exists", "k"])
                .output()
                .code_is(1);
        }
    });
}

#[test]
fn exec_right_after_restart_runs_in_the_new_root() {
    // `restart` returns, and `exec` joins, only once the new init runs the command: before,
    // its pivot_root could move the exec's root along (CI saw "executable file
    // `/usr/bin/sh` not found": found on the host's root, then gone)
    for_each_user("monitor_restart_exec", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "r", "busybox"])
            .args(["sleep", "1000"])
            .output()
            .success();
        for _ in 0..10 {
            env.rbox()
                .args(["restart", "-t", "0", "r"])
                .output()
                .success();
            let out = env
                .rbox()
                .args([
                    "exec",
                    "r",
                    "sh",
                    "-c",
                    "cat /proc/1/cmdline; echo; test -x /bin/busybox && echo in",
                ])
                .output()
                .success();
            assert_eq!(out.text(), "sleep\u{0}1000\u{0}\nin", "{out}");
        }
        env.rbox().args(["rm", "-f", "r"]).output().success();
    });
}

#[test]
fn stop_of_a_restarting_container_is_final() {
    // `rbox stop` of a `--restart=always` container whose command keeps failing, at moments
    // spread over its cycle: while it runs, while its monitor records the exit, while it
    // waits out the restart delay. CI saw the stop do nothing when it found the command gone
    // but read a record that still said running: the monitor went on restarting it.
    for_each_user("monitor_stop_restarting", |env| {
        env.import_busybox("busybox");
        for round in 0..6u64 {
            let name = format!("c{round}");
            env.rbox()
                .args(["run", "-d", "--network=none", "--restart=always"])
                .args(["--name", &name, "busybox", "sh", "-c", "sleep 0.05; exit 1"])
                .output()
                .success();
            util::eventually("restarted once", || {
                env.field(&name, ".RestartCount") != "0"
            });
            std::thread::sleep(Duration::from_millis(round * 29));
            env.rbox().args(["stop", &name]).output().success();
            let count = env.field(&name, ".RestartCount");
            std::thread::sleep(Duration::from_millis(600));
            assert_eq!(
                env.field(&name, ".RestartCount"),
                count,
                "{name}: stop is final"
            );
            assert_eq!(env.field(&name, ".State.Status"), "exited", "{name}");
            env.rbox().args(["rm", &name]).output().success();
        }
    });
}
