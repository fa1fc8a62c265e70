//! `rbox build`: the cache of context file digests behind COPY's cache key (a file touched
//! without a change hits, a change that keeps the size and the mtime misses), a COPY's
//! links to the unchanged files of the layer it made last time, and parallel
//! stages stopped at once, with nothing left behind, when one fails or when the build gets
//! Ctrl-C's SIGINT (during a RUN step or before one, while a COPY is under way).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{for_each_user, unique, Env};

fn build(env: &Env, args: &[&str]) -> crate::util::Output {
    env.rbox()
        .arg("build")
        .arg("--network=none")
        .args(args)
        .arg(env.path("work/ctx"))
        .output()
}

/// Whether the output says the step `step` (its `STEP` line contains it) came from the cache.
fn cached(out: &crate::util::Output, step: &str) -> bool {
    let l = out.lines();
    let i = l
        .iter()
        .position(|x| x.contains("STEP") && x.contains(step))
        .unwrap_or_else(|| panic!("no step {step:?}: {out}"));
    l.get(i + 1)
        .is_some_and(|n| n.starts_with("--> Using cache"))
}

#[test]
fn build_cache_file_digests_follow_content_not_mtime() {
    for_each_user("build_digests", |env| {
        // written before the import, so their stamps are old enough to be remembered
        env.write("work/ctx/src/a", "aaaa\n");
        env.write("work/ctx/src/b", "bbbb\n");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nCOPY src/ /src/\nRUN cat /src/a /src/b > /out\nCMD [\"cat\", \"/out\"]\n",
        );
        env.import_busybox("busybox");
        // a digest is remembered only for a file unchanged for 100 ms before it is hashed
        // (copy.rs's RACY_NS): an import can take less on a fast machine
        std::thread::sleep(Duration::from_millis(250));
        let first = build(env, &["-t", "one"]).success();
        assert!(!cached(&first, "COPY"), "{first}");
        // the context's files are remembered by path and stamp
        let note = std::fs::read(env.store().join("build-cache/notes/file-digests")).unwrap();
        let a = env.path("work/ctx/src/a");
        let has = |p: &Path| {
            let p = p.as_os_str().as_encoded_bytes();
            note.windows(p.len()).any(|w| w == p)
        };
        assert!(has(&a) && has(&env.path("work/ctx/src/b")));

        // new content of the same size, the mtime set back (`touch -r`): a miss
        let md = std::fs::metadata(&a).unwrap();
        std::fs::write(&a, "AAAA\n").unwrap();
        let t = filetime(&md);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &a,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let now = std::fs::metadata(&a).unwrap();
        assert_eq!(
            (now.len(), filetime(&now)),
            (md.len(), filetime(&md)),
            "the size and mtime are the old ones"
        );
        let second = build(env, &["-t", "two"]).success();
        assert!(!cached(&second, "COPY"), "{second}");
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "two"])
            .output()
            .success();
        assert_eq!(out.stdout, "AAAA\nbbbb\n");

        // touched without a change: a hit, for the COPY and the steps after it
        let t = nix::sys::time::TimeSpec::new(filetime(&md).tv_sec() + 100, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &a,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let third = build(env, &["-t", "three"]).success();
        assert!(cached(&third, "COPY") && cached(&third, "RUN"), "{third}");
        assert_eq!(
            env.text(&["inspect", "--format", "{{.Id}}", "two"]),
            env.text(&["inspect", "--format", "{{.Id}}", "three"])
        );
    });
}

