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

#[test]
fn wait_prints_each_exit_code_once_the_container_stops() {
    for_each_user("wait", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "three", "busybox"])
            .args(["sh", "-c", "exit 3"])
            .output()
            .success();
        let created = create(env, "fresh", "true");
        // podman: "3", and "0" for a container that never ran
        let wait = |args: &[&str]| -> String {
            env.rbox().arg("wait").args(args).output().success().stdout
        };
        assert_eq!(wait(&["three", "fresh"]), "3\n0\n");
        // the grouped name; a condition other than stopped prints -1 (podman does)
        let out = env
            .rbox()
            .args(["container", "wait", "--condition=created"])
            .arg(&created)
            .output();
        assert_eq!(out.success().stdout, "-1\n");
        let out = wait(&[
            "--condition=exited",
            "--condition=created",
            "three",
            "fresh",
        ]);
        assert_eq!(out, "3\n-1\n");

        // a running container: wait blocks until it is killed, then prints 137
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "long", "busybox"])
            .args(["sleep", "600"])
            .output()
            .success();
        assert_eq!(wait(&["--condition=running", "long"]), "-1\n");
        let mut waiting = env.rbox().args(["wait", "-i", "10ms", "long"]).spawn();
        env.rbox().args(["kill", "long"]).output().success();
        assert_eq!(waiting.read_line().trim(), "137");
        waiting.wait().success();

        // every name is looked up first: nothing printed, 125 (podman: "no container with
        // name or ID "nosuch" found"); with --ignore, -1 for it
        let out = env.rbox().args(["wait", "three", "nosuch"]).output();
        assert_eq!(out.rbox_error().stdout, "");
        assert_eq!(wait(&["--ignore", "nosuch", "three"]), "-1\n3\n");
        let out = env
            .rbox()
            .args(["wait", "--condition=bogus", "three"])
            .output();
        assert!(out
            .rbox_error()
            .stderr
            .contains("unknown container state: bogus"));
        env.rbox()
            .args(["wait", "-i", "soon", "three"])
            .output()
            .rbox_error();
        env.rbox().arg("wait").output().rbox_error();
    });
}

/// A container between two runs of its restart policy has not stopped: as with Podman
/// (`--restart=on-failure:2` returns after the third run), wait returns after the last one.
#[test]
fn wait_outlasts_the_restart_policy() {
    for_each_user("wait_restart", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--restart=on-failure:2"])
            .args(["--name", "flaky", "busybox", "sh", "-c", "exit 1"])
            .output()
            .success();
        let out = env.rbox().args(["wait", "flaky"]).output().success();
        assert_eq!(out.stdout, "1\n");
        assert_eq!(env.field("flaky", ".RestartCount"), "2");
        assert_eq!(env.field("flaky", ".State.Status"), "exited");
    });
}

#[test]
fn rename_moves_the_name_and_frees_the_old_one() {
    for_each_user("rename", |env| {
        env.import_busybox("busybox");
        let id = create(env, "old", "true");
        create(env, "taken", "true");
        // podman rename prints nothing
        let out = env.rbox().args(["rename", "old", "new"]).output().success();
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
        assert_eq!(env.field(&id, ".Name"), "new");
        env.rbox()
            .args(["container", "exists", "old"])
            .output()
            .code_is(1);
        // the old name is free again; the same name is no change (podman: 0)
        create(env, "old", "true");
        env.rbox().args(["rename", "new", "new"]).output().success();
        // podman: "name taken already in use", "no container with name or ID", "names must
        // match [a-zA-Z0-9][a-zA-Z0-9_.-]*", all 125
        let out = env.rbox().args(["rename", "new", "taken"]).output();
        assert!(out.rbox_error().stderr.contains("already in use"));
        assert_eq!(env.field(&id, ".Name"), "new");
        env.rbox()
            .args(["rename", "nosuch", "x"])
            .output()
            .rbox_error();
        let out = env.rbox().args(["rename", "new", "bad name"]).output();
        assert!(out
            .rbox_error()
            .stderr
            .contains("[a-zA-Z0-9][a-zA-Z0-9_.-]*"));
        env.rbox().args(["rename", "new"]).output().rbox_error();

        // a running container: its monitor records the exit under the new name
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "busy", "busybox"])
            .args(["sleep", "600"])
            .output()
            .success();
        env.rbox()
            .args(["container", "rename", "busy", "renamed"])
            .output()
            .success();
        env.rbox()
            .args(["stop", "-t", "0", "renamed"])
            .output()
            .success();
        assert_eq!(env.field("renamed", ".State.Status"), "exited");
        assert_eq!(env.field("renamed", ".Name"), "renamed");
        env.rbox().args(["rm", "renamed"]).output().success();
    });
}

