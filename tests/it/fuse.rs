//! The FUSE overlay driver (`--storage-driver=fuse-overlay`) end to end, as every test user:
//! run and exec on it, overlay semantics seen from inside a container and checked in the
//! container's upper directory (the format `rbox diff` and commit read), and the server's
//! life tied to the container's (no process or mount left after `rm -f` or a killed monitor).

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::util::{eventually, for_each_user, require, Cmd, Env, RemoveAll};

const BIG: usize = 24 << 20;

/// The busybox root with a large file `/big`, a directory `/d` holding `/d/x` and `/owned`
/// (1000:100, mode 4750) on top: an image whose files the tests change.
fn image_tar(env: &Env) -> PathBuf {
    let mut src = Vec::new();
    std::fs::File::open(crate::fixtures::busybox_rootfs_tar())
        .unwrap()
        .read_to_end(&mut src)
        .unwrap();
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(&src[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        match h.entry_type() {
            tar::EntryType::Link | tar::EntryType::Symlink => {
                let target = e.link_name().unwrap().unwrap().into_owned();
                let mut h = h.clone();
                out.append_link(&mut h, &path, &target).unwrap();
            }
            _ => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let mut h = h.clone();
                out.append_data(&mut h, &path, &data[..]).unwrap();
            }
        }
    }
    let mut add = |path: &str, data: &[u8], dir: bool| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        out.append_data(&mut h, path, data).unwrap();
    };
    let big: Vec<u8> = (0..BIG as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    add("big", &big, false);
    add("d", &[], true);
    add("d/x", b"x", false);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o4750);
    h.set_uid(1000);
    h.set_gid(100);
    h.set_size(1);
    h.set_mtime(1_700_000_000);
    out.append_data(&mut h, "owned", &b"o"[..]).unwrap();
    let bytes = out.into_inner().unwrap();
    env.write("fuse-image.tar", bytes)
}

/// Whether /dev/fuse opens for this process (else the test is skipped, a failure under CI).
pub(crate) fn fuse_usable() -> bool {
    require(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_ok(),
        "/dev/fuse must open for reading and writing (mode 0666)",
    )
}

/// This env's rbox with `--storage-driver=fuse-overlay`.
fn rbox_on_fuse(env: &Env) -> Cmd {
    let mut c = env.rbox();
    c.arg("--storage-driver=fuse-overlay");
    c
}

fn upper(env: &Env, name: &str) -> PathBuf {
    let id = env.inspect(name, "{{.Id}}");
    env.store().join("containers").join(id).join("upper")
}

fn is_whiteout(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// The pids of the FUSE servers whose parent is `init`.
fn servers_of(init: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|x| x.1).unwrap_or("");
        let ppid = rest.split_whitespace().nth(1).unwrap_or("");
        if comm == "rbox-fuse" && ppid == init {
            v.push(pid);
        }
    }
    v
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // a zombie holds no mount and no file
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
    }
}

