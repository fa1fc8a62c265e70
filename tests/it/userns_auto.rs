//! `--userns=auto` (issue 9): the range's size comes from the image, as Podman 4.3.1 sizes it
//! (observed as rboxsub with `podman run --rm --userns=auto --network=none IMAGE cat
//! /proc/self/uid_map`): busybox -> `0 1 1024`; a file owned by 5000:6000 -> 6001; an image
//! `User` of 7000 -> 7001; an /etc/passwd entry of uid 3000 -> 3000 (Podman leaves that
//! user itself unmapped; rbox does as Podman). storage.conf's `auto-userns-min-size` and
//! `auto-userns-max-size` (containers-storage.conf(5)) bound it; Podman 4.3.1 rootless
//! ignores both. Root takes its ranges from the `containers` user's /etc/subuid and
//! /etc/subgid entries (podman-run(1)), a user with no range is refused with Podman's text.
//! Parallel creates get disjoint ranges. Inside, /dev/pts and /dev/mqueue are root's and a
//! terminal's group is 5 (tty), as under Podman.

use std::collections::BTreeSet;

use serde_json::json;

use crate::fixtures::{self, Layer, IMAGE_PATH};
use crate::util::{for_each_user, Env, Who};

/// `localhost/NAME`: busybox, then `extra` (a layer, if any), with `config` merged into the
/// image config.
fn load_image(env: &Env, name: &str, extra: Option<Layer>, config: serde_json::Value) {
    let mut layers = vec![fixtures::busybox_layer()];
    layers.extend(extra.map(Layer::finish));
    let mut c = json!({"Env": [format!("PATH={IMAGE_PATH}")], "Cmd": ["sh"]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), config.as_object()) {
        c.extend(extra.clone());
    }
    let config = fixtures::config_json(&layers, &c);
    let archive = fixtures::docker_archive(&format!("localhost/{name}:latest"), &layers, &config);
    let p = env.write(&format!("{name}.tar"), archive);
    env.rbox()
        .args(["load", "-q", "-i"])
        .arg(&p)
        .output()
        .success();
}

/// The four images: busybox, a file of 5000:6000, a passwd user 3000, `User: 7000`.
fn load_images(env: &Env) {
    load_image(env, "bb", None, json!({}));
    let mut l = Layer::new();
    l.dir("srv", 0o755, 5000, 6000)
        .file("srv/f", b"f\n", 0o644, 5000, 6000);
    load_image(env, "owners", Some(l), json!({}));
    let mut l = Layer::new();
    let passwd = format!("{}big:x:3000:3000::/:/bin/sh\n", fixtures::PASSWD);
    l.dir("etc", 0o755, 0, 0)
        .file("etc/passwd", passwd.as_bytes(), 0o644, 0, 0);
    load_image(env, "pw", Some(l), json!({}));
    load_image(env, "usr", None, json!({"User": "7000"}));
}

/// The `containers` user's first uid in /etc/subuid and first gid in /etc/subgid, where root's
/// auto ranges come from; `None` when either file lacks it.
pub fn containers_range() -> Option<(u32, u32)> {
    let start = |f: &str| {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        text.lines().find_map(|l| {
            let p: Vec<&str> = l.split(':').collect();
            match p[..] {
                [who, s, c] if who == "containers" && c.parse::<u32>().is_ok_and(|c| c > 0) => {
                    s.parse::<u32>().ok()
                }
                _ => None,
            }
        })
    };
    Some((start("/etc/subuid")?, start("/etc/subgid")?))
}

/// Where this user's auto ranges start, in the ids its maps are written in: rbox's namespace
/// (1: 0 is the user) rootless, the host's for root.
fn pool_start(env: &Env) -> Option<(u32, u32)> {
    match env.user.who {
        Who::Root => containers_range(),
        _ if env.user.has_many_ids() => Some((1, 1)),
        _ => None,
    }
}

/// `{{json .HostConfig.IDMappings.UidMap}}` and `GidMap` of `name`.
fn id_mappings(env: &Env, name: &str) -> (String, String) {
    (
        env.inspect(name, "{{json .HostConfig.IDMappings.UidMap}}"),
        env.inspect(name, "{{json .HostConfig.IDMappings.GidMap}}"),
    )
}

