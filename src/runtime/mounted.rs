//! The record of `rbox mount`'s FUSE servers (rbox_storage::mount::fuse::detached): a
//! stopped container's root mounted in some `rbox unshare`'s mount namespace, served by a
//! detached process. Another invocation (perhaps in another namespace) cannot see that mount,
//! so the mount leaves its server's pid and start time at `<runtime dir>/mounts/<ID>/server`:
//! `rbox start` refuses to run a second server over the same upper directory while it lives,
//! and `rbox rm` ends it. It owns that file only; the mount itself is `cmd::mount`'s.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::context::Context;
use crate::state::{self, ContainerRecord};

/// Where the mount of container `id` goes (`merged`) and its server is recorded.
pub fn dir(g: &Context, id: &str) -> Result<PathBuf> {
    Ok(g.runtime_dir()?.join("mounts").join(id))
}

fn record_path(g: &Context, id: &str) -> Result<PathBuf> {
    Ok(dir(g, id)?.join("server"))
}

/// Records `pid` as the server of container `id`'s mount.
pub fn record(g: &Context, id: &str, pid: i32) -> Result<()> {
    let p = record_path(g, id)?;
    let start = state::proc_start_time(pid).unwrap_or(0);
    fs::write(&p, format!("{pid} {start}\n")).with_context(|| format!("write `{}`", p.display()))
}

/// The pid of the live server of container `id`'s mount, if there is one (a recorded pid
/// whose process has gone or was reused counts as none).
pub fn server(g: &Context, id: &str) -> Option<i32> {
    let text = fs::read_to_string(record_path(g, id).ok()?).ok()?;
    let mut f = text.split_whitespace().map(str::parse::<u64>);
    let (pid, start) = (f.next()?.ok()?, f.next()?.ok()?);
    let pid = i32::try_from(pid).ok()?;
    (state::proc_start_time(pid) == Some(start)).then_some(pid)
}

/// Refuses to start `rec` while `rbox mount` serves its root: two FUSE servers over one
/// upper directory would each cache what the other changes.
pub fn refuse_start(g: &Context, rec: &ContainerRecord) -> Result<()> {
    if let Some(pid) = server(g, &rec.id) {
        anyhow::bail!(
            "container {} is mounted (`rbox mount`, FUSE server pid {pid}): unmount it first \
             with `rbox unmount {}` inside `rbox unshare`",
            rec.name,
            rec.name
        );
    }
    Ok(())
}

/// After `rbox unmount`: waits up to `wait` for the server of container `id`'s mount to end
/// (it does once the kernel drops the mount's last reference) and forgets it. A server that
/// still serves (a busy mount detached lazily by `unmount -f`) stays recorded, so `start`
/// stays refused until it ends; whether it was forgotten.
pub fn forget_ended(g: &Context, id: &str, wait: std::time::Duration) -> bool {
    if let Some(pid) = server(g, id) {
        // no pidfd: the process is gone already
        let ended = crate::runtime::sys::pidfd_open(pid)
            .map_or(true, |fd| super::control::wait_fd(&fd, wait));
        if !ended {
            return false;
        }
    }
    if let Ok(p) = record_path(g, id) {
        let _ = fs::remove_file(&p);
        if let Some(d) = p.parent() {
            let _ = fs::remove_dir(d);
        }
    }
    true
}

/// Ends the server of container `id`'s mount, if one lives (its mount, in another namespace,
/// then answers ENOTCONN until unmounted), and forgets it.
pub fn end(g: &Context, id: &str) {
    if let Some(pid) = server(g, id) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Ok(p) = record_path(g, id) {
        let _ = fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_counts_only_while_its_process_lives() {
        let d = tempfile::tempdir().unwrap();
        let g = Context::new(
            Some(d.path().join("store")),
            Some(d.path().join("run")),
            None,
        );
        let id = "ab".repeat(32);
        assert_eq!(server(&g, &id), None, "no record");
        fs::create_dir_all(dir(&g, &id).unwrap()).unwrap();
        // this test's own process stands for a live server
        let me = std::process::id() as i32;
        record(&g, &id, me).unwrap();
        assert_eq!(server(&g, &id), Some(me));
        // the same pid with another start time: reused by another process
        let start = state::proc_start_time(me).unwrap();
        fs::write(
            record_path(&g, &id).unwrap(),
            format!("{me} {}\n", start + 1),
        )
        .unwrap();
        assert_eq!(server(&g, &id), None);
        // an exited (and reaped) process
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        fs::write(record_path(&g, &id).unwrap(), format!("{pid} {start}\n")).unwrap();
        assert_eq!(server(&g, &id), None);
        fs::write(record_path(&g, &id).unwrap(), "garbage").unwrap();
        assert_eq!(server(&g, &id), None);
        // end forgets it (and kills nothing that is not the recorded live server)
        end(&g, &id);
        assert!(!record_path(&g, &id).unwrap().exists());
    }
}
