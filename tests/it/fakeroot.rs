//! Fake root (`--security-opt fakeroot`, and `fakeroot=auto` in `rbox build`'s RUN steps):
//! the seccomp filter makes chown, the set*id calls and mknod of device nodes succeed without
//! doing anything, so that what a package manager does as root carries on where the user
//! namespace maps a single id (rboxnosub). Fifos are still really made. Where the ids are
//! many, files keep their real owner; on a single id the root is the FUSE overlay, whose
//! owner supervisor records a chown of a file on it (and fakes the rest). Every test runs
//! once per identity.

use crate::fixtures;
use crate::util::{for_each_user, Env};

/// chown, chgrp, su (setgroups, setgid, setuid), mknod of a character and a block device
/// and of a fifo: each line says whether the command succeeded, then the owner of the
/// chowned file and whether the fifo is one.
const SCRIPT: &str = r#"
touch /tmp/f
chown 100:100 /tmp/f 2>/dev/null; echo chown=$?
chgrp 101 /tmp/f 2>/dev/null; echo chgrp=$?
su -s /bin/sh nobody -c true 2>/dev/null; echo su=$?
mknod /tmp/c c 1 3 2>/dev/null; echo chr=$?
mknod /tmp/b b 7 0 2>/dev/null; echo blk=$?
mknod /tmp/p p; echo fifo=$?
stat -c owner=%u:%g /tmp/f
test -p /tmp/p && echo is-fifo
touch /dev/shm/f && chown 100 /dev/shm/f 2>/dev/null; echo off-root=$?
"#;

fn script(env: &Env, opts: &[&str]) -> Vec<String> {
    env.rbox()
        .args(["run", "--rm", "--network=none"])
        .args(opts)
        .args(["busybox", "sh", "-c", SCRIPT])
        .output()
        .success()
        .lines()
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn fakeroot_fakes_chown_setuid_and_device_nodes() {
    for_each_user("fakeroot_run", |env| {
        env.import_busybox("busybox");
        let faked = script(env, &["--security-opt", "fakeroot"]);
        // many ids: nothing was changed, the file keeps its real owner; a single id: the
        // owner supervisor of the FUSE overlay recorded it (and faked the chown of a file
        // off the root, on the /dev/shm tmpfs)
        let owner = if env.user.has_many_ids() {
            "owner=0:0"
        } else {
            "owner=100:101"
        };
        assert_eq!(
            faked,
            [
                "chown=0",
                "chgrp=0",
                "su=0",
                "chr=0",
                "blk=0",
                "fifo=0",
                owner,
                "is-fifo",
                "off-root=0"
            ],
            "{}",
            env.user.name
        );
        let real = script(env, &[]);
        if env.user.has_many_ids() {
            // without it, a namespace with many ids really chowns and changes ids
            assert_eq!(&real[..3], ["chown=0", "chgrp=0", "su=0"]);
            assert_eq!(real[6], "owner=100:101");
        } else {
            // a single-id map: busybox has files of other owners (/home/tester), so the root
            // is the FUSE overlay, whose owner supervisor makes chown real (owners.rs,
            // fuse_auto.rs); setgroups is still EPERM
            assert_eq!(&real[..3], ["chown=0", "chgrp=0", "su=1"], "{real:?}");
            assert_eq!(real[6], "owner=100:101");
            // off the root the kernel refuses the id it lacks
            assert_eq!(real[8], "off-root=1");
        }
        assert_eq!(real[7], "is-fifo");
        // `auto` fakes only on a single-id map
        let auto = script(env, &["--security-opt", "fakeroot=auto"]);
        if env.user.has_many_ids() {
            assert_eq!(auto[6], "owner=100:101");
        } else {
            assert_eq!(&auto[..3], ["chown=0", "chgrp=0", "su=0"]);
            assert_eq!(auto[6..], ["owner=100:101", "is-fifo", "off-root=0"]);
        }
        // with seccomp=unconfined the fake calls are still there, and nothing else is filtered
        let unconfined = script(
            env,
            &[
                "--security-opt",
                "seccomp=unconfined",
                "--security-opt",
                "fakeroot",
            ],
        );
        assert_eq!(unconfined, faked);

        // kept in the record: inspect shows it, and exec gets the same filter
        env.rbox()
            .args(["create", "--name", "fr", "--network=none"])
            .args(["--security-opt", "fakeroot", "busybox", "sleep", "300"])
            .output()
            .success();
        assert_eq!(
            env.inspect("fr", "{{.HostConfig.SecurityOpt}}"),
            "[fakeroot]"
        );
        env.rbox().args(["start", "fr"]).output().success();
        let out = env
            .rbox()
            .args([
                "exec",
                "fr",
                "sh",
                "-c",
                "touch /f && chown 100 /f && echo ok",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "ok");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "fr"])
            .output()
            .success();

        let bad = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--security-opt",
                "fakeroot=yes",
                "busybox",
                "true",
            ])
            .output()
            .rbox_error();
        assert!(
            bad.stderr.contains(
                "invalid --security-opt `fakeroot=yes`: give fakeroot, fakeroot=true, fakeroot=false or fakeroot=auto"
            ),
            "{bad}"
        );
    });
}

