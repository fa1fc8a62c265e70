//! Read-only additional image stores (`--additional-image-store`, storage.conf's
//! `additionalimagestores`): a store made by one user with `rbox --root DIR import`, opened
//! by others, whose images are listed, looked up and run in place, and in which nothing is
//! ever written.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::util::{self, Env, Who};

/// Every entry below `root` with its type, mode, size and mtime (nanoseconds): a listing
/// that changes when anything in the store is created, removed, written or chmodded.
fn snapshot(root: &Path) -> Vec<String> {
    util::tree(root)
        .into_iter()
        .map(|rel| {
            let m = std::fs::symlink_metadata(root.join(&rel)).unwrap();
            format!(
                "{rel} {:o} {} {}.{}",
                m.mode(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            )
        })
        .collect()
}

/// Makes a shared store at `env`'s `shared/` holding busybox as `name`, opened to everyone
/// (as the store's docs ask: its root is 0700 when rbox makes it).
fn make_shared_store(env: &Env, name: &str) -> PathBuf {
    let shared = env.path("shared");
    let tar = env.copy_in(&crate::fixtures::busybox_rootfs_tar(), "busybox.tar");
    env.cmd(crate::util::RBOX)
        .arg("--root")
        .arg(&shared)
        .arg("--runroot")
        .arg(env.runroot())
        .arg("import")
        .arg(&tar)
        .arg(name)
        .output()
        .success();
    // inside rbox's namespace: files of subordinate ids are chmodded too
    env.rbox()
        .args(["unshare", "chmod", "-R", "a+rX"])
        .arg(&shared)
        .output()
        .success();
    shared
}

/// `rbox --additional-image-store SHARED ARGS` as `env`'s user, on its own (empty) store.
fn with_store(env: &Env, shared: &Path, args: &[&str]) -> util::Output {
    env.rbox()
        .arg("--additional-image-store")
        .arg(shared)
        .args(args)
        .output()
}

/// What every user of a shared store may and may not do with its image.
fn check_read_only_use(env: &Env, shared: &Path, name: &str) {
    let before = snapshot(shared);
    let json = with_store(env, shared, &["images", "--format", "json"])
        .success()
        .text();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let imgs = v.as_array().unwrap();
    assert_eq!(imgs.len(), 1, "{json}");
    assert_eq!(imgs[0]["ReadOnly"], serde_json::json!(true), "{json}");
    assert!(
        imgs[0]["Names"].to_string().contains(name),
        "{json} lacks {name}"
    );
    // without the flag the image is not there
    let none = env
        .rbox()
        .args(["images", "--format", "{{.ID}}"])
        .output()
        .success();
    assert_eq!(none.text(), "");
    // run in place: the image's files, a write into the container's own upper
    let out = with_store(
        env,
        shared,
        &[
            "run",
            "--rm",
            "--network=none",
            name,
            "sh",
            "-c",
            "echo written > /etc/new && cat /etc/new && test -x /bin/busybox && echo ok",
        ],
    )
    .success();
    assert_eq!(out.lines(), vec!["written", "ok"]);
    let rmi = with_store(env, shared, &["rmi", name]).rbox_error();
    assert!(rmi.stderr.contains("read-only image store"), "{rmi}");
    let tag = with_store(env, shared, &["tag", name, "other"]).rbox_error();
    assert!(tag.stderr.contains("read-only image store"), "{tag}");
    // prune leaves it alone
    with_store(env, shared, &["image", "prune", "-a", "-f"]).success();
    let info = with_store(env, shared, &["info", "--format", "json"])
        .success()
        .text();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let stores = &info["store"]["additionalImageStores"];
    assert_eq!(
        stores[0]["path"],
        serde_json::json!(shared.display().to_string()),
        "{stores}"
    );
    assert_eq!(stores[0]["usable"], serde_json::json!(true), "{stores}");
    assert_eq!(snapshot(shared), before, "the shared store changed");
}

#[test]
fn imagestore_made_and_used_by_the_same_kind_of_user() {
    util::for_each_user("imagestore_same", |env| {
        let shared = make_shared_store(env, "sharedbb");
        check_read_only_use(env, &shared, "sharedbb");
    });
}

fn user(who: Who) -> Option<util::User> {
    util::users().into_iter().find(|u| u.who == who)
}

#[test]
fn imagestore_of_root_used_by_two_users_at_once() {
    if !util::require(util::is_root(), "a store made by root, used by other users") {
        return;
    }
    let (Some(root), Some(sub), Some(nosub)) = (user(Who::Root), user(Who::Sub), user(Who::NoSub))
    else {
        return;
    };
    let maker = Env::new("imagestore_root", &root);
    let shared = make_shared_store(&maker, "rootbb");
    let before = snapshot(&shared);
    let envs = [
        Env::new("imagestore_root_sub", &sub),
        Env::new("imagestore_root_nosub", &nosub),
    ];
    // both containers run at once: each says it is up, and waits for a line before it ends
    let mut running: Vec<_> = envs
        .iter()
        .map(|env| {
            env.rbox()
                .arg("--additional-image-store")
                .arg(&shared)
                .args([
                    "run",
                    "--rm",
                    "-i",
                    "--network=none",
                    "rootbb",
                    "sh",
                    "-c",
                    "echo up; read x; echo $x > /tmp/x; cat /tmp/x",
                ])
                .spawn()
        })
        .collect();
    for r in &mut running {
        assert_eq!(r.read_line(), "up\n");
    }
    for r in &mut running {
        r.write_stdin(b"both\n");
    }
    for r in running {
        assert_eq!(r.wait().success().text(), "both");
    }
    assert_eq!(snapshot(&shared), before, "the shared store changed");
    for env in &envs {
        check_read_only_use(env, &shared, "rootbb");
    }
}

#[test]
fn imagestore_of_one_user_used_by_another() {
    if !util::require(util::is_root(), "a store made by one user, used by another") {
        return;
    }
    let (Some(sub), Some(nosub)) = (user(Who::Sub), user(Who::NoSub)) else {
        return;
    };
    let maker = Env::new("imagestore_sub", &sub);
    let shared = make_shared_store(&maker, "subbb");
    let env = Env::new("imagestore_sub_nosub", &nosub);
    check_read_only_use(&env, &shared, "subbb");
}

/// `RBOX_UPPER_DIR` (what a store on a network filesystem gets by itself, with node-local
/// `$TMPDIR` or `/dev/shm`): a container's upper and work directories live there, its
/// changes are seen there, `rbox info` says so, and `rm` removes them.
#[test]
fn upper_dirs_placed_off_the_store() {
    util::for_each_user("upper_placement", |env| {
        env.import_busybox("busybox");
        let uppers = env.path("uppers");
        let rbox = || {
            let mut c = env.rbox();
            c.env("RBOX_UPPER_DIR", &uppers);
            c
        };
        rbox()
            .args([
                "run",
                "--name",
                "c",
                "--network=none",
                "busybox",
                "sh",
                "-c",
                "echo changed > /f",
            ])
            .output()
            .success();
        let id = env.field("c", ".Id");
        let placed = uppers.join(&id);
        let upper = placed.join("upper");
        // the copy driver (no upper) is what a single-id user without overlay gets
        if upper.exists() {
            assert_eq!(
                std::fs::read_to_string(upper.join("f")).unwrap(),
                "changed\n"
            );
            assert!(!env
                .store()
                .join("containers")
                .join(&id)
                .join("upper")
                .exists());
        }
        assert!(placed.is_dir(), "{}", placed.display());
        // a later command without the setting finds the container's files where they are
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(out.text(), "");
        let info = rbox()
            .args(["info", "--format", "json"])
            .output()
            .success()
            .text();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(
            info["store"]["upperDir"],
            serde_json::json!(uppers.display().to_string())
        );
        env.rbox().args(["rm", "c"]).output().success();
        assert!(!placed.exists(), "{} left behind", placed.display());
    });
}
