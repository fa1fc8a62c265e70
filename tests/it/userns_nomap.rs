//! `--userns=nomap` (issues 9 and 12): the container's ids 0.. are the caller's subordinate
//! ids only, the caller's own uid has none. The FUSE overlay's server stays in rbox's
//! namespace and shows the image's owners through the nested map, so the container sees
//! what Podman shows; what it creates is stored with the image's owners (`rbox diff`,
//! `export`). Root and a user without a range get Podman's refusals. The expectations were
//! taken from Podman 4.3.1 on busybox (`podman run --rm --userns=nomap --network=none
//! localhost/bb sh -c 'id; stat -c %u:%g /etc /home/*; touch /tmp/x; stat -c %u:%g /tmp/x'`
//! as rboxsub: root's id, 0:0, 1000:1000, 0:0, and a uid_map of `0 1 65536`).

use crate::fixtures;
use crate::util::{for_each_user, Env, Who};

/// `localhost/nomap`: busybox, then files of other owners (`home/u` 2775).
fn load_image(env: &Env) {
    env.load_bytes(
        "nomap.tar",
        fixtures::busybox_and("localhost/nomap:latest", fixtures::owners_layer(0o2775)),
    );
}

#[test]
fn nomap_maps_only_the_subordinate_ids_and_shows_the_images_owners() {
    for_each_user("userns_nomap", |env| {
        load_image(env);
        let script = "id; cat /proc/self/uid_map /proc/self/gid_map; \
                      stat -c %u:%g:%a /etc /home/u /home/u/f /srv/root-owned; \
                      cat /srv/root-owned; touch /tmp/x && stat -c %u:%g /tmp/x; \
                      touch /tmp/o && chown 100:101 /tmp/o && stat -c %u:%g /tmp/o";
        let out = env
            .rbox()
            .args(["run", "--name", "n", "--network=none", "--userns=nomap"])
            .args(["localhost/nomap", "sh", "-c", script])
            .output();
        let many = env.user.has_many_ids();
        match env.user.who {
            Who::Root => {
                // Podman as root: `Error: nomap is only supported in rootless mode`, 125
                let out = out.rbox_error();
                assert_eq!(
                    out.stderr.trim_end(),
                    "Error: nomap is only supported in rootless mode",
                    "{out}"
                );
                return;
            }
            _ if !many => {
                // Podman: "Error: nomap requires additional UIDs or GIDs defined in
                // /etc/subuid and /etc/subgid to function correctly: ..." (its cause is
                // Go's `%!w(<nil>)`; rbox says how to get a range)
                let out = out.rbox_error();
                assert!(
                    out.stderr.starts_with(
                        "Error: nomap requires additional UIDs or GIDs defined in \
                         /etc/subuid and /etc/subgid to function correctly: "
                    ),
                    "{out}"
                );
                return;
            }
            _ => {}
        }
        let out = out.success();
        let lines = out.lines();
        assert_eq!(lines[0], "uid=0(root) gid=0(root) groups=0(root)", "{out}");
        // rbox's namespace is 0 (the caller) then the range: the container gets 1.. only
        let map = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(map(lines[1]), "0 1 65536", "{out}");
        assert_eq!(map(lines[2]), "0 1 65536", "{out}");
        assert_eq!(
            lines[3..],
            [
                "0:0:755",
                "1000:1000:2775",
                "100:101:4750",
                "0:0:600",
                "r",
                "0:0",
                "100:101"
            ],
            "{out}"
        );
        // stored with the image's owners: the container's root is the image's root
        let diff = env.rbox().args(["diff", "n"]).output().success();
        assert_eq!(diff.lines(), ["C /tmp", "A /tmp/o", "A /tmp/x"], "{diff}");
        assert_eq!(
            env.exported_owners("n", "tmp/"),
            ["tmp/o 100:101", "tmp/x 0:0"]
        );
        env.rbox().args(["rm", "n"]).output().success();

        // `rbox exec` joins a running nomap container as its root
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "nd",
                "--network=none",
                "--userns=nomap",
            ])
            .args(["localhost/nomap", "sleep", "300"])
            .output()
            .success();
        // `rbox cp` into it gives the container's root the copy, as Podman does
        let src = env.write("copied", "c\n");
        env.rbox()
            .arg("cp")
            .arg(&src)
            .arg("nd:/tmp/copied")
            .output()
            .success();
        let out = env
            .rbox()
            .args(["exec", "nd", "stat", "-c", "%u:%g", "/tmp/copied"])
            .output()
            .success();
        assert_eq!(out.lines(), ["0:0"], "{out}");
        let out = env
            .rbox()
            .args(["cp", "nd:/srv/root-owned", "-"])
            .output()
            .success();
        assert!(out.stdout.contains("r\n"), "{out}");
        let out = env
            .rbox()
            .args(["exec", "nd", "sh", "-c"])
            .arg("id -u; stat -c %u:%g /home/u/f; cat /proc/self/uid_map")
            .output()
            .success();
        let lines = out.lines();
        assert_eq!(lines[..2], ["0", "100:101"], "{out}");
        assert_eq!(map(lines[2]), "0 1 65536", "{out}");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "nd"])
            .output()
            .success();

        // only the FUSE overlay shows the layers (rbox's id 0's) to such a namespace
        let out = env
            .rbox()
            .args(["--storage-driver=overlay", "run", "--rm", "--network=none"])
            .args(["--userns=nomap", "localhost/nomap", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("--userns=nomap needs the fuse-overlay storage driver"),
            "{out}"
        );
    });
}

