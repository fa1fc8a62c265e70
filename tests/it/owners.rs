//! Intended owners under every id map (issue 12, "ownership without subordinate ids"; issue
//! 10): an image whose files belong to several users shows those owners, modes and set-id
//! bits inside the container, and chown/chmod there succeed and persist, for root, a user
//! with a subordinate range (kernel overlay, real owners) and a user without one (rboxnosub:
//! a single-id map, where the FUSE overlay's owner supervisor answers the stat and chown
//! calls). On the FUSE overlay every identity must print the same thing; it is the default
//! driver for a single-id map and such an image (see driver_for_folded_owners in
//! src/runtime/create.rs, and fuse_auto.rs).

use crate::fixtures;
use crate::util::{for_each_user, Env, Who};

/// `localhost/owners`: busybox, then a layer with files of other owners (`home/u` 2770, and
/// `home/u/g`) and the test helper.
pub(crate) fn load_owners_image(env: &Env) {
    let helper = std::fs::read(fixtures::helper_bin()).unwrap();
    let mut l = fixtures::owners_layer(0o2770);
    l.file("home/u/g", b"g\n", 0o640, 1000, 1000)
        .file("helper", &helper, 0o755, 0, 0);
    env.load_bytes(
        "owners.tar",
        fixtures::busybox_and("localhost/owners:latest", l),
    );
}

/// The FUSE overlay: the driver that shows intended owners under a single-id map.
const FUSE: &str = "--storage-driver=fuse-overlay";

fn run(env: &Env, args: &[&str]) -> Vec<String> {
    env.rbox()
        .args([FUSE, "run", "--rm", "--network=none", "localhost/owners"])
        .args(args)
        .output()
        .success()
        .lines()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The columns of `ls -ln` that are not times: mode, links, uid, gid, size, name.
fn ls_columns(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.starts_with("total"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {} {}", f[0], f[2], f[3], f[4], f[f.len() - 1])
        })
        .collect()
}

#[test]
fn owners_of_a_multi_user_image_show_under_every_id_map() {
    for_each_user("owners_show", |env| {
        load_owners_image(env);
        // every raw call of the stat family (helper), busybox's stat and ls (newfstatat,
        // AT_EMPTY_PATH for fstat), and a FUSE file reached through /proc/self/fd
        let out = run(
            env,
            &[
                "/helper",
                "owner",
                "/home/u/f",
                "--",
                "owner",
                "/home/u",
                "--",
                "owner",
                "/srv/root-owned",
            ],
        );
        let want = |o: &str| {
            ["stat", "lstat", "fstat", "newfstatat", "statx"]
                .iter()
                .map(|c| format!("{c}={o}"))
                .collect::<Vec<_>>()
        };
        let mut expected = want("100:101:4750");
        expected.extend(want("1000:1000:2770"));
        expected.extend(want("0:0:600"));
        assert_eq!(out, expected, "{}", env.user);

        let out = run(
            env,
            &[
                "sh",
                "-c",
                "stat -c '%u:%g:%a %n' /home/u/f /home/u/g /home/u /srv; \
                 exec 3</home/u/f; stat -L -c '%u:%g:%a fd' /proc/self/fd/3; \
                 cd /home/u && stat -c '%u:%g:%a %n' f",
            ],
        );
        assert_eq!(
            out,
            [
                "100:101:4750 /home/u/f",
                "1000:1000:640 /home/u/g",
                "1000:1000:2770 /home/u",
                "0:0:755 /srv",
                "100:101:4750 fd",
                "100:101:4750 f",
            ],
            "{}",
            env.user
        );
        // `ls -ln` as Podman with a full range prints it
        let ls = run(env, &["ls", "-ln", "/home/u"]);
        assert_eq!(
            ls_columns(&ls),
            ["-rwsr-x--- 100 101 6 f", "-rw-r----- 1000 1000 2 g",],
            "{}",
            env.user
        );
        // the default driver: kernel overlay where the id map has the image's owners, the
        // FUSE overlay under a single-id map (an image with other owners): the same owners
        env.rbox()
            .args([
                "create",
                "--name",
                "c",
                "--network=none",
                "localhost/owners",
            ])
            .output()
            .success();
        let driver = if env.user.has_many_ids() {
            "overlay"
        } else {
            "fuse-overlay"
        };
        assert_eq!(env.inspect("c", "{{.Driver}}"), driver, "{}", env.user);
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .args(["localhost/owners", "stat", "-c", "%u:%g", "/home/u/f"])
            .output()
            .success();
        assert_eq!(out.text(), "100:101", "{}", env.user);
    });
}

#[test]
fn owners_chown_and_chmod_persist_across_start_and_commit() {
    for_each_user("owners_chown", |env| {
        load_owners_image(env);
        // the first start changes owners and modes, the second only looks
        let script = "test -e /done || { \
                chown 200:300 /home/u/f && chown 7:8 /home/u && chmod 4711 /home/u/g && \
                chgrp 9 /srv/root-owned && chown -h 5:5 /bin/sh && touch /done; } && \
            stat -c '%u:%g:%a %n' /home/u/f /home/u /home/u/g /srv/root-owned && \
            /helper owner /home/u/f";
        let expected = [
            // chown clears set-user-ID (and set-group-ID with group exec) as the kernel does
            "200:300:750 /home/u/f",
            "7:8:2770 /home/u",
            "1000:1000:4711 /home/u/g",
            "0:9:600 /srv/root-owned",
            "stat=200:300:750",
            "lstat=200:300:750",
            "fstat=200:300:750",
            "newfstatat=200:300:750",
            "statx=200:300:750",
        ];
        let first = env
            .rbox()
            .args([
                FUSE,
                "run",
                "--name",
                "c",
                "--network=none",
                "localhost/owners",
            ])
            .args(["sh", "-c", script])
            .output()
            .success();
        assert_eq!(first.lines(), expected, "{}", env.user);
        assert_eq!(env.inspect("c", "{{.Driver}}"), "fuse-overlay");
        let again = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(again.lines(), expected, "after a restart, {}", env.user);
        // a commit keeps the owners the container shows (issue 10)
        env.rbox()
            .args(["commit", "-q", "c", "localhost/owners2"])
            .output()
            .success();
        let out = env
            .rbox()
            .args([FUSE, "run", "--rm", "--network=none", "localhost/owners2"])
            .args([
                "stat",
                "-c",
                "%u:%g:%a %n",
                "/home/u/f",
                "/home/u",
                "/home/u/g",
            ])
            .output()
            .success();
        assert_eq!(out.lines(), expected[..3], "{}", env.user);
        // without CAP_CHOWN a chown fails as the kernel fails it, whatever the map
        env.rbox()
            .args([FUSE, "run", "--rm", "--network=none", "--cap-drop=CHOWN"])
            .args(["localhost/owners2", "chown", "200", "/home/u/g"])
            .output()
            .code_is(1);
        if env.user.who == Who::NoSub {
            // a chown back to the one id there is (clearing set-user-ID, as any chown)
            let out = env
                .rbox()
                .args([FUSE, "run", "--rm", "--network=none", "localhost/owners2"])
                .args([
                    "sh",
                    "-c",
                    "chown 0:0 /home/u/g && stat -c '%u:%g:%a' /home/u/g",
                ])
                .output()
                .success();
            assert_eq!(out.text(), "0:0:711");
        }
    });
}
