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
        assert_eq!(
            statuses,
            ["create", "init", "start", "died", "cleanup", "rename", "remove"],
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
        assert!(mine[5].ends_with("name=e2, team=a)"), "{}", mine[5]);
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
