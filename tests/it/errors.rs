//! What a user gets for input rbox cannot take: one `Error:` line that says what to change and
//! exit 125, for Podman flags rbox does not have yet, ids outside the container's map, a volume
//! on `/`, endless env and label files; and arguments that are not UTF-8, which must reach the
//! command byte for byte. Every test runs once per identity.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::util::{for_each_user, shell_quote, Output, Who, RBOX};

/// Exit 125 with exactly one line on stderr, `Error: ` and then text containing `want`.
#[track_caller]
fn one_line_error(out: Output, want: &str) -> Output {
    let out = out.rbox_error();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr:\n{out}");
    assert!(lines[0].contains(want), "expected `{want}`:\n{out}");
    out
}

#[test]
fn podman_flags_rbox_lacks_say_what_to_do() {
    for_each_user("errors-flags", |env| {
        env.import_busybox("busybox");
        for (args, want) in [
            (&["--ip", "10.0.2.5"][..], "unsupported flag `--ip`"),
            (
                &["--mac-address=02:00:00:00:00:01"][..],
                "unsupported flag `--mac-address`",
            ),
            // -p exists now, but needs a bridge: still one line, nothing created
            (
                &["--network=none", "-p", "8080:80"][..],
                "publishing ports needs --network=pasta or --network=slirp4netns",
            ),
            (
                &["--cgroup-parent", "/x"][..],
                "unsupported flag `--cgroup-parent`",
            ),
            (
                &["--frobnicate"][..],
                "unknown flag `--frobnicate`: see `rbox run --help`",
            ),
        ] {
            let out = env
                .rbox()
                .arg("run")
                .args(args)
                .args(["--rm", "busybox", "true"])
                .output();
            one_line_error(out, want);
        }
        // a missing image name, a bad value: still one line, pointing at the right help
        // podman 4.3's words for the missing image
        one_line_error(
            env.rbox().arg("run").output(),
            "requires at least 1 arg(s), only received 0",
        );
        one_line_error(
            env.rbox().args(["ps", "--last", "x"]).output(),
            "see `rbox ps --help`",
        );
        // nothing was created by any of them
        let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(out.text(), "", "{out}");
    });
}

#[test]
fn ids_outside_the_map_and_volumes_on_root() {
    for_each_user("errors-ids", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--rm", "-u", "70000", "busybox", "true"])
            .output();
        if env.user.has_many_ids() && env.user.who != Who::Root {
            // a subordinate range of 65536 ids: container ids 0-65536
            one_line_error(
                out,
                "uid 70000 is outside the container's ids (uids 0-65536 exist)",
            );
        } else if env.user.who == Who::Root {
            // real root maps every id: 70000 exists
            out.success();
        } else {
            // single id: only 0 exists, and `rbox info` tells how to get a range
            one_line_error(out, "rbox info");
        }
        if env.user.has_many_ids() && env.user.who != Who::Root {
            let out = env
                .rbox()
                .args(["run", "--rm", "-u", "0:70000", "busybox", "true"])
                .output();
            one_line_error(
                out,
                "gid 70000 is outside the container's ids (gids 0-65536 exist)",
            );
        }
        let out = env
            .rbox()
            .args(["run", "--rm", "-v", "/tmp:/", "busybox", "true"])
            .output();
        one_line_error(out, "the destination cannot be the container's root `/`");
        let out = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(out.text(), "", "a refused run leaves no container:\n{out}");
    });
}