#[test]
fn fuse_overlay_semantics_in_a_container() {
    if !fuse_usable() {
        return;
    }
    for_each_user("fusesem", |env| {
        let tar = image_tar(env);
        env.rbox()
            .arg("import")
            .arg(&tar)
            .arg("fimg")
            .output()
            .success();
        let rbox = || rbox_on_fuse(env);
        rbox()
            .args([
                "run",
                "-d",
                "--name",
                "f",
                "--network=none",
                "fimg",
                "sleep",
                "600",
            ])
            .output()
            .success();
        assert_eq!(env.inspect("f", "{{.Driver}}"), "fuse-overlay");
        let sh = |script: &str| {
            rbox()
                .args(["exec", "f", "sh", "-c", script])
                .output()
                .success()
                .text()
        };
        // the root is the FUSE mount
        assert!(sh("cat /proc/mounts").contains("rbox-fuse / fuse"));
        // the image's owners: where the id map has them, and under a single-id map through
        // the owner supervisor, which `rbox exec`'s processes hand their filter to too
        assert_eq!(sh("stat -c '%u:%g %a' /owned"), "1000:100 4750");
        // copy-up of a large lower file on append: the lower bytes kept, once
        let out = sh(&format!(
            "cp /big /tmp/orig && echo tail >> /big && echo more >> /big && \
             head -c {BIG} /big | cmp - /tmp/orig && tail -c 10 /big && wc -c < /big"
        ));
        assert_eq!(out, format!("tail\nmore\n{}", BIG + 10));
        let up = upper(env, "f");
        assert_eq!(
            std::fs::metadata(up.join("big")).unwrap().len(),
            BIG as u64 + 10
        );
        // unlink of a lower file: a whiteout in upper/, and `rbox diff` says D
        sh("rm /etc/passwd");
        assert!(is_whiteout(&up.join("etc/passwd")));
        let diff = env.rbox().args(["diff", "f"]).output().success();
        assert!(diff.lines().contains(&"D /etc/passwd"), "{diff}");
        // rename over the whiteout
        assert_eq!(
            sh("echo fresh > /tmp/p && mv /tmp/p /etc/passwd && cat /etc/passwd"),
            "fresh"
        );
        assert!(std::fs::metadata(up.join("etc/passwd")).unwrap().is_file());
        // rmdir + mkdir: the new directory does not show the lower one's entries
        assert_eq!(
            sh("rm /d/x && rmdir /d && mkdir /d && ls -A /d | wc -l"),
            "0"
        );
        // hard links across copy-up: one file under two names
        assert_eq!(
            sh("ln /big /big2 && echo x >> /big2 && cmp /big /big2 && stat -c %h /big"),
            "2"
        );
        assert_eq!(
            std::fs::metadata(up.join("big")).unwrap().ino(),
            std::fs::metadata(up.join("big2")).unwrap().ino()
        );
        // symlinks, mkdir -p, chmod on a lower file, truncate
        assert_eq!(
            sh(
                "ln -s /etc/hostname /l && readlink /l && mkdir -p /a/b/c && ls -d /a/b/c && \
                chmod 4755 /bin/busybox && stat -c %a /bin/busybox && \
                : > /etc/group && wc -c < /etc/group"
            ),
            "/etc/hostname\n/a/b/c\n4755\n0"
        );
        // rbox cp into the running container (through the FUSE mount), and into the stopped
        // one (a server of its own for the copy)
        let host = env.write("from-host", "copied\n");
        env.give_to_user(&host);
        rbox()
            .arg("cp")
            .arg(&host)
            .arg("f:/etc/running")
            .output()
            .success();
        // a restart mounts the same upper again: the changes are there
        rbox().args(["stop", "-t", "0", "f"]).output().success();
        rbox()
            .arg("cp")
            .arg(&host)
            .arg("f:/etc/stopped")
            .output()
            .success();
        rbox().args(["start", "f"]).output().success();
        assert_eq!(sh("cat /etc/running /etc/stopped"), "copied\ncopied");
        assert_eq!(
            sh("cat /etc/passwd; ls -A /d | wc -l; test -e /etc/shadow-nope || echo ok"),
            "fresh\n0\nok"
        );
        rbox().args(["rm", "-f", "f"]).output().success();
    });
}

#[test]
fn fuse_server_lives_as_long_as_the_container() {
    if !fuse_usable() {
        return;
    }
    for_each_user("fuselife", |env| {
        env.import_busybox("busybox");
        let rbox = || rbox_on_fuse(env);
        // the server runs outside the container: PID 1 is the command, and the process
        // list the container's own
        let out = rbox()
            .args(["run", "--rm", "--network=none", "busybox", "sh", "-c"])
            .arg("echo $(ps -o comm | grep -c rbox-) $(cat /proc/1/comm)")
            .output()
            .success();
        assert_eq!(
            out.text(),
            "0 sh",
            "no server inside the container's pid namespace"
        );
        // a command that waits for all its children (busybox tar) as PID 1: the server is
        // none of them
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        t.append_data(&mut h, "x", &b"x\n"[..]).unwrap();
        let tarball = env.write("t.tar", t.into_inner().unwrap());
        env.give_to_user(&tarball);
        rbox()
            .args(["run", "--rm", "--network=none", "-v"])
            .arg(format!("{}:/t.tar", tarball.display()))
            .args(["busybox", "tar", "-C", "/tmp", "-xf", "/t.tar"])
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .success();

        for how in ["rm -f", "killed monitor"] {
            rbox()
                .args([
                    "run",
                    "-d",
                    "--name",
                    "l",
                    "--network=none",
                    "busybox",
                    "sleep",
                    "600",
                ])
                .output()
                .success();
            // the server is the monitor's child, as the init is
            let init = env.inspect("l", "{{.State.Pid}}");
            let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
            let monitor: i32 = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let servers = servers_of(&monitor.to_string());
            assert_eq!(
                servers.len(),
                1,
                "{how}: one server under monitor {monitor}"
            );
            if how == "rm -f" {
                rbox().args(["rm", "-f", "l"]).output().success();
            } else {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(monitor),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
            }
            eventually(&format!("{how}: the FUSE server {servers:?} exits"), || {
                servers.iter().all(|&p| gone(p))
            });
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(
                !mounts.contains(&env.store().display().to_string()),
                "{how}: a mount of the store is left:\n{mounts}"
            );
            if how != "rm -f" {
                rbox().args(["rm", "-f", "l"]).output().success();
            }
        }
    });
}

