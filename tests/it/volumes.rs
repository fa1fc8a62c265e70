//! Named and anonymous volumes (issue 10): `rbox volume ...`, `-v NAME:/dst`, `-v /dst`,
//! `--mount type=volume`, image VOLUMEs, `--volumes-from`, `rm -v`. Where the text or the
//! shape matters, the expected output was observed with podman 4.3.1 run as the test user on
//! this machine and is hard-coded here.

use crate::util::{for_each_user, Env};

/// `rbox run --rm --network=none bb ARGS...`, which must succeed: its output, trimmed.
fn run(env: &Env, args: &[&str]) -> String {
    env.rbox()
        .args(["run", "--rm", "--network=none"])
        .args(args)
        .output()
        .success()
        .text()
}

/// What a named volume holds outlives the containers that wrote it; a volume named by `-v`
/// is made on first use.
#[test]
fn volume_data_survives_container_removal() {
    for_each_user("vol_survives", |env| {
        env.import_busybox("bb");
        env.rbox()
            .args([
                "run",
                "--network=none",
                "--name",
                "w",
                "-v",
                "keep:/data",
                "bb",
            ])
            .args(["sh", "-c", "echo kept > /data/f"])
            .output()
            .success();
        assert_eq!(env.text(&["volume", "ls", "-q"]), "keep");
        env.text(&["rm", "-v", "w"]);
        // a named volume is not anonymous: `rm -v` keeps it
        assert_eq!(env.text(&["volume", "ls", "-q"]), "keep");
        assert_eq!(run(env, &["-v", "keep:/d:ro", "bb", "cat", "/d/f"]), "kept");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "-v", "keep:/d:ro", "bb"])
            .args(["touch", "/d/g"])
            .output();
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains("Read-only file system"), "{out}");
    });
}

/// A new volume takes the image's content at its path (owners and modes kept, the volume's
/// root taking the directory's); once used it is not filled again; `nocopy` leaves it empty.
#[test]
fn volume_populated_from_image_content() {
    for_each_user("vol_populate", |env| {
        env.import_busybox("bb");
        let plain = run(
            env,
            &["bb", "stat", "-c", "%n %a %u", "/root", "/home/tester"],
        );
        let vol = run(
            env,
            &[
                "-v",
                "r:/root",
                "-v",
                "h:/home",
                "bb",
                "stat",
                "-c",
                "%n %a %u",
                "/root",
                "/home/tester",
            ],
        );
        if env.user.has_many_ids() {
            assert_eq!(vol, plain);
        } else {
            // a single-id map: the image shows its other owners through the FUSE overlay
            // (fuse_auto.rs), while a volume, a plain directory, has the owner on disk: the
            // one id there is
            assert_eq!(plain, "/root 700 0\n/home/tester 755 1000");
            assert_eq!(vol, "/root 700 0\n/home/tester 755 0");
        }
        let group = run(env, &["bb", "cat", "/etc/group"]);
        assert!(group.starts_with("root:"), "{group}");
        assert_eq!(
            run(env, &["-v", "e:/etc", "bb", "cat", "/etc/group"]),
            group
        );
        // a volume already used keeps its content, even where the image has other files
        run(env, &["-v", "e:/etc", "bb", "rm", "/etc/group"]);
        let out = run(env, &["-v", "e:/etc", "bb", "ls", "/etc"]);
        assert!(!out.contains("group") && out.contains("passwd"), "{out}");
        let out = run(env, &["-v", "n2:/root:nocopy", "bb", "ls", "-A", "/root"]);
        assert_eq!(out, "");
        // the first mount decided: a later one does not fill it either
        let out = run(env, &["-v", "n2:/etc", "bb", "ls", "-A", "/etc"]);
        assert!(!out.contains("passwd"), "{out}");
        let out = run(
            env,
            &[
                "--mount",
                "type=volume,src=n3,dst=/home,volume-nocopy",
                "bb",
                "ls",
                "-A",
                "/home",
            ],
        );
        assert_eq!(out, "");
    });
}

