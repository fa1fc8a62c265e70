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

/// A namespace type missing from `linux.namespaces` is inherited from the runtime
/// (config-linux.md, "namespaces"), the mount namespace too: as root the process shares every
/// namespace of the caller, its mounts are made in the caller's mount namespace (the container
/// chrooted into its root, the caller's own root untouched; `exec` joins it there) and
/// detached again when the container is gone. An unprivileged user cannot mount there: a
/// clear error.
#[test]
fn conform_spec_without_namespaces_inherits_the_runtimes() {
    util::for_each_user("conform_ns_inherit", |env| {
        let names = ["cgroup", "ipc", "mnt", "net", "pid", "uts"];
        let b = bundle(
            env,
            "b",
            &[
                "sh",
                "-c",
                "for n in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$n; done; \
                 test -e /bin/busybox && echo chrooted",
            ],
        );
        edit(env, &b, |c| {
            c["linux"]["namespaces"] = json!([]);
            c.as_object_mut().unwrap().remove("hostname");
        });
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "i1"]);
        if env.user.who != Who::Root {
            let out = out.rbox_error();
            assert!(
                out.stderr.contains("no mount namespace of its own"),
                "{out}"
            );
            return;
        }
        let out = out.success();
        let mine: Vec<String> = names
            .iter()
            .map(|n| {
                std::fs::read_link(format!("/proc/self/ns/{n}"))
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .chain(["chrooted".to_string()])
            .collect();
        assert_eq!(out.lines(), mine, "{out}");
        // the mounts made in the caller's namespace are gone with the container
        let rootfs = std::fs::canonicalize(b.join("rootfs")).unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !info.contains(rootfs.to_str().unwrap()),
            "left mounted:\n{info}"
        );
        // created, deleted without a start: detached too
        let (code, log) = crate::ociruntime::oci_detached(
            env,
            &["create", "--bundle", b.to_str().unwrap(), "i2"],
        );
        assert_eq!(code, 0, "create: {log}");
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            info.contains(&format!(" {}/proc ", rootfs.display())),
            "{info}"
        );
        oci(env, &["delete", "--force", "i2"]).success();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !info.contains(rootfs.to_str().unwrap()),
            "left mounted:\n{info}"
        );
        // exec runs in the container's root too; a running container's mounts are detached
        // at delete
        env.write("b/rootfs/marker", "in the root\n");
        edit(env, &b, |c| c["process"]["args"] = json!(["sleep", "60"]));
        let (code, log) = crate::ociruntime::oci_detached(
            env,
            &["run", "-d", "--bundle", b.to_str().unwrap(), "i3"],
        );
        assert_eq!(code, 0, "run: {log}");
        let out = oci(env, &["exec", "i3", "cat", "/marker"]).success();
        assert_eq!(out.text(), "in the root", "{out}");
        oci(env, &["delete", "--force", "i3"]).success();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !info.contains(rootfs.to_str().unwrap()),
            "left mounted:\n{info}"
        );
    });
}

