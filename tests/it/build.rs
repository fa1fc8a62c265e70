//! `rbox build`: multi-stage Containerfiles built offline from the imported busybox, the
//! image they make run, Podman's progress lines, the step cache (hits, and misses exactly
//! when a context file or a build arg changes), `.containerignore`, `--target`, and errors
//! that name the line.

use crate::util::{for_each_user, Env};

const MULTI: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS builder
ARG GREETING=hello
ENV WHO=world \
    EMPTY=
WORKDIR /src
COPY app.txt ./
RUN echo "$GREETING ${WHO}${EMPTY:-!}" > out.txt && cat app.txt >> out.txt
RUN <<EOF
echo heredoc > /src/here.txt
EOF

FROM busybox
COPY --from=builder /src/out.txt /src/here.txt /app/
COPY --chmod=0750 app.txt /app/mode.txt
WORKDIR /app
user 1000
CMD ["cat", "/app/out.txt"]
LABEL org.test.kind="multi stage"
"#;

fn build(env: &Env, args: &[&str]) -> crate::util::Output {
    env.rbox()
        .arg("build")
        .arg("--network=none")
        .args(args)
        .arg(env.path("work/ctx"))
        .output()
}

/// The steps of a build's output that came from the cache.
fn cached(out: &crate::util::Output) -> usize {
    out.lines()
        .iter()
        .filter(|l| l.starts_with("--> Using cache "))
        .count()
}

#[test]
fn build_multi_stage_image_runs_and_caches_steps() {
    for_each_user("build_multi", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/Containerfile", MULTI);
        env.write("work/ctx/app.txt", "app-content\n");
        let out = build(env, &["-t", "built"]).success();
        let lines = out.lines();
        // Podman's progress lines
        assert_eq!(lines[0], "[1/2] STEP 1/7: FROM $BASE AS builder", "{out}");
        assert!(
            lines.contains(&"[1/2] STEP 2/7: ARG GREETING=hello"),
            "{out}"
        );
        assert!(lines.contains(&"[2/2] STEP 1/7: FROM busybox"), "{out}");
        assert!(lines.contains(&"[2/2] COMMIT built"), "{out}");
        assert!(
            lines.contains(&"Successfully tagged localhost/built:latest"),
            "{out}"
        );
        assert!(
            lines.iter().any(|l| l.len() == 15 && l.starts_with("--> ")),
            "{out}"
        );
        let id = lines.last().unwrap().to_string();
        assert_eq!(id.len(), 64, "{out}");
        assert_eq!(env.inspect("built", "{{.Id}}"), id);
        assert_eq!(cached(&out), 0, "{out}");
        // the steps are intermediate images: listed with -a only, as Podman lists them
        let step = lines[2].strip_prefix("--> ").unwrap().to_string();
        assert_eq!(step.len(), 11, "{out}");
        assert!(!env.text(&["images", "-q"]).contains(&step));
        assert!(env.text(&["images", "-a", "-q"]).contains(&step));
        assert!(env
            .text(&["images", "-q", "--filter", "intermediate=true"])
            .contains(&step));

        // the image: files from the first stage, its config from the second
        assert_eq!(env.inspect("built", "{{.Config.User}}"), "1000");
        assert_eq!(env.inspect("built", "{{.Config.WorkingDir}}"), "/app");
        assert_eq!(
            env.inspect("built", "{{index .Config.Labels \"org.test.kind\"}}"),
            "multi stage"
        );
        let run = |args: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(args)
                .output()
                .success()
                .text()
        };
        assert_eq!(
            run(&[
                "--user",
                "0",
                "built",
                "sh",
                "-c",
                "cat out.txt here.txt; stat -c '%a %u' mode.txt"
            ]),
            "hello world!\napp-content\nheredoc\n750 0"
        );
        if env.user.has_many_ids() {
            // USER and CMD as the image says
            assert_eq!(run(&["built"]), "hello world!\napp-content");
            assert_eq!(run(&["built", "id", "-u"]), "1000");
        }

        // the same build again: every step from the cache, the same image
        let again = build(env, &["-t", "built"]).success();
        assert_eq!(again.lines().last().unwrap(), &id, "{again}");
        assert_eq!(cached(&again), 12, "{again}");

        // a changed context file: the steps before its COPY hit, the rest run again
        env.write("work/ctx/app.txt", "changed\n");
        let out = build(env, &["-t", "built"]).success();
        assert_eq!(cached(&out), 3, "{out}");
        assert_eq!(
            run(&["--user", "0", "built", "cat", "out.txt"]),
            "hello world!\nchanged"
        );

        // a changed build arg: the steps from its ARG on miss
        let out = build(env, &["-t", "built", "--build-arg", "GREETING=hi"]).success();
        assert_eq!(cached(&out), 0, "{out}");
        assert_eq!(
            run(&["--user", "0", "built", "cat", "out.txt"]),
            "hi world!\nchanged"
        );
        // --no-cache runs everything
        let out = build(env, &["--no-cache", "-q"]).success();
        assert_eq!(out.lines().len(), 1, "{out}");
        assert_eq!(out.text().len(), 64, "{out}");
    });
}

