//! `rbox events`: what containers, images and volumes went through, logged as Podman's file
//! events logger logs it and printed in Podman 4.3's words, filtered, and followed as the log
//! grows, for each of the three users.

use std::time::{Duration, SystemTime};

use crate::util::{for_each_user, Env};

fn events(env: &Env, args: &[&str]) -> String {
    env.rbox()
        .arg("events")
        .args(args)
        .output()
        .success()
        .stdout
}

#[test]
fn events_record_the_lifecycle_as_podman_prints_it() {
    for_each_user("events", |env| {
        env.import_busybox("busybox");
        let out = env
            .rbox()
            .args(["run", "--name", "e1", "--label", "team=a", "--network=none"])
            .args(["busybox", "sh", "-c", "exit 3"])
            .output();
        assert_eq!(out.code, 3, "{out}");
        let id = env.inspect("e1", "{{.Id}}");
        env.rbox().args(["rename", "e1", "e2"]).output().success();
        env.rbox().args(["rm", "e2"]).output().success();
        env.rbox()
            .args(["tag", "busybox", "bb2"])
            .output()
            .success();
        env.rbox().args(["rmi", "bb2"]).output().success();
        env.rbox()
            .args(["volume", "create", "v1"])
            .output()
            .success();
        env.rbox().args(["volume", "rm", "v1"]).output().success();

        let all = events(env, &["--stream=false"]);
        let mine: Vec<&str> = all.lines().filter(|l| l.contains(&id)).collect();
        let statuses: Vec<&str> = mine
            .iter()
            .map(|l| l.split(' ').nth(5).unwrap_or(""))
            .collect();
        // an attached run: Podman 4.3's attach after start
        assert_eq!(
            statuses,
            ["create", "init", "start", "attach", "died", "cleanup", "rename", "remove"],
            "{all}"
        );
        // `2026-11-26 01:27:18.56357309 +0000 UTC container start ID (image=..., name=..., team=a)`
        let start = mine[2];
        assert!(start.contains(" +0000 UTC container start "), "{start}");
        assert!(
            start.ends_with(&format!(
                "{id} (image=localhost/busybox:latest, name=e1, team=a)"
            )),
            "{start}"
        );
        assert!(mine[6].ends_with("name=e2, team=a)"), "{}", mine[6]);
        assert!(all.contains(" image untag "), "{all}");
        assert!(all.contains(" image import "), "{all}");
        assert!(all.contains(" UTC volume create v1\n"), "{all}");

        // JSON, one object per line, with the died event's exit code
        let died = events(
            env,
            &[
                "--stream=false",
                "--format=json",
                "--filter=event=died",
                "--filter=container=e1",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(died.trim()).unwrap();
        assert_eq!(v["ContainerExitCode"], serde_json::json!(3), "{died}");
        assert_eq!(v["Status"], "died");
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Attributes"]["team"], "a");
        // templates, short ids, filters ANDed across keys and ORed within one
        let t = events(
            env,
            &[
                "--stream=false",
                "--no-trunc=false",
                "--format={{.ID}} {{.Status}}",
                "--filter=type=container",
                "--filter=event=rename",
                "--filter=event=remove",
                &format!("--filter=container={id}"),
            ],
        );
        assert_eq!(t, format!("{0} rename\n{0} remove\n", &id[..12]));
        let vols = events(env, &["--stream=false", "--filter=type=volume"]);
        assert_eq!(vols.lines().count(), 2, "{vols}");
        // --since after everything: nothing
        let none = events(env, &["--stream=false", "--since=2099-01-01T00:00:00Z"]);
        assert_eq!(none, "");
        let bad = env
            .rbox()
            .args(["events", "--stream=false", "--filter=bogus=1"])
            .output()
            .rbox_error();
        assert!(bad.stderr.contains("bogus is an invalid filter"), "{bad}");

        // an exec in a running container
        env.rbox()
            .args([
                "run",
                "-d",
                "--name",
                "x",
                "--network=none",
                "busybox",
                "sleep",
                "60",
            ])
            .output()
            .success();
        env.rbox().args(["exec", "x", "true"]).output().success();
        let ex = events(
            env,
            &[
                "--stream=false",
                "--filter=event=exec",
                "--format={{.Status}} {{.Name}}",
            ],
        );
        assert_eq!(ex, "exec x\n");
        env.rbox().args(["rm", "-f", "-t0", "x"]).output().success();

        // followed: a start after `events` began shows, and --until ends the stream
        let until =
            humantime::format_rfc3339(SystemTime::now() + Duration::from_secs(4)).to_string();
        let follower = std::thread::scope(|s| {
            let h = s.spawn(|| {
                env.rbox()
                    .args([
                        "events",
                        "--format={{.Status}} {{.Name}}",
                        "--filter=event=start",
                    ])
                    .arg(format!("--until={until}"))
                    .arg("--since=1s")
                    .output()
                    .success()
            });
            std::thread::sleep(Duration::from_millis(1500));
            env.rbox()
                .args([
                    "run",
                    "--rm",
                    "--name",
                    "later",
                    "--network=none",
                    "busybox",
                    "true",
                ])
                .output()
                .success();
            h.join().unwrap()
        });
        assert!(follower.stdout.contains("start later\n"), "{follower}");
    });
}

/// The events Podman 4.3 logs around a container's life besides its states, as observed with
/// its file logger: `exec_died` (with the exit code) after an exec, `attach` for `run`,
/// `start -a` and `attach`, no `cleanup` for a `--rm` container, `mount` for an export, one
/// `image build` (named by the image's id) and no events of the build's step containers,
/// and `remove` then `prune` for each volume a prune removes.
#[test]
fn events_of_exec_attach_export_build_and_prune_are_podmans() {
    for_each_user("events_more", |env| {
        env.import_busybox("busybox");
        let of = |name: &str| -> Vec<String> {
            events(
                env,
                &[
                    "--stream=false",
                    "--format={{.Status}} {{.ContainerExitCode}}",
                    &format!("--filter=container={name}"),
                ],
            )
            .lines()
            .map(str::to_string)
            .collect()
        };
        env.rbox()
            .args(["run", "-d", "--name", "x", "--network=none", "busybox"])
            .args(["sleep", "60"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["exec", "x", "sh", "-c", "exit 5"])
            .output();
        assert_eq!(out.code, 5, "{out}");
        env.rbox().args(["exec", "x", "true"]).output().success();
        // `-d`: the session's holder (outside the container: its ps does not list it) sees
        // the end
        env.rbox()
            .args(["exec", "-d", "x", "sh", "-c", "sleep 1; exit 7"])
            .output()
            .success();
        let ps = env
            .rbox()
            .args(["exec", "x", "ps", "-o", "args"])
            .output()
            .success();
        assert!(
            ps.stdout.contains("exit 7") && !ps.stdout.contains("rbox"),
            "{ps}"
        );
        crate::util::eventually("the detached exec's end to be logged", || {
            of("x").last().map(String::as_str) == Some("exec_died 7")
        });
        let tar = env.path("work/x.tar");
        env.rbox()
            .args(["export", "-o"])
            .arg(&tar)
            .arg("x")
            .output()
            .success();
        env.rbox().args(["rm", "-f", "-t0", "x"]).output().success();
        assert_eq!(
            of("x"),
            [
                "create 0",
                "init 0",
                "start 0",
                "exec 0",
                "exec_died 5",
                "exec 0",
                "exec_died 0",
                "exec 0",
                "exec 0",
                "exec_died 0",
                "exec_died 7",
                "mount 0",
                "died 137",
                "cleanup 0",
                "remove 0"
            ],
            "a detached container: no attach"
        );

        env.rbox()
            .args([
                "run",
                "--rm",
                "--name",
                "r",
                "--network=none",
                "busybox",
                "true",
            ])
            .output()
            .success();
        assert_eq!(
            of("r"),
            ["create 0", "init 0", "start 0", "attach 0", "died 0", "remove 0"]
        );
        env.rbox()
            .args(["create", "--name", "s", "--network=none", "busybox"])
            .args(["sh", "-c", "exit 4"])
            .output()
            .success();
        let out = env.rbox().args(["start", "-a", "s"]).output();
        assert_eq!(out.code, 4, "{out}");
        env.rbox()
            .args(["run", "-d", "--name", "a", "--network=none", "busybox"])
            .args(["sleep", "1"])
            .output()
            .success();
        env.rbox()
            .args(["attach", "--no-stdin", "a"])
            .output()
            .success();
        for name in ["s", "a"] {
            let got = of(name);
            let at = got.iter().position(|e| e == "attach 0");
            let start = got.iter().position(|e| e == "start 0");
            assert!(at.is_some() && at > start, "{name}: {got:?}");
        }

        std::fs::create_dir_all(env.path("work/ctx")).unwrap();
        env.write("work/ctx/Containerfile", "FROM busybox\nRUN echo hi > /f\n");
        env.give_to_user(&env.path("work"));
        let before = events(env, &["--stream=false", "--format={{.Type}}"])
            .lines()
            .count();
        env.rbox()
            .args(["build", "--network=none", "-q", "-t", "built"])
            .arg(env.path("work/ctx"))
            .output()
            .success();
        let id = env.inspect("built", "{{.Id}}");
        let id = id.trim_start_matches("sha256:");
        let after = events(
            env,
            &["--stream=false", "--format={{.Type}} {{.Status}} {{.Name}}"],
        );
        let new: Vec<&str> = after.lines().skip(before).collect();
        assert_eq!(new, [format!("image build {id}")], "{after}");

        env.rbox()
            .args(["volume", "create", "pv"])
            .output()
            .success();
        env.rbox()
            .args(["volume", "prune", "-f"])
            .output()
            .success();
        let vols = events(
            env,
            &[
                "--stream=false",
                "--filter=type=volume",
                "--format={{.Status}} {{.Name}}",
            ],
        );
        assert_eq!(vols, "create pv\nremove pv\nprune pv\n");

        // system prune: as Podman 4.3's, the container's removal, the volume's removal and
        // prune, each name of an image untagged and its nameless removal
        env.rbox()
            .args([
                "create",
                "--name",
                "c9",
                "--network=none",
                "busybox",
                "true",
            ])
            .output()
            .success();
        env.rbox()
            .args(["volume", "create", "v9"])
            .output()
            .success();
        let before = events(env, &["--stream=false", "--format={{.Type}}"])
            .lines()
            .count();
        env.rbox()
            .args(["system", "prune", "-a", "--volumes", "-f"])
            .output()
            .success();
        let after = events(
            env,
            &["--stream=false", "--format={{.Type}} {{.Status}} {{.Name}}"],
        );
        let new: Vec<&str> = after.lines().skip(before).collect();
        assert!(new.contains(&"container remove c9"), "{after}");
        let v = new.iter().position(|l| *l == "volume remove v9");
        assert!(
            v.is_some() && new.get(v.unwrap() + 1) == Some(&"volume prune v9"),
            "{after}"
        );
        let untag = new
            .iter()
            .position(|l| *l == "image untag localhost/busybox:latest");
        let next = untag.and_then(|u| new.get(u + 1)).map(|l| l.trim_end());
        assert_eq!(next, Some("image remove"), "{after}");
    });
}
