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

/// The capability mask of `field` (CapEff, CapBnd) in /proc/self/status's text.
fn cap_mask(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// `--privileged` and `--cap-add all` grant what the bounding set of the caller holds (as
/// crun does) instead of failing with "set capabilities: Operation not permitted" where the
/// host's bounding set lacks one (root here lacks CAP_SYS_RESOURCE). Podman 4.3 as root ran
/// both with CapEff equal to the host's CapBnd.
#[test]
fn privileged_gets_the_bounding_set_it_has() {
    for_each_user("habits_caps_bounding", |env| {
        setup(env);
        // Root's own bounding set is the limit; an unprivileged user's rbox runs in a user
        // namespace of its own, whose bounding set is full (user_namespaces(7)).
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let all = (1u64 << (last + 1)) - 1;
        let expected = if env.user.uid == 0 {
            let host = env.cmd("cat").arg("/proc/self/status").output().success();
            cap_mask(&host.stdout, "CapBnd") & all
        } else {
            all
        };
        for opts in [&["--privileged"][..], &["--cap-add", "all"][..]] {
            let out = run(env, opts, &["cat", "/proc/self/status"]).success();
            assert_eq!(cap_mask(&out.stdout, "CapEff"), expected, "{out}");
            assert_eq!(cap_mask(&out.stdout, "CapBnd"), expected, "{out}");
        }
    });
}