#[test]
fn fuse_overlay_is_named_and_refused_where_it_cannot_work() {
    for_each_user("fusename", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["--storage-driver=btrfs", "create", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("use overlay, fuse-overlay or vfs"),
            "{out}"
        );
        if !fuse_usable() {
            return;
        }
        env.rbox()
            .args([
                "--storage-driver=fuse-overlay",
                "create",
                "--name",
                "m",
                "busybox",
                "true",
            ])
            .output()
            .success();
        // `rbox mount` serves a stopped one with a server of its own (see mount_fuse.rs);
        // `rbox rm` unmounts it (root's mount is in the host's namespace)
        let mut c = env.rbox();
        if env.user.who != crate::util::Who::Root {
            c = env.rbox();
            c.args(["unshare", env!("CARGO_BIN_EXE_rbox")]);
            c.arg(format!("--root={}", env.store().display()));
            c.arg(format!("--runroot={}", env.runroot().display()));
        }
        let out = c.args(["mount", "m"]).output().success();
        assert!(out.text().ends_with("/merged"), "{out}");
        env.rbox().args(["rm", "m"]).output().success();
    });
}

/// Where kernel overlay cannot be mounted (here: the store's probe memo says so for this
/// kernel, as after a failed probe on NFS or an old kernel), `run` picks the FUSE overlay by
/// itself, and records it.
#[test]
fn fuse_overlay_is_chosen_when_overlay_cannot_mount() {
    if !fuse_usable() {
        return;
    }
    for_each_user("fuseauto", |env| {
        env.import_busybox("busybox");
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let memo = env.store().join("overlay-probe");
        std::fs::write(&memo, format!("{} no\n", kernel.trim())).unwrap();
        env.give_to_user(&memo);
        let out = env
            .rbox()
            .args(["run", "--name", "auto", "--network=none", "busybox"])
            .args(["sh", "-c", "grep -c '^rbox-fuse / ' /proc/mounts"])
            .output()
            .success();
        assert_eq!(out.text(), "1");
        assert_eq!(env.inspect("auto", "{{.Driver}}"), "fuse-overlay");
        env.rbox().args(["rm", "auto"]).output().success();
    });
}

/// A package manager on the FUSE overlay: in a Debian root, a package built in the container
/// is installed, reinstalled and purged by dpkg (renames over existing files, hard links,
/// fsyncs, its database rewritten), and GNU mv of a lower directory falls back from EXDEV.
#[test]
fn fuse_overlay_runs_dpkg() {
    if !fuse_usable() {
        return;
    }
    let Some(tar) = crate::fixtures::debian_rootfs_tar() else {
        return;
    };
    for_each_user("fusedpkg", |env| {
        env.import_debian(&tar);
        let script = r#"set -e
mkdir -p /tmp/p/DEBIAN /tmp/p/usr/share/rboxt
printf 'Package: rboxt\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n' > /tmp/p/DEBIAN/control
echo hi > /tmp/p/usr/share/rboxt/f
dpkg-deb --build /tmp/p /tmp/rboxt.deb >/dev/null
dpkg -i /tmp/rboxt.deb >/dev/null
dpkg -s rboxt | grep '^Status'
cat /usr/share/rboxt/f
dpkg -i /tmp/rboxt.deb >/dev/null
dpkg -P rboxt >/dev/null
test ! -e /usr/share/rboxt && echo purged
dpkg --verify coreutils && echo verified
mv /usr/share/doc /usr/share/doc2 && test -d /usr/share/doc2/coreutils && echo moved"#;
        let out = env
            .rbox()
            .args([
                "--storage-driver=fuse-overlay",
                "run",
                "--rm",
                "--network=none",
            ])
            .args(["debian:bookworm", "bash", "-c", script])
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .success();
        assert_eq!(
            out.text(),
            "Status: install ok installed\nhi\npurged\nverified\nmoved"
        );
    });
}

