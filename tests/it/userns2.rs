//! Podman's user-namespace flags, second part (issue 9): the passwd and group entries rbox
//! adds for a user the image lacks (`--passwd`, `--passwd-entry`, `--hostuser`), and
//! `--userns=nomap|auto` refused where Podman refuses them, with Podman's texts. The expected
//! lines were observed with Podman 4.3.1 on the same busybox image and the same arguments.

use crate::util::{for_each_user, require, Env, Output, Who};

/// `rbox run --rm --network=none ARGS... busybox sh -c SCRIPT`.
fn run(env: &Env, args: &[&str], script: &str) -> Output {
    env.rbox()
        .args(["run", "--rm", "--network=none"])
        .args(args)
        .args(["busybox", "sh", "-c", script])
        .output()
}

/// The host's /etc/passwd entry of `name` as `--hostuser` adds it (Podman's line: the host's
/// name, ids and comment, the working directory as home, /bin/sh).
fn host_line(name: &str, home: &str) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == name)
            .then(|| format!("{}:*:{}:{}:{}:{home}:/bin/sh", f[0], f[2], f[3], f[4]))
    })
}

#[test]
fn passwd_entries_as_podman_writes_them() {
    for_each_user("passwd_entries", |env| {
        env.import_busybox("busybox");
        let no_container_left = |what: &str| {
            let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
            assert_eq!(out.stdout, "", "{what} leaves no container: {out}");
        };

        // --hostuser: the host's entries, in the order given, home the working directory
        let (Some(daemon), Some(bin)) = (host_line("daemon", "/tmp"), host_line("bin", "/tmp"))
        else {
            require(false, "host users daemon and bin in /etc/passwd");
            return;
        };
        let out = run(
            env,
            &["--hostuser=daemon,bin", "--hostuser", "root", "-w", "/tmp"],
            "tail -3 /etc/passwd; tail -1 /etc/group",
        )
        .success();
        assert_eq!(
            out.text(),
            format!("nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n{daemon}\n{bin}\nnogroup:x:65534:"),
            "root is in the image already; no group is added: {out}"
        );
        // an unknown host user fails the start, in Podman's words and with its 126, and --rm
        // removes the rest
        let out = run(env, &["--hostuser=rbox-no-such-user"], "true").code_is(126);
        assert!(
            out.stderr
                .starts_with("Error: creating temporary passwd file for container ")
                && out
                    .stderr
                    .trim_end()
                    .ends_with(": user: unknown user rbox-no-such-user"),
            "{out}"
        );
        no_container_left("a refused --hostuser");

        if env.user.has_many_ids() {
            // a numeric --user the image lacks gets Podman's passwd and group lines, and the
            // groups Podman gives (its own-number group lists no member in rbox's line, where
            // Podman's lists the user yet gives the process no such group)
            for (user, want) in [
                (
                    "1234",
                    "1234:*:1234:0:container user:/:/bin/sh\n1234:x:1234:\nuid=1234 gid=0 groups=0",
                ),
                (
                    "1234:5678",
                    "1234:*:1234:5678:container user:/:/bin/sh\n5678:x:5678:1234\nuid=1234 gid=5678 groups=5678",
                ),
                (
                    "0:5678",
                    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n5678:x:5678:0\nuid=0 gid=5678 groups=5678",
                ),
                (
                    "1000",
                    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\nnogroup:x:65534:\nuid=1000 gid=1000 groups=1000 2000",
                ),
            ] {
                let out = run(
                    env,
                    &["--user", user],
                    "tail -1 /etc/passwd; tail -1 /etc/group; echo uid=$(id -u) gid=$(id -g) groups=$(id -G)",
                )
                .success();
                assert_eq!(out.text(), want, "--user {user}: {out}");
            }
            // id -un finds the added name
            let out = run(env, &["-u", "1234"], "id -un").success();
            assert_eq!(out.text(), "1234", "{out}");
            // --passwd-entry's placeholders; other `$` words stay
            let out = run(
                env,
                &[
                    "-u",
                    "1234",
                    "-w",
                    "/tmp",
                    "--passwd-entry",
                    "$USERNAME|$UID|$GID|$NAME|$HOME|$FOO|$$UID",
                ],
                "tail -1 /etc/passwd",
            )
            .success();
            assert_eq!(
                out.text(),
                "1234|1234|0|container user|/tmp|$FOO|$1234",
                "{out}"
            );
            // the template makes the --hostuser lines too
            let out = run(
                env,
                &[
                    "-u",
                    "1234",
                    "--passwd-entry",
                    "a:b",
                    "--hostuser",
                    "daemon",
                ],
                "tail -2 /etc/passwd",
            )
            .success();
            assert_eq!(out.text(), "a:b\na:b", "{out}");
            // --passwd=false: the image's files as they are
            let out = run(
                env,
                &["-u", "1234", "--passwd=false"],
                "tail -1 /etc/passwd; tail -1 /etc/group",
            )
            .success();
            assert_eq!(
                out.text(),
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\nnogroup:x:65534:",
                "{out}"
            );
            // written afresh at each start: one entry however often it starts
            env.rbox()
                .args([
                    "create",
                    "--name",
                    "again",
                    "--network=none",
                    "-u",
                    "1234:5678",
                ])
                .args([
                    "busybox",
                    "sh",
                    "-c",
                    "grep -c ^1234: /etc/passwd; grep -c ^5678: /etc/group",
                ])
                .output()
                .success();
            for _ in 0..2 {
                let out = env.rbox().args(["start", "-a", "again"]).output().success();
                assert_eq!(out.text(), "1\n1", "{out}");
            }
            env.rbox().args(["rm", "again"]).output().success();
        }

        if env.user.who != Who::Root {
            // keep-id's entry from the template ($NAME empty, $HOME /), or none with
            // --passwd=false
            let out = run(
                env,
                &[
                    "--userns=keep-id",
                    "--passwd-entry",
                    "$USERNAME:x:$UID:$GID:$NAME:$HOME:/bin/false",
                ],
                "tail -1 /etc/passwd; id -un",
            )
            .success();
            let u = &env.user;
            assert_eq!(
                out.text(),
                format!("{n}:x:{}:{}::/:/bin/false\n{n}", u.uid, u.gid, n = u.name),
                "{out}"
            );
            let out = run(
                env,
                &["--userns=keep-id", "--passwd=false"],
                "tail -1 /etc/passwd; tail -1 /etc/group",
            )
            .success();
            assert_eq!(
                out.text(),
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\nnogroup:x:65534:",
                "{out}"
            );
        }
        no_container_left("the runs");
        // inspect's Config.Passwd, as Podman's
        for (flag, want) in [("--passwd=true", "true"), ("--passwd=false", "false")] {
            env.rbox()
                .args([
                    "create",
                    "--name",
                    "pw",
                    "--network=none",
                    flag,
                    "busybox",
                    "true",
                ])
                .output()
                .success();
            assert_eq!(env.inspect("pw", "{{.Config.Passwd}}"), want, "{flag}");
            env.rbox().args(["rm", "pw"]).output().success();
        }
    });
}

