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