/// `-v /path` makes an anonymous volume: listed, shown in inspect's Mounts as Podman shows a
/// volume, kept by `rm`, removed by `rm -v` and by `run --rm`.
#[test]
fn anonymous_volumes_and_rm_v() {
    for_each_user("vol_anon", |env| {
        env.import_busybox("bb");
        env.rbox()
            .args([
                "create",
                "--network=none",
                "--name",
                "a",
                "-v",
                "/scratch",
                "bb",
                "true",
            ])
            .output()
            .success();
        let name = env.text(&["volume", "ls", "-q"]);
        assert_eq!(name.len(), 64, "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        let mounts = env.inspect("a", "{{json .Mounts}}");
        let v: serde_json::Value = serde_json::from_str(&mounts).unwrap();
        let m = &v[0];
        assert_eq!(m["Type"], "volume", "{mounts}");
        assert_eq!(m["Name"], name.as_str(), "{mounts}");
        assert_eq!(m["Destination"], "/scratch", "{mounts}");
        assert_eq!(m["Driver"], "local", "{mounts}");
        assert_eq!(m["RW"], true, "{mounts}");
        assert_eq!(m["Propagation"], "rprivate", "{mounts}");
        assert_eq!(
            m["Options"],
            serde_json::json!(["nosuid", "nodev", "rbind"])
        );
        assert!(
            m["Source"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/volumes/{name}/_data")),
            "{mounts}"
        );
        assert_eq!(
            env.text(&[
                "ps",
                "-a",
                "--filter",
                &format!("volume={name}"),
                "--format",
                "{{.Names}}"
            ]),
            "a"
        );
        // rm without -v keeps it
        env.text(&["rm", "a"]);
        assert_eq!(env.text(&["volume", "ls", "-q"]), name);
        env.text(&["volume", "rm", &name]);
        env.rbox()
            .args([
                "create",
                "--network=none",
                "--name",
                "b",
                "-v",
                "/scratch",
                "bb",
                "true",
            ])
            .output()
            .success();
        assert_eq!(env.text(&["volume", "ls", "-q"]).lines().count(), 1);
        env.text(&["rm", "-v", "b"]);
        assert_eq!(env.text(&["volume", "ls", "-q"]), "");
        run(env, &["-v", "/scratch", "bb", "true"]);
        assert_eq!(env.text(&["volume", "ls", "-q"]), "");
    });
}

/// An image's VOLUME entries get anonymous volumes, filled from the image; a `-v` on the
/// same destination replaces one.
#[test]
fn image_volumes_are_anonymous_volumes() {
    for_each_user("vol_image", |env| {
        let tar = env.copy_in(&crate::fixtures::busybox_rootfs_tar(), "busybox.tar");
        env.rbox()
            .args(["import", "--change", "VOLUME /etc"])
            .arg(&tar)
            .arg("bbv")
            .output()
            .success();
        let group = run(env, &["bbv", "cat", "/etc/group"]);
        assert!(group.starts_with("root:"), "{group}");
        env.text(&["volume", "rm", "--all"]);
        let out = env
            .rbox()
            .args([
                "run",
                "--network=none",
                "--name",
                "i",
                "bbv",
                "cat",
                "/etc/group",
            ])
            .output()
            .success();
        assert_eq!(out.text(), group);
        assert_eq!(
            env.inspect("i", "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}"),
            "volume /etc"
        );
        assert_eq!(env.text(&["volume", "ls", "-q"]).lines().count(), 1);
        env.text(&["rm", "-v", "i"]);
        assert_eq!(env.text(&["volume", "ls", "-q"]), "");
        assert_eq!(
            run(env, &["-v", "mine:/etc", "bbv", "cat", "/etc/group"]),
            group
        );
        assert_eq!(env.text(&["volume", "ls", "-q"]), "mine");
        // --image-volume: tmpfs, or nothing
        let out = run(
            env,
            &[
                "--image-volume",
                "tmpfs",
                "bbv",
                "sh",
                "-c",
                "test ! -e /etc/group && grep ' /etc ' /proc/mounts",
            ],
        );
        assert!(out.starts_with("tmpfs /etc tmpfs"), "{out}");
        let out = run(
            env,
            &[
                "--image-volume=ignore",
                "bbv",
                "sh",
                "-c",
                "cat /etc/group; grep ' /etc ' /proc/mounts || echo no mount",
            ],
        );
        assert_eq!(out, format!("{group}\nno mount"));
        assert_eq!(env.text(&["volume", "ls", "-q"]), "mine");
        let out = env
            .rbox()
            .args(["run", "--rm", "--image-volume=bogus", "bbv", "true"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: invalid image volume mode \"bogus\" required value: bind, tmpfs, ignore"
        );
    });
}

/// `volume rm` of a volume a container uses (even a stopped one) is refused with Podman's
/// text and exit code 2; `-f` removes the container with it.
#[test]
fn volume_in_use_refused_unless_forced() {
    for_each_user("vol_in_use", |env| {
        env.import_busybox("bb");
        env.rbox()
            .args([
                "create",
                "--network=none",
                "--name",
                "u",
                "-v",
                "busy:/d",
                "bb",
                "true",
            ])
            .output()
            .success();
        let id = env.field("u", ".Id");
        let out = env
            .rbox()
            .args(["volume", "rm", "busy"])
            .output()
            .code_is(2);
        out.assert_clean_error();
        assert_eq!(
            out.stderr.trim(),
            format!("Error: volume busy is being used by the following container(s): {id}: volume is being used")
        );
        assert_eq!(env.text(&["volume", "ls", "-q"]), "busy");
        assert_eq!(
            env.text(&["volume", "ls", "-q", "--filter", "dangling=true"]),
            ""
        );
        assert_eq!(env.text(&["volume", "rm", "-f", "busy"]), "busy");
        assert_eq!(env.text(&["volume", "ls", "-q"]), "");
        assert_eq!(env.text(&["ps", "-aq"]), "");
        // unknown: Podman's text and exit code 1
        let out = env
            .rbox()
            .args(["volume", "rm", "nosuch"])
            .output()
            .code_is(1);
        assert_eq!(
            out.stderr.trim(),
            "Error: no volume with name \"nosuch\" found: no such volume"
        );
    });
}

/// `--volumes-from C[:ro]` mounts C's volumes (and binds) on the same destinations.
#[test]
fn volumes_from_another_container() {
    for_each_user("vol_from", |env| {
        env.import_busybox("bb");
        env.rbox()
            .args([
                "run",
                "--network=none",
                "--name",
                "src",
                "-v",
                "shared:/data",
                "-v",
                "/anon",
                "bb",
            ])
            .args(["sh", "-c", "echo one > /data/f; echo two > /anon/g"])
            .output()
            .success();
        assert_eq!(
            run(
                env,
                &["--volumes-from", "src", "bb", "cat", "/data/f", "/anon/g"]
            ),
            "one\ntwo"
        );
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--volumes-from",
                "src:ro",
                "bb",
            ])
            .args(["touch", "/data/x"])
            .output();
        assert_ne!(out.code, 0, "{out}");
        // the anonymous volume stays while `src` uses it, and goes with `rm -v src`
        assert_eq!(env.text(&["volume", "ls", "-q"]).lines().count(), 2);
        env.text(&["rm", "-v", "src"]);
        assert_eq!(env.text(&["volume", "ls", "-q"]), "shared");
        env.rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--volumes-from",
                "nosuch",
                "bb",
                "true",
            ])
            .output()
            .rbox_error();
    });
}

