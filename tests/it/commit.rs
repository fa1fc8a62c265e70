//! `rbox commit` and `rbox export`: images from a container's changes (whiteouts and opaque
//! directories in the new layer, owners kept), the committed image runs with the changes,
//! `--change`, `-m`/`-a` in history and inspect, and export | import round trips.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{for_each_user, Env};

/// A stopped container `name` that added, changed and deleted files, made an opaque directory
/// (`/usr/sbin` removed and made again) and a hard link; with many ids, a file owned by 1:2.
fn changed_container(env: &Env, name: &str) {
    env.import_busybox("busybox");
    let chown = if env.user.has_many_ids() {
        "; chown 1:2 /owned"
    } else {
        ""
    };
    let script = format!(
        "echo hi > /new && echo changed > /etc/motd && rm /bin/ls && \
         rm -rf /usr/sbin && mkdir /usr/sbin && echo x > /usr/sbin/only && \
         ln /new /new2 && touch /owned{chown}"
    );
    env.rbox()
        .args(["run", "--network=none", "--name", name, "-e", "FOO=bar"])
        .args([
            "-w", "/tmp", "--label", "l1=v1", "busybox", "sh", "-c", &script,
        ])
        .output()
        .success();
}

/// The top layer's blob of image `image`, read from the store's documented layout.
fn top_layer_blob(env: &Env, image: &str) -> PathBuf {
    let digest = env.inspect(image, "{{.Digest}}");
    let blobs = env.store().join("blobs/sha256");
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(hex(&digest))).unwrap()).unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    blobs.join(hex(&top))
}

/// `tar tv` of a (compressed or plain) tar: `PERMS OWNER SIZE NAME` per entry, dates dropped.
fn listing(tar: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(tar)
        .arg("--numeric-owner")
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar -tvf `{}`", tar.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // perms owner size date time name...
            format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
        })
        .collect()
}

fn has_entry(list: &[String], name: &str) -> bool {
    list.iter().any(|l| l.ends_with(&format!(" {name}")))
}

