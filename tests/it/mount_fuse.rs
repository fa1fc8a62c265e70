//! `rbox mount` of containers whose root needs a server (the FUSE overlay, `--image-file`'s
//! squashfs): inside `rbox unshare` (as root directly), a detached FUSE server serves the
//! mount for exactly as long as it exists. The mount shows the owners on disk (the
//! container's numbers; folded to root under a single-id map), what is written there is in
//! the container at its next start, and `rbox unmount`, `rbox rm` or the end of the
//! namespace leave no server process and no mount.

use std::path::Path;

use crate::util::{eventually, for_each_user, have, require, Env, Output, Who};

/// Runs `script` with rbox as `"$@"`: inside `rbox unshare` for a user, directly for root
/// (who mounts in the host's namespace).
fn in_ns(env: &Env, script: &str) -> Output {
    env.sh_with_rbox(script, env.user.who != Who::Root).output()
}

/// Whether process `pid` has ended (gone, or a zombie its new parent has not reaped yet).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// The pid in a `server` record line (`PID STARTTIME`).
fn server_pid(line: &str) -> i32 {
    line.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a server record: {line:?}"))
}

/// The owner the image gives `/home/tester` (1000), as a mount shows it: under a single-id
/// map folded to the one id (root), as the container's kernel sees it.
fn tester_in_mount(env: &Env) -> &'static str {
    if env.user.has_many_ids() {
        "1000:1000 755"
    } else {
        "0:0 755"
    }
}

#[test]
fn mount_fuse_stopped_container_is_served_until_unmounted() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    for_each_user("mountfuse", |env| {
        env.import_busybox("busybox");
        let show = "stat -c '%u:%g %a' /etc/fromhost /home/tester; cat /etc/fromhost";
        env.rbox()
            .args(["--storage-driver=fuse-overlay", "create", "--network=none"])
            .args(["--name", "c", "busybox", "sh", "-c", show])
            .output()
            .success();
        let script = r#"set -e
            p=$("$@" mount c)
            cat "$(dirname "$p")/server"
            stat -c '%u:%g %a' "$p/etc/passwd" "$p/home/tester"
            echo from-host > "$p/etc/fromhost"
            stat -c '%u:%g %a' "$p/etc/fromhost"
            "$@" mount | grep -c "$p"
            "$@" start c 2>&1 || true
            "$@" unmount c
            grep -c " $p " /proc/self/mountinfo || true"#;
        let out = in_ns(env, script).success();
        let lines = out.lines();
        assert_eq!(lines.len(), 8, "{out}");
        let pid = server_pid(lines[0]);
        assert_eq!(lines[1], "0:0 644", "{out}");
        assert_eq!(lines[2], tester_in_mount(env), "{out}");
        let fromhost = lines[3];
        assert!(fromhost.starts_with("0:0 "), "{out}");
        assert_eq!(lines[4], "1", "the list shows the mount: {out}");
        assert_eq!(
            lines[5],
            "Error: container c is mounted (`rbox mount`, FUSE server pid {pid}): unmount it \
             first with `rbox unmount c` inside `rbox unshare`"
                .replace("{pid}", &pid.to_string()),
            "{out}"
        );
        assert_eq!(lines[6], "c", "{out}");
        assert_eq!(lines[7], "0", "the mount is gone: {out}");
        eventually("the mount's server ends with its unmount", || ended(pid));
        // the container sees the file, with the owners it sees for the image's
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(
            out.lines(),
            [fromhost, "1000:1000 755", "from-host"],
            "{out}"
        );

        // removed while mounted (Podman removes a mounted container too): unmounted first
        let script = r#"set -e
            p=$("$@" mount c)
            cat "$(dirname "$p")/server"
            "$@" rm c
            grep -c " $p " /proc/self/mountinfo || true"#;
        let out = in_ns(env, script).success();
        let lines = out.lines();
        assert_eq!(lines[1..], ["c", "0"], "{out}");
        let pid = server_pid(lines[0]);
        eventually("the server of a removed container ends", || ended(pid));
        let out = env.rbox().args(["ps", "-aq"]).output().success();
        assert_eq!(out.text(), "", "{out}");
    });
}