#[test]
fn cidfile_holds_the_id_and_is_never_overwritten() {
    for_each_user("cidfile", |env| {
        env.import_busybox("busybox");
        let dir = env.path("ids");
        env.cmd("mkdir").arg(&dir).output().success();
        let cid = dir.join("cid");
        let out = env
            .rbox()
            .args(["create", "--network=none", "--cidfile"])
            .arg(&cid)
            .args(["busybox", "true"])
            .output()
            .success();
        // the full id, without a newline (as podman writes it)
        let id = std::fs::read_to_string(&cid).unwrap();
        assert_eq!(id, out.text());
        // podman: "container id file exists. Ensure another container is not using it or
        // delete FILE", 125, and no container made
        for verb in ["create", "run"] {
            let out = env
                .rbox()
                .args([verb, "--network=none", "--cidfile"])
                .arg(&cid)
                .args(["busybox", "true"])
                .output();
            let want = format!(
                "Error: container id file exists. Ensure another container is not using it or delete {}\n",
                cid.display()
            );
            assert_eq!(out.rbox_error().stderr, want);
        }
        let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(out.lines().len(), 1, "{out}");
        assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
        // a create that fails leaves no id file behind
        let gone = dir.join("gone");
        env.rbox()
            .args(["create", "--network=none", "--cidfile"])
            .arg(&gone)
            .args(["nosuchimage", "true"])
            .args(["--pull", "never"])
            .output()
            .rbox_error();
        assert!(!gone.exists());

        // run -d, then stop, kill and rm by the file; they print the id
        let run = dir.join("run");
        env.rbox()
            .args(["run", "-d", "--network=none", "--cidfile"])
            .arg(&run)
            .args(["busybox", "sleep", "600"])
            .output()
            .success();
        let rid = std::fs::read_to_string(&run).unwrap();
        let by_file = |args: &[&str]| -> String {
            let mut c = env.rbox();
            c.args(args).arg("--cidfile").arg(&run);
            c.output().success().stdout
        };
        assert_eq!(by_file(&["kill", "-s", "CONT"]), format!("{rid}\n"));
        assert_eq!(by_file(&["stop", "-t", "0"]), format!("{rid}\n"));
        let both = by_file(&["rm", "--cidfile", cid.to_str().unwrap()]);
        assert_eq!(both, format!("{id}\n{rid}\n"));
        env.rbox()
            .args(["rm", "--cidfile"])
            .arg(dir.join("nonexistent"))
            .output()
            .rbox_error();
    });
}

#[test]
fn container_prune_removes_what_does_not_run_after_asking() {
    for_each_user("container_prune", |env| {
        env.import_busybox("busybox");
        let plain = create(env, "plain", "true");
        let labelled = env
            .rbox()
            .args([
                "create",
                "--network=none",
                "--label",
                "a=b",
                "--name",
                "labelled",
            ])
            .args(["busybox", "true"])
            .output()
            .success()
            .text();
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "up", "busybox"])
            .args(["sleep", "600"])
            .output()
            .success();
        // podman's question, on stdout; anything but y keeps everything
        let ask = "WARNING! This will remove all non running containers.\n\
                   Are you sure you want to continue? [y/N] ";
        let out = env
            .rbox()
            .args(["container", "prune"])
            .stdin("n\n")
            .output();
        assert_eq!(out.success().stdout, ask);
        env.rbox()
            .args(["container", "exists", "plain"])
            .output()
            .success();
        // y: the full id of each one removed
        let out = env
            .rbox()
            .args(["container", "prune", "--filter", "label=a=b"])
            .stdin("y\n")
            .output()
            .success();
        assert_eq!(out.stdout, format!("{ask}{labelled}\n"));
        let out = env.rbox().args(["container", "prune", "-f"]).output();
        assert_eq!(out.success().stdout, format!("{plain}\n"));
        env.rbox()
            .args(["container", "exists", "up"])
            .output()
            .success();
        // nothing left to remove: nothing printed
        let out = env.rbox().args(["container", "prune", "-f"]).output();
        assert_eq!(out.success().stdout, "");
        env.rbox()
            .args(["container", "prune", "-f", "--filter", "status=x"])
            .output()
            .rbox_error();
        env.rbox().args(["rm", "-f", "up"]).output().success();
    });
}

#[test]
fn image_prune_removes_dangling_or_unused_images() {
    for_each_user("image_prune", |env| {
        env.import_busybox("busybox");
        // two images under one name: the first loses it and dangles
        let mut ids = Vec::new();
        for (i, text) in ["one", "two"].iter().enumerate() {
            let dir = env.path(&format!("root{i}"));
            env.cmd("mkdir").arg(&dir).output().success();
            env.write(&format!("root{i}/f"), text);
            let tar = env.path(&format!("root{i}.tar"));
            env.cmd("tar")
                .arg("-C")
                .arg(&dir)
                .arg("-cf")
                .arg(&tar)
                .arg("f")
                .output()
                .success();
            let out = env
                .rbox()
                .arg("import")
                .arg(&tar)
                .arg("local")
                .output()
                .success();
            ids.push(out.text().trim_start_matches("sha256:").to_string());
        }
        let ask = "WARNING! This command removes all dangling images.\n\
                   Are you sure you want to continue? [y/N] ";
        let out = env.rbox().args(["image", "prune"]).stdin("n\n").output();
        assert_eq!(out.success().stdout, ask);
        let out = env.rbox().args(["image", "prune"]).stdin("y\n").output();
        assert_eq!(out.success().stdout, format!("{ask}{}\n", ids[0]));
        env.rbox()
            .args(["image", "exists", &ids[0]])
            .output()
            .code_is(1);
        env.rbox()
            .args(["image", "exists", "local"])
            .output()
            .success();
        // -a: every image no container uses; busybox is used
        create(env, "user", "true");
        let ask = "WARNING! This command removes all images without at least one container \
                   associated with them.\nAre you sure you want to continue? [y/N] ";
        let out = env
            .rbox()
            .args(["image", "prune", "-a"])
            .stdin("\n")
            .output();
        assert_eq!(out.success().stdout, ask);
        let out = env.rbox().args(["image", "prune", "-a", "-f"]).output();
        assert_eq!(out.success().stdout, format!("{}\n", ids[1]));
        env.rbox()
            .args(["image", "exists", "busybox"])
            .output()
            .success();
        let out = env.rbox().args(["image", "prune", "-af"]).output();
        assert_eq!(out.success().stdout, "");
    });
}