#[test]
fn fakeroot_build_run_chowns_on_a_single_id_map() {
    for_each_user("fakeroot_build", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\n\
             RUN touch /f && chown 100:100 /f && su -s /bin/sh nobody -c true \
             && mknod /p p && test -p /p\n",
        );
        env.rbox()
            .args(["build", "--network=none", "-t", "chowned"])
            .arg(env.path("work/ctx"))
            .output()
            .success();
        let owner = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "chowned",
                "stat",
                "-c",
                "%u:%g",
                "/f",
            ])
            .output()
            .success()
            .text();
        // with many ids the chown was real; on a single id the step's root is the FUSE
        // overlay, whose owner supervisor recorded it: the layer keeps it either way
        assert_eq!(owner, "100:100", "{}", env.user.name);
    });
}

/// A package whose files belong to uid and gid 100, as `ar` and `tar` write it.
fn foreign_owned_deb(env: &Env) -> std::path::PathBuf {
    let dir = env.path("deb");
    std::fs::create_dir_all(dir.join("data/opt/fr")).unwrap();
    std::fs::create_dir_all(dir.join("control")).unwrap();
    std::fs::write(dir.join("data/opt/fr/owned"), "owned\n").unwrap();
    std::fs::create_dir_all(dir.join("data/opt/fr/more")).unwrap();
    std::fs::write(dir.join("data/opt/fr/more/f"), "more\n").unwrap();
    std::fs::write(
        dir.join("control/control"),
        "Package: frtest\nVersion: 1.0\nArchitecture: all\nMaintainer: rbox <rbox@example.org>\nDescription: files of another owner\n",
    )
    .unwrap();
    std::fs::write(dir.join("debian-binary"), "2.0\n").unwrap();
    let sh = |script: &str| {
        let st = std::process::Command::new("sh")
            .args(["-ec", script])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
    };
    sh("tar -C data --owner=100 --group=100 -czf data.tar.gz ./opt");
    sh("tar -C control --owner=0 --group=0 -czf control.tar.gz ./control");
    sh("rm -f fr.deb && ar rc fr.deb debian-binary control.tar.gz data.tar.gz");
    let deb = dir.join("fr.deb");
    env.give_to_user(&deb);
    deb
}

#[test]
fn fakeroot_dpkg_installs_foreign_owned_files() {
    let Some(tar) = fixtures::debian_rootfs_tar() else {
        return;
    };
    if !crate::util::require(crate::util::have("ar"), "ar (binutils) is not installed") {
        return;
    }
    for_each_user("fakeroot_dpkg", |env| {
        env.import_debian(&tar);
        let deb = foreign_owned_deb(env);
        let v = format!("{}:/fr.deb:ro", deb.display());
        let dpkg = |opts: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none", "-v", &v])
                .args(opts)
                .args(["debian:bookworm", "sh", "-c"])
                .arg("dpkg -i /fr.deb >/dev/null && stat -c %u /opt/fr/owned")
                .output()
        };
        // fakeroot fakes the chown where the ids are many; on a single id the FUSE
        // overlay's owner supervisor records it
        let out = dpkg(&["--security-opt", "fakeroot"]).success();
        let want = if env.user.has_many_ids() { "0" } else { "100" };
        assert_eq!(out.text(), want, "{}", env.user.name);
        // a single-id map too: Debian has files of other owners, so its root is the FUSE
        // overlay, whose owner supervisor takes dpkg's chown (owners.rs, fuse_auto.rs)
        let plain = dpkg(&[]);
        assert_eq!(plain.success().text(), "100");
        // apt-get, offline, of the local package: its download sandbox checks that the
        // group switch to _apt really happened, which fakeroot fakes; rbox's APT_CONFIG
        // keeps it root
        let apt = env
            .rbox()
            .args(["run", "--rm", "--network=none", "-v", &v])
            .args(["--security-opt", "fakeroot", "debian:bookworm"])
            .args([
                "sh",
                "-c",
                "apt-get install -y -q /fr.deb && echo $APT_CONFIG",
            ])
            .output()
            .success();
        assert_eq!(apt.lines().last(), Some(&"/dev/.rbox-apt.conf"), "{apt}");
        assert!(!apt.stderr.contains("E: "), "{apt}");
    });
}