/// The multi-layer, multi-owner image checks of the kernel overlay and copy drivers (owners
/// through the id map, modes and setuid, hard links, symlinks, mtimes, image whiteouts and
/// opaque directories, runtime whiteouts, chown inside) on the FUSE overlay.
#[test]
fn fuse_overlay_passes_the_multi_layer_image_checks() {
    if !fuse_usable() {
        return;
    }
    for_each_user("fusemulti", |env| {
        env.load(&crate::fixtures::multiid_oci_archive()).success();
        crate::images::check_multiid_with(env, "multiid", "fuse-overlay");
    });
}

/// O_TMPFILE on the FUSE overlay (issue 12), with the static helper inside a container: an
/// unnamed file in a lower directory is written, read back and linked in through
/// /proc/self/fd, also over a deleted lower file; one never linked and one opened O_EXCL
/// (whose link fails with ENOENT) leave nothing in the container's upper directory. Where
/// the id map has more ids, a non-root user's file is that user's.
#[test]
fn fuse_overlay_tmpfile_is_linked_into_place() {
    if !fuse_usable() {
        return;
    }
    for_each_user("fusetmpfile", |env| {
        let _rm = RemoveAll(env);
        env.load(&crate::fixtures::helper_docker_archive())
            .success();
        let rbox = || rbox_on_fuse(env);
        rbox()
            .args(["run", "-d", "--name", "t", "--network=none"])
            .args(["--entrypoint", "sleep", "helper", "600"])
            .output()
            .success();
        // `rbox exec` ARGS (the container's name among them)
        let exec = |args: &[&str]| rbox().arg("exec").args(args).output().success().text();
        let up = upper(env, "t");
        // /etc is a lower directory: the tmpfile copies it up, the link names it there
        assert_eq!(
            exec(&["t", "/helper", "tmpfile", "/etc", "made unnamed", "named"]),
            "nlink=0\nlinked"
        );
        assert_eq!(
            exec(&[
                "t",
                "sh",
                "-c",
                "cat /etc/named; echo; stat -c '%u:%g %a %h' /etc/named"
            ]),
            "made unnamed\n0:0 640 1"
        );
        assert_eq!(
            std::fs::read_to_string(up.join("etc/named")).unwrap(),
            "made unnamed"
        );
        // over a deleted lower file: the whiteout makes way
        exec(&["t", "rm", "/srv/in-workdir"]);
        assert!(is_whiteout(&up.join("srv/in-workdir")));
        assert_eq!(
            exec(&[
                "t",
                "/helper",
                "tmpfile",
                "/srv",
                "back again",
                "in-workdir"
            ]),
            "nlink=0\nlinked"
        );
        assert_eq!(exec(&["t", "cat", "/srv/in-workdir"]), "back again");
        assert!(std::fs::metadata(up.join("srv/in-workdir"))
            .unwrap()
            .is_file());
        // never linked, and O_EXCL: gone with the fd
        let before = crate::util::tree(&up);
        assert_eq!(
            exec(&["t", "/helper", "tmpfile", "/etc", "left"]),
            "nlink=0"
        );
        assert_eq!(
            exec(&["t", "/helper", "tmpfile", "/etc", "excl", "excl", "excl"]),
            "nlink=0\nlink=errno2"
        );
        assert_eq!(crate::util::tree(&up), before);
        assert_eq!(
            exec(&["t", "sh", "-c", "test -e /etc/excl || echo absent"]),
            "absent"
        );
        // a user of the container owns the file it makes (the id map must have the user)
        if env.user.has_many_ids() {
            assert_eq!(
                exec(&[
                    "--user",
                    "1000:1000",
                    "t",
                    "/helper",
                    "tmpfile",
                    "/home/tester",
                    "mine",
                    "mine"
                ]),
                "nlink=0\nlinked"
            );
            assert_eq!(
                exec(&["t", "stat", "-c", "%u:%g %a", "/home/tester/mine"]),
                "1000:1000 640"
            );
        }
    });
}
