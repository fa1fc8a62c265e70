//! What the start-up path defers or skips (issue 11): a `--rm` container (and one `rbox rm`
//! removes: issue 9) is gone from the store at once and its files deleted after rbox
//! returns; `rbox oci run` of the bundle `crun spec --rootless` writes (ambient
//! capabilities that are not inheritable).

use serde_json::json;

use crate::util::{self, RBOX};

/// The `*.rmcontainer` entries in the store's `tmp/`: removed containers not yet deleted.
fn pending(env: &util::Env) -> Vec<String> {
    std::fs::read_dir(env.store().join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".rmcontainer"))
                .collect()
        })
        .unwrap_or_default()
}

/// Gone as rbox returns: no record, no directory, nothing in `ps -a`.
fn gone_at_once(env: &util::Env) {
    let ps = env.rbox().args(["ps", "-a", "-q"]).output().success();
    assert_eq!(ps.stdout, "", "{ps}");
    let left = std::fs::read_dir(env.store().join("containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "container directories left");
}

#[test]
fn run_rm_is_gone_at_once_and_its_files_deleted_after() {
    util::for_each_user("startup_rm", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "busybox", "sh", "-c"])
            .arg("echo made >/made; cat /made")
            .output()
            .success();
        assert_eq!(out.stdout, "made\n", "{out}");
        gone_at_once(env);
        // and its files deleted afterwards, by the child rbox left behind
        util::eventually("the removed container's files are deleted", || {
            pending(env).is_empty()
        });
        // a name is free again at once
        env.rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--name",
                "again",
                "busybox",
                "true",
            ])
            .output()
            .success();
        env.rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--name",
                "again",
                "busybox",
                "true",
            ])
            .output()
            .success();
        util::eventually("every removed container's files are deleted", || {
            pending(env).is_empty()
        });
    });
}

#[test]
fn rm_is_gone_at_once_and_its_files_deleted_after() {
    util::for_each_user("startup_rm_verb", |env| {
        env.import_busybox("busybox");
        for name in ["one", "two"] {
            env.rbox()
                .args([
                    "run",
                    "--name",
                    name,
                    "--network=none",
                    "busybox",
                    "sh",
                    "-c",
                ])
                .arg("echo made >/made")
                .output()
                .success();
        }
        // both in one `rm`, whose output is its own (the child left behind holds no stdio)
        let out = env.rbox().args(["rm", "one", "two"]).output().success();
        assert_eq!(out.stdout, "one\ntwo\n", "{out}");
        gone_at_once(env);
        util::eventually("the removed containers' files are deleted", || {
            pending(env).is_empty()
        });
        // the names are free again at once
        env.rbox()
            .args([
                "create",
                "--name",
                "one",
                "--network=none",
                "busybox",
                "true",
            ])
            .output()
            .success();
        env.rbox().args(["rm", "one"]).output().success();
        util::eventually("every removed container's files are deleted", || {
            pending(env).is_empty()
        });
    });
}

#[test]
fn oci_run_skips_ambient_capabilities_that_are_not_inheritable() {
    util::for_each_user("startup_oci_ambient", |env| {
        let b = crate::ociruntime::bundle(env, "bundle", &["grep", "^CapAmb", "/proc/self/status"]);
        crate::ociruntime::edit(env, &b, |c| {
            // as `crun spec --rootless` writes them: ambient, but not inheritable
            let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
            c["process"]["capabilities"] = json!({
                "bounding": caps, "effective": caps, "permitted": caps,
                "inheritable": [], "ambient": caps
            });
        });
        let out = env
            .cmd(RBOX)
            .args(["oci", "--root"])
            .arg(env.path("oci-state"))
            .args(["run", "--bundle"])
            .arg(&b)
            .arg("amb")
            .output()
            .success();
        assert!(out.stdout.contains("CapAmb:\t0000000000000000"), "{out}");
    });
}

/// `rbox run` saves the container's `config.json` once its command runs, off the path to the
/// command (launch::stage_config): it is there when `run -d` returns, after an attached run
/// and after a command that could not start, and it is what `exec` and `start` run from.
#[test]
fn run_saves_config_json_once_the_command_runs() {
    util::for_each_user("startup_config", |env| {
        let _rm = util::RemoveAll(env);
        env.import_busybox("busybox");
        let args = |name: &str| -> serde_json::Value {
            let path = env.field(name, ".OCIConfigPath");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
            spec["process"]["args"].clone()
        };
        env.rbox()
            .args(["run", "-d", "--name", "d", "--network=none", "busybox"])
            .args(["sleep", "1000"])
            .output()
            .success();
        assert_eq!(args("d"), json!(["sleep", "1000"]));
        let out = env
            .rbox()
            .args(["exec", "d", "echo", "in"])
            .output()
            .success();
        assert_eq!(out.stdout, "in\n", "{out}");

        let out = env
            .rbox()
            .args([
                "run",
                "--name",
                "a",
                "--network=none",
                "busybox",
                "echo",
                "ran",
            ])
            .output()
            .success();
        assert_eq!(out.stdout, "ran\n", "{out}");
        assert_eq!(args("a"), json!(["echo", "ran"]));
        let again = env.rbox().args(["start", "-a", "a"]).output().success();
        assert_eq!(again.stdout, "ran\n", "{again}");

        env.rbox()
            .args([
                "run",
                "--name",
                "missing",
                "--network=none",
                "busybox",
                "/nonexistent",
            ])
            .output()
            .code_is(127);
        assert_eq!(args("missing"), json!(["/nonexistent"]));
    });
}

