//! `rbox build --jobs`: independent stages build at the same time (each stage's RUN waits,
//! with a deadline, for the other's marker in a shared cache mount, so the build finishes
//! only when they overlap), `--jobs 1` one after the other, the output the same lines in the
//! same order as a serial build, and the first failing stage stopping the build with its
//! error and exit code.

use crate::fixtures;
use crate::podman::Podman;
use crate::util::{for_each_user, have, require, Env, Who};

/// Two independent stages `a` and `b`, each waiting (up to WAIT tenths of a second) for the
/// other's marker in the cache mount ID, a stage nothing needs (it fails if built), and a
/// last stage that needs `a` and `b` and keeps the order in which they started and ended.
const PAIR: &str = r#"FROM busybox AS a
ARG ID
ARG WAIT
RUN --mount=type=cache,id=$ID,target=/sync echo a-start >> /sync/log && touch /sync/a && i=0 && while [ ! -e /sync/b ] && [ $i -lt $WAIT ]; do i=$((i+1)); sleep 0.1; done; echo a-end >> /sync/log; echo a > /a.txt

FROM busybox AS b
ARG ID
ARG WAIT
RUN --mount=type=cache,id=$ID,target=/sync echo b-start >> /sync/log && touch /sync/b && i=0 && while [ ! -e /sync/a ] && [ $i -lt $WAIT ]; do i=$((i+1)); sleep 0.1; done; echo b-end >> /sync/log; echo b > /b.txt

FROM busybox AS unused
RUN exit 9

FROM busybox
ARG ID
RUN --mount=type=cache,id=$ID,target=/sync cat /sync/log > /log
COPY --from=a /a.txt /
COPY --from=b /b.txt /
CMD ["cat", "/log", "/a.txt", "/b.txt"]
"#;

fn build(env: &Env, args: &[&str]) -> crate::util::Output {
    env.rbox()
        .arg("build")
        .arg("--network=none")
        .args(args)
        .arg(env.path("work/ctx"))
        .output()
}

/// The stage numbers of the `[i/n] ` lines, in output order.
fn stage_order(out: &crate::util::Output) -> Vec<usize> {
    out.lines()
        .iter()
        .filter_map(|l| l.strip_prefix('['))
        .filter_map(|l| l.split_once('/'))
        .filter_map(|(i, _)| i.parse().ok())
        .collect()
}

#[test]
fn build_jobs_run_independent_stages_at_once() {
    for_each_user("build_jobs", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/Containerfile", PAIR);
        // in parallel: both start before either ends (a 60 s deadline each, never reached)
        let par = build(
            env,
            &[
                "--jobs",
                "2",
                "--build-arg",
                "ID=par",
                "--build-arg",
                "WAIT=600",
                "-t",
                "par",
            ],
        )
        .success();
        let log = env
            .rbox()
            .args(["run", "--rm", "--network=none", "par"])
            .output()
            .success();
        let l = log.lines();
        assert_eq!(l.len(), 6, "{log}");
        let mut starts = vec![l[0], l[1]];
        starts.sort();
        assert_eq!(
            starts,
            ["a-start", "b-start"],
            "both stages started first:\n{log}\n{par}"
        );
        assert_eq!(&l[4..], ["a", "b"], "{log}");
        // the output reads as a serial build's: stage 1's lines, then 2's, then 3's
        let order = stage_order(&par);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{par}");
        // stage 3 is not needed: not built (it would fail)
        assert!(
            order.contains(&1) && order.contains(&2) && order.contains(&4),
            "{par}"
        );
        assert!(!order.contains(&3), "{par}");

        // --jobs 1: one stage after the other (each gives up waiting after 1 s)
        let ser = build(
            env,
            &[
                "--jobs",
                "1",
                "--build-arg",
                "ID=ser",
                "--build-arg",
                "WAIT=10",
                "-t",
                "ser",
            ],
        )
        .success();
        let log = env
            .rbox()
            .args(["run", "--rm", "--network=none", "ser"])
            .output()
            .success();
        assert_eq!(
            log.lines(),
            ["a-start", "a-end", "b-start", "b-end", "a", "b"],
            "{log}\n{ser}"
        );
        // the same lines as the parallel build, ids and RUN output aside
        let steps = |o: &crate::util::Output| -> Vec<String> {
            o.lines()
                .iter()
                .filter(|l| l.contains("STEP "))
                .map(|l| l.to_string())
                .collect()
        };
        assert_eq!(steps(&par), steps(&ser));
    });
}

