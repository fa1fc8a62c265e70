//! `rbox cp`, `rbox diff`, `rbox mount`/`unmount`: Podman's landing rules and texts, copies
//! that stay inside the container whatever its symlinks say, diffs from the upper layer.

use crate::util::{for_each_user, Env};

fn exec(env: &Env, name: &str, script: &str) -> String {
    env.rbox()
        .args(["exec", name, "sh", "-c", script])
        .output()
        .success()
        .text()
}

fn start(env: &Env, name: &str, script: &str) {
    env.import_busybox("busybox");
    env.rbox()
        .args(["run", "-d", "--network=none", "--name", name, "busybox"])
        .args(["sh", "-c", &format!("{script}; exec sleep 600")])
        .output()
        .success();
    // the script has run once its marker exists
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env
        .rbox()
        .args(["exec", name, "test", "-e", "/ready"])
        .output()
        .code
        != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "container never got ready"
        );
    }
}

#[test]
fn cp_follows_podmans_rules_running_and_stopped() {
    for_each_user("cp_rules", |env| {
        start(env, "c", "mkdir /cd && echo c > /cd/cf && touch /ready");
        env.write("work/f", "hi\n");
        env.write("work/d/sub/g", "in\n");
        let w = |rel: &str| env.path(&format!("work/{rel}")).display().to_string();
        let cp = |a: &str, b: &str| env.rbox().args(["cp", a, b]).output();

        // into a directory under its own name, or as a new name; a directory twice nests
        cp(&w("f"), "c:/tmp/").success();
        cp(&w("f"), "c:/tmp/newname").success();
        cp(&w("d"), "c:/tmp/dd").success();
        cp(&w("d"), "c:/tmp/dd").success();
        cp(&format!("{}/.", w("d")), "c:/tmp/ee").success();
        let found = exec(env, "c", "cd /tmp && find . | sort | tr '\\n' ' '");
        assert_eq!(
            found,
            ". ./dd ./dd/d ./dd/d/sub ./dd/d/sub/g ./dd/sub ./dd/sub/g ./ee ./ee/sub \
             ./ee/sub/g ./f ./newname "
        );
        // copied in: owned by container root, content intact
        assert_eq!(
            exec(env, "c", "stat -c '%u:%g' /tmp/newname; cat /tmp/newname"),
            "0:0\nhi"
        );

        // Podman's errors
        let e = cp(&w("f"), "c:/nodir/x").rbox_error();
        assert!(
            e.stderr.contains(
                "\"/nodir/x\" could not be found on container c: no such file or directory"
            ),
            "{e}"
        );
        let e = cp(&w("d"), "c:/tmp/ff/").rbox_error();
        assert!(e.stderr.contains("\"/tmp/ff/\" could not be found"), "{e}");
        let e = cp(&w("d"), "c:/cd/cf").rbox_error();
        assert!(
            e.stderr
                .contains("destination must be a directory when copying a directory"),
            "{e}"
        );
        let e = cp(&w("nosuch"), "c:/tmp").rbox_error();
        assert!(e.stderr.contains("could not be found on the host"), "{e}");
        let e = cp("nosuchc:/x", &w("")).rbox_error();
        assert!(
            e.stderr.contains("container \"nosuchc\" does not exist"),
            "{e}"
        );
        let e = cp(&w("f"), &w("g")).rbox_error();
        assert!(e.stderr.contains("name or ID cannot be empty"), "{e}");

        // out of the container
        env.cmd("mkdir").arg(w("out")).output().success();
        cp("c:/cd/cf", &format!("{}/", w("out"))).success();
        cp("c:/cd", &w("out")).success();
        cp("c:/cd/.", &w("out/contents")).success();
        assert_eq!(std::fs::read_to_string(w("out/cf")).unwrap(), "c\n");
        assert_eq!(std::fs::read_to_string(w("out/cd/cf")).unwrap(), "c\n");
        assert_eq!(
            std::fs::read_to_string(w("out/contents/cf")).unwrap(),
            "c\n"
        );

        // tar streams both ways
        let out = env
            .cmd("sh")
            .args(["-c", "\"$@\" cp c:/cd - | tar tf -", "sh"])
            .arg(crate::util::RBOX)
            .arg("--root")
            .arg(env.store())
            .arg("--runroot")
            .arg(env.runroot())
            .output()
            .success();
        assert_eq!(out.lines(), ["cd", "cd/cf"], "{out}");
        let out = env
            .cmd("sh")
            .args([
                "-c",
                "tar cf - -C \"$1\" f | \"$2\" --root \"$3\" --runroot \"$4\" cp - c:/cd",
                "sh",
            ])
            .arg(w(""))
            .arg(crate::util::RBOX)
            .arg(env.store())
            .arg(env.runroot())
            .output();
        out.success();
        assert_eq!(exec(env, "c", "cat /cd/f"), "hi");
        let e = env
            .rbox()
            .args(["cp", "-", "c:/cd/cf"])
            .stdin(Vec::new())
            .output()
            .rbox_error();
        assert!(
            e.stderr
                .contains("destination must be a directory when copying from stdin"),
            "{e}"
        );

        // a stopped container: written into its upper, read back through its layers
        env.rbox().args(["stop", "-t", "0", "c"]).output().success();
        cp(&w("f"), "c:/stopped").success();
        cp("c:/stopped", &w("out/stopped")).success();
        assert_eq!(std::fs::read_to_string(w("out/stopped")).unwrap(), "hi\n");
        cp("c:/bin/busybox", &w("out/bb")).success();
        assert!(std::fs::metadata(w("out/bb")).unwrap().len() > 100_000);
        env.rbox().args(["start", "c"]).output().success();
        assert_eq!(exec(env, "c", "cat /stopped"), "hi");
        // its monitor would outlive the test's deleted directory
        env.rbox()
            .args(["rm", "-f", "-t", "0", "c"])
            .output()
            .success();
    });
}