#[test]
fn build_ignore_file_target_and_errors() {
    for_each_user("build_ignore", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox AS first\nCOPY . /ctx/\nRUN ls /ctx > /list\n\nFROM first\nRUN echo second > /second\n",
        );
        env.write(
            "work/ctx/.containerignore",
            "*.log\n!keep.log\nsecret/\n**/*.tmp\n",
        );
        env.write("work/ctx/a.log", "x");
        env.write("work/ctx/keep.log", "x");
        env.write("work/ctx/secret/key", "x");
        env.write("work/ctx/sub/b.tmp", "x");
        env.write("work/ctx/sub/c.txt", "x");
        let out = build(env, &["--target", "first", "-t", "first"]).success();
        assert!(
            !out.stdout.contains("[2/2]") && !out.stdout.contains("second"),
            "{out}"
        );
        assert!(out.lines().contains(&"COMMIT first"), "{out}");
        let list = env
            .rbox()
            .args(["run", "--rm", "--network=none", "first", "sh", "-c"])
            .arg("cat /list; ls /ctx/sub; test -e /second || echo no-second")
            .output()
            .success()
            .text();
        assert_eq!(list, "Containerfile\nkeep.log\nsub\nc.txt\nno-second");
        let out = env
            .rbox()
            .args(["build", "--target", "nope"])
            .arg(env.path("work/ctx"))
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("The target \"nope\" was not found"),
            "{out}"
        );

        // -f relative to the working directory, else to the context (as Podman)
        env.write(
            "work/ctx/Alt.cf",
            "FROM busybox\nCOPY --from=busybox /bin/busybox /bb\n",
        );
        env.rbox()
            .args(["build", "--network=none", "-q", "-f", "Alt.cf", "-t", "alt"])
            .arg(env.path("work/ctx"))
            .output()
            .success();
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "alt",
                "cmp",
                "/bb",
                "/bin/busybox",
            ])
            .output()
            .success();
        assert_eq!(out.text(), "");
        let out = env
            .rbox()
            .args(["build", "-f", "/nonexistent/cf"])
            .arg(env.path("work/ctx"))
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("stat /nonexistent/cf: no such file or directory"),
            "{out}"
        );

        // errors name the line, and exit as Podman's
        env.write("work/bad/Containerfile", "FROM busybox\n\nBOGUS x\n");
        let out = env
            .rbox()
            .arg("build")
            .arg(env.path("work/bad"))
            .output()
            .rbox_error();
        assert!(
            out.stderr.contains("line 3: unknown instruction: BOGUS"),
            "{out}"
        );
        env.write(
            "work/bad/Containerfile",
            "FROM busybox\nCOPY missing.txt /\n",
        );
        let out = env
            .rbox()
            .arg("build")
            .arg(env.path("work/bad"))
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("building at STEP \"COPY missing.txt /\": line 2: no such file"),
            "{out}"
        );
        env.write(
            "work/bad/Containerfile",
            "FROM busybox\nRUN echo ok\nRUN exit 3\n",
        );
        let out = build_in(env, "work/bad").code_is(1);
        assert!(
            out.stderr.contains(
                "Error: building at STEP \"RUN exit 3\": while running runtime: exit status 3"
            ),
            "{out}"
        );
        if !env.user.has_many_ids() {
            // a step the runtime refuses (no such uid in a single-id namespace)
            env.write(
                "work/bad/Containerfile",
                "FROM busybox\nUSER 1000\nRUN true\n",
            );
            let out = build_in(env, "work/bad").rbox_error();
            assert!(
                out.stderr
                    .contains("building at STEP \"RUN true\": user `1000`"),
                "{out}"
            );
        }
        // no container is left behind by the steps
        assert_eq!(env.text(&["ps", "-aq"]), "");
    });
}