/// `--userns=nomap` and `--userns=auto` where Podman refuses them: as root (nomap is for
/// rootless users; auto takes its ids from the `containers` entry of /etc/subuid, which this
/// host lacks) and for a user without a subordinate range, with Podman's texts.
#[test]
fn nomap_and_auto_refused_as_podman_refuses_them() {
    for_each_user("nomap_auto_refused", |env| {
        env.import_busybox("busybox");
        let err = |mode: &str| {
            let out = env
                .rbox()
                .args(["run", "--rm", "--network=none", &format!("--userns={mode}")])
                .args(["busybox", "true"])
                .output()
                .rbox_error();
            out.stderr
        };
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        match env.user.who {
            Who::Root => {
                assert_eq!(
                    err("nomap"),
                    "Error: nomap is only supported in rootless mode\n"
                );
                if !subuid.lines().any(|l| l.starts_with("containers:")) {
                    let e = err("auto");
                    assert!(
                        e.starts_with(
                            "Error: creating container storage: could not find enough available IDs"
                        ),
                        "{e}"
                    );
                }
            }
            _ if !env.user.has_many_ids() => {
                let e = err("nomap");
                assert!(
                    e.starts_with("Error: nomap requires additional UIDs or GIDs defined in /etc/subuid and /etc/subgid to function correctly"),
                    "{e}"
                );
                let e = err("auto:size=100");
                assert!(
                    e.starts_with(
                        "Error: creating container storage: could not find enough available IDs"
                    ),
                    "{e}"
                );
            }
            _ => {
                // more ids than the user's range holds
                assert_eq!(
                    err("auto:size=70000"),
                    "Error: creating container storage: could not find enough available IDs\n"
                );
            }
        }
        // --subuidname: an unknown name in Podman's words; a known one is turned into a map
        // (rootless: of rbox's ids), which rbox refuses while it leaves your own id unmapped
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--subuidname=rbox-no-such-user",
            ])
            .args(["busybox", "true"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr,
            "Error: no subuid ranges found for user \"rbox-no-such-user\" in /etc/subuid\n"
        );
        if let Some(name) = subuid.lines().find_map(|l| l.split(':').next()) {
            let out = env
                .rbox()
                .args(["run", "--rm", "--network=none", "--subuidname", name])
                .args(["busybox", "true"])
                .output()
                .rbox_error();
            assert!(
                out.stderr.contains("must map host id 0")
                    || out.stderr.contains("is not among your subordinate ids"),
                "{out}"
            );
        }
        let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(out.stdout, "", "a refused run leaves no container: {out}");
    });
}