/// `--mount type=volume,src=NAME,dst=...[,ro]`, and without src an anonymous volume.
#[test]
fn mount_type_volume() {
    for_each_user("vol_mount", |env| {
        env.import_busybox("bb");
        run(
            env,
            &[
                "--mount",
                "type=volume,source=mv,target=/m",
                "bb",
                "sh",
                "-c",
                "echo m > /m/f",
            ],
        );
        assert_eq!(
            run(
                env,
                &[
                    "--mount",
                    "type=volume,src=mv,dst=/x,ro",
                    "bb",
                    "cat",
                    "/x/f"
                ]
            ),
            "m"
        );
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--mount",
                "type=volume,src=mv,dst=/x,readonly",
            ])
            .args(["bb", "touch", "/x/g"])
            .output();
        assert_ne!(out.code, 0, "{out}");
        run(env, &["--mount", "type=volume,dst=/anon", "bb", "true"]);
        assert_eq!(env.text(&["volume", "ls", "-q"]), "mv");
        env.rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--mount",
                "type=volume,src=mv",
                "bb",
                "true",
            ])
            .output()
            .rbox_error();
    });
}

/// `volume export` writes a tar of the content; `volume import` unpacks one, from a file or
/// stdin, owners kept.
#[test]
fn volume_export_import_round_trip() {
    for_each_user("vol_export", |env| {
        env.import_busybox("bb");
        let many = env.user.has_many_ids();
        let script = if many {
            "mkdir /d/sub && echo x > /d/sub/f && ln -s sub/f /d/l && chown 1000:1000 /d/sub/f"
        } else {
            "mkdir /d/sub && echo x > /d/sub/f && ln -s sub/f /d/l"
        };
        run(env, &["-v", "src:/d", "bb", "sh", "-c", script]);
        let tar = env.path("work/v.tar");
        env.rbox()
            .args(["volume", "export", "-o"])
            .arg(&tar)
            .arg("src")
            .output()
            .success();
        env.text(&["volume", "create", "dst"]);
        env.rbox()
            .args(["volume", "import", "dst"])
            .arg(&tar)
            .output()
            .success();
        let show = "cat /d/l; stat -c '%n %u' /d/sub/f";
        let want = run(env, &["-v", "src:/d", "bb", "sh", "-c", show]);
        assert_eq!(run(env, &["-v", "dst:/d", "bb", "sh", "-c", show]), want);
        if many {
            assert!(want.ends_with("/d/sub/f 1000"), "{want}");
        }
        env.text(&["volume", "create", "dst2"]);
        let bytes = std::fs::read(&tar).unwrap();
        env.rbox()
            .args(["volume", "import", "dst2", "-"])
            .stdin(bytes)
            .output()
            .success();
        assert_eq!(run(env, &["-v", "dst2:/d", "bb", "sh", "-c", show]), want);
        // to stdout when it is not a terminal
        let out = env
            .rbox()
            .args(["volume", "export", "src"])
            .output()
            .success();
        assert!(out.stdout.contains("sub/f"), "{out}");
        env.rbox()
            .args(["volume", "import", "nosuch"])
            .arg(&tar)
            .output()
            .rbox_error();
    });
}

