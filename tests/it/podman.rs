//! Round trips with the real Podman (and skopeo), both ways: what `podman save` writes rbox
//! loads and runs; what `rbox save` writes podman loads and runs, and skopeo reads. Runs as root
//! and as the user with a subordinate range (rootless podman needs one), each with its own
//! podman storage and a containers.conf that suits this machine (no systemd, file events, the
//! hard NOFILE limit of 20000; see PLATFORM.md).

use std::path::PathBuf;

use crate::fixtures;
use crate::util::{for_each_user, have, require, Cmd, Env, Who};

/// containers.conf's `[engine]` for the test's podman: no systemd and no journald on this
/// machine kind.
const ENGINE_CONF: &str = "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";

/// Podman with its own storage for one test, run as the test's user.
pub struct Podman<'a> {
    env: &'a Env,
    conf: PathBuf,
    /// Podman refuses a runroot longer than 50 characters: a short dir of its own under /tmp.
    runroot: tempfile::TempDir,
}

impl<'a> Podman<'a> {
    /// No default ulimits: see [`Podman::run`].
    pub fn new(env: &'a Env) -> Podman<'a> {
        Podman::with_containers_keys(env, "default_ulimits = []\n")
    }

    /// Podman whose containers.conf has these `[containers]` keys (TOML lines).
    pub fn with_containers_keys(env: &'a Env, keys: &str) -> Podman<'a> {
        let conf = env.write(
            "podman-containers.conf",
            format!("[containers]\n{keys}{ENGINE_CONF}"),
        );
        let runroot = tempfile::Builder::new()
            .prefix("rbp-")
            .tempdir_in("/tmp")
            .unwrap();
        env.give_to_user(runroot.path());
        Podman { env, conf, runroot }
    }

    pub fn cmd(&self) -> Cmd {
        let mut c = self.env.cmd("podman");
        c.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(self.env.path("podman-store"))
            .arg("--runroot")
            .arg(self.runroot.path())
            .args(["--storage-driver", "vfs"]);
        c
    }

    /// `podman run --rm --network=none --ulimit host IMAGE ARGS...`. Podman raises NOFILE and,
    /// as root, NPROC for every container; root here lacks CAP_SYS_RESOURCE (PLATFORM.md), so
    /// crun's setrlimit fails even for equal values. `--ulimit host` keeps the caller's limits.
    pub fn run(&self, image: &str, args: &[&str]) -> Cmd {
        let mut c = self.cmd();
        c.args(["run", "--rm", "--network=none", "--ulimit", "host", image])
            .args(args);
        c
    }
}

pub fn prerequisites() -> bool {
    require(
        have("podman"),
        "podman is not installed (apt-get install podman)",
    ) && require(
        have("skopeo"),
        "skopeo is not installed (apt-get install skopeo)",
    )
}

pub fn podman_users(env: &Env) -> bool {
    // Rootless podman needs a subordinate id range; the user without one is rbox-only.
    matches!(env.user.who, Who::Root | Who::Sub)
        || (env.user.who == Who::Current && env.user.has_many_ids())
}

#[test]
fn podman_save_then_rbox_load_and_run() {
    if !prerequisites() {
        return;
    }
    for_each_user("podman_to_rbox", |env| {
        if !podman_users(env) {
            return;
        }
        let p = Podman::new(env);
        let tar = env.copy_in(&fixtures::busybox_rootfs_tar(), "busybox.tar");
        p.cmd()
            .arg("import")
            .arg(&tar)
            .arg("localhost/pbox:1")
            .output()
            .success();
        for (format, file) in [
            ("docker-archive", "p.docker.tar"),
            ("oci-archive", "p.oci.tar"),
        ] {
            let path = env.path(file);
            p.cmd()
                .args(["save", "--format", format, "-o"])
                .arg(&path)
                .arg("localhost/pbox:1")
                .output()
                .success();
            env.rbox()
                .arg("load")
                .arg("-i")
                .arg(&path)
                .output()
                .success();
            let out = env
                .rbox()
                .args(["run", "--rm", "localhost/pbox:1", "echo", "from-podman"])
                .output()
                .success();
            assert_eq!(out.text(), "from-podman", "{format}");
            env.rbox()
                .args(["rmi", "localhost/pbox:1"])
                .output()
                .success();
        }
    });
}

#[test]
fn rbox_save_then_podman_load_and_run() {
    if !prerequisites() {
        return;
    }
    for_each_user("rbox_to_podman", |env| {
        if !podman_users(env) {
            return;
        }
        let p = Podman::new(env);
        env.load(&fixtures::helper_docker_archive()).success();
        env.load(&fixtures::multiid_oci_archive()).success();
        for (format, file) in [
            ("docker-archive", "r.docker.tar"),
            ("oci-archive", "r.oci.tar"),
        ] {
            let path = env.path(file);
            env.rbox()
                .args(["save", "--format", format, "-o"])
                .arg(&path)
                .arg("helper")
                .output()
                .success();
            // skopeo reads what rbox wrote.
            let out = env
                .skopeo()
                .arg("inspect")
                .arg("--config")
                .arg(format!("{format}:{}", path.display()))
                .output()
                .success();
            assert!(
                out.stdout.contains("/helper"),
                "skopeo sees the entrypoint:\n{out}"
            );

            p.cmd().arg("load").arg("-i").arg(&path).output().success();
            let out = p
                .run("localhost/helper:latest", &["args", "from-rbox"])
                .output()
                .success();
            assert_eq!(out.text(), "from-rbox", "{format}");
            p.cmd()
                .args(["rmi", "-f", "localhost/helper:latest"])
                .output()
                .success();
        }
        // Ownership and whiteouts survive the trip into podman. Only as root: the image holds a
        // file owned by 100000, which rootless podman refuses (it does not fold ids as rbox does).
        if env.user.who != Who::Root {
            return;
        }
        let path = env.path("multiid.tar");
        env.rbox()
            .args(["save", "-o"])
            .arg(&path)
            .arg("multiid")
            .output()
            .success();
        p.cmd().arg("load").arg("-i").arg(&path).output().success();
        let out = p
            .run("localhost/multiid:latest", &["sh", "-c"])
            .arg("stat -c '%u:%g' /data/tester-file; ls /data/opq; ls /data/gone 2>/dev/null || echo gone")
            .output()
            .success();
        assert_eq!(out.text(), "1000:1000\nc\ngone");
    });
}

#[test]
fn skopeo_copies_into_an_archive_rbox_loads() {
    if !prerequisites() {
        return;
    }
    for_each_user("skopeo_to_rbox", |env| {
        let src = env.copy_in(&fixtures::helper_oci_archive(), "helper.oci.tar");
        let dst = env.path("helper.from-skopeo.tar");
        env.skopeo()
            .arg("copy")
            .arg(format!("oci-archive:{}", src.display()))
            .arg(format!(
                "docker-archive:{}:localhost/from-skopeo:1",
                dst.display()
            ))
            .output()
            .success();
        env.rbox()
            .arg("load")
            .arg("-i")
            .arg(&dst)
            .output()
            .success();
        let out = env
            .rbox()
            .args(["run", "--rm", "from-skopeo:1", "args", "ok"])
            .output()
            .success();
        assert_eq!(out.text(), "ok");
    });
}
