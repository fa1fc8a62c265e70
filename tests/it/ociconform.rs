//! The runtime spec's requirements that the OCI runtime-tools validation suite checks, each
//! tested directly on a bundle (not by running the suite; bench/results/conformance-*.md has
//! the suite's counts): what rbox got wrong when the suite first ran against it.

use serde_json::json;

use crate::ociruntime::{bundle, edit, oci, range};
use crate::util::{self, Who};

/// A spec without a user namespace (what runc, crun and the suite write by default) runs
/// for an unprivileged user too, as crun runs it: in a user namespace rbox adds, where
/// container root is the user and ids 1.. are its subordinate range when it has one.
#[test]
fn conform_rootless_spec_without_user_namespace_runs() {
    util::for_each_user("conform_nouserns", |env| {
        let b = bundle(
            env,
            "b",
            &[
                "sh",
                "-c",
                "cat /proc/self/uid_map /proc/self/gid_map; id -u",
            ],
        );
        edit(env, &b, |c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "user");
            let linux = c["linux"].as_object_mut().unwrap();
            linux.remove("uidMappings");
            linux.remove("gidMappings");
        });
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "n1"]).success();
        let text = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        match env.user.who {
            // root: no user namespace at all
            Who::Root => assert!(text.starts_with("0 0 4294967295 0 0 4294967295 0"), "{out}"),
            _ => {
                let (uid, gid) = (env.user.uid, env.user.gid);
                let (u, g) = match (
                    range("/etc/subuid", &env.user.name),
                    range("/etc/subgid", &env.user.name),
                ) {
                    (Some((us, un)), Some((gs, gn))) => {
                        (format!(" 1 {us} {un}"), format!(" 1 {gs} {gn}"))
                    }
                    _ => (String::new(), String::new()),
                };
                assert_eq!(text, format!("0 {uid} 1{u} 0 {gid} 1{g} 0"), "{out}");
            }
        }
    });
}

/// A seccomp profile written before close_range(2) existed (the suite's default, Docker's
/// old one: default action ERRNO) does not stop the process from starting: the runtime's
/// own work before exec is not the process's to filter.
#[test]
fn conform_seccomp_profile_without_close_range() {
    util::for_each_user("conform_seccomp_old", |env| {
        let b = bundle(env, "b", &["sh", "-c", "echo started"]);
        // what busybox sh needs, and nothing newer than 2017
        let allowed = [
            "arch_prctl",
            "brk",
            "capget",
            "capset",
            "chdir",
            "close",
            "dup2",
            "execve",
            "exit",
            "exit_group",
            "fcntl",
            "fstat",
            "getcwd",
            "getegid",
            "geteuid",
            "getgid",
            "getpid",
            "getppid",
            "getuid",
            "ioctl",
            "lseek",
            "mmap",
            "mprotect",
            "munmap",
            "newfstatat",
            "open",
            "openat",
            "prctl",
            "read",
            "rt_sigaction",
            "rt_sigprocmask",
            "rt_sigreturn",
            "set_tid_address",
            "setgid",
            "setgroups",
            "setresgid",
            "setresuid",
            "setuid",
            "stat",
            "uname",
            "write",
            "writev",
        ];
        edit(env, &b, |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": &allowed[..], "action": "SCMP_ACT_ALLOW"}]
            });
        });
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "s1"]).success();
        assert_eq!(out.text(), "started", "{out}");
    });
}

/// A mount's propagation option (`shared`, `rslave`, `unbindable`, ...) is applied to that
/// mount, inside the container's own mount namespace (config.md, "mounts": options); a bind
/// ignores filesystem data options such as `mode=755`, as runc and crun do, and keeps the
/// host's atime mode where a user namespace may not change it.
#[test]
fn conform_mount_propagation_options() {
    util::for_each_user("conform_propagation", |env| {
        let b = bundle(
            env,
            "b",
            &[
                "sh",
                "-c",
                "grep -E ' /mnt/(sh|sl|ub|pr) ' /proc/self/mountinfo",
            ],
        );
        let opts = |p: &str| json!(["nosuid", "mode=755", "size=1k", p]);
        edit(env, &b, |c| {
            let ms = c["mounts"].as_array_mut().unwrap();
            ms.push(json!({"destination": "/mnt/sh", "type": "tmpfs", "source": "tmpfs", "options": opts("shared")}));
            ms.push(json!({"destination": "/mnt/sl", "source": "/etc", "options": ["rbind", "rslave", "nosuid", "strictatime", "mode=755"]}));
            ms.push(json!({"destination": "/mnt/ub", "source": "/etc", "options": ["bind", "unbindable"]}));
            ms.push(json!({"destination": "/mnt/pr", "type": "tmpfs", "source": "tmpfs", "options": opts("private")}));
        });
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "p1"]).success();
        let line = |m: &str| {
            out.stdout
                .lines()
                .find(|l| l.contains(&format!(" /mnt/{m} ")))
                .unwrap_or_else(|| panic!("/mnt/{m} not mounted: {out}"))
                .to_string()
        };
        // optional fields sit between the mount options and the ` - ` separator
        let optional = |m: &str| {
            let l = line(m);
            let before = l.split(" - ").next().unwrap().to_string();
            before
                .split_whitespace()
                .skip(6)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(optional("sh").starts_with("shared:"), "{out}");
        assert_eq!(optional("ub"), "unbindable", "{out}");
        assert_eq!(optional("pr"), "", "{out}");
        // a slave of a private mount has no master: it is private
        assert!(!optional("sl").contains("shared:"), "{out}");
        // nosuid applied; in a user namespace the host's locked atime mode is kept
        let opts = line("sl").split_whitespace().nth(5).unwrap().to_string();
        assert!(opts.split(',').any(|o| o == "nosuid"), "{out}");
    });
}