/// The expected IDMappings of a range of `size` at `off` ids into the pool.
fn mapped(start: (u32, u32), off: u32, size: u32) -> (String, String) {
    (
        format!("[\"0:{}:{size}\"]", start.0 + off),
        format!("[\"0:{}:{size}\"]", start.1 + off),
    )
}

#[test]
fn auto_sizes_the_range_for_the_image() {
    for_each_user("userns_auto_size", |env| {
        load_images(env);
        let create = |name: &str, image: &str| {
            env.rbox()
                .args(["create", "--name", name, "--network=none", "--userns=auto"])
                .arg(format!("localhost/{image}"))
                .args(["sh", "-c", "cat /proc/self/uid_map; stat -c %u:%g /srv/f"])
                .output()
        };
        let Some(start) = pool_start(env) else {
            // Podman: `Error: creating container storage: could not find enough available
            // IDs` (a user without a range; root without a `containers` range)
            let out = create("a", "bb").rbox_error();
            assert!(
                out.stderr.starts_with(
                    "Error: creating container storage: could not find enough available IDs"
                ),
                "{out}"
            );
            if env.user.who == Who::Root {
                assert!(out.stderr.contains("`containers`"), "{out}");
            }
            let ps = env.rbox().args(["ps", "-a", "-q"]).output().success();
            assert_eq!(ps.stdout, "", "a refused create leaves no container: {ps}");
            return;
        };
        // one after the other, each as large as its image needs
        let mut off = 0;
        for (name, size) in [("bb", 1024), ("owners", 6001), ("pw", 3000), ("usr", 7001)] {
            create(name, name).success();
            assert_eq!(id_mappings(env, name), mapped(start, off, size), "{name}");
            off += size;
        }
        // the image's owners are the container's (Podman: nobody beyond the range)
        let out = env
            .rbox()
            .args(["start", "-a", "owners"])
            .output()
            .success();
        let lines = out.lines();
        let map: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(map, ["0", &(start.0 + 1024).to_string(), "6001"], "{out}");
        assert_eq!(lines[1], "5000:6000", "{out}");
        // `size=` wins over the image
        env.rbox()
            .args(["create", "--name", "sized", "--network=none"])
            .args(["--userns=auto:size=500", "localhost/owners", "true"])
            .output()
            .success();
        assert_eq!(id_mappings(env, "sized"), mapped(start, off, 500));
        env.rbox()
            .args(["rm", "bb", "owners", "pw", "usr", "sized"])
            .output()
            .success();

        // storage.conf's bounds; the removed containers' ranges are free again
        let conf = env.write(
            "storage.conf",
            "[storage]\n[storage.options]\nauto-userns-min-size = 2000\nauto-userns-max-size = 3000\n",
        );
        let mut off = 0;
        for (name, image, size) in [("b2", "bb", 2000), ("o2", "owners", 3000)] {
            env.rbox()
                .env("CONTAINERS_STORAGE_CONF", &conf)
                .args(["create", "--name", name, "--network=none", "--userns=auto"])
                .arg(format!("localhost/{image}"))
                .arg("true")
                .output()
                .success();
            assert_eq!(id_mappings(env, name), mapped(start, off, size), "{name}");
            off += size;
        }
        env.rbox().args(["rm", "b2", "o2"]).output().success();
    });
}

#[test]
fn auto_parallel_creates_get_disjoint_ranges() {
    for_each_user("userns_auto_parallel", |env| {
        if pool_start(env).is_none() {
            // refused with Podman's text: see auto_sizes_the_range_for_the_image
            return;
        }
        env.import_busybox("localhost/bb");
        let names: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
        let running: Vec<_> = names
            .iter()
            .map(|n| {
                env.rbox()
                    .args(["create", "--name", n, "--network=none"])
                    .args(["--userns=auto:size=300", "localhost/bb", "true"])
                    .spawn()
            })
            .collect();
        for r in running {
            r.wait().success();
        }
        let mut starts = BTreeSet::new();
        let mut ranges = Vec::new();
        for n in &names {
            let (u, g) = id_mappings(env, n);
            assert_eq!(u, g, "{n}: one offset into both pools");
            let f: Vec<u32> = u
                .trim_matches(|c| c == '[' || c == ']' || c == '"')
                .split(':')
                .map(|v| v.parse().unwrap())
                .collect();
            assert_eq!((f[0], f[2]), (0, 300), "{n}: {u}");
            starts.insert(f[1]);
            ranges.push((f[1], f[1] + 300));
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlapping ranges: {ranges:?}");
        }
        assert_eq!(starts.len(), names.len());
        env.rbox().arg("rm").args(&names).output().success();
    });
}