fn build_in(env: &Env, dir: &str) -> crate::util::Output {
    env.rbox()
        .args(["build", "--network=none"])
        .arg(env.path(dir))
        .output()
}

#[test]
fn build_config_instructions_add_tarball_heredoc_and_stdin() {
    for_each_user("build_config", |env| {
        env.import_busybox("busybox");
        env.write("work/c3/h.txt", "hello\n");
        env.give_to_user(&env.path("work/c3"));
        env.cmd("tar")
            .arg("czf")
            .arg(env.path("work/c3/arch.tar.gz"))
            .arg("-C")
            .arg(env.path("work/c3"))
            .arg("h.txt")
            .output()
            .success();
        let file = "FROM busybox\nENV X=ex\nSHELL [\"/bin/sh\", \"-ec\"]\nENTRYPOINT echo ep $X\n\
                    EXPOSE 80 53/udp\nVOLUME /data\nSTOPSIGNAL SIGINT\n\
                    HEALTHCHECK --interval=5s CMD true\nADD arch.tar.gz /ad/\n\
                    COPY <<EOT /cf.txt\nline $X\nEOT\nMAINTAINER me\n";
        let iid = env.path("work/iid");
        let out = env
            .rbox()
            .args([
                "build",
                "--network=none",
                "-f",
                "-",
                "--format",
                "docker",
                "-t",
                "cfg",
            ])
            .args(["--label", "a=b", "--iidfile"])
            .arg(&iid)
            .arg(env.path("work/c3"))
            .stdin(file)
            .output()
            .success();
        let id = out.lines().last().unwrap().to_string();
        assert_eq!(
            std::fs::read_to_string(&iid).unwrap(),
            format!("sha256:{id}")
        );
        let run = |args: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(args)
                .output()
                .success()
                .text()
        };
        assert_eq!(run(&["cfg"]), "ep ex");
        assert_eq!(
            run(&["--entrypoint", "", "cfg", "cat", "/ad/h.txt", "/cf.txt"]),
            "hello\nline ex"
        );
        let cfg = env.inspect("cfg", "{{json .Config}}");
        for want in [
            r#""Entrypoint":["/bin/sh","-ec","echo ep $X"]"#,
            r#""ExposedPorts":{"53/udp":{},"80/tcp":{}}"#,
            r#""StopSignal":"SIGINT""#,
            r#""Volumes":{"/data":{}}"#,
            r#""a":"b""#,
        ] {
            assert!(cfg.contains(want), "{want} not in {cfg}");
        }
        let history = env.text(&["history", "--no-trunc", "cfg"]);
        assert!(
            history.contains("/bin/sh -c #(nop) MAINTAINER me"),
            "{history}"
        );
        // the OCI format has no healthcheck: Podman's warning
        let out = env
            .rbox()
            .args(["build", "--network=none", "-q", "-f", "-"])
            .arg(env.path("work/c3"))
            .stdin(file)
            .output()
            .success();
        assert!(
            out.stderr
                .contains("HEALTHCHECK is not supported for OCI image format and will be ignored"),
            "{out}"
        );
    });
}