#[test]
fn commit_keeps_additions_changes_and_deletions() {
    for_each_user("commit_changes", |env| {
        changed_container(env, "c");
        let out = env.rbox().args(["commit", "c", "img"]).output().success();
        let id = out.text();
        assert_eq!(id.len(), 64, "the id alone on stdout:\n{out}");
        assert!(out.stderr.contains("Writing manifest to image destination"));
        assert_eq!(env.inspect("img", "{{.Id}}"), id);

        // the layer: OCI whiteouts and the opaque marker, the new and changed files
        let layer = listing(&top_layer_blob(env, "img"));
        for want in [
            "bin/.wh.ls",
            "usr/sbin/.wh..wh..opq",
            "usr/sbin/only",
            "new",
            "etc/motd",
        ] {
            assert!(
                has_entry(&layer, want),
                "no `{want}` in the layer: {layer:?}"
            );
        }
        assert!(
            layer
                .iter()
                .any(|l| l.starts_with('h') && l.ends_with("new2 link to new")),
            "a hard link: {layer:?}"
        );
        // rbox's own mount points are not the container's changes
        assert!(!has_entry(&layer, "etc/hosts") && !has_entry(&layer, "etc/resolv.conf"));
        if env.user.has_many_ids() {
            assert!(
                layer
                    .iter()
                    .any(|l| l.contains(" 1/2 ") && l.ends_with(" owned")),
                "owner kept: {layer:?}"
            );
        }

        // the image runs with the changes, under the container's settings
        let seen = env
            .rbox()
            .args(["run", "--rm", "--network=none", "img", "sh", "-c"])
            .arg(
                "cat /new /etc/motd; test -e /bin/ls || echo gone; ls /usr/sbin; \
                 pwd; echo $FOO; stat -c %i /new /new2 | uniq | wc -l",
            )
            .output()
            .success()
            .text();
        assert_eq!(seen, "hi\nchanged\ngone\nonly\n/tmp\nbar\n1");
        assert_eq!(
            env.inspect("img", "{{json .Config.Labels}}"),
            r#"{"l1":"v1"}"#
        );
        let cmd = env.inspect("img", "{{json .Config.Cmd}}");
        assert!(cmd.starts_with(r#"["sh","-c","echo hi"#), "{cmd}");

        // diff of two images, and of a container with the image made of it
        let d = env.text(&["diff", "img", "busybox"]);
        for want in [
            "A /new",
            "A /etc/motd",
            "D /bin/ls",
            "A /usr/sbin/only",
            "D /usr/sbin/nologin",
        ] {
            assert!(d.lines().any(|l| l == want), "no `{want}` in:\n{d}");
        }
        assert!(!d.contains("/etc/hosts"), "{d}");
        let back = env.text(&["diff", "busybox", "img"]);
        assert!(back.lines().any(|l| l == "D /new") && back.lines().any(|l| l == "A /bin/ls"));
        assert_eq!(env.text(&["diff", "c", "img"]), "");

        // history: the base's entry and Podman's entry for a commit
        let hist = env.text(&["history", "--format", "{{.CreatedBy}}|{{.Comment}}", "img"]);
        let lines: Vec<&str> = hist.lines().collect();
        assert_eq!(lines.len(), 2, "{hist}");
        assert_eq!(lines[0], "/bin/sh|FROM localhost/busybox:latest");
    });
}

#[test]
fn commit_change_message_and_author() {
    for_each_user("commit_change", |env| {
        changed_container(env, "c");
        // Podman keeps messages to the docker format
        let e = env
            .rbox()
            .args(["commit", "-q", "-m", "msg", "c", "bad"])
            .output()
            .rbox_error();
        assert!(
            e.stderr
                .contains("messages are only compatible with the docker image format (-f docker)"),
            "{e}"
        );
        let id = env
            .rbox()
            .args([
                "commit",
                "-q",
                "-f",
                "docker",
                "-m",
                "my msg",
                "-a",
                "Me <me@x>",
            ])
            .args([
                "-c",
                r#"CMD ["/bin/echo","yo"]"#,
                "--change",
                "ENV A=b",
                "c",
                "img2",
            ])
            .output()
            .success();
        assert!(id.stderr.is_empty(), "-q prints only the id:\n{id}");
        assert_eq!(id.text().len(), 64);
        assert_eq!(env.inspect("img2", "{{.Author}}"), "Me <me@x>");
        assert_eq!(env.inspect("img2", "{{.Comment}}"), "my msg");
        assert_eq!(
            env.inspect("img2", "{{.ManifestType}}"),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        let run = |args: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(args)
                .output()
                .success()
                .text()
        };
        assert_eq!(run(&["img2"]), "yo");
        assert_eq!(run(&["img2", "sh", "-c", "echo $A $FOO"]), "b bar");
        let hist = env.text(&["history", "--format", "{{.CreatedBy}}|{{.Comment}}", "img2"]);
        assert_eq!(
            hist.lines().next(),
            Some("/bin/sh|FROM localhost/busybox:latest")
        );
        // an unknown instruction is refused, nothing made
        env.rbox()
            .args(["commit", "-q", "-c", "BOGUS x", "c", "img3"])
            .output()
            .rbox_error();
        env.rbox()
            .args(["image", "exists", "img3"])
            .output()
            .code_is(1);
        // --squash: one layer holding the whole root
        env.rbox()
            .args(["container", "commit", "-q", "--squash", "c", "flat"])
            .output()
            .success();
        assert_eq!(env.inspect("flat", "{{len .RootFS.Layers}}"), "1");
        assert_eq!(
            run(&["flat", "sh", "-c", "cat /new; ls /bin/ls || true"]),
            "hi"
        );
    });
}

#[test]
fn export_import_round_trip() {
    for_each_user("export_round_trip", |env| {
        changed_container(env, "c");
        let t1 = env.path("work/c.tar");
        env.rbox()
            .args(["export", "-o"])
            .arg(&t1)
            .arg("c")
            .output()
            .success();
        let first = listing(&t1);
        assert!(has_entry(&first, "new") && has_entry(&first, "usr/sbin/only"));
        assert!(
            !first.iter().any(|l| l.contains(".wh.")),
            "no whiteouts: {first:?}"
        );
        assert!(!has_entry(&first, "bin/ls") && !has_entry(&first, "usr/sbin/reboot"));
        if env.user.has_many_ids() {
            assert!(first
                .iter()
                .any(|l| l.contains(" 1/2 ") && l.ends_with(" owned")));
        }
        // import it and export a container of that image: the same files
        env.rbox()
            .arg("import")
            .arg(&t1)
            .arg("rt")
            .output()
            .success();
        env.rbox()
            .args(["create", "--network=none", "--name", "c2", "rt", "true"])
            .output()
            .success();
        let t2 = env.path("work/c2.tar");
        env.rbox()
            .args(["container", "export", "--output"])
            .arg(&t2)
            .arg("c2")
            .output()
            .success();
        assert_eq!(listing(&t2), first);
        // never to a terminal
        let e = env
            .rbox_on_terminal(24, 80, &["export", "c2"])
            .output()
            .code_is(125);
        assert!(e.text().contains("refusing to export to terminal"), "{e}");
    });
}

#[test]
fn commit_of_a_copy_driver_root_and_of_a_running_container() {
    for_each_user("commit_vfs", |env| {
        env.import_busybox("busybox");
        let vfs = || {
            let mut c = env.rbox();
            c.args(["--storage-driver", "vfs"]);
            c
        };
        vfs()
            .args(["run", "--network=none", "--name", "v", "busybox", "sh", "-c"])
            .arg("echo hi > /new && rm /bin/ls && rm -rf /usr/sbin && mkdir /usr/sbin && touch /usr/sbin/only")
            .output()
            .success();
        assert_eq!(env.inspect("v", "{{.Driver}}"), "vfs");
        // a copy keeps no record of changes: diff compares it with the image
        let d = env.text(&["diff", "v"]);
        for want in ["A /new", "D /bin/ls", "C /usr/sbin", "D /usr/sbin/nologin"] {
            assert!(d.lines().any(|l| l == want), "no `{want}` in:\n{d}");
        }
        assert!(
            !d.contains("/etc/hosts") && !d.contains("/bin/busybox"),
            "{d}"
        );
        vfs().args(["commit", "-q", "v", "vimg"]).output().success();
        let layer = listing(&top_layer_blob(env, "vimg"));
        // only the changes: the new file, the deletions as whiteouts, nothing unchanged
        assert!(
            has_entry(&layer, "new") && has_entry(&layer, "bin/.wh.ls"),
            "{layer:?}"
        );
        assert!(has_entry(&layer, "usr/sbin/.wh.nologin"), "{layer:?}");
        assert!(!has_entry(&layer, "bin/busybox") && !has_entry(&layer, "etc/passwd"));
        let seen = vfs()
            .args(["run", "--rm", "--network=none", "vimg", "sh", "-c"])
            .arg("cat /new; test -e /bin/ls || echo gone; ls /usr/sbin")
            .output()
            .success()
            .text();
        assert_eq!(seen, "hi\ngone\nonly");

        // --pause: frozen for the commit, running again after it
        env.rbox()
            .args([
                "run",
                "-d",
                "--network=none",
                "--name",
                "r",
                "busybox",
                "sh",
                "-c",
            ])
            .arg("echo up > /up; exec sleep 600")
            .output()
            .success();
        crate::util::eventually("the container wrote /up", || {
            env.rbox()
                .args(["exec", "r", "test", "-e", "/up"])
                .output()
                .code
                == 0
        });
        env.rbox()
            .args(["commit", "-q", "--pause", "r", "running"])
            .output()
            .success();
        assert_eq!(env.field("r", ".State.Status"), "running");
        let up = env
            .rbox()
            .args(["run", "--rm", "--network=none", "running", "cat", "/up"])
            .output()
            .success()
            .text();
        assert_eq!(up, "up");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "r"])
            .output()
            .success();
    });
}
