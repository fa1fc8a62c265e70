//! Podman's global options, its configuration files and the `rbox system` group (issue 9).
//! Where the text matters, the expected output was observed with podman 4.3.1 run as the test
//! user on this machine (with a store of its own) and is hard-coded here.

use crate::util::{for_each_user, Env};

fn text(env: &Env, args: &[&str]) -> String {
    env.rbox().args(args).output().success().text()
}

/// The global options rbox cannot honour are refused in one line that says why; the ones it
/// can are accepted; an option given twice takes the last value, as in Podman.
#[test]
fn global_flags_accepted_and_refused_clearly() {
    for_each_user("system_global_flags", |env| {
        env.import_busybox("bb");
        let rbox = std::fs::canonicalize(crate::util::RBOX).unwrap();
        for ok in [
            vec!["--runtime", "rbox"],
            vec!["--runtime", rbox.to_str().unwrap()],
            vec!["--events-backend", "file"],
            vec!["--events-backend", "none"],
            vec!["--cgroup-manager", "cgroupfs"],
            vec!["--tmpdir", "/tmp"],
            vec!["--storage-opt", ""],
            vec!["--log-level", "debug", "--log-level", "error"],
        ] {
            let out = env
                .rbox()
                .args(&ok)
                .args(["images", "-q"])
                .output()
                .success();
            assert_eq!(out.lines().len(), 1, "{out}");
            assert!(out.stderr.is_empty(), "{ok:?} logged: {out}");
        }
        for (bad, why) in [
            (vec!["--runtime", "crun"], "unsupported OCI runtime `crun`"),
            (
                vec!["--runtime-flag", "debug"],
                "unsupported runtime flag `debug`",
            ),
            (
                vec!["--events-backend", "journald"],
                "rbox writes no journal",
            ),
            // Podman's text for a value it does not know
            (
                vec!["--events-backend", "bogus"],
                "configuring runtime: \"bogus\" is not a valid events backend: invalid argument",
            ),
            (
                vec!["--cgroup-manager", "systemd"],
                "rbox does not talk to systemd",
            ),
            (
                vec!["--storage-opt", "overlay.size=1G"],
                "unsupported storage option",
            ),
            (vec!["--url", "unix:///x"], "rbox has no remote service"),
            (vec!["--connection", "x"], "rbox has no remote service"),
            (vec!["--remote"], "rbox has no remote service"),
            (vec!["-r"], "rbox has no remote service"),
        ] {
            let out = env.rbox().args(&bad).args(["images"]).output().rbox_error();
            assert!(out.stderr.contains(why), "{bad:?}: {out}");
            assert!(out.stdout.is_empty(), "{out}");
        }
        // --noout: nothing on stdout, the exit status kept
        let out = env.rbox().args(["--noout", "images"]).output().success();
        assert_eq!(out.stdout, "", "{out}");
        let out = env.rbox().args(["--noout", "rmi", "nosuch"]).output();
        assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{out}");
        // ... but an attached container's output still shows, as Podman's
        let out = env
            .rbox()
            .args([
                "--noout",
                "run",
                "--rm",
                "--network=none",
                "bb",
                "echo",
                "hi",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "hi");
        // the last value wins, in subcommands too
        assert_eq!(
            text(
                env,
                &["images", "--format", "x", "--format", "{{.Repository}}"]
            ),
            "localhost/bb"
        );
    });
}