/// A rebuild after one source file changed links the COPY's unchanged files from the layer
/// the same COPY made last time instead of writing them again; a file whose content or mode
/// changed is written anew; the image is the one a COPY without links makes (`--timestamp`:
/// the same id), and it stays whole when the earlier image goes.
#[test]
fn build_cache_copy_links_unchanged_files_from_its_last_layer() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for_each_user("build_copylink", |env| {
        for f in ["a", "b", "c", "d/e"] {
            env.write(&format!("work/ctx/src/{f}"), format!("{f} text\n"));
        }
        env.write("work/ctx/Containerfile", "FROM busybox\nCOPY src /src\n");
        env.import_busybox("busybox");
        // a fixed time: the directories' too, so that two builds can give the same image
        let ts = "--timestamp=1700000000";
        build(env, &[ts, "-t", "one"]).success();
        // new content of a, a new mode for b
        env.write("work/ctx/src/a", "A TEXT\n");
        let b = env.path("work/ctx/src/b");
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o600)).unwrap();
        build(env, &[ts, "-t", "two"]).success();
        let layers = |img: &str| env.text(&["inspect", "--format", "{{json .RootFS.Layers}}", img]);
        let top = layers("two");
        let top = top
            .trim_end_matches("\"]")
            .rsplit("sha256:")
            .next()
            .unwrap();
        let diff = env.store().join("layers").join(top).join("diff/src");
        let links = |f: &str| std::fs::symlink_metadata(diff.join(f)).unwrap().nlink();
        assert_eq!(
            [links("a"), links("b"), links("c"), links("d/e")],
            [1, 1, 2, 2],
            "linked: the unchanged c and d/e only"
        );
        // without the note of the last layer: written, and the same layer
        for e in std::fs::read_dir(env.store().join("build-cache/notes")).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("copy-layer-") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        build(env, &[ts, "--no-cache", "-t", "three"]).success();
        let id = |img: &str| env.text(&["inspect", "--format", "{{.Id}}", img]);
        assert_eq!(id("three"), id("two"));
        env.rbox().args(["rmi", "one", "three"]).output().success();
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=none", "two", "sh", "-c"])
            .arg("cat /src/a /src/c /src/d/e && stat -c %a /src/b")
            .output()
            .success();
        assert_eq!(out.stdout, "A TEXT\nc text\nd/e text\n600\n");
    });
}

fn filetime(md: &std::fs::Metadata) -> nix::sys::time::TimeSpec {
    use std::os::unix::fs::MetadataExt;
    nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec())
}

/// Two stages that sleep 60 s (`sleeper` and, with `fail`, one that fails once the other's
/// sleep has started: it waits for its marker in a shared cache mount), and a last stage
/// that needs both. TAG (a build arg) marks the steps' processes in their environment.
fn stages(fail: bool) -> String {
    let second = if fail {
        "RUN --mount=type=cache,id=$TAG,target=/sync i=0; while [ ! -e /sync/started ] && [ $i -lt 300 ]; do i=$((i+1)); sleep 0.1; done; exit 3"
    } else {
        "RUN --mount=type=cache,id=$TAG,target=/sync touch /sync/started2 && sleep 60"
    };
    format!(
        "FROM busybox AS sleeper\nARG TAG\n\
         RUN --mount=type=cache,id=$TAG,target=/sync touch /sync/started && sleep 60\n\
         FROM busybox AS other\nARG TAG\n{second}\n\
         FROM busybox\nCOPY --from=sleeper /etc/passwd /a\nCOPY --from=other /etc/passwd /b\n"
    )
}

/// The pids of processes whose environment has `TAG=tag` (the build's RUN steps).
fn tagged(tag: &str) -> Vec<String> {
    let want = format!("TAG={tag}");
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(env) = std::fs::read(format!("/proc/{n}/environ")) {
            if env.split(|b| *b == 0).any(|x| x == want.as_bytes()) {
                v.push(n);
            }
        }
    }
    v
}

/// Polls (every 20 ms, up to `secs`) until the process `pid`, a child of this one not yet
/// waited for, has exited (a zombie) or is gone.
pub(crate) fn exits_within(pid: nix::unistd::Pid, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s)
                if s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Err(_) => return true,
            _ => {}
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing of the build is left: no process of its steps, no rbox process on its store, no
/// container, no staging directory, no mount under the test's directory.
/// Ctrl-C to the running build `run`, as a terminal sends it (SIGINT to its process group):
/// it must end within 30 s as Podman's does, status 1 and no message.
pub(crate) fn ctrl_c(run: crate::util::Running) -> crate::util::Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-run.pid().as_raw()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let ended = exits_within(run.pid(), 30);
    let out = run.wait();
    assert!(ended, "the build went on after SIGINT: {out}");
    let out = out.code_is(1);
    assert!(!out.stderr.contains("Error"), "{out}");
    out
}