/// `rbox image mount`/`image unmount` as Podman has them: rootless only inside `rbox
/// unshare` (refused outside in Podman's words), the image's root read-only at the printed
/// path, listed while mounted, unmount printing the image id (mounted or not), an unknown
/// image in Podman's words.
#[test]
fn image_mount_and_unmount() {
    for_each_user("image_mount", |env| {
        env.import_busybox("busybox");
        let id = env.inspect("busybox", "{{.Id}}");
        let id = id.trim_start_matches("sha256:");
        let script = "set -e; p=$(\"$@\" image mount busybox); test -x \"$p/bin/busybox\"; \
                      grep -q ^tester: \"$p/etc/passwd\"; \
                      if touch \"$p/new\" 2>/dev/null; then echo writable; fi; \
                      \"$@\" image mount; \"$@\" image mount busybox; \
                      \"$@\" image umount busybox; test ! -e \"$p/bin/busybox\"; \
                      \"$@\" image umount busybox; \"$@\" image mount; echo done";
        let mut c = if env.user.uid == 0 {
            // root mounts in the host's namespace, as Podman does
            env.cmd("sh")
        } else {
            let out = env
                .rbox()
                .args(["image", "mount", "busybox"])
                .output()
                .rbox_error();
            assert_eq!(
                out.stderr,
                "Error: cannot run command \"rbox image mount\" in rootless mode, must execute `rbox unshare` first\n"
            );
            let mut c = env.rbox();
            c.args(["unshare", "sh"]);
            c
        };
        let out = c
            .args(["-c", script, "sh"])
            .arg(crate::util::RBOX)
            .arg("--root")
            .arg(env.store())
            .arg("--runroot")
            .arg(env.runroot())
            .output()
            .success();
        let lines = out.lines();
        let path = format!("{}/image-mounts/{id}/merged", env.runroot().display());
        assert_eq!(
            lines,
            [
                format!("localhost/busybox:latest  {path}"),
                path.clone(),
                id.to_string(),
                id.to_string(),
                "done".to_string(),
            ],
            "{out}"
        );
        let out = env.rbox().args(["image", "umount", "nosuch"]).output();
        if env.user.uid == 0 {
            let out = out.rbox_error();
            assert_eq!(out.stderr, "Error: nosuch: image not known\n");
        } else {
            out.rbox_error();
        }
    });
}

/// `rbox cp A:SRC B:DEST` copies between two containers as Podman does (same landing rules
/// and texts as a copy from the host; observed with Podman 4.3.1 on the same image).
#[test]
fn cp_between_containers() {
    for_each_user("cp_between", |env| {
        env.import_busybox("busybox");
        let script = "ls -ln /tmp/p; ls /tmp/e | head -3; ls -d /tmp/e/* | wc -l";
        for (name, cmd) in [("ca", "true"), ("cb", script)] {
            env.rbox()
                .args([
                    "create",
                    "--name",
                    name,
                    "--network=none",
                    "busybox",
                    "sh",
                    "-c",
                    cmd,
                ])
                .output()
                .success();
        }
        env.rbox()
            .args(["cp", "ca:/etc/passwd", "cb:/tmp/p"])
            .output()
            .success();
        env.rbox()
            .args(["cp", "ca:/etc", "cb:/tmp/e"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["cp", "ca:/nosuch", "cb:/tmp/x"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr,
            "Error: \"/nosuch\" could not be found on container ca: no such file or directory\n"
        );
        let out = env
            .rbox()
            .args(["cp", "ca:/etc", "cb:/nonexist/x"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr,
            "Error: \"/nonexist/x\" could not be found on container cb: no such file or directory\n"
        );
        let out = env.rbox().args(["start", "-a", "cb"]).output().success();
        let size = crate::fixtures::PASSWD.len();
        let lines = out.lines();
        assert!(
            lines[0].starts_with("-rw-r--r--    1 0        0 ")
                && lines[0].contains(&format!(" {size} "))
                && lines[0].ends_with(" /tmp/p"),
            "{out}"
        );
        assert_eq!(lines[1..], ["group", "hostname", "passwd", "3"], "{out}");
        env.rbox().args(["rm", "ca", "cb"]).output().success();
    });
}
