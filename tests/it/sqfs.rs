//! Single-file squashfs images: `rbox save --format squashfs` then `rbox run --image-file`,
//! as every test user: the image's content, owners, whiteouts and config defaults come
//! through; writes go to the container's upper directory and never to the file; squashfuse
//! and its mount end with the container; bad files are refused in one line; one file serves
//! several containers (of two users) at once, and nothing is written next to it.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::util::{eventually, for_each_user, have, other_user, require, Env};

/// Two layers over busybox: the first makes `/data/f` (uid 1000), `/data/g` and `/data/od/old`,
/// the second removes `/data/g` (a whiteout) and replaces `/data/od` (an opaque directory).
const CONTAINERFILE: &str = "FROM busybox
RUN mkdir -p /data/od && echo hi > /data/f && chown 1000:1000 /data/f && echo gone > /data/g && touch /data/od/old
RUN rm /data/g && rm -rf /data/od && mkdir /data/od && touch /data/od/new
ENV FOO=bar
WORKDIR /data
LABEL sqfs.test=yes
CMD [\"cat\", \"f\"]
";

fn tools_usable() -> bool {
    require(
        have("squashfuse") && have("sqfstar") && have("unsquashfs"),
        "squashfuse and squashfs-tools must be installed (Debian packages squashfuse, squashfs-tools)",
    ) && crate::fuse::fuse_usable()
}

/// Builds the test image `img` in `env`'s store and saves it to `<env>/images/img.sqfs`.
fn make_file(env: &Env) -> PathBuf {
    env.import_busybox("busybox");
    env.write("ctx/Containerfile", CONTAINERFILE);
    env.rbox()
        .args(["build", "--network=none", "-q", "-t", "img"])
        .arg(env.path("ctx"))
        .output()
        .success();
    let file = env.path("images/img.sqfs");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    env.give_to_user(file.parent().unwrap());
    env.rbox()
        .args(["save", "--format", "squashfs", "-o"])
        .arg(&file)
        .arg("img")
        .output()
        .success();
    file
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The pids of the squashfuse processes serving `file`.
fn squashfuses_of(file: &Path) -> Vec<i32> {
    let want = file.to_string_lossy().into_owned();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("squashfuse")) && args.contains(&want) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn squashfs_image_file_runs_without_unpacking() {
    if !tools_usable() {
        return;
    }
    for_each_user("sqfsrun", |env| {
        let file = make_file(env);
        let hash = sha256(&file);
        let beside = listing(file.parent().unwrap());
        let run = |args: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm", "--network=none", "--image-file"])
                .arg(&file)
                .args(args);
            c.output()
        };
        // the image's CMD and WORKDIR
        assert_eq!(run(&[]).success().text(), "hi");
        // its ENV; owners as the image has them (the build recorded 1000 on any map; a
        // single-id map has no such id, so every file is the container root's, as in a
        // single-id store's unpacked layers); the upper layer's whiteout and opaque directory
        // applied
        let owner = if env.user.has_many_ids() {
            "1000:1000"
        } else {
            "0:0"
        };
        let out = run(&[
            "sh",
            "-c",
            "echo $FOO; pwd; stat -c %u:%g /data/f; ls /data; ls /data/od",
        ])
        .success()
        .text();
        assert_eq!(out, format!("bar\n/data\n{owner}\nf\nod\nnew"));
        // the root is kernel overlay over the squashfuse mount, not an unpacked copy
        let mounts = run(&["cat", "/proc/mounts"]).success().text();
        assert!(mounts.contains(" / overlay "), "{mounts}");
        assert!(!mounts.contains("squashfuse"), "{mounts}");
        // writes go to the container's upper directory; a file of another owner is deleted
        // on any map (a single-id map once failed: kernel overlay cannot copy up an unmapped
        // owner's directory, EOVERFLOW)
        let rm = " && rm /data/f && chmod 700 /data/od";
        env.rbox()
            .args(["run", "--name", "w", "--network=none", "--image-file"])
            .arg(&file)
            .args(["sh", "-c"])
            .arg(format!(
                "echo x > /data/new && echo more >> /data/od/new{rm}"
            ))
            .output()
            .success();
        let id = env.inspect("w", "{{.Id}}");
        let upper = env.store().join("containers").join(&id).join("upper");
        assert_eq!(
            std::fs::read_to_string(upper.join("data/new")).unwrap(),
            "x\n"
        );
        assert_eq!(
            std::fs::read_to_string(upper.join("data/od/new")).unwrap(),
            "more\n"
        );
        // inspect and ps name the file, and the image id is the image's own
        assert_eq!(
            env.inspect("w", "{{.ImageName}}"),
            file.display().to_string()
        );
        let image_id = env
            .rbox()
            .args(["images", "-q", "--no-trunc", "img"])
            .output()
            .success()
            .text();
        assert_eq!(
            format!("sha256:{}", env.inspect("w", "{{.Image}}")),
            image_id
        );
        let ps = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Image}}"])
            .output()
            .success()
            .text();
        assert_eq!(ps, file.display().to_string());
        // its lower layer exists only inside the container: commit and export refuse (`rbox
        // mount` serves it, see mount_fuse.rs)
        for verb in ["commit", "export"] {
            let out = env.rbox().args([verb, "w"]).output().rbox_error();
            assert!(out.stderr.contains("--image-file"), "{out}");
        }
        env.rbox().args(["rm", "w"]).output().success();
        // create, then start
        env.rbox()
            .args(["create", "--name", "c", "--network=none", "--image-file"])
            .arg(&file)
            .output()
            .success();
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(out.text(), "hi");
        env.rbox().args(["rm", "c"]).output().success();
        // two containers of one file at once; squashfuse and its mount end with each
        for n in ["a", "b"] {
            env.rbox()
                .args(["run", "-d", "--name", n, "--network=none", "--image-file"])
                .arg(&file)
                .args(["sleep", "600"])
                .output()
                .success();
        }
        for n in ["a", "b"] {
            let out = env
                .rbox()
                .args(["exec", n, "cat", "/data/f"])
                .output()
                .success();
            assert_eq!(out.text(), "hi");
        }
        assert_eq!(squashfuses_of(&file).len(), 2);
        // `rbox cp` out of it reads the bytes (squashfuse reports no blocks for small files)
        let out = env.rbox().args(["cp", "a:/data/f", "-"]).output().success();
        assert!(out.stdout.contains("hi\n"), "{out}");
        env.rbox().args(["rm", "-f", "a", "b"]).output().success();
        eventually("no squashfuse left after rm -f", || {
            squashfuses_of(&file).is_empty()
        });
        // the file is never written, and nothing is written next to it
        assert_eq!(sha256(&file), hash);
        assert_eq!(listing(file.parent().unwrap()), beside);
        // vfs cannot use it: a clear refusal
        let out = env
            .rbox()
            .args(["--storage-driver=vfs", "run", "--rm", "--image-file"])
            .arg(&file)
            .arg("true")
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("needs the overlay or fuse-overlay"),
            "{out}"
        );
    });
}