/// `linux.devices` (config-linux.md, "devices"): a FIFO is made for every user; a device
/// node the host lacks is made by root with its type, numbers, mode and owner, and refused
/// with a clear error inside a user namespace, where mknod is not allowed.
#[test]
fn conform_linux_devices_made_when_the_host_lacks_them() {
    util::for_each_user("conform_devices", |env| {
        let b = bundle(env, "b", &["ls", "-ln", "/dev/test1", "/dev/test3"]);
        edit(env, &b, |c| {
            c["linux"]["devices"] = json!([
                {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 0o640, "uid": 0, "gid": 0},
                {"path": "/dev/test3", "type": "p", "major": 0, "minor": 0, "fileMode": 0o620}
            ]);
        });
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "d1"]);
        if env.user.who == Who::Root {
            let out = out.success();
            let l: Vec<Vec<&str>> = out
                .stdout
                .lines()
                .map(|l| l.split_whitespace().collect())
                .collect();
            assert_eq!(l[0][0], "crw-r-----", "{out}");
            assert_eq!(l[0][4..6], ["10,", "666"], "{out}");
            assert_eq!(l[1][0], "prw--w----", "{out}");
        } else {
            let out = out.rbox_error();
            assert!(
                out.stderr.contains("create device `/dev/test1`")
                    && out.stderr.contains("only root outside a user namespace"),
                "{out}"
            );
            // the FIFO alone is made
            edit(env, &b, |c| {
                c["linux"]["devices"].as_array_mut().unwrap().remove(0);
                c["process"]["args"] = json!(["sh", "-c", "ls -ln /dev/test3 | cut -c1-10"]);
            });
            let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "d2"]).success();
            assert_eq!(out.text(), "prw--w----", "{out}");
        }
    });
}

/// Hooks get the state on stdin (config.md, "POSIX-platform hooks"): `prestart` sees the
/// container created, with its pid; `poststart` sees it running with the same pid, even
/// when the process has already exited.
#[test]
fn conform_hooks_see_created_and_started_state() {
    util::for_each_user("conform_hook_state", |env| {
        let b = bundle(env, "b", &["true"]);
        let out = env.path("hookout");
        env.cmd("mkdir").arg("-p").arg(&out).output().success();
        let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}", out.display())]});
        edit(env, &b, |c| {
            c["hooks"] = json!({"prestart": [hook("prestart")], "poststart": [hook("poststart")]});
        });
        let bs = b.to_str().unwrap();
        let (code, log) = crate::ociruntime::oci_detached(env, &["create", "--bundle", bs, "h1"]);
        assert_eq!(code, 0, "{log}");
        let pid = crate::ociruntime::state(env, "h1")["pid"].as_i64().unwrap();
        oci(env, &["start", "h1"]).success();
        let read = |n: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(out.join(n)).unwrap()).unwrap()
        };
        let pre = read("prestart");
        assert_eq!(pre["status"], "created", "{pre}");
        assert_eq!(pre["pid"], pid, "{pre}");
        let post = read("poststart");
        assert_eq!(post["status"], "running", "{post}");
        assert_eq!(post["pid"], pid, "{post}");
        oci(env, &["delete", "--force", "h1"]).success();
    });
}

/// A mount's `source` is the name the kernel records for it (config.md, "mounts"): a tmpfs
/// named `shm` shows as `shm` in /proc/self/mountinfo, as with runc and crun.
#[test]
fn conform_mount_source_names_the_filesystem() {
    util::for_each_user("conform_mount_source", |env| {
        let b = bundle(
            env,
            "b",
            &[
                "sh",
                "-c",
                "grep -E ' /(dev/shm|mnt/named) ' /proc/self/mountinfo",
            ],
        );
        edit(env, &b, |c| {
            let ms = c["mounts"].as_array_mut().unwrap();
            ms.push(json!({"destination": "/mnt/named", "type": "tmpfs", "source": "scratch", "options": ["size=1k"]}));
        });
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "m1"]).success();
        let source = |at: &str| {
            let l = out
                .stdout
                .lines()
                .find(|l| l.contains(&format!(" {at} ")))
                .unwrap_or_else(|| panic!("{at} not mounted: {out}"));
            let after: Vec<&str> = l.split(" - ").nth(1).unwrap().split_whitespace().collect();
            (after[0].to_string(), after[1].to_string())
        };
        assert_eq!(source("/dev/shm"), ("tmpfs".into(), "shm".into()), "{out}");
        assert_eq!(
            source("/mnt/named"),
            ("tmpfs".into(), "scratch".into()),
            "{out}"
        );
    });
}

/// `linux.rootfsPropagation` (config-linux.md) is the new root's propagation: `rshared`
/// makes it shared (a peer group of the container's own mount namespace, as every mount was
/// made private first), `unbindable` unbindable.
#[test]
fn conform_rootfs_propagation() {
    util::for_each_user("conform_rootfs_prop", |env| {
        let b = bundle(env, "b", &["awk", "$5 == \"/\"", "/proc/self/mountinfo"]);
        for (i, (p, want)) in [("rshared", "shared:"), ("unbindable", "unbindable")]
            .into_iter()
            .enumerate()
        {
            edit(env, &b, |c| c["linux"]["rootfsPropagation"] = json!(p));
            let out = oci(
                env,
                &["run", "--bundle", b.to_str().unwrap(), &format!("r{i}")],
            )
            .success();
            let before = out.stdout.split(" - ").next().unwrap().to_string();
            let optional: Vec<&str> = before.split_whitespace().skip(6).collect();
            assert!(optional.iter().any(|o| o.starts_with(want)), "{p}: {out}");
        }
    });
}
