//! A container's teardown off rbox's exit path (issues 9 and 11): its mount namespace is held
//! by rbox while the init exits, so that the unmounting of its tree happens in the child rbox
//! leaves behind (which deletes a `--rm` container's files too). Checked here: nothing is
//! left once that child is done (no process or descriptor holding the namespace, no files),
//! for the kernel overlay and the FUSE overlay, attached and detached, and after `stop -t 0`.

use crate::util::{self, Env};

/// Processes that are in, or hold a descriptor of, the mount namespace `ns` (as
/// `readlink /proc/self/ns/mnt` names it: `mnt:[N]`), zombies aside.
fn holders(ns: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let link = |p: std::path::PathBuf| {
            std::fs::read_link(p).is_ok_and(|l| l.as_os_str() == std::ffi::OsStr::new(ns))
        };
        let member = link(format!("/proc/{pid}/ns/mnt").into());
        let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.flatten().any(|f| link(f.path())))
            .unwrap_or(false);
        if member || holds {
            v.push(pid);
        }
    }
    v
}

/// The `*.rmcontainer` entries in the store's `tmp/`: removed containers not yet deleted.
fn pending(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.store().join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".rmcontainer"))
                .collect()
        })
        .unwrap_or_default()
}

/// Once `rbox run --rm` has returned (the container already gone from `ps -a`), its mount
/// namespace and its files go too.
fn all_gone(env: &Env, ns: &str) {
    let ps = env.rbox().args(["ps", "-a", "-q"]).output().success();
    assert_eq!(ps.stdout, "", "{ps}");
    util::eventually(
        &format!("no process holds the mount namespace {ns}"),
        || holders(ns).is_empty(),
    );
    util::eventually("the removed container's files are deleted", || {
        pending(env).is_empty()
    });
}

fn run_rm(env: &Env, driver: Option<&str>) {
    let mut c = env.rbox();
    c.args(driver);
    let out = c
        .args(["run", "--rm", "--network=none", "busybox", "sh", "-c"])
        .arg("echo x >/written; readlink /proc/self/ns/mnt")
        .output()
        .success();
    let ns = out.text();
    assert!(ns.starts_with("mnt:["), "{out}");
    all_gone(env, &ns);
}

#[test]
fn run_rm_mount_namespace_goes_after_rbox_returns() {
    util::for_each_user("teardown_rm", |env| {
        env.import_busybox("busybox");
        // the user's default driver (kernel overlay, or the FUSE overlay for rboxnosub)
        run_rm(env, None);
        // the container's exit status still comes through
        env.rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "busybox",
                "sh",
                "-c",
                "exit 7",
            ])
            .output()
            .code_is(7);
        util::eventually("the removed container's files are deleted", || {
            pending(env).is_empty()
        });
    });
}

#[test]
fn run_rm_on_the_fuse_overlay_leaves_no_server_nor_mount() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    util::for_each_user("teardown_fuse", |env| {
        env.import_busybox("busybox");
        run_rm(env, Some("--storage-driver=fuse-overlay"));
    });
}

#[test]
fn detached_run_rm_mount_namespace_goes_after_stop() {
    util::for_each_user("teardown_detached", |env| {
        env.import_busybox("busybox");
        // (`--init`: its reaper passes the stop signal on, and the container exits by itself,
        // its monitor recording and removing it)
        env.rbox()
            .args([
                "run",
                "-d",
                "--rm",
                "--init",
                "--name",
                "d",
                "--network=none",
                "busybox",
                "sleep",
                "600",
            ])
            .output()
            .success();
        let pid = env.inspect("d", "{{.State.Pid}}");
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        env.rbox().args(["stop", "d"]).output().success();
        util::eventually("the stopped `--rm` container is removed", || {
            env.rbox()
                .args(["ps", "-a", "-q"])
                .output()
                .success()
                .stdout
                .is_empty()
        });
        all_gone(env, &ns);
    });
}

#[test]
fn stop_kills_the_init_and_the_mount_namespace_goes_after() {
    util::for_each_user("teardown_stop", |env| {
        env.import_busybox("busybox");
        // (no `--init`: the shell as pid 1 ignores SIGTERM, and `-t 0` kills it at once)
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "s",
                "--network=none",
                "busybox",
                "sleep",
                "600",
            ])
            .output()
            .success();
        let pid = env.inspect("s", "{{.State.Pid}}");
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        env.rbox().args(["stop", "-t", "0", "s"]).output().success();
        // recorded when `stop` returns: killed, by SIGKILL (as Podman records it)
        assert_eq!(
            env.inspect("s", "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 137"
        );
        let ps = env.rbox().args(["ps", "-q"]).output().success();
        assert_eq!(ps.stdout, "", "{ps}");
        util::eventually(
            &format!("no process holds the mount namespace {ns}"),
            || holders(&ns).is_empty(),
        );
        // it starts again, and `rm` removes it
        env.rbox().args(["start", "s"]).output().success();
        env.rbox().args(["rm", "-f", "s"]).output().success();
        all_gone(env, &ns);
    });
}