#[test]
fn build_run_mounts_bind_cache_tmpfs_secret() {
    for_each_user("build_mounts", |env| {
        env.import_busybox("busybox");
        env.write("work/c4/src/f", "srcfile\n");
        env.write("work/secret", "s3cret\n");
        env.write(
            "work/c4/Containerfile",
            "FROM busybox\n\
             RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/f > /copied\n\
             RUN --mount=type=cache,target=/var/cache/x echo c >> /var/cache/x/log && wc -l < /var/cache/x/log > /count\n\
             RUN --mount=type=tmpfs,target=/tmp/t touch /tmp/t/gone\n\
             RUN --mount=type=secret,id=tok cat /run/secrets/tok > /tokcopy\n",
        );
        let secret = format!("id=tok,src={}", env.path("work/secret").display());
        let b = || {
            env.rbox()
                .args(["build", "--network=none", "-q", "--no-cache", "-t", "m"])
                .args(["--secret", &secret])
                .arg(env.path("work/c4"))
                .output()
                .success()
        };
        b();
        let show = || {
            env.rbox()
                .args(["run", "--rm", "--network=none", "m", "sh", "-c"])
                .arg("cat /copied /count /tokcopy; for p in /mnt /var/cache /tmp/t /run/secrets; do test -e $p && echo $p; done; true")
                .output()
                .success()
                .text()
        };
        // the mounts leave nothing in the image but what the steps wrote
        assert_eq!(show(), "srcfile\n1\ns3cret");
        // the cache directory outlives the build
        b();
        assert_eq!(show(), "srcfile\n2\ns3cret");
        // a required secret that is not given
        env.write(
            "work/c5/Containerfile",
            "FROM busybox\nRUN --mount=type=secret,id=x,required=true true\n",
        );
        let out = env
            .rbox()
            .args(["build", "--network=none"])
            .arg(env.path("work/c5"))
            .output()
            .rbox_error();
        assert!(out.stderr.contains("secret \"x\" is required"), "{out}");
    });
}

#[test]
fn build_squash_keeps_deletions_and_squash_all_makes_one_layer() {
    for_each_user("build_squash", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/c6/Containerfile",
            "FROM busybox\n\
             RUN echo a > /a && mkdir /d && echo x > /d/x\n\
             RUN rm /bin/vi && rm -r /d && mkdir /d && echo y > /d/y\n\
             RUN echo b > /b\n",
        );
        let base = env.inspect("busybox", "{{len .RootFS.Layers}}");
        assert_eq!(base, "1");
        for (flag, layers) in [("--squash", "2"), ("--squash-all", "1")] {
            env.rbox()
                .args(["build", "--network=none", "-q", flag, "-t", "sq"])
                .arg(env.path("work/c6"))
                .output()
                .success();
            assert_eq!(
                env.inspect("sq", "{{len .RootFS.Layers}}"),
                layers,
                "{flag}"
            );
            let seen = env
                .rbox()
                .args(["run", "--rm", "--network=none", "sq", "sh", "-c"])
                .arg("cat /a /b; ls /d; test -e /bin/vi || echo no-vi")
                .output()
                .success()
                .text();
            assert_eq!(seen, "a\nb\ny\nno-vi", "{flag}");
        }
    });
}

#[test]
fn build_onbuild_triggers_run_in_the_child_and_unused_args_warn() {
    for_each_user("build_onbuild", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/p/Containerfile",
            "FROM busybox\nONBUILD RUN echo trig > /trig\n",
        );
        env.rbox()
            .args([
                "build",
                "--network=none",
                "-q",
                "--format",
                "docker",
                "-t",
                "parent",
            ])
            .arg(env.path("work/p"))
            .output()
            .success();
        env.write("work/c/Containerfile", "FROM parent\nRUN cat /trig\n");
        let out = env
            .rbox()
            .args([
                "build",
                "--network=none",
                "--format",
                "docker",
                "-t",
                "child",
            ])
            .args(["--build-arg", "NOPE=1"])
            .arg(env.path("work/c"))
            .output()
            .success();
        let lines = out.lines();
        // Podman's numbering: the trigger is a step of its own
        assert_eq!(lines[0], "STEP 1/2: FROM parent", "{out}");
        assert_eq!(lines[1], "STEP 2/3: RUN echo trig > /trig", "{out}");
        assert!(lines.contains(&"STEP 3/3: RUN cat /trig"), "{out}");
        assert!(lines.contains(&"trig"), "{out}");
        assert!(
            out.stderr
                .contains("[Warning] one or more build args were not consumed: [NOPE]"),
            "{out}"
        );
        // triggers are not passed on to grandchildren
        env.write("work/g/Containerfile", "FROM child\nRUN true\n");
        let out = env
            .rbox()
            .args(["build", "--network=none"])
            .arg(env.path("work/g"))
            .output()
            .success();
        assert_eq!(out.lines()[1], "STEP 2/2: RUN true", "{out}");
    });
}