#[test]
fn endless_env_and_label_files_are_refused() {
    for_each_user("errors-files", |env| {
        env.import_busybox("busybox");
        for flag in ["--env-file", "--label-file"] {
            let out = env
                .rbox()
                .args(["run", "--rm", flag, "/dev/zero", "busybox", "true"])
                .output();
            one_line_error(out, "is larger than 1024 KiB");
        }
        let out = env
            .rbox()
            .args(["exec", "--env-file", "/dev/zero", "nosuch", "true"])
            .output();
        out.rbox_error();
        // labels: the image's, then --label-file, then --label
        env.write("labels", "# team labels\ntier=web\nowner=ops\n");
        env.rbox()
            .args(["create", "--name", "lab", "--label-file"])
            .arg(env.path("labels"))
            .args(["-l", "owner=me", "--label", "empty", "busybox", "true"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["inspect", "--format", "{{json .Config.Labels}}", "lab"])
            .output()
            .success();
        let labels: serde_json::Value = serde_json::from_str(&out.text()).unwrap();
        assert_eq!(labels["tier"], "web", "{out}");
        assert_eq!(labels["owner"], "me", "{out}");
        assert_eq!(labels["empty"], "", "{out}");
    });
}

#[test]
fn arguments_that_are_not_utf8_reach_the_command_exactly() {
    for_each_user("errors-utf8", |env| {
        env.import_busybox("busybox");
        let arg = OsString::from_vec(b"a\xffb\xe9".to_vec());
        let out = env
            .rbox()
            .args(["run", "--rm", "busybox", "sh", "-c"])
            .arg("printf %s \"$1\" | od -An -tx1")
            .arg("sh")
            .arg(&arg)
            .output()
            .success();
        assert_eq!(
            out.text().split_whitespace().collect::<Vec<_>>(),
            ["61", "ff", "62", "e9"]
        );
        // the same through a stored spec (create, then start) and through exec
        env.rbox()
            .args(["run", "-d", "--name", "bytes", "busybox", "sleep", "600"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["exec", "bytes", "sh", "-c"])
            .arg("printf %s \"$1\" | od -An -tx1")
            .arg("sh")
            .arg(&arg)
            .output()
            .success();
        assert_eq!(
            out.text().split_whitespace().collect::<Vec<_>>(),
            ["61", "ff", "62", "e9"]
        );
        env.rbox().args(["rm", "-f", "bytes"]).output().success();
        env.rbox()
            .args(["create", "--name", "later", "busybox", "sh", "-c"])
            .arg("printf %s \"$1\" | od -An -tx1")
            .arg("sh")
            .arg(&arg)
            .output()
            .success();
        let out = env.rbox().args(["start", "-a", "later"]).output().success();
        assert_eq!(
            out.text().split_whitespace().collect::<Vec<_>>(),
            ["61", "ff", "62", "e9"]
        );
    });
}

#[test]
fn info_suggests_a_range_that_overlaps_no_other() {
    for_each_user("errors-subid", |env| {
        if env.user.who != Who::NoSub {
            return;
        }
        // the first free id after every range of either file, as the test computes it
        let mut end = 100_000u64;
        for f in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            for l in text.lines() {
                let p: Vec<&str> = l.split(':').collect();
                if let [_, s, c] = p[..] {
                    if let (Ok(s), Ok(c)) = (s.parse::<u64>(), c.parse::<u64>()) {
                        end = end.max(s + c);
                    }
                }
            }
        }
        let out = env.rbox().arg("info").output().success();
        let want = format!(
            "add `{}:{end}:65536` to /etc/subuid and /etc/subgid",
            env.user.name
        );
        assert!(out.stdout.contains(&want), "expected `{want}`:\n{out}");
        assert!(
            out.stdout.contains(&format!(
                "usermod --add-subuids {end}-{} --add-subgids {end}-{}",
                end + 65535,
                end + 65535
            )),
            "{out}"
        );
    });
}

/// A reader that goes away before rbox writes (`rbox images | head -0`) ends rbox quietly
/// with the shell's SIGPIPE status, 141, not with a panic about a broken pipe. The pipe is a
/// fifo whose only reader is closed before rbox starts, so the write always meets EPIPE.
#[test]
fn a_closed_pipe_ends_rbox_quietly() {
    for_each_user("errors-pipe", |env| {
        let fifo = env.path("fifo");
        let line = format!(
            "mkfifo {f} && exec 4<>{f} 5>{f} && exec 4<&- && {rbox} --root {root} --runroot {run} images >&5; echo rc=$?",
            f = shell_quote(&fifo.to_string_lossy()),
            rbox = shell_quote(RBOX),
            root = shell_quote(&env.store().to_string_lossy()),
            run = shell_quote(&env.runroot().to_string_lossy()),
        );
        let out = env.cmd("sh").args(["-c", &line]).output().success();
        assert_eq!(out.stdout.trim(), "rc=141", "{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    });
}

/// rbox started with stdout or stderr closed (a cron job, a service with `>&-`) writes what it
/// has to say into nothing and exits as usual: its C `main` opens the closed standard
/// descriptors on /dev/null as std's own start-up did, so no file rbox opens takes their
/// numbers. Without that, `--version` would fail to print and panic (101).
#[test]
fn closed_stdio_is_dev_null() {
    for_each_user("errors-closed-stdio", |env| {
        let line = format!(
            "{rbox} --version >&-; echo rc=$?; {rbox} --root {root} --runroot {run} nosuch 2>&- >&-; echo rc=$?",
            rbox = shell_quote(RBOX),
            root = shell_quote(&env.store().to_string_lossy()),
            run = shell_quote(&env.runroot().to_string_lossy()),
        );
        let out = env.cmd("sh").args(["-c", &line]).output().success();
        assert_eq!(out.stdout, "rc=0\nrc=125\n", "{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    });
}
