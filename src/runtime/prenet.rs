//! A container's network namespace made ahead, on a thread, while the main thread prepares
//! the container's files. Making a network namespace is the dearest part of the init's clone
//! (the loopback device's registration, the per-namespace sysctl tables: about half a
//! millisecond here, most of the clone's time), and nothing in it depends on the container:
//! for an attached `run --network=none` it runs beside the store's work on another core,
//! and the init joins it (`setns`) instead of cloning a new one. Loopback comes up there too.
//!
//! Only where the namespace is the init's to own as made: the init cloned in rbox's own user
//! namespace (no nested one, whose root would not own it), and no network helper or OCI hook
//! (pasta, slirp4netns and a prestart hook find the namespace by the init's pid, maybe before
//! the init has joined it). [`take`] and [`cancel`] join the
//! thread; the clone ([`super::container::create_with_early`]) cancels first, so no path
//! forks while it runs.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::thread::JoinHandle;

type Pending = JoinHandle<std::io::Result<OwnedFd>>;

static PENDING: Mutex<Option<Pending>> = Mutex::new(None);

/// Start making a network namespace with loopback up, owned by the calling thread's user
/// namespace (call it after joining the pause process's). A failure to start is silent: the
/// clone makes the namespace as before.
pub fn begin() {
    let made = std::thread::Builder::new()
        .name("rbox-netns".into())
        .spawn(|| {
            // signals are the main thread's to take
            let all = nix::sys::signal::SigSet::all();
            nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_BLOCK,
                Some(&all),
                None,
            )?;
            // a network namespace is this thread's alone (unlike a mount namespace, which
            // threads share with their file system state)
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            super::sys::loopback_up()?;
            Ok(File::open("/proc/thread-self/ns/net")?.into())
        });
    if let (Ok(h), Ok(mut p)) = (made, PENDING.lock()) {
        *p = Some(h);
    }
}

/// The namespace [`begin`] made, once made; `None` when none was begun or it failed (the
/// clone then makes one).
pub fn take() -> Option<OwnedFd> {
    let h = PENDING.lock().ok()?.take()?;
    match h.join() {
        Ok(Ok(fd)) => Some(fd),
        Ok(Err(e)) => {
            tracing::debug!("make the network namespace ahead: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Wait for the thread of a namespace begun and not taken, and drop the namespace.
pub fn cancel() {
    drop(take());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_begun_is_nothing_taken() {
        assert!(take().is_none());
        cancel();
    }
}
