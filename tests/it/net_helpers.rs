//! The network helpers (pasta, slirp4netns) against the container's own failures: a
//! container whose init fails while its network is being made reports the init's error and
//! exit code, as it does without a network, never the helper's "child failed".

use crate::util::{for_each_user, have, require};

const BACKENDS: [&str; 2] = ["pasta", "slirp4netns"];

/// An init that fails early (a tmpfs mount refused, before the helper has joined its
/// namespace), a missing command and a bad working directory: the same error line and exit
/// code with each helper as with `--network=none`.
#[test]
fn an_early_init_failure_wins_over_the_network_helper() {
    if !require(
        BACKENDS.iter().all(|b| have(b)),
        "pasta and slirp4netns installed",
    ) {
        return;
    }
    for_each_user("net_init_fails", |env| {
        env.import_busybox("busybox");
        let cases: [(&[&str], i32, &str); 3] = [
            (
                &["--tmpfs", "/x:size=abc", "busybox", "true"],
                125,
                "mount tmpfs on `/x`",
            ),
            (&["busybox", "no-such-command"], 127, "no-such-command"),
            (
                &["--workdir", "/etc/passwd", "busybox", "true"],
                126,
                "working directory `/etc/passwd`",
            ),
        ];
        for (args, code, says) in cases {
            let none = env
                .rbox()
                .args(["run", "--rm", "--network=none"])
                .args(args)
                .output()
                .code_is(code);
            none.assert_clean_error();
            assert!(none.stderr.contains(says), "{none}");
            for net in BACKENDS {
                // several times: the init and the helper race
                for _ in 0..3 {
                    let out = env
                        .rbox()
                        .args(["run", "--rm", "--network", net])
                        .args(args)
                        .output()
                        .code_is(code);
                    assert_eq!(out.stderr, none.stderr, "{net}: {out}");
                }
            }
        }
        let left = env.rbox().args(["ps", "-aq"]).output().success();
        assert_eq!(left.stdout, "", "containers left behind");
    });
}
