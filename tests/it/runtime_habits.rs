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