/// Serves `body` over HTTP on a free local port for every request, until the process ends;
/// returns the port.
fn serve(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn build_add_of_a_url() {
    let port = serve("downloaded\n");
    for_each_user("build_add_url", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/u/Containerfile",
            format!(
                "FROM busybox\nADD http://127.0.0.1:{port}/files/dl.txt /web/\n\
                 ADD http://127.0.0.1:{port}/other /named.txt\n"
            ),
        );
        env.rbox()
            .args(["build", "--network=none", "-q", "-t", "u"])
            .arg(env.path("work/u"))
            .output()
            .success();
        let seen = env
            .rbox()
            .args(["run", "--rm", "--network=none", "u", "sh", "-c"])
            .arg("cat /web/dl.txt /named.txt; stat -c %a /web/dl.txt")
            .output()
            .success()
            .text();
        assert_eq!(seen, "downloaded\ndownloaded\n600");
        env.write(
            "work/u/Containerfile",
            format!(
                "FROM busybox\nADD --checksum=sha256:{} http://127.0.0.1:{port}/x /x\n",
                "0".repeat(64)
            ),
        );
        let out = env
            .rbox()
            .args(["build", "--network=none"])
            .arg(env.path("work/u"))
            .output()
            .rbox_error();
        assert!(out.stderr.contains("unexpected checksum"), "{out}");
    });
}

#[test]
fn build_sources_stay_inside_the_context() {
    for_each_user("build_escape", |env| {
        env.import_busybox("busybox");
        env.write("work/outside.txt", "host secret\n");
        env.write("work/e/in.txt", "inside\n");
        std::os::unix::fs::symlink("/in.txt", env.path("work/e/abs")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", env.path("work/e/up")).unwrap();
        env.write(
            "work/e/Containerfile",
            "FROM busybox\nCOPY abs /a\nCOPY up* /u/\n",
        );
        // a link is followed inside the context only: `/in.txt` is the context's, `../x`
        // stops at the context's root
        let out = env
            .rbox()
            .args(["build", "--network=none", "-q"])
            .arg(env.path("work/e"))
            .output()
            .rbox_error();
        assert!(out.stderr.contains("no such file or directory"), "{out}");
        assert!(!out.stderr.contains("host secret"), "{out}");
        env.write("work/e/Containerfile", "FROM busybox\nCOPY abs /a\n");
        let id = env
            .rbox()
            .args(["build", "--network=none", "-q"])
            .arg(env.path("work/e"))
            .output()
            .success()
            .text();
        let seen = env
            .rbox()
            .args(["run", "--rm", "--network=none", &id, "cat", "/a"])
            .output()
            .success()
            .text();
        assert_eq!(seen, "inside");
        env.write(
            "work/e/Containerfile",
            "FROM busybox\nCOPY ../outside.txt /o\n",
        );
        let out = env
            .rbox()
            .args(["build", "--network=none", "-q"])
            .arg(env.path("work/e"))
            .output()
            .rbox_error();
        assert!(
            out.stderr
                .contains("forbidden path outside the build context: ../outside.txt"),
            "{out}"
        );
    });
}

#[test]
fn build_writes_through_the_images_directory_links() {
    for_each_user("build_links", |env| {
        env.import_busybox("busybox");
        env.write("work/l/f", "file\n");
        env.write(
            "work/l/Containerfile",
            "FROM busybox\nRUN mkdir -p /usr/lib2 && ln -s usr/lib2 /lib2 && ln -s /usr/lib2 /abs2\n\
             COPY f /lib2/\nCOPY f /abs2/sub/g\nWORKDIR /lib2/w\n",
        );
        let id = env
            .rbox()
            .args(["build", "--network=none", "-q"])
            .arg(env.path("work/l"))
            .output()
            .success()
            .text();
        let seen = env
            .rbox()
            .args(["run", "--rm", "--network=none", &id, "sh", "-c"])
            .arg(
                "readlink /lib2; readlink /abs2; cat /usr/lib2/f /usr/lib2/sub/g; test -d /usr/lib2/w && pwd",
            )
            .output()
            .success()
            .text();
        assert_eq!(seen, "usr/lib2\n/usr/lib2\nfile\nfile\n/usr/lib2/w");
    });
}

#[test]
fn build_run_steps_with_the_copy_driver() {
    for_each_user("build_copy_driver", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/cd/Containerfile",
            "FROM busybox\n\
             RUN echo a > /a && mkdir /d && echo x > /d/x\n\
             RUN rm /bin/vi /d/x && echo y > /d/y && chmod 700 /d\n",
        );
        let id = env
            .rbox()
            .args(["--storage-driver", "copy", "build", "--network=none", "-q"])
            .arg(env.path("work/cd"))
            .output()
            .success()
            .text();
        let seen = env
            .rbox()
            .args(["run", "--rm", "--network=none", &id, "sh", "-c"])
            .arg("cat /a; ls /d; stat -c %a /d; test -e /bin/vi || echo no-vi")
            .output()
            .success()
            .text();
        assert_eq!(seen, "a\ny\n700\nno-vi");
    });
}