/// `volume ls`, `inspect`, `exists` and `create` as Podman 4.3 prints them.
#[test]
fn volume_ls_and_inspect_shape() {
    for_each_user("vol_shape", |env| {
        assert_eq!(
            env.text(&["volume", "create", "--label", "a=b", "v1"]),
            "v1"
        );
        // without a subordinate range only id 0 exists
        let uid = if env.user.has_many_ids() { "5" } else { "0" };
        assert_eq!(
            env.text(&["volume", "create", "-o", &format!("o=uid={uid}"), "v2"]),
            "v2"
        );
        let anon = env.text(&["volume", "create"]);
        assert_eq!(anon.len(), 64);
        let out = env.rbox().args(["volume", "ls"]).output().success();
        assert_eq!(
            out.text(),
            format!("DRIVER      VOLUME NAME\nlocal       {anon}\nlocal       v1\nlocal       v2")
        );
        assert_eq!(
            env.text(&["volume", "ls", "-q", "--filter", "label=a"]),
            "v1"
        );
        assert_eq!(
            env.text(&["volume", "ls", "-q", "--filter", "label=a=c"]),
            ""
        );
        assert_eq!(
            env.text(&["volume", "ls", "-q", "--filter", "name=v2"]),
            "v2"
        );
        assert_eq!(
            env.text(&[
                "volume",
                "ls",
                "--format",
                "{{.Name}}={{.Driver}}",
                "--filter",
                "name=v1"
            ]),
            "v1=local"
        );
        let text = env.text(&["volume", "inspect", "v1"]);
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("          \""))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "Name",
                "Driver",
                "Mountpoint",
                "CreatedAt",
                "Labels",
                "Scope",
                "Options",
                "MountCount",
                "NeedsCopyUp",
                "NeedsChown"
            ],
            "{text}"
        );
        assert!(
            text.starts_with("[\n     {\n          \"Name\": \"v1\","),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["Labels"]["a"], "b");
        assert_eq!(v[0]["Scope"], "local");
        assert!(v[0]["CreatedAt"].as_str().unwrap().ends_with('Z'));
        assert!(v[0]["Mountpoint"]
            .as_str()
            .unwrap()
            .starts_with(&env.store().to_string_lossy().into_owned()));
        let v: serde_json::Value =
            serde_json::from_str(&env.text(&["volume", "inspect", "v2"])).unwrap();
        assert_eq!(v[0]["UID"], uid.parse::<u32>().unwrap());
        assert_eq!(
            v[0]["Options"],
            serde_json::json!({"UID": uid, "o": format!("uid={uid}")})
        );
        assert_eq!(
            env.text(&[
                "volume",
                "inspect",
                "--format",
                "{{.Name}} {{.Driver}}",
                "v2"
            ]),
            "v2 local"
        );
        let json = env.text(&["volume", "ls", "--format", "json"]);
        assert!(json.starts_with("[\n  {\n    \"Name\": "), "{json}");
        let all: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 3);
        env.rbox()
            .args(["volume", "exists", "v1"])
            .output()
            .success();
        env.rbox()
            .args(["volume", "exists", "v9"])
            .output()
            .code_is(1);
        let out = env
            .rbox()
            .args(["volume", "inspect", "v9"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: inspecting object: no such volume v9"
        );
        // nothing found: an empty list, then the error (podman 4.3.1); nothing with --format
        assert_eq!(out.stdout, "[]\n");
        let out = env
            .rbox()
            .args(["volume", "inspect", "--format", "{{.Name}}", "v9"])
            .output()
            .rbox_error();
        assert_eq!(out.stdout, "");
        // what exists is printed, then the error
        let out = env
            .rbox()
            .args(["volume", "inspect", "v1", "v9"])
            .output()
            .rbox_error();
        assert!(out.stdout.contains("\"Name\": \"v1\""), "{out}");
        assert_eq!(
            out.stderr.trim(),
            "Error: inspecting object: no such volume v9"
        );
        let out = env
            .rbox()
            .args(["volume", "create", "v1"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: volume with name v1 already exists: volume already exists"
        );
        env.text(&["volume", "create", "--ignore", "v1"]);
        let out = env
            .rbox()
            .args(["volume", "create", "-o", "foo=bar", "v3"])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: invalid mount option foo for driver 'local': invalid argument"
        );
        let out = env.rbox().args(["volume", "rm"]).output().rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: choose either one or more volumes or all"
        );
        assert_eq!(env.text(&["volume", "prune", "-f"]).lines().count(), 3);
        assert_eq!(env.text(&["volume", "ls", "-q"]), "");
    });
}