#[test]
fn mount_fuse_ends_with_the_unshare_namespace() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    for_each_user("mountfusens", |env| {
        if env.user.who == Who::Root {
            // root mounts in the host's namespace, which never ends: the test above unmounts
            return;
        }
        env.import_busybox("busybox");
        env.rbox()
            .args(["--storage-driver=fuse-overlay", "create", "--network=none"])
            .args(["--name", "c", "busybox", "cat", "/etc/left"])
            .output()
            .success();
        // a plain umount ends the server too
        let script = r#"set -e
            p=$("$@" mount c)
            cat "$(dirname "$p")/server"
            umount "$p"
            "$@" mount | wc -l"#;
        let out = in_ns(env, script).success();
        assert_eq!(out.lines()[1], "0", "{out}");
        let pid = server_pid(out.lines()[0]);
        eventually("the server ends with a plain umount", || ended(pid));
        // the shell exits with the container mounted: its namespace, and the mount, go
        let script = r#"set -e
            p=$("$@" mount c)
            cat "$(dirname "$p")/server"
            echo left > "$p/etc/left""#;
        let out = in_ns(env, script).success();
        let pid = server_pid(out.lines()[0]);
        eventually("the server ends with its namespace", || ended(pid));
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(out.text(), "left");
        env.rbox().args(["rm", "c"]).output().success();
    });
}

/// Removed from outside the namespace that has it mounted: the mount there is detached and
/// its server ends; a second `rbox mount` elsewhere meanwhile is refused.
#[test]
fn mount_fuse_rm_from_outside_ends_the_mount() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    for_each_user("mountfuserm", |env| {
        if env.user.who == Who::Root {
            // root's mount is in the host's namespace: removed from there in the test above
            return;
        }
        env.import_busybox("busybox");
        env.rbox()
            .args(["--storage-driver=fuse-overlay", "create", "--network=none"])
            .args(["--name", "c", "busybox", "true"])
            .output()
            .success();
        let script = r#"set -e
            p=$("$@" mount c)
            echo $$
            cat "$(dirname "$p")/server"
            read x
            grep -c " $p " /proc/self/mountinfo || true"#;
        let mut shell = env.sh_with_rbox(script, true).spawn();
        let _sh: i32 = shell.read_line().trim().parse().unwrap();
        let pid = server_pid(&shell.read_line());
        let out = in_ns(env, "\"$@\" mount c").rbox_error();
        assert_eq!(
            out.stderr.trim(),
            format!(
                "Error: mount container c: it is mounted in another namespace (FUSE server pid \
                 {pid}): unmount it there first, or use that `rbox unshare`"
            ),
            "{out}"
        );
        env.rbox().args(["rm", "c"]).output().success();
        eventually("the server of the removed container ends", || ended(pid));
        shell.write_stdin(b"\n");
        let out = shell.wait().success();
        assert_eq!(out.text(), "0", "the mount is gone there too: {out}");
    });
}

/// A running container on the FUSE overlay is not mounted (see mount::mount_served), alone
/// or among `mount -a`'s, which mounts the others.
#[test]
fn mount_fuse_refuses_a_running_container() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    for_each_user("mountfuserun", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args([
                "--storage-driver=fuse-overlay",
                "run",
                "-d",
                "--network=none",
            ])
            .args(["--name", "r", "busybox", "sleep", "600"])
            .output()
            .success();
        let out = in_ns(env, "\"$@\" mount r").rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: mount container r: it runs on the FUSE overlay, whose server caches its \
             files: a second server would see stale files; stop it first, or use `rbox cp` or \
             `rbox exec`",
            "{out}"
        );
        // `mount -a` mounts the others and reports it at the end
        env.rbox()
            .args(["--storage-driver=fuse-overlay", "create", "--network=none"])
            .args(["--name", "s", "busybox", "true"])
            .output()
            .success();
        let out = in_ns(env, "\"$@\" mount -a; echo \"rc=$?\"; \"$@\" unmount -a").success();
        let s = env.inspect("s", "{{.Id}}");
        let point = env.runroot().join("mounts").join(&s).join("merged");
        assert_eq!(
            out.lines(),
            [point.display().to_string(), "rc=125".into(), s.clone()],
            "{out}"
        );
        assert!(
            out.stderr
                .contains("mount container r: it runs on the FUSE overlay"),
            "{out}"
        );
        env.rbox().args(["rm", "s"]).output().success();
        // nothing was left mounted nor recorded
        let dir = env
            .runroot()
            .join("mounts")
            .join(env.inspect("r", "{{.Id}}"));
        assert!(!dir.join("server").exists());
        env.rbox().args(["rm", "-f", "-t0", "r"]).output().success();
    });
}