/// A built image's HEALTHCHECK (docker format) becomes the container's healthcheck, and
/// `--no-healthcheck` or `--health-cmd` override it, as in Podman.
#[test]
fn build_healthcheck_reaches_the_container() {
    for_each_user("build_health", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nHEALTHCHECK --interval=7s --retries=4 CMD test -e /etc/passwd\n",
        );
        build(env, &["--format", "docker", "-t", "hc"]).success();
        let out = env
            .rbox()
            .args([
                "image",
                "inspect",
                "hc",
                "--format",
                "{{json .Healthcheck}}",
            ])
            .output()
            .success();
        assert_eq!(
            out.text(),
            r#"{"Interval":7000000000,"Retries":4,"Test":["CMD-SHELL","test -e /etc/passwd"]}"#
        );
        env.rbox()
            .args([
                "create",
                "--network=none",
                "--name",
                "c1",
                "hc",
                "sleep",
                "60",
            ])
            .output()
            .success();
        let hc = env.field("c1", "json .Config.Healthcheck");
        assert!(
            hc.contains(r#""Test":["CMD-SHELL","test -e /etc/passwd"]"#),
            "{hc}"
        );
        assert!(hc.contains(r#""Interval":7000000000"#), "{hc}");
        assert!(hc.contains(r#""Retries":4"#), "{hc}");
        env.rbox().args(["start", "c1"]).output().success();
        env.rbox()
            .args(["healthcheck", "run", "c1"])
            .output()
            .success();
        env.rbox()
            .args([
                "create",
                "--network=none",
                "--name",
                "c2",
                "--no-healthcheck",
                "hc",
                "true",
            ])
            .output()
            .success();
        env.rbox()
            .args(["healthcheck", "run", "c2"])
            .output()
            .code_is(125);
        env.rbox().args(["rm", "-f", "c1", "c2"]).output().success();
    });
}

/// `rmi` of a built image takes the untagged step images it was made from, as Podman does,
/// but not one another image or a container still stands on.
#[test]
fn rmi_of_a_built_image_takes_its_unused_steps() {
    for_each_user("build_rmi", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/f", "hi\n");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nRUN echo a > /a\nCOPY f /f\nRUN echo b > /b\n",
        );
        build(env, &["-t", "one"]).success();
        let all = |env: &Env| {
            env.rbox()
                .args(["images", "-a", "-q"])
                .output()
                .success()
                .lines()
                .len()
        };
        assert_eq!(all(env), 4, "busybox, two steps, the image");
        let out = env.rbox().args(["rmi", "one"]).output().success();
        let deleted = out
            .lines()
            .iter()
            .filter(|l| l.starts_with("Deleted: "))
            .count();
        assert_eq!(deleted, 3, "{out}");
        assert_eq!(all(env), 1);

        // a second image on the same steps keeps them; a container keeps its image
        build(env, &["-t", "one"]).success();
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nRUN echo a > /a\nCOPY f /f\nRUN echo c > /c\n",
        );
        build(env, &["-t", "two"]).success();
        let out = env.rbox().args(["rmi", "two"]).output().success();
        let deleted = out
            .lines()
            .iter()
            .filter(|l| l.starts_with("Deleted: "))
            .count();
        assert_eq!(deleted, 1, "the steps it shares with `one` stay: {out}");
        env.rbox()
            .args(["create", "--network=none", "--name", "c", "one", "true"])
            .output()
            .success();
        env.rbox().args(["rmi", "-a"]).output().code_is(2);
        env.rbox().args(["rm", "c"]).output().success();
        env.rbox().args(["rmi", "-a"]).output().success();
        assert_eq!(all(env), 0);
    });
}