/// Bad volume names are refused with Podman's words and exit code 125, wherever they are given.
#[test]
fn bad_volume_names_exit_125() {
    for_each_user("vol_bad_names", |env| {
        env.import_busybox("bb");
        for bad in ["bad name", "a/b", ".x", "_x"] {
            let out = env
                .rbox()
                .args(["volume", "create", bad])
                .output()
                .rbox_error();
            assert_eq!(
                out.stderr.trim(),
                "Error: running volume create option: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument"
            );
        }
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "-v",
                "bad name:/d",
                "bb",
                "true",
            ])
            .output()
            .rbox_error();
        assert_eq!(
            out.stderr.trim(),
            "Error: creating named volume \"bad name\": running volume create option: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument"
        );
        for args in [
            vec!["-v", "/anon:ro"],
            vec!["-v", "a@b:/d"],
            vec!["--mount", "type=volume,src=-x,dst=/d"],
            vec!["-v", "ok:/d:bogus"],
        ] {
            let out = env
                .rbox()
                .args(["run", "--rm", "--network=none"])
                .args(&args)
                .args(["bb", "true"])
                .output()
                .rbox_error();
            assert!(out.stderr.contains("invalid"), "{out}");
        }
        assert_eq!(env.text(&["volume", "ls", "-q"]), "");
        assert_eq!(env.text(&["ps", "-aq"]), "");
    });
}

/// `:U` gives the volume to the container's user; `-o o=uid=N,gid=N` sets its owner at create.
#[test]
fn volume_owner_options() {
    for_each_user("vol_owner", |env| {
        if !env.user.has_many_ids() {
            // only id 0 exists: no other owner can be given
            env.rbox()
                .args(["volume", "create", "-o", "o=uid=7,gid=8", "o7"])
                .output()
                .rbox_error();
            assert_eq!(env.text(&["volume", "ls", "-q"]), "");
            return;
        }
        env.import_busybox("bb");
        // root's files first; `U` gives the volume and its content to the user, links too
        run(
            env,
            &[
                "-v",
                "owned:/d",
                "bb",
                "sh",
                "-c",
                "mkdir /d/sub && touch /d/sub/f && ln -s /nowhere /d/l",
            ],
        );
        assert_eq!(
            run(
                env,
                &[
                    "-u",
                    "1000:1000",
                    "-v",
                    "owned:/d:U",
                    "bb",
                    "sh",
                    "-c",
                    "touch /d/g && stat -c '%u %g' /d /d/sub /d/sub/f /d/g && stat -c '%u' /d/l"
                ]
            ),
            "1000 1000\n1000 1000\n1000 1000\n1000 1000\n1000"
        );
        env.text(&["volume", "create", "-o", "o=uid=7,gid=8", "o7"]);
        assert_eq!(
            run(env, &["-v", "o7:/d", "bb", "stat", "-c", "%u %g", "/d"]),
            "7 8"
        );
    });
}

