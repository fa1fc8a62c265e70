//! Control: signalling and stopping a running container from any later invocation (`kill`,
//! `stop`, `rm -f`). The signal goes to the container's monitor, which forwards it.

use anyhow::{bail, Result};

use super::sys;
use crate::context::Context;
use crate::state::{self, ContainerRecord, Status};

/// Send `sig` to a running container. It goes to the rbox process attached to the container
/// (its monitor), which forwards it: the container's processes may run as mapped ids that this
/// invocation, in a namespace of its own, may not signal. SIGKILL kills the monitor, and the
/// container with it (its init has PDEATHSIG set, and a pid namespace dies with its init); the
/// exit status 137 is then recorded here (or a `--rm` container removed), since the monitor
/// cannot.
pub fn signal_container(g: &Context, rec: &ContainerRecord, sig: libc::c_int) -> Result<()> {
    let Some((pid, monitor)) = state::live_pids(g, rec) else {
        // Podman's words, which scripts match on ("container state improper")
        let status = match rec.state.status {
            state::Status::Running => state::Status::Exited,
            s => s,
        };
        bail!(
            "can only kill running containers. {} is in state {}: container state improper",
            rec.id,
            status.as_str()
        );
    };
    let target = if monitor > 0 { monitor } else { pid };
    let pidfd = sys::pidfd_open(pid).ok();
    let monitor_fd = (monitor > 0)
        .then(|| sys::pidfd_open(monitor).ok())
        .flatten();
    match sys::kill(target, sig) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
        Err(e) => bail!("signal container {}: {e}", rec.name),
    }
    if sig == libc::SIGKILL {
        // the init too, where we may (it runs as the caller's own id unless -u was given)
        let _ = sys::kill(pid, libc::SIGKILL);
        if !wait_gone(pid, pidfd.as_ref(), std::time::Duration::from_secs(10)) {
            bail!(
                "container {} did not stop: its init (pid {pid}) still runs",
                rec.name
            );
        }
        // and the monitor: its published ports are free once it is gone
        if monitor > 0 {
            wait_gone(
                monitor,
                monitor_fd.as_ref(),
                std::time::Duration::from_secs(5),
            );
        }
        // the monitor could not stop the network helper: pasta outlives it
        cleanup_network(g, rec);
        // The record as written, not as `lookup` corrects it: whether the monitor got to
        // record an exit of its own before it died. If not, its end is done here: the exit
        // recorded, or a `--rm` container removed (as Podman's kill removes it), its
        // poststop hooks and cgroup, `--rmi`.
        if let Ok(mut cur) = state::load(g, &rec.id) {
            if cur.state.status == Status::Running {
                let store = super::open_store(g)?;
                super::monitor::finish(g, &store, &mut cur, 128 + libc::SIGKILL, "", None)?;
            }
        }
    }
    Ok(())
}

/// Stop a running container: its stop signal (SIGTERM by default), then SIGKILL after
/// `timeout`. Returns once the container's init is gone.
pub fn stop_container(
    g: &Context,
    rec: &ContainerRecord,
    timeout: std::time::Duration,
) -> Result<()> {
    let Some((pid, monitor)) = state::live_pids(g, rec) else {
        return stop_between_runs(g, rec, timeout);
    };
    let monitor_fd = (monitor > 0)
        .then(|| sys::pidfd_open(monitor).ok())
        .flatten();
    // the monitor must not restart it (its restart policy), now or at the next boot
    // (`unless-stopped`)
    state::request(g, rec, state::Request::Stop)?;
    let pidfd = match send_stop_signal(g, rec, pid) {
        Ok(fd) => fd,
        // the command ended between the look at its live state and the signal (a restart
        // policy's short-lived command): a stop between two runs, which the request above
        // already makes final
        Err(_) if state::live_pids(g, rec).is_none() => {
            return stop_between_runs(g, rec, timeout);
        }
        Err(e) => return Err(e),
    };
    if !wait_gone(pid, pidfd.as_ref(), timeout) {
        // The init itself where we may (it runs as the caller's own id unless -u named
        // another): its monitor lives on to record the exit and end the network as after any
        // exit, and to leave the unmounting of the container's tree to a child, which a
        // SIGKILLed monitor could not (its own exit would unmount, and is waited for below).
        let direct = monitor > 0
            && pidfd.as_ref().is_some_and(|fd| {
                sys::pidfd_send_signal(fd, libc::SIGKILL).is_ok()
                    && wait_gone(pid, Some(fd), std::time::Duration::from_secs(10))
            });
        if !direct {
            match signal_container(g, rec, libc::SIGKILL) {
                Ok(()) => {}
                // the stop signal did it after all, between the timeout and the SIGKILL (with
                // `rm -f`'s timeout of 0 that is the common case)
                Err(_) if state::live_pids(g, rec).is_none() => {}
                Err(e) => return Err(e),
            }
            wait_gone(pid, pidfd.as_ref(), std::time::Duration::from_secs(10));
        }
    }
    // and its monitor, which records the exit and lets the published ports go: a start right
    // after (`rbox restart`) finds them free and the record final
    if monitor > 0
        && wait_gone(
            monitor,
            monitor_fd.as_ref(),
            std::time::Duration::from_secs(10),
        )
    {
        // a monitor killed (SIGKILL after the timeout) never read the request
        state::clear_requests(g, rec);
    }
    Ok(())
}