/// Podman leaves no image for `FROM scratch`: only the steps and the result, and the step's
/// cache still hits on a rebuild; `FROM scratch` alone is the result, kept.
#[test]
fn build_from_scratch_leaves_no_scratch_image() {
    for_each_user("build_scratch", |env| {
        env.write("work/ctx/f", "hi\n");
        env.write("work/ctx/Containerfile", "FROM scratch\nCOPY f /f\n");
        let images = |env: &Env| {
            env.rbox()
                .args(["images", "-a", "--format", "{{.Repository}} {{.Size}}"])
                .output()
                .success()
                .lines()
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        };
        build(env, &["-t", "s1"]).success();
        let one = images(env);
        assert_eq!(one.len(), 1, "{one:?}");
        assert!(one[0].starts_with("localhost/s1 "), "{one:?}");
        assert_eq!(cached(&build(env, &["-t", "s1"]).success()), 1);
        assert_eq!(images(env), one);
        // a two-stage build whose first stage is skipped stands it in with scratch too
        env.write(
            "work/ctx/Containerfile",
            "FROM scratch AS unused\nCOPY f /g\nFROM scratch\nCOPY f /f\n",
        );
        build(env, &["-t", "s1"]).success();
        assert_eq!(images(env), one);
        env.write("work/ctx/Containerfile", "FROM scratch\n");
        let out = build(env, &["-q"]).success();
        let id = out.text();
        let shown = env
            .rbox()
            .args(["images", "-a", "-q", "--no-trunc"])
            .output()
            .success();
        assert!(shown.stdout.contains(&id), "{shown}");
    });
}

/// As Podman's build: the caller's proxy variables reach RUN steps (not the image's config);
/// `--http-proxy=false` keeps them out; a build arg of the same name wins.
#[test]
fn build_passes_the_callers_proxy_variables_to_run() {
    for_each_user("build_proxy", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nRUN env | grep -i _proxy= | sort > /proxies; true\n",
        );
        let proxies = |args: &[&str], tag: &str| {
            env.rbox()
                .env("http_proxy", "http://10.9.9.9:3128")
                .env("HTTPS_PROXY", "http://10.9.9.8:1")
                .args(["build", "--network=none", "--no-cache", "-t", tag])
                .args(args)
                .arg(env.path("work/ctx"))
                .output()
                .success();
            env.rbox()
                .args(["run", "--rm", "--network=none", "--http-proxy=false", tag])
                .args(["cat", "/proxies"])
                .output()
                .success()
                .stdout
        };
        assert_eq!(
            proxies(&[], "p1"),
            "HTTPS_PROXY=http://10.9.9.8:1\nhttp_proxy=http://10.9.9.9:3128\n"
        );
        assert_eq!(
            env.inspect("p1", "{{.Config.Env}}"),
            "[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin]"
        );
        assert_eq!(proxies(&["--http-proxy=false"], "p2"), "");
        assert_eq!(
            proxies(&["--build-arg", "http_proxy=http://arg:1"], "p3"),
            "HTTPS_PROXY=http://10.9.9.8:1\nhttp_proxy=http://arg:1\n"
        );
    });
}

