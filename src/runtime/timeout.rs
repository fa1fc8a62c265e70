//! `--timeout N`: the monitor's timer that kills a container once its command has run for N
//! seconds (each run of it: a restart starts a new one). Its own thread, as the healthcheck
//! timer is, so that the monitor's wait stays as it is; the kill goes through a pidfd taken
//! while the container's init is the monitor's unreaped child, so a timer that fires as the
//! container exits can never hit a process that took its pid. SIGKILL, as Podman's: the init
//! dies and its pid namespace with it, and the run ends with 137.

use std::sync::mpsc;
use std::time::Duration;

use super::sys;

/// The running timer; dropping it (the container exited) ends it without a kill.
pub struct Timer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Timer {
    /// Kill the container whose init is `pid` (a child of this process, not yet reaped) after
    /// `seconds`, if it is still there; `None` without a timeout.
    pub fn start(seconds: Option<u64>, pid: i32) -> Option<Timer> {
        let after = Duration::from_secs(seconds.filter(|s| *s > 0)?);
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("watch the container for --timeout: {e}");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rbox-timeout".into())
            .stack_size(64 << 10)
            .spawn(move || {
                if rx.recv_timeout(after) == Err(mpsc::RecvTimeoutError::Timeout) {
                    tracing::debug!(?after, "--timeout: kill the container");
                    let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
                }
            })
            .map_err(|e| tracing::warn!("start the --timeout timer: {e}"))
            .ok()?;
        Some(Timer {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_after_the_timeout_and_not_when_dropped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let t = Timer::start(Some(1), child.id() as i32).unwrap();
        let st = child.wait().unwrap();
        drop(t);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let t = Timer::start(Some(30), child.id() as i32).unwrap();
        drop(t);
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(Timer::start(None, 1).is_none() && Timer::start(Some(0), 1).is_none());
    }
}