fn nothing_left(env: &Env, tag: &str) {
    assert_eq!(
        tagged(tag),
        Vec::<String>::new(),
        "processes of the build's steps"
    );
    let store = env.store();
    let store_s = store.to_string_lossy().into_owned();
    let mut mounts = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = std::fs::read(format!("/proc/{n}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            // the user namespace's keeper (rootless) stays, as after any command
            assert!(
                !c.contains(&store_s) || c.contains("pause"),
                "an rbox process of the build is left: {n} {c}"
            );
        }
        if let Ok(m) = std::fs::read_to_string(format!("/proc/{n}/mountinfo")) {
            mounts.extend(
                m.lines()
                    .filter(|l| l.contains(&*env.dir.to_string_lossy()))
                    .map(String::from),
            );
        }
    }
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let ps = env
        .rbox()
        .args(["ps", "-a", "--format", "{{.ID}}"])
        .output()
        .success();
    assert_eq!(ps.stdout, "", "containers left");
    let staging: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "staging left in the store: {staging:?}");
}

#[test]
fn build_cache_failing_stage_stops_a_long_sibling() {
    for_each_user("build_failstop", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/Containerfile", stages(true));
        let tag = format!("fail-{}", unique());
        let run = env
            .rbox()
            .args(["build", "--network=none", "--jobs", "2", "--build-arg"])
            .arg(format!("TAG={tag}"))
            .arg(env.path("work/ctx"))
            .spawn();
        // the sleeper sleeps 60 s: the build ends long before unless it is stopped
        let ended = exits_within(run.pid(), 30);
        let out = run.wait();
        assert!(
            ended,
            "the build waited for the sibling stage's sleep: {out}"
        );
        // the failing stage's error, not the stopped one's
        let out = out.code_is(1);
        assert!(
            out.stderr.contains("exit status 3") && out.stderr.contains("exit 3\""),
            "{out}"
        );
        assert!(!out.stderr.contains("137"), "{out}");
        nothing_left(env, &tag);
    });
}

#[test]
fn build_cache_sigint_stops_parallel_stages() {
    for_each_user("build_sigint", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/Containerfile", stages(false));
        let tag = format!("int-{}", unique());
        let run = env
            .rbox()
            .args(["build", "--network=none", "--jobs", "2", "--build-arg"])
            .arg(format!("TAG={tag}"))
            .arg(env.path("work/ctx"))
            .spawn();
        // both stages' RUN steps under way (their processes carry the tag)
        let deadline = Instant::now() + Duration::from_secs(60);
        let sleeping = || {
            tagged(&tag)
                .iter()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
                })
                .count()
        };
        while sleeping() < 2 {
            assert!(
                Instant::now() < deadline,
                "the stages' RUN steps did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ctrl_c(run);
        nothing_left(env, &tag);
    });
}