/// The `# escape` directive (backtick continuations), `COPY --link` (its files as a plain
/// COPY gives them) and the `buildx build` and `image build` spellings.
#[test]
fn build_escape_directive_copy_link_and_other_spellings() {
    for_each_user("build_spellings", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/a.txt", "x\n");
        env.write(
            "work/ctx/Containerfile",
            "# escape=`\nFROM busybox\nCOPY --link a.txt /d/\nRUN echo one `\n    two > /e.txt\n",
        );
        for verb in [&["buildx", "build"][..], &["image", "build"][..]] {
            env.rbox()
                .args(verb)
                .args(["--network=none", "-q", "-t", "spelled"])
                .arg(env.path("work/ctx"))
                .output()
                .success();
            let out = env
                .rbox()
                .args(["run", "--rm", "--network=none", "spelled"])
                .args(["sh", "-c", "cat /e.txt /d/a.txt"])
                .output()
                .success();
            assert_eq!(out.lines(), ["one two", "x"], "{verb:?}: {out}");
        }
    });
}

/// `FROM --platform=` of the host's own platform, and `--compression-format zstd`: the step's
/// layer is stored zstd-compressed (what `save --format oci-dir` writes shows it).
#[test]
fn build_from_platform_and_zstd_layers() {
    for_each_user("build_zstd", |env| {
        env.import_busybox("busybox");
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        env.write(
            "work/ctx/Containerfile",
            format!("FROM --platform=linux/{arch} busybox\nRUN echo z > /z\n"),
        );
        build(env, &["--compression-format", "zstd", "-q", "-t", "zs"]).success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "zs", "cat", "/z"])
            .output()
            .success();
        assert_eq!(out.text(), "z");
        let dir = env.path("zs-oci");
        env.rbox()
            .args(["save", "--format", "oci-dir", "-o"])
            .arg(&dir)
            .arg("zs")
            .output()
            .success();
        let zstd = std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path()).is_ok_and(|b| b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
            })
            .count();
        assert_eq!(zstd, 1, "the RUN step's layer, zstd-compressed");
    });
}

#[test]
fn build_timestamp_makes_the_same_image_twice() {
    // Podman: `--timestamp` sets the image's and the new history entries' creation time and
    // every new layer's file times, so two uncached builds of the same inputs are one image
    for_each_user("build_timestamp", |env| {
        env.import_busybox("busybox");
        env.write("work/c9/src/a", "a\n");
        env.write("work/c9/src/sub/b", "b\n");
        env.write(
            "work/c9/Containerfile",
            "FROM busybox\nCOPY src /app/deep/\nRUN echo hi > /app/x && mkdir /app/y\nENV A=1\n",
        );
        env.give_to_user(&env.path("work/c9"));
        let build = |tag: &str| {
            env.rbox()
                .args(["build", "--network=none", "-q", "--no-cache"])
                .args(["--timestamp", "100", "-t", tag])
                .arg(env.path("work/c9"))
                .output()
                .success()
                .text()
        };
        let first = build("ts1");
        // a second later: without --timestamp every time in the new layers would differ
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(build("ts2"), first);
        assert_eq!(env.inspect("ts1", "{{.Created}}"), "1970-01-01T00:01:40Z");
        let created = env
            .rbox()
            .args(["history", "--format", "{{.CreatedAt}}", "ts1"])
            .output()
            .success();
        assert_eq!(
            created.lines()[..3],
            ["1970-01-01 00:01:40 +0000 UTC"; 3],
            "{created}"
        );
        let times = env
            .rbox()
            .args(["run", "--rm", "--network=none", "ts1"])
            .args([
                "stat",
                "-c",
                "%Y %n",
                "/app",
                "/app/deep",
                "/app/deep/sub/b",
                "/app/x",
            ])
            .output()
            .success();
        assert_eq!(
            times.lines(),
            [
                "100 /app",
                "100 /app/deep",
                "100 /app/deep/sub/b",
                "100 /app/x"
            ]
        );
        // another timestamp is another cache key: no step reused from ts1's build
        let out = env
            .rbox()
            .args(["build", "--network=none", "--timestamp", "200", "-t", "ts3"])
            .arg(env.path("work/c9"))
            .output()
            .success();
        assert!(!out.stdout.contains("--> Using cache"), "{out}");
    });
}