/// The shell completion offers volume names where a volume is asked for.
#[test]
fn volume_names_complete() {
    for_each_user("vol_complete", |env| {
        env.text(&["volume", "create", "alpha"]);
        env.text(&["volume", "create", "beta"]);
        let out = env
            .cmd(crate::util::RBOX)
            .env("COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", "3")
            .env("_CLAP_COMPLETE_COMP_TYPE", "9")
            .env("_CLAP_COMPLETE_SPACE", "true")
            .env("_CLAP_IFS", "\n")
            .env("RBOX_ROOT", env.store())
            .args(["--", "rbox", "volume", "inspect", ""])
            .output()
            .success();
        let words = out.lines();
        assert_eq!(words[..2], ["alpha", "beta"], "{out}");
    });
}

/// Mounts go by the depth of their destination, as in Podman: a volume on /etc keeps rbox's
/// /etc/hosts on top of it, a shallower volume given later does not hide a deeper one, and a
/// user's mount on /etc/hosts itself replaces rbox's.
#[test]
fn mounts_go_by_depth() {
    for_each_user("vol_depth", |env| {
        env.import_busybox("bb");
        let hosts = env.write("work/myhosts", "10.9.9.9 mine\n");
        let out = run(
            env,
            &[
                "--add-host",
                "extra.test:10.1.2.3",
                "-v",
                "deep:/x/y",
                "-v",
                "shallow:/x",
                "-v",
                "etcvol:/etc",
                "bb",
                "sh",
                "-c",
                "grep -c extra.test /etc/hosts; test -d /x/y && echo deep-visible; test -e /etc/passwd && echo copied",
            ],
        );
        assert_eq!(out, "1\ndeep-visible\ncopied", "{out}");
        let hosts_arg = format!("{}:/etc/hosts:ro", hosts.display());
        let out = run(env, &["-v", &hosts_arg, "bb", "cat", "/etc/hosts"]);
        assert_eq!(out, "10.9.9.9 mine", "{out}");
    });
}

/// `--mount type=image` (issue 10), as Podman 4.3 does it: the image's files at the target,
/// read-only unless `rw=true` (the writes then go with the container), an unknown image
/// refused in Podman's words (not pulled), inspect's Mounts entry as Podman's. One layer is a
/// bind, several an overlay. Unlike Podman, `rmi` refuses the image while a container
/// mounts it (Podman removes it and breaks the container).
#[test]
fn mount_type_image_as_podman() {
    for_each_user("mount_image", |env| {
        env.import_busybox("busybox");
        env.write(
            "ctx/Containerfile",
            "FROM busybox\nRUN echo img > /marker\n",
        );
        env.rbox()
            .args(["build", "--network=none", "-q", "-t", "marked"])
            .arg(env.path("ctx"))
            .output()
            .success();
        let run = |mount: &str, script: &str| {
            env.rbox()
                .args(["run", "--rm", "--network=none", "--mount", mount, "busybox"])
                .args(["sh", "-c", script])
                .output()
        };
        let probe = "cat /img/marker; touch /img/x 2>/dev/null && echo writable || echo read-only";
        let ro = run("type=image,source=marked,target=/img", probe).success();
        assert_eq!(ro.lines(), ["img", "read-only"], "{ro}");
        let rw = run("type=image,src=marked,dst=/img,rw=true", probe).success();
        assert_eq!(rw.lines(), ["img", "writable"], "{rw}");
        // a single layer: the image's one directory, read-only
        let one = run(
            "type=image,source=busybox,target=/img",
            "test -x /img/bin/busybox && touch /img/x 2>/dev/null || echo read-only",
        )
        .success();
        assert_eq!(one.text(), "read-only", "{one}");
        let bad = run("type=image,source=nosuch,target=/img", "true").rbox_error();
        assert_eq!(
            bad.stderr.trim_end(),
            "Error: creating image volume \"nosuch\":\"/img\": nosuch: image not known",
            "{bad}"
        );
        let ps = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(ps.stdout, "", "nothing left: {ps}");
        env.rbox()
            .args(["create", "--name", "m", "--network=none"])
            .args([
                "--mount",
                "type=image,source=marked,target=/img",
                "busybox",
                "true",
            ])
            .output()
            .success();
        assert_eq!(
            env.inspect("m", "{{json .Mounts}}"),
            r#"[{"Destination":"/img","Driver":"","Mode":"","Options":null,"Propagation":"","RW":false,"Source":"marked","Type":"image"}]"#
        );
        env.rbox().args(["rmi", "marked"]).output().code_is(2);
        env.rbox().args(["rm", "m"]).output().success();
        env.rbox().args(["rmi", "marked"]).output().success();
    });
}
