//! What a Podman user's habits expect of rbox (issue 9): the same names after a pull by digest,
//! the same `rmi`, `images NAME`, `inspect` and `history` answers, and the same error text and
//! exit codes where scripts compare them. The expected texts were observed with podman 4.3.1
//! (run as the test user on this machine) and are hard-coded here.

use crate::registry::{prerequisites, push_helper, rbox_pull, Options, Registry};
use crate::util::{for_each_user, Env};

fn image_id(env: &Env, name: &str) -> String {
    env.text(&["image", "inspect", "--format", "{{.Id}}", name])
}

#[test]
fn pull_by_digest_of_a_present_image_adds_no_name() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("habits_digest_pull", |env| {
        let image = push_helper(&reg, env, "test/habits");
        rbox_pull(env, &reg, &image).output().success();
        let digest = env.text(&["image", "inspect", "--format", "{{.Digest}}", &image]);
        let by_digest = format!("{}@{digest}", reg.image("test/habits"));
        rbox_pull(env, &reg, &by_digest).output().success();
        // No `<none>` row: the image keeps its one name.
        let rows = env.text(&["images", "-a", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert_eq!(rows, image);
        let names = env.text(&["image", "inspect", "--format", "{{.RepoTags}}", &image]);
        assert_eq!(names, format!("[{image}]"));
        // The digest still finds it, and `rmi ID` removes it as Podman does.
        let id = image_id(env, &by_digest);
        let out = env.rbox().args(["rmi", &id[..12]]).output().success();
        assert!(out.stdout.contains(&format!("Untagged: {image}")), "{out}");
        assert_eq!(env.text(&["images", "-a", "-q"]), "");
    });
}

#[test]
fn rmi_by_id_of_an_image_with_several_names_is_refused_as_podman() {
    for_each_user("habits_rmi_id", |env| {
        env.import_busybox("bb");
        env.text(&["tag", "localhost/bb", "localhost/other"]);
        let id = image_id(env, "bb");
        let out = env.rbox().args(["rmi", &id[..12]]).output().rbox_error();
        // podman 4.3 printed this (exit 125) for `rmi ID` of localhost/bb tagged localhost/other
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "Error: unable to delete image \"{id}\" by ID with more than one tag \
                 ([localhost/bb:latest localhost/other:latest]): please force removal"
            )
        );
        // By name only that name goes; -f by id removes the image.
        let out = env.rbox().args(["rmi", "other"]).output().success();
        assert_eq!(out.text(), "Untagged: localhost/other:latest");
        env.text(&["tag", "localhost/bb", "localhost/other"]);
        env.rbox().args(["rmi", "-f", &id]).output().success();
        assert_eq!(env.text(&["images", "-q"]), "");
    });
}

#[test]
fn images_name_lists_every_name_of_the_image_as_podman_4_3() {
    // podman 4.3: after `tag localhost/bb localhost/other`, `images localhost/bb` lists both
    // rows (every name of the matching image), and so does `images localhost/other`.
    for_each_user("habits_images_name", |env| {
        env.import_busybox("bb");
        env.text(&["tag", "localhost/bb", "localhost/other"]);
        for q in ["localhost/bb", "other"] {
            let rows = env.text(&["images", "--format", "{{.Repository}}:{{.Tag}}", q]);
            assert_eq!(rows, "localhost/bb:latest\nlocalhost/other:latest", "{q}");
        }
    });
}

#[test]
fn inspect_shows_the_image_name_as_typed_and_the_manifest_digest() {
    for_each_user("habits_inspect_image", |env| {
        env.import_busybox("bb");
        env.text(&["tag", "localhost/bb", "localhost/other"]);
        let id = image_id(env, "bb");
        let digest = env.text(&["image", "inspect", "--format", "{{.Digest}}", "bb"]);
        assert_ne!(digest, format!("sha256:{id}"));
        // podman 4.3: created from `other` -> localhost/other:latest; from `bb` ->
        // localhost/bb:latest; from the id -> the first name, localhost/bb:latest.
        for (from, want) in [
            ("other", "localhost/other:latest"),
            ("localhost/other:latest", "localhost/other:latest"),
            ("bb", "localhost/bb:latest"),
            (&id[..12], "localhost/bb:latest"),
        ] {
            let c = format!("c-{}", from.replace([':', '/'], "-"));
            let args = ["create", "--network=none", "--name", &c, from, "true"];
            env.rbox().args(args).output().success();
            let got = env.text(&[
                "inspect",
                "--format",
                "{{.ImageName}} {{.ImageDigest}} {{.Image}}",
                &c,
            ]);
            assert_eq!(got, format!("{want} {digest} {id}"), "created from {from}");
            let ps = env.text(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={c}"),
                "--format",
                "{{.Image}}",
            ]);
            assert_eq!(ps, want, "ps of a container created from {from}");
        }
    });
}