/// Stage `a` fails at once; stage `b`, under way, waits (up to 15 s) for a marker that never
/// comes and would then run a second step.
const FAIL: &str = r#"FROM busybox AS a
RUN echo a-fails; exit 7

FROM busybox AS b
RUN i=0; while [ ! -e /never ] && [ $i -lt 150 ]; do i=$((i+1)); sleep 0.1; done
RUN echo b-second-step

FROM busybox
COPY --from=a /etc/passwd /a
COPY --from=b /etc/passwd /b
"#;

#[test]
fn build_jobs_first_failure_stops_the_build() {
    for_each_user("build_jobs_fail", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/Containerfile", FAIL);
        let ser = build(env, &["--jobs", "1", "-t", "f"]);
        let par = build(env, &["--jobs", "2", "-t", "f"]);
        // the exit code and the error of a serial build
        assert_ne!(ser.code, 0, "{ser}");
        assert_eq!(par.code, ser.code, "{par}\n{ser}");
        par.assert_clean_error();
        let err = |o: &crate::util::Output| {
            o.stderr
                .lines()
                .find(|l| l.starts_with("Error: "))
                .map(String::from)
        };
        assert_eq!(err(&par), err(&ser), "{par}\n{ser}");
        assert!(err(&par).unwrap().contains("exit 7"), "{par}");
        // b's step under way finished, no later step started, the last stage never began
        assert!(par.stdout.contains("[2/3] STEP 2/3: RUN i=0"), "{par}");
        assert!(!par.stdout.contains("[2/3] STEP 3/3"), "{par}");
        assert!(!par.stdout.contains("[3/3]"), "{par}");
        // no image, no build container left behind
        env.rbox()
            .args(["image", "exists", "f"])
            .output()
            .code_is(1);
        let ps = env.rbox().args(["ps", "-a", "-q"]).output().success();
        assert_eq!(ps.text(), "", "{ps}");
    });
}

/// A multi-stage build with the config instructions and owners and modes from
/// `COPY --chown` and a RUN's chmod, the same for rbox and Podman.
const ROUND_TRIP: &str = r#"FROM localhost/busybox AS files
RUN mkdir -p /out/sub && echo hello > /out/sub/greeting && chmod 0640 /out/sub/greeting && echo tool > /out/tool && chmod 0755 /out/tool

FROM localhost/busybox
ENV GREETING=hi OTHER="two words"
WORKDIR /app
COPY --from=files --chown=1000:1000 /out/ /app/
COPY --chown=1000:1000 app.txt /app/app.txt
USER 1000
EXPOSE 8080/tcp
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $GREETING $OTHER from $(pwd) as $(id -u)"]
"#;

/// What the round trip compares: the default command's output and a listing of /app with
/// owners and modes.
const LISTING: &str = "cd /app && find . | sort | xargs stat -c '%n %u:%g %a' && cat app.txt";

/// The parts of an image's Config (as `image inspect` shows it) a Containerfile sets.
fn config_of(inspect_json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(inspect_json).unwrap();
    let c = &v[0]["Config"];
    serde_json::json!({
        "User": c["User"], "Env": c["Env"], "Entrypoint": c["Entrypoint"], "Cmd": c["Cmd"],
        "WorkingDir": c["WorkingDir"], "ExposedPorts": c["ExposedPorts"],
    })
}