#[test]
fn auto_dev_and_terminal_as_podman() {
    for_each_user("userns_auto_dev", |env| {
        if pool_start(env).is_none() {
            return;
        }
        env.import_busybox("localhost/bb");
        // Podman 4.3.1 (auto and nomap as rboxsub): `0:5:620`, `0:0:755`, `0:0:1777`
        let mut modes = vec!["auto"];
        if env.user.who == Who::Sub {
            modes.push("nomap");
        }
        for mode in modes {
            let out = env
                .rbox()
                .args(["run", "--rm", "-t", "--network=none"])
                .arg(format!("--userns={mode}"))
                .args(["localhost/bb", "stat", "-c", "%u:%g:%a"])
                .args(["/dev/pts/0", "/dev/pts", "/dev/mqueue"])
                .output()
                .success();
            let lines: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
            assert_eq!(lines, ["0:5:620", "0:0:755", "0:0:1777"], "{mode}: {out}");
        }
    });
}

#[test]
fn no_user_runs_without_supplementary_groups() {
    for_each_user("userns_auto_groups", |env| {
        env.import_busybox("localhost/bb");
        let id = |flags: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(flags)
                .args(["localhost/bb", "id"])
                .output()
                .success()
                .text()
        };
        // Podman 4.3.1 as rboxsub: no user given (no -u, no image User) gives no
        // supplementary groups, with or without auto; `-u 0` and nomap give root's; `-u
        // 1000 --group-add 10` gives `groups=10,1000(tester),2000(extra)`
        let (none, root) = (
            "uid=0(root) gid=0(root)",
            "uid=0(root) gid=0(root) groups=0(root)",
        );
        assert_eq!(id(&["-u", "0"]), root);
        if !env.user.has_many_ids() {
            // a single-id namespace denies setgroups: the user's own group (0 inside) stays
            assert_eq!(id(&[]), root);
            return;
        }
        assert_eq!(id(&[]), none);
        assert_eq!(id(&["--group-add", "10"]), format!("{none} groups=10"));
        if pool_start(env).is_some() {
            assert_eq!(id(&["--userns=auto"]), none);
        }
        if env.user.who == Who::Sub {
            assert_eq!(id(&["--userns=nomap"]), root);
        }
        // Podman's exec: only the groups /etc/group lists the user in (`-u 0`: none;
        // `-u 1000`: `extra`, not its own group)
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "g",
                "--network=none",
                "--user",
                "1000",
            ])
            .args(["localhost/bb", "sleep", "300"])
            .output()
            .success();
        let exec = |args: &[&str]| {
            let out = env
                .rbox()
                .arg("exec")
                .args(args)
                .args(["g", "id"])
                .output()
                .success();
            out.text()
        };
        let tester = "uid=1000(tester) gid=1000(tester) groups=2000(extra)";
        assert_eq!(exec(&[]), tester);
        assert_eq!(exec(&["-u", "0"]), none);
        assert_eq!(exec(&["-u", "tester"]), tester);
        env.rbox()
            .args(["rm", "-f", "-t", "0", "g"])
            .output()
            .success();
        // buildah's RUN without USER has root's groups (podman build, 4.3.1)
        env.write("ctx/Containerfile", "FROM localhost/bb\nRUN id\n");
        let out = env
            .rbox()
            .args(["build", "--network=none", "-t", "localhost/built"])
            .arg(env.path("ctx"))
            .output()
            .success();
        assert!(out.stdout.lines().any(|l| l == root), "{out}");
    });
}
