//! The deletion a `--rm` run leaves behind (issue 11): done by a child at nice 19 in
//! the store's `tmp/deleting/`, away from `tmp/` where the next container is made; what a
//! killed child left there goes with the next deletion.

use crate::util;

/// The `tmp/deleting/` entries (`<pid>.<start>.<n>.rmcontainer`) of the store.
fn deleting(env: &util::Env) -> Vec<String> {
    std::fs::read_dir(env.store().join("tmp/deleting"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Removed containers not yet deleted: the `*.rmcontainer` entries in `tmp/` (before the
/// child took one over) and `tmp/deleting/`.
fn pending(env: &util::Env) -> Vec<String> {
    util::tree(&env.store().join("tmp"))
        .into_iter()
        .filter(|n| n.ends_with(".rmcontainer"))
        .collect()
}

/// The nice value of `pid` (field 19 of /proc/PID/stat), None once it is gone.
fn nice(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name, which may hold spaces: field 3 is the first here
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19 - 3)?.parse().ok()
}

#[test]
fn the_deletion_left_behind_runs_at_nice_19_in_its_own_directory() {
    util::for_each_user("deferred_rm_nice", |env| {
        env.import_busybox("busybox");
        // enough files that deleting them takes a while after rbox returns
        env.rbox()
            .args(["run", "--rm", "--network=none", "busybox", "sh", "-c"])
            .arg("for d in $(seq 1 40); do mkdir -p /many/$d; for f in $(seq 1 100); do : >/many/$d/$f; done; done")
            .output()
            .success();
        // the child renames the container into tmp/deleting/ under its own pid: catch it
        // there while it deletes (polled, with a deadline)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = None;
        while seen.is_none() && std::time::Instant::now() < deadline {
            for name in deleting(env) {
                let pid: u32 = name.split('.').next().unwrap().parse().unwrap();
                if let Some(p) = nice(pid) {
                    seen = Some(p);
                }
            }
            if pending(env).is_empty() {
                break;
            }
        }
        assert_eq!(seen, Some(19), "the deleting child's nice value");
        util::eventually("the removed container's files are deleted", || {
            pending(env).is_empty()
        });
    });
}

#[test]
fn a_killed_deleters_leftovers_go_with_the_next_deletion() {
    util::for_each_user("deferred_rm_sweep", |env| {
        env.import_busybox("busybox");
        let run = || {
            env.rbox()
                .args(["run", "--rm", "--network=none", "busybox", "true"])
                .output()
                .success();
        };
        run();
        util::eventually("the removed container's files are deleted", || {
            pending(env).is_empty()
        });
        // what a deleting child killed midway leaves: its entry, stamped with a pid that
        // cannot exist (above pid_max), a read-only directory in it as an upper layer can have
        let stale = env.store().join("tmp/deleting/4294967.1.0.rmcontainer");
        env.cmd("mkdir")
            .arg("-p")
            .arg(stale.join("upper/etc/ro"))
            .output()
            .success();
        env.cmd("chmod")
            .arg("0555")
            .arg(stale.join("upper/etc"))
            .output()
            .success();
        run();
        util::eventually("the killed deleter's entry is swept", || {
            pending(env).is_empty()
        });
        assert!(!stale.exists());
        // nothing of either is left in tmp/ itself
        assert_eq!(
            util::tree(&env.store().join("tmp")),
            ["deleting"],
            "tmp/ after the deletions"
        );
    });
}