/// A run reads what cannot change while it runs once: its own id maps once per user
/// namespace it is in (the caller's, then rbox's; the container's init, cloned into the
/// same one, reads none), the image's config once although create and start both need it,
/// the kernel's last capability once although create, start and the init all need it.
/// Counted by strace, as root, in rbox's processes: the `rbox run` process itself (the
/// first in the trace: setpriv execs it) and all of them (rbox opens with O_CLOEXEC, the
/// container's `cat` without).
#[test]
fn run_reads_what_cannot_change_once() {
    util::for_each_user("startup_reads", |env| {
        env.import_busybox("busybox");
        let config = env.field("busybox", ".Id");
        let config = config.trim_start_matches("sha256:");
        let run = |traced: Option<&std::path::Path>| {
            let mut c = env.rbox();
            if let Some(file) = traced {
                c.strace(file, "trace=openat");
            }
            let out = c
                .args([
                    "run",
                    "--rm",
                    "--network=none",
                    "busybox",
                    "cat",
                    "/proc/self/uid_map",
                ])
                .output()
                .success();
            assert!(!out.stdout.trim().is_empty(), "{out}");
        };
        // the first run starts what later ones join (the pause process of a user with a range)
        run(None);
        let trace = env.dir.join("run.trace");
        run(Some(&trace));
        let text = std::fs::read_to_string(&trace).unwrap();
        let front = text.split_whitespace().next().expect("a traced call");
        let opens = |what: &str, front_only: bool| {
            text.lines()
                .filter(|l| !front_only || l.split_whitespace().next() == Some(front))
                .filter(|l| l.contains("openat(") && l.contains(what) && !l.contains("= -1"))
                .filter(|l| l.contains("O_CLOEXEC"))
                .count()
        };
        let namespaces = if env.user.who == util::Who::Root {
            1
        } else {
            2
        };
        for map in ["/proc/self/uid_map\"", "/proc/self/gid_map\""] {
            assert_eq!(opens(map, true), namespaces, "{map}: {text}");
            assert_eq!(opens(map, false), namespaces, "{map}: {text}");
        }
        let config = format!("/blobs/sha256/{config}\"");
        assert_eq!(opens(&config, false), 1, "{text}");
        assert_eq!(opens("/proc/sys/kernel/cap_last_cap\"", false), 1, "{text}");
    });
}

/// The mount points a start needs and an image lacks (busybox has no /proc, /sys, /dev or
/// /etc/hosts) come from the store's shared `mount-points/` layer below the image's: on
/// either overlay driver nothing is made in the container's upper directory for them, and
/// the container still sees them, its /etc files bound there.
#[test]
fn mount_points_come_from_a_shared_layer_not_the_upper() {
    util::for_each_user("startup_mountpoints", |env| {
        env.import_busybox("busybox");
        for driver in ["overlay", "fuse-overlay"] {
            mount_points_of(env, driver);
        }
    });
}

fn mount_points_of(env: &util::Env, driver: &str) {
    let out = env
        .rbox()
        .args(["run", "--name", "mp", "--network=none"])
        .args(["--storage-driver", driver, "busybox", "sh", "-c"])
        .arg("cat /etc/hostname; ls -d /proc/self /sys/kernel /dev/null")
        .output()
        .success();
    let id = env.inspect("mp", "{{.Id}}");
    assert_eq!(
        out.lines(),
        [&id[..12], "/dev/null", "/proc/self", "/sys/kernel"],
        "{out}"
    );
    let upper = std::path::PathBuf::from(env.inspect("mp", "{{.GraphDriver.Data.UpperDir}}"));
    assert_eq!(
        util::tree(&upper),
        Vec::<String>::new(),
        "made in the upper directory ({driver})"
    );
    let shared = env.store().join("mount-points");
    for p in [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ] {
        assert!(shared.join(p).exists(), "{p}");
    }
    // what the container itself wrote is there, and nothing else (commit, diff)
    env.rbox().args(["start", "-a", "mp"]).output().success();
    let diff = env.rbox().args(["diff", "mp"]).output().success();
    assert_eq!(diff.stdout, "", "{diff}");
    env.rbox().args(["rm", "mp"]).output().success();
}

/// The init is moved off rbox's CPU while it sets up (runtime/container.rs) and back before
/// its command runs: the command has the CPUs rbox was given, all of them or a `taskset`'s.
#[test]
fn the_command_runs_on_the_cpus_rbox_was_given() {
    util::for_each_user("startup_cpus", |env| {
        env.import_busybox("busybox");
        let allowed = |status: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no Cpus_allowed_list in\n{status}"))
        };
        let ours = allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
        let run = |pin: Option<&str>| {
            let mut c = env.rbox();
            c.args([
                "run",
                "--rm",
                "--network=none",
                "busybox",
                "cat",
                "/proc/self/status",
            ]);
            if let Some(cpu) = pin {
                c.pin_cpus(cpu);
            }
            allowed(&c.output().success().stdout)
        };
        assert_eq!(run(None), ours);
        // one CPU allowed: nothing to move to, and nothing widened
        let first = ours.split([',', '-']).next().unwrap().to_string();
        assert_eq!(run(Some(&first)), first);
    });
}

/// The loader maps libc alone for rbox (build.rs): libseccomp and libgcc's unwinder come from
/// their archives and the two libm functions rbox calls from src/mathsyms.rs, each shared
/// library being ~55-110 us of every exec of rbox. A new libm call would bring libm.so back.
#[test]
fn the_binary_needs_libc_alone() {
    if std::env::var_os("RBOX_SHARED_LIBS").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let out = std::process::Command::new("readelf")
        .args(["-d", RBOX])
        .output()
        .expect("run readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "{text}");
    for lib in &needed {
        assert!(
            lib.starts_with("libc.so") || lib.starts_with("ld-linux"),
            "rbox needs {lib}: {needed:?}"
        );
    }
}