/// Stop container `rec`, which does not run now but whose monitor may start it again: the
/// monitor records an exit (and may be about to apply the restart policy), or waits out the
/// policy's delay. `rec` may predate that exit (it may still say running), so the record is
/// read again until one of the three ends is seen: the monitor read the request and ended, it
/// waits to restart (killed: no more), or it restarted the command (stopped as any running
/// container).
fn stop_between_runs(
    g: &Context,
    rec: &ContainerRecord,
    timeout: std::time::Duration,
) -> Result<()> {
    if state::live_monitor(g, rec).is_none() {
        return Ok(());
    }
    // a monitor that has not yet read its requests takes this one and ends
    state::request(g, rec, state::Request::Stop)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // (removed meanwhile: a `--rm` container's monitor ended it)
        let Ok(cur) = state::load(g, &rec.id) else {
            return Ok(());
        };
        if end_restart_wait(g, &cur) {
            state::clear_requests(g, &cur);
            return Ok(());
        }
        if state::live_pids(g, &cur).is_some() {
            return stop_container(g, &cur, timeout);
        }
        if state::live_monitor(g, &cur).is_none() {
            state::clear_requests(g, &cur);
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            // a monitor not recording (a suspended attached run): the request stays for it
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Send running container `rec` (whose init is `pid`) its stop signal (SIGTERM unless the
/// image or `--stop-signal` named another), through its monitor; a paused container is
/// resumed to take it. Returns a pidfd of the init, opened before the signal.
fn send_stop_signal(
    g: &Context,
    rec: &ContainerRecord,
    pid: i32,
) -> Result<Option<std::os::fd::OwnedFd>> {
    let sig = rec
        .spec
        .stop_signal
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(libc::SIGTERM);
    let pidfd = sys::pidfd_open(pid).ok();
    signal_container(g, rec, sig)?;
    // a paused container's processes take the signal once they run again
    if state::is_paused(g, rec) {
        resume(g, rec)?;
    }
    Ok(pidfd)
}

/// End the wait of the monitor of exited container `rec` that would restart it (its restart
/// policy): the monitor is killed (its network helper with it) and its files removed. A
/// restart it had begun meanwhile dies with it, and is recorded as killed. Returns whether
/// there was such a monitor.
pub fn end_restart_wait(g: &Context, rec: &ContainerRecord) -> bool {
    let Some(monitor) = state::restarting_monitor(g, rec) else {
        return false;
    };
    let fd = sys::pidfd_open(monitor).ok();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_gone(monitor, fd.as_ref(), std::time::Duration::from_secs(10));
    cleanup_network(g, rec);
    if let (Ok(root), Ok(mut cur)) = (g.storage_root(), state::load(g, &rec.id)) {
        if cur.state.status == Status::Running {
            let _ = state::mark_exited(g, &root, &mut cur, 128 + libc::SIGKILL);
        } else {
            state::remove_live(g, &cur);
        }
    }
    true
}

/// `rbox restart` of a container under a detached monitor: the monitor starts the command
/// again itself, at once, in the same network namespace (its helper, its published ports and
/// the containers that joined it stay attached). The command gets its stop signal, then
/// SIGKILL after `timeout`. The caller is in rbox's user namespace (it may kill the init
/// itself: a SIGKILL through the monitor would end the monitor). Returns once the command
/// runs again.
pub fn restart_in_place(
    g: &Context,
    rec: &ContainerRecord,
    timeout: std::time::Duration,
) -> Result<()> {
    let Some((pid, monitor)) = state::live_pids(g, rec) else {
        bail!("container {} is not running", rec.name);
    };
    let monitor_fd = sys::pidfd_open(monitor).ok();
    state::request(g, rec, state::Request::Restart)?;
    let pidfd = send_stop_signal(g, rec, pid)?;
    if !wait_gone(pid, pidfd.as_ref(), timeout) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        wait_gone(pid, pidfd.as_ref(), std::time::Duration::from_secs(10));
    }
    // the monitor runs it again (a new init), or ends
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(cur) = state::load(g, &rec.id) {
            // the new init in the record and in the live state both (the monitor writes the
            // live state first), running the command (before, it still sets up: an exec
            // would join namespaces it is changing)
            let new = cur.state.pid;
            if state::is_running(&cur)
                && new != pid
                && state::live_pids(g, &cur).is_some_and(|(p, _)| p == new)
                && state::command_started(g, &cur)
            {
                return Ok(());
            }
            if wait_gone(monitor, monitor_fd.as_ref(), std::time::Duration::ZERO) {
                let why = if cur.state.error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", cur.state.error)
                };
                bail!("container {} did not start again{why}", rec.name);
            }
        }
        if std::time::Instant::now() > deadline {
            bail!("container {} did not start again within a minute", rec.name);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Wait until the process of `pidfd` exits or `timeout` passes; whether it exited.
pub fn wait_fd(pidfd: &std::os::fd::OwnedFd, timeout: std::time::Duration) -> bool {
    wait_gone(0, Some(pidfd), timeout)
}

/// Wait until `pid` exits (its pidfd becomes readable) or `timeout` passes.
fn wait_gone(pid: i32, pidfd: Option<&std::os::fd::OwnedFd>, timeout: std::time::Duration) -> bool {
    use std::os::fd::AsFd;
    let Some(fd) = pidfd else {
        return nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
    };
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX)), Ok(n) if n > 0)
}

