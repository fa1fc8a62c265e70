//! The deletion a `--rm` run leaves behind (issue 11): done by a child of rbox at nice 19,
//! so that in a loop of runs it does not compete with the start of the next container.

use crate::util;

/// Removed containers not yet deleted: the `*.rmcontainer` entries in the store's `tmp/`
/// (`<pid>.<start>.<n>.rmcontainer`, the pid of the process deleting it once the child
/// took it over).
fn pending(env: &util::Env) -> Vec<String> {
    std::fs::read_dir(env.store().join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".rmcontainer"))
                .collect()
        })
        .unwrap_or_default()
}

/// The nice value of `pid` (field 19 of /proc/PID/stat), None once it is gone.
fn nice(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name, which may hold spaces: field 3 is the first here
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19 - 3)?.parse().ok()
}

#[test]
fn the_deletion_left_behind_runs_at_nice_19() {
    util::for_each_user("deferred_rm_nice", |env| {
        env.import_busybox("busybox");
        // enough files that deleting them takes a while after rbox returns
        env.rbox()
            .args(["run", "--rm", "--network=none", "busybox", "sh", "-c"])
            .arg("for d in $(seq 1 40); do mkdir -p /many/$d; for f in $(seq 1 100); do : >/many/$d/$f; done; done")
            .output()
            .success();
        // the child renames the container to its own pid's stamp, then lowers its
        // priority: catch it while it deletes (polled, with a deadline)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = None;
        while seen != Some(19) && std::time::Instant::now() < deadline {
            let names = pending(env);
            if names.is_empty() {
                break;
            }
            for name in names {
                let pid: u32 = name.split('.').next().unwrap().parse().unwrap();
                if let Some(n) = nice(pid) {
                    seen = Some(n);
                }
            }
        }
        assert_eq!(seen, Some(19), "the deleting child's nice value");
        util::eventually("the removed container's files are deleted", || {
            pending(env).is_empty()
        });
    });
}
