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
    let Some((pid, start)) = text.trim().split_once(' ') else {
        return false;
    };
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let same_process = pid
        .parse()
        .ok()
        .and_then(crate::state::proc_start_time)
        .is_some_and(|t| t.to_string() == start);
    let comm_ok = fs::read_to_string(proc.join("comm")).is_ok_and(|c| c.trim() == PAUSE_NAME);
    let maps_ok = parse_map(&fs::read_to_string(proc.join("uid_map")).unwrap_or_default())
        == uid_map
        && parse_map(&fs::read_to_string(proc.join("gid_map")).unwrap_or_default()) == gid_map;
    if !(same_process && comm_ok && maps_ok) {
        return false;
    }
    let Ok(ns) = fs::File::open(proc.join("ns/user")) else {
        return false;
    };
    if sys::setns(&ns, libc::CLONE_NEWUSER).is_err() {
        return false;
    }
    let _ = nix::unistd::setgroups(&[]);
    true
}

const PAUSE_NAME: &str = "rbox-pause";

/// Hold `pause.lock` beside `pidfile` (an exclusive flock, released on drop) while a pause
/// process is looked for and started, so that invocations started at once make one. `None`
/// when it cannot be taken (then the race only costs a second namespace, as before).
pub fn lock(pidfile: &Path) -> Option<nix::fcntl::Flock<fs::File>> {
    super::exclusive_lock(&pidfile.with_file_name("pause.lock"))
}

/// Leave a process in our new user namespace for later invocations to join. It does nothing
/// but wait, and exits when its pid file is removed or replaced (`rm -rf` of the runtime
/// directory, or a newer pause process). Failing to start one only costs later invocations
/// the id-mapping helpers again.
pub fn start(pidfile: &Path) {
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
            if !published {
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
