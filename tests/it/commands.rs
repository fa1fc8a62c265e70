//! The small container and image commands scripts call: `container exists`, `image exists`,
//! `wait`, `rename`, `container prune`, `image prune`, and `--cidfile`. Texts and exit codes
//! are the ones Podman 4.3 gives for the same arguments (observed, quoted in each test).

use crate::util::{for_each_user, Env};

/// `rbox create` a container `name` that runs `sh -c script`; its id.
fn create(env: &Env, name: &str, script: &str) -> String {
    env.rbox()
        .args(["create", "--network=none", "--name", name, "busybox"])
        .args(["sh", "-c", script])
        .output()
        .success()
        .text()
}

#[test]
fn exists_answers_with_the_exit_status_alone() {
    for_each_user("exists", |env| {
        env.import_busybox("busybox");
        let id = create(env, "there", "true");
        // podman container exists: 0 and nothing printed if it does, 1 if not
        for c in ["there", &id, &id[..12]] {
            let out = env.rbox().args(["container", "exists", c]).output();
            let out = out.success();
            assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
        }
        let out = env.rbox().args(["container", "exists", "nosuch"]).output();
        let out = out.code_is(1);
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
        env.rbox()
            .args(["container", "exists", "--external", "there"])
            .output()
            .success();
        for i in ["busybox", "localhost/busybox:latest"] {
            env.rbox().args(["image", "exists", i]).output().success();
        }
        let out = env.rbox().args(["image", "exists", "nosuch"]).output();
        let out = out.code_is(1);
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
        // a container is not an image, and the reverse
        env.rbox()
            .args(["image", "exists", "there"])
            .output()
            .code_is(1);
        env.rbox()
            .args(["container", "exists", "busybox"])
            .output()
            .code_is(1);
        // usage: one argument (podman: "accepts 1 arg(s), received 0", 125); no top level verb
        env.rbox()
            .args(["container", "exists"])
            .output()
            .rbox_error();
        env.rbox()
            .args(["container", "exists", "a", "b"])
            .output()
            .rbox_error();
        env.rbox().args(["exists", "there"]).output().rbox_error();
    });
}