/// A signal's number from "TERM", "SIGTERM", "15", or a real-time one as Podman names them:
/// "RTMIN", "RTMIN+3", "RTMAX-2", "RTMAX" (with or without SIG), or its number up to 64.
pub fn parse_signal(s: &str) -> Option<libc::c_int> {
    let rt = sys::realtime_signals();
    if let Ok(n) = s.parse::<libc::c_int>() {
        return (nix::sys::signal::Signal::try_from(n).is_ok() || rt.contains(&n)).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    // "", or the sign and a number
    let offset = |t: &str, sign: char| -> Option<libc::c_int> {
        if t.is_empty() {
            return Some(0);
        }
        t.strip_prefix(sign)?.parse().ok()
    };
    let n = if let Some(t) = name.strip_prefix("RTMIN") {
        rt.start() + offset(t, '+')?
    } else if let Some(t) = name.strip_prefix("RTMAX") {
        rt.end() - offset(t, '-')?
    } else {
        return format!("SIG{name}")
            .parse::<nix::sys::signal::Signal>()
            .ok()
            .map(|s| s as libc::c_int);
    };
    rt.contains(&n).then_some(n)
}

/// Whether `rec`'s network helper itself holds its published ports.
fn helper_holds_ports(rec: &ContainerRecord) -> bool {
    !rec.spec.ports.is_empty()
        && rec
            .spec
            .backend()
            .ok()
            .flatten()
            .is_some_and(|b| b.forwards_ports())
}

/// End what a container's network helper left behind when its monitor could not stop it (the
/// monitor was killed): the helper named in its pid file (pasta outlives its owner;
/// slirp4netns exits by itself when the monitor's end of its exit fd closes, but may not have
/// yet), waiting until it is gone so that its ports are free, then its files and directory.
pub fn cleanup_network(g: &Context, rec: &ContainerRecord) {
    // the directory the record names, trusted only while it is still a private one of ours
    let Some(runtime_dir) = state::live_runtime_dir(g, rec) else {
        return;
    };
    let dir = crate::layout::network_dir(&runtime_dir, &rec.id);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for (file, names) in [
        ("pasta.pid", &["passt", "pasta"][..]),
        ("slirp4netns.pid", &["slirp4netns"][..]),
    ] {
        let Some(pid) = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            continue;
        };
        // only the helper it names (pasta's binary is passt or passt.avx2): pids are reused
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if names.iter().any(|n| comm.starts_with(n)) {
            let pidfd = sys::pidfd_open(pid).ok();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            // Its ports are free once it is gone: waited for only when the helper holds
            // them (`port_handler=slirp4netns`). Its exit takes 20-30 ms (its tap device's
            // teardown); rbox's own forwarder was a thread of the monitor, gone already.
            if helper_holds_ports(rec) {
                wait_gone(pid, pidfd.as_ref(), std::time::Duration::from_secs(5));
            }
        }
    }
    for e in entries.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    let _ = std::fs::remove_dir(&dir);
}