#[test]
fn auto_gives_each_container_its_own_range() {
    for_each_user("userns_auto", |env| {
        load_image(env);
        let create = |name: &str, mode: &str, script: &str| {
            env.rbox()
                .args(["create", "--name", name, "--network=none"])
                .arg(format!("--userns={mode}"))
                .args(["localhost/nomap", "sh", "-c", script])
                .output()
        };
        let script = "cat /proc/self/uid_map; stat -c %u:%g /etc /home/u/f; \
                      touch /tmp/x && stat -c %u:%g /tmp/x";
        if env.user.who == Who::Root {
            // root's ranges come from the `containers` user's: tests/it/userns_auto.rs
            return;
        }
        let out = create("a1", "auto", script);
        if !env.user.has_many_ids() {
            // Podman: `Error: creating container storage: could not find enough available
            // IDs`
            let out = out.rbox_error();
            assert!(
                out.stderr.starts_with(
                    "Error: creating container storage: could not find enough available IDs"
                ),
                "{out}"
            );
            let ps = env.rbox().args(["ps", "-a", "-q"]).output().success();
            assert_eq!(ps.stdout, "", "a refused create leaves no container: {ps}");
            return;
        }
        out.success();
        create("a2", "auto:size=500", script).success();
        // as Podman: the first free ids of the range, recorded as HostConfig.IDMappings
        for (name, map) in [("a1", "0:1:1024"), ("a2", "0:1025:500")] {
            assert_eq!(
                env.inspect(name, "{{json .HostConfig.IDMappings.UidMap}}"),
                format!("[\"{map}\"]")
            );
            assert_eq!(
                env.inspect(name, "{{json .HostConfig.IDMappings.GidMap}}"),
                format!("[\"{map}\"]")
            );
        }
        for (name, map) in [("a1", "0 1 1024"), ("a2", "0 1025 500")] {
            let out = env.rbox().args(["start", "-a", name]).output().success();
            let lines = out.lines();
            let got = lines[0].split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(got, map, "{out}");
            assert_eq!(lines[1..], ["0:0", "100:101", "0:0"], "{out}");
            let diff = env.rbox().args(["diff", name]).output().success();
            assert_eq!(diff.lines(), ["C /tmp", "A /tmp/x"], "{diff}");
            assert_eq!(env.exported_owners(name, "tmp/"), ["tmp/x 0:0"]);
        }
        // a third one takes what is left after both
        create("a3", "auto:size=10", "cat /proc/self/uid_map").success();
        assert_eq!(
            env.inspect("a3", "{{json .HostConfig.IDMappings.UidMap}}"),
            "[\"0:1525:10\"]"
        );
        // more than the range holds: Podman's text
        let out = create("a4", "auto:size=65000", "true").rbox_error();
        assert!(
            out.stderr.contains("could not find enough available IDs"),
            "{out}"
        );
        env.rbox().args(["rm", "a1", "a2", "a3"]).output().success();
    });
}