#[test]
fn squashfs_image_file_on_the_fuse_overlay() {
    if !tools_usable() {
        return;
    }
    for_each_user("sqfsfuse", |env| {
        let file = make_file(env);
        let hash = sha256(&file);
        let out = env
            .rbox()
            .args([
                "--storage-driver=fuse-overlay",
                "run",
                "--rm",
                "--network=none",
            ])
            .arg("--image-file")
            .arg(&file)
            .args(["sh", "-c", "cat f; ls /data; echo y > /data/f; cat /data/f"])
            .output()
            .success();
        // uid 1000's file is written by the container's root on any map (as a single id,
        // every file is the container root's)
        assert_eq!(out.text(), "hi\nf\nod\ny", "{out}");
        assert_eq!(sha256(&file), hash);
        assert!(squashfuses_of(&file).is_empty());
    });
}

#[test]
fn squashfs_bad_image_files_are_refused() {
    if !tools_usable() {
        return;
    }
    for_each_user("sqfsbad", |env| {
        let text = env.write("notsqfs", "just text\n");
        env.import_busybox("busybox");
        let sqfs = env.path("bb.sqfs");
        env.rbox()
            .args(["save", "--format", "squashfs", "-o"])
            .arg(&sqfs)
            .arg("busybox")
            .output()
            .success();
        let mut cases: Vec<(PathBuf, &str)> = vec![
            (env.path("missing.sqfs"), "no such file or directory"),
            (text, "not a squashfs image"),
            (env.path("home"), "is a directory"),
        ];
        // a file its user cannot read (root reads every file; a user reads its own in its
        // user namespace, whatever the mode)
        if env.user.who != crate::util::Who::Root {
            let locked = env.path("locked.sqfs");
            std::fs::write(&locked, "hsqs").unwrap();
            std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            cases.push((locked, "permission denied"));
        }
        // a truncated one
        let mut cut = std::fs::read(&sqfs).unwrap();
        cut.truncate(8192);
        cases.push((env.write("cut.sqfs", cut), "truncated squashfs image"));
        for (file, why) in cases {
            for verb in ["run", "create"] {
                let out = env
                    .rbox()
                    .args([verb, "--image-file"])
                    .arg(&file)
                    .arg("true")
                    .output()
                    .rbox_error();
                assert!(
                    out.stderr
                        .contains(&format!("--image-file `{}`: {why}", file.display())),
                    "{out}"
                );
            }
        }
        // nothing was created by those refusals
        let all = env.rbox().args(["ps", "-aq"]).output().success();
        assert_eq!(all.text(), "");
        // a superblock and nothing behind it: squashfuse refuses it when the container starts
        let mut fake = vec![0u8; 4096];
        fake[..4].copy_from_slice(b"hsqs");
        fake[28] = 4;
        fake[40..48].copy_from_slice(&4096u64.to_le_bytes());
        let fake = env.write("fake.sqfs", fake);
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--image-file"])
            .arg(&fake)
            .arg("true")
            .output()
            .rbox_error();
        assert!(out.stderr.contains("squashfuse exited"), "{out}");
        assert!(squashfuses_of(&fake).is_empty());
        let out = env
            .rbox()
            .args(["save", "--format", "squashfs", "busybox"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains("needs -o FILE"), "{out}");
    });
}

/// One file in a shared directory, run by two users at the same time, as on a cluster whose
/// nodes all read one image from a parallel filesystem.
#[test]
fn squashfs_image_file_shared_by_two_users() {
    if !tools_usable() {
        return;
    }
    let Some(other) = other_user() else {
        return;
    };
    let users = crate::util::users();
    let Some(sub) = users
        .iter()
        .find(|u| u.who == crate::util::Who::Sub)
        .cloned()
    else {
        return;
    };
    let maker = Env::new("sqfsshare", &users[0]);
    let file = make_file(&maker);
    std::fs::set_permissions(
        file.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let hash = sha256(&file);
    let beside = listing(file.parent().unwrap());
    let envs = [Env::new("sqfsshare", &sub), Env::new("sqfsshare", &other)];
    for env in &envs {
        env.rbox()
            .args(["run", "-d", "--name", "s", "--network=none", "--image-file"])
            .arg(&file)
            .args(["sleep", "600"])
            .output()
            .success();
    }
    for env in &envs {
        let out = env
            .rbox()
            .args([
                "exec",
                "s",
                "sh",
                "-c",
                "cat /data/f; echo mine > /data/f2; cat /data/f2",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "hi\nmine");
    }
    assert_eq!(squashfuses_of(&file).len(), 2);
    for env in &envs {
        env.rbox().args(["rm", "-f", "s"]).output().success();
    }
    eventually("no squashfuse left after rm -f", || {
        squashfuses_of(&file).is_empty()
    });
    assert_eq!(sha256(&file), hash);
    assert_eq!(listing(file.parent().unwrap()), beside);
}

/// The image's WORKDIR is made when the image lacks it, as for an image of the store; a `-w`
/// directory must exist.
#[test]
fn squashfs_image_workdir_is_made() {
    if !tools_usable() {
        return;
    }
    for_each_user("sqfswd", |env| {
        let tar = env.copy_in(&crate::fixtures::busybox_rootfs_tar(), "busybox.tar");
        env.rbox()
            .args(["import", "--change", "WORKDIR /made/here"])
            .arg(&tar)
            .arg("wd")
            .output()
            .success();
        let file = env.path("wd.sqfs");
        env.rbox()
            .args(["save", "--format", "squashfs", "-o"])
            .arg(&file)
            .arg("wd")
            .output()
            .success();
        let run = |extra: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm", "--network=none"])
                .args(extra)
                .arg("--image-file")
                .arg(&file)
                .arg("pwd");
            c.output()
        };
        assert_eq!(run(&[]).success().text(), "/made/here");
        let out = run(&["-w", "/nope"]).code_is(126);
        assert!(out.stderr.contains("/nope"), "{out}");
    });
}