/// `rbox pause`: stop every process of running container `rec` with SIGSTOP and record it
/// paused. rbox makes no cgroup of its own for a container (and rootless cgroup v1 delegates
/// none), so the cgroup freezer is not used: a process forked while the signals go out is
/// caught by the next pass, until every process of the pid namespace is stopped.
pub fn pause_container(g: &Context, rec: &ContainerRecord) -> Result<()> {
    let init = state::live_pids(g, rec)
        .filter(|_| state::is_running(rec))
        .map(|(p, _)| p);
    let Some(init) = init.filter(|_| !state::is_paused(g, rec)) else {
        let st = if state::is_paused(g, rec) {
            "paused"
        } else {
            rec.state.status.as_str()
        };
        bail!("{st:?} is not running, can't pause: container state improper");
    };
    in_userns(g, || freeze(init))?;
    state::set_paused(g, rec, true)?;
    crate::events::container(g, rec, "pause");
    Ok(())
}

/// `rbox unpause`: SIGCONT to every process of paused container `rec`.
pub fn unpause_container(g: &Context, rec: &ContainerRecord) -> Result<()> {
    if !state::is_paused(g, rec) {
        let st = rec.state.status.as_str();
        bail!("{st:?} is not paused, can't unpause: container state improper");
    }
    resume(g, rec)?;
    crate::events::container(g, rec, "unpause");
    Ok(())
}

/// SIGCONT to the processes of `rec` when it is paused (after a stop signal, which waits
/// pending in a stopped process until then), and record it not paused.
fn resume(g: &Context, rec: &ContainerRecord) -> Result<()> {
    if let Some((init, _)) = state::live_pids(g, rec) {
        in_userns(g, || {
            for pid in super::procs::pids(init)? {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGCONT,
                );
            }
            Ok(())
        })?;
    }
    // gone meanwhile: nothing is left paused
    let _ = state::set_paused(g, rec, false);
    Ok(())
}

/// Stop every process in the pid namespace of `init`, and wait (bounded) until the kernel
/// shows each stopped: a pass over /proc can miss a child forked while it runs.
fn freeze(init: i32) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pids = super::procs::pids(init)?;
        for &pid in &pids {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP);
        }
        let stopped = |pid: i32| {
            super::procs::read(pid).is_none_or(|p| matches!(p.state, 'T' | 't' | 'Z' | 'X'))
        };
        if pids.iter().all(|&p| stopped(p)) && super::procs::pids(init)? == pids {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the processes of the container did not all stop within 10 seconds");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Run `f` in a child that has entered rbox's user namespace (where it may signal processes
/// that run as mapped ids), leaving this process's credentials as they are: `rm` decides
/// about records as the user. Its error comes back as text.
fn in_userns(g: &Context, f: impl FnOnce() -> Result<()>) -> Result<()> {
    use std::io::{Read, Write};
    let (r, w) = nix::unistd::pipe()?;
    match sys::fork()? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let res = super::userns::enter(g).and_then(|_| f());
            let mut w = std::fs::File::from(w);
            if let Err(e) = res {
                let _ = w.write_all(format!("{e:#}").as_bytes());
                sys::exit_now(1);
            }
            sys::exit_now(0);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            let status = nix::sys::wait::waitpid(child, None)?;
            if !msg.is_empty() {
                bail!("{msg}");
            }
            if !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) {
                bail!("signal the processes of the container: the helper failed ({status:?})");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals_by_name_number_and_realtime_name() {
        let rtmin = libc::SIGRTMIN();
        assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("sigusr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("9"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("RTMIN+3"), Some(rtmin + 3));
        assert_eq!(parse_signal("SIGRTMIN"), Some(rtmin));
        assert_eq!(parse_signal("rtmax-1"), Some(libc::SIGRTMAX() - 1));
        assert_eq!(parse_signal("37"), Some(37));
        for bad in ["RTMIN+99", "RTMIN3", "RTMAX+1", "65", "0", "NOPE"] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
    }
}