/// keep-id (FUSE overlay with a shift) and, with a range, nomap: the mount shows the image's
/// owners as the container shows them, and what root writes there is root's in the container.
#[test]
fn mount_fuse_shows_keep_id_and_nomap_owners_as_the_container() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    for_each_user("mountfuseid", |env| {
        if env.user.who == Who::Root {
            // keep-id and nomap are rootless modes
            return;
        }
        env.import_busybox("busybox");
        let mut modes = vec!["keep-id"];
        if env.user.has_many_ids() {
            modes.extend(["nomap"]);
        }
        for mode in modes {
            let name = mode.replace('-', "");
            let show = "stat -c %u:%g /etc/passwd /etc/fromhost";
            env.rbox()
                .args([
                    "create",
                    "--network=none",
                    "--userns",
                    mode,
                    "--name",
                    &name,
                ])
                .args(["busybox", "sh", "-c", show])
                .output()
                .success();
            assert_eq!(env.inspect(&name, "{{.Driver}}"), "fuse-overlay");
            let script = r#"set -e
                p=$("$@" mount "$N")
                stat -c %u:%g "$p/etc/passwd"
                echo x > "$p/etc/fromhost"
                stat -c %u:%g "$p/etc/fromhost"
                "$@" unmount "$N" >/dev/null"#
                .replace("$N", &name);
            let out = in_ns(env, &script).success();
            assert_eq!(out.lines(), ["0:0", "0:0"], "{mode}: {out}");
            let out = env.rbox().args(["start", "-a", &name]).output().success();
            // the container's view of the image's root: its own root, or with a single id
            // (keep-id without a range) the one id it has, the caller's
            let root = if env.user.has_many_ids() {
                "0:0".to_string()
            } else {
                format!("{}:{}", env.user.uid, env.user.gid)
            };
            assert_eq!(out.lines(), [&root[..], &root[..]], "{mode}: {out}");
            env.rbox().args(["rm", &name]).output().success();
        }
    });
}

/// `--image-file`: the squashfs is served by the mount's server's own squashfuse, which ends
/// with it.
#[test]
fn mount_fuse_serves_an_image_file() {
    if !(crate::fuse::fuse_usable()
        && require(
            have("squashfuse") && have("sqfstar"),
            "squashfuse and squashfs-tools must be installed",
        ))
    {
        return;
    }
    for_each_user("mountfusesqfs", |env| {
        env.import_busybox("busybox");
        let file = env.path("images/bb.sqfs");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        env.give_to_user(file.parent().unwrap());
        env.rbox()
            .args(["save", "--format", "squashfs", "-o"])
            .arg(&file)
            .arg("busybox")
            .output()
            .success();
        let before = std::fs::read(&file).unwrap();
        env.rbox()
            .args(["create", "--network=none", "--name", "w", "--image-file"])
            .arg(&file)
            .args(["cat", "/etc/fromhost"])
            .output()
            .success();
        let script = r#"set -e
            p=$("$@" mount w)
            pid=$(cut -d' ' -f1 "$(dirname "$p")/server")
            echo $pid
            echo $(cat /proc/$pid/task/*/children)
            test -x "$p/bin/busybox" && echo busybox
            echo from-host > "$p/etc/fromhost"
            "$@" unmount w"#;
        let out = in_ns(env, script).success();
        let lines = out.lines();
        assert_eq!(lines[2..], ["busybox", "w"], "{out}");
        let pid: i32 = lines[0].parse().unwrap();
        let squashfuse: Vec<i32> = lines[1]
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(squashfuse.len(), 1, "the server's squashfuse: {out}");
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", squashfuse[0]));
        assert!(
            comm.as_deref().unwrap_or("squashfuse\n") == "squashfuse\n" || ended(squashfuse[0]),
            "{comm:?}"
        );
        eventually("the server and its squashfuse end", || {
            ended(pid) && ended(squashfuse[0])
        });
        let out = env.rbox().args(["start", "-a", "w"]).output().success();
        assert_eq!(out.text(), "from-host");
        // the file itself is never written
        assert!(std::fs::read(&file).unwrap() == before);
        assert!(Path::new(&file).exists());
        env.rbox().args(["rm", "w"]).output().success();
    });
}