/// Issue 10: on any map, a RUN step's `apt-get install` and `useradd`/`chown` succeed, and the
/// layer records the owners the step gave (on a single id: through the FUSE overlay's owner
/// supervisor; apt stays root through rbox's APT_CONFIG).
#[test]
fn build_apt_get_install_and_chown_on_any_map() {
    let Some(tar) = fixtures::debian_rootfs_tar() else {
        return;
    };
    if !crate::util::require(crate::util::have("ar"), "ar (binutils) is not installed") {
        return;
    }
    for_each_user("fakeroot_build_apt", |env| {
        env.import_debian(&tar);
        let ctx = env.write(
            "aptctx/Containerfile",
            "FROM debian:bookworm\n\
             COPY fr.deb /tmp/fr.deb\n\
             RUN apt-get install -y -q /tmp/fr.deb && rm /tmp/fr.deb \\\n\
             \x20 && useradd -m -u 1234 builder && chown -R builder: /opt/fr/more \\\n\
             \x20 && stat -c '%u:%g %n' /opt/fr/owned /home/builder\n",
        );
        let ctx = ctx.parent().unwrap();
        let deb = foreign_owned_deb(env);
        std::fs::copy(&deb, ctx.join("fr.deb")).unwrap();
        env.give_to_user(ctx);
        let out = env
            .rbox()
            .args(["build", "--network=none", "-t", "aptbuilt"])
            .arg(ctx)
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .success();
        // the step itself sees the owners it gave
        assert!(out.stdout.contains("100:100 /opt/fr/owned\n"), "{out}");
        assert!(out.stdout.contains("1234:1234 /home/builder\n"), "{out}");
        assert!(!out.stderr.contains("E: "), "{out}");
        let owners = env
            .rbox()
            .args(["run", "--rm", "--network=none", "aptbuilt", "stat", "-c"])
            .args([
                "%u:%g %n",
                "/opt/fr/owned",
                "/opt/fr/more/f",
                "/home/builder",
            ])
            .output()
            .success();
        assert_eq!(
            owners.lines(),
            [
                "100:100 /opt/fr/owned",
                "1234:1234 /opt/fr/more/f",
                "1234:1234 /home/builder"
            ],
            "{}",
            env.user.name
        );
        // the layer itself (not only what a FUSE root shows): its tar headers
        let saved = env.path("aptbuilt.tar");
        env.rbox()
            .args(["save", "-o"])
            .arg(&saved)
            .arg("aptbuilt")
            .output()
            .success();
        let listing = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {d} && mkdir -p x && tar -C x -xf aptbuilt.tar && \
                 for l in $(find x -type f -size +1k); do tar -tvf $l 2>/dev/null; done",
                d = env.path("").display()
            ))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing
                .lines()
                .any(|l| l.contains("100/100") && l.ends_with("opt/fr/owned")),
            "{listing}"
        );
        assert!(
            listing
                .lines()
                .any(|l| l.contains("1234/1234") && l.ends_with("home/builder/")),
            "{listing}"
        );
    });
}

#[test]
fn fakeroot_from_containers_conf() {
    for_each_user("fakeroot_conf", |env| {
        env.import_busybox("busybox");
        let run = |conf: &str, opts: &[&str]| {
            let path = env.write("containers.conf", conf);
            env.rbox()
                .env("CONTAINERS_CONF", &path)
                .args(["run", "--rm", "--network=none"])
                .args(opts)
                .args([
                    "busybox",
                    "sh",
                    "-c",
                    "touch /f && chown 100 /f && stat -c %u /f",
                ])
                .output()
        };
        // the setting fakes chown for everyone (on a single id the FUSE overlay records it);
        // the command line wins over it
        let on = if env.user.has_many_ids() { "0" } else { "100" };
        assert_eq!(
            run("[containers]\nfakeroot = true\n", &[]).success().text(),
            on
        );
        let off = run(
            "[containers]\nfakeroot = true\n",
            &["--security-opt", "fakeroot=false"],
        );
        let auto = run("[containers]\nfakeroot = \"auto\"\n", &[]);
        // a single-id map too: the FUSE overlay's owner supervisor chowns (owners.rs)
        assert_eq!(off.success().text(), "100");
        assert_eq!(auto.success().text(), "100");
        let bad = run("[containers]\nfakeroot = \"yes\"\n", &[]).rbox_error();
        assert!(
            bad.stderr.contains(
                r#"invalid fakeroot "yes" in containers.conf: give true, false or "auto""#
            ),
            "{bad}"
        );
    });
}
