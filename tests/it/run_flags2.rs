//! More `run`/`create` flags Podman users pass (issue 9), end to end as every test user:
//! `--mount`, `--rmi`, `--replace`, `--pidfile`, `--preserve-fds`, `--sysctl`,
//! `--read-only-tmpfs`, `--security-opt mask/unmask`, `--device` and the resource flags.
//! Each is compared with what Podman 4.3 shows for the same flags (mount options, error
//! texts, exit codes).

use crate::util::{for_each_user, Env};

fn inspect(env: &Env, name: &str, field: &str) -> String {
    env.rbox()
        .args(["inspect", "--format", &format!("{{{{{field}}}}}"), name])
        .output()
        .success()
        .text()
}

/// The line of /proc/mounts in a fresh container for mount point `at`, with `flags`.
fn mount_line(env: &Env, flags: &[&str], at: &str) -> String {
    let out = env
        .rbox()
        .args(["run", "--rm", "--network=none"])
        .args(flags)
        .args(["busybox", "grep", &format!(" {at} "), "/proc/mounts"])
        .output()
        .success();
    out.text()
}

/// The mount options field of a /proc/mounts line.
fn opts(line: &str) -> Vec<String> {
    line.split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect()
}

#[test]
fn mount_flag() {
    for_each_user("run_flags2_mount", |env| {
        env.import_busybox("busybox");
        let src = env.path("work");
        env.write("work/f", "hello\n");
        let src = src.to_str().unwrap();
        // a read-only bind, in Podman's spellings (src/dst/readonly, source/target/ro)
        for m in [
            format!("type=bind,src={src},dst=/x,readonly"),
            format!("type=bind,source={src},target=/x,ro=true,bind-propagation=rprivate"),
        ] {
            let l = mount_line(env, &["--mount", &m], "/x");
            assert!(opts(&l).contains(&"ro".to_string()), "{m}: {l}");
        }
        // rw, with the content, and ro=false is rw
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "--mount"])
            .arg(format!("type=bind,source={src},target=/x,ro=false"))
            .args(["busybox", "sh", "-c", "cat /x/f && echo more >> /x/f"])
            .output()
            .success();
        assert_eq!(out.text(), "hello");
        assert_eq!(
            std::fs::read_to_string(env.path("work/f")).unwrap(),
            "hello\nmore\n"
        );
        // a tmpfs with Podman's size and mode options, exec unless noexec (unlike --tmpfs)
        let l = mount_line(
            env,
            &[
                "--mount",
                "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700",
            ],
            "/t",
        );
        let o = opts(&l);
        for want in ["size=1024k", "mode=700", "nosuid", "nodev"] {
            assert!(o.contains(&want.to_string()), "{want} in {l}");
        }
        assert!(!o.contains(&"noexec".to_string()), "{l}");
        let l = mount_line(env, &["--mount", "type=tmpfs,dst=/t,noexec,ro"], "/t");
        assert!(opts(&l).contains(&"noexec".to_string()), "{l}");
        assert!(opts(&l).contains(&"ro".to_string()), "{l}");
        // a devpts instance of its own
        let l = mount_line(
            env,
            &["--mount", "type=devpts,target=/dev/pts2"],
            "/dev/pts2",
        );
        assert!(l.starts_with("devpts /dev/pts2 devpts"), "{l}");
        // inspect shows it as Podman does
        env.rbox()
            .args(["create", "--name", "m", "--mount"])
            .arg(format!("type=bind,source={src},target=/x,ro"))
            .args(["busybox", "true"])
            .output()
            .success();
        assert_eq!(
            inspect(
                env,
                "m",
                "range .Mounts}}{{.Type}} {{.Destination}} {{.RW}}{{end"
            ),
            "bind /x false"
        );

        // Podman's texts for what it refuses
        for (m, want) in [
            (
                format!("source={src},target=/x"),
                "Error: incorrect mount format: should be --mount type=<bind|tmpfs|volume>,[src=<host-dir|volume-name>,]target=<ctr-dir>[,options]".to_string(),
            ),
            ("type=foo,target=/x".into(), "Error: invalid filesystem type \"foo\"".into()),
            (format!("type=bind,source={src}"), "Error: must set volume destination".into()),
            (
                format!("type=bind,source={src},target=x"),
                "Error: invalid container path \"x\", must be an absolute path".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,bogus=1"),
                "Error: bogus: invalid mount option".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,tmpfs-size=1m"),
                "Error: tmpfs-size: invalid mount option".into(),
            ),
            (
                "type=tmpfs,source=/tmp,target=/t".into(),
                "Error: source is not supported with tmpfs mounts".into(),
            ),
            (
                "type=bind,source=/nonexistent-rbox,target=/x".into(),
                "Error: statfs /nonexistent-rbox: no such file or directory".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,ro=maybe"),
                "Error: 'readonly', 'ro', or 'rw' must be set to true or false, instead received \"maybe\": must provide an argument for option".into(),
            ),
            (
                format!("type=bind,source={src},target=/x,bind-propagation=bogus"),
                "Error: invalid option type \"bogus\"".into(),
            ),
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm", "--mount", &m, "busybox", "true"])
                .output()
                .rbox_error();
            assert_eq!(out.stderr.trim_end(), want, "{m}");
        }
        // named volumes and image mounts: not yet, said clearly
        for (m, what) in [
            (
                "type=volume,source=v,target=/v",
                "named volumes are not supported yet",
            ),
            (
                "type=image,source=busybox,target=/i",
                "image mounts are not supported yet",
            ),
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm", "--mount", m, "busybox", "true"])
                .output()
                .rbox_error();
            assert!(out.stderr.contains(what), "{out}");
        }
    });
}
