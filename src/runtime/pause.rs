//! The pause process (`rbox-pause`): left by the first invocation that creates rbox's user
//! namespace, so later invocations join that namespace instead of making their own (as
//! Podman's pause process does): with subordinate ids they skip newuidmap and newgidmap, and
//! every user's invocations share one namespace, which owns every container's namespaces (a
//! container can join another's network, the monitor's forwarder can enter any container's).
//! [`start`] runs in that first invocation, the forked process then lives in [`pause_main`];
//! [`join`] runs in every later invocation.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::unistd::ForkResult;

use super::sys;
use super::userns::parse_map;

/// Join the user namespace of the pause process named in `pidfile`, if it is ours, alive, and
/// maps exactly what we would map now (`uid_map` and `gid_map` as the initial namespace reads
/// them).
pub fn join(pidfile: &Path, uid_map: &[(u32, u32, u32)], gid_map: &[(u32, u32, u32)]) -> bool {
    let Ok(text) = fs::read_to_string(pidfile) else {
        return false;
    };
    let mut words = text.split_whitespace();
    let (Some(pid), Some(start)) = (words.next(), words.next()) else {
        return false;
    };
    let (u, g) = id_maps_of(pid);
    is_pause(pid, start) && u == uid_map && g == gid_map && enter(pid).is_some()
}

/// `pause.stamp` beside `pidfile`: `PID START-TIME STAMP`, the pause process's and what
/// /etc/subuid and /etc/subgid were (`userns::subid_stamp`) when it was started or last
/// joined by its maps. A file of its own, so that the pid file keeps the two words earlier
/// rbox versions read.
fn stamp_file(pidfile: &Path) -> PathBuf {
    pidfile.with_file_name("pause.stamp")
}

/// [`join`] without the maps to compare: the pause process that `pause.stamp` names was
/// started (or joined) while /etc/subuid and /etc/subgid were what `stamp` says, so it maps
/// what rbox would map now. Returns the mode its maps say, once joined.
pub fn join_unchanged(pidfile: &Path, stamp: &str) -> Option<super::userns::Mode> {
    let text = fs::read_to_string(stamp_file(pidfile)).ok()?;
    let mut words = text.split_whitespace();
    let (pid, start) = (words.next()?, words.next()?);
    if words.next() != Some(stamp) || !is_pause(pid, start) {
        return None;
    }
    let (u, g) = id_maps_of(pid);
    // container root is the caller (anything else is not a pause process of this user's)
    let own = |m: &[(u32, u32, u32)], id: u32| m.first() == Some(&(0, id, 1));
    if !own(&u, nix::unistd::getuid().as_raw()) || !own(&g, nix::unistd::getgid().as_raw()) {
        return None;
    }
    enter(pid)?;
    Some(super::userns::mode_of_maps(&u, &g))
}

/// Record `stamp` for the pause process `pidfile` names, just joined by its maps (new, or the
/// files it stands for changed but not this user's ranges). Best effort: a failure only leaves
/// the next invocation the full check again.
pub fn restamp(pidfile: &Path, stamp: &str) {
    let Ok(text) = fs::read_to_string(pidfile) else {
        return;
    };
    let mut words = text.split_whitespace();
    if let (Some(pid), Some(start)) = (words.next(), words.next()) {
        write_stamp(pidfile, &format!("{pid} {start} {stamp}\n"));
    }
}

/// Replace `pause.stamp` with `text` (through a temporary file: readers see the old or the new).
fn write_stamp(pidfile: &Path, text: &str) {
    let file = stamp_file(pidfile);
    if fs::read_to_string(&file).is_ok_and(|t| t == text) {
        return;
    }
    let tmp = file.with_extension(format!("stamp.tmp{}", std::process::id()));
    if !(fs::write(&tmp, text).is_ok() && fs::rename(&tmp, &file).is_ok()) {
        let _ = fs::remove_file(&tmp);
    }
}

/// An id map as [`parse_map`] reads it.
type Map = Vec<(u32, u32, u32)>;

/// Process `pid`'s uid_map and gid_map, parsed (empty where unreadable).
fn id_maps_of(pid: &str) -> (Map, Map) {
    let map =
        |f: &str| parse_map(&fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default());
    (map("uid_map"), map("gid_map"))
}

/// Whether `pid` is the process started at `start` and named as a pause process.
fn is_pause(pid: &str, start: &str) -> bool {
    let same_process = pid
        .parse()
        .ok()
        .and_then(crate::state::proc_start_time)
        .is_some_and(|t| t.to_string() == start);
    same_process
        && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == PAUSE_NAME)
}

/// Join the user namespace of process `pid`, dropping supplementary groups.
fn enter(pid: &str) -> Option<()> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/user")).ok()?;
    sys::setns(&ns, libc::CLONE_NEWUSER).ok()?;
    let _ = nix::unistd::setgroups(&[]);
    Some(())
}

const PAUSE_NAME: &str = "rbox-pause";

/// Hold `pause.lock` beside `pidfile` (an exclusive flock, released on drop) while a pause
/// process is looked for and started, so that invocations started at once make one. `None`
/// when it cannot be taken (then the race only costs a second namespace, as before).
pub fn lock(pidfile: &Path) -> Option<nix::fcntl::Flock<fs::File>> {
    super::exclusive_lock(&pidfile.with_file_name("pause.lock"))
}

/// Leave a process in our new user namespace for later invocations to join, named in the pid
/// file as `PID START-TIME`, and in `pause.stamp` with `stamp` ([`join_unchanged`]). It does nothing
/// but wait, and exits when its pid file is removed or replaced (`rm -rf` of the runtime
/// directory, or a newer pause process). Failing to start one only costs later invocations
/// the id-mapping helpers again.
pub fn start(pidfile: &Path, stamp: &str) {
    let Ok((ready_r, ready_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    let Ok((named_r, named_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(ready_w);
            drop(named_r);
            // named before the pid file is published: a joiner checks the name
            sys::set_name(PAUSE_NAME);
            drop(named_w);
            // wait until the parent has published our pid (it closes the pipe then)
            let mut b = [0u8; 1];
            let _ = fs::File::from(ready_r).read(&mut b);
            pause_main(pidfile)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_r);
            drop(named_w);
            let _ = fs::File::from(named_r).read(&mut [0u8; 1]);
            let start = crate::state::proc_start_time(child.as_raw()).unwrap_or_default();
            let tmp = pidfile.with_extension(format!("tmp{}", std::process::id()));
            let published = fs::write(&tmp, format!("{child} {start}\n")).is_ok()
                && fs::rename(&tmp, pidfile).is_ok();
            if published {
                write_stamp(pidfile, &format!("{child} {start} {stamp}\n"));
            } else {
                let _ = fs::remove_file(&tmp);
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            }
            drop(ready_w);
        }
        Err(_) => {}
    }
}

fn pause_main(pidfile: &Path) -> ! {
    let _ = nix::unistd::setsid();
    sys::set_name(PAUSE_NAME);
    sys::set_cmdline(PAUSE_NAME);
    // Hold nothing of the caller's: no terminal, no pipes, no working directory.
    sys::close_from(0);
    let _ = nix::unistd::chdir("/");
    let me = std::process::id().to_string();
    let names_me = || {
        fs::read_to_string(pidfile).is_ok_and(|t| t.split_whitespace().next() == Some(me.as_str()))
    };
    while names_me() {
        if !sys::wait_path_change(pidfile) {
            break;
        }
    }
    sys::exit_now(0)
}
