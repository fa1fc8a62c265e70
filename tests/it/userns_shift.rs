//! `--userns=keep-id` without a chowned copy of the image (issues 9 and 12): the FUSE
//! overlay replies the image's owners shifted into keep-id's nested user namespace, so the
//! container sees what Podman shows on its chowned copy (`/etc` is 0:0, a file of 100:101
//! is 100:101, what the user creates is the user's), and what it creates is stored with the
//! owners `rbox diff`, `export` and `commit` must write. Root has no keep-id (Podman's
//! refusal). The expectations were taken from Podman 4.3.1 on the same image
//! (`podman run --rm --userns=keep-id --network=none ...` as rboxsub).

use crate::fixtures;
use crate::util::{for_each_user, Env, Who};

/// `localhost/shift`: busybox, then files of other owners (`home/u` 2775).
fn load_image(env: &Env) {
    env.load_bytes(
        "shift.tar",
        fixtures::busybox_and("localhost/shift:latest", fixtures::owners_layer(0o2775)),
    );
}

#[test]
fn keep_id_shows_the_images_owners_and_stores_the_containers() {
    for_each_user("keepid_shift", |env| {
        load_image(env);
        let run = |name: &str, args: &[&str], script: &str| {
            env.rbox()
                .args(["run", "--name", name, "--network=none", "--userns=keep-id"])
                .args(args)
                .args(["localhost/shift", "sh", "-c", script])
                .output()
        };
        let script = "stat -c %u:%g:%a /etc /home/u /home/u/f /srv/root-owned; id -un; \
                      cat /srv/root-owned 2>/dev/null || echo denied; \
                      touch /tmp/mine && mkdir /tmp/md && stat -c %u:%g /tmp/mine /tmp/md";
        let out = run("k", &[], script);
        let u = &env.user;
        match u.who {
            Who::Root => {
                // as Podman: `Error: keep-id is only supported in rootless mode`, 125
                let out = out.rbox_error();
                assert_eq!(
                    out.stderr.trim_end(),
                    "Error: keep-id is only supported in rootless mode",
                    "{out}"
                );
                return;
            }
            Who::Sub => {
                let out = out.success();
                let ids = format!("{}:{}", u.uid, u.gid);
                assert_eq!(
                    out.lines(),
                    [
                        "0:0:755",
                        "1000:1000:2775",
                        "100:101:4750",
                        "0:0:600",
                        &u.name,
                        "denied",
                        &ids,
                        &ids,
                    ],
                    "{out}"
                );
            }
            Who::NoSub => {
                // Podman refuses keep-id without a range ("keep-id requires additional UIDs
                // or GIDs defined in /etc/subuid and /etc/subgid"); rbox runs it: keep-id's
                // namespace has only the caller's uid, which is rbox's 0 (the image root's
                // files on disk), so those and the new ones show as the caller's; the image's
                // other owners are the FUSE overlay's folded owners, which its owner
                // supervisor shows as the image gives them (as without keep-id)
                let out = out.success();
                let ids = format!("{}:{}", u.uid, u.gid);
                let mode = |m: &str| format!("{ids}:{m}");
                assert_eq!(
                    out.lines(),
                    [
                        &mode("755"),
                        "1000:1000:2775",
                        "100:101:4750",
                        &mode("600"),
                        &u.name,
                        "r",
                        &ids,
                        &ids,
                    ],
                    "{out}"
                );
                env.rbox().args(["rm", "k"]).output().success();
                return;
            }
            _ => return,
        }
        // `rbox cp` into the running container (whose FUSE root only keep-id's namespace may
        // enter) gives keep-id's user the copy, as Podman does
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "kd",
                "--network=none",
                "--userns=keep-id",
            ])
            .args(["localhost/shift", "sleep", "300"])
            .output()
            .success();
        let src = env.write("copied", "c\n");
        env.rbox()
            .arg("cp")
            .arg(&src)
            .arg("kd:/tmp/copied")
            .output()
            .success();
        let out = env
            .rbox()
            .args(["exec", "kd", "stat", "-c", "%u:%g", "/tmp/copied", "/etc"])
            .output()
            .success();
        assert_eq!(
            out.lines(),
            [format!("{}:{}", u.uid, u.gid).as_str(), "0:0"],
            "{out}"
        );
        let out = env
            .rbox()
            .args(["cp", "kd:/srv/root-owned", "-"])
            .output()
            .success();
        assert!(out.stdout.contains("r\n"), "{out}");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "kd"])
            .output()
            .success();
        // the image's root inside makes and gives away files; the user's file is the user's
        // (a set-gid directory of the image's 1000:1000 gives its group, as in Podman)
        let out = run(
            "k0",
            &["-u", "0"],
            "touch /tmp/r && touch /tmp/o && chown 100:101 /tmp/o && echo x >> /etc/motd \
             && touch /home/u/new && mkdir /home/u/nd \
             && stat -c '%u:%g %a' /tmp/o /home/u/new /home/u/nd",
        )
        .success();
        assert_eq!(
            out.lines(),
            ["100:101 644", "0:1000 644", "0:1000 2755"],
            "{out}"
        );
        let diff = env.rbox().args(["diff", "k0"]).output().success();
        assert_eq!(
            diff.lines(),
            [
                "C /etc",
                "A /etc/motd",
                "C /home",
                "C /home/u",
                "A /home/u/nd",
                "A /home/u/new",
                "C /tmp",
                "A /tmp/o",
                "A /tmp/r"
            ],
            "{diff}"
        );
        let ids = format!("{}:{}", u.uid, u.gid);
        assert_eq!(
            env.exported_owners("k", "tmp/"),
            [format!("tmp/md {ids}"), format!("tmp/mine {ids}")]
        );
        assert_eq!(
            env.exported_owners("k0", "tmp/"),
            ["tmp/o 100:101", "tmp/r 0:0"]
        );
        assert_eq!(env.exported_owners("k0", "etc/motd"), ["etc/motd 0:0"]);
        // a commit carries the same owners into an image, seen without keep-id too
        env.rbox()
            .args(["commit", "-q", "k0", "localhost/shift-committed"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "localhost/shift-committed"])
            .args([
                "stat",
                "-c",
                "%u:%g",
                "/tmp/o",
                "/tmp/r",
                "/etc/motd",
                "/home/u/f",
            ])
            .output()
            .success();
        assert_eq!(out.lines(), ["100:101", "0:0", "0:0", "100:101"], "{out}");
        for c in ["k", "k0"] {
            env.rbox().args(["rm", c]).output().success();
        }
    });
}