/// `YYYY-MM-DD HH:MM:SS[.fraction without trailing zeros] +0000 UTC`, as Go prints a time.
fn is_go_time(s: &str) -> bool {
    let Some(t) = s.strip_suffix(" +0000 UTC") else {
        return false;
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let b = whole.as_bytes();
    whole.len() == 19
        && b[4] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && (frac.is_empty()
            || (frac.len() <= 9
                && !frac.ends_with('0')
                && frac.bytes().all(|c| c.is_ascii_digit())))
}

#[test]
fn history_human_flag_tabs_and_created_at_as_podman() {
    for_each_user("habits_history", |env| {
        env.import_busybox("bb");
        let id = image_id(env, "bb");
        // podman 4.3: `history -qH localhost/bb` prints the short id (-H takes no value).
        assert_eq!(env.text(&["history", "-qH", "localhost/bb"]), &id[..12]);
        assert_eq!(env.text(&["history", "-q", "-H", "bb"]), &id[..12]);
        // podman 4.3: -H=false changes .Created only (`2.13 MB|2026-11-25T15:33:02Z`)
        let out = env.text(&[
            "history",
            "-H=false",
            "--format",
            "{{.Size}}|{{.Created}}",
            "bb",
        ]);
        let (size, created) = out.split_once('|').unwrap();
        assert!(size.ends_with(" MB"), "{out}");
        assert!(created.ends_with('Z') && created.len() == 20, "{out}");
        // podman 4.3 keeps the tab of a format without `table`:
        // `history --format '{{.ID}}\t{{.Size}}'` -> "63d8b78d3eb7\t2.13 MB"
        let out = env.text(&["history", "--format", r"{{.ID}}\t{{.Size}}", "bb"]);
        assert!(out.starts_with(&format!("{}\t", &id[..12])), "{out:?}");
        assert!(!out.contains("  "), "{out:?}");
        let out = env.text(&["images", "--format", r"{{.ID}}\t{{.Repository}}"]);
        assert_eq!(out, format!("{}\tlocalhost/bb", &id[..12]));
        // ... and aligns a `table`, with --noheading too.
        let out = env.text(&[
            "images",
            "--noheading",
            "--format",
            r"table {{.Tag}}\t{{.ID}}",
        ]);
        assert_eq!(out, format!("latest      {}", &id[..12]));
        // podman 4.3: `images --format '{{.CreatedAt}}'` -> 2026-11-24 20:03:51 +0000 UTC,
        // `ps -a --format '{{.CreatedAt}}'` -> 2026-11-24 22:04:16.250851028 +0000 UTC
        let args = ["create", "--network=none", "--name", "c1", "bb", "true"];
        env.rbox().args(args).output().success();
        for args in [
            &["images", "--format", "{{.CreatedAt}}"][..],
            &["history", "--format", "{{.CreatedAt}}", "bb"],
            &["ps", "-a", "--format", "{{.CreatedAt}}"],
        ] {
            let out = env.text(args);
            assert!(is_go_time(&out), "{args:?}: {out:?}");
        }
    });
}

#[test]
fn invalid_log_level_is_refused_with_podmans_words() {
    for_each_user("habits_log_level", |env| {
        let out = env
            .rbox()
            .args(["--log-level=xyz", "images"])
            .output()
            .rbox_error();
        // podman 4.3 printed this line (without `Error: `, and exit 1) for --log-level=xyz
        assert_eq!(
            out.stderr.trim_end(),
            "Error: Log Level \"xyz\" is not supported, choose from: \
             trace, debug, info, warn, warning, error, fatal, panic"
        );
        assert_eq!(out.stdout, "");
        for ok in ["warning", "fatal", "panic", "INFO"] {
            env.rbox()
                .args(["--log-level", ok, "images", "-q"])
                .output()
                .success();
        }
    });
}

#[test]
fn unknown_images_and_containers_in_podmans_words() {
    // (arguments, exit code, stderr) as podman 4.3 printed them
    let cases: &[(&[&str], i32, &str)] = &[
        (&["rmi", "nosuch"], 1, "Error: nosuch: image not known"),
        (
            &["inspect", "--type", "image", "nosuch"],
            125,
            "Error: inspecting object: nosuch: image not known",
        ),
        (
            &["image", "inspect", "nosuch"],
            125,
            "Error: inspecting object: nosuch: image not known",
        ),
        (
            &["run", "--network=none", "--pull=never", "nosuch", "true"],
            125,
            "Error: nosuch: image not known",
        ),
        (
            &["history", "nosuch"],
            125,
            "Error: nosuch: image not known",
        ),
        (
            &["tag", "nosuch", "x"],
            125,
            "Error: nosuch: image not known",
        ),
        (&["save", "nosuch"], 125, "Error: nosuch: image not known"),
        (&["push", "nosuch"], 125, "Error: nosuch: image not known"),
        (
            &["inspect", "nosuch"],
            125,
            "Error: inspecting object: no such object: \"nosuch\"",
        ),
        (
            &["container", "inspect", "nosuch"],
            125,
            "Error: inspecting object: no such container nosuch",
        ),
        (
            &["inspect", "--type", "container", "nosuch"],
            125,
            "Error: inspecting object: no such container nosuch",
        ),
        (
            &["rm", "nosuch"],
            1,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
        (
            &["start", "nosuch"],
            125,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
        (
            &["stop", "nosuch"],
            125,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
        (
            &["kill", "nosuch"],
            125,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
        (
            &["logs", "nosuch"],
            125,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
        (
            &["port", "nosuch"],
            125,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
        (
            &["restart", "nosuch"],
            125,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
        (
            &["exec", "nosuch", "true"],
            125,
            "Error: no container with name or ID \"nosuch\" found: no such container",
        ),
    ];
    for_each_user("habits_unknown", |env| {
        for (args, code, want) in cases {
            let out = env.rbox().args(*args).output().code_is(*code);
            assert_eq!(out.stderr.trim_end(), *want, "{args:?}\n{out}");
        }
        // rmi: an image in use is exit 2 (podman-rmi(1)), whatever else was unknown.
        env.import_busybox("bb");
        let args = ["create", "--network=none", "--name", "c1", "bb", "true"];
        env.rbox().args(args).output().success();
        let out = env.rbox().args(["rmi", "nosuch", "bb"]).output().code_is(2);
        out.assert_clean_error();
        // rm of an unknown and a known container: Podman looks both up first and removes
        // neither, exit 1
        let out = env.rbox().args(["rm", "nosuch", "c1"]).output().code_is(1);
        assert_eq!(out.text(), "");
        assert_eq!(
            out.stderr.trim_end(),
            "Error: no container with name or ID \"nosuch\" found: no such container"
        );
        assert_eq!(env.text(&["ps", "-a", "--format", "{{.Names}}"]), "c1");
    });
}

#[test]
fn commands_that_cannot_run_in_podmans_words() {
    // podman 4.3 (crun) printed, less the leading `crun: `:
    //   /etc/passwd: "Error: crun: open executable: Permission denied: OCI permission denied", 126
    //   nosuchcmd: "Error: crun: executable file `nosuchcmd` not found in $PATH: No such file or
    //   directory: OCI runtime attempted to invoke a command that was not found", 127
    let denied = "Error: open executable: Permission denied: OCI permission denied";
    let missing = |c: &str| {
        format!(
            "Error: executable file `{c}` not found in $PATH: No such file or directory: \
             OCI runtime attempted to invoke a command that was not found"
        )
    };
    for_each_user("habits_exec", |env| {
        env.import_busybox("bb");
        let run = |args: &[&str], code: i32| {
            let mut c = env.rbox();
            c.args(["run", "--rm", "--network=none"]).args(args);
            c.output().code_is(code).stderr.trim_end().to_string()
        };
        assert_eq!(run(&["bb", "/etc/passwd"], 126), denied);
        assert_eq!(run(&["--env", "PATH=/etc", "bb", "passwd"], 126), denied);
        assert_eq!(run(&["bb", "nosuchcmd"], 127), missing("nosuchcmd"));
        assert_eq!(run(&["bb", "/nosuchcmd"], 127), missing("/nosuchcmd"));
    });
}

#[test]
fn a_mount_the_runtime_cannot_make_exits_126() {
    // Podman 4.3.1: `-v FILE:/bin` and `--mount type=tmpfs,dst=/etc/passwd` fail in crun
    // ("OCI runtime error: crun: mount `...` to `bin`: Not a directory"), exit 126, attached
    // or detached
    for_each_user("habits_mount_126", |env| {
        env.import_busybox("busybox");
        let file = env.write("work/file", "x\n");
        env.give_to_user(&file);
        let vol = format!("{}:/bin", file.display());
        for detach in [false, true] {
            let mut cmd = env.rbox();
            cmd.args(["run", "--rm", "--network=none"]);
            if detach {
                cmd.arg("-d");
            }
            let out = cmd
                .args(["-v", &vol, "busybox", "true"])
                .output()
                .code_is(126);
            out.assert_clean_error();
            assert!(out.stderr.contains("Not a directory"), "{out}");
        }
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none"])
            .args(["--mount", "type=tmpfs,dst=/etc/passwd", "busybox", "true"])
            .output()
            .code_is(126);
        out.assert_clean_error();
        assert!(
            out.stderr
                .contains("mount tmpfs on `/etc/passwd`: ENOTDIR: Not a directory"),
            "{out}"
        );
    });
}

#[test]
fn exec_detached_latest_and_preserved_fds() {
    // Podman 4.3.1: `exec -d` returns at once (exit 0), prints the session's id (64 hex
    // digits, listed in inspect's ExecIDs) and leaves the command running, a detached command
    // that cannot start exits 125; `-l` takes every argument as the command
    for_each_user("habits_exec_d", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "ex", "busybox"])
            .args(["sleep", "1000"])
            .output()
            .success();
        // its output would hold the caller's pipe open: it is discarded
        let out = env
            .rbox()
            .args(["exec", "-d", "ex", "sh", "-c"])
            .arg("echo gone; touch /tmp/started; sleep 1000")
            .output()
            .success();
        let session = out.text();
        assert!(
            session.len() == 64 && session.bytes().all(|b| b.is_ascii_hexdigit()),
            "{out}"
        );
        assert_eq!(env.inspect("ex", "{{.ExecIDs}}"), format!("[{session}]"));
        crate::util::eventually("the detached command to start", || {
            env.rbox()
                .args(["exec", "ex", "test", "-e", "/tmp/started"])
                .output()
                .code
                == 0
        });
        let ps = env
            .rbox()
            .args(["exec", "ex", "ps", "-o", "args"])
            .output()
            .success();
        assert!(ps.stdout.contains("sleep 1000\n"), "{ps}");
        // with -t too: nothing hangs it up when rbox returns (it runs without a terminal)
        env.rbox()
            .args(["exec", "-dit", "ex", "sh", "-c", "sleep 999; :"])
            .output()
            .success();
        crate::util::eventually("the -dt command to run", || {
            let ps = env.rbox().args(["exec", "ex", "ps", "-o", "args"]).output();
            ps.stdout.contains("sleep 999\n")
        });
        let out = env
            .rbox()
            .args(["exec", "-d", "ex", "no-such-command"])
            .output()
            .code_is(125);
        assert!(out.stderr.contains("not found in $PATH"), "{out}");
        assert_eq!(out.stdout, "", "{out}");
        // the two that run, newest first; none once the container no longer runs
        let ids = env.inspect("ex", "{{.ExecIDs}}");
        assert!(
            ids.ends_with(&format!(" {session}]")) && ids.len() == 2 + 64 * 2 + 1,
            "{ids}"
        );
        let out = env
            .rbox()
            .args(["exec", "-l", "cat", "/proc/1/cmdline"])
            .output()
            .success();
        assert_eq!(out.stdout, "sleep\u{0}1000\u{0}");
        env.rbox()
            .args(["stop", "-t", "0", "ex"])
            .output()
            .success();
        assert_eq!(env.inspect("ex", "{{.ExecIDs}}"), "[]");
        env.rbox().args(["rm", "-f", "ex"]).output().success();
    });
}
