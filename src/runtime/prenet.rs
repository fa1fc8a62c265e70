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
//! the init has joined it). [`take`] and [`cancel`] join the thread, and so does every
//! fork ([`super::sys::fork`] calls [`settle`], which keeps the namespace for `take`); the
//! clone ([`super::container::create_with_early`]) cancels first, so no path forks while
//! it runs.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Mutex;
use std::thread::JoinHandle;

enum Ahead {
    /// the thread at work
    Making(JoinHandle<std::io::Result<OwnedFd>>),
    /// its result, once joined before a fork ([`settle`])
    Made(Option<OwnedFd>),
}

static PENDING: Mutex<Option<Ahead>> = Mutex::new(None);

/// Start making a network namespace with loopback up, owned by the calling thread's user
/// namespace (call it after joining the pause process's). A failure to start is silent: the
/// clone makes the namespace as before.
pub fn begin() {
    let beside = super::sys::affinity().and_then(|a| super::sys::cpus_beside(&a));
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
    let Ok(h) = made else {
        return;
    };
    // off the main thread's CPU, set before the thread has run (it need not preempt the
    // main thread to move); the mask dies with the thread
    if let Some(cpus) = &beside {
        let _ = super::sys::set_thread_affinity(h.as_pthread_t(), cpus);
    }
    if let Ok(mut p) = PENDING.lock() {
        *p = Some(Ahead::Making(h));
    }
}

/// Join a thread at work and keep what it made for [`take`]: before a fork, which must not
/// happen while another thread may hold a lock the child would need (the allocator's).
/// [`super::sys::fork`] calls it.
pub fn settle() {
    let Ok(mut p) = PENDING.lock() else {
        return;
    };
    if let Some(Ahead::Making(h)) = p.take() {
        *p = Some(Ahead::Made(joined(h)));
    }
}

/// The namespace [`begin`] made, once made; `None` when none was begun or it failed (the
/// clone then makes one).
pub fn take() -> Option<OwnedFd> {
    match PENDING.lock().ok()?.take()? {
        Ahead::Making(h) => joined(h),
        Ahead::Made(fd) => fd,
    }
}

fn joined(h: JoinHandle<std::io::Result<OwnedFd>>) -> Option<OwnedFd> {
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

    // one test: the state is the process's (and `cargo test` runs tests as threads of one)
    #[test]
    fn a_fork_settles_the_thread_and_take_gets_what_it_made() {
        assert!(take().is_none());
        cancel();
        begin();
        settle();
        // joined: no thread of ours at work, so a fork now is sound; the result is kept
        assert!(matches!(
            PENDING.lock().unwrap().as_ref(),
            Some(Ahead::Made(_))
        ));
        settle();
        // (None where this user may not make a network namespace: the clone makes one then)
        if let Some(fd) = take() {
            use std::os::fd::AsRawFd;
            let made = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
            let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
            assert!(made.to_string_lossy().starts_with("net:["), "{made:?}");
            assert_ne!(made, ours);
        }
        assert!(take().is_none());
    }
}