/// Namespaces given by `path` are joined (config-linux.md, "namespaces"), a mount namespace
/// too: the container's mounts are made there, not in the caller's, and the namespace's other
/// processes keep their root. A hostname is set in a joined uts namespace, which is the
/// container's. Rootless, rbox mounts only in a mount namespace it creates: refused with the
/// reason.
#[test]
fn conform_joined_mount_and_uts_namespaces() {
    util::for_each_user("conform_ns_join", |env| {
        let b = bundle(
            env,
            "b",
            &[
                "sh",
                "-c",
                "for n in mnt uts; do readlink /proc/self/ns/$n; done; hostname",
            ],
        );
        // a process in new mount and uts namespaces to join
        let mut unshare = env.cmd("unshare");
        if env.user.who != Who::Root {
            unshare.arg("--map-root-user");
        }
        let holder = unshare.args(["--mount", "--uts", "sleep", "600"]).spawn();
        let pid = holder.pid().as_raw();
        let ns = |p: &str, n: &str| {
            std::fs::read_link(format!("/proc/{p}/ns/{n}"))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        util::eventually("unshare entered its namespaces", || {
            let (m, u) = (ns(&pid.to_string(), "mnt"), ns(&pid.to_string(), "uts"));
            !m.is_empty() && m != ns("self", "mnt") && u != ns("self", "uts")
        });
        let host_name = nix::unistd::gethostname().unwrap();
        edit(env, &b, |c| {
            let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
            for n in nss.iter_mut() {
                if n["type"] == "mount" || n["type"] == "uts" {
                    let t = if n["type"] == "mount" { "mnt" } else { "uts" };
                    n["path"] = json!(format!("/proc/{pid}/ns/{t}"));
                }
            }
            c["hostname"] = json!("joined-uts");
        });
        let out = oci(env, &["run", "--bundle", b.to_str().unwrap(), "j1"]);
        if env.user.who != Who::Root {
            let out = out.rbox_error();
            assert!(
                out.stderr.contains("no mount namespace of its own"),
                "{out}"
            );
            return;
        }
        let out = out.success();
        assert_eq!(
            out.lines(),
            [
                ns(&pid.to_string(), "mnt"),
                ns(&pid.to_string(), "uts"),
                "joined-uts".to_string()
            ],
            "{out}"
        );
        // the hostname is the joined namespace's; the caller's is unchanged
        let theirs = env
            .cmd("nsenter")
            .args(["-t", &pid.to_string(), "--uts", "hostname"])
            .output()
            .success();
        assert_eq!(theirs.text(), "joined-uts", "{theirs}");
        assert_eq!(nix::unistd::gethostname().unwrap(), host_name);
        // the holder keeps its root, and nothing was mounted in the caller's namespace
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
            std::path::Path::new("/")
        );
        let rootfs = std::fs::canonicalize(b.join("rootfs")).unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!info.contains(rootfs.to_str().unwrap()), "{info}");
        // exec joins the container in its root, not the joined namespace's
        env.write("b/rootfs/marker", "in the root\n");
        edit(env, &b, |c| c["process"]["args"] = json!(["sleep", "60"]));
        let (code, log) = crate::ociruntime::oci_detached(
            env,
            &["run", "-d", "--bundle", b.to_str().unwrap(), "j2"],
        );
        assert_eq!(code, 0, "run: {log}");
        let out = oci(env, &["exec", "j2", "cat", "/marker"]).success();
        assert_eq!(out.text(), "in the root", "{out}");
        oci(env, &["delete", "--force", "j2"]).success();
        drop(holder);
    });
}

/// `ociVersion` is a SemVer version of the runtime spec (config.md), and an invalid or
/// unsupported value MUST be an error ("valid values"): `invalid` and `2.0.0` are refused
/// before anything is made; 1.x versions, pre-releases too (Podman writes `1.0.2-dev`), run.
#[test]
fn conform_oci_version_must_be_semver_of_major_1() {
    util::for_each_user("conform_oci_version", |env| {
        let b = bundle(env, "b", &["true"]);
        for (i, v) in ["invalid", "2.0.0", "1.0"].into_iter().enumerate() {
            edit(env, &b, |c| c["ociVersion"] = json!(v));
            let id = format!("v{i}");
            let out = oci(env, &["create", "--bundle", b.to_str().unwrap(), &id]).rbox_error();
            assert!(out.stderr.contains(&format!("ociVersion `{v}`")), "{out}");
            let st = oci(env, &["state", &id]).code_is(1);
            assert!(st.stderr.contains("does not exist"), "{st}");
        }
        for (i, v) in ["1.0.2-dev", "1.1.0"].into_iter().enumerate() {
            edit(env, &b, |c| c["ociVersion"] = json!(v));
            oci(
                env,
                &["run", "--bundle", b.to_str().unwrap(), &format!("ok{i}")],
            )
            .success();
        }
    });
}
