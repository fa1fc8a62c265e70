//! Ctrl-C inside the long parts of image commands: a pull (plain, and a build's FROM) stuck in
//! a layer, a layer's tar being written and compressed (commit, a build's COPY), an archive
//! streamed by save and read by load, a rootfs tarball read by import. Each must stop at once with Podman's status (1, no
//! message) and leave the store as it was before the command: no blob, layer, image record
//! or `tmp/` entry of its own; the same command afterwards works.
//!
//! The signal comes at a point the test sees, never after a sleep: the registry proxy says
//! when it stalls a layer half-way, a staging entry of the layer write shows in `tmp/`, the
//! first bytes of a saved archive arrive, half of an archive (a tarball) waits in load's (import's) stdin.

use std::time::{Duration, Instant};

use crate::build_cache::ctrl_c;
use crate::registry::{prerequisites, push_helper, Fault, FaultyProxy, Options, Registry};
use crate::util::{for_each_user, Env, Running};

/// What the store holds, below the parts a command may add to: blobs, layers, images, names
/// and staging.
fn store_state(env: &Env) -> Vec<String> {
    let root = env.store();
    let mut v = Vec::new();
    for part in ["blobs", "layers", "images", "names", "tmp"] {
        v.extend(
            crate::util::tree(&root.join(part))
                .into_iter()
                .map(|p| format!("{part}/{p}")),
        );
    }
    v
}

/// After an interrupted pull: the store holds what it held `before`, plus at most whole layers
/// and blobs of the pull's other downloads that ended before the signal (kept by design: each
/// is installed by one rename and valid on its own). Nothing staged, no image, no name.
fn only_whole_downloads_added(env: &Env, before: &[String], what: &str) {
    let root = env.store();
    let after = store_state(env);
    let added: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    for p in &added {
        let whole = match p.split('/').collect::<Vec<_>>()[..] {
            ["blobs", "sha256", hex] => {
                use sha2::Digest as _;
                let data = std::fs::read(root.join(p.as_str())).unwrap();
                hex::encode(sha2::Sha256::digest(&data)) == hex
            }
            ["layers", id, ..] => root.join("layers").join(id).join("layer.json").is_file(),
            _ => false,
        };
        assert!(whole, "the interrupted {what} left `{p}`: {added:?}");
    }
    assert!(
        before.iter().all(|p| after.contains(p)),
        "the interrupted {what} removed something"
    );
}

/// Waits until `tmp/` holds an entry ending in `suffix` (the command is inside that step),
/// or fails when the command ended first.
fn wait_for_staging(env: &Env, run: &Running, suffix: &str) {
    let tmp = env.store().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let seen = std::fs::read_dir(&tmp).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
        });
        if seen {
            return;
        }
        assert!(
            !crate::build_cache::exits_within(run.pid(), 0),
            "the command ended before any `{suffix}` staging was seen"
        );
        assert!(Instant::now() < deadline, "no `{suffix}` staging in 300 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn pull_stopped_by_sigint_in_a_stalled_layer() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("sigint_pull", |env| {
        push_helper(&reg, env, "test/intr");
        env.rbox().args(["images"]).output().success();
        let before = store_state(env);
        // The proxy stops relaying half-way through the layer (about 1 MiB): rbox waits in a
        // read that only the signal can end.
        let proxy = FaultyProxy::start(&reg.addr, 512 * 1024, Fault::Stall);
        let image = format!("{}/test/intr:1", proxy.addr);
        let run = env
            .rbox()
            .args(["pull"])
            .args(reg.tls_flags())
            .arg(&image)
            .spawn();
        proxy
            .fired
            .recv_timeout(Duration::from_secs(120))
            .expect("the pull never reached the stall");
        ctrl_c(run);
        only_whole_downloads_added(env, &before, "pull");
        drop(proxy);
        let direct = reg.image("test/intr:1");
        crate::registry::rbox_pull(env, &reg, &direct)
            .output()
            .success();
        env.rbox()
            .args(["run", "--rm", &direct, "args", "after-sigint"])
            .output()
            .success();
    });
}

#[test]
fn build_stopped_by_sigint_while_pulling_its_base() {
    if !prerequisites() {
        return;
    }
    let reg = Registry::start(Options::default());
    for_each_user("sigint_build_pull", |env| {
        push_helper(&reg, env, "test/intrbase");
        env.rbox().args(["images"]).output().success();
        let before = store_state(env);
        let proxy = FaultyProxy::start(&reg.addr, 512 * 1024, Fault::Stall);
        let ctx = env.path("work/ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        env.write(
            "work/ctx/Containerfile",
            format!("FROM {}/test/intrbase:1\nRUN true\n", proxy.addr),
        );
        env.give_to_user(&env.path("work"));
        let run = env
            .rbox()
            .args(["build", "--network=none", "-t", "never"])
            .args(reg.tls_flags())
            .arg(&ctx)
            .spawn();
        proxy
            .fired
            .recv_timeout(Duration::from_secs(120))
            .expect("the build's pull never reached the stall");
        let out = ctrl_c(run);
        assert!(!out.stdout.contains("RUN true"), "{out}");
        only_whole_downloads_added(env, &before, "build");
        drop(proxy);
    });
}