#[test]
fn build_cache_to_and_from_a_registry() {
    if !crate::registry::prerequisites() {
        return;
    }
    let reg = crate::registry::Registry::start(Default::default());
    for_each_user("build_regcache", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/f", "hello\n");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nCOPY f /f\nRUN echo built > /b\nENV X=1\n",
        );
        let repo = reg.image(&format!("cache/{}", env.user.name));
        let tls = reg.tls_flags();
        let mut first = env.rbox();
        first
            .args(["build", "--network=none", "--cache-to", &repo])
            .args(&tls)
            .args(["-t", "one"])
            .arg(env.path("work/ctx"));
        let first = first.output().success();
        let pushed = format!("--> Pushing cache {repo}:");
        assert_eq!(
            first
                .lines()
                .iter()
                .filter(|l| l.starts_with(&pushed))
                .count(),
            3,
            "{first}"
        );
        // a fresh store with the same base image: every step from the registry
        env.rbox()
            .args(["save", "-o"])
            .arg(env.path("work/bb.tar"))
            .arg("busybox")
            .output()
            .success();
        let other = || {
            let mut c = env.cmd(crate::util::RBOX);
            c.arg("--root")
                .arg(env.path("store2"))
                .arg("--runroot")
                .arg(env.path("run2"));
            c
        };
        other()
            .args(["load", "-i"])
            .arg(env.path("work/bb.tar"))
            .output()
            .success();
        let mut second = other();
        second
            .args(["build", "--network=none", "--cache-from", &repo])
            .args(&tls)
            .args(["-t", "two"])
            .arg(env.path("work/ctx"));
        let second = second.output().success();
        let l = second.lines();
        let pulled = format!("--> Cache pulled from remote {repo}:");
        assert_eq!(
            l.iter().filter(|x| x.starts_with(&pulled)).count(),
            3,
            "{second}"
        );
        assert_eq!(
            l.iter()
                .filter(|x| x.starts_with("--> Using cache "))
                .count(),
            3,
            "{second}"
        );
        // the same image, with the step's file
        assert_eq!(first.lines().last(), l.last(), "{first}\n{second}");
        let out = other()
            .args(["run", "--rm", "--network=none", "two", "cat", "/b", "/f"])
            .output()
            .success();
        assert_eq!(out.stdout, "built\nhello\n");
    });
}

#[test]
fn build_cache_sigint_stops_a_serial_run_step() {
    for_each_user("build_sigint1", |env| {
        env.import_busybox("busybox");
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nARG TAG\nRUN sleep 60\nRUN touch /never\n",
        );
        let tag = format!("one-{}", unique());
        let run = env
            .rbox()
            .args(["build", "--network=none", "-t", "never", "--build-arg"])
            .arg(format!("TAG={tag}"))
            .arg(env.path("work/ctx"))
            .spawn();
        let deadline = Instant::now() + Duration::from_secs(60);
        while tagged(&tag).is_empty() {
            assert!(Instant::now() < deadline, "the RUN step did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = ctrl_c(run);
        // nothing committed, nothing left
        assert!(!out.stdout.contains("COMMIT"), "{out}");
        env.rbox()
            .args(["image", "exists", "never"])
            .output()
            .code_is(1);
        nothing_left(env, &tag);
    });
}

/// Ctrl-C while a serial build copies its context, before any RUN step: the build stops as
/// Podman's does (status 1, no message) with its staging gone at once (not only swept by
/// the next command), and nothing else left.
#[test]
fn build_cache_sigint_during_a_copy() {
    for_each_user("build_sigint_copy", |env| {
        env.import_busybox("busybox");
        // 4,000 files: the COPY takes long enough to be seen under way
        let src = env.path("work/ctx/src");
        for d in 0..40 {
            let dir = src.join(format!("d{d}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..100 {
                std::fs::write(dir.join(format!("f{f}")), format!("{d} {f}\n")).unwrap();
            }
        }
        env.give_to_user(&env.path("work"));
        env.write(
            "work/ctx/Containerfile",
            "FROM busybox\nARG TAG\nENV A=1\nCOPY src /src\nRUN touch /never\n",
        );
        let tag = format!("copy-{}", unique());
        let run = env
            .rbox()
            .args(["build", "--network=none", "-t", "never", "--build-arg"])
            .arg(format!("TAG={tag}"))
            .arg(env.path("work/ctx"))
            .spawn();
        let tmp = env.store().join("tmp");
        let staging = || -> Vec<String> {
            std::fs::read_dir(&tmp)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !staging().iter().any(|n| n.ends_with(".build-copy")) {
            assert!(
                Instant::now() < deadline && tagged(&tag).is_empty(),
                "the COPY's staging was not seen"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let out = ctrl_c(run);
        assert!(!out.stdout.contains("RUN touch"), "{out}");
        assert_eq!(staging(), Vec::<String>::new(), "staging left in the store");
        env.rbox()
            .args(["image", "exists", "never"])
            .output()
            .code_is(1);
        nothing_left(env, &tag);
    });
}
