//! End to end on a real distribution root: Debian bookworm (minbase) made by debootstrap when
//! the mirror answers, imported with `rbox import`, then run as each user. Kept short: the
//! root is made once per machine and cached under target/. Where the mirror answers,
//! `apt-get update` runs in the container through each network backend.

use crate::fixtures;
use crate::util::for_each_user;

#[test]
fn debian_root_runs() {
    let Some(tar) = fixtures::debian_rootfs_tar() else {
        return;
    };
    for_each_user("debian", |env| {
        env.import_debian(&tar);
        let run = |args: &[&str]| {
            let mut c = env.rbox();
            c.args(["run", "--rm", "debian:bookworm"]).args(args);
            c.output().success().text()
        };
        assert!(run(&["cat", "/etc/debian_version"]).starts_with("12."));
        assert!(run(&["apt-get", "--version"]).starts_with("apt "));
        assert_eq!(run(&["bash", "-c", "echo $((6*7)) $0"]), "42 bash");
        assert_eq!(run(&["id", "-u"]), "0");
        if env.user.has_many_ids() {
            assert_eq!(
                env.rbox()
                    .args([
                        "run",
                        "--rm",
                        "-u",
                        "nobody",
                        "debian:bookworm",
                        "id",
                        "-un"
                    ])
                    .output()
                    .success()
                    .text(),
                "nobody"
            );
            // dpkg's files keep their owners through the id map.
            assert_eq!(run(&["stat", "-c", "%U:%G", "/var/mail"]), "root:mail");
        }
        // apt through each network backend, where the host reaches the mirror
        if !mirror_reachable() {
            eprintln!("SKIP apt-get update: deb.debian.org:80 does not answer from the host");
            return;
        }
        for net in ["pasta", "slirp4netns"] {
            let mut c = env.rbox();
            c.args([
                "run",
                "--rm",
                "--network",
                net,
                "debian:bookworm",
                "apt-get",
            ]);
            if !env.user.has_many_ids() {
                // apt's download sandbox user (_apt) needs ids a single-id map lacks
                c.args(["-o", "APT::Sandbox::User=root"]);
            }
            let out = c
                .arg("update")
                .timeout(std::time::Duration::from_secs(300))
                .output()
                .success();
            assert!(out.stdout.contains("Reading package lists"), "{net}: {out}");
            assert!(!out.stderr.contains("E: "), "{net}: {out}");
        }
    });
}

/// Whether the Debian mirror answers on port 80 from the host (within 5 s).
fn mirror_reachable() -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = ("deb.debian.org", 80).to_socket_addrs() else {
        return false;
    };
    addrs.into_iter().any(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok()
    })
}