#[test]
fn cp_resolves_symlinks_inside_the_container() {
    for_each_user("cp_escape", |env| {
        start(
            env,
            "c",
            "ln -s / /escape && ln -s ../../../../etc /up && echo inside > /etc/cpmark && touch /ready",
        );
        // read through an absolute link: the container's file, not the host's
        let out = env
            .cmd("sh")
            .args([
                "-c",
                "\"$1\" --root \"$2\" --runroot \"$3\" cp c:/escape/etc/cpmark - | tar xOf -",
                "sh",
            ])
            .arg(crate::util::RBOX)
            .arg(env.store())
            .arg(env.runroot())
            .output()
            .success();
        assert_eq!(out.text(), "inside");
        // /etc/shadow through the link is the container's (busybox has none) or nothing; never
        // the host's
        let out = env
            .rbox()
            .args(["cp", "c:/escape/etc/shadow", "-"])
            .output();
        let host_shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        let root_line = host_shadow.lines().next().unwrap_or("root:");
        assert!(
            !out.stdout.contains(root_line) || root_line.is_empty(),
            "{out}"
        );
        // write through a `..` link: lands in the container's /etc
        let name = format!("rbox-cp-escape-{}", std::process::id());
        let f = env.write("work/f", "x\n");
        env.rbox()
            .arg("cp")
            .arg(&f)
            .arg(format!("c:/up/{name}"))
            .output()
            .success();
        assert!(!std::path::Path::new("/etc").join(&name).exists());
        assert_eq!(exec(env, "c", &format!("cat /etc/{name}")), "x");
        // and for a stopped container, whose root is mounted by rbox
        env.rbox().args(["stop", "-t", "0", "c"]).output().success();
        env.rbox()
            .arg("cp")
            .arg(&f)
            .arg(format!("c:/up/{name}.2"))
            .output()
            .success();
        assert!(!std::path::Path::new("/etc")
            .join(format!("{name}.2"))
            .exists());
        let out = env.rbox().args(["diff", "c"]).output().success();
        assert!(
            out.lines().contains(&format!("A /etc/{name}.2").as_str()),
            "{out}"
        );
    });
}