#[test]
fn build_round_trips_with_podman() {
    if !require(
        have("podman"),
        "podman is not installed (apt-get install podman)",
    ) {
        return;
    }
    // the registry leg only where the test registry can run
    let reg = crate::registry::prerequisites()
        .then(|| crate::registry::Registry::start(crate::registry::Options::default()));
    for_each_user("build_podman", |env| {
        // Rootless podman needs a subordinate id range: the user without one is rbox-only.
        if !(matches!(env.user.who, Who::Root | Who::Sub)
            || (env.user.who == Who::Current && env.user.has_many_ids()))
        {
            eprintln!(
                "skip: podman needs a subordinate id range, {:?} has none",
                env.user.who
            );
            return;
        }
        let p = Podman::new(env);
        env.import_busybox("localhost/busybox");
        let tar = env.copy_in(&fixtures::busybox_rootfs_tar(), "busybox.tar");
        p.cmd()
            .arg("import")
            .arg(&tar)
            .arg("localhost/busybox")
            .output()
            .success();
        env.write("work/ctx/Containerfile", ROUND_TRIP);
        env.write("work/ctx/app.txt", "app-content\n");

        // rbox's own build, run by rbox
        build(env, &["-t", "localhost/rt:1"]).success();
        let mine_cmd = env
            .rbox()
            .args(["run", "--rm", "--network=none", "localhost/rt:1"])
            .output()
            .success();
        assert_eq!(mine_cmd.text(), "hi two words from /app as 1000");
        let mine_ls = env
            .rbox()
            .args(["run", "--rm", "--network=none", "localhost/rt:1", LISTING])
            .output()
            .success();
        assert_eq!(
            mine_ls.lines(),
            [
                ". 1000:1000 755",
                "./app.txt 1000:1000 644",
                "./sub 1000:1000 755",
                "./sub/greeting 1000:1000 640",
                "./tool 1000:1000 755",
                "app-content",
            ],
            "{mine_ls}"
        );
        let mine_cfg = config_of(
            &env.rbox()
                .args(["image", "inspect", "localhost/rt:1"])
                .output()
                .success()
                .stdout,
        );

        // (a) what rbox built, saved, loaded and run by podman: the same output and Config
        let archive = env.path("rt.tar");
        env.rbox()
            .args(["save", "--format", "oci-archive", "-o"])
            .arg(&archive)
            .arg("localhost/rt:1")
            .output()
            .success();
        p.cmd()
            .arg("load")
            .arg("-i")
            .arg(&archive)
            .output()
            .success();
        let out = p.run("localhost/rt:1", &[]).output().success();
        assert_eq!(out.text(), mine_cmd.text());
        let out = p.run("localhost/rt:1", &[LISTING]).output().success();
        assert_eq!(out.lines(), mine_ls.lines(), "{out}");
        let theirs = config_of(
            &p.cmd()
                .args(["image", "inspect", "localhost/rt:1"])
                .output()
                .success()
                .stdout,
        );
        assert_eq!(theirs, mine_cfg);

        // ... and pushed by rbox to the test registry, pulled and run by podman
        if let Some(reg) = &reg {
            let dest = reg.image(&format!("built/{}:1", env.user.name));
            env.rbox()
                .args(["tag", "localhost/rt:1", &dest])
                .output()
                .success();
            env.rbox()
                .arg("push")
                .args(reg.tls_flags())
                .arg(&dest)
                .output()
                .success();
            p.cmd()
                .arg("pull")
                .args(reg.tls_flags())
                .arg(&dest)
                .output()
                .success();
            let out = p.run(&dest, &[LISTING]).output().success();
            assert_eq!(out.lines(), mine_ls.lines(), "{out}");
            let theirs = config_of(
                &p.cmd()
                    .args(["image", "inspect", &dest])
                    .output()
                    .success()
                    .stdout,
            );
            assert_eq!(theirs, mine_cfg);
        }

        // (b) podman builds the same Containerfile; rbox loads and runs it: the same files,
        // owners, modes, output and Config as rbox's own build
        p.cmd()
            .args(["build", "--network=none", "-t", "localhost/pb:1"])
            .arg(env.path("work/ctx"))
            .output()
            .success();
        let archive = env.path("pb.tar");
        p.cmd()
            .args(["save", "--format", "oci-archive", "-o"])
            .arg(&archive)
            .arg("localhost/pb:1")
            .output()
            .success();
        env.rbox()
            .arg("load")
            .arg("-i")
            .arg(&archive)
            .output()
            .success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "localhost/pb:1"])
            .output()
            .success();
        assert_eq!(out.text(), mine_cmd.text());
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "localhost/pb:1", LISTING])
            .output()
            .success();
        assert_eq!(out.lines(), mine_ls.lines(), "{out}");
        let theirs = config_of(
            &env.rbox()
                .args(["image", "inspect", "localhost/pb:1"])
                .output()
                .success()
                .stdout,
        );
        assert_eq!(theirs, mine_cfg);
    });
}
