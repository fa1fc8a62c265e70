//! What the start-up path defers or skips (issue 11): a `--rm` container is gone from the
//! store at once and its files deleted after rbox returns; `rbox oci run` of the bundle
//! `crun spec --rootless` writes (ambient capabilities that are not inheritable).

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
        // gone as rbox returns: no record, no directory, nothing in `ps -a`
        let ps = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(ps.stdout, "", "{ps}");
        let left = std::fs::read_dir(env.store().join("containers"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "container directories left");
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