#[test]
fn diff_lists_changes_as_podman() {
    for_each_user("diff", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args([
                "run",
                "--network=none",
                "--name",
                "c",
                "busybox",
                "sh",
                "-c",
            ])
            .arg("echo x > /etc/newf; echo y >> /etc/passwd; rm /bin/ls; mkdir -p /a/b")
            .output()
            .success();
        let out = env.rbox().args(["diff", "c"]).output().success();
        let lines = out.lines();
        for want in [
            "C /bin",
            "D /bin/ls",
            "A /a",
            "A /a/b",
            "C /etc",
            "A /etc/newf",
            "C /etc/passwd",
        ] {
            assert!(lines.contains(&want), "{want}:\n{out}");
        }
        // rbox's own mount points are no change of the container's
        assert!(!lines.contains(&"A /etc/hosts"), "{out}");
        let pos = |l: &str| lines.iter().position(|x| *x == l).unwrap();
        assert!(pos("C /bin") < pos("D /bin/ls"), "parents first:\n{out}");

        let out = env
            .rbox()
            .args(["container", "diff", "--format", "json", "c"])
            .output()
            .success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["deleted"], serde_json::json!(["/bin/ls"]), "{out}");
        assert!(
            v["added"].as_array().unwrap().contains(&"/a/b".into()),
            "{out}"
        );
        assert!(
            out.stdout.contains("\n     \"changed\": ["),
            "Podman's indent:\n{out}"
        );

        // an image: its top layer over its parent (busybox has one layer: all added)
        let out = env.rbox().args(["diff", "busybox"]).output().success();
        assert!(out.lines().contains(&"A /bin/busybox"), "{out}");
        let e = env.rbox().args(["diff", "nosuch"]).output().rbox_error();
        assert!(
            e.stderr.contains("nosuch not found: layer not known"),
            "{e}"
        );
    });
}

#[test]
fn mount_inside_unshare_and_as_root() {
    for_each_user("mount", |env| {
        env.import_busybox("busybox");
        if !env.user.has_many_ids() {
            // a single-id map's default for busybox (files of other owners) is the FUSE
            // overlay, served by a server of the mount's own (see mount_fuse.rs)
            env.rbox()
                .args(["create", "--network=none", "--name", "f", "busybox", "true"])
                .output()
                .success();
            let script =
                "set -e; p=$(\"$@\" mount f); test -x \"$p/bin/busybox\"; \"$@\" unmount f";
            let out = env.sh_with_rbox(script, true).output().success();
            assert_eq!(out.text(), "f");
        }
        // kernel overlay's root (what `rbox mount` mounts)
        env.rbox()
            .args(["--storage-driver=overlay", "create", "--network=none"])
            .args(["--name", "c", "busybox", "true"])
            .output()
            .success();
        if env.user.uid == 0 {
            // root mounts directly, in the host's namespace
            let path = env.rbox().args(["mount", "c"]).output().success().text();
            assert!(std::path::Path::new(&path).join("bin/busybox").exists());
            let list = env.rbox().arg("mount").output().success();
            assert!(list.stdout.contains(&path), "{list}");
            env.rbox().args(["unmount", "c"]).output().success();
            assert!(!std::path::Path::new(&path).join("bin/busybox").exists());
            return;
        }
        let e = env.rbox().args(["mount", "c"]).output().rbox_error();
        assert!(
            e.stderr.contains(
                "cannot run command \"rbox mount\" in rootless mode, must execute `rbox unshare` first"
            ),
            "{e}"
        );
        let script = "set -e; p=$(\"$@\" mount c); test -x \"$p/bin/busybox\"; \"$@\" mount; \
                      \"$@\" umount c; test ! -e \"$p/bin/busybox\"; echo gone";
        let out = env.sh_with_rbox(script, true).output().success();
        let lines = out.lines();
        assert!(
            lines[0].contains("/mounts/") && lines[0].ends_with("/merged"),
            "{out}"
        );
        assert_eq!(lines.last(), Some(&"gone"), "{out}");
    });
}