/// A file of `mib` MiB that compresses badly (an xorshift stream): its layer takes a while
/// to write, in rbox's debug build several seconds.
fn noise(mib: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(mib << 20);
    while v.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

#[test]
fn commit_and_build_stopped_by_sigint_while_writing_a_layer() {
    for_each_user("sigint_layer", |env| {
        env.import_busybox("busybox");
        // large enough that the optimised gzip still takes a good part of a second
        env.write("work/ctx/big", noise(48));
        env.write("work/ctx/Containerfile", "FROM busybox\nCOPY big /big\n");
        env.give_to_user(&env.path("work"));

        // a build's COPY: stopped in the write of its layer
        let before = store_state(env);
        let build = || {
            let mut c = env.rbox();
            c.args(["build", "--network=none", "-t", "big"])
                .arg(env.path("work/ctx"))
                .timeout(Duration::from_secs(600));
            c
        };
        let run = build().spawn();
        wait_for_staging(env, &run, ".commit");
        ctrl_c(run);
        assert_eq!(
            store_state(env),
            before,
            "the interrupted build left something"
        );
        build().output().success();

        // commit of a container whose upper holds the big file
        env.rbox()
            .args([
                "run",
                "--name",
                "c",
                "--network=none",
                "big",
                "cp",
                "/big",
                "/big2",
            ])
            .output()
            .success();
        let before = store_state(env);
        let commit = || {
            let mut c = env.rbox();
            c.args(["commit", "c", "committed"])
                .timeout(Duration::from_secs(600));
            c
        };
        let run = commit().spawn();
        wait_for_staging(env, &run, ".commit");
        ctrl_c(run);
        assert_eq!(
            store_state(env),
            before,
            "the interrupted commit left something"
        );
        commit().output().success();
    });
}

#[test]
fn save_load_and_import_stopped_by_sigint_mid_stream() {
    for_each_user("sigint_save_load", |env| {
        env.import_busybox("busybox");
        env.write("work/ctx/big", noise(8));
        env.write("work/ctx/Containerfile", "FROM busybox\nCOPY big /big\n");
        env.give_to_user(&env.path("work"));
        env.rbox()
            .args(["build", "--network=none", "-t", "big"])
            .arg(env.path("work/ctx"))
            .output()
            .success();
        let full = env
            .rbox()
            .args(["save", "big"])
            .output()
            .success()
            .stdout
            .len();

        // save to a pipe nobody reads for now: the first bytes say it is under way
        let before = store_state(env);
        let mut run = env.rbox().args(["save", "big"]).spawn();
        run.read_line();
        run.signal(nix::sys::signal::Signal::SIGINT);
        let out = run.wait();
        assert!(!out.timed_out, "{out}");
        assert_eq!(out.code, 1, "{out}");
        assert!(!out.stderr.contains("Error"), "{out}");
        assert!(out.stdout.len() < full, "the whole archive was written");
        assert_eq!(
            store_state(env),
            before,
            "the interrupted save left something"
        );

        // load of an image not in the store, half of its archive given
        let archive = env.path("work/big.tar");
        env.rbox()
            .args(["save", "-o"])
            .arg(&archive)
            .arg("big")
            .output()
            .success();
        env.rbox().args(["rmi", "big"]).output().success();
        let bytes = std::fs::read(&archive).unwrap();
        let before = store_state(env);
        let mut run = env.rbox().args(["load"]).spawn();
        run.write_stdin(&bytes[..bytes.len() / 2]);
        wait_for_staging(env, &run, ".load");
        ctrl_c(run);
        assert_eq!(
            store_state(env),
            before,
            "the interrupted load left something"
        );
        env.rbox()
            .args(["load", "-q", "-i"])
            .arg(&archive)
            .output()
            .success();
        env.rbox()
            .args(["image", "exists", "big"])
            .output()
            .success();

        // import of a rootfs tarball from stdin, half of it given
        let tar = std::fs::read(crate::fixtures::busybox_rootfs_tar()).unwrap();
        let before = store_state(env);
        let mut run = env.rbox().args(["import", "-", "imported"]).spawn();
        run.write_stdin(&tar[..tar.len() / 2]);
        wait_for_staging(env, &run, ".layer");
        ctrl_c(run);
        assert_eq!(
            store_state(env),
            before,
            "the interrupted import left something"
        );
        env.rbox()
            .args(["import", "-", "imported"])
            .stdin(tar)
            .output()
            .success();
    });
}
